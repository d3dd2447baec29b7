// What the server sends (docs/protocol.md §2.2) as discriminated unions: `switch (f.type)`
// narrows `f.payload`. `parseFrame` is the one place wire JSON becomes these types.

import type { ConnectionEstablished } from "./types.ts";

/** The run's token usage, as the model reported it (keys depend on the provider). */
export type Usage = Record<string, number>;

export type ThreadEventPayloads = {
  message_created: { message_id: string; role: "user" | "assistant"; content: string };
  agent_progress: { message: string; queue_position?: number };
  agent_started: { agent_name: string; message_id: string; run_id: string };
  agent_thinking: { agent_name: string; thought: string };
  tool_executing: { agent_name: string; tool_name: string; tool_args: unknown; tool_call_id: string };
  tool_completed: {
    agent_name: string; tool_name: string; tool_call_id: string; result?: unknown; error?: unknown;
    duration_ms: number;
  };
  partial_result: { agent_name: string; message_id: string; delta: string };
  agent_response: { agent_name: string; message_id: string; content: string };
  agent_completed: {
    status: "completed" | "cancelled"; result?: unknown; message_id?: string | null; usage?: Usage;
    duration_ms?: number;
  };
  agent_error: { code: string; message: string; retryable: boolean };
  approval_required: {
    agent_name: string; tool_call_id: string; tool_name: string; tool_args: Record<string, unknown>;
    expires_at: string;
  };
  approval_resolved: {
    tool_call_id: string; approved: boolean; reason: string | null; args: Record<string, unknown> | null;
  };
};

export type ThreadEventType = keyof ThreadEventPayloads;

interface Envelope {
  thread_id?: string;
  run_id?: string;
  seq?: number;
  timestamp?: string;
}

type EventOf<T extends ThreadEventType> = Envelope & {
  type: T; payload: ThreadEventPayloads[T]; thread_id: string; seq: number;
};

/** A thread event of a type this client doesn't know (a newer server): its seq still
 *  counts (dedupe, gaps, resume); `type` is kept in `original_type`. */
export type OtherThreadEvent = Envelope & {
  type: "other"; original_type: string; payload: Record<string, unknown>; thread_id: string; seq: number;
};

/** A frame of a thread's log: carries `thread_id` and `seq`. */
export type ThreadEvent = { [T in ThreadEventType]: EventOf<T> }[ThreadEventType] | OtherThreadEvent;

export type ControlPayloads = {
  connection_established: ConnectionEstablished;
  message_ack: { message_id: string; thread_id: string; run_id: string; duplicate?: boolean };
  thread_created: { thread_id: string; title: string };
  thread_updated: { thread_id: string; title: string };
  thread_deleted: { thread_id: string };
  replay_complete: { thread_id: string; last_seq: number; complete: boolean };
  pong: { request_id?: string };
  error: { code: string; message: string; request_id?: string; retry_after_ms?: number };
};

export type ControlFrameType = keyof ControlPayloads;

/** A frame outside the threads' logs (no seq). */
export type ControlFrame = { [T in ControlFrameType]: Envelope & { type: T; payload: ControlPayloads[T] } }[ControlFrameType];

/** A `chunk` piece of a frame too large for one message. */
export type ChunkFrame = Envelope & {
  type: "chunk"; payload: { chunk_id: string; index: number; total: number; data: string };
};

export type ServerFrame = ThreadEvent | ControlFrame;

const THREAD_EVENT_TYPES: ReadonlySet<string> = new Set<ThreadEventType>([
  "message_created", "agent_progress", "agent_started", "agent_thinking", "tool_executing",
  "tool_completed", "partial_result", "agent_response", "agent_completed", "agent_error",
  "approval_required", "approval_resolved",
]);
const CONTROL_TYPES: ReadonlySet<string> = new Set<ControlFrameType>([
  "connection_established", "message_ack", "thread_created", "thread_updated", "thread_deleted",
  "replay_complete", "pong", "error",
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function envelope(v: Record<string, unknown>): Envelope {
  const e: Envelope = {};
  if (typeof v.thread_id === "string") e.thread_id = v.thread_id;
  if (typeof v.run_id === "string") e.run_id = v.run_id;
  if (typeof v.seq === "number") e.seq = v.seq;
  if (typeof v.timestamp === "string") e.timestamp = v.timestamp;
  return e;
}

/**
 * A server frame from its JSON text, or null (not JSON, no `type`, or a control frame of a
 * type this client doesn't know). The envelope fields are checked; the payload is the
 * server's (an object, per the protocol doc) — the reducers read it defensively.
 */
export function parseFrame(text: string): ServerFrame | ChunkFrame | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(v) || typeof v.type !== "string") return null;
  const payload = isObject(v.payload) ? v.payload : {};
  const env = envelope(v);
  const type = v.type;
  if (typeof env.thread_id === "string" && typeof env.seq === "number") {
    const at = { ...env, thread_id: env.thread_id, seq: env.seq };
    if (!THREAD_EVENT_TYPES.has(type)) return { ...at, type: "other", original_type: type, payload };
    return { ...at, type, payload } as ThreadEvent; // trust boundary: the protocol's shapes
  }
  if (type === "chunk") return { ...env, type, payload } as ChunkFrame;
  if (!CONTROL_TYPES.has(type)) return null;
  return { ...env, type, payload } as ControlFrame;
}

export function isThreadEvent(f: ServerFrame): f is ThreadEvent {
  return typeof f.thread_id === "string" && typeof f.seq === "number" && "seq" in f
    && (THREAD_EVENT_TYPES.has(f.type) || f.type === "other");
}
