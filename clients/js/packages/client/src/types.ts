// Wire types of runwire protocol v1 (docs/protocol.md) and the client's public shapes.

export type {
  ServerFrame, ThreadEvent, OtherThreadEvent, ThreadEventType, ThreadEventPayloads, ControlFrame,
  ControlFrameType, ControlPayloads, ChunkFrame, Usage,
} from "./frames.ts";

export interface ConnectionEstablished {
  connection_id: string;
  user_id: string;
  node_id: string;
  protocol: number;
  heartbeat_interval: number;
  max_message_size: number;
  limits: {
    max_connections_per_user: number;
    rate_limit_messages: string;
    rate_limit_frames: string;
    outbound_chunk_size: number;
  };
  model: { name: string; demo: boolean };
}

/**
 * idle: never connected; connecting: first attempt; open: `connection_established` seen;
 * reconnecting: waiting for / making a retry; closed: given up (see `code`) or `close()`d.
 */
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ConnectionStatus {
  state: ConnectionState;
  /** Close code of the last socket close (null before the first). */
  code: number | null;
  reason: string;
  /** Consecutive failed attempts since the last open (0 when open). */
  attempt: number;
  /** While reconnecting: ms until the next attempt. */
  retryInMs: number | null;
}

/** queued: waiting for an open socket; sent: on the wire, no ack yet; acked: the server
 * stored it (`message_ack`); failed: the server refused it (`error`, not retryable). */
export type OutboxState = "queued" | "sent" | "acked" | "failed";

export interface OutboxItem {
  messageId: string;
  content: string;
  /** null: starts a new thread; filled in from `message_ack`. */
  threadId: string | null;
  state: OutboxState;
  error: { code: string; message: string } | null;
  /** From `message_ack`. */
  runId: string | null;
  settings?: Record<string, unknown>;
  /** Set when sent as `start_agent` naming this agent (`SendOptions.agent`). */
  agent?: string;
  createdAt: number;
}

export type MultitaskStrategy = "enqueue" | "reject" | "interrupt";

export interface SendOptions {
  threadId?: string | null;
  messageId?: string;
  settings?: { multitask_strategy?: MultitaskStrategy } & Record<string, unknown>;
  /** Use `start_agent` naming this agent instead of `user_message`. */
  agent?: string;
}

// ---- the timeline: what a chat UI shows for one thread -------------------------------

/** `waiting`: paused until the user decides its tool calls that need approval. */
export type RunStatus =
  | "queued" | "running" | "waiting" | "completed" | "cancelled" | "failed" | "timed_out";

export interface MessageItem {
  kind: "message";
  /** message_id (the user's, or the assistant answer's). */
  id: string;
  role: "user" | "assistant";
  content: string;
  agentName: string | null;
  runId: string | null;
  /** true while partial_result deltas arrive and no agent_response has come yet. */
  streaming: boolean;
  /** Set for an optimistic user message that is not stored yet. */
  outbox: OutboxState | null;
  /** First seq of this item (ordering); Infinity for an optimistic message. */
  seq: number;
}

export interface ThinkingItem {
  kind: "thinking";
  id: string;
  agentName: string;
  thought: string;
  runId: string;
  seq: number;
}

export interface ToolItem {
  kind: "tool";
  /** tool_call_id */
  id: string;
  agentName: string;
  toolName: string;
  args: unknown;
  status: "running" | "ok" | "error";
  result: unknown;
  error: string | null;
  durationMs: number | null;
  runId: string;
  seq: number;
}

export interface RunItem {
  kind: "run";
  /** `run:<run_id>` */
  id: string;
  runId: string;
  status: RunStatus;
  agentName: string | null;
  queuePosition: number | null;
  progress: string | null;
  durationMs: number | null;
  /** Token usage of a finished run (`agent_completed.usage`: e.g. input_tokens,
   *  output_tokens, requests, tool_calls), null before. */
  usage: Record<string, number> | null;
  error: { code: string; message: string; retryable: boolean } | null;
  seq: number;
}

/** A tool call that needs the user's approval (`approval_required`), and once decided
 *  (`approval_resolved`, from any tab) the decision. */
export interface ApprovalItem {
  kind: "approval";
  /** tool_call_id */
  id: string;
  runId: string;
  agentName: string;
  toolName: string;
  /** The model's arguments. */
  args: Record<string, unknown>;
  /** ISO 8601: when an undecided call is denied ("timed out"). */
  expiresAt: string | null;
  status: "pending" | "approved" | "denied";
  reason: string | null;
  /** The arguments an approved call runs with (the user's edit, else the model's). */
  approvedArgs: Record<string, unknown> | null;
  seq: number;
}

/** A decision on an {@link ApprovalItem}: `args` (approving only) replaces the model's. */
export interface ApprovalDecision {
  approved: boolean;
  reason?: string;
  args?: Record<string, unknown>;
}

export type TimelineItem = MessageItem | ThinkingItem | ToolItem | RunItem | ApprovalItem;

export interface Timeline {
  threadId: string;
  /** Sorted by `seq` (optimistic messages, seq Infinity, last). */
  items: TimelineItem[];
  /** Highest seq applied. */
  lastSeq: number;
  /** Every seq <= this is applied (or known pruned); used for dedupe and resume. */
  contiguousSeq: number;
  /** Seqs > contiguousSeq already applied (ascending). */
  aboveSeqs: number[];
  /** Streaming answers: message_id -> [seq, delta] pairs, joined in seq order. */
  deltas: Record<string, Array<[number, string]>>;
  /** The run that is queued, running or waiting for approvals, if any. */
  activeRunId: string | null;
}
