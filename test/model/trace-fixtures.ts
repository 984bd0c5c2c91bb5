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

/** The operator's TERM at 100 ms: the arbiter closes its listener copy and passes TERM to worker/1. */
const ARBITER_TERM: Row[] = [
  [100, 'arbiter', 'arbiter.signal', { signal: 'TERM' }],
  [100, 'arbiter', 'arbiter.close-listener'],
  [100, 'listener', 'listener.release', { holder: 'arbiter' }],
  [100, 'arbiter', 'arbiter.kill', { worker: 'worker/1', signal: 'TERM' }],
  [100, 'worker/1', 'worker.signal', { signal: 'TERM' }],
];

export const TERM_START: Row[] = [
  ...ARBITER_TERM,
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
 * gthread's pool hands each connection it answered with keep-alive back to the poller in the future's
 * done callback (`conn.returned`); here at once, as our own server does.
 */
function throughThePool(rows: readonly Row[]): Row[] {
  return rows.flatMap((r): Row[] => (r[2] === 'conn.respond' && r[3]?.close === false ? [r, [r[0], r[1], 'conn.returned']] : [r]));
}

/** gthread 20.x: an idle keep-alive connection (conn/1.1) and a slow request in flight (conn/1.2) when TERM comes. */
const GTHREAD_TERM_WITH_IDLE_AND_SLOW: Row[] = [
  ...BOOT,
  ...throughThePool(ONE_KEEPALIVE_REQUEST),
  ...SLOW_REQUEST_IN_FLIGHT,
  ...ARBITER_TERM,
  [100, 'conn/1.1', 'conn.drain'],
  [100, 'conn/1.2', 'conn.drain'],
];

/** The slow request's end, 3.5 s after TERM: answered with the keep-alive header fixed before the drain, then closed. */
const SLOW_REQUEST_DONE: Row[] = [
  [3600, 'conn/1.2', 'conn.handler-finish', { req: 'r3' }],
  [3600, 'conn/1.2', 'conn.respond', { req: 'r3', status: 200, close: false }],
  // gthread: the pool's done callback finds the worker no longer alive, and closes instead of keeping it.
  [3600, 'conn/1.2', 'conn.returned'],
  [3600, 'worker/1', 'worker.request-end', { conn: 'conn/1.2', req: 'r3' }],
  [3600, 'conn/1.2', 'conn.close', { rst: false }],
  [3600, 'worker/1', 'worker.conn-closed', { conn: 'conn/1.2' }],
];

/**
 * gunicorn gthread 20.1–23.0, the seed's failure, on reference e1's timeline
 * (shared/reference/gunicorn-sources.md §e1: A sends on its idle keep-alive
 * connection 1.5 s after SIGTERM, and gets ECONNRESET when the worker exits).
 * The poll in progress at SIGTERM runs out first (`worker.turn-timeout`, the
 * last loop turn, ≤ 1 s): then the idle connection is abandoned, and A's
 * request sits unread until the exit's close sends RST. The slow request in
 * flight was answered with the keep-alive header decided before the drain,
 * and closed at once.
 */
export const GTHREAD_ORPHAN_RESET: Row[] = [
  ...GTHREAD_TERM_WITH_IDLE_AND_SLOW,
  [1100, 'worker/1', 'worker.turn-timeout'],
  [1100, 'conn/1.1', 'conn.turn-end'],
  [1100, 'worker/1', 'worker.close-listener'],
  [1100, 'listener', 'listener.release', { holder: 'worker/1' }],
  [1600, 'client/1', 'client.send', { req: 'r2', idempotent: true }],
  [1601, 'conn/1.1', 'conn.bytes', { req: 'r2' }],
  ...SLOW_REQUEST_DONE,
  [3600, 'conn/1.1', 'conn.abort', { reason: 'worker-exit' }],
  [3600, 'conn/1.1', 'conn.close', { rst: true }],
  [3600, 'worker/1', 'worker.conn-closed', { conn: 'conn/1.1' }],
  [3600, 'worker/1', 'worker.exit', { code: 0 }],
  [3600, 'arbiter', 'arbiter.reap', { worker: 'worker/1', code: 0 }],
  [3600, 'arbiter', 'arbiter.exit', { code: 0 }],
  [3601, 'client/2', 'client.response', { req: 'r3', status: 200, close: false }],
  [3601, 'client/1', 'client.fail', { reason: 'reset', req: 'r2' }],
  [3602, 'client/2', 'client.eof'],
];

/**
 * The same drain with A's request inside the last loop turn (the gap gthread 20.1 showed on the wire,
 * conformance/README.md): the poll returns with A's connection readable, which ends the turn; A's
 * request is served — with `Connection: close`, the worker no longer alive at its handler's start.
 */
export const GTHREAD_LAST_TURN_SERVES: Row[] = [
  ...GTHREAD_TERM_WITH_IDLE_AND_SLOW,
  [400, 'client/1', 'client.send', { req: 'r2', idempotent: true }],
  [401, 'conn/1.1', 'conn.bytes', { req: 'r2' }],
  [401, 'worker/1', 'worker.turn-end'],
  [401, 'worker/1', 'worker.close-listener'],
  [401, 'listener', 'listener.release', { holder: 'worker/1' }],
  [401, 'conn/1.1', 'conn.read', { req: 'r2' }],
  [401, 'worker/1', 'worker.request-start', { conn: 'conn/1.1', req: 'r2' }],
  [401, 'conn/1.1', 'conn.handler-start', { req: 'r2' }],
  [402, 'conn/1.1', 'conn.handler-finish', { req: 'r2' }],
  [402, 'conn/1.1', 'conn.respond', { req: 'r2', status: 200, close: true }],
  [402, 'worker/1', 'worker.request-end', { conn: 'conn/1.1', req: 'r2' }],
  [402, 'conn/1.1', 'conn.close', { rst: false }],
  [402, 'worker/1', 'worker.conn-closed', { conn: 'conn/1.1' }],
  [403, 'client/1', 'client.response', { req: 'r2', status: 200, close: true }],
  [404, 'client/1', 'client.eof'],
  [404, 'client/1', 'client.close'],
  ...SLOW_REQUEST_DONE,
  [3600, 'worker/1', 'worker.exit', { code: 0 }],
  [3600, 'arbiter', 'arbiter.reap', { worker: 'worker/1', code: 0 }],
  [3600, 'arbiter', 'arbiter.exit', { code: 0 }],
  [3601, 'client/2', 'client.response', { req: 'r3', status: 200, close: false }],
  [3602, 'client/2', 'client.eof'],
];
