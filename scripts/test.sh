#!/usr/bin/env bash
# The whole test suite, as the README gives it: lints, unit and decision tables, the CLI,
# and the integration tests against a real kube-apiserver + etcd (built once, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools: helm (Go module proxy), promtool (Debian), kubectl"
bash scripts/tools.sh
eval "$(bash scripts/tools.sh --env)"
export HELM PROMTOOL KUBECTL

step "control-plane binaries (kube-apiserver, etcd)"
CSR_APPROVER_ASSETS="$(bash scripts/control-plane-assets.sh | tail -n 1)"
export CSR_APPROVER_ASSETS

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (unit, decision tables, CLI, integration on the real apiserver)"
cargo test --all-targets --locked

if [ -f scripts/test-manifests.sh ]; then
  step "deploy/ manifests, Helm chart and alert rules"
  bash scripts/test-manifests.sh
fi
