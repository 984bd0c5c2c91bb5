/**
 * The calibration matrix (issue 14): `quiesce calibrate` over the rows a
 * performance engineer would check — gunicorn 20.1 sync and gthread, 1, 2
 * and 4 workers, max-requests jitter 0 and 64, keep-alive 0 — and
 * `quiesce serve` beside them, each row 3 real runs against 3 seeds, printed
 * as one Markdown table (`npm run calibrate:matrix`; simulator/README.md
 * shows the result) — and the signal rows: three HUPs, 1 s apart, and a
 * TERM, under load with no recycling. The nginx backlog case is not driven
 * by `calibrate` yet.
 */
import type { ServerParams } from '../model/params.ts';
import { getProfile } from '../simulator/profiles.ts';
import { calibrate, SEED_CALIBRATION, type CalibrationLoad, type CalibrationReport, type CalibrationSignal, type RunFigures, comparedLosses } from './calibrate.ts';
import { APPS_DIR, QUIESCE_BIN, tempDir } from './process.ts';

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

export async function runMatrix(port: number, log: (line: string) => void): Promise<{ row: Row; report: CalibrationReport }[]> {
  const cwd = tempDir('quiesce-matrix-');
  const results: { row: Row; report: CalibrationReport }[] = [];
  for (const row of MATRIX) {
    log(row.name);
    const report = await calibrate({
      command: row.command,
      bind: `127.0.0.1:${port}`,
      cwd,
      profile: getProfile(row.profile),
      policy: row.policy,
      server: { ...SEED_CALIBRATION.server, ...row.server },
      load: { ...SEED_CALIBRATION.load, ...row.load },
      signals: row.signals ?? [],
      capture: row.withoutRefused === true,
      withoutRefused: row.withoutRefused === true,
      runs: 3,
      seeds: [1, 2, 3],
      tolerance: 0.25,
    });
    results.push({ row, report });
  }
  return results;
}

const span = (xs: readonly number[]) => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? `${lo}` : `${lo}–${hi}`;
};

export function matrixTable(results: readonly { row: Row; report: CalibrationReport }[]): string {
  const lines = [
    '| row | lost, real (3 runs) | lost, simulated (3 seeds) | off by | ±25 % | held at recycle, real / sim | mechanism shares differ by |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const { row, report: r } of results) {
    const compared = (x: RunFigures) => comparedLosses(r.compared, x);
    const off = r.lostRealMedian === 0 ? (r.lostSimulatedMedian === 0 ? '0' : `+${r.lostSimulatedMedian}`) : `${Math.round(((r.lostSimulatedMedian - r.lostRealMedian) / r.lostRealMedian) * 100)} %`;
    const held = (xs: readonly number[]) => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1);
    lines.push(
      `| ${row.name} | ${span(r.real.map(compared))} | ${span(r.simulated.map((s) => compared(s.figures)))} | ${off} | ${r.withinTolerance ? 'yes' : 'no'} | ${held(r.real.map((x) => x.heldPerRecycle))} / ${held(r.simulated.map((s) => s.figures.heldPerRecycle))} | ${r.mechanismShareGap.toFixed(2)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [flag, value, ...rest] = process.argv.slice(2);
  const port = flag === undefined ? 18536 : flag === '--port' && value !== undefined && /^\d{1,5}$/.test(value) && rest.length === 0 ? Number(value) : null;
  if (port === null || port < 1 || port > 65535) {
    process.stderr.write('calibrate:matrix: expected no arguments or --port <1..65535>\n');
    process.exitCode = 2;
  } else {
    const results = await runMatrix(port, (line) => process.stderr.write(`${line}…\n`));
    process.stdout.write(matrixTable(results));
  }
}
