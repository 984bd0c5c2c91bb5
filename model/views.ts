/**
 * What a platform may ask of the machines besides the drivers' own
 * questions: typed views, so that no platform names a state or reads a
 * context shape itself.
 */
import type { ClientId, ConnId } from './events.ts';
import type { ActorHost } from './host.ts';

/** The listening socket accepts connects (some process still holds it open). */
export function isListening(host: ActorHost): boolean {
  return host.matches('listener', 'listening');
}

/** The accept queue, oldest first. */
export function acceptQueue(host: ActorHost): readonly ClientId[] {
  return host.listener().context.queue;
}

/** A request on this connection waits where nobody will read it: orphaned by a drain, or pending on a draining worker. */
export function isStale(host: ActorHost, conn: ConnId): boolean {
  if (!host.has(conn) || host.isDone(conn)) return false;
  return host.matches(conn, 'orphaned') || (host.matches(conn, 'pending') && host.conn(conn).context.draining);
}

/** The client is still connecting (its SYN not answered yet). */
export function isConnecting(host: ActorHost, client: ClientId): boolean {
  return host.matches(client, 'connecting');
}

/** The client read a `Connection: close` response on its connection: it sends nothing more there (RFC 9112 §9.3). */
export function hasReadClose(host: ActorHost, client: ClientId): boolean {
  return host.has(client) && !host.isDone(client) && host.matches(client, 'closing');
}
