/**
 * `quiesce serve --app sleep`, with an import that takes QUIESCE_APP_LOAD_MS (a script's appLoadMs):
 * an app whose import does work, so that a new worker boots for that long. The same app the scripts'
 * WSGI servers run (sleep_app.py, which waits as long at import).
 */
import { loadApp } from '../../impl/apps.ts';

const raw = process.env.QUIESCE_APP_LOAD_MS ?? '0';
if (!/^\d+$/.test(raw)) throw new Error(`QUIESCE_APP_LOAD_MS must be a whole number of milliseconds, got ${JSON.stringify(raw)}`);
const loadMs = Number(raw);
await new Promise((loaded) => setTimeout(loaded, loadMs));

export default await loadApp('sleep', '.');
