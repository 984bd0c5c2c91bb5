/**
 * `quiesce conform` with no --server: the suite on our own server, as one
 * report — each run judged, the machines' coverage, the mutation score.
 * The full suite is `npm run conformance`; this runs one script under two
 * policies (the judge itself is tested run by run in differential.test.ts,
 * the mutants in wire.test.ts, gunicorn in blackbox.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers.ts';
import type { SuiteReport } from '../../conformance/suite.ts';
import { MUTANT_NAMES } from '../../conformance/mutation.ts';
import { CoverageRecorder } from '../../conformance/coverage.ts';

describe('the conformance suite on quiesce serve', () => {
  it('judges each run, reports coverage and the mutation score, and passes', async () => {
    const { code, out } = await runCli('conform', '--script', 'max-requests', '--policy', 'safe-drain,gunicorn-gthread', '--no-gunicorn', '--json');
    const report = JSON.parse(out) as SuiteReport;
    expect(report.runs.map((r) => [r.script, r.policy, r.findings])).toEqual([
      ['max-requests', 'safe-drain', []],
      ['max-requests', 'gunicorn-gthread', []],
    ]);
    expect(report.mutants!.map((m) => [m.mutant, m.caught])).toEqual(MUTANT_NAMES.map((m) => [m, true]));
    expect(report.passed).toBe(true);
    expect(code).toBe(0);
    // The script recycles a worker at its second request: the worker chart's max-requests transition is taken,
    // and a fresh worker boots; no run of it stops a worker by SIGSTOP, so frozen is never entered.
    const worker = report.coverage.find((c) => c.kind === 'worker')!;
    const recycle = 'worker.alive.serving --worker.max-requests--> worker.alive.draining';
    // A transition of the chart (missing where nothing ran), taken here.
    expect(new CoverageRecorder().report().find((c) => c.kind === 'worker')!.transitions.missing).toContain(recycle);
    expect(worker.transitions.missing).not.toContain(recycle);
    expect(worker.transitions.total).toBeGreaterThan(worker.transitions.covered);
    expect(worker.states.missing).toContain('worker.frozen');
    for (const c of report.coverage) expect(c.states.covered + c.states.missing.length, c.kind).toBe(c.states.total);
  }, 180_000);
});
