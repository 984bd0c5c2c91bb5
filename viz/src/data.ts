/**
 * A trace as the timeline draws it: one lane per actor with its machine's
 * state over time (replayed through the same machines), its events, the
 * requests as spans from send to outcome, and each failure with its race
 * window — from the client's send to the server's close or RST of that
 * connection.
 */
import { actorKind, type ActorKind, type ClientId, type ConnId, type TraceEvent } from '../../model/events.ts';
import { getPolicy } from '../../model/policies.ts';
import { runtimeFor, runtimesFor } from '../../model/machines/index.ts';
import { replay, type Verdict } from '../../model/replay.ts';
import type { Trace } from '../../model/trace.ts';
import type { ActorState } from '../../model/step.ts';

export interface StateSpan {
  readonly startMs: number;
  readonly endMs: number;
  readonly state: string;
}

export interface Lane {
  readonly actor: string;
  readonly kind: ActorKind;
  readonly spans: StateSpan[];
  /** Indexes into the trace's events, in time order. */
  readonly events: number[];
}

export interface RequestSpan {
  readonly client: ClientId;
  readonly req: string;
  readonly sentMs: number;
  readonly endMs: number;
  readonly ok: boolean;
}

export interface Failure {
  readonly client: ClientId;
  readonly index: number;
  readonly atMs: number;
  readonly reason: string;
  /** The simulator's cause name when the run came from it, else the client's reason. */
  readonly mechanism: string;
  /** The race window: the request's send, and the server's close or RST of its connection (if it closed). */
  readonly window: { readonly conn: ConnId | null; readonly fromMs: number; readonly toMs: number } | null;
}

export interface TimelineModel {
  readonly trace: Trace;
  readonly lanes: Lane[];
  readonly requests: RequestSpan[];
  readonly failures: Failure[];
  readonly startMs: number;
  readonly endMs: number;
  readonly verdict: Verdict;
  /** The state of an actor just after an event index, for the machine view. */
  stateAt(actor: string, index: number): { state: string; transitions: { from: string; to: string; event: string; index: number }[] };
}

const KIND_ORDER: Record<ActorKind, number> = { arbiter: 0, listener: 1, worker: 2, conn: 3, client: 4 };

function actorOrder(a: string, b: string): number {
  const ka = KIND_ORDER[actorKind(a)!];
  const kb = KIND_ORDER[actorKind(b)!];
  if (ka !== kb) return ka - kb;
  const na = a.split(/[/.]/).slice(1).map(Number);
  const nb = b.split(/[/.]/).slice(1).map(Number);
  for (let i = 0; i < Math.max(na.length, nb.length); i++) if ((na[i] ?? 0) !== (nb[i] ?? 0)) return (na[i] ?? 0) - (nb[i] ?? 0);
  return 0;
}

/** Build the timeline from a trace; `mechanisms` names each failure's cause when the simulator ran it. */
export function timelineOf(trace: Trace, mechanisms: ReadonlyMap<string, string> = new Map()): TimelineModel {
  const policy = getPolicy(trace.header.policy);
  const runtimes = runtimesFor(policy, trace.header.params);
  const states = new Map<string, ActorState>();
  const lanes = new Map<string, Lane & { current: string; since: number; done: boolean }>();
  const history = new Map<string, { from: string; to: string; event: string; index: number }[]>();
  const events = trace.events;
  const startMs = events[0]?.t ?? 0;
  const endMs = Math.max(startMs + 1, events.at(-1)?.t ?? 0);
  events.forEach((e, index) => {
    const kind = actorKind(e.actor)!;
    const runtime = runtimeFor(runtimes, kind);
    let lane = lanes.get(e.actor);
    let state = states.get(e.actor);
    if (!lane || !state) {
      state = runtime.initial().state;
      lane = { actor: e.actor, kind, spans: [], events: [], current: runtime.stateName(state), since: e.t, done: false };
      lanes.set(e.actor, lane);
    }
    lane.events.push(index);
    const { t: _t, actor: _a, ...input } = e;
    const next = runtime.tryStep(state, input);
    if (!next) return; // the replay verdict says where the trace leaves the machines
    states.set(e.actor, next.state);
    const name = runtime.stateName(next.state);
    // A finished actor (an exited process, a closed socket) has its final state, and no band after it.
    lane.done = next.state.status === 'done';
    if (name !== lane.current) {
      if (e.t > lane.since) lane.spans.push({ startMs: lane.since, endMs: e.t, state: lane.current });
      const list = history.get(e.actor) ?? [];
      list.push({ from: lane.current, to: name, event: e.type, index });
      history.set(e.actor, list);
      lane.current = name;
      lane.since = e.t;
    }
  });
  for (const lane of lanes.values()) if (!lane.done) lane.spans.push({ startMs: lane.since, endMs, state: lane.current });

  // Requests and failures, from the client's side; race windows reach across to the server's connection.
  const connOfClient = new Map<ClientId, ConnId>();
  const closeOfConn = new Map<ConnId, number>();
  const sent = new Map<string, { client: ClientId; t: number }>();
  const lastSendOf = new Map<ClientId, number>();
  const requests: RequestSpan[] = [];
  const failures: Failure[] = [];
  events.forEach((e, index) => {
    if (e.type === 'conn.open') connOfClient.set(e.client, e.actor);
    else if ((e.type === 'conn.close' || e.type === 'conn.half-close') && !closeOfConn.has(e.actor)) closeOfConn.set(e.actor, e.t);
    else if (e.type === 'client.send') {
      sent.set(e.req, { client: e.actor, t: e.t });
      lastSendOf.set(e.actor, e.t);
    } else if (e.type === 'client.response') {
      const s = sent.get(e.req);
      if (s) requests.push({ client: e.actor, req: e.req, sentMs: s.t, endMs: e.t, ok: true });
    } else if (e.type === 'client.fail') {
      const s = e.req ? sent.get(e.req) : undefined;
      if (s && e.req) requests.push({ client: e.actor, req: e.req, sentMs: s.t, endMs: e.t, ok: false });
      failures.push({ client: e.actor, index, atMs: e.t, reason: e.reason, mechanism: mechanisms.get(`${e.actor}@${e.t}`) ?? e.reason, window: null });
    }
  });
  const withWindows = failures.map((f) => {
    const conn = connOfClient.get(f.client) ?? null;
    const fromMs = lastSendOf.get(f.client);
    if (fromMs === undefined || fromMs > f.atMs) return f;
    const closedMs = conn ? closeOfConn.get(conn) : undefined;
    return { ...f, window: { conn, fromMs: Math.min(fromMs, closedMs ?? fromMs), toMs: closedMs !== undefined ? Math.max(closedMs, fromMs) : f.atMs } };
  });

  // The parser has checked the header (its policy is known): replay judges only the events.
  const verdict = replay(trace);
  const laneList = [...lanes.values()].sort((a, b) => actorOrder(a.actor, b.actor)).map(({ actor, kind, spans, events: ev }) => ({ actor, kind, spans, events: ev }));
  return {
    trace,
    lanes: laneList,
    requests,
    failures: withWindows,
    startMs,
    endMs,
    verdict,
    stateAt(actor, index) {
      const list = history.get(actor) ?? [];
      const taken = list.filter((h) => h.index <= index);
      const lane = laneList.find((l) => l.actor === actor);
      const first = list[0]?.from ?? lane?.spans[0]?.state ?? '';
      return { state: taken.at(-1)?.to ?? first, transitions: taken };
    },
  };
}
