/**
 * The scripted scenarios: each a few clients and signals aimed at a race
 * window, run the same way in the simulator and against a real server. Times
 * are ms after the server listens; gaps are wide enough (≥ 200 ms) that a
 * real server's scheduling cannot swap two steps.
 *
 * Every client still idle at the final TERM closes before the graceful
 * deadline (TERM + 3 s): a policy that keeps idle connections (never-close-idle,
 * gunicorn-gthread-24) would otherwise reach the deadline, where the arbiter's
 * KILL and the worker's own graceful timeout fall due together — which comes
 * first is the scheduler's choice, not the policy's.
 */
import type { Script } from '../simulator/script.ts';

/** One worker (so which worker takes a connection is not the kernel's choice), short timers. */
const BASE = {
  workers: 1,
  threads: 4,
  keepAliveMs: 2000,
  idleGraceMs: 600,
  lingerMs: 500,
  gracefulTimeoutMs: 3000,
  headerTimeoutMs: 10_000,
} as const;

export const SCRIPTS: readonly Script[] = [
  {
    name: 'term-idle-and-in-flight',
    description: 'TERM with one keep-alive connection idle and one request in flight; the idle client sends again while the worker drains',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'idle' },
      { atMs: 0, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 100, do: 'connect', client: 'busy' },
      { atMs: 100, do: 'request', client: 'busy', serviceMs: 800 },
      { atMs: 350, do: 'signal', signal: 'TERM' },
      { atMs: 600, do: 'request', client: 'idle', serviceMs: 10 },
      // Both clients give up before the graceful deadline (see the note above).
      { atMs: 2000, do: 'close', client: 'idle' },
      { atMs: 2000, do: 'close', client: 'busy' },
    ],
  },
  {
    name: 'term-then-int',
    description: 'TERM with a slow request in flight, then INT: where the stop escalates (gunicorn 24+, ours) the request is cut; gunicorn ≤ 23 lets it complete',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'slow' },
      { atMs: 0, do: 'request', client: 'slow', serviceMs: 2500 },
      { atMs: 250, do: 'signal', signal: 'TERM' },
      { atMs: 600, do: 'signal', signal: 'INT' },
    ],
  },
  {
    name: 'stopped-worker-escalation',
    description: 'TERM, then INT, to a server whose worker is SIGSTOPped: a deadline KILLs it — 2 s after the INT where the stop escalates, the graceful one where it does not (gunicorn ≤ 23)',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'idle' },
      { atMs: 0, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 100, do: 'signal-worker', worker: 0, signal: 'STOP' },
      { atMs: 300, do: 'signal', signal: 'TERM' },
      { atMs: 600, do: 'signal', signal: 'INT' },
    ],
  },
  {
    name: 'killed-worker',
    description: 'SIGKILL to the worker with an idle connection and a request in flight; its replacement serves the next client',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'idle' },
      { atMs: 0, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 100, do: 'connect', client: 'busy' },
      { atMs: 100, do: 'request', client: 'busy', serviceMs: 2000 },
      { atMs: 350, do: 'signal-worker', worker: 0, signal: 'KILL' },
      { atMs: 1300, do: 'connect', client: 'next' },
      { atMs: 1300, do: 'request', client: 'next', serviceMs: 10 },
      { atMs: 1600, do: 'signal', signal: 'TERM' },
      { atMs: 4000, do: 'close', client: 'next' },
    ],
  },
  {
    name: 'heartbeat-timeout',
    description: 'a SIGSTOPped worker: the watchdog sends ABRT, then KILL, and a replacement serves the next client',
    server: { ...BASE, timeoutMs: 1000 },
    steps: [
      { atMs: 0, do: 'connect', client: 'first' },
      { atMs: 0, do: 'request', client: 'first', serviceMs: 10 },
      { atMs: 200, do: 'signal-worker', worker: 0, signal: 'STOP' },
      { atMs: 3000, do: 'connect', client: 'next' },
      { atMs: 3000, do: 'request', client: 'next', serviceMs: 10 },
      // Closed before the TERM, so no drain reaches the deadline: there the arbiter's KILL and a
      // gthread-24 worker's own graceful timeout fall due together, and which comes first is the
      // scheduler's choice, not the policy's (both replay; the lifecycles differ).
      { atMs: 3200, do: 'close', client: 'next' },
      { atMs: 3300, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'header-timeout',
    description: 'a client that sends half a request head is given up on at the header timeout; another is served meanwhile',
    server: { ...BASE, headerTimeoutMs: 400 },
    steps: [
      { atMs: 0, do: 'connect', client: 'slowloris' },
      { atMs: 0, do: 'partial', client: 'slowloris' },
      { atMs: 100, do: 'connect', client: 'fast' },
      { atMs: 100, do: 'request', client: 'fast', serviceMs: 10 },
      // Closed before the TERM, as in heartbeat-timeout: an idle connection kept to the deadline makes the
      // arbiter's KILL and a gthread-24 worker's own graceful timeout fall due together (a scheduler's tie).
      { atMs: 1100, do: 'close', client: 'fast' },
      { atMs: 1200, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'hup-reload',
    description: 'HUP with an idle connection and a request in flight: a new worker takes the next client while the old one drains',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'idle' },
      { atMs: 0, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 100, do: 'connect', client: 'busy' },
      { atMs: 100, do: 'request', client: 'busy', serviceMs: 900 },
      { atMs: 350, do: 'signal', signal: 'HUP' },
      { atMs: 700, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 1500, do: 'connect', client: 'next' },
      { atMs: 1500, do: 'request', client: 'next', serviceMs: 10 },
      { atMs: 1800, do: 'signal', signal: 'TERM' },
      { atMs: 4200, do: 'close', client: 'next' },
    ],
  },
  {
    name: 'max-requests',
    description: 'the second request reaches max-requests: its response closes, the worker recycles, and its replacement serves the next client',
    server: { ...BASE, maxRequests: 2 },
    steps: [
      { atMs: 0, do: 'connect', client: 'a' },
      { atMs: 0, do: 'request', client: 'a', serviceMs: 10 },
      { atMs: 200, do: 'request', client: 'a', serviceMs: 10 },
      { atMs: 1000, do: 'connect', client: 'b' },
      { atMs: 1000, do: 'request', client: 'b', serviceMs: 10 },
      { atMs: 1300, do: 'signal', signal: 'TERM' },
      { atMs: 3700, do: 'close', client: 'b' },
    ],
  },
  {
    name: 'ttin-ttou',
    description: 'TTIN adds a worker, TTOU retires the oldest while it holds an idle keep-alive connection',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'idle' },
      { atMs: 0, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 200, do: 'signal', signal: 'TTIN' },
      { atMs: 900, do: 'signal', signal: 'TTOU' },
      { atMs: 1300, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 2200, do: 'signal', signal: 'TERM' },
      { atMs: 4600, do: 'close', client: 'idle' },
    ],
  },
  {
    name: 'waiting-for-a-thread',
    description:
      "one thread, held by a slow request: another request waits for it when TERM comes (kept, or orphaned, by the policy); a client that never sends waits in the accept queue where the worker takes one connection at a time (sync), reset when the last listener copy closes",
    server: { ...BASE, threads: 1 },
    steps: [
      { atMs: 0, do: 'connect', client: 'slow' },
      { atMs: 0, do: 'request', client: 'slow', serviceMs: 1500 },
      { atMs: 100, do: 'connect', client: 'second' },
      // Long enough that the slow client's close of its answered connection comes first on a loaded
      // machine too: with 10 ms, a test client slow to read and close let the server end the second
      // request first, and the two platforms' worker events differed in order (a flake, not a finding).
      { atMs: 100, do: 'request', client: 'second', serviceMs: 200 },
      { atMs: 100, do: 'connect', client: 'silent' },
      { atMs: 300, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'waiting-for-a-thread-int',
    description: "one thread, held by a slow request, and a request waiting for it: INT, the fast stop, aborts both — except where the pool runs what it was given (gthread's ThreadPoolExecutor), which answers both, the second with close",
    server: { ...BASE, threads: 1 },
    steps: [
      { atMs: 0, do: 'connect', client: 'slow' },
      { atMs: 0, do: 'request', client: 'slow', serviceMs: 1500 },
      { atMs: 100, do: 'connect', client: 'second' },
      { atMs: 100, do: 'request', client: 'second', serviceMs: 10 },
      { atMs: 300, do: 'signal', signal: 'INT' },
    ],
  },
  {
    name: 'fast-stop-of-a-stopped-worker',
    description: "INT to a server whose worker is SIGSTOPped, then TERM, which a fast stop ignores: the fast stop's deadline KILLs the worker",
    server: { ...BASE, gracefulTimeoutMs: 2000 },
    steps: [
      { atMs: 0, do: 'connect', client: 'idle' },
      { atMs: 0, do: 'request', client: 'idle', serviceMs: 10 },
      { atMs: 100, do: 'signal-worker', worker: 0, signal: 'STOP' },
      { atMs: 300, do: 'signal', signal: 'INT' },
      { atMs: 600, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'half-close-while-served',
    description:
      'two clients half-close (FIN) after their request and read on — one while its request is served, one while it waits for the one thread: each gets its response, and the server closes once that is written, as nothing more can come',
    server: { ...BASE, threads: 1 },
    steps: [
      { atMs: 0, do: 'connect', client: 'served' },
      { atMs: 0, do: 'request', client: 'served', serviceMs: 400 },
      { atMs: 100, do: 'connect', client: 'waiting' },
      { atMs: 100, do: 'request', client: 'waiting', serviceMs: 10 },
      { atMs: 200, do: 'half-close', client: 'served' },
      { atMs: 200, do: 'half-close', client: 'waiting' },
      { atMs: 1000, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'body-cut-short',
    description:
      "requests whose body stops short, while a slow request holds the one thread past the header timer: one client half-closes mid-body (the rest can never come: given up on at once, with FIN), one sends nothing more (given up on at the header timer), one sends the rest (served once the thread is free) — and a whole request waiting for the thread all that time is not timed out",
    server: { ...BASE, threads: 1, headerTimeoutMs: 1200 },
    steps: [
      { atMs: 0, do: 'connect', client: 'slow' },
      { atMs: 0, do: 'request', client: 'slow', serviceMs: 2000 },
      { atMs: 100, do: 'connect', client: 'queued' },
      { atMs: 100, do: 'request', client: 'queued', serviceMs: 10 },
      { atMs: 200, do: 'connect', client: 'cut' },
      { atMs: 200, do: 'partial-body', client: 'cut', serviceMs: 10 },
      { atMs: 200, do: 'connect', client: 'stalled' },
      { atMs: 200, do: 'partial-body', client: 'stalled', serviceMs: 10 },
      { atMs: 200, do: 'connect', client: 'completed' },
      { atMs: 200, do: 'partial-body', client: 'completed', serviceMs: 10 },
      { atMs: 450, do: 'half-close', client: 'cut' },
      { atMs: 700, do: 'rest', client: 'completed' },
      { atMs: 2600, do: 'signal', signal: 'TERM' },
      // Both served clients give up before the graceful deadline (see the note above).
      { atMs: 4000, do: 'close', client: 'queued' },
      { atMs: 4000, do: 'close', client: 'completed' },
    ],
  },
  {
    name: 'connect-during-term',
    description:
      'a new connection, with its request, 0.3 s into a graceful stop while a slow request is in flight: refused where the listener closed at the drain; accepted by the last loop turn of gthread 20.x and answered with close; queued where the listener stays open to the exit (sync), and reset there',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'busy' },
      { atMs: 0, do: 'request', client: 'busy', serviceMs: 1200 },
      { atMs: 300, do: 'signal', signal: 'TERM' },
      { atMs: 600, do: 'connect', client: 'late' },
      { atMs: 600, do: 'request', client: 'late', serviceMs: 10 },
      // Both clients give up before the graceful deadline (see the note above).
      { atMs: 2000, do: 'close', client: 'busy' },
      { atMs: 2000, do: 'close', client: 'late' },
    ],
  },
  {
    name: 'pipelined-behind-close',
    description:
      'a request pipelined behind a slow one when TERM comes: a policy that closes after the draining response never processes it (a lingering close discards it, a plain one resets it, RFC 9112 §9.6); safe-drain answers it, and closes after',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'piped' },
      { atMs: 0, do: 'request', client: 'piped', serviceMs: 600 },
      { atMs: 200, do: 'request', client: 'piped', serviceMs: 10 },
      { atMs: 400, do: 'signal', signal: 'TERM' },
      // Where the pipelined request is orphaned (never-close-idle), the client gives up before the deadline.
      { atMs: 2000, do: 'close', client: 'piped' },
    ],
  },
  {
    name: 'body-too-large',
    description:
      "a POST whose body is larger than the server takes: answered from its head with 413 and Connection: close while the body keeps coming, unread — a close then resets the connection after the response (RFC 9112 §9.6: the reset may destroy the 413 before the client reads it), a lingering close discards the body and ends with FIN; the next client is served",
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'big' },
      { atMs: 0, do: 'too-large', client: 'big' },
      { atMs: 300, do: 'connect', client: 'next' },
      { atMs: 300, do: 'request', client: 'next', serviceMs: 10 },
      { atMs: 600, do: 'close', client: 'next' },
      { atMs: 800, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'fast-stop-while-booting',
    description:
      'HUP to an idle server, then a fast stop (INT) while the new worker still loads its app (1.5 s): the old worker has drained at once (gunicorn\'s reload) or still serves, its replacement not ready (safe-drain\'s), and takes the QUIT; the booting one takes the QUIT and leaves',
    server: BASE,
    appLoadMs: 1500,
    steps: [
      { atMs: 200, do: 'signal', signal: 'HUP' },
      { atMs: 1000, do: 'signal', signal: 'INT' },
    ],
  },
  {
    name: 'faults-while-booting',
    description:
      'HUP with a request in flight; the new worker, still loading its app (3 s), dies of a fault, and its replacement, loading too, is SIGKILLed: each is replaced (a worker ended by a signal as it boots is not one that cannot boot), and a graceful stop ends the last one as it boots (it takes the TERM and leaves at once, without accepting)',
    server: BASE,
    appLoadMs: 3000,
    steps: [
      { atMs: 0, do: 'connect', client: 'busy' },
      { atMs: 0, do: 'request', client: 'busy', serviceMs: 800 },
      { atMs: 200, do: 'signal', signal: 'HUP' },
      { atMs: 1000, do: 'close', client: 'busy' },
      // The newest of the live workers (the old one may still hold its client), well into its boot: a new
      // process has become a worker by then (it shows as one from outside), and is still loading.
      { atMs: 1500, do: 'signal-worker', worker: 1, signal: 'SEGV' },
      { atMs: 2500, do: 'signal-worker', worker: 1, signal: 'KILL' },
      { atMs: 3500, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'quit-while-draining',
    description:
      "an operator's TERM, then QUIT, to the worker itself (not the arbiter) with a 4 s request in flight, and a fault 3.5 s in: where the pool runs what it was given (gthread) the exiting worker outlives its own graceful deadline and dies of the fault with the request; elsewhere QUIT drops the request and the arbiter replaces the worker",
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'busy' },
      { atMs: 0, do: 'request', client: 'busy', serviceMs: 4000 },
      { atMs: 200, do: 'signal-worker', worker: 0, signal: 'TERM' },
      { atMs: 400, do: 'signal-worker', worker: 0, signal: 'QUIT' },
      { atMs: 3500, do: 'signal-worker', worker: 0, signal: 'SEGV' },
      { atMs: 4500, do: 'signal', signal: 'TERM' },
    ],
  },
  {
    name: 'kill-while-the-pool-runs',
    description:
      'a fast stop (INT) with a request in flight, then a TERM and a KILL to the worker itself: where the pool runs what it was given (gthread) the exiting worker ignores the TERM and dies of the KILL with the request; elsewhere it is gone before either',
    server: BASE,
    steps: [
      { atMs: 0, do: 'connect', client: 'busy' },
      { atMs: 0, do: 'request', client: 'busy', serviceMs: 1500 },
      { atMs: 200, do: 'signal', signal: 'INT' },
      { atMs: 500, do: 'signal-worker', worker: 0, signal: 'TERM' },
      { atMs: 800, do: 'signal-worker', worker: 0, signal: 'KILL' },
    ],
  },
];

export function getScript(name: string): Script {
  const script = SCRIPTS.find((s) => s.name === name);
  if (!script) throw new Error(`unknown script "${name}"; expected one of: ${SCRIPTS.map((s) => s.name).join(', ')}`);
  return script;
}
