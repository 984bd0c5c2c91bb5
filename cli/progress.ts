/**
 * A progress bar on stderr (cli-progress) for work that lasts more than a
 * second — never when stderr is not a terminal or when output is JSON, so
 * pipes and CI logs stay clean.
 *
 * The bar changes no terminal state: no hidden cursor, no line wrap turned
 * off. `simulate` runs synchronously, so a Ctrl-C kills it where it stands and
 * no handler could put such state back; state that is never changed needs no
 * restoring. The label is cut to the terminal's width instead, so the line
 * never wraps.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, label?: string): void;
  stop(): void;
}

const SILENT: Progress = { update: () => {}, stop: () => {} };

export function progressBar(total: number, options: { enabled: boolean; unit: string }): Progress {
  if (!options.enabled || !process.stderr.isTTY || total <= 0) return SILENT;
  const startedAt = Date.now();
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(done, label = '') {
      if (!bar) {
        if (Date.now() - startedAt < 1000) return;
        bar = new cliProgress.SingleBar(
          { stream: process.stderr, format: ` {bar} {value}/{total} ${options.unit}  {label}`, hideCursor: false, linewrap: true, clearOnComplete: true },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, done, { label: fit(label, total) });
      }
      bar.update(done, { label: fit(label, total) });
    },
    stop() {
      bar?.stop();
    },
  };
}

/** The label, cut so that the whole bar line fits the terminal (bar 40 + counts + unit). */
function fit(label: string, total: number): string {
  const room = (process.stderr.columns ?? 80) - 50 - 2 * String(total).length;
  return label.length <= room ? label : label.slice(0, Math.max(0, room - 1)) + '…';
}
