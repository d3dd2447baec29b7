/** The payload of a `chunk` frame (docs/protocol.md §6). */
export interface ChunkPayload {
  chunk_id: string;
  /** 0-based. */
  index: number;
  total: number;
  data: string;
}

export interface ChunkLimits {
  /** Largest joined text (UTF-8 bytes) kept; a bigger assembly is dropped. Default 64 MiB. */
  maxBytes?: number;
  /** Largest `total` accepted. Default 1000. */
  maxParts?: number;
  /** Assemblies in progress at once; the oldest is dropped beyond. Default 8. */
  maxAssemblies?: number;
}

interface Assembly {
  total: number;
  parts: Array<string | undefined>;
  count: number;
  bytes: number;
}

/** UTF-8 length of a JS string (lone surrogates count as 3, like TextEncoder's U+FFFD). */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

function isChunkPayload(p: unknown): p is ChunkPayload {
  if (typeof p !== "object" || p === null) return false;
  const c = p as Record<string, unknown>;
  return (
    typeof c.chunk_id === "string" &&
    typeof c.data === "string" &&
    Number.isInteger(c.index) &&
    Number.isInteger(c.total)
  );
}

/**
 * Joins `chunk` frames back into the event's JSON text. Chunks may arrive in any order;
 * a malformed chunk, or one whose `total` disagrees with its siblings, drops its assembly.
 * Call `reset()` when the socket closes: the event is replayed whole by `resume`.
 */
export class ChunkAssembler {
  private readonly assemblies = new Map<string, Assembly>();
  private readonly maxBytes: number;
  private readonly maxParts: number;
  private readonly maxAssemblies: number;

  constructor({ maxBytes = 64 * 1024 * 1024, maxParts = 1000, maxAssemblies = 8 }: ChunkLimits = {}) {
    this.maxBytes = maxBytes;
    this.maxParts = maxParts;
    this.maxAssemblies = maxAssemblies;
  }

  /** Number of partial assemblies held. */
  get pending(): number {
    return this.assemblies.size;
  }

  /** Adds one chunk payload; returns the joined text once every part is there, else null. */
  add(payload: unknown): string | null {
    if (!isChunkPayload(payload)) return null;
    const { chunk_id: id, index, total, data } = payload;
    if (total < 1 || total > this.maxParts || index < 0 || index >= total) {
      this.assemblies.delete(id);
      return null;
    }
    let a = this.assemblies.get(id);
    if (a && a.total !== total) {
      this.assemblies.delete(id);
      return null;
    }
    if (!a) {
      a = { total, parts: new Array<string | undefined>(total), count: 0, bytes: 0 };
      this.assemblies.set(id, a);
      while (this.assemblies.size > this.maxAssemblies) {
        const oldest = this.assemblies.keys().next().value;
        if (oldest === undefined) break;
        this.assemblies.delete(oldest);
      }
    }
    const previous = a.parts[index];
    if (previous !== undefined) a.bytes -= utf8Length(previous);
    else a.count += 1;
    a.parts[index] = data;
    a.bytes += utf8Length(data);
    if (a.bytes > this.maxBytes) {
      this.assemblies.delete(id);
      return null;
    }
    if (a.count < a.total) return null;
    this.assemblies.delete(id);
    return a.parts.join("");
  }

  /** Drops every partial assembly (the socket closed). */
  reset(): void {
    this.assemblies.clear();
  }
}
