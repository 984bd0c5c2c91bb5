/**
 * ApacheBench (Debian's apache2-utils), run for real against a server, its report parsed: the
 * load of the seeds, the load tests, the benchmarks and the calibration.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface AbReport {
  complete: number;
  failed: number;
  connect: number;
  receive: number;
  length: number;
  exceptions: number;
  /** "Keep-Alive requests": answered on a connection the server kept (with -k); 0 without the line. */
  keepAliveRequests: number;
  /** "Requests per second". */
  requestsPerSec: number;
  /** Percentiles of the total time per request, from ab's `-e` table (µs resolution; its report prints whole ms). */
  p50Ms: number;
  p99Ms: number;
  /** The 101 percentiles 0, 1, …, 100 (empty when ab wrote no table). */
  percentilesMs: number[];
  code: number | null;
  output: string;
}

/** `onSpawn`: told ab's pid as it starts (a sampler of its CPU). */
export function runAb(args: string[], options: { onSpawn?: (pid: number) => void } = {}): Promise<AbReport> {
  const dir = mkdtempSync(join(tmpdir(), 'quiesce-ab-'));
  const percentiles = join(dir, 'percentiles.csv');
  return new Promise((resolve, reject) => {
    // -e goes before the URL, which ab takes as its last argument
    const child = spawn('ab', ['-e', percentiles, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (error) => reject(new Error(`cannot run ab (apt-get install apache2-utils): ${error.message}`)));
    child.on('close', (code) => {
      const number = (pattern: RegExp) => Number(pattern.exec(output)?.[1] ?? Number.NaN);
      const table = readPercentiles(percentiles);
      rmSync(dir, { recursive: true, force: true });
      resolve({
        complete: number(/Complete requests:\s+(\d+)/),
        failed: number(/Failed requests:\s+(\d+)/),
        connect: number(/Connect: (\d+), Receive/) || 0,
        receive: number(/Receive: (\d+)/) || 0,
        length: number(/Length: (\d+)/) || 0,
        exceptions: number(/Exceptions: (\d+)/) || 0,
        keepAliveRequests: number(/Keep-Alive requests:\s+(\d+)/) || 0,
        requestsPerSec: number(/Requests per second:\s+([\d.]+)/),
        p50Ms: table.get(50) ?? Number.NaN,
        p99Ms: table.get(99) ?? Number.NaN,
        percentilesMs: table.size === 101 ? Array.from({ length: 101 }, (_, i) => table.get(i)!) : [],
        code,
        output,
      });
    });
  });
}

/** ab's `-e` file: "Percentage served,Time in ms" then one row per percent, 0–100. Absent when ab failed early. */
function readPercentiles(file: string): Map<number, number> {
  const table = new Map<number, number>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return table;
  }
  for (const line of text.split('\n').slice(1)) {
    const [percent, ms] = line.split(',');
    if (percent !== undefined && ms !== undefined) table.set(Number(percent), Number(ms));
  }
  return table;
}
