#!/bin/bash
# run.sh -- run a command with the Ansible controller (controller.sh): chrooted into its tree, in a
# private mount namespace (every mount below vanishes with the command), with this repository and
# each --bind directory visible at the same absolute path, the current directory kept.
#
# usage: run.sh [--bind DIR]... CMD [ARG...]
#   e.g. scripts/vm/ansible/run.sh ansible-lint --version
# The controller shares the host's network namespace: ssh to 127.0.0.1:PORT reaches the VMs'
# forwarded ports. The environment is a fresh one: HOME is /root inside the tree (ssh's and
# Ansible's own files stay there), and Ansible reads ansible.cfg from the current directory.
# Needs root (`sudo -n` when not root) and unshare (util-linux).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd -P)
BINDS=("$REPO")
while [[ ${1:-} == --bind ]]; do
    [[ -d ${2:-} ]] || { echo "run.sh: --bind needs a directory" >&2; exit 2; }
    BINDS+=("$(cd "$2" && pwd -P)"); shift 2
done
(( $# )) || { sed -n 2,11p "$0" >&2; exit 2; }
TREE=$("$HERE/controller.sh") || exit 1
if (( EUID == 0 )); then SUDO=(); else SUDO=(sudo -n); fi

# the script run inside the new mount namespace: $1 tree, $2 cwd, then the binds, "--", the command
inner='
set -e
T=$1 CWD=$2; shift 2
mount -t proc proc "$T/proc"
mount --rbind /dev "$T/dev"
mount -t tmpfs tmpfs "$T/tmp"
while [ "$1" != -- ]; do mkdir -p "$T$1"; mount --bind "$1" "$T$1"; shift; done
shift
[ -d "$T$CWD" ] || CWD=/
exec chroot "$T" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    LANG=C.UTF-8 TERM=dumb ANSIBLE_FORCE_COLOR=0 \
    sh -c "cd \"\$0\" && exec \"\$@\"" "$CWD" "$@"
'
exec "${SUDO[@]}" unshare --mount sh -c "$inner" run.sh "$TREE" "$(pwd -P)" "${BINDS[@]}" -- "$@"
