/**
 * A world the explorer can branch. It is the simulator's platform — the
 * kernel, the network, the server processes and the model's one driver —
 * on a host whose clock the explorer sets, with every pending thing as data:
 * the platform's items in flight and the machines' timers. Nothing here
 * decides what a server does; this file only says what may happen next
 * (the moves), does one, and can save and load itself.
 *
 * Time is a digital clock: whole milliseconds, small parameters. A move is a
 * due item or timer firing (in any order among those due at the same
 * instant), a client or the operator acting (at any instant), or the clock
 * advancing one millisecond when nothing is due. The platform's random
 * choices (which waiting worker accepts, a service time) are `Draw`s the
 * explorer enumerates. For timed systems whose delays are integers and whose
 * constraints are closed, integer times reach every ordering real times
 * can (Henzinger, Manna & Pnueli, "What good are digital clocks?", 1992).
 *
 * Left out, and said so in proofs/README.md: the heartbeat and its
 * watchdog (the arbiter's loop turns only count silence, and are stutter
 * steps with the watchdog off), SIGSTOP, client timeouts.
 */
import type { ArbiterSignal } from '../model/driver/arbiter.ts';
import { connWorker, type ActorId, type ClientId, type ConnId, type TraceEvent, type WorkerId } from '../model/events.ts';
import { ActorHost, traceEvent, type ActorSnapshot, type Timer } from '../model/host.ts';
import { ARBITER_TIMER_IDS } from '../model/machines/arbiter.ts';
import { WORKER_TIMER_IDS } from '../model/machines/worker.ts';
import { runtimesFor, runtimesOf as compiledFrom, type PolicyMachines, type Runtimes } from '../model/machines/index.ts';
import type { ServerParams } from '../model/params.ts';
import type { PolicySpec } from '../model/policies.ts';
import type { MachinesNow, Monitor, Property } from '../model/properties.ts';
import { Kernel } from '../simulator/kernel.ts';
import { CLASSIC_SYN_SCHEDULE_MS, Network, type Link, type LinkOwner, type NetworkState } from '../simulator/network.ts';
import { routeItem, type Draw, type PlatformItem, type Wire } from '../simulator/platform.ts';
import { SimulatedServer, type ServerState } from '../simulator/server.ts';

export class ExplorationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExplorationError';
  }
}

/** What one client does: connect once, send up to `requests` requests in turn, and close when it likes. */
export interface ClientPlan {
  readonly requests: number;
  /** It may close its idle connection before it has sent them all (the client's FIN racing the server's close). */
  readonly mayCloseEarly: boolean;
}

export interface WorldConfig {
  readonly policy: PolicySpec;
  /** Whole milliseconds, small: every timer is a number of clock steps. The watchdog is off (timeoutMs 0). */
  readonly params: ServerParams;
  readonly latencyMs: number;
  readonly bootMs: number;
  /** The service times a handler may take, each tried. */
  readonly serviceMs: readonly number[];
  readonly clients: readonly ClientPlan[];
  /** The operator's signals to the arbiter, in order, each at any moment after the previous one. */
  readonly signals: readonly ArbiterSignal[];
  /** The properties whose monitors run along every interleaving. */
  readonly properties: readonly Property[];
  /** Leave out the graceful deadline (its timers never fire): does the drain end by itself? */
  readonly withoutDeadline?: boolean;
  /** The clients connect only once every worker is ready (not a race with boot). */
  readonly clientsAfterBoot?: boolean;
  /** The operator's signals may come while the arbiter stops too (a second signal during a graceful stop); otherwise only while it runs. */
  readonly signalsWhileStopping?: boolean;
  /** A client may close while its request is outstanding (it gives up on it), as a script's runner does. */
  readonly clientsMayAbandon?: boolean;
  /** The clients after the first connect only once a worker accepted it: a burst at a busy worker. */
  readonly burstAfterAccept?: boolean;
  /** The machines to explore instead of the policy's own (a test's seeded bug). */
  readonly machines?: PolicyMachines;
  /**
   * What the runs must look like, as a monitor beside the properties' (an observed client-side
   * trace: conformance/exists.ts). Its verdicts are named WITNESS; a search prunes a run it refuses.
   */
  readonly witness?: Monitor;
}

/** The name under which the witness monitor's verdicts are kept. */
export const WITNESS = 'witness';

export type Move =
  | { readonly kind: 'item'; readonly seq: number }
  | { readonly kind: 'timer'; readonly actor: ActorId; readonly id: string }
  | { readonly kind: 'connect'; readonly client: number }
  | { readonly kind: 'send'; readonly client: number }
  | { readonly kind: 'close'; readonly client: number }
  | { readonly kind: 'signal'; readonly signal: ArbiterSignal }
  /** A draining worker's last loop turn ends before its poll's timeout: its phase is nobody's to know. */
  | { readonly kind: 'turn-end'; readonly worker: WorkerId }
  | { readonly kind: 'tick' };

/** A move with the values its draws took (see Chooser). */
export interface Step {
  readonly move: Move;
  readonly draws: readonly number[];
}

interface InFlight {
  readonly dueMs: number;
  readonly seq: number;
  readonly item: PlatformItem;
}

interface ClientProgress {
  /** Its id once it connected. */
  readonly id: ClientId | null;
  readonly sent: number;
}

export interface Verdict {
  readonly property: string;
  readonly message: string;
  /** Index of the event that broke it, in the run's events. */
  readonly index: number;
}

/** A world as data: load it into a new World to go on from here. */
export interface WorldState {
  readonly nowMs: number;
  readonly actors: readonly ActorSnapshot[];
  readonly network: NetworkState;
  readonly server: ServerState;
  readonly inFlight: readonly InFlight[];
  readonly nextSeq: number;
  readonly clients: readonly ClientProgress[];
  readonly signalsSent: number;
  readonly monitors: readonly Monitor[];
  readonly drains: readonly (readonly [WorkerId, number])[];
  readonly violations: readonly Verdict[];
  readonly failures: readonly (readonly [ClientId, string])[];
  readonly events: number;
  readonly accepts: number;
}

/**
 * The draws of one move: fixed values for the first ones, 0 for the rest; it records how many
 * values each draw had, so the explorer can come back for the others.
 */
export class Chooser implements Draw {
  private at = 0;
  readonly arities: number[] = [];

  constructor(private readonly fixed: readonly number[]) {}

  private choose(arity: number): number {
    if (arity <= 1) return 0;
    const value = this.at < this.fixed.length ? this.fixed[this.at]! : 0;
    this.arities.push(arity);
    this.at++;
    if (value >= arity) throw new ExplorationError(`a replayed draw took value ${value} of ${arity}: the world is not deterministic`);
    return value;
  }

  int(min: number, max: number): number {
    return min + this.choose(max - min + 1);
  }

  uniform(min: number, max: number): number {
    return Math.ceil(min) + this.choose(Math.floor(max) - Math.ceil(min) + 1);
  }

  fraction(): number {
    // The max-requests jitter: the explorer requires none.
    return 0;
  }

  /** The values this move's draws took. */
  taken(): number[] {
    return this.arities.map((_, i) => (i < this.fixed.length ? this.fixed[i]! : 0));
  }
}

/** A world is made for every move tried: its machines are compiled once per configuration. */
const RUNTIMES = new WeakMap<WorldConfig, Runtimes>();
function runtimesOf(config: WorldConfig): Runtimes {
  let runtimes = RUNTIMES.get(config);
  if (!runtimes) {
    runtimes = config.machines ? compiledFrom(config.policy, config.params, config.machines) : runtimesFor(config.policy, config.params);
    RUNTIMES.set(config, runtimes);
  }
  return runtimes;
}

class ExplorerHost extends ActorHost {
  clockMs = 0;

  get nowMs(): number {
    return this.clockMs;
  }

  /** Machine timers are data here (their due times): the explorer fires them by name. */
  at(): Timer {
    return { cancelled: false };
  }

  protected invariant(message: string): Error {
    return new ExplorationError(message.replace('the host produced', 'the explored platform produced'));
  }
}

/** Timers the explorer never fires: the watchdog's loop turn (a stutter step with the watchdog off), and the deadline when asked. */
function isLeftOut(config: WorldConfig, actor: string, id: string): boolean {
  if (actor === 'arbiter' && id === ARBITER_TIMER_IDS.tick) return true;
  if (!config.withoutDeadline) return false;
  return (actor === 'arbiter' && id === ARBITER_TIMER_IDS.deadline) || (actor.startsWith('worker/') && id === WORKER_TIMER_IDS.graceful);
}

/** How long "for ever" is when a run at rest is judged: longer than any timer of an explored world. */
export const FOREVER_MS = 1_000_000;

export class World {
  private readonly host: ExplorerHost;
  private readonly network: Network;
  private readonly server: SimulatedServer;
  private inFlight: InFlight[] = [];
  private nextSeq = 0;
  private clients: ClientProgress[];
  private signalsSent = 0;
  private monitors: Monitor[];
  private readonly drains = new Map<WorkerId, number>();
  /** The first violation of each property so far in this run; a broken property's monitor stops there. */
  private violations: Verdict[] = [];
  /** How each failed client failed (its machine is forgotten once done). */
  private readonly failures = new Map<ClientId, string>();
  private events = 0;
  /** Connections the workers accepted so far. */
  private accepts = 0;
  private chooser = new Chooser([]);
  /** Each event as it is taken, from the start, when the world records its run (a counterexample's trace). */
  readonly recording: TraceEvent[] | null = null;
  /** The events the last move took. */
  readonly lastEvents: TraceEvent[] = [];

  constructor(
    readonly config: WorldConfig,
    state?: WorldState,
    options: { readonly record?: boolean } = {},
  ) {
    if (options.record) this.recording = [];
    if (config.params.timeoutMs !== 0) throw new ExplorationError('the explorer leaves the heartbeat watchdog out: params.timeoutMs must be 0');
    if (config.params.maxRequestsJitter !== 0) throw new ExplorationError('the explorer draws no max-requests jitter: params.maxRequestsJitter must be 0');
    const runtimes = runtimesOf(config);
    this.host = new ExplorerHost(runtimes, (t, actor, event) => this.taken(t, actor, event));
    const wire: Wire = {
      after: (delayMs, item) => this.inFlight.push({ dueMs: this.host.nowMs + delayMs, seq: this.nextSeq++, item }),
      at: () => {
        throw new ExplorationError('the explored platform has no cancellable timers (no client timeouts, no heartbeats)');
      },
    };
    const draw: Draw = {
      int: (min, max) => this.chooser.int(min, max),
      uniform: (min, max) => this.chooser.uniform(min, max),
      fraction: () => this.chooser.fraction(),
    };
    const kernel = new Kernel(this.host);
    this.network = new Network(this.host, kernel, { latencyMs: config.latencyMs, synRetryScheduleMs: CLASSIC_SYN_SCHEDULE_MS, loopback: true }, wire);
    const services = config.serviceMs;
    this.server = new SimulatedServer(
      this.host,
      kernel,
      this.network,
      { bootMs: config.bootMs, serviceMs: () => services[draw.int(0, services.length - 1)]!, dispatchMs: () => ({ ms: 0, from: 'readable' }), loopTickMs: 0, heartbeats: false },
      wire,
      draw,
    );
    this.clients = config.clients.map(() => ({ id: null, sent: 0 }));
    this.monitors = [...config.properties.map((p) => p.monitor(config.policy)), ...(config.witness ? [config.witness.copy()] : [])];
    if (state) this.load(state);
    else this.server.boot();
  }

  // ───────────────────────── what happens ─────────────────────────

  private taken(t: number, actor: ActorId, event: { readonly type: string }): void {
    const e = traceEvent(t, actor, event);
    const index = this.events++;
    this.recording?.push(e);
    this.lastEvents.push(e);
    if (e.type === 'client.fail') this.failures.set(e.actor, e.reason);
    else if (e.type === 'listener.accept') this.accepts++;
    if (actor.startsWith('worker/') && !this.drains.has(actor as WorkerId) && this.host.matches(actor, { alive: 'draining' })) {
      this.drains.set(actor as WorkerId, t);
    }
    for (let i = 0; i < this.monitors.length; i++) {
      const property = this.monitorName(i);
      if (this.violations.length > 0 && this.violations.some((v) => v.property === property)) continue;
      const message = this.monitors[i]!.step(e, this.machinesNow);
      if (message !== null) this.violations.push({ property, message, index });
    }
  }

  /** The witness monitor as it stands in this run (config.witness's copy), if there is one. */
  get witness(): Monitor | undefined {
    return this.config.witness ? this.monitors[this.monitors.length - 1] : undefined;
  }

  /** The i-th monitor's name: a property's, or the witness's (after them). */
  private monitorName(i: number): string {
    return this.config.properties[i]?.name ?? WITNESS;
  }

  private readonly machinesNow: MachinesNow = {
    hasBegunDraining: (worker) => this.drains.has(worker),
    draining: () => [...this.drains.keys()].filter((w) => this.host.has(w) && this.host.matches(w, { alive: 'draining' })),
    drainStartMs: (worker) => this.drains.get(worker),
  };

  /** The properties broken so far in this run, each with its first violation. */
  get verdicts(): readonly Verdict[] {
    return this.violations;
  }

  get nowMs(): number {
    return this.host.nowMs;
  }

  get eventCount(): number {
    return this.events;
  }

  // ───────────────────────── moves ─────────────────────────

  /** Every move possible now. Items and timers due now are urgent: the clock waits for them. */
  moves(): Move[] {
    const now = this.host.nowMs;
    const out: Move[] = [];
    let future = false;
    // A connection delivers in order in each direction: only the oldest due item of each channel may go.
    const channelsTaken = new Set<string>();
    for (const f of [...this.inFlight].sort((a, b) => a.seq - b.seq)) {
      const channel = channelOf(f.item);
      if (f.dueMs > now) {
        future = true;
        if (channel !== null) channelsTaken.add(channel);
        continue;
      }
      if (channel !== null) {
        if (channelsTaken.has(channel)) continue;
        channelsTaken.add(channel);
      }
      out.push({ kind: 'item', seq: f.seq });
    }
    for (const actor of this.host.actorIds()) {
      for (const timer of this.host.pendingTimers(actor)) {
        if (isLeftOut(this.config, actor, timer.id)) continue;
        if (timer.dueMs <= now) out.push({ kind: 'timer', actor, id: timer.id });
        else future = true;
      }
    }
    const urgent = out.length > 0;
    const acting = this.environmentMoves();
    out.push(...acting);
    for (const worker of this.server.workerIds()) {
      if (this.host.has(worker) && this.host.matches(worker, { alive: { draining: 'lastTurn' } })) out.push({ kind: 'turn-end', worker });
    }
    // The clock moves on when nothing is due, and something is still to come (or someone may still act).
    if (!urgent && (future || acting.length > 0)) out.push({ kind: 'tick' });
    return out;
  }

  /** What the clients and the operator may do now. */
  private environmentMoves(): Move[] {
    const out: Move[] = [];
    if (!this.host.has('arbiter') || this.host.isDone('arbiter')) return out;
    const booted = this.server.workerIds().length > 0 && this.server.workerIds().every((w) => this.server.process(w)?.ready);
    const clientsMayStart = !this.config.clientsAfterBoot || booted || this.clients.some((c) => c.id !== null);
    for (let i = 0; i < this.clients.length; i++) {
      const progress = this.clients[i]!;
      const plan = this.config.clients[i]!;
      if (progress.id === null) {
        // Clients connect in order: a client's id is its connect's rank, and equal plans are interchangeable.
        const burstMayStart = i === 0 || !this.config.burstAfterAccept || this.accepts > 0;
        if (clientsMayStart && burstMayStart && (i === 0 || this.clients[i - 1]!.id !== null)) out.push({ kind: 'connect', client: i });
        continue;
      }
      if (!this.host.has(progress.id) || this.host.isDone(progress.id)) continue;
      if (this.host.matches(progress.id, { open: 'ready' })) {
        if (progress.sent < plan.requests) out.push({ kind: 'send', client: i });
        if (progress.sent >= plan.requests || plan.mayCloseEarly) out.push({ kind: 'close', client: i });
      } else if (this.host.matches(progress.id, 'closing')) out.push({ kind: 'close', client: i });
      else if (this.config.clientsMayAbandon && this.host.matches(progress.id, { open: 'awaiting' })) out.push({ kind: 'close', client: i });
    }
    const signal = this.config.signals[this.signalsSent];
    if (signal !== undefined && (this.host.matches('arbiter', 'running') || (this.config.signalsWhileStopping && this.host.matches('arbiter', 'stopping')))) out.push({ kind: 'signal', signal });
    return out;
  }

  /** Nothing is due or to come, nobody may act: from here on only the clock moves, and nothing changes. */
  isQuiescent(): boolean {
    const moves = this.moves();
    return moves.length === 0;
  }

  /** Do a move, its draws taking these values first; returns the arity of every draw it made. */
  apply(step: Step): number[] {
    this.chooser = new Chooser(step.draws);
    this.lastEvents.length = 0;
    const move = step.move;
    switch (move.kind) {
      case 'item': {
        const i = this.inFlight.findIndex((f) => f.seq === move.seq);
        if (i < 0) throw new ExplorationError(`no item ${move.seq} in flight`);
        const [{ item }] = this.inFlight.splice(i, 1) as [InFlight];
        this.host.now(() => routeItem(item, this.network, this.server));
        break;
      }
      case 'timer':
        this.host.now(() => this.host.fireTimer(move.actor, move.id));
        break;
      case 'connect': {
        const link = this.network.connect(CLIENT);
        this.clients[move.client] = { id: link.client, sent: 0 };
        break;
      }
      case 'send': {
        const progress = this.clients[move.client]!;
        const link = this.linkOf(progress);
        this.network.send(link, this.network.nextRequestId(), false, Number.POSITIVE_INFINITY);
        this.clients[move.client] = { ...progress, sent: progress.sent + 1 };
        break;
      }
      case 'close':
        this.network.close(this.linkOf(this.clients[move.client]!));
        break;
      case 'signal':
        this.signalsSent++;
        this.server.signal(move.signal);
        break;
      case 'turn-end':
        this.host.now(() => this.host.emitIfAccepted(move.worker, { type: 'worker.turn-end' }));
        break;
      case 'tick':
        this.host.clockMs++;
        break;
    }
    return this.chooser.arities;
  }

  private linkOf(progress: ClientProgress): Link {
    const link = progress.id === null ? undefined : this.network.link(progress.id);
    if (!link) throw new ExplorationError(`no connection for ${progress.id ?? 'a client that never connected'}`);
    return link;
  }

  /**
   * At a quiescent state: what the monitors say of the run's end (the properties it breaks there).
   * Nothing but the clock can move any more, so the run stays here for ever: it is judged as if
   * a long time (FOREVER_MS) had passed — what is still waiting then waits for ever.
   */
  judgeEnd(): Verdict[] {
    const found: Verdict[] = [];
    for (let i = 0; i < this.monitors.length; i++) {
      const property = this.monitorName(i);
      if (this.violations.some((v) => v.property === property)) continue;
      const message = this.monitors[i]!.end(this.host.nowMs + FOREVER_MS);
      if (message !== null) found.push({ property, message, index: Math.max(0, this.events - 1) });
    }
    this.violations.push(...found);
    return found;
  }

  /** How a client's connection has turned out so far: not connected yet, connected (open), or how it failed. */
  outcome(client: ClientId): 'pending' | 'connected' | 'done' | `failed:${string}` {
    const failure = this.failures.get(client);
    if (failure !== undefined) return `failed:${failure}`;
    if (!this.host.has(client)) return 'done';
    return this.host.matches(client, 'connecting') || this.host.matches(client, 'unconnected') ? 'pending' : 'connected';
  }

  /** Connections the workers accepted so far. */
  get acceptCount(): number {
    return this.accepts;
  }

  /** The ids of the clients that have connected (or tried to), in plan order. */
  clientIds(): (ClientId | null)[] {
    return this.clients.map((c) => c.id);
  }

  /** Each open server connection's client. */
  connClients(): [ConnId, ClientId][] {
    return [...this.server.linkOfConn].map(([conn, link]) => [conn, link.client]);
  }

  /** Has this worker's machine entered its drain (alive.draining) in this run? */
  hasBegunDraining(worker: WorkerId): boolean {
    return this.drains.has(worker);
  }

  /** How many requests a client has sent on its connection. */
  requestsSent(client: ClientId): number {
    return this.clients.find((c) => c.id === client)?.sent ?? 0;
  }

  /** The clients whose request is outstanding. */
  waitingClients(): ClientId[] {
    return this.clients.flatMap((c) => (c.id !== null && this.host.has(c.id) && this.host.matches(c.id, { open: 'awaiting' }) ? [c.id] : []));
  }

  /** The machines, for the theorems' questions. */
  get machines(): ActorHost {
    return this.host;
  }

  // ───────────────────────── save, load, key ─────────────────────────

  save(): WorldState {
    return {
      nowMs: this.host.nowMs,
      actors: this.host.snapshotActors(),
      network: this.network.state(),
      server: this.server.state(),
      inFlight: [...this.inFlight],
      nextSeq: this.nextSeq,
      clients: [...this.clients],
      signalsSent: this.signalsSent,
      monitors: this.monitors.map((m) => m.copy()),
      drains: [...this.drains],
      violations: [...this.violations],
      failures: [...this.failures],
      events: this.events,
      accepts: this.accepts,
    };
  }

  private load(state: WorldState): void {
    this.host.clockMs = state.nowMs;
    this.host.restoreActors(state.actors);
    this.network.load(state.network);
    this.server.load(state.server);
    this.inFlight = [...state.inFlight];
    this.nextSeq = state.nextSeq;
    this.clients = [...state.clients];
    this.signalsSent = state.signalsSent;
    this.monitors = state.monitors.map((m) => m.copy());
    for (const [worker, t] of state.drains) this.drains.set(worker, t);
    this.violations = [...state.violations];
    for (const [client, reason] of state.failures) this.failures.set(client, reason);
    this.events = state.events;
    this.accepts = state.accepts;
  }

  /**
   * The state as a string: equal strings, equal futures. Times are offsets from now; counters that
   * only name what comes next (the next client, request, connection or worker number) are left
   * out — names do not change what happens. `canonical` then renames workers, connections,
   * clients and requests in a canonical order (symmetry reduction).
   */
  key(symmetry = true): string {
    const now = this.host.nowMs;
    const parts: string[] = [];
    for (const actor of this.host.snapshotActors()) {
      const runtime = this.host.runtimes[actorKindOf(actor.id)];
      const timers = actor.timers
        .filter((t) => !isLeftOut(this.config, actor.id, t.id))
        .map((t) => `${t.id}@${t.dueMs - now}`)
        .sort();
      parts.push(`A ${actor.id} ${runtime.stateName(actor.state as never)} ${JSON.stringify(actor.state.context)} ${timers.join(',')}`);
    }
    // Each channel's items in their order (a connection is FIFO); other items each alone.
    const channels = new Map<string, string[]>();
    for (const f of [...this.inFlight].sort((a, b) => a.seq - b.seq)) {
      const channel = channelOf(f.item) ?? `#${f.seq}`;
      const list = channels.get(channel) ?? [];
      list.push(`${f.dueMs - now}:${JSON.stringify(f.item)}`);
      channels.set(channel, list);
    }
    for (const list of channels.values()) parts.push(`I ${list.join(' ')}`);
    this.network.keyParts(parts, (link) => linkKey(link, now, this.host.runtimes.params.family));
    this.server.keyParts(parts);
    // A client is its plan and its progress, not its place in the list: equal plans are interchangeable.
    this.clients.forEach((c, i) => parts.push(`E ${JSON.stringify(this.config.clients[i])} ${c.id ?? '-'} ${c.sent}`));
    parts.push(`S ${this.signalsSent} ${this.config.burstAfterAccept ? Math.min(this.accepts, 1) : 0}`);
    const cap = this.config.params.gracefulTimeoutMs + this.config.params.heartbeatIntervalMs + 1;
    for (const [worker, t] of this.drains) parts.push(`D ${worker} ${Math.min(cap, now - t)}`);
    for (const m of this.monitors) parts.push(`M ${m.key(now)}`);
    for (const [client, reason] of this.failures) parts.push(`F ${client} ${reason}`);
    parts.push(`V ${this.violations.map((v) => v.property).sort().join(',')}`);
    return symmetry ? canonicalLines(parts) : inCanonicalOrder(parts);
  }
}

/**
 * The direction of a connection an item travels, or null for what is not a packet. TCP and
 * AF_UNIX stream sockets deliver in order: a response written before a FIN arrives before it.
 */
function channelOf(item: PlatformItem): string | null {
  switch (item.kind) {
    case 'syn':
    case 'bytes':
    case 'client-fin':
    case 'client-rst':
      return `${item.client}>`;
    case 'connect-fail':
      // A refusal is the kernel's RST to the SYN; giving up is the client's own timer.
      return item.reason === 'connect-timeout' ? null : `${item.client}<`;
    case 'syn-ack':
    case 'response':
    case 'server-fin':
    case 'rst':
      return `${item.client}<`;
    case 'syn-retry':
    case 'request-timeout':
    case 'fork':
    case 'boot':
    case 'heartbeat':
    case 'kill':
    case 'signal':
    case 'teardown':
    case 'reap':
    case 'release':
    case 'accept-turn':
    case 'accept-one':
    case 'stall':
    case 'poll':
    case 'pickup':
    case 'return':
    case 'handler-done':
      return null;
  }
}

/** The one client code: what it decides, it decides through moves; its socket's news needs no answer. */
const CLIENT: LinkOwner = {
  onConnected: () => {},
  onResponse: () => {},
  onFailure: () => {},
  onIdleClosed: () => {},
};

function actorKindOf(id: ActorId): 'arbiter' | 'listener' | 'worker' | 'conn' | 'client' {
  const slash = id.indexOf('/');
  return (slash < 0 ? id : id.slice(0, slash)) as 'arbiter' | 'listener' | 'worker' | 'conn' | 'client';
}

function linkKey(link: Link, now: number, family: 'tcp' | 'unix'): string {
  return [
    link.client,
    link.conn ?? '-',
    link.req ?? '-',
    link.reqDelivered,
    link.pipelined.map((p) => `${p.req}:${p.delivered}`).join('+') || '-',
    link.bufferedReqs.map((b) => `${b.req}${b.partial ? '~' : ''}`).join('+') || '-',
    link.responses,
    link.clientDone,
    link.clientClosedSent,
    link.serverClosed,
    link.serverCloseCause ?? '-',
    link.serverCloseRst,
    link.serverClosedWithFin,
    link.serverSocketClosed,
    link.synRetries,
    link.queuedReset,
    // Compared with now only (a close in the same step as the last response).
    link.lastResponseWrittenAtMs === now,
    link.inFlight,
    // The SYN retry schedule counts from the first attempt (TCP only).
    family === 'tcp' ? now - link.connectedAtMs : 0,
  ].join(' ');
}

const ID_PATTERN = /\b(worker\/\d+|conn\/\d+\.\d+|client\/\d+|r\d+)\b/g;

/**
 * Rename every id in order of first appearance, workers and clients first in the order of their
 * own lines sorted with their ids masked: states that differ only in which worker, connection,
 * client or request is which get the same key. Any consistent renaming keeps the key sound (two
 * keys are equal only for states equal up to names); sorting by masked lines makes it useful.
 */
export function canonical(raw: string): string {
  return canonicalLines(raw.split('\n'));
}

/** Which lines name the ids renamed first, in this order: workers, clients, links, connections. */
const enum Namer {
  None = -1,
  Worker = 0,
  Client = 1,
  Link = 2,
  Conn = 3,
}

function namerOf(line: string): Namer {
  // Asked of every line of every state's key: character tests, not a regular expression.
  if (line.startsWith('A ')) {
    if (line.startsWith('worker/', 2)) return Namer.Worker;
    if (line.startsWith('client/', 2)) return Namer.Client;
    if (line.startsWith('conn/', 2)) return Namer.Conn;
    return Namer.None;
  }
  return line.startsWith('L ') ? Namer.Link : Namer.None;
}

/** `canonical` of a key's lines (World.key builds them; nothing is joined to be split again). */
function canonicalLines(lines: readonly string[]): string {
  const byNamer: { id: string; m: string }[][] = [[], [], [], []];
  for (const line of lines) {
    const namer = namerOf(line);
    if (namer === Namer.None) continue;
    const idEnd = line.indexOf(' ', 2);
    const id = idEnd < 0 ? line.slice(2) : line.slice(2, idEnd);
    byNamer[namer]!.push({ id, m: line.replace(ID_PATTERN, '#') });
  }
  const names = new Map<string, string>();
  const counters = { worker: 0, client: 0, r: 0 };
  const connCounters = new Map<string, number>();
  const name = (id: string): string => {
    let n = names.get(id);
    if (n !== undefined) return n;
    if (id.startsWith('worker/')) n = `worker/${++counters.worker}`;
    else if (id.startsWith('client/')) n = `client/${++counters.client}`;
    else if (id.startsWith('conn/')) {
      const worker = name(`worker/${id.slice(5, id.indexOf('.'))}`);
      const k = (connCounters.get(worker) ?? 0) + 1;
      connCounters.set(worker, k);
      n = `conn/${worker.slice(7)}.${k}`;
    } else n = `r${++counters.r}`;
    names.set(id, n);
    return n;
  };
  for (const group of byNamer) {
    group.sort((a, b) => (a.m < b.m ? -1 : a.m > b.m ? 1 : 0));
    for (const { id } of group) name(id);
  }
  return inCanonicalOrder(lines.map((l) => l.replace(ID_PATTERN, name)));
}

/**
 * Actor, link, process and drain lines sorted: their order in the host is only the order of
 * creation. Items due at the same moment fire in every order anyway: theirs is no part of the state.
 */
function inCanonicalOrder(lines: readonly string[]): string {
  const sorted: string[] = [];
  const kept: string[] = [];
  for (const line of lines) (isUnordered(line) ? sorted : kept).push(line);
  sorted.sort();
  for (const line of kept) sorted.push(line);
  return sorted.join('\n');
}

/** A line whose place in the key is only the order of creation: `A `, `L `, `C `, `P `, `D `, `I `, `E `, `F `. */
function isUnordered(line: string): boolean {
  if (line.charCodeAt(1) !== 32) return false;
  switch (line.charCodeAt(0)) {
    case 65: // A
    case 76: // L
    case 67: // C
    case 80: // P
    case 68: // D
    case 73: // I
    case 69: // E
    case 70: // F
      return true;
    default:
      return false;
  }
}

/** The worker of a connection id (re-exported for the theorems). */
export { connWorker };
