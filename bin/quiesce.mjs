#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so the package needs no build step.
import { register } from 'tsx/esm/api';

// `quiesce … | head`: the reader went away; stop quietly instead of a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

register();
const argv = process.argv.slice(2);
// A server starts with its own command's modules only (cli/serve-main.ts says why).
const code = argv[0] === 'serve' ? await (await import('../cli/serve-main.ts')).mainServe(argv) : await (await import('../cli/main.ts')).main(argv);
// The arbiter leaves at once when its stop is done. Left to end by itself, Node closes its handles
// first, and libuv gives each signal back its default action as the last handler for it goes: a TERM
// or INT that comes then (a supervisor's second one, a second Ctrl-C) kills the process, and its exit
// status says "killed by SIGTERM" instead of the stop's own code.
if (argv[0] === 'serve') process.exit(code);
process.exitCode = code;
