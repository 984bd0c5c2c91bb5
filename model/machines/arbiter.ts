/**
 * The arbiter (gunicorn's master): owns the listening socket, forks workers,
 * reaps them, and turns signals into worker lifecycle changes.
 *
 *   TERM      graceful stop: close its listener copy, TERM every worker, wait up
 *             to the graceful timeout, then KILL what is left.
 *   INT/QUIT  fast stop: QUIT every worker (they exit at once), same deadline.
 *   HUP       reload: spawn a new generation, TERM the old one (which drains).
 *   TTIN/TTOU one worker more / fewer (the oldest is retired).
 *   CHLD      reap; the next loop turn spawns replacements.
 * A worker whose heartbeat is older than the timeout is aborted and replaced.
 */
import { assign, setup } from 'xstate';
import type { ArbiterEvent, MachineEvent, WorkerId } from '../events.ts';

export type ArbiterMachineEvent = MachineEvent<ArbiterEvent>;

export interface ArbiterContext {
  /** Spawned and not yet reaped. */
  workers: WorkerId[];
  /** The number of workers the arbiter keeps (TTIN/TTOU change it, HUP resets it). */
  target: number;
  holdsListener: boolean;
}

function signalIs(...names: string[]) {
  return ({ event }: { event: ArbiterMachineEvent }) => event.type === 'arbiter.signal' && names.includes(event.signal);
}

export const arbiterChart = setup({
  types: { context: {} as ArbiterContext, events: {} as ArbiterMachineEvent },
  actions: {
    // Commands.
    spawnWorkers: () => {},
    reloadWorkers: () => {},
    retireOldest: () => {},
    closeListener: () => {},
    signalWorkers: (_, _params: { signal: 'TERM' | 'QUIT' | 'KILL' }) => {},
    abortWorker: (_, _params: { worker: WorkerId }) => {},
    // Bookkeeping.
    addWorker: assign({
      workers: ({ context, event }) => (event.type === 'arbiter.spawn' ? [...context.workers, event.worker] : context.workers),
    }),
    removeWorker: assign({
      workers: ({ context, event }) =>
        event.type === 'arbiter.reap' ? context.workers.filter((w) => w !== event.worker) : context.workers,
    }),
    incrementTarget: assign({ target: ({ context }) => context.target + 1 }),
    decrementTarget: assign({ target: ({ context }) => Math.max(1, context.target - 1) }),
    releaseListener: assign({ holdsListener: false }),
  },
  guards: {
    isGracefulStop: signalIs('TERM'),
    isFastStop: signalIs('INT', 'QUIT'),
    isReload: signalIs('HUP'),
    isIncrease: signalIs('TTIN'),
    isDecrease: signalIs('TTOU'),
    isKill: signalIs('KILL'),
    isChild: signalIs('CHLD'),
    workerIsNew: ({ context, event }) => event.type === 'arbiter.spawn' && !context.workers.includes(event.worker),
    workerIsKnown: ({ context, event }) => 'worker' in event && context.workers.includes(event.worker),
    holdsListener: ({ context }) => context.holdsListener,
    allWorkersGoneAndListenerClosed: ({ context }) => context.workers.length === 0 && !context.holdsListener,
  },
}).createMachine({
  id: 'arbiter',
  context: { workers: [], target: 1, holdsListener: true },
  initial: 'booting',
  states: {
    booting: {
      on: {
        'arbiter.start': { target: 'running', actions: assign({ target: ({ event }) => event.workers }) },
      },
    },
    running: {
      entry: 'spawnWorkers',
      on: {
        'arbiter.spawn': { guard: 'workerIsNew', actions: 'addWorker' },
        'arbiter.reap': { guard: 'workerIsKnown', actions: ['removeWorker', 'spawnWorkers'] },
        'arbiter.kill': { guard: 'workerIsKnown' },
        'arbiter.heartbeat-timeout': { guard: 'workerIsKnown', actions: { type: 'abortWorker', params: ({ event }) => ({ worker: (event as { worker: WorkerId }).worker }) } },
        'arbiter.signal': [
          { guard: 'isGracefulStop', target: 'stopping.graceful' },
          { guard: 'isFastStop', target: 'stopping.fast' },
          { guard: 'isKill', target: 'dead' },
          { guard: 'isReload', actions: 'reloadWorkers' },
          { guard: 'isIncrease', actions: ['incrementTarget', 'spawnWorkers'] },
          { guard: 'isDecrease', actions: ['decrementTarget', 'retireOldest'] },
          { guard: 'isChild' },
        ],
      },
    },
    /** No worker is spawned any more; the listener copy is closed first so load balancers see refusals early. */
    stopping: {
      initial: 'graceful',
      entry: 'closeListener',
      on: {
        'arbiter.close-listener': { guard: 'holdsListener', actions: 'releaseListener' },
        'arbiter.reap': { guard: 'workerIsKnown', actions: 'removeWorker' },
        'arbiter.kill': { guard: 'workerIsKnown' },
        'arbiter.heartbeat-timeout': { guard: 'workerIsKnown', actions: { type: 'abortWorker', params: ({ event }) => ({ worker: (event as { worker: WorkerId }).worker }) } },
        'arbiter.exit': { guard: 'allWorkersGoneAndListenerClosed', target: 'halted' },
        'arbiter.signal': [{ guard: 'isKill', target: 'dead' }, {}],
      },
      states: {
        graceful: {
          entry: { type: 'signalWorkers', params: { signal: 'TERM' } },
          on: {
            'arbiter.graceful-timeout': 'killing',
            // gunicorn 24+: INT/QUIT during a graceful stop escalates to a fast stop.
            'arbiter.signal': [{ guard: 'isFastStop', target: 'fast' }, { guard: 'isKill', target: '#arbiter.dead' }, {}],
          },
        },
        fast: {
          entry: { type: 'signalWorkers', params: { signal: 'QUIT' } },
          on: { 'arbiter.graceful-timeout': 'killing' },
        },
        killing: {
          entry: { type: 'signalWorkers', params: { signal: 'KILL' } },
        },
      },
    },
    halted: { type: 'final' },
    /** SIGKILL to the arbiter: nothing more is observed from it. */
    dead: { type: 'final' },
  },
});
