/**
 * `quiesce serve`: the real prefork server of impl/. Options come from one
 * table (impl/config.ts) shared with the config file; flags win over it.
 */
import type { Command } from 'commander';
import { Arbiter } from '../impl/arbiter.ts';
import { ConfigError, readConfigFile, resolveConfig, SERVE_OPTIONS } from '../impl/config.ts';
import { UsageError } from './errors.ts';
import type { Io } from './main.ts';

export function registerServeCommand(program: Command, io: Io): void {
  const command = program
    .command('serve')
    .description('run the real server: an arbiter and worker processes on one listening socket (TCP or unix), every policy, real signals')
    .option('-c, --config <file>', 'JSON file of options (keys as the flags: {"workers": 4, "graceful-timeout": 10}); flags win');
  for (const spec of SERVE_OPTIONS) command.option(`--${spec.name} <${spec.placeholder}>`, spec.description);
  command.action(async (flags: Record<string, unknown>) => {
    let arbiter: Arbiter;
    try {
      const file = typeof flags.config === 'string' ? readConfigFile(flags.config) : {};
      const named = Object.fromEntries(SERVE_OPTIONS.map((spec) => [spec.name, flags[camel(spec.name)]]));
      const config = resolveConfig(named, file, typeof flags.config === 'string' ? flags.config : 'config');
      arbiter = new Arbiter(config, { log: (line) => io.err(`${line}\n`) });
      io.exitCode = await arbiter.run();
    } catch (error) {
      if (error instanceof ConfigError) throw new UsageError(error.message);
      throw error;
    }
  });
}

/** commander's attribute name for a flag: `graceful-timeout` → `gracefulTimeout`. */
function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
