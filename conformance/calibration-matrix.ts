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
import { Command, CommanderError } from 'commander';
import type { ServerParams } from '../model/params.ts';
import { getProfile, type Profile } from '../simulator/profiles.ts';
import { measureProfile } from './measure-profile.ts';
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

/**
 * The profiles the rows use: measured on this machine first (`measure-profile.ts`, the same code as
 * `npm run profile:measure`), since a machine's speed changes from one day to the next by more than the
 * tolerance (simulator/README.md); `shipped`: the files in simulator/profiles/ instead.
 */
async function rowProfiles(port: number, shipped: boolean, log: (line: string) => void): Promise<Map<string, Profile>> {
  const profiles = new Map<string, Profile>();
  for (const name of new Set(MATRIX.map((row) => row.profile))) {
    profiles.set(name, shipped ? getProfile(name) : await measureProfile(name, port, log));
  }
  return profiles;
}

export async function runMatrix(port: number, log: (line: string) => void, options: { shippedProfiles?: boolean } = {}): Promise<{ row: Row; report: CalibrationReport }[]> {
  const cwd = tempDir('quiesce-matrix-');
  const profiles = await rowProfiles(port, options.shippedProfiles === true, log);
  const results: { row: Row; report: CalibrationReport }[] = [];
  for (const row of MATRIX) {
    log(row.name);
    const report = await calibrate({
      command: row.command,
      bind: `127.0.0.1:${port}`,
      cwd,
      profile: profiles.get(row.profile)!,
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
  const program = new Command('calibrate:matrix')
    .description('every row: quiesce calibrate, 3 real runs beside 3 seeds, with profiles measured on this machine first')
    .option('--port <n>', 'the loopback port the servers bind', '18536')
    .option('--shipped-profiles', "use simulator/profiles/ as shipped instead of measuring this machine's")
    .exitOverride();
  let port: number | null = null;
  try {
    program.parse(process.argv.slice(2), { from: 'user' });
    const value = program.opts<{ port: string }>().port;
    port = /^\d{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65535 ? Number(value) : null;
    if (port === null) process.stderr.write(`calibrate:matrix: --port: expected a port from 1 to 65535, got "${value}"\n`);
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    if (error.exitCode === 0) port = -1;
  }
  if (port === -1) process.exitCode = 0;
  else if (port === null) process.exitCode = 2;
  else {
    const shippedProfiles = program.opts<{ shippedProfiles?: boolean }>().shippedProfiles === true;
    const results = await runMatrix(port, (line) => process.stderr.write(`${line}…\n`), { shippedProfiles });
    process.stdout.write(`Profiles: ${shippedProfiles ? 'as shipped (simulator/profiles/)' : `measured on this machine first, ${new Date().toISOString().slice(0, 10)}`}\n\n`);
    process.stdout.write(matrixTable(results));
  }
}
