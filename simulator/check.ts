/**
 * Property-based race checking. fast-check generates small worlds — a few
 * workers and clients, keep-alive and grace windows, service times and
 * latencies down to fractions of a millisecond, signals at arbitrary offsets
 * — runs each through the simulator, and evaluates the model's properties on
 * the trace. A property a policy promises must hold in every run; for the
 * other policies the checker hunts a counterexample and shrinks it to a
 * minimal timeline. Every property also names its race window: a check whose
 * runs never reached the window has checked nothing and fails.
 */
import fc from 'fast-check';
import { z } from 'zod';
import type { TraceEvent } from '../model/events.ts';
import { DEFAULT_SERVER_PARAMS } from '../model/params.ts';
import { getPolicy, type PolicySpec } from '../model/policies.ts';
import type { MachineView } from '../model/view.ts';
import { propertiesFor, windowHits, type Property, type RaceWindow } from '../model/properties.ts';
import { replayMachines } from '../model/replay.ts';
import { runtimesFor } from '../model/machines/index.ts';
import { makeHeader, type Trace } from '../model/trace.ts';
import { SimulationInvariantError } from './engine.ts';
import { runScenario } from './run.ts';
import type { ScenarioParams, ScheduledSignal } from './scenarios.ts';

/** The signals of a race world, built by running its commands (fast-check shrinks what ran). */
interface SignalSchedule {
  atMs: number;
  readonly signals: ScheduledSignal[];
}

type SignalCommand = fc.Command<SignalSchedule, null>;

/** After `afterMs`, a signal to the arbiter: TERM, INT, QUIT, HUP, TTIN, TTOU — in any order, INT/QUIT after TERM, HUP during a drain. */
class ArbiterSignalCommand implements SignalCommand {
  constructor(
    readonly afterMs: number,
    readonly signal: 'TERM' | 'INT' | 'QUIT' | 'HUP' | 'TTIN' | 'TTOU',
  ) {}
  check = () => true;
  run(schedule: SignalSchedule): void {
    schedule.atMs += this.afterMs;
    schedule.signals.push({ atMs: schedule.atMs, signal: this.signal });
  }
  toString = () => `+${this.afterMs}ms ${this.signal}`;
}

/** After `afterMs`, a signal to a worker from outside: KILL (the OOM killer), STOP and CONT (a debugger, a frozen VM). */
class WorkerSignalCommand implements SignalCommand {
  constructor(
    readonly afterMs: number,
    readonly signal: 'KILL' | 'STOP' | 'CONT',
    readonly worker: number,
  ) {}
  check = () => true;
  run(schedule: SignalSchedule): void {
    schedule.atMs += this.afterMs;
    schedule.signals.push({ atMs: schedule.atMs, signal: this.signal, worker: this.worker });
  }
  toString = () => `+${this.afterMs}ms ${this.signal} worker#${this.worker}`;
}

/** The signals the commands schedule, in order (running them marks them for fast-check's shrinking). */
export function signalsOf(commands: Iterable<SignalCommand>): ScheduledSignal[] {
  const schedule: SignalSchedule = { atMs: 0, signals: [] };
  fc.modelRun(() => ({ model: schedule, real: null }), commands);
  return schedule.signals;
}

/** The parameters of a generated world (everything but its signals). */
interface WorldParams {
  workers: number;
  threads: number;
  keepAliveMs: number;
  idleGraceMs: number;
  gracefulTimeoutMs: number;
  maxRequests: number;
  requests: number;
  concurrency: number;
  serviceMinMs: number;
  serviceSpreadMs: number;
  latencyMs: number;
  thinkMs: number;
  thinkNearIdleWindow: boolean;
  thinkOffsetMs: number;
  workerConnections: number;
  backlog: number;
  family: 'tcp' | 'unix';
  /** The heartbeat watchdog: a stopped worker is killed this long after its last heartbeat. */
  timeoutMs: number;
  seed: number;
}

/** A world as fast-check generates it: its parameters, and its signals as shrinkable commands. */
export interface RaceCase extends WorldParams {
  commands: Iterable<SignalCommand>;
}

/** A world as data: what a counterexample prints and `quiesce check --world` replays, exactly. */
export interface RaceWorld extends WorldParams {
  signals: ScheduledSignal[];
}

/** Run the commands (fast-check then knows they ran, for its shrinking) and keep their signals. */
export function worldOf(c: RaceCase): RaceWorld {
  const { commands, ...params } = c;
  return { ...params, signals: signalsOf(commands) };
}

const signalSchema = z.union([
  z.strictObject({ atMs: z.number().nonnegative(), signal: z.enum(['TERM', 'INT', 'QUIT', 'HUP', 'TTIN', 'TTOU']) }),
  z.strictObject({ atMs: z.number().nonnegative(), signal: z.enum(['KILL', 'STOP', 'CONT']), worker: z.number().int().nonnegative() }),
]);

/** What `--world` accepts: a world as a counterexample printed it. */
export const raceWorldSchema = z.strictObject({
  workers: z.number().int().min(1).max(16),
  threads: z.number().int().min(1).max(64),
  keepAliveMs: z.number().nonnegative(),
  idleGraceMs: z.number().nonnegative(),
  gracefulTimeoutMs: z.number().nonnegative(),
  maxRequests: z.number().int().nonnegative(),
  requests: z.number().int().min(1).max(10_000),
  concurrency: z.number().int().min(1).max(100),
  serviceMinMs: z.number().nonnegative(),
  serviceSpreadMs: z.number().nonnegative(),
  latencyMs: z.number().positive(),
  thinkMs: z.number().nonnegative(),
  thinkNearIdleWindow: z.boolean(),
  thinkOffsetMs: z.number(),
  workerConnections: z.number().int().min(1),
  backlog: z.number().int().nonnegative(),
  family: z.enum(['tcp', 'unix']),
  timeoutMs: z.number().nonnegative(),
  seed: z.number().int().nonnegative(),
  signals: z.array(signalSchema).max(100),
});

function microseconds(minMs: number, maxMs: number): fc.Arbitrary<number> {
  return fc.integer({ min: Math.round(minMs * 1000), max: Math.round(maxMs * 1000) }).map((us) => us / 1000);
}

/** Small worlds: small enough to shrink to a readable timeline, rich enough to hit every window. */
export const raceCaseArbitrary: fc.Arbitrary<RaceCase> = fc.record({
  workers: fc.integer({ min: 1, max: 2 }),
  threads: fc.integer({ min: 1, max: 3 }),
  keepAliveMs: fc.integer({ min: 1, max: 3000 }),
  idleGraceMs: fc.integer({ min: 1, max: 1500 }),
  // Often shorter than a slow handler, so that the deadline itself is exercised.
  gracefulTimeoutMs: fc.oneof(fc.integer({ min: 10, max: 300 }), fc.integer({ min: 300, max: 5000 })),
  maxRequests: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 8 })),
  requests: fc.integer({ min: 1, max: 24 }),
  concurrency: fc.integer({ min: 1, max: 4 }),
  // Timings are whole microseconds: sub-millisecond resolution, and integers shrink fast.
  serviceMinMs: microseconds(0, 40),
  // Now and then a slow request, so that a drain outlasts heartbeats and deadlines.
  serviceSpreadMs: fc.oneof(microseconds(0, 40), microseconds(0, 400), microseconds(0, 1500)),
  latencyMs: microseconds(0.001, 2),
  thinkMs: fc.oneof(fc.constant(0), microseconds(0, 1500)),
  // Aim at the race: a client that pauses about as long as the server's idle window.
  thinkNearIdleWindow: fc.boolean(),
  thinkOffsetMs: microseconds(-2, 2),
  workerConnections: fc.integer({ min: 1, max: 8 }),
  backlog: fc.integer({ min: 0, max: 8 }),
  family: fc.constantFrom('tcp' as const, 'unix' as const),
  timeoutMs: fc.integer({ min: 300, max: 2000 }),
  commands: fc.commands(
    [
      fc
        .tuple(microseconds(0, 200), fc.constantFrom('TERM' as const, 'INT' as const, 'QUIT' as const, 'HUP' as const, 'TTIN' as const, 'TTOU' as const))
        .map(([afterMs, signal]) => new ArbiterSignalCommand(afterMs, signal)),
      fc
        .tuple(microseconds(0, 200), fc.constantFrom('KILL' as const, 'STOP' as const, 'CONT' as const), fc.integer({ min: 0, max: 3 }))
        .map(([afterMs, signal, worker]) => new WorkerSignalCommand(afterMs, signal, worker)),
    ],
    { maxCommands: 4 },
  ),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

function thinkOf(c: WorldParams): number {
  if (!c.thinkNearIdleWindow) return c.thinkMs;
  return Math.max(0, Math.min(c.idleGraceMs, c.keepAliveMs) + c.thinkOffsetMs);
}

export function scenarioParamsOf(c: RaceWorld): ScenarioParams {
  return {
    server: {
      ...DEFAULT_SERVER_PARAMS,
      workers: c.workers,
      threads: c.threads,
      keepAliveMs: c.keepAliveMs,
      idleGraceMs: c.idleGraceMs,
      gracefulTimeoutMs: c.gracefulTimeoutMs,
      maxRequests: c.maxRequests,
      heartbeatIntervalMs: 200,
      timeoutMs: c.timeoutMs,
      arbiterTickMs: 100,
      workerConnections: c.workerConnections,
      backlog: c.backlog,
      family: c.family,
    },
    load: { kind: 'ab', requests: c.requests, concurrency: Math.min(c.concurrency, c.requests), keepAlive: true, timeoutMs: 30_000, thinkMs: thinkOf(c) },
    latencyMs: c.latencyMs,
    bootMs: 5,
    serviceMinMs: c.serviceMinMs,
    serviceMaxMs: c.serviceMinMs + c.serviceSpreadMs,
    loopTickMs: 50,
    loopback: true,
    signals: c.signals,
  };
}

/** A world as one line of JSON: what `quiesce check --world` takes back. */
export function describeWorld(world: RaceWorld): string {
  return JSON.stringify(world);
}

/** `events`: where the run's events go as they come (a run the simulator refuses midway leaves what came before it). */
export function traceOf(c: RaceWorld, policy: string, events: TraceEvent[] = []): Trace {
  // Small worlds quiesce within seconds of virtual time and a few thousand steps.
  const result = runScenario({ scenario: 'race', policy, seed: c.seed, params: scenarioParamsOf(c), onEvent: (e) => events.push(e), maxVirtualMs: 600_000, maxSteps: 200_000 });
  return { header: result.header, events };
}

export interface CheckOutcome {
  readonly policy: string;
  readonly property: string;
  readonly expected: boolean;
  /** 'held': no counterexample in the runs; 'violated': found one (an error only when expected). */
  readonly status: 'held' | 'violated' | 'window-unreached' | 'nonconforming';
  /** Generated worlds asked for (fast-check numRuns). */
  readonly runs: number;
  /** Worlds actually simulated, shrinking included: the denominator of windowHits. */
  readonly evaluated: number;
  readonly windowHits: Partial<Record<RaceWindow, number>>;
  readonly counterexample?: { world: RaceWorld; trace: Trace; index: number; message: string };
  readonly seed: number;
}

export interface CheckOptions {
  policies: readonly string[];
  properties?: readonly string[];
  runs: number;
  seed: number;
  onOutcome?: (outcome: CheckOutcome, done: number) => void;
}

function propertyNamed(name: string, c: RaceWorld): Property {
  const p = propertiesFor(scenarioParamsOf(c).server).find((q) => q.name === name);
  if (!p) throw new Error(`no property ${name}`);
  return p;
}

/** Run one world under a policy: its trace and the machines' view of it, or what broke the machines. */
function runWorld(world: RaceWorld, policy: PolicySpec): { trace: Trace; view?: MachineView; nonconforming?: string } {
  let trace: Trace;
  const events: TraceEvent[] = [];
  try {
    trace = traceOf(world, policy.name, events);
  } catch (error) {
    if (!(error instanceof SimulationInvariantError)) throw error;
    // The events up to the one the machines refused: the counterexample's timeline shows how it came to that.
    return { trace: { header: makeHeader(policy.name, scenarioParamsOf(world).server, false), events }, nonconforming: error.message };
  }
  const machines = replayMachines(trace, runtimesFor(policy, trace.header.params));
  if (machines.violation) return { trace, nonconforming: machines.violation.message };
  return { trace, view: machines.view };
}

/** The outcome of one world for one property: a counterexample when it breaks. */
function outcomeOf(world: RaceWorld, policy: PolicySpec, propertyName: string): { status: 'held' | 'violated' | 'nonconforming'; counterexample?: CheckOutcome['counterexample'] } {
  const run = runWorld(world, policy);
  if (run.nonconforming !== undefined) {
    return { status: 'nonconforming', counterexample: { world, trace: run.trace, index: Math.max(0, run.trace.events.length - 1), message: run.nonconforming } };
  }
  const verdict = propertyNamed(propertyName, world).check(run.trace, run.view!);
  if (verdict.holds) return { status: 'held' };
  return { status: 'violated', counterexample: { world, trace: run.trace, index: verdict.violation?.index ?? run.trace.events.length - 1, message: verdict.violation?.message ?? '' } };
}

/** Check one property under one policy. */
export function checkOne(policyName: string, propertyName: string, options: { runs: number; seed: number }): CheckOutcome {
  const policy = getPolicy(policyName);
  const probe = propertiesFor(DEFAULT_SERVER_PARAMS).find((p) => p.name === propertyName);
  if (!probe) throw new Error(`no property ${propertyName}`);
  const expected = probe.expectedBy(policy);
  const hits: Partial<Record<RaceWindow, number>> = {};
  let runs = 0;

  const predicate = (c: RaceCase): boolean => {
    runs++;
    const world = worldOf(c);
    const run = runWorld(world, policy);
    if (run.nonconforming !== undefined) return false;
    const windows = windowHits(run.trace, run.view!);
    for (const w of probe.windows) hits[w] = (hits[w] ?? 0) + (windows[w] > 0 ? 1 : 0);
    return propertyNamed(propertyName, world).check(run.trace, run.view!).holds;
  };

  const result = fc.check(fc.property(raceCaseArbitrary, predicate), { numRuns: options.runs, seed: options.seed, endOnFailure: false });
  const base = { policy: policyName, property: propertyName, expected, runs: options.runs, evaluated: runs, windowHits: hits, seed: options.seed };
  if (result.failed && result.counterexample) {
    const outcome = outcomeOf(worldOf(result.counterexample[0]), policy, propertyName);
    return { ...base, status: outcome.status === 'held' ? 'violated' : outcome.status, ...(outcome.counterexample ? { counterexample: outcome.counterexample } : {}) };
  }
  const reached = probe.windows.some((w) => (hits[w] ?? 0) > 0);
  return { ...base, status: expected && !reached ? 'window-unreached' : 'held' };
}

/** Replay one world exactly (a counterexample's, as printed): the property held, broke, or the machines refused the run. */
export function checkWorld(policyName: string, propertyName: string, world: RaceWorld): CheckOutcome {
  const policy = getPolicy(policyName);
  const probe = propertiesFor(DEFAULT_SERVER_PARAMS).find((p) => p.name === propertyName);
  if (!probe) throw new Error(`no property ${propertyName}`);
  const outcome = outcomeOf(world, policy, propertyName);
  const run = outcome.counterexample ? null : runWorld(world, policy);
  const windows = run?.view ? windowHits(run.trace, run.view) : null;
  const hits: Partial<Record<RaceWindow, number>> = {};
  for (const w of probe.windows) hits[w] = windows && windows[w] > 0 ? 1 : 0;
  return { policy: policyName, property: propertyName, expected: probe.expectedBy(policy), runs: 1, evaluated: 1, windowHits: hits, seed: world.seed, status: outcome.status, ...(outcome.counterexample ? { counterexample: outcome.counterexample } : {}) };
}

export function check(options: CheckOptions): CheckOutcome[] {
  const outcomes: CheckOutcome[] = [];
  const names = options.properties ?? propertiesFor(DEFAULT_SERVER_PARAMS).map((p) => p.name);
  for (const policy of options.policies) {
    for (const property of names) {
      const outcome = checkOne(policy, property, options);
      outcomes.push(outcome);
      options.onOutcome?.(outcome, outcomes.length);
    }
  }
  return outcomes;
}

/** A must-hold property broke, the machines rejected a simulated trace, or a promised check never reached its window. */
export function isFailure(o: CheckOutcome): boolean {
  return o.status === 'nonconforming' || o.status === 'window-unreached' || (o.expected && o.status === 'violated');
}

/**
 * The counterexample as a short timeline: the events of the actors the
 * violation is about (the violating event's actor, the connection or client
 * it names, and their peers), one line each.
 */
export function timeline(trace: Trace, index: number): string[] {
  const focus = trace.events[index];
  if (!focus) return [];
  const actors = new Set<string>([focus.actor]);
  for (const value of Object.values(focus)) if (typeof value === 'string' && /^(conn|client|worker)\//.test(value)) actors.add(value);
  // Pull in the peer of each connection / client.
  for (const e of trace.events) {
    if (e.type === 'conn.open' && (actors.has(e.actor) || actors.has(e.client))) {
      actors.add(e.actor);
      actors.add(e.client);
      actors.add(e.worker);
    }
  }
  const signals = (e: TraceEvent) => e.type === 'arbiter.signal' || e.type === 'worker.signal' || e.type === 'worker.max-requests';
  const lines: string[] = [];
  trace.events.forEach((e, i) => {
    if (i > index) return;
    if (!actors.has(e.actor) && !signals(e)) return;
    if (e.type === 'worker.heartbeat') return;
    const { t, actor, type, ...payload } = e;
    const rest = Object.entries(payload).map(([k, v]) => `${k}=${v}`).join(' ');
    lines.push(`${i === index ? '▶' : ' '} ${t.toFixed(3).padStart(10)} ms  ${actor.padEnd(10)} ${type}${rest ? ' ' + rest : ''}`);
  });
  return lines;
}
