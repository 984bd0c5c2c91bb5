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
 * accept), draws at its pickup (among the rows of its worker's count, where they have one) and leaves
 * the wait unused. The service time follows the request, the return its connection.
 *
 * Where the rows say how many connections their worker held at the hand-over (a seventh column), a
 * request draws among the rows measured at its own worker's count: a gthread worker's threads share one
 * GIL, so the more connections it serves the slower each is served — measured under the calibration
 * load, a kept-alive request's four times together took 0.7 ms on average at one connection held and
 * 7 ms at sixteen (simulator/README.md, "A worker's connections share its GIL"). Drawn from all rows
 * alike, the worker holding the most connections served them as fast as one holding few, and reached
 * max-requests holding more than a real one does.
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
export type RequestRow = readonly [pollWaitMs: number, pickupMs: number, serviceMs: number, returnMs: number, cameBackWithRequest: number, handOverAfterPollReturnMs: number, heldConnections?: number];

/**
 * The fewest rows a draw is made from, where rows name their worker's held connections: the rows of the
 * nearest counts are taken together until there are this many, so that no one measured request stands
 * for a count it alone was seen at (a sampling decision, like the rows' number).
 */
export const FEWEST_ROWS_AT_HELD = 20;

export class RequestRows {
  private readonly ofConn = new Map<ConnId, RequestRow>();
  private readonly ofReq = new Map<string, RequestRow>();
  private readonly readableBy: Readonly<Record<ReadableBy, readonly RequestRow[]>>;
  /** Whether every row names its worker's held connections (the rows are all one form: the schema's). */
  private readonly byHeld: boolean;
  /** The rows a draw at a held count takes from, per group of rows (all, or one way readable), as first asked. */
  private readonly nearHeld = new Map<readonly RequestRow[], Map<number, readonly RequestRow[]>>();

  constructor(
    private readonly rows: readonly RequestRow[],
    private readonly rng: Rng,
  ) {
    if (rows.length === 0) throw new Error('RequestRows: no rows to draw from');
    const byReturn = rows.filter((row) => row[4] === 1);
    const byArrival = rows.filter((row) => row[4] === 0);
    if (byReturn.length + byArrival.length !== rows.length) throw new Error('RequestRows: a row whose fifth column (came back with its request) is neither 0 nor 1');
    const withHeld = rows.filter((row) => row[6] !== undefined).length;
    if (withHeld !== 0 && withHeld !== rows.length) throw new Error(`RequestRows: ${withHeld} of ${rows.length} rows name their worker's held connections (a seventh column): all or none`);
    if (rows.some((row) => row[6] !== undefined && !(Number.isInteger(row[6]) && row[6] >= 1))) throw new Error("RequestRows: a row whose seventh column (its worker's held connections) is not a whole number from 1");
    this.byHeld = withHeld > 0;
    // A way the measuring run never saw is one the load rarely takes: its rows are what was seen.
    this.readableBy = { return: byReturn.length > 0 ? byReturn : rows, arrival: byArrival.length > 0 ? byArrival : rows };
  }

  /** A row of `from`, among those measured nearest `heldConnections` where the rows say (see `FEWEST_ROWS_AT_HELD`); without a count, any. */
  private draw(from: readonly RequestRow[], heldConnections?: number): RequestRow {
    const near = this.byHeld && heldConnections !== undefined ? this.rowsNear(from, heldConnections) : from;
    return near[this.rng.int(0, near.length - 1)]!;
  }

  /**
   * The rows of `from` whose held count is within d of `heldConnections`, for the least d that gives
   * `FEWEST_ROWS_AT_HELD` of them (all of `from` where it has fewer).
   */
  private rowsNear(from: readonly RequestRow[], heldConnections: number): readonly RequestRow[] {
    let ofGroup = this.nearHeld.get(from);
    if (ofGroup === undefined) this.nearHeld.set(from, (ofGroup = new Map()));
    const cached = ofGroup.get(heldConnections);
    if (cached !== undefined) return cached;
    const distances = [...new Set(from.map((row) => Math.abs(row[6]! - heldConnections)))].sort((a, b) => a - b);
    let near: readonly RequestRow[] = from;
    for (const d of distances) {
      const within = from.filter((row) => Math.abs(row[6]! - heldConnections) <= d);
      if (within.length >= FEWEST_ROWS_AT_HELD) {
        near = within;
        break;
      }
    }
    ofGroup.set(heldConnections, near);
    return near;
  }

  readonly dispatchMs = (conn: ConnId, by: ReadableBy, heldConnections: number): PollWait => {
    const row = this.draw(this.readableBy[by], heldConnections);
    this.ofConn.set(conn, row);
    return { ms: row[0], from: 'readable', afterPollReturnMs: row[5] };
  };

  /** A poll wait alone, for a readable descriptor that is no connection's request: the listener's, as its worker's loop notices a queued connection. */
  readonly pollWaitMs = (heldConnections: number): number => this.draw(this.readableBy.arrival, heldConnections)[0];

  readonly pickupMs = (conn: ConnId, req: string, heldConnections: number): number => {
    const row = this.ofConn.get(conn) ?? this.draw(this.rows, heldConnections);
    this.ofConn.set(conn, row);
    this.ofReq.set(req, row);
    return row[1];
  };

  readonly serviceMs = (req: string): number => {
    const row = this.ofReq.get(req) ?? this.draw(this.rows);
    this.ofReq.delete(req);
    return row[2];
  };

  readonly returnMs = (conn: ConnId): number => {
    const row = this.ofConn.get(conn) ?? this.draw(this.rows);
    this.ofConn.delete(conn);
    return row[3];
  };
}
