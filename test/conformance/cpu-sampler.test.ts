/**
 * What the CPU samples say of the work (conformance/cpu-sampler.ts `measuredWork`): a worker's CPU counts
 * from the end of its boot, a boot only where the samples saw the process from its start. The sampler
 * itself runs for real in the calibrate test, which measures our server's profile before it compares.
 */
import { describe, expect, it } from 'vitest';
import { measuredWork, type CpuSamples } from '../../conformance/cpu-sampler.ts';

const samples: CpuSamples = {
  samples: 500,
  sparesAtEnd: 1,
  clientCpuMs: 40,
  processes: [
    // A worker serving when the samples began: its CPU from the first sample on.
    { pid: 1, firstCpuMs: 100, firstSeenBooting: false, bootCpuMs: null, workerFirstCpuMs: 100, workerLastCpuMs: 400 },
    // The spare booted before the samples began, then a worker: its serving counts, its boot was not seen whole.
    { pid: 2, firstCpuMs: 120, firstSeenBooting: true, bootCpuMs: 120, workerFirstCpuMs: 130, workerLastCpuMs: 330 },
    // Started during the run: its boot is whole, its serving from its last sample before it was a worker.
    { pid: 3, firstCpuMs: 0, firstSeenBooting: true, bootCpuMs: 150, workerFirstCpuMs: 160, workerLastCpuMs: 460 },
    // Still booting when the run ended: neither a whole boot nor serving.
    { pid: 4, firstCpuMs: 10, firstSeenBooting: true, bootCpuMs: 80, workerFirstCpuMs: null, workerLastCpuMs: null },
  ],
};

describe('measuredWork', () => {
  it("divides the workers' CPU while workers over the requests served, and keeps only boots seen whole", () => {
    const work = measuredWork(samples, 1000, 1100);
    // (400 − 100) + (330 − 120) + (460 − 150) = 820 ms over 1000 requests served.
    expect(work.requestWorkMs).toBeCloseTo(0.82, 12);
    expect(work.bootWorkMs).toEqual([150]);
    // The client's CPU over every request it made, answered or not.
    expect(work.clientWorkMs).toBeCloseTo(40 / 1100, 12);
    expect(work.sparesAtEnd).toBe(1);
  });

  it('refuses a run that served nothing, and says the client was not sampled where it was not', () => {
    expect(() => measuredWork(samples, 0, 10)).toThrow(/no requests were served \(0\)/);
    expect(measuredWork({ ...samples, clientCpuMs: null }, 10, 10).clientWorkMs).toBeNull();
  });
});
