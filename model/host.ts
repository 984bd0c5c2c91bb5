/**
 * Running the machines as the controllers of something real or simulated.
 *
 * A host keeps one state per actor and offers every event to its actor's
 * machine before anything else sees it: a rejection means the caller (the
 * driver, a platform) tried to do what the model forbids, and is a bug.
 * Accepted events are written to the trace; the machine's delayed `raise`
 * actions become timers on the host's clock; its commands (`closeSocket`,
 * `drainConnections`, …) go to the actor's owner — a driver — after the step
 * that asked for them, so a command never re-enters a step.
 *
 * The simulator runs this on a virtual clock, the server on the process's
 * monotonic clock, the explorer on a clock it chooses: the same code decides
 * in all of them.
 */
import { actorKind, connWorker, type ActorId, type ActorKind, type ClientId, type ConnId, type MachineEvent, type TraceEvent, type WorkerId } from './events.ts';
import type { ArbiterContext } from './machines/arbiter.ts';
import type { ClientContext } from './machines/client.ts';
import type { ConnContext } from './machines/connection.ts';
import { runtimeFor, type Runtimes } from './machines/index.ts';
import type { ListenerContext } from './machines/listener.ts';
import type { WorkerContext } from './machines/worker.ts';
import type { ActorState, MachineAction, MachineRuntime, RaiseParams, StateValue, Step } from './step.ts';

export interface Timer {
  cancelled: boolean;
}

/** A machine's timer as data: what it will raise, and when (on the host's clock). */
export interface PendingTimer {
  readonly id: string;
  readonly event: { readonly type: string };
  readonly dueMs: number;
  readonly handle: Timer;
}

interface ActorRecord {
  readonly kind: ActorKind;
  readonly runtime: MachineRuntime;
  state: ActorState;
  readonly timers: Map<string, PendingTimer>;
}

/** An actor as data: its machine state and its timers' due times (an explorer's snapshots). */
export interface ActorSnapshot {
  readonly id: ActorId;
  readonly state: ActorState;
  readonly timers: readonly { readonly id: string; readonly event: { readonly type: string }; readonly dueMs: number }[];
}

/** Who carries out an actor's commands: a worker's driver owns the worker and its connections. */
export type OwnerKey = 'arbiter' | 'listener' | 'client' | WorkerId;

/**
 * Where accepted events go, as they are taken: the time, the actor, the machine event. A sink that
 * writes a trace makes the trace event (`traceEvent`); one that only counts need not.
 */
export type TraceSink = ((t: number, actor: ActorId, event: { readonly type: string }) => void) & {
  /** Which events the sink keeps, asked before the host reads its clock for one (see `keepingOnly`); absent: all. */
  readonly keeps?: (actor: ActorId, event: { readonly type: string }) => boolean;
};

/**
 * A sink that keeps only the events `keeps` accepts. The host asks it first: on a live host the clock
 * is a bigint per read, and a lifecycle trace leaves out nearly every event.
 */
export function keepingOnly(keeps: (actor: ActorId, event: { readonly type: string }) => boolean, sink: TraceSink): TraceSink {
  return Object.assign((t: number, actor: ActorId, event: { readonly type: string }) => sink(t, actor, event), { keeps });
}

/** The trace line for an event a host took. */
export function traceEvent(t: number, actor: ActorId, event: { readonly type: string }): TraceEvent {
  return { t, actor, ...event } as TraceEvent;
}

/** A sink for hosts whose events are not written anywhere. */
export const NO_TRACE: TraceSink = () => {};
export type CommandSink = (actor: ActorId, command: MachineAction) => void;

export function ownerOf(actor: ActorId): OwnerKey {
  const kind = actorKind(actor);
  if (kind === 'conn') return connWorker(actor as ConnId);
  if (kind === 'worker') return actor as WorkerId;
  if (kind === undefined) throw new Error(`bad actor id ${actor}`);
  return kind;
}

export abstract class ActorHost {
  private readonly actors = new Map<string, ActorRecord>();
  private readonly owners = new Map<OwnerKey, CommandSink>();
  /** Owners whose process is stopped (SIGSTOP): their actors' timers wait until it resumes. */
  private readonly suspended = new Map<OwnerKey, (() => void)[]>();
  private readonly commands: (() => void)[] = [];
  private commandsRun = 0;
  private dispatching = false;

  constructor(
    readonly runtimes: Runtimes,
    private readonly sink: TraceSink,
  ) {}

  /** Milliseconds since the run began, on the host's clock. */
  abstract get nowMs(): number;

  /** Run `run` (as a step) after `delayMs` on the host's clock. */
  abstract at(delayMs: number, run: () => void): Timer;

  /** The error a broken invariant raises (each host names its own). */
  protected abstract invariant(message: string): Error;

  /** Carry out the commands of these actors (a driver registers itself). */
  own(key: OwnerKey, sink: CommandSink): void {
    this.owners.set(key, sink);
  }

  disown(key: OwnerKey): void {
    this.owners.delete(key);
    this.suspended.delete(key);
  }

  /**
   * A stopped process runs no timer: the timers of these actors that come due meanwhile fire when it
   * resumes, in the order they came due (what a SIGSTOPped process does at SIGCONT).
   */
  suspend(key: OwnerKey): void {
    if (!this.suspended.has(key)) this.suspended.set(key, []);
  }

  resume(key: OwnerKey): void {
    const due = this.suspended.get(key);
    this.suspended.delete(key);
    if (due) this.now(() => due.forEach((fire) => fire()));
  }

  // ───────────────────────── what an actor is ─────────────────────────

  state(actor: ActorId): ActorState {
    return this.record(actor).state;
  }

  arbiter(): ActorState<ArbiterContext> {
    return this.state('arbiter') as ActorState<ArbiterContext>;
  }

  listener(): ActorState<ListenerContext> {
    return this.state('listener') as ActorState<ListenerContext>;
  }

  worker(id: WorkerId): ActorState<WorkerContext> {
    return this.state(id) as ActorState<WorkerContext>;
  }

  conn(id: ConnId): ActorState<ConnContext> {
    return this.state(id) as ActorState<ConnContext>;
  }

  client(id: ClientId): ActorState<ClientContext> {
    return this.state(id) as ActorState<ClientContext>;
  }

  matches(actor: ActorId, value: StateValue): boolean {
    const record = this.record(actor);
    return record.runtime.matches(record.state, value);
  }

  isDone(actor: ActorId): boolean {
    return this.record(actor).state.status === 'done';
  }

  stateName(actor: ActorId): string {
    const record = this.record(actor);
    return record.runtime.stateName(record.state);
  }

  /** The actor's machine timers that have not fired yet. */
  pendingTimers(actor: ActorId): readonly PendingTimer[] {
    return [...(this.actors.get(actor)?.timers.values() ?? [])];
  }

  /** Whether the actor exists yet (has taken an event or been asked about). */
  has(actor: ActorId): boolean {
    return this.actors.has(actor);
  }

  /** Every actor the host knows, in the order they appeared. */
  actorIds(): ActorId[] {
    return [...this.actors.keys()] as ActorId[];
  }

  accepts(actor: ActorId, event: { type: string } & Record<string, unknown>): boolean {
    const record = this.record(actor);
    return record.runtime.accepts(record.state, event);
  }

  // ───────────────────────── snapshots ─────────────────────────

  /** Every actor as data. States are immutable: the snapshot shares them. */
  snapshotActors(): ActorSnapshot[] {
    const out: ActorSnapshot[] = [];
    for (const [id, record] of this.actors) {
      const timers = [];
      for (const t of record.timers.values()) timers.push({ id: t.id, event: t.event, dueMs: t.dueMs });
      out.push({ id: id as ActorId, state: record.state, timers });
    }
    return out;
  }

  /** Load actors into this (new) host; their timers are set again for the time they are due. */
  restoreActors(actors: readonly ActorSnapshot[]): void {
    if (this.actors.size > 0) throw this.invariant('actors are restored into an empty host only');
    for (const saved of actors) {
      const kind = actorKind(saved.id);
      if (!kind) throw this.invariant(`bad actor id ${saved.id}`);
      const record: ActorRecord = { kind, runtime: runtimeFor(this.runtimes, kind), state: saved.state, timers: new Map() };
      this.actors.set(saved.id, record);
      for (const timer of saved.timers) this.arm(saved.id, record, timer.id, timer.event, timer.dueMs - this.nowMs);
    }
  }

  /**
   * The machine timer `id` of `actor` fires now: what the host's clock does when it comes due. An
   * explorer calls it to choose which of the timers due at once fires first.
   */
  fireTimer(actor: ActorId, id: string, handle?: Timer): void {
    const record = this.actors.get(actor);
    const timer = record?.timers.get(id);
    // Cancelled meanwhile, or replaced by a newer timer of the same id, or the actor is gone.
    if (!record || !timer || (handle !== undefined && timer.handle !== handle)) return;
    record.timers.delete(id);
    this.emit(actor as TraceEvent['actor'], timer.event as never);
  }

  // ───────────────────────── stepping ─────────────────────────

  /** Offer an event to its actor's machine, trace it, and queue the commands it produced. A refusal is a bug. */
  emit<E extends TraceEvent>(actor: E['actor'], event: MachineEvent<E>): void {
    const record = this.record(actor);
    const next = record.runtime.tryStep(record.state, event);
    if (next === null) {
      throw this.invariant(
        `at ${this.nowMs.toFixed(3)} ms the host produced ${event.type} for ${actor} in state ${record.runtime.stateName(record.state)}, which accepts only ${record.runtime.eventsHandledIn(record.state).join(', ') || 'nothing (final)'}`,
      );
    }
    this.take(actor, record, event, next);
  }

  /**
   * Emit only if the machine takes the event now. Every caller says why a refusal is legitimate
   * there (a signal to a worker that already left, a heartbeat the policy does not send …).
   */
  emitIfAccepted<E extends TraceEvent>(actor: E['actor'], event: MachineEvent<E>): boolean {
    const record = this.record(actor);
    const next = record.runtime.tryStep(record.state, event);
    if (next === null) return false;
    this.take(actor, record, event, next);
    return true;
  }

  private take(actor: ActorId, record: ActorRecord, event: { type: string }, next: Step): void {
    record.state = next.state;
    // Reading the clock is not free on a live host (a bigint per read): not for a trace nobody keeps.
    const sink = this.sink;
    if (sink !== NO_TRACE && (sink.keeps === undefined || sink.keeps(actor, event))) sink(this.nowMs, actor, event);
    const actions = next.actions;
    for (let i = 0; i < actions.length; i++) this.perform(actor, record, actions[i]!);
    if (record.state.status === 'done') {
      // A finished actor (an exited process, a closed socket) has no timers left.
      for (const timer of record.timers.values()) timer.handle.cancelled = true;
      record.timers.clear();
    }
  }

  /** Run code (and the commands it causes) as one step at the current time. */
  now(run: () => void): void {
    this.dispatch(run);
  }

  /** Forget a finished actor (a long-running server would otherwise keep every closed connection). */
  forget(actor: ActorId): void {
    const record = this.actors.get(actor);
    if (!record) return;
    for (const timer of record.timers.values()) timer.handle.cancelled = true;
    this.actors.delete(actor);
  }

  /** Commands carried out so far: a driver that waits for its commands to settle can tell. */
  get commandCount(): number {
    return this.commandsRun;
  }

  /**
   * Carry out the commands queued so far, now, in order, inside the step in progress. Commands
   * normally run once the step's code has returned; a driver settles them earlier where a decision
   * the commands carry out must precede its own next event (gunicorn sets `alive = False` before a
   * handler starts: the drain reaches that request's connection first).
   */
  settleCommands(): void {
    while (this.commands.length > 0) {
      this.commandsRun++;
      this.commands.shift()!();
    }
  }

  protected dispatch(run: () => void): void {
    if (this.dispatching) {
      run();
      return;
    }
    this.dispatching = true;
    try {
      run();
      this.settleCommands();
    } finally {
      this.dispatching = false;
      this.commands.length = 0;
    }
  }

  private perform(actor: ActorId, record: ActorRecord, action: MachineAction): void {
    if (action.type === 'xstate.raise') {
      const params = action.params as RaiseParams;
      if (typeof params.delay !== 'number') throw this.invariant(`${actor}: undelayed raise of ${params.event.type}`);
      const id = params.id ?? params.event.type;
      const previous = record.timers.get(id);
      if (previous) previous.handle.cancelled = true;
      this.arm(actor, record, id, params.event, params.delay);
      return;
    }
    if (action.type === 'xstate.cancel') {
      const { sendId } = action.params as { sendId: string };
      const timer = record.timers.get(sendId);
      if (timer) timer.handle.cancelled = true;
      record.timers.delete(sendId);
      return;
    }
    if (action.type.startsWith('xstate.')) return;
    const owner = this.owners.get(ownerOf(actor));
    if (!owner) throw this.invariant(`${actor} asked for ${action.type}, and nobody carries out its commands`);
    this.commands.push(() => owner(actor, action));
  }

  /**
   * How long after now the platform runs an actor's timer that the chart set `delayMs` ahead: the
   * same, on a virtual clock. A real platform may run one later — never earlier — within the
   * real clock's tolerance (model/timing.ts); the trace still holds it to the chart's due time.
   */
  protected timerDelayMs(_actor: ActorId, _id: string, delayMs: number): number {
    return delayMs;
  }

  private arm(actor: ActorId, record: ActorRecord, id: string, event: { readonly type: string }, delayMs: number): void {
    const handle: Timer = this.at(this.timerDelayMs(actor, id, delayMs), () => {
      const stopped = this.suspended.get(ownerOf(actor));
      // A stopped process runs no timer: it fires at CONT, unless it was cancelled or replaced meanwhile.
      if (stopped) stopped.push(() => this.actors.get(actor) === record && this.fireTimer(actor, id, handle));
      else this.fireTimer(actor, id, handle);
    });
    record.timers.set(id, { id, event, dueMs: this.nowMs + delayMs, handle });
  }

  private record(actor: ActorId): ActorRecord {
    let record = this.actors.get(actor);
    if (!record) {
      const kind = actorKind(actor);
      if (!kind) throw this.invariant(`bad actor id ${actor}`);
      const runtime = runtimeFor(this.runtimes, kind);
      const initial = runtime.initial();
      // No chart acts in its initial state: an actor starts by taking its first event.
      if (initial.actions.length > 0) throw this.invariant(`${actor}'s machine acts before its first event`);
      record = { kind, runtime, state: initial.state, timers: new Map() };
      this.actors.set(actor, record);
    }
    return record;
  }
}
