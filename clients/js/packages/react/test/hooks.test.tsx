// @vitest-environment jsdom
import {
  MemoryHistory,
  RestClient,
  RunwireClient,
  applyEvents,
  emptyTimeline,
  type ThreadEvent,
} from "@runwire/client";
import { act, cleanup, renderHook, waitFor } from "@testing-library/react";
import { useState, type ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeWebSocket, ev } from "../../client/test/fake-ws.ts";
import { RunwireProvider, useAgent, useConnection, useThreads } from "../src/index.ts";

type Route = (url: string, init: RequestInit | undefined) => unknown;

/** A fetch stub: answers by path, records every call. */
function fakeFetch(routes: Record<string, Route>) {
  const calls: Array<{ url: string; method: string }> = [];
  const fetch = vi.fn(async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    calls.push({ url, method: init?.method ?? "GET" });
    const key = Object.keys(routes).find((k) => url.includes(k));
    if (!key) return new Response(JSON.stringify({ title: "no route" }), { status: 404 });
    const body = await routes[key]!(url, init);
    return body === null ? new Response(null, { status: 204 })
      : new Response(JSON.stringify(body), { status: 200, headers: { "content-type": "application/json" } });
  });
  return { fetch, calls };
}

const EMPTY_PAGE = { items: [], next_cursor: null, last_seq: 0, first_retained_seq: null };
const THREADS = { items: [], next_cursor: null };

function setup(routes: Record<string, Route> = {}, history = new MemoryHistory()) {
  const { fetch, calls } = fakeFetch({ "/api/threads?": () => THREADS, ...routes });
  const getToken = async () => "tok";
  const client = new RunwireClient({
    url: "ws://t/ws", getToken, WebSocket: FakeWebSocket, watchNetwork: false, autoFollow: false,
  });
  const rest = new RestClient({ getToken, fetch });
  const wrapper = ({ children }: { children: ReactNode }) => (
    <RunwireProvider client={client} rest={rest} history={history}>{children}</RunwireProvider>
  );
  return { client, rest, wrapper, calls, history };
}

async function established(): Promise<FakeWebSocket> {
  await waitFor(() => expect(FakeWebSocket.instances.length).toBeGreaterThan(0));
  const ws = FakeWebSocket.last;
  act(() => ws.establish());
  return ws;
}

function deliver(ws: FakeWebSocket, ...frames: object[]): void {
  act(() => { for (const f of frames) ws.deliver(f); });
}

function run(threadId: string, from: number, userId = "m1"): ThreadEvent[] {
  return [
    ev(threadId, from, "message_created", { message_id: userId, role: "user", content: "what is 6*7?" }, null),
    ev(threadId, from + 1, "agent_started", { agent_name: "supervisor", message_id: userId, run_id: "R1" }),
    ev(threadId, from + 2, "partial_result", { agent_name: "supervisor", message_id: "a1", delta: "6*7 = " }),
    ev(threadId, from + 3, "partial_result", { agent_name: "supervisor", message_id: "a1", delta: "**42**" }),
    ev(threadId, from + 4, "agent_response", { agent_name: "supervisor", message_id: "a1", content: "6*7 = **42**" }),
    ev(threadId, from + 5, "agent_completed", { status: "completed", message_id: "a1", duration_ms: 5 }),
  ] as unknown as ThreadEvent[];
}

/** useAgent as the page uses it: a new chat that follows its thread once created. */
function renderNewChat(wrapper: ({ children }: { children: ReactNode }) => ReactNode) {
  return renderHook(() => {
    const [current, setCurrent] = useState<string | null>(null);
    return { agent: useAgent(current, { onThreadCreated: setCurrent }), current };
  }, { wrapper });
}

beforeEach(() => FakeWebSocket.reset());
afterEach(() => cleanup());

describe("useAgent", () => {
  it("shows a new chat's message at once, follows it into its thread on ack, and streams the run", async () => {
    const { wrapper } = setup({ "/api/threads/T1/events": () => EMPTY_PAGE });
    const { result } = renderNewChat(wrapper);
    const ws = await established();

    act(() => { result.current.agent.send("what is 6*7?", { messageId: "m1" }); });
    expect(result.current.agent.messages.map((m) => [m.role, m.content, m.outbox]))
      .toEqual([["user", "what is 6*7?", "sent"]]);
    expect(result.current.agent.status).toBe("submitted");
    expect(ws.framesOfType("user_message")[0]?.payload).toMatchObject({ content: "what is 6*7?", message_id: "m1" });

    deliver(ws, { type: "message_ack", payload: { message_id: "m1", thread_id: "T1", run_id: "R1", duplicate: false } });
    expect(result.current.current).toBe("T1");
    await waitFor(() => expect(result.current.agent.load).toBe("loaded"));
    expect(result.current.agent.messages.map((m) => m.content)).toEqual(["what is 6*7?"]);

    const events = run("T1", 1);
    deliver(ws, events[0]!, events[1]!, events[2]!);
    expect(result.current.agent.status).toBe("streaming");
    expect(result.current.agent.messages.at(-1)).toMatchObject({ role: "assistant", content: "6*7 = ", streaming: true });
    deliver(ws, ...events.slice(3));
    expect(result.current.agent.status).toBe("ready");
    expect(result.current.agent.messages.map((m) => [m.role, m.content, m.outbox]))
      .toEqual([["user", "what is 6*7?", null], ["assistant", "6*7 = **42**", null]]);
    expect(result.current.agent.activeRun).toBeNull();
  });

  it("loads a thread from the local cache first and resumes after its last seq", async () => {
    const history = new MemoryHistory();
    await history.save(applyEvents(emptyTimeline("T1"), run("T1", 1)));
    const { wrapper, calls } = setup({}, history);
    const { result } = renderHook(() => useAgent("T1"), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    expect(result.current.source).toBe("cache");
    expect(result.current.messages.map((m) => m.content)).toEqual(["what is 6*7?", "6*7 = **42**"]);
    expect(calls.some((c) => c.url.includes("/events"))).toBe(false);
    expect(ws.framesOfType("resume").map((f) => f.payload)).toContainEqual({ thread_id: "T1", after_seq: 6 });
  });

  it("useAgent().approvals lists the pending calls, approve() sends approve_tool, useThreads().waiting marks the thread", async () => {
    const asked = [
      ev("T1", 1, "message_created", { message_id: "m1", role: "user", content: "notify bob: hi" }, null),
      ev("T1", 2, "agent_started", { agent_name: "supervisor", message_id: "m1", run_id: "R1" }),
      ev("T1", 3, "approval_required", {
        agent_name: "supervisor", tool_call_id: "c1", tool_name: "send_notification",
        tool_args: { to: "bob", text: "hi" }, expires_at: "2026-12-03T10:00:00Z" }, "R1"),
    ] as unknown as ThreadEvent[];
    const { wrapper } = setup({
      "/api/threads/T1/events": () => ({ items: asked, next_cursor: null, last_seq: 3, first_retained_seq: 1 }),
      "/api/approvals": () => [{ run_id: "R1", thread_id: "T1", agent_name: "supervisor", tool_call_id: "c1",
        tool_name: "send_notification", tool_args: { to: "bob", text: "hi" }, created_at: "", expires_at: "" }],
    });
    const { result } = renderHook(() => ({ agent: useAgent("T1"), threads: useThreads() }), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.agent.load).toBe("loaded"));
    act(() => { void result.current.threads.refresh(); });
    await waitFor(() => expect([...result.current.threads.waiting]).toEqual(["T1"]));
    expect(result.current.agent.approvals.map((a) => [a.id, a.toolName, a.args])).toEqual(
      [["c1", "send_notification", { to: "bob", text: "hi" }]]);
    expect(result.current.agent.activeRun?.status).toBe("waiting");
    expect(result.current.agent.status).toBe("streaming");
    const item = result.current.agent.approvals[0]!;
    expect(result.current.agent.approve(item, { approved: false, reason: "no" })).toBe(true);
    expect(ws.framesOfType("approve_tool").map((f) => f.payload)).toEqual(
      [{ run_id: "R1", tool_call_id: "c1", approved: false, reason: "no" }]);
    deliver(ws, ev("T1", 4, "approval_resolved", { tool_call_id: "c1", approved: false, reason: "no", args: null }, "R1"));
    await waitFor(() => expect(result.current.agent.approvals).toEqual([]));
    expect(result.current.threads.waiting.size).toBe(0);
  });

  it("applies live events that arrive while the thread loads once each, in seq order", async () => {
    let answer: (page: unknown) => void = () => undefined;
    const events = run("T1", 1);
    const { wrapper } = setup({
      "/api/threads/T1/events": () => new Promise((resolve) => { answer = resolve; }),
    });
    const { result } = renderHook(() => useAgent("T1"), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.load).toBe("loading"));
    deliver(ws, events[3]!, events[4]!, events[5]!); // live, newer than what REST will bring
    await act(async () => {
      answer({ items: events.slice(0, 4), next_cursor: null, last_seq: 4, first_retained_seq: 1 });
    });
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    expect(result.current.items.map((i) => i.kind)).toEqual(["message", "run", "message"]);
    expect(result.current.messages.map((m) => m.content)).toEqual(["what is 6*7?", "6*7 = **42**"]);
    expect(result.current.timeline.contiguousSeq).toBe(6);
  });

  it("reloads the thread from the server when a replay cannot prove continuity", async () => {
    const history = new MemoryHistory();
    await history.save(applyEvents(emptyTimeline("T1"), run("T1", 1).slice(0, 2)));
    const events = run("T1", 1);
    const { wrapper, calls } = setup({
      "/api/threads/T1/events": () => ({ items: events.slice(3), next_cursor: null, last_seq: 6, first_retained_seq: 4 }),
      "/api/threads/T1/messages": () => ({ items: [
        { message_id: "m1", thread_id: "T1", role: "user", content: "what is 6*7?", run_id: "R1", created_at: "2026-12-01T00:00:00Z" },
      ], next_cursor: null }),
    }, history);
    const { result } = renderHook(() => useAgent("T1"), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.source).toBe("cache"));
    deliver(ws, { type: "replay_complete", payload: { thread_id: "T1", last_seq: 6, complete: false } });
    await waitFor(() => expect(result.current.source).toBe("server"));
    expect(calls.filter((c) => c.url.includes("/messages"))).toHaveLength(1);
    expect(result.current.messages.map((m) => m.content)).toEqual(["what is 6*7?", "6*7 = **42**"]);
  });

  it("puts back a message an earlier page queued, shows it, and sends it once connected", async () => {
    const history = new MemoryHistory();
    await history.saveOutbox([{ messageId: "m9", content: "sent while offline", threadId: null,
      state: "sent", error: null, runId: null, createdAt: 1 }]);
    const { wrapper } = setup({}, history);
    const { result } = renderHook(() => useAgent(null), { wrapper });
    await waitFor(() => expect(result.current.messages.map((m) => [m.content, m.outbox]))
      .toEqual([["sent while offline", "queued"]]));
    const ws = await established();
    expect(ws.framesOfType("user_message").map((f) => f.payload))
      .toEqual([{ content: "sent while offline", message_id: "m9" }]);
    expect(result.current.messages[0]?.outbox).toBe("sent");
  });

  it("holds a second new-chat message until the first one's ack, then sends it into that thread", async () => {
    const { wrapper } = setup({ "/api/threads/T1/events": () => EMPTY_PAGE });
    const { result } = renderNewChat(wrapper);
    const ws = await established();
    act(() => { result.current.agent.send("first", { messageId: "m1" }); });
    act(() => { result.current.agent.send("second", { messageId: "m2" }); });
    expect(result.current.agent.messages.map((m) => [m.content, m.outbox]))
      .toEqual([["first", "sent"], ["second", "queued"]]);
    expect(ws.framesOfType("user_message")).toHaveLength(1); // not a second thread
    deliver(ws, { type: "message_ack", payload: { message_id: "m1", thread_id: "T1", run_id: "R1", duplicate: false } });
    expect(ws.framesOfType("user_message").map((f) => f.payload))
      .toEqual([{ content: "first", message_id: "m1" }, { content: "second", message_id: "m2", thread_id: "T1" }]);
    await waitFor(() => expect(result.current.agent.load).toBe("loaded"));
    expect(result.current.current).toBe("T1");
    expect(result.current.agent.messages.map((m) => m.content)).toEqual(["first", "second"]);
  });

  it("reloads once however many replays answer complete:false meanwhile", async () => {
    let answer: (page: unknown) => void = () => undefined;
    const events = run("T1", 1);
    const { wrapper, calls } = setup({
      "/api/threads/T1/events": () => new Promise((resolve) => { answer = resolve; }),
    }, (() => { const h = new MemoryHistory(); void h.save(applyEvents(emptyTimeline("T1"), events.slice(0, 1))); return h; })());
    const { result } = renderHook(() => useAgent("T1"), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.source).toBe("cache"));
    const incomplete = { type: "replay_complete", payload: { thread_id: "T1", last_seq: 6, complete: false } };
    deliver(ws, incomplete);
    deliver(ws, events[4]!, incomplete);
    await waitFor(() => expect(calls.some((c) => c.url.includes("/events"))).toBe(true));
    await act(async () => answer({ items: events.slice(0, 5), next_cursor: null, last_seq: 5, first_retained_seq: 1 }));
    deliver(ws, events[5]!);
    await waitFor(() => expect(result.current.source).toBe("server"));
    expect(calls.filter((c) => c.url.includes("/events"))).toHaveLength(1);
    expect(result.current.status).toBe("ready");
    expect(result.current.items.find((i) => i.kind === "run")).toMatchObject({ status: "completed" });
    expect(result.current.activeRun).toBeNull();
  });

  it("dismisses a failed message and forgets a deleted thread", async () => {
    const { wrapper } = setup({ "/api/threads/T1/events": () => EMPTY_PAGE });
    const { result } = renderHook(() => useAgent("T1"), { wrapper });
    let ws = await established();
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    act(() => { result.current.send("too busy", { messageId: "m5" }); });
    deliver(ws, { type: "error", payload: { code: "thread_busy", message: "busy", request_id: "m5" } });
    expect(result.current.messages.map((m) => m.outbox)).toEqual(["failed"]);
    act(() => result.current.discard("m5"));
    expect(result.current.messages).toEqual([]);
    deliver(ws, { type: "thread_deleted", payload: { thread_id: "T1" } });
    expect(result.current.deleted).toBe(true);
    act(() => ws.serverClose(1011));
    await waitFor(() => expect(FakeWebSocket.instances.length).toBe(2), { timeout: 3000 });
    ws = FakeWebSocket.last;
    act(() => ws.establish());
    expect(ws.framesOfType("resume")).toEqual([]); // a deleted thread is not resumed
  });

  it("stop cancels the current run only (by run id), not the thread", async () => {
    const { wrapper } = setup({ "/api/threads/T1/events": () => EMPTY_PAGE });
    const { result } = renderHook(() => useAgent("T1"), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    act(() => { expect(result.current.stop()).toBe(false); }); // nothing running
    deliver(ws, ...run("T1", 1).slice(0, 3));
    act(() => { expect(result.current.stop()).toBe(true); });
    expect(ws.framesOfType("stop_agent").map((f) => f.payload)).toEqual([{ run_id: "R1" }]);
  });

  it("onToolCall, onFinish and onError see live runs; the run item has usage and duration", async () => {
    const { wrapper } = setup({ "/api/threads/T1/events": () => EMPTY_PAGE });
    const calls: string[] = [];
    const { result } = renderHook(() => useAgent("T1", {
      onToolCall: (t) => calls.push(`tool ${t.toolName} ${JSON.stringify(t.args)}`),
      onFinish: (r, a) => calls.push(`finish ${r.runId} ${r.status} ${a?.content ?? ""}`),
      onError: (r) => calls.push(`error ${r.runId} ${r.error?.code} ${r.error?.retryable}`),
    }), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    deliver(ws,
      ev("T1", 1, "message_created", { message_id: "m1", role: "user", content: "6*7?" }, null),
      ev("T1", 2, "agent_started", { agent_name: "supervisor", message_id: "m1", run_id: "R1" }),
      ev("T1", 3, "tool_executing", { agent_name: "supervisor", tool_name: "calculator",
                                      tool_args: { expression: "6*7" }, tool_call_id: "c1" }),
      ev("T1", 4, "agent_response", { agent_name: "supervisor", message_id: "a1", content: "**42**" }),
      ev("T1", 5, "agent_completed", { status: "completed", message_id: "a1", duration_ms: 812,
                                       usage: { input_tokens: 30, output_tokens: 12, note: "x" } }),
      ev("T1", 6, "message_created", { message_id: "m2", role: "user", content: "again" }, null),
      ev("T1", 7, "agent_error", { code: "model_error", message: "429", retryable: true }, "R2"));
    expect(calls).toEqual([
      'tool calculator {"expression":"6*7"}', "finish R1 completed **42**", "error R2 model_error true",
    ]);
    const run = result.current.items.find((i) => i.kind === "run" && i.runId === "R1");
    expect(run?.kind === "run" && [run.durationMs, run.usage]).toEqual([812, { input_tokens: 30, output_tokens: 12 }]);
    deliver(ws, ev("T1", 5, "agent_completed", { status: "completed" })); // a duplicate: no second call
    expect(calls).toHaveLength(3);
  });

  it("regenerate() and edit() send the earlier / edited question as a new run", async () => {
    const { wrapper } = setup({ "/api/threads/T1/events": () => EMPTY_PAGE });
    const { result } = renderHook(() => useAgent("T1"), { wrapper });
    const ws = await established();
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    deliver(ws, ...run("T1", 1));
    act(() => { result.current.regenerate(); });
    act(() => { result.current.edit("m1", "what is 6*8?"); });
    const sent = ws.framesOfType("user_message").map((f) => [f.payload.content, f.payload.thread_id]);
    expect(sent).toEqual([["what is 6*7?", "T1"], ["what is 6*8?", "T1"]]);
    // the earlier answer stays
    expect(result.current.messages.filter((m) => m.role === "assistant").map((m) => m.content))
      .toEqual(["6*7 = **42**"]);
  });
});

describe("useThreads and useConnection", () => {
  it("lists threads and follows thread_created, thread_updated and thread_deleted", async () => {
    const { wrapper, calls } = setup({
      "/api/threads?": () => ({ items: [
        { thread_id: "T0", title: "old", created_at: "2026-12-01T00:00:00Z", updated_at: "2026-12-01T00:00:00Z", last_seq: 3 },
      ], next_cursor: null }),
      "/api/threads/T1": (_url, init) => (init?.method === "DELETE" ? null
        : { thread_id: "T1", title: "Renamed", created_at: "x", updated_at: "x", last_seq: 0 }),
    });
    const { result } = renderHook(() => ({ threads: useThreads(), conn: useConnection() }), { wrapper });
    await waitFor(() => expect(result.current.threads.load).toBe("loaded"));
    const ws = await established();
    expect(result.current.conn.state).toBe("open");
    expect(result.current.conn.established?.model).toEqual({ name: "builtin", demo: true });
    deliver(ws, { type: "thread_created", payload: { thread_id: "T1", title: "new one" } });
    expect(result.current.threads.threads.map((t) => t.title)).toEqual(["new one", "old"]);
    deliver(ws, { type: "thread_updated", payload: { thread_id: "T0", title: "older" } });
    expect(result.current.threads.threads.map((t) => t.title)).toEqual(["new one", "older"]);
    await act(() => result.current.threads.rename("T1", "Renamed"));
    expect(calls.find((c) => c.method === "PATCH")?.url).toContain("/api/threads/T1");
    expect(result.current.threads.threads[0]?.title).toBe("Renamed");
    await act(() => result.current.threads.remove("T1"));
    expect(result.current.threads.threads.map((t) => t.thread_id)).toEqual(["T0"]);
    deliver(ws, { type: "thread_deleted", payload: { thread_id: "T0" } });
    expect(result.current.threads.threads).toEqual([]);
  });

  it("keeps a thread created live while an older list answer is still on its way", async () => {
    const answers: Array<(page: unknown) => void> = [];
    const { wrapper } = setup({
      "/api/threads?": () => new Promise((resolve) => { answers.push(resolve); }),
    });
    const { result } = renderHook(() => useThreads(), { wrapper });
    await waitFor(() => expect(answers).toHaveLength(1));
    await act(async () => answers[0]!(THREADS));
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    const ws = await established(); // (re)connected: the list is reloaded, answer pending
    await waitFor(() => expect(answers).toHaveLength(2));
    deliver(ws, { type: "thread_created", payload: { thread_id: "T1", title: "new one" } });
    await act(async () => answers[1]!(THREADS)); // taken before T1 existed
    expect(result.current.threads.map((t) => t.thread_id)).toEqual(["T1"]);
  });

  it("pages in older threads after the first hundred", async () => {
    const thread = (id: string) => ({ thread_id: id, title: id, created_at: "x", updated_at: "x", last_seq: 1 });
    const { wrapper, calls } = setup({
      "/api/threads?": (url) => (url.includes("cursor=c1")
        ? { items: [thread("T1"), thread("T0")], next_cursor: null }
        : { items: [thread("T2"), thread("T1")], next_cursor: "c1" }),
    });
    const { result } = renderHook(() => useThreads(), { wrapper });
    await waitFor(() => expect(result.current.load).toBe("loaded"));
    expect(result.current.hasMore).toBe(true);
    await act(() => result.current.loadMore());
    expect(result.current.threads.map((t) => t.thread_id)).toEqual(["T2", "T1", "T0"]);
    expect(result.current.hasMore).toBe(false);
    expect(calls.filter((c) => c.url.includes("cursor=c1"))).toHaveLength(1);
  });
});
