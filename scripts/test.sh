#!/bin/bash
# test.sh -- the whole test suite: build the binary, make sure the VM can run, run every test,
# and end with one plain line "N passed, N failed[, N skipped]" taken from bun's own counts.
# usage: npm test [-- bun-test-args…]   e.g. npm test -- tests/unit
# env:   LUO_SKIP_VM=1 skips the VM tests (they then show up as skipped, never as passed);
#        LUO_SKIP_SYSTEMD_VM=1 skips only the systemd VM tests (same).
set -uo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
[[ -x $BUN ]] || { echo "test: $BUN missing: run 'npm ci' first"; exit 1; }

"$BUN" scripts/build-binary.ts || exit 1
if [[ -z ${LUO_SKIP_VM:-} ]]; then
    # get (or find in ~/.cache) everything the VMs boot before the tests start, so that no test
    # spends its time building: the three LUO kernels A, B, C (B and C incrementally from A's
    # object tree), and for the systemd tests a Debian sid root filesystem with systemd
    scripts/vm/deps.sh all || exit 1
    for v in a b c; do scripts/vm/build-kernel.sh $v >/dev/null || exit 1; done
    # Debian's stock kernel: a real zstd image without LUO for the image-ABI tests
    scripts/vm/debian-kernel.sh >/dev/null || exit 1
    if [[ -z ${LUO_SKIP_SYSTEMD_VM:-} ]]; then
        scripts/vm/deps.sh systemd || exit 1
        scripts/vm/systemd/mkrootfs.sh >/dev/null || exit 1
        # the systemd VMs install luod from the Debian package (docs/systemd.md, "The VM test");
        # lintian runs in tests/integration/package.test.ts
        scripts/vm/deps.sh package || exit 1
        "$BUN" scripts/package.ts || exit 1
        # the fleet test's Ansible controller: Debian sid's ansible-core and ansible-lint (docs/fleet.md)
        scripts/vm/ansible/controller.sh >/dev/null || exit 1
    fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# bun prints its summary (" 12 pass", " 0 fail", " 1 skip") on stderr: keep it visible and count it.
"$BUN" test "${@:-tests}" 2> >(tee "$log" >&2)
rc=$?
wait
count() { sed -nE "s/^ *([0-9]+) $1\$/\1/p" "$log" | tail -n 1; }
pass=$(count pass) fail=$(count fail) skip=$(count skip) todo=$(count todo)
line="${pass:-0} passed, ${fail:-0} failed"
(( ${skip:-0} + ${todo:-0} > 0 )) && line+=", $(( ${skip:-0} + ${todo:-0} )) skipped"
# a run that died before its summary must not look green
[[ -z $pass && $rc == 0 ]] && rc=1
echo "$line"
exit $rc
