/** `quiesce prove`: the theorems of proofs/README.md, checked by exhaustive search within bounds (and by SPIN). */
import type { Command } from 'commander';
import { DEFAULT_BOUNDS, THEOREMS, type ProofBounds } from '../proofs/theorems.ts';
import { formatReport, prove } from '../proofs/prove.ts';
import { crossCheck, formatCrossCheck, SpinUnavailableError, type CrossCheck } from '../proofs/spin.ts';
import type { Io } from './main.ts';
import { parseNumberOption, UsageError } from './errors.ts';

interface ProveCliOptions {
  theorem?: string;
  workers: string;
  clients: string;
  requests: string;
  burst: string;
  backlog: string;
  maxStates: string;
  symmetry: boolean;
  spin: boolean;
  json?: boolean;
  traces: string;
}

const count = (min: number, max: number, why: string) => ({ min, max, integer: true, why });

/** Bounds beyond these take hours or more memory than a machine like this has: the error says so. */
const PROOF_LIMITS = {
  workers: count(1, 4, 'states grow about threefold per worker'),
  clients: count(0, 4, 'states grow about fivefold per client'),
  requests: count(1, 4, 'states grow about fourfold per request'),
  burst: count(0, 8, 'a burst of 8 already has every interleaving of 9 connections'),
  backlog: count(0, 8, 'the burst theorem needs bursts larger than the backlog'),
  maxStates: count(1, 50_000_000, 'the visited set is held in memory'),
} as const;

export function parseProofBounds(o: ProveCliOptions): ProofBounds {
  return {
    workers: parseNumberOption('--workers', o.workers, PROOF_LIMITS.workers),
    clients: parseNumberOption('--clients', o.clients, PROOF_LIMITS.clients),
    requests: parseNumberOption('--requests', o.requests, PROOF_LIMITS.requests),
    burst: parseNumberOption('--burst', o.burst, PROOF_LIMITS.burst),
    backlog: parseNumberOption('--backlog', o.backlog, PROOF_LIMITS.backlog),
    maxStates: parseNumberOption('--max-states', o.maxStates, PROOF_LIMITS.maxStates),
  };
}

function parseTheorems(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const known = THEOREMS.map((t) => t.number);
  return text.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || !known.includes(n)) throw new UsageError(`--theorem: expected theorem numbers among ${known.join(', ')} (comma-separated), got "${text}"`);
    return n;
  });
}

export function registerProveCommand(program: Command, io: Io): void {
  program
    .command('prove')
    .description('prove the theorems of proofs/README.md: every interleaving within the bounds, shortest counterexamples, SPIN cross-check')
    .option('--theorem <n,...>', `only these theorems (${THEOREMS.map((t) => t.number).join(', ')})`)
    .option('--workers <n>', 'theorem 1: every worker count up to this', String(DEFAULT_BOUNDS.workers))
    .option('--clients <n>', 'client connections (each opened once)', String(DEFAULT_BOUNDS.clients))
    .option('--requests <n>', 'requests per client (it may close before)', String(DEFAULT_BOUNDS.requests))
    .option('--burst <n>', 'theorem 4: every burst size up to this', String(DEFAULT_BOUNDS.burst))
    .option('--backlog <n>', 'theorem 4: the listen backlog', String(DEFAULT_BOUNDS.backlog))
    .option('--max-states <n>', 'a search stops here, and says it was cut short', String(DEFAULT_BOUNDS.maxStates))
    .option('--no-symmetry', 'key states without renaming interchangeable workers, connections and clients')
    .option('--no-spin', 'skip the SPIN cross-check')
    .option('--traces <dir>', 'write each counterexample and witness here as a JSONL trace', 'traces/proofs')
    .option('--json', 'print one JSON object instead of the report')
    .action((options: ProveCliOptions) => {
      const bounds = parseProofBounds(options);
      const theorems = parseTheorems(options.theorem);
      const tty = process.stderr.isTTY && !options.json;
      let lastProgress = 0;
      const report = prove({
        bounds,
        ...(theorems ? { theorems } : {}),
        symmetry: options.symmetry,
        tracesDir: options.traces,
        onProgress: (label, depth, states) => {
          // A progress line on long runs, on a terminal only: rewritten in place at most five times a second.
          const now = Date.now();
          if (!tty || now - lastProgress < 200) return;
          lastProgress = now;
          process.stderr.write(`\r\x1b[2K${label}: depth ${depth}, ${states} states`.slice(0, (process.stderr.columns ?? 100) + 5));
        },
        onRow: () => {
          if (tty) process.stderr.write('\r\x1b[2K');
        },
      });
      let spin: CrossCheck | null = null;
      if (options.spin) {
        try {
          spin = crossCheck({ onProgress: tty ? (label) => process.stderr.write(`\r\x1b[2K${label}`) : undefined });
          if (tty) process.stderr.write('\r\x1b[2K');
        } catch (error) {
          if (error instanceof SpinUnavailableError) throw new UsageError(`${error.message} (or run with --no-spin)`);
          throw error;
        }
      }
      const holds = report.holds && (spin === null || spin.agrees);
      if (options.json) io.out(JSON.stringify({ ...report, holds, spin }, null, 2) + '\n');
      else io.out(formatReport(report) + (spin ? '\n' + formatCrossCheck(spin) : ''));
      if (!holds) io.exitCode = 1;
    });
}
