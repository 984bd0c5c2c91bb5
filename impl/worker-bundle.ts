/**
 * Workers run from one bundled JavaScript file, kept between server starts.
 *
 * A worker is a fresh process every time one is spawned — at every HUP, every
 * max-requests recycle, every replacement. Loading the TypeScript sources
 * through tsx costs about 0.45 s of CPU per worker; the bundle loads in about
 * 0.1 s. Under the seed's load (a recycle every few hundred milliseconds) that
 * difference is most of the server's CPU. The file is named by its content's
 * hash, so concurrent servers share it and a code change gets a new one;
 * it lives in node_modules/.cache/quiesce, so its own imports (tsx, for a
 * TypeScript app) resolve from the package. bin/bundle-cache.mjs says when a
 * kept one is reused.
 */
import { fileURLToPath } from 'node:url';
import { bundleSync } from '../bin/bundle-cache.mjs';

const ENTRY = fileURLToPath(new URL('./worker-main.ts', import.meta.url));

/** The script a worker process starts with: `node <bootScript> <bundle> <code cache> spare`. */
export const WORKER_BOOT_SCRIPT = fileURLToPath(new URL('./worker-boot.cjs', import.meta.url));

/** The worker bundle's path: kept from an earlier start while its sources are unchanged (bin/bundle-cache.mjs). */
export function workerBundle(): string {
  return bundleSync('quiesce-worker', 'cjs', {
    entryPoints: [ENTRY],
    // A classic script, not a module: V8 keeps a code cache for a script (see worker-boot.cjs).
    format: 'cjs',
    // The boot script passes the bundle's own URL: a classic script has no import.meta.
    define: { 'import.meta.url': '__bundle_url' },
    // A user's TypeScript app is loaded through tsx at run time, from the package's own node_modules.
    external: ['tsx', 'tsx/*'],
  });
}

/**
 * Where V8's code cache for a bundle lives (written and read by worker-boot.cjs): next to it, named
 * by the Node version and architecture, whose V8 alone can read it (V8 also checks, and rejects a
 * cache made by another version or with other flags).
 */
export function codeCachePath(bundle: string): string {
  return `${bundle}.${process.version}-${process.arch}.v8cache`;
}
