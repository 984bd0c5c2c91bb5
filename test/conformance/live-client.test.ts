/**
 * The runner's script client (conformance/live.ts) as a witness of FIN against RST, on real
 * loopback sockets. Node reports an RST that arrives together with unread response bytes as a clean
 * EOF (libuv ends a partial read on POLLHUP without the read() that returns ECONNRESET): found by
 * pipelined-behind-close, where the wire witness then saw "empty-reply" for a connection the capture
 * shows reset, in about one run in three.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ScriptClient, tcpState } from '../../conformance/live.ts';
import type { TraceEvent } from '../../model/events.ts';

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server that answers the first request it reads and then closes: with RST, or with FIN. */
async function answerThenClose(how: 'rst' | 'fin', host = '127.0.0.1'): Promise<net.AddressInfo> {
  const server = net.createServer((socket) => {
    socket.once('data', () => {
      // Written and closed in one turn: the response and the close reach the client together.
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
      if (how === 'rst') socket.resetAndDestroy();
      else socket.end();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, host, r));
  return server.address() as net.AddressInfo;
}

async function clientSees(address: net.AddressInfo): Promise<string[]> {
  const events: string[] = [];
  const client = new ScriptClient('c', 'client/1', (e: Omit<TraceEvent, 't'>) => {
    events.push([e.type, 'req' in e ? e.req : '', 'reason' in e ? e.reason : ''].filter(Boolean).join(' '));
  });
  client.connect({ host: '127.0.0.1', port: address.port });
  // Two requests, the second pipelined behind the first: the server closes after the first's response.
  client.request(0);
  client.request(0);
  const deadline = Date.now() + 5000;
  while (!events.some((e) => e.startsWith('client.fail') || e === 'client.eof') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  client.destroy();
  return events;
}

describe('the script client tells an RST from a FIN', () => {
  it('an RST right behind a response is a reset of the request pipelined behind it, every time', async () => {
    const address = await answerThenClose('rst');
    for (let i = 0; i < 8; i++) expect(await clientSees(address), `run ${i}`).toEqual(['client.connect', 'client.connected', 'client.send c-1', 'client.send c-2', 'client.response c-1', 'client.fail c-2 reset']);
  });

  it('a FIN right behind a response is an empty reply', async () => {
    const address = await answerThenClose('fin');
    for (let i = 0; i < 4; i++) expect((await clientSees(address)).at(-1), `run ${i}`).toBe('client.fail c-2 empty-reply');
  });

  it('a request written before a refused connect was never sent: the failure is the connect\'s (script connect-during-term once read it as the request\'s)', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const events: string[] = [];
    const client = new ScriptClient('c', 'client/1', (e: Omit<TraceEvent, 't'>) => events.push([e.type, 'req' in e ? e.req : '', 'reason' in e ? e.reason : ''].filter(Boolean).join(' ')));
    client.connect({ host: '127.0.0.1', port });
    client.request(0);
    const deadline = Date.now() + 5000;
    while (!events.some((e) => e.startsWith('client.fail')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    client.destroy();
    expect(events).toEqual(['client.connect', 'client.fail refused']);
  });

  it("the kernel's table has a connection the peer FINed, and none it reset — over IPv4 and IPv6 (a FIN over ::1 once read as a reset)", async () => {
    for (const [how, host] of [['fin', '127.0.0.1'], ['rst', '127.0.0.1'], ['fin', '::1'], ['rst', '::1']] as const) {
      const address = await answerThenClose(how, host);
      const socket = net.connect({ host, port: address.port, allowHalfOpen: true });
      await new Promise((r) => socket.once('connect', r));
      const ports = { local: socket.localPort!, remote: socket.remotePort! };
      socket.on('error', () => {});
      socket.resume();
      socket.write('x');
      await new Promise((r) => {
        socket.once('end', r);
        socket.once('error', r);
      });
      expect(tcpState(ports.local, ports.remote), `${how} over ${host}`).toBe(how === 'fin' ? 'present' : 'gone');
      socket.destroy();
    }
  });
});
