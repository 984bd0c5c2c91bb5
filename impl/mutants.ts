/**
 * Deliberately broken variants of the server, for the conformance suite's
 * mutation score: each one does on the wire something other than what its
 * trace says (the trace still says what the machines decided). They exist
 * to prove that the suite judges a server by the wire, not by its own word.
 * Chosen by QUIESCE_MUTANT in the worker's environment; none by default.
 */
export const MUTANTS = {
  /** Closes with FIN where the machine (and the trace) says RST. */
  'fin-for-rst': 'closes with FIN where its trace says RST',
  /** Resets where the machine (and the trace) says FIN. */
  'rst-for-fin': 'resets where its trace says FIN',
  /** Leaves `Connection: close` out of a response its trace says carried it. */
  'no-close-header': 'leaves out the Connection: close header its trace says it sent',
  /** Says `Connection: close` on a response its trace says kept the connection alive. */
  'close-header-on-keepalive': 'sends Connection: close on responses its trace says kept alive',
} as const;

export type Mutant = keyof typeof MUTANTS;

export class UnknownMutantError extends Error {
  constructor(name: string) {
    super(`QUIESCE_MUTANT: unknown mutant "${name}"; expected one of: ${Object.keys(MUTANTS).join(', ')}`);
    this.name = 'UnknownMutantError';
  }
}

export function mutantOf(value: string | undefined): Mutant | null {
  if (value === undefined || value === '') return null;
  if (!(value in MUTANTS)) throw new UnknownMutantError(value);
  return value as Mutant;
}
