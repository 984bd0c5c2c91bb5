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

import type { arbiterEventSchemas, clientEventSchemas, connEventSchemas, listenerEventSchemas, workerEventSchemas } from './schemas.ts';

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

type SchemaEvent<S> = S extends { _zod: { output: infer T } } ? T : never;
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

/** The machine kind that accepts events of this type (`conn.respond` → `conn`). */
export function kindOfEventType(type: TraceEventType): ActorKind {
  return type.slice(0, type.indexOf('.')) as ActorKind;
}
