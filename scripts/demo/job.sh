#!/bin/sh
# job.sh -- the demo's VM job: busybox sh in the guest, run on every boot by scripts/vm/run-job.sh.
#   boot 1: luod, the kvstore app (a key-value store in a memfd), a QEMU guest under luo-qemu (the
#           host's QEMU, TCG; the counter guest of examples/qemu), luoctl load, luoctl kexec
#   boot 2: luod restores the sessions, kvstore --restore claims its memfd and checks every byte,
#           the same luo-qemu command line resumes the guest: its counter goes on, no reboot
# "DEMO: ..." lines are the story that scripts/demo.sh shows; "DEMO-T NAME MS" lines are timings.
BIN=$REPO/dist BUN=$REPO/node_modules/.bin/bun APP=$REPO/scripts/demo/kvstore.ts
SOCK=/run/luod/liveupdate.sock STATE=$LUO_SHARE/kvstore-boot1.json
ENTRIES=${ENTRIES:-200000}
GUEST=$LUO_SHARE/payload/luo-guest.bin SERIAL=$LUO_SHARE/guest-serial.log VMLOG=$LUO_SHARE/luo-qemu.log

say() { echo "DEMO: $*"; }
indent() { while IFS= read -r line; do echo "DEMO:     $line"; done; }
fail() {
    say "FAILED: $*"
    say "the end of luod's log (boot $LUO_BOOT):"
    tail -n 20 "$LUO_SHARE/luod-boot$LUO_BOOT.log" 2>/dev/null | cut -c1-200 | indent
    exit 1
}
luoctl() { hostrun "$BIN/luoctl" "$@"; }
# run CMD ARGS…: show "$ CMD ARGS…" and its output as story lines; returns CMD's status
run() {
    say "\$ $*"
    "$@" > /tmp/run.out 2>&1
    rc=$?
    indent < /tmp/run.out
    return $rc
}
start_luod() {
    hostrun "$BIN/luod" --verbose >> "$LUO_SHARE/luod-boot$LUO_BOOT.log" 2>&1 &
    pid=$! i=0
    until [ -S "$SOCK" ]; do
        kill -0 $pid 2>/dev/null || fail "luod exited at start"
        i=$((i + 1)); [ $i -le 600 ] || fail "luod did not listen on $SOCK within 60 s"
        sleep 0.1
    done
    say "luod (the compiled $BIN/luod) is listening on $SOCK (pid $pid)"
}
unclaimed() { luoctl status --json | grep -o '"state":"unclaimed"' | wc -l; }
# the same command line in both boots, as luo-qemu@.service would run it
start_vm() {
    say "\$ luo-qemu run vm-1 --memory 16M -- -bios luo-guest.bin -display none -nodefaults -accel tcg -chardev file,…,append=on -serial chardev:s0"
    hostrun "$BIN/luo-qemu" run vm-1 --memory 16M --shutdown-timeout 2s -- -bios "$GUEST" -display none -nodefaults -accel tcg \
        -chardev "file,id=s0,path=$SERIAL,append=on" -serial chardev:s0 >> "$VMLOG" 2>&1 &
}
counts() { tr -d '\r' < "$SERIAL" 2>/dev/null | grep -E '^COUNT [0-9a-f]{8}$' | cut -d' ' -f2; }
# wait_vm PATTERN SECONDS: until luo-qemu's log has a line matching PATTERN
wait_vm() {
    i=0
    until grep -q -- "$1" "$VMLOG" 2>/dev/null; do
        i=$((i + 1)); [ $i -le $(($2 * 10)) ] || { tail -n 5 "$VMLOG" | indent; fail "luo-qemu never said '$1'"; }
        sleep 0.1
    done
}
# wait_counts N: until the guest printed N COUNT lines in all
wait_counts() {
    i=0
    until [ "$(counts | wc -l)" -ge "$1" ]; do
        i=$((i + 1)); [ $i -le 1200 ] || fail "the guest printed fewer than $1 COUNT lines"
        sleep 0.1
    done
}

if [ "$LUO_STAGE" = 1 ]; then
    [ "$LUO_BOOT" = 1 ] || fail "boot $LUO_BOOT came up without live update data (no /sys/kernel/debug/kho/in)"
    [ -c /dev/liveupdate ] || fail "this kernel has no /dev/liveupdate (LUO needs liveupdate=on and KHO)"
    say "Boot 1: this VM runs Linux $(uname -r) with LUO (/dev/liveupdate present); kernel uptime $(cut -d' ' -f1 /proc/uptime) s"
    start_luod
    say "Starting the application: kvstore, a key-value store kept in a memfd ($ENTRIES entries)"
    hostrun "$BUN" "$APP" --state "$STATE" --entries "$ENTRIES" 2>&1 | tee /tmp/kvstore.log &
    app=$! i=0
    until grep -q "subscribed to luod" /tmp/kvstore.log 2>/dev/null; do
        kill -0 $app 2>/dev/null || fail "kvstore exited"
        i=$((i + 1)); [ $i -le 3000 ] || fail "kvstore did not subscribe within 300 s"
        sleep 0.1
    done
    say "Starting a virtual machine: an unmodified QEMU (the host's, under TCG) runs a tiny guest that counts in its RAM;"
    say "luo-qemu keeps the guest's 16 MiB of RAM in a memfd it preserved at start (PREPARE)"
    start_vm
    wait_vm "running" 120
    sed 's/^/luo-qemu: /' "$VMLOG" | indent
    wait_counts 3
    say "the guest's serial console: $(tr -d '\r' < "$SERIAL" | grep -c '^BOOT') BOOT, counter at $(counts | tail -n 1) and counting"
    run luoctl list || fail "luoctl list"
    say "Loading the next kernel (here: the same kernel and initramfs again) with this boot's command line:"
    run luoctl load "$LUO_SHARE/boot/bzImage" --initrd "$LUO_SHARE/boot/initramfs" --reuse-cmdline || fail "luoctl load"
    say "Live update: luod asks every client to preserve its state, waits for READY, then jumps with reboot(KEXEC):"
    say "\$ luoctl kexec --timeout 60s"
    luoctl kexec --timeout 60s 2>&1 | indent
    fail "luoctl kexec returned: the machine did not jump"
fi

say "Boot 2: the new kernel is up: Linux $(uname -r), kernel uptime $(cut -d' ' -f1 /proc/uptime) s"
dmesg | grep -E "luo: Retrieved live update data|KHO: exec from" | sed 's/^/dmesg: /' | indent
start_luod
grep -m1 "live-update boot:" "$LUO_SHARE/luod-boot$LUO_BOOT.log" | sed 's/^<[0-9]>/luod log: /' | indent
say "luod read its manifest from its own preserved session; kvstore's and vm-1's sessions wait to be claimed:"
run luoctl status || fail "luoctl status"
# luod's timings of the update, recorded in the manifest before the jump (ms since KEXEC arrived)
t=$(luoctl status --json | grep -o '"previous_update":{.*' | grep -o '"timings":{[^}]*}')
echo "DEMO-T luod_commit $(echo "$t" | grep -o '"manifest_ms":[0-9.]*' | cut -d: -f2)"
t=$(echo "$t" | sed 's/"timings"://; s/[{}"]//g; s/_ms:/ /g; s/,/ ms, /g')
say "luod's timings of that update, from luoctl's KEXEC request: ${t:-(none recorded)}${t:+ ms}"
n=$(unclaimed)
[ "$n" = 2 ] || fail "luoctl status reports $n unclaimed sessions, expected 2 (kvstore and vm-1)"
before=$(counts | tail -n 1)
say "The virtual machine: the same luo-qemu command line (started right away, as its systemd unit would be) finds vm-1's session and resumes the guest; last counter before the jump: $before"
start_vm
say "Restarting the application with --restore:"
hostrun "$BUN" "$APP" --state "$STATE" --restore 2>&1
app=$?
[ $app = 0 ] || fail "kvstore --restore exited $app: the data did not come back intact"
wait_vm "resumed: blackout" 120
grep -E "luo-qemu\[vm-1\]: (READY|resumed)" "$VMLOG" | sed 's/^/luo-qemu: /' | indent
n=$(counts | wc -l)
wait_counts $((n + 2))
after=
for c in $(counts); do [ $((0x$c)) -gt $((0x$before)) ] && { after=$c; break; }; done
boots=$(tr -d '\r' < "$SERIAL" | grep -c '^BOOT')
say "the guest's serial console: counter $before before the jump, ${after:-none} after it (+$((0x${after:-0} - 0x$before)): one COUNT step, so it went on where it paused), $boots BOOT line in all"
echo "DEMO-VM before $before after $after boots $boots"
b=$(grep -o "resumed: blackout [0-9.]* s" "$VMLOG" | cut -d' ' -f3)
echo "DEMO-T vm_blackout $(awk -v s="$b" 'BEGIN { printf "%d", s * 1000 }')"
[ "$boots" = 1 ] || fail "the guest booted again"
[ -n "$after" ] || fail "the guest's counter did not go on from $before"
run luoctl status || fail "luoctl status"
n=$(unclaimed)
[ "$n" = 0 ] || fail "luoctl status still reports $n unclaimed sessions"
say "RESULT: PASS: kvstore's memfd survived the kernel live update bit for bit, and the VM resumed without a reboot"
