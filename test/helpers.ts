import type { AnyStateMachine } from 'xstate';
import { xstateRuntime, type ActorState, type MachineAction } from '../model/step.ts';

/** Drive one machine through events, failing loudly if any is rejected; returns the state and the last actions. */
export function drive(machine: AnyStateMachine, events: readonly ({ type: string } & Record<string, unknown>)[]): { snapshot: ActorState; state: string; actions: readonly MachineAction[] } {
  const runtime = xstateRuntime(machine);
  let { state, actions } = runtime.initial();
  let last: readonly MachineAction[] = actions;
  for (const event of events) {
    if (!runtime.accepts(state, event)) throw new Error(`${event.type} rejected in ${runtime.stateName(state)}`);
    const next = runtime.step(state, event);
    state = next.state;
    last = next.actions;
  }
  return { snapshot: state, state: runtime.stateName(state), actions: last };
}

/** Run the `quiesce` command in-process: its exit code and what it wrote. */
export async function runCli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const { main } = await import('../cli/main.ts');
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

/** At most `n` slots' worth of tasks at once (a task takes `weight` of them), the rest waiting in the order they came. */
export function slots(n: number): <T>(weight: number, task: () => Promise<T>) => Promise<T> {
  let free = n;
  const waiting: { weight: number; go: () => void }[] = [];
  const admit = () => {
    while (waiting.length > 0 && waiting[0]!.weight <= free) {
      const next = waiting.shift()!;
      free -= next.weight;
      next.go();
    }
  };
  return async (weight, task) => {
    await new Promise<void>((go) => {
      waiting.push({ weight, go });
      admit();
    });
    try {
      return await task();
    } finally {
      free += weight;
      admit();
    }
  };
}
