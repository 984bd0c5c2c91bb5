/**
 * `quiesce conform` with no --server: the suite on our own server, as one
 * report — each run judged, the machines' coverage, the mutation score.
 * The full suite is `npm run conformance`; this runs one script under one
 * policy, and the chart's paths under it (the judge itself is tested
 * run by run in differential.test.ts, the mutants in wire.test.ts, gunicorn
 * in blackbox.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers.ts';
import type { SuiteReport } from '../../conformance/suite.ts';
import { MUTANT_NAMES } from '../../conformance/mutation.ts';
import { CoverageRecorder } from '../../conformance/coverage.ts';

describe('the conformance suite on quiesce serve', () => {
  it('judges each run, drives the paths of the connection and worker charts, reports coverage and the mutation score, and passes', async () => {
    const { code, out } = await runCli('conform', '--script', 'max-requests', '--policy', 'gunicorn-gthread', '--no-gunicorn', '--json');
    const report = JSON.parse(out) as SuiteReport;
    expect(report.runs.map((r) => [r.script, r.policy, r.findings])).toEqual([['max-requests', 'gunicorn-gthread', []]]);
    expect(report.mutants!.map((m) => [m.mutant, m.caught])).toEqual(MUTANT_NAMES.map((m) => [m, true]));
    // The script recycles a worker at its second request: the worker chart's max-requests transition is taken,
    // and a fresh worker boots; the script itself crashes none (the paths do: a SIGSEGV from outside).
    const worker = report.coverage.find((c) => c.kind === 'worker')!;
    const recycle = 'worker.alive.serving --worker.max-requests--> worker.alive.draining';
    // A transition of the chart (missing where nothing ran), taken here.
    expect(new CoverageRecorder().report().find((c) => c.kind === 'worker')!.transitions.missing).toContain(recycle);
    expect(worker.transitions.missing).not.toContain(recycle);
    expect(worker.transitions.total).toBeGreaterThan(worker.transitions.covered);
    expect(worker.states.missing).not.toContain('worker.dying.crashed');
    for (const c of report.coverage) expect(c.states.covered + c.states.missing.length, c.kind).toBe(c.states.total);
    // The paths generated from the connection and worker charts: every run judged clean; every state aimed
    // at from outside reached (each is a rest the runner's steps lead to); transitions taken where the
    // runner's timing decides them.
    const paths = report.paths!;
    // A path that failed beside two others ran again alone (its verdict); what it showed first is printed.
    for (const p of paths) if (p.besideOthers.length > 0) console.log(`${p.target} (${p.policy}), beside two other runs: ${p.besideOthers.join('; ')}`);
    for (const p of paths) expect(p.findings, p.target).toEqual([]);
    expect(report.passed).toBe(true);
    expect(code).toBe(0);
    const states = paths.filter((p) => p.aim === 'state' && p.undrivable === null);
    expect(states.filter((p) => p.kind === 'conn').length).toBeGreaterThan(8);
    expect(states.filter((p) => p.kind === 'worker').length).toBeGreaterThan(6);
    for (const p of states) expect(p.reached, `${p.target} (${p.policy}: ${p.events.join(' → ')})`).toBe(true);
    // gthread 20.x's last loop turn, entered at TERM and left at the poll's timeout, is reached from outside.
    expect(paths.find((p) => p.target === 'worker.alive.draining.lastTurn --worker.turn-timeout--> worker.alive.draining.listening')).toMatchObject({ reached: true });
    // A crash, by a SIGSEGV from outside: the arbiter writes worker.crash for the dead worker, and replaces it.
    expect(paths.find((p) => p.target === 'worker.dying.crashed')).toMatchObject({ reached: true, undrivable: null });
    // gthread 20 orphans a kept-alive connection at TERM: the path there is a request, its response, then TERM.
    expect(paths.find((p) => p.target === 'conn.orphaned')).toMatchObject({ policy: 'gunicorn-gthread', reached: true });
    // A client's RST (an abortive close, SO_LINGER 0) is one of the runner's actions. gthread's pool hands a
    // kept-alive connection back after its response (conn.returned): that is its way to idle.
    for (const t of ['conn.idle.keptAlive --conn.keepalive-timeout--> conn.closing', 'conn.idle --conn.peer-fin--> conn.closingHard', 'conn.handling.finished --conn.respond#2--> conn.returning', 'conn.returning.toKeep --conn.returned#3--> conn.idle', 'conn.returning.toClose --conn.returned--> conn.closing', 'conn --conn.peer-rst--> conn.closed']) {
      expect(paths.find((p) => p.target === t), t).toMatchObject({ aim: 'transition', reached: true });
    }
    // Against what the runner can drive: a transition only an undrivable event leads to is out of reach, with its reason.
    const connReach = report.reach.find((r) => r.kind === 'conn')!;
    expect(connReach.notFromOutside).toContainEqual({ transition: 'conn.pending --conn.bytes#2--> (stays)', reason: expect.stringMatching(/unannounced/) });
    // Our server hands a connection back as it writes the response: nothing from outside comes between.
    expect(connReach.notFromOutside).toContainEqual({ transition: 'conn.returning --conn.bytes--> (stays)', reason: expect.stringMatching(/as the response is written/) });
    for (const r of report.reach) expect(r.covered + r.notFromOutside.length + r.notTaken.length, r.kind).toBe(r.total);
    // The kernel's accept-queue events are in no real trace: a SYN is out of reach, with that reason.
    expect(report.reach.find((r) => r.kind === 'listener')!.notFromOutside).toContainEqual({ transition: 'listener.listening --listener.syn--> (stays)', reason: expect.stringMatching(/SYN/) });
    // What no platform announces is listed with the reason, not run; what the runner can send (a request
    // pipelined behind one being handled, the rest of a body cut short) is run.
    expect(paths.find((p) => p.target === 'conn.pending --conn.bytes#2--> (stays)')).toMatchObject({ reached: false, undrivable: expect.stringMatching(/unannounced/) });
    for (const t of ['conn.handling --conn.bytes--> (stays)', 'conn.pending --conn.bytes#1--> conn.pending.untimed', 'conn.pending.timed --conn.header-timeout--> conn.closing', 'conn.pending --conn.peer-fin#1--> conn.closing']) {
      expect(paths.find((p) => p.target === t), t).toMatchObject({ aim: 'transition', reached: true });
    }
    // About 170 s alone on two cores (124 live paths, three at a time); the suite shares the machine with the
    // other files of its group (vitest.config.ts), which can double that.
  }, 420_000);
});
