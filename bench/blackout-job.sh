#!/bin/sh
# blackout-job.sh -- the guest side of bench/blackout.ts (scripts/vm/run-job.sh runs it once per
# boot): idle tenant VMs, each an unmodified QEMU under its own luo-qemu, through real live updates.
# With BLACKOUT_VMS=1,4,8: boot 1 starts vm-1 and jumps; boot 2 resumes it (the 1-VM blackout),
# starts vm-2..vm-4 and jumps; boot 3 resumes 4 (the 4-VM blackout), starts vm-5..vm-8, jumps;
# boot 4 resumes 8 and stops them. Settings (run-job.sh -e): BLACKOUT_VMS, BLACKOUT_MEMORY (guest
# RAM, luo-qemu --memory), BENCH_DIST (the luod/luoctl/luo-qemu copy being measured).
# The payload: idle-guest.bin (examples/qemu/build-guest.sh --idle).
# What bench/blackout.ts reads: the console (BLACKOUT: lines, with the harness's host timestamps),
# $LUO_SHARE/blackout/ (each VM's luo-qemu log per boot, luod's status after each boot).
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
BIN=$BENCH_DIST
GUEST=$LUO_SHARE/payload/idle-guest.bin
OUT=$LUO_SHARE/blackout
mkdir -p "$OUT"

# the VM counts, one per update: "1 4 8"
COUNTS=$(echo "$BLACKOUT_VMS" | tr ',' ' ')
# count_at K: the Kth count (1-based), empty past the end
count_at() { [ "$1" -ge 1 ] && echo "$COUNTS" | awk -v k="$1" '{ print $k }'; }
BEFORE=$(count_at $((LUO_BOOT - 1)))   # VMs to resume in this boot (none in boot 1)
BEFORE=${BEFORE:-0}
AFTER=$(count_at "$LUO_BOOT")          # VMs to run into the next update (none in the last boot)

# clock: wall clock and boot clock read together, printed on the console, whose host timestamps
# make the two boots' clocks comparable (each boot's wall clock starts from the RTC's second)
clock() {
    hostrun "$BUN" -e '(async () => { for (let i = 0; i < 5; i++) { const up = require("fs").readFileSync("/proc/uptime", "utf8").split(" ")[0];
        console.log(`BLACKOUT: CLOCK boot '"$LUO_BOOT"' wall_ms ${Date.now()} uptime_s ${up}`); await Bun.sleep(20); } })()'
}
# vm_start I: luo-qemu run vm-I in the background (the same command line on every boot), its log
# in $OUT/vm-I-boot<N>.log (wait_lines' clients-NAME.log: linked there)
vm_start() {
    log=$OUT/vm-$1-boot$LUO_BOOT.log
    : > "$log"; ln -sf "$log" "$LUO_SHARE/clients-vm-$1.log"
    hostrun "$BIN/luo-qemu" run "vm-$1" --memory "$BLACKOUT_MEMORY" --shutdown-timeout 2s -- \
        -bios "$GUEST" -display none -nodefaults -accel tcg \
        -chardev "file,id=s0,path=$OUT/vm-$1-serial.log,append=on" -serial chardev:s0 >> "$log" 2>&1 &
    eval "VM_PID_$1=$!"
}
# the uptime of a moment, printed for bench/blackout.ts
mark() { echo "BLACKOUT: MARK boot $LUO_BOOT $1 uptime_s $(up)"; }

echo "BLACKOUT: boot $LUO_BOOT stage $LUO_STAGE, $(nproc) vCPU, $(grep MemTotal /proc/meminfo | tr -s ' '), resume $BEFORE, run ${AFTER:-0}"
[ -c /dev/liveupdate ] || { echo "BLACKOUT: no /dev/liveupdate"; exit 10; }

# (loops use v: lib.sh's wait_lines sets i)
# luod, then the VMs, as systemd orders luo-qemu@ after luod (docs/vmm.md#luo-qemu): luod is
# started at the mark "luod-start" and listening at "luod-listening" (polled every 10 ms)
mark luod-start
hostrun "$BIN/luod" --verbose >> "$LUO_SHARE/luod-boot$LUO_BOOT.log" 2>&1 &
LUOD_PID=$!
i=0
until [ -S "$SOCK" ]; do
    i=$((i + 1)); [ $i -gt 6000 ] && fail "luod did not start listening"
    kill -0 $LUOD_PID 2>/dev/null || fail "luod exited at start"
    sleep 0.01
done
mark luod-listening

if [ "$BEFORE" -gt 0 ]; then
    step "resume $BEFORE VMs"
    mark vms-start
    v=1; while [ $v -le "$BEFORE" ]; do vm_start $v; v=$((v + 1)); done
    v=1; while [ $v -le "$BEFORE" ]; do wait_lines vm-$v "resumed: blackout" 1 600; v=$((v + 1)); done
    mark vms-resumed
    v=1; while [ $v -le "$BEFORE" ]; do
        grep "resumed: blackout" "$OUT/vm-$v-boot$LUO_BOOT.log" | sed "s/^/BLACKOUT: VM $v /"
        v=$((v + 1))
    done
    # the guests' RAM is the memfd luod's sessions brought back, intact; none booted again
    v=1; while [ $v -le "$BEFORE" ]; do
        qpid=$(cat /run/luo-qemu/vm-$v/qemu.pid)
        ram=$(hostrun "$BUN" "$REPO/tests/vm/guest/guest-ram.ts" "/proc/$qpid/fd/3" | tr '\n' ' ')
        boots=$(tr -d '\r' < "$OUT/vm-$v-serial.log" | grep -c '^BOOT')
        echo "BLACKOUT: CHECK vm-$v $(readlink /proc/$qpid/fd/3) $ram BOOT $boots"
        case "$ram" in *"MARKER ok"*"PATTERN ok"*) ;; *) fail "vm-$v: its RAM is not intact: $ram" ;; esac
        [ "$boots" = 1 ] || fail "vm-$v booted again"
        v=$((v + 1))
    done
    luoctl status --json > "$OUT/status-boot$LUO_BOOT.json" || fail "luoctl status"
    clock   # after the resume: a Bun start here would be inside the blackout
    # what luod's start costs without luod's work: the same binary's --version, now warm
    mark version-start; hostrun "$BIN/luod" --version > /dev/null; mark version-end
    [ "$(unclaimed)" = 0 ] || fail "sessions left unclaimed"
    pass "$BEFORE VMs resumed, their RAM intact, none booted again"
fi

if [ -z "$AFTER" ]; then
    step "stop the VMs"
    v=1; while [ $v -le "$BEFORE" ]; do eval "kill -TERM \$VM_PID_$v"; v=$((v + 1)); done
    v=1; while [ $v -le "$BEFORE" ]; do eval "wait \$VM_PID_$v"; v=$((v + 1)); done
    pass "blackout: $BLACKOUT_VMS VMs measured"
    exit 0
fi

step "run $AFTER VMs into the next update"
v=$((BEFORE + 1)); while [ $v -le "$AFTER" ]; do vm_start $v; v=$((v + 1)); done
# each prepared (RAM preserved ahead: a resumed one again after its resume) and its guest booted
v=1; while [ $v -le "$AFTER" ]; do
    wait_lines vm-$v "RAM preserved in" 1 600
    n=0
    until tr -d '\r' < "$OUT/vm-$v-serial.log" 2>/dev/null | grep -q '^PATTERN'; do
        n=$((n + 1)); [ $n -gt 1200 ] && fail "vm-$v: its guest did not print PATTERN"
        sleep 0.1
    done
    v=$((v + 1))
done
# the VMs' starts (Bun translated by TCG) done: no CPU left busy by them when the update starts
sleep 2
clock
load_next_kernel
step "luoctl kexec ($AFTER VMs)"
# --json: its REBOOTING event (luod's timings up to reboot()) on the console, if it gets out before the jump
luoctl kexec --json --timeout 300s
fail "luoctl kexec returned $?: the host did not jump"
