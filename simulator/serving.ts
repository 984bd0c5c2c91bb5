/**
 * When nothing served: the spans during which the arbiter ran and no worker
 * was serving — ready (its app loaded), not draining (no TERM, INT or QUIT
 * taken, max-requests not reached), not stopped, not gone. Connections made
 * then wait in the accept queue (or overflow it): a reload's accept gap while
 * the new generation boots, or a recycle whose replacement is not ready yet.
 * The operator's question "does a reload stop accepting, and for how long?"
 * in one figure. Only once a first worker served, and only until a stop
 * begins: a boot and a stop are gaps by design.
 */
import type { TraceEvent } from '../model/events.ts';

export interface ServingGap {
  readonly startMs: number;
  readonly endMs: number;
}

export interface ServingGapSummary {
  readonly count: number;
  readonly totalMs: number;
  /** The longest span, or null when there was none. */
  readonly longest: ServingGap | null;
}

/** What the tracker reads of an event: its type, and a signal's name. */
type Fed = { readonly type: TraceEvent['type'] } & { readonly signal?: string };

export class ServingGaps {
  /** Workers that loaded their app and have not exited. */
  private readonly ready = new Set<string>();
  /** Of those, the ones that no longer serve: draining. */
  private readonly done = new Set<string>();
  private readonly stopped = new Set<string>();
  private running = false;
  private everServed = false;
  private gapSinceMs: number | null = null;
  private readonly spans: ServingGap[] = [];

  /** Take the run's next event, at `t` ms, of `actor`. */
  take(t: number, actor: string, e: Fed): void {
    if (!this.affects(actor, e)) return;
    const serving = this.servingCount();
    if (serving > 0) this.everServed = true;
    const inGap = this.running && this.everServed && serving === 0;
    if (inGap && this.gapSinceMs === null) this.gapSinceMs = t;
    if (!inGap) this.close(t);
  }

  /** The run ended at `lastMs`: a gap still open ends there. */
  summary(lastMs: number): ServingGapSummary {
    const spans = [...this.spans];
    if (this.gapSinceMs !== null) spans.push({ startMs: this.gapSinceMs, endMs: lastMs });
    let longest: ServingGap | null = null;
    let totalMs = 0;
    for (const span of spans) {
      totalMs += span.endMs - span.startMs;
      if (longest === null || span.endMs - span.startMs > longest.endMs - longest.startMs) longest = span;
    }
    return { count: spans.length, totalMs, longest };
  }

  private close(t: number): void {
    if (this.gapSinceMs === null) return;
    this.spans.push({ startMs: this.gapSinceMs, endMs: t });
    this.gapSinceMs = null;
  }

  private servingCount(): number {
    let n = 0;
    for (const w of this.ready) if (!this.done.has(w) && !this.stopped.has(w)) n++;
    return n;
  }

  /** Note what the event changes; false when it changes nothing here. */
  private affects(actor: string, e: Fed): boolean {
    switch (e.type) {
      case 'arbiter.start':
        this.running = true;
        return true;
      case 'arbiter.signal':
        // A stop ends every worker on purpose: what follows is no gap.
        if (e.signal === 'HUP' || e.signal === 'TTIN' || e.signal === 'TTOU') return false;
        this.running = false;
        return true;
      case 'worker.ready':
        this.ready.add(actor);
        return true;
      case 'worker.max-requests':
        this.done.add(actor);
        return true;
      case 'worker.exit':
      case 'worker.crash':
        // Gone: forgotten, so that a day of recycles keeps these sets small.
        this.ready.delete(actor);
        this.done.delete(actor);
        this.stopped.delete(actor);
        return true;
      case 'worker.signal':
        if (e.signal === 'STOP') this.stopped.add(actor);
        else if (e.signal === 'CONT') this.stopped.delete(actor);
        else if (e.signal === 'TERM' || e.signal === 'INT' || e.signal === 'QUIT' || e.signal === 'KILL') this.done.add(actor);
        else return false;
        return true;
      default:
        return false;
    }
  }
}
