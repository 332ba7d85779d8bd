#!/bin/bash
# run-job.sh -- run one job script in a fresh LUO test VM; the one entry point of the VM tests, the
# demo and the VM benchmark.
#
# usage: run-job.sh [--systemd] JOB.sh [-e K=V]... [-p FILE]... [-m MEM] [-t TIMEOUT_SEC] [-c CPUS]
#                   [-a KERNEL_ARGS] [-v]
#   (plain)    the guest is our busybox initramfs (guest/init); host programs run through hostrun
#   --systemd  the guest's PID 1 is systemd 262 on a Debian sid root disk (systemd/mkrootfs.sh)
#   -e K=V     exported to the job          -p FILE  copied into share/payload/ (guest: /mnt/share/payload)
#   -n PORT    a network card, ssh on 127.0.0.1:PORT (run-vm.sh -n); the guest gets its address
#              from the command line (ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off)
#   -m -t -c -a -v as for run-vm.sh; defaults: plain 1G, 300 s; --systemd 2G, 600 s; 2 vCPUs
#
# 1. gets what it needs, each cached: packages (deps.sh), the three kernels A, B, C (build-kernel.sh;
#    a first build of A takes ~7 min, B and C then a few minutes more, built incrementally), then the
#    initramfs (mkinitramfs.sh) or, --systemd, the root disk (systemd/mkrootfs.sh) and the Debian
#    package dist/luo-agent_<version>-*_<arch>.deb (must exist and be newer than dist/luo: npm run package)
# 2. makes a fresh work dir: $LUO_VM_WORKDIR, default <repo>/.vm/<job name>-<pid>
#      share/job.sh, share/job.env    the job and its settings (guest: /mnt/share/...)
#      share/boot/bzImage, initramfs  what the guest boots and kexecs into: kernel A (plain: also
#                                     the initramfs)
#      share/boot/vmlinuz-<release>   the kernels A, B, C (build-kernel.sh a|b|c), each with its
#        vmlinuz-<release>.abi.env    abi.env (LUO_ABI, MEMFD_ABI, KHO_ABI, KERNEL_RELEASE, KERNEL_VERSION)
#      share/payload/                 the -p files; --systemd: also luo-agent_….deb (dist/, the package)
#      serial.log                     the console, with host timestamps
#    share/boot and share/payload are deleted after the run.
# 3. boots the VM (run-vm.sh) and exits with the job's code (124 timeout, 125 no code).
#
# The job runs as root in the guest, once per boot, with:
#   LUO_STAGE  1 on the cold boot, 2 after a kexec that carried KHO data
#   LUO_BOOT   1, 2, ... (counts boots of this run)
#   LUO_SHARE  /mnt/share (this run's share/ directory, read-write)
#   LUO_KERNEL_A, LUO_KERNEL_B, LUO_KERNEL_C          the kernels' guest paths (/mnt/share/boot/vmlinuz-*)
#   LUO_KERNEL_A_ENV, LUO_KERNEL_B_ENV, LUO_KERNEL_C_ENV   their abi.env (sourceable by sh)
#   The guest makes /boot/vmlinuz-$(uname -r) a link to the running kernel's image on every boot
#   (plain: in the root hostrun sees; --systemd: in the root disk), as a distribution would have it.
#   and every -e K=V. Plain: under busybox sh, started by guest/init; also
#   REPO       this repository's path: `hostrun $REPO/...` sees the host's files at the same
#              paths (read-only, writes go to guest RAM)
#   --systemd: under bash, started by luo-vm-job.service (systemd/rootfs/usr/local/sbin/luo-vm-job);
#              no host root (the job installs what it needs from the payload)
# env: ACCEL=tcg|kvm (default tcg), CPU, QEMU, TSC_KHZ as for run-vm.sh
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd -P)
usage() { sed -n 2,42p "$0" >&2; exit 2; }
log() { echo "run-job${SYSTEMD:+(systemd)}: $*" >&2; }

SYSTEMD= JOB= ENVS=() FILES=() MEM= CPUS=2 TMO= APPEND= ECHO= ROOTFS= INITRAMFS= SSHPORT=
while (( $# )); do
    case $1 in
    --systemd) SYSTEMD=1; shift ;;
    -e) (( $# >= 2 )) && [[ $2 == [A-Za-z_]*=* ]] || usage; ENVS+=("$2"); shift 2 ;;
    -p) [[ -f ${2:-} ]] || usage; FILES+=("$2"); shift 2 ;;
    -m) (( $# >= 2 )) || usage; MEM=$2; shift 2 ;;
    -t) (( $# >= 2 )) || usage; TMO=$2; shift 2 ;;
    -c) (( $# >= 2 )) || usage; CPUS=$2; shift 2 ;;
    -a) (( $# >= 2 )) || usage; APPEND=$2; shift 2 ;;
    -n) [[ ${2:-} =~ ^[0-9]+$ ]] || usage; SSHPORT=$2; shift 2 ;;
    -v) ECHO=1; shift ;;
    -*) usage ;;
    *) [[ -z $JOB ]] || usage; JOB=$1; shift ;;
    esac
done
[[ -n $JOB && -f $JOB ]] || usage
t0=$SECONDS
[[ -z $SSHPORT ]] || APPEND="ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off $APPEND"

# ---- 1. what the VM boots -------------------------------------------------------------------------
"$HERE/deps.sh" all
if [[ -n $SYSTEMD ]]; then
    "$HERE/deps.sh" systemd
    ROOTFS=$("$HERE/systemd/mkrootfs.sh")
    # the jobs install luod from the package, as a host would (docs/systemd.md, "The Debian package")
    version=$(sed -nE 's/^  "version": "([^"]+)",$/\1/p' "$REPO/package.json")
    DEB=$(ls -t "$REPO"/dist/luo-agent_"$version"-*_*.deb 2>/dev/null | head -n 1)
    [[ -n $DEB ]] || { log "no dist/luo-agent_$version-*.deb: run 'npm run package' first"; exit 1; }
    [[ ! $REPO/dist/luo -nt $DEB ]] || { log "$(basename "$DEB") is older than dist/luo: run 'npm run package' again"; exit 1; }
    : "${MEM:=2G}" "${TMO:=600}"
    # no initramfs; the image is opened with snapshot=on, so it never changes; no host root
    VMBOOT=(-d "$ROOTFS" -H)
    APPEND="root=/dev/vda rootfstype=ext4 rw init=/usr/lib/systemd/systemd systemd.show_status=1 systemd.log_color=0 $APPEND"
    FILES=("$DEB" ${FILES[@]+"${FILES[@]}"})
else
    INITRAMFS=$("$HERE/mkinitramfs.sh")
    : "${MEM:=1G}" "${TMO:=300}"
    ENVS=(REPO="$REPO" ${ENVS[@]+"${ENVS[@]}"})
fi

# every VM boots kernel A; B (an update with the same ABI) and C (another LUO ABI) are there to kexec into
declare -A KERNELS=() ABIENV=()
for v in a b c; do
    k=$("$HERE/build-kernel.sh" $v) || { log "could not build kernel ${v^^} (scripts/vm/build-kernel.sh $v)"; exit 1; }
    [[ -f $k && -f $(dirname "$k")/abi.env ]] || { log "kernel ${v^^}: $k or its abi.env is missing"; exit 1; }
    KERNELS[$v]=$k ABIENV[$v]=$(dirname "$k")/abi.env
done
KERNEL=${KERNELS[a]}

# ---- 2. the work dir and its share ----------------------------------------------------------------
name=$(basename "$JOB" .sh)
W=${LUO_VM_WORKDIR:-$REPO/.vm/$name-$$}
rm -rf "$W/share"
mkdir -p "$W/share/boot"
W=$(cd "$W" && pwd -P)
cp "$KERNEL" "$W/share/boot/bzImage"
for v in a b c; do
    rel=$(sed -n 's/^KERNEL_RELEASE=//p' "${ABIENV[$v]}")
    [[ -n $rel ]] || { log "no KERNEL_RELEASE in ${ABIENV[$v]}"; exit 1; }
    cp "${KERNELS[$v]}" "$W/share/boot/vmlinuz-$rel"
    cp "${ABIENV[$v]}" "$W/share/boot/vmlinuz-$rel.abi.env"
    ENVS+=("LUO_KERNEL_${v^^}=/mnt/share/boot/vmlinuz-$rel" "LUO_KERNEL_${v^^}_ENV=/mnt/share/boot/vmlinuz-$rel.abi.env")
done
if [[ -z $SYSTEMD ]]; then
    cp "$INITRAMFS" "$W/share/boot/initramfs"
    VMBOOT=(-i "$W/share/boot/initramfs")
fi
if (( ${#FILES[@]} )); then
    mkdir -p "$W/share/payload"
    cp "${FILES[@]}" "$W/share/payload/"
fi
install -m 755 "$JOB" "$W/share/job.sh"
for kv in ${ENVS[@]+"${ENVS[@]}"}; do
    v=${kv#*=}
    printf "%s='%s'\n" "${kv%%=*}" "${v//\'/\'\\\'\'}"
done > "$W/share/job.env"
LOG=$W/serial.log
log "job $JOB in $W (setup $((SECONDS - t0))s)${ROOTFS:+; rootfs $ROOTFS}"

# ---- 3. the run -----------------------------------------------------------------------------------
# In the background, so that a TERM/INT for us (a test timeout) reaches run-vm.sh, which then
# stops QEMU. TMPDIR: a root disk's snapshot writes go to a temporary file there.
TMPDIR=$W "$HERE/run-vm.sh" -k "$W/share/boot/bzImage" "${VMBOOT[@]}" -s "$W/share" -l "$LOG" \
    -m "$MEM" -c "$CPUS" -t "$TMO" ${APPEND:+-a "$APPEND"} ${SSHPORT:+-n "$SSHPORT"} ${ECHO:+-v} &
vm=$!
trap 'kill -TERM $vm 2>/dev/null; wait $vm; exit 143' TERM INT HUP
rc=0
wait $vm || rc=$?
trap - TERM INT HUP
rm -rf "$W/share/boot" "$W/share/payload"
log "rc=$rc; console log: $LOG"
exit $rc
