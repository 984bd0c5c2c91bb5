/**
 * Bounds on every number a user can give, in one place: `quiesce serve`'s
 * flags and config file and `quiesce simulate`'s flags take them from here,
 * so the same value is accepted or refused everywhere.
 *
 * Durations are bounded by what a timer can hold: Node.js (like browsers)
 * stores a timer's delay in a signed 32-bit count of milliseconds and turns
 * anything larger into 1 ms — a graceful timeout of 35 days would fire at
 * once. 2,147,483 s (24.8 days) is the largest that means what it says.
 */

/** The longest delay a timer can hold, in ms (2^31 − 1). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The longest duration a user may give, in whole seconds. */
export const MAX_DURATION_S = Math.floor(MAX_TIMER_MS / 1000);

export interface Bound {
  readonly min: number;
  readonly max: number;
  readonly integer: boolean;
  /** Why the maximum is what it is, for the error message. */
  readonly why?: string;
}

const count = (min: number, max: number, why?: string): Bound => ({ min, max, integer: true, ...(why ? { why } : {}) });
const seconds = (min: number): Bound => ({ min, max: MAX_DURATION_S, integer: false, why: 'the longest timer Node.js can hold, 24.8 days' });

export const BOUNDS = {
  workers: count(1, 512, 'one machine'),
  threads: count(1, 10_000),
  workerConnections: count(1, 1_000_000),
  maxRequests: count(0, 1_000_000_000),
  maxRequestsJitter: count(0, 1_000_000_000),
  backlog: count(1, 65_535, 'listen(2) takes at most 65535'),
  somaxconn: count(0, 65_535, 'net.core.somaxconn is at most 65535'),
  maxBodyBytes: count(0, 1024 ** 3, '1 GiB'),
  seconds: seconds(0),
  headerTimeoutSeconds: seconds(0.001),
  /** ab's -n and -c (ab.c MAX_CONCURRENCY is 20000). */
  requests: count(1, 100_000_000),
  concurrency: count(1, 20_000, "ab's MAX_CONCURRENCY"),
  ratePerSecond: { min: 0.001, max: 100_000, integer: false },
  durationSeconds: { min: 0.001, max: 7 * 86_400, integer: false, why: 'a week of virtual time' },
  serviceMs: { min: 0, max: MAX_TIMER_MS, integer: false },
} as const satisfies Record<string, Bound>;

export type BoundName = keyof typeof BOUNDS;

/**
 * Check a number against its bound; undefined when it fits, else what was expected.
 * Text is decimal only: "3x", "1e6", "0x10" and " 3" are not numbers a person means here.
 */
export function checkNumber(raw: unknown, bound: Bound, source: 'text' | 'json'): { value: number } | { expected: string } {
  const kind = bound.integer ? 'an integer' : 'a number';
  const range = `${kind} from ${bound.min} to ${bound.max}${bound.why ? ` (${bound.why})` : ''}`;
  let value: number;
  if (source === 'json') {
    if (typeof raw !== 'number') return { expected: `${range} as a JSON number, not ${typeof raw === 'string' ? 'a string' : JSON.stringify(raw)}` };
    value = raw;
  } else {
    const text = String(raw);
    const pattern = bound.integer ? /^-?\d+$/ : /^-?\d+(\.\d+)?$/;
    if (!pattern.test(text)) return { expected: `${range} in decimal digits` };
    value = Number(text);
  }
  if (!Number.isFinite(value) || (bound.integer && !Number.isInteger(value)) || value < bound.min || value > bound.max) return { expected: range };
  return { value };
}
