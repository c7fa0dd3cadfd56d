#!/usr/bin/env bash
# Builds (once) the real control-plane binaries the tests, the demo and the benchmarks run:
# kube-apiserver from the k8s.io/kubernetes Go module and etcd from go.etcd.io/etcd/server/v3,
# both through the Go module proxy, cached outside the repository. Idempotent: a warm run
# only checks that the binaries exist and answer --version.
#
# Prints the asset directory on its last line (stdout); progress goes to stderr.
set -euo pipefail

# The one place the control-plane versions are pinned.
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
# etcd version required by that Kubernetes release's go.mod (checked when pinning).
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"

cache_root="${CSR_APPROVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/csr-approver}"
assets="$cache_root/control-plane-$KUBERNETES_VERSION-etcd-$ETCD_VERSION"
bin="$assets/bin"

log() { printf '[control-plane-assets] %s\n' "$*" >&2; }
die() { printf '[control-plane-assets] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed; install Go >= 1.26 (the pinned Kubernetes release requires it)"

export GOTOOLCHAIN=local
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

ready() {
  [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] \
    && "$bin/kube-apiserver" --version >/dev/null 2>&1 \
    && "$bin/etcd" --version >/dev/null 2>&1
}

if ready; then
  log "cached: $bin ($("$bin/kube-apiserver" --version), etcd $("$bin/etcd" --version | head -1 | awk '{print $3}'))"
  echo "$assets"
  exit 0
fi

mkdir -p "$bin"

build_kube_apiserver() {
  [ -x "$bin/kube-apiserver" ] && return 0
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  local work="$assets/kubernetes-wrapper"
  rm -rf "$work" && mkdir -p "$work"
  log "fetching k8s.io/kubernetes@$KUBERNETES_VERSION go.mod from the module proxy"
  local upstream_mod
  upstream_mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p') \
    || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION (is the Go module proxy reachable?)"
  [ -f "$upstream_mod" ] || die "no go.mod for k8s.io/kubernetes@$KUBERNETES_VERSION"

  # The release's go.mod replaces every staging module with a local path; a module that
  # requires k8s.io/kubernetes must replace them with their published versions instead.
  local staging
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$upstream_mod")
  [ -n "$staging" ] || die "found no staging modules in k8s.io/kubernetes@$KUBERNETES_VERSION go.mod"
  # Sample modules are published late or not at all and kube-apiserver imports none of them;
  # every other staging module must exist at exactly the matching version.
  local published="" m
  for m in $staging; do
    if (cd "$work" && go mod download "$m@$staging_version" >/dev/null 2>&1); then
      published="$published $m"
    elif [[ "$m" == k8s.io/sample-* ]]; then
      log "note: $m@$staging_version is not published; not needed for kube-apiserver"
    else
      die "staging module $m@$staging_version is not published; pick another KUBERNETES_VERSION"
    fi
  done
  log "$(echo $published | wc -w) staging modules pinned at $staging_version"
  {
    echo "module csr-approver.local/kube-apiserver-build"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$upstream_mod"
    sed -n 's/^godebug \(.*\)/godebug \1/p' "$upstream_mod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    for m in $published; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$work/go.mod"
  log "building kube-apiserver $KUBERNETES_VERSION (cold: many minutes on 2 cores)"
  (cd "$work" && go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)" \
      -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver) \
    || die "go build of kube-apiserver failed"
  mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
}

build_etcd() {
  [ -x "$bin/etcd" ] && return 0
  local work="$assets/etcd-wrapper"
  rm -rf "$work" && mkdir -p "$work"
  printf 'module csr-approver.local/etcd-build\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >"$work/go.mod"
  log "building etcd $ETCD_VERSION"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3) \
    || die "go build of etcd $ETCD_VERSION failed (is the Go module proxy reachable?)"
  mv "$bin/etcd.tmp" "$bin/etcd"
}

start=$(date +%s)
build_etcd
build_kube_apiserver
ready || die "built binaries do not run"
log "built in $(( $(date +%s) - start ))s: $bin"
echo "$assets"
