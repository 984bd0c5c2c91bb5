/**
 * `quiesce prove`: run the theorems' searches, write each finding as a
 * trace the replay checker and the viz read, and report — a table for
 * people, one JSON object for machines. SPIN's cross-check (proofs/spin.ts)
 * adds its verdicts beside the explorer's.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatTrace, type Trace } from '../model/trace.ts';
import { timeline } from '../simulator/check.ts';
import { traceOf } from './explore.ts';
import { THEOREMS, runRow, type ProofBounds, type Row, type Theorem } from './theorems.ts';
import type { World } from './world.ts';

export interface ProveOptions {
  readonly bounds: ProofBounds;
  /** The theorems to check (numbers); all by default. */
  readonly theorems?: readonly number[];
  readonly symmetry?: boolean;
  /** Where findings are written as trace files; none written when absent. */
  readonly tracesDir?: string;
  readonly onProgress?: (label: string, depth: number, states: number) => void;
  /** After each row. */
  readonly onRow?: (row: Row, done: number, total: number) => void;
}

export interface WrittenFinding {
  readonly kind: string;
  readonly what: string;
  readonly property: string | null;
  /** Moves from the start: the length of the shortest run. */
  readonly moves: number;
  readonly events: number;
  /** The run ends in a state that only time leaves: it stays there for ever (a lasso). */
  readonly lasso: boolean;
  readonly trace: string | null;
  /** The command that replays the trace (and shows the same violation, for a property's). */
  readonly replay: string | null;
  readonly timeline: readonly string[];
}

export interface ReportRow extends Omit<Row, 'finding'> {
  readonly finding: WrittenFinding | null;
}

export interface TheoremReport {
  readonly number: number;
  readonly name: string;
  readonly statement: string;
  readonly holds: boolean;
  readonly rows: readonly ReportRow[];
}

export interface ProveReport {
  readonly holds: boolean;
  readonly bounds: ProofBounds;
  readonly symmetry: boolean;
  readonly theorems: readonly TheoremReport[];
  readonly statesTotal: number;
  readonly seconds: number;
}

/** The finding's run, replayed: its trace, and the event the finding is about (the violation's, else the last). */
export function findingTrace(row: Row): { trace: Trace; focus: number; world: World } | null {
  const f = row.finding;
  if (!f) return null;
  const { trace, world } = traceOf(f.config, f.path, { theorem: row.theorem, finding: f.kind });
  if (f.atRest && f.property) world.judgeEnd();
  const verdict = f.property ? world.verdicts.find((v) => v.property === f.property) : undefined;
  return { trace, focus: verdict?.index ?? trace.events.length - 1, world };
}

/** A shortest run is short: every event, one line each, the one the finding is about marked. Long ones are cut to the actors it names. */
function runLines(trace: Trace, focus: number): string[] {
  if (trace.events.length > 80) return timeline(trace, focus);
  return trace.events.map((e, i) => {
    const { t, actor, type, ...payload } = e;
    const rest = Object.entries(payload).map(([k, v]) => `${k}=${v}`).join(' ');
    return `${i === focus ? '▶' : ' '} ${String(t).padStart(4)} ms  ${actor.padEnd(10)} ${type}${rest ? ' ' + rest : ''}`;
  });
}

function written(row: Row, dir: string | undefined): WrittenFinding | null {
  const f = row.finding;
  const replayed = findingTrace(row);
  if (!f || !replayed) return null;
  let path: string | null = null;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    path = join(dir, `theorem-${row.theorem}-${row.policy}-${row.bounds.replace(/[^A-Za-z0-9]+/g, '_')}.jsonl`);
    writeFileSync(path, formatTrace(replayed.trace));
  }
  const replay = path === null ? null : `quiesce replay ${path}${f.property ? ` --property ${f.property}` : ''}`;
  return {
    kind: f.kind,
    what: f.what,
    property: f.property,
    moves: f.path.length,
    events: replayed.trace.events.length,
    lasso: f.atRest,
    trace: path,
    replay,
    timeline: runLines(replayed.trace, replayed.focus),
  };
}

export function prove(options: ProveOptions): ProveReport {
  const started = performance.now();
  const chosen: Theorem[] = THEOREMS.filter((t) => !options.theorems || options.theorems.includes(t.number));
  const specs = chosen.map((t) => ({ theorem: t, rows: t.rows(options.bounds) }));
  const total = specs.reduce((n, s) => n + s.rows.length, 0);
  let done = 0;
  const theorems: TheoremReport[] = specs.map(({ theorem, rows }) => {
    const reported = rows.map((spec) => {
      const row = runRow(spec, {
        maxStates: options.bounds.maxStates,
        ...(options.symmetry === undefined ? {} : { symmetry: options.symmetry }),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      });
      options.onRow?.(row, ++done, total);
      return { ...row, finding: written(row, options.tracesDir) };
    });
    return { number: theorem.number, name: theorem.name, statement: theorem.statement, holds: reported.every((r) => r.ok), rows: reported };
  });
  return {
    holds: theorems.every((t) => t.holds),
    bounds: options.bounds,
    symmetry: options.symmetry ?? true,
    theorems,
    statesTotal: theorems.reduce((n, t) => n + t.rows.reduce((m, r) => m + r.states, 0), 0),
    seconds: (performance.now() - started) / 1000,
  };
}

const VERDICT_WORDS: Record<Row['verdict'], string> = {
  proved: 'proved',
  found: 'found',
  'not-found': 'NOT FOUND',
  refuted: 'REFUTED',
  'cut-short': 'CUT SHORT',
};

/** The report as text: a table per theorem, then each finding as a short timeline. */
export function formatReport(report: ProveReport): string {
  const out: string[] = [];
  for (const t of report.theorems) {
    out.push(`Theorem ${t.number} (${t.name}): ${t.holds ? 'holds' : 'DOES NOT HOLD'}`);
    out.push(`  ${t.statement}`);
    const header = ['policy', 'bounds', 'verdict', 'states', 'transitions', 'depth', 'seconds', 'finding'];
    const cells = t.rows.map((r) => [
      r.policy,
      r.bounds,
      VERDICT_WORDS[r.verdict] + (r.ok ? '' : ' ✗'),
      String(r.states),
      String(r.transitions),
      String(r.depth),
      r.seconds.toFixed(1),
      r.finding ? `${r.finding.kind} in ${r.finding.moves} moves${r.finding.lasso ? ' (lasso)' : ''}` : '',
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const line = (c: readonly string[]) => '  ' + c.map((x, i) => (i >= 3 && i <= 6 ? x.padStart(widths[i]!) : x.padEnd(widths[i]!))).join('  ').trimEnd();
    out.push(line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line), '');
  }
  for (const t of report.theorems) {
    for (const r of t.rows) {
      if (!r.finding) continue;
      out.push(`Theorem ${t.number}, ${r.policy} (${r.bounds}): ${r.finding.what}${r.finding.lasso ? ' — and stays so for ever: only time passes (a lasso)' : ''}`);
      if (r.note) out.push(`  ${r.note}`);
      out.push(...r.finding.timeline.map((l) => `  ${l}`));
      if (r.finding.replay) out.push(`  replay: ${r.finding.replay}`);
      out.push('');
    }
  }
  out.push(
    `${report.holds ? 'Every theorem holds' : 'SOME THEOREM DOES NOT HOLD'} within the bounds: ${report.statesTotal} states explored in ${report.seconds.toFixed(1)} s` +
      (report.symmetry ? ' (symmetry reduction on)' : ' (no symmetry reduction)'),
  );
  return out.join('\n') + '\n';
}
