// Journald-friendly logging: under systemd (JOURNAL_STREAM set) or whenever stderr is not a TTY,
// each line starts with a syslog priority prefix "<N>" that journald turns into the priority
// (sd-daemon(3)). On a terminal the prefix would be noise, so it is left out.
// Every message is escaped here, the one way into luod's log: messages quote clients' ids, reasons
// and errors, and a control character must never start a record or a line of its own.
import { isTerminal, writeText } from "../kernel/fd";
import { escapeControl } from "../wire/escape";

export type Level = "error" | "warning" | "notice" | "info" | "debug";
const PRIORITY: Record<Level, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };

export interface Logger {
  error(msg: string): void;
  warning(msg: string): void;
  notice(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

export function createLogger(opts: { verbose?: boolean; prefix?: boolean; write?: (line: string) => void } = {}): Logger {
  const prefix = opts.prefix ?? (process.env.JOURNAL_STREAM !== undefined || !isTerminal(2));
  const write = opts.write ?? ((line: string) => writeText(2, line + "\n"));
  const emit = (level: Level) => (msg: string) => {
    if (level === "debug" && !opts.verbose) return;
    // one record per line: a newline (or NUL, for journald) inside a message would split it into
    // two journal entries, the second with whatever priority prefix the text carries
    const text = escapeControl(msg);
    write(prefix ? `<${PRIORITY[level]}>${text}` : `${level === "info" ? "" : level + ": "}${text}`);
  };
  return { error: emit("error"), warning: emit("warning"), notice: emit("notice"), info: emit("info"), debug: emit("debug") };
}
