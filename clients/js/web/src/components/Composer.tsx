import { forwardRef, useEffect, useImperativeHandle, useRef, useState, type FormEvent, type KeyboardEvent, type ReactNode } from "react";

interface Props {
  onSend: (text: string) => void;
  onStop: (() => void) | null;
  focusKey: string;
  /** Why nothing can be sent now (signed out, too many tabs); null: enabled. */
  disabledReason: string | null;
  /** A stop was asked for and waits for the connection. */
  stopping?: boolean;
}

export interface ComposerHandle {
  focus: () => void;
  /** Puts `text` in the box to edit (the "edit & re-run" of a sent message). */
  fill: (text: string) => void;
}

/** Enter sends, Shift+Enter breaks the line; Escape stops a running answer. The keyboard
 *  hint is shown only where there is a hardware keyboard (not on touch screens). */
export const Composer = forwardRef<ComposerHandle, Props>(function Composer(
  { onSend, onStop, focusKey, disabledReason, stopping = false }, handle,
): ReactNode {
  const [text, setText] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  useImperativeHandle(handle, () => ({
    focus: () => input.current?.focus(),
    fill: (value: string) => { setText(value); input.current?.focus(); },
  }), []);
  useEffect(() => { input.current?.focus(); }, [focusKey]);
  const disabled = disabledReason !== null;
  const submit = (e?: FormEvent): void => {
    e?.preventDefault();
    if (disabled) return;
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
      <div className="field">
        <textarea ref={input} data-testid="composer-input" rows={Math.min(8, text.split("\n").length)}
                  value={text} onChange={(e) => setText(e.target.value)} onKeyDown={onKey}
                  disabled={disabled} placeholder={disabledReason ?? "Ask something…"}
                  aria-label="Message" aria-describedby="composer-hint" />
        <div className="hint" id="composer-hint" data-testid="composer-hint">
          Enter to send · Shift+Enter for a new line · <kbd>?</kbd> for shortcuts
        </div>
      </div>
      {onStop && (
        <button type="button" className="stop" data-testid="stop-button" onClick={onStop} disabled={stopping}>
          {stopping ? "Stopping…" : "Stop"}
        </button>
      )}
      <button type="submit" className="send" data-testid="send-button" disabled={disabled || !text.trim()}>Send</button>
    </form>
  );
});
