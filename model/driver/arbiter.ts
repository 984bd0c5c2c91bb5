/**
 * The arbiter's driver: every event sequence of the arbiter process, once,
 * for every platform (the simulator's virtual processes, the real server's
 * arbiter, the explorer). It tells the arbiter machine what happened and
 * carries out what the machine asks through a small port: start a worker,
 * signal one, close the listening socket, exit. It decides nothing itself:
 * who to spawn, signal or retire, when the deadline or the watchdog strikes,
 * and when the arbiter may exit are the chart's.
 *
 * The listening socket's holders are part of it: the arbiter holds a copy
 * from the start, every worker from its spawn until it releases its copy or
 * its process goes (the kernel closes every fd of a process that ends).
 */
import type { WorkerId, WorkerSignal } from '../events.ts';
import { workerId } from '../events.ts';
import type { ActorHost } from '../host.ts';
import type { ArbiterCommand } from '../machines/arbiter.ts';
import { dispatchCommand, type CommandHandlers } from '../machines/commands.ts';
import { maxRequestsBounds } from '../machines/index.ts';

/**
 * Which of gunicorn's two ways of starting workers a spawn is: `spawn-loop`, the main loop's
 * `manage_workers` (at the start, after a reap, at TTIN), which forks one worker after another with a
 * short random sleep between (`spawn_workers`); `reload`, a HUP's `reload()`, which forks the new
 * generation back to back. The chart decides that a worker is started; how soon the fork follows is
 * the platform's (a simulated arbiter's measured fork queue), and this says which queue it joins.
 */
export type SpawnPath = 'spawn-loop' | 'reload';

/** What an arbiter does to the world: the platform carries it out. */
export interface ArbiterPort {
  /** Start a worker process; its own driver boots it. `maxRequests`: its recycle limit (0: never). */
  spawnWorker(worker: WorkerId, maxRequests: number, path: SpawnPath): void;
  /** Deliver a signal to a worker process (it may be gone already). */
  signalWorker(worker: WorkerId, signal: WorkerSignal): void;
  /** Close the arbiter's copy of the listening socket. */
  closeListener(): void;
  /** The arbiter halted: the process exits with this code. */
  exit(code: number): void;
  /** Uniform in [0, 1): each worker's max-requests jitter is drawn from it. */
  random(): number;
}

export type ArbiterSignal = 'TERM' | 'INT' | 'QUIT' | 'HUP' | 'TTIN' | 'TTOU';

/** What an arbiter's driver keeps beside the machines, as data (an explorer's snapshots). */
export interface ArbiterDriverState {
  readonly nextWorker: number;
  readonly exitCode: number;
}

export class ArbiterDriver {
  private nextWorker = 1;
  private exitCode = 0;

  state(): ArbiterDriverState {
    return { nextWorker: this.nextWorker, exitCode: this.exitCode };
  }

  load(state: ArbiterDriverState): void {
    this.nextWorker = state.nextWorker;
    this.exitCode = state.exitCode;
  }
  private readonly handlers: CommandHandlers<ArbiterCommand, 'arbiter'> = {
    spawnWorkers: (_, { count }) => {
      // Only a running arbiter spawns: a command queued behind the step that began the stop is void.
      if (!this.host.matches('arbiter', 'running')) return;
      for (let i = 0; i < count; i++) this.spawn('spawn-loop');
    },
    reloadWorkers: (_, { count, retire }) => {
      // New workers first, so that something accepts while the old generation drains (gunicorn reload()).
      for (let i = 0; i < count; i++) this.spawn('reload');
      this.signalEach(retire, 'TERM');
    },
    retireWorkers: (_, { retire }) => this.signalEach(retire, 'TERM'),
    closeListener: () => {
      this.port.closeListener();
      this.host.emit('arbiter', { type: 'arbiter.close-listener' });
      this.host.emit('listener', { type: 'listener.release', holder: 'arbiter' });
      this.maybeExit();
    },
    signalWorkers: (_, { signal, workers }) => {
      this.signalEach(workers, signal);
      this.maybeExit();
    },
    murderWorkers: (_, { abort, kill }) => {
      this.signalEach(abort, 'ABRT');
      this.signalEach(kill, 'KILL');
    },
  };

  constructor(
    private readonly host: ActorHost,
    private readonly port: ArbiterPort,
  ) {
    host.own('arbiter', (actor, action) => dispatchCommand(this.handlers, actor as 'arbiter', action));
  }

  /** The process started: the listening socket is open (held by the arbiter), and the arbiter runs. */
  boot(): void {
    const { params } = this.host.runtimes;
    this.host.now(() => {
      this.host.emit('listener', { type: 'listener.open', family: params.family, backlog: params.backlog, somaxconn: params.somaxconn });
      this.host.emit('listener', { type: 'listener.hold', holder: 'arbiter' });
      this.host.emit('arbiter', { type: 'arbiter.start', workers: params.workers });
    });
  }

  /** A signal reached the arbiter. A halted (or killed) arbiter takes none: the process is gone. */
  signal(signal: ArbiterSignal): boolean {
    let taken = false;
    this.host.now(() => (taken = this.host.emitIfAccepted('arbiter', { type: 'arbiter.signal', signal })));
    return taken;
  }

  /** The arbiter saw a worker's heartbeat. Refused for a worker already reaped (its last beat arrived late). */
  heartbeatFrom(worker: WorkerId): void {
    this.host.now(() => this.host.emitIfAccepted('arbiter', { type: 'arbiter.heartbeat', worker }));
  }

  /**
   * A worker said it serves (its app loaded). Refused for a worker already reaped (its word arrived
   * late). Under a policy that retires a reload's old workers only as new ones serve, this is when.
   */
  readyFrom(worker: WorkerId): void {
    this.host.now(() => this.host.emitIfAccepted('arbiter', { type: 'arbiter.ready', worker }));
  }

  /** A worker closed its copy of the listening socket (while draining, or as its process ended). */
  listenerReleasedBy(worker: WorkerId): void {
    // Refused when the copy is already released: a worker that closed it before exiting, then exited.
    this.host.now(() => this.host.emitIfAccepted('listener', { type: 'listener.release', holder: worker }));
  }

  /**
   * A worker process ended and was reaped. The kernel closed its fds, its listener copy among them;
   * the arbiter forgets it (and a running arbiter replaces it).
   */
  reaped(worker: WorkerId, code: number): void {
    this.host.now(() => {
      this.listenerReleasedBy(worker);
      this.host.emit('arbiter', { type: 'arbiter.reap', worker, code });
      this.maybeExit();
    });
  }

  /** Something the arbiter cannot serve without (a worker that cannot boot): stop, and exit with this code. */
  halt(code: number): void {
    this.exitCode = code;
    // A halt while already stopping is just the stop going on; while running it begins one.
    this.host.now(() => this.host.emitIfAccepted('arbiter', { type: 'arbiter.signal', signal: 'TERM' }));
  }

  /** The workers the arbiter has spawned and not yet reaped, oldest first. */
  workers(): readonly WorkerId[] {
    return this.host.arbiter().context.workers;
  }

  isRunning(): boolean {
    return this.host.matches('arbiter', 'running');
  }

  hasExited(): boolean {
    return this.host.isDone('arbiter');
  }

  private spawn(path: SpawnPath): void {
    const worker = workerId(this.nextWorker++);
    const bounds = maxRequestsBounds(this.host.runtimes.params);
    // gunicorn draws each worker's limit when it creates it: max_requests + randint(0, jitter).
    const maxRequests = bounds.min > 0 ? bounds.min + Math.floor(this.port.random() * (bounds.max - bounds.min + 1)) : 0;
    this.host.emit('arbiter', { type: 'arbiter.spawn', worker });
    this.host.emit('listener', { type: 'listener.hold', holder: worker });
    this.port.spawnWorker(worker, maxRequests, path);
  }

  /**
   * The arbiter's kill loop: it sends every signal, then the kernel delivers them — no worker can
   * take its signal, exit and be reaped in the middle of the loop (gunicorn's `kill_workers`, our
   * server's kill(2) calls, one after another in one turn). A simulated delivery runs at once, so
   * the kills are decided first and delivered after.
   */
  private signalEach(workers: readonly WorkerId[], signal: WorkerSignal): void {
    // Refused when the worker was reaped meanwhile: a command computed before the reap names it still.
    const sent = workers.filter((worker) => this.host.emitIfAccepted('arbiter', { type: 'arbiter.kill', worker, signal }));
    for (const worker of sent) this.port.signalWorker(worker, signal);
  }

  /** The arbiter exits once every worker is reaped and its listener copy closed: the chart says when. */
  private maybeExit(): void {
    if (!this.host.emitIfAccepted('arbiter', { type: 'arbiter.exit', code: this.exitCode })) return;
    this.port.exit(this.exitCode);
  }
}
