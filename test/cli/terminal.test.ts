/**
 * Ctrl-C during `quiesce simulate` must leave the terminal as it was. The
 * simulation is synchronous, so no signal handler can run to restore state;
 * the progress bar therefore changes none (no hidden cursor, no line wrap
 * off). Run under a real pseudo-terminal (script(1)) and interrupted.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const BIN = new URL('../../bin/quiesce.mjs', import.meta.url).pathname;

describe('the terminal after an interrupted simulate', () => {
  it('the progress bar is drawn, and no cursor-hiding or wrap-disabling sequence is ever written', async () => {
    const command = `${process.execPath} ${BIN} simulate --scenario keepalive-recycle --policy safe-drain --requests 2000000 --concurrency 20`;
    const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, COLUMNS: '100', LINES: '30' } });
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
    child.stdin.write('\x03'); // Ctrl-C, through the pty's line discipline: SIGINT to the foreground job
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).not.toBe(0);
    expect(output).not.toContain('\x1b[?25l'); // cursor hidden
    expect(output).not.toContain('\x1b[?7l'); // line wrap off
  }, 40_000);
});
