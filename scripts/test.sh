#!/usr/bin/env bash
# The whole test suite, as the README gives it: lints, unit and decision tables, the CLI,
# the integration tests against a real kube-apiserver + etcd (built once, cached), and,
# as root on Linux, real kubelets joining through csr-approver (tests/real_nodes.rs), and
# csr-approver as a Pod from its image and Helm chart on a real node (tests/real_node_pod.rs).
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

step "real-node packages (containerd, runc, CNI plugins) and binaries (kubelet, kube-controller-manager, pause image)"
if [ "$(uname -s)" = Linux ] && [ "$(id -u)" -eq 0 ]; then
  bash scripts/node-packages.sh
  CSR_APPROVER_NODE_ASSETS="$(bash scripts/node-assets.sh | tail -n 1)"
  export CSR_APPROVER_NODE_ASSETS
else
  echo "not root on Linux: tests/real_nodes.rs will skip (real kubelets need root)"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "container image from the Dockerfile (scripts/build-image.sh: static binary, podman build)"
if command -v podman >/dev/null || [ "$(id -u)" -eq 0 ]; then   # root: podman from Debian
  CSR_APPROVER_IMAGE_ARCHIVE="$PWD/target/static/csr-approver-image.oci.tar"   # for ctr images import
  CSR_APPROVER_IMAGE="$(bash scripts/build-image.sh --save "$CSR_APPROVER_IMAGE_ARCHIVE" | tail -n 1)"
  export CSR_APPROVER_IMAGE CSR_APPROVER_IMAGE_ARCHIVE   # tests/image.rs runs it; tests/real_node_pod.rs imports the archive
else
  echo "no podman and not root to install it: tests/image.rs will skip"
  export CSR_APPROVER_IMAGE=skip
fi

step "cargo test (unit, decision tables, CLI, integration on the real apiserver)"
cargo test --all-targets --locked

if [ -f scripts/test-manifests.sh ]; then
  step "deploy/ manifests, Helm chart and alert rules"
  bash scripts/test-manifests.sh
fi
