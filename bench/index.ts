/**
 * `npm run bench`: every figure as a ratio (or a duration) measured in one
 * run, side by side; `npm run bench -- --json` prints the same as one JSON
 * object, each compiled-vs-XState ratio under a key ending in `Speedup`.
 * Benchmarks print; they do not judge — the targets are beside the figures.
 */
import { Command, CommanderError } from 'commander';
import { machineFigures, simulatorFigures } from './machines.ts';
import { haveAb, serveFigures, startFigures, type ServeFigures } from './serve.ts';
import { explorerFigures } from './explorer.ts';

const program = new Command('bench')
  .option('--json', 'print one JSON object')
  .option('--skip-serve', 'leave out the real server (it needs ab)')
  .exitOverride();
try {
  program.parse(process.argv.slice(2), { from: 'user' });
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  throw error;
}
const options = program.opts<{ json?: boolean; skipServe?: boolean }>();
const say = (line: string) => {
  if (!options.json) process.stdout.write(line + '\n');
};

say('machines: transitions per second on the same recorded sequences (keepalive-recycle, gunicorn-gthread)');
const machines = machineFigures();
for (const [kind, { compiled, xstate }] of Object.entries(machines.transitionsPerSecond)) {
  const speedup = compiled / xstate;
  say(`  ${kind.padEnd(9)} compiled ${Math.round(compiled).toLocaleString('en').padStart(12)}/s   xstate transition() ${Math.round(xstate).toLocaleString('en').padStart(10)}/s   ${speedup.toFixed(1)}×  (target ≥ 20×)`);
}

say('simulator');
const simulator = simulatorFigures();
say(`  seed run (10,000 requests): ${simulator.seedRunSeconds.toFixed(3)} s warm, ${simulator.seedRunColdSeconds.toFixed(3)} s cold (target < 0.2 s); on XState ${simulator.seedRunXstateSeconds.toFixed(2)} s: ${simulator.simulatorSpeedup.toFixed(1)}×`);
say(`  the seed table (${simulator.seedTableRuns} runs): ${simulator.seedTableSeconds.toFixed(2)} s (target < 10 s)`);
say(`  our server's profile, the seed run: on the shared CPU ${simulator.sharedCpuSeconds.toFixed(3)} s, its times drawn ${simulator.drawnTimesSeconds.toFixed(3)} s: ${(simulator.sharedCpuSeconds / simulator.drawnTimesSeconds).toFixed(2)}× the time`);
say(`  1,000,000 requests: ${simulator.millionRunSeconds.toFixed(1)} s, ${simulator.millionRunEvents.toLocaleString('en')} events, peak memory ${simulator.millionRunPeakMiB} MiB (target < 60 s)`);

say('explorer (proofs/)');
const explorer = explorerFigures();
say(`  ${explorer.configuration}: ${explorer.statesWithSymmetry.toLocaleString('en')} states with symmetry reduction, ${explorer.statesWithoutSymmetry.toLocaleString('en')} without: ${explorer.symmetryReduction.toFixed(1)}× fewer`);
say(`  ${Math.round(explorer.statesPerSecond).toLocaleString('en')} states/s with symmetry reduction (canonical keys), ${Math.round(explorer.statesPerSecondWithoutSymmetry).toLocaleString('en')} states/s without`);

say('server start (spawn → "listening at", 1 worker, medians of 8 alternate starts)');
const start = await startFigures();
say(`  quiesce serve from its kept bundle ${start.keptBundleMs.toFixed(0)} ms, from its sources through tsx ${start.fromSourcesMs.toFixed(0)} ms: ${start.ratio.toFixed(2)}× sooner`);

let serve: ServeFigures | null = null;
if (options.skipServe) say('server: skipped');
else if (!haveAb()) say('server: skipped (ab not found: apt-get install apache2-utils)');
else {
  say('server');
  serve = await serveFigures();
  say(`  ${serve.load}, ${serve.workers} processes: bare node:http ${Math.round(serve.bareRps)}/s`);
  say(`  quiesce serve, trace off: ${Math.round(serve.traceOffRps)}/s = ${serve.traceOffRatio.toFixed(2)}× bare node:http (target ≥ 0.8)`);
  say(`  quiesce serve, trace on:  ${Math.round(serve.traceOnRps)}/s = ${serve.traceOnRatio.toFixed(2)}× (target ≥ 0.6)`);
  say(`  quiesce serve, lifecycle trace (--trace-events lifecycle): ${Math.round(serve.lifecycleTraceRps)}/s = ${serve.lifecycleTraceRatio.toFixed(2)}×, ${(serve.lifecycleTraceRps / serve.traceOffRps).toFixed(2)}× trace off`);
  say(`  HUP under load: ${serve.reloadMs.toFixed(0)} ms until every old worker was gone; TERM: ${serve.termMs.toFixed(0)} ms to the arbiter's exit`);
  if (serve.seedLoad) {
    const s = serve.seedLoad;
    say(`  the seed load with recycling (ab -n 10000 -c 20 -k -r, max-requests 512): gunicorn 20.1 gthread ${Math.round(s.gunicornRps)}/s (${s.gunicornFailed} failed), quiesce serve ${Math.round(s.quiesceRps)}/s (${s.quiesceFailed} failed): ${s.ratio.toFixed(2)}× (target ≥ 1)`);
  } else say('  the seed load against gunicorn: skipped (gunicorn not installed)');
}

if (options.json) process.stdout.write(JSON.stringify({ ...machines.speedups, simulatorSpeedup: simulator.simulatorSpeedup, machines: machines.transitionsPerSecond, simulator, explorer, start, serve }) + '\n');
