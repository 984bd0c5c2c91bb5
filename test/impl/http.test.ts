import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, ParseError, RequestParser, serializeResponse } from '../../impl/http.ts';
import { METHODS } from 'node:http';
import { FIELD_CHAR, HEX, isFieldValue, isToken, isUriText, KNOWN_METHODS, TCHAR, URI_CHAR } from '../../impl/http-parser.ts';

function parseAll(raw: string, limits = DEFAULT_LIMITS) {
  const parser = new RequestParser(limits);
  parser.push(Buffer.from(raw, 'latin1'));
  const requests = [];
  for (;;) {
    const request = parser.next();
    if (!request) break;
    requests.push(request);
  }
  return { requests, parser };
}

function statusOf(raw: string, limits = DEFAULT_LIMITS): number | 'incomplete' | 'ok' {
  try {
    return parseAll(raw, limits).requests.length > 0 ? 'ok' : 'incomplete';
  } catch (error) {
    if (error instanceof ParseError) return error.status;
    throw error;
  }
}

describe('request parsing', () => {
  it('parses a request with its headers, query and keep-alive default per version', () => {
    const { requests } = parseAll('GET /sleep?ms=5 HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\n\r\nGET / HTTP/1.0\r\n\r\n');
    expect(requests).toHaveLength(2);
    expect(requests[0]).toMatchObject({ method: 'GET', path: '/sleep', version: '1.1', keepAlive: true });
    expect(requests[0]!.query.get('ms')).toBe('5');
    expect(requests[0]!.headers.get('x-request-id')).toBe('r1');
    expect(requests[1]).toMatchObject({ version: '1.0', keepAlive: false });
  });

  it('follows RFC 9112 §9.3 for persistence: Connection: close on 1.1, keep-alive on 1.0', () => {
    expect(parseAll('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n').requests[0]!.keepAlive).toBe(false);
    expect(parseAll('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n').requests[0]!.keepAlive).toBe(true);
  });

  it('frames bodies by Content-Length and by chunked coding, and waits for the rest', () => {
    const parser = new RequestParser();
    parser.push(Buffer.from('POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel'));
    expect(parser.hasCompleteHead()).toBe(true);
    expect(parser.next()).toBeNull();
    parser.push(Buffer.from('lo'));
    expect(parser.next()!.body.toString()).toBe('hello');
    const chunked = parseAll('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(chunked.requests.map((r) => r.body.toString())).toEqual(['abcde', '']);
  });

  it('peeks the request id of a complete head', () => {
    const parser = new RequestParser();
    parser.push(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id:  abc-1 \r\n'));
    expect(parser.peekRequestId()).toBeUndefined();
    parser.push(Buffer.from('\r\n'));
    expect(parser.peekRequestId()).toBe('abc-1');
  });

  it.each([
    ['GARBAGE\r\n\r\n', 400],
    ['GET /\r\n\r\n', 400],
    ['GET / HTTP/2.0\r\n\r\n', 505],
    ['GET / HTTP/1.1\r\nBad Header: x\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nNoColon\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n', 400],
    ['POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
    ['POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n', 400],
    ['POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n', 400],
    ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 501],
    ['POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400],
    ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n', 413],
  ])('refuses %j with %i', (raw, status) => {
    expect(statusOf(raw)).toBe(status);
  });

  it('refuses over-long request lines (414) and oversized heads (431) before they complete', () => {
    expect(statusOf(`GET /${'a'.repeat(9000)}`)).toBe(414);
    expect(statusOf(`GET / HTTP/1.1\r\nX: ${'a'.repeat(20_000)}`)).toBe(431);
    expect(statusOf(`GET / HTTP/1.1\r\nHost: a\r\n${'X: y\r\n'.repeat(101)}\r\n`)).toBe(431);
    expect(statusOf('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n', { ...DEFAULT_LIMITS, maxBodyBytes: 1000 })).toBe(413);
  });

  it('property: any split of a valid request stream parses to the same requests', () => {
    const stream = 'GET /a HTTP/1.1\r\nHost: a\r\nX-Request-Id: 1\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbodyPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;x="y"\r\nhi\r\n0\r\nT: 1\r\n\r\n';
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 8 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const parser = new RequestParser();
        const got: string[] = [];
        let from = 0;
        for (const to of [...points, stream.length]) {
          parser.push(Buffer.from(stream.slice(from, to), 'latin1'));
          from = to;
          for (let r = parser.next(); r; r = parser.next()) got.push(`${r.method} ${r.target} ${r.body.toString()}`);
        }
        expect(got).toEqual(['GET /a ', 'POST /echo body', 'POST / hi']);
      }),
    );
  });
});

describe("the parser's character classes: each regular expression is its RFC table", () => {
  // Every code unit a latin1 head can hold, and some a JavaScript string from an app can.
  const units = Array.from({ length: 0x300 }, (_, c) => c);
  it("the methods are node:http's (llhttp's), so that the differential fuzzer's verdicts agree", () => {
    expect([...KNOWN_METHODS].sort()).toEqual([...METHODS].sort());
  });
  it('token (RFC 9110 §5.6.2 tchar)', () => {
    for (const c of units) expect([c, isToken(String.fromCharCode(c))]).toEqual([c, TCHAR[c] === 1]);
    expect(isToken('')).toBe(false);
    expect(isToken('Content-Length')).toBe(true);
    expect(isToken('a b')).toBe(false);
  });
  it('field value (RFC 9110 §5.5: VCHAR, SP, HTAB, obs-text)', () => {
    for (const c of units) expect([c, isFieldValue(`a${String.fromCharCode(c)}b`)]).toEqual([c, FIELD_CHAR[c] === 1]);
    expect(isFieldValue('')).toBe(true);
    expect(isFieldValue('x\n')).toBe(false);
  });
  it('request target (RFC 3986 characters, "%" only before two hex digits)', () => {
    for (const c of units) {
      if (c === 0x25) continue;
      expect([c, isUriText(`/${String.fromCharCode(c)}`)]).toEqual([c, URI_CHAR[c] === 1]);
    }
    for (const a of units.slice(0, 0x80)) {
      const hex = String.fromCharCode(a);
      expect([a, isUriText(`/%${hex}0`)]).toEqual([a, HEX[a] === 1]);
      expect([a, isUriText(`/%0${hex}`)]).toEqual([a, HEX[a] === 1]);
    }
    expect(isUriText('/%4')).toBe(false);
    expect(isUriText('/%')).toBe(false);
  });
});

describe('a whole head in one read and the same head byte by byte get the same verdict', () => {
  // The parser takes a head that arrived whole at once (native searches) and one split across reads
  // byte by byte (the incremental loop): the two must agree on every head, good or bad.
  const verdict = (segments: Buffer[]) => {
    const parser = new RequestParser();
    try {
      for (const segment of segments) parser.push(segment);
      const request = parser.next();
      return request ? { ok: [request.method, request.target, [...request.headers], request.keepAlive, request.body.toString('latin1')] } : 'incomplete';
    } catch (error) {
      return { status: (error as ParseError).status, message: (error as ParseError).message };
    }
  };
  const piece = fc.constantFrom('GET', 'POST', ' ', '/', '/a?b=1', 'HTTP/1.1', 'HTTP/1.0', '\r\n', '\r', '\n', 'Host: x', 'Host:', 'Content-Length: 3', 'abc', 'Connection: close', ':', 'X-Y: z\t', '\x7f', '\xe9', '%zz', 'Transfer-Encoding: chunked', '0\r\n\r\n');
  it('on heads made of the pieces a request is made of', () => {
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 24 }), (pieces) => {
        const raw = Buffer.from(`${pieces.join('')}\r\n\r\n`, 'latin1');
        const byteByByte = [...raw].map((b) => Buffer.from([b]));
        expect(verdict([raw])).toEqual(verdict(byteByByte));
      }),
      { numRuns: 2000 },
    );
  });
  it('at the limits: a request line and a head one byte within and one byte over', () => {
    const limits = DEFAULT_LIMITS;
    for (const extra of [0, 1]) {
      const line = `GET /${'a'.repeat(limits.maxRequestLineBytes - 'GET / HTTP/1.1'.length + extra)} HTTP/1.1`;
      const raw = Buffer.from(`${line}\r\nHost: x\r\n\r\n`, 'latin1');
      expect(verdict([raw])).toEqual(verdict([...raw].map((b) => Buffer.from([b]))));
      expect(verdict([raw])).toEqual(extra === 0 ? { ok: expect.anything() } : { status: 414, message: expect.any(String) });
    }
    for (const extra of [0, 1]) {
      const head = `GET / HTTP/1.1\r\nHost: x\r\nX: ${'b'.repeat(limits.maxHeadBytes - 'GET / HTTP/1.1\r\nHost: x\r\nX: '.length + extra)}`;
      const raw = Buffer.from(`${head}\r\n\r\n`, 'latin1');
      expect(verdict([raw])).toEqual(verdict([...raw].map((b) => Buffer.from([b]))));
      expect(verdict([raw])).toEqual(extra === 0 ? { ok: expect.anything() } : { status: 431, message: expect.any(String) });
    }
  });
});

describe('request parsing is linear in its input, and its limits count bytes, not reads', () => {
  /** Bytes copied by Buffer.concat and Buffer#copy while `run` runs: the parser's copying work, deterministic. */
  function bytesCopied(run: () => void): number {
    let copied = 0;
    const concat = Buffer.concat;
    const copy = Buffer.prototype.copy;
    Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
      const out = concat(list, total);
      copied += out.length;
      return out;
    }) as typeof Buffer.concat;
    Buffer.prototype.copy = function (this: Buffer, ...args: Parameters<Buffer['copy']>) {
      const n = copy.apply(this, args);
      copied += n;
      return n;
    };
    try {
      run();
    } finally {
      Buffer.concat = concat;
      Buffer.prototype.copy = copy;
    }
    return copied;
  }

  it('a 512 KiB chunked body in one-byte chunks, one byte per read, costs a constant number of copies per byte', () => {
    // The example: decoding from the start on every read copied O(n²) bytes (9.5 s of CPU).
    const chunks = '1\r\nx\r\n'.repeat(512 * 1024);
    const wire = Buffer.from(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`, 'latin1');
    let body: Buffer | undefined;
    const parser = new RequestParser({ ...DEFAULT_LIMITS, maxBodyBytes: 1024 * 1024 });
    const copied = bytesCopied(() => {
      for (let i = 0; i < wire.length; i += 1) {
        parser.push(wire.subarray(i, i + 1));
        const request = parser.next();
        if (request) body = request.body;
      }
    });
    expect(body?.length).toBe(512 * 1024);
    expect(body?.every((b) => b === 0x78)).toBe(true);
    // Doubling growth copies each body byte at most twice more; the framing is never copied.
    expect(copied).toBeLessThan(4 * 512 * 1024);
  });

  it('a Content-Length body in many reads is copied once, not once per read', () => {
    const body = Buffer.alloc(256 * 1024, 0x61);
    const parser = new RequestParser();
    let got: Buffer | undefined;
    const copied = bytesCopied(() => {
      parser.push(Buffer.from(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`));
      for (let i = 0; i < body.length; i += 100) parser.push(body.subarray(i, i + 100));
      got = parser.next()?.body;
    });
    expect(got?.equals(body)).toBe(true);
    expect(copied).toBeLessThan(3 * body.length);
  });

  it('property: the verdict and the requests do not depend on how the bytes are split into reads', () => {
    const streams = [
      `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`, // 414
      `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(17_000)}\r\n\r\n`, // 431
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a\0b\r\nabc\r\n0\r\n\r\n', // 400
      'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\nHost: a\n\n', // one request, then 400
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n', // two
    ];
    const verdict = (stream: string, cuts: number[]) => {
      const parser = new RequestParser();
      const got: string[] = [];
      let from = 0;
      try {
        for (const to of [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b).concat(stream.length)) {
          parser.push(Buffer.from(stream.slice(from, to), 'latin1'));
          from = to;
          for (let r = parser.next(); r; r = parser.next()) got.push(`${r.method} ${r.target} ${r.body.length}`);
        }
      } catch (error) {
        if (!(error instanceof ParseError)) throw error;
        got.push(String(error.status));
      }
      return got;
    };
    for (const stream of streams) {
      const whole = verdict(stream, []);
      fc.assert(
        fc.property(fc.array(fc.nat(), { maxLength: 12 }), (cuts) => {
          expect(verdict(stream, cuts)).toEqual(whole);
        }),
        { numRuns: 50 },
      );
    }
  });
});

describe('responses', () => {
  it('say keep-alive or close as decided, with a length', () => {
    const keep = serializeResponse({ status: 200, body: 'hi' }, false, 2).toString();
    expect(keep).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(keep).toMatch(/\r\nConnection: keep-alive\r\nKeep-Alive: timeout=2\r\n/);
    expect(keep).toMatch(/\r\nContent-Length: 2\r\n/);
    expect(keep).toMatch(/\r\n\r\nhi$/);
    const close = serializeResponse({ status: 400, headers: { Connection: 'keep-alive' } }, true, 2).toString();
    expect(close).toMatch(/\r\nConnection: close\r\n/);
    expect(close).not.toMatch(/keep-alive/i);
  });
});
