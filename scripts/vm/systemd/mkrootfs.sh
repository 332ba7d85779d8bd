#!/bin/bash
# mkrootfs.sh -- the root file system of the systemd VM tests: Debian sid (systemd 262) as an ext4
# image, built with debootstrap from Debian's own packages and cached under ~/.cache.
#
# usage: mkrootfs.sh            prints the path of the cached image on stdout
# env:   LUO_CACHE (default ~/.cache/luo-agent)
#        LUO_ROOTFS_REFRESH=1   re-run debootstrap against today's sid (the image key changes only
#                               if a package version or a file of ours changed)
#
# Two cached layers:
#   $LUO_CACHE/rootfs/base-<recipe>/   debootstrap's tree + packages.txt (every package=version);
#                                      made once (network, ~3-6 min), reused offline afterwards
#   $LUO_CACHE/rootfs/<image>.img      that tree + scripts/vm/systemd/rootfs/ + the settings below,
#                                      keyed by (packages.txt, our files, this script); ~20 s to make
# The VM opens the image with snapshot=on: a run never changes it.
#
# Needs root (debootstrap, device nodes; `sudo -n` is used when not root), debootstrap and
# mke2fs (scripts/vm/deps.sh systemd installs them). The Debian mirror is the one this machine's
# apt already uses, read from /etc/apt/sources.list*; no host name is written here.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
log() { echo "mkrootfs: $*" >&2; }

SUITE=sid
# systemd (PID 1, logind, journald), D-Bus for logind (`systemctl kexec` goes through it), the
# libraries systemd 262 dlopen()s for the sandboxing luod.service uses (seccomp, BPF, ACLs), procps.
# qemu-system-x86: sid's own QEMU (11.x) for luo-qemu@.service (tests/vm/systemd-qemu.test.ts), a
# second, newer QEMU than the plain VM's (the host's 7.2); the VM has no host root to borrow one
# from. debootstrap installs Depends only (no GUI, no OVMF, no qemu-utils): 45 more packages, the
# tree 158 → 291 MB, the image's used blocks 224 → 329 MB (2026-12-04; the 2 GiB file system keeps room).
# openssh-server, python3 and python3-apt: the fleet test's hosts, managed by Ansible over ssh
# (tests/vm/fleet.test.ts); sshd is not started at boot unless a job enables it.
PACKAGES=systemd,systemd-sysv,dbus,libseccomp2,libbpf1,libacl1,procps,qemu-system-x86,openssh-server,python3,python3-apt
RECIPE="debootstrap --variant=minbase $SUITE $PACKAGES v1"
RKEY=$(echo "$RECIPE" | sha256sum | cut -c1-12)
BASE=$CACHE/rootfs/base-$RKEY
mkdir -p "$CACHE/rootfs"

if (( EUID == 0 )); then SUDO=(); else SUDO=(sudo -n); fi

# ---- 1. the base tree (debootstrap) ------------------------------------------------------------
if [[ ! -f $BASE/.done || -n ${LUO_ROOTFS_REFRESH:-} ]]; then
    command -v debootstrap >/dev/null || { log "debootstrap is missing (scripts/vm/deps.sh systemd)"; exit 1; }
    mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
        sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+\/debian)\/?[[:space:]]*$/\1/p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+\/debian)\/?[[:space:]].*/\2/p' |
        head -n 1)
    [[ -n $mirror ]] || { log "no Debian mirror found in /etc/apt/sources.list*"; exit 1; }
    NEW=$BASE.new.$$
    "${SUDO[@]}" rm -rf "$NEW"
    mkdir -p "$NEW"
    log "debootstrap $SUITE (minbase + $PACKAGES) into $NEW; the first time takes a few minutes"
    t0=$SECONDS
    "${SUDO[@]}" debootstrap --variant=minbase --include="$PACKAGES" --components=main \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$NEW/tree" "$mirror" > "$NEW/debootstrap.log" 2>&1 || {
        tail -n 30 "$NEW/debootstrap.log" >&2; log "debootstrap failed; log: $NEW/debootstrap.log"; exit 1; }
    "${SUDO[@]}" chroot "$NEW/tree" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort > "$NEW/packages.txt"
    # the downloaded .debs are not needed in the image
    "${SUDO[@]}" rm -rf "$NEW/tree/var/cache/apt/archives/"*.deb "$NEW/tree/var/lib/apt/lists/"*_Packages* || true
    log "debootstrap done in $((SECONDS - t0))s: $(grep -E '^systemd=' "$NEW/packages.txt")"
    "${SUDO[@]}" rm -rf "$BASE.old"
    [[ -d $BASE ]] && "${SUDO[@]}" mv "$BASE" "$BASE.old"
    mv "$NEW" "$BASE"
    "${SUDO[@]}" rm -rf "$BASE.old"
    touch "$BASE/.done"
fi

# ---- 2. the image: base tree + our files ---------------------------------------------------------
SDVER=$(sed -nE 's/^systemd=(.*)$/\1/p' "$BASE/packages.txt")
IKEY=$( { cat "$BASE/packages.txt" "$0"; (cd "$HERE/rootfs" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); } |
    sha256sum | cut -c1-16)
IMG=$CACHE/rootfs/sid-systemd-$SDVER-$IKEY.img
if [[ -f $IMG ]]; then
    echo "$IMG"; exit 0
fi

ST=$(mktemp -d "$CACHE/rootfs/.stage.XXXXXX")
trap '"${SUDO[@]}" rm -rf "$ST"' EXIT
t0=$SECONDS
"${SUDO[@]}" cp -a "$BASE/tree" "$ST/root"
R=$ST/root
"${SUDO[@]}" cp -a --no-preserve=ownership "$HERE/rootfs/." "$R/"
"${SUDO[@]}" chmod 755 "$R/usr/local/sbin/luo-vm-job"
"${SUDO[@]}" sh -c "
    set -e
    echo luo-vm > '$R/etc/hostname'
    # a fixed machine id: no first-boot setup (the image is never booted twice from scratch)
    echo 4c554f2d766d2d746573742d72756e31 > '$R/etc/machine-id'
    mkdir -p '$R/var/log/journal' '$R/mnt/share'
    mkdir -p '$R/etc/systemd/system/multi-user.target.wants'
    ln -sf /etc/systemd/system/luo-vm-job.service '$R/etc/systemd/system/multi-user.target.wants/luo-vm-job.service'
    # no terminals to log in on, no periodic maintenance: nothing should run but the test
    for u in getty@.service serial-getty@.service console-getty.service getty.target \
             apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
             fstrim.timer systemd-tmpfiles-clean.timer; do
        ln -sf /dev/null '$R/etc/systemd/system/'\$u
    done
    # sshd only where a job asks for it (the fleet test: systemctl enable --now ssh.service)
    rm -f '$R/etc/systemd/system/multi-user.target.wants/ssh.service' '$R/etc/systemd/system/sockets.target.wants/ssh.socket'
"
# a file system of 2 GiB with room for the binaries the tests copy in (~250 MB)
rm -f "$IMG.tmp"
"${SUDO[@]}" mke2fs -q -t ext4 -L luo-root -E root_owner=0:0 -d "$R" "$IMG.tmp" 2G >&2
"${SUDO[@]}" chown "$(id -u):$(id -g)" "$IMG.tmp"
mv "$IMG.tmp" "$IMG"
log "built $IMG ($(du -m --apparent-size "$IMG" | cut -f1) MB apparent, $(du -m "$IMG" | cut -f1) MB used) in $((SECONDS - t0))s"
# older images of this recipe are of no use any more
find "$CACHE/rootfs" -maxdepth 1 -name 'sid-systemd-*.img' ! -path "$IMG" -mtime +7 -delete 2>/dev/null || true
echo "$IMG"
