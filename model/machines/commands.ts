/**
 * Commands: what a chart asks whoever runs it to do (spawn a process, close a
 * socket, signal a worker). Each chart declares its commands once, with the
 * type of their params, in an object built with `command<P>()`; the chart's
 * `setup({ actions })` takes that object, and `CommandOf` derives the typed
 * union the driver handles — so a command added to a chart is a type error in
 * the driver until it is carried out.
 */

/** A command's placeholder implementation: the chart only names it; the driver carries it out. */
export function command<P = undefined>(): (_args: unknown, _params: P) => void {
  return () => {};
}

type ParamsOf<F> = F extends (args: never, params: infer P) => void ? P : never;

/** The discriminated union of a chart's commands: `{ type: 'signalWorkers'; params: { signal, workers } } | …`. */
export type CommandOf<T> = {
  [K in keyof T & string]: undefined extends ParamsOf<T[K]> ? { readonly type: K; readonly params?: undefined } : { readonly type: K; readonly params: ParamsOf<T[K]> };
}[keyof T & string];

/** One handler per command of a chart: exhaustive by construction (a missing key is a type error). */
export type CommandHandlers<C extends { type: string; params?: unknown }, Actor extends string = string> = {
  readonly [K in C['type']]: (actor: Actor, params: Extract<C, { type: K }>['params']) => void;
};

/** Hand a machine's action to its handler; an action no handler knows is a bug in the chart or the driver. */
export function dispatchCommand<C extends { type: string; params?: unknown }, Actor extends string>(
  handlers: CommandHandlers<C, Actor>,
  actor: Actor,
  action: { readonly type: string; readonly params?: unknown },
): void {
  const handler = (handlers as unknown as Record<string, ((actor: Actor, params: unknown) => void) | undefined>)[action.type];
  if (handler === undefined) throw new Error(`${actor} asked for ${action.type}, which its driver does not know`);
  handler(actor, action.params);
}
