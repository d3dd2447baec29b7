// React bindings: <RunwireProvider> owns one ThreadStore per client; the hooks read it.

import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import type {
  ApprovalDecision,
  ApprovalItem,
  ConnectionEstablished,
  ConnectionStatus,
  LocalHistory,
  MessageItem,
  OutboxItem,
  RestClient,
  RunItem,
  RunwireClient,
  SendOptions,
  ThreadOut,
  Timeline,
  TimelineItem,
  ToolItem,
} from "@runwire/client";
import { DRAFT, ThreadStore, type LoadState } from "./store.ts";

const StoreContext = createContext<ThreadStore | null>(null);

export interface RunwireProviderProps {
  client: RunwireClient;
  rest: RestClient;
  /** Local history (IndexedDB in browsers); null keeps nothing across reloads. */
  history?: LocalHistory | null;
  /** Connect when mounted (default true) and close when unmounted. */
  autoConnect?: boolean;
  children: ReactNode;
}

export function RunwireProvider(props: RunwireProviderProps): ReactNode {
  const { client, rest, history = null, autoConnect = true, children } = props;
  const store = useMemo(() => new ThreadStore(client, rest, history), [client, rest, history]);
  useEffect(() => {
    const detach = store.attach();
    void store.loadThreads();
    if (autoConnect) void client.connect();
    return () => {
      detach();
      if (autoConnect) client.close();
    };
  }, [store, client, autoConnect]);
  return <StoreContext.Provider value={store}>{children}</StoreContext.Provider>;
}

/** The ThreadStore of the nearest provider (for advanced use). */
export function useRunwireStore(): ThreadStore {
  const store = useContext(StoreContext);
  if (!store) throw new Error("runwire hooks need a <RunwireProvider> above them");
  return store;
}

export interface ConnectionView extends ConnectionStatus {
  established: ConnectionEstablished | null;
}

/** The connection's state, close code and the server's `connection_established`. */
export function useConnection(): ConnectionView {
  const { client } = useRunwireStore();
  const cache = useRef<ConnectionView | null>(null);
  const subscribe = useCallback((fn: () => void) => {
    const offs = [client.on("status", fn), client.on("frame", fn)];
    return () => { for (const off of offs) off(); };
  }, [client]);
  const snapshot = useCallback((): ConnectionView => {
    const prev = cache.current;
    const s = client.status;
    if (prev && prev.state === s.state && prev.code === s.code && prev.reason === s.reason
        && prev.attempt === s.attempt && prev.retryInMs === s.retryInMs
        && prev.established === client.established) return prev;
    cache.current = { ...s, established: client.established };
    return cache.current;
  }, [client]);
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}

export interface ThreadsView {
  threads: readonly ThreadOut[];
  load: LoadState;
  error: string | null;
  rename: (threadId: string, title: string) => Promise<void>;
  remove: (threadId: string) => Promise<void>;
  refresh: () => Promise<void>;
  /** Pages in older threads (when `hasMore`). */
  loadMore: () => Promise<void>;
  hasMore: boolean;
  /** Threads with a run waiting for the user's approval of a tool call. */
  waiting: ReadonlySet<string>;
}

/** The user's threads, newest first, kept live by thread_created/updated/deleted. */
export function useThreads(): ThreadsView {
  const store = useRunwireStore();
  const list = useSyncExternalStore(store.subscribe, () => store.threads(), () => store.threads());
  return useMemo(() => ({
    ...list,
    rename: (id: string, title: string) => store.rename(id, title),
    remove: (id: string) => store.remove(id),
    refresh: () => store.loadThreads(),
    loadMore: () => store.loadMoreThreads(),
  }), [list, store]);
}

/**
 * ready: nothing in flight; submitted: a message is queued/sent or its run is queued;
 * streaming: the run is executing (or waits for approvals: `approvals`); error: the last run failed or a message was refused.
 */
export type AgentStatus = "ready" | "submitted" | "streaming" | "error";

export interface AgentView {
  threadId: string | null;
  timeline: Timeline;
  items: readonly TimelineItem[];
  messages: readonly MessageItem[];
  status: AgentStatus;
  /** The queued, running or waiting run, if any. */
  activeRun: RunItem | null;
  /** Tool calls of this thread waiting for the user's decision (SPEC 7), oldest first;
   *  each leaves the list in every tab once decided (`approval_resolved`). */
  approvals: readonly ApprovalItem[];
  /** Decides one of `approvals` (`approve_tool`); false when not connected. */
  approve: (item: Pick<ApprovalItem, "runId" | "id">, decision: ApprovalDecision) => boolean;
  load: LoadState;
  loadError: string | null;
  source: "none" | "cache" | "server";
  send: (content: string, opts?: Omit<SendOptions, "threadId">) => OutboxItem;
  /** Stops the current run (not the runs queued behind it); false when queued offline. */
  stop: () => boolean;
  /** Asks the question of `runId` (default: the last run) again: a new run, same thread. */
  regenerate: (runId?: string) => OutboxItem | null;
  /** Sends `content` as an edited version of an earlier message: a new run, same thread. */
  edit: (messageId: string, content: string) => OutboxItem | null;
  retry: (messageId: string) => void;
  /** Gives up on a queued or failed message (removed from the queue and the view). */
  discard: (messageId: string) => void;
  /** The thread was deleted (here or in another tab): show something else. */
  deleted: boolean;
}

export interface UseAgentOptions {
  /** A message sent with threadId null started this thread (select it). */
  onThreadCreated?: (threadId: string) => void;
  /** A run of this thread ended with `agent_completed` (status completed or cancelled);
   *  `answer` is its last assistant message. Live events only, not loaded history. */
  onFinish?: (run: RunItem, answer: MessageItem | null) => void;
  /** A run of this thread failed (`agent_error`: run.error has code, message, retryable). */
  onError?: (run: RunItem) => void;
  /** A tool call started (`tool_executing`: name and arguments). */
  onToolCall?: (tool: ToolItem) => void;
}

function itemOf<K extends TimelineItem["kind"]>(tl: Timeline, kind: K, id: string): Extract<TimelineItem, { kind: K }> | null {
  for (let i = tl.items.length - 1; i >= 0; i -= 1) {
    const it = tl.items[i];
    if (it?.kind === kind && it.id === id) return it as Extract<TimelineItem, { kind: K }>;
  }
  return null;
}

/** Calls the callbacks of `opts` for live events of `threadId`. */
function useCallbacks(store: ThreadStore, threadId: string | null, opts: UseAgentOptions): void {
  const ref = useRef(opts);
  ref.current = opts;
  useEffect(() => {
    if (!threadId) return undefined;
    return store.onLiveEvent((ev, tl) => {
      if (ev.thread_id !== threadId) return;
      const { onFinish, onError, onToolCall } = ref.current;
      if (ev.type === "tool_executing" && onToolCall) {
        const tool = itemOf(tl, "tool", ev.payload.tool_call_id);
        if (tool) onToolCall(tool);
      } else if ((ev.type === "agent_completed" || ev.type === "agent_error") && ev.run_id) {
        const run = itemOf(tl, "run", `run:${ev.run_id}`);
        if (!run) return;
        if (ev.type === "agent_error") { onError?.(run); return; }
        const answer = [...tl.items].reverse().find(
          (i): i is MessageItem => i.kind === "message" && i.role === "assistant" && i.runId === ev.run_id) ?? null;
        onFinish?.(run, answer);
      }
    });
  }, [store, threadId]);
}

function statusOf(timeline: Timeline, activeRun: RunItem | null): AgentStatus {
  if (activeRun?.status === "running" || activeRun?.status === "waiting") return "streaming";
  if (activeRun?.status === "queued") return "submitted";
  const items = timeline.items;
  for (let i = items.length - 1; i >= 0; i -= 1) {
    const item = items[i];
    if (!item) continue;
    if (item.kind === "message" && item.role === "user" && item.outbox !== null) {
      return item.outbox === "failed" ? "error" : "submitted";
    }
    if (item.kind === "run") return item.status === "failed" || item.status === "timed_out" ? "error" : "ready";
  }
  return "ready";
}

/** One thread (null: a new chat): its timeline, status, and send/stop. */
export function useAgent(threadId: string | null, opts: UseAgentOptions = {}): AgentView {
  const store = useRunwireStore();
  const key = threadId ?? DRAFT;
  const entry = useSyncExternalStore(store.subscribe, () => store.entry(key), () => store.entry(key));
  const onCreated = useRef(opts.onThreadCreated);
  onCreated.current = opts.onThreadCreated;
  useCallbacks(store, threadId, opts);

  useEffect(() => {
    if (threadId) void store.open(threadId);
  }, [store, threadId]);
  useEffect(() => {
    if (threadId) return undefined;
    return store.onThreadCreated((id) => onCreated.current?.(id));
  }, [store, threadId]);

  return useMemo(() => {
    const timeline = entry?.timeline ?? { ...EMPTY, threadId: key };
    const active = timeline.activeRunId
      ? timeline.items.find((i): i is RunItem => i.kind === "run" && i.runId === timeline.activeRunId) ?? null
      : null;
    return {
      threadId,
      timeline,
      items: timeline.items,
      messages: timeline.items.filter((i): i is MessageItem => i.kind === "message"),
      approvals: timeline.items.filter((i): i is ApprovalItem => i.kind === "approval" && i.status === "pending"),
      approve: (item: Pick<ApprovalItem, "runId" | "id">, decision: ApprovalDecision) =>
        store.client.approve(item.runId, item.id, decision),
      status: statusOf(timeline, active),
      activeRun: active,
      load: entry?.load ?? "idle",
      loadError: entry?.error ?? null,
      source: entry?.source ?? "none",
      send: (content: string, o: Omit<SendOptions, "threadId"> = {}) => store.send(threadId, content, o),
      stop: () => (threadId ? store.stop(threadId) : false),
      regenerate: (runId?: string) => (threadId ? store.regenerate(threadId, runId) : null),
      edit: (_messageId: string, content: string) => (threadId ? store.edit(threadId, content) : null),
      retry: (messageId: string) => { store.client.retry(messageId); },
      discard: (messageId: string) => store.discard(messageId),
      deleted: store.isDeleted(threadId),
    };
  }, [entry, key, store, threadId]);
}

const EMPTY: Timeline = {
  threadId: DRAFT, items: [], lastSeq: 0, contiguousSeq: 0, aboveSeqs: [], deltas: {},
  activeRunId: null,
};
