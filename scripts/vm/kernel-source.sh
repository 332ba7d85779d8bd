#!/bin/bash
# kernel-source.sh -- fetch and unpack Debian's linux-source-7.x into the cache.
#
# usage: kernel-source.sh            prints the path of the unpacked tree on stdout
# env:   LUO_KERNEL_PKG (default linux-source-7.2), LUO_CACHE (default ~/.cache/luo-agent)
#
# The package lives in Debian's "sid" suite. We reuse the mirror URI this machine's apt already
# uses (read from /etc/apt/sources.list*), in a private apt configuration under the cache, so the
# host's apt setup is never changed and no registry host name is written in this repository.
set -euo pipefail
PKG=${LUO_KERNEL_PKG:-linux-source-7.2}
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
DEST=$CACHE/src/$PKG
log() { echo "kernel-source: $*" >&2; }

if [[ -f $DEST/.unpacked && -f $DEST/tree/Makefile ]]; then
    echo "$DEST/tree"; exit 0
fi

# the first "debian" mirror URI of the machine's apt sources (deb822 or one-line format)
mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+\/debian)\/?[[:space:]]*$/\1/p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+\/debian)\/?[[:space:]].*/\2/p' |
    head -n 1)
[[ -n $mirror ]] || { log "no Debian mirror found in /etc/apt/sources.list*"; exit 1; }

APT=$CACHE/apt
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/etc/preferences.d" "$DEST"
cat > "$APT/etc/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main
SRC
opts=(-o Dir::Etc::SourceList="$APT/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::Etc::PreferencesParts="$APT/etc/preferences.d" -o Dir::State::Lists="$APT/lists"
      -o Dir::Cache="$APT" -o Dir::Cache::archives="$APT/archives" -o APT::Get::List-Cleanup=0
      -o Acquire::Languages=none -o APT::Architectures=amd64 -o APT::Sandbox::User=root)
log "apt-get update (private sid list, mirror from the host's apt sources)"
apt-get -q "${opts[@]}" update >&2
log "apt-get download $PKG"
( cd "$DEST" && rm -f ./*.deb && apt-get -q "${opts[@]}" download "$PKG" >&2 )
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
