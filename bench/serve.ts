/**
 * The real server's speed, as ratios measured in one run with the real
 * ApacheBench (absolute numbers on a shared machine mean little):
 *   - requests per second of `quiesce serve --app hello`, trace off, on and lifecycle only,
 *     against a bare node:http server with the same number of processes
 *     accepting from one shared socket (the same fd passing, nothing else);
 *   - the seed's load with recycling (`ab -n 10000 -c 20 -k -r`, 4 workers ×
 *     20 threads, keep-alive 2 s, max-requests 512) against Debian's gunicorn
 *     20.1 gthread and against `quiesce serve`, side by side, when gunicorn
 *     is installed;
 *   - how long a HUP reload takes under load, and a TERM.
 * Needs `ab` (apt-get install apache2-utils).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { accepts, startProcess, waitFor } from '../conformance/process.ts';
import { runAb } from '../conformance/ab.ts';
import { startServer, stopServer, type RunningServer } from '../test/impl/server.ts';

const WORKERS = 2;
const LOAD = ['-n', '40000', '-c', '50', '-k'];

export interface ServeFigures {
  readonly workers: number;
  readonly load: string;
  readonly bareRps: number;
  readonly traceOffRps: number;
  readonly traceOnRps: number;
  /** With `--trace-events lifecycle`: the processes' own events only. */
  readonly lifecycleTraceRps: number;
  readonly traceOffRatio: number;
  readonly traceOnRatio: number;
  readonly lifecycleTraceRatio: number;
  readonly reloadMs: number;
  readonly termMs: number;
  /** The seed load with recycling against gunicorn 20.1 gthread and quiesce serve: requests per second; null without gunicorn. */
  readonly seedLoad: { readonly gunicornRps: number; readonly quiesceRps: number; readonly ratio: number; readonly gunicornFailed: number; readonly quiesceFailed: number } | null;
}

/**
 * `quiesce serve`'s start, from spawn to "listening at": through bin/quiesce.mjs (its command's kept
 * bundle, bin/bundle-cache.mjs) against the same command's TypeScript sources through tsx's loader
 * (how the package started before the bundle was kept), alternately, `STARTS` each; the medians, and
 * their ratio. Both find the worker's bundle kept, so the difference is the arbiter's own loading.
 */
const STARTS = 8;
const FROM_SOURCES = `import('tsx/esm/api').then(async ({ register }) => { register(); const { mainServe } = await import(${JSON.stringify(new URL('../cli/serve-main.ts', import.meta.url).href)}); process.exit(await mainServe(process.argv.slice(1))); })`;
const BIN = new URL('../bin/quiesce.mjs', import.meta.url).pathname;

async function msToListening(args: readonly string[]): Promise<number> {
  const startedAt = performance.now();
  const proc = spawn(process.execPath, [...args, 'serve', '--bind', '127.0.0.1:0', '--workers', '1', '--app', 'hello'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const ms = await new Promise<number>((resolve, reject) => {
    const seen = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('listening at')) resolve(performance.now() - startedAt);
    };
    proc.stdout!.on('data', seen);
    proc.stderr!.on('data', seen);
    proc.on('exit', (code) => reject(new Error(`quiesce serve exited ${code} before listening:\n${output}`)));
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
  return ms;
}

export async function startFigures(): Promise<{ keptBundleMs: number; fromSourcesMs: number; ratio: number }> {
  const kept: number[] = [];
  const sources: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    kept.push(await msToListening([BIN]));
    sources.push(await msToListening(['-e', FROM_SOURCES]));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const keptBundleMs = median(kept);
  const fromSourcesMs = median(sources);
  return { keptBundleMs, fromSourcesMs, ratio: fromSourcesMs / keptBundleMs };
}

export function haveAb(): boolean {
  return !spawnSync('ab', ['-V']).error;
}

function haveGunicorn(): boolean {
  return !spawnSync('gunicorn', ['--version']).error;
}

/** N plain node:http processes on one shared listening socket, bound here and never accepted on. */
export async function bareNodeHttp(): Promise<{ port: number; stop: () => void }> {
  const create = (net as unknown as { _createServerHandle: (a: string, p: number, t: number) => { fd: number; getsockname(o: { port?: number }): void; close(): void } })._createServerHandle;
  const handle = create('127.0.0.1', 0, 4);
  const out: { port?: number } = {};
  handle.getsockname(out);
  const dir = mkdtempSync(join(tmpdir(), 'quiesce-bench-'));
  const script = join(dir, 'bare.mjs');
  writeFileSync(
    script,
    "import http from 'node:http';\n" +
      // Its length stated: ab speaks HTTP/1.0, and a response without one (chunked is 1.1) ends with the
      // connection — every request a new connect, which measured node:http at a quarter of its pace.
      "const server = http.createServer((req, res) => { res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 14 }); res.end('Hello, world!\\n'); });\n" +
      'server.keepAliveTimeout = 2000;\n' +
      "server.listen({ fd: 4 }, 2048, () => process.send?.('ready'));\n",
  );
  const children: ChildProcess[] = [];
  for (let i = 0; i < WORKERS; i++) children.push(spawn(process.execPath, [script], { stdio: ['ignore', 'inherit', 'inherit', 'ipc', handle.fd] }));
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('message', resolve))));
  return {
    port: out.port!,
    stop: () => {
      for (const c of children) c.kill('SIGKILL');
      handle.close();
    },
  };
}

async function rps(url: string, load: readonly string[] = LOAD): Promise<{ rps: number; failed: number }> {
  const report = await runAb([...load, url]);
  const match = /Requests per second:\s+([\d.]+)/.exec(report.output);
  if (!match) throw new Error(`ab failed:\n${report.output}`);
  // A throughput load (-k, no recycling) measures requests on kept connections: a server that closed
  // them was measured at connecting instead (the bare node:http baseline once was, at a quarter of its pace).
  if (load === LOAD && report.keepAliveRequests < report.complete) throw new Error(`${url}: ab -k kept ${report.keepAliveRequests} of ${report.complete} requests alive: the server closes its connections, and the figure would measure connects`);
  return { rps: Number(match[1]), failed: report.failed };
}

/** The better of two runs after a warm-up: the machine is shared and noisy. */
async function best(url: string, load: readonly string[] = LOAD): Promise<{ rps: number; failed: number }> {
  await rps(url, load);
  const a = await rps(url, load);
  const b = await rps(url, load);
  return a.rps >= b.rps ? a : b;
}

async function quiesce(flags: string[], trace = true): Promise<RunningServer> {
  return startServer(['--app', 'hello', ...flags], { trace });
}

const SEED_LOAD = ['-n', '10000', '-c', '20', '-k', '-r'];

/** gunicorn 20.1 gthread with the seed's flags, on a trivial WSGI app. */
async function gunicornSeedLoad(): Promise<{ rps: number; failed: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'quiesce-gunicorn-'));
  writeFileSync(join(dir, 'app.py'), "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'Hello, world!\\n']\n");
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const server = startProcess(['gunicorn', '--chdir', dir, '--bind', `127.0.0.1:${port}`, '--workers', '4', '--threads', '20', '--keep-alive', '2', '--max-requests', '512', '--log-level', 'warning', 'app:app'], { cwd: dir });
  try {
    await waitFor(() => server.proc.exitCode === null, 100, 'gunicorn');
    const deadline = Date.now() + 20_000;
    while (!(await accepts({ host: '127.0.0.1', port }))) {
      if (Date.now() > deadline) throw new Error(`gunicorn did not start:\n${server.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return await best(`http://127.0.0.1:${port}/`, SEED_LOAD);
  } finally {
    server.signal('SIGTERM');
    await Promise.race([server.exited, new Promise((r) => setTimeout(r, 10_000))]);
    server.destroy();
  }
}

export async function serveFigures(): Promise<ServeFigures> {
  const bare = await bareNodeHttp();
  const bareRps = (await best(`http://127.0.0.1:${bare.port}/`)).rps;
  bare.stop();

  const off = await quiesce(['--workers', String(WORKERS), '--threads', '50'], false);
  const traceOffRps = (await best(`${off.address}/`)).rps;
  await stopServer(off);

  const on = await quiesce(['--workers', String(WORKERS), '--threads', '50']);
  const traceOnRps = (await best(`${on.address}/`)).rps;
  await stopServer(on);

  const lifecycle = await quiesce(['--workers', String(WORKERS), '--threads', '50', '--trace-events', 'lifecycle']);
  const lifecycleTraceRps = (await best(`${lifecycle.address}/`)).rps;
  await stopServer(lifecycle);

  // Reload under load, then a stop.
  const reloading = await quiesce(['--workers', String(WORKERS), '--threads', '50']);
  const load = runAb(['-n', '400000', '-c', '20', '-k', '-r', `${reloading.address}/`]);
  await new Promise((r) => setTimeout(r, 1000));
  const before = reloading.workerPids();
  const hupAt = performance.now();
  reloading.signal('SIGHUP');
  await waitFor(() => {
    const now = reloading.workerPids();
    return now.length === WORKERS && now.every((pid) => !before.includes(pid));
  }, 60_000, 'the reload');
  const reloadMs = performance.now() - hupAt;
  const termAt = performance.now();
  reloading.signal('SIGTERM');
  await reloading.exited;
  const termMs = performance.now() - termAt;
  await load; // ab gives up once the listener is gone

  let seedLoad: ServeFigures['seedLoad'] = null;
  if (haveGunicorn()) {
    const gunicorn = await gunicornSeedLoad();
    const ours = await quiesce(['--workers', '4', '--threads', '20', '--keepalive', '2', '--max-requests', '512', '--policy', 'safe-drain'], false);
    const quiesceRun = await best(`${ours.address}/`, SEED_LOAD);
    await stopServer(ours);
    seedLoad = { gunicornRps: gunicorn.rps, quiesceRps: quiesceRun.rps, ratio: quiesceRun.rps / gunicorn.rps, gunicornFailed: gunicorn.failed, quiesceFailed: quiesceRun.failed };
  }
  return { workers: WORKERS, load: `ab ${LOAD.join(' ')}`, bareRps, traceOffRps, traceOnRps, lifecycleTraceRps, traceOffRatio: traceOffRps / bareRps, traceOnRatio: traceOnRps / bareRps, lifecycleTraceRatio: lifecycleTraceRps / bareRps, reloadMs, termMs, seedLoad };
}
