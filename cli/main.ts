/**
 * `quiesce` — one command, subcommands for each part of the project.
 * Every user error ends in one line on stderr and exit code 2.
 */
import type { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readTrace } from '../impl/trace-file.ts';
import { join } from 'node:path';
import { CHARTS, listPolicies, replay, TraceParseError, getPolicy, ACTOR_KINDS } from '../model/index.ts';
import { mermaidOf } from '../model/diagram.ts';
import { PROPERTY_NAMES, propertiesFor } from '../model/properties.ts';
import type { TimerTolerance } from '../model/timing.ts';
import { UsageError } from './errors.ts';
import { baseProgram, processIo, runProgram, type Io } from './program.ts';
import { registerSimulatorCommands } from './simulate.ts';
import { registerServeCommand } from './serve.ts';
import { registerProveCommand } from './prove.ts';
import { registerConformCommand } from './conform.ts';
import { registerCalibrateCommand } from './calibrate.ts';
import { registerCalibrateBacklogCommand } from './calibrate-backlog.ts';

export type { Io };

function readTraceFile(path: string) {
  try {
    return readTrace(path);
  } catch (error) {
    if (error instanceof TraceParseError) throw new UsageError(`${path}: ${error.message}`);
    const code = (error as NodeJS.ErrnoException).code;
    if (code) throw new UsageError(`cannot read trace file "${path}": ${code}`);
    throw error;
  }
}

function parseTolerance(text: string | undefined): TimerTolerance | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)$/.exec(text.trim());
  if (!match) throw new UsageError(`--timer-tolerance: expected two numbers of milliseconds, early and late, like "2,1000"; got "${text}"`);
  return { earlyMs: Number(match[1]), lateMs: Number(match[2]) };
}

export function buildProgram(io: Io): Command {
  const program = baseProgram(io);

  program
    .command('policies')
    .description('list the shutdown policies')
    .action(() => {
      const width = Math.max(...listPolicies().map((p) => p.name.length));
      for (const p of listPolicies()) io.out(`${p.name.padEnd(width)}  ${p.description}\n`);
      io.out(`\nEach may take the suffix +lingering-close (safe-drain always lingers).\n`);
    });

  program
    .command('replay')
    .description('check a JSONL trace against the machines and the properties its policy promises')
    .argument('<trace>', 'trace file (JSON Lines)')
    .option('--policy <name>', "replay under this policy instead of the trace header's")
    .option('--property <name...>', `check these properties instead of the ones the policy promises (${PROPERTY_NAMES.join(', ')})`)
    .option('--timer-tolerance <early,late>', "how far (ms) a timer's event may come before / after its due time; default: exact for simulated traces, 2,1000 for real ones")
    .option('--no-timing', "do not check when timers fire")
    .action((path: string, options: { policy?: string; property?: string[]; timerTolerance?: string; timing: boolean }) => {
      const tolerance = options.timing ? parseTolerance(options.timerTolerance) : 'off';
      const properties = options.property?.map((name) => {
        if (!PROPERTY_NAMES.includes(name)) throw new UsageError(`--property: unknown property "${name}"; expected one of: ${PROPERTY_NAMES.join(', ')}`);
        return name;
      });
      const trace = readTraceFile(path);
      if (options.policy) getPolicy(options.policy);
      const chosen = properties ? propertiesFor(trace.header.params).filter((p) => properties.includes(p.name)) : undefined;
      const verdict = replay(trace, options.policy ?? trace.header.policy, { ...(chosen ? { properties: chosen } : {}), ...(tolerance ? { timerTolerance: tolerance } : {}) });
      // Not a violation: nothing was checked. The user asked for what this trace cannot give.
      if (!verdict.ok && verdict.violation.kind === 'partial-trace') throw new UsageError(`${path}: ${verdict.violation.message}`);
      if (verdict.ok) {
        io.out(`ok: ${verdict.events} events, ${verdict.actors} actors conform to ${options.policy ?? trace.header.policy}; properties checked: ${verdict.properties.join(', ')}\n`);
        return;
      }
      io.out(`${path}: ${verdict.violation.message}\n`);
      io.exitCode = 1;
    });

  program
    .command('diagrams')
    .description('print (or write) Mermaid state diagrams generated from the machines')
    .option('--write <dir>', 'write one <kind>.mmd file per machine into this directory')
    .action((options: { write?: string }) => {
      for (const kind of ACTOR_KINDS) {
        const text = mermaidOf(CHARTS[kind]);
        if (options.write) {
          mkdirSync(options.write, { recursive: true });
          writeFileSync(join(options.write, `${kind}.mmd`), text);
        } else io.out(`%% ${kind}\n${text}\n`);
      }
      if (options.write) io.out(`wrote ${ACTOR_KINDS.length} diagrams to ${options.write}\n`);
    });

  registerSimulatorCommands(program, io);
  registerServeCommand(program, io);
  registerProveCommand(program, io);
  registerConformCommand(program, io);
  registerCalibrateCommand(program, io);
  registerCalibrateBacklogCommand(program, io);
  return program;
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: readonly string[], io: Io = processIo()): Promise<number> {
  return runProgram(buildProgram(io), argv, io);
}
