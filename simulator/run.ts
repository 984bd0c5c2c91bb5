/**
 * One simulated run: a scenario under a policy with a seed. The trace goes
 * to a sink as it is produced (nothing per-request is kept unless asked).
 */
import type { ConnEvent, MachineEvent, TraceEvent } from '../model/events.ts';
import { traceEvent, type TraceSink } from '../model/host.ts';
import { runtimesFor, type MachineEngine } from '../model/machines/index.ts';
import { getPolicy } from '../model/policies.ts';
import { makeHeader, type TraceHeader } from '../model/trace.ts';
import { ApacheBench, ProcessedRequests, ProxyLoad, type ClientStats } from './clients.ts';
import { SharedCpu } from './cpu.ts';
import { Engine } from './engine.ts';
import { Kernel } from './kernel.ts';
import { CLASSIC_SYN_SCHEDULE_MS, Network } from './network.ts';
import { firstWorkersReadyMs, type ScenarioParams } from './scenarios.ts';
import { fromPercentiles } from './rng.ts';
import { RequestRows } from './request-rows.ts';
import { routeItem, type PlatformItem, type Wire } from './platform.ts';
import { SimulatedServer, type ServerTiming } from './server.ts';
import { ServingGaps, type ServingGapSummary } from './serving.ts';

export interface RunOptions {
  scenario: string;
  policy: string;
  seed: number;
  params: ScenarioParams;
  /** Receives every trace event as it happens. */
  onEvent?: (event: TraceEvent) => void;
  /** Liveness budget (see Engine.run). */
  maxVirtualMs?: number;
  maxSteps?: number;
  /** Called now and then with (virtual ms, events so far, client requests finished so far). */
  onProgress?: (virtualMs: number, events: number, requestsDone: number) => void;
  /** After every step, check that the platform's own bookkeeping agrees with the machines (slow; QUIESCE_DEBUG=pairs). */
  debugPairs?: boolean;
  /** Which form runs the machines (the compiled one unless asked: XState's interpreter is the reference). */
  engine?: MachineEngine;
}

export interface RunResult {
  scenario: string;
  policy: string;
  seed: number;
  params: ScenarioParams;
  stats: ClientStats;
  virtualMs: number;
  /** When the client's load ended (ab's last exchange), virtual ms; absent for the proxy's open loop. */
  loadEndMs?: number;
  events: number;
  header: TraceHeader;
  /** The spans in which the arbiter ran and no worker served (simulator/serving.ts). */
  servingGaps: ServingGapSummary;
}

/** Each request's service time: one draw from the seeded PRNG, from a profile's percentiles or the scenario's uniform range. */
function serviceTimeOf(params: ScenarioParams, engine: Engine): (req: string) => number {
  if (params.servicePercentilesMs) return drawFrom(params.servicePercentilesMs, engine);
  return () => engine.rng.uniform(params.serviceMinMs, params.serviceMaxMs);
}

/**
 * A request's work, drawn around its measured mean. /proc gives a worker's CPU over many requests, not
 * each one's: the spread is assumed exponential (the queueing models' default) rather than none — with
 * every request's work the same, identical workers serve in lockstep and reach max-requests in the same
 * instant, which no real run shows (simulator/README.md, "The CPU").
 */
function exponential(meanMs: number, engine: Engine): () => number {
  return () => -meanMs * Math.log(1 - engine.rng.uniform(0, 1));
}

/** A draw that comes out true with probability `share`. */
function withChance(share: number, engine: Engine): () => boolean {
  return () => engine.rng.uniform(0, 1) < share;
}

function drawFrom(percentilesMs: readonly number[], engine: Pick<Engine, 'rng'>): () => number {
  return () => fromPercentiles(percentilesMs, engine.rng.uniform(0, 100));
}

/**
 * A graceful exit's teardown and reap: a measured row drawn whole where the profile has them (one
 * process's end: the two are not independent), else each from its distribution; absent both: at once.
 */
export function gracefulExitTiming(params: Pick<ScenarioParams, 'gracefulExitRowsMs' | 'teardownPercentilesMs' | 'reapAfterTeardownPercentilesMs'>, engine: Pick<Engine, 'rng'>): Pick<ServerTiming, 'gracefulExitMs'> {
  const rows = params.gracefulExitRowsMs;
  if (rows && rows.length > 0) {
    return {
      gracefulExitMs: () => {
        const [teardownMs, reapAfterTeardownMs] = rows[engine.rng.int(0, rows.length - 1)]!;
        return { teardownMs, reapAfterTeardownMs };
      },
    };
  }
  const teardown = params.teardownPercentilesMs ? drawFrom(params.teardownPercentilesMs, engine) : null;
  const reap = params.reapAfterTeardownPercentilesMs ? drawFrom(params.reapAfterTeardownPercentilesMs, engine) : null;
  if (!teardown && !reap) return {};
  return { gracefulExitMs: () => ({ ...(teardown ? { teardownMs: teardown() } : {}), ...(reap ? { reapAfterTeardownMs: reap() } : {}) }) };
}

/** A poll wait measured from the request's arrival, whatever made its connection readable. */
function waitFromArrival(draw: () => number): NonNullable<ServerTiming['dispatchMs']> {
  return () => ({ ms: draw(), from: 'arrival' });
}

/**
 * How long a worker's loop takes to notice its listener readable, where it takes one connection a turn:
 * a readable connection's poll wait (the measured rows' at its held count, or the distribution), the
 * same loop noticing the same kind of event; without either, at once.
 */
function acceptWait(params: Pick<ScenarioParams, 'dispatchPercentilesMs'>, rows: RequestRows | null, engine: Pick<Engine, 'rng'>): Pick<ServerTiming, 'acceptWaitMs'> {
  if (rows) return { acceptWaitMs: rows.pollWaitMs };
  if (params.dispatchPercentilesMs) return { acceptWaitMs: drawFrom(params.dispatchPercentilesMs, engine) };
  return {};
}

/** The client's work per response, on its one thread of the shared CPU: nothing waits for it but more of its own. */
function clientWorkOn(cpu: SharedCpu, workMs: number): () => void {
  const nothing = () => {};
  return () => cpu.run('client', workMs, nothing);
}

/** The simulated world of one run, wired: engine, kernel, network, server. */
export interface SimulatedWorld {
  readonly engine: Engine;
  readonly kernel: Kernel;
  readonly network: Network;
  readonly server: SimulatedServer;
}

export function buildWorld(
  policyName: string,
  seed: number,
  params: ScenarioParams,
  sink: TraceSink,
  /** Each request's service time; by default drawn uniformly from the scenario's range. */
  serviceMs?: (req: string) => number,
  machineEngine: MachineEngine = 'compiled',
  /** Requests the server refuses from their head, a body too large (scripts); by default none. */
  refuses?: (req: string) => boolean,
): SimulatedWorld {
  const engine = new Engine(runtimesFor(getPolicy(policyName), params.server, machineEngine), seed, sink);
  // Items come back to the network or the server when the event queue reaches them.
  let arrive: (item: PlatformItem) => void = () => {};
  const wire: Wire = {
    after: (delayMs, item) => engine.after(delayMs, () => arrive(item)),
    at: (delayMs, item) => engine.at(delayMs, () => arrive(item)),
  };
  const kernel = new Kernel(engine);
  const cpu = params.cpu ? new SharedCpu(params.cpu.cores, engine) : null;
  // Measured requests whole, where the profile has them: in place of the four distributions drawn apart.
  const rows = params.requestRowsMs ? new RequestRows(params.requestRowsMs, engine.rng) : null;
  const network = new Network(
    engine,
    kernel,
    {
      latencyMs: params.latencyMs,
      synRetryScheduleMs: CLASSIC_SYN_SCHEDULE_MS,
      loopback: params.loopback,
      ...(params.clientTurnaroundPercentilesMs ? { clientTurnaroundMs: drawFrom(params.clientTurnaroundPercentilesMs, engine) } : {}),
      ...(cpu && params.cpu ? { clientWork: clientWorkOn(cpu, params.cpu.clientWorkMs) } : {}),
    },
    wire,
  );
  const server = new SimulatedServer(
    engine,
    kernel,
    network,
    {
      bootMs: params.bootMs,
      serviceMs: serviceMs ?? rows?.serviceMs ?? serviceTimeOf(params, engine),
      ...(rows
        ? { dispatchMs: rows.dispatchMs, pickupMs: rows.pickupMs, returnMs: rows.returnMs }
        : {
            ...(params.dispatchPercentilesMs ? { dispatchMs: waitFromArrival(drawFrom(params.dispatchPercentilesMs, engine)) } : {}),
            ...(params.pickupPercentilesMs ? { pickupMs: drawFrom(params.pickupPercentilesMs, engine) } : {}),
            ...(params.returnPercentilesMs ? { returnMs: drawFrom(params.returnPercentilesMs, engine) } : {}),
          }),
      ...(params.acceptTurnPercentilesMs ? { acceptTurnMs: drawFrom(params.acceptTurnPercentilesMs, engine), ...acceptWait(params, rows, engine) } : {}),
      ...(params.killGapPercentilesMs ? { killGapMs: drawFrom(params.killGapPercentilesMs, engine) } : {}),
      ...(params.signalHandlerPercentilesMs ? { signalHandlerMs: drawFrom(params.signalHandlerPercentilesMs, engine) } : {}),
      ...(params.closeAfterTurnPercentilesMs ? { closeAfterTurnMs: drawFrom(params.closeAfterTurnPercentilesMs, engine) } : {}),
      ...(params.closeAfterRecycleTurnPercentilesMs ? { closeAfterRecycleTurnMs: drawFrom(params.closeAfterRecycleTurnPercentilesMs, engine) } : {}),
      ...(params.exitAfterClosePercentilesMs ? { exitAfterCloseMs: drawFrom(params.exitAfterClosePercentilesMs, engine) } : {}),
      ...(params.reloadKillDelayPercentilesMs ? { reloadKillDelayMs: drawFrom(params.reloadKillDelayPercentilesMs, engine) } : {}),
      ...(params.reloadStallBeforeKillPercentilesMs ? { reloadStallBeforeKillMs: drawFrom(params.reloadStallBeforeKillPercentilesMs, engine) } : {}),
      ...gracefulExitTiming(params, engine),
      ...(params.forkToReadyPercentilesMs ? { forkToReadyMs: drawFrom(params.forkToReadyPercentilesMs, engine) } : {}),
      ...(params.forkQueuePercentilesMs
        ? { forkQueue: { wakeMs: drawFrom(params.forkQueuePercentilesMs.wakeMs, engine), gapMs: drawFrom(params.forkQueuePercentilesMs.gapMs, engine) } }
        : {}),
      ...(params.recyclePastPollShare !== undefined ? { recycleFindsLoopPastPoll: withChance(params.recyclePastPollShare, engine) } : {}),
      ...(params.recycleReturn
        ? { recycleReturn: { selectWoken: withChance(params.recycleReturn.selectWokenShare, engine), lastReturnAgeMs: drawFrom(params.recycleReturn.lastReturnAgePercentilesMs, engine) } }
        : {}),
      ...(params.signalStopsLoopShare !== undefined ? { signalStopsLoop: withChance(params.signalStopsLoopShare, engine) } : {}),
      loopTickMs: params.loopTickMs,
      heartbeats: true,
      ...(refuses ? { refuses } : {}),
      ...(cpu && params.cpu ? { cpu: { shared: cpu, requestWorkMs: exponential(params.cpu.requestWorkMs, engine), bootWorkMs: params.cpu.bootWorkMs, spares: params.cpu.spares, spareActivationMs: params.cpu.spareActivationMs ?? 0, readsInTurn: params.cpu.readsInTurn ?? false } } : {}),
    },
    wire,
    engine.rng,
  );
  arrive = (item) => routeItem(item, network, server);
  return { engine, kernel, network, server };
}

export function runScenario(options: RunOptions): RunResult {
  const { params } = options;
  const processed = new ProcessedRequests();
  const gaps = new ServingGaps();
  let events = 0;
  const onEvent = options.onEvent;
  const sink: TraceSink = (t, actor, event) => {
    events++;
    gaps.take(t, actor, event as { type: TraceEvent['type']; signal?: string });
    if (event.type === 'conn.handler-start') processed.started.add((event as MachineEvent<ConnEvent & { type: 'conn.handler-start' }>).req);
    if (onEvent) onEvent(traceEvent(t, actor, event));
  };
  const { engine, network, server } = buildWorld(options.policy, options.seed, params, sink, undefined, options.engine);
  const checkPairs = options.debugPairs
    ? () => {
        server.checkPairs();
        network.checkPairs();
      }
    : undefined;
  server.boot();

  // Load starts once the first workers are up.
  const loadStartMs = firstWorkersReadyMs(params) + 1;
  let stats: ClientStats;
  let loadEndMs: number | undefined;
  /** The operator's planned signals; those not sent by the time the load ends are moot (the server stops). */
  const planned: { cancelled: boolean }[] = [];
  const shutdown = () => {
    for (const timer of planned) timer.cancelled = true;
    server.signal('TERM');
  };
  if (params.load.kind === 'ab') {
    const ab = new ApacheBench(engine, network, params.load, processed);
    stats = ab.stats;
    let shutDown = false;
    ab.onDone = () => {
      if (shutDown) return;
      shutDown = true;
      loadEndMs = engine.nowMs;
      engine.after(1, shutdown);
    };
    engine.after(loadStartMs, () => ab.start());
  } else {
    const proxy = new ProxyLoad(engine, network, params.load, processed);
    stats = proxy.stats;
    engine.after(loadStartMs, () => proxy.start());
    // TERM once every downstream request has an answer.
    const expected = Math.round((params.load.ratePerSec * params.load.durationMs) / 1000);
    const watch = () => {
      if (stats.total >= expected) shutdown();
      else engine.at(100, watch);
    };
    engine.after(loadStartMs + params.load.durationMs, watch);
  }
  for (const scheduled of params.signals) {
    planned.push(engine.at(loadStartMs + scheduled.atMs, () => {
      if (!('worker' in scheduled)) return server.signal(scheduled.signal);
      const live = server.workerIds();
      if (live.length > 0) server.signalWorker(live[scheduled.worker % live.length]!, scheduled.signal);
    }));
  }

  let lastReport = 0;
  // Generous, in proportion to the load: a seed run needs ~400 s of virtual time and ~50 steps a request at most.
  const requests = params.load.kind === 'ab' ? params.load.requests : Math.round((params.load.ratePerSec * params.load.durationMs) / 1000);
  const loadMs = params.load.kind === 'ab' ? requests : params.load.durationMs;
  const budget = { maxVirtualMs: options.maxVirtualMs ?? 3_600_000 + loadMs, maxSteps: options.maxSteps ?? 20_000_000 + 100 * requests };
  engine.run(budget, (now) => {
    checkPairs?.();
    if (options.onProgress && events - lastReport > 5_000) {
      lastReport = events;
      options.onProgress(now, events, stats.total);
    }
  });
  const header = makeHeader(options.policy, params.server, true, { scenario: options.scenario, seed: options.seed });
  return { scenario: options.scenario, policy: options.policy, seed: options.seed, params, stats, virtualMs: engine.nowMs, ...(loadEndMs !== undefined ? { loadEndMs } : {}), events, header, servingGaps: gaps.summary(engine.nowMs) };
}
