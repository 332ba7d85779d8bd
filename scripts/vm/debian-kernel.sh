#!/bin/bash
# debian-kernel.sh -- Debian sid's stock amd64 kernel image in the cache, for the image-ABI tests
# (a zstd bzImage built without CONFIG_LIVEUPDATE: tests/unit/daemon-image-real.test.ts).
#
# usage: debian-kernel.sh [--cached-only]   prints the path of the cached vmlinuz on stdout
#   --cached-only: never download; exit 1 when nothing is cached.
# env:   LUO_CACHE (default ~/.cache/luo-agent)
#
# linux-image-amd64 is a metapackage: the image is in the package it Depends on
# (linux-binary-<release>-amd64 in 7.2; linux-image-<release>-amd64 before). Private sid apt
# configuration: sid-apt.sh. The cache keeps only the vmlinuz and its release.
set -euo pipefail
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
DEST=$CACHE/debian-kernel
log() { echo "debian-kernel: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

if [[ -f $DEST/vmlinuz && -f $DEST/release ]]; then
    echo "$DEST/vmlinuz"; exit 0
fi
[[ ${1:-} == --cached-only ]] && exit 1

. "$(dirname "$0")/sid-apt.sh"
try() { # try DESCRIPTION CMD...: three attempts, 5 s apart
    local what=$1; shift
    for i in 1 2 3; do
        "$@" && return 0
        log "$what failed (attempt $i of 3)"
        (( i < 3 )) && sleep 5
    done
    return 1
}
try "apt-get update" sid_apt_update || fail "apt-get update of the private sid list"
# follow the Depends from the metapackage to the package with the image (two hops in 7.2:
# linux-image-amd64 → linux-image-<release>-amd64 → linux-binary-<release>-amd64)
deps_of() {
    apt-cache "${APT_OPTS[@]}" depends "$1" 2>/dev/null |
        sed -nE 's/^[[:space:]]*Depends:[[:space:]]*(linux-(binary|image)-[^[:space:]<>|]+-amd64)[[:space:]]*$/\1/p' || true
}
dep=linux-image-amd64
for hop in 1 2 3; do
    next=$(deps_of "$dep")
    pick=$(grep -m1 '^linux-binary-' <<<"$next" || grep -m1 '^linux-image-' <<<"$next" || true)
    [[ -n $pick ]] || break
    dep=$pick
    [[ $dep == linux-binary-* ]] && break
done
[[ $dep != linux-image-amd64 ]] || fail "linux-image-amd64 in sid depends on no linux-binary-*-amd64 or linux-image-*-amd64 package"
work=$DEST.tmp
rm -rf "$work" && mkdir -p "$work/x"
log "apt-get download $dep"
try "apt-get download $dep" bash -c 'cd "$1" && shift && apt-get -q "$@" download "'"$dep"'" >&2' _ "$work" "${APT_OPTS[@]}" ||
    fail "apt-get download $dep"
dpkg-deb -x "$work"/*.deb "$work/x" || fail "dpkg-deb -x $(basename "$work"/*.deb)"
img=$(find "$work/x" -path '*/usr/lib/modules/*/vmlinuz' -type f -o -path '*/boot/vmlinuz-*' -type f 2>/dev/null | head -n 1 || true)
[[ -n $img ]] || fail "no vmlinuz in $dep"
case $img in
    */usr/lib/modules/*/vmlinuz) release=$(basename "$(dirname "$img")") ;;
    *) release=$(basename "$img"); release=${release#vmlinuz-} ;;
esac
mkdir -p "$DEST"
mv "$img" "$DEST/vmlinuz.tmp"
echo "$release" > "$DEST/release"
mv "$DEST/vmlinuz.tmp" "$DEST/vmlinuz"
rm -rf "$work"
log "cached $DEST/vmlinuz ($release, $(stat -c %s "$DEST/vmlinuz") bytes)"
echo "$DEST/vmlinuz"
