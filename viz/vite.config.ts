import { defineConfig } from 'vite';

/** The visualization: served by `npm run viz`, built by `npm run viz:build` into viz/dist (relative paths: any static host). */
export default defineConfig({
  root: new URL('.', import.meta.url).pathname,
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 2000 },
  worker: { format: 'es' },
  server: { host: '127.0.0.1' },
  preview: { host: '127.0.0.1' },
  logLevel: 'info',
});
