import { describe, expect, it } from 'vitest';
import { getScenario } from '../../simulator/scenarios.ts';
import { runScenario } from '../../simulator/run.ts';
import { abReport } from '../../simulator/report.ts';
import { ServingGaps } from '../../simulator/serving.ts';

type Step = [t: number, actor: string, type: string, signal?: string];

function gapsOf(steps: readonly Step[], endMs: number) {
  const gaps = new ServingGaps();
  for (const [t, actor, type, signal] of steps) gaps.take(t, actor, { type, ...(signal ? { signal } : {}) } as never);
  return gaps.summary(endMs);
}

describe('the spans with no worker serving', () => {
  const booted: Step[] = [
    [0, 'arbiter', 'arbiter.start'],
    [100, 'worker/1', 'worker.ready'],
  ];

  it('do not count the first boot, nor anything after a stop began', () => {
    const stopped: Step[] = [...booted, [500, 'arbiter', 'arbiter.signal', 'TERM'], [501, 'worker/1', 'worker.signal', 'TERM'], [600, 'worker/1', 'worker.exit']];
    expect(gapsOf(stopped, 700)).toEqual({ count: 0, totalMs: 0, longest: null });
  });

  it('count a reload that retires the only worker until its replacement is ready', () => {
    const reload: Step[] = [...booted, [200, 'arbiter', 'arbiter.signal', 'HUP'], [200, 'worker/1', 'worker.signal', 'TERM'], [350, 'worker/2', 'worker.ready'], [400, 'worker/1', 'worker.exit']];
    expect(gapsOf(reload, 1000)).toEqual({ count: 1, totalMs: 150, longest: { startMs: 200, endMs: 350 } });
  });

  it('count a recycle (max-requests) and a stopped worker, and end an open span with the run', () => {
    const steps: Step[] = [
      ...booted,
      [300, 'worker/1', 'worker.max-requests'],
      [420, 'worker/2', 'worker.ready'],
      [500, 'worker/2', 'worker.signal', 'STOP'],
      [530, 'worker/2', 'worker.signal', 'CONT'],
      [900, 'worker/2', 'worker.crash'],
    ];
    expect(gapsOf(steps, 1000)).toEqual({ count: 3, totalMs: 120 + 30 + 100, longest: { startMs: 300, endMs: 420 } });
  });

  it("in the reload scenario: gunicorn's reload leaves nothing serving for a boot at each of its three HUPs; safe-drain's never", () => {
    const scenario = getScenario('reload-under-load');
    const run = (policy: string) => runScenario({ scenario: scenario.name, policy, seed: 1, params: scenario.params });
    const gthread = run('gunicorn-gthread').servingGaps;
    // One worker of the new generation is ready bootMs after the HUP forked it (no profile: the scenario's fixed boot).
    expect(gthread.count).toBe(scenario.params.signals.length);
    expect(gthread.totalMs).toBeCloseTo(scenario.params.signals.length * scenario.params.bootMs, 6);
    const safe = run('safe-drain');
    expect(safe.servingGaps).toEqual({ count: 0, totalMs: 0, longest: null });
    expect(abReport(safe)).toContain('No worker serving:      none');
  });
});
