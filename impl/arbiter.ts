/**
 * The arbiter (gunicorn's master) as a platform under the model's arbiter
 * driver: it binds the listening socket once, starts worker processes that
 * all accept from it, delivers real signals, relays heartbeats, reaps, and
 * writes the one merged trace. Who to spawn, signal or retire, when the
 * deadline or the heartbeat watchdog strikes, and when to exit are the
 * arbiter machine's; this file carries them out with real processes.
 *
 * The socket is bound here but listen(2) is called by the workers: the
 * arbiter keeps its copy of the fd without ever accepting on it (Node has no
 * way to listen without accepting), so the kernel's accept queue is the only
 * queue, shared by every worker as behind gunicorn. Because the arbiter holds
 * its copy, connections queued while no worker accepts (a recycle, a reload)
 * wait instead of being reset.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { ArbiterDriver, type ArbiterSignal } from '../model/driver/arbiter.ts';
import { chooseSpare, sparesToStart } from '../model/driver/spares.ts';
import type { TraceEvent, WorkerId, WorkerSignal } from '../model/events.ts';
import { keepingOnly, NO_TRACE, traceEvent, type ActorSnapshot, type TraceSink } from '../model/host.ts';
import { isLifecycleEvent, type TraceScope } from '../model/trace.ts';
import { runtimesFor, type Runtimes } from '../model/machines/index.ts';
import type { ServerParams } from '../model/params.ts';
import { getPolicy } from '../model/policies.ts';
import { isBuiltinApp } from './apps.ts';
import { ConfigError, readSomaxconn, serverParamsOf, type ServeConfig } from './config.ts';
import { DEFAULT_LIMITS } from './http.ts';
import { LiveHost, monotonicNs } from './live-host.ts';
import { WorkerShadow, type WorkerEnd } from './shadow.ts';
import { isWorkerMessage, WORKER_BOOT_ERROR, WORKER_SPEC_ENV, type ArbiterMessage, type SpareSpec, type WorkerIdentity, type WorkerMessage } from './protocol.ts';
import { TraceWriter } from './trace-writer.ts';
import { markUsed } from '../bin/bundle-cache.mjs';
import { codeCachePath, WORKER_BOOT_SCRIPT, workerBundle } from './worker-bundle.ts';

/** A bound, not yet listening socket handle (Node's internal TCP/Pipe wrap). */
interface ServerHandle {
  readonly fd: number;
  getsockname?(out: { address?: string; port?: number }): number;
  close(): void;
}

type CreateServerHandle = (address: string | null, port: number, addressType: number) => ServerHandle | number;

interface WorkerRecord {
  readonly id: WorkerId;
  readonly identity: WorkerIdentity;
  readonly child: ChildProcess;
  ready: boolean;
  bootError: string | null;
  /** What the worker said as it crashed (an uncaught error), if it had the chance. */
  crash: string | null;
  /** It exited through its machine (its last message, 'bye', arrived). */
  saidBye: boolean;
  /** Its actors as of its last batch of events, in a lifecycle trace (see `WorkerShadow.restored`). */
  actors: readonly ActorSnapshot[] | null;
  /** Signals this arbiter sent it. */
  readonly sent: Set<WorkerSignal>;
  /**
   * Its process has installed its signal handlers (it said signals-ready). Until then a signal would
   * meet Node's default action and kill it unheard: the arbiter holds it back (as a forked gunicorn
   * worker ignores signals until init_signals), except KILL, which no handler changes.
   */
  takesSignals: boolean;
  readonly heldSignals: WorkerSignal[];
}

/**
 * A worker process that has loaded the app and compiled the machines (or is still doing so) and
 * waits to be given a worker's identity. Spawning a worker takes a ready spare, which makes it
 * serve within milliseconds — as gunicorn's fork does — instead of a Node.js boot.
 */
interface Spare {
  readonly child: ChildProcess;
  ready: boolean;
  /** Its signal handlers are installed (it may still be loading the app). */
  takesSignals: boolean;
  /** The worker it is to become (once ready): from then on its messages and its end are that worker's. */
  becomes: WorkerRecord | null;
  bootError: string | null;
  /** The arbiter retired it (a reload, the stop). */
  retired: boolean;
}

/** A spare no worker has taken, and the arbiter has not retired. */
const isFreeSpare = (spare: Spare): boolean => spare.becomes === null && !spare.retired;

/** Spares kept while the server runs: one covers a recycle or a replacement at a time. */
const SPARES = 1;

/** The largest request budget (max-requests + jitter) at which a worker still gains from skipping TurboFan (workerTierArgs). */
const SHORT_LIVED_WORKER_REQUESTS = 4096;

/**
 * The node flags a worker starts with: ours, then QUIESCE_WORKER_NODE_ARGS (--cpu-prof,
 * --max-old-space-size …), so that the user's win (V8 takes the last of a flag).
 *
 * A worker that will serve only a few thousand requests spends more CPU having TurboFan compile its
 * request path (on V8's background threads, on the same cores) than the optimized code gives back
 * before the process is recycled. Below the break-even, its V8 stops at the baseline tier
 * (Sparkplug). Measured with `ab -n 40000 -c 20 -k -r`, 4 workers × 20 threads, the hello app, on the
 * 2-core CI machine (requests/s, default → --max-opt=1): max-requests 512: 6.7 k → 8.3 k; 1024:
 * 8.3 k → 12.0 k; 2048: 10.1 k → 14.8 k; 4096: 14.9 k → 17.7 k; 8192: 19.4 k → 18.1 k; without
 * recycling it halves (46 k → 25 k). A user's app keeps V8's defaults: its handler's own cost
 * decides where its break-even lies (QUIESCE_WORKER_NODE_ARGS=--max-opt=1 chooses it).
 */
export function workerNodeArgs(app: string, params: Pick<ServerParams, 'maxRequests' | 'maxRequestsJitter'>, userArgs: string | undefined): string[] {
  const budget = params.maxRequests + params.maxRequestsJitter;
  const shortLived = params.maxRequests > 0 && budget <= SHORT_LIVED_WORKER_REQUESTS;
  const ours = shortLived && isBuiltinApp(app) ? ['--max-opt=1'] : [];
  return [...ours, ...(userArgs ?? '').split(' ').filter(Boolean)];
}

export interface ArbiterOutput {
  log: (line: string) => void;
}

export class Arbiter {
  private readonly params: ServerParams;
  private readonly runtimes: Runtimes;
  private readonly host: LiveHost;
  private readonly driver: ArbiterDriver;
  /** Each worker's actors as it reported them, to write its end if it dies silently. */
  private readonly shadows = new Map<WorkerId, WorkerShadow>();
  private readonly trace: TraceWriter | null;
  private readonly workers = new Map<WorkerId, WorkerRecord>();
  private readonly originNs = monotonicNs();
  private handle: ServerHandle | null = null;
  private workerScript = '';
  private readonly spares = new Set<Spare>();
  /** Messages carrying the listening socket not yet written, per child (see sendHandle). */
  private readonly handleSends = new Map<ChildProcess, number>();
  private closingListener = false;
  private announcedListening = false;
  private fatal: string | null = null;
  private resolveDone: ((code: number) => void) | null = null;

  constructor(
    private readonly config: ServeConfig,
    private readonly output: ArbiterOutput,
  ) {
    this.params = serverParamsOf(config, readSomaxconn());
    this.runtimes = runtimesFor(getPolicy(config.policy), this.params);
    this.trace = config.trace ? openTrace(config.trace, config.policy, this.params, { source: 'impl', bind: config.bind, originMonotonicNs: this.originNs.toString() }, config.traceEvents) : null;
    const write: TraceSink = (t, actor, event) => this.trace?.write(traceEvent(t, actor, event));
    this.host = new LiveHost(this.runtimes, !this.trace ? NO_TRACE : config.traceEvents === 'lifecycle' ? keepingOnly(isLifecycleEvent, write) : write, this.originNs);
    // The kernel resets whatever was queued when the last copy closed; the server cannot see it.
    this.host.own('listener', () => {});
    this.driver = new ArbiterDriver(this.host, {
      spawnWorker: (worker, maxRequests) => this.spawnWorker(worker, maxRequests),
      signalWorker: (worker, signal) => this.signalWorker(worker, signal),
      // Closing a unix socket handle that bound the path also unlinks it: new connects get ENOENT.
      closeListener: () => this.closeListener(),
      exit: (code) => this.exited(code),
      random: Math.random,
    });
  }

  /** Bind, spawn the workers, and run until the server stops; resolves with the exit code. */
  run(): Promise<number> {
    this.validateApp();
    this.handle = this.bind();
    this.boundAddress = this.addressOf(this.handle);
    this.workerScript = workerBundle();
    if (this.config.pid) {
      try {
        writeFileSync(this.config.pid, `${process.pid}\n`);
      } catch (error) {
        throw new ConfigError(`pid: cannot write "${this.config.pid}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    }
    const done = new Promise<number>((resolve) => (this.resolveDone = resolve));
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU'] as const) {
      process.on(signal, () => this.signal(signal.slice(3) as ArbiterSignal));
    }
    this.driver.boot();
    return done;
  }

  signal(signal: ArbiterSignal): void {
    this.output.log(`[arbiter] received SIG${signal}`);
    // A reload loads the app anew (gunicorn: new workers import it again): spares loaded the old one.
    if (signal === 'HUP' && this.driver.isRunning()) this.retireSpares();
    this.driver.signal(signal);
    if (!this.driver.isRunning()) this.retireSpares();
  }

  /** The address clients connect to, as bound (port 0 resolved): known from the bind on, even after the socket closed. */
  address(): string {
    return this.boundAddress ?? '(not bound)';
  }

  private boundAddress: string | null = null;

  private addressOf(handle: ServerHandle): string {
    const bind = this.config.bind;
    if (bind.family === 'unix') return `unix:${bind.path}`;
    const out: { address?: string; port?: number } = {};
    handle.getsockname?.(out);
    const host = bind.host.includes(':') ? `[${bind.host}]` : bind.host;
    return `http://${host}:${out.port ?? bind.port}`;
  }

  // ───────────────────────── socket ─────────────────────────

  private validateApp(): void {
    if (isBuiltinApp(this.config.app)) return;
    if (!existsSync(this.config.app)) throw new ConfigError(`app: "${this.config.app}" is neither a built-in app (hello, sleep, echo, counter) nor an existing module file`);
  }

  private bind(): ServerHandle {
    const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
    if (typeof create !== 'function') throw new ConfigError('this Node.js has no net._createServerHandle: cannot bind a socket without accepting on it');
    const bind = this.config.bind;
    let result: ServerHandle | number;
    if (bind.family === 'unix') {
      this.removeStaleSocket(bind.path);
      result = create(bind.path, -1, -1);
    } else {
      result = create(bind.host, bind.port, net.isIPv6(bind.host) ? 6 : 4);
    }
    const where = bind.family === 'unix' ? `unix:${bind.path}` : `${bind.host}:${bind.port}`;
    if (typeof result === 'number') throw new ConfigError(`bind: cannot bind ${where}: ${getSystemErrorName(result)}`);
    if (bind.family === 'tcp') {
      // libuv defers a bind's EADDRINUSE to listen(2), which the workers call; the socket is then
      // unbound (listen would pick a random port). Catch it here, where the error can still be said.
      const out: { port?: number } = {};
      result.getsockname?.(out);
      if (bind.port !== 0 && out.port !== bind.port) {
        result.close();
        throw new ConfigError(`bind: cannot bind ${where}: EADDRINUSE`);
      }
    }
    return result;
  }

  /** gunicorn removes a leftover socket file, but not one a live server still listens on. */
  private removeStaleSocket(path: string): void {
    let stat;
    try {
      stat = lstatSync(path);
    } catch {
      return;
    }
    if (!stat.isSocket()) throw new ConfigError(`bind: unix:${path} exists and is not a socket`);
    unlinkSync(path);
  }

  // ───────────────────────── the port ─────────────────────────

  private spawnWorker(id: WorkerId, maxRequests: number): void {
    const spare = this.takeSpare();
    const identity: WorkerIdentity = { id, n: Number(id.slice('worker/'.length)), maxRequests };
    const record: WorkerRecord = { id, identity, child: spare.child, ready: false, bootError: spare.bootError, crash: null, saidBye: false, actors: null, sent: new Set(), takesSignals: spare.takesSignals, heldSignals: [] };
    spare.becomes = record;
    // A shadow follows a worker's connections from its events. A lifecycle trace has none: its worker
    // sends its actors' states instead, and the shadow is made from the last of them when needed (`reap`).
    if (this.trace && this.config.traceEvents === 'all') this.shadows.set(id, new WorkerShadow(id, this.runtimes, (event) => this.trace?.write(event), () => this.host.nowMs));
    this.workers.set(id, record);
    this.activate(record);
    this.keepSpares();
  }

  /** A ready spare if there is one, else one still loading, else a new one (model/driver/spares.ts). */
  private takeSpare(): Spare {
    return chooseSpare(this.spares, isFreeSpare) ?? this.startSpare();
  }

  private keepSpares(): void {
    if (!this.driver.isRunning()) return;
    for (let n = sparesToStart(this.spares, isFreeSpare, SPARES); n > 0; n--) this.startSpare();
  }

  private startSpare(): Spare {
    const spec: SpareSpec = {
      policy: this.config.policy,
      params: this.params,
      app: this.config.app,
      cwd: process.cwd(),
      counterLog: this.config.counterLog,
      limits: { ...DEFAULT_LIMITS, maxBodyBytes: this.config.maxBodyBytes },
      originNs: this.originNs.toString(),
      trace: this.trace ? this.config.traceEvents : null,
    };
    const nodeArgs = workerNodeArgs(this.config.app, this.params, process.env.QUIESCE_WORKER_NODE_ARGS);
    // A long-running server needs its bundle at every spawn: pruning spares a bundle used this week.
    markUsed(this.workerScript);
    const child = spawn(process.execPath, [...nodeArgs, WORKER_BOOT_SCRIPT, this.workerScript, codeCachePath(this.workerScript), 'spare'], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: this.workerEnv(spec),
    });
    const spare: Spare = { child, ready: false, takesSignals: false, becomes: null, bootError: null, retired: false };
    this.spares.add(spare);
    child.on('message', (message: unknown) => {
      if (spare.becomes) this.onMessage(spare.becomes, message);
      else this.onSpareMessage(spare, message);
    });
    // 'close' comes after the IPC channel drained: every event the worker sent is in.
    // A retired spare's channel is closed by us: its 'close' may never come, and nothing it says matters.
    child.on('exit', () => {
      if (spare.retired) this.spares.delete(spare);
    });
    child.on('close', (code, signal) => {
      this.spares.delete(spare);
      // What was queued for it will never be written.
      this.handleSends.delete(child);
      this.closeListenerIfSent();
      if (spare.becomes) this.reap(spare.becomes, code, signal);
      else this.spareEnded(spare, code, signal);
    });
    child.on('error', (error) => this.output.log(`[arbiter] ${spare.becomes?.id ?? 'spare'}: ${error.message}`));
    return spare;
  }

  /**
   * A worker's environment is the arbiter's, with one exception. Node reads and parses every
   * certificate in NODE_EXTRA_CA_CERTS when a process starts, whether or not it ever opens a TLS
   * connection: with a system bundle there, that is about two thirds of a worker's start (≈ 40 of
   * 60 ms of CPU, measured with `node -e 0` on the 2-core CI machine) and, under max-requests
   * recycling, a fifth of the server's CPU. A built-in app makes no outbound connection, so its
   * workers start without it; a user's app keeps the environment exactly as given.
   */
  private workerEnv(spec: SpareSpec): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, [WORKER_SPEC_ENV]: JSON.stringify(spec) };
    if (isBuiltinApp(this.config.app)) delete env.NODE_EXTRA_CA_CERTS;
    return env;
  }

  private onSpareMessage(spare: Spare, message: unknown): void {
    if (!isWorkerMessage(message)) return;
    if (message.kind === 'signals-ready') spare.takesSignals = true;
    else if (message.kind === 'spare-ready') spare.ready = true;
    else if (message.kind === 'boot-error') spare.bootError = message.message;
  }

  /**
   * A spare that ended before it became a worker. Retired, nothing to say. One that could not load
   * the app tells what the next worker would meet: the server halts, as when a worker cannot boot.
   */
  private spareEnded(spare: Spare, code: number | null, signal: NodeJS.Signals | null): void {
    if (spare.retired || this.fatal !== null) return;
    // Ended while loading: it failed to boot, and so would the next worker (gunicorn halts).
    if (spare.bootError !== null || code === WORKER_BOOT_ERROR || !spare.ready) {
      this.fatal = spare.bootError ?? `a new worker process (pid ${spare.child.pid}) died before it booted (${signal ? `killed by ${signal}` : `exit code ${code}`}); its output above says why`;
      this.driver.halt(2);
      this.retireSpares();
      return;
    }
    this.output.log(`[arbiter] a spare worker process (pid ${spare.child.pid}) ended before it was needed: ${signal ? `killed by ${signal}` : `exit code ${code}`}`);
    this.keepSpares();
  }

  /**
   * Give a spare its identity and its two copies of the listening socket, at once even if it is
   * still loading: each copy is a file descriptor in the message, the kernel's from the moment it is
   * sent, and the spare starts as that worker once it has both and its app.
   */
  private activate(record: WorkerRecord): void {
    this.sendHandle(record.child, { kind: 'activate', identity: record.identity });
    this.sendHandle(record.child, { kind: 'held-copy' });
  }

  /**
   * Node writes one message with a socket at a time and queues the next until the child acknowledges
   * it, holding the handle object, not a copy: the arbiter's copy must stay open until every
   * such message is out (closeListener waits for that).
   */
  private sendHandle(child: ChildProcess, message: ArbiterMessage): void {
    if (!this.handle) return;
    const done = () => {
      const left = (this.handleSends.get(child) ?? 1) - 1;
      if (left > 0) this.handleSends.set(child, left);
      else this.handleSends.delete(child);
      this.closeListenerIfSent();
    };
    this.handleSends.set(child, (this.handleSends.get(child) ?? 0) + 1);
    try {
      child.send(message, this.handle as unknown as net.Socket, {}, done);
    } catch {
      // It is gone: its close event is on the way, and reaps it as the worker it was to become.
      done();
    }
  }

  /**
   * The arbiter's copy closes — once no message carrying it is still queued (see sendHandle): a
   * worker spawned before the close holds its copy in the model from its spawn, as a forked one
   * does. Closing a unix socket's handle also unlinks its path: new connects get ENOENT.
   */
  private closeListener(): void {
    this.closingListener = true;
    this.closeListenerIfSent();
  }

  private closeListenerIfSent(): void {
    if (!this.closingListener || this.handleSends.size > 0 || !this.handle) return;
    this.handle.close();
    this.handle = null;
  }

  private retireSpares(): void {
    for (const spare of this.spares) {
      if (spare.becomes !== null || spare.retired) continue;
      spare.retired = true;
      // Not a signal: a signal may reach a spare just as it becomes a worker, and is then the worker's.
      if (spare.child.connected) spare.child.disconnect();
    }
  }

  private signalWorker(worker: WorkerId, signal: WorkerSignal): void {
    const record = this.workers.get(worker);
    if (!record) return;
    record.sent.add(signal);
    if (signal === 'ABRT') this.output.log(`[arbiter] WORKER TIMEOUT ${worker} (pid ${record.child.pid})`);
    if (!record.takesSignals && signal !== 'KILL') {
      record.heldSignals.push(signal);
      return;
    }
    this.kill(record, signal);
  }

  private kill(record: WorkerRecord, signal: WorkerSignal): void {
    try {
      record.child.kill(`SIG${signal}`);
    } catch {
      // Already gone: its close event is on the way.
    }
  }

  private exited(code: number): void {
    this.retireSpares();
    this.host.stop();
    this.trace?.finish(this.fatal === null);
    if (this.config.pid) {
      try {
        unlinkSync(this.config.pid);
      } catch {
        // already gone
      }
    }
    if (this.fatal) this.output.log(`quiesce serve: ${this.fatal}`);
    else this.output.log('[arbiter] stopped');
    // No process of ours outlives the arbiter: a supervisor that saw it exit may start another.
    void Promise.all([...this.spares].map(untilExited)).then(() => this.resolveDone?.(code));
  }

  // ───────────────────────── workers ─────────────────────────

  private onMessage(record: WorkerRecord, message: unknown): void {
    if (!isWorkerMessage(message)) return;
    const m = message as WorkerMessage;
    switch (m.kind) {
      case 'signals-ready':
        // A spare taken before its handlers were installed (the first workers, a quick succession of spawns).
        record.takesSignals = true;
        for (const signal of record.heldSignals.splice(0)) this.kill(record, signal);
        return;
      case 'spare-ready':
        return;
      case 'ready':
        record.ready = true;
        this.driver.readyFrom(record.id);
        // Announced once the first set of workers all serve: "listening" then means ready for the load.
        // Not once a stop began: the workers that come up then drain at once, and the socket may be closed.
        if (!this.announcedListening && this.driver.isRunning() && [...this.workers.values()].filter((w) => w.ready).length >= this.params.workers) {
          this.announcedListening = true;
          this.output.log(`[arbiter] listening at ${this.address()} (${this.params.workers} worker${this.params.workers === 1 ? '' : 's'}, policy ${this.config.policy}, pid ${process.pid})`);
        }
        return;
      case 'heartbeat':
        this.driver.heartbeatFrom(record.id);
        return;
      case 'events': {
        for (const event of m.events) this.trace?.write(event);
        const shadow = this.shadows.get(record.id);
        if (shadow) for (const event of m.events) shadow.report(event);
        if (m.actors) record.actors = m.actors;
        return;
      }
      case 'released-listener':
        this.driver.listenerReleasedBy(record.id);
        return;
      case 'boot-error':
        record.bootError = m.message;
        return;
      case 'bye':
        record.saidBye = true;
        return;
      case 'crash':
        record.crash = m.message;
        return;
      case 'listener-request':
        // Only while the arbiter still holds its copy: after that no worker should accept anew.
        if (this.host.arbiter().context.holdsListener) this.sendHandle(record.child, { kind: 'listener-copy' });
        return;
    }
  }

  private reap(record: WorkerRecord, code: number | null, signal: NodeJS.Signals | null): void {
    // As Python's subprocess and Node report it: the exit code, or −(signal number).
    const exitCode = code ?? -(signal ? (osConstants.signals[signal] ?? 1) : 1);
    this.workers.delete(record.id);
    const end = this.endOf(record, signal);
    // gunicorn halts when a worker fails before it booted (exit 3): replacing it would only fail again, forever.
    // Not when a signal ended it (gunicorn's reap_workers: "Worker was sent SIGSEGV!", and a replacement).
    const diedBooting = end.kind === 'crashed' && !record.ready && end.signal === null;
    const bootFailed = record.bootError !== null || code === WORKER_BOOT_ERROR || diedBooting;
    if (bootFailed && this.fatal === null) {
      this.fatal = record.bootError ?? `${record.id} died before it booted (${signal ? `killed by ${signal}` : `exit code ${code}`}); its output above says why`;
    }
    // A boot error is said once, as the reason the server stops; the other workers' ends are its consequence.
    if (end.kind !== 'exited' && !bootFailed && this.fatal === null) this.logEnd(record, end, exitCode);
    const shadow = this.shadows.get(record.id) ?? this.restoredShadow(record);
    this.shadows.delete(record.id);
    shadow?.writeKernelEnd(exitCode, end);
    // A worker that cannot boot stops the server (gunicorn: HaltServer), with a user error's exit code —
    // before its reap, so that the stopping arbiter does not replace it.
    if (bootFailed) this.driver.halt(2);
    this.driver.reaped(record.id, exitCode);
  }

  /** A lifecycle trace's shadow of a worker, from the actors its last batch of events carried (only such batches carry them). */
  private restoredShadow(record: WorkerRecord): WorkerShadow | null {
    if (record.actors === null) return null;
    const write = (event: TraceEvent) => {
      if (isLifecycleEvent(event.actor, event)) this.trace?.write(event);
    };
    return WorkerShadow.restored(record.id, this.runtimes, record.actors, write, () => this.host.nowMs);
  }

  /**
   * A worker that said goodbye exited through its machine. One that did not was killed (SIGKILL,
   * whoever sent it) or died otherwise: an uncaught error (it says so, and exits WORKER_CRASH), or a
   * signal that ended it before its handler could (a TERM to a worker still loading, a SEGV).
   */
  private endOf(record: WorkerRecord, signal: NodeJS.Signals | null): WorkerEnd {
    if (record.saidBye && record.crash === null) return { kind: 'exited' };
    if (signal === 'SIGKILL') return { kind: 'killed' };
    return { kind: 'crashed', signal: signal ? signal.slice(3) : null };
  }

  /** One line for an end nobody asked for, or that the arbiter asked for (its KILL after a timeout). */
  private logEnd(record: WorkerRecord, end: Exclude<WorkerEnd, { kind: 'exited' }>, code: number): void {
    const who = `${record.id} (pid ${record.child.pid})`;
    if (end.kind === 'killed') {
      this.output.log(`[arbiter] ${who} killed by SIGKILL${record.sent.has('KILL') ? '' : ' (not sent by the arbiter)'}`);
      return;
    }
    const name = end.signal as WorkerSignal | null;
    const sentByUs = name !== null && record.sent.has(name);
    const how = end.signal ? `killed by SIG${end.signal}${sentByUs ? ' (sent by the arbiter, before the worker could handle it)' : ''}` : `exit code ${code}`;
    this.output.log(`[arbiter] ${who} ${sentByUs ? 'ended' : 'crashed'}: ${how}${record.crash ? `: ${record.crash}` : ''}${this.driver.isRunning() ? '; replacing it' : ''}`);
  }
}

/**
 * Resolves once the spare's process exited; one still busy after 2 s (an app loading synchronously)
 * is killed. Its exit, not its close: a retired spare's channel is already disconnected, and nothing
 * it could still say matters.
 */
function untilExited(spare: Spare): Promise<void> {
  return new Promise((resolve) => {
    if (spare.child.exitCode !== null || spare.child.signalCode !== null) return resolve();
    const kill = setTimeout(() => spare.child.kill('SIGKILL'), 2000);
    spare.child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
  });
}

function openTrace(path: string, policy: string, params: ServerParams, meta: Record<string, unknown>, events: TraceScope): TraceWriter {
  try {
    return new TraceWriter(path, policy, params, meta, events);
  } catch (error) {
    throw new ConfigError(`trace: cannot write "${path}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
