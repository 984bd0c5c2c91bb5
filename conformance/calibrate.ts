/**
 * `quiesce calibrate`: a real server and the simulator, side by side, under
 * the same load (issue 14). The real server runs from its command — the
 * same black-box runner as `quiesce conform --server` — under ApacheBench,
 * several times; the simulator runs the same server parameters and load
 * under the server's policy with the server's profile (its measured
 * timings), over several seeds. One table: ab's Failed and its Receive /
 * Length / Exceptions, the exchanges lost, the recycled workers and what
 * each cost, the connections a worker held when it recycled, latency p50 /
 * p99 — each as the real range over runs beside the simulated range over
 * seeds.
 *
 * What is asserted: the simulator's median of lost exchanges within the
 * tolerance (±25 % by default) of the real median. The rest is printed, to
 * show where a difference comes from.
 *
 * Seen from outside only: the real server's workers are its children
 * (/proc), a worker's connections are its sockets matched in the kernel's
 * table (`connectionsHeld`), sampled every few milliseconds while ab runs.
 */
import type { TraceEvent } from '../model/events.ts';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from '../model/params.ts';
import { applyProfile, type Profile } from '../simulator/profile-schema.ts';
import { Rng } from '../simulator/rng.ts';
import { runScenario } from '../simulator/run.ts';
import { getScenario, OPERATOR_SIGNALS, type ScenarioParams } from '../simulator/scenarios.ts';
import { runAb } from './ab.ts';
import { assertAddressFree, commandServer, fillCommand, parseBind } from './blackbox.ts';
import { childrenOf, connectionsHeld, stopGracefully, tempDir, titleOf } from './process.ts';
import { classifyLosses, LoopbackCapture, WIRE_LOSS_LABELS, WIRE_LOSSES, type WireLoss } from './capture.ts';

import type { FailureMechanism } from '../simulator/clients.ts';
import { join } from 'node:path';
import { rmSync } from 'node:fs';

export interface CalibrationLoad {
  /** ab -n */
  readonly requests: number;
  /** ab -c */
  readonly concurrency: number;
  /** ab -s, seconds */
  readonly timeoutS: number;
}

/** The seed's experiment, which a calibration runs unless told otherwise: 4 workers × 20 threads, keep-alive 2 s, max-requests 512; `ab -n 10000 -c 20 -k -r`. */
export const SEED_CALIBRATION: { readonly server: ServerParams; readonly load: CalibrationLoad } = {
  server: { ...DEFAULT_SERVER_PARAMS, workers: 4, threads: 20, keepAliveMs: 2000, maxRequests: 512, maxRequestsJitter: 0 },
  load: { requests: 10_000, concurrency: 20, timeoutS: 30 },
};

/**
 * The load `profile:measure` measures a profile under: the seed's, four times as long (`ab -n 40000 -c 20
 * -k -r`, with ab's own timeout of 30 s), on the calibration's server (`SEED_CALIBRATION.server`).
 */
export const MEASURE_LOAD: CalibrationLoad = { requests: 40_000, concurrency: 20, timeoutS: 30 };

/** A signal the operator sends to the server's main process (its pid: the command's own process). */
export interface CalibrationSignal {
  readonly atMs: number;
  readonly signal: (typeof OPERATOR_SIGNALS)[number];
}

/** `HUP@500`, as `--signal` takes it. */
export function parseCalibrationSignal(text: string): CalibrationSignal {
  const match = /^([A-Z]+)@(\d+)$/.exec(text);
  const signal = OPERATOR_SIGNALS.find((s) => s === match?.[1]);
  if (!match || signal === undefined) throw new Error(`expected SIGNAL@MS with SIGNAL one of ${OPERATOR_SIGNALS.join(', ')} and MS whole milliseconds after ab starts (e.g. HUP@500), got "${text}"`);
  return { signal, atMs: Number(match[2]) };
}

export interface CalibrationOptions {
  /** The real server's command; `{bind}` and the placeholders of `quiesce conform --server` are filled. */
  readonly command: string;
  /** host:port on loopback (the connections are read from the kernel's TCP table). */
  readonly bind: string;
  /** Where the command runs. */
  readonly cwd: string;
  readonly profile: Profile;
  readonly policy: string;
  readonly server: ServerParams;
  readonly load: CalibrationLoad;
  /** Capture the real runs with tcpdump and classify each loss by what the wire shows (beside the simulator's causes). */
  readonly capture?: boolean;
  /**
   * Hold the tolerance to the exchanges lost other than to refused connects, as the wire shows them
   * (needs `capture`): what a stop itself cost, without the requests ab -r burns on the closed port.
   */
  readonly withoutRefused?: boolean;
  /** Signals to the server's main process while ab runs, at ms after ab starts — the same in the simulated runs. */
  readonly signals?: readonly CalibrationSignal[];
  readonly runs: number;
  readonly seeds: readonly number[];
  /** Relative tolerance on the median of lost exchanges. */
  readonly tolerance: number;
  /** Progress: each real run as it starts, and each run ab ended by itself. */
  readonly log?: (line: string) => void;
  /** Only the runs ab ended by itself, each run again (`realRuns`): what changes the sample. */
  readonly onAbortedRun?: (line: string) => void;
}

/** One run's figures, real or simulated. */
export interface RunFigures {
  readonly abFailed: number;
  readonly receive: number;
  readonly length: number;
  readonly exceptions: number;
  /** Exchanges lost: ab counts each once under Length (simulator/README.md). */
  readonly lost: number;
  /** Workers that ended while the load ran (recycled). */
  readonly recycles: number;
  readonly lostPerRecycle: number;
  /** Mean over recycled workers of the most connections each held at once (under keep-alive: when its drain began). */
  readonly heldPerRecycle: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Lost exchanges by mechanism, read from ab's columns (lossMechanisms). */
  readonly unreadReset: number;
  readonly resetAfterFin: number;
  readonly finNoReply: number;
  /**
   * The lost exchanges by how they ended on the wire: from a packet capture of a real run, from the
   * causes the simulator recorded for a simulated one (`WIRE_OF_CAUSE`). Absent without --capture.
   */
  readonly wire?: Record<WireLoss, number>;
  /** Packets the kernel dropped from the capture (its counts are then a lower bound). */
  readonly captureDropped?: number;
}

/**
 * The exchanges lost other than to a refused connect, as the wire shows them (real) or the simulator's
 * causes map to the same endings (simulated). Counted from the wire, not as ab's Length less the
 * refusals: a connect refused after ab's last request is on the wire but in none of ab's columns.
 */
export function lossesNotRefused(r: RunFigures): number {
  if (!r.wire) throw new Error('no wire classification: the losses other than refusals need --capture');
  return WIRE_LOSSES.filter((l) => l !== 'refused').reduce((sum, l) => sum + r.wire![l], 0);
}

/** A run's figure the tolerance holds (CalibrationReport.compared). */
export function comparedLosses(compared: CalibrationReport['compared'], r: RunFigures): number {
  return compared === 'lost' ? r.lost : lossesNotRefused(r);
}

/**
 * What each of the simulator's causes of a lost exchange looks like on the wire. A timeout or a
 * client that gave up is not a close (null): the capture has no such ending.
 */
export const WIRE_OF_CAUSE: Record<FailureMechanism, WireLoss | null> = {
  'unread-request-reset': 'unread-reset',
  'close-after-keepalive-response': 'reset-after-fin',
  'idle-close-race': 'reset-after-fin',
  'queued-at-close': 'reset-before-answer',
  'listener-refused': 'refused',
  // A kill or a fast stop resets what is in flight: after the connection's last response, or before its first.
  'graceful-timeout-kill': 'unread-reset',
  'fast-stop': 'unread-reset',
  'backlog-overflow': null,
  'syn-timeout': null,
  'stale-hang': null,
  'client-timeout': null,
  'accept-starved': null,
};

/**
 * What ab's columns say of how each exchange was lost (ab.c, as simulator/clients.ts `abFailureCounts`
 * reads it): an RST of a request nobody read counts Receive, Length and Exceptions; an RST after the
 * server's FIN (a request written into a closed keep-alive connection) Length and Exceptions; a FIN
 * and no reply, Length alone. So Receive counts the first, Exceptions − Receive the second and
 * Length − Exceptions the third — no packet capture needed, as long as no request timed out (a
 * timeout counts Exceptions alone; the seed's load has none).
 */
export function lossMechanisms(ab: { readonly receive: number; readonly length: number; readonly exceptions: number }): { unreadReset: number; resetAfterFin: number; finNoReply: number } {
  return {
    unreadReset: ab.receive,
    resetAfterFin: Math.max(0, ab.exceptions - ab.receive),
    finNoReply: Math.max(0, ab.length - ab.exceptions),
  };
}

/** The figures that are one number per run. */
type NumericFigure = { [K in keyof RunFigures]-?: RunFigures[K] extends number ? K : never }[keyof RunFigures];

export const FIGURES: readonly { readonly key: NumericFigure; readonly label: string; readonly digits: number }[] = [
  { key: 'abFailed', label: 'ab Failed', digits: 0 },
  { key: 'receive', label: '  Receive', digits: 0 },
  { key: 'length', label: '  Length', digits: 0 },
  { key: 'exceptions', label: '  Exceptions', digits: 0 },
  { key: 'lost', label: 'lost exchanges', digits: 0 },
  { key: 'unreadReset', label: '  RST of an unread request', digits: 0 },
  { key: 'resetAfterFin', label: '  FIN after a response, RST', digits: 0 },
  { key: 'finNoReply', label: '  FIN, no reply', digits: 0 },
  { key: 'recycles', label: 'recycled workers', digits: 0 },
  { key: 'lostPerRecycle', label: 'lost per recycle', digits: 1 },
  { key: 'heldPerRecycle', label: 'connections held at recycle', digits: 1 },
  { key: 'p50Ms', label: 'latency p50 (ms)', digits: 2 },
  { key: 'p99Ms', label: 'latency p99 (ms)', digits: 2 },
];

export interface CalibrationReport {
  readonly profile: string;
  readonly policy: string;
  readonly command: string;
  readonly server: ServerParams;
  readonly load: CalibrationLoad;
  readonly signals: readonly CalibrationSignal[];
  readonly fromProfile: readonly string[];
  readonly defaults: readonly string[];
  readonly real: readonly RunFigures[];
  /** Real runs that ab ended by itself (`AB_ABORT`) and that were run again: not among `real`. */
  readonly abortedRuns: number;
  readonly simulated: readonly { readonly seed: number; readonly figures: RunFigures }[];
  readonly tolerance: number;
  /** What the tolerance holds: every lost exchange (ab's Length), or those lost other than to refused connects (the wire's count). */
  readonly compared: 'lost' | 'lost-not-refused';
  readonly lostRealMedian: number;
  readonly lostSimulatedMedian: number;
  /** Whether the simulated median of lost exchanges lies within the tolerance of the real one. */
  readonly withinTolerance: boolean;
  /** `offBy`'s bootstrap interval at `OFF_BY_BOOTSTRAP.level` (null where the real median is 0): how sure the verdict is. */
  readonly offByInterval: { readonly low: number; readonly high: number } | null;
  /** The largest difference between the real and the simulated share of a loss mechanism (medians; the issue asks ≤ 0.15). */
  readonly mechanismShareGap: number;
}

/**
 * The server's mechanisms behind ab's three signatures: a request nobody read, reset; and a request
 * written into a keep-alive connection the server closed after its response — ab sees the FIN, and
 * the RST that follows only if it polls before it reads the EOF (a race of ab's loop: real runs show
 * both, the simulator counts the RST's POLLERR every time).
 */
const MECHANISMS: readonly ((r: RunFigures) => number)[] = [(r) => r.unreadReset, (r) => r.resetAfterFin + r.finNoReply];

/** Each mechanism's share of the losses, from the medians of its count. */
function shares(runs: readonly RunFigures[]): number[] {
  const counts = MECHANISMS.map((m) => median(runs.map(m)));
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total === 0 ? 0 : c / total));
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** How far the simulated median is from the real one, relatively: 0 where both are 0, +∞ where only the real one is. */
export function offBy(real: number, simulated: number): number {
  if (real === 0) return simulated === 0 ? 0 : Number.POSITIVE_INFINITY;
  return (simulated - real) / real;
}

/** The bootstrap behind `offByInterval`: how many resamples, from which seed, for which central share. */
export const OFF_BY_BOOTSTRAP = { level: 0.9, resamples: 4000, seed: 1 } as const;

/**
 * How far the simulated median could be from the real one, given how much the runs and the seeds
 * spread: a percentile bootstrap of `offBy(median of real, median of simulated)`, each side resampled
 * with replacement (`resamples` times, from a fixed seed: the same figures give the same interval).
 * The verdict stays the issue's (the medians, against the tolerance); the interval says whether that
 * many runs can tell: a real row's single runs spread by a fifth or more, so the median of nine
 * moves by a tenth between sets (simulator/README.md, "How sure a row's verdict is"). Null without
 * figures on either side, or where the real median is 0 (no relative distance).
 */
export function offByInterval(
  real: readonly number[],
  simulated: readonly number[],
  bootstrap: { readonly level: number; readonly resamples: number; readonly seed: number } = OFF_BY_BOOTSTRAP,
): { readonly low: number; readonly high: number } | null {
  if (real.length === 0 || simulated.length === 0 || median(real) === 0) return null;
  if (!(bootstrap.level > 0 && bootstrap.level < 1) || !(Number.isInteger(bootstrap.resamples) && bootstrap.resamples > 0)) {
    throw new Error(`a bootstrap needs 0 < level < 1 and a whole number of resamples > 0, got ${bootstrap.level} and ${bootstrap.resamples}`);
  }
  const rng = new Rng(bootstrap.seed);
  const resample = (values: readonly number[]) => median(values.map(() => values[rng.int(0, values.length - 1)]!));
  const offs = Array.from({ length: bootstrap.resamples }, () => offBy(resample(real), resample(simulated))).sort((a, b) => a - b);
  const tail = (1 - bootstrap.level) / 2;
  const at = (q: number) => offs[Math.min(offs.length - 1, Math.max(0, Math.round(q * (offs.length - 1))))]!;
  return { low: at(tail), high: at(1 - tail) };
}

/** |simulated − real| ≤ tolerance × real; a real 0 asks for a simulated 0. */
export function withinTolerance(real: number, simulated: number, tolerance: number): boolean {
  return Math.abs(simulated - real) <= tolerance * real;
}

/**
 * How many connections each worker held, sampled from outside; a worker's figure is the most it held
 * at once. Under a keep-alive load a worker's connections stay until it recycles, so that is what it
 * held when its drain began. (A figure from the samples just before its exit undercounts: its
 * connections close as it drains, and on two busy cores the samples come every 10–15 ms, not 5.)
 * A child that ended is a recycled worker unless its title only ever said spare (`quiesce: spare`):
 * `quiesce serve` retires its loaded spare at a HUP, and that process never served.
 */
export class HeldSampler {
  private readonly series = new Map<number, { ms: number; held: number }[]>();
  /** What each child's title has said: a spare until it says worker (a spare becomes one in place), then a worker for good. */
  private readonly roles = new Map<number, 'spare' | 'worker'>();
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly serverPid: number,
    private readonly port: number,
    everyMs: number,
    private readonly children: (pid: number) => number[] = childrenOf,
  ) {
    const startedAt = Date.now();
    this.done = (async () => {
      while (this.running) {
        const ms = Date.now() - startedAt;
        const pids = this.children(this.serverPid);
        for (const pid of pids) this.noteTitle(pid);
        for (const [pid, held] of connectionsHeld(pids, this.port)) {
          const s = this.series.get(pid) ?? [];
          s.push({ ms, held });
          this.series.set(pid, s);
        }
        await new Promise((r) => setTimeout(r, everyMs));
      }
    })();
  }

  /** A title read until it says worker: a spare becomes one in place (impl/worker-main.ts `become`). */
  private noteTitle(pid: number): void {
    if (this.roles.get(pid) === 'worker') return;
    const title = titleOf(pid);
    if (title?.startsWith('quiesce: worker')) this.roles.set(pid, 'worker');
    else if (title?.startsWith('quiesce: spare')) this.roles.set(pid, 'spare');
  }

  /** Stop; the workers seen at the start of the run and still alive at its end did not recycle. */
  async stop(): Promise<{ heldMost: number[] }> {
    this.running = false;
    await this.done;
    const lastMs = Math.max(0, ...[...this.series.values()].map((s) => s.at(-1)!.ms));
    const heldMost: number[] = [];
    for (const [pid, s] of this.series) {
      if (s.at(-1)!.ms >= lastMs) continue; // alive at the end
      if (this.roles.get(pid) === 'spare') continue; // a spare retired without serving
      heldMost.push(Math.max(...s.map((x) => x.held)));
    }
    return { heldMost };
  }
}

const SAMPLE_EVERY_MS = 5;

function abArgs(load: CalibrationLoad, url: string): string[] {
  return ['-n', String(load.requests), '-c', String(load.concurrency), '-k', '-r', '-s', String(load.timeoutS), url];
}

/**
 * ab's own end of a run: more than 10 failures counted, and then a connect that failed as ab looked
 * at it (ab.c: `if (bad++ > 10) { "Test aborted after 10 failures"; apr_err("apr_socket_connect()") }`).
 * Under a stop ab -r has failures aplenty, so the first connect that the kernel queued and then reset
 * before ab saw it complete (the listener's last copy closed meanwhile) ends the run where it is: what
 * ab counted so far is no run of the load. The simulated ab sees each connect complete as it does.
 */
const AB_ABORT = /Test aborted after 10 failures/;

/** ab's lines that say how it ended a run by itself, joined. */
export function abAbortLines(output: string): string {
  return output
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => AB_ABORT.test(line) || /^apr_\w+\(\)/.test(line))
    .join('; ');
}

/** At most this many of ab's own aborts in a row for one run, each run again, before calibrate gives up. */
const AB_ABORTS_PER_RUN = 3;

export class AbAbortedError extends Error {}

/**
 * `runs` real runs, one after another; a run ab ended by itself is run again, up to `AB_ABORTS_PER_RUN`
 * times in a row. `log` hears of each run and each abort, `onAborted` of the aborts alone.
 */
export async function realRuns<T>(runs: number, runOnce: () => Promise<T>, log: (line: string) => void, onAborted: (line: string) => void = () => {}): Promise<{ figures: T[]; abortedRuns: number }> {
  const figures: T[] = [];
  let abortedRuns = 0;
  for (let i = 0; i < runs; i++) {
    log(`real run ${i + 1} of ${runs}`);
    for (let attempt = 1; ; attempt++) {
      try {
        figures.push(await runOnce());
        break;
      } catch (error) {
        if (!(error instanceof AbAbortedError) || attempt >= AB_ABORTS_PER_RUN) throw error;
        abortedRuns++;
        const line = `real run ${i + 1}: ab ended it by itself (${error.message}); run again`;
        log(line);
        onAborted(line);
      }
    }
  }
  return { figures, abortedRuns };
}

/** One real run: the server started, ab to the end, the server stopped. */
export async function realRun(options: CalibrationOptions): Promise<RunFigures> {
  const target = parseBind(options.bind);
  if (!('port' in target)) throw new Error("calibrate needs a TCP --bind (host:port): it reads the connections from the kernel's TCP table");
  const sut = commandServer(options.command.split('{bind}').join(options.bind), options.bind);
  const server = sut.start(options.server, options.cwd);
  try {
    await sut.listening(server, 30_000);
    const captureDir = options.capture ? tempDir('quiesce-capture-') : null;
    const capture = captureDir ? new LoopbackCapture(join(captureDir, 'run.pcap'), target.port) : null;
    await capture?.ready();
    const sampler = new HeldSampler(server.pid, target.port, SAMPLE_EVERY_MS);
    const abDone = runAb(abArgs(options.load, `http://${options.bind}/`));
    // As an operator would: kill(2) on the server's main process, at the planned moments of the run.
    const timers = (options.signals ?? []).map(({ atMs, signal }) => setTimeout(() => {
      try {
        process.kill(server.pid, `SIG${signal}`);
      } catch {
        // gone already (an earlier TERM stopped it)
      }
    }, atMs));
    let ab: Awaited<typeof abDone>;
    let dropped = 0;
    try {
      ab = await abDone.finally(() => timers.forEach(clearTimeout));
    } finally {
      // Stopped whatever ab did: a tcpdump left running would capture the next run's port too.
      if (capture) dropped = (await capture.stop()).droppedByKernel;
    }
    const held = await sampler.stop();
    try {
      if (AB_ABORT.test(ab.output)) throw new AbAbortedError(abAbortLines(ab.output));
      if (ab.code !== 0 && !Number.isFinite(ab.complete)) throw new Error(`ab failed:\n${ab.output.slice(-2000)}`);
      const figures = figuresOf(ab, held.heldMost, ab.p50Ms, ab.p99Ms);
      if (!capture) return figures;
      return { ...figures, wire: classifyLosses(capture.segments(target.port)).losses, captureDropped: dropped };
    } finally {
      // Megabytes a run: what it says is in the figures now (or the run is not kept).
      if (captureDir) rmSync(captureDir, { recursive: true, force: true });
    }
  } finally {
    await stopGracefully(server);
  }
}

/** One run's figures from ab's columns (real or simulated), its recycles, the connections each recycled worker held, and its latency. */
function figuresOf(ab: { readonly failed: number; readonly receive: number; readonly length: number; readonly exceptions: number }, held: readonly number[], p50Ms: number, p99Ms: number): RunFigures {
  const recycles = held.length;
  return {
    abFailed: ab.failed,
    receive: ab.receive,
    length: ab.length,
    exceptions: ab.exceptions,
    lost: ab.length,
    recycles,
    lostPerRecycle: recycles > 0 ? ab.length / recycles : 0,
    heldPerRecycle: mean(held),
    p50Ms,
    p99Ms,
    ...lossMechanisms(ab),
  };
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

/** The simulator's parameters for a calibration: the seed's recycle scenario with this server, load and profile. */
export function simulatedParams(options: Pick<CalibrationOptions, 'server' | 'load' | 'profile' | 'signals'>): { params: ScenarioParams; fromProfile: readonly string[]; defaults: readonly string[] } {
  const base = structuredClone(getScenario('keepalive-recycle').params);
  base.server = { ...options.server };
  base.load = { kind: 'ab', requests: options.load.requests, concurrency: options.load.concurrency, keepAlive: true, timeoutMs: options.load.timeoutS * 1000 };
  base.signals = (options.signals ?? []).map((s) => ({ ...s }));
  return applyProfile(base, options.profile);
}

/**
 * One simulated run with the same figures. As on the real side, a recycled worker is one that ended
 * while the load ran (max-requests, a reload, a stop), and what it held is the most it held at once.
 * It ended, for both, when the arbiter reaped it: the sampler lists a zombie among the arbiter's
 * children (its /proc entry stays until the reap), and a gunicorn worker's reap comes hundreds of ms
 * after its exit — one that recycles as the load ends is not seen ended by either.
 */
export function simulatedRun(policy: string, params: ScenarioParams, seed: number): RunFigures {
  const open = new Map<string, string>();
  const holding = new Map<string, { now: number; most: number }>();
  const ended: { readonly atMs: number; readonly held: number }[] = [];
  const onEvent = (e: TraceEvent) => {
    if (e.type === 'conn.open') {
      open.set(e.actor, e.worker);
      const h = holding.get(e.worker) ?? { now: 0, most: 0 };
      h.now++;
      h.most = Math.max(h.most, h.now);
      holding.set(e.worker, h);
    } else if (e.type === 'conn.close') {
      const worker = open.get(e.actor);
      open.delete(e.actor);
      if (worker !== undefined) holding.get(worker)!.now--;
    } else if (e.type === 'arbiter.reap') ended.push({ atMs: e.t, held: holding.get(e.worker)?.most ?? 0 });
  };
  const result = runScenario({ scenario: 'calibration', policy, seed, params, onEvent });
  const wire = Object.fromEntries(WIRE_LOSSES.map((l) => [l, 0])) as Record<WireLoss, number>;
  for (const [cause, tally] of Object.entries(result.stats.byMechanism) as [FailureMechanism, { count: number }][]) {
    const loss = WIRE_OF_CAUSE[cause];
    if (loss !== null) wire[loss] += tally.count;
  }
  const loadEndMs = result.loadEndMs ?? Number.POSITIVE_INFINITY;
  const heldAtRecycle = ended.filter((w) => w.atMs <= loadEndMs).map((w) => w.held);
  return { ...figuresOf(result.stats.ab, heldAtRecycle, result.stats.latency.percentileMs(50), result.stats.latency.percentileMs(99)), wire };
}

/** What a profile's own measuring run lost, beside the simulator given that profile under the run's load. */
export interface OwnRunCheck {
  readonly policy: string;
  readonly requests: number;
  /** The run's exchanges lost (ab's Length): `measuredRunLost`. */
  readonly real: number;
  /** The simulated runs' lost, one a seed, and their median. */
  readonly simulated: readonly number[];
  readonly simulatedMedian: number;
}

/**
 * The simulator against the run a profile's numbers describe (`measuredRunLost`): the same server (the
 * calibration's, which `profile:measure` runs: `MEASURE_SERVER` is `SEED_CALIBRATION.server`) at the
 * run's workers, the same load (`MEASURE_LOAD`), the same policy. Apart from
 * a later run's day, this is the model's own error. Null: the profile keeps no such run.
 */
export function ownRunCheck(profile: Profile, seeds: readonly number[]): OwnRunCheck | null {
  const run = profile.measuredRunLost;
  if (run === undefined) return null;
  const { params } = simulatedParams({ server: { ...SEED_CALIBRATION.server, workers: run.workers }, load: { ...MEASURE_LOAD, requests: run.requests }, profile, signals: [] });
  const simulated = seeds.map((seed) => simulatedRun(run.policy, params, seed).lost);
  return { policy: run.policy, requests: run.requests, real: run.lost, simulated, simulatedMedian: median(simulated) };
}

export async function calibrate(options: CalibrationOptions): Promise<CalibrationReport> {
  if (options.withoutRefused && !options.capture) throw new Error('withoutRefused needs capture: only the wire tells a refused connect from another loss ab counts alike');
  const log = options.log ?? (() => {});
  const { params, fromProfile, defaults } = simulatedParams(options);
  const simulated = options.seeds.map((seed) => ({ seed, figures: simulatedRun(options.policy, params, seed) }));
  await assertAddressFree(options.bind);
  const { figures: real, abortedRuns } = await realRuns(options.runs, () => realRun(options), log, options.onAbortedRun);
  const compared = options.withoutRefused ? 'lost-not-refused' : 'lost';
  const lostReal = real.map((r) => comparedLosses(compared, r));
  const lostSimulated = simulated.map((s) => comparedLosses(compared, s.figures));
  const lostRealMedian = median(lostReal);
  const lostSimulatedMedian = median(lostSimulated);
  return {
    profile: options.profile.name,
    policy: options.policy,
    command: fillCommand(options.command.split('{bind}').join(options.bind), options.server),
    server: options.server,
    load: options.load,
    signals: options.signals ?? [],
    fromProfile,
    defaults,
    real,
    abortedRuns,
    simulated,
    tolerance: options.tolerance,
    compared,
    lostRealMedian,
    lostSimulatedMedian,
    withinTolerance: withinTolerance(lostRealMedian, lostSimulatedMedian, options.tolerance),
    offByInterval: offByInterval(lostReal, lostSimulated),
    mechanismShareGap: Math.max(...MECHANISMS.map((_, i) => Math.abs(shares(real)[i]! - shares(simulated.map((x) => x.figures))[i]!))),
  };
}

/** `lo–hi (median m)` of a figure over runs or seeds, to `digits` places. */
export function range(values: readonly number[], digits: number): string {
  const f = (x: number) => x.toFixed(digits);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return `${lo === hi ? f(lo) : `${f(lo)}–${f(hi)}`} (median ${f(median(values))})`;
}

/** A relative distance as a signed whole percent: "+17 %", "-4 %", "0 %", "+∞". */
export function formatOffBy(off: number): string {
  if (off === Number.POSITIVE_INFINITY) return '+∞';
  const percent = Math.round(off * 100);
  return `${percent > 0 ? '+' : ''}${percent === 0 ? 0 : percent} %`;
}

/** A bootstrap interval of `offBy`, its ends alone: "-12 % … +45 %" (the matrix's cell). */
export function formatOffByRange(interval: { readonly low: number; readonly high: number }): string {
  return `${formatOffBy(interval.low)} … ${formatOffBy(interval.high)}`;
}

/** A bootstrap interval of `offBy`, as the reports print it: "90 % bootstrap interval -12 % … +45 %". */
export function formatOffByInterval(interval: { readonly low: number; readonly high: number }): string {
  return `${Math.round(OFF_BY_BOOTSTRAP.level * 100)} % bootstrap interval ${formatOffByRange(interval)}`;
}

export function formatCalibration(r: CalibrationReport): string {
  const lines = [
    `calibrate: ${r.command}`,
    `  policy ${r.policy}, profile ${r.profile} (measured: ${r.fromProfile.join(', ') || 'nothing'}; defaults: ${r.defaults.join(', ')})`,
    `  load: ab -n ${r.load.requests} -c ${r.load.concurrency} -k -r -s ${r.load.timeoutS}; ${r.server.workers} workers × ${r.server.threads} threads, keep-alive ${r.server.keepAliveMs / 1000} s, max-requests ${r.server.maxRequests} (jitter ${r.server.maxRequestsJitter})${r.signals.length > 0 ? `; ${r.signals.map((s) => `${s.signal} at ${s.atMs} ms`).join(', ')}` : ''}`,
    '',
    `  ${'figure'.padEnd(28)} ${`real, ${r.real.length} runs`.padEnd(30)} ${`simulated, seeds ${r.simulated.map((s) => s.seed).join(',')}`}`,
  ];
  for (const { key, label, digits } of FIGURES) {
    lines.push(`  ${label.padEnd(28)} ${range(r.real.map((x) => x[key]), digits).padEnd(30)} ${range(r.simulated.map((s) => s.figures[key]), digits)}`);
  }
  if (r.real.every((x) => x.wire !== undefined)) {
    const dropped = Math.max(...r.real.map((x) => x.captureDropped ?? 0));
    lines.push(`  on the wire (tcpdump; the simulator's causes)${dropped > 0 ? ` — the kernel dropped up to ${dropped} packets: a lower bound` : ''}`);
    for (const loss of WIRE_LOSSES) {
      lines.push(`  ${`  ${WIRE_LOSS_LABELS[loss]}`.padEnd(28)} ${range(r.real.map((x) => x.wire![loss]), 0).padEnd(30)} ${range(r.simulated.map((s) => s.figures.wire?.[loss] ?? 0), 0)}`);
    }
  }
  const interval = r.offByInterval ? `; ${formatOffByInterval(r.offByInterval)}` : '';
  const off = r.lostRealMedian === 0 ? '' : ` (${formatOffBy(offBy(r.lostRealMedian, r.lostSimulatedMedian))}${interval})`;
  lines.push(
    '',
    `  ${r.compared === 'lost' ? 'lost exchanges' : 'lost on the wire, refused connects left out'}, medians: real ${r.lostRealMedian}, simulated ${r.lostSimulatedMedian}${off}: ${r.withinTolerance ? 'within' : 'OUTSIDE'} ±${Math.round(r.tolerance * 100)} %`,
    `  shares of the losses by mechanism (an unread request reset; a request into a connection closed after its response) differ by ${r.mechanismShareGap.toFixed(2)} (printed, not asserted)`,
  );
  if (r.abortedRuns > 0) lines.push(`  ab ended ${r.abortedRuns} real run(s) by itself ("Test aborted after 10 failures": a connect reset before ab saw it complete), each run again`);
  return lines.join('\n') + '\n';
}
