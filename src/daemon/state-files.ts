// Small JSON records under luod's state directory (default /run/luod, a tmpfs): what must outlive
// a luod restart within one boot, never across boots. Each record carries the kernel's boot_id,
// so a record left by an earlier boot (a state dir that is not on tmpfs) is ignored.
import { readFileSync, writeFileSync, renameSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

function currentBootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown";
  }
}

export class StateFiles {
  private readonly bootId = currentBootId();
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  }

  read<T>(name: string): T | null {
    let raw: { bootId?: string; data?: T };
    try {
      raw = JSON.parse(readFileSync(this.path(name), "utf8"));
    } catch {
      return null;
    }
    return raw.bootId === this.bootId && raw.data !== undefined ? raw.data : null;
  }

  /** Atomic replace (write + rename): a crash mid-write leaves the previous record. */
  write<T>(name: string, data: T): void {
    const tmp = this.path(name) + ".tmp";
    writeFileSync(tmp, JSON.stringify({ bootId: this.bootId, data }), { mode: 0o600 });
    renameSync(tmp, this.path(name));
  }

  remove(name: string): void {
    rmSync(this.path(name), { force: true });
  }

  private path(name: string): string {
    return join(this.dir, `${name}.json`);
  }
}
