/**
 * Running a script (simulator/script.ts) against a real `quiesce serve`: the
 * same clients and signals at the same moments, on real sockets and real
 * processes. Each script client is a raw socket that behaves as the
 * simulator's client does — it sends whole requests (with the script's
 * request id as X-Request-Id), reads responses, and closes its side when
 * the server closes — and records what it sees in the model's client
 * vocabulary: connected, a response and its Connection header, an EOF, an
 * RST.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { ClientFailure, TraceEvent } from '../model/events.ts';
import type { ServerParams } from '../model/params.ts';
import { parseTrace, type Trace } from '../model/trace.ts';
import { requestId, scriptParams, workerAt, type Script } from '../simulator/script.ts';
import { processState, workersOf, QUIESCE_BIN, startProcess, tempDir, type ServerProcess } from './process.ts';

/** `quiesce serve` flags for a script's parameters (what the simulator runs with is then read from the real trace's header). */
export function serveFlags(server: Partial<ServerParams>): string[] {
  const seconds = (ms: number) => String(ms / 1000);
  const flags: string[] = [];
  const add = (flag: string, value: number | undefined, as: (v: number) => string = String) => {
    if (value !== undefined) flags.push(flag, as(value));
  };
  add('--workers', server.workers);
  add('--threads', server.threads);
  add('--worker-connections', server.workerConnections);
  add('--keepalive', server.keepAliveMs, seconds);
  add('--timeout', server.timeoutMs, seconds);
  add('--graceful-timeout', server.gracefulTimeoutMs, seconds);
  add('--max-requests', server.maxRequests);
  add('--max-requests-jitter', server.maxRequestsJitter);
  add('--idle-grace', server.idleGraceMs, seconds);
  add('--linger', server.lingerMs, seconds);
  add('--backlog', server.backlog);
  if (server.headerTimeoutMs !== undefined && server.headerTimeoutMs > 0) add('--header-timeout', server.headerTimeoutMs, seconds);
  return flags;
}

export interface LiveRun {
  /** The server's own trace. */
  readonly trace: Trace;
  /** What the script's clients saw, in the model's vocabulary, on the runner's clock. */
  readonly observed: readonly TraceEvent[];
  readonly exitCode: number;
  readonly output: string;
}

/** A script request: the app sleeps `serviceMs`; the id links the trace's request to the wire's. With a body: a POST of that length. */
const requestHead = (req: string, serviceMs: number, bodyBytes = 0) =>
  bodyBytes === 0
    ? `GET /?ms=${serviceMs} HTTP/1.1\r\nHost: quiesce\r\nX-Request-Id: ${req}\r\n\r\n`
    : `POST /?ms=${serviceMs} HTTP/1.1\r\nHost: quiesce\r\nX-Request-Id: ${req}\r\nContent-Length: ${bodyBytes}\r\n\r\n`;
/** The body of a request sent in two parts (`partial-body`, then `rest`). */
const BODY = 'quiesce-body';

/**
 * A body too large (`too-large`): the length its head declares, past any server's default limit
 * (quiesce serve's is 1 MiB; the command's `{max-body}` is SCRIPT_MAX_BODY_BYTES), and what of it the
 * client writes at once — more than a server reads ahead of a refused head, little enough that the
 * kernel takes it in one write (so that the client is reading, not writing, when the server answers).
 */
export const TOO_LARGE_DECLARED_BYTES = 64 * 1024 * 1024;
const TOO_LARGE_SENT_BYTES = 64 * 1024;

/**
 * What the kernel's TCP tables say of a connection (Linux, IPv4 and IPv6): `gone` when they have no
 * entry for it — reset, or closed by this side —, `present` otherwise; `unknown` where there is no
 * /proc/net/tcp to read.
 */
export function tcpState(localPort: number, remotePort: number): 'present' | 'gone' | 'unknown' {
  let table: string;
  try {
    table = readFileSync('/proc/net/tcp', 'latin1');
  } catch {
    return 'unknown';
  }
  try {
    table += readFileSync('/proc/net/tcp6', 'latin1');
  } catch {
    // No IPv6: the IPv4 table is the whole story.
  }
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  const local = `:${hex(localPort)} `;
  const remote = `:${hex(remotePort)} `;
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length > 3 && `${fields[1]} `.endsWith(local) && `${fields[2]} `.endsWith(remote)) return 'present';
  }
  return 'gone';
}

/** One script client: a raw socket that records what happens to it. */
export class ScriptClient {
  private socket: net.Socket | null = null;
  private buffer = Buffer.alloc(0);
  private outstanding: string[] = [];
  private sent = 0;
  private done = false;
  /** The last response said `Connection: close`: the client closes its side once the server's FIN comes. */
  private closing = false;
  private connected = false;
  /** The connection's TCP ports (none over a unix socket). */
  private ports: { local: number; remote: number } | null = null;

  constructor(
    readonly name: string,
    readonly actor: `client/${number}`,
    private readonly record: (event: Omit<TraceEvent, 't'>) => void,
  ) {}

  /** Does not notice the server's close (it is not reading): it neither closes its side nor stops writing. */
  keepsOpen = false;

  connect(target: net.NetConnectOpts): void {
    this.record({ actor: this.actor, type: 'client.connect' } as Omit<TraceEvent, 't'>);
    const socket = net.connect({ ...target, allowHalfOpen: true });
    this.socket = socket;
    socket.on('connect', () => {
      this.connected = true;
      // Read now: a socket the peer reset no longer has a peer name to ask for.
      if (socket.localPort !== undefined && socket.remotePort !== undefined) this.ports = { local: socket.localPort, remote: socket.remotePort };
      this.record({ actor: this.actor, type: 'client.connected' } as Omit<TraceEvent, 't'>);
      // What was written before the connect completed waited in the socket: it is sent now.
      for (const req of this.sentOnConnect.splice(0)) this.recordSend(req);
    });
    socket.on('data', (data: Buffer) => this.onData(data));
    // The server closed its side: like the simulator's client, see what was lost, then close ours.
    socket.on('end', () => this.onEnd());
    socket.on('error', (error: NodeJS.ErrnoException) => this.onError(error));
  }

  /** The rest of the body of a request sent with only part of it (`partial-body`), if any. */
  private unsentBody: string | null = null;

  /** A whole request; or, `partial`, its head and half its body (the rest goes with `rest()`). */
  request(serviceMs: number, partial = false): void {
    if (this.socket && this.done && this.keepsOpen && !this.socket.destroyed && this.socket.writable) {
      // It did not notice the close: the bytes go out; its machine, which ended, records nothing.
      this.socket.write(requestHead(requestId(this.name, ++this.sent), serviceMs));
      return;
    }
    // After a `Connection: close` response the client sends nothing more on this connection (as the simulator's).
    if (!this.socket || this.done || this.closing || this.socket.destroyed || this.socket.readableEnded) return;
    const req = this.nextRequest();
    if (!partial) {
      this.socket.write(requestHead(req, serviceMs));
      return;
    }
    const [head, body] = [requestHead(req, serviceMs, BODY.length), BODY];
    this.socket.write(head + body.slice(0, body.length / 2));
    this.unsentBody = body.slice(body.length / 2);
  }

  /** A POST whose declared body is larger than the server takes: its head and the first part of the body. */
  tooLarge(): void {
    if (!this.socket || this.done || this.closing || this.socket.destroyed || this.socket.readableEnded) return;
    const req = this.nextRequest();
    const head = `POST /?ms=0 HTTP/1.1\r\nHost: quiesce\r\nX-Request-Id: ${req}\r\nContent-Length: ${TOO_LARGE_DECLARED_BYTES}\r\n\r\n`;
    this.socket.write(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.alloc(TOO_LARGE_SENT_BYTES, 0x61)]));
  }

  /** The next request's id, outstanding now, and recorded as sent. */
  private nextRequest(): string {
    const req = requestId(this.name, ++this.sent);
    this.outstanding.push(req);
    // Node holds what is written before the connect completes; the client machine sends once connected (as the simulator's).
    if (!this.connected) this.sentOnConnect.push(req);
    else this.recordSend(req);
    return req;
  }

  private recordSend(req: string): void {
    this.record({ actor: this.actor, type: 'client.send', req, idempotent: true } as Omit<TraceEvent, 't'>);
  }

  /** Requests written before the connect completed: recorded as sent once it has. */
  private readonly sentOnConnect: string[] = [];

  rest(): void {
    if (!this.socket || this.unsentBody === null || this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(this.unsentBody);
    this.unsentBody = null;
  }

  partial(): void {
    if (!this.socket || this.done) return;
    this.socket.write('GET /?ms=0 HTTP/1.1\r\nHost: quie');
  }

  close(): void {
    if (!this.socket || this.done) return;
    this.done = true;
    this.record({ actor: this.actor, type: 'client.close' } as Omit<TraceEvent, 't'>);
    this.socket.end();
  }

  /** shutdown(SHUT_WR): FIN, and go on reading (the socket allows half-open); the client's machine sees nothing of it. */
  halfClose(): void {
    if (!this.socket || this.done) return;
    this.socket.end();
  }

  /** An abortive close (SO_LINGER 0): the kernel sends RST, not FIN, and forgets the socket. */
  reset(): void {
    if (!this.socket || this.done) return;
    this.done = true;
    this.record({ actor: this.actor, type: 'client.close' } as Omit<TraceEvent, 't'>);
    this.socket.resetAndDestroy();
  }

  destroy(): void {
    this.socket?.destroy();
  }

  private onData(data: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, data]);
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers = new Map(head.slice(1).map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()] as const));
      const length = Number(headers.get('content-length') ?? 0);
      if (this.buffer.length < end + 4 + length) return;
      this.buffer = this.buffer.subarray(end + 4 + length);
      const status = Number(head[0]!.split(' ')[1]);
      if (status === 100) continue;
      const req = this.outstanding.shift() ?? requestId(this.name, 0);
      const close = (headers.get('connection') ?? '').toLowerCase() === 'close';
      this.closing ||= close;
      this.record({ actor: this.actor, type: 'client.response', req, status, close } as Omit<TraceEvent, 't'>);
    }
  }

  private onEnd(): void {
    if (this.done) return;
    // An RST that comes with response bytes still unread is reported as EOF by Node (libuv ends a
    // partial read on POLLHUP without the read() that would return ECONNRESET). The kernel knows:
    // a connection the peer reset is gone from its table, one it FINed waits in CLOSE_WAIT.
    if (this.ports !== null && tcpState(this.ports.local, this.ports.remote) === 'gone') {
      return this.onError(Object.assign(new Error('reset by peer (seen as EOF by libuv; the kernel has no such connection)'), { code: 'ECONNRESET' }));
    }
    this.done = true;
    const req = this.outstanding.shift();
    if (req !== undefined) this.fail('empty-reply', req);
    else this.record({ actor: this.actor, type: 'client.eof' } as Omit<TraceEvent, 't'>);
    // Our side closes too (below). After a `Connection: close` response that is the client's own
    // close (the client chart waits for it there); on a kept-alive connection the EOF alone ends it.
    if (req === undefined && this.closing) this.record({ actor: this.actor, type: 'client.close' } as Omit<TraceEvent, 't'>);
    if (!this.keepsOpen) this.socket?.end();
  }

  private onError(error: NodeJS.ErrnoException): void {
    if (this.done) return;
    this.done = true;
    const reason: ClientFailure = error.code === 'ECONNREFUSED' || error.code === 'ENOENT' ? 'refused' : error.code === 'EAGAIN' ? 'eagain' : 'reset';
    // A connect that failed sent nothing: what was written waited in the socket (its machine never sent it).
    this.fail(reason, this.connected ? this.outstanding.shift() : undefined);
  }

  private fail(reason: ClientFailure, req: string | undefined): void {
    this.record({ actor: this.actor, type: 'client.fail', reason, ...(req !== undefined ? { req } : {}) } as Omit<TraceEvent, 't'>);
  }
}

/** A server the runner can start and stop: ours, or any command (conformance/blackbox.ts). */
export interface ServerUnderTest {
  /**
   * Start it with these parameters (a script's, a calibration's), in its own directory; the runner
   * signals it by its pid. `app.loadMs`: how long its app's import takes (QUIESCE_APP_LOAD_MS).
   */
  start(server: ServerParams, dir: string, app?: AppTiming): ServerProcess;
  /**
   * Where it accepts connections, once it does — or, with `ready: 'answers'`, once it answers a request:
   * a server that binds before its workers have loaded (gunicorn's arbiter) accepts at once.
   */
  listening(server: ServerProcess, timeoutMs: number, ready?: Readiness): Promise<net.NetConnectOpts>;
  /** Its worker processes, oldest first (for signals to a worker). */
  workers(server: ServerProcess): number[];
  /** The signal this server takes for a script's (nginx stops gracefully on QUIT, not TERM). */
  signalFor?(signal: string): string;
}

/**
 * When a run may begin: once the server accepts a connection, or once it has answered one request
 * (a health check's `GET /`, which the script does not see).
 */
export type Readiness = 'accepts' | 'answers';

/**
 * A script's steps are timed from its start: its first request must find a worker that has booted, or
 * a STOP 100 ms later can come before the response (a gunicorn worker beside another run booted in
 * 116 ms). So the run waits for an answer — except where the server counts requests toward
 * max-requests, whose script the health check's request would recycle one request early.
 */
export function readinessFor(script: Script): Readiness {
  return scriptParams(script).maxRequests === 0 || (script.appLoadMs ?? 0) > 0 ? 'answers' : 'accepts';
}

/** How the scripts' app behaves beyond each request's own time. */
export interface AppTiming {
  /** How long the app's import takes in a new worker, in ms. */
  readonly loadMs: number;
}

/** The environment that tells the scripts' app (sleep_app.py, conformance/apps/sleep-loading.ts) its timing. */
export function appEnv(app: AppTiming | undefined): Record<string, string> {
  return app && app.loadMs > 0 ? { QUIESCE_APP_LOAD_MS: String(app.loadMs) } : {};
}

export interface ScriptRun {
  /** What the script's clients saw, in the model's vocabulary, on the runner's clock. */
  readonly observed: readonly TraceEvent[];
  readonly exitCode: number;
  readonly output: string;
  readonly dir: string;
  /** The `signal-worker` steps that found no worker process to signal (the simulator skips them too), e.g. "at 100 ms, STOP to worker 0". */
  readonly noWorker: readonly string[];
  /**
   * Set when the server's own process was found stopped (state T) after the last step: it cannot exit,
   * so the run ended there rather than at the runner's deadline — and says which of the script's
   * signals stop a process that has no handler for them (TTIN, TTOU, TSTP: nginx has none).
   */
  readonly serverStopped: string | null;
}

/** Signals whose default action stops a process (signal(7)): a server without a handler for one is frozen by it. */
const STOPPING_SIGNALS = new Set(['TTIN', 'TTOU', 'TSTP', 'STOP']);

/** The one black-box runner: a script's clients and signals at their moments, against a real server process. */
export async function runScript(script: Script, sut: ServerUnderTest, options: { timeoutMs?: number } = {}): Promise<ScriptRun> {
  const dir = tempDir('quiesce-script-');
  const app: AppTiming = { loadMs: script.appLoadMs ?? 0 };
  const server = sut.start(scriptParams(script), dir, app);
  const observed: TraceEvent[] = [];
  const clients = new Map<string, ScriptClient>();
  const noWorker: string[] = [];
  try {
    const target = await sut.listening(server, options.timeoutMs ?? 20_000, readinessFor(script));
    const t0 = performance.now();
    const record = (event: Omit<TraceEvent, 't'>) => observed.push({ t: performance.now() - t0, ...event } as TraceEvent);
    const client = (name: string) => {
      let c = clients.get(name);
      if (!c) clients.set(name, (c = new ScriptClient(name, `client/${clients.size + 1}`, record)));
      return c;
    };
    for (const step of script.steps) {
      const wait = step.atMs - (performance.now() - t0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      switch (step.do) {
        case 'connect': {
          const c = client(step.client);
          c.keepsOpen = step.keepsOpen ?? false;
          c.connect(target);
          break;
        }
        case 'request':
          client(step.client).request(step.serviceMs);
          break;
        case 'partial':
          client(step.client).partial();
          break;
        case 'too-large':
          client(step.client).tooLarge();
          break;
        case 'partial-body':
          client(step.client).request(step.serviceMs, true);
          break;
        case 'rest':
          client(step.client).rest();
          break;
        case 'close':
          client(step.client).close();
          break;
        case 'reset':
          client(step.client).reset();
          break;
        case 'half-close':
          client(step.client).halfClose();
          break;
        case 'signal':
          server.signal(`SIG${sut.signalFor?.(step.signal) ?? step.signal}` as NodeJS.Signals);
          break;
        case 'signal-worker': {
          const pid = workerAt(sut.workers(server), step.worker);
          if (pid !== undefined) process.kill(pid, `SIG${step.signal}` as NodeJS.Signals);
          else noWorker.push(`at ${step.atMs} ms, ${step.signal} to worker ${step.worker}`);
          break;
        }
      }
    }
    const serverStopped = await exitOrStopped(server, options.timeoutMs ?? 20_000, script, sut);
    const exitCode = await server.exited;
    // Give the clients a moment to see what the last close sent them.
    await new Promise((r) => setTimeout(r, 50));
    return { observed, exitCode, output: server.output(), dir, noWorker, serverStopped };
  } finally {
    for (const c of clients.values()) c.destroy();
    server.destroy();
  }
}

/**
 * Waits for the server to exit, up to `timeoutMs`, then ends it. A server whose own process is stopped
 * (state T) cannot exit: it is ended at once, and the reason returned for the report. No script stops
 * the server's own process on purpose (its workers, yes); a signal the server has no handler for does.
 */
async function exitOrStopped(server: ServerProcess, timeoutMs: number, script: Script, sut: ServerUnderTest): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  const exited = server.exited.then(() => true);
  for (;;) {
    // Stopped, not gone: a process that exited is reaped before its exit is heard of.
    if (processState(server.pid) === 'T') {
      server.destroy();
      const sent = [...new Set(script.steps.flatMap((s) => (s.do === 'signal' ? [sut.signalFor?.(s.signal) ?? s.signal] : [])))].filter((signal) => STOPPING_SIGNALS.has(signal));
      const why = sent.length > 0 ? `: ${sent.join(' and ')} stop a process that has no handler for them` : '';
      return `the server's process was stopped (state T) after the script's last step${why}; a stopped process cannot exit, so the run ended there`;
    }
    const leftMs = deadline - Date.now();
    if (leftMs <= 0) {
      server.destroy();
      return null;
    }
    // Woken by the exit itself, or to look again.
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([exited, new Promise<false>((r) => (timer = setTimeout(() => r(false), Math.min(50, leftMs))))]);
    clearTimeout(timer);
    if (gone) return null;
  }
}

/** The built-in sleep app behind an import that takes QUIESCE_APP_LOAD_MS. */
const SLOW_LOADING_APP = new URL('./apps/sleep-loading.ts', import.meta.url).pathname;

/** `quiesce serve` under a policy, as a server under test: it also writes its own trace. */
function quiesceServe(policy: string, env: Record<string, string>): ServerUnderTest {
  return {
    start: (server, dir, app) =>
      startProcess(
        [process.execPath, QUIESCE_BIN, 'serve', '--bind', '127.0.0.1:0', '--policy', policy, '--app', app && app.loadMs > 0 ? SLOW_LOADING_APP : 'sleep', '--trace', join(dir, 'trace.jsonl'), ...serveFlags(server)],
        // The workers check after every connection event that their bookkeeping agrees with their machines.
        { cwd: dir, env: { QUIESCE_DEBUG: 'pairs', ...appEnv(app), ...env } },
      ),
    listening,
    workers: (server) => workersOf(server.pid),
  };
}

/** Run a script against `quiesce serve` under a policy: the server's trace and what the clients saw. */
export async function runScriptLive(script: Script, policy: string, options: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<LiveRun> {
  const run = await runScript(script, quiesceServe(policy, options.env ?? {}), options);
  return { trace: parseTrace(readFileSync(join(run.dir, 'trace.jsonl'), 'utf8')), observed: run.observed, exitCode: run.exitCode, output: run.output };
}

/** Where the server listens, once it says so. */
async function listening(server: ServerProcess, timeoutMs: number): Promise<net.NetConnectOpts> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = /listening at http:\/\/([^:\s]+):(\d+)/.exec(server.output());
    if (match) return { host: match[1]!, port: Number(match[2]) };
    if (server.proc.exitCode !== null) throw new Error(`the server exited before listening:\n${server.output()}`);
    if (Date.now() > deadline) throw new Error(`the server did not listen within ${timeoutMs} ms:\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Run `task` over `items`, `concurrency` at a time: each real server is a few processes, and the machine has few cores. */
export async function pool<T, R>(items: readonly T[], concurrency: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await task(items[i]!);
      }
    }),
  );
  return results;
}
