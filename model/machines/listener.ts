/**
 * The listening socket and its accept queue — the kernel's, shared by every
 * process that holds a copy of the fd (the arbiter and each forked worker).
 *
 * The queue holds min(backlog, somaxconn) + 1 connections. A connection that
 * finds it full is dropped at the handshake (TCP: the client retransmits its
 * SYN) or refused with EAGAIN at once (AF_UNIX). Closing one copy changes
 * nothing; when the last copy closes, every queued connection is reset and
 * later connects are refused.
 */
import { assign, setup } from 'xstate';
import type { ClientId, ListenerEvent, MachineEvent } from '../events.ts';
import { acceptQueueCapacity } from '../params.ts';

export type ListenerMachineEvent = MachineEvent<ListenerEvent>;

export interface ListenerContext {
  family: 'tcp' | 'unix';
  capacity: number;
  holders: string[];
  queue: ClientId[];
}

export const listenerChart = setup({
  types: { context: {} as ListenerContext, events: {} as ListenerMachineEvent },
  actions: {
    resetQueued: () => {},
    addHolder: assign({
      holders: ({ context, event }) => (event.type === 'listener.hold' ? [...context.holders, event.holder] : context.holders),
    }),
    removeHolder: assign({
      holders: ({ context, event }) =>
        event.type === 'listener.release' ? context.holders.filter((h) => h !== event.holder) : context.holders,
    }),
    enqueue: assign({
      queue: ({ context, event }) => (event.type === 'listener.syn' ? [...context.queue, event.client] : context.queue),
    }),
    dequeue: assign({ queue: ({ context }) => context.queue.slice(1) }),
  },
  guards: {
    holderIsNew: ({ context, event }) => 'holder' in event && !context.holders.includes(event.holder),
    holderIsKnown: ({ context, event }) => 'holder' in event && context.holders.includes(event.holder),
    isLastHolder: ({ context, event }) =>
      'holder' in event && context.holders.length === 1 && context.holders[0] === event.holder,
    queueHasRoom: ({ context }) => context.queue.length < context.capacity,
    queueIsFull: ({ context }) => context.queue.length >= context.capacity,
    // FIFO: accept() and the reset on close both take the oldest queued connection.
    isHeadOfQueue: ({ context, event }) => 'client' in event && context.queue[0] === event.client,
    queueIsEmpty: ({ context }) => context.queue.length === 0,
  },
}).createMachine({
  id: 'listener',
  context: { family: 'tcp', capacity: 0, holders: [], queue: [] },
  initial: 'unbound',
  states: {
    unbound: {
      on: {
        'listener.open': {
          target: 'listening',
          actions: assign({
            family: ({ event }) => event.family,
            capacity: ({ event }) => acceptQueueCapacity(event.backlog, event.somaxconn),
          }),
        },
      },
    },
    listening: {
      on: {
        'listener.hold': { guard: 'holderIsNew', actions: 'addHolder' },
        'listener.release': [
          { guard: 'isLastHolder', target: 'resetting', actions: 'removeHolder' },
          { guard: 'holderIsKnown', actions: 'removeHolder' },
        ],
        'listener.syn': { guard: 'queueHasRoom', actions: 'enqueue' },
        'listener.overflow': { guard: 'queueIsFull' },
        'listener.accept': { guard: 'isHeadOfQueue', actions: 'dequeue' },
      },
    },
    /** The last copy closed: each queued connection is reset. */
    resetting: {
      entry: 'resetQueued',
      always: { guard: 'queueIsEmpty', target: 'closed' },
      on: {
        'listener.reset': { guard: 'isHeadOfQueue', actions: 'dequeue' },
        'listener.refuse': {},
      },
    },
    /** Nothing listens: connects are refused (TCP RST; AF_UNIX ECONNREFUSED/ENOENT). */
    closed: {
      tags: ['quiescent'],
      on: { 'listener.refuse': {} },
    },
  },
});
