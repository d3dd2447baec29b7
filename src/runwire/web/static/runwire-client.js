// runwire browser client: one WebSocket, reconnect + resume, dedupe by seq, chunk
// reassembly, an offline send queue with visible states. Framework-free (EventTarget).
// Protocol: docs/protocol.md.

const NO_RECONNECT = new Set([4003, 4008, 1008, 1009]);

function b64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function uuid() {
  return crypto.randomUUID ? crypto.randomUUID()
    : `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

/** Per-thread record of the seqs already handed to the application. */
class SeqTracker {
  constructor() { this.contiguous = 0; this.above = new Set(); }
  /** true when `seq` is new (and records it). */
  accept(seq) {
    if (seq <= this.contiguous || this.above.has(seq)) return false;
    this.above.add(seq);
    while (this.above.has(this.contiguous + 1)) {
      this.contiguous += 1;
      this.above.delete(this.contiguous);
    }
    return true;
  }
  get hasGap() { return this.above.size > 0; }
  set(last) { if (last > this.contiguous) { this.contiguous = last; for (const s of [...this.above]) if (s <= last) this.above.delete(s); } }
}

/**
 * Events: "state" {state, code, reason}; "frame" (every server frame, deduped, chunks
 * joined); "outbox" {messages} whenever a queued message changes state.
 * States: connecting | open | reconnecting | closed.
 */
export class RunwireClient extends EventTarget {
  constructor({ url, getToken, backoff = { base: 500, max: 30000 } }) {
    super();
    this.url = url;
    this.getToken = getToken; // async (refresh: boolean) => token | null
    this.backoff = backoff;
    this.state = "closed";
    this.closeCode = null;
    this.closeReason = "";
    this.established = null;
    this.threads = new Map(); // thread_id → SeqTracker
    this.outbox = []; // {message_id, content, thread_id, state, error}
    this._chunks = new Map();
    this._attempt = 0;
    this._ws = null;
    this._timer = null;
    this._token = null;
    this._stopped = false;
    this._resuming = new Set();
  }

  _setState(state, code = null, reason = "") {
    this.state = state;
    this.closeCode = code;
    this.closeReason = reason;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, code, reason } }));
  }

  async connect() {
    this._stopped = false;
    this._watchNetwork();
    this._token = this._token || await this.getToken(false);
    if (!this._token) { this._setState("closed", 4001, "no token"); return; }
    this._open();
  }

  _open() {
    this._setState(this._attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url, ["runwire.v1", "jwt." + b64url(this._token)]);
    this._ws = ws;
    ws.onmessage = (ev) => this._receive(ev.data);
    ws.onclose = (ev) => this._closed(ev.code, ev.reason);
  }

  async _closed(code, reason) {
    this._ws = null;
    this._chunks.clear();
    for (const m of this.outbox) if (m.state === "sent") m.state = "queued";
    this._emitOutbox();
    if (this._stopped) { this._setState("closed", code, reason); return; }
    if (NO_RECONNECT.has(code)) { this._setState("closed", code, reason); return; }
    if (code === 4001) {
      const fresh = await this.getToken(true);
      if (!fresh || fresh === this._token) { this._setState("closed", 4001, reason || "token expired"); return; }
      this._token = fresh;
    }
    this._attempt += 1;
    const delay = Math.min(this.backoff.max, this.backoff.base * 2 ** (this._attempt - 1));
    const jittered = delay * (0.5 + Math.random());
    this._setState("reconnecting", code, reason);
    this._timer = setTimeout(() => this._open(), jittered);
  }

  /** Browsers report losing the network before TCP notices: drop the socket at once
   *  (the server keeps the runs going) and reconnect as soon as the network is back. */
  _watchNetwork() {
    if (this._watching || typeof window === "undefined") return;
    this._watching = true;
    window.addEventListener("offline", () => { if (this._ws) this._ws.close(); });
    window.addEventListener("online", () => {
      if (this._stopped || this.state === "open" || this.state === "connecting") return;
      clearTimeout(this._timer);
      this._attempt = Math.max(1, this._attempt);
      this._open();
    });
  }

  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000, "bye");
  }

  _sendFrame(type, payload, requestId) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    const frame = { type, payload };
    if (requestId) frame.request_id = requestId;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  /** Queue a user message; it is sent now if open, else when the connection is back. */
  send(content, { threadId = null, messageId = uuid() } = {}) {
    const msg = { message_id: messageId, content, thread_id: threadId, state: "queued", error: null };
    this.outbox.push(msg);
    this._flush();
    this._emitOutbox();
    return msg;
  }

  _flush() {
    for (const m of this.outbox) {
      if (m.state !== "queued") continue;
      const payload = { content: m.content, message_id: m.message_id };
      if (m.thread_id) payload.thread_id = m.thread_id;
      if (this._sendFrame("user_message", payload, m.message_id)) m.state = "sent";
    }
  }

  _emitOutbox() {
    this.dispatchEvent(new CustomEvent("outbox", { detail: { messages: [...this.outbox] } }));
  }

  stop({ runId = null, threadId = null }) {
    return this._sendFrame("stop_agent", runId ? { run_id: runId } : { thread_id: threadId });
  }

  ping() { return this._sendFrame("ping", {}); }

  tracker(threadId) {
    let t = this.threads.get(threadId);
    if (!t) { t = new SeqTracker(); this.threads.set(threadId, t); }
    return t;
  }

  /** Ask for what this client lacks of a thread (after its last contiguous seq). */
  resume(threadId, afterSeq = null) {
    const after = afterSeq ?? this.tracker(threadId).contiguous;
    this._resuming.add(threadId);
    return this._sendFrame("resume", { thread_id: threadId, after_seq: after });
  }

  _receive(data) {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (frame.type === "chunk") {
      const p = frame.payload;
      const parts = this._chunks.get(p.chunk_id) || [];
      parts[p.index] = p.data;
      this._chunks.set(p.chunk_id, parts);
      if (parts.filter((x) => x !== undefined).length < p.total) return;
      this._chunks.delete(p.chunk_id);
      try { frame = JSON.parse(parts.join("")); } catch { return; }
    }
    this._handle(frame);
  }

  _handle(frame) {
    switch (frame.type) {
      case "connection_established":
        this.established = frame.payload;
        this._attempt = 0;
        this._setState("open");
        for (const threadId of this.threads.keys()) this.resume(threadId);
        this._flush();
        this._emitOutbox();
        break;
      case "message_ack": {
        const m = this.outbox.find((x) => x.message_id === frame.payload.message_id);
        if (m) {
          m.state = "acked";
          m.thread_id = frame.payload.thread_id;
          this.outbox = this.outbox.filter((x) => x !== m);
          this._emitOutbox();
        }
        break;
      }
      case "error": {
        const m = this.outbox.find((x) => x.message_id === frame.payload.request_id);
        if (m && frame.payload.code !== "rate_limited") {
          m.state = "failed";
          m.error = frame.payload.message;
          this._emitOutbox();
        } else if (m) {
          m.state = "queued";
          setTimeout(() => this._flush(), frame.payload.retry_after_ms || 1000);
        }
        break;
      }
      case "replay_complete":
        this._resuming.delete(frame.payload.thread_id);
        break;
      default:
        break;
    }
    if (frame.thread_id && typeof frame.seq === "number") {
      const t = this.tracker(frame.thread_id);
      if (!t.accept(frame.seq)) return; // duplicate
      if (t.hasGap && !this._resuming.has(frame.thread_id)) this.resume(frame.thread_id);
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }
}
