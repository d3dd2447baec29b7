// @runwire/client: the public API.
export type * from "./types.ts";
export { SeqTracker } from "./seq.ts";
export { parseFrame, isThreadEvent } from "./frames.ts";
export { Outbox, frameOf } from "./outbox.ts";
export { ChunkAssembler, utf8Length, type ChunkLimits, type ChunkPayload } from "./chunks.ts";
export {
  CloseCode,
  RECONNECT_RULES,
  NO_RECONNECT_CODES,
  reconnectRule,
  type CloseCodeName,
  type ReconnectRule,
} from "./codes.ts";
export { backoffDelay, type BackoffOptions } from "./backoff.ts";
export {
  RunwireClient,
  IDLE_PING_LIMIT_MS,
  base64url,
  type RunwireClientOptions,
  type RunwireClientEventMap,
  type WebSocketLike,
  type WebSocketConstructor,
} from "./client.ts";
export {
  emptyTimeline,
  applyEvent,
  applyEvents,
  markPruned,
  addOptimistic,
  updateOptimistic,
  removeOptimistic,
  timelineFromMessages,
  trimTimeline,
  hasSeq,
  isTerminal,
  askedIn,
  pendingApprovals,
} from "./timeline.ts";
export {
  RestClient,
  RunwireHttpError,
  type RestClientOptions,
  type FetchLike,
  type Page,
  type ThreadOut,
  type MessageOut,
  type RunOut,
  type PendingApprovalOut,
  type SearchHitOut,
  type EventsPage,
  type CancelRunOut,
  type Problem,
} from "./rest.ts";
export {
  MemoryHistory,
  IndexedDbHistory,
  type LocalHistory,
  type HistoryOptions,
  type IndexedDbHistoryOptions,
} from "./history.ts";
