#!/usr/bin/env bash
# Builds (once) the two peer approvers the side-by-side benchmark compares csr-approver with
# (issue #13), from their sources at pinned tags, with their dependencies from the Go module
# proxy; cached outside the repository. Idempotent: a warm run only checks that each binary
# exists and answers --help.
#
#   PF = postfinance/kubelet-csr-approver         v1.2.14  (./cmd/kubelet-csr-approver)
#   AH = alex1989hu/kubelet-serving-cert-approver v0.11.0  (. , run as `... serve`)
#
# Usage: bench/peers.sh          progress on stderr; last line of stdout = the peers directory
#        bench/peers.sh --env    prints PEER_PF_BIN=... and PEER_AH_BIN=... for eval (an empty
#                                value = that peer could not be built)
#
# Sources: PEER_PF_REPO / PEER_AH_REPO, a git URL (cloned) or a local git directory (bare or
# not; read with `git archive`); default the GitHub repositories. The tag's commit is checked
# against the pinned one (PEER_PF_COMMIT / PEER_AH_COMMIT; set both tag and commit to move).
# A peer that cannot be built is reported in one line and skipped; the exit status is
# non-zero only if neither peer is available. How to run them offline: bench/README.md "Peers".
set -euo pipefail

PEER_PF_TAG="${PEER_PF_TAG:-v1.2.14}"
PEER_AH_TAG="${PEER_AH_TAG:-v0.11.0}"
if [ "$PEER_PF_TAG" = v1.2.14 ]; then
  PEER_PF_COMMIT="${PEER_PF_COMMIT:-14dd0aca331ff078ae3cb0a62ecbfe83b8e3a531}"
fi
if [ "$PEER_AH_TAG" = v0.11.0 ]; then
  PEER_AH_COMMIT="${PEER_AH_COMMIT:-48be2ff71bbdfc464763fe6dba58b43a8ec5996a}"
fi
PEER_PF_REPO="${PEER_PF_REPO:-https://github.com/postfinance/kubelet-csr-approver}"
PEER_AH_REPO="${PEER_AH_REPO:-https://github.com/alex1989hu/kubelet-serving-cert-approver}"

cache_root="${CSR_APPROVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/csr-approver}"
peers_dir="$cache_root/peers"

log() { printf '[peers] %s\n' "$*" >&2; }
die() { printf '[peers] ERROR: %s\n' "$*" >&2; exit 1; }

mode="dir"
case "${1:-}" in
  "") ;;
  --env) mode="env" ;;
  -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1 (usage: bench/peers.sh [--env])" ;;
esac

command -v go >/dev/null 2>&1 || die "Go is not installed; install Go >= 1.26 (both peers' go.mod require go 1.26.0)"
command -v git >/dev/null 2>&1 || die "git is not installed"

export CGO_ENABLED=0
export GOFLAGS=-mod=readonly # the peers' own go.sum decides every dependency
go_version=$(go env GOVERSION)

work=$(mktemp -d "${TMPDIR:-/tmp}/csr-approver-peers.XXXXXX")
trap 'rm -rf "$work"' EXIT

runs() { "$1" --help >/dev/null 2>&1; }

# Exports TAG of REPO into DEST and checks its commit; prints the commit.
fetch_source() { # fetch_source REPO TAG EXPECTED_COMMIT DEST
  local repo=$1 tag=$2 expected=$3 dest=$4 commit
  mkdir -p "$dest"
  if [ -d "$repo" ]; then
    commit=$(git -C "$repo" rev-parse --verify --quiet "refs/tags/$tag^{commit}") \
      || { log "no tag $tag in $repo"; return 1; }
    git -C "$repo" archive --format=tar "$commit" | tar -x -C "$dest" \
      || { log "git archive $tag of $repo failed"; return 1; }
  else
    git -c advice.detachedHead=false clone --quiet --depth 1 --branch "$tag" "$repo" "$dest" \
      || { log "git clone --branch $tag $repo failed"; return 1; }
    commit=$(git -C "$dest" rev-parse HEAD)
  fi
  if [ -n "$expected" ] && [ "$commit" != "$expected" ]; then
    log "$tag of $repo is commit $commit, expected $expected"
    return 1
  fi
  [ -n "$expected" ] || log "note: $tag is commit $commit (not checked: no pinned commit for this tag)"
  echo "$commit"
}

# Picks GOTOOLCHAIN for a module: local if the installed Go satisfies its go/toolchain lines,
# else auto (the toolchain then comes from the module proxy, if it serves it).
toolchain_for() { # toolchain_for GO_MOD
  local need
  need=$(sed -n 's/^toolchain go\([0-9.]*\).*/\1/p; s/^go \([0-9.]*\).*/\1/p' "$1" | sort -V | tail -1)
  if [ -z "$need" ] || [ "$(printf '%s\n%s\n' "$need" "${go_version#go}" | sort -V | tail -1)" = "${go_version#go}" ]; then
    echo local
  else
    log "note: $1 needs Go $need, installed $go_version: trying GOTOOLCHAIN=auto (module proxy)"
    echo auto
  fi
}

# build_peer NAME TAG COMMIT REPO PACKAGE LDFLAGS_FN; prints the binary's path.
# LDFLAGS_FN COMMIT TAG prints the -ldflags the upstream release build uses.
build_peer() {
  local name=$1 tag=$2 expected=$3 repo=$4 pkg=$5 ldflags_fn=$6
  local dir="$peers_dir/$name-$tag" bin src commit start ldflags
  bin="$dir/bin/$name"
  if [ -x "$bin" ] && runs "$bin"; then
    log "cached: $bin"
    echo "$bin"
    return 0
  fi
  start=$(date +%s)
  src="$work/$name-$tag"
  log "fetching $name $tag from $repo"
  commit=$(fetch_source "$repo" "$tag" "$expected" "$src") || return 1
  ldflags=$("$ldflags_fn" "$commit" "$tag")
  log "building $name $tag ($commit) with $go_version"
  mkdir -p "$dir/bin"
  (cd "$src" && GOTOOLCHAIN=$(toolchain_for go.mod) \
    go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" "$pkg") \
    || { rm -f "$bin.tmp"; log "go build of $name $tag failed"; return 1; }
  runs "$bin.tmp" || { rm -f "$bin.tmp"; log "built $name $tag does not answer --help"; return 1; }
  mv "$bin.tmp" "$bin"
  printf 'repo=%s\ntag=%s\ncommit=%s\npackage=%s\ngo=%s\nldflags=%s\n' \
    "$repo" "$tag" "$commit" "$pkg" "$go_version" "$ldflags" >"$dir/source.txt"
  log "built in $(($(date +%s) - start))s: $bin"
  echo "$bin"
}

# As .ko.yaml of the tag (ko: -trimpath, CGO_ENABLED=0, these -X flags, not stripped).
pf_ldflags() {
  local p=github.com/postfinance/kubelet-csr-approver/internal/cmd
  echo "-X $p.commit=$1 -X $p.ref=refs/tags/$2"
}
# As the Dockerfile of the tag (stripped, no build id).
ah_ldflags() {
  local p=github.com/alex1989hu/kubelet-serving-cert-approver/build
  echo "-buildid= -w -s -X $p.GitBranch=$2 -X $p.GitCommit=${1:0:8} -X '$p.Time=$(date -u)'"
}

start=$(date +%s)
pf_bin="" ah_bin=""
pf_bin=$(build_peer kubelet-csr-approver "$PEER_PF_TAG" "${PEER_PF_COMMIT:-}" "$PEER_PF_REPO" \
  ./cmd/kubelet-csr-approver pf_ldflags) \
  || { pf_bin=""; log "PF (postfinance/kubelet-csr-approver $PEER_PF_TAG) NOT available: see above; the benchmark will skip it"; }
ah_bin=$(build_peer kubelet-serving-cert-approver "$PEER_AH_TAG" "${PEER_AH_COMMIT:-}" "$PEER_AH_REPO" \
  . ah_ldflags) \
  || { ah_bin=""; log "AH (alex1989hu/kubelet-serving-cert-approver $PEER_AH_TAG) NOT available: see above; the benchmark will skip it"; }

[ -n "$pf_bin" ] || [ -n "$ah_bin" ] || die "neither peer could be built"
log "done in $(($(date +%s) - start))s: PF ${pf_bin:-missing}, AH ${ah_bin:-missing}"
if [ "$mode" = env ]; then
  printf 'PEER_PF_BIN=%q\n' "$pf_bin"
  printf 'PEER_AH_BIN=%q\n' "$ah_bin"
else
  echo "$peers_dir"
fi
