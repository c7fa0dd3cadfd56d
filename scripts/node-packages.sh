#!/usr/bin/env bash
# Installs the Debian packages a real test node needs, only those missing: containerd
# (the node's container runtime), runc (its OCI runtime) and containernetworking-plugins
# (the loopback CNI plugin, /usr/lib/cni), and podman (scripts/build-image.sh builds the
# csr-approver image with it, FROM scratch, offline). Needs root (apt-get) when something is missing;
# a no-op otherwise. Used by scripts/test.sh before the real-node tests.
set -euo pipefail

log() { printf '[node-packages] %s\n' "$*" >&2; }
die() { printf '[node-packages] ERROR: %s\n' "$*" >&2; exit 1; }

packages=(containerd runc containernetworking-plugins podman)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "installed: ${packages[*]}"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get (not Debian?); install them by hand"
[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; run as root to install them with apt-get"

log "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# Where systemd runs, the package may start a system containerd; the test nodes never use
# it: each runs its own containerd on its own socket, in its own mount namespace.
log "installed: ${packages[*]}"
