import { defineConfig } from 'vitest/config';

/**
 * Three groups, run one after the other, because the suite's files want different things of a
 * two-core machine:
 *
 * - **compute**: pure model, simulator and proof code — CPU-bound, nothing timed by a wall clock,
 *   so two files at a time just share the cores.
 * - **wire**: real servers on loopback whose tests mostly wait (a TERM 0.3 s in, a 2 s keep-alive):
 *   three files at a time overlap their waits. Their windows are hundreds of milliseconds wide.
 * - **alone**: the files that load the machine themselves or measure it — the differential (six
 *   real servers at once, timing windows it reruns on a miss), the calibration (ab at full load,
 *   measured against the simulator), the load test and the soak — and the backlog burst through
 *   nginx, whose arithmetic holds only if the whole burst arrives within one service time, and the
 *   black box, whose scripts hold gunicorn to windows of a quarter second (sharing the machine with
 *   two other files, gunicorn gthread once answered stopped-worker-escalation outside every policy;
 *   alone it is explained as always). Anything beside them would be in their numbers, so they run
 *   one at a time, after everything else. Within a file they may run side by side what they have
 *   measured to share the machine well (the differential's six servers; the black box's two
 *   gunicorns, then its other four).
 *
 * Every file still has its own ports (the fixed ones are 18431–18441 and 18530–18536, each in one
 * file) or port 0, and its own temporary directories.
 */
const ALONE = [
  'test/conformance/differential.test.ts',
  'test/conformance/calibrate.test.ts',
  'test/impl/load.test.ts',
  'test/impl/soak.test.ts',
  'test/impl/nginx.test.ts',
  'test/conformance/blackbox.test.ts',
];
const WIRE = [
  'test/conformance/suite.test.ts',
  'test/conformance/wire.test.ts',
  'test/impl/serve.test.ts',
  'test/impl/hardening.test.ts',
  'test/impl/fuzz.test.ts',
  'test/impl/differential.test.ts',
  'test/cli/terminal.test.ts',
  'test/bench/baseline.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 30_000,
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      { extends: true, test: { name: 'compute', include: ['test/**/*.test.ts'], exclude: [...ALONE, ...WIRE], maxWorkers: 2, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'wire', include: WIRE, maxWorkers: 3, sequence: { groupOrder: 1 } } },
      { extends: true, test: { name: 'alone', include: ALONE, maxWorkers: 1, sequence: { groupOrder: 2 } } },
    ],
  },
});
