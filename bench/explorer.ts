/**
 * The explorer's figures: states per second, and how many states symmetry reduction saves — one
 * configuration searched both ways in the same run (safe-drain, two workers, two clients, one request each,
 * where workers and clients are both interchangeable).
 */
import { getPolicy } from '../model/policies.ts';
import { explore } from '../proofs/explore.ts';
import { checkableProperties, worldConfig } from '../proofs/theorems.ts';

export interface ExplorerFigures {
  readonly configuration: string;
  readonly statesWithSymmetry: number;
  readonly statesWithoutSymmetry: number;
  /** States without symmetry reduction per state with it. */
  readonly symmetryReduction: number;
  readonly statesPerSecond: number;
  readonly statesPerSecondWithoutSymmetry: number;
}

export function explorerFigures(): ExplorerFigures {
  const config = worldConfig(getPolicy('safe-drain'), { workers: 2, clients: 2, requests: 1, properties: checkableProperties });
  const reduced = explore(config, {}, {});
  const plain = explore(config, {}, { symmetry: false });
  return {
    configuration: 'safe-drain W2 C2 R1, every checkable property',
    statesWithSymmetry: reduced.states,
    statesWithoutSymmetry: plain.states,
    symmetryReduction: plain.states / reduced.states,
    statesPerSecond: reduced.states / reduced.seconds,
    statesPerSecondWithoutSymmetry: plain.states / plain.seconds,
  };
}
