/**
 * Server processes seen from outside, as a supervisor sees them: started
 * from a command, signalled by pid, their children listed from /proc, their
 * exit awaited. Used by the conformance runner, the calibration and the
 * tests — never by the server itself.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';

export const QUIESCE_BIN = new URL('../bin/quiesce.mjs', import.meta.url).pathname;

/** Apps for third-party servers (conformance/apps/); gunicorn finds one with `--pythonpath APPS_DIR module:app`. */
export const APPS_DIR = new URL('./apps/', import.meta.url).pathname;

export function tempDir(prefix = 'quiesce-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The PIDs whose parent is `pid`, from /proc, in the order they were started. */
export function childrenOf(pid: number): number[] {
  const children: { pid: number; start: number }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may contain spaces, so split after the last ')'. Field 22 is the start time.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) children.push({ pid: Number(entry), start: Number(fields[19]) });
    } catch {
      // the process went away while we looked
    }
  }
  return children.sort((a, b) => a.start - b.start || a.pid - b.pid).map((c) => c.pid);
}

/**
 * The worker processes of the `quiesce serve` arbiter `pid`, oldest first: those titled
 * `quiesce: worker N` (spares waiting to become workers are titled `quiesce: spare`; the arbiter's
 * other children, such as tsx's esbuild service, have no title of ours).
 */
export function workersOf(pid: number): number[] {
  return childrenTitled(pid, 'quiesce: worker ');
}

/** The spare processes of the `quiesce serve` arbiter `pid`: loaded, waiting to become workers. */
export function sparesOf(pid: number): number[] {
  return childrenTitled(pid, 'quiesce: spare');
}

function childrenTitled(pid: number, prefix: string): number[] {
  return childrenOf(pid).filter((child) => titleOf(child)?.startsWith(prefix) ?? false);
}

/** A process's title as ps shows it (its command line, which `quiesce serve` sets to say what a child is); null: gone. */
export function titleOf(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return null;
  }
}

/**
 * The TCP connections to local `port` each of `pids` holds open, read from outside: each process's
 * socket fds (/proc/<pid>/fd) matched against the kernel's connection tables (/proc/net/tcp, tcp6),
 * counting those established or closed by the peer only (CLOSE_WAIT: still the process's to close).
 * What a server's trace cannot show when the process dies unannounced, and what a server with no
 * trace (gunicorn) never says. A connection shared by several processes counts for each.
 */
export function connectionsHeld(pids: readonly number[], port: number): Map<number, number> {
  const owners = new Map<string, number[]>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone
    }
    for (const fd of fds) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode) owners.set(inode, [...(owners.get(inode) ?? []), pid]);
      } catch {
        // closed between listing and reading
      }
    }
  }
  const held = new Map<number, number>(pids.map((pid) => [pid, 0]));
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    // sl local_address rem_address st … inode: ports in hex; st 01 ESTABLISHED, 08 CLOSE_WAIT
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || (f[3] !== '01' && f[3] !== '08')) continue;
      if (parseInt(f[1]!.slice(f[1]!.lastIndexOf(':') + 1), 16) !== port) continue;
      for (const pid of owners.get(f[9]!) ?? []) held.set(pid, held.get(pid)! + 1);
    }
  }
  return held;
}

/** /proc/<pid>/stat's fields after the command name: state, ppid, pgrp, session, …; null when the process is gone. */
function statFields(pid: number): string[] | null {
  try {
    // "pid (comm) S ppid pgrp session …": the command may hold spaces and parentheses; the rest follows the last ')'
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The kernel's clock ticks a second (USER_HZ), which /proc's CPU times count in. */
let clockTicksPerSec: number | null = null;

/**
 * The CPU the process has used so far (user + system, all its threads), ms at the kernel's tick, and
 * its state letter (Z: exited, not yet reaped); null when it is gone.
 */
export function cpuOf(pid: number): { readonly cpuMs: number; readonly state: string } | null {
  const fields = statFields(pid);
  if (fields === null) return null;
  clockTicksPerSec ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  // After the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime.
  return { cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSec, state: fields[0]! };
}

/** The process's state letter (R, S, T for stopped …), or null when it is gone. */
export function processState(pid: number): string | null {
  return statFields(pid)?.[0] ?? null;
}

/**
 * Whether the process group of `pid` is orphaned: none of its members has a parent in another group of
 * the same session, init aside (a service under systemd, anything started with setsid, a job whose
 * shell has gone). The kernel discards TTIN, TTOU and TSTP sent to a process of such a group that has
 * no handler for them, where elsewhere their default action stops it (POSIX; signal(7)).
 */
export function processGroupOrphaned(pid: number = process.pid): boolean {
  const own = statFields(pid);
  if (!own) return false;
  const [, , group, session] = own;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const member = statFields(Number(entry));
    // As the kernel counts (kernel/exit.c): a zombie, and a child of init, tie no group to its session.
    if (!member || member[2] !== group || member[0] === 'Z' || member[1] === '1') continue;
    const parent = statFields(Number(member[1]));
    if (parent && parent[2] !== group && parent[3] === session) return false;
  }
  return true;
}

/** Whether `pid` is stopped (SIGSTOP) — or gone, which holds nothing either. */
export function isStopped(pid: number): boolean {
  const state = processState(pid);
  return state === null || state === 'T';
}

/**
 * Stop a server as a supervisor does: SIGTERM, then its graceful stop's time (gunicorn's default
 * graceful timeout is 30 s), then SIGKILL to it and every process below it.
 */
export async function stopGracefully(server: ServerProcess, waitMs = 35_000): Promise<void> {
  server.signal('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([server.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), waitMs)))]);
  clearTimeout(timer);
  if (!stopped) server.destroy();
}

/** Every process below `pid`. */
export function descendantsOf(pid: number): number[] {
  return childrenOf(pid).flatMap((c) => [c, ...descendantsOf(c)]);
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Whether something accepts connections there now. */
export function accepts(target: net.NetConnectOpts): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Does a server answer HTTP at `target` within `timeoutMs`? One `GET /` with `Connection: close`,
 * as a load balancer's health check: a server that binds before its workers have loaded the app
 * (gunicorn's arbiter) accepts the connection at once and answers once a worker takes it.
 */
export function answers(target: net.NetConnectOpts, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    const done = (answered: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => socket.write('GET / HTTP/1.1\r\nHost: quiesce\r\nConnection: close\r\n\r\n'));
    socket.once('data', (chunk: Buffer) => done(chunk.toString('latin1').startsWith('HTTP/1.')));
    socket.once('error', () => done(false));
    socket.once('end', () => done(false));
  });
}

export interface ServerProcess {
  readonly proc: ChildProcess;
  readonly pid: number;
  output(): string;
  /** Resolves with the exit code (or −signal) once the process exited. */
  readonly exited: Promise<number>;
  signal(signal: NodeJS.Signals): void;
  /** Kill it and every process below it (a server left behind by a failed run). */
  destroy(): void;
}

/** Start a server from an argv, capturing its output. */
export function startProcess(argv: readonly string[], options: { cwd?: string; env?: Record<string, string> } = {}): ServerProcess {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error('no command to start');
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd, env: { ...process.env, ...options.env } });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number>((resolve) => {
    proc.on('exit', (code, signal) => resolve(code ?? -(signal ? (constants.signals[signal] ?? 1) : 1)));
    proc.on('error', () => resolve(127));
  });
  return {
    proc,
    pid: proc.pid ?? -1,
    output: () => output,
    exited,
    signal: (signal) => {
      try {
        proc.kill(signal);
      } catch {
        // already gone
      }
    },
    destroy: () => {
      for (const pid of [...descendantsOf(proc.pid ?? -1), proc.pid ?? -1]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}
