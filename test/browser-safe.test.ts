import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

/**
 * model/ and simulator/ run in the browser (the viz runs the very same simulator): nothing they import,
 * directly or through a package, may be Node-only. esbuild bundles them for the browser, as a page
 * would load them, and fails on a module it cannot resolve there (`node:fs`, a package's Node entry).
 * Vite, which builds the viz, only warns and leaves such a module out, so the viz's build is no check.
 */
const ROOT = new URL('..', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** esbuild's errors for a browser bundle of these files (each with its file and line), or none. */
async function browserBundleErrors(entryPoints: string[]): Promise<string[]> {
  try {
    await build({ entryPoints, bundle: true, platform: 'browser', format: 'esm', write: false, outdir: join(tmpdir(), 'quiesce-browser-safe'), logLevel: 'silent', absWorkingDir: ROOT });
    return [];
  } catch (e) {
    const errors = (e as { errors?: { text: string; location: { file: string; line: number } | null }[] }).errors ?? [];
    // esbuild names a file relative to its working directory: absolute here, wherever the suite runs.
    return errors.map((x) => `${x.location ? `${resolve(ROOT, x.location.file)}:${x.location.line}: ` : ''}${x.text}`);
  }
}

describe('browser-safe parts', () => {
  for (const part of ['model', 'simulator']) {
    it(`${part}/ bundles for the browser, everything it imports included, and reads no Node global`, async () => {
      const files = sources(join(ROOT, part));
      expect(files.length).toBeGreaterThan(3);
      expect(await browserBundleErrors(files)).toEqual([]);
      // A global is no import: the bundle would load, and fail where it runs.
      for (const file of files) expect(readFileSync(file, 'utf8'), file).not.toMatch(/\bprocess\.|\brequire\(|\bBuffer\./);
    });
  }

  it('the bundle check fails on a Node-only import, naming the file', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'quiesce-browser-safe-')), 'reads-a-file.ts');
    writeFileSync(file, "import { readFileSync } from 'node:fs';\nexport const read = () => readFileSync('x');\n");
    const errors = await browserBundleErrors([file]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBe(`${file}:1: Could not resolve "node:fs"`);
  });
});
