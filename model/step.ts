/**
 * The one narrow seam between engines (simulator, server, explorer, replay
 * checker) and the machines: a `MachineRuntime` starts an actor, says whether
 * it accepts an event, and steps it. Everything that runs machines goes
 * through here, so the form that executes them — XState's own interpreter,
 * the reference, or a form compiled from the same definitions and tested
 * equivalent to it — is chosen in one place and nothing above changes.
 */
import { initialTransition, transition, type AnyMachineSnapshot, type AnyStateMachine, type StateValue } from 'xstate';

export type { StateValue };

/** An actor's state as engines see it: its context, whether it finished, and XState's state value. */
export interface ActorState<C = unknown> {
  readonly context: C;
  readonly status: 'active' | 'done' | 'error' | 'stopped';
  readonly value: StateValue;
}

/** An action the machine asks for: a command (`closeSocket`), a timer (`xstate.raise` with a delay) or its cancellation. */
export interface MachineAction {
  readonly type: string;
  readonly params?: unknown;
}

/** A delayed `raise`: the event the machine gives itself after `delay` ms, under the timer id `id`. */
export interface RaiseParams {
  readonly event: { readonly type: string };
  readonly delay: number;
  readonly id?: string;
}

export interface Step<C = unknown> {
  readonly state: ActorState<C>;
  readonly actions: readonly MachineAction[];
}

export interface MachineRuntime<C = unknown> {
  /** The chart's id: `worker`, `conn` … */
  readonly id: string;
  initial(): Step<C>;
  /**
   * Does the actor have an enabled transition for this event in its current
   * state (guards evaluated)? A transition with no target and no actions
   * counts: in a specification "accepted, nothing changes" (a heartbeat, a
   * second TERM) differs from "not allowed here".
   */
  accepts(state: ActorState<C>, event: { readonly type: string }): boolean;
  step(state: ActorState<C>, event: { readonly type: string }): Step<C>;
  /** `step` when the event is accepted, else null: one evaluation of the guards instead of two. */
  tryStep(state: ActorState<C>, event: { readonly type: string }): Step<C> | null;
  /** XState's `matches`: is the actor in this state (or a descendant of it)? */
  matches(state: ActorState<C>, value: StateValue): boolean;
  hasTag(state: ActorState<C>, tag: string): boolean;
  /** A readable state path: `idle.keptAlive`, `alive.draining.released`. */
  stateName(state: ActorState<C>): string;
  /** The event types the active states have transitions for (before guards): what the actor could take next. */
  eventsHandledIn(state: ActorState<C>): string[];
}

/** An actor is at rest when its machine reached a final state, or a state tagged quiescent (a closed listener). */
export function isAtRest<C>(runtime: MachineRuntime<C>, state: ActorState<C>): boolean {
  return state.status === 'done' || runtime.hasTag(state, 'quiescent');
}

/** XState's own interpreter (pure `transition()`): the reference every other form is tested against. */
export function xstateRuntime<C>(machine: AnyStateMachine): MachineRuntime<C> {
  const snap = (state: ActorState<C>) => state as unknown as AnyMachineSnapshot;
  return {
    id: machine.id,
    initial() {
      const [snapshot, actions] = initialTransition(machine);
      return { state: snapshot as unknown as ActorState<C>, actions: actions as MachineAction[] };
    },
    accepts(state, event) {
      if (state.status !== 'active') return false;
      const enabled = machine.getTransitionData(snap(state) as never, event as never);
      return enabled !== undefined && enabled.length > 0;
    },
    step(state, event) {
      const [next, actions] = transition(machine, snap(state) as never, event as never);
      return { state: next as unknown as ActorState<C>, actions: actions as MachineAction[] };
    },
    tryStep(state, event) {
      return this.accepts(state, event) ? this.step(state, event) : null;
    },
    matches: (state, value) => snap(state).matches(value),
    hasTag: (state, tag) => snap(state).hasTag(tag),
    stateName(state) {
      const leaves = snap(state)._nodes.filter((n) => n.type === 'atomic' || n.type === 'final');
      return leaves.map((n) => n.path.join('.')).join(' | ') || String(state.value);
    },
    eventsHandledIn(state) {
      const types = new Set<string>();
      for (const node of snap(state)._nodes) {
        for (const type of node.transitions.keys()) if (type !== '' && !type.startsWith('xstate.')) types.add(type);
      }
      return [...types].sort();
    },
  };
}

/** A state value as the dotted path of its one active leaf (none of the charts has parallel states). */
export function statePath(value: StateValue): string {
  if (typeof value === 'string') return value;
  const [key, child] = Object.entries(value)[0] ?? [];
  if (key === undefined) return '';
  return child === undefined || (typeof child === 'object' && Object.keys(child).length === 0) ? key : `${key}.${statePath(child as StateValue)}`;
}
