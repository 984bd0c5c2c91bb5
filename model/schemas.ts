/**
 * The trace vocabulary's schemas (zod): one per event, the header's, the
 * server parameters'. The TypeScript types in events.ts and params.ts are
 * derived from these (type-only imports), and the trace parser validates
 * with them — while the code that only runs machines (a worker process)
 * never loads zod.
 */
import { z } from 'zod';
import { ABORT_REASONS, ACTOR_ID_PATTERNS, ARBITER_SIGNALS, CLIENT_FAILURES, WORKER_SIGNALS, type ClientId, type ConnId, type TraceEventType, type WorkerId } from './events.ts';

const workerRef = z.string().regex(ACTOR_ID_PATTERNS.worker, 'a worker id like "worker/3"') as unknown as z.ZodType<WorkerId>;
const connRef = z.string().regex(ACTOR_ID_PATTERNS.conn, 'a connection id like "conn/3.17"') as unknown as z.ZodType<ConnId>;
const clientRef = z.string().regex(ACTOR_ID_PATTERNS.client, 'a client id like "client/5"') as unknown as z.ZodType<ClientId>;
const holderRef = z.union([z.literal('arbiter'), workerRef]);
/** Request ids are opaque strings chosen by the client (`r17`, an X-Request-Id …). */
const requestRef = z.string().min(1);
const nonNegativeInt = z.number().int().nonnegative();

function event<T extends string, S extends z.ZodRawShape>(type: T, actorPattern: RegExp, payload: S) {
  return z.strictObject({
    t: z.number().finite().nonnegative(),
    actor: z.string().regex(actorPattern),
    type: z.literal(type),
    ...payload,
  });
}

const L = ACTOR_ID_PATTERNS.listener;
const A = ACTOR_ID_PATTERNS.arbiter;
const W = ACTOR_ID_PATTERNS.worker;
const C = ACTOR_ID_PATTERNS.conn;
const K = ACTOR_ID_PATTERNS.client;

/** Listener = the kernel's listening socket and its accept queue, shared by every process holding its fd. */
export const listenerEventSchemas = [
  event('listener.open', L, { family: z.enum(['tcp', 'unix']), backlog: nonNegativeInt, somaxconn: nonNegativeInt }),
  event('listener.hold', L, { holder: holderRef }),
  event('listener.release', L, { holder: holderRef }),
  event('listener.syn', L, { client: clientRef }),
  event('listener.overflow', L, { client: clientRef }),
  event('listener.accept', L, { client: clientRef, conn: connRef, worker: workerRef }),
  event('listener.refuse', L, { client: clientRef }),
  event('listener.reset', L, { client: clientRef }),
] as const;

export const arbiterEventSchemas = [
  event('arbiter.start', A, { workers: z.number().int().positive() }),
  event('arbiter.signal', A, { signal: z.enum(ARBITER_SIGNALS) }),
  event('arbiter.spawn', A, { worker: workerRef }),
  event('arbiter.kill', A, { worker: workerRef, signal: z.enum(WORKER_SIGNALS) }),
  event('arbiter.reap', A, { worker: workerRef, code: z.number().int() }),
  /**
   * The arbiter heard that this worker serves: its app is loaded and it accepts (our server: the
   * worker's message). gunicorn's arbiter is never told; a reload that retires old workers only as
   * new ones serve (`reloadRetires: 'when-replaced'`) needs it.
   */
  event('arbiter.ready', A, { worker: workerRef }),
  /** The arbiter saw this worker's heartbeat (gunicorn: the worker touched its tmp file). */
  event('arbiter.heartbeat', A, { worker: workerRef }),
  /** One turn of the arbiter's loop (gunicorn: at most 1 s apart): the heartbeat watchdog looks at every worker. */
  event('arbiter.tick', A, {}),
  event('arbiter.graceful-timeout', A, {}),
  event('arbiter.close-listener', A, {}),
  event('arbiter.exit', A, { code: z.number().int() }),
] as const;

export const workerEventSchemas = [
  /**
   * The process started. `maxRequests`: the request count at which it recycles itself (gunicorn's
   * max_requests + its jitter, drawn when it was spawned); 0 means never. Absent in traces of servers
   * that do not say: any count within the header's bounds is then allowed.
   */
  event('worker.boot', W, { maxRequests: nonNegativeInt.optional() }),
  event('worker.ready', W, {}),
  event('worker.heartbeat', W, {}),
  event('worker.signal', W, { signal: z.enum(WORKER_SIGNALS) }),
  event('worker.accept', W, { conn: connRef }),
  event('worker.request-start', W, { conn: connRef, req: requestRef }),
  event('worker.request-end', W, { conn: connRef, req: requestRef }),
  event('worker.max-requests', W, {}),
  event('worker.conn-closed', W, { conn: connRef }),
  event('worker.close-listener', W, {}),
  event('worker.graceful-timeout', W, {}),
  /**
   * The last poll of a draining worker's loop returned before its timeout (policies with a last loop
   * turn, gthread 20.x): from the poll's phase, which nobody outside the process knows, or because a
   * connection became readable. `worker.turn-timeout` is the poll's own timeout.
   */
  event('worker.turn-end', W, {}),
  event('worker.turn-timeout', W, {}),
  event('worker.exit', W, { code: z.number().int() }),
  /**
   * The process died without exiting through its machine: an uncaught error (an exit code) or a
   * signal nobody here sent for a stop (SEGV, BUS …). Written by the arbiter, which saw it die.
   */
  event('worker.crash', W, { code: z.number().int(), signal: z.string().regex(/^[A-Z0-9]+$/, 'a signal name like "SEGV"').optional() }),
] as const;

export const connEventSchemas = [
  event('conn.open', C, { worker: workerRef, client: clientRef }),
  /**
   * Request bytes reached the socket. `partial`: the request's head is in, its body is not all here
   * yet (absent: the request is whole); a `conn.bytes` of the same request without it says the rest came.
   */
  event('conn.bytes', C, { req: requestRef, partial: z.literal(true).optional() }),
  event('conn.read', C, {
    req: requestRef,
    /** The request allows keep-alive (HTTP/1.1 without `Connection: close`, HTTP/1.0 with `Connection: keep-alive`). Absent: it does. A request the server could not parse does not. */
    keepAlive: z.boolean().optional(),
  }),
  event('conn.handler-start', C, { req: requestRef }),
  event('conn.handler-finish', C, { req: requestRef }),
  event('conn.respond', C, { req: requestRef, status: z.number().int().min(100).max(599), close: z.boolean() }),
  event('conn.drain', C, {}),
  /**
   * The pool thread's done callback is through with the answered connection (gthread: `finish_request`,
   * after `post_request`): it is back in the poller, or closed where the worker no longer serves. A
   * request the client sent meanwhile waited unread.
   */
  event('conn.returned', C, {}),
  /**
   * The worker's event loop handed the connection, readable, to a thread (policies whose kept-alive
   * connections wait in a poller, gthread: `on_client_socket_readable` → `tpool.submit`).
   */
  event('conn.dispatch', C, {}),
  /** Its worker's last loop turn ended (policies with one): an idle connection is abandoned from now. */
  event('conn.turn-end', C, {}),
  event('conn.keepalive-timeout', C, {}),
  event('conn.grace-timeout', C, {}),
  event('conn.linger-timeout', C, {}),
  /** The request head (or body) has not fully arrived within the server's header timeout: it gives up on the client. */
  event('conn.header-timeout', C, {}),
  event('conn.peer-fin', C, {}),
  event('conn.peer-rst', C, {}),
  event('conn.abort', C, { reason: z.enum(ABORT_REASONS) }),
  event('conn.half-close', C, {}),
  event('conn.close', C, { rst: z.boolean() }),
] as const;

export const clientEventSchemas = [
  event('client.connect', K, {}),
  event('client.syn-retry', K, { attempt: z.number().int().positive() }),
  event('client.connected', K, {}),
  event('client.send', K, { req: requestRef, idempotent: z.boolean() }),
  event('client.response', K, { req: requestRef, status: z.number().int().min(100).max(599), close: z.boolean() }),
  event('client.fail', K, {
    reason: z.enum(CLIENT_FAILURES),
    req: requestRef.optional(),
    /** What a proxy in front reported downstream (502 on errors, 504 on timeouts). */
    status: z.union([z.literal(502), z.literal(504)]).optional(),
  }),
  event('client.eof', K, {}),
  event('client.close', K, {}),
] as const;

export const eventSchemas = [
  ...listenerEventSchemas,
  ...arbiterEventSchemas,
  ...workerEventSchemas,
  ...connEventSchemas,
  ...clientEventSchemas,
] as const;

/** Server parameters: the units in the names; see params.ts for their meaning and defaults. */
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
  /**
   * A worker loop's poll timeout (gthread's `select(1.0)`): under a policy with a last loop turn, how
   * long that turn lasts at most after a drain began.
   */
  selectTimeoutMs: z.number().positive().default(1000),
  /** A connection whose request has not fully arrived this long after it was accepted (or its request began) is closed; 0: no such timer (gunicorn has none). */
  headerTimeoutMs: z.number().nonnegative().default(0),
  /** `listen()` backlog; the kernel caps it at somaxconn. */
  backlog: z.number().int().nonnegative(),
  somaxconn: z.number().int().nonnegative(),
  family: z.enum(['tcp', 'unix']),
});

export const EVENT_TYPES: readonly TraceEventType[] = eventSchemas.map((s) => s.shape.type.value);

const schemaByType = new Map<string, z.ZodType>(eventSchemas.map((s) => [s.shape.type.value, s]));

export function schemaFor(type: string): z.ZodType | undefined {
  return schemaByType.get(type);
}
