#!/bin/sh
# vm-job.sh -- the guest side of `bench/run.ts` (scripts/vm/run-job.sh runs it once per boot).
# Settings (run-job.sh -e): BENCH_BIN (the compiled bench/lib/guest.ts), LUO_DIST (luod/luoctl dir),
# BENCH_COUNTS, BENCH_REPS, BENCH_CHAIN, BENCH_BYTES. Results: $LUO_SHARE/bench/boot-N.json.
echo "BENCH: boot $LUO_BOOT stage $LUO_STAGE, $(nproc) vCPU, $(grep MemTotal /proc/meminfo)"
[ -c /dev/liveupdate ] || { echo "BENCH: no /dev/liveupdate"; exit 10; }
# one fd per client connection, per held session and per memfd, on both sides
ulimit -n 65536 || { echo "BENCH: ulimit -n failed"; exit 11; }
mkdir -p "$LUO_SHARE/bench"
hostrun "$BENCH_BIN" boot --bin "$LUO_DIST" --out "$LUO_SHARE/bench" --boot "$LUO_BOOT" --stage "$LUO_STAGE" \
    --counts "$BENCH_COUNTS" --reps "$BENCH_REPS" --chain "$BENCH_CHAIN" --bytes "$BENCH_BYTES" \
    --kernel "$LUO_SHARE/boot/bzImage" --initrd "$LUO_SHARE/boot/initramfs"
rc=$?
cp /mnt/root/tmp/luod-boot"$LUO_BOOT".log "$LUO_SHARE/bench/" 2>/dev/null
exit $rc
