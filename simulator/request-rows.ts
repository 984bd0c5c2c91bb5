/**
 * A request's measured timings drawn whole: one row per request — its wait in the poller from its
 * arrival, the thread's pickup, the handler, the return to the poller — from the rows a profile holds
 * (`keptAliveRequestsMs`). gthread's four share one GIL and two cores, so they are not independent:
 * a request that waited long in the poller waited while the pool's threads ran, and is picked up fast.
 * Drawn apart, the tails add up into requests no real server made (the simulated latency's median was
 * twice the real one).
 *
 * A kept-alive request draws its row when it reaches the poller; a connection's first request, which
 * no poller holds (gthread hands a new connection to the pool at accept), draws one at its pickup and
 * leaves the wait unused. The service time follows the request, the return its connection.
 */
import type { ConnId } from '../model/events.ts';
import type { Rng } from './rng.ts';

export type RequestRow = readonly [pollWaitMs: number, pickupMs: number, serviceMs: number, returnMs: number];

export class RequestRows {
  private readonly ofConn = new Map<ConnId, RequestRow>();
  private readonly ofReq = new Map<string, RequestRow>();

  constructor(
    private readonly rows: readonly RequestRow[],
    private readonly rng: Rng,
  ) {
    if (rows.length === 0) throw new Error('RequestRows: no rows to draw from');
  }

  private draw(): RequestRow {
    return this.rows[this.rng.int(0, this.rows.length - 1)]!;
  }

  readonly dispatchMs = (conn: ConnId): number => {
    const row = this.draw();
    this.ofConn.set(conn, row);
    return row[0];
  };

  readonly pickupMs = (conn: ConnId, req: string): number => {
    const row = this.ofConn.get(conn) ?? this.draw();
    this.ofConn.set(conn, row);
    this.ofReq.set(req, row);
    return row[1];
  };

  readonly serviceMs = (req: string): number => {
    const row = this.ofReq.get(req) ?? this.draw();
    this.ofReq.delete(req);
    return row[2];
  };

  readonly returnMs = (conn: ConnId): number => {
    const row = this.ofConn.get(conn) ?? this.draw();
    this.ofConn.delete(conn);
    return row[3];
  };
}
