/**
 * A chart's structure as plain data, read from the machine definition itself:
 * every state (nested), its entry and exit actions, every transition with its
 * event, guard (by name, combinators spelled out), targets and actions. The
 * diagrams, the "same chart under every policy" test, the compiler and the
 * visualization's machine view all read this one form.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { combinatorOf } from './compile.ts';

export type GuardRef = string | { readonly and: readonly GuardRef[] } | { readonly or: readonly GuardRef[] } | { readonly not: GuardRef };

export interface ActionRef {
  /** A named action (`closeSocket`, `addConn`), or a built-in: `xstate.raise`, `xstate.cancel`, `xstate.assign`. */
  readonly type: string;
  /** raise: the raised event's type; cancel: the timer id. */
  readonly detail?: string;
}

export interface ChartTransition {
  /** The event type; '' for an eventless (`always`) transition. */
  readonly event: string;
  readonly guard: GuardRef | null;
  /** Target state ids (`worker.exiting`); empty for a targetless transition. */
  readonly targets: readonly string[];
  readonly actions: readonly ActionRef[];
  readonly reenter: boolean;
}

export interface ChartNode {
  /** `worker.alive.draining`. */
  readonly id: string;
  readonly key: string;
  readonly path: readonly string[];
  readonly type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** The initial child's key, for a compound state. */
  readonly initial: string | null;
  readonly tags: readonly string[];
  readonly entry: readonly ActionRef[];
  readonly exit: readonly ActionRef[];
  /** In document order; `always` transitions have event ''. */
  readonly transitions: readonly ChartTransition[];
  readonly children: readonly ChartNode[];
}

export function guardRef(guard: unknown): GuardRef {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && guard !== null && 'type' in guard) return String((guard as { type: unknown }).type);
  // XState's combinators carry their operands in `guards`; their check function says which they are.
  if (typeof guard === 'function') {
    const combinator = guard as unknown as { guards?: readonly unknown[]; check?: unknown };
    const kind = combinatorOf(combinator.check);
    if (kind !== undefined && Array.isArray(combinator.guards)) {
      const parts = combinator.guards.map(guardRef);
      if (kind === 'not') return { not: parts[0]! };
      return kind === 'or' ? { or: parts } : { and: parts };
    }
  }
  return '(inline)';
}

export function actionRef(action: unknown): ActionRef {
  if (typeof action === 'string') return { type: action };
  if (typeof action === 'function') {
    const builtin = action as unknown as { type?: string; event?: unknown; sendId?: unknown; name?: string };
    if (builtin.type === 'xstate.raise') {
      const event = builtin.event as { type?: string } | undefined;
      return { type: 'xstate.raise', ...(event?.type ? { detail: event.type } : {}) };
    }
    if (builtin.type === 'xstate.cancel') return { type: 'xstate.cancel', ...(typeof builtin.sendId === 'string' ? { detail: builtin.sendId } : {}) };
    if (builtin.type === 'xstate.assign') return { type: 'xstate.assign' };
    return { type: builtin.type ?? builtin.name ?? '(inline)' };
  }
  if (typeof action === 'object' && action !== null && 'type' in action) return { type: String((action as { type: unknown }).type) };
  return { type: '(inline)' };
}

function transitionOf(t: { eventType?: string | null; guard?: unknown; target?: readonly AnyStateNode[]; actions?: readonly unknown[]; reenter?: boolean }, event: string): ChartTransition {
  return {
    event,
    guard: t.guard === undefined ? null : guardRef(t.guard),
    targets: (t.target ?? []).map((n) => n.id),
    actions: (t.actions ?? []).map(actionRef),
    reenter: t.reenter ?? false,
  };
}

function nodeOf(node: AnyStateNode): ChartNode {
  const transitions: ChartTransition[] = [];
  for (const [event, list] of node.transitions) for (const t of list) transitions.push(transitionOf(t, event));
  for (const t of node.always ?? []) transitions.push(transitionOf(t, ''));
  const children = (Object.values(node.states) as AnyStateNode[]).map(nodeOf);
  return {
    id: node.id,
    key: node.key,
    path: node.path,
    type: node.type,
    initial: node.type === 'compound' ? (node.initial?.target[0]?.key ?? null) : null,
    tags: [...node.tags],
    entry: node.entry.map(actionRef),
    exit: node.exit.map(actionRef),
    transitions,
    children,
  };
}

/** The chart of a machine, as data. */
export function chartOf(machine: AnyStateMachine): ChartNode {
  return nodeOf(machine.root);
}

/** Every state of a chart, depth first (the root first). */
export function allStates(chart: ChartNode): ChartNode[] {
  return [chart, ...chart.children.flatMap(allStates)];
}
