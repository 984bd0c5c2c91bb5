/**
 * The trace vocabulary: every event any actor of a prefork HTTP server (or a
 * client of it) can take part in, defined once.
 *
 * Each event is `{ t, actor, type, ...payload }`. `t` is milliseconds since the
 * start of the run (virtual time in the simulator, monotonic time in impl/).
 * The `type`'s prefix names the machine that accepts it (`conn.respond` is an
 * event of the server-connection machine) and the `actor` id must be of that
 * machine's kind. The schemas below are the single source: the TypeScript
 * union, the trace parser's validation and the machines' event types are all
 * derived from them, so the vocabulary cannot drift between producers.
 */
import { z } from 'zod';

export const ACTOR_KINDS = ['arbiter', 'listener', 'worker', 'conn', 'client'] as const;
export type ActorKind = (typeof ACTOR_KINDS)[number];

/** Actor ids: `arbiter`, `listener`, `worker/3`, `conn/3.17`, `client/5`. */
export const ACTOR_ID_PATTERNS: Record<ActorKind, RegExp> = {
  arbiter: /^arbiter$/,
  listener: /^listener$/,
  worker: /^worker\/\d+$/,
  conn: /^conn\/\d+\.\d+$/,
  client: /^client\/\d+$/,
};

export type ArbiterId = 'arbiter';
export type ListenerId = 'listener';
export type WorkerId = `worker/${number}`;
export type ConnId = `conn/${number}.${number}`;
export type ClientId = `client/${number}`;
export type ActorId = ArbiterId | ListenerId | WorkerId | ConnId | ClientId;

export function actorKind(actor: string): ActorKind | undefined {
  for (const kind of ACTOR_KINDS) if (ACTOR_ID_PATTERNS[kind].test(actor)) return kind;
  return undefined;
}

export const workerId = (n: number): WorkerId => `worker/${n}`;
export const connId = (worker: number, k: number): ConnId => `conn/${worker}.${k}`;
export const clientId = (n: number): ClientId => `client/${n}`;

/** The worker that owns a server connection: `conn/3.17` → `worker/3`. */
export function connWorker(conn: ConnId): WorkerId {
  const dot = conn.indexOf('.');
  return `worker/${Number(conn.slice('conn/'.length, dot))}`;
}

const workerRef = z.string().regex(ACTOR_ID_PATTERNS.worker, 'a worker id like "worker/3"') as unknown as z.ZodType<WorkerId>;
const connRef = z.string().regex(ACTOR_ID_PATTERNS.conn, 'a connection id like "conn/3.17"') as unknown as z.ZodType<ConnId>;
const clientRef = z.string().regex(ACTOR_ID_PATTERNS.client, 'a client id like "client/5"') as unknown as z.ZodType<ClientId>;
const holderRef = z.union([z.literal('arbiter'), workerRef]);
/** Request ids are opaque strings chosen by the client (`r17`, an X-Request-Id …). */
const requestRef = z.string().min(1);
const nonNegativeInt = z.number().int().nonnegative();

/** Signals the arbiter handles (gunicorn arbiter.py SIG_NAMES). */
export const ARBITER_SIGNALS = ['TERM', 'INT', 'QUIT', 'HUP', 'TTIN', 'TTOU', 'CHLD', 'KILL'] as const;
export type ArbiterSignal = (typeof ARBITER_SIGNALS)[number];
/** Signals a worker receives: TERM drains, INT/QUIT exit at once, ABRT is the heartbeat kill, STOP/CONT freeze it. */
export const WORKER_SIGNALS = ['TERM', 'INT', 'QUIT', 'ABRT', 'KILL', 'STOP', 'CONT'] as const;
export type WorkerSignal = (typeof WORKER_SIGNALS)[number];

/** Why a client's exchange failed, as the client observes it. */
export const CLIENT_FAILURES = [
  'eagain', // AF_UNIX connect on a full accept queue
  'refused', // connect to a closed listener (RST / ENOENT)
  'connect-timeout', // SYNs dropped until the client gave up
  'reset', // ECONNRESET while waiting for the response
  'empty-reply', // EOF before any byte of the response
  'timeout', // no response within the client's timeout
] as const;
export type ClientFailure = (typeof CLIENT_FAILURES)[number];

/** Why a server connection is closed without the connection machine asking for it. */
export const ABORT_REASONS = [
  'worker-exit', // the worker exits with the connection still open (its policy abandons idle connections)
  'quit', // the worker was told to exit at once (QUIT/INT: a fast stop)
  'deadline', // the graceful timeout passed
  'killed', // SIGKILL / the heartbeat's ABRT: the kernel closes every fd
  'crashed', // the worker process died of an error (worker.crash): the kernel closes every fd
  'error', // an unexpected error while handling this one connection: it alone is closed
] as const;
export type AbortReason = (typeof ABORT_REASONS)[number];

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
  event('worker.exit', W, { code: z.number().int() }),
  /**
   * The process died without exiting through its machine: an uncaught error (an exit code) or a
   * signal nobody here sent for a stop (SEGV, BUS …). Written by the arbiter, which saw it die.
   */
  event('worker.crash', W, { code: z.number().int(), signal: z.string().regex(/^[A-Z0-9]+$/, 'a signal name like "SEGV"').optional() }),
] as const;

export const connEventSchemas = [
  event('conn.open', C, { worker: workerRef, client: clientRef }),
  event('conn.bytes', C, { req: requestRef }),
  event('conn.read', C, {
    req: requestRef,
    /** The request allows keep-alive (HTTP/1.1 without `Connection: close`, HTTP/1.0 with `Connection: keep-alive`). Absent: it does. A request the server could not parse does not. */
    keepAlive: z.boolean().optional(),
  }),
  event('conn.handler-start', C, { req: requestRef }),
  event('conn.handler-finish', C, { req: requestRef }),
  event('conn.respond', C, { req: requestRef, status: z.number().int().min(100).max(599), close: z.boolean() }),
  event('conn.drain', C, {}),
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

type SchemaEvent<S> = S extends z.ZodType<infer T> ? T : never;
type Narrow<E, Id> = E extends unknown ? Omit<E, 'actor'> & { actor: Id } : never;

export type ListenerEvent = Narrow<SchemaEvent<(typeof listenerEventSchemas)[number]>, ListenerId>;
export type ArbiterEvent = Narrow<SchemaEvent<(typeof arbiterEventSchemas)[number]>, ArbiterId>;
export type WorkerEvent = Narrow<SchemaEvent<(typeof workerEventSchemas)[number]>, WorkerId>;
export type ConnEvent = Narrow<SchemaEvent<(typeof connEventSchemas)[number]>, ConnId>;
export type ClientEvent = Narrow<SchemaEvent<(typeof clientEventSchemas)[number]>, ClientId>;

/** One line of a trace. */
export type TraceEvent = ListenerEvent | ArbiterEvent | WorkerEvent | ConnEvent | ClientEvent;
export type TraceEventType = TraceEvent['type'];
/** The event as a machine sees it: without the time and actor the trace adds. */
export type MachineEvent<E extends TraceEvent> = E extends unknown ? Omit<E, 't' | 'actor'> : never;

export const EVENT_TYPES: readonly TraceEventType[] = eventSchemas.map((s) => s.shape.type.value);

const schemaByType = new Map<string, z.ZodType>(eventSchemas.map((s) => [s.shape.type.value, s]));

export function schemaFor(type: string): z.ZodType | undefined {
  return schemaByType.get(type);
}

/** The machine kind that accepts events of this type (`conn.respond` → `conn`). */
export function kindOfEventType(type: TraceEventType): ActorKind {
  return type.slice(0, type.indexOf('.')) as ActorKind;
}
