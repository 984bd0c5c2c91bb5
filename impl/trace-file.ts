/**
 * Reading a trace file line by line. A million-request trace is larger than
 * the longest string V8 can make (512 MiB), so nothing here reads a whole
 * file into one string: it is read in pieces and split at newlines.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { parseTraceLines, type Trace } from '../model/trace.ts';

const PIECE_BYTES = 4 * 1024 * 1024;

/** The file's lines, without their newlines, read 4 MiB at a time. */
export function* fileLines(path: string): Generator<string> {
  const fd = openSync(path, 'r');
  try {
    const piece = Buffer.allocUnsafe(PIECE_BYTES);
    let carry = Buffer.alloc(0);
    for (;;) {
      const n = readSync(fd, piece, 0, PIECE_BYTES, null);
      if (n === 0) break;
      const bytes = carry.length > 0 ? Buffer.concat([carry, piece.subarray(0, n)]) : piece.subarray(0, n);
      let start = 0;
      for (let nl = bytes.indexOf(0x0a, start); nl !== -1; nl = bytes.indexOf(0x0a, start)) {
        yield bytes.toString('utf8', start, nl);
        start = nl + 1;
      }
      carry = Buffer.from(bytes.subarray(start));
    }
    if (carry.length > 0) yield carry.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Parse a trace file of any size (throws the parser's TraceParseError, with line numbers). */
export function readTrace(path: string): Trace {
  return parseTraceLines(fileLines(path));
}
