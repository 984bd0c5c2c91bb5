/**
 * Entry point of a worker process (spawned by the arbiter, never by hand):
 * reads its spec, wires real signals to the worker machine, and runs.
 */
import { isListenerCopy, WORKER_SPEC_ENV, type WorkerMessage, type WorkerSpec } from './protocol.ts';
import { WorkerServer } from './worker.ts';

function send(message: WorkerMessage, done?: () => void): void {
  if (!process.send || !process.connected) {
    done?.();
    return;
  }
  process.send(message, undefined, {}, () => done?.());
}

const raw = process.env[WORKER_SPEC_ENV];
if (!raw || !process.send) {
  process.stderr.write('quiesce worker: started without an arbiter (this process is spawned by `quiesce serve`)\n');
  process.exit(2);
}
const spec = JSON.parse(raw) as WorkerSpec;
const worker = new WorkerServer(spec, send, (code) => process.exit(code), (process.env.QUIESCE_DEBUG ?? '').split(',').includes('pairs'));

// gunicorn's worker signals: TERM drains, INT/QUIT exit at once, ABRT is the arbiter's heartbeat kill.
process.on('SIGTERM', () => worker.signal('TERM'));
process.on('SIGINT', () => worker.signal('INT'));
process.on('SIGQUIT', () => worker.signal('QUIT'));
process.on('SIGABRT', () => worker.signal('ABRT'));
// HUP, TTIN and TTOU are the arbiter's; a worker in the same process group ignores them.
for (const signal of ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const) process.on(signal, () => {});
// The arbiter went away (gunicorn: ppid changed): stop gracefully.
process.on('disconnect', () => worker.signal('TERM'));
process.on('message', (message: unknown, handle: unknown) => {
  if (isListenerCopy(message) && handle) worker.listenerCopy(handle);
});

// An error no connection owns (a bug in the server, an app's stray callback): the process cannot be
// trusted to go on. Say so once, hand the trace over, and exit with WORKER_CRASH; the arbiter
// writes the crash into the trace and replaces the worker.
process.on('uncaughtException', (error) => worker.crash(error));

await worker.boot();
