import { IDBFactory } from "fake-indexeddb";
import { describe, expect, it, vi } from "vitest";
import { IndexedDbHistory, MemoryHistory, type LocalHistory } from "../src/history.ts";
import { addOptimistic, applyEvents, emptyTimeline } from "../src/timeline.ts";
import type { OutboxItem, ThreadEvent, Timeline } from "../src/types.ts";

function bigTimeline(threadId: string, n: number): Timeline {
  const evs: ThreadEvent[] = [];
  for (let i = 1; i <= n; i++) {
    evs.push({ type: "message_created", payload: { message_id: `m${i}`, role: "user", content: `q${i}` }, thread_id: threadId, seq: i });
  }
  return applyEvents(emptyTimeline(threadId), evs);
}

const outbox: OutboxItem[] = [
  { messageId: "o1", content: "offline", threadId: null, state: "queued", error: null, runId: null, createdAt: 5 },
  { messageId: "o2", content: "bad", threadId: "T", state: "failed", error: { code: "thread_busy", message: "busy" }, runId: null, createdAt: 6, settings: { multitask_strategy: "reject" } },
];

async function contract(h: LocalHistory): Promise<void> {
  expect(await h.load("T")).toBeNull();
  expect(await h.loadOutbox()).toEqual([]);
  const tl = addOptimistic(bigTimeline("T", 3), outbox[0] as OutboxItem);
  await h.save(tl);
  expect(await h.load("T")).toEqual(tl); // seq Infinity survives
  await h.save(bigTimeline("U", 600));
  const u = await h.load("U");
  expect(u?.items).toHaveLength(500);
  expect(u?.items[0]?.id).toBe("m101");
  expect(u?.contiguousSeq).toBe(600);
  await h.remove("T");
  expect(await h.load("T")).toBeNull();
  expect(await h.load("U")).not.toBeNull();
  await h.saveOutbox(outbox);
  expect(await h.loadOutbox()).toEqual(outbox);
  await h.saveOutbox([]);
  expect(await h.loadOutbox()).toEqual([]);
}

describe("MemoryHistory", () => {
  it("keeps trimmed copies", async () => {
    await contract(new MemoryHistory());
  });
});

describe("IndexedDbHistory (fake-indexeddb)", () => {
  it("round trip, trim to maxMessages, remove, outbox", async () => {
    const h = await IndexedDbHistory.open("runwire:alice", { indexedDB: new IDBFactory(), maxMessages: 500 });
    expect(h.available).toBe(true);
    await contract(h);
    h.close();
  });

  it("persists across opens and keeps users apart", async () => {
    const factory = new IDBFactory();
    const a = await IndexedDbHistory.open("runwire:alice", { indexedDB: factory });
    await a.save(bigTimeline("T", 2));
    await a.saveOutbox(outbox);
    a.close();
    const again = await IndexedDbHistory.open("runwire:alice", { indexedDB: factory });
    expect((await again.load("T"))?.items).toHaveLength(2);
    expect(await again.loadOutbox()).toEqual(outbox);
    const bob = await IndexedDbHistory.open("runwire:bob", { indexedDB: factory });
    expect(await bob.load("T")).toBeNull();
    expect(await bob.loadOutbox()).toEqual([]);
  });

  it("keeps each tab's outbox under its own key, the timelines shared", async () => {
    const factory = new IDBFactory();
    const tab1 = await IndexedDbHistory.open("runwire:alice", { indexedDB: factory, outboxKey: "outbox:1" });
    const tab2 = await IndexedDbHistory.open("runwire:alice", { indexedDB: factory, outboxKey: "outbox:2" });
    await tab1.saveOutbox(outbox);
    await tab2.saveOutbox([]);
    await tab2.save(bigTimeline("T", 2));
    expect(await tab1.loadOutbox()).toEqual(outbox);
    expect(await tab2.loadOutbox()).toEqual([]);
    expect((await tab1.load("T"))?.items).toHaveLength(2);
  });

  it("honours a smaller maxMessages", async () => {
    const h = await IndexedDbHistory.open("small", { indexedDB: new IDBFactory(), maxMessages: 10 });
    await h.save(bigTimeline("T", 30));
    expect((await h.load("T"))?.items.map((i) => i.id)).toEqual(Array.from({ length: 10 }, (_, i) => `m${21 + i}`));
  });

  it("failures are logged, never thrown", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const broken = { open: () => { throw new Error("SecurityError"); } } as unknown as IDBFactory;
    const h = await IndexedDbHistory.open("x", { indexedDB: broken });
    expect(h.available).toBe(false);
    await h.save(bigTimeline("T", 1));
    expect(await h.load("T")).toBeNull();
    expect(await h.loadOutbox()).toEqual([]);
    const ok = await IndexedDbHistory.open("y", { indexedDB: new IDBFactory() });
    ok.close(); // a closed database makes every transaction fail
    await expect(ok.save(bigTimeline("T", 1))).resolves.toBeUndefined();
    await expect(ok.load("T")).resolves.toBeNull();
    await expect(ok.remove("T")).resolves.toBeUndefined();
    expect(warn).toHaveBeenCalled();
  });

  it("without any IndexedDB resolves to a history that stores nothing", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const h = await IndexedDbHistory.open();
    expect(h.available).toBe(false);
    expect(await h.load("T")).toBeNull();
    expect(warn).toHaveBeenCalled();
  });
});
