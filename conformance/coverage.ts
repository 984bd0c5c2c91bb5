/**
 * Coverage: which states and transitions of each machine the conformance
 * runs exercised. Each run's traces — the server's own, and what its
 * clients saw — are sent, event by event, to an actor of XState's reference
 * interpreter for the run's policy (its clock inert: a trace brings its own
 * timer events), and XState's inspection reports every microstep: the
 * transitions taken, eventless ones included, and the states entered, the
 * ones an actor passes through on its way included. A transition is named by
 * the chart's own identity: its source state, its event (`always` for an
 * eventless one), its place among that state's transitions for the event.
 */
import { createActor, type AnyActorRef, type AnyMachineSnapshot, type AnyStateMachine, type AnyStateNode, type InspectionEvent } from 'xstate';
import { ACTOR_KINDS, actorKind, type ActorKind, type TraceEvent } from '../model/events.ts';
import { CHARTS, machineFor, machinesFor } from '../model/machines/index.ts';
import { getPolicy } from '../model/policies.ts';
import type { Trace } from '../model/trace.ts';

export interface MachineCoverage {
  readonly kind: ActorKind;
  readonly states: { readonly covered: number; readonly total: number; readonly missing: readonly string[] };
  readonly transitions: { readonly covered: number; readonly total: number; readonly missing: readonly string[] };
}

/** A transition's name: `source --event--> target` (the k-th of its source for that event, when there are several; `always` for eventless ones). */
export function transitionName(node: AnyStateNode, event: string, k: number, count: number, targets: readonly AnyStateNode[] | undefined): string {
  const to = targets && targets.length > 0 ? targets.map((t) => t.id).join(',') : '(stays)';
  return `${node.id} --${event === '' ? 'always' : event}${count > 1 ? `#${k + 1}` : ''}--> ${to}`;
}

/** A clock that never fires: the trace's own timer events stand for the machine's timers. */
const INERT_CLOCK = { setTimeout: () => 0, clearTimeout: () => {} };

function allNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...Object.values(node.states).flatMap((child) => allNodes(child as AnyStateNode))];
}

/** Every transition of a chart (eventless ones too), by name, and every state but the root. */
function chartInventory(machine: AnyStateMachine): { states: string[]; transitions: string[] } {
  const nodes = allNodes(machine.root);
  const transitions: string[] = [];
  for (const node of nodes) {
    for (const [event, list] of node.transitions) {
      if (event.startsWith('xstate.')) continue;
      list.forEach((t, k) => transitions.push(transitionName(node, event, k, list.length, t.target)));
    }
    node.always?.forEach((t, k, list) => transitions.push(transitionName(node, '', k, list.length, t.target)));
  }
  return { states: nodes.filter((n) => n !== machine.root).map((n) => n.id), transitions };
}

/** What the runs took, per machine kind: state ids entered, transition names. */
export class CoverageRecorder {
  private readonly states = new Map<ActorKind, Set<string>>(ACTOR_KINDS.map((k) => [k, new Set()]));
  private readonly transitions = new Map<ActorKind, Set<string>>(ACTOR_KINDS.map((k) => [k, new Set()]));

  /** Step every actor of these events (one run's, in order) through the policy's machines. */
  record(trace: Trace, events: readonly TraceEvent[] = trace.events): void {
    const machines = machinesFor(getPolicy(trace.header.policy), trace.header.params);
    const actors = new Map<string, AnyActorRef>();
    for (const e of events) {
      const kind = actorKind(e.actor);
      if (!kind) continue;
      let actor = actors.get(e.actor);
      if (!actor) {
        actor = createActor(machineFor(machines, kind), { clock: INERT_CLOCK, inspect: (i) => this.inspected(kind, i) });
        actors.set(e.actor, actor);
        actor.start();
      }
      const { t: _t, actor: _a, ...event } = e as TraceEvent & Record<string, unknown>;
      actor.send(event as never);
    }
    for (const actor of actors.values()) actor.stop();
  }

  private enter(kind: ActorKind, snapshot: AnyMachineSnapshot): void {
    const states = this.states.get(kind)!;
    for (const node of (snapshot as unknown as { _nodes: readonly AnyStateNode[] })._nodes) if (node.parent) states.add(node.id);
  }

  private inspected(kind: ActorKind, inspection: InspectionEvent): void {
    if (inspection.type !== '@xstate.microstep' && inspection.type !== '@xstate.snapshot') return;
    this.enter(kind, inspection.snapshot as AnyMachineSnapshot);
    if (inspection.type !== '@xstate.microstep') return;
    for (const def of inspection._transitions) {
      const eventless = def.eventType === '' || def.source.always?.includes(def);
      const list = eventless ? (def.source.always ?? [def]) : (def.source.transitions.get(def.eventType) ?? [def]);
      this.transitions.get(kind)!.add(transitionName(def.source, eventless ? '' : def.eventType, list.indexOf(def), list.length, def.target));
    }
  }

  /** Coverage per machine, against the chart (the unprovided one: every policy has the same states and transitions). */
  report(): MachineCoverage[] {
    return ACTOR_KINDS.map((kind) => {
      const machine = CHARTS[kind];
      const inventory = chartInventory(machine);
      const states = this.states.get(kind)!;
      const transitions = this.transitions.get(kind)!;
      return {
        kind,
        states: { covered: inventory.states.filter((s) => states.has(s)).length, total: inventory.states.length, missing: inventory.states.filter((s) => !states.has(s)) },
        transitions: {
          covered: inventory.transitions.filter((t) => transitions.has(t)).length,
          total: inventory.transitions.length,
          missing: inventory.transitions.filter((t) => !transitions.has(t)),
        },
      };
    });
  }
}

/** The coverage as a table. */
export function formatCoverage(coverage: readonly MachineCoverage[]): string {
  const pct = (c: { covered: number; total: number }) => `${c.covered}/${c.total} (${Math.round((100 * c.covered) / Math.max(1, c.total))} %)`;
  const lines = ['machine    states          transitions'];
  for (const m of coverage) lines.push(`${m.kind.padEnd(10)} ${pct(m.states).padEnd(15)} ${pct(m.transitions)}`);
  return lines.join('\n') + '\n';
}

/** A chart's transitions as the suite could drive them: taken, out of outside reach (and why), or not taken. */
export interface MachineReach {
  readonly kind: ActorKind;
  readonly total: number;
  readonly covered: number;
  /** Transitions whose every path from the chart's start passes an event no outside action brings about. */
  readonly notFromOutside: readonly { readonly transition: string; readonly reason: string }[];
  /** Neither taken nor shown out of reach: a path that did not get there, or a chart no path is generated for. */
  readonly notTaken: readonly string[];
}

/**
 * Events no trace of a real server and its clients can carry, whoever drives them: they happen in the
 * kernel, which tells neither the server nor a client socket (impl/README.md). The simulator and the
 * explorer have them; coverage measured on real runs cannot.
 */
const UNTRACEABLE: Readonly<Record<string, string>> = {
  'listener.syn': "the kernel's: a server does not see a SYN reach its accept queue (only the simulator and the explorer trace it)",
  'listener.overflow': "the kernel's: a server does not see its accept queue overflow",
  'listener.accept': "the kernel's accept queue: a server sees the connection it accepted, not the queue it came from",
  'listener.refuse': "the kernel's: a connect refused after the last listener copy closed reaches no server",
  'listener.reset': "the kernel's: connections queued when the last listener copy closed are reset without any process seeing them",
  'client.syn-retry': "the kernel's: a client socket does not see its SYN retransmitted",
};

const ARBITER_KILLED =
  "SIGKILL to the main process: no process can catch it, so no server's trace says it (the supervisor sees only the exit); the simulator's arbiter is never sent it either";

/**
 * Transitions, by name, that no trace of a running server can carry, though their events are the
 * chart's: the process they would come from is gone, or never hears of them. A test holds every
 * name to the chart, so a renamed transition cannot leave a stale excuse behind.
 */
export const UNTRACEABLE_TRANSITIONS: Readonly<Record<string, string>> = {
  'arbiter.running --arbiter.signal#3--> arbiter.dead': ARBITER_KILLED,
  'arbiter.stopping --arbiter.signal#1--> arbiter.dead': ARBITER_KILLED,
  'arbiter.stopping.graceful --arbiter.signal#2--> arbiter.dead': ARBITER_KILLED,
  'arbiter.running --arbiter.signal#7--> (stays)':
    "SIGCHLD: gunicorn's arbiter wakes on it to reap; ours (Node's child_process) and the simulator's learn of a child's exit as its reap, never as a signal, and a SIGCHLD sent from outside is ignored unseen",
  'worker.dying --worker.request-end--> (stays)': 'a SIGKILLed process writes nothing more: its handler never ends (the simulator may still find the item due, and the chart takes it)',
  'worker.dying --worker.signal#2--> (stays)': 'a SIGKILLed process writes nothing more: a later signal reaches no one',
  'worker.dying --worker.graceful-timeout--> (stays)': 'a SIGKILLed process writes nothing more: its own timer dies with it',
  // The worker driver (model/driver/worker.ts, every platform's) closes the socket in the step that enters
  // closingHard: what the peer sends can only arrive after the close, when the connection is forgotten.
  'conn.closingHard --conn.bytes--> (stays)': "the driver closes the socket in the step that enters closingHard, on every platform: the peer's bytes find it closed (the chart allows a server that closes later)",
  'conn.closingHard --conn.peer-fin--> (stays)': "the driver closes the socket in the step that enters closingHard, on every platform: the peer's FIN finds it closed (the chart allows a server that closes later)",
};

/**
 * Transitions, by name, that `quiesce serve` never takes, whatever is done from outside, because of
 * how it is built — where another server (gunicorn's gthread) does, and its black-box runs go through
 * them. Coverage is measured on quiesce serve's traces, so they are out of its reach; the reason says why.
 */
const OWN_POLLER =
  "quiesce serve's event loop is its poller: a readable connection is handed to a thread in the turn that reads it, so no drain, turn end, abort or FIN lands while a request waits in the poller (gthread's does: ServerTiming.dispatchMs)";
const ALWAYS_TIMED =
  'quiesce serve always runs a header timer (--header-timeout takes at least 1 ms: a request whose head or rest never comes must not hold a connection forever); gunicorn has none, and waits untimed';

const RELEASES_AT_ONCE =
  "quiesce serve closes its listener copy in the step the drain begins (releaseListener runs synchronously on Node's loop): no accept comes between; gunicorn 21–23's loop finishes its turn first, and may accept in it (#3038: ServerTiming.loopTickMs)";

const DIES_OF_THE_ABRT =
  "quiesce serve's worker dies of the watchdog's ABRT in the step that takes it (its connections aborted, its exit at once), so no KILL can follow while it lives; gunicorn's may outlive the ABRT (sys.exit joins gthread's pool threads, and the arbiter's next pass KILLs it) — which the chart's dying state allows, and does not model further";

export const NOT_ON_QUIESCE_SERVE: Readonly<Record<string, string>> = {
  'worker.dying --worker.signal#1--> (stays)': DIES_OF_THE_ABRT,
  'worker.alive.draining.listening --worker.accept--> (stays)': RELEASES_AT_ONCE,
  'worker.alive.draining.closingListener --worker.accept--> (stays)': RELEASES_AT_ONCE,
  'conn.unpolled --conn.drain#1--> (stays)': OWN_POLLER,
  'conn.unpolled --conn.drain#2--> conn.orphaned': OWN_POLLER,
  'conn.unpolled --conn.drain#3--> (stays)': OWN_POLLER,
  'conn.unpolled --conn.turn-end--> conn.orphaned': OWN_POLLER,
  'conn.unpolled --conn.abort--> conn.closingHard': OWN_POLLER,
  'conn.unpolled --conn.peer-fin--> (stays)': OWN_POLLER,
  'conn.unpolled --conn.bytes#1--> (stays)': OWN_POLLER,
  'conn.idle.fresh.checking --always#2--> conn.idle.fresh.untimed': ALWAYS_TIMED,
  'conn.pending.checking --always#2--> conn.pending.untimed': ALWAYS_TIMED,
};

/** The event of a transition, by coverage.ts's name for it (`source --event#k--> target`). */
function eventOf(transition: string): string | null {
  return /--([^\s#]+?)(?:#\d+)?--> /.exec(transition)?.[1] ?? null;
}

/**
 * Coverage against what can be driven from outside: a transition the generated paths could reach only
 * through an undrivable event (a peer RST, a crash, a SIGSTOP …), or whose event no real trace can
 * carry, is out of reach, with that reason; every other transition not taken is the suite's gap.
 */
export function reachOf(coverage: readonly MachineCoverage[], paths: readonly { readonly kind: string; readonly target: string; readonly undrivable: string | null }[]): MachineReach[] {
  return coverage.map((m) => {
    const reasons = new Map<string, string>();
    for (const t of m.transitions.missing) {
      const untraceable = UNTRACEABLE[eventOf(t) ?? ''] ?? UNTRACEABLE_TRANSITIONS[t] ?? NOT_ON_QUIESCE_SERVE[t];
      if (untraceable !== undefined) reasons.set(t, untraceable);
    }
    for (const p of paths) if (p.kind === m.kind && p.undrivable !== null && !reasons.has(p.target)) reasons.set(p.target, p.undrivable);
    const notFromOutside = m.transitions.missing.filter((t) => reasons.has(t)).map((t) => ({ transition: t, reason: reasons.get(t)! }));
    return { kind: m.kind, total: m.transitions.total, covered: m.transitions.covered, notFromOutside, notTaken: m.transitions.missing.filter((t) => !reasons.has(t)) };
  });
}

/** The reach as a table: transitions taken of those not shown out of outside reach. */
export function formatReach(reach: readonly MachineReach[]): string {
  const lines = ['machine    taken of those not shown out of reach   out of reach'];
  for (const m of reach) {
    const reachable = m.total - m.notFromOutside.length;
    lines.push(`${m.kind.padEnd(10)} ${`${m.covered}/${reachable} (${Math.round((100 * m.covered) / Math.max(1, reachable))} %)`.padEnd(39)} ${m.notFromOutside.length}`);
  }
  return lines.join('\n') + '\n';
}
