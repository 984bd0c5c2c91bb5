/**
 * The discrete-event engine: the actor host on a virtual clock. Time in ms;
 * one event queue; one seeded PRNG; no other state. The machines' delayed
 * `raise` actions are scheduled in virtual time; their commands go to the
 * drivers that own the actors. A rejected event is a bug in the simulator
 * and stops the run.
 */
import type { TraceEvent } from '../model/events.ts';
import { ActorHost } from '../model/host.ts';
import type { Runtimes } from '../model/machines/index.ts';
import { EventQueue, type Scheduled } from './queue.ts';
import { Rng } from './rng.ts';

export class SimulationInvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulationInvariantError';
  }
}

export interface Budget {
  readonly maxVirtualMs: number;
  readonly maxSteps: number;
}

export class Engine extends ActorHost {
  private virtualNowMs = 0;
  readonly rng: Rng;
  private readonly queue = new EventQueue();

  constructor(runtimes: Runtimes, seed: number, sink: (event: TraceEvent) => void) {
    super(runtimes, sink);
    this.rng = new Rng(seed);
  }

  get nowMs(): number {
    return this.virtualNowMs;
  }

  at(delayMs: number, run: () => void): Scheduled {
    if (!(delayMs >= 0)) throw new SimulationInvariantError(`cannot schedule ${delayMs} ms into the past`);
    return this.queue.push(this.virtualNowMs + delayMs, () => this.dispatch(run));
  }

  protected invariant(message: string): Error {
    return new SimulationInvariantError(message.replace('the host produced', 'the simulator produced'));
  }

  /**
   * Run until nothing is left to happen. Every scenario ends with a shutdown,
   * so a run that is still busy past the budget has a liveness bug: something
   * keeps rescheduling itself (the simulator's, or the model's).
   */
  run(budget: Budget, onTick?: (nowMs: number) => void): void {
    let steps = 0;
    for (;;) {
      const next = this.queue.pop();
      if (!next) return;
      if (next.cancelled) continue;
      if (next.atMs > budget.maxVirtualMs || ++steps > budget.maxSteps) {
        throw new SimulationInvariantError(
          `liveness: the run had not quiesced after ${steps} steps and ${this.nowMs.toFixed(1)} ms of virtual time (budget ${budget.maxSteps} steps, ${budget.maxVirtualMs} ms)`,
        );
      }
      this.virtualNowMs = next.atMs;
      next.run();
      onTick?.(this.nowMs);
    }
  }
}
