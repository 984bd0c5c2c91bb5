/**
 * The machine's cores, shared (processor sharing): every thread with work
 * runs at once, each at `min(1, cores / runnable)` of a core — what Linux's
 * fair scheduler gives threads that all want the CPU. A thread does its work
 * in order (a Node.js worker's one JavaScript thread: the event loop answers
 * one request after another).
 *
 * Why it exists: a profile that measures a request's *time* holds only for
 * the concurrency it was measured at. A worker process serves at the pace
 * its one thread gets from the cores, however many connections it holds;
 * a simulated worker that served each connection at a measured time served
 * faster the more it held, and reached max-requests first with the most
 * connections (simulator/README.md, "Which connections a recycling worker
 * holds"). With the CPU shared, a request takes the *work* measured for it
 * (CPU ms), and its time follows from what else runs: the other workers,
 * a replacement booting, the client.
 *
 * Work is in CPU ms; a thread at rate r does r ms of it per ms. Whenever the
 * set of runnable threads changes, every thread's progress so far is booked
 * and the next completion is scheduled again (one pending wake-up at most).
 */
export interface CpuClock {
  readonly nowMs: number;
  /** Run `run` after `delayMs`; the handle cancels it. */
  at(delayMs: number, run: () => void): { cancelled: boolean };
}

interface Job {
  remainingMs: number;
  readonly done: () => void;
}

/** Work left below this is done: what floating-point booking leaves of a job that should be finished. */
const DONE_EPSILON_MS = 1e-9;

export class SharedCpu {
  /** Each thread's work, in order; a thread with none is not kept. Insertion order decides ties. */
  private readonly threads = new Map<string, Job[]>();
  /** Threads that may not run (a stopped process): their work waits. */
  private readonly paused = new Set<string>();
  private bookedAtMs: number;
  private wakeUp: { cancelled: boolean } | null = null;
  /** CPU ms done so far, by every thread (the run's total, for reports and tests). */
  workDoneMs = 0;

  constructor(
    readonly cores: number,
    private readonly clock: CpuClock,
  ) {
    if (!(cores > 0)) throw new Error(`a CPU needs cores > 0, got ${cores}`);
    this.bookedAtMs = clock.nowMs;
  }

  /** The thread whose finished work's `done` runs now (null outside one): what it queues `next` goes on from there. */
  completing: string | null = null;

  /**
   * Queue `workMs` of CPU on `thread`; `done` runs when it is finished. `last`: after what the thread
   * already has. `next`: before it — only from the thread's own `done` (its callback going on), when
   * nothing queued has started yet. `after-current`: behind the job in progress, before the rest.
   */
  run(thread: string, workMs: number, done: () => void, place: 'last' | 'next' | 'after-current' = 'last'): void {
    if (!(workMs >= 0)) throw new Error(`${thread}: work must be ≥ 0 ms, got ${workMs}`);
    if (place === 'next' && this.completing !== thread) throw new Error(`${thread}: work queued next outside its own completion`);
    this.book();
    const job = { remainingMs: workMs, done };
    const jobs = this.threads.get(thread);
    if (!jobs) this.threads.set(thread, [job]);
    else if (place === 'next') jobs.unshift(job);
    // Inside the thread's own completion nothing is in progress: behind it is first.
    else if (place === 'after-current') jobs.splice(this.completing === thread ? 0 : 1, 0, job);
    else jobs.push(job);
    this.schedule();
  }

  /** The thread is gone (its process exited): its work is dropped, and never done. */
  drop(thread: string): void {
    this.book();
    this.threads.delete(thread);
    this.paused.delete(thread);
    this.schedule();
  }

  /** The thread's process is stopped (SIGSTOP): its work waits, taking no share. */
  pause(thread: string): void {
    this.book();
    this.paused.add(thread);
    this.schedule();
  }

  resume(thread: string): void {
    this.book();
    this.paused.delete(thread);
    this.schedule();
  }

  /** Threads with work that may run now. */
  runnable(): number {
    let count = 0;
    for (const thread of this.threads.keys()) if (!this.paused.has(thread)) count++;
    return count;
  }

  /** The share of a core each runnable thread gets now. */
  private rate(): number {
    const runnable = this.runnable();
    return runnable === 0 ? 0 : Math.min(1, this.cores / runnable);
  }

  /** Book every runnable thread's progress since the last booking, at the rate that held meanwhile. */
  private book(): void {
    const nowMs = this.clock.nowMs;
    const elapsedMs = nowMs - this.bookedAtMs;
    this.bookedAtMs = nowMs;
    if (elapsedMs <= 0) return;
    const rate = this.rate();
    for (const [thread, jobs] of this.threads) {
      if (this.paused.has(thread)) continue;
      const head = jobs[0]!;
      const doneMs = Math.min(head.remainingMs, elapsedMs * rate);
      head.remainingMs -= doneMs;
      this.workDoneMs += doneMs;
    }
  }

  /** One wake-up, at the earliest head's end at the current rate. */
  private schedule(): void {
    if (this.wakeUp) this.wakeUp.cancelled = true;
    this.wakeUp = null;
    const rate = this.rate();
    if (rate === 0) return;
    let firstMs = Number.POSITIVE_INFINITY;
    for (const [thread, jobs] of this.threads) {
      if (!this.paused.has(thread)) firstMs = Math.min(firstMs, jobs[0]!.remainingMs / rate);
    }
    this.wakeUp = this.clock.at(Math.max(0, firstMs), () => this.finishDue());
  }

  private finishDue(): void {
    this.wakeUp = null;
    this.book();
    const finished: [string, () => void][] = [];
    for (const [thread, jobs] of this.threads) {
      if (this.paused.has(thread) || jobs[0]!.remainingMs > DONE_EPSILON_MS) continue;
      this.workDoneMs += jobs[0]!.remainingMs;
      finished.push([thread, jobs.shift()!.done]);
      if (jobs.length === 0) this.threads.delete(thread);
    }
    // Scheduled before the callbacks: they may queue more work, which books and schedules again.
    this.schedule();
    for (const [thread, done] of finished) {
      // No time passes among these callbacks: a thread's next job has not started while its own runs.
      this.completing = thread;
      try {
        done();
      } finally {
        this.completing = null;
      }
    }
  }
}
