#!/bin/bash
# sid-apt.sh -- sourced by kernel-source.sh and debian-kernel.sh: a private apt configuration for
# Debian's "sid" suite under the cache, so the host's apt setup is never changed.
#
# Defines APT_OPTS (apt-get/apt-cache options) and sid_apt_update. We reuse the mirror URI this
# machine's apt already uses (read from /etc/apt/sources.list*), so no registry host name is written
# in this repository. Needs CACHE and a log function.

# the first "debian" mirror URI of the machine's apt sources (deb822 or one-line format)
sid_mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+\/debian)\/?[[:space:]]*$/\1/p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+\/debian)\/?[[:space:]].*/\2/p' |
    head -n 1)

APT=$CACHE/apt
APT_OPTS=(-o Dir::Etc::SourceList="$APT/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::Etc::PreferencesParts="$APT/etc/preferences.d" -o Dir::State::Lists="$APT/lists"
      -o Dir::Cache="$APT" -o Dir::Cache::archives="$APT/archives" -o APT::Get::List-Cleanup=0
      -o Acquire::Languages=none -o APT::Architectures=amd64 -o APT::Sandbox::User=root
      -o Acquire::Retries=3)

sid_apt_update() {
    [[ -n $sid_mirror ]] || { log "no Debian mirror found in /etc/apt/sources.list*"; return 1; }
    mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/etc/preferences.d"
    cat > "$APT/etc/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sid_mirror sid main
SRC
    log "apt-get update (private sid list, mirror from the host's apt sources)"
    apt-get -q "${APT_OPTS[@]}" update >&2
}
