/**
 * Conformance of a trace to the machines: every event must be accepted by
 * its actor's machine in the state that actor is in (XState would silently
 * ignore it; we do not), the properties the policy promises must hold, and
 * in a complete trace every actor must end at rest.
 *
 * Replaying also yields what the properties need to know about the
 * machines' states along the way (`MachineView`): when each worker was
 * draining is what its machine said, not a guess from the events.
 */
import { actorKind, type ActorId, type TraceEvent, type WorkerId } from './events.ts';
import { runtimeFor, runtimesFor, type Runtimes } from './machines/index.ts';
import { getPolicy, type PolicySpec } from './policies.ts';
import { propertiesFor, type Property } from './properties.ts';
import { isAtRest, type ActorState } from './step.ts';
import { lineOf, type Trace } from './trace.ts';
import { TimerWatch, toleranceFor, type TimerTolerance } from './timing.ts';
import { MachineView, type DrainSpan } from './view.ts';

export type Verdict =
  | { readonly ok: true; readonly events: number; readonly actors: number; readonly properties: readonly string[] }
  | { readonly ok: false; readonly violation: ReplayViolation };

export type ReplayViolation =
  | {
      readonly kind: 'unexpected-event';
      readonly line: number;
      readonly actor: string;
      readonly state: string;
      readonly event: TraceEvent;
      /** Event types the actor's state has transitions for (some may be guarded off). */
      readonly expected: readonly string[];
      readonly message: string;
    }
  | { readonly kind: 'property'; readonly line: number; readonly property: string; readonly statement: string; readonly message: string }
  | { readonly kind: 'not-at-rest'; readonly line: number; readonly actor: string; readonly state: string; readonly message: string }
  /** A timer's event came earlier than its delay allows, later than the tolerance, or never came (model/timing.ts). */
  | { readonly kind: 'timer'; readonly line: number; readonly actor: string; readonly message: string }
  /** The trace holds only some events (its header's `events`, model/trace.ts): the machines cannot replay it. */
  | { readonly kind: 'partial-trace'; readonly line: 1; readonly message: string };

export interface ReplayOptions {
  /** Check these properties instead of the ones the policy promises. */
  readonly properties?: readonly Property[];
  /** Override the header's completeness claim. */
  readonly complete?: boolean;
  /** How far a timer's event may be from its due time; by default what the header implies (model/timing.ts); 'off' skips the check. */
  readonly timerTolerance?: TimerTolerance | 'off';
}

function machineEvent(event: TraceEvent): { type: string } {
  const { t: _t, actor: _actor, ...rest } = event;
  return rest;
}

export interface MachinesReplay {
  readonly states: Map<string, ActorState>;
  readonly view: MachineView;
  readonly violation?: ReplayViolation;
}

/** Run each actor's events through its machine; returns the final states and the view, or the first rejected event. */
export function replayMachines(trace: Trace, runtimes: Runtimes, tolerance: TimerTolerance | 'off' = toleranceFor(trace.header)): MachinesReplay {
  const timers = tolerance === 'off' ? null : new TimerWatch(tolerance, (index) => lineOf(trace, index));
  const states = new Map<string, ActorState>();
  const spans = new Map<WorkerId, { startIndex: number; startMs: number; endIndex: number | null; endMs: number | null }>();
  const view = () => new MachineView(spans as Map<WorkerId, DrainSpan>);
  for (let i = 0; i < trace.events.length; i++) {
    const event = trace.events[i]!;
    const kind = actorKind(event.actor);
    if (!kind) throw new Error(`unreachable: parser admitted actor ${event.actor}`);
    const runtime = runtimeFor(runtimes, kind);
    let state = states.get(event.actor);
    if (state === undefined) {
      const initial = runtime.initial();
      state = initial.state;
      timers?.apply(event.actor as ActorId, event.t, i, initial.actions);
    }
    const input = machineEvent(event);
    if (!runtime.accepts(state, input)) {
      const done = state.status === 'done';
      const stateName = done ? `${runtime.stateName(state)} (final)` : runtime.stateName(state);
      const expected = done ? [] : runtime.eventsHandledIn(state);
      const line = lineOf(trace, i);
      return {
        states,
        view: view(),
        violation: {
          kind: 'unexpected-event',
          line,
          actor: event.actor,
          state: stateName,
          event,
          expected,
          message:
            `line ${line}: ${event.actor} in state ${stateName} does not accept ${event.type}` +
            (expected.length > 0 ? `; it accepts: ${expected.join(', ')} (where their guards allow)` : '; it has finished'),
        },
      };
    }
    const late = timers?.before(event, i);
    if (late) return { states, view: view(), violation: { kind: 'timer', line: lineOf(trace, i), actor: late.actor, message: `line ${lineOf(trace, i)}: ${late.message}` } };
    const stepped = runtime.step(state, input);
    state = stepped.state;
    timers?.after(event, i, stepped.actions, state.status === 'done');
    states.set(event.actor, state);
    if (kind === 'worker') {
      const worker = event.actor as WorkerId;
      const draining = runtime.matches(state, { alive: 'draining' });
      const span = spans.get(worker);
      if (draining && span === undefined) spans.set(worker, { startIndex: i, startMs: event.t, endIndex: null, endMs: null });
      else if (!draining && span !== undefined && span.endIndex === null) {
        span.endIndex = i;
        span.endMs = event.t;
      }
    }
  }
  return { states, view: view() };
}

export function checkProperties(trace: Trace, view: MachineView, properties: readonly Property[]): ReplayViolation | undefined {
  for (const property of properties) {
    const result = property.check(trace, view);
    if (!result.holds && result.violation) {
      const line = lineOf(trace, result.violation.index);
      return {
        kind: 'property',
        line,
        property: property.name,
        statement: property.statement,
        message: `line ${line}: property ${property.name} broken: ${result.violation.message}`,
      };
    }
  }
  return undefined;
}

/**
 * The properties a trace's policy promises. A header whose meta says `heartbeats: false` comes from a
 * platform that models no heartbeats (the explorer's): it promises nothing about them.
 */
export function promisedProperties(policy: PolicySpec, trace: Trace): Property[] {
  const noHeartbeats = trace.header.meta?.['heartbeats'] === false;
  return propertiesFor(trace.header.params).filter((p) => p.expectedBy(policy) && !(noHeartbeats && p.name === 'draining-worker-heartbeats'));
}

export function replay(trace: Trace, policyName: string = trace.header.policy, options: ReplayOptions = {}): Verdict {
  if (trace.header.events === 'lifecycle') return { ok: false, violation: partialTrace() };
  const policy = getPolicy(policyName);
  const runtimes = runtimesFor(policy, trace.header.params);
  const { states, view, violation } = replayMachines(trace, runtimes, options.timerTolerance ?? toleranceFor(trace.header));
  if (violation) return { ok: false, violation };

  const properties = options.properties ?? promisedProperties(policy, trace);
  const broken = checkProperties(trace, view, properties);
  if (broken) return { ok: false, violation: broken };

  if (options.complete ?? trace.header.complete) {
    const lastLine = lineOf(trace, trace.events.length - 1);
    for (const [actor, state] of states) {
      const runtime = runtimeFor(runtimes, actorKind(actor)!);
      if (!isAtRest(runtime, state)) {
        const stateName = runtime.stateName(state);
        return {
          ok: false,
          violation: {
            kind: 'not-at-rest',
            line: lastLine,
            actor,
            state: stateName,
            message: `end of a complete trace (line ${lastLine}): ${actor} is still in state ${stateName}; it accepts: ${runtime.eventsHandledIn(state).join(', ')}`,
          },
        };
      }
    }
  }
  return { ok: true, events: trace.events.length, actors: states.size, properties: properties.map((p) => p.name) };
}

/** Why a lifecycle trace is not replayed: a worker's machine decides by its connections, and their events were left out. */
export function partialTrace(): Extract<ReplayViolation, { kind: 'partial-trace' }> {
  return {
    kind: 'partial-trace',
    line: 1,
    message: "line 1: a lifecycle trace (its header says \"events\":\"lifecycle\": written with --trace-events lifecycle) holds the processes' events without their connections' and requests', which the machines decide by: it cannot be replayed; write one with --trace-events all to check it",
  };
}
