import type { BuildOptions } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bundle, bundleSync, cacheDir, markUsed, PACKAGE_ROOT, prune, sourceUrlPlugin } from '../../bin/bundle-cache.mjs';

/** Temporary directories and files in the cache, removed after each test whatever its outcome. */
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  // What this file's builds kept in the package's cache (bundles and manifests of its own names).
  for (const file of readdirSync(cacheDir())) if (file.startsWith(`test-`) && file.includes(`-${process.pid}-`)) rmSync(join(cacheDir(), file), { force: true });
});

/** A tiny package of two modules under a fresh root; returns the root. */
function sources(message: string): string {
  const root = mkdtempSync(join(tmpdir(), 'quiesce-bundle-'));
  dirs.push(root);
  writeFileSync(join(root, 'entry.ts'), "import { message } from './dep.ts';\nconsole.log(message);\n");
  writeFileSync(join(root, 'dep.ts'), `export const message: string = ${JSON.stringify(message)};\n`);
  return root;
}

const OPTIONS: BuildOptions = { entryPoints: ['entry.ts'], format: 'cjs' };
/** A name of its own per test: the cache is the package's, shared with the real bundles. */
const uniqueName = (label: string) => `test-${label}-${process.pid}-${Date.now()}`;
/** The file's identity on disk: a kept bundle is the same file, a rebuilt one a new file (written by rename). */
const identity = (path: string) => `${statSync(path).ino}:${statSync(path).mtimeMs}`;
const run = (path: string) => spawnSync(process.execPath, [path], { encoding: 'utf8' }).stdout;


describe('bin/bundle-cache.mjs: a bundle is kept while nothing that went into it changed', () => {
  it('reuses the kept file for unchanged sources, and builds again when any source changes', () => {
    const root = sources('one');
    const name = uniqueName('reuse');
    const first = bundleSync(name, 'cjs', OPTIONS, root);
    expect(run(first)).toBe('one\n');
    expect(bundleSync(name, 'cjs', OPTIONS, root)).toBe(first);
    const kept = identity(first);
    expect(identity(bundleSync(name, 'cjs', OPTIONS, root))).toBe(kept);

    // An imported module changes: a new bundle, with the new behaviour.
    writeFileSync(join(root, 'dep.ts'), 'export const message: string = "two";\n');
    const second = bundleSync(name, 'cjs', OPTIONS, root);
    expect(second).not.toBe(first);
    expect(run(second)).toBe('two\n');
    // The older file stays: a server started from it may still spawn workers from it.
    expect(run(first)).toBe('one\n');
  });

  it('builds again when the options, a key file (tsconfig.json) or the kept file itself change, and when the manifest is unreadable', () => {
    const root = sources('three');
    const name = uniqueName('key');
    const first = bundleSync(name, 'cjs', OPTIONS, root);
    const built = identity(first);

    const minified = bundleSync(name, 'cjs', { ...OPTIONS, minify: true }, root);
    expect(minified).not.toBe(first);
    expect(run(minified)).toBe('three\n');

    // Same output as the first build (same name), but built again: the key changed.
    writeFileSync(join(root, 'tsconfig.json'), '{}\n');
    const afterTsconfig = bundleSync(name, 'cjs', OPTIONS, root);
    expect(afterTsconfig).toBe(first);
    expect(identity(afterTsconfig)).not.toBe(built);

    unlinkSync(afterTsconfig);
    const afterDelete = bundleSync(name, 'cjs', OPTIONS, root);
    expect(run(afterDelete)).toBe('three\n');

    const manifest = join(cacheDir(), `${name}.manifest.json`);
    writeFileSync(manifest, '{ not json');
    const afterCorrupt = bundleSync(name, 'cjs', OPTIONS, root);
    expect(run(afterCorrupt)).toBe('three\n');
    expect(JSON.parse(readFileSync(manifest, 'utf8')).file).toBe(basename(afterCorrupt));
  });

  it("gives each of our modules its own import.meta.url inside the bundle, and leaves the words alone where they are quoted", async () => {
    const root = mkdtempSync(join(tmpdir(), 'quiesce-bundle-'));
    dirs.push(root);
    writeFileSync(join(root, 'entry.ts'), "import { where } from './lib/where.ts';\nconsole.log(JSON.stringify([import.meta.url, where, 'import.meta.url']));\n");
    const lib = join(root, 'lib');
    mkdirSync(lib);
    writeFileSync(join(lib, 'where.ts'), 'export const where: string = import.meta.url;\n');
    const name = uniqueName('url');
    const path = await bundle(name, 'mjs', { entryPoints: ['entry.ts'], format: 'esm', plugins: [sourceUrlPlugin] }, root);
    const [entryUrl, libUrl, quoted] = JSON.parse(run(path)) as string[];
    expect(entryUrl).toBe(`file://${join(root, 'entry.ts')}`);
    expect(libUrl).toBe(`file://${join(lib, 'where.ts')}`);
    expect(quoted).toBe('import.meta.url');
  });

  it('a source that does not compile fails the build with a message naming its file and line, and keeps nothing', () => {
    const root = sources('four');
    writeFileSync(join(root, 'dep.ts'), 'export const message: string = ;\n');
    const name = uniqueName('broken');
    expect(() => bundleSync(name, 'cjs', OPTIONS, root)).toThrow(/dep\.ts:1:\d+: ERROR/);
    expect(existsSync(join(cacheDir(), `${name}.manifest.json`))).toBe(false);
  });
});

describe('bin/bundle-cache.mjs: pruning', () => {
  const DAY_MS = 24 * 3600 * 1000;
  const hash = (i: number) => i.toString(16).padStart(16, '0');

  it('deletes only bundles beyond the newest three that are unused for a week, with what lives beside them, and old partial writes', () => {
    const name = uniqueName('prune');
    const other = uniqueName('prune-other');
    const dir = cacheDir();
    const nowMs = Date.now();
    const made: string[] = [];
    const make = (file: string, ageDays: number) => {
      const path = join(dir, file);
      writeFileSync(path, 'x');
      const at = new Date(nowMs - ageDays * DAY_MS);
      utimesSync(path, at, at);
      made.push(path);
      dirs.push(path);
    };
    // Ages in days: the newest three (2, 3, 4) stay; of the rest, 5 days is used within the week and
    // stays, 10, 20 and 30 go.
    const ages = [30, 20, 10, 4, 3, 2, 5];
    ages.forEach((age, i) => {
      make(`${name}-${hash(i)}.cjs`, age);
      make(`${name}-${hash(i)}.cjs.v20-x64.v8cache`, age);
    });
    make(`${other}-${hash(99)}.cjs`, 40); // another name's: not this prune's
    make(`${name}-${hash(0)}.cjs.123.tmp`, 2); // a partial write a crash left behind
    make(`${name}-${hash(1)}.cjs.456.tmp`, 0.5); // one that may still be in progress

    const deleted = prune(name, nowMs).sort();
    const expected = [0, 1, 2].flatMap((i) => [`${name}-${hash(i)}.cjs`, `${name}-${hash(i)}.cjs.v20-x64.v8cache`]);
    expect(deleted).toEqual([...expected, `${name}-${hash(0)}.cjs.123.tmp`].sort());
    for (const path of made) expect(existsSync(path)).toBe(!deleted.includes(basename(path)));
  });

  it('a bundle marked used is spared however old its build, and the newest three stay however old', () => {
    const name = uniqueName('prune-used');
    const dir = cacheDir();
    const nowMs = Date.now();
    const paths = [0, 1, 2, 3].map((i) => join(dir, `${name}-${hash(i)}.cjs`));
    dirs.push(...paths);
    paths.forEach((path, i) => {
      writeFileSync(path, 'x');
      const at = new Date(nowMs - (40 - i) * DAY_MS);
      utimesSync(path, at, at);
    });
    markUsed(paths[0]!); // the oldest build, still in use by a running server
    // Newest now: paths[0] (just used), paths[3], paths[2]; paths[1] is beyond them and 39 days unused.
    expect(prune(name, Date.now() + 1000)).toEqual([basename(paths[1]!)]);
    expect(paths.map((path) => existsSync(path))).toEqual([true, false, true, true]);
  });
});

describe('bin/quiesce.mjs: a source that does not compile', () => {
  it('one line naming the file and line, exit 70, no stack trace — and nothing kept', () => {
    // A copy of the package whose CLI entry is broken, its node_modules the real one's.
    const root = mkdtempSync(join(tmpdir(), 'quiesce-broken-'));
    dirs.push(root);
    mkdirSync(join(root, 'bin'));
    mkdirSync(join(root, 'cli'));
    for (const file of ['quiesce.mjs', 'bundle-cache.mjs']) writeFileSync(join(root, 'bin', file), readFileSync(new URL(`../../bin/${file}`, import.meta.url)));
    writeFileSync(join(root, 'cli', 'main.ts'), 'export async function main(): Promise<number> {\n  return = 1;\n}\n');
    symlinkSync(join(PACKAGE_ROOT, 'node_modules'), join(root, 'node_modules'));
    // The package's own CLI, run first: its bundle is kept (on a fresh clone, this builds it).
    expect(spawnSync(process.execPath, [join(PACKAGE_ROOT, 'bin', 'quiesce.mjs'), '--version'], { encoding: 'utf8' }).status).toBe(0);
    const manifest = join(cacheDir(), 'quiesce-cli.manifest.json');
    const before = readFileSync(manifest, 'utf8');
    const run = spawnSync(process.execPath, [join(root, 'bin', 'quiesce.mjs'), '--version'], { encoding: 'utf8' });
    expect(run.status).toBe(70);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^quiesce: cannot build the command from its sources \(Build failed with 1 error:\ncli\/main\.ts:2:\d+: ERROR: .*\)\n$/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    // The package's own CLI bundle is as it was.
    expect(readFileSync(manifest, 'utf8')).toBe(before);
  });
});
