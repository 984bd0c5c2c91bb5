/**
 * Comparing two traces of the same scenario actor by actor: the sequence of
 * lifecycle events each actor went through, timestamps aside. What only one
 * platform can see is left out — the kernel's queue (a real server does not
 * see SYNs), the clients (a real server does not know them), heartbeats and
 * loop turns (their count is a matter of time), and a stop (SIGSTOP is not
 * seen by the stopped process). Nor is the order of workers that leave in
 * the same moment (orderedByTheKernel).
 */
import type { TraceEvent } from '../model/events.ts';
import type { Trace } from '../model/trace.ts';

const TIMING_ONLY = new Set(['worker.heartbeat', 'arbiter.heartbeat', 'arbiter.tick']);
const KERNEL_ONLY = new Set(['listener.syn', 'listener.overflow', 'listener.accept', 'listener.refuse', 'listener.reset']);

/** Whether both platforms see this event. */
function comparable(event: TraceEvent): boolean {
  if (event.actor.startsWith('client/')) return false;
  if (TIMING_ONLY.has(event.type) || KERNEL_ONLY.has(event.type)) return false;
  if (event.type === 'worker.signal' && (event.signal === 'STOP' || event.signal === 'CONT')) return false;
  return true;
}

/** An event as compared: its type and payload, without the time and the client's name (each platform names clients its own way). */
function signature(event: TraceEvent): string {
  const { t: _t, actor: _actor, type, ...payload } = event;
  if (event.type === 'conn.open') delete (payload as { client?: string }).client;
  const fields = Object.entries(payload)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${String(v)}`);
  return fields.length > 0 ? `${type} ${fields.join(' ')}` : type;
}

/**
 * Events whose order among themselves neither platform decides: workers that leave in the same moment (a
 * fast stop's QUIT to an idle worker and to a booting one) finish in the order the kernel schedules them,
 * and the arbiter reaps them, and the listening socket loses them as holders, in that order. The
 * simulator breaks the tie by its own event order. A run of such events in a row, of one type, is
 * compared as a set; anything between them (a spawn, a kill, the arbiter's own release of the listener)
 * still orders them.
 */
function orderedByTheKernel(event: TraceEvent): boolean {
  return event.type === 'arbiter.reap' || (event.type === 'listener.release' && event.holder.startsWith('worker/'));
}

/** Each actor's lifecycle, in trace order, but for runs of events the kernel orders (above), sorted. */
export function lifecycles(trace: Trace): Map<string, string[]> {
  const out = new Map<string, { list: string[]; runType: string | undefined; runFrom: number }>();
  for (const event of trace.events) {
    if (!comparable(event)) continue;
    let actor = out.get(event.actor);
    if (!actor) out.set(event.actor, (actor = { list: [], runType: undefined, runFrom: 0 }));
    const kernelOrdered = orderedByTheKernel(event);
    if (!kernelOrdered || actor.runType !== event.type) {
      actor.runType = kernelOrdered ? event.type : undefined;
      actor.runFrom = actor.list.length;
    }
    actor.list.push(signature(event));
    if (kernelOrdered) sortTail(actor.list, actor.runFrom);
  }
  return new Map([...out].map(([name, { list }]) => [name, list]));
}

/** Sorts `list` from `from` on, in place (a run is a few events: the workers of one stop). */
function sortTail(list: string[], from: number): void {
  const tail = list.splice(from).sort();
  list.push(...tail);
}

export interface LifecycleDifference {
  readonly actor: string;
  /** Index of the first event where they differ. */
  readonly at: number;
  readonly left: readonly string[];
  readonly right: readonly string[];
}

/** The actors whose lifecycles differ, with where. Empty when the two traces agree. */
export function compareLifecycles(left: Trace, right: Trace): LifecycleDifference[] {
  const a = lifecycles(left);
  const b = lifecycles(right);
  const differences: LifecycleDifference[] = [];
  for (const actor of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(actor) ?? [];
    const y = b.get(actor) ?? [];
    let i = 0;
    while (i < x.length && i < y.length && x[i] === y[i]) i++;
    if (i < x.length || i < y.length) differences.push({ actor, at: i, left: x, right: y });
  }
  return differences;
}

/** A difference as a person reads it: the actor, and both sequences from a little before the first difference. */
export function describeDifference(d: LifecycleDifference, names: readonly [string, string] = ['left', 'right']): string {
  const from = Math.max(0, d.at - 2);
  const show = (list: readonly string[]) => list.slice(from, d.at + 3).map((s, k) => `${from + k === d.at ? '▶' : ' '} ${s}`).join('\n      ');
  return `${d.actor}, event ${d.at + 1}:\n   ${names[0]}:\n      ${show(d.left) || '(nothing)'}\n   ${names[1]}:\n      ${show(d.right) || '(nothing)'}`;
}
