/**
 * The visualization in a real headless Chromium (Debian's, driven by
 * playwright-core): the static build served from a plain HTTP server, as
 * any static host would. Every test fails on a console error; screenshots
 * go to test-results/viz/.
 */
import { copyFileSync, createReadStream, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runScenario } from '../../simulator/run.ts';
import { getScenario } from '../../simulator/scenarios.ts';
import { noWorkerServingText, tableCell, toJson, type NoWorkerServingJson } from '../../simulator/report.ts';
import { parseTrace, formatTrace } from '../../model/trace.ts';
import { readFileSync } from 'node:fs';
import { startServer, stopServer, tempDir } from '../impl/server.ts';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const ROOT = new URL('../..', import.meta.url).pathname;
const SHOTS = join(ROOT, 'test-results', 'viz');

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.jsonl': 'application/x-ndjson', '.svg': 'image/svg+xml' };

/** A static file server: the build under /, test traces under /fixtures/. */
function serveStatic(dist: string, fixtures: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = path.startsWith('/fixtures/') ? join(fixtures, normalize(path.slice('/fixtures/'.length))) : join(dist, normalize(path === '/' ? 'index.html' : path));
    if (!existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

let browser: Browser;
let server: Server;
let base: string;
let fixtures: string;

beforeAll(async () => {
  if (!CHROMIUM) throw new Error('Chromium not found: apt-get install chromium (.ci/run installs it)');
  const dist = join(tempDir(), 'dist');
  await build({ configFile: join(ROOT, 'viz/vite.config.ts'), build: { outDir: dist, emptyOutDir: true }, logLevel: 'error' });
  fixtures = tempDir();
  server = await serveStatic(dist, fixtures);
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  mkdirSync(SHOTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
});

/** A page that records every console error and uncaught exception: each test ends by asserting there were none. */
async function open(path: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base + path);
  await page.waitForSelector('body[data-state="ready"]');
  return { page, errors };
}

const summaryValue = (page: Page, pane: number, key: string) => page.locator(`#pane-${pane} .summary tr[data-key="${key}"] td`).nth(1).textContent();

describe('the visualization, in Chromium', () => {
  it('loads, with its controls, and no console error', async () => {
    const { page, errors } = await open('');
    expect(await page.locator('#scenario option').count()).toBeGreaterThan(5);
    expect(await page.locator('#policy option').count()).toBe(11);
    await page.screenshot({ path: join(SHOTS, 'empty.png') });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('runs keepalive-recycle under two policies and draws and counts the failures as the CLI does for the same seed', async () => {
    const { page, errors } = await open('?scenario=keepalive-recycle&policy=gunicorn-gthread&compare=abort-idle&seed=1');
    await page.waitForSelector('#pane-1:not([hidden]) svg.timeline', { timeout: 90_000 });
    await page.waitForSelector('body[data-state="ready"]');
    for (const [pane, policy] of [[0, 'gunicorn-gthread'], [1, 'abort-idle']] as const) {
      // What `quiesce simulate --scenario keepalive-recycle --policy <p> --seed 1 --json` prints.
      const cli = toJson(runScenario({ scenario: 'keepalive-recycle', policy, seed: 1, params: getScenario('keepalive-recycle').params })) as {
        requests: { total: number; failed: number; byCause: Record<string, number> };
        noWorkerServing: NoWorkerServingJson;
      };
      expect(Number(await summaryValue(page, pane, 'requests'))).toBe(cli.requests.total);
      // The seed's recycles with no jitter: every worker reaches max-requests at once, and nothing serves until a replacement does.
      expect(cli.noWorkerServing.spans).toBeGreaterThan(0);
      expect(await summaryValue(page, pane, 'no worker serving')).toBe(noWorkerServingText(cli.noWorkerServing));
      expect(Number(await summaryValue(page, pane, 'failed'))).toBe(cli.requests.failed);
      for (const [cause, n] of Object.entries(cli.requests.byCause)) expect(Number(await summaryValue(page, pane, cause))).toBe(n);
      // Every failure is drawn, labelled with its mechanism (the clients' group is collapsed: all of them are on its row).
      const drawn = await page.locator(`#pane-${pane} g.failure`).evaluateAll((gs) => gs.map((g) => g.getAttribute('data-mechanism')));
      const expected = Object.entries(cli.requests.byCause).flatMap(([cause, n]) => Array<string>(n).fill(cause));
      expect(drawn.sort()).toEqual(expected.sort());
    }
    // The two policies differ on the same load: gunicorn-gthread loses requests after keep-alive responses (ka-close), abort-idle to the idle-close race.
    expect(await page.locator('#pane-0 g.failure[data-mechanism="close-after-keepalive-response"]').count()).toBeGreaterThan(0);
    await page.screenshot({ path: join(SHOTS, 'compare.png'), fullPage: true });
    // The next failure: the view zooms to it, its client's and connection's lanes open, the race window spans both.
    await page.locator('#pane-0 svg.timeline').focus();
    await page.keyboard.press('n');
    const [lo, hi] = (await page.locator('#pane-0 svg.timeline').getAttribute('data-domain'))!.split(',').map(Number);
    expect(hi! - lo!).toBeLessThan(100);
    const window = page.locator('#pane-0 .race-window').first();
    expect(await window.count()).toBe(1);
    expect(Number(await window.getAttribute('height'))).toBeGreaterThan(16);
    await page.locator('#pane-0').screenshot({ path: join(SHOTS, 'race-window.png') });
    expect(errors).toEqual([]);
    await page.close();
  }, 180_000);

  it('opens a trace the real server wrote, shows its verdict, zooms, scrubs and opens a machine view', async () => {
    // A real `quiesce serve --trace`: a few keep-alive requests, then TERM.
    const running = await startServer(['--workers', '1', '--policy', 'safe-drain']);
    await Promise.all([0, 1, 2].map(() => fetch(`http://${running.address.replace(/^.*?:\/\//, '')}/`).then((r) => r.text())));
    await stopServer(running);
    copyFileSync(running.trace, join(fixtures, 'serve.jsonl'));

    const { page, errors } = await open('?trace=/fixtures/serve.jsonl');
    await page.waitForSelector('#pane-0 svg.timeline');
    expect(await page.locator('#pane-0 .verdict').textContent()).toMatch(/^quiesce replay: ok — \d+ events, \d+ actors conform to safe-drain/);
    const svg = page.locator('#pane-0 svg.timeline');
    const domain = async () => (await svg.getAttribute('data-domain'))!.split(',').map(Number) as [number, number];
    const [lo, hi] = await domain();
    await svg.focus();
    await page.keyboard.press('+');
    const [lo2, hi2] = await domain();
    expect(hi2 - lo2).toBeLessThan((hi - lo) * 0.75);
    expect(lo2).toBeGreaterThanOrEqual(lo);
    // Scrub with the keyboard: the cursor moves event by event, and the machine view follows it.
    await page.keyboard.press('Home');
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowRight');
    expect(Number(await svg.getAttribute('data-cursor'))).toBe(3);
    // Open the arbiter's machine: drawn from its definition, nested states included.
    await page.locator('#pane-0 .lane-label[data-actor="arbiter"]').click();
    await page.waitForSelector('#machine h3:has-text("arbiter")');
    expect(await page.locator('#machine .state').count()).toBeGreaterThan(4);
    expect(await page.locator('#machine .state .children .state').count()).toBeGreaterThan(0);
    const before = await page.locator('#machine .machine-state').getAttribute('data-state');
    // Scrub to the end: the arbiter has stopped.
    await svg.focus();
    for (let i = 0; i < 400; i++) await page.keyboard.press('ArrowRight');
    const after = await page.locator('#machine .machine-state').getAttribute('data-state');
    expect(after).not.toBe(before);
    expect(await page.locator('#machine .state.active').count()).toBeGreaterThan(0);
    await page.screenshot({ path: join(SHOTS, 'machine.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it('a malformed trace shows the parser’s line-numbered error, not a blank page', async () => {
    writeFileSync(join(fixtures, 'bad.jsonl'), '{"format":"quiesce-trace","version":1,"policy":"safe-drain","params":{},"complete":false}\nnot json\n');
    const { page, errors } = await open('?trace=/fixtures/bad.jsonl');
    await page.waitForSelector('#error:not([hidden])');
    expect(await page.locator('#error').textContent()).toMatch(/\/fixtures\/bad\.jsonl: line 1: /);
    expect(await page.locator('h1').textContent()).toBe('quiesce');
    // A well-formed trace under a policy nobody knows: named, not a blank page.
    const good = readFileSync(join(fixtures, 'serve.jsonl'), 'utf8').replace('"policy":"safe-drain"', '"policy":"nope"');
    writeFileSync(join(fixtures, 'unknown-policy.jsonl'), good);
    await page.goto(base + '?trace=/fixtures/unknown-policy.jsonl');
    await page.waitForSelector('#error:not([hidden])');
    expect(await page.locator('#error').textContent()).toMatch(/unknown-policy\.jsonl: line 1: bad trace header: unknown policy "nope"; expected one of: gunicorn-sync/);
    // A bad number in a run's parameters: the CLI's message, naming the flag.
    await page.locator('#workers').fill('1e6');
    await page.locator('#run').click();
    expect(await page.locator('#error').textContent()).toBe('--workers: expected an integer from 1 to 512 (one machine) in decimal digits, got "1e6"');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('the seed table is a heat map whose cells read as the CLI’s, and a cell opens its run', async () => {
    const { page, errors } = await open('');
    await page.locator('details.table-section summary').click();
    await page.locator('#run-table').click();
    const cell = page.locator('#heatmap td[data-scenario="keepalive-recycle"][data-policy="gunicorn-gthread"]');
    await page.waitForSelector('#heatmap td[data-scenario="keepalive-recycle"][data-policy="gunicorn-gthread"][data-done]', { timeout: 60_000 });
    // `npm run simulate`'s cell for the same run: e.g. "575 (283) ka-close".
    const run = runScenario({ scenario: 'keepalive-recycle', policy: 'gunicorn-gthread', seed: 1, params: getScenario('keepalive-recycle').params });
    expect(await cell.textContent()).toBe(tableCell(run));
    await cell.click();
    await page.waitForFunction(() => document.querySelector('#pane-0 .pane-title')?.textContent?.startsWith('keepalive-recycle · gunicorn-gthread'), undefined, { timeout: 60_000 });
    await page.screenshot({ path: join(SHOTS, 'heatmap.png') });
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it('pins a replay violation on the timeline at its event, exports the view as SVG, and switches theme', async () => {
    // A trace the machines reject: a server trace with one event moved after its actor finished.
    const good = parseTrace(readFileSync(join(fixtures, 'serve.jsonl'), 'utf8'));
    const reap = good.events.findIndex((e) => e.type === 'arbiter.reap');
    const events = [...good.events];
    const [moved] = events.splice(reap, 1);
    events.push({ ...moved!, t: events.at(-1)!.t });
    writeFileSync(join(fixtures, 'broken.jsonl'), formatTrace({ header: good.header, events }));
    const { page, errors } = await open('?trace=/fixtures/broken.jsonl');
    await page.waitForSelector('#pane-0 svg.timeline');
    expect(await page.locator('#pane-0 .verdict.bad').textContent()).toMatch(/^quiesce replay: line \d+: /);
    expect(await page.locator('#pane-0 .violation-pin').count()).toBe(1);
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#export-svg').click()]);
    const svg = readFileSync((await download.path())!, 'utf8');
    expect(svg).toMatch(/^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain('violation-pin');
    await page.locator('#theme').click();
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
    await page.screenshot({ path: join(SHOTS, 'violation-dark.png') });
    expect(errors).toEqual([]);
    await page.close();
  });
});
