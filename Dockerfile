# syntax=docker/dockerfile:1
#
# csr-approver container image.
#
#   docker build -t csr-approver:0.1.0 .
#
# Builder and runtime are the same Debian release (12, "bookworm", glibc 2.36): the binary is
# dynamically linked against glibc (rustls + ring, no OpenSSL), so the runtime is distroless
# `cc` (glibc, libgcc, CA certificates, no shell), not `static`. Runs as UID 65532 (nonroot).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- builder ----------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /build
# Strip symbols without touching Cargo.toml's release profile.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# 1. Dependencies only, in their own layer: cached until Cargo.toml or Cargo.lock change.
#    Stub sources stand in for the crate's own code; benches/ is copied because Cargo.toml
#    declares a [[bench]] target whose file must exist for the manifest to load.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/csr-approver* target/release/deps/csr_approver* \
           target/release/deps/libcsr_approver* target/release/.fingerprint/csr-approver-*

# 2. The crate itself.
COPY src ./src
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/csr-approver /out/csr-approver \
 && /out/csr-approver --version

# ---- runtime ----------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="csr-approver" \
      org.opencontainers.image.description="Safely auto-approves kubelet CertificateSigningRequests on bare-metal and UPI OpenShift/Kubernetes clusters" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=builder /out/csr-approver /usr/local/bin/csr-approver
# Numeric, so the kubelet can verify runAsNonRoot. On OpenShift the restricted-v2 SCC
# replaces it with a UID from the namespace's range; the binary needs no writable path.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["csr-approver"]
CMD ["run"]
