/**
 * What the machines said along a replayed trace, for the properties: when
 * each worker's machine was in `alive.draining`. A property asks the view,
 * not the events, whether a worker was draining — so a drain that began at
 * CONT after a held TERM, or ended at a crash, is what the chart says it was.
 */
import type { WorkerId } from './events.ts';

/** The events (by index) at which a worker's machine entered and left `alive.draining`. */
export interface DrainSpan {
  readonly startIndex: number;
  readonly startMs: number;
  /** null while it was still draining at the end of the trace. */
  readonly endIndex: number | null;
  readonly endMs: number | null;
}

export class MachineView {
  private readonly starting = new Map<number, WorkerId[]>();
  private readonly ending = new Map<number, WorkerId[]>();

  constructor(private readonly spans: ReadonlyMap<WorkerId, DrainSpan>) {
    for (const [worker, span] of spans) {
      push(this.starting, span.startIndex, worker);
      if (span.endIndex !== null) push(this.ending, span.endIndex, worker);
    }
  }

  /**
   * Walk the trace's indices keeping the set of workers draining just after each event: `visit(i,
   * draining)` sees the set after event i. Linear in the trace, whatever the number of workers.
   */
  walk(length: number, visit: (index: number, draining: ReadonlySet<WorkerId>) => void): void {
    const draining = new Set<WorkerId>();
    for (let i = 0; i < length; i++) {
      for (const w of this.starting.get(i) ?? []) draining.add(w);
      for (const w of this.ending.get(i) ?? []) draining.delete(w);
      visit(i, draining);
    }
  }

  /** The workers whose drain began at the event at this index. */
  drainsStartingAt(index: number): readonly WorkerId[] {
    return this.starting.get(index) ?? [];
  }

  drain(worker: WorkerId): DrainSpan | undefined {
    return this.spans.get(worker);
  }

  /** Had the worker begun draining by the event at this index (it may have exited since)? */
  hasBegunDraining(worker: WorkerId, index: number): boolean {
    const span = this.spans.get(worker);
    return span !== undefined && index >= span.startIndex;
  }

  /** Was the worker's machine in `alive.draining` just after the event at this index? */
  isDrainingAt(worker: WorkerId, index: number): boolean {
    const span = this.spans.get(worker);
    return span !== undefined && index >= span.startIndex && (span.endIndex === null || index < span.endIndex);
  }

  drainingWorkers(): WorkerId[] {
    return [...this.spans.keys()];
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
