#!/bin/bash
# build-kernel.sh -- build the x86_64 LUO + KHO test kernels, cached under ~/.cache.
#
# usage: build-kernel.sh [--cached-only] [a|b|c]   (default a) prints the path of that variant's cached bzImage
#   --cached-only: print it only if it is cached, else exit 1; never downloads or builds (tests use it)
#   a  the base: tinyconfig + luo.config (every VM boots it)
#   b  "the update": CONFIG_LOCALVERSION="-luo-b" and a source patch (init/main.c prints
#      "luo-agent test kernel B" at boot), so the image differs in code, not only in name; same ABI
#   c  "incompatible": CONFIG_LOCALVERSION="-luo-c" and LUO_ABI_COMPATIBLE "luo-vN" -> "luo-v(N+1)"
#      in include/linux/kho/abi/luo.h (N read from the source): a live update A -> C panics C
# env:   LUO_CACHE (default ~/.cache/luo-agent), JOBS (default: nproc), FORCE=1 to rebuild
#
# Next to every bzImage: abi.env, sourceable KEY=VALUE lines read from the (patched) source being
# built and from the build itself, so tests derive what they expect from it, never from constants:
#   LUO_ABI=luo-v5  MEMFD_ABI=memfd-v2  KHO_ABI=kho-v4     (LUO_ABI_COMPATIBLE, MEMFD_LUO_FH_COMPATIBLE,
#                                                          KHO_FDT_COMPATIBLE in include/linux/kho/abi/)
#   KERNEL_RELEASE=7.2.13-luo-b                            (`make kernelrelease`: `uname -r`)
#   KERNEL_VERSION='#2 SMP PREEMPT Thu Dec  3 ...' (UTS_VERSION: `uname -v`, single-quoted)
#
# Cache: kernel/<ver>-<key>/{bzImage,abi.env}, key = (kernel version, luo.config's CONFIG_ lines,
# gcc version, this recipe, the variant and its patch): a hit costs nothing.
# Incremental builds: every variant is built in ONE work tree and ONE object tree per base key,
# kept in kernel/build-<ver>-<basekey>/ (constant absolute paths, so kbuild's .cmd files match):
#   src/  a `cp -al` of the pristine unpacked source (hard links: cheap); a file is replaced by a
#         private copy before it is patched (the pristine tree is never written), and by a fresh
#         private copy of the pristine file afterwards (new mtime: make rebuilds what the patch touched)
#   obj/  make O=obj; a variant = its LOCALVERSION + patch, `make bzImage` (kbuild rebuilds only
#         what changed), the bzImage copied out, the patch undone.
# flock on build.lock: two concurrent calls never share the tree (the second one waits, then
# usually finds its image in the cache).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
CACHED_ONLY=
if [[ ${1:-} == --cached-only ]]; then CACHED_ONLY=1; shift; fi
VARIANT=${1:-a}
case $VARIANT in a|b|c) ;; *) echo "usage: build-kernel.sh [a|b|c]" >&2; exit 2 ;; esac
JOBS=${JOBS:-$(nproc)}
log() { echo "build-kernel($VARIANT): $*" >&2; }

# ---- the variants: LOCALVERSION and a patch of the work tree (cwd = the work tree) ----------------
# Each patch names the files it changes (patch_files_X) and must fail loudly if the source moved
# so that it no longer applies.
localversion_a=""
patch_files_a=()
patch_a() { :; }

localversion_b="-luo-b"
patch_files_b=(init/main.c)
patch_b() {
    # one more line right after the banner ("Linux version ...") is printed
    grep -q 'pr_notice("%s", linux_banner);' init/main.c || { log "init/main.c: no linux_banner pr_notice"; return 1; }
    sed -i 's|^\(\s*\)pr_notice("%s", linux_banner);|&\n\1pr_notice("luo-agent test kernel B\\n");|' init/main.c
    grep -q 'pr_notice("luo-agent test kernel B\\n");' init/main.c || { log "init/main.c: patch B did not apply"; return 1; }
}

localversion_c="-luo-c"
patch_files_c=(include/linux/kho/abi/luo.h)
patch_c() {
    local n
    n=$(sed -nE 's/^#define[[:space:]]+LUO_ABI_COMPATIBLE[[:space:]]+"luo-v([0-9]+)".*/\1/p' include/linux/kho/abi/luo.h)
    [[ $n =~ ^[0-9]+$ ]] || { log "include/linux/kho/abi/luo.h: no LUO_ABI_COMPATIBLE \"luo-vN\""; return 1; }
    sed -i -E "s/^(#define[[:space:]]+LUO_ABI_COMPATIBLE[[:space:]]+)\"luo-v$n\"/\1\"luo-v$((n + 1))\"/" include/linux/kho/abi/luo.h
    grep -qE "^#define[[:space:]]+LUO_ABI_COMPATIBLE[[:space:]]+\"luo-v$((n + 1))\"" include/linux/kho/abi/luo.h ||
        { log "include/linux/kho/abi/luo.h: patch C did not apply"; return 1; }
}

# ---- keys -----------------------------------------------------------------------------------------
SRC=$("$HERE/kernel-source.sh" ${CACHED_ONLY:+--cached-only}) || exit 1
RECIPE="tinyconfig+luo.config+olddefconfig+bzImage v2"
KVER=$(make -s -C "$SRC" kernelversion 2>/dev/null)
BASEKEY=$( { echo "$RECIPE"; echo "$KVER"; grep -E '^CONFIG_' "$HERE/luo.config"; gcc --version | head -n 1; } |
    sha256sum | cut -c1-16)
variant_key() { # the base key, plus (for b, c) the variant's LOCALVERSION and patch recipe
    local v=$1 lv="localversion_$1"
    if [[ $v == a ]]; then echo "$BASEKEY"; return; fi
    { echo "$BASEKEY"; echo "$v ${!lv}"; declare -f "patch_$v"; } | sha256sum | cut -c1-16
}
out_of() { echo "$CACHE/kernel/$KVER-$(variant_key "$1")"; }
OUT=$(out_of "$VARIANT")
if [[ -z ${FORCE:-} && -f $OUT/bzImage && -f $OUT/abi.env ]]; then
    log "cached: $OUT/bzImage"
    echo "$OUT/bzImage"; exit 0
fi
[[ -z $CACHED_ONLY ]] || exit 1

B=$CACHE/kernel/build-$KVER-$BASEKEY
mkdir -p "$B"
exec 9>"$B/build.lock"
flock 9
# someone may have built it while we waited
if [[ -z ${FORCE:-} && -f $OUT/bzImage && -f $OUT/abi.env ]]; then
    log "cached: $OUT/bzImage"
    echo "$OUT/bzImage"; exit 0
fi
t0=$(date +%s)

# ---- the work tree: hard links to the pristine source ----------------------------------------------
# Re-created when the pristine tree was unpacked again (its Makefile is no longer the same inode).
if [[ ! -f $B/src/.ready || $(stat -c %i "$SRC/Makefile") != $(stat -c %i "$B/src/Makefile") ]]; then
    log "work tree: cp -al $SRC $B/src"
    rm -rf "$B/src" "$B/obj"
    cp -al "$SRC" "$B/src"
    touch "$B/src/.ready"
fi
W=$B/src O=$B/obj
M=(make -s -C "$W" O="$O" ARCH=x86_64)

# ---- the base configuration (once per object tree) ---------------------------------------------------
if [[ ! -f $O/.config.base ]]; then
    log "configuring $KVER (key $BASEKEY) in $O"
    mkdir -p "$O"
    "${M[@]}" tinyconfig >/dev/null
    "$W/scripts/kconfig/merge_config.sh" -m -O "$O" "$O/.config" "$HERE/luo.config" >"$B/merge_config.log" 2>&1
    "${M[@]}" olddefconfig >/dev/null
    # Every line of the fragment must survive olddefconfig, or the VM tests would test another kernel.
    bad=0
    while IFS= read -r line; do
        sym=${line%%=*} val=${line#*=}
        if [[ $val == n ]]; then
            grep -qx "$sym=y" "$O/.config" && { log "NOT DISABLED: $sym"; bad=1; }
        else
            grep -qx "$sym=$val" "$O/.config" || { log "MISSING: $line"; bad=1; }
        fi
    done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$HERE/luo.config")
    (( bad == 0 )) || { log "config check failed"; rm -f "$O/.config"; exit 1; }
    cp "$O/.config" "$O/.config.base"
fi

# ---- the variant: patch, LOCALVERSION, build, copy out, undo ----------------------------------------
files="patch_files_$VARIANT[@]" lv="localversion_$VARIANT"
restore() { # a fresh private copy of each patched file: the pristine content with a new mtime
    local f
    for f in ${!files+"${!files}"}; do cp --remove-destination "$SRC/$f" "$W/$f"; done
}
trap restore EXIT
# a run killed between its patch and its undo left a patched file: make every variant's file pristine
for f in "${patch_files_b[@]}" "${patch_files_c[@]}"; do
    cmp -s "$SRC/$f" "$W/$f" || cp --remove-destination "$SRC/$f" "$W/$f"
done
restore
( cd "$W" && "patch_$VARIANT" )
cp "$O/.config.base" "$O/.config"
"$W/scripts/config" --file "$O/.config" --set-str LOCALVERSION "${!lv}"
"${M[@]}" olddefconfig >/dev/null
grep -qx "CONFIG_LOCALVERSION=\"${!lv}\"" "$O/.config" || { log "CONFIG_LOCALVERSION did not stick"; exit 1; }
if [[ -f $O/vmlinux ]]; then log "building $KVER${!lv} incrementally in $O (-j$JOBS)"
else log "building $KVER (key $BASEKEY, -j$JOBS) from scratch in $O; about 7 minutes on 2 idle cores"; fi
"${M[@]}" -j"$JOBS" bzImage >&2

abi() { # abi HEADER MACRO: the string a #define gives, from the patched work tree
    sed -nE "s/^#define[[:space:]]+$2[[:space:]]+\"([^\"]+)\".*/\1/p" "$W/include/linux/kho/abi/$1" | head -n 1
}
luo=$(abi luo.h LUO_ABI_COMPATIBLE) memfd=$(abi memfd.h MEMFD_LUO_FH_COMPATIBLE) kho=$(abi kexec_handover.h KHO_FDT_COMPATIBLE)
release=$("${M[@]}" kernelrelease)
version=$(sed -nE 's/^#define UTS_VERSION "(.*)"$/\1/p' "$O/include/generated/utsversion.h" "$O/include/generated/compile.h" 2>/dev/null | head -n 1)
[[ -n $luo && -n $memfd && -n $kho && -n $release && -n $version ]] ||
    { log "could not read abi.env values (luo=$luo memfd=$memfd kho=$kho release=$release version=$version)"; exit 1; }
[[ $release == "$KVER${!lv}" ]] || { log "kernelrelease $release, expected $KVER${!lv}"; exit 1; }
mkdir -p "$OUT"
cat > "$OUT/abi.env.tmp" <<ENV
LUO_ABI=$luo
MEMFD_ABI=$memfd
KHO_ABI=$kho
KERNEL_RELEASE=$release
KERNEL_VERSION='${version//\'/}'
ENV
cp "$O/arch/x86/boot/bzImage" "$OUT/bzImage.tmp"
mv "$OUT/bzImage.tmp" "$OUT/bzImage"
mv "$OUT/abi.env.tmp" "$OUT/abi.env"
log "built $OUT/bzImage ($(stat -c %s "$OUT/bzImage") bytes, $release, $luo $memfd $kho) in $(( $(date +%s) - t0 ))s"
echo "$OUT/bzImage"
