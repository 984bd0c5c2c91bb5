/** The soak of test/impl/soak.ts at a size that fits the suite (`npm run soak` is the full one). */
import { describe, expect, it } from 'vitest';
import { describeSoak, FULL_SOAK, runSoak } from './soak.ts';

describe('soak (small): safe-drain under POST load, reloads, recycling, a stopped and a killed worker', () => {
  it('loses no processed POST, fails only what the kills explain, keeps its memory flat, and its trace replays', async () => {
    // Recycling must happen whatever the balance between workers: a generation (between reloads) serves
    // about 30,000 / 6 = 5,000 requests on 4 workers, so one of them serves at least 1,250 — past the
    // largest budget, 800 + 80 jitter. (With 2,000 it hung on the balance: a run under load had none.)
    const result = await runSoak({ ...FULL_SOAK, requests: 30_000, reloads: 5, maxRequests: 800 });
    console.log(describeSoak(result));
    expect(result.failures).toEqual([]);
    expect(result.reloads).toBe(5);
    expect(result.recycles).toBeGreaterThan(0);
    expect(result.stoppedReplacedAfterMs).not.toBeNull();
  }, 240_000);
});
