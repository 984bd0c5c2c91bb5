/**
 * Paths generated from the charts (conformance/paths.ts): pure, no server.
 * What the suite drives from outside must be what the chart's path says,
 * and what no outside action brings about must say why.
 */
import { describe, expect, it } from 'vitest';
import { pathsAcross, workerPaths, WORKER_PATH_SERVER } from '../../conformance/paths.ts';
import { CoverageRecorder, NOT_ON_QUIESCE_SERVE, reachOf, UNTRACEABLE_TRANSITIONS } from '../../conformance/coverage.ts';
import { BASE_POLICY_NAMES } from '../../model/policies.ts';
import { simulateScript } from '../../simulator/script.ts';

describe("the worker chart's paths", () => {
  const paths = pathsAcross([...BASE_POLICY_NAMES]).filter((p) => p.kind === 'worker');
  const inventory = new CoverageRecorder().report().find((c) => c.kind === 'worker')!;

  it('aim at every leaf state of the worker chart, under some policy', () => {
    const aimed = new Set(paths.filter((p) => p.aim === 'state').map((p) => p.target));
    // Compound states are passed through on the way to a leaf (coverage counts them there); unborn is where every worker starts.
    const leaves = inventory.states.missing.filter((s) => !['worker.alive', 'worker.alive.draining', 'worker.dying', 'worker.unborn', 'worker.alive.draining.turnDecision'].includes(s));
    for (const leaf of leaves) expect(aimed, leaf).toContain(leaf);
  });

  it('turn each runner action of a path into a script step: signals to the arbiter or the worker, connects, requests, closes', () => {
    const recycle = paths.find((p) => p.target === 'worker.alive.serving --worker.max-requests--> worker.alive.draining')!;
    expect(recycle.events).toEqual(['boot', 'ready', 'accept c1', 'request-start c1', 'request-end c1', 'request-start c1', 'request-end c1', 'request-start c1', 'max-requests']);
    expect(recycle.server.maxRequests).toBe(WORKER_PATH_SERVER.maxRequests);
    expect(recycle.script!.steps.filter((s) => s.do === 'request').length).toBe(3);

    // SIGKILL goes to the worker itself.
    const kill = paths.find((p) => p.target === 'worker.dying.killed')!;
    expect(kill.script!.steps.map((s) => (s.do === 'signal-worker' || s.do === 'signal' ? `${s.do} ${s.signal}` : s.do))).toEqual(['signal-worker KILL', 'signal TERM']);
    // A SIGSTOP is in no server's trace (the stopped process cannot write it): frozen is the simulator's and the explorer's to reach.
    expect(paths.find((p) => p.target === 'worker.frozen')).toMatchObject({ script: null, undrivable: expect.stringMatching(/SIGSTOP/) });
  });

  it("gthread 20.x's last loop turn: reached by a TERM, ended by an accept or the poll's timeout", () => {
    const byTarget = (t: string) => paths.find((p) => p.target === t)!;
    expect(byTarget('worker.alive.draining.lastTurn')).toMatchObject({ policy: 'gunicorn-gthread', events: ['boot', 'ready', 'signal TERM'] });
    // The timeout is the server's to wait out: the script is the TERM alone, and the run lasts until the server exits.
    const timeout = byTarget('worker.alive.draining.lastTurn --worker.turn-timeout--> worker.alive.draining.listening');
    expect(timeout.events).toEqual(['boot', 'ready', 'signal TERM', 'turn-timeout']);
    expect(timeout.script!.steps.map((s) => s.do)).toEqual(['signal']);
    // An accept ends the turn: a connect after the TERM.
    const accept = byTarget('worker.alive.draining.lastTurn --worker.accept--> worker.alive.draining.listening');
    expect(accept.script!.steps.slice(0, 2).map((s) => s.do)).toEqual(['signal', 'connect']);
  });

  it('what no outside action brings about is listed with the reason, and has no script', () => {
    // A crash is a fault the runner stands in for: a SIGSEGV to the worker, which it did not send itself.
    const crash = paths.find((p) => p.target === 'worker.dying.crashed')!;
    expect(crash.script!.steps.map((s) => (s.do === 'signal-worker' || s.do === 'signal' ? `${s.do} ${s.signal}` : s.do))).toEqual(['signal-worker SEGV', 'signal TERM']);
    const frozen = paths.find((p) => p.target === 'worker.frozen --worker.crash--> worker.dying.crashed')!;
    expect(frozen).toMatchObject({ script: null, undrivable: expect.stringMatching(/SIGSTOP/) });
    for (const p of paths) expect(p.script === null, p.target).toBe(p.undrivable !== null);
  });

  it('bytes while a request is handled are a request pipelined behind it; while one waits to be read, no platform announces them', () => {
    const conn = pathsAcross([...BASE_POLICY_NAMES]).filter((p) => p.kind === 'conn');
    const behind = conn.find((p) => p.target === 'conn.handling --conn.bytes--> (stays)')!;
    const requests = behind.script!.steps.filter((s) => s.do === 'request');
    expect(requests.length).toBe(2);
    // Sent while the first is still being handled: pipelined.
    expect(requests[1]!.atMs).toBeLessThan(requests[0]!.atMs + (requests[0]!.do === 'request' ? requests[0]!.serviceMs : 0));
    const trace = simulateScript(behind.script!, behind.policy);
    const started = trace.events.findIndex((e) => e.type === 'conn.handler-start');
    const answered = trace.events.findIndex((e) => e.type === 'conn.respond');
    expect(trace.events.slice(started, answered).some((e) => e.type === 'conn.bytes')).toBe(true);
    expect(conn.find((p) => p.target === 'conn.pending --conn.bytes#2--> (stays)')).toMatchObject({ script: null, undrivable: expect.stringMatching(/unannounced/) });
    // The rest of a body cut short is announced: it makes the request whole, and stops the header timer.
    expect(conn.find((p) => p.target === 'conn.pending --conn.bytes#1--> conn.pending.untimed')!.script!.steps.map((s) => s.do)).toEqual(['connect', 'partial-body', 'rest', 'close', 'signal']);
  });

  it("every script is one a client of the chart can follow (whole requests, pipelined or not; nothing after a Connection: close response; no close while it awaits): the simulator runs each", () => {
    // A path may have a connection start a request or close before its response: the script's client waits for it.
    // Across the policies, and for each alone (`conform --policy P` generates that one's): a path once
    // had a client send again after a `Connection: close` response, under gunicorn-gthread alone.
    for (const policies of [[...BASE_POLICY_NAMES], ...BASE_POLICY_NAMES.map((p) => [p])]) {
      for (const p of pathsAcross(policies)) {
        if (p.script) expect(() => simulateScript(p.script!, p.policy), `${p.kind} ${p.target} (${policies.join(', ')})`).not.toThrow();
      }
    }
  });

  it('are the same for one policy alone as across the policies, where that policy was chosen', () => {
    const own = workerPaths('gunicorn-gthread');
    for (const p of paths.filter((x) => x.policy === 'gunicorn-gthread')) expect(own.find((o) => o.target === p.target)?.events, p.target).toEqual(p.events);
  });
});

describe('coverage against what the runner can drive', () => {
  it('a transition not taken is out of reach only where a generated path says why; the rest is the gap', () => {
    const coverage = [{ kind: 'conn' as const, states: { covered: 0, total: 0, missing: [] }, transitions: { covered: 1, total: 4, missing: ['a', 'b', 'c'] } }];
    const paths = [
      { kind: 'conn', target: 'a', undrivable: "a client's RST" },
      { kind: 'conn', target: 'b', undrivable: null },
      { kind: 'worker', target: 'c', undrivable: 'a crash' },
    ];
    expect(reachOf(coverage, paths)).toEqual([{ kind: 'conn', total: 4, covered: 1, notFromOutside: [{ transition: 'a', reason: "a client's RST" }], notTaken: ['b', 'c'] }]);
  });

  it("an event only the kernel sees (a SYN, an overflow, a queue reset) is in no real trace: out of reach, whatever drives it", () => {
    const coverage = [
      {
        kind: 'listener' as const,
        states: { covered: 0, total: 0, missing: [] },
        transitions: { covered: 0, total: 3, missing: ['listener.listening --listener.syn--> (stays)', 'listener.resetting --listener.refuse#2--> (stays)', 'listener.open --listener.release--> listener.closed'] },
      },
    ];
    const [listener] = reachOf(coverage, []);
    expect(listener!.notFromOutside.map((o) => o.transition)).toEqual(['listener.listening --listener.syn--> (stays)', 'listener.resetting --listener.refuse#2--> (stays)']);
    expect(listener!.notFromOutside[0]!.reason).toMatch(/SYN/);
    expect(listener!.notTaken).toEqual(['listener.open --listener.release--> listener.closed']);
  });

  it('names by transition what no running server writes, and what quiesce serve is built never to do: every name is one of the chart, and each is out of reach with its reason', () => {
    const inventory = new CoverageRecorder().report();
    const all = new Set(inventory.flatMap((m) => m.transitions.missing));
    const named = { ...UNTRACEABLE_TRANSITIONS, ...NOT_ON_QUIESCE_SERVE };
    for (const name of Object.keys(named)) expect(all, name).toContain(name);
    // A SIGKILLed arbiter, and gthread's poller, which our server's loop does not have.
    // A client's RST is driven on an open connection: its path opens one first.
    expect(pathsAcross(['gunicorn-sync']).find((p) => p.target === 'conn --conn.peer-rst--> conn.closed')!.events).toEqual(['open', 'peer-rst']);
    expect(Object.keys(UNTRACEABLE_TRANSITIONS).filter((t) => t.startsWith('arbiter.')).length).toBe(4);
    // …the accept a draining gthread 21–23 worker's last turn may take, where our worker releases its listener in the drain's step,
    // and a KILL after the watchdog's ABRT, which our worker does not outlive.
    expect(Object.keys(NOT_ON_QUIESCE_SERVE).every((t) => t.startsWith('conn.unpolled ') || t.endsWith('untimed') || / --worker\.accept--> \(stays\)$/.test(t) || t === 'worker.dying --worker.signal#1--> (stays)')).toBe(true);
    // The driver's own: closingHard closes in the step that enters it.
    expect(Object.keys(UNTRACEABLE_TRANSITIONS).filter((t) => t.startsWith('conn.closingHard ')).length).toBe(2);
    const reach = reachOf(inventory, []);
    const excused = new Map(reach.flatMap((m) => m.notFromOutside.map((o) => [o.transition, o.reason] as const)));
    for (const [name, reason] of Object.entries(named)) expect(excused.get(name), name).toBe(reason);
    // The transitions it excuses are those alone: the untaken rest is still the gap.
    expect(reach.find((m) => m.kind === 'arbiter')!.notTaken).toContain('arbiter.stopping.fast --arbiter.graceful-timeout--> arbiter.stopping.killing');
  });
});
