// The offline send queue: user messages from `send()` until the server acks them. Each
// item is `queued` (waiting for an open socket, or for a rate limit's retry_after),
// `sent` (on the wire, no ack yet), or `failed` (refused, or too large); acked ones leave.
// Immutable snapshots: every change replaces the array (and calls `onChange`).

import { utf8Length } from "./chunks.ts";
import type { ControlPayloads } from "./frames.ts";
import type { OutboxItem, SendOptions } from "./types.ts";

const DEFAULT_RETRY_AFTER_MS = 1000;

function newId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

/** The `user_message` (or `start_agent`) frame of an item; its message_id is the request id. */
export function frameOf(m: OutboxItem): { type: string; payload: Record<string, unknown>; request_id: string } {
  const payload: Record<string, unknown> = m.agent
    ? { user_request: m.content, agent: m.agent, message_id: m.messageId }
    : { content: m.content, message_id: m.messageId };
  if (m.threadId) payload.thread_id = m.threadId;
  if (m.settings) payload.settings = m.settings;
  return { type: m.agent ? "start_agent" : "user_message", payload, request_id: m.messageId };
}

export class Outbox {
  private _items: readonly OutboxItem[] = [];
  /** message_id -> earliest time (ms) it may be resent (after `rate_limited`). */
  private readonly notBefore = new Map<string, number>();
  private readonly retryTimers = new Map<string, ReturnType<typeof setTimeout>>();

  /** `wake` is called when a rate-limited item may go again (the owner flushes). */
  constructor(private readonly onChange: (items: readonly OutboxItem[]) => void,
              private readonly wake: () => void) {}

  get items(): readonly OutboxItem[] {
    return this._items;
  }

  get(messageId: string): OutboxItem | undefined {
    return this._items.find((m) => m.messageId === messageId);
  }

  private set(items: readonly OutboxItem[]): void {
    this._items = items;
    this.onChange(items);
  }

  private patch(messageId: string, patch: Partial<OutboxItem>): void {
    let found = false;
    const items = this._items.map((m) => (m.messageId === messageId ? ((found = true), { ...m, ...patch }) : m));
    if (found) this.set(items);
  }

  /** Queues a message (replacing one of the same id); returns the queued item. */
  add(content: string, opts: SendOptions = {}): OutboxItem {
    const item: OutboxItem = {
      messageId: opts.messageId ?? newId(), content, threadId: opts.threadId ?? null,
      state: "queued", error: null, runId: null, createdAt: Date.now(),
    };
    if (opts.settings) item.settings = opts.settings;
    if (opts.agent) item.agent = opts.agent;
    this.set([...this._items.filter((m) => m.messageId !== item.messageId), item]);
    return item;
  }

  /** A failed message goes back to `queued`; false when there is no such failed message. */
  requeue(messageId: string): boolean {
    if (this.get(messageId)?.state !== "failed") return false;
    this.patch(messageId, { state: "queued", error: null });
    return true;
  }

  discard(messageId: string): boolean {
    if (!this.get(messageId)) return false;
    this.clearRetry(messageId);
    this.set(this._items.filter((m) => m.messageId !== messageId));
    return true;
  }

  /** Adds saved items not known yet (`sent` → `queued`, `acked` dropped); true if any. */
  restore(items: readonly OutboxItem[]): boolean {
    const known = new Set(this._items.map((m) => m.messageId));
    const added = items
      .filter((m) => !known.has(m.messageId) && m.state !== "acked")
      .map((m): OutboxItem => (m.state === "sent" ? { ...m, state: "queued" } : { ...m }));
    if (!added.length) return false;
    this.set([...this._items, ...added]);
    return true;
  }

  /** The socket is gone: what was on the wire without an ack is queued again. */
  requeueSent(): void {
    if (this._items.some((m) => m.state === "sent")) {
      this.set(this._items.map((m) => (m.state === "sent" ? { ...m, state: "queued" } : m)));
    }
  }

  /** Sends (through `send`, false = not sent) every queued item that may go now; one over
   *  `maxSize` bytes fails locally as `too_large`. */
  flush(maxSize: number | undefined, send: (text: string) => boolean): void {
    const now = Date.now();
    let changed = false;
    const items = this._items.map((m): OutboxItem => {
      if (m.state !== "queued") return m;
      const text = JSON.stringify(frameOf(m));
      if (typeof maxSize === "number" && maxSize > 0 && utf8Length(text) > maxSize) {
        changed = true;
        return {
          ...m, state: "failed",
          error: { code: "too_large", message: `message is larger than the server's limit of ${maxSize} bytes` },
        };
      }
      const wait = this.notBefore.get(m.messageId);
      if (wait !== undefined && wait > now) return m;
      if (!send(text)) return m;
      changed = true;
      return { ...m, state: "sent" };
    });
    if (changed) this.set(items);
  }

  /** `message_ack`: stored by the server; the item leaves the queue (after one `acked`
   *  snapshot carrying its thread and run ids). */
  acked(p: Partial<ControlPayloads["message_ack"]>): void {
    const id = typeof p.message_id === "string" ? p.message_id : null;
    if (id === null || !this.get(id)) return;
    this.clearRetry(id);
    this.patch(id, {
      state: "acked", error: null,
      threadId: typeof p.thread_id === "string" ? p.thread_id : null,
      runId: typeof p.run_id === "string" ? p.run_id : null,
    });
    this.set(this._items.filter((m) => m.messageId !== id));
  }

  /** `error` answering one of ours: `rate_limited` waits `retry_after_ms` and goes again;
   *  anything else fails the item with the server's code. */
  refused(p: Partial<ControlPayloads["error"]>): void {
    const id = typeof p.request_id === "string" ? p.request_id : null;
    const item = id === null ? undefined : this.get(id);
    if (!item || id === null || item.state === "acked") return;
    const code = typeof p.code === "string" ? p.code : "error";
    const message = typeof p.message === "string" ? p.message : code;
    if (code === "rate_limited") {
      const after = typeof p.retry_after_ms === "number" && p.retry_after_ms >= 0 ? p.retry_after_ms : DEFAULT_RETRY_AFTER_MS;
      this.notBefore.set(id, Date.now() + after);
      this.clearRetry(id, false);
      this.retryTimers.set(id, setTimeout(() => {
        this.retryTimers.delete(id);
        this.notBefore.delete(id);
        this.wake();
      }, after));
      this.patch(id, { state: "queued", error: null });
      return;
    }
    this.clearRetry(id);
    this.patch(id, { state: "failed", error: { code, message } });
  }

  private clearRetry(id: string, forgetWait = true): void {
    const t = this.retryTimers.get(id);
    if (t) clearTimeout(t);
    this.retryTimers.delete(id);
    if (forgetWait) this.notBefore.delete(id);
  }
}
