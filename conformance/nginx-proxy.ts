/**
 * The backlog seed's front: Debian's nginx as a reverse proxy to one
 * upstream on a unix socket (no upstream keep-alive: a connect per request,
 * as in the seed), fed by an open-loop burst — N requests, each on its own
 * connection, spread evenly over a window (vegeta's `-rate`, as the
 * simulator's `ProxyLoad` sends them). Once the upstream's accept queue is
 * full, nginx's connect() fails with EAGAIN and the client gets an
 * immediate 502.
 *
 * Shared by the nginx test (test/impl/nginx.test.ts) and the calibration
 * matrix's backlog rows (`backlog-calibration.ts`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { tempDir } from './process.ts';

/** nginx is not installed, or did not come up: said in one line, with what nginx printed. */
export class ProxyStartError extends Error {}

export interface RunningProxy {
  readonly port: number;
  readonly proc: ChildProcess;
  readonly errorLog: string;
  /** nginx's graceful stop (QUIT); resolves once it exited. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** nginx in the foreground, one process, proxying every request to the upstream's unix socket. */
export async function startProxy(socketPath: string, startTimeoutMs = 10_000): Promise<RunningProxy> {
  const dir = tempDir('quiesce-nginx-');
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
  const port = await freePort();
  const errorLog = join(dir, 'error.log');
  const conf = join(dir, 'nginx.conf');
  // Long timeouts, as the seed's: a request that waits in the accept queue waits for its turn, and
  // only a full queue fails it (EAGAIN → 502 at once).
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
  const proc = spawn('nginx', ['-p', dir, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const failedToRun = new Promise<Error>((resolve) => proc.on('error', (error) => resolve(new ProxyStartError(`cannot run nginx (apt-get install nginx): ${error.message}`))));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    const ok = await Promise.race([
      new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('connect', () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      }),
      failedToRun.then((error) => Promise.reject(error)),
    ]);
    if (ok) break;
    if (Date.now() > deadline || proc.exitCode !== null) {
      proc.kill('SIGKILL');
      throw new ProxyStartError(`nginx did not start within ${startTimeoutMs} ms: ${output.trim().split('\n').at(-1) ?? ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    proc,
    errorLog,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGQUIT');
      await exited;
    },
  };
}

export interface BurstResult {
  readonly status: number;
  readonly latencyMs: number;
}

/** One GET through the proxy, on its own connection; resolves with its status once the body is in. */
export function proxiedGet(port: number, path: string): Promise<BurstResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, latencyMs: performance.now() - started }));
    });
    req.on('error', reject);
  });
}

/** `requests` GETs of `/?ms=serviceMs`, request i sent at i × spreadMs / requests: an open loop, like vegeta. */
export async function burst(port: number, load: { readonly requests: number; readonly spreadMs: number; readonly serviceMs: number }): Promise<BurstResult[]> {
  const one = (delayMs: number) => new Promise<void>((r) => setTimeout(r, delayMs)).then(() => proxiedGet(port, `/?ms=${load.serviceMs}`));
  return Promise.all(Array.from({ length: load.requests }, (_, i) => one((i * load.spreadMs) / load.requests)));
}
