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
import type { AnyStateMachine } from 'xstate';
import { actorKind, type TraceEvent, type MachineEvent } from '../model/events.ts';
import { machineFor, type PolicyMachines } from '../model/machines/index.ts';
import { accepts, eventsHandledIn, start, stateName, step, type MachineAction, type Snapshot } from '../model/step.ts';
import { EventQueue, type Scheduled } from './queue.ts';
import { Rng } from './rng.ts';

export class SimulationInvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulationInvariantError';
  }
}

interface ActorRecord {
  readonly machine: AnyStateMachine;
  snapshot: Snapshot;
  readonly timers: Map<string, Scheduled>;
}

export type CommandHandler = (actor: string, action: MachineAction) => void;

export class Engine {
  nowMs = 0;
  readonly rng: Rng;
  private readonly queue = new EventQueue();
  private readonly actors = new Map<string, ActorRecord>();
  private readonly commands: (() => void)[] = [];
  private dispatching = false;

  constructor(
    readonly machines: PolicyMachines,
    seed: number,
    private readonly sink: (event: TraceEvent) => void,
    private readonly onCommand: CommandHandler,
  ) {
    this.rng = new Rng(seed);
  }

  at(delayMs: number, run: () => void): Scheduled {
    if (!(delayMs >= 0)) throw new SimulationInvariantError(`cannot schedule ${delayMs} ms into the past`);
    return this.queue.push(this.nowMs + delayMs, () => this.dispatch(run));
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
      this.nowMs = next.atMs;
      next.run();
      onTick?.(this.nowMs);
    }
  }

  snapshot(actor: string): Snapshot {
    return this.record(actor).snapshot;
  }

  accepts(actor: string, event: { type: string } & Record<string, unknown>): boolean {
    return accepts(this.record(actor).snapshot, event);
  }

  /** Offer an event to its actor's machine, trace it, and queue the commands it produced. */
  emit<E extends TraceEvent>(actor: E['actor'], event: MachineEvent<E>): void {
    const record = this.record(actor);
    if (!accepts(record.snapshot, event)) {
      throw new SimulationInvariantError(
        `at ${this.nowMs} ms the simulator produced ${event.type} for ${actor} in state ${stateName(record.snapshot)}, which accepts only ${eventsHandledIn(record.snapshot).join(', ') || 'nothing (final)'}`,
      );
    }
    const next = step(record.machine, record.snapshot, event);
    record.snapshot = next.snapshot;
    this.sink({ t: this.nowMs, actor, ...event } as TraceEvent);
    for (const action of next.actions) this.perform(actor, record, action);
    if (record.snapshot.status === 'done') {
      // A finished actor (an exited process, a closed socket) has no timers left.
      for (const timer of record.timers.values()) timer.cancelled = true;
      record.timers.clear();
    }
  }

  /** Emit only if the machine takes the event now (a signal to a worker that already left, say). */
  emitIfAccepted<E extends TraceEvent>(actor: E['actor'], event: MachineEvent<E>): boolean {
    if (!this.accepts(actor, event)) return false;
    this.emit(actor, event);
    return true;
  }

  private perform(actor: string, record: ActorRecord, action: MachineAction): void {
    if (action.type === 'xstate.raise') {
      const params = action.params as { event: { type: string }; id?: string; delay?: number };
      if (params.delay === undefined) throw new SimulationInvariantError(`${actor}: undelayed raise of ${params.event.type}`);
      const id = params.id ?? params.event.type;
      const previous = record.timers.get(id);
      if (previous) previous.cancelled = true;
      const timer = this.at(params.delay, () => {
        record.timers.delete(id);
        this.emit(actor as TraceEvent['actor'], params.event as never);
      });
      record.timers.set(id, timer);
      return;
    }
    if (action.type === 'xstate.cancel') {
      const { sendId } = action.params as { sendId: string };
      const timer = record.timers.get(sendId);
      if (timer) timer.cancelled = true;
      record.timers.delete(sendId);
      return;
    }
    if (action.type.startsWith('xstate.')) return;
    this.commands.push(() => this.onCommand(actor, action));
  }

  private dispatch(run: () => void): void {
    if (this.dispatching) {
      run();
      return;
    }
    this.dispatching = true;
    try {
      run();
      while (this.commands.length > 0) this.commands.shift()!();
    } finally {
      this.dispatching = false;
    }
  }

  /** Run code (and the commands it causes) as one step at the current time. */
  now(run: () => void): void {
    this.dispatch(run);
  }

  private record(actor: string): ActorRecord {
    let record = this.actors.get(actor);
    if (!record) {
      const kind = actorKind(actor);
      if (!kind) throw new SimulationInvariantError(`bad actor id ${actor}`);
      const machine = machineFor(this.machines, kind);
      record = { machine, snapshot: start(machine).snapshot, timers: new Map() };
      this.actors.set(actor, record);
    }
    return record;
  }
}

