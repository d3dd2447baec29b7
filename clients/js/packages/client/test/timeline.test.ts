import { describe, expect, it } from "vitest";
import {
  addOptimistic, applyEvent, applyEvents, emptyTimeline, markPruned, removeOptimistic,
  pendingApprovals, timelineFromMessages, trimTimeline, updateOptimistic,
} from "../src/timeline.ts";
import type { MessageOut } from "../src/rest.ts";
import { parseFrame } from "../src/frames.ts";
import type { ApprovalItem, MessageItem, OutboxItem, RunItem, ThreadEvent, Timeline, ToolItem } from "../src/types.ts";

const T = "T";
function e(seq: number, type: string, payload: Record<string, unknown> = {}, runId: string | null = "R"): ThreadEvent {
  const f: Record<string, unknown> = { type, payload, thread_id: T, seq };
  if (runId) f.run_id = runId;
  return parseFrame(JSON.stringify(f)) as ThreadEvent; // as the client gets it off the wire
}

/** The session of docs/protocol.md §8. */
const session: ThreadEvent[] = [
  e(1, "message_created", { message_id: "m1", role: "user", content: "what is 12*(3+4)?" }, null),
  e(2, "agent_started", { agent_name: "supervisor", message_id: "m1", run_id: "R" }),
  e(3, "agent_thinking", { agent_name: "supervisor", thought: "use the calculator" }),
  e(4, "tool_executing", { agent_name: "supervisor", tool_name: "calculator", tool_args: { expression: "12*(3+4)" }, tool_call_id: "c1" }),
  e(5, "tool_completed", { agent_name: "supervisor", tool_name: "calculator", tool_call_id: "c1", result: { result: 84 }, duration_ms: 3 }),
  e(6, "partial_result", { agent_name: "supervisor", message_id: "a1", delta: "12*(3+4) = " }),
  e(7, "partial_result", { agent_name: "supervisor", message_id: "a1", delta: "**84**." }),
  e(8, "agent_response", { agent_name: "supervisor", message_id: "a1", content: "12*(3+4) = **84**." }),
  e(9, "agent_completed", { status: "completed", result: null, message_id: "a1", usage: {}, duration_ms: 1200 }),
];

const byId = (tl: Timeline, id: string) => tl.items.find((i) => i.id === id);
const ids = (tl: Timeline) => tl.items.map((i) => i.id);

function outboxItem(over: Partial<OutboxItem> = {}): OutboxItem {
  return { messageId: "m1", content: "what is 12*(3+4)?", threadId: T, state: "queued", error: null, runId: null, createdAt: 0, ...over };
}

describe("timeline reducer", () => {
  it("builds the whole session", () => {
    const tl = applyEvents(emptyTimeline(T), session);
    expect(ids(tl)).toEqual(["m1", "run:R", "think:3", "c1", "a1"]);
    expect(byId(tl, "m1")).toMatchObject({ kind: "message", role: "user", content: "what is 12*(3+4)?", outbox: null, seq: 1 });
    expect(byId(tl, "run:R")).toMatchObject({ kind: "run", status: "completed", agentName: "supervisor", durationMs: 1200, seq: 2 });
    expect(byId(tl, "think:3")).toMatchObject({ kind: "thinking", thought: "use the calculator", agentName: "supervisor", runId: "R" });
    expect(byId(tl, "c1")).toMatchObject({ kind: "tool", status: "ok", toolName: "calculator", args: { expression: "12*(3+4)" }, result: { result: 84 }, durationMs: 3, error: null });
    expect(byId(tl, "a1")).toMatchObject({ kind: "message", role: "assistant", content: "12*(3+4) = **84**.", streaming: false, agentName: "supervisor", runId: "R", seq: 6 });
    expect(tl).toMatchObject({ lastSeq: 9, contiguousSeq: 9, aboveSeqs: [], activeRunId: null, deltas: {} });
  });

  it("streams: deltas joined, streaming until agent_response; activeRunId while running", () => {
    const tl = applyEvents(emptyTimeline(T), session.slice(0, 7));
    expect(byId(tl, "a1")).toMatchObject({ content: "12*(3+4) = **84**.", streaming: true });
    expect(tl.activeRunId).toBe("R");
    expect(tl.deltas.a1).toEqual([[6, "12*(3+4) = "], [7, "**84**."]]);
  });

  it("deltas are joined in seq order whatever the arrival order", () => {
    const deltas = [e(5, "partial_result", { message_id: "a", delta: "c" }), e(3, "partial_result", { message_id: "a", delta: "a" }),
      e(4, "partial_result", { message_id: "a", delta: "b" })];
    const tl = applyEvents(emptyTimeline(T), deltas);
    expect((byId(tl, "a") as MessageItem).content).toBe("abc");
    expect(byId(tl, "a")?.seq).toBe(3);
  });

  it("any arrival order gives the same timeline (replay lands in seq order)", () => {
    const inOrder = applyEvents(emptyTimeline(T), session);
    const orders = [
      [...session].reverse(),
      [session[0], session[8], session[7], session[1], session[5], session[4], session[2], session[6], session[3]],
    ];
    for (const order of orders) {
      const tl = applyEvents(emptyTimeline(T), order.filter((x): x is ThreadEvent => x !== undefined));
      expect(tl).toEqual(inOrder);
    }
  });

  it("live events then a replay of earlier ones: items in seq order", () => {
    let tl = applyEvents(emptyTimeline(T), [session[0], session[1], session[5], session[6]].filter((x): x is ThreadEvent => !!x));
    expect(tl.aboveSeqs).toEqual([6, 7]);
    expect(tl.contiguousSeq).toBe(2);
    tl = applyEvents(tl, session.slice(2, 5));
    expect(ids(tl)).toEqual(["m1", "run:R", "think:3", "c1", "a1"]);
    expect(tl.contiguousSeq).toBe(7);
    expect(tl.aboveSeqs).toEqual([]);
  });

  it("is idempotent: re-applying returns the very same object", () => {
    const tl = applyEvents(emptyTimeline(T), session);
    for (const ev of session) expect(applyEvent(tl, ev)).toBe(tl);
    expect(applyEvents(tl, session)).toBe(tl);
    expect(applyEvent(tl, { ...e(10, "agent_thinking"), thread_id: "other" })).toBe(tl);
  });

  it("does not mutate its input", () => {
    const a = applyEvents(emptyTimeline(T), session.slice(0, 6));
    const snapshot = structuredClone(a);
    applyEvents(a, session.slice(6));
    expect(a).toEqual(snapshot);
  });

  it("unknown event types only record the seq", () => {
    const tl = applyEvent(emptyTimeline(T), e(1, "something_new", {}));
    expect(tl.items).toEqual([]);
    expect(tl.contiguousSeq).toBe(1);
  });

  it("agent_progress → queued run with position, then running", () => {
    let tl = applyEvent(emptyTimeline(T), e(1, "agent_progress", { message: "Queued", queue_position: 2 }, "R2"));
    expect(byId(tl, "run:R2")).toMatchObject({ status: "queued", queuePosition: 2, progress: "Queued" });
    expect(tl.activeRunId).toBe("R2");
    tl = applyEvent(tl, e(2, "agent_progress", { message: "Queued", queue_position: 1 }, "R2"));
    expect((byId(tl, "run:R2") as RunItem).queuePosition).toBe(1);
    tl = applyEvent(tl, e(3, "agent_started", { agent_name: "supervisor", run_id: "R2", message_id: "m" }, "R2"));
    expect(byId(tl, "run:R2")).toMatchObject({ status: "running", queuePosition: null, seq: 1 });
  });

  it("activeRunId prefers the running run over a queued one", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(1, "agent_started", { agent_name: "s" }, "A"),
      e(2, "agent_progress", { message: "Queued", queue_position: 1 }, "B"),
    ]);
    expect(tl.activeRunId).toBe("A");
    const after = applyEvent(tl, e(3, "agent_completed", { status: "completed", duration_ms: 5 }, "A"));
    expect(after.activeRunId).toBe("B");
  });

  it("a run cancelled while queued ends without agent_started", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(1, "agent_progress", { message: "Queued", queue_position: 1 }),
      e(2, "agent_completed", { status: "cancelled", duration_ms: 0 }),
    ]);
    expect(byId(tl, "run:R")).toMatchObject({ status: "cancelled", queuePosition: null });
    expect(tl.activeRunId).toBeNull();
  });

  it("agent_completed cancelled: streaming answers stop, running tools become error 'cancelled'", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(1, "agent_started", { agent_name: "s" }),
      e(2, "tool_executing", { agent_name: "s", tool_name: "web", tool_args: {}, tool_call_id: "c" }),
      e(3, "partial_result", { agent_name: "s", message_id: "a", delta: "half" }),
      e(4, "agent_completed", { status: "cancelled", duration_ms: 77 }),
    ]);
    expect(byId(tl, "run:R")).toMatchObject({ status: "cancelled", durationMs: 77 });
    expect(byId(tl, "a")).toMatchObject({ streaming: false, content: "half" });
    expect(byId(tl, "c")).toMatchObject({ status: "error", error: "cancelled" });
  });

  it("agent_error: failed, or timed_out for code timeout, with the error", () => {
    const failed = applyEvents(emptyTimeline(T), [
      e(1, "agent_started", { agent_name: "s" }),
      e(2, "partial_result", { message_id: "a", delta: "x" }),
      e(3, "agent_error", { code: "model_error", message: "boom", retryable: true }),
    ]);
    expect(byId(failed, "run:R")).toMatchObject({ status: "failed", error: { code: "model_error", message: "boom", retryable: true } });
    expect(byId(failed, "a")).toMatchObject({ streaming: false });
    expect(failed.activeRunId).toBeNull();
    const timedOut = applyEvent(emptyTimeline(T), e(1, "agent_error", { code: "timeout", message: "too slow", retryable: false }));
    expect(byId(timedOut, "run:R")).toMatchObject({ status: "timed_out", error: { code: "timeout", retryable: false } });
  });

  it("tool_completed with an error; a completed without executing still shows", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(1, "tool_completed", { agent_name: "s", tool_name: "web", tool_call_id: "c", error: "no network", duration_ms: 9 }),
      e(2, "tool_completed", { agent_name: "s", tool_name: "calc", tool_call_id: "d", error: { kind: "bad" }, duration_ms: 1 }),
    ]);
    expect(byId(tl, "c")).toMatchObject({ kind: "tool", status: "error", error: "no network", toolName: "web", args: null, durationMs: 9 });
    expect((byId(tl, "d") as ToolItem).error).toBe('{"kind":"bad"}');
  });

  it("a tool_executing replayed after its completion keeps the outcome and fills the args", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(5, "tool_completed", { tool_name: "calc", tool_call_id: "c", result: 1, duration_ms: 2 }),
      e(4, "tool_executing", { tool_name: "calc", tool_args: { x: 1 }, tool_call_id: "c" }),
    ]);
    expect(byId(tl, "c")).toMatchObject({ status: "ok", result: 1, args: { x: 1 }, seq: 4 });
  });

  it("a late run event never un-ends a run", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(3, "agent_completed", { status: "completed", duration_ms: 1 }),
      e(1, "agent_progress", { message: "Queued", queue_position: 1 }),
      e(2, "agent_started", { agent_name: "s" }),
    ]);
    expect(byId(tl, "run:R")).toMatchObject({ status: "completed", agentName: "s", queuePosition: null, seq: 1 });
    expect(tl.activeRunId).toBeNull();
  });

  it("late deltas do not overwrite a final agent_response", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(8, "agent_response", { message_id: "a", content: "final" }),
      e(6, "partial_result", { message_id: "a", delta: "fi" }),
    ]);
    expect(byId(tl, "a")).toMatchObject({ content: "final", streaming: false, seq: 6 });
  });

  it("a retried run: a new assistant message id, the first attempt's deltas stay", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(1, "agent_started", { agent_name: "s" }),
      e(2, "partial_result", { message_id: "a1", delta: "par" }),
      e(3, "agent_progress", { message: "Retrying on another node" }),
      e(4, "agent_started", { agent_name: "s" }),
      e(5, "partial_result", { message_id: "a2", delta: "whole" }),
    ]);
    expect(byId(tl, "run:R")).toMatchObject({ status: "running" });
    expect((byId(tl, "a1") as MessageItem).content).toBe("par");
    expect((byId(tl, "a2") as MessageItem).content).toBe("whole");
  });
});

describe("optimistic messages", () => {
  it("addOptimistic shows the outbox item last; message_created replaces it in place", () => {
    let tl = applyEvents(emptyTimeline(T), session);
    tl = addOptimistic(tl, outboxItem({ messageId: "m2", content: "and 2+2?" }));
    expect(tl.items.at(-1)).toMatchObject({ id: "m2", role: "user", outbox: "queued", seq: Infinity });
    tl = updateOptimistic(tl, outboxItem({ messageId: "m2", content: "and 2+2?", state: "sent" }));
    expect(tl.items.at(-1)).toMatchObject({ id: "m2", outbox: "sent" });
    const same = updateOptimistic(tl, outboxItem({ messageId: "m2", content: "and 2+2?", state: "sent" }));
    expect(same).toBe(tl);
    tl = applyEvent(tl, e(10, "message_created", { message_id: "m2", role: "user", content: "and 2+2?" }, null));
    expect(tl.items.filter((i) => i.id === "m2")).toHaveLength(1);
    expect(tl.items.at(-1)).toMatchObject({ id: "m2", outbox: null, seq: 10 });
    // further outbox updates do not touch the stored message
    expect(updateOptimistic(tl, outboxItem({ messageId: "m2", state: "acked" }))).toBe(tl);
  });

  it("optimistic messages stay after stored items", () => {
    let tl = addOptimistic(emptyTimeline(T), outboxItem({ messageId: "x" }));
    tl = applyEvent(tl, e(1, "agent_thinking", { thought: "t" }));
    expect(ids(tl)).toEqual(["think:1", "x"]);
  });

  it("addOptimistic of an already stored message is a no-op; removeOptimistic drops only optimistic ones", () => {
    const tl = applyEvents(emptyTimeline(T), session);
    expect(addOptimistic(tl, outboxItem())).toBe(tl);
    expect(removeOptimistic(tl, "m1")).toBe(tl);
    const withX = addOptimistic(tl, outboxItem({ messageId: "x" }));
    expect(ids(removeOptimistic(withX, "x"))).toEqual(ids(tl));
  });

  it("a failed outbox state shows on the message", () => {
    let tl = addOptimistic(emptyTimeline(T), outboxItem());
    tl = updateOptimistic(tl, outboxItem({ state: "failed", error: { code: "thread_busy", message: "busy" } }));
    expect(tl.items[0]).toMatchObject({ outbox: "failed" });
  });
});

describe("pruned threads and trimming", () => {
  it("markPruned counts seqs below the first retained one as known", () => {
    let tl = applyEvent(emptyTimeline(T), e(12, "agent_thinking", { thought: "x" }));
    expect(tl.contiguousSeq).toBe(0);
    tl = markPruned(tl, 11); // 11 is retained but missing
    expect(tl).toMatchObject({ contiguousSeq: 10, aboveSeqs: [12] });
    tl = markPruned(tl, 12);
    expect(tl).toMatchObject({ contiguousSeq: 12, aboveSeqs: [] });
    expect(applyEvent(tl, e(5, "agent_thinking", { thought: "old" }))).toBe(tl);
    expect(markPruned(tl, 3)).toBe(tl);
    expect(markPruned(tl, 13)).toBe(tl);
  });

  it("timelineFromMessages: REST messages as plain items, later events after them", () => {
    const msgs: MessageOut[] = [
      { message_id: "u", thread_id: T, role: "user", content: "q", run_id: null, created_at: "2026-01-01T00:00:00Z" },
      { message_id: "a", thread_id: T, role: "assistant", content: "ans", run_id: "R0", created_at: "2026-01-01T00:00:01Z" },
    ];
    let tl = timelineFromMessages(T, msgs, 40);
    expect(tl).toMatchObject({ contiguousSeq: 40, lastSeq: 40 });
    expect(tl.items).toMatchObject([
      { kind: "message", id: "u", role: "user", content: "q", streaming: false, outbox: null },
      { kind: "message", id: "a", role: "assistant", content: "ans", runId: "R0" },
    ]);
    expect(tl.items.every((i) => i.seq < 40 && i.seq > 39)).toBe(true);
    expect(applyEvent(tl, e(40, "agent_thinking"))).toBe(tl);
    tl = applyEvent(tl, e(41, "message_created", { message_id: "u2", role: "user", content: "next" }, null));
    expect(ids(tl)).toEqual(["u", "a", "u2"]);
  });

  it("trimTimeline keeps the last 500 messages and everything after the first kept one", () => {
    const evs: ThreadEvent[] = [];
    let seq = 0;
    for (let i = 0; i < 300; i++) {
      evs.push(e(++seq, "message_created", { message_id: `u${i}`, role: "user", content: `q${i}` }, null));
      evs.push(e(++seq, "agent_thinking", { thought: "t" }, `R${i}`));
      evs.push(e(++seq, "agent_response", { message_id: `a${i}`, content: `a${i}` }, `R${i}`));
    }
    const tl = applyEvents(emptyTimeline(T), evs);
    expect(tl.items.filter((i) => i.kind === "message")).toHaveLength(600);
    const trimmed = trimTimeline(tl);
    const messages = trimmed.items.filter((i) => i.kind === "message");
    expect(messages).toHaveLength(500);
    expect(trimmed.items[0]?.id).toBe("u50");
    expect(trimmed.items.at(-1)?.id).toBe("a299");
    expect(trimmed.items.filter((i) => i.kind === "thinking")).toHaveLength(250);
    expect(trimmed.contiguousSeq).toBe(900);
    expect(trimTimeline(trimmed)).toBe(trimmed);
    expect(trimTimeline(tl, 2).items.map((i) => i.id)).toEqual(["u299", `think:${seq - 1}`, "a299"]);
  });

  it("trimTimeline drops the deltas of messages trimmed away", () => {
    const tl = applyEvents(emptyTimeline(T), [
      e(1, "partial_result", { message_id: "old", delta: "x" }),
      e(2, "message_created", { message_id: "u", role: "user", content: "q" }, null),
      e(3, "partial_result", { message_id: "new", delta: "y" }),
    ]);
    const trimmed = trimTimeline(tl, 2);
    expect(Object.keys(trimmed.deltas)).toEqual(["new"]);
  });
});

describe("approvals", () => {
  const asked = [
    e(1, "message_created", { message_id: "m1", role: "user", content: "notify bob: hi" }, null),
    e(2, "agent_started", { agent_name: "supervisor", message_id: "m1", run_id: "R" }),
    e(3, "approval_required", { agent_name: "supervisor", tool_call_id: "c1", tool_name: "send_notification", tool_args: { to: "bob", text: "hi" }, expires_at: "2026-12-03T10:00:00Z" }),
    e(4, "approval_required", { agent_name: "supervisor", tool_call_id: "c2", tool_name: "send_notification", tool_args: { to: "ann", text: "hi" }, expires_at: "2026-12-03T10:00:00Z" }),
  ];

  it("a run waits while any call is pending and runs again once all are decided", () => {
    let tl = applyEvents(emptyTimeline(T), asked);
    expect(pendingApprovals(tl).map((a) => a.id)).toEqual(["c1", "c2"]);
    expect((byId(tl, "run:R") as RunItem).status).toBe("waiting");
    expect(tl.activeRunId).toBe("R");
    tl = applyEvent(tl, e(5, "approval_resolved", { tool_call_id: "c1", approved: true, reason: null, args: { to: "carol", text: "hi" } }));
    expect(pendingApprovals(tl).map((a) => a.id)).toEqual(["c2"]);
    expect((byId(tl, "run:R") as RunItem).status).toBe("waiting");
    const c1 = byId(tl, "c1") as ApprovalItem;
    expect([c1.status, c1.approvedArgs]).toEqual(["approved", { to: "carol", text: "hi" }]);
    tl = applyEvent(tl, e(6, "approval_resolved", { tool_call_id: "c2", approved: false, reason: "no", args: null }));
    expect(pendingApprovals(tl)).toEqual([]);
    expect((byId(tl, "run:R") as RunItem).status).toBe("running");
    expect((byId(tl, "c2") as ApprovalItem).reason).toBe("no");
    tl = applyEvent(tl, e(7, "agent_completed", { status: "completed", result: "", usage: {}, duration_ms: 5 }));
    expect((byId(tl, "run:R") as RunItem).status).toBe("completed");
    expect(tl.activeRunId).toBe(null);
  });

  it("a decision replayed before its request lands in place, in any order", () => {
    const resolved = e(5, "approval_resolved", { tool_call_id: "c1", approved: false, reason: "timed out", args: null });
    const forward = applyEvents(emptyTimeline(T), [...asked.slice(0, 3), resolved]);
    const backward = applyEvents(emptyTimeline(T), [resolved, ...asked.slice(0, 3).reverse()]);
    for (const tl of [forward, backward]) {
      const c1 = byId(tl, "c1") as ApprovalItem;
      expect([c1.status, c1.toolName, c1.args, c1.reason]).toEqual(["denied", "send_notification", { to: "bob", text: "hi" }, "timed out"]);
      expect(pendingApprovals(tl)).toEqual([]);
    }
  });

  it("a run stopped while waiting is not active", () => {
    const tl = applyEvents(emptyTimeline(T), [...asked, e(5, "agent_completed", { status: "cancelled", result: "", usage: {}, duration_ms: 1 })]);
    expect((byId(tl, "run:R") as RunItem).status).toBe("cancelled");
    expect(tl.activeRunId).toBe(null);
  });
});
