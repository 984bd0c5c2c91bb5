/**
 * A worker process: accepts from the listening socket it shares with the
 * arbiter and every other worker, reads HTTP/1.1 requests, runs the app, and
 * lets the model's machines make every lifecycle decision.
 *
 * The worker never decides on its own when to close a connection, whether a
 * response says keep-alive, when an idle connection times out or when it
 * exits: it tells the worker and connection machines what happened (a
 * request arrived, a signal, a response was written) and carries out the
 * commands they answer with (`closeSocket`, `halfClose`, `drainConnections`,
 * `exitProcess`, timers). So the policy in force here is, by construction,
 * the policy in the model — and the trace it writes is what the machines saw.
 */
import { closeSync } from 'node:fs';
import net from 'node:net';
import { connId, type ConnId, type TraceEvent, type WorkerId, type AbortReason } from '../model/events.ts';
import { machinesFor, responseMustClose } from '../model/machines/index.ts';
import type { ConnContext } from '../model/machines/connection.ts';
import { getPolicy, type PolicySpec } from '../model/policies.ts';
import type { MachineAction } from '../model/step.ts';
import { AppLoadError, loadApp, type App, type AppRequest } from './apps.ts';
import { ParseError, RequestParser, serializeResponse, type HttpRequest, type HttpResponse } from './http.ts';
import { LiveHost, ServerInvariantError } from './live-host.ts';
import { HELD_LISTENER_FD, LISTENER_FD, WORKER_BOOT_ERROR, WORKER_CRASH, type WorkerMessage, type WorkerSpec } from './protocol.ts';

interface Conn {
  readonly id: ConnId;
  readonly socket: net.Socket;
  parser: RequestParser;
  /** The id of the request whose bytes the machine has been told about (conn.bytes), not yet read. */
  announced: string | null;
  /** Requests started on this connection: names requests that carry no X-Request-Id. */
  requests: number;
  headerTimer: NodeJS.Timeout | null;
  /** After a half-close: whatever arrives is read and discarded. */
  discarding: boolean;
  /** 100 Continue was sent for the request being received. */
  continued: boolean;
  closed: boolean;
  /** Reading is paused: the client is not reading its responses, or it sent more than the budget ahead. */
  readPaused: boolean;
  /** The last response is still above the write high-water mark: the next request waits for 'drain'. */
  writeBlocked: boolean;
  /** This connection's read-side bytes as last counted into the worker's total. */
  accountedBytes: number;
}

/**
 * Memory bounded by design. Per connection: the parser holds at most the request being assembled
 * (head ≤ 16 KiB + body ≤ --max-body) plus, once that request is complete, PIPELINE_AHEAD_BYTES of
 * later pipelined bytes — then reading stops; and the next request is not started while the last
 * response sits above WRITE_HIGH_WATER_BYTES unsent. Per worker: when the connections' read-side
 * bytes together pass WORKER_READ_BUDGET_BYTES, every connection stops reading until they fall to
 * half of it (the header timeout frees connections that were stuck mid-request).
 */
export const PIPELINE_AHEAD_BYTES = 64 * 1024;
export const WRITE_HIGH_WATER_BYTES = 64 * 1024;
export const WORKER_READ_BUDGET_BYTES = 64 * 1024 * 1024;

/** How long a worker waits for its sockets to flush before it exits anyway. */
const EXIT_FLUSH_MS = 2000;

export class WorkerServer {
  readonly id: WorkerId;
  private readonly policy: PolicySpec;
  private readonly host: LiveHost;
  private readonly threads: number;
  private readonly conns = new Map<ConnId, Conn>();
  /** Connections whose request has arrived and waits for a free thread, in arrival order. */
  private readonly waiting: ConnId[] = [];
  private busy = 0;
  private nextConn = 1;
  private server: net.Server | null = null;
  private app: App | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private exiting = false;

  constructor(
    private readonly spec: WorkerSpec,
    private readonly send: (message: WorkerMessage, done?: () => void) => void,
    private readonly exit: (code: number) => void,
  ) {
    this.id = spec.id;
    this.policy = getPolicy(spec.policy);
    this.threads = this.policy.singleThreaded ? 1 : spec.params.threads;
    const sink = spec.trace ? (event: TraceEvent) => this.queueEvent(event) : () => {};
    this.host = new LiveHost(machinesFor(this.policy, spec.params), sink, BigInt(spec.originNs));
    this.host.attach((actor, action) => this.command(actor, action));
  }

  private queued: TraceEvent[] = [];

  /** Trace events go to the arbiter in one message per event-loop turn, not one each. */
  private queueEvent(event: TraceEvent): void {
    if (this.queued.length === 0) setImmediate(() => this.flushEvents());
    this.queued.push(event);
  }

  private flushEvents(): void {
    if (this.queued.length === 0) return;
    const events = this.queued;
    this.queued = [];
    this.send({ kind: 'events', events });
  }

  async boot(): Promise<void> {
    this.host.now(() => this.host.emit(this.id, { type: 'worker.boot' }));
    try {
      this.app = await loadApp(this.spec.app, this.spec.cwd);
    } catch (error) {
      const message = error instanceof AppLoadError ? error.message : `app ${this.spec.app} failed to load: ${(error as Error).message}`;
      this.flushEvents();
      this.send({ kind: 'boot-error', message }, () => this.exit(WORKER_BOOT_ERROR));
      return;
    }
    const server = this.makeServer();
    // The backlog must be positional: Node ignores `backlog` in the options object when listening on an fd.
    server.listen({ fd: LISTENER_FD }, this.spec.params.backlog, () => {
      this.host.now(() => {
        if (!this.host.emitIfAccepted(this.id, { type: 'worker.ready' })) return;
        this.send({ kind: 'ready' });
        this.scheduleHeartbeat();
      });
    });
  }

  private makeServer(): net.Server {
    // allowHalfOpen: a client's FIN must not close our side — lingering close and
    // "the client closed, answer what it sent" both need the socket half-open.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    server.on('connection', (socket) => {
      if (this.acceptsDeferred) this.deferred.push(socket);
      else this.host.now(() => this.accept(socket));
    });
    server.on('error', (error) => {
      this.send({ kind: 'boot-error', message: `worker ${this.id} cannot listen: ${error.message}` }, () => this.exit(WORKER_BOOT_ERROR));
    });
    this.server = server;
    return server;
  }

  // ───────────────────────── worker-connections ─────────────────────────

  /** At worker-connections the worker stops accepting (gthread stops polling its listener) and the kernel queue holds the rest. */
  private acceptPaused = false;
  private listenerRequested = false;

  private pauseAcceptingIfFull(): void {
    if (this.conns.size < this.spec.params.workerConnections || this.acceptPaused) return;
    this.acceptPaused = true;
    this.stopAccepting();
  }

  /** Below the limit again: accepting needs a fresh copy of the socket (closing was the only way to stop), from the arbiter. */
  private resumeAcceptingIfRoom(): void {
    if (!this.acceptPaused || this.listenerRequested || this.conns.size >= this.spec.params.workerConnections) return;
    if (!this.host.snapshot(this.id).matches({ alive: 'serving' })) return;
    this.listenerRequested = true;
    this.send({ kind: 'listener-request' });
  }

  /** The arbiter sent a copy of the listening socket. */
  listenerCopy(handle: unknown): void {
    this.host.now(() => {
      this.listenerRequested = false;
      const usable = this.acceptPaused && this.host.snapshot(this.id).matches({ alive: 'serving' }) && this.conns.size < this.spec.params.workerConnections;
      if (!usable) {
        (handle as { close?: () => void }).close?.();
        return;
      }
      this.acceptPaused = false;
      this.makeServer().listen(handle as net.ListenOptions, this.spec.params.backlog);
    });
  }

  /** A signal delivered to this process. */
  signal(signal: 'TERM' | 'INT' | 'QUIT' | 'ABRT'): void {
    this.host.now(() => this.host.emitIfAccepted(this.id, { type: 'worker.signal', signal }));
  }

  // ───────────────────────── heartbeat ─────────────────────────

  private scheduleHeartbeat(): void {
    this.heartbeat = setTimeout(() => {
      this.host.now(() => {
        // A draining gthread worker no longer notifies (its loop has exited): the model says which.
        if (this.host.emitIfAccepted(this.id, { type: 'worker.heartbeat' })) this.send({ kind: 'heartbeat' });
      });
      if (!this.exiting) this.scheduleHeartbeat();
    }, this.spec.params.heartbeatIntervalMs);
  }

  // ───────────────────────── connections ─────────────────────────

  /**
   * After an app blocked the worker (single-threaded policies), a signal that came meanwhile waits
   * in the same event-loop turn as the connections that queued meanwhile, and libuv may hand us
   * the connections first. gunicorn's sync worker would have taken the signal during the block
   * (Python runs handlers while it sleeps): so connections of that turn are looked at only once
   * the turn's signals have been handled.
   */
  private acceptsDeferred = false;
  private readonly deferred: net.Socket[] = [];
  /** Connections the kernel handed over after this worker stopped accepting: never served, reset at exit as the queue would be. */
  private readonly held: net.Socket[] = [];

  private deferAcceptsThisTurn(): void {
    if (this.acceptsDeferred) return;
    this.acceptsDeferred = true;
    // The block happened inside a poll phase: the first check phase comes before the next poll,
    // the second after it — by then that poll's signals have run.
    setImmediate(() =>
      setImmediate(() => {
        this.acceptsDeferred = false;
        for (const socket of this.deferred.splice(0)) this.host.now(() => this.accept(socket));
      }),
    );
  }

  private accept(socket: net.Socket): void {
    const conn = connId(this.spec.n, this.nextConn);
    if (!this.host.accepts(this.id, { type: 'worker.accept', conn })) {
      // libuv accepted it just before this worker stopped accepting. The model's worker never did:
      // for the client it is still queued — unread, and reset when the worker goes.
      socket.pause();
      this.held.push(socket);
      return;
    }
    this.nextConn++;
    this.track(socket);
    const state: Conn = {
      id: conn,
      socket,
      parser: new RequestParser(this.spec.limits),
      announced: null,
      requests: 0,
      headerTimer: null,
      discarding: false,
      continued: false,
      closed: false,
      readPaused: false,
      writeBlocked: false,
      accountedBytes: 0,
    };
    this.conns.set(conn, state);
    // impl/ cannot see the client's own id: each peer is named after the connection that accepted it.
    const client = `client/${this.spec.n * 1_000_000 + this.nextConn - 1}` as const;
    this.host.emit(this.id, { type: 'worker.accept', conn });
    this.host.emit(conn, { type: 'conn.open', worker: this.id, client });
    if (this.host.snapshot(this.id).matches({ alive: 'draining' })) this.host.emit(conn, { type: 'conn.drain' });
    this.armHeaderTimer(state);
    this.pauseAcceptingIfFull();
    socket.on('data', (chunk: Buffer) => this.isolated(state, 'reading', () => this.onData(state, chunk)));
    socket.on('end', () => this.isolated(state, 'reading EOF', () => this.onPeerFin(state)));
    socket.on('error', (error: NodeJS.ErrnoException) => this.isolated(state, 'a socket error', () => this.onSocketError(state, error)));
    socket.on('close', () => this.isolated(state, 'the socket closing', () => this.onSocketClosed(state)));
    socket.on('drain', () => this.isolated(state, 'writing', () => this.onDrain(state)));
  }

  /**
   * Run one connection's event. An unexpected error there is that connection's, not the worker's:
   * it is logged with the connection's id, the connection alone is answered (a 500 with
   * Connection: close while its request is still unread, otherwise closed through its machine's
   * abort), and the other connections carry on. A disagreement between the server and its own
   * machines (ServerInvariantError) is not a connection's fault: it still stops the worker, loudly.
   */
  private isolated(conn: Conn, what: string, run: () => void): void {
    this.host.now(() => {
      try {
        run();
      } catch (error) {
        if (error instanceof ServerInvariantError) throw error;
        this.connectionFailed(conn, what, error);
      }
    });
  }

  private connectionFailed(conn: Conn, what: string, error: unknown): void {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    process.stderr.write(`[${this.id}] ${conn.id}: internal error while ${what}: ${message}\n`);
    if (conn.closed) return;
    const req = conn.announced;
    if (req !== null && this.host.accepts(conn.id, { type: 'conn.read', req, keepAlive: false })) {
      conn.parser = new RequestParser(this.spec.limits); // its state is unknown now: nothing more is read from it
      this.dequeue(conn);
      this.serve(conn, null, { status: 500, headers: { 'Content-Type': 'text/plain' }, body: 'Internal Server Error\n' });
      return;
    }
    this.host.emitIfAccepted(conn.id, { type: 'conn.abort', reason: 'error' });
  }

  private dequeue(conn: Conn): void {
    const i = this.waiting.indexOf(conn.id);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  private onData(conn: Conn, chunk: Buffer): void {
    if (conn.closed || conn.discarding) return; // a lingering close reads and discards
    conn.parser.push(chunk);
    this.account(conn);
    if (conn.announced !== null && !conn.writeBlocked && !this.waiting.includes(conn.id) && this.host.snapshot(conn.id).matches('pending')) {
      // More of an announced request (its body): it may be complete now.
      this.waiting.push(conn.id);
      this.pump();
      return;
    }
    this.announce(conn);
  }

  /** Tell the machine a request has arrived (its head is complete, or it is already known to be bad). */
  private announce(conn: Conn): void {
    if (conn.announced !== null || conn.closed) return;
    // While a request is being handled the next one waits in our buffer; it is announced once the
    // response is written (HTTP/1.1 pipelining is answered in order).
    if (this.host.snapshot(conn.id).matches('handling')) return;
    if (!conn.parser.hasCompleteHead() && !conn.parser.isHopeless()) return;
    const req = conn.parser.peekRequestId() ?? `${conn.id.slice('conn/'.length)}.${conn.requests + 1}`;
    if (!this.host.emitIfAccepted(conn.id, { type: 'conn.bytes', req })) return;
    conn.announced = req;
    // The request has arrived either way (the machine must know: no keep-alive timeout now), but while
    // the client has not read the last response it waits to be served (backpressure): see onDrain.
    if (this.host.snapshot(conn.id).matches('pending') && !conn.writeBlocked) this.waiting.push(conn.id);
    this.pump();
  }

  // ───────────────────────── backpressure ─────────────────────────

  /** Read-side bytes held by all connections together. */
  private readBytes = 0;
  private overBudget = false;

  /** Count this connection's buffered bytes into the worker's total, and pause or resume reading. */
  private account(conn: Conn): void {
    const now = conn.closed ? 0 : conn.parser.bufferedBytes;
    this.readBytes += now - conn.accountedBytes;
    conn.accountedBytes = now;
    if (!this.overBudget && this.readBytes > WORKER_READ_BUDGET_BYTES) {
      this.overBudget = true;
      process.stderr.write(`[${this.id}] ${this.readBytes} bytes of requests buffered (budget ${WORKER_READ_BUDGET_BYTES}): reading paused on every connection\n`);
    } else if (this.overBudget && this.readBytes <= WORKER_READ_BUDGET_BYTES / 2) {
      this.overBudget = false;
      for (const other of this.conns.values()) this.updateReading(other);
    }
    this.updateReading(conn);
  }

  private updateReading(conn: Conn): void {
    if (conn.closed) return;
    const ahead = conn.parser.hasCompleteHead() || conn.announced !== null || this.host.snapshot(conn.id).matches('handling');
    const pause = this.overBudget || conn.writeBlocked || (ahead && conn.parser.bufferedBytes > PIPELINE_AHEAD_BYTES + this.spec.limits.maxHeadBytes + this.spec.limits.maxBodyBytes);
    if (pause && !conn.readPaused) {
      conn.readPaused = true;
      conn.socket.pause();
    } else if (!pause && conn.readPaused) {
      conn.readPaused = false;
      conn.socket.resume();
    }
  }

  /** The client read enough of its responses: the next pipelined request may start. */
  private onDrain(conn: Conn): void {
    if (conn.closed || !conn.writeBlocked) return;
    conn.writeBlocked = false;
    this.updateReading(conn);
    if (conn.announced !== null && this.host.snapshot(conn.id).matches('pending') && !this.waiting.includes(conn.id)) {
      this.waiting.push(conn.id);
      this.pump();
    } else if (this.host.snapshot(conn.id).matches('idle')) this.announce(conn);
  }

  private armHeaderTimer(conn: Conn): void {
    if (conn.headerTimer) clearTimeout(conn.headerTimer);
    conn.headerTimer = setTimeout(() => {
      conn.headerTimer = null;
      this.host.now(() => {
        const s = this.host.snapshot(conn.id);
        // Only a connection still waiting for its first request, or for the rest of one, is given up on;
        // kept-alive connections have the keep-alive timer.
        const waitingForFirst = s.matches({ idle: 'fresh' }) || (s.matches({ idle: 'drainKept' }) && conn.requests === 0);
        if (waitingForFirst || s.matches('pending')) this.host.emitIfAccepted(conn.id, { type: 'conn.header-timeout' });
      });
    }, this.spec.headerTimeoutMs);
  }

  private onPeerFin(conn: Conn): void {
    if (conn.closed) return;
    this.host.emitIfAccepted(conn.id, { type: 'conn.peer-fin' });
  }

  private onSocketError(conn: Conn, error: NodeJS.ErrnoException): void {
    if (conn.closed) return;
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE') this.host.emitIfAccepted(conn.id, { type: 'conn.peer-rst' });
    if (this.host.snapshot(conn.id).status === 'done') this.forgetConn(conn, 'peer-rst');
  }

  private onSocketClosed(conn: Conn): void {
    if (conn.closed) return;
    // The socket went away under us (the peer reset it): the machine hears it as an RST.
    this.host.emitIfAccepted(conn.id, { type: 'conn.peer-rst' });
    if (this.host.snapshot(conn.id).status === 'done') this.forgetConn(conn, 'peer-rst');
  }

  // ───────────────────────── requests ─────────────────────────

  /** Give free threads work: connections whose request has arrived, in arrival order. */
  private pump(): void {
    while (this.busy < this.threads && this.waiting.length > 0) {
      const id = this.waiting.shift()!;
      const conn = this.conns.get(id);
      if (!conn || conn.closed || conn.announced === null) continue;
      let request: HttpRequest | null;
      try {
        request = conn.parser.next();
      } catch (error) {
        if (!(error instanceof ParseError)) {
          this.connectionFailed(conn, 'parsing', error);
          continue;
        }
        if (!this.host.accepts(id, { type: 'conn.read', req: conn.announced, keepAlive: false })) continue; // orphaned: never read
        this.serve(conn, null, { status: error.status, headers: { 'Content-Type': 'text/plain' }, body: `${error.message}\n` });
        continue;
      }
      this.account(conn);
      if (request === null) {
        // The body is still arriving; its next bytes bring it back. A client that asked waits for our go-ahead.
        if (!conn.continued && conn.parser.expectsContinue() && !conn.socket.destroyed) {
          conn.continued = true;
          conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
        }
        continue;
      }
      if (!this.host.accepts(id, { type: 'conn.read', req: conn.announced, keepAlive: request.keepAlive })) continue;
      this.serve(conn, request, null);
    }
  }

  /** Read, handle and answer one request: `request` to run the app, or `refusal` to answer a bad request. */
  private serve(conn: Conn, request: HttpRequest | null, refusal: HttpResponse | null): void {
    const e = this.host;
    const req = conn.announced!;
    conn.announced = null;
    conn.continued = false;
    conn.requests++;
    if (conn.headerTimer) clearTimeout(conn.headerTimer);
    conn.headerTimer = null;
    e.emit(conn.id, { type: 'conn.read', req, keepAlive: request?.keepAlive ?? false });
    this.busy++;
    e.emit(this.id, { type: 'worker.request-start', conn: conn.id, req });
    const started = (e.snapshot(this.id).context as { requests: number }).requests;
    if (this.spec.maxRequests > 0 && started >= this.spec.maxRequests) e.emitIfAccepted(this.id, { type: 'worker.max-requests' });
    e.emit(conn.id, { type: 'conn.handler-start', req });
    const head = request?.method === 'HEAD';
    if (refusal) {
      this.finish(conn, req, refusal, head);
      return;
    }
    const remote = conn.socket.remotePort === undefined ? null : { address: conn.socket.remoteAddress ?? '', port: conn.socket.remotePort };
    void this.runApp(request!, req, remote).then((response) => this.isolated(conn, 'finishing a response', () => this.finish(conn, req, response, head)));
  }

  private async runApp(request: HttpRequest, requestId: string, remote: AppRequest['remote']): Promise<HttpResponse> {
    try {
      const result = this.app!({ ...request, requestId, remote }, { blocking: this.policy.singleThreaded, counterLog: this.spec.counterLog });
      if (this.policy.singleThreaded) this.deferAcceptsThisTurn();
      return checkedResponse(await result);
    } catch (error) {
      process.stderr.write(`[${this.id}] app error on ${requestId}: ${error instanceof Error ? error.message : String(error)}\n`);
      return { status: 500, headers: { 'Content-Type': 'text/plain' }, body: 'Internal Server Error\n' };
    }
  }

  private finish(conn: Conn, req: string, response: HttpResponse, head: boolean): void {
    const e = this.host;
    this.busy--;
    // Aborted meanwhile (graceful deadline, exit): the response has nowhere to go.
    if (!e.emitIfAccepted(conn.id, { type: 'conn.handler-finish', req })) {
      e.emitIfAccepted(this.id, { type: 'worker.request-end', conn: conn.id, req });
      this.pump();
      return;
    }
    const close = responseMustClose(this.policy, this.spec.params, e.snapshot(conn.id).context as ConnContext);
    let bytes: Buffer;
    try {
      bytes = serializeResponse(response, close, this.spec.params.keepAliveMs / 1000, head);
    } catch (error) {
      process.stderr.write(`[${this.id}] ${(error as Error).message}\n`);
      bytes = serializeResponse({ status: 500, body: 'Internal Server Error\n' }, close, this.spec.params.keepAliveMs / 1000, head);
      response = { status: 500 };
    }
    if (!conn.socket.destroyed && !conn.socket.write(bytes) && conn.socket.writableLength > WRITE_HIGH_WATER_BYTES) {
      conn.writeBlocked = true;
      this.updateReading(conn);
    }
    e.emit(conn.id, { type: 'conn.respond', req, status: response.status, close });
    e.emitIfAccepted(this.id, { type: 'worker.request-end', conn: conn.id, req });
    // Back to idle with the next request already buffered (pipelining): announce it.
    if (!conn.closed && e.snapshot(conn.id).matches('idle')) {
      this.armHeaderTimer(conn);
      this.announce(conn);
    }
    this.pump();
  }

  // ───────────────────────── commands from the machines ─────────────────────────

  private command(actor: string, action: MachineAction): void {
    switch (action.type) {
      case 'drainConnections':
        // A draining worker accepts no more unless its machine still allows it (gthread 21–23's last
        // loop turn): stop accepting now, whether or not the policy releases its copy of the socket yet.
        if (!this.host.accepts(this.id, { type: 'worker.accept', conn: connId(this.spec.n, this.nextConn) })) this.stopAccepting();
        for (const id of [...this.conns.keys()]) this.host.emitIfAccepted(id, { type: 'conn.drain' });
        return;
      case 'closeListenerCopy':
        return this.closeListener();
      case 'abortConnections': {
        const reason = (action.params as { reason: AbortReason }).reason;
        for (const id of [...this.conns.keys()]) this.host.emitIfAccepted(id, { type: 'conn.abort', reason });
        return;
      }
      case 'exitProcess':
        return this.exitProcess();
      case 'closeSocket':
        return this.closeSocket(actor as ConnId);
      case 'halfClose':
        return this.halfClose(actor as ConnId);
      default:
        throw new ServerInvariantError(`${actor} asked the worker for an unknown command ${action.type}`);
    }
  }

  private stopAccepting(): void {
    if (this.server?.listening) this.server.close();
  }

  private closeListener(): void {
    if (!this.host.accepts(this.id, { type: 'worker.close-listener' })) return;
    this.stopAccepting();
    try {
      closeSync(HELD_LISTENER_FD);
    } catch {
      // already closed
    }
    this.host.emit(this.id, { type: 'worker.close-listener' });
    this.send({ kind: 'released-listener' });
  }

  /** close(2): FIN, or RST when request bytes sit unread (RFC 1122 §4.2.2.13) — the machine says which. */
  private closeSocket(id: ConnId): void {
    const conn = this.conns.get(id);
    if (!conn) throw new ServerInvariantError(`closeSocket for unknown ${id}`);
    const rst = (this.host.snapshot(id).context as ConnContext).unread;
    if (!conn.socket.destroyed) {
      if (rst) reset(conn.socket);
      else conn.socket.end(() => conn.socket.destroy());
    }
    this.host.emit(id, { type: 'conn.close', rst });
    this.forgetConn(conn, 'closed');
  }

  /** RFC 9112 §9.6: send FIN, keep reading and discarding until the peer closes or the linger bound. */
  private halfClose(id: ConnId): void {
    const conn = this.conns.get(id);
    if (!conn) throw new ServerInvariantError(`halfClose for unknown ${id}`);
    conn.discarding = true;
    if (!conn.socket.destroyed) conn.socket.end();
    this.host.emit(id, { type: 'conn.half-close' });
    // Already closed by the peer: the discarding state waits for a FIN that came before it.
    if (conn.socket.readableEnded) this.host.emitIfAccepted(id, { type: 'conn.peer-fin' });
  }

  private forgetConn(conn: Conn, why: 'closed' | 'peer-rst'): void {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.headerTimer) clearTimeout(conn.headerTimer);
    if (!conn.socket.destroyed && why === 'peer-rst') conn.socket.destroy();
    this.account(conn);
    this.conns.delete(conn.id);
    const i = this.waiting.indexOf(conn.id);
    if (i >= 0) this.waiting.splice(i, 1);
    this.host.emitIfAccepted(this.id, { type: 'worker.conn-closed', conn: conn.id });
    this.host.forget(conn.id);
    this.resumeAcceptingIfRoom();
  }

  private crashed = false;

  /** Dying of an uncaught error: one line on stderr, the trace so far to the arbiter, exit WORKER_CRASH. */
  crash(error: unknown): void {
    if (this.crashed) return;
    this.crashed = true;
    const message = error instanceof Error ? `${error.name}: ${error.message}${error.stack?.split('\n')[1]?.trim() ? ` (${error.stack.split('\n')[1]!.trim()})` : ''}` : String(error);
    process.stderr.write(`[${this.id}] crashed: ${message}\n`);
    const leave = () => this.exit(WORKER_CRASH);
    const timer = setTimeout(leave, 500);
    try {
      this.flushEvents();
      this.send({ kind: 'crash', message }, () => {
        clearTimeout(timer);
        leave();
      });
    } catch {
      leave();
    }
  }

  private exitProcess(): void {
    if (this.exiting) return;
    if (this.conns.size > 0) {
      // The connections' closes are queued behind this command: exit after them.
      setImmediate(() => this.host.now(() => this.exitProcess()));
      return;
    }
    this.exiting = true;
    if (this.heartbeat) clearTimeout(this.heartbeat);
    if ((this.host.snapshot(this.id).context as { holdsListener: boolean }).holdsListener) this.closeListener();
    const killed = this.host.snapshot(this.id).matches('dying');
    const code = killed ? 1 : 0;
    for (const socket of this.held.splice(0)) reset(socket);
    this.host.emit(this.id, { type: 'worker.exit', code });
    // Let written responses reach the kernel before the process goes: exit once every socket closed.
    const sockets = [...this.openSockets];
    const leave = () => {
      this.flushEvents();
      this.send({ kind: 'bye' }, () => this.exit(code));
    };
    if (sockets.length === 0) return leave();
    let left = sockets.length;
    const timer = setTimeout(leave, EXIT_FLUSH_MS);
    for (const socket of sockets) {
      socket.once('close', () => {
        if (--left === 0) {
          clearTimeout(timer);
          leave();
        }
      });
    }
  }

  private readonly openSockets = new Set<net.Socket>();

  /** Track every socket until it is fully closed, so exit can wait for written bytes to flush. */
  track(socket: net.Socket): void {
    this.openSockets.add(socket);
    socket.once('close', () => this.openSockets.delete(socket));
  }
}

/** Close with RST (SO_LINGER 0). A unix socket has no RST: it is closed, and the peer reads EOF. */
function reset(socket: net.Socket): void {
  if (typeof socket.resetAndDestroy === 'function' && socket.remoteFamily !== undefined) socket.resetAndDestroy();
  else socket.destroy();
}

/** What an app returned, checked: a bad status or body is the app's bug, answered with a 500, never a malformed response. */
function checkedResponse(response: unknown): HttpResponse {
  if (typeof response !== 'object' || response === null) throw new Error(`the app returned ${JSON.stringify(response)}, not { status, headers?, body? }`);
  const { status, body, headers } = response as { status?: unknown; body?: unknown; headers?: unknown };
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) throw new Error(`the app returned status ${JSON.stringify(status)}; expected an integer from 200 to 599`);
  if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) throw new Error('the app returned a body that is neither a string nor a Buffer');
  if (headers !== undefined && (typeof headers !== 'object' || headers === null || Object.values(headers).some((v) => typeof v !== 'string'))) throw new Error('the app returned headers that are not an object of strings');
  return response as HttpResponse;
}
