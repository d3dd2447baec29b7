// The chat page: threads sidebar, live timeline, composer. Built on runwire-client.js.
import { RunwireClient } from "./runwire-client.js";

const $ = (sel) => document.querySelector(`[data-testid="${sel}"]`);
const TOKEN_KEY = "runwire.token";

// ---- token: URL fragment → sessionStorage, removed from the address bar --------------
function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function tokenExpired(token) {
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof claims.exp === "number" && claims.exp * 1000 < Date.now();
  } catch { return false; }
}

function showGate(message) {
  document.getElementById("app").hidden = true;
  document.getElementById("gate").hidden = false;
  $("token-message").textContent = message;
}

// ---- safe rendering: text nodes only; **bold** and `code` as elements ------------------
function renderText(el, text) {
  el.replaceChildren();
  const re = /(\*\*[^*]+\*\*|`[^`]+`)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) el.append(document.createTextNode(text.slice(last, m.index)));
    const tok = m[0];
    const node = document.createElement(tok.startsWith("**") ? "strong" : "code");
    node.textContent = tok.startsWith("**") ? tok.slice(2, -2) : tok.slice(1, -1);
    el.append(node);
    last = m.index + tok.length;
  }
  if (last < text.length) el.append(document.createTextNode(text.slice(last)));
}

const api = (token) => async (path, init = {}) => {
  const res = await fetch(path, { ...init, headers: { ...(init.headers || {}),
    Authorization: `Bearer ${token}`, "Content-Type": "application/json" } });
  if (res.status === 401) throw Object.assign(new Error("unauthorized"), { status: 401 });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.status === 204 ? null : res.json();
};

// ---- timeline -----------------------------------------------------------------------
class Timeline {
  constructor(root) { this.root = root; this.nodes = new Map(); this.answers = new Map(); }
  clear() { this.root.replaceChildren(); this.nodes.clear(); this.answers.clear(); }
  scroll() { this.root.scrollTop = this.root.scrollHeight; }
  _node(key, make) {
    let el = this.nodes.get(key);
    if (!el) { el = make(); this.nodes.set(key, el); this.root.append(el); }
    return el;
  }
  message(id, role, text, state = null, agent = null) {
    const el = this._node(`msg:${id}`, () => {
      const d = document.createElement("div");
      d.className = "msg"; d.dataset.role = role; d.dataset.testid = "message";
      d.setAttribute("data-testid", "message");
      const who = document.createElement("span"); who.className = "who";
      who.textContent = role === "user" ? "you" : (agent || "assistant");
      const body = document.createElement("div"); body.className = "body";
      d.append(who, body);
      return d;
    });
    if (state) el.dataset.state = state; else delete el.dataset.state;
    renderText(el.querySelector(".body"), text);
    this.scroll();
    return el;
  }
  delta(id, agent, text) {
    const current = (this.answers.get(id) || "") + text;
    this.answers.set(id, current);
    this.message(id, "assistant", current, "streaming", agent);
  }
  drop(key) {
    const el = this.nodes.get(key);
    if (el) { el.remove(); this.nodes.delete(key); }
  }
  note(key, text, cls = "") {
    const el = this._node(key, () => {
      const d = document.createElement("div"); d.className = `note ${cls}`; return d;
    });
    el.textContent = text;
    this.scroll();
  }
  tool(p, done) {
    const el = this._node(`tool:${p.tool_call_id}`, () => {
      const d = document.createElement("details"); d.className = "tool";
      d.setAttribute("data-testid", "tool-call");
      d.append(document.createElement("summary"), document.createElement("pre"));
      return d;
    });
    const summary = el.querySelector("summary");
    const pre = el.querySelector("pre");
    if (!done) {
      summary.textContent = `⚙ ${p.agent_name} → ${p.tool_name} …`;
      pre.textContent = `args: ${JSON.stringify(p.tool_args, null, 2)}`;
    } else {
      const outcome = p.error != null ? "error" : "ok";
      el.dataset.outcome = outcome;
      summary.textContent = `⚙ ${p.tool_name} ${outcome === "ok" ? "✓" : "✗"} (${p.duration_ms} ms)`;
      const shown = p.error != null ? `error: ${p.error}` : JSON.stringify(p.result, null, 2);
      pre.textContent += `\n${outcome === "ok" ? "result" : ""}${outcome === "ok" ? ": " : ""}${shown.slice(0, 20000)}`;
    }
    this.scroll();
  }
}

// ---- the page -----------------------------------------------------------------------
async function main() {
  const token = takeToken();
  if (!token) return showGate("You are not signed in: there is no token.");
  if (tokenExpired(token)) return showGate("Your token has expired.");
  document.getElementById("app").hidden = false;
  const call = api(token);
  const timeline = new Timeline($("timeline"));
  const active = new Map(); // thread_id → Set(run_id) of unfinished runs
  let current = null; // selected thread id
  let threads = [];

  const client = new RunwireClient({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
    getToken: async (refresh) => (refresh ? null : token),
  });

  function renderThreads() {
    const list = $("thread-list");
    list.replaceChildren(...threads.map((t) => {
      const li = document.createElement("li");
      li.setAttribute("data-testid", "thread-item");
      li.setAttribute("aria-current", String(t.thread_id === current));
      const b = document.createElement("button");
      b.type = "button"; b.textContent = t.title; b.title = t.title;
      b.onclick = () => select(t.thread_id);
      li.append(b);
      return li;
    }));
    const t = threads.find((x) => x.thread_id === current);
    $("thread-title").textContent = t ? t.title : "New chat";
    $("stop-button").hidden = !(current && active.get(current)?.size);
  }

  function apply(f) {
    const p = f.payload || {};
    switch (f.type) {
      case "message_created": timeline.message(p.message_id, "user", p.content); break;
      case "agent_progress": timeline.note(`progress:${f.run_id}`, p.queue_position ? `Queued (position ${p.queue_position})` : p.message); break;
      case "agent_started": timeline.note(`progress:${f.run_id}`, `${p.agent_name} is working…`); break;
      case "agent_thinking": timeline.note(`think:${f.seq}`, `${p.agent_name} thinks: ${p.thought}`, "thinking"); break;
      case "tool_executing": timeline.tool(p, false); break;
      case "tool_completed": timeline.tool(p, true); break;
      case "partial_result": timeline.delta(p.message_id, p.agent_name, p.delta); break;
      case "agent_response": timeline.message(p.message_id, "assistant", p.content, null, p.agent_name); break;
      case "agent_completed":
        timeline.drop(`progress:${f.run_id}`);
        timeline.note(`end:${f.run_id}`, p.status === "cancelled" ? "Stopped." : `Done in ${p.duration_ms} ms.`);
        break;
      case "agent_error":
        timeline.drop(`progress:${f.run_id}`);
        timeline.note(`end:${f.run_id}`, `Error (${p.code}): ${p.message}${p.retryable ? " — you can retry." : ""}`, "error");
        break;
      default: break;
    }
  }

  function track(f) {
    if (!f.run_id || !f.thread_id) return;
    const runs = active.get(f.thread_id) || new Set();
    if (f.type === "agent_completed" || f.type === "agent_error") runs.delete(f.run_id);
    else runs.add(f.run_id);
    active.set(f.thread_id, runs);
  }

  // While a thread loads over REST, its live frames wait here, then those newer than
  // the loaded page are applied: every event is shown exactly once, in seq order.
  let pending = null;

  async function select(threadId, { keep = false } = {}) {
    current = threadId;
    if (!keep) timeline.clear();
    renderThreads();
    document.getElementById("app").classList.remove("menu-open");
    if (!threadId) return;
    pending = [];
    const page = await call(`/api/threads/${threadId}/events?after_seq=0&limit=500`);
    if (current !== threadId) return;
    if (keep) timeline.clear();
    if (page.first_retained_seq && page.first_retained_seq > 1) {
      const msgs = await call(`/api/threads/${threadId}/messages?limit=100`);
      for (const m of msgs.items) timeline.message(m.message_id, m.role, m.content);
    }
    const tracker = client.tracker(threadId);
    let last = 0;
    for (const f of page.items) { tracker.accept(f.seq); track(f); apply(f); last = f.seq; }
    for (const f of pending.sort((a, b) => a.seq - b.seq)) if (f.seq > last) apply(f);
    pending = null;
    client.resume(threadId);
    for (const m of client.outbox) if (m.thread_id === threadId || m.thread_id == null) timeline.message(m.message_id, "user", m.content, m.state);
    renderThreads();
  }

  client.addEventListener("state", (e) => {
    const { state, code, reason } = e.detail;
    const el = $("connection-status");
    el.dataset.state = state;
    el.textContent = code && state !== "open" ? `${state} (${code}${reason ? ": " + reason : ""})` : state;
    if (state === "closed" && code === 4001) showGate("Your token is invalid or has expired.");
  });
  client.addEventListener("frame", (e) => {
    const f = e.detail;
    if (f.type === "connection_established") {
      const model = f.payload.model;
      $("demo-badge").hidden = !model.demo;
      $("model-name").textContent = model.name;
      return;
    }
    if (f.type === "thread_created" || f.type === "thread_updated") {
      const t = threads.find((x) => x.thread_id === f.payload.thread_id);
      if (t) t.title = f.payload.title;
      else threads.unshift({ thread_id: f.payload.thread_id, title: f.payload.title });
      renderThreads();
      return;
    }
    if (f.type === "thread_deleted") {
      threads = threads.filter((x) => x.thread_id !== f.payload.thread_id);
      if (current === f.payload.thread_id) select(null);
      renderThreads();
      return;
    }
    if (f.thread_id) {
      track(f);
      if (f.thread_id === current) {
        if (pending) pending.push(f); else apply(f);
      }
      renderThreads();
    }
  });
  client.addEventListener("outbox", (e) => {
    for (const m of e.detail.messages) {  // visible states: queued / sent / failed
      const el = timeline.nodes.get(`msg:${m.message_id}`);
      if (el) el.dataset.state = m.state;
      if (el && m.state === "failed") timeline.note(`fail:${m.message_id}`, `Not sent: ${m.error}`, "error");
    }
  });
  client.addEventListener("frame", (e) => {
    const f = e.detail;
    if (f.type !== "message_ack") return;
    const el = timeline.nodes.get(`msg:${f.payload.message_id}`);
    if (el) delete el.dataset.state;
    if (!current && el) select(f.payload.thread_id, { keep: true });  // a new thread began
  });

  const input = $("composer-input");
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const m = client.send(text, { threadId: current });
    timeline.message(m.message_id, "user", text, m.state);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop-button").addEventListener("click", () => current && client.stop({ threadId: current }));
  $("new-thread").addEventListener("click", () => { select(null); input.focus(); });
  $("menu").addEventListener("click", () => document.getElementById("app").classList.toggle("menu-open"));

  try {
    threads = (await call("/api/threads?limit=100")).items;
  } catch (err) {
    if (err.status === 401) return showGate("Your token is invalid or has expired.");
    throw err;
  }
  renderThreads();
  await client.connect();
  input.focus();
}

main();
