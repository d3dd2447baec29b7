import { describe, expect, it, vi } from "vitest";
import { SeqTracker } from "../src/seq.ts";
import { FakeWebSocket, ev } from "./fake-ws.ts";
import { connected, harness, useFakeClientClock } from "./helpers.ts";

useFakeClientClock();

describe("SeqTracker", () => {
  it("tracks contiguous + above, dedupes, fills holes", () => {
    const t = new SeqTracker();
    expect(t.accept(1)).toBe(true);
    expect(t.accept(1)).toBe(false);
    expect(t.accept(3)).toBe(true);
    expect(t.hasGap).toBe(true);
    expect(t.contiguous).toBe(1);
    expect(t.last).toBe(3);
    expect(t.accept(3)).toBe(false);
    expect(t.accept(2)).toBe(true);
    expect(t.hasGap).toBe(false);
    expect(t.contiguous).toBe(3);
    expect(t.accept(0)).toBe(false);
    expect(t.accept(2.5)).toBe(false);
  });

  it("markThrough counts everything up to seq as seen and absorbs what lies above", () => {
    const t = new SeqTracker();
    t.accept(7);
    t.accept(9);
    t.markThrough(6);
    expect(t.contiguous).toBe(7);
    expect(t.aboveSeqs()).toEqual([9]);
    expect(t.accept(5)).toBe(false);
    t.markThrough(3); // lower: no-op
    expect(t.contiguous).toBe(7);
    t.markThrough(10);
    expect(t.hasGap).toBe(false);
    expect(t.contiguous).toBe(10);
  });
});

describe("dedupe and gaps", () => {
  it("drops duplicate seqs per thread", async () => {
    const h = harness();
    const ws = await connected(h);
    for (const [t, s] of [["A", 1], ["A", 2], ["A", 2], ["B", 1], ["A", 1], ["B", 1]] as const) ws.deliver(ev(t, s));
    expect(h.events.map((e) => `${e.thread_id}${e.seq}`)).toEqual(["A1", "A2", "B1"]);
    expect(h.client.lastSeq("A")).toBe(2);
    expect(h.client.lastSeq("nope")).toBe(0);
  });

  it("across reconnects: a seq held from an earlier connection is dropped", async () => {
    const h = harness();
    let ws = await connected(h);
    [1, 2, 3, 5].forEach((s) => ws.deliver(ev("T", s)));
    ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    ws = FakeWebSocket.last;
    ws.establish();
    expect(ws.framesOfType("resume")).toEqual([{ type: "resume", payload: { thread_id: "T", after_seq: 3 } }]);
    [4, 5, 6].forEach((s) => ws.deliver(ev("T", s)));
    expect(h.events.map((e) => e.seq)).toEqual([1, 2, 3, 5, 4, 6]);
  });

  it("a gap triggers exactly one resume until its replay_complete", async () => {
    const h = harness();
    const ws = await connected(h);
    ws.deliver(ev("T", 1));
    ws.deliver(ev("T", 3)); // gap: 2 missing
    ws.deliver(ev("T", 5));
    ws.deliver(ev("T", 6));
    expect(ws.framesOfType("resume")).toEqual([{ type: "resume", payload: { thread_id: "T", after_seq: 1 } }]);
    expect(h.events.map((e) => e.seq)).toEqual([1, 3, 5, 6]); // delivered, placed by seq later
    ws.deliver(ev("T", 2));
    ws.deliver(ev("T", 4));
    ws.deliver({ type: "replay_complete", payload: { thread_id: "T", last_seq: 6, complete: true } });
    expect(h.frames.at(-1)?.type).toBe("replay_complete");
    ws.deliver(ev("T", 7));
    expect(ws.framesOfType("resume")).toHaveLength(1); // no gap any more
    ws.deliver(ev("T", 9)); // a new gap after the replay: one new resume
    ws.deliver(ev("T", 10));
    expect(ws.framesOfType("resume")).toEqual([
      { type: "resume", payload: { thread_id: "T", after_seq: 1 } },
      { type: "resume", payload: { thread_id: "T", after_seq: 7 } },
    ]);
  });

  it("autoFollow false: only followed threads are gap-repaired and resumed on reconnect", async () => {
    const h = harness({ autoFollow: false });
    let ws = await connected(h);
    ws.deliver(ev("A", 7)); // a thread nobody opened: passed on, not replayed
    expect(h.events.map((e) => e.seq)).toEqual([7]);
    expect(ws.framesOfType("resume")).toHaveLength(0);
    h.client.follow("B", 3);
    expect(ws.framesOfType("resume").map((f) => f.payload)).toEqual([{ thread_id: "B", after_seq: 3 }]);
    ws.deliver({ type: "replay_complete", payload: { thread_id: "B", last_seq: 3, complete: true } });
    ws.deliver(ev("B", 6)); // a gap in a followed thread: repaired
    expect(ws.framesOfType("resume").map((f) => f.payload)).toContainEqual({ thread_id: "B", after_seq: 3 });
    expect(ws.framesOfType("resume")).toHaveLength(2);
    ws.serverClose(1011);
    vi.advanceTimersByTime(1_000);
    await Promise.resolve();
    ws = FakeWebSocket.last;
    ws.establish();
    expect(ws.framesOfType("resume").map((f) => f.payload)).toEqual([{ thread_id: "B", after_seq: 3 }]);
  });

  it("follow(): events <= lastSeq are duplicates and the thread is resumed from there", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.follow("T", 5);
    expect(ws.framesOfType("resume")).toEqual([{ type: "resume", payload: { thread_id: "T", after_seq: 5 } }]);
    [4, 5, 6].forEach((s) => ws.deliver(ev("T", s)));
    expect(h.events.map((e) => e.seq)).toEqual([6]);
    ws.serverClose(1001);
    vi.advanceTimersByTime(500);
    FakeWebSocket.last.establish();
    expect(FakeWebSocket.last.framesOfType("resume")).toEqual([{ type: "resume", payload: { thread_id: "T", after_seq: 6 } }]);
  });

  it("follow() before connecting resumes after connection_established", async () => {
    const h = harness();
    h.client.follow("T", 3);
    const ws = await connected(h);
    expect(ws.framesOfType("resume")).toEqual([{ type: "resume", payload: { thread_id: "T", after_seq: 3 } }]);
    expect(h.client.lastSeq("T")).toBe(3);
  });

  it("other frames go to 'frame', thread events to 'event'", async () => {
    const h = harness();
    const ws = await connected(h);
    ws.deliver({ type: "thread_created", payload: { thread_id: "T", title: "x" } });
    ws.deliver({ type: "pong", payload: { request_id: null } });
    ws.deliver(ev("T", 1, "message_created", { message_id: "m", role: "user", content: "hi" }, null));
    ws.deliver("not json");
    ws.deliver({ nope: 1 });
    expect(h.frames.map((f) => f.type)).toEqual(["connection_established", "thread_created", "pong"]);
    expect(h.events.map((e) => e.type)).toEqual(["message_created"]);
  });

  it("resume(threadId, afterSeq) and stop() send frames; a stop while not open is queued", async () => {
    const h = harness();
    expect(h.client.stop({ runId: "Q" })).toBe(false);
    expect(h.client.queuedStops).toEqual(["Q"]);
    const ws = await connected(h);
    expect(h.client.queuedStops).toEqual([]);
    expect(h.client.resume("T", 12)).toBe(true);
    expect(h.client.stop({ runId: "R" })).toBe(true);
    expect(h.client.stop({ threadId: "T" })).toBe(true);
    expect(ws.frames()).toEqual([
      { type: "stop_agent", payload: { run_id: "Q" } },
      { type: "resume", payload: { thread_id: "T", after_seq: 12 } },
      { type: "stop_agent", payload: { run_id: "R" } },
      { type: "stop_agent", payload: { thread_id: "T" } },
    ]);
  });

  it("approve() sends approve_tool (args only when approving); false while not open", async () => {
    const h = harness();
    expect(h.client.approve("R", "c1", { approved: true })).toBe(false);
    const ws = await connected(h);
    expect(h.client.approve("R", "c1", { approved: true, args: { to: "carol" } })).toBe(true);
    expect(h.client.approve("R", "c2", { approved: false, reason: " busy ", args: { x: 1 } })).toBe(true);
    expect(ws.frames()).toEqual([
      { type: "approve_tool", payload: { run_id: "R", tool_call_id: "c1", approved: true, args: { to: "carol" } },
        request_id: "approve:c1" },
      { type: "approve_tool", payload: { run_id: "R", tool_call_id: "c2", approved: false, reason: "busy" },
        request_id: "approve:c2" },
    ]);
  });

  it("a throwing listener does not break delivery", async () => {
    const h = harness();
    const spy = vi.spyOn(console, "error").mockImplementation(() => {});
    h.client.on("event", () => {
      throw new Error("boom");
    });
    const ws = await connected(h);
    ws.deliver(ev("T", 1));
    ws.deliver(ev("T", 2));
    expect(h.events).toHaveLength(2);
    expect(spy).toHaveBeenCalled();
  });

  it("unsubscribe stops delivery", async () => {
    const h = harness();
    const seen: number[] = [];
    const off = h.client.on("event", (e) => seen.push(e.seq));
    const ws = await connected(h);
    ws.deliver(ev("T", 1));
    off();
    ws.deliver(ev("T", 2));
    expect(seen).toEqual([1]);
  });
});
