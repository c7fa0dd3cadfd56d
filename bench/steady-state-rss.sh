#!/usr/bin/env bash
# Steady-state memory (docs/design.md §9): csr-approver's resident memory with 5000 Nodes and 5000
# Machines cached, beside two baselines measured in the same run on the same control plane:
#   - csr-approver with no Nodes or Machines (what the caches cost is the difference);
#   - the floor (examples/approve_everything.rs), which watches only CSRs, with the same
#     5000 + 5000 objects present (what the client stack itself costs).
# Each process: start, wait until ready (csr-approver: /readyz and holding the Lease), wait
# $STEADY_SETTLE seconds, read VmRSS and VmHWM from /proc/PID/status, stop it.
#
#   bench/steady-state-rss.sh
#
# Environment: STEADY_NODES (5000), STEADY_MACHINES (= nodes), STEADY_SETTLE (10 s),
# STEADY_DIR (/tmp/csr-approver-bench-steady), STEADY_ETCD_PORT (24890, peer +1),
# STEADY_APISERVER_PORT (17543), STEADY_HTTP_PORT (18182).
# Results: a table on stdout and bench/results/steady-state-rss.json.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CSR_APPROVER_DEV_DIR="${STEADY_DIR:-/tmp/csr-approver-bench-steady}"
export DEV_ETCD_PORT="${STEADY_ETCD_PORT:-24890}"
export DEV_APISERVER_PORT="${STEADY_APISERVER_PORT:-17543}"
http_port="${STEADY_HTTP_PORT:-18182}"
nodes="${STEADY_NODES:-5000}"
machines="${STEADY_MACHINES:-$nodes}"
settle="${STEADY_SETTLE:-10}"
results="$repo/bench/results"
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
command -v kubectl >/dev/null || die "kubectl is required"
command -v jq >/dev/null || die "jq is required"

controller_pid=""
floor_pid=""
work=$(mktemp -d)
install_cleanup

# Seconds since an $EPOCHREALTIME value, one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# measure PID NAME SECONDS-TO-READY: after the settle time, one JSON object with VmRSS, VmHWM, CPU so far.
measure() {
  sleep "$settle"
  jq -n --arg name "$2" --argjson rss "$(mem_mib "$1" VmRSS)" --argjson hwm "$(mem_mib "$1" VmHWM)" \
    --argjson cpu "$(cpu_seconds "$1")" --argjson ready "$3" \
    '{name: $name, rss_mib: $rss, peak_rss_mib: $hwm, cpu_seconds: $cpu, seconds_to_ready: $ready}'
}

# The cache sizes the controller reports: max_pending_csrs is max(Machines, Nodes) + 100.
limit_metric() {
  curl -fsS "http://127.0.0.1:$http_port/metrics" | awk '$1 == "csr_approver_max_pending_csrs" { print $2 }'
}

mkdir -p "$results"
build_release
version=$(source_version)
started=$SECONDS
say "fresh control plane in $CSR_APPROVER_DEV_DIR (apiserver :$DEV_APISERVER_PORT, etcd :$DEV_ETCD_PORT)"
cluster_up
load_before=$(load_note)

say "csr-approver, no Nodes or Machines: ready, then ${settle} s"
t=$EPOCHREALTIME
start_controller "$http_port" "$work/controller-empty.log"
empty=$(measure "$controller_pid" "csr-approver, empty cluster" "$(since "$t")")
empty_limit=$(limit_metric)
stop_pid "$controller_pid"; controller_pid=""

say "creating $nodes Nodes and $machines Machines (examples/populate_cluster)"
t=$SECONDS
"$populate_bin" --kubeconfig "$admin_kubeconfig" --nodes "$nodes" --machines "$machines" --prefix steady
populate_seconds=$((SECONDS - t))
node_bytes=$(kubectl get --raw "/api/v1/nodes/steady-0" | wc -c)
machine_bytes=$(kubectl get --raw "/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines/steady-0" | wc -c)
echo "one Node is $node_bytes bytes of JSON, one Machine $machine_bytes (with managedFields)" >&2

say "csr-approver with $nodes Nodes + $machines Machines: ready, then ${settle} s"
t=$EPOCHREALTIME
start_controller "$http_port" "$work/controller-full.log"
full=$(measure "$controller_pid" "csr-approver, $nodes Nodes + $machines Machines" "$(since "$t")")
full_limit=$(limit_metric)
stop_pid "$controller_pid"; controller_pid=""
expected=$(( (nodes > machines ? nodes : machines) + 100 ))
[ "${full_limit%.*}" = "$expected" ] ||
  printf 'bench: WARNING: csr_approver_max_pending_csrs is %s, expected %s (caches incomplete?)\n' "$full_limit" "$expected" >&2

say "floor (approve_everything, CSRs only) with the same objects: ${settle} s"
start_floor "$work/floor.log" # no readiness signal: seconds_to_ready is null
floor=$(measure "$floor_pid" "floor (approve_everything), same objects" null)
stop_pid "$floor_pid"; floor_pid=""

load_after=$(load_note)
out="$results/steady-state-rss.json"
jq -n --argjson nodes "$nodes" --argjson machines "$machines" --argjson settle "$settle" \
  --arg version "$version" --arg when "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --argjson empty "$empty" --argjson full "$full" --argjson floor "$floor" \
  --arg empty_limit "$empty_limit" --arg full_limit "$full_limit" \
  --argjson populate "$populate_seconds" --argjson node_bytes "$node_bytes" --argjson machine_bytes "$machine_bytes" \
  --arg before "$load_before" --arg after "$load_after" --argjson seconds "$((SECONDS - started))" \
  '{nodes: $nodes, machines: $machines, settle_seconds: $settle, csr_approver_version: $version,
    measured_at: $when, leader_election: true,
    csr_approver_full: ($full + {max_pending_csrs: ($full_limit | tonumber)}),
    csr_approver_empty: ($empty + {max_pending_csrs: ($empty_limit | tonumber)}),
    floor: $floor,
    node_json_bytes: $node_bytes, machine_json_bytes: $machine_bytes, populate_seconds: $populate,
    machine: {load_before: $before, load_after: $after}, bench_seconds: $seconds}' >"$out"

say "results ($out; $((SECONDS - started)) s; $load_after)"
jq -r '
  def r($x): ($x * 10 | round / 10);
  . as $a |
  ["| process | VmRSS MiB | VmHWM MiB | CPU s (start + sync + settle) | s to ready |",
   "| --- | --- | --- | --- | --- |",
   ($a.csr_approver_full, $a.csr_approver_empty, $a.floor
    | "| \(.name) | \(.rss_mib) | \(.peak_rss_mib) | \(.cpu_seconds) | \(.seconds_to_ready // "—") |"),
   "",
   "csr-approver with objects ÷ floor: VmRSS \(r($a.csr_approver_full.rss_mib / $a.floor.rss_mib))×, VmHWM \(r($a.csr_approver_full.peak_rss_mib / $a.floor.peak_rss_mib))×",
   "csr-approver with objects ÷ csr-approver empty: VmRSS \(r($a.csr_approver_full.rss_mib / $a.csr_approver_empty.rss_mib))×, VmHWM \(r($a.csr_approver_full.peak_rss_mib / $a.csr_approver_empty.peak_rss_mib))×",
   "cache cost: \(r($a.csr_approver_full.rss_mib - $a.csr_approver_empty.rss_mib)) MiB VmRSS for \($a.nodes) Nodes + \($a.machines) Machines (\(((($a.csr_approver_full.rss_mib - $a.csr_approver_empty.rss_mib) * 1048576 / ($a.nodes + $a.machines)) | round)) bytes per object)"]
  | .[]' "$out"
