/**
 * The hardening regressions, each seen on the wire by a client: one request
 * cannot kill a worker or desync a connection; HTTP/1.0 with
 * Transfer-Encoding closes; Host is checked; a one-byte-chunked body is
 * answered; a worker that really dies is told apart from a kill in the trace
 * and in one log line; a client that never reads its responses is pushed
 * back on instead of filling the worker's memory.
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Client, expectConformingTrace, rawExchange, serversStoppedAfterEach, stopServer, waitFor, type RunningServer } from './server.ts';
import { PIPELINE_AHEAD_BYTES, WORKER_READ_BUDGET_BYTES, WRITE_HIGH_WATER_BYTES } from '../../impl/worker.ts';
import { DEFAULT_LIMITS } from '../../impl/http-parser.ts';

const serve = serversStoppedAfterEach();

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) * 1024;
}

const statuses = (data: string) => [...data.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

describe('hardening: what a client sees', () => {
  it('GET http HTTP/1.1 gets a 400 and the worker keeps its other clients: a half-sent POST is answered, an idle keep-alive connection still works', async () => {
    const server = await serve(['--workers', '1', '--threads', '4', '--app', 'echo']);
    const [pid] = server.workerPids();
    const idle = new Client(server.target);
    expect((await idle.get('/')).kind).toBe('response');
    const post = new Client(server.target);
    post.send('POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello');
    const attack = await rawExchange(server.target, 'GET http HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(statuses(attack.data)).toEqual([400]);
    expect(attack.data).toMatch(/Connection: close/);
    post.send('world');
    const answered = await post.next();
    expect(answered.kind === 'response' && answered.response.body).toBe('helloworld');
    const again = await idle.get('/');
    expect(again.kind === 'response' && again.response.status).toBe(200);
    idle.close();
    post.close();
    expect(server.workerPids()).toEqual([pid]);
    await stopServer(server);
    expect(server.output()).not.toMatch(/crashed|internal error/);
    expectConformingTrace(server);
  });

  it('HTTP/1.0 with Transfer-Encoding: the response says close, the connection closes, the pipelined request is never served (RFC 9112 §6.1)', async () => {
    const server = await serve(['--app', 'echo']);
    const { data, ending } = await rawExchange(server.target, 'POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(statuses(data)).toEqual([200]);
    expect(data).toMatch(/Connection: close\r\n/);
    expect(ending).not.toBe('timeout');
  });

  it.each([
    ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n'],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['an invalid Host', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n'],
  ])('%s: 400 and close (RFC 9112 §3.2)', async (_name, raw) => {
    const server = await serve([]);
    const { data } = await rawExchange(server.target, raw);
    expect(statuses(data)).toEqual([400]);
    expect(data).toMatch(/Connection: close/);
  });

  it('a 512 KiB body in one-byte chunks is answered with that body', async () => {
    const server = await serve(['--app', 'echo']);
    const body = 'y'.repeat(512 * 1024);
    const wire = `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${'1\r\ny\r\n'.repeat(body.length)}0\r\n\r\n`;
    const { data } = await rawExchange(server.target, wire, 30_000);
    expect(statuses(data)).toEqual([200]);
    expect(data.endsWith(`\r\n\r\n${body}`)).toBe(true);
  });

  it('an app that returns an impossible status gets its client a 500, and the worker serves on', async () => {
    const server = await serve(['--app', new URL('./fixtures/crash-app.ts', import.meta.url).pathname]);
    const client = new Client(server.target);
    const bad = await client.get('/bad-status');
    expect(bad.kind === 'response' && bad.response.status).toBe(500);
    const good = await client.get('/');
    expect(good.kind === 'response' && good.response.status).toBe(200);
    client.close();
    expect(server.output()).toMatch(/app error on .*status 1234; expected an integer from 200 to 599/);
  });

  it('a worker that dies of an uncaught error: one arbiter line, a worker.crash in the trace (not a KILL), a replacement that serves, a conforming trace', async () => {
    const server = await serve(['--workers', '1', '--app', new URL('./fixtures/crash-app.ts', import.meta.url).pathname]);
    const [pid] = server.workerPids();
    const bystander = new Client(server.target);
    expect((await bystander.get('/')).kind).toBe('response');
    const victim = new Client(server.target);
    expect((await victim.get('/crash')).kind).toBe('response');
    // The arbiter's line, not the worker's own, which comes first (waiting for any "crashed" raced the arbiter's).
    await waitFor(() => /^\[arbiter\].*crashed/m.test(server.output()), 10_000, 'the arbiter to log the crash');
    await waitFor(() => server.workerPids().length === 1 && server.workerPids()[0] !== pid, 10_000, 'a replacement worker');
    const lines = server.output().split('\n').filter((l) => /crashed/.test(l));
    expect(lines.filter((l) => l.startsWith('[arbiter]'))).toEqual([expect.stringMatching(/^\[arbiter\] worker\/1 \(pid \d+\) crashed: exit code 70: Error: stray callback blew up/)]);
    // The bystander's connection died with its worker (the kernel closed it); a new one is served.
    expect((await bystander.next(2000)).kind).not.toBe('response');
    const fresh = new Client(server.target);
    const served = await fresh.get('/');
    expect(served.kind === 'response' && served.response.status).toBe(200);
    fresh.close();
    await stopServer(server);
    const trace = expectConformingTrace(server);
    const ends = trace.events.filter((e) => e.actor === 'worker/1' && (e.type === 'worker.crash' || e.type === 'worker.signal'));
    expect(ends).toEqual([expect.objectContaining({ type: 'worker.crash', code: 70 })]);
    expect(trace.events.find((e) => e.type === 'arbiter.reap' && e.worker === 'worker/1')).toMatchObject({ code: 70 });
  });

  it('a client that pipelines without reading is pushed back on: the worker stops reading, its memory stays flat, and every response arrives once it reads', async () => {
    const server = await serve(['--workers', '1', '--app', 'echo']);
    const [pid] = server.workerPids();
    const baseline = rssBytes(pid!);
    const body = 'z'.repeat(60 * 1024);
    const request = `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const count = 1700; // ~100 MiB each way
    const socket = net.connect(server.target);
    await new Promise((r) => socket.once('connect', r));
    socket.pause(); // never read, for now
    for (let i = 0; i < count; i++) socket.write(request);
    // Let the worker take what it will; the client's own buffer must keep most of it (pushed back).
    await new Promise((r) => setTimeout(r, 3000));
    const unsent = socket.writableLength;
    const grown = rssBytes(pid!) - baseline;
    expect(unsent).toBeGreaterThan(50 * 1024 * 1024);
    const perConnection = DEFAULT_LIMITS.maxHeadBytes + DEFAULT_LIMITS.maxBodyBytes + PIPELINE_AHEAD_BYTES + WRITE_HIGH_WATER_BYTES;
    expect(grown).toBeLessThan(perConnection + 32 * 1024 * 1024); // the budget plus the kernel's and V8's slack
    // Now read: every response arrives, in order, and nothing was lost.
    let received = 0;
    let text = '';
    await new Promise<void>((resolve) => {
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        let at: number;
        while ((at = text.indexOf('\r\n\r\n')) !== -1 && text.length >= at + 4 + body.length) {
          text = text.slice(at + 4 + body.length);
          if (++received === count) resolve();
        }
      });
      socket.resume();
    });
    expect(received).toBe(count);
    socket.destroy();
  }, 120_000);

  it(`many connections each holding a partial 1 MiB body: the worker's read budget (${WORKER_READ_BUDGET_BYTES / 2 ** 20} MiB) caps its memory`, async () => {
    // The header timer (from accept) must outlast reading 64 MiB on a loaded machine, or it frees
    // the connections before the budget is reached.
    const server = await serve(['--workers', '1', '--app', 'echo', '--header-timeout', '10']);
    const [pid] = server.workerPids();
    const baseline = rssBytes(pid!);
    const sockets: net.Socket[] = [];
    const chunk = 'q'.repeat(1024 * 1024 - 1); // one byte short: the request never completes
    for (let i = 0; i < 150; i++) {
      const socket = net.connect(server.target);
      socket.on('error', () => {});
      socket.write(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${chunk.length + 1}\r\n\r\n${chunk}`);
      sockets.push(socket);
    }
    // A fixed wait was too short on a loaded machine: wait for the worker to say it paused, then
    // give it time in which it would have read on, were it still reading.
    await waitFor(() => /reading paused on every connection/.test(server.output()), 9_000, 'the worker to pause reading at its budget');
    await new Promise((r) => setTimeout(r, 1000));
    const grown = rssBytes(pid!) - baseline;
    expect(grown).toBeLessThan(WORKER_READ_BUDGET_BYTES + 48 * 1024 * 1024);
    // The header timeout frees them; afterwards the worker serves as before.
    await waitFor(() => sockets.every((s) => s.destroyed || s.readableEnded), 25_000, 'the header timeout to close the stuck connections');
    for (const s of sockets) s.destroy();
    const client = new Client(server.target);
    const after = await client.get('/');
    expect(after.kind === 'response' && after.response.status).toBe(200);
    client.close();
    expect(server.workerPids()).toEqual([pid]);
  }, 60_000);
});
