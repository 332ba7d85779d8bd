// Removes the loaded kexec image behind luod's back (kexec_file_load with KEXEC_FILE_UNLOAD), so
// that luod's reboot(LINUX_REBOOT_CMD_KEXEC) fails for real with EINVAL (docs/kernel.md#the-freeze-and-its-rollback).
import { kexecFileUnload } from "../../../src/kernel/kexec";

kexecFileUnload();
console.log("kexec image unloaded");
