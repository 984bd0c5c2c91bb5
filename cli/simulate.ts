/** `quiesce simulate`: the seeds' scenarios under the policies. */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Command } from 'commander';
import { match } from 'ts-pattern';
import { BASE_POLICY_NAMES, getPolicy } from '../model/policies.ts';
import { formatEvent, makeHeader } from '../model/trace.ts';
import type { TraceEvent } from '../model/events.ts';
import { runScenario, type RunResult } from '../simulator/run.ts';
import { abReport, table, toJson } from '../simulator/report.ts';
import { getScenario, SCENARIO_NAMES, SEED_SCENARIO_NAMES, UnknownScenarioError, type ScenarioParams } from '../simulator/scenarios.ts';
import { check, checkWorld, describeWorld, isFailure, raceWorldSchema, timeline, type CheckOutcome, type RaceWorld } from '../simulator/check.ts';
import { PROPERTY_NAMES } from '../model/properties.ts';
import { formatTrace } from '../model/trace.ts';
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { parseNumberOption, UsageError } from './errors.ts';
import { BOUNDS, type BoundName } from '../model/limits.ts';
import { applyProfile } from '../simulator/profiles.ts';
import { PROFILE_OPTION_HELP, profileOption } from './calibrate.ts';

/** QUIESCE_DEBUG=pairs: check after every step that the simulator's bookkeeping agrees with the machines. */
const DEBUG_PAIRS = (process.env.QUIESCE_DEBUG ?? '').split(',').includes('pairs');

/** fast-check and the simulator's PRNG take 32-bit seeds. */
const SEED_BOUND = { integer: true, min: 0, max: 2 ** 31 - 1 } as const;
import type { Io } from './main.ts';
import { progressBar } from './progress.ts';

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
  profile?: string;
}

/** The flags of SimulateOptions that change a run, as the command line spells them (for the replay command). */
const RUN_FLAGS: readonly (readonly [keyof SimulateOptions, string])[] = [
  ['profile', '--profile'],
  ['workers', '--workers'],
  ['threads', '--threads'],
  ['keepalive', '--keepalive'],
  ['maxRequests', '--max-requests'],
  ['maxRequestsJitter', '--max-requests-jitter'],
  ['gracefulTimeout', '--graceful-timeout'],
  ['idleGrace', '--idle-grace'],
  ['backlog', '--backlog'],
  ['somaxconn', '--somaxconn'],
  ['requests', '--requests'],
  ['concurrency', '--concurrency'],
  ['rate', '--rate'],
  ['duration', '--duration'],
  ['serviceMs', '--service-ms'],
];

/** Apply command-line overrides to a scenario's parameters, each checked and named in its error. */
export function applyOverrides(base: ScenarioParams, o: SimulateOptions): ScenarioParams {
  // A profile's measured timings first: an explicit flag after it wins.
  const p: ScenarioParams = o.profile !== undefined ? applyProfile(base, profileOption(o.profile)).params : structuredClone(base);
  const n = (flag: string, v: string, bound: BoundName) => parseNumberOption(flag, v, BOUNDS[bound]);
  if (o.workers !== undefined) p.server.workers = n('--workers', o.workers, 'workers');
  if (o.threads !== undefined) p.server.threads = n('--threads', o.threads, 'threads');
  if (o.keepalive !== undefined) p.server.keepAliveMs = n('--keepalive', o.keepalive, 'seconds') * 1000;
  if (o.maxRequests !== undefined) p.server.maxRequests = n('--max-requests', o.maxRequests, 'maxRequests');
  if (o.maxRequestsJitter !== undefined) p.server.maxRequestsJitter = n('--max-requests-jitter', o.maxRequestsJitter, 'maxRequestsJitter');
  if (o.gracefulTimeout !== undefined) p.server.gracefulTimeoutMs = n('--graceful-timeout', o.gracefulTimeout, 'seconds') * 1000;
  if (o.backlog !== undefined) p.server.backlog = n('--backlog', o.backlog, 'backlog');
  if (o.somaxconn !== undefined) p.server.somaxconn = n('--somaxconn', o.somaxconn, 'somaxconn');
  if (o.idleGrace !== undefined) p.server.idleGraceMs = n('--idle-grace', o.idleGrace, 'seconds') * 1000;
  if (o.serviceMs !== undefined) {
    const ms = n('--service-ms', o.serviceMs, 'serviceMs');
    p.serviceMinMs = ms;
    p.serviceMaxMs = ms;
    delete p.servicePercentilesMs;
  }
  if (p.load.kind === 'ab') {
    if (o.requests !== undefined) p.load.requests = n('--requests', o.requests, 'requests');
    if (o.concurrency !== undefined) p.load.concurrency = n('--concurrency', o.concurrency, 'concurrency');
    if (o.rate !== undefined || o.duration !== undefined) throw new UsageError('--rate and --duration apply to the proxy scenarios (backlog-*), not to an ab run; use --requests and --concurrency');
    if (p.load.concurrency > p.load.requests) throw new UsageError(`--concurrency ${p.load.concurrency} exceeds --requests ${p.load.requests} (ab refuses this too)`);
  } else {
    if (o.rate !== undefined) p.load.ratePerSec = n('--rate', o.rate, 'ratePerSecond');
    if (o.duration !== undefined) p.load.durationMs = n('--duration', o.duration, 'durationSeconds') * 1000;
    if (o.requests !== undefined || o.concurrency !== undefined) throw new UsageError('--requests and --concurrency apply to the ab scenarios, not to the proxy scenarios (backlog-*); use --rate and --duration');
  }
  return p;
}

function checkedScenario(name: string) {
  try {
    return getScenario(name);
  } catch (error) {
    if (error instanceof UnknownScenarioError) throw new UsageError(`--scenario: ${error.message}`);
    throw error;
  }
}

export function registerSimulatorCommands(program: Command, io: Io): void {
  program
    .command('check')
    .description('property-based race checking: every property against every policy, with minimal counterexamples')
    .option('--runs <n>', 'generated worlds per property and policy', '100')
    .option('--seed <n>', 'fast-check seed', '1')
    .option('--property <name>', `one of: ${PROPERTY_NAMES.join(', ')}`)
    .option('--policy <name>', 'a policy name (see `quiesce policies`)')
    .option('--world <json>', 'replay one world exactly, as a counterexample printed it (needs --policy and --property)')
    .option('--trace-out <file>', 'write the (first) counterexample as a JSONL trace, for `quiesce replay` and the viz')
    .action((options: CheckCommandOptions) => {
      const runs = parseNumberOption('--runs', options.runs, { integer: true, min: 1, max: 10_000_000 });
      const seed = parseNumberOption('--seed', options.seed, SEED_BOUND);
      if (options.property && !PROPERTY_NAMES.includes(options.property)) {
        throw new UsageError(`--property: unknown property "${options.property}"; expected one of: ${PROPERTY_NAMES.join(', ')}`);
      }
      if (options.policy) getPolicy(options.policy);
      let outcomes: CheckOutcome[];
      if (options.world !== undefined) {
        if (!options.policy || !options.property) throw new UsageError('--world replays one counterexample: give --policy and --property too');
        outcomes = [checkWorld(options.policy, options.property, parseWorld(options.world))];
      } else {
        const bar = progressBar((options.policy ? 1 : BASE_POLICY_NAMES.length) * (options.property ? 1 : PROPERTY_NAMES.length), { enabled: true, unit: 'checks' });
        outcomes = check({
          onOutcome: (o, done) => bar.update(done, `${o.policy} / ${o.property}`),
          policies: options.policy ? [options.policy] : [...BASE_POLICY_NAMES],
          ...(options.property ? { properties: [options.property] } : {}),
          runs,
          seed,
        });
        bar.stop();
      }
      let traceWritten = false;
      for (const o of outcomes) {
        io.out(describeOutcome(o) + '\n');
        if (o.counterexample && o.status !== 'held') {
          io.out(`      minimal counterexample (${o.counterexample.trace.events.length} events; the actors involved):\n`);
          for (const line of timeline(o.counterexample.trace, o.counterexample.index)) io.out(`      ${line}\n`);
          const commit = currentCommit();
          io.out(`      replay: ${checkReplayCommand(o)}${commit ? `   (found on commit ${commit})` : ''}\n\n`);
          if (options.traceOut && !traceWritten && o.counterexample.trace.events.length > 0) {
            writeFileSync(options.traceOut, formatTrace(o.counterexample.trace));
            traceWritten = true;
            io.out(`      trace written to ${options.traceOut}\n\n`);
          }
        }
      }
      const failures = outcomes.filter(isFailure);
      const found = outcomes.filter((o) => !o.expected && o.status === 'violated').length;
      io.out(
        options.world !== undefined
          ? `\n1 world replayed: ${failures.length} failed, ${found} expected violations found\n`
          : `\n${outcomes.length} checks, ${runs} runs each (seed ${seed}): ${failures.length} failed, ${found} expected violations found\n`,
      );
      if (failures.length > 0) io.exitCode = 1;
    });

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
    .option('--profile <name|file>', `a server's measured timings (service time, worker boot): ${PROFILE_OPTION_HELP}`)
    .action((options: SimulateOptions) => {
      const seed = parseNumberOption('--seed', options.seed, SEED_BOUND);
      const scenarios = options.scenario ? [checkedScenario(options.scenario)] : SEED_SCENARIO_NAMES.map(getScenario);
      if (options.policy) getPolicy(options.policy);
      const policies = options.policy ? [options.policy] : [...BASE_POLICY_NAMES];
      const single = scenarios.length === 1 && policies.length === 1;
      if ((options.json || options.trace) && !single) throw new UsageError('--json and --trace need one run: give both --scenario and --policy');

      const startedAt = performance.now();
      const results: RunResult[] = [];
      const expectedRequests = (p: ScenarioParams) => (p.load.kind === 'ab' ? p.load.requests : Math.round((p.load.ratePerSec * p.load.durationMs) / 1000));
      const bar = single
        ? progressBar(expectedRequests(applyOverrides(scenarios[0]!.params, options)), { enabled: !options.json, unit: 'requests' })
        : progressBar(scenarios.length * policies.length, { enabled: !options.json, unit: 'runs' });
      for (const scenario of scenarios) {
        const params = applyOverrides(scenario.params, options);
        for (const policy of policies) {
          let out: WriteStream | undefined;
          let onEvent: ((e: TraceEvent) => void) | undefined;
          if (options.trace) {
            // Every simulated run ends with the liveness phase, so its trace is complete.
            const header = makeHeader(policy, params.server, true, { scenario: scenario.name, seed, command: replayCommand(scenario.name, policy, seed, options) });
            out = createWriteStream(options.trace);
            out.write(JSON.stringify(header) + '\n');
            const stream = out;
            onEvent = (e) => stream.write(formatEvent(e) + '\n');
          }
          bar.update(results.length, `${scenario.name} / ${policy}`);
          const onProgress = single ? (_ms: number, _events: number, done: number) => bar.update(done) : undefined;
          const result = runScenario({ scenario: scenario.name, policy, seed, params, debugPairs: DEBUG_PAIRS, ...(onEvent ? { onEvent } : {}), ...(onProgress ? { onProgress } : {}) });
          out?.end();
          results.push(result);
        }
      }
      bar.stop();
      if (single) {
        const result = results[0]!;
        // The whole run's memory high-water mark: a long run keeps only what is open.
        const peakMiB = Math.round(process.resourceUsage().maxRSS / 1024);
        const seconds = (performance.now() - startedAt) / 1000;
        io.out(options.json ? JSON.stringify({ ...toJson(result), run: { events: result.events, seconds: Number(seconds.toFixed(3)), peakRssMiB: peakMiB } }) + '\n' : abReport(result));
        if (!options.json) io.out(`Simulated:              ${result.events.toLocaleString('en')} events in ${seconds.toFixed(2)} s; peak memory ${peakMiB} MiB (RSS)\n\nReplay: ${replayCommand(result.scenario, result.policy, seed, options)}\n`);
        return;
      }
      io.out(table(results, scenarios.map((s) => s.name), policies));
      io.out(`\nSeed ${seed}. One cell in detail: quiesce simulate --scenario <s> --policy <p> --seed ${seed}\n`);
    });
}

interface CheckCommandOptions {
  runs: string;
  seed: string;
  property?: string;
  policy?: string;
  world?: string;
  traceOut?: string;
}

/** A world as a counterexample printed it: JSON, checked field by field. */
function parseWorld(text: string): RaceWorld {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--world: not JSON (${(error as Error).message}); expected the world a counterexample printed`);
  }
  const parsed = raceWorldSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`--world: field "${issue.path.join('.') || '(the world)'}": ${issue.message}; expected the world a counterexample printed`);
  }
  return parsed.data;
}

function describeOutcome(o: CheckOutcome): string {
  const hits = Object.entries(o.windowHits).map(([w, n]) => `${w}: ${n}/${o.evaluated}`).join(', ');
  const promise = o.expected ? 'must hold' : 'may break';
  return match(o.status)
    .with('held', () => `${o.expected ? 'ok  ' : 'held'}  ${o.policy} / ${o.property} (${promise}): held in ${o.runs} runs; windows reached ${hits}`)
    .with('window-unreached', () => `FAIL  ${o.policy} / ${o.property} (${promise}): no run reached its window (${hits}) — the check checked nothing`)
    .with('nonconforming', () => `FAIL  ${o.policy} / ${o.property}: a simulated run broke the machines: ${o.counterexample?.message ?? ''}`)
    .with('violated', () => `${o.expected ? 'FAIL' : 'found'} ${o.policy} / ${o.property} (${promise}): ${o.counterexample?.message ?? ''}`)
    .exhaustive();
}

/** The commit a counterexample was found on, when this is a git checkout. */
function currentCommit(): string | undefined {
  try {
    const out = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: new URL('..', import.meta.url), stdio: ['ignore', 'pipe', 'ignore'] });
    return out.toString().trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The command that replays a counterexample's world exactly (JSON has no single quotes: safe to quote for the shell). */
function checkReplayCommand(o: CheckOutcome): string {
  const world = o.counterexample ? ` --world '${describeWorld(o.counterexample.world)}'` : '';
  return `npx quiesce check --policy ${o.policy} --property ${o.property}${world}`;
}

function replayCommand(scenario: string, policy: string, seed: number, options: SimulateOptions): string {
  const flags = RUN_FLAGS.flatMap(([key, flag]) => (options[key] !== undefined ? [flag, String(options[key])] : []));
  return ['npx quiesce simulate --scenario', scenario, '--policy', policy, '--seed', String(seed), ...flags].join(' ');
}
