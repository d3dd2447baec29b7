export interface BackoffOptions {
  /** Delay of the first retry before jitter (ms). Default 500. */
  baseMs?: number;
  /** Upper bound of any delay (ms). Default 30000. */
  maxMs?: number;
}

/**
 * Delay before reconnect attempt number `attempt` (0-based): exponential, capped at
 * `maxMs`, with equal jitter — half of the capped delay is fixed, the other half random —
 * so the result lies in [d/2, d] where d = min(maxMs, baseMs * 2^attempt).
 */
export function backoffDelay(
  attempt: number,
  { baseMs = 500, maxMs = 30000 }: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const n = Math.max(0, Math.floor(attempt));
  // 2 ** n overflows to Infinity for huge n; min() then caps it.
  const capped = Math.min(maxMs, baseMs * 2 ** Math.min(n, 1024));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(capped / 2 + (capped / 2) * r);
}
