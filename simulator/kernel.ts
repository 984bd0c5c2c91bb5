/**
 * The kernel's listening socket: the accept queue every process holding the
 * socket's fd shares, and what connects meet. The listener machine keeps the
 * queue; this file says what the kernel does with it — a SYN that finds room
 * is queued, one that finds it full is dropped (TCP: the client retransmits)
 * or refused with EAGAIN (AF_UNIX), a closed socket refuses, and when the
 * last copy closes every queued connection is reset.
 */
import type { ClientId, WorkerId } from '../model/events.ts';
import { acceptQueue, isListening } from '../model/views.ts';
import type { ActorHost } from '../model/host.ts';

export type SynOutcome = 'queued' | 'overflow' | 'refused';

export class Kernel {
  private onReset: (client: ClientId) => void = () => {};

  constructor(private readonly host: ActorHost) {
    // The listener machine asks for the reset of whatever was queued when the last copy closed.
    host.own('listener', () => this.resetQueued());
  }

  /** Who hears that a queued connection was reset (the network, to tell its client). */
  onQueuedReset(listener: (client: ClientId) => void): void {
    this.onReset = listener;
  }

  /** A SYN (or a unix connect) reached the listening socket. */
  syn(client: ClientId): SynOutcome {
    const e = this.host;
    if (!isListening(e)) {
      e.emit('listener', { type: 'listener.refuse', client });
      return 'refused';
    }
    // The listener machine's guard is the queue arithmetic: room, or overflow.
    if (e.emitIfAccepted('listener', { type: 'listener.syn', client })) return 'queued';
    e.emit('listener', { type: 'listener.overflow', client });
    return 'overflow';
  }

  /** The oldest queued connection, if the socket is still listening (accept(2) would return it). */
  head(): ClientId | undefined {
    if (!isListening(this.host)) return undefined;
    return acceptQueue(this.host)[0];
  }

  /** accept(2) by a worker: the head of the queue becomes its connection. */
  accept(client: ClientId, worker: WorkerId, conn: `conn/${number}.${number}`): void {
    this.host.emit('listener', { type: 'listener.accept', client, conn, worker });
  }

  family(): 'tcp' | 'unix' {
    return this.host.listener().context.family;
  }

  private resetQueued(): void {
    const e = this.host;
    for (let head = acceptQueue(e)[0]; head !== undefined; head = acceptQueue(e)[0]) {
      e.emit('listener', { type: 'listener.reset', client: head });
      this.onReset(head);
    }
  }
}
