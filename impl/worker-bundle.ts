/**
 * Workers run from one bundled JavaScript file, built once per arbiter start.
 *
 * A worker is a fresh process every time one is spawned — at every HUP, every
 * max-requests recycle, every replacement. Loading the TypeScript sources
 * through tsx costs about 0.45 s of CPU per worker; the bundle loads in about
 * 0.1 s. Under the seed's load (a recycle every few hundred milliseconds) that
 * difference is most of the server's CPU. The file is named by its content's
 * hash, so concurrent servers share it and a code change gets a new one;
 * it lives in node_modules/.cache/quiesce.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const ENTRY = fileURLToPath(new URL('./worker-main.ts', import.meta.url));
const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** In the package's node_modules, so the bundle's own imports (tsx, for TypeScript apps) resolve. */
const CACHE_DIR = fileURLToPath(new URL('../node_modules/.cache/quiesce/', import.meta.url));

function cacheDir(): string {
  try {
    mkdirSync(CACHE_DIR, { recursive: true });
    return CACHE_DIR;
  } catch {
    return tmpdir(); // a read-only install: TypeScript apps will not load, JavaScript ones will
  }
}

/** The script a worker process starts with: `node <bootScript> <bundle> <code cache> spare`. */
export const WORKER_BOOT_SCRIPT = fileURLToPath(new URL('./worker-boot.cjs', import.meta.url));

/** Build (or reuse) the worker bundle; returns its path. */
export function workerBundle(): string {
  const result = buildSync({
    entryPoints: [ENTRY],
    bundle: true,
    platform: 'node',
    // A classic script, not a module: V8 keeps a code cache for a script (see worker-boot.cjs).
    format: 'cjs',
    target: 'node20',
    // The boot script passes the bundle's own URL: a classic script has no import.meta.
    define: { 'import.meta.url': '__bundle_url' },
    write: false,
    // A user's TypeScript app is loaded through tsx at run time, from the package's own node_modules.
    external: ['tsx', 'tsx/*'],
    logLevel: 'silent',
    // Paths in the bundle (its comments) relative to the package, not to wherever the server was
    // started: the same sources give the same bundle, and so the same file and code cache, from any cwd.
    absWorkingDir: PACKAGE_ROOT,
  });
  const code = result.outputFiles[0]!.contents;
  const hash = createHash('sha256').update(code).digest('hex').slice(0, 16);
  const path = join(cacheDir(), `quiesce-worker-${hash}.cjs`);
  if (!existsSync(path)) {
    const partial = `${path}.${process.pid}.tmp`;
    writeFileSync(partial, code);
    renameSync(partial, path);
  }
  return path;
}

/**
 * Where V8's code cache for a bundle lives (written and read by worker-boot.cjs): next to it, named
 * by the Node version and architecture, whose V8 alone can read it (V8 also checks, and rejects a
 * cache made by another version or with other flags).
 */
export function codeCachePath(bundle: string): string {
  return `${bundle}.${process.version}-${process.arch}.v8cache`;
}
