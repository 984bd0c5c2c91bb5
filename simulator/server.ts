/**
 * The simulated server: the arbiter process and worker processes as a
 * platform for the model's drivers. The drivers decide everything that is a
 * lifecycle decision; this file says only how long things take here (boot,
 * service, a loop turn) and which connection a free worker takes from the
 * kernel's queue.
 */
import { ArbiterDriver, type ArbiterPort, type ArbiterSignal } from '../model/driver/arbiter.ts';
import { WorkerDriver, type WorkerPort } from '../model/driver/worker.ts';
import type { ClientId, ConnId, WorkerId, WorkerSignal } from '../model/events.ts';
import { SimulationInvariantError, type Engine } from './engine.ts';
import type { Kernel } from './kernel.ts';
import type { Link, Network, ServerCloseCause, ServerSide } from './network.ts';

export interface ServerTiming {
  /** Time from fork to a worker ready to accept (app import). */
  bootMs: number;
  /** Service time of a request, drawn per request. */
  serviceMs: (req: string) => number;
  /** A worker whose chart still lets it accept after the drain began (gthread ≤ 23's last loop turn) closes its listener copy when that turn ends: up to this long. */
  loopTickMs: number;
}

export class SimulatedServer implements ServerSide {
  readonly arbiter: ArbiterDriver;
  private readonly workers = new Map<WorkerId, WorkerProcess>();
  /** Every worker process ever spawned: a FIN may reach a connection whose process has exited (its driver knows it is closed). */
  private readonly everSpawned = new Map<WorkerId, WorkerProcess>();
  readonly linkOfConn = new Map<ConnId, Link>();
  exitCode: number | null = null;

  constructor(
    readonly engine: Engine,
    readonly kernel: Kernel,
    readonly network: Network,
    readonly timing: ServerTiming,
  ) {
    const port: ArbiterPort = {
      spawnWorker: (worker, maxRequests) => this.spawn(worker, maxRequests),
      signalWorker: (worker, signal) => this.workers.get(worker)?.signal(signal),
      // The arbiter's copy closes with the listener.release its driver writes: nothing else happens here.
      closeListener: () => {},
      exit: (code) => (this.exitCode = code),
      random: () => engine.rng.next(),
    };
    this.arbiter = new ArbiterDriver(engine, port);
    network.serve(this);
  }

  boot(): void {
    this.arbiter.boot();
  }

  signal(signal: ArbiterSignal): void {
    this.arbiter.signal(signal);
  }

  /** A signal from outside (an operator's kill(1)) to a worker: KILL, STOP, CONT. */
  signalWorker(worker: WorkerId, signal: WorkerSignal): void {
    this.workers.get(worker)?.signal(signal);
  }

  workerIds(): WorkerId[] {
    return [...this.workers.keys()];
  }

  process(worker: WorkerId): WorkerProcess | undefined {
    return this.workers.get(worker);
  }

  // ───────────────────────── from the network ─────────────────────────

  requestArrives(_link: Link, conn: ConnId, req: string): void {
    const proc = this.owner(conn);
    proc.whenRunning(() => proc.driver.requestArrived(conn, req));
  }

  finArrives(_link: Link, conn: ConnId): void {
    const proc = this.owner(conn);
    proc.whenRunning(() => proc.driver.peerFin(conn));
  }

  connectionQueued(): void {
    // The kernel wakes one accept() waiter, not always the same: the waiting workers in a seeded random order.
    const ready = [...this.workers.values()].filter((p) => p.ready && !p.stopped);
    for (let i = ready.length - 1; i > 0; i--) {
      const j = this.engine.rng.int(0, i);
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

  private spawn(worker: WorkerId, maxRequests: number): void {
    const proc = new WorkerProcess(this, worker);
    this.workers.set(worker, proc);
    this.everSpawned.set(worker, proc);
    proc.boot(maxRequests);
  }

  /** The process ended: the arbiter reaps it at once (SIGCHLD). */
  reap(proc: WorkerProcess, code: number): void {
    this.workers.delete(proc.id);
    this.arbiter.reaped(proc.id, code);
  }
}

/** One worker process: its threads take service time, its loop heartbeats and accepts. */
export class WorkerProcess implements WorkerPort {
  readonly driver: WorkerDriver;
  ready = false;
  private heartbeatTimer: { cancelled: boolean } | null = null;
  /** SIGSTOPped: it reads nothing, finishes nothing, accepts nothing until CONT (only KILL reaches it). */
  stopped = false;
  private readonly whileStopped: (() => void)[] = [];

  constructor(
    private readonly server: SimulatedServer,
    readonly id: WorkerId,
  ) {
    this.driver = new WorkerDriver(server.engine, id, this);
  }

  private get engine(): Engine {
    return this.server.engine;
  }

  boot(maxRequests: number): void {
    this.driver.boot(maxRequests);
    this.engine.after(this.server.timing.bootMs, () => {
      if (!this.driver.ready()) return;
      this.ready = true;
      this.scheduleHeartbeat();
      this.acceptFromQueue();
    });
  }

  signal(signal: WorkerSignal): void {
    // A stopped process takes no signal but KILL (and CONT): the kernel holds the rest until CONT.
    if (this.stopped && signal !== 'KILL' && signal !== 'CONT') {
      this.whileStopped.push(() => this.driver.signal(signal));
      return;
    }
    if (!this.driver.signal(signal)) return;
    if (signal === 'STOP' && this.driver.isFrozen()) {
      this.stopped = true;
      this.engine.suspend(this.id);
    } else if (this.stopped && signal === 'CONT') this.wake();
    else if (this.stopped && this.driver.hasExited()) this.wake(); // killed while stopped: nothing is left to wait for it
  }

  /** Run now, or when the process is continued if it is stopped. */
  whenRunning(run: () => void): void {
    if (this.stopped) this.whileStopped.push(run);
    else run();
  }

  private wake(): void {
    this.stopped = false;
    this.engine.resume(this.id);
    // What arrived meanwhile — signals held by the kernel, bytes, finished handlers — in the order it came.
    for (const run of this.whileStopped.splice(0)) run();
    this.acceptFromQueue();
  }

  /** Take connections from the kernel's queue while the worker's machine lets it. */
  acceptFromQueue(): void {
    if (!this.ready || this.stopped) return;
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
    this.engine.after(0, () => this.acceptFromQueue());
  }

  private scheduleHeartbeat(): void {
    this.heartbeatTimer = this.engine.at(this.server.engine.runtimes.params.heartbeatIntervalMs, () => {
      this.heartbeatTimer = null;
      if (this.driver.hasExited()) return;
      this.driver.heartbeat();
      this.scheduleHeartbeat();
    });
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
    const release = () => {
      this.driver.listenerReleased();
      this.server.arbiter.listenerReleasedBy(this.id);
    };
    // A worker whose chart still lets it accept finishes its loop turn first (gthread ≤ 23): up to
    // loopTickMs, taking what is queued meanwhile.
    if (this.driver.mayAccept()) {
      this.engine.after(this.engine.rng.uniform(0, this.server.timing.loopTickMs), release);
      this.later();
    } else release();
  }

  read(): { keepAlive: boolean } {
    // Simulated clients send whole keep-alive requests at once.
    return { keepAlive: true };
  }

  handle(conn: ConnId, req: string): void {
    this.engine.after(Math.max(0, this.server.timing.serviceMs(req)), () => this.whenRunning(() => this.driver.handlerFinished(conn, req)));
  }

  respond(conn: ConnId, req: string, close: boolean): number {
    this.server.network.respond(this.link(conn), req, close);
    this.later();
    return 200;
  }

  closeSocket(conn: ConnId, rst: boolean): void {
    const link = this.server.linkOfConn.get(conn);
    if (link) this.server.network.serverCloses(link, rst, this.closeCause(conn, link));
    this.server.linkOfConn.delete(conn);
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
    this.stopped = false;
    this.server.reap(this, code);
  }

  /** Why the server side closed: the mechanism a client failure on this connection is attributed to. */
  private closeCause(conn: ConnId, link: Link): ServerCloseCause {
    const context = this.engine.conn(conn).context;
    if (context.abortReason) return context.abortReason;
    if (link.clientClosedSent) return 'peer-closed';
    if (link.lastResponseWrittenAtMs === this.engine.nowMs) return 'after-response';
    return context.draining ? 'idle-close' : 'keepalive-timeout';
  }
}
