import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileLines } from '../../impl/trace-file.ts';
import { tempDir } from './server.ts';

describe('reading a trace file in pieces', () => {
  it('yields exactly the lines, including those that straddle a 4 MiB piece and multi-byte characters', () => {
    const lines = Array.from({ length: 120_000 }, (_, i) => `{"t":${i},"actor":"client/${i}","note":"${'é'.repeat(i % 40)}"}`);
    const path = join(tempDir(), 'big.jsonl');
    writeFileSync(path, lines.join('\n') + '\n');
    expect([...fileLines(path)]).toEqual(lines);
  });
});
