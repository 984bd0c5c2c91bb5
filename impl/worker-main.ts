/**
 * Entry point of a worker process (spawned by the arbiter, never by hand).
 * It starts as a spare: loads the app, compiles the machines, says so, and
 * waits. When the arbiter gives it an identity and copies of the listening
 * socket it becomes that worker; real signals then go to its machine.
 *
 * It is bundled into one classic script and started by `worker-boot.cjs`,
 * which keeps V8's compiled code for it between workers (see there why).
 */
import { runtimesFor } from '../model/machines/index.ts';
import { getPolicy } from '../model/policies.ts';
import { AppLoadError, loadApp, type App, type ImportModule } from './apps.ts';
import { isArbiterMessage, WORKER_BOOT_ERROR, WORKER_SPEC_ENV, type SocketHandle, type SpareSpec, type WorkerIdentity, type WorkerMessage } from './protocol.ts';
import { WorkerServer } from './worker.ts';

function send(message: WorkerMessage, done?: () => void): void {
  if (!process.send || !process.connected) {
    done?.();
    return;
  }
  process.send(message, undefined, {}, () => done?.());
}

/** What the boot script gives the bundle. */
export interface WorkerBoot {
  /** Called once, as a worker that served exits: keep the code compiled so far for the next worker. */
  readonly keepCompiledCode: () => void;
  /**
   * The boot script's own `import()`, for a user's app: Node 20 drops a script's dynamic-import
   * handler when the script comes from a code cache, so the bundle cannot import by itself.
   */
  readonly importModule: ImportModule;
}

export function main(boot: WorkerBoot): void {
  const raw = process.env[WORKER_SPEC_ENV];
  if (!raw || !process.send) {
    process.stderr.write('quiesce worker: started without an arbiter (this process is spawned by `quiesce serve`)\n');
    process.exit(2);
  }
  const spec = JSON.parse(raw) as SpareSpec;
  // As gunicorn's setproctitle: an operator (and a supervisor's tests) tell workers from spares in ps.
  process.title = 'quiesce: spare';
  const debugPairs = (process.env.QUIESCE_DEBUG ?? '').split(',').includes('pairs');

  let worker: WorkerServer | null = null;
  let activation: { identity: WorkerIdentity; accepting: unknown } | null = null;

  // gunicorn's worker signals: TERM drains, INT/QUIT exit at once, ABRT is the arbiter's heartbeat kill.
  // One that comes before this process is a worker is the worker's all the same: the arbiter may signal
  // a worker whose activation is still on its way (or whose app is still loading); it is taken at boot.
  // The arbiter never signals a spare: it retires one by closing the IPC channel.
  const early: ('TERM' | 'INT' | 'QUIT' | 'ABRT')[] = [];
  for (const [name, signal] of [['SIGTERM', 'TERM'], ['SIGINT', 'INT'], ['SIGQUIT', 'QUIT'], ['SIGABRT', 'ABRT']] as const) {
    process.on(name, () => (worker ? worker.signal(signal) : early.push(signal)));
  }
  send({ kind: 'signals-ready' });
  // HUP, TTIN and TTOU are the arbiter's; a worker in the same process group ignores them.
  for (const signal of ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const) process.on(signal, () => {});
  // The arbiter went away (gunicorn: ppid changed): stop gracefully. A spare was retired: it just ends.
  process.on('disconnect', () => (worker ? worker.signal('TERM') : process.exit(0)));
  // An error no connection owns (a bug in the server, an app's stray callback): the process cannot be
  // trusted to go on. Say so once, hand the trace over, and exit with WORKER_CRASH; the arbiter
  // writes the crash into the trace and replaces the worker.
  process.on('uncaughtException', (error) => {
    if (worker) worker.crash(error);
    else throw error;
  });

  // Listening from the start: the arbiter gives an identity and the socket copies as soon as it takes
  // this spare, possibly while the app still loads (a message without a listener would be lost).
  let app: App | null = null;
  let held: SocketHandle | null = null;
  process.on('message', (message: unknown, handle: unknown) => {
    if (!isArbiterMessage(message) || !handle) return;
    if (message.kind === 'activate' && activation === null) activation = { identity: message.identity, accepting: handle };
    else if (message.kind === 'held-copy' && activation !== null && held === null) held = handle as SocketHandle;
    else if (message.kind === 'listener-copy' && worker) worker.listenerCopy(handle);
    become();
  });

  /** It has asked its worker to listen (once: when it has both its identity and its app). */
  let listening = false;

  /**
   * Once it has its identity and both copies of the socket, the spare is that worker: its machine boots
   * (signals are its own from then on), and it listens once its app is loaded too — a spare taken while
   * it still loads (after a reload, every new worker) boots for as long as the app takes.
   */
  function become(): void {
    if (activation === null || held === null) return;
    if (worker === null) {
      process.title = `quiesce: worker ${activation.identity.n}`;
      // Requests come only once it listens, after the load: by then `app` is set.
      const loadedApp: App = (request, context) => app!(request, context);
      worker = new WorkerServer({ ...spec, ...activation.identity }, loadedApp, send, (code) => {
        boot.keepCompiledCode();
        process.exit(code);
      }, debugPairs);
      worker.boot(held);
      for (const signal of early.splice(0)) worker.signal(signal);
    }
    if (app !== null && !listening) {
      listening = true;
      worker.listen(activation.accepting);
    }
  }

  void loadApp(spec.app, spec.cwd, boot.importModule).then(
    (loaded) => {
      app = loaded;
      // Compiled now, so that becoming a worker costs nothing.
      runtimesFor(getPolicy(spec.policy), spec.params);
      send({ kind: 'spare-ready' });
      become();
    },
    (error: unknown) => {
      const message = error instanceof AppLoadError ? error.message : `app ${spec.app} failed to load: ${(error as Error).message}`;
      // The process exits once the message is sent; until then the IPC channel keeps it alive.
      send({ kind: 'boot-error', message }, () => process.exit(WORKER_BOOT_ERROR));
    },
  );
}
