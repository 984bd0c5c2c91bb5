/** Server profiles (simulator/profiles.ts): measured, not tuned — and what the simulator does with them. */
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { TraceEvent } from '../../model/events.ts';
import { describe, expect, it } from 'vitest';
import { applyProfile, getProfile, isProfileFile, PROFILE_NAMES, ProfileFileError, profileSchema, readProfileFile, unmeasuredNumbers } from '../../simulator/profiles.ts';
import { MEASURED_KEYS } from '../../simulator/profile-schema.ts';
import { fromPercentiles, Rng } from '../../simulator/rng.ts';
import { acceptTurns, arbiterTimes, arrivalWaits, clientTurnarounds, gracefulExitRows, exitToReady, exitsToReady, goneToReady, handOversByWorker, heldAtHandOvers, jointRequestRows, profileText, recycleReturnOf, lifeLines, reapsAfterTeardown, reloadTimings, recycleFlipReturnsLine, recycleFlipsInSelectLine, requestTimings, stopTimings, stopTimingsOf, teardowns, traceStopMarks } from '../../conformance/measure-profile.ts';
import type { Segment } from '../../conformance/capture.ts';
import { gracefulExitTiming, runScenario } from '../../simulator/run.ts';
import { firstWorkersReadyMs, getScenario } from '../../simulator/scenarios.ts';

const DIR = new URL('../../simulator/profiles/', import.meta.url);
const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
const read = (file: string): unknown => JSON.parse(readFileSync(new URL(file, DIR), 'utf8'));

/** A segment of a capture on the server's port, as `readSegments` gives it: a client's SYN is the only one without an ACK. */
const seg = (us: number, port: number, from: 'client' | 'server', kind: 'data' | 'syn' | 'ack' | 'fin' | 'rst' = 'data'): Segment => ({
  timeUs: us,
  clientPort: port,
  fromServer: from === 'server',
  syn: kind === 'syn',
  ack: kind !== 'syn' || from === 'server',
  fin: kind === 'fin',
  rst: kind === 'rst',
  payloadBytes: kind === 'data' ? 90 : 0,
});

describe('profile files', () => {
  it('ship the three the issue names, each loaded under its file name', () => {
    expect(files.sort()).toEqual(['gunicorn-20.1-gthread.json', 'gunicorn-20.1-sync.json', 'quiesce-serve.json']);
    expect([...PROFILE_NAMES].sort()).toEqual(files.map((f) => f.replace(/\.json$/, '')).sort());
  });

  it.each(files)('%s: every number stands under a measurement that says its command, date, machine and method', (file) => {
    const profile = read(file);
    expect(unmeasuredNumbers(profile)).toEqual([]);
    const parsed = profileSchema.parse(profile);
    for (const m of Object.values(parsed.measurements)) {
      expect(m.command.length).toBeGreaterThan(10);
      expect(m.machine).toMatch(/\d+ × .+, Linux /);
    }
    // Every measurement described is one the numbers use: no description without a number behind it, or the reverse.
    const used = MEASURED_KEYS.map((key) => parsed[key]?.measurement).filter(Boolean);
    expect(new Set(used)).toEqual(new Set(Object.keys(parsed.measurements)));
  });

  it('the check finds a number no measurement supports, and the schema refuses a measurement that is not described', () => {
    const profile = read('gunicorn-20.1-gthread.json') as Record<string, unknown>;
    expect(unmeasuredNumbers({ ...profile, dispatchMs: 3 })).toEqual(['dispatchMs']);
    expect(unmeasuredNumbers({ ...profile, acceptBatch: { value: 4 } })).toEqual(['acceptBatch.value']);
    expect(unmeasuredNumbers({ ...profile, bootMs: { ...(profile.bootMs as object), measurement: 'guessed' } })).toEqual(
      expect.arrayContaining(['bootMs.samples', 'bootMs.medianMs']),
    );
    const undescribed = profileSchema.safeParse({ ...profile, bootMs: { ...(profile.bootMs as object), measurement: 'guessed' } });
    expect(undescribed.success).toBe(false);
    expect(undescribed.error?.issues[0]?.message).toMatch(/names measurement "guessed", which the profile does not describe/);
    expect(profileSchema.safeParse({ ...profile, surprise: 1 }).success).toBe(false);
  });
});

describe('readProfileFile: a profile measured elsewhere (npm run profile:measure -- NAME > FILE)', () => {
  const text = readFileSync(new URL('quiesce-serve.json', DIR), 'utf8');

  it('reads what profile:measure prints, as the shipped file would load', () => {
    expect(readProfileFile('p.json', text)).toEqual(getProfile('quiesce-serve'));
  });

  it('refuses, naming the file and the reason: not JSON, not a profile, a number without its measurement', () => {
    const refusal = (body: string) => {
      try {
        readProfileFile('/tmp/p.json', body);
      } catch (error) {
        expect(error).toBeInstanceOf(ProfileFileError);
        return (error as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refusal('{"name":')).toMatch(/^\/tmp\/p\.json: not JSON \(/);
    expect(refusal('[1, 2]')).toMatch(/^\/tmp\/p\.json: not a server profile: /);
    const profile = JSON.parse(text) as Record<string, unknown>;
    expect(refusal(JSON.stringify({ ...profile, bootMs: { ...(profile.bootMs as object), measurement: 'guessed' } }))).toMatch(/does not describe/);
    expect(refusal(JSON.stringify({ ...profile, dispatchMs: 3 }))).toMatch(/not a server profile: .*dispatchMs|not a server profile: \(top\): Unrecognized key/);
    // Said without the CPU it would be read nowhere: refused, not ignored.
    const ours = read('quiesce-serve.json') as Record<string, unknown>;
    expect(refusal(JSON.stringify({ ...ours, cpu: undefined }))).toMatch(/not a server profile: singleThreadedLoop: needs cpu/);
    // A file of the old four-column rows (before the poll wait knew what made a connection readable)
    // fails on each of its rows: the message names the first few and counts the rest.
    const gthread = read('gunicorn-20.1-gthread.json') as Record<string, unknown>;
    const rows = gthread.keptAliveRequestsMs as { columns: string[]; rowsMs: number[][] };
    const stale = refusal(JSON.stringify({ ...gthread, keptAliveRequestsMs: { ...rows, columns: rows.columns.slice(0, 4), rowsMs: rows.rowsMs.map((r) => r.slice(0, 4)) } }));
    expect(stale).toMatch(/^\/tmp\/p\.json: not a server profile: keptAliveRequestsMs\.columns: [^;]+; keptAliveRequestsMs\.rowsMs\.0: [^;]+; keptAliveRequestsMs\.rowsMs\.1: [^;]+; and \d+ more$/);
    // One issue for the columns and one a row; three named.
    expect(Number(/and (\d+) more$/.exec(stale)![1])).toBe(1 + rows.rowsMs.length - 3);
    // A hand-over its poll returned longer before than the connection was readable: its poll returned before it was readable, which select cannot.
    const early = refusal(JSON.stringify({ ...gthread, keptAliveRequestsMs: { ...rows, rowsMs: rows.rowsMs.map((r, i) => (i === 7 ? [...r.slice(0, 5), r[0]! + 1, ...r.slice(6)] : r)) } }));
    expect(early).toMatch(/keptAliveRequestsMs\.rowsMs: a row whose hand-over after its poll's return \(sixth column\) is longer than its poll wait/);
    // The held connections are a column the rows name, a count from 1 in every row or in none.
    expect(rows.columns).toHaveLength(7);
    const unnamed = refusal(JSON.stringify({ ...gthread, keptAliveRequestsMs: { ...rows, columns: rows.columns.slice(0, 6) } }));
    expect(unnamed).toMatch(/keptAliveRequestsMs\.rowsMs: every row has one cell per named column/);
    const someWithout = refusal(JSON.stringify({ ...gthread, keptAliveRequestsMs: { ...rows, rowsMs: rows.rowsMs.map((r, i) => (i === 3 ? r.slice(0, 6) : r)) } }));
    expect(someWithout).toMatch(/keptAliveRequestsMs\.rowsMs: every row has one cell per named column/);
    for (const held of [0, 2.5]) {
      const notACount = refusal(JSON.stringify({ ...gthread, keptAliveRequestsMs: { ...rows, rowsMs: rows.rowsMs.map((r, i) => (i === 3 ? [...r.slice(0, 6), held] : r)) } }));
      expect(notACount).toMatch(/keptAliveRequestsMs\.rowsMs\.3/);
    }
    // The loop's return at a recycle is one measurement of two numbers: one alone has nothing to place.
    const { recycleLastReturnAgeMs: _ages, ...shareAlone } = gthread;
    expect(refusal(JSON.stringify(shareAlone))).toMatch(/recycleLastReturnAgeMs: recycleFindsSelectWoken and recycleLastReturnAgeMs are one measurement .*: both or neither/);
  });

  it('a --profile value is a file when it has a "/" or ends in .json, a shipped name otherwise', () => {
    expect(isProfileFile('quiesce-serve')).toBe(false);
    expect(isProfileFile('gunicorn-20.1-gthread')).toBe(false);
    expect(isProfileFile('./mine.json')).toBe(true);
    expect(isProfileFile('/tmp/measured')).toBe(true);
    expect(isProfileFile('mine.json')).toBe(true);
  });
});

describe('fromPercentiles: a draw from a measured distribution', () => {
  const percentiles = fc
    .array(fc.float({ min: 0, max: 100, noNaN: true }), { minLength: 101, maxLength: 101 })
    .map((xs) => xs.sort((a, b) => a - b));

  it('is the percentile itself at a whole percent, between its neighbours elsewhere, and never decreases in the percent drawn', () => {
    fc.assert(
      fc.property(percentiles, fc.double({ min: 0, max: 100, noNaN: true }), fc.double({ min: 0, max: 100, noNaN: true }), (p, u, v) => {
        expect(fromPercentiles(p, Math.floor(u))).toBe(p[Math.floor(u)]);
        const x = fromPercentiles(p, u);
        expect(x).toBeGreaterThanOrEqual(p[Math.floor(u)]!);
        expect(x).toBeLessThanOrEqual(p[Math.min(100, Math.floor(u) + 1)]!);
        if (u <= v) expect(x).toBeLessThanOrEqual(fromPercentiles(p, v));
      }),
    );
  });
});

describe('applyProfile', () => {
  it("replaces the scenario's service time and boot with the profile's, and names what stayed a default", () => {
    const base = getScenario('keepalive-recycle').params;
    // The shipped profile, with fork gaps where its run saw too few queued forks to keep any (a run's
    // luck: several workers recycling at once): each of its fields is named below.
    const shipped = getProfile('gunicorn-20.1-gthread');
    const profile = shipped.forkGapMs ? shipped : { ...shipped, forkGapMs: { measurement: shipped.reapToForkMs!.measurement, samples: 8, percentilesMs: Array.from({ length: 101 }, (_, i) => 30 + i / 10) } };
    const applied = applyProfile(base, profile);
    expect(applied.params.servicePercentilesMs).toEqual(profile.serviceMs!.percentilesMs);
    expect(applied.params.bootMs).toBe(profile.bootMs!.medianMs);
    expect(applied.fromProfile).toEqual([
      'service time',
      'return to the poller',
      'poll wait',
      "each request's wait, pickup, handler and return, drawn together",
      'one accept a loop turn (the turn after an accept, drawn)',
      'one-way latency',
      "the client's turnaround",
      'thread pickup',
      "the arbiter's kills one after another",
      'the signal handler',
      "the stopping loop turn's rest",
      "the recycling loop turn's rest",
      "a graceful exit's teardown",
      "a reload's spawn loop before its kills",
      "the old loops' stall before a reload's kills",
      'where the loop is when a recycle flips alive',
      "the loop stopped until a TERM's handler",
      "the loop's last return at a recycle with something readable",
      "the reap after a graceful exit's teardown",
      "each graceful exit's teardown and reap, drawn together",
      "the arbiter's wake before a fork",
      "the arbiter's forks one after another",
      'worker boot (from its fork, drawn)',
    ]);
    expect(applied.params.acceptTurnPercentilesMs).toEqual(profile.acceptTurnMs!.percentilesMs);
    // Our server's event loop accepts what is queued in one go (libuv), and no turn is measured for it.
    expect(applyProfile(base, getProfile('quiesce-serve')).params.acceptTurnPercentilesMs).toBeUndefined();
    expect(applied.params.reapAfterTeardownPercentilesMs).toEqual(profile.reapAfterTeardownMs!.percentilesMs);
    expect(applied.params.gracefulExitRowsMs).toEqual(profile.gracefulExitsMs!.rowsMs);
    // sync's teardown is not captured: its reap is drawn alone, from its exit hook.
    expect(applyProfile(base, getProfile('gunicorn-20.1-sync')).params.gracefulExitRowsMs).toBeUndefined();
    expect(applied.params.forkToReadyPercentilesMs).toEqual(profile.forkToReadyMs!.percentilesMs);
    expect(applied.params.forkQueuePercentilesMs).toEqual({ wakeMs: profile.reapToForkMs!.percentilesMs, gapMs: profile.forkGapMs!.percentilesMs });
    // A profile that saw no queue (one or two workers) has the wake alone: one fork then follows another at once.
    const { forkGapMs: _gaps, ...noQueueSeen } = profile;
    const unqueued = applyProfile(base, noQueueSeen);
    expect(unqueued.params.forkQueuePercentilesMs).toEqual({ wakeMs: profile.reapToForkMs!.percentilesMs, gapMs: Array.from({ length: 101 }, () => 0) });
    expect(unqueued.defaults.join()).toMatch(/the gap between the arbiter's forks \(none\)/);
    const { reapToForkMs: _wakes, ...noWake } = profile;
    expect(applyProfile(base, noWake).params.forkQueuePercentilesMs).toBeUndefined();
    expect(applyProfile(base, noWake).defaults.join()).toMatch(/the arbiter's forks \(each at the arbiter's decision\)/);
    expect(applied.params.signalStopsLoopShare).toBe(profile.signalStopsLoop!.share);
    expect(applied.params.reloadKillDelayPercentilesMs).toEqual(profile.reloadKillDelayMs!.percentilesMs);
    expect(applied.params.reloadStallBeforeKillPercentilesMs).toEqual(profile.reloadStallBeforeKillMs!.percentilesMs);
    expect(applied.params.recyclePastPollShare).toBe(profile.recycleFindsLoopPastPoll!.share);
    expect(applied.params.recycleReturn).toEqual({ selectWokenShare: profile.recycleFindsSelectWoken!.share, lastReturnAgePercentilesMs: profile.recycleLastReturnAgeMs!.percentilesMs });
    expect(applied.params.killGapPercentilesMs).toEqual(profile.killGapMs!.percentilesMs);
    expect(applied.params.signalHandlerPercentilesMs).toEqual(profile.signalHandlerMs!.percentilesMs);
    expect(applied.params.closeAfterTurnPercentilesMs).toEqual(profile.closeAfterTurnMs!.percentilesMs);
    const oursApplied = applyProfile(base, getProfile('quiesce-serve'));
    expect(oursApplied.params.exitAfterClosePercentilesMs).toEqual(getProfile('quiesce-serve').exitAfterCloseMs!.percentilesMs);
    expect(oursApplied.fromProfile.join()).toMatch(/a stopping worker's exit after its listener's close/);
    // gunicorn's exit is its capture's teardown: no floor after the close.
    expect(applied.params.exitAfterClosePercentilesMs).toBeUndefined();
    expect(applied.defaults.join()).toMatch(/a stopping worker's exit after its listener's close \(as its waits end\)/);
    expect(applied.params.teardownPercentilesMs).toEqual(profile.teardownMs!.percentilesMs);
    // sync workers close no listener copy of their own after a loop turn: the close stays with the turn (the exit).
    const sync = applyProfile(base, getProfile('gunicorn-20.1-sync'));
    // sync has no poller: nothing says where its loop is at a recycle, and the simulator asks nothing.
    expect(sync.params.recyclePastPollShare).toBeUndefined();
    expect(sync.params.recycleReturn).toBeUndefined();
    expect(sync.defaults.join()).toMatch(/the loop's last return at a recycle with something readable \(placed from the connections' rows\)/);
    expect(sync.defaults.join()).toMatch(/where the loop is when a recycle flips alive \(in its poll\)/);
    expect(sync.params.closeAfterTurnPercentilesMs).toBeUndefined();
    expect(sync.defaults.join()).toMatch(/the stopping loop turn's rest \(the close in the same instant\)/);
    expect(applied.params.returnPercentilesMs).toEqual(profile.returnMs!.percentilesMs);
    // The poll wait is measured from the request's arrival, as the simulator waits it.
    expect(applied.params.dispatchPercentilesMs).toEqual(profile.pollWaitFromArrivalMs!.percentilesMs);
    // Loopback's latency is the kernel's own reply's, halved; the turnaround is measured wire to wire, and
    // the simulated network carries that round trip itself, so it comes off.
    expect(applied.params.latencyMs).toBe(profile.oneWayLatencyMs!.medianMs);
    const roundTripMs = 2 * profile.oneWayLatencyMs!.medianMs;
    profile.clientTurnaroundMs!.percentilesMs.forEach((ms, i) => expect(applied.params.clientTurnaroundPercentilesMs![i]).toBeCloseTo(Math.max(0, ms - roundTripMs), 9));
    // Requests whole, as measured under the scenario's load: with recycling, the calibration's rows.
    expect(applied.params.requestRowsMs).toEqual(profile.keptAliveRequestsMs!.rowsMs);
    // A scenario without recycling (the signal rows) takes the rows and the turnaround measured without it.
    const steady = applyProfile({ ...base, server: { ...base.server, maxRequests: 0 } }, profile);
    expect(steady.params.requestRowsMs).toEqual(profile.keptAliveRequestsWithoutRecyclingMs!.rowsMs);
    expect(steady.fromProfile).toContain("each request's wait, pickup, handler and return, drawn together (measured without recycling)");
    profile.clientTurnaroundWithoutRecyclingMs!.percentilesMs.forEach((ms, i) => expect(steady.params.clientTurnaroundPercentilesMs![i]).toBeCloseTo(Math.max(0, ms - roundTripMs), 9));
    const { clientTurnaroundMs: _turnarounds, ...uncaptured } = profile;
    expect(applyProfile(base, uncaptured).defaults.join()).toMatch(/the client's turnaround \(at once\)/);
    // A profile without the returns leaves the connection back at once.
    const { returnMs: _returns, ...fromResponse } = profile;
    const older = applyProfile(base, fromResponse);
    expect(older.params.returnPercentilesMs).toBeUndefined();
    expect(older.defaults.join()).toMatch(/return to the poller \(at once\)/);
    expect(applied.params.pickupPercentilesMs).toEqual(profile.threadPickupMs!.percentilesMs);
    const { oneWayLatencyMs: _latency, ...uncapturedLatency } = profile;
    expect(applyProfile(base, uncapturedLatency).defaults.join()).toMatch(/one-way latency \(0\.05 ms\)/);
    // A profile without them (our own server: its event loop hands a request over as it reads it) leaves both out.
    const ours = applyProfile(base, getProfile('quiesce-serve'));
    expect(ours.params.dispatchPercentilesMs).toBeUndefined();
    expect(ours.defaults.join()).toMatch(/poll wait \(none\).*thread pickup \(none\)/);
    expect(base.servicePercentilesMs).toBeUndefined(); // the scenario itself is left as it was
  });

  it("with the CPU measured, a request's work and a boot's come from it — measured without recycling for a scenario without it", () => {
    const base = getScenario('keepalive-recycle').params;
    const profile = getProfile('quiesce-serve');
    const cpu = profile.cpu!;
    const recycling = applyProfile(base, profile);
    expect(recycling.params.cpu).toEqual({
      cores: cpu.cores,
      requestWorkMs: cpu.requestWorkMs,
      bootWorkMs: cpu.bootWorkMs,
      clientWorkMs: cpu.clientWorkMs,
      spares: cpu.spares,
      spareActivationMs: profile.spareActivationMs!.medianMs,
      // Our server's worker is one Node.js thread: the profile says so, and the simulator reads in that thread's turn.
      readsInTurn: true,
    });
    expect(recycling.fromProfile).toContain("a worker's one thread reading each request in its turn (its design)");
    // gunicorn's gthread worker hands a readable connection to its pool, as measured: no such turn.
    expect(applyProfile(base, getProfile('gunicorn-20.1-gthread')).params.cpu?.readsInTurn).toBeUndefined();
    // The times the CPU replaces are not drawn: they are what the model is checked against.
    expect(recycling.params.servicePercentilesMs).toBeUndefined();
    expect(recycling.params.bootMs).toBe(base.bootMs);
    expect(recycling.fromProfile.join()).toMatch(/^the CPU: \d+ cores shared by the workers/);
    const steady = applyProfile({ ...base, server: { ...base.server, maxRequests: 0 } }, profile);
    expect(steady.params.cpu?.requestWorkMs).toBe(profile.cpuWithoutRecycling!.requestWorkMs);
    expect(steady.params.cpu?.clientWorkMs).toBe(profile.cpuWithoutRecycling!.clientWorkMs);
    expect(steady.params.cpu?.bootWorkMs).toBe(cpu.bootWorkMs);
    expect(steady.fromProfile.join()).toMatch(/measured without recycling/);
  });

  it("a profiled run is a function of its seed, and with the CPU its pace is the cores' over the work measured", () => {
    const profile = getProfile('quiesce-serve');
    const params = applyProfile({ ...getScenario('keepalive-recycle').params, server: { ...getScenario('keepalive-recycle').params.server, maxRequests: 0 } }, profile).params;
    const requests = 4000;
    params.load = { kind: 'ab', requests, concurrency: 20, keepAlive: true, timeoutMs: 30_000 };
    const run = (seed: number) => runScenario({ scenario: 'keepalive-recycle', policy: 'safe-drain', seed, params });
    const [a, b] = [run(7), run(7)];
    expect(a.stats.latency.percentileMs(50)).toBe(b.stats.latency.percentileMs(50));
    expect(a.events).toBe(b.events);
    // 20 clients keep 4 worker threads and the client's busy on 2 cores: the cores never idle, so the load
    // takes its work over the cores — each request the worker's and the client's — and, by Little's law,
    // a request takes 20 requests' share of that.
    const { cores, requestWorkMs, clientWorkMs } = params.cpu!;
    const expectedMs = (requests * (requestWorkMs + clientWorkMs)) / cores;
    const loadMs = a.loadEndMs! - (firstWorkersReadyMs(params) + 1);
    expect(Math.abs(loadMs - expectedMs) / expectedMs).toBeLessThan(0.1);
    const expectedLatencyMs = (20 * loadMs) / requests;
    expect(Math.abs(a.stats.latency.meanMs - expectedLatencyMs) / expectedLatencyMs).toBeLessThan(0.1);
  });
});

describe("reloadTimings: a reload's spawn loop, and how long before its kill each retired loop stopped", () => {
  it("times each HUP to its reload's first TERM, and each retired worker's last hand-over to its kill where its handler found something readable", () => {
    const lines = [
      // 101 and 102: the first reload's TERMs, 40 and 41 ms after the HUP at 10.0 s.
      '10.030000 submit 101',
      '10.037500 submit 101', // its last hand-over, 2.5 ms before its kill
      '10.040000 kill 101 15',
      '10.040500 handler 101',
      '10.040501 at-handler 101 3 5',
      '10.039000 submit 102',
      '10.041000 kill 102 15',
      '10.041300 handler 102',
      '10.041301 at-handler 102 0 4', // nothing readable: an idle loop is no stall
      '10.060000 kill 101 15', // the arbiter TERMs the retired generation again: not a kill of its own
      // The second reload (HUP at 11.0 s): 103's TERM 30 ms after it; its poller could not be read.
      '11.020000 submit 103',
      '11.030000 kill 103 15',
      '11.030200 handler 103',
      '11.030201 at-handler 103 -1 4',
      // The final stop, seconds after the last HUP: no reload's.
      '20.000000 kill 104 15',
      '20.000300 handler 104',
      '20.000301 at-handler 104 2 2',
    ];
    const times = reloadTimings(lines, [10_000, 11_000]);
    const ms = (xs: number[]) => xs.map((x) => Math.round(x * 1000) / 1000);
    expect(ms(times.killDelayMs)).toEqual([40, 30]);
    expect(ms(times.stallBeforeKillMs)).toEqual([2.5]);
  });

  it('a HUP with no TERM after it (the run ended first) gives no delay; a line it cannot read is refused, named', () => {
    expect(reloadTimings(['10.040000 kill 101 15'], [10_000, 12_000]).killDelayMs.map(Math.round)).toEqual([40]);
    expect(() => reloadTimings(['10.0 reload 101'], [10_000])).toThrow(/stops.log: unexpected line "10.0 reload 101"/);
  });
});

describe("stopTimings: a stop's hooks as the arbiter's kill gaps, handler waits and the last turn's rest", () => {
  it('orders the kills, pairs each with its worker\'s first handler after it, and times the close from the first hand-over between handler and close', () => {
    const lines = [
      '10.000000 kill 101 15',
      '10.002000 kill 102 15',
      '10.002500 kill 103 15',
      // 101: its handler, the poll that ended its last turn handing a connection over, more of that turn, the close.
      '10.000100 submit 101', // before the handler: an ordinary turn
      '10.000600 handler 101',
      '10.001600 submit 101',
      '10.001700 submit 101',
      '10.004600 listener-close 101',
      // 102: no hand-over between its handler and its close (the poll returned for nothing it had to hand over).
      '10.003000 handler 102',
      '10.003200 listener-close 102',
      '10.003300 submit 102', // after the close: not its last turn
      // 103 (a sync worker): a handler, and no close of its own.
      '10.002600 handler 103',
      // The arbiter's SIGKILL of what outlived the graceful timeout is no stop's kill.
      '40.000000 kill 104 9',
    ];
    const ms = (xs: number[]) => xs.map((x) => Math.round(x * 1000) / 1000);
    const times = stopTimings(lines);
    expect(ms(times.killGapMs)).toEqual([2, 0.5]);
    expect(ms(times.signalHandlerMs)).toEqual([0.6, 1, 0.1]);
    expect(ms(times.closeAfterTurnMs)).toEqual([3, 0.2]);
    // 101 handed one over after its kill and before its handler; 102 and 103 nothing.
    expect(times.loopStops).toEqual({ stopped: 2, ran: 1 });
  });

  it('a loop ran before its handler only by a hand-over after the kill: one before the kill, or after the handler, says nothing', () => {
    const lines = ['9.999000 submit 101', '10.000000 kill 101 15', '10.000600 handler 101', '10.000700 submit 101', '10.001000 kill 102 15', '10.001100 submit 102', '10.001500 handler 102'];
    expect(stopTimings(lines).loopStops).toEqual({ stopped: 1, ran: 1 });
    // A kill no handler followed (the worker was gone) is no sample.
    expect(stopTimings(['10.000000 kill 101 15', '10.000100 submit 101']).loopStops).toEqual({ stopped: 0, ran: 0 });
  });

  it("what each handler's poller held: the first at-handler line after the kill, the last turn's hand-overs up to the close; an unreadable poller (−1) is no sample", () => {
    const lines = [
      '10.000000 kill 101 15',
      '10.001000 kill 102 15',
      '10.000600 handler 101',
      '10.000601 at-handler 101 3 5',
      '10.000700 submit 101',
      '10.000900 listener-close 101',
      '10.001000 submit 101', // after its close: not its last turn
      '10.001500 handler 102',
      '10.001501 at-handler 102 -1 4',
    ];
    expect(stopTimings(lines).atHandlers).toEqual({ handlers: 1, held: 5, readable: 3, handedOver: 1 });
  });

  it("reads quiesce serve's stop from its lifecycle trace: kills, each worker's signal, its last turn's end, its listener close and its exit, as gunicorn's hooks give them", () => {
    const at = (t: number) => ({ t });
    const events: TraceEvent[] = [
      { ...at(5000), actor: 'arbiter', type: 'arbiter.signal', signal: 'TERM' },
      { ...at(5001), actor: 'arbiter', type: 'arbiter.kill', worker: 'worker/7', signal: 'TERM' },
      { ...at(5001.5), actor: 'arbiter', type: 'arbiter.kill', worker: 'worker/8', signal: 'TERM' },
      // worker 7: an ordinary turn's end before its handler; its last turn ends 3 ms after the handler, the close 1 ms later.
      { ...at(5001.2), actor: 'worker/7', type: 'worker.turn-end' },
      { ...at(5003), actor: 'worker/7', type: 'worker.signal', signal: 'TERM' },
      { ...at(5006), actor: 'worker/7', type: 'worker.turn-end' },
      { ...at(5007), actor: 'worker/7', type: 'worker.close-listener' },
      // worker 8: no turn ended between its handler and its close.
      { ...at(5002), actor: 'worker/8', type: 'worker.signal', signal: 'TERM' },
      { ...at(5002.25), actor: 'worker/8', type: 'worker.close-listener' },
      // Their exits: worker 8 waited 12.75 ms after its close (its last responses' clients, its turns on the CPU), worker 7 0.5 ms.
      { ...at(5007.5), actor: 'worker/7', type: 'worker.exit', code: 0 },
      { ...at(5015), actor: 'worker/8', type: 'worker.exit', code: 0 },
      // The graceful timeout's KILL is no stop's kill.
      { ...at(35_000), actor: 'arbiter', type: 'arbiter.kill', worker: 'worker/8', signal: 'KILL' },
    ];
    const ms = (xs: number[]) => xs.map((x) => Math.round(x * 1000) / 1000);
    const times = stopTimingsOf(traceStopMarks(events));
    expect(ms(times.killGapMs)).toEqual([0.5]);
    expect(ms(times.signalHandlerMs)).toEqual([2, 0.5]);
    expect(ms(times.closeAfterTurnMs)).toEqual([1, 0.25]);
    expect(ms(times.exitAfterCloseMs)).toEqual([0.5, 12.75]);
    // gunicorn's hooks mark no exit: the field stays empty, and out of its profile.
    expect(stopTimings(['10.000000 kill 101 15', '10.000600 handler 101', '10.004600 listener-close 101']).exitAfterCloseMs).toEqual([]);
  });

  it('refuses a line it cannot read, naming it', () => {
    expect(() => stopTimings(['10.0 loop 101 elsewhere'])).toThrow(/stops.log: unexpected line "10.0 loop 101 elsewhere"/);
    expect(() => stopTimings(['10.0 at-handler 101 x 4'])).toThrow(/stops.log: unexpected line/);
    expect(() => stopTimings(['10.0 handler'])).toThrow(/stops.log: unexpected line "10.0 handler"/);
  });
});

describe('exitToReady: pairing a worker exit with its replacement', () => {
  it('pairs in order, skips the first workers (no exit before them) and exits never replaced (the stop)', () => {
    const events = [
      { ms: 0, kind: 'ready' as const },
      { ms: 1, kind: 'ready' as const },
      { ms: 100, kind: 'exit' as const },
      { ms: 105, kind: 'exit' as const },
      { ms: 230, kind: 'ready' as const },
      { ms: 260, kind: 'ready' as const },
      { ms: 900, kind: 'exit' as const },
    ];
    expect(exitToReady(events)).toEqual([130, 155]);
  });
});

describe("requestTimings: gunicorn's request hooks as handler times, kept-alive hand-overs and thread pickups", () => {
  it('pairs the lines per worker and client address: submit → pre is the pickup, pre → post the handler, a submit after a post a kept-alive hand-over', () => {
    const lines = [
      "1.000000 submit 10 0.999950 ('127.0.0.1', 5001)",
      "1.000400 pre 10 ('127.0.0.1', 5001)",
      "1.000500 submit 10 1.000450 ('127.0.0.1', 5002)",
      "1.000700 pre 10 ('127.0.0.1', 5002)",
      "1.002000 post 10 ('127.0.0.1', 5001)",
      "1.003000 post 10 ('127.0.0.1', 5002)",
      // Another worker, the same client port (a reconnect that got the same port): another connection.
      "1.003200 submit 11 1.003150 ('127.0.0.1', 5001)",
      "1.003500 pre 11 ('127.0.0.1', 5001)",
      "1.004000 submit 10 1.003950 ('127.0.0.1', 5001)",
      "1.005000 pre 10 ('127.0.0.1', 5001)",
      "1.006000 post 11 ('127.0.0.1', 5001)",
      "1.006500 post 10 ('127.0.0.1', 5001)",
      // ab closes at its end: the loop hands the FIN over, and no request follows — no poll wait, no pickup.
      "3.006500 submit 10 3.006450 ('127.0.0.1', 5002)",
    ];
    const ms = (xs: number[]) => xs.map((x) => Math.round(x * 1000) / 1000);
    const { handlerMs, keptAliveHandOvers, pickupMs } = requestTimings(lines);
    expect(ms(pickupMs)).toEqual([0.4, 0.2, 0.3, 1]);
    expect(ms(handlerMs)).toEqual([1.6, 2.3, 2.5, 1.5]);
    // 5001 on worker 10 had a second hand-over after its first request's post; so had 5002 (the FIN: the capture tells it apart).
    expect(keptAliveHandOvers.map((h) => [h.pid, h.clientPort, Math.round(h.previousHandOverMs), Math.round(h.handOverMs)])).toEqual([
      ['10', 5001, 1000, 1004],
      ['10', 5002, 1001, 3007],
    ]);
  });

  it("with the done callback's returns: the return is measured from the response", () => {
    const lines = [
      "1.000000 submit 10 0.999950 ('127.0.0.1', 5001)",
      "1.000400 pre 10 ('127.0.0.1', 5001)",
      "1.002000 post 10 ('127.0.0.1', 5001)",
      // The callback takes the connection back 1.5 ms after the response (the GIL), then the loop hands the next request over.
      "1.003500 return 10 ('127.0.0.1', 5001)",
      "1.004000 submit 10 1.003950 ('127.0.0.1', 5001)",
      "1.004100 pre 10 ('127.0.0.1', 5001)",
      "1.005100 post 10 ('127.0.0.1', 5001)",
      // A response after which the callback closed the connection (the worker stopped): a return, and no poll wait.
      "1.006000 return 10 ('127.0.0.1', 5001)",
      // A return with no response before it: the hand-over of a client's FIN, which was never a request.
      "1.007000 return 10 ('127.0.0.1', 5002)",
    ];
    const ms = (xs: number[]) => xs.map((x) => Math.round(x * 1000) / 1000);
    const { returnMs, keptAliveHandOvers } = requestTimings(lines);
    expect(ms(returnMs)).toEqual([1.5, 0.9]);
    expect(keptAliveHandOvers).toHaveLength(1);
    // The hand-over knows when its connection came back to the poller: what its wait is counted from, when its request was in by then.
    expect(keptAliveHandOvers[0]!.returnedMs).toBeCloseTo(1003.5, 9);
  });

  it("times a recycle's close from the worker's last hand-over before it, and a close with no hand-over before it not at all", () => {
    const lines = [
      "1.000000 submit 10 0.999950 ('127.0.0.1', 5001)",
      "1.000300 submit 10 1.000250 ('127.0.0.1', 5002)",
      "1.000100 submit 11 1.000050 ('127.0.0.1', 5003)", // another worker's hand-over: not 10's
      "1.000400 pre 10 ('127.0.0.1', 5001)",
      '1.002300 recycle-close 10 -',
      '1.005000 recycle-close 12 -',
    ];
    const { closeAfterRecycleTurnMs, handlerMs } = requestTimings(lines);
    expect(closeAfterRecycleTurnMs.map((x) => Math.round(x * 1000) / 1000)).toEqual([2]);
    expect(handlerMs).toEqual([]);
  });

  it("counts where each recycle's flip of alive found the loop: in its poll, or past it", () => {
    const lines = ['1.000000 recycle-flip 10 in-poll', '2.000000 recycle-flip 11 past-poll', '3.000000 recycle-flip 12 past-poll'];
    expect(requestTimings(lines).recycleFlips).toEqual({ inPoll: 1, pastPoll: 2 });
    expect(requestTimings([]).recycleFlips).toEqual({ inPoll: 0, pastPoll: 0 });
  });

  it("counts a recycle's flip where its poller held nothing readable; one with something readable apart (its loop's place is the poller's)", () => {
    const lines = ['1.000000 recycle-flip 10 in-poll 0', '2.000000 recycle-flip 11 in-poll 3', '3.000000 recycle-flip 12 past-poll 0', '4.000000 recycle-flip 13 past-poll 1'];
    expect(requestTimings(lines).recycleFlips).toEqual({ inPoll: 1, pastPoll: 1 });
    expect(requestTimings(lines).recycleFlipsWithReadable).toBe(2);
    expect(() => requestTimings(['1.0 recycle-flip 10 in-poll many'])).toThrow(/readable count is not a number/);
  });

  it("counts what a recycle's flip with something readable handed over after it — from a select returned before it or after it — and how old the last return was", () => {
    const lines = [
      "1.000000 submit 10 0.999900 ('127.0.0.1', 5001)",
      // The flip, past the poll: 3 readable; the loop's select returned 1.5 ms before it.
      '1.002000 recycle-flip 10 past-poll 3 1.000500',
      // Two hand-overs from that return; another worker's hand-over is not 10's.
      "1.002400 submit 10 1.000500 ('127.0.0.1', 5002)",
      "1.002450 submit 11 1.002420 ('127.0.0.1', 5009)",
      "1.002800 submit 10 1.000500 ('127.0.0.1', 5003)",
      '1.003000 recycle-close 10 -',
      // After the close nothing is counted for it.
      "1.004000 submit 10 1.000500 ('127.0.0.1', 5004)",
      // In its select by the flag, 2 readable, no return yet (0): the select returns after the flip, with one.
      '2.000000 recycle-flip 12 in-poll 2 0.000000',
      "2.000900 submit 12 2.000800 ('127.0.0.1', 5005)",
      '2.001000 recycle-close 12 -',
      // Nothing readable: counted where the flag says, not here.
      '2.500000 recycle-flip 13 in-poll 0 2.400000',
      // An older hook's line, without the time; its worker exits without a close.
      '3.000000 recycle-flip 14 past-poll 1',
      '3.100000 worker-exit 14 -',
      "3.200000 submit 14 2.999000 ('127.0.0.1', 5006)",
    ];
    const flips = requestTimings(lines).recycleFlipReturns;
    expect(flips.map((f) => ({ ...f, returnAgeMs: f.returnAgeMs === null ? null : Math.round(f.returnAgeMs * 1000) / 1000 }))).toEqual([
      { place: 'past-poll', readable: 3, handedOverFromEarlier: 2, handedOverFromLater: 0, returnAgeMs: 1.5 },
      { place: 'in-poll', readable: 2, handedOverFromEarlier: 0, handedOverFromLater: 1, returnAgeMs: null },
      { place: 'past-poll', readable: 1, handedOverFromEarlier: 0, handedOverFromLater: 0, returnAgeMs: null },
    ]);
    expect(recycleFlipReturnsLine('g', flips)).toBe(
      'g: at 3 recycle flips with a connection readable (2 past the poll by the flag), 6 readable; handed over after the flip 2 from a select returned before it and 1 from one returned after it; the last return before a flip past the poll, a median 1.5 ms (p90 1.5 ms) before it',
    );
    expect(() => requestTimings(['1.0 recycle-flip 10 in-poll 2 soon'])).toThrow(/last select return is not a time/);
  });

  it('notes, at the flips that found the main thread in its select, how long it had been in it — where the line says when it went in', () => {
    const lines = [
      // In the select since 0.9996 s (0.4 ms), nothing readable; since 1.9980 s (2 ms), one readable.
      '1.000000 recycle-flip 10 in-poll 0 0.999000 0.999600',
      '2.000000 recycle-flip 11 in-poll 1 1.990000 1.998000',
      // Past its poll: not in it. An older line without the entry, and a line whose entry is 0 (never in it yet): no reading.
      '3.000000 recycle-flip 12 past-poll 2 2.999000 2.990000',
      '4.000000 recycle-flip 13 in-poll 0 3.999000',
      '5.000000 recycle-flip 14 in-poll 0 0.000000 0.000000',
      // The poller could not be read (−1): no reading either.
      '6.000000 recycle-flip 15 in-poll -1 5.999000 5.999500',
    ];
    const flips = requestTimings(lines).recycleFlipsInSelect.map((f) => ({ ...f, inSelectForMs: Math.round(f.inSelectForMs * 1000) / 1000 }));
    expect(flips).toEqual([
      { readable: 0, inSelectForMs: 0.4 },
      { readable: 1, inSelectForMs: 2 },
    ]);
    expect(recycleFlipsInSelectLine('g', requestTimings(lines).recycleFlipsInSelect)).toBe(
      'g: at the recycle flips that found the main thread in its select, nothing readable at 1: in it for a median 0.4 ms (quartiles 0.4–0.4 ms); something readable at 1: in it for a median 2 ms (quartiles 2–2 ms)',
    );
    expect(recycleFlipsInSelectLine('g', [])).toBe('g: at the recycle flips that found the main thread in its select, nothing readable at none; something readable at none');
    expect(() => requestTimings(['1.0 recycle-flip 10 in-poll 2 0.9 later'])).toThrow(/last entry into the select is not a time/);
  });

  it("gives the profile the share of such flips whose select the kernel had woken, and the last return's age at the others — neither without an age", () => {
    const flip = (place: 'in-poll' | 'past-poll', returnAgeMs: number | null) => ({ place, readable: 2, handedOverFromEarlier: 0, handedOverFromLater: 0, returnAgeMs });
    const measured = recycleReturnOf([flip('in-poll', 9), flip('in-poll', null), flip('in-poll', 4), flip('past-poll', 2), flip('past-poll', null)]);
    // Three of five flips in the select by the flag; the one past it with a return seen, 2 ms before it
    // (an in-poll flip's last return is the one before the select that woke: not the return it hands over).
    expect(measured.recycleFindsSelectWoken).toEqual({ measurement: 'hooks-under-the-calibration-load', samples: 5, share: 0.6 });
    expect(measured.recycleLastReturnAgeMs?.samples).toBe(1);
    expect(new Set(measured.recycleLastReturnAgeMs?.percentilesMs)).toEqual(new Set([2]));
    expect(recycleReturnOf([flip('in-poll', 3), flip('past-poll', null)])).toEqual({});
    expect(recycleReturnOf([])).toEqual({});
  });

  it("keeps each kept-alive hand-over's poll return: the select whose callback it is", () => {
    const lines = [
      "1.000000 submit 10 0.999000 ('127.0.0.1', 5001)",
      "1.000400 pre 10 ('127.0.0.1', 5001)",
      "1.002000 post 10 ('127.0.0.1', 5001)",
      // The select returned at 1.003 with this connection (and another, handed over first): 1.5 ms later its turn came.
      "1.003200 submit 10 1.003000 ('127.0.0.1', 5002)",
      "1.004500 submit 10 1.003000 ('127.0.0.1', 5001)",
    ];
    const [handOver] = requestTimings(lines).keptAliveHandOvers;
    expect(handOver!.handOverMs - handOver!.pollReturnedMs).toBeCloseTo(1.5, 6);
  });

  it('refuses a line it cannot read, and a post without its pre', () => {
    expect(() => requestTimings(['1.0 recycle-flip 10 somewhere'])).toThrow(/neither in-poll nor past-poll/);
    expect(() => requestTimings(['garbage'])).toThrow(/unexpected line "garbage"/);
    expect(() => requestTimings(['1.0 clock 10 yesterday'])).toThrow(/a clock line without a realtime/);
    expect(() => requestTimings(['1.0 submit 10 0.9 127.0.0.1'])).toThrow(/a peer without a port/);
    expect(() => requestTimings(["1.0 submit 10 ('127.0.0.1', 5001)"])).toThrow(/a submit line without its poll's return/);
    expect(() => requestTimings(["1.0 post 10 ('127.0.0.1', 5001)"])).toThrow(/a post with no pre/);
  });
});

describe("a capture beside the hooks: the client's turnaround, and the poll wait from the request's arrival", () => {
  /** A segment at `us` µs on the connection from client port `port`. */
  it("measures a response's last segment → the client's next request on the connection, and nothing across connections", () => {
    const segments = [
      seg(0, 5001, 'client', 'syn'),
      seg(10, 5001, 'server', 'syn'),
      seg(20, 5001, 'client'), // the first request follows no response: no turnaround
      seg(500, 5001, 'server'), // the response's headers…
      seg(520, 5001, 'server'), // …and its body: the turnaround counts from the last
      seg(530, 5001, 'client', 'ack'),
      seg(600, 5002, 'client'), // another connection's request, between them: not this one's
      seg(857, 5001, 'client'), // 337 µs after the body
      seg(1500, 5001, 'server'),
      seg(1600, 5001, 'server', 'fin'),
      seg(1700, 5001, 'client', 'rst'), // the connection ends; the port is used again
      seg(2000, 5001, 'client', 'syn'),
      seg(2100, 5001, 'client'), // a new connection's first request: no turnaround
    ];
    expect(clientTurnarounds(segments)).toEqual([0.337]);
  });

  it("pairs each kept-alive hand-over with its request's segment, on the realtime clock the worker's clock line gives", () => {
    // Worker 10's CLOCK_MONOTONIC reads 5 s where CLOCK_REALTIME reads 1000 s: +995 s.
    const lines = [
      '5.000000 clock 10 1000.000000',
      "5.000100 submit 10 5.000050 ('127.0.0.1', 5001)",
      "5.000300 pre 10 ('127.0.0.1', 5001)",
      "5.001000 post 10 ('127.0.0.1', 5001)",
      "5.001900 submit 10 5.001850 ('127.0.0.1', 5001)", // the request arrived at 1000.001400 (realtime): waited 0.5 ms
      "5.002000 pre 10 ('127.0.0.1', 5001)",
      "5.002500 post 10 ('127.0.0.1', 5001)",
      "6.000000 submit 10 5.999950 ('127.0.0.1', 5001)", // ab's FIN, handed over: no request segment for it
    ];
    const segments = [seg(1_000_000_050, 5001, 'client'), seg(1_000_001_005, 5001, 'server'), seg(1_000_001_400, 5001, 'client'), seg(1_000_002_505, 5001, 'server')];
    const times = requestTimings(lines);
    const { waitsMs, ofNoRequest, waitOfHandOver } = arrivalWaits(times, segments);
    expect(waitsMs.map((ms) => Math.round(ms * 1000) / 1000)).toEqual([0.5]);
    expect(ofNoRequest).toBe(1);
    // The kept-alive request whole: its wait, its pickup (submit → pre), its handler (pre → post), its
    // return; no return line came, so it is not whole, and no row is kept.
    expect(jointRequestRows(times.keptAliveHandOvers, waitOfHandOver).rowsMs).toEqual([]);
    const withReturns = (firstReturn: string) => requestTimings([...lines.slice(0, 4), `${firstReturn} return 10 ('127.0.0.1', 5001)`, ...lines.slice(4, 7), "5.002600 return 10 ('127.0.0.1', 5001)", lines[7]!]);
    const rowsOf = (times: ReturnType<typeof requestTimings>) => jointRequestRows(times.keptAliveHandOvers, arrivalWaits(times, segments).waitOfHandOver);
    // The connection back in the poller (5.001200) before its request came (5.001400): polled when it
    // came, it waited 0.5 ms from its arrival.
    expect(rowsOf(withReturns('5.001200'))).toEqual({ samples: 1, rowsMs: [[0.5, 0.1, 0.5, 0.1, 0, 0.05]] });
    // Back only at 5.001600, its request in since 5.001400: it waited 0.3 ms from its return.
    expect(rowsOf(withReturns('5.001600'))).toEqual({ samples: 1, rowsMs: [[0.3, 0.1, 0.5, 0.1, 1, 0.05]] });
    // The same hooks one second off the capture's clock find nothing to pair: the clock line is what puts them on it.
    const offByASecond = arrivalWaits(requestTimings(lines.map((l) => l.replace('1000.000000', '1001.000000'))), segments);
    expect(offByASecond.waitsMs).toEqual([]);
    expect(() => arrivalWaits(requestTimings(lines.slice(1)), segments)).toThrow(/worker 10 handed over requests but wrote no clock line/);
  });
});

describe("teardowns: a graceful exit's process gone, from the hooks' worker_exit to the kernel's close of what it held", () => {
  it('takes the first close, after the exit, of a connection the worker still held; not one it closed before, nor one opened after', () => {
    // Worker 10's CLOCK_MONOTONIC 5 s is CLOCK_REALTIME 1000 s; it exits at 5.010 (realtime 1000.010 s).
    const lines = [
      '5.000000 clock 10 1000.000000',
      "5.001000 submit 10 5.000950 ('127.0.0.1', 5001)",
      "5.002000 submit 10 5.001950 ('127.0.0.1', 5002)",
      "5.003000 submit 10 5.002950 ('127.0.0.1', 5003)",
      '5.010000 worker-exit 10 -',
      // Worker 11 held nothing at its exit.
      '5.000000 clock 11 1000.000000',
      "5.001000 submit 11 5.000950 ('127.0.0.1', 6001)",
      '5.020000 worker-exit 11 -',
    ];
    const segments = [
      seg(1_000_000_500, 5001, 'client', 'syn'),
      seg(1_000_001_500, 5002, 'client', 'syn'),
      seg(1_000_002_500, 5003, 'client', 'syn'),
      seg(1_000_005_000, 5002, 'server', 'fin'), // closed before the exit: not the teardown
      seg(1_000_210_000, 5001, 'server', 'rst'), // the process gone, 200 ms after the exit: an unread request reset
      seg(1_000_210_000, 5003, 'server', 'fin'), // the same instant: an idle one
      seg(1_000_500_000, 5002, 'client', 'syn'), // the port used again, later: another connection
      seg(1_000_600_000, 5002, 'server', 'fin'),
      seg(1_000_000_500, 6001, 'client', 'syn'),
      seg(1_000_004_000, 6001, 'server', 'fin'),
    ];
    expect(teardowns(requestTimings(lines), segments).map((t) => [t.pid, Math.round(t.ms * 1000) / 1000])).toEqual([['10', 200]]);
  });
});

describe('goneToReady: a replacement measured from the exiting process gone', () => {
  it("takes each exit → ready pair less that worker's teardown, and leaves out an exit whose teardown nobody saw", () => {
    const pairs = exitsToReady([
      { ms: 1000, kind: 'exit', pid: '10' },
      { ms: 1100, kind: 'exit', pid: '11' },
      { ms: 1400, kind: 'ready' },
      { ms: 1700, kind: 'ready' },
    ]);
    expect(pairs).toEqual([
      { pid: '10', ms: 400 },
      { pid: '11', ms: 600 },
    ]);
    // Worker 10 was gone 250 ms after its exit hook; worker 11 held no connection at its exit, so its end was not seen.
    expect(goneToReady(pairs, [{ pid: '10', ms: 250 }])).toEqual([150]);
  });
});

describe("arbiterTimes: the arbiter's reaps and forks, from gunicorn's hooks", () => {
  // Two workers. Seconds as the hooks write them (CLOCK_MONOTONIC), pids as gunicorn's.
  const log = [
    '10.000 forked 1',
    '10.020 ready 1',
    '10.070 forked 2',
    '10.095 ready 2',
    // Both recycle together; 1 is reaped 400 ms after its exit hook, 2 at 405.
    '11.000 exit 1',
    '11.010 exit 2',
    '11.400 reaped 1',
    '11.415 reaped 2',
    // 3 fills 1's place: the fork ahead (2's, at 10.070) is long past — the arbiter's wake, 40 ms.
    '11.440 forked 3',
    '11.500 ready 3',
    // 4 fills 2's: reaped before 3's fork, it waited for it and the sleep after — a gap of 80 ms.
    '11.520 forked 4',
    '11.600 ready 4',
    // 3 recycles; reaped 60 ms after 4's fork (within the loop's longest sleep): it may have waited for part of one — no sample.
    '11.550 exit 3',
    '11.580 reaped 3',
    '11.650 forked 5',
    '11.700 ready 5',
    // The final stop: reaps no fork fills, not under the load.
    '13.000 exit 4',
    '13.010 exit 5',
    '13.100 reaped 4',
    '13.110 reaped 5',
  ];

  it('pairs the forks after the start\'s with the reaps in order, and tells a queued fork from one that found none ahead', () => {
    const times = arbiterTimes(lifeLines(log), 2);
    const ms = (xs: readonly number[]) => xs.map((x) => Math.round(x * 1000) / 1000);
    expect(ms(times.forkToReadyMs)).toEqual([20, 25, 60, 80, 50]);
    expect(ms(times.reapToForkMs)).toEqual([40]);
    expect(ms(times.forkGapMs)).toEqual([80]);
    expect(times.exitToReap.map((x) => [x.pid, Math.round(x.ms * 1000) / 1000])).toEqual([
      ['1', 400],
      ['2', 405],
      ['3', 30],
    ]);
    // Less each worker's teardown where the capture saw it; the whole exit → reap where the target measures none.
    expect(ms(reapsAfterTeardown(times.exitToReap, [{ pid: '1', ms: 250 }, { pid: '3', ms: 10 }]))).toEqual([150, 20]);
    expect(ms(reapsAfterTeardown(times.exitToReap, []))).toEqual([400, 405, 30]);
    // Kept together, per worker: one process's end.
    expect(gracefulExitRows(times.exitToReap, [{ pid: '1', ms: 250 }, { pid: '3', ms: 10 }]).map((row) => ms(row))).toEqual([
      [250, 150],
      [10, 20],
    ]);
  });

  it('refuses a fork before the reap it would fill, and a line the hooks do not write', () => {
    expect(() => arbiterTimes(lifeLines(['10.000 forked 1', '11.000 reaped 1', '10.500 forked 2']), 1)).toThrow(/worker 2 forked at 10500\.0 ms, before the reap of 1/);
    expect(() => lifeLines(['10.000 forked 1', '10.5 booted 2'])).toThrow(/hooks\.log: unexpected line "10\.5 booted 2"; expected "<seconds> exit\|ready\|forked\|reaped <pid>"/);
  });
});

describe('jointRequestRows: the requests kept whole are an even sample over the run', () => {
  it('keeps at most three thousand, spread over the run, each one request\'s four times', () => {
    // Every even one handed over 0.1 ms after its poll's return; every odd one 1 ms after, longer than it waited.
    const handOvers = Array.from({ length: 9000 }, (_, i) => ({ pid: '1', clientPort: 5000, previousHandOverMs: i, handOverMs: i + 1, pollReturnedMs: i % 2 === 0 ? i + 0.9 : i, returnedMs: i + 0.25, pickupMs: i, handlerMs: 1, returnMs: 2 }));
    const waits = handOvers.map((_, i) => (i % 3 === 2 ? undefined : 0.5)); // a third not paired with an arrival: not whole
    const { samples, rowsMs } = jointRequestRows(handOvers, waits);
    expect(samples).toBe(6000);
    expect(rowsMs).toHaveLength(3000);
    // Even: every second whole request, from the first to the end of the run.
    expect(rowsMs[0]).toEqual([0.5, 0, 1, 2, 0, 0.1]);
    expect(rowsMs[2999]![1]).toBeGreaterThan(8900);
    // The poll returned after the request came (select reports what is readable as it returns): a clock
    // that puts the return earlier is read as the arrival — at most the whole wait (the second row, the fourth request).
    expect(rowsMs[1]).toEqual([0.5, 3, 1, 2, 0, 0.5]);
  });

  it("with the connections each worker held at its hand-overs: a seventh column, and a hand-over without a count is left out", () => {
    const handOvers = Array.from({ length: 4 }, (_, i) => ({ pid: '1', clientPort: 5000, previousHandOverMs: i, handOverMs: i + 1, pollReturnedMs: i + 0.9, returnedMs: i + 0.25, pickupMs: 0.5, handlerMs: 1, returnMs: 2 }));
    const { samples, rowsMs } = jointRequestRows(handOvers, [0.5, 0.5, 0.5, 0.5], [3, undefined, 1, 12]);
    expect(samples).toBe(3);
    expect(rowsMs).toEqual([
      [0.5, 0.5, 1, 2, 0, 0.1, 3],
      [0.5, 0.5, 1, 2, 0, 0.1, 1],
      [0.5, 0.5, 1, 2, 0, 0.1, 12],
    ]);
  });
});

describe("acceptTurns: gthread's loop turns between accepts, and each connection's wait in the queue, from the capture's SYNs and the hooks' first hand-overs", () => {
  // One clock (monotonic 0 = realtime 0). Ports 6001–6003 connect together at 10 ms (a reconnection
  // burst); worker 1 accepts 6001 at 11 ms and 6002 at 13 ms, worker 2 accepts 6003 at 12 ms; port 6004
  // connects at 20 ms, after worker 1's last accept, and worker 1 takes it at 20.5 ms. A connection's
  // later hand-overs (kept-alive requests) are not accepts.
  const segments = [seg(10_000, 6001, 'client', 'syn'), seg(10_000, 6002, 'client', 'syn'), seg(10_000, 6003, 'client', 'syn'), seg(20_000, 6004, 'client', 'syn')];
  const handOver = (pid: string, clientPort: number, atMs: number) => ({ pid, clientPort, atMs });
  const times = {
    realtimeOffsetMs: new Map([['1', 0], ['2', 0]]),
    // Out of time order, as the hooks' log is (each worker writes its lines at its exit).
    handOvers: [handOver('2', 6003, 12), handOver('2', 6003, 15), handOver('1', 6004, 20.5), handOver('1', 6002, 13), handOver('1', 6001, 11), handOver('1', 6001, 14)],
  };

  it("a worker's next accept of a connection that was queued at its last is a turn; one that came after is not", () => {
    const { turnsMs } = acceptTurns(times, segments);
    // Worker 1: 11 → 13 (6002 queued since 10 ms) is a turn; 13 → 20.5 is not (6004 came at 20 ms). Worker 2 accepted once.
    expect(turnsMs.map((ms) => Math.round(ms * 1000) / 1000)).toEqual([2]);
  });

  it("each connection's SYN → its accept, the first hand-over, whichever worker took it", () => {
    const { waitsMs } = acceptTurns(times, segments);
    expect([...waitsMs].map((ms) => Math.round(ms * 1000) / 1000).sort((a, b) => a - b)).toEqual([0.5, 1, 2, 3]);
  });
});

describe("heldAtHandOvers: the connections a worker held at each kept-alive hand-over, from the capture's connections and the hooks' ports", () => {
  // Two workers on one clock (monotonic 0 s = realtime 0 s). Worker 1 serves ports 5001, 5002 and 5004;
  // worker 2 serves 5003. Port 5001's first connection closes at 30 ms and the port is used again at
  // 40 ms — by worker 2; its SYN sent twice (the first unanswered) is one connection.
  const segments = [
    seg(1_000, 5001, 'client', 'syn'),
    seg(2_000, 5002, 'client', 'syn'),
    seg(3_000, 5003, 'client', 'syn'),
    seg(25_000, 5004, 'client', 'syn'),
    seg(30_000, 5001, 'server', 'fin'),
    seg(31_000, 5001, 'client', 'rst'),
    seg(40_000, 5001, 'client', 'syn'),
    seg(41_000, 5001, 'client', 'syn'),
    seg(60_000, 5002, 'client', 'rst'),
  ];
  const handOver = (pid: string, clientPort: number, atMs: number) => ({ pid, clientPort, atMs });
  const keptAlive = (pid: string, clientPort: number, atMs: number) => ({ pid, clientPort, previousHandOverMs: atMs - 1, handOverMs: atMs, pollReturnedMs: atMs });
  const times = {
    realtimeOffsetMs: new Map([['1', 0], ['2', 0]]),
    handOvers: [handOver('1', 5001, 1.1), handOver('1', 5002, 2.1), handOver('2', 5003, 3.1), handOver('1', 5002, 20), handOver('1', 5004, 25.1), handOver('2', 5001, 42), handOver('2', 5001, 50)],
    keptAliveHandOvers: [keptAlive('1', 5002, 20), keptAlive('1', 5002, 35), keptAlive('2', 5001, 50), keptAlive('2', 5003, 50), keptAlive('3', 5003, 50)],
  };

  it("counts the worker's own connections open at the hand-over, each port's connections apart, itself among them", () => {
    // At 20 ms worker 1 holds 5001 and 5002 (5004 not yet open); at 35 ms 5002 and 5004 (5001's first
    // connection closed at 30 ms); at 50 ms worker 2 holds 5003 and 5001's second connection — one,
    // though its SYN came twice. Worker 3 wrote no clock line: no count.
    expect(heldAtHandOvers(times, segments)).toEqual([2, 2, 2, 2, undefined]);
  });

  it('a hand-over the capture has no open connection for still counts its own', () => {
    // Worker 4 has a clock line and no connection in the capture (its port's segments lost); worker 1 at 65 ms holds 5004 alone.
    const withFour = { ...times, realtimeOffsetMs: new Map([...times.realtimeOffsetMs, ['4', 0]]) };
    expect(heldAtHandOvers({ ...withFour, keptAliveHandOvers: [keptAlive('4', 5009, 20), keptAlive('1', 5004, 65)] }, segments)).toEqual([1, 1]);
  });
});

describe('handOversByWorker: how a run without recycling spread its load', () => {
  it('counts the kept-alive hand-overs of each worker, most first, so that a profile says when one worker served them all', () => {
    const of = (pids: string[]) => pids.map((pid) => ({ pid }));
    expect(handOversByWorker(of(['10', '11', '10', '12', '10', '11']))).toBe('kept-alive hand-overs by worker: 3, 2, 1');
    expect(handOversByWorker(of(['10', '10']))).toBe('kept-alive hand-overs by worker: 2');
    expect(handOversByWorker([])).toBe('kept-alive hand-overs by worker: none');
  });
});

describe("gracefulExitTiming: a graceful exit's teardown and reap", () => {
  it('draws a measured row whole — never one row\'s teardown with another\'s reap — and each distribution apart where there are no rows', () => {
    const rng = new Rng(5);
    const together = gracefulExitTiming({ gracefulExitRowsMs: [[0, 50], [100, 0]], teardownPercentilesMs: Array.from({ length: 101 }, () => 7) }, { rng }).gracefulExitMs!;
    const drawn = Array.from({ length: 200 }, () => together());
    expect(drawn.every((d) => (d.teardownMs === 0 && d.reapAfterTeardownMs === 50) || (d.teardownMs === 100 && d.reapAfterTeardownMs === 0))).toBe(true);
    expect(new Set(drawn.map((d) => d.teardownMs))).toEqual(new Set([0, 100]));
    const apart = gracefulExitTiming({ teardownPercentilesMs: Array.from({ length: 101 }, () => 7) }, { rng }).gracefulExitMs!;
    expect(apart()).toEqual({ teardownMs: 7 });
    expect(gracefulExitTiming({}, { rng }).gracefulExitMs).toBeUndefined();
  });
});

describe('profileText: a profile file as written', () => {
  it('holds the same profile, each array of numbers on one line', () => {
    const profile = getProfile('gunicorn-20.1-gthread');
    const text = profileText(profile);
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(profile)));
    const rows = profile.keptAliveRequestsMs!.rowsMs;
    // A request row is one line; the rows of a measurement, one line each.
    expect(text).toContain(`\n      [${rows[0]!.join(', ')}],\n`);
    // No number on a line of its own (JSON.stringify's indented form puts each there).
    expect(text.split('\n').filter((line) => /^\s*-?\d[\d.e+-]*,?$/.test(line))).toEqual([]);
    expect(text.endsWith('}\n')).toBe(true);
  });
});
