import { describe, expect, it, vi } from "vitest";
import { backoffDelay } from "../src/backoff.ts";
import { base64url } from "../src/client.ts";
import { FakeWebSocket, settle } from "./fake-ws.ts";
import { connected, harness, useFakeClientClock } from "./helpers.ts";

useFakeClientClock();

describe("backoffDelay", () => {
  it("grows exponentially from baseMs and is capped at maxMs", () => {
    const full = [0, 1, 2, 3, 4, 5, 6, 7, 8, 20, 5000].map((a) => backoffDelay(a, {}, () => 1));
    expect(full).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
    expect(backoffDelay(3, { baseMs: 100, maxMs: 250 }, () => 1)).toBe(250);
  });

  it("uses equal jitter: within [d/2, d]", () => {
    expect(backoffDelay(2, {}, () => 0)).toBe(1000);
    expect(backoffDelay(2, {}, () => 0.5)).toBe(1500);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(4, {}, Math.random);
      expect(d).toBeGreaterThanOrEqual(4000);
      expect(d).toBeLessThanOrEqual(8000);
    }
  });
});

describe("connecting", () => {
  it("authenticates with the runwire.v1 and jwt.<base64url> subprotocols", async () => {
    const h = harness({}, ["ab?c.d>e"]);
    await h.client.connect();
    await settle();
    expect(FakeWebSocket.last.url).toBe("ws://test/ws");
    expect(FakeWebSocket.last.protocols).toEqual(["runwire.v1", "jwt." + base64url("ab?c.d>e")]);
    expect(base64url("ab?c.d>e")).toBe("YWI_Yy5kPmU");
    expect(base64url("a")).toBe("YQ"); // no padding
    expect(h.client.status.state).toBe("connecting");
  });

  it("is open on connection_established and keeps the payload", async () => {
    const h = harness();
    expect(h.client.status.state).toBe("idle");
    await connected(h);
    expect(h.client.status).toMatchObject({ state: "open", attempt: 0, retryInMs: null });
    expect(h.client.established?.max_message_size).toBe(65536);
    expect(h.frames.map((f) => f.type)).toEqual(["connection_established"]);
  });

  it("without a token is closed with 4001", async () => {
    const h = harness({}, [null]);
    await h.client.connect();
    expect(FakeWebSocket.instances).toHaveLength(0);
    expect(h.client.status).toMatchObject({ state: "closed", code: 4001 });
  });
});

describe("reconnect by close code", () => {
  for (const code of [1001, 1011, 4000, 4009, 1006, 1009]) {
    it(`${code} → reconnecting with backoff, then resumes`, async () => {
      const h = harness();
      const ws = await connected(h);
      ws.deliver({ type: "message_created", payload: {}, thread_id: "T", seq: 1 });
      ws.serverClose(code);
      expect(h.client.status).toMatchObject({ state: "reconnecting", code, attempt: 1, retryInMs: 500 });
      vi.advanceTimersByTime(499);
      expect(FakeWebSocket.instances).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(FakeWebSocket.instances).toHaveLength(2);
      FakeWebSocket.last.establish();
      expect(h.client.status).toMatchObject({ state: "open", attempt: 0 });
      expect(FakeWebSocket.last.framesOfType("resume")).toEqual([
        { type: "resume", payload: { thread_id: "T", after_seq: 1 } },
      ]);
    });
  }

  it("the delay grows with each failed attempt and is capped", async () => {
    const h = harness({ backoff: { baseMs: 1000, maxMs: 5000 } });
    await connected(h);
    const delays: Array<number | null> = [];
    for (let i = 0; i < 6; i++) {
      FakeWebSocket.last.serverClose(1006);
      delays.push(h.client.status.retryInMs);
      vi.advanceTimersByTime(h.client.status.retryInMs ?? 0);
    }
    expect(delays).toEqual([1000, 2000, 4000, 5000, 5000, 5000]);
    expect(h.client.status.attempt).toBe(6);
    expect(FakeWebSocket.instances).toHaveLength(7);
  });

  it("reconnectNow() skips the backoff wait, restarts a hanging attempt, and reconnects after 4008", async () => {
    const h = harness({ backoff: { baseMs: 10_000, maxMs: 30_000 } });
    const ws = await connected(h);
    ws.serverClose(1006);
    expect(h.client.status.retryInMs).toBe(10_000);
    h.client.reconnectNow();
    expect(FakeWebSocket.instances).toHaveLength(2); // at once
    h.client.reconnectNow(); // that attempt hangs (never opens): a fresh one
    expect(FakeWebSocket.instances).toHaveLength(3);
    FakeWebSocket.last.establish();
    h.client.reconnectNow(); // open: nothing to do
    expect(FakeWebSocket.instances).toHaveLength(3);
    FakeWebSocket.last.serverClose(4008);
    expect(h.client.status.state).toBe("closed");
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(3); // 4008: no retry of its own
    h.client.reconnectNow(); // the user closed a tab and asks
    expect(FakeWebSocket.instances).toHaveLength(4);
  });

  it("jitter comes from the injected random", async () => {
    const h = harness({ random: () => 0 });
    const ws = await connected(h);
    ws.serverClose(1011);
    expect(h.client.status.retryInMs).toBe(250);
  });

  for (const code of [4003, 4008, 1008]) {
    it(`${code} → closed, never reconnects`, async () => {
      const h = harness();
      const ws = await connected(h);
      ws.serverClose(code, "nope");
      expect(h.client.status).toMatchObject({ state: "closed", code, reason: "nope" });
      vi.advanceTimersByTime(120_000);
      expect(FakeWebSocket.instances).toHaveLength(1);
    });
  }

  it("4001 → refreshes the token once and reconnects at once with the new one", async () => {
    const h = harness({}, ["old", "new"]);
    const ws = await connected(h);
    ws.serverClose(4001, "token expired");
    await settle();
    expect(h.getToken.mock.calls).toEqual([[false], [true]]);
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(FakeWebSocket.last.protocols).toEqual(["runwire.v1", "jwt." + base64url("new")]);
    // rejected again before opening: no second refresh
    FakeWebSocket.last.serverClose(4001, "token expired");
    await settle();
    expect(h.getToken).toHaveBeenCalledTimes(2);
    expect(h.client.status).toMatchObject({ state: "closed", code: 4001 });
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it("4001 with the same token from the refresh → closed 4001", async () => {
    const h = harness({}, ["same"]);
    const ws = await connected(h);
    ws.serverClose(4001);
    await settle();
    expect(h.getToken).toHaveBeenLastCalledWith(true);
    expect(h.client.status).toMatchObject({ state: "closed", code: 4001 });
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it("4001 after a successful open may refresh again", async () => {
    const h = harness({}, ["a", "b", "c"]);
    await connected(h);
    FakeWebSocket.last.serverClose(4001);
    await settle();
    FakeWebSocket.last.establish();
    FakeWebSocket.last.serverClose(4001);
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(3);
    expect(FakeWebSocket.last.protocols).toEqual(["runwire.v1", "jwt." + base64url("c")]);
  });

  it("after closed 4001, connect() asks for the current token and may refresh again", async () => {
    const h = harness({}, ["old", "old", "new", "newer"]);
    const ws = await connected(h);
    ws.serverClose(4001);
    await settle();
    expect(h.client.status).toMatchObject({ state: "closed", code: 4001 });
    await h.client.connect(); // the user signed in again
    expect(FakeWebSocket.last.protocols).toEqual(["runwire.v1", "jwt." + base64url("new")]);
    FakeWebSocket.last.serverClose(4001);
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(3);
    expect(FakeWebSocket.last.protocols).toEqual(["runwire.v1", "jwt." + base64url("newer")]);
  });

  it("1000 (idle) → closed; the next send() reconnects on demand", async () => {
    const h = harness();
    const ws = await connected(h);
    ws.serverClose(1000, "idle");
    expect(h.client.status).toMatchObject({ state: "closed", code: 1000 });
    vi.advanceTimersByTime(120_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    const m = h.client.send("hello");
    expect(m.state).toBe("queued");
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last.establish();
    expect(FakeWebSocket.last.framesOfType("user_message")).toHaveLength(1);
  });

  it("1000 (idle) → resume() reconnects on demand", async () => {
    const h = harness();
    const ws = await connected(h);
    ws.serverClose(1000);
    expect(h.client.resume("T", 4)).toBe(false);
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last.establish();
    expect(FakeWebSocket.last.framesOfType("resume")).toEqual([{ type: "resume", payload: { thread_id: "T", after_seq: 0 } }]);
  });

  it("close() by the app → closed, no reconnect, a close frame 1000", async () => {
    const h = harness();
    const ws = await connected(h);
    h.client.close();
    expect(ws.closedByClient?.code).toBe(1000);
    expect(h.client.status.state).toBe("closed");
    ws.serverClose(1006); // late close event: ignored
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(h.client.status.state).toBe("closed");
  });

  it("close() while waiting to reconnect cancels the retry", async () => {
    const h = harness();
    const ws = await connected(h);
    ws.serverClose(1011);
    h.client.close();
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(h.client.status.state).toBe("closed");
  });
});
