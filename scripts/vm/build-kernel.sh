#!/bin/bash
# build-kernel.sh -- build an x86_64 bzImage with LUO + KHO, cached under ~/.cache.
#
# usage: build-kernel.sh [FRAGMENT...]   prints the path of the cached bzImage on stdout
#        build-kernel.sh --cached-only a   prints the path if kernel A is cached, else exits 1; never builds
#   FRAGMENT: more Kconfig fragments merged after luo.config (e.g. scripts/vm/luo-systemd.config,
#   for the systemd VM tests); they must not contradict luo.config or each other.
# env:   LUO_CACHE (default ~/.cache/luo-agent), JOBS (default: nproc), FORCE=1 to rebuild
#
# The cache key is (kernel version, the CONFIG_ lines of the fragments, gcc version, this recipe): a hit
# costs nothing. Without FRAGMENT arguments the key is the one of luo.config alone, as it always was.
# The build is out of tree (make O=), so the unpacked source stays pristine and shared.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
CACHED_ONLY=
if [[ ${1:-} == --cached-only ]]; then
    [[ ${2:-a} == a ]] || exit 1 # only variant A (luo.config) exists in this recipe
    CACHED_ONLY=1
    set --
fi
FRAGS=("$HERE/luo.config")
for f in "$@"; do
    [[ -f $f ]] || { echo "build-kernel: no such fragment: $f" >&2; exit 2; }
    FRAGS+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
done
JOBS=${JOBS:-$(nproc)}
log() { echo "build-kernel: $*" >&2; }

SRC=$("$HERE/kernel-source.sh" ${CACHED_ONLY:+--cached-only}) || exit 1
RECIPE="tinyconfig+luo.config+olddefconfig+bzImage v1"
for f in "${FRAGS[@]:1}"; do RECIPE+=" +$(basename "$f")"; done
KVER=$(make -s -C "$SRC" kernelversion 2>/dev/null)
KEY=$( { echo "$RECIPE"; echo "$KVER"; cat "${FRAGS[@]}" | grep -E '^CONFIG_'; gcc --version | head -n 1; } | sha256sum | cut -c1-16)
OUT=$CACHE/kernel/$KVER-$KEY
if [[ -z ${FORCE:-} && -f $OUT/bzImage ]]; then
    log "cached: $OUT/bzImage"
    echo "$OUT/bzImage"; exit 0
fi
[[ -z $CACHED_ONLY ]] || exit 1

mkdir -p "$OUT/obj"
log "building $KVER (key $KEY, -j$JOBS) in $OUT; this takes about 5 minutes on 2 cores"
t0=$(date +%s)
M=(make -s -C "$SRC" O="$OUT/obj" ARCH=x86_64)
"${M[@]}" tinyconfig >/dev/null
"$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT/obj" "$OUT/obj/.config" "${FRAGS[@]}" >"$OUT/merge_config.log" 2>&1
"${M[@]}" olddefconfig >/dev/null

# Every line of the fragment must survive olddefconfig, or the VM tests would test another kernel.
bad=0
while IFS= read -r line; do
    sym=${line%%=*} val=${line#*=}
    if [[ $val == n ]]; then
        grep -qx "$sym=y" "$OUT/obj/.config" && { log "NOT DISABLED: $sym"; bad=1; }
    else
        grep -qx "$sym=$val" "$OUT/obj/.config" || { log "MISSING: $line"; bad=1; }
    fi
done < <(cat "${FRAGS[@]}" | grep -E '^CONFIG_[A-Z0-9_]+=')
(( bad == 0 )) || { log "config check failed"; exit 1; }

"${M[@]}" -j"$JOBS" bzImage >&2
cp "$OUT/obj/arch/x86/boot/bzImage" "$OUT/bzImage.tmp"
mv "$OUT/bzImage.tmp" "$OUT/bzImage"
# the object tree is only needed for incremental rebuilds; the cache keeps just the image
rm -rf "$OUT/obj"
log "built $OUT/bzImage ($(stat -c %s "$OUT/bzImage") bytes) in $(( $(date +%s) - t0 ))s"
echo "$OUT/bzImage"
