/**
 * A progress bar on stderr (cli-progress) for work that lasts more than a
 * second — never when stderr is not a terminal or when output is JSON, so
 * pipes and CI logs stay clean.
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
          { stream: process.stderr, format: ` {bar} {value}/{total} ${options.unit}  {label}`, hideCursor: true, clearOnComplete: true },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, done, { label });
      }
      bar.update(done, { label });
    },
    stop() {
      bar?.stop();
    },
  };
}
