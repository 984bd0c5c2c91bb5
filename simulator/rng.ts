/**
 * A small seeded PRNG (mulberry32): the only source of randomness in a
 * simulated run, so a run is a function of its seed.
 */
import type { Draw } from './platform.ts';

export class Rng implements Draw {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  fraction(): number {
    return this.next();
  }

  uniform(min: number, max: number): number {
    return min + this.next() * (max - min);
  }

  /** Exponentially distributed with this mean. */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick from an empty list');
    return items[this.int(0, items.length - 1)]!;
  }
}

/** A draw from a distribution given by its percentiles: a uniform percent, interpolated between the two nearest. */
export function fromPercentiles(percentilesMs: readonly number[], uniformPercent: number): number {
  const at = Math.min(Math.max(uniformPercent, 0), 100);
  const low = Math.floor(at);
  const high = Math.min(low + 1, 100);
  const lowMs = percentilesMs[low]!;
  return lowMs + (percentilesMs[high]! - lowMs) * (at - low);
}
