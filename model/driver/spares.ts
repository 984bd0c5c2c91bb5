/**
 * The arbiter's spare processes: workers booted ahead of need, each waiting to be given a worker's
 * identity (impl/arbiter.ts keeps them; the simulator's shared CPU models them as it does). One rule
 * for both, so that the model's boot times follow the server's: a spawn takes a ready spare if there
 * is one — it serves after its activation — else the first still loading, which serves when its load
 * is done, else none (the caller starts one); then spares are started until `target` wait free.
 *
 * `free`: not taken by a worker already, and not retired (a reload's spares loaded the old app).
 */
export interface Spare {
  readonly ready: boolean;
}

/** The spare a spawn takes, or null when none is free (start one for it). */
export function chooseSpare<S extends Spare>(spares: Iterable<S>, free: (spare: S) => boolean): S | null {
  let loading: S | null = null;
  for (const spare of spares) {
    if (!free(spare)) continue;
    if (spare.ready) return spare;
    loading ??= spare;
  }
  return loading;
}

/** How many spares to start so that `target` wait free. */
export function sparesToStart<S extends Spare>(spares: Iterable<S>, free: (spare: S) => boolean, target: number): number {
  let waiting = 0;
  for (const spare of spares) if (free(spare)) waiting++;
  return Math.max(0, target - waiting);
}
