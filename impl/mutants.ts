/**
 * Deliberately broken variants of the server, for the conformance suite's
 * mutation score. Most do on the wire something other than what their trace
 * says (the trace still says what the machines decided): they prove that
 * the suite judges a server by the wire, not by its own word. Others break
 * the lifecycle itself, as a careless server would; the suite's other
 * witnesses (conformance/judge.ts) must catch those.
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
  /** Writes nothing for a response its trace says it wrote. */
  'drop-response': 'writes nothing for a response its trace says it wrote',
  /** Exits as soon as it starts draining, with requests in flight (a worker that takes TERM as QUIT). */
  'exit-with-request-in-flight': 'exits at the start of a drain with a request in flight',
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
