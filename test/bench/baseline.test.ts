/**
 * The bench's baseline (bench/serve.ts): bare node:http processes on one shared socket, against which
 * `npm run bench` rates our server's throughput. ab -k speaks HTTP/1.0; a response without a length
 * cannot keep its connection there, and the baseline once answered so — every request a new connect,
 * a quarter of node:http's pace, and our server rated 3.25× it. This holds the baseline to what it is
 * for: requests on kept connections.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bareNodeHttp } from '../../bench/serve.ts';
import { runAb } from '../../conformance/ab.ts';

describe("the bench's bare node:http baseline", () => {
  let bare: { port: number; stop: () => void };
  beforeAll(async () => {
    bare = await bareNodeHttp();
  });
  afterAll(() => bare?.stop());

  it('keeps every connection alive under ab -k, as the server it is compared with does', async () => {
    const report = await runAb(['-n', '2000', '-c', '10', '-k', `http://127.0.0.1:${bare.port}/`]);
    expect(report.complete).toBe(2000);
    expect(report.failed).toBe(0);
    expect(report.keepAliveRequests).toBe(2000);
  });
});
