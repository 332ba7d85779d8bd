// docs/protocol.md, "Compatibility" lists what is kept for old hands and old readers: every option
// alias luoctl rewrites is in its table, and the versions it names are the ones the code writes.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { OPTION_ALIASES } from "../../src/ctl/commands";
import { JSON_VERSION } from "../../src/ctl/context";
import { PROTOCOL_VERSION } from "../../src/wire/replies";
import { MANIFEST_FORMAT, MANIFEST_VERSION } from "../../src/daemon/manifest";
import { STATE_VERSIONS } from "../../src/daemon/state-files";
import { RECORD_FORMAT, RECORD_VERSION } from "../../src/qemu/record";
import { STATE_FORMAT, STATE_VERSION } from "../../src/qemu/run-dir";

const doc = readFileSync(resolve(import.meta.dir, "../../docs/protocol.md"), "utf8");
const start = doc.indexOf("\n## Compatibility\n");
const section = doc.slice(start, doc.indexOf("\n## ", start + 1) === -1 ? undefined : doc.indexOf("\n## ", start + 1));

test("every luoctl option alias is listed with the option it stands for", () => {
  expect(start).toBeGreaterThan(0);
  const rows = section.split("\n").filter((l) => l.startsWith("| luoctl option |"));
  for (const [old, current] of Object.entries(OPTION_ALIASES)) {
    expect(rows.filter((r) => r.includes(`\`--${old} `) && r.includes(`\`--${current} `))).toHaveLength(1);
  }
});

test("the versions the section names are the ones the code writes", () => {
  expect(section).toContain(`| ${PROTOCOL_VERSION}; luod says it in \`STATUS\``);
  expect(section).toContain(`| ${JSON_VERSION}; \`json_version\` in every document`);
  expect(section).toContain(`\`"format":"${MANIFEST_FORMAT}","version":${MANIFEST_VERSION}\``);
  expect(section).toContain(`\`"format":"${RECORD_FORMAT}","version":${RECORD_VERSION}\``);
  expect(section).toContain(`\`"format":"${STATE_FORMAT}","version":${STATE_VERSION}\``);
  const stateVersions = [...new Set(Object.values(STATE_VERSIONS))];
  expect(section).toContain(`STATE_VERSIONS\`, all ${stateVersions.join(", ")})`);
});
