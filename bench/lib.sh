# shellcheck shell=bash disable=SC2034,SC2154
# Shared by bench/join-storm.sh, bench/steady-state-rss.sh and bench/side-by-side.sh (sourced,
# not run).
# Expects: $repo (repository root), CSR_APPROVER_DEV_DIR, DEV_ETCD_PORT, DEV_APISERVER_PORT
# exported, and `set -euo pipefail`.

# Bold for a person at a terminal; a log of the run gets plain text.
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
else
  say() { printf '\n==> %s\n' "$*" >&2; }
fi
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

clk_tck=$(getconf CLK_TCK)
bin="$repo/target/release/csr-approver"
# The load tools (cargo feature `tools`, on by default; never in the image).
simulate_bin="$repo/target/release/csr-approver-simulate"
floor_bin="$repo/target/release/examples/approve_everything"
populate_bin="$repo/target/release/examples/populate_cluster"

build_release() {
  say "cargo build --release --locked (csr-approver, csr-approver-simulate, examples approve_everything + populate_cluster)"
  (cd "$repo" && cargo build --release --locked --quiet --bin csr-approver \
    --bin csr-approver-simulate --example approve_everything --example populate_cluster)
}

# What was measured: the commit, and whether src/ had uncommitted changes.
source_version() {
  local rev dirty=""
  rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || dirty="+dirty"
  echo "$rev$dirty"
}

# CPU seconds (user + system) a process has used so far.
cpu_seconds() { # cpu_seconds PID
  local fields
  # Field 2 (comm) may hold spaces: cut everything up to ") "; utime/stime are then $12/$13.
  fields=$(sed 's/^.*) //' "/proc/$1/stat") || { echo 0; return; }
  echo "$fields" | awk -v t="$clk_tck" '{ printf "%.2f", ($12 + $13) / t }'
}

# A /proc/PID/status memory line in MiB (VmRSS, VmHWM).
mem_mib() { # mem_mib PID FIELD
  awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# Machine-wide busy CPU ticks so far (/proc/stat: user, nice, system, irq, softirq, steal).
busy_ticks() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# Samples a process's VmRSS every 0.25 s into FILE ("seconds,MiB", seconds since the
# sampler started) until the process ends or the sampler is stopped (stop_pid). Sets
# $sampler_pid.
sample_rss() { # sample_rss PID FILE
  local pid=$1 file=$2
  (
    t0=$EPOCHREALTIME
    echo "seconds,rss_mib"
    while [ -r "/proc/$pid/status" ]; do
      while read -r key value _; do
        [ "$key" = VmRSS: ] || continue
        awk -v a="$t0" -v b="$EPOCHREALTIME" -v kb="$value" 'BEGIN { printf "%.2f,%.1f\n", b - a, kb / 1024 }'
        break
      done <"/proc/$pid/status" 2>/dev/null || break
      sleep 0.25
    done
  ) >"$file" &
  sampler_pid=$!
}

# Stops a process we started and waits for it.
stop_pid() { # stop_pid PID
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cluster_down() { bash "$repo/scripts/dev-cluster.sh" down >/dev/null 2>&1 || true; }

# A fresh control plane with the Machine CRD, csr-approver's namespace/SA/RBAC/policy from
# deploy/, the OpenShift node-bootstrapper allowed to create CSRs, and a kubeconfig for
# the csr-approver ServiceAccount in $state/controller.kubeconfig (as scripts/demo.sh).
cluster_up() {
  cluster_down
  bash "$repo/scripts/dev-cluster.sh" up
  eval "$(bash "$repo/scripts/dev-cluster.sh" env)"
  admin_kubeconfig="$KUBECONFIG"
  (
    cd "$repo" || exit 1
    kubectl apply -f tests/fixtures/crds/machines.machine.openshift.io.yaml >/dev/null
    kubectl wait --for=condition=Established crd/machines.machine.openshift.io --timeout=60s >/dev/null
    kubectl apply -f deploy/crd.yaml -f deploy/namespace.yaml -f deploy/serviceaccount.yaml \
      -f deploy/rbac.yaml -f deploy/policy-configmap.yaml >/dev/null
    kubectl wait --for=condition=Established crd/nodeidentities.csr-approver.io --timeout=60s >/dev/null
    kubectl create clusterrolebinding bench-node-bootstrapper --clusterrole=system:node-bootstrapper \
      --user=system:serviceaccount:openshift-machine-config-operator:node-bootstrapper \
      --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  )
  local token server
  token=$(kubectl create token csr-approver -n csr-approver --duration=2h)
  server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  controller_kubeconfig="$CSR_APPROVER_DEV_DIR/controller.kubeconfig"
  cat >"$controller_kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "$server", certificate-authority: "$CSR_APPROVER_DEV_DIR/pki/ca.crt"}}]
users: [{name: csr-approver, user: {token: "$token"}}]
contexts: [{name: bench, context: {cluster: bench, user: csr-approver}}]
current-context: bench
KUBECONFIG
  chmod 600 "$controller_kubeconfig"
  apiserver_pid=$(cat "$CSR_APPROVER_DEV_DIR/kube-apiserver.pid")
  etcd_pid=$(cat "$CSR_APPROVER_DEV_DIR/etcd.pid")
}

# Starts csr-approver (release) under its ServiceAccount; leader election ON (the default,
# as deployed). Waits for /readyz and for it to hold the Lease. Sets $controller_pid.
start_controller() { # start_controller HTTP_PORT LOG [BINARY]
  local port=$1 log=$2 binary=${3:-$bin}
  NO_COLOR=1 "$binary" run --kubeconfig "$controller_kubeconfig" --namespace csr-approver \
    --http-addr "127.0.0.1:$port" --identity bench-replica >"$log" 2>&1 &
  controller_pid=$!
  local deadline=$((SECONDS + 180))
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | grep -q '^csr_approver_leader 1'; do
    kill -0 "$controller_pid" 2>/dev/null || { tail -n 30 "$log" >&2; die "csr-approver exited"; }
    [ $SECONDS -lt $deadline ] || { tail -n 30 "$log" >&2; die "csr-approver not ready/leading in 180 s"; }
    sleep 0.2
  done
}

# Starts the floor (approve everything, as cluster admin). Sets $floor_pid.
start_floor() { # start_floor LOG
  "$floor_bin" --kubeconfig "$admin_kubeconfig" >"$1" 2>&1 &
  floor_pid=$!
  local deadline=$((SECONDS + 30))
  until grep -q 'watching' "$1" 2>/dev/null; do
    kill -0 "$floor_pid" 2>/dev/null || { cat "$1" >&2; die "approve_everything exited"; }
    [ $SECONDS -lt $deadline ] || die "approve_everything did not start"
    sleep 0.1
  done
  sleep 1 # its first list
}

# Deletes what csr-approver-simulate created (CSRs, Nodes, Machines, by its label), so the
# next contender starts from the same cluster as the one before.
delete_simulated() {
  local sel="labelSelector=csr-approver.io/simulation"
  kubectl delete --raw "/apis/certificates.k8s.io/v1/certificatesigningrequests?$sel" >/dev/null
  kubectl delete --raw "/api/v1/nodes?$sel" >/dev/null
  kubectl delete --raw "/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines?$sel" >/dev/null
  local deadline=$((SECONDS + 120))
  while [ "$(kubectl get csr,nodes -l csr-approver.io/simulation -o name | wc -l)" -gt 0 ] ||
    [ "$(kubectl get machines.machine.openshift.io -A -l csr-approver.io/simulation -o name | wc -l)" -gt 0 ]; do
    [ $SECONDS -lt $deadline ] || die "simulated objects not deleted after 120 s"
    sleep 0.5
  done
}

# Is anything listening on these TCP ports (any address)?
ports_busy() { # ports_busy PORT...
  local port
  for port in "$@"; do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
  done
  return 1
}

# Waits until URL answers 2xx while PID lives; on failure shows LOG and dies.
wait_http() { # wait_http NAME PID URL LOG TIMEOUT_S
  local deadline=$((SECONDS + $5))
  until curl -fsS "$3" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { tail -n 30 "$4" >&2; die "$1 exited"; }
    [ $SECONDS -lt "$deadline" ] || { tail -n 30 "$4" >&2; die "$1 not ready in $5 s"; }
    sleep 0.05
  done
}

# Waits until LOG has a line matching PATTERN (grep -E) while PID lives.
wait_log() { # wait_log NAME PID LOG PATTERN TIMEOUT_S
  local deadline=$((SECONDS + $5))
  until grep -qE "$4" "$3" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || { tail -n 30 "$3" >&2; die "$1 exited"; }
    [ $SECONDS -lt "$deadline" ] || { tail -n 30 "$3" >&2; die "$1 did not log /$4/ in $5 s"; }
    sleep 0.05
  done
}

# The peers (bench/peers.sh; README "Peers"), as cluster admin, leader election off (their
# default). Each waits for its health probe, then for controller-runtime's "Starting
# workers" (its informer has synced, the reconciler runs). Set $pf_pid / $ah_pid.
# PF: loopback ports for metrics and the probe (only /healthz: it adds no readiness
# check); no DNS; every node name and IP allowed.
start_pf() { # start_pf METRICS_PORT HEALTH_PORT LOG
  "$PEER_PF_BIN" --kubeconfig "$admin_kubeconfig" \
    --metrics-bind-address "127.0.0.1:$1" --health-probe-bind-address "127.0.0.1:$2" \
    --bypass-dns-resolution --provider-regex '.*' --provider-ip-prefixes 0.0.0.0/0,::/0 \
    >"$3" 2>&1 &
  pf_pid=$!
  wait_http PF "$pf_pid" "http://127.0.0.1:$2/healthz" "$3" 60
  wait_log PF "$pf_pid" "$3" 'Starting workers' 60
}
# AH: kubeconfig only from $KUBECONFIG; :8080 (probes) and :9090 (metrics) on all
# interfaces, hard-coded: the caller checks they are free (ports_busy 8080 9090).
start_ah() { # start_ah LOG
  KUBECONFIG="$admin_kubeconfig" "$PEER_AH_BIN" serve >"$1" 2>&1 &
  ah_pid=$!
  wait_http AH "$ah_pid" "http://127.0.0.1:8080/readyz" "$1" 60
  wait_log AH "$ah_pid" "$1" 'Starting workers' 60
}

load_note() {
  local others
  others=$(ps -eo pid=,pcpu=,args= | awk '$2 > 20 && $3 !~ /(etcd|kube-apiserver|csr-approver|approve_everything|populate_cluster)/ { $1=""; print substr($0, 1, 100) }' | head -n 3 | tr '\n' ';')
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores${others:+; busy: $others}"
}

# Is another cargo/rustc (e.g. CI in /work/ci-check) running? Printed with the results.
concurrent_builds() {
  local n
  # (Not pgrep: it refuses patterns longer than 15 characters and would count 0.)
  # shellcheck disable=SC2009
  n=$(ps -eo comm= | grep -cxE 'rustc|cargo|cc1|cc1plus|ld|go|compile|link' || true)
  echo "${n:-0}"
}

# Stops the contenders recorded in $controller_pid/$floor_pid/$pf_pid/$ah_pid and the helpers
# in $sampler_pid/$extra_pids, tears the cluster down and removes $work, on any exit.
cleanup() {
  local pid
  for pid in ${sampler_pid:-} ${extra_pids:-} ${controller_pid:-} ${floor_pid:-} ${pf_pid:-} ${ah_pid:-}; do
    stop_pid "$pid"
  done
  cluster_down
  rm -rf "${work:?}"
}
install_cleanup() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# Warm-up, not measured: N nodes join under the floor, then everything they created is
# deleted, so that the first contender does not pay for a cold apiserver.
# Expects $simulate_bin, $admin_kubeconfig, $concurrency, $timeout and $work.
warm_up() { # warm_up N
  [ "$1" -gt 0 ] || return 0
  say "warm-up (unmeasured): $1 nodes join, approved by the floor"
  start_floor "$work/warmup.log"
  "$simulate_bin" --kubeconfig "$admin_kubeconfig" --nodes "$1" --prefix warmup \
    --concurrency "$concurrency" --timeout "$timeout" >/dev/null
  stop_pid "$floor_pid"; floor_pid=""
  delete_simulated
}
