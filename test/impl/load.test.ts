/**
 * The seed's experiment against the real server, with the real ApacheBench:
 * 4 workers × 20 threads, keep-alive 2 s, max-requests 512,
 * `ab -n 10000 -c 20 -s 1 -k -r`. Under safe-drain nothing may fail — with
 * recycling, with three HUPs, and with a non-idempotent POST whose every
 * processing must reach the client. Under gunicorn-gthread (20.x) the same
 * load loses requests, as the seed reports for gunicorn.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAb, type AbReport } from '../../conformance/ab.ts';
import { expectConformingTrace, serversStoppedAfterEach, stopServer, type RunningServer } from './server.ts';

const SEED_SERVER = ['--workers', '4', '--threads', '20', '--keepalive', '2', '--max-requests', '512'];
const SEED_LOAD = ['-n', '10000', '-c', '20', '-s', '1', '-k', '-r'];

const serve = serversStoppedAfterEach();

function url(server: RunningServer): string {
  return `${server.address}/`;
}

/** ab with the seed's load against the server; it must have run to the end. */
async function seedLoad(server: RunningServer, extra: string[] = []): Promise<AbReport> {
  const report = await runAb([...SEED_LOAD, ...extra, url(server)]);
  // ab exits non-zero when it gives up (its -s poll timeout, or more than 10 connect failures).
  expect(report.code, report.output).toBe(0);
  expect(report.complete).toBe(10_000);
  return report;
}

describe('the seed load against the real server (ApacheBench)', () => {
  it('safe-drain: 0 failed requests across repeated runs with max-requests recycling', async () => {
    const server = await serve([...SEED_SERVER, '--policy', 'safe-drain']);
    for (let run = 0; run < 2; run++) {
      const report = await seedLoad(server);
      expect(report.failed, report.output).toBe(0);
    }
    await stopServer(server);
    expectConformingTrace(server);
  }, 120_000);

  it('safe-drain: 0 failed requests with three HUPs during the run', async () => {
    const server = await serve([...SEED_SERVER, '--policy', 'safe-drain']);
    const ab = seedLoad(server);
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      server.signal('SIGHUP');
    }
    const report = await ab;
    expect(report.failed, report.output).toBe(0);
    await stopServer(server);
    const trace = expectConformingTrace(server);
    expect(trace.events.filter((e) => e.type === 'arbiter.signal' && e.signal === 'HUP')).toHaveLength(3);
  }, 120_000);

  it('safe-drain with the counter app and POSTs: every request processed was answered', async () => {
    const server = await serve([...SEED_SERVER, '--policy', 'safe-drain', '--app', 'counter']);
    const body = join(server.dir, 'body.txt');
    writeFileSync(body, 'increment');
    const ab = seedLoad(server, ['-p', body, '-T', 'text/plain']);
    await new Promise((r) => setTimeout(r, 1500));
    server.signal('SIGHUP');
    const report = await ab;
    expect(report.failed, report.output).toBe(0);
    await stopServer(server);
    // Processed = appended to the counter log before the response was written; received = ab's complete requests.
    const processed = readFileSync(join(server.dir, 'quiesce-counter.log'), 'utf8').trim().split('\n').length;
    expect(processed).toBe(report.complete);
  }, 120_000);

  it('gunicorn-gthread (20.x) with keep-alive 0: nothing fails, as the seed reports', async () => {
    const server = await serve([...SEED_SERVER, '--keepalive', '0', '--policy', 'gunicorn-gthread']);
    const report = await seedLoad(server);
    expect(report.failed, report.output).toBe(0);
    await stopServer(server);
    expectConformingTrace(server);
  }, 120_000);

  it('gunicorn-gthread (20.x): the same load fails some requests, as the seed reports', async () => {
    const server = await serve([...SEED_SERVER, '--policy', 'gunicorn-gthread']);
    const report = await seedLoad(server);
    expect(report.failed, report.output).toBeGreaterThan(0);
    // ab counts one Length per lost exchange (and up to two more counters): never fewer.
    expect(report.failed).toBeGreaterThanOrEqual(report.length);
    expect(report.length).toBeGreaterThan(0);
    await stopServer(server);
    expectConformingTrace(server);
  }, 120_000);
});
