/**
 * The TypeScript sources run as bundles that esbuild builds once and keeps, reused while nothing
 * that went into them has changed.
 *
 * Why: the package has no build step, and every process it starts used to pay for that. Loading the
 * CLI through tsx's loader took about 0.45 s per start, and bundling a worker's code took another
 * 0.2 s at every server start; the test suite starts several hundred servers and CLIs. A kept bundle
 * loads in under 0.1 s.
 *
 * When a bundle may be reused: its manifest (next to it) names every source file esbuild read for
 * it, with one hash over their contents, and a key for everything else the output depends on (the
 * build's options, esbuild's version, package.json, package-lock.json and tsconfig.json). A start
 * reads the manifest, hashes those files again (a few dozen small ones; under 10 ms) and compares.
 * Any difference, a missing file, or a manifest that cannot be read: the bundle is built again, as
 * if there were none. Packages in node_modules are not hashed one by one: they change only with
 * package-lock.json, which the key holds.
 *
 * Bundles are named by their content's hash and written by rename, so servers started at once from
 * the same sources share one file. Older ones are pruned when a new one is kept, but only those that
 * are both beyond the newest few and unused for a week: a server still running on an older bundle
 * needs it (a worker loads its bundle again at every spawn, and marks it used). `rm -rf
 * node_modules/.cache/quiesce` forgets them all.
 *
 * Plain JavaScript on purpose: bin/quiesce.mjs runs it before any TypeScript can load.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The package's root: where bundles' paths are relative to, and whose node_modules resolves their imports. */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** In the package's own node_modules, so a bundle's external imports (tsx, esbuild, packages) resolve from it. */
const CACHE_DIR = join(PACKAGE_ROOT, 'node_modules', '.cache', 'quiesce');
/** Files outside a bundle's inputs whose contents change its output, and this file, which builds it. */
const KEY_FILES = ['package.json', 'package-lock.json', 'tsconfig.json', 'bin/bundle-cache.mjs'];

const requireHere = createRequire(import.meta.url);

/** Where bundles and their manifests are kept. */
export function cacheDir() {
  try {
    mkdirSync(CACHE_DIR, { recursive: true });
    return CACHE_DIR;
  } catch {
    return tmpdir(); // a read-only install
  }
}

function sha256(...parts) {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex');
}

function readOrEmpty(path) {
  try {
    return readFileSync(path);
  } catch {
    return Buffer.alloc(0);
  }
}

/** What the output depends on besides its source files. */
function buildKey(name, options, root) {
  const { plugins = [], ...rest } = options;
  const esbuildVersion = JSON.parse(readFileSync(requireHere.resolve('esbuild/package.json'), 'utf8')).version;
  const described = JSON.stringify({ name, esbuildVersion, options: rest, plugins: plugins.map((plugin) => plugin.name) });
  return sha256(described, root, ...KEY_FILES.map((file) => readOrEmpty(join(root, file))));
}

/** One hash over the named files' contents; undefined if one cannot be read. */
function hashOfInputs(inputs, root) {
  const hash = createHash('sha256');
  for (const input of inputs) {
    try {
      hash.update(input).update('\0').update(readFileSync(join(root, input))).update('\0');
    } catch {
      return undefined;
    }
  }
  return hash.digest('hex');
}

function manifestPath(name) {
  return join(cacheDir(), `${name}.manifest.json`);
}

/** The kept bundle's path, if it was built from exactly these sources with this key. */
function keptBundle(name, key, root) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath(name), 'utf8'));
  } catch {
    return undefined;
  }
  if (manifest?.key !== key || !Array.isArray(manifest.inputs) || typeof manifest.file !== 'string') return undefined;
  if (hashOfInputs(manifest.inputs, root) !== manifest.inputsHash) return undefined;
  const path = join(cacheDir(), manifest.file);
  return existsSync(path) ? path : undefined;
}

function writeAtomically(path, contents) {
  const partial = `${path}.${process.pid}.tmp`;
  writeFileSync(partial, contents);
  renameSync(partial, path);
}

/** A kept bundle is pruned only when it is none of the newest few of its name and unused this long. */
const PRUNE_KEEP_NEWEST = 3;
const PRUNE_UNUSED_MS = 7 * 24 * 3600 * 1000;

/** Marks a kept bundle as used now (its mtime), so that pruning spares it. */
export function markUsed(path) {
  try {
    const now = new Date();
    utimesSync(path, now, now);
  } catch {
    // a read-only cache is never pruned either
  }
}

/**
 * Deletes the bundles of `name` beyond the newest few that are unused for a week, with what lives
 * beside each (a worker bundle's V8 code cache), and partial writes a crash left behind.
 */
export function prune(name, nowMs = Date.now()) {
  const dir = cacheDir();
  const ownName = new RegExp(`^${name.replace(/[^\w-]/g, '\\$&')}-[0-9a-f]{16}\\.[a-z]+$`);
  let files;
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  const ageMs = (file) => {
    try {
      return nowMs - statSync(join(dir, file)).mtimeMs;
    } catch {
      return 0; // gone meanwhile: nothing to do
    }
  };
  const bundles = files.filter((file) => ownName.test(file)).sort((a, b) => ageMs(a) - ageMs(b));
  const stale = bundles.slice(PRUNE_KEEP_NEWEST).filter((file) => ageMs(file) > PRUNE_UNUSED_MS);
  const doomed = [
    // A partial write in progress may be the same bundle again: only old ones go, below.
    ...stale.flatMap((bundle) => files.filter((file) => file === bundle || (file.startsWith(`${bundle}.`) && !file.endsWith('.tmp')))),
    ...files.filter((file) => file.startsWith(`${name}`) && file.endsWith('.tmp') && ageMs(file) > 24 * 3600 * 1000),
  ];
  for (const file of doomed) rmSync(join(dir, file), { force: true });
  return doomed;
}

/** Keeps a finished build: the bundle under its content's hash, then the manifest that names it. */
function keep(name, key, result, extension, root) {
  const code = result.outputFiles.find((file) => !file.path.endsWith('.map'))?.contents;
  if (!code) throw new Error(`bundle ${name}: esbuild produced no output`);
  // Our own sources only: packages are covered by package-lock.json in the key.
  const inputs = Object.keys(result.metafile.inputs)
    .filter((input) => !input.split('/').includes('node_modules'))
    .sort();
  const file = `${name}-${sha256(code).slice(0, 16)}.${extension}`;
  const path = join(cacheDir(), file);
  writeAtomically(path, code);
  writeAtomically(manifestPath(name), JSON.stringify({ key, inputs, inputsHash: hashOfInputs(inputs, root), file }, null, 1));
  prune(name);
  return path;
}

/**
 * `import.meta.url` in each of our own modules becomes that module's own file URL, as it is when the
 * module runs unbundled: a bundle lives in node_modules/.cache, and paths found from it (the
 * package.json beside cli/, the worker's boot script beside impl/) would be wrong.
 */
export const sourceUrlPlugin = {
  name: 'quiesce-source-url',
  setup(build) {
    build.onLoad({ filter: /\.(ts|mjs)$/ }, (args) => {
      if (args.path.split('/').includes('node_modules')) return undefined;
      const source = readFileSync(args.path, 'utf8');
      // The expression only: not the words quoted as a string (worker-bundle.ts defines them for its own bundle).
      const contents = source.replace(/(?<!['"`])\bimport\.meta\.url\b(?!['"`])/g, JSON.stringify(pathToFileURL(args.path).href));
      return { contents, loader: args.path.endsWith('.ts') ? 'ts' : 'js' };
    });
  },
};

/** The bundle's own URL, in its banner: spelled apart, as sourceUrlPlugin rewrites these words in this file's source too. */
const BUNDLE_OWN_URL = ['import', 'meta', 'url'].join('.');

/**
 * The options for a program of ours run as an ES module (the CLI, a worker thread): each module's own
 * import.meta.url; esbuild (a native binary) and tsx (which loads a user's TypeScript app) loaded from
 * the package's node_modules at run time; and a require() for the bundled CommonJS packages, which
 * call it for Node's built-ins, where an ES module has none of its own.
 */
export function programOptions(entry) {
  return {
    entryPoints: [entry],
    format: 'esm',
    plugins: [sourceUrlPlugin],
    external: ['esbuild', 'tsx', 'tsx/*'],
    banner: { js: `import { createRequire as __quiesceCreateRequire } from 'node:module'; const require = __quiesceCreateRequire(${BUNDLE_OWN_URL});` },
  };
}

function fullOptions(options, root) {
  return { bundle: true, platform: 'node', target: 'node20', logLevel: 'silent', ...options, absWorkingDir: root, write: false, metafile: true };
}

/**
 * The path of a bundle of `options.entryPoints` (one entry), built now if no kept one fits.
 * Synchronous, so esbuild plugins cannot be used (esbuild's rule for buildSync). `root` is where the
 * sources are (the package's own, unless a test builds elsewhere); the bundle is kept in the package's cache.
 */
export function bundleSync(name, extension, options, root = PACKAGE_ROOT) {
  const key = buildKey(name, options, root);
  const kept = keptBundle(name, key, root);
  if (kept) return kept;
  // esbuild is loaded only to build: a start that reuses a bundle does not pay for it.
  const { buildSync } = requireHere('esbuild');
  return keep(name, key, buildSync(fullOptions(options, root)), extension, root);
}

/** As bundleSync, with esbuild's plugins allowed (they are part of the key by name). */
export async function bundle(name, extension, options, root = PACKAGE_ROOT) {
  const key = buildKey(name, options, root);
  const kept = keptBundle(name, key, root);
  if (kept) return kept;
  const { build } = requireHere('esbuild');
  return keep(name, key, await build(fullOptions(options, root)), extension, root);
}
