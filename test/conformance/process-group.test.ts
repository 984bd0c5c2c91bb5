/**
 * Whether a process group is orphaned (conformance/process.ts): the kernel then discards TTIN, TTOU and
 * TSTP that a process has no handler for, where elsewhere they stop it — which decides whether a black
 * box without handlers for them (nginx) is frozen by a script's TTIN.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const PROCESS_TS = new URL('../../conformance/process.ts', import.meta.url).pathname;
const ASK = `import(${JSON.stringify(PROCESS_TS)}).then((m) => console.log(JSON.stringify({ orphaned: m.processGroupOrphaned() })))`;

/** Starts a command in a process group of its own, in this session (python3: Node has no setpgid). */
const OWN_GROUP = ['python3', '-c', 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])'];

/** Runs the question in a fresh node, started by `argv`'s launcher; its answer. */
function askFrom(launcher: readonly string[]): { orphaned: boolean } {
  const run = spawnSync(launcher[0]!, [...launcher.slice(1), process.execPath, '--import', 'tsx', '-e', ASK], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { orphaned: boolean };
}

describe('processGroupOrphaned', () => {
  it('a session of its own (setsid, as systemd starts a service): orphaned', () => {
    expect(askFrom(['setsid', '--wait'])).toEqual({ orphaned: true });
  });

  it('a group of its own inside this session (setpgid, as a shell with job control makes a job): not orphaned', () => {
    // Its parent, this process, stays in the session, in another group. (Not `bash -m`: without a
    // controlling terminal, as in CI, bash has no job control and makes no group.)
    expect(askFrom(OWN_GROUP)).toEqual({ orphaned: false });
  });

  it('agrees with the kernel: TTIN stops a process without a handler exactly where its group is not orphaned', () => {
    // A child that asks, sends itself TTIN, then says it still runs: where the kernel stops it, it never
    // says so, and is ended by the timeout (KILL: a stopped process takes no TERM).
    const selfTtin = `import(${JSON.stringify(PROCESS_TS)}).then((m) => { const orphaned = m.processGroupOrphaned(); process.kill(process.pid, 'SIGTTIN'); setTimeout(() => console.log(JSON.stringify({ orphaned, ranOn: true })), 100); })`;
    const run = (launcher: readonly string[]) =>
      spawnSync(launcher[0]!, [...launcher.slice(1), process.execPath, '--import', 'tsx', '-e', selfTtin], { encoding: 'utf8', timeout: 5_000, killSignal: 'SIGKILL' });
    const inSession = run(['setsid', '--wait']);
    expect(JSON.parse(inSession.stdout.trim())).toEqual({ orphaned: true, ranOn: true });
    const inGroup = run(OWN_GROUP);
    expect({ stdout: inGroup.stdout, signal: inGroup.signal }).toEqual({ stdout: '', signal: 'SIGKILL' });
  });
});
