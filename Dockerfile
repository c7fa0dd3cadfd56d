# csr-approver container image: one static binary on an empty base (FROM scratch). No shell,
# no libc, no CA bundle (in a cluster the client trusts the ServiceAccount's ca.crt), no
# package manager; runs as UID/GID 65532.
#
# The binary is statically linked against glibc 2.36 (`-C target-feature=+crt-static`;
# rustls + ring, no OpenSSL). In a Pod it reaches the API server at KUBERNETES_SERVICE_HOST,
# an IP address, and trusts the mounted ServiceAccount ca.crt. Host names resolve too: the
# static glibc has the `files` and `dns` lookups built in (nothing is dlopen'ed) and reads the
# /etc/hosts and /etc/resolv.conf that the container runtime mounts. For `csr-approver check
# --kubeconfig` in this image, the kubeconfig must name its CA (certificate-authority[-data]):
# there is no system CA bundle to fall back on (or mount one and set SSL_CERT_FILE).
#
# Two ways to build it, one result:
#
# * Default (the last stage, `image`): the binary is built on the host, then copied in.
#   This is what the tests build and run, offline (no base image is pulled):
#
#     scripts/build-image.sh                  # cargo build (static) + podman build -f Dockerfile .
#     podman push localhost/csr-approver/csr-approver:0.1.0 <registry>/csr-approver:0.1.0
#
#   By hand: build target/static/csr-approver as scripts/build-image.sh does, then
#   `podman build -t <image> .` (or `docker build`, BuildKit).
#
# * Stage `from-source`: the binary is built inside docker.io/library/rust (needs access to
#   Docker Hub and crates.io), for machines with no Rust toolchain:
#
#     docker build --target from-source -t <registry>/csr-approver:0.1.0 .
#
#   Same compiler flags as scripts/build-image.sh; the runtime stage is shared.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- runtime: what every build of the image is ----------------------------------------------
FROM scratch AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="csr-approver" \
      org.opencontainers.image.description="Safely auto-approves kubelet CertificateSigningRequests on bare-metal and UPI OpenShift/Kubernetes clusters" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"
# The only directory of the image; ENTRYPOINT is looked up on this PATH.
ENV PATH=/usr/local/bin
# Numeric, so the kubelet can verify runAsNonRoot. On OpenShift the restricted-v2 SCC
# replaces it with a UID from the namespace's range; the binary needs no writable path.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["csr-approver"]
CMD ["run"]

# ---- builder (stage `from-source` only) -------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /build
# Static glibc binary, symbols stripped, without touching Cargo.toml's release profile.
# --no-default-features: the image is the controller only, without the `tools` feature
# (the join simulator and the benchmark helpers).
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# 1. Dependencies only, in their own layer: cached until Cargo.toml or Cargo.lock change.
#    Stub sources stand in for the crate's own code; benches/ is copied because Cargo.toml
#    declares a [[bench]] target whose file must exist for the manifest to load, and the
#    [[example]]s it declares (tools, never built here) get stubs for the same reason. An
#    explicit --target keeps RUSTFLAGS off build scripts and proc macros (which cannot be
#    static).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN triple="$(rustc -vV | sed -n 's/^host: //p')" \
 && mkdir -p src examples \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && for example in approve_everything populate_cluster; do echo 'fn main() {}' > "examples/$example.rs"; done \
 && cargo build --release --locked --target "$triple" --no-default-features --bin csr-approver \
 && rm -rf src examples target/"$triple"/release/csr-approver* target/"$triple"/release/deps/csr_approver* \
           target/"$triple"/release/deps/libcsr_approver* target/"$triple"/release/.fingerprint/csr-approver-*

# 2. The crate itself; refused unless the result is static (no interpreter, no DT_NEEDED).
COPY src ./src
RUN triple="$(rustc -vV | sed -n 's/^host: //p')" \
 && cargo build --release --locked --target "$triple" --no-default-features --bin csr-approver \
 && install -D -m 0755 target/"$triple"/release/csr-approver /out/csr-approver \
 && ! readelf -lW /out/csr-approver | grep -q 'Requesting program interpreter' \
 && ! readelf -dW /out/csr-approver | grep -q '(NEEDED)' \
 && /out/csr-approver --version

# ---- from-source: the image, with the binary built above ------------------------------------
FROM runtime AS from-source
COPY --from=builder /out/csr-approver /usr/local/bin/csr-approver

# ---- image (default): the binary built on the host by scripts/build-image.sh ----------------
FROM runtime AS image
COPY target/static/csr-approver /usr/local/bin/csr-approver
