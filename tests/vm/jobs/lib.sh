# lib.sh -- the tiny shared helper of the VM jobs (busybox sh in the guest), sourced with
#   . "/mnt/host$REPO/tests/vm/jobs/lib.sh"
# Everything of ours runs from the host root through `hostrun`: the compiled dist/luod and
# dist/luoctl, and the test clients (tests/vm/guest/clients.ts) under the repo's Bun.
BIN=$REPO/dist
BUN=$REPO/node_modules/.bin/bun
SOCK=/run/luod/liveupdate.sock

up() { cut -d' ' -f1 /proc/uptime; }
step() { echo; echo "JOB[boot $LUO_BOOT]: $* (t=$(up)s)"; }
pass() { echo "JOB: PASS $*"; }
fail() {
    echo "JOB: FAIL $*"
    echo "---- luod log ----"; cat "$LUO_SHARE"/luod-*.log 2>/dev/null | tail -n 40
    exit 1
}
luoctl() { hostrun "$BIN/luoctl" "$@"; }

# start_luod [luod args…]: luod in the background, log in $LUO_SHARE/luod-boot<N>.log
start_luod() {
    hostrun "$BIN/luod" --verbose "$@" >> "$LUO_SHARE/luod-boot$LUO_BOOT.log" 2>&1 &
    LUOD_PID=$!
    i=0
    until [ -S "$SOCK" ]; do
        i=$((i + 1)); [ $i -gt 300 ] && fail "luod did not start listening"
        kill -0 $LUOD_PID 2>/dev/null || fail "luod exited at start"
        sleep 0.1
    done
    echo "JOB: luod is listening (pid $LUOD_PID)"
}

# start_clients NAME clients.ts-args…: test clients in the background, log in $LUO_SHARE/clients-NAME.log
start_clients() {
    name=$1; shift
    hostrun "$BUN" "$REPO/tests/vm/guest/clients.ts" "$@" > "$LUO_SHARE/clients-$name.log" 2>&1 &
    eval "CLIENTS_$name=$!"
}

# run_clients clients.ts-args…: in the foreground, output on the console
run_clients() { hostrun "$BUN" "$REPO/tests/vm/guest/clients.ts" "$@"; }

# wait_lines NAME PATTERN COUNT [SECONDS]: until clients-NAME.log has COUNT lines matching PATTERN
wait_lines() {
    i=0
    # cat | grep: a log that does not exist yet counts 0 lines (grep -c FILE would print nothing)
    while [ "$(cat "$LUO_SHARE/clients-$1.log" 2>/dev/null | grep -c -- "$2")" -lt "$3" ]; do
        i=$((i + 1)); [ $i -gt $(( ${4:-60} * 10 )) ] && { cat "$LUO_SHARE/clients-$1.log"; fail "clients $1: fewer than $3 lines '$2'"; }
        sleep 0.1
    done
}

# ids PREFIX N: PREFIX-1,PREFIX-2,…,PREFIX-N
ids() { i=1; out=; while [ $i -le "$2" ]; do out="$out${out:+,}$1-$i"; i=$((i + 1)); done; echo "$out"; }

# load_next_kernel: this same kernel and initramfs, with this boot's command line
load_next_kernel() {
    luoctl load "$LUO_SHARE/boot/bzImage" --initrd "$LUO_SHARE/boot/initramfs" --reuse-cmdline ||
        fail "luoctl load"
}

# jump: load this kernel again and `luoctl kexec` into it; coming back at all is a failure
jump() {
    load_next_kernel
    step "luoctl kexec"
    luoctl kexec --timeout 120s
    fail "luoctl kexec returned $?: the host did not jump"
}

# restarted_unloaded WHAT N: a restarted luod cannot vouch for the kernel loaded before it and
# unloads it (docs/reliability.md#the-abi-gate; the Nth time in this boot's luod log); the
# operator loads it again
restarted_unloaded() {
    wait_luod_log "unloaded the next kernel (it was loaded before this luod started)" "$2" 10
    [ "$(cat /sys/kernel/kexec_loaded)" = 0 ] || fail "$1: the kernel loaded before the restart is still loaded"
    load_next_kernel
}

# unclaimed: how many restored sessions luod reports as unclaimed
unclaimed() { luoctl status --json | grep -o '"state":"unclaimed"' | wc -l; }

# wait_luod_log PATTERN COUNT [SECONDS]: until this boot's luod log has COUNT lines matching PATTERN
wait_luod_log() {
    i=0
    while [ "$(cat "$LUO_SHARE/luod-boot$LUO_BOOT.log" 2>/dev/null | grep -c -- "$1")" -lt "$2" ]; do
        i=$((i + 1)); [ $i -gt $(( ${3:-60} * 10 )) ] && fail "luod never logged '$1' $2 time(s)"
        sleep 0.1
    done
}

# count_lines NAME PATTERN: lines matching PATTERN in clients-NAME.log so far
count_lines() { cat "$LUO_SHARE/clients-$1.log" 2>/dev/null | grep -c -- "$2"; }

# kill_luod: SIGKILL, as a crash would
kill_luod() { kill -9 "$LUOD_PID"; wait "$LUOD_PID" 2>/dev/null; rm -f "$SOCK"; }

# kexec_in_background NAME [luoctl kexec args…]: luoctl kexec, its output in $LUO_SHARE/kexec-NAME.log
kexec_in_background() {
    name=$1; shift
    hostrun "$BIN/luoctl" kexec "$@" > "$LUO_SHARE/kexec-$name.log" 2>&1 &
    KEXEC_PID=$!
}

# kexec_wait: waits for the background luoctl kexec; its exit code in KEXEC_RC
# (not a $(…) function: a subshell cannot wait for its parent's children)
kexec_wait() { wait "$KEXEC_PID"; KEXEC_RC=$?; }
