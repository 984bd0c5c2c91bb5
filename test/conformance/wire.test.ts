/**
 * The mutation score of the wire check: servers that do on the wire other
 * than what their trace says (impl/mutants.ts) must each be caught, with a
 * message naming the connection, the trace's line and the observation. The
 * honest server passes the same check under every script and policy
 * (test/conformance/differential.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { runScriptLive } from '../../conformance/live.ts';
import { getScript } from '../../conformance/scripts.ts';
import { wireAgreement } from '../../conformance/wire.ts';
import { replay } from '../../model/replay.ts';
import { MUTANTS, mutantOf, type Mutant } from '../../impl/mutants.ts';
import type { Script } from '../../simulator/script.ts';

/** Each mutant, with a script and policy whose run has what it breaks (an RST close, a close header, a keep-alive response, a FIN). */
const CASES: Record<Mutant, { script: string; policy: string; expect: RegExp }> = {
  'fin-for-rst': { script: 'term-idle-and-in-flight', policy: 'gunicorn-gthread-21', expect: /closed with RST; client\/\d+ saw .*, not ECONNRESET/ },
  'rst-for-fin': { script: 'term-idle-and-in-flight', policy: 'abort-idle', expect: /closed with FIN; client\/\d+ saw ECONNRESET|answered .* and it never reset the connection/ },
  'no-close-header': { script: 'term-idle-and-in-flight', policy: 'safe-drain', expect: /answered \S+ 200 with Connection: close; client\/\d+ read 200 without it/ },
  'close-header-on-keepalive': { script: 'term-idle-and-in-flight', policy: 'safe-drain', expect: /answered \S+ 200 without Connection: close; client\/\d+ read 200 with it/ },
};

describe('the wire check catches every server that lies in its trace', () => {
  const caught: string[] = [];
  for (const [mutant, c] of Object.entries(CASES) as [Mutant, (typeof CASES)[Mutant]][]) {
    it(`${mutant}: a server that ${MUTANTS[mutant]} (${c.script}, ${c.policy})`, async () => {
      const run = await runScriptLive(getScript(c.script), c.policy, { env: { QUIESCE_MUTANT: mutant } });
      // The mutant's trace is the honest server's: the machines accept it — only the wire tells.
      const verdict = replay(run.trace);
      expect(verdict.ok ? 'ok' : verdict.violation.message).toBe('ok');
      const mismatches = wireAgreement(run.trace, run.observed);
      expect(mismatches.filter((m) => !m.known).length, `${mutant} was not caught`).toBeGreaterThan(0);
      expect(mismatches.map((m) => m.message).join('\n')).toMatch(c.expect);
      for (const m of mismatches) expect(m.message).toMatch(new RegExp(`^${m.conn.replace('.', '\\.')}: the trace says at line ${m.line} `));
      caught.push(mutant);
    }, 60_000);
  }

  it('the known divergence is what it says: a killed worker’s unread request, RST in the model, FIN on the wire', async () => {
    // never-close-idle keeps the idle connection and never reads its second request; then the worker is SIGKILLed.
    const base = getScript('term-idle-and-in-flight');
    const script: Script = {
      name: 'kill-with-unread-request',
      description: 'a stale request on a kept idle connection, then SIGKILL to the worker',
      server: base.server,
      // The script's own steps without its clients' closes, and a KILL long before the deadline (no tie).
      steps: [...base.steps.filter((s) => s.do !== 'close'), { atMs: 1500, do: 'signal-worker', worker: 0, signal: 'KILL' }],
    };
    const run = await runScriptLive(script, 'never-close-idle');
    const mismatches = wireAgreement(run.trace, run.observed);
    expect(mismatches.map((m) => m.known)).toEqual(['killed-with-bytes-in-memory']);
    expect(mismatches[0]!.message).toMatch(/closed with RST; client\/\d+ saw empty-reply for idle-2, not ECONNRESET/);
    expect(run.trace.events.some((e) => e.type === 'conn.abort' && e.reason === 'killed' && e.actor === mismatches[0]!.conn)).toBe(true);
  }, 60_000);

  it('mutation score: every mutant caught', () => {
    // Runs after the cases above (vitest runs a file's tests in order).
    expect(caught.sort()).toEqual(Object.keys(MUTANTS).sort());
  });

  it('an unknown mutant name is refused, naming the known ones', () => {
    expect(() => mutantOf('nope')).toThrow(/QUIESCE_MUTANT: unknown mutant "nope"; expected one of: fin-for-rst, rst-for-fin, no-close-header, close-header-on-keepalive/);
    expect(mutantOf(undefined)).toBeNull();
  });
});
