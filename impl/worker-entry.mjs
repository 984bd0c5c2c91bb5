// A worker process runs the TypeScript sources through tsx, like bin/quiesce.mjs.
import { register } from 'tsx/esm/api';

register();
await import('./worker-main.ts');
