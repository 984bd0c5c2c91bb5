/**
 * One client connection, as the client sees it: connecting (through the
 * accept queue, or failing with EAGAIN / refusal / SYN timeouts), then
 * requests and responses in turn (HTTP/1.1 without pipelining), idle in the
 * client's pool between them, until either side closes it.
 *
 * A failure names what the client observed (`reset`, `empty-reply`,
 * `timeout`, …); whether the failed request had been processed is a question
 * for the properties, which see the server's side too.
 */
import { and, assign, setup } from 'xstate';
import type { ClientEvent, MachineEvent } from '../events.ts';

export type ClientMachineEvent = MachineEvent<ClientEvent>;

export interface ClientContext {
  /** The request awaiting its response. */
  req: string | null;
  responses: number;
}

export const clientChart = setup({
  types: { context: {} as ClientContext, events: {} as ClientMachineEvent },
  guards: {
    isCurrentRequest: ({ context, event }) => 'req' in event && event.req === context.req,
    isConnectFailure: ({ event }) =>
      event.type === 'client.fail' && (event.reason === 'eagain' || event.reason === 'refused' || event.reason === 'connect-timeout' || event.reason === 'reset'),
    isRequestFailure: ({ context, event }) =>
      event.type === 'client.fail' && event.req === context.req && event.reason !== 'eagain' && event.reason !== 'refused' && event.reason !== 'connect-timeout',
    responseCloses: ({ event }) => event.type === 'client.response' && event.close,
    isIdleReset: ({ event }) => event.type === 'client.fail' && event.req === undefined && event.reason === 'reset',
  },
}).createMachine({
  id: 'client',
  context: { req: null, responses: 0 },
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
            'client.response': [
              {
                guard: and(['isCurrentRequest', 'responseCloses']),
                target: '#client.closing',
                actions: assign({ req: null, responses: ({ context }) => context.responses + 1 }),
              },
              {
                guard: 'isCurrentRequest',
                target: 'ready',
                actions: assign({ req: null, responses: ({ context }) => context.responses + 1 }),
              },
            ],
            'client.fail': { guard: 'isRequestFailure', target: '#client.failed' },
          },
        },
      },
    },
    /** The response said `Connection: close`: no further request may be sent (RFC 9112 §9.3). */
    closing: {
      on: {
        'client.eof': {},
        'client.close': 'closed',
        'client.fail': { guard: 'isIdleReset', target: 'closed' },
      },
    },
    closed: { type: 'final' },
    failed: { type: 'final' },
  },
});
