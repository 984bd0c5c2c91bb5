/**
 * `quiesce conform` against real servers as black boxes: our own (the
 * inference must find the policy it runs), and Debian's gunicorn 20.1 (sync
 * and gthread), whose report is conformance/README.md's. The differences
 * from the model that gunicorn shows are pinned here, each with its cause,
 * so that a model change that explains them shows up as a failing pin.
 */
import { existsSync } from 'node:fs';
import { describe, it } from 'vitest';
import { runCli } from '../helpers.ts';
import { conform, type ConformReport } from '../../conformance/blackbox.ts';
import { processGroupOrphaned, QUIESCE_BIN } from '../../conformance/process.ts';
import { replay } from '../../model/replay.ts';

const APPS = new URL('../../conformance/apps', import.meta.url).pathname;
const GUNICORN = ['/usr/bin/gunicorn', '/usr/bin/gunicorn3'].find((p) => existsSync(p));

const cli = runCli;

/**
 * Scripts aimed at a worker's own lifecycle (coverage of its chart: a signal as it boots, late events
 * as it exits) whose clients see the same under most policies: the request answered at TERM, or lost
 * at a fault — they tell no policy from the next, and the policy inference does not lean on them.
 */
const AIMED_AT_THE_WORKER = ['fast-stop-while-booting', 'faults-while-booting', 'quit-while-draining', 'kill-while-the-pool-runs'];

const explained = (report: ConformReport) => Object.fromEntries(report.scripts.filter((s) => !s.skipped).map((s) => [s.script, s.explainedBy]));

/** A failed pin's message: the script, what its clients saw, and why the policy did not explain it. */
function why(report: ConformReport, script: string, policy: string): string {
  const verdict = report.scripts.find((s) => s.script === script)!;
  const seen = Object.entries(verdict.observed).map(([client, steps]) => `${client}: ${steps.join(' → ')}`);
  return `${script} (${[...seen, `${policy}: ${verdict.differences[policy] ?? 'explained'}`].join('; ')})`;
}

describe('quiesce conform', () => {
  // Two tests at a time, then four, each on ports of its own: a conformance run is mostly its scripts'
  // waiting (gunicorn sync: 15 s of CPU in 63 s). Gunicorn's scripts hold it to windows of 100 ms, so its
  // two runs share the machine only with each other. (Before the runner waited for a booted worker,
  // `readinessFor`, all six at once failed stopped-worker-escalation for both: its STOP came before
  // the first response.)
  describe.concurrent("Debian's gunicorn 20.1", () => {
    if (!GUNICORN) throw new Error('gunicorn not found: apt-get install gunicorn (.ci/run installs it)');
    const command = (worker: string, bind: string, extra: string) =>
      `${GUNICORN} --chdir ${APPS} sleep_app:app -k ${worker} --bind ${bind} --workers {workers} ${extra} --keep-alive {keepalive} --graceful-timeout {graceful-timeout} --timeout {timeout} --max-requests {max-requests}`;

    it('sync ⇒ gunicorn-sync: the only policy that explains every script', async ({ expect }) => {
      // No --threads: gunicorn runs gthread instead of sync when threads > 1.
      const report = await conform({ command: command('sync', '127.0.0.1:18432', ''), bind: '127.0.0.1:18432' });
      const byScript = explained(report);
      expect(report.scripts.find((s) => s.script === 'header-timeout')!.skipped).toBe('the command takes no {header-timeout}');
      // term-then-int among them: gunicorn ≤ 23 does not escalate INT during a graceful stop, and neither
      // does the policy (fastStopEscalates: false); the slow request completes.
      // Every script but one singles sync out by itself; INT with one request in flight and one queued
      // (waiting-for-a-thread-int) is aborted alike by every policy whose pool does not run what it was
      // given — gthread's does, and answers both — so it tells sync from the gthread family only.
      for (const [script, policies] of Object.entries(byScript)) {
        // A request pipelined behind a slow one at TERM: sync answers the first with close (it never keeps
        // alive) and closes with the second unread — an RST, as every non-lingering policy that closes
        // after a draining response; gthread answers the first keep-alive (its header is fixed before the TERM).
        if (['waiting-for-a-thread-int', 'pipelined-behind-close'].includes(script)) {
          expect(policies, script).toContain('gunicorn-sync');
          for (const p of ['gunicorn-gthread', 'gunicorn-gthread-21', 'gunicorn-gthread-24']) expect(policies, script).not.toContain(p);
        } else if (AIMED_AT_THE_WORKER.includes(script)) expect(policies, why(report, script, 'gunicorn-sync')).toContain('gunicorn-sync');
        else expect(policies, why(report, script, 'gunicorn-sync')).toEqual(['gunicorn-sync']);
      }
      expect(report.policies).toEqual(['gunicorn-sync']);
    }, 300_000);

    it('gthread ⇒ gunicorn-gthread: the only policy that explains every script, its last loop turn included', async ({ expect }) => {
      const report = await conform({ command: command('gthread', '127.0.0.1:18435', '--threads {threads}'), bind: '127.0.0.1:18435' });
      const byScript = explained(report);
      for (const [script, policies] of Object.entries(byScript)) expect(policies, why(report, script, 'gunicorn-gthread')).toContain('gunicorn-gthread');
      expect(report.policies).toEqual(['gunicorn-gthread']);
      // The last loop turn, seen from outside: after alive = False, gthread 20.x finishes the select(1.0) it
      // sits in and serves what that poll returns with, with Connection: close — the idle client's request
      // 0.25 s after TERM (term-idle-and-in-flight, hup-reload), and in max-requests client b, connecting
      // 0.8 s after the recycle began, accepted by that last turn. No other policy has that turn.
      const view = (script: string, client: number) => report.scripts.find((s) => s.script === script)!.observed[`client/${client + 1}`]!.join(' → ');
      expect(view('term-idle-and-in-flight', 0)).toBe('send idle-1 → response idle-1 keep-alive → send idle-2 → response idle-2 close → eof');
      expect(view('hup-reload', 0)).toBe('send idle-1 → response idle-1 keep-alive → send idle-2 → response idle-2 close → eof');
      expect(view('max-requests', 1)).toBe('send b-1 → response b-1 close → eof');
      // A new connection 0.3 s into the stop: that same last turn accepts it, and answers it with close.
      expect(view('connect-during-term', 1)).toBe('send late-1 → response late-1 close → eof');
      expect(byScript['connect-during-term']).toEqual(['gunicorn-gthread']);
      expect(byScript['max-requests']).toEqual(['gunicorn-gthread']);
      // INT does not escalate the graceful stop in 20.1, as the policy says (fastStopEscalates: false).
      expect(byScript['term-then-int']).toContain('gunicorn-gthread');
      // Policies only the search of every interleaving found come with the interleaving: a run of that policy's machines.
      const searched = report.scripts.filter((s) => s.explainedBySearch.length > 0);
      expect(searched.length).toBeGreaterThan(0);
      for (const s of searched) {
        for (const policy of s.explainedBySearch) {
          const trace = s.explanations[policy]!;
          expect(trace.header.policy).toBe(policy);
          const verdict = replay(trace);
          expect(verdict.ok ? 'conforms' : verdict.violation.message, `${s.script} under ${policy}`).toBe('conforms');
        }
      }
    }, 300_000);
  });

  // Not .concurrent: vitest runs adjacent concurrent suites together. Its tests are, after gunicorn's.
  describe("our own server, nginx, and what the runner refuses", () => {
    it.concurrent('infers the policy of our own server from its clients alone', async ({ expect }) => {
      const bind = '127.0.0.1:18431';
      // Four scripts that single safe-drain out between them (differential.test.ts runs every script on our
      // server already, judged against its policy; here the question is only whether the clients alone tell).
      const report = await conform({
        scripts: ['term-idle-and-in-flight', 'max-requests', 'pipelined-behind-close', 'body-cut-short'],
        command: `${process.execPath} ${QUIESCE_BIN} serve --bind ${bind} --policy safe-drain --app sleep --workers {workers} --threads {threads} --keepalive {keepalive} --graceful-timeout {graceful-timeout} --timeout {timeout} --max-requests {max-requests} --header-timeout {header-timeout} --idle-grace {idle-grace} --linger {linger}`,
        bind,
        workerPattern: /quiesce: worker/,
      });
      expect(report.scripts.filter((s) => s.skipped)).toEqual([]);
      expect(report.scripts.map((s) => s.script)).toEqual(['term-idle-and-in-flight', 'max-requests', 'body-cut-short', 'pipelined-behind-close']);
      expect(report.policies).toContain('safe-drain');
      // The scripts tell safe-drain from the gunicorn policies and from abort-idle and never-close-idle.
      for (const p of ['gunicorn-sync', 'gunicorn-gthread', 'gunicorn-gthread-21', 'gunicorn-gthread-24', 'abort-idle', 'never-close-idle']) expect(report.policies).not.toContain(p);
    }, 300_000);

    it.concurrent("nginx 1.22 ⇒ abort-idle: a graceful stop (QUIT) or a reload closes idle keep-alive connections at once and answers what is in flight with Connection: close", async ({ expect }) => {
      const bind = '127.0.0.1:18433';
      // The scripts this test holds nginx to, and those it must skip (skipped without running); the whole
      // report is `npm run conformance -- --server "conformance/apps/nginx.sh …" --stop-signal QUIT`.
      const SKIPPED = ['heartbeat-timeout', 'header-timeout', 'max-requests', 'body-cut-short'];
      const report = await conform({
        command: `${APPS}/nginx.sh ${bind} {workers} {keepalive} {graceful-timeout} {max-body}`,
        bind,
        stopSignal: 'QUIT',
        workerPattern: /nginx: worker/,
        scripts: ['term-idle-and-in-flight', 'hup-reload', 'term-then-int', 'connect-during-term', 'half-close-while-served', 'pipelined-behind-close', 'ttin-ttou', 'body-too-large', ...SKIPPED],
      });
      const byScript = explained(report);
      expect(byScript['term-idle-and-in-flight']).toEqual(['abort-idle']);
      expect(byScript['hup-reload']).toEqual(['abort-idle']);
      // INT is nginx's fast stop: the slow request is cut, as under every policy whose stop escalates.
      expect(byScript['term-then-int']).toContain('abort-idle');
      expect(byScript['term-then-int']).not.toContain('gunicorn-gthread');
      // A graceful stop closes nginx's listening sockets at once: a connect 0.3 s in is refused.
      expect(report.scripts.find((s) => s.script === 'connect-during-term')!.observed['client/2']).toEqual(['fail refused']);
      // A client that half-closes while nginx proxies its request is taken to have gone away
      // (proxy_ignore_client_abort off): nginx drops the request and closes, which no policy does —
      // the model's servers answer a half-closed client (gunicorn does, measured).
      expect(byScript['half-close-while-served']).toEqual([]);
      expect(report.scripts.find((s) => s.script === 'half-close-while-served')!.observed['client/1']).toEqual(['send served-1', 'fail empty-reply served-1']);
      // A request pipelined behind one in flight at QUIT: nginx answers the first with close and closes
      // with lingering (lingering_close on): the second is discarded, an empty reply — no base policy lingers
      // but safe-drain, which answers both; abort-idle with a lingering close explains it (below).
      expect(byScript['pipelined-behind-close']).toEqual([]);
      expect(report.scripts.find((s) => s.script === 'pipelined-behind-close')!.observed['client/1']).toEqual(['send piped-1', 'send piped-2', 'response piped-1 close', 'fail empty-reply piped-2']);
      // A body past client_max_body_size: nginx answers 413 with close from the head and closes with
      // lingering, discarding the body — a FIN, not the RST of a plain close: of the base policies only
      // safe-drain lingers; abort-idle with a lingering close explains it too (below).
      expect(byScript['body-too-large']).toEqual(['safe-drain']);
      expect(report.scripts.find((s) => s.script === 'body-too-large')!.observed['client/1']).toEqual(['send big-1', 'response big-1 close', 'eof']);
      // nginx has no handler for TTIN or TTOU. Where their default action applies, it stops the process: the
      // TTIN freezes nginx's master (state T), the QUIT waits in its pending signals, and only the worker's
      // keep-alive timeout ends the idle connection. In an orphaned process group (a service under systemd,
      // a suite started in a session of its own) the kernel discards them, and the QUIT is taken. Either
      // way the clients see the same, which of the policies only serve-until-deadline explains.
      expect(byScript['ttin-ttou']).toEqual(['serve-until-deadline']);
      // A stopped process cannot exit: the runner ends it at once and says so (it used to wait out its 20 s
      // deadline). nginx runs in this process's group: frozen only where the group is not orphaned.
      expect(report.scripts.find((s) => s.script === 'ttin-ttou')!.note).toBe(
        processGroupOrphaned()
          ? null
          : "the server's process was stopped (state T) after the script's last step: TTIN and TTOU stop a process that has no handler for them; a stopped process cannot exit, so the run ended there",
      );
      expect(report.scripts.filter((s) => s.note !== null && s.script !== 'ttin-ttou')).toEqual([]);
      // nginx has no worker timeout, header timeout or max-requests to fill in: those scripts are skipped, and say why.
      const skipped = Object.fromEntries(report.scripts.filter((s) => s.skipped).map((s) => [s.script, s.skipped]));
      expect(skipped).toEqual({
        'heartbeat-timeout': 'the command takes no {timeout}',
        'header-timeout': 'the command takes no {header-timeout}',
        'max-requests': 'the command takes no {max-requests}',
        'body-cut-short': 'the command takes no {header-timeout}',
      });
      const lingering = await conform({
        command: `${APPS}/nginx.sh ${bind} {workers} {keepalive} {graceful-timeout} {max-body}`,
        bind,
        stopSignal: 'QUIT',
        workerPattern: /nginx: worker/,
        scripts: ['pipelined-behind-close', 'term-idle-and-in-flight', 'body-too-large'],
        policies: ['abort-idle', 'abort-idle+lingering-close'],
      });
      expect(explained(lingering)).toEqual({
        'pipelined-behind-close': ['abort-idle+lingering-close'],
        'term-idle-and-in-flight': ['abort-idle', 'abort-idle+lingering-close'],
        'body-too-large': ['abort-idle+lingering-close'],
      });
    }, 300_000);

    it.concurrent('a step aimed at a worker that finds none is not judged, and the report says why: the worker pattern matched nothing', async ({ expect }) => {
      const bind = '127.0.0.1:18434';
      const report = await conform({
        scripts: ['stopped-worker-escalation'],
        command: `${process.execPath} ${QUIESCE_BIN} serve --bind ${bind} --policy safe-drain --app sleep --workers {workers} --threads {threads} --keepalive {keepalive} --graceful-timeout {graceful-timeout} --timeout {timeout} --max-requests {max-requests}`,
        bind,
        // Not how quiesce serve names its workers (`quiesce: worker`): the runner finds no worker to STOP.
        workerPattern: /no such worker/,
      });
      const [verdict] = report.scripts;
      expect(verdict!.skipped).toBe('not judged: found no worker process to signal (at 100 ms, STOP to worker 0): does --worker-pattern no such worker match its workers?');
      expect(verdict!.explainedBy).toEqual([]);
      expect(report.policies).toEqual([]);
    }, 60_000);

    it.concurrent('bad input: one line naming the flag, exit 2', async ({ expect }) => {
      for (const [argv, message] of [
        [['conform', '--server', 'x', '--bind', 'nowhere'], /--bind: expected host:port or unix:\/path, got "nowhere"/],
        [['conform', '--server', 'x', '--bind', '127.0.0.1:1', '--script', 'nope'], /--script: unknown name "nope"; expected one of: term-idle-and-in-flight/],
        [['conform', '--server', 'x', '--bind', '127.0.0.1:1', '--stop-signal', 'SIGQUIT'], /--stop-signal: expected a signal name like TERM, QUIT or HUP \(without SIG\), got "SIGQUIT"/],
        [['conform', '--server', 'x', '--bind', '127.0.0.1:1', '--worker-pattern', '('], /--worker-pattern: not a regular expression/],
        [['conform', '--bind', '127.0.0.1:1'], /--bind says where a --server command listens: give --server too/],
        [['conform', '--server', 'x'], /--bind: required with --server/],
        [['conform', '--traces', '/tmp/x'], /--traces applies to a --server command, not to the suite on quiesce serve/],
        [['conform', '--policy', 'nope'], /--policy: unknown name "nope"; expected one of: gunicorn-sync/],
      ] as const) {
        const { code, err } = await cli(...argv);
        expect(code, argv.join(' ')).toBe(2);
        expect(err).toMatch(message);
      }
    });
  });
});
