import { describe, expect, it } from 'vitest';
import { replay } from '../../model/replay.ts';
import { REAL_CLOCK, TimerWatch, toleranceFor, VIRTUAL_CLOCK } from '../../model/timing.ts';
import type { TraceEvent } from '../../model/events.ts';
import type { Trace } from '../../model/trace.ts';
import { traceOf } from '../../proofs/explore.ts';
import { runRow, THEOREMS, DEFAULT_BOUNDS } from '../../proofs/theorems.ts';
import { getScript } from '../../conformance/scripts.ts';
import { simulateScript } from '../../simulator/script.ts';

/** Theorem 2's shortest witness for a policy: a short trace on a virtual clock (graceful timeout 6 ms, keep-alive 3 ms). */
function witness(policy: string): Trace {
  const spec = THEOREMS.find((t) => t.number === 2)!.rows(DEFAULT_BOUNDS).find((s) => s.policy.name === policy)!;
  const row = runRow(spec, { maxStates: 100_000 });
  return traceOf(row.finding!.config, row.finding!.path).trace;
}

const withParams = (trace: Trace, params: Partial<Trace['header']['params']>, meta = trace.header.meta): Trace => ({
  ...trace,
  header: { ...trace.header, params: { ...trace.header.params, ...params }, ...(meta ? { meta } : {}) },
});

describe('timed conformance: timers fire at the delay the header gives', () => {
  // gunicorn-gthread's witness: TERM at 1 ms, the arbiter's graceful deadline at 7 ms (6 ms later), then KILL.
  const deadline = witness('gunicorn-gthread');

  it('the witness itself conforms, timers included', () => {
    const term = deadline.events.find((e) => e.type === 'arbiter.signal')!;
    const fired = deadline.events.find((e) => e.type === 'arbiter.graceful-timeout')!;
    expect(fired.t - term.t).toBe(deadline.header.params.gracefulTimeoutMs);
    expect(replay(deadline)).toMatchObject({ ok: true });
  });

  it('a graceful timeout 6 ms after TERM, in a trace whose parameters say 30 s, is refused: it fired early', () => {
    const verdict = replay(withParams(deadline, { gracefulTimeoutMs: 30_000 }));
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) {
      expect(verdict.violation.kind).toBe('timer');
      expect(verdict.violation.message).toMatch(/arbiter's timer deadline \(arbiter.graceful-timeout\) fired 6 ms after line \d+ set it; the header's parameters give 30000 ms/);
    }
  });

  it('on a virtual clock a timer that fires 3 ms late is refused; on a real clock that is within tolerance', () => {
    // Only the machines and their timers are judged here (no properties: a 3 ms deadline breaks exit-by-deadline too).
    const late = withParams(deadline, { gracefulTimeoutMs: 3 });
    const verdict = replay(late, undefined, { properties: [] });
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) expect(verdict.violation.message).toMatch(/timer deadline \(arbiter.graceful-timeout\) fired 3 ms late: line \d+ set it for 3 ms/);
    // The same events from a real server: its event loop may run a timer late, up to the stated tolerance.
    const real = withParams(deadline, { gracefulTimeoutMs: 3 }, { source: 'serve' });
    expect(toleranceFor(real.header)).toBe(REAL_CLOCK);
    expect(replay(real, undefined, { properties: [] })).toMatchObject({ ok: true });
    expect(replay(real, undefined, { properties: [], timerTolerance: { earlyMs: 0, lateMs: 2 } })).toMatchObject({ ok: false, violation: { kind: 'timer' } });
  });

  it('a timer that never fires is caught when its actor takes a later event', () => {
    // safe-drain's witness: TERM at 1 ms while a connection is open, its request read at 3 ms and served at 5 ms.
    const drain = witness('safe-drain');
    const term = drain.events.find((e) => e.type === 'worker.signal')!;
    const start = drain.events.find((e) => e.type === 'worker.request-start')!;
    expect([term.t, start.t]).toEqual([1, 3]);
    // Had the graceful timeout been 1 ms, the worker would have been cut short at 2 ms: at 3 ms it is overdue.
    const verdict = replay(withParams(drain, { gracefulTimeoutMs: 1 }), undefined, { properties: [] });
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) {
      expect(verdict.violation.kind).toBe('timer');
      expect(verdict.violation.message).toMatch(/worker\/1's timer graceful \(worker.graceful-timeout\), set at line \d+ for 1 ms, was due at 2 ms and had not fired when worker\/1 took worker.request-start at 3 ms/);
    }
  });
});

describe('TimerWatch', () => {
  const raise = (delay: number) => [{ type: 'xstate.raise', params: { event: { type: 'worker.graceful-timeout' }, delay, id: 'graceful' } }];
  const ev = (t: number, type: string, extra: Record<string, unknown> = {}) => ({ t, actor: 'worker/1', type, ...extra }) as unknown as TraceEvent;

  it('a timer due while its process is stopped is due when it resumes', () => {
    const watch = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    watch.apply('worker/1', 5, 0, raise(10)); // due at 15
    watch.after(ev(10, 'worker.signal', { signal: 'STOP' }), 1, [], false);
    // Stopped from 10 to 30: nothing is overdue meanwhile, and the timer fires at CONT.
    expect(watch.before(ev(30, 'worker.signal', { signal: 'CONT' }), 2)).toBeNull();
    watch.after(ev(30, 'worker.signal', { signal: 'CONT' }), 2, [], false);
    expect(watch.before(ev(30, 'worker.graceful-timeout'), 3)).toBeNull();
  });

  it('without the stop, the same firing is 15 ms late', () => {
    const watch = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    watch.apply('worker/1', 5, 0, raise(10));
    expect(watch.before(ev(30, 'worker.graceful-timeout'), 1)?.message).toMatch(/fired 15 ms late/);
  });

  it('a worker the watchdog found silent is not held to its timers from when it last ran', () => {
    // A SIGSTOP from outside is in no trace: the arbiter's ABRT is the evidence the process was frozen.
    const frozen = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    frozen.after(ev(4, 'worker.heartbeat'), 0, [], false);
    frozen.apply('worker/1', 5, 1, raise(10)); // due at 15
    frozen.after(ev(5, 'worker.heartbeat'), 1, [], false);
    frozen.after({ t: 40, actor: 'arbiter', type: 'arbiter.kill', worker: 'worker/1', signal: 'ABRT' } as TraceEvent, 2, [], false);
    expect(frozen.before(ev(40, 'worker.signal', { signal: 'ABRT' }), 3)).toBeNull();
    // Without the watchdog's word, the same silence is a timer that never fired.
    const hung = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    hung.apply('worker/1', 5, 0, raise(10));
    expect(hung.before(ev(40, 'worker.signal', { signal: 'ABRT' }), 1)?.message).toMatch(/was due at 15 ms and had not fired/);
  });

  it('a KILLed worker is not held to its timers from when it last ran; one that ran meanwhile is', () => {
    // SIGSTOPped from outside (no trace records it) and killed at the graceful deadline: its keep-alive
    // timer could not fire. The conformance script stopped-worker-escalation does this under every policy
    // that does not escalate INT (gunicorn ≤ 23): the KILL comes at the graceful deadline, long after.
    const frozen = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    frozen.apply('worker/1', 5, 0, raise(10)); // due at 15
    frozen.after(ev(6, 'worker.heartbeat'), 1, [], false);
    expect(frozen.before(ev(3000, 'worker.signal', { signal: 'KILL' }), 2)).toBeNull();
    frozen.after(ev(3000, 'worker.signal', { signal: 'KILL' }), 2, [], false);
    expect(frozen.before(ev(3001, 'worker.exit', { code: -9 }), 3)).toBeNull();
    // A worker that showed life after its timer was due, and still never fired it, is caught then.
    const alive = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    alive.apply('worker/1', 5, 0, raise(10));
    alive.after(ev(6, 'worker.heartbeat'), 1, [], false);
    expect(alive.before(ev(2000, 'worker.heartbeat'), 2)?.message).toMatch(/was due at 15 ms and had not fired/);
  });

  it('a cancelled timer is not waited for', () => {
    const watch = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    watch.apply('worker/1', 5, 0, raise(10));
    watch.apply('worker/1', 6, 1, [{ type: 'xstate.cancel', params: { sendId: 'graceful' } }]);
    expect(watch.before(ev(100, 'worker.heartbeat'), 2)).toBeNull();
  });

  it("a timer's event with no such timer pending is refused: one that fired already, one that was cancelled, one never set", () => {
    const watch = new TimerWatch(VIRTUAL_CLOCK, (i) => i + 2);
    watch.apply('worker/1', 5, 0, raise(10));
    expect(watch.before(ev(15, 'worker.graceful-timeout'), 1)).toBeNull();
    watch.after(ev(15, 'worker.graceful-timeout'), 1, [], false);
    // The same deadline again: its timer fired at line 3 (index 1).
    expect(watch.before(ev(16, 'worker.graceful-timeout'), 2)?.message).toBe("worker/1 took worker.graceful-timeout, a timer's event, with no such timer pending: its last one fired at line 3");
    watch.apply('worker/2', 20, 3, raise(10));
    watch.apply('worker/2', 21, 4, [{ type: 'xstate.cancel', params: { sendId: 'graceful' } }]);
    expect(watch.before(({ ...ev(30, 'worker.graceful-timeout'), actor: 'worker/2' } as TraceEvent), 5)?.message).toBe("worker/2 took worker.graceful-timeout, a timer's event, with no such timer pending: its last one cancelled at line 6");
    expect(watch.before(({ ...ev(31, 'worker.graceful-timeout'), actor: 'worker/3' } as TraceEvent), 6)?.message).toBe("worker/3 took worker.graceful-timeout, a timer's event, with no such timer pending: none was set");
    // An event of a type no timer has had is not a timer's.
    expect(watch.before(({ ...ev(32, 'worker.heartbeat'), actor: 'worker/3' } as TraceEvent), 7)).toBeNull();
  });

  it('replay refuses a worker whose graceful deadline fires twice, where the chart alone would take it again (gthread: the pool runs past it)', () => {
    const trace = simulateScript(getScript('quit-while-draining'), 'gunicorn-gthread');
    expect(replay(trace)).toMatchObject({ ok: true });
    const at = trace.events.findIndex((e) => e.type === 'worker.graceful-timeout');
    expect(at).toBeGreaterThan(0);
    const fired = trace.events[at]!;
    const twice = { ...trace, events: [...trace.events.slice(0, at + 1), { ...fired, t: fired.t + 0.001 }, ...trace.events.slice(at + 1)] };
    // Without the timer watch, the machines take it: the gap this closes.
    expect(replay(twice, trace.header.policy, { timerTolerance: 'off' })).toMatchObject({ ok: true });
    const verdict = replay(twice);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) {
      expect(verdict.violation.kind).toBe('timer');
      expect(verdict.violation.message).toMatch(new RegExp(`${fired.actor} took worker.graceful-timeout, a timer's event, with no such timer pending: its last one fired at line \\d+`));
    }
  });
});
