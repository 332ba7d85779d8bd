#!/bin/bash
# systemd-reboot -- the trap of docs/systemd.md, "Surprise kexecs": with a kernel loaded, systemd
# (>= 261) turns `systemctl reboot` into a kexec. luod, stopped on the way down outside a jump,
# unloads the kernel, so the reboot is an ordinary one: nothing jumps without the barrier and the
# ABI check. With -no-reboot QEMU ends at a real reset; a kexec would boot a second time instead.
. "$LUO_SHARE/payload/systemd-lib.sh"
[ "$LUO_BOOT" = 1 ] || fail "boot $LUO_BOOT: systemctl reboot became a kexec"

# luod's log on the console too: the VM ends with the reboot, the journal with it. Without
# $JOURNAL_STREAM luod writes lines to stderr instead of native journal entries, which journald
# would not copy to the console (docs/daemon.md#logs-and-the-audit-trail).
mkdir -p /etc/systemd/system/luod.service.d
printf '[Service]\nStandardOutput=journal+console\nStandardError=journal+console\nUnsetEnvironment=JOURNAL_STREAM\n' > /etc/systemd/system/luod.service.d/console.conf
setup_stage1
[ "$(cat /sys/kernel/kexec_loaded)" = 1 ] || fail "no kernel loaded after luoctl load"
show luoctl status
step "systemctl reboot, with a kernel loaded"
echo "JOB: systemctl reboot"
systemctl reboot
sleep 120
fail "still running 120 s after systemctl reboot"
