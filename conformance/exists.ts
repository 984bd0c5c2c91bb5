/**
 * The existential check: is there an interleaving of the policy's machines
 * that explains what the clients saw?
 *
 * The simulator runs a script once, on one seed: one interleaving of the
 * server's events. A real server that took another allowed interleaving —
 * a race won the other way — would look like a stranger to the policy. So
 * where that one run does not explain an observation, the explorer of
 * proofs/ searches every interleaving the charts allow (every order of
 * what is due together, every time a timer or a packet may take, every
 * service time the script names) for one whose clients see exactly what
 * the real clients saw — the same machines, never a second model.
 *
 * What is held fixed is what the runner did, in the order it did it:
 * connects, requests and closes, and the operator's signals (a batch of
 * steps at the same instant in any order among themselves). What is free is
 * everything the server does, and when. A run leaves the search the moment
 * a client sees something it did not see, or the runner's next action is
 * not the one it took; a run at rest with every observation made explains
 * it. Times are scaled down (100 ms a clock step): the explorer's clock is
 * digital, and the order of the server's timers is what matters.
 *
 * Scripts that signal a worker (SIGKILL, SIGSTOP) or send half a request
 * are not checkable here: the explorer models neither.
 */
import type { ArbiterSignal, TraceEvent } from '../model/events.ts';
import { getPolicy } from '../model/policies.ts';
import type { ServerParams } from '../model/params.ts';
import type { Monitor } from '../model/properties.ts';
import { scriptParams, type Script } from '../simulator/script.ts';
import { explore, traceOf } from '../proofs/explore.ts';
import type { Trace } from '../model/trace.ts';
import { WITNESS, type World, type WorldConfig } from '../proofs/world.ts';

/** One clock step of the explorer is this many milliseconds of the script. */
export const MS_PER_STEP = 100;

export type ExistentialVerdict =
  /** `trace`: the interleaving that explains it (on the explorer's clock), for `quiesce replay` and the viz. */
  | { readonly status: 'explained'; readonly states: number; readonly seconds: number; readonly trace: Trace }
  /**
   * Every interleaving within the bounds was tried: none explains it. `firstUnexplained`: the
   * observation the furthest-reaching runs could not make, with the server's states there.
   */
  | { readonly status: 'unexplained'; readonly states: number; readonly seconds: number; readonly firstUnexplained: string }
  /** The search reached its bound first. */
  | { readonly status: 'undecided'; readonly states: number; readonly seconds: number }
  | { readonly status: 'not-checkable'; readonly reason: string };

/** Why a script cannot be checked for every interleaving, or null. */
export function uncheckable(script: Script): string | null {
  if (script.steps.some((s) => s.do === 'signal-worker')) return 'it signals a worker process directly (not through the arbiter), which the explorer does not model';
  if (script.steps.some((s) => s.do === 'partial')) return 'it sends half a request head, which the explorer does not model';
  if (script.steps.some((s) => s.do === 'partial-body')) return 'it sends part of a request body, which the explorer does not model';
  if (script.steps.some((s) => s.do === 'too-large')) return 'it sends a body too large for the server, which the explorer does not model';
  if (script.steps.some((s) => s.do === 'reset')) return "it resets a connection (SO_LINGER 0), which the explorer's clients do not do";
  if (script.steps.some((s) => s.do === 'half-close')) return "it half-closes a connection, which the explorer's clients do not do";
  if (pipelines(script)) return "it pipelines a request behind an unanswered one, which the explorer's clients do not do";
  return null;
}

/** Some client sends a request before the one before it can have been answered (its handler alone takes longer). */
function pipelines(script: Script): boolean {
  const answerableAt = new Map<string, number>();
  for (const step of script.steps) {
    if (step.do !== 'request') continue;
    if (step.atMs < (answerableAt.get(step.client) ?? Number.NEGATIVE_INFINITY)) return true;
    answerableAt.set(step.client, step.atMs + step.serviceMs);
  }
  return false;
}

/** An action of the runner's, as the witness matches it. */
type Action = { readonly kind: 'connect' | 'send' | 'close'; readonly client: number } | { readonly kind: 'signal'; readonly signal: ArbiterSignal };

const actionKey = (a: Action) => (a.kind === 'signal' ? `signal ${a.signal}` : `${a.kind} ${a.client}`);

/**
 * The runner's actions in batches (steps at one instant), from the script's steps as the run took
 * them: a request the runner never sent (its connection was closed first) is left out, and so is a
 * close of a client whose connection had already ended (a reaction, free in any run).
 */
interface Batch {
  /** When the runner took it, in clock steps from the first batch. */
  readonly atStep: number;
  readonly actions: Action[];
  /** Clients whose scripted request the runner did not send, their connection over: over by then in any explaining run too. */
  readonly ended: number[];
}

function runnerActions(script: Script, views: readonly (readonly string[])[], clientIndex: ReadonlyMap<string, number>): Batch[] {
  const batches: Batch[] = [];
  const sent = new Map<number, number>();
  let lastAt: number | null = null;
  for (const step of script.steps) {
    let action: Action | null = null;
    let ended: number | null = null;
    if (step.do === 'signal') action = { kind: 'signal', signal: step.signal };
    else if (step.do === 'connect' || step.do === 'request' || step.do === 'close') {
      const client = clientIndex.get(step.client)!;
      const view = views[client]!;
      if (step.do === 'connect') action = { kind: 'connect', client };
      else if (step.do === 'request') {
        const n = (sent.get(client) ?? 0) + 1;
        if (view.includes(`send #${n}`)) {
          sent.set(client, n);
          action = { kind: 'send', client };
        } else ended = client;
      } else if (view.includes('close')) action = { kind: 'close', client };
    }
    if (action === null && ended === null) continue;
    if (lastAt !== step.atMs || batches.length === 0) batches.push({ atStep: Math.round(step.atMs / MS_PER_STEP), actions: [], ended: [] });
    const batch = batches[batches.length - 1]!;
    if (action) batch.actions.push(action);
    if (ended !== null) batch.ended.push(ended);
    lastAt = step.atMs;
  }
  const first = batches[0]?.atStep ?? 0;
  return batches.map((b) => ({ ...b, atStep: b.atStep - first }));
}

/**
 * One line of what a client saw, its requests named by `name` (as sent, or by their rank on the
 * connection: `#1`, `#2` …); null for what it did not see. `ended`: its connection ended before.
 * Connected is left out: a raw socket writes its request before the connect completes, the simulated one after.
 */
export function clientLine(e: TraceEvent, name: (req: string) => string, ended: boolean): string | null {
  switch (e.type) {
    case 'client.send':
      return `send ${name(e.req)}`;
    case 'client.response':
      return `response ${name(e.req)} ${e.close ? 'close' : 'keep-alive'}`;
    case 'client.fail':
      return `fail ${e.reason}${e.req ? ` ${name(e.req)}` : ''}`;
    case 'client.eof':
      return 'eof';
    case 'client.close':
      // A client closes its side when the server closed: a reaction, not what it saw.
      return ended ? null : 'close';
    default:
      return null;
  }
}

/** Each client's view of a run (observed, simulated or explored), in the order of the clients' connects. */
export function observedViews(observed: readonly TraceEvent[], clients: readonly string[]): string[][] {
  const views = clients.map(() => [] as string[]);
  // The runner names its clients client/1, client/2 … in the order of the script's first connects.
  const byActor = new Map<string, number>(clients.map((_, i) => [`client/${i + 1}`, i] as const));
  const ranks = clients.map(() => new Map<string, number>());
  const ended = clients.map(() => false);
  for (const e of observed) {
    const i = byActor.get(e.actor);
    if (i === undefined) continue;
    const rank = (req: string) => {
      let n = ranks[i]!.get(req);
      if (n === undefined) ranks[i]!.set(req, (n = ranks[i]!.size + 1));
      return `#${n}`;
    };
    const line = clientLine(e, rank, ended[i]!);
    if (e.type === 'client.eof' || e.type === 'client.fail') ended[i] = true;
    if (line !== null) views[i]!.push(line);
  }
  return views;
}

/**
 * How far from its time the runner may seem to act, in clock steps: the runner is a little late,
 * and times round to a step.
 */
const RUNNER_SLACK_STEPS = 1;

/**
 * Marks a refusal of a move the explorer offered for the runner (a client or operator action at
 * another time, or one the runner never took): the search's own guesses, not what no server
 * behaviour explains — never reported as such.
 */
const RUNNER_REFUSAL = 'runner: ';

/** The witness: follows a run's clients and the runner's actions against the observed ones. */
export class ObservedRun implements Monitor {
  constructor(
    private readonly batches: readonly Batch[],
    private readonly views: readonly (readonly string[])[],
    /** When the first batch was taken: the runner's clock starts there. */
    private origin: number | null = null,
    /** Progress: the batch under way and what of it is done; each client's place in its view. */
    private batch = 0,
    private doneInBatch: readonly string[] = [],
    private readonly seen: number[] = views.map(() => 0),
    private readonly actors: string[] = [],
    private readonly ranks: Map<string, number>[] = views.map(() => new Map()),
    private readonly ended: boolean[] = views.map(() => false),
  ) {}

  private act(action: Action, t: number): string | null {
    const batch = this.batches[this.batch];
    const key = actionKey(action);
    if (batch && batch.actions.some((a) => actionKey(a) === key) && !this.doneInBatch.includes(key)) {
      this.origin ??= t - batch.atStep;
      if (Math.abs(t - (this.origin + batch.atStep)) > RUNNER_SLACK_STEPS) return `${RUNNER_REFUSAL}${key} at step ${t - this.origin}; the runner took it at step ${batch.atStep}`;
      this.doneInBatch = [...this.doneInBatch, key];
      this.advance();
      return null;
    }
    return `${RUNNER_REFUSAL}the runner's next action was ${batch ? batch.actions.filter((a) => !this.doneInBatch.includes(actionKey(a))).map(actionKey).join(' or ') || 'none' : 'none'}, not ${key}`;
  }

  /** On to the next batch once this one's actions are taken and the clients it needs over are. */
  private advance(): void {
    for (let batch = this.batches[this.batch]; batch; batch = this.batches[this.batch]) {
      if (this.doneInBatch.length < batch.actions.length || batch.ended.some((c) => !this.ended[c])) return;
      this.batch++;
      this.doneInBatch = [];
    }
  }

  /** How far the run has followed the observations: the runner's batches and the clients' views. */
  progress(): number {
    return this.batch + this.seen.reduce((a, b) => a + b, 0);
  }

  /** The runner's next batch is past its time (the run let the moment go by): why, or null. */
  overdue(nowMs: number): string | null {
    const batch = this.batches[this.batch];
    if (batch === undefined || this.origin === null || nowMs <= this.origin + batch.atStep + RUNNER_SLACK_STEPS) return null;
    const left = batch.actions.filter((a) => !this.doneInBatch.includes(actionKey(a))).map(actionKey);
    const over = batch.ended.filter((c) => !this.ended[c]).map((c) => `client ${c + 1}'s connection over (the runner sent nothing more on it)`);
    return `at step ${batch.atStep} the runner did ${[...left, ...over].join(' and ') || 'nothing'}; no run could follow it there`;
  }

  step(e: TraceEvent): string | null {
    if (e.type === 'arbiter.signal') return this.act({ kind: 'signal', signal: e.signal }, e.t);
    if (!e.actor.startsWith('client/')) return null;
    let i = this.actors.indexOf(e.actor);
    if (i < 0) {
      i = this.actors.length;
      this.actors.push(e.actor);
      if (i >= this.views.length) return `a client the runner never had: ${e.actor}`;
    }
    if (e.type === 'client.connect') return this.act({ kind: 'connect', client: i }, e.t);
    if (e.type === 'client.send') {
      const refused = this.act({ kind: 'send', client: i }, e.t);
      if (refused) return refused;
    }
    if (e.type === 'client.close' && !this.ended[i]) {
      const refused = this.act({ kind: 'close', client: i }, e.t);
      if (refused) return refused;
    }
    const rank = (req: string) => {
      let n = this.ranks[i]!.get(req);
      if (n === undefined) this.ranks[i]!.set(req, (n = this.ranks[i]!.size + 1));
      return `#${n}`;
    };
    const line = clientLine(e, rank, this.ended[i]!);
    if (e.type === 'client.eof' || e.type === 'client.fail') {
      this.ended[i] = true;
      this.advance();
    }
    if (line === null) return null;
    const expected = this.views[i]![this.seen[i]!];
    if (line !== expected) return `client ${i + 1}, step ${this.seen[i]! + 1}: saw ${line}; the real client saw ${expected ?? 'nothing more'}`;
    this.seen[i]!++;
    return null;
  }

  end(): string | null {
    if (this.batch < this.batches.length) return `the run ended before the runner's ${actionKey(this.batches[this.batch]!.actions[0]!)}`;
    const short = this.views.findIndex((v, i) => this.seen[i]! < v.length);
    return short < 0 ? null : `client ${short + 1} saw no ${this.views[short]![this.seen[short]!]}`;
  }

  key(nowMs: number): string {
    // Where the runner's clock stands matters only while it has something left to do.
    const clock = this.origin === null || this.batch >= this.batches.length ? '-' : nowMs - this.origin;
    return `${clock} ${this.batch} ${this.doneInBatch.join(',')} ${this.seen.join(',')} ${this.actors.length} ${this.ended.map(Number).join('')} ${this.ranks.map((r) => r.size).join(',')}`;
  }

  copy(): Monitor {
    return new ObservedRun(this.batches, this.views, this.origin, this.batch, this.doneInBatch, [...this.seen], [...this.actors], this.ranks.map((r) => new Map(r)), [...this.ended]);
  }
}

/** A script's parameters on the explorer's clock: every duration in clock steps, at least one where it is not zero. */
function scaled(params: ServerParams): ServerParams {
  const steps = (ms: number) => (ms === 0 ? 0 : Math.max(1, Math.round(ms / MS_PER_STEP)));
  return {
    ...params,
    keepAliveMs: steps(params.keepAliveMs),
    gracefulTimeoutMs: steps(params.gracefulTimeoutMs),
    idleGraceMs: steps(params.idleGraceMs),
    lingerMs: steps(params.lingerMs),
    headerTimeoutMs: steps(params.headerTimeoutMs),
    heartbeatIntervalMs: steps(params.heartbeatIntervalMs),
    selectTimeoutMs: steps(params.selectTimeoutMs),
    // The explorer leaves the watchdog out (the checkable scripts never need it), and its loop turn
    // with it: a turn no explored run lives to see.
    timeoutMs: 0,
    arbiterTickMs: 100_000,
    maxRequestsJitter: 0,
  };
}

export interface ExistsOptions {
  /** Give up beyond this many states (the verdict is then `undecided`). */
  readonly maxStates?: number;
  readonly params?: ServerParams;
}

/** Search every interleaving of `policy`'s machines for one whose clients saw what `observed` says. */
export function existsExplanation(script: Script, policy: string, observed: readonly TraceEvent[], options: ExistsOptions = {}): ExistentialVerdict {
  const reason = uncheckable(script);
  if (reason) return { status: 'not-checkable', reason };
  const clients: string[] = [];
  for (const step of script.steps) if (step.do === 'connect' && !clients.includes(step.client)) clients.push(step.client);
  const clientIndex = new Map(clients.map((c, i) => [c, i] as const));
  const views = observedViews(observed, clients);
  const batches = runnerActions(script, views, clientIndex);
  const services = new Set<number>();
  for (const step of script.steps) if (step.do === 'request') services.add(Math.round(step.serviceMs / MS_PER_STEP));
  const config: WorldConfig = {
    policy: getPolicy(policy),
    params: scaled(options.params ?? scriptParams(script)),
    latencyMs: 0,
    bootMs: 1,
    serviceMs: [...services].sort((a, b) => a - b),
    clients: clients.map((c) => ({
      requests: script.steps.filter((s) => s.do === 'request' && s.client === c).length,
      mayCloseEarly: true,
    })),
    signals: script.steps.flatMap((s) => (s.do === 'signal' ? [s.signal] : [])),
    properties: [],
    // The runner starts once the server accepts, and signals whenever its script says.
    clientsAfterBoot: true,
    signalsWhileStopping: true,
    clientsMayAbandon: true,
    witness: new ObservedRun(batches, views),
  };
  // The refusal of the run that followed the observations furthest: where no interleaving goes on.
  // At equal progress, what a client saw says more than a runner's action out of its time.
  let furthest = { rank: -1, message: 'no run reached the first observation' };
  const refusedAt = (world: World, message: string) => {
    if (message.startsWith(RUNNER_REFUSAL)) return;
    const rank = 2 * (world.witness as ObservedRun).progress() + (message.startsWith('client ') ? 1 : 0);
    if (rank <= furthest.rank) return;
    const states = world.machines
      .actorIds()
      .filter((a) => a.startsWith('worker/') || a.startsWith('conn/'))
      .map((a) => `${a} ${world.machines.isDone(a) ? 'done' : world.machines.stateName(a)}`);
    furthest = { rank, message: `${message} (at step ${world.nowMs}; ${states.join(', ') || 'no worker'})` };
  };
  const result = explore(
    config,
    {
      prune: (world) => {
        const refusal = world.verdicts.find((v) => v.property === WITNESS)?.message ?? (world.witness as ObservedRun).overdue(world.nowMs);
        if (refusal === null) return false;
        refusedAt(world, refusal);
        return true;
      },
      atRest: (world) => {
        const refusal = world.verdicts.find((v) => v.property === WITNESS);
        if (!refusal) return { kind: 'explained', what: 'an interleaving whose clients saw what the real ones saw' };
        refusedAt(world, refusal.message);
        return null;
      },
    },
    { stopAtFirst: true, symmetry: false, maxStates: options.maxStates ?? 200_000 },
  );
  const figures = { states: result.states, seconds: result.seconds };
  const explained = result.findings.find((f) => f.kind === 'explained');
  if (explained) return { status: 'explained', ...figures, trace: traceOf(config, explained.path, { script: script.name, msPerStep: MS_PER_STEP }).trace };
  return result.exhaustive ? { status: 'unexplained', ...figures, firstUnexplained: furthest.message } : { status: 'undecided', ...figures };
}
