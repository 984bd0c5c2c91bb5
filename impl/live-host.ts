/**
 * The actor host on the process's monotonic clock: the same machines the
 * simulator steps in virtual time decide here in real time. Every process of
 * a server measures from the arbiter's start (`originNs`, CLOCK_MONOTONIC is
 * shared by all processes of a host), so the merged trace has one time axis.
 */
import { ActorHost, type Timer, type TraceSink } from '../model/host.ts';
import { MAX_TIMER_MS } from '../model/limits.ts';
import type { Runtimes } from '../model/machines/index.ts';

export class ServerInvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerInvariantError';
  }
}

export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** Milliseconds on the same clock. Not `performance.now()`: that global loads perf_hooks into every worker. */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1e3 + nanoseconds / 1e6;
}

export class LiveHost extends ActorHost {
  constructor(
    runtimes: Runtimes,
    sink: TraceSink,
    private readonly originNs: bigint,
  ) {
    super(runtimes, sink);
  }

  get nowMs(): number {
    return Number(monotonicNs() - this.originNs) / 1e6;
  }

  private readonly timers = new TimerQueues();
  private stopped = false;

  at(delayMs: number, run: () => void): Timer {
    // Node turns a longer delay into 1 ms: a graceful timeout of weeks would fire at once.
    if (!(delayMs >= 0 && delayMs <= MAX_TIMER_MS)) throw this.invariant(`a timer of ${delayMs} ms is outside 0..${MAX_TIMER_MS} ms (what a timer can hold)`);
    const timer = this.timers.add(delayMs, () => this.dispatch(run));
    if (this.stopped) timer.cancelled = true;
    return timer;
  }

  /** The process is leaving: no timer of a machine may keep it alive or fire. */
  stop(): void {
    this.stopped = true;
    this.timers.cancelAll();
  }

  protected invariant(message: string): Error {
    return new ServerInvariantError(message.replace('the host produced', 'the server produced'));
  }
}

/**
 * The machines' timers, one first-in-first-out queue per delay, each with at most one Node timer armed
 * for its earliest entry. Why not a Node timer each: a connection arms and cancels its keep-alive
 * timer at every request, and a Node timer's creation and cancellation were a few percent of a
 * request's cost in a short-lived (max-requests) worker. Timers of one delay are due in the order they
 * were armed, so each queue stays sorted by due time without sorting; a cancelled entry is only
 * marked, and skipped when its time comes.
 */
export class TimerQueues {
  private readonly queues = new Map<number, TimerQueue>();

  add(delayMs: number, run: () => void): Timer {
    let queue = this.queues.get(delayMs);
    if (!queue) {
      queue = new TimerQueue(delayMs);
      this.queues.set(delayMs, queue);
    }
    return queue.add(run);
  }

  cancelAll(): void {
    for (const queue of this.queues.values()) queue.cancelAll();
  }
}

class QueuedTimer implements Timer {
  done = false;

  constructor(
    readonly dueMs: number,
    readonly run: () => void,
    private readonly queue: TimerQueue,
  ) {}

  get cancelled(): boolean {
    return this.done;
  }

  set cancelled(value: boolean) {
    if (!value || this.done) return;
    this.done = true;
    this.queue.cancelled();
  }
}

const NODE_TIMER_GRANULARITY_MS = 1;

class TimerQueue {
  private entries: QueuedTimer[] = [];
  private head = 0;
  /** Entries neither fired nor cancelled: with none, no Node timer keeps the process alive. */
  private live = 0;
  private handle: NodeJS.Timeout | null = null;
  private armedForMs = Number.NaN;

  constructor(private readonly delayMs: number) {}

  add(run: () => void): Timer {
    const timer = new QueuedTimer(monotonicMs() + this.delayMs, run, this);
    this.entries.push(timer);
    this.live++;
    if (this.handle === null) this.arm();
    return timer;
  }

  cancelled(): void {
    this.live--;
    if (this.live === 0) this.disarm();
  }

  cancelAll(): void {
    for (let i = this.head; i < this.entries.length; i++) this.entries[i]!.done = true;
    this.entries = [];
    this.head = 0;
    this.live = 0;
    this.disarm();
  }

  /** A Node timer for the earliest entry still waiting (cancelled ones at the front are dropped). */
  private arm(): void {
    while (this.head < this.entries.length && this.entries[this.head]!.done) this.head++;
    if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
      return;
    }
    const dueMs = this.entries[this.head]!.dueMs;
    if (this.handle !== null && this.armedForMs === dueMs) return;
    this.disarm();
    this.armedForMs = dueMs;
    this.handle = setTimeout(() => this.fire(), Math.max(0, Math.ceil(dueMs - monotonicMs())));
  }

  private disarm(): void {
    if (this.handle !== null) clearTimeout(this.handle);
    this.handle = null;
  }

  /**
   * Run every entry that is due, in the order armed; each may arm or cancel others. Due as Node
   * counts it: Node's clock is the event loop's, in whole milliseconds, read when the loop turned,
   * so a Node timer runs up to a millisecond before its delay has passed on the monotonic clock —
   * as every timer of the server did before they were queued here. An entry within that millisecond
   * runs now rather than a turn later (which would make this process's timers lose every tie with
   * another process's: the graceful deadline of a worker and of its arbiter).
   */
  private fire(): void {
    this.handle = null;
    const nowMs = monotonicMs() + NODE_TIMER_GRANULARITY_MS;
    while (this.head < this.entries.length) {
      const timer = this.entries[this.head]!;
      if (!timer.done && timer.dueMs > nowMs) break;
      this.head++;
      if (timer.done) continue;
      timer.done = true;
      this.live--;
      timer.run();
    }
    // Compact now and then: the array holds what was cancelled until its time came.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    if (this.handle === null) this.arm();
  }
}
