/** The node flags the arbiter starts a worker with (impl/arbiter.ts `workerNodeArgs`). */
import { describe, expect, it } from 'vitest';
import { workerNodeArgs } from '../../impl/arbiter.ts';

describe('workerNodeArgs', () => {
  it("stops a built-in app's short-lived worker at the baseline tier: the budget is max-requests plus the largest jitter, up to 4096", () => {
    expect(workerNodeArgs('hello', { maxRequests: 512, maxRequestsJitter: 64 }, undefined)).toEqual(['--max-opt=1']);
    expect(workerNodeArgs('counter', { maxRequests: 4000, maxRequestsJitter: 96 }, undefined)).toEqual(['--max-opt=1']);
    expect(workerNodeArgs('hello', { maxRequests: 4000, maxRequestsJitter: 97 }, undefined)).toEqual([]);
  });

  it('keeps V8 defaults for a worker that never recycles, and for a user app whatever its budget', () => {
    expect(workerNodeArgs('hello', { maxRequests: 0, maxRequestsJitter: 0 }, undefined)).toEqual([]);
    expect(workerNodeArgs('/srv/app.mjs', { maxRequests: 512, maxRequestsJitter: 0 }, undefined)).toEqual([]);
  });

  it("puts QUIESCE_WORKER_NODE_ARGS last, so that the user's flag wins over ours", () => {
    expect(workerNodeArgs('hello', { maxRequests: 512, maxRequestsJitter: 0 }, ' --max-opt=3  --cpu-prof ')).toEqual(['--max-opt=1', '--max-opt=3', '--cpu-prof']);
    expect(workerNodeArgs('/srv/app.mjs', { maxRequests: 512, maxRequestsJitter: 0 }, '--max-opt=1')).toEqual(['--max-opt=1']);
  });
});
