/**
 * The discrete-event engine: the actor host on a virtual clock. Time in ms;
 * one event queue; one seeded PRNG; no other state. The machines' delayed
 * `raise` actions are scheduled in virtual time; their commands go to the
 * drivers that own the actors. A rejected event is a bug in the simulator
 * and stops the run.
 */
import { ActorHost, type TraceSink } from '../model/host.ts';
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

  constructor(runtimes: Runtimes, seed: number, sink: TraceSink) {
    super(runtimes, sink);
    this.rng = new Rng(seed);
  }

  get nowMs(): number {
    return this.virtualNowMs;
  }

  /** Run `run` (as one step) after `delayMs` of virtual time; the handle cancels it. */
  at(delayMs: number, run: () => void): Scheduled {
    if (!(delayMs >= 0)) throw new SimulationInvariantError(`cannot schedule ${delayMs} ms into the past`);
    return this.queue.push(this.virtualNowMs + delayMs, run);
  }

  /** Run `run` at an absolute virtual time (not before now). */
  atTime(atMs: number, run: () => void): void {
    if (!(atMs >= this.virtualNowMs)) throw new SimulationInvariantError(`cannot schedule at ${atMs} ms, before now (${this.virtualNowMs} ms)`);
    this.queue.pushPlain(atMs, run);
  }

  /** `at` for what is never cancelled (a packet in flight): no handle is made. */
  after(delayMs: number, run: () => void): void {
    if (!(delayMs >= 0)) throw new SimulationInvariantError(`cannot schedule ${delayMs} ms into the past`);
    this.queue.pushPlain(this.virtualNowMs + delayMs, run);
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
      const atMs = this.queue.peekTime();
      if (atMs === undefined) return;
      const run = this.queue.pop();
      if (run === null || run === undefined) continue; // cancelled
      if (atMs > budget.maxVirtualMs || ++steps > budget.maxSteps) {
        throw new SimulationInvariantError(
          `liveness: the run had not quiesced after ${steps} steps and ${this.nowMs.toFixed(1)} ms of virtual time (budget ${budget.maxSteps} steps, ${budget.maxVirtualMs} ms)`,
        );
      }
      this.virtualNowMs = atMs;
      this.dispatch(run);
      onTick?.(this.nowMs);
    }
  }
}
