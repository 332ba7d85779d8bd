// Removes the loaded kexec image behind luod's back (kexec_file_load with KEXEC_FILE_UNLOAD), so
// that luod's reboot(LINUX_REBOOT_CMD_KEXEC) fails for real with EINVAL (kernel-luo.md §3.5).
import { kexecFileUnload } from "../../../src/kernel/kexec";

kexecFileUnload();
console.log("kexec image unloaded");
