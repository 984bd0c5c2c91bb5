/**
 * Scripts generated from the connection and worker charts. XState's own graph
 * utilities (`getShortestPaths` from `xstate/graph`) find, under a policy,
 * the shortest event sequence that reaches each state of the chart — fine
 * for one machine, quadratic for a composition, so per machine. Each event
 * of a path is then either something the runner can do from outside (a
 * connect, a request, a close, a signal, waiting for a timer), something
 * the server does by itself in answer (read, respond, close), or something
 * no outside action brings about — and the path is listed with that reason.
 * A drivable path becomes a script of socket actions and signals; run
 * against a real server, the connection's trace says whether it got there.
 */
import { getShortestPaths } from 'xstate/graph';
import type { AnyMachineSnapshot, AnyStateMachine } from 'xstate';
import type { AbortReason } from '../model/events.ts';
import { machinesFor } from '../model/machines/index.ts';
import type { ConnContext, ConnMachineEvent } from '../model/machines/connection.ts';
import { exitCodeOf, type WorkerContext, type WorkerMachineEvent } from '../model/machines/worker.ts';
import { getPolicy } from '../model/policies.ts';
import type { ServerParams } from '../model/params.ts';
import { scriptParams, type Script, type ScriptStep } from '../simulator/script.ts';
import { transitionName } from './coverage.ts';

/** The parameters generated scripts run with: short timers, so that waiting for one is quick. */
export const PATH_SERVER: Partial<ServerParams> = {
  workers: 1,
  threads: 4,
  keepAliveMs: 1000,
  idleGraceMs: 600,
  lingerMs: 1000,
  gracefulTimeoutMs: 2000,
  headerTimeoutMs: 1500,
};

/** What brings an event of the connection chart about. */
type Cause =
  | { readonly by: 'runner'; readonly does: 'connect' | 'request' | 'partial-body' | 'rest' | 'close' | 'half-close' | 'reset' | 'term' | 'int' | 'kill' | 'crash' }
  | { readonly by: 'time'; readonly waitMs: (p: ServerParams) => number }
  | { readonly by: 'server' }
  | { readonly by: 'nobody'; readonly reason: string };

// In the order the walk offers them: an abort the runner brings about at once (INT) before one the
// server decides in its own time (its exit), so that a shortest path to an abort is one it can aim.
const ABORT_CAUSES: Record<AbortReason, Cause> = {
  quit: { by: 'runner', does: 'int' },
  'worker-exit': { by: 'server' },
  deadline: { by: 'time', waitMs: (p) => p.gracefulTimeoutMs },
  killed: { by: 'runner', does: 'kill' },
  // A fault the runner stands in for: the worker dies of a SEGV it did not send itself.
  crashed: { by: 'runner', does: 'crash' },
  error: { by: 'nobody', reason: "an internal error on one connection: no request makes the server's own code fail" },
};

function causeOf(event: ConnMachineEvent, next: ConnMachineEvent | undefined): Cause {
  if (WHILE_RETURNING.has(event)) return { by: 'nobody', reason: WHILE_RETURNING_REASON };
  switch (event.type) {
    case 'conn.open':
      return { by: 'runner', does: 'connect' };
    case 'conn.bytes':
      // Pipelined behind the request being handled: the connection hears of it while that one runs.
      if (BEHIND_HANDLED.has(event)) return { by: 'runner', does: 'request' };
      // The rest of a request whose body was cut short.
      if (COMPLETES.has(event)) return { by: 'runner', does: 'rest' };
      if (OUTSTANDING.has(event)) return { by: 'nobody', reason: UNANNOUNCED_BEHIND };
      if (AFTER_CLOSE.has(event)) return { by: 'nobody', reason: 'bytes after the server answered and decided to close: a client of the chart that read `Connection: close` sends nothing more' };
      return { by: 'runner', does: event.partial ? 'partial-body' : 'request' };
    case 'conn.peer-fin':
      // While its request is outstanding the client half-closes: it still reads the response.
      return { by: 'runner', does: OUTSTANDING.has(event) ? 'half-close' : 'close' };
    case 'conn.peer-rst':
      // An abortive close (SO_LINGER 0); the client chart takes it as its close, at any point.
      return { by: 'runner', does: 'reset' };
    case 'conn.drain':
      return { by: 'runner', does: 'term' };
    case 'conn.turn-end':
      // The worker's last loop turn runs out (its poll's timeout) when nothing ends it sooner.
      return { by: 'time', waitMs: (p) => p.selectTimeoutMs };
    case 'conn.abort':
      return ABORT_CAUSES[event.reason];
    case 'conn.keepalive-timeout':
      return { by: 'time', waitMs: (p) => p.keepAliveMs };
    case 'conn.grace-timeout':
      return { by: 'time', waitMs: (p) => p.idleGraceMs };
    case 'conn.linger-timeout':
      return { by: 'time', waitMs: (p) => p.lingerMs };
    case 'conn.header-timeout':
      return { by: 'time', waitMs: (p) => p.headerTimeoutMs };
    case 'conn.dispatch':
    case 'conn.returned':
    case 'conn.read':
    case 'conn.handler-start':
    case 'conn.handler-finish':
    case 'conn.respond':
    case 'conn.half-close':
    case 'conn.close':
      return { by: 'server' };
  }
}

/** Bytes or a FIN offered while a request is outstanding on the connection (arrived, or being handled). */
const OUTSTANDING = new WeakSet<ConnMachineEvent>();
/** Bytes offered while a request is being handled: a request pipelined behind it. */
const BEHIND_HANDLED = new WeakSet<ConnMachineEvent>();
/** Bytes offered while a partial request waits to be read: its rest. */
const COMPLETES = new WeakSet<ConnMachineEvent>();

/** Why bytes never reach a connection whose request has arrived and is not read yet. */
export const UNANNOUNCED_BEHIND =
  "a request pipelined behind one not read yet waits, unannounced, in the platform's buffer (impl/'s parser, the simulator's socket buffer) until that one is handled (model/driver/worker.ts requestBehind)";
/** Bytes offered after the server answered and decided to close. */
const AFTER_CLOSE = new WeakSet<ConnMachineEvent>();
/** What the world does while an answered connection is on its way back to the poller. */
const WHILE_RETURNING = new WeakSet<ConnMachineEvent>();
export const WHILE_RETURNING_REASON =
  "between a response and the connection's return to the poller: impl/'s pool hands it back as the response is written, so nothing from outside comes between (the simulator's measured return lag lets it)";

/** Every event the chart could be offered now, with payloads that fit the connection's context. */
function connEvents(snapshot: AnyMachineSnapshot): ConnMachineEvent[] {
  // Nothing reaches a connection no worker has accepted (the chart's root takes a peer RST in any state).
  if (snapshot.matches('accepting')) return [{ type: 'conn.open', worker: 'worker/1', client: 'client/1' }];
  const context = snapshot.context as { pendingReq: string | null; pendingPartial: boolean; req: string | null; responses: number };
  const fresh = `r${context.responses + 1}`;
  const current = context.req ?? fresh;
  const pending = context.pendingReq ?? fresh;
  // While a request is handled, bytes are the next one's, pipelined behind it.
  const bytes: ConnMachineEvent = { type: 'conn.bytes', req: context.req !== null ? `r${context.responses + 2}` : pending };
  const fin: ConnMachineEvent = { type: 'conn.peer-fin' };
  // Once a response was written and the server is closing, no client of the chart sends: it saw
  // `Connection: close`, or it races a close the driver makes in the same step.
  if (context.responses > 0 && (snapshot.matches('closing') || snapshot.matches('closingHard') || snapshot.matches('lingering'))) AFTER_CLOSE.add(bytes);
  if (context.req !== null || context.pendingReq !== null) {
    OUTSTANDING.add(bytes);
    OUTSTANDING.add(fin);
  }
  if (context.req !== null) BEHIND_HANDLED.add(bytes);
  if (context.pendingPartial) COMPLETES.add(bytes);
  // A request whose head came whole and whose body did not (a client that stops mid-body), where a request may come.
  const partial: ConnMachineEvent[] = context.req === null && context.pendingReq === null ? [{ type: 'conn.bytes', req: pending, partial: true }] : [];
  const events: ConnMachineEvent[] = [
    { type: 'conn.open', worker: 'worker/1', client: 'client/1' },
    bytes,
    ...partial,
    { type: 'conn.dispatch' },
    { type: 'conn.returned' },
    { type: 'conn.read', req: pending, keepAlive: true },
    { type: 'conn.handler-start', req: current },
    { type: 'conn.handler-finish', req: current },
    { type: 'conn.respond', req: current, status: 200, close: false },
    { type: 'conn.respond', req: current, status: 200, close: true },
    { type: 'conn.drain' },
    { type: 'conn.turn-end' },
    { type: 'conn.keepalive-timeout' },
    { type: 'conn.grace-timeout' },
    { type: 'conn.linger-timeout' },
    { type: 'conn.header-timeout' },
    fin,
    { type: 'conn.peer-rst' },
    { type: 'conn.half-close' },
    { type: 'conn.close', rst: false },
    { type: 'conn.close', rst: true },
  ];
  for (const reason of Object.keys(ABORT_CAUSES) as AbortReason[]) events.push({ type: 'conn.abort', reason });
  if (snapshot.matches('returning')) for (const e of events) if (e.type !== 'conn.returned') WHILE_RETURNING.add(e);
  return events;
}

export interface ChartPath {
  /** The chart the path is in. */
  readonly kind: 'conn' | 'worker';
  readonly policy: string;
  /** What the path is aimed at: a state (its id, `conn.idle.drainGrace`) or a transition (coverage.ts's name for it). */
  readonly target: string;
  readonly aim: 'state' | 'transition';
  /** The server's parameters it runs with. */
  readonly server: Partial<ServerParams>;
  readonly events: readonly string[];
  /** A script that drives it from outside, or why none can. */
  readonly script: Script | null;
  readonly undrivable: string | null;
}

/** The leaf state ids of a snapshot. */
function leafIds(snapshot: AnyMachineSnapshot): string[] {
  const nodes = (snapshot as unknown as { _nodes: readonly { id: string; type: string }[] })._nodes;
  return nodes.filter((n) => n.type === 'atomic' || n.type === 'final').map((n) => n.id);
}

/**
 * The shortest path to each leaf state of the connection chart under a policy, each with its script
 * or the reason it has none. A state reachable by what the runner can bring about gets the shortest
 * such path; only a state nothing drivable reaches gets a path through an undrivable event.
 */
export function connectionPaths(policy: string, server: Partial<ServerParams> = PATH_SERVER): ChartPath[] {
  const params = scriptParams({ name: '', description: '', server, steps: [] });
  return chartPaths<ConnMachineEvent>({
    kind: 'conn',
    policy,
    server,
    machine: machinesFor(getPolicy(policy), params).conn,
    events: connEvents,
    // The chart's context says whether a request is outstanding; the graph walk hands events back as given.
    undrivable: (e, next) => {
      const cause = causeOf(e, next);
      return cause.by === 'nobody' ? cause.reason : null;
    },
    stateKey: connStateKey,
    describe: describeEvent,
    script: (target, events) => scriptOf(policy, target, events, params, server),
  });
}

/** A connection path's state: its leaf, and what its guards read from the context. */
function connStateKey(snapshot: AnyMachineSnapshot): string {
  const c = snapshot.context as ConnContext;
  return `${leafIds(snapshot).join(',')} ${c.draining} ${c.drainingAtHandlerStart} ${c.peerFinned} ${c.unread} ${c.responses > 0} ${c.requestKeepAlive} ${c.pendingPartial}`;
}

interface ChartWalk<E extends { readonly type: string }> {
  readonly kind: ChartPath['kind'];
  readonly policy: string;
  readonly server: Partial<ServerParams>;
  readonly machine: AnyStateMachine;
  /** Every event the chart could be offered in a snapshot, with payloads that fit its context. */
  readonly events: (snapshot: AnyMachineSnapshot) => E[];
  /** Why no outside action brings this event about (the next one of the path given), or null. */
  readonly undrivable: (event: E, next: E | undefined) => string | null;
  /** What tells two snapshots apart for the walk: the leaf, and what the guards read. */
  readonly stateKey: (snapshot: AnyMachineSnapshot) => string;
  readonly describe: (event: E) => string;
  readonly script: (target: string, events: readonly E[]) => Script;
}

/**
 * The shortest path to each leaf state and each transition of a chart, each with its script or the
 * reason it has none. A target reachable by what the runner can bring about gets the shortest such
 * path; only a target nothing drivable reaches gets a path through an undrivable event.
 */
function chartPaths<E extends { readonly type: string }>(walk: ChartWalk<E>): ChartPath[] {
  const offered = (snapshot: AnyMachineSnapshot, drivableOnly: boolean) => walk.events(snapshot).filter((e) => !drivableOnly || walk.undrivable(e, undefined) === null);
  // Aims reached by what the runner can bring about, and (for the rest) by anything at all.
  const drivable = new Map<string, { aim: ChartPath['aim']; events: E[] }>();
  const any = new Map<string, { aim: ChartPath['aim']; events: E[] }>();
  const note = (into: typeof drivable, target: string, aim: ChartPath['aim'], events: E[]) => {
    const known = into.get(target);
    if (!known || known.events.length > events.length) into.set(target, { aim, events });
  };
  for (const [drivableOnly, into] of [[true, drivable], [false, any]] as const) {
    const paths = getShortestPaths(walk.machine, {
      events: (snapshot) => offered(snapshot as AnyMachineSnapshot, drivableOnly) as never[],
      serializeState: (snapshot) => walk.stateKey(snapshot as AnyMachineSnapshot),
    });
    for (const path of paths) {
      const snapshot = path.state as AnyMachineSnapshot;
      const events = path.steps.map((s) => s.event as unknown as E).filter((e) => !e.type.startsWith('xstate.'));
      for (const target of leafIds(snapshot)) note(into, target, 'state', events);
      // Each transition enabled at the path's end: the path, then its event.
      for (const event of offered(snapshot, drivableOnly)) {
        for (const def of walk.machine.getTransitionData(snapshot, event as never)) {
          const list = def.source.transitions.get(def.eventType) ?? [def];
          note(into, transitionName(def.source, def.eventType, list.indexOf(def), list.length, def.target), 'transition', [...events, event]);
        }
      }
    }
  }
  const { kind, policy, server } = walk;
  const out: ChartPath[] = [];
  for (const [target, { aim, events }] of drivable) {
    out.push({ kind, policy, target, aim, server, events: events.map(walk.describe), script: walk.script(target, events), undrivable: null });
  }
  for (const [target, { aim, events }] of any) {
    if (drivable.has(target)) continue;
    const reason = events.map((e, i) => walk.undrivable(e, events[i + 1])).find((r) => r !== null);
    out.push({ kind, policy, target, aim, server, events: events.map(walk.describe), script: null, undrivable: reason ?? 'no path' });
  }
  return out.sort((a, b) => a.target.localeCompare(b.target));
}

function describeEvent(e: ConnMachineEvent): string {
  switch (e.type) {
    case 'conn.respond':
      return `respond ${e.close ? 'close' : 'keep-alive'}`;
    case 'conn.abort':
      return `abort ${e.reason}`;
    case 'conn.close':
      return e.rst ? 'close rst' : 'close';
    case 'conn.bytes':
      return e.partial ? 'bytes (part of the body)' : 'bytes';
    default:
      return e.type.slice('conn.'.length);
  }
}

/** The operator's signal to the arbiter, as a script step. */
const arbiterSignal = (atMs: number, signal: 'TERM' | 'INT' | 'QUIT'): ScriptStep => ({ atMs, do: 'signal', signal });

/** How long a request's handler runs: long when something must happen while it does. */
const SLOW_MS = 1500;
const QUICK_MS = 10;
/** Room between two of the runner's actions, for what the server does in answer. */
const GAP_MS = 250;

/**
 * The path as runner actions at times: each stimulus where the path has it; time advanced past a
 * timer's delay where the path waits for one, and past a handler where the path lets it finish.
 */
function scriptOf(policy: string, target: string, events: readonly ConnMachineEvent[], params: ServerParams, server: Partial<ServerParams>): Script {
  const steps: ScriptStep[] = [];
  let t = 0;
  let slowSent = false;
  const client = 'c';
  // A path that goes on after the server gave up on the client and half-closed (its linger timer runs
  // out; bytes reach it lingering; an abort finds it lingering) needs a client that does not notice the
  // close — one that is not reading —, where a client that does closes its side at once (peer-fin).
  const gaveUp = events.findIndex((e) => e.type === 'conn.header-timeout');
  const keepsOpen = gaveUp >= 0 && events.slice(gaveUp + 1).some((e) => !['conn.half-close', 'conn.peer-fin', 'conn.close'].includes(e.type));
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const cause = causeOf(e, events[i + 1]);
    if (cause.by === 'time') {
      t += cause.waitMs(params) + GAP_MS;
      continue;
    }
    if (cause.by !== 'runner') continue;
    switch (cause.does) {
      case 'connect':
        steps.push(keepsOpen ? { atMs: t, do: 'connect', client, keepsOpen } : { atMs: t, do: 'connect', client });
        break;
      case 'request': {
        // Slow when a later stimulus of the path comes before this request's response.
        const respondAt = events.findIndex((x, j) => j > i && x.type === 'conn.respond');
        const stimulusBefore = events.some((x, j) => j > i && (respondAt < 0 || j < respondAt) && causeOf(x, events[j + 1]).by !== 'server');
        const serviceMs = stimulusBefore ? SLOW_MS : QUICK_MS;
        slowSent ||= stimulusBefore;
        steps.push({ atMs: t, do: 'request', client, serviceMs });
        t += stimulusBefore ? GAP_MS : serviceMs + GAP_MS;
        continue;
      }
      case 'partial-body':
        // Slow, as a request is when something must happen before its response (here: its rest, a FIN, the timer).
        steps.push({ atMs: t, do: 'partial-body', client, serviceMs: SLOW_MS });
        slowSent = true;
        break;
      case 'rest':
        steps.push({ atMs: t, do: 'rest', client });
        break;
      case 'close':
        steps.push({ atMs: t, do: 'close', client });
        break;
      case 'reset':
        steps.push({ atMs: t, do: 'reset', client });
        break;
      case 'half-close':
        steps.push({ atMs: t, do: 'half-close', client });
        break;
      case 'term':
        steps.push(arbiterSignal(t, 'TERM'));
        break;
      case 'int':
        steps.push(arbiterSignal(t, 'INT'));
        break;
      case 'kill':
        steps.push({ atMs: t, do: 'signal-worker', worker: 0, signal: 'KILL' });
        break;
      case 'crash':
        steps.push({ atMs: t, do: 'signal-worker', worker: 0, signal: 'SEGV' });
        break;
    }
    t += GAP_MS;
  }
  // The end: once any response on its way has come (a client of the chart does not close while it
  // awaits one), the client closes and the server is stopped — unless the path did so.
  if (slowSent) t += SLOW_MS;
  if (!steps.some((s) => s.do === 'close' || s.do === 'reset')) steps.push({ atMs: t, do: 'close', client });
  if (!steps.some((s) => s.do === 'signal')) steps.push({ atMs: t + GAP_MS, do: 'signal', signal: 'TERM' });
  return { name: `path to ${target} (${policy})`, description: `the chart's shortest path to ${target} under ${policy}, driven from outside`, server, steps };
}

/**
 * One path per state of the connection chart, across the policies: the first policy (in the order
 * given) that drives it from outside; a state no policy drives is listed with its reason.
 */
export function pathsAcross(policies: readonly string[]): ChartPath[] {
  const chosen = new Map<string, ChartPath>();
  // One server: quiesce serve always has a header timer, so the chart's untimed waits (a server
  // without one, as gunicorn is) are not aimed at here.
  for (const policy of policies) {
    for (const path of [...connectionPaths(policy, PATH_SERVER), ...workerPaths(policy, WORKER_PATH_SERVER)]) {
      if (path.events.length === 0) continue; // the initial state: every actor starts there
      const known = chosen.get(path.target);
      if (!known || (known.script === null && path.script !== null)) chosen.set(path.target, path);
    }
  }
  const order = (p: ChartPath) => `${p.kind === 'conn' ? 0 : 1}${p.aim === 'state' ? 0 : 1}${p.target}`;
  return [...chosen.values()].sort((a, b) => order(a).localeCompare(order(b)));
}

// ───────────────────────── the worker chart ─────────────────────────

/** Worker paths run with a recycle limit (the chart's max-requests is one of its transitions) and a short watchdog-free life. */
export const WORKER_PATH_SERVER: Partial<ServerParams> = { ...PATH_SERVER, maxRequests: 3 };

/** How many connections and requests a worker path holds at most: enough for every state, a finite graph. */
const WORKER_PATH_CONNS = 2;

type WorkerCause =
  | { readonly by: 'runner'; readonly does: 'connect' | 'request' | 'close' | 'term' | 'int' | 'quit'; readonly client?: string }
  | { readonly by: 'runner'; readonly does: 'signal-worker'; readonly signal: 'KILL' | 'STOP' | 'CONT' | 'SEGV' }
  | { readonly by: 'time'; readonly waitMs: (p: ServerParams) => number }
  | { readonly by: 'server' }
  | { readonly by: 'nobody'; readonly reason: string };

const clientOf = (conn: string) => `c${conn.slice(conn.lastIndexOf('.') + 1)}`;

function workerCauseOf(event: WorkerMachineEvent): WorkerCause {
  switch (event.type) {
    case 'worker.accept':
      return { by: 'runner', does: 'connect', client: clientOf(event.conn) };
    case 'worker.request-start':
      return { by: 'runner', does: 'request', client: clientOf(event.conn) };
    case 'worker.conn-closed':
      // Either side may close; the runner's client closing its idle connection is the one it can do.
      return { by: 'runner', does: 'close', client: clientOf(event.conn) };
    case 'worker.signal':
      switch (event.signal) {
        case 'TERM':
          return { by: 'runner', does: 'term' };
        case 'INT':
          return { by: 'runner', does: 'int' };
        case 'QUIT':
          return { by: 'runner', does: 'quit' };
        case 'KILL':
          return { by: 'runner', does: 'signal-worker', signal: event.signal };
        case 'STOP':
        case 'CONT':
          // The runner can send them (stopped-worker-escalation does), but no server's trace can show
          // them: the stopped process cannot say it, and Node tells its parent nothing (no WUNTRACED).
          return { by: 'nobody', reason: 'a SIGSTOP or SIGCONT from outside is in no server trace: the stopped worker cannot write it, and its parent is not told' };
        case 'ABRT':
          return { by: 'nobody', reason: "the arbiter's heartbeat ABRT: a worker silent past --timeout (the heartbeat-timeout script drives it, with SIGSTOP and a watchdog generated paths do not wait for)" };
      }
      break;
    case 'worker.graceful-timeout':
      return { by: 'time', waitMs: (p) => p.gracefulTimeoutMs };
    case 'worker.turn-timeout':
      return { by: 'time', waitMs: (p) => p.selectTimeoutMs };
    case 'worker.heartbeat':
      // The worker notifies by itself, once an interval: the script lets one pass.
      return { by: 'time', waitMs: (p) => p.heartbeatIntervalMs };
    case 'worker.crash':
      // A fault the runner stands in for: a SEGV from outside, which the worker did not send itself.
      return { by: 'runner', does: 'signal-worker', signal: 'SEGV' };
    case 'worker.boot':
    case 'worker.ready':
    case 'worker.request-end':
    case 'worker.max-requests':
    case 'worker.close-listener':
    case 'worker.turn-end':
    case 'worker.exit':
      return { by: 'server' };
  }
  return { by: 'server' };
}

/** Every event the worker chart could be offered now, with payloads that fit its context (bounded: a finite graph). */
function workerEvents(snapshot: AnyMachineSnapshot, maxRequests: number): WorkerMachineEvent[] {
  const context = snapshot.context as WorkerContext;
  const events: WorkerMachineEvent[] = [
    { type: 'worker.boot', maxRequests },
    { type: 'worker.ready' },
    { type: 'worker.heartbeat' },
    { type: 'worker.max-requests' },
    { type: 'worker.close-listener' },
    { type: 'worker.graceful-timeout' },
    { type: 'worker.turn-end' },
    { type: 'worker.turn-timeout' },
    { type: 'worker.exit', code: exitCodeOf(context) },
    { type: 'worker.crash', code: -11, signal: 'SEGV' },
  ];
  for (const signal of ['TERM', 'INT', 'QUIT', 'KILL', 'ABRT', 'STOP', 'CONT'] as const) events.push({ type: 'worker.signal', signal });
  if (context.openConns.length < WORKER_PATH_CONNS) {
    const used = new Set(context.openConns);
    let n = 1;
    while (used.has(`conn/1.${n}`)) n++;
    events.push({ type: 'worker.accept', conn: `conn/1.${n}` });
  }
  for (const conn of context.openConns) {
    if (context.requests < maxRequests) events.push({ type: 'worker.request-start', conn, req: `${clientOf(conn)}-${context.requests + 1}` });
    events.push({ type: 'worker.conn-closed', conn });
  }
  if (context.busy > 0) {
    const conn = context.startedConns[0] ?? 'conn/1.1';
    events.push({ type: 'worker.request-end', conn, req: `${clientOf(conn)}-${context.requests}` });
  }
  return events;
}

/** A worker path's state: its leaf, and what its guards read from the context. */
function workerStateKey(snapshot: AnyMachineSnapshot): string {
  const c = snapshot.context as WorkerContext;
  return `${leafIds(snapshot).join(',')} ${c.requests} ${c.busy} ${c.openConns.length} ${c.startedConns.length} ${c.holdsListener} ${c.maxRequests} ${c.lastTurnAccepts} ${JSON.stringify(c.fatal)} ${c.quitting}`;
}

function describeWorkerEvent(e: WorkerMachineEvent): string {
  switch (e.type) {
    case 'worker.signal':
      return `signal ${e.signal}`;
    case 'worker.accept':
    case 'worker.conn-closed':
    case 'worker.request-start':
    case 'worker.request-end':
      return `${e.type.slice('worker.'.length)} ${clientOf(e.conn)}`;
    default:
      return e.type.slice('worker.'.length);
  }
}

/**
 * The shortest path to each state and transition of the worker chart under a policy, each with its
 * script or the reason it has none (as connectionPaths, for the worker's own chart).
 */
export function workerPaths(policy: string, server: Partial<ServerParams> = WORKER_PATH_SERVER): ChartPath[] {
  const params = scriptParams({ name: '', description: '', server, steps: [] });
  return chartPaths<WorkerMachineEvent>({
    kind: 'worker',
    policy,
    server,
    machine: machinesFor(getPolicy(policy), params).worker,
    events: (snapshot) => workerEvents(snapshot, params.maxRequests),
    undrivable: (e) => {
      const cause = workerCauseOf(e);
      return cause.by === 'nobody' ? cause.reason : null;
    },
    stateKey: workerStateKey,
    describe: describeWorkerEvent,
    script: (target, events) => workerScriptOf(policy, target, events, params, server),
  });
}

/**
 * A worker path as runner actions at times: a connect per accept, a request per request-start (slow
 * when a later stimulus comes before its end), closes, signals to the arbiter (TERM, INT, QUIT) or to
 * the worker itself (KILL, STOP, CONT), and waits for the worker's timers.
 */
function workerScriptOf(policy: string, target: string, events: readonly WorkerMachineEvent[], params: ServerParams, server: Partial<ServerParams>): Script {
  const steps: ScriptStep[] = [];
  let t = 0;
  let slowUntil = 0;
  const open = new Set<string>();
  // A client sends one request at a time and does not close while it awaits a response (the client
  // chart): where the worker's path has a connection start again or close before its response, the
  // client's action waits for it.
  const freeAt = new Map<string, number>();
  const whenFree = (client: string) => Math.max(t, freeAt.get(client) ?? 0);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const cause = workerCauseOf(e);
    if (cause.by === 'time') {
      t += cause.waitMs(params) + GAP_MS;
      continue;
    }
    if (cause.by !== 'runner') continue;
    switch (cause.does) {
      case 'connect':
        steps.push({ atMs: t, do: 'connect', client: cause.client! });
        open.add(cause.client!);
        break;
      case 'request': {
        // Slow when another stimulus of the path comes before this request's end.
        const endAt = events.findIndex((x, j) => j > i && x.type === 'worker.request-end');
        const stimulusBefore = events.some((x, j) => j > i && (endAt < 0 || j < endAt) && workerCauseOf(x).by !== 'server');
        const serviceMs = stimulusBefore ? SLOW_MS : QUICK_MS;
        const at = whenFree(cause.client!);
        steps.push({ atMs: at, do: 'request', client: cause.client!, serviceMs });
        freeAt.set(cause.client!, at + serviceMs + GAP_MS);
        if (stimulusBefore) slowUntil = Math.max(slowUntil, at + SLOW_MS);
        t = at + (stimulusBefore ? GAP_MS : QUICK_MS + GAP_MS);
        continue;
      }
      case 'close':
        steps.push({ atMs: whenFree(cause.client!), do: 'close', client: cause.client! });
        open.delete(cause.client!);
        break;
      case 'term':
        steps.push(arbiterSignal(t, 'TERM'));
        break;
      case 'int':
        steps.push(arbiterSignal(t, 'INT'));
        break;
      case 'quit':
        steps.push(arbiterSignal(t, 'QUIT'));
        break;
      case 'signal-worker':
        steps.push({ atMs: t, do: 'signal-worker', worker: 0, signal: cause.signal });
        break;
    }
    t += GAP_MS;
  }
  // The end: once what is in flight is answered, the clients close and the server is stopped — a
  // stopped worker continued first (a SIGSTOPped process takes no signal).
  t = Math.max(t, slowUntil + GAP_MS);
  const lastToWorker = steps.filter((s) => s.do === 'signal-worker').at(-1);
  if (lastToWorker?.do === 'signal-worker' && lastToWorker.signal === 'STOP') steps.push({ atMs: (t += GAP_MS), do: 'signal-worker', worker: 0, signal: 'CONT' });
  for (const client of open) steps.push({ atMs: whenFree(client), do: 'close', client });
  if (!steps.some((s) => s.do === 'signal')) steps.push({ atMs: Math.max(t, ...steps.map((s) => s.atMs)) + GAP_MS, do: 'signal', signal: 'TERM' });
  // In time order (stable: what the path does at one time stays in its order).
  steps.sort((a, b) => a.atMs - b.atMs);
  return { name: `path to ${target} (${policy})`, description: `the worker chart's shortest path to ${target} under ${policy}, driven from outside`, server, steps };
}
