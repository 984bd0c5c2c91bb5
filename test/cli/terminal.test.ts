/**
 * Ctrl-C during `quiesce simulate` must leave the terminal as it was. The
 * simulation is synchronous, so no signal handler can run to restore state;
 * the progress bar therefore changes none (no hidden cursor, no line wrap
 * off). Run under a real pseudo-terminal (script(1)) and interrupted.
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { childrenOf } from '../impl/server.ts';

/** Every process below `pid` (script(1) may run the command under a shell). */
function descendants(pid: number): number[] {
  return childrenOf(pid).flatMap((c) => [c, ...descendants(c)]);
}

const BIN = new URL('../../bin/quiesce.mjs', import.meta.url).pathname;

describe('the terminal after an interrupted simulate', () => {
  let spawned: number[] = [];
  afterEach(() => {
    // Never leave a simulation running behind the test, whatever failed — and never kill a process
    // that took a pid of ours after it ended (pids wrap at 32768 on a busy machine).
    for (const pid of spawned) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (!cmdline.includes('simulate')) continue;
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    spawned = [];
  });

  // script(1) runs the command with $SHELL -c: bash execs it, dash stays as its parent. Ctrl-C must
  // end the simulation under either.
  it.each(['/bin/bash', '/bin/sh'])('under %s: the progress bar is drawn, Ctrl-C ends the simulation, and no cursor-hiding or wrap-disabling sequence is ever written', async (shell) => {
    const command = `${process.execPath} ${BIN} simulate --scenario keepalive-recycle --policy safe-drain --requests 2000000 --concurrency 20`;
    const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, SHELL: shell, COLUMNS: '100', LINES: '30' } });
    spawned.push(child.pid!);
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
    // Wait until the bar is on screen (it appears after a second of work), then interrupt.
    await new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`no progress bar within 20 s:\n${output}`)), 20_000);
      child.stdout.on('data', () => {
        if (/requests/.test(output) && /[░█]/.test(output)) {
          clearTimeout(deadline);
          resolve();
        }
      });
    });
    // Ctrl-C, as a terminal does it: the interrupt character, typed into the pseudo-terminal, makes
    // its line discipline send SIGINT to the whole foreground job. Signalling one process instead
    // would have to guess which: where script(1)'s shell does not exec the command (dash), the shell
    // is the first descendant whose command line names `simulate`, and a shell waiting for its
    // foreground child ignores the SIGINT until the child is done (the whole simulation).
    const simulation = descendants(child.pid!).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('simulate'));
    expect(simulation).toHaveLength(1);
    spawned.push(...descendants(child.pid!));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stdin.write('\x03');
    const code = await closed;
    expect(code).not.toBe(0);
    expect(output).not.toContain('Complete requests:'); // interrupted, not run to its end
    expect(descendants(child.pid!)).toEqual([]);
    expect(output).not.toContain('\x1b[?25l'); // cursor hidden
    expect(output).not.toContain('\x1b[?7l'); // line wrap off
  }, 40_000);
});
