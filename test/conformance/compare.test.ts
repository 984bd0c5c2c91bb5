/**
 * compareLifecycles on traces derived from one simulated run: the same events in another order that only
 * the kernel decides are the same lifecycle; in an order a platform decides, they differ.
 */
import { describe, expect, it } from 'vitest';
import { compareLifecycles, lifecycles } from '../../conformance/compare.ts';
import { getScript } from '../../conformance/scripts.ts';
import type { TraceEvent } from '../../model/events.ts';
import type { Trace } from '../../model/trace.ts';
import { simulateScript } from '../../simulator/script.ts';

// A fast stop while a new worker boots: the old worker and the booting one both leave at the INT.
const simulated = simulateScript(getScript('fast-stop-while-booting'), 'gunicorn-gthread', 1);

const indexOf = (match: (e: TraceEvent) => boolean): number => {
  const i = simulated.events.findIndex(match);
  if (i < 0) throw new Error('the simulated run lacks an event this test relies on');
  return i;
};

/** The trace with the events at `i` and `j` swapped (times kept in place, so the trace stays in time order). */
function swapped(trace: Trace, i: number, j: number): Trace {
  const events = [...trace.events];
  const [a, b] = [events[i]!, events[j]!];
  events[i] = { ...b, t: a.t };
  events[j] = { ...a, t: b.t };
  return { ...trace, events };
}

const reapOf = (w: string) => indexOf((e) => e.type === 'arbiter.reap' && e.worker === w);
const releaseBy = (h: string) => indexOf((e) => e.type === 'listener.release' && e.holder === h);
const killOf = (w: string) => indexOf((e) => e.type === 'arbiter.kill' && e.worker === w && e.signal === 'QUIT');

describe('compareLifecycles', () => {
  it('finds a trace the same as itself', () => {
    expect(compareLifecycles(simulated, simulated)).toEqual([]);
  });

  it('two workers that leave together may be reaped, and let go of the listener, in either order (the kernel schedules their exits)', () => {
    const otherOrder = swapped(swapped(simulated, reapOf('worker/1'), reapOf('worker/2')), releaseBy('worker/1'), releaseBy('worker/2'));
    // The swap did change the arbiter's sequence as written…
    expect(lifecycles(otherOrder).get('arbiter')).toEqual(lifecycles(simulated).get('arbiter'));
    expect(otherOrder.events.map((e) => e.type === 'arbiter.reap' && e.worker)).not.toEqual(simulated.events.map((e) => e.type === 'arbiter.reap' && e.worker));
    // …and the comparison treats the run of reaps as a set.
    expect(compareLifecycles(simulated, otherOrder)).toEqual([]);
  });

  it('the order of the kills is the arbiter’s decision, and is compared', () => {
    const differences = compareLifecycles(simulated, swapped(simulated, killOf('worker/1'), killOf('worker/2')));
    expect(differences.map((d) => d.actor)).toEqual(['arbiter']);
  });

  it('the arbiter’s own release of the listener is ordered against the workers’ (it is the arbiter’s decision when to close)', () => {
    const differences = compareLifecycles(simulated, swapped(simulated, releaseBy('arbiter'), releaseBy('worker/2')));
    expect(differences.map((d) => d.actor)).toEqual(['listener']);
  });

  it('reaps with another arbiter event between them are not one run: their order is compared', () => {
    const reaps = simulated.events.filter((e) => e.actor === 'arbiter' && e.type === 'arbiter.reap');
    expect(reaps).toHaveLength(2);
    // Put the arbiter's exit between the two reaps: the second reap now comes after a decision, and out of order.
    const events = simulated.events.filter((e) => !(e.type === 'arbiter.reap' && e.worker === 'worker/1'));
    const exit = events.findIndex((e) => e.type === 'arbiter.exit');
    const reordered = { ...simulated, events: [...events.slice(0, exit + 1), { ...reaps[0]!, t: events[exit]!.t }, ...events.slice(exit + 1)] };
    expect(compareLifecycles(simulated, reordered).map((d) => d.actor)).toEqual(['arbiter']);
  });
});
