/**
 * Server parameters the machines' guards and timers depend on. Names carry
 * their units. Defaults are gunicorn's (config.py) where gunicorn has the
 * setting; the rest are the project's.
 */
import { z } from 'zod';

export const serverParamsSchema = z.strictObject({
  workers: z.number().int().positive(),
  /** Concurrent requests per worker (gunicorn `threads`; the sync worker serves one). */
  threads: z.number().int().positive(),
  /** Connections a threaded/async worker holds at most (gunicorn `worker_connections`); beyond it, it stops accepting. */
  workerConnections: z.number().int().positive(),
  /** Idle keep-alive timeout; 0 disables keep-alive (every response carries `Connection: close`). */
  keepAliveMs: z.number().nonnegative(),
  /** Heartbeat: a worker silent for longer is aborted by the arbiter; 0 disables. */
  timeoutMs: z.number().nonnegative(),
  /** How long a draining worker may take before it is killed. */
  gracefulTimeoutMs: z.number().nonnegative(),
  /** Recycle a worker after this many requests; 0 disables. */
  maxRequests: z.number().int().nonnegative(),
  /** Each worker's limit is maxRequests + uniform(0..jitter). */
  maxRequestsJitter: z.number().int().nonnegative(),
  /** Policies with an idle window: how long an idle connection of a draining worker waits for one more request. */
  idleGraceMs: z.number().nonnegative(),
  /** Lingering close: how long to read and discard after the half-close before closing. */
  lingerMs: z.number().nonnegative(),
  /** Heartbeat interval of a worker (gunicorn notifies once per loop turn, ≤ 1 s). */
  heartbeatIntervalMs: z.number().positive(),
  /** The arbiter's loop turn: how often its heartbeat watchdog looks (gunicorn: ≤ 1 s). A silent worker is aborted within timeoutMs + one turn, and killed a turn later. */
  arbiterTickMs: z.number().positive().default(1000),
  /** A connection whose request has not fully arrived this long after it was accepted (or its request began) is closed; 0: no such timer (gunicorn has none). */
  headerTimeoutMs: z.number().nonnegative().default(0),
  /** `listen()` backlog; the kernel caps it at somaxconn. */
  backlog: z.number().int().nonnegative(),
  somaxconn: z.number().int().nonnegative(),
  family: z.enum(['tcp', 'unix']),
});

/** Parameters as the model uses them (a trace written before a parameter existed gets its default). */
export type ServerParams = z.output<typeof serverParamsSchema>;

export const DEFAULT_SERVER_PARAMS: ServerParams = {
  workers: 1,
  threads: 1,
  workerConnections: 1000,
  keepAliveMs: 2000,
  timeoutMs: 30_000,
  gracefulTimeoutMs: 30_000,
  maxRequests: 0,
  maxRequestsJitter: 0,
  idleGraceMs: 1000,
  lingerMs: 2000,
  heartbeatIntervalMs: 1000,
  arbiterTickMs: 1000,
  headerTimeoutMs: 0,
  backlog: 2048,
  somaxconn: 4096,
  family: 'tcp',
};

/**
 * Accept-queue capacity: listen(2) silently caps backlog at somaxconn, and
 * Linux counts the queue as full only when its length is *greater* than the
 * cap (`sk_acceptq_is_full`: `sk_ack_backlog > sk_max_ack_backlog`; AF_UNIX
 * `unix_recvq_full` likewise), so it holds one more than the cap.
 */
export function acceptQueueCapacity(backlog: number, somaxconn: number): number {
  return Math.min(backlog, somaxconn) + 1;
}
