// The client's application-level heartbeat (docs/clients.md): silent for an interval →
// `ping`; silent for another one → the connection is dead. A connection used for nothing
// but ping/pong for IDLE_PING_LIMIT_MS stops pinging, so the server's idle timeout (default
// 10 min) can close an idle tab with 1000; the next send or resume reconnects on demand.

/** Heartbeat pings stop after this long without other frames (under the server's 10 min). */
export const IDLE_PING_LIMIT_MS = 5 * 60_000;

export interface HeartbeatHooks {
  /** Sends a `ping` frame. */
  ping: () => void;
  /** No answer to a ping within an interval: drop the connection (4000). */
  dead: () => void;
}

export class Heartbeat {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private intervalMs = 0;
  private lastFrameAt = 0;
  /** Last frame either way that was not ping/pong: pings stop once this is old. */
  private lastUseAt = 0;
  private pingOutstanding = false;

  constructor(private readonly hooks: HeartbeatHooks) {}

  /** Starts beating every `intervalMs` (0: no heartbeat) on a fresh connection. */
  start(intervalMs: number): void {
    this.stop();
    this.intervalMs = intervalMs;
    if (!intervalMs) return;
    this.lastFrameAt = this.lastUseAt = Date.now();
    this.timer = setTimeout(() => this.tick(), intervalMs);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pingOutstanding = false;
  }

  /** A frame arrived; `keepAliveOnly` (a pong, nothing usable) proves the connection is
   *  alive without counting as use. */
  received(keepAliveOnly: boolean): void {
    this.lastFrameAt = Date.now();
    this.pingOutstanding = false;
    if (!keepAliveOnly) this.lastUseAt = Date.now();
  }

  /** The app sent something (not a ping). */
  used(): void {
    this.lastUseAt = Date.now();
  }

  private tick(): void {
    this.timer = null;
    const ms = this.intervalMs;
    if (!ms) return;
    const idle = Date.now() - this.lastFrameAt;
    if (idle < ms) {
      this.timer = setTimeout(() => this.tick(), ms - idle);
    } else if (!this.pingOutstanding && Date.now() - this.lastUseAt > IDLE_PING_LIMIT_MS) {
      this.timer = setTimeout(() => this.tick(), ms);
    } else if (!this.pingOutstanding) {
      this.pingOutstanding = true;
      this.hooks.ping();
      this.timer = setTimeout(() => this.tick(), ms);
    } else {
      this.hooks.dead();
    }
  }
}
