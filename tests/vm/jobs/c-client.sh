#!/bin/sh
# c-client -- the C reference client (examples/c), compiled on the host by the test and passed in
# the payload, keeps a MIB MiB memfd across a real kexec: SUBSCRIBE → START_PRESERVATION →
# PRESERVE_FD → READY, kexec, CLAIM → RETRIEVE_FD → every byte verified → FINISH → FINISHED.
# It runs through hostrun: it is linked against the host's glibc.
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
EXE=$LUO_SHARE/payload/luo_example
MIB=${MIB:-16}

if [ "$LUO_STAGE" = 1 ]; then
    step "boot 1: luod, the C client with $MIB MiB"
    start_luod
    hostrun "$EXE" preserve vm-c "$MIB" > "$LUO_SHARE/clients-c.log" 2>&1 &
    wait_lines c "SUBSCRIBED vm-c" 1 60
    jump
fi

step "boot 2: luod restores, the C client claims"
echo "JOB: the C client in boot 1 said:"; cat "$LUO_SHARE/clients-c.log"
grep -q "^READY vm-c " "$LUO_SHARE/clients-c.log" || fail "the C client never said READY in boot 1"
start_luod
[ "$(unclaimed)" = 1 ] || fail "luod does not report 1 unclaimed session"
hostrun "$EXE" claim vm-c "$MIB"
rc=$?
echo "JOB: the C client's claim exited $rc"
[ "$rc" = 0 ] || fail "the C client's claim failed"
luoctl status
[ "$(unclaimed)" = 0 ] || fail "the session is still unclaimed after FINISHED"
pass "the C client got $MIB MiB back intact"
