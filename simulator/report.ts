/** Turning run results into what people read: the table, the ab-style report, the JSON object. */
import { MECHANISM_DESCRIPTIONS, type ClientStats, type FailureMechanism } from './clients.ts';
import type { RunResult } from './run.ts';
import type { ServingGapSummary } from './serving.ts';

export function mainMechanism(stats: ClientStats): FailureMechanism | undefined {
  let best: FailureMechanism | undefined;
  for (const [m, v] of Object.entries(stats.byMechanism) as [FailureMechanism, { count: number }][]) {
    if (!best || v.count > stats.byMechanism[best]!.count) best = m;
  }
  return best;
}

const round = (x: number) => Math.round(x * 10) / 10;

export function toJson(result: RunResult): object {
  const s = result.stats;
  const l = s.latency;
  return {
    scenario: result.scenario,
    policy: result.policy,
    seed: result.seed,
    params: result.params,
    requests: {
      total: s.total,
      ok: s.ok,
      failed: s.failed,
      ab: s.ab,
      aborted: s.aborted,
      byCause: Object.fromEntries(Object.entries(s.byMechanism).map(([m, v]) => [m, v.count])),
      ...(Object.keys(s.statuses).length > 0 ? { statuses: s.statuses } : {}),
    },
    latencyMs: { p50: round(l.percentileMs(50)), p95: round(l.percentileMs(95)), p99: round(l.percentileMs(99)), max: round(l.maxMs) },
    noWorkerServing: gapsJson(result.servingGaps),
  };
}

/** The spans with no worker serving, as `--json` prints them (ms, rounded to 0.1). */
export interface NoWorkerServingJson {
  readonly spans: number;
  readonly totalMs: number;
  readonly longestMs?: number;
  readonly longestFromMs?: number;
}

function gapsJson(g: ServingGapSummary): NoWorkerServingJson {
  return {
    spans: g.count,
    totalMs: round(g.totalMs),
    ...(g.longest ? { longestMs: round(g.longest.endMs - g.longest.startMs), longestFromMs: round(g.longest.startMs) } : {}),
  };
}

/** How long nothing served while the arbiter ran (a reload's or a recycle's accept gap): the report's line, and the viz's. */
export function noWorkerServingText(g: NoWorkerServingJson): string {
  if (g.spans === 0 || g.longestMs === undefined || g.longestFromMs === undefined) return 'none';
  const spans = g.spans === 1 ? '1 span' : `${g.spans} spans`;
  return `${spans}, ${g.totalMs} ms in all; the longest ${g.longestMs} ms, from ${(g.longestFromMs / 1000).toFixed(3)} s`;
}

export function abReport(result: RunResult): string {
  const s = result.stats;
  const l = s.latency;
  const lines = [
    `Scenario:               ${result.scenario}`,
    `Policy:                 ${result.policy}`,
    `Seed:                   ${result.seed}`,
    `Time taken for tests:   ${(result.virtualMs / 1000).toFixed(3)} seconds (virtual)`,
    ...(s.aborted ? [`ab stopped early:       ${s.aborted}`, `Total of ${s.ok} requests completed`] : []),
    `Complete requests:      ${s.total}`,
    `Failed requests:        ${s.ab.failed}`,
    `   (Connect: ${s.ab.connect}, Receive: ${s.ab.receive}, Length: ${s.ab.length}, Exceptions: ${s.ab.exceptions})`,
  ];
  if (Object.keys(s.statuses).length > 0) {
    lines.push(`Status codes:           ${Object.entries(s.statuses).map(([k, v]) => `${k}:${v}`).join('  ')}`);
  }
  lines.push(
    `Latency (ms):           p50 ${round(l.percentileMs(50))}  p95 ${round(l.percentileMs(95))}  p99 ${round(l.percentileMs(99))}  max ${round(l.maxMs)}`,
    `No worker serving:      ${noWorkerServingText(gapsJson(result.servingGaps))}`,
    '',
    'Failures by mechanism:',
  );
  const entries = Object.entries(s.byMechanism) as [FailureMechanism, { count: number; firstMs: number; lastMs: number; processed: number }][];
  if (entries.length === 0) lines.push('  none');
  for (const [m, v] of entries.sort((a, b) => b[1].count - a[1].count)) {
    lines.push(`  ${String(v.count).padStart(6)}  ${m.padEnd(32)} ${(v.firstMs / 1000).toFixed(3)}–${(v.lastMs / 1000).toFixed(3)} s${v.processed ? `  (${v.processed} processed by the server!)` : ''}`);
    lines.push(`          ${MECHANISM_DESCRIPTIONS[m]}`);
  }
  return lines.join('\n') + '\n';
}

const SHORT: Record<FailureMechanism, string> = {
  'idle-close-race': 'race',
  'close-after-keepalive-response': 'ka-close',
  'unread-request-reset': 'rst',
  'queued-at-close': 'queued',
  'backlog-overflow': 'eagain',
  'syn-timeout': 'syn',
  'listener-refused': 'refused',
  'graceful-timeout-kill': 'kill',
  'fast-stop': 'quit',
  'stale-hang': 'stale',
  'client-timeout': 'slow',
  'accept-starved': 'starved',
};

/** One cell of the seed table: what the client reports failed, the exchanges lost when different, the main mechanism. */
export function tableCell(r: RunResult): string {
  const m = mainMechanism(r.stats);
  // What the client itself reports (ab's "Failed requests"), and the exchanges lost when that differs.
  const reported = r.stats.ab.failed;
  const count = reported === r.stats.failed ? `${reported}` : `${reported} (${r.stats.failed})`;
  const text = r.stats.failed === 0 && reported === 0 ? '0' : `${count} ${m ? SHORT[m] : ''}`.trim();
  return r.stats.aborted ? `${text}*` : text;
}

export function table(results: readonly RunResult[], scenarios: readonly string[], policies: readonly string[]): string {
  const cell = (r: RunResult | undefined) => (r ? tableCell(r) : '');
  const rows = scenarios.map((sc) => [sc, ...policies.map((p) => cell(results.find((r) => r.scenario === sc && r.policy === p)))]);
  const header = ['scenario \\ policy', ...policies];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const lines = [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)];
  lines.push(
    '',
    'Cells: failed requests as the client reports them — ab\'s "Failed requests", which counts one lost exchange up to three times',
    '(Receive, Length, Exceptions); in parentheses the exchanges lost, when different — and the main mechanism;',
    '* = the client stopped early (ab: >10 failed connects, or no activity for -s seconds).',
  );
  for (const [m, short] of Object.entries(SHORT)) lines.push(`  ${short.padEnd(8)} ${MECHANISM_DESCRIPTIONS[m as FailureMechanism]}`);
  return lines.join('\n') + '\n';
}
