// luod's log, the one way into it (docs/daemon.md#logs-and-the-audit-trail). Under systemd, when
// stderr is journald's stream ($JOURNAL_STREAM names its device and inode, as systemd's own
// log.c checks), each message is a native journal entry with structured fields (MESSAGE_ID,
// LUO_CLIENT, LUO_UPDATE…) sent to journald's socket. Elsewhere, and whenever that send fails,
// it is one line on stderr; under systemd (JOURNAL_STREAM set) or whenever stderr is not a TTY
// the line starts with a syslog priority prefix "<N>" that journald turns into the priority
// (sd-daemon(3)); on a terminal the prefix would be noise, so it is left out.
// Every message and field value is escaped here: messages quote clients' ids, reasons and
// errors, and a control character must never start a record or a line of its own.
import { fileIdentity, isTerminal, writeText } from "../kernel/fd";
import { JOURNAL_SOCKET, JournalSocket } from "../kernel/journal";
import { escapeControl } from "../wire/escape";
import { encodeJournalEntry } from "./journal-entry";

export type Level = "error" | "warning" | "notice" | "info" | "debug";
const PRIORITY: Record<Level, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };

/**
 * The structured fields a message may carry into the journal (a null or absent one is left out).
 * LUO_UID, LUO_PID and LUO_UNIT are of the process the message is about: the client of a
 * LUO_CLIENT message, the administrator of an audit record or of an update's start.
 */
export interface LogFields {
  /** One of message-ids.ts: the kind of milestone, or an audit record. */
  MESSAGE_ID?: string;
  LUO_CLIENT?: string | null;
  /** The update's attempt number. */
  LUO_UPDATE?: number | null;
  LUO_UID?: number | null;
  LUO_PID?: number | null;
  /** The systemd service (access.ts: unitOf), where there is one. */
  LUO_UNIT?: string | null;
  /** Audit records: the request (LOAD, KEXEC…). */
  LUO_REQUEST?: string;
  /** Audit records: `ok`, or the error code of the refusal (EPERM, ENOEXEC…). */
  LUO_OUTCOME?: string;
}

export interface Logger {
  error(msg: string, fields?: LogFields): void;
  warning(msg: string, fields?: LogFields): void;
  notice(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
}

/** Takes one encoded entry; false when it could not be sent (the message then goes to stderr). */
export type JournalSink = (entry: Uint8Array) => boolean;

export interface LoggerOptions {
  verbose?: boolean;
  /** The "<N>" prefix on lines; default: under systemd or when stderr is not a terminal. */
  prefix?: boolean;
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
  /** Native journal entries go here first (journalFromEnvironment); default none: lines only. */
  journal?: JournalSink | null;
}

export const SYSLOG_IDENTIFIER = "luod";

export function createLogger(opts: LoggerOptions = {}): Logger {
  const prefix = opts.prefix ?? (process.env.JOURNAL_STREAM !== undefined || !isTerminal(2));
  const write = opts.write ?? ((line: string) => writeText(2, line + "\n"));
  const journal = opts.journal ?? null;
  const emit = (level: Level) => (msg: string, fields?: LogFields) => {
    if (level === "debug" && !opts.verbose) return;
    // one record per line: a newline (or NUL, for journald) inside a message would split it into
    // two journal entries, the second with whatever priority prefix the text carries
    const text = escapeControl(msg);
    if (journal && journal(encodeJournalEntry(journalFields(level, text, fields)))) return;
    write(prefix || journal ? `<${PRIORITY[level]}>${text}` : `${level === "info" ? "" : level + ": "}${text}`);
  };
  return { error: emit("error"), warning: emit("warning"), notice: emit("notice"), info: emit("info"), debug: emit("debug") };
}

/** MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, then the message's own fields, escaped like the message. */
export function journalFields(level: Level, text: string, fields: LogFields = {}): [string, string][] {
  const out: [string, string][] = [["MESSAGE", text], ["PRIORITY", String(PRIORITY[level])], ["SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER]];
  for (const [name, value] of Object.entries(fields)) {
    if (value === null || value === undefined) continue;
    out.push([name, typeof value === "string" ? escapeControl(value) : String(value)]);
  }
  return out;
}

/**
 * The socket of journald's native protocol if stderr is journald's stream, else null. That is
 * the case when $JOURNAL_STREAM ("DEV:INO", set by systemd for a unit whose stderr goes to the
 * journal) names the file stderr is: a process started from such a unit with its stderr
 * redirected elsewhere inherits the variable, and must keep writing to that elsewhere.
 * $LUOD_JOURNAL_SOCKET replaces journald's socket, only together with a matching
 * $JOURNAL_STREAM: the integration tests bind their own (docs/daemon.md#logs-and-the-audit-trail).
 */
export function journalSocketPath(env: Record<string, string | undefined>, stderrIdentity: () => { dev: bigint; ino: bigint }): string | null {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  if (!m) return null;
  let id: { dev: bigint; ino: bigint };
  try {
    id = stderrIdentity();
  } catch {
    return null; // no stderr at all
  }
  if (BigInt(m[1]!) !== id.dev || BigInt(m[2]!) !== id.ino) return null;
  return env.LUOD_JOURNAL_SOCKET || JOURNAL_SOCKET;
}

/** luod's journal sink: journald's socket when stderr is its stream (journalSocketPath), else null. */
export function journalFromEnvironment(env: Record<string, string | undefined> = process.env): JournalSink | null {
  const path = journalSocketPath(env, () => fileIdentity(2));
  if (path === null) return null;
  let socket: JournalSocket;
  try {
    socket = new JournalSocket(path);
  } catch {
    return null; // no socket (EMFILE…): lines on stderr, as before
  }
  return (entry) => {
    try {
      return socket.send(entry) >= 0;
    } catch {
      return false; // a path that cannot be a socket address ($LUOD_JOURNAL_SOCKET)
    }
  };
}
