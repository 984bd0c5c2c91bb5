/**
 * The verdict on one run of a script against our own server, from three
 * independent witnesses. Each can be fooled alone; together they are the
 * conformance suite's judge (and the mutation score's):
 *
 * - the trace: the server's own statement, replayed through the policy's
 *   machines, timers included (a timer early, late or never fired fails);
 * - the wire: the trace held against what the clients saw, connection by
 *   connection (conformance/wire.ts) — a server that lies in its trace;
 * - the clients: what they saw against what the policy's simulated clients
 *   see under the same script (conformance/blackbox.ts) — a server whose
 *   trace and wire agree, and are both wrong.
 */
import type { TraceEvent } from '../model/events.ts';
import { replay } from '../model/replay.ts';
import { simulateScript, type Script } from '../simulator/script.ts';
import { clientView, firstDifference } from './blackbox.ts';
import type { LiveRun } from './live.ts';
import { wireAgreement } from './wire.ts';

export type Witness = 'trace' | 'wire' | 'clients';

export interface Finding {
  readonly witness: Witness;
  readonly message: string;
}

/** Every finding against the run, from every witness; empty when the run conforms. The known wire divergence is not one. */
export function judgeRun(script: Script, policy: string, run: LiveRun): Finding[] {
  const findings: Finding[] = [];
  const verdict = replay(run.trace);
  if (!verdict.ok) findings.push({ witness: 'trace', message: `the server's trace does not conform to ${policy}: ${verdict.violation.message}` });
  const known = new Set<string>();
  for (const m of wireAgreement(run.trace, run.observed)) {
    if (m.known) known.add(m.client);
    else findings.push({ witness: 'wire', message: `the wire contradicts the server's trace: ${m.message}` });
  }
  const predicted = clientView(simulateScript(script, policy, 1, run.trace.header.params).events);
  const difference = firstDifference(clientView(run.observed.map((e) => (known.has(e.actor) ? asTheTraceSays(e) : e))), predicted);
  if (difference !== null) findings.push({ witness: 'clients', message: `what the clients saw is not what ${policy} lets them see: ${difference}` });
  return findings;
}

/**
 * What a client of the known divergence (wire.ts: a killed worker's connection whose request our
 * server had read into memory) would have seen had the kernel reset it, as the trace and the model
 * say: ECONNRESET where the FIN gave an empty reply or a clean EOF. Only the wire witness's own
 * known finding puts a client here, so this excuses nothing else.
 */
function asTheTraceSays(e: TraceEvent): TraceEvent {
  if (e.type === 'client.fail' && e.reason === 'empty-reply') return { ...e, reason: 'reset' };
  if (e.type === 'client.eof') return { t: e.t, actor: e.actor, type: 'client.fail', reason: 'reset' };
  return e;
}
