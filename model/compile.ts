/**
 * A compiler from the machine definitions to a fast executable form.
 *
 * It reads the very objects XState builds from each chart (the provided
 * machine: its state nodes, resolved transitions, guards, actions and delays)
 * and turns them into tables: every state gets a number; for each leaf state
 * and event type, the candidate transitions in XState's priority order, each
 * with its guard as a plain function, and its exit, transition and entry
 * actions already put in the order XState's microstep would run them. A step
 * is then a table lookup, guard calls, and the chart's own assign functions
 * over the context — no snapshot cloning, no state-node sets, no closures
 * per event.
 *
 * XState stays the reference: `test/model/compile.test.ts` drives both forms
 * with the same random event sequences, for every machine under every
 * policy, and requires the same state values, contexts, actions and answers.
 * What the charts here do not use (parallel states, history, invoked actors,
 * `after`, raised events without a delay, nested final states) is refused at
 * compile time rather than approximated.
 */
import { and, not, or, type AnyStateMachine, type AnyStateNode, type StateValue } from 'xstate';
import type { ActorState, MachineAction, MachineRuntime, Step } from './step.ts';

type Context = Record<string, unknown>;
type EventObject = { readonly type: string } & Record<string, unknown>;

type Guard = (context: Context, event: EventObject) => boolean;

/** An action, resolved: it may change the context and may emit an action for the host. */
type CompiledAction =
  | { readonly kind: 'assign'; readonly run: (context: Context, event: EventObject) => Context }
  | { readonly kind: 'emit'; readonly emit: (context: Context, event: EventObject) => MachineAction };

interface CompiledTransition {
  readonly guard: Guard | null;
  /** The leaf the actor is in afterwards; null for a targetless transition. */
  readonly to: number | null;
  /** Exit, transition and entry actions, in the order XState runs them. */
  readonly actions: readonly CompiledAction[];
}

interface Leaf {
  readonly path: readonly string[];
  readonly name: string;
  readonly value: StateValue;
  readonly final: boolean;
  readonly tags: ReadonlySet<string>;
  /** Candidate transitions per event type, deepest state first, document order within a state. */
  readonly on: ReadonlyMap<string, readonly CompiledTransition[]>;
  /** Eventless transitions, grouped by state, deepest first: the first state with an enabled one wins. */
  readonly always: readonly (readonly CompiledTransition[])[];
  readonly handles: readonly string[];
}

/** A compiled machine's state: a leaf number and the context. */
class CompiledState implements ActorState<unknown> {
  constructor(
    readonly leaf: number,
    readonly context: unknown,
    readonly status: 'active' | 'done',
    private readonly leaves: readonly Leaf[],
  ) {}

  get value(): StateValue {
    return this.leaves[this.leaf]!.value;
  }
}

const NO_ACTIONS: readonly MachineAction[] = Object.freeze([]);

export class UnsupportedChartError extends Error {
  constructor(machine: string, what: string) {
    super(`cannot compile ${machine}: ${what}`);
    this.name = 'UnsupportedChartError';
  }
}

/** Compile a (provided) machine. */
export function compileMachine<C>(machine: AnyStateMachine): MachineRuntime<C> {
  return new Compiler(machine).runtime() as MachineRuntime<C>;
}

/**
 * XState's guard combinators, told apart by their check function (their names do not survive a
 * bundler: `and` may become `and2`).
 */
const COMBINATOR_CHECKS = new Map<unknown, 'and' | 'or' | 'not'>([
  [(and([]) as unknown as { check: unknown }).check, 'and'],
  [(or([]) as unknown as { check: unknown }).check, 'or'],
  [(not('') as unknown as { check: unknown }).check, 'not'],
]);

export function combinatorOf(check: unknown): 'and' | 'or' | 'not' | undefined {
  return COMBINATOR_CHECKS.get(check);
}

/**
 * The `{ context, event }` argument of guards, assigners, params and delays, reused rather than
 * allocated per call: the chart's functions read it and do not keep it.
 */
interface Args {
  context: Context;
  event: EventObject;
}

class Compiler {
  private readonly nodes: AnyStateNode[] = [];
  private readonly args: Args = { context: {}, event: { type: '' } };
  private readonly implementations: { guards: Record<string, unknown>; actions: Record<string, unknown>; delays: Record<string, unknown> };

  constructor(private readonly machine: AnyStateMachine) {
    const impl = machine.implementations as unknown as { guards?: Record<string, unknown>; actions?: Record<string, unknown>; delays?: Record<string, unknown> };
    this.implementations = { guards: impl.guards ?? {}, actions: impl.actions ?? {}, delays: impl.delays ?? {} };
    this.collect(machine.root);
  }

  private unsupported(what: string): never {
    throw new UnsupportedChartError(this.machine.id, what);
  }

  private collect(node: AnyStateNode): void {
    if (node.type === 'parallel' || node.type === 'history') this.unsupported(`${node.type} state ${node.id}`);
    if (node.invoke.length > 0) this.unsupported(`invoked actors in ${node.id}`);
    if (node.after.length > 0) this.unsupported(`delayed transitions (after) in ${node.id}`);
    if (node.type === 'final' && node.parent !== this.machine.root) this.unsupported(`nested final state ${node.id}`);
    this.nodes.push(node);
    for (const child of Object.values(node.states) as AnyStateNode[]) this.collect(child);
  }

  // ───────────────────────── guards ─────────────────────────

  private guard(ref: unknown): Guard {
    if (typeof ref === 'string') {
      const impl = this.implementations.guards[ref];
      if (impl === undefined) this.unsupported(`guard '${ref}' is not implemented`);
      return this.guard(impl);
    }
    if (typeof ref === 'function') {
      const combinator = ref as unknown as { guards?: readonly unknown[]; check?: unknown };
      if (combinator.check !== undefined) {
        const parts = (combinator.guards ?? []).map((g) => this.guard(g));
        const kind = combinatorOf(combinator.check);
        if (kind === 'and') return (c, e) => parts.every((p) => p(c, e));
        if (kind === 'or') return (c, e) => parts.some((p) => p(c, e));
        if (kind === 'not') return (c, e) => !parts[0]!(c, e);
        this.unsupported('a built-in guard other than and, or, not');
      }
      const fn = ref as (args: Args, params: unknown) => boolean;
      const args = this.args;
      return (context, event) => {
        args.context = context;
        args.event = event;
        return fn(args, undefined);
      };
    }
    if (typeof ref === 'object' && ref !== null && 'type' in ref) {
      const { type, params } = ref as { type: string; params?: unknown };
      const impl = this.implementations.guards[type];
      if (typeof impl !== 'function') this.unsupported(`guard '${type}' with params`);
      const fn = impl as (args: Args, params: unknown) => boolean;
      const args = this.args;
      return (context, event) => {
        args.context = context;
        args.event = event;
        return fn(args, typeof params === 'function' ? params(args) : params);
      };
    }
    this.unsupported(`a guard of an unknown shape`);
  }

  // ───────────────────────── actions ─────────────────────────

  private actions(refs: readonly unknown[]): CompiledAction[] {
    return refs.flatMap((ref) => this.action(ref));
  }

  private action(ref: unknown): CompiledAction[] {
    // A named action, with or without params: look up its implementation.
    if (typeof ref === 'string' || (typeof ref === 'object' && ref !== null && 'type' in ref)) {
      const type = typeof ref === 'string' ? ref : (ref as { type: string }).type;
      const params = typeof ref === 'string' ? undefined : (ref as { params?: unknown }).params;
      const impl = this.implementations.actions[type];
      if (impl === undefined) this.unsupported(`action '${type}' is not implemented`);
      const args = this.args;
      const paramsOf =
        typeof params === 'function'
          ? (context: Context, event: EventObject) => {
              args.context = context;
              args.event = event;
              return params(args);
            }
          : () => params;
      if (typeof impl === 'function' && 'resolve' in impl) return this.builtin(impl, paramsOf);
      // A command: the host carries it out, with its params resolved against the context of the moment.
      return [{ kind: 'emit', emit: (context, event) => ({ type, params: paramsOf(context, event) }) }];
    }
    if (typeof ref === 'function' && 'resolve' in ref) return this.builtin(ref, () => undefined);
    if (typeof ref === 'function') {
      const name = (ref as { name?: string }).name || '(anonymous)';
      return [{ kind: 'emit', emit: () => ({ type: name, params: undefined }) }];
    }
    this.unsupported('an action of an unknown shape');
  }

  private builtin(action: object, paramsOf: (context: Context, event: EventObject) => unknown): CompiledAction[] {
    const builtin = action as { type?: string; assignment?: unknown; event?: unknown; id?: unknown; delay?: unknown; sendId?: unknown };
    const args = this.args;
    const at = (context: Context, event: EventObject): Args => {
      args.context = context;
      args.event = event;
      return args;
    };
    switch (builtin.type) {
      case 'xstate.assign': {
        const assignment = builtin.assignment;
        if (typeof assignment === 'function') {
          const assigner = assignment as (a: Args, p: unknown) => Context;
          return [
            {
              kind: 'assign',
              run: (context, event) => {
                const params = paramsOf(context, event);
                return { ...context, ...assigner(at(context, event), params) };
              },
            },
          ];
        }
        const entries = Object.entries(assignment as Record<string, unknown>);
        return [
          {
            kind: 'assign',
            run: (context, event) => {
              const params = paramsOf(context, event);
              const partial: Context = {};
              for (const [key, value] of entries) partial[key] = typeof value === 'function' ? (value as (a: Args, p: unknown) => unknown)(at(context, event), params) : value;
              return { ...context, ...partial };
            },
          },
        ];
      }
      case 'xstate.raise': {
        const { event: raised, id, delay } = builtin;
        if (delay === undefined) this.unsupported('a raise without a delay');
        return [
          {
            kind: 'emit',
            emit: (context, event) => {
              const params = paramsOf(context, event);
              const resolvedEvent = typeof raised === 'function' ? raised(at(context, event), params) : raised;
              const configDelay = typeof delay === 'string' ? this.implementations.delays[delay] : delay;
              const resolvedDelay = typeof configDelay === 'function' ? configDelay(at(context, event), params) : configDelay;
              if (typeof resolvedDelay !== 'number') this.unsupported(`delay '${String(delay)}' does not resolve to a number`);
              return { type: 'xstate.raise', params: { event: resolvedEvent, id, delay: resolvedDelay } };
            },
          },
        ];
      }
      case 'xstate.cancel': {
        const sendId = builtin.sendId;
        return [{ kind: 'emit', emit: (context, event) => ({ type: 'xstate.cancel', params: { sendId: typeof sendId === 'function' ? sendId(at(context, event), paramsOf(context, event)) : sendId } }) }];
      }
      default:
        this.unsupported(`built-in action ${builtin.type}`);
    }
  }

  // ───────────────────────── the state tables ─────────────────────────

  private ancestors(node: AnyStateNode): AnyStateNode[] {
    const out: AnyStateNode[] = [];
    for (let n = node.parent; n; n = n.parent) out.push(n);
    return out;
  }

  private isDescendant(node: AnyStateNode, of: AnyStateNode): boolean {
    for (let n = node.parent; n; n = n.parent) if (n === of) return true;
    return false;
  }

  /** The leaf and the entered states (shallowest first) when entering `target` by its initial states. */
  private enterDown(target: AnyStateNode, entered: AnyStateNode[], defaultEntry: Set<AnyStateNode>): AnyStateNode {
    let node = target;
    while (node.type === 'compound') {
      const initial = node.initial.target[0] as AnyStateNode;
      entered.push(initial);
      defaultEntry.add(initial);
      node = initial;
    }
    return node;
  }

  /**
   * One transition taken from a leaf, resolved as XState's microstep resolves it (getTransitionDomain,
   * computeExitSet, computeEntrySet): which states are exited and entered, hence which actions run in
   * which order, and where the actor ends up.
   */
  private resolve(leaf: AnyStateNode, t: { target?: readonly AnyStateNode[]; source: AnyStateNode; actions: readonly unknown[]; reenter: boolean; guard?: unknown }): CompiledTransition {
    const guard = t.guard === undefined ? null : this.guard(t.guard);
    const transitionActions = this.actions(t.actions);
    const targets = t.target ?? [];
    if (targets.length === 0) return { guard, to: null, actions: transitionActions };
    if (targets.length > 1) this.unsupported(`a transition with several targets from ${t.source.id}`);
    const target = targets[0]!;
    const source = t.source;
    // The transition's domain: the source when every target is inside it (and it does not re-enter), else their least common ancestor.
    let domain: AnyStateNode | undefined;
    if (!t.reenter && (target === source || this.isDescendant(target, source))) domain = source;
    else domain = [source, ...this.ancestors(source)].find((a) => a !== source && (target === a ? false : this.isDescendant(target, a)) && this.isDescendant(source, a));
    domain ??= this.machine.root;
    const active = [leaf, ...this.ancestors(leaf)];
    const exited = active.filter((n) => this.isDescendant(n, domain!) || (t.reenter && n === domain && n === source)).sort((a, b) => b.order - a.order);
    // Entered: the target (unless it is the source itself, kept), its ancestors below the domain, and its initial descendants.
    const entered: AnyStateNode[] = [];
    const defaultEntry = new Set<AnyStateNode>();
    const enterTarget = target !== source || source !== domain || t.reenter;
    for (const anc of this.ancestors(target).reverse()) if (this.isDescendant(anc, domain)) entered.push(anc);
    if (enterTarget) {
      entered.push(target);
      defaultEntry.add(target);
    }
    const to = this.enterDown(target, entered, defaultEntry);
    entered.sort((a, b) => a.order - b.order);
    const actions: CompiledAction[] = [...exited.flatMap((n) => this.actions(n.exit)), ...transitionActions];
    for (const node of entered) {
      actions.push(...this.actions(node.entry));
      if (defaultEntry.has(node) && node.type === 'compound') actions.push(...this.actions(node.initial.actions));
    }
    // Reaching a final state ends the actor: XState then runs the exit actions of every state still active.
    if (to.type === 'final') actions.push(...[to, ...this.ancestors(to)].sort((a, b) => b.order - a.order).flatMap((n) => this.actions(n.exit)));
    return { guard, to: this.leafIndex.get(to)!, actions };
  }

  private readonly leafIndex = new Map<AnyStateNode, number>();

  runtime(): MachineRuntime<unknown> {
    const leafNodes = this.nodes.filter((n) => n.type === 'atomic' || n.type === 'final');
    leafNodes.forEach((n, i) => this.leafIndex.set(n, i));
    const leaves: Leaf[] = leafNodes.map((node) => {
      const chain = [node, ...this.ancestors(node)];
      const on = new Map<string, CompiledTransition[]>();
      for (const n of chain) {
        for (const [event, list] of n.transitions) {
          if (!on.has(event)) on.set(event, []);
          for (const t of list) on.get(event)!.push(this.resolve(node, t as never));
        }
      }
      const always = chain.filter((n) => n.always && n.always.length > 0).map((n) => (n.always ?? []).map((t) => this.resolve(node, t as never)));
      const handles = [...new Set(chain.flatMap((n) => [...n.transitions.keys()]))].filter((e) => e !== '' && !e.startsWith('xstate.')).sort();
      return {
        path: node.path,
        name: node.path.join('.'),
        value: deepFreeze(valueOf(node.path)),
        final: node.type === 'final',
        tags: new Set(chain.flatMap((n) => [...n.tags])),
        on,
        always,
        handles,
      };
    });
    return new CompiledRuntime(this.machine, leaves, this.initial(leaves));
  }

  /** The initial microstep: enter the root's initial states (with their entry actions), as initialTransition does. */
  private initial(leaves: readonly Leaf[]): { leaf: number; actions: readonly CompiledAction[]; context: Context } {
    const root = this.machine.root;
    const entered: AnyStateNode[] = [root];
    const defaultEntry = new Set<AnyStateNode>([root]);
    const leaf = this.enterDown(root, entered, defaultEntry);
    entered.sort((a, b) => a.order - b.order);
    const actions: CompiledAction[] = [];
    for (const node of entered) {
      actions.push(...this.actions(node.entry));
      if (defaultEntry.has(node) && node.type === 'compound') actions.push(...this.actions(node.initial.actions));
    }
    const config = (this.machine.config as { context?: unknown }).context;
    if (typeof config === 'function') this.unsupported('a context computed from input');
    void leaves;
    return { leaf: this.leafIndex.get(leaf)!, actions, context: (config ?? {}) as Context };
  }
}

/** A leaf's state value, as XState writes it: `'unborn'`, `{ alive: { draining: 'listening' } }`. */
function valueOf(path: readonly string[]): StateValue {
  if (path.length === 0) return {};
  let value: StateValue = path[path.length - 1]!;
  for (let i = path.length - 2; i >= 0; i--) value = { [path[i]!]: value };
  return value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) for (const v of Object.values(value)) deepFreeze(v);
  return Object.freeze(value);
}

/** A query state value as the path it names: `{ alive: 'draining' }` → ['alive', 'draining']; `'a.b'` → ['a', 'b']. */
function pathOf(value: StateValue): string[] {
  if (typeof value === 'string') return value.split('.');
  const keys = Object.keys(value);
  if (keys.length !== 1) return []; // several regions: never one leaf (no parallel states here)
  const child = value[keys[0]!];
  return child === undefined || (typeof child === 'object' && Object.keys(child).length === 0) ? [keys[0]!] : [keys[0]!, ...pathOf(child as StateValue)];
}

const INIT_EVENT: EventObject = { type: 'xstate.init', input: undefined };

class CompiledRuntime implements MachineRuntime<unknown> {
  readonly id: string;
  private readonly queries = new Map<string, readonly string[]>();
  private readonly initialState: Step<unknown>;

  constructor(
    machine: AnyStateMachine,
    private readonly leaves: readonly Leaf[],
    initial: { leaf: number; actions: readonly CompiledAction[]; context: Context },
  ) {
    this.id = machine.id;
    const out: MachineAction[] = [];
    let context = initial.context;
    for (const action of initial.actions) context = this.run(action, context, INIT_EVENT, out);
    this.initialState = this.settle(initial.leaf, context, INIT_EVENT, out);
  }

  initial(): Step<unknown> {
    return this.initialState;
  }

  accepts(state: ActorState<unknown>, event: { readonly type: string }): boolean {
    if (state.status !== 'active') return false;
    const candidates = this.leaves[(state as CompiledState).leaf]!.on.get(event.type);
    if (candidates === undefined) return false;
    const context = state.context as Context;
    for (const t of candidates) if (t.guard === null || t.guard(context, event as EventObject)) return true;
    return false;
  }

  step(state: ActorState<unknown>, event: { readonly type: string }): Step<unknown> {
    return this.tryStep(state, event) ?? { state, actions: NO_ACTIONS };
  }

  tryStep(state: ActorState<unknown>, event: { readonly type: string }): Step<unknown> | null {
    const current = state as CompiledState;
    if (current.status !== 'active') return null;
    const candidates = this.leaves[current.leaf]!.on.get(event.type);
    const context = current.context as Context;
    const e = event as EventObject;
    let chosen: CompiledTransition | undefined;
    if (candidates !== undefined) {
      for (const t of candidates) {
        if (t.guard === null || t.guard(context, e)) {
          chosen = t;
          break;
        }
      }
    }
    // Not accepted: nothing changes (as XState's transition() does with an unhandled event).
    if (chosen === undefined) return null;
    const out: MachineAction[] = [];
    let next = context;
    for (const action of chosen.actions) next = this.run(action, next, e, out);
    return this.settle(chosen.to ?? current.leaf, next, e, out);
  }

  matches(state: ActorState<unknown>, value: StateValue): boolean {
    const key = typeof value === 'string' ? value : JSON.stringify(value);
    let query = this.queries.get(key);
    if (query === undefined) this.queries.set(key, (query = pathOf(value)));
    const path = this.leaves[(state as CompiledState).leaf]!.path;
    if (query.length === 0 || query.length > path.length) return false;
    for (let i = 0; i < query.length; i++) if (query[i] !== path[i]) return false;
    return true;
  }

  hasTag(state: ActorState<unknown>, tag: string): boolean {
    return this.leaves[(state as CompiledState).leaf]!.tags.has(tag);
  }

  stateName(state: ActorState<unknown>): string {
    return this.leaves[(state as CompiledState).leaf]!.name;
  }

  eventsHandledIn(state: ActorState<unknown>): string[] {
    return [...this.leaves[(state as CompiledState).leaf]!.handles];
  }

  private run(action: CompiledAction, context: Context, event: EventObject, out: MachineAction[]): Context {
    if (action.kind === 'assign') return action.run(context, event);
    out.push(action.emit(context, event));
    return context;
  }

  /**
   * After a microstep: take eventless transitions until none is enabled (XState's macrostep), then
   * the state. A final leaf ends the actor (status done), running every active state's exit actions.
   */
  private settle(leaf: number, context: Context, event: EventObject, out: MachineAction[]): Step<unknown> {
    for (let guardRounds = 0; ; guardRounds++) {
      if (guardRounds > 1000) throw new Error(`${this.id}: eventless transitions do not settle`);
      const current = this.leaves[leaf]!;
      if (current.final) break;
      let taken: CompiledTransition | undefined;
      for (const group of current.always) {
        for (const t of group) {
          if (t.guard === null || t.guard(context, event)) {
            taken = t;
            break;
          }
        }
        if (taken) break;
      }
      if (taken === undefined) break;
      const before = context;
      for (const action of taken.actions) context = this.run(action, context, event, out);
      // A targetless eventless transition that changed nothing would loop forever: XState stops there too.
      if (taken.to === null && context === before) break;
      leaf = taken.to ?? leaf;
    }
    const done = this.leaves[leaf]!.final;
    return { state: new CompiledState(leaf, context, done ? 'done' : 'active', this.leaves), actions: out.length === 0 ? NO_ACTIONS : out };
  }
}
