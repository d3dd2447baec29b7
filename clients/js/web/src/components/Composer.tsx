import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent, type ReactNode } from "react";

interface Props {
  onSend: (text: string) => void;
  onStop: (() => void) | null;
  focusKey: string;
}

/** Enter sends, Shift+Enter breaks the line; Escape stops a running answer. */
export function Composer({ onSend, onStop, focusKey }: Props): ReactNode {
  const [text, setText] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  useEffect(() => { input.current?.focus(); }, [focusKey]);
  const submit = (e?: FormEvent): void => {
    e?.preventDefault();
    // The DOM's value, not the last render's state: a keystroke can come before a render.
    const value = (input.current?.value ?? text).trim();
    if (!value) return;
    setText("");
    onSend(value);
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>): void => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) { e.preventDefault(); submit(); }
    if (e.key === "Escape" && onStop) { e.preventDefault(); onStop(); }
  };
  return (
    <form className="composer" data-testid="composer" onSubmit={submit}>
      <textarea ref={input} data-testid="composer-input" rows={Math.min(8, text.split("\n").length)}
                value={text} onChange={(e) => setText(e.target.value)} onKeyDown={onKey}
                placeholder="Ask something… (Enter to send, Shift+Enter for a new line)" aria-label="Message" />
      {onStop && <button type="button" className="stop" data-testid="stop-button" onClick={onStop}>Stop</button>}
      <button type="submit" className="send" data-testid="send-button" disabled={!text.trim()}>Send</button>
    </form>
  );
}
