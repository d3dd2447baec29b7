// The runwire WebSocket client (docs/protocol.md): one socket, token auth by subprotocol,
// reconnect with backoff + jitter by close code, resume by seq, dedupe, chunk reassembly,
// an offline send queue with visible states, an application-level heartbeat.

import { backoffDelay, type BackoffOptions } from "./backoff.ts";
import { ChunkAssembler } from "./chunks.ts";
import { CloseCode, reconnectRule } from "./codes.ts";
import { isThreadEvent, parseFrame } from "./frames.ts";
import { Heartbeat } from "./heartbeat.ts";
import {
  base64url,
  type RunwireClientEventMap,
  type RunwireClientOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./options.ts";
import { Outbox } from "./outbox.ts";
import { SeqTracker } from "./seq.ts";
import type {
  ApprovalDecision,
  ConnectionEstablished,
  ConnectionStatus,
  OutboxItem,
  SendOptions,
  ServerFrame,
} from "./types.ts";

export { IDLE_PING_LIMIT_MS } from "./heartbeat.ts";
export {
  base64url,
  type RunwireClientEventMap,
  type RunwireClientOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./options.ts";

const OPEN = 1;

type Listeners = { [K in keyof RunwireClientEventMap]: Set<(v: RunwireClientEventMap[K]) => void> };

/**
 * One runwire connection for one user. Framework-free: subscribe with `on()`; every
 * handler gets immutable snapshots (`status`, `outbox` are replaced, never mutated).
 */
export class RunwireClient {
  private readonly url: string;
  private readonly getToken: (refresh: boolean) => Promise<string | null>;
  private readonly backoffOptions: BackoffOptions;
  private readonly random: () => number;
  private readonly WS: WebSocketConstructor | undefined;
  private readonly watchNetwork: boolean;

  private _status: ConnectionStatus = { state: "idle", code: null, reason: "", attempt: 0, retryInMs: null };
  private _established: ConnectionEstablished | null = null;
  private readonly queue: Outbox;
  private readonly listeners: Listeners = { status: new Set(), event: new Set(), frame: new Set(), outbox: new Set() };

  private ws: WebSocketLike | null = null;
  private token: string | null = null;
  private stopped = true;
  private attempt = 0;
  /** A 4001 already led to a token refresh since the last open. */
  private refreshed = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly heartbeat: Heartbeat;
  private readonly trackers = new Map<string, SeqTracker>();
  private readonly resuming = new Set<string>();
  private readonly chunks = new ChunkAssembler();
  private networkAttached = false;
  private readonly autoFollow: boolean;
  /** Threads kept gapless when `autoFollow` is false. */
  private readonly followed = new Set<string>();
  /** `stop_agent` payloads asked for while not open: sent once connected. */
  private readonly pendingStops = new Map<string, Record<string, unknown>>();

  constructor(options: RunwireClientOptions) {
    this.url = options.url;
    this.getToken = options.getToken;
    this.backoffOptions = options.backoff ?? {};
    this.random = options.random ?? Math.random;
    this.WS = options.WebSocket;
    this.watchNetwork = options.watchNetwork ?? typeof window !== "undefined";
    this.autoFollow = options.autoFollow ?? true;
    this.queue = new Outbox((items) => this.emit("outbox", items), () => this.flush());
    this.heartbeat = new Heartbeat({
      ping: () => { this.sendFrame({ type: "ping", payload: {} }); },
      dead: () => this.drop(4000, "heartbeat timeout", 4000),
    });
  }

  private isFollowed(threadId: string): boolean {
    return this.autoFollow || this.followed.has(threadId);
  }

  /** The connection's state; replaced (new object) on every change. */
  get status(): ConnectionStatus {
    return this._status;
  }

  /** The last `connection_established` payload (kept while reconnecting). */
  get established(): ConnectionEstablished | null {
    return this._established;
  }

  /** Messages not acked yet (queued / sent / failed); replaced on every change. */
  get outbox(): readonly OutboxItem[] {
    return this.queue.items;
  }

  /** Subscribes; returns the unsubscribe function. A throwing handler is logged, not fatal. */
  on<K extends keyof RunwireClientEventMap>(type: K, fn: (value: RunwireClientEventMap[K]) => void): () => void {
    const set = this.listeners[type] as Set<(v: RunwireClientEventMap[K]) => void>;
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }

  private emit<K extends keyof RunwireClientEventMap>(type: K, value: RunwireClientEventMap[K]): void {
    const set = this.listeners[type] as Set<(v: RunwireClientEventMap[K]) => void>;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (err) {
        console.error(`runwire: a "${type}" listener threw`, err);
      }
    }
  }

  private setStatus(patch: Partial<ConnectionStatus>): void {
    this._status = { ...this._status, ...patch };
    this.emit("status", this._status);
  }

  // ---- connecting ----------------------------------------------------------------------

  /**
   * Opens the connection (no-op while open, connecting or waiting to retry). Asks
   * `getToken(false)` for the current token (falling back to the last one). Resolves once
   * the socket is being opened, not when it is established (watch `status`).
   */
  async connect(): Promise<void> {
    if (this.ws || this.reconnectTimer) return;
    this.stopped = false;
    this.refreshed = false;
    this.attachNetwork();
    let token: string | null = null;
    try {
      token = await this.getToken(false);
    } catch (err) {
      console.error("runwire: getToken failed", err);
    }
    if (this.stopped || this.ws || this.reconnectTimer) return;
    token ??= this.token;
    if (!token) {
      this.setStatus({ state: "closed", code: 4001, reason: "no token", retryInMs: null });
      return;
    }
    this.token = token;
    this.open();
  }

  /** Closes for good (no reconnect) until the next `connect()`. The outbox is kept. */
  close(): void {
    this.stopped = true;
    this.clearReconnect();
    this.detachNetwork();
    const ws = this.detach();
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch {
        /* already closing */
      }
    }
    this.socketGone();
    this.setStatus({ state: "closed", code: 1000, reason: "client closed", retryInMs: null });
  }

  private open(): void {
    this.clearReconnect();
    const WS = this.WS ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new Error("RunwireClient: no WebSocket implementation");
    this.setStatus({ state: this.attempt === 0 ? "connecting" : "reconnecting", retryInMs: null });
    let ws: WebSocketLike;
    try {
      ws = new WS(this.url, ["runwire.v1", `jwt.${base64url(this.token ?? "")}`]);
    } catch (err) {
      console.error("runwire: cannot open the socket", err);
      this.afterClose(1006, "cannot open");
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.receive(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.detach();
      this.socketGone();
      this.afterClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      /* a close follows */
    };
  }

  /** Forgets the current socket (its handlers are unhooked); returns it. */
  private detach(): WebSocketLike | null {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = null;
      ws.onopen = null;
    }
    return ws;
  }

  /** Closes the socket ourselves and treats it as closed with `code` at once. */
  private drop(code: number, reason: string, wireCode?: number): void {
    const ws = this.detach();
    if (!ws) return;
    try {
      ws.close(wireCode, reason);
    } catch {
      /* already closing */
    }
    this.socketGone();
    this.afterClose(code, reason);
  }

  /** The socket is gone: partial chunks dropped, un-acked messages back to queued. */
  private socketGone(): void {
    this.heartbeat.stop();
    this.chunks.reset();
    this.resuming.clear();
    this.queue.requeueSent();
  }

  private afterClose(code: number, reason: string): void {
    if (this.stopped) {
      this.setStatus({ state: "closed", code, reason, retryInMs: null });
      return;
    }
    switch (reconnectRule(code)) {
      case "never":
        this.setStatus({ state: "closed", code, reason, retryInMs: null });
        return;
      case "on-demand": // idle timeout: the next send / resume reconnects
        this.attempt = 0;
        this.setStatus({ state: "closed", code, reason, attempt: 0, retryInMs: null });
        return;
      case "refresh-token":
        void this.refreshToken(reason);
        return;
      case "backoff":
        this.scheduleReconnect(code, reason);
    }
  }

  private async refreshToken(reason: string): Promise<void> {
    const old = this.token;
    if (this.refreshed) {
      this.setStatus({ state: "closed", code: CloseCode.UNAUTHORIZED, reason: reason || "token rejected", retryInMs: null });
      return;
    }
    this.refreshed = true;
    this.setStatus({ state: "reconnecting", code: 4001, reason, retryInMs: null });
    let fresh: string | null = null;
    try {
      fresh = await this.getToken(true);
    } catch (err) {
      console.error("runwire: getToken(true) failed", err);
    }
    if (this.stopped || this.ws) return;
    if (!fresh || fresh === old) {
      this.setStatus({ state: "closed", code: 4001, reason: reason || "token expired", retryInMs: null });
      return;
    }
    this.token = fresh;
    this.attempt += 1;
    this.setStatus({ attempt: this.attempt });
    this.open();
  }

  private scheduleReconnect(code: number, reason: string): void {
    this.clearReconnect();
    this.attempt += 1;
    const delay = backoffDelay(this.attempt - 1, this.backoffOptions, this.random);
    this.setStatus({ state: "reconnecting", code, reason, attempt: this.attempt, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopped && !this.ws) this.open();
    }, delay);
  }

  private clearReconnect(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  /** After an idle close (1000), `send()`/`resume()` reconnect. */
  private reconnectOnDemand(): void {
    if (this.stopped || this.ws || this.reconnectTimer) return;
    if (this._status.state === "closed" && this._status.code === 1000) void this.connect();
  }

  // ---- browser network events ---------------------------------------------------------

  private readonly onOffline = (): void => {
    // The browser knows before TCP does: drop the socket now (runs go on server-side).
    if (this.ws) this.drop(1006, "offline", 1000);
  };

  private readonly onOnline = (): void => {
    if (this.stopped || this.ws) return;
    if (this._status.state !== "reconnecting") return;
    if (this._status.code === 4001) return; // waiting for a token
    this.clearReconnect();
    this.open();
  };

  private attachNetwork(): void {
    if (!this.watchNetwork || this.networkAttached || typeof window === "undefined") return;
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
    this.networkAttached = true;
  }

  private detachNetwork(): void {
    if (!this.networkAttached || typeof window === "undefined") return;
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    this.networkAttached = false;
  }

  // ---- heartbeat (heartbeat.ts) --------------------------------------------------------

  private startHeartbeat(): void {
    const s = this._established?.heartbeat_interval;
    this.heartbeat.start(typeof s === "number" && s > 0 ? s * 1000 : 0);
  }

  // ---- receiving ------------------------------------------------------------------------

  private receive(data: unknown): void {
    if (typeof data !== "string") {
      this.heartbeat.received(true); // alive; not a use of the connection
      return;
    }
    let frame = parseFrame(data);
    this.heartbeat.received(frame === null || frame.type === "pong");
    if (!frame) return;
    if (frame.type === "chunk") {
      const text = this.chunks.add(frame.payload);
      if (text === null) return;
      frame = parseFrame(text);
      if (!frame || frame.type === "chunk") return;
    }
    this.handle(frame);
  }

  private handle(frame: ServerFrame): void {
    if (isThreadEvent(frame)) {
      const tracker = this.tracker(frame.thread_id);
      if (!tracker.accept(frame.seq)) return; // duplicate
      if (tracker.hasGap && !this.resuming.has(frame.thread_id) && this.isFollowed(frame.thread_id)) {
        this.resume(frame.thread_id);
      }
      this.emit("event", frame);
      return;
    }
    switch (frame.type) {
      case "connection_established":
        this._established = frame.payload;
        this.attempt = 0;
        this.refreshed = false;
        this.setStatus({ state: "open", attempt: 0, retryInMs: null });
        this.startHeartbeat();
        this.emit("frame", frame);
        for (const threadId of this.trackers.keys()) if (this.isFollowed(threadId)) this.resume(threadId);
        this.flushStops();
        this.flush();
        return;
      case "message_ack":
        this.queue.acked(frame.payload);
        break;
      case "error":
        this.queue.refused(frame.payload);
        break;
      case "replay_complete":
        if (typeof frame.payload.thread_id === "string") this.resuming.delete(frame.payload.thread_id);
        break;
      default:
        break;
    }
    this.emit("frame", frame);
  }

  // ---- threads ---------------------------------------------------------------------------

  private tracker(threadId: string): SeqTracker {
    let t = this.trackers.get(threadId);
    if (!t) {
      t = new SeqTracker();
      this.trackers.set(threadId, t);
    }
    return t;
  }

  /** Every seq <= this of the thread was seen (0 for an unknown thread). */
  lastSeq(threadId: string): number {
    return this.trackers.get(threadId)?.contiguous ?? 0;
  }

  /**
   * The app holds `threadId` up to `lastSeq` (REST or local cache): events <= lastSeq are
   * dropped as duplicates, and the thread is resumed now (when open) and after every
   * reconnect.
   */
  follow(threadId: string, lastSeq: number): void {
    this.tracker(threadId).markThrough(lastSeq);
    this.followed.add(threadId);
    if (this.isOpen()) this.resume(threadId);
    else this.reconnectOnDemand();
  }

  /** Stops tracking a thread (e.g. deleted): no more resumes for it. */
  unfollow(threadId: string): void {
    this.trackers.delete(threadId);
    this.resuming.delete(threadId);
    this.followed.delete(threadId);
  }

  /**
   * Asks for the thread's events after `afterSeq` (default: its contiguous seq); answered by
   * `replay_complete`. false when not open (the thread is then resumed after connecting).
   */
  resume(threadId: string, afterSeq?: number): boolean {
    const tracker = this.tracker(threadId);
    this.followed.add(threadId);
    if (!this.isOpen()) {
      this.reconnectOnDemand();
      return false;
    }
    const after = Math.max(0, Math.floor(afterSeq ?? tracker.contiguous));
    this.resuming.add(threadId);
    return this.sendFrame({ type: "resume", payload: { thread_id: threadId, after_seq: after } });
  }

  /**
   * Cancels a run, or the active and queued runs of a thread. true: sent now; false: not
   * open, so the stop is queued and sent as soon as the connection is (re)established
   * (a run that ended meanwhile makes it a no-op on the server).
   */
  stop(target: { runId: string } | { threadId: string }): boolean {
    const payload = "runId" in target ? { run_id: target.runId } : { thread_id: target.threadId };
    const key = "runId" in target ? `run:${target.runId}` : `thread:${target.threadId}`;
    if (this.isOpen() && this.sendFrame({ type: "stop_agent", payload })) return true;
    this.pendingStops.set(key, payload);
    this.reconnectOnDemand();
    return false;
  }

  /**
   * Decides a tool call waiting for approval (`approve_tool`, SPEC 7): approve (with
   * edited `args`, validated by the server) or deny (with an optional `reason`). The
   * answer is the `approval_resolved` event every tab receives, or an `error` frame whose
   * `request_id` is `approve:<toolCallId>` (`conflict`: decided already — the first
   * decision wins; `validation_error`: bad `args`, nothing decided). false: not open.
   */
  approve(runId: string, toolCallId: string, decision: ApprovalDecision): boolean {
    const payload: Record<string, unknown> = { run_id: runId, tool_call_id: toolCallId, approved: decision.approved };
    if (decision.reason !== undefined && decision.reason.trim()) payload.reason = decision.reason.trim();
    if (decision.approved && decision.args !== undefined) payload.args = decision.args;
    return this.isOpen() && this.sendFrame({ type: "approve_tool", payload, request_id: `approve:${toolCallId}` });
  }

  /** Run ids whose stop waits for the connection. */
  get queuedStops(): readonly string[] {
    return [...this.pendingStops.values()].flatMap((p) => (typeof p.run_id === "string" ? [p.run_id] : []));
  }

  private flushStops(): void {
    for (const [key, payload] of [...this.pendingStops]) {
      if (!this.sendFrame({ type: "stop_agent", payload })) return;
      this.pendingStops.delete(key);
    }
  }

  /**
   * "Retry now": while waiting to reconnect (or while an attempt hangs), tries at once (the
   * backoff continues from there); after a close the client does not retry by itself
   * (4008, 1008, 4003, idle), connects again. No-op while open.
   */
  reconnectNow(): void {
    if (this.ws && this.isOpen()) return;
    if (this.stopped) {
      void this.connect();
      return;
    }
    const pending = this.detach(); // an attempt still in flight starts over, now
    if (pending) {
      try {
        pending.close();
      } catch {
        /* not open yet */
      }
    }
    this.clearReconnect();
    this.open();
  }

  /** Sends an application-level `ping` (answered by `pong`). false when not open. */
  ping(): boolean {
    return this.sendFrame({ type: "ping", payload: {} });
  }

  private isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === OPEN && this._status.state === "open";
  }

  private sendFrame(frame: { type: string; payload: Record<string, unknown>; request_id?: string }): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      if (frame.type !== "ping") this.heartbeat.used();
      return true;
    } catch (err) {
      console.error("runwire: send failed", err);
      return false;
    }
  }

  // ---- the outbox (outbox.ts) ----------------------------------------------------------

  /**
   * Queues a user message and returns it at once (optimistic): state `queued`, or `sent` when
   * the socket is open; `failed` (code `too_large`) when its frame exceeds the server's
   * `max_message_size`. Sent again with the same message_id after a reconnect until acked.
   */
  send(content: string, opts: SendOptions = {}): OutboxItem {
    const item = this.queue.add(content, opts);
    this.flush();
    this.reconnectOnDemand();
    return this.queue.get(item.messageId) ?? item; // its state now (sent, or failed too_large)
  }

  /** A failed message goes back to the queue (sent now when open). */
  retry(messageId: string): boolean {
    if (!this.queue.requeue(messageId)) return false;
    this.flush();
    this.reconnectOnDemand();
    return true;
  }

  /** Removes a message from the outbox (it is not sent again; one on the wire may still land). */
  discard(messageId: string): boolean {
    return this.queue.discard(messageId);
  }

  /** Puts back messages saved by an earlier page (e.g. `LocalHistory.loadOutbox()`);
   * `sent` ones count as queued. Existing message ids are kept as they are. */
  restoreOutbox(items: readonly OutboxItem[]): void {
    if (!this.queue.restore(items)) return;
    this.flush();
    this.reconnectOnDemand();
  }

  /** Sends every queued message that may go now. */
  private flush(): void {
    if (!this.isOpen()) return;
    this.queue.flush(this._established?.max_message_size, (text) => {
      if (!this.ws) return false;
      try {
        this.ws.send(text);
        this.heartbeat.used();
        return true;
      } catch {
        return false;
      }
    });
  }
}
