/**
 * `quiesce calibrate` for real: a server started from its command, ab's load,
 * its workers and their connections read from /proc, beside the simulator
 * with the server's measured profile.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { APPS_DIR, QUIESCE_BIN, tempDir } from '../../conformance/process.ts';
import { measureProfile } from '../../conformance/measure-profile.ts';
import type { CalibrationReport } from '../../conformance/calibrate.ts';
import { AbAbortedError, HeldSampler, abAbortLines, formatOffBy, lossMechanisms, median, offBy, offByInterval, realRuns, simulatedRun, withinTolerance } from '../../conformance/calibrate.ts';
import { getScenario } from '../../simulator/scenarios.ts';
import { abFailureCounts } from '../../simulator/clients.ts';
import fc from 'fast-check';
import { runCli } from '../helpers.ts';
import { BACKLOG_MATRIX, MATRIX, ownRunTable, realRunsOf, selectRows } from '../../conformance/calibration-matrix.ts';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fillCommand } from '../../conformance/blackbox.ts';
import { DEFAULT_SERVER_PARAMS } from '../../model/params.ts';
import { getPolicy } from '../../model/policies.ts';
import { getProfile } from '../../simulator/profiles.ts';

const GUNICORN = ['/usr/bin/gunicorn', '/usr/bin/gunicorn3'].find((p) => existsSync(p));

describe('withinTolerance and median', () => {
  it('measure the simulated median against the real one, relatively; a real 0 asks for a simulated 0', () => {
    expect(withinTolerance(100, 125, 0.25)).toBe(true);
    expect(withinTolerance(100, 126, 0.25)).toBe(false);
    expect(withinTolerance(100, 75, 0.25)).toBe(true);
    expect(withinTolerance(100, 74, 0.25)).toBe(false);
    expect(withinTolerance(0, 0, 0.25)).toBe(true);
    expect(withinTolerance(0, 1, 0.25)).toBe(false);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });
});

describe("offByInterval: how sure a row's verdict is", () => {
  const counts = fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 12 });
  const bootstrap = { level: 0.9, resamples: 300, seed: 7 };

  it('lies within what any resampled medians can give, low ≤ high, and is the same for the same figures', () => {
    fc.assert(
      fc.property(counts, counts, (real, simulated) => {
        const interval = offByInterval(real, simulated, bootstrap)!;
        // A resampled median is between its side's least and greatest figure.
        expect(interval.low).toBeGreaterThanOrEqual(offBy(Math.max(...real), Math.min(...simulated)) - 1e-12);
        expect(interval.high).toBeLessThanOrEqual(offBy(Math.min(...real), Math.max(...simulated)) + 1e-12);
        expect(interval.low).toBeLessThanOrEqual(interval.high);
        expect(offByInterval(real, simulated, bootstrap)).toEqual(interval);
      }),
    );
  });

  it('is a relative distance: scaling both sides alike leaves it; more simulated losses move it up, never down', () => {
    fc.assert(
      fc.property(counts, counts, fc.integer({ min: 2, max: 9 }), fc.integer({ min: 1, max: 50 }), (real, simulated, scale, more) => {
        const interval = offByInterval(real, simulated, bootstrap)!;
        const scaled = offByInterval(real.map((x) => x * scale), simulated.map((x) => x * scale), bootstrap)!;
        expect(scaled.low).toBeCloseTo(interval.low, 9);
        expect(scaled.high).toBeCloseTo(interval.high, 9);
        // The resamples pick the same indices (they depend on the counts of figures and the seed alone).
        const raised = offByInterval(real, simulated.map((x) => x + more), bootstrap)!;
        expect(raised.low).toBeGreaterThan(interval.low);
        expect(raised.high).toBeGreaterThan(interval.high);
      }),
    );
  });

  it('is the point itself where neither side spreads, wide where either does, and absent where the real median is 0', () => {
    expect(offByInterval([20, 20, 20], [25, 25, 25, 25])).toEqual({ low: 0.25, high: 0.25 });
    // Our server's TERM row, calibrate on 2026-12-06: nine real runs, and the first nine seeds.
    const wide = offByInterval([25, 19, 21, 20, 16, 28, 20, 31, 25], [30, 20, 24, 27, 22, 29, 20, 30, 28])!;
    expect(wide.low).toBeLessThan(0.1);
    expect(wide.high).toBeGreaterThan(0.35);
    // Each side's spread is in it: a steady side leaves the other's whole.
    for (const [real, simulated] of [
      [[20, 20, 20, 20, 20], [10, 15, 20, 25, 30]],
      [[10, 15, 20, 25, 30], [20, 20, 20, 20, 20]],
    ]) {
      const interval = offByInterval(real!, simulated!)!;
      expect(interval.low).toBeLessThan(-0.2);
      expect(interval.high).toBeGreaterThan(0.2);
    }
    expect(offByInterval([0, 0, 1], [3, 4])).toBeNull();
    expect(offByInterval([], [3])).toBeNull();
    expect(() => offByInterval([1], [1], { level: 1, resamples: 10, seed: 1 })).toThrow(/0 < level < 1/);
  });

  it('prints a signed whole percent', () => {
    expect([0.174, -0.04, 0, -0.001, Number.POSITIVE_INFINITY].map(formatOffBy)).toEqual(['+17 %', '-4 %', '0 %', '0 %', '+∞']);
  });
});

describe('realRuns: a run ab ended by itself is run again', () => {
  // What ab 2.3 printed when a stop's connect was reset before it saw it complete (a matrix run, 2026-12-06).
  const ABORTED = [
    'This is ApacheBench, Version 2.3 <$Revision: 1934973 $>',
    'Benchmarking 127.0.0.1 (be patient)',
    '',
    'Test aborted after 10 failures',
    '',
    'apr_socket_connect(): Connection reset by peer (104)',
    'Total of 3846 requests completed',
  ].join('\n');

  it("names ab's own ending from its output", () => {
    expect(abAbortLines(ABORTED)).toBe('Test aborted after 10 failures; apr_socket_connect(): Connection reset by peer (104)');
  });

  it('runs an aborted run again, counts it, and keeps only whole runs; another error ends the calibration at once', async () => {
    const log: string[] = [];
    let call = 0;
    const outcomes = ['abort', 1, 'abort', 'abort', 2, 3];
    const once = async () => {
      const next = outcomes[call++];
      if (next === 'abort') throw new AbAbortedError(abAbortLines(ABORTED));
      return next as number;
    };
    const aborted: string[] = [];
    const { figures, abortedRuns } = await realRuns(3, once, (line) => log.push(line), (line) => aborted.push(line));
    expect(figures).toEqual([1, 2, 3]);
    expect(abortedRuns).toBe(3);
    expect(log.filter((l) => /ended it by itself/.test(l))).toHaveLength(3);
    // The matrix hears of the aborts alone (each real run's start is calibrate's progress, not a change of the sample).
    expect(aborted).toEqual(log.filter((l) => /ended it by itself/.test(l)));
    expect(aborted[0]).toContain('Connection reset by peer (104)');
    await expect(realRuns(2, async () => Promise.reject(new Error('ab failed: cannot connect')), () => {})).rejects.toThrow('ab failed');
  });

  it('gives up after three aborts of the same run in a row', async () => {
    let calls = 0;
    const always = async () => {
      calls++;
      throw new AbAbortedError('Test aborted after 10 failures');
    };
    await expect(realRuns(5, always, () => {})).rejects.toBeInstanceOf(AbAbortedError);
    expect(calls).toBe(3);
  });
});

describe("lossMechanisms: how each exchange was lost, read back from ab's columns", () => {
  it("recovers any mix of the three losses from the counts ab's accounting (simulator/clients.ts) gives them", () => {
    fc.assert(
      fc.property(fc.nat(500), fc.nat(500), fc.nat(500), (unread, afterFin, noReply) => {
        const columns = { receive: 0, length: 0, exceptions: 0 };
        const add = (c: { receive: number; length: number; exceptions: number }, n: number) => {
          columns.receive += c.receive * n;
          columns.length += c.length * n;
          columns.exceptions += c.exceptions * n;
        };
        add(abFailureCounts('reset', false), unread);
        add(abFailureCounts('reset', true), afterFin);
        add(abFailureCounts('empty-reply', false), noReply);
        expect(lossMechanisms(columns)).toEqual({ unreadReset: unread, resetAfterFin: afterFin, finNoReply: noReply });
      }),
    );
  });
});

describe("simulatedRun: a recycled worker counted as the real side's sampler counts it", () => {
  it('ended at its reap, not its exit: a reap after the load ends is not a recycle, as a zombie still listed among the children is not', () => {
    const params = structuredClone(getScenario('keepalive-recycle').params);
    params.load = { kind: 'ab', requests: 2000, concurrency: 20, keepAlive: true, timeoutMs: 30_000 };
    params.server = { ...params.server, workers: 2, maxRequests: 150 };
    const atOnce = simulatedRun('gunicorn-gthread', params, 4);
    // 2000 requests at max-requests 150 recycle a dozen workers while the load runs.
    expect(atOnce.recycles).toBeGreaterThanOrEqual(10);
    // Reaped 100 s after their teardown, none is reaped before a load of a few virtual seconds ends.
    const late = simulatedRun('gunicorn-gthread', { ...params, reapAfterTeardownPercentilesMs: Array.from({ length: 101 }, () => 100_000) }, 4);
    expect(late.recycles).toBe(0);
  });
});

describe("HeldSampler: the real side's recycles, read from /proc", () => {
  it("counts a child that ended as a recycled worker, unless its title only ever said spare: quiesce serve retires its loaded spare at a HUP, and it never served", async () => {
    // Children of this process (the "arbiter"), titled as quiesce serve titles them.
    const child = (title: string) => spawn('sleep', ['30'], { argv0: title, stdio: 'ignore' });
    const [retiredSpare, recycled, serving] = [child('quiesce: spare'), child('quiesce: worker 1'), child('quiesce: worker 2')];
    const all = [retiredSpare, recycled, serving];
    try {
      let listed = all.map((c) => c.pid!);
      let samples = 0;
      const sampler = new HeldSampler(process.pid, 1, 5, () => (samples++, [...listed]));
      const until = async (n: number) => {
        for (let i = 0; i < 400 && samples < n; i++) await new Promise((resolve) => setTimeout(resolve, 5));
      };
      await until(4);
      for (const ended of [retiredSpare, recycled]) {
        ended.kill('SIGKILL');
        await once(ended, 'exit');
      }
      listed = [serving.pid!];
      await until(samples + 3);
      // One recycle: the worker. (Counting every child that ended gave two.)
      expect((await sampler.stop()).heldMost).toEqual([0]);
    } finally {
      for (const c of all) c.kill('SIGKILL');
    }
  });
});

describe('the calibration matrix (npm run calibrate:matrix)', () => {
  it("gives every row a shipped profile and policy, and a command that takes each parameter the row varies", () => {
    for (const row of MATRIX) {
      getProfile(row.profile);
      getPolicy(row.policy);
      const params = { ...DEFAULT_SERVER_PARAMS, ...row.server };
      const command = fillCommand(row.command, params);
      expect(command.replace('{bind}', '')).not.toMatch(/\{[a-z-]+\}/);
      expect(command).toContain(` ${params.workers} `);
      expect(command).toContain(` ${params.keepAliveMs / 1000} `);
      expect(command).toContain(` ${params.maxRequestsJitter}`);
    }
    expect(new Set(MATRIX.map((r) => r.name)).size).toBe(MATRIX.length);
  });

  it('runs each signal row (a stop, three reloads) nine times for real and every other row five: a signal row spreads twice as wide', () => {
    const signalRows = MATRIX.filter((row) => (row.signals ?? []).length > 0);
    expect(signalRows.map((row) => row.name).every((name) => /HUPs|TERM/.test(name))).toBe(true);
    expect(signalRows).toHaveLength(6);
    for (const row of MATRIX) expect(realRunsOf(row), row.name).toBe(signalRows.includes(row) ? 9 : 5);
  });

  it('--rows picks the rows whose name contains the text, whatever its case; a text no row has is refused with the names', () => {
    const ours = selectRows(MATRIX, 'QUIESCE SERVE (gunicorn-gthread)');
    expect(ours.length).toBeGreaterThan(0);
    expect(ours.every((row) => row.command.includes(' serve '))).toBe(true);
    expect(selectRows(MATRIX, 'TERM').map((row) => row.signals)).toEqual(MATRIX.filter((row) => row.name.includes('TERM')).map((row) => row.signals));
    expect(selectRows(BACKLOG_MATRIX, 'TERM')).toEqual([]);
    expect(selectRows(MATRIX, undefined)).toEqual(MATRIX);
    const refused = spawnSync(process.execPath, ['--import', 'tsx', 'conformance/calibration-matrix.ts', '--rows', 'no such row'], { encoding: 'utf8', timeout: 60_000 });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(`--rows: no row's name contains "no such row"`);
    expect(refused.stderr).toContain(`"${MATRIX[0]!.name}"`);
    expect(refused.stdout).toBe('');
  });

  it("prints each profile against its own measuring run: the run's losses, the seeds' spread, the distance of the median, the verdict", () => {
    const table = ownRunTable([
      { profile: 'gunicorn-20.1-gthread at 4 workers', check: { policy: 'gunicorn-gthread', requests: 40_000, real: 370, simulated: [389, 421, 470], simulatedMedian: 421 } },
      { profile: 'gunicorn-20.1-gthread at 1 worker', check: { policy: 'gunicorn-gthread', requests: 40_000, real: 600, simulated: [800, 760, 790], simulatedMedian: 790 } },
      { profile: 'gunicorn-20.1-sync at 4 workers', check: { policy: 'gunicorn-sync', requests: 40_000, real: 0, simulated: [0, 0, 0], simulatedMedian: 0 } },
      { profile: 'an old file', check: null },
    ]).split('\n');
    // 421 against 370 is +13.8 %: within; 790 against 600, +31.7 %: out; none against none: exact.
    expect(lines(table)).toEqual([
      '| gunicorn-20.1-gthread at 4 workers (gunicorn-gthread) | 370 of 40000 | 389–470 | +14 % | yes |',
      '| gunicorn-20.1-gthread at 1 worker (gunicorn-gthread) | 600 of 40000 | 760–800 | +32 % | no |',
      '| gunicorn-20.1-sync at 4 workers (gunicorn-sync) | 0 of 40000 | 0 | 0 | yes |',
      '| an old file | not kept | | | |',
    ]);
  });
});

/** A markdown table's rows, without its header and rule. */
const lines = (table: readonly string[]) => table.slice(2).filter((line) => line !== '');

/**
 * Our server's profile, measured on this machine before it is calibrated (npm run profile:measure, the
 * same code). A profile describes the machine it was measured on, and this kind of machine's speed
 * changes from one day to the next: the shipped quiesce-serve profile's median worker boot is 33 ms,
 * and measured here on another day it was 234 ms, its median service time 4.2 ms against 1.7. With the
 * shipped file the simulator predicted that other day's losses 17 % low, and a slower day's beyond the
 * tolerance (a CI run failed so); with the day's own profile, 5 % high. The prediction is the model's;
 * the timings it takes must be the machine's.
 */
let profileFile = '';

/** The profile measured on this machine now, written where `--profile FILE` reads it (as `npm run profile:measure -- NAME > FILE`). */
async function measuredProfileFile(name: string, port: number): Promise<string> {
  const file = join(tempDir('quiesce-calibrate-'), `${name}.json`);
  // The rows here stop only after the load: a stop's timings (ten TERM runs more) would not be in their figures.
  writeFileSync(file, JSON.stringify(await measureProfile(name, port, () => {}, { stops: false }), null, 2));
  return file;
}

/** `quiesce calibrate` against our own server under gunicorn-gthread, on the suite's port, with the profile measured here, and the given flags. */
function calibrateOurs(...flags: string[]) {
  return runCli(
    'calibrate',
    '--server', `${process.execPath} ${QUIESCE_BIN} serve --app hello --policy gunicorn-gthread --bind {bind} --workers {workers} --threads {threads} --keepalive {keepalive} --max-requests {max-requests}`,
    '--bind', '127.0.0.1:18534',
    '--profile', profileFile,
    '--policy', 'gunicorn-gthread',
    ...flags,
  );
}

describe('quiesce calibrate', () => {
  describe('quiesce serve, its profile measured here first', () => {
    beforeAll(async () => {
      profileFile = await measuredProfileFile('quiesce-serve', 18534);
    }, 120_000);
    it("quiesce serve under gunicorn-gthread, 3 real runs beside 3 seeds with its profile measured here: the lost exchanges agree within the model's measured accuracy (±40 %), and the exit code is the ±25 % verdict", async () => {
      const { code, out, err } = await calibrateOurs('--json');
      expect(err).toBe('');
      const report = JSON.parse(out) as CalibrationReport;
      console.log(`quiesce serve: lost exchanges real ${report.real.map((r) => r.lost).join(', ')}; simulated ${report.simulated.map((s) => s.figures.lost).join(', ')}`);
      expect(report.real).toHaveLength(3);
      expect(report.simulated.map((s) => s.seed)).toEqual([1, 2, 3]);
      // The seed's load recycles each worker after 512 requests: about 10,000 / 512 replacements, seen from outside and in the model alike.
      for (const figures of [...report.real, ...report.simulated.map((s) => s.figures)]) {
        expect(figures.recycles).toBeGreaterThanOrEqual(14);
        expect(figures.recycles).toBeLessThanOrEqual(20);
        expect(figures.heldPerRecycle).toBeGreaterThan(0);
        expect(figures.lost).toBeGreaterThan(0); // gunicorn-gthread loses keep-alive exchanges at each recycle: the mechanism is there on both sides
      }
      expect(report.withinTolerance).toBe(withinTolerance(report.lostRealMedian, report.lostSimulatedMedian, 0.25));
      expect(code).toBe(report.withinTolerance ? 0 : 1);
      // Issue 14 asks for ±25 %. With the shared CPU, a loaded spare's activation and a profile measured
      // the same hour the simulator was 10 and 8 % low in the matrix's rows on 2026-12-05 (4 workers and
      // jitter 64) and 4 % low here (real 201, simulated 193); before the activation, 12–23 % low in the
      // rows and 20 % high here in a fresh clone's CI run; drawing the measured times had it 6–37 % high.
      // What is left is #14's open part (simulator/README.md, "The CPU"). What is asserted is
      // that accuracy, with room for the real runs' own spread, so that a regression of the model or the
      // server (losses doubled, or gone) fails here.
      expect(withinTolerance(report.lostRealMedian, report.lostSimulatedMedian, 0.4), `real ${report.lostRealMedian}, simulated ${report.lostSimulatedMedian}`).toBe(true);
    }, 180_000);

    it('sends the same signals to the real server and the simulated one: a HUP under load replaces every worker on both sides', async () => {
      const { code, out } = await calibrateOurs('--max-requests', '0', '--requests', '20000', '--signal', 'HUP@300', '--runs', '1', '--seeds', '1', '--json');
      const report = JSON.parse(out) as CalibrationReport;
      expect(report.signals).toEqual([{ atMs: 300, signal: 'HUP' }]);
      // No recycling: the workers that end while ab runs are the four the reload replaced, seen from /proc and in the model —
      // and, from outside, the loaded spare process our server keeps, which a reload replaces too (it holds the old app).
      expect([4, 5]).toContain(report.real[0]!.recycles);
      expect(report.simulated[0]!.figures.recycles).toBe(4);
      expect(code).toBe(report.withinTolerance ? 0 : 1);
    }, 120_000);

    it('--capture: tcpdump tells the stop\'s own losses from the connects refused after it, which ab counts alike', async () => {
      const { code, out } = await calibrateOurs('--max-requests', '0', '--requests', '20000', '--signal', 'TERM@300', '--capture', '--without-refused', '--runs', '1', '--seeds', '1', '--json');
      const report = JSON.parse(out) as CalibrationReport;
      const [real] = report.real;
      const wire = real!.wire!;
      expect(real!.captureDropped).toBe(0);
      // ab -r goes on after the stop: the rest of its 20,000 requests are refused connects, each one lost.
      expect(wire.refused).toBeGreaterThan(1000);
      // What ab counts as lost, the capture sees lost too — and it says which of them the stop itself cost.
      const onTheWire = Object.values(wire).reduce((a, b) => a + b, 0);
      expect(Math.abs(onTheWire - real!.lost)).toBeLessThanOrEqual(real!.lost * 0.01 + 25);
      // The simulated side names the same endings from its own causes.
      expect(report.simulated[0]!.figures.wire!.refused).toBeGreaterThan(1000);
      // --without-refused: the tolerance holds the stop's own losses as the wire shows them, the refusals left out on both sides.
      expect(report.compared).toBe('lost-not-refused');
      const simWire = report.simulated[0]!.figures.wire!;
      expect(report.lostRealMedian).toBe(onTheWire - wire.refused);
      expect(report.lostSimulatedMedian).toBe(Object.values(simWire).reduce((a, b) => a + b, 0) - simWire.refused);
      expect(code).toBe(report.withinTolerance ? 0 : 1);
    }, 120_000);

  });

  describe("Debian's gunicorn 20.1 gthread, its profile measured here first", () => {
    if (!GUNICORN) throw new Error('gunicorn not found: apt-get install gunicorn (.ci/run installs it)');
    let gunicornProfile = '';
    beforeAll(async () => {
      gunicornProfile = await measuredProfileFile('gunicorn-20.1-gthread', 18535);
    }, 120_000);
    it("the seed's experiment, 3 real runs beside 9 seeds: measured from outside (recycles, connections held, from /proc), the lost exchanges within the model's measured accuracy (±40 %), and the exit code is the ±25 % verdict", async () => {
      const { code, out } = await runCli(
        'calibrate',
        '--server', `${GUNICORN} -k gthread --bind {bind} --workers {workers} --threads {threads} --keep-alive {keepalive} --max-requests {max-requests} --log-level warning --pythonpath ${APPS_DIR} hello_app:app`,
        '--bind', '127.0.0.1:18535',
        '--profile', gunicornProfile,
        '--seeds', '9',
        '--json',
      );
      const report = JSON.parse(out) as CalibrationReport;
      console.log(`gunicorn 20.1 gthread: lost exchanges real ${report.real.map((r) => r.lost).join(', ')}; simulated ${report.simulated.map((s) => s.figures.lost).join(', ')}`);
      expect(report.policy).toBe('gunicorn-gthread');
      expect(report.real).toHaveLength(3);
      for (const real of report.real) {
        expect(real.recycles).toBeGreaterThanOrEqual(12);
        expect(real.heldPerRecycle).toBeGreaterThan(0);
        // ab counts each lost exchange once under Length; gunicorn 20.1 loses some at every recycle (the seed's finding).
        expect(real.lost).toBe(real.length);
        expect(real.lost).toBeGreaterThan(real.recycles);
      }
      expect(code).toBe(report.withinTolerance ? 0 : 1);
      // Issue 14 asks for ±25 %, and the calibration matrices of 2026-12-05 met it on this row (−21 % with
      // three real runs, −1 % with five; 9 seeds, the day's profile), as on the other recycling rows; before
      // gthread's last loop turn handed over what its poll returned with, the row was +40 to +56 %. The real
      // runs of a row spread about as wide as the tolerance (72–122 in the second), so what is asserted is
      // the accuracy with room for that spread: a regression of the model (the +56 % of before) fails here.
      expect(withinTolerance(report.lostRealMedian, report.lostSimulatedMedian, 0.4), `real ${report.lostRealMedian}, simulated ${report.lostSimulatedMedian}`).toBe(true);
    }, 240_000);
  });
});
