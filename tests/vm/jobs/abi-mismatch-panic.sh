#!/bin/sh
# abi-mismatch-panic -- what luod's ABI gate prevents: kernel C (scripts/vm/build-kernel.sh c) has
# another LUO ABI string (abi.env LUO_ABI). With luod and CLIENTS clients holding prepared sessions
# (LUO has state to hand over), C is loaded BEHIND luod's back (tests/vm/guest/raw-kexec.ts: a raw
# kexec_file_load + reboot(LINUX_REBOOT_CMD_KEXEC)). C must panic at boot; run-vm.sh boots with
# panic=-1 and QEMU -no-reboot, so QEMU ends and run-job.sh exits 125 (no job code). A second boot of
# this job is the failure: C came up.
#   SESSIONS=0: no luod, no client (a kexec into C with nothing preserved)
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
CLIENTS=${CLIENTS:-2} MIB=${MIB:-1} SESSIONS=${SESSIONS:-1}

if [ "$LUO_BOOT" = 1 ]; then
    C_LUO=$(. "$LUO_KERNEL_C_ENV"; echo "$LUO_ABI") C_RELEASE=$(. "$LUO_KERNEL_C_ENV"; echo "$KERNEL_RELEASE")
    A_LUO=$(. "$LUO_KERNEL_A_ENV"; echo "$LUO_ABI")
    [ "$A_LUO" != "$C_LUO" ] || fail "kernels A and C have the same LUO ABI $A_LUO"
    if [ "$SESSIONS" = 1 ]; then
        step "boot 1 on kernel A ($A_LUO): luod, $CLIENTS client(s) holding prepared sessions"
        start_luod
        start_clients main preserve --ids "$(ids c "$CLIENTS")" --mib "$MIB" --prepare
        wait_lines main "SIZE FROZEN" "$CLIENTS" 120
        luoctl list
        n=$(luoctl list --json | grep -o '"session":"luod:c-[^"]*"' | wc -l)
        [ "$n" = "$CLIENTS" ] || fail "luoctl list shows $n sessions, not $CLIENTS"
        echo "JOB: $n client(s) hold prepared sessions in LUO"
    else
        step "boot 1 on kernel A ($A_LUO): no luod, no session"
    fi
    step "raw kexec into kernel C ($C_RELEASE, $C_LUO), behind luod's back; C must panic"
    hostrun "$BUN" "$REPO/tests/vm/guest/raw-kexec.ts" "$LUO_KERNEL_C" "$LUO_SHARE/boot/initramfs"
    fail "raw-kexec returned $?: the host did not jump"
fi
fail "kernel C booted to userspace ($(uname -r)): no panic"
