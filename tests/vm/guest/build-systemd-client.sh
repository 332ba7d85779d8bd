#!/bin/bash
# build-systemd-client.sh -- the systemd VM tests' client: systemd-client.ts (with src/client)
# compiled with `bun build --compile` into a binary of its own (~100 MB, like dist/luo), cached by
# content as $LUO_CACHE/test-client/<key>/luo-test-client (~2 s to build). Prints its path.
# tests/vm/systemd-vm.ts hands it to `scripts/vm/run-job.sh --systemd -p`, with the unit file
# luo-test-client@.service; the job installs both (tests/vm/jobs/systemd-lib.sh).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd -P)
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
KEY=$( { cat "$HERE/systemd-client.ts" "$HERE/pattern.ts"; find "$REPO/src" -name '*.ts' -print0 | sort -z | xargs -0 cat;
         "$REPO/node_modules/.bin/bun" --version; } | sha256sum | cut -c1-16)
CLIENT=$CACHE/test-client/$KEY/luo-test-client
if [[ ! -x $CLIENT ]]; then
    mkdir -p "$(dirname "$CLIENT")"
    ( cd "$REPO" && node_modules/.bin/bun build --compile --minify --no-compile-autoload-dotenv \
        --no-compile-autoload-bunfig "$HERE/systemd-client.ts" src/kernel/epoll-worker.ts --outfile "$CLIENT.tmp" >&2 )
    mv "$CLIENT.tmp" "$CLIENT"
    # builds of older sources are of no use any more
    find "$CACHE/test-client" -mindepth 1 -maxdepth 1 ! -name "$KEY" -exec rm -rf {} +
fi
echo "$CLIENT"
