#!/bin/bash
# mkinitramfs.sh -- the test VM's initramfs: a static busybox, guest/init and guest/hostrun.
#
# usage: mkinitramfs.sh          prints the path of the cached initramfs (uncompressed newc cpio)
# env:   LUO_CACHE (default ~/.cache/luo-agent), BUSYBOX (default: busybox on PATH, must be static)
#
# The image is cached under $LUO_CACHE/initramfs/ by the hash of its inputs (busybox, guest/*,
# this script), so a hit costs a few sha256sums. Jobs are not baked in: the guest reads them
# from the 9p share at boot, so one image serves every job and every boot of a run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
log() { echo "mkinitramfs: $*" >&2; }

BUSYBOX=${BUSYBOX:-$(command -v busybox || true)}
[[ -n $BUSYBOX ]] || { log "busybox not found (scripts/vm/deps.sh installs busybox-static)"; exit 1; }
if [[ $(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true) != *'not a dynamic executable'* ]]; then
    log "$BUSYBOX is dynamically linked (install busybox-static)"; exit 1
fi

inputs=("$BUSYBOX" "$HERE/guest/init" "$HERE/guest/hostrun" "$0")
KEY=$(sha256sum "${inputs[@]}" | awk '{print $1}' | sha256sum | cut -c1-16)
OUT=$CACHE/initramfs/$KEY.cpio
if [[ -f $OUT ]]; then
    echo "$OUT"; exit 0
fi

ST=$(mktemp -d "${TMPDIR:-/tmp}/luo-initramfs.XXXXXX")
trap 'rm -rf "$ST"' EXIT
mkdir -p "$ST"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,mnt}
cp "$BUSYBOX" "$ST/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
    [[ -e $ST/$applet ]] || ln -s /bin/busybox "$ST/$applet"
done
install -m 755 "$HERE/guest/init" "$ST/init"
install -m 755 "$HERE/guest/hostrun" "$ST/bin/hostrun"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$ST/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ST/etc/group"

mkdir -p "$(dirname "$OUT")"
( cd "$ST" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) > "$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
log "built $OUT ($(stat -c %s "$OUT") bytes)"
echo "$OUT"
