// What `npm run manual` (scripts/build-manual.ts OUTDIR) writes, by path under OUTDIR: the
// contract with the packaging, which installs these files as they are (plain, uncompressed).
import { bashLuoctl, bashLuod, zshLuoctl, zshLuod } from "./completions";
import { exampleConfig } from "./luod-conf";
import { MANUAL_DATE, luoQemuPage, luoctlPage, luodConfPage, luodPage, type PageMeta } from "./man-pages";

export function manualFiles(meta: PageMeta): Record<string, string> {
  return {
    "man/man8/luod.8": luodPage(meta),
    "man/man8/luoctl.8": luoctlPage(meta),
    "man/man8/luo-qemu.8": luoQemuPage(meta),
    "man/man5/luod.conf.5": luodConfPage(meta),
    "completions/bash/luoctl": bashLuoctl(meta.version),
    "completions/bash/luod": bashLuod(meta.version),
    "completions/zsh/_luoctl": zshLuoctl(meta.version),
    "completions/zsh/_luod": zshLuod(meta.version),
    "luod.conf": exampleConfig(meta.version),
  };
}

/**
 * The pages' date: SOURCE_DATE_EPOCH (seconds, as reproducible builds set it) as a UTC day, else
 * MANUAL_DATE; never the clock.
 */
export function manualDate(sourceDateEpoch: string | undefined): string {
  if (sourceDateEpoch === undefined || sourceDateEpoch === "") return MANUAL_DATE;
  if (!/^\d{1,12}$/.test(sourceDateEpoch)) throw new Error(`SOURCE_DATE_EPOCH must be a number of seconds, not ${JSON.stringify(sourceDateEpoch)}`);
  return new Date(Number(sourceDateEpoch) * 1000).toISOString().slice(0, 10);
}
