// Group names of the settings to gids: /etc/group, then NSS through getent.
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { ConfigError } from "./settings";

/**
 * A group name (from /etc/group, then NSS through getent) or a numeric gid. Throws ConfigError
 * for an unknown name. `groupFile` is for tests.
 */
export function resolveGroup(group: string, opts: { groupFile?: string; useGetent?: boolean } = {}): number {
  if (/^\d+$/.test(group)) return Number(group);
  const fromFile = (text: string) => {
    const line = text.split("\n").find((l) => l.split(":")[0] === group);
    const gid = line?.split(":")[2];
    return gid !== undefined && /^\d+$/.test(gid) ? Number(gid) : null;
  };
  try {
    const gid = fromFile(readFileSync(opts.groupFile ?? "/etc/group", "utf8"));
    if (gid !== null) return gid;
  } catch {
    // no readable group file: try NSS
  }
  if (opts.useGetent ?? true) {
    try {
      const r = spawnSync("getent", ["group", group], { encoding: "utf8", timeout: 5000 });
      if (r.status === 0) {
        const gid = fromFile(r.stdout);
        if (gid !== null) return gid;
      }
    } catch {
      // no getent
    }
  }
  throw new ConfigError(`unknown group "${group}"`);
}
