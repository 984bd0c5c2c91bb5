/**
 * The differential HTTP fuzzer: requests generated from the HTTP/1.1 grammar,
 * mutated where framing is decided, sent byte for byte to `quiesce serve` and
 * to a strict `node:http` server (llhttp, Node's defaults). Each server
 * records what it framed — which requests reached the application, with
 * which method, target and body. The two must agree, request for request,
 * except on inputs that contain a construct where our parser differs from
 * llhttp on purpose (`DOCUMENTED_DIVERGENCES` in impl/http-parser.ts, each
 * with its RFC text); those are counted and reported, never hidden.
 *
 * Used by test/impl/differential.test.ts (10,000 requests) and by
 * `npm run fuzz:http -- --runs 1000000`.
 */
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DOCUMENTED_DIVERGENCES, type DivergenceClass } from '../../impl/http-parser.ts';
import { startServer, stopServer, type RunningServer } from './server.ts';

// ─────────────────────────── the generator ───────────────────────────

/** Mostly the valid choice, sometimes one of the hostile ones: so that most connections carry requests both servers frame. */
function mostly<T>(valid: readonly T[], hostile: readonly T[], hostileWeight = 1): fc.Arbitrary<T> {
  return fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...valid) }, { weight: hostileWeight, arbitrary: fc.constantFrom(...hostile) });
}

const EOL = mostly(['\r\n'], ['\n', '\r']);
const METHOD = mostly(['GET', 'POST', 'PUT', 'OPTIONS', 'DELETE', 'PATCH'], ['get', 'FOO', 'CONNECT']);
const TARGET = mostly(
  ['/', '/a/b?x=1&y', '/%41b', '/p;q=1', "/!$&'()*+,;=:@", 'http://h/p?q', 'http://h', 'https://h:8/', 'ftp://h/x'],
  ['/%zz', '/a#b', '/a\\b', '/\xe9', '*', 'http://', 'http', 'http:', 'h:80', '/a\x01b', '/a\x7f'],
  2,
);
const VERSION = mostly(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'], ['HTTP/1.2', 'HTTP/2.0', 'HTTP/1.1 ', 'http/1.1', '']);
const SP = mostly([' ', ' '], ['  ', '\t']);
const HOSTS = mostly<string[]>([['a'], ['a:80'], ['[::1]:8'], ['']], [[], ['a', 'b'], ['a b'], ['a/b'], ['a:x']], 2);
const VALUE = mostly(['v', 'v w', 'v\tw', ' v ', 'v\xe9', '', '"q"'], ['v\x7f', 'v\0', 'v\rw']);
const EXTRA_HEADER = fc.oneof(
  { weight: 20, arbitrary: fc.tuple(fc.constantFrom('X-A', 'X-Request-Id', 'Accept', 'Expect'), VALUE).map(([n, v]) => `${n}: ${n === 'Expect' ? '100-continue' : v}`) },
  { weight: 1, arbitrary: fc.constantFrom('X-A : v', ' X-A: v', 'X-A', ': v', 'X@A: v', 'X\xe9: v', 'X-A: v\r\n folded') },
);
const CONNECTION = fc.constantFrom<string | null>(null, null, null, null, 'close', 'keep-alive', 'Keep-Alive');
const CHUNK_EXT = mostly(['', '', '', ';a=b', ';a="q z"', ';a="x\\"y"', ';a', ';a;b=c'], [' ;a', ';', ';=b', ';a=', ';a\0b', ';a b', ' ', ';a="x'], 2);
const TE = mostly(['chunked', 'Chunked', 'chunked ', ', chunked'], ['gzip, chunked', 'chunked, chunked', 'chunked,', 'identity', '', 'xchunked', 'chunked, gzip'], 2);
const CL_FORM = mostly<(n: number) => string[]>(
  [(n) => [`${n}`], (n) => [`0${n}`], (n) => [`${n + 1}`], (n) => [`${Math.max(0, n - 1)}`]],
  [(n) => [`+${n}`], (n) => [`${n}, ${n}`], (n) => [`${n}`, `${n}`], (n) => [` ${n}x`]],
  2,
);
const TRAILERS = mostly<string[]>([[], [], ['X-T: 1'], ['Host: b']], [['Content-Length: 5'], ['Transfer-Encoding: chunked'], ['nocolon'], [' X-T: 1'], ['X-T : 1']], 2);
const BODY = fc.constantFrom('', 'abc', 'hello world', 'x'.repeat(40), '\r\n', 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');

interface Chunk {
  readonly data: string;
  readonly sizeForm: 'hex' | 'HEX' | 'zeros' | 'wrong' | 'bad';
  readonly ext: string;
  readonly eol: string;
  readonly dataEnd: string;
}
const CHUNK = fc.record({
  data: fc.constantFrom('abc', 'x'.repeat(17), 'hello', '\r\n', '0\r\n\r\n'),
  sizeForm: mostly<Chunk['sizeForm']>(['hex', 'hex', 'HEX', 'zeros'], ['wrong', 'bad']),
  ext: CHUNK_EXT,
  eol: EOL,
  dataEnd: mostly(['\r\n'], ['\n', '', 'X\r\n']),
});

function chunkSize(c: Chunk): string {
  const n = Buffer.byteLength(c.data, 'latin1');
  switch (c.sizeForm) {
    case 'hex': return n.toString(16);
    case 'HEX': return n.toString(16).toUpperCase();
    case 'zeros': return `000${n.toString(16)}`;
    case 'wrong': return (n + 2).toString(16);
    case 'bad': return `0x${n.toString(16)}`;
  }
}

const REQUEST = fc
  .record({
    method: METHOD,
    sp1: SP,
    target: TARGET,
    sp2: SP,
    version: VERSION,
    eol: EOL,
    hosts: HOSTS,
    connection: CONNECTION,
    extra: fc.array(EXTRA_HEADER, { maxLength: 3 }),
    framing: fc.constantFrom('none', 'none', 'length', 'length', 'chunked', 'chunked', 'both'),
    body: BODY,
    clForm: CL_FORM,
    te: TE,
    chunks: fc.array(CHUNK, { maxLength: 3 }),
    lastExt: mostly(['', ';a=b'], [';=']),
    lastEol: EOL,
    trailers: TRAILERS,
    finalEol: mostly(['\r\n'], ['\n', '']),
  })
  .map((r) => {
    const fields: string[] = [...r.hosts.map((h) => `Host: ${h}`), ...r.extra];
    if (r.connection) fields.push(`Connection: ${r.connection}`);
    let body = '';
    if (r.framing === 'length' || r.framing === 'both') for (const v of r.clForm(Buffer.byteLength(r.body, 'latin1'))) fields.push(`Content-Length: ${v}`);
    if (r.framing === 'chunked' || r.framing === 'both') {
      fields.push(`Transfer-Encoding: ${r.te}`);
      for (const c of r.chunks) body += `${chunkSize(c)}${c.ext}${c.eol}${c.data}${c.dataEnd}`;
      body += `0${r.lastExt}${r.lastEol}${r.trailers.map((t) => `${t}\r\n`).join('')}${r.finalEol}`;
    } else if (r.framing === 'length') body = r.body;
    const requestLine = r.version === '' ? `${r.method}${r.sp1}${r.target}` : `${r.method}${r.sp1}${r.target}${r.sp2}${r.version}`;
    return `${requestLine}${r.eol}${fields.map((f) => `${f}${r.eol}`).join('')}${r.eol}${body}`;
  });

/** A byte edit at a place where framing is decided: next to a CR, LF, colon, semicolon or digit. */
const EDIT = fc.tuple(fc.nat(), fc.constantFrom('replace', 'insert', 'delete'), fc.constantFrom('\r', '\n', ' ', '\t', ':', ';', '\0', '0', 'a', '\r\n', 'ÿ'));

function mutate(text: string, edits: [number, string, string][]): string {
  for (const [position, kind, bytes] of edits) {
    const sensitive = [...text.matchAll(/[\r\n:;0-9]/g)].map((m) => m.index!);
    if (sensitive.length === 0) continue;
    const at = sensitive[position % sensitive.length]!;
    if (kind === 'replace') text = text.slice(0, at) + bytes + text.slice(at + 1);
    else if (kind === 'insert') text = text.slice(0, at) + bytes + text.slice(at);
    else text = text.slice(0, at) + text.slice(at + 1);
  }
  return text;
}

/** One connection's bytes: one to three pipelined requests, sometimes mutated at framing-sensitive places. */
export const wireCase: fc.Arbitrary<string> = fc
  .tuple(fc.array(REQUEST, { minLength: 1, maxLength: 3 }), fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(EDIT, { minLength: 1, maxLength: 2 }) }))
  .map(([requests, edits]) => mutate(requests.join(''), edits as [number, string, string][]));

// ─────────────────────────── the documented divergences, detected ───────────────────────────

const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::\d*)?$/;
const RFC3986 = /^(?:[A-Za-z0-9\-._~:/?[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;

/**
 * Which documented divergences the bytes contain, found from the raw text (not by our parser, which
 * is what is being tested): a disagreement with llhttp is allowed only on such an input.
 */
export function divergencesIn(raw: string): Set<DivergenceClass> {
  const found = new Set<DivergenceClass>();
  const lines = raw.split(/\r\n|\n|\r/);
  const requestLines = lines.filter((l) => /^[!-~]+[ \t]/.test(l) && !/^[!-~]+:/.test(l));
  for (const line of requestLines) {
    if (/ {2}|^\S+\t|\t\S+$| $/.test(line)) found.add('request-line-whitespace');
    const [method = '', target = '', version] = line.split(/[ \t]+/);
    if (version === undefined || !/^HTTP\/1\.[01]$/.test(version)) found.add('version');
    if (target === '*' ? method !== 'OPTIONS' : !RFC3986.test(target) || /^https?:\/\/(?:[/?]|$)/i.test(target) || /^[a-z][a-z0-9+.-]*:(?!\/\/)/i.test(target)) found.add('request-target');
    if (/^HTTP\/1\.0$/.test(version ?? '') && /transfer-encoding/i.test(raw)) found.add('http10-transfer-encoding');
  }
  const hosts = lines.filter((l) => /^host:/i.test(l));
  const http11Lines = requestLines.filter((l) => /HTTP\/1\.1$/.test(l)).length;
  if (hosts.length !== requestLines.length || hosts.length < http11Lines || hosts.some((h) => !HOST_VALUE.test(h.slice(5).trim()))) found.add('host');
  for (const te of lines.filter((l) => /^transfer-encoding:/i.test(l))) {
    const value = te.slice('transfer-encoding:'.length).trim().toLowerCase();
    if (value.endsWith(',')) found.add('trailing-empty-list-element');
    if (value.split(',').map((c) => c.trim()).some((c) => c !== 'chunked' && c !== '') || value === '') found.add('transfer-coding');
  }
  if (lines.filter((l) => /^transfer-encoding:/i.test(l)).length > 1) found.add('transfer-coding');
  if (lines.some((l) => /^expect:/i.test(l) && !/^expect:[ \t]*100-continue[ \t]*$/i.test(l))) found.add('expect');
  if (/(^|\n)[0-9A-Fa-f]+;(=|[^\r\n=;]*=(\r|\n|;|$))/m.test(raw)) found.add('chunk-extension');
  return found;
}

// ─────────────────────────── the two servers ───────────────────────────

interface Framed {
  readonly method: string;
  readonly target: string;
  readonly body: string;
}

export interface Harness {
  readonly quiesce: RunningServer;
  /** Framing as each server saw the bytes of a batch of cases. */
  run(cases: readonly string[]): Promise<CaseResult[]>;
  close(): Promise<void>;
}

export interface CaseResult {
  readonly raw: string;
  readonly quiesce: readonly Framed[];
  readonly node: readonly Framed[];
  /** The server left the connection open this long after the client's FIN and its own timeouts. */
  readonly hung: readonly ('quiesce' | 'node')[];
}

const HEADER_TIMEOUT_S = 0.5;
/** Longer than any timeout of either server: an exchange still open then is a hang. */
const EXCHANGE_LIMIT_MS = 4000;
const QUIET_BEFORE_FIN_MS = 100;

export async function startHarness(dir: string): Promise<Harness> {
  const recordFile = join(dir, 'record.jsonl');
  writeFileSync(recordFile, '');
  const quiesce = await startServer(
    ['--workers', '2', '--threads', '4', '--app', new URL('./fixtures/record-app.ts', import.meta.url).pathname, '--header-timeout', String(HEADER_TIMEOUT_S), '--max-body', '4096'],
    { env: { QUIESCE_RECORD: recordFile } },
  );
  const nodeFramed = new Map<number, Framed[]>();
  const reference = http.createServer({ requireHostHeader: true, insecureHTTPParser: false, headersTimeout: HEADER_TIMEOUT_S * 1000, requestTimeout: 2000 }, (req, res) => {
    // What llhttp framed is taken as it frames it: 'request' is emitted from the parser's own
    // callback and the body is pushed in the same call, so wrapping push() sees every byte and the
    // end of the message even when the next bytes make node destroy the socket before 'end' fires.
    const port = req.socket.remotePort ?? 0;
    const parts: Buffer[] = [];
    const push = req.push.bind(req);
    const record = () => {
      if (!nodeFramed.has(port)) nodeFramed.set(port, []);
      nodeFramed.get(port)!.push({ method: req.method ?? '', target: req.url ?? '', body: Buffer.concat(parts).toString('base64') });
    };
    if (req.complete) record(); // a message without a body may be complete before its 'request'
    else {
      req.push = (chunk: unknown, encoding?: BufferEncoding) => {
        if (chunk === null) record();
        else if (Buffer.isBuffer(chunk)) parts.push(chunk);
        return push(chunk, encoding);
      };
    }
    req.resume();
    req.on('end', () => res.end('ok\n'));
  });
  await new Promise<void>((resolve) => reference.listen(0, '127.0.0.1', resolve));
  const referencePort = (reference.address() as net.AddressInfo).port;
  let recordOffset = 0;

  const exchange = (target: net.NetConnectOpts, bytes: Buffer): Promise<{ port: number; hung: boolean }> =>
    new Promise((resolve) => {
      const socket = net.connect(target);
      let port = 0;
      const timer = setTimeout(() => {
        socket.destroy();
        resolve({ port, hung: true });
      }, EXCHANGE_LIMIT_MS);
      // The FIN waits until the server has been quiet for a moment: sent with the bytes, it would race
      // the server's handling (node:http aborts a request whose socket ends before its 'end' event).
      let quiet: NodeJS.Timeout | undefined;
      const finSoon = () => {
        clearTimeout(quiet);
        quiet = setTimeout(() => socket.end(), QUIET_BEFORE_FIN_MS);
      };
      socket.on('connect', () => {
        port = socket.localPort ?? 0;
        socket.write(bytes);
        finSoon();
      });
      socket.on('data', finSoon);
      socket.on('error', () => {});
      socket.on('close', () => {
        clearTimeout(timer);
        clearTimeout(quiet);
        resolve({ port, hung: false });
      });
    });

  return {
    quiesce,
    async run(cases) {
      const outcomes = await Promise.all(
        cases.map(async (raw) => {
          const bytes = Buffer.from(raw, 'latin1');
          const [q, n] = await Promise.all([exchange(quiesce.target, bytes), exchange({ port: referencePort, host: '127.0.0.1' }, bytes)]);
          return { raw, q, n };
        }),
      );
      const quiesceFramed = new Map<number, Framed[]>();
      const text = readFileSync(recordFile, 'utf8').slice(recordOffset);
      recordOffset += text.length;
      for (const line of text.split('\n').filter(Boolean)) {
        const { port, method, target, body } = JSON.parse(line) as Framed & { port: number };
        if (!quiesceFramed.has(port)) quiesceFramed.set(port, []);
        quiesceFramed.get(port)!.push({ method, target, body });
      }
      return outcomes.map(({ raw, q, n }) => {
        const result = { raw, quiesce: quiesceFramed.get(q.port) ?? [], node: nodeFramed.get(n.port) ?? [], hung: [...(q.hung ? ['quiesce' as const] : []), ...(n.hung ? ['node' as const] : [])] };
        nodeFramed.delete(n.port);
        return result;
      });
    },
    async close() {
      if (!reference.listening) return;
      reference.close();
      reference.closeAllConnections();
      if (quiesce.proc.exitCode === null) await stopServer(quiesce);
    },
  };
}

// ─────────────────────────── the verdict ───────────────────────────

export interface Verdict {
  readonly cases: number;
  readonly requests: { readonly quiesce: number; readonly node: number };
  readonly agreed: number;
  /** Disagreements on inputs with a documented divergence, by class. */
  readonly documented: Partial<Record<DivergenceClass, number>>;
  /** Disagreements no documented divergence explains: each is a bug (or an undocumented choice). */
  readonly unexplained: readonly CaseResult[];
  /** Connections our server left open past every timeout. */
  readonly hangs: readonly CaseResult[];
}

const same = (a: readonly Framed[], b: readonly Framed[]) => a.length === b.length && a.every((x, i) => x.method === b[i]!.method && x.target === b[i]!.target && x.body === b[i]!.body);

export function judge(results: readonly CaseResult[]): Verdict {
  const documented: Partial<Record<DivergenceClass, number>> = {};
  const unexplained: CaseResult[] = [];
  let agreed = 0;
  for (const r of results) {
    if (same(r.quiesce, r.node)) {
      agreed++;
      continue;
    }
    const classes = divergencesIn(r.raw);
    if (classes.size === 0) unexplained.push(r);
    for (const c of classes) documented[c] = (documented[c] ?? 0) + 1;
  }
  return {
    cases: results.length,
    requests: { quiesce: results.reduce((n, r) => n + r.quiesce.length, 0), node: results.reduce((n, r) => n + r.node.length, 0) },
    agreed,
    documented,
    unexplained,
    hangs: results.filter((r) => r.hung.includes('quiesce')),
  };
}

export function describeVerdict(v: Verdict): string {
  const lines = [
    `${v.cases} connections (${v.requests.node} requests framed by node:http, ${v.requests.quiesce} by quiesce serve): ${v.agreed} framed identically`,
    ...Object.entries(v.documented).map(([c, n]) => `  documented divergence ${c}: ${n} — ${DOCUMENTED_DIVERGENCES[c as DivergenceClass]}`),
    `  unexplained disagreements: ${v.unexplained.length}; connections left hanging: ${v.hangs.length}`,
  ];
  for (const r of v.unexplained.slice(0, 5)) lines.push(`    ${JSON.stringify(r.raw)}\n      quiesce: ${JSON.stringify(r.quiesce)}\n      node:    ${JSON.stringify(r.node)}`);
  return lines.join('\n');
}

export function sampleCases(count: number, seed: number): string[] {
  return fc.sample(wireCase, { numRuns: count, seed });
}
