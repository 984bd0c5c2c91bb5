/**
 * The network between clients and the server, and the clients' side of each
 * connection: one-way latency, FIN and RST delivery, and what a client's
 * socket reports (connected, a response, EOF, ECONNRESET, a timeout) — the
 * client machine's events. Which server-side mechanism lies behind a client's
 * failure is recorded on its `Link` for the failure's attribution.
 */
import { clientId, type ClientEvent, type ClientFailure, type ClientId, type ConnId, type MachineEvent } from '../model/events.ts';
import { isConnecting } from '../model/views.ts';
import type { Engine } from './engine.ts';
import type { Kernel } from './kernel.ts';

export interface NetworkParams {
  /** One-way latency between client and server. */
  latencyMs: number;
  /** TCP: when the client retransmits a dropped SYN, as offsets from the first attempt; the last is the give-up time. */
  synRetryScheduleMs: readonly number[];
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
  | 'quit'
  | 'deadline'
  | 'killed'
  | 'crashed'
  | 'error'
  | 'peer-closed';

/** One client connection, as the network sees it. */
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
  /** The server's socket is closed (not only half-closed): whatever arrives draws an RST. */
  serverSocketClosed = false;
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

/** What the network delivers to the server's side of a connection. */
export interface ServerSide {
  /** Request bytes reached an accepted connection. */
  requestArrives(link: Link, conn: ConnId, req: string): void;
  /** The client's FIN reached an accepted connection. */
  finArrives(link: Link, conn: ConnId): void;
  /** A connection entered the accept queue: a waiting worker may take it. */
  connectionQueued(): void;
}

export class Network {
  /** Links waiting in the kernel's accept queue, by client: what accept(2) and a reset find. */
  private readonly queued = new Map<ClientId, Link>();
  /** Links whose client is not done yet (for the pair checks). */
  private readonly open = new Set<Link>();
  private nextClient = 1;
  private nextReq = 1;
  private server: ServerSide | null = null;

  constructor(
    readonly engine: Engine,
    private readonly kernel: Kernel,
    private readonly params: NetworkParams,
  ) {
    kernel.onQueuedReset((client) => this.queuedReset(client));
  }

  /** The server this network delivers to. */
  serve(server: ServerSide): void {
    this.server = server;
  }

  get latencyMs(): number {
    return this.params.latencyMs;
  }

  /** Debug: each open link's outstanding request is the one its client's machine awaits. */
  checkPairs(): void {
    for (const link of this.open) {
      if (link.clientDone || !this.engine.has(link.client) || this.engine.isDone(link.client)) continue;
      const awaiting = this.engine.client(link.client).context.req;
      if (awaiting !== link.req) throw new Error(`${link.client}: the network's link awaits ${link.req}, its machine ${awaiting}`);
    }
  }

  /** The link of a client waiting in the accept queue. */
  linkOf(client: ClientId): Link {
    const link = this.queued.get(client);
    if (!link) throw new Error(`no queued link for ${client}`);
    return link;
  }

  /**
   * The client's machine takes what its socket reports. A client whose machine finished is
   * forgotten, and so is its link once the queue no longer holds it: a long run keeps only what is open.
   */
  private clientSees<E extends ClientEvent>(link: Link, event: MachineEvent<E>): void {
    this.engine.emit(link.client, event);
    if (this.engine.isDone(link.client)) {
      this.engine.forget(link.client);
      this.open.delete(link);
    }
  }

  nextRequestId(): string {
    return `r${this.nextReq++}`;
  }

  // ───────────────────────── the client's socket ─────────────────────────

  /** Open a client connection; the owner hears back through its callbacks. */
  connect(owner: LinkOwner): Link {
    const e = this.engine;
    const client = clientId(this.nextClient++);
    const link = new Link(client, owner, e.nowMs);
    this.open.add(link);
    e.now(() => this.clientSees(link, { type: 'client.connect' }));
    e.after(this.params.latencyMs, () => this.synArrives(link, 0));
    return link;
  }

  send(link: Link, req: string, idempotent: boolean, timeoutMs: number): void {
    const e = this.engine;
    e.now(() => {
      this.clientSees(link, { type: 'client.send', req, idempotent });
      link.req = req;
      link.reqDelivered = false;
      if (Number.isFinite(timeoutMs)) link.requestTimer = e.at(timeoutMs, () => this.requestTimesOut(link, req));
      e.after(this.params.latencyMs, () => this.bytesArrive(link, req));
    });
  }

  /** The client closes its connection voluntarily (done with it). */
  close(link: Link): void {
    const e = this.engine;
    e.now(() => {
      if (link.clientDone) return;
      link.clientDone = true;
      this.clientSees(link, { type: 'client.close' });
      this.clientSendsFin(link);
    });
  }

  /** Abandon a connection attempt that is still in progress (a proxy's connect timeout). */
  abandonConnect(link: Link, reason: ClientFailure): void {
    this.connectFails(link, reason);
  }

  // ───────────────────────── connecting ─────────────────────────

  private synArrives(link: Link, attempt: number): void {
    const e = this.engine;
    const outcome = this.kernel.syn(link.client);
    if (outcome === 'refused') {
      e.after(this.params.latencyMs, () => this.connectFails(link, 'refused'));
      return;
    }
    if (outcome === 'queued') {
      this.queued.set(link.client, link);
      e.after(this.params.latencyMs, () => {
        if (link.queuedReset || link.clientDone) return;
        this.clientSees(link, { type: 'client.connected' });
        link.owner.onConnected(link);
      });
      this.server?.connectionQueued();
      return;
    }
    if (this.kernel.family() === 'unix') {
      // AF_UNIX: a non-blocking connect() on a full queue fails at once with EAGAIN.
      this.connectFails(link, 'eagain');
      return;
    }
    // TCP: the SYN is dropped; the client retransmits on its backoff schedule.
    const schedule = this.params.synRetryScheduleMs;
    const nextAt = schedule[attempt];
    const giveUpAt = schedule[schedule.length - 1]!;
    const sinceStart = e.nowMs - link.connectedAtMs;
    if (nextAt === undefined || attempt >= schedule.length - 1) {
      e.after(Math.max(0, giveUpAt - sinceStart), () => this.connectFails(link, 'connect-timeout'));
      return;
    }
    e.after(Math.max(0, nextAt - sinceStart), () => {
      if (link.clientDone) return;
      link.synRetries = attempt + 1;
      this.clientSees(link, { type: 'client.syn-retry', attempt: attempt + 1 });
      e.after(this.params.latencyMs, () => this.synArrives(link, attempt + 1));
    });
  }

  private connectFails(link: Link, reason: ClientFailure): void {
    if (link.clientDone) return;
    link.clientDone = true;
    this.clientSees(link, this.failure(link, reason));
    link.owner.onFailure(link, reason, null);
  }

  private queuedReset(client: ClientId): void {
    const link = this.queued.get(client);
    if (!link) return;
    this.queued.delete(client);
    link.queuedReset = true;
    this.engine.after(this.params.latencyMs, () => this.rstArrives(link));
  }

  // ───────────────────────── data ─────────────────────────

  /** The server accepted the connection: what the client sent meanwhile (a request, a FIN) is read now. */
  accepted(link: Link, conn: ConnId): void {
    this.queued.delete(link.client);
    link.conn = conn;
    if (link.bufferedReq !== null) {
      const req = link.bufferedReq;
      link.bufferedReq = null;
      this.deliver(link, conn, req);
    }
    if (link.clientClosedSent) this.server?.finArrives(link, conn);
  }

  private bytesArrive(link: Link, req: string): void {
    if (link.conn === null) {
      if (!link.queuedReset) link.bufferedReq = req;
      return;
    }
    this.deliver(link, link.conn, req);
  }

  private deliver(link: Link, conn: ConnId, req: string): void {
    if (link.serverSocketClosed) return; // a closed socket: the kernel answers with RST; the client has seen our FIN or RST already
    // Lingering: the server discards what still comes; it was not delivered to anyone.
    link.reqDelivered = !link.serverClosed;
    this.server?.requestArrives(link, conn, req);
  }

  private clientSendsFin(link: Link): void {
    if (link.clientClosedSent) return;
    link.clientClosedSent = true;
    this.engine.after(this.params.latencyMs, () => {
      if (link.conn === null) return; // still queued: the FIN waits; accept() will see it
      this.server?.finArrives(link, link.conn);
    });
  }

  // ───────────────────────── from the server ─────────────────────────

  /** The server wrote a response; it reaches the client after the latency. */
  respond(link: Link, req: string, close: boolean): void {
    link.lastResponseWrittenAtMs = this.engine.nowMs;
    this.engine.after(this.params.latencyMs, () => this.responseArrives(link, req, close));
  }

  /** The server closed its side: FIN (or RST with `rst`) reaches the client after the latency. */
  serverCloses(link: Link, rst: boolean, cause: ServerCloseCause): void {
    link.serverCloseCause ??= cause;
    link.serverClosedWithFin = !link.serverClosed && !rst;
    link.serverClosed = true;
    link.serverSocketClosed = true;
    link.serverCloseRst = rst;
    this.engine.after(this.params.latencyMs, () => (rst ? this.rstArrives(link) : this.finArrives(link)));
  }

  /** The server half-closed (lingering close): its FIN reaches the client; it keeps reading and discarding. */
  serverHalfCloses(link: Link, cause: ServerCloseCause): void {
    link.serverCloseCause ??= cause;
    link.serverClosed = true;
    this.engine.after(this.params.latencyMs, () => this.finArrives(link));
  }

  private responseArrives(link: Link, req: string, close: boolean): void {
    const e = this.engine;
    if (link.clientDone || link.req !== req) return;
    if (link.requestTimer) link.requestTimer.cancelled = true;
    link.req = null;
    link.responses++;
    this.clientSees(link, { type: 'client.response', req, status: 200, close });
    link.owner.onResponse(link, req, 200, close);
  }

  private finArrives(link: Link): void {
    const e = this.engine;
    if (link.clientDone) return;
    const req = link.req;
    link.clientDone = true;
    if (req !== null && this.params.loopback && link.serverClosedWithFin && !link.reqDelivered) {
      // The request left after our close: it meets a closed socket and draws an RST, which on loopback is
      // back before the client polls again. The client sees the EOF and the error together (Linux: EPIPE
      // in CLOSE_WAIT, poll gives POLLHUP|POLLERR), not the clean EOF of an idle close.
      if (link.requestTimer) link.requestTimer.cancelled = true;
      this.clientSees(link, this.failure(link, 'reset', req));
      this.clientSendsFin(link);
      link.owner.onFailure(link, 'reset', req);
      return;
    }
    if (req !== null) {
      if (link.requestTimer) link.requestTimer.cancelled = true;
      this.clientSees(link, this.failure(link, 'empty-reply', req));
      this.clientSendsFin(link);
      link.owner.onFailure(link, 'empty-reply', req);
      return;
    }
    this.clientSees(link, { type: 'client.eof' });
    // The client's machine may be closing already (after a Connection: close response it closes itself).
    if (this.engine.has(link.client) && !e.isDone(link.client)) this.clientSees(link, { type: 'client.close' });
    this.clientSendsFin(link);
    link.owner.onIdleClosed(link);
  }

  private rstArrives(link: Link): void {
    const e = this.engine;
    if (link.clientDone) return;
    link.clientDone = true;
    const req = link.req;
    if (link.requestTimer) link.requestTimer.cancelled = true;
    if (isConnecting(e, link.client)) {
      this.clientSees(link, this.failure(link, 'reset'));
      link.owner.onFailure(link, 'reset', null);
      return;
    }
    if (req !== null) {
      this.clientSees(link, this.failure(link, 'reset', req));
      link.owner.onFailure(link, 'reset', req);
      return;
    }
    this.clientSees(link, this.failure(link, 'reset'));
    link.owner.onIdleClosed(link);
  }

  private requestTimesOut(link: Link, req: string): void {
    const e = this.engine;
    if (link.clientDone || link.req !== req) return;
    link.clientDone = true;
    this.clientSees(link, this.failure(link, 'timeout', req));
    this.clientSendsFin(link);
    link.owner.onFailure(link, 'timeout', req);
  }

  /** The client's failure event, with what a proxy answered downstream. */
  private failure(link: Link, reason: ClientFailure, req?: string): MachineEvent<ClientEvent & { type: 'client.fail' }> {
    const status = link.owner.downstreamStatus?.(reason);
    return { type: 'client.fail', reason, ...(req !== undefined ? { req } : {}), ...(status !== undefined ? { status } : {}) };
  }
}
