/**
 * Conformance of a trace to the machines: every event must be accepted by
 * its actor's machine in the state that actor is in (XState would silently
 * ignore it; we do not), the properties the policy promises must hold, and
 * in a complete trace every actor must end at rest.
 */
import { actorKind, type TraceEvent } from './events.ts';
import { machineFor, machinesFor, type PolicyMachines } from './machines/index.ts';
import { getPolicy, type PolicySpec } from './policies.ts';
import { propertiesFor, type Property } from './properties.ts';
import { accepts, eventsHandledIn, isAtRest, start, stateName, step, type Snapshot } from './step.ts';
import { lineOf, type Trace } from './trace.ts';

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
  | { readonly kind: 'not-at-rest'; readonly line: number; readonly actor: string; readonly state: string; readonly message: string };

export interface ReplayOptions {
  /** Check these properties instead of the ones the policy promises. */
  readonly properties?: readonly Property[];
  /** Override the header's completeness claim. */
  readonly complete?: boolean;
}

function machineEvent(event: TraceEvent): { type: string } {
  const { t: _t, actor: _actor, ...rest } = event;
  return rest;
}

/** Run each actor's events through its machine; returns the final snapshots, or the first rejected event. */
export function replayMachines(
  trace: Trace,
  machines: PolicyMachines,
): { snapshots: Map<string, Snapshot>; violation?: ReplayViolation } {
  const snapshots = new Map<string, Snapshot>();
  for (let i = 0; i < trace.events.length; i++) {
    const event = trace.events[i]!;
    const kind = actorKind(event.actor);
    if (!kind) throw new Error(`unreachable: parser admitted actor ${event.actor}`);
    const machine = machineFor(machines, kind);
    let snapshot = snapshots.get(event.actor) ?? start(machine).snapshot;
    const input = machineEvent(event);
    if (!accepts(snapshot, input)) {
      const state = snapshot.status === 'done' ? `${stateName(snapshot)} (final)` : stateName(snapshot);
      const expected = snapshot.status === 'done' ? [] : eventsHandledIn(snapshot);
      const line = lineOf(trace, i);
      return {
        snapshots,
        violation: {
          kind: 'unexpected-event',
          line,
          actor: event.actor,
          state,
          event,
          expected,
          message:
            `line ${line}: ${event.actor} in state ${state} does not accept ${event.type}` +
            (expected.length > 0 ? `; it accepts: ${expected.join(', ')} (where their guards allow)` : '; it has finished'),
        },
      };
    }
    snapshot = step(machine, snapshot, input).snapshot;
    snapshots.set(event.actor, snapshot);
  }
  return { snapshots };
}

export function checkProperties(trace: Trace, properties: readonly Property[]): ReplayViolation | undefined {
  for (const property of properties) {
    const result = property.check(trace);
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

export function promisedProperties(policy: PolicySpec, trace: Trace): Property[] {
  return propertiesFor(trace.header.params).filter((p) => p.expectedBy(policy));
}

export function replay(trace: Trace, policyName: string = trace.header.policy, options: ReplayOptions = {}): Verdict {
  const policy = getPolicy(policyName);
  const machines = machinesFor(policy, trace.header.params);
  const { snapshots, violation } = replayMachines(trace, machines);
  if (violation) return { ok: false, violation };

  const properties = options.properties ?? promisedProperties(policy, trace);
  const broken = checkProperties(trace, properties);
  if (broken) return { ok: false, violation: broken };

  if (options.complete ?? trace.header.complete) {
    const lastLine = lineOf(trace, trace.events.length - 1);
    for (const [actor, snapshot] of snapshots) {
      if (!isAtRest(snapshot)) {
        const state = stateName(snapshot);
        return {
          ok: false,
          violation: {
            kind: 'not-at-rest',
            line: lastLine,
            actor,
            state,
            message: `end of a complete trace (line ${lastLine}): ${actor} is still in state ${state}; it accepts: ${eventsHandledIn(snapshot).join(', ')}`,
          },
        };
      }
    }
  }
  return { ok: true, events: trace.events.length, actors: snapshots.size, properties: properties.map((p) => p.name) };
}
