/**
 * The black box's judge on a thread of its own (conformance/judge-thread.ts): its verdicts are the
 * in-process judge's, in the order asked, and a failure is the caller's error, not a lost verdict.
 */
import { describe, expect, it } from 'vitest';
import { judgeRun } from '../../conformance/blackbox.ts';
import { JudgeThread } from '../../conformance/judge-thread.ts';
import { getScript } from '../../conformance/scripts.ts';
import { simulateScript } from '../../simulator/script.ts';

const POLICIES = ['safe-drain', 'abort-idle', 'gunicorn-gthread'];

describe('the judge on its own thread', () => {
  it('answers as the judge in this thread does, each run in the order it was asked, several owed at once', async () => {
    const runs = [
      ['term-idle-and-in-flight', 'gunicorn-gthread'],
      ['max-requests', 'safe-drain'],
      ['term-idle-and-in-flight', 'abort-idle'],
    ] as const;
    const observed = runs.map(([script, policy]) => simulateScript(getScript(script), policy).events);
    const judge = await JudgeThread.start();
    try {
      // All three asked before the first answer: the thread owes three verdicts at once.
      const verdicts = await Promise.all(runs.map(([script], i) => judge.verdict(script, POLICIES, observed[i]!)));
      runs.forEach(([script, policy], i) => {
        expect(verdicts[i]).toEqual(judgeRun(getScript(script), POLICIES, observed[i]!));
        // A simulated run is explained by the policy it ran under.
        expect(verdicts[i]!.explainedBy).toContain(policy);
      });
      expect(verdicts.map((v) => v.script)).toEqual(runs.map(([script]) => script));
    } finally {
      await judge.close();
    }
  });

  it('a run the judge cannot take is refused with its error, and the thread goes on judging', async () => {
    const judge = await JudgeThread.start();
    try {
      await expect(judge.verdict('no-such-script', POLICIES, [])).rejects.toThrow(/the judge failed: .*no-such-script/);
      const observed = simulateScript(getScript('max-requests'), 'safe-drain').events;
      expect((await judge.verdict('max-requests', ['safe-drain'], observed)).explainedBy).toEqual(['safe-drain']);
    } finally {
      await judge.close();
    }
  });
});
