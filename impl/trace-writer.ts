/**
 * The server's trace file. Workers' events arrive over IPC, each worker's in
 * order, interleaved with the arbiter's own; lines are appended as they come
 * (so a crash leaves the raw events on disk) and, when the server stops, the
 * file is rewritten in time order with its header marked complete. The sort
 * is stable and every actor lives in one process with one monotonic clock,
 * so no actor's events are reordered.
 */
import { closeSync, openSync, renameSync, writeSync } from 'node:fs';
import { fileLines } from './trace-file.ts';
import type { TraceEvent } from '../model/events.ts';
import type { ServerParams } from '../model/params.ts';
import { formatEvent, makeHeader, type TraceHeader, type TraceScope } from '../model/trace.ts';

export class TraceWriter {
  private readonly fd: number;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly policy: string,
    private readonly params: ServerParams,
    private readonly meta: Record<string, unknown>,
    /** What the file holds: every event, or the processes' lifecycle (the workers leave the rest out before they send). */
    private readonly events: TraceScope = 'all',
  ) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, JSON.stringify(this.header(false)) + '\n');
  }

  write(event: TraceEvent): void {
    if (this.closed) return;
    writeSync(this.fd, formatEvent(event) + '\n');
  }

  /** Rewrite the file in time order; `complete` when the server stopped with every actor at rest. */
  finish(complete: boolean): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
    // Read back what was appended (memory is not spent on it while the server runs), in pieces: a
    // long run's trace is larger than one string can be. Lines are kept as they were written and
    // sorted by their time; an index sort keeps equal times in arrival order.
    const lines: string[] = [];
    let first = true;
    for (const line of fileLines(this.path)) {
      if (first) first = false;
      else if (line !== '') lines.push(line);
    }
    const times = new Float64Array(lines.length);
    for (let i = 0; i < lines.length; i++) times[i] = (JSON.parse(lines[i]!) as TraceEvent).t;
    const order = Uint32Array.from({ length: lines.length }, (_, i) => i).sort((a, b) => times[a]! - times[b]! || a - b);
    const temporary = `${this.path}.tmp-${process.pid}`;
    const fd = openSync(temporary, 'w');
    writeSync(fd, JSON.stringify(this.header(complete)) + '\n');
    for (let from = 0; from < order.length; from += 10_000) {
      let batch = '';
      for (let k = from; k < Math.min(order.length, from + 10_000); k++) batch += lines[order[k]!]! + '\n';
      writeSync(fd, batch);
    }
    closeSync(fd);
    renameSync(temporary, this.path);
  }

  private header(complete: boolean): TraceHeader {
    return makeHeader(this.policy, this.params, complete, this.meta, this.events);
  }
}
