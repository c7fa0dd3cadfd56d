#!/usr/bin/env bash
# Installs csr-approver as a kubectl and oc plugin: an executable named kubectl-csr_approver
# on PATH is what `kubectl csr-approver ...` and `oc csr-approver ...` run.
#
#   scripts/install-plugin.sh [DIR]     # default ~/.local/bin; prints the installed path
#
# Builds the release binary unless CSR_APPROVER_BIN names one to install.
set -euo pipefail

dir="${1:-$HOME/.local/bin}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CSR_APPROVER_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin csr-approver >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/release/csr-approver"
fi
[[ -x "$bin" ]] || { echo "install-plugin.sh: ERROR: $bin is not an executable" >&2; exit 1; }
install -D -m 0755 "$bin" "$dir/kubectl-csr_approver"
case ":$PATH:" in
  *":$dir:"*) ;;
  *) echo "install-plugin.sh: $dir is not on PATH: add it, or kubectl will not find the plugin" >&2 ;;
esac
echo "$dir/kubectl-csr_approver"
