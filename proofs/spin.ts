/**
 * An independent check by SPIN. The Promela is generated, never written by
 * hand: the composition of the model's machines (workers, their
 * connections, the clients, the listener, the arbiter) is unfolded through
 * the one driver into its transition graph — one Promela label per state,
 * one guarded option per move, each sending the move's events to a monitor
 * process. The monitors are the part SPIN checks independently: the
 * properties restated in Promela over the event stream (not the explorer's
 * TypeScript monitors), and SPIN's own search, state store and verdicts.
 *
 * What the two checkers share is the transition relation, generated from
 * the same machines — by design: a second hand-written model is what the
 * project rules out. What SPIN re-checks is everything built on it: the
 * search (visited set, symmetry, pruning), the properties' monitors, the
 * witness search.
 *
 * Events are named by client position (the clients connect in order), not
 * by id: ids are counters the explorer's keys leave out, so two paths into
 * one state may name the next request differently, while "client 1's
 * current request" means the same thing on both.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientId, ConnId, TraceEvent, WorkerId } from '../model/events.ts';
import { getPolicy, type PolicySpec } from '../model/policies.ts';
import { propertiesFor } from '../model/properties.ts';
import { explore } from './explore.ts';
import { DEFAULT_BOUNDS, THEOREMS, runRow, worldConfig, type WorldShape } from './theorems.ts';
import { World, type Step, type WorldConfig } from './world.ts';

export class SpinUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpinUnavailableError';
  }
}

// ───────────────────────── the graph ─────────────────────────

/** The monitor's alphabet: what the Promela monitors need of each event. */
const EVENT_KINDS = [
  'SEND', // client c sent a request
  'RESPONSE', // client c read a response
  'FAIL_LOST', // client c's sent request failed (reset, empty reply)
  'FAIL_CONNECT', // client c failed with nothing sent (refused, EAGAIN, reset in the accept queue before it sent)
  'HANDLER_START', // the app began c's request
  'RESPOND_KA', // the server answered c with keep-alive (x = the worker)
  'RESPOND_CLOSE',
  'ABORT_CUT', // c's connection cut short by the deadline, a kill, a fast stop
  'ABORT_EXIT', // c's connection abandoned as the worker exited
  'CLOSE_RST', // the server closed c's connection with unread bytes (RST)
  'ACCEPT', // worker x accepted a connection
  'DRAIN', // worker x began draining (its machine entered alive.draining)
  'WORKER_EXIT', // worker x exited
  'SPAWN', // worker x was started
  'SYN', // a connection entered the accept queue
  'OVERFLOW', // a connection found the accept queue full
  'DEQUEUE', // a connection left the accept queue (accepted or reset)
  'DEADLINE', // a graceful deadline fired
  'TICK', // one millisecond passed
] as const;
type EventKind = (typeof EVENT_KINDS)[number];

interface Label {
  readonly kind: EventKind;
  /** Client position (0-based) or worker position, as the kind says; 0 when neither. */
  readonly c: number;
  readonly x: number;
}

export interface Graph {
  readonly states: number;
  /** Out-edges of each state: the target and the move's labels. */
  readonly edges: readonly (readonly { readonly to: number; readonly labels: readonly Label[] }[])[];
  readonly transitions: number;
  readonly capacity: number;
  readonly graceMs: number;
  readonly workers: number;
  readonly clients: number;
}

function labelsOf(before: World, after: World, events: readonly TraceEvent[], move: Step['move']): Label[] {
  const clientIndex = (id: ClientId | undefined) => {
    const i = (id === undefined ? -1 : after.clientIds().indexOf(id));
    if (i < 0) throw new Error(`spin export: ${id} is not one of the clients`);
    return i;
  };
  const workerIndex = (id: WorkerId) => Number(id.slice('worker/'.length)) - 1;
  const connClient = new Map<ConnId, ClientId>();
  for (const [conn, client] of before.connClients()) connClient.set(conn, client);
  const labels: Label[] = [];
  const push = (kind: EventKind, c = 0, x = 0) => labels.push({ kind, c, x });
  for (const e of events) {
    if (e.type === 'conn.open') connClient.set(e.actor, e.client);
    const ofConn = (conn: ConnId) => clientIndex(connClient.get(conn));
    switch (e.type) {
      case 'client.send':
        push('SEND', clientIndex(e.actor));
        break;
      case 'client.response':
        push('RESPONSE', clientIndex(e.actor));
        break;
      case 'client.fail':
        push(e.req !== undefined && (e.reason === 'reset' || e.reason === 'empty-reply') ? 'FAIL_LOST' : 'FAIL_CONNECT', clientIndex(e.actor));
        break;
      case 'conn.handler-start':
        push('HANDLER_START', ofConn(e.actor));
        break;
      case 'conn.respond':
        push(e.close ? 'RESPOND_CLOSE' : 'RESPOND_KA', ofConn(e.actor), Number(e.actor.slice(5, e.actor.indexOf('.'))) - 1);
        break;
      case 'conn.abort':
        push(e.reason === 'worker-exit' ? 'ABORT_EXIT' : 'ABORT_CUT', ofConn(e.actor));
        break;
      case 'conn.close':
        if (e.rst) push('CLOSE_RST', ofConn(e.actor));
        break;
      case 'worker.accept':
        push('ACCEPT', 0, workerIndex(e.actor));
        break;
      case 'worker.exit':
        push('WORKER_EXIT', 0, workerIndex(e.actor));
        break;
      case 'arbiter.spawn':
        push('SPAWN', 0, workerIndex(e.worker));
        break;
      case 'listener.syn':
        push('SYN');
        break;
      case 'listener.overflow':
        push('OVERFLOW');
        break;
      case 'listener.accept':
      case 'listener.reset':
        push('DEQUEUE');
        break;
      case 'worker.graceful-timeout':
      case 'arbiter.graceful-timeout':
        push('DEADLINE');
        break;
      default:
        break;
    }
    // A drain begins when a worker's machine enters alive.draining (not on any one event name).
    if (e.actor.startsWith('worker/') && after.hasBegunDraining(e.actor as WorkerId) && !before.hasBegunDraining(e.actor as WorkerId)) {
      if (!labels.some((l) => l.kind === 'DRAIN' && l.x === workerIndex(e.actor as WorkerId))) push('DRAIN', 0, workerIndex(e.actor as WorkerId));
    }
  }
  if (move.kind === 'tick') push('TICK');
  return labels;
}

/**
 * Unfold a configuration into its transition graph: every state once (by the explorer's key
 * without symmetry reduction), every move with every draw. No monitor runs here: the monitors are SPIN's.
 */
export function graphOf(config: WorldConfig, maxStates = 200_000): Graph {
  const bare: WorldConfig = { ...config, properties: [] };
  const index = new Map<string, number>();
  const edges: { to: number; labels: Label[] }[][] = [];
  const root = new World(bare);
  index.set(root.key(false), 0);
  edges.push([]);
  const queue = [{ id: 0, state: root.save() }];
  let transitions = 0;
  while (queue.length > 0) {
    const { id, state } = queue.shift()!;
    const here = new World(bare, state);
    for (const move of here.moves()) {
      const pending: number[][] = [[]];
      while (pending.length > 0) {
        const draws = pending.pop()!;
        const world = new World(bare, state);
        const arities = world.apply({ move, draws });
        const taken = arities.map((_, i) => (i < draws.length ? draws[i]! : 0));
        for (let j = draws.length; j < arities.length; j++) for (let v = 1; v < arities[j]!; v++) pending.push([...taken.slice(0, j), v]);
        const key = world.key(false);
        let to = index.get(key);
        if (to === undefined) {
          to = index.size;
          if (to >= maxStates) throw new Error(`spin export: more than ${maxStates} states; use smaller bounds`);
          index.set(key, to);
          edges.push([]);
          queue.push({ id: to, state: world.save() });
        }
        edges[id]!.push({ to, labels: labelsOf(here, world, world.lastEvents, move) });
        transitions++;
      }
    }
  }
  const p = config.params;
  return {
    states: index.size,
    edges,
    transitions,
    capacity: Math.min(p.backlog, p.somaxconn) + 1,
    graceMs: p.gracefulTimeoutMs + p.heartbeatIntervalMs,
    workers: p.workers,
    clients: config.clients.length,
  };
}

// ───────────────────────── Promela ─────────────────────────

/** What a SPIN run checks: which monitors assert, and whether it looks for theorem 2's witness. */
export type SpinCheck = 'theorem-1' | 'theorem-3' | 'theorem-2-witness';

/**
 * The monitors, in Promela. Each restates a property of model/properties.ts over the event
 * alphabet above; `CHECK` (a cpp define) selects which of them assert.
 */
function monitorProctype(graph: Graph): string {
  const C = Math.max(1, graph.clients);
  const W = Math.max(1, graph.workers);
  return `
/* Per client: its current request, and what became of it. */
bool processed[${C}]; /* the app began it */
bool running[${C}];   /* its handler has not answered yet */
bool cut[${C}];       /* the deadline, a kill or a fast stop cut its handler short */
bool aborted[${C}];   /* its connection was cut by the deadline, a kill or a fast stop */
bool waiting[${C}];   /* sent, not yet answered or failed */
byte sent[${C}];      /* requests sent on its connection */
/* Per worker. */
bool draining[${W}];
bool alive[${W}];
byte drainAge[${W}];  /* ms since its drain began, saturated */
byte queued;          /* connections in the accept queue */
bool witnessed;       /* theorem 2: a request on a reused connection lost, or a deadline reached */

#define CAPACITY ${graph.capacity}
#define GRACE_MS ${graph.graceMs}

chan events = [8] of { byte, byte, byte };

active proctype monitor() {
  byte k; byte c; byte x; byte i;
end_monitor:
  do
  :: atomic {
       events?k,c,x ->
       if
       :: k == SEND -> processed[c] = false; running[c] = false; cut[c] = false; waiting[c] = true; sent[c]++
       :: k == RESPONSE -> waiting[c] = false
       :: k == FAIL_LOST ->
            waiting[c] = false;
#if CHECK == 1 || CHECK == 3
            /* processed-requests-answered: a lost request was never processed (or was cut short by the operator's bound) */
            assert(!processed[c] || cut[c]);
#endif
            if :: ${graph.clients > 0 ? 'sent[c] >= 2 || !KEEPALIVE' : 'false'} -> witnessed = true :: else -> skip fi
       :: k == FAIL_CONNECT -> waiting[c] = false
       :: k == HANDLER_START -> processed[c] = true; running[c] = true
       :: k == ABORT_CUT -> aborted[c] = true; if :: running[c] -> cut[c] = true :: else -> skip fi
       :: k == RESPOND_CLOSE -> running[c] = false
       :: k == RESPOND_KA ->
            running[c] = false;
#if CHECK == 1
            /* close-while-draining: a draining worker's responses say Connection: close */
            assert(!draining[x]);
#endif
            skip
       :: k == ACCEPT ->
#if CHECK == 1
            /* no-accept-after-drain */
            assert(!draining[x]);
#endif
            skip
       :: k == CLOSE_RST ->
#if CHECK == 1
            /* no-reset-of-unread-request (the operator's bounds excepted) */
            assert(aborted[c]);
#endif
            skip
       :: k == DRAIN -> draining[x] = true; drainAge[x] = 0
       :: k == SPAWN -> alive[x] = true
       :: k == WORKER_EXIT -> alive[x] = false; draining[x] = false
       :: k == SYN ->
#if CHECK == 1
            /* backlog-arithmetic: a connection enters the queue only below its capacity */
            assert(queued < CAPACITY);
#endif
            queued++
       :: k == OVERFLOW ->
#if CHECK == 1
            assert(queued >= CAPACITY);
#endif
            skip
       :: k == DEQUEUE -> queued--
       :: k == DEADLINE -> witnessed = true
       :: k == TICK ->
            i = 0;
            do
            :: i < ${W} ->
                 if
                 :: draining[i] && drainAge[i] <= GRACE_MS -> drainAge[i]++
                 :: else -> skip
                 fi;
#if CHECK == 1
                 /* exit-by-deadline: no worker drains longer than the graceful timeout (plus one loop turn) */
                 assert(!draining[i] || !alive[i] || drainAge[i] <= GRACE_MS);
#endif
                 i++
            :: else -> break
            od
       :: else -> skip
       fi
     }
  od
}
`;
}

/**
 * The composition as tables (C arrays in a c_decl: the graph is data, tens of thousands of states)
 * and a Promela process that walks them: in each state it picks any of its moves and sends the
 * move's events to the monitor, in order, before the next move.
 */
export interface Promela {
  /** model.pml */
  readonly model: string;
  /** graph.h: the tables, included by the model's c_decl (SPIN's inline text has a length limit). */
  readonly tables: string;
}

export function promelaOf(graph: Graph, check: SpinCheck, policy: PolicySpec): Promela {
  const firstEdge: number[] = [0];
  const edgeTo: number[] = [];
  const firstLabel: number[] = [0];
  const kind: number[] = [];
  const client: number[] = [];
  const arg: number[] = [];
  let maxDegree = 0;
  for (let s = 0; s < graph.states; s++) {
    const out = graph.edges[s]!;
    maxDegree = Math.max(maxDegree, out.length);
    for (const edge of out) {
      edgeTo.push(edge.to);
      for (const l of edge.labels) {
        kind.push(EVENT_KINDS.indexOf(l.kind) + 1);
        client.push(l.c);
        arg.push(l.x);
      }
      firstLabel.push(kind.length);
    }
    firstEdge.push(edgeTo.length);
  }
  const array = (name: string, values: readonly number[]) => `int ${name}[${Math.max(1, values.length)}] = { ${values.length > 0 ? values.join(',') : '0'} };`;
  const tables = [array('first_edge', firstEdge), array('edge_to', edgeTo), array('first_label', firstLabel), array('label_kind', kind), array('label_client', client), array('label_arg', arg)].join('\n') + '\n';
  const choices = Array.from({ length: maxDegree }, (_, i) => `     :: c_expr { first_edge[now.state + 1] - first_edge[now.state] > ${i} } -> edge = ${i}`).join('\n');
  const witness = check === 'theorem-2-witness';
  const model = `/* Generated by quiesce (proofs/spin.ts) from the model's machines: ${graph.states} states, ${graph.transitions} transitions. */
#define CHECK ${check === 'theorem-1' ? 1 : check === 'theorem-3' ? 3 : 2}
#define KEEPALIVE ${policy.keepAlive ? 1 : 0}
${EVENT_KINDS.map((k, i) => `#define ${k} ${i + 1}`).join('\n')}

c_decl {
  \\#include "graph.h"
}
${monitorProctype(graph)}
int state;      /* the composition's state: a row of the tables */
int edge;       /* the move taken, among the state's */
int label;      /* the next of its events to send */
byte ek; byte ec; byte ex;

active proctype composition() {
  do
  :: empty(events) ->
     atomic {
       if
       :: c_expr { first_edge[now.state + 1] == first_edge[now.state] } -> goto rest
       :: else -> skip
       fi;
${witness ? '       assert(!witnessed);\n' : ''}       if
${choices}
       fi;
       c_code { now.edge = first_edge[now.state] + now.edge; now.label = first_label[now.edge]; };
       do
       :: c_expr { now.label < first_label[now.edge + 1] } ->
            c_code { now.ek = label_kind[now.label]; now.ec = label_client[now.label]; now.ex = label_arg[now.label]; now.label++; };
            events!ek,ec,ex
       :: else -> break
       od;
       c_code { now.state = edge_to[now.edge]; now.edge = 0; now.label = 0; now.ek = 0; now.ec = 0; now.ex = 0; }
     }
  od;
rest:
  /* At rest: nothing can happen any more but the clock. */
  empty(events);
${witness ? `  assert(!(witnessed || ${stuckExpression(graph)}));\n` : ''}end_rest:
  skip
}
`;
  return { model, tables };
}

/** Theorem 2's third witness: at rest, a client still waits for its answer. */
function stuckExpression(graph: Graph): string {
  const parts: string[] = [];
  for (let c = 0; c < graph.clients; c++) parts.push(`waiting[${c}]`);
  return parts.length > 0 ? parts.join(' || ') : 'false';
}

// ───────────────────────── running SPIN ─────────────────────────

export interface SpinResult {
  /** No assertion can fail: every state SPIN reached satisfies the monitors. */
  readonly violated: boolean;
  readonly statesStored: number;
  readonly transitions: number;
  readonly depth: number;
  readonly errors: number;
  readonly complete: boolean;
  readonly seconds: number;
}

export function spinAvailable(): boolean {
  return spawnSync('spin', ['-V'], { encoding: 'utf8' }).status === 0 && spawnSync('cc', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Generate pan.c with SPIN, compile it, run it (exhaustive safety search), and read its verdict. */
export function runSpin(promela: Promela): SpinResult {
  if (!spinAvailable()) throw new SpinUnavailableError('SPIN is not installed (Debian: apt-get install spin) or there is no C compiler');
  const dir = mkdtempSync(join(tmpdir(), 'quiesce-spin-'));
  const started = performance.now();
  try {
    writeFileSync(join(dir, 'model.pml'), promela.model);
    writeFileSync(join(dir, 'graph.h'), promela.tables);
    const step = (command: string, args: string[]) => {
      const r = spawnSync(command, args, { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${r.status}):\n${(r.stdout + r.stderr).slice(0, 2000)}`);
    };
    step('spin', ['-a', 'model.pml']);
    // -DSAFETY: assertions and invalid end states, no cycle detection (every property here is a safety property).
    step('cc', ['-O1', '-DSAFETY', '-DVECTORSZ=4096', '-o', 'pan', 'pan.c']);
    const run = spawnSync('./pan', ['-m1000000', '-w24'], { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    const out = `${run.stdout}\n${run.stderr}`;
    const number = (pattern: RegExp) => Number(pattern.exec(out)?.[1] ?? NaN);
    const errors = number(/errors: (\d+)/);
    if (!Number.isFinite(errors)) throw new Error(`SPIN's pan gave no verdict:\n${out.slice(0, 2000)}`);
    return {
      violated: errors > 0,
      statesStored: number(/(\d+) states, stored/),
      transitions: number(/(\d+) transitions \(= stored\+matched\)/),
      depth: number(/depth reached (\d+)/),
      errors,
      complete: !/max search depth too small/.test(out),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ───────────────────────── the cross-check ─────────────────────────

export interface CrossCheckRow {
  readonly theorem: string;
  readonly policy: string;
  readonly bounds: string;
  readonly explorer: { readonly verdict: string; readonly states: number };
  readonly spin: { readonly verdict: string; readonly statesStored: number; readonly transitions: number; readonly seconds: number };
  readonly graphStates: number;
  readonly agrees: boolean;
}

export interface CrossCheck {
  readonly agrees: boolean;
  readonly rows: readonly CrossCheckRow[];
  readonly spinVersion: string;
}

/** The properties SPIN restates (the monitors above) — the explorer is run on the same ones, so the verdicts compare. */
export const SPIN_THEOREM_1_PROPERTIES = [
  'processed-requests-answered',
  'close-while-draining',
  'no-accept-after-drain',
  'no-reset-of-unread-request',
  'backlog-arithmetic',
  'exit-by-deadline',
] as const;

export interface CrossCheckOptions {
  /** The compositions to check: by default one worker with two single-request clients, and one with one client sending two. */
  readonly shapes?: readonly WorldShape[];
  /** Policies for theorem 2's witness (default: every registry policy with keep-alive, and the sync worker). */
  readonly policies?: readonly string[];
  readonly onProgress?: ((label: string) => void) | undefined;
  /** The machines to check instead of the policy's (a test's seeded bug). */
  readonly configure?: (config: WorldConfig) => WorldConfig;
}

const DEFAULT_SHAPES: readonly WorldShape[] = [
  { workers: 1, clients: 2, requests: 1 },
  { workers: 1, clients: 1, requests: 2 },
];

export function crossCheck(options: CrossCheckOptions = {}): CrossCheck {
  if (!spinAvailable()) throw new SpinUnavailableError('SPIN is not installed (Debian: apt-get install spin) or there is no C compiler');
  const version = execFileSync('spin', ['-V'], { encoding: 'utf8' }).trim();
  const configure = options.configure ?? ((c: WorldConfig) => c);
  const rows: CrossCheckRow[] = [];
  const safe = getPolicy('safe-drain');
  const shapes = options.shapes ?? DEFAULT_SHAPES;
  const boundsOf = (s: WorldShape) => `W${s.workers} C${s.clients} R${s.requests}`;
  const compare = (theorem: string, policy: PolicySpec, shape: WorldShape, config: WorldConfig, check: SpinCheck, explorerFound: boolean, explorerStates: number, explorerVerdict: string) => {
    options.onProgress?.(`SPIN: ${theorem} ${policy.name} ${boundsOf(shape)}`);
    const graph = graphOf(config);
    const spin = runSpin(promelaOf(graph, check, policy));
    const spinVerdict = check === 'theorem-2-witness' ? (spin.violated ? 'found' : 'not-found') : spin.violated ? 'violated' : 'holds';
    rows.push({
      theorem,
      policy: policy.name,
      bounds: boundsOf(shape),
      explorer: { verdict: explorerVerdict, states: explorerStates },
      spin: { verdict: spinVerdict, statesStored: spin.statesStored, transitions: spin.transitions, seconds: spin.seconds },
      graphStates: graph.states,
      agrees: spin.complete && explorerFound === spin.violated,
    });
  };
  for (const shape of shapes) {
    // Theorem 1 on the properties SPIN restates, and theorem 3, under safe-drain.
    const t1Shape: WorldShape = { ...shape, properties: (params) => propertiesFor(params).filter((p) => (SPIN_THEOREM_1_PROPERTIES as readonly string[]).includes(p.name)) };
    const t1 = configure(worldConfig(safe, t1Shape));
    const r1 = explore(t1, {}, {});
    compare('theorem 1', safe, shape, t1, 'theorem-1', r1.findings.length > 0, r1.states, r1.findings.length > 0 ? 'violated' : 'holds');
    const t3Shape: WorldShape = { ...shape, properties: (params) => propertiesFor(params).filter((p) => p.name === 'processed-requests-answered') };
    const t3 = configure(worldConfig(safe, t3Shape));
    const r3 = explore(t3, {}, {});
    compare('theorem 3', safe, shape, t3, 'theorem-3', r3.findings.length > 0, r3.states, r3.findings.length > 0 ? 'violated' : 'holds');
  }
  // Theorem 2's witness, per policy, with the theorem's own bounds and goal.
  const theorem2 = THEOREMS.find((t) => t.number === 2)!;
  for (const spec of theorem2.rows(DEFAULT_BOUNDS)) {
    if (options.policies && !options.policies.includes(spec.policy.name)) continue;
    const config = configure(spec.config);
    const row = runRow({ ...spec, config }, { maxStates: 1_000_000 });
    const shape: WorldShape = { workers: config.params.workers, clients: config.clients.length, requests: config.clients[0]?.requests ?? 0 };
    compare('theorem 2', spec.policy, shape, config, 'theorem-2-witness', row.verdict === 'found', row.states, row.verdict);
  }
  return { agrees: rows.every((r) => r.agrees), rows, spinVersion: version };
}

export function formatCrossCheck(check: CrossCheck): string {
  const out: string[] = [`Cross-check by SPIN (${check.spinVersion}): Promela generated from the machines' composition, properties restated as Promela monitors`];
  const header = ['theorem', 'policy', 'bounds', 'explorer', 'states', 'SPIN', 'states stored', 'graph states', 'agree'];
  const cells = check.rows.map((r) => [
    r.theorem,
    r.policy,
    r.bounds,
    r.explorer.verdict,
    String(r.explorer.states),
    r.spin.verdict,
    String(r.spin.statesStored),
    String(r.graphStates),
    r.agrees ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => '  ' + c.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd();
  out.push(line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line));
  out.push(check.agrees ? 'SPIN agrees with the explorer on every row.' : 'SPIN DISAGREES with the explorer: see the rows marked NO.');
  return out.join('\n') + '\n';
}
