// Loads a kernel with a raw kexec_file_load(2) and jumps into it with reboot(LINUX_REBOOT_CMD_KEXEC),
// BEHIND luod's back: no preflight, no barrier, no client is asked anything. The forced-C VM test
// (tests/vm/abi-mismatch-panic.test.ts) uses it to show what luod's ABI gate prevents; luod itself
// has no way to do this (docs/kernel.md#abi-compatible-strings).
//   hostrun $BUN raw-kexec.ts KERNEL INITRD   (command line: this boot's /proc/cmdline)
import { readFileSync } from "node:fs";
import { kexecFileLoad, rebootKexec, syncFilesystems } from "../../../src/kernel/kexec";
import { closeFd, openFile } from "../../../src/kernel/fd";

const [kernel, initrd] = process.argv.slice(2);
if (!kernel || !initrd) {
  console.error("usage: raw-kexec.ts KERNEL INITRD");
  process.exit(2);
}
const cmdline = readFileSync("/proc/cmdline", "utf8").trim();
const k = openFile(kernel);
const i = openFile(initrd);
kexecFileLoad(k, i, cmdline);
closeFd(k);
closeFd(i);
console.log(`raw-kexec: loaded ${kernel} (command line: ${cmdline}); sync, reboot(LINUX_REBOOT_CMD_KEXEC)`);
syncFilesystems();
rebootKexec();
