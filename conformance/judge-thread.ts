/**
 * Judging a black-box run beside the next one. Running a script is mostly waiting for its timeline (a
 * TERM at 0.3 s, a 1.5 s request); judging it is CPU (the simulator under each policy, and where that
 * differs, a search of every interleaving: seconds for some scripts). One thread judges the runs in
 * the order they came while the main thread goes on running scripts, so a report takes about the
 * time of its runs rather than of its runs and its judging — one core for the judge, the other for
 * the server and its clients.
 */
import { Worker } from 'node:worker_threads';
import { bundle, programOptions } from '../bin/bundle-cache.mjs';
import type { TraceEvent } from '../model/events.ts';
import type { ScriptVerdict } from './blackbox.ts';
import type { JudgeAnswer, JudgeRequest } from './judge-worker.ts';

const ENTRY = 'conformance/judge-worker.ts';

export class JudgeThread {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (verdict: ScriptVerdict) => void; reject: (error: Error) => void }>();
  private failure: Error | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (answer: JudgeAnswer) => {
      const waiter = this.waiting.get(answer.id);
      if (!waiter) return;
      this.waiting.delete(answer.id);
      if ('error' in answer) waiter.reject(new Error(`the judge failed: ${answer.error}`));
      else waiter.resolve(answer.verdict);
    });
    // A thread that dies takes every verdict still owed with it: say so to each.
    const fail = (error: Error) => {
      this.failure = error;
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
    };
    worker.on('error', (error) => fail(new Error(`the judge's thread failed: ${error.message}`)));
    worker.on('exit', (code) => fail(new Error(`the judge's thread exited (${code}) with verdicts owed`)));
  }

  /** The judge's thread, from its bundle (kept between runs, bin/bundle-cache.mjs). */
  static async start(): Promise<JudgeThread> {
    const path = await bundle('quiesce-judge', 'mjs', programOptions(ENTRY));
    return new JudgeThread(new Worker(path));
  }

  /** The verdict on one run, once the runs before it are judged. */
  verdict(script: string, policies: readonly string[], observed: readonly TraceEvent[], maxStates?: number): Promise<ScriptVerdict> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const request: JudgeRequest = { id, script, policies, observed, ...(maxStates === undefined ? {} : { maxStates }) };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage(request);
    });
  }

  /** Ends the thread; verdicts still owed are refused. */
  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
