#!/bin/sh
# qemu-vm -- an unmodified QEMU (the host's, through hostrun) runs a tiny guest under luo-qemu; the
# guest's RAM stays in RAM across a real kexec and the guest resumes where it paused:
#   boot 1: luod; luo-qemu run vm-1 (16 MiB, the counter guest of examples/qemu); the guest counts
#           and fills its RAM pattern; luod is killed and started again: luo-qemu rejoins it
#           1. an aborted update: another client FAILs after the VM paused → the guest continues
#           2. the real jump
#   boot 2: luod; the same luo-qemu command line resumes vm-1: its counter continues from where it
#           paused, no second BOOT, the pattern is intact in the RAM memfd luod's session brought
#           back, nothing of the RAM's size was written to the share; then SIGTERM stops it.
# The payload: luo-guest.bin (examples/qemu/build-guest.sh), built by the test on the host.
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
GUEST=$LUO_SHARE/payload/luo-guest.bin
SERIAL=$LUO_SHARE/guest-serial.log
RAM_BYTES=16777216

# the same command line on both boots, as a systemd unit would have it
start_vm() {
    hostrun "$BIN/luo-qemu" run vm-1 --memory 16M --shutdown-timeout 2s -- \
        -bios "$GUEST" -display none -nodefaults -accel tcg \
        -chardev "file,id=s0,path=$SERIAL,append=on" -serial chardev:s0 \
        >> "$LUO_SHARE/clients-vm.log" 2>&1 &
    VM_PID=$!
}
# serial_count PATTERN: lines of the guest's serial console matching PATTERN
serial_count() { tr -d '\r' < "$SERIAL" 2>/dev/null | grep -c -- "$1"; }
# last_count: the guest's last printed counter (hex)
last_count() { tr -d '\r' < "$SERIAL" | grep -E '^COUNT [0-9a-f]{8}$' | tail -n 1 | cut -d' ' -f2; }
# wait_serial PATTERN COUNT [SECONDS]
wait_serial() {
    i=0
    while [ "$(serial_count "$1")" -lt "$2" ]; do
        i=$((i + 1)); [ $i -gt $(( ${3:-120} * 10 )) ] && { tail -n 5 "$SERIAL"; fail "guest serial: fewer than $2 lines '$1'"; }
        sleep 0.1
    done
}
# qemu_pid: QEMU's pid, as luo-qemu wrote it in its run directory, if that process lives
qemu_pid() { p=$(cat /run/luo-qemu/vm-1/qemu.pid 2>/dev/null) && [ -d "/proc/$p" ] && echo "$p"; }
# check_ram WHEN: the counter guest's RAM, read from QEMU's fd 3 (the memfd luo-qemu gave it)
check_ram() {
    qpid=$(qemu_pid); [ -n "$qpid" ] || fail "$1: no QEMU process"
    echo "JOB: $1: QEMU $qpid maps $(readlink /proc/$qpid/fd/3) as guest RAM"
    hostrun "$BUN" "$REPO/tests/vm/guest/guest-ram.ts" "/proc/$qpid/fd/3" | sed "s/^/JOB: $1: /" || fail "$1: guest RAM check"
}

if [ "$LUO_STAGE" = 1 ]; then
    step "boot 1: luod, luo-qemu vm-1"
    start_luod
    start_vm
    wait_lines vm "running" 1 60
    wait_serial "^PATTERN" 1
    wait_serial "^COUNT " 2
    n=$(serial_count "^COUNT ")
    wait_serial "^COUNT " $((n + 2))
    pass "the guest runs and counts: $(last_count)"
    check_ram "before the updates"

    step "luod restarts: luo-qemu subscribes and prepares again, the guest never stops"
    kill_luod
    start_luod
    wait_lines vm "luod is back: subscribed and prepared again" 1 60
    n=$(serial_count "^COUNT ")
    wait_serial "^COUNT " $((n + 2)) 60
    pass "luo-qemu rejoined the restarted luod; the guest kept counting ($(last_count))"

    step "1. an aborted update: another client FAILs"
    start_clients failer preserve --ids bad-1 --behave fail --fail-when "$LUO_SHARE/fail-now"
    wait_lines failer SUBSCRIBED 1
    load_next_kernel
    kexec_in_background aborted --timeout 120s
    wait_lines vm "READY: paused and saved" 1 60
    touch "$LUO_SHARE/fail-now"
    kexec_wait
    [ "$KEXEC_RC" != 0 ] || fail "kexec succeeded despite FAIL"
    wait_lines vm "the update was aborted" 1 30
    before=$(serial_count "^COUNT ")
    wait_serial "^COUNT " $((before + 2)) 60
    kill "$CLIENTS_failer"; wait "$CLIENTS_failer" 2>/dev/null
    luoctl evict bad-1 || fail "luoctl evict bad-1"
    pass "the update aborted after the VM paused; the guest continues in the old kernel ($(last_count))"

    step "2. the real jump"
    jump
fi

step "boot 2: luod restores, the same luo-qemu command line resumes vm-1"
echo "JOB: luo-qemu in boot 1 said:"; cat "$LUO_SHARE/clients-vm.log"
before=$(last_count)
boots=$(serial_count "^BOOT")
echo "JOB: last counter before the jump: $before; BOOT lines so far: $boots"
# the RAM crossed in the preserved memfd only: the VM has no disk, and the share got nothing big
big=$(find "$LUO_SHARE" -path "$LUO_SHARE/boot" -prune -o -path "$LUO_SHARE/payload" -prune -o -type f -size +4M -print)
[ -z "$big" ] || fail "files of the RAM's size were written to the share: $big"
start_luod
[ "$(unclaimed)" = 1 ] || fail "luod does not report vm-1's session as unclaimed"
start_vm
wait_lines vm "resumed: blackout" 1 120
wait_serial "^COUNT " $(( $(serial_count "^COUNT ") + 2 )) 60
# the hex numbers compared as strings (fixed width): busybox awk reads "00070000" as octal and
# "00038000" as decimal when it compares them as numbers
after=$(tr -d '\r' < "$SERIAL" | grep -E '^COUNT [0-9a-f]{8}$' | awk -v b="$before" '("x" $2) > ("x" b) { print $2; exit }')
echo "JOB: COUNTER before the jump $before, first after the resume $after"
echo "JOB: BOOT lines after the resume: $(serial_count "^BOOT")"
[ "$(serial_count "^BOOT")" = "$boots" ] || fail "the guest booted again"
check_ram "after the resume"
[ "$(unclaimed)" = 0 ] || fail "vm-1's session is still unclaimed"
luoctl status
grep "resumed: blackout" "$LUO_SHARE/clients-vm.log" | sed 's/^/JOB: /'

step "SIGTERM stops the VM"
kill -TERM "$VM_PID"
wait "$VM_PID"; rc=$?
echo "JOB: luo-qemu exited $rc"
[ "$rc" = 0 ] || fail "luo-qemu exited $rc after SIGTERM"
[ -z "$(qemu_pid)" ] || fail "QEMU still runs after luo-qemu stopped"
pass "vm-1 resumed after the kexec without booting again"
