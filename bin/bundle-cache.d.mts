import type { BuildOptions, Plugin } from 'esbuild';

/** The package's root: where bundles' paths are relative to. */
export declare const PACKAGE_ROOT: string;
/** Where bundles and their manifests are kept. */
export declare function cacheDir(): string;
/** Each of our modules' `import.meta.url` as its own source file's URL, inside a bundle. */
export declare const sourceUrlPlugin: Plugin;
/** The path of a kept bundle of `options.entryPoints`, built now if none fits; no plugins. */
export declare function bundleSync(name: string, extension: string, options: Omit<BuildOptions, 'plugins'>, root?: string): string;
/** As bundleSync, with esbuild's plugins allowed. */
export declare function bundle(name: string, extension: string, options: BuildOptions, root?: string): Promise<string>;
/** Marks a kept bundle as used now, so that pruning spares it. */
export declare function markUsed(path: string): void;
/** Deletes the bundles of `name` beyond the newest few that are unused for a week; returns the files deleted. */
export declare function prune(name: string, nowMs?: number): string[];
/** The options for a program of ours run as an ES module from its bundle (the CLI, a worker thread). */
export declare function programOptions(entry: string): BuildOptions;
