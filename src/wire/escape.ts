// Client-controlled text on its way to a log or a terminal: control characters become visible.
// A FAIL or ABORT reason may carry NUL (journald ends a record there, so the rest would become a
// record of its own, with a priority prefix of the client's choosing), CR/LF (a new line, a new
// record), ESC (terminal escape sequences), BEL, DEL or C1 controls (U+0080–U+009F: CSI and
// friends on terminals that honour 8-bit controls).

const CONTROL = /[\x00-\x1f\x7f-\x9f]/g;

/** `s` with every C0 control, DEL and C1 control written as `\xHH` (lower-case hex); all else kept. */
export function escapeControl(s: string): string {
  return s.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
