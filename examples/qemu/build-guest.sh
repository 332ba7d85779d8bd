#!/bin/sh
# build-guest.sh OUT [--idle] -- assembles counter-guest.S (next to this script) into the 64 KiB flat
# image that QEMU runs as its -bios, checks its size and its reset vector, and writes it to OUT.
# --idle: the guest halts after PATTERN instead of counting (the blackout benchmark's tenant).
# Needs GNU as and ld (binutils). One line on stderr and a non-zero exit on failure.
set -eu
fail() { echo "build-guest: $*" >&2; exit 1; }
[ $# -eq 1 ] || { [ $# -eq 2 ] && [ "$2" = --idle ]; } || fail "usage: build-guest.sh OUT [--idle]"
OUT=$1
DEFS=
[ $# -eq 2 ] && DEFS="--defsym IDLE=1"
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in as ld od; do command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (install binutils)"; done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
as --32 $DEFS -o "$TMP/guest.o" "$HERE/counter-guest.S" 2>"$TMP/err" || fail "as failed: $(head -n 1 "$TMP/err")"
ld -m elf_i386 -Ttext=0 -e start --oformat binary -o "$TMP/guest.bin" "$TMP/guest.o" 2>"$TMP/err" ||
    fail "ld failed: $(head -n 1 "$TMP/err")"
SIZE=$(wc -c <"$TMP/guest.bin" | tr -d ' ')
[ "$SIZE" -eq 65536 ] || fail "the image has $SIZE bytes, not 65536"
VECTOR=$(od -A n -t x1 -j 65520 -N 5 "$TMP/guest.bin" | tr -d ' \n')
[ "$VECTOR" = ea000000f0 ] || fail "the reset vector (offset 0xFFF0) is $VECTOR, not the far jump ea000000f0"
{ cat "$TMP/guest.bin" >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"; } 2>/dev/null || fail "cannot write $OUT"
