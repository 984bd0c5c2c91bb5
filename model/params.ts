/**
 * Server parameters the machines' guards and timers depend on. Names carry
 * their units. Defaults are gunicorn's (config.py) where gunicorn has the
 * setting; the rest are the project's.
 */
import type { serverParamsSchema } from './schemas.ts';

/** Parameters as the model uses them (a trace written before a parameter existed gets its default). */
export type ServerParams = { -readonly [K in keyof SchemaOutput<typeof serverParamsSchema>]: SchemaOutput<typeof serverParamsSchema>[K] };

type SchemaOutput<S> = S extends { _zod: { output: infer T } } ? T : never;

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
  selectTimeoutMs: 1000,
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
