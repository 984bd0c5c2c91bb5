/**
 * `npm run fuzz:http -- --runs 1000000 [--seed N]`: the differential HTTP
 * fuzzer of test/impl/differential.test.ts at any scale. Prints the verdict
 * and exits 1 on any framing disagreement outside the documented list, any
 * hang, or any worker exit.
 */
import { Command, InvalidArgumentError } from 'commander';
import { describeVerdict, judge, sampleCases, startHarness, type CaseResult, type Verdict } from './differential.ts';
import { tempDir } from './server.ts';

const positiveInt = (flag: string) => (text: string) => {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new InvalidArgumentError(`${flag}: expected a positive integer, got "${text}"`);
  return Number(text);
};

const program = new Command('fuzz:http')
  .option('--runs <n>', 'generated connections', positiveInt('--runs'), 10_000)
  .option('--seed <n>', 'fast-check seed', positiveInt('--seed'), 20261202)
  .option('--batch <n>', 'connections in flight at once', positiveInt('--batch'), 200)
  .parse();
const { runs, seed, batch } = program.opts<{ runs: number; seed: number; batch: number }>();

const harness = await startHarness(tempDir('quiesce-fuzz-'));
const workers = harness.quiesce.workerPids();
const totals: Verdict[] = [];
const startedAt = Date.now();
let bad = false;
// Generated in slices so that a million cases never sit in memory at once; each slice has its own seed.
for (let done = 0; done < runs && !bad; ) {
  const slice = Math.min(10_000, runs - done);
  const cases = sampleCases(slice, seed + done);
  const results: CaseResult[] = [];
  for (let i = 0; i < cases.length; i += batch) results.push(...(await harness.run(cases.slice(i, i + batch))));
  const verdict = judge(results);
  totals.push(verdict);
  done += slice;
  bad = verdict.unexplained.length > 0 || verdict.hangs.length > 0 || harness.quiesce.workerPids().join() !== workers.join();
  process.stderr.write(`\r${done}/${runs} connections, ${Math.round((Date.now() - startedAt) / 1000)} s`);
  if (bad) console.log(`\n${describeVerdict(verdict)}\nreplay: npm run fuzz:http -- --runs ${slice} --seed ${seed + done - slice}`);
}
process.stderr.write('\n');
const documented: Record<string, number> = {};
for (const v of totals) for (const [c, n] of Object.entries(v.documented)) documented[c] = (documented[c] ?? 0) + n;
const sum = (f: (v: Verdict) => number) => totals.reduce((n, v) => n + f(v), 0);
console.log(`${sum((v) => v.cases)} connections: ${sum((v) => v.agreed)} framed identically, ${sum((v) => v.requests.node)} requests framed by node:http, ${sum((v) => v.requests.quiesce)} by quiesce serve`);
for (const [c, n] of Object.entries(documented)) console.log(`  documented divergence ${c}: ${n}`);
console.log(`  unexplained: ${sum((v) => v.unexplained.length)}, hangs: ${sum((v) => v.hangs.length)}, workers unchanged: ${harness.quiesce.workerPids().join() === workers.join()}`);
await harness.close();
process.exitCode = bad ? 1 : 0;
