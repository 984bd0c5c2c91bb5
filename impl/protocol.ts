/**
 * What the arbiter and its workers tell each other over the IPC channel.
 * Signals travel as real signals; this channel carries what a signal cannot:
 * the worker's configuration and identity, copies of the listening socket,
 * its heartbeat, its trace events, and the news that it released its copy of
 * the listening socket.
 *
 * A worker process starts as a *spare*: it loads the app and compiles the
 * machines, says `spare-ready`, and waits. Spawning a worker is then giving a
 * ready spare its identity and the listening socket — milliseconds, as a
 * fork is for gunicorn — while a new spare starts in the background.
 */
import type { TraceEvent, WorkerId } from '../model/events.ts';
import type { ActorSnapshot } from '../model/host.ts';
import type { ServerParams } from '../model/params.ts';
import type { ParserLimits } from './http.ts';
import type { TraceScope } from '../model/trace.ts';

/** What every worker of a server shares: passed to a spare in the QUIESCE_WORKER environment variable. */
export interface SpareSpec {
  readonly policy: string;
  readonly params: ServerParams;
  readonly app: string;
  readonly cwd: string;
  readonly counterLog: string;
  readonly limits: ParserLimits;
  /** CLOCK_MONOTONIC at the arbiter's start, in ns (decimal string): the trace's time origin. */
  readonly originNs: string;
  /** What the worker sends of its events for the trace (model/trace.ts `TraceScope`); null: no trace. */
  readonly trace: TraceScope | null;
}

/** A worker's identity, given to a spare when it becomes that worker. */
export interface WorkerIdentity {
  readonly id: WorkerId;
  readonly n: number;
  /** This worker's max-requests, jitter already drawn; 0 = unlimited. */
  readonly maxRequests: number;
}

export type WorkerSpec = SpareSpec & WorkerIdentity;

export const WORKER_SPEC_ENV = 'QUIESCE_WORKER';

export type WorkerMessage =
  /**
   * Its signal handlers are installed (before the app loads, as gunicorn's init_signals comes before
   * load_wsgi): a TERM or INT from now on is the worker's, taken as it boots, not Node's default death.
   */
  | { readonly kind: 'signals-ready' }
  /** The app is loaded and the machines compiled: the spare can become a worker at once. */
  | { readonly kind: 'spare-ready' }
  | { readonly kind: 'ready' }
  | { readonly kind: 'heartbeat' }
  /**
   * Trace events, in order. In a lifecycle trace, with the worker's actors as they stand after them
   * (`actors`): the arbiter has no connection events to follow the worker by, and writes the end of a
   * worker that dies without a word from these (see `WorkerShadow.restored`).
   */
  | { readonly kind: 'events'; readonly events: readonly TraceEvent[]; readonly actors?: readonly ActorSnapshot[] }
  | { readonly kind: 'released-listener' }
  /** Below worker-connections again: send a copy of the listening socket to accept on. */
  | { readonly kind: 'listener-request' }
  | { readonly kind: 'boot-error'; readonly message: string }
  /** An uncaught error is about to end the process (it exits with WORKER_CRASH). */
  | { readonly kind: 'crash'; readonly message: string }
  /** The last message before exit: everything before it has been delivered. */
  | { readonly kind: 'bye' };

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  return typeof value === 'object' && value !== null && typeof (value as { kind?: unknown }).kind === 'string';
}

/**
 * From the arbiter, each with a copy of the listening socket. `activate` makes a spare the worker
 * `identity` and carries the copy it accepts on; `held-copy` (right after) carries the copy it only
 * holds: Node cannot stop accepting on a socket except by closing it, but gunicorn's workers stop
 * accepting when they drain and still hold their copy until they exit (sync, gthread 24+) — closing
 * the first while keeping the second is exactly that. `listener-copy` answers a listener-request.
 */
export type ArbiterMessage =
  | { readonly kind: 'activate'; readonly identity: WorkerIdentity }
  | { readonly kind: 'held-copy' }
  | { readonly kind: 'listener-copy' };

export function isArbiterMessage(value: unknown): value is ArbiterMessage {
  const kind = typeof value === 'object' && value !== null ? (value as { kind?: unknown }).kind : undefined;
  return kind === 'activate' || kind === 'held-copy' || kind === 'listener-copy';
}

/** A copy of the listening socket as it arrives over IPC: a native handle to listen on, or to hold and close. */
export interface SocketHandle {
  close(): void;
}

/** gunicorn's exit code for a worker that could not boot (arbiter.py WORKER_BOOT_ERROR). */
export const WORKER_BOOT_ERROR = 3;
/** A worker that died of an uncaught error (sysexits EX_SOFTWARE). */
export const WORKER_CRASH = 70;
