/**
 * The machines and the simulator, as ratios measured in one run:
 *   - each machine compiled vs XState's own transition(), stepping the same
 *     recorded event sequences (every event of every actor of a seed run);
 *   - one seed run end to end on each engine;
 *   - the seed run (10,000 requests), the whole seed table, and the
 *     1,000,000-request run (in its own process, for its peak memory).
 */
import { spawnSync } from 'node:child_process';
import { actorKind, ACTOR_KINDS, type ActorKind, type TraceEvent } from '../model/events.ts';
import { runtimeFor, runtimesFor } from '../model/machines/index.ts';
import { BASE_POLICY_NAMES, getPolicy } from '../model/policies.ts';
import type { ActorState } from '../model/step.ts';
import { runScenario } from '../simulator/run.ts';
import { getScenario, SEED_SCENARIO_NAMES } from '../simulator/scenarios.ts';
import { QUIESCE_BIN } from '../conformance/process.ts';
import { applyProfile, getProfile } from '../simulator/profiles.ts';

const POLICY = 'gunicorn-gthread';
const SCENARIO = 'keepalive-recycle';

export interface MachineFigures {
  readonly transitionsPerSecond: Record<ActorKind, { compiled: number; xstate: number }>;
  readonly speedups: Record<`${ActorKind}Speedup`, number>;
}

/** Every actor's events of one seed run, grouped by the kind of machine that takes them. */
function recordedSequences(): Record<ActorKind, { type: string }[][]> {
  const byActor = new Map<string, { type: string }[]>();
  runScenario({
    scenario: SCENARIO,
    policy: POLICY,
    seed: 1,
    params: getScenario(SCENARIO).params,
    onEvent: (event: TraceEvent) => {
      const { t: _t, actor, ...machineEvent } = event;
      let list = byActor.get(actor);
      if (!list) byActor.set(actor, (list = []));
      list.push(machineEvent);
    },
  });
  const out = Object.fromEntries(ACTOR_KINDS.map((k) => [k, [] as { type: string }[][]])) as Record<ActorKind, { type: string }[][]>;
  for (const [actor, events] of byActor) out[actorKind(actor)!].push(events);
  return out;
}

/** Step every sequence through a runtime, repeating until at least `minMs` passed; transitions per second. */
function stepsPerSecond(kind: ActorKind, engine: 'compiled' | 'xstate', sequences: { type: string }[][], minMs = 400): number {
  const runtime = runtimeFor(runtimesFor(getPolicy(POLICY), getScenario(SCENARIO).params.server, engine), kind);
  let steps = 0;
  const started = performance.now();
  do {
    for (const events of sequences) {
      let state: ActorState = runtime.initial().state;
      for (const event of events) state = runtime.step(state, event).state;
      steps += events.length;
    }
  } while (performance.now() - started < minMs);
  return (steps / (performance.now() - started)) * 1000;
}

export function machineFigures(): MachineFigures {
  const sequences = recordedSequences();
  const transitionsPerSecond = {} as Record<ActorKind, { compiled: number; xstate: number }>;
  const speedups = {} as Record<`${ActorKind}Speedup`, number>;
  for (const kind of ACTOR_KINDS) {
    stepsPerSecond(kind, 'compiled', sequences[kind], 100); // warm up both
    stepsPerSecond(kind, 'xstate', sequences[kind], 100);
    const compiled = stepsPerSecond(kind, 'compiled', sequences[kind]);
    const xstate = stepsPerSecond(kind, 'xstate', sequences[kind]);
    transitionsPerSecond[kind] = { compiled, xstate };
    speedups[`${kind}Speedup`] = compiled / xstate;
  }
  return { transitionsPerSecond, speedups };
}

export interface SimulatorFigures {
  /** The seed run simulated end to end on each engine (seconds), and the ratio. */
  readonly seedRunXstateSeconds: number;
  readonly seedRunSeconds: number;
  readonly simulatorSpeedup: number;
  /** The first seed run in a fresh process's engine (JIT cold). */
  readonly seedRunColdSeconds: number;
  readonly seedTableSeconds: number;
  readonly seedTableRuns: number;
  readonly millionRunSeconds: number;
  readonly millionRunEvents: number;
  readonly millionRunPeakMiB: number;
  /**
   * The seed run with our server's profile (4 workers, max-requests 512, 10,000 requests): on the shared
   * CPU (simulator/cpu.ts, every start and end of work books every thread) and with the profile's times
   * drawn instead (its CPU taken out): what the CPU model costs a run.
   */
  readonly sharedCpuSeconds: number;
  readonly drawnTimesSeconds: number;
}

function timed(run: () => void): number {
  const started = performance.now();
  run();
  return (performance.now() - started) / 1000;
}

export function simulatorFigures(): SimulatorFigures {
  const params = getScenario(SCENARIO).params;
  const seedRun = (engine: 'compiled' | 'xstate') => runScenario({ scenario: SCENARIO, policy: POLICY, seed: 1, params, engine });
  const seedRunColdSeconds = timed(() => seedRun('compiled'));
  const seedRunSeconds = Math.min(timed(() => seedRun('compiled')), timed(() => seedRun('compiled')), timed(() => seedRun('compiled')));
  const seedRunXstateSeconds = timed(() => seedRun('xstate'));
  let seedTableRuns = 0;
  const seedTableSeconds = timed(() => {
    for (const scenario of SEED_SCENARIO_NAMES) {
      for (const policy of BASE_POLICY_NAMES) {
        runScenario({ scenario, policy, seed: 1, params: getScenario(scenario).params });
        seedTableRuns++;
      }
    }
  });
  // In a process of its own: its peak memory is the run's.
  const withCpu = applyProfile(params, getProfile('quiesce-serve')).params;
  const { cpu: _cpu, cpuWithoutRecycling: _steady, ...timesOnly } = getProfile('quiesce-serve');
  const drawn = applyProfile(params, timesOnly).params;
  const best = (p: typeof params) => Math.min(...[1, 2, 3].map(() => timed(() => runScenario({ scenario: SCENARIO, policy: POLICY, seed: 1, params: p }))));
  const sharedCpuSeconds = best(withCpu);
  const drawnTimesSeconds = best(drawn);
  const million = spawnSync(process.execPath, [QUIESCE_BIN, 'simulate', '--scenario', 'keepalive-recycle-1m', '--policy', POLICY, '--json'], { encoding: 'utf8', maxBuffer: 16 * 2 ** 20 });
  if (million.status !== 0) throw new Error(`the million-request run failed:\n${million.stderr}`);
  const run = (JSON.parse(million.stdout) as { run: { seconds: number; events: number; peakRssMiB: number } }).run;
  return {
    seedRunXstateSeconds,
    seedRunSeconds,
    simulatorSpeedup: seedRunXstateSeconds / seedRunSeconds,
    seedRunColdSeconds,
    seedTableSeconds,
    seedTableRuns,
    millionRunSeconds: run.seconds,
    millionRunEvents: run.events,
    millionRunPeakMiB: run.peakRssMiB,
    sharedCpuSeconds,
    drawnTimesSeconds,
  };
}
