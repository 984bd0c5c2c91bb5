/**
 * What "correct" means, as functions over a trace. Each property has a name,
 * a one-line statement, the race window it is about (a reachability
 * condition: a check that never reached its window has checked nothing), and
 * the policies expected to satisfy it. The replay checker enforces a
 * property for the policies that promise it; the simulator's `check` also
 * hunts counterexamples for the policies that do not.
 */
import { match, P } from 'ts-pattern';
import { connWorker, type ConnId, type TraceEvent, type WorkerId } from './events.ts';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from './params.ts';
import { getPolicy, type PolicySpec } from './policies.ts';
import { threadsOf } from './machines/index.ts';
import type { Trace } from './trace.ts';
import type { MachineView } from './view.ts';

/** Reachability conditions: the interesting interleavings a run can hit. */
export const RACE_WINDOWS = {
  'drain-with-request-in-flight': 'a worker began draining while one of its connections was serving a request',
  'drain-with-idle-keepalive': 'a worker began draining while holding an idle keep-alive connection',
  'request-crossed-close': 'request bytes reached a connection after the server had closed (or half-closed) it',
  'request-on-draining-worker': 'request bytes reached a connection whose worker was draining',
  'backlog-overflow': 'a connection found the accept queue full',
  'queued-at-last-close': 'a connection was still in the accept queue when the last listener copy closed',
  'graceful-deadline': "a worker's graceful deadline passed with connections open",
  'connect-during-drain': 'a connection reached the listening socket, or a worker, while a worker was draining',
  'drain-outlasting-heartbeat': 'a worker stayed draining for longer than two heartbeat intervals',
} as const;
export type RaceWindow = keyof typeof RACE_WINDOWS;

export interface Violation {
  /** Index into trace.events of the event that broke the property. */
  readonly index: number;
  readonly message: string;
}

export interface PropertyResult {
  readonly holds: boolean;
  readonly violation?: Violation;
}

export interface Property {
  readonly name: string;
  readonly statement: string;
  readonly windows: readonly RaceWindow[];
  readonly expectedBy: (policy: PolicySpec) => boolean;
  readonly check: (trace: Trace, view: MachineView) => PropertyResult;
}

const HOLDS: PropertyResult = { holds: true };
const broken = (index: number, message: string): PropertyResult => ({ holds: false, violation: { index, message } });

/** Times are floating-point sums of latencies; a difference this small is no difference. */
const EPSILON_MS = 1e-6;

const processedRequestsAnswered: Property = {
  name: 'processed-requests-answered',
  statement: 'No request whose handler ran is lost to a connection close: the client reads its response (unless the graceful deadline or a kill cut the handler short).',
  windows: ['drain-with-request-in-flight'],
  expectedBy: (p) => p.lingeringClose,
  check(trace) {
    const processed = new Set<string>();
    const cutShort = new Set<string>();
    const running = new Map<ConnId, string>();
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'conn.handler-start') {
        processed.add(e.req);
        running.set(e.actor, e.req);
      } else if (e.type === 'conn.respond') {
        running.delete(e.actor);
      } else if (e.type === 'conn.abort' && e.reason !== 'worker-exit') {
        // The deadline, a kill, a fast stop, a crash: the operator's bound or a fault, not the policy's choice.
        const req = running.get(e.actor);
        if (req !== undefined) cutShort.add(req);
      } else if (e.type === 'client.fail' && e.req !== undefined && (e.reason === 'reset' || e.reason === 'empty-reply')) {
        if (processed.has(e.req) && !cutShort.has(e.req)) {
          return broken(i, `request ${e.req} was processed by the server but ${e.actor} got ${e.reason} instead of its response`);
        }
      }
    }
    return HOLDS;
  },
};

const noAcceptAfterDrain: Property = {
  name: 'no-accept-after-drain',
  statement: 'A worker that has begun draining accepts no new connection.',
  windows: ['connect-during-drain'],
  expectedBy: (p) => !p.acceptAfterDrain,
  check(trace, view) {
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'worker.accept' && view.hasBegunDraining(e.actor, i)) {
        return broken(i, `${e.actor} accepted ${e.conn} after it had begun draining`);
      }
    }
    return HOLDS;
  },
};

function drainingWorkerHeartbeats(params: ServerParams): Property['check'] {
  // Allow one missed beat: a loop turn may straddle the drain's start.
  const maxGapMs = 2 * params.heartbeatIntervalMs;
  return (trace, view) => {
    const lastBeat = new Map<WorkerId, number>();
    let late: PropertyResult | undefined;
    view.walk(trace.events.length, (i, draining) => {
      if (late) return;
      const e = trace.events[i]!;
      for (const worker of draining) {
        // Silent since its last beat, or since the drain began if it never beat before.
        const last = lastBeat.get(worker) ?? view.drain(worker)!.startMs;
        if (e.t - last > maxGapMs) {
          late = broken(i, `${worker} was draining and silent for ${e.t - last} ms (more than ${maxGapMs} ms): the arbiter cannot tell it from a hung worker`);
          return;
        }
      }
      if (e.type === 'worker.heartbeat') lastBeat.set(e.actor, e.t);
    });
    return late ?? HOLDS;
  };
}

function exitByDeadline(params: ServerParams): Property['check'] {
  // The arbiter checks its deadline once per loop turn.
  const toleranceMs = params.heartbeatIntervalMs;
  return (trace, view) => {
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (!e.actor.startsWith('worker/')) continue;
      const start = view.drain(e.actor as WorkerId)?.startMs;
      if (start !== undefined && e.t > start + params.gracefulTimeoutMs + toleranceMs + EPSILON_MS) {
        return broken(i, `${e.actor} is still running ${e.t - start} ms after it began draining; the graceful timeout is ${params.gracefulTimeoutMs} ms`);
      }
    }
    return HOLDS;
  };
}

const closeWhileDraining: Property = {
  name: 'close-while-draining',
  statement: 'Every response written by a draining worker carries Connection: close.',
  windows: ['drain-with-request-in-flight'],
  expectedBy: (p) => !p.keepAlive || (p.forceCloseWhileDraining && p.closeDecision === 'respond'),
  check(trace, view) {
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'conn.respond' && !e.close && view.hasBegunDraining(connWorker(e.actor), i)) {
        return broken(i, `${e.actor} answered ${e.req} with keep-alive although ${connWorker(e.actor)} was draining`);
      }
    }
    return HOLDS;
  },
};

function idleCloseAfterWindow(params: ServerParams): Property['check'] {
  const windowMs = Math.min(params.idleGraceMs, params.keepAliveMs);
  return (trace) => {
    // When each connection last became idle after a keep-alive response; absent while busy.
    const idleSince = new Map<ConnId, number>();
    const aborted = new Set<ConnId>();
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'conn.respond') {
        if (e.close) idleSince.delete(e.actor);
        else idleSince.set(e.actor, e.t);
      } else if (e.type === 'conn.bytes' || e.type === 'conn.peer-fin' || e.type === 'conn.peer-rst') {
        idleSince.delete(e.actor);
      } else if (e.type === 'conn.abort') {
        // The deadline and a kill are the operator's bounds, not the policy's choice.
        if (e.reason !== 'worker-exit') aborted.add(e.actor);
      } else if ((e.type === 'conn.half-close' || e.type === 'conn.close') && !aborted.has(e.actor)) {
        const since = idleSince.get(e.actor);
        if (since !== undefined && e.t - since < windowMs - EPSILON_MS) {
          return broken(i, `${e.actor} was closed by the server ${e.t - since} ms after a keep-alive response, inside the ${windowMs} ms a client may take to send its next request`);
        }
        idleSince.delete(e.actor);
      }
    }
    return HOLDS;
  };
}

const noResetOfUnreadRequest: Property = {
  name: 'no-reset-of-unread-request',
  statement: 'The server never closes a connection on request bytes it has not read (which sends RST), except at the graceful deadline or a kill.',
  windows: ['request-on-draining-worker', 'drain-with-idle-keepalive'],
  expectedBy: (p) => p.lingeringClose && p.idleOnDrain !== 'orphan',
  check(trace) {
    const aborted = new Set<ConnId>();
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'conn.abort' && e.reason !== 'worker-exit') aborted.add(e.actor);
      if (e.type === 'conn.close' && e.rst && !aborted.has(e.actor)) {
        return broken(i, `${e.actor} was closed with unread request bytes: the client gets RST`);
      }
    }
    return HOLDS;
  },
};

/**
 * Stale: request bytes that sit unread on a draining worker's connection while
 * the worker has a free thread to read them. Waiting for a busy thread is
 * queueing, not staleness, and is not counted.
 */
function noStaleRequest(params: ServerParams): Property['check'] {
  const staleMs = Math.max(params.idleGraceMs, params.heartbeatIntervalMs);
  return (trace, view) => {
    const threads = threadsOf(getPolicy(trace.header.policy), params);
    const busy = new Map<WorkerId, number>();
    /** Per unread connection: unread-with-a-free-thread time so far, and since when it is accruing. */
    const waits = new Map<ConnId, { waitedMs: number; accruingSince: number | null; arrivedIndex: number }>();
    const lingering = new Set<ConnId>();
    const hasFreeThread = (worker: WorkerId) => (busy.get(worker) ?? 0) < threads;
    const settle = (conn: ConnId, t: number) => {
      const w = waits.get(conn);
      if (w && w.accruingSince !== null) {
        w.waitedMs += t - w.accruingSince;
        w.accruingSince = null;
      }
    };
    const resume = (conn: ConnId, t: number) => {
      const w = waits.get(conn);
      if (w && w.accruingSince === null && hasFreeThread(connWorker(conn))) w.accruingSince = t;
    };
    const stale = (i: number, conn: ConnId, t: number): PropertyResult | undefined => {
      settle(conn, t);
      const w = waits.get(conn);
      if (w && w.waitedMs > staleMs + EPSILON_MS && view.hasBegunDraining(connWorker(conn), w.arrivedIndex)) {
        return broken(i, `a request waited unread on ${conn} for ${w.waitedMs.toFixed(1)} ms while ${connWorker(conn)} drained with a thread free to read it (a stale keep-alive socket)`);
      }
      return undefined;
    };
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'worker.request-start' || e.type === 'worker.request-end') {
        busy.set(e.actor, (busy.get(e.actor) ?? 0) + (e.type === 'worker.request-start' ? 1 : -1));
        for (const conn of waits.keys()) {
          if (connWorker(conn) !== e.actor) continue;
          if (hasFreeThread(e.actor)) resume(conn, e.t);
          else settle(conn, e.t);
        }
      }
      if (e.type === 'conn.half-close') lingering.add(e.actor);
      if (e.type === 'conn.bytes' && !lingering.has(e.actor) && !waits.has(e.actor)) {
        waits.set(e.actor, { waitedMs: 0, accruingSince: null, arrivedIndex: i });
        resume(e.actor, e.t);
      }
      if (e.type === 'conn.read') waits.delete(e.actor);
      if (e.type === 'conn.close' || e.type === 'conn.abort') {
        const late = stale(i, e.actor, e.t);
        if (late) return late;
        waits.delete(e.actor);
      }
    }
    const end = trace.events.length - 1;
    const lastT = trace.events[end]?.t ?? 0;
    for (const conn of [...waits.keys()]) {
      const late = stale(end, conn, lastT);
      if (late) return late;
    }
    return HOLDS;
  };
}

const failuresAreExplained: Property = {
  name: 'only-unavoidable-failures',
  statement:
    'Every request that fails was never processed and crossed a close in flight: sent on an idle connection the server was closing, or queued when the last listener copy closed (retryable, RFC 9112 §9.3.1).',
  windows: ['request-crossed-close', 'queued-at-last-close'],
  expectedBy: (p) => p.lingeringClose && p.idleOnDrain !== 'orphan' && p.idleOnDrain !== 'keep',
  check(trace) {
    const clientOfConn = new Map<ConnId, string>();
    const closing = new Set<ConnId>();
    /** Requests whose bytes reached a connection that was open and reading — the server had them and dropped them. */
    const arrivedOpen = new Set<string>();
    const processed = new Set<string>();
    /** Clients whose connection the graceful deadline or a kill cut: the operator's bound, not the policy. */
    const cutByBound = new Set<string>();
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'conn.open') clientOfConn.set(e.actor, e.client);
      else if (e.type === 'conn.half-close' || e.type === 'conn.close') closing.add(e.actor);
      else if (e.type === 'conn.bytes' && !closing.has(e.actor)) arrivedOpen.add(e.req);
      else if (e.type === 'conn.handler-start') processed.add(e.req);
      else if (e.type === 'conn.abort' && e.reason !== 'worker-exit') {
        const client = clientOfConn.get(e.actor);
        if (client !== undefined) cutByBound.add(client);
      } else if (e.type === 'client.fail' && (e.reason === 'reset' || e.reason === 'empty-reply') && !cutByBound.has(e.actor)) {
        if (e.req !== undefined && processed.has(e.req)) {
          return broken(i, `${e.actor} lost request ${e.req} (${e.reason}) after the server processed it`);
        }
        if (e.req !== undefined && arrivedOpen.has(e.req)) {
          return broken(i, `${e.actor} got ${e.reason} for ${e.req}, which had reached an open connection and was dropped unread`);
        }
      }
    }
    return HOLDS;
  },
};

const backlogArithmetic: Property = {
  name: 'backlog-arithmetic',
  statement: 'A connection overflows the accept queue exactly when min(backlog, somaxconn) + 1 connections are already waiting.',
  windows: ['backlog-overflow'],
  expectedBy: () => true,
  check(trace) {
    let capacity = 0;
    let queued = 0;
    for (let i = 0; i < trace.events.length; i++) {
      const e = trace.events[i]!;
      if (e.type === 'listener.open') capacity = Math.min(e.backlog, e.somaxconn) + 1;
      else if (e.type === 'listener.syn') {
        if (queued >= capacity) return broken(i, `${e.client} entered an accept queue already holding ${queued} of ${capacity}`);
        queued++;
      } else if (e.type === 'listener.overflow') {
        if (queued < capacity) return broken(i, `${e.client} overflowed an accept queue holding only ${queued} of ${capacity}`);
      } else if (e.type === 'listener.accept' || e.type === 'listener.reset') queued--;
    }
    return HOLDS;
  },
};

/** The properties for a run with these parameters (some bounds are parameters: the graceful timeout, the idle window). */
export function propertiesFor(params: ServerParams): Property[] {
  return [
    processedRequestsAnswered,
    noAcceptAfterDrain,
    {
      name: 'draining-worker-heartbeats',
      statement: 'A draining worker keeps notifying the arbiter, at least every two heartbeat intervals, until it exits.',
      windows: ['drain-outlasting-heartbeat'],
      // The sync worker's loop notifies between requests only: a long request leaves it silent (gunicorn, draining or not).
      expectedBy: (p) => p.heartbeatWhileDraining && !p.singleThreaded,
      check: drainingWorkerHeartbeats(params),
    },
    {
      name: 'exit-by-deadline',
      statement: 'A worker that begins draining exits no later than the graceful timeout (plus one arbiter tick).',
      windows: ['graceful-deadline'],
      expectedBy: () => true,
      check: exitByDeadline(params),
    },
    closeWhileDraining,
    {
      name: 'idle-close-after-window',
      statement: 'The server closes an idle keep-alive connection only after the client had the idle window (min of idle grace and keep-alive timeout) to send its next request.',
      windows: ['drain-with-idle-keepalive'],
      expectedBy: (p) =>
        p.idleOnDrain !== 'close' && !(p.idleOnDrain === 'orphan' && p.exitAbandonsIdle) && !p.closeAfterKeepAliveResponseWhileDraining,
      check: idleCloseAfterWindow(params),
    },
    noResetOfUnreadRequest,
    {
      name: 'no-stale-request',
      statement: 'A request that reaches a draining worker is read, or its connection closed, within the idle window: no stale keep-alive socket hangs it.',
      windows: ['request-on-draining-worker', 'drain-with-idle-keepalive'],
      // The sync worker keeps no connection alive: there is no socket to go stale.
      expectedBy: (p) => p.keepAlive && p.idleOnDrain !== 'orphan',
      check: noStaleRequest(params),
    },
    failuresAreExplained,
    backlogArithmetic,
  ];
}

export const PROPERTY_NAMES: readonly string[] = propertiesFor(DEFAULT_SERVER_PARAMS).map((p) => p.name);

/** How often each race window was reached in a trace. */
export function windowHits(trace: Trace, view: MachineView): Record<RaceWindow, number> {
  const hits = Object.fromEntries(Object.keys(RACE_WINDOWS).map((w) => [w, 0])) as Record<RaceWindow, number>;
  const busy = new Map<ConnId, boolean>();
  const idleKeptAlive = new Set<ConnId>();
  const closed = new Set<ConnId>();
  const lastT = trace.events.at(-1)?.t ?? 0;
  for (const worker of view.drainingWorkers()) {
    const span = view.drain(worker)!;
    // One missed beat is allowed (draining-worker-heartbeats): a longer drain is where silence would show.
    if ((span.endMs ?? lastT) - span.startMs > 2 * trace.header.params.heartbeatIntervalMs) hits['drain-outlasting-heartbeat']++;
  }
  view.walk(trace.events.length, (i, draining) => {
    const e = trace.events[i]!;
    for (const worker of view.drainsStartingAt(i)) {
      for (const [conn, isBusy] of busy) {
        if (connWorker(conn) === worker && !closed.has(conn) && isBusy) hits['drain-with-request-in-flight']++;
      }
      for (const conn of idleKeptAlive) if (connWorker(conn) === worker) hits['drain-with-idle-keepalive']++;
    }
    match(e)
      .with({ type: 'conn.read' }, (e) => {
        busy.set(e.actor, true);
        idleKeptAlive.delete(e.actor);
      })
      .with({ type: 'conn.respond' }, (e) => {
        busy.set(e.actor, false);
        if (!e.close) idleKeptAlive.add(e.actor);
      })
      .with({ type: P.union('conn.half-close', 'conn.close') }, (e) => {
        closed.add(e.actor);
        idleKeptAlive.delete(e.actor);
      })
      .with({ type: 'conn.bytes' }, (e) => {
        if (closed.has(e.actor)) hits['request-crossed-close']++;
        if (view.hasBegunDraining(connWorker(e.actor), i)) hits['request-on-draining-worker']++;
        idleKeptAlive.delete(e.actor);
      })
      .with({ type: P.union('listener.syn', 'conn.open') }, () => {
        if (draining.size > 0) hits['connect-during-drain']++;
      })
      .with({ type: 'listener.overflow' }, () => void hits['backlog-overflow']++)
      .with({ type: 'listener.reset' }, () => void hits['queued-at-last-close']++)
      .with({ type: 'worker.graceful-timeout' }, () => void hits['graceful-deadline']++)
      // Every other event leaves the windows as they are.
      .otherwise(() => {});
  });
  return hits;
}
