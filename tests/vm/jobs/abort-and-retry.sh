#!/bin/sh
# abort-and-retry -- failures abort the update and leave the host running; then a real jump:
#   1. a client sends FAIL              → luoctl kexec fails, every client gets ABORTED
#   2. a client never sends READY       → the deadline aborts the update the same way
#   3. a second kexec succeeds, with a client that exited right after READY (luod held its
#      session) and one that will never CLAIM
#   4. after the jump: the others verify their data; the lonely one shows as unclaimed in
#      `luoctl status`, and `luoctl discard` frees it
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"

if [ "$LUO_STAGE" = 1 ]; then
    step "luod, two good clients and one that fails"
    start_luod
    start_clients good preserve --ids ok-1,ok-2
    start_clients failer preserve --ids bad-1 --behave fail
    wait_lines good SUBSCRIBED 2
    wait_lines failer SUBSCRIBED 1
    load_next_kernel

    step "1. FAIL aborts"
    luoctl kexec --timeout 60s && fail "kexec succeeded despite FAIL"
    wait_lines good ABORTED 2 10
    wait_lines failer ABORTED 1 10
    kill "$CLIENTS_failer"; wait "$CLIENTS_failer" 2>/dev/null
    # its subscription outlives it (docs/protocol.md): the next kexec would be refused without it
    luoctl evict bad-1 || fail "luoctl evict bad-1"
    pass "FAIL aborted the update; every client got ABORTED"

    step "2. a silent client hits the deadline"
    start_clients silent preserve --ids mute-1 --behave silent
    wait_lines silent SUBSCRIBED 1
    luoctl kexec --timeout 3s && fail "kexec succeeded although mute-1 never sent READY"
    wait_lines good ABORTED 4 10
    wait_lines silent ABORTED 1 10
    kill "$CLIENTS_silent"; wait "$CLIENTS_silent" 2>/dev/null
    luoctl evict mute-1 || fail "luoctl evict mute-1"
    pass "the deadline aborted the update; the host is still running"

    step "3. the real jump: one client exits after READY, one will never claim"
    start_clients quitter preserve --ids gone-1 --behave exit
    start_clients lonely preserve --ids lonely-1
    wait_lines quitter SUBSCRIBED 1
    wait_lines lonely SUBSCRIBED 1
    i=0; while luoctl list | grep -qE 'bad-1|mute-1'; do i=$((i+1)); [ $i -gt 50 ] && fail "stale clients listed"; sleep 0.1; done
    luoctl kexec --timeout 120s
    fail "the second luoctl kexec returned $?"
fi

step "4. after the jump"
start_luod
luoctl status
run_clients claim --ids ok-1,ok-2,gone-1 || fail "claim/verify"
[ "$(unclaimed)" = 1 ] || fail "lonely-1 should be the one unclaimed session"
luoctl status | grep lonely-1 || fail "luoctl status does not show lonely-1"
luoctl discard lonely-1 || fail "luoctl discard"
[ "$(unclaimed)" = 0 ] || fail "lonely-1 still unclaimed after discard"
pass "aborts kept the host up; the jump brought every claimed session back; discard freed the rest"
