/**
 * Hand-written traces of the seed's scenarios. Each event is written as
 * [t, actor, type, payload]; `toTrace` adds the header.
 */
import type { TraceEvent } from '../../model/events.ts';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from '../../model/params.ts';
import { formatTrace, makeHeader, parseTrace, type Trace } from '../../model/trace.ts';

export type Row = readonly [number, string, string, Record<string, unknown>?];

export const PARAMS: ServerParams = { ...DEFAULT_SERVER_PARAMS, workers: 1, threads: 4, keepAliveMs: 2000, idleGraceMs: 1000, gracefulTimeoutMs: 30_000 };

export function toTrace(policy: string, rows: readonly Row[], complete = true, params: ServerParams = PARAMS): Trace {
  const events = rows.map(([t, actor, type, payload]) => ({ t, actor, type, ...payload }) as TraceEvent);
  // Round-trip through the text format so that line numbers are the file's.
  return parseTrace(formatTrace({ header: makeHeader(policy, params, complete), events }));
}

/** The file line of a row (the header is line 1). */
export const lineOfRow = (index: number): number => index + 2;

export const BOOT: Row[] = [
  [0, 'listener', 'listener.open', { family: 'tcp', backlog: 2048, somaxconn: 4096 }],
  [0, 'listener', 'listener.hold', { holder: 'arbiter' }],
  [0, 'arbiter', 'arbiter.start', { workers: 1 }],
  [0, 'arbiter', 'arbiter.spawn', { worker: 'worker/1' }],
  [0, 'listener', 'listener.hold', { holder: 'worker/1' }],
  [0, 'worker/1', 'worker.boot'],
  [5, 'worker/1', 'worker.ready'],
];

/** A client connects and sends a request; worker/1 accepts it and starts the handler. */
function requestStarted(t: number, client: string, conn: string, req: string): Row[] {
  return [
    [t, client, 'client.connect'],
    [t, 'listener', 'listener.syn', { client }],
    [t, client, 'client.connected'],
    [t, client, 'client.send', { req, idempotent: true }],
    [t + 1, 'listener', 'listener.accept', { client, conn, worker: 'worker/1' }],
    [t + 1, 'worker/1', 'worker.accept', { conn }],
    [t + 1, conn, 'conn.open', { worker: 'worker/1', client }],
    [t + 1, conn, 'conn.bytes', { req }],
    [t + 1, conn, 'conn.read', { req }],
    [t + 1, 'worker/1', 'worker.request-start', { conn, req }],
    [t + 1, conn, 'conn.handler-start', { req }],
  ];
}

/** One keep-alive request served, the connection left idle in the client's pool. */
export const ONE_KEEPALIVE_REQUEST: Row[] = [
  ...requestStarted(10, 'client/1', 'conn/1.1', 'r1'),
  [13, 'conn/1.1', 'conn.handler-finish', { req: 'r1' }],
  [13, 'conn/1.1', 'conn.respond', { req: 'r1', status: 200, close: false }],
  [13, 'worker/1', 'worker.request-end', { conn: 'conn/1.1', req: 'r1' }],
  [14, 'client/1', 'client.response', { req: 'r1', status: 200, close: false }],
];

export const TERM_START: Row[] = [
  [100, 'arbiter', 'arbiter.signal', { signal: 'TERM' }],
  [100, 'arbiter', 'arbiter.close-listener'],
  [100, 'listener', 'listener.release', { holder: 'arbiter' }],
  [100, 'arbiter', 'arbiter.kill', { worker: 'worker/1', signal: 'TERM' }],
  [100, 'worker/1', 'worker.signal', { signal: 'TERM' }],
  [100, 'conn/1.1', 'conn.drain'],
  [100, 'worker/1', 'worker.close-listener'],
  [100, 'listener', 'listener.release', { holder: 'worker/1' }],
];

/** safe-drain: the idle connection gets its grace window, then a lingering close; the worker exits. */
export const SAFE_DRAIN_SHUTDOWN: Row[] = [
  ...BOOT,
  ...ONE_KEEPALIVE_REQUEST,
  ...TERM_START,
  [600, 'worker/1', 'worker.heartbeat'],
  [1100, 'conn/1.1', 'conn.grace-timeout'],
  [1100, 'conn/1.1', 'conn.half-close'],
  [1100, 'worker/1', 'worker.heartbeat'],
  [1101, 'client/1', 'client.eof'],
  [1102, 'conn/1.1', 'conn.peer-fin'],
  [1102, 'conn/1.1', 'conn.close', { rst: false }],
  [1102, 'worker/1', 'worker.conn-closed', { conn: 'conn/1.1' }],
  [1102, 'worker/1', 'worker.exit', { code: 0 }],
  [1102, 'arbiter', 'arbiter.reap', { worker: 'worker/1', code: 0 }],
  [1102, 'arbiter', 'arbiter.exit', { code: 0 }],
];

/** A second client whose slow request is in flight when TERM arrives (it keeps a gthread worker draining). */
const SLOW_REQUEST_IN_FLIGHT: Row[] = requestStarted(50, 'client/2', 'conn/1.2', 'r3');

/**
 * gunicorn gthread 20.1–23.0, the seed's failure (reference e1): the idle
 * keep-alive connection is orphaned on drain; the client's next request sits
 * unread until the worker exits and the close sends RST. The slow request in
 * flight was answered with the keep-alive header decided before the drain,
 * and closed at once.
 */
export const GTHREAD_ORPHAN_RESET: Row[] = [
  ...BOOT,
  ...ONE_KEEPALIVE_REQUEST,
  ...SLOW_REQUEST_IN_FLIGHT,
  [100, 'arbiter', 'arbiter.signal', { signal: 'TERM' }],
  [100, 'arbiter', 'arbiter.close-listener'],
  [100, 'listener', 'listener.release', { holder: 'arbiter' }],
  [100, 'arbiter', 'arbiter.kill', { worker: 'worker/1', signal: 'TERM' }],
  [100, 'worker/1', 'worker.signal', { signal: 'TERM' }],
  [100, 'conn/1.1', 'conn.drain'],
  [100, 'conn/1.2', 'conn.drain'],
  [100, 'worker/1', 'worker.close-listener'],
  [100, 'listener', 'listener.release', { holder: 'worker/1' }],
  [150, 'client/1', 'client.send', { req: 'r2', idempotent: true }],
  [151, 'conn/1.1', 'conn.bytes', { req: 'r2' }],
  [690, 'conn/1.2', 'conn.handler-finish', { req: 'r3' }],
  [690, 'conn/1.2', 'conn.respond', { req: 'r3', status: 200, close: false }],
  [690, 'worker/1', 'worker.request-end', { conn: 'conn/1.2', req: 'r3' }],
  [690, 'conn/1.2', 'conn.close', { rst: false }],
  [690, 'worker/1', 'worker.conn-closed', { conn: 'conn/1.2' }],
  [690, 'conn/1.1', 'conn.abort', { reason: 'worker-exit' }],
  [690, 'conn/1.1', 'conn.close', { rst: true }],
  [690, 'worker/1', 'worker.conn-closed', { conn: 'conn/1.1' }],
  [690, 'worker/1', 'worker.exit', { code: 0 }],
  [690, 'arbiter', 'arbiter.reap', { worker: 'worker/1', code: 0 }],
  [690, 'arbiter', 'arbiter.exit', { code: 0 }],
  [691, 'client/2', 'client.response', { req: 'r3', status: 200, close: false }],
  [691, 'client/1', 'client.fail', { reason: 'reset', req: 'r2' }],
  [692, 'client/2', 'client.eof'],
];
