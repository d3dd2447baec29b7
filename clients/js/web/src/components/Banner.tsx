import type { ConnectionView } from "@runwire/react";
import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import { claimsOf, isExpired, storeToken } from "../token.ts";

/** What stands between the user and the server, as the main pane's banner says it. */
export type Blocked = "signed-out" | "too-many-tabs" | "refused" | "rate-limited";
export type BannerKind = Blocked | "offline" | "unreachable";

/** Closes after which the client waits for the user (no retry of its own). */
export function blockedBy(c: ConnectionView, signedOut: boolean): Blocked | null {
  if (signedOut || (c.state === "closed" && c.code === 4001)) return "signed-out";
  if (c.state !== "closed") return null;
  if (c.code === 4008) return "too-many-tabs";
  if (c.code === 4003) return "refused";
  if (c.code === 1008) return "rate-limited";
  return null;
}

export function bannerKind(c: ConnectionView, online: boolean, signedOut: boolean): BannerKind | null {
  const blocked = blockedBy(c, signedOut);
  if (blocked) return blocked;
  if (c.state === "open" || c.state === "idle") return null;
  if (c.state === "closed" && c.code === 1000) return null; // idle close: sending reconnects
  if (!online) return "offline";
  // The first attempt after a drop is quick; say "unreachable" once one has failed.
  if (c.state === "reconnecting" && c.attempt >= 1) return "unreachable";
  if (c.state === "closed") return "unreachable";
  return null;
}

function useCountdown(c: ConnectionView): number | null {
  const [now, setNow] = useState(() => Date.now());
  const [since, setSince] = useState(() => Date.now());
  useEffect(() => { setSince(Date.now()); setNow(Date.now()); }, [c.retryInMs, c.attempt]);
  useEffect(() => {
    if (c.state !== "reconnecting") return undefined;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [c.state]);
  return c.retryInMs === null ? null : Math.max(0, Math.ceil((c.retryInMs - (now - since)) / 1000));
}

function SignIn(): ReactNode {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = (e: FormEvent): void => {
    e.preventDefault();
    const token = value.trim().replace(/^.*#token=/, "");
    if (!token) return;
    if (!claimsOf(token)?.sub) { setError("That is not a runwire token."); return; }
    if (isExpired(token)) { setError("That token has expired too."); return; }
    storeToken(token);
    location.reload();
  };
  return (
    <form className="banner-form" onSubmit={submit}>
      <label htmlFor="banner-token">Paste a new token or login link (<code>runwire token --user NAME --url</code>)</label>
      <input id="banner-token" data-testid="banner-token-input" value={value} autoComplete="off"
             onChange={(e) => setValue(e.target.value)} />
      <button type="submit">Sign in</button>
      {error && <span className="error">{error}</span>}
    </form>
  );
}

/** The main pane's banner: offline / server unreachable / signed out / refused, with the
 *  one action that helps ("Retry now", "Reconnect", sign in). */
export function Banner({ connection, online, signedOut, onRetry }: {
  connection: ConnectionView; online: boolean; signedOut: boolean; onRetry: () => void;
}): ReactNode {
  const kind = bannerKind(connection, online, signedOut);
  const seconds = useCountdown(connection);
  if (!kind) return null;
  const retry = (label: string): ReactNode => (
    <button type="button" data-testid="banner-retry" onClick={onRetry}>{label}</button>
  );
  let text: ReactNode;
  let action: ReactNode = null;
  switch (kind) {
    case "offline":
      text = "You are offline. Messages you send wait here and go out when the network is back.";
      action = retry("Retry now");
      break;
    case "unreachable":
      text = `The network is up but the server can't be reached${seconds ? ` — retrying in ${seconds} s` : " — retrying"}.`;
      action = retry("Retry now");
      break;
    case "signed-out":
      text = "You are signed out: your token has expired or is no longer accepted.";
      action = <SignIn />;
      break;
    case "too-many-tabs":
      text = "Too many open tabs for this account: close one, then reconnect here.";
      action = retry("Reconnect");
      break;
    case "refused":
      text = "The server refused this page (origin or account not allowed).";
      action = retry("Reconnect");
      break;
    case "rate-limited":
      text = "The server closed the connection: too many requests. Wait a moment, then reconnect.";
      action = retry("Reconnect");
      break;
  }
  return (
    <div className={`banner ${kind}`} data-testid="conn-banner" data-kind={kind}
         role={kind === "signed-out" ? "alert" : "status"}>
      <span className="banner-text">{text}</span>
      {action}
    </div>
  );
}
