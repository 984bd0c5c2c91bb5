/**
 * The arbiter (gunicorn's master): owns the listening socket, forks workers,
 * reaps them, and turns signals into worker lifecycle changes.
 *
 *   TERM      graceful stop: close its listener copy, TERM every worker, wait up
 *             to the graceful timeout, then KILL what is left.
 *   INT/QUIT  fast stop: QUIT every worker (they exit at once), same deadline.
 *             During a graceful stop it escalates where the policy says so: QUIT,
 *             and the deadline comes closer, to ESCALATION_MS from now (gunicorn
 *             24+); gunicorn ≤ 23 lets the graceful stop run its course.
 *   HUP       reload: spawn a new generation, TERM the old one (which drains) — at once
 *             (gunicorn), or where the policy says so, each serving old worker only once a
 *             new one serves in its place (a rolling restart: nothing stops accepting).
 *   TTIN/TTOU one worker more / fewer (the oldest is retired).
 *   CHLD      reap; a running arbiter spawns replacements.
 *
 * Every loop turn (`arbiter.tick`, gunicorn's `murder_workers`) the heartbeat
 * watchdog looks at each worker: one silent for longer than the timeout gets
 * ABRT; if it is still silent a turn later, KILL. Silence is counted in turns
 * since the worker's last heartbeat, as gunicorn compares the tmp file's age
 * once per turn.
 */
import { and, assign, cancel, raise, setup } from 'xstate';
import type { ArbiterEvent, MachineEvent, WorkerId, WorkerSignal } from '../events.ts';
import { command, type CommandOf } from './commands.ts';

export type ArbiterMachineEvent = MachineEvent<ArbiterEvent>;

export interface ArbiterContext {
  /** Spawned and not yet reaped, oldest first. */
  workers: WorkerId[];
  /** The number of workers the arbiter keeps (TTIN/TTOU change it). */
  target: number;
  holdsListener: boolean;
  /** Loop turns since each worker's last heartbeat (or its spawn). */
  silentTurns: Partial<Record<WorkerId, number>>;
  /** Workers silent for longer than the timeout at the last turn. */
  stale: WorkerId[];
  /** Workers the watchdog sent ABRT: still silent a turn later, they get KILL. */
  aborted: WorkerId[];
  /** Workers that said they serve (their app is loaded). gunicorn's arbiter is never told; ours is. */
  ready: WorkerId[];
  /** Workers the arbiter sent TERM (a reload, TTOU, a stop): they drain, and belong to no generation that serves. */
  retired: WorkerId[];
  /** A reload's old workers that serve until new ones serve in their place (policy `reloadRetires: 'when-replaced'`), oldest first. */
  servingUntilReplaced: WorkerId[];
}

/** The workers of the current generation: neither retired nor waiting for their replacement. */
function currentGeneration(context: ArbiterContext): WorkerId[] {
  return context.workers.filter((w) => !context.retired.includes(w) && !context.servingUntilReplaced.includes(w));
}

/** How many workers a running arbiter starts to keep `target`: the old generation still serving does not count. */
function missingWorkers(context: ArbiterContext): number {
  return context.target - (context.workers.length - context.servingUntilReplaced.length);
}

/** TTOU: the oldest workers beyond the target, among those that count for it (`missingWorkers`). */
function beyondTarget(context: ArbiterContext): WorkerId[] {
  const counted = context.workers.filter((w) => !context.servingUntilReplaced.includes(w));
  return counted.slice(0, Math.max(0, counted.length - context.target));
}

/**
 * The old workers to retire now that `worker` serves: as many of the oldest as the current
 * generation's serving workers and the old ones still serving exceed the target by. One for one
 * while the new generation comes up; none while it serves fewer than the old one did.
 */
function replacedBy(context: ArbiterContext, worker: WorkerId): WorkerId[] {
  const serving = currentGeneration(context).filter((w) => w === worker || context.ready.includes(w)).length;
  return context.servingUntilReplaced.slice(0, Math.max(0, serving + context.servingUntilReplaced.length - context.target));
}

/** gunicorn 24+: INT/QUIT during a graceful stop brings the deadline to 2 s from now. */
export const ESCALATION_MS = 2000;
export const ARBITER_TIMER_IDS = { tick: 'tick', deadline: 'deadline' } as const;

export const arbiterCommands = {
  /** Start this many new worker processes. */
  spawnWorkers: command<{ count: number }>(),
  /** HUP: start `count` new workers, then TERM `retire` (the old generation, or its workers still booting). */
  reloadWorkers: command<{ count: number; retire: readonly WorkerId[] }>(),
  /** TERM these workers to retire them: the oldest beyond the target (TTOU), or old ones a new worker replaced. */
  retireWorkers: command<{ retire: readonly WorkerId[] }>(),
  /** Close the arbiter's copy of the listening socket. */
  closeListener: command(),
  signalWorkers: command<{ signal: WorkerSignal; workers: readonly WorkerId[] }>(),
  /** The watchdog: ABRT for workers newly stale, KILL for stale ones already aborted. */
  murderWorkers: command<{ abort: readonly WorkerId[]; kill: readonly WorkerId[] }>(),
};
export type ArbiterCommand = CommandOf<typeof arbiterCommands>;

function signalIs(...names: string[]) {
  return ({ event }: { event: ArbiterMachineEvent }) => event.type === 'arbiter.signal' && names.includes(event.signal);
}

const placeholder = () => {
  throw new Error('arbiter machine used without parameters: build it with machinesFor(policy, params)');
};

export const arbiterChart = setup({
  types: { context: {} as ArbiterContext, events: {} as ArbiterMachineEvent },
  actions: {
    ...arbiterCommands,
    addWorker: assign(({ context, event }) =>
      event.type === 'arbiter.spawn' ? { workers: [...context.workers, event.worker], silentTurns: { ...context.silentTurns, [event.worker]: 0 } } : {},
    ),
    removeWorker: assign(({ context, event }) => {
      if (event.type !== 'arbiter.reap') return {};
      const { [event.worker]: _gone, ...silentTurns } = context.silentTurns;
      const other = (w: WorkerId) => w !== event.worker;
      return {
        workers: context.workers.filter(other),
        silentTurns,
        stale: context.stale.filter(other),
        aborted: context.aborted.filter(other),
        ready: context.ready.filter(other),
        retired: context.retired.filter(other),
        servingUntilReplaced: context.servingUntilReplaced.filter(other),
      };
    }),
    noteHeartbeat: assign(({ context, event }) =>
      event.type === 'arbiter.heartbeat' ? { silentTurns: { ...context.silentTurns, [event.worker]: 0 } } : {},
    ),
    noteReady: assign(({ context, event }) =>
      event.type === 'arbiter.ready' && !context.ready.includes(event.worker) ? { ready: [...context.ready, event.worker] } : {},
    ),
    /** A reload under `when-replaced`: the current generation's serving workers wait for their replacements (its booting ones get TERM). */
    keepServingUntilReplaced: assign(({ context }) => ({
      servingUntilReplaced: [...context.servingUntilReplaced, ...currentGeneration(context).filter((w) => context.ready.includes(w))],
    })),
    /** The old workers `replacedBy` this ready one wait no more: they get TERM. */
    forgetReplaced: assign(({ context, event }) => {
      if (event.type !== 'arbiter.ready') return {};
      const replaced = replacedBy(context, event.worker);
      return { servingUntilReplaced: context.servingUntilReplaced.filter((w) => !replaced.includes(w)) };
    }),
    noteRetired: assign(({ context, event }) =>
      event.type === 'arbiter.kill' && event.signal === 'TERM' && !context.retired.includes(event.worker) ? { retired: [...context.retired, event.worker] } : {},
    ),
    noteAbort: assign(({ context, event }) =>
      event.type === 'arbiter.kill' && event.signal === 'ABRT' && !context.aborted.includes(event.worker) ? { aborted: [...context.aborted, event.worker] } : {},
    ),
    /** One more silent turn for every worker; which are now silent for longer than the timeout (params). */
    countSilence: placeholder,
    incrementTarget: assign({ target: ({ context }) => context.target + 1 }),
    decrementTarget: assign({ target: ({ context }) => Math.max(1, context.target - 1) }),
    releaseListener: assign({ holdsListener: false }),
  },
  guards: {
    isGracefulStop: signalIs('TERM'),
    isFastStop: signalIs('INT', 'QUIT'),
    /** The policy's: INT/QUIT during a graceful stop escalates it (gunicorn 24+). */
    fastStopEscalates: placeholder,
    isReload: signalIs('HUP'),
    /** The policy's: a reload retires each serving old worker only once a new one serves (`reloadRetires`). */
    retiresWhenReplaced: placeholder,
    /** This ready worker lets old workers go (`replacedBy`). */
    replacesOldWorkers: ({ context, event }) => event.type === 'arbiter.ready' && replacedBy(context, event.worker).length > 0,
    isIncrease: signalIs('TTIN'),
    isDecrease: signalIs('TTOU'),
    isKill: signalIs('KILL'),
    isChild: signalIs('CHLD'),
    workerIsNew: ({ context, event }) => event.type === 'arbiter.spawn' && !context.workers.includes(event.worker),
    workerIsKnown: ({ context, event }) => 'worker' in event && context.workers.includes(event.worker),
    holdsListener: ({ context }) => context.holdsListener,
    allWorkersGoneAndListenerClosed: ({ context }) => context.workers.length === 0 && !context.holdsListener,
  },
  delays: { gracefulTimeout: 30_000, escalation: ESCALATION_MS, tick: 1000 },
}).createMachine({
  id: 'arbiter',
  context: { workers: [], target: 1, holdsListener: true, silentTurns: {}, stale: [], aborted: [], ready: [], retired: [], servingUntilReplaced: [] },
  initial: 'booting',
  on: {
    'arbiter.heartbeat': { guard: 'workerIsKnown', actions: 'noteHeartbeat' },
    'arbiter.kill': { guard: 'workerIsKnown', actions: ['noteAbort', 'noteRetired'] },
    'arbiter.ready': { guard: 'workerIsKnown', actions: 'noteReady' },
    'arbiter.reap': { guard: 'workerIsKnown', actions: 'removeWorker' },
  },
  states: {
    booting: {
      on: {
        'arbiter.start': {
          target: 'running',
          actions: [assign({ target: ({ event }) => event.workers }), raise({ type: 'arbiter.tick' }, { delay: 'tick', id: ARBITER_TIMER_IDS.tick })],
        },
      },
    },
    running: {
      entry: { type: 'spawnWorkers', params: ({ context }) => ({ count: missingWorkers(context) }) },
      on: {
        // The loop turns while the arbiter runs; the watchdog looks at each turn.
        'arbiter.tick': {
          actions: [
            'countSilence',
            {
              type: 'murderWorkers',
              params: ({ context }) => ({
                abort: context.stale.filter((w) => !context.aborted.includes(w)),
                kill: context.stale.filter((w) => context.aborted.includes(w)),
              }),
            },
            raise({ type: 'arbiter.tick' }, { delay: 'tick', id: ARBITER_TIMER_IDS.tick }),
          ],
        },
        'arbiter.spawn': { guard: 'workerIsNew', actions: 'addWorker' },
        // A reaped worker is replaced at once (gunicorn: on the next loop turn).
        'arbiter.reap': {
          guard: 'workerIsKnown',
          actions: ['removeWorker', { type: 'spawnWorkers', params: ({ context }) => ({ count: missingWorkers(context) }) }],
        },
        // A new worker serves: under `when-replaced`, the old ones it replaces may go now.
        'arbiter.ready': [
          {
            guard: and(['workerIsKnown', 'replacesOldWorkers']),
            actions: [
              'noteReady',
              { type: 'retireWorkers', params: ({ context, event }) => ({ retire: event.type === 'arbiter.ready' ? replacedBy(context, event.worker) : [] }) },
              'forgetReplaced',
            ],
          },
          { guard: 'workerIsKnown', actions: 'noteReady' },
        ],
        'arbiter.signal': [
          { guard: 'isGracefulStop', target: 'stopping.graceful' },
          { guard: 'isFastStop', target: 'stopping.fast' },
          { guard: 'isKill', target: 'dead' },
          {
            guard: and(['isReload', 'retiresWhenReplaced']),
            actions: [
              {
                type: 'reloadWorkers',
                params: ({ context }) => ({ count: context.target, retire: currentGeneration(context).filter((w) => !context.ready.includes(w)) }),
              },
              'keepServingUntilReplaced',
            ],
          },
          {
            guard: 'isReload',
            actions: { type: 'reloadWorkers', params: ({ context }) => ({ count: context.target, retire: [...context.workers] }) },
          },
          {
            guard: 'isIncrease',
            actions: ['incrementTarget', { type: 'spawnWorkers', params: ({ context }) => ({ count: missingWorkers(context) }) }],
          },
          {
            guard: 'isDecrease',
            actions: [
              'decrementTarget',
              { type: 'retireWorkers', params: ({ context }) => ({ retire: beyondTarget(context) }) },
            ],
          },
          { guard: 'isChild' },
        ],
      },
    },
    /** No worker is spawned any more; the listener copy is closed first so load balancers see refusals early. */
    stopping: {
      initial: 'graceful',
      // gunicorn's stop() waits in a loop of its own (sleep 0.1 until the workers are gone or the
      // deadline): no murder_workers there, so no watchdog — a draining worker that no longer
      // heartbeats (gthread) is not aborted for its silence. The main loop's turns end here.
      entry: ['closeListener', cancel(ARBITER_TIMER_IDS.tick)],
      on: {
        'arbiter.close-listener': { guard: 'holdsListener', actions: 'releaseListener' },
        'arbiter.exit': { guard: 'allWorkersGoneAndListenerClosed', target: 'halted' },
        'arbiter.signal': [{ guard: 'isKill', target: 'dead' }, {}],
      },
      states: {
        graceful: {
          entry: [{ type: 'signalWorkers', params: ({ context }) => ({ signal: 'TERM', workers: [...context.workers] }) }, raise({ type: 'arbiter.graceful-timeout' }, { delay: 'gracefulTimeout', id: ARBITER_TIMER_IDS.deadline })],
          exit: cancel(ARBITER_TIMER_IDS.deadline),
          on: {
            'arbiter.graceful-timeout': 'killing',
            // gunicorn 24+: INT/QUIT during a graceful stop escalates to a fast stop with a near deadline.
            'arbiter.signal': [{ guard: and(['isFastStop', 'fastStopEscalates']), target: 'escalated' }, { guard: 'isKill', target: '#arbiter.dead' }, {}],
          },
        },
        fast: {
          entry: [{ type: 'signalWorkers', params: ({ context }) => ({ signal: 'QUIT', workers: [...context.workers] }) }, raise({ type: 'arbiter.graceful-timeout' }, { delay: 'gracefulTimeout', id: ARBITER_TIMER_IDS.deadline })],
          exit: cancel(ARBITER_TIMER_IDS.deadline),
          on: { 'arbiter.graceful-timeout': 'killing' },
        },
        escalated: {
          entry: [{ type: 'signalWorkers', params: ({ context }) => ({ signal: 'QUIT', workers: [...context.workers] }) }, raise({ type: 'arbiter.graceful-timeout' }, { delay: 'escalation', id: ARBITER_TIMER_IDS.deadline })],
          exit: cancel(ARBITER_TIMER_IDS.deadline),
          on: { 'arbiter.graceful-timeout': 'killing' },
        },
        killing: {
          entry: { type: 'signalWorkers', params: ({ context }) => ({ signal: 'KILL', workers: [...context.workers] }) },
        },
      },
    },
    halted: { type: 'final' },
    /** SIGKILL to the arbiter: nothing more is observed from it. */
    dead: { type: 'final' },
  },
});

/**
 * The watchdog's bookkeeping for these parameters. After k turns without a heartbeat the worker has
 * been silent for more than (k − 1) turns, so it is surely silent for longer than the timeout from
 * k = ⌈timeout / turn⌉ + 1 on: never earlier than gunicorn, at most a turn later. timeoutMs 0 turns
 * the watchdog off.
 */
export function countSilence(timeoutMs: number, tickMs: number) {
  const staleAfterTurns = Math.ceil(timeoutMs / tickMs) + 1;
  return assign<ArbiterContext, ArbiterMachineEvent, unknown, ArbiterMachineEvent, never>(({ context }) => {
    const silentTurns: Partial<Record<WorkerId, number>> = {};
    const stale: WorkerId[] = [];
    for (const w of context.workers) {
      const turns = (context.silentTurns[w] ?? 0) + 1;
      silentTurns[w] = turns;
      if (timeoutMs > 0 && turns >= staleAfterTurns) stale.push(w);
    }
    return { silentTurns, stale };
  });
}
