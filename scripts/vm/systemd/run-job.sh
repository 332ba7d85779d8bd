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
CKEY=$( { cat "$HERE/guest/client.ts" "$REPO/tests/vm/guest/pattern.ts"; find "$REPO/src" -name '*.ts' -print0 | LC_ALL=C sort -z | xargs -0 cat;
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

# ---- QEMU: ../run-vm.sh with the root disk instead of an initramfs ------------------------------
TMPDIR=$W "$VM/run-vm.sh" -k "$W/share/boot/bzImage" -d "$ROOTFS" -s "$W/share" -l "$LOG" -H \
    -m "$MEM" -c "$CPUS" -t "$TMO" ${ECHO:+-v} \
    -a "root=/dev/vda rootfstype=ext4 rw init=/usr/lib/systemd/systemd systemd.show_status=1 systemd.log_color=0 $APPEND" &
vm=$!
# stopped ourselves (a test timeout): stop the VM too
trap 'kill -TERM $vm 2>/dev/null; wait $vm; exit 143' TERM INT HUP
rc=0
wait $vm || rc=$?
trap - TERM INT HUP
rm -rf "$W/share/boot" "$W/share/payload"
log "rc=$rc; console log: $LOG"
exit $rc
