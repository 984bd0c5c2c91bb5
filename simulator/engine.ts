/**
 * The discrete-event engine. Virtual time in ms; one event queue; one seeded
 * PRNG; no other state. Actors are the model's machines, stepped through
 * `model/step.ts`: every event the simulation produces is first offered to
 * its actor's machine — a rejection is a bug in the simulator and stops the
 * run — then written to the trace. Timers are the machines' own delayed
 * `raise` actions, scheduled in virtual time; commands (`closeSocket`,
 * `drainConnections`, …) are handed to the world (server, kernel, clients)
 * to carry out, after the step that asked for them.
 */
import type { TraceEvent } from '../model/events.ts';
import { ActorHost, type CommandHandler } from '../model/host.ts';
import type { PolicyMachines } from '../model/machines/index.ts';
import { EventQueue, type Scheduled } from './queue.ts';
import { Rng } from './rng.ts';

export class SimulationInvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulationInvariantError';
  }
}

export type { CommandHandler };

/** The actor host on a virtual clock: one event queue, one seeded PRNG, no other state. */
export class Engine extends ActorHost {
  private virtualNowMs = 0;
  readonly rng: Rng;
  private readonly queue = new EventQueue();

  constructor(machines: PolicyMachines, seed: number, sink: (event: TraceEvent) => void, onCommand: CommandHandler) {
    super(machines, sink);
    this.rng = new Rng(seed);
    this.attach(onCommand);
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
  run(budget: { maxVirtualMs: number; maxSteps: number }, onTick?: (nowMs: number) => void): void {
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
