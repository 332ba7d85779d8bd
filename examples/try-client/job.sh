#!/bin/sh
# try-client/job.sh -- try YOUR luod client on a real LUO kernel across a real kexec, in the
# repository's VM harness (scripts/vm/run-job.sh; README.md, "Trying a client on a real LUO kernel").
#
#   scripts/vm/run-job.sh examples/try-client/job.sh -p ./my-client \
#       -e CLIENT_BOOT1='/mnt/share/payload/my-client preserve' \
#       -e CLIENT_BOOT2='/mnt/share/payload/my-client claim' [-e CLIENTS=1] [-e KEXEC_TIMEOUT=120s] [-v]
#
# Boot 1 (cold): luod starts, CLIENT_BOOT1 runs in the background (it must SUBSCRIBE, and when
# luod starts the update, preserve its memfds and say READY), the job waits until CLIENTS clients
# are subscribed, loads this same kernel and runs `luoctl kexec`. Boot 2 (after the kexec, KHO data
# present): luod starts and restores, CLIENT_BOOT2 runs in the foreground (it must CLAIM, check its
# data, FINISH) and must exit 0; then no session may be left unclaimed. Exit code 0 = it worked.
# The commands run on the host's root through `hostrun` (the host's glibc, Bun at its host path);
# files passed with -p are in /mnt/share/payload/. Their output is in the console log.
. "/mnt/host$REPO/tests/vm/jobs/lib.sh"
CLIENTS=${CLIENTS:-1}
[ -n "${CLIENT_BOOT1:-}" ] && [ -n "${CLIENT_BOOT2:-}" ] || fail "set CLIENT_BOOT1 and CLIENT_BOOT2 (-e NAME=COMMAND)"

# subscribed: how many clients luod lists
subscribed() { luoctl list --json | grep -o '"id":' | wc -l; }

if [ "$LUO_STAGE" = 1 ]; then
    step "boot 1: luod, then the client: $CLIENT_BOOT1"
    start_luod
    hostrun /bin/sh -c "$CLIENT_BOOT1" > "$LUO_SHARE/clients-boot1.log" 2>&1 &
    i=0
    until [ "$(subscribed)" -ge "$CLIENTS" ]; do
        i=$((i + 1)); [ $i -gt 600 ] && { cat "$LUO_SHARE/clients-boot1.log"; fail "fewer than $CLIENTS client(s) subscribed after 60 s"; }
        sleep 0.1
    done
    luoctl list
    load_next_kernel
    step "luoctl kexec: the client must preserve its memfds and say READY"
    luoctl kexec --timeout "${KEXEC_TIMEOUT:-120s}"
    rc=$?
    echo "JOB: the client in boot 1 said:"; cat "$LUO_SHARE/clients-boot1.log"
    fail "luoctl kexec returned $rc: the update aborted (see luod's log and the client's output above)"
fi

step "boot 2: luod restores, then the client: $CLIENT_BOOT2"
echo "JOB: the client in boot 1 said:"; cat "$LUO_SHARE/clients-boot1.log"
start_luod
luoctl status
hostrun /bin/sh -c "$CLIENT_BOOT2"
rc=$?
echo "JOB: the client in boot 2 exited $rc"
[ "$rc" = 0 ] || fail "the client in boot 2 failed"
luoctl status
[ "$(unclaimed)" = 0 ] || fail "restored sessions left unclaimed after the client ran"
pass "the client kept its memory across a real kexec"
