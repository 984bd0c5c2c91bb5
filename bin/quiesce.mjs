#!/usr/bin/env node
// Runs the TypeScript CLI from a bundle that esbuild builds once and keeps while the sources are
// unchanged (bin/bundle-cache.mjs), so the package needs no build step and a start pays for none.
import { bundle, programOptions } from './bundle-cache.mjs';

// `quiesce … | head`: the reader went away; stop quietly instead of a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

/** A source that does not compile is a developer's error, not a user's: say where, without a stack trace. */
async function buildOrExit(build) {
  try {
    return await build();
  } catch (error) {
    process.stderr.write(`quiesce: cannot build the command from its sources (${error.message})\n`);
    process.exit(70);
  }
}

const argv = process.argv.slice(2);
// A server starts with its own command's modules only (cli/serve-main.ts says why).
const [name, entry, run] = argv[0] === 'serve' ? ['quiesce-serve', 'cli/serve-main.ts', 'mainServe'] : ['quiesce-cli', 'cli/main.ts', 'main'];
const path = await buildOrExit(() => bundle(name, 'mjs', programOptions(entry)));
const code = await (await import(path))[run](argv);
// The arbiter leaves at once when its stop is done. Left to end by itself, Node closes its handles
// first, and libuv gives each signal back its default action as the last handler for it goes: a TERM
// or INT that comes then (a supervisor's second one, a second Ctrl-C) kills the process, and its exit
// status says "killed by SIGTERM" instead of the stop's own code.
if (argv[0] === 'serve') process.exit(code);
process.exitCode = code;
