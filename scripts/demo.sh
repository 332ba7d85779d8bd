#!/bin/bash
# demo.sh -- `npm run demo`: a live update of the Linux kernel under a running application and a
# running virtual machine, in a QEMU VM with a LUO kernel. A key-value store keeps ~48 MiB in a
# memfd; a tiny guest runs in QEMU under luo-qemu, its RAM in a memfd; luod carries both across
# the kexec; after the new kernel boots, the app claims its store back and checks its SHA-256, and
# luo-qemu resumes the guest, whose counter goes on where it paused.
#
# usage: scripts/demo.sh [-v]     -v: show the whole VM console instead of only the story
# env:   ENTRIES (default 200000) entries in the store; DEMO_TIMEOUT (default 600) seconds
#
# Steps: npm ci (if needed), build dist/luo, install missing packages (scripts/vm/deps.sh), build
# or reuse the LUO kernel (~/.cache/luo-agent; the first build takes ~6 min), then run
# scripts/demo/job.sh in the VM (scripts/vm/run-job.sh) and print the story with a summary.
# Exit 0 only if the store came back intact. Logs stay in .vm/demo-<time>/.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
REPO=$PWD BUN=node_modules/.bin/bun
VERBOSE=
case ${1:-} in
-v | --verbose) VERBOSE=1 ;;
"") ;;
*) sed -n 6,7p "$0" >&2; exit 2 ;;
esac
note() { echo "==> $*"; }

[[ -x $BUN ]] || { note "installing the npm dependencies"; npm ci --no-audit --no-fund; }
note "building dist/luo (luod + luoctl + luo-qemu)"
"$BUN" scripts/build-binary.ts
scripts/vm/deps.sh all
note "LUO kernel: reused from ~/.cache/luo-agent, or built now (about 6 minutes the first time)"
scripts/vm/build-kernel.sh > /dev/null

W=$REPO/.vm/demo-$(date +%Y%m%d-%H%M%S)
LOG=$W/serial.log
mkdir -p "$W"
note "assembling the tiny QEMU guest (examples/qemu/counter-guest.S)"
sh examples/qemu/build-guest.sh "$W/luo-guest.bin"
note "booting the VM (QEMU); the story follows, [seconds] since QEMU started"
echo
LUO_VM_WORKDIR=$W scripts/vm/run-job.sh scripts/demo/job.sh -e ENTRIES="${ENTRIES:-200000}" -p "$W/luo-guest.bin" \
    -t "${DEMO_TIMEOUT:-600}" ${VERBOSE:+-v} 2> "$W/run-job.log" &
job=$!
if [[ -z $VERBOSE ]]; then
    # the story: console lines "[  12.345] DEMO: text" are shown as "[   12.3] text"; plus the
    # time from the kernel's "Starting new kernel" to the new kernel's /init, by the same clock
    tail -n +1 -F --pid=$job "$LOG" 2> /dev/null | while IFS= read -r line; do
        [[ $line =~ ^\[\ *([0-9]+)\.([0-9]{3})\]\ (.*)$ ]] || continue
        ms=$((10#${BASH_REMATCH[1]}${BASH_REMATCH[2]})) text=${BASH_REMATCH[3]}
        case $text in
        *"kexec_core: Starting new kernel"*) jump=$ms ;;
        "INIT: userspace up"*) [[ -n ${jump:-} ]] && up2=$ms ;;
        "DEMO:"*)
            printf '  [%4d.%d] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "${text#DEMO: }"
            if [[ $text == "DEMO: Boot 2:"* && -n ${up2:-} ]]; then
                printf '           (reboot(KEXEC) -> userspace of the new kernel: %d ms by the console clock)\n' $((up2 - jump))
            fi ;;
        esac
    done || true # tail says 1 when the log did not exist yet at its start
fi
rc=0
wait $job || rc=$?

# ---- the summary: app timings (DEMO-T lines) and console host timestamps around the kexec ----
echo
awk '
    function ts(line) { return substr(line, 2, index(line, "]") - 2) + 0 }
    /\] DEMO-T / && $NF ~ /^[0-9.]+$/ { t[$(NF - 1)] = $NF / 1000 }
    /\] DEMO: \$ luoctl kexec/ { kexec = ts($0) }
    /Starting new kernel/ && !jump { jump = ts($0) }
    /\] INIT: userspace up/ && jump && !user2 { user2 = ts($0) }
    /\] DEMO-SHA256 / { sha[++n] = $NF }
    /\] DEMO-VM before / { vm = $0; sub(/.*DEMO-VM /, "", vm); split(vm, f, " "); vmBefore = f[2]; vmAfter = f[4]; vmBoots = f[6] }
    function row(name, s, how) {
        printf "  %-44s %9s   %s\n", name, s == "" ? "-" : sprintf("%.2f s", s), how
    }
    END {
        printf "  %-44s %9s   %s\n", "Summary", "time", "measured by"
        row("fill the store", t["fill"], "kvstore, boot 1")
        row("preserve (START_PRESERVATION -> READY)", t["preserve"], "kvstore, boot 1")
        row("barrier (luoctl kexec -> reboot(KEXEC))", kexec && jump ? jump - kexec : "", "console: \"$ luoctl kexec\" -> \"Starting new kernel\"")
        row("  of which luod: KEXEC -> manifest sealed", t["luod_commit"], "luod, from its manifest (luoctl status)")
        row("kexec -> new userspace", jump && user2 ? user2 - jump : "", "console: \"Starting new kernel\" -> boot 2 /init")
        row("claim + verify (CLAIM, SHA-256, FINISHED)", t["claim"], "kvstore, boot 2")
        row("VM blackout (QMP stop -> cont)", t["vm_blackout"], "luo-qemu, wall clock across the jump")
        print ""
        print "  SHA-256 of the store before the kexec: " (sha[1] ? sha[1] : "(none)")
        print "  SHA-256 of the store after the kexec:  " (sha[2] ? sha[2] : "(none)")
        print "  the guest'"'"'s counter before / after:     " (vmBefore ? vmBefore " / " vmAfter " (" vmBoots " boot in all)" : "(none)")
        exit !(n == 2 && sha[1] == sha[2] && vmAfter != "" && vmBoots == 1)
    }' "$LOG" || { (( rc )) || rc=1; }
echo
echo "full console: $LOG   (luod logs: $W/share/luod-boot*.log; VM setup: $W/run-job.log)"
case $rc in
0) echo "PASS: the application's data came back intact and the VM resumed without a reboot after the kernel live update" ;;
124) echo "FAIL: the VM timed out (see the console log)" ;;
*) echo "FAIL (exit $rc): the data did not come back intact, or the demo stopped early; see the lines above and the console log" ;;
esac
exit $rc
