// ThreadStore: the reconciled state of every thread the page knows, fed by one
// RunwireClient. Framework-free; the React hooks read it with useSyncExternalStore.
//
// Why one store for all threads: every connection receives the events of all the user's
// threads (a second tab sees what the first started). Events of a thread that is not loaded
// yet wait in `pending` and are applied on top of what loads (local cache or REST); the
// timeline reducer is idempotent by seq and orders by seq, so the order in which the live
// events, the cache and REST arrive does not matter: each event is shown once, in place.

import {
  addOptimistic,
  askedIn,
  applyEvent,
  applyEvents,
  removeOptimistic,
  emptyTimeline,
  updateOptimistic,
  type LocalHistory,
  type MessageItem,
  type OutboxItem,
  type OutboxState,
  type RestClient,
  type RunwireClient,
  type SendOptions,
  type ServerFrame,
  type ThreadEvent,
  type Timeline,
} from "@runwire/client";

import { serverTimeline } from "./load.ts";
import { ThreadListStore, type LoadState, type ThreadList } from "./threadlist.ts";

export type { LoadState, ThreadList } from "./threadlist.ts";

export interface ThreadEntry {
  readonly timeline: Timeline;
  readonly load: LoadState;
  readonly error: string | null;
  /** Where the shown history came from first (a reload shows the cache at once). */
  readonly source: "none" | "cache" | "server";
}

type Listener = () => void;

const MAX_PENDING = 5000; // events kept for a thread that is not loaded
const SAVE_DELAY_MS = 400;
/** Key of the timeline that holds optimistic messages of a thread not created yet. */
export const DRAFT = "";

/** An optimistic timeline message as the outbox item it stands for. */
function asOutbox(item: MessageItem, threadId: string, state?: OutboxState): OutboxItem {
  return {
    messageId: item.id, content: item.content, threadId, state: state ?? item.outbox ?? "queued",
    error: null, runId: item.runId, createdAt: Date.now(),
  };
}

function newId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class ThreadStore {
  private readonly entries = new Map<string, ThreadEntry>();
  private readonly pending = new Map<string, ThreadEvent[]>();
  private readonly listeners = new Set<Listener>();
  private readonly createdListeners = new Set<(threadId: string, messageId: string) => void>();
  private readonly eventListeners = new Set<(ev: ThreadEvent, timeline: Timeline) => void>();
  private readonly saveTimers = new Map<string, ReturnType<typeof setTimeout>>();
  /** Threads being reloaded after `replay_complete {complete: false}` (one load at a time). */
  private readonly reloading = new Set<string>();
  /** Threads whose pending buffer overflowed: they load from the server, not the cache. */
  private readonly overflowed = new Set<string>();
  /** Threads deleted while this page was open: nothing recreates them. */
  private readonly deleted = new Set<string>();
  /** "New chat" messages typed before the first one's ack: sent into its thread then. */
  private held: Array<{ item: OutboxItem; opts: Omit<SendOptions, "threadId"> }> = [];
  private readonly list: ThreadListStore;

  constructor(
    readonly client: RunwireClient,
    readonly rest: RestClient,
    readonly history: LocalHistory | null = null,
  ) {
    this.list = new ThreadListStore(rest, () => this.notify());
    this.entries.set(DRAFT, { timeline: emptyTimeline(DRAFT), load: "loaded", error: null, source: "none" });
  }

  /** Start listening to the client; returns the function that stops it (idempotent pair,
   *  so React's StrictMode double effects are harmless). */
  attach(): () => void {
    const client = this.client;
    const offs = [
      client.on("event", (ev) => this.onEvent(ev)),
      client.on("frame", (f) => this.onFrame(f)),
      client.on("outbox", (items) => this.onOutbox(items)),
      client.on("status", (s) => {
        // Threads created or renamed while this page was offline.
        if (s.state === "open" && this.list.value.load === "loaded") void this.loadThreads();
      }),
    ];
    let attached = true;
    if (this.history) {
      // Messages an earlier page could not send: back in the queue, shown where they belong.
      void this.history.loadOutbox().then((items) => {
        if (!attached || !items.length) return;
        this.client.restoreOutbox(items);
        for (const item of this.client.outbox) {
          const key = item.threadId ?? DRAFT;
          const entry = this.entries.get(key);
          if (key === DRAFT || entry?.load === "loaded") {
            this.put(key, { timeline: addOptimistic(entry?.timeline ?? emptyTimeline(key), item) });
          }
        }
      });
    }
    return () => {
      attached = false;
      for (const off of offs) off();
      for (const t of this.saveTimers.values()) clearTimeout(t);
      this.saveTimers.clear();
    };
  }

  // ---- subscription (useSyncExternalStore) ---------------------------------------------

  subscribe = (fn: Listener): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  /** Called when a message sent without a thread started one. */
  onThreadCreated(fn: (threadId: string, messageId: string) => void): () => void {
    this.createdListeners.add(fn);
    return () => this.createdListeners.delete(fn);
  }

  /** Called with each live event of a loaded thread, after it is applied (not for history
   *  loaded from the cache or REST). */
  onLiveEvent(fn: (ev: ThreadEvent, timeline: Timeline) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  private notify(): void {
    for (const fn of [...this.listeners]) fn();
  }

  entry(threadId: string | null): ThreadEntry | undefined {
    return this.entries.get(threadId ?? DRAFT);
  }

  threads(): ThreadList {
    return this.list.value;
  }

  /** The thread was deleted (here or in another tab) while this page was open. */
  isDeleted(threadId: string | null): boolean {
    return threadId !== null && this.deleted.has(threadId);
  }

  private put(threadId: string, patch: Partial<ThreadEntry>): void {
    const old = this.entries.get(threadId) ?? {
      timeline: emptyTimeline(threadId), load: "idle" as const, error: null, source: "none" as const,
    };
    const next = { ...old, ...patch };
    if (next.timeline === old.timeline && next.load === old.load && next.error === old.error
        && next.source === old.source) return;
    this.entries.set(threadId, next);
    if (threadId !== DRAFT && next.load === "loaded" && next.timeline !== old.timeline) {
      this.scheduleSave(threadId);
    }
    this.notify();
  }

  // ---- sending -------------------------------------------------------------------------

  send(threadId: string | null, content: string, opts: Omit<SendOptions, "threadId"> = {}): OutboxItem {
    if (threadId === null && this.draftInFlight()) {
      // Without a thread id the server would start a second thread: wait for the first ack.
      const item: OutboxItem = {
        messageId: opts.messageId ?? newId(), content, threadId: null, state: "queued", error: null,
        runId: null, createdAt: Date.now(),
      };
      this.held.push({ item, opts: { ...opts, messageId: item.messageId } });
      this.put(DRAFT, { timeline: addOptimistic(this.draftTimeline(), item) });
      return item;
    }
    const item = this.client.send(content, { ...opts, threadId });
    const key = threadId ?? DRAFT;
    const entry = this.entries.get(key);
    this.put(key, { timeline: addOptimistic(entry?.timeline ?? emptyTimeline(key), item) });
    return item;
  }

  /** A queued or failed message the user gives up on: gone from the queue and the view. */
  discard(messageId: string): void {
    this.client.discard(messageId);
    this.held = this.held.filter((h) => h.item.messageId !== messageId);
    for (const [key, entry] of this.entries) {
      const timeline = removeOptimistic(entry.timeline, messageId);
      if (timeline !== entry.timeline) this.put(key, { timeline });
    }
    this.releaseHeld();
  }

  /** The "new chat" message others waited for failed or was dismissed: the next one
   *  starts the thread instead. */
  private releaseHeld(): void {
    if (!this.held.length || this.draftInFlight()) return;
    const next = this.held.shift();
    if (!next) return;
    this.put(DRAFT, { timeline: removeOptimistic(this.draftTimeline(), next.item.messageId) });
    this.send(null, next.item.content, next.opts);
  }

  private draftTimeline(): Timeline {
    return this.entries.get(DRAFT)?.timeline ?? emptyTimeline(DRAFT);
  }

  /** A "new chat" message is on its way to becoming a thread (not failed, not held). */
  private draftInFlight(): boolean {
    return this.client.outbox.some((o) => o.threadId === null && o.state !== "failed");
  }

  /** Stops the thread's current run only (by run id): a follow-up queued behind it still
   *  runs. true: sent; false: nothing running, or queued until the connection is back. */
  stop(threadId: string): boolean {
    const runId = this.entries.get(threadId)?.timeline.activeRunId;
    if (!runId) return false;
    return this.client.stop({ runId });
  }

  /**
   * Runs the request of `runId` again (default: the thread's last run): a new message with
   * the same text on the same thread, so a new run; the earlier answer stays in the log.
   */
  regenerate(threadId: string, runId?: string): OutboxItem | null {
    const items = this.entries.get(threadId)?.timeline.items ?? [];
    const target = runId ?? [...items].reverse().find((i) => i.kind === "run")?.runId;
    const tl = this.entries.get(threadId)?.timeline;
    const asked = target && tl ? askedIn(tl, target) : null;
    return asked ? this.send(threadId, asked.content) : null;
  }

  /** Sends an edited version of an earlier user message as a new message (a new run on the
   *  same thread; what was asked and answered before stays in the log). */
  edit(threadId: string, content: string): OutboxItem {
    return this.send(threadId, content);
  }

  // ---- loading -------------------------------------------------------------------------

  /** Show a thread: the local cache at once, then the server's log; follow it live. */
  async open(threadId: string): Promise<void> {
    const entry = this.entries.get(threadId);
    if (this.deleted.has(threadId) || entry?.load === "loading" || entry?.load === "loaded") return;
    this.put(threadId, { load: "loading", error: null });
    const useCache = this.history !== null && !this.overflowed.has(threadId);
    const cached = useCache ? await this.history?.load(threadId).catch(() => null) : null;
    if (cached) {
      this.settle(threadId, cached, "cache");
      return; // resume (in settle) asks the server for everything after the cache
    }
    await this.loadFromServer(threadId);
  }

  /** Load a thread from REST (no cache, or the replay could not prove continuity). */
  async loadFromServer(threadId: string): Promise<void> {
    try {
      this.settle(threadId, await serverTimeline(this.rest, threadId), "server");
    } catch (err) {
      this.put(threadId, { load: "error", error: message(err) });
    }
  }

  private settle(threadId: string, base: Timeline, source: ThreadEntry["source"]): void {
    if (this.deleted.has(threadId)) return;
    const current = this.entries.get(threadId)?.timeline;
    let timeline = applyEvents(base, this.pending.get(threadId) ?? []);
    this.pending.delete(threadId);
    this.overflowed.delete(threadId);
    // A cached optimistic message that is no longer queued was sent (or given up) since.
    for (const item of base.items) {
      if (item.kind === "message" && item.outbox !== null
          && !this.client.outbox.some((o) => o.messageId === item.id)) {
        timeline = removeOptimistic(timeline, item.id);
      }
    }
    // Optimistic messages (sent while loading, or restored from an earlier page) stay.
    for (const item of current?.items ?? []) {
      if (item.kind === "message" && item.outbox !== null) {
        timeline = addOptimistic(timeline, asOutbox(item, threadId));
      }
    }
    for (const queued of this.client.outbox) {
      if (queued.threadId === threadId) timeline = addOptimistic(timeline, queued);
    }
    this.put(threadId, { timeline, load: "loaded", error: null, source });
    this.client.follow(threadId, timeline.contiguousSeq); // resumes after it, now and on reconnects
  }

  /** Saves soon while a run streams (one write per burst), at once when nothing is in
   *  flight: a reload right after an answer finds it in the cache. */
  private scheduleSave(threadId: string): void {
    if (!this.history) return;
    clearTimeout(this.saveTimers.get(threadId));
    this.saveTimers.delete(threadId);
    const save = (): void => {
      this.saveTimers.delete(threadId);
      const entry = this.entries.get(threadId);
      if (entry && this.history) void this.history.save(entry.timeline).catch(() => undefined);
    };
    if (this.entries.get(threadId)?.timeline.activeRunId === null) save();
    else this.saveTimers.set(threadId, setTimeout(save, SAVE_DELAY_MS));
  }

  // ---- threads list --------------------------------------------------------------------

  /** (Re)loads the threads list over REST (see ThreadListStore.load). */
  loadThreads(): Promise<void> {
    return this.list.load();
  }

  /** The next page of older threads, appended. */
  loadMoreThreads(): Promise<void> {
    return this.list.loadMore();
  }

  async rename(threadId: string, title: string): Promise<void> {
    const t = await this.rest.renameThread(threadId, title);
    this.upsertThread(t.thread_id, t.title);
  }

  async remove(threadId: string): Promise<void> {
    await this.rest.deleteThread(threadId);
    this.forget(threadId);
  }

  private upsertThread(threadId: string, title: string): void {
    this.list.change({ threadId, title });
  }

  private forget(threadId: string): void {
    this.deleted.add(threadId);
    this.client.unfollow(threadId);
    this.entries.delete(threadId);
    this.pending.delete(threadId);
    clearTimeout(this.saveTimers.get(threadId));
    void this.history?.remove(threadId).catch(() => undefined);
    this.list.change({ threadId, title: null });
  }

  // ---- what the connection brings ------------------------------------------------------

  private onEvent(ev: ThreadEvent): void {
    this.list.onEvent(ev);
    const entry = this.entries.get(ev.thread_id);
    if (entry?.load === "loaded") {
      const timeline = applyEvent(entry.timeline, ev);
      this.put(ev.thread_id, { timeline });
      if (timeline !== entry.timeline) {
        for (const fn of [...this.eventListeners]) {
          try {
            fn(ev, timeline);
          } catch (err) {
            console.error("runwire: an event callback threw", err);
          }
        }
      }
      return;
    }
    if (this.deleted.has(ev.thread_id)) return;
    const waiting = this.pending.get(ev.thread_id) ?? [];
    if (waiting.length < MAX_PENDING) waiting.push(ev);
    else this.overflowed.add(ev.thread_id); // its cache can't be completed from here
    this.pending.set(ev.thread_id, waiting);
  }

  private onFrame(f: ServerFrame): void {
    switch (f.type) {
      case "message_ack":
        this.adoptDraft(String(f.payload.message_id), String(f.payload.thread_id));
        break;
      case "thread_created":
      case "thread_updated":
        this.upsertThread(String(f.payload.thread_id), String(f.payload.title));
        break;
      case "thread_deleted":
        this.forget(String(f.payload.thread_id));
        break;
      case "replay_complete":
        if (f.payload.complete === false) {
          // The server could not prove continuity (pruned, or ahead after a crash): load the
          // thread again over REST — once, however many replays say so meanwhile.
          const id = String(f.payload.thread_id);
          if (this.reloading.has(id) || this.deleted.has(id)) break;
          this.reloading.add(id);
          this.entries.delete(id);
          void this.history?.remove(id).catch(() => undefined);
          void this.loadFromServer(id).finally(() => this.reloading.delete(id));
        }
        break;
      default:
        break;
    }
  }

  /** A message sent from the "new chat" view was stored: it now lives in its thread. */
  private adoptDraft(messageId: string, threadId: string): void {
    const draft = this.entries.get(DRAFT);
    const item = draft?.timeline.items.find((i) => i.kind === "message" && i.id === messageId);
    if (!draft || !item) return;
    const rest = { ...draft.timeline, items: draft.timeline.items.filter((i) => i !== item) };
    this.put(DRAFT, { timeline: rest });
    const target = this.entries.get(threadId);
    const stored = target?.timeline.items.some((i) => i.kind === "message" && i.id === messageId);
    if (!stored && item.kind === "message") {
      const timeline = addOptimistic(target?.timeline ?? emptyTimeline(threadId),
                                     asOutbox(item, threadId, "acked"));
      this.put(threadId, { timeline });
    }
    // Messages typed after this one go into its thread.
    for (const { item: heldItem, opts } of this.held.splice(0)) {
      const sent = this.client.send(heldItem.content, { ...opts, threadId });
      this.put(DRAFT, { timeline: removeOptimistic(this.draftTimeline(), heldItem.messageId) });
      const entry = this.entries.get(threadId);
      this.put(threadId, { timeline: addOptimistic(entry?.timeline ?? emptyTimeline(threadId), sent) });
    }
    for (const fn of [...this.createdListeners]) fn(threadId, messageId);
  }

  private onOutbox(items: readonly OutboxItem[]): void {
    void this.history?.saveOutbox(items).catch(() => undefined);
    if (items.some((o) => o.threadId === null && o.state === "failed")) this.releaseHeld();
    for (const item of items) {
      const key = item.threadId ?? DRAFT;
      const entry = this.entries.get(key);
      if (!entry) continue;
      const timeline = updateOptimistic(entry.timeline, item);
      if (timeline !== entry.timeline) this.put(key, { timeline });
    }
  }
}
