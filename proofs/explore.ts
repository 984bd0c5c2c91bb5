/**
 * Breadth-first, explicit-state search over a World: every move from every
 * state, each state visited once (by its canonical key), level by level — so
 * the first time something is found, it is found by a shortest path. A found
 * path is a list of steps from the start; replayed into a fresh world it
 * gives the run's trace (a counterexample, a witness).
 *
 * One search checks many things at once: every property whose monitor runs
 * in the world (a broken one stops its monitor, the run goes on for the
 * others), and whatever the goal looks for. The first finding of each kind
 * is kept.
 */
import type { TraceEvent } from '../model/events.ts';
import { makeHeader, type Trace } from '../model/trace.ts';
import { World, WITNESS, type Step, type Verdict, type WorldConfig, type WorldState } from './world.ts';

/** Something a goal found: its kind (one finding is kept per kind) and what it is, in words. */
export interface Sighting {
  readonly kind: string;
  readonly what: string;
}

/** What a search looks for, besides broken properties. */
export interface Goal {
  /** After a move: the events it took, and the world now. */
  readonly afterMove?: (world: World, events: readonly TraceEvent[]) => Sighting | null;
  /** At a quiescent state (nothing can happen any more but the clock). */
  readonly atRest?: (world: World) => Sighting | null;
  /** After a move: leave this state out — the run has left the theorem's hypothesis (or its question is answered). */
  readonly prune?: (world: World, events: readonly TraceEvent[]) => boolean;
}

export interface Finding {
  /** `property:<name>` for a broken property, else the goal's kind. */
  readonly kind: string;
  readonly what: string;
  readonly property: string | null;
  readonly path: readonly Step[];
  /** Found at a quiescent state: the run stays there for ever (a lasso: only time passes). */
  readonly atRest: boolean;
}

export interface ExploreOptions {
  /** Stop at the first finding (a shortest one). */
  readonly stopAtFirst?: boolean;
  /** Give up (the result says so) beyond this many states. */
  readonly maxStates?: number;
  /** Rename interchangeable workers, connections and clients before keying a state (default on). */
  readonly symmetry?: boolean;
  /** Called after each level: (depth, states so far, frontier size). */
  readonly onLevel?: (depth: number, states: number, frontier: number) => void;
}

export interface ExploreResult {
  readonly states: number;
  readonly transitions: number;
  readonly quiescent: number;
  /** The deepest level reached (the longest shortest path). */
  readonly depth: number;
  readonly seconds: number;
  /** Every state within the bounds was explored (not cut short by maxStates or a first finding). */
  readonly exhaustive: boolean;
  /** The first finding of each kind. */
  readonly findings: readonly Finding[];
}

interface Node {
  readonly index: number;
  readonly state: WorldState;
}

/** Two 32-bit hashes of the canonical key: a 64-bit name for the visited set. */
export function hash64(text: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return (a >>> 0).toString(36) + ':' + (b >>> 0).toString(36);
}

export function explore(config: WorldConfig, goal: Goal = {}, options: ExploreOptions = {}): ExploreResult {
  const started = performance.now();
  const maxStates = options.maxStates ?? 2_000_000;
  const symmetry = options.symmetry ?? true;
  const visited = new Set<string>();
  const parents: number[] = [];
  const steps: (Step | null)[] = [];
  const findings = new Map<string, Finding>();
  let transitions = 0;
  let quiescent = 0;
  let depth = 0;
  let cutShort = false;

  const pathTo = (index: number, last?: Step): Step[] => {
    const path: Step[] = last ? [last] : [];
    for (let i = index; i > 0; i = parents[i]!) path.push(steps[i]!);
    return path.reverse();
  };
  const found = (kind: string, what: string, property: string | null, path: () => Step[], atRest: boolean) => {
    if (findings.has(kind)) return;
    findings.set(kind, { kind, what, property, path: path(), atRest });
    if (options.stopAtFirst) cutShort = true;
  };
  const foundBroken = (verdicts: readonly Verdict[], path: () => Step[], atRest: boolean) => {
    // The witness's refusals are no property's: the goal prunes on them.
    for (const v of verdicts) if (v.property !== WITNESS) found(`property:${v.property}`, v.message, v.property, path, atRest);
  };

  const root = new World(config);
  visited.add(hash64(root.key(symmetry)));
  parents.push(-1);
  steps.push(null);
  let frontier: Node[] = [{ index: 0, state: root.save() }];

  while (frontier.length > 0 && !cutShort) {
    const next: Node[] = [];
    for (const node of frontier) {
      if (cutShort) break;
      const here = new World(config, node.state);
      const moves = here.moves();
      if (moves.length === 0) {
        quiescent++;
        foundBroken(here.judgeEnd(), () => pathTo(node.index), true);
        const sighting = goal.atRest?.(here);
        if (sighting) found(sighting.kind, sighting.what, null, () => pathTo(node.index), true);
        continue;
      }
      const brokenBefore = node.state.violations.length;
      for (const move of moves) {
        // Every combination of the move's draws: run it with the values fixed so far, learn how many
        // values each further draw had, and come back for the others.
        const pending: number[][] = [[]];
        while (pending.length > 0 && !cutShort) {
          const draws = pending.pop()!;
          const world = new World(config, node.state);
          const arities = world.apply({ move, draws });
          const taken = arities.map((_, i) => (i < draws.length ? draws[i]! : 0));
          for (let j = draws.length; j < arities.length; j++) {
            for (let v = 1; v < arities[j]!; v++) pending.push([...taken.slice(0, j), v]);
          }
          transitions++;
          const step: Step = { move, draws: taken };
          if (world.verdicts.length > brokenBefore) foundBroken(world.verdicts.slice(brokenBefore), () => pathTo(node.index, step), false);
          const sighting = goal.afterMove?.(world, world.lastEvents);
          if (sighting) found(sighting.kind, sighting.what, null, () => pathTo(node.index, step), false);
          if (goal.prune?.(world, world.lastEvents)) continue;
          const key = hash64(world.key(symmetry));
          if (visited.has(key)) continue;
          visited.add(key);
          const index = parents.length;
          parents.push(node.index);
          steps.push(step);
          next.push({ index, state: world.save() });
          if (parents.length >= maxStates) cutShort = true;
        }
      }
    }
    if (next.length > 0) depth++;
    options.onLevel?.(depth, parents.length, next.length);
    frontier = next;
  }
  return {
    states: parents.length,
    transitions,
    quiescent,
    depth,
    seconds: (performance.now() - started) / 1000,
    exhaustive: !cutShort,
    findings: [...findings.values()],
  };
}

/** Replay a path into a fresh world, recording its events: the run as a trace the replay checker and the viz read. */
export function traceOf(config: WorldConfig, path: readonly Step[], meta: Record<string, unknown> = {}): { trace: Trace; world: World } {
  const world = new World(config, undefined, { record: true });
  for (const step of path) world.apply(step);
  // The explorer models no heartbeats: the header says so, and the replay checker promises nothing about them.
  const header = makeHeader(config.policy.name, config.params, false, { source: 'explorer', heartbeats: false, ...meta });
  return { trace: { header, events: world.recording! }, world };
}
