#!/bin/bash
# fleet-host -- one host of the fleet test (tests/vm/fleet.test.ts). On the cold boot: luod from
# the package, a client service holding a memfd of known content, sshd with the test's key. Then
# the host only waits: the live update comes from ansible-playbook on the machine running the VMs
# (deploy/ansible/rollout.yml), over ssh on a port forwarded to 127.0.0.1. After every later boot
# (a kexec the role started) the job reports what came back. It ends when the test creates
# $LUO_SHARE/stop.
#   FLEET_HOST  this host's inventory name
. "$LUO_SHARE/payload/systemd-lib.sh"

# the line the test waits for before it talks to the host (and the facts it compares later)
ready() {
    echo "JOB: fleet host $FLEET_HOST ready: boot $LUO_BOOT, kernel $(uname -r), boot_id $(cat /proc/sys/kernel/random/boot_id)"
    until [ -e "$LUO_SHARE/stop" ]; do sleep 1; done
    echo "JOB: fleet host $FLEET_HOST stopping"
    exit 0
}

if [ "$LUO_BOOT" = 1 ]; then
    echo "$FLEET_HOST" > /etc/hostname && hostname "$FLEET_HOST"
    step "apt-get install the package and the test client; start the clients: $(units)"
    install_luod
    systemctl is-active luod.service || fail "the package's postinst did not start luod.service"
    systemctl enable --now $(units) || fail "the clients did not start"
    until_ok 30 "luod's STATUS shows the clients" sh -c "systemctl show -p StatusText --value luod.service | grep -q '$(echo $CLIENTS | wc -w) client(s) subscribed'"
    step "sshd for the controller"
    install -d -m 700 /root/.ssh
    install -m 600 "$P/fleet_key.pub" /root/.ssh/authorized_keys
    systemctl enable --now ssh.service || fail "sshd did not start"
    # a listening socket on port 22 (0x16) in /proc/net/tcp (minbase has no ss)
    until_ok 30 "sshd listens on port 22" grep -q ':0016 00000000:0000 0A' /proc/net/tcp
else
    step "back after the kexec: the clients claim their sessions"
    for u in $(units); do until_ok 120 "$u active (claimed and verified)" systemctl is-active "$u"; done
    for c in $CLIENTS; do
        line=$(journalctl -b -u "luo-test-client@$c.service" --no-pager -o cat | grep "VERIFIED $c ") ||
            fail "client $c did not verify its data"
        echo "JOB: fleet host $FLEET_HOST: $line"
    done
fi
ready
