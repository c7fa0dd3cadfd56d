#!/usr/bin/env bash
# A throw-away Kubernetes control plane (etcd + kube-apiserver on loopback, no nodes, no
# controller-manager) for trying csr-approver by hand:
#
#   scripts/dev-cluster.sh up       # start in the background (idempotent)
#   eval "$(scripts/dev-cluster.sh env)"
#   kubectl get csr
#   scripts/dev-cluster.sh status
#   scripts/dev-cluster.sh down     # stop and delete all state (and a csr-approver whose pid
#                                   # is in $CSR_APPROVER_DEV_DIR/csr-approver.pid, as the demo's)
#
# State (certificates, etcd data, logs, pid files, admin kubeconfig) lives in
# $CSR_APPROVER_DEV_DIR (default ${XDG_RUNTIME_DIR:-/tmp}/csr-approver-dev).
# Ports: $DEV_ETCD_PORT (23790), $DEV_APISERVER_PORT (16443); peer port is etcd's + 1.
#
# The flags mirror tests/harness/mod.rs (kept in sync by hand; keep both short).
# Certificates are made with openssl so this script does not need a Rust build.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="${CSR_APPROVER_DEV_DIR:-${XDG_RUNTIME_DIR:-/tmp}/csr-approver-dev}"
etcd_port="${DEV_ETCD_PORT:-23790}"
etcd_peer_port=$((etcd_port + 1))
api_port="${DEV_APISERVER_PORT:-16443}"
kubeconfig="$state/admin.kubeconfig"

log() { printf '[dev-cluster] %s\n' "$*" >&2; }
die() { printf '[dev-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

alive() { # alive NAME: the process recorded in NAME.pid is running, and is NAME (not a reused pid)
  local pid
  [ -f "$state/$1.pid" ] && pid=$(cat "$state/$1.pid") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    ps -o args= -p "$pid" 2>/dev/null | grep -q -- "$1"
}

ready() {
  curl -fsS --max-time 2 --cacert "$state/pki/ca.crt" \
    --cert "$state/pki/admin.crt" --key "$state/pki/admin.key" \
    "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1
}

gen_certs() {
  local pki="$state/pki"
  [ -f "$pki/done" ] && return 0
  mkdir -p "$pki"
  (
    cd "$pki"
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec ca.key
    openssl req -x509 -new -key ca.key -subj "/CN=csr-approver-dev-ca" -days 3650 -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    sign() { # sign NAME SUBJECT EXTFILE-CONTENT
      ec "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
      'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' \
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc')"
    sign admin "/O=system:masters/CN=admin" "$(printf '%s\n' \
      'keyUsage=critical,digitalSignature' 'extendedKeyUsage=clientAuth')"
    ec sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    touch done
  )
}

write_kubeconfig() {
  b64() { base64 -w0 <"$1"; }
  cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(b64 "$state/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$state/pki/admin.crt")
    client-key-data: $(b64 "$state/pki/admin.key")
contexts:
- name: dev
  context: {cluster: dev, user: admin}
current-context: dev
EOF
  chmod 600 "$kubeconfig"
}

tail_logs() {
  for n in etcd kube-apiserver; do
    [ -f "$state/$n.log" ] && { echo "--- last lines of $state/$n.log" >&2; tail -n 20 "$state/$n.log" >&2; }
  done
}

up() {
  if alive etcd && alive kube-apiserver && ready; then
    log "already running: $(env_line)"
    return 0
  fi
  alive etcd || alive kube-apiserver && die "half running; run '$0 down' first"
  local assets bin
  assets=$(bash "$repo/scripts/control-plane-assets.sh" | tail -n 1) || die "control-plane-assets.sh failed"
  bin="$assets/bin"
  mkdir -p "$state/etcd"
  gen_certs
  write_kubeconfig

  local started=$SECONDS
  setsid nohup "$bin/etcd" --name dev --data-dir "$state/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "dev=http://127.0.0.1:$etcd_peer_port" --log-level warn \
    </dev/null >"$state/etcd.log" 2>&1 &
  echo $! >"$state/etcd.pid"

  local pki="$state/pki"
  setsid nohup "$bin/kube-apiserver" \
    --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$api_port" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --client-ca-file="$pki/ca.crt" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --authorization-mode=Node,RBAC --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none \
    </dev/null >"$state/kube-apiserver.log" 2>&1 &
  echo $! >"$state/kube-apiserver.pid"

  local deadline=$((SECONDS + 120))
  until ready; do
    if ! alive etcd || ! alive kube-apiserver || [ $SECONDS -ge $deadline ]; then
      tail_logs
      die "control plane did not become ready (state in $state; '$0 down' cleans up)"
    fi
    sleep 0.3
  done
  log "ready in $((SECONDS - started))s: kube-apiserver https://127.0.0.1:$api_port, etcd http://127.0.0.1:$etcd_port"
  log "$(env_line)"
}

down() {
  local n pid
  for n in csr-approver kube-apiserver etcd; do
    if alive "$n"; then
      pid=$(cat "$state/$n.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      log "stopped $n (pid $pid)"
    fi
  done
  rm -rf "$state"
  log "removed $state"
}

env_line() { echo "export KUBECONFIG=$kubeconfig"; }

status() {
  local n rc=0
  for n in etcd kube-apiserver; do
    if alive "$n"; then echo "$n: running (pid $(cat "$state/$n.pid"))"; else echo "$n: not running"; rc=1; fi
  done
  if ready; then echo "readyz: ok (https://127.0.0.1:$api_port)"; else echo "readyz: not ready"; rc=1; fi
  echo "state: $state"
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) [ -f "$kubeconfig" ] || die "not up; run '$0 up'"; env_line ;;
  status) status ;;
  *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
