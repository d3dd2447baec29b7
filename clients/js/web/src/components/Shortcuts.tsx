import { useEffect, useRef, type ReactNode } from "react";

export const SHORTCUTS: ReadonlyArray<[string, string]> = [
  ["Enter", "send the message"],
  ["Shift + Enter", "new line"],
  ["Esc", "stop the running answer (in the message box); close this"],
  ["/", "focus the message box"],
  ["Ctrl/⌘ + Shift + O", "new chat"],
  ["Ctrl/⌘ + Shift + S", "stop the running answer"],
  ["?", "show these shortcuts"],
];

/** The keyboard shortcuts, as a small dialog; Esc or a click outside closes it. */
export function ShortcutsHelp({ onClose }: { onClose: () => void }): ReactNode {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => { ref.current?.focus(); }, []);
  return (
    <div className="popover-backdrop" onClick={onClose}>
      <div className="popover" role="dialog" aria-modal="true" aria-labelledby="shortcuts-title" tabIndex={-1}
           ref={ref} data-testid="shortcuts" onClick={(e) => e.stopPropagation()}
           onKeyDown={(e) => { if (e.key === "Escape") { e.stopPropagation(); onClose(); } }}>
        <h2 id="shortcuts-title">Keyboard shortcuts</h2>
        <dl>
          {SHORTCUTS.map(([keys, what]) => (
            <div key={keys}><dt><kbd>{keys}</kbd></dt><dd>{what}</dd></div>
          ))}
        </dl>
        <button type="button" onClick={onClose}>Close</button>
      </div>
    </div>
  );
}

/** Whether a key event comes from a place where the user types text. */
export function typing(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return !!el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.isContentEditable);
}
