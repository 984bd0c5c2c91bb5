/**
 * The gunicorn hooks profile:measure writes, run by Python on a stand-in worker: the attributes and
 * calls gthread 20.1's ThreadWorker has that the hooks wrap (poller.select, enqueue_req,
 * finish_request, sockets, nr, max_requests, handle_exit), and nothing else. What the hooks write is
 * then read by the same functions that read a real run's.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GUNICORN_HOOKS, GUNICORN_STOP_HOOKS, lifeLines, requestTimings, stopTimings } from '../../conformance/measure-profile.ts';

/** A stand-in for gthread's worker; `select` runs `during` inside the poll, as a readable event would come. */
const STAND_IN = `
import importlib.util, os, signal, sys, time
spec = importlib.util.spec_from_file_location('hooks', sys.argv[1])
hooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hooks)

class Epoll:
    def __init__(self): self.ready = []
    def poll(self, timeout): return list(self.ready)

class Poller:
    def __init__(self):
        self.during = None
        self._selector = Epoll()
    def select(self, timeout=None):
        if self.during: self.during()
        return []

class Listener:
    def fileno(self): return 3
    def close(self): pass

class Worker:
    def __init__(self):
        self.poller = Poller()
        self.sockets = [Listener()]
        self.nr = 0
        self.max_requests = 3
        self.pid = os.getpid()
        self.alive = True
    def enqueue_req(self, conn): pass
    def finish_request(self, fs): pass
    def handle_exit(self, sig, frame): self.alive = False

class Req:
    peer_addr = ('127.0.0.1', 5001)

worker = Worker()
hooks.post_worker_init(worker)
`;

function runPython(hooks: string, script: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'quiesce-hooks-'));
  writeFileSync(join(dir, 'hooks.py'), hooks);
  writeFileSync(join(dir, 'stand_in.py'), STAND_IN + script);
  const run = spawnSync('python3', [join(dir, 'stand_in.py'), join(dir, 'hooks.py')], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`python3 exited ${run.status}: ${run.stderr}`);
  return dir;
}

describe("profile:measure's gunicorn hooks, on a stand-in worker", () => {
  it('the request hooks note where the loop was as the request that reaches max-requests began, and what its poller held readable: once, in its poll or past it', () => {
    const inPoll = runPython(
      GUNICORN_HOOKS,
      `
for n in range(2):
    hooks.pre_request(worker, Req()); worker.nr += 1
# The third request reaches max-requests: its thread begins while the main thread is in select.
def during():
    hooks.pre_request(worker, Req()); worker.nr += 1
worker.poller.during = during
worker.poller.select(1.0)
worker.poller.during = None
hooks.pre_request(worker, Req())  # a request after the flip: not another flip
hooks.worker_exit(None, worker)
`,
    );
    const pastPoll = runPython(
      GUNICORN_HOOKS,
      `
worker.poller.select(1.0)
worker.nr = 2
hooks.pre_request(worker, Req())
hooks.worker_exit(None, worker)
`,
    );
    // A flip with a connection readable in the poller (the listener's readiness left out) is counted apart.
    const withReadable = runPython(
      GUNICORN_HOOKS,
      `
worker.poller._selector.ready = [(7, 1), (3, 1)]
worker.nr = 2
hooks.pre_request(worker, Req())
hooks.worker_exit(None, worker)
`,
    );
    const timings = (dir: string) => requestTimings(readFileSync(join(dir, 'requests.log'), 'utf8').split('\n').filter(Boolean));
    expect(timings(inPoll).recycleFlips).toEqual({ inPoll: 1, pastPoll: 0 });
    expect(timings(pastPoll).recycleFlips).toEqual({ inPoll: 0, pastPoll: 1 });
    expect(timings(withReadable).recycleFlips).toEqual({ inPoll: 0, pastPoll: 0 });
    expect(timings(withReadable).recycleFlipsWithReadable).toBe(1);
  });

  it("the stop hooks write the arbiter's kills, each hand-over, the handler and what its poller holds: a loop that hands over between a kill and its handler ran, one that does not stopped", () => {
    // The arbiter's kill_worker, wrapped by when_ready, writes the kill; the stand-in's own pid takes the signal.
    const dir = runPython(
      GUNICORN_STOP_HOOKS,
      `
class Server:
    def kill_worker(self, pid, sig): os.kill(pid, sig)
server = Server()
hooks.when_ready(server)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
server.kill_worker(os.getpid(), signal.SIGTERM)
worker.nr_conns = 4
worker.poller._selector.ready = [(7, 1), (3, 1)]  # a connection readable, and the listener (left out)
worker.enqueue_req(None)  # a hand-over while the signal waits: the loop ran
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])  # the handler runs here
assert not worker.alive
worker.sockets[0].close()  # its last turn handed nothing over
worker.alive = True
time.sleep(0.01)
worker.poller._selector.ready = [(7, 1), (8, 1)]
server.kill_worker(os.getpid(), signal.SIGTERM)  # the handler runs at once: nothing handed over between
assert not worker.alive
worker.enqueue_req(None)  # after the handler: its last turn
hooks.worker_exit(None, worker)
`,
    );
    const lines = readFileSync(join(dir, 'stops.log'), 'utf8').split('\n').filter(Boolean);
    expect(lines.filter((l) => / kill \d+ 15$/.test(l))).toHaveLength(2);
    const times = stopTimings(lines);
    expect(times.loopStops).toEqual({ stopped: 1, ran: 1 });
    expect(times.signalHandlerMs).toHaveLength(2);
    // Two handlers, 4 connections held at each, 1 and then 2 readable; the second's last turn handed one over.
    expect(times.atHandlers).toEqual({ handlers: 2, held: 8, readable: 3, handedOver: 1 });
  });

  it("the lifecycle hooks write the worker's ready, its fork, its reap and its exit, each with its pid, as the arbiter's timings read them", () => {
    // post_worker_init ran at the stand-in's start; post_fork runs in the child, child_exit in the arbiter (worker.pid: the child's).
    const dir = runPython(
      GUNICORN_HOOKS,
      `
hooks.post_fork(None, worker)
hooks.worker_exit(None, worker)
hooks.child_exit(None, worker)
`,
    );
    const lines = lifeLines(readFileSync(join(dir, 'hooks.log'), 'utf8').split('\n').filter(Boolean));
    expect(lines.map((l) => l.kind)).toEqual(['ready', 'forked', 'exit', 'reaped']);
    expect(new Set(lines.map((l) => l.pid)).size).toBe(1);
    expect(lines.every((l, i) => i === 0 || l.ms >= lines[i - 1]!.ms)).toBe(true);
  });
});
