import { afterEach, beforeEach, vi, type Mock } from "vitest";
import { RunwireClient, type RunwireClientOptions } from "../src/client.ts";
import type { ServerFrame, ThreadEvent, ConnectionStatus, OutboxItem } from "../src/types.ts";
import { FakeWebSocket, settle } from "./fake-ws.ts";

export interface Harness {
  client: RunwireClient;
  getToken: Mock<(refresh: boolean) => Promise<string | null>>;
  events: ThreadEvent[];
  frames: ServerFrame[];
  statuses: ConnectionStatus[];
  outboxes: Array<readonly OutboxItem[]>;
}

const made: RunwireClient[] = [];

/** Closes every client made by `harness()` (their window listeners and timers go too). */
export function closeAll(): void {
  for (const c of made.splice(0)) c.close();
}

/** Fake timers and a fresh FakeWebSocket registry per test; every client closed after it. */
export function useFakeClientClock(): void {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeWebSocket.reset();
  });
  afterEach(() => {
    closeAll();
    vi.useRealTimers();
  });
}

/** A client over FakeWebSocket; jitter fixed at random() = 1 (the full delay). */
export function harness(opts: Partial<RunwireClientOptions> = {},
                        tokens: Array<string | null> = ["tok-1"]): Harness {
  let i = 0;
  const getToken = vi.fn(async (_refresh: boolean) => {
    const t = tokens[Math.min(i, tokens.length - 1)] ?? null;
    i += 1;
    return t;
  });
  const client = new RunwireClient({
    url: "ws://test/ws", getToken, WebSocket: FakeWebSocket, random: () => 1, watchNetwork: false, ...opts,
  });
  made.push(client);
  const h: Harness = { client, getToken, events: [], frames: [], statuses: [], outboxes: [] };
  client.on("event", (e) => h.events.push(e));
  client.on("frame", (f) => h.frames.push(f));
  client.on("status", (s) => h.statuses.push(s));
  client.on("outbox", (o) => h.outboxes.push(o));
  return h;
}

/** connect() + open + connection_established; returns the socket. */
export async function connected(h: Harness, overrides: Record<string, unknown> = {}): Promise<FakeWebSocket> {
  await h.client.connect();
  await settle();
  const ws = FakeWebSocket.last;
  ws.establish(overrides);
  return ws;
}
