import type { AnyStateMachine } from 'xstate';
import { accepts, start, stateName, step, type MachineAction, type Snapshot } from '../model/step.ts';

/** Drive one machine through events, failing loudly if any is rejected; returns the state and the last actions. */
export function drive(machine: AnyStateMachine, events: readonly ({ type: string } & Record<string, unknown>)[]): { snapshot: Snapshot; state: string; actions: MachineAction[] } {
  let { snapshot, actions } = start(machine);
  let last: MachineAction[] = [...actions];
  for (const event of events) {
    if (!accepts(snapshot, event)) throw new Error(`${event.type} rejected in ${stateName(snapshot)}`);
    const next = step(machine, snapshot, event);
    snapshot = next.snapshot;
    last = [...next.actions];
  }
  return { snapshot, state: stateName(snapshot), actions: last };
}
