/**
 * The machines under a policy: one chart per actor kind, with the policy's
 * decisions and the server parameters' timers provided. Every policy yields
 * the same charts (same states, same transitions) — only guards and delays
 * differ, which is what makes policies comparable.
 */
import type { AnyStateMachine } from 'xstate';
import type { ActorKind } from '../events.ts';
import type { ServerParams } from '../params.ts';
import type { PolicySpec } from '../policies.ts';
import { compileMachine } from '../compile.ts';
import { xstateRuntime, type MachineRuntime } from '../step.ts';
import { arbiterChart, countSilence, type ArbiterContext } from './arbiter.ts';
import { clientChart, type ClientContext } from './client.ts';
import { connectionChart, type ConnContext } from './connection.ts';
import { listenerChart, type ListenerContext } from './listener.ts';
import { workerChart, type WorkerContext } from './worker.ts';

export { arbiterChart, clientChart, connectionChart, listenerChart, workerChart };

export interface PolicyMachines {
  readonly arbiter: ReturnType<typeof arbiterFor>;
  readonly listener: typeof listenerChart;
  readonly worker: ReturnType<typeof workerFor>;
  readonly conn: ReturnType<typeof connectionFor>;
  readonly client: typeof clientChart;
}

/** Does this response have to say `Connection: close`? The one rule every policy's header decision comes from. */
export function responseMustClose(policy: PolicySpec, params: ServerParams, context: ConnContext): boolean {
  if (!policy.keepAlive || params.keepAliveMs === 0) return true;
  // The client asked to close (or the request could not be parsed): every policy honours that.
  if (context.requestKeepAlive === false) return true;
  if (!policy.forceCloseWhileDraining) return false;
  const draining = policy.closeDecision === 'handler-start' ? context.drainingAtHandlerStart : context.draining;
  // A request pipelined behind this one is here already (unread): it is answered, and closes instead.
  if (draining && policy.servesPipelinedOnDrain && context.unread) return false;
  return draining;
}

function connectionFor(policy: PolicySpec, params: ServerParams) {
  return connectionChart.provide({
    guards: {
      closeHeaderIsCorrect: ({ context, event }) =>
        event.type === 'conn.respond' && event.close === responseMustClose(policy, params, context),
      closesAfterKeepAliveResponseWhileDraining: () => policy.closeAfterKeepAliveResponseWhileDraining,
      idleClosesOnDrain: () => policy.idleOnDrain === 'close',
      idleOrphanedOnDrain: () => policy.idleOnDrain === 'orphan',
      // With keep-alive off there is no keep-alive timer to wait out: gevent serves the one request (base_async: keepalive 0 → one request).
      idleKeptOnDrain: () => policy.idleOnDrain === 'keep' || (policy.idleOnDrain === 'keepalive-timer' && params.keepAliveMs === 0),
      idleKeepsKeepAliveTimerOnDrain: () => policy.idleOnDrain === 'keepalive-timer' && params.keepAliveMs > 0,
      idleGracedOnDrain: () => policy.idleOnDrain === 'grace',
      // A request waiting unread is as abandoned as an idle connection when the policy orphans —
      // unless it is a first request a pool thread is already blocked reading.
      // With a last loop turn, a request already there was readable in that turn's poll: it is served.
      // Where a poller hands requests over (gthread), one in `pending` is a thread's already: the pool serves it.
      pendingOrphanedOnDrain: ({ context }) =>
        policy.idleOnDrain === 'orphan' && !policy.poolRunsSubmitted && !policy.lastLoopTurn && !(policy.acceptHandsToThread && context.responses === 0),
      // The worker leaves — its drain done, its own graceful timeout (which ends only gthread's
      // `futures.wait`), or QUIT: what the pool was given still runs, until a KILL ends it all.
      poolRunsItOnExit: ({ event }) =>
        policy.poolRunsSubmitted && event.type === 'conn.abort' && (event.reason === 'worker-exit' || event.reason === 'quit' || event.reason === 'deadline'),
      // A kept-alive connection is in the poller; so is a fresh one unless accepts hand it to a thread.
      waitsForPoller: ({ context }) => policy.pollerDispatch && (context.responses > 0 || !policy.acceptHandsToThread),
      // Every answered connection of a poller's pool goes back through the thread's done callback.
      returnsToPoller: () => policy.pollerDispatch,
      waitsOutLastTurn: () => policy.lastLoopTurn,
      freshHeldByThread: () => policy.acceptHandsToThread,
      lingers: () => policy.lingeringClose,
      keepAliveEnabled: () => policy.keepAlive && params.keepAliveMs > 0,
      hasHeaderTimer: () => params.headerTimeoutMs > 0,
    },
    delays: {
      keepAlive: params.keepAliveMs,
      idleGrace: params.idleGraceMs,
      linger: params.lingerMs,
      headerTimeout: params.headerTimeoutMs,
    },
  });
}

/** Inclusive bounds of a worker's max-requests limit: maxRequests + uniform(0..jitter). */
export function maxRequestsBounds(params: ServerParams): { min: number; max: number } {
  return { min: params.maxRequests, max: params.maxRequests + params.maxRequestsJitter };
}

function drainComplete(policy: PolicySpec, context: WorkerContext): boolean {
  if (context.busy > 0) return false;
  if (policy.listenerClose === 'at-drain' && context.holdsListener) return false;
  // A connection that has not started a request yet holds a pool thread when accepts hand over at once:
  // the worker waits for it (gthread 20.x `futures.wait`) like a request in progress.
  if (policy.acceptHandsToThread && context.openConns.some((c) => !context.startedConns.includes(c))) return false;
  return policy.exitAbandonsIdle || context.openConns.length === 0;
}

/** Requests a worker serves at once: one for single-threaded policies (the sync worker), else `threads`. */
export function threadsOf(policy: PolicySpec, params: ServerParams): number {
  return policy.singleThreaded ? 1 : params.threads;
}

function workerFor(policy: PolicySpec, params: ServerParams) {
  const bounds = maxRequestsBounds(params);
  const threads = threadsOf(policy, params);
  return workerChart.provide({
    guards: {
      // The worker's own limit when its boot said it; otherwise any count within the parameters' bounds.
      reachedMaxRequests: ({ context }) =>
        context.maxRequests !== null
          ? context.maxRequests > 0 && context.requests >= context.maxRequests
          : params.maxRequests > 0 && context.requests >= bounds.min && context.requests <= bounds.max,
      hasFreeThread: ({ context }) => context.busy < threads,
      // The sync worker accepts only when it can serve at once; threaded workers hold up to worker_connections.
      hasRoomForConn: ({ context }) =>
        policy.singleThreaded ? context.busy === 0 && context.openConns.length === 0 : context.openConns.length < params.workerConnections,
      heartbeatsNow: ({ context }) => !policy.singleThreaded || context.busy === 0,
      acceptsAfterDrain: () => policy.acceptAfterDrain,
      heartbeatsWhileDraining: () => policy.heartbeatWhileDraining,
      drainComplete: ({ context }) => drainComplete(policy, context),
      closesListenerAtDrain: () => policy.listenerClose === 'at-drain',
      servesLastLoopTurn: () => policy.lastLoopTurn,
      poolRunsSubmitted: () => policy.poolRunsSubmitted,
    },
    delays: { gracefulTimeout: params.gracefulTimeoutMs, selectTimeout: params.selectTimeoutMs },
  });
}

function arbiterFor(policy: PolicySpec, params: ServerParams) {
  return arbiterChart.provide({
    guards: { fastStopEscalates: () => policy.fastStopEscalates, retiresWhenReplaced: () => policy.reloadRetires === 'when-replaced' },
    actions: { countSilence: countSilence(params.timeoutMs, params.arbiterTickMs) },
    delays: { gracefulTimeout: params.gracefulTimeoutMs, tick: params.arbiterTickMs },
  });
}

export function machinesFor(policy: PolicySpec, params: ServerParams): PolicyMachines {
  return {
    arbiter: arbiterFor(policy, params),
    listener: listenerChart,
    worker: workerFor(policy, params),
    conn: connectionFor(policy, params),
    client: clientChart,
  };
}

export function machineFor(machines: PolicyMachines, kind: ActorKind): AnyStateMachine {
  return machines[kind] as AnyStateMachine;
}

/** The unprovided charts, for diagrams and structural checks. */
export const CHARTS: Record<ActorKind, AnyStateMachine> = {
  arbiter: arbiterChart,
  listener: listenerChart,
  worker: workerChart,
  conn: connectionChart,
  client: clientChart,
};

/** The charts as runtimes an engine steps, typed by actor kind. */
export interface Runtimes {
  readonly policy: PolicySpec;
  readonly params: ServerParams;
  readonly arbiter: MachineRuntime<ArbiterContext>;
  readonly listener: MachineRuntime<ListenerContext>;
  readonly worker: MachineRuntime<WorkerContext>;
  readonly conn: MachineRuntime<ConnContext>;
  readonly client: MachineRuntime<ClientContext>;
}

/**
 * Which form executes the machines: the compiled form (model/compile.ts, tested equivalent) everywhere
 * by default, or XState's own interpreter — the reference.
 */
export type MachineEngine = 'compiled' | 'xstate';

const compiledCache = new Map<string, Runtimes>();

export function runtimesFor(policy: PolicySpec, params: ServerParams, engine: MachineEngine = 'compiled'): Runtimes {
  // Keyed by the whole spec, not its name: a variant under an existing name (a test's seeded bug) is other machines.
  const key = engine === 'compiled' ? `${JSON.stringify(policy)} ${JSON.stringify(params)}` : null;
  const cached = key === null ? undefined : compiledCache.get(key);
  if (cached) return cached;
  const runtimes = runtimesOf(policy, params, machinesFor(policy, params), engine);
  if (key !== null) {
    // A run compiles its machines once; a check of many worlds reuses them (a few hundred entries at most).
    if (compiledCache.size > 512) compiledCache.clear();
    compiledCache.set(key, runtimes);
  }
  return runtimes;
}

/** Runtimes from given machines (a test's seeded bug: the policy's machines with one guard changed). Not cached. */
export function runtimesOf(policy: PolicySpec, params: ServerParams, machines: PolicyMachines, engine: MachineEngine = 'compiled'): Runtimes {
  const form = engine === 'compiled' ? compileMachine : xstateRuntime;
  return {
    policy,
    params,
    arbiter: form<ArbiterContext>(machines.arbiter),
    listener: form<ListenerContext>(machines.listener),
    worker: form<WorkerContext>(machines.worker),
    conn: form<ConnContext>(machines.conn),
    client: form<ClientContext>(machines.client),
  };
}

export function runtimeFor(runtimes: Runtimes, kind: ActorKind): MachineRuntime {
  return runtimes[kind] as MachineRuntime;
}
