/**
 * A packet capture of a real run, and what each lost exchange was on the
 * wire (issue 14: "where tcpdump is available, classify each real loss by
 * mechanism from a capture"). ab's columns say how ab counted a failure;
 * the capture says what the server did: reset a request it never read,
 * closed after a response and then reset the request written after it,
 * refused the connect, or reset a connection before it ever answered.
 *
 * tcpdump captures the loopback interface (headers only) while ab runs;
 * the pcap file is read here — the classic format, little- or big-endian,
 * µs or ns timestamps, Ethernet (what `-i lo` gives) or Linux cooked
 * capture — and each TCP connection to the server's port is followed from
 * its SYN to its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** One TCP segment of a connection to the server, as the capture saw it. */
export interface Segment {
  readonly timeUs: number;
  /** The client's port: the connection's name (the server's port is fixed). */
  readonly clientPort: number;
  readonly fromServer: boolean;
  readonly syn: boolean;
  readonly ack: boolean;
  readonly fin: boolean;
  readonly rst: boolean;
  readonly payloadBytes: number;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_LINUX_SLL2 = 276;

export class CaptureFormatError extends Error {}

/** tcpdump could not capture (not installed, not permitted, a bad interface): what it said. */
export class CaptureStartError extends Error {}

/** The TCP segments to or from `serverPort` in a pcap file's bytes. */
export function readSegments(pcap: Buffer, serverPort: number): Segment[] {
  if (pcap.length < 24) throw new CaptureFormatError(`a pcap file starts with a 24-byte header; this one has ${pcap.length} bytes`);
  const magic = pcap.readUInt32LE(0);
  const layouts: Record<number, { le: boolean; nanos: boolean }> = {
    0xa1b2c3d4: { le: true, nanos: false },
    0xa1b23c4d: { le: true, nanos: true },
    0xd4c3b2a1: { le: false, nanos: false },
    0x4d3cb2a1: { le: false, nanos: true },
  };
  const layout = layouts[magic];
  if (!layout) throw new CaptureFormatError(`not a pcap file (magic 0x${magic.toString(16)}); pcapng is not read here: capture with tcpdump -w`);
  const u32 = (at: number) => (layout.le ? pcap.readUInt32LE(at) : pcap.readUInt32BE(at));
  const linkType = u32(20) & 0xffff;
  const linkHeader = linkType === LINKTYPE_ETHERNET ? 14 : linkType === LINKTYPE_LINUX_SLL ? 16 : linkType === LINKTYPE_LINUX_SLL2 ? 20 : -1;
  if (linkHeader < 0) throw new CaptureFormatError(`link type ${linkType} is not read here (Ethernet, as on lo, or Linux cooked capture)`);
  const segments: Segment[] = [];
  for (let at = 24; at + 16 <= pcap.length; ) {
    const seconds = u32(at);
    const fraction = u32(at + 4);
    const captured = u32(at + 8);
    const packet = at + 16;
    at = packet + captured;
    if (at > pcap.length) break; // cut off at the end (the capture was stopped mid-write)
    const segment = tcpSegment(pcap, packet, captured, linkType, linkHeader, serverPort, seconds * 1e6 + (layout.nanos ? Math.floor(fraction / 1000) : fraction));
    if (segment) segments.push(segment);
  }
  return segments;
}

function tcpSegment(pcap: Buffer, packet: number, captured: number, linkType: number, linkHeader: number, serverPort: number, timeUs: number): Segment | null {
  const etherType = linkType === LINKTYPE_ETHERNET ? pcap.readUInt16BE(packet + 12) : linkType === LINKTYPE_LINUX_SLL ? pcap.readUInt16BE(packet + 14) : pcap.readUInt16BE(packet);
  if (etherType !== 0x0800 || captured < linkHeader + 20) return null; // IPv4 only: calibrate binds 127.0.0.1
  const ip = packet + linkHeader;
  const ipHeader = (pcap[ip]! & 0x0f) * 4;
  if (pcap[ip + 9] !== 6) return null; // not TCP
  const ipTotal = pcap.readUInt16BE(ip + 2);
  const tcp = ip + ipHeader;
  if (tcp + 14 > packet + captured) return null;
  const sourcePort = pcap.readUInt16BE(tcp);
  const destinationPort = pcap.readUInt16BE(tcp + 2);
  if (sourcePort !== serverPort && destinationPort !== serverPort) return null;
  const tcpHeader = (pcap[tcp + 12]! >> 4) * 4;
  const flags = pcap[tcp + 13]!;
  const fromServer = sourcePort === serverPort;
  return {
    timeUs,
    clientPort: fromServer ? destinationPort : sourcePort,
    fromServer,
    fin: (flags & 0x01) !== 0,
    syn: (flags & 0x02) !== 0,
    rst: (flags & 0x04) !== 0,
    ack: (flags & 0x10) !== 0,
    payloadBytes: Math.max(0, ipTotal - ipHeader - tcpHeader),
  };
}

/** How a lost exchange ended on the wire. */
export const WIRE_LOSSES = ['unread-reset', 'reset-after-fin', 'fin-no-reply', 'refused', 'reset-before-answer'] as const;
export type WireLoss = (typeof WIRE_LOSSES)[number];

/** Each ending, as the calibration table names it. */
export const WIRE_LOSS_LABELS: Record<WireLoss, string> = {
  'unread-reset': 'RST, request unanswered',
  'reset-after-fin': 'FIN after response, RST',
  'fin-no-reply': 'FIN after response, none',
  refused: 'connect refused',
  'reset-before-answer': 'RST before any answer',
};

export interface WireClassification {
  /** Lost exchanges by how they ended. */
  readonly losses: Record<WireLoss, number>;
  readonly connections: number;
  readonly requests: number;
  readonly responses: number;
}

/**
 * Follows each connection (a client port; a port used again after its connection ended is a new
 * one): its requests are the client's segments with a payload (ab's request fits one, and ab waits
 * for each response), and a request is answered when the server sends data after it (however many
 * segments the response takes). A request still unanswered when the connection ends is lost, and
 * how the connection ended says why.
 */
export function classifyLosses(segments: readonly Segment[]): WireClassification {
  const losses = Object.fromEntries(WIRE_LOSSES.map((l) => [l, 0])) as Record<WireLoss, number>;
  interface Conn {
    established: boolean;
    requests: number;
    responses: number;
    /** Requests written after the server's FIN. */
    afterFin: number;
    serverFin: boolean;
    serverRst: boolean;
    ended: boolean;
  }
  const open = new Map<number, Conn>();
  let connections = 0;
  let requests = 0;
  let responses = 0;
  const end = (c: Conn) => {
    c.ended = true;
    const lost = c.requests - c.responses;
    if (!c.established) {
      if (c.serverRst) losses.refused++;
      return;
    }
    if (lost === 0) return;
    // The client wrote after the server's FIN: those are the lost ones.
    if (c.afterFin > 0) losses[c.serverRst ? 'reset-after-fin' : 'fin-no-reply'] += lost;
    else if (c.serverRst) losses[c.responses === 0 ? 'reset-before-answer' : 'unread-reset'] += lost;
    // Closed without a reset and without answering: the client's requests met a FIN.
    else losses['fin-no-reply'] += lost;
  };
  for (const s of segments) {
    let c = open.get(s.clientPort);
    if (s.syn && !s.fromServer && !s.ack) {
      if (c && !c.ended) end(c);
      c = { established: false, requests: 0, responses: 0, afterFin: 0, serverFin: false, serverRst: false, ended: false };
      open.set(s.clientPort, c);
      connections++;
      continue;
    }
    if (!c || c.ended) continue;
    if (s.fromServer) {
      if (s.syn && s.ack) c.established = true;
      // The first data after a request answers it; the rest of a long response answers nothing more.
      if (s.payloadBytes > 0 && c.responses < c.requests) {
        c.responses++;
        responses++;
      }
      if (s.fin) c.serverFin = true;
      if (s.rst) {
        c.serverRst = true;
        end(c);
      }
    } else {
      if (s.payloadBytes > 0) {
        c.requests++;
        requests++;
        if (c.serverFin) c.afterFin++;
      }
      if (s.rst) end(c);
    }
  }
  for (const c of open.values()) if (!c.ended) end(c);
  return { losses, connections, requests, responses };
}

/** tcpdump on the loopback interface for one TCP port, headers only, into a pcap file. */
export class LoopbackCapture {
  private readonly child: ChildProcess;
  private stderr = '';
  private readonly started: Promise<void>;

  constructor(
    readonly file: string,
    port: number,
  ) {
    // Immediate mode: without it libpcap hands packets over a block at a time, and a capture stopped
    // within a block's timeout writes nothing (seen: "0 packets captured, 220 received by filter").
    this.child = spawn('tcpdump', ['-i', 'lo', '-n', '-s', '96', '-B', '16384', '--immediate-mode', '-U', '-w', file, `tcp port ${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.started = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new CaptureStartError(`tcpdump did not start listening within 5 s: ${this.stderr.trim()}`)), 5000);
      this.child.stderr!.on('data', (chunk: Buffer) => {
        this.stderr += chunk.toString();
        // tcpdump says it is listening once its filter is in place.
        if (/listening on/.test(this.stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
      this.child.once('error', (error) => {
        clearTimeout(timer);
        reject(new CaptureStartError(`tcpdump could not start (${error.message}): apt-get install tcpdump, and run as root or with CAP_NET_RAW`));
      });
      this.child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new CaptureStartError(`tcpdump exited (${code}) before it listened: ${this.stderr.trim()}`));
      });
    });
  }

  ready(): Promise<void> {
    return this.started;
  }

  /** Stop it; returns the packets the kernel dropped (a capture that lost packets cannot be trusted for counts). */
  async stop(): Promise<{ droppedByKernel: number }> {
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGINT');
    await exited;
    const dropped = /(\d+) packets? dropped by kernel/.exec(this.stderr);
    return { droppedByKernel: dropped ? Number(dropped[1]) : 0 };
  }

  segments(serverPort: number): Segment[] {
    return readSegments(readFileSync(this.file), serverPort);
  }
}
