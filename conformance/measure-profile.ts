/**
 * Measures a server profile on this machine and writes it
 * (`npm run profile:measure -- NAME [--write]`): every number in the file is
 * one this script measured, under a measurement that records the command,
 * the date, the machine and the method. Nothing here is tuned; run it again
 * on another machine and the file describes that machine.
 *
 * Both are measured in one run under the calibration's load — the seed's
 * (`ab -c 20 -k -r`, 4 workers × 20 threads, keep-alive 2 s, max-requests
 * 512) over 40,000 requests, about 80 replacements — because a time holds
 * the wait for the CPU: on two cores a replacement's boot takes CPU from the
 * requests being served, and a request's time measured without recycling is
 * half of what it is under it. So a profile holds for the load it was
 * measured under (the calibration's), not for every load. Where the
 * processes' CPU can be sampled (our server), their work is measured too,
 * and the simulator shares the cores out itself (simulator/cpu.ts).
 *
 * - service time: the 101 percentiles of ab's total time per request
 *   (`-e`, µs resolution): the time a request holds its thread, waiting for
 *   the CPU included. For gthread, whose kept-alive connections wait in the
 *   worker's poller, the two parts are measured apart instead, by its
 *   `pre_request` and `post_request` hooks and its `enqueue_req` wrapped in
 *   `post_worker_init` (CLOCK_MONOTONIC, per process and client address,
 *   kept in memory and written at the worker's exit): the handler's time
 *   (pre → post: the service time); the thread pickup (the hand-over → pre:
 *   the pool thread's wait for the GIL, and the parse).
 * - a capture of the same run (tcpdump on lo, headers only): loopback's
 *   one-way latency (half a SYN → SYN-ACK, the kernel's own reply); beside
 *   the hooks, the client's turnaround (a response's last segment → the
 *   client's next request on the connection) and the poll wait from the
 *   arrival (a kept-alive request's segment → its hand-over, the hooks'
 *   CLOCK_MONOTONIC put on the capture's CLOCK_REALTIME by a line each
 *   worker writes at its start with both). Without tcpdump they are left out.
 * - a stop (gunicorn): ten runs of the matrix's TERM row (no recycling, a TERM 1 s into `ab -n
 *   60000 -c 20 -k -r`), with hooks of their own: the gaps between the arbiter's successive kills, a
 *   kill → the worker's handler, and (gthread) the poll that ended the worker's last turn → its close
 *   of the listener copy.
 * - worker boot: from a worker's exit to its replacement ready to accept. gunicorn: its server hooks (`worker_exit`, then
 *   `post_worker_init` of the next worker, by CLOCK_MONOTONIC, paired in
 *   order: the arbiter replaces in the order it reaps). `quiesce serve`: its
 *   trace (`worker.exit`, then the next `worker.ready`).
 * - the arbiter's side of a replacement (gunicorn): its `child_exit` hook
 *   (the reap) and each worker's `post_fork` (its start) split the boot
 *   into the reap after the exit (CPython's finalization outlives the
 *   sockets it frees: the reap comes a median 260 ms after the connections'
 *   close), the wait for the fork (the spawn loop forks one vacancy after
 *   another, sleeping up to 100 ms between) and the fork → ready.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { runAb } from './ab.ts';
import { commandServer, fillCommand } from './blackbox.ts';
import { APPS_DIR, stopGracefully, tempDir, type ServerProcess } from './process.ts';
import type { ServerParams } from '../model/params.ts';
import { MEASURE_LOAD, SEED_CALIBRATION } from './calibrate.ts';
import { readTrace } from '../impl/trace-file.ts';
import type { TraceEvent } from '../model/events.ts';
import { LatencyHistogram } from '../simulator/stats.ts';
import { EXIT_ROW_COLUMNS, profileSchema, REQUEST_ROW_COLUMNS, type Profile, type RequestRowsMeasured } from '../simulator/profile-schema.ts';
import { CaptureStartError, LoopbackCapture, type Segment } from './capture.ts';
import { CPU_SAMPLE_INTERVAL_MS, CpuSampler, measuredWork, spareActivations } from './cpu-sampler.ts';

interface Target {
  readonly describes: string;
  readonly policy?: string;
  /** The server's command, placeholders as `quiesce conform --server` takes them, plus {bind}. */
  readonly command: string;
  /** Files the command needs in its directory. */
  readonly files: Record<string, string>;
  /** Worker exit → replacement ready samples, ms, from what the run left in its directory. */
  readonly boots: (dir: string) => { readonly pid?: string; readonly ms: number }[];
  readonly bootMethod: string;
  /** The arbiter's reaps and forks (gunicorn's hooks): read from what the run left in its directory, for a run of `workers`. */
  readonly arbiterTimes?: (dir: string, workers: number) => ArbiterTimes;
  /** Handler times and kept-alive turnarounds, ms, from what the run left in its directory (servers whose connections wait in a poller). */
  readonly requestTimes?: (dir: string) => RequestTimes;
  /** What a stop under load took, ms (servers whose hooks or trace see the arbiter's kills). */
  readonly stops?: {
    /** Read from what a TERM run left in its directory. */
    readonly times: (dir: string) => StopTimes;
    /** The files the stop runs' command needs in its directory, in place of `files`. */
    readonly files?: Record<string, string>;
    /** How `times` reads them, for the profile's description of the measurement. */
    readonly method: string;
    /**
     * What the same hooks give under three HUPs (gunicorn's arbiter: a reload forks the new generation,
     * then TERMs the old one): read from a reload run's directory, with the HUPs' times on the hooks' clock.
     */
    readonly reloads?: (dir: string, hupsMs: readonly number[]) => ReloadTimes;
  };
  /**
   * A command whose processes' CPU is sampled from /proc under the load (`quiesce serve`: workers and
   * spares by their titles): the work per request and per boot that the simulator's shared CPU takes.
   * As the calibration runs it: without what only the other measurements need (a trace costs CPU).
   */
  readonly cpuCommand?: string;
  /** The worker is one thread, an event loop (the profile's `singleThreadedLoop`): its design, said, not measured. */
  readonly singleThreadedLoop?: true;
  /** The policy the measuring runs serve under, where the profile leaves it a flag (`policy` absent). */
  readonly runPolicy?: string;
}

/** A hand-over of a kept-alive connection's next request (gthread: `enqueue_req` from the poller), on the hooks' clock. */
export interface KeptAliveHandOver {
  readonly pid: string;
  /** The client's port: the connection's name in a capture. */
  readonly clientPort: number;
  /** The hand-over of the request before it on the connection, and this one, ms, CLOCK_MONOTONIC. */
  readonly previousHandOverMs: number;
  readonly handOverMs: number;
  /** The return of the select whose callback handed it over, ms, CLOCK_MONOTONIC. */
  readonly pollReturnedMs: number;
  /** The connection's return to the poller between the two (the done callback's end), ms, CLOCK_MONOTONIC; absent: not seen. */
  readonly returnedMs?: number;
  /** What came of it, as the hooks saw it, ms: the hand-over → pre, pre → post, post → the return (absent: not seen). */
  pickupMs?: number;
  handlerMs?: number;
  returnMs?: number;
}

export interface RequestTimes {
  readonly handlerMs: number[];
  /** Every hand-over (a connection's first, at its accept in gthread 20.1, and each kept-alive one), ms, CLOCK_MONOTONIC: which worker served which connection, and when. */
  readonly handOvers: { readonly pid: string; readonly clientPort: number; readonly atMs: number }[];
  /** Each worker's worker_exit hook, ms, CLOCK_MONOTONIC, and the client ports it handed requests over for. */
  readonly exits: { readonly pid: string; readonly atMs: number; readonly clientPorts: ReadonlySet<number> }[];
  readonly keptAliveHandOvers: KeptAliveHandOver[];
  /** Each worker's CLOCK_REALTIME − CLOCK_MONOTONIC, ms, read side by side at its start. */
  readonly realtimeOffsetMs: Map<string, number>;
  readonly pickupMs: number[];
  /** From a response (post) to the done callback's return of the connection; empty where the hooks see no return. */
  readonly returnMs: number[];
  /** At a recycle, the worker's last hand-over → its close of the listener copy; empty where the hooks see no close. */
  readonly closeAfterRecycleTurnMs: number[];
  /** Where gthread's main thread was as each recycling worker's alive flipped (its pre_request of the request that reaches max-requests), where its poller held nothing readable: in its poll, or past it. */
  readonly recycleFlips: { inPoll: number; pastPoll: number };
  /** The recycles whose flip found a connection readable in the poller: the loop's place is then its poller's, not the flag's (left out of `recycleFlips`). */
  readonly recycleFlipsWithReadable: number;
  /**
   * Each of those flips: what was readable, the hand-overs between it and the listener's close — from
   * a select that had returned by then, or from one that returned after it (a main thread the flag
   * still shows in its select had not run since the kernel woke it; gthread 20.1 hands over a whole
   * return before it looks at `alive`) — and how long before the flip the last select had returned
   * (null: the hooks saw none). What the simulator's `pollReturn` places (simulator/README.md, "What a
   * gthread recycle hands over").
   */
  readonly recycleFlipReturns: RecycleFlipReturn[];
  /**
   * The flips that found the main thread in its select by the flag (the hooks' lines that say when it
   * went in): what was readable, and how long the thread had been in the select. A pool thread runs
   * Python only with the GIL, which the main thread gives up as it goes in; whether the flips bunch
   * at the entry is what this reads (one run: they do not, plainly — simulator/README.md, "A worker's
   * connections share its GIL").
   */
  readonly recycleFlipsInSelect: { readonly readable: number; readonly inSelectForMs: number }[];
}

export interface RecycleFlipReturn {
  readonly place: 'in-poll' | 'past-poll';
  readonly readable: number;
  handedOverFromEarlier: number;
  handedOverFromLater: number;
  readonly returnAgeMs: number | null;
}

const STOP_TIME_KEYS = ['killGapMs', 'signalHandlerMs', 'closeAfterTurnMs', 'exitAfterCloseMs'] as const;

export interface StopTimes {
  /** Between the arbiter's successive kill(2)s of its workers, in the order it sent them. */
  readonly killGapMs: number[];
  /** A kill(2) → that worker's handler running. */
  readonly signalHandlerMs: number[];
  /** The stopping loop turn (its first hand-over after the handler, or the handler) → the listener copy's close; empty where the hooks see no close. */
  readonly closeAfterTurnMs: number[];
  /** The listener copy's close → that worker's exit; empty where the marks have no exit (gunicorn's hooks: its exit is the capture's teardown). */
  readonly exitAfterCloseMs: number[];
  /**
   * gthread: each SIGTERM handler's worker, by whether its loop handed anything over between the kill and
   * the handler (`loopStopsAtKills`): `stopped`, nothing; `ran`, at least one hand-over. Zero for a server
   * whose hand-overs the marks do not show.
   */
  readonly loopStops: { stopped: number; ran: number };
  /**
   * gthread, at its workers' SIGTERM handlers: the connections they held, those readable in the poller
   * then, and what their last turns handed over (between the handler and the listener close). Evidence
   * of where the handler finds the loop (simulator/server.ts `loopAtFlip`), logged, not drawn.
   */
  readonly atHandlers: { handlers: number; held: number; readable: number; handedOver: number };
}

/**
 * In a gthread worker's post_worker_init: its poller's select wrapped, so that `_polling[0]` (a module
 * global) says whether the main thread is in it — for the hooks that note where the loop is as `alive`
 * flips — `_returned[0]` when it last returned, for the hand-overs of what it returned with (each
 * is a callback of that return: `for key, _ in events: callback(key.fileobj)`), and `_entered[0]` when
 * it last went in (releasing the GIL to the pool's threads). The wrapper costs the loop three stores and
 * two clock reads a turn.
 */
/**
 * Python, in a hook with `worker` at hand: `readable`, the connections readable in its poller now (its
 * epoll polled with timeout 0, which waits for nothing and changes nothing; the listeners left out), or
 * −1 where the poller cannot be read so. `indent`: the hook's own.
 */
const readableNow = (indent: string): string[] =>
  [
    'try:',
    '    listening = set(s.fileno() for s in worker.sockets)',
    '    readable = sum(1 for fd, _ in worker.poller._selector.poll(0) if fd not in listening)',
    'except Exception:',
    '    readable = -1',
  ].map((line) => indent + line);

const POLLING_FLAG = [
  '    select = worker.poller.select',
  '    def polling_select(timeout=None):',
  '        _polling[0] = True',
  '        _entered[0] = time.monotonic()',
  '        try:',
  '            return select(timeout)',
  '        finally:',
  '            _polling[0] = False',
  '            _returned[0] = time.monotonic()',
  '    worker.poller.select = polling_select',
];

/**
 * gunicorn's server hooks, writing CLOCK_MONOTONIC times: the only clock all its processes share. A
 * request's times are kept in the worker's memory and written once, at its exit (`worker_exit` runs in
 * the worker), so that measuring costs a request an append, not a write.
 */
export const GUNICORN_HOOKS = [
  'import os, time',
  '_dir = os.path.dirname(os.path.abspath(__file__))',
  '_requests = []',
  'def _log(kind, pid):',
  "    with open(os.path.join(_dir, 'hooks.log'), 'a') as f:",
  "        f.write('%.6f %s %d\\n' % (time.monotonic(), kind, pid))",
  // Whether gthread's main thread is in its poll: a pool thread flips alive at a recycle, wherever the loop is.
  '_polling = [False]',
  '_returned = [0.0]',
  '_entered = [0.0]',
  '_flipped = [False]',
  'def pre_request(worker, req):',
  "    _requests.append('%.6f pre %d %s' % (time.monotonic(), os.getpid(), req.peer_addr))",
  // handle_request counts the request right after this hook: `nr += 1; if nr >= max_requests: alive = False`.
  "    if not _flipped[0] and worker.nr + 1 >= worker.max_requests and getattr(worker, 'poller', None) is not None:",
  '        _flipped[0] = True',
  // …and what its poller holds readable then: the flag reads true only where nothing is.
  ...readableNow('        '),
  // …and when its loop's select last returned (0: not yet): what the flip's hand-overs can be from; and when it last went in.
  "        _requests.append('%.6f recycle-flip %d %s %d %.6f %.6f' % (time.monotonic(), os.getpid(), 'in-poll' if _polling[0] else 'past-poll', readable, _returned[0], _entered[0]))",
  'def post_request(worker, req, environ, resp):',
  "    _requests.append('%.6f post %d %s' % (time.monotonic(), os.getpid(), req.peer_addr))",
  // gthread's loop hands a connection to the pool through enqueue_req (after accept, and when a kept-alive one is readable).
  'def post_worker_init(worker):',
  "    _log('ready', os.getpid())",
  // The clocks side by side, once per worker: a capture's timestamps are CLOCK_REALTIME.
  "    _requests.append('%.6f clock %d %.6f' % (time.monotonic(), os.getpid(), time.time()))",
  "    enqueue = getattr(worker, 'enqueue_req', None)",
  '    if enqueue is None: return',
  ...POLLING_FLAG,
  // A hand-over, with the return of the poll it is a callback of.
  '    def enqueue_req(conn):',
  "        _requests.append('%.6f submit %d %.6f %s' % (time.monotonic(), os.getpid(), _returned[0], conn.client))",
  '        return enqueue(conn)',
  '    worker.enqueue_req = enqueue_req',
  // …closes its listener copies after its loop: timed at a recycle (its own limit reached; not the final stop).
  '    for listener in worker.sockets:',
  '        def close(close=listener.close):',
  "            if worker.nr >= worker.max_requests: _requests.append('%.6f recycle-close %d -' % (time.monotonic(), os.getpid()))",
  '            return close()',
  '        listener.close = close',
  // …and takes an answered connection back in the pool thread's done callback (finish_request: into the
  // poller, or closed). enqueue_req binds self.finish_request when it submits: the wrapper is what runs.
  "    finish = getattr(worker, 'finish_request', None)",
  '    if finish is None: return',
  // Timed when it is done: its decision (`if keepalive and self.alive`) comes microseconds after the
  // response, carrying it out (the keep-alive lock, the poller's register; or the close) waits for the
  // GIL. Only a connection it kept is timed — keep-alive is the load; a drain's close takes the same path.
  '    def finish_request(fs):',
  '        finish(fs)',
  "        if fs.conn.sock.fileno() != -1: _requests.append('%.6f return %d %s' % (time.monotonic(), os.getpid(), fs.conn.client))",
  '    worker.finish_request = finish_request',
  // The arbiter's side of a replacement: the child's first moment after its fork, and the reap (child_exit runs in the arbiter, in reap_workers).
  'def post_fork(server, worker):',
  "    _log('forked', os.getpid())",
  'def child_exit(server, worker):',
  "    _log('reaped', worker.pid)",
  'def worker_exit(server, worker):',
  "    _log('exit', worker.pid)",
  // Its loop, its futures and its sockets are done: what is left is the process's own end (a capture sees its fds close).
  "    _requests.append('%.6f worker-exit %d -' % (time.monotonic(), worker.pid))",
  "    with open(os.path.join(_dir, 'requests.log'), 'a') as f:",
  "        f.write(''.join(line + '\\n' for line in _requests))",
  '',
].join('\n');

/**
 * The hooks of the stop runs, apart from the request hooks above: as few as a stop needs (one append
 * a hand-over, none a request), so that they take as little of the GIL as they can from what they time
 * — the stopping loop's last turn waits for the GIL. The arbiter writes its kills as it sends them (a
 * handful a stop); a worker keeps its lines and writes them at its exit.
 */
export const GUNICORN_STOP_HOOKS = [
  'import os, signal, time',
  '_dir = os.path.dirname(os.path.abspath(__file__))',
  '_lines = []',
  // kill_workers calls kill_worker once per worker.
  'def when_ready(server):',
  '    kill = server.kill_worker',
  '    def kill_worker(pid, sig):',
  "        with open(os.path.join(_dir, 'stops.log'), 'a') as f:",
  "            f.write('%.6f kill %d %d\\n' % (time.monotonic(), pid, sig))",
  '        return kill(pid, sig)',
  '    server.kill_worker = kill_worker',
  'def post_worker_init(worker):',
  // The SIGTERM handler as init_signals set it: without interrupting system calls.
  '    handle_exit = worker.handle_exit',
  '    def on_term(sig, frame):',
  "        _lines.append('%.6f handler %d' % (time.monotonic(), os.getpid()))",
  // gthread: what its poller holds as the handler runs — connections readable (epoll, not waiting), the listeners left out — and all it holds.
  "        if getattr(worker, 'poller', None) is not None:",
  ...readableNow('            '),
  "            _lines.append('%.6f at-handler %d %d %d' % (time.monotonic(), os.getpid(), readable, getattr(worker, 'nr_conns', 0)))",
  '        handle_exit(sig, frame)',
  '    signal.signal(signal.SIGTERM, on_term)',
  '    signal.siginterrupt(signal.SIGTERM, False)',
  // gthread: its loop's hand-overs, and the listener copies it closes after the loop (tpool.shutdown, poller.close, close).
  "    enqueue = getattr(worker, 'enqueue_req', None)",
  '    if enqueue is None: return',
  '    def enqueue_req(conn):',
  "        _lines.append('%.6f submit %d' % (time.monotonic(), os.getpid()))",
  '        return enqueue(conn)',
  '    worker.enqueue_req = enqueue_req',
  '    for listener in worker.sockets:',
  '        def close(close=listener.close):',
  "            _lines.append('%.6f listener-close %d' % (time.monotonic(), os.getpid()))",
  '            return close()',
  '        listener.close = close',
  'def worker_exit(server, worker):',
  "    with open(os.path.join(_dir, 'stops.log'), 'a') as f:",
  "        f.write(''.join(line + '\\n' for line in _lines))",
  '',
].join('\n');

/**
 * From the hooks' request lines (`<seconds> pre|post|return <pid> <peer>`; `<seconds> submit <pid> <its
 * poll's return, seconds> <peer>`; `<seconds> clock <pid>
 * <realtime seconds>`; `<seconds> recycle-flip <pid> in-poll|past-poll`), per connection (the same worker and client address), in ms: each handler's time
 * (its pre → its post); each return (a post → the done callback's return after it); each kept-alive
 * hand-over (a submit on a connection that had a response: a hand-over of the client's FIN is one too,
 * and the capture tells them apart); each thread pickup (a submit → the pre after it).
 */
/** The hooks' word for where gthread's loop was as alive flipped, or `refusal` for a word they do not write. */
function loopPlace(place: string | undefined, refusal: string): 'in-poll' | 'past-poll' {
  if (place === 'in-poll' || place === 'past-poll') return place;
  throw new Error(refusal);
}

export function requestTimings(lines: readonly string[]): RequestTimes {
  const handlerMs: number[] = [];
  const handOvers: { pid: string; clientPort: number; atMs: number }[] = [];
  const keptAliveHandOvers: KeptAliveHandOver[] = [];
  const realtimeOffsetMs = new Map<string, number>();
  const exits: { pid: string; atMs: number; clientPorts: ReadonlySet<number> }[] = [];
  const portsOf = new Map<string, Set<number>>();
  const pickupMs: number[] = [];
  const returnMs: number[] = [];
  const closeAfterRecycleTurnMs: number[] = [];
  const recycleFlips = { inPoll: 0, pastPoll: 0 };
  let recycleFlipsWithReadable = 0;
  const recycleFlipReturns: RecycleFlipReturn[] = [];
  const recycleFlipsInSelect: { readable: number; inSelectForMs: number }[] = [];
  /** A flip with something readable, per worker, until its listener's close (or its exit): the hand-overs after it are counted. */
  const openFlips = new Map<string, { atMs: number; flip: RecycleFlipReturn }>();
  const lastSubmitOf = new Map<string, number>();
  const submitted = new Map<string, number>();
  const started = new Map<string, number>();
  const responded = new Set<string>();
  const handedOver = new Map<string, number>();
  const answered = new Map<string, number>();
  /** Each kept connection's return to the poller since its last hand-over. */
  const returned = new Map<string, number>();
  /** The kept-alive request in progress on each connection: its pickup, handler and return are filled in as they come. */
  const inProgress = new Map<string, KeptAliveHandOver>();
  for (const line of lines) {
    const match = /^(\d+(?:\.\d+)?) (submit|pre|post|return|recycle-close|recycle-flip|clock|worker-exit) (\d+) (.+)$/.exec(line);
    if (!match) throw new Error(`requests.log: unexpected line "${line}"`);
    const ms = Number(match[1]) * 1000;
    if (match[2] === 'clock') {
      if (!/^\d+(?:\.\d+)?$/.test(match[4]!)) throw new Error(`requests.log: a clock line without a realtime: "${line}"`);
      realtimeOffsetMs.set(match[3]!, Number(match[4]) * 1000 - ms);
      continue;
    }
    if (match[2] === 'worker-exit') {
      openFlips.delete(match[3]!);
      exits.push({ pid: match[3]!, atMs: ms, clientPorts: portsOf.get(match[3]!) ?? new Set() });
      continue;
    }
    if (match[2] === 'recycle-flip') {
      // Where something was readable, a select that returned while the main thread waited still says "in it": not counted.
      const [word, readable, returned, entered] = match[4]!.split(' ');
      const place = loopPlace(word, `requests.log: a recycle-flip line says neither in-poll nor past-poll: "${line}"`);
      if (readable !== undefined && !/^-?\d+$/.test(readable)) throw new Error(`requests.log: a recycle-flip line's readable count is not a number: "${line}"`);
      if (returned !== undefined && !/^\d+(?:\.\d+)?$/.test(returned)) throw new Error(`requests.log: a recycle-flip line's last select return is not a time: "${line}"`);
      if (entered !== undefined && !/^\d+(?:\.\d+)?$/.test(entered)) throw new Error(`requests.log: a recycle-flip line's last entry into the select is not a time: "${line}"`);
      const readableCount = readable === undefined ? 0 : Number(readable);
      if (place === 'in-poll' && entered !== undefined && Number(entered) > 0 && readableCount >= 0) recycleFlipsInSelect.push({ readable: readableCount, inSelectForMs: ms - Number(entered) * 1000 });
      if (readableCount === 0) recycleFlips[place === 'in-poll' ? 'inPoll' : 'pastPoll']++;
      else if (readableCount > 0) {
        recycleFlipsWithReadable++;
        const returnedMs = returned === undefined || Number(returned) === 0 ? null : Number(returned) * 1000;
        const flip: RecycleFlipReturn = { place, readable: readableCount, handedOverFromEarlier: 0, handedOverFromLater: 0, returnAgeMs: returnedMs === null ? null : ms - returnedMs };
        recycleFlipReturns.push(flip);
        openFlips.set(match[3]!, { atMs: ms, flip });
      }
      continue;
    }
    if (match[2] === 'recycle-close') {
      openFlips.delete(match[3]!);
      const last = lastSubmitOf.get(match[3]!);
      if (last !== undefined) closeAfterRecycleTurnMs.push(ms - last);
      continue;
    }
    if (match[2] === 'submit') lastSubmitOf.set(match[3]!, ms);
    // A hand-over names the return of the poll it is a callback of before its peer.
    const polled = match[2] === 'submit' ? /^(\d+(?:\.\d+)?) (.+)$/.exec(match[4]!) : null;
    if (match[2] === 'submit' && !polled) throw new Error(`requests.log: a submit line without its poll's return: "${line}"`);
    const peer = polled ? polled[2]! : match[4]!;
    const conn = `${match[3]} ${peer}`;
    const since = (map: Map<string, number>, into: number[]) => {
      const at = map.get(conn);
      if (at !== undefined) into.push(ms - at);
      map.delete(conn);
    };
    if (match[2] === 'submit') {
      const clientPort = clientPortOf(peer, line);
      handOvers.push({ pid: match[3]!, clientPort, atMs: ms });
      const pollReturnedMs = Number(polled![1]) * 1000;
      const open = openFlips.get(match[3]!);
      if (open && pollReturnedMs <= open.atMs) open.flip.handedOverFromEarlier++;
      else if (open) open.flip.handedOverFromLater++;
      const ports = portsOf.get(match[3]!) ?? new Set<number>();
      ports.add(clientPort);
      portsOf.set(match[3]!, ports);
      const previous = handedOver.get(conn);
      inProgress.delete(conn);
      const returnedMs = returned.get(conn);
      returned.delete(conn);
      if (previous !== undefined && responded.has(conn)) {
        const handOver: KeptAliveHandOver = { pid: match[3]!, clientPort, previousHandOverMs: previous, handOverMs: ms, pollReturnedMs, ...(returnedMs !== undefined ? { returnedMs } : {}) };
        keptAliveHandOvers.push(handOver);
        inProgress.set(conn, handOver);
      }
      responded.delete(conn);
      answered.delete(conn);
      handedOver.set(conn, ms);
      submitted.set(conn, ms);
    } else if (match[2] === 'pre') {
      const handOver = inProgress.get(conn);
      if (handOver && submitted.has(conn)) handOver.pickupMs = ms - submitted.get(conn)!;
      since(submitted, pickupMs);
      started.set(conn, ms);
    } else if (match[2] === 'return') {
      // The done callback of a request whose post came before it (a hand-over of the client's FIN has none).
      const post = answered.get(conn);
      if (post !== undefined) {
        returnMs.push(ms - post);
        const handOver = inProgress.get(conn);
        if (handOver && handOver.handlerMs !== undefined && handOver.returnMs === undefined) handOver.returnMs = ms - post;
        answered.set(conn, ms);
        returned.set(conn, ms);
      }
    } else {
      if (!started.has(conn)) throw new Error(`requests.log: a post with no pre before it: "${line}"`);
      const handOver = inProgress.get(conn);
      if (handOver && handOver.pickupMs !== undefined && handOver.handlerMs === undefined) handOver.handlerMs = ms - started.get(conn)!;
      since(started, handlerMs);
      answered.set(conn, ms);
      responded.add(conn);
    }
  }
  return { handlerMs, handOvers, exits, keptAliveHandOvers, realtimeOffsetMs, pickupMs, returnMs, closeAfterRecycleTurnMs, recycleFlips, recycleFlipsWithReadable, recycleFlipReturns, recycleFlipsInSelect };
}

/**
 * The profile's two readings of the recycle flips that found something readable (`recycleFlipReturns`):
 * the share whose flag showed the select woken and not left, and how long before the others the select
 * had last returned. Neither where no such flip gave an age: the simulator then places the return as a
 * handler's.
 */
export function recycleReturnOf(flips: readonly RecycleFlipReturn[]): Pick<Profile, 'recycleFindsSelectWoken' | 'recycleLastReturnAgeMs'> {
  const agesMs = flips.flatMap((f) => (f.place === 'past-poll' && f.returnAgeMs !== null ? [f.returnAgeMs] : []));
  if (agesMs.length === 0) return {};
  const woken = flips.filter((f) => f.place === 'in-poll').length;
  return {
    recycleFindsSelectWoken: { measurement: 'hooks-under-the-calibration-load', samples: flips.length, share: round3(woken / flips.length) },
    recycleLastReturnAgeMs: { measurement: 'hooks-under-the-calibration-load', samples: agesMs.length, percentilesMs: percentilesOf(agesMs) },
  };
}

/** What the recycle flips with something readable handed over, and how old their loop's last select return was. */
export function recycleFlipReturnsLine(name: string, flips: readonly RecycleFlipReturn[]): string {
  const sum = (of: (f: RecycleFlipReturn) => number) => flips.reduce((n, f) => n + of(f), 0);
  const ages = flips.flatMap((f) => (f.returnAgeMs === null || f.place !== 'past-poll' ? [] : [f.returnAgeMs]));
  const age = ages.length === 0 ? 'none seen' : `a median ${round3(median(ages))} ms (p90 ${percentilesOf(ages)[90]} ms)`;
  const pastPoll = flips.filter((f) => f.place === 'past-poll').length;
  return `${name}: at ${flips.length} recycle flips with a connection readable (${pastPoll} past the poll by the flag), ${sum((f) => f.readable)} readable; handed over after the flip ${sum((f) => f.handedOverFromEarlier)} from a select returned before it and ${sum((f) => f.handedOverFromLater)} from one returned after it; the last return before a flip past the poll, ${age} before it`;
}

/** How long the main thread had been in its select at the flips that found it there, with nothing readable and with something. */
export function recycleFlipsInSelectLine(name: string, flips: RequestTimes['recycleFlipsInSelect']): string {
  const summary = (readable: boolean) => {
    const msIn = flips.filter((f) => (f.readable > 0) === readable).map((f) => f.inSelectForMs);
    if (msIn.length === 0) return `${readable ? 'something' : 'nothing'} readable at none`;
    const p = percentilesOf(msIn);
    return `${readable ? 'something' : 'nothing'} readable at ${msIn.length}: in it for a median ${round3(median(msIn))} ms (quartiles ${p[25]}–${p[75]} ms)`;
  };
  return `${name}: at the recycle flips that found the main thread in its select, ${summary(false)}; ${summary(true)}`;
}

/** The port of a peer as Python prints it: `('127.0.0.1', 43210)`. */
function clientPortOf(peer: string, line: string): number {
  const match = /, (\d+)\)$/.exec(peer);
  if (!match) throw new Error(`requests.log: a peer without a port: "${line}"`);
  return Number(match[1]);
}

/**
 * From a capture, the client's turnarounds, ms: on each connection, a response's last segment → the
 * client's next request segment. The first request of a connection follows no response and gives none.
 */
export function clientTurnarounds(segments: readonly Segment[]): number[] {
  const turnaroundsMs: number[] = [];
  const responseEndUs = new Map<number, number>();
  for (const segment of segments) {
    if (segment.syn || segment.rst) {
      // A new connection (a port used again), or the end of one: nothing before it is answered.
      responseEndUs.delete(segment.clientPort);
      continue;
    }
    if (segment.payloadBytes === 0) continue;
    if (segment.fromServer) {
      responseEndUs.set(segment.clientPort, segment.timeUs);
      continue;
    }
    const endUs = responseEndUs.get(segment.clientPort);
    if (endUs !== undefined) turnaroundsMs.push((segment.timeUs - endUs) / 1000);
    responseEndUs.delete(segment.clientPort);
  }
  return turnaroundsMs;
}

/**
 * From a capture, loopback's one-way latency, ms: half of each SYN → its SYN-ACK, the kernel's own
 * reply (no process is woken for it), so what is left of a round trip once the processes' waits — the
 * client's turnaround, the server's poll wait — are measured apart.
 */
export function handshakeHalfRoundTrips(segments: readonly Segment[]): number[] {
  const halvesMs: number[] = [];
  const synUs = new Map<number, number>();
  for (const segment of segments) {
    if (!segment.syn) continue;
    if (!segment.fromServer) {
      synUs.set(segment.clientPort, segment.timeUs);
      continue;
    }
    const sentUs = synUs.get(segment.clientPort);
    synUs.delete(segment.clientPort);
    if (sentUs !== undefined) halvesMs.push((segment.timeUs - sentUs) / 2000);
  }
  return halvesMs;
}

/** What pairing the hooks' hand-overs with a capture's request arrivals gave. */
export interface ArrivalWaits {
  /** Each kept-alive request's arrival → its hand-over, ms. */
  readonly waitsMs: number[];
  /** The same, by hand-over (the order of `keptAliveHandOvers`): absent where none was paired. */
  readonly waitOfHandOver: (number | undefined)[];
  /** Hand-overs with no request segment for them in the capture: of the client's FIN (ab's last close). */
  readonly ofNoRequest: number;
}

/**
 * A graceful exit's teardown, ms: from a worker's worker_exit hook (its loop, futures and sockets done)
 * to the process gone, when the kernel closes the connections it still held — on each of its
 * connections open at the exit (its client port's last SYN before the exit, no close of the server's
 * between them), the server's first FIN or RST after; the earliest of them. A worker that held none
 * at its exit gives no sample.
 */
export function teardowns(times: Pick<RequestTimes, 'exits' | 'realtimeOffsetMs'>, segments: readonly Segment[]): { readonly pid: string; readonly ms: number }[] {
  const byPort = new Map<number, Segment[]>();
  for (const segment of segments) {
    const onPort = byPort.get(segment.clientPort);
    if (onPort) onPort.push(segment);
    else byPort.set(segment.clientPort, [segment]);
  }
  const teardownsMs: { pid: string; ms: number }[] = [];
  for (const exit of times.exits) {
    const offsetMs = times.realtimeOffsetMs.get(exit.pid);
    if (offsetMs === undefined) continue;
    const exitUs = (exit.atMs + offsetMs) * 1000;
    let goneUs: number | undefined;
    for (const port of exit.clientPorts) {
      const onPort = byPort.get(port) ?? [];
      let synUs: number | undefined;
      for (const s of onPort) if (s.syn && !s.fromServer && s.timeUs < exitUs) synUs = s.timeUs;
      if (synUs === undefined) continue;
      const close = onPort.find((s) => s.fromServer && (s.fin || s.rst) && s.timeUs > synUs!);
      if (close === undefined || close.timeUs < exitUs - CLOCK_SLACK_US) continue;
      goneUs = goneUs === undefined ? close.timeUs : Math.min(goneUs, close.timeUs);
    }
    if (goneUs !== undefined) teardownsMs.push({ pid: exit.pid, ms: Math.max(0, goneUs - exitUs) / 1000 });
  }
  return teardownsMs;
}

/** How many of the measured kept-alive requests a profile keeps whole (an even sample over the run): enough that each count of held connections has rows of its own. */
const JOINT_ROWS = 3000;

/** A connection in a capture: the client's SYN → the first FIN or RST after it (either side's), µs, CLOCK_REALTIME. */
interface CapturedConnection {
  readonly openUs: number;
  closeUs: number;
  pid?: string;
  /** Its first hand-over (gthread 20.1: its accept, which hands it to the pool at once), µs, CLOCK_REALTIME. */
  acceptUs?: number;
}

/**
 * The capture's connections, each the worker's that handed a request of its port over while it was
 * open (its first hand-over: in gthread 20.1 the accept), by worker; and the hooks' clock on the
 * capture's (undefined where the worker wrote no clock line).
 */
function connectionsOfWorkers(times: Pick<RequestTimes, 'handOvers' | 'realtimeOffsetMs'>, segments: readonly Segment[]) {
  const connectionsOfPort = new Map<number, CapturedConnection[]>();
  for (const segment of segments) {
    const onPort = connectionsOfPort.get(segment.clientPort);
    const last = onPort?.[onPort.length - 1];
    if (segment.syn && !segment.fromServer) {
      // A SYN sent again (the first lost or refused) is the same connection.
      if (last !== undefined && last.closeUs === Number.POSITIVE_INFINITY) continue;
      const connection = { openUs: segment.timeUs, closeUs: Number.POSITIVE_INFINITY };
      if (onPort) onPort.push(connection);
      else connectionsOfPort.set(segment.clientPort, [connection]);
    } else if ((segment.fin || segment.rst) && last !== undefined && last.closeUs === Number.POSITIVE_INFINITY) last.closeUs = segment.timeUs;
  }
  const realUs = (pid: string, ms: number): number | undefined => {
    const offsetMs = times.realtimeOffsetMs.get(pid);
    return offsetMs === undefined ? undefined : (ms + offsetMs) * 1000;
  };
  const connectionsOfPid = new Map<string, CapturedConnection[]>();
  for (const handOver of [...times.handOvers].sort((a, b) => a.atMs - b.atMs)) {
    const atUs = realUs(handOver.pid, handOver.atMs);
    if (atUs === undefined) continue;
    const connection = connectionsOfPort.get(handOver.clientPort)?.find((c) => c.openUs <= atUs + CLOCK_SLACK_US && atUs <= c.closeUs + CLOCK_SLACK_US);
    if (connection === undefined || connection.pid !== undefined) continue;
    connection.pid = handOver.pid;
    connection.acceptUs = atUs;
    const ofPid = connectionsOfPid.get(handOver.pid);
    if (ofPid) ofPid.push(connection);
    else connectionsOfPid.set(handOver.pid, [connection]);
  }
  return { realUs, connectionsOfPid };
}

/**
 * What gthread's accepts took, from the hooks' hand-overs and the capture. A gthread 20.1 worker's loop
 * takes one connection per turn: the listener is one descriptor in its poller, and its callback calls
 * accept() once (workers/gthread.py `accept`), so connections queued together wait for the loop's turns
 * — the reconnections after a recycle come together. `turnsMs`: a worker's accept → its next accept,
 * where that next connection's SYN came before the first (it waited in the queue for the turn); its
 * first hand-over is the accept (enqueue_req, at once). `waitsMs`: each accepted connection's SYN → its
 * accept, what the simulator's accepts are checked against (simulator/README.md, "One accept a turn").
 */
export function acceptTurns(times: Pick<RequestTimes, 'handOvers' | 'realtimeOffsetMs'>, segments: readonly Segment[]): { readonly turnsMs: number[]; readonly waitsMs: number[] } {
  const turnsMs: number[] = [];
  const waitsMs: number[] = [];
  for (const connections of connectionsOfWorkers(times, segments).connectionsOfPid.values()) {
    const accepted = connections.filter((c) => c.acceptUs !== undefined).sort((a, b) => a.acceptUs! - b.acceptUs!);
    accepted.forEach((c, i) => {
      waitsMs.push(Math.max(0, c.acceptUs! - c.openUs) / 1000);
      const before = accepted[i - 1];
      if (before !== undefined && c.openUs < before.acceptUs!) turnsMs.push((c.acceptUs! - before.acceptUs!) / 1000);
    });
  }
  return { turnsMs, waitsMs };
}

/**
 * For each kept-alive hand-over, the connections its worker held then, itself among them: each
 * connection in the capture (the client's SYN → the first FIN or RST after it, either side's) is the
 * worker's that handed a request of its port over while it was open; undefined where the worker wrote
 * no clock line. What makes a gthread request slower the more its worker holds: its threads share one
 * GIL (simulator/request-rows.ts).
 */
export function heldAtHandOvers(times: Pick<RequestTimes, 'handOvers' | 'keptAliveHandOvers' | 'realtimeOffsetMs'>, segments: readonly Segment[]): (number | undefined)[] {
  const { realUs, connectionsOfPid } = connectionsOfWorkers(times, segments);
  return times.keptAliveHandOvers.map((handOver) => {
    const atUs = realUs(handOver.pid, handOver.handOverMs);
    if (atUs === undefined) return undefined;
    // Its own connection counts whatever the clocks' reading error says.
    return Math.max(1, (connectionsOfPid.get(handOver.pid) ?? []).filter((c) => c.openUs <= atUs && atUs < c.closeUs).length);
  });
}

/**
 * Each kept-alive request's times together — its wait in the poller, the thread's pickup, the handler,
 * the return — what made its connection readable, and how long after its poll's return the loop
 * handed it over (the rest of its wait: the loop's turn through what that poll returned), for the requests the capture and the hooks saw
 * whole, sampled evenly over the run. They share one GIL and two cores: a request that waited long in
 * the poller waited while threads ran, and is picked up fast, so drawing them apart adds up tails that
 * do not come together (measured: drawn apart, the simulated latency's median was twice the real one).
 *
 * The wait runs from the later of the request's arrival and the connection's return to the poller: a
 * connection back with its request already in waits for the loop's next turn from its return, however
 * long the request had waited in the socket before (measured at one worker: 1.9–3.2 ms at the median,
 * falling slowly as that earlier wait grows — never at once), while one polled when its request comes
 * waits from the arrival. A wait from the arrival alone would hand the first kind over at its return
 * whenever its request had waited longer than its draw.
 */
export function jointRequestRows(handOvers: readonly KeptAliveHandOver[], waitOfHandOver: readonly (number | undefined)[], heldOfHandOver?: readonly (number | undefined)[]): Pick<RequestRowsMeasured, 'samples' | 'rowsMs'> {
  const whole: RequestRowsMeasured['rowsMs'] = [];
  handOvers.forEach((h, i) => {
    const fromArrivalMs = waitOfHandOver[i];
    const held = heldOfHandOver?.[i];
    if (fromArrivalMs === undefined || h.returnedMs === undefined || h.pickupMs === undefined || h.handlerMs === undefined || h.returnMs === undefined) return;
    if (heldOfHandOver !== undefined && held === undefined) return;
    const arrivalMs = h.handOverMs - fromArrivalMs;
    const cameBack = arrivalMs < h.returnedMs;
    const waitMs = cameBack ? h.handOverMs - h.returnedMs : fromArrivalMs;
    // The poll returned after the connection became readable (select reports what is readable as it
    // returns): where the capture's clock puts the arrival later, by its reading's error, at the arrival.
    const afterPollReturnMs = Math.min(waitMs, Math.max(0, h.handOverMs - h.pollReturnedMs));
    whole.push(held === undefined ? [waitMs, h.pickupMs, h.handlerMs, h.returnMs, cameBack ? 1 : 0, afterPollReturnMs] : [waitMs, h.pickupMs, h.handlerMs, h.returnMs, cameBack ? 1 : 0, afterPollReturnMs, held]);
  });
  const step = Math.max(1, whole.length / JOINT_ROWS);
  const rowsMs: RequestRowsMeasured['rowsMs'] = [];
  for (let i = 0; Math.floor(i) < whole.length && rowsMs.length < JOINT_ROWS; i += step) {
    const [waitMs, pickupMs, handlerMs, returnMs, cameBack, afterPollReturnMs, held] = whole[Math.floor(i)]!;
    const times: [number, number, number, number, 0 | 1, number] = [round3(waitMs), round3(pickupMs), round3(handlerMs), round3(returnMs), cameBack, round3(afterPollReturnMs)];
    rowsMs.push(held === undefined ? times : [...times, held]);
  }
  return { samples: whole.length, rowsMs };
}

/** How far the two clocks, read side by side in Python, may put a hand-over before its request's arrival. */
const CLOCK_SLACK_US = 50;

/**
 * The poll wait measured from the request's arrival: each kept-alive hand-over paired with the last
 * request segment on its connection before it and after the hand-over before it (both in CLOCK_REALTIME:
 * the hooks' through each worker's clock line). A request arrives before it is handed over; where the
 * two clocks put the hand-over earlier (by their reading's error, µs), the wait is 0.
 */
export function arrivalWaits(times: Pick<RequestTimes, 'keptAliveHandOvers' | 'realtimeOffsetMs'>, segments: readonly Segment[]): ArrivalWaits {
  const requestsUs = new Map<number, number[]>();
  for (const segment of segments) {
    if (segment.fromServer || segment.payloadBytes === 0) continue;
    const onPort = requestsUs.get(segment.clientPort);
    if (onPort) onPort.push(segment.timeUs);
    else requestsUs.set(segment.clientPort, [segment.timeUs]);
  }
  const waitOfHandOver: (number | undefined)[] = [];
  for (const handOver of times.keptAliveHandOvers) {
    const offsetMs = times.realtimeOffsetMs.get(handOver.pid);
    if (offsetMs === undefined) throw new Error(`requests.log: worker ${handOver.pid} handed over requests but wrote no clock line`);
    const previousUs = (handOver.previousHandOverMs + offsetMs) * 1000;
    const handOverUs = (handOver.handOverMs + offsetMs) * 1000;
    const onPort = requestsUs.get(handOver.clientPort) ?? [];
    let arrivalUs: number | undefined;
    for (let i = onPort.length - 1; i >= 0 && arrivalUs === undefined; i--) {
      if (onPort[i]! <= previousUs + CLOCK_SLACK_US) break;
      if (onPort[i]! <= handOverUs + CLOCK_SLACK_US) arrivalUs = onPort[i];
    }
    waitOfHandOver.push(arrivalUs === undefined ? undefined : Math.max(0, handOverUs - arrivalUs) / 1000);
  }
  const waitsMs = waitOfHandOver.filter((ms): ms is number => ms !== undefined);
  return { waitsMs, waitOfHandOver, ofNoRequest: waitOfHandOver.length - waitsMs.length };
}

/** A reload's timings, ms (see `reloadTimings`). */
export interface ReloadTimes {
  /** Each HUP → the first SIGTERM the arbiter sent after it: its reload's spawn loop, forking the new generation. */
  readonly killDelayMs: number[];
  /**
   * Each retired worker with a connection readable at its handler: its loop's last hand-over before its
   * kill → the kill. Its loop had stopped handing over that long before the signal came.
   */
  readonly stallBeforeKillMs: number[];
}

/**
 * From a reload run's stop lines and the HUPs' times (CLOCK_MONOTONIC, as the hooks', ms): for each HUP,
 * the SIGTERMs the arbiter sent before the next HUP (or a second after it; gunicorn TERMs the retired
 * generation again at each turn of its loop while it outnumbers `workers`, so only a worker's first kill
 * counts), the first of them timing the reload's spawn loop; and for each of those workers whose handler
 * found a connection readable (the poller line after it), how long before the kill its loop had handed
 * its last connection over. A loop with nothing readable does not hand over either: only a loop with
 * something to hand over tells a stall from an idle poll, and even then a connection may have become
 * readable only after the kill — so this is an upper reading of the stall.
 */
export function reloadTimings(lines: readonly string[], hupsMs: readonly number[]): ReloadTimes {
  const { marks, pollers } = stopLines(lines);
  const killed = new Set<string>();
  const firstKills = marks.filter((m) => m.kind === 'kill' && m.signal === os.constants.signals.SIGTERM).sort((a, b) => a.ms - b.ms).filter((kill) => !killed.has(kill.pid) && killed.add(kill.pid));
  const killDelayMs: number[] = [];
  const stallBeforeKillMs: number[] = [];
  const hups = [...hupsMs].sort((a, b) => a - b);
  hups.forEach((hupMs, i) => {
    const untilMs = Math.min(hups[i + 1] ?? Number.POSITIVE_INFINITY, hupMs + RELOAD_KILL_WINDOW_MS);
    const kills = firstKills.filter((k) => k.ms >= hupMs && k.ms < untilMs);
    if (kills.length === 0) return;
    killDelayMs.push(kills[0]!.ms - hupMs);
    for (const kill of kills) {
      const poller = pollerAfter(pollers, kill);
      if (!poller || poller.readable <= 0) continue;
      const lastMs = marks.filter((m) => m.kind === 'submit' && m.pid === kill.pid && m.ms < kill.ms).reduce((latest, m) => Math.max(latest, m.ms), Number.NEGATIVE_INFINITY);
      if (lastMs > Number.NEGATIVE_INFINITY) stallBeforeKillMs.push(kill.ms - lastMs);
    }
  });
  return { killDelayMs, stallBeforeKillMs };
}

/** How long after a HUP a SIGTERM still counts as its reload's (measured: 12–45 ms). */
const RELOAD_KILL_WINDOW_MS = 1000;

/** One moment of a stop, as the hooks or a trace give it: a kill(2) by the arbiter, or a worker's handler, hand-over or listener close (ms). */
export type StopMark =
  | { readonly ms: number; readonly kind: 'kill'; readonly pid: string; readonly signal: number }
  | { readonly ms: number; readonly kind: WorkerMarkKind; readonly pid: string };

/** A worker's marks of a stop: its handler, a hand-over, its listener copy's close, its exit (our server's trace only). */
type WorkerMarkKind = 'handler' | 'submit' | 'listener-close' | 'exit';

/**
 * From a stop run's lines (`<seconds> kill <pid> <signal>` from the arbiter; `<seconds> handler|submit|listener-close <pid>`
 * from its workers), in ms: see `stopTimingsOf`; and where the hand-overs are gthread's, whether each loop
 * stopped before its handler (`loopStopsAtKills`).
 */
export function stopTimings(lines: readonly string[]): StopTimes {
  const { marks, pollers } = stopLines(lines);
  return { ...stopTimingsOf(marks), loopStops: loopStopsAtKills(marks), atHandlers: pollersAtHandlers(marks, pollers) };
}

/** What a gthread worker's poller held as its handler ran (the stop hooks' `at-handler` line), ms. */
interface PollerAtHandler {
  readonly ms: number;
  readonly pid: string;
  /** −1: the poller could not be read. */
  readonly readable: number;
  readonly held: number;
}

/** A stop run's lines: its kill, handler, submit and listener-close marks, and its poller lines (ms); any other line is refused, named. */
function stopLines(lines: readonly string[]): { marks: StopMark[]; pollers: PollerAtHandler[] } {
  const marks: StopMark[] = [];
  const pollers: PollerAtHandler[] = [];
  for (const line of lines) {
    const poller = /^(\d+(?:\.\d+)?) at-handler (\d+) (-?\d+) (\d+)$/.exec(line);
    if (poller) {
      pollers.push({ ms: Number(poller[1]) * 1000, pid: poller[2]!, readable: Number(poller[3]), held: Number(poller[4]) });
      continue;
    }
    const match = /^(\d+(?:\.\d+)?) (?:kill (\d+) (\d+)|(handler|submit|listener-close) (\d+))$/.exec(line);
    if (!match) throw new Error(`stops.log: unexpected line "${line}"`);
    const ms = Number(match[1]) * 1000;
    if (match[2] !== undefined) marks.push({ ms, kind: 'kill', pid: match[2], signal: Number(match[3]) });
    else marks.push({ ms, kind: match[4] as 'handler' | 'submit' | 'listener-close', pid: match[5]! });
  }
  return { marks, pollers };
}

/** A kill's worker's first poller line after it: its handler's. */
function pollerAfter(pollers: readonly PollerAtHandler[], kill: StopMark): PollerAtHandler | undefined {
  return pollers.filter((p) => p.pid === kill.pid && p.ms >= kill.ms).sort((a, b) => a.ms - b.ms)[0];
}

/** The first of a worker's marks of a kind in [fromMs, toMs], ms. */
function firstMark(marks: readonly StopMark[], kind: WorkerMarkKind, pid: string, fromMs: number, toMs = Number.POSITIVE_INFINITY): number | undefined {
  return marks.filter((m) => m.kind === kind && m.pid === pid && m.ms >= fromMs && m.ms <= toMs).reduce<number | undefined>((least, m) => (least === undefined || m.ms < least ? m.ms : least), undefined);
}

/**
 * Each worker's first poller line after a SIGTERM kill (its handler's), with the hand-overs of its last
 * turn: from the handler to its listener close. A line whose poller could not be read (−1) is no sample.
 */
export function pollersAtHandlers(marks: readonly StopMark[], pollers: readonly PollerAtHandler[]): StopTimes['atHandlers'] {
  const out = { handlers: 0, held: 0, readable: 0, handedOver: 0 };
  for (const kill of marks) {
    if (kill.kind !== 'kill' || kill.signal !== os.constants.signals.SIGTERM) continue;
    const at = pollerAfter(pollers, kill);
    if (!at || at.readable < 0) continue;
    const closeMs = firstMark(marks, 'listener-close', kill.pid, at.ms) ?? Number.POSITIVE_INFINITY;
    out.handlers++;
    out.held += at.held;
    out.readable += at.readable;
    out.handedOver += marks.filter((m) => m.kind === 'submit' && m.pid === kill.pid && m.ms >= at.ms && m.ms <= closeMs).length;
  }
  return out;
}

/**
 * For each SIGTERM kill that a handler of its worker followed, whether that worker's loop handed anything
 * over (a `submit`: gthread's enqueue_req) after the kill and before the handler. CPython runs a handler
 * in the main thread at its next bytecode; the main thread is the loop that hands over; so a wait for the
 * handler is a wait of the loop, unless the signal reached the process while another thread ran.
 */
export function loopStopsAtKills(marks: readonly StopMark[]): StopTimes['loopStops'] {
  const out = { stopped: 0, ran: 0 };
  for (const kill of marks) {
    if (kill.kind !== 'kill' || kill.signal !== os.constants.signals.SIGTERM) continue;
    const handlerMs = firstMark(marks, 'handler', kill.pid, kill.ms);
    if (handlerMs === undefined) continue;
    const ran = marks.some((m) => m.kind === 'submit' && m.pid === kill.pid && m.ms > kill.ms && m.ms < handlerMs);
    if (ran) out.ran++;
    else out.stopped++;
  }
  return out;
}

/**
 * A stop's marks, in ms: the gaps between the arbiter's successive SIGTERM kills; each kill → that
 * worker's first handler after it; and, for each worker that closed its listener copy after its handler,
 * the first hand-over between them (the poll that ended the last turn: the loop looks at `alive` only
 * after its hand-overs) — or the handler, where none came — → the close.
 */
export function stopTimingsOf(marks: readonly StopMark[]): Omit<StopTimes, 'loopStops' | 'atHandlers'> {
  const kills = marks.filter((m) => m.kind === 'kill' && m.signal === os.constants.signals.SIGTERM).sort((a, b) => a.ms - b.ms);
  const first = (kind: WorkerMarkKind, pid: string, fromMs: number, toMs?: number) => firstMark(marks, kind, pid, fromMs, toMs);
  const killGapMs = kills.slice(1).map((k, i) => k.ms - kills[i]!.ms);
  const signalHandlerMs: number[] = [];
  const closeAfterTurnMs: number[] = [];
  const exitAfterCloseMs: number[] = [];
  for (const kill of kills) {
    const handler = first('handler', kill.pid, kill.ms);
    if (handler === undefined) continue;
    signalHandlerMs.push(handler - kill.ms);
    const close = first('listener-close', kill.pid, handler);
    if (close === undefined) continue;
    closeAfterTurnMs.push(close - (first('submit', kill.pid, handler, close) ?? handler));
    const exit = first('exit', kill.pid, close);
    if (exit !== undefined) exitAfterCloseMs.push(exit - close);
  }
  return { killGapMs, signalHandlerMs, closeAfterTurnMs, exitAfterCloseMs };
}

function gunicornStopTimes(dir: string): StopTimes {
  return stopTimings(readFileSync(join(dir, 'stops.log'), 'utf8').split('\n').filter(Boolean));
}

function gunicornRequestTimes(dir: string): RequestTimes {
  // Each worker wrote its lines at once, in its own order: a connection's lines are in order within it.
  return requestTimings(readFileSync(join(dir, 'requests.log'), 'utf8').split('\n').filter(Boolean));
}

/** Pairs each exit with the next ready not yet paired (replacements come in the order of exits), in ms. */
interface LifeEvent {
  readonly ms: number;
  readonly kind: 'exit' | 'ready';
  /** The exiting worker's (gunicorn's worker_exit hook names it). */
  readonly pid?: string;
}

export function exitToReady(events: readonly LifeEvent[]): number[] {
  return exitsToReady(events).map((x) => x.ms);
}

/** The same pairs, each with the exiting worker's pid where the line gave one. */
export function exitsToReady(events: readonly LifeEvent[]): { readonly pid?: string; readonly ms: number }[] {
  const waiting: LifeEvent[] = [];
  const samples: { pid?: string; ms: number }[] = [];
  for (const e of [...events].sort((a, b) => a.ms - b.ms)) {
    if (e.kind === 'exit') waiting.push(e);
    else if (waiting.length > 0) {
      const exit = waiting.shift()!;
      samples.push({ ...(exit.pid !== undefined ? { pid: exit.pid } : {}), ms: e.ms - exit.ms });
    }
  }
  return samples;
}

/**
 * Replacements measured from the exiting process gone (its teardown's end) rather than from its exit
 * hook: each exit → ready pair less that worker's teardown, where the capture saw it (a worker that held
 * no connection at its exit shows no close, and gives no sample).
 */
export function goneToReady(pairs: readonly { readonly pid?: string; readonly ms: number }[], teardownsMs: readonly { readonly pid: string; readonly ms: number }[]): number[] {
  return withTeardowns(pairs, teardownsMs).map(([, restMs]) => restMs);
}

/** Each pair whose worker's teardown the capture saw: [its teardown, the pair's time less it], ms. */
function withTeardowns(pairs: readonly { readonly pid?: string; readonly ms: number }[], teardownsMs: readonly { readonly pid: string; readonly ms: number }[]): [number, number][] {
  const teardownOf = new Map(teardownsMs.map((t) => [t.pid, t.ms]));
  return pairs.flatMap((p): [number, number][] => {
    const teardown = p.pid === undefined ? undefined : teardownOf.get(p.pid);
    return teardown === undefined ? [] : [[teardown, Math.max(0, p.ms - teardown)]];
  });
}

/**
 * Times from a worker's exit hook, counted from its process gone where the target measures a teardown
 * (the simulator then waits it apart, so it must not count twice); where it measures none, whole.
 */
function fromTheProcessGone(pairs: readonly { readonly pid?: string; readonly ms: number }[], teardownsMs: readonly { readonly pid: string; readonly ms: number }[]): number[] {
  return teardownsMs.length > 0 ? goneToReady(pairs, teardownsMs) : pairs.map((p) => p.ms);
}

/** A line of gunicorn's hooks.log (`<seconds> exit|ready|forked|reaped <pid>`), ms on CLOCK_MONOTONIC. */
export interface LifeLine {
  readonly ms: number;
  readonly kind: 'exit' | 'ready' | 'forked' | 'reaped';
  readonly pid: string;
}

const LIFE_KINDS: readonly LifeLine['kind'][] = ['exit', 'ready', 'forked', 'reaped'];

export function lifeLines(lines: readonly string[]): LifeLine[] {
  return lines.map((line) => {
    const match = /^(\d+(?:\.\d+)?) (\S+) (\d+)$/.exec(line);
    const kind = LIFE_KINDS.find((k) => k === match?.[2]);
    if (!match || kind === undefined) throw new Error(`hooks.log: unexpected line "${line}"; expected "<seconds> ${LIFE_KINDS.join('|')} <pid>"`);
    return { ms: Number(match[1]) * 1000, kind, pid: match[3]! };
  });
}

function readLifeLines(dir: string): LifeLine[] {
  return lifeLines(readFileSync(join(dir, 'hooks.log'), 'utf8').split('\n').filter(Boolean));
}

function gunicornBoots(dir: string): { readonly pid?: string; readonly ms: number }[] {
  const events = readLifeLines(dir).flatMap((l): LifeEvent[] => (l.kind === 'exit' ? [{ ms: l.ms, kind: 'exit', pid: l.pid }] : l.kind === 'ready' ? [{ ms: l.ms, kind: 'ready' }] : []));
  return exitsToReady(events);
}

/** What the arbiter's hooks say of its replacements under the load, ms. */
export interface ArbiterTimes {
  /** A worker's worker_exit hook → its reap (child_exit), for each reap the arbiter filled with a fork (under the load: not the final stop's). */
  readonly exitToReap: { readonly pid: string; readonly ms: number }[];
  /** A fork (post_fork, in the child) → that worker ready (post_worker_init). */
  readonly forkToReadyMs: number[];
  /** A reap → the fork that fills it, where the fork before had been at least the spawn loop's longest sleep earlier: nothing queued ahead. */
  readonly reapToForkMs: number[];
  /** Successive forks where the later one's vacancy was reaped before the earlier fork: it waited for it, and for the sleep after it. */
  readonly forkGapMs: number[];
}

/** gunicorn's spawn loop sleeps `0.1 * random.random()` s after each fork (arbiter.py `spawn_workers`): its longest pause, ms. */
const SPAWN_LOOP_SLEEP_MAX_MS = 100;

/**
 * The arbiter's reaps and forks, from its hooks. Its first `workers` forks fill the start's vacancies;
 * every later one fills a reap's, in the order of the reaps (it counts vacancies, and does not name
 * them). A fork whose reap came before the fork ahead of it waited in the queue: the gap between the
 * two is a sample of the loop's pace. One whose reap came at least the loop's longest sleep after the
 * fork ahead found nothing queued: its reap → fork is a sample of the arbiter's wake-up. Between the
 * two, the reap may have waited for part of a sleep: no sample.
 */
export function arbiterTimes(lines: readonly LifeLine[], workers: number): ArbiterTimes {
  const sorted = [...lines].sort((a, b) => a.ms - b.ms);
  const forks = sorted.filter((l) => l.kind === 'forked');
  const reaps = sorted.filter((l) => l.kind === 'reaped');
  const exitOf = new Map(sorted.filter((l) => l.kind === 'exit').map((l) => [l.pid, l.ms]));
  const readyOf = new Map(sorted.filter((l) => l.kind === 'ready').map((l) => [l.pid, l.ms]));
  const forkToReadyMs = forks.flatMap((f) => {
    const readyMs = readyOf.get(f.pid);
    return readyMs === undefined ? [] : [readyMs - f.ms];
  });
  const exitToReap: { pid: string; ms: number }[] = [];
  const reapToForkMs: number[] = [];
  const forkGapMs: number[] = [];
  for (let j = 0; j < reaps.length && workers + j < forks.length; j++) {
    const reap = reaps[j]!;
    const fork = forks[workers + j]!;
    const ahead = forks[workers + j - 1]!;
    if (fork.ms < reap.ms) throw new Error(`hooks.log: worker ${fork.pid} forked at ${fork.ms.toFixed(1)} ms, before the reap of ${reap.pid} it fills (${reap.ms.toFixed(1)} ms): not one arbiter replacing workers in turn`);
    if (reap.ms <= ahead.ms) forkGapMs.push(fork.ms - ahead.ms);
    else if (reap.ms >= ahead.ms + SPAWN_LOOP_SLEEP_MAX_MS) reapToForkMs.push(fork.ms - reap.ms);
    const exitMs = exitOf.get(reap.pid);
    if (exitMs !== undefined) exitToReap.push({ pid: reap.pid, ms: reap.ms - exitMs });
  }
  return { exitToReap, forkToReadyMs, reapToForkMs, forkGapMs };
}

/**
 * A graceful exit's reap after its teardown: each exit → reap less that worker's teardown (the capture's
 * first close after the exit hook), where it was seen; where the target measures no teardown (the
 * simulator then tears down at once), the whole exit → reap.
 */
export function reapsAfterTeardown(exitToReap: ArbiterTimes['exitToReap'], teardownsMs: readonly { readonly pid: string; readonly ms: number }[]): number[] {
  return fromTheProcessGone(exitToReap, teardownsMs);
}

/** Each exit whose teardown the capture saw, whole: [its teardown, the reap after it], ms — one process's end, kept together. */
export function gracefulExitRows(exitToReap: ArbiterTimes['exitToReap'], teardownsMs: readonly { readonly pid: string; readonly ms: number }[]): [number, number][] {
  return withTeardowns(exitToReap, teardownsMs);
}

function quiesceBoots(dir: string): { readonly pid?: string; readonly ms: number }[] {
  const trace = readTrace(join(dir, 'trace.jsonl'));
  const events: LifeEvent[] = [];
  for (const e of trace.events) {
    if (e.type === 'worker.exit') events.push({ ms: e.t, kind: 'exit' });
    else if (e.type === 'worker.ready') events.push({ ms: e.t, kind: 'ready' });
  }
  return exitsToReady(events);
}

/**
 * `quiesce serve`'s stop, from its lifecycle trace (the arbiter and its workers on one monotonic clock),
 * as gunicorn's stop hooks give it: an `arbiter.kill` a kill; a worker's `worker.signal` TERM its
 * handler; its `worker.turn-end` the poll that ended its last turn, where gthread's hook sees a
 * hand-over; its `worker.close-listener` the close; its `worker.exit` its exit, its connections closed (gunicorn's
 * hooks have no such mark: its exit is the capture's teardown). A worker is named by its number.
 */
export function traceStopMarks(events: readonly TraceEvent[]): StopMark[] {
  const number = (worker: string) => worker.slice(worker.indexOf('/') + 1);
  return events.flatMap((e): StopMark[] => {
    if (e.type === 'arbiter.kill') return [{ ms: e.t, kind: 'kill', pid: number(e.worker), signal: os.constants.signals[`SIG${e.signal}`] }];
    if (e.type === 'worker.signal' && e.signal === 'TERM') return [{ ms: e.t, kind: 'handler', pid: number(e.actor) }];
    if (e.type === 'worker.turn-end') return [{ ms: e.t, kind: 'submit', pid: number(e.actor) }];
    if (e.type === 'worker.close-listener') return [{ ms: e.t, kind: 'listener-close', pid: number(e.actor) }];
    if (e.type === 'worker.exit') return [{ ms: e.t, kind: 'exit', pid: number(e.actor) }];
    return [];
  });
}

const QUIESCE_STOPS = {
  // The main thread's place at a handler is gthread's; an event loop runs a handler between callbacks (never counted).
  times: (dir: string): StopTimes => ({ ...stopTimingsOf(traceStopMarks(readTrace(join(dir, 'trace.jsonl')).events)), loopStops: { stopped: 0, ran: 0 }, atHandlers: { handlers: 0, held: 0, readable: 0, handedOver: 0 } }),
  method:
    "the server's lifecycle trace (--trace-events lifecycle: the arbiter and its workers on one monotonic clock): the gaps between the arbiter's successive TERM kills of one stop (arbiter.kill); a kill → that worker's worker.signal (its handler, run by its event loop); the end of its last loop turn (worker.turn-end), or the handler where none came first → its listener copy's close (worker.close-listener); that close → its exit (worker.exit: the connections it still held closed)",
};

const GUNICORN_STOPS = {
  times: gunicornStopTimes,
  reloads: (dir: string, hupsMs: readonly number[]) => reloadTimings(readFileSync(join(dir, 'stops.log'), 'utf8').split('\n').filter(Boolean), hupsMs),
  files: { 'hooks.py': GUNICORN_STOP_HOOKS },
  method:
    "gunicorn's hooks (CLOCK_MONOTONIC): the arbiter's kill_worker wrapped in when_ready; each worker's SIGTERM handler, its listener copies' close and its loop's enqueue_req wrapped in post_worker_init. The gaps between the arbiter's successive kills of one stop; a kill → that worker's handler; the first hand-over after the handler (the poll that ended the last turn), or the handler where none came → the listener close; and, for each handler, whether the worker's loop handed anything over (enqueue_req) between the kill and the handler",
};

const GUNICORN_BOOT_METHOD =
  "gunicorn's worker_exit and post_worker_init hooks (CLOCK_MONOTONIC), each exit paired with the next worker ready; and the arbiter's side of each replacement, by its post_fork hook (in the child, at its start) and child_exit (in the arbiter, as it reaps): each worker's fork → ready; each exit → its reap, for the reaps the arbiter filled with a fork (not the final stop's), less that worker's teardown where the capture saw it, and the two together per worker (its teardown, the reap after it); the forks after the first `workers` paired with the reaps in order (the arbiter counts vacancies), a fork whose reap came before the fork ahead of it giving the gap between the two (the spawn loop's pace: its sleep(0.1 * random()) after each fork, and the next fork), one whose reap came 100 ms or more (that sleep's longest) after the fork ahead giving its reap → fork (the arbiter's wake-up)";

const GUNICORN_FLAGS = `--bind {bind} --workers {workers} --keep-alive {keepalive} --max-requests {max-requests} --log-level warning -c hooks.py --pythonpath ${APPS_DIR} hello_app:app`;

/** The policy our server is measured under (its policy is a flag): the calibration's rows run it so. */
const QUIESCE_MEASURED_POLICY = 'gunicorn-gthread';
const QUIESCE_SERVE = `${process.execPath} ${new URL('../bin/quiesce.mjs', import.meta.url).pathname} serve --app hello --policy ${QUIESCE_MEASURED_POLICY} --bind {bind} --workers {workers} --threads {threads} --keepalive {keepalive} --max-requests {max-requests}`;

export const TARGETS: Record<string, Target> = {
  'gunicorn-20.1-gthread': {
    describes: "Debian's gunicorn 20.1 with gthread workers, a WSGI app that answers 14 bytes, on loopback",
    policy: 'gunicorn-gthread',
    command: `gunicorn -k gthread --threads {threads} ${GUNICORN_FLAGS}`,
    files: { 'hooks.py': GUNICORN_HOOKS },
    boots: gunicornBoots,
    bootMethod: GUNICORN_BOOT_METHOD,
    arbiterTimes: (dir, workers) => arbiterTimes(readLifeLines(dir), workers),
    requestTimes: gunicornRequestTimes,
    stops: GUNICORN_STOPS,
  },
  'gunicorn-20.1-sync': {
    describes: "Debian's gunicorn 20.1 with sync workers, a WSGI app that answers 14 bytes, on loopback",
    policy: 'gunicorn-sync',
    command: `gunicorn -k sync ${GUNICORN_FLAGS}`,
    files: { 'hooks.py': GUNICORN_HOOKS },
    boots: gunicornBoots,
    bootMethod: GUNICORN_BOOT_METHOD,
    arbiterTimes: (dir, workers) => arbiterTimes(readLifeLines(dir), workers),
    stops: GUNICORN_STOPS,
  },
  'quiesce-serve': {
    describes: '`quiesce serve --app hello` (this repository), on loopback; its policy is a flag',
    // The lifecycle trace: the full one costs the server about half its throughput, which would stretch what it times.
    command: `${QUIESCE_SERVE} --trace trace.jsonl --trace-events lifecycle`,
    cpuCommand: QUIESCE_SERVE,
    runPolicy: QUIESCE_MEASURED_POLICY,
    // A worker is one Node.js process serving from its event loop: a request is read, handled and answered in one callback.
    singleThreadedLoop: true,
    files: {},
    boots: quiesceBoots,
    bootMethod: "the server's lifecycle trace (--trace-events lifecycle): each worker.exit paired with the next worker.ready",
    stops: QUIESCE_STOPS,
  },
};

/** The load: the calibration's (the seed's: 4 workers × 20 threads, keep-alive 2 s, max-requests 512; ab -c 20 -k -r). */
export const MEASURE_SERVER: ServerParams = SEED_CALIBRATION.server;
const AB_REQUESTS = MEASURE_LOAD.requests;
// ab's own timeout is MEASURE_LOAD's 30 s: the command leaves it out, as every profile's measurement has.
const AB_LOAD = ['-n', String(AB_REQUESTS), '-c', String(MEASURE_LOAD.concurrency), '-k', '-r'];
const AB_WARMUP = ['-n', '5000', '-c', String(MEASURE_LOAD.concurrency), '-k', '-r'];
/** The stops: the calibration matrix's TERM row (no recycling, a TERM 1 s into the load), several times — each gives a sample per worker. */
const STOP_RUNS = 10;
const STOP_AT_MS = 1000;
const AB_STOP_LOAD = ['-n', '60000', '-c', '20', '-k', '-r'];

/** TERM runs: each a server under the load, stopped 1 s into it by kill(2) on its main process, read once it exited. */
async function measureStops(name: string, target: Target, server: ServerParams, port: number, url: string, log: (line: string) => void): Promise<{ times: StopTimes; command: string; method: string } | null> {
  const stops = target.stops;
  if (!stops) return null;
  log(`${name}: ${STOP_RUNS} stops under load (no recycling, ab ${AB_STOP_LOAD.join(' ')}, TERM at ${STOP_AT_MS} ms)`);
  const stopping: ServerParams = { ...server, maxRequests: 0, maxRequestsJitter: 0 };
  const times: StopTimes = { killGapMs: [], signalHandlerMs: [], closeAfterTurnMs: [], exitAfterCloseMs: [], loopStops: { stopped: 0, ran: 0 }, atHandlers: { handlers: 0, held: 0, readable: 0, handedOver: 0 } };
  let command = '';
  for (let run = 0; run < STOP_RUNS; run++) {
    const dir = await withServer({ ...target, files: stops.files ?? target.files }, stopping, port, async (dir, filled, process_) => {
      command = filled;
      const ab = runAb([...AB_STOP_LOAD, url]);
      const timer = setTimeout(() => process_.signal('SIGTERM'), STOP_AT_MS);
      await ab.finally(() => clearTimeout(timer));
      await process_.exited;
      return dir;
    });
    const one = stops.times(dir);
    for (const key of STOP_TIME_KEYS) times[key].push(...one[key]);
    times.loopStops.stopped += one.loopStops.stopped;
    times.loopStops.ran += one.loopStops.ran;
    for (const key of ['handlers', 'held', 'readable', 'handedOver'] as const) times.atHandlers[key] += one.atHandlers[key];
  }
  if (times.signalHandlerMs.length < STOP_RUNS) throw new Error(`the stop runs saw only ${times.signalHandlerMs.length} handlers in ${STOP_RUNS} stops`);
  const { loopStops, atHandlers } = times;
  if (loopStops.stopped + loopStops.ran > 0) log(`${name}: ${loopStops.stopped} of ${loopStops.stopped + loopStops.ran} loops handed nothing over between the kill and the handler`);
  if (atHandlers.handlers > 0) log(`${name}: at ${atHandlers.handlers} handlers, ${atHandlers.readable} of ${atHandlers.held} held connections readable; their last turns handed ${atHandlers.handedOver} over`);
  return { times, command: `${fillCommand(command, stopping)}; ab ${AB_STOP_LOAD.join(' ')} ${url}, and kill -TERM on the server's main process ${STOP_AT_MS} ms into it (${STOP_RUNS} runs)`, method: stops.method };
}

/** Reload runs: the calibration matrix's HUP row (no recycling, three HUPs 1 s apart under the load), several times. */
const RELOAD_RUNS = 4;
const RELOAD_HUPS_AT_MS = [500, 1500, 2500];

/** The hooks' clock: CLOCK_MONOTONIC, which is also what process.hrtime reads on Linux (libuv's uv_hrtime). */
const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** HUP runs: each a server under the load, sent SIGHUP three times by kill(2) on its main process, read once it exited. */
async function measureReloads(name: string, target: Target, server: ServerParams, port: number, url: string, log: (line: string) => void): Promise<{ times: ReloadTimes; command: string } | null> {
  const reloads = target.stops?.reloads;
  if (!reloads) return null;
  log(`${name}: ${RELOAD_RUNS} reload runs under load (no recycling, ab ${AB_STOP_LOAD.join(' ')}, HUP at ${RELOAD_HUPS_AT_MS.join(', ')} ms)`);
  const steady: ServerParams = { ...server, maxRequests: 0, maxRequestsJitter: 0 };
  const times: ReloadTimes = { killDelayMs: [], stallBeforeKillMs: [] };
  let command = '';
  for (let run = 0; run < RELOAD_RUNS; run++) {
    const hupsMs: number[] = [];
    const dir = await withServer({ ...target, files: target.stops?.files ?? target.files }, steady, port, async (dir, filled, process_) => {
      command = filled;
      const ab = runAb([...AB_STOP_LOAD, url]);
      const timers = RELOAD_HUPS_AT_MS.map((ms) =>
        setTimeout(() => {
          hupsMs.push(monotonicMs());
          process_.signal('SIGHUP');
        }, ms),
      );
      await ab.finally(() => timers.forEach(clearTimeout));
      return dir;
    });
    const one = reloads(dir, hupsMs);
    times.killDelayMs.push(...one.killDelayMs);
    times.stallBeforeKillMs.push(...one.stallBeforeKillMs);
  }
  if (times.killDelayMs.length < RELOAD_RUNS) throw new Error(`the reload runs saw only ${times.killDelayMs.length} reloads' kills in ${RELOAD_RUNS * RELOAD_HUPS_AT_MS.length} HUPs`);
  log(`${name}: HUP → the reload's first kill, median ${round3(median(times.killDelayMs))} ms of ${times.killDelayMs.length}; a loop with something readable at its handler had stopped handing over a median ${times.stallBeforeKillMs.length > 0 ? round3(median(times.stallBeforeKillMs)) : '—'} ms before its kill (${times.stallBeforeKillMs.length} workers)`);
  return { times, command: `${fillCommand(command, steady)}; ab ${AB_STOP_LOAD.join(' ')} ${url}, and kill -HUP on the server's main process ${RELOAD_HUPS_AT_MS.join(', ')} ms into it (${RELOAD_RUNS} runs)` };
}

export function describeMachine(): string {
  const cpus = os.cpus();
  let distro = '';
  try {
    distro = `, Debian ${readFileSync('/etc/debian_version', 'utf8').trim()}`;
  } catch {
    // not Debian
  }
  return `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}${distro}, Node ${process.version}`;
}

async function withServer<T>(target: Target, params: ServerParams, port: number, body: (dir: string, command: string, server: ServerProcess) => Promise<T>): Promise<T> {
  const dir = tempDir('quiesce-profile-');
  for (const [name, text] of Object.entries(target.files)) writeFileSync(join(dir, name), text);
  const bind = `127.0.0.1:${port}`;
  const command = target.command.split('{bind}').join(bind);
  const sut = commandServer(command, bind);
  const server = sut.start(params, dir);
  try {
    await sut.listening(server, 20_000);
    return await body(dir, command, server);
  } finally {
    await stopGracefully(server);
  }
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** A value the simulator takes as its samples' median, with their range, under `measurement` (ms, to the µs). */
function measuredValueOf(measurement: string, samples: readonly number[]) {
  return { measurement, samples: samples.length, medianMs: round3(median(samples)), minMs: round3(Math.min(...samples)), maxMs: round3(Math.max(...samples)) };
}

/** The 101 percentiles 0, 1, …, 100 of the samples, ms, to the µs. */
function percentilesOf(samples: readonly number[]): number[] {
  const histogram = new LatencyHistogram();
  for (const ms of samples) histogram.record(ms);
  return Array.from({ length: 101 }, (_, p) => round3(histogram.percentileMs(p)));
}

/**
 * `workers`: the load's worker count (the calibration's 4 unless told). A profile holds for the load it
 * was measured under: one worker's 20 threads contend for one GIL and two cores differently from four
 * workers' (the matrix's 1-worker row had a real latency p50 of 4.4 ms where the simulator, with the
 * 4-worker profile, had 1.4 ms).
 */
export async function measureProfile(name: string, port: number, log: (line: string) => void, options: { workers?: number; stops?: boolean } = {}): Promise<Profile> {
  const target = TARGETS[name];
  if (!target) throw new Error(`unknown profile "${name}"; expected one of: ${Object.keys(TARGETS).join(', ')}`);
  const runPolicy = target.policy ?? target.runPolicy;
  if (runPolicy === undefined) throw new Error(`profile "${name}": its target names no policy its runs serve under (policy or runPolicy)`);
  const date = new Date().toISOString().slice(0, 10);
  const machine = describeMachine();
  const url = `http://127.0.0.1:${port}/`;
  const server: ServerParams = { ...MEASURE_SERVER, workers: options.workers ?? MEASURE_SERVER.workers };
  if (!Number.isInteger(server.workers) || server.workers < 1) throw new Error(`workers: expected a whole number ≥ 1, got ${server.workers}`);

  log(`${name}: warm-up (ab ${AB_WARMUP.join(' ')}), then service time and worker boot (${server.workers} worker${server.workers === 1 ? '' : 's'}, max-requests ${server.maxRequests}, ab ${AB_LOAD.join(' ')})`);
  // A first server and run warm what outlives a server: compiled bytecode (.pyc, V8's code cache), the page cache.
  await withServer(target, server, port, async () => runAb([...AB_WARMUP, url]));
  const run = await capturedRun(target, server, port, url, log);
  // A calibration without a stop under load (the recycling rows) may leave them out: the simulator then stops at once.
  const stops = options.stops === false ? null : await measureStops(name, target, server, port, url, log);
  const reloads = options.stops === false ? null : await measureReloads(name, target, server, port, url, log);
  // Read after the server stopped: its trace is complete then.
  const bootPairs = target.boots(run.dir);
  if (bootPairs.length < 10) throw new Error(`only ${bootPairs.length} worker replacements were seen; expected dozens`);
  const runCommand = `${fillCommand(run.command, server)}; ab ${AB_LOAD.join(' ')} -e percentiles.csv ${url} (after a first server and ab ${AB_WARMUP.join(' ')}, to warm caches)`;
  const { requests, turnaroundsMs, halfRoundTripsMs, waits, joint, teardownsMs, accepts } = readRequests(name, target, run, log);
  if (requests) log(`${name}: ${requests.recycleFlipsWithReadable} of ${requests.recycleFlipsWithReadable + requests.recycleFlips.inPoll + requests.recycleFlips.pastPoll} recycles found a connection readable at the flip; of the rest, ${requests.recycleFlips.pastPoll} found the loop past its poll`);
  if (requests && requests.recycleFlipReturns.length > 0) log(recycleFlipReturnsLine(name, requests.recycleFlipReturns));
  if (requests && requests.recycleFlipsInSelect.length > 0) log(recycleFlipsInSelectLine(name, requests.recycleFlipsInSelect));
  const cpuRun = target.cpuCommand ? await sampledRun(target, target.cpuCommand, server, port, url) : null;
  const work = cpuRun?.work ?? null;
  if (work && work.bootWorkMs.length < 10) throw new Error(`the samples saw only ${work.bootWorkMs.length} whole boots; expected dozens`);
  const activations = cpuRun ? spareActivations(cpuRun.cpu) : [];
  // The run whose conditions the simulator takes: where the CPU is measured, the sampled run (the
  // simulator shares out that run's work, without the trace's); elsewhere the one the hooks timed.
  const lostRun = cpuRun && work
    ? { ab: cpuRun.ab, measurement: 'cpu-under-the-calibration-load' }
    : { ab: run.ab, measurement: requests ? 'hooks-under-the-calibration-load' : 'ab-under-the-calibration-load' };
  log(`${name}: the run the simulator takes lost ${lostRun.ab.length} exchanges (ab's Length) of ${AB_REQUESTS}`);
  if (work) log(`${name}: CPU per request ${round3(work.requestWorkMs)} ms, per boot ${round3(median(work.bootWorkMs))} ms (median of ${work.bootWorkMs.length}), the client's per response ${work.clientWorkMs === null ? '—' : round3(work.clientWorkMs)} ms`);
  // With the teardown measured, the simulator's replacement starts where the old process is gone: the
  // boot is measured from there too, or the teardown would count twice.
  const boots = fromTheProcessGone(bootPairs, teardownsMs);
  if (boots.length < 10) throw new Error(`only ${boots.length} worker replacements were seen from the process gone; expected dozens`);
  const arbiter = arbiterDistributions(target.arbiterTimes?.(run.dir, server.workers) ?? null, teardownsMs, log, name);
  // The signal rows run without recycling: no boot takes the CPU, and a request is about twice as fast.
  // Where the hooks see requests, they are measured again under that load, for the rows that run it.
  const steadyServer: ServerParams = { ...server, maxRequests: 0 };
  const steadyRun = requests ? await capturedRun(target, steadyServer, port, url, (line) => log(`${name} (no recycling): ${line}`)) : null;
  const steady = steadyRun ? readRequests(`${name} (no recycling)`, target, steadyRun, log) : null;
  // A worker that lives for good serves with V8's optimizing tier, a recycled one without (impl/arbiter.ts workerNodeArgs): its work per request is measured apart.
  const steadyCpuRun = target.cpuCommand ? await sampledRun(target, target.cpuCommand, steadyServer, port, url) : null;
  const steadyWork = steadyCpuRun?.work ?? null;
  if (steadyWork) log(`${name} (no recycling): CPU per request ${round3(steadyWork.requestWorkMs)} ms, the client's per response ${steadyWork.clientWorkMs === null ? '—' : round3(steadyWork.clientWorkMs)} ms; ${steadyWork.sparesAtEnd} spare(s) at rest`);

  const profile: Profile = {
    name,
    describes: target.describes,
    ...(target.policy ? { policy: target.policy } : {}),
    measurements: {
      ...(requests
        ? {
            'hooks-under-the-calibration-load': {
              command: runCommand,
              date,
              machine,
              method:
                "gunicorn's pre_request and post_request hooks, and its worker's enqueue_req and finish_request wrapped in post_worker_init (CLOCK_MONOTONIC, per worker and client address): the handler's time is pre → post; the return, a post → the end of the finish_request that kept the connection (back in the poller: alive is read at its start, microseconds after the response; the lock and the register wait for the GIL); the thread pickup, a hand-over (enqueue_req) → the next pre; at a recycle (nr ≥ max_requests), the worker's last hand-over → its listener close; and where the main thread was (in its poller's select, wrapped to say so, or past it) at the pre_request of the request that reaches max-requests, right before that request's thread flips alive, with the connections its poller held readable then (its epoll polled with timeout 0) and when its select had last returned (the wrapper's clock after the select); where something was readable, the flag in the select is a select the kernel had woken and the main thread not yet left. Recycling as the calibration does; the wait for the CPU (and the GIL) included",
            },
          }
        : {
            'ab-under-the-calibration-load': {
              command: runCommand,
              date,
              machine,
              method: "ab's total time per request (-e: the 101 percentiles, µs resolution), recycling as the calibration does; the wait for the CPU included",
            },
          }),
      ...(turnaroundsMs.length > 0 || halfRoundTripsMs.length > 0
        ? {
            'capture-under-the-calibration-load': {
              command: `the same run, captured: tcpdump -i lo -n -s 96 --immediate-mode -U -w load.pcap tcp port ${port}`,
              date,
              machine,
              method: `the capture's timestamps (CLOCK_REALTIME, µs): the one-way latency, half of a SYN → its SYN-ACK (the kernel's own reply)${
                turnaroundsMs.length > 0 ? "; the client's turnaround, a response's last segment → the client's next request segment on the connection" : ''
              }${
                waits
                  ? `; the poll wait from the arrival, a kept-alive request's segment → its hand-over (enqueue_req) in the hooks, whose CLOCK_MONOTONIC each worker's clock line (time.monotonic() and time.time() side by side at its start) puts on CLOCK_REALTIME; and each kept-alive request's wait, pickup, handler and return together (the hooks' times of the same request), ${JOINT_ROWS} of them sampled evenly over the run, the wait from the later of its arrival and its connection's return to the poller (the hooks' finish_request), which of the two came last, and the connections its worker held at the hand-over (the capture's connections — the client's SYN → the first FIN or RST — of the ports that worker handed over); a graceful exit's teardown, a worker's worker_exit hook → the server's first FIN or RST after it on a connection the worker still held (the process gone, the kernel closing its fds)${
                    accepts && accepts.turnsMs.length > 0
                      ? "; a loop turn between accepts, a worker's accept → its next accept where that next connection's SYN came before the first (it waited in the queue for the turn; a connection's first hand-over, enqueue_req, is its accept)"
                      : ''
                  }`
                  : ''
              }`,
            },
          }
        : {}),
      ...(steady && steadyRun && steady.joint && steady.joint.rowsMs.length > 0
        ? {
            'capture-without-recycling': {
              command: `${fillCommand(steadyRun.command, steadyServer)}; ab ${AB_LOAD.join(' ')} ${url}, captured as above`,
              date,
              machine,
              method:
                `the calibration's load without recycling (the signal rows'): the same hooks and capture, each kept-alive request's wait (from the later of its arrival and its connection's return to the poller), pickup, handler and return together, which came last, and the connections its worker held, sampled evenly over the run (${handOversByWorker(steady.requests?.keptAliveHandOvers ?? [])}); the client's turnaround`,
            },
          }
        : {}),
      ...(stops
        ? {
            'stops-under-load': {
              command: stops.command,
              date,
              machine,
              method: stops.method,
            },
          }
        : {}),
      ...(reloads
        ? {
            'reloads-under-load': {
              command: reloads.command,
              date,
              machine,
              method:
                "the stop runs' hooks, and each HUP's time as the measuring process sent it (process.hrtime: CLOCK_MONOTONIC, the hooks' clock): each HUP → the first SIGTERM the arbiter sent after it (reload(): it forks the new generation, then manage_workers TERMs the old), a worker's first TERM only (the arbiter TERMs the retired generation again at each turn of its loop); and, for each TERMed worker whose poller held a readable connection at its handler (epoll, the listeners left out), its loop's last hand-over (enqueue_req) before the kill → the kill",
            },
          }
        : {}),
      ...(work && cpuRun
        ? {
            'cpu-under-the-calibration-load': {
              command: `${fillCommand(cpuRun.command, server)}; ab ${AB_LOAD.join(' ')} ${url} (a run of its own, not captured)`,
              date,
              machine,
              method: `/proc/<pid>/stat's utime + stime (${cpuRun.cpu.samples} samples, every ${CPU_SAMPLE_INTERVAL_MS} ms) of each of the arbiter's children, told apart by their titles (quiesce: spare, quiesce: worker N), and of ab; the cores, os.availableParallelism(). A request's work: the workers' CPU while titled workers, over the requests ab had answered (complete less failed); a boot's: a process started during the run, its CPU at its last sample before its title said worker (starting, or a spare); the client's: ab's CPU over its requests; the spares, the processes titled quiesce: spare at the end of the run without recycling (at rest: no worker replaced for seconds); a loaded spare's activation, from a worker's exit (the arbiter spawns its replacement as it reaps it: the process gone from its children, or a zombie) to the spare that replaces it titled a worker, where that spare had its app loaded (titled a spare) before the exit — exits and new workers paired in order, at the sampling's resolution`,
            },
          }
        : {}),
      ...(steadyWork && steadyCpuRun
        ? {
            'cpu-without-recycling': {
              command: `${fillCommand(steadyCpuRun.command, steadyServer)}; ab ${AB_LOAD.join(' ')} ${url} (a run of its own, not captured)`,
              date,
              machine,
              method: `the calibration's load without recycling (the signal rows'), sampled as under the calibration load (${steadyCpuRun.cpu.samples} samples): the workers' CPU over the requests ab had answered, ab's over its requests`,
            },
          }
        : {}),
      'replacement-under-load': {
        command: `the same run: ab ${AB_LOAD.join(' ')} ${url}`,
        date,
        machine,
        method: teardownsMs.length > 0 ? `${target.bootMethod}; from the exiting process gone, not its exit hook: each pair less that worker's teardown (the capture), where it held a connection to see it by` : target.bootMethod,
      },
    },
    serviceMs: requests
      ? { measurement: 'hooks-under-the-calibration-load', samples: requests.handlerMs.length, percentilesMs: percentilesOf(requests.handlerMs) }
      : { measurement: 'ab-under-the-calibration-load', samples: run.ab.complete, percentilesMs: run.ab.percentilesMs.map(round3) },
    ...(requests
      ? {
          ...(waits && waits.waitsMs.length > 0 ? { pollWaitFromArrivalMs: { measurement: 'capture-under-the-calibration-load', samples: waits.waitsMs.length, percentilesMs: percentilesOf(waits.waitsMs) } } : {}),
          threadPickupMs: { measurement: 'hooks-under-the-calibration-load', samples: requests.pickupMs.length, percentilesMs: percentilesOf(requests.pickupMs) },
          ...(requests.returnMs.length > 0 ? { returnMs: { measurement: 'hooks-under-the-calibration-load', samples: requests.returnMs.length, percentilesMs: percentilesOf(requests.returnMs) } } : {}),
          ...(requests.recycleFlips.inPoll + requests.recycleFlips.pastPoll > 0
            ? {
                recycleFindsLoopPastPoll: {
                  measurement: 'hooks-under-the-calibration-load',
                  samples: requests.recycleFlips.inPoll + requests.recycleFlips.pastPoll,
                  share: round3(requests.recycleFlips.pastPoll / (requests.recycleFlips.inPoll + requests.recycleFlips.pastPoll)),
                },
              }
            : {}),
          ...recycleReturnOf(requests.recycleFlipReturns),
          ...(requests.closeAfterRecycleTurnMs.length > 0
            ? { closeAfterRecycleTurnMs: { measurement: 'hooks-under-the-calibration-load', samples: requests.closeAfterRecycleTurnMs.length, percentilesMs: percentilesOf(requests.closeAfterRecycleTurnMs) } }
            : {}),
        }
      : {}),
    ...(joint && joint.rowsMs.length > 0 ? { keptAliveRequestsMs: measuredRows('capture-under-the-calibration-load', joint) } : {}),
    ...(accepts && accepts.turnsMs.length > 0 ? { acceptTurnMs: { measurement: 'capture-under-the-calibration-load', samples: accepts.turnsMs.length, percentilesMs: percentilesOf(accepts.turnsMs) } } : {}),
    ...(steady?.joint && steady.joint.rowsMs.length > 0
      ? {
          keptAliveRequestsWithoutRecyclingMs: measuredRows('capture-without-recycling', steady.joint),
          ...(steady.turnaroundsMs.length > 0
            ? { clientTurnaroundWithoutRecyclingMs: { measurement: 'capture-without-recycling', samples: steady.turnaroundsMs.length, percentilesMs: percentilesOf(steady.turnaroundsMs) } }
            : {}),
        }
      : {}),
    ...(teardownsMs.length > 0
      ? { teardownMs: { measurement: 'capture-under-the-calibration-load', samples: teardownsMs.length, percentilesMs: percentilesOf(teardownsMs.map((t) => t.ms)) } }
      : {}),
    ...(halfRoundTripsMs.length > 0
      ? {
          oneWayLatencyMs: measuredValueOf('capture-under-the-calibration-load', halfRoundTripsMs),
        }
      : {}),
    ...(turnaroundsMs.length > 0 ? { clientTurnaroundMs: { measurement: 'capture-under-the-calibration-load', samples: turnaroundsMs.length, percentilesMs: percentilesOf(turnaroundsMs) } } : {}),
    ...(stops ? stopDistributions(stops.times) : {}),
    ...(reloads && reloads.times.killDelayMs.length > 0 ? { reloadKillDelayMs: { measurement: 'reloads-under-load', samples: reloads.times.killDelayMs.length, percentilesMs: percentilesOf(reloads.times.killDelayMs) } } : {}),
    ...(reloads && reloads.times.stallBeforeKillMs.length > 0
      ? { reloadStallBeforeKillMs: { measurement: 'reloads-under-load', samples: reloads.times.stallBeforeKillMs.length, percentilesMs: percentilesOf(reloads.times.stallBeforeKillMs) } }
      : {}),
    ...(work && work.clientWorkMs !== null && steadyWork
      ? {
          cpu: {
            measurement: 'cpu-under-the-calibration-load',
            samples: work.bootWorkMs.length,
            cores: os.availableParallelism(),
            requestWorkMs: round3(work.requestWorkMs),
            bootWorkMs: round3(median(work.bootWorkMs)),
            clientWorkMs: round3(work.clientWorkMs),
            spares: steadyWork.sparesAtEnd,
          },
          ...(activations.length > 0
            ? {
                spareActivationMs: measuredValueOf('cpu-under-the-calibration-load', activations),
              }
            : {}),
          ...(target.singleThreadedLoop ? { singleThreadedLoop: true as const } : {}),
        }
      : {}),
    ...(steadyWork && steadyWork.clientWorkMs !== null
      ? { cpuWithoutRecycling: { measurement: 'cpu-without-recycling', samples: steadyCpuRun!.ab.complete, requestWorkMs: round3(steadyWork.requestWorkMs), clientWorkMs: round3(steadyWork.clientWorkMs) } }
      : {}),
    bootMs: measuredValueOf('replacement-under-load', boots),
    ...arbiter,
    measuredRunLost: { measurement: lostRun.measurement, policy: runPolicy, workers: server.workers, requests: AB_REQUESTS, lost: lostRun.ab.length },
  };
  return profileSchema.parse(profile);
}

/** Fewest samples a distribution of the arbiter's replacements is kept with: a handful of forks say little of a queue's pace. */
const FEWEST_ARBITER_SAMPLES = 8;

/** The arbiter's replacements as the profile keeps them, each where it has enough samples. */
function arbiterDistributions(
  times: ArbiterTimes | null,
  teardownsMs: readonly { readonly pid: string; readonly ms: number }[],
  log: (line: string) => void,
  name: string,
): Pick<Profile, 'reapAfterTeardownMs' | 'gracefulExitsMs' | 'forkToReadyMs' | 'reapToForkMs' | 'forkGapMs'> {
  if (!times) return {};
  const reapsMs = reapsAfterTeardown(times.exitToReap, teardownsMs);
  const distribution = (samples: readonly number[]) => ({ measurement: 'replacement-under-load', samples: samples.length, percentilesMs: percentilesOf(samples) });
  const out: Pick<Profile, 'reapAfterTeardownMs' | 'gracefulExitsMs' | 'forkToReadyMs' | 'reapToForkMs' | 'forkGapMs'> = {};
  if (reapsMs.length >= FEWEST_ARBITER_SAMPLES) out.reapAfterTeardownMs = distribution(reapsMs);
  const exits = gracefulExitRows(times.exitToReap, teardownsMs);
  if (exits.length >= FEWEST_ARBITER_SAMPLES) {
    out.gracefulExitsMs = { measurement: 'replacement-under-load', samples: exits.length, columns: [...EXIT_ROW_COLUMNS], rowsMs: exits.map(([t, r]): [number, number] => [round3(t), round3(r)]) };
  }
  if (times.forkToReadyMs.length >= FEWEST_ARBITER_SAMPLES) out.forkToReadyMs = distribution(times.forkToReadyMs);
  // A queue forms only where vacancies come together: one worker's never do, two workers' seldom.
  if (times.reapToForkMs.length >= FEWEST_ARBITER_SAMPLES) out.reapToForkMs = distribution(times.reapToForkMs);
  if (times.forkGapMs.length >= FEWEST_ARBITER_SAMPLES) out.forkGapMs = distribution(times.forkGapMs);
  log(
    `${name}: the arbiter's replacements — reap after the teardown ${reapsMs.length} (median ${reapsMs.length > 0 ? round3(median(reapsMs)) : '—'} ms), fork → ready ${times.forkToReadyMs.length}, reap → fork with none queued ${times.reapToForkMs.length}, queued fork gaps ${times.forkGapMs.length}${times.forkGapMs.length < FEWEST_ARBITER_SAMPLES || times.reapToForkMs.length < FEWEST_ARBITER_SAMPLES || reapsMs.length < FEWEST_ARBITER_SAMPLES ? ` (fewer than ${FEWEST_ARBITER_SAMPLES} samples are left out)` : ''}`,
  );
  return out;
}

/**
 * How a run's kept-alive hand-overs fell to its workers, most first: without recycling, the workers
 * that accepted ab's connections at its start serve them to its end, and one worker may take all 20
 * (seen at 4 workers: 40,021 hand-overs by one) — a measurement of a one-worker load, whatever the
 * command says. The profile says which it was.
 */
export function handOversByWorker(handOvers: readonly Pick<KeptAliveHandOver, 'pid'>[]): string {
  const counts = new Map<string, number>();
  for (const h of handOvers) counts.set(h.pid, (counts.get(h.pid) ?? 0) + 1);
  const spread = [...counts.values()].sort((a, b) => b - a);
  return `kept-alive hand-overs by worker: ${spread.length > 0 ? spread.join(', ') : 'none'}`;
}

/** Requests whole under a measurement, their columns named as the schema has them. */
function measuredRows(measurement: string, rows: Pick<RequestRowsMeasured, 'samples' | 'rowsMs'>): RequestRowsMeasured {
  const withHeld = rows.rowsMs.length > 0 && rows.rowsMs.every((row) => row.length === REQUEST_ROW_COLUMNS.length);
  const [pollWait, pickup, service, back, cameBack, afterReturn, held] = REQUEST_ROW_COLUMNS;
  return { measurement, samples: rows.samples, columns: withHeld ? [pollWait, pickup, service, back, cameBack, afterReturn, held] : [pollWait, pickup, service, back, cameBack, afterReturn], rowsMs: rows.rowsMs };
}

/** One run under the load (its capture, where tcpdump can start): read once the server has stopped. */
async function capturedRun(target: Target, server: ServerParams, port: number, url: string, log: (line: string) => void) {
  return withServer(target, server, port, async (dir, command) => {
    const capture = await startCapture(join(dir, 'load.pcap'), port, log);
    const ab = await runAb([...AB_LOAD, url]);
    const segments = capture ? await stopCapture(capture, port, log) : null;
    if (ab.complete !== AB_REQUESTS) throw new Error(`ab did not complete its run (${ab.complete} of ${AB_REQUESTS}):\n${ab.output}`);
    return { ab, command, dir, segments };
  });
}

/**
 * One run under the load with its processes' CPU sampled, and no capture: tcpdump's copy of every
 * packet runs in the sender's softirq and is charged to the sender as system time (measured: a
 * request's work came out 30 % higher captured, 0.34–0.38 against 0.26–0.27 ms).
 */
async function sampledRun(target: Target, cpuCommand: string, server: ServerParams, port: number, url: string) {
  return withServer({ ...target, command: cpuCommand }, server, port, async (_dir, command, process_) => {
    const sampler = new CpuSampler(process_.pid);
    const ab = await runAb([...AB_LOAD, url], { onSpawn: (pid) => sampler.trackClient(pid) });
    const cpu = sampler.stop();
    if (ab.complete !== AB_REQUESTS) throw new Error(`ab did not complete its run (${ab.complete} of ${AB_REQUESTS}):\n${ab.output}`);
    return { ab, command, cpu, work: measuredWork(cpu, ab.complete - ab.failed, ab.complete) };
  });
}

/** What a captured run's hooks and capture give: the request times, the turnaround, the latency, the waits from the arrival, the requests whole. */
function readRequests(name: string, target: Target, run: { readonly dir: string; readonly segments: Segment[] | null }, log: (line: string) => void) {
  const requests = target.requestTimes?.(run.dir) ?? null;
  if (requests && requests.handlerMs.length < AB_REQUESTS / 2) throw new Error(`the hooks saw only ${requests.handlerMs.length} of ${AB_REQUESTS} requests`);
  // Only beside the hooks' service time: ab's own time per request (the service time without them) holds
  // ab's noticing of the response, which is the first part of its turnaround.
  const turnaroundsMs = run.segments && requests ? clientTurnarounds(run.segments) : [];
  const halfRoundTripsMs = run.segments ? handshakeHalfRoundTrips(run.segments) : [];
  const waits = run.segments && requests ? arrivalWaits(requests, run.segments) : null;
  const joint = waits && requests && run.segments ? jointRequestRows(requests.keptAliveHandOvers, waits.waitOfHandOver, heldAtHandOvers(requests, run.segments)) : null;
  const teardownsMs = run.segments && requests ? teardowns(requests, run.segments) : [];
  const accepts = run.segments && requests ? acceptTurns(requests, run.segments) : null;
  if (accepts && accepts.turnsMs.length > 0) {
    log(`${name}: ${accepts.waitsMs.length} accepts, SYN → accept a median ${round3(median(accepts.waitsMs))} ms (p90 ${percentilesOf(accepts.waitsMs)[90]} ms); ${accepts.turnsMs.length} next accepts of a worker while their connection waited, a turn a median ${round3(median(accepts.turnsMs))} ms`);
  }
  if (waits) log(`${name}: ${waits.waitsMs.length} kept-alive requests paired with their arrival in the capture; ${waits.ofNoRequest} hand-overs had none (the client's FIN)`);
  if (requests && waits && waits.waitsMs.length < requests.keptAliveHandOvers.length / 2) {
    throw new Error(`only ${waits.waitsMs.length} of ${requests.keptAliveHandOvers.length} kept-alive hand-overs were found in the capture: are the hooks' clock lines and the capture on one machine?`);
  }
  return { requests, turnaroundsMs, halfRoundTripsMs, waits, joint, teardownsMs, accepts };
}

/** tcpdump on the run's port; where it cannot start (not installed, no CAP_NET_RAW), what it measures is left out, and the log says so. */
async function startCapture(file: string, port: number, log: (line: string) => void): Promise<LoopbackCapture | null> {
  const capture = new LoopbackCapture(file, port);
  try {
    await capture.ready();
    return capture;
  } catch (error) {
    if (!(error instanceof CaptureStartError)) throw error;
    log(`no capture (${error.message}): the client's turnaround and the poll wait from the arrival are left out of the profile`);
    return null;
  }
}

async function stopCapture(capture: LoopbackCapture, port: number, log: (line: string) => void): Promise<Segment[]> {
  const { droppedByKernel } = await capture.stop();
  // A dropped segment costs a sample, not a wrong one: a turnaround or an arrival needs both its ends.
  if (droppedByKernel > 0) log(`the capture lost ${droppedByKernel} packets (dropped by the kernel): the samples they held are left out`);
  return capture.segments(port);
}

/** A stop's distributions, each where it has samples (one worker has no gap between kills; sync workers close no listener copy themselves). */
function stopDistributions(times: StopTimes): Pick<Profile, (typeof STOP_TIME_KEYS)[number] | 'signalStopsLoop'> {
  const out: Pick<Profile, (typeof STOP_TIME_KEYS)[number] | 'signalStopsLoop'> = {};
  for (const key of STOP_TIME_KEYS) {
    const samples = times[key];
    if (samples.length > 0) out[key] = { measurement: 'stops-under-load', samples: samples.length, percentilesMs: percentilesOf(samples) };
  }
  const handlers = times.loopStops.stopped + times.loopStops.ran;
  if (handlers > 0) out.signalStopsLoop = { measurement: 'stops-under-load', samples: handlers, share: round3(times.loopStops.stopped / handlers) };
  return out;
}

/** A profile as its file holds it: indented, with each array of numbers on one line (a request row, a distribution's percentiles) — thousands of rows stay readable and diffable. */
export function profileText(profile: Profile): string {
  const indented = JSON.stringify(profile, null, 2);
  return indented.replace(/\[\n\s*(-?\d[\d.e+-]*(?:,\n\s*-?\d[\d.e+-]*)*)\n\s*\]/g, (_, numbers: string) => `[${numbers.split(/,\n\s*/).join(', ')}]`) + '\n';
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('profile:measure')
    .argument('<name>', `one of: ${Object.keys(TARGETS).join(', ')}`)
    .option('--write', 'write simulator/profiles/<name>.json (otherwise print it)')
    .option('--port <n>', 'the loopback port the server binds', '18530')
    .option('--workers <n>', `the load's worker count (a profile holds for the load it was measured under)`, String(MEASURE_SERVER.workers))
    .exitOverride();
  try {
    program.parse(argv, { from: 'user' });
  } catch (error) {
    return error instanceof CommanderError ? (error.exitCode === 0 ? 0 : 2) : 2;
  }
  const [name] = program.args as [string];
  const options = program.opts<{ write?: boolean; port: string; workers: string }>();
  if (!(name in TARGETS)) {
    process.stderr.write(`profile:measure: unknown profile "${name}"; expected one of: ${Object.keys(TARGETS).join(', ')}\n`);
    return 2;
  }
  if (!/^\d{1,5}$/.test(options.port) || Number(options.port) < 1 || Number(options.port) > 65535) {
    process.stderr.write(`profile:measure: --port: expected a port from 1 to 65535, got "${options.port}"\n`);
    return 2;
  }
  if (!/^\d{1,3}$/.test(options.workers) || Number(options.workers) < 1) {
    process.stderr.write(`profile:measure: --workers: expected a whole number from 1 to 999, got "${options.workers}"\n`);
    return 2;
  }
  if (options.write && Number(options.workers) !== MEASURE_SERVER.workers) {
    process.stderr.write(`profile:measure: --write: the shipped profiles are measured at the calibration's ${MEASURE_SERVER.workers} workers; print a profile at --workers ${options.workers} and pass it to --profile as a file\n`);
    return 2;
  }
  if (name.startsWith('gunicorn')) execFileSync('gunicorn', ['--version']);
  const profile = await measureProfile(name, Number(options.port), (line) => process.stderr.write(`${line}\n`), { workers: Number(options.workers) });
  const text = profileText(profile);
  if (options.write) {
    const file = new URL(`../simulator/profiles/${name}.json`, import.meta.url).pathname;
    writeFileSync(file, text);
    process.stderr.write(`written: ${file}\n`);
  } else process.stdout.write(text);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2));
