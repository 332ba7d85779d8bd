#!/bin/bash
# kernel-source.sh -- fetch and unpack Debian's linux-source-7.x into the cache.
#
# usage: kernel-source.sh            prints the path of the unpacked tree on stdout
#        kernel-source.sh --cached-only   the same, but never downloads: exit 1 when not unpacked
# env:   LUO_KERNEL_PKG (default linux-source-7.2), LUO_CACHE (default ~/.cache/luo-agent)
#
# The package lives in Debian's "sid" suite: the private apt configuration of sid-apt.sh.
set -euo pipefail
PKG=${LUO_KERNEL_PKG:-linux-source-7.2}
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
DEST=$CACHE/src/$PKG
log() { echo "kernel-source: $*" >&2; }

if [[ -f $DEST/.unpacked && -f $DEST/tree/Makefile ]]; then
    echo "$DEST/tree"; exit 0
fi
[[ ${1:-} == --cached-only ]] && exit 1

. "$(dirname "$0")/sid-apt.sh"
mkdir -p "$DEST"
sid_apt_update
log "apt-get download $PKG"
( cd "$DEST" && rm -f ./*.deb && apt-get -q "${APT_OPTS[@]}" download "$PKG" >&2 )
deb=$(ls "$DEST"/*.deb | head -n 1)
rm -rf "$DEST/tree" "$DEST/x" && mkdir -p "$DEST/x"
dpkg-deb -x "$deb" "$DEST/x"
tarball=$(ls "$DEST"/x/usr/src/linux-source-*.tar.* | head -n 1)
log "unpacking $(basename "$tarball")"
tar -C "$DEST/x" -xf "$tarball"
top=$(find "$DEST/x" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*' | head -n 1)
mv "$top" "$DEST/tree"
rm -rf "$DEST/x" "$deb"
touch "$DEST/.unpacked"
echo "$DEST/tree"
