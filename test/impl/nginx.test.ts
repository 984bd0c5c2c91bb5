/**
 * The backlog seed against the real server behind a real nginx (Debian's),
 * over a unix socket: one sync worker whose app blocks, a burst of requests
 * arriving faster than it serves. Once the kernel's accept queue is full,
 * nginx's connect() fails with EAGAIN and the client gets an immediate 502;
 * how many is the queue arithmetic of the model (capacity min(backlog,
 * somaxconn) + 1, plus the one request being served). With a backlog large
 * enough for the burst, nothing fails and latency is serial service.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { burst, proxiedGet, startProxy } from '../../conformance/nginx-proxy.ts';
import { calibrateBacklog, type BacklogCalibrationReport } from '../../conformance/backlog-calibration.ts';
import { runCli } from '../helpers.ts';
import { BACKLOG_MATRIX } from '../../conformance/calibration-matrix.ts';
import { acceptQueueCapacity } from '../../model/params.ts';
import { readSomaxconn } from '../../impl/config.ts';
import { startServer, stopServer, traceOf, type RunningServer } from './server.ts';

const SERVICE_MS = 150;
const REQUESTS = 40;
const SPREAD_MS = 100;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function run(backlog: number) {
  const server = await startServer(['--workers', '1', '--policy', 'gunicorn-sync', '--app', 'sleep', '--backlog', String(backlog), '--timeout', '0'], { unix: true });
  cleanups.push(async () => void (await stopServer(server)));
  const nginx = await startProxy((server.target as { path: string }).path);
  cleanups.push(nginx.stop);
  // One request first, so the burst does not meet a cold worker (JIT) that takes longer to start blocking.
  expect((await proxiedGet(nginx.port, '/?ms=0')).status).toBe(200);
  return { results: await burst(nginx.port, { requests: REQUESTS, spreadMs: SPREAD_MS, serviceMs: SERVICE_MS }), server, errorLog: nginx.errorLog };
}

describe('the backlog seed behind a real nginx (unix socket)', () => {
  it('a full accept queue gives immediate 502s, as many as the queue arithmetic says', async () => {
    const backlog = 8;
    const { results, errorLog, server } = await run(backlog);
    await stopServer(server);
    const capacity = acceptQueueCapacity(backlog, readSomaxconn());
    // The worker holds what it accepted before its first burst request blocked it: gunicorn's sync
    // worker holds exactly one; Node's event loop may have accepted one more in the same turn.
    const trace = traceOf(server);
    const firstBurstRead = trace.events.filter((e) => e.type === 'conn.read')[1]!;
    const held = trace.events.filter((e) => e.type === 'worker.accept' && e.t <= firstBurstRead.t).length - 1;
    expect(held).toBeGreaterThanOrEqual(1);
    expect(held).toBeLessThanOrEqual(2);
    const badGateway = results.filter((r) => r.status === 502);
    // `held` in the worker, `capacity` waiting in the queue; every other connect() gets EAGAIN.
    expect(badGateway).toHaveLength(REQUESTS - capacity - held);
    expect(results.filter((r) => r.status === 200)).toHaveLength(capacity + held);
    // Immediate: a 502 never waited for a service slot.
    for (const r of badGateway) expect(r.latencyMs).toBeLessThan(SERVICE_MS);
    expect(readFileSync(errorLog, 'utf8')).toMatch(/Resource temporarily unavailable/);
  });

  it('with a backlog larger than the burst nothing fails, and the latencies are serial service', async () => {
    const { results } = await run(64);
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    // One worker, one request at a time: the k-th served waits for the k−1 before it.
    const sorted = results.map((r) => r.latencyMs).sort((a, b) => a - b);
    expect(sorted.at(-1)!).toBeGreaterThanOrEqual((REQUESTS - 1) * SERVICE_MS - SPREAD_MS);
  });
});

/**
 * The seed itself: Debian's gunicorn (sync) on a unix socket behind nginx — the calibration matrix's
 * backlog row, one real run beside the simulator's `backlog-unix` with the same backlog, somaxconn,
 * service time and burst. gunicorn's sync worker accepts one connection and blocks in its app, so the
 * queue arithmetic is exact on both sides: the burst less the queue's capacity less the one in service.
 */
describe("the backlog seed with Debian's gunicorn behind nginx (the calibration matrix's row)", () => {
  it('real and simulated give exactly the arithmetic: every 502 immediate, every other request served', async () => {
    if (!existsSync('/usr/bin/gunicorn')) throw new Error('gunicorn not found: apt-get install gunicorn (.ci/run installs it)');
    const row = BACKLOG_MATRIX.find((r) => r.name.startsWith('nginx → gunicorn sync') && r.backlog === 16)!;
    const report = await calibrateBacklog({ command: row.command, policy: row.policy, backlog: row.backlog, load: row.load, runs: 1, seeds: [1, 2], tolerance: 0 });
    // 60 requests in 100 ms, each 150 ms of service: all arrive while the worker serves the first.
    expect(report.arithmetic).toBe(row.load.requests - acceptQueueCapacity(row.backlog, report.somaxconn) - 1);
    expect(report.arithmetic).toBeGreaterThan(0);
    const served = row.load.requests - report.arithmetic;
    for (const figures of [...report.real, ...report.simulated.map((s) => s.figures)]) {
      expect(figures).toEqual({ badGateway: report.arithmetic, immediate: report.arithmetic, ok: served, other: 0 });
    }
    expect(report.withinTolerance).toBe(true);
  });
});

describe('quiesce calibrate-backlog', () => {
  it("runs our server behind nginx beside the simulator, prints the arithmetic, and exits 0 within the tolerance", async () => {
    const row = BACKLOG_MATRIX.find((r) => r.name.startsWith('nginx → quiesce serve'))!;
    const { code, out, err } = await runCli('calibrate-backlog', '--server', row.command, '--backlog', String(row.backlog), '--runs', '1', '--seeds', '2', '--json');
    expect(err).toBe('');
    const report = JSON.parse(out) as BacklogCalibrationReport;
    expect(code).toBe(0);
    expect(report.withinTolerance).toBe(true);
    for (const s of report.simulated) expect(s.figures).toMatchObject({ badGateway: report.arithmetic, immediate: report.arithmetic });
    // Node's event loop may accept one connection more than a sync worker before its app blocks it (the
    // first test above): one 502 fewer than the arithmetic, never more.
    const [real] = report.real;
    expect(real!.badGateway).toBeGreaterThanOrEqual(report.arithmetic - 1);
    expect(real!.badGateway).toBeLessThanOrEqual(report.arithmetic);
    expect(real!.immediate).toBe(real!.badGateway);
    expect(real!.badGateway + real!.ok).toBe(row.load.requests);
    const text = await runCli('calibrate-backlog', '--server', row.command, '--runs', '1', '--seeds', '1');
    expect(text.out).toContain(`the model's arithmetic: ${row.load.requests} − ${acceptQueueCapacity(row.backlog, report.somaxconn)} queued − 1 in service = ${report.arithmetic} immediate 502s`);
    const a = report.arithmetic;
    expect(text.out).toMatch(new RegExp(`502s, medians: real (${a}|${a - 1}), simulated ${a}: within ±25 %`));
  });
});
