/**
 * The arbiter (gunicorn's master): binds the listening socket once, spawns
 * workers that all accept from it, turns signals into worker lifecycle
 * changes, watches heartbeats, and writes the one merged trace.
 *
 * The socket is bound here but listen(2) is called by the workers: the
 * arbiter keeps its copy of the fd without ever accepting on it (Node has no
 * way to listen without accepting), so the kernel's accept queue is the only
 * queue, shared by every worker as behind gunicorn. Because the arbiter holds
 * its copy, connections queued while no worker accepts (a recycle, a reload)
 * wait instead of being reset.
 *
 * As in the worker, the decisions are the model's: the arbiter machine says
 * when to spawn, whom to signal, when the graceful timeout escalates, and
 * when the arbiter may exit; this file carries them out with real processes
 * and signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { workerId, type ConnId, type TraceEvent, type WorkerId, type WorkerSignal, type AbortReason } from '../model/events.ts';
import { ActorHost, type Timer } from '../model/host.ts';
import { machinesFor, maxRequestsBounds, type PolicyMachines } from '../model/machines/index.ts';
import type { ConnContext } from '../model/machines/connection.ts';
import { getPolicy } from '../model/policies.ts';
import type { MachineAction } from '../model/step.ts';
import type { ServerParams } from '../model/params.ts';
import { isBuiltinApp } from './apps.ts';
import { ConfigError, readSomaxconn, serverParamsOf, type ServeConfig } from './config.ts';
import { DEFAULT_LIMITS } from './http.ts';
import { LiveHost, monotonicNs, ServerInvariantError } from './live-host.ts';
import { isWorkerMessage, WORKER_BOOT_ERROR, WORKER_SPEC_ENV, type WorkerMessage, type WorkerSpec } from './protocol.ts';
import { TraceWriter } from './trace-writer.ts';
import { workerBundle } from './worker-bundle.ts';

/** gunicorn's arbiter loop sleeps at most 1 s between heartbeat checks. */
const ARBITER_TICK_MS = 1000;

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
  lastHeartbeatNs: bigint;
  ready: boolean;
  aborted: boolean;
  bootError: string | null;
  /** What the worker said as it crashed (an uncaught error), if it had the chance. */
  crash: string | null;
  /** It exited through its machine (its last message, 'bye', arrived). */
  saidBye: boolean;
  /** Signals this arbiter sent it. */
  readonly sent: Set<WorkerSignal>;
}

/** How a worker's process ended, as the arbiter saw it reaped. */
type WorkerEnd = { kind: 'exited' } | { kind: 'killed'; signal: WorkerSignal } | { kind: 'crashed'; signal: string | null };

export interface ArbiterOutput {
  log: (line: string) => void;
}

/**
 * Follows a worker's actors from the events it reports, so that when the
 * worker dies without a word (SIGKILL, a crash) the arbiter can write what the
 * kernel did for it — each open connection closed, FIN or RST by what was
 * unread. Events are kept per actor and folded into machine snapshots in
 * batches (stepping each once, off the hot path); a closed connection is
 * forgotten, so memory stays bounded by what is open. It never schedules
 * timers: it only follows.
 */
class WorkerShadow extends ActorHost {
  private readonly unfolded = new Map<string, TraceEvent[]>();
  private writing = false;
  exited = false;

  constructor(
    private readonly worker: WorkerId,
    machines: PolicyMachines,
    private readonly write: (event: TraceEvent) => void,
    private readonly clock: () => number,
  ) {
    super(machines, (event) => {
      if (this.writing) this.write(event);
    });
    // While following, commands were the worker's own to carry out; after it died, the kernel's.
    this.attach((actor, action) => {
      if (this.writing) this.kernelDoes(actor, action);
    });
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
   * The worker is gone: bring every actor up to date, then let its machine take the signal that
   * ended it. Its commands are the kernel's part, carried out here: each connection closed (RST
   * where the machine says request bytes were unread), the listener copy released, the exit.
   */
  writeKernelCleanup(code: number, end: WorkerEnd): void {
    const worker = this.worker;
    for (const actor of [...this.unfolded.keys()]) this.fold(actor);
    if (this.exited || end.kind === 'exited' || !this.has(worker) || this.snapshot(worker).status === 'done') return;
    this.writing = true;
    this.now(() =>
      this.emitIfAccepted(
        worker,
        end.kind === 'crashed' ? { type: 'worker.crash', code, ...(end.signal ? { signal: end.signal } : {}) } : { type: 'worker.signal', signal: end.signal },
      ),
    );
    // A close the worker's machine had already decided on but the process never carried out.
    for (const conn of [...(this.snapshot(worker).context as { openConns: ConnId[] }).openConns]) this.now(() => this.closeSocket(conn));
    if ((this.snapshot(worker).context as { holdsListener: boolean }).holdsListener) this.emitIfAccepted(worker, { type: 'worker.close-listener' });
    this.emitIfAccepted(worker, { type: 'worker.exit', code });
  }

  private kernelDoes(actor: string, action: MachineAction): void {
    if (action.type === 'abortConnections') {
      const reason = (action.params as { reason: AbortReason }).reason;
      for (const conn of [...(this.snapshot(this.worker).context as { openConns: ConnId[] }).openConns]) {
        if (this.has(conn)) this.emitIfAccepted(conn, { type: 'conn.abort', reason });
      }
    } else if (action.type === 'closeSocket') {
      this.closeSocket(actor as ConnId);
    }
    // exitProcess: the exit follows once every connection is closed (writeKernelCleanup).
  }

  private closeSocket(conn: ConnId): void {
    if (this.has(conn) && this.snapshot(conn).status !== 'done') {
      this.emitIfAccepted(conn, { type: 'conn.close', rst: (this.snapshot(conn).context as ConnContext).unread });
    }
    this.emitIfAccepted(this.worker, { type: 'worker.conn-closed', conn });
  }
}

export class Arbiter {
  private readonly params: ServerParams;
  private readonly host: LiveHost;
  private readonly machines: PolicyMachines;
  /** Each worker's actors as it reported them, to write its end if it dies silently. */
  private readonly shadows = new Map<WorkerId, WorkerShadow>();
  private readonly trace: TraceWriter | null;
  private readonly workers = new Map<WorkerId, WorkerRecord>();
  private readonly originNs = monotonicNs();
  private handle: ServerHandle | null = null;
  private workerScript = '';
  private nextWorker = 1;
  private gracefulTimer: Timer | null = null;
  private tick: NodeJS.Timeout | null = null;
  private announcedListening = false;
  private fatal: string | null = null;
  private resolveDone: ((code: number) => void) | null = null;

  constructor(
    private readonly config: ServeConfig,
    private readonly output: ArbiterOutput,
  ) {
    const policy = getPolicy(config.policy);
    this.params = serverParamsOf(config, readSomaxconn());
    const machines = machinesFor(policy, this.params);
    this.trace = config.trace ? openTrace(config.trace, config.policy, this.params, { source: 'impl', bind: config.bind }) : null;
    const write = (event: TraceEvent) => this.trace?.write(event);
    this.host = new LiveHost(machines, write, this.originNs);
    this.host.attach((actor, action) => this.command(actor, action));
    this.machines = machines;
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
      process.on(signal, () => this.signal(signal.slice(3) as 'TERM' | 'INT' | 'QUIT' | 'HUP' | 'TTIN' | 'TTOU'));
    }
    this.host.now(() => {
      this.host.emit('listener', { type: 'listener.open', family: this.params.family, backlog: this.params.backlog, somaxconn: this.params.somaxconn });
      this.host.emit('listener', { type: 'listener.hold', holder: 'arbiter' });
      this.host.emit('arbiter', { type: 'arbiter.start', workers: this.params.workers });
    });
    this.tick = setInterval(() => this.host.now(() => this.murderWorkers()), Math.min(ARBITER_TICK_MS, Math.max(50, this.params.timeoutMs / 4 || ARBITER_TICK_MS)));
    return done;
  }

  signal(signal: 'TERM' | 'INT' | 'QUIT' | 'HUP' | 'TTIN' | 'TTOU'): void {
    this.output.log(`[arbiter] received SIG${signal}`);
    this.host.now(() => this.host.emitIfAccepted('arbiter', { type: 'arbiter.signal', signal }));
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

  // ───────────────────────── commands from the arbiter machine ─────────────────────────

  private command(actor: string, action: MachineAction): void {
    switch (action.type) {
      case 'spawnWorkers':
        return this.spawnWorkers();
      case 'reloadWorkers':
        return this.reloadWorkers();
      case 'retireOldest':
        return this.retireExcess();
      case 'closeListener':
        return this.closeListener();
      case 'signalWorkers':
        return this.signalWorkers((action.params as { signal: WorkerSignal }).signal);
      case 'abortWorker':
        return this.sendSignal((action.params as { worker: WorkerId }).worker, 'ABRT');
      case 'resetQueued':
        // The kernel resets whatever was queued when the last copy closed; the server cannot see it.
        return;
      default:
        throw new ServerInvariantError(`${actor} asked the arbiter for an unknown command ${action.type}`);
    }
  }

  private arbiterContext(): { workers: WorkerId[]; target: number; holdsListener: boolean } {
    return this.host.snapshot('arbiter').context as { workers: WorkerId[]; target: number; holdsListener: boolean };
  }

  private spawnWorkers(): void {
    if (!this.host.snapshot('arbiter').matches('running') || this.fatal) return;
    while (this.arbiterContext().workers.length < this.arbiterContext().target) this.spawnWorker();
  }

  private spawnWorker(): void {
    const n = this.nextWorker++;
    const id = workerId(n);
    const bounds = maxRequestsBounds(this.params);
    const spec: WorkerSpec = {
      id,
      n,
      policy: this.config.policy,
      params: this.params,
      maxRequests: this.params.maxRequests > 0 ? bounds.min + Math.floor(Math.random() * (bounds.max - bounds.min + 1)) : 0,
      app: this.config.app,
      cwd: process.cwd(),
      counterLog: this.config.counterLog,
      headerTimeoutMs: this.config.headerTimeoutS * 1000,
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
    const record: WorkerRecord = { id, child, lastHeartbeatNs: monotonicNs(), ready: false, aborted: false, bootError: null, crash: null, saidBye: false, sent: new Set() };
    if (this.trace) this.shadows.set(id, new WorkerShadow(id, this.machines, (event) => this.trace?.write(event), () => this.host.nowMs));
    this.workers.set(id, record);
    this.host.emit('arbiter', { type: 'arbiter.spawn', worker: id });
    this.host.emit('listener', { type: 'listener.hold', holder: id });
    child.on('message', (message: unknown) => this.host.now(() => this.onMessage(record, message)));
    // 'close' comes after the IPC channel drained: every event the worker sent is in.
    child.on('close', (code, signal) => this.host.now(() => this.reap(record, code, signal)));
    child.on('error', (error) => this.output.log(`[arbiter] ${id}: ${error.message}`));
  }

  private reloadWorkers(): void {
    const old = [...this.arbiterContext().workers];
    for (let i = 0; i < this.arbiterContext().target; i++) this.spawnWorker();
    for (const w of old) this.sendSignal(w, 'TERM');
  }

  private retireExcess(): void {
    const workers = this.arbiterContext().workers;
    const excess = workers.length - this.arbiterContext().target;
    for (const w of workers.slice(0, Math.max(0, excess))) this.sendSignal(w, 'TERM');
  }

  private closeListener(): void {
    if (!this.host.accepts('arbiter', { type: 'arbiter.close-listener' })) return;
    // Closing a unix socket handle that bound the path also unlinks it: new connects get ENOENT.
    this.handle?.close();
    this.host.emit('arbiter', { type: 'arbiter.close-listener' });
    this.host.emitIfAccepted('listener', { type: 'listener.release', holder: 'arbiter' });
    this.maybeExit();
  }

  private signalWorkers(signal: WorkerSignal): void {
    for (const w of [...this.arbiterContext().workers]) this.sendSignal(w, signal);
    if (signal === 'TERM' || signal === 'QUIT') {
      if (this.gracefulTimer) this.gracefulTimer.cancelled = true;
      this.gracefulTimer = this.host.at(this.params.gracefulTimeoutMs, () => {
        this.host.emitIfAccepted('arbiter', { type: 'arbiter.graceful-timeout' });
      });
    }
    this.maybeExit();
  }

  private sendSignal(worker: WorkerId, signal: WorkerSignal): void {
    const record = this.workers.get(worker);
    if (!this.host.accepts('arbiter', { type: 'arbiter.kill', worker, signal })) return;
    this.host.emit('arbiter', { type: 'arbiter.kill', worker, signal });
    record?.sent.add(signal);
    try {
      record?.child.kill(`SIG${signal}`);
    } catch {
      // Already gone: its close event is on the way.
    }
  }

  // ───────────────────────── workers ─────────────────────────

  private onMessage(record: WorkerRecord, message: unknown): void {
    if (!isWorkerMessage(message)) return;
    const m = message as WorkerMessage;
    switch (m.kind) {
      case 'ready':
        record.ready = true;
        record.lastHeartbeatNs = monotonicNs();
        // Announced once the first set of workers all serve: "listening" then means ready for the load.
        if (!this.announcedListening && [...this.workers.values()].filter((w) => w.ready).length >= this.params.workers) {
          this.announcedListening = true;
          this.output.log(`[arbiter] listening at ${this.address()} (${this.params.workers} worker${this.params.workers === 1 ? '' : 's'}, policy ${this.config.policy}, pid ${process.pid})`);
        }
        return;
      case 'heartbeat':
        record.lastHeartbeatNs = monotonicNs();
        return;
      case 'events':
        for (const event of m.events) this.trace?.write(event);
        const shadow = this.shadows.get(record.id);
        if (shadow) for (const event of m.events) shadow.report(event);
        return;
      case 'released-listener':
        this.host.emitIfAccepted('listener', { type: 'listener.release', holder: record.id });
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
        if (this.handle && this.arbiterContext().holdsListener) record.child.send({ kind: 'listener-copy' }, this.handle as unknown as net.Socket);
        return;
    }
  }

  /** gunicorn murder_workers: a worker silent for longer than the timeout gets ABRT, then KILL a tick later. */
  private murderWorkers(): void {
    if (this.params.timeoutMs <= 0) return;
    const now = monotonicNs();
    // A worker that hangs while booting is as silent as one that hangs later (gunicorn's heartbeat file starts at spawn).
    for (const record of this.workers.values()) {
      if (Number(now - record.lastHeartbeatNs) / 1e6 <= this.params.timeoutMs) continue;
      if (!record.aborted) {
        record.aborted = true;
        this.output.log(`[arbiter] WORKER TIMEOUT ${record.id} (pid ${record.child.pid})`);
        this.host.emitIfAccepted('arbiter', { type: 'arbiter.heartbeat-timeout', worker: record.id });
      } else {
        this.sendSignal(record.id, 'KILL');
      }
    }
  }

  private reap(record: WorkerRecord, code: number | null, signal: NodeJS.Signals | null): void {
    const exitCode = code ?? -(signal ? (osConstants.signals[signal] ?? 1) : 1);
    this.workers.delete(record.id);
    if (record.bootError !== null || code === WORKER_BOOT_ERROR) {
      this.fatal = record.bootError ?? `${record.id} failed to boot (exit ${code})`;
    }
    const end = this.endOf(record, code, signal);
    // A boot error is said once, as the reason the server stops.
    if (end.kind !== 'exited' && this.fatal === null) this.logEnd(record, end, exitCode);
    this.writeWhatTheKernelDid(record.id, exitCode, end);
    this.host.emitIfAccepted('listener', { type: 'listener.release', holder: record.id });
    this.host.emit('arbiter', { type: 'arbiter.reap', worker: record.id, code: exitCode });
    if (this.fatal && this.host.snapshot('arbiter').matches('running')) {
      this.host.emitIfAccepted('arbiter', { type: 'arbiter.signal', signal: 'TERM' });
    }
    this.maybeExit();
  }

  /**
   * A worker that died without finishing its own trace (SIGKILL, a crash): its
   * machine is still mid-flight in the mirror. Write what the kernel did —
   * the signal, each open connection closed (RST if request bytes were
   * unread), the listener copy released, the exit.
   */
  private writeWhatTheKernelDid(worker: WorkerId, code: number, end: WorkerEnd): void {
    const shadow = this.shadows.get(worker);
    this.shadows.delete(worker);
    shadow?.writeKernelCleanup(code, end);
  }

  /**
   * A worker that said goodbye exited through its machine. One that did not was killed — SIGKILL,
   * whoever sent it — or crashed: an uncaught error (it says so, and exits WORKER_CRASH) or any other
   * fatal signal (SEGV, BUS …), which no stop of ours sends.
   */
  private endOf(record: WorkerRecord, code: number | null, signal: NodeJS.Signals | null): WorkerEnd {
    if (record.saidBye && record.crash === null) return { kind: 'exited' };
    if (signal === 'SIGKILL') return { kind: 'killed', signal: 'KILL' };
    // A signal this arbiter sent, that ended the process before its handler was in place (a TERM to a
    // worker still loading): the stop it asked for, carried out by the kernel — not a crash.
    const name = signal?.slice(3) as WorkerSignal | undefined;
    if (name && record.sent.has(name)) return { kind: 'killed', signal: name };
    return { kind: 'crashed', signal: signal ? signal.slice(3) : null };
  }

  /** One line for an end nobody asked for, or that the arbiter asked for (its KILL after a timeout). */
  private logEnd(record: WorkerRecord, end: Exclude<WorkerEnd, { kind: 'exited' }>, code: number): void {
    const who = `${record.id} (pid ${record.child.pid})`;
    if (end.kind === 'killed') {
      this.output.log(`[arbiter] ${who} killed by SIG${end.signal}${record.sent.has(end.signal) ? '' : ' (not sent by the arbiter)'}`);
      return;
    }
    const how = end.signal ? `killed by SIG${end.signal}` : `exit code ${code}`;
    this.output.log(`[arbiter] ${who} crashed: ${how}${record.crash ? `: ${record.crash}` : ''}; replacing it`);
  }

  private maybeExit(): void {
    if (!this.host.accepts('arbiter', { type: 'arbiter.exit', code: 0 })) return;
    const code = this.fatal ? 2 : 0;
    this.host.emit('arbiter', { type: 'arbiter.exit', code: 0 });
    this.host.stop();
    if (this.tick) clearInterval(this.tick);
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
}

function openTrace(path: string, policy: string, params: ServerParams, meta: Record<string, unknown>): TraceWriter {
  try {
    return new TraceWriter(path, policy, params, meta);
  } catch (error) {
    throw new ConfigError(`trace: cannot write "${path}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
