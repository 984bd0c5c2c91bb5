/**
 * A worker process: the platform under the model's worker driver. It keeps
 * the sockets, the HTTP parser and the app; the driver (model/driver) owns
 * every lifecycle event sequence and the machines decide: whether to accept,
 * when a request is read, what the `Connection` header says, when to close
 * (FIN or RST), drain, time out or exit. This file reports what happened on
 * the wire and carries out what the driver asks through `WorkerPort`.
 */
import net from 'node:net';
import { WorkerDriver, type LoopAtFlip, type WorkerPort } from '../model/driver/worker.ts';
import type { ConnId, TraceEvent, WorkerId } from '../model/events.ts';
import { runtimesFor } from '../model/machines/index.ts';
import { keepingOnly, NO_TRACE, traceEvent, type TraceSink } from '../model/host.ts';
import { isLifecycleEvent } from '../model/trace.ts';
import { getPolicy, type PolicySpec } from '../model/policies.ts';
import type { App, AppRequest } from './apps.ts';
import { ParseError, RequestParser, serializeResponse, type HttpRequest, type HttpResponse } from './http.ts';
import { LiveHost, monotonicMs, ServerInvariantError } from './live-host.ts';
import { mutantOf } from './mutants.ts';
import { WORKER_BOOT_ERROR, WORKER_CRASH, type SocketHandle, type WorkerMessage, type WorkerSpec } from './protocol.ts';

/** A deliberately broken variant, for the conformance suite's mutation score (impl/mutants.ts); none unless asked. */
const MUTANT = mutantOf(process.env['QUIESCE_MUTANT']);

interface Conn {
  readonly id: ConnId;
  readonly socket: net.Socket;
  parser: RequestParser;
  /** The id of the request whose bytes the machine has been told about (conn.bytes), not yet read. */
  announced: string | null;
  /** The announced request was not all here (its body was on its way): the driver is told when it is. */
  announcedPartial: boolean;
  /** Requests started on this connection: names requests that carry no X-Request-Id. */
  requests: number;
  /** The request read for the thread that will run it, or the refusal that answers it. */
  request: HttpRequest | null;
  response: HttpResponse | null;
  /** After a half-close: whatever arrives is read and discarded. */
  discarding: boolean;
  /** Bytes came while discarding, and the machine was told (once: it only needs to know that they came). */
  discardNoted: boolean;
  /** A request refused with its body still coming (413): what arrives after it is that body, named by the request. */
  refusedBody: string | null;
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

/** An app that ran this long synchronously blocked the worker: signals that came meanwhile are taken before new connections. */
const BLOCKED_MS = 20;

/** How long a worker waits for its sockets to flush before it exits anyway. */
const EXIT_FLUSH_MS = 2000;

const INTERNAL_ERROR: HttpResponse = { status: 500, headers: { 'Content-Type': 'text/plain' }, body: 'Internal Server Error\n' };

export class WorkerServer implements WorkerPort {
  readonly id: WorkerId;
  private readonly policy: PolicySpec;
  private readonly host: LiveHost;
  private readonly driver: WorkerDriver;
  private readonly conns = new Map<ConnId, Conn>();
  private server: net.Server | null = null;
  /** The copy of the listening socket this worker holds (without accepting on it) until the policy releases it. */
  private heldListener: SocketHandle | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private exiting = false;

  constructor(
    private readonly spec: WorkerSpec,
    private readonly app: App,
    private readonly send: (message: WorkerMessage, done?: () => void) => void,
    private readonly exitProcess: (code: number) => void,
    /** Check after every connection event that the platform's count agrees with the machine's (QUIESCE_DEBUG=pairs). */
    private readonly debugPairs = false,
  ) {
    this.id = spec.id;
    this.policy = getPolicy(spec.policy);
    const queue: TraceSink = (t, actor, event) => this.queueEvent(traceEvent(t, actor, event));
    const sink = spec.trace === null ? NO_TRACE : spec.trace === 'lifecycle' ? keepingOnly(isLifecycleEvent, queue) : queue;
    this.host = new LiveHost(runtimesFor(this.policy, spec.params), sink, BigInt(spec.originNs));
    this.driver = new WorkerDriver(this.host, this.id, this);
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
    // A lifecycle trace's events come a few a second (boots, beats, signals): each batch carries the state
    // the arbiter writes this worker's end from, should it be killed (its connections then as of this batch;
    // what became of them since is in none of that end's lifecycle events).
    this.send(this.spec.trace === 'lifecycle' ? { kind: 'events', events, actors: this.host.snapshotActors() } : { kind: 'events', events });
  }

  /**
   * Any other message goes after the trace events written before it. The arbiter acts on it (announces
   * the server listening on `ready`, takes the worker's end as told on `bye`), and a process killed
   * right after — a SEGV from outside once the server said it listens — takes its queued events with
   * it: the trace lost the worker's boot, and the arbiter, following no booted worker, wrote no crash.
   */
  private tell(message: Exclude<WorkerMessage, { kind: 'events' }>, done?: () => void): void {
    this.flushEvents();
    this.send(message, done);
  }

  /**
   * Become the worker, holding one copy of the listening socket: its machine boots now, while its app
   * may still load (gunicorn's init_signals comes before load_wsgi), so a signal from here on is the
   * booting worker's; `listen` follows once the app is loaded.
   */
  boot(heldListener: SocketHandle): void {
    this.heldListener = heldListener;
    this.driver.boot(this.spec.maxRequests);
  }

  /** Its app is loaded: accept on the other copy. It is ready once it listens — unless it was told to stop as it booted. */
  listen(accepting: unknown): void {
    if (this.exiting || !this.driver.isBooting()) return;
    // The backlog must be positional: Node ignores `backlog` in the options object when listening on a handle.
    this.makeServer().listen(accepting as net.ListenOptions, this.spec.params.backlog, () => {
      if (!this.driver.ready()) return;
      this.tell({ kind: 'ready' });
      this.scheduleHeartbeat();
    });
  }

  private makeServer(): net.Server {
    // allowHalfOpen: a client's FIN must not close our side — lingering close and
    // "the client closed, answer what it sent" both need the socket half-open.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    server.on('connection', (socket) => this.accept(socket));
    server.on('error', (error) => {
      this.tell({ kind: 'boot-error', message: `worker ${this.id} cannot listen: ${error.message}` }, () => this.exitProcess(WORKER_BOOT_ERROR));
    });
    this.server = server;
    return server;
  }

  // ───────────────────────── room for connections ─────────────────────────

  /**
   * When the machine says the worker takes no more connections (worker_connections reached; the sync
   * worker while it serves one), it stops accepting and the kernel queue holds the rest, as behind
   * gunicorn. Node cannot stop accepting on a socket except by closing it, and libuv may have
   * accepted a few more in the same turn: those are held unread (for the client they are still
   * queued) and adopted first when there is room again.
   */
  private acceptPaused = false;
  private listenerRequested = false;

  private pauseAcceptingIfFull(): void {
    if (this.acceptPaused || this.driver.mayAccept() || !this.driver.isServing()) return;
    this.acceptPaused = true;
    this.stopAccepting();
  }

  /** Room again: adopt what libuv handed over meanwhile, then ask the arbiter for a fresh copy of the socket to accept on. */
  private roomAgain(): void {
    while (this.held.length > 0 && this.driver.mayAccept()) {
      const socket = this.held.shift()!;
      if (!socket.destroyed) this.adopt(socket);
    }
    if (!this.acceptPaused || this.acceptsDeferred || this.listenerRequested || this.held.length > 0 || !this.driver.mayAccept()) return;
    this.listenerRequested = true;
    this.tell({ kind: 'listener-request' });
  }

  /** The arbiter sent a copy of the listening socket. */
  listenerCopy(handle: unknown): void {
    this.listenerRequested = false;
    // Asked for before a blocked turn: the end of that turn's deferral asks again.
    if (!this.acceptPaused || this.acceptsDeferred || !this.driver.mayAccept()) {
      (handle as { close?: () => void }).close?.();
      return;
    }
    this.acceptPaused = false;
    this.makeServer().listen(handle as net.ListenOptions, this.spec.params.backlog);
  }

  /** A signal delivered to this process. */
  signal(signal: 'TERM' | 'INT' | 'QUIT' | 'ABRT'): void {
    this.driver.signal(signal);
  }

  // ───────────────────────── heartbeat ─────────────────────────

  private scheduleHeartbeat(): void {
    this.heartbeat = setTimeout(() => {
      this.driver.heartbeat();
      if (!this.exiting) this.scheduleHeartbeat();
    }, this.spec.params.heartbeatIntervalMs);
  }

  // ───────────────────────── connections ─────────────────────────

  /**
   * After an app blocked the worker (a handler that does not yield), a signal that came meanwhile waits
   * in the same event-loop turn as the connections that queued meanwhile, and libuv may hand us the
   * connections first. gunicorn's sync worker would have taken the signal during the block (Python
   * runs handlers while it sleeps), and a worker that stops there leaves those connections in the
   * kernel's queue, for another worker. So before that turn the worker stops accepting; once the
   * turn's signals have run, it asks for a fresh copy of the listener if its machine still takes
   * connections. (Taking the connections and looking at them after the signals is not the same: a
   * draining worker could then only hold them, and reset them at its exit — the soak lost requests so.)
   */
  private acceptsDeferred = false;
  /**
   * Connections libuv handed over when the machine took no more: still queued for the client, unread.
   * Adopted in order when there is room; reset at exit, as the queue would be at the last close.
   */
  private readonly held: net.Socket[] = [];

  private deferAcceptsThisTurn(): void {
    if (this.acceptsDeferred) return;
    this.acceptsDeferred = true;
    if (this.server?.listening) {
      this.acceptPaused = true;
      this.server.close();
    }
    // The block happened inside a poll phase: the first check phase comes before the next poll,
    // the second after it — by then that poll's signals have run.
    setImmediate(() =>
      setImmediate(() => {
        this.acceptsDeferred = false;
        this.roomAgain();
      }),
    );
  }

  private accept(socket: net.Socket): void {
    if (this.held.length > 0 || !this.adopt(socket)) {
      // The model's worker takes no connection now: for the client it is still queued.
      socket.pause();
      this.held.push(socket);
    }
    this.pauseAcceptingIfFull();
  }

  /** The worker takes the connection, if its machine lets it now. */
  private adopt(socket: net.Socket): boolean {
    // impl/ cannot see the client's own id: each peer is named after the connection that accepted it.
    const next = this.driver.nextConnId();
    const client = `client/${this.spec.n * 1_000_000 + Number(next.slice(next.indexOf('.') + 1))}` as const;
    const id = this.driver.accept(client);
    if (id === null) return false;
    this.track(socket);
    const conn: Conn = {
      id,
      socket,
      parser: new RequestParser(this.spec.limits),
      announced: null,
      announcedPartial: false,
      requests: 0,
      request: null,
      response: null,
      discarding: false,
      discardNoted: false,
      refusedBody: null,
      continued: false,
      closed: false,
      readPaused: false,
      writeBlocked: false,
      accountedBytes: 0,
    };
    this.conns.set(id, conn);
    socket.on('data', (chunk: Buffer) => this.isolated(conn, 'reading', () => this.onData(conn, chunk)));
    socket.on('end', () => this.isolated(conn, 'reading EOF', () => this.driver.peerFin(conn.id)));
    socket.on('error', (error: NodeJS.ErrnoException) => this.isolated(conn, 'a socket error', () => this.onSocketError(conn, error)));
    socket.on('close', () => this.isolated(conn, 'the socket closing', () => this.onPeerGone(conn)));
    socket.on('drain', () => this.isolated(conn, 'writing', () => this.onDrain(conn)));
    // What the client sent while it waited (held) is read now.
    if (socket.isPaused()) socket.resume();
    return true;
  }

  /**
   * Run one connection's event. An unexpected error there is that connection's, not the worker's:
   * it is logged with the connection's id, the connection alone is answered (a 500 with
   * Connection: close while its request is still unread, otherwise closed through its machine's
   * abort), and the other connections carry on. A disagreement between the server and its own
   * machines (ServerInvariantError) is not a connection's fault: it still stops the worker, loudly.
   */
  private isolated(conn: Conn, what: string, run: () => void): void {
    try {
      run();
    } catch (error) {
      if (error instanceof ServerInvariantError) throw error;
      this.connectionFailed(conn, what, error);
    }
    if (this.debugPairs) this.checkPairs();
  }

  private connectionFailed(conn: Conn, what: string, error: unknown): void {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    process.stderr.write(`[${this.id}] ${conn.id}: internal error while ${what}: ${message}\n`);
    if (conn.closed) return;
    if (conn.announced !== null && this.driver.isPending(conn.id)) {
      // Its request is still unread: answer it with a 500 and close; nothing more is read from the parser.
      conn.parser = new RequestParser(this.spec.limits);
      conn.response = INTERNAL_ERROR;
      conn.writeBlocked = false;
      this.driver.requestReadable(conn.id);
      return;
    }
    this.driver.connectionFailed(conn.id);
  }

  private onData(conn: Conn, chunk: Buffer): void {
    if (conn.closed) return;
    if (conn.discarding) return this.noteDiscarded(conn, chunk); // a lingering close reads and discards
    conn.parser.push(chunk);
    this.account(conn);
    // More of an announced request (its body): it may be complete now.
    if (conn.announced !== null && conn.announcedPartial && conn.parser.isComplete()) {
      conn.announcedPartial = false;
      this.driver.requestCompleted(conn.id, conn.announced);
    } else if (conn.announced !== null) this.driver.requestReadable(conn.id);
    else if (this.driver.isHandling(conn.id)) this.noteBehind(conn);
    else this.announce(conn);
  }

  /**
   * Bytes wait in our buffer behind the request being handled (pipelined): the driver hears of them
   * (it tells the connection once per request); they are announced once the response is written.
   */
  private noteBehind(conn: Conn): void {
    // What announce() would announce once idle: a whole head (or one already refused). Less than that
    // is not yet a request: noted now, it would leave the idle connection with bytes "unread" that
    // no one announces (found by the framing fuzz: a FIN then reset a connection safe-drain closes with FIN).
    if (conn.closed || !(conn.parser.hasCompleteHead() || conn.parser.isHopeless())) return;
    this.driver.requestBehind(conn.id, conn.parser.peekRequestId() ?? `${conn.id.slice('conn/'.length)}.${conn.requests + 1}`);
  }

  /**
   * Bytes that reach a lingering close are discarded, never parsed; the machine hears once that they
   * came (its lingering state takes them: nothing is left unread), under the request id they carry if
   * one shows, so that the trace and the wire can be held to each other.
   */
  private noteDiscarded(conn: Conn, chunk: Buffer): void {
    if (conn.discardNoted) return;
    conn.discardNoted = true;
    const id = conn.refusedBody ?? /x-request-id:[ \t]*([^\r\n]+)/i.exec(chunk.toString('latin1'))?.[1]?.trim() ?? `${conn.id.slice('conn/'.length)}.discarded`;
    this.driver.requestArrived(conn.id, id);
  }

  /** Tell the machine a request has arrived (its head is complete, or it is already known to be bad). */
  private announce(conn: Conn): void {
    if (conn.announced !== null || conn.closed) return;
    // While a request is being handled the next one waits in our buffer; it is announced once the
    // response is written (HTTP/1.1 pipelining is answered in order).
    if (this.driver.isHandling(conn.id)) return;
    if (!conn.parser.hasCompleteHead() && !conn.parser.isHopeless()) return;
    const req = conn.parser.peekRequestId() ?? `${conn.id.slice('conn/'.length)}.${conn.requests + 1}`;
    // Announced before the driver hears of it: a free thread may read (and clear) it at once.
    conn.announced = req;
    conn.announcedPartial = !conn.parser.isComplete();
    if (!this.driver.requestArrived(conn.id, req, conn.announcedPartial)) conn.announced = null;
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
    const ahead = conn.parser.hasCompleteHead() || conn.announced !== null || this.driver.isHandling(conn.id);
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
    if (conn.announced !== null) this.driver.requestReadable(conn.id);
    else if (this.driver.isIdle(conn.id)) this.announce(conn);
  }

  private onSocketError(conn: Conn, error: NodeJS.ErrnoException): void {
    if (conn.closed) return;
    if ((error.code === 'ECONNRESET' || error.code === 'EPIPE') && this.driver.peerReset(conn.id)) this.forget(conn, true);
  }

  /** The socket went away under us (the peer reset it): the machine hears it as an RST. */
  private onPeerGone(conn: Conn): void {
    if (conn.closed) return;
    if (this.driver.peerReset(conn.id)) this.forget(conn, true);
  }

  // ───────────────────────── the port: requests ─────────────────────────

  watchReadable(): boolean {
    // Node's event loop is the poller, and it just returned with these bytes: handed over at once.
    return true;
  }

  pollReturnedWith(_conn: ConnId, before: readonly ConnId[]): readonly ConnId[] {
    // Handed over at once (watchReadable): nothing else waits in a poller of the driver's.
    return before;
  }

  pickUp(): boolean {
    // The handler runs on this event loop, in the same turn that read the request.
    return true;
  }

  read(id: ConnId, req: string): { keepAlive: boolean } | null {
    const conn = this.conn(id);
    // The client has not read the last response yet: this request waits (backpressure); drain brings it back.
    if (conn.writeBlocked) return null;
    if (conn.response !== null) return { keepAlive: false }; // an internal error answered it already
    let request: HttpRequest | null;
    try {
      request = conn.parser.next();
    } catch (error) {
      const refusal = error instanceof ParseError ? error : null;
      if (!refusal) process.stderr.write(`[${this.id}] ${id}: internal error while parsing ${req}: ${error instanceof Error ? error.message : String(error)}\n`);
      conn.response = refusal ? { status: refusal.status, headers: { 'Content-Type': 'text/plain' }, body: `${refusal.message}\n` } : INTERNAL_ERROR;
      return { keepAlive: false };
    }
    this.account(conn);
    if (request === null) {
      // The body is still arriving; its next bytes bring it back. A client that asked waits for our go-ahead.
      if (!conn.continued && conn.parser.expectsContinue() && !conn.socket.destroyed) {
        conn.continued = true;
        conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      }
      return null;
    }
    conn.request = request;
    return { keepAlive: request.keepAlive };
  }

  handle(id: ConnId, req: string): void {
    const conn = this.conn(id);
    conn.announced = null;
    conn.announcedPartial = false;
    conn.continued = false;
    conn.requests++;
    const request = conn.request;
    conn.request = null;
    if (request === null || conn.response !== null) {
      // A refusal (or an internal error) needs no app: it is answered at once.
      const response = conn.response ?? INTERNAL_ERROR;
      conn.response = null;
      // A body too large is refused from its head (413), and the client goes on sending it: bytes nobody
      // will read. The connection hears of them before the response, as of bytes behind it, so that its
      // close is what the kernel does with them — an RST, which may destroy the 413 before the client
      // reads it (RFC 9112 §9.6) — or a lingering close that reads and discards them first. The trace
      // used to say FIN, and the wire showed FIN, then RST.
      if (response.status === 413) {
        conn.refusedBody = req;
        this.driver.requestBehind(conn.id, req);
      }
      this.finish(conn, req, response, false);
      return;
    }
    // A request pipelined behind this one may be in the buffer already.
    this.noteBehind(conn);
    const remote = conn.socket.remotePort === undefined ? null : { address: conn.socket.remoteAddress ?? '', port: conn.socket.remotePort };
    void this.runApp(request, req, remote).then((response) =>
      this.isolated(conn, 'finishing a response', () => this.finish(conn, req, response, request.method === 'HEAD')),
    );
  }

  private async runApp(request: HttpRequest, requestId: string, remote: AppRequest['remote']): Promise<HttpResponse> {
    try {
      const started = monotonicMs();
      // Spelled out rather than spread (see http-parser.ts: most requests run before the JIT warms up).
      const appRequest: AppRequest = {
        method: request.method,
        target: request.target,
        form: request.form,
        path: request.path,
        query: request.query,
        version: request.version,
        headers: request.headers,
        body: request.body,
        keepAlive: request.keepAlive,
        requestId,
        remote,
      };
      const result = this.app(appRequest, { counterLog: this.spec.counterLog });
      // An app that blocked the event loop (a CPU-bound handler) held up this turn's signals too.
      if (monotonicMs() - started > BLOCKED_MS) this.deferAcceptsThisTurn();
      return checkedResponse(await result);
    } catch (error) {
      process.stderr.write(`[${this.id}] app error on ${requestId}: ${error instanceof Error ? error.message : String(error)}\n`);
      return INTERNAL_ERROR;
    }
  }

  /** The handler is done: the driver writes its response (through respond) and frees the thread. */
  private finish(conn: Conn, req: string, response: HttpResponse, head: boolean): void {
    this.pendingResponse = { response, head };
    this.driver.handlerFinished(conn.id, req);
    this.pendingResponse = null;
    // Back to idle with the next request already buffered (pipelining): announce it.
    if (!conn.closed && this.driver.isIdle(conn.id)) this.announce(conn);
  }

  /** The response being finished, for respond() (called by the driver from inside handlerFinished). */
  private pendingResponse: { response: HttpResponse; head: boolean } | null = null;

  respond(id: ConnId, _req: string, close: boolean): number {
    const conn = this.conn(id);
    const pending = this.pendingResponse;
    if (pending === null) throw new ServerInvariantError(`${id}: a response was asked for outside a handler's end`);
    let { response } = pending;
    let bytes: Buffer;
    // A mutant's header differs from what the machine decided (and the trace says): see impl/mutants.ts.
    const header = MUTANT === 'no-close-header' ? false : MUTANT === 'close-header-on-keepalive' ? true : close;
    try {
      bytes = serializeResponse(response, header, this.spec.params.keepAliveMs / 1000, pending.head);
    } catch (error) {
      process.stderr.write(`[${this.id}] ${(error as Error).message}\n`);
      response = INTERNAL_ERROR;
      bytes = serializeResponse(response, header, this.spec.params.keepAliveMs / 1000, pending.head);
    }
    if (MUTANT === 'drop-response') return response.status;
    if (!conn.socket.destroyed && !conn.socket.write(bytes) && conn.socket.writableLength > WRITE_HIGH_WATER_BYTES) {
      conn.writeBlocked = true;
      this.updateReading(conn);
    }
    return response.status;
  }

  // ───────────────────────── the port: sockets and the process ─────────────────────────

  stopAccepting(): void {
    // A mutant that leaves at once, whatever is in flight (impl/mutants.ts): what its machines said so far is sent first.
    if (MUTANT === 'exit-with-request-in-flight' && this.driver.busy() > 0) {
      this.tell({ kind: 'bye' }, () => process.exit(0));
      return;
    }
    if (this.server?.listening) this.server.close();
  }

  releaseListener(): void {
    this.stopAccepting();
    this.heldListener?.close();
    this.heldListener = null;
    this.driver.listenerReleased();
    this.tell({ kind: 'released-listener' });
  }

  // The response is written by the thread of the loop that polls: the connection is back at once.
  returnToPoller(): boolean {
    return true;
  }

  // A flip of alive happens inside this loop's own callback (Node runs one at a time): the loop is back
  // in its poll before anything else runs, so the poll returns with what comes next.
  loopAtFlip(): LoopAtFlip {
    return { place: 'in-poll' };
  }

  // This process's own end is the teardown: its exit closes what is open when it comes.
  tearDown(): boolean {
    return true;
  }

  closeSocket(id: ConnId, rst: boolean): void {
    const conn = this.conn(id);
    if (!conn.socket.destroyed) {
      // A mutant closes otherwise than the machine decided (and the trace says): see impl/mutants.ts.
      const withRst = MUTANT === 'fin-for-rst' ? false : MUTANT === 'rst-for-fin' ? true : rst;
      if (withRst) reset(conn.socket);
      else fullClose(conn.socket);
    }
    this.forget(conn);
  }

  halfClose(id: ConnId): void {
    const conn = this.conn(id);
    conn.discarding = true;
    if (!conn.socket.destroyed) conn.socket.end();
    // Already closed by the peer: the discarding state waits for a FIN that came before it — told
    // once this half-close is done.
    if (conn.socket.readableEnded) queueMicrotask(() => this.driver.peerFin(id));
  }

  notifyArbiter(): void {
    this.tell({ kind: 'heartbeat' });
  }

  exit(code: number): void {
    if (this.exiting) return;
    this.exiting = true;
    if (this.heartbeat) clearTimeout(this.heartbeat);
    for (const socket of this.held.splice(0)) reset(socket);
    this.stopAccepting();
    // Let written responses reach the kernel before the process goes: exit once every socket closed.
    const sockets = [...this.openSockets];
    const leave = () => {
      this.tell({ kind: 'bye' }, () => this.exitProcess(code));
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

  private conn(id: ConnId): Conn {
    const conn = this.conns.get(id);
    if (!conn) throw new ServerInvariantError(`${id} is not a connection of ${this.id}`);
    return conn;
  }

  /** The connection is closed for the machine: the platform lets go of it (and of the socket, when the peer reset it). */
  private forget(conn: Conn, destroy = false): void {
    if (conn.closed) return;
    conn.closed = true;
    if (destroy && !conn.socket.destroyed) conn.socket.destroy();
    this.account(conn);
    this.conns.delete(conn.id);
    // The sync worker's thread is free only once the handler returned: let the close finish first.
    queueMicrotask(() => this.roomAgain());
  }

  private crashed = false;

  /** Dying of an uncaught error: one line on stderr, the trace so far to the arbiter, exit WORKER_CRASH. */
  crash(error: unknown): void {
    if (this.crashed) return;
    this.crashed = true;
    const message = error instanceof Error ? `${error.name}: ${error.message}${error.stack?.split('\n')[1]?.trim() ? ` (${error.stack.split('\n')[1]!.trim()})` : ''}` : String(error);
    process.stderr.write(`[${this.id}] crashed: ${message}\n`);
    const leave = () => this.exitProcess(WORKER_CRASH);
    const timer = setTimeout(leave, 500);
    try {
      this.tell({ kind: 'crash', message }, () => {
        clearTimeout(timer);
        leave();
      });
    } catch {
      leave();
    }
  }

  private readonly openSockets = new Set<net.Socket>();

  /** Track every socket until it is fully closed, so exit can wait for written bytes to flush. */
  private track(socket: net.Socket): void {
    this.openSockets.add(socket);
    socket.once('close', () => this.openSockets.delete(socket));
  }

  /** Debug: the platform's own count of connections agrees with the machine's (QUIESCE_DEBUG=pairs). */
  checkPairs(): void {
    const machine = this.driver.openConns().length;
    if (machine !== this.conns.size) throw new ServerInvariantError(`${this.id} holds ${this.conns.size} connections; its machine says ${machine}`);
  }
}

/**
 * close(2), as gunicorn's `sock.close()`: a FIN if nothing the client sent is unread, otherwise the
 * kernel's RST — and whatever arrives later is reset too. Not end() then destroy(): until the FIN's
 * write completed Node would go on reading, and a request that crossed the close would be consumed
 * and dropped, the client left with a FIN and no reply (found in the calibrate capture of HUPs under load).
 * Only a response still queued in Node (the kernel's buffer was full) is written out first.
 */
function fullClose(socket: net.Socket): void {
  if (socket.writableLength === 0) socket.destroy();
  else {
    // What comes meanwhile is not parsed (the connection is closed for its machine); once Node's
    // buffer is full it stays in the kernel, for the close to reset.
    socket.pause();
    socket.end(() => socket.destroy());
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
