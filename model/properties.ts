/**
 * What "correct" means, as functions over a trace. Each property has a name,
 * a one-line statement, the race window it is about (a reachability
 * condition: a check that never reached its window has checked nothing), and
 * the policies expected to satisfy it. The replay checker enforces a
 * property for the policies that promise it; the simulator's `check` also
 * hunts counterexamples for the policies that do not.
 */
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
  'reload-while-serving': 'the arbiter was told to reload while a worker served',
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

/** What a monitor may ask of the machines, just after the event it is given. */
export interface MachinesNow {
  /** The worker's machine had entered `alive.draining` by this event (it may have left it since). */
  hasBegunDraining(worker: WorkerId): boolean;
  /** The workers in `alive.draining` just after this event. */
  draining(): Iterable<WorkerId>;
  /** When the worker's drain began, once it has. */
  drainStartMs(worker: WorkerId): number | undefined;
}

/**
 * A property as a monitor: it takes a run's events one at a time, with the machines' states beside
 * them, and says when one breaks the property. The replay checker and the simulator run it over a
 * trace (`check`); the explorer (proofs/) runs it along every interleaving, keys its visited states
 * with the monitor's state, and copies it where runs branch.
 */
export interface Monitor {
  /** Take the next event; a violation message, or null. */
  step(e: TraceEvent, machines: MachinesNow): string | null;
  /** The run ended (its last event at lastT): what is still pending may break the property. */
  end(lastT: number): string | null;
  /** The monitor's state, times as offsets from nowMs: equal keys judge every continuation alike. */
  key(nowMs: number): string;
  copy(): Monitor;
}

export interface Property {
  readonly name: string;
  readonly statement: string;
  readonly windows: readonly RaceWindow[];
  readonly expectedBy: (policy: PolicySpec) => boolean;
  /** A fresh monitor for a run under this policy. */
  readonly monitor: (policy: PolicySpec) => Monitor;
  /** The monitor run over a whole trace, the machines' drains read from the view. */
  readonly check: (trace: Trace, view: MachineView) => PropertyResult;
}

const HOLDS: PropertyResult = { holds: true };

/** Times are floating-point sums of latencies; a difference this small is no difference. */
const EPSILON_MS = 1e-6;

/** Run a monitor over a trace, asking the view what the machines were doing at each event. */
export function runMonitor(monitor: Monitor, trace: Trace, view: MachineView): PropertyResult {
  let at = 0;
  let current: ReadonlySet<WorkerId> = new Set();
  const machines: MachinesNow = {
    hasBegunDraining: (worker) => view.hasBegunDraining(worker, at),
    draining: () => current,
    drainStartMs: (worker) => (view.hasBegunDraining(worker, at) ? view.drain(worker)?.startMs : undefined),
  };
  let result: PropertyResult = HOLDS;
  view.walk(trace.events.length, (i, draining) => {
    if (!result.holds) return;
    at = i;
    current = draining;
    const message = monitor.step(trace.events[i]!, machines);
    if (message !== null) result = { holds: false, violation: { index: i, message } };
  });
  if (!result.holds) return result;
  const message = monitor.end(trace.events.at(-1)?.t ?? 0);
  return message === null ? HOLDS : { holds: false, violation: { index: Math.max(0, trace.events.length - 1), message } };
}

function property(spec: Omit<Property, 'check'>): Property {
  return { ...spec, check: (trace, view) => runMonitor(spec.monitor(getPolicy(trace.header.policy)), trace, view) };
}

const sorted = (values: Iterable<string>): string[] => [...values].sort();
const since = (nowMs: number, entries: Iterable<[string, number]>): string[] => [...entries].map(([k, t]) => `${k}@${nowMs - t}`).sort();

/** A monitor that keeps no state: each event is judged alone. */
function stateless(step: Monitor['step']): Monitor {
  const monitor: Monitor = { step, end: () => null, key: () => '', copy: () => monitor };
  return monitor;
}

class ProcessedRequestsAnswered implements Monitor {
  constructor(
    private readonly processed = new Set<string>(),
    private readonly cutShort = new Set<string>(),
    private readonly running = new Map<ConnId, string>(),
  ) {}

  step(e: TraceEvent): string | null {
    if (e.type === 'conn.handler-start') {
      this.processed.add(e.req);
      this.running.set(e.actor, e.req);
    } else if (e.type === 'conn.respond') {
      this.running.delete(e.actor);
    } else if (e.type === 'conn.abort' && e.reason !== 'worker-exit') {
      // The deadline, a kill, a fast stop, a crash: the operator's bound or a fault, not the policy's choice.
      const req = this.running.get(e.actor);
      if (req !== undefined) this.cutShort.add(req);
    } else if (e.type === 'client.fail' && e.req !== undefined && (e.reason === 'reset' || e.reason === 'empty-reply')) {
      if (this.processed.has(e.req) && !this.cutShort.has(e.req)) {
        return `request ${e.req} was processed by the server but ${e.actor} got ${e.reason} instead of its response`;
      }
    }
    return null;
  }

  end(): null {
    return null;
  }

  key(): string {
    return JSON.stringify([sorted(this.processed), sorted(this.cutShort), sorted([...this.running].map(([c, r]) => `${c}:${r}`))]);
  }

  copy(): Monitor {
    return new ProcessedRequestsAnswered(new Set(this.processed), new Set(this.cutShort), new Map(this.running));
  }
}

const processedRequestsAnswered = property({
  name: 'processed-requests-answered',
  statement: 'No request whose handler ran is lost to a connection close: the client reads its response (unless the graceful deadline or a kill cut the handler short).',
  windows: ['drain-with-request-in-flight'],
  expectedBy: (p) => p.lingeringClose,
  monitor: () => new ProcessedRequestsAnswered(),
});

const noAcceptAfterDrain = property({
  name: 'no-accept-after-drain',
  statement: 'A worker that has begun draining accepts no new connection.',
  windows: ['connect-during-drain'],
  // gthread 21–23's last-turn accept, and 20.x's last loop turn, both take one after alive = False.
  expectedBy: (p) => !p.acceptAfterDrain && !p.lastLoopTurn,
  monitor: () =>
    stateless((e, machines) => (e.type === 'worker.accept' && machines.hasBegunDraining(e.actor) ? `${e.actor} accepted ${e.conn} after it had begun draining` : null)),
});

class DrainingWorkerHeartbeats implements Monitor {
  constructor(
    private readonly maxGapMs: number,
    private readonly lastBeat = new Map<WorkerId, number>(),
  ) {}

  step(e: TraceEvent, machines: MachinesNow): string | null {
    for (const worker of machines.draining()) {
      // Silent since its last beat, or since the drain began if it never beat before.
      const last = this.lastBeat.get(worker) ?? machines.drainStartMs(worker)!;
      if (e.t - last > this.maxGapMs) {
        return `${worker} was draining and silent for ${e.t - last} ms (more than ${this.maxGapMs} ms): the arbiter cannot tell it from a hung worker`;
      }
    }
    if (e.type === 'worker.heartbeat') this.lastBeat.set(e.actor, e.t);
    return null;
  }

  end(): null {
    return null;
  }

  key(nowMs: number): string {
    return JSON.stringify(since(nowMs, this.lastBeat));
  }

  copy(): Monitor {
    return new DrainingWorkerHeartbeats(this.maxGapMs, new Map(this.lastBeat));
  }
}

function exitByDeadline(params: ServerParams): Monitor {
  // The arbiter checks its deadline once per loop turn.
  const toleranceMs = params.heartbeatIntervalMs;
  return stateless((e, machines) => {
    if (!e.actor.startsWith('worker/')) return null;
    const start = machines.drainStartMs(e.actor as WorkerId);
    if (start !== undefined && e.t > start + params.gracefulTimeoutMs + toleranceMs + EPSILON_MS) {
      return `${e.actor} is still running ${e.t - start} ms after it began draining; the graceful timeout is ${params.gracefulTimeoutMs} ms`;
    }
    return null;
  });
}

/** Connections on which a request waits behind the one being handled (pipelined bytes that came after its handler started). */
class CloseWhileDraining implements Monitor {
  constructor(
    private readonly handling = new Set<ConnId>(),
    private readonly behind = new Set<ConnId>(),
  ) {}

  step(e: TraceEvent, machines: MachinesNow): string | null {
    if (e.type === 'conn.handler-start') {
      this.handling.add(e.actor);
      this.behind.delete(e.actor);
    } else if (e.type === 'conn.bytes' && this.handling.has(e.actor)) this.behind.add(e.actor);
    else if (e.type === 'conn.respond' || e.type === 'conn.close') {
      const behind = this.behind.has(e.actor);
      this.handling.delete(e.actor);
      this.behind.delete(e.actor);
      if (e.type === 'conn.respond' && !e.close && !behind && machines.hasBegunDraining(connWorker(e.actor))) {
        return `${e.actor} answered ${e.req} with keep-alive although ${connWorker(e.actor)} was draining (and no request waited behind it)`;
      }
    }
    return null;
  }

  end(): null {
    return null;
  }

  key(): string {
    return JSON.stringify([sorted(this.handling), sorted(this.behind)]);
  }

  copy(): Monitor {
    return new CloseWhileDraining(new Set(this.handling), new Set(this.behind));
  }
}

const closeWhileDraining = property({
  name: 'close-while-draining',
  statement:
    'Every response written by a draining worker carries Connection: close — but for one with a request pipelined behind it, which is answered next (the last one closes).',
  windows: ['drain-with-request-in-flight'],
  expectedBy: (p) => !p.keepAlive || (p.forceCloseWhileDraining && p.closeDecision === 'respond'),
  monitor: () => new CloseWhileDraining(),
});

class IdleCloseAfterWindow implements Monitor {
  constructor(
    private readonly windowMs: number,
    /** When each connection last became idle after a keep-alive response; absent while busy. */
    private readonly idleSince = new Map<ConnId, number>(),
    private readonly aborted = new Set<ConnId>(),
    /** Connections whose client half-closed: it sends no next request, so there is no window to keep. */
    private readonly finned = new Set<ConnId>(),
  ) {}

  step(e: TraceEvent): string | null {
    if (e.type === 'conn.respond') {
      if (e.close || this.finned.has(e.actor)) this.idleSince.delete(e.actor);
      else this.idleSince.set(e.actor, e.t);
    } else if (e.type === 'conn.bytes' || e.type === 'conn.peer-fin' || e.type === 'conn.peer-rst') {
      this.idleSince.delete(e.actor);
      if (e.type === 'conn.peer-fin') this.finned.add(e.actor);
    } else if (e.type === 'conn.abort') {
      // The deadline and a kill are the operator's bounds, not the policy's choice.
      if (e.reason !== 'worker-exit') this.aborted.add(e.actor);
    } else if ((e.type === 'conn.half-close' || e.type === 'conn.close') && !this.aborted.has(e.actor)) {
      const idle = this.idleSince.get(e.actor);
      if (idle !== undefined && e.t - idle < this.windowMs - EPSILON_MS) {
        return `${e.actor} was closed by the server ${e.t - idle} ms after a keep-alive response, inside the ${this.windowMs} ms a client may take to send its next request`;
      }
      this.idleSince.delete(e.actor);
    }
    return null;
  }

  end(): null {
    return null;
  }

  key(nowMs: number): string {
    return JSON.stringify([since(nowMs, this.idleSince), sorted(this.aborted), sorted(this.finned)]);
  }

  copy(): Monitor {
    return new IdleCloseAfterWindow(this.windowMs, new Map(this.idleSince), new Set(this.aborted), new Set(this.finned));
  }
}

class NoResetOfUnreadRequest implements Monitor {
  constructor(private readonly aborted = new Set<ConnId>()) {}

  step(e: TraceEvent): string | null {
    if (e.type === 'conn.abort' && e.reason !== 'worker-exit') this.aborted.add(e.actor);
    if (e.type === 'conn.close' && e.rst && !this.aborted.has(e.actor)) return `${e.actor} was closed with unread request bytes: the client gets RST`;
    return null;
  }

  end(): null {
    return null;
  }

  key(): string {
    return JSON.stringify(sorted(this.aborted));
  }

  copy(): Monitor {
    return new NoResetOfUnreadRequest(new Set(this.aborted));
  }
}

const noResetOfUnreadRequest = property({
  name: 'no-reset-of-unread-request',
  statement: 'The server never closes a connection on request bytes it has not read (which sends RST), except at the graceful deadline or a kill.',
  windows: ['request-on-draining-worker', 'drain-with-idle-keepalive'],
  expectedBy: (p) => p.lingeringClose && p.idleOnDrain !== 'orphan',
  monitor: () => new NoResetOfUnreadRequest(),
});

interface StaleWait {
  waitedMs: number;
  accruingSince: number | null;
  /** The worker had begun draining when the request arrived. */
  arrivedWhileDraining: boolean;
}

/**
 * Stale: request bytes that sit unread on a draining worker's connection while
 * the worker has a free thread to read them. Waiting for a busy thread is
 * queueing, not staleness, and is not counted.
 */
class NoStaleRequest implements Monitor {
  constructor(
    private readonly staleMs: number,
    private readonly threads: number,
    private readonly busy = new Map<WorkerId, number>(),
    /** Per unread connection: unread-with-a-free-thread time so far, and since when it is accruing. */
    private readonly waits = new Map<ConnId, StaleWait>(),
    private readonly lingering = new Set<ConnId>(),
    /** Connections whose request is read and not answered: one pipelined behind it waits its turn (HTTP's order), not stale. */
    private readonly serving = new Set<ConnId>(),
  ) {}

  private hasFreeThread(worker: WorkerId): boolean {
    return (this.busy.get(worker) ?? 0) < this.threads;
  }

  private settle(conn: ConnId, t: number): void {
    const w = this.waits.get(conn);
    if (w && w.accruingSince !== null) {
      w.waitedMs += t - w.accruingSince;
      w.accruingSince = null;
    }
  }

  private resume(conn: ConnId, t: number): void {
    const w = this.waits.get(conn);
    if (w && w.accruingSince === null && this.hasFreeThread(connWorker(conn))) w.accruingSince = t;
  }

  private stale(conn: ConnId, t: number): string | null {
    this.settle(conn, t);
    const w = this.waits.get(conn);
    if (w && w.waitedMs > this.staleMs + EPSILON_MS && w.arrivedWhileDraining) {
      return `a request waited unread on ${conn} for ${w.waitedMs.toFixed(1)} ms while ${connWorker(conn)} drained with a thread free to read it (a stale keep-alive socket)`;
    }
    return null;
  }

  step(e: TraceEvent, machines: MachinesNow): string | null {
    if (e.type === 'worker.request-start' || e.type === 'worker.request-end') {
      this.busy.set(e.actor, (this.busy.get(e.actor) ?? 0) + (e.type === 'worker.request-start' ? 1 : -1));
      for (const conn of this.waits.keys()) {
        if (connWorker(conn) !== e.actor) continue;
        if (this.hasFreeThread(e.actor)) this.resume(conn, e.t);
        else this.settle(conn, e.t);
      }
    }
    if (e.type === 'conn.half-close') this.lingering.add(e.actor);
    // A request waits from when it is whole and readable: part of one waits for its client.
    if (e.type === 'conn.bytes' && e.partial !== true && !this.lingering.has(e.actor) && !this.serving.has(e.actor) && !this.waits.has(e.actor)) {
      this.waits.set(e.actor, { waitedMs: 0, accruingSince: null, arrivedWhileDraining: machines.hasBegunDraining(connWorker(e.actor)) });
      this.resume(e.actor, e.t);
    }
    if (e.type === 'conn.read') {
      this.waits.delete(e.actor);
      this.serving.add(e.actor);
    }
    if (e.type === 'conn.respond') this.serving.delete(e.actor);
    if (e.type === 'conn.close' || e.type === 'conn.abort') {
      const late = this.stale(e.actor, e.t);
      if (late) return late;
      this.waits.delete(e.actor);
      this.serving.delete(e.actor);
    }
    return null;
  }

  end(lastT: number): string | null {
    for (const conn of [...this.waits.keys()]) {
      const late = this.stale(conn, lastT);
      if (late) return late;
    }
    return null;
  }

  key(nowMs: number): string {
    const waits = [...this.waits].map(([conn, w]) => `${conn}:${w.waitedMs}:${w.accruingSince === null ? '-' : nowMs - w.accruingSince}:${w.arrivedWhileDraining}`).sort();
    return JSON.stringify([waits, sorted([...this.busy].map(([w, n]) => `${w}:${n}`)), sorted(this.lingering), sorted(this.serving)]);
  }

  copy(): Monitor {
    const waits = new Map([...this.waits].map(([conn, w]) => [conn, { ...w }] as const));
    return new NoStaleRequest(this.staleMs, this.threads, new Map(this.busy), waits, new Set(this.lingering), new Set(this.serving));
  }
}

class FailuresAreExplained implements Monitor {
  constructor(
    private readonly clientOfConn = new Map<ConnId, string>(),
    private readonly closing = new Set<ConnId>(),
    /** Requests whose bytes reached a connection that was open and reading — the server had them and dropped them. */
    private readonly arrivedOpen = new Set<string>(),
    private readonly processed = new Set<string>(),
    /** Clients whose connection the graceful deadline or a kill cut: the operator's bound, not the policy. */
    private readonly cutByBound = new Set<string>(),
  ) {}

  step(e: TraceEvent): string | null {
    if (e.type === 'conn.open') this.clientOfConn.set(e.actor, e.client);
    else if (e.type === 'conn.half-close' || e.type === 'conn.close') this.closing.add(e.actor);
    // Part of a request is not a request the server had: a client that never sends the rest lost it itself.
    else if (e.type === 'conn.bytes' && !this.closing.has(e.actor) && e.partial !== true) this.arrivedOpen.add(e.req);
    else if (e.type === 'conn.handler-start') this.processed.add(e.req);
    else if (e.type === 'conn.abort' && e.reason !== 'worker-exit') {
      const client = this.clientOfConn.get(e.actor);
      if (client !== undefined) this.cutByBound.add(client);
    } else if (e.type === 'client.fail' && (e.reason === 'reset' || e.reason === 'empty-reply') && !this.cutByBound.has(e.actor)) {
      if (e.req !== undefined && this.processed.has(e.req)) return `${e.actor} lost request ${e.req} (${e.reason}) after the server processed it`;
      if (e.req !== undefined && this.arrivedOpen.has(e.req)) return `${e.actor} got ${e.reason} for ${e.req}, which had reached an open connection and was dropped unread`;
    }
    return null;
  }

  end(): null {
    return null;
  }

  key(): string {
    return JSON.stringify([sorted([...this.clientOfConn].map(([c, k]) => `${c}:${k}`)), sorted(this.closing), sorted(this.arrivedOpen), sorted(this.processed), sorted(this.cutByBound)]);
  }

  copy(): Monitor {
    return new FailuresAreExplained(new Map(this.clientOfConn), new Set(this.closing), new Set(this.arrivedOpen), new Set(this.processed), new Set(this.cutByBound));
  }
}

const failuresAreExplained = property({
  name: 'only-unavoidable-failures',
  statement:
    'Every request that fails was never processed and crossed a close in flight: sent on an idle connection the server was closing, or queued when the last listener copy closed (retryable, RFC 9112 §9.3.1). A request pipelined behind a response is no exception: the server had it.',
  windows: ['request-crossed-close', 'queued-at-last-close'],
  // A policy that closes after a draining response drops what was pipelined behind it, unread.
  expectedBy: (p) => p.lingeringClose && p.servesPipelinedOnDrain && p.idleOnDrain !== 'orphan' && p.idleOnDrain !== 'keep',
  monitor: () => new FailuresAreExplained(),
});

class BacklogArithmetic implements Monitor {
  constructor(
    private capacity = 0,
    private queued = 0,
  ) {}

  step(e: TraceEvent): string | null {
    if (e.type === 'listener.open') this.capacity = Math.min(e.backlog, e.somaxconn) + 1;
    else if (e.type === 'listener.syn') {
      if (this.queued >= this.capacity) return `${e.client} entered an accept queue already holding ${this.queued} of ${this.capacity}`;
      this.queued++;
    } else if (e.type === 'listener.overflow') {
      if (this.queued < this.capacity) return `${e.client} overflowed an accept queue holding only ${this.queued} of ${this.capacity}`;
    } else if (e.type === 'listener.accept' || e.type === 'listener.reset') this.queued--;
    return null;
  }

  end(): null {
    return null;
  }

  key(): string {
    return `${this.capacity}/${this.queued}`;
  }

  copy(): Monitor {
    return new BacklogArithmetic(this.capacity, this.queued);
  }
}

/**
 * Which workers serve: ready (the app loaded) and not yet draining or gone. The monitor keeps the
 * ready ones; the machines say which of those have begun draining. A TERM is the reload's when the
 * operator's last signal was HUP: TTOU's TERMs are the operator's own reduction (the oldest worker
 * goes, as in gunicorn, and the arbiter does not know which workers are recycling meanwhile).
 */
class ReloadKeepsServing implements Monitor {
  constructor(
    private readonly ready = new Set<WorkerId>(),
    private running = true,
    private reloading = false,
  ) {}

  step(e: TraceEvent, machines: MachinesNow): string | null {
    switch (e.type) {
      case 'worker.ready':
        this.ready.add(e.actor);
        return null;
      case 'worker.exit':
      case 'worker.crash':
        this.ready.delete(e.actor);
        return null;
      case 'arbiter.signal':
        // A stop ends every worker on purpose; so does a KILL of the arbiter (its workers outlive it, unserved).
        if (e.signal === 'HUP') this.reloading = true;
        else if (e.signal === 'TTIN' || e.signal === 'TTOU') this.reloading = false;
        else this.running = false;
        return null;
      case 'arbiter.kill': {
        if (!this.running || !this.reloading || e.signal !== 'TERM') return null;
        const serves = (w: WorkerId) => this.ready.has(w) && !machines.hasBegunDraining(w);
        if (!serves(e.worker)) return null;
        for (const other of this.ready) if (other !== e.worker && serves(other)) return null;
        return `the running arbiter sent TERM to ${e.worker}, the last worker serving: nothing accepts until a new worker is ready`;
      }
      default:
        return null;
    }
  }

  end(): null {
    return null;
  }

  key(): string {
    return `${this.running ? 'R' : 'S'}${this.reloading ? 'H' : ''} ${sorted(this.ready).join(',')}`;
  }

  copy(): Monitor {
    return new ReloadKeepsServing(new Set(this.ready), this.running, this.reloading);
  }
}

const reloadKeepsServing = property({
  name: 'reload-keeps-serving',
  statement:
    'A reload never retires the last worker that serves: the running arbiter sends a reload’s TERM to a serving worker only while another serves, so something accepts throughout.',
  windows: ['reload-while-serving'],
  // gunicorn TERMs the old generation as it forks the new one: nothing accepts until a new worker has loaded its app.
  expectedBy: (p) => p.reloadRetires === 'when-replaced',
  monitor: () => new ReloadKeepsServing(),
});

const backlogArithmetic = property({
  name: 'backlog-arithmetic',
  statement: 'A connection overflows the accept queue exactly when min(backlog, somaxconn) + 1 connections are already waiting.',
  windows: ['backlog-overflow'],
  expectedBy: () => true,
  monitor: () => new BacklogArithmetic(),
});

/** The properties for a run with these parameters (some bounds are parameters: the graceful timeout, the idle window). */
export function propertiesFor(params: ServerParams): Property[] {
  return [
    processedRequestsAnswered,
    noAcceptAfterDrain,
    property({
      name: 'draining-worker-heartbeats',
      statement: 'A draining worker keeps notifying the arbiter, at least every two heartbeat intervals, until it exits.',
      windows: ['drain-outlasting-heartbeat'],
      // The sync worker's loop notifies between requests only: a long request leaves it silent (gunicorn, draining or not).
      expectedBy: (p) => p.heartbeatWhileDraining && !p.singleThreaded,
      // Allow one missed beat: a loop turn may straddle the drain's start.
      monitor: () => new DrainingWorkerHeartbeats(2 * params.heartbeatIntervalMs),
    }),
    property({
      name: 'exit-by-deadline',
      statement: 'A worker that begins draining exits no later than the graceful timeout (plus one arbiter tick).',
      windows: ['graceful-deadline'],
      // gthread's pool runs what it was given past the worker's own graceful timeout: only the arbiter's
      // KILL (at a stop's deadline) or its watchdog (a recycle or reload) ends it (poolRunsSubmitted).
      expectedBy: (p) => !p.poolRunsSubmitted,
      monitor: () => exitByDeadline(params),
    }),
    closeWhileDraining,
    property({
      name: 'idle-close-after-window',
      statement: 'The server closes an idle keep-alive connection only after the client had the idle window (min of idle grace and keep-alive timeout) to send its next request.',
      windows: ['drain-with-idle-keepalive'],
      expectedBy: (p) =>
        p.idleOnDrain !== 'close' && !(p.idleOnDrain === 'orphan' && p.exitAbandonsIdle) && !p.closeAfterKeepAliveResponseWhileDraining,
      monitor: () => new IdleCloseAfterWindow(Math.min(params.idleGraceMs, params.keepAliveMs)),
    }),
    noResetOfUnreadRequest,
    property({
      name: 'no-stale-request',
      statement: 'A request that reaches a draining worker is read, or its connection closed, within the idle window: no stale keep-alive socket hangs it.',
      windows: ['request-on-draining-worker', 'drain-with-idle-keepalive'],
      // The sync worker keeps no connection alive: there is no socket to go stale.
      expectedBy: (p) => p.keepAlive && p.idleOnDrain !== 'orphan',
      monitor: (policy) => new NoStaleRequest(Math.max(params.idleGraceMs, params.heartbeatIntervalMs), threadsOf(policy, params)),
    }),
    failuresAreExplained,
    reloadKeepsServing,
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
  const ready = new Set<WorkerId>();
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
    // A switch, not a ts-pattern chain: this runs for every event of every world `check` draws, and the
    // chain built per event was a fifth of its time (with its garbage). Not exhaustive on purpose: every
    // other event leaves the windows as they are.
    switch (e.type) {
      case 'conn.read':
        busy.set(e.actor, true);
        idleKeptAlive.delete(e.actor);
        break;
      case 'conn.respond':
        busy.set(e.actor, false);
        if (!e.close) idleKeptAlive.add(e.actor);
        break;
      case 'conn.half-close':
      case 'conn.close':
        closed.add(e.actor);
        idleKeptAlive.delete(e.actor);
        break;
      case 'conn.bytes':
        if (closed.has(e.actor)) hits['request-crossed-close']++;
        if (view.hasBegunDraining(connWorker(e.actor), i)) hits['request-on-draining-worker']++;
        idleKeptAlive.delete(e.actor);
        break;
      case 'listener.syn':
      case 'conn.open':
        if (draining.size > 0) hits['connect-during-drain']++;
        break;
      case 'listener.overflow':
        hits['backlog-overflow']++;
        break;
      case 'listener.reset':
        hits['queued-at-last-close']++;
        break;
      case 'worker.graceful-timeout':
        hits['graceful-deadline']++;
        break;
      case 'worker.ready':
        ready.add(e.actor);
        break;
      case 'worker.exit':
      case 'worker.crash':
        ready.delete(e.actor);
        break;
      case 'arbiter.signal':
        if (e.signal === 'HUP' && [...ready].some((w) => !draining.has(w))) hits['reload-while-serving']++;
        break;
    }
  });
  return hits;
}
