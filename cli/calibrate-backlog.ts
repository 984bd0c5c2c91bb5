/** `quiesce calibrate-backlog`: the backlog seed — a real server behind a real nginx over a unix socket — beside the simulator (conformance/backlog-calibration.ts). */
import type { Command } from 'commander';
import { calibrateBacklog, formatBacklogCalibration } from '../conformance/backlog-calibration.ts';
import { ProxyStartError } from '../conformance/nginx-proxy.ts';
import { BOUNDS } from '../model/limits.ts';
import { getPolicy } from '../model/policies.ts';
import { asUsageError } from './conform.ts';
import { parseNumberOption, UsageError } from './errors.ts';
import type { Io } from './main.ts';

interface CalibrateBacklogCliOptions {
  server?: string;
  policy: string;
  backlog: string;
  requests: string;
  spread: string;
  serviceMs: string;
  runs: string;
  seeds: string;
  tolerance: string;
  json?: boolean;
}

export function registerCalibrateBacklogCommand(program: Command, io: Io): void {
  program
    .command('calibrate-backlog')
    .description(
      "the backlog seed: run a server with one sync worker on a unix socket behind nginx, send it a burst faster than it serves, several times, beside the simulator's backlog-unix with the same backlog, somaxconn and burst; exit 1 when the simulated 502s miss the real ones by more than the tolerance",
    )
    .option('--server <command>', 'the server\'s command line: it must take {bind} (unix:<socket>) and {backlog}, may take {workers} (1), and its app must answer GET /?ms=N after N ms (conformance/apps/sleep_app.py, quiesce serve --app sleep)')
    .option('--policy <name>', 'the policy to simulate: a worker that serves one request at a time', 'gunicorn-sync')
    .option('--backlog <n>', "the server's listen(2) backlog", '16')
    .option('--requests <n>', 'requests in the burst, each on its own connection', '60')
    .option('--spread <ms>', 'the burst lasts this long: request i at i × spread / requests', '100')
    .option('--service-ms <ms>', 'what the app sleeps for each request', '150')
    .option('--runs <n>', 'real runs', '3')
    .option('--seeds <n>', 'simulated runs: seeds 1..n', '3')
    .option('--tolerance <fraction>', 'on the median of 502s', '0.25')
    .option('--json', 'print one JSON object')
    .action(async (options: CalibrateBacklogCliOptions) => {
      const command = options.server;
      if (command === undefined) throw new UsageError('--server: required (e.g. "gunicorn -k sync --bind {bind} --workers {workers} --backlog {backlog} --pythonpath conformance/apps sleep_app:app")');
      for (const placeholder of ['{bind}', '{backlog}']) {
        if (!command.includes(placeholder)) throw new UsageError(`--server: the command must take ${placeholder}: the calibration binds the server to its own unix socket with the backlog it simulates`);
      }
      getPolicy(options.policy);
      const n = parseNumberOption;
      const requests = n('--requests', options.requests, { integer: true, min: 1, max: 10_000 });
      const spreadMs = n('--spread', options.spread, { integer: false, min: 0, max: 600_000 });
      const serviceMs = n('--service-ms', options.serviceMs, { integer: true, min: 1, max: 600_000 });
      if (spreadMs >= serviceMs) throw new UsageError(`--spread ${spreadMs} must be shorter than --service-ms ${serviceMs}: the arithmetic holds for a burst that arrives while the worker serves its first request`);
      const seeds = n('--seeds', options.seeds, { integer: true, min: 1, max: 100 });
      const report = await calibrateBacklog({
        command,
        policy: options.policy,
        backlog: n('--backlog', options.backlog, BOUNDS.backlog),
        load: { requests, spreadMs, serviceMs },
        runs: n('--runs', options.runs, { integer: true, min: 1, max: 100 }),
        seeds: Array.from({ length: seeds }, (_, i) => i + 1),
        tolerance: n('--tolerance', options.tolerance, { integer: false, min: 0, max: 10 }),
      }).catch((error: unknown) => {
        if (error instanceof ProxyStartError) throw new UsageError(`nginx: ${error.message}`);
        return asUsageError(error);
      });
      io.out(options.json ? JSON.stringify(report, null, 2) + '\n' : formatBacklogCalibration(report));
      if (!report.withinTolerance) io.exitCode = 1;
    });
}
