export * from './events.ts';
export * from './params.ts';
export * from './policies.ts';
export * from './trace.ts';
export * from './properties.ts';
export * from './replay.ts';
export * from './step.ts';
export * from './machines/index.ts';
