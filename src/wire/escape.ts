// Making a string that came from someone else (a client's FAIL reason or id, a message from luod)
// safe to put on a terminal or into a log: control characters become visible escapes. Pure; used
// by luoctl's human output and by luod's log, so that both escape the same way.

/**
 * Control characters that a terminal or a log record would act on: C0 (U+0000-U+001F, NUL, BEL,
 * ESC, CR and LF included), DEL (U+007F), C1 (U+0080-U+009F, where U+009B is CSI on some
 * terminals), and the Unicode line and paragraph separators (U+2028, U+2029).
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * `s` with every control character replaced by a visible escape: `\xHH` for C0, DEL and C1
 * (ESC is `\x1b`, NUL `\x00`), `\uHHHH` for U+2028 and U+2029. Everything else, backslashes
 * included, is left as it is, so a string without control characters comes back unchanged.
 */
export function escapeControl(s: string): string {
  return s.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
}
