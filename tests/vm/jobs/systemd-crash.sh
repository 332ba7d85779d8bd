#!/bin/bash
# systemd-crash -- luod killed (SIGKILL) after every client is READY, restarted by systemd, then
# the kexec: every client's data still comes back, although the clients never preserve again.
#
# boot 1: luod with commit-delay = 8000 (/etc/luod.conf: a window between "all READY" and the
#         commit, for the fault); two clients READY, their sessions in luod's fd store; luod is
#         SIGKILLed in the window (luoctl kexec reports the lost daemon); systemd restarts luod,
#         which gets the two outgoing sessions back from $LISTEN_FDS and carries them; the
#         clients, who lost luod after READY, do nothing more. The restarted luod unloaded the kernel
#         it cannot vouch for: luoctl load, then luoctl kexec again: the
#         manifest lists the carried sessions, luod asks systemd to kexec; a delay inhibitor
#         holds logind back while luod is SIGKILLed once more; the restarted luod sees the kexec
#         coming and only waits; the inhibitor goes, systemd kexecs.
# boot 2: vm-2 claims and verifies. vm-1 claims and holds its session unverified (a file left on
#         the root disk in boot 1 tells it to); then luod is SIGKILLed, and after systemd has
#         restarted it, vm-1 is SIGKILLed too. The restarted luod holds vm-1's session again
#         (the fd store kept it), so the restarted vm-1 claims it once more and verifies every byte.
. "$LUO_SHARE/payload/systemd-lib.sh"

if [ "$LUO_STAGE" = 1 ]; then
    mkdir -p /var/lib/luo-test && touch /var/lib/luo-test/hold-after-claim-vm-1
    echo "commit-delay = 8000" > /etc/luod.conf
    setup_stage1

    step "luoctl kexec; SIGKILL luod once every client is READY"
    luoctl kexec --timeout 60s > /run/kexec-1.log 2>&1 &
    kexec1=$!
    until_ok 60 "luod: every client READY, committing" has_message 0 5 "committing in"
    show systemd-analyze fdstore luod.service
    [ "$(fdstore_count)" = "$(echo $CLIENTS | wc -w)" ] || fail "the READY sessions are not in luod's fd store"
    pid=$(systemctl show -p MainPID --value luod.service)
    echo "JOB: kill -9 luod (pid $pid)"
    kill -9 "$pid"
    wait $kexec1
    rc=$?
    show cat /run/kexec-1.log
    [ $rc = 3 ] || fail "luoctl kexec should have lost luod (exit 3), got $rc"

    step "systemd restarts luod; the sessions are still in its fd store"
    until_ok 30 "luod restarted" sh -c "[ \$(systemctl show -p NRestarts --value luod.service) -ge 1 ] && systemctl is-active luod.service"
    until_ok 10 "the restarted luod carries the READY sessions" has_message 0 5 "carrying $(echo $CLIENTS | wc -w) READY session(s)"
    show systemctl --no-pager status luod.service
    show systemd-analyze fdstore luod.service
    for c in $CLIENTS; do
        journalctl -b -u "luo-test-client@$c.service" -o cat --no-pager | grep -q "luod went away after READY" ||
            fail "client $c did not see luod go away after READY"
    done
    pass "luod killed after every client was READY: systemd restarted it and it still holds every session"

    step "the restarted luod cannot vouch for the kernel loaded before it: it unloaded it; luoctl load again"
    [ "$(cat /sys/kernel/kexec_loaded)" = 0 ] || fail "the kernel loaded before the crash is still loaded"
    has_message 0 5 "unloaded the next kernel (it was loaded before this luod started)" || fail "luod did not say it unloaded the kernel"
    luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load after the restart"

    step "luoctl kexec again (no client subscribed: only the carried sessions), logind held by a delay inhibitor"
    systemd-inhibit --what=shutdown --mode=delay --who=luo-test --why="hold the kexec while luod is killed" sleep 600 &
    inhibitor=$!
    until_ok 10 "the delay inhibitor" sh -c "systemd-inhibit --list | grep -q luo-test"
    luoctl kexec --timeout 60s > /run/kexec-2.log 2>&1 &
    kexec2=$!
    until_ok 60 "luod asked systemd to kexec" has_message 0 5 "systemd accepted the kexec"
    show systemctl --no-pager status luod.service
    systemctl --no-pager status luod.service | grep -q 'Status: "kexec requested from systemd' || fail "no STATUS line for the requested kexec"
    show systemd-analyze fdstore luod.service
    pid=$(systemctl show -p MainPID --value luod.service)
    echo "JOB: kill -9 luod (pid $pid) while logind delays the kexec"
    kill -9 "$pid"
    wait $kexec2
    show cat /run/kexec-2.log
    until_ok 30 "luod restarted again" sh -c "[ \$(systemctl show -p NRestarts --value luod.service) -ge 2 ] && systemctl is-active luod.service"
    until_ok 10 "the restarted luod waits for the kexec" has_message 0 5 "restarted while systemd's kexec is under way"
    show systemctl --no-pager status luod.service
    pass "luod killed while systemd's kexec was delayed: the restarted luod keeps the sessions and waits"
    echo "JOB: releasing the inhibitor; systemd goes on with the kexec"
    kill $inhibitor
    sleep 120
    fail "still running 120 s after the inhibitor went: no kexec"
fi

if [ "$LUO_STAGE" = 2 ]; then
    step "double fault: vm-1 holds its claimed session; SIGKILL luod, then vm-1"
    until_ok 120 "vm-2 claimed and verified" systemctl is-active luo-test-client@vm-2.service
    until_ok 120 "vm-1 holds its claimed session" sh -c "journalctl -b -u luo-test-client@vm-1.service -o cat | grep -q 'HOLDING vm-1'"
    pid=$(systemctl show -p MainPID --value luod.service)
    echo "JOB: kill -9 luod (pid $pid) while vm-1 holds its claimed session"
    kill -9 "$pid"
    until_ok 30 "luod restarted" sh -c "[ \$(systemctl show -p NRestarts --value luod.service) -ge 1 ] && systemctl is-active luod.service"
    until_ok 10 "the restarted luod answers" luoctl status
    echo "JOB: kill -9 luo-test-client@vm-1 (pid $(systemctl show -p MainPID --value luo-test-client@vm-1.service))"
    systemctl kill -s KILL luo-test-client@vm-1.service
    pass "luod, then the client holding a claimed session, were killed"
fi

verify_stage2
if [ "$LUO_STAGE" = 2 ]; then
    has_message 0 5 "claimed before luod restarted, is held again" || fail "the restarted luod did not say it holds vm-1's session again"
    pass "the restarted luod held vm-1's claimed session again, and vm-1 claimed it once more"
fi
