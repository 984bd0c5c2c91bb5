/**
 * quiesce serve against strict node:http (llhttp) on the same bytes: generated
 * requests (test/impl/differential.ts) and a corpus of the known smuggling
 * classes. Framing must agree request for request, except where our parser
 * differs on purpose (impl/http-parser.ts DOCUMENTED_DIVERGENCES, each with
 * its RFC text); no worker may exit and no connection may hang.
 * `npm run fuzz:http -- --runs 1000000` runs the generated part at scale.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeVerdict, divergencesIn, judge, sampleCases, startHarness, type CaseResult, type Harness } from './differential.ts';
import { expectConformingTrace, tempDir } from './server.ts';

const GENERATED = 10_000;
const BATCH = 200;

/**
 * The smuggling classes, each with how many requests an RFC 9112 server frames from it, reasoned
 * from the RFC (not read off our output): a refused message frames none, and nothing after it.
 */
const CORPUS: [string, string, number][] = [
  ['CL.TE: both framings', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG', 0],
  ['TE.CL: both framings, other order', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n', 0],
  ['TE.TE: a second, bogus coding line', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n', 0],
  ['TE.TE: space before the colon', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc', 0],
  ['TE.TE: obs-fold', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n', 0],
  ['TE.TE: xchunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 0],
  ['TE with a tab as whitespace (valid)', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 1],
  ['duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 0],
  ['Content-Length with a sign', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc', 0],
  ['chunk extension with bare LF', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n0\r\n\r\n', 0],
  ['chunk extension with NUL', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a\0b\r\nabc\r\n0\r\n\r\n', 0],
  ['chunk extension with bare CR', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n', 0],
  ['chunk extension with a non-token byte', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a@b\r\nabc\r\n0\r\n\r\n', 0],
  ['whitespace after the chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n', 0],
  ['chunk size overflow', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n', 0],
  ['trailer line without a colon (a request hidden as a trailer)', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET /smuggled HTTP/1.1\r\n\r\n', 0],
  ['Content-Length in a trailer', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n', 0],
  ['bare LF ending the head', 'GET / HTTP/1.1\nHost: a\n\n', 0],
  ['bare LF after a chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n', 0],
  ['bare LF after chunk data', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n', 0],
  ['bare LF after the last chunk', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\n', 0],
  ['HTTP/1.0 with Transfer-Encoding then a pipelined request (§6.1: close after responding)', 'POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n', 1],
  ['missing Host', 'GET / HTTP/1.1\r\n\r\n', 0],
  ['two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 0],
  ['a target starting with http that is not a URI (it crashed a worker)', 'GET http HTTP/1.1\r\nHost: a\r\n\r\n', 0],
  ['a valid pipeline of three', 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxPOST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;e="v"\r\ny\r\n0\r\nT: 1\r\n\r\n', 3],
];

describe('quiesce serve frames requests as strict node:http does (differential)', () => {
  let harness: Harness;
  let workersBefore: number[];

  beforeAll(async () => {
    harness = await startHarness(tempDir('quiesce-diff-'));
    workersBefore = harness.quiesce.workerPids();
  });

  afterAll(async () => {
    await harness?.close();
  });

  it.each(CORPUS)('smuggling corpus: %s', async (_name, raw, framed) => {
    const [result] = (await harness.run([raw])) as [CaseResult];
    expect(result.quiesce).toHaveLength(framed);
    expect(result.hung).toEqual([]);
    // node agrees, or the case is one of the documented divergences.
    if (result.node.length !== framed) expect([...divergencesIn(raw)].length, `node framed ${result.node.length}`).toBeGreaterThan(0);
  });

  it(`${GENERATED} generated connections: no framing disagreement outside the documented list, no hang, no worker exit`, async () => {
    const cases = sampleCases(GENERATED, 20261202);
    const results: CaseResult[] = [];
    for (let i = 0; i < cases.length; i += BATCH) results.push(...(await harness.run(cases.slice(i, i + BATCH))));
    const verdict = judge(results);
    console.log(describeVerdict(verdict));
    expect(verdict.unexplained, describeVerdict(verdict)).toEqual([]);
    expect(verdict.hangs).toEqual([]);
    // The generator must exercise framing, not only refusals: most connections carry requests both frame.
    expect(verdict.requests.node).toBeGreaterThan(GENERATED / 4);
    expect(harness.quiesce.workerPids()).toEqual(workersBefore);
  }, 300_000);

  it('after all of it: the same two workers, a clean stop, no crash, and a conforming trace', async () => {
    expect(harness.quiesce.workerPids()).toEqual(workersBefore);
    await harness.close();
    const trace = expectConformingTrace(harness.quiesce);
    expect(trace.events.filter((e) => e.type === 'worker.crash')).toEqual([]);
    expect(trace.events.filter((e) => e.type === 'arbiter.reap').map((e) => (e as { code: number }).code)).toEqual([0, 0]);
    expect(harness.quiesce.output()).not.toMatch(/crashed|internal error/);
  }, 60_000);
});
