import { describe, expect, it } from 'vitest';
import { DEFAULT_SERVER_PARAMS, getPolicy, listPolicies, machinesFor, POLICY_NAMES, BASE_POLICY_NAMES, UnknownPolicyError, responseMustClose } from '../../model/index.ts';
import { drive } from '../helpers.ts';
import { allStates, chartOf } from '../../model/structure.ts';

const params = { ...DEFAULT_SERVER_PARAMS, threads: 4, keepAliveMs: 2000, idleGraceMs: 1000 };

const open = { type: 'conn.open', worker: 'worker/1', client: 'client/1' };
const serve = (req: string, close: boolean) => [
  { type: 'conn.bytes', req },
  { type: 'conn.read', req },
  { type: 'conn.handler-start', req },
  { type: 'conn.handler-finish', req },
  { type: 'conn.respond', req, status: 200, close },
];

/** A keep-alive exchange, up to the connection idle again: a poller's pool hands it back first (`conn.returned`). */
const keptAlive = (name: string, req: string) => [...serve(req, false), ...(getPolicy(name).pollerDispatch ? [{ type: 'conn.returned' }] : [])];

/**
 * What each policy does with a keep-alive connection that is idle when the
 * worker starts draining — the behaviour that tells the policies apart. The
 * expectations come from the policy descriptions (and, for gunicorn, from the
 * reference's per-class table §3.3), not from running the machine.
 */
const IDLE_ON_DRAIN: Record<string, { state: string; timerMs?: number; closes?: 'at-once' }> = {
  // In the poll still running when alive = False (gthread.py@20.1 run(): the loop checks alive only between turns).
  'gunicorn-gthread': { state: 'idle.lastTurn' },
  'gunicorn-gthread-24': { state: 'idle.drainKept' },
  'gunicorn-async': { state: 'idle.keptAlive' },
  'abort-idle': { state: 'closingHard', closes: 'at-once' },
  'close-after-next': { state: 'idle.keptAlive' },
  'serve-until-deadline': { state: 'idle.drainKept' },
  'idle-grace': { state: 'idle.drainGrace', timerMs: 1000 },
  'never-close-idle': { state: 'orphaned' },
  'safe-drain': { state: 'idle.drainGrace', timerMs: 1000 },
};

/**
 * gthread answers in a pool thread and takes the connection back only in the future's done callback
 * (gthread.py@20.1 `finish_request`, after `post_request`): `if keepalive and self.alive:` register it
 * in the poller, `else: conn.close()`. Between the response and that callback the connection is no
 * one's: a request the client sends meanwhile waits unread, and `alive` is read only at the callback.
 */
describe("an answered keep-alive connection on its way back to gthread's poller", () => {
  const POLLERS = ['gunicorn-gthread', 'gunicorn-gthread-21', 'gunicorn-gthread-24'];
  // gthread 21–23 puts a new connection in the poller too: its first request is handed over.
  const answered = (name: string) => (name === 'gunicorn-gthread-21' ? [open, { type: 'conn.bytes', req: 'r1' }, { type: 'conn.dispatch' }, ...serve('r1', false).slice(1)] : [open, ...serve('r1', false)]);
  const next = { type: 'conn.bytes', req: 'r2' };
  const returned = { type: 'conn.returned' };

  it('is returning after the response, and kept alive in the poller once returned', () => {
    for (const name of POLLERS) {
      const { conn } = machinesFor(getPolicy(name), params);
      expect(drive(conn, answered(name)).state, name).toBe('returning.toKeep');
      expect(drive(conn, [...answered(name), returned]).state, name).toBe('idle.keptAlive');
      // No thread reads the next request before the loop hands it over.
      expect(drive(conn, [...answered(name), next, returned]).state, name).toBe('unpolled');
    }
  });

  it('answered while the worker drains, it is closed at the return: RST when the next request came first, FIN when not', () => {
    // Its handler began before the drain (the keep-alive header was fixed then); the callback reads alive = False.
    const drainedThenAnswered = [open, { type: 'conn.bytes', req: 'r1' }, { type: 'conn.read', req: 'r1' }, { type: 'conn.handler-start', req: 'r1' }, { type: 'conn.drain' }, { type: 'conn.handler-finish', req: 'r1' }, { type: 'conn.respond', req: 'r1', status: 200, close: false }];
    for (const name of ['gunicorn-gthread', 'gunicorn-gthread-24']) {
      const { conn } = machinesFor(getPolicy(name), params);
      expect(drive(conn, drainedThenAnswered).state, name).toBe('returning.toClose');
      const reset = drive(conn, [...drainedThenAnswered, next, returned]);
      expect(reset.state, name).toBe('closingHard');
      expect(reset.actions, name).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: true } }));
      const fin = drive(conn, [...drainedThenAnswered, returned]);
      expect(fin.actions, name).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: false } }));
    }
  });

  it('a drain after the callback read alive = True reaches the connection in the poller, as it reaches an idle one', () => {
    const { conn } = machinesFor(getPolicy('gunicorn-gthread'), params);
    expect(drive(conn, [...answered('gunicorn-gthread'), { type: 'conn.drain' }]).state).toBe('returning.toKeep');
    // gthread 20.x: the last loop turn may still read it.
    expect(drive(conn, [...answered('gunicorn-gthread'), { type: 'conn.drain' }, returned]).state).toBe('idle.lastTurn');
  });

  it("the process leaving first closes it with the kernel: the unread request is reset", () => {
    const { conn } = machinesFor(getPolicy('gunicorn-gthread'), params);
    const aborted = drive(conn, [...answered('gunicorn-gthread'), next, { type: 'conn.abort', reason: 'worker-exit' }]);
    expect(aborted.state).toBe('closingHard');
    expect(aborted.actions).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: true } }));
  });

  it('policies without a poller keep the connection at the response itself', () => {
    for (const name of ['gunicorn-async', 'abort-idle', 'safe-drain', 'never-close-idle']) {
      const { conn } = machinesFor(getPolicy(name), params);
      expect(drive(conn, [open, ...serve('r1', false)]).state, name).toBe('idle.keptAlive');
      expect(() => drive(conn, [open, ...serve('r1', false), returned]), name).toThrow(/conn.returned rejected/);
    }
  });
});

/**
 * gthread's kept-alive connections wait in the worker's poller (gthread.py@20.1 finish_request:
 * `poller.register(...)`; on_client_socket_readable → tpool.submit): a request that arrives is no
 * thread's until the loop's poll returns with it. The reference (gunicorn-sources §2.3, §2.4) says
 * what a drain does with such a request per version.
 */
describe("a request that arrived on a kept-alive connection of gthread's poller", () => {
  // gthread 21–23 puts a new connection in the poller too: its first request is handed over the same way.
  const firstServed = (name: string) => (name === 'gunicorn-gthread-21' ? [open, { type: 'conn.bytes', req: 'r1' }, { type: 'conn.dispatch' }, ...keptAlive(name, 'r1').slice(1)] : [open, ...keptAlive(name, 'r1')]);
  const arrivedOn = (name: string) => [...firstServed(name), { type: 'conn.bytes', req: 'r2' }];
  const arrived = arrivedOn('gunicorn-gthread');
  const handed = [{ type: 'conn.dispatch' }, { type: 'conn.read', req: 'r2' }, { type: 'conn.handler-start', req: 'r2' }, { type: 'conn.handler-finish', req: 'r2' }];

  it('waits for the loop: no thread may read it before the dispatch', () => {
    for (const name of ['gunicorn-gthread', 'gunicorn-gthread-21', 'gunicorn-gthread-24']) {
      const { conn } = machinesFor(getPolicy(name), params);
      const arrived = arrivedOn(name);
      expect(drive(conn, arrived).state, name).toBe('unpolled');
      expect(() => drive(conn, [...arrived, { type: 'conn.read', req: 'r2' }]), name).toThrow(/conn.read rejected in unpolled/);
      expect(drive(conn, [...arrived, { type: 'conn.dispatch' }]).state, name).toBe('pending.untimed');
    }
  });

  it('policies without a poller hand it to a thread at once', () => {
    for (const name of ['gunicorn-async', 'abort-idle', 'safe-drain', 'never-close-idle']) {
      expect(drive(machinesFor(getPolicy(name), params).conn, arrivedOn(name)).state, name).toBe('pending.untimed');
    }
  });

  it("gthread 20.x: a drain leaves it to the loop's last turn — handed over in it, it is served with close; when the turn ends first, it is abandoned and reset at the exit", () => {
    const { conn } = machinesFor(getPolicy('gunicorn-gthread'), params);
    const drained = [...arrived, { type: 'conn.drain' }];
    expect(drive(conn, drained).state).toBe('unpolled');
    expect(drive(conn, [...drained, ...handed, { type: 'conn.respond', req: 'r2', status: 200, close: true }]).state).toBe('closingHard');
    const abandoned = drive(conn, [...drained, { type: 'conn.turn-end' }, { type: 'conn.abort', reason: 'worker-exit' }]);
    expect(abandoned.actions).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: true } }));
    expect(() => drive(conn, [...drained, { type: 'conn.turn-end' }, { type: 'conn.dispatch' }])).toThrow(/conn.dispatch rejected in orphaned/);
    // A turn ends only after a drain began it: before one, the request waits for the loop, nothing else.
    expect(() => drive(conn, [...arrived, { type: 'conn.turn-end' }])).toThrow(/conn.turn-end rejected in unpolled/);
  });

  it('gthread 21–23: the drain abandons it at once (no last turn)', () => {
    const { conn } = machinesFor(getPolicy('gunicorn-gthread-21'), params);
    expect(drive(conn, [...arrivedOn('gunicorn-gthread-21'), { type: 'conn.drain' }]).state).toBe('orphaned');
  });

  it('gthread 24: its drain loop still polls, so it is handed over and served with close', () => {
    const { conn } = machinesFor(getPolicy('gunicorn-gthread-24'), params);
    const served = drive(conn, [...arrived, { type: 'conn.drain' }, ...handed, { type: 'conn.respond', req: 'r2', status: 200, close: true }]);
    expect(served.state).toBe('closingHard');
  });

  it('once handed over it is the pool\'s: a drain does not abandon it (tpool.shutdown(False) runs what was submitted)', () => {
    for (const name of ['gunicorn-gthread', 'gunicorn-gthread-21', 'gunicorn-gthread-24']) {
      const { conn } = machinesFor(getPolicy(name), params);
      expect(drive(conn, [...arrivedOn(name), { type: 'conn.dispatch' }, { type: 'conn.drain' }]).state, name).toBe('pending.untimed');
    }
  });
});

describe('an idle keep-alive connection when draining starts', () => {
  for (const [name, expected] of Object.entries(IDLE_ON_DRAIN)) {
    it(`${name}: ${expected.state}`, () => {
      const { conn } = machinesFor(getPolicy(name), params);
      const result = drive(conn, [open, ...keptAlive(name, 'r1'), { type: 'conn.drain' }]);
      expect(result.state).toBe(expected.state);
      if (expected.timerMs) {
        expect(result.actions).toContainEqual(expect.objectContaining({ type: 'xstate.raise', params: expect.objectContaining({ delay: expected.timerMs }) }));
      }
      if (expected.closes) expect(result.actions.map((a) => a.type)).toContain('closeSocket');
    });
  }

  it("gunicorn-gthread: the last loop turn still reads a request that arrives in it; once the turn is over, the connection is abandoned", () => {
    const { conn } = machinesFor(getPolicy('gunicorn-gthread'), params);
    const drained = [open, ...keptAlive('gunicorn-gthread', 'r1'), { type: 'conn.drain' }];
    // Served with close: draining when its handler started (gthread 20.1 force_close when not alive).
    expect(drive(conn, [...drained, ...serve('r2', true)]).state).toBe('closingHard');
    expect(() => drive(conn, [...drained, ...serve('r2', false)])).toThrow(/conn.respond rejected/);
    expect(drive(conn, [...drained, { type: 'conn.turn-end' }]).state).toBe('orphaned');
    // After the turn its bytes stay unread: the exit closes it with RST.
    const orphaned = drive(conn, [...drained, { type: 'conn.turn-end' }, { type: 'conn.bytes', req: 'r2' }, { type: 'conn.abort', reason: 'worker-exit' }]);
    expect(orphaned.actions).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: true } }));
  });

  it('gunicorn-sync has no idle connection: every response closes', () => {
    const { conn } = machinesFor(getPolicy('gunicorn-sync'), params);
    expect(() => drive(conn, [open, ...serve('r1', false)])).toThrow(/conn.respond rejected/);
    expect(drive(conn, [open, ...serve('r1', true)]).state).toBe('closingHard');
  });

  it('with +lingering-close a voluntary close half-closes first', () => {
    const { conn } = machinesFor(getPolicy('abort-idle+lingering-close'), params);
    const result = drive(conn, [open, ...serve('r1', false), { type: 'conn.drain' }]);
    expect(result.state).toBe('lingering.shuttingDown');
    expect(result.actions.map((a) => a.type)).toContain('halfClose');
  });
});

describe('the Connection header of a response whose handler started before the drain', () => {
  // gunicorn decides the header before the app runs; the respond-time policies decide when writing.
  const cases: Record<string, boolean> = {
    'gunicorn-gthread': false,
    'gunicorn-gthread-24': false,
    'gunicorn-async': false,
    'never-close-idle': false,
    'abort-idle': true,
    'close-after-next': true,
    'idle-grace': true,
    'safe-drain': true,
    'serve-until-deadline': false,
  };
  for (const [name, mustClose] of Object.entries(cases)) {
    it(`${name}: ${mustClose ? 'Connection: close' : 'keep-alive'}`, () => {
      const { conn } = machinesFor(getPolicy(name), params);
      const before = [open, { type: 'conn.bytes', req: 'r1' }, { type: 'conn.read', req: 'r1' }, { type: 'conn.handler-start', req: 'r1' }, { type: 'conn.drain' }, { type: 'conn.handler-finish', req: 'r1' }];
      expect(drive(conn, [...before, { type: 'conn.respond', req: 'r1', status: 200, close: mustClose }])).toBeDefined();
      expect(() => drive(conn, [...before, { type: 'conn.respond', req: 'r1', status: 200, close: !mustClose }])).toThrow(/rejected/);
    });
  }

  it('after a keep-alive response a draining gthread worker closes when its pool hands the connection back; gevent keeps the connection', () => {
    const drainedThenAnswered = [open, { type: 'conn.bytes', req: 'r1' }, { type: 'conn.read', req: 'r1' }, { type: 'conn.handler-start', req: 'r1' }, { type: 'conn.drain' }, { type: 'conn.handler-finish', req: 'r1' }, { type: 'conn.respond', req: 'r1', status: 200, close: false }];
    expect(drive(machinesFor(getPolicy('gunicorn-gthread'), params).conn, drainedThenAnswered).state).toBe('returning.toClose');
    expect(drive(machinesFor(getPolicy('gunicorn-gthread'), params).conn, [...drainedThenAnswered, { type: 'conn.returned' }]).state).toBe('closingHard');
    expect(drive(machinesFor(getPolicy('gunicorn-async'), params).conn, drainedThenAnswered).state).toBe('idle.drainKeepAlive');
  });

  it('with keep-alive 0 a fresh connection of a draining gevent-style worker waits for its one request (no 0 ms keep-alive timer)', () => {
    for (const name of ['gunicorn-async', 'close-after-next']) {
      const { conn } = machinesFor(getPolicy(name), { ...params, keepAliveMs: 0 });
      const result = drive(conn, [open, { type: 'conn.drain' }]);
      expect(result.state, name).toBe('idle.drainKept');
      expect(result.actions.filter((a) => a.type === 'xstate.raise'), name).toEqual([]);
    }
  });

  it('a request that does not allow keep-alive (Connection: close, HTTP/1.0, unparseable) is answered with Connection: close under every policy', () => {
    for (const name of POLICY_NAMES) {
      const conn = machinesFor(getPolicy(name), params).conn;
      // gthread 21–23 registers a new connection in its poller; the loop hands it over once readable.
      const handedOver = name.startsWith('gunicorn-gthread-21') ? [{ type: 'conn.dispatch' }] : [];
      const read = [open, { type: 'conn.bytes', req: 'r1' }, ...handedOver, { type: 'conn.read', req: 'r1', keepAlive: false }, { type: 'conn.handler-start', req: 'r1' }, { type: 'conn.handler-finish', req: 'r1' }];
      expect(() => drive(conn, [...read, { type: 'conn.respond', req: 'r1', status: 200, close: false }]), name).toThrow(/conn.respond rejected/);
      expect(() => drive(conn, [...read, { type: 'conn.respond', req: 'r1', status: 400, close: true }]), name).not.toThrow();
    }
  });

  it('keep-alive 0 forces Connection: close under every policy', () => {
    for (const name of POLICY_NAMES) {
      const policy = getPolicy(name);
      expect(responseMustClose(policy, { ...params, keepAliveMs: 0 }, { draining: false, drainingAtHandlerStart: false } as never)).toBe(true);
    }
  });
});

describe('workers under the policies', () => {
  const boot = [{ type: 'worker.boot' }, { type: 'worker.ready' }];
  const busy = [{ type: 'worker.accept', conn: 'conn/1.1' }, { type: 'worker.accept', conn: 'conn/1.2' }, { type: 'worker.request-start', conn: 'conn/1.1', req: 'r1' }];

  it('a gthread 21–23 worker exits once no request is busy, abandoning idle connections; safe-drain waits for them', () => {
    const events = [...boot, ...busy, { type: 'worker.signal', signal: 'TERM' }, { type: 'worker.close-listener' }, { type: 'worker.request-end', conn: 'conn/1.1', req: 'r1' }];
    expect(drive(machinesFor(getPolicy('gunicorn-gthread-21'), params).worker, events).state).toBe('exiting');
    expect(drive(machinesFor(getPolicy('safe-drain'), params).worker, events).state).toBe('alive.draining.released');
  });

  it('a gthread 20.x worker also waits for an accepted connection that has not sent its first request (a pool thread holds it)', () => {
    // Its listener copy closes after the last loop turn (here: the poll's timeout).
    const events = [...boot, ...busy, { type: 'worker.signal', signal: 'TERM' }, { type: 'worker.turn-timeout' }, { type: 'worker.close-listener' }, { type: 'worker.request-end', conn: 'conn/1.1', req: 'r1' }];
    const gthread = machinesFor(getPolicy('gunicorn-gthread'), params).worker;
    expect(drive(gthread, events).state).toBe('alive.draining.released');
    // conn/1.2's first request is served; then only the kept-alive conn/1.1 and conn/1.2 are left, and both are abandoned.
    const served = [...events, { type: 'worker.request-start', conn: 'conn/1.2', req: 'r2' }, { type: 'worker.request-end', conn: 'conn/1.2', req: 'r2' }];
    expect(drive(gthread, served).state).toBe('exiting');
  });

  it('only gthread 21–23 (once, any time) and 20.x (in the last loop turn) may accept after the drain began', () => {
    const events = [...boot, { type: 'worker.signal', signal: 'TERM' }, { type: 'worker.accept', conn: 'conn/1.1' }];
    expect(() => drive(machinesFor(getPolicy('gunicorn-gthread-21'), params).worker, events)).not.toThrow();
    const gthread = machinesFor(getPolicy('gunicorn-gthread'), params).worker;
    // The accept ends the turn: the poll returned with it, and the loop sees alive = False.
    expect(drive(gthread, events).state).toBe('alive.draining.closingListener');
    expect(() => drive(gthread, [...events, { type: 'worker.accept', conn: 'conn/1.2' }])).toThrow(/worker.accept rejected/);
    for (const end of ['worker.turn-end', 'worker.turn-timeout']) {
      expect(() => drive(gthread, [...boot, { type: 'worker.signal', signal: 'TERM' }, { type: end }, { type: 'worker.accept', conn: 'conn/1.1' }]), end).toThrow(/worker.accept rejected/);
    }
    for (const name of BASE_POLICY_NAMES.filter((n) => n !== 'gunicorn-gthread-21' && n !== 'gunicorn-gthread')) {
      expect(() => drive(machinesFor(getPolicy(name), params).worker, events), name).toThrow(/worker.accept rejected/);
    }
  });

  it("gthread 20.x's last turn lasts at most the poll's timeout (selectTimeoutMs), and ends by telling every connection", () => {
    const { worker } = machinesFor(getPolicy('gunicorn-gthread'), { ...params, selectTimeoutMs: 1000 });
    const draining = drive(worker, [...boot, { type: 'worker.accept', conn: 'conn/1.1' }, { type: 'worker.signal', signal: 'TERM' }]);
    expect(draining.state).toBe('alive.draining.lastTurn');
    expect(draining.actions).toContainEqual(expect.objectContaining({ type: 'xstate.raise', params: expect.objectContaining({ delay: 1000, id: 'turn' }) }));
    const ended = drive(worker, [...boot, { type: 'worker.accept', conn: 'conn/1.1' }, { type: 'worker.signal', signal: 'TERM' }, { type: 'worker.turn-end' }]);
    expect(ended.actions.map((a) => a.type)).toEqual(expect.arrayContaining(['xstate.cancel', 'endLastTurn', 'closeListenerCopy']));
  });

  it('max-requests is reached within maxRequests + jitter, not before', () => {
    const p = { ...params, maxRequests: 2, maxRequestsJitter: 1 };
    const { worker } = machinesFor(getPolicy('safe-drain'), p);
    const start = (req: string) => ({ type: 'worker.request-start', conn: 'conn/1.1', req });
    expect(() => drive(worker, [...boot, { type: 'worker.accept', conn: 'conn/1.1' }, start('a'), { type: 'worker.max-requests' }])).toThrow(/max-requests rejected/);
    expect(drive(worker, [...boot, { type: 'worker.accept', conn: 'conn/1.1' }, start('a'), start('b'), { type: 'worker.max-requests' }]).state).toMatch(/^alive.draining/);
  });

  it('the sync and gthread-24 workers keep their listener copy while draining', () => {
    for (const name of ['gunicorn-sync', 'gunicorn-gthread-24']) {
      const { worker } = machinesFor(getPolicy(name), params);
      // One connection busy (the sync worker takes no second one while it serves the first).
      const draining = [...boot, busy[0]!, busy[2]!, { type: 'worker.signal', signal: 'TERM' }];
      expect(drive(worker, draining).state, name).toBe('alive.draining.listening');
      expect(() => drive(worker, [...draining, { type: 'worker.close-listener' }]), name).toThrow(/close-listener rejected/);
    }
  });
});

describe('the policy registry', () => {
  it('lists every base policy with a description', () => {
    expect(listPolicies().map((p) => p.name)).toEqual([...BASE_POLICY_NAMES]);
    for (const p of listPolicies()) expect(p.description.length).toBeGreaterThan(20);
    expect(BASE_POLICY_NAMES).toContain('safe-drain');
  });

  it('combines every policy with lingering close', () => {
    expect(getPolicy('gunicorn-gthread+lingering-close').lingeringClose).toBe(true);
    expect(getPolicy('gunicorn-gthread').lingeringClose).toBe(false);
    expect(getPolicy('safe-drain').lingeringClose).toBe(true);
  });

  it('rejects an unknown name, listing the valid ones', () => {
    expect(() => getPolicy('graceful')).toThrow(UnknownPolicyError);
    expect(() => getPolicy('graceful')).toThrow(/unknown policy "graceful"; expected one of: gunicorn-sync, .*safe-drain/);
    expect(() => getPolicy('safe-drain+lingering-close')).toThrow(UnknownPolicyError);
  });

  it('gives every policy the same chart — every state, transition, target, guard and action by name; only what the guards decide differs', () => {
    const structure = (name: string) => {
      const m = machinesFor(getPolicy(name), params);
      return JSON.stringify((['arbiter', 'listener', 'worker', 'conn', 'client'] as const).map((kind) => chartOf(m[kind])));
    };
    const reference = structure('safe-drain');
    for (const name of POLICY_NAMES) expect(structure(name), name).toBe(reference);
    // …and it is the whole chart: the worker's drain, named guards inside combinators, timers by event.
    const worker = allStates(chartOf(machinesFor(getPolicy('safe-drain'), params).worker));
    const draining = worker.find((n) => n.id === 'worker.alive.draining')!;
    expect(draining.entry).toEqual([{ type: 'drainConnections' }, { type: 'xstate.raise', detail: 'worker.graceful-timeout' }]);
    const accept = worker.find((n) => n.id === 'worker.alive.draining.listening')!.transitions.find((t) => t.event === 'worker.accept')!;
    expect(accept.guard).toEqual({ and: ['acceptsAfterDrain', 'hasLastTurnAccept', 'connIsNew', 'hasRoomForConn'] });
    expect(worker.map((n) => n.id)).toContain('worker.dying.crashed');
  });
});

describe('the arbiter', () => {
  // A watchdog with a 3 s timeout and a 1 s loop turn: a worker is surely silent for longer than
  // 3 s after ⌈3000 / 1000⌉ + 1 = 4 turns without a heartbeat; ABRT then, and KILL a turn later.
  const watched = { ...params, timeoutMs: 3000, arbiterTickMs: 1000 };
  const arbiter = machinesFor(getPolicy('safe-drain'), watched).arbiter;
  const started = [{ type: 'arbiter.start', workers: 2 }, { type: 'arbiter.spawn', worker: 'worker/1' }, { type: 'arbiter.spawn', worker: 'worker/2' }];
  /** One loop turn, with worker/1 heartbeating before it and worker/2 silent. */
  const turn = [{ type: 'arbiter.heartbeat', worker: 'worker/1' }, { type: 'arbiter.tick' }];
  const murder = (actions: readonly { type: string; params?: unknown }[]) => actions.find((a) => a.type === 'murderWorkers')?.params;

  it('a worker silent for three turns is left alone', () => {
    expect(murder(drive(arbiter, [...started, ...turn, ...turn, ...turn]).actions)).toEqual({ abort: [], kill: [] });
  });

  it('at the fourth silent turn the watchdog aborts that worker, by name; the heartbeating one is spared', () => {
    expect(murder(drive(arbiter, [...started, ...turn, ...turn, ...turn, ...turn]).actions)).toEqual({ abort: ['worker/2'], kill: [] });
  });

  it('still silent a turn after its ABRT, it gets KILL', () => {
    const events = [...started, ...turn, ...turn, ...turn, ...turn, { type: 'arbiter.kill', worker: 'worker/2', signal: 'ABRT' }, ...turn];
    expect(murder(drive(arbiter, events).actions)).toEqual({ abort: [], kill: ['worker/2'] });
  });

  it('a heartbeat resets the count: a worker that beats every third turn is never aborted', () => {
    const beat = { type: 'arbiter.heartbeat', worker: 'worker/2' };
    const events = [...started, ...turn, ...turn, beat, ...turn, ...turn, ...turn, beat, ...turn];
    expect(murder(drive(arbiter, events).actions)).toEqual({ abort: [], kill: [] });
  });

  it("stops turning its loop when it stops: no watchdog while the workers drain (gunicorn's stop() sleeps in a loop of its own, without murder_workers)", () => {
    const stopping = [...started, ...turn, ...turn, ...turn, { type: 'arbiter.signal', signal: 'TERM' }];
    // The turn already scheduled is cancelled as the stop begins …
    expect(drive(arbiter, stopping).actions).toContainEqual(expect.objectContaining({ type: 'xstate.cancel', params: expect.objectContaining({ sendId: 'tick' }) }));
    // … and no turn is taken while stopping: worker/2, silent for three turns and draining, is never aborted for it.
    expect(() => drive(arbiter, [...stopping, { type: 'arbiter.tick' }])).toThrow(/arbiter.tick rejected in stopping/);
  });

  it('with timeout 0 the watchdog is off', () => {
    const off = machinesFor(getPolicy('safe-drain'), { ...watched, timeoutMs: 0 }).arbiter;
    const silent = Array.from({ length: 10 }, () => ({ type: 'arbiter.tick' }));
    expect(murder(drive(off, [...started, ...silent]).actions)).toEqual({ abort: [], kill: [] });
  });
});

/**
 * A reload (HUP). gunicorn forks the new generation and TERMs the old one in the same step: until a
 * new worker has loaded its app, nothing accepts. safe-drain lets each old worker that serves go
 * only once a new one serves in its place; the old ones still booting go at once.
 */
describe('the reload', () => {
  const spawned = (...ids: number[]) => ids.map((n) => ({ type: 'arbiter.spawn', worker: `worker/${n}` }));
  const ready = (n: number) => ({ type: 'arbiter.ready', worker: `worker/${n}` });
  const term = (n: number) => ({ type: 'arbiter.kill', worker: `worker/${n}`, signal: 'TERM' });
  const hup = { type: 'arbiter.signal', signal: 'HUP' };
  const command = (actions: readonly { type: string; params?: unknown }[], type: string) => actions.find((a) => a.type === type)?.params;
  /** Two workers, worker/1 serving and worker/2 still booting (a recycle's replacement), then HUP. */
  const reloading = [{ type: 'arbiter.start', workers: 2 }, ...spawned(1, 2), ready(1), hup];

  it("gunicorn's retires the whole old generation as it forks the new one", () => {
    const arbiter = machinesFor(getPolicy('gunicorn-gthread'), params).arbiter;
    expect(command(drive(arbiter, reloading).actions, 'reloadWorkers')).toEqual({ count: 2, retire: ['worker/1', 'worker/2'] });
  });

  it("safe-drain's retires at once only the old worker still booting; the serving one waits for its replacement", () => {
    const arbiter = machinesFor(getPolicy('safe-drain'), params).arbiter;
    const { actions, snapshot } = drive(arbiter, reloading);
    expect(command(actions, 'reloadWorkers')).toEqual({ count: 2, retire: ['worker/2'] });
    expect(snapshot.context).toMatchObject({ servingUntilReplaced: ['worker/1'] });
  });

  it('safe-drain: the old worker goes when the new generation serves as many as before the reload, not sooner', () => {
    const arbiter = machinesFor(getPolicy('safe-drain'), params).arbiter;
    const newGeneration = [...reloading, ...spawned(3, 4), term(2)];
    // Before the reload one worker served (worker/1, beside worker/2 booting): one new one serving gives two.
    expect(command(drive(arbiter, [...newGeneration, ready(3)]).actions, 'retireWorkers')).toBeUndefined();
    expect(command(drive(arbiter, [...newGeneration, ready(3), ready(4)]).actions, 'retireWorkers')).toEqual({ retire: ['worker/1'] });
  });

  it('safe-drain: with a whole generation serving, one old worker goes as each new one serves, oldest first', () => {
    const arbiter = machinesFor(getPolicy('safe-drain'), params).arbiter;
    const serving = [{ type: 'arbiter.start', workers: 2 }, ...spawned(1, 2), ready(1), ready(2), hup, ...spawned(3, 4)];
    expect(command(drive(arbiter, serving).actions, 'retireWorkers')).toBeUndefined();
    expect(command(drive(arbiter, [...serving, ready(4)]).actions, 'retireWorkers')).toEqual({ retire: ['worker/1'] });
    expect(command(drive(arbiter, [...serving, ready(4), term(1), ready(3)]).actions, 'retireWorkers')).toEqual({ retire: ['worker/2'] });
  });

  it('safe-drain: a second reload before the first is done retires the booting generation, and keeps the old serving worker until the newest serves', () => {
    const arbiter = machinesFor(getPolicy('safe-drain'), params).arbiter;
    const twice = [...reloading, ...spawned(3, 4), term(2), hup];
    expect(command(drive(arbiter, twice).actions, 'reloadWorkers')).toEqual({ count: 2, retire: ['worker/3', 'worker/4'] });
    const { actions } = drive(arbiter, [...twice, ...spawned(5, 6), term(3), term(4), ready(5), ready(6)]);
    expect(command(actions, 'retireWorkers')).toEqual({ retire: ['worker/1'] });
  });

  it('safe-drain: a new worker that dies booting is replaced, though the old one still serves', () => {
    const arbiter = machinesFor(getPolicy('safe-drain'), params).arbiter;
    const died = [...reloading, ...spawned(3, 4), term(2), { type: 'arbiter.reap', worker: 'worker/3', code: 70 }];
    // worker/2 (draining) and worker/4 count; worker/1 waits for its replacement and does not.
    expect(command(drive(arbiter, died).actions, 'spawnWorkers')).toEqual({ count: 0 });
    expect(command(drive(arbiter, [...died, { type: 'arbiter.reap', worker: 'worker/2', code: 0 }]).actions, 'spawnWorkers')).toEqual({ count: 1 });
  });
});

/**
 * The header timer gives up on a client that has not sent its head, and on a request whose rest never
 * comes (a body one byte short: impl/hardening.test.ts frees 150 such connections with it) — and only
 * on those: a request that arrived whole waits for a busy pool untimed (conn.bytes says `partial`).
 */
describe('the header timer', () => {
  const timed = { ...params, headerTimeoutMs: 800 };

  it('runs while a connection waits for its first request head, and closes it', () => {
    for (const name of BASE_POLICY_NAMES) {
      const { conn } = machinesFor(getPolicy(name), timed);
      expect(drive(conn, [open]).state, name).toBe('idle.fresh.timed');
      expect(drive(conn, [open, { type: 'conn.header-timeout' }]).state, name).not.toMatch(/^idle|^pending/);
    }
  });

  it('runs on while only part of the request is here (its body is on its way), and gives up on it', () => {
    for (const name of BASE_POLICY_NAMES) {
      const { conn } = machinesFor(getPolicy(name), timed);
      const arrived = [open, { type: 'conn.bytes', req: 'r1', partial: true }];
      // gthread 21–23 polls a new connection too: its request waits for the loop, then for a thread.
      const polled = drive(conn, arrived).state === 'unpolled' ? [...arrived, { type: 'conn.dispatch' }] : arrived;
      expect(drive(conn, polled).state, name).toBe('pending.timed');
      expect(drive(conn, [...polled, { type: 'conn.header-timeout' }]).state, name).not.toMatch(/^pending/);
      // Once the rest came, the timer is gone: a whole request waits for a thread untimed.
      const whole = [...polled, { type: 'conn.bytes', req: 'r1' }];
      expect(drive(conn, whole).state, name).toBe('pending.untimed');
      expect(() => drive(conn, [...whole, { type: 'conn.header-timeout' }]), name).toThrow(/conn.header-timeout rejected/);
    }
  });

  it('does not run on a whole request that waits for a busy pool (script waiting-for-a-thread with an 800 ms timer: safe-drain broke only-unavoidable-failures)', () => {
    for (const name of BASE_POLICY_NAMES) {
      const { conn } = machinesFor(getPolicy(name), timed);
      const arrived = [open, { type: 'conn.bytes', req: 'r1' }];
      const polled = drive(conn, arrived).state === 'unpolled' ? [...arrived, { type: 'conn.dispatch' }] : arrived;
      expect(drive(conn, polled).state, name).toBe('pending.untimed');
    }
  });

  it('a FIN before the rest of a body: given up on at once, with FIN (nothing left unread), not at the timer', () => {
    for (const name of BASE_POLICY_NAMES) {
      const { conn } = machinesFor(getPolicy(name), timed);
      const arrived = [open, { type: 'conn.bytes', req: 'r1', partial: true }];
      const polled = drive(conn, arrived).state === 'unpolled' ? [...arrived, { type: 'conn.dispatch' }] : arrived;
      const finned = drive(conn, [...polled, { type: 'conn.peer-fin' }]);
      expect(finned.state, name).toBe('closingHard');
      expect(finned.actions, name).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: false } }));
    }
  });
});

/**
 * A client that half-closes after pipelining: the server answers what it sent before its FIN. Found
 * by the framing fuzz (test/impl/differential.test.ts), where closing right after the first response
 * reset a pipelined request unread.
 */
describe('a half-closed client', () => {
  const timed = { ...params, headerTimeoutMs: 0 };
  const served = [open, { type: 'conn.bytes', req: 'r1' }, { type: 'conn.read', req: 'r1' }, { type: 'conn.handler-start', req: 'r1' }];
  const answered = [{ type: 'conn.handler-finish', req: 'r1' }, { type: 'conn.respond', req: 'r1', status: 200, close: false }];

  it('with nothing more sent: closed right after its response, FIN, no lingering', () => {
    for (const name of ['safe-drain', 'gunicorn-async', 'serve-until-deadline']) {
      const done = drive(machinesFor(getPolicy(name), timed).conn, [...served, { type: 'conn.peer-fin' }, ...answered]);
      expect(done.state, name).toBe('closingHard');
      expect(done.actions, name).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: false } }));
    }
  });

  it('with a request pipelined before its FIN: that one is served next, not reset', () => {
    for (const name of ['safe-drain', 'gunicorn-async', 'serve-until-deadline']) {
      const pipelined = drive(machinesFor(getPolicy(name), timed).conn, [...served, { type: 'conn.bytes', req: 'r2' }, { type: 'conn.peer-fin' }, ...answered]);
      expect(pipelined.state, name).toMatch(/^idle/);
    }
  });
});

/**
 * Pipelining (RFC 9112 §9.3.2): a request sent behind one not yet answered. The script
 * pipelined-behind-close found that every policy closed after a draining response with a request
 * already behind it — lost to a server that had it — and that safe-drain's promise
 * (only-unavoidable-failures) was therefore not kept once a client pipelines.
 */
describe('a request pipelined behind one being handled, while draining', () => {
  const handled = [open, { type: 'conn.bytes', req: 'r1' }, { type: 'conn.read', req: 'r1' }, { type: 'conn.handler-start', req: 'r1' }, { type: 'conn.drain' }];
  const behind = [...handled, { type: 'conn.bytes', req: 'r2' }, { type: 'conn.handler-finish', req: 'r1' }];

  it('safe-drain answers keep-alive and serves it; the response with nothing behind it closes', () => {
    const conn = machinesFor(getPolicy('safe-drain'), params).conn;
    expect(() => drive(conn, [...behind, { type: 'conn.respond', req: 'r1', status: 200, close: true }])).toThrow(/conn.respond rejected/);
    const kept = drive(conn, [...behind, { type: 'conn.respond', req: 'r1', status: 200, close: false }]);
    expect(kept.state).toMatch(/^idle/);
    expect(responseMustClose(getPolicy('safe-drain'), params, drive(conn, behind).snapshot.context as never)).toBe(false);
    // Nothing behind it: the draining response closes, as before.
    expect(responseMustClose(getPolicy('safe-drain'), params, drive(conn, [...handled, { type: 'conn.handler-finish', req: 'r1' }]).snapshot.context as never)).toBe(true);
  });

  it('the others close after it: a lingering close discards the pipelined request, a plain close resets it', () => {
    for (const name of ['abort-idle', 'close-after-next', 'idle-grace']) {
      const context = drive(machinesFor(getPolicy(name), params).conn, behind).snapshot.context as never;
      expect(responseMustClose(getPolicy(name), params, context), name).toBe(true);
      const closed = drive(machinesFor(getPolicy(name), params).conn, [...behind, { type: 'conn.respond', req: 'r1', status: 200, close: true }]);
      expect(closed.actions, name).toContainEqual(expect.objectContaining({ type: 'closeSocket', params: { rst: true } }));
      const lingering = drive(machinesFor(getPolicy(`${name}+lingering-close`), params).conn, [...behind, { type: 'conn.respond', req: 'r1', status: 200, close: true }]);
      expect(lingering.state, name).toMatch(/^lingering/);
    }
  });
});

describe('the client chart pipelines', () => {
  const client = machinesFor(getPolicy('safe-drain'), params).client;
  const sent = [{ type: 'client.connect' }, { type: 'client.connected' }, { type: 'client.send', req: 'a', idempotent: true }, { type: 'client.send', req: 'b', idempotent: true }];

  it('responses come in the order of the requests', () => {
    expect(() => drive(client, [...sent, { type: 'client.response', req: 'b', status: 200, close: false }])).toThrow(/client.response rejected/);
    const first = drive(client, [...sent, { type: 'client.response', req: 'a', status: 200, close: false }]);
    expect(first.state).toBe('open.awaiting');
    expect(first.snapshot.context).toMatchObject({ req: 'b', pipelined: [] });
    expect(drive(client, [...sent, { type: 'client.response', req: 'a', status: 200, close: false }, { type: 'client.response', req: 'b', status: 200, close: false }]).state).toBe('open.ready');
  });

  it('after a Connection: close response, the request behind it fails with the close (retryable): the connection is closed, not failed', () => {
    const closing = [...sent, { type: 'client.response', req: 'a', status: 200, close: true }];
    expect(drive(client, closing).state).toBe('closing');
    for (const reason of ['reset', 'empty-reply']) expect(drive(client, [...closing, { type: 'client.fail', reason, req: 'b' }]).state, reason).toBe('closed');
    // Nothing is sent after it; a request it never sent does not fail.
    expect(() => drive(client, [...closing, { type: 'client.send', req: 'c', idempotent: true }])).toThrow(/client.send rejected/);
    expect(() => drive(client, [...closing, { type: 'client.fail', reason: 'reset', req: 'c' }])).toThrow(/client.fail rejected/);
  });

  it('a failure before any response fails the connection', () => {
    expect(drive(client, [...sent, { type: 'client.fail', reason: 'reset', req: 'a' }]).state).toBe('failed');
  });
});
