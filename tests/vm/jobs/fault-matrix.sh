#!/bin/sh
# fault-matrix -- every row of docs/reliability.md on the real kernel, one fault at a time.
# luod runs with --commit-delay 3000: a 3 s window between "every client READY" and the commit,
# in which a fault can be injected after the barrier.
#
# boot 1 (before the jump)
#   R1 a client killed before READY          → update aborted, host up
#   R2 luod killed while preparing           → luoctl loses luod, clients reconnect to the new luod
#   R3 luod killed after all READY           → same, nothing jumps, nothing lost
#   R4 reboot(KEXEC) fails (image removed)   → EINVAL reported, update aborted, host up
#   R5 a client killed after READY           → the jump goes on, luod holds its session
# boot 2 (after the jump)
#   R7 a client killed during CLAIM          → it claims again and gets the same session
#   R6 luod killed before everyone claimed   → the restarted luod still serves every CLAIM
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
LUOD_ARGS="--commit-delay 3000"

if [ "$LUO_STAGE" = 1 ]; then
    step "setup: luod, clients ok-1 ok-2 (ready) and victim-1 (silent)"
    start_luod $LUOD_ARGS
    start_clients good preserve --ids ok-1,ok-2
    start_clients victim preserve --ids victim-1 --behave silent
    wait_lines good SUBSCRIBED 2
    wait_lines victim SUBSCRIBED 1
    load_next_kernel

    step "R1: a client killed before READY"
    kexec_in_background r1 --timeout 60s
    wait_lines victim "staying silent" 1
    kill -9 "$CLIENTS_victim"; wait "$CLIENTS_victim" 2>/dev/null
    kexec_wait; [ "$KEXEC_RC" = 1 ] || fail "R1: luoctl kexec should fail"
    grep -q "victim-1 disconnected before READY" "$LUO_SHARE/kexec-r1.log" || fail "R1: luoctl does not say why"
    wait_lines good ABORTED 2 10
    # its subscription outlives it (docs/protocol.md): the next kexec would be refused without it
    luoctl evict victim-1 || fail "R1: luoctl evict victim-1"
    pass "R1 a client killed before READY aborts the update; the host keeps running"

    step "R2: luod killed while preparing"
    start_clients mute preserve --ids mute-1 --behave silent
    wait_lines mute SUBSCRIBED 1
    kexec_in_background r2 --timeout 60s
    wait_lines mute "staying silent" 1
    kill_luod
    kexec_wait; [ "$KEXEC_RC" = 3 ] || fail "R2: luoctl kexec should report the lost daemon (exit 3)"
    kill "$CLIENTS_mute"; wait "$CLIENTS_mute" 2>/dev/null
    start_luod $LUOD_ARGS
    wait_lines good SUBSCRIBED 4 60
    # the restarted luod expects mute-1 (subscriptions.json), which was killed: forget it
    luoctl evict mute-1 || fail "R2: luoctl evict mute-1"
    restarted_unloaded R2 1
    pass "R2 luod killed while preparing: no jump, the clients subscribe again to the new luod"

    step "R3: luod killed after every client is READY, before the jump"
    kexec_in_background r3 --timeout 60s
    wait_luod_log "committing in" 1
    kill_luod
    kexec_wait; [ "$KEXEC_RC" = 3 ] || fail "R3: luoctl kexec should report the lost daemon (exit 3)"
    start_luod $LUOD_ARGS
    wait_lines good SUBSCRIBED 6 60
    restarted_unloaded R3 2
    pass "R3 luod killed after all READY: no jump, the clients keep their memory and subscribe again"

    step "R4: reboot(KEXEC) fails for real"
    kexec_in_background r4 --timeout 60s
    wait_luod_log "committing in" 2
    hostrun "$BUN" "$REPO/tests/vm/guest/unload-kernel.ts" || fail "R4: unload"
    kexec_wait; [ "$KEXEC_RC" = 1 ] || fail "R4: luoctl kexec should fail"
    grep -q "EINVAL" "$LUO_SHARE/kexec-r4.log" || fail "R4: luoctl does not report the kernel's EINVAL"
    wait_lines good ABORTED 4 10
    luoctl status > /dev/null || fail "R4: luod is gone"
    pass "R4 a failing reboot(KEXEC) is reported, the update aborted, the host keeps running"

    step "R5: a client killed after READY; the real jump"
    load_next_kernel
    start_clients doomed preserve --ids doomed-1
    wait_lines doomed SUBSCRIBED 1
    kexec_in_background r5 --timeout 60s
    wait_luod_log "committing in" 3
    kill -9 "$CLIENTS_doomed"
    wait "$KEXEC_PID"
    fail "R5: luoctl kexec returned $?: no jump"
fi

step "after the jump"
start_luod $LUOD_ARGS
[ "$(unclaimed)" = 3 ] || fail "3 sessions should wait for CLAIM"
pass "R5 a client killed after READY: the jump went on and its session is here to claim"

step "R7: a client killed during CLAIM"
run_clients claim --ids doomed-1 --behave die && fail "R7: the dying claim should exit non-zero"
run_clients claim --ids doomed-1 || fail "R7: the second CLAIM"
pass "R7 a client killed after CLAIMED claims again and gets its data (the client killed after READY in R5)"

step "R6: luod killed before everyone claimed"
run_clients claim --ids ok-1 || fail "R6: ok-1"
kill_luod
start_luod $LUOD_ARGS
run_clients claim --ids ok-2 || fail "R6: the claim after the restart"
[ "$(unclaimed)" = 0 ] || fail "R6: sessions left unclaimed"
pass "R6 the restarted luod still served every unclaimed session"
