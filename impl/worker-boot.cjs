/**
 * A worker process's first script: `node worker-boot.cjs <bundle> <code cache> spare`.
 *
 * Why it exists: a worker is a fresh Node.js process at every recycle (Node
 * cannot fork), and under max-requests a worker lives for a few hundred
 * requests. Most of its life it would spend compiling: the bundle at load,
 * then each function lazily on its first call, in every new worker again.
 * V8 can keep that work: a script's code cache, created after the script has
 * run, holds the bytecode of every function compiled so far. The first worker
 * that served and exits writes it next to the bundle; every later worker
 * loads the bundle with it and starts with its request path already compiled.
 * V8 checks the cache against the source and its own version and flags, and
 * rejects one that does not fit (`cachedDataRejected`): then the script
 * compiles as if there were none, and this worker writes a fresh one.
 *
 * The cache is bytecode only: behaviour is the bundle's, with or without it.
 * Plain CommonJS, run by node directly: no TypeScript loader in a worker.
 */
'use strict';
const { readFileSync, renameSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { pathToFileURL } = require('node:url');
const vm = require('node:vm');

const [bundlePath, cachePath] = process.argv.slice(2);
if (!bundlePath || !cachePath) {
  process.stderr.write('quiesce worker: no bundle given (this process is spawned by `quiesce serve`)\n');
  process.exit(2);
}

let cachedData;
try {
  cachedData = readFileSync(cachePath);
} catch {
  cachedData = undefined; // the first worker of this bundle: it will write one
}

const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __bundle_url) {${readFileSync(bundlePath, 'utf8')}\n})`, {
  filename: bundlePath,
  cachedData,
});
const needsCache = cachedData === undefined || script.cachedDataRejected === true;

const bundleModule = { exports: {} };
script.runInThisContext()(bundleModule.exports, createRequire(bundlePath), bundleModule, bundlePath, require('node:path').dirname(bundlePath), pathToFileURL(bundlePath).href);

let kept = false;
bundleModule.exports.main({
  // A script from a code cache cannot import() (Node 20 drops its dynamic-import handler): this module can.
  importModule: (specifier) => import(specifier),
  keepCompiledCode() {
    if (!needsCache || kept) return;
    kept = true;
    // Another worker may write the same file at the same moment: each writes its own, the rename is atomic.
    const partial = `${cachePath}.${process.pid}.tmp`;
    try {
      writeFileSync(partial, script.createCachedData());
      renameSync(partial, cachePath);
    } catch {
      // A read-only install, a full disk: the next worker compiles, as this one did. Nothing is lost.
    }
  },
});
