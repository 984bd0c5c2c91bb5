/**
 * Scripted scenarios: a few clients and signals at given moments, the same
 * script for the simulator and for a real server (conformance/live.ts runs
 * it on real sockets and real processes). Scripts aim at the race windows —
 * a request on an idle keep-alive connection as the drain starts, a kill
 * with a request in flight — where a small difference between two
 * platforms would show.
 */
import type { ArbiterSignal } from '../model/driver/arbiter.ts';
import type { TraceEvent } from '../model/events.ts';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from '../model/params.ts';
import { makeHeader, type Trace } from '../model/trace.ts';
import { traceEvent } from '../model/host.ts';
import { hasReadClose } from '../model/views.ts';
import type { Link, LinkOwner } from './network.ts';
import { buildWorld } from './run.ts';

export type ScriptStep = { readonly atMs: number } & (
  /**
   * `keepsOpen`: a client that does not notice the server's close — it is not reading: it neither
   * closes its side nor stops writing (a later request goes out, unseen by its machine, which ended).
   */
  | { readonly do: 'connect'; readonly client: string; readonly keepsOpen?: boolean }
  /**
   * An HTTP/1.1 request on the client's connection whose handler takes `serviceMs`. With a request
   * still unanswered it is pipelined behind it (RFC 9112 §9.3.2); after a `Connection: close`
   * response the client sends nothing more on the connection.
   */
  | { readonly do: 'request'; readonly client: string; readonly serviceMs: number }
  /**
   * A POST whose body is larger than the server takes (Content-Length past its `max-body`; quiesce
   * serve's default, 1 MiB): its head and the first 64 KiB of its body. The server refuses it from its
   * head (413, Connection: close) while the rest is still to come, unread.
   */
  | { readonly do: 'too-large'; readonly client: string }
  /** Part of a request head, and nothing more (a slow client; slowloris). */
  | { readonly do: 'partial'; readonly client: string }
  /** A request whose head is whole and whose body is not: part of it now, the rest with `rest` (if ever). */
  | { readonly do: 'partial-body'; readonly client: string; readonly serviceMs: number }
  /** The rest of the body of the client's request sent with `partial-body`. */
  | { readonly do: 'rest'; readonly client: string }
  /** The client closes its connection. */
  | { readonly do: 'close'; readonly client: string }
  /** The client resets its connection (an abortive close: SO_LINGER 0, RST instead of FIN). */
  | { readonly do: 'reset'; readonly client: string }
  /** The client half-closes (shutdown(SHUT_WR): FIN) and goes on reading: it sends nothing more. */
  | { readonly do: 'half-close'; readonly client: string }
  | { readonly do: 'signal'; readonly signal: ArbiterSignal }
  /**
   * A signal to a worker process from outside: `worker` indexes the live workers, oldest first. SEGV
   * stands for a fault: the process dies of a signal nobody sent to stop it (a crash, `worker.crash`).
   * TERM, INT and QUIT are an operator's that reach the workers too (`pkill -f`, a Ctrl-C to the
   * process group), not the arbiter's own.
   */
  | { readonly do: 'signal-worker'; readonly worker: number; readonly signal: 'KILL' | 'STOP' | 'CONT' | 'SEGV' | 'TERM' | 'INT' | 'QUIT' }
);

export interface Script {
  readonly name: string;
  readonly description: string;
  /** The server's parameters beyond the defaults (the real server gets the matching flags). */
  readonly server: Partial<ServerParams>;
  /**
   * How long the app takes to load in a new worker, beyond a worker's boot (an import that does work:
   * gunicorn's load_wsgi, after the worker's signal handlers are in): the window in which a worker is
   * booting, for the signals that meet it there. The real server's app is told in QUIESCE_APP_LOAD_MS.
   */
  readonly appLoadMs?: number;
  readonly steps: readonly ScriptStep[];
}

/** The worker a `signal-worker` step aims at: its index among the live workers, oldest first, wrapping around. */
export function workerAt<T>(live: readonly T[], index: number): T | undefined {
  return live[index % Math.max(1, live.length)];
}

/** The server parameters a script runs with. */
export function scriptParams(script: Script): ServerParams {
  return { ...DEFAULT_SERVER_PARAMS, ...script.server };
}

/** The id of a client's n-th request (1-based): the same in both platforms (the real client sends it as X-Request-Id). */
export function requestId(client: string, n: number): string {
  return `${client}-${n}`;
}

/**
 * When the rest of a body too large follows its head. The client writes both at once; a real server
 * reads the head and answers it, and its next read finds the rest — before anything the client sends
 * in reply to the answer (well within a round trip, 2 × SCRIPT_NETWORK.latencyMs).
 */
const TOO_LARGE_REST_AFTER_MS = 0.01;

/** Simulated platform timings for scripts: a loopback network and a worker boot as long as a real one's. */
const SCRIPT_NETWORK = { latencyMs: 0.05, bootMs: 150, loopback: true } as const;

/** How long a simulated worker takes to boot under this script: a real one's boot, and its app's load. */
function bootMsOf(script: Script): number {
  return SCRIPT_NETWORK.bootMs + (script.appLoadMs ?? 0);
}

/** Run a script in the simulator: its complete trace. `params`: exactly these (a real run's, from its trace header). */
export function simulateScript(script: Script, policy: string, seed = 1, params: ServerParams = scriptParams(script)): Trace {
  const events: TraceEvent[] = [];
  const serviceOf = new Map<string, number>();
  /** Requests whose body is too large for the server: refused from their head. */
  const tooLarge = new Set<string>();
  const world = buildWorld(
    policy,
    seed,
    {
      server: params,
      load: { kind: 'ab', requests: 1, concurrency: 1, keepAlive: true, timeoutMs: Number.POSITIVE_INFINITY },
      ...SCRIPT_NETWORK,
      bootMs: bootMsOf(script),
      serviceMinMs: 0,
      serviceMaxMs: 0,
      // A drained worker closes its listener copy at once here, as the real server does.
      loopTickMs: 0,
      signals: [],
    },
    (t, actor, event) => events.push(traceEvent(t, actor, event)),
    (req) => serviceOf.get(req) ?? 0,
    undefined,
    (req) => tooLarge.has(req),
  );
  const links = new Map<string, Link>();
  const sent = new Map<string, number>();
  /** Requests a client wrote before its connect completed: the socket sends them once connected. */
  const unsent = new Map<Link, { req: string; partial: boolean }[]>();
  /** Each client's request whose body it has not finished sending. */
  const unfinished = new Map<string, string>();
  const { engine, network, server } = world;
  // Script clients do what a plain HTTP client does; the network records what they see.
  const owner: LinkOwner = {
    onConnected: (link) => {
      for (const { req, partial } of unsent.get(link) ?? []) network.send(link, req, true, Number.POSITIVE_INFINITY, partial);
      unsent.delete(link);
    },
    onResponse: () => {},
    onFailure: () => {},
    onIdleClosed: () => {},
  };
  server.boot();
  const startMs = bootMsOf(script) + 1;
  for (const step of script.steps) {
    engine.after(startMs + step.atMs, () => {
      switch (step.do) {
        case 'connect': {
          const link = network.connect(owner);
          if (step.keepsOpen) link.keepsOpen = true;
          links.set(step.client, link);
          unsent.set(link, []);
          return;
        }
        case 'request':
        case 'partial-body':
        case 'too-large': {
          const link = links.get(step.client);
          // A connection the server closed takes no more requests: the client would see the close first —
          // unless it is not reading: then the bytes go out, and its machine, which ended, sees nothing.
          if (link && link.clientDone && link.keepsOpen && !link.clientClosedSent) {
            const n = (sent.get(step.client) ?? 0) + 1;
            sent.set(step.client, n);
            network.sendUnseen(link, requestId(step.client, n));
            return;
          }
          // A client that read `Connection: close` opens a new connection for its next request; a script's sends nothing.
          if (!link || link.clientDone || hasReadClose(network.host, link.client)) return;
          const n = (sent.get(step.client) ?? 0) + 1;
          sent.set(step.client, n);
          const req = requestId(step.client, n);
          if (step.do === 'too-large') tooLarge.add(req);
          else serviceOf.set(req, step.serviceMs);
          const partial = step.do === 'partial-body';
          if (partial) unfinished.set(step.client, req);
          const waiting = unsent.get(link);
          if (waiting) waiting.push({ req, partial });
          else network.send(link, req, true, Number.POSITIVE_INFINITY, partial);
          // A body too large keeps coming after its head: the next of its bytes reach the server once it
          // has answered (a real server reads the head and what came with it in one read, the rest after).
          if (step.do === 'too-large') engine.after(TOO_LARGE_REST_AFTER_MS, () => network.sendRest(link, req));
          return;
        }
        case 'rest': {
          const link = links.get(step.client);
          const req = unfinished.get(step.client);
          if (!link || req === undefined || link.clientClosedSent) return;
          unfinished.delete(step.client);
          // Not connected yet: the socket sends the whole request once it is.
          const waiting = unsent.get(link)?.find((w) => w.req === req);
          if (waiting) waiting.partial = false;
          else network.sendRest(link, req);
          return;
        }
        case 'partial':
          // The server never has a whole head: for its machines the connection is still fresh.
          return;
        case 'close': {
          const link = links.get(step.client);
          if (link) network.close(link);
          return;
        }
        case 'reset': {
          const link = links.get(step.client);
          if (link) network.reset(link);
          return;
        }
        case 'half-close': {
          const link = links.get(step.client);
          if (link) network.halfClose(link);
          return;
        }
        case 'signal':
          server.signal(step.signal);
          return;
        case 'signal-worker': {
          const worker = workerAt(server.workerIds(), step.worker);
          if (worker === undefined) return;
          if (step.signal === 'SEGV') server.crashWorker(worker, 'SEGV');
          else server.signalWorker(worker, step.signal);
          return;
        }
      }
    });
  }
  engine.run({ maxVirtualMs: 3_600_000, maxSteps: 1_000_000 });
  return { header: makeHeader(policy, params, true, { script: script.name, seed, source: 'simulator' }), events };
}
