/**
 * The trace file: JSON Lines. Line 1 is a header naming the format, its
 * version, the policy and the server parameters the run used; every other
 * line is one event of the vocabulary in events.ts, in time order.
 *
 *   {"format":"quiesce-trace","version":1,"policy":"safe-drain","params":{…},"complete":true}
 *   {"t":0,"actor":"listener","type":"listener.open","family":"tcp","backlog":2048,"somaxconn":4096}
 *   …
 *
 * `complete: true` promises the run ended with every actor finished (the
 * replay checker then requires final states); a trace cut off mid-run says
 * false. Bad input gets a TraceParseError naming the line and what was wrong.
 */
import { z } from 'zod';
import { ACTOR_ID_PATTERNS, actorKind, kindOfEventType, type TraceEvent, type TraceEventType } from './events.ts';
import type { ServerParams } from './params.ts';
import { EVENT_TYPES, schemaFor, serverParamsSchema } from './schemas.ts';
import { getPolicy, UnknownPolicyError } from './policies.ts';

export const TRACE_FORMAT = 'quiesce-trace';
export const TRACE_VERSION = 1;

/**
 * What a trace holds. `all`: every event, so the machines can replay it. `lifecycle`: the processes'
 * own events only — boots, signals, last turns, listener closes, exits, the arbiter's — without those
 * of a connection or a request (`conn.*`, `client.*`, and any event that names a connection, a client
 * or a request). A server writes one cheaply enough to leave it on under load (`quiesce serve
 * --trace-events lifecycle`); it tells when a stop's steps happened, not whether they conform.
 */
export const TRACE_SCOPES = ['all', 'lifecycle'] as const;
export type TraceScope = (typeof TRACE_SCOPES)[number];

/** Whether a lifecycle trace keeps the event (see `TRACE_SCOPES`). */
export function isLifecycleEvent(actor: string, event: object): boolean {
  // Asked of every event a server takes: prefixes, not the actor patterns' regular expressions.
  if (actor.startsWith('conn/') || actor.startsWith('client/')) return false;
  return !('conn' in event) && !('client' in event) && !('req' in event);
}

export const traceHeaderSchema = z.strictObject({
  format: z.literal(TRACE_FORMAT),
  version: z.number().int(),
  policy: z.string(),
  params: serverParamsSchema,
  complete: z.boolean(),
  /** What the trace holds (see `TRACE_SCOPES`); absent: every event. */
  events: z.enum(TRACE_SCOPES).optional(),
  /** Free-form provenance: scenario, seed, the command that replays the run, commit. */
  meta: z.record(z.string(), z.unknown()).optional(),
});

export type TraceHeader = z.infer<typeof traceHeaderSchema>;

export interface Trace {
  readonly header: TraceHeader;
  readonly events: readonly TraceEvent[];
  /** File line of each event, when the trace was parsed from a file (else line i + 2). */
  readonly lines?: readonly number[];
}

export class TraceParseError extends Error {
  constructor(
    readonly line: number,
    readonly detail: string,
  ) {
    super(`line ${line}: ${detail}`);
    this.name = 'TraceParseError';
  }
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.length > 0 ? `field "${issue.path.join('.')}"` : 'value';
      return `${path}: ${issue.message}`;
    })
    .join('; ');
}

function parseJsonLine(text: string, line: number): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new TraceParseError(line, `not valid JSON (${(error as Error).message})`);
  }
}

export function parseHeader(text: string, line = 1): TraceHeader {
  const value = parseJsonLine(text, line);
  if (typeof value !== 'object' || value === null || (value as { format?: unknown }).format !== TRACE_FORMAT) {
    throw new TraceParseError(line, `expected the trace header {"format":"${TRACE_FORMAT}","version":${TRACE_VERSION},…} as the first line`);
  }
  const version = (value as { version?: unknown }).version;
  if (version !== TRACE_VERSION) {
    throw new TraceParseError(line, `unsupported trace version ${JSON.stringify(version)}; this reader understands version ${TRACE_VERSION}`);
  }
  const parsed = traceHeaderSchema.safeParse(value);
  if (!parsed.success) throw new TraceParseError(line, `bad trace header: ${describeIssues(parsed.error)}`);
  try {
    getPolicy(parsed.data.policy);
  } catch (error) {
    if (error instanceof UnknownPolicyError) throw new TraceParseError(line, `bad trace header: ${error.message}`);
    throw error;
  }
  return parsed.data;
}

export function parseEvent(text: string, line: number): TraceEvent {
  const value = parseJsonLine(text, line);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TraceParseError(line, 'expected an event object {"t":…,"actor":…,"type":…}');
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') throw new TraceParseError(line, 'missing field "type" (the event type, e.g. "conn.respond")');
  const schema = schemaFor(type);
  if (!schema) {
    const prefix = type.split('.')[0] ?? '';
    const sameKind = EVENT_TYPES.filter((t) => t.startsWith(prefix + '.'));
    const expected = sameKind.length > 0 ? sameKind : EVENT_TYPES;
    throw new TraceParseError(line, `unknown event type "${type}"; expected one of: ${expected.join(', ')}`);
  }
  const kind = kindOfEventType(type as TraceEventType);
  const actor = (value as { actor?: unknown }).actor;
  if (typeof actor === 'string' && actorKind(actor) !== kind) {
    throw new TraceParseError(line, `event "${type}" belongs to a ${kind} actor (${ACTOR_ID_PATTERNS[kind].source}), not "${actor}"`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new TraceParseError(line, `${type}: ${describeIssues(parsed.error)}`);
  return parsed.data as TraceEvent;
}

/** Parse a whole trace. Blank lines are allowed (and skipped); times must not go backwards. */
export function parseTrace(text: string): Trace {
  return parseTraceLines(text.split('\n'));
}

/** Parse a trace given line by line (a file read in pieces: a trace may be larger than one string can hold). */
export function parseTraceLines(lines: Iterable<string>): Trace {
  let header: TraceHeader | undefined;
  const events: TraceEvent[] = [];
  const eventLines: number[] = [];
  let lastTime = 0;
  let i = -1;
  for (const text of lines) {
    i++;
    const raw = text.trim();
    if (raw === '') continue;
    const line = i + 1;
    if (!header) {
      header = parseHeader(raw, line);
      continue;
    }
    const event = parseEvent(raw, line);
    if (event.t < lastTime) {
      throw new TraceParseError(line, `time ${event.t} ms is before the previous event's ${lastTime} ms; events must be in time order`);
    }
    lastTime = event.t;
    events.push(event);
    eventLines.push(line);
  }
  if (!header) throw new TraceParseError(1, 'empty trace: expected a header line');
  return { header, events, lines: eventLines };
}

/** The file line of events[index]. */
export function lineOf(trace: Trace, index: number): number {
  return trace.lines?.[index] ?? index + 2;
}

export function formatEvent(event: TraceEvent): string {
  return JSON.stringify(event);
}

export function formatTrace(trace: Trace): string {
  return [JSON.stringify(trace.header), ...trace.events.map(formatEvent)].join('\n') + '\n';
}

export function makeHeader(policy: string, params: ServerParams, complete: boolean, meta?: Record<string, unknown>, events: TraceScope = 'all'): TraceHeader {
  return { format: TRACE_FORMAT, version: TRACE_VERSION, policy, params, complete, ...(events === 'all' ? {} : { events }), ...(meta ? { meta } : {}) };
}
