// A pure reducer over the events of one thread: what a chat UI shows. Every function
// returns a new Timeline when something changed and the very same object otherwise
// (React can compare by reference). Events are placed by seq, so a replayed earlier event
// lands in place, and applying an event twice is a no-op.

import type {
  ApprovalItem,
  MessageItem,
  OutboxItem,
  RunItem,
  RunStatus,
  ThinkingItem,
  ThreadEvent,
  Timeline,
  TimelineItem,
  ToolItem,
} from "./types.ts";
import type { MessageOut } from "./rest.ts";

/** A timeline with nothing in it. */
export function emptyTimeline(threadId: string): Timeline {
  return { threadId, items: [], lastSeq: 0, contiguousSeq: 0, aboveSeqs: [], deltas: {}, activeRunId: null };
}

/** Was `seq` applied to (or pruned from) this timeline already? */
export function hasSeq(tl: Timeline, seq: number): boolean {
  return seq <= tl.contiguousSeq || tl.aboveSeqs.includes(seq);
}

const TERMINAL: ReadonlySet<RunStatus> = new Set(["completed", "cancelled", "failed", "timed_out"]);
const RANK: Record<RunStatus, number> = {
  queued: 0, running: 1, waiting: 1, completed: 2, cancelled: 2, failed: 2, timed_out: 2,
};

/** true for completed / cancelled / failed / timed_out. */
export function isTerminal(status: RunStatus): boolean {
  return TERMINAL.has(status);
}

type Payload = Record<string, unknown>;

function str(p: Payload, key: string): string | null {
  const v = p[key];
  return typeof v === "string" ? v : null;
}

function num(p: Payload, key: string): number | null {
  const v = p[key];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function errorText(v: unknown): string {
  if (typeof v === "string") return v;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** The numeric entries of a run's `usage` (null when there are none). */
function usageOf(v: unknown): Record<string, number> | null {
  if (typeof v !== "object" || v === null) return null;
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(v)) if (typeof n === "number" && Number.isFinite(n)) out[k] = n;
  return Object.keys(out).length ? out : null;
}

// ---- the seq bookkeeping -------------------------------------------------------------

function withSeq(contiguous: number, above: readonly number[], seq: number): { contiguous: number; above: number[] } {
  let c = contiguous;
  let rest: number[];
  if (seq === c + 1) {
    c = seq;
    rest = [...above];
  } else {
    rest = [...above, seq].sort((a, b) => a - b);
  }
  while (rest.length > 0 && rest[0] !== undefined && rest[0] <= c + 1) {
    const s = rest.shift() as number;
    if (s === c + 1) c = s;
  }
  return { contiguous: c, above: rest };
}

// ---- item helpers (items stay sorted by seq) -------------------------------------------

function indexOf(items: readonly TimelineItem[], kind: TimelineItem["kind"], id: string): number {
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i];
    if (it !== undefined && it.kind === kind && it.id === id) return i;
  }
  return -1;
}

function find<K extends TimelineItem["kind"]>(
  items: readonly TimelineItem[], kind: K, id: string,
): Extract<TimelineItem, { kind: K }> | undefined {
  const i = indexOf(items, kind, id);
  return i < 0 ? undefined : (items[i] as Extract<TimelineItem, { kind: K }>);
}

/** Puts `item` in its seq place, replacing the item of the same kind and id. */
function upsert(items: readonly TimelineItem[], item: TimelineItem): TimelineItem[] {
  const out = items.slice();
  const old = indexOf(out, item.kind, item.id);
  if (old >= 0) {
    const prev = out[old];
    if (prev !== undefined && prev.seq === item.seq) {
      out[old] = item;
      return out;
    }
    out.splice(old, 1);
  }
  let at = out.length;
  while (at > 0) {
    const before = out[at - 1];
    if (before === undefined || before.seq <= item.seq) break;
    at--;
  }
  out.splice(at, 0, item);
  return out;
}

function runItem(items: readonly TimelineItem[], runId: string, seq: number): RunItem {
  return find(items, "run", `run:${runId}`) ?? {
    kind: "run", id: `run:${runId}`, runId, status: "queued", agentName: null,
    queuePosition: null, progress: null, durationMs: null, usage: null, error: null, seq,
  };
}

/** The running (or waiting) run with the highest seq, else the earliest queued one, else null. */
function activeRun(items: readonly TimelineItem[]): string | null {
  let queued: RunItem | null = null;
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i];
    if (it === undefined || it.kind !== "run") continue;
    if (it.status === "running" || it.status === "waiting") return it.runId;
    if (it.status === "queued") queued = it;
  }
  return queued ? queued.runId : null;
}

/** Ends a run's loose ends: its streaming answers stop, its running tools become errors. */
function settleRun(items: TimelineItem[], runId: string): TimelineItem[] {
  let out: TimelineItem[] | null = null;
  items.forEach((it, i) => {
    if (it.kind === "message" && it.runId === runId && it.streaming) {
      (out ??= items.slice())[i] = { ...it, streaming: false };
    } else if (it.kind === "tool" && it.runId === runId && it.status === "running") {
      (out ??= items.slice())[i] = { ...it, status: "error", error: "cancelled" };
    }
  });
  return out ?? items;
}

function record(v: unknown): Record<string, unknown> | null {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

/** A run's status once an approval of it changed: waiting while any call of it is pending,
 *  running again when none is (a terminal status stays). */
function withApprovals(items: TimelineItem[], runId: string, seq: number): TimelineItem[] {
  const run = runItem(items, runId, seq);
  if (isTerminal(run.status)) return items;
  const pending = items.some((it) => it.kind === "approval" && it.runId === runId && it.status === "pending");
  const status: RunStatus = pending ? "waiting" : "running";
  return run.status === status ? items : upsert(items, { ...run, status, queuePosition: null, progress: null });
}

/** The calls of this thread that wait for the user's decision, oldest first. */
export function pendingApprovals(tl: Timeline): ApprovalItem[] {
  return tl.items.filter((it): it is ApprovalItem => it.kind === "approval" && it.status === "pending");
}

function runIsTerminal(items: readonly TimelineItem[], runId: string | null): boolean {
  if (runId === null) return false;
  const r = find(items, "run", `run:${runId}`);
  return r !== undefined && isTerminal(r.status);
}

// ---- the reducer -----------------------------------------------------------------------

/** Applies one thread event; returns `tl` itself for a duplicate seq or another thread. */
export function applyEvent(tl: Timeline, ev: ThreadEvent): Timeline {
  if (ev.thread_id !== tl.threadId || !Number.isInteger(ev.seq) || ev.seq < 1) return tl;
  if (hasSeq(tl, ev.seq)) return tl;
  const { contiguous, above } = withSeq(tl.contiguousSeq, tl.aboveSeqs, ev.seq);
  const base: Timeline = {
    ...tl, contiguousSeq: contiguous, aboveSeqs: above, lastSeq: Math.max(tl.lastSeq, ev.seq),
  };
  return reduce(base, ev);
}

function reduce(tl: Timeline, ev: ThreadEvent): Timeline {
  const p: Payload = typeof ev.payload === "object" && ev.payload !== null ? ev.payload : {};
  const seq = ev.seq;
  const runId = ev.run_id ?? str(p, "run_id");
  const items = tl.items;
  switch (ev.type) {
    case "message_created": {
      const id = str(p, "message_id");
      if (id === null) return tl;
      const old = find(items, "message", id);
      const item: MessageItem = {
        kind: "message", id, role: str(p, "role") === "assistant" ? "assistant" : "user",
        content: str(p, "content") ?? old?.content ?? "", agentName: old?.agentName ?? null,
        runId: old?.runId ?? null, streaming: false, outbox: null,
        seq: old && Number.isFinite(old.seq) ? Math.min(old.seq, seq) : seq,
      };
      return { ...tl, items: upsert(items, item) };
    }
    case "agent_progress":
    case "agent_started":
    case "agent_completed":
    case "agent_error": {
      if (runId === null) return tl;
      const old = runItem(items, runId, seq);
      let next: RunItem = { ...old, seq: Math.min(old.seq, seq) };
      let nextItems: TimelineItem[];
      if (ev.type === "agent_progress") {
        if (!isTerminal(next.status)) {
          next = { ...next, progress: str(p, "message") ?? next.progress, queuePosition: num(p, "queue_position") };
        }
      } else if (ev.type === "agent_started") {
        if (RANK[next.status] <= RANK.running) next = { ...next, status: "running", queuePosition: null, progress: null };
        next = { ...next, agentName: str(p, "agent_name") ?? next.agentName };
      } else if (ev.type === "agent_completed") {
        next = {
          ...next, status: str(p, "status") === "cancelled" ? "cancelled" : "completed",
          durationMs: num(p, "duration_ms"), usage: usageOf(p.usage), queuePosition: null, progress: null,
        };
      } else {
        const code = str(p, "code") ?? "internal";
        next = {
          ...next, status: code === "timeout" ? "timed_out" : "failed", queuePosition: null, progress: null,
          error: { code, message: str(p, "message") ?? "", retryable: p.retryable === true },
        };
      }
      nextItems = upsert(items, next);
      if (isTerminal(next.status)) nextItems = settleRun(nextItems, runId);
      return { ...tl, items: nextItems, activeRunId: activeRun(nextItems) };
    }
    case "agent_thinking": {
      const item: ThinkingItem = {
        kind: "thinking", id: `think:${seq}`, agentName: str(p, "agent_name") ?? "",
        thought: str(p, "thought") ?? "", runId: runId ?? "", seq,
      };
      return { ...tl, items: upsert(items, item) };
    }
    case "tool_executing":
    case "tool_completed": {
      const id = str(p, "tool_call_id") ?? `tool:${seq}`;
      const old = find(items, "tool", id);
      let item: ToolItem = old ?? {
        kind: "tool", id, agentName: str(p, "agent_name") ?? "", toolName: str(p, "tool_name") ?? "",
        args: null, status: "running", result: null, error: null, durationMs: null, runId: runId ?? "", seq,
      };
      item = { ...item, seq: Math.min(item.seq, seq) };
      if (ev.type === "tool_executing") {
        item = { ...item, args: p.tool_args ?? null };
        // a completion applied earlier (out of order) stays; only a run-end "cancelled" is undone
        if (item.status === "error" && item.error === "cancelled" && !runIsTerminal(items, item.runId)) {
          item = { ...item, status: "running", error: null };
        }
      } else {
        const failed = p.error !== undefined && p.error !== null;
        item = {
          ...item, status: failed ? "error" : "ok", result: failed ? null : (p.result ?? null),
          error: failed ? errorText(p.error) : null, durationMs: num(p, "duration_ms"),
        };
      }
      return { ...tl, items: upsert(items, item) };
    }
    case "approval_required":
    case "approval_resolved": {
      const id = str(p, "tool_call_id");
      if (id === null || runId === null) return tl;
      const old = find(items, "approval", id);
      let item: ApprovalItem = old ?? {
        kind: "approval", id, runId, agentName: "", toolName: "", args: {}, expiresAt: null,
        status: "pending", reason: null, approvedArgs: null, seq,
      };
      if (ev.type === "approval_required") {
        item = {
          ...item, agentName: str(p, "agent_name") ?? item.agentName, toolName: str(p, "tool_name") ?? item.toolName,
          args: record(p.tool_args) ?? item.args, expiresAt: str(p, "expires_at"), seq: Math.min(item.seq, seq),
        };
      } else {
        const approved = p.approved === true;
        item = {
          ...item, status: approved ? "approved" : "denied", reason: str(p, "reason"),
          approvedArgs: approved ? record(p.args) : null,
        };
      }
      let nextItems = upsert(items, item);
      nextItems = withApprovals(nextItems, runId, seq);
      return { ...tl, items: nextItems, activeRunId: activeRun(nextItems) };
    }
    case "partial_result": {
      const id = str(p, "message_id");
      if (id === null) return tl;
      const old = find(items, "message", id);
      const known = tl.deltas[id];
      // An answer already final (agent_response applied) ignores late deltas.
      if (old && known === undefined) {
        return old.seq > seq ? { ...tl, items: upsert(items, { ...old, seq }) } : tl;
      }
      const pairs: Array<[number, string]> = [...(known ?? []), [seq, str(p, "delta") ?? ""]];
      pairs.sort((a, b) => a[0] - b[0]);
      const item: MessageItem = {
        kind: "message", id, role: "assistant", content: pairs.map((d) => d[1]).join(""),
        agentName: str(p, "agent_name") ?? old?.agentName ?? null, runId: runId ?? old?.runId ?? null,
        streaming: !runIsTerminal(items, runId ?? old?.runId ?? null), outbox: null,
        seq: old ? Math.min(old.seq, seq) : seq,
      };
      return { ...tl, items: upsert(items, item), deltas: { ...tl.deltas, [id]: pairs } };
    }
    case "agent_response": {
      const id = str(p, "message_id");
      if (id === null) return tl;
      const old = find(items, "message", id);
      const item: MessageItem = {
        kind: "message", id, role: "assistant", content: str(p, "content") ?? "",
        agentName: str(p, "agent_name") ?? old?.agentName ?? null, runId: runId ?? old?.runId ?? null,
        streaming: false, outbox: null, seq: old ? Math.min(old.seq, seq) : seq,
      };
      const deltas = { ...tl.deltas };
      delete deltas[id];
      return { ...tl, items: upsert(items, item), deltas };
    }
    default:
      return tl; // unknown type: only the seq is recorded
  }
}

/** Applies events in the given order (any order gives the same result). */
export function applyEvents(tl: Timeline, evs: Iterable<ThreadEvent>): Timeline {
  let out = tl;
  for (const ev of evs) out = applyEvent(out, ev);
  return out;
}

/** Seqs below `firstRetainedSeq` were pruned from the server's log: count them as known. */
export function markPruned(tl: Timeline, firstRetainedSeq: number): Timeline {
  const through = firstRetainedSeq - 1;
  if (through <= tl.contiguousSeq) return tl;
  let c = through;
  const above = tl.aboveSeqs.filter((s) => s > through);
  while (above.length > 0 && above[0] === c + 1) {
    above.shift();
    c += 1;
  }
  return { ...tl, contiguousSeq: c, aboveSeqs: above, lastSeq: Math.max(tl.lastSeq, c) };
}

/** Shows an outbox item as an optimistic user message (seq Infinity, last); a message
 * already stored under that id is left alone. */
export function addOptimistic(tl: Timeline, item: OutboxItem): Timeline {
  const old = find(tl.items, "message", item.messageId);
  if (old) return Number.isFinite(old.seq) ? tl : updateOptimistic(tl, item);
  const msg: MessageItem = {
    kind: "message", id: item.messageId, role: "user", content: item.content, agentName: null,
    runId: item.runId, streaming: false, outbox: item.state, seq: Infinity,
  };
  return { ...tl, items: upsert(tl.items, msg) };
}

/** Shows the outbox state of an optimistic message; stored messages are left alone. */
export function updateOptimistic(tl: Timeline, item: OutboxItem): Timeline {
  const i = indexOf(tl.items, "message", item.messageId);
  const old = i < 0 ? undefined : tl.items[i];
  if (old === undefined || old.kind !== "message" || Number.isFinite(old.seq)) return tl;
  if (old.outbox === item.state && old.runId === item.runId && old.content === item.content) return tl;
  const items = tl.items.slice();
  items[i] = { ...old, outbox: item.state, runId: item.runId, content: item.content };
  return { ...tl, items };
}

/** Removes an optimistic message (e.g. discarded from the outbox). */
export function removeOptimistic(tl: Timeline, messageId: string): Timeline {
  const i = indexOf(tl.items, "message", messageId);
  const old = i < 0 ? undefined : tl.items[i];
  if (old === undefined || Number.isFinite(old.seq)) return tl;
  return { ...tl, items: tl.items.filter((_, j) => j !== i) };
}

/**
 * A timeline for a thread whose old events were pruned: the REST messages (oldest first)
 * as plain MessageItems, everything <= `lastSeq` known. The messages get fractional seqs
 * in (lastSeq - 1, lastSeq) so that later events sort after them.
 */
export function timelineFromMessages(threadId: string, messages: readonly MessageOut[], lastSeq: number): Timeline {
  const n = messages.length;
  const items: TimelineItem[] = messages.map((m, i) => ({
    kind: "message", id: m.message_id, role: m.role === "user" ? "user" : "assistant",
    content: m.content, agentName: null, runId: m.run_id, streaming: false, outbox: null,
    seq: lastSeq - (n - i) / (n + 1),
  }));
  return { ...emptyTimeline(threadId), items, lastSeq, contiguousSeq: lastSeq };
}

/** Keeps the last `maxMessages` message items and everything after the first kept one. */
export function trimTimeline(tl: Timeline, maxMessages = 500): Timeline {
  let seen = 0;
  let cut = -1;
  for (let i = tl.items.length - 1; i >= 0; i--) {
    if (tl.items[i]?.kind !== "message") continue;
    seen += 1;
    if (seen === maxMessages) {
      cut = i;
    } else if (seen > maxMessages) break;
  }
  if (seen <= maxMessages || cut <= 0) return tl;
  const items = tl.items.slice(cut);
  const kept = new Set(items.filter((it) => it.kind === "message").map((it) => it.id));
  const deltas: Timeline["deltas"] = {};
  for (const [id, d] of Object.entries(tl.deltas)) if (kept.has(id)) deltas[id] = d;
  return { ...tl, items, deltas };
}

/** The user message that asked for `runId`: the one the run's ack named, else the latest
 *  user message before the run (events of a reloaded thread don't link the two). */
export function askedIn(tl: Timeline, runId: string): MessageItem | null {
  const items = tl.items;
  const direct = items.find((i): i is MessageItem => i.kind === "message" && i.role === "user" && i.runId === runId);
  if (direct) return direct;
  const run = items.find((i) => i.kind === "run" && i.runId === runId);
  if (!run) return null;
  let found: MessageItem | null = null;
  for (const i of items) {
    if (i.seq >= run.seq) break;
    if (i.kind === "message" && i.role === "user") found = i;
  }
  return found;
}
