/**
 * A worker's driver: every event sequence of a worker process and its
 * connections, once, for every platform. The platform reports what happened
 * on its sockets and threads (a connection came in, request bytes arrived, a
 * handler finished, the peer closed) and carries out the port's effects
 * (close with FIN or RST, half-close, write a response, stop accepting,
 * exit). In between, the worker's and connections' machines decide: whether
 * to accept, whether a thread is free to read, what the response's
 * `Connection` header says, when to drain, close, give up or exit.
 *
 * A new platform implements `WorkerPort`, calls these methods, and is a
 * server with every policy of the model.
 */
import { connId, type AbortReason, type ClientId, type ConnId, type WorkerId, type WorkerSignal } from '../events.ts';
import type { ActorHost } from '../host.ts';
import { dispatchCommand, type CommandHandlers } from '../machines/commands.ts';
import type { ConnCommand } from '../machines/connection.ts';
import { responseMustClose } from '../machines/index.ts';
import { exitCodeOf, type WorkerCommand } from '../machines/worker.ts';

/**
 * What made a connection in the worker's poller readable: its return to the poller with its next
 * request already in the buffer (`return`: the client sent it while the pool's done callback was
 * still on its way), or a request's arrival while it was there (`arrival`). The two wait for the
 * loop differently: a returning connection waits for the loop's next turn, whatever its request had
 * waited before (gunicorn gthread, at the median: 1.97 ms from the return against 1.86 from the
 * arrival at one worker, 1.65 against 0.45 at four — simulator/README.md, "Two waits").
 */
export type ReadableBy = 'return' | 'arrival';

/** What a worker does to the world: the platform carries it out. */
export interface WorkerPort {
  /** Stop taking connections from the listening socket (the fd stays open until releaseListener). */
  stopAccepting(): void;
  /**
   * Close this process's copy of the listening socket. The platform calls `listenerReleased()` when it
   * has (at once, or when its event loop gets there).
   */
  releaseListener(): void;
  /**
   * A connection that waits in the worker's event loop (the policy's `pollerDispatch`) is readable,
   * by `by` (see `ReadableBy`). Returns true when the loop hands it over at once; otherwise the
   * platform calls `polled(conn)` when its loop's poll returns with it.
   */
  watchReadable(conn: ConnId, by: ReadableBy): boolean;
  /**
   * The loop's poll returned with `conn` (`polled`): which of the connections still waiting in the
   * poller that poll returned with too — select() returns with every connection readable as it
   * returns. `before` became readable before `conn` and `after` since (each in that order); the poll
   * returned after `conn` became readable, so `before` were in it whatever the platform knows. A
   * platform that knows when the poll returned (the simulator, from a measured hand-over's time after
   * its poll's return) adds those of `after` that were readable by then; one that does not answers
   * `before`.
   */
  pollReturnedWith(conn: ConnId, before: readonly ConnId[], after: readonly ConnId[]): readonly ConnId[];
  /** Take the request of `conn` off the socket now that a thread is free: whether it allows keep-alive; null while it is incomplete. */
  read(conn: ConnId, req: string): { readonly keepAlive: boolean } | null;
  /**
   * The thread that read the request gets to run the app: true when at once; otherwise the platform
   * calls `pickedUp(conn, req)` when it does (gthread: the pool thread's wait for the GIL, and the
   * parse, between the hand-over and the handler — a drain meanwhile still reaches the header).
   */
  pickUp(conn: ConnId, req: string): boolean;
  /** Run the app on the request just read; the platform calls `handlerFinished(conn, req)` when it is done. */
  handle(conn: ConnId, req: string): void;
  /** Write the handler's response, with `Connection: close` or not; returns its status. */
  respond(conn: ConnId, req: string, close: boolean): number;
  /**
   * A keep-alive response was written by a poller's pool (the connection is `returning`): true when
   * the connection is back with the loop at once; otherwise the platform calls `returned(conn)` when
   * the thread's done callback gets there (gthread: `finish_request`, after the GIL).
   */
  returnToPoller(conn: ConnId): boolean;
  /** close(2): FIN, or RST when `rst` (request bytes unread). */
  closeSocket(conn: ConnId, rst: boolean): void;
  /** shutdown(SHUT_WR): FIN now, keep reading and discarding. */
  halfClose(conn: ConnId): void;
  /**
   * Where the worker's loop is as `alive` flips — by a pool thread at a recycle (the request that
   * reaches max-requests), or by the TERM handler in the main thread (a stop, a reload), `readable` the
   * connections waiting in its poller: past its poll (handing over what the poll returned, in
   * `futures.wait`, `murder_keepalived`), so that the loop hands over the rest of that return and ends
   * at its next check of `alive` without another poll; or in it, so that the poll returns with what
   * comes next (the last loop turn). Past it, `returned` is that return where the platform knows it,
   * else the driver's own reading (`lastPollBatch`). Asked only where the chart has a last loop turn.
   */
  loopAtFlip(cause: 'recycle' | 'signal', readable: readonly ConnId[]): LoopAtFlip;
  /** Tell the arbiter this worker is alive (gunicorn: touch the heartbeat file). */
  notifyArbiter(): void;
  /**
   * The process, its loop and its threads done, goes on to its end (CPython: the interpreter's
   * finalization, on a CPU the load keeps busy): true when it is gone at once; otherwise the platform
   * calls `tornDown()` when it is. What its exit closes stays open until then — a request that comes
   * meanwhile waits unread, and is reset.
   */
  tearDown(): boolean;
  /** The process exits with this code; the kernel closes whatever fds it still had. */
  exit(code: number): void;
}

export type WorkerSignalIn = Exclude<WorkerSignal, 'KILL'> | 'KILL';

/** Where a worker's loop is as `alive` flips (`WorkerPort.loopAtFlip`). */
export type LoopAtFlip = { readonly place: 'in-poll' } | { readonly place: 'past-poll'; readonly returned?: readonly ConnId[] };

/** What a worker's driver keeps beside the machines, as data (an explorer's snapshots). */
export interface WorkerDriverState {
  readonly waiting: readonly ConnId[];
  readonly readable: readonly ConnId[];
  readonly lastPollBatch: readonly ConnId[];
  readonly nextConn: number;
  readonly exitPending: boolean;
  readonly heartbeatDue: boolean;
  readonly tearingDown: boolean;
}

export class WorkerDriver {
  /** Connections whose request has arrived and waits for a free thread, in arrival order. */
  private readonly waiting: ConnId[] = [];
  /** Connections whose request waits in the poller (`unpolled`), in the order the requests came. */
  private readonly readable: ConnId[] = [];
  /**
   * The rest of what the loop's last poll returned, as far as the platform can tell
   * (`WorkerPort.pollReturnedWith`), not handed over yet: at least the connections that were readable
   * before the one it last handed over — that poll returned after it became readable, so select()
   * returned with them too. A loop past its poll as `alive` flips is still handing them over.
   */
  private readonly lastPollBatch: ConnId[] = [];
  private nextConn = 1;
  private exitPending = false;
  /** The process is past its loop and on its way out (`WorkerPort.tearDown`): its exit's closes wait for `tornDown()`. */
  private tearingDown = false;

  /** Between steps only: a pump in progress is not a state. */
  state(): WorkerDriverState {
    return { waiting: [...this.waiting], readable: [...this.readable], lastPollBatch: [...this.lastPollBatch], nextConn: this.nextConn, exitPending: this.exitPending, heartbeatDue: this.heartbeatDue, tearingDown: this.tearingDown };
  }

  load(state: WorkerDriverState): void {
    this.waiting.splice(0, this.waiting.length, ...state.waiting);
    this.readable.splice(0, this.readable.length, ...state.readable);
    this.lastPollBatch.splice(0, this.lastPollBatch.length, ...state.lastPollBatch);
    this.nextConn = state.nextConn;
    this.exitPending = state.exitPending;
    this.tearingDown = state.tearingDown;
    this.heartbeatDue = state.heartbeatDue;
  }

  private readonly workerHandlers: CommandHandlers<WorkerCommand, string> = {
    drainConnections: () => {
      // Stop accepting now, unless the chart still allows a last-turn accept (gthread 21–23).
      if (!this.mayAccept()) this.port.stopAccepting();
      // Refused by a connection already on its way out (closing, lingering): draining changes nothing there.
      for (const conn of this.openConns()) this.host.emitIfAccepted(conn, { type: 'conn.drain' });
      this.pump();
    },
    endLastTurn: () => {
      if (!this.mayAccept()) this.port.stopAccepting();
      // Refused by every connection not waiting on that turn (busy, closing): nothing changes there.
      for (const conn of this.openConns()) this.host.emitIfAccepted(conn, { type: 'conn.turn-end' });
    },
    closeListenerCopy: () => this.port.releaseListener(),
    abortConnections: (_, { reason }) => {
      // A graceful exit's connections close with the process, once it is gone: the platform says when.
      if (reason === 'worker-exit' && !this.tearingDown && !this.port.tearDown()) {
        this.tearingDown = true;
        return;
      }
      this.tearingDown = false;
      this.abortOpenConns(reason);
    },
    exitProcess: () => {
      this.exitPending = true;
      this.tryExit();
    },
  };

  private readonly connHandlers: CommandHandlers<ConnCommand, string> = {
    closeSocket: (actor, { rst }) => {
      const conn = actor as ConnId;
      this.port.closeSocket(conn, rst);
      this.host.emit(conn, { type: 'conn.close', rst });
      this.closed(conn);
    },
    halfClose: (actor) => {
      this.port.halfClose(actor as ConnId);
      this.host.emit(actor as ConnId, { type: 'conn.half-close' });
    },
  };

  constructor(
    private readonly host: ActorHost,
    readonly id: WorkerId,
    private readonly port: WorkerPort,
  ) {
    const n = Number(id.slice('worker/'.length));
    this.n = n;
    host.own(id, (actor, action) => {
      if (actor === id) dispatchCommand(this.workerHandlers, actor, action);
      else dispatchCommand(this.connHandlers, actor, action);
    });
  }

  private readonly n: number;

  // ───────────────────────── the process ─────────────────────────

  /** The process started (its app loading). `maxRequests`: its recycle limit, 0 for none. */
  boot(maxRequests: number): void {
    this.host.now(() => this.host.emit(this.id, { type: 'worker.boot', maxRequests }));
  }

  /** The app loaded: the worker serves. Refused when a signal ended it while it was still booting. */
  ready(): boolean {
    let taken = false;
    this.host.now(() => (taken = this.host.emitIfAccepted(this.id, { type: 'worker.ready' })));
    return taken;
  }

  /**
   * One turn of the worker's loop: it notifies the arbiter — if its machine says a worker in its state
   * does. A beat the machine refuses because the loop waits for a handler (the sync worker) is due
   * again as soon as a request ends: gunicorn's sync loop notifies between requests.
   */
  heartbeat(): void {
    this.host.now(() => {
      // Refused while booting, stopped, exiting, busy (sync), or draining under a policy whose loop has ended (gthread ≤ 23).
      const taken = this.host.emitIfAccepted(this.id, { type: 'worker.heartbeat' });
      this.heartbeatDue = !taken;
      if (taken) this.port.notifyArbiter();
    });
  }

  private heartbeatDue = false;

  /** A signal reached the worker. Refused once it exited: nothing is left to take it. */
  signal(signal: WorkerSignal): boolean {
    let taken = false;
    this.host.now(() => {
      const wasLastTurn = this.host.matches(this.id, { alive: { draining: 'lastTurn' } });
      taken = this.host.emitIfAccepted(this.id, { type: 'worker.signal', signal });
      if (taken && !wasLastTurn) {
        this.host.settleCommands();
        this.lastTurnBegan('signal');
      }
    });
    return taken;
  }

  /**
   * `alive` just flipped (a recycle, or a TERM's handler): where the chart has a last loop turn, the
   * platform says where the loop is. One past its poll is still handing over what that poll returned
   * (`lastPollBatch`), and ends the turn
   * without another poll: what else waits in the poller is abandoned. One in its poll returns with
   * what comes next (`dispatch`).
   */
  private lastTurnBegan(cause: 'recycle' | 'signal'): void {
    if (!this.host.matches(this.id, { alive: { draining: 'lastTurn' } })) return;
    const loop = this.port.loopAtFlip(cause, [...this.readable]);
    if (loop.place === 'in-poll') return;
    const returned = loop.returned ?? this.lastPollBatch;
    this.handOverLastTurn(this.readable.filter((conn) => returned.includes(conn)));
    this.host.settleCommands();
  }

  /** The process died of a fault (an uncaught error, a signal nobody sent to stop it). */
  crashed(code: number, signal?: string): void {
    // Refused when its end was already written (it had exited, or was killed).
    this.host.now(() => this.host.emitIfAccepted(this.id, { type: 'worker.crash', code, ...(signal ? { signal } : {}) }));
  }

  /** The platform closed this process's copy of the listening socket, as `releaseListener` asked. */
  listenerReleased(): void {
    // Refused when the exit closed it first.
    this.host.now(() => this.host.emitIfAccepted(this.id, { type: 'worker.close-listener' }));
  }

  // ───────────────────────── connections ─────────────────────────

  /** Whether the worker's machine lets it take a new connection now (room, a free sync worker, not draining). */
  mayAccept(): boolean {
    return this.host.accepts(this.id, { type: 'worker.accept', conn: connId(this.n, this.nextConn) });
  }

  /**
   * The platform took a connection off the listening socket. Returns its id, or null when the machine
   * says this worker takes no connection now: for the client it is still queued, unread.
   */
  accept(client: ClientId): ConnId | null {
    const conn = connId(this.n, this.nextConn);
    let accepted = false;
    this.host.now(() => {
      if (!this.host.emitIfAccepted(this.id, { type: 'worker.accept', conn })) return;
      accepted = true;
      this.nextConn++;
      this.host.emit(conn, { type: 'conn.open', worker: this.id, client });
      if (this.isDraining()) this.host.emit(conn, { type: 'conn.drain' });
    });
    return accepted ? conn : null;
  }

  /** The connection id the next accept will get. */
  nextConnId(): ConnId {
    return connId(this.n, this.nextConn);
  }

  /**
   * Request bytes reached the socket (a whole head, or a request the server already knows is bad);
   * `partial`: the head only, its body still on its way (the platform calls `requestCompleted` when
   * the rest comes). Returns false when the connection no longer reads (it closed meanwhile).
   */
  requestArrived(conn: ConnId, req: string, partial = false): boolean {
    let taken = false;
    if (!this.host.has(conn)) return false; // closed and forgotten
    this.host.now(() => {
      // A connection the last loop turn polls became readable: the poll returns with it, and the turn ends.
      const endsTurn = this.host.matches(conn, { idle: 'lastTurn' });
      // Refused by a closed connection: the bytes meet a closed socket (the kernel answers with RST).
      taken = this.host.emitIfAccepted(conn, partial ? { type: 'conn.bytes', req, partial } : { type: 'conn.bytes', req });
      // Every request in the poller came before this one: the poll returns with all of them.
      if (taken && endsTurn) return this.lastPollReturned(conn);
      if (taken && this.host.matches(conn, 'unpolled')) return this.awaitPoll(conn, 'arrival');
      if (taken) this.wantsThread(conn);
    });
    return taken;
  }

  /** The process is gone (see `WorkerPort.tearDown`): what its exit closes closes now. */
  tornDown(): void {
    if (!this.tearingDown || this.host.isDone(this.id)) return;
    this.host.now(() => {
      this.tearingDown = false;
      this.abortOpenConns('worker-exit');
      this.tryExit();
    });
  }

  private abortOpenConns(reason: AbortReason): void {
    for (const conn of this.openConns()) this.host.emit(conn, { type: 'conn.abort', reason });
  }

  /** The worker's loop returned from its poll with `conn` readable (see `WorkerPort.watchReadable`). */
  polled(conn: ConnId): void {
    if (!this.host.has(conn)) return; // closed and forgotten meanwhile
    this.host.now(() => this.dispatch(conn));
  }

  private dispatch(conn: ConnId): void {
    // The poll of a draining worker's last turn returned: handing this one over ends the turn.
    const endsTurn = this.host.matches(this.id, { alive: { draining: 'lastTurn' } });
    // Refused once the connection left the poller: abandoned by the drain, closed, aborted.
    const ready = this.readable.indexOf(conn);
    if (ready >= 0) this.readable.splice(ready, 1);
    if (!this.host.emitIfAccepted(conn, { type: 'conn.dispatch' })) return;
    // The ready list is in the order the connections became readable: those before this one were
    // readable when the poll that returned with it returned, and the platform may know of more.
    const at = Math.max(0, ready);
    const returnedWith = this.port.pollReturnedWith(conn, this.readable.slice(0, at), this.readable.slice(at));
    if (endsTurn) return this.handOverLastTurn([conn, ...returnedWith], conn);
    this.lastPollBatch.splice(0, this.lastPollBatch.length, ...returnedWith);
    this.wantsThread(conn);
  }

  /**
   * What a poll returns with (gunicorn 20.x gthread: `events = self.poller.select(1.0)`, then
   * `for key, _ in events: callback(key.fileobj)` — every connection readable at the select's return is
   * handed over before the loop looks at `alive` again), as far as the model can tell. The platform's
   * poll wait is measured from the moment a connection became readable (`ReadableBy`) to its hand-over,
   * and the hand-overs of one return come one after another, each after the GIL (hooks on the select:
   * up to milliseconds apart), so the select returned somewhere between the handed-over connection
   * becoming readable and its hand-over: the connections readable before it were in that return, and
   * those readable since are in it if they were readable by the return — which the platform places
   * (`WorkerPort.pollReturnedWith`: the simulator, from each hand-over's measured time after its poll's
   * return). In a draining worker's last turn those are handed over (and served with close) and the
   * turn ends; the rest of the poller is abandoned. (simulator/README.md records what each rule gave.)
   *
   * Here, a request came to an idle connection the last turn polls: the select returns with it, and
   * with everything readable before it.
   */
  private lastPollReturned(first: ConnId): void {
    this.handOverLastTurn([first, ...this.readable], first);
  }

  /** The last loop turn hands `conns` over (`first`: dispatched already) and ends: what else waits in the poller is abandoned. */
  private handOverLastTurn(conns: readonly ConnId[], first?: ConnId): void {
    const handed = first === undefined ? [] : [first];
    for (const conn of conns) {
      if (conn !== first && this.host.matches(conn, 'unpolled') && this.host.emitIfAccepted(conn, { type: 'conn.dispatch' })) handed.push(conn);
    }
    this.readable.splice(0, this.readable.length);
    this.lastPollBatch.splice(0, this.lastPollBatch.length);
    this.host.emitIfAccepted(this.id, { type: 'worker.turn-end' });
    for (const conn of handed) this.wantsThread(conn);
  }

  /**
   * A request waits behind the one in progress on `conn` (pipelined, RFC 9112 §9.3.2): the platform
   * holds its bytes and announces it with `requestArrived` once the response before it is written.
   * While a request is handled the connection hears of it once (`conn.bytes`: bytes wait unread) —
   * when it arrives, or when the handler starts with it already there — so that a close resets it
   * where no lingering close discards it, and a policy may answer it rather than close
   * (`servesPipelinedOnDrain`). A platform calls this whenever it holds one — a whole head at least:
   * less is not a request yet, and noted it would leave bytes "unread" that no one announces —; the
   * rest is the driver's.
   */
  requestBehind(conn: ConnId, req: string): void {
    if (!this.host.has(conn)) return;
    this.host.now(() => {
      // Heard of already in this handling (the chart's `unread` is set only by bytes that came meanwhile).
      if (!this.isHandling(conn) || this.host.conn(conn).context.unread) return;
      this.host.emit(conn, { type: 'conn.bytes', req });
    });
  }

  /**
   * The rest of a request announced as partial arrived: it is whole now (its header timer stops), and
   * may be served. A platform calls this once, when the last of its bytes came.
   */
  requestCompleted(conn: ConnId, req: string): void {
    if (!this.host.has(conn)) return;
    this.host.now(() => {
      // Only a request still waiting to be read, and announced as partial: given up on, closed or read, there is nothing to complete.
      const waits = this.host.matches(conn, 'pending') || this.host.matches(conn, 'unpolled');
      const context = this.host.conn(conn).context;
      if (waits && context.pendingPartial && context.pendingReq === req) this.host.emit(conn, { type: 'conn.bytes', req });
      this.wantsThread(conn);
    });
  }

  /** The rest of a request arrived, or the client read its responses again: a pending request may be served now. */
  requestReadable(conn: ConnId): void {
    this.host.now(() => this.wantsThread(conn));
  }

  /** The app is done with a request: write its response with the header the policy says, and free the thread. */
  handlerFinished(conn: ConnId, req: string): void {
    this.host.now(() => {
      // Refused when the connection was aborted meanwhile (the deadline, a kill, an error): the response has nowhere to go.
      if (this.host.has(conn) && this.host.emitIfAccepted(conn, { type: 'conn.handler-finish', req })) {
        const close = responseMustClose(this.host.runtimes.policy, this.host.runtimes.params, this.host.conn(conn).context);
        const status = this.port.respond(conn, req, close);
        this.host.emit(conn, { type: 'conn.respond', req, status, close });
        if (this.host.matches(conn, 'returning') && this.port.returnToPoller(conn)) this.returnNow(conn);
      }
      // The thread is free either way. Refused only by a process that is gone (its threads with it).
      this.host.emitIfAccepted(this.id, { type: 'worker.request-end', conn, req });
      if (this.heartbeatDue) this.heartbeat();
      this.pump();
    });
  }

  /** The pool's done callback handed the answered connection back (see `WorkerPort.returnToPoller`). */
  returned(conn: ConnId): void {
    if (!this.host.has(conn)) return; // closed and forgotten meanwhile
    this.host.now(() => this.returnNow(conn));
  }

  private returnNow(conn: ConnId): void {
    // Refused once the connection left `returning` otherwise (aborted by the exit, reset by the peer).
    if (!this.host.emitIfAccepted(conn, { type: 'conn.returned' })) return;
    if (this.isDraining()) {
      // Kept, and back in the poller after the drain began: the drain's news reaches it there (an idle
      // connection takes it as it enters the poller; one with a request waiting, now)…
      if (this.host.matches(conn, 'unpolled')) this.host.emitIfAccepted(conn, { type: 'conn.drain' });
      // …and a last loop turn that is over already has abandoned it (gthread 20.x: registered in a
      // poller no loop polls any more).
      if (this.host.runtimes.policy.lastLoopTurn && !this.host.matches(this.id, { alive: { draining: 'lastTurn' } })) {
        this.host.emitIfAccepted(conn, { type: 'conn.turn-end' });
      }
    }
    // Back in the poller with the next request already in its buffer: readable now.
    if (this.host.matches(conn, 'unpolled')) this.awaitPoll(conn, 'return');
  }

  /** A readable connection in the poller: handed over at once, or in the ready list until its poll returns. */
  private awaitPoll(conn: ConnId, by: ReadableBy): void {
    if (this.port.watchReadable(conn, by)) this.dispatch(conn);
    else if (!this.readable.includes(conn)) this.readable.push(conn);
  }

  /** The peer closed its sending side (EOF). */
  peerFin(conn: ConnId): void {
    if (!this.host.has(conn)) return; // closed and forgotten
    // Refused by a connection that is closing already and does not wait for the peer.
    this.host.now(() => this.host.emitIfAccepted(conn, { type: 'conn.peer-fin' }));
  }

  /** The peer reset the connection: it is gone, whatever the machine was doing. Returns whether that closed it. */
  peerReset(conn: ConnId): boolean {
    if (!this.host.has(conn)) return false; // closed and forgotten: our own close raced the peer's RST
    let closed = false;
    this.host.now(() => {
      if (!this.host.emitIfAccepted(conn, { type: 'conn.peer-rst' })) return;
      closed = true;
      this.closed(conn);
    });
    return closed;
  }

  /** An unexpected error while handling this connection: it alone is closed. */
  connectionFailed(conn: ConnId): void {
    if (!this.host.has(conn)) return;
    // Every open state takes an abort; a closed connection is forgotten already.
    this.host.now(() => this.host.emit(conn, { type: 'conn.abort', reason: 'error' }));
  }

  // ───────────────────────── what the platform may ask ─────────────────────────

  /** Booted, not ready yet (loading its app). */
  isBooting(): boolean {
    return this.host.matches(this.id, 'booting');
  }

  isDraining(): boolean {
    return this.host.matches(this.id, { alive: 'draining' });
  }

  isServing(): boolean {
    return this.host.matches(this.id, { alive: 'serving' });
  }

  /** SIGSTOPped (its machine took the STOP). */
  isFrozen(): boolean {
    return this.host.matches(this.id, 'frozen');
  }

  hasExited(): boolean {
    return this.host.isDone(this.id);
  }

  openConns(): readonly ConnId[] {
    return this.host.worker(this.id).context.openConns;
  }

  /** Requests in progress (threads busy). */
  busy(): number {
    return this.host.worker(this.id).context.busy;
  }

  /** Open: accepted, and not yet closed (a closed connection is forgotten). */
  isOpen(conn: ConnId): boolean {
    return this.host.has(conn) && !this.host.isDone(conn);
  }

  /** A request is being handled on the connection (a pipelined one waits behind it). */
  isHandling(conn: ConnId): boolean {
    return this.isOpen(conn) && this.host.matches(conn, 'handling');
  }

  /** The connection has a request that has arrived and is not read yet. */
  isPending(conn: ConnId): boolean {
    return this.isOpen(conn) && this.host.matches(conn, 'pending');
  }

  /** A request is outstanding on the connection — arrived (in the poller, or waiting for a thread) or being handled: the next one would wait behind it. */
  hasRequestInProgress(conn: ConnId): boolean {
    return this.isOpen(conn) && (this.host.matches(conn, 'handling') || this.host.matches(conn, 'pending') || this.host.matches(conn, 'unpolled'));
  }

  /** The connection waits for a request (fresh, or kept alive after a response). */
  isIdle(conn: ConnId): boolean {
    return this.isOpen(conn) && this.host.matches(conn, 'idle');
  }

  /** Request bytes sit unread on the connection (a close now would send RST). */
  hasUnread(conn: ConnId): boolean {
    return this.isOpen(conn) && this.host.conn(conn).context.unread;
  }

  /** Connections waiting for a free thread, in arrival order. */
  waitingForThread(): readonly ConnId[] {
    return this.waiting;
  }

  // ───────────────────────── inside ─────────────────────────

  private wantsThread(conn: ConnId): void {
    if (this.host.matches(conn, 'pending') && !this.waiting.includes(conn)) this.waiting.push(conn);
    this.pump();
  }

  private pumping = false;
  private pumpAgain = false;

  /**
   * Give free threads work: connections whose request has arrived, in arrival order. A platform may
   * finish a request from inside `handle` (a refusal needs no app): the pump then runs once more
   * instead of re-entering itself.
   */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    for (let i = 0; i < this.waiting.length; ) {
      const conn = this.waiting[i]!;
      const req = this.isOpen(conn) ? this.host.conn(conn).context.pendingReq : null;
      // No longer pending (orphaned by the drain, closed): it leaves the queue; the machine said so.
      if (req === null || !this.host.matches(conn, 'pending')) {
        this.waiting.splice(i, 1);
        continue;
      }
      // The worker machine says whether a thread is free; the connection machine whether it reads at all.
      if (!this.host.accepts(this.id, { type: 'worker.request-start', conn, req })) return;
      if (!this.host.accepts(conn, { type: 'conn.read', req })) {
        this.waiting.splice(i, 1);
        continue;
      }
      const read = this.port.read(conn, req);
      if (read === null) {
        // Incomplete: the rest brings it back (requestReadable).
        this.waiting.splice(i, 1);
        continue;
      }
      this.waiting.splice(i, 1);
      this.host.emit(conn, { type: 'conn.read', req, keepAlive: read.keepAlive });
      this.host.emit(this.id, { type: 'worker.request-start', conn, req });
      if (this.port.pickUp(conn, req)) this.startHandler(conn, req);
    }
  }

  /** The thread that took `conn`'s request is ready to run the app on it (see `WorkerPort.pickUp`). */
  pickedUp(conn: ConnId, req: string): void {
    this.host.now(() => {
      // Refused when the connection was aborted meanwhile (the deadline, a kill): its thread is free again.
      if (!this.host.has(conn) || !this.host.accepts(conn, { type: 'conn.handler-start', req })) {
        this.host.emitIfAccepted(this.id, { type: 'worker.request-end', conn, req });
        this.pump();
        return;
      }
      this.startHandler(conn, req);
    });
  }

  private startHandler(conn: ConnId, req: string): void {
    // Refused unless this request reached the worker's limit: the chart's guard decides the recycle.
    // gunicorn counts the request and clears `alive` before its handler runs (handle_request:
    // `nr += 1; if nr >= max_requests: alive = False`), so the drain reaches this connection before
    // its handler starts: a policy that fixes the header there answers it `Connection: close`.
    if (this.host.emitIfAccepted(this.id, { type: 'worker.max-requests' })) {
      this.host.settleCommands();
      this.lastTurnBegan('recycle');
    }
    this.host.emit(conn, { type: 'conn.handler-start', req });
    this.port.handle(conn, req);
  }

  /** A connection's socket is closed: the worker forgets it, and may now be free to exit. */
  private closed(conn: ConnId): void {
    this.host.emit(this.id, { type: 'worker.conn-closed', conn });
    const i = this.waiting.indexOf(conn);
    if (i >= 0) this.waiting.splice(i, 1);
    const ready = this.readable.indexOf(conn);
    if (ready >= 0) this.readable.splice(ready, 1);
    // A long-running server would otherwise keep every connection it ever had.
    this.host.forget(conn);
    this.tryExit();
  }

  /** The exit the machine asked for, once every connection is closed: the exit closes the listener copy with the rest. */
  private tryExit(): void {
    // Not before the process is gone: it exits at the end of its teardown, however soon its connections closed.
    if (!this.exitPending || this.tearingDown || this.openConns().length > 0 || this.host.isDone(this.id)) return;
    this.exitPending = false;
    const context = this.host.worker(this.id).context;
    if (context.holdsListener) this.host.emit(this.id, { type: 'worker.close-listener' });
    const code = exitCodeOf(this.host.worker(this.id).context);
    this.host.emit(this.id, { type: 'worker.exit', code });
    // Nothing of this worker asks for anything any more: every connection is closed, the process gone.
    this.host.disown(this.id);
    this.port.exit(code);
  }
}

/** Why a connection was aborted: re-exported for platforms. */
export type { AbortReason };
