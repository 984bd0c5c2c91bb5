/**
 * `quiesce serve` started with its own command only: the arbiter and its workers need none of the
 * simulator's, the conformance runner's or the prover's modules, and loading them took a third of a
 * second of every server start (the test suite starts several hundred). Its help, errors and exit
 * codes are the same as through `quiesce` (cli/main.ts): the same program, with one command.
 */
import { baseProgram, processIo, runProgram, type Io } from './program.ts';
import { registerServeCommand } from './serve.ts';

/** `quiesce serve …`; `argv` starts with "serve". Resolves to the exit code. */
export async function mainServe(argv: readonly string[], io: Io = processIo()): Promise<number> {
  const program = baseProgram(io);
  registerServeCommand(program, io);
  return runProgram(program, argv, io);
}
