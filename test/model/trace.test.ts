import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ACTOR_KINDS, CHARTS, parseTrace, TraceParseError } from '../../model/index.ts';
import { mermaidOf } from '../../model/diagram.ts';

const HEADER = JSON.stringify({
  format: 'quiesce-trace',
  version: 1,
  policy: 'safe-drain',
  params: { workers: 1, threads: 1, workerConnections: 1000, keepAliveMs: 2000, timeoutMs: 30000, gracefulTimeoutMs: 30000, maxRequests: 0, maxRequestsJitter: 0, idleGraceMs: 1000, lingerMs: 2000, heartbeatIntervalMs: 1000, backlog: 2048, somaxconn: 4096, family: 'tcp' },
  complete: false,
});
const GOOD = '{"t":0,"actor":"listener","type":"listener.open","family":"tcp","backlog":2048,"somaxconn":4096}';

function parseError(text: string): TraceParseError {
  try {
    parseTrace(text);
  } catch (error) {
    if (error instanceof TraceParseError) return error;
    throw error;
  }
  throw new Error('expected a parse error');
}

describe('trace parsing', () => {
  it('parses a header and events, keeping file line numbers', () => {
    const trace = parseTrace(`${HEADER}\n\n${GOOD}\n`);
    expect(trace.events).toHaveLength(1);
    expect(trace.lines).toEqual([3]);
  });

  const bad: [string, string, number, RegExp][] = [
    ['bad JSON', `${HEADER}\n${GOOD}\n{"t":1,`, 3, /not valid JSON/],
    ['unknown event type', `${HEADER}\n{"t":1,"actor":"conn/1.1","type":"conn.explode"}`, 2, /unknown event type "conn.explode"; expected one of: conn.open, .*conn.close/],
    ['missing field', `${HEADER}\n{"t":1,"actor":"conn/1.1","type":"conn.respond","req":"r1","status":200}`, 2, /conn.respond: field "close"/],
    ['wrong field type', `${HEADER}\n{"t":"soon","actor":"worker/1","type":"worker.boot"}`, 2, /field "t"/],
    ['unexpected field', `${HEADER}\n{"t":1,"actor":"worker/1","type":"worker.boot","colour":"red"}`, 2, /colour/],
    ['actor of the wrong kind', `${HEADER}\n{"t":1,"actor":"worker/1","type":"conn.drain"}`, 2, /belongs to a conn actor/],
    ['wrong version', HEADER.replace('"version":1', '"version":2'), 1, /unsupported trace version 2; this reader understands version 1/],
    ['no header', GOOD, 1, /expected the trace header/],
    ['empty', '\n\n', 1, /empty trace/],
    ['unknown policy in header', HEADER.replace('safe-drain', 'yolo'), 1, /unknown policy "yolo"/],
    ['time going backwards', `${HEADER}\n${GOOD.replace('"t":0', '"t":5')}\n${GOOD}`, 3, /before the previous event/],
    ['bad signal', `${HEADER}\n{"t":1,"actor":"arbiter","type":"arbiter.signal","signal":"USR9"}`, 2, /field "signal"/],
  ];
  for (const [what, text, line, message] of bad) {
    it(`reports ${what} with its line number`, () => {
      const error = parseError(text);
      expect(error.line).toBe(line);
      expect(error.message).toMatch(new RegExp(`^line ${line}: `));
      expect(error.message).toMatch(message);
    });
  }
});

describe('diagrams', () => {
  it('model/diagrams/*.mmd are the ones generated from the machines (run `npm run diagrams` after changing a chart)', () => {
    for (const kind of ACTOR_KINDS) {
      const committed = readFileSync(new URL(`../../model/diagrams/${kind}.mmd`, import.meta.url), 'utf8');
      expect(committed, kind).toBe(mermaidOf(CHARTS[kind]));
    }
  });

  it('shows every state of the connection chart', () => {
    const text = mermaidOf(CHARTS.conn);
    for (const state of ['accepting', 'idle_drainGrace', 'orphaned', 'lingering_discarding', 'closingHard', 'closed']) expect(text).toContain(state);
  });
});
