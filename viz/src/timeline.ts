/**
 * The timeline: one swimlane per actor, grouped by kind (collapsible), on a
 * zoomable, pannable time axis (d3-zoom). Each lane shows its machine's
 * state as coloured bands, its events as marks; clients show their requests
 * as spans; failures stand out with their mechanism, and each failure's race
 * window is drawn across the client's lane and its connection's.
 *
 * Large traces stay responsive: only what is in view is drawn, bands
 * narrower than a pixel merge, and a lane with more marks in view than
 * pixels to hold them shows a density strip instead.
 */
import * as d3 from 'd3';
import type { ActorKind } from '../../model/events.ts';
import type { Failure, Lane, TimelineModel } from './data.ts';

/** Okabe–Ito: distinguishable with every common colour-vision deficiency. */
export const PALETTE = ['#E69F00', '#56B4E9', '#009E73', '#F0E442', '#0072B2', '#D55E00', '#CC79A7', '#999999'];
const FAILURE_COLOUR = '#D55E00';

const LANE_HEIGHT_PX = 16;
const GROUP_HEIGHT_PX = 18;
const LABEL_WIDTH_PX = 150;
const AXIS_HEIGHT_PX = 28;
/** An expanded group shows at most this many lanes (those with events in view first). */
const MAX_LANES_PER_GROUP = 120;

const GROUP_TITLES: Record<ActorKind, string> = { arbiter: 'arbiter', listener: 'listener', worker: 'workers', conn: 'connections', client: 'clients' };

export interface TimelineOptions {
  readonly onSelectActor: (actor: string) => void;
  readonly onScrub: (index: number) => void;
}

interface Row {
  readonly kind: 'group' | 'lane';
  readonly group: ActorKind;
  readonly lane?: Lane;
  readonly y: number;
  readonly label: string;
}

export class Timeline {
  private readonly svg: d3.Selection<SVGSVGElement, unknown, null, undefined>;
  private readonly tooltip: d3.Selection<HTMLDivElement, unknown, null, undefined>;
  private readonly collapsed = new Set<ActorKind>(['conn', 'client']);
  private x0: d3.ScaleLinear<number, number>;
  private x: d3.ScaleLinear<number, number>;
  private readonly zoom: d3.ZoomBehavior<SVGSVGElement, unknown>;
  private cursorIndex = 0;
  private rows: Row[] = [];
  private readonly stateColour = new Map<string, string>();
  private readonly width: number;

  constructor(
    private readonly container: HTMLElement,
    private readonly model: TimelineModel,
    private readonly options: TimelineOptions,
  ) {
    this.width = Math.max(600, container.clientWidth || 900);
    this.x0 = d3.scaleLinear().domain([model.startMs, model.endMs]).range([LABEL_WIDTH_PX, this.width - 10]);
    this.x = this.x0.copy();
    container.replaceChildren();
    this.svg = d3.select(container).append('svg').attr('class', 'timeline').attr('width', this.width).attr('tabindex', 0).attr('role', 'img').attr('aria-label', 'timeline of the trace; arrow keys move the cursor between events, Home and End to the ends, + and − zoom, n shows the next failure');
    this.tooltip = d3.select(container).append('div').attr('class', 'tooltip').style('display', 'none');
    this.zoom = d3
      .zoom<SVGSVGElement, unknown>()
      .scaleExtent([1, Math.max(2, (model.endMs - model.startMs) * 1000)])
      .translateExtent([
        [LABEL_WIDTH_PX, 0],
        [this.width, 0],
      ])
      .filter((event: Event) => !(event.type === 'dblclick'))
      .on('zoom', (event: d3.D3ZoomEvent<SVGSVGElement, unknown>) => {
        this.x = event.transform.rescaleX(this.x0);
        this.draw();
      });
    this.svg.call(this.zoom);
    this.svg.on('keydown', (event: KeyboardEvent) => this.key(event));
    this.draw();
  }

  /** The visible time range, in ms (the tests read it from the svg too). */
  get domain(): [number, number] {
    return this.x.domain() as [number, number];
  }

  zoomBy(factor: number): void {
    this.svg.call(this.zoom.scaleBy, factor);
  }

  /** Scrub: put the cursor on an event. */
  scrubTo(index: number): void {
    this.cursorIndex = Math.max(0, Math.min(this.model.trace.events.length - 1, index));
    this.options.onScrub(this.cursorIndex);
    this.draw();
  }

  get cursor(): number {
    return this.cursorIndex;
  }

  private failureShown = -1;

  /**
   * Show the next failure: its lanes expanded, the view zoomed to its race window (with room on
   * each side), the cursor on it. Returns its index among the failures, or -1 if there are none.
   */
  nextFailure(): number {
    const failures = this.model.failures;
    if (failures.length === 0) return -1;
    this.failureShown = (this.failureShown + 1) % failures.length;
    const f = failures[this.failureShown]!;
    this.collapsed.delete('client');
    this.collapsed.delete('conn');
    const from = Math.min(f.window?.fromMs ?? f.atMs, f.atMs);
    const to = Math.max(f.window?.toMs ?? f.atMs, f.atMs);
    const pad = Math.max(2, (to - from) * 1.5);
    const [a, b] = [this.x0(Math.max(this.model.startMs, from - pad)), this.x0(Math.min(this.model.endMs, to + pad))];
    const k = (this.width - 10 - LABEL_WIDTH_PX) / Math.max(1e-9, b - a);
    this.cursorIndex = f.index;
    this.svg.call(this.zoom.transform, d3.zoomIdentity.translate(LABEL_WIDTH_PX - k * a, 0).scale(k));
    this.options.onScrub(this.cursorIndex);
    this.draw();
    // Scroll the lanes so that the failing client's lane is in sight.
    const row = this.rows.find((r) => r.lane?.actor === f.client);
    if (row) this.container.scrollTop = Math.max(0, row.y - this.container.clientHeight / 2);
    return this.failureShown;
  }

  private key(event: KeyboardEvent): void {
    if (event.key === 'ArrowRight') this.scrubTo(this.cursorIndex + 1);
    else if (event.key === 'ArrowLeft') this.scrubTo(this.cursorIndex - 1);
    else if (event.key === 'Home') this.scrubTo(0);
    else if (event.key === 'End') this.scrubTo(this.model.trace.events.length - 1);
    else if (event.key === '+' || event.key === '=') this.zoomBy(2);
    else if (event.key === '-') this.zoomBy(0.5);
    else if (event.key === 'n') this.nextFailure();
    else return;
    event.preventDefault();
  }

  private colourOf(state: string): string {
    let c = this.stateColour.get(state);
    if (!c) this.stateColour.set(state, (c = PALETTE[this.stateColour.size % PALETTE.length]!));
    return c;
  }

  /** The states seen so far and their colours, for the legend. */
  legend(): [string, string][] {
    return [...this.stateColour];
  }

  private layout(): Row[] {
    const [lo, hi] = this.domain;
    const rows: Row[] = [];
    let y = AXIS_HEIGHT_PX;
    const groups = d3.group(this.model.lanes, (l) => l.kind);
    for (const kind of ['arbiter', 'listener', 'worker', 'conn', 'client'] as ActorKind[]) {
      const lanes = groups.get(kind);
      if (!lanes) continue;
      const collapsed = this.collapsed.has(kind);
      rows.push({ kind: 'group', group: kind, y, label: `${collapsed ? '▸' : '▾'} ${GROUP_TITLES[kind]} (${lanes.length})` });
      y += GROUP_HEIGHT_PX;
      if (collapsed) continue;
      const inView = (l: Lane) => {
        const first = this.model.trace.events[l.events[0]!]!.t;
        const last = this.model.trace.events[l.events.at(-1)!]!.t;
        return last >= lo && first <= hi;
      };
      // Only actors alive in view get a lane (an actor lives from its first event to its last, or to the end).
      const alive = (l: Lane) => {
        const first = this.model.trace.events[l.events[0]!]!.t;
        const end = l.spans.at(-1)?.endMs ?? this.model.trace.events[l.events.at(-1)!]!.t;
        return first <= hi && Math.max(end, this.model.trace.events[l.events.at(-1)!]!.t) >= lo;
      };
      const live = lanes.filter(alive);
      const shown = [...live.filter(inView), ...live.filter((l) => !inView(l))].slice(0, MAX_LANES_PER_GROUP);
      shown.sort((a, b) => lanes.indexOf(a) - lanes.indexOf(b));
      for (const lane of shown) {
        rows.push({ kind: 'lane', group: kind, lane, y, label: lane.actor });
        y += LANE_HEIGHT_PX;
      }
      if (lanes.length > shown.length) {
        const more = live.length - shown.length;
        rows.push({ kind: 'group', group: kind, y, label: `  ${lanes.length - live.length} not alive in view${more > 0 ? `, ${more} more alive (zoom in)` : ''}` });
        y += GROUP_HEIGHT_PX;
      }
    }
    return rows;
  }

  draw(): void {
    const { model } = this;
    const events = model.trace.events;
    const [lo, hi] = this.domain;
    this.rows = this.layout();
    const height = (this.rows.at(-1)?.y ?? AXIS_HEIGHT_PX) + LANE_HEIGHT_PX + 10;
    this.svg.attr('height', height).attr('data-domain', `${lo},${hi}`).attr('data-cursor', this.cursorIndex);
    this.svg.selectAll('*').remove();

    const axis = d3.axisTop(this.x).ticks(Math.max(2, Math.floor(this.width / 110))).tickFormat((d) => `${d3.format('~s')(+d)} ms`);
    this.svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${AXIS_HEIGHT_PX - 4})`).call(axis);
    this.svg.append('text').attr('class', 'axis-label').attr('x', 4).attr('y', 12).text('time (ms)');

    // Layers, bottom to top: row backgrounds, the plot (bands, marks, windows, failures), labels.
    const background = this.svg.append('g').attr('class', 'background');
    const clip = `clip-${Math.random().toString(36).slice(2)}`;
    this.svg.append('clipPath').attr('id', clip).append('rect').attr('x', LABEL_WIDTH_PX).attr('y', 0).attr('width', this.width - LABEL_WIDTH_PX).attr('height', height);
    const plot = this.svg.append('g').attr('clip-path', `url(#${clip})`);
    const laneY = new Map<string, number>();

    for (const row of this.rows) {
      if (row.kind === 'group') {
        background.append('rect').attr('x', 0).attr('y', row.y).attr('width', this.width).attr('height', GROUP_HEIGHT_PX).attr('class', 'group-bg');
        const g = this.svg.append('g').attr('class', 'group-row').attr('data-group', row.group).style('cursor', 'pointer');
        g.append('rect').attr('x', 0).attr('y', row.y).attr('width', LABEL_WIDTH_PX).attr('height', GROUP_HEIGHT_PX).attr('fill', 'transparent');
        g.append('text').attr('x', 4).attr('y', row.y + 13).text(row.label);
        g.on('click', () => {
          if (this.collapsed.has(row.group)) this.collapsed.delete(row.group);
          else this.collapsed.add(row.group);
          this.draw();
        });
        // A collapsed group: every event of its lanes, as a density strip.
        if (this.collapsed.has(row.group) && row.label.startsWith('▸')) this.density(plot, model.lanes.filter((l) => l.kind === row.group), row.y + 2, GROUP_HEIGHT_PX - 4);
        continue;
      }
      const lane = row.lane!;
      laneY.set(lane.actor, row.y);
      this.svg
        .append('text')
        .attr('class', 'lane-label')
        .attr('data-actor', lane.actor)
        .attr('x', 12)
        .attr('y', row.y + 12)
        .text(lane.actor)
        .style('cursor', 'pointer')
        .on('click', () => this.options.onSelectActor(lane.actor));
      // State bands in view; bands under a pixel wide merge into their neighbour.
      let lastRight = -Infinity;
      for (const span of lane.spans) {
        if (span.endMs < lo || span.startMs > hi) continue;
        const left = this.x(span.startMs);
        const right = Math.max(this.x(span.endMs), left + 1);
        if (right <= lastRight) continue;
        plot
          .append('rect')
          .attr('class', 'band')
          .attr('x', Math.max(left, lastRight))
          .attr('y', row.y + 2)
          .attr('width', right - Math.max(left, lastRight))
          .attr('height', LANE_HEIGHT_PX - 4)
          .attr('fill', this.colourOf(span.state))
          .append('title')
          .text(`${lane.actor}: ${span.state} (${span.startMs}–${span.endMs} ms)`);
        lastRight = right;
      }
      const visible = lane.events.filter((i) => events[i]!.t >= lo && events[i]!.t <= hi);
      if (visible.length > (this.width - LABEL_WIDTH_PX) / 3) this.density(plot, [{ ...lane, events: visible }], row.y + LANE_HEIGHT_PX - 5, 4);
      else {
        plot
          .selectAll(null)
          .data(visible)
          .join('rect')
          .attr('class', 'mark')
          .attr('x', (i) => this.x(events[i]!.t) - 1)
          .attr('y', row.y + 1)
          .attr('width', 2)
          .attr('height', LANE_HEIGHT_PX - 2)
          .on('mouseenter', (event: MouseEvent, i) => this.showTooltip(event, i))
          .on('mouseleave', () => this.tooltip.style('display', 'none'))
          .on('click', (_event: MouseEvent, i) => this.scrubTo(i));
      }
    }

    // Requests: spans on the client lanes, from send to outcome.
    for (const r of model.requests) {
      const y = laneY.get(r.client);
      if (y === undefined || r.endMs < lo || r.sentMs > hi) continue;
      plot
        .append('line')
        .attr('class', r.ok ? 'request' : 'request failed')
        .attr('x1', this.x(r.sentMs))
        .attr('x2', Math.max(this.x(r.endMs), this.x(r.sentMs) + 1))
        .attr('y1', y + LANE_HEIGHT_PX / 2)
        .attr('y2', y + LANE_HEIGHT_PX / 2);
    }
    this.drawFailures(plot, laneY, lo, hi);
    this.drawViolation(plot, lo, hi, height);

    // The cursor (scrubbed time).
    const at = events[this.cursorIndex]?.t ?? lo;
    if (at >= lo && at <= hi) plot.append('line').attr('class', 'cursor').attr('x1', this.x(at)).attr('x2', this.x(at)).attr('y1', AXIS_HEIGHT_PX).attr('y2', height);
    // Clicking the plot's background scrubs to the nearest event.
    this.svg.on('click', (event: MouseEvent) => {
      if ((event.target as Element).closest('.group-row, .lane-label, .mark')) return;
      const [px] = d3.pointer(event);
      if (px < LABEL_WIDTH_PX) return;
      const t = this.x.invert(px);
      this.scrubTo(d3.bisector((e: { t: number }) => e.t).center(events, t));
    });
  }

  private density(plot: d3.Selection<SVGGElement, unknown, null, undefined>, lanes: readonly Lane[], y: number, h: number): void {
    const events = this.model.trace.events;
    const [lo, hi] = this.domain;
    const bins = Math.max(1, Math.floor((this.width - LABEL_WIDTH_PX) / 3));
    const counts = new Array<number>(bins).fill(0);
    const fails = new Array<number>(bins).fill(0);
    for (const lane of lanes) {
      for (const i of lane.events) {
        const e = events[i]!;
        if (e.t < lo || e.t > hi) continue;
        const b = Math.min(bins - 1, Math.floor(((e.t - lo) / (hi - lo || 1)) * bins));
        counts[b]!++;
        if (e.type === 'client.fail') fails[b]!++;
      }
    }
    const max = d3.max(counts) ?? 1;
    const opacity = d3.scaleLinear().domain([0, max || 1]).range([0.05, 1]);
    counts.forEach((c, b) => {
      if (c === 0) return;
      plot
        .append('rect')
        .attr('class', fails[b]! > 0 ? 'density failed' : 'density')
        .attr('x', LABEL_WIDTH_PX + b * 3)
        .attr('y', y)
        .attr('width', 3)
        .attr('height', h)
        .attr('opacity', fails[b]! > 0 ? 1 : opacity(c))
        .append('title')
        .text(`${c} events${fails[b]! > 0 ? `, ${fails[b]} failures` : ''}`);
    });
  }

  private drawFailures(plot: d3.Selection<SVGGElement, unknown, null, undefined>, laneY: Map<string, number>, lo: number, hi: number): void {
    const clientsCollapsed = this.collapsed.has('client');
    const groupY = this.rows.find((r) => r.kind === 'group' && r.group === 'client')?.y ?? AXIS_HEIGHT_PX;
    for (const f of this.model.failures) {
      if (f.atMs < lo || f.atMs > hi) continue;
      const y = clientsCollapsed ? groupY : laneY.get(f.client);
      if (y === undefined) continue;
      this.drawWindow(plot, f, laneY, y);
      const x = this.x(f.atMs);
      const g = plot.append('g').attr('class', 'failure').attr('data-mechanism', f.mechanism).attr('transform', `translate(${x},${y + 2})`);
      g.append('path').attr('d', d3.symbol(d3.symbolTriangle, 60)()).attr('transform', 'translate(0,6) rotate(180)').attr('fill', FAILURE_COLOUR);
      g.append('text').attr('class', 'failure-label').attr('x', 6).attr('y', 10).text(f.mechanism);
      g.on('mouseenter', (event: MouseEvent) => this.showTooltip(event, f.index, `mechanism: ${f.mechanism}`)).on('mouseleave', () => this.tooltip.style('display', 'none'));
    }
  }

  /** The race window: from the client's send to the server's close or RST of its connection, across both lanes. */
  private drawWindow(plot: d3.Selection<SVGGElement, unknown, null, undefined>, f: Failure, laneY: Map<string, number>, clientY: number): void {
    if (!f.window) return;
    const connY = f.window.conn ? laneY.get(f.window.conn) : undefined;
    const top = Math.min(clientY, connY ?? clientY);
    const bottom = Math.max(clientY, connY ?? clientY) + LANE_HEIGHT_PX;
    const left = this.x(f.window.fromMs);
    plot
      .append('rect')
      .attr('class', 'race-window')
      .attr('x', left)
      .attr('y', top)
      .attr('width', Math.max(2, this.x(f.window.toMs) - left))
      .attr('height', bottom - top)
      .append('title')
      .text(`race window: ${f.client} sent at ${f.window.fromMs} ms; ${f.window.conn ?? 'its connection'} closed at ${f.window.toMs} ms`);
  }

  private drawViolation(plot: d3.Selection<SVGGElement, unknown, null, undefined>, lo: number, hi: number, height: number): void {
    const v = this.model.verdict;
    if (v.ok || v.violation.line < 2) return;
    const e = this.model.trace.events[v.violation.line - 2];
    if (!e || e.t < lo || e.t > hi) return;
    const x = this.x(e.t);
    plot.append('line').attr('class', 'violation-pin').attr('x1', x).attr('x2', x).attr('y1', AXIS_HEIGHT_PX).attr('y2', height);
    plot.append('text').attr('class', 'violation-label').attr('x', x + 4).attr('y', AXIS_HEIGHT_PX + 12).text(`✖ line ${v.violation.line}`);
  }

  private showTooltip(event: MouseEvent, index: number, extra = ''): void {
    const e = this.model.trace.events[index]!;
    const rect = this.container.getBoundingClientRect();
    this.tooltip
      .style('display', 'block')
      .style('left', `${event.clientX - rect.left + 12}px`)
      .style('top', `${event.clientY - rect.top + 12}px`)
      .text(`${JSON.stringify(e)}${extra ? `\n${extra}` : ''}`);
  }

  /** The timeline as a standalone SVG document (export). */
  svgText(): string {
    const node = this.svg.node()!.cloneNode(true) as SVGSVGElement;
    node.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
    const style = document.createElementNS('http://www.w3.org/2000/svg', 'style');
    style.textContent = EXPORT_CSS;
    node.insertBefore(style, node.firstChild);
    return new XMLSerializer().serializeToString(node);
  }
}

const EXPORT_CSS = `text{font:11px sans-serif;fill:#222}.group-bg{fill:#eee}.request{stroke:#0072B2;stroke-width:2}.request.failed{stroke:#D55E00}
.race-window{fill:#D55E00;fill-opacity:.15;stroke:#D55E00;stroke-dasharray:3 2}.mark{fill:#333}.density{fill:#333}.density.failed{fill:#D55E00}
.cursor{stroke:#000;stroke-width:1}.violation-pin{stroke:#CC0000;stroke-width:2}`;
