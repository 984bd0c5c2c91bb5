/**
 * The packet capture's reading (conformance/capture.ts): a pcap written
 * here byte by byte, as tcpdump -i lo writes one, and what each kind of
 * loss looks like on the wire.
 */
import { describe, expect, it } from 'vitest';
import { CaptureFormatError, CaptureStartError, classifyLosses, LoopbackCapture, readSegments, type Segment } from '../../conformance/capture.ts';

const SERVER = 8000;

interface Packet {
  readonly from: 'client' | 'server';
  readonly port: number;
  readonly flags: string; // any of S A F R P
  readonly payload?: number;
}

/** A classic little-endian µs pcap of Ethernet frames carrying IPv4/TCP. */
function pcap(packets: readonly Packet[], options: { nanos?: boolean; bigEndian?: boolean } = {}): Buffer {
  const u32 = (b: Buffer, v: number, at: number) => (options.bigEndian ? b.writeUInt32BE(v, at) : b.writeUInt32LE(v, at));
  const header = Buffer.alloc(24);
  u32(header, options.nanos ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  u32(header, 96, 16);
  u32(header, 1, 20);
  const frames = packets.map((p, i) => {
    const payload = p.payload ?? 0;
    const frame = Buffer.alloc(14 + 20 + 20 + payload);
    frame.writeUInt16BE(0x0800, 12);
    const ip = 14;
    frame[ip] = 0x45;
    frame.writeUInt16BE(20 + 20 + payload, ip + 2);
    frame[ip + 9] = 6;
    const tcp = ip + 20;
    frame.writeUInt16BE(p.from === 'client' ? p.port : SERVER, tcp);
    frame.writeUInt16BE(p.from === 'client' ? SERVER : p.port, tcp + 2);
    frame[tcp + 12] = 5 << 4;
    frame[tcp + 13] = [...p.flags].reduce((f, c) => f | ({ F: 0x01, S: 0x02, R: 0x04, P: 0x08, A: 0x10 } as Record<string, number>)[c]!, 0);
    const record = Buffer.alloc(16);
    u32(record, 1000 + i, 0);
    u32(record, options.nanos ? 500_000 : 500, 4);
    u32(record, frame.length, 8);
    u32(record, frame.length, 12);
    return Buffer.concat([record, frame]);
  });
  return Buffer.concat([header, ...frames]);
}

const handshake = (port: number): Packet[] => [
  { from: 'client', port, flags: 'S' },
  { from: 'server', port, flags: 'SA' },
  { from: 'client', port, flags: 'A' },
];
const exchange = (port: number): Packet[] => [
  { from: 'client', port, flags: 'PA', payload: 80 },
  { from: 'server', port, flags: 'PA', payload: 150 },
];

describe('readSegments', () => {
  it("reads tcpdump's classic pcap in either byte order and timestamp unit, keeping only the server's port", () => {
    const packets = [...handshake(40001), ...exchange(40001), { from: 'client' as const, port: 40001, flags: 'FA' }];
    for (const options of [{}, { nanos: true }, { bigEndian: true }]) {
      const segments = readSegments(pcap(packets, options), SERVER);
      expect(segments.map((s) => [s.fromServer, s.syn, s.ack, s.fin, s.rst, s.payloadBytes])).toEqual([
        [false, true, false, false, false, 0],
        [true, true, true, false, false, 0],
        [false, false, true, false, false, 0],
        [false, false, true, false, false, 80],
        [true, false, true, false, false, 150],
        [false, false, true, true, false, 0],
      ]);
      expect(segments[0]!.timeUs).toBe(1000 * 1e6 + 500);
      expect(segments.every((s) => s.clientPort === 40001)).toBe(true);
    }
    expect(readSegments(pcap(packets), 9999)).toEqual([]);
  });

  it('refuses what is not a classic pcap, saying what it expected', () => {
    expect(() => readSegments(Buffer.alloc(10), SERVER)).toThrow(CaptureFormatError);
    expect(() => readSegments(Buffer.from('0a0d0d0a'.padEnd(48, '0'), 'hex'), SERVER)).toThrow(/not a pcap file .*pcapng/);
  });
});

describe('classifyLosses: each lost exchange by how its connection ended', () => {
  const classify = (packets: readonly Packet[]) => classifyLosses(readSegments(pcap(packets), SERVER) as Segment[]);

  it('answered exchanges lose nothing, whoever closes', () => {
    const c = classify([...handshake(1), ...exchange(1), ...exchange(1), { from: 'server', port: 1, flags: 'FA' }, { from: 'client', port: 1, flags: 'FA' }]);
    expect(c).toMatchObject({ connections: 1, requests: 2, responses: 2 });
    expect(Object.values(c.losses).every((n) => n === 0)).toBe(true);
  });

  it('a request after the last response, then the server RST: an unread request reset (gthread abandoning a kept-alive connection)', () => {
    const c = classify([...handshake(1), ...exchange(1), { from: 'client', port: 1, flags: 'PA', payload: 80 }, { from: 'server', port: 1, flags: 'R' }]);
    expect(c.losses['unread-reset']).toBe(1);
  });

  it('the server FIN after a response, the client writes, the server RST: reset after FIN; without the RST: no reply', () => {
    const base = [...handshake(1), ...exchange(1), { from: 'server' as const, port: 1, flags: 'FA' }, { from: 'client' as const, port: 1, flags: 'PA', payload: 80 }];
    expect(classify([...base, { from: 'server', port: 1, flags: 'R' }]).losses['reset-after-fin']).toBe(1);
    expect(classify([...base, { from: 'client', port: 1, flags: 'FA' }]).losses['fin-no-reply']).toBe(1);
  });

  it('a SYN answered by RST: refused; a connection reset before any answer: reset before answer', () => {
    expect(classify([{ from: 'client', port: 1, flags: 'S' }, { from: 'server', port: 1, flags: 'RA' }]).losses.refused).toBe(1);
    const never = classify([...handshake(2), { from: 'client', port: 2, flags: 'PA', payload: 80 }, { from: 'server', port: 2, flags: 'R' }]);
    expect(never.losses['reset-before-answer']).toBe(1);
  });

  it('a port used again is a new connection', () => {
    const c = classify([...handshake(1), ...exchange(1), { from: 'client', port: 1, flags: 'PA', payload: 80 }, { from: 'server', port: 1, flags: 'R' }, ...handshake(1), ...exchange(1)]);
    expect(c.connections).toBe(2);
    expect(c.losses['unread-reset']).toBe(1);
    expect(c.responses).toBe(2);
  });
});

describe('LoopbackCapture', () => {
  it('without tcpdump on the PATH, says so and how to get it (calibrate --capture turns it into a one-line usage error)', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const capture = new LoopbackCapture('/tmp/never.pcap', 18599);
      await expect(capture.ready()).rejects.toThrow(CaptureStartError);
      await expect(capture.ready()).rejects.toThrow(/tcpdump could not start .*apt-get install tcpdump/);
    } finally {
      process.env.PATH = path;
    }
  });
});
