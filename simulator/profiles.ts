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
import { applyProfile, profileSchema, unmeasuredNumbers, type Profile, type ProfileApplied } from './profile-schema.ts';

export { applyProfile, profileSchema, unmeasuredNumbers, type Profile, type ProfileApplied };

/** The shipped profiles, parsed (a malformed file fails here, at load, naming the file and the field). */
export const PROFILES: ReadonlyMap<string, Profile> = new Map(
  [gunicornGthread, gunicornSync, quiesceServe].map((file) => {
    const parsed = profileSchema.safeParse(file);
    if (!parsed.success) throw new Error(`profile ${String((file as { name?: unknown }).name)}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
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
