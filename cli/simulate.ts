/** `quiesce simulate`: the seeds' scenarios under the policies. */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Command } from 'commander';
import { BASE_POLICY_NAMES, getPolicy } from '../model/policies.ts';
import { formatEvent, makeHeader } from '../model/trace.ts';
import type { TraceEvent } from '../model/events.ts';
import { runScenario, type RunResult } from '../simulator/run.ts';
import { abReport, table, toJson } from '../simulator/report.ts';
import { getScenario, SCENARIO_NAMES, type ScenarioParams } from '../simulator/scenarios.ts';
import { parseNumberOption, UsageError } from './errors.ts';
import type { Io } from './main.ts';

interface SimulateOptions {
  scenario?: string;
  policy?: string;
  seed: string;
  json?: boolean;
  trace?: string;
  workers?: string;
  threads?: string;
  keepalive?: string;
  maxRequests?: string;
  maxRequestsJitter?: string;
  gracefulTimeout?: string;
  backlog?: string;
  somaxconn?: string;
  requests?: string;
  concurrency?: string;
  rate?: string;
  duration?: string;
  serviceMs?: string;
  idleGrace?: string;
}

/** Apply command-line overrides to a scenario's parameters, each checked and named in its error. */
export function applyOverrides(base: ScenarioParams, o: SimulateOptions): ScenarioParams {
  const p: ScenarioParams = structuredClone(base);
  const int = (flag: string, v: string, min = 0) => parseNumberOption(flag, v, { integer: true, min });
  const num = (flag: string, v: string, min = 0) => parseNumberOption(flag, v, { min });
  if (o.workers !== undefined) p.server.workers = int('--workers', o.workers, 1);
  if (o.threads !== undefined) p.server.threads = int('--threads', o.threads, 1);
  if (o.keepalive !== undefined) p.server.keepAliveMs = num('--keepalive', o.keepalive) * 1000;
  if (o.maxRequests !== undefined) p.server.maxRequests = int('--max-requests', o.maxRequests);
  if (o.maxRequestsJitter !== undefined) p.server.maxRequestsJitter = int('--max-requests-jitter', o.maxRequestsJitter);
  if (o.gracefulTimeout !== undefined) p.server.gracefulTimeoutMs = num('--graceful-timeout', o.gracefulTimeout) * 1000;
  if (o.backlog !== undefined) p.server.backlog = int('--backlog', o.backlog);
  if (o.somaxconn !== undefined) p.server.somaxconn = int('--somaxconn', o.somaxconn);
  if (o.idleGrace !== undefined) p.server.idleGraceMs = num('--idle-grace', o.idleGrace) * 1000;
  if (o.serviceMs !== undefined) {
    const ms = num('--service-ms', o.serviceMs);
    p.serviceMinMs = ms;
    p.serviceMaxMs = ms;
  }
  if (p.load.kind === 'ab') {
    if (o.requests !== undefined) p.load.requests = int('--requests', o.requests, 1);
    if (o.concurrency !== undefined) p.load.concurrency = int('--concurrency', o.concurrency, 1);
    if (o.rate !== undefined || o.duration !== undefined) throw new UsageError('--rate and --duration apply to the proxy scenarios (backlog-*), not to an ab run; use --requests and --concurrency');
    if (p.load.concurrency > p.load.requests) throw new UsageError(`--concurrency ${p.load.concurrency} exceeds --requests ${p.load.requests} (ab refuses this too)`);
  } else {
    if (o.rate !== undefined) p.load.ratePerSec = num('--rate', o.rate, 0.001);
    if (o.duration !== undefined) p.load.durationMs = num('--duration', o.duration, 0.001) * 1000;
    if (o.requests !== undefined || o.concurrency !== undefined) throw new UsageError('--requests and --concurrency apply to the ab scenarios, not to the proxy scenarios (backlog-*); use --rate and --duration');
  }
  return p;
}

function checkedScenario(name: string) {
  if (!SCENARIO_NAMES.includes(name)) throw new UsageError(`--scenario: unknown scenario "${name}"; expected one of: ${SCENARIO_NAMES.join(', ')}`);
  return getScenario(name);
}

export function registerSimulatorCommands(program: Command, io: Io): void {
  program
    .command('simulate')
    .description('simulate the seed scenarios; with no --scenario/--policy: every scenario under every policy, as a table')
    .option('--scenario <name>', `one of: ${SCENARIO_NAMES.join(', ')}`)
    .option('--policy <name>', 'a policy name (see `quiesce policies`)')
    .option('--seed <n>', 'PRNG seed', '1')
    .option('--json', 'print one JSON object (needs --scenario and --policy)')
    .option('--trace <file>', 'write the JSONL trace (needs --scenario and --policy)')
    .option('--workers <n>').option('--threads <n>').option('--keepalive <s>', 'keep-alive timeout, seconds (0 disables)')
    .option('--max-requests <n>').option('--max-requests-jitter <n>').option('--graceful-timeout <s>', 'seconds')
    .option('--idle-grace <s>', 'idle window of idle-grace/safe-drain, seconds')
    .option('--backlog <n>').option('--somaxconn <n>')
    .option('--requests <n>', 'ab -n').option('--concurrency <n>', 'ab -c')
    .option('--rate <r>', 'proxy scenarios: requests per second').option('--duration <s>', 'proxy scenarios: seconds')
    .option('--service-ms <ms>', 'fixed service time per request')
    .action((options: SimulateOptions) => {
      const seed = parseNumberOption('--seed', options.seed, { integer: true, min: 0 });
      const scenarios = options.scenario ? [checkedScenario(options.scenario)] : SCENARIO_NAMES.map(getScenario);
      if (options.policy) getPolicy(options.policy);
      const policies = options.policy ? [options.policy] : [...BASE_POLICY_NAMES];
      const single = scenarios.length === 1 && policies.length === 1;
      if ((options.json || options.trace) && !single) throw new UsageError('--json and --trace need one run: give both --scenario and --policy');

      const results: RunResult[] = [];
      for (const scenario of scenarios) {
        const params = applyOverrides(scenario.params, options);
        for (const policy of policies) {
          let out: WriteStream | undefined;
          let onEvent: ((e: TraceEvent) => void) | undefined;
          if (options.trace) {
            // Every simulated run ends with the liveness phase, so its trace is complete.
            const header = makeHeader(policy, params.server, true, { scenario: scenario.name, seed, command: replayCommand(scenario.name, policy, seed) });
            out = createWriteStream(options.trace);
            out.write(JSON.stringify(header) + '\n');
            const stream = out;
            onEvent = (e) => stream.write(formatEvent(e) + '\n');
          }
          if (!single && !options.json) io.err(`simulating ${scenario.name} under ${policy}…\r`);
          const result = runScenario({ scenario: scenario.name, policy, seed, params, ...(onEvent ? { onEvent } : {}) });
          out?.end();
          results.push(result);
        }
      }
      if (single) {
        const result = results[0]!;
        io.out(options.json ? JSON.stringify(toJson(result)) + '\n' : abReport(result));
        if (!options.json) io.out(`\nReplay: ${replayCommand(result.scenario, result.policy, seed)}\n`);
        return;
      }
      io.out(table(results, scenarios.map((s) => s.name), policies));
      io.out(`\nSeed ${seed}. One cell in detail: quiesce simulate --scenario <s> --policy <p> --seed ${seed}\n`);
    });
}

function replayCommand(scenario: string, policy: string, seed: number): string {
  return `npx quiesce simulate --scenario ${scenario} --policy ${policy} --seed ${seed}`;
}
