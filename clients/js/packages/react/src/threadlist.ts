// The user's threads, newest first: loaded over REST (paged), kept live by the
// thread_created / thread_updated / thread_deleted frames the ThreadStore hands in.

import type { RestClient, ThreadEvent, ThreadOut } from "@runwire/client";

export type LoadState = "idle" | "loading" | "loaded" | "error";

export interface ThreadList {
  readonly threads: readonly ThreadOut[];
  readonly load: LoadState;
  readonly error: string | null;
  /** More (older) threads to page in with `loadMoreThreads()`. */
  readonly hasMore: boolean;
  /** Threads with a run waiting for the user's approval of a tool call (SPEC 7). */
  readonly waiting: ReadonlySet<string>;
}

/** A live change of the threads list: a title (created or renamed), or null (deleted). */
export interface ListChange {
  threadId: string;
  title: string | null;
}

const THREAD_PAGE = 100;

function applyListChange(threads: readonly ThreadOut[], { threadId, title }: ListChange): readonly ThreadOut[] {
  if (title === null) return threads.filter((t) => t.thread_id !== threadId);
  if (threads.some((t) => t.thread_id === threadId)) {
    return threads.map((t) => (t.thread_id === threadId ? { ...t, title } : t));
  }
  const now = new Date().toISOString();
  return [{ thread_id: threadId, title, created_at: now, updated_at: now, last_seq: 0 }, ...threads];
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class ThreadListStore {
  private list: ThreadList = { threads: [], load: "idle", error: null, hasMore: false, waiting: new Set() };
  /** tool_call_id → [thread_id, run_id] of the calls waiting for a decision. */
  private pending = new Map<string, [string, string]>();
  private nextCursor: string | null = null;
  /** Live list changes seen while a REST load is out (replayed on its answer). */
  private changes: ListChange[] = [];
  private loads = 0;

  constructor(private readonly rest: RestClient, private readonly notify: () => void) {}

  /** The current list (a new object after every change). */
  get value(): ThreadList {
    return this.list;
  }

  private set(patch: Partial<ThreadList>): void {
    this.list = { ...this.list, ...patch };
    this.notify();
  }

  /** (Re)loads the list over REST. Live changes (thread_created/updated/deleted) that arrive
   *  while the request is out are newer than its answer and are applied on top of it. */
  async load(): Promise<void> {
    if (this.list.load === "idle") this.set({ load: "loading" });
    const since = this.changes.length;
    this.loads += 1;
    void this.loadPending();
    try {
      const page = await this.rest.listThreads({ limit: THREAD_PAGE });
      let threads: readonly ThreadOut[] = page.items;
      for (const change of this.changes.slice(since)) threads = applyListChange(threads, change);
      this.nextCursor = page.next_cursor ?? null;
      this.set({ threads, load: "loaded", error: null, hasMore: Boolean(page.next_cursor) });
    } catch (err) {
      this.set({ load: "error", error: message(err) });
    } finally {
      this.loads -= 1;
      if (this.loads === 0) this.changes = [];
    }
  }

  /** The next page of older threads, appended (threads already listed are kept). */
  async loadMore(): Promise<void> {
    if (!this.nextCursor) return;
    const page = await this.rest.listThreads({ limit: THREAD_PAGE, cursor: this.nextCursor });
    const known = new Set(this.list.threads.map((t) => t.thread_id));
    this.nextCursor = page.next_cursor ?? null;
    this.set({
      threads: [...this.list.threads, ...page.items.filter((t) => !known.has(t.thread_id))],
      hasMore: Boolean(page.next_cursor),
    });
  }

  private async loadPending(): Promise<void> {
    try {
      const rows = await this.rest.pendingApprovals();
      this.pending = new Map(rows.map((r) => [r.tool_call_id, [r.thread_id, r.run_id]]));
      this.setWaiting();
    } catch {
      /* an older server, or offline: live events still fill it in */
    }
  }

  /** A live thread event: approval_required / approval_resolved / a run's end. */
  onEvent(ev: ThreadEvent): void {
    const runId = ev.run_id;
    if (ev.type === "approval_required" && runId) {
      this.pending.set(ev.payload.tool_call_id, [ev.thread_id, runId]);
    } else if (ev.type === "approval_resolved") {
      if (!this.pending.delete(ev.payload.tool_call_id)) return;
    } else if ((ev.type === "agent_completed" || ev.type === "agent_error") && runId) {
      const before = this.pending.size;
      for (const [id, [, run]] of [...this.pending]) if (run === runId) this.pending.delete(id);
      if (this.pending.size === before) return;
    } else {
      return;
    }
    this.setWaiting();
  }

  private setWaiting(): void {
    const waiting = new Set([...this.pending.values()].map(([thread]) => thread));
    const old = this.list.waiting;
    if (waiting.size === old.size && [...waiting].every((t) => old.has(t))) return;
    this.set({ waiting });
  }

  /** A title (created or renamed) or a deletion, seen live or after a REST call. */
  change(change: ListChange): void {
    if (this.loads > 0) this.changes.push(change);
    this.set({ threads: applyListChange(this.list.threads, change) });
  }
}
