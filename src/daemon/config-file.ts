// The config file (default /etc/luod.conf, or --config FILE): `key = value` lines whose keys are
// the long flags without their dashes; `#` starts a comment; a value may be double-quoted.
//
//   # /etc/luod.conf
//   client-group = kvm
//   admin-group = wheel
//   max-connections = 512
//
// An absent default file is fine; an absent --config file, an unknown key, a repeated key or a bad
// value is an error that names the file and line.
import { closeSync, constants, fstatSync, openSync, readFileSync } from "node:fs";
import { ConfigError, OPTIONS, checkValue, type SettingKey, type Settings } from "./settings";
import { fileKind } from "./trusted-dirs";

const BY_FLAG = new Map(OPTIONS.map((o) => [o.flag, o]));

/** Parses config file text into settings; `name` prefixes error messages ("file:line: "). */
export function parseConfigText(text: string, name: string): Partial<Settings> {
  const out: Partial<Record<SettingKey, unknown>> = {};
  const seen = new Map<string, number>();
  text.split("\n").forEach((raw, i) => {
    const where = `${name}:${i + 1}: `;
    const line = stripComment(raw, where).trim();
    if (line === "") return;
    const m = /^([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new ConfigError(`${where}expected "key = value", got ${JSON.stringify(line.slice(0, 60))}`);
    const key = m[1]!;
    const spec = BY_FLAG.get(key) ?? BY_FLAG.get(key.replace(/_/g, "-"));
    if (!spec) throw new ConfigError(`${where}unknown key "${key}" (known: ${OPTIONS.map((o) => o.flag).join(", ")})`);
    if (seen.has(spec.flag)) throw new ConfigError(`${where}"${spec.flag}" was already set on line ${seen.get(spec.flag)}`);
    seen.set(spec.flag, i + 1);
    out[spec.key] = checkValue(spec, unquote(m[2]!.trim(), where), where);
  });
  return out as Partial<Settings>;
}

function stripComment(line: string, where: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') quoted = !quoted;
    else if (c === "\\" && quoted) i++;
    else if (c === "#" && !quoted) return line.slice(0, i);
  }
  if (quoted) throw new ConfigError(`${where}unterminated quoted value`);
  return line;
}

function unquote(value: string, where: string): string {
  if (!value.startsWith('"')) return value;
  try {
    const s: unknown = JSON.parse(value);
    if (typeof s === "string") return s;
  } catch {
    // fall through
  }
  throw new ConfigError(`${where}bad quoted value ${value.slice(0, 60)}`);
}

/** st_rdev of /dev/null: character device 1:3 (Documentation/admin-guide/devices.txt). */
const DEV_NULL = (1 << 8) | 3;

/** A config file larger than this is refused (a real one is a few hundred bytes). */
export const CONFIG_FILE_MAX_BYTES = 1024 * 1024;

/**
 * Reads the config file. `explicit`: given with --config, so it must exist; the default file may
 * be absent. It must be a regular file: it is opened without blocking (a FIFO would hang luod's
 * start) and checked with fstat on the opened fd, so what is checked is what is read. A symlink is
 * followed (/etc/luod.conf may point at a managed file): the file it reaches is what is checked.
 * When luod runs as root that file must belong to root and not be writable by group or others:
 * whoever can write it decides who may send KEXEC.
 */
export function readConfigFile(path: string, explicit: boolean, opts: { enforceOwner?: boolean } = {}): Partial<Settings> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" && !explicit) return {};
    throw new ConfigError(`cannot read config file ${path}: ${code ?? (e as Error).message}`);
  }
  let text: string;
  try {
    const st = fstatSync(fd);
    // /dev/null, the usual "no config file", reads as an empty one
    if (st.isCharacterDevice() && st.rdev === DEV_NULL) return {};
    if (!st.isFile()) throw new ConfigError(`config file ${path} is not a regular file (${fileKind(st)})`);
    if (opts.enforceOwner ?? process.getuid?.() === 0) {
      if (st.uid !== 0 || (st.mode & 0o022) !== 0)
        throw new ConfigError(`config file ${path} must belong to root and not be writable by group or others (uid ${st.uid}, mode 0${(st.mode & 0o777).toString(8)})`);
    }
    if (st.size > CONFIG_FILE_MAX_BYTES) throw new ConfigError(`config file ${path} is ${st.size} bytes, more than ${CONFIG_FILE_MAX_BYTES}`);
    text = readFileSync(fd, "utf8");
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`cannot read config file ${path}: ${(e as { code?: string }).code ?? (e as Error).message}`);
  } finally {
    closeSync(fd);
  }
  return parseConfigText(text, path);
}
