/**
 * The real server, with real processes, sockets and signals, on loopback.
 * Every test also replays the server's own trace through the model: what the
 * server did must be what the machines allow under its policy.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BASE_POLICY_NAMES, getPolicy } from '../../model/policies.ts';
import { propertiesFor } from '../../model/properties.ts';
import { DEFAULT_SERVER_PARAMS } from '../../model/params.ts';
import { descendantsOf, sparesOf, workersOf } from '../../conformance/process.ts';
import { replay } from '../../model/replay.ts';
import { isLifecycleEvent, parseTrace } from '../../model/trace.ts';
import { runCli } from '../helpers.ts';
import { codeCachePath, workerBundle } from '../../impl/worker-bundle.ts';
import { BIN, childrenOf, Client, expectConformingTrace, rawExchange, startServer, stopServer, tempDir, traceOf, tryConnect, waitFor, type RunningServer } from './server.ts';

const running: RunningServer[] = [];

async function serve(flags: string[], options: { unix?: boolean } = {}): Promise<RunningServer> {
  const server = await startServer(flags, options);
  running.push(server);
  return server;
}

afterEach(async () => {
  for (const server of running.splice(0)) {
    if (server.proc.exitCode === null && server.proc.signalCode === null) await stopServer(server);
  }
});

async function okResponse(client: Client, path = '/', headers: Record<string, string> = {}) {
  const outcome = await client.get(path, headers);
  if (outcome.kind !== 'response') throw new Error(`expected a response to ${path}, got ${outcome.kind}`);
  return outcome.response;
}

describe('quiesce serve: lifecycle', () => {
  it('serves keep-alive requests and stops on TERM with exit 0 and a complete, conforming trace', async () => {
    const server = await serve(['--workers', '2', '--threads', '4']);
    expect(server.workerPids()).toHaveLength(2);
    const client = new Client(server.target);
    const first = await okResponse(client, '/', { 'X-Request-Id': 'first' });
    expect(first.status).toBe(200);
    expect(first.body).toBe('Hello, world!\n');
    expect(first.headers.get('connection')).toBe('keep-alive');
    expect((await okResponse(client)).status).toBe(200);
    client.close();
    expect(await stopServer(server)).toBe(0);
    const trace = expectConformingTrace(server);
    expect(trace.events.some((e) => e.type === 'conn.read' && e.req === 'first')).toBe(true);
    expect(trace.events.filter((e) => e.type === 'worker.exit')).toHaveLength(2);
  });

  it('binds a unix socket and writes a pid file, and removes both when it stops', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'quiesce.pid');
    const server = await serve(['--workers', '1', '--pid', pidFile], { unix: true });
    const path = (server.target as { path: string }).path;
    expect(existsSync(path)).toBe(true);
    expect(readFileSync(pidFile, 'utf8').trim()).toBe(String(server.pid));
    const client = new Client(server.target);
    expect((await okResponse(client)).status).toBe(200);
    client.close();
    expect(await stopServer(server)).toBe(0);
    expect(existsSync(path)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
    expectConformingTrace(server);
  });

  it('HUP replaces every worker PID while a keep-alive client keeps working (safe-drain)', async () => {
    const server = await serve(['--workers', '2', '--threads', '4', '--policy', 'safe-drain']);
    const before = server.workerPids();
    let client = new Client(server.target);
    let failures = 0;
    let responses = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const outcome = await client.get('/');
        if (outcome.kind !== 'response') failures++;
        else responses++;
        if (outcome.kind !== 'response' || outcome.response.headers.get('connection') === 'close' || client.closedByPeer) {
          client.close();
          client = new Client(server.target);
        }
      }
    })();
    await waitFor(() => responses > 20, 10_000, 'the client to get going');
    server.signal('SIGHUP');
    await waitFor(() => {
      const now = server.workerPids();
      return now.length === 2 && now.every((pid) => !before.includes(pid));
    }, 20_000, 'every worker to be replaced');
    const afterReload = responses;
    await waitFor(() => responses > afterReload + 20, 10_000, 'the client to be served by the new workers');
    stop = true;
    await loop;
    client.close();
    expect(failures).toBe(0);
    await stopServer(server);
    expectConformingTrace(server);
  });

  /**
   * The new generation loads an app that takes 1.5 s to import. safe-drain's old worker serves until
   * its replacement is ready; gunicorn's reload TERMs it as the new one is forked, so a request made
   * meanwhile waits in the accept queue for the new app. The body says which app answered.
   */
  for (const [policy, answeredBy] of [['safe-drain', 'v1'], ['gunicorn-gthread', 'v2']] as const) {
    it(`${policy}: a request made while a reload's new worker still loads its app is answered by ${answeredBy === 'v1' ? 'the old worker, which serves until its replacement is ready' : 'the new worker: nothing accepts meanwhile'}`, async () => {
      const dir = tempDir();
      const file = join(dir, 'version.mjs');
      writeFileSync(file, "export default () => ({ status: 200, body: 'v1\\n' });\n");
      const server = await serve(['--workers', '1', '--policy', policy, '--app', file]);
      expect((await okResponse(new Client(server.target))).body).toBe('v1\n');
      writeFileSync(file, "await new Promise((resolve) => setTimeout(resolve, 1500));\nexport default () => ({ status: 200, body: 'v2\\n' });\n");
      server.signal('SIGHUP');
      const traced = (type: string, actor: string) => readFileSync(server.trace, 'utf8').includes(`"actor":"${actor}","type":"${type}"`);
      // Past the reload's decision: the new worker forked, and under gunicorn's reload the old one no longer accepts.
      if (policy === 'safe-drain') await waitFor(() => traced('worker.boot', 'worker/2'), 10_000, 'the new worker to boot');
      else await waitFor(() => traced('worker.close-listener', 'worker/1'), 10_000, 'the old worker to stop accepting');
      expect(traced('worker.ready', 'worker/2'), 'the new worker is still loading its app').toBe(false);
      expect((await okResponse(new Client(server.target))).body).toBe(`${answeredBy}\n`);
      await waitFor(() => traced('worker.exit', 'worker/1'), 15_000, 'the old worker to exit');
      expect((await okResponse(new Client(server.target))).body).toBe('v2\n');
      await stopServer(server);
      const trace = expectConformingTrace(server);
      const at = (type: string, actor: string) => trace.events.findIndex((e) => e.type === type && (e.actor === actor || ('worker' in e && e.worker === actor)));
      const retired = trace.events.findIndex((e) => e.type === 'arbiter.kill' && e.worker === 'worker/1' && e.signal === 'TERM');
      if (policy === 'safe-drain') expect(retired).toBeGreaterThan(at('arbiter.ready', 'worker/2'));
      else expect(retired).toBeLessThan(at('worker.ready', 'worker/2'));
    });
  }

  it('TTIN adds a worker, TTOU retires the oldest', async () => {
    const server = await serve(['--workers', '2']);
    const [oldest] = server.workerPids();
    server.signal('SIGTTIN');
    await waitFor(() => server.workerPids().length === 3, 15_000, 'a third worker');
    server.signal('SIGTTOU');
    await waitFor(() => server.workerPids().length === 2 && !server.workerPids().includes(oldest!), 15_000, 'the oldest worker to retire');
    await stopServer(server);
    const trace = expectConformingTrace(server);
    expect(trace.events.filter((e) => e.type === 'arbiter.spawn')).toHaveLength(3);
  });

  it('kills a SIGSTOPped worker after --timeout and replaces it', async () => {
    const server = await serve(['--workers', '2', '--timeout', '1']);
    const [frozen, other] = server.workerPids();
    process.kill(frozen!, 'SIGSTOP');
    await waitFor(() => !server.workerPids().includes(frozen!) && server.workerPids().length === 2, 15_000, 'the frozen worker to be killed and replaced');
    expect(server.workerPids()).toContain(other);
    expect(server.output()).toMatch(/WORKER TIMEOUT/);
    await stopServer(server);
    const trace = expectConformingTrace(server);
    // The watchdog's turn: ABRT to the silent worker, then (still silent: it is stopped) KILL.
    const aborted = trace.events.filter((e) => e.type === 'arbiter.kill' && e.signal === 'ABRT');
    expect(aborted).toHaveLength(1);
    const worker = (aborted[0] as { worker: string }).worker;
    expect(trace.events.some((e) => e.type === 'arbiter.kill' && e.worker === worker && e.signal === 'KILL')).toBe(true);
  });

  it('TERM closes the listener at once (connects are refused) and exits by the graceful timeout', async () => {
    const server = await serve(['--workers', '1', '--threads', '2', '--app', 'sleep', '--graceful-timeout', '2', '--policy', 'safe-drain']);
    const client = new Client(server.target);
    client.send('GET /?ms=20000 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300));
    const sentAt = Date.now();
    server.signal('SIGTERM');
    await waitFor(() => server.output().includes('received SIGTERM'), 5000, 'the arbiter to take TERM');
    await new Promise((r) => setTimeout(r, 200));
    expect(await tryConnect(server.target)).toBe('ECONNREFUSED');
    expect(await server.exited).toBe(0);
    // The graceful timeout bounds the stop: the 20 s request is cut off at 2 s, not waited for.
    expect(Date.now() - sentAt).toBeLessThan(2000 + 5000);
    expect(['eof', 'reset']).toContain((await client.next(1000)).kind);
    const trace = expectConformingTrace(server);
    // Cut off at the deadline: by the worker's own graceful timer, or by the arbiter's SIGKILL if that came first.
    expect(trace.events.some((e) => e.type === 'conn.abort' && (e.reason === 'deadline' || e.reason === 'killed'))).toBe(true);
  });

  it('QUIT is a fast stop: workers exit at once, cutting off the request in progress', async () => {
    const server = await serve(['--workers', '2', '--threads', '2', '--app', 'sleep', '--graceful-timeout', '30']);
    const client = new Client(server.target);
    client.send('GET /?ms=20000 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300));
    server.signal('SIGQUIT');
    // Far sooner than the 30 s graceful timeout or the 20 s request.
    const outcome = await client.next(10_000);
    expect(['eof', 'reset']).toContain(outcome.kind);
    expect(await server.exited).toBe(0);
    const trace = expectConformingTrace(server);
    expect(trace.events.filter((e) => e.type === 'arbiter.kill' && e.signal === 'QUIT')).toHaveLength(2);
    // The request is cut by the operator's fast stop, and the trace says so (not a policy's abandoning).
    expect(trace.events.some((e) => e.type === 'conn.abort' && e.reason === 'quit')).toBe(true);
  });

  it('a draining worker keeps heartbeating: a drain longer than --timeout is not killed', async () => {
    const server = await serve(['--workers', '1', '--threads', '2', '--app', 'sleep', '--timeout', '1', '--graceful-timeout', '10', '--policy', 'safe-drain']);
    const client = new Client(server.target);
    client.send('GET /?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    server.signal('SIGTERM');
    const outcome = await client.next(10_000);
    expect(outcome.kind).toBe('response');
    if (outcome.kind === 'response') {
      expect(outcome.response.status).toBe(200);
      expect(outcome.response.headers.get('connection')).toBe('close');
    }
    expect(await server.exited).toBe(0);
    expect(server.output()).not.toMatch(/WORKER TIMEOUT/);
    const trace = expectConformingTrace(server);
    const term = trace.events.find((e) => e.type === 'worker.signal' && e.signal === 'TERM')!;
    expect(trace.events.filter((e) => e.type === 'worker.heartbeat' && e.t > term.t).length).toBeGreaterThan(2);
  });

  it('--worker-connections: a full worker stops accepting (the rest wait in the kernel queue) and resumes below the limit', async () => {
    for (const unix of [false, true]) {
      const server = await serve(['--workers', '1', '--threads', '4', '--worker-connections', '2'], { unix });
      const a = new Client(server.target);
      const b = new Client(server.target);
      expect((await okResponse(a)).status).toBe(200);
      expect((await okResponse(b)).status).toBe(200);
      const c = new Client(server.target);
      await c.connected; // the kernel completes the handshake; nobody accepts it
      expect((await c.get('/', {}, 500)).kind).toBe('timeout');
      a.close();
      const outcome = await c.next(5000);
      expect(outcome.kind === 'response' && outcome.response.status).toBe(200);
      b.close();
      c.close();
      await stopServer(server);
      const trace = expectConformingTrace(server);
      expect(trace.events.filter((e) => e.type === 'worker.accept')).toHaveLength(3);
    }
  });

  it('recycles a worker after --max-requests; the last response says close', async () => {
    const server = await serve(['--workers', '1', '--max-requests', '3']);
    const [first] = server.workerPids();
    const client = new Client(server.target);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await okResponse(client)).headers.get('connection'));
    expect(statuses).toEqual(['keep-alive', 'keep-alive', 'close']);
    await waitFor(() => server.workerPids().length === 1 && server.workerPids()[0] !== first, 15_000, 'the recycled worker to be replaced');
    const again = new Client(server.target);
    expect((await okResponse(again)).status).toBe(200);
    again.close();
    await stopServer(server);
    expectConformingTrace(server);
  });

  it('replaces a worker killed with SIGKILL and writes its end (connections reset or closed by the kernel) into the trace', async () => {
    const server = await serve(['--workers', '1']);
    const [victim] = server.workerPids();
    const client = new Client(server.target);
    // Enough requests on the one connection that the arbiter has folded its events into machine state.
    for (let i = 0; i < 100; i++) expect((await okResponse(client)).status).toBe(200);
    process.kill(victim!, 'SIGKILL');
    expect(['eof', 'reset']).toContain((await client.next(5000)).kind);
    await waitFor(() => server.workerPids().length === 1 && server.workerPids()[0] !== victim, 15_000, 'a replacement');
    await stopServer(server);
    const trace = expectConformingTrace(server);
    expect(trace.events.some((e) => e.type === 'conn.abort' && e.reason === 'killed')).toBe(true);
    expect(trace.events.some((e) => e.type === 'arbiter.reap' && e.worker === 'worker/1' && e.code < 0)).toBe(true);
  });

  it("--trace-events lifecycle: the processes' own events only, marked so in the header; a killed worker's end as the chart gives it; replay refuses it with the reason", async () => {
    const startedNs = process.hrtime.bigint();
    const server = await serve(['--workers', '2', '--threads', '4', '--policy', 'gunicorn-gthread', '--trace-events', 'lifecycle']);
    const listeningNs = process.hrtime.bigint();
    const [victim] = server.workerPids();
    const clients = [new Client(server.target), new Client(server.target)];
    for (let i = 0; i < 20; i++) expect((await okResponse(clients[i % 2]!)).status).toBe(200);
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => server.workerPids().length === 2 && !server.workerPids().includes(victim!), 15_000, 'a replacement');
    // Titled a worker is not yet ready: a spare taken while it still loads its app boots until the load
    // is done, and a TERM before then ends it without a ready (the server's right answer, and the flake
    // this wait removes). The trace is appended as the events come: wait for the third worker.ready.
    const readyInTrace = () => readFileSync(server.trace, 'utf8').split('\n').filter((line) => line.includes('"type":"worker.ready"')).length;
    await waitFor(() => readyInTrace() === 3, 15_000, 'the replacement ready');
    for (const client of clients) client.close();
    expect((await okResponse(new Client(server.target))).status).toBe(200);
    expect(await stopServer(server)).toBe(0);
    const trace = traceOf(server);
    expect(trace.header).toMatchObject({ events: 'lifecycle', complete: true });
    // Its time origin on this machine's CLOCK_MONOTONIC (what a capture or another log is put on the trace's time with): the arbiter's start.
    const originNs = BigInt(trace.header.meta?.['originMonotonicNs'] as string);
    expect(originNs > startedNs && originNs < listeningNs).toBe(true);
    // Nothing of a connection, a client or a request…
    const kept = trace.events.filter((e) => isLifecycleEvent(e.actor, e));
    expect(kept).toEqual(trace.events);
    expect(trace.events.some((e) => e.actor.startsWith('conn/') || e.type === 'worker.accept' || e.type === 'worker.request-start')).toBe(false);
    // …and every process's life: three workers booted and ready, the killed one's end, the other two stopped by the TERM.
    const ofType = (type: string) => trace.events.filter((e) => e.type === type).map((e) => e.actor).sort();
    expect(ofType('worker.ready')).toEqual(['worker/1', 'worker/2', 'worker/3']);
    // The killed worker's end is the one the full trace writes, less its connections' events: the KILL,
    // its listener copy closed with the process, its exit −9 (it once was one worker.crash line, written
    // by the arbiter outside the chart, with no listener close).
    const killed = trace.events.find((e) => e.type === 'worker.signal' && e.signal === 'KILL')!.actor;
    expect(trace.events.filter((e) => e.actor === killed).map((e) => e.type).slice(-3)).toEqual(['worker.signal', 'worker.close-listener', 'worker.exit']);
    expect(trace.events.filter((e) => e.actor === killed && e.type === 'worker.exit')).toMatchObject([{ code: -9 }]);
    expect(trace.events.some((e) => e.type === 'worker.crash')).toBe(false);
    const survivors = ['worker/1', 'worker/2', 'worker/3'].filter((w) => w !== killed);
    expect(ofType('worker.signal')).toEqual(['worker/1', 'worker/2', 'worker/3']);
    expect(ofType('worker.close-listener')).toEqual(['worker/1', 'worker/2', 'worker/3']);
    expect(ofType('worker.exit')).toEqual(['worker/1', 'worker/2', 'worker/3']);
    // The listener's holders: each worker released its copy once, the killed one's at its death.
    const released = trace.events.filter((e) => e.type === 'listener.release').map((e) => (e as { holder: string }).holder);
    for (const w of ['worker/1', 'worker/2', 'worker/3']) expect(released.filter((h) => h === w), w).toHaveLength(1);
    expect(trace.events.filter((e) => e.type === 'arbiter.kill').map((e) => (e as { worker: string }).worker).sort()).toEqual(survivors);
    expect(trace.events.at(-1)?.type).toBe('arbiter.exit');
    const replayed = await runCli('replay', server.trace);
    expect(replayed.code).toBe(2);
    expect(replayed.err).toContain("a lifecycle trace (its header says \"events\":\"lifecycle\": written with --trace-events lifecycle)");
  });

  it('a replacement worker is the spare process that was waiting, loaded, before it was needed', async () => {
    const server = await serve(['--workers', '1']);
    const [victim] = server.workerPids();
    await waitFor(() => sparesOf(server.pid).length === 1, 10_000, 'a spare');
    const [spare] = sparesOf(server.pid);
    process.kill(victim!, 'SIGKILL');
    // One look at /proc, judged and kept: reading it twice judged one sample and asserted on another.
    let replacement: number[] = [];
    await waitFor(() => {
      replacement = server.workerPids();
      return replacement.length === 1 && replacement[0] !== victim;
    }, 15_000, 'a replacement');
    expect(replacement).toEqual([spare]);
    // And a new spare waits for the next one.
    await waitFor(() => sparesOf(server.pid).length === 1, 10_000, 'a new spare');
    expect(sparesOf(server.pid)).not.toContain(spare);
    expect((await okResponse(new Client(server.target))).status).toBe(200);
    await stopServer(server);
    expectConformingTrace(server);
  });

  it('a TERM that comes while the workers still load the app is theirs at boot: exit 0, a complete trace, no process left', async () => {
    const dir = tempDir();
    // An app whose import takes a second: the workers are spawned, but not yet workers, when TERM comes.
    writeFileSync(join(dir, 'slow.mjs'), 'const until = Date.now() + 1000;\nwhile (Date.now() < until);\nexport default () => ({ status: 200, body: "ok\\n" });\n');
    const pidFile = join(dir, 'quiesce.pid');
    const traceFile = join(dir, 'trace.jsonl');
    const proc = spawn(process.execPath, [BIN, 'serve', '--bind', '127.0.0.1:0', '--workers', '2', '--app', join(dir, 'slow.mjs'), '--pid', pidFile, '--trace', traceFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    await waitFor(() => existsSync(pidFile), 10_000, 'the pid file');
    await waitFor(() => childrenOf(proc.pid!).length >= 3, 10_000, 'two workers and a spare');
    const ours = [...workersOf(proc.pid!), ...sparesOf(proc.pid!)];
    const started = descendantsOf(proc.pid!);
    process.kill(proc.pid!, 'SIGTERM');
    expect(await exited, output).toBe(0);
    expect(output).not.toContain('listening at');
    // The arbiter waited for its workers and its spare; tsx's esbuild service follows its parent out.
    expect(ours.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([]);
    await waitFor(() => started.every((pid) => !existsSync(`/proc/${pid}`)), 5000, 'every process the server started to end');
    const trace = parseTrace(readFileSync(traceFile, 'utf8'));
    const verdict = replay(trace);
    expect(verdict.ok ? 'ok' : verdict.violation.message).toBe('ok');
    expect(trace.header.complete).toBe(true);
    for (const worker of ['worker/1', 'worker/2']) {
      const events = trace.events.filter((e) => e.actor === worker);
      // The TERM waited until the worker could take it (at its boot, or just after it became ready),
      // and it exits through its machine: code 0, not a death before boot.
      expect(events[0]?.type).toBe('worker.boot');
      expect(events.some((e) => e.type === 'worker.signal' && e.signal === 'TERM')).toBe(true);
      expect(events.at(-1)).toMatchObject({ type: 'worker.exit', code: 0 });
    }
  });

  it('reads options from a JSON config file; flags win', async () => {
    const dir = (await serve(['--workers', '1'])).dir;
    const config = join(dir, 'quiesce.json');
    writeFileSync(config, JSON.stringify({ workers: 3, policy: 'abort-idle', keepalive: 5 }));
    const server = await serve(['--config', config, '--workers', '2']);
    expect(server.workerPids()).toHaveLength(2);
    await stopServer(server);
    const trace = traceOf(server);
    expect(trace.header.policy).toBe('abort-idle');
    expect(trace.header.params.keepAliveMs).toBe(5000);
  });
});

describe('quiesce serve: apps', () => {
  it('loads a user handler module, JavaScript or TypeScript', async () => {
    for (const [file, source] of [
      ['handler.mjs', "export default async (request) => ({ status: 202, headers: { 'X-Seen': request.path }, body: 'js\\n' });"],
      ['handler.ts', 'export default function handler(request: { path: string }): { status: number; body: string } {\n  return { status: 201, body: `ts ${request.path}\\n` };\n}\n'],
    ] as const) {
      const dir = tempDir();
      writeFileSync(join(dir, file), source);
      const server = await serve(['--workers', '1', '--app', join(dir, file)]);
      const client = new Client(server.target);
      const response = await okResponse(client, '/x');
      expect(response.status).toBe(file.endsWith('.ts') ? 201 : 202);
      expect(response.body).toBe(file.endsWith('.ts') ? 'ts /x\n' : 'js\n');
      client.close();
      await stopServer(server);
    }
  });

  it("a worker started from V8's code cache loads a user's app, JavaScript or TypeScript (Node 20 drops a cached script's import())", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'handler.mjs'), "export default () => ({ status: 200, body: 'js\\n' });\n");
    writeFileSync(join(dir, 'handler.ts'), "export default (): { status: number; body: string } => ({ status: 200, body: 'ts\\n' });\n");
    const cache = codeCachePath(workerBundle());
    // A worker that served writes the cache as it exits, if there is none yet.
    const first = await serve(['--workers', '1', '--app', 'hello']);
    await okResponse(new Client(first.target));
    await stopServer(first);
    expect(existsSync(cache)).toBe(true);
    for (const file of ['handler.mjs', 'handler.ts']) {
      const server = await serve(['--workers', '1', '--app', join(dir, file)]);
      expect((await okResponse(new Client(server.target))).body).toBe(file.endsWith('.ts') ? 'ts\n' : 'js\n');
      await stopServer(server);
    }
  });

  it("a user's app keeps the environment as given; a built-in app's workers start without NODE_EXTRA_CA_CERTS (Node parses it at every start)", async () => {
    const dir = tempDir();
    const file = join(dir, 'env.mjs');
    writeFileSync(file, "export default () => ({ status: 200, body: `${process.env.NODE_EXTRA_CA_CERTS ?? 'unset'}\\n` });\n");
    const env = { NODE_EXTRA_CA_CERTS: join(dir, 'extra-ca.pem') };
    writeFileSync(env.NODE_EXTRA_CA_CERTS, '');
    const user = await startServer(['--workers', '1', '--app', file], { env });
    running.push(user);
    expect((await okResponse(new Client(user.target))).body).toBe(`${env.NODE_EXTRA_CA_CERTS}\n`);
    await stopServer(user);

    const builtin = await startServer(['--workers', '1', '--app', 'hello'], { env });
    running.push(builtin);
    const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
    // The arbiter itself has it: the worker's lack of it is the arbiter's choice, not the test's.
    expect(environOf(builtin.pid)).toContain(`NODE_EXTRA_CA_CERTS=${env.NODE_EXTRA_CA_CERTS}`);
    const [worker] = builtin.workerPids();
    expect(environOf(worker!).some((entry) => entry.startsWith('NODE_EXTRA_CA_CERTS='))).toBe(false);
    expect((await okResponse(new Client(builtin.target))).status).toBe(200);
    await stopServer(builtin);
  });

  it('HUP loads the app anew: the new workers serve the module as it is now (spares loaded before the HUP are not used)', async () => {
    const dir = tempDir();
    const file = join(dir, 'version.mjs');
    writeFileSync(file, "export default () => ({ status: 200, body: 'v1\\n' });\n");
    const server = await serve(['--workers', '2', '--app', file]);
    await waitFor(() => sparesOf(server.pid).length === 1, 10_000, 'a spare, loaded with v1');
    const before = server.workerPids();
    expect((await okResponse(new Client(server.target))).body).toBe('v1\n');
    writeFileSync(file, "export default () => ({ status: 200, body: 'v2\\n' });\n");
    server.signal('SIGHUP');
    await waitFor(() => server.workerPids().length === 2 && server.workerPids().every((pid) => !before.includes(pid)), 15_000, 'new workers');
    for (let i = 0; i < 4; i++) expect((await okResponse(new Client(server.target))).body).toBe('v2\n');
    await stopServer(server);
    expectConformingTrace(server);
  });

  it('a module without a handler: one line, exit 2', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.mjs'), 'export default 5;\n');
    const result = spawnSync(process.execPath, [BIN, 'serve', '--bind', '127.0.0.1:0', '--app', join(dir, 'bad.mjs')], { encoding: 'utf8', timeout: 20_000 });
    expect(result.status).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^quiesce serve: app .*bad\.mjs has no default export function \(request\) => response$/)]);
  });

  it('a worker that dies before it boots stops the server (exit 2, one line of ours) instead of being replaced forever', async () => {
    // Node itself fails to start the worker (a --require that does not exist): exit code 1 before any of our code runs.
    const result = spawnSync(process.execPath, [BIN, 'serve', '--bind', '127.0.0.1:0', '--workers', '2'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, QUIESCE_WORKER_NODE_ARGS: '--require /nonexistent-quiesce-test.js' },
    });
    expect(result.status).toBe(2);
    const ours = result.stderr.split('\n').filter((line) => line.startsWith('quiesce') || line.startsWith('[arbiter]'));
    expect(ours).toEqual([expect.stringMatching(/^quiesce serve: (worker\/[12]|a new worker process \(pid \d+\)) died before it booted \(exit code 1\); its output above says why$/)]);
  });

  it('echo returns the body; sleep refuses a bad ms with 400 and keeps the connection', async () => {
    const server = await serve(['--workers', '1', '--app', 'echo']);
    const client = new Client(server.target);
    client.send('POST /e HTTP/1.1\r\nHost: a\r\nContent-Type: text/x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    const echoed = await client.next();
    expect(echoed.kind === 'response' && [echoed.response.body, echoed.response.headers.get('content-type')]).toEqual(['hello', 'text/x']);
    client.close();
    await stopServer(server);
    const sleeper = await serve(['--workers', '1', '--app', 'sleep']);
    const c2 = new Client(sleeper.target);
    const refused = await okResponse(c2, '/?ms=abc');
    expect(refused.status).toBe(400);
    expect(refused.headers.get('connection')).toBe('keep-alive');
    expect((await okResponse(c2, '/?ms=10')).body).toBe('slept 10 ms\n');
    c2.close();
  });
});

describe('quiesce serve: drain behaviour of the policies', () => {
  // The policies that promise it: every response written while draining says Connection: close.
  const closeWhileDraining = propertiesFor(DEFAULT_SERVER_PARAMS).find((p) => p.name === 'close-while-draining')!;
  const promising = BASE_POLICY_NAMES.filter((name) => closeWhileDraining.expectedBy(getPolicy(name)) && getPolicy(name).keepAlive);

  it.each([...BASE_POLICY_NAMES, 'gunicorn-gthread+lingering-close'])('%s: serves, drains with a request in flight and an idle connection, stops, and its trace conforms', async (policy) => {
    const server = await serve(['--workers', '2', '--threads', '4', '--app', 'sleep', '--policy', policy, '--graceful-timeout', '3', '--idle-grace', '0.3']);
    const idle = new Client(server.target);
    expect((await okResponse(idle, '/?ms=1')).status).toBe(200); // kept alive, except by gunicorn-sync
    const busy = new Client(server.target);
    busy.send('GET /?ms=400 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    server.signal('SIGTERM');
    const outcome = await busy.next(5000);
    // The request in flight is answered under every policy that lets it finish before the deadline.
    expect(outcome.kind).toBe('response');
    // With the server's output: an exit 13 (Node: the event loop emptied with the arbiter's top-level
    // await unsettled) came once in a CI run of the suite and not in nine runs alone — its log says where it stopped.
    expect(await server.exited, server.output()).toBe(0);
    expect(server.output()).not.toMatch(/Error|invariant/i);
    expectConformingTrace(server);
  });

  it.each(promising)('%s: a response in progress when TERM arrives says Connection: close', async (policy) => {
    const server = await serve(['--workers', '1', '--threads', '4', '--app', 'sleep', '--policy', policy, '--graceful-timeout', '5']);
    const client = new Client(server.target);
    expect((await okResponse(client, '/?ms=0')).headers.get('connection')).toBe('keep-alive');
    client.send('GET /?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    server.signal('SIGTERM');
    const outcome = await client.next(5000);
    expect(outcome.kind).toBe('response');
    if (outcome.kind === 'response') expect(outcome.response.headers.get('connection')).toBe('close');
    expect(await server.exited).toBe(0);
    expectConformingTrace(server);
  });

  it('gunicorn-sync: a draining worker stops accepting but holds its socket copy, so a new connection waits in the queue and is reset at exit (R1)', async () => {
    const server = await serve(['--workers', '1', '--app', 'sleep', '--policy', 'gunicorn-sync', '--graceful-timeout', '10']);
    const busy = new Client(server.target);
    busy.send('GET /?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    server.signal('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    // The arbiter closed its copy, the worker still holds one: the kernel still completes handshakes.
    const late = new Client(server.target);
    await late.connected;
    const connectedAt = Date.now();
    late.send('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const first = await busy.next(5000);
    expect(first.kind === 'response' && first.response.status).toBe(200);
    // Not accepted and dropped at once: it waited until the worker exited with the queue.
    expect((await late.next(5000)).kind).toBe('reset');
    expect(Date.now() - connectedAt).toBeGreaterThan(500);
    expect(await server.exited).toBe(0);
    const trace = expectConformingTrace(server);
    expect(trace.events.filter((e) => e.type === 'worker.accept')).toHaveLength(1);
  });

  it('TERM after TERM while it stops (a supervisor that repeats itself, a second Ctrl-C) does not kill the arbiter: its stop ends with exit 0', async () => {
    // Found by the conformance paths: the last TERM met the arbiter as Node closed its handles, when libuv
    // had given SIGTERM back its default action, and the server "died of SIGTERM" (exit −15) — every time
    // a TERM came every millisecond.
    for (let run = 0; run < 3; run++) {
      const server = await serve(['--workers', '1']);
      let exited = false;
      void server.exited.then(() => (exited = true));
      while (!exited) {
        try {
          process.kill(server.pid, 'SIGTERM');
        } catch {
          // gone between the check and the kill
        }
        await new Promise((r) => setTimeout(r, 1));
      }
      expect(await server.exited).toBe(0);
    }
  });

  it('a connection that queued while every worker was blocked by its app, and before a TERM, is served by a replacement — not accepted by a draining worker and reset at its exit', async () => {
    // Found by the soak (1 run in 6): a worker blocked by a CPU-bound handler took, in the turn after
    // the block, a new connection and then the TERM that came during the block; the connection, looked
    // at after the signal, was refused by the draining machine and reset at exit. The model's worker
    // takes the signal first and leaves the connection in the queue, for the replacement.
    const app = new URL('./fixtures/block-app.ts', import.meta.url).pathname;
    const server = await serve(['--workers', '2', '--app', app, '--policy', 'safe-drain', '--graceful-timeout', '10']);
    const first = new Client(server.target);
    first.send('GET /block?ms=900 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 150));
    // The other worker: the first one is blocked and accepts nothing.
    const second = new Client(server.target);
    second.send('GET /block?ms=900 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 150));
    const queued = new Client(server.target);
    await queued.connected;
    queued.send('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    const blocked = server.workerPids();
    expect(blocked).toHaveLength(2);
    for (const pid of blocked) process.kill(pid, 'SIGTERM');
    for (const client of [first, second]) {
      const outcome = await client.next(5000);
      expect(outcome.kind === 'response' && outcome.response.status).toBe(200);
    }
    expect(await queued.next(10_000)).toMatchObject({ kind: 'response', response: { status: 200, body: 'done\n' } });
    await stopServer(server);
    const trace = expectConformingTrace(server);
    // Served by neither of the blocked workers: by a replacement the arbiter started.
    const servedBy = trace.events.filter((e) => e.type === 'worker.accept').map((e) => e.actor);
    expect(new Set(servedBy).size).toBe(3);
  });

  it('lingering close: after its last response the server half-closes and discards what still comes, instead of resetting it', async () => {
    for (const [policy, lingers] of [['gunicorn-sync+lingering-close', true], ['gunicorn-sync', false]] as const) {
      const server = await serve(['--workers', '1', '--policy', policy, '--linger', '0.5']);
      const client = new Client(server.target, { allowHalfOpen: true });
      const response = await okResponse(client);
      expect(response.headers.get('connection')).toBe('close');
      expect((await client.next(2000)).kind).toBe('eof'); // the server's FIN
      // A client that keeps writing after the response (a pipelined request, the rest of a body):
      client.send('GET /more HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((r) => setTimeout(r, 200));
      client.send('x');
      await new Promise((r) => setTimeout(r, 100));
      expect(client.resetSeen).toBe(!lingers);
      client.close();
      await stopServer(server);
      const trace = expectConformingTrace(server);
      expect(trace.events.some((e) => e.type === 'conn.half-close')).toBe(lingers);
      // What the lingering close discarded, the trace says came (once): the machine takes it, nothing is left unread.
      const afterHalfClose = trace.events.slice(trace.events.findIndex((e) => e.type === 'conn.half-close') + 1);
      if (lingers) expect(afterHalfClose.filter((e) => e.type === 'conn.bytes').length).toBe(1);
    }
  });

  it("a client that half-closes after its request gets its response, and the connection is closed then, not at the keep-alive timeout (it can send nothing more)", async () => {
    // gunicorn 20.1 gthread, measured: with --keep-alive 5, a 300 ms request whose client sent FIN
    // 100 ms in is answered keep-alive at 0.303 s and the EOF follows at once (its poller reads the EOF).
    // (The simulator, which delivers the FIN while the request is served, used to drop it there and keep
    // the connection for the whole keep-alive timeout: the chart now remembers it, peerFinned.)
    const server = await serve(['--workers', '1', '--threads', '4', '--policy', 'safe-drain', '--keepalive', '30']);
    const client = new Client(server.target, { allowHalfOpen: true });
    client.send('GET /?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50));
    client.socket.end(); // shutdown(SHUT_WR)
    const answered = await client.next(5000);
    expect(answered.kind).toBe('response');
    // Well inside the 30 s keep-alive timeout; the EOF is the server's decision, not a timer's.
    expect((await client.next(10_000)).kind).toBe('eof');
    client.close();
    await stopServer(server);
    const trace = expectConformingTrace(server);
    const conn = trace.events.filter((e) => e.actor === 'conn/1.1');
    // Our worker reads nothing more while it serves a request (pipelined bytes wait), so it sees the FIN
    // once the response is written — the simulator may see it before; either way the close follows.
    expect(conn.map((e) => e.type).filter((t) => t !== 'conn.peer-fin')).toEqual(['conn.open', 'conn.bytes', 'conn.read', 'conn.handler-start', 'conn.handler-finish', 'conn.respond', 'conn.close']);
    expect(conn.map((e) => e.type)).toContain('conn.peer-fin');
    const at = (type: string) => conn.find((e) => e.type === type)!.t;
    expect(at('conn.close') - at('conn.respond')).toBeLessThan(3000); // the keep-alive timeout is 30 s
  });

  it('a request that reached an idle connection unread, before the server closed it, is reset by the close (a full close, as gunicorn\'s sock.close()): not read and dropped behind a FIN', async () => {
    // The worker is blocked by another connection's handler while the idle one's request arrives and
    // its keep-alive timeout passes; after the block the timer runs before the next poll, so the close
    // is decided with the request still in the kernel. A close that half-closes first (end(), then
    // destroy once the FIN is written) polls once more in between: Node read the request, dropped it
    // (the connection was closed for the machine), and the client saw a FIN and no reply, which
    // neither the model nor gunicorn does (real HUPs under load lost requests so, the calibrate capture).
    const app = new URL('./fixtures/block-app.ts', import.meta.url).pathname;
    const server = await serve(['--workers', '1', '--threads', '4', '--app', app, '--policy', 'gunicorn-gthread', '--keepalive', '1']);
    const idle = new Client(server.target, { allowHalfOpen: true });
    // What the client's kernel reported, in order: a FIN shows as 'end', an RST as ECONNRESET.
    const seen: string[] = [];
    idle.socket.on('end', () => seen.push('FIN'));
    idle.socket.on('error', (error: NodeJS.ErrnoException) => seen.push(error.code ?? error.message));
    expect((await okResponse(idle)).headers.get('connection')).not.toBe('close');
    const blocker = new Client(server.target);
    blocker.send('GET /block?ms=1800 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300));
    idle.send('GET /late HTTP/1.1\r\nHost: x\r\n\r\n');
    expect((await blocker.next(5000)).kind).toBe('response');
    expect(await idle.next(5000)).toEqual({ kind: 'reset' });
    // The RST alone: no FIN came first (the old close sent one, and the RST only when it closed the socket).
    expect(seen).toEqual(['ECONNRESET']);
    blocker.close();
    await stopServer(server);
    const trace = expectConformingTrace(server);
    // The server never heard of the late request: its close, decided at the keep-alive timeout, says FIN; the kernel reset it.
    const conn = trace.events.filter((e) => e.actor === 'conn/1.1').map((e) => e.type);
    expect(conn.filter((t) => t === 'conn.bytes')).toHaveLength(1);
    expect(conn.at(-1)).toBe('conn.close');
  });

  it('safe-drain: an idle keep-alive connection gets an idle window for one more request (answered with close), then is closed', async () => {
    const server = await serve(['--workers', '1', '--threads', '4', '--policy', 'safe-drain', '--idle-grace', '1.5', '--graceful-timeout', '10']);
    const active = new Client(server.target);
    const quiet = new Client(server.target);
    expect((await okResponse(active)).status).toBe(200);
    expect((await okResponse(quiet)).status).toBe(200);
    server.signal('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    // Inside the window: served, and told to close.
    const late = await okResponse(active);
    expect(late.headers.get('connection')).toBe('close');
    // The quiet one is still open inside the window, and closed by the server after it.
    expect(quiet.closedByPeer).toBe(false);
    expect((await quiet.next(5000)).kind).toBe('eof');
    expect(await server.exited).toBe(0);
    const trace = expectConformingTrace(server);
    expect(trace.events.some((e) => e.type === 'conn.grace-timeout')).toBe(true);
  });

  it('never-close-idle: a request sent on an idle connection after the drain began is never answered (the stale-socket hang) until the graceful deadline', async () => {
    const server = await serve(['--workers', '1', '--threads', '4', '--policy', 'never-close-idle', '--graceful-timeout', '2']);
    const client = new Client(server.target);
    expect((await okResponse(client)).status).toBe(200);
    server.signal('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const outcome = await client.get('/', {}, 1000);
    expect(outcome.kind).toBe('timeout');
    expect(['eof', 'reset']).toContain((await client.next(5000)).kind);
    expect(await server.exited).toBe(0);
    expectConformingTrace(server);
  });

  it('gunicorn-gthread decides the header before the app runs: the same response says keep-alive, then the connection is closed', async () => {
    const server = await serve(['--workers', '1', '--threads', '4', '--app', 'sleep', '--policy', 'gunicorn-gthread', '--graceful-timeout', '5']);
    const client = new Client(server.target);
    client.send('GET /?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    server.signal('SIGTERM');
    const outcome = await client.next(5000);
    expect(outcome.kind).toBe('response');
    if (outcome.kind === 'response') expect(outcome.response.headers.get('connection')).toBe('keep-alive');
    expect(['eof', 'reset']).toContain((await client.next(5000)).kind);
    expect(await server.exited).toBe(0);
    expectConformingTrace(server);
  });
});

describe('quiesce serve: bad input gets a 4xx and a close, and the server keeps serving', () => {
  it.each([
    ['a malformed request line', 'GARBAGE\r\n\r\n', 400],
    ['a bad header', 'GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n', 400],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\n\r\n', 505],
    ['a too-long request line', `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
    ['too many header bytes', `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ['a body over the limit', 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n', 413],
    ['an unsupported transfer coding', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 501],
  ])('%s', async (_what, raw, status) => {
    const server = await serve(['--workers', '1', '--app', 'echo', '--max-body', '1000']);
    const { data, ending } = await rawExchange(server.target, raw);
    expect(data).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(data).toMatch(/\r\nConnection: close\r\n/);
    expect(['eof', 'reset']).toContain(ending);
    const client = new Client(server.target);
    expect((await okResponse(client)).status).toBe(200);
    client.close();
    const workers = server.workerPids();
    await stopServer(server);
    expect(workers).toHaveLength(1);
    const trace = expectConformingTrace(server);
    expect(trace.events.filter((e) => e.type === 'arbiter.reap' && e.code !== 0)).toEqual([]);
  });

  it('a body too large, still coming after its 413: the trace says RST where the policy does not linger, and the wire shows one; a lingering close discards the body and ends with FIN', async () => {
    // The 413 is decided from the head; the body keeps coming and nobody reads it. The trace said FIN
    // (the connection never heard of those bytes) while the kernel reset the connection they reached.
    const head = 'POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\n\r\n';
    for (const [policy, lingers] of [['gunicorn-gthread', false], ['safe-drain', true]] as const) {
      const server = await serve(['--workers', '1', '--app', 'echo', '--max-body', '1000', '--policy', policy, '--linger', '5']);
      const client = new Client(server.target, { allowHalfOpen: true });
      await client.connected;
      client.send(Buffer.concat([Buffer.from(head), Buffer.alloc(64 * 1024, 0x61)]));
      const answer = await client.next(5000);
      if (lingers) {
        // Read and discarded while it lingers: the 413 is not destroyed; the server's half-close (FIN) comes
        // while the client still sends, and the client's own FIN ends the linger (the trace's close, below).
        expect(answer.kind === 'response' && [answer.response.status, answer.response.headers.get('connection')], policy).toEqual([413, 'close']);
        expect((await client.next(5000)).kind, policy).toBe('eof');
        client.socket.end();
      } else {
        // A reset may destroy the 413 before the client reads it (RFC 9112 §9.6): the reset is what is certain.
        if (answer.kind === 'response') expect(answer.response.status, policy).toBe(413);
        else expect(answer.kind, policy).toBe('reset');
        await client.next(5000);
        expect(client.resetSeen, policy).toBe(true);
      }
      client.close();
      await stopServer(server);
      const trace = expectConformingTrace(server);
      const conn = trace.events.filter((e) => e.actor === 'conn/1.1').map((e) => e.type + ('req' in e ? ` ${e.req}` : '') + (e.type === 'conn.close' ? ` rst:${e.rst}` : ''));
      // The body's bytes are heard of behind the refused request (a refused head names no request: its id
      // is the connection's count), before its response.
      const started = conn.findIndex((line) => line.startsWith('conn.handler-start '));
      const req = conn[started]!.slice('conn.handler-start '.length);
      expect(conn.indexOf(`conn.bytes ${req}`, started), policy).toBeGreaterThan(started);
      expect(conn.indexOf(`conn.bytes ${req}`, started), policy).toBeLessThan(conn.indexOf(`conn.respond ${req}`));
      expect(conn.at(-1), policy).toBe(`conn.close rst:${!lingers}`);
    }
  });

  it('closes a connection whose request head does not arrive within --header-timeout', async () => {
    const server = await serve(['--workers', '1', '--header-timeout', '0.5']);
    const { data, ending } = await rawExchange(server.target, 'GET / HTTP/1.1\r\nHost: slow', 10_000);
    expect(data).toBe('');
    expect(['eof', 'reset']).toContain(ending);
    await stopServer(server);
    const trace = expectConformingTrace(server);
    expect(trace.events.some((e) => e.type === 'conn.header-timeout')).toBe(true);
  });

  it('waits for a body that arrives later, and says 100 Continue to a client that asks', async () => {
    const server = await serve(['--workers', '1', '--app', 'echo']);
    const client = new Client(server.target);
    client.send('POST /late HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab');
    await new Promise((r) => setTimeout(r, 150));
    client.send('cd');
    const late = await client.next();
    expect(late.kind === 'response' && late.response.body).toBe('abcd');
    client.send('POST /ask HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n');
    const go = await client.next();
    expect(go.kind === 'response' && go.response.status).toBe(100);
    client.send('xyz');
    const answer = await client.next();
    expect(answer.kind === 'response' && [answer.response.status, answer.response.body]).toEqual([200, 'xyz']);
    client.close();
    await stopServer(server);
    expectConformingTrace(server);
  });

  it('a request pipelined behind one in progress at TERM: safe-drain answers both (the second with close); close-after-next answers the first with close and resets the second unread', async () => {
    for (const [policy, both] of [['safe-drain', true], ['close-after-next', false]] as const) {
      const server = await serve(['--workers', '1', '--threads', '4', '--app', 'sleep', '--policy', policy]);
      const client = new Client(server.target, { allowHalfOpen: true });
      // Both in one write: the second is in the server's buffer before the first's handler starts.
      client.send('GET /?ms=400 HTTP/1.1\r\nHost: x\r\nX-Request-Id: one\r\n\r\nGET /?ms=0 HTTP/1.1\r\nHost: x\r\nX-Request-Id: two\r\n\r\n');
      await new Promise((r) => setTimeout(r, 150));
      server.signal('SIGTERM');
      const first = await client.next(5000);
      expect(first.kind === 'response' && first.response.headers.get('connection'), policy).toBe(both ? 'keep-alive' : 'close');
      const second = await client.next(5000);
      if (both) {
        expect(second.kind === 'response' && second.response.headers.get('connection'), policy).toBe('close');
        expect((await client.next(5000)).kind, policy).toBe('eof');
      } else expect(second.kind, policy).toBe('reset');
      client.close();
      await stopServer(server);
      const trace = expectConformingTrace(server);
      // The trace says the second request was behind the first while it was handled.
      const conn = trace.events.filter((e) => e.actor === 'conn/1.1').map((e) => e.type + ('req' in e ? ` ${e.req}` : ''));
      expect(conn.slice(conn.indexOf('conn.handler-start one')).slice(0, 2), policy).toEqual(['conn.handler-start one', 'conn.bytes two']);
    }
  });

  it('half a request pipelined behind one being handled is not a request: a FIN after the response closes with FIN, not RST', async () => {
    // Found by the framing fuzz: the bytes were noted as a request waiting behind (unread), which no one
    // announced once idle, and the FIN that followed closed the connection with RST.
    const server = await serve(['--workers', '1', '--threads', '4', '--app', 'sleep', '--policy', 'safe-drain', '--keepalive', '30']);
    const client = new Client(server.target, { allowHalfOpen: true });
    client.send('GET /?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50));
    client.send('GET /more HT');
    expect((await client.next(5000)).kind).toBe('response');
    await new Promise((r) => setTimeout(r, 100));
    client.socket.end();
    expect((await client.next(5000)).kind).toBe('eof');
    await new Promise((r) => setTimeout(r, 100));
    expect(client.resetSeen).toBe(false);
    client.close();
    await stopServer(server);
    expectConformingTrace(server);
  });

  it('answers pipelined requests in order', async () => {
    const server = await serve(['--workers', '1', '--app', 'echo']);
    const client = new Client(server.target);
    client.send('POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\none' + 'POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\ntwo');
    const first = await client.next();
    const second = await client.next();
    expect(first.kind === 'response' && first.response.body).toBe('one');
    expect(second.kind === 'response' && second.response.body).toBe('two');
    client.close();
    await stopServer(server);
    expectConformingTrace(server);
  });
});
