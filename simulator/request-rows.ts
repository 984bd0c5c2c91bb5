/**
 * A request's measured timings drawn whole: one row per request — its wait in the poller, the thread's
 * pickup, the handler, the return to the poller, and what made it readable — from the rows a profile holds
 * (`keptAliveRequestsMs`). gthread's four share one GIL and two cores, so they are not independent:
 * a request that waited long in the poller waited while the pool's threads ran, and is picked up fast.
 * Drawn apart, the tails add up into requests no real server made (the simulated latency's median was
 * twice the real one).
 *
 * A kept-alive request draws its row when it reaches the poller, among the rows made readable the
 * same way: a connection back with its request in waits for the loop's next turn from its return,
 * whatever the request had waited before, and a request that comes to a polled connection waits from
 * its arrival (simulator/README.md, "Two waits"; one wait from the arrival for both handed the
 * first kind over at its return whenever its request had waited longer than the draw). A
 * connection's first request, which no poller holds (gthread hands a new connection to the pool at
 * accept), draws from all the rows at its pickup and leaves the wait unused. The service time follows
 * the request, the return its connection.
 */
import type { ReadableBy } from '../model/driver/worker.ts';
import type { ConnId } from '../model/events.ts';
import type { Rng } from './rng.ts';
import type { PollWait } from './server.ts';

/**
 * `cameBackWithRequest`: 1 when the connection was back in the poller with its request in (`ReadableBy`
 * 'return'), 0 when the request came to it there; `handOverAfterPollReturnMs`: how long after the
 * return of the poll it came from the loop handed it over (≤ the wait).
 */
export type RequestRow = readonly [pollWaitMs: number, pickupMs: number, serviceMs: number, returnMs: number, cameBackWithRequest: number, handOverAfterPollReturnMs: number];

export class RequestRows {
  private readonly ofConn = new Map<ConnId, RequestRow>();
  private readonly ofReq = new Map<string, RequestRow>();
  private readonly readableBy: Readonly<Record<ReadableBy, readonly RequestRow[]>>;

  constructor(
    private readonly rows: readonly RequestRow[],
    private readonly rng: Rng,
  ) {
    if (rows.length === 0) throw new Error('RequestRows: no rows to draw from');
    const byReturn = rows.filter((row) => row[4] === 1);
    const byArrival = rows.filter((row) => row[4] === 0);
    if (byReturn.length + byArrival.length !== rows.length) throw new Error('RequestRows: a row whose fifth column (came back with its request) is neither 0 nor 1');
    // A way the measuring run never saw is one the load rarely takes: its rows are what was seen.
    this.readableBy = { return: byReturn.length > 0 ? byReturn : rows, arrival: byArrival.length > 0 ? byArrival : rows };
  }

  private draw(from: readonly RequestRow[] = this.rows): RequestRow {
    return from[this.rng.int(0, from.length - 1)]!;
  }

  readonly dispatchMs = (conn: ConnId, by: ReadableBy): PollWait => {
    const row = this.draw(this.readableBy[by]);
    this.ofConn.set(conn, row);
    return { ms: row[0], from: 'readable', afterPollReturnMs: row[5] };
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
