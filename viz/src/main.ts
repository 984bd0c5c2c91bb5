/**
 * The page: run the simulator (in a Web Worker) for a scenario, a policy
 * and a seed — and a second policy beside it on the same seed — or open a
 * trace (file, drag and drop, `?trace=<url>`); see its timeline, its
 * summary, the replay checker's verdict, and any actor's machine.
 * The URL holds the run's choices, so a view is a link.
 */
import * as d3 from 'd3';
import type { TraceEvent } from '../../model/events.ts';
import { BASE_POLICY_NAMES } from '../../model/policies.ts';
import { parseTrace, TraceParseError, type Trace, type TraceHeader } from '../../model/trace.ts';
import { BOUNDS, checkNumber, type Bound } from '../../model/limits.ts';
import { SCENARIO_NAMES, SEED_SCENARIO_NAMES } from '../../simulator/scenarios.ts';
import { noWorkerServingText, type NoWorkerServingJson } from '../../simulator/report.ts';
import { timelineOf, type TimelineModel } from './data.ts';
import { renderMachine } from './machine.ts';
import type { SimMessage, SimRequest } from './sim.worker.ts';
import { Timeline } from './timeline.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

interface Pane {
  readonly root: HTMLElement;
  timeline: Timeline | null;
  model: TimelineModel | null;
}

/** The two panes (a second policy beside the first), made from the page's one template. */
const panes: Pane[] = [0, 1].map((i) => {
  const root = ($<HTMLTemplateElement>('pane-template').content.firstElementChild as HTMLElement).cloneNode(true) as HTMLElement;
  root.id = `pane-${i}`;
  $('panes').append(root);
  return { root, timeline: null, model: null };
});
let selectedActor: string | null = null;
let activePane = 0;

// ───────────────────────── controls, and the URL that holds them ─────────────────────────

function fillSelect(select: HTMLSelectElement, values: readonly string[], withNone = false): void {
  select.replaceChildren(...(withNone ? ['—'] : []).concat(values).map((v) => new Option(v, v)));
}

fillSelect($('scenario'), SCENARIO_NAMES);
fillSelect($('policy'), BASE_POLICY_NAMES);
fillSelect($('compare'), BASE_POLICY_NAMES, true);

const FIELDS = ['scenario', 'policy', 'compare', 'seed', 'workers', 'threads', 'keepalive', 'graceful-timeout', 'max-requests'] as const;
const url = new URL(location.href);
for (const f of FIELDS) {
  const v = url.searchParams.get(f);
  if (v !== null) ($(f) as HTMLInputElement).value = v;
}

function saveToUrl(): void {
  const next = new URL(location.href);
  next.searchParams.delete('trace');
  for (const f of FIELDS) {
    const v = ($(f) as HTMLInputElement).value;
    if (v && v !== '—') next.searchParams.set(f, v);
    else next.searchParams.delete(f);
  }
  history.replaceState(null, '', next);
}

/** A field under the CLI's own bounds (model/limits.ts), with the CLI's message; empty means the scenario's default. */
function numberField(id: string, bound: Bound): number | undefined {
  const text = ($(id) as HTMLInputElement).value.trim();
  if (text === '') return undefined;
  const checked = checkNumber(text, bound, 'text');
  if ('expected' in checked) throw new Error(`--${id}: expected ${checked.expected}, got "${text}"`);
  return checked.value;
}

/** fast-check and the simulator's PRNG take 32-bit seeds. */
const SEED_BOUND: Bound = { integer: true, min: 0, max: 2 ** 31 - 1 };

// ───────────────────────── running the simulator ─────────────────────────

/** A simulator in a Web Worker: one for runs, one for the seed table (a table of runs must not queue ahead of a click). */
function simulatorWorker(): (request: Omit<SimRequest, 'id'>, onProgress?: (f: number) => void) => Promise<SimMessage> {
  const worker = new Worker(new URL('./sim.worker.ts', import.meta.url), { type: 'module' });
  let nextId = 1;
  const pending = new Map<number, { resolve: (m: SimMessage) => void; onProgress: (f: number) => void }>();
  worker.onmessage = (message: MessageEvent<SimMessage>) => {
    const m = message.data;
    const p = pending.get(m.id);
    if (!p) return;
    if (m.kind === 'progress') p.onProgress(m.fraction);
    else {
      pending.delete(m.id);
      p.resolve(m);
    }
  };
  return (request, onProgress = () => {}) => {
    const id = nextId++;
    return new Promise((resolve) => {
      pending.set(id, { resolve, onProgress });
      worker.postMessage({ ...request, id } satisfies SimRequest);
    });
  };
}

const simulate = simulatorWorker();
const simulateCell = simulatorWorker();

async function run(): Promise<void> {
  showError(null);
  let overrides: SimRequest['overrides'];
  let seed: number;
  try {
    seed = numberField('seed', SEED_BOUND) ?? 1;
    overrides = {
      ...opt('workers', numberField('workers', BOUNDS.workers)),
      ...opt('threads', numberField('threads', BOUNDS.threads)),
      ...opt('keepalive', numberField('keepalive', BOUNDS.seconds)),
      ...opt('gracefulTimeout', numberField('graceful-timeout', BOUNDS.seconds)),
      ...opt('maxRequests', numberField('max-requests', BOUNDS.maxRequests)),
    };
  } catch (error) {
    showError((error as Error).message);
    return;
  }
  saveToUrl();
  const scenario = ($('scenario') as HTMLSelectElement).value;
  const policies = [($('policy') as HTMLSelectElement).value, ($('compare') as HTMLSelectElement).value].filter((p) => p !== '—');
  const progress = $('progress') as HTMLProgressElement;
  progress.hidden = false;
  progress.value = 0;
  $('run').setAttribute('disabled', '');
  document.body.dataset.state = 'running';
  try {
    const results = await Promise.all(
      policies.map((policy, i) => simulate({ mode: 'run', scenario, policy, seed, overrides }, (f) => (progress.value = Math.max(progress.value, f / policies.length + i / policies.length)))),
    );
    panes[1]!.root.hidden = policies.length < 2;
    results.forEach((m, i) => {
      if (m.kind === 'error') throw new Error(m.message);
      if (m.kind !== 'done') return;
      const trace: Trace = { header: m.header as TraceHeader, events: m.events };
      show(i, trace, m.summary as Summary, new Map(m.mechanisms));
    });
  } catch (error) {
    showError(`the simulation failed: ${(error as Error).message}`);
  } finally {
    progress.hidden = true;
    $('run').removeAttribute('disabled');
    document.body.dataset.state = 'ready';
  }
}

const opt = <K extends string>(key: K, value: number | undefined) => (value === undefined ? {} : ({ [key]: value } as Record<K, number>));

// ───────────────────────── showing a run or a trace ─────────────────────────

interface Summary {
  readonly scenario: string;
  readonly policy: string;
  readonly seed: number;
  readonly requests: { total: number; ok: number; failed: number; byCause: Record<string, number> };
  readonly latencyMs: { p50: number; p95: number; p99: number; max: number };
  readonly noWorkerServing: NoWorkerServingJson;
}

function show(i: number, trace: Trace, summary: Summary | null, mechanisms: Map<string, string>): void {
  const pane = panes[i]!;
  const model = timelineOf(trace, mechanisms);
  pane.model = model;
  pane.root.hidden = false;
  const title = pane.root.querySelector('.pane-title')!;
  title.textContent = summary ? `${summary.scenario} · ${summary.policy} · seed ${summary.seed}` : `trace · ${trace.header.policy} · ${trace.events.length} events`;
  renderSummary(pane.root.querySelector('.summary') as HTMLElement, model, summary);
  renderVerdict(pane.root.querySelector('.verdict') as HTMLElement, model);
  pane.timeline = new Timeline(pane.root.querySelector('.timeline-host') as HTMLElement, model, {
    onSelectActor: (actor) => {
      selectedActor = actor;
      activePane = i;
      updateMachine();
    },
    onScrub: () => {
      activePane = i;
      updateMachine();
    },
  });
  renderLegend();
  if (i === 0) {
    selectedActor = model.lanes.find((l) => l.kind === 'worker')?.actor ?? model.lanes[0]?.actor ?? null;
    updateMachine();
  }
}

function renderSummary(el: HTMLElement, model: TimelineModel, summary: Summary | null): void {
  const fails = d3.rollup(model.failures, (v) => v.length, (f) => f.mechanism);
  const rows: [string, string][] = summary
    ? [
        ['requests', String(summary.requests.total)],
        ['ok', String(summary.requests.ok)],
        ['failed', String(summary.requests.failed)],
        ...Object.entries(summary.requests.byCause).map(([c, n]) => [`  ${c}`, String(n)] as [string, string]),
        ['latency p50 / p95 / p99', `${summary.latencyMs.p50} / ${summary.latencyMs.p95} / ${summary.latencyMs.p99} ms`],
        ['no worker serving', noWorkerServingText(summary.noWorkerServing)],
      ]
    : [
        ['events', String(model.trace.events.length)],
        ['requests', String(model.requests.length)],
        ['failures', String(model.failures.length)],
        ...[...fails].map(([c, n]) => [`  ${c}`, String(n)] as [string, string]),
      ];
  el.replaceChildren();
  const table = d3.select(el).append('table');
  table
    .selectAll('tr')
    .data(rows)
    .join('tr')
    .attr('data-key', (r) => r[0].trim())
    .selectAll('td')
    .data((r) => r)
    .join('td')
    .text((d) => d);
}

function renderVerdict(el: HTMLElement, model: TimelineModel): void {
  const v = model.verdict;
  el.className = `verdict ${v.ok ? 'ok' : 'bad'}`;
  el.textContent = v.ok
    ? `quiesce replay: ok — ${v.events} events, ${v.actors} actors conform to ${model.trace.header.policy}; properties checked: ${v.properties.join(', ')}`
    : `quiesce replay: ${v.violation.message}`;
}

function renderLegend(): void {
  const seen = new Map<string, string>();
  for (const p of panes) for (const [s, c] of p.timeline?.legend() ?? []) seen.set(s, c);
  const el = $('legend');
  el.replaceChildren();
  const items = d3.select(el).selectAll('span').data([...seen]).join('span').attr('class', 'legend-item');
  items.append('i').style('background', (d) => d[1]);
  items.append('span').text((d) => d[0]);
  d3.select(el).append('span').attr('class', 'legend-item').html('<i class="swatch-failure"></i>failure (its mechanism)');
  d3.select(el).append('span').attr('class', 'legend-item').html('<i class="swatch-window"></i>race window: send → server close');
  d3.select(el).append('span').attr('class', 'legend-item').html('<i class="swatch-request"></i>request, send → outcome');
}

function updateMachine(): void {
  const pane = panes[activePane]!;
  const el = $('machine');
  if (!pane.model || !selectedActor || !pane.timeline) return;
  renderMachine(el, { actor: selectedActor, ...pane.model.stateAt(selectedActor, pane.timeline.cursor) });
}

function showError(message: string | null): void {
  const el = $('error');
  el.hidden = message === null;
  el.textContent = message ?? '';
}

// ───────────────────────── the seed table, as a heat map ─────────────────────────

/** `npm run simulate`'s table — the seeds' scenarios × the policies — run in the page, cell by cell; a cell opens its run. */
async function runTable(): Promise<void> {
  const seed = Number(($('seed') as HTMLInputElement).value) || 1;
  const host = $('heatmap');
  host.replaceChildren();
  $('run-table').setAttribute('disabled', '');
  const table = d3.select(host).append('table').attr('class', 'heatmap').attr('data-seed', seed);
  const head = table.append('tr');
  head.append('th').text('scenario \\ policy');
  for (const p of BASE_POLICY_NAMES) head.append('th').append('span').text(p);
  const colour = d3.scaleSequentialLog(d3.interpolateOranges).domain([1, 1000]).clamp(true);
  const cells = new Map<string, d3.Selection<HTMLTableCellElement, unknown, null, undefined>>();
  for (const scenario of SEED_SCENARIO_NAMES) {
    const row = table.append('tr');
    row.append('th').text(scenario);
    for (const policy of BASE_POLICY_NAMES) {
      const cell = row
        .append('td')
        .attr('data-scenario', scenario)
        .attr('data-policy', policy)
        .attr('tabindex', 0)
        .attr('title', `${scenario} under ${policy}, seed ${seed}: open its timeline`)
        .text('…');
      const open = () => {
        ($('scenario') as HTMLSelectElement).value = scenario;
        ($('policy') as HTMLSelectElement).value = policy;
        ($('compare') as HTMLSelectElement).value = '—';
        void run();
      };
      cell.on('click', open).on('keydown', (e: KeyboardEvent) => e.key === 'Enter' && open());
      cells.set(`${scenario} ${policy}`, cell);
    }
  }
  for (const scenario of SEED_SCENARIO_NAMES) {
    for (const policy of BASE_POLICY_NAMES) {
      const m = await simulateCell({ mode: 'cell', scenario, policy, seed, overrides: {} });
      const cell = cells.get(`${scenario} ${policy}`)!;
      if (m.kind !== 'cell') {
        cell.text('error').attr('title', m.kind === 'error' ? m.message : '');
        continue;
      }
      cell
        .text(m.cell)
        .attr('data-done', 'true')
        .style('background', m.reported > 0 ? colour(m.reported) : 'transparent')
        .style('color', m.reported > 300 ? '#fff' : 'inherit');
    }
  }
  $('run-table').removeAttribute('disabled');
}
$('run-table').addEventListener('click', () => void runTable());

// ───────────────────────── opening a trace ─────────────────────────

function openTraceText(text: string, source: string): void {
  showError(null);
  let trace: Trace;
  try {
    trace = parseTrace(text);
  } catch (error) {
    if (error instanceof TraceParseError) {
      showError(`${source}: ${error.message}`);
      return;
    }
    throw error;
  }
  panes[1]!.root.hidden = true;
  show(0, trace, null, new Map());
}

$('file').addEventListener('change', async () => {
  const file = ($('file') as HTMLInputElement).files?.[0];
  if (file) openTraceText(await file.text(), file.name);
});
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', async (e) => {
  e.preventDefault();
  const file = e.dataTransfer?.files[0];
  if (file) openTraceText(await file.text(), file.name);
});

async function openTraceUrl(address: string): Promise<void> {
  try {
    const response = await fetch(address);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    openTraceText(await response.text(), address);
  } catch (error) {
    showError(`cannot load ${address}: ${(error as Error).message}`);
  }
}

// ───────────────────────── export, theme, start ─────────────────────────

function download(name: string, blob: Blob): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
}

$('export-svg').addEventListener('click', () => {
  const t = panes[activePane]!.timeline;
  if (t) download('quiesce-timeline.svg', new Blob([t.svgText()], { type: 'image/svg+xml' }));
});
$('export-png').addEventListener('click', () => {
  const t = panes[activePane]!.timeline;
  if (!t) return;
  const svgText = t.svgText();
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement('canvas');
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext('2d')!;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0);
    canvas.toBlob((blob) => blob && download('quiesce-timeline.png', blob));
  };
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svgText)}`;
});
$('theme').addEventListener('click', () => {
  document.documentElement.dataset.theme = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
});
$('run').addEventListener('click', () => void run());
$('next-failure').addEventListener('click', () => panes[activePane]!.timeline?.nextFailure());
$('zoom-in').addEventListener('click', () => panes.forEach((p) => p.timeline?.zoomBy(2)));
$('zoom-out').addEventListener('click', () => panes.forEach((p) => p.timeline?.zoomBy(0.5)));

const traceParam = url.searchParams.get('trace');
if (traceParam) void openTraceUrl(traceParam);
else if (url.searchParams.has('scenario')) void run();
document.body.dataset.state = 'ready';

// For the browser tests and the console: the models on the page.
(window as unknown as { quiesce: unknown }).quiesce = { panes, events: (i: number): readonly TraceEvent[] => panes[i]?.model?.trace.events ?? [] };
