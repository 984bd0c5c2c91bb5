/**
 * Running the real server in tests: `quiesce serve` as a child process on
 * loopback (port 0 or a unix socket in a temp dir), and a small HTTP/1.1
 * client over raw sockets that reports exactly what came back (a response,
 * an EOF, an RST), which node:http would smooth over.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tcpState } from '../../conformance/live.ts';
import { childrenOf, tempDir, waitFor, workersOf } from '../../conformance/process.ts';

export { childrenOf, tempDir, waitFor };
import { afterEach, expect } from 'vitest';
import { replay } from '../../model/replay.ts';
import { parseTrace, type Trace } from '../../model/trace.ts';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = new URL('../../bin/quiesce.mjs', import.meta.url).pathname;

export interface RunningServer {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** `{ port }` or `{ path }`: what net.connect takes. */
  readonly target: net.NetConnectOpts;
  readonly address: string;
  readonly trace: string;
  readonly dir: string;
  output(): string;
  /** Resolves with the exit code once the arbiter exited. */
  readonly exited: Promise<number | null>;
  signal(signal: NodeJS.Signals): void;
  /** Worker PIDs: the arbiter's child processes. */
  workerPids(): number[];
}


/** Start `quiesce serve` with these flags (plus --bind and --trace unless given); resolves once it listens. */
export async function startServer(flags: string[], options: { unix?: boolean; timeoutMs?: number; env?: Record<string, string>; trace?: boolean } = {}): Promise<RunningServer> {
  const dir = tempDir();
  const trace = join(dir, 'trace.jsonl');
  const args = [BIN, 'serve', ...flags];
  if (!flags.includes('--bind')) args.push('--bind', options.unix ? `unix:${join(dir, 'app.sock')}` : '127.0.0.1:0');
  if (!flags.includes('--trace') && options.trace !== false) args.push('--trace', trace);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir, env: { ...process.env, ...options.env } });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within ${options.timeoutMs ?? 20_000} ms:\n${output}`)), options.timeoutMs ?? 20_000);
    const check = () => {
      const match = /listening at (\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    proc.stderr!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output}`));
    });
  });
  const target: net.NetConnectOpts = address.startsWith('unix:') ? { path: address.slice(5) } : { port: Number(/:(\d+)$/.exec(address)![1]), host: '127.0.0.1' };
  return {
    proc,
    pid: proc.pid!,
    target,
    address,
    trace,
    dir,
    output: () => output,
    exited,
    signal: (signal) => proc.kill(signal),
    workerPids: () => workersOf(proc.pid!),
  };
}

export function traceOf(server: RunningServer): Trace {
  return parseTrace(readFileSync(server.trace, 'utf8'));
}

/** The server's trace conforms to its policy's machines and promised properties, and is complete. */
export function expectConformingTrace(server: RunningServer): Trace {
  const trace = traceOf(server);
  const verdict = replay(trace);
  expect(verdict.ok ? 'ok' : verdict.violation.message).toBe('ok');
  expect(trace.header.complete).toBe(true);
  return trace;
}

/** Stop a server (TERM) and wait for it; KILL if it is still there after `waitMs`. */
export async function stopServer(server: RunningServer, waitMs = 15_000): Promise<number | null> {
  server.signal('SIGTERM');
  const timer = setTimeout(() => {
    server.signal('SIGKILL');
    for (const pid of server.workerPids()) process.kill(pid, 'SIGKILL');
  }, waitMs);
  const code = await server.exited;
  clearTimeout(timer);
  return code;
}

/** A worker process (the arbiter has other children: tsx's esbuild service). */
export interface Response {
  status: number;
  headers: Map<string, string>;
  body: string;
}

export type Outcome = { kind: 'response'; response: Response } | { kind: 'eof' } | { kind: 'reset' } | { kind: 'timeout' };

/** A client connection that sends requests one at a time and reports what happened to each. */
export class Client {
  private buffer = Buffer.alloc(0);
  private ended = false;
  private failure: 'reset' | null = null;
  private ports: { local: number; remote: number } | null = null;
  private wake: (() => void) | null = null;
  readonly socket: net.Socket;
  readonly connected: Promise<void>;

  /** `allowHalfOpen`: keep our side writable after the server's FIN (to see what a half-closed server does with more bytes). */
  constructor(target: net.NetConnectOpts, options: { allowHalfOpen?: boolean } = {}) {
    this.socket = net.connect({ ...target, allowHalfOpen: options.allowHalfOpen ?? false });
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    // Read at connect: a socket the peer reset has no peer name left to ask for.
    this.socket.once('connect', () => {
      if (this.socket.localPort !== undefined && this.socket.remotePort !== undefined) this.ports = { local: this.socket.localPort, remote: this.socket.remotePort };
    });
    this.socket.on('data', (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.wake?.();
    });
    this.socket.on('end', () => {
      // Node reports an RST that comes with unread bytes as EOF; the kernel's table knows (conformance/live.ts).
      if (this.ports !== null && tcpState(this.ports.local, this.ports.remote) === 'gone') this.failure = 'reset';
      this.ended = true;
      this.wake?.();
    });
    this.socket.on('error', () => {
      this.failure = 'reset';
      this.wake?.();
    });
    this.socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  send(raw: string | Buffer): void {
    this.socket.write(raw);
  }

  /** Send a GET and wait for its outcome. */
  async get(path: string, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<Outcome> {
    const lines = [`GET ${path} HTTP/1.1`, 'Host: localhost', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    this.send(lines.join('\r\n') + '\r\n\r\n');
    return this.next(timeoutMs);
  }

  /** Wait for the next response (or what ended the connection instead). */
  async next(timeoutMs = 10_000): Promise<Outcome> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const response = this.take();
      if (response) return { kind: 'response', response };
      if (this.failure) return { kind: 'reset' };
      if (this.ended) return { kind: 'eof' };
      const left = deadline - Date.now();
      if (left <= 0) return { kind: 'timeout' };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** Whether an RST (or another socket error) ended the connection. */
  get resetSeen(): boolean {
    return this.failure !== null;
  }

  /** Whether the server has closed its side (EOF or RST seen). */
  get closedByPeer(): boolean {
    return this.ended || this.failure !== null;
  }

  close(): void {
    this.socket.destroy();
  }

  private take(): Response | null {
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end === -1) return null;
    const head = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(head[0]!.split(' ')[1]);
    const headers = new Map<string, string>();
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get('content-length') ?? 0);
    if (this.buffer.length < end + 4 + length) return null;
    const body = this.buffer.subarray(end + 4, end + 4 + length).toString();
    this.buffer = this.buffer.subarray(end + 4 + length);
    return { status, headers, body };
  }
}

/** Connect, send raw bytes, and collect everything until the server closes (or the timeout). */
export async function rawExchange(target: net.NetConnectOpts, raw: string | Buffer, timeoutMs = 5000): Promise<{ data: string; ending: 'eof' | 'reset' | 'timeout' }> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data, ending: 'timeout' });
    }, timeoutMs);
    socket.on('connect', () => socket.write(raw));
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('end', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ data, ending: 'eof' });
    });
    socket.on('error', () => {
      clearTimeout(timer);
      resolve({ data, ending: 'reset' });
    });
  });
}

/** Try to connect; resolves with the error code, or 'connected'. */
export function tryConnect(target: net.NetConnectOpts): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
  });
}

/**
 * Servers a test file starts, stopped after each test if the test did not: call once at the top of
 * the file; `serve(flags)` starts one.
 */
export function serversStoppedAfterEach(): (flags: string[], options?: Parameters<typeof startServer>[1]) => Promise<RunningServer> {
  const running: RunningServer[] = [];
  afterEach(async () => {
    for (const server of running.splice(0)) if (server.proc.exitCode === null) await stopServer(server);
  });
  return async (flags, options) => {
    const server = await startServer(flags, options);
    running.push(server);
    return server;
  };
}
