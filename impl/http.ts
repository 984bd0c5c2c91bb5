/**
 * HTTP/1.1 for the worker: the request parser lives in `http-parser.ts`;
 * this file writes responses.
 */
import { isFieldValue, isToken } from './http-parser.ts';

export { DEFAULT_LIMITS, DOCUMENTED_DIVERGENCES, ParseError, RequestParser, type DivergenceClass, type HttpRequest, type ParserLimits, type ParseStatus } from './http-parser.ts';

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
  const body = response.body ?? '';
  const bodyBytes = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  let head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? 'Unknown'}\r\nDate: ${httpDate()}\r\nServer: quiesce\r\n`;
  if (response.headers) {
    for (const name in response.headers) {
      if (!Object.hasOwn(response.headers, name)) continue;
      const value = response.headers[name]!;
      const lower = name.toLowerCase();
      if (lower === 'connection' || lower === 'content-length' || lower === 'transfer-encoding' || lower === 'keep-alive') continue;
      if (!isToken(name) || !isFieldValue(value)) throw new Error(`the app set an invalid header ${JSON.stringify(name)}`);
      head += `${name}: ${value}\r\n`;
    }
  }
  head += `Content-Length: ${bodyBytes}\r\n`;
  // HTTP/1.0 clients (ab) keep a connection only when the response says keep-alive.
  head += close ? 'Connection: close\r\n' : 'Connection: keep-alive\r\n';
  if (!close && keepAliveSeconds > 0) head += `Keep-Alive: timeout=${Math.max(1, Math.floor(keepAliveSeconds))}\r\n`;
  head += '\r\n';
  // One buffer, written once: the head in latin1 (validated above), the body as given.
  const headBytes = head.length;
  const out = Buffer.allocUnsafe(headOnly ? headBytes : headBytes + bodyBytes);
  out.write(head, 0, 'latin1');
  if (!headOnly) {
    if (typeof body === 'string') out.write(body, headBytes, 'utf8');
    else body.copy(out, headBytes);
  }
  return out;
}
