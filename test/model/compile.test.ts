/**
 * The compiled form is the machines, or it is nothing: for every machine
 * under every policy (and parameters that change its guards and timers),
 * fast-check drives XState's own transition() and the compiled form with the
 * same event sequences and requires, after every event, the same answer to
 * "is it accepted here?" for every event of the vocabulary, and for the event
 * taken the same state value, status, context and actions.
 *
 * The sequences are steered into the charts' depths: each step picks among
 * the events the reference accepts, so a run goes through drains, closes
 * and exits instead of bouncing off the initial state.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileMachine } from '../../model/compile.ts';
import { ARBITER_SIGNALS, WORKER_SIGNALS, type ActorKind } from '../../model/events.ts';
import { machineFor, machinesFor } from '../../model/machines/index.ts';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from '../../model/params.ts';
import { EVENT_TYPES } from '../../model/schemas.ts';
import { BASE_POLICY_NAMES, getPolicy, POLICY_NAMES } from '../../model/policies.ts';
import { xstateRuntime, type ActorState, type MachineRuntime } from '../../model/step.ts';

type Ev = { type: string } & Record<string, unknown>;

const workers = ['worker/1', 'worker/2', 'worker/3'];
const conns = ['conn/1.1', 'conn/1.2', 'conn/1.3'];
const clients = ['client/1', 'client/2'];
const reqs = ['r1', 'r2', 'r3'];
const each = <T,>(values: readonly T[], make: (v: T) => Ev) => values.map(make);

/** Every event of a machine's vocabulary, over small domains of ids. */
const VOCABULARY: Record<ActorKind, Ev[]> = {
  arbiter: [
    { type: 'arbiter.start', workers: 2 },
    ...each(ARBITER_SIGNALS, (signal) => ({ type: 'arbiter.signal', signal })),
    ...each(workers, (worker) => ({ type: 'arbiter.spawn', worker })),
    ...workers.flatMap((worker) => each(['TERM', 'ABRT', 'KILL'], (signal) => ({ type: 'arbiter.kill', worker, signal }))),
    ...workers.flatMap((worker) => each([0, -9], (code) => ({ type: 'arbiter.reap', worker, code }))),
    ...each(workers, (worker) => ({ type: 'arbiter.heartbeat', worker })),
    ...each(workers, (worker) => ({ type: 'arbiter.ready', worker })),
    { type: 'arbiter.tick' },
    { type: 'arbiter.graceful-timeout' },
    { type: 'arbiter.close-listener' },
    { type: 'arbiter.exit', code: 0 },
  ],
  listener: [
    { type: 'listener.open', family: 'unix', backlog: 1, somaxconn: 128 },
    ...each(['arbiter', 'worker/1', 'worker/2'], (holder) => ({ type: 'listener.hold', holder })),
    ...each(['arbiter', 'worker/1', 'worker/2'], (holder) => ({ type: 'listener.release', holder })),
    ...clients.flatMap((client) => [
      { type: 'listener.syn', client },
      { type: 'listener.overflow', client },
      { type: 'listener.refuse', client },
      { type: 'listener.reset', client },
      { type: 'listener.accept', client, conn: 'conn/1.1', worker: 'worker/1' },
    ]),
  ],
  worker: [
    ...each([undefined, 0, 1, 2], (maxRequests) => (maxRequests === undefined ? { type: 'worker.boot' } : { type: 'worker.boot', maxRequests })),
    { type: 'worker.ready' },
    { type: 'worker.heartbeat' },
    ...each(WORKER_SIGNALS, (signal) => ({ type: 'worker.signal', signal })),
    ...each(conns, (conn) => ({ type: 'worker.accept', conn })),
    ...conns.flatMap((conn) => each(reqs, (req) => ({ type: 'worker.request-start', conn, req }))),
    ...conns.flatMap((conn) => [{ type: 'worker.request-end', conn, req: 'r1' }]),
    { type: 'worker.max-requests' },
    ...each(conns, (conn) => ({ type: 'worker.conn-closed', conn })),
    { type: 'worker.close-listener' },
    { type: 'worker.graceful-timeout' },
    { type: 'worker.turn-end' },
    { type: 'worker.turn-timeout' },
    ...each([0, -9, 1, 70], (code) => ({ type: 'worker.exit', code })),
    { type: 'worker.crash', code: 70 },
    { type: 'worker.crash', code: -11, signal: 'SEGV' },
  ],
  conn: [
    { type: 'conn.open', worker: 'worker/1', client: 'client/1' },
    ...reqs.flatMap((req) => [
      { type: 'conn.bytes', req },
      { type: 'conn.read', req },
      { type: 'conn.read', req, keepAlive: false },
      { type: 'conn.handler-start', req },
      { type: 'conn.handler-finish', req },
      { type: 'conn.respond', req, status: 200, close: false },
      { type: 'conn.respond', req, status: 200, close: true },
    ]),
    ...each(['conn.drain', 'conn.keepalive-timeout', 'conn.grace-timeout', 'conn.linger-timeout', 'conn.header-timeout', 'conn.peer-fin', 'conn.peer-rst', 'conn.half-close', 'conn.returned', 'conn.dispatch', 'conn.turn-end'], (type) => ({ type })),
    ...each(['worker-exit', 'quit', 'deadline', 'killed', 'crashed', 'error'], (reason) => ({ type: 'conn.abort', reason })),
    { type: 'conn.close', rst: false },
    { type: 'conn.close', rst: true },
  ],
  client: [
    { type: 'client.connect' },
    { type: 'client.syn-retry', attempt: 1 },
    { type: 'client.connected' },
    ...reqs.flatMap((req) => [
      { type: 'client.send', req, idempotent: true },
      { type: 'client.response', req, status: 200, close: false },
      { type: 'client.response', req, status: 200, close: true },
      { type: 'client.fail', reason: 'reset', req },
      { type: 'client.fail', reason: 'empty-reply', req, status: 502 },
    ]),
    ...each(['eagain', 'refused', 'connect-timeout', 'reset'], (reason) => ({ type: 'client.fail', reason })),
    { type: 'client.eof' },
    { type: 'client.close' },
  ],
};

/** Parameters that change guards and timers: keep-alive off, header timer on, recycling, one thread, a watchdog. */
const paramsArbitrary: fc.Arbitrary<ServerParams> = fc.record({
  keepAliveMs: fc.constantFrom(0, 2000),
  headerTimeoutMs: fc.constantFrom(0, 500),
  maxRequests: fc.constantFrom(0, 2),
  maxRequestsJitter: fc.constantFrom(0, 1),
  threads: fc.constantFrom(1, 2),
  workerConnections: fc.constantFrom(1, 3),
  timeoutMs: fc.constantFrom(0, 3000),
  arbiterTickMs: fc.constantFrom(1000, 250),
}).map((p) => ({ ...DEFAULT_SERVER_PARAMS, ...p }));

const strip = (actions: readonly { type: string; params?: unknown }[]) => actions.map((a) => ({ type: a.type, params: a.params }));

function equivalent(kind: ActorKind, policy: string, params: ServerParams, choices: readonly number[]): void {
  const machine = machineFor(machinesFor(getPolicy(policy), params), kind);
  const reference: MachineRuntime = xstateRuntime(machine);
  const compiled: MachineRuntime = compileMachine(machine);
  const vocabulary = VOCABULARY[kind];
  let a: ActorState = reference.initial().state;
  let b: ActorState = compiled.initial().state;
  expect(b.value).toEqual(a.value);
  expect(b.context).toEqual(a.context);
  const trail: string[] = [];
  for (const choice of choices) {
    // The same answer for every event of the vocabulary.
    const acceptedA = vocabulary.filter((e) => reference.accepts(a, e));
    const acceptedB = vocabulary.filter((e) => compiled.accepts(b, e));
    expect(acceptedB, `${kind} under ${policy} after ${trail.join(' → ') || 'start'}`).toEqual(acceptedA);
    if (acceptedA.length === 0) return;
    const event = acceptedA[choice % acceptedA.length]!;
    trail.push(event.type);
    const stepA = reference.step(a, event);
    const stepB = compiled.step(b, event);
    const at = `${kind} under ${policy} after ${trail.join(' → ')}`;
    expect(stepB.state.value, at).toEqual(stepA.state.value);
    expect(stepB.state.status, at).toEqual(stepA.state.status);
    expect(stepB.state.context, at).toEqual(stepA.state.context);
    expect(strip(stepB.actions), at).toEqual(strip(stepA.actions));
    expect(compiled.stateName(stepB.state), at).toEqual(reference.stateName(stepA.state));
    expect(compiled.eventsHandledIn(stepB.state), at).toEqual(reference.eventsHandledIn(stepA.state));
    a = stepA.state;
    b = stepB.state;
  }
}

describe('the compiled machines behave as XState runs the same definitions', () => {
  for (const kind of ['arbiter', 'listener', 'worker', 'conn', 'client'] as const) {
    it(`${kind}, under every policy`, () => {
      fc.assert(
        fc.property(fc.constantFrom(...POLICY_NAMES), paramsArbitrary, fc.array(fc.nat(), { minLength: 1, maxLength: 40 }), (policy, params, choices) =>
          equivalent(kind, policy, params, choices),
        ),
        { numRuns: kind === 'worker' || kind === 'conn' ? 300 : 100 },
      );
    });
  }

  it('drives every event of the trace vocabulary (a new event type is compiled and compared too)', () => {
    const driven = new Set(Object.values(VOCABULARY).flatMap((events) => events.map((e) => e.type)));
    expect(EVENT_TYPES.filter((type) => !driven.has(type))).toEqual([]);
  });

  it('matches and tags as XState does', () => {
    const machines = machinesFor(getPolicy('safe-drain'), DEFAULT_SERVER_PARAMS);
    const compiled = compileMachine(machines.worker);
    const reference = xstateRuntime(machines.worker);
    let a = reference.initial().state;
    let b = compiled.initial().state;
    for (const event of [{ type: 'worker.boot' }, { type: 'worker.ready' }, { type: 'worker.signal', signal: 'TERM' }]) {
      a = reference.step(a, event).state;
      b = compiled.step(b, event).state;
    }
    for (const query of ['alive', { alive: 'draining' }, { alive: { draining: 'closingListener' } }, 'alive.draining', { alive: 'serving' }, 'exiting']) {
      expect(compiled.matches(b, query), JSON.stringify(query)).toBe(reference.matches(a, query));
    }
    const listener = machinesFor(getPolicy('safe-drain'), DEFAULT_SERVER_PARAMS).listener;
    const l = compileMachine(listener);
    const r = xstateRuntime(listener);
    const open = { type: 'listener.open', family: 'tcp', backlog: 1, somaxconn: 1 };
    const hold = { type: 'listener.hold', holder: 'arbiter' };
    const release = { type: 'listener.release', holder: 'arbiter' };
    const lb = [open, hold, release].reduce((s, e) => l.step(s, e).state, l.initial().state);
    const rb = [open, hold, release].reduce((s, e) => r.step(s, e).state, r.initial().state);
    expect(l.hasTag(lb, 'quiescent')).toBe(true);
    expect(r.hasTag(rb, 'quiescent')).toBe(true);
  });

  it('every base policy compiles', () => {
    for (const policy of BASE_POLICY_NAMES) {
      const machines = machinesFor(getPolicy(policy), DEFAULT_SERVER_PARAMS);
      for (const kind of ['arbiter', 'listener', 'worker', 'conn', 'client'] as const) expect(() => compileMachine(machines[kind])).not.toThrow();
    }
  });
});
