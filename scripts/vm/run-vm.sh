#!/bin/bash
# run-vm.sh -- boot the LUO test kernel + initramfs in QEMU and wait until the guest powers off.
# The guest may kexec any number of times inside the same QEMU process (-no-reboot only stops
# real resets). Needs no terminal and no stdin: the serial console goes through a FIFO into a
# log with host timestamps. Usually called by run-job.sh, which prepares the share.
#
# usage: run-vm.sh -k BZIMAGE (-i INITRAMFS | -d DISK) -s SHARE_DIR -l LOG [options]
#   -d DISK  boot from this raw root disk (virtio, snapshot=on: it never changes; the guest's
#            writes go to a temporary file in $TMPDIR) instead of an initramfs; pass root= with -a
#   -s DIR   shared read-write as 9p tag "share" (guest /mnt/share); the job lives there
#   -l FILE  serial console, each line prefixed with "[seconds since QEMU start]"
#   -m MEM   guest RAM (default 1G)          -c N    vCPUs (default 2)
#   -t SEC   hard timeout (default 300)      -a STR  extra kernel command line
#   -H       do not share the host's / read-only as 9p tag "hostroot" (no hostrun)
#   -n PORT  a network card (virtio-net, QEMU user networking with restrict=on: the guest reaches
#            nothing outside QEMU) with 127.0.0.1:PORT on the host forwarded to the guest's port 22;
#            the guest is 10.0.2.15/24 (pass ip=… with -a, as run-job.sh -n does)
#   -v       also copy the console to stdout
# env: ACCEL=tcg|kvm (default tcg: KVM is unusably slow on nested test hosts, see
#      docs), CPU (default max for tcg, host for kvm), QEMU (default qemu-system-x86_64),
#      TSC_KHZ (TCG: host TSC frequency; default from dmesg or /proc/cpuinfo)
# exit: the job's exit code (the guest writes it to isa-debug-exit), 124 on timeout,
#       125 when QEMU ended without a code (panic, reset, QEMU error).
set -euo pipefail
export LC_ALL=C
K= I= DISK= SHARE= LOG= MEM=1G CPUS=2 TMO=300 APPEND= HOSTROOT=1 ECHO= SSHPORT=
while getopts "k:i:d:s:l:m:c:t:a:Hn:v" o; do
    case $o in
    k) K=$OPTARG ;; i) I=$OPTARG ;; d) DISK=$OPTARG ;; s) SHARE=$OPTARG ;; l) LOG=$OPTARG ;; m) MEM=$OPTARG ;;
    c) CPUS=$OPTARG ;; t) TMO=$OPTARG ;; a) APPEND=$OPTARG ;; H) HOSTROOT= ;; n) SSHPORT=$OPTARG ;; v) ECHO=1 ;;
    *) sed -n 2,23p "$0" >&2; exit 2 ;;
    esac
done
[[ -f $K && ( -f $I || -f $DISK ) && -d $SHARE && -n $LOG ]] || { sed -n 2,23p "$0" >&2; exit 2; }
log() { echo "run-vm: $*" >&2; }

CMDLINE="console=ttyS0 liveupdate=on panic=-1"
. "$(dirname "$0")/accel.sh"

# sockets=N: the kernel has no ACPI and finds CPUs in SeaBIOS' MP table, which lists one per socket
args=(-accel "$ACCEL" -cpu "$CPU" -M pc -smp "$CPUS,sockets=$CPUS" -m "$MEM"
    -nodefaults -no-user-config -display none -vga none -no-reboot
    -kernel "$K" -append "$CMDLINE"
    -chardev stdio,id=con,signal=off -serial chardev:con
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
    -fsdev "local,id=share,path=${SHARE//,/,,},security_model=none"
    -device virtio-9p-pci,fsdev=share,mount_tag=share)
if [[ -n $DISK ]]; then
    args+=(-drive "file=$DISK,format=raw,if=virtio,snapshot=on,cache=unsafe")
else
    args+=(-initrd "$I")
fi
if [[ -n $SSHPORT ]]; then
    [[ $SSHPORT =~ ^[0-9]+$ ]] || { log "-n: not a port: $SSHPORT"; exit 2; }
    args+=(-netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$SSHPORT-:22"
        -device virtio-net-pci,netdev=net0)
fi
if [[ -n $HOSTROOT ]]; then
    args+=(-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
        -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot)
fi

# Timestamps the console: "[   1.234] line", seconds since QEMU start.
stamp() {
    local t0=${EPOCHREALTIME/./} line us
    while IFS= read -r line || [[ -n $line ]]; do
        us=$(( ${EPOCHREALTIME/./} - t0 ))
        line=${line%$'\r'}
        printf '[%4d.%03d] %s\n' $((us / 1000000)) $((us % 1000000 / 1000)) "$line" >> "$LOG"
        [[ -z $ECHO ]] || printf '%s\n' "$line"
    done
}

mkdir -p "$(dirname "$LOG")"
: > "$LOG"
base=${LOG%.log}
printf '%q ' "${QEMU:-qemu-system-x86_64}" "${args[@]}" > "$base.qemu-cmd"; echo >> "$base.qemu-cmd"
fifo=$(mktemp -u "$(dirname "$LOG")/.console.XXXXXX")
mkfifo "$fifo"
log "accel=$ACCEL cpu=$CPU mem=$MEM smp=$CPUS timeout=${TMO}s; cmdline: $CMDLINE"
t0=${EPOCHREALTIME/./}
stamp < "$fifo" &
stamper=$!
timeout -k 5 "$TMO" "${QEMU:-qemu-system-x86_64}" "${args[@]}" </dev/null >"$fifo" 2>"$base.qemu-stderr" &
qpid=$!
# If we are stopped, stop QEMU too (timeout passes the signal on) instead of leaving it running.
trap 'kill -TERM $qpid 2>/dev/null; wait $stamper; rm -f "$fifo"; exit 143' TERM INT HUP
qrc=0
wait $qpid || qrc=$?
wait $stamper || true
trap - TERM INT HUP
rm -f "$fifo"
wall=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))

if (( qrc == 124 || qrc == 137 )); then
    rc=124 why="TIMEOUT after ${TMO}s"
elif (( qrc % 2 == 1 )) && grep -q "INIT: powering off, rc=$(( qrc >> 1 ))\$" "$LOG"; then
    # isa-debug-exit: QEMU exits with (code << 1) | 1. QEMU's own errors exit 1 too, hence the
    # check that the guest really said goodbye with this code.
    rc=$(( qrc >> 1 )) why="job exit code $(( qrc >> 1 ))"
else
    rc=125 why="QEMU exited with $qrc and no job code (kernel panic? QEMU error?)"
fi
if [[ -s $base.qemu-stderr ]]; then log "QEMU stderr:"; sed 's/^/  /' "$base.qemu-stderr" >&2; fi
# the milestones of each boot, with host times
grep -E '\] (INIT: |JOB|Linux version|Run /init)|Starting new kernel' "$LOG" | cut -c1-150 | sed 's/^/run-vm:   /' >&2 || true
log "$why after $((wall / 1000)).$(printf %03d $((wall % 1000)))s; console log: $LOG"
exit $rc
