/**
 * The simulated server: the arbiter process and worker processes as a
 * platform for the model's drivers. The drivers decide everything that is a
 * lifecycle decision; this file says only how long things take here (boot,
 * service, a loop turn) and which connection a free worker takes from the
 * kernel's queue.
 */
import { ArbiterDriver, type ArbiterDriverState, type ArbiterPort, type ArbiterSignal, type SpawnPath } from '../model/driver/arbiter.ts';
import { chooseSpare, sparesToStart } from '../model/driver/spares.ts';
import { WorkerDriver, type LoopAtFlip, type ReadableBy, type WorkerDriverState, type WorkerPort } from '../model/driver/worker.ts';
import type { ClientId, ConnId, WorkerId, WorkerSignal } from '../model/events.ts';
import type { ActorHost, Timer } from '../model/host.ts';
import type { SharedCpu } from './cpu.ts';
import { SimulationInvariantError } from './engine.ts';
import type { Kernel } from './kernel.ts';
import type { Link, Network, ServerCloseCause, ServerSide } from './network.ts';
import { dispatchItem, type Draw, type ItemHandlers, type ServerItem, type Wire } from './platform.ts';

/**
 * A drawn poll wait, and what it is counted from: the request's arrival (a wait measured so, whatever
 * made the connection readable), or the moment it became readable (a wait measured by what made it so).
 */
export interface PollWait {
  readonly ms: number;
  readonly from: 'arrival' | 'readable';
  /**
   * How long before the hand-over the poll it comes from returned (≤ `ms`: the poll returned after the
   * connection became readable): the rest of the wait is the loop's turn through what that poll
   * returned. Absent: unknown — the poll is taken to have returned as the connection became readable.
   */
  readonly afterPollReturnMs?: number;
}

export interface ServerTiming {
  /** Time from fork to a worker ready to accept (app import), where `forkToReadyMs` is not drawn. */
  bootMs: number;
  /** The same, drawn per worker (measured from the fork under load); absent: `bootMs`. */
  forkToReadyMs?: () => number;
  /**
   * The arbiter's forks one after another (gunicorn's `spawn_workers`: a fork, then `sleep(0.1 *
   * random())`, then the next; a vacancy found meanwhile waits for the loop's end). A spawn forks
   * `wakeMs` after the chart's decision (the main loop woken by the SIGCHLD's pipe byte), and not before
   * the last fork and the pause after it (`gapMs`, drawn per fork). A reload's generation forks back to
   * back, after the loop in progress. Absent: every fork at its decision.
   */
  forkQueue?: { readonly wakeMs: () => number; readonly gapMs: () => number };
  /** Service time of a request, drawn per request. */
  serviceMs: (req: string) => number;
  /**
   * A request refused from its head (a body larger than the server takes: 413): it is read as not
   * persisting, answered at once, and the body its client goes on sending waits behind it unread —
   * what a real server's close then does with it is the chart's (an RST, or a lingering close).
   */
  refuses?: (req: string) => boolean;
  /**
   * How long a readable connection waits in the worker's poller before the loop hands it to a thread
   * (policies with `pollerDispatch`: gthread's main thread, under the GIL), drawn per request by what
   * made it readable and how many connections its worker holds (the connection among them); absent: at
   * once, in the same step. The explorer gives zero: an item, tried before and after whatever else is due.
   */
  dispatchMs?: (conn: ConnId, by: ReadableBy, heldConnections: number) => PollWait;
  /**
   * How long the thread that read a request takes to get to its handler (gthread: the pool thread's
   * wait for the GIL, and the parse), drawn per request, with the connections its worker holds; absent: at once.
   */
  pickupMs?: (conn: ConnId, req: string, heldConnections: number) => number;
  /**
   * How long an answered keep-alive connection takes to get back to the poller (gthread: from the
   * response to `finish_request`, the future's done callback, which waits for the GIL), drawn per
   * response; absent: at once. A request the client sends meanwhile waits unread, and a worker that
   * began draining meanwhile closes the connection with it.
   */
  returnMs?: (conn: ConnId) => number;
  /**
   * A worker's loop turn after it accepted a connection, drawn per accept (gthread: the accept callback
   * calls accept() once, so a worker takes one queued connection a turn); absent: a worker takes every
   * queued connection at once.
   */
  acceptTurnMs?: () => number;
  /**
   * With `acceptTurnMs`: how long a worker's loop takes to notice the listener readable (a readable
   * connection's poll wait, drawn with the connections it holds); absent: at once.
   */
  acceptWaitMs?: (heldConnections: number) => number;
  /**
   * How long an arbiter that signals several workers in one step takes between one kill(2) and the next
   * (gunicorn's `kill_workers` loop: the worker it woke takes the CPU from it), drawn per kill; absent:
   * every kill in the same instant.
   */
  killGapMs?: () => number;
  /**
   * From a kill(2) to the worker's handler running (CPython runs a handler in the main thread, between
   * bytecodes, once that thread has the GIL: gthread's pool threads hold it), drawn per signal; absent:
   * at once. Only signals a handler takes: KILL, STOP and CONT are the kernel's, at the kill.
   */
  signalHandlerMs?: () => number;
  /**
   * From the loop turn in which a signalled worker stops accepting (a stop, a reload: several workers
   * at once) to its close of the listener copy: the rest of that turn (gthread: the hand-overs of what
   * the poll returned, `futures.wait`, `murder_keepalived`, `tpool.shutdown`, `poller.close`, each
   * waiting for the GIL), drawn per worker; absent: in the same instant. What the kernel queues meanwhile
   * waits for a worker that no longer accepts — reset at the last copy's close.
   */
  closeAfterTurnMs?: () => number;
  /** The same for a worker that stops on its own (max-requests: one worker, the others serving), measured apart: the two differ tenfold. */
  closeAfterRecycleTurnMs?: () => number;
  /**
   * A signalled worker's listener close → its exit, the connections it still holds closed (our server:
   * the last turn's responses and their lingering closes, on cores shared in slices), drawn at the close:
   * the exit comes no earlier (`WorkerProcess.tearDown`). Absent: as the machine's waits end.
   */
  exitAfterCloseMs?: () => number;
  /**
   * A reload's spawn loop: from the arbiter's decision to its first kill of the old generation (gunicorn's
   * reload() forks the new one first, process after process); the kills go after it. Absent: at once.
   */
  reloadKillDelayMs?: () => number;
  /**
   * Drawn for each worker a reload TERMs: how long before the kill reaches it its loop stops handing over
   * (`WorkerProcess.stalls`) — the new generation's forks take the CPU. Absent: from the kill, as a stop's.
   */
  reloadStallBeforeKillMs?: () => number;
  /**
   * A graceful exit's two waits, drawn per exit (together, where measured together: they are one
   * process's end). `teardownMs`: from its decision (gthread: its futures done, its sockets closed —
   * gunicorn's worker_exit hook) to the connections it still held closed (CPython's finalization
   * freeing them, on a CPU the load keeps busy); what the exit closes stays open until then, and a
   * request sent meanwhile waits unread, and is reset. `reapAfterTeardownMs`: from then — the chart's
   * `worker.exit` — to the arbiter's reap (the rest of the finalization, and the SIGCHLD); until then
   * the arbiter counts the worker and starts no replacement; a process killed ends in the kernel and is
   * reaped at once. Each absent: at once.
   */
  gracefulExitMs?: () => GracefulExitWaits;
  /** Drawn at a recycle whose poller holds nothing readable: whether the flip of alive finds the loop past its poll (`WorkerPort.loopAtFlip`); absent: never. */
  recycleFindsLoopPastPoll?: () => boolean;
  /**
   * Drawn at a recycle whose poller holds a connection readable, where the loop's select is in
   * question (`WorkerProcess.loopAtFlip`): whether the kernel had woken it, with what was readable
   * first, and the main thread was not back yet; and otherwise, how long before the flip the loop's
   * select last returned (ms). Both absent: the return is placed from the connections' rows (the
   * handler's rule, `pollReturn`).
   */
  recycleReturn?: { readonly selectWoken: () => boolean; readonly lastReturnAgeMs: () => number };
  /**
   * Drawn at each stopping signal's kill of a worker whose loop has measured poll waits: whether its loop
   * hands nothing over until the handler runs (`WorkerProcess.loopStoppedAtMs`); absent: it runs on. Where
   * the handler finds that loop is the poller's own state (`WorkerProcess.loopAtFlip`), not a draw.
   */
  signalStopsLoop?: () => boolean;
  /** A worker whose chart still lets it accept after the drain began (gthread ≤ 23's last loop turn) closes its listener copy when that turn ends: up to this long. */
  loopTickMs: number;
  /** Whether worker loops notify the arbiter (the explorer leaves heartbeats out: its watchdog is off). */
  heartbeats: boolean;
  /**
   * The machine's cores, where the profile measured the work (simulator/cpu.ts): a request's handler
   * and a worker's boot then take CPU on them, shared with everything else that runs, in place of
   * `serviceMs` and `bootMs`. Absent: the measured times, drawn.
   */
  cpu?: CpuTiming;
}

export interface CpuTiming {
  readonly shared: SharedCpu;
  /** CPU ms a worker's one thread spends on a request (the read, the parse, the handler, the write), drawn per request. */
  readonly requestWorkMs: () => number;
  /** CPU ms a new worker process spends from its start to ready to serve. */
  readonly bootWorkMs: number;
  /**
   * Processes the arbiter keeps booted ahead of need (impl/arbiter.ts's spares): a spawn takes a ready
   * one (serving after `spareActivationMs`), else the one still booting; 0, a worker boots when spawned.
   */
  readonly spares: number;
  /** From a spawn that takes a loaded spare to it serving: the activation over IPC, each hop a wake-up on busy cores. */
  readonly spareActivationMs: number;
  /**
   * A worker is one thread, an event loop (Node.js): it polls only when that thread is free, so a
   * readable connection is read — its request's keep-alive decided — in the thread's turn, after the
   * work queued before it; and the callback that read it goes on to the handler's work before anything
   * else. False: the connection is handed over as the measured waits say (gthread's poller and pool).
   */
  readonly readsInTurn: boolean;
}

/** What a graceful exit waits for (`ServerTiming.gracefulExitMs`), ms; absent: at once. */
export interface GracefulExitWaits {
  readonly teardownMs?: number;
  readonly reapAfterTeardownMs?: number;
}

/** Whether a signal runs the process's handler (KILL, STOP and CONT are the kernel's, at the kill). */
const takenByHandler = (signal: WorkerSignal): boolean => signal !== 'KILL' && signal !== 'STOP' && signal !== 'CONT';

/** Whether a signal's handler stops the worker (flips `alive`): a stop's, a reload's. */
const stopsWorker = (signal: WorkerSignal): boolean => signal === 'TERM' || signal === 'INT' || signal === 'QUIT';

/** A spare no worker has taken yet. */
const isFreeSpare = (spare: SpareProcess): boolean => spare.becomes === null;

/** A process the arbiter started ahead of need (`CpuTiming.spares`), booting or ready, until it becomes a worker. */
interface SpareProcess {
  readonly thread: string;
  ready: boolean;
  becomes: WorkerProcess | null;
}

/** A worker process's state, as data (the explorer's snapshots). */
export interface WorkerProcessState {
  readonly id: WorkerId;
  readonly ready: boolean;
  readonly exited: boolean;
  readonly driver: WorkerDriverState;
  readonly signalled: boolean;
  readonly handlersPending: number;
  readonly behind: readonly (readonly [ConnId, readonly string[]])[];
}

/** The server's state, as data (the explorer's snapshots): the links of open connections by client. */
export interface ServerState {
  readonly arbiter: ArbiterDriverState;
  readonly processes: readonly WorkerProcessState[];
  /** Each open connection's link: the network's own when it still keeps it, else this copy. */
  readonly connLinks: readonly (readonly [ConnId, Link])[];
  readonly exitCode: number | null;
  /** The earliest the arbiter's next kill(2) goes (see `ServerTiming.killGapMs`). */
  readonly nextKillAtMs: number;
  /** The earliest the arbiter's next fork goes (see `ServerTiming.forkQueue`). */
  readonly nextForkAtMs: number;
}

/** What each kind of item does to the process it names (built once: see `ItemHandlers`). */
const SERVER_ITEM_HANDLERS: ItemHandlers<ServerItem, WorkerProcess> = {
  boot: (_i, proc) => proc.booted(),
  heartbeat: (_i, proc) => proc.beat(),
  kill: (i, proc) => proc.killed(i.signal, i.handlerMs),
  signal: (i, proc) => proc.handlerDue(i.signal),
  teardown: (_i, proc) => proc.whenRunning(() => proc.driver.tornDown()),
  fork: (_i, proc) => proc.forked(),
  reap: (i, proc) => proc.reaped(i.code),
  release: (_i, proc) => proc.released(),
  'accept-turn': (_i, proc) => proc.acceptFromQueue(),
  'accept-one': (_i, proc) => proc.acceptOne(),
  'handler-done': (i, proc) =>
    proc.whenRunning(() => {
      proc.driver.handlerFinished(i.conn, i.req);
      proc.announceBehind(i.conn);
    }),
  poll: (i, proc) => proc.whenRunning(() => proc.pollDue(i.conn)),
  stall: (_i, proc) => proc.stalls(),
  pickup: (i, proc) => proc.whenRunning(() => proc.driver.pickedUp(i.conn, i.req)),
  return: (i, proc) => proc.whenRunning(() => proc.driver.returned(i.conn)),
};

/** Linux's numbers of the fatal signals a simulated worker may die of (a crash's exit code is −number). */
const SIGNAL_NUMBERS = { SEGV: 11 } as const;

export class SimulatedServer implements ServerSide {
  readonly arbiter: ArbiterDriver;
  private readonly workers = new Map<WorkerId, WorkerProcess>();
  /** Every worker process ever spawned: a FIN may reach a connection whose process has exited (its driver knows it is closed). */
  private readonly everSpawned = new Map<WorkerId, WorkerProcess>();
  readonly linkOfConn = new Map<ConnId, Link>();
  exitCode: number | null = null;
  /** The earliest the arbiter's next kill(2) goes: it kills one worker after another, losing the CPU between. */
  private nextKillAtMs = 0;
  /** The earliest the arbiter's next fork goes: after the last one and the pause that follows it (`ServerTiming.forkQueue`). */
  private nextForkAtMs = 0;
  /** When the arbiter last forked a reload's generation: the TERMs it sends in that instant are the reload's. */
  private reloadForkedAtMs: number | null = null;
  private readonly spares = new Set<SpareProcess>();
  private sparesStarted = 0;

  constructor(
    readonly host: ActorHost,
    readonly kernel: Kernel,
    readonly network: Network,
    readonly timing: ServerTiming,
    readonly wire: Wire,
    readonly draw: Draw,
  ) {
    const port: ArbiterPort = {
      spawnWorker: (worker, maxRequests, path) => this.spawn(worker, maxRequests, path),
      signalWorker: (worker, signal) => this.kill(worker, signal),
      // The arbiter's copy closes with the listener.release its driver writes: nothing else happens here.
      closeListener: () => {},
      exit: (code) => (this.exitCode = code),
      random: () => draw.fraction(),
    };
    this.arbiter = new ArbiterDriver(host, port);
    network.serve(this);
  }

  /** An item of the server's came due. */
  arrive(item: ServerItem): void {
    const proc = this.everSpawned.get(item.worker);
    if (!proc) throw new SimulationInvariantError(`no process for ${item.worker}, which an item names`);
    dispatchItem(SERVER_ITEM_HANDLERS, item, proc);
  }

  // ───────────────────────── snapshots (the explorer) ─────────────────────────

  state(): ServerState {
    return {
      arbiter: this.arbiter.state(),
      processes: [...this.everSpawned.values()].map((p) => p.state()),
      connLinks: [...this.linkOfConn].map(([conn, link]) => [conn, link.copy()] as const),
      exitCode: this.exitCode,
      nextKillAtMs: this.nextKillAtMs,
      nextForkAtMs: this.nextForkAtMs,
    };
  }

  /**
   * The state as key lines (the explorer's visited set): what a state() holds, less the counters that only
   * name what comes next — and less each process's `signalled`, which only picks a measured wait the
   * explorer never draws (its timings are at once).
   */
  keyParts(out: string[]): void {
    out.push(`X ${this.arbiter.state().exitCode} ${this.exitCode} ${this.nextKillAtMs} ${this.nextForkAtMs}`);
    for (const p of this.everSpawned.values()) {
      const d = p.driver.state();
      // The ready list's order and the last poll's batch decide what a last loop turn hands over.
      out.push(`P ${p.id} ${p.ready} ${p.exited} ${d.waiting.join(',')} ${d.readable.join(',')}/${d.lastPollBatch.join(',')} ${d.exitPending} ${d.heartbeatDue} ${p.behindKey()}`);
    }
    for (const [conn, link] of this.linkOfConn) out.push(`C ${conn} ${link.client}`);
  }

  /** Load a state into this (new) server, after its host's actors and its network were loaded. */
  load(state: ServerState): void {
    this.arbiter.load(state.arbiter);
    for (const saved of state.processes) {
      const proc = new WorkerProcess(this, saved.id);
      proc.load(saved);
      this.everSpawned.set(saved.id, proc);
      if (!saved.exited) this.workers.set(saved.id, proc);
      // An exited worker's driver asks nothing more of the host (it disowned its actors as it exited).
      else this.host.disown(saved.id);
    }
    for (const [conn, saved] of state.connLinks) this.linkOfConn.set(conn, this.network.link(saved.client) ?? saved.copy());
    this.exitCode = state.exitCode;
    this.nextKillAtMs = state.nextKillAtMs;
    this.nextForkAtMs = state.nextForkAtMs;
  }

  boot(): void {
    this.arbiter.boot();
  }

  signal(signal: ArbiterSignal): void {
    this.arbiter.signal(signal);
    // As impl/arbiter.ts: a reload's workers load the app anew, so the spares (the old app) go; a stop needs none.
    if (signal === 'HUP' || !this.arbiter.isRunning()) this.retireSpares();
  }

  /**
   * The arbiter's kill(2) of a worker. Several in one step go one after another, each a drawn gap after
   * the one before (the measured `kill_workers` loop); what the worker then does with it is its own.
   */
  private kill(worker: WorkerId, signal: WorkerSignal): void {
    const now = this.host.nowMs;
    const atMs = Math.max(now, this.nextKillAtMs);
    if (this.timing.killGapMs) this.nextKillAtMs = atMs + Math.max(0, this.timing.killGapMs());
    const ofReload = signal === 'TERM' && this.reloadForkedAtMs === now;
    const stallMs = ofReload ? this.timing.reloadStallBeforeKillMs?.() : undefined;
    this.workers.get(worker)?.signal(signal, atMs - now, stallMs);
  }

  /** A signal from outside (an operator's kill(1)) to a worker: KILL, STOP, CONT. */
  signalWorker(worker: WorkerId, signal: WorkerSignal): void {
    this.workers.get(worker)?.signal(signal);
  }

  /** A fault ends a worker: it dies of `signal` (SEGV, BUS …), which no one sent to stop it. */
  crashWorker(worker: WorkerId, signal: 'SEGV'): void {
    this.workers.get(worker)?.crash(signal);
  }

  workerIds(): WorkerId[] {
    return [...this.workers.keys()];
  }

  process(worker: WorkerId): WorkerProcess | undefined {
    return this.workers.get(worker);
  }

  // ───────────────────────── from the network ─────────────────────────

  requestArrives(_link: Link, conn: ConnId, req: string, partial: boolean): void {
    const proc = this.owner(conn);
    proc.whenRunning(() => proc.requestArrives(conn, req, partial));
  }

  finArrives(_link: Link, conn: ConnId): void {
    const proc = this.owner(conn);
    proc.whenRunning(() => proc.driver.peerFin(conn));
  }

  rstArrives(link: Link, conn: ConnId): void {
    const proc = this.owner(conn);
    proc.whenRunning(() => {
      // The kernel has dropped the socket: nothing the server writes or closes reaches the client now.
      if (!proc.driver.peerReset(conn)) return;
      proc.forgetBehind(conn);
      this.network.serverSocketGone(link);
      this.linkOfConn.delete(conn);
    });
  }

  connectionQueued(): void {
    // The kernel wakes one accept() waiter, not always the same: the waiting workers in a drawn order.
    const ready = [...this.workers.values()].filter((p) => p.ready && !p.stopped);
    for (let i = ready.length - 1; i > 0; i--) {
      const j = this.draw.int(0, i);
      [ready[i], ready[j]] = [ready[j]!, ready[i]!];
    }
    for (const proc of ready) proc.acceptFromQueue();
  }

  /**
   * Debug (QUIESCE_DEBUG=pairs, and tests): the one piece of connection bookkeeping this platform
   * keeps beside the machines — which link each connection serves — agrees with them: every
   * connection a worker's machine holds open has its link, and no link is kept for one it closed.
   */
  checkPairs(): void {
    const open = new Set<ConnId>();
    for (const proc of this.workers.values()) for (const conn of proc.driver.openConns()) open.add(conn);
    for (const conn of open) if (!this.linkOfConn.has(conn)) throw new SimulationInvariantError(`${conn} is open for its worker's machine, but the server keeps no link for it`);
    for (const conn of this.linkOfConn.keys()) {
      if (!open.has(conn)) throw new SimulationInvariantError(`the server keeps a link for ${conn}, which no live worker's machine holds open`);
    }
  }

  private owner(conn: ConnId): WorkerProcess {
    const worker = conn.slice('conn/'.length, conn.indexOf('.'));
    const proc = this.everSpawned.get(`worker/${Number(worker)}`);
    if (!proc) throw new SimulationInvariantError(`no process for ${conn}`);
    return proc;
  }

  private spawn(worker: WorkerId, maxRequests: number, path: SpawnPath): void {
    // A reload forks its generation, one process after another, before it TERMs the old one: its kills wait.
    if (path === 'reload' && this.reloadForkedAtMs !== this.host.nowMs) {
      this.reloadForkedAtMs = this.host.nowMs;
      const delayMs = this.timing.reloadKillDelayMs?.();
      if (delayMs !== undefined) this.nextKillAtMs = Math.max(this.nextKillAtMs, this.host.nowMs + Math.max(0, delayMs));
    }
    const proc = new WorkerProcess(this, worker);
    this.workers.set(worker, proc);
    this.everSpawned.set(worker, proc);
    proc.boot(maxRequests, this.forkInMs(path));
  }

  /**
   * From the chart's decision to start a worker to its fork. gunicorn's main loop forks the vacancies
   * its `spawn_workers` counted one after another, sleeping up to 100 ms after each, so that a wave of
   * recycles is replaced over a few hundred ms, not in one instant; a reload forks its generation back
   * to back, once the loop in progress is done. Without a measured queue: at once.
   */
  private forkInMs(path: SpawnPath): number {
    const queue = this.timing.forkQueue;
    if (!queue) return 0;
    const now = this.host.nowMs;
    const earliestMs = path === 'spawn-loop' ? now + Math.max(0, queue.wakeMs()) : now;
    const atMs = Math.max(earliestMs, this.nextForkAtMs);
    this.nextForkAtMs = path === 'spawn-loop' ? atMs + Math.max(0, queue.gapMs()) : atMs;
    return atMs - now;
  }

  /**
   * A worker's boot on the shared CPU: a ready spare becomes it after its activation, one still booting
   * when its boot is done, else a process starts for it; then the spares are topped up.
   */
  bootOnCpu(proc: WorkerProcess, cpu: CpuTiming): void {
    const taken = chooseSpare(this.spares, isFreeSpare);
    if (taken?.ready) {
      this.spares.delete(taken);
      this.wire.after(cpu.spareActivationMs, { kind: 'boot', worker: proc.id });
    } else {
      const spare = taken ?? this.startSpare(cpu);
      spare.becomes = proc;
      proc.bootThread = spare.thread;
    }
    for (let n = sparesToStart(this.spares, isFreeSpare, cpu.spares); n > 0; n--) this.startSpare(cpu);
  }

  private startSpare(cpu: CpuTiming): SpareProcess {
    const spare: SpareProcess = { thread: `spare/${++this.sparesStarted}`, ready: false, becomes: null };
    this.spares.add(spare);
    cpu.shared.run(spare.thread, cpu.bootWorkMs, () => {
      const worker = spare.becomes;
      if (worker === null) {
        spare.ready = true;
        return;
      }
      this.spares.delete(spare);
      worker.bootThread = null;
      this.arrive({ kind: 'boot', worker: worker.id });
    });
    return spare;
  }

  /** A worker gone before its boot was done (killed while booting): the process it was becoming is gone with it. */
  abandonBoot(thread: string): void {
    for (const spare of this.spares) if (spare.thread === thread) this.spares.delete(spare);
    this.timing.cpu?.shared.drop(thread);
  }

  private retireSpares(): void {
    for (const spare of this.spares) {
      if (spare.becomes !== null) continue;
      this.spares.delete(spare);
      this.timing.cpu?.shared.drop(spare.thread);
    }
  }

  /** The process ended: nothing reaches it any more (a signal to a zombie is void), and it accepts nothing. */
  ended(proc: WorkerProcess): void {
    this.workers.delete(proc.id);
  }

  /** The arbiter reaps an ended process (SIGCHLD): it forgets it, and replaces it if it runs. */
  reap(proc: WorkerProcess, code: number): void {
    proc.exited = true;
    this.workers.delete(proc.id);
    this.arbiter.reaped(proc.id, code);
  }
}

/** A connection readable in the poller with a measured wait: since when, when its hand-over is due, and how long before that its poll returned. */
interface ReadableSince {
  readonly atMs: number;
  readonly afterPollReturnMs: number;
  readonly dueAtMs: number;
}

/** One worker process: its threads take service time, its loop heartbeats and accepts. */
export class WorkerProcess implements WorkerPort {
  readonly driver: WorkerDriver;
  ready = false;
  /** Reaped: the process is gone (an item may still name it: a handler's end that never comes to anything). */
  exited = false;
  private heartbeatTimer: Timer | null = null;
  /** It took a signal that stops it (TERM, INT, QUIT): its last turn is a stop's or a reload's, not its own recycle's. */
  private signalled = false;
  /** Kills that reached the process and whose handlers have not run yet: meanwhile it accepts nothing (see `killed`). */
  private handlersPending = 0;
  /** SIGSTOPped: it reads nothing, finishes nothing, accepts nothing until CONT (only KILL reaches it). */
  stopped = false;
  private readonly whileStopped: (() => void)[] = [];
  /**
   * Requests that arrived behind the one in progress on a connection (pipelined), oldest first: the
   * socket buffer holds them until the response before them is written (as impl/'s parser does).
   */
  private readonly behind = new Map<ConnId, string[]>();
  /** Connections waiting in the poller with a measured wait, since when, and how long before its hand-over its poll returns (`PollWait`). */
  private readonly readableSince = new Map<ConnId, ReadableSince>();
  /**
   * Since when the loop hands nothing over, until a stopping signal's handler runs: from the kill while
   * the handler waits (`killed`), or from a drawn stall ahead of a reload's kill (`stalls`). CPython runs
   * a handler in the main thread at its next bytecode, and the main thread is the loop that hands
   * connections over: a handler that waits is a loop that waits. Measured under reloads and stops of
   * gunicorn 20.1 gthread (simulator/README.md, "The loop at a signal"): 28 of 29 handlers came with no
   * hand-over between the kill and the handler. Null: it runs.
   */
  private loopStoppedAtMs: number | null = null;
  /** Hand-overs that came due while the loop was stopped, in the order they came due. */
  private readonly heldPolls: ConnId[] = [];
  /** An accept waits its turn on the event loop's thread (see `acceptFromQueue`): one at a time. */
  private acceptInTurn = false;
  /** One accept a loop turn (`ServerTiming.acceptTurnMs`): a turn that takes one is on its way. */
  private acceptOneDue = false;
  /** … and the loop's next turn after its last accept, ms. */
  private nextAcceptTurnAtMs = 0;
  /** A stopping worker's exit comes no earlier than this (`ServerTiming.exitAfterCloseMs`, drawn at its listener's close). */
  private exitNotBeforeMs: number | null = null;
  /** The shared CPU's thread its boot runs on while it boots there (a spare's, which becomes this worker). */
  bootThread: string | null = null;
  /** When its fork comes (the arbiter's queue, `ServerTiming.forkQueue`): a signal sent before then reaches it then. */
  private forkAtMs = 0;
  /** Its graceful exit's waits, drawn as the chart tore it down (null: not tearing down); the reap waits for the second. */
  private exitWaits: GracefulExitWaits | null = null;
  /** Ended, its reap still to come (`ServerTiming.reapAfterTeardownMs`). */
  private reapPending = false;

  constructor(
    private readonly server: SimulatedServer,
    readonly id: WorkerId,
  ) {
    this.driver = new WorkerDriver(server.host, id, this);
  }

  private get wire(): Wire {
    return this.server.wire;
  }

  state(): WorkerProcessState {
    // A stopped process keeps closures for CONT; the explorer sends no STOP, and draws no fork queue.
    if (this.stopped || this.heartbeatTimer !== null) throw new SimulationInvariantError(`${this.id}: a stopped or heartbeating process has no snapshot`);
    if (this.forkAtMs > this.server.host.nowMs || this.reapPending) throw new SimulationInvariantError(`${this.id}: a process whose fork or reap is queued has no snapshot`);
    if (this.unread.size > 0 || this.acceptInTurn) throw new SimulationInvariantError(`${this.id}: a process whose thread has requests still to read has no snapshot`);
    if (this.exitNotBeforeMs !== null) throw new SimulationInvariantError(`${this.id}: a process whose exit waits for a measured time has no snapshot`);
    if (this.readableSince.size > 0 || this.loopStoppedAtMs !== null) throw new SimulationInvariantError(`${this.id}: a process whose poller holds measured waits has no snapshot`);
    return {
      id: this.id,
      ready: this.ready,
      exited: this.exited,
      driver: this.driver.state(),
      signalled: this.signalled,
      handlersPending: this.handlersPending,
      behind: [...this.behind].map(([conn, reqs]) => [conn, [...reqs]] as const),
    };
  }

  load(state: WorkerProcessState): void {
    this.ready = state.ready;
    this.exited = state.exited;
    this.driver.load(state.driver);
    this.signalled = state.signalled;
    this.handlersPending = state.handlersPending;
    for (const [conn, reqs] of state.behind) this.behind.set(conn, [...reqs]);
  }

  /** The held pipelined requests as a key part (the explorer's visited set). */
  behindKey(): string {
    return [...this.behind].map(([conn, reqs]) => `${conn}:${reqs.join('+')}`).join(',') || '-';
  }

  /**
   * Requests in a connection's socket that the worker's one thread has not got to yet (`CpuTiming.readsInTurn`):
   * unread, as the kernel holds them — a close now resets them.
   */
  private readonly unread = new Map<ConnId, number>();

  /** Request bytes reached a connection: an event loop's thread reads them in its turn; otherwise they are the driver's now. */
  requestArrives(conn: ConnId, req: string, partial: boolean): void {
    const { cpu } = this.server.timing;
    if (!cpu?.readsInTurn) return this.requestRead(conn, req, partial);
    this.unread.set(conn, (this.unread.get(conn) ?? 0) + 1);
    // No work of its own: the poll returns with them once the thread is through what was queued before.
    cpu.shared.run(this.id, 0, () => {
      const left = (this.unread.get(conn) ?? 0) - 1;
      if (left < 0) return; // the close reset them meanwhile
      if (left === 0) this.unread.delete(conn);
      else this.unread.set(conn, left);
      this.requestRead(conn, req, partial);
    });
  }

  /** Request bytes the worker read: the driver hears of them now, or they wait behind the request in progress. */
  private requestRead(conn: ConnId, req: string, partial: boolean): void {
    // The rest of the request waiting to be read: it is whole now.
    const context = this.driver.isOpen(conn) ? this.server.host.conn(conn).context : null;
    if (!partial && context?.pendingReq === req && context.pendingPartial && this.driver.hasRequestInProgress(conn)) {
      this.driver.requestCompleted(conn, req);
      return;
    }
    if (this.driver.hasRequestInProgress(conn)) {
      const held = this.behind.get(conn) ?? [];
      held.push(req);
      this.behind.set(conn, held);
      this.driver.requestBehind(conn, held[0]!);
      return;
    }
    // Closing, lingering, orphaned, idle: what a close left held is gone with it; this one is the driver's.
    this.behind.delete(conn);
    this.driver.requestArrived(conn, req, partial);
  }

  /** The connection is closed: what it held behind is gone with it. */
  forgetBehind(conn: ConnId): void {
    this.behind.delete(conn);
  }

  /** A response was written: the oldest request held behind it is announced, if the connection is idle again. */
  announceBehind(conn: ConnId): void {
    const held = this.behind.get(conn);
    if (held === undefined) return;
    if (this.driver.hasRequestInProgress(conn)) return;
    // Closed, or closing: a lingering close discards them, a close resets them (the chart knew they were unread).
    if (!this.driver.isIdle(conn)) {
      this.behind.delete(conn);
      return;
    }
    const next = held.shift()!;
    if (held.length === 0) this.behind.delete(conn);
    this.driver.requestArrived(conn, next);
  }

  /** The chart started it: its driver boots it now, its process forks `forkInMs` from now (the arbiter's queue). */
  boot(maxRequests: number, forkInMs = 0): void {
    this.driver.boot(maxRequests);
    this.forkAtMs = this.server.host.nowMs + forkInMs;
    if (forkInMs > 0) this.wire.after(forkInMs, { kind: 'fork', worker: this.id });
    else this.forked();
  }

  /** The process exists: it loads the app — unless its driver exited meanwhile (a signal is held until the fork, and comes after it). */
  forked(): void {
    if (this.driver.hasExited()) return;
    const { cpu, forkToReadyMs, bootMs } = this.server.timing;
    if (cpu) this.server.bootOnCpu(this, cpu);
    else this.wire.after(forkToReadyMs ? Math.max(0, forkToReadyMs()) : bootMs, { kind: 'boot', worker: this.id });
  }

  booted(): void {
    if (!this.driver.ready()) return;
    this.ready = true;
    // The arbiter hears of it as our server's does (a message): in the same instant, the channel being local.
    this.server.arbiter.readyFrom(this.id);
    this.scheduleHeartbeat();
    this.acceptFromQueue();
  }

  /**
   * A signal sent to this process, reaching it `sentInMs` from now (the arbiter's kill loop): a signal a
   * handler takes runs when the process gets to it (`ServerTiming.signalHandlerMs`); at once when
   * neither waits.
   */
  signal(signal: WorkerSignal, sentInMs = 0, stallBeforeMs?: number): void {
    // A process whose fork is still queued is not there yet: gunicorn handles the signal after its spawn loop.
    sentInMs = Math.max(sentInMs, this.forkAtMs - this.server.host.nowMs);
    const handlerMs = takenByHandler(signal) && this.server.timing.signalHandlerMs ? Math.max(0, this.server.timing.signalHandlerMs()) : 0;
    if (stallBeforeMs !== undefined && stopsWorker(signal) && this.server.timing.dispatchMs) this.wire.after(Math.max(0, sentInMs - Math.max(0, stallBeforeMs)), { kind: 'stall', worker: this.id });
    if (sentInMs > 0) this.wire.after(sentInMs, { kind: 'kill', worker: this.id, signal, handlerMs });
    else this.killed(signal, handlerMs);
  }

  /**
   * The kill(2) reached the process; its handler runs `handlerMs` later, when the process gets to it.
   * Until then the worker takes nothing from the accept queue: what keeps the handler waiting keeps an
   * accept waiting too, and the signal came first. CPython runs a handler in the main thread before its
   * next bytecode, and the main thread is the one that accepts (sync, gthread). Node learns of a signal
   * from a pipe its loop polls beside the listener, and libuv runs the signal's watcher after the poll's
   * other callbacks ("Run signal watchers last", `uv__io_poll`): an accept ready in the same poll comes
   * first. Simulated so for our server, a stop lost more, and more of it unread requests, where the
   * capture has fewer (simulator/README.md, nineteenth session): the rule stands for both. Requests
   * already with the worker go on. Without this, the reconnects of a stop's first closed connections
   * went to the workers whose handlers were still to run, which closed them again at their own: a
   * second loss each.
   */
  killed(signal: WorkerSignal, handlerMs: number): void {
    const inTurn = takenByHandler(signal) && this.server.timing.cpu?.readsInTurn === true;
    if (handlerMs <= 0 && !inTurn) return this.loopResumesWith(signal);
    this.handlersPending++;
    // A loop of measured poll waits (gthread's main thread) waits with the handler (see `loopStoppedAtMs`).
    if (handlerMs > 0 && !inTurn && stopsWorker(signal) && !this.signalled && this.server.timing.dispatchMs && this.loopStoppedAtMs === null && this.server.timing.signalStopsLoop?.()) {
      this.loopStoppedAtMs = this.server.host.nowMs;
    }
    if (handlerMs > 0) this.wire.after(handlerMs, { kind: 'signal', worker: this.id, signal });
    else this.handlerDue(signal);
  }

  /**
   * A signal's handler is due. An event loop's thread (`CpuTiming.readsInTurn`) runs it between two
   * callbacks, never inside one: after the work in progress, before what is queued behind it (the
   * measured wait to the handler holds the queue's share).
   */
  handlerDue(signal: WorkerSignal): void {
    const { cpu } = this.server.timing;
    if (cpu?.readsInTurn) cpu.shared.run(this.id, 0, () => this.handlerRuns(signal), 'after-current');
    else this.handlerRuns(signal);
  }

  /** A signal's handler runs (see `killed`): the loop accepts again if the machine still lets it. */
  handlerRuns(signal: WorkerSignal): void {
    this.handlersPending--;
    this.loopResumesWith(signal);
    if (this.handlersPending === 0) this.acceptFromQueue();
  }

  /**
   * A signal's handler runs, in a loop that ran until `loopStoppedAtMs` (or now): a stopping one flips
   * `alive` there (`loopAtFlip`). What came due while the loop was stopped comes after: a loop past its
   * poll abandoned it with the turn; one in its poll returns with it now.
   */
  private loopResumesWith(signal: WorkerSignal): void {
    // The loop is still stopped while its handler flips `alive`: `loopAtFlip` reads since when.
    this.takeSignal(signal);
    this.loopStoppedAtMs = null;
    for (const conn of this.heldPolls.splice(0)) this.pollDue(conn);
  }

  /**
   * A reload's kill is on its way (`ServerTiming.reloadStallBeforeKillMs`): the loop stops handing over
   * now, until the handler. A worker already stopping, or gone, has no loop to stop.
   */
  stalls(): void {
    if (this.exited || this.signalled || this.loopStoppedAtMs !== null) return;
    this.loopStoppedAtMs = this.server.host.nowMs;
  }

  /** A connection's measured poll wait is over: the loop hands it over, unless it waits for a handler. */
  pollDue(conn: ConnId): void {
    if (this.loopStoppedAtMs !== null) this.heldPolls.push(conn);
    else this.driver.polled(conn);
  }

  /** The signal reaches the process (its handler runs). A process gone meanwhile takes nothing. */
  takeSignal(signal: WorkerSignal): void {
    if (this.exited) return;
    if (stopsWorker(signal)) this.signalled = true;
    // Stopped already, a STOP stops nothing more, and the CONT that wakes the process discards it
    // (Linux prepare_signal: SIGCONT flushes pending stop signals). Held, it would freeze the machine
    // at the CONT while the process ran on.
    if (this.stopped && signal === 'STOP') return;
    // A stopped process takes no signal but KILL (and CONT): the kernel holds the rest until CONT.
    if (this.stopped && signal !== 'KILL' && signal !== 'CONT') {
      this.whileStopped.push(() => this.driver.signal(signal));
      return;
    }
    if (!this.driver.signal(signal)) return;
    if (signal === 'STOP' && this.driver.isFrozen()) {
      this.stopped = true;
      this.server.host.suspend(this.id);
      this.server.timing.cpu?.shared.pause(this.id);
    } else if (this.stopped && signal === 'CONT') this.wake();
    else if (this.stopped && this.driver.hasExited()) this.wake(); // killed while stopped: nothing is left to wait for it
  }

  /** Dies of a fatal signal: the exit code is −(its number), as the arbiter reaps it. A stopped process takes it at CONT (only KILL reaches it before). */
  crash(signal: 'SEGV'): void {
    this.whenRunning(() => this.driver.crashed(-SIGNAL_NUMBERS[signal], signal));
  }

  /** Run now, or when the process is continued if it is stopped. */
  whenRunning(run: () => void): void {
    if (this.stopped) this.whileStopped.push(run);
    else run();
  }

  private wake(): void {
    this.stopped = false;
    this.server.timing.cpu?.shared.resume(this.id);
    // What arrived meanwhile — signals held by the kernel, bytes, finished handlers — in the order it
    // came, and before the timers that came due meanwhile: a process stopped in its poll returns from
    // it with what became ready, and looks at its timers only on the loop's next turn (libuv runs the
    // poll's callbacks, then the timers; gthread the select's callbacks, then murder_keepalived). So a
    // request that reached an idle keep-alive connection while the process was stopped is read, and
    // the keep-alive timer it made moot no longer fires.
    for (const run of this.whileStopped.splice(0)) run();
    this.server.host.resume(this.id);
    this.acceptFromQueue();
  }

  /**
   * Take connections from the kernel's queue while the worker's machine lets it. An event loop
   * (`CpuTiming.readsInTurn`) whose handler has flipped `alive` is in its last turn, and that turn
   * serves its next poll's first callback: libuv runs a poll's callbacks in the order their
   * descriptors became ready, so the listener — readable since a connection was queued behind the
   * handler — comes after the requests the loop had queued before it, and the first of those ends the
   * turn. Taken at once, the queued connection was what the simulated last turn served, and the
   * worker's own requests were reset at its exit; the real server's full trace shows each last turn
   * beginning with a request of its own (simulator/README.md, "Our server's TERM row").
   * The accept goes behind everything queued: a connection queued before one of those requests
   * would come first in the poll, which the queue's order does not keep.
   */
  acceptFromQueue(): void {
    if (this.server.timing.acceptTurnMs) return this.acceptOneSoon();
    const cpu = this.server.timing.cpu;
    if (!this.signalled || !cpu?.readsInTurn) return this.takeFromQueue();
    if (this.acceptInTurn || !this.takesFromQueue()) return;
    this.acceptInTurn = true;
    cpu.shared.run(this.id, 0, () => {
      this.acceptInTurn = false;
      this.takeFromQueue();
    });
  }

  /**
   * gthread's loop takes one connection a turn: its listener is one descriptor in its poller, and the
   * callback calls accept() once (workers/gthread.py `accept`). A connection queued while the loop waits
   * is noticed as a readable connection is (its poll wait); one queued behind an accept waits for the
   * loop's next turn, where the listener is still readable. Every worker's loop is woken (no
   * EPOLLEXCLUSIVE): the first whose turn comes takes it, the others find the queue empty. Connections
   * queued together — the reconnections after a recycle — so go one a turn to whichever loops come
   * round first, and a worker that becomes ready finds the others have taken them (simulator/README.md,
   * "One accept a turn").
   */
  private acceptOneSoon(): void {
    if (this.acceptOneDue || !this.takesFromQueue() || this.server.kernel.head() === undefined || !this.driver.mayAccept()) return;
    const now = this.server.host.nowMs;
    const inMs = this.nextAcceptTurnAtMs > now ? this.nextAcceptTurnAtMs - now : Math.max(0, this.server.timing.acceptWaitMs?.(this.driver.openConns().length) ?? 0);
    this.acceptOneDue = true;
    this.wire.after(inMs, { kind: 'accept-one', worker: this.id });
  }

  /** The loop's turn has come (`acceptOneSoon`): it takes the queue's first connection, if another loop has not. */
  acceptOne(): void {
    this.acceptOneDue = false;
    if (!this.takesFromQueue() || !this.driver.mayAccept()) return;
    const head = this.server.kernel.head();
    if (head === undefined) return;
    this.accept(head);
    const turnMs = this.server.timing.acceptTurnMs?.() ?? 0;
    this.nextAcceptTurnAtMs = this.server.host.nowMs + Math.max(0, turnMs);
    this.acceptOneSoon();
  }

  /** Whether the process takes from the queue now: booted, running, no handler pending (see `killed`). */
  private takesFromQueue(): boolean {
    return this.ready && !this.stopped && this.handlersPending === 0;
  }

  private takeFromQueue(): void {
    if (!this.takesFromQueue()) return;
    const kernel = this.server.kernel;
    for (let head = kernel.head(); head !== undefined && this.driver.mayAccept(); head = kernel.head()) this.accept(head);
  }

  private accept(client: ClientId): void {
    const conn = this.driver.nextConnId();
    this.server.kernel.accept(client, this.id, conn);
    const accepted = this.driver.accept(client);
    if (accepted !== conn) throw new SimulationInvariantError(`${this.id} took ${client} from the queue and then refused it`);
    const link = this.server.network.linkOf(client);
    this.server.linkOfConn.set(conn, link);
    this.server.network.accepted(link, conn);
  }

  /** After a request or a connection ends the worker may take more: on its next loop turn. */
  private later(): void {
    this.wire.after(0, { kind: 'accept-turn', worker: this.id });
  }

  private scheduleHeartbeat(): void {
    if (!this.server.timing.heartbeats) return;
    this.heartbeatTimer = this.wire.at(this.server.host.runtimes.params.heartbeatIntervalMs, { kind: 'heartbeat', worker: this.id });
  }

  beat(): void {
    this.heartbeatTimer = null;
    if (this.driver.hasExited()) return;
    this.driver.heartbeat();
    this.scheduleHeartbeat();
  }

  private link(conn: ConnId): Link {
    const link = this.server.linkOfConn.get(conn);
    if (!link) throw new SimulationInvariantError(`${conn} has no link`);
    return link;
  }

  // ───────────────────────── the port ─────────────────────────

  stopAccepting(): void {
    // Nothing to do: this worker takes from the queue only while its machine says it may.
  }

  releaseListener(): void {
    // A worker whose chart still lets it accept finishes its loop turn first (gthread ≤ 23): up to
    // loopTickMs, taking what is queued meanwhile.
    if (this.driver.mayAccept()) {
      this.wire.after(this.server.draw.uniform(0, this.server.timing.loopTickMs), { kind: 'release', worker: this.id });
      this.later();
    } else {
      const { closeAfterTurnMs, closeAfterRecycleTurnMs } = this.server.timing;
      if (this.atOnceOrLater((this.signalled ? closeAfterTurnMs : closeAfterRecycleTurnMs)?.(), { kind: 'release', worker: this.id })) this.released();
    }
  }

  released(): void {
    const { exitAfterCloseMs } = this.server.timing;
    if (this.signalled && exitAfterCloseMs) this.exitNotBeforeMs = this.server.host.nowMs + Math.max(0, exitAfterCloseMs());
    this.driver.listenerReleased();
    this.server.arbiter.listenerReleasedBy(this.id);
  }

  watchReadable(conn: ConnId, by: ReadableBy): boolean {
    const wait = this.server.timing.dispatchMs?.(conn, by, this.driver.openConns().length);
    if (wait === undefined) return true;
    if (wait.afterPollReturnMs !== undefined) {
      if (!(wait.afterPollReturnMs >= 0 && wait.afterPollReturnMs <= wait.ms)) throw new SimulationInvariantError(`${conn}: its poll returned ${wait.afterPollReturnMs} ms before a hand-over ${wait.ms} ms after it became readable`);
    }
    // A wait measured from the request's arrival (its last segment → the hand-over) runs from there:
    // a request that came while its connection was still with the pool's done callback has waited
    // since then, inside that callback's measured return — counted again from now, it would wait twice.
    const waitedMs = wait.from === 'arrival' ? this.server.host.nowMs - this.link(conn).lastBytesArrivedAtMs : 0;
    if (wait.afterPollReturnMs !== undefined) {
      const nowMs = this.server.host.nowMs;
      this.readableSince.set(conn, { atMs: nowMs, afterPollReturnMs: wait.afterPollReturnMs, dueAtMs: nowMs + Math.max(0, wait.ms - waitedMs) });
    }
    return this.atOnceOrLater(wait.ms - waitedMs, { kind: 'poll', worker: this.id, conn });
  }

  /**
   * The poll that returned with `conn` returned `afterPollReturnMs` before now (its measured row), not
   * before `conn` became readable: every connection readable by then is in that return.
   */
  pollReturnedWith(conn: ConnId, before: readonly ConnId[], after: readonly ConnId[]): readonly ConnId[] {
    const since = this.readableSince.get(conn);
    this.readableSince.delete(conn);
    if (since === undefined) return before;
    return [...before, ...this.readableBy(after, Math.max(since.atMs, this.server.host.nowMs - since.afterPollReturnMs))];
  }

  /** Those of `conns` that were readable by `atMs`: a select returning then returned with them. */
  private readableBy(conns: readonly ConnId[], atMs: number): readonly ConnId[] {
    return conns.filter((conn) => (this.readableSince.get(conn)?.atMs ?? Number.POSITIVE_INFINITY) <= atMs);
  }

  /**
   * Where `alive` finds the loop is the poller's: with a connection readable (its measured wait not over),
   * the loop's select has returned — select() returns as soon as one fd is ready — and the loop is past
   * its poll, with that return to hand over. At a recycle, where the profile measured it, that return is
   * the loop's own (`recycleReturn`); elsewhere it is placed from the connections' rows (`pollReturn`).
   * With none readable, a TERM's handler finds it in its select; a recycle's flip, by a pool thread,
   * finds it there or past it by the profile's share measured where nothing was readable
   * (`recycleFindsLoopPastPoll`). The hooks' flag of "in the select" means, where something is readable,
   * a select the kernel woke while the main thread waited for the CPU or the GIL (simulator/README.md,
   * "The loop at a signal", "What a gthread recycle hands over").
   */
  loopAtFlip(cause: 'recycle' | 'signal', readable: readonly ConnId[]): LoopAtFlip {
    const recycleReturn = cause === 'recycle' ? this.recycleReturn(readable) : null;
    if (recycleReturn !== null) return { place: 'past-poll', returned: recycleReturn };
    const returned = this.pollReturn(readable, cause === 'signal' ? (this.loopStoppedAtMs ?? this.server.host.nowMs) : this.server.host.nowMs);
    if (returned !== null) return { place: 'past-poll', returned };
    if (cause === 'signal') return { place: 'in-poll' };
    return this.server.timing.recycleFindsLoopPastPoll?.() ? { place: 'past-poll' } : { place: 'in-poll' };
  }

  /**
   * What the loop's last select returned, at a recycle's flip with something readable, from the
   * profile's measurement of that flip (`ServerTiming.recycleReturn`; null: not measured, or nothing in
   * `readable` has a measured wait). Measured with hooks on gunicorn 20.1 gthread's select (seven runs,
   * 299 such flips): where the flag showed the main thread in its select, the kernel had woken it with
   * the first connection readable and it was not back — its return, handed over after the flip, held
   * one connection at most flips, whatever else had become readable since; where it showed it past,
   * the last return was a median 1.7 ms old, and held what was readable by then. A select's return is
   * the loop's: one instant for every connection in the poller, not a time read from one connection's
   * row — the earliest readable one still waiting at the flip is one that drew a long wait, and its row
   * put the return at the flip with everything in it (simulator/README.md, "What a gthread recycle
   * hands over").
   */
  private recycleReturn(readable: readonly ConnId[]): readonly ConnId[] | null {
    const measured = this.server.timing.recycleReturn;
    if (measured === undefined) return null;
    const first = this.earliestReadable(readable);
    if (first === undefined) return null;
    const returnedAtMs = measured.selectWoken() ? first.atMs : this.server.host.nowMs - Math.max(0, measured.lastReturnAgeMs());
    return this.readableBy(readable, returnedAtMs);
  }

  /**
   * What the loop's poll returned, in a loop that ran until `loopRanUntilMs`, where a connection in
   * `readable` has a measured wait: the earliest readable one, and every one readable when its select
   * returned — where its row puts that return (its hand-over less the time after the return), or where
   * the loop stopped if that is sooner, but not before it became readable. Null: none has.
   * Measured at gunicorn 20.1 gthread's flips (simulator/README.md, "The loop at a signal"): at reloads'
   * TERM handlers 121 of 189 held connections were readable and 39 handed over after them. A TERM's
   * handler runs on the loop's own thread, where it stopped; a recycle's flip, where its profile
   * measured the loop's return, takes that instead (`recycleReturn`).
   */
  private pollReturn(readable: readonly ConnId[], loopRanUntilMs: number): readonly ConnId[] | null {
    const first = this.earliestReadable(readable);
    if (first === undefined) return null;
    return this.readableBy(readable, Math.max(first.atMs, Math.min(first.dueAtMs - first.afterPollReturnMs, loopRanUntilMs)));
  }

  /** Of `readable`, the measured wait of the one that became readable first (the first in the list among equals); none has one: undefined. */
  private earliestReadable(readable: readonly ConnId[]): ReadableSince | undefined {
    let first: ReadableSince | undefined;
    for (const conn of readable) {
      const since = this.readableSince.get(conn);
      if (since !== undefined && (first === undefined || since.atMs < first.atMs)) first = since;
    }
    return first;
  }

  /**
   * A graceful exit's connections close when the process is gone: after its teardown, and no earlier
   * than the measured rest of a stop after the listener's close (`ServerTiming.exitAfterCloseMs`), which
   * holds the waits the machine has just ended — the later of the two, not their sum.
   */
  tearDown(): boolean {
    this.exitWaits = this.server.timing.gracefulExitMs?.() ?? {};
    const floorMs = this.exitNotBeforeMs === null ? 0 : this.exitNotBeforeMs - this.server.host.nowMs;
    const waitMs = floorMs > 0 ? Math.max(floorMs, this.exitWaits.teardownMs ?? 0) : this.exitWaits.teardownMs;
    return this.atOnceOrLater(waitMs, { kind: 'teardown', worker: this.id });
  }

  returnToPoller(conn: ConnId): boolean {
    return this.atOnceOrLater(this.server.timing.returnMs?.(conn), { kind: 'return', worker: this.id, conn });
  }

  pickUp(conn: ConnId, req: string): boolean {
    return this.atOnceOrLater(this.server.timing.pickupMs?.(conn, req, this.driver.openConns().length), { kind: 'pickup', worker: this.id, conn, req });
  }

  /** A measured wait the profile has (drawn by the caller, its item due after it): false. None: true, at once. */
  private atOnceOrLater(delayMs: number | undefined, item: ServerItem): boolean {
    if (delayMs === undefined) return true;
    this.wire.after(Math.max(0, delayMs), item);
    return false;
  }

  read(conn: ConnId): { keepAlive: boolean } | null {
    // Simulated clients send keep-alive requests, whole or in two parts: a partial one is read when its rest comes.
    const context = this.server.host.conn(conn).context;
    if (context.pendingPartial) return null;
    return { keepAlive: !(context.pendingReq !== null && this.refused(context.pendingReq)) };
  }

  handle(conn: ConnId, req: string): void {
    // A request pipelined behind this one is in the buffer already: the connection hears of it. So is
    // the body of a request refused from its head, which its client goes on sending (impl: 413).
    const held = this.behind.get(conn);
    if (held !== undefined) this.driver.requestBehind(conn, held[0]!);
    else if (this.refused(req)) this.driver.requestBehind(conn, req);
    const done: ServerItem = { kind: 'handler-done', worker: this.id, conn, req };
    const { cpu } = this.server.timing;
    if (cpu && !this.refused(req)) {
      // An event loop's read goes on to the handler in the same callback: nothing queued meanwhile comes between.
      const place = cpu.readsInTurn && cpu.shared.completing === this.id ? 'next' : 'last';
      cpu.shared.run(this.id, cpu.requestWorkMs(), () => this.server.arrive(done), place);
    }
    else this.wire.after(this.refused(req) ? 0 : Math.max(0, this.server.timing.serviceMs(req)), done);
  }

  respond(conn: ConnId, req: string, close: boolean): number {
    const status = this.refused(req) ? 413 : 200;
    this.server.network.respond(this.link(conn), req, close, status);
    this.later();
    return status;
  }

  private refused(req: string): boolean {
    return this.server.timing.refuses?.(req) ?? false;
  }

  closeSocket(conn: ConnId, rst: boolean): void {
    const link = this.server.linkOfConn.get(conn);
    // What the socket holds unread, the kernel's close resets (the chart never heard of it).
    const unread = this.unread.delete(conn);
    this.readableSince.delete(conn);
    if (link) this.server.network.serverCloses(link, rst || unread, this.closeCause(conn, link));
    this.server.linkOfConn.delete(conn);
    this.forgetBehind(conn);
    this.later();
  }

  halfClose(conn: ConnId): void {
    const link = this.link(conn);
    this.server.network.serverHalfCloses(link, this.closeCause(conn, link));
  }

  notifyArbiter(): void {
    this.server.arbiter.heartbeatFrom(this.id);
  }

  exit(code: number): void {
    if (this.heartbeatTimer) this.heartbeatTimer.cancelled = true;
    // What waited for the stopped process is void: it is gone (its connections closed with it).
    this.whileStopped.length = 0;
    this.unread.clear();
    this.stopped = false;
    // Its thread's work is gone with it: what it had not finished takes no more of the cores.
    this.server.timing.cpu?.shared.drop(this.id);
    if (this.bootThread !== null) this.server.abandonBoot(this.bootThread);
    // Killed during its teardown, it ends in the kernel: reaped at once.
    const reapInMs = code >= 0 ? this.exitWaits?.reapAfterTeardownMs : undefined;
    if (reapInMs === undefined) return this.server.reap(this, code);
    this.server.ended(this);
    this.reapPending = true;
    this.wire.after(Math.max(0, reapInMs), { kind: 'reap', worker: this.id, code });
  }

  /** The arbiter reaps the ended process (see `ServerTiming.reapAfterTeardownMs`). */
  reaped(code: number): void {
    this.reapPending = false;
    this.server.reap(this, code);
  }

  /** Why the server side closed: the mechanism a client failure on this connection is attributed to. */
  private closeCause(conn: ConnId, link: Link): ServerCloseCause {
    const context = this.server.host.conn(conn).context;
    if (context.abortReason) return context.abortReason;
    if (link.clientClosedSent) return 'peer-closed';
    if (link.lastResponseWrittenAtMs === this.server.host.nowMs) return 'after-response';
    return context.draining ? 'idle-close' : 'keepalive-timeout';
  }
}
