/**
 * The arbiter's shadow of a worker: what it writes for a worker that died without a word.
 */
import { WorkerDriver } from '../model/driver/worker.ts';
import type { TraceEvent, WorkerId } from '../model/events.ts';
import { ActorHost, traceEvent, type ActorSnapshot, type Timer } from '../model/host.ts';
import type { Runtimes } from '../model/machines/index.ts';
import { ServerInvariantError } from './live-host.ts';

/** How a worker's process ended, as the arbiter saw it reaped. */
export type WorkerEnd = { kind: 'exited' } | { kind: 'killed' } | { kind: 'crashed'; signal: string | null };

/**
 * Follows a worker's actors from the events it reports, so that when the
 * worker dies without a word (SIGKILL, a crash) the arbiter can write what the
 * kernel did for it. Events are kept per actor and folded into machine states
 * in batches (off the hot path); a closed connection is forgotten, so memory
 * stays bounded by what is open. While following, the machines' commands were
 * the worker's own to carry out: nothing here acts on them, and no timer
 * fires. When the worker dies, its own driver takes over on this host with
 * the kernel as its platform, and writes the end the chart gives.
 */
export class WorkerShadow extends ActorHost {
  private readonly unfolded = new Map<string, TraceEvent[]>();
  private writing = false;
  exited = false;

  constructor(
    private readonly followed: WorkerId,
    runtimes: Runtimes,
    private readonly write: (event: TraceEvent) => void,
    private readonly clock: () => number,
  ) {
    super(runtimes, (t, actor, event) => {
      if (this.writing) this.write(traceEvent(t, actor, event));
    });
    this.own(followed, () => {});
  }

  /**
   * A lifecycle trace's shadow: the worker's actors as its last batch of events left them. The end it
   * writes is the one the chart gives from there; of it, a lifecycle trace keeps the worker's own events,
   * which connections that opened or closed since that batch do not change.
   */
  static restored(followed: WorkerId, runtimes: Runtimes, actors: readonly ActorSnapshot[], write: (event: TraceEvent) => void, clock: () => number): WorkerShadow {
    const shadow = new WorkerShadow(followed, runtimes, write, clock);
    shadow.restoreActors(actors);
    return shadow;
  }

  /** The followed actors as they stand after every event reported so far. */
  snapshot(): ActorSnapshot[] {
    for (const actor of [...this.unfolded.keys()]) this.fold(actor);
    return this.snapshotActors();
  }

  get nowMs(): number {
    return this.clock();
  }

  at(): Timer {
    return { cancelled: true };
  }

  protected invariant(message: string): Error {
    return new ServerInvariantError(message.replace('the host produced', 'a worker reported'));
  }

  report(event: TraceEvent): void {
    if (event.type === 'worker.exit') this.exited = true;
    if (event.type === 'conn.close') {
      this.unfolded.delete(event.actor);
      this.forget(event.actor);
      return;
    }
    let events = this.unfolded.get(event.actor);
    if (!events) this.unfolded.set(event.actor, (events = []));
    events.push(event);
    if (events.length >= 256) this.fold(event.actor);
  }

  private fold(actor: string): void {
    for (const event of this.unfolded.get(actor) ?? []) {
      const { t: _t, actor: _actor, ...rest } = event;
      this.emit(actor as TraceEvent['actor'], rest as never);
    }
    this.unfolded.delete(actor);
  }

  /**
   * The worker is gone: bring every actor up to date, then its driver takes the end the kernel
   * gave it — each open connection closed (RST where request bytes were unread), the listener copy
   * released, the exit.
   */
  writeKernelEnd(code: number, end: WorkerEnd): void {
    for (const actor of [...this.unfolded.keys()]) this.fold(actor);
    if (this.exited || end.kind === 'exited' || !this.has(this.followed) || this.isDone(this.followed)) return;
    this.writing = true;
    const driver = new WorkerDriver(this, this.followed, KERNEL);
    if (end.kind === 'killed') driver.signal('KILL');
    else driver.crashed(code, end.signal ?? undefined);
  }
}

/** A dead process's platform: the kernel has closed everything already, so there is nothing left to do. */
const KERNEL = {
  stopAccepting: () => {},
  releaseListener: () => {},
  watchReadable: () => false,
  pollReturnedWith: () => [],
  pickUp: () => false,
  read: () => null,
  handle: () => {},
  respond: () => 0,
  returnToPoller: () => true,
  tearDown: () => true,
  loopAtFlip: () => ({ place: 'in-poll' }) as const,
  closeSocket: () => {},
  halfClose: () => {},
  notifyArbiter: () => {},
  exit: () => {},
};
