// The RunwireClient's options, the socket it needs and the events it emits.

import type { BackoffOptions } from "./backoff.ts";
import type { ConnectionStatus, OutboxItem, ServerFrame, ThreadEvent } from "./types.ts";

/** The part of the browser `WebSocket` the client uses (tests inject a fake). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface RunwireClientOptions {
  /** `ws(s)://host/ws` */
  url: string;
  /** The JWT; `refresh` is true after a 4001 close (return a new one, or null). */
  getToken: (refresh: boolean) => Promise<string | null>;
  backoff?: BackoffOptions;
  /** Default: `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Jitter source (default Math.random). */
  random?: () => number;
  /** Follow the browser's `online`/`offline` events (default: true when `window` exists). */
  watchNetwork?: boolean;
  /**
   * true (default): every thread the client sees an event of is kept gapless (gap → resume,
   * resumed after reconnects). false: only threads given to `follow()`/`resume()` are; an
   * app that loads a thread over REST when it opens it (like @runwire/react's ThreadStore)
   * then doesn't replay threads nobody looks at.
   */
  autoFollow?: boolean;
}

/** What `on()` can listen to. */
export interface RunwireClientEventMap {
  status: ConnectionStatus;
  /** Thread events: each (thread_id, seq) at most once per client, chunks joined. */
  event: ThreadEvent;
  /** Every other frame (connection_established, message_ack, thread_*, replay_complete, error, pong). */
  frame: ServerFrame;
  outbox: readonly OutboxItem[];
}

/** `base64url(text)` without padding (UTF-8). */
export function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
