/**
 * Measures a server profile on this machine and writes it
 * (`npm run profile:measure -- NAME [--write]`): every number in the file is
 * one this script measured, under a measurement that records the command,
 * the date, the machine and the method. Nothing here is tuned; run it again
 * on another machine and the file describes that machine.
 *
 * Both are measured in one run under the calibration's load — the seed's
 * (`ab -c 20 -k -r`, 4 workers × 20 threads, keep-alive 2 s, max-requests
 * 512) over 40,000 requests, about 80 replacements — because the simulator
 * has no CPU model: on two cores a replacement's boot takes CPU from the
 * requests being served, and a request's time measured without recycling is
 * half of what it is under it. So a profile holds for the load it was
 * measured under (the calibration's), not for every load.
 *
 * - service time: the 101 percentiles of ab's total time per request
 *   (`-e`, µs resolution): the time a request holds its thread, waiting for
 *   the CPU included.
 * - worker boot: from a worker's exit to its replacement ready to accept. gunicorn: its server hooks (`worker_exit`, then
 *   `post_worker_init` of the next worker, by CLOCK_MONOTONIC, paired in
 *   order: the arbiter replaces in the order it reaps). `quiesce serve`: its
 *   trace (`worker.exit`, then the next `worker.ready`).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { runAb } from './ab.ts';
import { commandServer, fillCommand } from './blackbox.ts';
import { APPS_DIR, stopGracefully, tempDir } from './process.ts';
import type { ServerParams } from '../model/params.ts';
import { SEED_CALIBRATION } from './calibrate.ts';
import { readTrace } from '../impl/trace-file.ts';
import { profileSchema, type Profile } from '../simulator/profile-schema.ts';

interface Target {
  readonly describes: string;
  readonly policy?: string;
  /** The server's command, placeholders as `quiesce conform --server` takes them, plus {bind}. */
  readonly command: string;
  /** Files the command needs in its directory. */
  readonly files: Record<string, string>;
  /** Worker exit → replacement ready samples, ms, from what the run left in its directory. */
  readonly boots: (dir: string) => number[];
  readonly bootMethod: string;
}

/** gunicorn's server hooks, writing CLOCK_MONOTONIC times: the only clock all its processes share. */
const GUNICORN_HOOKS = [
  'import os, time',
  'def _log(kind, pid):',
  "    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'hooks.log'), 'a') as f:",
  "        f.write('%.6f %s %d\\n' % (time.monotonic(), kind, pid))",
  "def worker_exit(server, worker): _log('exit', worker.pid)",
  "def post_worker_init(worker): _log('ready', os.getpid())",
  '',
].join('\n');

/** Pairs each exit with the next ready not yet paired (replacements come in the order of exits), in ms. */
interface LifeEvent {
  readonly ms: number;
  readonly kind: 'exit' | 'ready';
}

export function exitToReady(events: readonly LifeEvent[]): number[] {
  const waiting: number[] = [];
  const samples: number[] = [];
  for (const e of [...events].sort((a, b) => a.ms - b.ms)) {
    if (e.kind === 'exit') waiting.push(e.ms);
    else if (waiting.length > 0) samples.push(e.ms - waiting.shift()!);
  }
  return samples;
}

function gunicornBoots(dir: string): number[] {
  const events = readFileSync(join(dir, 'hooks.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line): LifeEvent => {
      const [seconds, kind] = line.split(' ');
      if (kind !== 'exit' && kind !== 'ready') throw new Error(`hooks.log: unexpected line "${line}"`);
      return { ms: Number(seconds) * 1000, kind };
    });
  return exitToReady(events);
}

function quiesceBoots(dir: string): number[] {
  const trace = readTrace(join(dir, 'trace.jsonl'));
  const events: LifeEvent[] = [];
  for (const e of trace.events) {
    if (e.type === 'worker.exit') events.push({ ms: e.t, kind: 'exit' });
    else if (e.type === 'worker.ready') events.push({ ms: e.t, kind: 'ready' });
  }
  return exitToReady(events);
}

const GUNICORN_FLAGS = `--bind {bind} --workers {workers} --keep-alive {keepalive} --max-requests {max-requests} --log-level warning -c hooks.py --pythonpath ${APPS_DIR} hello_app:app`;

export const TARGETS: Record<string, Target> = {
  'gunicorn-20.1-gthread': {
    describes: "Debian's gunicorn 20.1 with gthread workers, a WSGI app that answers 14 bytes, on loopback",
    policy: 'gunicorn-gthread',
    command: `gunicorn -k gthread --threads {threads} ${GUNICORN_FLAGS}`,
    files: { 'hooks.py': GUNICORN_HOOKS },
    boots: gunicornBoots,
    bootMethod: "gunicorn's worker_exit and post_worker_init hooks (CLOCK_MONOTONIC), each exit paired with the next worker ready",
  },
  'gunicorn-20.1-sync': {
    describes: "Debian's gunicorn 20.1 with sync workers, a WSGI app that answers 14 bytes, on loopback",
    policy: 'gunicorn-sync',
    command: `gunicorn -k sync ${GUNICORN_FLAGS}`,
    files: { 'hooks.py': GUNICORN_HOOKS },
    boots: gunicornBoots,
    bootMethod: "gunicorn's worker_exit and post_worker_init hooks (CLOCK_MONOTONIC), each exit paired with the next worker ready",
  },
  'quiesce-serve': {
    describes: '`quiesce serve --app hello` (this repository), on loopback; its policy is a flag',
    command: `${process.execPath} ${new URL('../bin/quiesce.mjs', import.meta.url).pathname} serve --app hello --policy gunicorn-gthread --bind {bind} --workers {workers} --threads {threads} --keepalive {keepalive} --max-requests {max-requests} --trace trace.jsonl`,
    files: {},
    boots: quiesceBoots,
    bootMethod: "the server's trace: each worker.exit paired with the next worker.ready",
  },
};

/** The load: the calibration's (the seed's: 4 workers × 20 threads, keep-alive 2 s, max-requests 512; ab -c 20 -k -r). */
export const MEASURE_SERVER: ServerParams = SEED_CALIBRATION.server;
const AB_REQUESTS = 40_000;
const AB_LOAD = ['-n', String(AB_REQUESTS), '-c', '20', '-k', '-r'];
const AB_WARMUP = ['-n', '5000', '-c', '20', '-k', '-r'];

export function describeMachine(): string {
  const cpus = os.cpus();
  let distro = '';
  try {
    distro = `, Debian ${readFileSync('/etc/debian_version', 'utf8').trim()}`;
  } catch {
    // not Debian
  }
  return `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}${distro}, Node ${process.version}`;
}

async function withServer<T>(target: Target, params: ServerParams, port: number, body: (dir: string, command: string) => Promise<T>): Promise<T> {
  const dir = tempDir('quiesce-profile-');
  for (const [name, text] of Object.entries(target.files)) writeFileSync(join(dir, name), text);
  const bind = `127.0.0.1:${port}`;
  const command = target.command.split('{bind}').join(bind);
  const sut = commandServer(command, bind);
  const server = sut.start(params, dir);
  try {
    await sut.listening(server, 20_000);
    return await body(dir, command);
  } finally {
    await stopGracefully(server);
  }
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;

export async function measureProfile(name: string, port: number, log: (line: string) => void): Promise<Profile> {
  const target = TARGETS[name];
  if (!target) throw new Error(`unknown profile "${name}"; expected one of: ${Object.keys(TARGETS).join(', ')}`);
  const date = new Date().toISOString().slice(0, 10);
  const machine = describeMachine();
  const url = `http://127.0.0.1:${port}/`;

  log(`${name}: warm-up (ab ${AB_WARMUP.join(' ')}), then service time and worker boot (max-requests ${MEASURE_SERVER.maxRequests}, ab ${AB_LOAD.join(' ')})`);
  // A first server and run warm what outlives a server: compiled bytecode (.pyc, V8's code cache), the page cache.
  await withServer(target, MEASURE_SERVER, port, async () => runAb([...AB_WARMUP, url]));
  const run = await withServer(target, MEASURE_SERVER, port, async (dir, command) => {
    const ab = await runAb([...AB_LOAD, url]);
    if (ab.complete !== AB_REQUESTS) throw new Error(`ab did not complete its run (${ab.complete} of ${AB_REQUESTS}):\n${ab.output}`);
    return { ab, command, dir };
  });
  // Read after the server stopped: its trace is complete then.
  const boots = target.boots(run.dir);
  if (boots.length < 10) throw new Error(`only ${boots.length} worker replacements were seen; expected dozens`);

  const profile: Profile = {
    name,
    describes: target.describes,
    ...(target.policy ? { policy: target.policy } : {}),
    measurements: {
      'ab-under-the-calibration-load': {
        command: `${fillCommand(run.command, MEASURE_SERVER)}; ab ${AB_LOAD.join(' ')} -e percentiles.csv ${url} (after a first server and ab ${AB_WARMUP.join(' ')}, to warm caches)`,
        date,
        machine,
        method: "ab's total time per request (-e: the 101 percentiles, µs resolution), recycling as the calibration does; the wait for the CPU included",
      },
      'replacement-under-load': {
        command: `the same run: ab ${AB_LOAD.join(' ')} ${url}`,
        date,
        machine,
        method: target.bootMethod,
      },
    },
    serviceMs: { measurement: 'ab-under-the-calibration-load', samples: run.ab.complete, percentilesMs: run.ab.percentilesMs.map(round3) },
    bootMs: { measurement: 'replacement-under-load', samples: boots.length, medianMs: round3(median(boots)), minMs: round3(Math.min(...boots)), maxMs: round3(Math.max(...boots)) },
  };
  return profileSchema.parse(profile);
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('profile:measure')
    .argument('<name>', `one of: ${Object.keys(TARGETS).join(', ')}`)
    .option('--write', 'write simulator/profiles/<name>.json (otherwise print it)')
    .option('--port <n>', 'the loopback port the server binds', '18530')
    .exitOverride();
  try {
    program.parse(argv, { from: 'user' });
  } catch (error) {
    return error instanceof CommanderError ? (error.exitCode === 0 ? 0 : 2) : 2;
  }
  const [name] = program.args as [string];
  const options = program.opts<{ write?: boolean; port: string }>();
  if (!(name in TARGETS)) {
    process.stderr.write(`profile:measure: unknown profile "${name}"; expected one of: ${Object.keys(TARGETS).join(', ')}\n`);
    return 2;
  }
  if (name.startsWith('gunicorn')) execFileSync('gunicorn', ['--version']);
  const profile = await measureProfile(name, Number(options.port), (line) => process.stderr.write(`${line}\n`));
  const text = JSON.stringify(profile, null, 2) + '\n';
  if (options.write) {
    const file = new URL(`../simulator/profiles/${name}.json`, import.meta.url).pathname;
    writeFileSync(file, text);
    process.stderr.write(`written: ${file}\n`);
  } else process.stdout.write(text);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2));
