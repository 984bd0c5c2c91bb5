/** An error the user caused: printed as one line, exit code 2, never a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Parse a number option strictly: the whole text must be a number in range. */
export function parseNumberOption(flag: string, text: string, options: { integer?: boolean; min?: number; max?: number } = {}): number {
  const value = Number(text);
  const kind = options.integer ? 'an integer' : 'a number';
  if (text.trim() === '' || !Number.isFinite(value) || (options.integer && !Number.isInteger(value))) {
    throw new UsageError(`${flag}: expected ${kind}, got "${text}"`);
  }
  if (options.min !== undefined && value < options.min) throw new UsageError(`${flag}: expected ${kind} ≥ ${options.min}, got ${text}`);
  if (options.max !== undefined && value > options.max) throw new UsageError(`${flag}: expected ${kind} ≤ ${options.max}, got ${text}`);
  return value;
}
