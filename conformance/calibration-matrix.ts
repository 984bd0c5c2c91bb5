/**
 * The calibration matrix (issue 14): `quiesce calibrate` over the rows a
 * performance engineer would check — gunicorn 20.1 sync and gthread, 1, 2
 * and 4 workers, max-requests jitter 0 and 64, keep-alive 0 — and
 * `quiesce serve` beside them, each row 5 real runs (9 for a signal row)
 * against 27 seeds, printed as one Markdown table with the medians'
 * distance and its bootstrap interval (`npm run calibrate:matrix`;
 * simulator/README.md shows the result) — and the signal rows: three HUPs, 1 s apart, and a
 * TERM, under load with no recycling — and the backlog seed's rows: the
 * server on a unix socket behind a real nginx, a burst faster than its one
 * sync worker (`backlog-calibration.ts`).
 */
import { Command, CommanderError } from 'commander';
import { match } from 'ts-pattern';
import type { ServerParams } from '../model/params.ts';
import { getProfile, type Profile } from '../simulator/profiles.ts';
import { measureProfile } from './measure-profile.ts';
import { calibrate, SEED_CALIBRATION, type CalibrationLoad, type CalibrationReport, type CalibrationSignal, type RunFigures, comparedLosses, formatOffBy, formatOffByRange, offBy, OFF_BY_BOOTSTRAP, ownRunCheck, withinTolerance, type OwnRunCheck } from './calibrate.ts';
import { APPS_DIR, QUIESCE_BIN, tempDir } from './process.ts';
import { calibrateBacklog, type BacklogCalibrationReport, type BacklogLoad, type BacklogRunFigures } from './backlog-calibration.ts';

interface Row {
  readonly name: string;
  readonly command: string;
  readonly profile: string;
  readonly policy: string;
  readonly server: Partial<ServerParams>;
  readonly load?: Partial<CalibrationLoad>;
  readonly signals?: readonly CalibrationSignal[];
  /** Compare the lost exchanges less the connects refused, told apart by a capture (the TERM rows: ab -r burns the rest of its run on the closed port). */
  readonly withoutRefused?: boolean;
}

/**
 * The signal rows: the seed's reload and stop scenarios (simulator/scenarios.ts `reload-under-load`,
 * `term-under-load`) with no recycling, so that what is lost is the signals' doing. The run is long
 * enough that ab is still running at the last signal on both sides (60,000 requests: about 3 s real).
 */
const SIGNAL_LOAD: Partial<CalibrationLoad> = { requests: 60_000 };
const THREE_HUPS: readonly CalibrationSignal[] = [500, 1500, 2500].map((atMs) => ({ atMs, signal: 'HUP' as const }));
const TERM_AT_1S: readonly CalibrationSignal[] = [{ atMs: 1000, signal: 'TERM' }];

const GUNICORN = (worker: string) =>
  `gunicorn -k ${worker} --bind {bind} --workers {workers} --threads {threads} --keep-alive {keepalive} --max-requests {max-requests} --max-requests-jitter {max-requests-jitter} --log-level warning --pythonpath ${APPS_DIR} hello_app:app`;
const QUIESCE = `${process.execPath} ${QUIESCE_BIN} serve --app hello --policy gunicorn-gthread --bind {bind} --workers {workers} --threads {threads} --keepalive {keepalive} --max-requests {max-requests} --max-requests-jitter {max-requests-jitter}`;

const SEED: Partial<ServerParams> = SEED_CALIBRATION.server;
/**
 * Twenty-seven: a seed costs a second or less, a real run several, so the simulated side's median is
 * made the steadier of the two — nine seeds' median of our server's TERM row moved 25–29 between the
 * four sets of nine in thirty-six seeds (2026-12-06).
 */
const SEEDS = Array.from({ length: 27 }, (_, i) => i + 1);
/** The issue's tolerance on a row's lost exchanges (issue 14), for every table the matrix prints. */
const TOLERANCE = 0.25;
const TOLERANCE_HEADER = `±${TOLERANCE * 100} %`;
/**
 * Five, not the issue's least of three: a real row moves by itself about as much as the tolerance
 * (gunicorn gthread at 1 worker, 26 runs in a day: 116–206 lost, the median of three 129–204 between
 * sets an hour apart; our server's TERM row 17–23 in one matrix, 29–36 in the next), so a median of three judged the sample as
 * much as the model. Five real runs cost the matrix about six minutes more.
 */
const REAL_RUNS = 5;
/**
 * Nine for the signal rows: one run of a stop or a reload spreads twice as wide as a recycling row's
 * (our server's TERM row, twenty calibrate runs in an hour on 2026-12-06: 17–36 lost, the median of
 * five 21–28 between sets; gthread's TERM 3–21 within one row, its HUPs 18–44), so that the median of
 * five alone moved the verdict by ±15 %. A signal row's real run takes seconds: nine cost the matrix
 * about three minutes more.
 */
const SIGNAL_REAL_RUNS = 9;

/** A row's real runs: nine where it sends signals, five otherwise. */
export function realRunsOf(row: { readonly signals?: readonly unknown[] }): number {
  return (row.signals?.length ?? 0) > 0 ? SIGNAL_REAL_RUNS : REAL_RUNS;
}

export const MATRIX: readonly Row[] = [
  ...(['gthread', 'sync'] as const).flatMap((worker) => {
    const profile = `gunicorn-20.1-${worker}`;
    const policy = `gunicorn-${worker}`;
    const threads = worker === 'sync' ? 1 : 20;
    return [
      { name: `gunicorn ${worker}, 4 workers`, command: GUNICORN(worker), profile, policy, server: { ...SEED, threads } },
      { name: `gunicorn ${worker}, 2 workers`, command: GUNICORN(worker), profile, policy, server: { ...SEED, threads, workers: 2 } },
      { name: `gunicorn ${worker}, 1 worker`, command: GUNICORN(worker), profile, policy, server: { ...SEED, threads, workers: 1 } },
      { name: `gunicorn ${worker}, jitter 64`, command: GUNICORN(worker), profile, policy, server: { ...SEED, threads, maxRequestsJitter: 64 } },
      { name: `gunicorn ${worker}, keep-alive 0`, command: GUNICORN(worker), profile, policy, server: { ...SEED, threads, keepAliveMs: 0 } },
      { name: `gunicorn ${worker}, 3 HUPs, no recycling`, command: GUNICORN(worker), profile, policy, server: { ...SEED, threads, maxRequests: 0 }, load: SIGNAL_LOAD, signals: THREE_HUPS },
      { name: `gunicorn ${worker}, TERM, no recycling (less refused)`, command: GUNICORN(worker), profile, policy, server: { ...SEED, threads, maxRequests: 0 }, load: SIGNAL_LOAD, signals: TERM_AT_1S, withoutRefused: true },
    ];
  }),
  { name: 'quiesce serve (gunicorn-gthread), 4 workers', command: QUIESCE, profile: 'quiesce-serve', policy: 'gunicorn-gthread', server: SEED },
  { name: 'quiesce serve (gunicorn-gthread), jitter 64', command: QUIESCE, profile: 'quiesce-serve', policy: 'gunicorn-gthread', server: { ...SEED, maxRequestsJitter: 64 } },
  { name: 'quiesce serve (gunicorn-gthread), keep-alive 0', command: QUIESCE, profile: 'quiesce-serve', policy: 'gunicorn-gthread', server: { ...SEED, keepAliveMs: 0 } },
  { name: 'quiesce serve (gunicorn-gthread), 3 HUPs, no recycling', command: QUIESCE, profile: 'quiesce-serve', policy: 'gunicorn-gthread', server: { ...SEED, maxRequests: 0 }, load: SIGNAL_LOAD, signals: THREE_HUPS },
  { name: 'quiesce serve (gunicorn-gthread), TERM, no recycling (less refused)', command: QUIESCE, profile: 'quiesce-serve', policy: 'gunicorn-gthread', server: { ...SEED, maxRequests: 0 }, load: SIGNAL_LOAD, signals: TERM_AT_1S, withoutRefused: true },
];

/** A backlog row: the upstream behind nginx over a unix socket, one sync worker, listen(2) backlog `backlog`, an open-loop burst. */
interface BacklogRow {
  readonly name: string;
  /** Takes {bind} (unix:<socket>), {workers} and {backlog}. */
  readonly command: string;
  readonly policy: string;
  readonly backlog: number;
  readonly load: BacklogLoad;
}

/**
 * The seed's burst, scaled to a few seconds a run: 60 requests in 100 ms, each sleeping 150 ms, so the
 * whole burst arrives while the worker serves its first request — past the queue, every connect() fails
 * with EAGAIN. With backlog 16 the arithmetic is 60 − 17 − 1 = 42 immediate 502s; with 64, none.
 */
const BURST: BacklogLoad = { requests: 60, spreadMs: 100, serviceMs: 150 };
const GUNICORN_SYNC_UPSTREAM = `gunicorn -k sync --bind {bind} --workers {workers} --backlog {backlog} --log-level warning --pythonpath ${APPS_DIR} sleep_app:app`;
// --timeout 0: the sleep app blocks the worker's event loop, as a sync worker's app does; no heartbeat comes while it sleeps.
const QUIESCE_SYNC_UPSTREAM = `${process.execPath} ${QUIESCE_BIN} serve --app sleep --policy gunicorn-sync --bind {bind} --workers {workers} --backlog {backlog} --timeout 0`;

export const BACKLOG_MATRIX: readonly BacklogRow[] = [
  { name: 'nginx → gunicorn sync, unix socket, backlog 16', command: GUNICORN_SYNC_UPSTREAM, policy: 'gunicorn-sync', backlog: 16, load: BURST },
  { name: 'nginx → gunicorn sync, unix socket, backlog 64', command: GUNICORN_SYNC_UPSTREAM, policy: 'gunicorn-sync', backlog: 64, load: BURST },
  { name: 'nginx → quiesce serve (gunicorn-sync), unix socket, backlog 16', command: QUIESCE_SYNC_UPSTREAM, policy: 'gunicorn-sync', backlog: 16, load: BURST },
];

/**
 * The profiles the rows use: measured on this machine first (`measure-profile.ts`, the same code as
 * `npm run profile:measure`), since a machine's speed changes from one day to the next by more than the
 * tolerance (simulator/README.md), and at each row's worker count, since a profile holds for the load it
 * was measured under; `shipped`: the files in simulator/profiles/ instead (measured at 4 workers).
 */
const workersOf = (row: Row) => row.server.workers ?? SEED_CALIBRATION.server.workers;
const profileKey = (row: Row) => `${row.profile} at ${workersOf(row)} worker${workersOf(row) === 1 ? '' : 's'}`;

async function rowProfiles(rows: readonly Row[], port: number, shipped: boolean, log: (line: string) => void): Promise<Map<string, Profile>> {
  const profiles = new Map<string, Profile>();
  for (const row of rows) {
    const key = profileKey(row);
    if (profiles.has(key)) continue;
    profiles.set(key, shipped ? getProfile(row.profile) : await measureProfile(row.profile, port, log, { workers: workersOf(row) }));
  }
  return profiles;
}

type MatrixResult = { readonly kind: 'ab'; readonly row: Row; readonly report: CalibrationReport } | { readonly kind: 'backlog'; readonly row: BacklogRow; readonly report: BacklogCalibrationReport };

/** The rows whose name contains `filter` (case-insensitive), all of them without one. */
export function selectRows<R extends { readonly name: string }>(rows: readonly R[], filter: string | undefined): R[] {
  return filter === undefined ? [...rows] : rows.filter((row) => row.name.toLowerCase().includes(filter.toLowerCase()));
}

/** A profile the rows used, against the run it was measured from (`ownRunCheck`); null: it keeps no such run. */
export interface OwnRunRow {
  readonly profile: string;
  readonly check: OwnRunCheck | null;
}

/**
 * Seeds for the profiles' own runs: a run of 40,000 requests is four of a row's, so a seed's losses
 * spread half as wide, and nine seeds cost what a row's 27 do.
 */
const OWN_RUN_SEEDS = SEEDS.slice(0, 9);

export async function runMatrix(port: number, log: (line: string) => void, options: { shippedProfiles?: boolean; rows?: string } = {}): Promise<{ readonly results: MatrixResult[]; readonly ownRuns: OwnRunRow[] }> {
  const cwd = tempDir('quiesce-matrix-');
  const rows = selectRows(MATRIX, options.rows);
  const profiles = await rowProfiles(rows, port, options.shippedProfiles === true, log);
  // Before the rows: the model against the runs its numbers came from, apart from the rows' later runs.
  const ownRuns = [...profiles].map(([key, profile]): OwnRunRow => {
    log(`${key}: against its own measuring run`);
    return { profile: key, check: ownRunCheck(profile, OWN_RUN_SEEDS) };
  });
  const results: MatrixResult[] = [];
  for (const row of rows) {
    log(row.name);
    const report = await calibrate({
      command: row.command,
      bind: `127.0.0.1:${port}`,
      cwd,
      profile: profiles.get(profileKey(row))!,
      policy: row.policy,
      server: { ...SEED_CALIBRATION.server, ...row.server },
      load: { ...SEED_CALIBRATION.load, ...row.load },
      signals: row.signals ?? [],
      capture: row.withoutRefused === true,
      withoutRefused: row.withoutRefused === true,
      runs: realRunsOf(row),
      // A recycling gthread row's simulated losses spread as wide between seeds as the real runs do
      // (55–144 over ten seeds at 4 workers): three seeds' median moved by a quarter from one set to the next.
      seeds: SEEDS,
      tolerance: TOLERANCE,
      // Only what changes the sample: a run ab ended by itself, and run again.
      onAbortedRun: (line) => log(`  ${line}`),
    });
    results.push({ kind: 'ab', row, report });
  }
  for (const row of selectRows(BACKLOG_MATRIX, options.rows)) {
    log(row.name);
    const report = await calibrateBacklog({ command: row.command, policy: row.policy, backlog: row.backlog, load: row.load, runs: REAL_RUNS, seeds: SEEDS, tolerance: TOLERANCE });
    results.push({ kind: 'backlog', row, report });
  }
  return { results, ownRuns };
}

/** Each profile against its own measuring run: what the run lost, what the simulator loses given its numbers. */
export function ownRunTable(ownRuns: readonly OwnRunRow[]): string {
  const lines = [
    `| profile | its run lost | simulated (${OWN_RUN_SEEDS.length} seeds) | off by | ${TOLERANCE_HEADER} |`,
    '| --- | --- | --- | --- | --- |',
    ...ownRuns.map(({ profile, check }) =>
      check === null
        ? `| ${profile} | not kept | | | |`
        : `| ${profile} (${check.policy}) | ${check.real} of ${check.requests} | ${span(check.simulated)} | ${offByCell(check.real, check.simulatedMedian, null)} | ${withinTolerance(check.real, check.simulatedMedian, TOLERANCE) ? 'yes' : 'no'} |`,
    ),
  ];
  return lines.join('\n') + '\n';
}

const span = (xs: readonly number[]) => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? `${lo}` : `${lo}–${hi}`;
};

/** The medians' distance, and its bootstrap interval where it has one; a real 0 gives the simulated count itself. */
const offByCell = (real: number, simulated: number, interval: { readonly low: number; readonly high: number } | null) => {
  if (real === 0) return simulated === 0 ? '0' : `+${simulated}`;
  const point = formatOffBy(offBy(real, simulated));
  return interval === null ? point : `${point} (${formatOffByRange(interval)})`;
};

function calibrationLine(row: Row, r: CalibrationReport): string {
  const compared = (x: RunFigures) => comparedLosses(r.compared, x);
  const held = (xs: readonly number[]) => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1);
  return `| ${row.name} | ${span(r.real.map(compared))} | ${span(r.simulated.map((s) => compared(s.figures)))} | ${offByCell(r.lostRealMedian, r.lostSimulatedMedian, r.offByInterval)} | ${r.withinTolerance ? 'yes' : 'no'} | ${held(r.real.map((x) => x.heldPerRecycle))} / ${held(r.simulated.map((s) => s.figures.heldPerRecycle))} | ${r.mechanismShareGap.toFixed(2)} |`;
}

/** A backlog row: the lost are the 502s; the mechanism, a full queue (a 502 before one service time: it never waited). Nothing recycles. */
function backlogLine(row: BacklogRow, r: BacklogCalibrationReport): string {
  const immediateShare = (runs: readonly BacklogRunFigures[]) => {
    const all = runs.reduce((n, x) => n + x.badGateway, 0);
    return all === 0 ? 1 : runs.reduce((n, x) => n + x.immediate, 0) / all;
  };
  const gap = Math.abs(immediateShare(r.real) - immediateShare(r.simulated.map((s) => s.figures)));
  return `| ${row.name} (arithmetic: ${r.arithmetic} 502s) | ${span(r.real.map((x) => x.badGateway))} | ${span(r.simulated.map((s) => s.figures.badGateway))} | ${offByCell(r.lostRealMedian, r.lostSimulatedMedian, r.offByInterval)} | ${r.withinTolerance ? 'yes' : 'no'} | — | ${gap.toFixed(2)} |`;
}

export function matrixTable(results: readonly MatrixResult[]): string {
  const lines = [
    `| row | lost, real (${REAL_RUNS} runs, signal rows ${SIGNAL_REAL_RUNS}) | lost, simulated (${SEEDS.length} seeds) | off by (${Math.round(OFF_BY_BOOTSTRAP.level * 100)} % interval) | ${TOLERANCE_HEADER} | held at recycle, real / sim | mechanism shares differ by |`,
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const result of results) {
    lines.push(
      match(result)
        .with({ kind: 'ab' }, ({ row, report }) => calibrationLine(row, report))
        .with({ kind: 'backlog' }, ({ row, report }) => backlogLine(row, report))
        .exhaustive(),
    );
  }
  const aborted = results.flatMap((r) => (r.kind === 'ab' && r.report.abortedRuns > 0 ? [`${r.row.name} (${r.report.abortedRuns})`] : []));
  if (aborted.length > 0) lines.push('', `Real runs ab ended by itself ("Test aborted after 10 failures"), each run again: ${aborted.join(', ')}.`);
  return lines.join('\n') + '\n';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const program = new Command('calibrate:matrix')
    .description(`every row: quiesce calibrate, ${REAL_RUNS} real runs (${SIGNAL_REAL_RUNS} for the signal rows) beside ${SEEDS.length} seeds, with profiles measured on this machine first`)
    .option('--port <n>', 'the loopback port the servers bind', '18536')
    .option('--shipped-profiles', "use simulator/profiles/ as shipped instead of measuring this machine's")
    .option('--rows <text>', 'only the rows whose name contains this (case-insensitive), and only their profiles: "quiesce serve", "TERM"')
    .exitOverride();
  let port: number | null = null;
  try {
    program.parse(process.argv.slice(2), { from: 'user' });
    const value = program.opts<{ port: string }>().port;
    port = /^\d{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65535 ? Number(value) : null;
    if (port === null) process.stderr.write(`calibrate:matrix: --port: expected a port from 1 to 65535, got "${value}"\n`);
    const filter = program.opts<{ rows?: string }>().rows;
    if (port !== null && filter !== undefined && selectRows(MATRIX, filter).length + selectRows(BACKLOG_MATRIX, filter).length === 0) {
      process.stderr.write(`calibrate:matrix: --rows: no row's name contains "${filter}" (rows: ${[...MATRIX, ...BACKLOG_MATRIX].map((row) => `"${row.name}"`).join(', ')})\n`);
      port = null;
    }
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    if (error.exitCode === 0) port = -1;
  }
  if (port === -1) process.exitCode = 0;
  else if (port === null) process.exitCode = 2;
  else {
    const { shippedProfiles, rows } = program.opts<{ shippedProfiles?: boolean; rows?: string }>();
    const { results, ownRuns } = await runMatrix(port, (line) => process.stderr.write(`${line}…\n`), { shippedProfiles: shippedProfiles === true, rows });
    process.stdout.write(`Profiles: ${shippedProfiles === true ? 'as shipped (simulator/profiles/)' : `measured on this machine first, ${new Date().toISOString().slice(0, 10)}`}\n\n`);
    process.stdout.write(matrixTable(results));
    process.stdout.write(`\nEach profile against the run it was measured from (its requests in each row; the model apart from the rows' later runs):\n\n`);
    process.stdout.write(ownRunTable(ownRuns));
  }
}
