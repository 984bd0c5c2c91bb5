/**
 * Mermaid `stateDiagram-v2` text generated from a machine's own definition,
 * so the diagrams in model/diagrams/ cannot drift from the charts.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';

function nodeName(node: AnyStateNode): string {
  return node.path.join('_') || node.machine.id;
}

function targetsOf(node: AnyStateNode): { event: string; target: AnyStateNode; guard?: string }[] {
  const out: { event: string; target: AnyStateNode; guard?: string }[] = [];
  for (const [event, transitions] of node.transitions) {
    for (const t of transitions) {
      for (const target of t.target ?? []) {
        const guard = typeof t.guard === 'string' ? t.guard : t.guard ? 'guarded' : undefined;
        out.push({ event: event === '' ? 'always' : event, target, ...(guard ? { guard } : {}) });
      }
    }
  }
  for (const t of node.always ?? []) {
    for (const target of t.target ?? []) {
      const guard = typeof t.guard === 'string' ? t.guard : t.guard ? 'guarded' : undefined;
      out.push({ event: 'always', target, ...(guard ? { guard } : {}) });
    }
  }
  return out;
}

function renderNode(node: AnyStateNode, indent: string, lines: string[]): void {
  const children = Object.values(node.states) as AnyStateNode[];
  if (children.length === 0) return;
  if (node.initial?.target[0]) lines.push(`${indent}[*] --> ${nodeName(node.initial.target[0])}`);
  for (const child of children) {
    if (child.type === 'history') continue;
    const grandchildren = Object.values(child.states).length > 0;
    lines.push(`${indent}state "${child.key}" as ${nodeName(child)}${grandchildren ? ' {' : ''}`);
    if (grandchildren) {
      renderNode(child, indent + '  ', lines);
      lines.push(`${indent}}`);
    }
    if (child.type === 'final') lines.push(`${indent}${nodeName(child)} --> [*]`);
  }
}

function renderTransitions(node: AnyStateNode, lines: string[]): void {
  for (const { event, target, guard } of targetsOf(node)) {
    if (target === node && event !== 'always') continue;
    const label = event.replace(/^[a-z]+\./, '') + (guard ? ` [${guard}]` : '');
    lines.push(`  ${nodeName(node)} --> ${nodeName(target)}: ${label}`);
  }
  for (const child of Object.values(node.states) as AnyStateNode[]) renderTransitions(child, lines);
}

export function mermaidOf(machine: AnyStateMachine): string {
  const lines = ['stateDiagram-v2'];
  renderNode(machine.root, '  ', lines);
  renderTransitions(machine.root, lines);
  return lines.join('\n') + '\n';
}
