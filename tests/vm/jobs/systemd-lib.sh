# systemd-lib.sh -- helpers of the systemd VM jobs (tests/vm/jobs/systemd-*.sh), sourced with
#   . /mnt/share/payload/systemd-lib.sh
# The jobs run under bash in a Debian sid guest whose PID 1 is systemd 262, as root, once per boot
# (scripts/vm/run-job.sh --systemd). luod and the test clients are real services there.
P=$LUO_SHARE/payload
CLIENTS=${CLIENTS:-vm-1 vm-2}
MIB=${MIB:-8}

up() { cut -d' ' -f1 /proc/uptime; }
step() { echo; echo "JOB[boot $LUO_BOOT]: $* (t=$(up)s)"; }
pass() { echo "JOB: PASS $*"; }
fail() {
    echo "JOB: FAIL $*"
    echo "---- systemctl status ----"
    systemctl --no-pager --full status luod.service 'luo-test-client@*' 2>&1 | tail -n 60
    echo "---- journal: luod and the clients ----"
    journalctl -b --no-pager -o short-monotonic -u luod.service -u 'luo-test-client@*' 2>&1 | tail -n 80
    exit 1
}
units() { for c in $CLIENTS; do printf 'luo-test-client@%s.service ' "$c"; done; }

# until TIMEOUT_S DESCRIPTION COMMAND...: retry COMMAND every 0.5 s
until_ok() {
    local t=$1 what=$2 i=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt $((t * 2)) ] && fail "timed out after ${t}s: $what"
        sleep 0.5
    done
}

# the package (luod, luoctl, luo-qemu in /usr/bin, the units in /usr/lib/systemd/system), as an
# administrator would install it (docs/systemd.md, "The Debian package"): offline, the guest has no
# network and no apt lists, and everything it depends on is installed. --force-confold keeps an
# /etc/luod.conf a job wrote before (systemd-crash.sh) instead of asking. Its postinst enables and
# starts luod. Then the test client and its unit.
install_luod() {
    install_package
    [ "$(readlink -f "$(command -v luod)")" = /usr/bin/luo ] || fail "luod is not the packaged /usr/bin/luod"
    install_test_client
}

# install_package [APT-GET-ARGS...]: apt-get install the payload's package; its output on ours
# and in /run/luo-apt.log
install_package() {
    local deb
    deb=$(ls "$P"/luo-agent_*.deb) || fail "no luo-agent package in the payload"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "$@" "$deb" 2>&1 | tee /run/luo-apt.log | sed 's/^/  apt: /'
    [ "${PIPESTATUS[0]}" = 0 ] || fail "apt-get install $* $(basename "$deb")"
    hash -r
}

install_test_client() {
    install -m 755 "$P/luo-test-client" /usr/local/bin/luo-test-client
    install -m 644 "$P/luo-test-client@.service" /etc/systemd/system/
    sed -i "s/^Environment=LUO_TEST_MIB=.*/Environment=LUO_TEST_MIB=$MIB/" /etc/systemd/system/luo-test-client@.service
    systemctl daemon-reload
}

# the STATUS= line luod last sent, as `systemctl status` shows it
luod_status() { systemctl show -p StatusText --value luod.service; }

# how many fds luod.service has in its fd store
fdstore_count() { systemctl show -p NFileDescriptorStore --value luod.service; }

# luod's journal of this boot as JSON lines, one per message
luod_journal_json() { journalctl -b "${1:-0}" -u luod.service -o json --no-pager; }

# has_message BOOT PRIORITY TEXT: luod logged TEXT with syslog PRIORITY in boot BOOT (0, -1)
has_message() { luod_journal_json "$1" | grep -F "$3" | grep -q "\"PRIORITY\":\"$2\""; }

show() { echo "\$ $*"; "$@" 2>&1 | sed 's/^/  /'; }

# luod's MESSAGE_IDs (src/daemon/message-ids.ts, docs/daemon.md#logs-and-the-audit-trail)
ID_UPDATE_STARTED=3001fb2e8c534e3dab9b621f4968c96f
ID_JUMPING=5a824a8786fe46de9e554a6d30d7e162
ID_RESTORED=4680465ffa10415bb81f776c715e306e
ID_CLAIMED=b6e75f82de5d4d878c2821a365a2a1ea
ID_AUDIT=74d708179eb04cc1b7b26565d6249021

# snapshot_journal BOOT: luod's journal of boot BOOT (0, -1) as JSON lines into $LUOD_JSON, read once
# for several checks (journalctl takes a second or two under TCG)
snapshot_journal() { LUOD_JSON=$(luod_journal_json "$1"); }

# luod_entry FIELD=VALUE...: the first entry of the snapshot with every one of these fields, as JSON
# (an empty VALUE: the field is there, with any value); fails when there is none
luod_entry() {
    local lines=$LUOD_JSON kv
    for kv in "$@"; do
        if [ -n "${kv#*=}" ]; then lines=$(printf '%s\n' "$lines" | grep -F "\"${kv%%=*}\":\"${kv#*=}\"")
        else lines=$(printf '%s\n' "$lines" | grep -F "\"${kv%%=*}\":\""); fi
    done
    [ -n "$lines" ] && printf '%s\n' "$lines" | head -n 1
}
has_entry() { luod_entry "$@" >/dev/null; }
# has_entry_now BOOT FIELD=VALUE...: a fresh snapshot has such an entry (for until_ok)
has_entry_now() { snapshot_journal "$1" && shift && has_entry "$@"; }

# boot 1: luod and the clients as services, the kernel loaded
setup_stage1() {
    step "apt-get install $(basename "$P"/luo-agent_*.deb) and the test client; the postinst starts luod.service"
    install_luod
    systemctl is-active luod.service || fail "the package's postinst did not start luod.service"
    systemctl is-enabled luod.service || fail "the package's postinst did not enable luod.service"
    show systemctl --no-pager show -p FragmentPath -p ExecStart luod.service
    show systemctl --no-pager show -p FileDescriptorStoreMax -p FileDescriptorStorePreserve -p NotifyAccess -p Type luod.service
    step "start the clients: $(units)"
    # Type=notify: each start returns when the client has subscribed to luod
    systemctl enable --now $(units) || fail "the clients did not start"
    until_ok 20 "luod's STATUS shows the clients" sh -c "systemctl show -p StatusText --value luod.service | grep -q '$(echo $CLIENTS | wc -w) client(s) subscribed'"
    show systemctl --no-pager status luod.service
    systemctl --no-pager status luod.service | grep -q 'Status: "idle, systemd mode' || fail "systemctl status shows no STATUS line of luod"
    has_message 0 5 "kexec mode systemd" || fail "no notice-priority start message of luod in the journal"
    pass "luod runs as a Type=notify service in systemd mode; STATUS and journal priorities are there"
    step "luoctl load (this kernel, no initramfs, this boot's command line)"
    luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load"
}

# kexec_through_systemd TIMEOUT: luoctl kexec; systemd then shuts down for the kexec, and the job
# ends with this boot (a boot that goes on fails)
kexec_through_systemd() {
    luoctl kexec --timeout "$1"
    echo "JOB: luoctl kexec exited $?; systemd is shutting down for the kexec"
    sleep 120
    fail "still running 120 s after luoctl kexec: no kexec"
}

# boot 2: the clients claim (they do it when they start); every byte must be there
verify_stage2() {
    step "after the kexec: luod and the clients started by systemd"
    until_ok 120 "luod.service active" systemctl is-active luod.service
    for u in $(units); do
        until_ok 120 "$u active (claimed and verified)" systemctl is-active "$u"
    done
    for c in $CLIENTS; do
        journalctl -b -u "luo-test-client@$c.service" --no-pager -o cat | grep "VERIFIED $c $((MIB << 20)) bytes" ||
            fail "client $c did not verify its data"
    done
    show systemctl --no-pager status luod.service
    show luoctl status
    [ "$(luoctl status --json | grep -o '"state":"unclaimed"' | wc -l)" = 0 ] || fail "sessions left unclaimed"
    has_message 0 5 "systemd handed back" || fail "luod did not get its sessions from the fd store"
    has_message 0 5 "live-update boot" || fail "luod did not restore the manifest"
    until_ok 10 "the fd store emptied after the claims" sh -c "[ \$(systemctl show -p NFileDescriptorStore --value luod.service) = 0 ]"
    echo "the previous boot's luod, from the journal (priority in brackets):"
    journalctl -b -1 -u luod.service -o json --no-pager | sed -nE 's/.*"PRIORITY":"([0-7])".*"MESSAGE":"([^"]*)".*/  [\1] \2/p; s/.*"MESSAGE":"([^"]*)".*"PRIORITY":"([0-7])".*/  [\2] \1/p' | tail -n 15
    has_message -1 5 "systemd accepted the kexec" || fail "the previous boot's journal lacks luod's kexec request"
    show busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager KExecCount
    pass "every client claimed its ${MIB} MiB intact after the kexec through systemd"
}
