// The chat page: token from the URL fragment, one RunwireClient, the React app.
import { IndexedDbHistory, RestClient, RunwireClient, type LocalHistory } from "@runwire/client";
import { RunwireProvider } from "@runwire/react";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App.tsx";
import { TokenGate } from "./components/TokenGate.tsx";
import "./style.css";
import { applyStoredTheme } from "./theme.ts";
import { claimsOf, isExpired, newerToken, takeToken } from "./token.ts";

applyStoredTheme();
const root = createRoot(document.getElementById("root") as HTMLElement);

function gate(reason: "missing" | "expired" | "invalid"): void {
  root.render(<StrictMode><TokenGate reason={reason} /></StrictMode>);
}

/** This tab's id (kept across reloads of the tab): its outbox is its own. */
function tabId(): string {
  let id = sessionStorage.getItem("runwire.tab");
  if (!id) {
    id = Math.random().toString(36).slice(2, 10);
    sessionStorage.setItem("runwire.tab", id);
  }
  return id;
}

async function openHistory(userId: string): Promise<LocalHistory | null> {
  try {
    return await IndexedDbHistory.open(`runwire:${userId}`, { maxMessages: 500, outboxKey: `outbox:${tabId()}` });
  } catch {
    return null; // no IndexedDB (private mode): the page works, reloads load from the server
  }
}

async function main(): Promise<void> {
  const token = takeToken();
  if (!token) return gate("missing");
  const claims = claimsOf(token);
  if (!claims?.sub) return gate("invalid");
  if (isExpired(token)) return gate("expired");
  let current = token;
  // A refresh has nothing new to offer unless another token was stored (another tab, or
  // the sign-in form of the banner).
  const getToken = async (refresh: boolean): Promise<string | null> => {
    if (!refresh) return current;
    const stored = newerToken(current);
    if (!stored) return null;
    current = stored;
    return current;
  };
  const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  // Threads are followed once the page opens them (the ThreadStore loads them then).
  const client = new RunwireClient({ url: wsUrl, getToken, autoFollow: false });
  const rest = new RestClient({ baseUrl: "", getToken });
  const history = await openHistory(claims.sub);
  // The server closes an idle connection with 1000; coming back to the tab reconnects (and
  // resumes every thread), as sending does.
  document.addEventListener("visibilitychange", () => {
    const { state, code } = client.status;
    if (document.visibilityState === "visible" && state === "closed" && code === 1000) void client.connect();
  });
  root.render(
    <StrictMode>
      <RunwireProvider client={client} rest={rest} history={history}>
        <App userId={claims.sub} token={token} />
      </RunwireProvider>
    </StrictMode>,
  );
}

void main();
