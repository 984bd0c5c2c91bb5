/**
 * The judge's thread (judge-thread.ts): takes one observed run at a time and answers with its
 * verdict. Runs from its own bundle: a worker thread starts from JavaScript, not TypeScript.
 */
import { parentPort } from 'node:worker_threads';
import type { TraceEvent } from '../model/events.ts';
import { judgeRun } from './blackbox.ts';
import { getScript } from './scripts.ts';

export interface JudgeRequest {
  readonly id: number;
  readonly script: string;
  readonly policies: readonly string[];
  readonly observed: readonly TraceEvent[];
  readonly maxStates?: number;
}

export type JudgeAnswer = { readonly id: number; readonly verdict: ReturnType<typeof judgeRun> } | { readonly id: number; readonly error: string };

if (!parentPort) throw new Error('conformance/judge-worker.ts runs as a worker thread (judge-thread.ts starts it)');
const port = parentPort;
port.on('message', (request: JudgeRequest) => {
  let answer: JudgeAnswer;
  try {
    answer = { id: request.id, verdict: judgeRun(getScript(request.script), request.policies, request.observed, request.maxStates) };
  } catch (error) {
    answer = { id: request.id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
  port.postMessage(answer);
});
