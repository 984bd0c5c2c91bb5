/**
 * The actor host on the process's monotonic clock: the same machines the
 * simulator steps in virtual time decide here in real time. Every process of
 * a server measures from the arbiter's start (`originNs`, CLOCK_MONOTONIC is
 * shared by all processes of a host), so the merged trace has one time axis.
 */
import { ActorHost, type Timer, type TraceSink } from '../model/host.ts';
import { MAX_TIMER_MS } from '../model/limits.ts';
import type { Runtimes } from '../model/machines/index.ts';
import { WORKER_TIMER_IDS } from '../model/machines/worker.ts';
import type { ActorId } from '../model/events.ts';

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

/**
 * A worker's own graceful deadline is a backstop: when the arbiter stops or reloads the server, its
 * KILL at the same deadline is what ends a worker still draining (the chart's tie, which the
 * simulator resolves arbiter first). On real clocks the two timers run in two processes, and an
 * arbiter whose event loop is a few ms behind (it writes every worker's trace) would lose the tie
 * to the worker's timer. So the worker's runs this much later — as gunicorn's does, whose worker
 * starts its wait only when its loop has ended. Well inside the real clock's tolerance (REAL_CLOCK:
 * 1 s late); a worker that drains on its own (max-requests) exits this much after its deadline.
 */
export const WORKER_BACKSTOP_MS = 50;

export class LiveHost extends ActorHost {
  constructor(
    runtimes: Runtimes,
    sink: TraceSink,
    private readonly originNs: bigint,
  ) {
    super(runtimes, sink);
  }

  protected override timerDelayMs(actor: ActorId, id: string, delayMs: number): number {
    return id === WORKER_TIMER_IDS.graceful && actor.startsWith('worker/') ? Math.min(delayMs + WORKER_BACKSTOP_MS, MAX_TIMER_MS) : delayMs;
  }

  get nowMs(): number {
    return Number(monotonicNs() - this.originNs) / 1e6;
  }

  private readonly pending = new Set<LiveTimer>();
  private stopped = false;

  at(delayMs: number, run: () => void): Timer {
    // Node turns a longer delay into 1 ms: a graceful timeout of weeks would fire at once.
    if (!(delayMs >= 0 && delayMs <= MAX_TIMER_MS)) throw this.invariant(`a timer of ${delayMs} ms is outside 0..${MAX_TIMER_MS} ms (what a timer can hold)`);
    const timer = new LiveTimer(delayMs, () => {
      this.pending.delete(timer);
      this.dispatch(run);
    });
    if (this.stopped) timer.cancelled = true;
    else this.pending.add(timer);
    return timer;
  }

  /** The process is leaving: no timer of a machine may keep it alive or fire. */
  stop(): void {
    this.stopped = true;
    for (const timer of this.pending) timer.cancelled = true;
    this.pending.clear();
  }

  protected invariant(message: string): Error {
    return new ServerInvariantError(message.replace('the host produced', 'the server produced'));
  }
}

/** A timer whose cancellation also clears the Node timer, so a cancelled graceful timeout does not keep a process alive. */
class LiveTimer implements Timer {
  private readonly handle: NodeJS.Timeout;
  private done = false;

  constructor(delayMs: number, run: () => void) {
    this.handle = setTimeout(() => {
      this.done = true;
      run();
    }, delayMs);
  }

  get cancelled(): boolean {
    return this.done;
  }

  set cancelled(value: boolean) {
    if (!value || this.done) return;
    this.done = true;
    clearTimeout(this.handle);
  }
}
