/**
 * The existential check (conformance/exists.ts): is there an interleaving
 * of a policy's machines whose clients saw what was observed? Observations
 * here come from the simulator, whose runs are interleavings of the same
 * machines — so the answers can be checked: a simulated run is always
 * explained by its own policy, every explanation found is a run the
 * machines accept and whose clients saw exactly the observation, and an
 * observation the policy's chart rules out is refused, saying where.
 */
import { describe, expect, it } from 'vitest';
import { existsExplanation, observedViews, uncheckable } from '../../conformance/exists.ts';
import { getScript, SCRIPTS } from '../../conformance/scripts.ts';
import { replay } from '../../model/replay.ts';
import { simulateScript, type Script } from '../../simulator/script.ts';

const CHECKABLE = SCRIPTS.filter((s) => uncheckable(s) === null);
const POLICIES = ['gunicorn-gthread', 'abort-idle', 'safe-drain', 'never-close-idle'];

const clientsOf = (script: Script) => [...new Set(script.steps.flatMap((s) => ('client' in s ? [s.client] : [])))];
const views = (script: Script, events: Parameters<typeof observedViews>[0]) => observedViews(events, clientsOf(script));

describe('the existential check', () => {
  it('lists what it cannot check, with the reason', () => {
    expect(uncheckable(getScript('killed-worker'))).toMatch(/signals a worker/);
    expect(uncheckable(getScript('header-timeout'))).toMatch(/half a request head/);
    expect(uncheckable(getScript('half-close-while-served'))).toMatch(/half-closes a connection/);
    expect(uncheckable(getScript('pipelined-behind-close'))).toMatch(/pipelines a request/);
    expect(uncheckable(getScript('body-cut-short'))).toMatch(/part of a request body/);
    expect(CHECKABLE.map((s) => s.name).sort()).toEqual(['connect-during-term', 'fast-stop-while-booting', 'hup-reload', 'max-requests', 'term-idle-and-in-flight', 'term-then-int', 'ttin-ttou', 'waiting-for-a-thread', 'waiting-for-a-thread-int']);
    expect(existsExplanation(getScript('killed-worker'), 'safe-drain', [])).toEqual({ status: 'not-checkable', reason: uncheckable(getScript('killed-worker')) });
  });

  for (const script of CHECKABLE) {
    it(`${script.name}: each simulated run is explained by its own policy; every explanation found is a run of the policy whose clients saw the same`, () => {
      for (const observedUnder of POLICIES) {
        const observed = simulateScript(script, observedUnder).events;
        for (const policy of POLICIES) {
          const verdict = existsExplanation(script, policy, observed);
          const label = `${script.name}: observed under ${observedUnder}, searched under ${policy}`;
          // The simulator's run is one interleaving of the policy's own machines.
          if (policy === observedUnder) expect(verdict.status, label).toBe('explained');
          expect(verdict.status, label).not.toBe('undecided');
          if (verdict.status !== 'explained') continue;
          const checked = replay(verdict.trace);
          expect(checked.ok ? 'conforms' : checked.violation.message, label).toBe('conforms');
          expect(views(script, verdict.trace.events), label).toEqual(views(script, observed));
        }
      }
    }, 120_000);
  }

  it('refuses what the chart rules out, naming the observation and the states: gthread 20 abandons an idle connection at TERM', () => {
    // safe-drain answers the idle client's second request (Connection: close); gunicorn-gthread's drain
    // orphans the idle connection, so that request is never read: no interleaving answers it. Nor does
    // any say Connection: close to the busy client: gthread fixed that header when the handler started,
    // before TERM. Which of the two a search meets last depends on the order it tries: either is named.
    const script = getScript('term-idle-and-in-flight');
    const verdict = existsExplanation(script, 'gunicorn-gthread', simulateScript(script, 'safe-drain').events);
    expect(verdict.status).toBe('unexplained');
    if (verdict.status !== 'unexplained') return;
    expect(verdict.firstUnexplained).toMatch(
      /^client (1, step 4: saw fail reset #2; the real client saw response #2 close|2, step 2: saw response #1 keep-alive; the real client saw response #1 close) \(at step \d+; worker\/1 /,
    );
    expect(verdict.states).toBeGreaterThan(0);
  });

  it('holds the runner to its times: a request the runner never sent means the connection was over by then', () => {
    // abort-idle closes the idle connection at TERM, so the runner never sent its second request. safe-drain
    // would still have had it open then (its idle grace is 600 ms, the request was due 250 ms after TERM).
    const script = getScript('term-idle-and-in-flight');
    const observed = simulateScript(script, 'abort-idle').events;
    expect(views(script, observed)[0]).toEqual(['send #1', 'response #1 keep-alive', 'eof']);
    const verdict = existsExplanation(script, 'safe-drain', observed);
    expect(verdict.status).toBe('unexplained');
    if (verdict.status === 'unexplained') expect(verdict.firstUnexplained).toMatch(/client 1's connection over/);
  });
});
