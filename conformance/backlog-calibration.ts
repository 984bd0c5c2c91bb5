/**
 * The backlog seed as a calibration (issue 14's matrix row "the nginx
 * unix-socket backlog case"): a real server on a unix socket with a small
 * listen backlog, behind a real nginx, one sync worker whose app sleeps;
 * an open-loop burst through nginx, several times — beside the simulator's
 * `backlog-unix` scenario with the same backlog, the machine's somaxconn,
 * the same service time and the same burst, over several seeds.
 *
 * What is lost is the 502s: nginx's connect() to the unix socket fails with
 * EAGAIN once the accept queue is full. The model's arithmetic says how
 * many — the burst, less what the queue holds (min(backlog, somaxconn) + 1,
 * `acceptQueueCapacity`), less what the worker holds (the one request it
 * serves) — when the burst comes faster than one service time. That is
 * exact, not a tolerance: a 502 of the real run is counted as the model's
 * mechanism only if it came back before a service time had passed (it never
 * waited for the worker).
 */
import { join } from 'node:path';
import { acceptQueueCapacity } from '../model/params.ts';
import { readSomaxconn } from '../impl/config.ts';
import { runScenario } from '../simulator/run.ts';
import { getScenario, type ScenarioParams } from '../simulator/scenarios.ts';
import { commandServer, ServerStartError } from './blackbox.ts';
import { burst, proxiedGet, startProxy } from './nginx-proxy.ts';
import { stopGracefully, tempDir } from './process.ts';
import { formatOffBy, formatOffByInterval, median, offBy, offByInterval, range, withinTolerance } from './calibrate.ts';

export interface BacklogLoad {
  /** Requests in the burst, each on its own connection. */
  readonly requests: number;
  /** The burst's length: request i at i × spreadMs / requests. */
  readonly spreadMs: number;
  /** What the app sleeps for each request (`/?ms=`). */
  readonly serviceMs: number;
}

export interface BacklogCalibrationOptions {
  /** The upstream's command; `{bind}` is filled with `unix:<socket>`, `{backlog}` and `{workers}` (1) as for `quiesce conform`. */
  readonly command: string;
  /** The policy the simulator runs (a sync worker: one request at a time). */
  readonly policy: string;
  readonly backlog: number;
  readonly load: BacklogLoad;
  readonly runs: number;
  readonly seeds: readonly number[];
  readonly tolerance: number;
}

export interface BacklogRunFigures {
  /** 502s: nginx's connect() refused with EAGAIN (the accept queue full). */
  readonly badGateway: number;
  /** Of those, answered before a service time passed: never waited for the worker. */
  readonly immediate: number;
  readonly ok: number;
  /** Any other status. */
  readonly other: number;
}

export interface BacklogCalibrationReport {
  readonly options: BacklogCalibrationOptions;
  readonly somaxconn: number;
  /** The model's arithmetic: requests − (min(backlog, somaxconn) + 1) − 1 in service, when the burst outruns the worker. */
  readonly arithmetic: number;
  readonly real: readonly BacklogRunFigures[];
  readonly simulated: readonly { readonly seed: number; readonly figures: BacklogRunFigures }[];
  readonly lostRealMedian: number;
  readonly lostSimulatedMedian: number;
  readonly withinTolerance: boolean;
  /** calibrate's bootstrap interval of the medians' distance (null where the real median is 0). */
  readonly offByInterval: { readonly low: number; readonly high: number } | null;
}

/** The simulator's `backlog-unix` with the row's backlog, the machine's somaxconn, service time and burst; its server's parameters fill the real command's placeholders too (one sync worker). */
export function backlogScenarioParams(options: Pick<BacklogCalibrationOptions, 'backlog' | 'load'>, somaxconn: number): ScenarioParams {
  const seed = getScenario('backlog-unix')!.params;
  if (seed.load.kind !== 'proxy') throw new Error('backlog-unix: expected a proxy load');
  const { requests, spreadMs, serviceMs } = options.load;
  return {
    ...seed,
    serviceMinMs: serviceMs,
    serviceMaxMs: serviceMs,
    server: { ...seed.server, workers: 1, threads: 1, family: 'unix', backlog: options.backlog, somaxconn },
    // ProxyLoad sends round(rate × duration) requests, request i at i / rate: the real burst's spacing.
    load: { ...seed.load, ratePerSec: (requests * 1000) / spreadMs, durationMs: spreadMs },
  };
}

/** A simulated run's figures; its immediate 502s are those whose cause is the full queue (`backlog-overflow`: EAGAIN at once). */
export function simulatedBacklogRun(policy: string, params: ScenarioParams, seed: number): BacklogRunFigures {
  const { stats } = runScenario({ scenario: 'calibration', policy, seed, params });
  const count = (status: number) => stats.statuses[status] ?? 0;
  const all = Object.values(stats.statuses).reduce((a, b) => a + b, 0);
  return { badGateway: count(502), immediate: stats.byMechanism['backlog-overflow']?.count ?? 0, ok: count(200), other: all - count(502) - count(200) };
}

export async function realBacklogRun(options: BacklogCalibrationOptions, somaxconn: number): Promise<BacklogRunFigures> {
  const dir = tempDir('quiesce-backlog-');
  const socket = join(dir, 'app.sock');
  const bind = `unix:${socket}`;
  const sut = commandServer(options.command.split('{bind}').join(bind), bind);
  const server = sut.start(backlogScenarioParams(options, somaxconn).server, dir);
  try {
    await sut.listening(server, 30_000);
    const proxy = await startProxy(socket);
    try {
      // One request first, so that the burst does not meet a cold worker (a JIT, an import) that takes longer to start blocking.
      const warm = await proxiedGet(proxy.port, '/?ms=0');
      if (warm.status !== 200) throw new ServerStartError(`the server answered GET /?ms=0 through nginx with ${warm.status}, not 200: its app must answer GET /?ms=N after N ms`, server.output());
      const results = await burst(proxy.port, options.load);
      const badGateway = results.filter((r) => r.status === 502);
      return {
        badGateway: badGateway.length,
        immediate: badGateway.filter((r) => r.latencyMs < options.load.serviceMs).length,
        ok: results.filter((r) => r.status === 200).length,
        other: results.filter((r) => r.status !== 200 && r.status !== 502).length,
      };
    } finally {
      await proxy.stop();
    }
  } finally {
    await stopGracefully(server);
  }
}

export async function calibrateBacklog(options: BacklogCalibrationOptions): Promise<BacklogCalibrationReport> {
  const somaxconn = readSomaxconn();
  if (options.load.spreadMs >= options.load.serviceMs) throw new Error(`the burst (${options.load.spreadMs} ms) must come faster than one service time (${options.load.serviceMs} ms): the arithmetic holds while the worker serves its first request`);
  const real: BacklogRunFigures[] = [];
  for (let i = 0; i < options.runs; i++) real.push(await realBacklogRun(options, somaxconn));
  const params = backlogScenarioParams(options, somaxconn);
  const simulated = options.seeds.map((seed) => ({ seed, figures: simulatedBacklogRun(options.policy, params, seed) }));
  const lostRealMedian = median(real.map((r) => r.badGateway));
  const lostSimulatedMedian = median(simulated.map((s) => s.figures.badGateway));
  return {
    options,
    somaxconn,
    arithmetic: Math.max(0, options.load.requests - acceptQueueCapacity(options.backlog, somaxconn) - 1),
    real,
    simulated,
    lostRealMedian,
    lostSimulatedMedian,
    withinTolerance: withinTolerance(lostRealMedian, lostSimulatedMedian, options.tolerance),
    offByInterval: offByInterval(real.map((r) => r.badGateway), simulated.map((s) => s.figures.badGateway)),
  };
}

export function formatBacklogCalibration(r: BacklogCalibrationReport): string {
  const { options: o } = r;
  const capacity = acceptQueueCapacity(o.backlog, r.somaxconn);
  const rows: [string, (x: BacklogRunFigures) => number][] = [
    ['502 (connect() refused: queue full)', (x) => x.badGateway],
    ['  of which before one service time', (x) => x.immediate],
    ['200', (x) => x.ok],
    ['any other status', (x) => x.other],
  ];
  const lines = [
    `calibrate-backlog: ${o.command}`,
    `  nginx → unix socket, 1 sync worker, backlog ${o.backlog} (somaxconn ${r.somaxconn}: the queue holds ${capacity}); a burst of ${o.load.requests} requests in ${o.load.spreadMs} ms, each ${o.load.serviceMs} ms of service; simulated as ${o.policy}`,
    `  the model's arithmetic: ${o.load.requests} − ${capacity} queued − 1 in service = ${r.arithmetic} immediate 502s`,
    '',
    `  ${'figure'.padEnd(38)} ${`real, ${r.real.length} run${r.real.length === 1 ? '' : 's'}`.padEnd(24)} simulated, seeds ${r.simulated.map((s) => s.seed).join(',')}`,
    ...rows.map(([label, of]) => `  ${label.padEnd(38)} ${range(r.real.map(of), 0).padEnd(24)} ${range(r.simulated.map((s) => of(s.figures)), 0)}`),
    '',
    `  502s, medians: real ${r.lostRealMedian}, simulated ${r.lostSimulatedMedian}: ${r.withinTolerance ? 'within' : 'OUTSIDE'} ±${Math.round(o.tolerance * 100)} %${r.offByInterval ? ` (off by ${formatOffBy(offBy(r.lostRealMedian, r.lostSimulatedMedian))}; ${formatOffByInterval(r.offByInterval)})` : ''}`,
  ];
  return lines.join('\n') + '\n';
}
