/**
 * The server's timers (impl/live-host.ts TimerQueues): one queue per delay, one Node timer per queue.
 * Real timers, real clock: what the machines rely on is that a timer fires once, not before its
 * delay (as Node counts it), in the order armed among equal delays, never after it was cancelled,
 * and that cancelled timers keep nothing alive.
 */
import { describe, expect, it } from 'vitest';
import { monotonicMs, TimerQueues } from '../../impl/live-host.ts';

const activeTimeouts = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('TimerQueues', () => {
  it("fires each timer once, not before its delay (less Node's millisecond), equal delays in the order armed, shorter ones first", async () => {
    const queues = new TimerQueues();
    const fired: { name: string; lateMs: number }[] = [];
    const arm = (name: string, delayMs: number) => {
      const armedAt = monotonicMs();
      queues.add(delayMs, () => fired.push({ name, lateMs: monotonicMs() - armedAt - delayMs }));
    };
    arm('a30', 30);
    arm('b10', 10);
    arm('c30', 30);
    arm('d10', 10);
    await sleep(80);
    expect(fired.map((f) => f.name)).toEqual(['b10', 'd10', 'a30', 'c30']);
    // Node's own timers run when the event loop's millisecond clock says so: up to 1 ms early on the monotonic one.
    for (const f of fired) expect(f.lateMs).toBeGreaterThanOrEqual(-1);
  });

  it('a cancelled timer never runs; the others of its queue still do', async () => {
    const queues = new TimerQueues();
    const fired: string[] = [];
    const first = queues.add(10, () => fired.push('first'));
    queues.add(10, () => fired.push('second'));
    first.cancelled = true;
    expect(first.cancelled).toBe(true);
    await sleep(40);
    expect(fired).toEqual(['second']);
  });

  it('a timer armed while another fires (the next keep-alive period) fires in its turn', async () => {
    const queues = new TimerQueues();
    const fired: string[] = [];
    queues.add(5, () => {
      fired.push('outer');
      queues.add(5, () => fired.push('inner'));
    });
    await sleep(50);
    expect(fired).toEqual(['outer', 'inner']);
  });

  it('when every timer of a queue is cancelled, no Node timer is left to keep the process alive', () => {
    const before = activeTimeouts();
    const queues = new TimerQueues();
    const timers = [queues.add(30_000, () => {}), queues.add(30_000, () => {}), queues.add(5_000, () => {})];
    expect(activeTimeouts()).toBe(before + 2); // one per delay, not one per timer
    for (const timer of timers) timer.cancelled = true;
    expect(activeTimeouts()).toBe(before);
  });

  it('cancelAll (the process is leaving) cancels every timer', async () => {
    const before = activeTimeouts();
    const queues = new TimerQueues();
    const fired: string[] = [];
    const timer = queues.add(5, () => fired.push('x'));
    queues.cancelAll();
    expect(timer.cancelled).toBe(true);
    expect(activeTimeouts()).toBe(before);
    await sleep(20);
    expect(fired).toEqual([]);
  });
});
