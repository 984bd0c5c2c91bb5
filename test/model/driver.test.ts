/**
 * The drivers with a platform of a few dozen lines: a hand-cranked clock and
 * ports that only note what they were asked. If this is a server, the port
 * is all a platform needs.
 */
import { describe, expect, it } from 'vitest';
import { ArbiterDriver } from '../../model/driver/arbiter.ts';
import { WorkerDriver, type WorkerPort } from '../../model/driver/worker.ts';
import type { ConnId, TraceEvent, WorkerId } from '../../model/events.ts';
import { ActorHost, traceEvent, type Timer } from '../../model/host.ts';
import { runtimesFor } from '../../model/machines/index.ts';
import { DEFAULT_SERVER_PARAMS } from '../../model/params.ts';
import { getPolicy } from '../../model/policies.ts';
import { replay } from '../../model/replay.ts';
import { makeHeader } from '../../model/trace.ts';

/** A clock turned by hand: `advance(ms)` fires what came due. */
class HandClock extends ActorHost {
  time = 0;
  private timers: { at: number; run: () => void; timer: Timer }[] = [];
  get nowMs() {
    return this.time;
  }
  at(delayMs: number, run: () => void): Timer {
    const timer = { cancelled: false };
    this.timers.push({ at: this.time + delayMs, run, timer });
    return timer;
  }
  advance(ms: number): void {
    const until = this.time + ms;
    for (let next = this.nextDue(until); next; next = this.nextDue(until)) {
      this.time = next.at;
      if (!next.timer.cancelled) this.dispatch(next.run);
    }
    this.time = until;
  }
  private nextDue(until: number) {
    this.timers.sort((a, b) => a.at - b.at);
    return this.timers[0] && this.timers[0].at <= until ? this.timers.shift() : undefined;
  }
  protected invariant(message: string): Error {
    return new Error(message);
  }
}

/** The fake platform: notes each effect; a worker's "process" is its driver. */
function platform(policy: string, params = { ...DEFAULT_SERVER_PARAMS, threads: 2, gracefulTimeoutMs: 5000 }, options: { poller?: boolean; lateReturn?: boolean; lateTeardown?: boolean; pastPoll?: boolean; returnedLater?: boolean; returnAtFlip?: (readable: readonly ConnId[]) => readonly ConnId[] } = {}) {
  const events: TraceEvent[] = [];
  const host = new HandClock(runtimesFor(getPolicy(policy), params), (t, actor, e) => events.push(traceEvent(t, actor, e)));
  const effects: string[] = [];
  const workers = new Map<WorkerId, WorkerDriver>();
  const arbiter: ArbiterDriver = new ArbiterDriver(host, {
    spawnWorker: (id, maxRequests) => {
      const port: WorkerPort = {
        stopAccepting: () => effects.push(`${id} stops accepting`),
        releaseListener: () => (driver.listenerReleased(), arbiter.listenerReleasedBy(id)),
        // With `poller`, a kept-alive connection's next request waits in the loop's poller until `polled` (gthread).
        watchReadable: () => options.poller !== true,
        // With `returnedLater`, each poll returned after everything in the poller became readable (the simulator places it from a measured row).
        pollReturnedWith: (_conn, before, after) => (options.returnedLater === true ? [...before, ...after] : before),
        pickUp: () => true,
        read: () => ({ keepAlive: true }),
        handle: (conn, req) => effects.push(`${conn} handles ${req}`),
        respond: (conn, req, close) => (effects.push(`${conn} answers ${req}${close ? ' with close' : ''}`), 200),
        // With `lateReturn`, an answered connection is back in the poller only at `returned` (gthread's done callback).
        returnToPoller: () => options.lateReturn !== true,
        // With `lateTeardown`, a graceful exit's process is gone only at `tornDown` (CPython's finalization).
        tearDown: () => options.lateTeardown !== true,
        // With `pastPoll`, a recycle's flip of alive finds the loop past its poll (gthread: handing over, in futures.wait),
        // with what `returnAtFlip` says its poll returned, or else what the driver saw it return.
        loopAtFlip: (_cause, readable) =>
          options.pastPoll === true ? { place: 'past-poll' as const, ...(options.returnAtFlip ? { returned: options.returnAtFlip(readable) } : {}) } : { place: 'in-poll' as const },
        closeSocket: (conn, rst) => effects.push(`${conn} ${rst ? 'RST' : 'FIN'}`),
        halfClose: (conn) => effects.push(`${conn} half-close`),
        notifyArbiter: () => arbiter.heartbeatFrom(id),
        exit: (code) => (workers.delete(id), arbiter.reaped(id, code)),
      };
      const driver = new WorkerDriver(host, id, port);
      workers.set(id, driver);
      driver.boot(maxRequests);
    },
    signalWorker: (id, signal) => workers.get(id)?.signal(signal),
    closeListener: () => effects.push('arbiter closes its listener copy'),
    exit: (code) => effects.push(`arbiter exits ${code}`),
    random: () => 0.5,
  });
  host.own('listener', () => {});
  return { host, events, effects, workers, arbiter, params, trace: () => ({ header: makeHeader(policy, params, true), events }) };
}

describe('the drivers on a platform of a few dozen lines', () => {
  it('boot, serve a keep-alive request, stop on TERM: every effect asked for, and a trace that replays', () => {
    const p = platform('safe-drain');
    p.arbiter.boot();
    const worker = p.workers.get('worker/1')!;
    expect(worker.ready()).toBe(true);
    const conn = worker.accept('client/1')!;
    expect(worker.requestArrived(conn, 'r1')).toBe(true);
    expect(p.effects).toEqual(['conn/1.1 handles r1']);
    worker.handlerFinished(conn, 'r1');
    p.arbiter.signal('TERM');
    // safe-drain: the idle connection gets its idle window, then a lingering close; the peer's FIN ends it.
    p.host.advance(p.params.idleGraceMs);
    worker.peerFin(conn);
    expect(p.effects).toEqual([
      'conn/1.1 handles r1',
      'conn/1.1 answers r1',
      'arbiter closes its listener copy',
      'worker/1 stops accepting',
      'conn/1.1 half-close',
      'conn/1.1 FIN',
      'arbiter exits 0',
    ]);
    expect(replay(p.trace()).ok ? 'ok' : replay(p.trace())).toBe('ok');
  });

  it('a connection aborted by an error while its handler runs: the handler finishing later still frees its thread', () => {
    const p = platform('safe-drain');
    p.arbiter.boot();
    const worker = p.workers.get('worker/1')!;
    worker.ready();
    const conn = worker.accept('client/1')!;
    worker.requestArrived(conn, 'r1');
    expect(worker.busy()).toBe(1);
    worker.connectionFailed(conn);
    worker.handlerFinished(conn, 'r1');
    // The thread is free again (the simulator used to return before worker.request-end after an abort).
    expect(worker.busy()).toBe(0);
    expect(p.events.filter((e) => e.type === 'worker.request-end')).toHaveLength(1);
    expect(p.effects).toContain('conn/1.1 FIN');
  });

  it('a SIGKILLed worker exits with −9, and the arbiter reaps it with the same code', () => {
    const p = platform('safe-drain');
    p.arbiter.boot();
    const worker = p.workers.get('worker/1')!;
    worker.ready();
    const conn: ConnId = worker.accept('client/1')!;
    worker.requestArrived(conn, 'r1');
    worker.signal('KILL');
    const codes = p.events.flatMap((e) => (e.type === 'worker.exit' || e.type === 'arbiter.reap' ? [[e.type, e.code]] : []));
    expect(codes).toEqual([
      ['worker.exit', -9],
      ['arbiter.reap', -9],
    ]);
    // The running arbiter replaces it.
    expect(p.workers.has('worker/2')).toBe(true);
  });

  it('the watchdog: a worker that stops heartbeating gets ABRT once it has been silent longer than the timeout, and exits with 1', () => {
    const params = { ...DEFAULT_SERVER_PARAMS, timeoutMs: 3000, arbiterTickMs: 1000, heartbeatIntervalMs: 1000 };
    const p = platform('safe-drain', params);
    p.arbiter.boot();
    p.workers.get('worker/1')!.ready();
    // Silent from the spawn at 0: surely silent for longer than 3 s at the turn of 4 s.
    p.host.advance(3999);
    expect(p.events.some((e) => e.type === 'arbiter.kill')).toBe(false);
    p.host.advance(1);
    expect(p.events.filter((e) => e.type === 'arbiter.kill').map((e) => [e.t, (e as { signal: string }).signal])).toEqual([[4000, 'ABRT']]);
    expect(p.events.filter((e) => e.type === 'arbiter.reap').map((e) => (e as { code: number }).code)).toEqual([1]);
  });

  /** gthread, three kept-alive connections; requests b1 then b2 arrive on the first two and wait in the poller; TERM. */
  function lastTurnWithTwoInThePoller(lateTeardown = false) {
    const p = platform('gunicorn-gthread', { ...DEFAULT_SERVER_PARAMS, threads: 4, keepAliveMs: 2000, gracefulTimeoutMs: 5000 }, { poller: true, lateTeardown });
    p.arbiter.boot();
    const worker = p.workers.get('worker/1')!;
    worker.ready();
    const conns = (['client/1', 'client/2', 'client/3'] as const).map((client) => worker.accept(client)!);
    conns.forEach((conn, i) => worker.requestArrived(conn, `a${i + 1}`));
    conns.forEach((conn, i) => worker.handlerFinished(conn, `a${i + 1}`));
    worker.requestArrived(conns[0]!, 'b1');
    worker.requestArrived(conns[1]!, 'b2');
    expect(p.effects.filter((e) => e.includes('handles b'))).toEqual([]);
    p.arbiter.signal('TERM');
    const handled = () => p.effects.filter((e) => e.includes('handles b'));
    return { p, worker, conns, handled };
  }

  it("gthread's last loop turn: the poll that returns with a connection returns with every one readable before it, and each is served (with close)", () => {
    const { p, worker, conns, handled } = lastTurnWithTwoInThePoller();
    // The poll returns with b2's connection: b1 came before it, so it was readable then too — select()
    // returns every ready fd, and gunicorn's loop hands each over before it looks at alive again.
    worker.polled(conns[1]!);
    expect(handled()).toEqual(['conn/1.2 handles b2', 'conn/1.1 handles b1']);
    worker.polled(conns[0]!); // its own poll, late: handed over already, nothing more
    worker.handlerFinished(conns[0]!, 'b1');
    worker.handlerFinished(conns[1]!, 'b2');
    expect(p.effects).toContain('conn/1.1 answers b1 with close');
    expect(p.effects).toContain('conn/1.2 answers b2 with close');
    // The idle one was in the poller with nothing to read when the turn ended: abandoned, closed by the exit.
    expect(p.events.some((e) => e.actor === conns[2] && e.type === 'conn.turn-end')).toBe(true);
    expect(replay(p.trace()).ok ? 'ok' : replay(p.trace())).toBe('ok');
  });

  it("gthread's done callback: a connection answered while draining is closed with the next request unread (RST, not a FIN it runs into); one it kept meets the drain in the poller, and the last turn serves it", () => {
    const p = platform('gunicorn-gthread', { ...DEFAULT_SERVER_PARAMS, threads: 4, keepAliveMs: 2000, gracefulTimeoutMs: 5000 }, { poller: true, lateReturn: true });
    p.arbiter.boot();
    const worker = p.workers.get('worker/1')!;
    worker.ready();
    const [kept, closed] = (['client/1', 'client/2'] as const).map((client) => worker.accept(client)!) as [ConnId, ConnId];
    worker.requestArrived(kept, 'a1');
    worker.requestArrived(closed, 'b1');
    // a1 answered before the TERM: the callback reads alive = True, and keeps the connection.
    worker.handlerFinished(kept, 'a1');
    p.arbiter.signal('TERM');
    // The client's next request comes before the connection is back: unread, no thread's.
    worker.requestArrived(kept, 'a2');
    expect(p.effects.filter((e) => e.includes('handles a2'))).toEqual([]);
    worker.returned(kept);
    // Back in the poller with a2 readable: the last loop turn's poll returns with it, and it is served (with close).
    worker.polled(kept);
    expect(p.effects).toContain('conn/1.1 handles a2');
    // b1's handler began before the TERM (keep-alive, the header fixed then); answered now, while draining: the callback closes.
    worker.handlerFinished(closed, 'b1');
    expect(p.effects).toContain('conn/1.2 answers b1');
    worker.requestArrived(closed, 'b2');
    expect(p.effects.filter((e) => e.startsWith('conn/1.2 ') && /FIN|RST/.test(e))).toEqual([]);
    worker.returned(closed);
    expect(p.effects).toContain('conn/1.2 RST');
    expect(p.effects).not.toContain('conn/1.2 FIN');
    worker.handlerFinished(kept, 'a2');
    expect(p.effects).toContain('conn/1.1 answers a2 with close');
    expect(p.effects.at(-1)).toBe('arbiter exits 0');
    expect(replay(p.trace()).ok ? 'ok' : replay(p.trace())).toBe('ok');
  });

  it("gthread's last loop turn: a request that came after the one the poll returned with is taken to have missed that return, and is abandoned", () => {
    const { p, worker, conns, handled } = lastTurnWithTwoInThePoller();
    // The poll returns with b1's connection. b2 became readable after b1: the select may have returned
    // before it (the hand-over is the select's return plus the GIL), so the model does not hand it over.
    worker.polled(conns[0]!);
    expect(handled()).toEqual(['conn/1.1 handles b1']);
    expect(p.events.some((e) => e.actor === 'worker/1' && e.type === 'worker.turn-end')).toBe(true);
    worker.polled(conns[1]!); // its own poll, late: the loop is over, nothing more
    expect(handled()).toEqual(['conn/1.1 handles b1']);
    worker.handlerFinished(conns[0]!, 'b1');
    expect(p.effects).toContain('conn/1.1 answers b1 with close');
    // The worker exits with b2 unread in the abandoned poller: the kernel resets it.
    expect(p.effects).toContain('conn/1.2 RST');
    expect(replay(p.trace()).ok ? 'ok' : replay(p.trace())).toBe('ok');
  });

  it("gthread's last loop turn: a request that comes after the poll returned is abandoned with the rest, and the exit resets it", () => {
    const { p, worker, conns, handled } = lastTurnWithTwoInThePoller();
    worker.polled(conns[1]!);
    // The idle third connection's request comes after the turn ended: nobody polls any more.
    worker.requestArrived(conns[2]!, 'b3');
    expect(handled()).toEqual(['conn/1.2 handles b2', 'conn/1.1 handles b1']);
    expect(p.events.some((e) => e.actor === conns[2] && e.type === 'conn.turn-end')).toBe(true);
    worker.handlerFinished(conns[0]!, 'b1');
    worker.handlerFinished(conns[1]!, 'b2');
    // The worker exits with b3 unread: the kernel resets it.
    expect(p.effects).toContain('conn/1.3 RST');
    expect(replay(p.trace()).ok ? 'ok' : replay(p.trace())).toBe('ok');
  });

  /** gthread, max-requests 3: two kept-alive connections; the third request (b1, polled on the first) reaches the limit, then c2 comes on the second. */
  function recycleThenARequest(pastPoll: boolean) {
    const p = platform('gunicorn-gthread', { ...DEFAULT_SERVER_PARAMS, threads: 4, keepAliveMs: 2000, gracefulTimeoutMs: 5000, maxRequests: 3, maxRequestsJitter: 0 }, { poller: true, pastPoll });
    p.arbiter.boot();
    const worker = p.workers.get('worker/1')!;
    worker.ready();
    const [first, second] = (['client/1', 'client/2'] as const).map((client) => worker.accept(client)!) as [ConnId, ConnId];
    worker.requestArrived(first, 'a1');
    worker.requestArrived(second, 'a2');
    worker.handlerFinished(first, 'a1');
    worker.handlerFinished(second, 'a2');
    worker.requestArrived(first, 'b1');
    worker.polled(first);
    expect(p.effects).toContain(`${first} handles b1`);
    expect(p.events.filter((e) => e.type === 'worker.max-requests')).toHaveLength(1);
    // The client of the second connection sends its next request after the flip.
    worker.requestArrived(second, 'c2');
    worker.handlerFinished(first, 'b1');
    return { p, worker, second };
  }

  /** The trace so far replays (the run is not over: the arbiter has a replacement to run). */
  const replaysSoFar = (p: ReturnType<typeof platform>) => {
    const verdict = replay({ ...p.trace(), header: { ...p.trace().header, complete: false } });
    return verdict.ok ? 'ok' : verdict.violation.message;
  };

  it("gthread's recycle with its loop in its poll: the poll returns with the next request, which is served with close", () => {
    const { p, worker, second } = recycleThenARequest(false);
    expect(p.effects).toContain(`${second} handles c2`);
    worker.handlerFinished(second, 'c2');
    expect(p.effects).toContain(`${second} answers c2 with close`);
    expect(p.effects).not.toContain(`${second} RST`);
    expect(p.events.some((e) => e.actor === 'worker/1' && e.type === 'worker.exit')).toBe(true);
    expect(replaysSoFar(p)).toBe('ok');
  });

  it("gthread's recycle with its loop past its poll: the turn ends without another poll, the next request waits unread in an abandoned poller, and the exit resets it", () => {
    const { p, second } = recycleThenARequest(true);
    expect(p.events.some((e) => e.actor === 'worker/1' && e.type === 'worker.turn-end')).toBe(true);
    expect(p.effects).not.toContain(`${second} handles c2`);
    expect(p.effects).toContain(`${second} RST`);
    expect(p.events.some((e) => e.actor === 'worker/1' && e.type === 'worker.exit')).toBe(true);
    expect(replaysSoFar(p)).toBe('ok');
  });

  /**
   * A gthread worker recycling at its fourth request, its loop past its poll as alive flips, three
   * connections answered once and readable again in the order b2, b1, b3; the loop then hands b1 (the
   * fourth request) over. `returnedLater`: the platform knows that poll returned after b3 came.
   */
  function pastPollWithThreeReadable(returnedLater: boolean, returnAtFlip?: (readable: readonly ConnId[]) => readonly ConnId[]) {
    const p = platform('gunicorn-gthread', { ...DEFAULT_SERVER_PARAMS, threads: 4, keepAliveMs: 2000, gracefulTimeoutMs: 5000, maxRequests: 4, maxRequestsJitter: 0 }, { poller: true, pastPoll: true, returnedLater, ...(returnAtFlip ? { returnAtFlip } : {}) });
    p.arbiter.boot();
    const worker = p.workers.get('worker/1')!;
    worker.ready();
    const [first, second, third] = (['client/1', 'client/2', 'client/3'] as const).map((client) => worker.accept(client)!) as [ConnId, ConnId, ConnId];
    [first, second, third].forEach((conn, i) => worker.requestArrived(conn, `a${i + 1}`));
    [first, second, third].forEach((conn, i) => worker.handlerFinished(conn, `a${i + 1}`));
    worker.requestArrived(second, 'b2');
    worker.requestArrived(first, 'b1');
    worker.requestArrived(third, 'b3');
    worker.polled(first);
    return { p, worker, first, second, third };
  }

  it("gthread's recycle past its poll: the turn still hands over what that poll returned — the requests readable before the one it handed over last — and abandons the rest", () => {
    // The poll that returned with b1 returned after b1 came, so with b2 as well — not necessarily with b3.
    const { p, worker, first, second, third } = pastPollWithThreeReadable(false);
    expect(p.events.filter((e) => e.type === 'worker.max-requests')).toHaveLength(1);
    expect(p.events.some((e) => e.actor === 'worker/1' && e.type === 'worker.turn-end')).toBe(true);
    expect(p.effects).toContain(`${second} handles b2`);
    expect(p.effects).not.toContain(`${third} handles b3`);
    worker.handlerFinished(first, 'b1');
    worker.handlerFinished(second, 'b2');
    expect(p.effects).toContain(`${second} answers b2 with close`);
    expect(p.effects).toContain(`${third} RST`);
    expect(replaysSoFar(p)).toBe('ok');
  });

  it("gthread's recycle past its poll, where the platform knows the poll returned later: what became readable by then is in that return, and handed over too", () => {
    const { p, second, third } = pastPollWithThreeReadable(true);
    expect(p.events.some((e) => e.actor === 'worker/1' && e.type === 'worker.turn-end')).toBe(true);
    expect(p.effects).toContain(`${second} handles b2`);
    expect(p.effects).toContain(`${third} handles b3`);
    expect(p.effects).not.toContain(`${third} RST`);
    expect(replaysSoFar(p)).toBe('ok');
  });

  it("gthread's flip past its poll, where the platform says what that poll returned: the turn hands over that return, whatever the driver saw, and abandons the rest", () => {
    // The platform's reading (the simulator's: the poller's state) names b3 alone, which the driver's reading would not.
    let offered: readonly ConnId[] = [];
    const { p, second, third } = pastPollWithThreeReadable(false, (readable) => ((offered = readable), readable.slice(-1)));
    expect(offered).toEqual([second, third]);
    expect(p.events.some((e) => e.actor === 'worker/1' && e.type === 'worker.turn-end')).toBe(true);
    expect(p.effects).toContain(`${third} handles b3`);
    expect(p.effects).not.toContain(`${second} handles b2`);
    expect(replaysSoFar(p)).toBe('ok');
  });

  it("a graceful exit's connections close when the process is gone: a request that comes while it tears down is reset, not met by a FIN", () => {
    const { p, worker, conns } = lastTurnWithTwoInThePoller(true);
    worker.polled(conns[0]!);
    worker.handlerFinished(conns[0]!, 'b1');
    worker.handlerFinished(conns[1]!, 'b2');
    // The drain is done and the exit decided, but the process is not gone: the idle connection is still open.
    expect(p.effects.filter((e) => e.startsWith('conn/1.3 ') && /FIN|RST/.test(e))).toEqual([]);
    expect(p.effects).not.toContain('arbiter exits 0');
    // The client's next request comes while the process tears down: unread.
    worker.requestArrived(conns[2]!, 'b3');
    worker.tornDown();
    expect(p.effects).toContain('conn/1.3 RST');
    expect(p.effects).not.toContain('conn/1.3 FIN');
    expect(p.effects.at(-1)).toBe('arbiter exits 0');
    expect(replay(p.trace()).ok ? 'ok' : replay(p.trace())).toBe('ok');
  });
});
