/**
 * Timed conformance. A machine's timer is a delayed `raise` in its chart,
 * with the delay the header's parameters give (`keepAlive`, `gracefulTimeout`
 * …). Replaying a trace, the watch arms each timer when the step that set it
 * is taken, and then holds the trace to it:
 *
 * - a timer's event comes no earlier than it was due (less a clock's
 *   granularity): a `worker.graceful-timeout` 2 ms after TERM when the
 *   parameters say 30 s is a server that does not keep its own deadline;
 * - and no later than the tolerance after it was due: an actor that takes
 *   other events long after its timer was due, the timer still pending, is
 *   one whose timer never fired;
 * - and only while it is pending: a timer's event with no such timer of its
 *   actor set — it fired already, or was cancelled — is a server whose timer
 *   outlived its state (a deadline acted on twice), even where the chart
 *   would take the event again. Which events are a timer's the trace itself
 *   says: the types of the timers the machines set in it.
 *
 * A stopped process runs no timers (SIGSTOP): one due while its process is
 * stopped is due when it resumes (SIGCONT). A worker the watchdog found
 * silent (ABRT), or that was KILLed, may have been frozen or hung from when
 * it last ran — a SIGSTOP from outside is in no trace — and its timers due
 * since are not held to account. A worker that ran meanwhile shows it (its
 * heartbeats, its connections' events), and is held to them.
 */
import type { ActorId, TraceEvent, WorkerId } from './events.ts';
import { ownerOf, type OwnerKey } from './host.ts';
import type { MachineAction, RaiseParams } from './step.ts';
import type { TraceHeader } from './trace.ts';

/** How far a timer's event may be from its due time, in ms. */
export interface TimerTolerance {
  readonly earlyMs: number;
  readonly lateMs: number;
}

/** A virtual clock (the simulator's, the explorer's) fires timers exactly: only float sums differ. */
export const VIRTUAL_CLOCK: TimerTolerance = { earlyMs: 1e-6, lateMs: 1e-6 };

/**
 * A real clock: timestamps are read beside the timer (2 ms of granularity early), and a process's
 * event loop runs a timer when it is free — under load, up to a second late (the arbiter's loop
 * itself turns once a second).
 */
export const REAL_CLOCK: TimerTolerance = { earlyMs: 2, lateMs: 1000 };

/** The tolerance a trace's header implies: a simulated or explored run is on a virtual clock. */
export function toleranceFor(header: TraceHeader): TimerTolerance {
  const source = header.meta?.['source'];
  const simulated = source === 'simulator' || source === 'explorer' || header.meta?.['seed'] !== undefined;
  return simulated ? VIRTUAL_CLOCK : REAL_CLOCK;
}

interface PendingTimer {
  readonly id: string;
  readonly eventType: string;
  readonly delayMs: number;
  readonly dueMs: number;
  /** Index of the event whose step set it. */
  readonly setAt: number;
}

export interface TimerViolation {
  readonly index: number;
  readonly actor: ActorId;
  readonly message: string;
}

export class TimerWatch {
  private readonly pending = new Map<ActorId, Map<string, PendingTimer>>();
  /** Owners stopped now, since when. */
  private readonly stoppedSince = new Map<OwnerKey, number>();
  /** Each owner's stops that ended: [stop, cont] in ms. */
  private readonly stops = new Map<OwnerKey, [number, number][]>();
  /** When each worker process last showed it ran: an event of its own or of its connections. */
  private readonly lastAlive = new Map<OwnerKey, number>();
  /**
   * Workers the watchdog found silent (the arbiter's ABRT), or KILLed: maybe frozen or hung since
   * they last ran — a SIGSTOP from outside, which no trace can record — so their timers could not fire.
   */
  private readonly silentSince = new Map<OwnerKey, number>();
  /** The event types of every timer set so far: an event of one of them is a timer's. */
  private readonly timerTypes = new Set<string>();
  /** What became of each actor's last timer of a type, for the message when it comes again: `actor type` → line and fate. */
  private readonly lastFate = new Map<string, { readonly index: number; readonly fate: 'fired' | 'cancelled' }>();

  constructor(
    private readonly tolerance: TimerTolerance,
    private readonly lineOf: (index: number) => number,
  ) {}

  /**
   * Before the event's step: is it a timer firing on time, and has any other timer of its actor
   * been left unfired past its due time?
   */
  before(e: TraceEvent, index: number): TimerViolation | null {
    const actor = e.actor as ActorId;
    // A KILLed worker may have been frozen since it last ran (a stopped worker is killed at the deadline).
    if (e.type === 'worker.signal' && e.signal === 'KILL') this.silentSince.set(e.actor, Math.min(this.silentSince.get(e.actor) ?? Infinity, this.lastAlive.get(e.actor) ?? 0));
    const timers = this.pending.get(actor);
    const firing = timers && [...timers.values()].filter((t) => t.eventType === e.type).sort((a, b) => a.dueMs - b.dueMs)[0];
    if (!firing && this.timerTypes.has(e.type)) {
      const last = this.lastFate.get(`${actor} ${e.type}`);
      const why = last ? `its last one ${last.fate} at line ${this.lineOf(last.index)}` : 'none was set';
      return this.violation(e, index, `${actor} took ${e.type}, a timer's event, with no such timer pending: ${why}`);
    }
    if (timers) {
      if (firing) {
        timers.delete(firing.id);
        this.lastFate.set(`${actor} ${e.type}`, { index, fate: 'fired' });
        if (e.t < firing.dueMs - this.tolerance.earlyMs) {
          return this.violation(e, index, `${actor}'s timer ${firing.id} (${e.type}) fired ${fmt(e.t - (firing.dueMs - firing.delayMs))} ms after line ${this.lineOf(firing.setAt)} set it; the header's parameters give ${fmt(firing.delayMs)} ms`);
        }
        if (e.t > this.effectiveDue(actor, firing) + this.tolerance.lateMs) {
          return this.violation(e, index, `${actor}'s timer ${firing.id} (${e.type}) fired ${fmt(e.t - firing.dueMs)} ms late: line ${this.lineOf(firing.setAt)} set it for ${fmt(firing.delayMs)} ms`);
        }
      }
      for (const t of timers.values()) {
        if (e.t > this.effectiveDue(actor, t) + this.tolerance.lateMs) {
          return this.violation(e, index, `${actor}'s timer ${t.id} (${t.eventType}), set at line ${this.lineOf(t.setAt)} for ${fmt(t.delayMs)} ms, was due at ${fmt(t.dueMs)} ms and had not fired when ${actor} took ${e.type} at ${fmt(e.t)} ms`);
        }
      }
    }
    return null;
  }

  /** After the event's step: the timers it set and cancelled; a finished actor has none left. */
  after(e: TraceEvent, index: number, actions: readonly MachineAction[], done: boolean): void {
    const actor = e.actor as ActorId;
    if (e.type === 'worker.signal' && (e.signal === 'STOP' || e.signal === 'CONT')) this.stopOrContinue(e.actor, e.signal, e.t);
    else if (e.type === 'arbiter.kill' && e.signal === 'ABRT') this.silentSince.set(e.worker, this.lastAlive.get(e.worker) ?? 0);
    // The KILL is the arbiter's, not a sign of the worker's life (see before()).
    else if ((e.actor.startsWith('worker/') || e.actor.startsWith('conn/')) && !(e.type === 'worker.signal' && e.signal === 'KILL')) this.lastAlive.set(ownerOf(actor), e.t);
    this.apply(actor, e.t, index, actions);
    if (done) this.pending.delete(actor);
  }

  /** Timers set by an actor's initial step (when its first event created it). */
  apply(actor: ActorId, t: number, index: number, actions: readonly MachineAction[]): void {
    for (const action of actions) {
      if (action.type === 'xstate.raise') {
        const params = action.params as RaiseParams;
        if (typeof params.delay !== 'number') continue;
        const id = params.id ?? params.event.type;
        let timers = this.pending.get(actor);
        if (!timers) this.pending.set(actor, (timers = new Map()));
        timers.set(id, { id, eventType: params.event.type, delayMs: params.delay, dueMs: t + params.delay, setAt: index });
        this.timerTypes.add(params.event.type);
      } else if (action.type === 'xstate.cancel') {
        const timers = this.pending.get(actor);
        const cancelled = timers?.get((action.params as { sendId: string }).sendId);
        if (cancelled) {
          timers!.delete(cancelled.id);
          this.lastFate.set(`${actor} ${cancelled.eventType}`, { index, fate: 'cancelled' });
        }
      }
    }
  }

  private stopOrContinue(worker: WorkerId, signal: 'STOP' | 'CONT', t: number): void {
    if (signal === 'STOP') {
      if (!this.stoppedSince.has(worker)) this.stoppedSince.set(worker, t);
      return;
    }
    const since = this.stoppedSince.get(worker);
    if (since === undefined) return;
    this.stoppedSince.delete(worker);
    const list = this.stops.get(worker) ?? [];
    list.push([since, t]);
    this.stops.set(worker, list);
  }

  /** When a timer could fire at the earliest: its due time, or the CONT of a stop it fell in. */
  private effectiveDue(actor: ActorId, timer: PendingTimer): number {
    const owner = ownerOf(actor);
    const since = this.stoppedSince.get(owner);
    if (since !== undefined && since <= timer.dueMs) return Number.POSITIVE_INFINITY;
    const silent = this.silentSince.get(owner);
    if (silent !== undefined && silent <= timer.dueMs) return Number.POSITIVE_INFINITY;
    for (const [stop, cont] of this.stops.get(owner) ?? []) if (stop <= timer.dueMs && timer.dueMs <= cont) return cont;
    return timer.dueMs;
  }

  private violation(e: TraceEvent, index: number, message: string): TimerViolation {
    return { index, actor: e.actor as ActorId, message };
  }
}

function fmt(ms: number): string {
  return Number.isInteger(ms) ? String(ms) : ms.toFixed(3);
}
