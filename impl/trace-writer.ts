/**
 * The server's trace file. Workers' events arrive over IPC, each worker's in
 * order, interleaved with the arbiter's own; lines are appended as they come
 * (so a crash leaves the raw events on disk) and, when the server stops, the
 * file is rewritten in time order with its header marked complete. The sort
 * is stable and every actor lives in one process with one monotonic clock,
 * so no actor's events are reordered.
 */
import { closeSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import type { TraceEvent } from '../model/events.ts';
import type { ServerParams } from '../model/params.ts';
import { formatEvent, makeHeader, type TraceHeader } from '../model/trace.ts';

export class TraceWriter {
  private readonly fd: number;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly policy: string,
    private readonly params: ServerParams,
    private readonly meta: Record<string, unknown>,
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
    // Read back what was appended (memory is not spent on it while the server runs).
    const lines = readFileSync(this.path, 'utf8').split('\n').slice(1).filter((line) => line !== '');
    const ordered = lines.map((line, index) => ({ event: JSON.parse(line) as TraceEvent, index })).sort((a, b) => a.event.t - b.event.t || a.index - b.index);
    const temporary = `${this.path}.tmp-${process.pid}`;
    const fd = openSync(temporary, 'w');
    writeSync(fd, JSON.stringify(this.header(complete)) + '\n');
    for (const { event } of ordered) writeSync(fd, formatEvent(event) + '\n');
    closeSync(fd);
    renameSync(temporary, this.path);
  }

  private header(complete: boolean): TraceHeader {
    return makeHeader(this.policy, this.params, complete, this.meta);
  }
}
