import { useAgent, useConnection, useThreads } from "@runwire/react";
import { useCallback, useEffect, useState, type ReactNode } from "react";
import { Composer } from "./components/Composer.tsx";
import { ConnectionStatus } from "./components/ConnectionStatus.tsx";
import { Sidebar } from "./components/Sidebar.tsx";
import { Timeline } from "./components/Timeline.tsx";
import { TokenGate } from "./components/TokenGate.tsx";

/** The selected thread lives in the fragment (#thread=…), so a reload shows it again. */
function threadFromUrl(): string | null {
  return new URLSearchParams(location.hash.slice(1)).get("thread");
}

function showInUrl(threadId: string | null): void {
  const hash = threadId ? `#thread=${encodeURIComponent(threadId)}` : "";
  if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
}

export function App({ userId }: { userId: string }): ReactNode {
  const connection = useConnection();
  const { threads } = useThreads();
  const [current, setCurrent] = useState<string | null>(threadFromUrl);
  const [menuOpen, setMenuOpen] = useState(false);
  const select = useCallback((id: string | null) => {
    setCurrent(id);
    setMenuOpen(false);
  }, []);
  const agent = useAgent(current, { onThreadCreated: select });
  useEffect(() => showInUrl(current), [current]);
  useEffect(() => {
    if (agent.deleted) select(null); // deleted here or in another tab
  }, [agent.deleted, select]);

  if (connection.state === "closed" && connection.code === 4001) return <TokenGate reason="invalid" />;
  const title = threads.find((t) => t.thread_id === current)?.title ?? (current ? "…" : "New chat");
  const model = connection.established?.model;
  const active = agent.activeRun !== null;

  return (
    <div className={`app ${menuOpen ? "menu-open" : ""}`} data-testid="app"
         onKeyDown={(e) => { if (e.key === "Escape") setMenuOpen(false); }}>
      <Sidebar current={current} onSelect={select}
               footer={<ConnectionStatus connection={connection} />} />
      <main className="main">
        <header className="topbar">
          <button className="menu" type="button" aria-label="Show threads" aria-expanded={menuOpen}
                  data-testid="menu" onClick={() => setMenuOpen((o) => !o)}>☰</button>
          <h1 data-testid="thread-title">{title}</h1>
          <span className="model">
            <span data-testid="model-name">{model?.name ?? ""}</span>
            {model?.demo && (
              <span className="badge demo" data-testid="demo-badge"
                    title="The built-in offline model: deterministic, for trying runwire out">demo model</span>
            )}
          </span>
          <span className="user" title="signed in as">{userId}</span>
        </header>
        {agent.load === "error" && (
          <p className="banner error" role="alert">This thread could not load: {agent.loadError}</p>
        )}
        <Timeline items={agent.items} onRetry={agent.retry} onDiscard={agent.discard}
                  empty={<div className="empty">{current ? "Loading…" : "Ask something to start a new chat."}</div>} />
        <Composer focusKey={current ?? ""} onSend={(text) => agent.send(text)}
                  onStop={active ? () => agent.stop() : null} />
      </main>
    </div>
  );
}
