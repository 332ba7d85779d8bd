#!/bin/bash
# promtool.sh -- print the path of a promtool (Prometheus's checker), cached under
# ${LUO_CACHE:-~/.cache/luo-agent}/tools/, for the metrics tests (docs/daemon.md, "Metrics").
#
# usage: promtool.sh          prints e.g. ~/.cache/luo-agent/tools/prometheus_2.42.0+ds-5/promtool
#
# Debian's `prometheus` package brings promtool. It is downloaded (`apt-get download`, as the
# current user, with retries), never installed: installing it would start a Prometheus server.
# Only promtool is taken out of the .deb. A cached .deb or promtool is reused (no network then).
# When apt knows no candidate for prometheus, `apt-get update` runs first (as root, or through
# `sudo -n`). On failure: one line on stderr, exit 1.
set -euo pipefail
CACHE=${LUO_CACHE:-$HOME/.cache/luo-agent}/tools
fail() { echo "promtool.sh: $*" >&2; exit 1; }

# a promtool taken out earlier (the newest, if there are several)
cached_promtool() {
    local p
    p=$(ls -1d "$CACHE"/prometheus_*/promtool 2>/dev/null | sort -V | tail -n 1) || true
    [[ -n $p && -x $p ]] && "$p" --version >/dev/null 2>&1 && echo "$p"
}

if p=$(cached_promtool); then echo "$p"; exit 0; fi
command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null ||
    fail "promtool is not cached and this is not a Debian system (no apt-get/dpkg-deb): install Prometheus's promtool and put it in $CACHE/prometheus_VERSION/promtool"
mkdir -p "$CACHE" || fail "cannot create $CACHE"
# one download at a time: test files run this concurrently
exec 9>"$CACHE/.promtool.lock"
flock 9 || fail "cannot lock $CACHE/.promtool.lock"
if p=$(cached_promtool); then echo "$p"; exit 0; fi

deb=$(ls -1 "$CACHE"/prometheus_*.deb 2>/dev/null | sort -V | tail -n 1) || true
if [[ -z $deb ]]; then
    candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
    if [[ -z $(candidate) || $(candidate) == "(none)" ]]; then
        if (( EUID == 0 )); then sudo=()
        elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n)
        else fail "apt knows no candidate for the prometheus package and apt-get update needs root (run as root, or allow sudo -n)"
        fi
        "${sudo[@]}" apt-get update -q >&2 || fail "apt-get update failed"
        [[ -n $(candidate) && $(candidate) != "(none)" ]] || fail "apt has no candidate for the prometheus package (is Debian's main component in the sources?)"
    fi
    delay=2
    for attempt in 1 2 3 4; do
        # -o APT::Sandbox::User=root: as root, apt would otherwise warn that _apt cannot write here
        if (cd "$CACHE" && apt-get download -q -o APT::Sandbox::User="$(id -un)" prometheus >&2); then break; fi
        (( attempt < 4 )) || fail "apt-get download prometheus failed 4 times"
        echo "promtool.sh: apt-get download prometheus failed; retrying in ${delay}s" >&2
        sleep "$delay"
        delay=$((delay * 2))
    done
    deb=$(ls -1 "$CACHE"/prometheus_*.deb 2>/dev/null | sort -V | tail -n 1) || true
    [[ -n $deb ]] || fail "apt-get download prometheus left no prometheus_*.deb in $CACHE"
fi

# only usr/bin/promtool, into a fresh directory renamed into place (never a half-extracted one)
name=$(basename "$deb" .deb)
name=${name%_*}   # prometheus_2.42.0+ds-5+deb12u1_amd64 -> prometheus_2.42.0+ds-5+deb12u1
tmp=$(mktemp -d "$CACHE/.extract.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool 2>/dev/null ||
    { rm -f "$deb"; fail "$deb has no usr/bin/promtool or is damaged (removed; run again to download it anew)"; }
mkdir -p "$tmp/out" && mv "$tmp/usr/bin/promtool" "$tmp/out/promtool"
"$tmp/out/promtool" --version >/dev/null 2>&1 || fail "the promtool of $deb does not run on this host"
rm -rf "${CACHE:?}/$name"
mv "$tmp/out" "$CACHE/$name"
echo "$CACHE/$name/promtool"
