#!/bin/bash
# deps.sh -- install the Debian packages the VM tests need, only those that are missing.
#
# usage: deps.sh [vm|kernel|all|systemd|package]     (default all)
#   vm      run a VM: qemu, a static busybox, cpio
#   kernel  build the kernel (build-kernel.sh, kernel-source.sh)
#   systemd the systemd VM's root file system (systemd/mkrootfs.sh): debootstrap, mke2fs
#           (not part of "all": only the systemd VM tests need it)
#   package the Debian package (scripts/package.ts): dpkg-deb, lintian (not part of "all")
#
# Non-interactive. Runs apt-get as root, or through `sudo -n` when not root.
# When nothing is missing it does nothing and needs no network.
set -euo pipefail
what=${1:-all}
log() { echo "deps: $*" >&2; }

vm_pkgs=(qemu-system-x86 busybox-static cpio)
kernel_pkgs=(gcc libc6-dev make flex bison bc libelf-dev libssl-dev lz4 xz-utils debian-archive-keyring)
systemd_pkgs=(debootstrap e2fsprogs debian-archive-keyring)
package_pkgs=(dpkg-dev lintian)
case $what in
vm) want=("${vm_pkgs[@]}") ;;
kernel) want=("${kernel_pkgs[@]}") ;;
all) want=("${vm_pkgs[@]}" "${kernel_pkgs[@]}") ;;
systemd) want=("${systemd_pkgs[@]}") ;;
package) want=("${package_pkgs[@]}") ;;
*) sed -n 2,12p "$0" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null; then
    log "not a Debian system: install ${want[*]} (or equivalents) yourself"
    exit 0
fi
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
(( ${#missing[@]} )) || exit 0

if (( EUID == 0 )); then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    log "missing packages: ${missing[*]} (run this script as root)"
    exit 1
fi
log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >&2
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
