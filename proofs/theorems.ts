/**
 * The theorems `quiesce prove` checks, each a search over the explored
 * world (proofs/world.ts) with a goal, and what the search must find — or
 * must not — for the theorem to hold. A theorem is checked row by row: one
 * row per policy (or per burst size), each with its own bounds, verdict and
 * figures. The statements are in proofs/README.md, one sentence each.
 */
import type { ArbiterSignal } from '../model/driver/arbiter.ts';
import type { ClientId, TraceEvent } from '../model/events.ts';
import { DEFAULT_SERVER_PARAMS, type ServerParams } from '../model/params.ts';
import { getPolicy, listPolicies, type PolicySpec } from '../model/policies.ts';
import { propertiesFor, type Property } from '../model/properties.ts';
import { explore, type ExploreResult, type Finding, type Goal } from './explore.ts';
import type { ClientPlan, World, WorldConfig } from './world.ts';

/** The sizes a proof holds for. Each theorem says which of them it uses. */
export interface ProofBounds {
  /** Worker processes (the first theorem is proved for each count from 1 to this). */
  readonly workers: number;
  /** Client connections, each opened once. */
  readonly clients: number;
  /** Requests each client may send on its connection (it may close before). */
  readonly requests: number;
  /** The largest burst of connections at a busy worker (theorem 4 checks every size up to it). */
  readonly burst: number;
  /** The listen backlog of the burst (theorem 4). */
  readonly backlog: number;
  /** A search that reaches this many states stops, and its row says it was cut short. */
  readonly maxStates: number;
}

export const DEFAULT_BOUNDS: ProofBounds = { workers: 1, clients: 2, requests: 2, burst: 5, backlog: 2, maxStates: 1_000_000 };

/** The clocks of the explored server: whole milliseconds, as small as keeps every ordering of its timers possible. */
export function explorerParams(workers: number, backlog = 4): ServerParams {
  return {
    ...DEFAULT_SERVER_PARAMS,
    workers,
    threads: 2,
    keepAliveMs: 3,
    idleGraceMs: 2,
    lingerMs: 2,
    gracefulTimeoutMs: 6,
    // The watchdog is left out (proofs/README.md): the heartbeat interval only spaces the draining loop's turns.
    timeoutMs: 0,
    heartbeatIntervalMs: 1,
    arbiterTickMs: 1000,
    headerTimeoutMs: 0,
    // gthread's last loop turn: short, and it may end at any step before (the explorer's turn-end move).
    selectTimeoutMs: 2,
    maxRequests: 0,
    maxRequestsJitter: 0,
    backlog,
    somaxconn: 128,
    family: 'unix',
  };
}

/** Every property the explorer can check: all but the heartbeat one (heartbeats are left out). */
export function checkableProperties(params: ServerParams): Property[] {
  return propertiesFor(params).filter((p) => p.name !== 'draining-worker-heartbeats');
}

export const LEFT_OUT_PROPERTIES = ['draining-worker-heartbeats'] as const;

export interface WorldShape {
  readonly workers: number;
  readonly clients: number;
  readonly requests: number;
  readonly signals?: readonly ArbiterSignal[];
  readonly properties?: (params: ServerParams) => readonly Property[];
  readonly withoutDeadline?: boolean;
  readonly backlog?: number;
}

export function worldConfig(policy: PolicySpec, shape: WorldShape, overrides: Partial<WorldConfig> = {}): WorldConfig {
  const params = explorerParams(shape.workers, shape.backlog);
  const plan: ClientPlan = { requests: shape.requests, mayCloseEarly: true };
  return {
    policy,
    params,
    latencyMs: 1,
    bootMs: 1,
    serviceMs: [1, 2],
    clients: Array.from({ length: shape.clients }, () => plan),
    signals: shape.signals ?? ['TERM'],
    properties: shape.properties?.(params) ?? [],
    ...(shape.withoutDeadline ? { withoutDeadline: true } : {}),
    ...overrides,
  };
}

// ───────────────────────── rows and their verdicts ─────────────────────────

/**
 * What a row needs from its search: that nothing be found (a proof), that what it seeks be found
 * (a witness), or either (a report: where a policy breaks a property, its shortest run).
 */
export type Expectation = 'nothing' | 'something' | 'either';

export type Verdict =
  /** Exhaustive within the bounds, and nothing found. */
  | 'proved'
  /** Found what the row seeks: a witness, or the counterexample a report shows. */
  | 'found'
  /** Exhaustive, and what the row seeks is not there. */
  | 'not-found'
  /** Found what breaks the theorem. */
  | 'refuted'
  /** Stopped at maxStates before a verdict. */
  | 'cut-short';

export interface Row {
  readonly theorem: number;
  readonly policy: string;
  /** The row's bounds in words: "W1 C2 R2" and any more. */
  readonly bounds: string;
  readonly expect: Expectation;
  readonly verdict: Verdict;
  /** The row's verdict is what its theorem needs. */
  readonly ok: boolean;
  readonly states: number;
  readonly transitions: number;
  readonly depth: number;
  readonly seconds: number;
  /** What was found (the shortest that decides the verdict), with the configuration that replays it. */
  readonly finding: (Finding & { readonly config: WorldConfig }) | null;
  /** Why the row is as it is (a lasso, a shared search). */
  readonly note?: string;
}

export interface RowSpec {
  readonly theorem: number;
  readonly policy: PolicySpec;
  readonly config: WorldConfig;
  readonly bounds: string;
  readonly expect: Expectation;
  readonly goal?: Goal;
  /** The finding kinds the row seeks (witnesses). Every other finding refutes the theorem. */
  readonly seek?: readonly string[];
  readonly stopAtFirst?: boolean;
  readonly note?: string;
}

export interface RunOptions {
  readonly maxStates: number;
  readonly symmetry?: boolean;
  /** Called after each level of a search: which row, and how far it is. */
  readonly onProgress?: (label: string, depth: number, states: number) => void;
}

const shortest = (findings: readonly Finding[]): Finding | null => [...findings].sort((a, b) => a.path.length - b.path.length)[0] ?? null;

export function runRow(spec: RowSpec, options: RunOptions): Row {
  const label = `theorem ${spec.theorem} ${spec.policy.name} ${spec.bounds}`;
  const result: ExploreResult = explore(spec.config, spec.goal ?? {}, {
    maxStates: options.maxStates,
    stopAtFirst: spec.stopAtFirst ?? false,
    symmetry: options.symmetry ?? true,
    onLevel: (depth, states) => options.onProgress?.(label, depth, states),
  });
  const sought = (f: Finding) => spec.expect !== 'nothing' && (spec.seek === undefined || spec.seek.includes(f.kind));
  const refuting = shortest(result.findings.filter((f) => !sought(f)));
  const witness = shortest(result.findings.filter(sought));
  let verdict: Verdict;
  if (refuting) verdict = 'refuted';
  else if (witness) verdict = 'found';
  else if (!result.exhaustive) verdict = 'cut-short';
  else verdict = spec.expect === 'something' ? 'not-found' : 'proved';
  const ok = spec.expect === 'nothing' ? verdict === 'proved' : spec.expect === 'something' ? verdict === 'found' : verdict === 'found' || verdict === 'proved';
  const finding = refuting ?? witness;
  return {
    theorem: spec.theorem,
    policy: spec.policy.name,
    bounds: spec.bounds,
    expect: spec.expect,
    verdict,
    ok,
    states: result.states,
    transitions: result.transitions,
    depth: result.depth,
    seconds: result.seconds,
    finding: finding ? { ...finding, config: spec.config } : null,
    ...(spec.note ? { note: spec.note } : {}),
  };
}

function boundsText(shape: WorldShape, extra = ''): string {
  return `W${shape.workers} C${shape.clients} R${shape.requests}${shape.withoutDeadline ? ' no-deadline' : ''}${extra}`;
}

// ───────────────────────── the theorems ─────────────────────────

export interface Theorem {
  readonly number: number;
  readonly name: string;
  readonly statement: string;
  /** The rows, built lazily: one search each. */
  readonly rows: (bounds: ProofBounds) => RowSpec[];
}

/** The registry's policies (their names; variants with +lingering-close are the same machines with one choice changed). */
const policies = (): PolicySpec[] => listPolicies().map((p) => getPolicy(p.name));

const waitingAtRest = (world: World): ClientId[] => world.waitingClients();
const aliveWorkersAtRest = (world: World): string[] => world.machines.actorIds().filter((a) => a.startsWith('worker/') && !world.machines.isDone(a));

/** Has a deadline fired while a worker was still there to be cut short? (Its timers are cancelled when it ends first.) */
const deadlineFired = (events: readonly TraceEvent[]): boolean =>
  events.some((e) => e.type === 'worker.graceful-timeout' || e.type === 'arbiter.graceful-timeout');

const theorem1: Theorem = {
  number: 1,
  name: 'safe-drain-satisfies-every-property',
  statement: 'safe-drain satisfies every property in the model’s list, for every interleaving within the bounds.',
  rows: (b) =>
    Array.from({ length: b.workers }, (_, i) => {
      const shape: WorldShape = { workers: i + 1, clients: b.clients, requests: b.requests, properties: checkableProperties };
      const policy = getPolicy('safe-drain');
      return { theorem: 1, policy, config: worldConfig(policy, shape), bounds: boundsText(shape), expect: 'nothing' as const };
    }),
};

const SENT_REQUEST_LOST: ReadonlySet<string> = new Set(['reset', 'empty-reply']);

const theorem2: Theorem = {
  number: 2,
  name: 'keep-alive-race-unavoidable',
  statement:
    'For every policy, some interleaving has a client request fail, or a drain reach the graceful deadline, or a client left waiting: no server-side choice closes the keep-alive race.',
  rows: (b) =>
    policies().map((policy) => {
      const shape: WorldShape = { workers: 1, clients: 1, requests: Math.max(2, Math.min(b.requests, 2)) };
      return {
        theorem: 2,
        policy,
        config: worldConfig(policy, shape),
        bounds: boundsText(shape),
        expect: 'something' as const,
        stopAtFirst: true,
        ...(policy.keepAlive ? {} : { note: 'no keep-alive: no connection is reused; the lost request is a first one, crossing the close of its fresh connection' }),
        goal: {
          afterMove: (world, events) => {
            // A request that was sent and lost; a connect refused or overflowed sent nothing, and its client knows it.
            // On a keep-alive policy, the race is a request on a reused connection: one that already carried a response.
            const fail = events.find(
              (e) => e.type === 'client.fail' && e.req !== undefined && SENT_REQUEST_LOST.has(e.reason) && (!policy.keepAlive || world.requestsSent(e.actor) >= 2),
            );
            if (fail && fail.type === 'client.fail') {
              const on = policy.keepAlive ? 'a reused keep-alive connection' : 'its connection';
              return { kind: 'request-failed', what: `${fail.actor}'s request ${fail.req} on ${on} failed: ${fail.reason}` };
            }
            if (deadlineFired(events)) return { kind: 'deadline-reached', what: 'a drain reached the graceful deadline' };
            return null;
          },
          atRest: (world) => {
            const waiting = waitingAtRest(world);
            return waiting.length > 0 ? { kind: 'client-hangs', what: `${waiting.join(', ')} waits for ever` } : null;
          },
        },
      };
    }),
};

const PROCESSED = 'processed-requests-answered';

const theorem3: Theorem = {
  number: 3,
  name: 'failed-requests-were-never-processed',
  statement:
    'Under safe-drain every failed request was never processed, so it is safe to retry (RFC 9112 §9.3.1); for each policy that breaks this, the shortest run where a processed request’s response is lost.',
  rows: (b) =>
    policies().map((policy) => {
      const safe = policy.name === 'safe-drain';
      const shape: WorldShape = {
        workers: 1,
        clients: safe ? b.clients : 1,
        requests: b.requests,
        properties: (params) => propertiesFor(params).filter((p) => p.name === PROCESSED),
      };
      return {
        theorem: 3,
        policy,
        config: worldConfig(policy, shape),
        bounds: boundsText(shape),
        expect: safe ? ('nothing' as const) : ('either' as const),
        stopAtFirst: !safe,
      };
    }),
};

const theorem4: Theorem = {
  number: 4,
  name: 'backlog-arithmetic',
  statement:
    'A burst of N connections at one busy worker, on a unix socket with backlog Q, has exactly max(0, N − Q − 1) of them refused with EAGAIN.',
  rows: (b) =>
    Array.from({ length: b.burst + 1 }, (_, n) => {
      // The sync worker: a busy one accepts nothing (gunicorn's sync loop serves one connection at a time).
      const policy = getPolicy('gunicorn-sync');
      const expected = Math.max(0, n - b.backlog - 1);
      const busy: ClientPlan = { requests: 1, mayCloseEarly: false };
      const burst: ClientPlan = { requests: 0, mayCloseEarly: true };
      const config = worldConfig(policy, { workers: 1, clients: 0, requests: 0, signals: [], backlog: b.backlog, properties: () => [] }, {
        clients: [busy, ...Array.from({ length: n }, () => burst)],
        clientsAfterBoot: true,
        burstAfterAccept: true,
        // Long enough that a burst can be answered while the worker is busy; runs where it is not are left out.
        serviceMs: [4],
      });
      const answered = (world: World): ClientId[] | null => {
        const ids = world.clientIds().slice(1);
        if (ids.length < n || ids.some((id) => id === null || world.outcome(id) === 'pending')) return null;
        return ids as ClientId[];
      };
      return {
        theorem: 4,
        policy,
        config,
        bounds: `N${n} Q${b.backlog} (capacity ${b.backlog + 1})`,
        expect: 'something' as const,
        seek: ['burst-answered'],
        goal: {
          afterMove: (world) => {
            const ids = answered(world);
            if (ids === null) return null;
            const refused = ids.filter((id) => world.outcome(id) === 'failed:eagain').length;
            if (refused !== expected) return { kind: 'arithmetic-broken', what: `${refused} of ${n} refused with EAGAIN, not ${expected}` };
            return { kind: 'burst-answered', what: `${refused} of ${n} refused with EAGAIN` };
          },
          atRest: () => ({ kind: 'burst-never-answered', what: 'the run ended before the burst was answered' }),
          // The hypothesis is one busy worker: a second accept leaves it (the worker was free again); an answered burst ends the question.
          prune: (world) => world.acceptCount > 1 || answered(world) !== null,
        },
      };
    }),
};

const theorem5: Theorem = {
  number: 5,
  name: 'full-stop-resets-the-accept-queue',
  statement:
    'Under every policy, a full stop (TERM) resets every connection still in the accept queue when the last listener copy closes, and some interleaving has one there: a server alone cannot avoid it.',
  rows: (b) =>
    policies().map((policy) => {
      const shape: WorldShape = { workers: 1, clients: b.clients, requests: 1, properties: () => [] };
      return {
        theorem: 5,
        policy,
        config: worldConfig(policy, shape),
        bounds: boundsText(shape),
        // The witness must be found, and the counterexample ("a queued connection outlived the listener") must not.
        expect: 'something' as const,
        seek: ['queued-reset'],
        goal: {
          afterMove: (_world, events) => {
            const reset = events.find((e) => e.type === 'listener.reset');
            return reset && reset.type === 'listener.reset' ? { kind: 'queued-reset', what: `${reset.client} was reset in the accept queue` } : null;
          },
          atRest: (world) => {
            const left = world.clientIds().filter((id): id is ClientId => id !== null && world.outcome(id) === 'connected');
            return left.length > 0 ? { kind: 'queued-not-reset', what: `${left.join(', ')} still connected after the server stopped` } : null;
          },
        },
      };
    }),
};

const theorem6: Theorem = {
  number: 6,
  name: 'liveness',
  statement:
    'Under every policy but never-close-idle, every worker exits by the graceful deadline and every client gets an answer, an error or a close — without the deadline too; never-close-idle’s stale hang is a lasso.',
  rows: (b) =>
    policies().flatMap((policy) => {
      const exitByDeadline = (params: ServerParams) => propertiesFor(params).filter((p) => p.name === 'exit-by-deadline');
      const withDeadline: WorldShape = { workers: 1, clients: 1, requests: b.requests, properties: exitByDeadline };
      const stuck: Goal = {
        atRest: (world) => {
          const waiting = waitingAtRest(world);
          const alive = aliveWorkersAtRest(world);
          if (waiting.length === 0 && alive.length === 0) return null;
          return { kind: 'stuck', what: `at rest for ever: ${[...alive.map((w) => `${w} never exits`), ...waiting.map((c) => `${c} waits`)].join(', ')}` };
        },
      };
      const stale = policy.name === 'never-close-idle';
      const withoutDeadline: WorldShape = { ...withDeadline, properties: () => [], withoutDeadline: true };
      return [
        { theorem: 6, policy, config: worldConfig(policy, withDeadline), bounds: boundsText(withDeadline), expect: 'nothing' as const, goal: stuck },
        {
          theorem: 6,
          policy,
          config: worldConfig(policy, withoutDeadline),
          bounds: boundsText(withoutDeadline),
          expect: stale ? ('something' as const) : ('nothing' as const),
          goal: stuck,
          stopAtFirst: stale,
          ...(stale ? { note: 'lasso: from its last state only time passes, for ever' } : {}),
        },
      ];
    }),
};

const RELOAD_KEEPS_SERVING = 'reload-keeps-serving';

const theorem7: Theorem = {
  number: 7,
  name: 'reload-keeps-serving',
  statement:
    'Under safe-drain a reload (HUP) never retires the last worker that serves, and every property holds through it; under every other policy some reload does (the old generation goes as the new one is forked), and nothing accepts until a new worker is ready.',
  rows: (b) =>
    policies().flatMap((policy): RowSpec[] => {
      if (policy.reloadRetires === 'when-replaced') {
        // Clients through the reload, every property checked: serving on while the new generation boots breaks none.
        // Two workers at least: one for one, the second old worker waits for the second new one. One client:
        // with two, two workers' reload is past a million states (W1 C2 R2 is 270 000, 80 s).
        return Array.from({ length: Math.max(2, b.workers) }, (_, i) => {
          const shape: WorldShape = { workers: i + 1, clients: 1, requests: b.requests, signals: ['HUP'], properties: checkableProperties };
          return { theorem: 7, policy, config: worldConfig(policy, shape), bounds: boundsText(shape, ' HUP'), expect: 'nothing' as const };
        });
      }
      // No client is needed to find it: a worker serving at the HUP is enough.
      const shape: WorldShape = {
        workers: 1,
        clients: 0,
        requests: 0,
        signals: ['HUP'],
        properties: (params) => propertiesFor(params).filter((p) => p.name === RELOAD_KEEPS_SERVING),
      };
      return [
        {
          theorem: 7,
          policy,
          config: worldConfig(policy, shape),
          bounds: boundsText(shape, ' HUP'),
          expect: 'something' as const,
          seek: [`property:${RELOAD_KEEPS_SERVING}`],
          stopAtFirst: true,
        },
      ];
    }),
};

export const THEOREMS: readonly Theorem[] = [theorem1, theorem2, theorem3, theorem4, theorem5, theorem6, theorem7];

export function theoremByNumber(n: number): Theorem | undefined {
  return THEOREMS.find((t) => t.number === n);
}

