/** `quiesce conform`: run the conformance scripts against any HTTP server, as a black box, and say which policies explain what its clients saw. */
import { CaptureStartError } from '../conformance/capture.ts';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { conform, ConformUsageError, formatConformReport, parseBind, PLACEHOLDERS, ServerStartError } from '../conformance/blackbox.ts';
import { SCRIPTS } from '../conformance/scripts.ts';
import { BASE_POLICY_NAMES, getPolicy, POLICY_NAMES } from '../model/policies.ts';
import { scriptParams } from '../simulator/script.ts';
import { formatTrace, makeHeader } from '../model/trace.ts';
import { getScript } from '../conformance/scripts.ts';
import { formatSuiteReport, runSuite } from '../conformance/suite.ts';
import type { Io } from './main.ts';
import { UsageError } from './errors.ts';

const SIGNAL = /^(TERM|INT|QUIT|HUP|USR1|USR2|WINCH)$/;

interface ConformCliOptions {
  server?: string;
  bind?: string;
  mutants: boolean;
  gunicorn: boolean;
  paths: boolean;
  script?: string;
  policy?: string;
  stopSignal?: string;
  reloadSignal?: string;
  traces?: string;
  workerPattern?: string;
  json?: boolean;
}

function names(flag: string, text: string | undefined, known: readonly string[]): string[] | undefined {
  if (text === undefined) return undefined;
  const list = text.split(',').map((s) => s.trim());
  for (const n of list) if (!known.includes(n)) throw new UsageError(`${flag}: unknown name "${n}"; expected one of: ${known.join(', ')}`);
  return list;
}

/** The black-box runner's refusals — the address taken, the command's server not coming up — are the input's fault: one message, exit 2. */
export function asUsageError(error: unknown): never {
  if (error instanceof ConformUsageError) throw new UsageError(error.message);
  if (error instanceof ServerStartError) throw new UsageError(`--server: ${error.message}`);
  if (error instanceof CaptureStartError) throw new UsageError(`--capture: ${error.message}`);
  throw error;
}

export function registerConformCommand(program: Command, io: Io): void {
  program
    .command('conform')
    .description(
      'the conformance suite: with no --server, every script under every policy against quiesce serve (judged by its trace, the wire and its clients), coverage, the mutation score and the gunicorn report; with --server, any HTTP server as a black box: which policies explain what its clients saw',
    )
    .option('--server <command>', `a server's command line, run as a black box; it may take ${Object.keys(PLACEHOLDERS).join(' ')} (each script's parameters)`)
    .option('--bind <address>', 'where the --server command makes the server listen: host:port or unix:/path')
    .option('--no-mutants', 'our suite: leave out the mutation score')
    .option('--no-paths', "our suite: leave out the scripts generated from the connection chart's paths")
    .option('--no-gunicorn', "our suite: leave out the gunicorn report (it runs where Debian's gunicorn is installed)")
    .option('--script <names>', `only these scripts (${SCRIPTS.map((s) => s.name).join(', ')})`)
    .option('--policy <names>', 'compare with only these policies')
    .option('--stop-signal <name>', 'the signal for a graceful stop, if not TERM (nginx: QUIT)')
    .option('--reload-signal <name>', 'the signal for a reload, if not HUP')
    .option('--worker-pattern <regex>', "which of the server's children are its workers, by command line (default: all of them)")
    .option('--traces <dir>', "write what each script's clients saw as a JSONL trace (the viz loads it), and each interleaving only the search found (<script>.<policy>.explained.jsonl)")
    .option('--json', 'print one JSON object')
    .action(async (options: ConformCliOptions) => {
      if (options.server === undefined) {
        if (options.bind !== undefined) throw new UsageError('--bind says where a --server command listens: give --server too (without it the suite runs quiesce serve itself)');
        for (const [flag, value] of [['--stop-signal', options.stopSignal], ['--reload-signal', options.reloadSignal], ['--worker-pattern', options.workerPattern], ['--traces', options.traces]] as const) {
          if (value !== undefined) throw new UsageError(`${flag} applies to a --server command, not to the suite on quiesce serve`);
        }
        const report = await runSuite({
          scripts: names('--script', options.script, SCRIPTS.map((s) => s.name)) ?? SCRIPTS.map((s) => s.name),
          policies: names('--policy', options.policy, POLICY_NAMES) ?? BASE_POLICY_NAMES,
          mutants: options.mutants,
          gunicorn: options.gunicorn,
          paths: options.paths,
          onProgress: (what) => {
            if (process.stderr.isTTY && !options.json) process.stderr.write(`\r\x1b[2Krunning ${what}…`);
          },
        });
        if (process.stderr.isTTY && !options.json) process.stderr.write('\r\x1b[2K');
        io.out(options.json ? JSON.stringify(report, null, 2) + '\n' : formatSuiteReport(report));
        if (!report.passed) io.exitCode = 1;
        return;
      }
      if (options.bind === undefined) throw new UsageError('--bind: required with --server (where the command makes the server listen: host:port or unix:/path)');
      const server = options.server;
      const bind = options.bind;
      try {
        parseBind(bind);
      } catch (error) {
        if (error instanceof ConformUsageError) throw new UsageError(error.message);
        throw error;
      }
      for (const [flag, value] of [['--stop-signal', options.stopSignal], ['--reload-signal', options.reloadSignal]] as const) {
        if (value !== undefined && !SIGNAL.test(value)) throw new UsageError(`${flag}: expected a signal name like TERM, QUIT or HUP (without SIG), got "${value}"`);
      }
      let workerPattern: RegExp | undefined;
      try {
        workerPattern = options.workerPattern === undefined ? undefined : new RegExp(options.workerPattern);
      } catch {
        throw new UsageError(`--worker-pattern: not a regular expression: "${options.workerPattern}"`);
      }
      const scripts = names('--script', options.script, SCRIPTS.map((s) => s.name));
      const policies = names('--policy', options.policy, POLICY_NAMES);
      const report = await conform({
        command: server,
        bind,
        ...(scripts ? { scripts } : {}),
        ...(policies ? { policies } : {}),
        ...(options.stopSignal ? { stopSignal: options.stopSignal } : {}),
        ...(options.reloadSignal ? { reloadSignal: options.reloadSignal } : {}),
        ...(workerPattern ? { workerPattern } : {}),
        onScript: (name) => {
          if (process.stderr.isTTY && !options.json) process.stderr.write(`\r\x1b[2Krunning ${name}…`);
        },
      }).catch(asUsageError);
      if (process.stderr.isTTY && !options.json) process.stderr.write('\r\x1b[2K');
      if (options.traces) {
        mkdirSync(options.traces, { recursive: true });
        for (const v of report.scripts) {
          if (v.skipped) continue;
          // A client-side trace: the clients' machines replay it; its policy is the first that explains it (or none, said in meta).
          const policy = v.explainedBy[0] ?? 'safe-drain';
          getPolicy(policy);
          const header = makeHeader(policy, scriptParams(getScript(v.script)), false, { source: 'conform', server, script: v.script, explainedBy: v.explainedBy });
          writeFileSync(join(options.traces, `${v.script}.jsonl`), formatTrace({ header, events: [...v.observedTrace] }));
          // The interleavings only the search found, each a run of its policy's machines (quiesce replay checks it).
          for (const [explainer, trace] of Object.entries(v.explanations)) writeFileSync(join(options.traces, `${v.script}.${explainer}.explained.jsonl`), formatTrace(trace));
        }
      }
      if (options.json) io.out(JSON.stringify({ ...report, scripts: report.scripts.map(({ observedTrace: _t, explanations: _e, ...rest }) => rest) }, null, 2) + '\n');
      else io.out(formatConformReport(report));
    });
}
