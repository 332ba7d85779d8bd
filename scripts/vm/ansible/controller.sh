#!/bin/bash
# controller.sh -- the Ansible controller of the fleet test (tests/vm/fleet.test.ts): Debian sid's
# ansible-core, ansible-lint and OpenSSH client in a debootstrap tree under ~/.cache, run with
# scripts/vm/ansible/run.sh (a chroot in a private mount namespace).
#
# Why not the host's Ansible: bookworm's ansible-core 2.14 supports managed hosts with Python up to
# 3.11, and the fleet VMs run Debian sid (3.14 on 2026-12-04). sid's own ansible-core supports
# them, and sid's ansible-lint lints with the same Ansible that runs the role (docs/fleet.md).
#
# usage: controller.sh              prints the tree's path on stdout (builds it the first time:
#                                   debootstrap from the network, ~3-5 min; offline afterwards)
#        controller.sh --cached-only   prints it only if it is there, else exits 1
# env:   LUO_CACHE (default ~/.cache/luo-agent); LUO_CONTROLLER_REFRESH=1 rebuilds against today's sid
# Needs root (debootstrap; `sudo -n` when not root) and debootstrap (scripts/vm/deps.sh systemd).
# The mirror is the one this machine's apt uses, read from /etc/apt/sources.list*.
set -euo pipefail
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}
log() { echo "controller: $*" >&2; }

SUITE=sid
PACKAGES=ansible-core,ansible-lint,openssh-client,python3,ca-certificates
RECIPE="debootstrap --variant=minbase $SUITE $PACKAGES v1"
KEY=$(echo "$RECIPE" | sha256sum | cut -c1-12)
DIR=$CACHE/ansible/controller-$KEY
if [[ -f $DIR/.done && -z ${LUO_CONTROLLER_REFRESH:-} ]]; then echo "$DIR/tree"; exit 0; fi
[[ ${1:-} != --cached-only ]] || exit 1

if (( EUID == 0 )); then SUDO=()
elif sudo -n true 2>/dev/null; then SUDO=(sudo -n)
else log "needs root or passwordless sudo (debootstrap) to build the controller the first time"; exit 1; fi
command -v debootstrap >/dev/null || { log "debootstrap is missing (scripts/vm/deps.sh systemd)"; exit 1; }
mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+\/debian)\/?[[:space:]]*$/\1/p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+\/debian)\/?[[:space:]].*/\2/p' |
    head -n 1)
[[ -n $mirror ]] || { log "no Debian mirror found in /etc/apt/sources.list*"; exit 1; }
mkdir -p "$CACHE/ansible"
NEW=$DIR.new.$$
"${SUDO[@]}" rm -rf "$NEW"
mkdir -p "$NEW"
log "debootstrap $SUITE (minbase + $PACKAGES) into $NEW; the first time takes a few minutes"
t0=$SECONDS
ok=
for attempt in 1 2 3; do
    if "${SUDO[@]}" debootstrap --variant=minbase --include="$PACKAGES" --components=main \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$NEW/tree" "$mirror" > "$NEW/debootstrap.log" 2>&1; then ok=1; break; fi
    "${SUDO[@]}" rm -rf "$NEW/tree"
    (( attempt < 3 )) || break
    log "debootstrap attempt $attempt failed (the mirror may be briefly unreachable); retrying in $((attempt * 20)) s"
    sleep $((attempt * 20))
done
[[ -n $ok ]] || { tail -n 30 "$NEW/debootstrap.log" >&2; log "debootstrap failed 3 times; log: $NEW/debootstrap.log"; exit 1; }
"${SUDO[@]}" chroot "$NEW/tree" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort > "$NEW/packages.txt"
"${SUDO[@]}" rm -rf "$NEW/tree/var/cache/apt/archives/"*.deb || true
log "done in $((SECONDS - t0))s: $(grep -E '^(ansible-core|ansible-lint|python3)=' "$NEW/packages.txt" | tr '\n' ' ')"
"${SUDO[@]}" rm -rf "$DIR"
mv "$NEW" "$DIR"
touch "$DIR/.done"
echo "$DIR/tree"
