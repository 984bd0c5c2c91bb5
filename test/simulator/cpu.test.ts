/**
 * The shared CPU (simulator/cpu.ts): processor sharing of the cores, each thread's work in order — and
 * what it does to a simulated server: a worker serves at the pace its thread gets, however many
 * connections it holds, and a replacement that takes a ready spare serves at once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TraceEvent } from '../../model/events.ts';
import { replay } from '../../model/replay.ts';
import { SharedCpu, type CpuClock } from '../../simulator/cpu.ts';
import { EventQueue } from '../../simulator/queue.ts';
import { runScenario } from '../../simulator/run.ts';
import { firstWorkersReadyMs, getScenario, type CpuParams, type ScenarioParams } from '../../simulator/scenarios.ts';

/** A clock on an event queue: the engine's, without the machines. */
class TestClock implements CpuClock {
  nowMs = 0;
  private readonly queue = new EventQueue();
  at(delayMs: number, run: () => void) {
    return this.queue.push(this.nowMs + delayMs, run);
  }
  runUntilIdle(): void {
    for (;;) {
      const atMs = this.queue.peekTime();
      if (atMs === undefined) return;
      const run = this.queue.pop();
      if (!run) continue; // cancelled
      this.nowMs = atMs;
      run();
    }
  }
}

interface JobSpec {
  readonly thread: number;
  readonly atMs: number;
  readonly workMs: number;
}

/** When each job finishes, by the event-driven CPU. */
function finishTimes(cores: number, jobs: readonly JobSpec[]): number[] {
  const clock = new TestClock();
  const cpu = new SharedCpu(cores, clock);
  const done: number[] = new Array(jobs.length).fill(Number.NaN);
  jobs.forEach((job, i) => clock.at(job.atMs, () => cpu.run(`t${job.thread}`, job.workMs, () => (done[i] = clock.nowMs))));
  clock.runUntilIdle();
  return done;
}

/**
 * The same rule, stepped: every `stepMs`, each thread with work advances its oldest job by
 * min(1, cores / runnable) × stepMs. An independent reading of processor sharing to hold the booking against.
 */
function steppedFinishTimes(cores: number, jobs: readonly JobSpec[], stepMs: number): number[] {
  const remaining = jobs.map((j) => j.workMs);
  const done: number[] = new Array(jobs.length).fill(Number.NaN);
  const threads = [...new Set(jobs.map((j) => j.thread))];
  // A thread takes its jobs in the order they came (ties in the order given, as the event queue does).
  const order = jobs.map((_, i) => i).sort((a, b) => jobs[a]!.atMs - jobs[b]!.atMs || a - b);
  const headOf = (thread: number, t: number) => order.find((i) => jobs[i]!.thread === thread && jobs[i]!.atMs <= t && Number.isNaN(done[i]!)) ?? -1;
  for (let t = 0; done.some(Number.isNaN); t += stepMs) {
    const heads: number[] = [];
    for (const thread of threads) {
      // A job of no work finishes when its thread gets to it.
      let head = headOf(thread, t);
      while (head >= 0 && remaining[head]! <= 0) {
        done[head] = t;
        head = headOf(thread, t);
      }
      if (head >= 0) heads.push(head);
    }
    const rate = heads.length === 0 ? 0 : Math.min(1, cores / heads.length);
    for (const i of heads) {
      remaining[i]! -= rate * stepMs;
      if (remaining[i]! <= 1e-12) done[i] = t + stepMs;
    }
  }
  return done;
}

describe('SharedCpu: processor sharing', () => {
  it('a thread alone runs at one core, however many there are', () => {
    expect(finishTimes(2, [{ thread: 1, atMs: 0, workMs: 3 }])).toEqual([3]);
  });

  it('four threads on two cores each get half a core: 3 ms of work each is done at 6 ms', () => {
    const times = finishTimes(2, [1, 2, 3, 4].map((thread) => ({ thread, atMs: 0, workMs: 3 })));
    for (const t of times) expect(t).toBeCloseTo(6, 9);
  });

  it("a thread's work is done in order: 2 then 3 ms on one thread end at 2 and 5", () => {
    expect(finishTimes(2, [{ thread: 1, atMs: 0, workMs: 2 }, { thread: 1, atMs: 0, workMs: 3 }])).toEqual([2, 5]);
  });

  it('a thread that comes later slows the one running: one core, A 4 ms from 0, B 2 ms from 1 — B at 5, A at 6', () => {
    // From 1 ms both run at half a core: B's 2 ms take 4 (done at 5); A has 3 ms left at 1, 1 ms at 5, alone again: 6.
    const [a, b] = finishTimes(1, [{ thread: 1, atMs: 0, workMs: 4 }, { thread: 2, atMs: 1, workMs: 2 }]);
    expect(b).toBeCloseTo(5, 9);
    expect(a).toBeCloseTo(6, 9);
  });

  it('a paused thread takes no share and keeps its work; a dropped one never finishes', () => {
    const clock = new TestClock();
    const cpu = new SharedCpu(1, clock);
    const done: Record<string, number> = {};
    cpu.run('a', 2, () => (done.a = clock.nowMs));
    cpu.run('b', 2, () => (done.b = clock.nowMs));
    cpu.run('c', 2, () => (done.c = clock.nowMs));
    cpu.pause('b');
    clock.at(1, () => cpu.drop('c'));
    clock.at(10, () => cpu.resume('b'));
    clock.runUntilIdle();
    // a and c share the core for 1 ms (a has 1.5 left), then a runs alone: 2.5. b waits to 10, then 2 ms alone.
    expect(done.a).toBeCloseTo(2.5, 9);
    expect(done.b).toBeCloseTo(12, 9);
    expect(done.c).toBeUndefined();
    expect(cpu.workDoneMs).toBeCloseTo(2 + 0.5 + 2, 9);
  });

  it("work a thread's own callback queues next comes before what the thread already had (the callback goes on); elsewhere, next is refused", () => {
    for (const place of ['next', 'last'] as const) {
      const clock = new TestClock();
      const cpu = new SharedCpu(1, clock);
      const order: string[] = [];
      cpu.run('t', 1, () => {
        order.push(`a@${clock.nowMs}`);
        cpu.run('t', 2, () => order.push(`w@${clock.nowMs}`), place);
      });
      cpu.run('t', 0, () => order.push(`z@${clock.nowMs}`));
      clock.runUntilIdle();
      // Next: W (2 ms) runs before Z, queued earlier with no work: both end at 3. Last: Z ends with A, at 1.
      expect(order, place).toEqual(place === 'next' ? ['a@1', 'w@3', 'z@3'] : ['a@1', 'z@1', 'w@3']);
    }
    // After the current: behind the job in progress, ahead of what waits behind it.
    {
      const clock = new TestClock();
      const cpu = new SharedCpu(1, clock);
      const order: string[] = [];
      cpu.run('t', 2, () => order.push(`a@${clock.nowMs}`));
      cpu.run('t', 1, () => order.push(`b@${clock.nowMs}`));
      clock.at(1, () => cpu.run('t', 0, () => order.push(`s@${clock.nowMs}`), 'after-current'));
      clock.runUntilIdle();
      expect(order).toEqual(['a@2', 's@2', 'b@3']);
    }
    const clock = new TestClock();
    const cpu = new SharedCpu(1, clock);
    expect(() => cpu.run('t', 1, () => {}, 'next')).toThrow(/t: work queued next outside its own completion/);
    let fromAnother: unknown = null;
    cpu.run('u', 1, () => {
      try {
        cpu.run('t', 1, () => {}, 'next');
      } catch (error) {
        fromAnother = error;
      }
    });
    clock.runUntilIdle();
    expect(String(fromAnother)).toMatch(/t: work queued next outside its own completion/);
  });

  it('refuses what no machine has: no cores, negative work', () => {
    const clock = new TestClock();
    expect(() => new SharedCpu(0, clock)).toThrow(/cores > 0/);
    expect(() => new SharedCpu(2, clock).run('w', -1, () => {})).toThrow(/w: work must be ≥ 0 ms/);
  });

  it('agrees with the same rule stepped finely, and does all the work it was given (any jobs, any cores)', () => {
    const job = fc.record({
      thread: fc.integer({ min: 1, max: 4 }),
      atMs: fc.integer({ min: 0, max: 20 }).map((x) => x / 2),
      workMs: fc.integer({ min: 0, max: 30 }).map((x) => x / 4),
    });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.array(job, { minLength: 1, maxLength: 8 }), (cores, jobs) => {
        const stepMs = 1 / 256;
        const exact = finishTimes(cores, jobs);
        const stepped = steppedFinishTimes(cores, jobs, stepMs);
        // The stepped reading finishes a job within its step, and each change of rate can cost one step more.
        exact.forEach((t, i) => expect(Math.abs(t - stepped[i]!)).toBeLessThanOrEqual((jobs.length + 1) * stepMs));
        // Work conserving: every job ends, none before its work could be done alone.
        exact.forEach((t, i) => expect(t).toBeGreaterThanOrEqual(jobs[i]!.atMs + jobs[i]!.workMs - 1e-9));
      }),
      { numRuns: 150 },
    );
  });
});

describe('a simulated server on the shared CPU', () => {
  const cpuParams = (over: Partial<CpuParams>): CpuParams => ({ cores: 1, requestWorkMs: 1, bootWorkMs: 10, clientWorkMs: 0, spares: 0, ...over });
  const scenario = (workers: number, concurrency: number, requests: number, cpu: CpuParams, maxRequests = 0): ScenarioParams => {
    const p = structuredClone(getScenario('keepalive-recycle').params);
    p.server = { ...p.server, workers, maxRequests, maxRequestsJitter: 0 };
    p.load = { kind: 'ab', requests, concurrency, keepAlive: true, timeoutMs: 30_000 };
    p.cpu = cpu;
    p.signals = [];
    return p;
  };
  const events = (params: ScenarioParams, seed = 3) => {
    const out: TraceEvent[] = [];
    const result = runScenario({ scenario: 'cpu', policy: 'gunicorn-gthread', seed, params, onEvent: (e) => out.push(e) });
    return { result, events: out };
  };

  it('one worker on one core serves at its pace whatever the concurrency: 400 requests of 1 ms (mean) take about 400 ms with 2 clients or 8', () => {
    for (const concurrency of [2, 8]) {
      const params = scenario(1, concurrency, 400, cpuParams({}));
      const { result } = events(params);
      const loadMs = result.loadEndMs! - (firstWorkersReadyMs(params) + 1);
      // The work is drawn exponential with mean 1 ms: 400 of them sum to 400 ± 20 (one standard deviation); the core never idles while a request waits.
      expect(loadMs).toBeGreaterThan(320);
      expect(loadMs).toBeLessThan(480);
      expect(result.stats.ok).toBe(400);
    }
  });

  it('the cores are shared: two workers on one core take as long as one, on two cores half as long', () => {
    const span = (workers: number, cores: number) => {
      const params = scenario(workers, 8, 400, cpuParams({ cores }));
      const { result } = events(params);
      return result.loadEndMs! - (firstWorkersReadyMs(params) + 1);
    };
    const oneCore = span(2, 1);
    const twoCores = span(2, 2);
    expect(oneCore).toBeGreaterThan(320);
    expect(oneCore).toBeLessThan(480);
    expect(twoCores / oneCore).toBeGreaterThan(0.4);
    expect(twoCores / oneCore).toBeLessThan(0.62);
  });

  it('a replacement that takes a ready spare is ready after its activation; without spares it boots after the exit, its boot alone on its core', () => {
    // One worker recycled every 50 requests of 1 ms on two cores; the spare's 10 ms boot runs beside it and is long done at each exit.
    const gaps = (spares: number, spareActivationMs?: number) => {
      const { events: trace } = events(scenario(1, 1, 300, cpuParams({ cores: 2, spares, requestWorkMs: 1, ...(spareActivationMs === undefined ? {} : { spareActivationMs }) }), 50));
      const exits = trace.filter((e) => e.type === 'worker.exit');
      return exits
        .map((exit) => trace.find((e) => e.type === 'worker.ready' && e.t >= exit.t))
        .filter((ready): ready is TraceEvent => ready !== undefined)
        .map((ready, i) => ready.t - exits[i]!.t);
    };
    const withSpare = gaps(1);
    const activated = gaps(1, 3);
    const without = gaps(0);
    expect(withSpare.length).toBeGreaterThanOrEqual(4);
    expect(activated.length).toBeGreaterThanOrEqual(4);
    for (const gap of withSpare) expect(gap).toBeCloseTo(0, 9);
    for (const gap of activated) expect(gap).toBeCloseTo(3, 9);
    // Nothing else runs while the only worker is gone (the client waits for a connection): 10 ms of boot at a full core.
    for (const gap of without) expect(gap).toBeCloseTo(10, 9);
  });

  it("a worker that is one thread (an event loop: readsInTurn) reads a request only when the thread is free — its requests never overlap — and its close resets what the thread has not read", () => {
    const overlaps = (trace: readonly TraceEvent[]) => {
      // Per worker, the requests between their read and their response: more than one at once is a pool.
      const busy = new Map<string, number>();
      let most = 0;
      for (const e of trace) {
        const worker = e.actor.startsWith('conn/') ? e.actor.slice('conn/'.length).split('.')[0]! : null;
        if (worker === null) continue;
        if (e.type === 'conn.read') busy.set(worker, (busy.get(worker) ?? 0) + 1);
        if (e.type === 'conn.respond') busy.set(worker, (busy.get(worker) ?? 0) - 1);
        most = Math.max(most, busy.get(worker) ?? 0);
      }
      return most;
    };
    const params = scenario(2, 12, 1500, cpuParams({ cores: 2, requestWorkMs: 0.3, bootWorkMs: 40, clientWorkMs: 0.03, spares: 1, readsInTurn: true }), 200);
    const { result, events: trace } = events(params);
    expect(replay({ header: result.header, events: trace }).ok).toBe(true);
    expect(overlaps(trace)).toBe(1);
    // Requests that waited unread in a recycling worker's sockets: each close that found one was an RST
    // (ab: Receive), as the kernel's close(2) is with unread bytes — the chart had not heard of them.
    const unread = result.stats.byMechanism['unread-request-reset']?.count ?? 0;
    expect(unread).toBeGreaterThan(0);
    expect(result.stats.ab.receive).toBe(unread);
    // The same load on a pool (the loop hands a request to a thread as it arrives): requests overlap.
    const pool = events({ ...params, cpu: { ...params.cpu!, readsInTurn: false } });
    expect(overlaps(pool.events)).toBeGreaterThan(1);
  });

  it("an event loop's thread takes a signal between two requests, never inside one: no request is between its read and its response when the TERM's handler runs", () => {
    const params = scenario(2, 12, 3000, cpuParams({ cores: 2, requestWorkMs: 0.3, bootWorkMs: 40, clientWorkMs: 0.03, spares: 1, readsInTurn: true }));
    params.signals = [{ atMs: 200, signal: 'TERM' }];
    // The kill → handler wait, 0–2 ms: it ends inside a request's work as often as not.
    params.signalHandlerPercentilesMs = Array.from({ length: 101 }, (_, i) => i / 50);
    let handlers = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const { result, events: trace } = events(params, seed);
      expect(replay({ header: result.header, events: trace }).ok).toBe(true);
      const inProgress = new Map<string, number>();
      for (const e of trace) {
        const worker = e.actor.startsWith('conn/') ? e.actor.slice('conn/'.length).split('.')[0]! : e.actor.startsWith('worker/') ? e.actor.slice('worker/'.length) : null;
        if (worker === null) continue;
        if (e.type === 'conn.read') inProgress.set(worker, (inProgress.get(worker) ?? 0) + 1);
        if (e.type === 'conn.respond') inProgress.set(worker, (inProgress.get(worker) ?? 0) - 1);
        if (e.type === 'worker.signal' && e.signal === 'TERM') {
          handlers++;
          expect(inProgress.get(worker) ?? 0, `seed ${seed}: worker/${worker}'s TERM at ${e.t}`).toBe(0);
        }
      }
    }
    expect(handlers).toBe(10);
  });

  it("after a TERM's handler an event loop's last turn serves a request of its own that was waiting, not a connection queued behind the handler", () => {
    const params = scenario(2, 12, 3000, cpuParams({ cores: 2, requestWorkMs: 0.3, bootWorkMs: 40, clientWorkMs: 0.03, spares: 1, readsInTurn: true }));
    params.signals = [{ atMs: 200, signal: 'TERM' }];
    // Handlers 0–8 ms after their kills: the first worker's exit resets its connections, and their
    // reconnects wait in the kernel's queue while the other worker's handler is still to run.
    params.signalHandlerPercentilesMs = Array.from({ length: 101 }, (_, i) => (8 * i) / 100);
    let tested = 0;
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const { result, events: trace } = events(params, seed);
      expect(replay({ header: result.header, events: trace }).ok).toBe(true);
      const clientOf = new Map<string, string>();
      const workerOf = new Map<string, string>();
      const sentAt = new Map<string, number[]>();
      const heard = new Map<string, number>();
      const connected = new Set<string>();
      const gone = new Set<string>();
      for (const [i, e] of trace.entries()) {
        if (e.type === 'client.send') sentAt.set(e.actor, [...(sentAt.get(e.actor) ?? []), e.t]);
        if (e.type === 'client.connected') connected.add(e.actor);
        if (e.type === 'client.fail' || e.type === 'client.close') gone.add(e.actor);
        if (e.type === 'conn.open') {
          clientOf.set(e.actor, e.client);
          workerOf.set(e.actor, e.worker);
          connected.delete(e.client);
        }
        if (e.type === 'conn.bytes') heard.set(e.actor, (heard.get(e.actor) ?? 0) + 1);
        if (e.type === 'conn.close') gone.add(e.actor);
        if (e.type !== 'worker.signal' || e.signal !== 'TERM') continue;
        // At this handler: the worker's own requests that had reached their sockets unread, and connections queued in the kernel.
        const waiting = [...workerOf].filter(([conn, worker]) => {
          if (worker !== e.actor || gone.has(conn)) return false;
          const arrived = (sentAt.get(clientOf.get(conn)!) ?? []).filter((t) => t + params.latencyMs <= e.t).length;
          return arrived > (heard.get(conn) ?? 0);
        });
        const queued = [...connected].filter((client) => !gone.has(client));
        if (waiting.length === 0 || queued.length === 0) continue;
        tested++;
        // What the worker does next, to its turn's end (or its listener's close, which comes after it): a read of one of those requests first, and no accept.
        const rest = trace.slice(i + 1);
        const end = rest.findIndex((x) => x.actor === e.actor && (x.type === 'worker.turn-end' || x.type === 'worker.close-listener'));
        expect(end, `seed ${seed}: ${e.actor}'s last turn ends`).toBeGreaterThanOrEqual(0);
        const turn = rest.slice(0, end).filter((x) => x.actor === e.actor || workerOf.get(x.actor) === e.actor);
        expect(turn.filter((x) => x.type === 'worker.accept'), `seed ${seed}: ${e.actor} accepted in its last turn`).toEqual([]);
        const first = turn.find((x) => x.type === 'conn.bytes');
        expect(first && waiting.some(([conn]) => conn === first.actor), `seed ${seed}: ${e.actor}'s last turn began with a request of its own`).toBe(true);
      }
    }
    // The situation the rule is for came about (without it, each of these handlers accepted a queued connection).
    expect(tested).toBeGreaterThanOrEqual(3);
  });

  it("a stopping worker's exit comes no earlier than the measured rest of a stop after its listener's close, and its connections close with it", () => {
    const params = scenario(2, 12, 3000, cpuParams({ cores: 2, requestWorkMs: 0.3, bootWorkMs: 40, clientWorkMs: 0.03, spares: 1, readsInTurn: true }));
    params.signals = [{ atMs: 200, signal: 'TERM' }];
    const gaps = (p: ScenarioParams) => {
      const out: { worker: string; closeMs: number; exitMs: number; abortsMs: number[] }[] = [];
      for (const seed of [1, 2, 3]) {
        const { result, events: trace } = events(p, seed);
        expect(replay({ header: result.header, events: trace }).ok).toBe(true);
        const closes = new Map(trace.filter((e) => e.type === 'worker.close-listener').map((e) => [e.actor, e.t]));
        for (const exit of trace.filter((e) => e.type === 'worker.exit')) {
          const closeMs = closes.get(exit.actor);
          if (closeMs === undefined) continue;
          const abortsMs = trace.filter((e) => e.type === 'conn.abort' && e.reason === 'worker-exit' && e.actor.startsWith(`conn/${exit.actor.slice('worker/'.length)}.`)).map((e) => e.t);
          out.push({ worker: `seed ${seed} ${exit.actor}`, closeMs, exitMs: exit.t, abortsMs });
        }
      }
      return out;
    };
    // Without the measurement the exit follows the close as soon as the machine's waits end: within a few ms here.
    expect(gaps(params).some((g) => g.exitMs - g.closeMs < 10)).toBe(true);
    params.exitAfterClosePercentilesMs = Array.from({ length: 101 }, () => 10);
    const floored = gaps(params);
    expect(floored.length).toBe(6);
    for (const g of floored) {
      expect(g.exitMs - g.closeMs, g.worker).toBeGreaterThanOrEqual(10 - 1e-9);
      for (const atMs of g.abortsMs) expect(atMs - g.closeMs, `${g.worker}: a connection closed before the exit`).toBeGreaterThanOrEqual(10 - 1e-9);
    }
    expect(floored.some((g) => g.abortsMs.length > 0)).toBe(true);
  });

  it('its traces conform to the model, recycling and all', () => {
    const params = scenario(3, 12, 1500, cpuParams({ cores: 2, requestWorkMs: 0.3, bootWorkMs: 40, clientWorkMs: 0.03, spares: 1 }), 100);
    params.signals = [{ atMs: 100, signal: 'HUP' }];
    const { result, events: trace } = events(params);
    expect(replay({ header: result.header, events: trace }).ok).toBe(true);
    expect(trace.filter((e) => e.type === 'worker.exit').length).toBeGreaterThanOrEqual(6);
  });
});
