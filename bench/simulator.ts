/**
 * Simulator speed, as ratios measured in one run (absolute numbers on a
 * shared machine mean little):
 *   - the whole simulation of keepalive-recycle (engine + world + machines);
 *   - XState's own pure transition() stepping the very same events through the
 *     same machines, with nothing else: the floor the simulator stands on.
 * The ratio says how much of the simulator's time is the machines.
 */
import { transition, initialTransition, type AnyStateMachine } from 'xstate';
import { actorKind, type TraceEvent } from '../model/events.ts';
import { machineFor, machinesFor } from '../model/machines/index.ts';
import { getPolicy } from '../model/policies.ts';
import { runScenario } from '../simulator/run.ts';
import { getScenario } from '../simulator/scenarios.ts';

const scenario = 'keepalive-recycle';
const policy = 'gunicorn-gthread';
const params = getScenario(scenario).params;

function simulate(): { ms: number; events: TraceEvent[] } {
  const events: TraceEvent[] = [];
  const t0 = performance.now();
  runScenario({ scenario, policy, seed: 1, params, onEvent: (e) => events.push(e) });
  return { ms: performance.now() - t0, events };
}

function xstateOnly(events: readonly TraceEvent[]): number {
  const machines = machinesFor(getPolicy(policy), params.server);
  const snapshots = new Map<string, unknown>();
  const t0 = performance.now();
  for (const event of events) {
    const machine: AnyStateMachine = machineFor(machines, actorKind(event.actor)!);
    let snapshot = snapshots.get(event.actor);
    if (snapshot === undefined) snapshot = initialTransition(machine)[0];
    const { t: _t, actor: _a, ...machineEvent } = event;
    snapshots.set(event.actor, transition(machine, snapshot as never, machineEvent as never)[0]);
  }
  return performance.now() - t0;
}

simulate(); // warm up the JIT
const sim = simulate();
const floor = xstateOnly(sim.events);
const perSec = (n: number, ms: number) => Math.round((n / ms) * 1000).toLocaleString('en');
console.log(`${scenario} under ${policy}: ${sim.events.length.toLocaleString('en')} events`);
console.log(`  simulator:            ${sim.ms.toFixed(0).padStart(6)} ms  ${perSec(sim.events.length, sim.ms).padStart(10)} events/s`);
console.log(`  xstate transition():  ${floor.toFixed(0).padStart(6)} ms  ${perSec(sim.events.length, floor).padStart(10)} transitions/s (same events, nothing else)`);
console.log(`  ratio simulator / transition(): ${(sim.ms / floor).toFixed(2)}×`);
