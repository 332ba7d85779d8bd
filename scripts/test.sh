#!/bin/bash
# test.sh -- the whole test suite: build the binary, make sure the VM can run, run every test,
# and end with one plain line "N passed, N failed[, N skipped]" taken from bun's own counts.
# usage: npm test [-- bun-test-args…]   e.g. npm test -- tests/unit
# env:   LUO_SKIP_VM=1 skips the VM tests (they then show up as skipped, never as passed).
set -uo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
[[ -x $BUN ]] || { echo "test: $BUN missing: run 'npm ci' first"; exit 1; }

"$BUN" scripts/build-binary.ts || exit 1
if [[ -z ${LUO_SKIP_VM:-} ]]; then
    scripts/vm/deps.sh || exit 1
    # build (or find in ~/.cache) the LUO kernel before the tests start, so no test times out on it
    scripts/vm/build-kernel.sh >/dev/null || exit 1
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
