/**
 * The mutation score: every deliberately broken server (impl/mutants.ts)
 * must be caught by the judge (conformance/judge.ts), by the witness that
 * can see what it breaks, with a clear message. Those that lie in their
 * trace are caught by the wire alone, with a message naming the
 * connection, the trace's line and the observation. The honest server
 * passes the same judge under every script and policy
 * (test/conformance/differential.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { runScriptLive } from '../../conformance/live.ts';
import { getScript } from '../../conformance/scripts.ts';
import { wireAgreement } from '../../conformance/wire.ts';
import { MUTATION_CASES, runMutant, type MutationCase } from '../../conformance/mutation.ts';
import { MUTANTS, mutantOf, type Mutant } from '../../impl/mutants.ts';
import type { Script } from '../../simulator/script.ts';

/** The mutants that lie in their trace: their trace is the honest server's, and only the wire tells. */
const LIARS = new Set<Mutant>(['fin-for-rst', 'rst-for-fin', 'no-close-header', 'close-header-on-keepalive', 'drop-response']);

describe('the judge catches every broken server (mutation score)', () => {
  const caught: string[] = [];
  for (const [mutant, c] of Object.entries(MUTATION_CASES) as [Mutant, MutationCase][]) {
    it(`${mutant}: a server that ${MUTANTS[mutant]} (${c.script}, ${c.policy}) — seen by the ${c.witness}`, async () => {
      const { run, findings, caught: isCaught } = await runMutant(mutant);
      const seen = findings.filter((f) => f.witness === c.witness);
      expect(seen.length, `${mutant} was not caught by the ${c.witness}: ${JSON.stringify(findings)}`).toBeGreaterThan(0);
      expect(seen.map((f) => f.message).join('\n')).toMatch(c.expect);
      expect(isCaught).toBe(true);
      if (LIARS.has(mutant)) {
        // The liar's trace is the honest server's: the machines accept it.
        expect(findings.filter((f) => f.witness === 'trace')).toEqual([]);
        for (const m of wireAgreement(run.trace, run.observed)) expect(m.message).toMatch(new RegExp(`^${m.conn.replace('.', '\\.')}: the trace says at line ${m.line} `));
      }
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

  it('mutation score: every mutant caught (100 %)', () => {
    // Runs after the cases above (vitest runs a file's tests in order).
    expect(caught.sort()).toEqual(Object.keys(MUTANTS).sort());
  });

  it('an unknown mutant name is refused, naming the known ones', () => {
    expect(() => mutantOf('nope')).toThrow(/QUIESCE_MUTANT: unknown mutant "nope"; expected one of: fin-for-rst, rst-for-fin, no-close-header, close-header-on-keepalive, drop-response, exit-with-request-in-flight/);
    expect(mutantOf(undefined)).toBeNull();
  });
});
