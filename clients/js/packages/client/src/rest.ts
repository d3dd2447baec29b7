// The REST API (/api, src/runwire/api/routes.py): threads, messages, events, runs.

import type { ThreadEvent } from "./types.ts";

/** `{items, next_cursor}`: `next_cursor` pages on (null on the last page). */
export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface ThreadOut {
  thread_id: string;
  title: string;
  /** ISO 8601 */
  created_at: string;
  updated_at: string;
  last_seq: number;
}

export interface MessageOut {
  message_id: string;
  thread_id: string;
  role: string;
  content: string;
  run_id: string | null;
  created_at: string;
}

/** One of the caller's messages matching a search (`GET /api/search`). */
export interface SearchHitOut {
  thread_id: string;
  thread_title: string;
  message_id: string;
  role: string;
  /** A plain-text excerpt around the match. */
  snippet: string;
  created_at: string;
}

/** A tool call waiting for the user's decision (`GET /api/approvals`). */
export interface PendingApprovalOut {
  run_id: string;
  thread_id: string;
  agent_name: string;
  tool_call_id: string;
  tool_name: string;
  tool_args: Record<string, unknown>;
  created_at: string;
  expires_at: string;
}

export interface RunOut {
  run_id: string;
  thread_id: string;
  message_id: string;
  agent: string;
  status: string;
  node_id: string | null;
  attempt: number;
  error_code: string | null;
  error_message: string | null;
  usage: Record<string, unknown> | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

/** Stored events with seq > after_seq, in seq order. */
export interface EventsPage {
  items: ThreadEvent[];
  /** The last seq of this page when more may follow (pass it as `afterSeq`). */
  next_cursor?: string | null;
  /** The thread's last allocated seq. */
  last_seq: number;
  /** null: nothing stored; > 1: older events were pruned. */
  first_retained_seq: number | null;
}

export interface CancelRunOut {
  run_id: string;
  cancelling: boolean;
}

/** An RFC 9457 problem details body. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  instance?: string;
  /** runwire's machine-readable code (`unauthorized`, `not_found`, `rate_limited`, ...). */
  code?: string;
  retry_after_ms?: number;
  [extension: string]: unknown;
}

/** A non-2xx answer; `problem` is the RFC 9457 body (or a stand-in built from the status). */
export class RunwireHttpError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(status: number, problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.name = "RunwireHttpError";
    this.status = status;
    this.problem = problem;
  }
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface RestClientOptions {
  /** Prefix of `/api/...` (default "": same origin). */
  baseUrl?: string;
  /** Returns the bearer token; `refresh` true after a 401 (may return a new one). */
  getToken: (refresh: boolean) => Promise<string | null>;
  fetch?: FetchLike;
}

type Query = Record<string, string | number | null | undefined>;

function qs(q: Query): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(q)) {
    if (v === null || v === undefined || v === "") continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

/** A thin typed client of the REST API. A 401 refreshes the token once and retries. */
export class RestClient {
  private readonly baseUrl: string;
  private readonly getToken: (refresh: boolean) => Promise<string | null>;
  private readonly fetchFn: FetchLike;

  constructor({ baseUrl = "", getToken, fetch: fetchFn }: RestClientOptions) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.getToken = getToken;
    const f = fetchFn ?? globalThis.fetch?.bind(globalThis);
    if (!f) throw new Error("RestClient: no fetch available");
    this.fetchFn = f;
  }

  listThreads({ limit, cursor }: { limit?: number; cursor?: string | null } = {}): Promise<Page<ThreadOut>> {
    return this.request("GET", `/api/threads${qs({ limit, cursor })}`);
  }

  createThread(title?: string | null): Promise<ThreadOut> {
    return this.request("POST", "/api/threads", title ? { title } : {});
  }

  getThread(id: string): Promise<ThreadOut> {
    return this.request("GET", `/api/threads/${encodeURIComponent(id)}`);
  }

  renameThread(id: string, title: string): Promise<ThreadOut> {
    return this.request("PATCH", `/api/threads/${encodeURIComponent(id)}`, { title });
  }

  async deleteThread(id: string): Promise<void> {
    await this.request<null>("DELETE", `/api/threads/${encodeURIComponent(id)}`);
  }

  /** Newest page first; each page is oldest-first; `next_cursor` pages to older ones. */
  messages(id: string, { limit, cursor }: { limit?: number; cursor?: string | null } = {}): Promise<Page<MessageOut>> {
    return this.request("GET", `/api/threads/${encodeURIComponent(id)}/messages${qs({ limit, cursor })}`);
  }

  events(id: string, { afterSeq, limit }: { afterSeq?: number; limit?: number } = {}): Promise<EventsPage> {
    return this.request("GET", `/api/threads/${encodeURIComponent(id)}/events${qs({ after_seq: afterSeq, limit })}`);
  }

  /** Full-text search over the caller's own messages, best match first. */
  search(q: string, { limit, cursor }: { limit?: number; cursor?: string | null } = {}): Promise<Page<SearchHitOut>> {
    return this.request("GET", `/api/search${qs({ q, limit, cursor })}`);
  }

  /** The user's tool calls waiting for a decision (of one thread, or all), oldest first. */
  pendingApprovals(threadId?: string): Promise<PendingApprovalOut[]> {
    const q = threadId ? `?thread_id=${encodeURIComponent(threadId)}` : "";
    return this.request("GET", `/api/approvals${q}`);
  }

  /** Decides a tool call waiting for approval over REST (the WebSocket's `approve_tool`). */
  decide(runId: string, toolCallId: string, decision: { approved: boolean; reason?: string; args?: Record<string, unknown> }):
  Promise<{ run_id: string; tool_call_id: string; approved: boolean; reason: string | null; args: Record<string, unknown> | null; resumed: boolean }> {
    return this.request("POST", `/api/runs/${encodeURIComponent(runId)}/approvals`, { tool_call_id: toolCallId, ...decision });
  }

  run(id: string): Promise<RunOut> {
    return this.request("GET", `/api/runs/${encodeURIComponent(id)}`);
  }

  cancelRun(id: string): Promise<CancelRunOut> {
    return this.request("POST", `/api/runs/${encodeURIComponent(id)}/cancel`);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res = await this.attempt(method, path, body, false);
    if (res.status === 401) res = await this.attempt(method, path, body, true);
    if (!res.ok) throw new RunwireHttpError(res.status, await problemOf(res));
    if (res.status === 204) return null as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : null) as T;
  }

  private async attempt(method: string, path: string, body: unknown, refresh: boolean): Promise<Response> {
    const token = await this.getToken(refresh);
    const headers: Record<string, string> = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return this.fetchFn(this.baseUrl + path, init);
  }
}

async function problemOf(res: Response): Promise<Problem> {
  const fallback: Problem = { status: res.status, title: res.statusText || `HTTP ${res.status}` };
  try {
    const text = await res.text();
    if (!text) return fallback;
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      return { status: res.status, ...(parsed as Problem) };
    }
    return fallback;
  } catch {
    return fallback;
  }
}
