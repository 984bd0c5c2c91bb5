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
 */
import { and, assign, raise, setup } from 'xstate';
import type { AbortReason, ConnId, MachineEvent, WorkerEvent } from '../events.ts';

export type WorkerMachineEvent = MachineEvent<WorkerEvent>;

export interface WorkerContext {
  /** Requests started (gunicorn's `nr`, incremented before the app runs). */
  requests: number;
  /** Requests in progress. */
  busy: number;
  openConns: ConnId[];
  /** Open connections that have started at least one request. */
  startedConns: ConnId[];
  holdsListener: boolean;
}

const policyGuardPlaceholder = () => {
  throw new Error('worker machine used without a policy: build it with machinesFor(policy, params)');
};

export const GRACEFUL_TIMER_ID = 'graceful';

export const workerChart = setup({
  types: { context: {} as WorkerContext, events: {} as WorkerMachineEvent },
  actions: {
    // Commands.
    drainConnections: () => {},
    closeListenerCopy: () => {},
    abortConnections: (_, _params: { reason: AbortReason }) => {},
    exitProcess: () => {},
    // Bookkeeping.
    addConn: assign({
      openConns: ({ context, event }) => (event.type === 'worker.accept' ? [...context.openConns, event.conn] : context.openConns),
    }),
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
  },
  guards: {
    reachedMaxRequests: policyGuardPlaceholder,
    acceptsAfterDrain: policyGuardPlaceholder,
    heartbeatsWhileDraining: policyGuardPlaceholder,
    drainComplete: policyGuardPlaceholder,
    closesListenerAtDrain: policyGuardPlaceholder,
    isTerm: ({ event }) => event.type === 'worker.signal' && event.signal === 'TERM',
    isQuit: ({ event }) => event.type === 'worker.signal' && (event.signal === 'QUIT' || event.signal === 'INT'),
    isFatal: ({ event }) => event.type === 'worker.signal' && (event.signal === 'KILL' || event.signal === 'ABRT'),
    isStop: ({ event }) => event.type === 'worker.signal' && event.signal === 'STOP',
    isCont: ({ event }) => event.type === 'worker.signal' && event.signal === 'CONT',
    connIsNew: ({ context, event }) => event.type === 'worker.accept' && !context.openConns.includes(event.conn),
    connIsOpen: ({ context, event }) => 'conn' in event && context.openConns.includes(event.conn),
    hasBusyRequest: ({ context }) => context.busy > 0,
    holdsListener: ({ context }) => context.holdsListener,
    fullyReleased: ({ context }) => context.openConns.length === 0 && !context.holdsListener,
  },
  delays: { gracefulTimeout: 30_000 },
}).createMachine({
  id: 'worker',
  context: { requests: 0, busy: 0, openConns: [], startedConns: [], holdsListener: true },
  initial: 'unborn',
  states: {
    unborn: { on: { 'worker.boot': 'booting' } },
    booting: {
      on: {
        'worker.ready': 'alive',
        'worker.crash': '#worker.dying.crashed',
        'worker.signal': [
          { guard: 'isFatal', target: 'dying' },
          { guard: 'isQuit', target: 'exiting' },
          { guard: 'isTerm', target: 'exiting' },
        ],
      },
    },
    /** Alive: serving, or draining (gunicorn's alive = False, still running). */
    alive: {
      initial: 'serving',
      on: {
        'worker.request-start': { guard: 'connIsOpen', actions: 'startRequest' },
        'worker.request-end': { guard: and(['connIsOpen', 'hasBusyRequest']), actions: 'endRequest' },
        'worker.conn-closed': { guard: 'connIsOpen', actions: 'removeConn' },
        'worker.signal': [
          { guard: 'isFatal', target: 'dying' },
          { guard: 'isQuit', target: 'exiting' },
        ],
        'worker.crash': '#worker.dying.crashed',
      },
      states: {
        serving: {
          on: {
            'worker.heartbeat': {},
            'worker.accept': { guard: 'connIsNew', actions: 'addConn' },
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
            raise({ type: 'worker.graceful-timeout' }, { delay: 'gracefulTimeout', id: GRACEFUL_TIMER_ID }),
          ],
          initial: 'listening',
          // Done when no request is in progress and no connection is left (or, for
          // policies that abandon idle connections, none is busy) — the policy's guard.
          always: { guard: 'drainComplete', target: '#worker.exiting' },
          on: {
            'worker.heartbeat': { guard: 'heartbeatsWhileDraining' },
            // A second TERM, or max-requests already reached: nothing new.
            'worker.signal': { guard: 'isTerm' },
            'worker.graceful-timeout': { target: '#worker.exiting', actions: { type: 'abortConnections', params: { reason: 'deadline' } } },
          },
          states: {
            listening: {
              always: { guard: 'closesListenerAtDrain', target: 'closingListener' },
              on: {
                // gthread 21–23: the loop turn already in progress may still accept (gunicorn #3038).
                'worker.accept': { guard: and(['acceptsAfterDrain', 'connIsNew']), actions: 'addConn' },
              },
            },
            closingListener: {
              entry: 'closeListenerCopy',
              on: {
                'worker.accept': { guard: and(['acceptsAfterDrain', 'connIsNew']), actions: 'addConn' },
                'worker.close-listener': { guard: 'holdsListener', target: 'released', actions: 'releaseListener' },
              },
            },
            released: {},
          },
        },
      },
    },
    /** SIGSTOP while serving: does nothing, not even heartbeat, until CONT or a fatal signal. */
    frozen: {
      on: {
        'worker.signal': [
          { guard: 'isCont', target: 'alive.serving' },
          { guard: 'isFatal', target: 'dying' },
        ],
        'worker.crash': '#worker.dying.crashed',
      },
    },
    /** Leaving: what is still open is closed by the exit itself. */
    exiting: {
      entry: [{ type: 'abortConnections', params: { reason: 'worker-exit' } }, 'exitProcess'],
      on: {
        'worker.conn-closed': { guard: 'connIsOpen', actions: 'removeConn' },
        'worker.request-end': { guard: 'hasBusyRequest', actions: 'endRequest' },
        'worker.close-listener': { guard: 'holdsListener', actions: 'releaseListener' },
        'worker.exit': { guard: 'fullyReleased', target: 'exited' },
        'worker.signal': [{ guard: 'isFatal', target: 'dying' }, {}],
        'worker.crash': '#worker.dying.crashed',
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
        'worker.signal': {},
        'worker.graceful-timeout': {},
        'worker.exit': { guard: 'fullyReleased', target: 'exited' },
      },
      states: {
        killed: { entry: [{ type: 'abortConnections', params: { reason: 'killed' } }, 'exitProcess'] },
        crashed: { entry: [{ type: 'abortConnections', params: { reason: 'crashed' } }, 'exitProcess'] },
      },
    },
    exited: { type: 'final' },
  },
});
