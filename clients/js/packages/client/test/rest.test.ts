import { describe, expect, it, vi } from "vitest";
import { RestClient, RunwireHttpError, type FetchLike } from "../src/rest.ts";

interface Call { url: string; method: string; headers: Record<string, string>; body: unknown }

function stub(responses: Array<() => Response>): { fetch: FetchLike; calls: Call[] } {
  const calls: Call[] = [];
  let i = 0;
  const fetch: FetchLike = async (url, init) => {
    calls.push({
      url, method: init?.method ?? "GET", headers: (init?.headers ?? {}) as Record<string, string>,
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
    });
    const make = responses[Math.min(i++, responses.length - 1)];
    if (!make) throw new Error("no response");
    return make();
  };
  return { fetch, calls };
}

const json = (body: unknown, status = 200) => () =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
const problem = (status: number, detail: string) => () =>
  new Response(JSON.stringify({ type: "about:blank", title: "Error", status, detail }), {
    status, headers: { "Content-Type": "application/problem+json" },
  });

const thread = { thread_id: "T", title: "t", created_at: "x", updated_at: "x", last_seq: 3 };

describe("RestClient", () => {
  it("calls the right paths with the bearer token", async () => {
    const s = stub([
      json({ items: [thread], next_cursor: "c2" }), json(thread, 201), json(thread), () => new Response(null, { status: 204 }),
      json({ items: [], next_cursor: null }), json({ items: [], last_seq: 9, first_retained_seq: 1 }),
      json({ run_id: "R" }), json({ run_id: "R", cancelling: true }, 202),
    ]);
    const getToken = vi.fn(async () => "tok");
    const api = new RestClient({ baseUrl: "https://h/", getToken, fetch: s.fetch });
    expect(await api.listThreads({ limit: 100, cursor: "c1" })).toEqual({ items: [thread], next_cursor: "c2" });
    expect(await api.createThread("Hello")).toEqual(thread);
    await api.renameThread("T/1", "New");
    expect(await api.deleteThread("T")).toBeUndefined();
    await api.messages("T", { limit: 50 });
    expect(await api.events("T", { afterSeq: 0, limit: 500 })).toEqual({ items: [], last_seq: 9, first_retained_seq: 1 });
    await api.run("R");
    expect(await api.cancelRun("R")).toEqual({ run_id: "R", cancelling: true });
    expect(s.calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      "GET https://h/api/threads?limit=100&cursor=c1",
      "POST https://h/api/threads",
      "PATCH https://h/api/threads/T%2F1",
      "DELETE https://h/api/threads/T",
      "GET https://h/api/threads/T/messages?limit=50",
      "GET https://h/api/threads/T/events?after_seq=0&limit=500",
      "GET https://h/api/runs/R",
      "POST https://h/api/runs/R/cancel",
    ]);
    expect(s.calls.every((c) => c.headers.Authorization === "Bearer tok")).toBe(true);
    expect(s.calls[1]?.body).toEqual({ title: "Hello" });
    expect(s.calls[1]?.headers["Content-Type"]).toBe("application/json");
    expect(s.calls[2]?.body).toEqual({ title: "New" });
    expect(getToken).toHaveBeenCalledWith(false);
  });

  it("default base URL is same-origin; createThread without a title sends {}", async () => {
    const s = stub([json(thread, 201)]);
    await new RestClient({ getToken: async () => "t", fetch: s.fetch }).createThread();
    expect(s.calls[0]).toMatchObject({ url: "/api/threads", body: {} });
  });

  it("search sends the words as q (encoded) with limit and cursor", async () => {
    const hit = { thread_id: "T", thread_title: "t", message_id: "m", role: "user", snippet: "a & b", created_at: "x" };
    const s = stub([json({ items: [hit], next_cursor: "n" })]);
    const api = new RestClient({ getToken: async () => "tok", fetch: s.fetch });
    expect(await api.search("a & b?", { limit: 5, cursor: "c" })).toEqual({ items: [hit], next_cursor: "n" });
    expect(s.calls[0]?.url).toBe("/api/search?q=a%20%26%20b%3F&limit=5&cursor=c");
    expect(s.calls[0]?.method).toBe("GET");
  });

  it("on 401 refreshes the token once and retries", async () => {
    const s = stub([problem(401, "expired"), json({ items: [] })]);
    const getToken = vi.fn(async (refresh: boolean) => (refresh ? "fresh" : "stale"));
    const api = new RestClient({ getToken, fetch: s.fetch });
    expect(await api.listThreads()).toEqual({ items: [] });
    expect(getToken.mock.calls).toEqual([[false], [true]]);
    expect(s.calls.map((c) => c.headers.Authorization)).toEqual(["Bearer stale", "Bearer fresh"]);
  });

  it("a second 401 is an error (no loop)", async () => {
    const s = stub([problem(401, "expired")]);
    const api = new RestClient({ getToken: async () => "t", fetch: s.fetch });
    const err = await api.listThreads().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunwireHttpError);
    expect((err as RunwireHttpError).status).toBe(401);
    expect(s.calls).toHaveLength(2);
  });

  it("non-2xx → RunwireHttpError with the problem body", async () => {
    const s = stub([problem(404, "thread not found")]);
    const api = new RestClient({ getToken: async () => "t", fetch: s.fetch });
    const err = await api.messages("nope").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunwireHttpError);
    expect(err).toMatchObject({ status: 404, message: "thread not found", problem: { status: 404, detail: "thread not found", title: "Error" } });
  });

  it("a non-JSON error body still gives a problem", async () => {
    const s = stub([() => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" })]);
    const api = new RestClient({ getToken: async () => "t", fetch: s.fetch });
    const err = (await api.run("R").catch((e: unknown) => e)) as RunwireHttpError;
    expect(err.status).toBe(502);
    expect(err.problem).toMatchObject({ status: 502, title: "Bad Gateway" });
  });
});
