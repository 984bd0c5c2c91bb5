/**
 * The simulator, in a Web Worker: the very code `npm run simulate` runs,
 * with the same scenario defaults and overrides. It posts progress, then
 * the run — its trace, the CLI's JSON summary, and each failure's mechanism.
 */
import type { TraceEvent } from '../../model/events.ts';
import { runScenario } from '../../simulator/run.ts';
import { tableCell, toJson } from '../../simulator/report.ts';
import { getScenario, type ScenarioParams } from '../../simulator/scenarios.ts';

export interface SimRequest {
  readonly id: number;
  /** A whole run (its trace for the timeline), or only its cell of the seed table. */
  readonly mode: 'run' | 'cell';
  readonly scenario: string;
  readonly policy: string;
  readonly seed: number;
  /** Server parameter overrides, in the CLI's units (seconds for times). */
  readonly overrides: { workers?: number; threads?: number; keepalive?: number; gracefulTimeout?: number; maxRequests?: number };
}

export type SimMessage =
  | { readonly id: number; readonly kind: 'progress'; readonly fraction: number }
  | { readonly id: number; readonly kind: 'done'; readonly events: TraceEvent[]; readonly header: unknown; readonly summary: unknown; readonly mechanisms: [string, string][] }
  | { readonly id: number; readonly kind: 'cell'; readonly cell: string; readonly reported: number; readonly failed: number }
  | { readonly id: number; readonly kind: 'error'; readonly message: string };

function paramsFor(request: SimRequest): ScenarioParams {
  const p = structuredClone(getScenario(request.scenario).params);
  const o = request.overrides;
  if (o.workers !== undefined) p.server.workers = o.workers;
  if (o.threads !== undefined) p.server.threads = o.threads;
  if (o.keepalive !== undefined) p.server.keepAliveMs = o.keepalive * 1000;
  if (o.gracefulTimeout !== undefined) p.server.gracefulTimeoutMs = o.gracefulTimeout * 1000;
  if (o.maxRequests !== undefined) p.server.maxRequests = o.maxRequests;
  return p;
}

self.onmessage = (message: MessageEvent<SimRequest>) => {
  const request = message.data;
  try {
    const params = paramsFor(request);
    if (request.mode === 'cell') {
      const result = runScenario({ scenario: request.scenario, policy: request.policy, seed: request.seed, params });
      (self as unknown as Worker).postMessage({ id: request.id, kind: 'cell', cell: tableCell(result), reported: result.stats.ab.failed, failed: result.stats.failed } satisfies SimMessage);
      return;
    }
    const events: TraceEvent[] = [];
    const total = params.load.kind === 'ab' ? params.load.requests : 0;
    let lastPost = 0;
    const result = runScenario({
      scenario: request.scenario,
      policy: request.policy,
      seed: request.seed,
      params,
      onEvent: (e) => events.push(e),
      onProgress: (_virtualMs, _events, done) => {
        const now = performance.now();
        if (total > 0 && now - lastPost > 100) {
          lastPost = now;
          (self as unknown as Worker).postMessage({ id: request.id, kind: 'progress', fraction: done / total } satisfies SimMessage);
        }
      },
    });
    const mechanisms: [string, string][] = result.stats.records.map((r) => [`${r.client}@${r.atMs}`, r.mechanism]);
    (self as unknown as Worker).postMessage({ id: request.id, kind: 'done', events, header: result.header, summary: toJson(result), mechanisms } satisfies SimMessage);
  } catch (error) {
    (self as unknown as Worker).postMessage({ id: request.id, kind: 'error', message: error instanceof Error ? error.message : String(error) } satisfies SimMessage);
  }
};
