#!/bin/sh
# smoke -- the harness itself, no LUO code of ours: the stage detection, the job env,
# host programs through hostrun (Bun), and the exit code. Boot 1 kexecs with the host's
# kexec-tools (kexec -s = kexec_file_load, so KHO data is passed on) when SMOKE_KEXEC=1
# (a manual harness check; kexec-tools is not in deps.sh).
up() { cut -d' ' -f1 /proc/uptime; }
echo "SMOKE: stage=$LUO_STAGE boot=$LUO_BOOT share=$LUO_SHARE repo=$REPO"
[ -c /dev/liveupdate ] || { echo "SMOKE: no /dev/liveupdate"; exit 10; }
if [ "$LUO_BOOT" = 1 ]; then
    [ "$LUO_STAGE" = 1 ] || { echo "SMOKE: cold boot but LUO_STAGE=$LUO_STAGE"; exit 11; }
    bun="$REPO/node_modules/.bin/bun"
    t0=$(up)
    v=$(hostrun "$bun" --version) || { echo "SMOKE: bun does not run"; exit 12; }
    t1=$(up)
    hostrun "$bun" -e 'console.log(`SMOKE: bun ${Bun.version} eval ok, ${navigator.hardwareConcurrency} cpus`)' || exit 13
    t2=$(up)
    echo "SMOKE: bun $v: first start $(awk "BEGIN{print $t1-$t0}")s, second $(awk "BEGIN{print $t2-$t1}")s"
    if [ "${SMOKE_KEXEC:-0}" = 1 ]; then
        echo "SMOKE: kexec"
        hostrun kexec -l -s --reuse-cmdline "$LUO_SHARE/boot/bzImage" --initrd="$LUO_SHARE/boot/initramfs" || exit 14
        hostrun kexec -e
        echo "SMOKE: kexec -e returned"; exit 15
    fi
else
    [ "$LUO_STAGE" = 2 ] || { echo "SMOKE: boot $LUO_BOOT after kexec but LUO_STAGE=$LUO_STAGE"; exit 16; }
    echo "SMOKE: after kexec: $(dmesg | grep -o 'liveupdate number: [0-9]*')"
fi
echo "SMOKE: OK, exiting with SMOKE_RC=${SMOKE_RC:-0}"
exit "${SMOKE_RC:-0}"
