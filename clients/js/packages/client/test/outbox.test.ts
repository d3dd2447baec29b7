import { describe, expect, it, vi } from "vitest";
import { FakeWebSocket, settle } from "./fake-ws.ts";
import { connected, harness, useFakeClientClock } from "./helpers.ts";

useFakeClientClock();

const ack = (id: string, duplicate = false) => ({
  type: "message_ack", payload: { message_id: id, thread_id: "T", run_id: "R", duplicate },
});

describe("the outbox", () => {
  it("send() is optimistic: queued while closed, sent on open, with request_id = message_id", async () => {
    const h = harness();
    const m = h.client.send("hello", { messageId: "m1", threadId: "T", settings: { multitask_strategy: "interrupt" } });
    expect(m).toMatchObject({ messageId: "m1", content: "hello", threadId: "T", state: "queued", error: null, runId: null });
    expect(h.client.outbox.map((x) => x.state)).toEqual(["queued"]);
    const ws = await connected(h);
    expect(ws.frames()).toEqual([{
      type: "user_message",
      payload: { content: "hello", message_id: "m1", thread_id: "T", settings: { multitask_strategy: "interrupt" } },
      request_id: "m1",
    }]);
    expect(h.client.outbox.map((x) => x.state)).toEqual(["sent"]);
  });

  it("generates a uuid message id and is sent at once when open", async () => {
    const h = harness();
    const ws = await connected(h);
    const m = h.client.send("hi");
    expect(m.state).toBe("sent");
    expect(m.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(m.threadId).toBeNull();
    const f = ws.frames()[0];
    expect(f?.payload).toEqual({ content: "hi", message_id: m.messageId });
  });

  it("with opts.agent sends start_agent", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.send("research x", { messageId: "m1", agent: "researcher" });
    expect(ws.frames()).toEqual([{
      type: "start_agent", payload: { user_request: "research x", agent: "researcher", message_id: "m1" }, request_id: "m1",
    }]);
  });

  it("message_ack → acked with thread and run, then removed; outbox emitted on every change", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.send("q", { messageId: "m1" });
    h.outboxes.length = 0;
    ws.deliver(ack("m1"));
    expect(h.outboxes).toEqual([
      [expect.objectContaining({ messageId: "m1", state: "acked", threadId: "T", runId: "R" })],
      [],
    ]);
    expect(h.client.outbox).toEqual([]);
    expect(h.frames.at(-1)?.type).toBe("message_ack");
  });

  it("un-acked messages go back to queued on close and are resent with the same message_id", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.send("q", { messageId: "m1" });
    ws.serverClose(1006);
    expect(h.client.outbox.map((x) => x.state)).toEqual(["queued"]);
    h.client.send("q2", { messageId: "m2" });
    vi.advanceTimersByTime(500);
    const ws2 = FakeWebSocket.last;
    expect(ws2.sent).toHaveLength(0);
    ws2.establish();
    expect(ws2.framesOfType("user_message").map((f) => f.payload.message_id)).toEqual(["m1", "m2"]);
    ws2.deliver(ack("m1", true)); // the server had it: duplicate counts as acked
    ws2.deliver(ack("m2"));
    expect(h.client.outbox).toEqual([]);
  });

  it("rate_limited → queued and resent after retry_after_ms", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.send("q", { messageId: "m1" });
    ws.deliver({ type: "error", payload: { code: "rate_limited", message: "slow down", request_id: "m1", retry_after_ms: 2000 } });
    expect(h.client.outbox[0]?.state).toBe("queued");
    h.client.send("other", { messageId: "m2" }); // a flush meanwhile does not resend m1 early
    expect(ws.framesOfType("user_message").map((f) => f.payload.message_id)).toEqual(["m1", "m2"]);
    vi.advanceTimersByTime(1999);
    expect(ws.framesOfType("user_message")).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(ws.framesOfType("user_message").map((f) => f.payload.message_id)).toEqual(["m1", "m2", "m1"]);
    expect(h.client.outbox.map((x) => x.state)).toEqual(["sent", "sent"]);
  });

  it("other errors → failed with code and message; retry() queues it again; discard() removes it", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.send("q", { messageId: "m1", threadId: "T" });
    ws.deliver({ type: "error", payload: { code: "thread_busy", message: "busy", request_id: "m1" } });
    expect(h.client.outbox[0]).toMatchObject({ state: "failed", error: { code: "thread_busy", message: "busy" } });
    ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    FakeWebSocket.last.establish();
    expect(FakeWebSocket.last.sent).toHaveLength(0); // failed is not resent
    expect(h.client.retry("m1")).toBe(true);
    expect(h.client.outbox[0]).toMatchObject({ state: "sent", error: null });
    expect(h.client.retry("m1")).toBe(false); // not failed
    expect(h.client.discard("m1")).toBe(true);
    expect(h.client.outbox).toEqual([]);
    expect(h.client.discard("m1")).toBe(false);
  });

  it("an error for an unknown request_id leaves the outbox alone", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.send("q", { messageId: "m1" });
    ws.deliver({ type: "error", payload: { code: "validation_error", message: "x", request_id: "other" } });
    expect(h.client.outbox[0]?.state).toBe("sent");
  });

  it("a message over max_message_size fails locally (too_large) and is never sent", async () => {
    const h = harness();
    const ws = await connected(h, { max_message_size: 100 });
    const m = h.client.send("é".repeat(60), { messageId: "big" }); // 120 bytes of content
    expect(m.state).toBe("failed");
    expect(m.error?.code).toBe("too_large");
    const ok = h.client.send("small", { messageId: "ok" });
    expect(ok.state).toBe("sent");
    expect(ws.framesOfType("user_message").map((f) => f.payload.message_id)).toEqual(["ok"]);
    h.client.retry("big");
    expect(h.client.outbox.find((x) => x.messageId === "big")?.state).toBe("failed");
    expect(ws.framesOfType("user_message")).toHaveLength(1);
  });

  it("queued before the limit is known: checked when connection_established arrives", async () => {
    const h = harness();
    h.client.send("x".repeat(500), { messageId: "big" });
    const ws = await connected(h, { max_message_size: 200 });
    expect(ws.sent).toHaveLength(0);
    expect(h.client.outbox[0]?.error?.code).toBe("too_large");
  });

  it("restoreOutbox() puts saved messages back (sent → queued) and sends them", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.restoreOutbox([
      { messageId: "a", content: "A", threadId: "T", state: "sent", error: null, runId: null, createdAt: 1 },
      { messageId: "b", content: "B", threadId: null, state: "failed", error: { code: "x", message: "y" }, runId: null, createdAt: 2 },
    ]);
    expect(ws.framesOfType("user_message").map((f) => f.payload.message_id)).toEqual(["a"]);
    expect(h.client.outbox.map((x) => x.state)).toEqual(["sent", "failed"]);
  });

  it("close() keeps the outbox; sent items count as queued again", async () => {
    const h = harness();
    await connected(h);
    h.client.send("q", { messageId: "m1" });
    h.client.close();
    expect(h.client.outbox.map((x) => x.state)).toEqual(["queued"]);
    h.client.send("q2", { messageId: "m2" }); // closed by the app: no reconnect on demand
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(1);
    await h.client.connect();
    FakeWebSocket.last.establish();
    expect(FakeWebSocket.last.framesOfType("user_message").map((f) => f.payload.message_id)).toEqual(["m1", "m2"]);
  });
});
