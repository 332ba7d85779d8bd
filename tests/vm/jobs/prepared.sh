#!/bin/sh
# prepared -- clients that PREPARE: each preserves its memfd right after SUBSCRIBE, while the memfd
# still holds a stale pattern, and finds its size frozen (EPERM). Only when START_PRESERVATION comes
# does it write the real content into the preserved memfd. A dry run must keep the same sessions;
# after the real jump every client must get the real content back: contents stay live after
# PRESERVE_FD, only the size is frozen (docs/kernel.md#memfd-preservation).
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
CLIENTS=${CLIENTS:-3} MIB=${MIB:-4}
IDS=$(ids prep "$CLIENTS")
sessions() { luoctl list --json | grep -o '"session":"[^"]*"' | sort; }

if [ "$LUO_STAGE" = 1 ]; then
    step "boot 1: luod, $CLIENTS client(s) that prepare with $MIB MiB each"
    start_luod
    start_clients main preserve --ids "$IDS" --mib "$MIB" --prepare
    wait_lines main "SIZE FROZEN" "$CLIENTS" 120
    luoctl status | grep -q "$CLIENTS prepared" || fail "luoctl status does not count $CLIENTS prepared client(s)"
    before=$(sessions)
    [ "$(echo "$before" | grep -c 'luod:prep-')" = "$CLIENTS" ] || fail "luoctl list does not show $CLIENTS prepared sessions"
    pass "$CLIENTS session(s) prepared and preserved into; ftruncate gets EPERM"

    step "a dry run keeps the prepared sessions"
    luoctl kexec --dry-run --timeout 60s || fail "the dry run failed"
    wait_lines main ABORTED "$CLIENTS" 10
    [ "$(count_lines main 'WROTE')" = "$CLIENTS" ] || fail "not every client was asked to quiesce its prepared session"
    [ "$(count_lines main 'PRESERVED')" = 0 ] || fail "a prepared client was handed a new session to preserve into"
    [ "$(sessions)" = "$before" ] || fail "the prepared sessions changed across the dry run"
    pass "the dry run kept the prepared sessions"

    jump
fi

step "boot 2: luod restores, clients claim"
start_luod
[ "$(unclaimed)" = "$CLIENTS" ] || fail "luod does not report $CLIENTS unclaimed sessions"
run_clients claim --ids "$IDS" --mib "$MIB" || fail "claim/verify: the content written after PRESERVE_FD did not come back"
[ "$(unclaimed)" = 0 ] || fail "sessions still unclaimed after every client claimed"
pass "$CLIENTS prepared client(s) got the content they wrote after PRESERVE_FD back intact"
