/**
 * One client connection, as the client sees it: connecting (through the
 * accept queue, or failing with EAGAIN / refusal / SYN timeouts), then
 * requests and their responses, idle in the client's pool between them,
 * until either side closes it. A client may pipeline (RFC 9112 §9.3.2): send
 * the next request before the response to the last one, the responses
 * coming in the order of the requests.
 *
 * A failure names what the client observed (`reset`, `empty-reply`,
 * `timeout`, …); whether the failed request had been processed is a question
 * for the properties, which see the server's side too.
 */
import { and, assign, setup } from 'xstate';
import type { ClientEvent, MachineEvent } from '../events.ts';

export type ClientMachineEvent = MachineEvent<ClientEvent>;

export interface ClientContext {
  /** The request awaiting its response: the oldest one sent and not answered. */
  req: string | null;
  /** Requests sent behind `req` (pipelined), oldest first: each is answered after the one before it. */
  pipelined: readonly string[];
  responses: number;
}

/** The next response answers the oldest pipelined request, if any. */
const answered = assign<ClientContext, ClientMachineEvent, undefined, ClientMachineEvent, never>({
  req: ({ context }) => context.pipelined[0] ?? null,
  pipelined: ({ context }) => context.pipelined.slice(1),
  responses: ({ context }) => context.responses + 1,
});

export const clientChart = setup({
  types: { context: {} as ClientContext, events: {} as ClientMachineEvent },
  guards: {
    isCurrentRequest: ({ context, event }) => 'req' in event && event.req === context.req,
    hasPipelined: ({ context }) => context.pipelined.length > 0,
    // After a `Connection: close` response the requests pipelined behind it are never answered
    // (RFC 9112 §9.6: the server processes none of them); the client sees the close fail them.
    isUnansweredPipelined: ({ context, event }) =>
      event.type === 'client.fail' && event.req !== undefined && (event.req === context.req || context.pipelined.includes(event.req)) && (event.reason === 'reset' || event.reason === 'empty-reply'),
    isConnectFailure: ({ event }) =>
      event.type === 'client.fail' && (event.reason === 'eagain' || event.reason === 'refused' || event.reason === 'connect-timeout' || event.reason === 'reset'),
    isRequestFailure: ({ context, event }) =>
      event.type === 'client.fail' && event.req === context.req && event.reason !== 'eagain' && event.reason !== 'refused' && event.reason !== 'connect-timeout',
    responseCloses: ({ event }) => event.type === 'client.response' && event.close,
    isIdleReset: ({ event }) => event.type === 'client.fail' && event.req === undefined && event.reason === 'reset',
  },
}).createMachine({
  id: 'client',
  context: { req: null, pipelined: [], responses: 0 },
  initial: 'unconnected',
  states: {
    unconnected: { on: { 'client.connect': 'connecting' } },
    connecting: {
      on: {
        'client.syn-retry': {},
        'client.connected': 'open',
        'client.fail': { guard: 'isConnectFailure', target: 'failed' },
      },
    },
    open: {
      initial: 'ready',
      on: { 'client.close': '#client.closed' },
      states: {
        /** Idle in the pool: may send the next request. */
        ready: {
          on: {
            'client.send': { target: 'awaiting', actions: assign({ req: ({ event }) => event.req }) },
            // The server closed the idle connection; the client notices.
            'client.eof': '#client.closed',
            'client.fail': { guard: 'isIdleReset', target: '#client.closed' },
          },
        },
        awaiting: {
          on: {
            // Pipelining: the next request goes out before this one is answered.
            'client.send': { actions: assign({ pipelined: ({ context, event }) => [...context.pipelined, event.req] }) },
            'client.response': [
              // Closing: what was pipelined behind it stays unanswered (kept, to name its failure).
              { guard: and(['isCurrentRequest', 'responseCloses']), target: '#client.closing', actions: answered },
              { guard: and(['isCurrentRequest', 'hasPipelined']), actions: answered },
              { guard: 'isCurrentRequest', target: 'ready', actions: answered },
            ],
            'client.fail': { guard: 'isRequestFailure', target: '#client.failed' },
          },
        },
      },
    },
    /**
     * The response said `Connection: close`: no further request may be sent (RFC 9112 §9.3). A request
     * pipelined behind it fails when the close comes — never processed, so the client may retry it.
     */
    closing: {
      on: {
        'client.eof': {},
        'client.close': 'closed',
        'client.fail': [
          { guard: 'isIdleReset', target: 'closed' },
          { guard: 'isUnansweredPipelined', target: 'closed' },
        ],
      },
    },
    closed: { type: 'final' },
    failed: { type: 'final' },
  },
});
