#!/bin/sh
# live-update -- CLIENTS test clients, each with its own MIB MiB memfd, go through
# SUBSCRIBE → READY → kexec → CLAIM → verify → FINISHED with every byte intact.
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
CLIENTS=${CLIENTS:-1} MIB=${MIB:-16}
IDS=$(ids vm "$CLIENTS")

if [ "$LUO_STAGE" = 1 ]; then
    step "boot 1: luod, $CLIENTS client(s) with $MIB MiB each"
    start_luod
    start_clients main preserve --ids "$IDS" --mib "$MIB"
    wait_lines main SUBSCRIBED "$CLIENTS" 120
    jump
fi

step "boot 2: luod restores, clients claim"
start_luod
luoctl status
[ "$(unclaimed)" = "$CLIENTS" ] || fail "luod does not report $CLIENTS unclaimed sessions"
run_clients claim --ids "$IDS" --mib "$MIB" || fail "claim/verify"
luoctl status
[ "$(unclaimed)" = 0 ] || fail "sessions still unclaimed after every client claimed"
pass "$CLIENTS client(s) got $MIB MiB each back intact"
