#!/bin/bash
# systemd-qemu -- luo-qemu@.service under systemd 262 with Debian sid's own QEMU (11.x): the VM
# resumes as a service after a real `systemctl kexec`, and the unit's stop during that shutdown
# (after READY) loses nothing.
#
# boot 1: apt-get install the package (luod, luo-qemu: symlinks to /usr/bin/luo; both units);
#         /etc/luo-qemu/vm-1.conf runs the counter guest (examples/qemu, payload luo-guest.bin);
#         `systemctl enable --now luo-qemu@vm-1.service` returns once the guest runs (Type=notify);
#         systemd-analyze verify of the unit; luo-test-ram-watch.service (ordered Before= the VM's
#         unit, so the shutdown stops it after the VM's unit) samples the guest's counter in its
#         RAM until QEMU is gone, and records how the VM's unit ended; then luoctl load + kexec.
# boot 2: systemd starts luod and luo-qemu@vm-1 by itself (enabled): the unit becomes active on
#         the resumed guest; the counter goes on from where it paused, no second BOOT, the RAM
#         pattern is intact (sha256 against PATTERN_SHA256, computed by the test from
#         tests/vm/guest/guest-ram.ts); nothing unclaimed, no restart; `systemctl stop` ends it.
# env: PATTERN_SHA256 (the guest's pattern region 0x10000..0x8FFFF as the guest writes it)
. "$LUO_SHARE/payload/systemd-lib.sh"
CONF=/etc/luo-qemu/vm-1.conf
UNIT=luo-qemu@vm-1.service
SERIAL=/var/log/luo-qemu/vm-1.serial
WATCH=/var/lib/luo-test/ram-watch.log

fail() {
    echo "JOB: FAIL $*"
    echo "---- systemctl status ----"
    systemctl --no-pager --full status luod.service "$UNIT" luo-test-ram-watch.service 2>&1 | tail -n 60
    echo "---- journal: luod and luo-qemu (this boot) ----"
    journalctl -b --no-pager -o short-monotonic -u luod.service -u "$UNIT" 2>&1 | tail -n 60
    echo "---- the guest's serial log (tail) ----"
    tr -d '\r' < "$SERIAL" 2>/dev/null | tail -n 5
    exit 1
}

# the VM unit's end state, in a fixed order
unit_state() { for p in ActiveState Result ExecMainCode ExecMainStatus; do printf '%s=%s ' $p "$(systemctl show -p $p --value "$UNIT")"; done; }
# serial_count PATTERN: lines of the guest's serial console matching PATTERN
serial_count() { tr -d '\r' < "$SERIAL" 2>/dev/null | grep -c -- "$1"; }
# counts: the guest's COUNT values, one hex number a line
counts() { tr -d '\r' < "$SERIAL" | sed -nE 's/^COUNT ([0-9a-f]{8})$/\1/p'; }
# wait_counts N [SECONDS]: until the serial log has N COUNT lines
wait_counts() {
    local i=0
    while [ "$(serial_count '^COUNT ')" -lt "$1" ]; do
        i=$((i + 1)); [ $i -gt $(( ${2:-120} * 10 )) ] && fail "guest serial: fewer than $1 COUNT lines"
        sleep 0.1
    done
}
# QEMU's pid as luo-qemu wrote it, if that process lives
qemu_pid() { local p; p=$(cat /run/luo-qemu/vm-1/qemu.pid 2>/dev/null) && [ -d "/proc/$p" ] && echo "$p"; }
# ram_u32 PID OFFSET: the little-endian dword at OFFSET of QEMU's fd 3 (the guest's RAM memfd)
ram_u32() { dd if="/proc/$1/fd/3" bs=4 skip=$(( $2 / 4 )) count=1 2>/dev/null | od -An -tx4 | tr -d ' \n'; }
# check_ram WHEN: the marker and the pattern in the RAM QEMU maps, read by root through /proc
check_ram() {
    local q sum
    q=$(qemu_pid) || fail "$1: no QEMU process"
    echo "JOB: $1: QEMU $q ($(tr '\0' ' ' < /proc/$q/cmdline | cut -c1-40)…) maps $(readlink /proc/$q/fd/3) as guest RAM"
    # luo-qemu's QMP option and sandbox as QEMU 11 took them; the kernel's view of its filter
    echo "JOB: $1: QEMU runs with $(tr '\0' '\n' < /proc/$q/cmdline | grep -A1 -x -e -qmp -e -sandbox | grep -v -- '^--$' | tr '\n' ' ')($(grep '^Seccomp:' /proc/$q/status | tr -d '\t'))"
    [ "$(ram_u32 "$q" $((0x504)))" = 214f554c ] || fail "$1: the boot marker is not in the guest's RAM"
    echo "JOB: $1: MARKER ok"
    sum=$(dd if="/proc/$q/fd/3" bs=64K skip=1 count=8 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$sum" = "$PATTERN_SHA256" ] || fail "$1: the pattern region's sha256 is $sum, not $PATTERN_SHA256"
    echo "JOB: $1: PATTERN ok"
}

if [ "$LUO_STAGE" = 1 ]; then
    step "apt-get install the package (luod, luo-qemu, both units); the guest image; vm-1's settings"
    [ -n "${PATTERN_SHA256:-}" ] || fail "PATTERN_SHA256 is not set"
    install_luod
    [ "$(readlink -f "$(command -v luo-qemu)")" = /usr/bin/luo ] || fail "luo-qemu is not the packaged /usr/bin/luo-qemu"
    systemctl cat "$UNIT" | grep -x 'ExecStart=/usr/bin/luo-qemu run %i --memory ${MEMORY} $LUO_QEMU_OPTS -- $QEMU_ARGS' ||
        fail "$UNIT does not run the packaged /usr/bin/luo-qemu"
    install -D -m 644 "$P/luo-guest.bin" /var/lib/vm/luo-guest.bin
    mkdir -p /etc/luo-qemu /var/log/luo-qemu /var/lib/luo-test
    cat > "$CONF" <<EOF
MEMORY=16M
QEMU_ARGS=-bios /var/lib/vm/luo-guest.bin -display none -nodefaults -accel tcg -chardev file,id=s0,path=$SERIAL,append=on -serial chardev:s0
LUO_QEMU_OPTS=--shutdown-timeout 2s
EOF
    show cat "$CONF"
    show qemu-system-x86_64 -version
    systemctl daemon-reload
    echo "JOB: systemd-analyze verify $UNIT:"
    systemd-analyze verify "$UNIT" 2>&1 | sed 's/^/JOB: verify: /'
    echo "JOB: systemd-analyze verify exited ${PIPESTATUS[0]}"
    systemctl is-active luod.service || fail "luod.service did not start"

    step "systemctl enable --now $UNIT: returns when the guest runs (READY=1)"
    t0=$(date +%s%N)
    systemctl enable --now "$UNIT" || fail "$UNIT did not start"
    echo "JOB: systemctl enable --now returned after $(( ($(date +%s%N) - t0) / 1000000 )) ms: $(systemctl is-active "$UNIT")"
    [ "$(systemctl is-active "$UNIT")" = active ] || fail "$UNIT is not active"
    show systemctl --no-pager status "$UNIT"
    wait_counts 3 120
    check_ram "before the update"
    pass "vm-1 runs as a service: $(counts | tail -n 1)"

    step "luo-test-ram-watch.service: the guest's counter in its RAM until after the unit stopped"
    cat > /usr/local/sbin/luo-test-ram-watch <<'EOF'
#!/bin/bash
# samples the counter guest's counter (physical 0x500) in QEMU's RAM memfd every 50 ms until QEMU
# is gone or 20 samples after luo-qemu@vm-1.service stopped (the unit's KillMode=process leaves a
# QEMU paused for the kexec to the shutdown's final kill), then records how the unit ended
out=/var/lib/luo-test/ram-watch.log
# the shutdown stops this unit right after luo-qemu@vm-1: finish the record first (a second or so)
trap '' TERM
q=$(cat /run/luo-qemu/vm-1/qemu.pid)
echo "$(cut -d' ' -f1 /proc/uptime) watching QEMU $q" >> $out
after=0
while [ -d /proc/$q ] && [ $after -lt 20 ]; do
    c=$(dd if=/proc/$q/fd/3 bs=4 skip=320 count=1 2>/dev/null | od -An -tx4 | tr -d ' \n')
    [ -n "$c" ] && echo "$(cut -d' ' -f1 /proc/uptime) $c" >> $out
    case $(systemctl show -p ActiveState --value luo-qemu@vm-1.service) in inactive|failed) after=$((after + 1)) ;; esac
    sleep 0.05
done
if [ -d /proc/$q ]; then
    echo "$(cut -d' ' -f1 /proc/uptime) QEMU still there after the unit stopped: $after samples since" >> $out
else
    echo "$(cut -d' ' -f1 /proc/uptime) QEMU gone" >> $out
fi
for i in $(seq 100); do
    case $(systemctl show -p ActiveState --value luo-qemu@vm-1.service) in inactive|failed) break ;; esac
    sleep 0.1
done
state=$(for p in ActiveState Result ExecMainCode ExecMainStatus; do printf '%s=%s ' $p "$(systemctl show -p $p --value luo-qemu@vm-1.service)"; done)
echo "$(cut -d' ' -f1 /proc/uptime) unit $state" >> $out
sync
EOF
    chmod 755 /usr/local/sbin/luo-test-ram-watch
    cat > /etc/systemd/system/luo-test-ram-watch.service <<'EOF'
[Unit]
Description=the counter guest's RAM until QEMU is gone (test)
# at shutdown, stopped after the VM's unit (the reverse of the start order)
Before=luo-qemu@vm-1.service
[Service]
ExecStart=/usr/local/sbin/luo-test-ram-watch
EOF
    systemctl daemon-reload
    systemctl start luo-test-ram-watch.service || fail "the RAM watch did not start"
    until_ok 10 "the RAM watch samples" grep -q "^[0-9.]* [0-9a-f]\{8\}$" "$WATCH"

    step "luoctl load + luoctl kexec: luod asks systemd to kexec; systemd stops $UNIT after READY"
    luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load"
    kexec_through_systemd 120s
fi

step "boot 2: systemd starts luod and $UNIT by itself; the unit resumes vm-1"
until_ok 120 "luod.service active" systemctl is-active luod.service
# active (resumed), or failed: then at once (exit 4 keeps the session and is not restarted)
until_ok 240 "$UNIT active or failed" sh -c "systemctl is-active -q $UNIT || systemctl is-failed -q $UNIT"
systemctl is-failed -q "$UNIT" && fail "$UNIT failed to resume: $(unit_state)"
show systemctl --no-pager status "$UNIT"
echo "JOB: $UNIT is-enabled $(systemctl is-enabled "$UNIT"), NRestarts=$(systemctl show -p NRestarts --value "$UNIT")"

echo "JOB: the previous boot's luo-qemu@vm-1 (journal):"
journalctl -b -1 -u "$UNIT" --no-pager -o cat | sed 's/^/JOB: boot1: /'
echo "JOB: the RAM watch of the previous boot:"
sed 's/^/JOB: watch: /' "$WATCH"
# when luo-qemu said READY (the journal's monotonic clock is the watch's /proc/uptime)
t_ready=$(journalctl -b -1 -u "$UNIT" -o short-monotonic --no-pager | sed -nE 's/^\[ *([0-9.]+)\].*READY: paused and saved.*/\1/p' | tail -n 1)
[ -n "$t_ready" ] || fail "no READY of luo-qemu in the previous boot's journal"
samples=$(awk -v t="$t_ready" 'NF == 2 && $2 ~ /^[0-9a-f]{8}$/ && $1 > t { print $2 }' "$WATCH")
ready=$(echo "$samples" | head -n 1)
echo "JOB: RAM samples after READY (t=$t_ready): $(echo "$samples" | grep -c .), distinct values: $(echo "$samples" | sort -u | tr '\n' ' ')"
[ -n "$ready" ] || fail "no RAM sample after READY"
# every sample from READY until QEMU was gone holds one value: the guest never ran after its save
[ "$(echo "$samples" | sort -u | wc -l)" = 1 ] || fail "the guest's RAM changed after READY"
grep -qE " QEMU (gone|still there after the unit stopped: 20 samples since)$" "$WATCH" || fail "the RAM watch did not see the unit stop"
grep " unit " "$WATCH" | sed 's/^[0-9.]* /JOB: boot1 /'

journalctl -b -u "$UNIT" --no-pager -o cat | sed 's/^/JOB: boot2: /'
journalctl -b -u "$UNIT" --no-pager -o cat | grep -q "resumed: blackout" || fail "no 'resumed: blackout' in the journal"
wait_counts $(( $(serial_count '^COUNT ') + 2 )) 60
# fixed-width lowercase hex, compared as strings: a leading letter keeps awk from reading numbers
before=$(counts | awk -v r="$ready" '("x" $1) <= ("x" r) { v = $1 } END { print v }')
after=$(counts | awk -v r="$ready" '("x" $1) > ("x" r) { print $1; exit }')
echo "JOB: COUNTER at READY $ready, last printed before $before, first after the resume $after"
echo "JOB: BOOT lines: $(serial_count '^BOOT')"
[ "$(serial_count '^BOOT')" = 1 ] || fail "the guest booted again"
check_ram "after the resume"
show luoctl status
[ "$(luoctl status --json | grep -o '"state":"unclaimed"' | wc -l)" = 0 ] || fail "sessions left unclaimed"
[ "$(systemctl show -p NRestarts --value "$UNIT")" = 0 ] || fail "$UNIT was restarted"
pass "vm-1 resumed as a service after the kexec"

step "systemctl stop $UNIT: the guest ignores the power button; quit after --shutdown-timeout 2s"
t0=$(date +%s%N)
systemctl stop "$UNIT"
t1=$(date +%s%N)
echo "JOB: systemctl stop took $(( (t1 - t0) / 1000000 )) ms; $(unit_state)"
journalctl -b -u "$UNIT" --no-pager -o cat | tail -n 4 | sed 's/^/JOB: stop: /'
[ "$(systemctl show -p ExecMainStatus --value "$UNIT")" = 0 ] || fail "luo-qemu did not exit 0"
[ "$(systemctl show -p Result --value "$UNIT")" = success ] || fail "$UNIT did not stop cleanly"
pgrep -x qemu-system-x86 >/dev/null && fail "QEMU still runs after the stop"
pass "systemctl stop ended vm-1 cleanly"
