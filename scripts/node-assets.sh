#!/usr/bin/env bash
# Builds (once) what a real test node runs besides the Debian packages of
# scripts/node-packages.sh: kubelet and kube-controller-manager from the same pinned
# k8s.io/kubernetes module (and the same wrapper module) as kube-apiserver, and a
# FROM-scratch pause image (a tiny static Go program) saved as an OCI archive that
# `ctr images import` loads into a node's containerd — no registry is needed. Cached beside
# the control-plane binaries; idempotent: a warm run only checks that everything exists.
#
# Prints the asset directory on its last line (stdout); progress goes to stderr. The
# directory holds bin/kubelet, bin/kube-controller-manager and pause.oci.tar (image name in
# pause.image).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
PAUSE_IMAGE="localhost/csr-approver/pause:3.10"

cache_root="${CSR_APPROVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/csr-approver}"
assets="$cache_root/node-$KUBERNETES_VERSION"
bin="$assets/bin"

log() { printf '[node-assets] %s\n' "$*" >&2; }
die() { printf '[node-assets] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed; install Go >= 1.26 (the pinned Kubernetes release requires it)"

export GOTOOLCHAIN=local
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

ready() {
  [ -x "$bin/kubelet" ] && [ -x "$bin/kube-controller-manager" ] \
    && [ -s "$assets/pause.oci.tar" ] && [ "$(cat "$assets/pause.image" 2>/dev/null)" = "$PAUSE_IMAGE" ] \
    && "$bin/kubelet" --version >/dev/null 2>&1 \
    && "$bin/kube-controller-manager" --version >/dev/null 2>&1
}

if ready; then
  log "cached: $bin ($("$bin/kubelet" --version), pause image $PAUSE_IMAGE)"
  echo "$assets"
  exit 0
fi

mkdir -p "$bin"
start=$(date +%s)

# The wrapper module kube-apiserver was built from (scripts/control-plane-assets.sh writes
# it): the same go.mod and go.sum pin every staging module, so the node binaries match.
cp_assets="$(KUBERNETES_VERSION="$KUBERNETES_VERSION" bash scripts/control-plane-assets.sh | tail -n 1)"
wrapper="$cp_assets/kubernetes-wrapper"
[ -f "$wrapper/go.mod" ] || die "no wrapper module in $wrapper; remove $cp_assets and run scripts/control-plane-assets.sh again"

build_k8s() { # <command name>
  local name="$1"
  [ -x "$bin/$name" ] && "$bin/$name" --version >/dev/null 2>&1 && return 0
  log "building $name $KUBERNETES_VERSION (cold: minutes on 2 cores)"
  (cd "$wrapper" && go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)" \
      -o "$bin/$name.tmp" "k8s.io/kubernetes/cmd/$name") \
    || die "go build of $name failed"
  mv "$bin/$name.tmp" "$bin/$name"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# The pause image: one static binary that sleeps until SIGINT/SIGTERM and reaps zombies,
# on an empty base, written directly as an OCI image layout (no builder, no registry).
build_pause() {
  [ -s "$assets/pause.oci.tar" ] && [ "$(cat "$assets/pause.image" 2>/dev/null)" = "$PAUSE_IMAGE" ] && return 0
  log "building the FROM-scratch pause image $PAUSE_IMAGE"
  local work="$assets/pause-build"
  rm -rf "$work" && mkdir -p "$work/src" "$work/rootfs" "$work/oci/blobs/sha256"
  cat >"$work/src/main.go" <<'GO'
// pause: the sandbox process of a pod. Sleeps until SIGINT or SIGTERM, reaping children.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
GO
  printf 'module csr-approver.local/pause\n\ngo 1.26\n' >"$work/src/go.mod"
  (cd "$work/src" && GOOS=linux go build -trimpath -ldflags "-s -w" -o "$work/rootfs/pause" .) \
    || die "go build of the pause program failed"
  local layer="$work/layer.tar"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$layer" pause
  local layer_sha layer_size arch
  layer_sha=$(sha "$layer"); layer_size=$(stat -c %s "$layer")
  arch=$(go env GOARCH)
  cp "$layer" "$work/oci/blobs/sha256/$layer_sha"
  printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer_sha" >"$work/config.json"
  local config_sha config_size
  config_sha=$(sha "$work/config.json"); config_size=$(stat -c %s "$work/config.json")
  cp "$work/config.json" "$work/oci/blobs/sha256/$config_sha"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_sha" "$config_size" "$layer_sha" "$layer_size" >"$work/manifest.json"
  local manifest_sha manifest_size
  manifest_sha=$(sha "$work/manifest.json"); manifest_size=$(stat -c %s "$work/manifest.json")
  cp "$work/manifest.json" "$work/oci/blobs/sha256/$manifest_sha"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_sha" "$manifest_size" "$arch" "$PAUSE_IMAGE" "${PAUSE_IMAGE##*:}" >"$work/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/oci" -cf "$assets/pause.oci.tar.tmp" .
  mv "$assets/pause.oci.tar.tmp" "$assets/pause.oci.tar"
  echo "$PAUSE_IMAGE" >"$assets/pause.image"
  rm -rf "$work"
}

build_pause
build_k8s kube-controller-manager
build_k8s kubelet
ready || die "built binaries do not run"
log "built in $(( $(date +%s) - start ))s: $assets"
echo "$assets"
