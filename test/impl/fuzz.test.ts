/**
 * Malformed and truncated requests thrown at a running server. Whatever
 * arrives, the server answers with a 4xx (or 501/505) and closes, or closes
 * without a word once the header timeout passes, or — when the bytes happen
 * to form a valid request — answers it. It never hangs, never answers 500,
 * and no worker dies; well-formed requests keep being served throughout.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, expectConformingTrace, rawExchange, startServer, stopServer, type RunningServer } from './server.ts';

const HEADER_TIMEOUT_S = 0.3;
const VALID = [
  'GET /?x=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: fuzz\r\n\r\n',
  'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
  'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
];

/** A valid request cut short, or mangled: bytes replaced, inserted or deleted. */
const hostileRequest = fc.oneof(
  fc.tuple(fc.constantFrom(...VALID), fc.nat()).map(([request, cut]) => request.slice(0, cut % request.length)),
  fc
    .tuple(
      fc.constantFrom(...VALID),
      fc.array(fc.tuple(fc.nat(), fc.constantFrom('replace', 'insert', 'delete'), fc.oneof(fc.constantFrom('\r', '\n', ' ', ':', '\0', '\t', '\x7f', 'ÿ', '/', 'HTTP/9.9', '\r\n\r\n', 'Content-Length: 9\r\n', 'Transfer-Encoding: chunked\r\n'), fc.string({ maxLength: 3 }))), { minLength: 1, maxLength: 4 }),
    )
    .map(([request, edits]) => {
      let text = request;
      for (const [position, kind, bytes] of edits) {
        const at = position % (text.length + 1);
        if (kind === 'replace') text = text.slice(0, at) + bytes + text.slice(at + bytes.length);
        else if (kind === 'insert') text = text.slice(0, at) + bytes + text.slice(at);
        else text = text.slice(0, at) + text.slice(at + 1 + (bytes.length % 4));
      }
      return text;
    }),
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
);

describe('fuzzing the real server with malformed and truncated requests', () => {
  let server: RunningServer;
  let workersBefore: number[];

  beforeAll(async () => {
    server = await startServer(['--workers', '2', '--threads', '4', '--app', 'echo', '--header-timeout', String(HEADER_TIMEOUT_S), '--max-body', '4096']);
    workersBefore = server.workerPids();
  });

  afterAll(async () => {
    if (server.proc.exitCode === null) await stopServer(server);
  });

  it('every request gets a 4xx and a close, or a close, or (if valid after all) an answer; no hang, no 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostileRequest, { minLength: 1, maxLength: 4 }), async (requests) => {
        const exchanges = await Promise.all(requests.map((raw) => rawExchange(server.target, Buffer.from(raw, 'latin1'), (HEADER_TIMEOUT_S + 5) * 1000)));
        for (const { data, ending } of exchanges) {
          // Bounded: the server always ends the exchange itself (a valid keep-alive request aside, answered first).
          const statuses = [...data.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
          expect(statuses).not.toContain(500);
          if (ending === 'timeout') {
            // Only a connection the server answered and keeps alive may stay open.
            expect(statuses.length).toBeGreaterThan(0);
            expect(data).toMatch(/Connection: keep-alive/);
          }
          for (const status of statuses) expect([200, 400, 413, 414, 431, 501, 505]).toContain(status);
          if (statuses.some((s) => s >= 400)) expect(data).toMatch(/Connection: close/);
        }
        // Well-formed requests keep being served between the attacks.
        const client = new Client(server.target);
        const outcome = await client.get('/ok');
        client.close();
        expect(outcome.kind === 'response' && outcome.response.status).toBe(200);
      }),
      { numRuns: 40, seed: 4242 },
    );
    expect(server.workerPids()).toEqual(workersBefore);
    await stopServer(server);
    const trace = expectConformingTrace(server);
    // No worker died: the only exits are the two at the final stop, both clean.
    const reaps = trace.events.filter((e) => e.type === 'arbiter.reap');
    expect(reaps.map((e) => (e as { code: number }).code)).toEqual([0, 0]);
  }, 180_000);
});
