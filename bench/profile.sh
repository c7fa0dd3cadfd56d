#!/usr/bin/env bash
# Where csr-approver's CPU goes in a storm (issue #13): `perf record` (cpu-clock samples, so it
# works on VMs without hardware counters) on the running controller while
# `csr-approver-simulate` plays a storm against a fresh local control plane, then the
# samples grouped by the work they belong to (JSON decoding, TLS, HTTP, request parsing and
# signature checks, decisions, logging, allocator, runtime) and the top symbols.
#
#   bench/profile.sh                 # serving storm, 2000 nodes
#   PROFILE_MODE=join bench/profile.sh 1000
#
# Environment: PROFILE_MODE (serving | join; serving = --serving-only), PROFILE_FREQ (sampling
# Hz, 999), PROFILE_CALL_GRAPH (dwarf: record stacks too, for `perf report --children`),
# PROFILE_CONCURRENCY (50), PROFILE_BIN (the csr-approver binary to profile,
# target/release/csr-approver), PROFILE_DIR (/tmp/csr-approver-bench-profile),
# PROFILE_ETCD_PORT (25090, peer +1), PROFILE_APISERVER_PORT (17743), PROFILE_HTTP_PORT (18186).
# Needs `perf` (Debian's linux-perf). Results: bench/results/profile-<mode>-<N>.{txt,data}.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CSR_APPROVER_DEV_DIR="${PROFILE_DIR:-/tmp/csr-approver-bench-profile}"
export DEV_ETCD_PORT="${PROFILE_ETCD_PORT:-25090}"
export DEV_APISERVER_PORT="${PROFILE_APISERVER_PORT:-17743}"
http_port="${PROFILE_HTTP_PORT:-18186}"
mode="${PROFILE_MODE:-serving}"
freq="${PROFILE_FREQ:-999}"
call_graph=()
[ -n "${PROFILE_CALL_GRAPH:-}" ] && call_graph=(--call-graph "$PROFILE_CALL_GRAPH")
concurrency="${PROFILE_CONCURRENCY:-50}"
nodes="${1:-2000}"
results="$repo/bench/results"
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
profiled_bin="${PROFILE_BIN:-$bin}"
command -v perf >/dev/null || die "perf is required (apt-get install -y linux-perf)"
command -v kubectl >/dev/null || die "kubectl is required"
[[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "not a positive count: $nodes"
case $mode in serving) sim_mode=(--serving-only) ;; join) sim_mode=() ;; *) die "PROFILE_MODE: serving or join, not $mode" ;; esac

controller_pid="" floor_pid="" extra_pids=""
timeout=60s
work=$(mktemp -d)
install_cleanup

build_release
mkdir -p "$results"
data="$results/profile-$mode-$nodes.data"
report="$results/profile-$mode-$nodes.txt"
cluster_up
warm_up 100
start_controller "$http_port" "$work/controller.log" "$profiled_bin"
cpu0=$(cpu_seconds "$controller_pid")
perf record -e cpu-clock -F "$freq" "${call_graph[@]}" -p "$controller_pid" -o "$data" 2>"$work/perf.err" &
perf_pid=$!
extra_pids=$perf_pid
sleep 0.5
say "$mode storm of $nodes nodes under perf record ($freq Hz)"
"$simulate_bin" --kubeconfig "$admin_kubeconfig" --nodes "$nodes" --prefix prof "${sim_mode[@]}" \
  --concurrency "$concurrency" --timeout "$timeout" -o json >"$work/sim.out" 2>"$work/sim.err" ||
  { tail -n 20 "$work/sim.err" >&2; die "simulate failed"; }
cpu1=$(cpu_seconds "$controller_pid")
kill -INT "$perf_pid"; wait "$perf_pid" || true; extra_pids=""
approvals=$(grep -h '^{' "$work/sim.out" | tail -n 1 | jq --arg m "$mode" '.joined * (if $m == "join" then 2 else 1 end)')

# Symbols → the work they belong to (first match wins; a symbol's crate path names it).
# Lines read "  12.34%  [.] symbol   -  -" (columns padded; [k] = kernel): keep the share,
# the symbol and whether it is the kernel's.
perf report -i "$data" --no-children --sort symbol --stdio -g none 2>/dev/null |
  sed -nE 's/^ +([0-9.]+)% +\[([.k])\] (.*[^ -]) *( +-)* *$/\1\t\3\t\2/p' >"$work/symbols.tsv"
{
  echo "csr-approver $(source_version), $mode storm, $nodes nodes, $approvals approvals; controller CPU $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') s ($(awk -v a="$cpu0" -v b="$cpu1" -v n="$approvals" 'BEGIN { printf "%.2f", (b - a) * 1000 / n }') ms per approval); perf cpu-clock at $freq Hz"
  echo
  echo "share of samples by kind of work:"
  awk -F '\t' '
    function kind(s, mark) {
      if (mark == "k") return "runtime and kernel"
      if (s ~ /serde_json|serde::de|k8s_openapi.*[Dd]eserial|Visitor|deserialize/) return "JSON decoding"
      if (s ~ /serde::ser|[Ss]erializ|to_vec|to_value/) return "JSON encoding"
      if (s ~ /ring::|ring_core|rustls|aes|gcm|chacha|sha256|p256|nistz256|ecdsa|bn_|x25519|GFp_/) return "TLS and signatures (ring, rustls)"
      if (s ~ /x509_parser|der_parser|asn1_rs|x509_cert|der::|nom::|request::/) return "CSR request parsing"
      if (s ~ /hyper|h2::|http::|httparse|tower|kube_client/) return "HTTP client (hyper, kube-client)"
      if (s ~ /tracing|fmt::|core::fmt|Formatter|write_str|write_fmt/) return "logging and formatting"
      if (s ~ /malloc|free|realloc|calloc|memcpy|memmove|memset|_int_|alloc::|RawVec|drop_in_place/) return "allocation, copying, dropping"
      if (s ~ /csr_approver::decision|csr_approver::inventory|csr_approver::facts|csr_approver::cluster/) return "csr-approver: cache and decisions"
      if (s ~ /csr_approver::/) return "csr-approver: other"
      if (s ~ /tokio|futures|mio|epoll|parking_lot|__lll|pthread|syscall/) return "runtime and kernel"
      return "other"
    }
    { share[kind($2, $3)] += $1 }
    END { for (k in share) printf "  %5.1f%%  %s\n", share[k], k }' "$work/symbols.tsv" | sort -rn
  echo
  echo "top symbols:"
  head -n 40 "$work/symbols.tsv" | awk -F '\t' '{ printf "  %6s%%  %s\n", $1, substr($2, 1, 150) }'
} >"$report"
cat "$report"
say "profile: $report (perf data: $data; perf report -i $data)"
