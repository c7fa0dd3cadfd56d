#!/usr/bin/env bash
# Installs the tools the manifest tests need, cached outside the repository:
#   helm      built from the Go module proxy (helm.sh/helm/v3 at HELM_VERSION)
#   promtool  from Debian's `prometheus` package, only when promtool is missing
#   kubectl   /usr/bin/kubectl if present, else Debian's `kubernetes-client`
#
# Idempotent: a second run finds everything and installs nothing. Prints one line per tool,
# `name path version`. Exits non-zero with a message naming what could not be installed.
#
# Other scripts source the resulting paths with:  eval "$(bash scripts/tools.sh --env)"
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/csr-approver/tools"
BIN="$CACHE/bin"
mkdir -p "$BIN"

env_only=false
if [[ "${1:-}" == "--env" ]]; then
  env_only=true
fi

log() { echo "tools.sh: $*" >&2; }
die() { echo "tools.sh: ERROR: $*" >&2; exit 1; }

apt_updated=false
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
  if ! $apt_updated; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

# --- helm -------------------------------------------------------------------------------
install_helm() {
  local helm="$BIN/helm"
  if [[ -x "$helm" ]] && "$helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
    echo "$helm"; return
  fi
  command -v go >/dev/null || die "go not found: needed to build helm $HELM_VERSION from the Go module proxy"
  log "building helm $HELM_VERSION with $(go version) (a few minutes on 2 cores)..."
  # `go install` alone leaves helm reporting "v3.22" and defaulting .Capabilities.KubeVersion
  # to v1.20; set what helm's own Makefile sets: its version, and the Kubernetes version of
  # the client-go it is built with.
  local gomod k8s_minor
  gomod="$(GOTOOLCHAIN=local go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')" \
    || die "cannot download helm.sh/helm/v3@$HELM_VERSION from the Go module proxy"
  [[ -f "$gomod" ]] || die "go mod download did not report helm's go.mod"
  k8s_minor="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -n1)"
  [[ -n "$k8s_minor" ]] || die "cannot find the k8s.io/client-go version in $gomod"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  # -p=2: this is a 2-core machine; the Go build cache makes a rebuild cheap.
  GOTOOLCHAIN=local GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -p=2" \
    go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 \
    || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
  "$helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION" \
    || die "built $helm but it does not report version $HELM_VERSION"
  echo "$helm"
}

# --- promtool ---------------------------------------------------------------------------
install_promtool() {
  local p
  if p="$(command -v promtool)"; then echo "$p"; return; fi
  log "promtool missing: installing Debian package prometheus..."
  apt_install prometheus
  p="$(command -v promtool)" || die "package prometheus installed but promtool is not on PATH"
  echo "$p"
}

# --- kubectl ----------------------------------------------------------------------------
install_kubectl() {
  local k
  if k="$(command -v kubectl)"; then echo "$k"; return; fi
  log "kubectl missing: trying Debian package kubernetes-client..."
  if ! apt-cache policy kubernetes-client 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    apt_updated=true
    apt-cache policy kubernetes-client 2>/dev/null | grep -q 'Candidate: [0-9]' \
      || die "kubectl not found and no kubernetes-client package is available"
  fi
  apt_install kubernetes-client
  k="$(command -v kubectl)" || die "package kubernetes-client installed but kubectl is not on PATH"
  # Debian's kubernetes-client is old (1.20); `kubectl kustomize` there predates components.
  "$k" kustomize --help >/dev/null 2>&1 || die "$k has no 'kustomize' subcommand"
  echo "$k"
}

HELM="$(install_helm)"
PROMTOOL="$(install_promtool)"
KUBECTL="$(install_kubectl)"

if $env_only; then
  printf 'export HELM=%q PROMTOOL=%q KUBECTL=%q\n' "$HELM" "$PROMTOOL" "$KUBECTL"
else
  echo "helm     $HELM $("$HELM" version --template '{{.Version}}')"
  echo "promtool $PROMTOOL $("$PROMTOOL" --version 2>&1 | head -n1)"
  echo "kubectl  $KUBECTL $("$KUBECTL" version --client 2>/dev/null | head -n1)"
fi
