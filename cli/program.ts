/**
 * What every way into the CLI shares: the program's name, version and output, and how a run ends —
 * one line on stderr and exit code 2 for a user's error. Light on purpose: `quiesce serve` starts
 * from here with its own command only (cli/serve-main.ts), not with every command's modules.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { UnknownPolicyError } from '../model/policies.ts';
import { SimulationInvariantError } from '../simulator/engine.ts';
import { UsageError } from './errors.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Set by a command that ran to the end but found a problem (a non-conforming trace, a broken must-hold property). */
  exitCode?: number;
}

export function processIo(): Io {
  return { out: (text) => void process.stdout.write(text), err: (text) => void process.stderr.write(text) };
}

/** The program with no commands yet: its name, version, and output through `io`. */
export function baseProgram(io: Io): Command {
  return new Command('quiesce')
    .description('A formal model, simulator and reference implementation of HTTP server shutdown semantics')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride();
}

/** Runs `program` on `argv`; resolves to the exit code. */
export async function runProgram(program: Command, argv: readonly string[], io: Io): Promise<number> {
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return io.exitCode ?? 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; commander already printed the message otherwise.
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof UsageError || error instanceof UnknownPolicyError) {
      io.err(`quiesce: ${error.message}\n`);
      return 2;
    }
    if (error instanceof SimulationInvariantError) {
      // A bug in the simulator or the model, not in the input: say so plainly, with what reproduces it.
      io.err(`quiesce: internal error, please report it with the command you ran (runs are deterministic): ${error.message}\n`);
      return 70;
    }
    throw error;
  }
}
