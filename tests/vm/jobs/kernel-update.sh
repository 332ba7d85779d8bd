#!/bin/sh
# kernel-update -- a real kernel update and back: A -> B -> A, each jump a live update by luod with
# CLIENTS clients whose memfds (MIB MiB each) must come back byte for byte. B is another build of the
# same source (scripts/vm/build-kernel.sh b: its own release "-luo-b" and a line "luo-agent test
# kernel B" printed at boot) with the same LUO ABI. What to expect comes from the kernels' abi.env
# files (run-job.sh: LUO_KERNEL_{A,B}[_ENV]), never from constants.
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
CLIENTS=${CLIENTS:-3} MIB=${MIB:-4}
AB=$(ids ab "$CLIENTS") BA=$(ids ba "$CLIENTS")
A_RELEASE=$(. "$LUO_KERNEL_A_ENV"; echo "$KERNEL_RELEASE") A_VERSION=$(. "$LUO_KERNEL_A_ENV"; echo "$KERNEL_VERSION")
B_RELEASE=$(. "$LUO_KERNEL_B_ENV"; echo "$KERNEL_RELEASE") B_VERSION=$(. "$LUO_KERNEL_B_ENV"; echo "$KERNEL_VERSION")

# is_kernel NAME RELEASE VERSION: uname -r/-v and /proc/version's banner are this kernel's
is_kernel() {
    echo "JOB: uname -r $(uname -r); uname -v $(uname -v)"
    [ "$(uname -r)" = "$2" ] || fail "uname -r is $(uname -r), not kernel $1's $2"
    [ "$(uname -v)" = "$3" ] || fail "uname -v is '$(uname -v)', not kernel $1's '$3'"
    grep -qF "Linux version $2 " /proc/version && grep -qF "$3" /proc/version || fail "/proc/version is not kernel $1's: $(cat /proc/version)"
    echo "JOB: running kernel $1 ($2)"
    # where a distribution keeps the running image, as programs under hostrun (luod) see it: the
    # bzImage header's kernel_version ("<release> (<by>@<host>) <uname -v>", at 0x200 + the u16 at 0x20e)
    img=/boot/vmlinuz-$2
    hostrun test -f "$img" || fail "$img is missing in the host root"
    at=$(hostrun od -An -tu2 -j526 -N2 "$img" | tr -d ' ')
    hdr=$(hostrun dd if="$img" bs=1 skip=$((at + 512)) count=256 2>/dev/null | tr '\0' '\n' | head -n 1)
    case $hdr in "$2 ("*") $3") ;; *) fail "$img is not kernel $1's image: its header says '$hdr'" ;; esac
    echo "JOB: $img is kernel $1's image ($hdr)"
}
# update_to NAME IMAGE: luod loads IMAGE (this initramfs, this command line) and carries the sessions
update_to() {
    luoctl load "$2" --initrd "$LUO_SHARE/boot/initramfs" --reuse-cmdline || fail "luoctl load $1"
    step "luoctl kexec into kernel $1"
    luoctl kexec --timeout 120s
    fail "luoctl kexec returned $?: the host did not jump"
}
# claim_all IDS: every client claims, verifies every byte, finishes
claim_all() {
    [ "$(unclaimed)" = "$CLIENTS" ] || fail "luod does not report $CLIENTS unclaimed sessions"
    run_clients claim --ids "$1" --mib "$MIB" || fail "claim/verify of $1"
    [ "$(unclaimed)" = 0 ] || fail "sessions still unclaimed after every client claimed"
}

case $LUO_BOOT in
1)
    step "boot 1 on kernel A: luod, $CLIENTS client(s) with $MIB MiB each; update to kernel B"
    is_kernel A "$A_RELEASE" "$A_VERSION"
    dmesg | grep -q "luo-agent test kernel B" && fail "kernel A says it is kernel B"
    start_luod
    start_clients ab preserve --ids "$AB" --mib "$MIB"
    wait_lines ab SUBSCRIBED "$CLIENTS" 120
    update_to B "$LUO_KERNEL_B"
    ;;
2)
    step "boot 2 on kernel B: the data came along; update back to kernel A"
    [ "$LUO_STAGE" = 2 ] || fail "boot 2 is not a live update (no KHO data)"
    is_kernel B "$B_RELEASE" "$B_VERSION"
    dmesg | grep -q "luo-agent test kernel B" || fail "kernel B's boot line is not in dmesg"
    start_luod
    claim_all "$AB"
    pass "kernel B: $CLIENTS client(s) got $MIB MiB each back intact"
    start_clients ba preserve --ids "$BA" --mib "$MIB"
    wait_lines ba SUBSCRIBED "$CLIENTS" 120
    update_to A "$LUO_KERNEL_A"
    ;;
3)
    step "boot 3 on kernel A again: the data came back"
    [ "$LUO_STAGE" = 2 ] || fail "boot 3 is not a live update (no KHO data)"
    is_kernel A "$A_RELEASE" "$A_VERSION"
    dmesg | grep -q "luo-agent test kernel B" && fail "kernel A says it is kernel B"
    # no running image this time: the memfd string can only come from what boot 2's luod recorded
    # in the manifest about the image it jumped into (docs/kernel.md#abi-compatible-strings)
    hostrun rm "/boot/vmlinuz-$A_RELEASE" || fail "cannot hide the running image"
    start_luod
    wait_luod_log "running kernel ABI:.*memfd: recorded by the luod that jumped into this kernel" 1 60
    luoctl check --kernel "$LUO_KERNEL_B" --initrd "$LUO_SHARE/boot/initramfs" || fail "luoctl check --kernel B on A without a running image"
    pass "without a running image, the ABI the previous luod recorded makes B checkable"
    claim_all "$BA"
    pass "A -> B -> A: $CLIENTS client(s) got $MIB MiB each back intact after each update"
    ;;
*) fail "unexpected boot $LUO_BOOT" ;;
esac
