/**
 * A worker process: boots, serves (alive), drains (alive = false) and exits.
 *
 * Draining begins on TERM or when the worker reaches its max-requests limit.
 * A draining worker tells each of its connections (`drainConnections`: the
 * connection machines decide what that means under the policy), closes its
 * copy of the listening socket when the policy says so, keeps heartbeating
 * (gunicorn's first duty during shutdown) and exits when its work is done or
 * at the graceful deadline, whichever is first. A worker exits only after
 * every connection it holds is closed and its listener copy released: the
 * trace must show what the process exit did to them.
 *
 * What a worker may take on is the chart's to say, through guards the policy
 * provides: a new connection (room below worker_connections; the sync worker
 * only when idle), a request (a free thread), the recycle (its own limit,
 * drawn when it was spawned).
 */
import { and, assign, cancel, raise, setup } from 'xstate';
import type { AbortReason, ConnId, MachineEvent, WorkerEvent } from '../events.ts';
import { command, type CommandOf } from './commands.ts';

export type WorkerMachineEvent = MachineEvent<WorkerEvent>;

export interface WorkerContext {
  /** Requests started (gunicorn's `nr`, incremented before the app runs). */
  requests: number;
  /** Requests in progress: the threads busy. */
  busy: number;
  openConns: ConnId[];
  /** Open connections that have started at least one request. */
  startedConns: ConnId[];
  holdsListener: boolean;
  /** This worker's recycle limit (0: never), as worker.boot said; null when the trace did not say. */
  maxRequests: number | null;
  /** gthread 21–23: accepts the last loop turn may still make after the drain began (one at most). */
  lastTurnAccepts: number;
  /** What ended the process from outside: the exit code it leaves behind. */
  fatal: { signal: 'KILL' | 'ABRT' } | { crash: number } | null;
  /** Told to exit at once (QUIT/INT): what is still open is cut by the operator's fast stop. */
  quitting: boolean;
}

export const WORKER_TIMER_IDS = { graceful: 'graceful', turn: 'turn' } as const;

/**
 * The exit code a worker's end leaves for its parent to reap (as Python's subprocess and Node report
 * it): 0 for an exit of its own, −9 for SIGKILL, 1 after ABRT (gunicorn's handle_abort: sys.exit(1)),
 * and a crash's own code.
 */
export function exitCodeOf(context: WorkerContext): number {
  const fatal = context.fatal;
  if (fatal === null) return 0;
  if ('crash' in fatal) return fatal.crash;
  return fatal.signal === 'KILL' ? -9 : 1;
}

export const workerCommands = {
  /** Draining began: stop accepting (unless the chart still allows a last-turn accept) and tell every connection. */
  drainConnections: command(),
  /** The last loop turn ended: stop accepting, and tell every connection (an idle one is abandoned now). */
  endLastTurn: command(),
  /** Close this process's copy of the listening socket. */
  closeListenerCopy: command(),
  abortConnections: command<{ reason: AbortReason }>(),
  /** Exit once every connection is closed and the listener copy released, with the code exitCodeOf() gives then. */
  exitProcess: command(),
};
export type WorkerCommand = CommandOf<typeof workerCommands>;

const policyGuardPlaceholder = () => {
  throw new Error('worker machine used without a policy: build it with machinesFor(policy, params)');
};

export const workerChart = setup({
  types: { context: {} as WorkerContext, events: {} as WorkerMachineEvent },
  actions: {
    ...workerCommands,
    noteLimit: assign(({ event }) => (event.type === 'worker.boot' && event.maxRequests !== undefined ? { maxRequests: event.maxRequests } : {})),
    addConn: assign({
      openConns: ({ context, event }) => (event.type === 'worker.accept' ? [...context.openConns, event.conn] : context.openConns),
    }),
    useLastTurnAccept: assign({ lastTurnAccepts: ({ context }) => context.lastTurnAccepts - 1 }),
    removeConn: assign(({ context, event }) =>
      event.type === 'worker.conn-closed'
        ? { openConns: context.openConns.filter((c) => c !== event.conn), startedConns: context.startedConns.filter((c) => c !== event.conn) }
        : {},
    ),
    startRequest: assign(({ context, event }) => ({
      requests: context.requests + 1,
      busy: context.busy + 1,
      startedConns:
        event.type === 'worker.request-start' && !context.startedConns.includes(event.conn) ? [...context.startedConns, event.conn] : context.startedConns,
    })),
    endRequest: assign({ busy: ({ context }) => context.busy - 1 }),
    releaseListener: assign({ holdsListener: false }),
    noteFatalSignal: assign(({ event }) =>
      event.type === 'worker.signal' && (event.signal === 'KILL' || event.signal === 'ABRT') ? { fatal: { signal: event.signal } } : {},
    ),
    noteCrash: assign(({ event }) => (event.type === 'worker.crash' ? { fatal: { crash: event.code } } : {})),
    noteQuit: assign({ quitting: true }),
  },
  guards: {
    reachedMaxRequests: policyGuardPlaceholder,
    acceptsAfterDrain: policyGuardPlaceholder,
    heartbeatsWhileDraining: policyGuardPlaceholder,
    drainComplete: policyGuardPlaceholder,
    poolRunsSubmitted: policyGuardPlaceholder,
    closesListenerAtDrain: policyGuardPlaceholder,
    servesLastLoopTurn: policyGuardPlaceholder,
    hasFreeThread: policyGuardPlaceholder,
    hasRoomForConn: policyGuardPlaceholder,
    /** The loop that notifies runs now: always for threaded workers; between requests for the sync worker (its loop waits for the handler). */
    heartbeatsNow: policyGuardPlaceholder,
    isTerm: ({ event }) => event.type === 'worker.signal' && event.signal === 'TERM',
    isQuit: ({ event }) => event.type === 'worker.signal' && (event.signal === 'QUIT' || event.signal === 'INT'),
    isFatal: ({ event }) => event.type === 'worker.signal' && (event.signal === 'KILL' || event.signal === 'ABRT'),
    isKill: ({ event }) => event.type === 'worker.signal' && event.signal === 'KILL',
    isStop: ({ event }) => event.type === 'worker.signal' && event.signal === 'STOP',
    isCont: ({ event }) => event.type === 'worker.signal' && event.signal === 'CONT',
    connIsNew: ({ context, event }) => event.type === 'worker.accept' && !context.openConns.includes(event.conn),
    connIsOpen: ({ context, event }) => 'conn' in event && context.openConns.includes(event.conn),
    hasLastTurnAccept: ({ context }) => context.lastTurnAccepts > 0,
    hasBusyRequest: ({ context }) => context.busy > 0,
    holdsListener: ({ context }) => context.holdsListener,
    fullyReleased: ({ context }) => context.openConns.length === 0 && !context.holdsListener,
    exitCodeIsRight: ({ context, event }) => event.type === 'worker.exit' && event.code === exitCodeOf(context),
  },
  delays: { gracefulTimeout: 30_000, selectTimeout: 1000 },
}).createMachine({
  id: 'worker',
  context: { requests: 0, busy: 0, openConns: [], startedConns: [], holdsListener: true, maxRequests: null, lastTurnAccepts: 1, fatal: null, quitting: false },
  initial: 'unborn',
  states: {
    unborn: { on: { 'worker.boot': { target: 'booting', actions: 'noteLimit' } } },
    booting: {
      on: {
        'worker.ready': 'alive',
        'worker.crash': { target: '#worker.dying.crashed', actions: 'noteCrash' },
        'worker.signal': [
          { guard: 'isFatal', target: 'dying', actions: 'noteFatalSignal' },
          { guard: 'isQuit', target: 'exiting', actions: 'noteQuit' },
          { guard: 'isTerm', target: 'exiting' },
        ],
      },
    },
    /** Alive: serving, or draining (gunicorn's alive = False, still running). */
    alive: {
      initial: 'serving',
      on: {
        'worker.request-start': { guard: and(['connIsOpen', 'hasFreeThread']), actions: 'startRequest' },
        // Its connection may be gone already (aborted by an error): the thread is free once the handler returns.
        'worker.request-end': { guard: 'hasBusyRequest', actions: 'endRequest' },
        'worker.conn-closed': { guard: 'connIsOpen', actions: 'removeConn' },
        'worker.signal': [
          { guard: 'isFatal', target: 'dying', actions: 'noteFatalSignal' },
          { guard: 'isQuit', target: 'exiting', actions: 'noteQuit' },
        ],
        'worker.crash': { target: '#worker.dying.crashed', actions: 'noteCrash' },
      },
      states: {
        serving: {
          on: {
            'worker.heartbeat': { guard: 'heartbeatsNow' },
            'worker.accept': { guard: and(['connIsNew', 'hasRoomForConn']), actions: 'addConn' },
            'worker.max-requests': { guard: 'reachedMaxRequests', target: 'draining' },
            'worker.signal': [
              { guard: 'isTerm', target: 'draining' },
              { guard: 'isStop', target: '#worker.frozen' },
            ],
          },
        },
        draining: {
          entry: [
            'drainConnections',
            raise({ type: 'worker.graceful-timeout' }, { delay: 'gracefulTimeout', id: WORKER_TIMER_IDS.graceful }),
          ],
          initial: 'turnDecision',
          // Done when no request is in progress and no connection is left (or, for
          // policies that abandon idle connections, none is busy) — the policy's guard.
          always: { guard: 'drainComplete', target: '#worker.exiting' },
          on: {
            'worker.heartbeat': { guard: and(['heartbeatsWhileDraining', 'heartbeatsNow']) },
            // A second TERM, or max-requests already reached: nothing new.
            'worker.signal': { guard: 'isTerm' },
            'worker.graceful-timeout': { target: '#worker.exiting', actions: { type: 'abortConnections', params: { reason: 'deadline' } } },
          },
          states: {
            turnDecision: { always: [{ guard: 'servesLastLoopTurn', target: 'lastTurn' }, { target: 'listening' }] },
            /**
             * gthread 20.x: the poll in progress runs out before the loop sees alive = False. What it
             * returns with is still dispatched — a new connection (to a pool thread) or a readable
             * keep-alive connection (served, with close) — and that ends the turn; so does its timeout,
             * or, as far as anyone outside can tell, its phase (`worker.turn-end`).
             */
            lastTurn: {
              entry: raise({ type: 'worker.turn-timeout' }, { delay: 'selectTimeout', id: WORKER_TIMER_IDS.turn }),
              exit: [cancel(WORKER_TIMER_IDS.turn), 'endLastTurn'],
              on: {
                'worker.accept': { guard: and(['connIsNew', 'hasRoomForConn']), target: 'listening', actions: 'addConn' },
                'worker.turn-end': { target: 'listening' },
                'worker.turn-timeout': { target: 'listening' },
              },
            },
            listening: {
              always: { guard: 'closesListenerAtDrain', target: 'closingListener' },
              on: {
                // gthread 21–23: the loop turn already in progress may still accept, once (gunicorn #3038).
                'worker.accept': {
                  guard: and(['acceptsAfterDrain', 'hasLastTurnAccept', 'connIsNew', 'hasRoomForConn']),
                  actions: ['addConn', 'useLastTurnAccept'],
                },
              },
            },
            closingListener: {
              entry: 'closeListenerCopy',
              on: {
                'worker.accept': {
                  guard: and(['acceptsAfterDrain', 'hasLastTurnAccept', 'connIsNew', 'hasRoomForConn']),
                  actions: ['addConn', 'useLastTurnAccept'],
                },
                'worker.close-listener': { guard: 'holdsListener', target: 'released', actions: 'releaseListener' },
              },
            },
            released: {},
          },
        },
      },
    },
    /**
     * SIGSTOP while serving: does nothing, not even heartbeat, until CONT or SIGKILL — the one signal a
     * stopped process cannot hold off. Any other signal waits in the kernel until CONT: the process
     * takes it only then.
     */
    frozen: {
      on: {
        'worker.signal': [
          { guard: 'isKill', target: 'dying', actions: 'noteFatalSignal' },
          { guard: 'isCont', target: 'alive.serving' },
        ],
        'worker.crash': { target: '#worker.dying.crashed', actions: 'noteCrash' },
      },
    },
    /** Leaving: what is still open is closed by the exit itself. */
    exiting: {
      entry: [{ type: 'abortConnections', params: ({ context }) => ({ reason: context.quitting ? 'quit' : 'worker-exit' }) }, 'exitProcess'],
      on: {
        // gthread: the pool's threads run what they were given before the process can exit.
        'worker.request-start': { guard: and(['poolRunsSubmitted', 'connIsOpen', 'hasFreeThread']), actions: 'startRequest' },
        'worker.conn-closed': { guard: 'connIsOpen', actions: 'removeConn' },
        'worker.request-end': { guard: 'hasBusyRequest', actions: 'endRequest' },
        'worker.close-listener': { guard: 'holdsListener', actions: 'releaseListener' },
        'worker.exit': { guard: and(['fullyReleased', 'exitCodeIsRight']), target: 'exited' },
        'worker.signal': [{ guard: 'isFatal', target: 'dying', actions: 'noteFatalSignal' }, {}],
        'worker.crash': { target: '#worker.dying.crashed', actions: 'noteCrash' },
        'worker.heartbeat': {},
        'worker.graceful-timeout': {},
      },
    },
    /**
     * The process is ended from outside: the kernel closes every fd, whatever the machine was doing.
     * `killed` by KILL (or the heartbeat's ABRT) is a decision; `crashed` (worker.crash: an uncaught
     * error, a SEGV) is a fault, and the trace says which — connections are aborted as one or the other.
     */
    dying: {
      initial: 'killed',
      on: {
        'worker.conn-closed': { guard: 'connIsOpen', actions: 'removeConn' },
        'worker.close-listener': { guard: 'holdsListener', actions: 'releaseListener' },
        'worker.request-end': {},
        // A KILL after the ABRT ends the process for good: its exit code is the KILL's.
        'worker.signal': [{ guard: 'isKill', actions: 'noteFatalSignal' }, {}],
        'worker.graceful-timeout': {},
        'worker.exit': { guard: and(['fullyReleased', 'exitCodeIsRight']), target: 'exited' },
      },
      states: {
        killed: { entry: [{ type: 'abortConnections', params: { reason: 'killed' } }, 'exitProcess'] },
        crashed: { entry: [{ type: 'abortConnections', params: { reason: 'crashed' } }, 'exitProcess'] },
      },
    },
    exited: { type: 'final' },
  },
});
