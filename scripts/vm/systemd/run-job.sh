#!/bin/bash
# run-job.sh -- run one job in a VM whose PID 1 is systemd 262 (Debian sid), on our LUO kernel.
#
# usage: run-job.sh JOB.sh [-e K=V]... [-p FILE]... [-m MEM] [-t TIMEOUT_SEC] [-c CPUS] [-a KERNEL_ARGS] [-v]
#   -p FILE  also copy FILE into the payload (e.g. tests/vm/jobs/systemd-lib.sh)
#
# 1. gets what it needs, each cached: packages (../deps.sh all + debootstrap), the kernel
#    (../build-kernel.sh luo-systemd.config), the root file system (mkrootfs.sh), and builds the
#    test client (client.ts, `bun build --compile`). dist/luo must exist (npm run build).
# 2. makes a fresh work dir: $LUO_VM_WORKDIR, default <repo>/.vm/<job name>-<pid>
#      share/job.sh, share/job.env     the job and its settings (guest: /mnt/share/...)
#      share/boot/bzImage              the kernel to kexec into (this same kernel)
#      share/payload/                  luo (dist/luo), luo-test-client, luod.service, the client unit
#      serial.log                      the console, with host timestamps
# 3. boots kernel + root disk (no initramfs; snapshot=on, the cached image never changes) and
#    exits with the job's code (124 timeout, 125 no code). The guest runs the job through
#    luo-vm-job.service (rootfs/usr/local/sbin/luo-vm-job) once per boot:
#      LUO_STAGE 1 on the cold boot, 2 after a KHO kexec; LUO_BOOT 1, 2, ...; LUO_SHARE /mnt/share
#
# env: ACCEL=tcg|kvm (default tcg), CPU, QEMU, TSC_KHZ as for ../run-vm.sh
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
VM=$(cd "$HERE/.." && pwd)
REPO=$(cd "$HERE/../../.." && pwd -P)
usage() { sed -n 2,21p "$0" >&2; exit 2; }
log() { echo "run-job(systemd): $*" >&2; }

JOB= ENVS=() FILES=() MEM=2G CPUS=2 TMO=600 APPEND= ECHO=
while (( $# )); do
    case $1 in
    -e) (( $# >= 2 )) && [[ $2 == [A-Za-z_]*=* ]] || usage; ENVS+=("$2"); shift 2 ;;
    -p) [[ -f ${2:-} ]] || usage; FILES+=("$2"); shift 2 ;;
    -m) MEM=$2; shift 2 ;;
    -t) TMO=$2; shift 2 ;;
    -c) CPUS=$2; shift 2 ;;
    -a) APPEND=$2; shift 2 ;;
    -v) ECHO=1; shift ;;
    -*) usage ;;
    *) [[ -z $JOB ]] || usage; JOB=$1; shift ;;
    esac
done
[[ -n $JOB && -f $JOB ]] || usage
t0=$SECONDS

"$VM/deps.sh" all
"$VM/deps.sh" systemd
KERNEL=$("$VM/build-kernel.sh" "$VM/luo-systemd.config")
ROOTFS=$("$HERE/mkrootfs.sh")
[[ -x $REPO/dist/luo ]] || { log "$REPO/dist/luo is missing: run 'npm run build' first"; exit 1; }

name=$(basename "$JOB" .sh)
W=${LUO_VM_WORKDIR:-$REPO/.vm/$name-$$}
rm -rf "$W/share"
mkdir -p "$W/share/boot" "$W/share/payload"
W=$(cd "$W" && pwd -P)
cp "$KERNEL" "$W/share/boot/bzImage"
cp "$REPO/dist/luo" "$W/share/payload/luo"
cp "$REPO/luod.service" "$HERE/guest/luo-test-client@.service" "$W/share/payload/"
(( ${#FILES[@]} )) && cp "${FILES[@]}" "$W/share/payload/"
# the test client: src/client compiled into its own binary (~100 MB, like dist/luo), cached by content
CKEY=$( { cat "$HERE/guest/client.ts"; find "$REPO/src" -name '*.ts' -print0 | LC_ALL=C sort -z | xargs -0 cat;
          "$REPO/node_modules/.bin/bun" --version; } | sha256sum | cut -c1-16)
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
CLIENT=$CACHE/test-client/luo-test-client-$CKEY
if [[ ! -x $CLIENT ]]; then
    mkdir -p "$CACHE/test-client"
    ( cd "$REPO" && node_modules/.bin/bun build --compile --minify --no-compile-autoload-dotenv \
        --no-compile-autoload-bunfig "$HERE/guest/client.ts" src/kernel/epoll-worker.ts --outfile "$CLIENT.tmp" >&2 )
    mv "$CLIENT.tmp" "$CLIENT"
    find "$CACHE/test-client" -name 'luo-test-client-*' ! -path "$CLIENT" -delete
fi
cp "$CLIENT" "$W/share/payload/luo-test-client"
install -m 755 "$JOB" "$W/share/job.sh"
for kv in "${ENVS[@]}"; do
    v=${kv#*=}
    printf "%s='%s'\n" "${kv%%=*}" "${v//\'/\'\\\'\'}"
done > "$W/share/job.env"
LOG=$W/serial.log
log "job $JOB in $W (setup $((SECONDS - t0))s); rootfs $ROOTFS"

# ---- QEMU (as ../run-vm.sh, with a root disk instead of an initramfs) ----------------------------
CMDLINE="console=ttyS0 liveupdate=on panic=-1 root=/dev/vda rootfstype=ext4 rw init=/usr/lib/systemd/systemd"
CMDLINE+=" systemd.show_status=1 systemd.log_color=0"
. "$VM/accel.sh"
args=(-accel "$ACCEL" -cpu "$CPU" -M pc -smp "$CPUS,sockets=$CPUS" -m "$MEM"
    -nodefaults -no-user-config -display none -vga none -no-reboot
    -kernel "$W/share/boot/bzImage" -append "$CMDLINE"
    -drive "file=$ROOTFS,format=raw,if=virtio,snapshot=on,cache=unsafe"
    -chardev stdio,id=con,signal=off -serial chardev:con
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
    -fsdev "local,id=share,path=${W//,/,,}/share,security_model=none"
    -device virtio-9p-pci,fsdev=share,mount_tag=share)

stamp() {
    local t0=${EPOCHREALTIME/./} line us
    while IFS= read -r line || [[ -n $line ]]; do
        us=$(( ${EPOCHREALTIME/./} - t0 ))
        line=${line%$'\r'}
        printf '[%4d.%03d] %s\n' $((us / 1000000)) $((us % 1000000 / 1000)) "$line" >> "$LOG"
        [[ -z $ECHO ]] || printf '%s\n' "$line"
    done
}
: > "$LOG"
printf '%q ' "${QEMU:-qemu-system-x86_64}" "${args[@]}" > "$W/qemu-cmd"; echo >> "$W/qemu-cmd"
fifo=$W/.console
rm -f "$fifo"; mkfifo "$fifo"
log "accel=$ACCEL mem=$MEM smp=$CPUS timeout=${TMO}s; cmdline: $CMDLINE"
tq=${EPOCHREALTIME/./}
stamp < "$fifo" &
stamper=$!
# snapshot=on keeps the guest's writes in a temporary file (QEMU's TMPDIR)
TMPDIR=$W timeout -k 5 "$TMO" "${QEMU:-qemu-system-x86_64}" "${args[@]}" </dev/null >"$fifo" 2>"$W/qemu-stderr" &
qpid=$!
trap 'kill -TERM $qpid 2>/dev/null; wait $stamper; rm -f "$fifo"; exit 143' TERM INT HUP
qrc=0
wait $qpid || qrc=$?
wait $stamper || true
trap - TERM INT HUP
rm -f "$fifo"
wall=$(( (${EPOCHREALTIME/./} - tq) / 1000 ))
if (( qrc == 124 || qrc == 137 )); then
    rc=124 why="TIMEOUT after ${TMO}s"
elif (( qrc % 2 == 1 )) && grep -q "INIT: powering off, rc=$(( qrc >> 1 ))\$" "$LOG"; then
    rc=$(( qrc >> 1 )) why="job exit code $(( qrc >> 1 ))"
else
    rc=125 why="QEMU exited with $qrc and no job code (kernel panic? QEMU error?)"
fi
if [[ -s $W/qemu-stderr ]]; then log "QEMU stderr:"; sed 's/^/  /' "$W/qemu-stderr" >&2; fi
grep -E '\] (INIT: |JOB|Linux version)|Starting new kernel|kexec_core: Starting' "$LOG" | cut -c1-160 | sed 's/^/run-job(systemd):   /' >&2 || true
rm -rf "$W/share/boot" "$W/share/payload"
log "$why after $((wall / 1000)).$(printf %03d $((wall % 1000)))s (setup $(( SECONDS - t0 - wall / 1000 ))s); console log: $LOG"
exit $rc
