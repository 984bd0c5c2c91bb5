/** The real platform's timers (impl/live-host.ts). */
import { describe, expect, it } from 'vitest';
import { LiveHost, WORKER_BACKSTOP_MS } from '../../impl/live-host.ts';
import { runtimesFor } from '../../model/machines/index.ts';
import { getPolicy } from '../../model/policies.ts';
import { DEFAULT_SERVER_PARAMS } from '../../model/params.ts';
import { keepingOnly, NO_TRACE } from '../../model/host.ts';
import { isLifecycleEvent } from '../../model/trace.ts';
import { MAX_TIMER_MS } from '../../model/limits.ts';
import type { ActorId } from '../../model/events.ts';

class ExposedHost extends LiveHost {
  delayOf(actor: ActorId, id: string, delayMs: number): number {
    return this.timerDelayMs(actor, id, delayMs);
  }
}

describe('LiveHost timers', () => {
  const host = new ExposedHost(runtimesFor(getPolicy('safe-drain'), DEFAULT_SERVER_PARAMS), NO_TRACE, 0n);

  it("runs a worker's own graceful deadline a little after the arbiter's KILL at the same deadline, so that the arbiter wins their tie as in the simulator", () => {
    expect(host.delayOf('worker/1', 'graceful', 30_000)).toBe(30_000 + WORKER_BACKSTOP_MS);
    // Never past what a timer can hold.
    expect(host.delayOf('worker/1', 'graceful', MAX_TIMER_MS)).toBe(MAX_TIMER_MS);
  });

  it('runs every other timer at its delay: the arbiter’s own deadline, a keep-alive, a worker’s loop turn', () => {
    expect(host.delayOf('arbiter', 'graceful', 30_000)).toBe(30_000);
    expect(host.delayOf('conn/1.1', 'keepAlive', 2000)).toBe(2000);
    expect(host.delayOf('worker/1', 'turn', 1000)).toBe(1000);
  });
});

describe('a lifecycle trace on a live host', () => {
  /** Counts its clock's reads: a bigint each on a live host, which a trace that leaves an event out must not pay for. */
  class CountingHost extends LiveHost {
    clockReads = 0;
    override get nowMs(): number {
      this.clockReads++;
      return super.nowMs;
    }
  }

  it("hands the sink only the events it keeps, and reads the clock for those alone", () => {
    const kept: string[] = [];
    const sink = keepingOnly(isLifecycleEvent, (_t, actor, event) => kept.push(`${actor} ${event.type}`));
    const host = new CountingHost(runtimesFor(getPolicy('safe-drain'), DEFAULT_SERVER_PARAMS), sink, process.hrtime.bigint());
    host.own('worker/1', () => {});
    host.emit('worker/1', { type: 'worker.boot' });
    host.emit('worker/1', { type: 'worker.ready' });
    const readsBefore = host.clockReads;
    host.emit('conn/1.1', { type: 'conn.open', worker: 'worker/1', client: 'client/1' });
    host.emit('worker/1', { type: 'worker.accept', conn: 'conn/1.1' });
    expect(kept).toEqual(['worker/1 worker.boot', 'worker/1 worker.ready']);
    expect(host.clockReads).toBe(readsBefore);
  });
});
