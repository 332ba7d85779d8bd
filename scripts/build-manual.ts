// Writes the man pages, the shell completions and the example /etc/luod.conf, all generated from
// the tables --help is made of (src/manual/), under OUTDIR:
//   node_modules/.bin/bun scripts/build-manual.ts OUTDIR      (npm run manual: OUTDIR dist/share)
// The files and their paths are listed in src/manual/outputs.ts. The output depends only on the
// sources, package.json's version and SOURCE_DATE_EPOCH (the pages' date when set).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { manualDate, manualFiles } from "../src/manual/outputs";

const outdir = process.argv[2];
if (outdir === undefined || process.argv.length > 3) {
  console.error("usage: bun scripts/build-manual.ts OUTDIR");
  process.exit(2);
}
const root = resolve(import.meta.dir, "..");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
let date: string;
try {
  date = manualDate(process.env.SOURCE_DATE_EPOCH);
} catch (e) {
  console.error(`build-manual: ${(e as Error).message}`);
  process.exit(2);
}
const files = manualFiles({ version, date });
for (const [path, text] of Object.entries(files)) {
  const file = join(resolve(outdir), path);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text, { mode: 0o644 });
}
console.log(`build-manual: ${Object.keys(files).length} files in ${resolve(outdir)} (luo-agent ${version}, ${date})`);
