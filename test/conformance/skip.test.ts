/** Which scripts a black-box command can run: a script needs each parameter it varies, and a body limit if it sends a body too large. */
import { describe, expect, it } from 'vitest';
import { fillCommand, SCRIPT_MAX_BODY_BYTES, skipReason } from '../../conformance/blackbox.ts';
import { TOO_LARGE_DECLARED_BYTES } from '../../conformance/live.ts';
import { getScript } from '../../conformance/scripts.ts';
import { DEFAULT_SERVER_PARAMS } from '../../model/params.ts';

describe('skipReason', () => {
  it('a script that sends a body too large runs only where the command takes {max-body}, which it fills with the scripts’ limit', () => {
    const script = getScript('body-too-large');
    expect(skipReason('gunicorn --bind {bind} --workers {workers}', script)).toBe('the command takes no {max-body}');
    expect(skipReason('quiesce serve --workers {workers} --max-body {max-body}', script)).toBeNull();
    expect(fillCommand('serve --max-body {max-body}', DEFAULT_SERVER_PARAMS)).toBe(`serve --max-body ${SCRIPT_MAX_BODY_BYTES}`);
    // What the script's client declares is past the limit the command is given.
    expect(TOO_LARGE_DECLARED_BYTES).toBeGreaterThan(SCRIPT_MAX_BODY_BYTES);
  });

  it('a script that sends no body too large does not ask for {max-body}', () => {
    expect(skipReason('gunicorn --workers {workers} --keep-alive {keepalive}', getScript('term-idle-and-in-flight'))).toBeNull();
  });
});
