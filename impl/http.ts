/**
 * HTTP/1.1 request parsing (RFC 9112) for the worker, incremental and strict.
 *
 * The worker needs more control than `node:http` gives: it must know whether
 * request bytes sit unread when it closes (that decides FIN or RST, and the
 * model checks it), it must be able to leave a request unread on purpose (the
 * policies that orphan connections), and it must never let a malformed or
 * oversized request cost more than a 4xx and a close.
 *
 * `RequestParser.next()` returns the next complete request, `null` when more
 * bytes are needed, or a `ParseError` carrying the status to answer with.
 * Bodies are framed by Content-Length or chunked transfer coding; anything
 * ambiguous (both, or a duplicate Content-Length that disagrees) is rejected,
 * because ambiguity in framing is how requests get smuggled.
 */

export interface HttpRequest {
  readonly method: string;
  readonly target: string;
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

export class ParseError extends Error {
  constructor(
    readonly status: 400 | 413 | 414 | 431 | 501 | 505,
    message: string,
  ) {
    super(message);
    this.name = 'ParseError';
  }
}

export interface ParserLimits {
  /** Longest request line (gunicorn `limit_request_line` 4094; we allow 8 KiB). */
  readonly maxRequestLineBytes: number;
  /** Largest request head: request line and all header fields. */
  readonly maxHeadBytes: number;
  readonly maxHeaderFields: number;
  readonly maxBodyBytes: number;
}

export const DEFAULT_LIMITS: ParserLimits = {
  maxRequestLineBytes: 8192,
  maxHeadBytes: 16 * 1024,
  maxHeaderFields: 100,
  maxBodyBytes: 1024 * 1024,
};

// RFC 9110 §5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible characters, spaces and tabs, obs-text (RFC 9110 §5.5); no CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const REQUEST_TARGET = /^[\x21-\x7e]+$/;

type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

export class RequestParser {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly limits: ParserLimits = DEFAULT_LIMITS) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  /** Bytes received and not yet consumed by a returned request. */
  get bufferedBytes(): number {
    return this.buffer.length;
  }

  /** Whether a whole request head is buffered (the request has arrived, though its body may not have). */
  hasCompleteHead(): boolean {
    return this.headEnd() !== -1;
  }

  /** The buffered head is complete and asks `Expect: 100-continue` (the client waits before sending its body). */
  expectsContinue(): boolean {
    const end = this.headEnd();
    if (end === -1) return false;
    return /\nexpect:[ \t]*100-continue[ \t]*(\r?\n|$)/i.test(this.buffer.subarray(0, end).toString('latin1'));
  }

  /** The X-Request-Id of the buffered head, if it is complete and has one. */
  peekRequestId(): string | undefined {
    const end = this.headEnd();
    if (end === -1) return undefined;
    const head = this.buffer.subarray(0, end).toString('latin1');
    const match = /\r?\nx-request-id:[ \t]*([^\r\n]*?)[ \t]*\r?\n/i.exec(head + '\n');
    const id = match?.[1];
    return id && id.length <= 200 ? id : undefined;
  }

  /**
   * The next complete request, or null if more bytes are needed.
   * Throws ParseError for a request that must be refused; the connection must then close.
   */
  next(): HttpRequest | null {
    // Tolerate empty lines before a request line (RFC 9112 §2.2).
    while (this.buffer.length >= 2 && this.buffer[0] === 0x0d && this.buffer[1] === 0x0a) this.buffer = this.buffer.subarray(2);
    while (this.buffer.length >= 1 && this.buffer[0] === 0x0a) this.buffer = this.buffer.subarray(1);
    const end = this.headEnd();
    if (end === -1) {
      this.checkIncompleteHead();
      return null;
    }
    const headBytes = this.buffer.subarray(0, end);
    if (headBytes.length > this.limits.maxHeadBytes) throw new ParseError(431, `request head of ${headBytes.length} bytes exceeds ${this.limits.maxHeadBytes}`);
    const bodyStart = end + (this.buffer[end] === 0x0d ? 4 : 2);
    const lines = headBytes.toString('latin1').split(/\r?\n/);
    const requestLine = parseRequestLine(lines[0]!, this.limits);
    const headers = parseHeaderFields(lines.slice(1), this.limits);
    const framing = framingOf(headers, this.limits);
    const body = this.takeBody(bodyStart, framing);
    if (body === null) return null;
    const keepAlive = allowsKeepAlive(requestLine.version, headers);
    const url = new URL(requestLine.target.startsWith('/') ? `http://localhost${requestLine.target}` : requestLine.target.startsWith('http') ? requestLine.target : 'http://localhost/');
    return { ...requestLine, path: url.pathname, query: url.searchParams, headers, body, keepAlive };
  }

  private headEnd(): number {
    const crlf = this.buffer.indexOf('\r\n\r\n');
    const lf = this.buffer.indexOf('\n\n');
    if (crlf === -1) return lf;
    if (lf === -1) return crlf;
    return Math.min(crlf, lf);
  }

  private checkIncompleteHead(): void {
    const lineEnd = this.buffer.indexOf('\n');
    const firstLineLength = lineEnd === -1 ? this.buffer.length : lineEnd;
    if (firstLineLength > this.limits.maxRequestLineBytes) throw new ParseError(414, `request line longer than ${this.limits.maxRequestLineBytes} bytes`);
    if (this.buffer.length > this.limits.maxHeadBytes) throw new ParseError(431, `request head longer than ${this.limits.maxHeadBytes} bytes`);
    // A request line that is already wrong need not wait for the rest of the head.
    if (lineEnd !== -1) parseRequestLine(this.buffer.subarray(0, lineEnd).toString('latin1').replace(/\r$/, ''), this.limits);
  }

  private takeBody(bodyStart: number, framing: Framing): Buffer | null {
    if (framing.kind === 'none') {
      this.buffer = this.buffer.subarray(bodyStart);
      return Buffer.alloc(0);
    }
    if (framing.kind === 'length') {
      if (this.buffer.length - bodyStart < framing.length) return null;
      const body = this.buffer.subarray(bodyStart, bodyStart + framing.length);
      this.buffer = this.buffer.subarray(bodyStart + framing.length);
      return Buffer.from(body);
    }
    const decoded = decodeChunked(this.buffer, bodyStart, this.limits.maxBodyBytes);
    if (decoded === null) return null;
    this.buffer = this.buffer.subarray(decoded.end);
    return decoded.body;
  }
}

function parseRequestLine(line: string, limits: ParserLimits): { method: string; target: string; version: '1.0' | '1.1' } {
  if (line.length > limits.maxRequestLineBytes) throw new ParseError(414, `request line longer than ${limits.maxRequestLineBytes} bytes`);
  const parts = line.split(' ');
  if (parts.length !== 3) throw new ParseError(400, `malformed request line ${JSON.stringify(line.slice(0, 80))}: expected "METHOD target HTTP/1.1"`);
  const [method, target, protocol] = parts as [string, string, string];
  if (!TOKEN.test(method)) throw new ParseError(400, `malformed method ${JSON.stringify(method.slice(0, 40))}`);
  if (!REQUEST_TARGET.test(target)) throw new ParseError(400, `malformed request target ${JSON.stringify(target.slice(0, 80))}`);
  const version = /^HTTP\/(\d)\.(\d)$/.exec(protocol);
  if (!version) throw new ParseError(400, `malformed protocol ${JSON.stringify(protocol.slice(0, 40))}: expected HTTP/1.0 or HTTP/1.1`);
  if (version[1] !== '1') throw new ParseError(505, `HTTP/${version[1]}.${version[2]} is not supported`);
  return { method, target, version: version[2] === '0' ? '1.0' : '1.1' };
}

function parseHeaderFields(lines: string[], limits: ParserLimits): Map<string, string> {
  if (lines.length > limits.maxHeaderFields) throw new ParseError(431, `${lines.length} header fields exceed ${limits.maxHeaderFields}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    if (line.startsWith(' ') || line.startsWith('\t')) throw new ParseError(400, 'obsolete line folding in a header field');
    const colon = line.indexOf(':');
    if (colon <= 0) throw new ParseError(400, `malformed header field ${JSON.stringify(line.slice(0, 80))}: expected "name: value"`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new ParseError(400, `malformed header name ${JSON.stringify(name.slice(0, 40))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) throw new ParseError(400, `invalid characters in header ${name}`);
    const key = name.toLowerCase();
    const previous = headers.get(key);
    headers.set(key, previous === undefined ? value : `${previous}, ${value}`);
  }
  return headers;
}

function framingOf(headers: Map<string, string>, limits: ParserLimits): Framing {
  const transferEncoding = headers.get('transfer-encoding');
  const contentLength = headers.get('content-length');
  if (transferEncoding !== undefined) {
    if (contentLength !== undefined) throw new ParseError(400, 'both Transfer-Encoding and Content-Length');
    const codings = transferEncoding.split(',').map((c) => c.trim().toLowerCase());
    if (codings.at(-1) !== 'chunked') throw new ParseError(400, `Transfer-Encoding ${JSON.stringify(transferEncoding)} does not end in chunked`);
    if (codings.length > 1) throw new ParseError(501, `transfer coding ${JSON.stringify(transferEncoding)} is not supported (only chunked)`);
    return { kind: 'chunked' };
  }
  if (contentLength === undefined) return { kind: 'none' };
  const values = new Set(contentLength.split(',').map((v) => v.trim()));
  if (values.size !== 1) throw new ParseError(400, `conflicting Content-Length ${JSON.stringify(contentLength)}`);
  const [value] = values as unknown as [string];
  if (!/^\d{1,15}$/.test(value)) throw new ParseError(400, `malformed Content-Length ${JSON.stringify(value.slice(0, 40))}`);
  const length = Number(value);
  if (length > limits.maxBodyBytes) throw new ParseError(413, `body of ${length} bytes exceeds ${limits.maxBodyBytes}`);
  return { kind: 'length', length };
}

/** Decode a chunked body starting at `start`; null if incomplete. Trailer fields are read and dropped. */
function decodeChunked(buffer: Buffer, start: number, maxBodyBytes: number): { body: Buffer; end: number } | null {
  const parts: Buffer[] = [];
  let size = 0;
  let at = start;
  for (;;) {
    const lineEnd = buffer.indexOf('\r\n', at);
    if (lineEnd === -1) {
      if (buffer.length - at > 1024) throw new ParseError(400, 'chunk size line too long');
      return null;
    }
    const line = buffer.subarray(at, lineEnd).toString('latin1');
    const sizeText = line.split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new ParseError(400, `malformed chunk size ${JSON.stringify(sizeText.slice(0, 20))}`);
    const chunkSize = parseInt(sizeText, 16);
    at = lineEnd + 2;
    if (chunkSize === 0) {
      // Trailer section: fields until an empty line.
      for (;;) {
        const trailerEnd = buffer.indexOf('\r\n', at);
        if (trailerEnd === -1) return null;
        const empty = trailerEnd === at;
        at = trailerEnd + 2;
        if (empty) return { body: Buffer.concat(parts, size), end: at };
      }
    }
    size += chunkSize;
    if (size > maxBodyBytes) throw new ParseError(413, `chunked body exceeds ${maxBodyBytes} bytes`);
    if (buffer.length < at + chunkSize + 2) return null;
    parts.push(buffer.subarray(at, at + chunkSize));
    if (buffer[at + chunkSize] !== 0x0d || buffer[at + chunkSize + 1] !== 0x0a) throw new ParseError(400, 'chunk data not followed by CRLF');
    at += chunkSize + 2;
  }
}

/** RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive". */
function allowsKeepAlive(version: '1.0' | '1.1', headers: ReadonlyMap<string, string>): boolean {
  const options = (headers.get('connection') ?? '').split(',').map((o) => o.trim().toLowerCase());
  if (options.includes('close')) return false;
  return version === '1.1' || options.includes('keep-alive');
}

const REASONS: Record<number, string> = {
  100: 'Continue', 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other',
  304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized',
  403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 410: 'Gone', 422: 'Unprocessable Content', 429: 'Too Many Requests',
  408: 'Request Timeout', 413: 'Content Too Large', 414: 'URI Too Long', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export interface HttpResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
}

/** Serialize a response. `close` decides the Connection header: the policy's decision, made by the model. */
let dateSecond = -1;
let dateText = '';

/** The Date header changes once a second; formatting it per response is wasted work. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

export function serializeResponse(response: HttpResponse, close: boolean, keepAliveSeconds: number, headOnly = false): Buffer {
  const body = typeof response.body === 'string' ? Buffer.from(response.body) : (response.body ?? Buffer.alloc(0));
  const lines = [`HTTP/1.1 ${response.status} ${REASONS[response.status] ?? 'Unknown'}`, `Date: ${httpDate()}`, 'Server: quiesce'];
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    const lower = name.toLowerCase();
    if (lower === 'connection' || lower === 'content-length' || lower === 'transfer-encoding' || lower === 'keep-alive') continue;
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) throw new Error(`the app set an invalid header ${JSON.stringify(name)}`);
    lines.push(`${name}: ${value}`);
  }
  lines.push(`Content-Length: ${body.length}`);
  // HTTP/1.0 clients (ab) keep a connection only when the response says keep-alive.
  lines.push(close ? 'Connection: close' : 'Connection: keep-alive');
  if (!close && keepAliveSeconds > 0) lines.push(`Keep-Alive: timeout=${Math.max(1, Math.floor(keepAliveSeconds))}`);
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return headOnly ? head : Buffer.concat([head, body]);
}
