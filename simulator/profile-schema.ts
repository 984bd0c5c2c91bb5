/**
 * The form of a server profile file and how a scenario takes one
 * (simulator/profiles.ts says what a profile is): kept apart from the
 * loader of the shipped files, so that the script that measures and writes
 * them (conformance/measure-profile.ts) does not need them to exist.
 */
import { z } from 'zod';
import type { ScenarioParams } from './scenarios.ts';

const measurementSchema = z.strictObject({
  command: z.string().min(1),
  date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a date as YYYY-MM-DD'),
  machine: z.string().min(1),
  method: z.string().min(1),
});

/** A distribution as the 101 percentiles 0, 1, …, 100 of its samples (ab's `-e` table), in ms. */
const percentilesSchema = z
  .array(z.number().nonnegative())
  .length(101, 'the 101 percentiles 0, 1, …, 100')
  .refine((p) => p.every((v, i) => i === 0 || v >= p[i - 1]!), 'percentiles must not decrease');

const measuredDistribution = z.strictObject({
  measurement: z.string().min(1),
  samples: z.number().int().positive(),
  percentilesMs: percentilesSchema,
});

/**
 * What each of a request row's columns is, in order (simulator/request-rows.ts draws them so): four
 * times, ms; whether the connection came back to the poller with the request already in (1) or
 * the request came to it there (0) — the poll wait runs from the later of the two, the return or the
 * request's arrival, to the hand-over; the end of that wait after the return of the poll the loop
 * handed it over from (at most the wait: the poll returned after the connection became readable); and,
 * where measured, the connections its worker held at the hand-over, itself among them (a count).
 */
export const REQUEST_ROW_COLUMNS = ['pollWaitFromReadableMs', 'threadPickupMs', 'serviceMs', 'returnMs', 'cameBackWithRequest', 'handOverAfterPollReturnMs', 'heldConnections'] as const;

const sixColumns = [
  z.literal(REQUEST_ROW_COLUMNS[0]),
  z.literal(REQUEST_ROW_COLUMNS[1]),
  z.literal(REQUEST_ROW_COLUMNS[2]),
  z.literal(REQUEST_ROW_COLUMNS[3]),
  z.literal(REQUEST_ROW_COLUMNS[4]),
  z.literal(REQUEST_ROW_COLUMNS[5]),
] as const;
const sixCells = [z.number().nonnegative(), z.number().nonnegative(), z.number().nonnegative(), z.number().nonnegative(), z.union([z.literal(0), z.literal(1)]), z.number().nonnegative()] as const;

const requestRows = z
  .strictObject({
    measurement: z.string().min(1),
    samples: z.number().int().positive(),
    columns: z.union([z.tuple([...sixColumns]), z.tuple([...sixColumns, z.literal(REQUEST_ROW_COLUMNS[6])])]),
    rowsMs: z
      .array(z.union([z.tuple([...sixCells]), z.tuple([...sixCells, z.number().int().min(1)])]))
      .min(1)
      .refine((rows) => rows.every((row) => row[5] <= row[0]), { message: 'a row whose hand-over after its poll\'s return (sixth column) is longer than its poll wait (first): the poll returned after the connection became readable' }),
  })
  .refine((rows) => rows.rowsMs.every((row) => row.length === rows.columns.length), { message: 'every row has one cell per named column', path: ['rowsMs'] });

export type RequestRowsMeasured = z.infer<typeof requestRows>;

/** A graceful exit's two waits, in order (simulator/run.ts draws them so): its teardown, and the reap after it, ms. */
export const EXIT_ROW_COLUMNS = ['teardownMs', 'reapAfterTeardownMs'] as const;

const exitRows = z.strictObject({
  measurement: z.string().min(1),
  samples: z.number().int().positive(),
  columns: z.tuple([z.literal(EXIT_ROW_COLUMNS[0]), z.literal(EXIT_ROW_COLUMNS[1])]),
  rowsMs: z.array(z.tuple([z.number().nonnegative(), z.number().nonnegative()])).min(1),
});

const measuredValue = z.strictObject({
  measurement: z.string().min(1),
  samples: z.number().int().positive(),
  /** The median of the samples: what the simulator uses. */
  medianMs: z.number().nonnegative(),
  minMs: z.number().nonnegative(),
  maxMs: z.number().nonnegative(),
});

/** A share of events measured to fall one way, of `samples` seen. */
const measuredShare = z.strictObject({
  measurement: z.string().min(1),
  samples: z.number().int().positive(),
  share: z.number().min(0).max(1),
});

/**
 * The work of a server's processes, as CPU: what the simulator's shared CPU takes (simulator/cpu.ts) in
 * place of a request's measured time and a boot's. `samples`: the boots seen whole.
 */
const measuredCpu = z.strictObject({
  measurement: z.string().min(1),
  samples: z.number().int().positive(),
  /** The machine's cores. */
  cores: z.number().int().positive(),
  /** CPU ms a worker spends on a request. */
  requestWorkMs: z.number().positive(),
  /** CPU ms a new worker process spends to be ready (the median). */
  bootWorkMs: z.number().positive(),
  /** CPU ms the client (ab) spends on each of its requests. */
  clientWorkMs: z.number().nonnegative(),
  /** Processes the arbiter keeps booted ahead of need, at rest (`quiesce serve`'s spares). */
  spares: z.number().int().nonnegative(),
});

/** The same work measured without recycling (the signal rows' load): `samples`, the requests. */
const measuredSteadyCpu = z.strictObject({
  measurement: z.string().min(1),
  samples: z.number().int().positive(),
  requestWorkMs: z.number().positive(),
  clientWorkMs: z.number().nonnegative(),
});

/**
 * What the profile's own measuring run lost: ab's Length (each lost exchange once, as `quiesce calibrate`
 * counts a run's), under the calibration's load (its server, `ab -c 20 -k -r`) with `policy`, at `workers`
 * workers and `requests` requests. Not drawn by the simulator: the run the other numbers describe, kept so that the
 * simulator, given them, can be checked against it (test/simulator/own-run.test.ts).
 */
const measuredRunLost = z.strictObject({
  measurement: z.string().min(1),
  /** The policy the server ran under (the profile's own, or the one its flag was given). */
  policy: z.string().min(1),
  workers: z.number().int().positive(),
  requests: z.number().int().positive(),
  lost: z.number().int().nonnegative(),
});

/** Every number of a profile but its name's: each names the measurement it stands under. */
export const MEASURED_KEYS = [
  'serviceMs',
  'pollWaitFromArrivalMs',
  'keptAliveRequestsMs',
  'keptAliveRequestsWithoutRecyclingMs',
  'acceptTurnMs',
  'clientTurnaroundMs',
  'clientTurnaroundWithoutRecyclingMs',
  'returnMs',
  'threadPickupMs',
  'killGapMs',
  'signalHandlerMs',
  'closeAfterTurnMs',
  'exitAfterCloseMs',
  'closeAfterRecycleTurnMs',
  'teardownMs',
  'reapAfterTeardownMs',
  'gracefulExitsMs',
  'forkToReadyMs',
  'reapToForkMs',
  'forkGapMs',
  'oneWayLatencyMs',
  'bootMs',
  'recycleFindsLoopPastPoll',
  'recycleFindsSelectWoken',
  'recycleLastReturnAgeMs',
  'signalStopsLoop',
  'reloadKillDelayMs',
  'reloadStallBeforeKillMs',
  'cpu',
  'measuredRunLost',
  'cpuWithoutRecycling',
  'spareActivationMs',
] as const;

export const profileSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9.-]+$/),
    describes: z.string().min(1),
    /** The policy whose decisions this server makes (a name of `quiesce policies`); absent when the server takes one as a flag. */
    policy: z.string().min(1).optional(),
    measurements: z.record(z.string(), measurementSchema),
    /**
     * Time from a request's arrival to its response leaving, under the load the profile was measured
     * at: what the simulator draws as a request's service time where the profile has no `cpu`. It
     * includes the wait for the CPU, so it holds for that load's concurrency.
     */
    serviceMs: measuredDistribution.optional(),
    /**
     * On a kept-alive connection, from the next request's arrival (its segment in a capture) to the
     * worker's loop handing it to a thread (gthread: `enqueue_req`): the wait in the poller and for the
     * loop's turn (and the GIL). A request handed over is a thread's: a drain serves it.
     */
    pollWaitFromArrivalMs: measuredDistribution.optional(),
    /**
     * Kept-alive requests whole: each row one request's poll wait, thread pickup, handler and return,
     * as measured together, and what made its connection readable (`samples` whole requests were seen;
     * the rows are an even sample of them). The four share one GIL and two cores, so they are not
     * independent: the simulator draws a row per request where a profile has them, in place of the
     * four distributions — among the rows whose connection became readable as the simulated one did.
     */
    keptAliveRequestsMs: requestRows.optional(),
    /**
     * The same, and the client's turnaround, measured without recycling: the signal rows' load (no boot
     * takes the CPU; a request is about twice as fast). A scenario without recycling draws these.
     */
    keptAliveRequestsWithoutRecyclingMs: requestRows.optional(),
    /**
     * A worker's loop turn between two accepts, under the calibration load: its accept → its next, where
     * that next connection was already queued at the first. gthread's listener is one descriptor in its
     * poller and its callback calls accept() once, so a worker takes one connection a turn, and
     * connections queued together (the reconnections after a recycle) wait for the loops' turns. Present:
     * each worker takes one queued connection, the first after a readable connection's poll wait (the
     * same loop noticing the same event), the next a drawn turn after it; absent: a worker takes every
     * queued connection at once.
     */
    acceptTurnMs: measuredDistribution.optional(),
    clientTurnaroundWithoutRecyclingMs: measuredDistribution.optional(),
    /**
     * The client's turnaround on a kept-alive connection under this server's load: from a response's
     * last segment to the client's next request, both in a capture. ab is one process polling all its
     * connections, sharing the CPU with the server: it is part of what decides the race between a
     * draining worker's close and the next request.
     */
    clientTurnaroundMs: measuredDistribution.optional(),
    /**
     * From a keep-alive response to the connection back in the poller (gthread: `post_request` → the end
     * of `finish_request`, the future's done callback: it reads alive at once, then waits for the lock
     * and the GIL to register the connection — or to close it, where the worker drains). A request the
     * client sends meanwhile waits unread, and such a close resets it.
     */
    returnMs: measuredDistribution.optional(),
    /** From the hand-over to the handler starting: the thread's wait for the CPU (and the GIL), and the parse. */
    threadPickupMs: measuredDistribution.optional(),
    /**
     * At a stop, between the arbiter's successive kill(2)s of its workers (gunicorn's `kill_workers`
     * loop: a worker it wakes takes the CPU from it). Absent where one worker was measured.
     */
    killGapMs: measuredDistribution.optional(),
    /** From the arbiter's kill(2) to the worker's handler running (CPython: in the main thread, once it has the GIL). */
    signalHandlerMs: measuredDistribution.optional(),
    /**
     * From the loop turn in which a stopping worker stops accepting (gthread: the first hand-over after
     * its handler, or the handler where none came) to its close of the listener copy: the rest of that turn.
     */
    closeAfterTurnMs: measuredDistribution.optional(),
    /**
     * A stopping worker's listener copy's close → its exit, the connections it still held closed (our
     * server's lifecycle trace: worker.close-listener → worker.exit). The rest of a stop: what the last
     * turn took answered, the lingering closes waiting for their clients' FINs, on cores shared in slices
     * — a worker waits milliseconds for its turn on the CPU, and so does the client. The simulator's
     * exit waits for the same things at processor sharing's pace, with a client that answers at once;
     * drawn, a stopping worker's exit comes no earlier than this after its close (the later of the two).
     */
    exitAfterCloseMs: measuredDistribution.optional(),
    /**
     * The same at a recycle (max-requests: the worker stops alone, the others serving): its last hand-over
     * → the close. Measured apart because it is another load: a tenth of a stop's at the median.
     */
    closeAfterRecycleTurnMs: measuredDistribution.optional(),
    /**
     * A graceful exit's teardown: from the worker's exit decision (gunicorn's worker_exit hook: its loop,
     * futures and sockets done) to the process gone, the kernel closing the connections it still held —
     * CPython's finalization, on a CPU the load keeps busy. A request sent meanwhile waits unread.
     */
    teardownMs: measuredDistribution.optional(),
    /**
     * From a graceful exit's teardown (its connections closed, as `teardownMs` ends; at the exit hook
     * where the profile has no teardown) to the arbiter's reap of the process (gunicorn's child_exit
     * hook): the rest of CPython's finalization after it freed its sockets, and the SIGCHLD. Until the
     * reap the arbiter counts the worker, and forks no replacement.
     */
    reapAfterTeardownMs: measuredDistribution.optional(),
    /**
     * The two together, per exiting worker whose teardown the capture saw: they are one process's end,
     * and not independent (measured r −0.2 to −0.9 over seven runs: the later its sockets close, the
     * sooner the reap follows). Present: the simulator draws a row per exit, in place of the two.
     */
    gracefulExitsMs: exitRows.optional(),
    /** From a worker's fork (gunicorn's post_fork hook, in the child) to it ready to accept (post_worker_init), under load. */
    forkToReadyMs: measuredDistribution.optional(),
    /**
     * The arbiter's fork queue (gunicorn's `spawn_workers` forks one vacancy after another with a
     * `sleep(0.1 * random())` after each): a reap → the fork that fills it, where no fork was pending
     * (the main loop woken by the signal's pipe byte, `murder_workers`, the fork) …
     */
    reapToForkMs: measuredDistribution.optional(),
    /** … and the gap between successive forks where the vacancy waited for the one before: the sleep after a fork, and the next fork. */
    forkGapMs: measuredDistribution.optional(),
    /**
     * Loopback's one-way latency: half of a SYN → its SYN-ACK in a capture, the kernel's own reply. What
     * the simulated network takes for a segment where no process's wait is measured apart (on loopback
     * the segment is in the peer's socket within the sender's syscall; the rest is noticing it).
     */
    oneWayLatencyMs: measuredValue.optional(),
    /** From the arbiter's decision to start a worker to the worker ready to accept. */
    bootMs: measuredValue.optional(),
    /**
     * At a recycle, among the flips of `alive` (by the pool thread whose request reaches max-requests)
     * that found nothing readable in the worker's poller, the share that found its main thread past its
     * poll — in `futures.wait` or `murder_keepalived` — rather than in it. Past it, the loop ends at its
     * next check of `alive` without another poll: what comes meanwhile is abandoned. In it, the poll
     * returns with what comes next, and that is handed over (the last loop turn). Where something is
     * readable, the loop's place is its poller's (simulator/server.ts `loopAtFlip`), not a share.
     */
    recycleFindsLoopPastPoll: measuredShare.optional(),
    /**
     * At a recycle, among the flips that found a connection readable in the worker's poller, the share
     * whose main thread the hooks' flag showed in its select: the kernel had woken that select with the
     * first connection readable, and the thread had not got the CPU and the GIL back to return from it.
     * Its return, handed over after the flip, holds what was readable then: one connection at most such
     * flips, whatever became readable since (simulator/server.ts `recycleReturn`).
     */
    recycleFindsSelectWoken: measuredShare.optional(),
    /**
     * The other flips with something readable (past the poll, by the flag): how long before the flip the
     * loop's select had last returned. What was readable by then is in that return, and handed over
     * before the loop looks at `alive`; what became readable since waits for a select that never comes.
     */
    recycleLastReturnAgeMs: measuredDistribution.optional(),
    /**
     * At a stop (and a reload: the same SIGTERM), the share of the workers' handlers before which the
     * loop handed nothing over after the kill: CPython runs a handler in the main thread at its next
     * bytecode, and the main thread is the loop, so a handler that waits is mostly a loop that waits.
     * Where the handler then finds the loop is the poller's state, not a share (simulator/server.ts
     * `loopAtFlip`): the hooks' flag of "in the select" cannot tell a select that returned while
     * the thread waited for the CPU or the GIL from one still waiting (simulator/README.md, "The loop at
     * a signal").
     */
    signalStopsLoop: measuredShare.optional(),
    /**
     * A HUP → the arbiter's first SIGTERM to the old generation: gunicorn's reload() forks the new
     * generation first, one process after another, and TERMs the old one after.
     */
    reloadKillDelayMs: measuredDistribution.optional(),
    /**
     * At a reload, how long before its SIGTERM a retired worker's loop had stopped handing over, where it
     * had something to hand over at its handler: the new generation's forks and boots take the CPU from
     * the old generation's loops as their kills are on the way.
     */
    reloadStallBeforeKillMs: measuredDistribution.optional(),
    /**
     * The processes' work as CPU, under the calibration load. Present: the simulator shares the cores
     * among the workers, the booting processes and the client, and a request's time and a boot's follow
     * from what else runs (`serviceMs` and `bootMs` are then what the model is checked against, not
     * what it draws).
     */
    cpu: measuredCpu.optional(),
    /**
     * The worker is one thread, an event loop (`quiesce serve`: Node.js): it polls only when that thread
     * is free, and a request's read, handler and write are one callback. A request that arrives while
     * the thread works waits unread in the kernel; it is read, and its keep-alive decided, when the
     * thread gets to it. Absent: a readable connection is handed over as measured (gthread's poller and
     * pool: the waits above). The server's design, not a figure; it needs `cpu` (the thread is its thread).
     */
    singleThreadedLoop: z.literal(true).optional(),
    /**
     * A request's work and the client's without recycling, for a scenario without it: a worker that lives
     * for good runs optimized code (`quiesce serve` keeps V8's optimizing tier only then), several times
     * faster. The cores, the boot and the spares are `cpu`'s.
     */
    cpuWithoutRecycling: measuredSteadyCpu.optional(),
    /**
     * With the CPU: a loaded spare becoming a worker under load, from the exit it replaces to its title
     * saying worker — the identity and the listener copies over IPC, each hop a wake-up on busy cores,
     * which processor sharing does not see (its work is a few ms: 0–10 ms unloaded, at /proc's tick).
     */
    spareActivationMs: measuredValue.optional(),
    /** The exchanges the run this profile was measured from lost (see `measuredRunLost` above). */
    measuredRunLost: measuredRunLost.optional(),
  })
  .superRefine((profile, ctx) => {
    for (const key of MEASURED_KEYS) {
      const id = profile[key]?.measurement;
      if (id !== undefined && !Object.hasOwn(profile.measurements, id)) {
        ctx.addIssue({ code: 'custom', path: [key, 'measurement'], message: `names measurement "${id}", which the profile does not describe` });
      }
    }
    if ((profile.recycleFindsSelectWoken === undefined) !== (profile.recycleLastReturnAgeMs === undefined)) {
      ctx.addIssue({ code: 'custom', path: [profile.recycleFindsSelectWoken ? 'recycleLastReturnAgeMs' : 'recycleFindsSelectWoken'], message: 'recycleFindsSelectWoken and recycleLastReturnAgeMs are one measurement of the recycles with something readable: both or neither' });
    }
    // The one thread is the worker's thread on the shared CPU: without the CPU there is no turn to read in.
    if (profile.singleThreadedLoop && !profile.cpu) ctx.addIssue({ code: 'custom', path: ['singleThreadedLoop'], message: 'needs cpu: the one thread is the worker\'s thread on the measured CPU' });
  });

export type Profile = z.infer<typeof profileSchema>;

/** How many of a refused profile's issues a message names: a stale file can fail once per row, a thousand times. */
const ISSUES_NAMED = 3;

/** A refused profile's issues, each with its path (`(top)` for the file itself): the first few, and how many more. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  const named = issues.slice(0, ISSUES_NAMED).map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
  const more = issues.length - named.length;
  return more > 0 ? `${named.join('; ')}; and ${more} more` : named.join('; ');
}

/**
 * Every number in a profile file (parsed JSON) that no measurement supports: a number counts as
 * measured when an object on its path names a `measurement` the file describes, or when it is part of
 * a measurement's description. Returns the numbers' paths, e.g. `serviceMs.percentilesMs.50`.
 */
export function unmeasuredNumbers(file: unknown): string[] {
  const described = new Set<string>();
  if (isRecord(file) && isRecord(file.measurements)) for (const id of Object.keys(file.measurements)) described.add(id);
  const found: string[] = [];
  const walk = (value: unknown, path: string[], supported: boolean): void => {
    if (typeof value === 'number') {
      if (!supported) found.push(path.join('.'));
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => walk(v, [...path, String(i)], supported));
    } else if (isRecord(value)) {
      const names = typeof value.measurement === 'string' && described.has(value.measurement);
      for (const [k, v] of Object.entries(value)) walk(v, [...path, k], supported || names || (path.length === 1 && path[0] === 'measurements'));
    }
  };
  walk(file, [], false);
  return found;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Which of a scenario's timings a profile set, and which stayed the scenario's defaults (for reports). */
export interface ProfileApplied {
  readonly params: ScenarioParams;
  readonly fromProfile: readonly string[];
  readonly defaults: readonly string[];
}

/** A scenario's parameters with a profile's measured timings in place of the defaults. */
export function applyProfile(base: ScenarioParams, profile: Profile): ProfileApplied {
  const params: ScenarioParams = structuredClone(base);
  const fromProfile: string[] = [];
  const defaults: string[] = [];
  // A profile holds for the load it was measured under: a scenario without recycling takes what was measured without it.
  const steady = base.server.maxRequests === 0;
  if (profile.cpu) {
    const { cores, bootWorkMs, spares } = profile.cpu;
    const perRequest = (steady ? profile.cpuWithoutRecycling : undefined) ?? profile.cpu;
    const { requestWorkMs, clientWorkMs } = perRequest;
    params.cpu = {
      cores,
      requestWorkMs,
      bootWorkMs,
      clientWorkMs,
      spares,
      ...(profile.spareActivationMs ? { spareActivationMs: profile.spareActivationMs.medianMs } : {}),
      ...(profile.singleThreadedLoop ? { readsInTurn: true } : {}),
    };
    fromProfile.push(
      `the CPU: ${cores} cores shared by the workers (${requestWorkMs} ms a request, drawn exponential${perRequest === profile.cpuWithoutRecycling ? ', measured without recycling' : ''}), the booting processes (${bootWorkMs} ms a boot, ${spares} spare${spares === 1 ? '' : 's'} ahead${profile.spareActivationMs ? `, a loaded one a worker in ${profile.spareActivationMs.medianMs} ms` : ''}) and the client (${clientWorkMs} ms a request)`,
    );
    if (profile.singleThreadedLoop) fromProfile.push("a worker's one thread reading each request in its turn (its design)");
  } else if (profile.serviceMs) {
    params.servicePercentilesMs = [...profile.serviceMs.percentilesMs];
    fromProfile.push('service time');
  } else defaults.push(`service time (uniform ${base.serviceMinMs}–${base.serviceMaxMs} ms)`);
  if (profile.returnMs) {
    params.returnPercentilesMs = [...profile.returnMs.percentilesMs];
    fromProfile.push('return to the poller');
  } else defaults.push('return to the poller (at once)');
  if (profile.pollWaitFromArrivalMs) {
    params.dispatchPercentilesMs = [...profile.pollWaitFromArrivalMs.percentilesMs];
    fromProfile.push('poll wait');
  } else defaults.push('poll wait (none)');
  const rows = (steady ? profile.keptAliveRequestsWithoutRecyclingMs : undefined) ?? profile.keptAliveRequestsMs;
  if (rows) {
    params.requestRowsMs = structuredClone(rows.rowsMs);
    fromProfile.push(`each request's wait, pickup, handler and return, drawn together${rows === profile.keptAliveRequestsWithoutRecyclingMs ? ' (measured without recycling)' : ''}`);
  }
  if (profile.acceptTurnMs) {
    params.acceptTurnPercentilesMs = [...profile.acceptTurnMs.percentilesMs];
    fromProfile.push('one accept a loop turn (the turn after an accept, drawn)');
  } else defaults.push('accepts (every queued connection at once)');
  if (profile.oneWayLatencyMs) {
    params.latencyMs = profile.oneWayLatencyMs.medianMs;
    fromProfile.push('one-way latency');
  } else defaults.push(`one-way latency (${base.latencyMs} ms)`);
  const turnaround = (steady ? profile.clientTurnaroundWithoutRecyclingMs : undefined) ?? profile.clientTurnaroundMs;
  if (turnaround) {
    // Measured wire to wire; the simulated network carries the round trip itself, so it is taken off.
    const roundTripMs = 2 * params.latencyMs;
    params.clientTurnaroundPercentilesMs = turnaround.percentilesMs.map((ms) => Math.max(0, ms - roundTripMs));
    fromProfile.push("the client's turnaround");
  } else defaults.push("the client's turnaround (at once)");
  if (profile.threadPickupMs) {
    params.pickupPercentilesMs = [...profile.threadPickupMs.percentilesMs];
    fromProfile.push('thread pickup');
  } else defaults.push('thread pickup (none)');
  const stopTimings = [
    ['killGapMs', 'killGapPercentilesMs', "the arbiter's kills one after another", 'every kill in one instant'],
    ['signalHandlerMs', 'signalHandlerPercentilesMs', 'the signal handler', 'at the kill'],
    ['closeAfterTurnMs', 'closeAfterTurnPercentilesMs', "the stopping loop turn's rest", 'the close in the same instant'],
    ['exitAfterCloseMs', 'exitAfterClosePercentilesMs', "a stopping worker's exit after its listener's close", 'as its waits end'],
    ['closeAfterRecycleTurnMs', 'closeAfterRecycleTurnPercentilesMs', "the recycling loop turn's rest", 'the close in the same instant'],
    ['teardownMs', 'teardownPercentilesMs', "a graceful exit's teardown", 'at once'],
    ['reloadKillDelayMs', 'reloadKillDelayPercentilesMs', "a reload's spawn loop before its kills", 'the kills at the HUP'],
    ['reloadStallBeforeKillMs', 'reloadStallBeforeKillPercentilesMs', "the old loops' stall before a reload's kills", 'from the kill'],
  ] as const;
  for (const [key, param, label, otherwise] of stopTimings) {
    const measured = profile[key];
    if (measured) {
      params[param] = [...measured.percentilesMs];
      fromProfile.push(label);
    } else defaults.push(`${label} (${otherwise})`);
  }
  const loopPlaces = [
    ['recycleFindsLoopPastPoll', 'recyclePastPollShare', 'where the loop is when a recycle flips alive', 'in its poll'],
    ['signalStopsLoop', 'signalStopsLoopShare', "the loop stopped until a TERM's handler", 'it runs on'],
  ] as const;
  for (const [key, param, label, otherwise] of loopPlaces) {
    const measured = profile[key];
    if (measured) {
      params[param] = measured.share;
      fromProfile.push(label);
    } else defaults.push(`${label} (${otherwise})`);
  }
  // The two are one measurement of the flips with something readable: a share without the ages has no return to place.
  if (profile.recycleFindsSelectWoken && profile.recycleLastReturnAgeMs) {
    params.recycleReturn = { selectWokenShare: profile.recycleFindsSelectWoken.share, lastReturnAgePercentilesMs: [...profile.recycleLastReturnAgeMs.percentilesMs] };
    fromProfile.push("the loop's last return at a recycle with something readable");
  } else defaults.push("the loop's last return at a recycle with something readable (placed from the connections' rows)");
  if (profile.reapAfterTeardownMs) {
    params.reapAfterTeardownPercentilesMs = [...profile.reapAfterTeardownMs.percentilesMs];
    fromProfile.push("the reap after a graceful exit's teardown");
  } else defaults.push("the reap after a graceful exit's teardown (at once)");
  if (profile.gracefulExitsMs) {
    params.gracefulExitRowsMs = structuredClone(profile.gracefulExitsMs.rowsMs);
    fromProfile.push("each graceful exit's teardown and reap, drawn together");
  }
  if (profile.reapToForkMs) {
    // Without a queue seen (one or two workers: their vacancies seldom come together), one fork follows the one before at once.
    params.forkQueuePercentilesMs = { wakeMs: [...profile.reapToForkMs.percentilesMs], gapMs: profile.forkGapMs ? [...profile.forkGapMs.percentilesMs] : Array.from({ length: 101 }, () => 0) };
    fromProfile.push("the arbiter's wake before a fork");
    if (profile.forkGapMs) fromProfile.push("the arbiter's forks one after another");
    else defaults.push("the gap between the arbiter's forks (none)");
  } else defaults.push("the arbiter's forks (each at the arbiter's decision)");
  if (profile.cpu) {
    // The boot is the CPU's: its measured time is what the model is checked against.
  } else if (profile.bootMs || profile.forkToReadyMs) {
    // The median replacement is the boot where nothing is drawn from the fork, and where it is, it still says when the load starts (the first workers up: simulator/scenarios.ts firstWorkersReadyMs).
    if (profile.bootMs) params.bootMs = profile.bootMs.medianMs;
    if (profile.forkToReadyMs) params.forkToReadyPercentilesMs = [...profile.forkToReadyMs.percentilesMs];
    fromProfile.push(profile.forkToReadyMs ? 'worker boot (from its fork, drawn)' : 'worker boot');
  } else defaults.push(`worker boot (${base.bootMs} ms)`);
  return { params, fromProfile, defaults };
}
