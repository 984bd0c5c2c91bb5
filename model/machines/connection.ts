/**
 * Server side of one TCP/unix connection, from accept to close.
 *
 * Events are observations (`conn.bytes`: request bytes reached the socket;
 * `conn.close`: the socket was closed). Where the *server* decides something —
 * close now, half-close, arm a timer — the chart enters a state whose entry
 * action names the decision (`closeSocket`, `halfClose`, a delayed `raise`);
 * the simulator and impl/ carry those actions out, and the replay checker
 * verifies that the observation that follows is the one the chart allows.
 *
 * The policy decides at named points only (guards): whether a response must
 * carry `Connection: close`, whether a keep-alive response of a draining
 * worker is followed by a close, what happens to an idle connection when
 * draining starts, and whether closes linger.
 */
import { and, assign, cancel, not, raise, setup } from 'xstate';
import type { ClientId, ConnEvent, MachineEvent, WorkerId, AbortReason } from '../events.ts';
import { command, type CommandOf } from './commands.ts';

export type ConnMachineEvent = MachineEvent<ConnEvent>;

export interface ConnContext {
  worker: WorkerId | null;
  client: ClientId | null;
  /** The owning worker has started draining. */
  draining: boolean;
  /** Draining had started when the current request's handler started (the header decision point of gunicorn). */
  drainingAtHandlerStart: boolean;
  /** Request bytes sit in the receive buffer, unread by the server: a close now sends RST. */
  unread: boolean;
  /** The request whose bytes arrived and that is not read yet. */
  pendingReq: string | null;
  /** Only part of that request is here (its body is still on its way): the header timer guards it. */
  pendingPartial: boolean;
  /** The request being served (read, handled, not yet answered). */
  req: string | null;
  /** The request being served allows keep-alive. */
  requestKeepAlive: boolean;
  /** Responses written on this connection. */
  responses: number;
  abortReason: AbortReason | null;
  /** The client half-closed (FIN) while a request was outstanding: it still reads its response, and sends nothing more. */
  peerFinned: boolean;
}

export const TIMER_IDS = { keepAlive: 'keepalive', grace: 'grace', linger: 'linger', header: 'header' } as const;

export const connCommands = {
  /** close(2): FIN, or RST when request bytes are unread (RFC 1122 §4.2.2.13) — `rst` says which. */
  closeSocket: command<{ rst: boolean }>(),
  /** shutdown(SHUT_WR): FIN, and keep reading (and discarding). */
  halfClose: command(),
};
export type ConnCommand = CommandOf<typeof connCommands>;


const policyGuardPlaceholder = () => {
  throw new Error('connection machine used without a policy: build it with machinesFor(policy, params)');
};

export const connectionChart = setup({
  types: {
    context: {} as ConnContext,
    events: {} as ConnMachineEvent,
  },
  actions: {
    ...connCommands,
    markDraining: assign({ draining: true }),
    notePeerFin: assign({ peerFinned: true }),
    notePendingRequest: assign({
      unread: true,
      pendingReq: ({ event }) => (event.type === 'conn.bytes' ? event.req : null),
      pendingPartial: ({ event }) => event.type === 'conn.bytes' && event.partial === true,
    }),
    noteRequestWhole: assign({ pendingPartial: false }),
    recordResponse: assign({ responses: ({ context }) => context.responses + 1, req: null }),
  },
  guards: {
    closeHeaderIsCorrect: policyGuardPlaceholder,
    closesAfterKeepAliveResponseWhileDraining: policyGuardPlaceholder,
    idleClosesOnDrain: policyGuardPlaceholder,
    idleOrphanedOnDrain: policyGuardPlaceholder,
    idleKeptOnDrain: policyGuardPlaceholder,
    idleKeepsKeepAliveTimerOnDrain: policyGuardPlaceholder,
    idleGracedOnDrain: policyGuardPlaceholder,
    pendingOrphanedOnDrain: policyGuardPlaceholder,
    poolRunsItOnExit: policyGuardPlaceholder,
    waitsForPoller: policyGuardPlaceholder,
    returnsToPoller: policyGuardPlaceholder,
    waitsOutLastTurn: policyGuardPlaceholder,
    freshHeldByThread: policyGuardPlaceholder,
    lingers: policyGuardPlaceholder,
    keepAliveEnabled: policyGuardPlaceholder,
    hasHeaderTimer: policyGuardPlaceholder,
    isDraining: ({ context }) => context.draining,
    // The client half-closed and sent nothing more than what was answered: a pipelined request still waits otherwise.
    peerDone: ({ context }) => context.peerFinned && !context.unread,
    hasServedARequest: ({ context }) => context.responses > 0,
    respondsWithClose: ({ event }) => event.type === 'conn.respond' && event.close,
    readsPendingRequest: ({ context, event }) => event.type === 'conn.read' && context.pendingReq === event.req,
    pendingIsPartial: ({ context }) => context.pendingPartial,
    hasPendingRequest: ({ context }) => context.pendingReq !== null,
    // The rest of the request waiting to be read: it is whole now.
    completesPendingRequest: ({ context, event }) =>
      event.type === 'conn.bytes' && context.pendingPartial && event.req === context.pendingReq && event.partial !== true,
    isCurrentRequest: ({ context, event }) =>
      'req' in event && event.type !== 'conn.bytes' && context.req === event.req,
    rstMatchesUnreadBytes: ({ context, event }) => event.type === 'conn.close' && event.rst === context.unread,
  },
  delays: {
    keepAlive: 2000,
    idleGrace: 1000,
    linger: 2000,
    headerTimeout: 10_000,
  },
}).createMachine({
  id: 'conn',
  context: {
    worker: null,
    client: null,
    draining: false,
    drainingAtHandlerStart: false,
    unread: false,
    pendingReq: null,
    pendingPartial: false,
    req: null,
    requestKeepAlive: true,
    responses: 0,
    abortReason: null,
    peerFinned: false,
  },
  initial: 'accepting',
  on: {
    'conn.peer-rst': { target: '.closed', actions: assign({ unread: false }) },
  },
  states: {
    accepting: {
      on: {
        'conn.open': {
          target: 'idle',
          actions: assign({ worker: ({ event }) => event.worker, client: ({ event }) => event.client }),
        },
      },
    },
    /** No request on the connection: freshly accepted, or kept alive after a response. */
    idle: {
      initial: 'route',
      on: {
        'conn.bytes': [
          // In the worker's poller (gthread): the loop has to return with it and hand it to a thread.
          { guard: 'waitsForPoller', target: 'unpolled', actions: 'notePendingRequest' },
          { target: 'pending', actions: 'notePendingRequest' },
        ],
        // The client closed its end; the server reads EOF and closes. Nothing to linger for.
        'conn.peer-fin': { target: 'closingHard' },
        'conn.abort': { target: 'closingHard', actions: assign({ abortReason: ({ event }) => event.reason }) },
      },
      states: {
        route: {
          always: [
            { guard: 'isDraining', target: 'drainDecision' },
            { guard: 'hasServedARequest', target: 'keptAlive' },
            { target: 'fresh' },
          ],
        },
        /** Accepted, first request not arrived yet: a client that never sends one (slowloris) meets the header timer. */
        fresh: {
          initial: 'checking',
          states: {
            // Waiting for a request (its head, or the rest of it): the header timer runs when the server
            // has one (headerTimeoutMs > 0), and gives up on the client when it fires.
            checking: { always: [{ guard: 'hasHeaderTimer', target: 'timed' }, { target: 'untimed' }] },
            timed: {
              entry: raise({ type: 'conn.header-timeout' }, { delay: 'headerTimeout', id: TIMER_IDS.header }),
              exit: cancel(TIMER_IDS.header),
              on: { 'conn.header-timeout': { target: '#conn.closing' } },
            },
            untimed: {},
          },
          on: {
            'conn.drain': [
              // Already in a pool thread, blocked reading the first request: it will be served.
              { guard: 'freshHeldByThread', target: 'drainKept', actions: 'markDraining' },
              { target: 'drainDecision', actions: 'markDraining' },
            ],
          },
        },
        /** After a keep-alive response: the ordinary idle timeout runs. */
        keptAlive: {
          entry: raise({ type: 'conn.keepalive-timeout' }, { delay: 'keepAlive', id: TIMER_IDS.keepAlive }),
          exit: cancel(TIMER_IDS.keepAlive),
          on: {
            'conn.keepalive-timeout': { target: '#conn.closing' },
            'conn.drain': [
              // gevent/eventlet: the running keep-alive timer simply goes on.
              { guard: 'idleKeepsKeepAliveTimerOnDrain', actions: 'markDraining' },
              { target: 'drainDecision', actions: 'markDraining' },
            ],
          },
        },
        /** The policy's decision point for an idle connection of a draining worker. */
        drainDecision: {
          always: [
            { guard: 'idleClosesOnDrain', target: '#conn.closing' },
            { guard: and(['idleOrphanedOnDrain', 'waitsOutLastTurn']), target: 'lastTurn' },
            { guard: 'idleOrphanedOnDrain', target: '#conn.orphaned' },
            { guard: 'idleGracedOnDrain', target: 'drainGrace' },
            { guard: 'idleKeepsKeepAliveTimerOnDrain', target: 'drainKeepAlive' },
            { guard: 'idleKeptOnDrain', target: 'drainKept' },
          ],
        },
        /** Waiting an idle window for one more request (answered with Connection: close). */
        drainGrace: {
          entry: raise({ type: 'conn.grace-timeout' }, { delay: 'idleGrace', id: TIMER_IDS.grace }),
          exit: cancel(TIMER_IDS.grace),
          on: { 'conn.grace-timeout': { target: '#conn.closing' } },
        },
        drainKeepAlive: {
          entry: raise({ type: 'conn.keepalive-timeout' }, { delay: 'keepAlive', id: TIMER_IDS.keepAlive }),
          exit: cancel(TIMER_IDS.keepAlive),
          on: { 'conn.keepalive-timeout': { target: '#conn.closing' } },
        },
        /** Kept open until a request arrives or the worker's graceful deadline aborts it. */
        drainKept: {},
        /** Its worker's last loop turn may still read a request from it (gthread 20.x); when the turn ends, it is abandoned. */
        lastTurn: {
          on: {
            'conn.turn-end': { target: '#conn.orphaned' },
            // The turn's poll returns with it, and hands it over: that is the dispatch.
            'conn.bytes': { target: '#conn.pending', actions: 'notePendingRequest' },
          },
        },
      },
    },
    /**
     * A request arrived on a connection that waits in the worker's poller (gthread's keep-alive
     * connections): unread, and not yet any thread's — the loop's next poll returns with it and hands
     * it over (`conn.dispatch`). A drain that ends the loop first abandons it; its bytes stay unread,
     * and the exit resets them.
     */
    unpolled: {
      on: {
        'conn.bytes': [{ guard: 'completesPendingRequest', actions: 'noteRequestWhole' }, {}],
        'conn.dispatch': { target: 'pending' },
        'conn.drain': [
          // The turn in progress may still return with it (gthread 20.x's last loop turn).
          { guard: 'waitsOutLastTurn', actions: 'markDraining' },
          { guard: 'idleOrphanedOnDrain', target: 'orphaned', actions: 'markDraining' },
          // A policy that keeps serving while it drains (gthread 24) hands it over still.
          { actions: 'markDraining' },
        ],
        // Only a drain begins a last turn: its end finds the request still in the poller, abandoned.
        'conn.turn-end': { guard: 'isDraining', target: 'orphaned' },
        // The client half-closed after its request: it still reads the response; the server closes after it.
        'conn.peer-fin': { actions: 'notePeerFin' },
        'conn.abort': { target: 'closingHard', actions: assign({ abortReason: ({ event }) => event.reason }) },
      },
    },
    /**
     * Request bytes are in the receive buffer, for a thread to read (now, or when one is free); not read
     * yet. While only part of the request is here (`partial`: its body is on its way) the header timer
     * runs on: it guards a body that never completes, as it guards a head. A whole request waits for a
     * thread untimed — a busy pool is the server's doing, not the client's (the timer used to give up on
     * it too, which broke safe-drain's only-unavoidable-failures: script waiting-for-a-thread with an
     * 800 ms timer). A FIN before the rest means the rest never comes: the server gives up at once.
     */
    pending: {
      initial: 'checking',
      states: {
        // The header timer again (see idle.fresh): a request whose rest never comes is given up on.
        checking: { always: [{ guard: and(['hasHeaderTimer', 'pendingIsPartial']), target: 'timed' }, { target: 'untimed' }] },
        timed: {
          entry: raise({ type: 'conn.header-timeout' }, { delay: 'headerTimeout', id: TIMER_IDS.header }),
          exit: cancel(TIMER_IDS.header),
          on: { 'conn.header-timeout': { target: '#conn.closing' } },
        },
        untimed: {},
      },
      on: {
        'conn.bytes': [{ guard: 'completesPendingRequest', target: '.untimed', actions: 'noteRequestWhole' }, {}],
        'conn.read': {
          guard: 'readsPendingRequest',
          target: 'handling',
          actions: assign({ unread: false, pendingReq: null, req: ({ event }) => event.req, requestKeepAlive: ({ event }) => event.keepAlive ?? true }),
        },
        'conn.drain': [
          { guard: 'pendingOrphanedOnDrain', target: 'orphaned', actions: 'markDraining' },
          { actions: 'markDraining' },
        ],
        'conn.peer-fin': [
          // Its rest will never come: read to the EOF and given up on (nothing is left unread).
          { guard: 'pendingIsPartial', target: '#conn.closing', actions: assign({ peerFinned: true, unread: false, pendingReq: null, pendingPartial: false }) },
          { actions: 'notePeerFin' },
        ],
        'conn.abort': [
          // Handed to the pool already: the worker's exit waits for it, and its response closes.
          { guard: 'poolRunsItOnExit', actions: 'markDraining' },
          { target: 'closingHard', actions: assign({ abortReason: ({ event }) => event.reason }) },
        ],
      },
    },
    /** A request was read; the app handles it and the response is written. */
    handling: {
      initial: 'read',
      on: {
        // Pipelined or retransmitted bytes: they wait in the buffer, unread.
        'conn.bytes': { actions: assign({ unread: true }) },
        'conn.drain': { actions: 'markDraining' },
        'conn.peer-fin': { actions: 'notePeerFin' },
        'conn.abort': [
          { guard: 'poolRunsItOnExit', actions: 'markDraining' },
          { target: 'closingHard', actions: assign({ abortReason: ({ event }) => event.reason }) },
        ],
      },
      states: {
        read: {
          on: {
            'conn.handler-start': {
              guard: 'isCurrentRequest',
              target: 'running',
              actions: assign({ drainingAtHandlerStart: ({ context }) => context.draining }),
            },
          },
        },
        running: {
          on: { 'conn.handler-finish': { guard: 'isCurrentRequest', target: 'finished' } },
        },
        finished: {
          on: {
            'conn.respond': [
              {
                guard: and(['isCurrentRequest', 'closeHeaderIsCorrect', 'respondsWithClose']),
                target: '#conn.closing',
                actions: 'recordResponse',
              },
              // A poller's pool answers, and only then hands the connection back (gthread: the done callback).
              {
                guard: and(['isCurrentRequest', 'closeHeaderIsCorrect', 'returnsToPoller']),
                target: '#conn.returning',
                actions: 'recordResponse',
              },
              {
                guard: and(['isCurrentRequest', 'closeHeaderIsCorrect', 'isDraining', 'closesAfterKeepAliveResponseWhileDraining']),
                target: '#conn.closing',
                actions: 'recordResponse',
              },
              // The client half-closed meanwhile: nothing more can come (gthread's poller reads the EOF and closes).
              {
                guard: and(['isCurrentRequest', 'closeHeaderIsCorrect', 'peerDone']),
                target: '#conn.closing',
                actions: 'recordResponse',
              },
              {
                guard: and(['isCurrentRequest', 'closeHeaderIsCorrect']),
                target: '#conn.idle',
                actions: 'recordResponse',
              },
            ],
          },
        },
      },
    },
    /**
     * A keep-alive response is written, and the pool thread has yet to carry out what its done callback
     * decides (gthread: `finish_request`, after `post_request`): `if keepalive and self.alive:` register
     * the connection in the poller, `else: conn.close()`. The decision comes at once (alive is read
     * microseconds after the response); carrying it out waits for the keep-alive lock and the GIL, which
     * 20 threads and the loop contend for. The client's next request, sent as soon as it read the
     * response, is often here by then — unread: a close then resets it (RFC 1122 §4.2.2.13), where an
     * immediate close would have been a FIN the request ran into.
     */
    returning: {
      initial: 'deciding',
      on: {
        'conn.bytes': { actions: 'notePendingRequest' },
        // Decided already: a drain now is news for the connection once it is back in the poller.
        'conn.drain': { actions: 'markDraining' },
        'conn.peer-fin': { actions: 'notePeerFin' },
        // The process is leaving, or the connection failed: the kernel closes it (RST if the request waits unread).
        'conn.abort': { target: 'closingHard', actions: assign({ abortReason: ({ event }) => event.reason }) },
      },
      states: {
        deciding: {
          always: [{ guard: and(['isDraining', 'closesAfterKeepAliveResponseWhileDraining']), target: 'toClose' }, { target: 'toKeep' }],
        },
        /** The worker was draining when the callback read alive: it closes the connection. */
        toClose: {
          on: { 'conn.returned': { target: '#conn.closing' } },
        },
        /** Kept: back in the poller, with the next request if it came meanwhile (a drain meanwhile is taken there). */
        toKeep: {
          on: {
            'conn.returned': [
              // The client half-closed and sent nothing more: nothing can come.
              { guard: 'peerDone', target: '#conn.closing' },
              { guard: 'hasPendingRequest', target: '#conn.unpolled' },
              { target: '#conn.idle' },
            ],
          },
        },
      },
    },
    /** Never read again; closed only when the process exits (or the deadline aborts it). */
    orphaned: {
      on: {
        'conn.bytes': { actions: assign({ unread: true }) },
        'conn.peer-fin': {},
        'conn.abort': { target: 'closingHard', actions: assign({ abortReason: ({ event }) => event.reason }) },
      },
    },
    /** The server decided to close (voluntarily). */
    closing: {
      // A client that half-closed already sends nothing more to linger for.
      always: [{ guard: and(['lingers', not('peerDone')]), target: 'lingering' }, { target: 'closingHard' }],
    },
    /** RFC 9112 §9.6: half-close, read and discard until the peer closes or the bound passes. */
    lingering: {
      initial: 'shuttingDown',
      entry: 'halfClose',
      on: {
        // Discarded: whatever arrives now is never processed, and is not left unread.
        'conn.bytes': { actions: assign({ unread: false }) },
        'conn.abort': { target: 'closingHard', actions: assign({ abortReason: ({ event }) => event.reason }) },
      },
      states: {
        shuttingDown: { on: { 'conn.half-close': { target: 'discarding', actions: assign({ unread: false }) } } },
        discarding: {
          entry: raise({ type: 'conn.linger-timeout' }, { delay: 'linger', id: TIMER_IDS.linger }),
          exit: cancel(TIMER_IDS.linger),
          on: {
            'conn.peer-fin': { target: '#conn.closingHard' },
            'conn.linger-timeout': { target: '#conn.closingHard' },
          },
        },
      },
    },
    /** close(): FIN, or RST if request bytes are still unread (RFC 1122 §4.2.2.13). */
    closingHard: {
      entry: { type: 'closeSocket', params: ({ context }) => ({ rst: context.unread }) },
      on: {
        'conn.bytes': { actions: assign({ unread: true }) },
        'conn.peer-fin': {},
        'conn.abort': {},
        'conn.close': { guard: 'rstMatchesUnreadBytes', target: 'closed' },
      },
    },
    closed: { type: 'final' },
  },
});
