/**
 * Running the machines as the controllers of something real or simulated.
 *
 * A host keeps one snapshot per actor and offers every event to its actor's
 * machine before anything else sees it: a rejection means the host (the
 * simulator's world, impl/'s server) tried to do what the model forbids, and
 * is a bug. Accepted events are written to the trace; the machine's delayed
 * `raise` actions become timers on the host's clock; its commands
 * (`closeSocket`, `drainConnections`, …) are carried out by the host after
 * the step that asked for them, so a command never re-enters a step.
 *
 * The simulator runs this on a virtual clock, impl/ on the process's
 * monotonic clock: the same code decides in both.
 */
import type { AnyStateMachine } from 'xstate';
import { actorKind, type MachineEvent, type TraceEvent } from './events.ts';
import { machineFor, type PolicyMachines } from './machines/index.ts';
import { accepts, eventsHandledIn, start, stateName, step, type MachineAction, type Snapshot } from './step.ts';

export interface Timer {
  cancelled: boolean;
}

export type CommandHandler = (actor: string, action: MachineAction) => void;

interface ActorRecord {
  readonly machine: AnyStateMachine;
  snapshot: Snapshot;
  readonly timers: Map<string, Timer>;
}

export abstract class ActorHost {
  private readonly actors = new Map<string, ActorRecord>();
  private readonly commands: (() => void)[] = [];
  private dispatching = false;
  private onCommand: CommandHandler = (actor, action) => {
    throw this.invariant(`${actor} asked for ${action.type} before a command handler was attached`);
  };

  constructor(
    readonly machines: PolicyMachines,
    private readonly sink: (event: TraceEvent) => void,
  ) {}

  /** Milliseconds since the run began, on the host's clock. */
  abstract get nowMs(): number;

  /** Run `run` (as a step) after `delayMs` on the host's clock. */
  abstract at(delayMs: number, run: () => void): Timer;

  /** The error a broken invariant raises (each host names its own). */
  protected abstract invariant(message: string): Error;

  /** Who carries out the machines' commands. Set once, before the first event. */
  attach(handler: CommandHandler): void {
    this.onCommand = handler;
  }

  snapshot(actor: string): Snapshot {
    return this.record(actor).snapshot;
  }

  /** Whether the actor exists yet (has taken an event or been asked about). */
  has(actor: string): boolean {
    return this.actors.has(actor);
  }

  accepts(actor: string, event: { type: string } & Record<string, unknown>): boolean {
    return accepts(this.record(actor).snapshot, event);
  }

  /** Offer an event to its actor's machine, trace it, and queue the commands it produced. */
  emit<E extends TraceEvent>(actor: E['actor'], event: MachineEvent<E>): void {
    const record = this.record(actor);
    if (!accepts(record.snapshot, event)) {
      throw this.invariant(
        `at ${this.nowMs.toFixed(3)} ms the host produced ${event.type} for ${actor} in state ${stateName(record.snapshot)}, which accepts only ${eventsHandledIn(record.snapshot).join(', ') || 'nothing (final)'}`,
      );
    }
    this.take(actor, record, event);
  }

  /** Emit only if the machine takes the event now (a signal to a worker that already left, say). */
  emitIfAccepted<E extends TraceEvent>(actor: E['actor'], event: MachineEvent<E>): boolean {
    const record = this.record(actor);
    if (!accepts(record.snapshot, event)) return false;
    this.take(actor, record, event);
    return true;
  }

  private take(actor: string, record: ActorRecord, event: { type: string }): void {
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

  /** Run code (and the commands it causes) as one step at the current time. */
  now(run: () => void): void {
    this.dispatch(run);
  }

  /** Forget a finished actor (a long-running server would otherwise keep every closed connection). */
  forget(actor: string): void {
    const record = this.actors.get(actor);
    if (!record) return;
    for (const timer of record.timers.values()) timer.cancelled = true;
    this.actors.delete(actor);
  }

  protected dispatch(run: () => void): void {
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
      this.commands.length = 0;
    }
  }

  private perform(actor: string, record: ActorRecord, action: MachineAction): void {
    if (action.type === 'xstate.raise') {
      const params = action.params as { event: { type: string }; id?: string; delay?: number };
      if (params.delay === undefined) throw this.invariant(`${actor}: undelayed raise of ${params.event.type}`);
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

  private record(actor: string): ActorRecord {
    let record = this.actors.get(actor);
    if (!record) {
      const kind = actorKind(actor);
      if (!kind) throw this.invariant(`bad actor id ${actor}`);
      const machine = machineFor(this.machines, kind);
      record = { machine, snapshot: start(machine).snapshot, timers: new Map() };
      this.actors.set(actor, record);
    }
    return record;
  }
}
