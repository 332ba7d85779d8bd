#!/bin/bash
# run-job.sh -- run one job script in a fresh LUO test VM; the entry point of the VM tests.
#
# usage: run-job.sh JOB.sh [-e K=V]... [-m MEM] [-t TIMEOUT_SEC] [-c CPUS] [-a KERNEL_ARGS] [-v]
#
# 1. installs missing packages (deps.sh), gets the kernel (build-kernel.sh; cached, a first
#    build takes ~5 min) and the initramfs (mkinitramfs.sh; cached)
# 2. makes a fresh work dir: $LUO_VM_WORKDIR, default <repo>/.vm/<job name>-<pid>
#      share/job.sh, share/job.env    the job and its settings (guest: /mnt/share/...)
#      share/boot/{bzImage,initramfs} what the guest kexecs into (deleted after the run)
#      serial.log                     the console, with host timestamps
# 3. boots the VM (run-vm.sh; -m -t -c -a -v are passed on) and exits with the job's code
#    (124 timeout, 125 no code).
#
# The job runs under busybox sh as root in the guest, once per boot, with:
#   LUO_STAGE  1 on the cold boot, 2 after a kexec that carried KHO data
#   LUO_BOOT   1, 2, ... (counts boots of this run)
#   LUO_SHARE  /mnt/share (this run's share/ directory, read-write)
#   REPO       this repository's path: `hostrun $REPO/...` sees the host's files at the same
#              paths (read-only, writes go to guest RAM)
#   and every -e K=V.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd -P)
usage() { sed -n 2,22p "$0" >&2; exit 2; }
log() { echo "run-job: $*" >&2; }

JOB= ENVS=(REPO="$REPO") VMARGS=()
while (( $# )); do
    case $1 in
    -e) (( $# >= 2 )) && [[ $2 == [A-Za-z_]*=* ]] || usage; ENVS+=("$2"); shift 2 ;;
    -m | -t | -c | -a) (( $# >= 2 )) || usage; VMARGS+=("$1" "$2"); shift 2 ;;
    -v) VMARGS+=(-v); shift ;;
    -*) usage ;;
    *) [[ -z $JOB ]] || usage; JOB=$1; shift ;;
    esac
done
[[ -n $JOB && -f $JOB ]] || usage
t0=$SECONDS

"$HERE/deps.sh" all
KERNEL=$("$HERE/build-kernel.sh")
INITRAMFS=$("$HERE/mkinitramfs.sh")

name=$(basename "$JOB" .sh)
W=${LUO_VM_WORKDIR:-$REPO/.vm/$name-$$}
rm -rf "$W/share"
mkdir -p "$W/share/boot"
W=$(cd "$W" && pwd -P)
cp "$KERNEL" "$W/share/boot/bzImage"
cp "$INITRAMFS" "$W/share/boot/initramfs"
install -m 755 "$JOB" "$W/share/job.sh"
for kv in "${ENVS[@]}"; do
    v=${kv#*=}
    printf "%s='%s'\n" "${kv%%=*}" "${v//\'/\'\\\'\'}"
done > "$W/share/job.env"

log "job $JOB in $W (setup $((SECONDS - t0))s)"
# In the background, so that a TERM/INT for us reaches run-vm.sh, which then stops QEMU.
"$HERE/run-vm.sh" -k "$W/share/boot/bzImage" -i "$W/share/boot/initramfs" -s "$W/share" \
    -l "$W/serial.log" "${VMARGS[@]}" &
vm=$!
trap 'kill -TERM $vm 2>/dev/null; wait $vm; exit 143' TERM INT HUP
rc=0
wait $vm || rc=$?
trap - TERM INT HUP
rm -rf "$W/share/boot"
log "rc=$rc; log: $W/serial.log"
exit $rc
