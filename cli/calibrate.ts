/** `quiesce calibrate`: a real server beside the simulator with its profile, under the same load (conformance/calibrate.ts). */
import type { Command } from 'commander';
import { calibrate, formatCalibration, parseCalibrationSignal, SEED_CALIBRATION as SEED, type CalibrationSignal } from '../conformance/calibrate.ts';
import { ConformUsageError, parseBind, PLACEHOLDERS } from '../conformance/blackbox.ts';
import { asUsageError } from './conform.ts';
import { BOUNDS, type Bound } from '../model/limits.ts';
import { getPolicy } from '../model/policies.ts';
import { readFileSync } from 'node:fs';
import { getProfile, isProfileFile, PROFILE_NAMES, ProfileFileError, readProfileFile, UnknownProfileError, type Profile } from '../simulator/profiles.ts';
import type { Io } from './main.ts';
import { parseNumberOption, UsageError } from './errors.ts';

interface CalibrateCliOptions {
  server?: string;
  bind?: string;
  profile?: string;
  policy?: string;
  runs: string;
  seeds: string;
  tolerance: string;
  workers: string;
  threads: string;
  keepalive: string;
  maxRequests: string;
  maxRequestsJitter: string;
  requests: string;
  concurrency: string;
  timeout: string;
  signal: string[];
  capture?: boolean;
  withoutRefused?: boolean;
  json?: boolean;
}

/** `--profile NAME|FILE`: a shipped profile by name, or a profile file (`npm run profile:measure -- NAME > FILE`). */
export function profileOption(value: string): Profile {
  try {
    if (!isProfileFile(value)) return getProfile(value);
    let text: string;
    try {
      text = readFileSync(value, 'utf8');
    } catch (error) {
      throw new ProfileFileError(value, `cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    return readProfileFile(value, text);
  } catch (error) {
    if (error instanceof UnknownProfileError || error instanceof ProfileFileError) throw new UsageError(`--profile: ${error.message}`);
    throw error;
  }
}

export const PROFILE_OPTION_HELP = `a shipped profile (${PROFILE_NAMES.join(', ')}) or a profile file, as npm run profile:measure prints it`;

export function registerCalibrateCommand(program: Command, io: Io): void {
  program
    .command('calibrate')
    .description("run a real server and the simulator (with the server's profile) under the same ab load, several times each, and print them side by side; exit 1 when the simulated lost exchanges miss the real ones by more than the tolerance")
    .option('--server <command>', `the real server's command line; it may take {bind} ${Object.keys(PLACEHOLDERS).join(' ')}`)
    .option('--bind <host:port>', 'where the command makes the server listen (TCP on loopback)')
    .option('--profile <name|file>', `the server's measured timings: ${PROFILE_OPTION_HELP}`)
    .option('--policy <name>', "the policy to simulate (default: the profile's)")
    .option('--runs <n>', 'real runs', '3')
    .option('--seeds <n>', 'simulated runs: seeds 1..n', '3')
    .option('--tolerance <fraction>', 'on the median of lost exchanges', '0.25')
    // The seed's experiment by default (SEED_CALIBRATION).
    .option('--workers <n>', '', String(SEED.server.workers))
    .option('--threads <n>', '', String(SEED.server.threads))
    .option('--keepalive <s>', 'seconds', String(SEED.server.keepAliveMs / 1000))
    .option('--max-requests <n>', '', String(SEED.server.maxRequests))
    .option('--max-requests-jitter <n>', '', String(SEED.server.maxRequestsJitter))
    .option('--requests <n>', 'ab -n', String(SEED.load.requests))
    .option('--concurrency <n>', 'ab -c', String(SEED.load.concurrency))
    .option('--timeout <s>', 'ab -s', String(SEED.load.timeoutS))
    .option('--signal <SIGNAL@ms>', "a signal to the server's main process at ms after ab starts, in both runs (repeatable: --signal HUP@500 --signal HUP@1500)", (value: string, all: string[]) => [...all, value], [] as string[])
    .option('--capture', "capture each real run with tcpdump (loopback, headers only) and classify every loss by what the wire shows, beside the simulator's causes")
    .option('--without-refused', 'hold the tolerance to the exchanges lost other than to refused connects, as the wire shows them — what a stop itself cost, without what ab -r burns on the closed port after it (needs --capture)')
    .option('--json', 'print one JSON object')
    .action(async (options: CalibrateCliOptions) => {
      if (options.server === undefined) throw new UsageError('--server: required (the real server\'s command line, e.g. "gunicorn -k gthread --bind {bind} --workers {workers} --threads {threads} --keep-alive {keepalive} --max-requests {max-requests} app:app")');
      if (options.bind === undefined) throw new UsageError('--bind: required (host:port where the command makes the server listen)');
      if (options.profile === undefined) throw new UsageError(`--profile: required; one of: ${PROFILE_NAMES.join(', ')}`);
      try {
        if (!('port' in parseBind(options.bind))) throw new UsageError(`--bind: calibrate reads connections from the kernel's TCP table: expected host:port, got "${options.bind}"`);
      } catch (error) {
        if (error instanceof ConformUsageError) throw new UsageError(error.message);
        throw error;
      }
      const profile = profileOption(options.profile);
      const policy = options.policy ?? profile.policy;
      if (policy === undefined) throw new UsageError(`--policy: required: profile ${profile.name} takes its policy as a flag (${profile.describes})`);
      getPolicy(policy);
      const n = (flag: string, value: string, bound: Bound) => parseNumberOption(flag, value, bound);
      const requests = n('--requests', options.requests, BOUNDS.requests);
      const concurrency = n('--concurrency', options.concurrency, BOUNDS.concurrency);
      if (concurrency > requests) throw new UsageError(`--concurrency ${concurrency} exceeds --requests ${requests} (ab refuses this too)`);
      if (options.withoutRefused && !options.capture) throw new UsageError('--without-refused needs --capture: only the wire tells a refused connect from the other losses ab counts alike');
      const seeds = n('--seeds', options.seeds, { integer: true, min: 1, max: 100 });
      const signals = options.signal.map((text): CalibrationSignal => {
        try {
          return parseCalibrationSignal(text);
        } catch (error) {
          throw new UsageError(`--signal: ${(error as Error).message}`);
        }
      });
      const report = await calibrate({
        command: options.server,
        bind: options.bind,
        cwd: process.cwd(),
        profile,
        policy,
        server: {
          ...SEED.server,
          workers: n('--workers', options.workers, BOUNDS.workers),
          threads: n('--threads', options.threads, BOUNDS.threads),
          keepAliveMs: n('--keepalive', options.keepalive, BOUNDS.seconds) * 1000,
          maxRequests: n('--max-requests', options.maxRequests, BOUNDS.maxRequests),
          maxRequestsJitter: n('--max-requests-jitter', options.maxRequestsJitter, BOUNDS.maxRequestsJitter),
        },
        load: { requests, concurrency, timeoutS: n('--timeout', options.timeout, { integer: true, min: 1, max: 3600 }) },
        signals,
        capture: options.capture === true,
        withoutRefused: options.withoutRefused === true,
        runs: n('--runs', options.runs, { integer: true, min: 1, max: 100 }),
        seeds: Array.from({ length: seeds }, (_, i) => i + 1),
        tolerance: n('--tolerance', options.tolerance, { integer: false, min: 0, max: 10 }),
        log: (line) => {
          if (process.stderr.isTTY && !options.json) process.stderr.write(`\r\x1b[2K${line}…`);
        },
      }).catch(asUsageError);
      if (process.stderr.isTTY && !options.json) process.stderr.write('\r\x1b[2K');
      io.out(options.json ? JSON.stringify(report, null, 2) + '\n' : formatCalibration(report));
      if (!report.withinTolerance) io.exitCode = 1;
    });
}
