import { describe, expect, it, vi } from "vitest";
import { ChunkAssembler, utf8Length } from "../src/chunks.ts";
import { FakeWebSocket, ev } from "./fake-ws.ts";
import { connected, harness, useFakeClientClock } from "./helpers.ts";

/** Cuts `text` between code points into slices of at most `max` UTF-8 bytes (like the server). */
function cut(text: string, max: number): string[] {
  const out: string[] = [];
  let cur = "";
  for (const cp of text) {
    if (utf8Length(cur + cp) > max) {
      out.push(cur);
      cur = "";
    }
    cur += cp;
  }
  if (cur) out.push(cur);
  return out;
}

function chunkFrames(id: string, text: string, max: number): Array<Record<string, unknown>> {
  const parts = cut(text, max);
  return parts.map((data, index) => ({ type: "chunk", payload: { chunk_id: id, index, total: parts.length, data } }));
}

describe("ChunkAssembler", () => {
  it("joins out-of-order chunks, multi-byte UTF-8 intact", () => {
    const text = JSON.stringify({ type: "agent_response", payload: { content: "héllo wörld 😀 世界 ".repeat(20) } });
    const frames = chunkFrames("c1", text, 16);
    expect(frames.length).toBeGreaterThan(10);
    const a = new ChunkAssembler();
    const order = frames.map((_, i) => i).reverse();
    const results = order.map((i) => a.add(frames[i]?.payload));
    expect(results.slice(0, -1).every((r) => r === null)).toBe(true);
    expect(results.at(-1)).toBe(text);
    expect(a.pending).toBe(0);
  });

  it("counts UTF-8 bytes like TextEncoder", () => {
    for (const s of ["", "abc", "é", "世界", "😀", "a😀b\u00e9", "\ud800x"]) {
      expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
    }
  });

  it("drops an assembly over the part or byte limit, and malformed chunks", () => {
    const a = new ChunkAssembler({ maxParts: 3, maxBytes: 10 });
    expect(a.add({ chunk_id: "x", index: 0, total: 4, data: "a" })).toBeNull();
    expect(a.pending).toBe(0);
    expect(a.add({ chunk_id: "y", index: 0, total: 2, data: "123456" })).toBeNull();
    expect(a.add({ chunk_id: "y", index: 1, total: 2, data: "789012" })).toBeNull(); // 12 bytes > 10
    expect(a.pending).toBe(0);
    expect(a.add({ chunk_id: "z", index: 5, total: 2, data: "a" })).toBeNull();
    expect(a.add({ chunk_id: "z", index: 0, data: "a" })).toBeNull();
    expect(a.add("nope")).toBeNull();
    expect(a.pending).toBe(0);
    // total disagreeing with siblings drops the assembly
    expect(a.add({ chunk_id: "w", index: 0, total: 2, data: "a" })).toBeNull();
    expect(a.add({ chunk_id: "w", index: 1, total: 3, data: "b" })).toBeNull();
    expect(a.pending).toBe(0);
  });

  it("reset() discards partial assemblies", () => {
    const a = new ChunkAssembler();
    a.add({ chunk_id: "x", index: 0, total: 2, data: "{" });
    expect(a.pending).toBe(1);
    a.reset();
    expect(a.add({ chunk_id: "x", index: 1, total: 2, data: "}" })).toBeNull();
  });
});

describe("chunks in the client", () => {
  useFakeClientClock();

  it("a chunked thread event arrives joined, once", async () => {
    const h = harness();
    const ws = await connected(h);
    const event = ev("T", 1, "agent_response", { message_id: "a", content: "ünïcødé ✓ 🎉".repeat(50) });
    const frames = chunkFrames("k", JSON.stringify(event), 64);
    [...frames.slice(1), frames[0]].forEach((f) => f && ws.deliver(f));
    expect(h.events).toEqual([event]);
    frames.forEach((f) => ws.deliver(f)); // the same event again (a replay): deduped
    expect(h.events).toHaveLength(1);
  });

  it("a dropped connection discards a partial assembly", async () => {
    const h = harness();
    const ws = await connected(h);
    const frames = chunkFrames("k", JSON.stringify(ev("T", 1, "agent_response", { content: "x".repeat(300) })), 64);
    frames.slice(0, -1).forEach((f) => ws.deliver(f));
    ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    const ws2 = FakeWebSocket.last;
    ws2.establish();
    const last = frames.at(-1);
    if (last) ws2.deliver(last);
    expect(h.events).toHaveLength(0);
  });
});
