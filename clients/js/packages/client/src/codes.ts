// WebSocket close codes of runwire protocol v1 and what the client does after each
// (docs/protocol.md §3). The server's table is src/runwire/protocol/codes.py (CloseCode);
// tests/test_js_codes.py fails when the two differ, or a code has no rule here.

export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  HEARTBEAT_TIMEOUT: 4000,
  UNAUTHORIZED: 4001,
  FORBIDDEN: 4003,
  TOO_MANY_CONNECTIONS: 4008,
  SLOW_CONSUMER: 4009,
} as const;

export type CloseCodeName = keyof typeof CloseCode;

/**
 * on-demand: stay closed; the next send/resume reconnects (idle close).
 * backoff: reconnect with exponential backoff + jitter, then resume.
 * refresh-token: ask getToken(true) once; reconnect with a new token, else stay closed.
 * never: stay closed until the app calls connect() (the user must act first).
 */
export type ReconnectRule = "on-demand" | "backoff" | "refresh-token" | "never";

export const RECONNECT_RULES: Readonly<Record<CloseCodeName, ReconnectRule>> = {
  NORMAL: "on-demand",
  GOING_AWAY: "backoff",
  POLICY_VIOLATION: "never",
  MESSAGE_TOO_BIG: "backoff",
  INTERNAL_ERROR: "backoff",
  HEARTBEAT_TIMEOUT: "backoff",
  UNAUTHORIZED: "refresh-token",
  FORBIDDEN: "never",
  TOO_MANY_CONNECTIONS: "never",
  SLOW_CONSUMER: "backoff",
};

const BY_CODE: ReadonlyMap<number, ReconnectRule> = new Map(
  (Object.keys(CloseCode) as CloseCodeName[]).map((name) => [CloseCode[name], RECONNECT_RULES[name]]),
);

/** The rule for a close code; codes the server doesn't send (1006: the network) back off. */
export function reconnectRule(code: number): ReconnectRule {
  return BY_CODE.get(code) ?? "backoff";
}

/** Close codes after which the client does not reconnect by itself. */
export const NO_RECONNECT_CODES: ReadonlySet<number> = new Set(
  [...BY_CODE].filter(([, rule]) => rule === "never").map(([code]) => code),
);
