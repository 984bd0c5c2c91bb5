/**
 * What the simulated platform schedules, as data. The network and the
 * server processes never schedule code: they schedule a `PlatformItem` (a
 * packet in flight, a worker's boot, a handler's end) on a `Wire`, and the
 * item comes back to them when it is due. Two wires exist: the simulator's
 * puts items on its time-ordered event queue; the explorer (proofs/) keeps
 * them as data in the world it snapshots, restores and branches. Every
 * random choice the platform makes goes through `Draw` for the same reason:
 * the simulator draws from its seeded PRNG, the explorer tries every value.
 */
import type { ClientFailure, ClientId, ConnId, WorkerId, WorkerSignal } from '../model/events.ts';
import type { Timer } from '../model/host.ts';
import type { Network } from './network.ts';
import type { SimulatedServer } from './server.ts';

export type PlatformItem =
  /** The client's SYN (or unix connect) reaches the listening socket. */
  | { readonly kind: 'syn'; readonly client: ClientId; readonly attempt: number }
  /** The handshake's answer reaches the client: it is connected (the connection waits in the accept queue). */
  | { readonly kind: 'syn-ack'; readonly client: ClientId }
  /** The client retransmits a SYN the full queue dropped. */
  | { readonly kind: 'syn-retry'; readonly client: ClientId; readonly attempt: number }
  /** The connect fails for the client (refused, or it gave up). */
  | { readonly kind: 'connect-fail'; readonly client: ClientId; readonly reason: ClientFailure }
  /** Request bytes reach the server's socket. */
  | { readonly kind: 'bytes'; readonly client: ClientId; readonly req: string; readonly partial?: true }
  /** The client's FIN reaches the server's socket. */
  | { readonly kind: 'client-fin'; readonly client: ClientId }
  /** The client's RST (an abortive close) reaches the server's socket. */
  | { readonly kind: 'client-rst'; readonly client: ClientId }
  /** A response reaches the client. */
  | { readonly kind: 'response'; readonly client: ClientId; readonly req: string; readonly close: boolean; readonly status: number }
  /** The server's FIN reaches the client. */
  | { readonly kind: 'server-fin'; readonly client: ClientId }
  /** An RST reaches the client. */
  | { readonly kind: 'rst'; readonly client: ClientId }
  /** The client's own timeout for its outstanding request. */
  | { readonly kind: 'request-timeout'; readonly client: ClientId; readonly req: string }
  /** The arbiter's fork of a worker the chart started, after the forks queued before it. */
  | { readonly kind: 'fork'; readonly worker: WorkerId }
  /** A worker process finished booting (its app imported). */
  | { readonly kind: 'boot'; readonly worker: WorkerId }
  /** A worker's loop turn notifies the arbiter. */
  | { readonly kind: 'heartbeat'; readonly worker: WorkerId }
  /** The arbiter's kill(2) reaches a worker process, after its earlier ones: its handler runs `handlerMs` later, when the process gets to it. */
  | { readonly kind: 'kill'; readonly worker: WorkerId; readonly signal: WorkerSignal; readonly handlerMs: number }
  /** A signal's handler runs in a worker process (or the kernel acts on KILL, STOP, CONT). */
  | { readonly kind: 'signal'; readonly worker: WorkerId; readonly signal: WorkerSignal }
  /** A worker process that exited its loop is gone: what its exit closes closes now. */
  | { readonly kind: 'teardown'; readonly worker: WorkerId }
  /** The arbiter reaps a worker process that ended gracefully (its SIGCHLD, once CPython's end is done). */
  | { readonly kind: 'reap'; readonly worker: WorkerId; readonly code: number }
  /** A worker finishes the loop turn in which it stopped accepting, and closes its listener copy. */
  | { readonly kind: 'release'; readonly worker: WorkerId }
  /** A worker's next loop turn: it takes what waits in the accept queue, if its machine lets it. */
  | { readonly kind: 'accept-turn'; readonly worker: WorkerId }
  /** A worker's loop turn that takes one queued connection (`ServerTiming.acceptTurnMs`). */
  | { readonly kind: 'accept-one'; readonly worker: WorkerId }
  /** A worker's loop stops handing over ahead of a reload's kill on its way (`WorkerProcess.stalls`). */
  | { readonly kind: 'stall'; readonly worker: WorkerId }
  /** A worker's loop returns from its poll with a readable connection, and hands it to a thread. */
  | { readonly kind: 'poll'; readonly worker: WorkerId; readonly conn: ConnId }
  /** The pool thread's done callback hands an answered connection back to the worker's poller (gthread: `finish_request`). */
  | { readonly kind: 'return'; readonly worker: WorkerId; readonly conn: ConnId }
  /** The thread that read a request gets to its handler. */
  | { readonly kind: 'pickup'; readonly worker: WorkerId; readonly conn: ConnId; readonly req: string }
  /** A handler finishes its request. */
  | { readonly kind: 'handler-done'; readonly worker: WorkerId; readonly conn: ConnId; readonly req: string };

export type PlatformItemKind = PlatformItem['kind'];
/** The items the network takes: they name a client's connection. */
export type NetworkItem = Extract<PlatformItem, { readonly client: ClientId }>;
/** The items a server process takes: they name a worker. */
export type ServerItem = Extract<PlatformItem, { readonly worker: WorkerId }>;

/**
 * One handler per kind of a union of items: a record type, so a kind left
 * out is a compile error (exhaustive, as `match(…).exhaustive()` is), but
 * built once. The simulator takes millions of items a second, and a ts-pattern
 * chain built per item was a quarter of its time.
 */
export type ItemHandlers<Item extends { readonly kind: string }, Target> = {
  readonly [Kind in Item['kind']]: (item: Extract<Item, { readonly kind: Kind }>, target: Target) => void;
};

/** Hand an item, and what it names (a link, a process), to its kind's handler. */
export function dispatchItem<Item extends { readonly kind: string }, Target>(handlers: ItemHandlers<Item, Target>, item: Item, target: Target): void {
  // The record's type pairs every kind with its handler; an index by a union kind cannot say so.
  (handlers[item.kind as Item['kind']] as (item: Item, target: Target) => void)(item, target);
}

/** Where the platform schedules its items. */
export interface Wire {
  /** Deliver `item` after `delayMs` (a packet in flight: never taken back). */
  after(delayMs: number, item: PlatformItem): void;
  /** The same, cancellable through the handle (a timer of the platform's). */
  at(delayMs: number, item: PlatformItem): Timer;
}

/** The platform's random choices: a seeded PRNG in the simulator, every value in turn in the explorer. */
export interface Draw {
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  /** A duration in [min, max] (the explorer takes whole milliseconds). */
  uniform(min: number, max: number): number;
  /** A fraction in [0, 1) (a max-requests jitter). */
  fraction(): number;
}

/** Hand a due item to its side: the network's name a client, the server's a worker. */
export function routeItem(item: PlatformItem, network: Network, server: SimulatedServer): void {
  if ('client' in item) network.arrive(item);
  else server.arrive(item);
}
