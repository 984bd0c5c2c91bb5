import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/** model/ and simulator/ run in the browser (the viz runs the very same simulator): no Node-only imports. */
const ROOT = new URL('..', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const NODE_ONLY = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

describe('browser-safe parts', () => {
  for (const part of ['model', 'simulator']) {
    it(`${part}/ imports nothing Node-only`, () => {
      const files = sources(join(ROOT, part));
      expect(files.length).toBeGreaterThan(3);
      for (const file of files) {
        const imports = [...readFileSync(file, 'utf8').matchAll(/from\s+'([^']+)'/g)].map((m) => m[1]!);
        for (const spec of imports) expect(NODE_ONLY.has(spec), `${file} imports ${spec}`).toBe(false);
        expect(readFileSync(file, 'utf8'), file).not.toMatch(/\bprocess\.|\brequire\(/);
      }
    });
  }
});
