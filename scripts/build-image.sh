#!/usr/bin/env bash
# Builds the csr-approver container image from the repository's Dockerfile, offline: no
# base image is pulled and no registry is needed.
#
#   scripts/build-image.sh [--save PATH] [IMAGE]
#
#   IMAGE        default localhost/csr-approver/csr-approver:<Cargo.toml version>, which is
#                what the Helm chart and deploy/ refer to by default
#   --save PATH  also write the image as an OCI archive, for a node's containerd:
#                  ctr -n k8s.io images import PATH
#
# 1. `cargo build --release --locked` of a **static** binary for the host's glibc target
#    (`-C target-feature=+crt-static`; rustls + ring, no OpenSSL, nothing dlopen'ed), in its
#    own target directory target/static/ (cached: a warm run only relinks what changed);
#    checked to have no ELF interpreter and no shared-library dependency; without the
#    default `tools` feature (the join simulator, the benchmark helpers: never shipped);
# 2. the binary is staged as target/static/csr-approver (the one file .dockerignore lets in
#    from target/);
# 3. `podman build` of the Dockerfile's default stage: FROM scratch + that binary, UID
#    65532, ENTRYPOINT csr-approver, CMD run.
#
# When podman is missing, scripts/node-packages.sh installs it from Debian (needs root).
# Progress goes to stderr; the last line on stdout is the image reference.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }

save=""
image=""
while [ $# -gt 0 ]; do
  case "$1" in
    --save) [ $# -ge 2 ] || die "--save needs a path"; save="$2"; shift 2 ;;
    --save=*) save="${1#--save=}"; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$image" ] || die "more than one IMAGE given"; image="$1"; shift ;;
  esac
done

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ -n "$version" ] || die "cannot read the package version from Cargo.toml"
image="${image:-localhost/csr-approver/csr-approver:$version}"

# --- podman -------------------------------------------------------------------------------
if ! command -v podman >/dev/null 2>&1; then
  log "podman is not installed: installing it (scripts/node-packages.sh)"
  bash scripts/node-packages.sh
  command -v podman >/dev/null 2>&1 || die "podman is still not installed"
fi

# --- 1. the static binary -----------------------------------------------------------------
triple="$(rustc -vV | sed -n 's/^host: //p')"
case "$triple" in
  *-linux-gnu) ;;
  *) die "host target $triple: this script builds a static glibc binary (*-linux-gnu) only" ;;
esac
start=$(date +%s)
log "cargo build --release --locked --target $triple --no-default-features (static, target/static/)"
# RUSTFLAGS with an explicit --target applies to the binary only, not to build scripts and
# proc macros (which cannot be static). Symbols are stripped without touching Cargo.toml.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --release --locked --target "$triple" --target-dir target/static \
  --no-default-features --bin csr-approver >&2 || die "cargo build failed"
built="target/static/$triple/release/csr-approver"
[ -x "$built" ] || die "cargo did not produce $built"

# Static means: no program interpreter (ld-linux) and no DT_NEEDED entry.
if readelf -lW "$built" | grep -q 'Requesting program interpreter' \
   || readelf -dW "$built" 2>/dev/null | grep -q '(NEEDED)'; then
  die "$built is dynamically linked: $(file -b "$built")"
fi
"$built" --version >/dev/null || die "$built --version failed"

# --- 2. staged where the Dockerfile expects it ----------------------------------------------
# Copied only when it changed: an unchanged binary is left as it is.
staged=target/static/csr-approver
if ! cmp -s "$built" "$staged"; then
  install -m 0755 "$built" "$staged.tmp" && mv "$staged.tmp" "$staged"
fi
log "binary: $staged ($(stat -c %s "$staged") bytes; $(file -b "$staged" | cut -d, -f1-2)) in $(( $(date +%s) - start ))s"

# --- 3. the image ---------------------------------------------------------------------------
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain -- Cargo.toml Cargo.lock src 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
# --no-cache: podman's layer cache ignores build-arg values, so a cached LABEL step would keep
# an earlier revision; the FROM-scratch build has no RUN step and takes a second anyway.
# --layers=false --squash-all: one layer (the binary), no intermediate images left behind.
# --timestamp (the commit's time) makes the same binary and labels give the same image ID.
build_args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision"
            --no-cache --layers=false --squash-all --timestamp "$(git log -1 --format=%ct 2>/dev/null || echo 0)")
previous="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
start=$(date +%s)
log "podman build -f Dockerfile -t $image"
# --pull=never: the default stage is FROM scratch; nothing is fetched.
podman build --pull=never -f Dockerfile -t "$image" "${build_args[@]}" . >&2 || die "podman build failed"
log "image $image built in $(( $(date +%s) - start ))s"
# The image this tag named before, now untagged: remove it (it is ours; others are left alone).
current="$(podman image inspect --format '{{.Id}}' "$image")"
if [ -n "$previous" ] && [ "$previous" != "$current" ] \
   && [ -z "$(podman image inspect --format '{{join .RepoTags ""}}' "$previous" 2>/dev/null)" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi

if [ -n "$save" ]; then
  mkdir -p "$(dirname "$save")"
  rm -f "$save"
  podman save --format oci-archive -o "$save" "$image" >&2 || die "saving $image to $save failed"
  log "saved: $save ($(stat -c %s "$save") bytes; load it with: ctr -n k8s.io images import $save)"
fi
echo "$image"
