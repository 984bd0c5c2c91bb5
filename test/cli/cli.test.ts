import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers.ts';
import { parseTrace } from '../../model/trace.ts';
import { replay } from '../../model/replay.ts';

const cli = runCli;

describe('bad input: one line naming the input, exit 2, no stack trace', () => {
  const cases: [string[], RegExp][] = [
    [['--bogus'], /unknown option '--bogus'/],
    [['simulate', '--scenario', 'nope'], /--scenario: unknown scenario "nope"; expected one of: keepalive-recycle, .*backlog-unix/],
    [['simulate', '--policy', 'yolo'], /unknown policy "yolo"; expected one of: gunicorn-sync/],
    [['simulate', '--scenario', 'keepalive-recycle', '--workers', '-2'], /--workers: expected an integer from 1 to 512 \(one machine\), got "-2"/],
    [['simulate', '--scenario', 'keepalive-recycle', '--workers', 'four'], /--workers: expected an integer from 1 to 512 \(one machine\) in decimal digits, got "four"/],
    // Numbers JavaScript would read but a person does not mean: refused, as the same bound everywhere.
    [['simulate', '--scenario', 'keepalive-recycle', '--workers', '1e6'], /--workers: expected an integer from 1 to 512 \(one machine\) in decimal digits, got "1e6"/],
    [['simulate', '--scenario', 'keepalive-recycle', '--workers', '1000000'], /--workers: expected an integer from 1 to 512/],
    [['simulate', '--scenario', 'keepalive-recycle', '--graceful-timeout', '3000000'], /--graceful-timeout: expected a number from 0 to 2147483 \(the longest timer Node.js can hold, 24.8 days\), got "3000000"/],
    [['serve', '--graceful-timeout', '3000000'], /--graceful-timeout: expected a number from 0 to 2147483 \(the longest timer Node.js can hold, 24.8 days\), got "3000000"/],
    [['serve', '--workers', '3x'], /--workers: expected an integer from 1 to 512 \(one machine\) in decimal digits, got "3x"/],
    [['serve', '--workers', '0x10'], /--workers: expected an integer from 1 to 512 \(one machine\) in decimal digits, got "0x10"/],
    [['simulate', '--scenario', 'keepalive-recycle', '--keepalive', '2s'], /--keepalive: expected a number from 0 to 2147483 \(the longest timer Node.js can hold, 24.8 days\) in decimal digits, got "2s"/],
    [['simulate', '--scenario', 'keepalive-recycle', '--seed', '1.5'], /--seed: expected an integer/],
    [['simulate', '--scenario', 'keepalive-recycle', '--rate', '10'], /--rate and --duration apply to the proxy scenarios/],
    [['simulate', '--scenario', 'backlog-unix', '--concurrency', '3'], /--requests and --concurrency apply to the ab scenarios/],
    [['simulate', '--scenario', 'keepalive-recycle', '--requests', '5', '--concurrency', '10'], /--concurrency 10 exceeds --requests 5/],
    [['simulate', '--json'], /--json and --trace need one run/],
    [['check', '--runs', '0'], /--runs: expected an integer from 1 to 10000000, got "0"/],
    [['serve', '--bogus'], /unknown option '--bogus'/],
    [['serve', '--workers', 'abc'], /--workers: expected an integer from 1 to 512 \(one machine\) in decimal digits, got "abc"/],
    [['serve', '--workers', '0'], /--workers: expected an integer from 1 to 512 \(one machine\), got "0"/],
    [['serve', '--keepalive', '-1'], /--keepalive: expected a number from 0 to 2147483 \(the longest timer Node.js can hold, 24.8 days\), got "-1"/],
    [['serve', '--policy', 'nope'], /policy: unknown policy "nope"; expected one of: gunicorn-sync/],
    [['serve', '--bind', 'localhost'], /bind: expected HOST:PORT, \[IPV6\]:PORT or unix:PATH, got "localhost"/],
    [['serve', '--bind', '127.0.0.1:70000'], /bind: port must be 0–65535, got 70000/],
    [['serve', '--app', './no-such-handler.js'], /app: ".\/no-such-handler.js" is neither a built-in app \(hello, sleep, echo, counter\) nor an existing module file/],
    [['serve', '--config', '/no/such/quiesce.json'], /cannot read config file "\/no\/such\/quiesce.json": ENOENT/],
    [['serve', '--max-requests-jitter', '5'], /max-requests-jitter needs max-requests > 0/],
    [['serve', '--trace', '/no/such/dir/trace.jsonl'], /trace: cannot write "\/no\/such\/dir\/trace.jsonl": ENOENT/],
    [['serve', '--trace-events', 'lifecycle'], /trace-events lifecycle needs trace \(the file to write\)/],
    [['serve', '--trace', 't.jsonl', '--trace-events', 'some'], /--trace-events: expected one of all, lifecycle, got "some"/],
    [['check', '--property', 'fast'], /--property: unknown property "fast"; expected one of: processed-requests-answered/],
    [['check', '--world', '{}'], /--world replays one counterexample: give --policy and --property too/],
    [['check', '--policy', 'safe-drain', '--property', 'exit-by-deadline', '--world', '{"workers":'], /--world: not JSON .*; expected the world a counterexample printed/],
    [['check', '--policy', 'safe-drain', '--property', 'exit-by-deadline', '--world', '{"workers":1}'], /--world: field "threads": .*expected the world a counterexample printed/],
    [['replay', '/nonexistent/trace.jsonl'], /cannot read trace file "\/nonexistent\/trace.jsonl": ENOENT/],
    [['simulate', '--scenario', 'keepalive-recycle', '--profile', 'gunicorn-99'], /--profile: unknown profile "gunicorn-99"; expected one of: gunicorn-20.1-gthread, gunicorn-20.1-sync, quiesce-serve/],
    [['simulate', '--scenario', 'keepalive-recycle', '--profile', '/no/such/profile.json'], /--profile: \/no\/such\/profile.json: cannot read it \(ENOENT\)/],
    [['simulate', '--scenario', 'keepalive-recycle', '--profile', './package.json'], /--profile: .\/package.json: not a server profile: /],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', './tsconfig.json'], /--profile: .\/tsconfig.json: not a server profile: /],
    [['calibrate', '--bind', '127.0.0.1:1', '--profile', 'quiesce-serve'], /--server: required/],
    [['calibrate', '--server', 'x', '--profile', 'quiesce-serve'], /--bind: required/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1'], /--profile: required; one of: gunicorn-20.1-gthread/],
    [['calibrate', '--server', 'x', '--bind', 'unix:/tmp/s.sock', '--profile', 'quiesce-serve'], /--bind: calibrate reads connections from the kernel's TCP table: expected host:port, got "unix:\/tmp\/s.sock"/],
    [['calibrate', '--server', 'x', '--bind', 'localhost', '--profile', 'quiesce-serve'], /--bind: expected host:port or unix:\/path, got "localhost"/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'quiesce-serve'], /--policy: required: profile quiesce-serve takes its policy as a flag/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'gunicorn-20.1-sync', '--policy', 'nope'], /unknown policy "nope"/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'gunicorn-20.1-sync', '--runs', '0'], /--runs: expected an integer from 1 to 100/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'gunicorn-20.1-sync', '--tolerance', 'ten'], /--tolerance: expected a number from 0 to 10/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'gunicorn-20.1-sync', '--requests', '5', '--concurrency', '10'], /--concurrency 10 exceeds --requests 5/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'gunicorn-20.1-sync', '--signal', 'HUP500'], /--signal: expected SIGNAL@MS .* got "HUP500"/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'gunicorn-20.1-sync', '--signal', 'KILL@5'], /--signal: expected SIGNAL@MS with SIGNAL one of TERM, HUP/],
    [['calibrate', '--server', 'x', '--bind', '127.0.0.1:1', '--profile', 'gunicorn-20.1-sync', '--without-refused'], /--without-refused needs --capture/],
    [['calibrate-backlog'], /--server: required/],
    [['calibrate-backlog', '--server', 'x {bind}'], /--server: the command must take \{backlog\}/],
    [['calibrate-backlog', '--server', 'x {backlog}'], /--server: the command must take \{bind\}/],
    [['calibrate-backlog', '--server', 'x {bind} {backlog}', '--backlog', '0'], /--backlog: expected an integer from 1 to 65535/],
    [['calibrate-backlog', '--server', 'x {bind} {backlog}', '--spread', '200'], /--spread 200 must be shorter than --service-ms 150/],
    [['calibrate-backlog', '--server', 'x {bind} {backlog}', '--policy', 'nope'], /unknown policy "nope"/],
    [['calibrate-backlog', '--server', 'x {bind} {backlog}', '--requests', 'many'], /--requests: expected an integer from 1 to 10000 in decimal digits, got "many"/],
    [['calibrate-backlog', '--server', "sh -c 'exit 3' {bind} {backlog}", '--runs', '1'], /--server: the server exited \(3\) before it accepted connections at unix:/],
  ];
  it('calibrate and conform: an address something else accepts on, and a server command that never comes up', async () => {
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    // The runner would take the other server's answers for the command's: refused before anything runs.
    for (const argv of [
      ['calibrate', '--server', 'true', '--bind', `127.0.0.1:${port}`, '--profile', 'gunicorn-20.1-sync'],
      ['conform', '--server', 'true', '--bind', `127.0.0.1:${port}`, '--script', 'hup-reload'],
    ]) {
      const { code, err } = await cli(...argv);
      expect(code).toBe(2);
      expect(err).toBe(`quiesce: --bind: something already accepts connections at 127.0.0.1:${port}; stop it or choose another address\n`);
    }
    await new Promise<void>((resolve) => taken.close(() => resolve()));
    for (const argv of [
      ['calibrate', '--server', "sh -c 'echo no such app >&2; exit 3'", '--bind', `127.0.0.1:${port}`, '--profile', 'gunicorn-20.1-sync', '--runs', '1', '--seeds', '1'],
      ['conform', '--server', "sh -c 'echo no such app >&2; exit 3'", '--bind', `127.0.0.1:${port}`, '--script', 'hup-reload'],
    ]) {
      const { code, err } = await cli(...argv);
      expect(code).toBe(2);
      expect(err).toBe(`quiesce: --server: the server exited (3) before it accepted connections at 127.0.0.1:${port}; its last output:\nno such app\n`);
    }
  }, 60_000);

  it("profile:measure: an unknown profile, a bad port or worker count, --write off the calibration's worker count, an unknown flag — before anything runs", async () => {
    const { execFile } = await import('node:child_process');
    const script = new URL('../../conformance/measure-profile.ts', import.meta.url).pathname;
    const measure = (...argv: string[]) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', script, ...argv], (error, out, err) => resolve({ code: error ? (error.code as number) : 0, out, err }));
      });
    for (const [argv, message] of [
      [['nope'], /^profile:measure: unknown profile "nope"; expected one of: gunicorn-20.1-gthread, gunicorn-20.1-sync, quiesce-serve\n$/],
      [['gunicorn-20.1-sync', '--port', '0'], /^profile:measure: --port: expected a port from 1 to 65535, got "0"\n$/],
      [['gunicorn-20.1-sync', '--workers', 'x'], /^profile:measure: --workers: expected a whole number from 1 to 999, got "x"\n$/],
      [['gunicorn-20.1-sync', '--write', '--workers', '2'], /^profile:measure: --write: the shipped profiles are measured at the calibration's 4 workers/],
      [['gunicorn-20.1-sync', '--nope'], /^error: unknown option '--nope'\n$/],
      [[], /^error: missing required argument 'name'\n$/],
    ] as const) {
      const { code, out, err } = await measure(...argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(err, argv.join(' ')).toMatch(message);
      expect(out).toBe('');
    }
  }, 60_000);

  it('serve: an address already in use', async () => {
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    const { code, err } = await cli('serve', '--bind', `127.0.0.1:${port}`);
    taken.close();
    expect(code).toBe(2);
    expect(err).toMatch(new RegExp(`bind: cannot bind 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
  });

  it('serve: a config file with an unknown key or a bad value', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quiesce-config-'));
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ wokers: 2 }));
    writeFileSync(join(dir, 'b.json'), JSON.stringify({ 'graceful-timeout': 'soon' }));
    writeFileSync(join(dir, 'c.json'), '{ not json');
    writeFileSync(join(dir, 'd.json'), JSON.stringify({ workers: '3' }));
    expect((await cli('serve', '--config', join(dir, 'a.json'))).err).toMatch(/unknown option "wokers"; expected one of bind, workers/);
    expect((await cli('serve', '--config', join(dir, 'b.json'))).err).toMatch(/b\.json: graceful-timeout: expected a number from 0 to 2147483 .* as a JSON number, not a string, got "soon"/);
    // A flag is text, a config file is JSON: there a number is a JSON number, as "3x" is not a flag's.
    expect((await cli('serve', '--config', join(dir, 'd.json'))).err).toMatch(/d\.json: workers: expected an integer from 1 to 512 \(one machine\) as a JSON number, not a string, got "3"/);
    expect((await cli('serve', '--config', join(dir, 'c.json'))).err).toMatch(/c\.json" is not JSON/);
  });

  for (const [argv, message] of cases) {
    it(argv.join(' '), async () => {
      const { code, err } = await cli(...argv);
      expect(code).toBe(2);
      expect(err).toMatch(message);
      expect(err).not.toMatch(/\n\s+at /);
    });
  }

  it('`quiesce serve` started with its own command only (bin/quiesce.mjs → cli/serve-main.ts) answers bad input as the whole CLI does, and its help is the same', async () => {
    const { mainServe } = await import('../../cli/serve-main.ts');
    const alone = async (...argv: string[]) => {
      let out = '';
      let err = '';
      const code = await mainServe(argv, { out: (t) => void (out += t), err: (t) => void (err += t) });
      return { code, out, err };
    };
    const serveCases = cases.filter(([argv]) => argv[0] === 'serve');
    expect(serveCases.length).toBeGreaterThan(10);
    for (const [argv] of serveCases) expect(await alone(...argv), argv.join(' ')).toEqual(await cli(...argv));
    expect(await alone('serve', '--help')).toEqual(await cli('serve', '--help'));
  });

  it('a malformed trace names the file and the line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quiesce-'));
    const file = join(dir, 'bad.jsonl');
    writeFileSync(file, '{"format":"quiesce-trace","version":1}\n');
    const { code, err } = await cli('replay', file);
    expect(code).toBe(2);
    expect(err).toMatch(new RegExp(`${file}: line 1: bad trace header`));
  });
});

describe('simulate', () => {
  it('--json prints the documented object', async () => {
    const { code, out } = await cli('simulate', '--scenario', 'backlog-unix', '--policy', 'gunicorn-sync', '--json');
    expect(code).toBe(0);
    const json = JSON.parse(out);
    expect(Object.keys(json)).toEqual(['scenario', 'policy', 'seed', 'params', 'requests', 'latencyMs', 'noWorkerServing', 'run']);
    expect(Object.keys(json.run)).toEqual(['events', 'seconds', 'peakRssMiB']);
    expect(json.requests).toMatchObject({ total: 200, ok: 130, failed: 70, byCause: { 'backlog-overflow': 70 }, statuses: { 200: 130, 502: 70 } });
    expect(Object.keys(json.latencyMs)).toEqual(['p50', 'p95', 'p99', 'max']);
    // One sync worker, never recycled, never signalled before the stop: it serves throughout, busy or not.
    expect(json.noWorkerServing).toEqual({ spans: 0, totalMs: 0 });
  });

  it('--trace writes a complete trace the replay checker accepts, and the report prints the replay command', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quiesce-'));
    const file = join(dir, 'run.jsonl');
    const { code, out } = await cli('simulate', '--scenario', 'keepalive-recycle', '--policy', 'safe-drain', '--requests', '300', '--max-requests', '40', '--trace', file);
    expect(code).toBe(0);
    expect(out).toMatch(/Failed requests:\s+0/);
    expect(out).toMatch(/Replay: npx quiesce simulate --scenario keepalive-recycle --policy safe-drain --seed 1/);
    await new Promise((r) => setTimeout(r, 50)); // the write stream flushes asynchronously
    const trace = parseTrace(readFileSync(file, 'utf8'));
    expect(trace.header).toMatchObject({ policy: 'safe-drain', complete: true });
    expect(replay(trace)).toMatchObject({ ok: true });
    expect(await cli('replay', file)).toMatchObject({ code: 0 });
  });

  it('an ab report breaks failures down as ab does and by mechanism', async () => {
    const { out } = await cli('simulate', '--scenario', 'keepalive-recycle', '--policy', 'gunicorn-gthread', '--requests', '2000', '--max-requests', '100');
    expect(out).toMatch(/\(Connect: 0, Receive: \d+, Length: [1-9]\d*, Exceptions: [1-9]\d*\)/);
    expect(out).toMatch(/close-after-keepalive-response/);
  });
});

describe('check', () => {
  it('finds the known race for abort-idle, shrunk to a handful of requests, and exits 0 (the policy does not promise it)', async () => {
    const { code, out } = await cli('check', '--policy', 'abort-idle', '--property', 'idle-close-after-window', '--runs', '60');
    expect(code).toBe(0);
    expect(out).toMatch(/found abort-idle \/ idle-close-after-window/);
    const world = JSON.parse(/--world '(\{.*\})'/.exec(out)![1]!);
    expect(world.requests).toBeLessThanOrEqual(3);
    expect(world.concurrency).toBe(1);
    const timelineLines = out.split('\n').filter((l) => / ms  /.test(l));
    expect(timelineLines.length).toBeLessThanOrEqual(25);
    expect(out).toMatch(/replay: npx quiesce check --policy abort-idle --property idle-close-after-window --world '\{"workers":/);
  });

  it("finds gunicorn-gthread's reset of an unread request, and the printed world replays it exactly", async () => {
    // 300 worlds: since gthread's pool serves what it was given, its only unread resets are requests that
    // arrive after the last loop turn and before the exit, a narrow window (check.test.ts does the same).
    const first = await cli('check', '--policy', 'gunicorn-gthread', '--property', 'only-unavoidable-failures', '--runs', '300');
    expect(first.out).toMatch(/found gunicorn-gthread \/ only-unavoidable-failures \(may break\): .*dropped unread/);
    expect(first.out).toMatch(/\(found on commit [0-9a-f]+\)/);
    const world = /--world '(\{.*\})'/.exec(first.out)![1]!;
    const again = await cli('check', '--policy', 'gunicorn-gthread', '--property', 'only-unavoidable-failures', '--world', world);
    expect(again.out.split('\n')[0]).toBe(first.out.split('\n')[0]);
    // The same timeline, event for event.
    const timelineOf = (out: string) => out.split('\n').filter((l) => / ms  /.test(l));
    expect(timelineOf(again.out)).toEqual(timelineOf(first.out));
  });

  it('safe-drain keeps every property it promises, each window reached', async () => {
    const { code, out } = await cli('check', '--policy', 'safe-drain', '--runs', '60');
    expect(out).not.toMatch(/FAIL/);
    expect(code).toBe(0);
    expect(out).toMatch(/safe-drain \/ only-unavoidable-failures \(must hold\): held in 60 runs; windows reached request-crossed-close: [1-9]/);
  });
});
