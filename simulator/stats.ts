/**
 * Streaming latency statistics: a log-linear histogram (as HdrHistogram
 * keeps them) of whole microseconds — exact below 2.048 ms, within 0.1 %
 * above — so a run of any length keeps a few thousand counters instead of
 * every request's latency. Count, min, max and mean are exact.
 */

/** Exact values below this many µs; above, 1024 buckets per power of two. */
const EXACT_US = 2048;
const SUB_BUCKETS = 1024;

function bucketOf(us: number): number {
  if (us < EXACT_US) return us;
  const exponent = Math.floor(Math.log2(us)) - 10; // us >> exponent lies in [1024, 2048)
  const mantissa = Math.floor(us / 2 ** exponent);
  return EXACT_US + (exponent - 1) * SUB_BUCKETS + (mantissa - SUB_BUCKETS);
}

/** The smallest value a bucket holds (its representative). */
function valueOf(bucket: number): number {
  if (bucket < EXACT_US) return bucket;
  const k = bucket - EXACT_US;
  const exponent = Math.floor(k / SUB_BUCKETS) + 1;
  const mantissa = (k % SUB_BUCKETS) + SUB_BUCKETS;
  return mantissa * 2 ** exponent;
}

export class LatencyHistogram {
  private counts = new Float64Array(EXACT_US + 8 * SUB_BUCKETS);
  count = 0;
  private sumMs = 0;
  minMs = Number.POSITIVE_INFINITY;
  maxMs = 0;

  record(ms: number): void {
    const us = Math.max(0, Math.round(ms * 1000));
    const bucket = bucketOf(us);
    if (bucket >= this.counts.length) {
      const grown = new Float64Array(Math.max(bucket + 1, this.counts.length * 2));
      grown.set(this.counts);
      this.counts = grown;
    }
    this.counts[bucket]!++;
    this.count++;
    this.sumMs += ms;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  get meanMs(): number {
    return this.count === 0 ? 0 : this.sumMs / this.count;
  }

  /** The p-th percentile in ms (the value at rank ⌈p/100 · n⌉, as the simulator has always reported it); 0 when empty. */
  percentileMs(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.min(this.count, Math.max(1, Math.ceil((p / 100) * this.count)));
    if (rank === this.count) return this.maxMs;
    let seen = 0;
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b]!;
      if (seen >= rank) return Math.min(this.maxMs, Math.max(this.minMs, valueOf(b) / 1000));
    }
    return this.maxMs;
  }
}
