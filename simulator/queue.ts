/**
 * The event queue: a binary min-heap ordered by (time, insertion order), so
 * equal times run first-in first-out. The keys live in typed arrays and the
 * callbacks in a parallel array, both grown by doubling: pushing and popping
 * allocate nothing but the callback itself. A cancellable entry has a handle
 * (`Scheduled`); a fire-and-forget one (`pushPlain`) has none.
 */
export interface Scheduled {
  readonly atMs: number;
  cancelled: boolean;
}

export class EventQueue {
  private times = new Float64Array(1024);
  private seqs = new Float64Array(1024);
  private runs: ((() => void) | undefined)[] = new Array(1024);
  private handles: (Scheduled | undefined)[] = new Array(1024);
  private length = 0;
  private seq = 0;

  get size(): number {
    return this.length;
  }

  /** Schedule `run` at `atMs`; the handle cancels it. */
  push(atMs: number, run: () => void): Scheduled {
    const handle: Scheduled = { atMs, cancelled: false };
    this.insert(atMs, run, handle);
    return handle;
  }

  /** Schedule `run` at `atMs`, never to be cancelled. */
  pushPlain(atMs: number, run: () => void): void {
    this.insert(atMs, run, undefined);
  }

  /** The earliest entry's time, or undefined when the queue is empty. */
  peekTime(): number | undefined {
    return this.length > 0 ? this.times[0] : undefined;
  }

  /**
   * Take the earliest entry: its callback, or null when it was cancelled (its time is then skipped
   * too). Undefined when the queue is empty.
   */
  pop(): (() => void) | null | undefined {
    if (this.length === 0) return undefined;
    const run = this.runs[0]!;
    const handle = this.handles[0];
    const last = --this.length;
    if (last > 0) {
      this.times[0] = this.times[last]!;
      this.seqs[0] = this.seqs[last]!;
      this.runs[0] = this.runs[last];
      this.handles[0] = this.handles[last];
      this.down(0);
    }
    this.runs[last] = undefined;
    this.handles[last] = undefined;
    return handle !== undefined && handle.cancelled ? null : run;
  }

  private insert(atMs: number, run: () => void, handle: Scheduled | undefined): void {
    if (this.length === this.times.length) this.grow();
    const i = this.length++;
    this.times[i] = atMs;
    this.seqs[i] = this.seq++;
    this.runs[i] = run;
    this.handles[i] = handle;
    this.up(i);
  }

  private grow(): void {
    const size = this.times.length * 2;
    const times = new Float64Array(size);
    times.set(this.times);
    const seqs = new Float64Array(size);
    seqs.set(this.seqs);
    this.times = times;
    this.seqs = seqs;
    this.runs.length = size;
    this.handles.length = size;
  }

  private before(a: number, b: number): boolean {
    const ta = this.times[a]!;
    const tb = this.times[b]!;
    return ta < tb || (ta === tb && this.seqs[a]! < this.seqs[b]!);
  }

  private swap(a: number, b: number): void {
    const t = this.times[a]!;
    this.times[a] = this.times[b]!;
    this.times[b] = t;
    const s = this.seqs[a]!;
    this.seqs[a] = this.seqs[b]!;
    this.seqs[b] = s;
    const r = this.runs[a];
    this.runs[a] = this.runs[b];
    this.runs[b] = r;
    const h = this.handles[a];
    this.handles[a] = this.handles[b];
    this.handles[b] = h;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.before(l, m)) m = l;
      if (r < n && this.before(r, m)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
}
