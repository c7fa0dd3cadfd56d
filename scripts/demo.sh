#!/usr/bin/env bash
# The main job, live. As root on Linux with containerd (scripts/node-packages.sh): real
# kubelets join a local control plane through csr-approver running as a Pod from its image,
# installed with its Helm chart, and forged requests stay Pending (examples/real_nodes_demo.rs).
# Elsewhere (it says why in one line), the simulator: csr-approver running under its own
# ServiceAccount and the least-privilege RBAC of deploy/, and a handful of simulated nodes
# joining — client CSR, Node, serving CSR — plus forged CSRs that must stay unapproved.
# Shows the result as an admin sees it (kubectl get nodes/csr, Events), then tears it down.
#
#   scripts/demo.sh            # real: control-0 + 2 workers; simulator: 5 nodes, 6 forged CSRs
#   DEMO_SIMULATE=1 scripts/demo.sh   # the simulator even where kubelets could run
#   DEMO_NODES=20 DEMO_FORGED=12 scripts/demo.sh
#   DEMO_KEEP=1 scripts/demo.sh   # leave it running afterwards (real nodes: until Ctrl-C;
#                                 # simulator: it prints the one command that stops it all)
#   DEMO_BIN=path/to/csr-approver  # the simulator demo with this binary instead of `cargo build`,
#                                  # and the csr-approver-simulate beside it (or DEMO_SIMULATOR_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
nodes="${DEMO_NODES:-5}"
forged="${DEMO_FORGED:-6}"
export CSR_APPROVER_DEV_DIR="${CSR_APPROVER_DEV_DIR:-${XDG_RUNTIME_DIR:-/tmp}/csr-approver-demo}"
state="$CSR_APPROVER_DEV_DIR"
http_port="${DEMO_HTTP_PORT:-18080}"
case "${DEMO_KEEP:-}" in ""|0) keep="" ;; *) keep=1 ;; esac

# Bold headings for a person at a terminal only: a log file or a pipe gets plain text.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '\n==> %s\n' "$*"; }
fi

command -v kubectl >/dev/null || { echo "demo: kubectl is required (Debian: kubernetes-client)" >&2; exit 1; }

# --- real kubelets, csr-approver as a Pod from its image and chart (root on Linux) ----------
# examples/real_nodes_demo.rs runs the nodes of the tests (tests/harness/node.rs, pod.rs):
# control-0 (approved by hand: the first node), `helm install` of charts/csr-approver with
# the image of scripts/build-image.sh imported into control-0's containerd, then
# DEMO_NODES (default 2) workers joining through the Pod, plus two rogue kubelets and a
# forged CSR left Pending. DEMO_SIMULATE=1 forces the simulator demo below.
why_not_real=""
if [ -n "${DEMO_SIMULATE:-}" ]; then why_not_real="DEMO_SIMULATE is set"
elif [ "$(uname -s)" != Linux ]; then why_not_real="not Linux"
elif [ "$(id -u)" -ne 0 ]; then why_not_real="not root (kubelet and containerd need it)"
else
  for program in containerd ctr runc unshare; do
    command -v "$program" >/dev/null || { why_not_real="no $program (scripts/node-packages.sh installs it)"; break; }
  done
  [ -n "$why_not_real" ] || [ -e /usr/lib/cni/loopback ] || why_not_real="no CNI plugins (scripts/node-packages.sh installs them)"
fi
if [ -z "$why_not_real" ]; then
  say "real kubelets: building what they need (cached after the first run)"
  eval "$(bash scripts/tools.sh --env)"; export HELM
  CSR_APPROVER_ASSETS="$(bash scripts/control-plane-assets.sh | tail -n 1)"
  CSR_APPROVER_NODE_ASSETS="$(bash scripts/node-assets.sh | tail -n 1)"
  CSR_APPROVER_IMAGE_ARCHIVE="$repo/target/static/csr-approver-image.oci.tar"
  bash scripts/build-image.sh --save "$CSR_APPROVER_IMAGE_ARCHIVE" >/dev/null
  export CSR_APPROVER_ASSETS CSR_APPROVER_NODE_ASSETS CSR_APPROVER_IMAGE_ARCHIVE
  cargo build --quiet --locked --example real_nodes_demo
  DEMO_NODES="${DEMO_NODES:-2}" exec "$repo/target/debug/examples/real_nodes_demo"
fi
echo "demo: real kubelets cannot run here ($why_not_real): showing the simulator instead"

# The controller, and the simulator: its own binary (cargo feature `tools`), never in the image.
if [ -n "${DEMO_BIN:-}" ]; then
  bin="$DEMO_BIN"
  simulator="${DEMO_SIMULATOR_BIN:-$(dirname "$DEMO_BIN")/csr-approver-simulate}"
else
  say "building csr-approver and csr-approver-simulate"
  cargo build --quiet --locked --bin csr-approver --bin csr-approver-simulate
  bin="$repo/target/debug/csr-approver"
  simulator="$repo/target/debug/csr-approver-simulate"
fi
[ -x "$simulator" ] || { echo "demo: no simulator at $simulator (cargo build --bin csr-approver-simulate, or set DEMO_SIMULATOR_BIN)" >&2; exit 1; }

if [ -f "$state/csr-approver.pid" ] && kill -0 "$(cat "$state/csr-approver.pid")" 2>/dev/null; then
  echo "demo: a kept demo is still running in $state; stop it first: CSR_APPROVER_DEV_DIR=$state $repo/scripts/dev-cluster.sh down" >&2
  exit 1
fi

say "starting a local control plane (kube-apiserver $(grep -m1 '^KUBERNETES_VERSION=' scripts/control-plane-assets.sh | sed 's/.*:-\(v[^}]*\)}.*/\1/') + etcd)"
bash scripts/dev-cluster.sh up
eval "$(bash scripts/dev-cluster.sh env)"

controller_pid=""
cleanup() {
  if [ -n "$keep" ]; then
    # The controller, kube-apiserver and etcd stay; dev-cluster.sh down stops all three
    # (the controller's pid is recorded beside theirs) when given this state directory.
    say "left running"
    echo "kube-apiserver + etcd: export KUBECONFIG=$KUBECONFIG"
    [ -n "$controller_pid" ] && echo "csr-approver: pid $controller_pid, log $state/controller.log, metrics http://127.0.0.1:$http_port/metrics"
    echo "stop everything: CSR_APPROVER_DEV_DIR=$state $repo/scripts/dev-cluster.sh down"
    return
  fi
  if [ -n "$controller_pid" ]; then
    kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  fi
  say "tearing down"
  bash scripts/dev-cluster.sh down
}
trap cleanup EXIT

say "installing the Machine CRD, csr-approver's NodeIdentity CRD, namespace, ServiceAccount, RBAC and policy"
kubectl apply -f tests/fixtures/crds/machines.machine.openshift.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/machines.machine.openshift.io --timeout=60s >/dev/null
kubectl apply -f deploy/crd.yaml -f deploy/namespace.yaml -f deploy/serviceaccount.yaml -f deploy/rbac.yaml -f deploy/policy-configmap.yaml
kubectl wait --for=condition=Established crd/nodeidentities.csr-approver.io --timeout=60s >/dev/null
# As on OpenShift: the machine-config node-bootstrapper may create CSRs.
kubectl create clusterrolebinding demo-node-bootstrapper --clusterrole=system:node-bootstrapper \
  --user=system:serviceaccount:openshift-machine-config-operator:node-bootstrapper \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

say "running the controller as ServiceAccount csr-approver/csr-approver (its RBAC only)"
# Kept running (DEMO_KEEP), it needs its token for longer than the demo.
token=$(kubectl create token csr-approver -n csr-approver --duration="$([ -n "$keep" ] && echo 24h || echo 1h)")
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
cat >"$state/controller.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: demo, cluster: {server: "$server", certificate-authority: "$state/pki/ca.crt"}}]
users: [{name: csr-approver, user: {token: "$token"}}]
contexts: [{name: demo, context: {cluster: demo, user: csr-approver}}]
current-context: demo
KUBECONFIG
"$bin" run --kubeconfig "$state/controller.kubeconfig" --namespace csr-approver \
  --http-addr "127.0.0.1:$http_port" --identity demo-replica >"$state/controller.log" 2>&1 &
controller_pid=$!
echo "$controller_pid" >"$state/csr-approver.pid"   # for dev-cluster.sh down
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$controller_pid" 2>/dev/null || { cat "$state/controller.log"; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null || { echo "controller not ready"; cat "$state/controller.log"; exit 1; }
echo "controller ready (logs: $state/controller.log)"

say "$nodes nodes join (Machine → client CSR → Node → serving CSR), then $forged forged CSRs"
"$simulator" --kubeconfig "$KUBECONFIG" --nodes "$nodes" --forged "$forged" --prefix demo --timeout 30s

say "kubectl get csr"
kubectl get csr --sort-by=.metadata.creationTimestamp

say "why each CSR was approved or left Pending (csr-approver's Events, as kubectl describe csr shows them)"
kubectl get events -n default --field-selector involvedObject.kind=CertificateSigningRequest \
  --sort-by=.metadata.creationTimestamp \
  -o custom-columns=CSR:.involvedObject.name,TYPE:.type,REASON:.reason,MESSAGE:.message

say "what an operator asks: csr-approver check, live"
"$bin" check --kubeconfig "$KUBECONFIG" --pending

say "metrics (curl :$http_port/metrics | grep csr_approver_)"
curl -fsS "http://127.0.0.1:$http_port/metrics" | grep -E '^csr_approver_(decisions_total|approval_latency_seconds_count|pending_csrs|leader|policy_valid)' || true
