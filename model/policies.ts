/**
 * Shutdown policies. A policy is a set of decisions at named points of the
 * one lifecycle chart — never a different chart. Each decision below becomes a
 * guard (or a timer) that the machines consult; `machinesFor()` provides them
 * with `machine.provide()`.
 */

/** When the `Connection: close` header of a response is decided. */
export type CloseDecisionPoint =
  /** Before the app runs (gunicorn: `force_close()` happens before the handler). A drain that starts mid-handler leaves the header saying keep-alive. */
  | 'handler-start'
  /** When the response head is written (Go's `net/http`: `doKeepAlives()` at header time). */
  | 'respond';

/** What a draining worker does with a keep-alive connection that is idle (no request being served). */
export type IdleOnDrain =
  /** Close it at once (Go `Shutdown`, Node `closeIdleConnections`, nginx). */
  | 'close'
  /** Never read it again; it is closed when the process exits (gunicorn gthread 20.1–23.0). */
  | 'orphan'
  /** Keep it, serve what arrives, close at the graceful deadline (gthread 24+ as observed, "option 1"). */
  | 'keep'
  /** Keep it until the ordinary keep-alive timeout; serve what arrives (gevent/eventlet). */
  | 'keepalive-timer'
  /** Keep it for an idle window (idleGraceMs) for one more request, then close. */
  | 'grace';

export interface PolicySpec {
  readonly name: string;
  readonly description: string;
  /** False for the sync worker: every response closes the connection. */
  readonly keepAlive: boolean;
  /** One request at a time per worker (sync), whatever `threads` says. */
  readonly singleThreaded: boolean;
  readonly closeDecision: CloseDecisionPoint;
  /** Responses decided while draining (or after max-requests) carry `Connection: close`. */
  readonly forceCloseWhileDraining: boolean;
  /** After a response that said keep-alive, a draining worker closes the connection at once (gunicorn `finish_request`: keep only `if keepalive and self.alive`). */
  readonly closeAfterKeepAliveResponseWhileDraining: boolean;
  readonly idleOnDrain: IdleOnDrain;
  /** A draining worker exits when no request is in progress, abandoning idle connections (gthread ≤ 23). Otherwise it waits for every connection. */
  readonly exitAbandonsIdle: boolean;
  /** A worker may still accept in the loop turn after it stopped being alive (gthread 21–23, gunicorn #3038). */
  readonly acceptAfterDrain: boolean;
  /**
   * An accepted connection goes straight to a pool thread, which blocks reading its first request
   * (gthread 20.x `accept` → `tpool.submit`; 24+ likewise). A drain does not abandon it and the
   * worker waits for it like a request in progress. Otherwise a fresh connection waits in the
   * poller until readable (gthread 21–23, PR #2918) and a drain treats it as idle.
   */
  readonly acceptHandsToThread: boolean;
  /** When the worker closes its copy of the listening socket. */
  readonly listenerClose: 'at-drain' | 'at-exit';
  /** The worker keeps notifying the arbiter while it drains. */
  readonly heartbeatWhileDraining: boolean;
  /**
   * INT or QUIT during a graceful stop escalates it: QUIT to every worker, and the deadline moves to
   * 2 s from now (gunicorn 24+ `stop()`). gunicorn ≤ 23 sleeps out its stop loop and acts on no
   * signal until the deadline (arbiter.py@23.0.0 `stop`), so the graceful stop runs its course.
   */
  readonly fastStopEscalates: boolean;
  /**
   * The drain begins inside a poll of the worker's loop, which runs to its end before the loop sees
   * `alive = False` (gthread 20.x: `select(1.0)` does not watch the signal pipe, and Python resumes it
   * after the handler, PEP 475). That last turn ends when the poll returns: with the first readable
   * keep-alive connection (its request is served, with `Connection: close`) or the first new
   * connection (handed to a pool thread), or at the poll's timeout, ≤ 1 s (`selectTimeoutMs`).
   * Only then are idle connections abandoned and the listener closed.
   */
  readonly lastLoopTurn: boolean;
  /**
   * A kept-alive connection waits in the worker's event loop, not in a thread: when its next
   * request arrives, the loop's poll has to return with it and hand it to the pool first
   * (gthread: `poller.register` after a keep-alive response, `on_client_socket_readable` →
   * `tpool.submit`). A request that arrived but is not handed over yet is unread and belongs to
   * nobody: a drain that ends the loop abandons it. So is a fresh connection's first request when
   * accepts do not hand connections to a thread (gthread 21–23).
   */
  readonly pollerDispatch: boolean;
  /**
   * Requests handed to the worker's thread pool run to their end when the worker leaves — at the
   * end of its drain, at its own graceful timeout, and at QUIT/INT alike — with `Connection: close`
   * where the header is still open; only a KILL ends them. gthread's pool is a `ThreadPoolExecutor`:
   * `shutdown(False)` leaves its queued and running work items running, the graceful timeout ends
   * only `futures.wait`, and the interpreter's exit joins the pool's threads (concurrent.futures
   * `_python_exit`) — after `run()` returns, or after `handle_quit` ended the main thread with
   * `sys.exit(0)`. Seen from outside on gunicorn 20.1 gthread (one thread): INT with a slow request
   * and one queued behind it answered both (conformance script waiting-for-a-thread-int); HUP with
   * --graceful-timeout 1 answered a 3 s request and the one queued behind it, at 3 s. Otherwise an
   * exit aborts them.
   */
  readonly poolRunsSubmitted: boolean;
  /**
   * A request pipelined behind the one being answered (RFC 9112 §9.3.2) is answered too, even while
   * draining: the response before it keeps the connection open, and the connection closes after the
   * last request already there. Otherwise a response decided while draining says `Connection: close`
   * and the requests behind it are never processed (§9.6) — retryable, but lost to this server,
   * which had them (Go's `net/http`, gunicorn, nginx all close).
   */
  readonly servesPipelinedOnDrain: boolean;
  /** Half-close, read and discard until the peer closes or lingerMs passes, then close (RFC 9112 §9.6). */
  readonly lingeringClose: boolean;
  /**
   * How a reload (HUP) retires the old generation.
   * - `at-once`: every old worker gets TERM as the new ones are forked (gunicorn `reload()` spawns
   *   `workers` new ones, then `manage_workers()` TERMs the oldest beyond `workers`). Until a new worker
   *   has loaded its app nothing accepts: connections wait in the accept queue, which may overflow.
   * - `when-replaced`: an old worker that serves keeps serving until a new one serves in its place,
   *   one for one, so a reload never has fewer workers accepting than before it (a rolling restart).
   *   An old worker still booting is retired at once: it would serve the old app, and serves nothing yet.
   */
  readonly reloadRetires: 'at-once' | 'when-replaced';
}

type BasePolicy = Omit<PolicySpec, 'lingeringClose'>;

const BASE_POLICIES: readonly BasePolicy[] = [
  {
    name: 'gunicorn-sync',
    description: 'gunicorn sync worker: no keep-alive, one request at a time, listener fd kept until exit (queued connections reset)',
    keepAlive: false,
    singleThreaded: true,
    closeDecision: 'handler-start',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: true,
    idleOnDrain: 'close',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-exit',
    heartbeatWhileDraining: true,
    fastStopEscalates: false,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'gunicorn-gthread',
    description: "gunicorn gthread 20.x (the seed's, and Debian's 20.1): accepted connections go straight to a pool thread; the loop's last poll (≤ 1 s) still serves a request on an idle keep-alive connection or a new connection, with close; then idle connections are abandoned; keep-alive header fixed before the app runs",
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'handler-start',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: true,
    idleOnDrain: 'orphan',
    exitAbandonsIdle: true,
    acceptAfterDrain: false,
    acceptHandsToThread: true,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: false,
    fastStopEscalates: false,
    lastLoopTurn: true,
    pollerDispatch: true,
    poolRunsSubmitted: true,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'gunicorn-gthread-21',
    description: 'gunicorn gthread 21.0–23.0: new connections wait in the poller until readable, so a drain abandons them too; last-turn accept (#3038)',
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'handler-start',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: true,
    idleOnDrain: 'orphan',
    exitAbandonsIdle: true,
    acceptAfterDrain: true,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: false,
    fastStopEscalates: false,
    lastLoopTurn: false,
    pollerDispatch: true,
    poolRunsSubmitted: true,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'gunicorn-gthread-24',
    description: 'gunicorn gthread 24.0+: keeps serving keep-alive connections with Connection: close until none are left or the graceful timeout',
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'handler-start',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: true,
    idleOnDrain: 'keep',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: true,
    listenerClose: 'at-exit',
    heartbeatWhileDraining: true,
    fastStopEscalates: true,
    lastLoopTurn: false,
    pollerDispatch: true,
    poolRunsSubmitted: true,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'gunicorn-async',
    description: 'gunicorn gevent/eventlet: the next response on each connection is forced to Connection: close; idle ones wait out the keep-alive timeout',
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'handler-start',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: false,
    idleOnDrain: 'keepalive-timer',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: true,
    fastStopEscalates: false,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'abort-idle',
    description: "close idle keep-alive connections at once (Go's Server.Shutdown, Node's closeIdleConnections, nginx)",
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'respond',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: true,
    idleOnDrain: 'close',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: true,
    fastStopEscalates: true,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'close-after-next',
    description: "the seed's option 2: the next response on every connection carries Connection: close; idle ones are closed by the keep-alive timeout",
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'respond',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: false,
    idleOnDrain: 'keepalive-timer',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: true,
    fastStopEscalates: true,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'serve-until-deadline',
    description: "the seed's option 1: keep serving keep-alive connections as usual until the graceful deadline, then close them",
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'respond',
    forceCloseWhileDraining: false,
    closeAfterKeepAliveResponseWhileDraining: false,
    idleOnDrain: 'keep',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: true,
    fastStopEscalates: true,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'idle-grace',
    description: 'wait an idle window (idleGraceMs) on each idle connection for one more request, answer it with Connection: close, then close',
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'respond',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: false,
    idleOnDrain: 'grace',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: true,
    fastStopEscalates: true,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'never-close-idle',
    description: 'idle keep-alive connections are neither served nor closed until the graceful deadline: the stale-socket hang',
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'handler-start',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: false,
    idleOnDrain: 'orphan',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: true,
    fastStopEscalates: true,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: false,
    reloadRetires: 'at-once',
  },
  {
    name: 'safe-drain',
    description:
      'recommended: listener closed at once, Connection: close decided when the response is written, an idle window for one more request, lingering close',
    keepAlive: true,
    singleThreaded: false,
    closeDecision: 'respond',
    forceCloseWhileDraining: true,
    closeAfterKeepAliveResponseWhileDraining: false,
    idleOnDrain: 'grace',
    exitAbandonsIdle: false,
    acceptAfterDrain: false,
    acceptHandsToThread: false,
    listenerClose: 'at-drain',
    heartbeatWhileDraining: true,
    fastStopEscalates: true,
    lastLoopTurn: false,
    pollerDispatch: false,
    poolRunsSubmitted: false,
    servesPipelinedOnDrain: true,
    reloadRetires: 'when-replaced',
  },
];

/** The modifier every base policy can be combined with: `gunicorn-gthread+lingering-close`. */
export const LINGERING_SUFFIX = '+lingering-close';

/** safe-drain always lingers; the others linger only with the suffix. */
const ALWAYS_LINGERS = new Set(['safe-drain']);

export const BASE_POLICY_NAMES: readonly string[] = BASE_POLICIES.map((p) => p.name);

/** Every selectable policy: each base name, and each with `+lingering-close` (safe-drain lingers already). */
export const POLICY_NAMES: readonly string[] = [
  ...BASE_POLICY_NAMES,
  ...BASE_POLICY_NAMES.filter((n) => !ALWAYS_LINGERS.has(n)).map((n) => n + LINGERING_SUFFIX),
];

export class UnknownPolicyError extends Error {
  constructor(readonly input: string) {
    super(`unknown policy "${input}"; expected one of: ${BASE_POLICY_NAMES.join(', ')} (each may take the suffix ${LINGERING_SUFFIX})`);
    this.name = 'UnknownPolicyError';
  }
}

export function getPolicy(name: string): PolicySpec {
  const lingering = name.endsWith(LINGERING_SUFFIX);
  const baseName = lingering ? name.slice(0, -LINGERING_SUFFIX.length) : name;
  const base = BASE_POLICIES.find((p) => p.name === baseName);
  if (!base) throw new UnknownPolicyError(name);
  const alwaysLingers = ALWAYS_LINGERS.has(base.name);
  if (lingering && alwaysLingers) throw new UnknownPolicyError(name);
  return {
    ...base,
    name,
    description: lingering ? `${base.description}; with lingering close` : base.description,
    lingeringClose: lingering || alwaysLingers,
  };
}

export interface PolicyListing {
  readonly name: string;
  readonly description: string;
}

/** The registry as a user sees it: base names with one-line descriptions. */
export function listPolicies(): PolicyListing[] {
  return BASE_POLICIES.map(({ name, description }) => ({ name, description }));
}
