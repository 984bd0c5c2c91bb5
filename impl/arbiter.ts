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
import { WorkerDriver } from '../model/driver/worker.ts';
import type { TraceEvent, WorkerId, WorkerSignal } from '../model/events.ts';
import { ActorHost, NO_TRACE, traceEvent, type Timer } from '../model/host.ts';
import { runtimesFor, type Runtimes } from '../model/machines/index.ts';
import type { ServerParams } from '../model/params.ts';
import { getPolicy } from '../model/policies.ts';
import { isBuiltinApp } from './apps.ts';
import { ConfigError, readSomaxconn, serverParamsOf, type ServeConfig } from './config.ts';
import { DEFAULT_LIMITS } from './http.ts';
import { LiveHost, monotonicNs, ServerInvariantError } from './live-host.ts';
import { isWorkerMessage, WORKER_BOOT_ERROR, WORKER_SPEC_ENV, type WorkerMessage, type WorkerSpec } from './protocol.ts';
import { TraceWriter } from './trace-writer.ts';
import { workerBundle } from './worker-bundle.ts';

/** A bound, not yet listening socket handle (Node's internal TCP/Pipe wrap). */
interface ServerHandle {
  readonly fd: number;
  getsockname?(out: { address?: string; port?: number }): number;
  close(): void;
}

type CreateServerHandle = (address: string | null, port: number, addressType: number) => ServerHandle | number;

interface WorkerRecord {
  readonly id: WorkerId;
  readonly child: ChildProcess;
  ready: boolean;
  bootError: string | null;
  /** What the worker said as it crashed (an uncaught error), if it had the chance. */
  crash: string | null;
  /** It exited through its machine (its last message, 'bye', arrived). */
  saidBye: boolean;
  /** Signals this arbiter sent it. */
  readonly sent: Set<WorkerSignal>;
}

/** How a worker's process ended, as the arbiter saw it reaped. */
type WorkerEnd = { kind: 'exited' } | { kind: 'killed' } | { kind: 'crashed'; signal: string | null };

export interface ArbiterOutput {
  log: (line: string) => void;
}

/**
 * Follows a worker's actors from the events it reports, so that when the
 * worker dies without a word (SIGKILL, a crash) the arbiter can write what the
 * kernel did for it. Events are kept per actor and folded into machine states
 * in batches (off the hot path); a closed connection is forgotten, so memory
 * stays bounded by what is open. While following, the machines' commands were
 * the worker's own to carry out: nothing here acts on them, and no timer
 * fires. When the worker dies, its own driver takes over on this host with
 * the kernel as its platform, and writes the end the chart gives.
 */
class WorkerShadow extends ActorHost {
  private readonly unfolded = new Map<string, TraceEvent[]>();
  private writing = false;
  exited = false;

  constructor(
    private readonly followed: WorkerId,
    runtimes: Runtimes,
    private readonly write: (event: TraceEvent) => void,
    private readonly clock: () => number,
  ) {
    super(runtimes, (t, actor, event) => {
      if (this.writing) this.write(traceEvent(t, actor, event));
    });
    this.own(followed, () => {});
  }

  get nowMs(): number {
    return this.clock();
  }

  at(): Timer {
    return { cancelled: true };
  }

  protected invariant(message: string): Error {
    return new ServerInvariantError(message.replace('the host produced', 'a worker reported'));
  }

  report(event: TraceEvent): void {
    if (event.type === 'worker.exit') this.exited = true;
    if (event.type === 'conn.close') {
      this.unfolded.delete(event.actor);
      this.forget(event.actor);
      return;
    }
    let events = this.unfolded.get(event.actor);
    if (!events) this.unfolded.set(event.actor, (events = []));
    events.push(event);
    if (events.length >= 256) this.fold(event.actor);
  }

  private fold(actor: string): void {
    for (const event of this.unfolded.get(actor) ?? []) {
      const { t: _t, actor: _actor, ...rest } = event;
      this.emit(actor as TraceEvent['actor'], rest as never);
    }
    this.unfolded.delete(actor);
  }

  /**
   * The worker is gone: bring every actor up to date, then its driver takes the end the kernel
   * gave it — each open connection closed (RST where request bytes were unread), the listener copy
   * released, the exit.
   */
  writeKernelEnd(code: number, end: WorkerEnd): void {
    for (const actor of [...this.unfolded.keys()]) this.fold(actor);
    if (this.exited || end.kind === 'exited' || !this.has(this.followed) || this.isDone(this.followed)) return;
    this.writing = true;
    const driver = new WorkerDriver(this, this.followed, KERNEL);
    if (end.kind === 'killed') driver.signal('KILL');
    else driver.crashed(code, end.signal ?? undefined);
  }
}

/** A dead process's platform: the kernel has closed everything already, so there is nothing left to do. */
const KERNEL = {
  stopAccepting: () => {},
  releaseListener: () => {},
  read: () => null,
  handle: () => {},
  respond: () => 0,
  closeSocket: () => {},
  halfClose: () => {},
  notifyArbiter: () => {},
  exit: () => {},
};

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
  private announcedListening = false;
  private fatal: string | null = null;
  private resolveDone: ((code: number) => void) | null = null;

  constructor(
    private readonly config: ServeConfig,
    private readonly output: ArbiterOutput,
  ) {
    this.params = serverParamsOf(config, readSomaxconn());
    this.runtimes = runtimesFor(getPolicy(config.policy), this.params);
    this.trace = config.trace ? openTrace(config.trace, config.policy, this.params, { source: 'impl', bind: config.bind }) : null;
    this.host = new LiveHost(this.runtimes, this.trace ? (t, actor, event) => this.trace?.write(traceEvent(t, actor, event)) : NO_TRACE, this.originNs);
    // The kernel resets whatever was queued when the last copy closed; the server cannot see it.
    this.host.own('listener', () => {});
    this.driver = new ArbiterDriver(this.host, {
      spawnWorker: (worker, maxRequests) => this.spawnWorker(worker, maxRequests),
      signalWorker: (worker, signal) => this.signalWorker(worker, signal),
      // Closing a unix socket handle that bound the path also unlinks it: new connects get ENOENT.
      closeListener: () => this.handle?.close(),
      exit: (code) => this.exited(code),
      random: Math.random,
    });
  }

  /** Bind, spawn the workers, and run until the server stops; resolves with the exit code. */
  run(): Promise<number> {
    this.validateApp();
    this.handle = this.bind();
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
    this.driver.signal(signal);
  }

  /** The address clients connect to, once bound. */
  address(): string {
    const bind = this.config.bind;
    if (bind.family === 'unix') return `unix:${bind.path}`;
    const out: { address?: string; port?: number } = {};
    this.handle?.getsockname?.(out);
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
    const n = Number(id.slice('worker/'.length));
    const spec: WorkerSpec = {
      id,
      n,
      policy: this.config.policy,
      params: this.params,
      maxRequests,
      app: this.config.app,
      cwd: process.cwd(),
      counterLog: this.config.counterLog,
      limits: { ...DEFAULT_LIMITS, maxBodyBytes: this.config.maxBodyBytes },
      originNs: this.originNs.toString(),
      trace: this.trace !== null,
    };
    // QUIESCE_WORKER_NODE_ARGS: node flags for the workers (--cpu-prof, --max-old-space-size …).
    const nodeArgs = (process.env.QUIESCE_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...nodeArgs, this.workerScript], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', this.handle!.fd, this.handle!.fd],
      env: { ...process.env, [WORKER_SPEC_ENV]: JSON.stringify(spec) },
    });
    const record: WorkerRecord = { id, child, ready: false, bootError: null, crash: null, saidBye: false, sent: new Set() };
    if (this.trace) this.shadows.set(id, new WorkerShadow(id, this.runtimes, (event) => this.trace?.write(event), () => this.host.nowMs));
    this.workers.set(id, record);
    child.on('message', (message: unknown) => this.onMessage(record, message));
    // 'close' comes after the IPC channel drained: every event the worker sent is in.
    child.on('close', (code, signal) => this.reap(record, code, signal));
    child.on('error', (error) => this.output.log(`[arbiter] ${id}: ${error.message}`));
  }

  private signalWorker(worker: WorkerId, signal: WorkerSignal): void {
    const record = this.workers.get(worker);
    if (!record) return;
    record.sent.add(signal);
    if (signal === 'ABRT') this.output.log(`[arbiter] WORKER TIMEOUT ${worker} (pid ${record.child.pid})`);
    try {
      record.child.kill(`SIG${signal}`);
    } catch {
      // Already gone: its close event is on the way.
    }
  }

  private exited(code: number): void {
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
    this.resolveDone?.(code);
  }

  // ───────────────────────── workers ─────────────────────────

  private onMessage(record: WorkerRecord, message: unknown): void {
    if (!isWorkerMessage(message)) return;
    const m = message as WorkerMessage;
    switch (m.kind) {
      case 'ready':
        record.ready = true;
        // Announced once the first set of workers all serve: "listening" then means ready for the load.
        if (!this.announcedListening && [...this.workers.values()].filter((w) => w.ready).length >= this.params.workers) {
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
        if (this.handle && this.host.arbiter().context.holdsListener) record.child.send({ kind: 'listener-copy' }, this.handle as unknown as net.Socket);
        return;
    }
  }

  private reap(record: WorkerRecord, code: number | null, signal: NodeJS.Signals | null): void {
    // As Python's subprocess and Node report it: the exit code, or −(signal number).
    const exitCode = code ?? -(signal ? (osConstants.signals[signal] ?? 1) : 1);
    this.workers.delete(record.id);
    const end = this.endOf(record, signal);
    // gunicorn halts when a worker fails before it booted (exit 3): replacing it would only fail again, forever.
    const diedBooting = end.kind === 'crashed' && !record.ready && !(end.signal !== null && record.sent.has(end.signal as WorkerSignal));
    const bootFailed = record.bootError !== null || code === WORKER_BOOT_ERROR || diedBooting;
    if (bootFailed && this.fatal === null) {
      this.fatal = record.bootError ?? `${record.id} died before it booted (${signal ? `killed by ${signal}` : `exit code ${code}`}); its output above says why`;
    }
    // A boot error is said once, as the reason the server stops; the other workers' ends are its consequence.
    if (end.kind !== 'exited' && !bootFailed && this.fatal === null) this.logEnd(record, end, exitCode);
    const shadow = this.shadows.get(record.id);
    this.shadows.delete(record.id);
    shadow?.writeKernelEnd(exitCode, end);
    // A worker that cannot boot stops the server (gunicorn: HaltServer), with a user error's exit code —
    // before its reap, so that the stopping arbiter does not replace it.
    if (bootFailed) this.driver.halt(2);
    this.driver.reaped(record.id, exitCode);
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

function openTrace(path: string, policy: string, params: ServerParams, meta: Record<string, unknown>): TraceWriter {
  try {
    return new TraceWriter(path, policy, params, meta);
  } catch (error) {
    throw new ConfigError(`trace: cannot write "${path}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
