/**
 * The mutation score: every deliberately broken server (impl/mutants.ts)
 * run where it breaks something, and judged (conformance/judge.ts). A
 * mutant is caught when the witness that can see what it breaks finds it.
 * The suite (`quiesce conform` on our own server) and its test both use
 * this one table.
 */
import { MUTANTS, type Mutant } from '../impl/mutants.ts';
import { judgeRun, type Finding, type Witness } from './judge.ts';
import { runScriptLive, type LiveRun } from './live.ts';
import { getScript } from './scripts.ts';

export interface MutationCase {
  /** A script and policy whose run has what the mutant breaks (an RST close, a close header, a request in flight at TERM). */
  readonly script: string;
  readonly policy: string;
  /** The witness that sees it. */
  readonly witness: Witness;
  /** What that witness says. */
  readonly expect: RegExp;
}

export const MUTATION_CASES: Record<Mutant, MutationCase> = {
  'fin-for-rst': { script: 'term-idle-and-in-flight', policy: 'gunicorn-gthread-21', witness: 'wire', expect: /closed with RST; client\/\d+ saw .*, not ECONNRESET/ },
  'rst-for-fin': { script: 'term-idle-and-in-flight', policy: 'abort-idle', witness: 'wire', expect: /closed with FIN; client\/\d+ saw ECONNRESET|answered .* and it never reset the connection/ },
  'no-close-header': { script: 'term-idle-and-in-flight', policy: 'safe-drain', witness: 'wire', expect: /answered \S+ 200 with Connection: close; client\/\d+ read 200 without it/ },
  'close-header-on-keepalive': { script: 'term-idle-and-in-flight', policy: 'safe-drain', witness: 'wire', expect: /answered \S+ 200 without Connection: close; client\/\d+ read 200 with it/ },
  'drop-response': {
    script: 'term-idle-and-in-flight',
    policy: 'safe-drain',
    witness: 'wire',
    expect: /the trace says at line \d+ it answered idle-1, and it never reset the connection; client\/\d+ read no response \(empty-reply for idle-1\)/,
  },
  'exit-with-request-in-flight': {
    script: 'term-idle-and-in-flight',
    policy: 'safe-drain',
    witness: 'clients',
    expect: /what the clients saw is not what safe-drain lets them see: client\/\d+, step \d+: saw (eof|fail [a-z-]+( \S+)?); the policy predicts (send|response) /,
  },
};

export interface MutantVerdict {
  readonly mutant: Mutant;
  readonly description: string;
  readonly case: MutationCase;
  /** Caught by the witness that can see it, saying what it should. */
  readonly caught: boolean;
  readonly findings: readonly Finding[];
  readonly run: LiveRun;
}

/** Run one mutant in its case, and judge it. */
export async function runMutant(mutant: Mutant): Promise<MutantVerdict> {
  const c = MUTATION_CASES[mutant];
  const script = getScript(c.script);
  const run = await runScriptLive(script, c.policy, { env: { QUIESCE_MUTANT: mutant } });
  const findings = judgeRun(script, c.policy, run);
  const seen = findings.filter((f) => f.witness === c.witness).map((f) => f.message);
  return { mutant, description: MUTANTS[mutant], case: c, caught: seen.length > 0 && c.expect.test(seen.join('\n')), findings, run };
}

export const MUTANT_NAMES = Object.keys(MUTANTS) as Mutant[];
