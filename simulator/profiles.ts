/**
 * Server profiles: the timing of one concrete server, kept apart from its
 * policy (issue 14). A policy says what a server decides; a profile says how
 * long things take there — a request's time in the server, a worker's boot.
 * The simulator takes both: `quiesce simulate --profile NAME`.
 *
 * Profiles come from measurement, not tuning. Each number in a profile file
 * sits under an object that names its measurement, and the measurement says
 * how it was taken: the command, the date, the machine, the method.
 * `unmeasuredNumbers` finds any number without one (a test reads every
 * file); a number no measurement supports stays out of the file, and the
 * scenario's own default is used and reported as such.
 *
 * The files are written by `conformance/measure-profile.ts`
 * (`npm run profile:measure`), which runs the measurements it describes.
 */
import gunicornGthread from './profiles/gunicorn-20.1-gthread.json' with { type: 'json' };
import gunicornSync from './profiles/gunicorn-20.1-sync.json' with { type: 'json' };
import quiesceServe from './profiles/quiesce-serve.json' with { type: 'json' };
import { applyProfile, describeIssues, profileSchema, unmeasuredNumbers, type Profile, type ProfileApplied } from './profile-schema.ts';

export { applyProfile, profileSchema, unmeasuredNumbers, type Profile, type ProfileApplied };

/** The shipped profiles, parsed (a malformed file fails here, at load, naming the file and the field). */
export const PROFILES: ReadonlyMap<string, Profile> = new Map(
  [gunicornGthread, gunicornSync, quiesceServe].map((file) => {
    const parsed = profileSchema.safeParse(file);
    if (!parsed.success) throw new Error(`profile ${String((file as { name?: unknown }).name)}: ${describeIssues(parsed.error.issues)}`);
    return [parsed.data.name, parsed.data];
  }),
);

export const PROFILE_NAMES: readonly string[] = [...PROFILES.keys()];

export class UnknownProfileError extends Error {
  constructor(readonly input: string) {
    super(`unknown profile "${input}"; expected one of: ${PROFILE_NAMES.join(', ')}`);
    this.name = 'UnknownProfileError';
  }
}

export function getProfile(name: string): Profile {
  const profile = PROFILES.get(name);
  if (!profile) throw new UnknownProfileError(name);
  return profile;
}

/** A profile file that cannot be used: unreadable, not JSON, not a profile, or a number in it without its measurement. */
export class ProfileFileError extends Error {
  constructor(readonly file: string, reason: string) {
    super(`${file}: ${reason}`);
    this.name = 'ProfileFileError';
  }
}

/**
 * A profile measured elsewhere — most often on this machine, now (`npm run profile:measure -- NAME >
 * FILE`): a machine's speed changes what a profile says (the shipped quiesce-serve profile's median
 * worker boot was 33 ms on the day it was measured, 234 ms on the same kind of machine another day).
 * Held to the shipped files' rules: the schema, and a measurement behind every number.
 */
export function readProfileFile(file: string, text: string): Profile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ProfileFileError(file, `not JSON (${(error as Error).message})`);
  }
  const parsed = profileSchema.safeParse(json);
  if (!parsed.success) throw new ProfileFileError(file, `not a server profile: ${describeIssues(parsed.error.issues)}`);
  const unmeasured = unmeasuredNumbers(json);
  if (unmeasured.length > 0) throw new ProfileFileError(file, `numbers without a measurement that names how they were taken: ${unmeasured.join(', ')}`);
  return parsed.data;
}

/** What a `--profile` flag names: a shipped profile, or a file (a value with a "/" or ending in ".json"). */
export function isProfileFile(value: string): boolean {
  return value.includes('/') || value.endsWith('.json');
}
