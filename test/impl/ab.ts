/** ApacheBench (Debian's apache2-utils), run for real against the server, its report parsed. */
import { spawn } from 'node:child_process';

export interface AbReport {
  complete: number;
  failed: number;
  connect: number;
  receive: number;
  length: number;
  exceptions: number;
  code: number | null;
  output: string;
}

export function runAb(args: string[]): Promise<AbReport> {
  return new Promise((resolve, reject) => {
    const child = spawn('ab', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (error) => reject(new Error(`cannot run ab (apt-get install apache2-utils): ${error.message}`)));
    child.on('close', (code) => {
      const number = (pattern: RegExp) => Number(pattern.exec(output)?.[1] ?? Number.NaN);
      resolve({
        complete: number(/Complete requests:\s+(\d+)/),
        failed: number(/Failed requests:\s+(\d+)/),
        connect: number(/Connect: (\d+), Receive/) || 0,
        receive: number(/Receive: (\d+)/) || 0,
        length: number(/Length: (\d+)/) || 0,
        exceptions: number(/Exceptions: (\d+)/) || 0,
        code,
        output,
      });
    });
  });
}
