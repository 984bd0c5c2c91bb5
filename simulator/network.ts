/**
 * The network between clients and the server, and the clients' side of each
 * connection: one-way latency, FIN and RST delivery, and what a client's
 * socket reports (connected, a response, EOF, ECONNRESET, a timeout) — the
 * client machine's events. Which server-side mechanism lies behind a client's
 * failure is recorded on its `Link` for the failure's attribution.
 */
import { clientId, type ClientEvent, type ClientFailure, type ClientId, type ConnId, type MachineEvent } from '../model/events.ts';
import type { ActorHost } from '../model/host.ts';
import { isConnecting } from '../model/views.ts';
import type { Kernel } from './kernel.ts';
import { dispatchItem, type ItemHandlers, type NetworkItem, type PlatformItem, type Wire } from './platform.ts';

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
  /**
   * The client's turnaround: from a response on the wire to its next request on the wire, less the
   * round trip the network carries itself (measured: a capture of ab under the calibration load). The
   * client notices the response that much later; what the server sends after it (its FIN, an RST) is
   * noticed after it, in order. ab then writes its next request at once (read_connection: a complete
   * keep-alive response → write_request), so a FIN that came meanwhile is seen only after the request
   * left. Absent: the client notices at once.
   */
  clientTurnaroundMs?: () => number;
  /**
   * The client's own CPU for each response it reads (ab: one process, one thread), where the CPU is
   * shared (simulator/cpu.ts): it takes its share of the cores from the server. Its delay to the next
   * request (tens of µs) is not added to the response's path.
   */
  clientWork?: () => void;
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
  /** The request awaiting a response (the oldest unanswered), and whether it reached an open server connection. */
  req: string | null = null;
  reqDelivered = false;
  /** Requests sent behind `req` (pipelined), oldest first, each with whether it reached an open server connection. */
  pipelined: { req: string; delivered: boolean }[] = [];
  /** Sent before the server accepted the connection: they wait in the socket buffer, in order. */
  bufferedReqs: { req: string; partial: boolean }[] = [];
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
  /** The client reset the connection (an abortive close): its RST is on its way, or has arrived. */
  clientReset = false;
  /** The client does not notice the server's close (it is not reading): no FIN of its own follows it. */
  keepsOpen = false;
  requestTimer: { cancelled: boolean } | null = null;
  lastResponseWrittenAtMs = -1;
  /** When request bytes last reached the server's socket (a measured poll wait counts from there). */
  lastBytesArrivedAtMs = -1;
  /** With a client turnaround: when the last item the server sent reaches the client (what follows it comes no earlier). */
  toClientAtMs = -1;
  /** Items in flight that name this link: it is kept until they have arrived. */
  inFlight = 0;
  readonly connectedAtMs: number;

  constructor(
    readonly client: ClientId,
    readonly owner: LinkOwner,
    nowMs: number,
  ) {
    this.connectedAtMs = nowMs;
  }

  /** A copy with the same owner (the explorer's snapshots). A client's own timer does not survive a copy. */
  copy(): Link {
    const link = new Link(this.client, this.owner, this.connectedAtMs);
    Object.assign(link, this);
    link.pipelined = this.pipelined.map((p) => ({ ...p }));
    link.bufferedReqs = this.bufferedReqs.map((b) => ({ ...b }));
    link.requestTimer = null;
    return link;
  }
}

/** The network's state, as data (the explorer's snapshots). */
export interface NetworkState {
  readonly links: readonly Link[];
  readonly queued: readonly ClientId[];
  readonly open: readonly ClientId[];
  readonly nextClient: number;
  readonly nextReq: number;
}

/** What the network delivers to the server's side of a connection. */
export interface ServerSide {
  /** Request bytes reached an accepted connection: the whole request (or its rest), or only part of it (`partial`). */
  requestArrives(link: Link, conn: ConnId, req: string, partial: boolean): void;
  /** The client's FIN reached an accepted connection. */
  finArrives(link: Link, conn: ConnId): void;
  /** The client's RST reached an accepted connection: the server's socket is gone. */
  rstArrives(link: Link, conn: ConnId): void;
  /** A connection entered the accept queue: a waiting worker may take it. */
  connectionQueued(): void;
}

export class Network {
  /** Every link something may still reach (a packet in flight, the accept queue, an open client), by client. */
  private readonly links = new Map<ClientId, Link>();
  /** Links waiting in the kernel's accept queue, by client: what accept(2) and a reset find. */
  private readonly queued = new Map<ClientId, Link>();
  /** Links whose client is not done yet (for the pair checks). */
  private readonly open = new Set<Link>();
  private nextClient = 1;
  private nextReq = 1;
  private server: ServerSide | null = null;

  constructor(
    readonly host: ActorHost,
    private readonly kernel: Kernel,
    private readonly params: NetworkParams,
    private readonly wire: Wire,
  ) {
    kernel.onQueuedReset((client) => this.queuedReset(client));
  }

  // ───────────────────────── items ─────────────────────────

  /** Put an item naming `link` on the wire. */
  private schedule(link: Link, delayMs: number, item: PlatformItem): void {
    // The server may still write to a link the network forgot (its client is done): the item is void,
    // but it comes back here, so the link is kept until it has.
    this.links.set(link.client, link);
    link.inFlight++;
    this.wire.after(delayMs, item);
  }

  /**
   * What the server sent on an open connection: with a client turnaround, no earlier than what it sent
   * before (a response the client notices late is still noticed before the FIN behind it).
   */
  private scheduleToClient(link: Link, delayMs: number, item: PlatformItem): void {
    if (!this.params.clientTurnaroundMs) return this.schedule(link, delayMs, item);
    const nowMs = this.host.nowMs;
    let inOrderMs = Math.max(delayMs, link.toClientAtMs - nowMs);
    // now + (t − now) can round below t: step up until it does not (the queue breaks ties by insertion).
    while (nowMs + inOrderMs < link.toClientAtMs) inOrderMs += Number.EPSILON * Math.max(1, inOrderMs);
    link.toClientAtMs = nowMs + inOrderMs;
    this.schedule(link, inOrderMs, item);
  }

  /** What each kind of item does to its link (built once: see `ItemHandlers`). */
  private readonly handlers: ItemHandlers<NetworkItem, Link> = {
    syn: (i, link) => this.synArrives(link, i.attempt),
    'syn-ack': (_i, link) => this.synAcked(link),
    'syn-retry': (i, link) => this.synRetried(link, i.attempt),
    'connect-fail': (i, link) => this.connectFails(link, i.reason),
    bytes: (i, link) => this.bytesArrive(link, i.req, i.partial === true),
    'client-fin': (_i, link) => this.clientFinArrives(link),
    'client-rst': (_i, link) => this.clientRstArrives(link),
    response: (i, link) => this.responseArrives(link, i.req, i.close, i.status),
    'server-fin': (_i, link) => this.finArrives(link),
    rst: (_i, link) => this.rstArrives(link),
    'request-timeout': (i, link) => this.requestTimesOut(link, i.req),
  };

  /** An item of the network's came due. */
  arrive(item: NetworkItem): void {
    const link = this.links.get(item.client);
    if (!link) {
      // A client's own timer outlives a link forgotten after a voluntary close: nothing is left to time out.
      if (item.kind === 'request-timeout') return;
      throw new Error(`no link for ${item.client}, which an item in flight names`);
    }
    if (item.kind !== 'request-timeout') link.inFlight--;
    dispatchItem(this.handlers, item, link);
    this.maybeForget(link);
  }

  /** A link nothing can reach any more is forgotten: a long run keeps only what is open or in flight. */
  private maybeForget(link: Link): void {
    // A client that did not notice the server's close may still write: kept while the server's socket is.
    if (link.keepsOpen && !link.serverSocketClosed) return;
    if (link.clientDone && link.inFlight === 0 && !this.queued.has(link.client) && !this.open.has(link)) this.links.delete(link.client);
  }

  /** The link of a client, while something may still reach it. */
  link(client: ClientId): Link | undefined {
    return this.links.get(client);
  }

  // ───────────────────────── snapshots (the explorer) ─────────────────────────

  state(): NetworkState {
    return {
      links: [...this.links.values()].map((link) => link.copy()),
      queued: [...this.queued.keys()],
      open: [...this.open].map((link) => link.client),
      nextClient: this.nextClient,
      nextReq: this.nextReq,
    };
  }

  /** The state as key lines (the explorer's visited set), without copying it. */
  keyParts(out: string[], linkKey: (link: Link) => string): void {
    for (const link of this.links.values()) out.push(`L ${linkKey(link)}`);
    out.push(`Q ${[...this.queued.keys()].join(',')}`);
    out.push(`O ${[...this.open].map((link) => link.client).sort().join(',')}`);
  }

  /** Load a state into this (new) network: its links are copies, so the state can be loaded again. */
  load(state: NetworkState): void {
    for (const saved of state.links) this.links.set(saved.client, saved.copy());
    for (const client of state.queued) this.queued.set(client, this.links.get(client)!);
    for (const client of state.open) this.open.add(this.links.get(client)!);
    this.nextClient = state.nextClient;
    this.nextReq = state.nextReq;
  }

  /** The server this network delivers to. */
  serve(server: ServerSide): void {
    this.server = server;
  }

  get latencyMs(): number {
    return this.params.latencyMs;
  }

  /** Debug: each open link's outstanding requests are the ones its client's machine awaits, in the same order. */
  checkPairs(): void {
    for (const link of this.open) {
      if (link.clientDone || !this.host.has(link.client) || this.host.isDone(link.client)) continue;
      const context = this.host.client(link.client).context;
      const machine = [context.req, ...context.pipelined].join(',');
      const network = [link.req, ...link.pipelined.map((p) => p.req)].join(',');
      if (machine !== network) throw new Error(`${link.client}: the network's link awaits [${network}], its machine [${machine}]`);
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
    this.host.emit(link.client, event);
    if (this.host.isDone(link.client)) {
      this.host.forget(link.client);
      this.open.delete(link);
    }
  }

  nextRequestId(): string {
    return `r${this.nextReq++}`;
  }

  // ───────────────────────── the client's socket ─────────────────────────

  /** Open a client connection; the owner hears back through its callbacks. */
  connect(owner: LinkOwner): Link {
    const h = this.host;
    const client = clientId(this.nextClient++);
    const link = new Link(client, owner, h.nowMs);
    this.links.set(client, link);
    this.open.add(link);
    h.now(() => this.clientSees(link, { type: 'client.connect' }));
    this.schedule(link, this.params.latencyMs, { kind: 'syn', client, attempt: 0 });
    return link;
  }

  /**
   * Send a request. With one outstanding already it is pipelined behind it (RFC 9112 §9.3.2); only a
   * client without a response timeout pipelines (the timer is the oldest request's).
   */
  send(link: Link, req: string, idempotent: boolean, timeoutMs: number, partial = false): void {
    this.host.now(() => {
      this.clientSees(link, { type: 'client.send', req, idempotent });
      if (link.req !== null) {
        if (Number.isFinite(timeoutMs)) throw new Error(`${link.client}: a pipelined request (${req}) with a response timeout; only clients without one pipeline`);
        link.pipelined.push({ req, delivered: false });
      } else {
        link.req = req;
        link.reqDelivered = false;
        if (Number.isFinite(timeoutMs)) link.requestTimer = this.wire.at(timeoutMs, { kind: 'request-timeout', client: link.client, req });
      }
      this.schedule(link, this.params.latencyMs, partial ? { kind: 'bytes', client: link.client, req, partial } : { kind: 'bytes', client: link.client, req });
    });
  }

  /** The rest of a request sent partial: the client's machine sent it already; these bytes complete it. */
  sendRest(link: Link, req: string): void {
    this.host.now(() => this.schedule(link, this.params.latencyMs, { kind: 'bytes', client: link.client, req }));
  }

  /** The client closes its connection voluntarily (done with it). */
  close(link: Link): void {
    this.host.now(() => {
      if (link.clientDone) return;
      link.clientDone = true;
      this.clientSees(link, { type: 'client.close' });
      this.clientSendsFin(link);
      this.maybeForget(link);
    });
  }

  /** Bytes of a client that did not notice the server's close: they go out; its machine, which ended, sees nothing. */
  sendUnseen(link: Link, req: string): void {
    this.host.now(() => this.schedule(link, this.params.latencyMs, { kind: 'bytes', client: link.client, req }));
  }

  /**
   * The client half-closes (shutdown(SHUT_WR)): its FIN goes out, and it still reads what comes — the
   * response it awaits, the server's close. Its machine sees nothing of it: it sends nothing more.
   */
  halfClose(link: Link): void {
    this.host.now(() => {
      if (link.clientDone) return;
      this.clientSendsFin(link);
    });
  }

  /**
   * The client resets its connection (close with SO_LINGER 0): no FIN, an RST; whatever the server
   * still sends is answered with RST by the client's kernel, and the client sees nothing more.
   */
  reset(link: Link): void {
    this.host.now(() => {
      if (link.clientDone) return;
      link.clientDone = true;
      link.clientClosedSent = true; // no FIN will follow: the socket is gone
      link.clientReset = true;
      if (link.requestTimer) link.requestTimer.cancelled = true;
      this.clientSees(link, { type: 'client.close' });
      this.schedule(link, this.params.latencyMs, { kind: 'client-rst', client: link.client });
      this.maybeForget(link);
    });
  }

  /** Abandon a connection attempt that is still in progress (a proxy's connect timeout). */
  abandonConnect(link: Link, reason: ClientFailure): void {
    this.connectFails(link, reason);
    this.maybeForget(link);
  }

  /** The listening socket's family: TCP, or AF_UNIX (whose connect fails at once, where TCP's comes back through poll). */
  family(): 'tcp' | 'unix' {
    return this.kernel.family();
  }

  // ───────────────────────── connecting ─────────────────────────

  private synArrives(link: Link, attempt: number): void {
    const outcome = this.kernel.syn(link.client);
    if (outcome === 'refused') {
      this.schedule(link, this.params.latencyMs, { kind: 'connect-fail', client: link.client, reason: 'refused' });
      return;
    }
    if (outcome === 'queued') {
      this.queued.set(link.client, link);
      this.schedule(link, this.params.latencyMs, { kind: 'syn-ack', client: link.client });
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
    const sinceStart = this.host.nowMs - link.connectedAtMs;
    if (nextAt === undefined || attempt >= schedule.length - 1) {
      this.schedule(link, Math.max(0, giveUpAt - sinceStart), { kind: 'connect-fail', client: link.client, reason: 'connect-timeout' });
      return;
    }
    this.schedule(link, Math.max(0, nextAt - sinceStart), { kind: 'syn-retry', client: link.client, attempt: attempt + 1 });
  }

  private synAcked(link: Link): void {
    if (link.queuedReset || link.clientDone) return;
    this.clientSees(link, { type: 'client.connected' });
    link.owner.onConnected(link);
  }

  private synRetried(link: Link, attempt: number): void {
    if (link.clientDone) return;
    link.synRetries = attempt;
    this.clientSees(link, { type: 'client.syn-retry', attempt });
    this.schedule(link, this.params.latencyMs, { kind: 'syn', client: link.client, attempt });
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
    this.schedule(link, this.params.latencyMs, { kind: 'rst', client });
  }

  // ───────────────────────── data ─────────────────────────

  /** The server accepted the connection: what the client sent meanwhile (a request, a FIN) is read now. */
  accepted(link: Link, conn: ConnId): void {
    this.queued.delete(link.client);
    link.conn = conn;
    for (const { req, partial } of link.bufferedReqs.splice(0)) this.deliver(link, conn, req, partial);
    // Linux keeps a connection reset in the accept queue there: accept() returns it, and its first read fails.
    if (link.clientReset) this.server?.rstArrives(link, conn);
    else if (link.clientClosedSent) this.server?.finArrives(link, conn);
    this.maybeForget(link);
  }

  private bytesArrive(link: Link, req: string, partial: boolean): void {
    if (link.conn === null) {
      if (!link.queuedReset) link.bufferedReqs.push({ req, partial });
      return;
    }
    this.deliver(link, link.conn, req, partial);
  }

  private deliver(link: Link, conn: ConnId, req: string, partial: boolean): void {
    if (link.serverSocketClosed) return; // a closed socket: the kernel answers with RST; the client has seen our FIN or RST already
    // Lingering: the server discards what still comes; it was not delivered to anyone.
    if (req === link.req) link.reqDelivered = !link.serverClosed;
    const behind = link.pipelined.find((p) => p.req === req);
    if (behind) behind.delivered = !link.serverClosed;
    link.lastBytesArrivedAtMs = this.host.nowMs;
    this.server?.requestArrives(link, conn, req, partial);
  }

  private clientSendsFin(link: Link): void {
    if (link.clientClosedSent) return;
    link.clientClosedSent = true;
    this.schedule(link, this.params.latencyMs, { kind: 'client-fin', client: link.client });
  }

  private clientFinArrives(link: Link): void {
    if (link.conn === null) return; // still queued: the FIN waits; accept() will see it
    this.server?.finArrives(link, link.conn);
  }

  private clientRstArrives(link: Link): void {
    // Still queued: accept() will see it. A socket the server closed already: nothing left to reset.
    if (link.conn === null || link.serverSocketClosed) return;
    this.server?.rstArrives(link, link.conn);
  }

  // ───────────────────────── from the server ─────────────────────────

  /** The server wrote a response; it reaches the client after the latency. */
  respond(link: Link, req: string, close: boolean, status = 200): void {
    link.lastResponseWrittenAtMs = this.host.nowMs;
    this.params.clientWork?.();
    const turnaroundMs = this.params.clientTurnaroundMs?.() ?? 0;
    this.scheduleToClient(link, this.params.latencyMs + turnaroundMs, { kind: 'response', client: link.client, req, close, status });
  }

  /** The server closed its side: FIN (or RST with `rst`) reaches the client after the latency. */
  serverCloses(link: Link, rst: boolean, cause: ServerCloseCause): void {
    link.serverCloseCause ??= cause;
    link.serverClosedWithFin = !link.serverClosed && !rst;
    link.serverClosed = true;
    link.serverSocketClosed = true;
    link.serverCloseRst = rst;
    this.scheduleToClient(link, this.params.latencyMs, rst ? { kind: 'rst', client: link.client } : { kind: 'server-fin', client: link.client });
  }

  /** The client's RST closed the server's socket: nothing goes out on it any more (no FIN, no RST). */
  serverSocketGone(link: Link): void {
    link.serverClosed = true;
    link.serverSocketClosed = true;
  }

  /** The server half-closed (lingering close): its FIN reaches the client; it keeps reading and discarding. */
  serverHalfCloses(link: Link, cause: ServerCloseCause): void {
    link.serverCloseCause ??= cause;
    link.serverClosed = true;
    this.scheduleToClient(link, this.params.latencyMs, { kind: 'server-fin', client: link.client });
  }

  private responseArrives(link: Link, req: string, close: boolean, status: number): void {
    if (link.clientDone || link.req !== req) return;
    if (link.requestTimer) link.requestTimer.cancelled = true;
    // The next pipelined request is the one awaited now.
    const next = link.pipelined.shift();
    link.req = next?.req ?? null;
    link.reqDelivered = next?.delivered ?? false;
    link.responses++;
    this.clientSees(link, { type: 'client.response', req, status, close });
    link.owner.onResponse(link, req, status, close);
  }

  private finArrives(link: Link): void {
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
    if (this.host.has(link.client) && !this.host.isDone(link.client)) this.clientSees(link, { type: 'client.close' });
    if (!link.keepsOpen) this.clientSendsFin(link);
    link.owner.onIdleClosed(link);
  }

  private rstArrives(link: Link): void {
    if (link.clientDone) return;
    link.clientDone = true;
    const req = link.req;
    if (link.requestTimer) link.requestTimer.cancelled = true;
    if (isConnecting(this.host, link.client)) {
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
