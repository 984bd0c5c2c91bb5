/**
 * The backlog seed against the real server behind a real nginx (Debian's),
 * over a unix socket: one sync worker whose app blocks, a burst of requests
 * arriving faster than it serves. Once the kernel's accept queue is full,
 * nginx's connect() fails with EAGAIN and the client gets an immediate 502;
 * how many is the queue arithmetic of the model (capacity min(backlog,
 * somaxconn) + 1, plus the one request being served). With a backlog large
 * enough for the burst, nothing fails and latency is serial service.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acceptQueueCapacity } from '../../model/params.ts';
import { readSomaxconn } from '../../impl/config.ts';
import { startServer, stopServer, tempDir, traceOf, type RunningServer } from './server.ts';

const SERVICE_MS = 150;
const REQUESTS = 40;
const SPREAD_MS = 100;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startNginx(socketPath: string): Promise<{ port: number; proc: ChildProcess; errorLog: string }> {
  const dir = tempDir('quiesce-nginx-');
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
  const port = await freePort();
  const errorLog = join(dir, 'error.log');
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
error_log ${errorLog} error;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  upstream app { server unix:${socketPath}; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_connect_timeout 60s; proxy_read_timeout 120s; }
  }
}
`,
  );
  const proc = spawn('nginx', ['-p', dir, '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  proc.on('error', (error) => {
    throw new Error(`cannot run nginx (apt-get install nginx): ${error.message}`);
  });
  // Ready when it accepts connections.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`nginx did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, proc, errorLog };
}

interface Result {
  status: number;
  latencyMs: number;
}

/** REQUESTS requests, each on its own connection, spread evenly over SPREAD_MS (an open-loop burst, like vegeta). */
async function burst(port: number): Promise<Result[]> {
  const one = (delayMs: number) =>
    new Promise<Result>((resolve, reject) => {
      setTimeout(() => {
        const started = performance.now();
        const req = http.get({ host: '127.0.0.1', port, path: `/?ms=${SERVICE_MS}`, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, latencyMs: performance.now() - started }));
        });
        req.on('error', reject);
      }, delayMs);
    });
  return Promise.all(Array.from({ length: REQUESTS }, (_, i) => one((i * SPREAD_MS) / REQUESTS)));
}

async function run(backlog: number): Promise<{ results: Result[]; server: RunningServer; errorLog: string }> {
  const server = await startServer(['--workers', '1', '--policy', 'gunicorn-sync', '--app', 'sleep', '--backlog', String(backlog), '--timeout', '0'], { unix: true });
  cleanups.push(async () => void (await stopServer(server)));
  const nginx = await startNginx((server.target as { path: string }).path);
  cleanups.push(async () => {
    nginx.proc.kill('SIGQUIT');
    await new Promise((r) => nginx.proc.once('exit', r));
  });
  // One request first, so the burst does not meet a cold worker (JIT) that takes longer to start blocking.
  await new Promise<void>((resolve, reject) => http.get({ host: '127.0.0.1', port: nginx.port, path: '/?ms=0', agent: false }, (res) => res.resume().on('end', resolve)).on('error', reject));
  return { results: await burst(nginx.port), server, errorLog: nginx.errorLog };
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
