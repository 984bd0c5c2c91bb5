/**
 * `quiesce serve` configuration: one table of options, used for the command
 * line flags, the JSON config file (same keys as the flags) and the
 * validation of both. Defaults and meanings follow gunicorn where it has the
 * option (config.py); flags given on the command line win over the file.
 */
import { readFileSync } from 'node:fs';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from '../model/params.ts';
import { getPolicy } from '../model/policies.ts';
import { UnknownPolicyError } from '../model/policies.ts';
import { BOUNDS, checkNumber, type BoundName } from '../model/limits.ts';
import { TRACE_SCOPES, type TraceScope } from '../model/trace.ts';

/** The arbiter's loop turn in the real server (see serverParamsOf). */
export const ARBITER_TICK_MS = 250;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Bind = { family: 'tcp'; host: string; port: number } | { family: 'unix'; path: string };

export interface ServeConfig {
  bind: Bind;
  workers: number;
  threads: number;
  workerConnections: number;
  keepaliveS: number;
  timeoutS: number;
  gracefulTimeoutS: number;
  maxRequests: number;
  maxRequestsJitter: number;
  backlog: number;
  policy: string;
  app: string;
  idleGraceS: number;
  lingerS: number;
  headerTimeoutS: number;
  maxBodyBytes: number;
  trace: string | null;
  traceEvents: TraceScope;
  pid: string | null;
  counterLog: string;
}

type Kind = { type: 'number'; bound: BoundName } | { type: 'string' } | { type: 'choice'; values: readonly string[] };

export interface OptionSpec {
  /** The flag without dashes, and the config file key. */
  readonly name: string;
  readonly key: keyof ServeConfig;
  readonly kind: Kind;
  readonly placeholder: string;
  readonly description: string;
}

export const SERVE_OPTIONS: readonly OptionSpec[] = [
  { name: 'bind', key: 'bind', kind: { type: 'string' }, placeholder: 'address', description: 'HOST:PORT or unix:PATH (default 127.0.0.1:8000)' },
  { name: 'workers', key: 'workers', kind: { type: 'number', bound: 'workers' }, placeholder: 'n', description: 'worker processes (default 1)' },
  { name: 'threads', key: 'threads', kind: { type: 'number', bound: 'threads' }, placeholder: 'n', description: 'requests a worker serves at once (default 1)' },
  { name: 'worker-connections', key: 'workerConnections', kind: { type: 'number', bound: 'workerConnections' }, placeholder: 'n', description: 'connections a worker holds; at the limit it stops accepting (default 1000)' },
  { name: 'keepalive', key: 'keepaliveS', kind: { type: 'number', bound: 'seconds' }, placeholder: 's', description: 'idle keep-alive timeout; 0 disables keep-alive (default 2)' },
  { name: 'timeout', key: 'timeoutS', kind: { type: 'number', bound: 'seconds' }, placeholder: 's', description: 'a worker silent this long is killed and replaced; 0 disables (default 30)' },
  { name: 'graceful-timeout', key: 'gracefulTimeoutS', kind: { type: 'number', bound: 'seconds' }, placeholder: 's', description: 'how long a stop or reload waits before SIGKILL (default 30)' },
  { name: 'max-requests', key: 'maxRequests', kind: { type: 'number', bound: 'maxRequests' }, placeholder: 'n', description: 'recycle a worker after this many requests; 0 disables (default 0)' },
  { name: 'max-requests-jitter', key: 'maxRequestsJitter', kind: { type: 'number', bound: 'maxRequestsJitter' }, placeholder: 'n', description: 'add 0..n to each worker\'s max-requests (default 0)' },
  { name: 'backlog', key: 'backlog', kind: { type: 'number', bound: 'backlog' }, placeholder: 'n', description: 'listen(2) backlog, capped by net.core.somaxconn (default 2048)' },
  { name: 'policy', key: 'policy', kind: { type: 'string' }, placeholder: 'name', description: 'shutdown policy, see `quiesce policies` (default safe-drain)' },
  { name: 'app', key: 'app', kind: { type: 'string' }, placeholder: 'app', description: 'hello | sleep | echo | counter | a module path (default hello)' },
  { name: 'idle-grace', key: 'idleGraceS', kind: { type: 'number', bound: 'seconds' }, placeholder: 's', description: 'idle window for one more request while draining (idle-grace, safe-drain; default 1)' },
  { name: 'linger', key: 'lingerS', kind: { type: 'number', bound: 'seconds' }, placeholder: 's', description: 'lingering close: read and discard at most this long (default 2)' },
  { name: 'header-timeout', key: 'headerTimeoutS', kind: { type: 'number', bound: 'headerTimeoutSeconds' }, placeholder: 's', description: 'close a new connection whose request head has not arrived by then (default 10)' },
  { name: 'max-body', key: 'maxBodyBytes', kind: { type: 'number', bound: 'maxBodyBytes' }, placeholder: 'bytes', description: 'largest request body; more gets 413 (default 1048576)' },
  { name: 'trace', key: 'trace', kind: { type: 'string' }, placeholder: 'file', description: "write every process's events to this JSONL trace (the model's format)" },
  {
    name: 'trace-events',
    key: 'traceEvents',
    kind: { type: 'choice', values: TRACE_SCOPES },
    placeholder: 'which',
    description: "all (default: replayable against the machines) | lifecycle (the processes' own events — boots, signals, last turns, listener closes, exits — cheap enough under load; not replayable)",
  },
  { name: 'pid', key: 'pid', kind: { type: 'string' }, placeholder: 'file', description: "write the arbiter's PID to this file" },
  { name: 'counter-log', key: 'counterLog', kind: { type: 'string' }, placeholder: 'file', description: 'where the counter app appends request ids (default quiesce-counter.log)' },
];

export const DEFAULT_CONFIG: ServeConfig = {
  bind: { family: 'tcp', host: '127.0.0.1', port: 8000 },
  workers: 1,
  threads: 1,
  workerConnections: DEFAULT_SERVER_PARAMS.workerConnections,
  keepaliveS: 2,
  timeoutS: 30,
  gracefulTimeoutS: 30,
  maxRequests: 0,
  maxRequestsJitter: 0,
  backlog: 2048,
  policy: 'safe-drain',
  app: 'hello',
  idleGraceS: 1,
  lingerS: 2,
  headerTimeoutS: 10,
  maxBodyBytes: 1024 * 1024,
  trace: null,
  traceEvents: 'all',
  pid: null,
  counterLog: 'quiesce-counter.log',
};

export function parseBind(text: string): Bind {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path === '') throw new ConfigError(`bind: expected unix:PATH, got "${text}"`);
    return { family: 'unix', path };
  }
  const bracketed = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(text);
  const plain = /^([^:\s]*):(\d+)$/.exec(text);
  const match = bracketed ?? plain;
  if (!match) throw new ConfigError(`bind: expected HOST:PORT, [IPV6]:PORT or unix:PATH, got "${text}"`);
  const port = Number(match[2]);
  if (port > 65_535) throw new ConfigError(`bind: port must be 0–65535, got ${match[2]}`);
  return { family: 'tcp', host: match[1] === '' ? '0.0.0.0' : match[1]!, port };
}

function parseValue(spec: OptionSpec, raw: unknown, source: string): unknown {
  const where = source === '--' ? `--${spec.name}` : `${source} ${spec.name}`;
  if (spec.key === 'bind') {
    if (typeof raw !== 'string') throw new ConfigError(`${where}: expected a string like "127.0.0.1:8000" or "unix:/run/app.sock"`);
    return parseBind(raw);
  }
  const kind = spec.kind;
  if (kind.type === 'choice') {
    if (typeof raw !== 'string' || !kind.values.includes(raw)) throw new ConfigError(`${where}: expected one of ${kind.values.join(', ')}, got ${JSON.stringify(raw)}`);
    return raw;
  }
  if (kind.type === 'string') {
    if (typeof raw !== 'string' || raw === '') throw new ConfigError(`${where}: expected a non-empty string`);
    return raw;
  }
  const checked = checkNumber(raw, BOUNDS[kind.bound], source === '--' ? 'text' : 'json');
  if ('expected' in checked) throw new ConfigError(`${where}: expected ${checked.expected}, got ${JSON.stringify(raw)}`);
  return checked.value;
}

/** Read a JSON config file: an object whose keys are option names (`"graceful-timeout": 10`). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file "${path}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config file "${path}" is not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`config file "${path}": expected a JSON object of options`);
  const known = new Set(SERVE_OPTIONS.map((o) => o.name));
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new ConfigError(`config file "${path}": unknown option "${key}"; expected one of ${[...known].join(', ')}`);
  }
  return parsed as Record<string, unknown>;
}

/** Defaults, then the file, then the flags; every value validated. */
export function resolveConfig(flags: Record<string, unknown>, file: Record<string, unknown> = {}, filePath = 'config'): ServeConfig {
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const spec of SERVE_OPTIONS) {
    if (file[spec.name] !== undefined) config[spec.key] = parseValue(spec, file[spec.name], `${filePath}:`);
    if (flags[spec.name] !== undefined) config[spec.key] = parseValue(spec, flags[spec.name], '--');
  }
  const result = config as unknown as ServeConfig;
  try {
    getPolicy(result.policy);
  } catch (error) {
    if (error instanceof UnknownPolicyError) throw new ConfigError(`policy: ${error.message}`);
    throw error;
  }
  if (result.maxRequestsJitter > 0 && result.maxRequests === 0) throw new ConfigError('max-requests-jitter needs max-requests > 0');
  if (result.traceEvents !== 'all' && result.trace === null) throw new ConfigError(`trace-events ${result.traceEvents} needs trace (the file to write)`);
  return result;
}

/** net.core.somaxconn, which caps every listen(2) backlog. */
export function readSomaxconn(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
  } catch {
    return 4096; // Linux ≥ 5.4's default
  }
}

/** The model's parameters for this configuration: what the trace header records and the machines decide by. */
export function serverParamsOf(config: ServeConfig, somaxconn: number): ServerParams {
  return {
    workers: config.workers,
    threads: config.threads,
    workerConnections: config.workerConnections,
    keepAliveMs: config.keepaliveS * 1000,
    timeoutMs: config.timeoutS * 1000,
    gracefulTimeoutMs: config.gracefulTimeoutS * 1000,
    maxRequests: config.maxRequests,
    maxRequestsJitter: config.maxRequestsJitter,
    idleGraceMs: config.idleGraceS * 1000,
    lingerMs: config.lingerS * 1000,
    // A worker notifies at least four times per timeout (gunicorn notifies every loop turn, ≤ 1 s).
    heartbeatIntervalMs: config.timeoutS > 0 ? Math.min(1000, (config.timeoutS * 1000) / 4) : 1000,
    // The arbiter's loop turns four times a second (gunicorn's: once): a silent worker is aborted
    // within --timeout + 0.5 s and killed a quarter second later — replaced within --timeout + 1 s.
    arbiterTickMs: ARBITER_TICK_MS,
    headerTimeoutMs: config.headerTimeoutS * 1000,
    // gthread's poll timeout, for the policy whose drain waits out a last loop turn.
    selectTimeoutMs: DEFAULT_SERVER_PARAMS.selectTimeoutMs,
    backlog: config.backlog,
    somaxconn,
    family: config.bind.family,
  };
}
