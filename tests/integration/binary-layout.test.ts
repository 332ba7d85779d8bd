// What scripts/build-binary.ts must put into dist/luo (docs/bun.md, "The compiled binary"): the
// epoll worker where src/worker-url.ts looks for it, and the code split into chunks, so that a
// personality loads only its own modules (luoctl status: 1.28× → 0.97× a minimal Bun client).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { LUO, requireBinary } from "../support/binary";

test("dist/luo embeds the epoll worker and its code as chunks, not one bundle", () => {
  requireBinary();
  const text = readFileSync(LUO).toString("latin1");
  expect(text.includes("$bunfs/root/kernel/epoll-worker.js")).toBe(true);
  const chunks = new Set(text.match(/\$bunfs\/root\/[a-z-]+-[a-z0-9]{8}\.js/g) ?? []);
  expect(chunks.size).toBeGreaterThanOrEqual(5);
});
