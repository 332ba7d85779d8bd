// The LUO ABI gate: a kernel whose handover ABI differs from the running kernel's is never loaded
// (a different LUO string panics it at boot: docs/kernel.md#abi-compatible-strings).
//
// The running kernel's strings come from three sources (docs/kernel.md#abi-compatible-strings):
// what KHO's debugfs shows of this very kernel and the running image found on disk (running-abi.ts
// probes both: the image counts only if its banner is /proc/version), completed by what the
// previous luod recorded about the image it jumped into (same banner rule). Two sources that
// disagree, or a string none knows, make the gate refuse: fail closed.
import type { Logger } from "./log";
import type { StateFiles } from "./state-files";
import { ABI_KINDS, compareAbi, type AbiKind, type AbiStrings, type ImageAbiScan } from "./image-abi";
import type { ProbedAbi } from "./running-abi";

/** The running kernel's strings, where each came from, and why the missing ones are missing. */
export interface RunningAbi {
  abi: AbiStrings;
  sources: Partial<Record<AbiKind, string>>;
  notes: string[];
}

/** A probe of the live system: KHO's debugfs and the running image (running-abi.ts). */
export type RunningProbe = () => Promise<ProbedAbi>;

/** What luod records about an image it loads, to know the running ABI after jumping into it. */
export interface ImageRecord {
  banner?: string | null;
  abi?: AbiStrings;
}

/** The state record "running-abi": the next boot's luod knows its kernel from the previous luod's word. */
export interface RecordedAbi {
  banner: string;
  abi: AbiStrings;
  source: string;
}

/**
 * How to make the running ABI known, for the refusal message. The sources are in
 * docs/kernel.md#abi-compatible-strings.
 */
export const MAKE_KNOWN =
  "make it known: put this kernel's image at /boot/vmlinuz-$(uname -r) (or name it with luod's --running-image), " +
  "or mount debugfs (/sys/kernel/debug) for KHO's view";

/**
 * Every problem that makes the update from `running` into `next` unsafe, one line each (image-abi.ts
 * words them, naming both strings); empty: the strings match. An unknown running string also says
 * why it is unknown and how to make it known.
 */
export function abiProblems(running: RunningAbi, next: AbiStrings & { ambiguous?: ImageAbiScan["ambiguous"] }): string[] {
  const problems = compareAbi(running.abi, next);
  const lastUnknown = problems.map((p) => p.code).lastIndexOf("unknown");
  // the notes about every source (an absent debugfs, a running image not found) and the advice
  // come once, after the last unknown string: not once per string
  const general = running.notes.filter((n) => !/^(luo|memfd|kho):/.test(n)).join("; ");
  return problems.map((p, i) => {
    if (p.code !== "unknown") return p.message;
    const own = running.notes.filter((n) => n.startsWith(`${p.kind}:`)).join("; ");
    if (i !== lastUnknown) return `${p.message}${own ? ` (${own})` : ""}`;
    const why = [own, general].filter(Boolean).join("; ");
    return `${p.message}${why ? ` (${why})` : ""}; ${MAKE_KNOWN}`;
  });
}

/** A RunningAbi as CHECK and STATUS show it: the three strings and `sources`. */
export function runningAbiJson(r: RunningAbi) {
  return { ...r.abi, sources: { ...r.sources } as Record<string, string> };
}

/** How long an answer with an unknown string is kept before the next need reads it again. */
export const RETRY_INCOMPLETE_MS = 10_000;

function complete(r: RunningAbi): boolean {
  return ABI_KINDS.every((k) => r.abi[k] !== null);
}

/** One line for logs and `luoctl status`: "luo-v5 memfd-v2 kho-v4" (unknown as "?"). */
export function formatAbi(abi: AbiStrings): string {
  return ABI_KINDS.map((k) => abi[k] ?? `${k}-?`).join(" ");
}

/**
 * The running kernel's ABI: the probes, completed by the record of the previous luod when its
 * banner matches. Computed once per process (it cannot change within a boot) and on demand: the
 * running image may take a second to decode. An answer with a string unknown is computed again
 * when next needed, RETRY_INCOMPLETE_MS after it (debugfs mounted or the image installed since).
 */
export class RunningAbiSource {
  private pending: Promise<RunningAbi> | null = null;
  private known: RunningAbi | null = null;
  private failed: string | null = null;
  private recorded: RecordedAbi | null = null;

  constructor(
    private readonly o: {
      probe: RunningProbe;
      files: StateFiles;
      log: Logger;
      /** /proc/version: the banner a recorded image must carry. */
      procVersion: () => string | null;
      /** An incomplete answer is kept this long (a `luoctl check` loop must not decode the image every time). */
      retryIncompleteMs?: number;
    },
  ) {}

  get(): Promise<RunningAbi> {
    this.pending ??= this.compute().then(
      (r) => {
        // An incomplete answer is not kept either: the refusal tells the operator to mount
        // debugfs or install the image, and the next LOAD or CHECK must see that without a restart.
        if (!complete(r)) setTimeout(() => (this.pending = null), this.o.retryIncompleteMs ?? RETRY_INCOMPLETE_MS).unref?.();
        return r;
      },
      (e) => {
        this.pending = null; // a failure is not cached: the next LOAD tries again
        this.failed = (e as Error).message;
        throw e;
      },
    );
    return this.pending;
  }

  /** CHECK without an image does not wait: an incomplete answer is read again in the background. */
  refreshIfIncomplete(): void {
    if (this.known && !complete(this.known) && !this.pending) this.get().catch(() => {});
  }

  /** True when the ABI the previous luod recorded covers every string (no probe needed yet). */
  recordedComplete(): boolean {
    return this.recorded !== null && ABI_KINDS.every((k) => this.recorded!.abi[k] !== null);
  }

  /** What STATUS and CHECK show without waiting: the result if it is known already. */
  peek(): RunningAbi | null {
    return this.known;
  }

  /** Why the last reading failed (null: it did not, or has not ended). */
  failure(): string | null {
    return this.known ? null : this.failed;
  }

  /**
   * After a live-update boot: the manifest said which image the previous luod jumped into. If this
   * kernel is that image (same banner), its strings are this kernel's: kept for the whole boot.
   */
  recordFromManifest(next: ImageRecord | null, attempt: number): void {
    const banner = this.o.procVersion();
    if (!next?.banner || !next.abi || !banner) return;
    if (next.banner !== banner) {
      this.o.log.warning("this kernel is not the one the previous luod loaded (its banner differs from /proc/version): not using the ABI it recorded");
      return;
    }
    const record: RecordedAbi = { banner, abi: next.abi, source: `recorded by the luod that jumped into this kernel (update ${attempt})` };
    this.recorded = record; // kept in memory too: a full or read-only state dir must not lose it (or the boot)
    // What STATUS and CHECK show until a LOAD or CHECK runs the probe (main.ts: not at start when
    // this is complete, so the image is not decoded while tenants claim their sessions).
    this.known ??= {
      abi: { ...record.abi },
      sources: Object.fromEntries(ABI_KINDS.filter((k) => record.abi[k] !== null).map((k) => [k, record.source])),
      notes: [],
    };
    this.o.log.info(`running kernel ABI: ${formatAbi(this.known.abi)} (${ABI_KINDS.map((k) => `${k}: ${this.known!.sources[k] ?? "unknown"}`).join("; ")})`);
    try {
      this.o.files.write("running-abi", record);
    } catch (e) {
      this.o.log.warning(`keeping the running kernel's recorded ABI in the state dir failed (a restarted luod will not know it): ${(e as Error).message}`);
    }
  }

  private async compute(): Promise<RunningAbi> {
    const probed = await this.o.probe();
    const abi: AbiStrings = { luo: probed.luo.value, memfd: probed.memfd.value, kho: probed.kho.value };
    const sources: Partial<Record<AbiKind, string>> = {};
    for (const k of ABI_KINDS) if (probed[k].source) sources[k] = probed[k].source!;
    const notes = [...probed.notes];
    const recorded = this.recorded ?? this.o.files.read<RecordedAbi>("running-abi");
    const banner = this.o.procVersion();
    if (recorded && recorded.banner === banner) {
      for (const k of ABI_KINDS) {
        const r = recorded.abi[k];
        if (r === null || r === undefined) continue;
        if (abi[k] === null) {
          abi[k] = r;
          sources[k] = recorded.source;
        } else if (abi[k] !== r) {
          // two sources disagree about this kernel: trust neither
          notes.push(`${k}: ${sources[k]} says ${abi[k]} but luod recorded ${r}`);
          abi[k] = null;
          delete sources[k];
        }
      }
    }
    const result = { abi, sources, notes };
    this.known = result;
    this.o.log.info(`running kernel ABI: ${formatAbi(abi)} (${ABI_KINDS.map((k) => `${k}: ${sources[k] ?? "unknown"}`).join("; ")})`);
    return result;
  }
}
