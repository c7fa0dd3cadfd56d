#!/usr/bin/env bash
# Writes deploy/ (the plain manifests for `kubectl apply -k`) from the Helm chart, the one
# source of every shipped manifest (as kube-rs/controller-rs generates its yaml/ with
# `helm template`):
#
#   bash scripts/render-deploy.sh            # rewrites deploy/
#   bash scripts/render-deploy.sh OUT_DIR    # writes the same tree into OUT_DIR instead
#
# The chart is rendered as release csr-approver in namespace csr-approver with
# charts/csr-approver/values-deploy.yaml, the monitoring.coreos.com/v1 API and the Grafana
# dashboard enabled; each template's objects go to one file (below), and the three
# kustomization.yaml files list them. tests/manifests.rs runs this into a temporary
# directory and fails when deploy/ differs. Uses $HELM, else the helm of scripts/tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/csr-approver"
OUT="${1:-$ROOT/deploy}"
COMMAND="bash scripts/render-deploy.sh"

if [[ -z "${HELM:-}" ]]; then
  eval "$(bash "$ROOT/scripts/tools.sh" --env)"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export HELM_CONFIG_HOME="$WORK/helm/config" HELM_CACHE_HOME="$WORK/helm/cache" HELM_DATA_HOME="$WORK/helm/data"

"$HELM" template csr-approver "$CHART" --namespace csr-approver \
  -f "$CHART/values-deploy.yaml" \
  --api-versions monitoring.coreos.com/v1 \
  --set grafanaDashboard.enabled=true \
  --output-dir "$WORK/rendered" >/dev/null
TEMPLATES="$WORK/rendered/csr-approver/templates"

# Template -> file under deploy/. A template missing here fails the script, so a new one
# cannot be left out of deploy/ unnoticed.
declare -A FILE_OF=(
  [crd-nodeidentity.yaml]=crd.yaml
  [namespace.yaml]=namespace.yaml
  [serviceaccount.yaml]=serviceaccount.yaml
  [clusterrole.yaml]=rbac.yaml
  [role.yaml]=rbac.yaml
  [configmap-policy.yaml]=policy-configmap.yaml
  [deployment.yaml]=deployment.yaml
  [poddisruptionbudget.yaml]=poddisruptionbudget.yaml
  [service.yaml]=service.yaml
  [servicemonitor.yaml]=monitoring/servicemonitor.yaml
  [prometheusrule.yaml]=monitoring/prometheusrule.yaml
  [grafana-dashboard.yaml]=monitoring/grafana/grafana-dashboard.yaml
)
# The order of the files' contents and of each kustomization's resources.
ORDER=(crd-nodeidentity.yaml namespace.yaml serviceaccount.yaml clusterrole.yaml role.yaml configmap-policy.yaml
  deployment.yaml poddisruptionbudget.yaml service.yaml servicemonitor.yaml
  prometheusrule.yaml grafana-dashboard.yaml)

for rendered in "$TEMPLATES"/*; do
  name="$(basename "$rendered")"
  [[ -n "${FILE_OF[$name]:-}" ]] || {
    echo "render-deploy: templates/$name is rendered but has no file in deploy/: add it to FILE_OF" >&2
    exit 1
  }
done

NEW="$WORK/deploy"
mkdir -p "$NEW/monitoring/grafana"
header() {
  printf '# Generated from charts/csr-approver by `%s`: do not edit, change the chart\n' "$COMMAND"
  printf '# (values: charts/csr-approver/values-deploy.yaml) and run it again.\n'
}
for name in "${ORDER[@]}"; do
  [[ -f "$TEMPLATES/$name" ]] || { echo "render-deploy: the chart rendered no templates/$name" >&2; exit 1; }
  file="$NEW/${FILE_OF[$name]}"
  [[ -f "$file" ]] || header >"$file"
  cat "$TEMPLATES/$name" >>"$file"
done

cat >"$NEW/kustomization.yaml" <<EOF
$(header)
#
# csr-approver: plain manifests.
#
#   kubectl apply -k deploy/              # controller, RBAC, policy (no Prometheus operator needed)
#   kubectl apply -k deploy/monitoring/   # ServiceMonitor + PrometheusRule (needs the
#                                         # monitoring.coreos.com/v1 CRDs of the Prometheus operator)
#
# Every object names its namespace explicitly and there is deliberately no \`namespace:\`
# transformer here: the Role/RoleBinding that let the controller write Events about CSRs
# (cluster-scoped objects, whose Events land in \`default\`) must stay in \`default\`.
# To install into another namespace, use the Helm chart (charts/csr-approver).
#
# The image defaults to what scripts/build-image.sh builds locally
# (localhost/csr-approver/csr-approver:<version>). Point it at your registry with:
#   kustomize edit set image localhost/csr-approver/csr-approver=<your-image>:<tag>
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - crd.yaml
  - namespace.yaml
  - serviceaccount.yaml
  - rbac.yaml
  - policy-configmap.yaml
  - deployment.yaml
  - poddisruptionbudget.yaml
  - service.yaml
EOF

cat >"$NEW/monitoring/kustomization.yaml" <<EOF
$(header)
#
# Prometheus operator objects for csr-approver, kept apart from deploy/ so that
#   kubectl apply -k deploy/
# works on clusters without the monitoring.coreos.com/v1 CRDs. Where they exist:
#   kubectl apply -k deploy/monitoring/
# On OpenShift, enable monitoring for user-defined projects first (docs/install.md).
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - servicemonitor.yaml
  - prometheusrule.yaml
EOF

cat >"$NEW/monitoring/grafana/kustomization.yaml" <<EOF
$(header)
#
# csr-approver's Grafana dashboard, as a ConfigMap for Grafana's dashboard sidecar (the
# grafana chart's and kube-prometheus-stack's sidecar.dashboards), which loads every
# ConfigMap labelled grafana_dashboard: "1" in the namespaces it searches:
#
#   kubectl apply -k deploy/monitoring/grafana/
#
# Kept apart from deploy/monitoring/ (which needs the Prometheus operator) because where
# it goes depends on your Grafana: if its sidecar only searches its own namespace, build an
# overlay with \`namespace: <grafana's namespace>\`; if it selects on another label, patch
# the labels. docs/metrics.md ("Dashboard") shows what each row shows.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - grafana-dashboard.yaml
EOF

# Replace the whole tree, so that a file the chart no longer renders goes too; any other
# directory must be new or empty (nothing of the caller's is ever deleted).
if [[ "$OUT" -ef "$ROOT/deploy" ]]; then
  rm -rf "$ROOT/deploy"
elif [[ -e "$OUT" && -n "$(ls -A "$OUT")" ]]; then
  echo "render-deploy: $OUT is not empty; give a new or empty directory" >&2
  exit 1
fi
mkdir -p "$OUT"
cp -R "$NEW/." "$OUT"
