import { checkNumber, type Bound } from '../model/limits.ts';

/** An error the user caused: printed as one line, exit code 2, never a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Parse a number option strictly: decimal text within its bound (model/limits.ts). */
export function parseNumberOption(flag: string, text: string, bound: Bound): number {
  const checked = checkNumber(text, bound, 'text');
  if ('expected' in checked) throw new UsageError(`${flag}: expected ${checked.expected}, got "${text}"`);
  return checked.value;
}
