// The socket's directory and the state directory: luod (root) creates, writes and removes files in
// them, so no other user may be able to change what is in them
// (docs/daemon.md#directories-and-files-luod-trusts). Whoever can write the directory of the socket can take the socket path
// over; whoever can write the state directory can plant a symlink where luod writes.
import { chmodSync, lstatSync, mkdirSync, readlinkSync, type Stats } from "node:fs";
import { dirname, join, resolve } from "node:path";

const S_ISVTX = 0o1000;
const MAX_SYMLINKS = 40; // the kernel's limit for one path lookup

/** A directory luod refuses to trust: `message` names the path and why. */
export class UntrustedPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UntrustedPathError";
  }
}

export interface TrustedDirOptions {
  /** What the directory is, for messages: "socket directory", "state directory". */
  what: string;
  /** Mode of the directories luod creates when they are absent. */
  mode: number;
  /** Owners trusted besides root (default: luod's effective uid). */
  euid?: number;
}

/**
 * Makes sure `dir` and the path to it can be changed by root (or luod's own uid) only, creating
 * the missing directories with `opts.mode`. The path is walked from `/` one component at a time
 * (lstat, symlinks followed by hand): every directory on it must belong to root; `dir` itself
 * must not be writable by group or others; an ancestor may be, only if it is sticky (/tmp, a
 * tmpfs /run of mode 1777), where nobody can rename or remove what root owns in it. A symlink on
 * the path must belong to root too. Throws UntrustedPathError for anything else.
 */
export function ensureTrustedDir(dir: string, opts: TrustedDirOptions): void {
  const euid = opts.euid ?? process.geteuid?.() ?? 0;
  const trusted = (uid: number) => uid === 0 || uid === euid;
  const refuse = (path: string, why: string) => {
    throw new UntrustedPathError(`${opts.what} ${dir}: ${path} ${why}; luod needs a directory that only root can change`);
  };
  const check = (path: string, st: Stats, final: boolean) => {
    if (!st.isDirectory()) refuse(path, "is not a directory");
    if (!trusted(st.uid)) refuse(path, `belongs to uid ${st.uid}, not root`);
    const mode = `mode 0${(st.mode & 0o7777).toString(8)}`;
    if ((st.mode & 0o022) === 0) return;
    if (final) refuse(path, `is writable by group or others (${mode})`);
    if ((st.mode & S_ISVTX) === 0) refuse(path, `is writable by group or others and not sticky (${mode})`);
  };

  let rest = components(resolve(dir));
  let done = "/";
  check(done, lstatSync(done), rest.length === 0);
  let hops = 0;
  while (rest.length) {
    const name = rest.shift()!;
    if (name === ".") continue;
    if (name === "..") {
      done = dirname(done);
      continue;
    }
    const path = join(done, name);
    let st = lstatOrNull(path);
    if (st === null) {
      // absent: create it (its parent was just checked) with luod's mode, whatever the umask
      try {
        mkdirSync(path, { mode: opts.mode });
        chmodSync(path, opts.mode);
      } catch (e) {
        if ((e as { code?: string }).code !== "EEXIST") throw e;
      }
      st = lstatSync(path);
    }
    if (st.isSymbolicLink()) {
      if (!trusted(st.uid)) refuse(path, `is a symlink that belongs to uid ${st.uid}, not root`);
      if (++hops > MAX_SYMLINKS) refuse(path, "is one symlink too many (ELOOP)");
      const target = readlinkSync(path);
      rest = [...components(target), ...rest];
      if (target.startsWith("/")) done = "/";
      continue;
    }
    check(path, st, rest.length === 0);
    done = path;
  }
  // a path that ends in ".." (a symlink's target) ends on a directory checked as an ancestor
  check(done, lstatSync(done), true);
}

function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "");
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw e;
  }
}

/** What a file is, for a message ("is a FIFO, not a socket"). */
export function fileKind(st: Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isFIFO()) return "a FIFO";
  if (st.isDirectory()) return "a directory";
  if (st.isSymbolicLink()) return "a symlink";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "a file of another kind";
}
