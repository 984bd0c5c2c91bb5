/** `npm run soak [-- --requests N --reloads N]`: the soak of test/impl/soak.ts, one screen of summary, exit 1 on any failure. */
import { Command, InvalidArgumentError } from 'commander';
import { describeSoak, FULL_SOAK, runSoak } from './soak.ts';

const count = (flag: string, min: number) => (text: string) => {
  if (!/^\d+$/.test(text) || Number(text) < min) throw new InvalidArgumentError(`${flag}: expected an integer ≥ ${min}, got "${text}"`);
  return Number(text);
};
const { requests, reloads } = new Command('soak')
  .option('--requests <n>', 'POSTs ab sends', count('--requests', 1000), FULL_SOAK.requests)
  .option('--reloads <n>', 'HUP reloads spread over the run', count('--reloads', 0), FULL_SOAK.reloads)
  .parse()
  .opts<{ requests: number; reloads: number }>();
const result = await runSoak({ ...FULL_SOAK, requests, reloads, log: (line) => process.stderr.write(`[soak] ${line}\n`) });
console.log(describeSoak(result));
process.exitCode = result.failures.length === 0 ? 0 : 1;
