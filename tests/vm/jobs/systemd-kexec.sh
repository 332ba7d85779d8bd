#!/bin/bash
# systemd-kexec -- luod as a real service under systemd 262, through a real `systemctl kexec`.
#
# boot 1: apt-get install the package (its postinst starts luod.service), two client services
#         with 8 MiB memfds each (Type=notify); STATUS= and the journal priorities are checked; an update that times out (a silent
#         client) is aborted: its staged sessions leave the fd store and the kernel is unloaded;
#         then luoctl load + luoctl kexec: the sessions go into luod's fd store, luod asks systemd
#         to kexec, systemd stops every unit in order and carries the fd store through the kexec.
#         luod's journal entries carry MESSAGE_ID and LUO_* fields; a refused LOAD and the KEXEC
#         leave audit records.
# boot 2: systemd hands the sessions back to luod; the clients claim and verify every byte; the
#         journal has the KEXEC's audit record, the jump and the restore under one update number.
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

    step "luod's journal entries carry MESSAGE_ID and LUO_* fields; admin requests leave audit records"
    luoctl load /usr/bin/bash --reuse-cmdline && fail "luoctl load of a file that is no kernel should be refused"
    until_ok 10 "a warning audit record of the refused LOAD" has_entry_now 0 MESSAGE_ID=$ID_AUDIT LUO_REQUEST=LOAD LUO_OUTCOME=ENOEXEC LUO_UID=0 PRIORITY=4
    has_entry MESSAGE_ID=$ID_UPDATE_STARTED LUO_UPDATE= LUO_UID=0 PRIORITY=5 || fail "no update-started entry with LUO_UPDATE and LUO_UID"
    has_entry LUO_CLIENT=vm-1 LUO_UID= LUO_PID= LUO_UNIT=luo-test-client@vm-1.service || fail "no entry about client vm-1 with its uid, pid and unit"
    has_entry MESSAGE_ID=$ID_AUDIT LUO_REQUEST=KEXEC LUO_OUTCOME=ok LUO_UPDATE= LUO_UID=0 PRIORITY=5 || fail "no audit record of the KEXEC"
    has_entry MESSAGE_ID=$ID_AUDIT LUO_REQUEST=EVICT LUO_OUTCOME=ok LUO_CLIENT=mute || fail "no audit record of luoctl evict mute"
    has_entry _TRANSPORT=journal SYSLOG_IDENTIFIER=luod || fail "luod's entries did not come through the native protocol"
    show journalctl -b -u luod.service --no-pager -o cat MESSAGE_ID=$ID_AUDIT
    pass "luod's journal entries have their fields, and the refused LOAD and the KEXEC their audit records"

    step "luoctl load again, luoctl kexec through systemd"
    luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load"
    show luoctl status
    kexec_through_systemd 60s
fi

verify_stage2

step "after the kexec: the journal links both boots by the update's number"
snapshot_journal 0
update=$(luod_entry MESSAGE_ID=$ID_RESTORED LUO_UPDATE= | sed -nE 's/.*"LUO_UPDATE":"([0-9]+)".*/\1/p')
[ -n "$update" ] || fail "no restored entry with LUO_UPDATE"
for c in $CLIENTS; do
    has_entry MESSAGE_ID=$ID_CLAIMED LUO_CLIENT=$c LUO_UID=0 || fail "no claimed entry of $c"
done
snapshot_journal -1
has_entry MESSAGE_ID=$ID_AUDIT LUO_REQUEST=KEXEC LUO_OUTCOME=ok LUO_UPDATE=$update || fail "the previous boot has no audit record of the KEXEC of update $update"
has_entry MESSAGE_ID=$ID_JUMPING LUO_UPDATE=$update || fail "the previous boot has no jump of update $update"
show journalctl -b -1 -u luod.service --no-pager -o cat LUO_UPDATE=$update
pass "update $update's KEXEC, jump and restore are in the journal under its number; the claims name their clients"
