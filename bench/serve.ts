/**
 * The real server's speed, as ratios and durations measured in one run with
 * the real ApacheBench (absolute numbers on a shared machine mean little):
 *   - requests per second of `quiesce serve --app hello` against a bare
 *     node:http server with the same number of worker processes accepting
 *     from one shared socket (the same fd-passing, nothing else);
 *   - how long a HUP reload takes under load (HUP to every old worker gone
 *     and the new ones serving), and a TERM (signal to arbiter exit).
 * Needs `ab` (apt-get install apache2-utils).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runAb } from '../test/impl/ab.ts';
import { startServer, stopServer, waitFor, type RunningServer } from '../test/impl/server.ts';

const WORKERS = 2;
const LOAD = ['-n', '20000', '-c', '50', '-k'];

if (spawnSync('ab', ['-V']).error) {
  process.stderr.write('bench/serve: ab not found (apt-get install apache2-utils)\n');
  process.exit(2);
}

/** N plain node:http processes on one shared listening socket, bound here and never accepted on. */
async function bareNodeHttp(): Promise<{ port: number; stop: () => void }> {
  const create = (net as unknown as { _createServerHandle: (a: string, p: number, t: number) => { fd: number; getsockname(o: { port?: number }): void; close(): void } })._createServerHandle;
  const handle = create('127.0.0.1', 0, 4);
  const out: { port?: number } = {};
  handle.getsockname(out);
  const dir = mkdtempSync(join(tmpdir(), 'quiesce-bench-'));
  const script = join(dir, 'bare.mjs');
  writeFileSync(
    script,
    "import http from 'node:http';\n" +
      "const server = http.createServer((req, res) => { res.writeHead(200, { 'Content-Type': 'text/plain' }); res.end('Hello, world!\\n'); });\n" +
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

async function rps(url: string): Promise<number> {
  const report = await runAb([...LOAD, url]);
  const match = /Requests per second:\s+([\d.]+)/.exec(report.output);
  if (!match || report.failed > 0) throw new Error(`ab failed:\n${report.output}`);
  return Number(match[1]);
}

async function quiesce(flags: string[] = []): Promise<RunningServer> {
  return startServer(['--workers', String(WORKERS), '--threads', '50', '--app', 'hello', '--trace', join(mkdtempSync(join(tmpdir(), 'quiesce-bench-')), 't.jsonl'), ...flags]);
}

const bare = await bareNodeHttp();
await rps(`http://127.0.0.1:${bare.port}/`); // warm-up
const bareRps = await rps(`http://127.0.0.1:${bare.port}/`);
bare.stop();

const server = await quiesce();
await rps(`${server.address}/`);
const ourRps = await rps(`${server.address}/`);
await stopServer(server);

// Reload under load.
const reloading = await quiesce();
const load = runAb(['-n', '200000', '-c', '20', '-k', '-r', `${reloading.address}/`]);
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

process.stdout.write(
  [
    `workers: ${WORKERS}, load: ab ${LOAD.join(' ')}`,
    `requests/s  quiesce serve (trace on): ${ourRps.toFixed(0)}   bare node:http: ${bareRps.toFixed(0)}   ratio ${(ourRps / bareRps).toFixed(2)}`,
    `HUP reload under load (ab -c 20 -k): ${reloadMs.toFixed(0)} ms until every old worker was gone`,
    `TERM under load: ${termMs.toFixed(0)} ms until the arbiter exited (policy safe-drain, idle grace 1 s)`,
    '',
  ].join('\n'),
);
