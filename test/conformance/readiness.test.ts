/**
 * When a black-box run begins. gunicorn's arbiter binds before its worker has booted: a script's first
 * request, sent as soon as the port accepts, waited for that boot, and a STOP 100 ms in came before
 * the response (stopped-worker-escalation, with another gunicorn run beside it). A run now waits for
 * an answer, except where the health check's request would count toward max-requests.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commandServer } from '../../conformance/blackbox.ts';
import { readinessFor } from '../../conformance/live.ts';
import { tempDir, type ServerProcess } from '../../conformance/process.ts';
import { SCRIPTS } from '../../conformance/scripts.ts';
import { scriptParams } from '../../simulator/script.ts';

const BIND = '127.0.0.1:18436';

/** A server that binds at once and answers only once its "worker" has booted, a second later — gunicorn's order. */
const SLOW_BOOT = `
const net = require('node:net');
let booted = false;
const waiting = [];
setTimeout(() => { booted = true; console.log('booted'); for (const answer of waiting.splice(0)) answer(); }, 1000);
net.createServer((socket) => {
  socket.on('error', () => {});
  const answer = () => socket.end('HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n');
  socket.once('data', () => (booted ? answer() : waiting.push(answer)));
}).listen(${BIND.split(':')[1]}, '127.0.0.1');
`;

let running: ServerProcess | null = null;
afterEach(async () => {
  running?.destroy();
  await running?.exited;
  running = null;
});

function startSlowBoot() {
  const file = join(tempDir('quiesce-readiness-'), 'slow-boot.cjs');
  writeFileSync(file, SLOW_BOOT);
  const sut = commandServer(`${process.execPath} ${file}`, BIND);
  const server = sut.start(scriptParams(SCRIPTS[0]!), tempDir('quiesce-readiness-'));
  running = server;
  return { sut, server };
}

describe('readiness of a black-box server', () => {
  it("'answers' returns once the server has answered a request: after its worker booted", async () => {
    const { sut, server } = startSlowBoot();
    await sut.listening(server, 10_000, 'answers');
    expect(server.output()).toContain('booted');
  });

  it("'accepts' returns as soon as the port takes a connection, before the boot", async () => {
    const { sut, server } = startSlowBoot();
    await sut.listening(server, 10_000, 'accepts');
    expect(server.output()).not.toContain('booted');
  });

  it('every script waits for an answer but the one whose server counts requests toward max-requests', () => {
    const counting = SCRIPTS.filter((s) => scriptParams(s).maxRequests > 0).map((s) => s.name);
    expect(counting).toEqual(['max-requests']);
    for (const script of SCRIPTS) expect(readinessFor(script), script.name).toBe(counting.includes(script.name) ? 'accepts' : 'answers');
  });
});
