import { useRunwireStore } from "@runwire/react";
import type { SearchHitOut } from "@runwire/client";
import { useEffect, useState, type ReactNode } from "react";

interface Props {
  /** Open a thread (a hit was chosen). */
  onSelect: (threadId: string) => void;
  /** While the box holds a query, the results replace the thread list. */
  children: ReactNode;
}

const DEBOUNCE_MS = 250;

/** The sidebar's search box: full-text search over the user's own messages
 * (`GET /api/search`), best match first; choosing a hit opens its thread. */
export function Search({ onSelect, children }: Props): ReactNode {
  const store = useRunwireStore();
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<SearchHitOut[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const words = query.trim();

  useEffect(() => {
    if (!words) {
      setHits(null);
      setProblem(null);
      return;
    }
    let current = true;
    const timer = setTimeout(() => {
      store.rest.search(words.slice(0, 200), { limit: 20 }).then(
        (page) => { if (current) { setHits(page.items); setProblem(null); } },
        (err: unknown) => { if (current) setProblem(err instanceof Error ? err.message : String(err)); },
      );
    }, DEBOUNCE_MS);
    return () => { current = false; clearTimeout(timer); };
  }, [words, store]);

  return (
    <>
      <input className="search" type="search" data-testid="thread-search" value={query}
             placeholder="Search messages" aria-label="Search your messages" maxLength={200}
             onChange={(e) => setQuery(e.target.value)}
             onKeyDown={(e) => { if (e.key === "Escape") setQuery(""); }} />
      {!words ? children : (
        <div className="search-results" role="region" aria-label="Search results">
          {problem && <p className="error" role="alert">Search failed: {problem}</p>}
          {hits !== null && hits.length === 0 && !problem && (
            <p className="empty" data-testid="search-empty">No messages match.</p>
          )}
          <ul className="threads" data-testid="search-results">
            {(hits ?? []).map((h) => (
              <li key={h.message_id} data-testid="search-result">
                <button type="button" className="title" title={h.thread_title}
                        onClick={() => { setQuery(""); onSelect(h.thread_id); }}>
                  <span className="name">{h.thread_title}</span>
                  <span className="snippet">{h.role === "assistant" ? "↳ " : ""}{h.snippet}</span>
                </button>
              </li>
            ))}
          </ul>
        </div>
      )}
    </>
  );
}
