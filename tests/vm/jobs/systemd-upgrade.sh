#!/bin/bash
# systemd-upgrade -- N-1 -> N across a real kexec: the previous release's luod runs the update,
# the new package's luod restores it (docs/systemd.md, "Upgrading luod").
#
# boot 1: the previous release (payload prev-luo, prev-luod.service: scripts/vm/previous-release.ts)
#         installed by hand as its docs/systemd.md said (/usr/local/bin, /etc/systemd/system); two
#         clients subscribe; luoctl load. Then the upgrade procedure while the kernel is loaded:
#         systemctl disable, remove the hand-installed unit and binaries, daemon-reload, apt-get
#         install the package. The postinst must not restart luod (same PID, still the old version,
#         kernel still loaded) and says so; the unit is now the package's (/usr/bin/luod). The new
#         luoctl runs the update through the old luod and systemctl kexec.
# boot 2: systemd starts the package's luod (/usr/bin/luod, the new version), which reads the
#         manifest the old luod wrote; the clients claim and verify every byte. Then the package's
#         own upgrade path (apt-get install --reinstall): with a kernel loaded or an update
#         preparing the postinst leaves luod alone and apt-get remove is refused; once idle the
#         postinst restarts luod.
# env: PREV_VERSION, NEW_VERSION (package.json's version of each)
. "$LUO_SHARE/payload/systemd-lib.sh"

luod_pid() { systemctl show -p MainPID --value luod.service; }
# the version the running luod reports (STATUS's luod.version, docs/protocol.md)
luod_version() { luoctl status --json | grep -o '"luod":{"version":"[^"]*"' | cut -d'"' -f6; }

if [ "$LUO_STAGE" = 1 ]; then
    [ -n "${PREV_VERSION:-}" ] && [ -n "${NEW_VERSION:-}" ] || fail "PREV_VERSION or NEW_VERSION is not set"
    step "the previous release $PREV_VERSION, installed by hand as its docs/systemd.md says"
    install -m 755 "$P/prev-luo" /usr/local/bin/luo
    ln -sf luo /usr/local/bin/luod
    ln -sf luo /usr/local/bin/luoctl
    install -m 644 "$P/prev-luod.service" /etc/systemd/system/luod.service
    systemctl daemon-reload
    systemctl enable --now luod.service || fail "the previous luod.service did not start"
    install_test_client
    show luod --version
    [ "$(luod_version)" = "$PREV_VERSION" ] || fail "the running luod is not $PREV_VERSION"
    systemctl enable --now $(units) || fail "the clients did not start"
    until_ok 20 "the clients subscribed" sh -c "luoctl status --json | grep -q '\"subscribed\":$(echo $CLIENTS | wc -w)'"
    luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load"
    pid=$(luod_pid)
    pass "luod $PREV_VERSION (pid $pid) runs from /usr/local/bin with $(echo $CLIENTS | wc -w) clients; a kernel is loaded"

    step "upgrade while the kernel is loaded: the manual installation out, the package in"
    systemctl disable luod.service
    rm /etc/systemd/system/luod.service
    rm /usr/local/bin/luo /usr/local/bin/luod /usr/local/bin/luoctl
    systemctl daemon-reload
    hash -r
    install_package
    grep -q "luo-agent: not restarting luod: a kernel is loaded for the next live update; the new luod takes over at its next start" /run/luo-apt.log ||
        fail "the postinst did not say it leaves luod running"
    show systemctl --no-pager show -p FragmentPath -p ExecStart -p UnitFileState luod.service
    [ "$(luod_pid)" = "$pid" ] || fail "the postinst restarted luod (pid $pid -> $(luod_pid))"
    [ "$(cat /sys/kernel/kexec_loaded)" = 1 ] || fail "the kernel was unloaded by the upgrade"
    [ "$(systemctl show -p FragmentPath --value luod.service)" = /usr/lib/systemd/system/luod.service ] || fail "luod.service is not the package's unit"
    [ "$(systemctl is-enabled luod.service)" = enabled ] || fail "luod.service is not enabled after the upgrade"
    [ "$(command -v luoctl)" = /usr/bin/luoctl ] || fail "luoctl is not the package's"
    show luoctl --version
    [ "$(luod_version)" = "$PREV_VERSION" ] || fail "the running luod is not $PREV_VERSION any more"
    luoctl status --json | grep -q '"kernel":{"loaded":true' || fail "luod does not hold the loaded kernel any more"
    pass "the package is installed; luod $PREV_VERSION (pid $pid) still runs with its kernel loaded"

    step "luoctl kexec: the old luod runs the update"
    kexec_through_systemd 60s
fi

verify_stage2
step "the package's luod restored the update of the previous release"
pid=$(luod_pid)
show readlink "/proc/$pid/exe"
[ "$(readlink "/proc/$pid/exe")" = /usr/bin/luo ] || fail "luod does not run from /usr/bin/luo"
[ "$(luod_version)" = "$NEW_VERSION" ] || fail "the running luod is not $NEW_VERSION"
pass "luod $NEW_VERSION from the package restored what luod $PREV_VERSION preserved"

step "the package's upgrade path: apt-get install --reinstall with a kernel loaded, then idle"
luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load"
install_package --reinstall
grep -q "luo-agent: not restarting luod: a kernel is loaded" /run/luo-apt.log || fail "the postinst did not say it leaves luod running"
[ "$(luod_pid)" = "$pid" ] || fail "the postinst restarted luod with a kernel loaded"
[ "$(cat /sys/kernel/kexec_loaded)" = 1 ] || fail "the reinstall unloaded the kernel"

step "apt-get remove while the kernel is loaded is refused"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q luo-agent > /run/luo-remove.log 2>&1 && fail "apt-get remove succeeded with a kernel loaded"
sed 's/^/  apt: /' /run/luo-remove.log
grep -q "luo-agent: not removing: luod holds a kernel loaded" /run/luo-remove.log || fail "the prerm did not say why"
systemctl is-active luod.service || fail "luod stopped"
[ "$(cat /sys/kernel/kexec_loaded)" = 1 ] || fail "the refused removal unloaded the kernel"
dpkg-query -W -f='${Status}\n' luo-agent | grep -qx "install ok installed" || fail "luo-agent is not installed any more: $(dpkg-query -W -f='${Status}' luo-agent)"

step "an update in progress (a silent client holds it in preparing): the reinstall and the removal leave luod alone"
mkdir -p /etc/systemd/system/luo-test-client@mute.service.d
printf '[Service]\nEnvironment=LUO_TEST_ARGS=--silent\nRestart=no\n' > /etc/systemd/system/luo-test-client@mute.service.d/silent.conf
systemctl daemon-reload
systemctl start luo-test-client@mute.service || fail "the silent client did not start"
luoctl kexec --timeout 180s > /run/kexec-held.log 2>&1 &
held=$!
until_ok 30 "the update is preparing" sh -c "luoctl status --json | grep -q '\"phase\":\"preparing\"'"
install_package --reinstall
grep -q "luo-agent: not restarting luod: an update is in progress (phase preparing)" /run/luo-apt.log || fail "the postinst did not say it leaves the update alone"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q luo-agent > /run/luo-remove.log 2>&1 && fail "apt-get remove succeeded during an update"
grep "luo-agent: not removing" /run/luo-remove.log | sed 's/^/  apt: /'
grep -q "luo-agent: not removing: luod is in the middle of a live update" /run/luo-remove.log || fail "the prerm did not say why"
[ "$(luod_pid)" = "$pid" ] || fail "luod was restarted or stopped during the update"
luoctl status --json | grep -q '"phase":"preparing"' || fail "the update is not preparing any more"
luoctl abort || fail "luoctl abort"
wait $held && fail "the held luoctl kexec succeeded"
systemctl stop luo-test-client@mute.service
luoctl evict mute || fail "luoctl evict mute"
# an aborted update unloads the kernel (Surprise kexecs in docs/systemd.md): luod is idle now
[ "$(cat /sys/kernel/kexec_loaded)" = 0 ] || fail "the kernel is still loaded after the abort"

install_package --reinstall
grep -q "not restarting luod" /run/luo-apt.log && fail "the postinst left an idle luod running"
until_ok 20 "luod restarted" sh -c "[ \"\$(systemctl show -p MainPID --value luod.service)\" != $pid ] && systemctl is-active luod.service"
pass "the postinst leaves luod alone with a kernel loaded or an update running, restarts it when idle; removal is refused meanwhile"
