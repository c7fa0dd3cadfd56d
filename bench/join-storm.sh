#!/usr/bin/env bash
# Join storm (docs/design.md §9): N kubelets join a real local kube-apiserver at once
# (`csr-approver-simulate`: Machine → client CSR → Node → serving CSR), first with the floor
# (examples/approve_everything.rs: approve every kubelet CSR, no checks, same client
# stack), then with csr-approver (release build, its ServiceAccount and deploy/ RBAC,
# leader election on). Every number is printed beside the floor's from the same run.
#
#   bench/join-storm.sh              # N = 100 and 1000
#   bench/join-storm.sh 100 1000 5000
#
# Environment: JOIN_STORM_CONCURRENCY (nodes joining at once, default 50),
# JOIN_STORM_TIMEOUT (per CSR, default 60s), JOIN_STORM_WARMUP (nodes joined, unmeasured,
# on each fresh control plane before the floor's run, so the floor does not pay for a cold
# apiserver; default 100, 0 skips), JOIN_STORM_DIR (state, default
# /tmp/csr-approver-bench-join-storm), JOIN_STORM_ETCD_PORT (24790, peer +1),
# JOIN_STORM_APISERVER_PORT (17443), JOIN_STORM_HTTP_PORT (18181).
# Results: a table per N on stdout, bench/results/join-storm-<N>.json.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CSR_APPROVER_DEV_DIR="${JOIN_STORM_DIR:-/tmp/csr-approver-bench-join-storm}"
export DEV_ETCD_PORT="${JOIN_STORM_ETCD_PORT:-24790}"
export DEV_APISERVER_PORT="${JOIN_STORM_APISERVER_PORT:-17443}"
http_port="${JOIN_STORM_HTTP_PORT:-18181}"
concurrency="${JOIN_STORM_CONCURRENCY:-50}"
timeout="${JOIN_STORM_TIMEOUT:-60s}"
warmup="${JOIN_STORM_WARMUP:-100}"
results="$repo/bench/results"
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000)
for n in "${sizes[@]}"; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "not a node count: $n"; done
command -v kubectl >/dev/null || die "kubectl is required"
command -v jq >/dev/null || die "jq is required"

controller_pid=""
floor_pid=""
work=$(mktemp -d)
install_cleanup

# One contender: measure_run KIND PID N PREFIX OUT.json. The process is already running
# (started, ready); it is stopped here after the measurements.
measure_run() {
  local kind=$1 pid=$2 n=$3 prefix=$4 out=$5
  local cpu0 api0 etcd0 sys0 cpu1 api1 etcd1 sys1 hwm rss rc=0 report
  cpu0=$(cpu_seconds "$pid"); api0=$(cpu_seconds "$apiserver_pid"); etcd0=$(cpu_seconds "$etcd_pid")
  sys0=$(busy_ticks)
  say "N=$n: $kind — simulate --nodes $n --concurrency $concurrency --prefix $prefix"
  /usr/bin/time -f '%e %U %S' -o "$work/time" \
    "$simulate_bin" --kubeconfig "$admin_kubeconfig" --nodes "$n" --prefix "$prefix" \
    --concurrency "$concurrency" --timeout "$timeout" -o json >"$work/sim.out" 2>"$work/sim.err" || rc=$?
  cpu1=$(cpu_seconds "$pid"); api1=$(cpu_seconds "$apiserver_pid"); etcd1=$(cpu_seconds "$etcd_pid")
  sys1=$(busy_ticks)
  hwm=$(mem_mib "$pid" VmHWM); rss=$(mem_mib "$pid" VmRSS)
  stop_pid "$pid"
  # On failure simulate prints "error: simulation failed:" and the JSON report on stderr.
  report=$(grep -h '^{' "$work/sim.out" "$work/sim.err" | tail -n 1 || true)
  if [ -z "$report" ]; then
    cat "$work/sim.err" >&2
    die "$kind: simulate produced no report (exit $rc)"
  fi
  [ "$rc" -eq 0 ] || printf 'bench: WARNING: %s: simulate exited %s (failures in the report)\n' "$kind" "$rc" >&2
  # GNU time prints "Command exited with non-zero status N" first when it did.
  read -r _ sim_user sim_sys < <(tail -n 1 "$work/time")
  jq -n --argjson report "$report" --arg kind "$kind" --argjson rc "$rc" \
    --argjson cpu "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')" \
    --argjson cpu_total "$cpu1" --argjson hwm "$hwm" --argjson rss "$rss" \
    --argjson api "$(awk -v a="$api0" -v b="$api1" 'BEGIN { printf "%.2f", b - a }')" \
    --argjson etcd "$(awk -v a="$etcd0" -v b="$etcd1" 'BEGIN { printf "%.2f", b - a }')" \
    --argjson sim_cpu "$(awk -v u="$sim_user" -v s="$sim_sys" 'BEGIN { printf "%.2f", u + s }')" \
    --argjson busy "$(awk -v a="$sys0" -v b="$sys1" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }')" \
    '{
      contender: $kind,
      simulate_exit: $rc,
      report: $report,
      controller_cpu_seconds: $cpu,
      controller_cpu_seconds_total: $cpu_total,
      controller_peak_rss_mib: $hwm,
      controller_rss_mib_at_end: $rss,
      apiserver_cpu_seconds: $api,
      etcd_cpu_seconds: $etcd,
      simulate_cpu_seconds: $sim_cpu,
      machine_busy_cpu_seconds: $busy,
      other_cpu_seconds: (($busy - $cpu - $api - $etcd - $sim_cpu) * 100 | round / 100)
    }' >"$out"
}

# The table: metric | floor | csr-approver | ratio (csr-approver ÷ floor).
print_table() { # print_table RESULT.json
  jq -r '
    def phase($r; $i; $k): $r.report.phases[$i][$k] * 10 | round / 10;
    def row($name; $f; $c):
      [$name, ($f | tostring), ($c | tostring),
       (if ($f | type) == "number" and $f != 0 then (($c / $f * 100 | round) / 100 | tostring) + "×" else "—" end)];
    . as $all | $all.floor as $f | $all.csr_approver as $c |
    [["metric", "floor", "csr-approver", "ratio"],
     ["---", "---", "---", "---"],
     row("client CSR → approved p50 ms"; phase($f; 0; "p50_ms"); phase($c; 0; "p50_ms")),
     row("client CSR → approved p95 ms"; phase($f; 0; "p95_ms"); phase($c; 0; "p95_ms")),
     row("client CSR → approved p99 ms"; phase($f; 0; "p99_ms"); phase($c; 0; "p99_ms")),
     row("serving CSR → approved p50 ms"; phase($f; 1; "p50_ms"); phase($c; 1; "p50_ms")),
     row("serving CSR → approved p95 ms"; phase($f; 1; "p95_ms"); phase($c; 1; "p95_ms")),
     row("serving CSR → approved p99 ms"; phase($f; 1; "p99_ms"); phase($c; 1; "p99_ms")),
     row("approvals/s"; $f.report.approvals_per_second * 10 | round / 10; $c.report.approvals_per_second * 10 | round / 10),
     row("wall s"; $f.report.wall_seconds * 100 | round / 100; $c.report.wall_seconds * 100 | round / 100),
     row("controller CPU s (during the storm)"; $f.controller_cpu_seconds; $c.controller_cpu_seconds),
     row("controller CPU ms per approval"; ($f.controller_cpu_seconds * 1000 / ([$f.report.joined * 2, 1] | max) * 100 | round / 100); ($c.controller_cpu_seconds * 1000 / ([$c.report.joined * 2, 1] | max) * 100 | round / 100)),
     row("controller peak RSS MiB (VmHWM)"; $f.controller_peak_rss_mib; $c.controller_peak_rss_mib),
     row("kube-apiserver CPU s"; $f.apiserver_cpu_seconds; $c.apiserver_cpu_seconds),
     row("etcd CPU s"; $f.etcd_cpu_seconds; $c.etcd_cpu_seconds),
     row("simulate CPU s"; $f.simulate_cpu_seconds; $c.simulate_cpu_seconds),
     row("other processes CPU s"; $f.other_cpu_seconds; $c.other_cpu_seconds),
     row("nodes joined"; "\($f.report.joined)/\($f.report.nodes)"; "\($c.report.joined)/\($c.report.nodes)")]
    | .[] | "| " + join(" | ") + " |"' "$1"
}

mkdir -p "$results"
build_release
version=$(source_version)
total_started=$SECONDS
for n in "${sizes[@]}"; do
  n_started=$SECONDS
  say "N=$n: fresh control plane in $CSR_APPROVER_DEV_DIR (apiserver :$DEV_APISERVER_PORT, etcd :$DEV_ETCD_PORT)"
  cluster_up
  warm_up "$warmup"
  load_before=$(load_note)
  builds=$(concurrent_builds)

  start_floor "$work/floor.log"
  measure_run floor "$floor_pid" "$n" "floor$n" "$work/floor.json"
  floor_pid=""
  tail -n 1 "$work/floor.log" >&2

  say "N=$n: deleting the floor run's CSRs, Nodes and Machines"
  delete_simulated

  start_controller "$http_port" "$work/controller.log"
  measure_run csr-approver "$controller_pid" "$n" "ctl$n" "$work/csr-approver.json"
  controller_pid=""
  errors=$(grep -cE '^\S+\s+(WARN|ERROR) ' "$work/controller.log" || true)
  [ "$errors" -eq 0 ] || { printf 'bench: %s WARN/ERROR lines in the controller log, e.g.:\n' "$errors" >&2; grep -E '^\S+\s+(WARN|ERROR) ' "$work/controller.log" | head -n 3 >&2; }

  load_after=$(load_note)
  out="$results/join-storm-$n.json"
  jq -n --argjson n "$n" --argjson c "$concurrency" --arg timeout "$timeout" --arg version "$version" \
    --arg when "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg before "$load_before" --arg after "$load_after" \
    --argjson builds "$builds" --argjson seconds "$((SECONDS - n_started))" \
    --arg log_issues "$errors" \
    --slurpfile floor "$work/floor.json" --slurpfile ctl "$work/csr-approver.json" \
    --argjson warmup "$warmup" \
    '{nodes: $n, concurrency: $c, csr_timeout: $timeout, warmup_nodes: $warmup, csr_approver_version: $version, measured_at: $when,
      leader_election: true, floor: $floor[0], csr_approver: $ctl[0],
      machine: {load_before: $before, load_after: $after, concurrent_compiler_processes_at_start: $builds},
      controller_log_warn_error_lines: ($log_issues | tonumber), bench_seconds: $seconds}' >"$out"

  say "N=$n: results ($out; $((SECONDS - n_started)) s; $load_after)"
  print_table "$out"
  cluster_down
done
say "join storm done in $((SECONDS - total_started)) s"
