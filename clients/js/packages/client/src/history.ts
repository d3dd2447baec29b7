// Local history: the last messages of each thread kept in the browser, so a reload shows
// them at once, and the outbox, so a message typed offline survives a reload.

import { trimTimeline } from "./timeline.ts";
import type { OutboxItem, Timeline } from "./types.ts";

/** Where timelines and the outbox are kept between page loads. Implementations never
 * throw: a storage failure is logged and reads as "nothing stored". */
export interface LocalHistory {
  load(threadId: string): Promise<Timeline | null>;
  save(tl: Timeline): Promise<void>;
  remove(threadId: string): Promise<void>;
  loadOutbox(): Promise<OutboxItem[]>;
  saveOutbox(items: readonly OutboxItem[]): Promise<void>;
}

export interface HistoryOptions {
  /** Message items kept per thread (`trimTimeline`). Default 500. */
  maxMessages?: number;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** In-memory LocalHistory (tests, or when IndexedDB is unavailable). */
export class MemoryHistory implements LocalHistory {
  private readonly timelines = new Map<string, Timeline>();
  private outbox: OutboxItem[] = [];
  private readonly maxMessages: number;

  constructor({ maxMessages = 500 }: HistoryOptions = {}) {
    this.maxMessages = maxMessages;
  }

  async load(threadId: string): Promise<Timeline | null> {
    const tl = this.timelines.get(threadId);
    return tl ? clone(tl) : null;
  }

  async save(tl: Timeline): Promise<void> {
    this.timelines.set(tl.threadId, clone(trimTimeline(tl, this.maxMessages)));
  }

  async remove(threadId: string): Promise<void> {
    this.timelines.delete(threadId);
  }

  async loadOutbox(): Promise<OutboxItem[]> {
    return clone(this.outbox);
  }

  async saveOutbox(items: readonly OutboxItem[]): Promise<void> {
    this.outbox = clone([...items]);
  }
}

const TIMELINES = "timelines";
const META = "meta";
const OUTBOX_KEY = "outbox";

function promised<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
  });
}

export interface IndexedDbHistoryOptions extends HistoryOptions {
  /** Default: `globalThis.indexedDB`. */
  indexedDB?: IDBFactory;
  /** The record the outbox is kept under (default "outbox"). Give each browser tab its own
   *  (e.g. an id kept in sessionStorage), so tabs don't overwrite each other's queue. */
  outboxKey?: string;
}

/**
 * LocalHistory in IndexedDB: one store of trimmed timelines (by threadId), one record for
 * the outbox. Use one database per user (put the user id in `dbName`). When IndexedDB is
 * missing or fails (private mode, quota), every call is caught and logged; `open()` then
 * still resolves, to a history that stores nothing.
 */
export class IndexedDbHistory implements LocalHistory {
  private constructor(
    private readonly db: IDBDatabase | null,
    private readonly maxMessages: number,
    private readonly outboxKey: string = OUTBOX_KEY,
  ) {}

  /** Opens (or creates) the database. Never rejects. */
  static async open(dbName = "runwire", options: IndexedDbHistoryOptions = {}): Promise<IndexedDbHistory> {
    const maxMessages = options.maxMessages ?? 500;
    const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (!factory) {
      console.warn("runwire: IndexedDB unavailable; local history disabled");
      return new IndexedDbHistory(null, maxMessages);
    }
    try {
      const req = factory.open(dbName, 1);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(TIMELINES)) db.createObjectStore(TIMELINES, { keyPath: "threadId" });
        if (!db.objectStoreNames.contains(META)) db.createObjectStore(META);
      };
      const db = await promised(req);
      // another tab upgrading the schema: let it
      db.onversionchange = () => db.close();
      return new IndexedDbHistory(db, maxMessages, options.outboxKey ?? OUTBOX_KEY);
    } catch (err) {
      console.warn("runwire: cannot open IndexedDB; local history disabled", err);
      return new IndexedDbHistory(null, maxMessages);
    }
  }

  /** false when storage is unavailable (everything is a no-op). */
  get available(): boolean {
    return this.db !== null;
  }

  /** Closes the database connection. */
  close(): void {
    this.db?.close();
  }

  private async run<T>(what: string, fallback: T, mode: IDBTransactionMode, store: string,
                       body: (s: IDBObjectStore) => IDBRequest | null): Promise<T> {
    if (!this.db) return fallback;
    try {
      const tx = this.db.transaction(store, mode);
      const req = body(tx.objectStore(store));
      const [result] = await Promise.all([req ? promised(req) : Promise.resolve(undefined), done(tx)]);
      return (result as T | undefined) ?? fallback;
    } catch (err) {
      console.warn(`runwire: local history ${what} failed`, err);
      return fallback;
    }
  }

  async load(threadId: string): Promise<Timeline | null> {
    const v = await this.run<Timeline | null>("load", null, "readonly", TIMELINES, (s) => s.get(threadId));
    return v && typeof v === "object" && v.threadId === threadId ? v : null;
  }

  async save(tl: Timeline): Promise<void> {
    const trimmed = trimTimeline(tl, this.maxMessages);
    await this.run<undefined>("save", undefined, "readwrite", TIMELINES, (s) => s.put(trimmed));
  }

  async remove(threadId: string): Promise<void> {
    await this.run<undefined>("remove", undefined, "readwrite", TIMELINES, (s) => s.delete(threadId));
  }

  async loadOutbox(): Promise<OutboxItem[]> {
    const v = await this.run<OutboxItem[]>("loadOutbox", [], "readonly", META, (s) => s.get(this.outboxKey));
    return Array.isArray(v) ? v : [];
  }

  async saveOutbox(items: readonly OutboxItem[]): Promise<void> {
    await this.run<undefined>("saveOutbox", undefined, "readwrite", META, (s) => s.put([...items], this.outboxKey));
  }
}
