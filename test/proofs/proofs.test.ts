import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers.ts';
import { machinesFor, runtimesFor, runtimesOf } from '../../model/machines/index.ts';
import { getPolicy, type PolicySpec } from '../../model/policies.ts';
import { propertiesFor } from '../../model/properties.ts';
import { checkProperties, replay, replayMachines } from '../../model/replay.ts';
import { formatTrace, parseTrace } from '../../model/trace.ts';
import { explore, traceOf, type Finding } from '../../proofs/explore.ts';
import { findingTrace, prove } from '../../proofs/prove.ts';
import { crossCheck, graphOf } from '../../proofs/spin.ts';
import { checkableProperties, DEFAULT_BOUNDS, worldConfig, type WorldShape } from '../../proofs/theorems.ts';
import { canonical, World, type WorldConfig } from '../../proofs/world.ts';

const cli = runCli;

const safe = getPolicy('safe-drain');
const small: WorldShape = { workers: 1, clients: 2, requests: 1, properties: checkableProperties };

/**
 * A seeded model bug must be caught, by a shortest counterexample: the same length whether states
 * are keyed with or without symmetry reduction (two different visited sets), no shorter prefix of it
 * breaks the property, and its trace replays to the same violation at the same event.
 */
function expectCaught(config: WorldConfig, property: string): Finding {
  // Breadth first, stopping at the first finding: the shortest counterexample, and the first one is this property's.
  const reduced = explore(config, {}, { stopAtFirst: true });
  const plain = explore(config, {}, { symmetry: false, stopAtFirst: true });
  expect(reduced.findings.map((f) => f.property)).toEqual([property]);
  expect(plain.findings.map((f) => f.property)).toEqual([property]);
  const found = reduced.findings[0];
  expect(plain.findings[0]!.path.length).toBe(found!.path.length);

  const { trace, world } = traceOf(config, found!.path);
  const broken = world.verdicts.find((v) => v.property === property);
  expect(broken).toBeDefined();
  // One move shorter does not break it: the violation is on the last move.
  const { world: before } = traceOf(config, found!.path.slice(0, -1));
  expect(before.verdicts.some((v) => v.property === property)).toBe(false);

  // The trace is a trace: it parses, the variant's machines accept every event of it, and the
  // replay checker finds the same violation at the same event.
  const parsed = parseTrace(formatTrace(trace));
  const runtimes = config.machines ? runtimesOf(config.policy, config.params, config.machines) : runtimesFor(config.policy, config.params);
  const replayed = replayMachines(parsed, runtimes);
  expect(replayed.violation).toBeUndefined();
  const violation = checkProperties(parsed, replayed.view, propertiesFor(parsed.header.params).filter((p) => p.name === property));
  expect(violation && violation.kind === 'property' ? violation.property : violation).toBe(property);
  expect(violation?.line).toBe(broken!.index + 2);
  // The policy's own machines reject the bug: the trace shows a step they do not allow, or the broken property.
  const real = replay(parsed);
  expect(real.ok).toBe(false);
  return found!;
}

describe('the explorer catches seeded model bugs with a shortest counterexample', () => {
  it('a variant that skips Connection: close while draining breaks close-while-draining', () => {
    // A variant under the policy's own name: the machines must still be the variant's (the cache keys the whole spec).
    const variant: PolicySpec = { ...safe, forceCloseWhileDraining: false };
    const found = expectCaught(worldConfig(variant, small), 'close-while-draining');
    // Connect, send, boot, accept, read, handler, TERM, respond: the drain must start while the handler runs.
    expect(found.path.some((s) => s.move.kind === 'signal')).toBe(true);
  });

  it('a variant that accepts after TERM breaks no-accept-after-drain', () => {
    const variant: PolicySpec = { ...safe, acceptAfterDrain: true };
    const found = expectCaught(worldConfig(variant, small), 'no-accept-after-drain');
    // The shortest: the client's SYN is queued when TERM comes, and the worker's last loop turn accepts it.
    const signalAt = found.path.findIndex((s) => s.move.kind === 'signal');
    expect(signalAt).toBeGreaterThan(found.path.findIndex((s) => s.move.kind === 'connect'));
  });

  it('a worker that exits with a request in flight breaks processed-requests-answered', () => {
    const params = worldConfig(safe, small).params;
    const machines = machinesFor(safe, params);
    const buggy = { ...machines, worker: machines.worker.provide({ guards: { drainComplete: () => true } }) };
    // A worker that leaves at once breaks other properties too, one of them (idle-close-after-window) in
    // fewer moves: this one alone is watched, so that the first finding is its shortest.
    const only: WorldShape = { ...small, properties: (p) => checkableProperties(p).filter((property) => property.name === 'processed-requests-answered') };
    expectCaught(worldConfig(safe, only, { machines: buggy }), 'processed-requests-answered');
  });

  it('the unmodified safe-drain breaks nothing at the same bounds (the bugs above are the variants’, not the harness’s)', () => {
    const result = explore(worldConfig(safe, small), {}, {});
    expect(result.exhaustive).toBe(true);
    expect(result.findings).toEqual([]);
    // Symmetry reduction only merges states equal up to names: with it, fewer states, and the same verdicts.
    const plain = explore(worldConfig(safe, small), {}, { symmetry: false });
    expect(plain.exhaustive).toBe(true);
    expect(plain.findings).toEqual([]);
    expect(result.states).toBeLessThan(plain.states);
  });
});

describe('policy variants get their own machines', () => {
  it('runtimesFor keys its cache by the whole policy, not its name', () => {
    const params = worldConfig(safe, small).params;
    const variant: PolicySpec = { ...safe, acceptAfterDrain: true };
    expect(runtimesFor(variant, params)).not.toBe(runtimesFor(safe, params));
    expect(runtimesFor({ ...safe }, params)).toBe(runtimesFor(safe, params));
  });
});

describe('the world', () => {
  it('saves and loads: a loaded world has the same key and the same moves', () => {
    const config = worldConfig(safe, small);
    const world = new World(config);
    for (let i = 0; i < 12 && world.moves().length > 0; i++) world.apply({ move: world.moves().at(-1)!, draws: [] });
    expect(world.eventCount).toBeGreaterThan(5);
    const copy = new World(config, world.save());
    expect(copy.key()).toBe(world.key());
    expect(copy.moves()).toEqual(world.moves());
  });

  it('canonical keys are equal for states that differ only in names', () => {
    const a = ['A worker/3 alive {} ', 'A conn/3.7 open {"req":"r9"} ', 'A client/4 open {} ', 'L client/4 conn/3.7 r9'].join('\n');
    const b = ['A worker/1 alive {} ', 'A conn/1.2 open {"req":"r1"} ', 'A client/2 open {} ', 'L client/2 conn/1.2 r1'].join('\n');
    expect(canonical(a)).toBe(canonical(b));
    const c = b.replace('"req":"r1"', '"req":"r2"');
    expect(canonical(c)).not.toBe(canonical(b));
  });

  it('canonical names workers by their lines with ids masked, then clients, links and connections, and sorts only the lines whose order is creation', () => {
    const raw = [
      'A worker/2 alive {"openConns":["conn/2.1"]} ',
      'A worker/1 booting {"openConns":[]} ',
      'A client/5 open {"conn":"conn/2.1","req":"r7"} ',
      'A conn/2.1 open {"req":"r7"} ',
      'L client/5 conn/2.1',
      'S 0 0',
      'V ',
    ].join('\n');
    // "A # alive …" sorts before "A # booting …": worker/2 is named worker/1, and its connection conn/1.1;
    // the first request named is the client's. A, L lines sorted; S and V keep their places, last.
    expect(canonical(raw).split('\n')).toEqual([
      'A client/1 open {"conn":"conn/1.1","req":"r1"} ',
      'A conn/1.1 open {"req":"r1"} ',
      'A worker/1 alive {"openConns":["conn/1.1"]} ',
      'A worker/2 booting {"openConns":[]} ',
      'L client/1 conn/1.1',
      'S 0 0',
      'V ',
    ]);
  });

  it('refuses parameters it cannot explore, saying which', () => {
    const config = worldConfig(safe, small);
    expect(() => new World({ ...config, params: { ...config.params, timeoutMs: 30 } })).toThrow(/params.timeoutMs must be 0/);
  });
});

describe('the theorems', () => {
  const bounds = { ...DEFAULT_BOUNDS, clients: 1, requests: 2, burst: 4, backlog: 1 };

  it('theorems 2, 4, 5 and 6 hold at small bounds, and every finding is a trace that replays', () => {
    const dir = mkdtempSync(join(tmpdir(), 'quiesce-prove-'));
    const report = prove({ bounds, theorems: [2, 4, 5, 6], tracesDir: dir });
    expect(report.holds).toBe(true);
    const rows = report.theorems.flatMap((t) => t.rows);
    // Theorem 2: a witness for every policy in the registry; theorem 4: one row per burst size 0..4.
    expect(report.theorems.find((t) => t.number === 2)!.rows.map((r) => r.verdict)).toEqual(Array(11).fill('found'));
    expect(report.theorems.find((t) => t.number === 4)!.rows.map((r) => r.bounds)).toEqual([0, 1, 2, 3, 4].map((n) => `N${n} Q1 (capacity 2)`));
    for (const row of rows) {
      if (!row.finding) continue;
      const trace = parseTrace(readFileSync(row.finding.trace!, 'utf8'));
      // A witness is a run the machines allow: it conforms, and breaks nothing its policy promises.
      const verdict = replay(trace);
      expect(verdict.ok, `${row.finding.trace}: ${verdict.ok ? '' : verdict.violation.message}`).toBe(true);
    }
  });

  it('theorem 7: safe-drain keeps a worker serving through a reload at one and two workers; every other policy has the TERM that leaves none, and its trace replays', () => {
    const dir = mkdtempSync(join(tmpdir(), 'quiesce-prove-'));
    const report = prove({ bounds, theorems: [7], tracesDir: dir });
    expect(report.holds).toBe(true);
    const rows = report.theorems[0]!.rows;
    expect(rows.filter((r) => r.policy === 'safe-drain').map((r) => `${r.bounds} ${r.verdict}`)).toEqual(['W1 C1 R2 HUP proved', 'W2 C1 R2 HUP proved']);
    const others = rows.filter((r) => r.policy !== 'safe-drain');
    expect(others).toHaveLength(10);
    for (const row of others) {
      expect(row.verdict, row.policy).toBe('found');
      const trace = parseTrace(readFileSync(row.finding!.trace!, 'utf8'));
      expect(trace.events.filter((e) => e.type === 'worker.ready').map((e) => e.actor), row.policy).toEqual(['worker/1']);
      expect(replay(trace, trace.header.policy, { properties: propertiesFor(trace.header.params).filter((p) => p.name === 'reload-keeps-serving') }).ok, row.policy).toBe(false);
    }
  });

  it("theorem 7's proof can fail: safe-drain with gunicorn's reload is refuted", () => {
    const atOnce = { ...getPolicy('safe-drain'), reloadRetires: 'at-once' as const };
    const config = worldConfig(atOnce, { workers: 1, clients: 1, requests: 1, signals: ['HUP'], properties: checkableProperties });
    const result = explore(config, {}, { stopAtFirst: true });
    expect(result.findings.map((f) => f.property)).toEqual(['reload-keeps-serving']);
  });

  it('theorem 4 counts what the arithmetic says: with backlog 1, a burst of 4 has 2 refused', () => {
    const report = prove({ bounds, theorems: [4] });
    const n4 = report.theorems[0]!.rows.find((r) => r.bounds.startsWith('N4'))!;
    expect(n4.finding!.what).toBe('2 of 4 refused with EAGAIN');
  });

  it('theorem 6: never-close-idle without the deadline comes to rest with a client waiting and its worker alive (a lasso)', () => {
    const report = prove({ bounds, theorems: [6] });
    const stale = report.theorems[0]!.rows.filter((r) => r.verdict === 'found');
    expect(stale.map((r) => `${r.policy} ${r.bounds}`)).toEqual(['never-close-idle W1 C1 R2 no-deadline']);
    expect(stale[0]!.finding!.lasso).toBe(true);
    expect(stale[0]!.finding!.what).toMatch(/worker\/1 never exits, client\/1 waits/);
  });

  it('a counterexample found at rest replays with its property broken at the end', () => {
    // never-close-idle keeps the idle connection; with the deadline left out the drain never ends.
    const config = worldConfig(getPolicy('never-close-idle'), { workers: 1, clients: 1, requests: 2, withoutDeadline: true, properties: (p) => propertiesFor(p).filter((x) => x.name === 'no-stale-request') });
    const result = explore(config, {}, { stopAtFirst: true });
    const finding = result.findings[0]!;
    expect(finding.property).toBe('no-stale-request');
    const replayed = findingTrace({ theorem: 0, policy: 'never-close-idle', bounds: '', expect: 'nothing', verdict: 'refuted', ok: false, states: 0, transitions: 0, depth: 0, seconds: 0, finding: { ...finding, config } });
    expect(replayed!.world.verdicts.map((v) => v.property)).toContain('no-stale-request');
  });
});

describe('quiesce prove', () => {
  it('--json prints one object with the verdicts and every state count under a key starting with "states"', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quiesce-prove-'));
    const { code, out } = await cli('prove', '--theorem', '4', '--burst', '3', '--backlog', '1', '--no-spin', '--json', '--traces', dir);
    expect(code).toBe(0);
    const report = JSON.parse(out) as { holds: boolean; statesTotal: number; theorems: { rows: { states: number; verdict: string }[] }[]; spin: null };
    expect(report.holds).toBe(true);
    expect(report.spin).toBeNull();
    const rows = report.theorems[0]!.rows;
    expect(rows.map((r) => r.verdict)).toEqual(['found', 'found', 'found', 'found']);
    expect(report.statesTotal).toBe(rows.reduce((n, r) => n + r.states, 0));
  });

  it('bad bounds and theorem numbers get one line naming the flag, exit 2', async () => {
    for (const [argv, message] of [
      [['prove', '--workers', '0'], /--workers: expected an integer from 1 to 4/],
      [['prove', '--clients', 'two'], /--clients: expected an integer from 0 to 4 .*in decimal digits, got "two"/],
      [['prove', '--theorem', '9'], /--theorem: expected theorem numbers among 1, 2, 3, 4, 5, 6, 7/],
      [['replay', 'x.jsonl', '--property', 'nope'], /--property: unknown property "nope"/],
      [['replay', 'x.jsonl', '--timer-tolerance', '5'], /--timer-tolerance: expected two numbers of milliseconds, early and late, like "2,1000"; got "5"/],
    ] as const) {
      const { code, err } = await cli(...argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(err).toMatch(message);
      expect(err).not.toMatch(/\n\s+at /);
    }
  });

  it('quiesce replay --property shows a counterexample’s violation', async () => {
    // gunicorn-gthread-24 decides the keep-alive header before the app runs: a drain that starts mid-handler
    // leaves it saying keep-alive (a property it does not promise, so only --property checks it).
    const policy = getPolicy('gunicorn-gthread-24');
    const config = worldConfig(policy, { ...small, properties: (p) => propertiesFor(p).filter((x) => x.name === 'close-while-draining') });
    const found = explore(config, {}, { stopAtFirst: true }).findings[0]!;
    const { trace } = traceOf(config, found.path);
    const dir = mkdtempSync(join(tmpdir(), 'quiesce-prove-'));
    const path = join(dir, 'cx.jsonl');
    writeFileSync(path, formatTrace(trace));
    expect(found.property).toBe('close-while-draining');
    expect((await cli('replay', path)).code).toBe(0);
    const { code, out } = await cli('replay', path, '--property', found.property!);
    expect(code).toBe(1);
    expect(out).toMatch(new RegExp(`property ${found.property} broken`));
  });
});

describe('SPIN cross-check', () => {
  const shapes: WorldShape[] = [{ workers: 1, clients: 1, requests: 2 }];

  it('SPIN agrees with the explorer on theorems 1, 2 and 3', () => {
    const check = crossCheck({ shapes, policies: ['safe-drain', 'abort-idle', 'gunicorn-sync'] });
    expect(check.rows.map((r) => `${r.theorem} ${r.policy} ${r.spin.verdict}`)).toEqual([
      'theorem 1 safe-drain holds',
      'theorem 3 safe-drain holds',
      'theorem 2 gunicorn-sync found',
      'theorem 2 abort-idle found',
      'theorem 2 safe-drain found',
    ]);
    expect(check.agrees).toBe(true);
    // The Promela is the same composition: SPIN stores at least one state per state of the generated graph.
    for (const row of check.rows.slice(0, 2)) expect(row.spin.statesStored).toBeGreaterThanOrEqual(row.graphStates);
  });

  it('SPIN’s monitors are not vacuous: on a seeded bug both checkers find the violation', () => {
    const variant: PolicySpec = { ...safe, acceptAfterDrain: true };
    const check = crossCheck({ shapes, policies: [], configure: (c) => ({ ...c, policy: variant }) });
    const theorem1 = check.rows.find((r) => r.theorem === 'theorem 1')!;
    expect(theorem1.explorer.verdict).toBe('violated');
    expect(theorem1.spin.verdict).toBe('violated');
    expect(check.agrees).toBe(true);
  });

  it('the generated graph is the explored one: as many states as the explorer visits without symmetry or monitors', () => {
    const config = worldConfig(safe, { workers: 1, clients: 1, requests: 2 });
    expect(graphOf(config).states).toBe(explore(config, {}, { symmetry: false }).states);
  });
});
