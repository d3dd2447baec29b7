import { useRunwireStore, type ConnectionView } from "@runwire/react";
import { useEffect, useState, type ReactNode } from "react";

const CLOSED: Record<number, string> = {
  1000: "idle — reconnects when you send",
  1008: "closed by the server (too many requests)",
  4001: "signed out: the token is invalid or expired",
  4003: "refused: this origin or account is not allowed",
  4008: "too many open tabs for this account",
};

function label(c: ConnectionView, seconds: number | null): string {
  switch (c.state) {
    case "idle":
    case "connecting":
      return "connecting…";
    case "open":
      return "connected";
    case "reconnecting":
      return seconds !== null && seconds > 0 ? `reconnecting in ${seconds} s…` : "reconnecting…";
    case "closed":
      return (c.code !== null && CLOSED[c.code]) || `disconnected${c.code ? ` (${c.code})` : ""}`;
  }
}

/** The connection indicator (data-state is the client's state machine's state); after a
 *  close the client won't retry by itself (4008, 1008, 4003, idle), a button reconnects. */
export function ConnectionStatus({ connection }: { connection: ConnectionView }): ReactNode {
  const { client } = useRunwireStore();
  const [now, setNow] = useState(() => Date.now());
  const [since, setSince] = useState(() => Date.now());
  useEffect(() => { setSince(Date.now()); }, [connection.retryInMs, connection.attempt]);
  useEffect(() => {
    if (connection.state !== "reconnecting") return undefined;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [connection.state]);
  const seconds = connection.retryInMs === null ? null
    : Math.max(0, Math.ceil((connection.retryInMs - (now - since)) / 1000));
  return (
    <div className="status" data-testid="connection-status" data-state={connection.state}
         data-code={connection.code ?? undefined} role="status" aria-live="polite">
      <span className="dot" aria-hidden="true" /> {label(connection, seconds)}
      {connection.state === "closed" && connection.code !== 4001 && (
        <button type="button" className="reconnect" data-testid="reconnect" onClick={() => void client.connect()}>
          Reconnect
        </button>
      )}
    </div>
  );
}
