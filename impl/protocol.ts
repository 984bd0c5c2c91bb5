/**
 * What the arbiter and its workers tell each other over the IPC channel.
 * Signals travel as real signals; this channel carries what a signal cannot:
 * the worker's configuration, its heartbeat, its trace events, and the news
 * that it released its copy of the listening socket.
 */
import type { TraceEvent, WorkerId } from '../model/events.ts';
import type { ServerParams } from '../model/params.ts';
import type { ParserLimits } from './http.ts';

/** Passed to a worker in the QUIESCE_WORKER environment variable. */
export interface WorkerSpec {
  readonly id: WorkerId;
  readonly n: number;
  readonly policy: string;
  readonly params: ServerParams;
  /** This worker's max-requests, jitter already drawn; 0 = unlimited. */
  readonly maxRequests: number;
  readonly app: string;
  readonly cwd: string;
  readonly counterLog: string;
  readonly limits: ParserLimits;
  /** CLOCK_MONOTONIC at the arbiter's start, in ns (decimal string): the trace's time origin. */
  readonly originNs: string;
  readonly trace: boolean;
}

/**
 * The listening socket reaches a worker twice: fd 4, on which it accepts, and
 * fd 5, which it only holds. Node cannot stop accepting on a socket it
 * listens on except by closing it, but gunicorn's workers stop accepting when
 * they drain and still hold their copy until they exit (sync, gthread 24+);
 * closing fd 4 while keeping fd 5 is exactly that.
 */
export const LISTENER_FD = 4;
export const HELD_LISTENER_FD = 5;

export const WORKER_SPEC_ENV = 'QUIESCE_WORKER';

export type WorkerMessage =
  | { readonly kind: 'ready' }
  | { readonly kind: 'heartbeat' }
  | { readonly kind: 'events'; readonly events: readonly TraceEvent[] }
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

/** From the arbiter: a copy of the listening socket comes with this message. */
export interface ListenerCopyMessage {
  readonly kind: 'listener-copy';
}

export function isListenerCopy(value: unknown): value is ListenerCopyMessage {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'listener-copy';
}

/** gunicorn's exit code for a worker that could not boot (arbiter.py WORKER_BOOT_ERROR). */
export const WORKER_BOOT_ERROR = 3;
/** A worker that died of an uncaught error (sysexits EX_SOFTWARE). */
export const WORKER_CRASH = 70;
