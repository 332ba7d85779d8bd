// The metrics file (--metrics-file): the text of metrics.ts written for node_exporter's textfile
// collector (docs/daemon.md, "Metrics"). Atomically: a temp file in the same directory (node_exporter
// reads only *.prom, and the temp name does not end so), written, made 0644, fsync'ed and renamed
// over the file, so a scrape never sees half a file. Written at start, after changes (a burst
// makes one write per MIN_INTERVAL_MS; a phase change is written as soon as the write under way
// ends), every REFRESH_MS (so the file's age tells whether luod is alive) and at stop.
// The writes are asynchronous (node's fs promises run in a thread pool): a slow or hung file
// system never stalls luod's event loop. A failed write is logged once per distinct error, never
// thrown: the metrics must not take the broker down.
import { constants, statSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ConfigError } from "./settings";
import { oneLine } from "../wire/errors";
import type { Logger } from "./log";

/** At most one write per this long under a burst of changes (each connection, each request). */
export const MIN_INTERVAL_MS = 200;
/** Rewritten this often when nothing changes: an old file means a luod that is gone or hung. */
export const REFRESH_MS = 60_000;
/** How long the stop waits for its final write. */
export const FINAL_WRITE_TIMEOUT_MS = 1000;
/** Distinct write errors logged at most (then they are only counted in silence). */
const MAX_DISTINCT_ERRORS = 32;

/**
 * Checks --metrics-file at start: its directory must exist (a ConfigError: luod refuses to
 * start, exit 2). Returns a warning for a name node_exporter would ignore (not `*.prom`).
 */
export function checkMetricsPath(path: string): string | null {
  const dir = dirname(path);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // below
  }
  if (!isDir) throw new ConfigError(`--metrics-file ${path}: the directory ${dir} does not exist (node_exporter's textfile directory, e.g. /var/lib/prometheus/node-exporter)`);
  try {
    if (statSync(path).isDirectory()) throw new ConfigError(`--metrics-file ${path} is a directory; name a file in it, e.g. ${join(path, "luod.prom")}`);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
  }
  return path.endsWith(".prom") ? null : `--metrics-file ${path} does not end in .prom: node_exporter's textfile collector reads only *.prom files`;
}

export interface MetricsFileOptions {
  path: string;
  /** The file's content now; `stopped` for the last write at stop. */
  render: (stopped: boolean) => string;
  log: Logger;
  minIntervalMs?: number;
  refreshMs?: number;
}

export class MetricsFile {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private refresh: ReturnType<typeof setInterval> | null = null;
  private writing: Promise<void> | null = null;
  /** Something changed after the last write began. */
  private dirty = false;
  private urgent = false;
  private lastStart = 0;
  private closed = false;
  private readonly errorsSeen = new Set<string>();
  private failing = false;
  private readonly tmp: string;

  constructor(private readonly o: MetricsFileOptions) {
    this.tmp = join(dirname(o.path), `.${basename(o.path)}.${process.pid}.tmp`);
  }

  /** The first write, now, and the periodic refresh. */
  start(): void {
    this.refresh = setInterval(() => this.changed(), this.o.refreshMs ?? REFRESH_MS);
    this.refresh.unref?.();
    this.changed(true);
  }

  /** Something the file shows changed; `urgent` (a phase change): written without waiting for the interval. */
  changed(urgent = false): void {
    if (this.closed) return;
    this.dirty = true;
    if (urgent) this.urgent = true;
    if (this.writing) return; // the write under way schedules the next one when it ends
    this.schedule();
  }

  private schedule(): void {
    const wait = this.urgent ? 0 : Math.max(0, this.lastStart + (this.o.minIntervalMs ?? MIN_INTERVAL_MS) - Date.now());
    if (this.timer !== null) {
      if (wait > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.writeNow(false);
    }, wait);
  }

  /** Starts a write of the current content; the returned promise never rejects. */
  private writeNow(stopped: boolean): Promise<void> {
    this.dirty = false;
    this.urgent = false;
    this.lastStart = Date.now();
    const done = this.write(stopped).finally(() => {
      if (this.writing === done) this.writing = null;
      if (this.dirty && !this.closed) this.schedule();
    });
    this.writing = done;
    return done;
  }

  private async write(stopped: boolean): Promise<void> {
    try {
      await writeAtomically(this.o.path, this.tmp, this.o.render(stopped));
      if (this.failing) this.o.log.notice(`metrics file ${this.o.path} written again`);
      this.failing = false;
    } catch (e) {
      this.failing = true;
      const what = oneLine((e as Error).message, 300);
      const key = (e as { code?: string }).code ?? what;
      if (this.errorsSeen.has(key) || this.errorsSeen.size >= MAX_DISTINCT_ERRORS) return;
      this.errorsSeen.add(key);
      this.o.log.warning(`cannot write the metrics file ${this.o.path}: ${what}; luod carries on (this error is not logged again)`);
    }
  }

  /** Resolves once no write is under way or scheduled (tests; a stop uses close()). */
  async settled(): Promise<void> {
    while (this.writing || this.timer !== null) {
      await this.writing;
      if (this.timer !== null) await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** The last write (phase "stopped"), after the one under way; waits at most FINAL_WRITE_TIMEOUT_MS. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.refresh !== null) clearInterval(this.refresh);
    this.timer = this.refresh = null;
    let timeout: ReturnType<typeof setTimeout> | undefined;
    const final = (async () => {
      await this.writing;
      await this.writeNow(true);
    })();
    await Promise.race([final, new Promise<void>((resolve) => (timeout = setTimeout(resolve, FINAL_WRITE_TIMEOUT_MS)))]);
    clearTimeout(timeout);
  }
}

/**
 * Writes `text` to `path` through `tmp` in the same directory: created exclusively and never
 * through a symlink (the directory may be writable by node_exporter's user), mode 0644 whatever
 * the umask (node_exporter runs as another user), fsync'ed, then renamed into place.
 */
async function writeAtomically(path: string, tmp: string, text: string): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let fh;
  try {
    fh = await open(tmp, flags, 0o644);
  } catch (e) {
    if ((e as { code?: string }).code !== "EEXIST") throw e;
    // left by a luod of the same pid that was killed mid-write, or planted: removed (a symlink
    // itself, not its target), then created afresh
    await rm(tmp, { force: true });
    fh = await open(tmp, flags, 0o644);
  }
  try {
    try {
      await fh.writeFile(text);
      await fh.chmod(0o644);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
}
