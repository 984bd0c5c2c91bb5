/**
 * The seeds' scenarios. Names are part of the interface (`--scenario`).
 * Each sets server parameters, network timings, a load, and the signals sent
 * during the load; every parameter can be overridden. After the load ends
 * the server gets TERM and the run continues until nothing is left to
 * happen (the liveness phase), so every trace is complete.
 */
import type { RequestRow } from './request-rows.ts';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from '../model/params.ts';

export type Load =
  | {
      kind: 'ab';
      requests: number;
      concurrency: number;
      keepAlive: boolean;
      timeoutMs: number;
      /** Pause before reusing a keep-alive connection. ab has none (0); a pooled client (a proxy, a browser) does. */
      thinkMs?: number;
    }
  | { kind: 'proxy'; ratePerSec: number; durationMs: number; connectTimeoutMs: number; readTimeoutMs: number };

export interface ScenarioParams {
  server: ServerParams;
  load: Load;
  latencyMs: number;
  bootMs: number;
  /** Service time: uniform in [min, max]; or, when a profile gives them, drawn from measured percentiles. */
  serviceMinMs: number;
  serviceMaxMs: number;
  /** The 101 percentiles (0, 1, …, 100) of a measured service time, ms (simulator/profiles.ts). */
  servicePercentilesMs?: number[];
  /**
   * The 101 percentiles of how long a readable kept-alive connection waits for the worker's loop to
   * hand it to a thread (policies with `pollerDispatch`), ms; absent: at once.
   */
  dispatchPercentilesMs?: number[];
  /** The 101 percentiles of how long a thread that read a request takes to start its handler, ms; absent: at once. */
  pickupPercentilesMs?: number[];
  /** The 101 percentiles of how long an answered keep-alive connection takes to get back to the poller, ms; absent: at once. */
  returnPercentilesMs?: number[];
  /**
   * The 101 percentiles of a worker's loop turn between two accepts, ms: a worker takes one queued
   * connection a turn (gthread's accept callback), the first after a readable connection's poll wait;
   * absent: every queued connection at once.
   */
  acceptTurnPercentilesMs?: number[];
  /**
   * The 101 percentiles of the time between an arbiter's successive kill(2)s of one signalling (the
   * workers it wakes take the CPU from it), ms; absent: it signals them all in one instant.
   */
  killGapPercentilesMs?: number[];
  /** The 101 percentiles of the time from a kill(2) to the worker's handler running, ms; absent: at once. */
  signalHandlerPercentilesMs?: number[];
  /**
   * The 101 percentiles of the time from the loop turn in which a worker stops (its poll returned after
   * the drain began) to its close of the listener copy — the rest of that turn — ms; absent: at once.
   */
  closeAfterTurnPercentilesMs?: number[];
  /** The same for a worker that stops on its own (max-requests), ms; absent: at once. */
  closeAfterRecycleTurnPercentilesMs?: number[];
  /** The 101 percentiles of a stopping worker's listener close → its exit, ms: its exit comes no earlier; absent: as its waits end. */
  exitAfterClosePercentilesMs?: number[];
  /** The 101 percentiles of a HUP → the arbiter's first SIGTERM of its reload (the spawn loop before it), ms; absent: at once. */
  reloadKillDelayPercentilesMs?: number[];
  /** The 101 percentiles of how long before a reload's SIGTERM its worker's loop stopped handing over, ms; absent: at the kill. */
  reloadStallBeforeKillPercentilesMs?: number[];
  /** The 101 percentiles of the time from a graceful exit's decision to the process gone (its fds closed), ms; absent: at once. */
  teardownPercentilesMs?: number[];
  /** The 101 percentiles of the time from a graceful exit's teardown (its connections closed) to the arbiter's reap, ms; absent: at once. */
  reapAfterTeardownPercentilesMs?: number[];
  /** Graceful exits whole, as measured: each row a teardown and the reap after it, ms. Present: each exit draws a row, and the two distributions above are not drawn. */
  gracefulExitRowsMs?: [number, number][];
  /** The 101 percentiles of the time from a worker's fork to it ready to accept, ms; absent: `bootMs`. */
  forkToReadyPercentilesMs?: number[];
  /**
   * The arbiter's forks one after another (simulator/server.ts `ServerTiming.forkQueue`): the 101
   * percentiles of a vacancy's reap → its fork where no fork was queued, and of the gap between
   * successive forks of one spawn loop, ms; absent: every fork at the chart's decision.
   */
  forkQueuePercentilesMs?: { wakeMs: number[]; gapMs: number[] };
  /** The share of recycles whose flip of alive finds the worker's loop past its poll (the turn ends without another); absent: none (in its poll). */
  recyclePastPollShare?: number;
  /**
   * At a recycle whose poller holds something readable (simulator/server.ts `ServerTiming.recycleReturn`):
   * the share of flips that find the loop's select woken by the kernel, its thread not back, and the
   * 101 percentiles of how long before the other flips the select last returned, ms. Absent: the return
   * is placed from the connections' rows.
   */
  recycleReturn?: { selectWokenShare: number; lastReturnAgePercentilesMs: number[] };
  /**
   * The share of stopping signals (a stop's TERM, a reload's) whose kill stops a worker's loop until the
   * handler runs: it hands nothing over meanwhile (simulator/server.ts `signalStopsLoop`); absent: none.
   */
  signalStopsLoopShare?: number;
  /**
   * Requests whole, as measured: each row a request's poll wait, thread pickup, service and return, ms,
   * and whether its connection came back to the poller with it in (simulator/profile-schema.ts
   * `keptAliveRequestsMs`). Present: each request draws a row, and the four distributions above are
   * not drawn.
   */
  requestRowsMs?: RequestRow[];
  /**
   * The 101 percentiles of the client's turnaround — a response on the wire to its next request on the
   * wire, less the network's round trip — ms; absent: the client answers at once (NetworkParams).
   */
  clientTurnaroundPercentilesMs?: number[];
  /**
   * The machine's CPU, where a profile measured the work (simulator/cpu.ts): each request and each
   * worker boot takes its CPU on `cores` shared with everything that runs, in place of a drawn service
   * time and `bootMs`; the client spends its own per response. Absent: the measured times.
   */
  cpu?: CpuParams;
  loopTickMs: number;
  /** Client and server on one host (127.0.0.1, a unix socket): see NetworkParams.loopback. */
  loopback: boolean;
  /** Signals sent during the run, at ms after the load starts. */
  signals: ScheduledSignal[];
}

export interface CpuParams {
  cores: number;
  /** CPU ms a worker spends on a request. */
  requestWorkMs: number;
  /** CPU ms a new worker process spends to be ready to serve. */
  bootWorkMs: number;
  /** CPU ms the client spends on each response it reads. */
  clientWorkMs: number;
  /** Processes the arbiter keeps booted ahead of need (impl/arbiter.ts's spares). */
  spares: number;
  /** From a spawn to a loaded spare serving as the worker, ms (absent: at once). */
  spareActivationMs?: number;
  /** A worker is one thread, an event loop: a request is read when that thread gets to it (the profile's `singleThreadedLoop`). */
  readsInTurn?: boolean;
}

/**
 * When the first workers are ready, from the arbiter's start: with the CPU shared, every first worker
 * and spare boots at once on the cores; else the measured boot.
 */
export function firstWorkersReadyMs(params: ScenarioParams): number {
  const cpu = params.cpu;
  if (!cpu) return params.bootMs;
  const booting = params.server.workers + cpu.spares;
  return (booting * cpu.bootWorkMs) / Math.min(cpu.cores, booting);
}

/** The signals an operator sends to a running server's main process, as its supervisor would. */
export const OPERATOR_SIGNALS = ['TERM', 'HUP', 'TTIN', 'TTOU', 'INT', 'QUIT'] as const;

/**
 * A signal at a moment: to the arbiter (what an operator or a supervisor sends), or — with `worker` —
 * to a worker process from outside (an OOM killer's KILL, a debugger's STOP and CONT): `worker` is an
 * index into the live workers at that moment, oldest first, taken modulo their number.
 */
export type ScheduledSignal =
  | { readonly atMs: number; readonly signal: (typeof OPERATOR_SIGNALS)[number] }
  | { readonly atMs: number; readonly signal: 'KILL' | 'STOP' | 'CONT'; readonly worker: number };

export interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly params: ScenarioParams;
  /** A run at scale (millions of requests): not part of the seed table; run it by name. */
  readonly scale?: boolean;
}

const AB_SEED_LOAD: Load = { kind: 'ab', requests: 10_000, concurrency: 20, keepAlive: true, timeoutMs: 1000 };

const GTHREAD_SEED_SERVER: ServerParams = {
  ...DEFAULT_SERVER_PARAMS,
  workers: 4,
  threads: 20,
  keepAliveMs: 2000,
  maxRequests: 512,
  backlog: 2048,
  somaxconn: 4096,
};

const LOOPBACK = { latencyMs: 0.05, bootMs: 150, serviceMinMs: 1, serviceMaxMs: 4, loopTickMs: 1000, loopback: true };

const BACKLOG_SEED_SERVER: ServerParams = {
  ...DEFAULT_SERVER_PARAMS,
  workers: 1,
  threads: 1,
  family: 'unix',
  backlog: 2048,
  somaxconn: 128,
};

/** vegeta -rate=200 -duration=1s through nginx; the seed ran vegeta with -timeout=500s and nginx waited as long. */
const BACKLOG_SEED_LOAD: Load = { kind: 'proxy', ratePerSec: 200, durationMs: 1000, connectTimeoutMs: 60_000, readTimeoutMs: 500_000 };

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'keepalive-recycle',
    description: "the seed's experiment: 4 workers × 20 threads, keep-alive 2 s, max-requests 512, ab -n 10000 -c 20 -s 1 -k -r",
    params: { ...LOOPBACK, server: GTHREAD_SEED_SERVER, load: AB_SEED_LOAD, signals: [] },
  },
  {
    name: 'keepalive-recycle-ka0',
    description: 'the same with keep-alive 0 (every response closes)',
    params: { ...LOOPBACK, server: { ...GTHREAD_SEED_SERVER, keepAliveMs: 0 }, load: AB_SEED_LOAD, signals: [] },
  },
  {
    name: 'reload-under-load',
    description: 'HUP three times, 1 s apart, during an ab -k run',
    params: {
      ...LOOPBACK,
      server: { ...GTHREAD_SEED_SERVER, maxRequests: 0 },
      load: { ...AB_SEED_LOAD, requests: 20_000 },
      signals: [500, 1500, 2500].map((atMs) => ({ atMs, signal: 'HUP' as const })),
    },
  },
  {
    name: 'term-under-load',
    description: 'TERM in the middle of an ab -k run',
    params: { ...LOOPBACK, server: { ...GTHREAD_SEED_SERVER, maxRequests: 0 }, load: AB_SEED_LOAD, signals: [{ atMs: 1000, signal: 'TERM' }] },
  },
  {
    name: 'backlog-unix',
    description: 'the backlog seed: nginx → unix socket, 1 sync worker, 2 s per request, 200 requests over 1 s, somaxconn 128',
    params: { ...LOOPBACK, serviceMinMs: 2000, serviceMaxMs: 2000, server: BACKLOG_SEED_SERVER, load: BACKLOG_SEED_LOAD, signals: [] },
  },
  {
    name: 'backlog-unix-1024',
    description: 'the same with somaxconn 1024: nothing overflows',
    params: { ...LOOPBACK, serviceMinMs: 2000, serviceMaxMs: 2000, server: { ...BACKLOG_SEED_SERVER, somaxconn: 1024 }, load: BACKLOG_SEED_LOAD, signals: [] },
  },
  {
    name: 'backlog-tcp',
    description: 'the same over TCP with backlog 16: SYN retransmits, latency and 504s instead of 502',
    params: {
      ...LOOPBACK,
      serviceMinMs: 200,
      serviceMaxMs: 200,
      server: { ...BACKLOG_SEED_SERVER, family: 'tcp', backlog: 16 },
      load: { ...BACKLOG_SEED_LOAD, readTimeoutMs: 60_000 },
      signals: [],
    },
  },
  {
    name: 'stale-keepalive',
    description: 'HUP while ab -k holds keep-alive sockets (keep-alive 70 s): requests on sockets nobody will serve',
    params: {
      ...LOOPBACK,
      server: { ...GTHREAD_SEED_SERVER, workers: 2, threads: 4, keepAliveMs: 70_000, maxRequests: 0 },
      load: { kind: 'ab', requests: 3000, concurrency: 8, keepAlive: true, timeoutMs: 5000 },
      signals: [{ atMs: 400, signal: 'HUP' }],
    },
  },
  {
    name: 'keepalive-recycle-1m',
    description: "the seed's experiment at scale: 1,000,000 requests (ab -n 1000000 -c 20 -k) through recycling workers",
    params: { ...LOOPBACK, server: GTHREAD_SEED_SERVER, load: { ...AB_SEED_LOAD, requests: 1_000_000 }, signals: [] },
    scale: true,
  },
  {
    name: 'open-loop-24h',
    description: 'a day of open-loop traffic at 200 req/s through nginx (a new upstream connection each), with a HUP every hour',
    params: {
      ...LOOPBACK,
      server: { ...GTHREAD_SEED_SERVER, maxRequests: 0 },
      load: { kind: 'proxy', ratePerSec: 200, durationMs: 24 * 3_600_000, connectTimeoutMs: 60_000, readTimeoutMs: 60_000 },
      signals: Array.from({ length: 23 }, (_, i) => ({ atMs: (i + 1) * 3_600_000, signal: 'HUP' as const })),
    },
    scale: true,
  },
];

/** The seeds' scenarios: the default table. */
export const SEED_SCENARIO_NAMES: readonly string[] = SCENARIOS.filter((s) => !s.scale).map((s) => s.name);

export const SCENARIO_NAMES: readonly string[] = SCENARIOS.map((s) => s.name);

export class UnknownScenarioError extends Error {
  constructor(readonly input: string) {
    super(`unknown scenario "${input}"; expected one of: ${SCENARIO_NAMES.join(', ')}`);
    this.name = 'UnknownScenarioError';
  }
}

export function getScenario(name: string): Scenario {
  const scenario = SCENARIOS.find((s) => s.name === name);
  if (!scenario) throw new UnknownScenarioError(name);
  return scenario;
}
