/** The soak of test/impl/soak.ts at a size that fits the suite (`npm run soak` is the full one). */
import { describe, expect, it } from 'vitest';
import { describeSoak, FULL_SOAK, runSoak } from './soak.ts';

describe('soak (small): safe-drain under POST load, reloads, recycling, a stopped and a killed worker', () => {
  it('loses no processed POST, fails only what the kills explain, keeps its memory flat, and its trace replays', async () => {
    const result = await runSoak({ ...FULL_SOAK, requests: 30_000, reloads: 5, maxRequests: 2000 });
    console.log(describeSoak(result));
    expect(result.failures).toEqual([]);
    expect(result.reloads).toBe(5);
    expect(result.recycles).toBeGreaterThan(0);
    expect(result.stoppedReplacedAfterMs).not.toBeNull();
  }, 240_000);
});
