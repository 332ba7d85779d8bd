#!/bin/bash
# systemd-kexec -- luod as a real service under systemd 262, through a real `systemctl kexec`.
#
# boot 1: apt-get install the package (its postinst starts luod.service), two client services
#         with 8 MiB memfds each (Type=notify); STATUS= and the journal priorities are checked; an update that times out (a silent
#         client) is aborted: its staged sessions leave the fd store and the kernel is unloaded;
#         then luoctl load + luoctl kexec: the sessions go into luod's fd store, luod asks systemd
#         to kexec, systemd stops every unit in order and carries the fd store through the kexec.
# boot 2: systemd hands the sessions back to luod; the clients claim and verify every byte.
. "$LUO_SHARE/payload/systemd-lib.sh"

if [ "$LUO_STAGE" = 1 ]; then
    setup_stage1

    step "an aborted update: a silent client makes the READY deadline pass"
    mkdir -p /etc/systemd/system/luo-test-client@mute.service.d
    printf '[Service]\nEnvironment=LUO_TEST_ARGS=--silent\nRestart=no\n' > /etc/systemd/system/luo-test-client@mute.service.d/silent.conf
    systemctl daemon-reload
    systemctl start luo-test-client@mute.service || fail "the silent client did not start"
    luoctl kexec --timeout 5s && fail "luoctl kexec should fail: a client stays silent"
    until_ok 10 "the aborted update's sessions left the fd store" sh -c "[ \$(systemctl show -p NFileDescriptorStore --value luod.service) = 0 ]"
    [ "$(cat /sys/kernel/kexec_loaded)" = 0 ] || fail "the kernel is still loaded after the abort"
    has_message 0 5 "unloaded the next kernel" || fail "luod did not say it unloaded the kernel"
    has_message 0 4 "aborted: READY deadline" || fail "the abort is not in the journal with warning priority"
    systemctl stop luo-test-client@mute.service
    # its subscription outlives it (docs/protocol.md): the next kexec would be refused without it
    luoctl evict mute || fail "luoctl evict mute"
    pass "an aborted update in systemd mode empties the fd store and unloads the kernel"

    step "luoctl load again, luoctl kexec through systemd"
    luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load"
    show luoctl status
    kexec_through_systemd 60s
fi

verify_stage2
