/**
 * The conformance suite on our own server, as one report (`npm run
 * conformance` with no --server): every script under every policy against
 * `quiesce serve`, each run judged by the three witnesses
 * (conformance/judge.ts); the machines' coverage by those runs; the
 * mutation score; and, where Debian's gunicorn is installed, the black-box
 * report on its sync and gthread workers.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { conform, formatConformReport, type ConformReport } from './blackbox.ts';
import { CoverageRecorder, formatCoverage, formatReach, reachOf, type MachineCoverage, type MachineReach } from './coverage.ts';
import { judgeRun, type Finding } from './judge.ts';
import { pool, runScriptLive, type LiveRun } from './live.ts';
import type { Script } from '../simulator/script.ts';
import { MUTANT_NAMES, runMutant, type MutantVerdict } from './mutation.ts';
import { SCRIPTS } from './scripts.ts';
import { pathsAcross } from './paths.ts';

export interface RunVerdict {
  readonly script: string;
  readonly policy: string;
  readonly findings: readonly Finding[];
  /** What a first run showed with two others beside it, when it failed there and was run again alone (the verdict is the lone run's). */
  readonly besideOthers: readonly string[];
}

export interface PathVerdict {
  /** The chart the path is in. */
  readonly kind: 'conn' | 'worker';
  readonly target: string;
  readonly aim: 'state' | 'transition';
  readonly policy: string;
  readonly events: readonly string[];
  /** Why no outside action drives it; null for a driven path. */
  readonly undrivable: string | null;
  /** The generated script's run entered the target state. */
  readonly reached: boolean;
  readonly findings: readonly Finding[];
  /** What a first run showed with two others beside it, when it failed or missed its target there and was run again alone. */
  readonly besideOthers: readonly string[];
}

export interface SuiteReport {
  readonly runs: readonly RunVerdict[];
  /** The connection chart's paths, generated and driven (null when not run). */
  readonly paths: readonly PathVerdict[] | null;
  readonly coverage: readonly MachineCoverage[];
  /** The transitions against what can be driven from outside (the generated paths say what cannot, and why). */
  readonly reach: readonly MachineReach[];
  /** Null when the mutants were not run. */
  readonly mutants: readonly Pick<MutantVerdict, 'mutant' | 'description' | 'case' | 'caught' | 'findings'>[] | null;
  readonly gunicorn: readonly { readonly worker: string; readonly report: ConformReport }[];
  /** Every run conformed and every mutant was caught. */
  readonly passed: boolean;
}

export interface SuiteOptions {
  readonly scripts: readonly string[];
  readonly policies: readonly string[];
  readonly mutants: boolean;
  readonly gunicorn: boolean;
  readonly paths: boolean;
  readonly onProgress?: (what: string) => void;
}

const APPS = fileURLToPath(new URL('./apps', import.meta.url));
const GUNICORN = ['/usr/bin/gunicorn', '/usr/bin/gunicorn3'].find((p) => existsSync(p)) ?? null;

export interface Judged {
  readonly run: LiveRun;
  readonly findings: Finding[];
}

async function judged(script: Script, policy: string): Promise<Judged> {
  const run = await runScriptLive(script, policy);
  const findings: Finding[] = [...judgeRun(script, policy, run)];
  if (run.exitCode !== 0) findings.push({ witness: 'trace', message: `the server exited ${run.exitCode}` });
  return { run, findings };
}

/**
 * Runs each item three at a time; an item whose run fails (`failed`) runs again alone once the rest are
 * done, and the lone run is the verdict. A script's windows are 100 ms wide, and a server starved of CPU
 * by the two beside it can miss one (a 10 ms request not done 100 ms later) where alone it never does;
 * differential.test.ts does the same. What the first run showed is kept (`besideOthers`), not hidden.
 */
export async function threeAtATimeThenAlone<T>(
  items: readonly T[],
  run: (item: T) => Promise<Judged | null>,
  failed: (item: T, judged: Judged) => boolean,
): Promise<{ judged: Judged | null; besideOthers: readonly string[] }[]> {
  const first = await pool(items, 3, run);
  const out: { judged: Judged | null; besideOthers: readonly string[] }[] = [];
  for (const [i, item] of items.entries()) {
    const j = first[i]!;
    if (j === null || !failed(item, j)) out.push({ judged: j, besideOthers: [] });
    else out.push({ judged: await run(item), besideOthers: j.findings.length > 0 ? j.findings.map((f) => `${f.witness}: ${f.message}`) : ['the run did not reach its target'] });
  }
  return out;
}

export async function runSuite(options: SuiteOptions): Promise<SuiteReport> {
  const coverage = new CoverageRecorder();
  const record = ({ run }: Judged) => {
    coverage.record(run.trace);
    coverage.record(run.trace, run.observed);
  };
  const pairs = SCRIPTS.filter((s) => options.scripts.includes(s.name)).flatMap((script) => options.policies.map((policy) => ({ script, policy })));
  const runResults = await threeAtATimeThenAlone(
    pairs,
    ({ script, policy }) => {
      options.onProgress?.(`${script.name} / ${policy}`);
      return judged(script, policy);
    },
    (_, j) => j.findings.length > 0,
  );
  const runs: RunVerdict[] = pairs.map(({ script, policy }, i) => {
    const { judged: j, besideOthers } = runResults[i]!;
    record(j!);
    return { script: script.name, policy, findings: j!.findings, besideOthers };
  });
  let paths: PathVerdict[] | null = null;
  if (options.paths) {
    const generated = pathsAcross(options.policies);
    const reachedIn = (path: (typeof generated)[number], { run }: Judged) => {
      const own = new CoverageRecorder();
      own.record(run.trace);
      const chart = own.report().find((c) => c.kind === path.kind)!;
      return !(path.aim === 'state' ? chart.states.missing : chart.transitions.missing).includes(path.target);
    };
    const pathResults = await threeAtATimeThenAlone(
      generated,
      (path) => {
        if (path.script === null) return Promise.resolve(null);
        options.onProgress?.(path.script.name);
        return judged(path.script, path.policy);
      },
      // A state aimed at is a rest the runner's steps lead to: missing it is a miss. A transition is taken
      // where the runner's timing decides it (a third of them are not, run alone or not): not run again.
      (path, j) => j.findings.length > 0 || (path.aim === 'state' && !reachedIn(path, j)),
    );
    paths = generated.map((path, i): PathVerdict => {
      const { judged: j, besideOthers } = pathResults[i]!;
      const base = { kind: path.kind, target: path.target, aim: path.aim, policy: path.policy, events: path.events, undrivable: path.undrivable, besideOthers };
      if (j === null) return { ...base, reached: false, findings: [] };
      record(j);
      return { ...base, reached: reachedIn(path, j), findings: j.findings };
    });
  }
  let mutants: SuiteReport['mutants'] = null;
  if (options.mutants) {
    const verdicts: NonNullable<SuiteReport['mutants']>[number][] = [];
    for (const mutant of MUTANT_NAMES) {
      options.onProgress?.(`mutant ${mutant}`);
      const { description, case: c, caught, findings } = await runMutant(mutant);
      verdicts.push({ mutant, description, case: c, caught, findings });
    }
    mutants = verdicts;
  }
  const gunicorn: { worker: string; report: ConformReport }[] = [];
  if (options.gunicorn && GUNICORN) {
    for (const [worker, extra] of [['sync', ''], ['gthread', '--threads {threads}']] as const) {
      options.onProgress?.(`gunicorn ${worker}`);
      const bind = '127.0.0.1:18441';
      const command = `${GUNICORN} --chdir ${APPS} sleep_app:app -k ${worker} --bind ${bind} --workers {workers} ${extra} --keep-alive {keepalive} --graceful-timeout {graceful-timeout} --timeout {timeout} --max-requests {max-requests}`;
      gunicorn.push({ worker, report: await conform({ command, bind, scripts: options.scripts }) });
    }
  }
  const passed = runs.every((r) => r.findings.length === 0) && (paths === null || paths.every((p) => p.findings.length === 0)) && (mutants === null || mutants.every((m) => m.caught));
  const covered = coverage.report();
  return { runs, paths, coverage: covered, reach: reachOf(covered, paths ?? []), mutants, gunicorn, passed };
}

export function formatSuiteReport(report: SuiteReport): string {
  const out: string[] = ['quiesce serve, every script under every policy (judged by its trace, the wire, and its clients):', ''];
  const scripts = [...new Set(report.runs.map((r) => r.script))];
  const policies = [...new Set(report.runs.map((r) => r.policy))];
  const width = Math.max(...scripts.map((s) => s.length), 6);
  out.push(`${'script'.padEnd(width)}  ${policies.map((p) => p).join('  ')}`);
  for (const script of scripts) {
    const cells = policies.map((p) => {
      const run = report.runs.find((r) => r.script === script && r.policy === p);
      return (run === undefined ? '-' : run.findings.length === 0 ? 'ok' : 'FAIL').padEnd(p.length);
    });
    out.push(`${script.padEnd(width)}  ${cells.join('  ')}`);
  }
  for (const run of report.runs) for (const f of run.findings) out.push(`  FAIL ${run.script} / ${run.policy} (${f.witness}): ${f.message}`);
  for (const run of report.runs) for (const seen of run.besideOthers) out.push(`  (beside two other runs, then run again alone: ${run.script} / ${run.policy}: ${seen})`);
  if (report.paths) {
    const driven = report.paths.filter((p) => p.undrivable === null);
    out.push(
      '',
      `Paths generated from the connection and worker charts (xstate/graph shortest paths, one per state and per transition): ${driven.filter((p) => p.reached).length} of ${driven.length} driven from outside got there; ${report.paths.length - driven.length} cannot be driven:`,
    );
    for (const p of report.paths) {
      const verdict = p.undrivable !== null ? `not drivable: ${p.undrivable}` : p.reached ? 'reached' : 'NOT reached';
      out.push(`  ${p.target}: ${verdict}  (${p.policy}: ${p.events.join(' → ')})`);
      for (const f of p.findings) out.push(`    FAIL (${f.witness}): ${f.message}`);
      for (const seen of p.besideOthers) out.push(`    (beside two other runs, then run again alone: ${seen})`);
    }
  }
  out.push('', 'Coverage of the machines by these runs (states entered, on the way included; transitions taken, eventless ones included):', '', formatCoverage(report.coverage).trimEnd());
  out.push('', 'Transitions against what the runner can drive (out of reach: every path there passes an event no outside action brings about, reason in --json):', '', formatReach(report.reach).trimEnd());
  if (report.mutants) {
    const caught = report.mutants.filter((m) => m.caught).length;
    out.push('', `Mutation score: ${caught}/${report.mutants.length} (${Math.round((100 * caught) / Math.max(1, report.mutants.length))} %)`);
    for (const m of report.mutants) {
      const seen = m.findings.find((f) => f.witness === m.case.witness);
      out.push(`  ${m.caught ? 'caught' : 'MISSED'}  ${m.mutant}: a server that ${m.description} (${m.case.script}, ${m.case.policy}) — ${m.case.witness}: ${seen?.message ?? 'nothing seen'}`);
    }
  }
  for (const g of report.gunicorn) out.push('', `gunicorn 20.1 -k ${g.worker}, as a black box:`, '', formatConformReport(g.report).trimEnd());
  out.push('', report.passed ? 'The suite passed.' : 'The suite FAILED.');
  return out.join('\n') + '\n';
}
