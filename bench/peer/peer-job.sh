#!/bin/bash
# peer-job.sh -- the guest side of `bench/peer.ts` in the systemd VM (scripts/vm/run-job.sh --systemd
# runs it once per boot). One kexec per step of PEER_PLAN; each boot measures the step before and
# sets up the next (docs/performance.md, "Fifth round: the peer (systemd's fd store)").
#
# PEER_PLAN: steps, e.g. "s10 s100 d10 d100 p10 p100":
#   sN  luod in systemd mode: N services keep a memfd in systemd's fd store and N through luod,
#       all in ONE `luoctl kexec` (luod runs `systemctl kexec`)
#   dN  luod in direct mode: N services through luod, `luoctl kexec` (luod calls reboot(KEXEC); no
#       fd store crosses, so no fd-store service rides along: docs/systemd.md, "The two paths to the jump")
#   pN  the peer alone: N fd-store services, luod idle in systemd mode, `luoctl kexec` with no client
#       (the same `systemctl kexec`), the fd-store baseline beside dN
# PEER_MIB: each memfd's size. Results: $LUO_SHARE/peer/<step>.json.
P=$LUO_SHARE/payload
OUT=$LUO_SHARE/peer
RESULTS=/run/luo-peer
read -r -a PLAN <<< "${PEER_PLAN:-s10}"
MIB=${PEER_MIB:-1}

up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "PEER[boot $LUO_BOOT]: $* (t=$(up)s)"; }
fail() {
    say "FAIL $*"
    systemctl --no-pager list-units --failed 2>&1 | tail -n 20
    journalctl -b --no-pager -o short-monotonic -u luod.service 2>&1 | tail -n 40
    exit 1
}
kind_n() { echo "${1:1}"; }
# the units of step $1 of kind fdstore|luod: luo-peer-<kind>@<step>-<i>.service
units_of() {
    local step=$1 kind=$2 n i
    n=$(kind_n "$step")
    for ((i = 1; i <= n; i++)); do printf 'luo-peer-%s@%s-%d.service ' "$kind" "$step" "$i"; done
}
kinds_of() {
    case ${1:0:1} in s) echo "fdstore luod" ;; d) echo luod ;; p) echo fdstore ;; *) fail "unknown step $1" ;; esac
}
luod_mode() { systemctl show -p StatusText --value luod.service | grep -oE '(systemd|direct) mode'; }

# luod in `want` mode (systemd|direct) through /etc/luod.conf (docs/systemd.md, "The two paths to the jump")
set_mode() {
    local want=$1
    [ "$(luod_mode)" = "$want mode" ] && return
    sed -i '/^kexec-mode/d' /etc/luod.conf
    echo "kexec-mode = $want" >> /etc/luod.conf
    systemctl restart luod.service || fail "restart luod in $want mode"
    # its first STATUS= may follow READY=1 by a moment
    for i in $(seq 1 40); do [ "$(luod_mode)" = "$want mode" ] && return; sleep 0.5; done
    fail "luod is in '$(luod_mode)', not $want mode: $(systemctl show -p StatusText --value luod.service)"
}

setup() {
    local step=$1 kind units=()
    say "set up $step: $(kinds_of "$step") x $(kind_n "$step"), ${MIB} MiB each"
    case ${step:0:1} in d) set_mode direct ;; *) set_mode systemd ;; esac
    for kind in $(kinds_of "$step"); do read -r -a u <<< "$(units_of "$step" "$kind")"; units+=("${u[@]}"); done
    # enabled: systemd starts them again after the kexec, as a host would (WantedBy=multi-user.target)
    systemctl enable --now "${units[@]}" >/dev/null 2>&1 || fail "starting the services of $step"
    if [[ " $(kinds_of "$step") " == *" luod "* ]]; then
        local n; n=$(kind_n "$step")
        for i in $(seq 1 120); do
            systemctl show -p StatusText --value luod.service | grep -q "$n client(s) subscribed" && break
            sleep 0.5
        done
    fi
    say "$step: $(systemctl show -p StatusText --value luod.service); luod's fd store $(systemctl show -p NFileDescriptorStore --value luod.service)"
    luoctl load "$LUO_SHARE/boot/bzImage" --reuse-cmdline || fail "luoctl load"
    echo "$step" > /var/lib/luo-peer-step
    sync
    say "luoctl kexec ($step)"
    luoctl kexec --timeout 300s
    say "luoctl kexec exited $?"
    sleep 300
    fail "still running 300 s after luoctl kexec"
}

teardown() {
    local step=$1 units=() kind
    for kind in $(kinds_of "$step"); do read -r -a u <<< "$(units_of "$step" "$kind")"; units+=("${u[@]}"); done
    systemctl disable --now "${units[@]}" >/dev/null 2>&1
    # a stopped unit with FileDescriptorStorePreserve=yes keeps its store: drop it, or it rides again
    [[ " $(kinds_of "$step") " == *" fdstore "* ]] && systemctl clean --what=fdstore $(units_of "$step" fdstore) >/dev/null 2>&1
    rm -rf "$RESULTS"
}

# measure STEP: waits for every service of STEP to hold its memfd again, then writes the step's JSON
measure() {
    local step=$1 want=0 kind n i
    n=$(kind_n "$step")
    for kind in $(kinds_of "$step"); do want=$((want + n)); done
    say "measuring $step: $want services"
    for ((i = 0; i < 1200; i++)); do
        [ "$(ls "$RESULTS" 2>/dev/null | grep -vc '\.tmp$')" -ge "$want" ] && break
        sleep 0.5
    done
    local got; got=$(ls "$RESULTS" 2>/dev/null | grep -vc '\.tmp$')
    prop() { systemctl show -p "$1" --value "${@:2}"; }
    {
        # luod_mode: what luod's STATUS= says, empty while luod has not started (a pN step's fd-store
        # services may all be done by then); kexec_mode: what /etc/luod.conf asked for
        printf '{"step":"%s","n":%d,"mib":%d,"luod_mode":"%s","kexec_mode":"%s","kernel":"%s","kexec_count":"%s",' \
            "$step" "$n" "$MIB" "$(luod_mode)" "$(sed -n 's/^kexec-mode = //p' /etc/luod.conf)" "$(uname -r)" "$(prop KExecCount)"
        printf '"userspace_us":%s,"luod_start_us":%s,"luod_ready_us":%s,"finish_us":%s,"expected":%d,' \
            "$(prop UserspaceTimestampMonotonic)" "$(prop ExecMainStartTimestampMonotonic luod.service)" \
            "$(prop ActiveEnterTimestampMonotonic luod.service)" "$(prop FinishTimestampMonotonic)" "$want"
        # when systemd started each service's process: "<kind>-<id>": µs, one systemctl call for all
        printf '"started_us":{'
        local all=() k2
        for k2 in $(kinds_of "$step"); do read -r -a u <<< "$(units_of "$step" "$k2")"; all+=("${u[@]}"); done
        systemctl show -p Id -p ExecMainStartTimestampMonotonic "${all[@]}" |
            awk 'BEGIN { RS = ""; FS = "\n" }   # one paragraph per unit, properties in any order
                 { id = ""; t = ""
                   for (i = 1; i <= NF; i++) {
                       if ($i ~ /^Id=/) { id = substr($i, 4); sub(/^luo-peer-/, "", id); sub(/\.service$/, "", id); sub(/@/, "-", id) }
                       if ($i ~ /^ExecMainStartTimestampMonotonic=/) t = substr($i, 33)
                   }
                   if (id != "" && t != "") { printf "%s\"%s\":%s", sep, id, t; sep = "," } }'
        printf '},"clients":['
        local first=1 f
        for f in "$RESULTS"/*; do
            [[ $f == *.tmp ]] && continue
            local name=${f##*/} held verified bytes ok
            read -r held verified bytes ok < "$f"
            [ $first = 1 ] || printf ','
            first=0
            printf '{"kind":"%s","id":"%s","held_ns":%s,"verified_ns":%s,"bytes":%s,"ok":%s}' \
                "${name%%-*}" "${name#*-}" "$held" "$verified" "$bytes" "$([ "$ok" = OK ] && echo true || echo false)"
        done
        printf ']}\n'
    } > "$OUT/$step.json"
    # luod's side of the boot (where its time went), next to the step's JSON
    journalctl -b -u luod.service -o short-monotonic --no-pager > "$OUT/$step-luod.log" 2>&1
    local bad; bad=$(grep -l MISMATCH "$RESULTS"/* 2>/dev/null | wc -l)
    say "$step: $got of $want services hold their memfd again, $bad mismatched"
    [ "$got" -ge "$want" ] || fail "$step: only $got of $want services got their memfd back"
    [ "$bad" = 0 ] || fail "$step: $bad memfds came back altered"
    say "PASS $step: every memfd came back intact"
}

mkdir -p "$OUT"
if [ "$LUO_BOOT" = 1 ]; then
    say "install the package, the client and its units"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "$P"/luo-agent_*.deb >/run/luo-apt.log 2>&1 || { cat /run/luo-apt.log; fail "apt-get install"; }
    install -m 755 "$P/luo-peer-client" /usr/local/bin/luo-peer-client
    install -m 644 "$P/luo-peer-fdstore@.service" "$P/luo-peer-luod@.service" /etc/systemd/system/
    sed -i "s/^Environment=PEER_MIB=.*/Environment=PEER_MIB=$MIB/" /etc/systemd/system/luo-peer-*@.service
    systemctl daemon-reload
    systemctl is-active luod.service >/dev/null || fail "luod.service is not running after the installation"
    setup "${PLAN[0]}"
fi
[ "$LUO_STAGE" = 2 ] || fail "boot $LUO_BOOT is not a live-update boot"
done_step=${PLAN[$((LUO_BOOT - 2))]}
[ "$(cat /var/lib/luo-peer-step 2>/dev/null)" = "$done_step" ] || fail "expected to come from step $done_step"
measure "$done_step"
teardown "$done_step"
next=${PLAN[$((LUO_BOOT - 1))]}
[ -n "$next" ] || { say "every step measured"; exit 0; }
setup "$next"
