/**
 * Any HTTP server, as a black box: `quiesce conform --server "<command>"`.
 * The scripts run against it with the same clients and signals as against
 * `quiesce serve`; what its clients saw is then set beside what the
 * simulator's clients see under each named policy, running the same script
 * on the same machines. A policy *explains* a script's run when every client
 * saw the same things in the same order — each request sent, each response
 * with its `Connection` header, each failure and its kind (EOF, RST, refused), its
 * own close — timestamps aside.
 *
 * This compares against the simulator's run of each policy (one
 * interleaving, the one its timings give), not every interleaving the
 * charts allow: a server that takes an order the simulator does not is
 * reported as explained by no policy, with the first difference.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { TraceEvent } from '../model/events.ts';
import type { Trace } from '../model/trace.ts';
import { BASE_POLICY_NAMES } from '../model/policies.ts';
import type { ServerParams } from '../model/params.ts';
import { scriptParams, simulateScript, type Script } from '../simulator/script.ts';
import { appEnv, runScript, type ServerUnderTest } from './live.ts';
import { accepts, answers, childrenOf, startProcess } from './process.ts';
import { SCRIPTS } from './scripts.ts';
import { clientLine, existsExplanation, type ExistentialVerdict } from './exists.ts';
import { JudgeThread } from './judge-thread.ts';

/** Placeholders a server command may take, filled from each script's parameters. */
export const PLACEHOLDERS: Record<string, { readonly of: (p: ServerParams) => string; readonly needed: (p: ServerParams, script: Script) => boolean }> = {
  '{workers}': { of: (p) => String(p.workers), needed: () => false },
  '{threads}': { of: (p) => String(p.threads), needed: () => false },
  '{keepalive}': { of: (p) => String(p.keepAliveMs / 1000), needed: () => false },
  '{graceful-timeout}': { of: (p) => String(p.gracefulTimeoutMs / 1000), needed: () => false },
  '{timeout}': { of: (p) => String(p.timeoutMs / 1000), needed: (p) => p.timeoutMs !== DEFAULT_TIMEOUT_MS },
  '{max-requests}': { of: (p) => String(p.maxRequests), needed: (p) => p.maxRequests > 0 },
  '{max-requests-jitter}': { of: (p) => String(p.maxRequestsJitter), needed: (p) => p.maxRequestsJitter > 0 },
  '{idle-grace}': { of: (p) => String(p.idleGraceMs / 1000), needed: () => false },
  '{linger}': { of: (p) => String(p.lingerMs / 1000), needed: () => false },
  '{header-timeout}': { of: (p) => String(p.headerTimeoutMs / 1000), needed: (p) => p.headerTimeoutMs > 0 && p.headerTimeoutMs < 10_000 },
  // listen(2)'s backlog: no script sets one (the calibration's backlog rows do).
  '{backlog}': { of: (p) => String(p.backlog), needed: () => false },
  // Bytes. A script's body too large declares far more (TOO_LARGE_DECLARED_BYTES); a server with no such
  // limit takes the body and answers what its app says, which no script predicts.
  '{max-body}': { of: () => String(SCRIPT_MAX_BODY_BYTES), needed: (_p, script) => script.steps.some((s) => s.do === 'too-large') },
};
/** The largest request body the scripts' servers take (`{max-body}`), as quiesce serve's default. */
export const SCRIPT_MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

export class ConformUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConformUsageError';
  }
}

/** Where to connect: `host:port` or `unix:/path`. */
export function parseBind(bind: string): net.NetConnectOpts {
  if (bind.startsWith('unix:') && bind.length > 5) return { path: bind.slice(5) };
  const match = /^([\w.-]+|\[[0-9a-f:]+\]):(\d{1,5})$/i.exec(bind);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) throw new ConformUsageError(`--bind: expected host:port or unix:/path, got "${bind}"`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port: Number(match[2]) };
}

/** A server under test that did not come up: what it said last is kept for the report. */
export class ServerStartError extends Error {
  constructor(
    what: string,
    readonly output: string,
  ) {
    super(output.trim() ? `${what}; its last output:\n${output.trim().slice(-2000)}` : what);
    this.name = 'ServerStartError';
  }
}

/**
 * Refuse an address something already accepts on: the runner would take that other server's
 * answers for the command's (a check that it came up cannot tell the two apart).
 */
export async function assertAddressFree(bind: string): Promise<void> {
  if (await accepts(parseBind(bind))) throw new ConformUsageError(`--bind: something already accepts connections at ${bind}; stop it or choose another address`);
}

/** A server started from a command line (by /bin/sh, which `exec`s it: the pid signalled is the server's). */
export function commandServer(command: string, bind: string, signals: { stop?: string; reload?: string } = {}, workerPattern?: RegExp): ServerUnderTest {
  const target = parseBind(bind);
  return {
    signalFor: (signal) => (signal === 'TERM' ? (signals.stop ?? signal) : signal === 'HUP' ? (signals.reload ?? signal) : signal),
    start: (params, dir, app) => startProcess(['/bin/sh', '-c', `exec ${fillCommand(command, params)}`], { cwd: dir, env: appEnv(app) }),
    listening: async (server, timeoutMs, ready = 'accepts') => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (ready === 'answers' ? await answers(target, Math.max(1, deadline - Date.now())) : await accepts(target)) return target;
        if (server.proc.exitCode !== null) throw new ServerStartError(`the server exited (${server.proc.exitCode}) before it accepted connections at ${bind}`, server.output());
        if (Date.now() > deadline) throw new ServerStartError(`the server did not accept connections at ${bind} within ${timeoutMs} ms`, server.output());
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    // Its children, oldest first — those whose command line matches, when the server has helpers that are not workers.
    workers: (server) => childrenOf(server.pid).filter((pid) => !workerPattern || workerPattern.test(cmdlineOf(pid))),
  };
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The command with its placeholders filled from the server's parameters. */
export function fillCommand(command: string, params: ServerParams): string {
  let out = command;
  for (const [name, p] of Object.entries(PLACEHOLDERS)) out = out.split(name).join(p.of(params));
  return out;
}

/** Why a script cannot run against this command: a parameter it needs that the command does not take. */
export function skipReason(command: string, script: Script): string | null {
  const params = scriptParams(script);
  const missing = Object.entries(PLACEHOLDERS).filter(([name, p]) => p.needed(params, script) && !command.includes(name));
  return missing.length > 0 ? `the command takes no ${missing.map(([n]) => n).join(', ')}` : null;
}

/** What a client saw, in order, timestamps and server-side events aside. */
export function clientView(events: readonly TraceEvent[]): Map<string, string[]> {
  const view = new Map<string, string[]>();
  const ended = new Set<string>();
  for (const e of events) {
    if (!e.actor.startsWith('client/')) continue;
    const line = clientLine(e, (req) => req, ended.has(e.actor));
    if (e.type === 'client.eof' || e.type === 'client.fail') ended.add(e.actor);
    if (line === null) continue;
    const list = view.get(e.actor) ?? [];
    list.push(line);
    view.set(e.actor, list);
  }
  return view;
}

/** The first difference between two clients' views, or null. */
export function firstDifference(observed: Map<string, string[]>, predicted: Map<string, string[]>): string | null {
  const clients = [...new Set([...observed.keys(), ...predicted.keys()])].sort();
  for (const c of clients) {
    const a = observed.get(c) ?? [];
    const b = predicted.get(c) ?? [];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (a[i] !== b[i]) return `${c}, step ${i + 1}: saw ${a[i] ?? 'nothing more'}; the policy predicts ${b[i] ?? 'nothing more'}`;
    }
  }
  return null;
}

export interface ScriptVerdict {
  readonly script: string;
  readonly skipped: string | null;
  /** What each client saw. */
  readonly observed: Record<string, string[]>;
  /** The policies that explain it: the simulator's run saw the same, or some interleaving of the policy's machines does. */
  readonly explainedBy: readonly string[];
  /** The policies of explainedBy that only a search of every interleaving found (the simulator's one run did not). */
  readonly explainedBySearch: readonly string[];
  /** For each policy that does not explain it: the first difference from the simulator's run, and what the search found. */
  readonly differences: Record<string, string>;
  readonly observedTrace: readonly TraceEvent[];
  /** For each policy only the search found: the interleaving that explains the run (on the explorer's clock). */
  readonly explanations: Readonly<Record<string, Trace>>;
  /** What the report must say beside the verdict: the server's process was found stopped, and the run ended there (live.ts). */
  readonly note: string | null;
}

export interface ConformReport {
  readonly command: string;
  readonly scripts: readonly ScriptVerdict[];
  /** The policies that explain every script that ran. */
  readonly policies: readonly string[];
}

export interface ConformOptions {
  readonly command: string;
  readonly bind: string;
  /** The signal the server takes for a graceful stop (TERM) and a reload (HUP), when it is another. */
  readonly stopSignal?: string;
  readonly reloadSignal?: string;
  /** Which of the server's children are workers (their /proc command line), when it has other children. */
  readonly workerPattern?: RegExp;
  readonly scripts?: readonly string[];
  readonly policies?: readonly string[];
  readonly onScript?: (name: string) => void;
  /** The bound of each search of every interleaving (conformance/exists.ts). */
  readonly maxStates?: number;
}

/** What the search of every interleaving adds to a difference. */
function searchNote(search: ExistentialVerdict): string {
  switch (search.status) {
    case 'unexplained':
      return `; no interleaving explains it (${search.states} states searched): ${search.firstUnexplained}`;
    case 'undecided':
      return `; the search of every interleaving stopped at its bound (${search.states} states)`;
    case 'not-checkable':
      return `; not searched: ${search.reason}`;
    case 'explained':
      return '';
  }
}

export async function conform(options: ConformOptions): Promise<ConformReport> {
  const sut = commandServer(options.command, options.bind, {
    ...(options.stopSignal ? { stop: options.stopSignal } : {}),
    ...(options.reloadSignal ? { reload: options.reloadSignal } : {}),
  }, options.workerPattern);
  await assertAddressFree(options.bind);
  const policies = options.policies ?? BASE_POLICY_NAMES;
  const scripts = SCRIPTS.filter((s) => !options.scripts || options.scripts.includes(s.name));
  // Judging a run is CPU work (a search of every interleaving, under each policy); running one is mostly
  // waiting. Each run is judged on a thread of its own while the next one runs (judge-thread.ts).
  const judge = await JudgeThread.start();
  const judged: Promise<ScriptVerdict>[] = [];
  try {
    for (const script of scripts) {
      options.onScript?.(script.name);
      // Boxed: an async function's returned promise would be awaited with it, and the pipeline lost.
      judged.push((await runAndJudge(script, sut, options, policies, judge)).verdict);
    }
  } finally {
    // Every run's verdict, in the scripts' order, before the thread goes.
    await Promise.allSettled(judged);
    await judge.close();
  }
  const verdicts = await Promise.all(judged);
  const ran = verdicts.filter((v) => v.skipped === null);
  return { command: options.command, scripts: verdicts, policies: policies.filter((p) => ran.length > 0 && ran.every((v) => v.explainedBy.includes(p))) };
}

/** Runs one script against the server now; its verdict comes when the judge is through with it. */
async function runAndJudge(script: Script, sut: ServerUnderTest, options: ConformOptions, policies: readonly string[], judge: JudgeThread): Promise<{ verdict: Promise<ScriptVerdict> }> {
  const notJudged = (skipped: string, observedTrace: readonly TraceEvent[]): ScriptVerdict => ({ script: script.name, skipped, observed: {}, explainedBy: [], explainedBySearch: [], differences: {}, observedTrace, explanations: {}, note: null });
  const skipped = skipReason(options.command, script);
  if (skipped) return { verdict: Promise.resolve(notJudged(skipped, [])) };
  const run = await runScript(script, sut);
  // A step aimed at a worker that found none did not happen: what the clients saw is not the script's.
  if (run.noWorker.length > 0) {
    const pattern = options.workerPattern ? `: does --worker-pattern ${options.workerPattern.source} match its workers?` : '';
    return { verdict: Promise.resolve(notJudged(`not judged: found no worker process to signal (${run.noWorker.join('; ')})${pattern}`, run.observed)) };
  }
  const verdict = judge.verdict(script.name, policies, run.observed, options.maxStates);
  return { verdict: run.serverStopped === null ? verdict : verdict.then((v) => ({ ...v, note: run.serverStopped })) };
}

/**
 * One run judged: what its clients saw beside the simulator's run of each policy, and, where they
 * differ, a search of every interleaving the policy allows for one that explains it.
 */
export function judgeRun(script: Script, policies: readonly string[], observedTrace: readonly TraceEvent[], maxStates?: number): ScriptVerdict {
  const observed = clientView(observedTrace);
  const explainedBy: string[] = [];
  const explainedBySearch: string[] = [];
  const explanations: Record<string, Trace> = {};
  const differences: Record<string, string> = {};
  for (const policy of policies) {
    const difference = firstDifference(observed, clientView(simulateScript(script, policy).events));
    if (difference === null) {
      explainedBy.push(policy);
      continue;
    }
    // The simulator took one interleaving: is there another the policy allows that explains it?
    const search = existsExplanation(script, policy, observedTrace, maxStates === undefined ? {} : { maxStates });
    if (search.status === 'explained') {
      explainedBy.push(policy);
      explainedBySearch.push(policy);
      explanations[policy] = search.trace;
    } else differences[policy] = `${difference}${searchNote(search)}`;
  }
  return { script: script.name, skipped: null, observed: Object.fromEntries(observed), explainedBy, explainedBySearch, differences, observedTrace, explanations, note: null };
}

export function formatConformReport(report: ConformReport): string {
  const out = [`quiesce conform: ${report.command}`, ''];
  for (const v of report.scripts) {
    if (v.skipped) {
      out.push(`${v.script}: skipped — ${v.skipped}`);
      continue;
    }
    const names = v.explainedBy.map((p) => (v.explainedBySearch.includes(p) ? `${p}*` : p));
    out.push(`${v.script}: explained by ${names.length > 0 ? names.join(', ') : 'no policy'}`);
    for (const [client, seen] of Object.entries(v.observed)) out.push(`    ${client}: ${seen.join(' → ')}`);
    if (v.note) out.push(`    note: ${v.note}`);
  }
  if (report.scripts.some((v) => v.explainedBySearch.length > 0)) out.push('', '* by an interleaving the simulator’s run did not take (a search of every interleaving found it)');
  out.push('', report.policies.length > 0 ? `Policies that explain every script: ${report.policies.join(', ')}` : 'No policy explains every script.');
  return out.join('\n') + '\n';
}
