/**
 * Client models. Each drives connections through the World and keeps the
 * counts its real counterpart prints.
 *
 * ApacheBench (httpd support/ab.c, 2.4 — Debian's and the seed's): C
 * concurrent slots, closed loop, N requests. With -k a slot reuses its
 * connection while responses say keep-alive. A lost exchange is counted as
 * done (never sent again) and adds to "Failed requests" once per counter it
 * touches — Receive, Length, Exceptions — so one RST counts up to three
 * times (see countAbFailure). A failed connect counts under Connect; once
 * more than 10 have failed, the next failed connect aborts ab ("Test aborted
 * after 10 failures"). `-s` bounds each apr_pollset_poll(): ab times out only
 * when no connection at all shows activity for that long, and then exits at
 * once ("apr_pollset_poll: The timeout specified has expired (70007)"); the
 * requests still outstanding are lost. (httpd trunk also forgives an EOF or
 * RST on a kept-alive connection; 2.4 does not: its excuse for "the server
 * closed an idle keep-alive connection" tests a flag it has already reset.)
 */
import { match } from 'ts-pattern';
import type { ClientFailure, ClientId } from '../model/events.ts';
import { isStale } from '../model/views.ts';
import { LatencyHistogram } from './stats.ts';
import type { ActorHost } from '../model/host.ts';
import { SimulationInvariantError, type Engine } from './engine.ts';
import type { Link, LinkOwner, Network } from './network.ts';

export type FailureMechanism =
  | 'idle-close-race'
  | 'close-after-keepalive-response'
  | 'unread-request-reset'
  | 'queued-at-close'
  | 'backlog-overflow'
  | 'syn-timeout'
  | 'listener-refused'
  | 'graceful-timeout-kill'
  | 'fast-stop'
  | 'stale-hang'
  | 'client-timeout'
  | 'accept-starved';

export const MECHANISM_DESCRIPTIONS: Record<FailureMechanism, string> = {
  'idle-close-race': 'request sent on an idle keep-alive connection as the server closed it (never processed)',
  'close-after-keepalive-response': 'response said keep-alive, the server closed right after; the next request was lost',
  'unread-request-reset': 'request reached the server but was never read; the close sent RST',
  'queued-at-close': 'connection still in the accept queue when the last listener copy closed (RST)',
  'backlog-overflow': 'accept queue full: EAGAIN at once over a unix socket (nginx 502)',
  'syn-timeout': 'accept queue full over TCP: SYNs dropped until the client or proxy gave up',
  'listener-refused': 'connect after the listener closed (ECONNREFUSED)',
  'graceful-timeout-kill': 'the graceful deadline or a kill closed the connection mid-request',
  'fast-stop': 'a fast stop (QUIT/INT) closed the connection at once',
  'stale-hang': 'request sat on a keep-alive socket nobody reads until the client timed out',
  'client-timeout': 'the client gave up waiting for a slow response',
  'accept-starved': 'connection waited in the accept queue, no worker accepting, until the client gave up',
};

export interface FailureRecord {
  /** The client that failed: a timeline labels its failure with the mechanism. */
  readonly client: ClientId;
  readonly atMs: number;
  readonly mechanism: FailureMechanism;
  readonly reason: ClientFailure;
  readonly processed: boolean;
}

/** Attribute a client-observed failure to the server-side mechanism behind it. */
export function classifyFailure(engine: ActorHost, link: Link, reason: ClientFailure, processed: boolean): FailureMechanism {
  return match(reason)
    .with('eagain', () => 'backlog-overflow' as const)
    .with('connect-timeout', () => 'syn-timeout' as const)
    .with('refused', () => 'listener-refused' as const)
    .with('timeout', (): FailureMechanism => {
      const conn = link.conn;
      if (conn && isStale(engine, conn)) return 'stale-hang';
      if (link.conn === null) return link.synRetries > 0 ? 'syn-timeout' : 'accept-starved';
      return 'client-timeout';
    })
    .with('reset', 'empty-reply', (): FailureMechanism => {
      if (link.queuedReset) return 'queued-at-close';
      const cause = link.serverCloseCause;
      if (cause === 'deadline' || cause === 'killed' || cause === 'crashed') return 'graceful-timeout-kill';
      if (cause === 'quit') return 'fast-stop';
      if (link.reqDelivered && !processed) return 'unread-request-reset';
      if (cause === 'after-response') return 'close-after-keepalive-response';
      if (link.reqDelivered && processed) return 'graceful-timeout-kill';
      return 'idle-close-race';
    })
    .exhaustive();
}

/**
 * How ab 2.4 counts one lost exchange (support/ab.c). After a keep-alive
 * response it resets `c->keepalive` and `c->read`, so close_connection's
 * excuse for "the server closed an idle keep-alive connection" never applies:
 *   - an EOF reaches close_connection with 0 body bytes, not the expected length: Length;
 *   - an RST: recv fails with ECONNRESET, a Receive error under -r; then close_connection's
 *     Length; and the poll that reported it also said POLLERR: Exceptions — three;
 *   - an RST after the server's FIN (EPIPE in CLOSE_WAIT): recv returns the EOF, so Length,
 *     plus the POLLERR's Exceptions — two;
 *   - a failed connect: Connect.
 * "Failed requests" is their sum. (It assumes the first response succeeded: that sets the expected length.)
 */
export function abFailureCounts(reason: ClientFailure, rstAfterFin: boolean): { receive: number; length: number; exceptions: number; connect: number } {
  return match(reason)
    .with('reset', () => ({ receive: rstAfterFin ? 0 : 1, length: 1, exceptions: 1, connect: 0 }))
    .with('empty-reply', () => ({ receive: 0, length: 1, exceptions: 0, connect: 0 }))
    .with('eagain', 'refused', 'connect-timeout', () => ({ receive: 0, length: 0, exceptions: 0, connect: 1 }))
    .with('timeout', () => ({ receive: 0, length: 0, exceptions: 1, connect: 0 }))
    .exhaustive();
}

export interface ClientStats {
  total: number;
  ok: number;
  failed: number;
  ab: { failed: number; connect: number; receive: number; length: number; exceptions: number };
  /** What a proxy in front returned downstream. */
  statuses: Record<string, number>;
  byMechanism: Partial<Record<FailureMechanism, { count: number; firstMs: number; lastMs: number; processed: number }>>;
  /** Each exchange's latency, send to outcome (a streaming histogram). */
  latency: LatencyHistogram;
  /** The client stopped early, with the message it prints (ab's fatal errors). */
  aborted: string | null;
  /** The first MAX_FAILURE_RECORDS failures, each with its mechanism (the counts above count them all). */
  records: FailureRecord[];
}

/** Failure records kept per run: enough for any timeline, bounded for million-request runs. */
export const MAX_FAILURE_RECORDS = 10_000;

export function emptyStats(): ClientStats {
  return { total: 0, ok: 0, failed: 0, ab: { failed: 0, connect: 0, receive: 0, length: 0, exceptions: 0 }, statuses: {}, byMechanism: {}, latency: new LatencyHistogram(), aborted: null, records: [] };
}

function recordFailure(stats: ClientStats, record: FailureRecord): void {
  stats.failed++;
  if (stats.records.length < MAX_FAILURE_RECORDS) stats.records.push(record);
  const m = (stats.byMechanism[record.mechanism] ??= { count: 0, firstMs: record.atMs, lastMs: record.atMs, processed: 0 });
  m.count++;
  m.lastMs = record.atMs;
  if (record.processed) m.processed++;
}

/**
 * Which requests the server started handling: a failed one of these was processed-but-lost. A
 * request leaves the set when its exchange ends, so the set holds only what is in flight.
 */
export class ProcessedRequests {
  readonly started = new Set<string>();

  /** Whether the server had started this request, now that its exchange is over. */
  settle(req: string | null): boolean {
    if (req === null) return false;
    return this.started.delete(req);
  }
}

export interface AbOptions {
  requests: number;
  concurrency: number;
  keepAlive: boolean;
  timeoutMs: number;
  thinkMs?: number;
}

export class ApacheBench implements LinkOwner {
  readonly stats = emptyStats();
  private issued = 0;
  private finished = 0;
  /** Why ab stopped early, as it prints it; null while it runs or when it completed. */
  abortedWith: string | null = null;
  private lastActivityMs = 0;
  /** Activity count: the poll timeout fires only if nothing happened since it was armed (no float comparisons). */
  private activityEpoch = 0;
  private pollTimerArmed = false;
  private readonly outstanding = new Set<Link>();
  /**
   * Each outstanding request's start, as ab times it (`c->start`): its connect's start for the first
   * request of a connection, the previous response's end for a kept-alive one — where ab writes it.
   */
  private readonly sentAt = new Map<string, number>();
  /** A connection's connect start, until its first request takes it. */
  private readonly connectStartedAt = new Map<Link, number>();
  private readonly slotOf = new WeakMap<Link, number>();
  onDone: () => void = () => {};

  constructor(
    private readonly engine: Engine,
    private readonly network: Network,
    private readonly options: AbOptions,
    private readonly processed: ProcessedRequests,
  ) {}

  start(): void {
    this.lastActivityMs = this.engine.nowMs;
    for (let slot = 0; slot < this.options.concurrency; slot++) this.open(slot);
  }

  get done(): boolean {
    return this.abortedWith !== null || this.finished >= this.options.requests;
  }

  private activity(): void {
    this.lastActivityMs = this.engine.nowMs;
    this.activityEpoch++;
  }

  /** Arm ab's poll timeout while requests are outstanding: it fires when -s passes with no activity at all. */
  private armPollTimeout(): void {
    if (this.pollTimerArmed || !Number.isFinite(this.options.timeoutMs) || this.outstanding.size === 0) return;
    const e = this.engine;
    const epoch = this.activityEpoch;
    this.pollTimerArmed = true;
    e.after(Math.max(0, this.lastActivityMs + this.options.timeoutMs - e.nowMs), () => {
      this.pollTimerArmed = false;
      if (this.done) return;
      if (epoch === this.activityEpoch && this.outstanding.size > 0) this.pollTimedOut();
      else this.armPollTimeout();
    });
  }

  /** No socket moved for -s seconds: ab exits, and every outstanding request is lost. */
  private pollTimedOut(): void {
    this.abortedWith = 'apr_pollset_poll: The timeout specified has expired (70007)';
    this.stats.aborted = this.abortedWith;
    for (const link of [...this.outstanding]) {
      const req = link.req;
      const processed = this.processed.settle(req);
      // Lost, but ab counts nothing more: apr_err() prints the error and "Total of N requests completed" and exits.
      this.stats.total++;
      recordFailure(this.stats, { client: link.client, atMs: this.engine.nowMs, mechanism: classifyFailure(this.engine, link, 'timeout', processed), reason: 'timeout', processed });
      this.network.close(link);
    }
    this.outstanding.clear();
    this.onDone();
  }

  private open(slot: number): void {
    if (this.abortedWith !== null) return;
    if (this.issued >= this.options.requests) {
      if (this.done) this.onDone();
      return;
    }
    const link = this.network.connect(this);
    this.slotOf.set(link, slot);
    this.connectStartedAt.set(link, this.engine.nowMs);
  }

  onConnected(link: Link): void {
    this.activity();
    this.sendNext(link);
  }

  /** After thinking, the connection may have been closed by the server meanwhile (then onIdleClosed reopened). */
  private sendNextIfOpen(link: Link): void {
    if (link.clientDone || this.abortedWith !== null) return;
    this.sendNext(link);
  }

  private sendNext(link: Link): void {
    if (this.issued >= this.options.requests) {
      this.network.close(link);
      if (this.done) this.onDone();
      return;
    }
    this.issued++;
    const req = this.network.nextRequestId();
    this.sentAt.set(req, this.connectStartedAt.get(link) ?? this.engine.nowMs);
    this.connectStartedAt.delete(link);
    this.outstanding.add(link);
    this.network.send(link, req, true, Number.POSITIVE_INFINITY);
    this.armPollTimeout();
  }

  onResponse(link: Link, req: string, _status: number, close: boolean): void {
    this.processed.settle(req);
    if (this.abortedWith !== null) return;
    this.activity();
    this.outstanding.delete(link);
    this.finished++;
    this.stats.total++;
    this.stats.ok++;
    this.recordTime(this.sentAt.get(req));
    this.sentAt.delete(req);
    if (this.options.keepAlive && !close) {
      const thinkMs = this.options.thinkMs ?? 0;
      if (thinkMs > 0) this.engine.at(thinkMs, () => this.sendNextIfOpen(link));
      else this.sendNext(link);
    } else {
      this.network.close(link);
      this.open(this.slotOf.get(link) ?? 0);
    }
  }

  onFailure(link: Link, reason: ClientFailure, req: string | null): void {
    if (this.abortedWith !== null) return;
    this.activity();
    this.outstanding.delete(link);
    const slot = this.slotOf.get(link) ?? 0;
    if (req === null && reason === 'refused' && this.network.family() === 'tcp') {
      this.refusedThroughPoll(link, slot);
      return;
    }
    if (req === null && (reason === 'eagain' || reason === 'refused' || reason === 'connect-timeout')) {
      // ab 2.4 start_connect: err_conn++; if (bad++ > 10) abort. No close_connection: no time saved.
      this.connectStartedAt.delete(link);
      const badBefore = this.stats.ab.failed;
      this.stats.ab.failed++;
      this.stats.ab.connect++;
      recordFailure(this.stats, { client: link.client, atMs: this.engine.nowMs, mechanism: classifyFailure(this.engine, link, reason, false), reason, processed: false });
      if (badBefore > 10) {
        this.abortedWith = 'Test aborted after 10 failures';
        this.stats.aborted = this.abortedWith;
        this.onDone();
        return;
      }
      this.open(slot);
      return;
    }
    const processed = this.processed.settle(req);
    // A failed exchange is done for ab (close_connection: stats[done++]); it is never sent again. Its
    // time goes into ab's table with the answered ones (s->time = c->done − c->start): a request reset
    // after waiting unread through a worker's teardown is one of its slowest.
    this.finished++;
    this.stats.total++;
    this.countAbFailure(link, reason);
    recordFailure(this.stats, { client: link.client, atMs: this.engine.nowMs, mechanism: classifyFailure(this.engine, link, reason, processed), reason, processed });
    this.recordTime(req === null ? this.connectStartedAt.get(link) : this.sentAt.get(req));
    if (req) this.sentAt.delete(req);
    this.connectStartedAt.delete(link);
    this.open(slot);
  }

  /**
   * A TCP connect refused (the listener is gone). ab's non-blocking connect() said EINPROGRESS, so the
   * refusal comes back through poll, as POLLHUP with POLLERR — not through start_connect's count of
   * failed connects, so ab never aborts on it. read_connection's recv gets ECONNREFUSED: with -r,
   * Receive, and close_connection, with none of the expected bytes, Length — and the request is done.
   * The POLLERR of the same poll result then counts Exceptions and reads the slot's next socket,
   * whose connect on loopback has been refused already: a second request done the same way. So every
   * refusal costs a request (Receive, Length), every second one Exceptions too — measured: gunicorn
   * stopped by TERM under `ab -k -r`, Receive 48,609, Length 48,610, Exceptions 24,326, Connect 0.
   */
  private refusedThroughPoll(link: Link, slot: number): void {
    // Other slots' refusals still on their way once the last request is done: ab has stopped (close_connection saves a done only while done < requests).
    if (this.done) return;
    this.finished++;
    this.stats.total++;
    this.addAbCounts({ receive: 1, length: 1, exceptions: this.refusals++ % 2, connect: 0 });
    recordFailure(this.stats, { client: link.client, atMs: this.engine.nowMs, mechanism: classifyFailure(this.engine, link, 'refused', false), reason: 'refused', processed: false });
    // close_connection saves its time too: from the connect's start.
    this.recordTime(this.connectStartedAt.get(link));
    this.connectStartedAt.delete(link);
    if (this.done) this.onDone();
    else this.open(slot);
  }

  private refusals = 0;

  /** An exchange ab saves in its table (stats[done++]): its time from its start. */
  private recordTime(startedAtMs: number | undefined): void {
    if (startedAtMs === undefined) throw new SimulationInvariantError('ab saves the time of an exchange that never started');
    this.stats.latency.record(this.engine.nowMs - startedAtMs);
  }

  private countAbFailure(link: Link, reason: ClientFailure): void {
    this.addAbCounts(abFailureCounts(reason, link.serverClosedWithFin));
  }

  /** ab's counters, and "Failed requests", their sum. */
  private addAbCounts(counts: { receive: number; length: number; exceptions: number; connect: number }): void {
    const ab = this.stats.ab;
    ab.receive += counts.receive;
    ab.length += counts.length;
    ab.exceptions += counts.exceptions;
    ab.connect += counts.connect;
    ab.failed += counts.receive + counts.length + counts.exceptions + counts.connect;
  }

  onIdleClosed(link: Link): void {
    if (this.abortedWith !== null) return;
    this.activity();
    this.outstanding.delete(link);
    // The slot's connection went away between requests: ab reconnects.
    this.open(this.slotOf.get(link) ?? 0);
  }
}

export interface ProxyOptions {
  /** Downstream request rate (vegeta -rate) and duration. */
  ratePerSec: number;
  durationMs: number;
  /** nginx proxy_connect_timeout / proxy_read_timeout. */
  connectTimeoutMs: number;
  readTimeoutMs: number;
}

/**
 * nginx as a reverse proxy in front of the server (no upstream keep-alive),
 * fed by an open-loop generator at a fixed rate (vegeta attack -rate -duration).
 * Upstream connect errors become 502, timeouts 504. With one upstream,
 * proxy_next_upstream has nowhere else to go, so nothing is retried.
 */
export class ProxyLoad implements LinkOwner {
  readonly stats = emptyStats();
  private readonly startedAt = new Map<Link, number>();
  private readonly connectTimer = new WeakMap<Link, { cancelled: boolean }>();

  constructor(
    private readonly engine: Engine,
    private readonly network: Network,
    private readonly options: ProxyOptions,
    private readonly processed: ProcessedRequests,
  ) {}

  /** The open loop: request i at start + i / rate, each scheduled by the one before (a long run holds one in the queue, not all). */
  start(): void {
    const count = Math.round((this.options.ratePerSec * this.options.durationMs) / 1000);
    const gapMs = 1000 / this.options.ratePerSec;
    const startMs = this.engine.nowMs;
    const issue = (i: number) => {
      this.request();
      if (i + 1 < count) this.engine.atTime(startMs + (i + 1) * gapMs, () => issue(i + 1));
    };
    if (count > 0) issue(0);
  }

  private request(): void {
    const link = this.network.connect(this);
    this.startedAt.set(link, this.engine.nowMs);
    this.connectTimer.set(link, this.engine.at(this.options.connectTimeoutMs, () => this.network.abandonConnect(link, 'connect-timeout')));
  }

  onConnected(link: Link): void {
    const timer = this.connectTimer.get(link);
    if (timer) timer.cancelled = true;
    this.network.send(link, this.network.nextRequestId(), true, this.options.readTimeoutMs);
  }

  onResponse(link: Link, req: string, status: number): void {
    this.processed.settle(req);
    this.stats.total++;
    this.stats.ok++;
    this.stats.statuses[status] = (this.stats.statuses[status] ?? 0) + 1;
    this.stats.latency.record(this.engine.nowMs - (this.startedAt.get(link) ?? 0));
    this.startedAt.delete(link);
    this.network.close(link);
  }

  onFailure(link: Link, reason: ClientFailure, req: string | null): void {
    const timer = this.connectTimer.get(link);
    if (timer) timer.cancelled = true;
    const status = this.downstreamStatus(reason);
    const processed = this.processed.settle(req);
    this.stats.total++;
    this.stats.statuses[status] = (this.stats.statuses[status] ?? 0) + 1;
    this.stats.ab.failed++;
    recordFailure(this.stats, { client: link.client, atMs: this.engine.nowMs, mechanism: classifyFailure(this.engine, link, reason, processed), reason, processed });
    this.stats.latency.record(this.engine.nowMs - (this.startedAt.get(link) ?? 0));
    this.startedAt.delete(link);
  }

  onIdleClosed(): void {}

  downstreamStatus(reason: ClientFailure): 502 | 504 {
    return reason === 'timeout' || reason === 'connect-timeout' ? 504 : 502;
  }
}
