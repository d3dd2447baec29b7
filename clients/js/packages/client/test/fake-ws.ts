// A fake WebSocket for tests: records what the client sends, lets the test open it,
// deliver frames and close it from the server's side.
import type { WebSocketLike } from "../src/client.ts";

export interface SentFrame {
  type: string;
  payload: Record<string, unknown>;
  request_id?: string;
}

export class FakeWebSocket implements WebSocketLike {
  static instances: FakeWebSocket[] = [];

  static reset(): void {
    FakeWebSocket.instances = [];
  }

  /** The most recently created socket. */
  static get last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (!ws) throw new Error("no socket was created");
    return ws;
  }

  readyState = 0;
  readonly sent: string[] = [];
  /** Set when the client called close(). */
  closedByClient: { code: number | undefined; reason: string | undefined } | null = null;
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;

  constructor(readonly url: string, readonly protocols?: string | string[]) {
    FakeWebSocket.instances.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }

  // ---- test side ----

  /** The sent frames, parsed. */
  frames(): SentFrame[] {
    return this.sent.map((s) => JSON.parse(s) as SentFrame);
  }

  framesOfType(type: string): SentFrame[] {
    return this.frames().filter((f) => f.type === type);
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }

  /** Opens and delivers `connection_established`. */
  establish(overrides: Record<string, unknown> = {}): void {
    this.open();
    this.deliver({
      type: "connection_established",
      payload: {
        connection_id: `c${FakeWebSocket.instances.indexOf(this)}`, user_id: "alice", node_id: "n1", protocol: 1,
        heartbeat_interval: 30, max_message_size: 65536,
        limits: { max_connections_per_user: 3, rate_limit_messages: "30/minute", rate_limit_frames: "1000/minute", outbound_chunk_size: 65536 },
        model: { name: "builtin", demo: true },
        ...overrides,
      },
      timestamp: "2026-12-01T00:00:00.000Z",
    });
  }

  deliver(frame: object | string): void {
    const data = typeof frame === "string" ? frame : JSON.stringify(frame);
    this.onmessage?.({ data } as MessageEvent);
  }

  /** A close from the server's side (or the network). */
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 } as CloseEvent);
  }
}

/** A thread event frame. */
export function ev(threadId: string, seq: number, type = "agent_thinking", payload: Record<string, unknown> = {},
                   runId: string | null = "R1"): Record<string, unknown> {
  const f: Record<string, unknown> = { type, payload, thread_id: threadId, seq, timestamp: "2026-12-01T00:00:00.000Z" };
  if (runId) f.run_id = runId;
  return f;
}

/** Lets pending promise callbacks run (fake timers don't touch microtasks). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}
