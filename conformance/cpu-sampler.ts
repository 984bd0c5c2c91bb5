/**
 * What the processes of a server under load spend of the CPU, read from /proc while the load runs:
 * the work the simulator's shared CPU takes (simulator/cpu.ts), measured rather than inferred from
 * times. A `quiesce serve` arbiter's children are sampled every 10 ms, each with its title, so a
 * process is seen booting as a spare (`quiesce: spare`) and then serving as a worker.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { cpuOf, titleOf } from './process.ts';

/** The kernel counts CPU in ticks of 10 ms (USER_HZ 100): sampling faster adds nothing but the sampler's own load on the cores it measures. */
export const CPU_SAMPLE_INTERVAL_MS = 10;

/** One child process of the arbiter, as the samples saw it. */
export interface SampledProcess {
  readonly pid: number;
  /** CPU ms when first seen (a process started during the run: its first few ms). */
  readonly firstCpuMs: number;
  /** Whether it was first seen before it was a worker: starting (no title of ours yet), or a spare. */
  readonly firstSeenBooting: boolean;
  /** CPU ms at its last sample before it was a worker: its boot (a spare that is ready waits without CPU); null: never seen so. */
  readonly bootCpuMs: number | null;
  /** CPU ms at its first and last sample as a worker; null: never seen as one. */
  readonly workerFirstCpuMs: number | null;
  readonly workerLastCpuMs: number | null;
  /** On the sampler's clock (ms): first seen titled a spare (its app loaded), titled a worker, and exited (a zombie, or gone). */
  readonly spareAtMs: number | null;
  readonly workerAtMs: number | null;
  readonly exitedAtMs: number | null;
}

export interface CpuSamples {
  readonly processes: readonly SampledProcess[];
  /** Processes titled spares in the last sample: booted ahead of need, waiting (at rest, where no worker was replaced lately). */
  readonly sparesAtEnd: number;
  /** The client's CPU ms over the run (its last sample; null: not tracked or never seen). */
  readonly clientCpuMs: number | null;
  readonly samples: number;
}

/** A process as the sampler keeps it while it looks: the same fields, filled in as it goes. */
type Tracked = { -readonly [K in keyof SampledProcess]: SampledProcess[K] };

export class CpuSampler {
  private readonly tracked = new Map<number, Tracked>();
  private clientPid: number | null = null;
  private clientCpuMs: number | null = null;
  private sparesNow = 0;
  private samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly arbiterPid: number,
    intervalMs = CPU_SAMPLE_INTERVAL_MS,
    /** Lists the arbiter's children (a test gives its own, to omit one as the kernel may). */
    private readonly listChildren: (pid: number) => number[] = childrenFromTaskFiles,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Also sample the client (ab), from its start. */
  trackClient(pid: number): void {
    this.clientPid = pid;
  }

  stop(): CpuSamples {
    clearInterval(this.timer);
    this.sample();
    return {
      processes: [...this.tracked.values()],
      sparesAtEnd: this.sparesNow,
      clientCpuMs: this.clientCpuMs,
      samples: this.samples,
    };
  }

  private sample(): void {
    this.samples++;
    const nowMs = performance.now();
    let spares = 0;
    const children = [...this.listChildren(this.arbiterPid)];
    // A worker missing from the list was reaped since the last sample — or the list left it out: the
    // children files omit live children when another exits as they are read (proc_tid_children(5)),
    // which is what recycling workers do. Only /proc's own word that it is gone (or a zombie) is an exit.
    const present = new Set(children);
    for (const seen of this.tracked.values()) {
      if (seen.workerAtMs === null || seen.exitedAtMs !== null || present.has(seen.pid)) continue;
      const stat = cpuOf(seen.pid);
      if (stat === null || stat.state === 'Z') seen.exitedAtMs = nowMs;
      else children.push(seen.pid);
    }
    for (const pid of children) {
      let seen = this.tracked.get(pid);
      // A worker's title stays until it exits: only a process not yet one needs its title read.
      const title = seen?.workerFirstCpuMs == null ? titleOf(pid) : 'quiesce: worker';
      if (title === null) continue; // gone
      const stat = cpuOf(pid);
      if (stat === null) continue;
      const cpuMs = stat.cpuMs;
      const worker = title.startsWith('quiesce: worker');
      if (title.startsWith('quiesce: spare')) spares++;
      if (!seen) {
        seen = { pid, firstCpuMs: cpuMs, firstSeenBooting: !worker, bootCpuMs: null, workerFirstCpuMs: null, workerLastCpuMs: null, spareAtMs: null, workerAtMs: null, exitedAtMs: null };
        this.tracked.set(pid, seen);
      }
      if (title.startsWith('quiesce: spare')) seen.spareAtMs ??= nowMs;
      if (worker) seen.workerAtMs ??= nowMs;
      if (stat.state === 'Z' && seen.workerAtMs !== null) seen.exitedAtMs ??= nowMs;
      // Before its title says worker it is starting or a spare: booting, or booted and waiting.
      if (seen.workerFirstCpuMs === null && !worker) seen.bootCpuMs = cpuMs;
      else {
        seen.workerFirstCpuMs ??= cpuMs;
        seen.workerLastCpuMs = cpuMs;
      }
    }
    this.sparesNow = spares;
    if (this.clientPid !== null) this.clientCpuMs = cpuOf(this.clientPid)?.cpuMs ?? this.clientCpuMs;
  }
}

/** What the samples say of the work: per request served, per boot, per client response. */
export interface MeasuredWork {
  /** Workers' CPU while workers, over the requests served. */
  readonly requestWorkMs: number;
  /** Each process seen booting from its start: CPU at its last sample as a spare. */
  readonly bootWorkMs: readonly number[];
  readonly clientWorkMs: number | null;
  readonly sparesAtEnd: number;
}

export function measuredWork(samples: CpuSamples, requestsServed: number, clientRequests: number): MeasuredWork {
  if (!(requestsServed > 0)) throw new Error(`no requests were served (${requestsServed}): no work per request to measure`);
  let servingMs = 0;
  const bootWorkMs: number[] = [];
  for (const p of samples.processes) {
    if (p.workerFirstCpuMs !== null && p.workerLastCpuMs !== null) {
      // A worker already serving when the samples began counts from there; one that became a worker during the run, from its boot's end.
      servingMs += p.workerLastCpuMs - (p.firstSeenBooting ? (p.bootCpuMs ?? p.workerFirstCpuMs) : p.firstCpuMs);
    }
    // Booted in full under the samples' eyes: seen from its start, and then as a worker (a spare still
    // booting at the end is not whole; one ready and waiting is, but a worker's title says so for certain).
    if (p.firstSeenBooting && p.bootCpuMs !== null && p.workerFirstCpuMs !== null && p.firstCpuMs <= BOOT_SEEN_FROM_START_MS) bootWorkMs.push(p.bootCpuMs);
  }
  return {
    requestWorkMs: servingMs / requestsServed,
    bootWorkMs,
    clientWorkMs: samples.clientCpuMs === null ? null : samples.clientCpuMs / clientRequests,
    sparesAtEnd: samples.sparesAtEnd,
  };
}

/** A process first seen with at most this much CPU was seen from its start (one tick of the kernel's clock, and the sampling's gap). */
const BOOT_SEEN_FROM_START_MS = 20;

/**
 * A loaded spare becoming a worker under load: from a worker's exit (the arbiter spawns its replacement
 * as it reaps it) to the spare that replaces it titled a worker (it has its identity and the listener
 * copies: impl/worker-main.ts `become`), for the replacements whose spare had its app loaded before the
 * exit — the others waited for their boot. Exits and becomings are paired in order, as the arbiter
 * takes its spares (`exitsToReady`'s rule). At the sampling's resolution.
 */
export function spareActivations(samples: CpuSamples): number[] {
  const exits = samples.processes.flatMap((p) => (p.exitedAtMs === null ? [] : [p.exitedAtMs])).sort((a, b) => a - b);
  const becomings = samples.processes
    .filter((p) => p.workerAtMs !== null && p.firstSeenBooting)
    .sort((a, b) => a.workerAtMs! - b.workerAtMs!);
  const activations: number[] = [];
  let next = 0;
  for (const exitMs of exits) {
    while (next < becomings.length && becomings[next]!.workerAtMs! < exitMs) next++;
    const replacement = becomings[next++];
    if (!replacement) break;
    if (replacement.spareAtMs !== null && replacement.spareAtMs <= exitMs) activations.push(replacement.workerAtMs! - exitMs);
  }
  return activations;
}

/**
 * The children of `pid`, from each of its threads' /proc/<pid>/task/<tid>/children (a child is its
 * forking thread's): a read a thread, fast enough for a sample every 10 ms — where `childrenOf`
 * (process.ts) reads every process's stat — but not reliable while children exit
 * (proc_tid_children(5)); the sampler checks what it omits.
 */
export function childrenFromTaskFiles(pid: number): number[] {
  const pids: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return pids;
  }
  for (const task of tasks) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ')) if (child.trim()) pids.push(Number(child));
    } catch {
      // the thread ended while we looked
    }
  }
  return pids;
}
