/**
 * HTTP/1.1 request parsing (RFC 9112), incremental, strict and linear.
 *
 * The worker needs more control than `node:http` gives: it must know whether
 * request bytes sit unread when it closes (that decides FIN or RST, and the
 * model checks it), it must be able to leave a request unread on purpose (the
 * policies that orphan connections), and it must never let a malformed or
 * oversized request cost more than a 4xx and a close.
 *
 * Why it is shaped this way:
 * - **Framing is where requests get smuggled**, so everything that decides
 *   where a message ends is refused when it is ambiguous: Content-Length with
 *   Transfer-Encoding, duplicated or listed Content-Length, a coding list that
 *   does not end in `chunked`, bare LF or bare CR anywhere in the head or the
 *   chunked framing, whitespace or stray bytes in a chunk-size line or its
 *   extensions, trailer lines without a colon, framing fields in trailers.
 *   These are llhttp's strict verdicts (Node's own server), measured on the
 *   same bytes by the differential fuzzer in `test/impl/differential.test.ts`.
 * - **Linear in its input.** Bytes are looked at once, as they arrive: the
 *   head is scanned incrementally, a body is copied once into a buffer that
 *   grows by doubling, and a chunked body is decoded by a byte-level state
 *   machine that never goes back to the start. A 512 KiB body in one-byte
 *   chunks costs what its bytes cost.
 * - **Limits count bytes, not reads.** The request line, the head, a chunk
 *   line and the trailers have budgets checked as bytes accumulate, so a
 *   client gets the same verdict however its bytes are split into segments.
 *
 * Where the RFC leaves a choice and we choose differently from llhttp, the
 * choice is listed in `DOCUMENTED_DIVERGENCES` (and the fuzzer holds us to
 * that list): we follow the RFC's MUSTs that llhttp does not enforce (Host),
 * and refuse what the RFC's grammar does not produce (request targets,
 * chunk extensions) rather than guess.
 *
 * `push()` feeds bytes; `next()` returns the next complete request, `null`
 * when more bytes are needed, or throws a `ParseError` carrying the status to
 * answer with (the connection must then close). The parser works at most one
 * message ahead: bytes of later pipelined requests stay queued, unparsed,
 * until the message before them has been taken.
 */

export interface HttpRequest {
  readonly method: string;
  /** The request target exactly as sent. */
  readonly target: string;
  readonly form: 'origin' | 'absolute' | 'authority' | 'asterisk';
  /** The path of an origin- or absolute-form target (`/` for the others). */
  readonly path: string;
  readonly query: URLSearchParams;
  /** `1.0` or `1.1`. */
  readonly version: '1.0' | '1.1';
  /** Header names lower-cased; repeated headers joined with ", " (RFC 9110 §5.3). */
  readonly headers: ReadonlyMap<string, string>;
  readonly body: Buffer;
  /** Whether the request allows the connection to stay open after the response. */
  readonly keepAlive: boolean;
}

export type ParseStatus = 400 | 413 | 414 | 431 | 501 | 505;

export class ParseError extends Error {
  /** The X-Request-Id of a head refused after its fields were read (a body too large): the trace names the request by it. */
  requestId: string | undefined;

  constructor(
    readonly status: ParseStatus,
    message: string,
  ) {
    super(message);
    this.name = 'ParseError';
  }
}

export interface ParserLimits {
  /** Longest request line (gunicorn `limit_request_line` 4094; we allow 8 KiB). */
  readonly maxRequestLineBytes: number;
  /** Largest request head: request line and all header fields (llhttp's default is 16 KiB too). */
  readonly maxHeadBytes: number;
  readonly maxHeaderFields: number;
  readonly maxBodyBytes: number;
  /** Longest chunk-size line, extensions included. */
  readonly maxChunkLineBytes: number;
  /** Largest trailer section. */
  readonly maxTrailerBytes: number;
}

export const DEFAULT_LIMITS: ParserLimits = {
  maxRequestLineBytes: 8192,
  maxHeadBytes: 16 * 1024,
  maxHeaderFields: 100,
  maxBodyBytes: 1024 * 1024,
  maxChunkLineBytes: 4096,
  maxTrailerBytes: 16 * 1024,
};

/**
 * Where this parser's verdict differs from llhttp's strict mode on purpose, each with the RFC text
 * that allows (or demands) our choice. The differential fuzzer may only disagree with llhttp on
 * inputs that contain one of these constructs, and it reports how often each occurred.
 */
export const DOCUMENTED_DIVERGENCES = {
  host: 'RFC 9112 §3.2: a server MUST answer 400 to a request with more than one Host field line or an invalid Host value (llhttp only checks presence); after the 400 for a missing Host, node:http reads on, we close as after every refusal',
  'http10-transfer-encoding': 'RFC 9112 §6.1: a server that receives Transfer-Encoding in an HTTP/1.0 request MUST close the connection after responding (llhttp keeps it alive on Connection: keep-alive)',
  'transfer-coding': 'RFC 9112 §6.1/§6.3: a coding other than chunked gets 501 (SHOULD), an empty or non-chunked-final list gets 400 (MUST); llhttp passes other codings through',
  version: 'RFC 9110 §2.5: a higher 1.x minor version is processed as 1.1 (SHOULD; llhttp refuses 1.2+), and another major version may get 505 (llhttp accepts 2.0 and a version-less line)',
  'request-line-whitespace': 'RFC 9112 §3: the request line is separated by single spaces; parsing on runs of whitespace is only a MAY (llhttp accepts a double space)',
  'request-target': 'RFC 9112 §3.2: the target is origin-form, absolute-form (an http URI with a host), authority-form (CONNECT only) or asterisk-form (OPTIONS only), in RFC 3986 characters (llhttp accepts "#", "\\", bad %-escapes, "*" for any method)',
  expect: 'RFC 9110 §10.1.1: a server MAY answer 417 to an Expect other than 100-continue (node:http does); we ignore it, as gunicorn does',
  'chunk-extension': 'RFC 9112 §7.1.1: chunk-ext = ";" chunk-ext-name [ "=" chunk-ext-val ]; a missing name or value is refused (llhttp accepts both)',
  'trailing-empty-list-element': 'RFC 9110 §5.6.1: empty list elements are ignored; llhttp refuses a Transfer-Encoding ending in ","',
} as const;
export type DivergenceClass = keyof typeof DOCUMENTED_DIVERGENCES;

// ─────────────────────────── character classes ───────────────────────────

function table(chars: string, ranges: [number, number][] = []): Uint8Array {
  const t = new Uint8Array(256);
  for (const c of chars) t[c.charCodeAt(0)] = 1;
  for (const [from, to] of ranges) for (let b = from; b <= to; b++) t[b] = 1;
  return t;
}
const ALNUM: [number, number][] = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x61, 0x7a],
];
/** RFC 9110 §5.6.2 tchar. */
const TCHAR = table("!#$%&'*+-.^_`|~", ALNUM);
/** RFC 9110 §5.5: field-vchar, SP and HTAB (obs-text allowed); no CTLs, no DEL. */
const FIELD_CHAR = table('\t', [
  [0x20, 0x7e],
  [0x80, 0xff],
]);
/** RFC 3986 characters of a URI other than "%" and "#": unreserved, gen-delims minus "#", sub-delims. */
const URI_CHAR = table("-._~:/?[]@!$&'()*+,;=", ALNUM);
const HEX = table('', [
  [0x30, 0x39],
  [0x41, 0x46],
  [0x61, 0x66],
]);
/** RFC 9112 §7.1.1 quoted-string content in a chunk extension: qdtext (HTAB, SP, VCHAR but DQUOTE and "\", obs-text). */
const QDTEXT = table('\t ', [
  [0x21, 0x21],
  [0x23, 0x5b],
  [0x5d, 0x7e],
  [0x80, 0xff],
]);
const QUOTED_PAIR = table('\t ', [
  [0x21, 0x7e],
  [0x80, 0xff],
]);

const CR = 0x0d;
const LF = 0x0a;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** A CR not followed by LF, or an LF not preceded by CR (the head's own lines end in CRLF). */
const BARE_CR_OR_LF = /\r(?!\n)|(?<!\r)\n/;

// The same classes as regular expressions, for whole strings. A worker is a fresh process every few
// hundred requests (max-requests), so most requests run before the JIT has warmed up: a loop over
// characters runs in the interpreter, a regular expression runs as compiled code from its first use.
// test/impl/http.test.ts holds each expression to its table, character by character.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const URI_TEXT = /^(?:[-._~:/?[\]@!$&'()*+,;=0-9A-Za-z]|%[0-9A-Fa-f]{2})*$/;

function isToken(text: string): boolean {
  return TOKEN.test(text);
}

function isFieldValue(text: string): boolean {
  return FIELD_VALUE.test(text);
}

/** RFC 3986 characters with every "%" followed by two hex digits. */
function isUriText(text: string): boolean {
  return URI_TEXT.test(text);
}

export { FIELD_CHAR, isFieldValue, isToken, isUriText, TCHAR, URI_CHAR, HEX };

/**
 * The methods llhttp (and so node:http) recognizes; methods are case-sensitive (RFC 9110 §9.1).
 * Written out rather than taken from `node:http`'s METHODS: importing node:http loads its whole
 * client and server into every worker, a few milliseconds of every recycled worker's start.
 * test/impl/http.test.ts holds this list to node:http's.
 */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'ACL', 'BIND', 'CHECKOUT', 'CONNECT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH', 'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE',
  'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH', 'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE',
  'UNBIND', 'UNLINK', 'UNLOCK', 'UNSUBSCRIBE',
]);

// ─────────────────────────── the head ───────────────────────────

interface Head {
  readonly method: string;
  readonly target: string;
  readonly form: HttpRequest['form'];
  readonly path: string;
  readonly query: URLSearchParams;
  readonly version: '1.0' | '1.1';
  readonly headers: Map<string, string>;
  readonly framing: Framing;
  readonly keepAlive: boolean;
}

type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

function parseRequestLine(line: string): Pick<Head, 'method' | 'target' | 'version'> {
  const parts = line.split(' ');
  if (parts.length !== 3) throw new ParseError(400, `malformed request line ${JSON.stringify(line.slice(0, 80))}: expected "METHOD target HTTP/1.1"`);
  const [method, target, protocol] = parts as [string, string, string];
  if (!isToken(method)) throw new ParseError(400, `malformed method ${JSON.stringify(method.slice(0, 40))}`);
  // RFC 9110 §9.1: an unrecognized method SHOULD get 501. Recognized = llhttp's list, so that both agree.
  if (!KNOWN_METHODS.has(method)) throw new ParseError(501, `method ${JSON.stringify(method.slice(0, 40))} is not implemented`);
  if (target.length === 0) throw new ParseError(400, 'empty request target');
  const version = /^HTTP\/(\d)\.(\d)$/.exec(protocol);
  if (!version) throw new ParseError(400, `malformed protocol ${JSON.stringify(protocol.slice(0, 40))}: expected HTTP/1.0 or HTTP/1.1`);
  if (version[1] !== '1') throw new ParseError(505, `HTTP/${version[1]}.${version[2]} is not supported`);
  return { method, target, version: version[2] === '0' ? '1.0' : '1.1' };
}

/** The four target forms of RFC 9112 §3.2, or a 400. */
function parseTarget(method: string, target: string): Pick<Head, 'form' | 'path' | 'query'> {
  const bad = (why: string) => new ParseError(400, `malformed request target ${JSON.stringify(target.slice(0, 80))}: ${why}`);
  if (target === '*') {
    if (method !== 'OPTIONS') throw bad('the asterisk form is only for OPTIONS');
    return { form: 'asterisk', path: '/', query: new URLSearchParams() };
  }
  if (!isUriText(target)) throw bad('expected RFC 3986 characters (no "#", "\\", spaces or bad %-escapes)');
  if (method === 'CONNECT') {
    if (!/^[^/?@]+:\d+$/.test(target)) throw bad('CONNECT takes host:port');
    return { form: 'authority', path: '/', query: new URLSearchParams() };
  }
  let pathAndQuery: string;
  let form: HttpRequest['form'];
  if (target.startsWith('/')) {
    form = 'origin';
    pathAndQuery = target;
  } else {
    // Only hierarchical URIs ("scheme://…"): "h:80" is a URI too, but in a request line it is an
    // authority, which only CONNECT may send.
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):(?=\/\/)/.exec(target);
    if (!scheme) throw bad('expected an absolute path ("/…") or an absolute URI ("http://host/…")');
    form = 'absolute';
    const rest = target.slice(scheme[0].length);
    const lowerScheme = scheme[1]!.toLowerCase();
    {
      const authorityEnd = rest.slice(2).search(/[/?]/);
      const authority = authorityEnd === -1 ? rest.slice(2) : rest.slice(2, 2 + authorityEnd);
      const host = authority.slice(authority.lastIndexOf('@') + 1).replace(/:\d*$/, '');
      // RFC 9110 §4.2.1: an http(s) URI with an empty host MUST be rejected as invalid.
      if ((lowerScheme === 'http' || lowerScheme === 'https') && host === '') throw bad('an http URI needs a host');
      pathAndQuery = authorityEnd === -1 ? '/' : rest.slice(2 + authorityEnd);
    }
    if (pathAndQuery.startsWith('?')) pathAndQuery = `/${pathAndQuery}`;
  }
  const q = pathAndQuery.indexOf('?');
  return {
    form,
    path: q === -1 ? pathAndQuery : pathAndQuery.slice(0, q),
    query: new URLSearchParams(q === -1 ? '' : pathAndQuery.slice(q + 1)),
  };
}

/** One field line: `name: value`, name a token directly followed by ":" (RFC 9112 §5.1). */
function parseFieldLine(line: string, where: 'header' | 'trailer'): [string, string] {
  if (line.startsWith(' ') || line.startsWith('\t')) throw new ParseError(400, `obsolete line folding or leading whitespace in a ${where} field`);
  const colon = line.indexOf(':');
  if (colon <= 0) throw new ParseError(400, `malformed ${where} field ${JSON.stringify(line.slice(0, 80))}: expected "name: value"`);
  const name = line.slice(0, colon);
  if (!isToken(name)) throw new ParseError(400, `malformed ${where} field name ${JSON.stringify(name.slice(0, 40))}`);
  let start = colon + 1;
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
  const value = line.slice(start, end);
  if (!isFieldValue(value)) throw new ParseError(400, `invalid characters in ${where} field ${name}`);
  return [name.toLowerCase(), value];
}

/** RFC 9112 §3.2: Host = uri-host [ ":" port ]; empty is allowed (a target without authority). */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::\d*)?$/;

function parseHead(text: string, limits: ParserLimits): Head {
  const lines = text.split('\r\n');
  const requestLine = parseRequestLine(lines[0]!);
  const target = parseTarget(requestLine.method, requestLine.target);
  if (lines.length - 1 > limits.maxHeaderFields) throw new ParseError(431, `${lines.length - 1} header fields exceed ${limits.maxHeaderFields}`);
  const headers = new Map<string, string>();
  let hosts = 0;
  let contentLengths = 0;
  for (let i = 1; i < lines.length; i++) {
    const [name, value] = parseFieldLine(lines[i]!, 'header');
    if (name === 'host') hosts++;
    if (name === 'content-length') contentLengths++;
    const previous = headers.get(name);
    headers.set(name, previous === undefined ? value : `${previous}, ${value}`);
  }
  let framing: Framing;
  try {
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with two, or with an invalid one.
    if (requestLine.version === '1.1' && hosts === 0) throw new ParseError(400, 'missing Host header (required in HTTP/1.1)');
    if (hosts > 1) throw new ParseError(400, `${hosts} Host header fields; expected one`);
    const host = headers.get('host');
    if (host !== undefined && !HOST_VALUE.test(host)) throw new ParseError(400, `invalid Host ${JSON.stringify(host.slice(0, 80))}: expected host[:port]`);
    if (requestLine.method === 'CONNECT') throw new ParseError(501, 'CONNECT is not supported: this server is not a proxy');
    framing = framingOf(headers, contentLengths, limits);
  } catch (error) {
    if (error instanceof ParseError) error.requestId = requestIdOf(headers);
    throw error;
  }
  // Spelled out rather than spread: a spread is slow until the JIT has seen it, and most requests come before that.
  return {
    method: requestLine.method,
    target: requestLine.target,
    version: requestLine.version,
    form: target.form,
    path: target.path,
    query: target.query,
    headers,
    framing,
    keepAlive: allowsKeepAlive(requestLine.version, headers, framing),
  };
}

/** A request's X-Request-Id, if it has a usable one. */
function requestIdOf(headers: ReadonlyMap<string, string>): string | undefined {
  const id = headers.get('x-request-id');
  return id && id.length <= 200 ? id : undefined;
}

function framingOf(headers: Map<string, string>, contentLengthLines: number, limits: ParserLimits): Framing {
  const transferEncoding = headers.get('transfer-encoding');
  const contentLength = headers.get('content-length');
  if (transferEncoding !== undefined) {
    // RFC 9112 §6.3: a server MAY reject both outright, and must when it cannot tell which frames the message.
    if (contentLength !== undefined) throw new ParseError(400, 'both Transfer-Encoding and Content-Length');
    // RFC 9110 §5.6.1: empty list elements are ignored.
    const codings = transferEncoding
      .split(',')
      .map((c) => c.trim().toLowerCase())
      .filter((c) => c !== '');
    if (codings.at(-1) !== 'chunked') throw new ParseError(400, `Transfer-Encoding ${JSON.stringify(transferEncoding)} does not end in chunked`);
    if (codings.length > 1) throw new ParseError(codings.slice(0, -1).includes('chunked') ? 400 : 501, `transfer coding ${JSON.stringify(transferEncoding)} is not supported (only chunked, once)`);
    return { kind: 'chunked' };
  }
  if (contentLength === undefined) return { kind: 'none' };
  // One field line with one value: a list or a repeat is how a front end and a back end come to disagree.
  if (contentLengthLines > 1 || contentLength.includes(',')) throw new ParseError(400, `more than one Content-Length ${JSON.stringify(contentLength.slice(0, 40))}`);
  if (!/^\d+$/.test(contentLength)) throw new ParseError(400, `malformed Content-Length ${JSON.stringify(contentLength.slice(0, 40))}`);
  const length = contentLength.length > 15 ? Number.POSITIVE_INFINITY : Number(contentLength);
  if (length > limits.maxBodyBytes) throw new ParseError(413, `body of ${contentLength.slice(0, 20)} bytes exceeds ${limits.maxBodyBytes}`);
  return { kind: 'length', length };
}

/** RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"; §6.1: 1.0 with Transfer-Encoding closes. */
function allowsKeepAlive(version: '1.0' | '1.1', headers: ReadonlyMap<string, string>, framing: Framing): boolean {
  const options = (headers.get('connection') ?? '').split(',').map((o) => o.trim().toLowerCase());
  if (options.includes('close')) return false;
  if (version === '1.0' && framing.kind === 'chunked') return false;
  return version === '1.1' || options.includes('keep-alive');
}

// ─────────────────────────── the byte queue ───────────────────────────

/** Received bytes not yet consumed, as the segments they arrived in: no copying on push. */
class ByteQueue {
  private readonly segments: Buffer[] = [];
  /** Offset of the first unconsumed byte in segments[0]. */
  private offset = 0;
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.segments.push(chunk);
    this.length += chunk.length;
  }

  /** The byte at `i` from the front, or -1. */
  at(i: number): number {
    let at = i + this.offset;
    for (const segment of this.segments) {
      if (at < segment.length) return segment[at]!;
      at -= segment.length;
    }
    return -1;
  }

  /** The first contiguous run of unconsumed bytes (a view, not a copy). */
  front(): Buffer {
    const first = this.segments[0];
    return first ? first.subarray(this.offset) : Buffer.alloc(0);
  }

  /** Consume `n` bytes from the front. */
  skip(n: number): void {
    this.length -= n;
    while (n > 0) {
      const first = this.segments[0]!;
      const left = first.length - this.offset;
      if (n < left) {
        this.offset += n;
        return;
      }
      n -= left;
      this.segments.shift();
      this.offset = 0;
    }
  }

  /** Copy and consume `n` bytes from the front. */
  take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    while (written < n) {
      const front = this.front();
      const part = Math.min(front.length, n - written);
      front.copy(out, written, 0, part);
      written += part;
      this.skip(part);
    }
    return out;
  }
}

/** A body assembled by appending, growing by doubling: linear however small the pieces. */
class GrowableBuffer {
  length = 0;

  /** `expected`: the size when it is known (Content-Length), allocated once, exactly. */
  constructor(expected = 0) {
    this.buffer = Buffer.allocUnsafe(expected);
  }

  private buffer: Buffer;

  append(bytes: Buffer): void {
    if (this.length + bytes.length > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(256, this.buffer.length * 2, this.length + bytes.length));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    bytes.copy(this.buffer, this.length);
    this.length += bytes.length;
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

// ─────────────────────────── the parser ───────────────────────────

/**
 * Where the parser is in the current message. Chunked bodies (RFC 9112 §7.1):
 * chunk-size [chunk-ext] CRLF, chunk-data CRLF, …, last-chunk, trailer-section CRLF.
 */
type Phase =
  | { at: 'head' }
  | { at: 'length'; left: number }
  | { at: 'chunk-line' }
  | { at: 'chunk-data'; left: number }
  | { at: 'chunk-data-end' }
  | { at: 'trailers' }
  | { at: 'complete' };

export class RequestParser {
  private readonly queue = new ByteQueue();
  private phase: Phase = { at: 'head' };
  private head: Head | null = null;
  private body = new GrowableBuffer();
  /** A line of chunked framing (size line or trailer field) being collected. */
  private line = '';
  private lineBytes = 0;
  private trailerBytes = 0;
  private trailerFields = 0;
  private error: ParseError | null = null;
  /** A message that does not persist was taken: nothing after it is a request (RFC 9112 §9.6). */
  private ended = false;

  constructor(private readonly limits: ParserLimits = DEFAULT_LIMITS) {}

  push(chunk: Buffer): void {
    if (this.ended || this.error) return;
    this.queue.push(chunk);
    this.advance();
  }

  /** Bytes received and not yet handed out in a request: the connection's read-side memory. */
  get bufferedBytes(): number {
    return this.queue.length + this.body.length + this.headBuf.length;
  }

  /** Whether the next request's head has arrived (its body may not have). */
  hasCompleteHead(): boolean {
    return this.head !== null;
  }

  /** The current request is all here (or already refused): `next()` returns it (or throws). */
  isComplete(): boolean {
    return this.phase.at === 'complete' || this.error !== null;
  }

  /** The next request is already known to be refused: it will be answered with a 4xx however the rest arrives. */
  isHopeless(): boolean {
    return this.error !== null;
  }

  /** The head is complete and asks `Expect: 100-continue` (the client waits before sending its body). */
  expectsContinue(): boolean {
    return this.phase.at !== 'complete' && this.head?.headers.get('expect')?.toLowerCase() === '100-continue';
  }

  /** The X-Request-Id of the current request, if its head is complete (or was refused after its fields were read) and has one. */
  peekRequestId(): string | undefined {
    return this.head ? requestIdOf(this.head.headers) : this.error?.requestId;
  }

  /**
   * The next complete request, or null if more bytes are needed.
   * Throws ParseError for a request that must be refused; the connection must then close.
   */
  next(): HttpRequest | null {
    if (this.phase.at !== 'complete') {
      if (this.error) throw this.error;
      return null;
    }
    const head = this.head!;
    const request: HttpRequest = {
      method: head.method,
      target: head.target,
      form: head.form,
      path: head.path,
      query: head.query,
      version: head.version,
      headers: head.headers,
      body: this.body.finish(),
      keepAlive: head.keepAlive,
    };
    this.head = null;
    this.body = new GrowableBuffer();
    this.phase = { at: 'head' };
    if (!request.keepAlive) this.ended = true;
    else this.advance();
    return request;
  }

  private fail(status: ParseStatus, message: string): void {
    this.error = new ParseError(status, message);
  }

  /** Parse as far as the queued bytes allow, at most to the end of the current message. */
  private advance(): void {
    try {
      while (!this.error && this.queue.length > 0 && this.phase.at !== 'complete') {
        if (!this.step()) break;
      }
      if (this.phase.at === 'length' && this.phase.left === 0) this.phase = { at: 'complete' };
    } catch (error) {
      if (!(error instanceof ParseError)) throw error;
      this.error = error;
    }
  }

  /** One step of the current phase; false when it needs more bytes. */
  private step(): boolean {
    switch (this.phase.at) {
      case 'head':
        return this.scanHead();
      case 'length':
        if (this.copyBody(this.phase) === 0) this.phase = { at: 'complete' };
        return true;
      case 'chunk-line':
      case 'trailers':
        return this.collectLine();
      case 'chunk-data':
        if (this.copyBody(this.phase) === 0) this.phase = { at: 'chunk-data-end' };
        return true;
      case 'chunk-data-end': {
        if (this.queue.length < 2) {
          if (this.queue.at(0) !== CR) throw new ParseError(400, 'chunk data not followed by CRLF');
          return false;
        }
        if (this.queue.at(0) !== CR || this.queue.at(1) !== LF) throw new ParseError(400, 'chunk data not followed by CRLF');
        this.queue.skip(2);
        this.phase = { at: 'chunk-line' };
        return true;
      }
      case 'complete':
        return false;
    }
  }

  /** Move body bytes from the queue's front into the body; what is left of the run. */
  private copyBody(phase: { left: number }): number {
    const front = this.queue.front();
    const part = Math.min(phase.left, front.length);
    this.body.append(front.subarray(0, part));
    this.queue.skip(part);
    return (phase.left -= part);
  }

  /**
   * Move head bytes from the queue into the head buffer until CRLF CRLF, refusing bare LF and bare
   * CR as they are seen, so that a head without CRLFs is refused at once rather than at the limit.
   * Each byte is looked at once. Empty lines before the request line are skipped (RFC 9112 §2.2).
   */
  private scanHead(): boolean {
    const front = this.queue.front();
    if (this.headBuf.length === 0 && !this.prevCR) {
      if (front[0] === LF) {
        this.queue.skip(1);
        return true;
      }
      if (front[0] === CR) {
        const second = this.queue.at(1);
        if (second === -1) return false;
        if (second !== LF) throw new ParseError(400, 'bare CR before the request line');
        this.queue.skip(2);
        return true;
      }
    }
    if (this.headBuf.length === 0 && !this.prevCR && this.scanWholeHead(front)) return true;
    for (let i = 0; i < front.length; i++) {
      const b = front[i]!;
      if (this.prevCR && b !== LF) throw new ParseError(400, 'bare CR in the request head');
      if (b === CR) {
        this.prevCR = true;
        continue;
      }
      if (b !== LF) {
        this.lineLength++;
        if (this.headLines === 0 && this.lineLength > this.limits.maxRequestLineBytes) throw new ParseError(414, `request line longer than ${this.limits.maxRequestLineBytes} bytes`);
        continue;
      }
      if (!this.prevCR) throw new ParseError(400, 'bare LF in the request head (lines end in CRLF)');
      this.prevCR = false;
      const emptyLine = this.lineLength === 0;
      this.lineLength = 0;
      this.appendHead(front.subarray(0, i + 1));
      this.queue.skip(i + 1);
      if (this.headLines === 0) this.checkRequestLine();
      if (emptyLine) {
        const text = this.headBuf.finish().toString('latin1', 0, this.headBuf.length - 4);
        this.headBuf = new GrowableBuffer();
        this.headLines = 0;
        this.startBody(parseHead(text, this.limits));
      } else {
        this.headLines++;
      }
      return true;
    }
    this.appendHead(front);
    this.queue.skip(front.length);
    return true;
  }

  /**
   * The common case at once: a whole head at the front of one segment, within its limits, with no
   * bare CR or LF. Its verdict is the byte loop's — the loop would find nothing before the head's
   * end, and then parse the same text — reached with native searches instead of a loop over bytes
   * (most requests run before the JIT has warmed up; see TOKEN). Anything else: false, and the
   * byte loop decides, error for error as before.
   */
  private scanWholeHead(front: Buffer): boolean {
    const end = front.indexOf(HEAD_END);
    if (end === -1 || end > this.limits.maxHeadBytes) return false;
    const text = front.toString('latin1', 0, end);
    const firstLineEnd = text.indexOf('\r\n');
    if ((firstLineEnd === -1 ? end : firstLineEnd) > this.limits.maxRequestLineBytes) return false;
    if (BARE_CR_OR_LF.test(text)) return false;
    this.queue.skip(end + HEAD_END.length);
    this.startBody(parseHead(text, this.limits));
    return true;
  }

  private headBuf = new GrowableBuffer();
  private headLines = 0;
  private lineLength = 0;
  private prevCR = false;

  private appendHead(bytes: Buffer): void {
    this.headBuf.append(bytes);
    // The head's own CRLF CRLF does not count against it.
    if (this.headBuf.length > this.limits.maxHeadBytes + 4) throw new ParseError(431, `request head longer than ${this.limits.maxHeadBytes} bytes`);
  }

  /** The request line is complete: refuse it now if it is wrong, before the rest of the head arrives. */
  private checkRequestLine(): void {
    const line = this.headBuf.finish().toString('latin1', 0, this.headBuf.length - 2);
    const requestLine = parseRequestLine(line);
    parseTarget(requestLine.method, requestLine.target);
  }

  private startBody(head: Head): void {
    this.head = head;
    if (head.framing.kind === 'none') this.phase = { at: 'complete' };
    else if (head.framing.kind === 'length') {
      this.body = new GrowableBuffer(head.framing.length);
      this.phase = head.framing.length === 0 ? { at: 'complete' } : { at: 'length', left: head.framing.length };
    }
    else {
      this.phase = { at: 'chunk-line' };
      this.trailerBytes = 0;
      this.trailerFields = 0;
    }
  }

  /** Collect one CRLF-terminated line of chunked framing, then act on it. */
  private collectLine(): boolean {
    const front = this.queue.front();
    const budget = this.phase.at === 'trailers' ? this.limits.maxTrailerBytes - this.trailerBytes : this.limits.maxChunkLineBytes;
    for (let i = 0; i < front.length; i++) {
      const b = front[i]!;
      if (b === LF) {
        if (!this.line.endsWith('\r')) throw new ParseError(400, `bare LF in a ${this.phase.at === 'trailers' ? 'trailer' : 'chunk-size'} line`);
        const line = this.line.slice(0, -1);
        this.queue.skip(i + 1);
        this.trailerBytes += this.phase.at === 'trailers' ? this.lineBytes + 1 : 0;
        this.line = '';
        this.lineBytes = 0;
        if (this.phase.at === 'trailers') this.onTrailerLine(line);
        else this.onChunkLine(line);
        return true;
      }
      if (this.line.endsWith('\r')) throw new ParseError(400, `bare CR in a ${this.phase.at === 'trailers' ? 'trailer' : 'chunk-size'} line`);
      this.line += String.fromCharCode(b);
      this.lineBytes++;
      if (this.lineBytes > budget) {
        throw this.phase.at === 'trailers'
          ? new ParseError(431, `trailer section longer than ${this.limits.maxTrailerBytes} bytes`)
          : new ParseError(400, `chunk-size line longer than ${this.limits.maxChunkLineBytes} bytes`);
      }
    }
    this.queue.skip(front.length);
    return true;
  }

  /** chunk-size [ chunk-ext ]: hex digits, then `;name[=token|"quoted"]` repeated, no whitespace. */
  private onChunkLine(line: string): void {
    let i = 0;
    while (i < line.length && HEX[line.charCodeAt(i)]) i++;
    if (i === 0) throw new ParseError(400, `malformed chunk size ${JSON.stringify(line.slice(0, 20))}: expected hex digits`);
    const digits = line.slice(0, i).replace(/^0+(?=.)/, '');
    validateChunkExtensions(line, i);
    const size = digits.length > 12 ? Number.POSITIVE_INFINITY : parseInt(digits, 16);
    if (this.body.length + size > this.limits.maxBodyBytes) throw new ParseError(413, `chunked body exceeds ${this.limits.maxBodyBytes} bytes`);
    this.phase = size === 0 ? { at: 'trailers' } : { at: 'chunk-data', left: size };
  }

  private onTrailerLine(line: string): void {
    if (line === '') {
      this.phase = { at: 'complete' };
      return;
    }
    if (++this.trailerFields > this.limits.maxHeaderFields) throw new ParseError(431, `more than ${this.limits.maxHeaderFields} trailer fields`);
    const [name] = parseFieldLine(line, 'trailer');
    // RFC 9110 §6.5.1: framing fields are never allowed in trailers; one there is a smuggling attempt.
    if (name === 'content-length' || name === 'transfer-encoding' || name === 'host') throw new ParseError(400, `${name} is not allowed in trailers`);
    // Other trailer fields are read and dropped: the app gets the header section only.
  }
}

/** RFC 9112 §7.1.1: *( ";" token [ "=" ( token / quoted-string ) ] ), with no whitespace (llhttp's strict reading). */
function validateChunkExtensions(line: string, from: number): void {
  const bad = (why: string) => new ParseError(400, `malformed chunk extension ${JSON.stringify(line.slice(from, from + 40))}: ${why}`);
  let i = from;
  while (i < line.length) {
    if (line[i] !== ';') throw bad('expected ";" after the chunk size');
    i++;
    const nameStart = i;
    while (i < line.length && TCHAR[line.charCodeAt(i)]) i++;
    if (i === nameStart) throw bad('expected an extension name');
    if (line[i] !== '=') continue;
    i++;
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw bad('unterminated quoted string');
        const c = line.charCodeAt(i);
        if (c === 0x22) break;
        if (c === 0x5c) {
          if (!QUOTED_PAIR[line.charCodeAt(i + 1)]) throw bad('bad escape in a quoted string');
          i += 2;
          continue;
        }
        if (!QDTEXT[c]) throw bad('control character in a quoted string');
        i++;
      }
      i++;
    } else {
      const valueStart = i;
      while (i < line.length && TCHAR[line.charCodeAt(i)]) i++;
      if (i === valueStart) throw bad('expected a value after "="');
    }
  }
}
