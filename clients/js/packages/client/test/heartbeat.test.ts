import { describe, expect, it, vi } from "vitest";
import { FakeWebSocket, ev } from "./fake-ws.ts";
import { connected, harness, useFakeClientClock } from "./helpers.ts";

useFakeClientClock();

describe("heartbeat", () => {
  it("pings after heartbeat_interval of silence, reconnects (4000) after another without an answer", async () => {
    const h = harness();
    const ws = await connected(h, { heartbeat_interval: 10 });
    vi.advanceTimersByTime(9_999);
    expect(ws.framesOfType("ping")).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(ws.framesOfType("ping")).toEqual([{ type: "ping", payload: {} }]);
    vi.advanceTimersByTime(9_999);
    expect(h.client.status.state).toBe("open");
    vi.advanceTimersByTime(1);
    expect(ws.closedByClient?.code).toBe(4000);
    expect(h.client.status).toMatchObject({ state: "reconnecting", code: 4000, retryInMs: 500 });
    vi.advanceTimersByTime(500);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it("any frame counts as life: no ping while frames flow, and a pong ends the check", async () => {
    const h = harness();
    const ws = await connected(h, { heartbeat_interval: 10 });
    for (let i = 1; i <= 5; i++) {
      vi.advanceTimersByTime(6_000);
      ws.deliver(ev("T", i));
    }
    expect(ws.framesOfType("ping")).toHaveLength(0);
    vi.advanceTimersByTime(10_000);
    expect(ws.framesOfType("ping")).toHaveLength(1);
    vi.advanceTimersByTime(5_000);
    ws.deliver({ type: "pong", payload: {} });
    vi.advanceTimersByTime(9_000);
    expect(h.client.status.state).toBe("open");
    vi.advanceTimersByTime(1_000); // 10 s after the pong: a new ping, not a close
    expect(ws.framesOfType("ping")).toHaveLength(2);
    expect(ws.closedByClient).toBeNull();
  });

  it("stops pinging an unused connection so the server's idle timeout can close it", async () => {
    const h = harness();
    const ws = await connected(h, { heartbeat_interval: 30 });
    for (let t = 0; t < 12; t++) { // 6 minutes of nothing but ping/pong
      vi.advanceTimersByTime(30_000);
      if (ws.framesOfType("ping").length > t) ws.deliver({ type: "pong", payload: {} });
    }
    const pings = ws.framesOfType("ping").length;
    expect(pings).toBeGreaterThanOrEqual(8);
    expect(pings).toBeLessThanOrEqual(10);
    vi.advanceTimersByTime(10 * 60_000);
    expect(ws.framesOfType("ping")).toHaveLength(pings); // no more pings, no 4000 close
    expect(ws.closedByClient).toBeNull();
    h.client.resume("T"); // used again: pings resume
    vi.advanceTimersByTime(30_000);
    expect(ws.framesOfType("ping")).toHaveLength(pings + 1);
  });

  it("stops with the socket: no ping on a closed connection", async () => {
    const h = harness();
    const ws = await connected(h, { heartbeat_interval: 10 });
    h.client.close();
    vi.advanceTimersByTime(60_000);
    expect(ws.sent).toHaveLength(0);
  });
});
