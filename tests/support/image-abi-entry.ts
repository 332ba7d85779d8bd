// Test-only entry point: `bun tests/support/image-abi-entry.ts IMAGE` (or this file compiled with
// src/daemon/image-worker.ts as a second entry point, as scripts/build-binary.ts does for luod)
// prints readImageAbi's result for IMAGE as one JSON line. tests/integration/image-worker.test.ts.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { inspectKernelImage, KERNEL_HEAD_BYTES } from "../../src/daemon/bzimage";
import { readImageAbi } from "../../src/daemon/image-reader";

const path = process.argv[2];
if (!path) {
  console.error("usage: image-abi-entry IMAGE");
  process.exit(2);
}
const fd = openSync(path, "r");
const head = new Uint8Array(KERNEL_HEAD_BYTES);
const n = readSync(fd, head, 0, head.length, 0);
const info = inspectKernelImage(head.subarray(0, n), fstatSync(fd).size);
if (!info.ok) {
  console.log(JSON.stringify({ ok: false, code: "image", message: info.reason }));
  process.exit(1);
}
const result = await readImageAbi(fd, info);
closeSync(fd);
console.log(JSON.stringify(result));
