/**
 * The machine view: an actor's statechart drawn from its machine definition
 * itself (XState's state nodes, nested), the actor's state at the scrubbed
 * moment highlighted, the states it has been through marked with how often,
 * and the transitions it took so far listed.
 */
import * as d3 from 'd3';
import { actorKind } from '../../model/events.ts';
import { CHARTS } from '../../model/machines/index.ts';
import { chartOf, type ChartNode } from '../../model/structure.ts';

export interface MachineViewState {
  readonly actor: string;
  readonly state: string;
  readonly transitions: readonly { from: string; to: string; event: string; index: number }[];
}

export function renderMachine(container: HTMLElement, view: MachineViewState): void {
  const kind = actorKind(view.actor);
  container.replaceChildren();
  if (!kind) return;
  const machine = CHARTS[kind];
  // The chart as data (model/structure.ts): the one reading of a machine definition, shared with the diagrams and the compiler.
  const root = chartOf(machine);
  const active = new Set<string>();
  const parts = view.state.split('.');
  for (let i = 1; i <= parts.length; i++) active.add(parts.slice(0, i).join('.'));
  const visits = d3.rollup(view.transitions, (v) => v.length, (t) => t.to);

  const panel = d3.select(container);
  panel.append('h3').text(`${view.actor} — ${machine.id} machine`);
  panel.append('p').attr('class', 'machine-state').attr('data-state', view.state).text(`state at the cursor: ${view.state || '(not started)'}`);
  const chart = panel.append('div').attr('class', 'chart');

  const draw = (node: ChartNode, into: d3.Selection<HTMLDivElement, unknown, null, undefined>) => {
    for (const child of node.children) {
      const path = child.path.join('.');
      const box = into
        .append('div')
        .attr('class', `state ${child.type}${active.has(path) ? ' active' : ''}${visits.has(path) ? ' visited' : ''}`)
        .attr('data-path', path);
      const head = box.append('div').attr('class', 'state-name').text(child.key + (child.type === 'final' ? ' ◉' : ''));
      const n = [...visits].filter(([to]) => to === path || to.startsWith(path + '.')).reduce((sum, [, c]) => sum + c, 0);
      if (n > 0) head.append('span').attr('class', 'visits').attr('title', 'times entered so far').text(` ×${n}`);
      const events = d3.group(
        child.transitions.filter((t) => t.event !== '' && !t.event.startsWith('xstate.')),
        (t) => t.event,
      );
      if (events.size > 0 && child.children.length === 0) {
        box
          .append('div')
          .attr('class', 'state-events')
          .text([...events].map(([type, ts]) => `${type.split('.').at(-1)}${ts.some((t) => t.targets.length > 0) ? ' →' : ''}`).join(' · '));
      }
      if (child.children.length > 0) draw(child, box.append('div').attr('class', 'children'));
    }
  };
  draw(root, chart);

  panel.append('h4').text(`transitions taken so far (${view.transitions.length})`);
  panel
    .append('ol')
    .attr('class', 'transitions')
    .selectAll('li')
    .data(view.transitions.slice(-30))
    .join('li')
    .text((t) => `${t.from} → ${t.to}  on ${t.event} (event ${t.index + 1})`);
}
