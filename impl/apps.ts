/**
 * Apps the worker serves. An app is a function from a parsed request to a
 * response; it may be async. What a worker takes on while an app runs is its
 * machine's to say: under the sync policy a busy worker accepts nothing, so
 * the kernel's accept queue fills as it does behind gunicorn — and, as in
 * gunicorn's sync worker (Python runs signal handlers while it sleeps), a
 * signal is taken during the request, not after it.
 *
 * A user's module (`--app ./handler.js`) exports a default function
 * `(request) => response | Promise<response>` with `request` as below and
 * `response = { status, headers?, body? }`.
 */
import { appendFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { HttpRequest, HttpResponse } from './http.ts';

export interface AppRequest extends HttpRequest {
  /** X-Request-Id, or the id the worker gave the request. */
  readonly requestId: string;
  /** The peer's address (WSGI's REMOTE_ADDR and REMOTE_PORT); null over a unix socket. */
  readonly remote: { readonly address: string; readonly port: number } | null;
}

export interface AppContext {
  /** Where `counter` records what it processed. */
  readonly counterLog: string;
}

export type App = (request: AppRequest, context: AppContext) => HttpResponse | Promise<HttpResponse>;

export const BUILTIN_APPS = ['hello', 'sleep', 'echo', 'counter'] as const;
export type BuiltinApp = (typeof BUILTIN_APPS)[number];

/** The longest `sleep` a request may ask for: a bound on what one request can hold a worker. */
export const MAX_SLEEP_MS = 600_000;

const hello: App = () => ({ status: 200, headers: { 'Content-Type': 'text/plain' }, body: 'Hello, world!\n' });

const sleep: App = async (request) => {
  const raw = request.query.get('ms') ?? '0';
  if (!/^\d+$/.test(raw) || Number(raw) > MAX_SLEEP_MS) {
    return { status: 400, headers: { 'Content-Type': 'text/plain' }, body: `ms must be an integer from 0 to ${MAX_SLEEP_MS}, got ${JSON.stringify(raw.slice(0, 40))}\n` };
  }
  const ms = Number(raw);
  await new Promise((done) => setTimeout(done, ms));
  return { status: 200, headers: { 'Content-Type': 'text/plain' }, body: `slept ${ms} ms\n` };
};

const echo: App = (request) => ({
  status: 200,
  headers: { 'Content-Type': request.headers.get('content-type') ?? 'application/octet-stream' },
  body: request.body,
});

/**
 * A non-idempotent side effect: each request appends its id to the counter
 * log before the response is written, so a test can compare what the server
 * processed with what the client received.
 */
const counter: App = (request, context) => {
  appendFileSync(context.counterLog, `${request.requestId}\n`);
  // A body of fixed length (ab counts a differing length as a failure); the id travels in a header.
  return { status: 200, headers: { 'Content-Type': 'text/plain', 'X-Request-Id': request.requestId }, body: 'counted\n' };
};

const BUILTINS: Record<BuiltinApp, App> = { hello, sleep, echo, counter };

export function isBuiltinApp(name: string): name is BuiltinApp {
  return (BUILTIN_APPS as readonly string[]).includes(name);
}

export class AppLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AppLoadError';
  }
}

/** A built-in app by name, or a module path (relative to `cwd`) whose default export is the handler. */
/** How a module is imported: the caller's own `import()` (a worker's comes from its boot script, see worker-boot.cjs). */
export type ImportModule = (specifier: string) => Promise<unknown>;

export async function loadApp(spec: string, cwd: string, importModule: ImportModule = (specifier) => import(specifier)): Promise<App> {
  if (isBuiltinApp(spec)) return BUILTINS[spec];
  const path = resolve(cwd, spec);
  let module: { default?: unknown };
  try {
    // A TypeScript handler goes through tsx, as the project's own sources do.
    if (/\.[cm]?tsx?$/.test(path)) {
      const tsx = (await importModule('tsx/esm/api')) as typeof import('tsx/esm/api');
      module = (await tsx.tsImport(pathToFileURL(path).href, import.meta.url)) as { default?: unknown };
    } else module = (await importModule(pathToFileURL(path).href)) as { default?: unknown };
  } catch (error) {
    throw new AppLoadError(`cannot load app ${spec}: ${(error as Error).message.split('\n')[0]}`);
  }
  // A TypeScript module compiled as CommonJS arrives wrapped once more: { default: { default: handler } }.
  const inner = module.default as { default?: unknown } | undefined;
  if (typeof module.default !== 'function' && typeof inner?.default === 'function') module = inner;
  if (typeof module.default !== 'function') throw new AppLoadError(`app ${spec} has no default export function (request) => response`);
  const handler = module.default as (request: AppRequest) => HttpResponse | Promise<HttpResponse>;
  return (request) => handler(request);
}
