/**
 * Whether a process group is orphaned (conformance/process.ts): the kernel then discards TTIN, TTOU and
 * TSTP that a process has no handler for, where elsewhere they stop it — which decides whether a black
 * box without handlers for them (nginx) is frozen by a script's TTIN.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const PROCESS_TS = new URL('../../conformance/process.ts', import.meta.url).pathname;
const ASK = `import(${JSON.stringify(PROCESS_TS)}).then((m) => console.log(JSON.stringify({ orphaned: m.processGroupOrphaned() })))`;

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

  it('a job of a shell with job control (its own group, its parent in the session): not orphaned', () => {
    // bash -m puts each job in a group of its own; the shell, its parent, stays in the session.
    const run = spawnSync('bash', ['-m', '-c', `"$0" --import tsx -e '${ASK.replace(/'/g, "'\\''")}' & wait`, process.execPath], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim())).toEqual({ orphaned: false });
  });

  it('agrees with the kernel: TTIN stops a process without a handler exactly where its group is not orphaned', () => {
    // A child that asks, then sends itself TTIN, then says it still runs: where the kernel stops it, it
    // never says so (and is ended by the timeout).
    const selfTtin = `import(${JSON.stringify(PROCESS_TS)}).then((m) => { const orphaned = m.processGroupOrphaned(); process.kill(process.pid, 'SIGTTIN'); setTimeout(() => console.log(JSON.stringify({ orphaned, ranOn: true })), 100); })`;
    const inSession = spawnSync('setsid', ['--wait', process.execPath, '--import', 'tsx', '-e', selfTtin], { encoding: 'utf8', timeout: 10_000 });
    expect(JSON.parse(inSession.stdout.trim())).toEqual({ orphaned: true, ranOn: true });
    const asJob = spawnSync('bash', ['-m', '-c', `"$0" --import tsx -e '${selfTtin.replace(/'/g, "'\\''")}' & sleep 3; kill -KILL %1 2>/dev/null; echo killed`, process.execPath], { encoding: 'utf8', timeout: 10_000 });
    expect(asJob.stdout.trim()).toBe('killed');
  });
});
