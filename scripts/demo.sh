#!/usr/bin/env bash
# The main job, live: a local control plane (real kube-apiserver + etcd), csr-approver
# running under its own ServiceAccount and the least-privilege RBAC of deploy/, and a
# handful of nodes joining — client CSR, Node, serving CSR — plus forged CSRs that must
# stay unapproved. Shows the result as an admin sees it, then tears everything down.
#
#   scripts/demo.sh            # 5 nodes, 6 forged CSRs
#   DEMO_NODES=20 DEMO_FORGED=12 scripts/demo.sh
#   DEMO_KEEP=1 scripts/demo.sh   # leave the cluster and controller running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
nodes="${DEMO_NODES:-5}"
forged="${DEMO_FORGED:-6}"
export CSR_APPROVER_DEV_DIR="${CSR_APPROVER_DEV_DIR:-${XDG_RUNTIME_DIR:-/tmp}/csr-approver-demo}"
state="$CSR_APPROVER_DEV_DIR"
http_port="${DEMO_HTTP_PORT:-18080}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

command -v kubectl >/dev/null || { echo "demo: kubectl is required (Debian: kubernetes-client)" >&2; exit 1; }

say "building csr-approver"
cargo build --quiet --locked
bin="$repo/target/debug/csr-approver"

say "starting a local control plane (kube-apiserver $(grep -m1 '^KUBERNETES_VERSION=' scripts/control-plane-assets.sh | sed 's/.*:-\(v[^}]*\)}.*/\1/') + etcd)"
bash scripts/dev-cluster.sh up
eval "$(bash scripts/dev-cluster.sh env)"

controller_pid=""
cleanup() {
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  if [ -z "${DEMO_KEEP:-}" ]; then
    say "tearing down"
    bash scripts/dev-cluster.sh down
  else
    echo "left running: KUBECONFIG=$KUBECONFIG; stop with: scripts/dev-cluster.sh down"
  fi
}
trap cleanup EXIT

say "installing the Machine CRD, csr-approver's namespace, ServiceAccount, RBAC and policy"
kubectl apply -f tests/fixtures/crds/machines.machine.openshift.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/machines.machine.openshift.io --timeout=60s >/dev/null
kubectl apply -f deploy/namespace.yaml -f deploy/serviceaccount.yaml -f deploy/rbac.yaml -f deploy/policy-configmap.yaml
# As on OpenShift: the machine-config node-bootstrapper may create CSRs.
kubectl create clusterrolebinding demo-node-bootstrapper --clusterrole=system:node-bootstrapper \
  --user=system:serviceaccount:openshift-machine-config-operator:node-bootstrapper \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

say "running the controller as ServiceAccount csr-approver/csr-approver (its RBAC only)"
token=$(kubectl create token csr-approver -n csr-approver --duration=1h)
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
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$controller_pid" 2>/dev/null || { cat "$state/controller.log"; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null || { echo "controller not ready"; cat "$state/controller.log"; exit 1; }
echo "controller ready (logs: $state/controller.log)"

say "$nodes nodes join (Machine → client CSR → Node → serving CSR), then $forged forged CSRs"
"$bin" simulate --kubeconfig "$KUBECONFIG" --nodes "$nodes" --forged "$forged" --prefix demo --timeout 30s

say "kubectl get csr"
kubectl get csr --sort-by=.metadata.creationTimestamp

say "why the forged ones are still Pending (Events, as kubectl describe csr shows them)"
kubectl get events -n default --field-selector reason=NotApproved \
  -o custom-columns=CSR:.involvedObject.name,TYPE:.type,REASON:.reason,MESSAGE:.message

say "what an operator asks: csr-approver check, live"
"$bin" check --kubeconfig "$KUBECONFIG" --pending

say "metrics (curl :$http_port/metrics | grep csr_approver_)"
curl -fsS "http://127.0.0.1:$http_port/metrics" | grep -E '^csr_approver_(decisions_total|approval_latency_seconds_count|pending_csrs|leader|policy_valid)' || true
