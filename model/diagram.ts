/**
 * Mermaid `stateDiagram-v2` text generated from a machine's own definition
 * (through its structure, model/structure.ts), so the diagrams in
 * model/diagrams/ cannot drift from the charts.
 */
import type { AnyStateMachine } from 'xstate';
import { allStates, chartOf, type ChartNode, type GuardRef } from './structure.ts';

function nodeName(node: ChartNode, rootId: string): string {
  return node.path.join('_') || rootId;
}

/** A guard as a label: its name, combinations spelled out (`isFastStop and fastStopEscalates`). */
function guardLabel(guard: GuardRef | null): string | undefined {
  if (guard === null) return undefined;
  return spell(guard, true);
}

function spell(guard: GuardRef, top: boolean): string {
  if (typeof guard === 'string') return guard;
  const text = 'not' in guard ? `not ${spell(guard.not, false)}` : 'and' in guard ? guard.and.map((g) => spell(g, false)).join(' and ') : guard.or.map((g) => spell(g, false)).join(' or ');
  return top ? text : `(${text})`;
}

function renderNode(node: ChartNode, rootId: string, indent: string, lines: string[]): void {
  if (node.children.length === 0) return;
  const initial = node.children.find((c) => c.key === node.initial);
  if (initial) lines.push(`${indent}[*] --> ${nodeName(initial, rootId)}`);
  for (const child of node.children) {
    if (child.type === 'history') continue;
    const nested = child.children.length > 0;
    lines.push(`${indent}state "${child.key}" as ${nodeName(child, rootId)}${nested ? ' {' : ''}`);
    if (nested) {
      renderNode(child, rootId, indent + '  ', lines);
      lines.push(`${indent}}`);
    }
    if (child.type === 'final') lines.push(`${indent}${nodeName(child, rootId)} --> [*]`);
  }
}

export function mermaidOf(machine: AnyStateMachine): string {
  const chart = chartOf(machine);
  const byId = new Map(allStates(chart).map((n) => [n.id, n]));
  const lines = ['stateDiagram-v2'];
  renderNode(chart, chart.id, '  ', lines);
  for (const node of allStates(chart)) {
    // Transitions as the XState map keeps them: by event in order, eventless ones last.
    const ordered = [...node.transitions.filter((t) => t.event !== ''), ...node.transitions.filter((t) => t.event === '')];
    for (const t of ordered) {
      for (const targetId of t.targets) {
        const target = byId.get(targetId)!;
        if (target === node && t.event !== '') continue;
        const guard = guardLabel(t.guard);
        const label = (t.event === '' ? 'always' : t.event).replace(/^[a-z]+\./, '') + (guard ? ` [${guard}]` : '');
        lines.push(`  ${nodeName(node, chart.id)} --> ${nodeName(target, chart.id)}: ${label}`);
      }
    }
  }
  return lines.join('\n') + '\n';
}
