// @vitest-environment jsdom
import { describe, expect, it, vi } from "vitest";
import { FakeWebSocket } from "./fake-ws.ts";
import { connected, harness, useFakeClientClock } from "./helpers.ts";

useFakeClientClock();

describe("browser network events", () => {
  it("offline closes the socket at once; online reconnects immediately and resends", async () => {
    const h = harness({ watchNetwork: true });
    const ws = await connected(h);
    h.client.send("q", { messageId: "m1" });
    window.dispatchEvent(new Event("offline"));
    expect(ws.closedByClient).not.toBeNull();
    expect(h.client.status.state).toBe("reconnecting");
    expect(h.client.outbox[0]?.state).toBe("queued");
    window.dispatchEvent(new Event("online"));
    expect(FakeWebSocket.instances).toHaveLength(2); // no waiting for the backoff
    FakeWebSocket.last.establish();
    expect(FakeWebSocket.last.framesOfType("user_message").map((f) => f.payload.message_id)).toEqual(["m1"]);
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(2); // the backoff timer was cancelled
  });

  it("online does nothing while open or after close()", async () => {
    const h = harness({ watchNetwork: true });
    await connected(h);
    window.dispatchEvent(new Event("online"));
    expect(FakeWebSocket.instances).toHaveLength(1);
    h.client.close();
    window.dispatchEvent(new Event("offline"));
    window.dispatchEvent(new Event("online"));
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it("watchNetwork defaults to true when window exists", async () => {
    const h = harness({ watchNetwork: undefined });
    const ws = await connected(h);
    window.dispatchEvent(new Event("offline"));
    expect(ws.closedByClient).not.toBeNull();
    h.client.close();
  });
});
