#!/usr/bin/env bash
# The tool-driven checks of everything a cluster admin installs: deploy/ is what the chart
# renders (scripts/render-deploy.sh), deploy/, deploy/monitoring/ and overlays/sno/ build
# with kustomize, charts/csr-approver lints and refuses unsafe values, and the alert rules
# pass promtool's unit tests. What the rendered objects grant and run, the shipped policy,
# the CRD fixtures, the Dockerfile and the docs are asserted in Rust:
#   cargo test --test manifests --test dockerfile --test dashboard
#
#   bash scripts/test-manifests.sh        # installs missing tools via scripts/tools.sh
#
# Every step runs even after a failure; the last line is "N passed, N failed" and the exit
# status is non-zero when anything failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

tools_env="$(bash scripts/tools.sh --env)" || { echo "test-manifests: cannot install the tools (see above)" >&2; exit 1; }
eval "$tools_env"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Keep helm's own config/cache out of $HOME.
export HELM_CONFIG_HOME="$WORK/helm/config" HELM_CACHE_HOME="$WORK/helm/cache" HELM_DATA_HOME="$WORK/helm/data"

CHART=charts/csr-approver
RELEASE=csr-approver
NS=csr-approver

passed=0 failed=0
failures=()

# step NAME CMD...: run CMD, record pass/fail, show its output on failure (or always with -v).
step() {
  local name="$1"; shift
  local out rc
  out="$("$@" 2>&1)"; rc=$?
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1)); echo "ok   $name"
    [[ "${VERBOSE:-}" == 1 ]] && printf '%s\n' "$out" | sed 's/^/     /'
  else
    failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name (exit $rc)"
    printf '%s\n' "$out" | sed 's/^/     /'
  fi
  return 0
}

# expect_fail NAME REGEX CMD...: CMD must exit non-zero and print something matching REGEX.
expect_fail() {
  local name="$1" regex="$2"; shift 2
  local out rc
  out="$("$@" 2>&1)"; rc=$?
  if [[ $rc -ne 0 ]] && grep -Eq -- "$regex" <<<"$out"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); failures+=("$name")
    echo "FAIL $name: expected a non-zero exit and output matching /$regex/, got exit $rc:"
    printf '%s\n' "$out" | sed 's/^/     /'
  fi
  return 0
}


render() { # render OUT CMD...: write CMD's stdout to OUT; stderr shown on failure
  local out="$1"; shift
  "$@" >"$out"
}

helm_template() { "$HELM" template "$RELEASE" "$CHART" --namespace "$NS" "$@"; }

echo "== render"
step "kubectl kustomize deploy/" render "$WORK/kustomize.yaml" "$KUBECTL" kustomize deploy/
step "kubectl kustomize deploy/monitoring/" render "$WORK/kustomize-monitoring.yaml" "$KUBECTL" kustomize deploy/monitoring/
step "kubectl kustomize overlays/sno/" render "$WORK/kustomize-sno.yaml" "$KUBECTL" kustomize overlays/sno/
step "kubectl kustomize deploy/monitoring/grafana/" render "$WORK/kustomize-grafana.yaml" "$KUBECTL" kustomize deploy/monitoring/grafana/
step "deploy/ is what the chart renders (bash scripts/render-deploy.sh regenerates it)" \
  bash -c 'bash scripts/render-deploy.sh "$1" && diff -r deploy "$1"' _ "$WORK/deploy"

echo "== helm"
step "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"
step "helm lint --strict (ci/non-default-values.yaml)" \
  "$HELM" lint --strict "$CHART" -f "$CHART/ci/non-default-values.yaml"
step "helm lint --strict (values-sno.yaml)" "$HELM" lint --strict "$CHART" -f "$CHART/values-sno.yaml"
step "helm lint --strict (values-deploy.yaml)" "$HELM" lint --strict "$CHART" -f "$CHART/values-deploy.yaml"
step "helm template (default values)" render "$WORK/helm-default.yaml" helm_template
step "helm template (values-sno.yaml)" render "$WORK/helm-sno.yaml" helm_template -f "$CHART/values-sno.yaml"
step "helm template (grafanaDashboard.enabled=true)" \
  render "$WORK/helm-grafana.yaml" helm_template --set grafanaDashboard.enabled=true
step "helm template (default values, monitoring API present)" \
  render "$WORK/helm-default-monitoring.yaml" helm_template --api-versions monitoring.coreos.com/v1
step "helm template (ci/non-default-values.yaml, monitoring API present)" \
  render "$WORK/helm-non-default.yaml" helm_template -f "$CHART/ci/non-default-values.yaml" \
  --api-versions monitoring.coreos.com/v1
step "helm template (replicas=1, leaderElection.enabled=false)" \
  render "$WORK/helm-minimal.yaml" helm_template --set replicas=1 --set leaderElection.enabled=false
expect_fail "helm template refuses replicas=2 with leaderElection.enabled=false" \
  'replicas=2 with leaderElection\.enabled=false would run 2 active approvers' \
  helm_template --set replicas=2 --set leaderElection.enabled=false
expect_fail "helm template refuses replicas=1 with a PDB of minAvailable=1 (blocks the drain)" \
  'replicas=1 with podDisruptionBudget\.minAvailable=1 allows no eviction.*podDisruptionBudget\.enabled=false' \
  helm_template --set replicas=1 --set podDisruptionBudget.minAvailable=1
expect_fail "helm template refuses replicas=1 with a PDB of maxUnavailable=0 (blocks the drain)" \
  'replicas=1 with podDisruptionBudget\.maxUnavailable=0 allows no eviction' \
  helm_template --set replicas=1 --set podDisruptionBudget.maxUnavailable=0
expect_fail "helm template refuses a PDB with both minAvailable and maxUnavailable" \
  'minAvailable=1 and podDisruptionBudget\.maxUnavailable=1 are both set' \
  helm_template --set podDisruptionBudget.minAvailable=1 --set podDisruptionBudget.maxUnavailable=1
expect_fail "helm template refuses an unknown value (values.schema.json)" \
  "additional properties 'replicaz' not allowed" \
  helm_template --set replicaz=3
expect_fail "helm template refuses policy.mode outside enforce|dry-run" \
  'policy/mode' \
  helm_template --set policy.mode=yolo
expect_fail "helm template refuses the removed policy.machines.namespace (now namespaces)" \
  "additional properties 'namespace' not allowed" \
  helm_template --set policy.machines.namespace=openshift-machine-api
expect_fail "helm template refuses trusting Machines in every namespace (\"*\")" \
  'policy/machines/namespaces/cluster.x-k8s.io/0' \
  helm_template --set-json 'policy.machines.namespaces={"cluster.x-k8s.io":["*"]}'

echo "== alerts (promtool), on the chart's rules file as shipped"
step "promtool check rules ($CHART/files/prometheus-rules.yaml)" \
  "$PROMTOOL" check rules "$CHART/files/prometheus-rules.yaml"
step "promtool test rules ($CHART/tests/alerts-test.yaml)" \
  "$PROMTOOL" test rules "$CHART/tests/alerts-test.yaml"

echo
echo "(the assertions on the rendered objects: cargo test --test manifests --test dockerfile --test dashboard)"
if [[ $failed -gt 0 ]]; then
  echo "failed steps:"; printf '  - %s\n' "${failures[@]}"
fi
echo "manifests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
