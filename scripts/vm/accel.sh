# accel.sh -- sourced by run-vm.sh after it sets CMDLINE: picks the QEMU accelerator and CPU
# model, and adds the clock parameters a TCG guest needs to CMDLINE.
# env: ACCEL=tcg|kvm (default tcg: KVM is unusably slow on nested test hosts), CPU, TSC_KHZ.
ACCEL=${ACCEL:-tcg}
if [[ $ACCEL == tcg ]]; then
    CPU=${CPU:-max}
    # Under TCG the guest's TSC is the host's, but the kernel cannot verify it (vCPUs look
    # unsynchronized, PIT calibration sometimes fails) and, having no ACPI/HPET, would fall
    # back to the jiffies clocksource (4 ms clock resolution). So declare it reliable and
    # pass the host's TSC frequency.
    mhz=$( { dmesg 2>/dev/null || true; } | sed -nE 's/.*tsc: (Refined TSC clocksource calibration|Detected): ([0-9.]+) MHz.*/\2/p' | tail -n 1)
    [[ -n $mhz ]] || mhz=$(sed -n 's/^cpu MHz[^:]*: *//p' /proc/cpuinfo | head -n 1)
    khz=${TSC_KHZ:-$(awk -v m="$mhz" 'BEGIN { if (m > 0) printf "%d", m * 1000 }')}
    CMDLINE+=" tsc=reliable${khz:+ tsc_early_khz=$khz}"
else
    CPU=${CPU:-host}
fi
if [[ -n $APPEND ]]; then CMDLINE+=" $APPEND"; fi   # (an `&&` list here would be this file's status under set -e)
