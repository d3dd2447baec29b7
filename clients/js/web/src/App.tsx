import { useAgent, useConnection, useRunwireStore, useThreads } from "@runwire/react";
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import { Banner, blockedBy } from "./components/Banner.tsx";
import { Composer, type ComposerHandle } from "./components/Composer.tsx";
import { ConnectionStatus } from "./components/ConnectionStatus.tsx";
import { ShortcutsHelp, typing } from "./components/Shortcuts.tsx";
import { Sidebar } from "./components/Sidebar.tsx";
import { Timeline } from "./components/Timeline.tsx";
import { useOnline } from "./online.ts";
import { useTheme } from "./theme.ts";
import { msUntilExpiry, onTokenStored } from "./token.ts";

/** The selected thread lives in the fragment (#thread=…), so a reload shows it again. */
function threadFromUrl(): string | null {
  return new URLSearchParams(location.hash.slice(1)).get("thread");
}

function showInUrl(threadId: string | null): void {
  const hash = threadId ? `#thread=${encodeURIComponent(threadId)}` : "";
  if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
}

const MAX_TIMER_MS = 2 **31 - 1; // setTimeout's limit (~24.8 days)

/** true once `token` has expired (checked against its `exp`, while the page is open). */
function useExpired(token: string): boolean {
  const [expired, setExpired] = useState(() => (msUntilExpiry(token) ?? 1) <= 0);
  useEffect(() => {
    const left = msUntilExpiry(token);
    if (left === null) return undefined;
    if (left <= 0) { setExpired(true); return undefined; }
    let timer: ReturnType<typeof setTimeout>;
    const arm = (): void => {
      const ms = msUntilExpiry(token) ?? 0;
      if (ms <= 0) { setExpired(true); return; }
      timer = setTimeout(arm, Math.min(ms, MAX_TIMER_MS));
    };
    arm();
    return () => clearTimeout(timer);
  }, [token]);
  return expired;
}

export function App({ userId, token }: { userId: string; token: string }): ReactNode {
  const connection = useConnection();
  const { client } = useRunwireStore();
  const online = useOnline();
  const { threads } = useThreads();
  const [current, setCurrent] = useState<string | null>(threadFromUrl);
  const [menuOpen, setMenuOpen] = useState(false);
  const [followKey, setFollowKey] = useState(0);
  const [, setStopsShown] = useState(0);
  const composer = useRef<ComposerHandle>(null);
  const [helpOpen, setHelpOpen] = useState(false);
  const [theme, toggleTheme] = useTheme();
  const select = useCallback((id: string | null) => {
    setCurrent(id);
    setMenuOpen(false);
  }, []);
  const agent = useAgent(current, { onThreadCreated: select });
  const expired = useExpired(token);
  useEffect(() => showInUrl(current), [current]);
  useEffect(() => {
    if (agent.deleted) select(null); // deleted here or in another tab
  }, [agent.deleted, select]);
  // Expired while open: stop using the token (nothing would be accepted) and say so.
  useEffect(() => { if (expired) client.close(); }, [expired, client]);
  // Signed in again in another tab: take the new token.
  const signedOut = expired || (connection.state === "closed" && connection.code === 4001);
  useEffect(() => (signedOut ? onTokenStored(() => location.reload()) : undefined), [signedOut]);

  const blocked = blockedBy(connection, expired);
  const disabledReason = blocked === "signed-out" ? "Signed out — sign in to send"
    : blocked ? "Not connected — see above" : null;
  const title = threads.find((t) => t.thread_id === current)?.title ?? (current ? "…" : "New chat");
  const model = connection.established?.model;
  const active = agent.activeRun !== null;
  const live = connection.state === "open";
  const streaming = agent.items.some((i) => i.kind === "message" && i.streaming);
  const send = (text: string): void => {
    agent.send(text);
    setFollowKey((k) => k + 1);
  };
  const stop = active && !signedOut ? () => { agent.stop(); setStopsShown((n) => n + 1); } : null;
  const stopRef = useRef(stop);
  stopRef.current = stop;
  let lastAnswerId: string | null = null;
  if (!active) {
    for (let i = agent.items.length - 1; i >= 0 && lastAnswerId === null; i -= 1) {
      const it = agent.items[i];
      if (it?.kind === "message" && it.role === "assistant") lastAnswerId = it.id;
    }
  }
  // Shortcuts that work anywhere on the page (the composer has Enter / Esc of its own).
  useEffect(() => {
    const onKey = (e: KeyboardEvent): void => {
      const mod = (e.ctrlKey || e.metaKey) && e.shiftKey && !e.altKey;
      const key = e.key.toLowerCase();
      if (mod && key === "o") { e.preventDefault(); select(null); composer.current?.focus(); return; }
      if (mod && key === "s") { e.preventDefault(); stopRef.current?.(); return; }
      if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "/") { e.preventDefault(); composer.current?.focus(); }
      else if (e.key === "?") { e.preventDefault(); setHelpOpen(true); }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [select]);

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
          <button type="button" className="icon" data-testid="theme-toggle" onClick={toggleTheme}
                  aria-label={`Switch to the ${theme === "light" ? "dark" : "light"} theme`}
                  title={`Switch to the ${theme === "light" ? "dark" : "light"} theme`}>
            {theme === "light" ? "☾" : "☀"}
          </button>
          <button type="button" className="icon" data-testid="shortcuts-button" aria-label="Keyboard shortcuts"
                  title="Keyboard shortcuts (?)" onClick={() => setHelpOpen(true)}>?</button>
        </header>
        {helpOpen && <ShortcutsHelp onClose={() => { setHelpOpen(false); composer.current?.focus(); }} />}
        <Banner connection={connection} online={online} signedOut={expired}
                onRetry={() => client.reconnectNow()} />
        {agent.load === "error" && !signedOut && (
          <p className="banner error" role="alert">This thread could not load: {agent.loadError}</p>
        )}
        <Timeline key={current ?? "new"} items={agent.items} onRetry={agent.retry} onDiscard={agent.discard}
                  onRetryRun={(runId) => { agent.regenerate(runId); setFollowKey((k) => k + 1); }}
                  live={live} busy={streaming && live} queuedStops={client.queuedStops} followKey={followKey}
                  lastAnswerId={lastAnswerId}
                  onRegenerate={(runId) => { agent.regenerate(runId); setFollowKey((k) => k + 1); }}
                  onEdit={(text) => composer.current?.fill(text)}
                  onApprove={(item, decision) => agent.approve(item, decision)}
                  empty={<div className="empty">{current ? "Loading…" : "Ask something to start a new chat."}</div>} />
        <Composer ref={composer} focusKey={current ?? ""} onSend={send} disabledReason={disabledReason}
                  onStop={stop} stopping={agent.activeRun !== null && client.queuedStops.includes(agent.activeRun.runId)} />
      </main>
    </div>
  );
}
