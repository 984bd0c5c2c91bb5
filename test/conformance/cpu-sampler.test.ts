/**
 * What the CPU samples say of the work (conformance/cpu-sampler.ts `measuredWork`): a worker's CPU counts
 * from the end of its boot, a boot only where the samples saw the process from its start. The sampler
 * itself runs for real in the calibrate test, which measures our server's profile before it compares.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CpuSampler, measuredWork, spareActivations, type CpuSamples, type SampledProcess } from '../../conformance/cpu-sampler.ts';

const samples: CpuSamples = {
  samples: 500,
  sparesAtEnd: 1,
  clientCpuMs: 40,
  processes: [
    // A worker serving when the samples began: its CPU from the first sample on.
    { pid: 1, firstCpuMs: 100, firstSeenBooting: false, bootCpuMs: null, workerFirstCpuMs: 100, workerLastCpuMs: 400, spareAtMs: null, workerAtMs: 0, exitedAtMs: null },
    // The spare booted before the samples began, then a worker: its serving counts, its boot was not seen whole.
    { pid: 2, firstCpuMs: 120, firstSeenBooting: true, bootCpuMs: 120, workerFirstCpuMs: 130, workerLastCpuMs: 330, spareAtMs: 0, workerAtMs: 50, exitedAtMs: null },
    // Started during the run: its boot is whole, its serving from its last sample before it was a worker.
    { pid: 3, firstCpuMs: 0, firstSeenBooting: true, bootCpuMs: 150, workerFirstCpuMs: 160, workerLastCpuMs: 460, spareAtMs: null, workerAtMs: 300, exitedAtMs: null },
    // Still booting when the run ended: neither a whole boot nor serving.
    { pid: 4, firstCpuMs: 10, firstSeenBooting: true, bootCpuMs: 80, workerFirstCpuMs: null, workerLastCpuMs: null, spareAtMs: null, workerAtMs: null, exitedAtMs: null },
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

describe('spareActivations', () => {
  const process = (over: Partial<SampledProcess>): SampledProcess => ({
    pid: 0, firstCpuMs: 0, firstSeenBooting: true, bootCpuMs: 100, workerFirstCpuMs: 100, workerLastCpuMs: 200, spareAtMs: null, workerAtMs: null, exitedAtMs: null, ...over,
  });

  it('pairs each exit with the next process titled a worker, and keeps the pairs whose spare was loaded before the exit', () => {
    const run: CpuSamples = {
      samples: 100,
      sparesAtEnd: 1,
      clientCpuMs: 0,
      processes: [
        // Two workers there from the start exit at 100 and 400.
        process({ pid: 1, firstSeenBooting: false, workerAtMs: 0, exitedAtMs: 100 }),
        process({ pid: 2, firstSeenBooting: false, workerAtMs: 0, exitedAtMs: 400 }),
        // The spare loaded at 50 replaces the first, a worker at 140: 40 ms.
        process({ pid: 3, spareAtMs: 50, workerAtMs: 140 }),
        // The next one was still loading at 400 (a spare at 450): it waited for its boot, no sample.
        process({ pid: 4, spareAtMs: 450, workerAtMs: 460 }),
      ],
    };
    expect(spareActivations(run)).toEqual([40]);
  });
});

describe('CpuSampler', () => {
  const until = async (done: () => boolean) => {
    for (let i = 0; i < 400 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    if (!done()) throw new Error('timed out waiting for the sampler');
  };

  it("takes a worker the children list leaves out for exited only when /proc says it is gone: the children files omit live children as others exit (proc_tid_children(5)), and recycling workers exit all the time", async () => {
    // Two processes titled as our workers, children of this process (the "arbiter").
    const worker = (n: number) => spawn('sleep', ['30'], { argv0: `quiesce: worker ${n}`, stdio: 'ignore' });
    const [one, two] = [worker(1), worker(2)];
    try {
      let calls = 0;
      let listed = [one.pid!, two.pid!];
      // The third read leaves the second out while it lives, as the kernel's files may.
      const sampler = new CpuSampler(process.pid, 5, () => (++calls === 3 ? [one.pid!] : [...listed]));
      await until(() => calls >= 6);
      one.kill('SIGKILL');
      await once(one, 'exit');
      listed = [two.pid!];
      const seen = calls;
      await until(() => calls >= seen + 2);
      const byPid = new Map(sampler.stop().processes.map((p) => [p.pid, p]));
      expect(byPid.get(two.pid!)?.workerAtMs).not.toBeNull();
      expect(byPid.get(two.pid!)?.exitedAtMs).toBeNull();
      expect(byPid.get(one.pid!)?.exitedAtMs).not.toBeNull();
    } finally {
      one.kill('SIGKILL');
      two.kill('SIGKILL');
    }
  });
});
