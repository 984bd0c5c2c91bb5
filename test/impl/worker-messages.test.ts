/**
 * What a worker tells its arbiter, in order (impl/worker.ts, one module: its IPC channel is a
 * recording function here). The arbiter acts on a control message — it announces the server
 * listening on `ready`, takes the worker's end on `bye` — so every trace event the worker wrote
 * before one must reach the arbiter before it: a worker killed right after (the conformance paths
 * SEGV a worker as soon as the server listens) takes unsent events with it, and the trace then had
 * no boot for a worker the arbiter had announced — nor a crash, as the arbiter follows only booted
 * workers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WorkerServer } from '../../impl/worker.ts';
import { DEFAULT_LIMITS } from '../../impl/http.ts';
import { DEFAULT_SERVER_PARAMS } from '../../model/params.ts';
import type { WorkerMessage, WorkerSpec } from '../../impl/protocol.ts';
import type { TraceEvent } from '../../model/events.ts';
import { waitFor } from './server.ts';

const SPEC: WorkerSpec = {
  policy: 'safe-drain',
  params: DEFAULT_SERVER_PARAMS,
  app: 'hello',
  cwd: process.cwd(),
  counterLog: '',
  limits: DEFAULT_LIMITS,
  originNs: process.hrtime.bigint().toString(),
  trace: 'all',
  id: 'worker/1',
  n: 1,
  maxRequests: 0,
};

/** The messages in the order sent, and the trace events each control message came after. */
function recorder() {
  const messages: WorkerMessage[] = [];
  const exits: number[] = [];
  const send = (message: WorkerMessage, done?: () => void) => {
    messages.push(message);
    done?.();
  };
  const eventsBefore = (kind: WorkerMessage['kind']): string[] => {
    const at = messages.findIndex((m) => m.kind === kind);
    expect(at, `a ${kind} message`).toBeGreaterThanOrEqual(0);
    return messages.slice(0, at).flatMap((m) => (m.kind === 'events' ? m.events.map((e: TraceEvent) => e.type) : []));
  };
  return { messages, exits, send, exit: (code: number) => exits.push(code), eventsBefore };
}

describe('a worker tells its arbiter of its state only after the trace events that led there', () => {
  let stop: (() => void) | null = null;
  afterEach(() => stop?.());

  it('ready comes after the boot and ready events; bye after the exit', async () => {
    const r = recorder();
    const worker = new WorkerServer(SPEC, () => ({ status: 200, headers: {}, body: 'ok\n' }), r.send, r.exit);
    stop = () => worker.signal('INT');
    worker.boot({ close: () => {} } as never);
    worker.listen({ host: '127.0.0.1', port: 0 });
    await waitFor(() => r.messages.some((m) => m.kind === 'ready'), 5_000, 'the worker to say ready');
    // Before the fix, `ready` went out at once and the events an event-loop turn later.
    expect(r.eventsBefore('ready')).toEqual(['worker.boot', 'worker.ready']);
    worker.signal('TERM');
    await waitFor(() => r.exits.length > 0, 5_000, 'the worker to exit');
    stop = null;
    expect(r.exits).toEqual([0]);
    const before = r.eventsBefore('bye');
    expect(before).toContain('worker.exit');
    expect(before.at(-1)).toBe('worker.exit');
    // Nothing of the trace is left behind the last word.
    expect(r.messages.at(-1)!.kind).toBe('bye');
  });
});
