/**
 * The one narrow seam between engines (simulator, explorer, replay checker)
 * and the machines: start an actor, ask whether it accepts an event, step it.
 * Everything that runs machines goes through here, so a faster form of the
 * same definitions can replace XState's interpreter on the hot path without
 * touching the engines.
 */
import { initialTransition, transition, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';

export type Snapshot = AnyMachineSnapshot;

/** An action the machine asks for: a command (`closeSocket`), a timer (`xstate.raise` with a delay) or its cancellation. */
export interface MachineAction {
  readonly type: string;
  readonly params?: unknown;
}

export interface Step {
  readonly snapshot: Snapshot;
  readonly actions: readonly MachineAction[];
}

export function start(machine: AnyStateMachine): Step {
  const [snapshot, actions] = initialTransition(machine);
  return { snapshot: snapshot as Snapshot, actions: actions as MachineAction[] };
}

/**
 * Does the actor have an enabled transition for this event in its current
 * state (guards evaluated)? Unlike `snapshot.can()`, a transition with no
 * target and no actions counts: in a specification "accepted, nothing
 * changes" (a heartbeat, a second TERM) differs from "not allowed here".
 */
export function accepts(snapshot: Snapshot, event: { type: string }): boolean {
  if (snapshot.status !== 'active') return false;
  const enabled = snapshot.machine.getTransitionData(snapshot as never, event as never);
  return enabled !== undefined && enabled.length > 0;
}

export function step(machine: AnyStateMachine, snapshot: Snapshot, event: { type: string }): Step {
  const [next, actions] = transition(machine, snapshot as never, event as never);
  return { snapshot: next as Snapshot, actions: actions as MachineAction[] };
}

/** The event types the active states have transitions for (before guards): what the actor could take next. */
export function eventsHandledIn(snapshot: Snapshot): string[] {
  const types = new Set<string>();
  for (const node of snapshot._nodes) {
    for (const type of node.transitions.keys()) if (type !== '' && !type.startsWith('xstate.')) types.add(type);
  }
  return [...types].sort();
}

/** A readable state path: `idle.keptAlive`, `alive.draining.released`. */
export function stateName(snapshot: Snapshot): string {
  const leaves = snapshot._nodes.filter((n) => n.type === 'atomic' || n.type === 'final');
  return leaves.map((n) => n.path.join('.')).join(' | ') || String(snapshot.value);
}

/** An actor is at rest when its machine reached a final state, or a state tagged quiescent (a closed listener). */
export function isAtRest(snapshot: Snapshot): boolean {
  return snapshot.status === 'done' || snapshot.hasTag('quiescent');
}
