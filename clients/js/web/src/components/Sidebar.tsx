import { useThreads } from "@runwire/react";
import { useState, type KeyboardEvent, type ReactNode } from "react";
import { Search } from "./Search.tsx";

interface Props {
  current: string | null;
  onSelect: (threadId: string | null) => void;
  footer: ReactNode;
}

/** When a thread was last active: the time today, else the date (and the year when not this one). */
export function when(iso: string, now = new Date()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const time = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  const sameYear = d.getFullYear() === now.getFullYear();
  const date = d.toLocaleDateString(undefined, sameYear ? { month: "short", day: "numeric" }
    : { year: "numeric", month: "short", day: "numeric" });
  return `${date}, ${time}`;
}

/** Threads: search, list (title + when), new, rename (inline), delete (with an inline
 * confirmation). */
export function Sidebar({ current, onSelect, footer }: Props): ReactNode {
  const { threads, load, error, rename, remove, hasMore, loadMore, waiting } = useThreads();
  const [editing, setEditing] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  const [confirming, setConfirming] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  const act = (p: Promise<void>): void => {
    setProblem(null);
    p.catch((err: unknown) => setProblem(err instanceof Error ? err.message : String(err)));
  };
  const commit = (id: string): void => {
    const title = draft.trim();
    setEditing(null);
    if (title) act(rename(id, title));
  };
  const onKey = (e: KeyboardEvent<HTMLInputElement>, id: string): void => {
    if (e.key === "Enter") commit(id);
    if (e.key === "Escape") setEditing(null);
  };

  return (
    <aside className="sidebar" aria-label="Threads">
      <div className="brand">runwire</div>
      <button className="new" data-testid="new-thread" type="button" onClick={() => onSelect(null)}>
        + New chat
      </button>
      <Search onSelect={onSelect}>
      {load === "error" && <p className="error" role="alert">Threads could not load: {error}</p>}
      {problem && <p className="error" role="alert">{problem}</p>}
      <ul className="threads" data-testid="thread-list">
        {threads.map((t) => (
          <li key={t.thread_id} data-testid="thread-item" aria-current={t.thread_id === current}>
            {editing === t.thread_id ? (
              <input className="rename" data-testid="thread-rename-input" value={draft} autoFocus
                     aria-label="New title" maxLength={200} onChange={(e) => setDraft(e.target.value)}
                     onKeyDown={(e) => onKey(e, t.thread_id)} onBlur={() => commit(t.thread_id)} />
            ) : (
              <button type="button" className="title" title={t.title} onClick={() => onSelect(t.thread_id)}>
                <span className="name">{t.title}</span>
                <time className="when" data-testid="thread-when" dateTime={t.updated_at}
                      title={new Date(t.updated_at).toLocaleString()}>{when(t.updated_at)}</time>
                {waiting.has(t.thread_id) && (
                  <span className="waiting" data-testid="thread-waiting">waiting for your approval</span>
                )}
              </button>
            )}
            {confirming === t.thread_id ? (
              <span className="confirm">
                <button type="button" data-testid="thread-delete-confirm" className="danger"
                        onClick={() => { setConfirming(null); if (current === t.thread_id) onSelect(null); act(remove(t.thread_id)); }}>
                  Delete
                </button>
                <button type="button" onClick={() => setConfirming(null)}>Keep</button>
              </span>
            ) : (
              <span className="actions">
                <button type="button" data-testid="thread-rename" aria-label={`Rename ${t.title}`}
                        onClick={() => { setEditing(t.thread_id); setDraft(t.title); }}>✎</button>
                <button type="button" data-testid="thread-delete" aria-label={`Delete ${t.title}`}
                        onClick={() => setConfirming(t.thread_id)}>×</button>
              </span>
            )}
          </li>
        ))}
      </ul>
      {hasMore && (
        <button type="button" className="more" data-testid="threads-more" onClick={() => act(loadMore())}>
          Older chats…
        </button>
      )}
      </Search>
      {footer}
    </aside>
  );
}
