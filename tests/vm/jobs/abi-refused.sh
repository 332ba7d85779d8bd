#!/bin/sh
# abi-refused -- the ABI gate on the real kernel: kernel C differs from the running kernel A only
# in its LUO ABI string (scripts/vm/build-kernel.sh c). luod refuses to load it and `luoctl check
# --kernel` fails, both naming the two strings; `luoctl kexec` cannot start an update into it; the
# host stays up on A with its client's session. Kernel B (same ABI) passes the same check.
# Expected strings: A_LUO_ABI and C_LUO_ABI, read by the test from the kernels' abi.env files.
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
[ "$LUO_BOOT" = 1 ] || fail "boot $LUO_BOOT: the host jumped, into C or anything else"

step "luod and one client on A; the running ABI"
start_luod
start_clients main preserve --ids vm-1 --mib 4
wait_lines main SUBSCRIBED 1 120
until luoctl status | grep -q "running ABI"; do sleep 0.2; done
luoctl status
luoctl status | grep -q "running ABI: *$A_LUO_ABI " || fail "luoctl status does not show the running LUO ABI $A_LUO_ABI"

step "luoctl load C: refused"
luoctl load "$LUO_KERNEL_C" --initrd "$LUO_SHARE/boot/initramfs" --reuse-cmdline > /run/load-c.log 2>&1
rc=$?
cat /run/load-c.log
[ $rc = 1 ] || fail "luoctl load C exited $rc, not 1"
grep -q "LUO ABI mismatch: the running kernel has $A_LUO_ABI, the new kernel $C_LUO_ABI" /run/load-c.log ||
    fail "the refusal does not name both LUO ABI strings"
[ "$(cat /sys/kernel/kexec_loaded)" = 0 ] || fail "a kernel is loaded after the refusal"
pass "luoctl load refuses C, naming $A_LUO_ABI and $C_LUO_ABI"

step "luoctl check --kernel C: not ready, for the same reason"
luoctl check --kernel "$LUO_KERNEL_C" --initrd "$LUO_SHARE/boot/initramfs" > /run/check-c.log 2>&1
rc=$?
cat /run/check-c.log
[ $rc = 1 ] || fail "luoctl check --kernel C exited $rc, not 1"
grep -q "FAIL *abi .*$A_LUO_ABI.*$C_LUO_ABI" /run/check-c.log || fail "luoctl check does not fail the abi line naming both strings"
luoctl check --kernel "$LUO_KERNEL_C" --json | grep -q "\"next\":{\"luo\":\"$C_LUO_ABI\"" || fail "check --json does not show C's ABI"
pass "luoctl check --kernel refuses C"

step "luoctl check --kernel B (the same ABI as A): ready"
luoctl check --kernel "$LUO_KERNEL_B" --initrd "$LUO_SHARE/boot/initramfs" || fail "luoctl check --kernel B is not ready"
pass "luoctl check --kernel accepts B"

step "luoctl kexec: nothing to jump into"
luoctl kexec --timeout 30s > /run/kexec.log 2>&1
rc=$?
cat /run/kexec.log
[ $rc = 1 ] || fail "luoctl kexec exited $rc, not 1"
grep -q "no kernel is loaded by luod" /run/kexec.log || fail "luoctl kexec did not say that no kernel is loaded"
[ "$(count_lines main START_PRESERVATION)" = 0 ] || fail "a client was paused for an update that cannot happen"
pass "luoctl kexec cannot start an update into C; the host stays on A"
