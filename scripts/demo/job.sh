#!/bin/sh
# job.sh -- the demo's VM job: busybox sh in the guest, run on every boot by scripts/vm/run-job.sh.
#   boot 1: luod, the kvstore app (a key-value store in a memfd), luoctl load, luoctl kexec
#   boot 2: luod restores the sessions, kvstore --restore claims its memfd and checks every byte
# "DEMO: ..." lines are the story that scripts/demo.sh shows; "DEMO-T NAME MS" lines are timings.
BIN=$REPO/dist BUN=$REPO/node_modules/.bin/bun APP=$REPO/scripts/demo/kvstore.ts
SOCK=/run/luod/liveupdate.sock STATE=$LUO_SHARE/kvstore-boot1.json
ENTRIES=${ENTRIES:-200000}

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
say "luod read its manifest from its own preserved session; kvstore's session waits to be claimed:"
run luoctl status || fail "luoctl status"
# luod's timings of the update, recorded in the manifest before the jump (ms since KEXEC arrived)
t=$(luoctl status --json | grep -o '"previous_update":{.*' | grep -o '"timings":{[^}]*}')
echo "DEMO-T luod_commit $(echo "$t" | grep -o '"manifest_ms":[0-9.]*' | cut -d: -f2)"
t=$(echo "$t" | sed 's/"timings"://; s/[{}"]//g; s/_ms:/ /g; s/,/ ms, /g')
say "luod's timings of that update, from luoctl's KEXEC request: ${t:-(none recorded)}${t:+ ms}"
n=$(unclaimed)
[ "$n" = 1 ] || fail "luoctl status reports $n unclaimed sessions, expected 1"
say "Restarting the application with --restore:"
hostrun "$BUN" "$APP" --state "$STATE" --restore 2>&1
app=$?
run luoctl status || fail "luoctl status"
n=$(unclaimed)
[ "$n" = 0 ] || fail "luoctl status still reports $n unclaimed sessions"
[ $app = 0 ] || fail "kvstore --restore exited $app: the data did not come back intact"
say "RESULT: PASS: kvstore's memfd survived the kernel live update bit for bit"
