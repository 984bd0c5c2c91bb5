/**
 * The suite's rule for a run that fails beside others: it runs again alone, after the rest, and the lone
 * run is the verdict; what the first showed is kept. Runs here are stand-ins (no server): the rule is
 * about which run is asked for when, not about what a run does.
 */
import { describe, expect, it } from 'vitest';
import { threeAtATimeThenAlone, type Judged } from '../../conformance/suite.ts';
import type { LiveRun } from '../../conformance/live.ts';

const run = {} as LiveRun;

describe('threeAtATimeThenAlone', () => {
  it('runs a failing item again only after every first run has ended, alone, and keeps both verdicts', async () => {
    const log: string[] = [];
    let running = 0;
    let most = 0;
    const attempts = new Map<string, number>();
    const results = await threeAtATimeThenAlone(
      ['a', 'flaky', 'b', 'c', 'broken'],
      async (item): Promise<Judged> => {
        const n = (attempts.get(item) ?? 0) + 1;
        attempts.set(item, n);
        running++;
        most = Math.max(most, running);
        log.push(`start ${item} ${n} beside ${running - 1}`);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        const fails = item === 'broken' || (item === 'flaky' && n === 1);
        return { run, findings: fails ? [{ witness: 'wire', message: `${item} run ${n}` }] : [] };
      },
      (_, j) => j.findings.length > 0,
    );
    expect(most).toBe(3);
    expect(Object.fromEntries(attempts)).toEqual({ a: 1, flaky: 2, b: 1, c: 1, broken: 2 });
    // The second runs start after all five first runs, with nothing beside them.
    const seconds = log.filter((l) => / 2 /.test(l));
    expect(seconds).toEqual(['start flaky 2 beside 0', 'start broken 2 beside 0']);
    expect(log.indexOf(seconds[0]!)).toBe(5);
    expect(results.map((r) => [r.judged!.findings.map((f) => f.message), r.besideOthers])).toEqual([
      [[], []],
      [[], ['wire: flaky run 1']],
      [[], []],
      [[], []],
      [['broken run 2'], ['wire: broken run 1']],
    ]);
  });

  it('an item with nothing to run (null) is not run again', async () => {
    let calls = 0;
    const results = await threeAtATimeThenAlone(
      [1],
      () => {
        calls++;
        return Promise.resolve(null);
      },
      () => true,
    );
    expect(calls).toBe(1);
    expect(results).toEqual([{ judged: null, besideOthers: [] }]);
  });

  it('a run that failed without a finding (it missed its target) says so', async () => {
    let n = 0;
    const results = await threeAtATimeThenAlone([1], () => Promise.resolve({ run, findings: [] }), () => ++n === 1);
    expect(results[0]!.besideOthers).toEqual(['the run did not reach its target']);
  });
});
