/**
 * The world the machines live in: processes that carry out the arbiter's,
 * workers' and connections' commands, the kernel's accept queue and close
 * rules, and the network between clients and server (one-way latency).
 *
 * Decisions stay in the machines. This file only answers *when* things
 * happen (a thread frees up, a byte arrives) and *what the kernel does*
 * (FIN or RST, EAGAIN or a dropped SYN); the policy is never consulted here
 * except through the machines and `responseMustClose` from the model.
 */
import { clientId, connId, connWorker, workerId, type ClientEvent, type ClientFailure, type ClientId, type MachineEvent, type ConnId, type WorkerId, type WorkerSignal, type AbortReason } from '../model/events.ts';
import { maxRequestsBounds, responseMustClose } from '../model/machines/index.ts';
import type { ConnContext } from '../model/machines/connection.ts';
import type { ServerParams } from '../model/params.ts';
import type { PolicySpec } from '../model/policies.ts';
import type { MachineAction } from '../model/step.ts';
import { Engine, SimulationInvariantError } from './engine.ts';

export interface NetworkParams {
  /** One-way latency between client and server. */
  latencyMs: number;
  /** Time from fork to a worker ready to accept (app import). */
  bootMs: number;
  /** Service time of a request, drawn per request. */
  serviceMs: () => number;
  /** TCP: when the client retransmits a dropped SYN, as offsets from the first attempt; the last is the give-up time. */
  synRetryScheduleMs: readonly number[];
  /** gthread ≤ 23 keeps accepting until its loop turn notices the drain: up to this long. */
  loopTickMs: number;
  /**
   * Client and server share one kernel. A reply the kernel makes by itself — the RST to bytes sent at
   * a closed socket — is back before the sender's write() returns (loopback delivery runs in the
   * sender's softirq), so the sender's next poll sees it. `latencyMs` is then the time for a process
   * to notice, not a wire delay.
   */
  loopback: boolean;
}

/** Linux classic SYN backoff: retransmits at 1, 3, 7, 15, 31, 63 s; gives up at 127 s (tcp_syn_retries = 6). */
export const CLASSIC_SYN_SCHEDULE_MS = [1000, 3000, 7000, 15000, 31000, 63000, 127000] as const;

/** What the client code is told about its connection. */
export interface LinkOwner {
  onConnected(link: Link): void;
  onResponse(link: Link, req: string, status: number, close: boolean): void;
  onFailure(link: Link, reason: ClientFailure, req: string | null): void;
  /** The server closed a connection on which no request was outstanding. */
  onIdleClosed(link: Link): void;
  /** A proxy answers its own client for a failed upstream exchange (nginx: 502, or 504 on a timeout). */
  downstreamStatus?(reason: ClientFailure): 502 | 504;
}

/** Why the server side of a connection closed: the mechanism a failure is attributed to. */
export type ServerCloseCause =
  | 'after-response'
  | 'keepalive-timeout'
  | 'idle-close'
  | 'linger'
  | 'worker-exit'
  | 'deadline'
  | 'killed'
  | 'crashed'
  | 'error'
  | 'peer-closed';

export class Link {
  conn: ConnId | null = null;
  /** The request awaiting a response, and whether it reached an open server connection. */
  req: string | null = null;
  reqDelivered = false;
  /** Sent before the server accepted the connection: waits in the socket buffer. */
  bufferedReq: string | null = null;
  responses = 0;
  clientDone = false;
  clientClosedSent = false;
  serverClosed = false;
  serverCloseCause: ServerCloseCause | null = null;
  serverCloseRst = false;
  /** The server's close() sent a FIN with nothing unread: a request that arrives later meets a closed socket. */
  serverClosedWithFin = false;
  synRetries = 0;
  /** The connection was reset while still in the accept queue. */
  queuedReset = false;
  requestTimer: { cancelled: boolean } | null = null;
  lastResponseWrittenAtMs = -1;
  readonly connectedAtMs: number;

  constructor(
    readonly client: ClientId,
    readonly owner: LinkOwner,
    nowMs: number,
  ) {
    this.connectedAtMs = nowMs;
  }
}

interface WorkerProc {
  readonly id: WorkerId;
  readonly n: number;
  readonly maxRequests: number;
  nextConn: number;
  readonly conns: ConnId[];
  /** Connections with unread request bytes, in arrival order. */
  readonly pending: ConnId[];
  busy: number;
  acceptUntilMs: number;
  /** gthread ≤ 23's last loop turn dispatches the listener's readiness once: one accept at most after the drain. */
  acceptsLeftAfterDrain: number;
  heartbeat: { cancelled: boolean } | null;
  ready: boolean;
}

export class World {
  private readonly workers = new Map<WorkerId, WorkerProc>();
  private readonly links = new Map<ClientId, Link>();
  private readonly linkOfConn = new Map<ConnId, Link>();
  private nextWorker = 1;
  private nextClient = 1;
  private nextReq = 1;
  private gracefulTimer: { cancelled: boolean } | null = null;
  readonly threads: number;

  constructor(
    readonly engine: Engine,
    readonly policy: PolicySpec,
    readonly params: ServerParams,
    readonly net: NetworkParams,
  ) {
    this.threads = policy.singleThreaded ? 1 : params.threads;
  }

  // ───────────────────────── boot and signals ─────────────────────────

  boot(): void {
    const e = this.engine;
    e.now(() => {
      e.emit('listener', { type: 'listener.open', family: this.params.family, backlog: this.params.backlog, somaxconn: this.params.somaxconn });
      e.emit('listener', { type: 'listener.hold', holder: 'arbiter' });
      e.emit('arbiter', { type: 'arbiter.start', workers: this.params.workers });
    });
  }

  signalArbiter(signal: 'TERM' | 'INT' | 'QUIT' | 'HUP' | 'TTIN' | 'TTOU'): void {
    this.engine.now(() => this.engine.emitIfAccepted('arbiter', { type: 'arbiter.signal', signal }));
  }

  nextRequestId(): string {
    return `r${this.nextReq++}`;
  }

  /** Commands from the machines. */
  handle(actor: string, action: MachineAction): void {
    switch (action.type) {
      case 'spawnWorkers': return this.spawnWorkers();
      case 'reloadWorkers': return this.reloadWorkers();
      case 'retireOldest': return this.retireExcess();
      case 'closeListener': return this.arbiterClosesListener();
      case 'signalWorkers': return this.signalWorkers((action.params as { signal: WorkerSignal }).signal);
      case 'abortWorker': return this.sendSignal((action.params as { worker: WorkerId }).worker, 'ABRT');
      case 'drainConnections': return this.drainConnections(actor as WorkerId);
      case 'closeListenerCopy': return this.closeListenerAfterLoopTurn(actor as WorkerId);
      case 'abortConnections': return this.abortConnections(actor as WorkerId, (action.params as { reason: AbortReason }).reason);
      case 'exitProcess': return this.exitWorker(actor as WorkerId);
      case 'closeSocket': return this.closeSocket(actor as ConnId);
      case 'halfClose': return this.halfClose(actor as ConnId);
      case 'resetQueued': return this.resetQueued();
      default:
        throw new SimulationInvariantError(`${actor} asked for an unknown command ${action.type}`);
    }
  }

  private arbiterWorkers(): WorkerId[] {
    return (this.engine.snapshot('arbiter').context as { workers: WorkerId[] }).workers;
  }

  private arbiterTarget(): number {
    return (this.engine.snapshot('arbiter').context as { target: number }).target;
  }

  private arbiterRunning(): boolean {
    return this.engine.snapshot('arbiter').matches('running');
  }

  private spawnWorkers(): void {
    if (!this.arbiterRunning()) return;
    while (this.arbiterWorkers().length < this.arbiterTarget()) this.spawnWorker();
  }

  private spawnWorker(): WorkerId {
    const e = this.engine;
    const n = this.nextWorker++;
    const id = workerId(n);
    const bounds = maxRequestsBounds(this.params);
    const proc: WorkerProc = {
      id, n, maxRequests: this.params.maxRequests > 0 ? e.rng.int(bounds.min, bounds.max) : Number.POSITIVE_INFINITY,
      nextConn: 1, conns: [], pending: [], busy: 0, acceptUntilMs: Number.POSITIVE_INFINITY, acceptsLeftAfterDrain: 1, heartbeat: null, ready: false,
    };
    this.workers.set(id, proc);
    e.emit('arbiter', { type: 'arbiter.spawn', worker: id });
    e.emit('listener', { type: 'listener.hold', holder: id });
    e.emit(id, { type: 'worker.boot' });
    e.at(this.net.bootMs, () => {
      if (!e.emitIfAccepted(id, { type: 'worker.ready' })) return;
      proc.ready = true;
      this.scheduleHeartbeat(proc);
      this.pump(proc);
    });
    return id;
  }

  private scheduleHeartbeat(proc: WorkerProc): void {
    const e = this.engine;
    proc.heartbeat = e.at(this.params.heartbeatIntervalMs, () => {
      proc.heartbeat = null;
      if (e.emitIfAccepted(proc.id, { type: 'worker.heartbeat' })) this.scheduleHeartbeat(proc);
      else if (e.snapshot(proc.id).matches({ alive: 'draining' })) this.scheduleHeartbeat(proc);
    });
  }

  private reloadWorkers(): void {
    const old = [...this.arbiterWorkers()];
    for (let i = 0; i < this.arbiterTarget(); i++) this.spawnWorker();
    for (const w of old) this.sendSignal(w, 'TERM');
  }

  private retireExcess(): void {
    const workers = this.arbiterWorkers();
    const excess = workers.length - this.arbiterTarget();
    for (const w of workers.slice(0, Math.max(0, excess))) this.sendSignal(w, 'TERM');
  }

  private sendSignal(worker: WorkerId, signal: WorkerSignal): void {
    this.engine.emit('arbiter', { type: 'arbiter.kill', worker, signal });
    this.engine.emitIfAccepted(worker, { type: 'worker.signal', signal });
  }

  private signalWorkers(signal: WorkerSignal): void {
    for (const w of [...this.arbiterWorkers()]) this.sendSignal(w, signal);
    if (signal === 'TERM' || signal === 'QUIT') {
      this.gracefulTimer = this.engine.at(this.params.gracefulTimeoutMs, () => {
        this.engine.emitIfAccepted('arbiter', { type: 'arbiter.graceful-timeout' });
      });
    }
    this.maybeArbiterExit();
  }

  private arbiterClosesListener(): void {
    this.engine.emit('arbiter', { type: 'arbiter.close-listener' });
    this.engine.emit('listener', { type: 'listener.release', holder: 'arbiter' });
  }

  private maybeArbiterExit(): void {
    const e = this.engine;
    if (e.accepts('arbiter', { type: 'arbiter.exit', code: 0 })) {
      if (this.gracefulTimer) this.gracefulTimer.cancelled = true;
      e.emit('arbiter', { type: 'arbiter.exit', code: 0 });
    }
  }

  // ───────────────────────── workers ─────────────────────────

  private drainConnections(worker: WorkerId): void {
    const proc = this.proc(worker);
    if (this.policy.acceptAfterDrain) proc.acceptUntilMs = this.engine.nowMs + this.engine.rng.uniform(0, this.net.loopTickMs);
    else proc.acceptUntilMs = this.engine.nowMs;
    for (const conn of [...proc.conns]) this.engine.emitIfAccepted(conn, { type: 'conn.drain' });
    this.afterWorkerChange(proc);
  }

  /** The worker's loop closes its copy when it notices the drain (at once, unless it finishes a loop turn first). */
  private closeListenerAfterLoopTurn(worker: WorkerId): void {
    const proc = this.proc(worker);
    const delayMs = Math.max(0, proc.acceptUntilMs - this.engine.nowMs);
    const close = () => {
      if (this.engine.accepts(worker, { type: 'worker.close-listener' })) this.workerClosesListener(worker);
    };
    if (delayMs === 0) close();
    else this.engine.at(delayMs, close);
  }

  private workerClosesListener(worker: WorkerId): void {
    this.engine.emit(worker, { type: 'worker.close-listener' });
    this.engine.emit('listener', { type: 'listener.release', holder: worker });
  }

  private abortConnections(worker: WorkerId, reason: AbortReason): void {
    const proc = this.proc(worker);
    for (const conn of [...proc.conns]) {
      const link = this.linkOfConn.get(conn);
      this.engine.emitIfAccepted(conn, { type: 'conn.abort', reason });
    }
  }

  private exitWorker(worker: WorkerId): void {
    const e = this.engine;
    const proc = this.proc(worker);
    // Exit can be asked twice (a KILL while a deferred exit waits for its closes): the process exits once.
    if (e.snapshot(worker).status === 'done') return;
    if (proc.conns.length > 0) {
      // The connections' closes are queued behind this command: exit after them.
      e.at(0, () => this.exitWorker(worker));
      return;
    }
    if ((e.snapshot(worker).context as { holdsListener: boolean }).holdsListener) this.workerClosesListener(worker);
    if (proc.heartbeat) proc.heartbeat.cancelled = true;
    const killed = e.snapshot(worker).matches('dying');
    e.emit(worker, { type: 'worker.exit', code: killed ? -9 : 0 });
    e.emit('arbiter', { type: 'arbiter.reap', worker, code: killed ? -9 : 0 });
    this.maybeArbiterExit();
  }

  private proc(worker: WorkerId): WorkerProc {
    const proc = this.workers.get(worker);
    if (!proc) throw new SimulationInvariantError(`no process for ${worker}`);
    return proc;
  }

  private workerState(proc: WorkerProc): 'serving' | 'draining' | 'other' {
    const s = this.engine.snapshot(proc.id);
    if (s.matches({ alive: 'serving' })) return 'serving';
    if (s.matches({ alive: 'draining' })) return 'draining';
    return 'other';
  }

  private canAccept(proc: WorkerProc): boolean {
    const state = this.workerState(proc);
    if (!proc.ready || state === 'other') return false;
    if (state === 'draining' && (this.engine.nowMs >= proc.acceptUntilMs || proc.acceptsLeftAfterDrain === 0)) return false;
    // The machine has the last word: a worker that released its listener copy cannot accept.
    if (!this.engine.accepts(proc.id, { type: 'worker.accept', conn: connId(proc.n, proc.nextConn) })) return false;
    // The sync worker accepts only when it can serve at once; threaded workers accept and park.
    return this.policy.singleThreaded ? proc.busy === 0 && proc.conns.length === 0 : proc.conns.length < this.params.workerConnections;
  }

  /** Give a worker's free threads work: first unread requests, then new connections from the queue. */
  private pump(proc: WorkerProc): void {
    const e = this.engine;
    while (proc.busy < this.threads && proc.pending.length > 0) {
      const conn = proc.pending.shift()!;
      const req = this.linkOfConn.get(conn)?.req;
      // An orphaned connection is never read again: the machine says so, not this loop.
      if (req && e.accepts(conn, { type: 'conn.read', req })) this.startRequest(proc, conn);
    }
    while (this.canAccept(proc)) {
      const queue = (e.snapshot('listener').context as { queue: ClientId[] }).queue;
      const head = queue[0];
      if (head === undefined || !e.snapshot('listener').matches('listening')) break;
      this.accept(proc, head);
    }
  }

  private pumpAll(): void {
    // Wake waiting workers in a seeded random order: the kernel wakes one accept() waiter, not always the same.
    const procs = [...this.workers.values()].filter((p) => p.ready);
    for (let i = procs.length - 1; i > 0; i--) {
      const j = this.engine.rng.int(0, i);
      [procs[i], procs[j]] = [procs[j]!, procs[i]!];
    }
    for (const proc of procs) this.pump(proc);
  }

  private accept(proc: WorkerProc, client: ClientId): void {
    const e = this.engine;
    const conn = connId(proc.n, proc.nextConn++);
    const link = this.links.get(client);
    if (!link) throw new SimulationInvariantError(`queued ${client} has no link`);
    e.emit('listener', { type: 'listener.accept', client, conn, worker: proc.id });
    e.emit(proc.id, { type: 'worker.accept', conn });
    if (this.workerState(proc) === 'draining') proc.acceptsLeftAfterDrain--;
    proc.conns.push(conn);
    link.conn = conn;
    this.linkOfConn.set(conn, link);
    e.emit(conn, { type: 'conn.open', worker: proc.id, client });
    if (this.workerState(proc) === 'draining') e.emit(conn, { type: 'conn.drain' });
    if (link.bufferedReq !== null) {
      const req = link.bufferedReq;
      link.bufferedReq = null;
      this.requestArrives(link, req);
    }
    if (link.clientClosedSent) e.emitIfAccepted(conn, { type: 'conn.peer-fin' });
  }

  private startRequest(proc: WorkerProc, conn: ConnId): void {
    const e = this.engine;
    const link = this.linkOfConn.get(conn);
    const req = link?.req;
    if (!link || req === null || req === undefined) throw new SimulationInvariantError(`${conn} is pending without a request`);
    e.emit(conn, { type: 'conn.read', req });
    proc.busy++;
    e.emit(proc.id, { type: 'worker.request-start', conn, req });
    const requests = (e.snapshot(proc.id).context as { requests: number }).requests;
    if (requests >= proc.maxRequests) e.emitIfAccepted(proc.id, { type: 'worker.max-requests' });
    e.emit(conn, { type: 'conn.handler-start', req });
    e.at(Math.max(0, this.net.serviceMs()), () => this.finishRequest(proc, conn, req));
  }

  private finishRequest(proc: WorkerProc, conn: ConnId, req: string): void {
    const e = this.engine;
    if (!e.emitIfAccepted(conn, { type: 'conn.handler-finish', req })) return; // aborted meanwhile
    const close = responseMustClose(this.policy, this.params, e.snapshot(conn).context as ConnContext);
    const link = this.linkOfConn.get(conn)!;
    e.emit(conn, { type: 'conn.respond', req, status: 200, close });
    proc.busy--;
    e.emitIfAccepted(proc.id, { type: 'worker.request-end', conn, req });
    link.lastResponseWrittenAtMs = e.nowMs;
    e.at(this.net.latencyMs, () => this.responseArrives(link, req, close));
    this.afterWorkerChange(proc);
  }

  /** A worker's busy count or connections changed: it may now exit, or take more work. */
  private afterWorkerChange(proc: WorkerProc): void {
    this.engine.at(0, () => this.pump(proc));
  }

  // ───────────────────────── server-side sockets ─────────────────────────

  private closeSocket(conn: ConnId): void {
    const e = this.engine;
    const ctx = e.snapshot(conn).context as ConnContext;
    const link = this.linkOfConn.get(conn);
    e.emit(conn, { type: 'conn.close', rst: ctx.unread });
    const proc = this.proc(connWorker(conn));
    const i = proc.conns.indexOf(conn);
    if (i >= 0) proc.conns.splice(i, 1);
    const p = proc.pending.indexOf(conn);
    if (p >= 0) proc.pending.splice(p, 1);
    e.emitIfAccepted(proc.id, { type: 'worker.conn-closed', conn });
    if (link) {
      this.noteServerClose(link, ctx);
      link.serverClosedWithFin = !link.serverClosed && !ctx.unread;
      link.serverClosed = true;
      link.serverCloseRst = ctx.unread;
      const rst = ctx.unread;
      e.at(this.net.latencyMs, () => (rst ? this.rstArrives(link) : this.finArrives(link)));
    }
    this.afterWorkerChange(proc);
  }

  /** Record why the server side closed: the mechanism a client failure on this connection is attributed to. */
  private noteServerClose(link: Link, ctx: ConnContext): void {
    if (link.serverCloseCause) return;
    if (ctx.abortReason) link.serverCloseCause = ctx.abortReason;
    else if (link.clientClosedSent) link.serverCloseCause = 'peer-closed';
    else if (link.lastResponseWrittenAtMs === this.engine.nowMs) link.serverCloseCause = 'after-response';
    else link.serverCloseCause = ctx.draining ? 'idle-close' : 'keepalive-timeout';
  }

  private halfClose(conn: ConnId): void {
    const e = this.engine;
    e.emit(conn, { type: 'conn.half-close' });
    const link = this.linkOfConn.get(conn);
    if (link) {
      this.noteServerClose(link, e.snapshot(conn).context as ConnContext);
      link.serverClosed = true;
      e.at(this.net.latencyMs, () => this.finArrives(link));
    }
  }

  // ───────────────────────── the listener ─────────────────────────

  private resetQueued(): void {
    const e = this.engine;
    for (;;) {
      const head = (e.snapshot('listener').context as { queue: ClientId[] }).queue[0];
      if (head === undefined) break;
      e.emit('listener', { type: 'listener.reset', client: head });
      const link = this.links.get(head);
      if (link) {
        link.queuedReset = true;
        e.at(this.net.latencyMs, () => this.rstArrives(link));
      }
    }
  }

  // ───────────────────────── the client side ─────────────────────────

  /** Open a client connection; the owner hears back through its callbacks. */
  connect(owner: LinkOwner): Link {
    const e = this.engine;
    const client = clientId(this.nextClient++);
    const link = new Link(client, owner, e.nowMs);
    this.links.set(client, link);
    e.now(() => e.emit(client, { type: 'client.connect' }));
    e.at(this.net.latencyMs, () => this.synArrives(link, 0));
    return link;
  }

  private synArrives(link: Link, attempt: number): void {
    const e = this.engine;
    const client = link.client;
    const listener = e.snapshot('listener');
    if (!listener.matches('listening')) {
      e.emit('listener', { type: 'listener.refuse', client });
      e.at(this.net.latencyMs, () => this.connectFails(link, 'refused'));
      return;
    }
    if (e.accepts('listener', { type: 'listener.syn', client })) {
      e.emit('listener', { type: 'listener.syn', client });
      e.at(this.net.latencyMs, () => {
        if (link.queuedReset || link.clientDone) return;
        e.emit(client, { type: 'client.connected' });
        link.owner.onConnected(link);
      });
      this.pumpAll();
      return;
    }
    e.emit('listener', { type: 'listener.overflow', client });
    if (this.params.family === 'unix') {
      // AF_UNIX: a non-blocking connect() on a full queue fails at once with EAGAIN.
      this.connectFails(link, 'eagain');
      return;
    }
    // TCP: the SYN is dropped; the client retransmits on its backoff schedule.
    const schedule = this.net.synRetryScheduleMs;
    const nextAt = schedule[attempt];
    const giveUpAt = schedule[schedule.length - 1]!;
    const sinceStart = e.nowMs - link.connectedAtMs;
    if (nextAt === undefined || attempt >= schedule.length - 1) {
      e.at(Math.max(0, giveUpAt - sinceStart), () => this.connectFails(link, 'connect-timeout'));
      return;
    }
    e.at(Math.max(0, nextAt - sinceStart), () => {
      if (link.clientDone) return;
      link.synRetries = attempt + 1;
      e.emit(client, { type: 'client.syn-retry', attempt: attempt + 1 });
      e.at(this.net.latencyMs, () => this.synArrives(link, attempt + 1));
    });
  }

  private connectFails(link: Link, reason: ClientFailure): void {
    if (link.clientDone) return;
    link.clientDone = true;
    this.engine.emit(link.client, this.failure(link, reason));
    link.owner.onFailure(link, reason, null);
  }

  /** Abandon a connection attempt that is still in progress (a proxy's connect timeout). */
  abandonConnect(link: Link, reason: ClientFailure): void {
    this.connectFails(link, reason);
  }

  send(link: Link, req: string, idempotent: boolean, timeoutMs: number): void {
    const e = this.engine;
    e.now(() => {
      e.emit(link.client, { type: 'client.send', req, idempotent });
      link.req = req;
      link.reqDelivered = false;
      if (Number.isFinite(timeoutMs)) link.requestTimer = e.at(timeoutMs, () => this.requestTimesOut(link, req));
      e.at(this.net.latencyMs, () => this.bytesArrive(link, req));
    });
  }

  private bytesArrive(link: Link, req: string): void {
    if (link.conn === null) {
      if (!link.queuedReset) link.bufferedReq = req;
      return;
    }
    this.requestArrives(link, req);
  }

  private requestArrives(link: Link, req: string): void {
    const e = this.engine;
    const conn = link.conn!;
    if (e.snapshot(conn).status === 'done') {
      // Bytes at a closed socket draw an RST; the client has already seen our FIN or RST.
      return;
    }
    e.emit(conn, { type: 'conn.bytes', req });
    if (link.serverClosed) return; // lingering: discarded
    link.reqDelivered = true;
    const proc = this.proc(connWorker(conn));
    if (e.snapshot(conn).matches('pending') && !proc.pending.includes(conn)) proc.pending.push(conn);
    this.pump(proc);
  }

  private responseArrives(link: Link, req: string, close: boolean): void {
    const e = this.engine;
    if (link.clientDone || link.req !== req) return;
    if (link.requestTimer) link.requestTimer.cancelled = true;
    link.req = null;
    link.responses++;
    e.emit(link.client, { type: 'client.response', req, status: 200, close });
    link.owner.onResponse(link, req, 200, close);
  }

  private finArrives(link: Link): void {
    const e = this.engine;
    if (link.clientDone) return;
    const req = link.req;
    link.clientDone = true;
    if (req !== null && this.net.loopback && link.serverClosedWithFin && !link.reqDelivered) {
      // The request left after our close: it meets a closed socket and draws an RST, which on loopback is
      // back before the client polls again. The client sees the EOF and the error together (Linux: EPIPE
      // in CLOSE_WAIT, poll gives POLLHUP|POLLERR), not the clean EOF of an idle close.
      if (link.requestTimer) link.requestTimer.cancelled = true;
      e.emit(link.client, this.failure(link, 'reset', req));
      this.clientSendsFin(link);
      link.owner.onFailure(link, 'reset', req);
      return;
    }
    if (req !== null) {
      if (link.requestTimer) link.requestTimer.cancelled = true;
      e.emit(link.client, this.failure(link, 'empty-reply', req));
      this.clientSendsFin(link);
      link.owner.onFailure(link, 'empty-reply', req);
      return;
    }
    e.emit(link.client, { type: 'client.eof' });
    if (e.snapshot(link.client).status !== 'done') e.emit(link.client, { type: 'client.close' });
    this.clientSendsFin(link);
    link.owner.onIdleClosed(link);
  }

  private rstArrives(link: Link): void {
    const e = this.engine;
    if (link.clientDone) return;
    link.clientDone = true;
    const req = link.req;
    if (link.requestTimer) link.requestTimer.cancelled = true;
    const state = e.snapshot(link.client);
    if (state.matches('connecting')) {
      e.emit(link.client, this.failure(link, 'reset'));
      link.owner.onFailure(link, 'reset', null);
      return;
    }
    if (req !== null) {
      e.emit(link.client, this.failure(link, 'reset', req));
      link.owner.onFailure(link, 'reset', req);
      return;
    }
    e.emit(link.client, this.failure(link, 'reset'));
    link.owner.onIdleClosed(link);
  }

  private requestTimesOut(link: Link, req: string): void {
    const e = this.engine;
    if (link.clientDone || link.req !== req) return;
    link.clientDone = true;
    e.emit(link.client, this.failure(link, 'timeout', req));
    this.clientSendsFin(link);
    link.owner.onFailure(link, 'timeout', req);
  }

  /** The client closes its connection voluntarily (done with it). */
  close(link: Link): void {
    const e = this.engine;
    e.now(() => {
      if (link.clientDone) return;
      link.clientDone = true;
      e.emit(link.client, { type: 'client.close' });
      this.clientSendsFin(link);
    });
  }

  /** The client's failure event, with what a proxy answered downstream. */
  private failure(link: Link, reason: ClientFailure, req?: string): MachineEvent<ClientEvent & { type: 'client.fail' }> {
    const status = link.owner.downstreamStatus?.(reason);
    return { type: 'client.fail', reason, ...(req !== undefined ? { req } : {}), ...(status !== undefined ? { status } : {}) };
  }

  private clientSendsFin(link: Link): void {
    if (link.clientClosedSent) return;
    link.clientClosedSent = true;
    const e = this.engine;
    e.at(this.net.latencyMs, () => {
      if (link.conn === null) return; // still queued: the FIN waits; accept() will see it
      e.emitIfAccepted(link.conn, { type: 'conn.peer-fin' });
    });
  }
}
