#!/usr/bin/env bash
# Side by side (issue #13): the floor (examples/approve_everything.rs), csr-approver and the
# two peers, PF = postfinance/kubelet-csr-approver and AH = alex1989hu/kubelet-serving-cert-
# approver (bench/peers.sh), on ONE fresh control plane, interleaved and repeated:
#   1. serving storms: N nodes that already hold a client certificate each submit a serving
#      CSR (`csr-approver-simulate --serving-only`), for every N, every repeat, every
#      contender (the order rotates with the repeat, so drift hits everyone alike);
#   2. a full join storm (client → serving CSR) at SIDE_JOIN_NODES, floor and csr-approver
#      only (the peers approve no client CSRs);
#   3. steady state and start-up with SIDE_STEADY_OBJECTS Nodes + Machines + approved CSRs:
#      launch → first approval of one pending serving CSR, and RSS after the sync.
# Contender `floor-watching` (not run unless named in SIDE_CONTENDERS) is the floor plus two
# watch streams of Nodes and Machines read and thrown away (curl, JSON as kube-rs asks):
# what csr-approver's Node and Machine watches alone cost the apiserver in a storm.
#
#   bench/side-by-side.sh              # serving N = 500 2000
#   bench/side-by-side.sh 500 2000 5000
#   bench/side-by-side.sh --render     # only the table and plot again, from the last run's JSON
#
# Environment: SIDE_REPEATS (3), SIDE_JOIN_NODES (2000, 0 skips), SIDE_STEADY_OBJECTS (5000,
# 0 skips), SIDE_SETTLE (10 s), SIDE_CONCURRENCY (nodes joining at once, 50), SIDE_TIMEOUT
# (per CSR, 60s), SIDE_WARMUP (nodes joined unmeasured first, 100), SIDE_CONTENDERS
# ("floor csr-approver pf ah", + base when SIDE_BASE_BIN is set), SIDE_BASE_BIN (another
# csr-approver binary, e.g. built at an earlier commit: contender `base`, run exactly as
# csr-approver is, so one run shows before and after), SIDE_BASE_LABEL (its name in the
# table, "base"), SIDE_DIR (/tmp/csr-approver-bench-side), SIDE_ETCD_PORT
# (24990, peer +1), SIDE_APISERVER_PORT (17643), SIDE_HTTP_PORT (csr-approver, 18183),
# SIDE_PF_METRICS_PORT (18184), SIDE_PF_HEALTH_PORT (18185). AH always binds :8080 and :9090.
# Peers: PEER_PF_BIN / PEER_AH_BIN if either is set, else `bench/peers.sh --env`.
# Results: bench/results/side-by-side.{json,md,png} and bench/results/side-by-side/ (the
# per-run latency and RSS files); the table is printed at the end. bench/README.md
# "Side by side".
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CSR_APPROVER_DEV_DIR="${SIDE_DIR:-/tmp/csr-approver-bench-side}"
export DEV_ETCD_PORT="${SIDE_ETCD_PORT:-24990}"
export DEV_APISERVER_PORT="${SIDE_APISERVER_PORT:-17643}"
http_port="${SIDE_HTTP_PORT:-18183}"
pf_metrics_port="${SIDE_PF_METRICS_PORT:-18184}"
pf_health_port="${SIDE_PF_HEALTH_PORT:-18185}"
repeats="${SIDE_REPEATS:-3}"
join_nodes="${SIDE_JOIN_NODES:-2000}"
steady="${SIDE_STEADY_OBJECTS:-5000}"
settle="${SIDE_SETTLE:-10}"
concurrency="${SIDE_CONCURRENCY:-50}"
timeout="${SIDE_TIMEOUT:-60s}"
warmup="${SIDE_WARMUP:-100}"
base_bin="${SIDE_BASE_BIN:-}"
base_label="${SIDE_BASE_LABEL:-base}"
read -r -a wanted <<<"${SIDE_CONTENDERS:-floor csr-approver pf ah${base_bin:+ base}}"
results="$repo/bench/results"
files="$results/side-by-side"
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"

render_only=0
if [ "${1:-}" = --render ]; then render_only=1; set --; fi # only the table and plot, from the last JSON
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(500 2000)
for n in "${sizes[@]}" "$repeats"; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "not a positive count: $n"; done
for n in "$join_nodes" "$steady" "$warmup" "$settle"; do [[ "$n" =~ ^[0-9]+$ ]] || die "not a count: $n"; done
command -v kubectl >/dev/null || die "kubectl is required"
command -v jq >/dev/null || die "jq is required"
command -v ss >/dev/null || die "ss (iproute2) is required"

controller_pid="" floor_pid="" pf_pid="" ah_pid="" sampler_pid="" extra_pids=""
work=$(mktemp -d)
if [ "$render_only" = 1 ]; then trap 'rm -rf "$work"' EXIT; else install_cleanup; fi

# The contenders that can run: a missing peer is skipped with one line. The peers' binaries:
# $PEER_PF_BIN / $PEER_AH_BIN if either is set, else bench/peers.sh (cached: ~0.1 s).
if [ -z "${PEER_PF_BIN:-}${PEER_AH_BIN:-}" ] && [ "$render_only" = 0 ]; then
  eval "$(bash "$repo/bench/peers.sh" --env 2>/dev/null)" || true
fi
PEER_PF_BIN="${PEER_PF_BIN:-}" PEER_AH_BIN="${PEER_AH_BIN:-}"
contenders=()
[ "$render_only" = 1 ] && wanted=()
for c in "${wanted[@]}"; do
  case $c in
    floor | csr-approver | floor-watching) contenders+=("$c") ;;
    base)
      if [ -n "$base_bin" ] && [ -x "$base_bin" ]; then contenders+=(base)
      else echo "skipping base: no executable SIDE_BASE_BIN (${base_bin:-empty})" >&2; fi ;;
    pf)
      if [ -n "$PEER_PF_BIN" ] && [ -x "$PEER_PF_BIN" ]; then contenders+=(pf)
      else echo "skipping PF: no executable binary (PEER_PF_BIN=${PEER_PF_BIN:-empty}; bench/peers.sh says why)" >&2; fi ;;
    ah)
      if [ -z "$PEER_AH_BIN" ] || [ ! -x "$PEER_AH_BIN" ]; then
        echo "skipping AH: no executable binary (PEER_AH_BIN=${PEER_AH_BIN:-empty}; bench/peers.sh says why)" >&2
      elif ports_busy 8080 9090; then
        echo "skipping AH: port 8080 or 9090 is in use (AH binds both, on all interfaces)" >&2
      else contenders+=(ah); fi ;;
    *) die "unknown contender $c (SIDE_CONTENDERS: floor csr-approver base pf ah floor-watching)" ;;
  esac
done
[ ${#contenders[@]} -gt 0 ] || [ "$render_only" = 1 ] || die "no contender to run"

# Short names for object prefixes (lowercase DNS labels).
short() { case $1 in floor) echo floor ;; csr-approver) echo ctl ;; base) echo base ;; pf) echo pf ;; ah) echo ah ;; floor-watching) echo fw ;; esac; }

# The contenders of LIST in the order of repeat R: rotated left by R-1.
rotation() { # rotation R NAME...
  local r=$1; shift
  local list=("$@") i n=$#
  for ((i = 0; i < n; i++)); do echo "${list[(i + r - 1) % n]}"; done
}

# Two watch streams of Nodes and Machines, as csr-approver's watches (JSON, bookmarks), read
# and thrown away; their pids join $extra_pids (stopped by stop_contender and cleanup).
start_watch_streams() {
  local pki="$CSR_APPROVER_DEV_DIR/pki" path pid
  for path in /api/v1/nodes /apis/machine.openshift.io/v1beta1/machines; do
    curl -fsS -N --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
      "https://127.0.0.1:$DEV_APISERVER_PORT$path?watch=true&allowWatchBookmarks=true&timeoutSeconds=3600" \
      >/dev/null 2>"$work/watch-stream.err" &
    extra_pids+=" $!"
  done
  sleep 1
  for pid in $extra_pids; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/watch-stream.err" >&2; die "a watch stream of floor-watching ended"; }
  done
}

# Starts contender KIND, waits until it is ready; sets $contender_pid (and the per-kind pid
# that cleanup stops).
start_contender() { # start_contender KIND LOG
  case $1 in
    floor) start_floor "$2"; contender_pid=$floor_pid ;;
    floor-watching) start_floor "$2"; contender_pid=$floor_pid; start_watch_streams ;;
    csr-approver) start_controller "$http_port" "$2"; contender_pid=$controller_pid ;;
    base) start_controller "$http_port" "$2" "$base_bin"; contender_pid=$controller_pid ;;
    pf)
      ports_busy "$pf_metrics_port" "$pf_health_port" && die "PF's ports $pf_metrics_port/$pf_health_port are in use"
      start_pf "$pf_metrics_port" "$pf_health_port" "$2"; contender_pid=$pf_pid ;;
    ah)
      ports_busy 8080 9090 && die "AH's ports 8080/9090 are in use"
      start_ah "$2"; contender_pid=$ah_pid ;;
  esac
}
stop_contender() {
  stop_pid "$contender_pid"
  local pid
  for pid in ${extra_pids:-}; do stop_pid "$pid"; done
  controller_pid="" floor_pid="" pf_pid="" ah_pid="" contender_pid="" extra_pids=""
}

# Nearest-rank percentiles of the latency column of a --latencies file: "p50 p95 p99 count".
percentiles() { # percentiles FILE
  awk '{ print $2 }' "$1" | sort -g | awk '
    { v[NR] = $1 }
    function q(p,  i) { i = int(NR * p); if (i < NR * p) i++; if (i < 1) i = 1; return v[i] }
    END { if (NR == 0) print "null null null 0"; else printf "%s %s %s %d\n", q(0.5), q(0.95), q(0.99), NR }'
}

delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# One storm with contender KIND already running: storm KIND STORM(serving|join) N R POS.
# Appends one JSON object to $work/runs.jsonl; stops the contender.
storm() {
  local kind=$1 what=$2 n=$3 r=$4 pos=$5
  local tag="$what-$n-r$r-$kind" prefix cpu0 api0 etcd0 sys0 cpu1 api1 etcd1 sys1 hwm rss rc=0 report
  local lat="$files/latencies-$tag.txt" rsscsv="$files/rss-$tag.csv" mode=()
  prefix="$(short "$kind")${what:0:1}$n-$r"
  [ "$what" = serving ] && mode=(--serving-only)
  say "$what storm N=$n, repeat $r/$repeats, $pos. $kind — simulate ${mode[*]} --nodes $n --prefix $prefix"
  cpu0=$(cpu_seconds "$contender_pid"); api0=$(cpu_seconds "$apiserver_pid"); etcd0=$(cpu_seconds "$etcd_pid")
  sys0=$(busy_ticks)
  sample_rss "$contender_pid" "$rsscsv"
  /usr/bin/time -f '%e %U %S' -o "$work/time" \
    "$simulate_bin" --kubeconfig "$admin_kubeconfig" --nodes "$n" --prefix "$prefix" "${mode[@]}" \
    --concurrency "$concurrency" --timeout "$timeout" --latencies "$lat" -o json \
    >"$work/sim.out" 2>"$work/sim.err" || rc=$?
  cpu1=$(cpu_seconds "$contender_pid"); api1=$(cpu_seconds "$apiserver_pid"); etcd1=$(cpu_seconds "$etcd_pid")
  sys1=$(busy_ticks)
  stop_pid "$sampler_pid"; sampler_pid=""
  hwm=$(mem_mib "$contender_pid" VmHWM); rss=$(mem_mib "$contender_pid" VmRSS)
  stop_contender
  report=$(grep -h '^{' "$work/sim.out" "$work/sim.err" | tail -n 1 || true)
  if [ -z "$report" ]; then
    cat "$work/sim.err" >&2
    die "$kind: simulate produced no report (exit $rc)"
  fi
  [ "$rc" -eq 0 ] || printf 'bench: WARNING: %s: simulate exited %s (failures in the report)\n' "$kind" "$rc" >&2
  [ -f "$lat" ] || : >"$lat"
  local p50 p95 p99 count sim_user sim_sys
  read -r p50 p95 p99 count < <(percentiles "$lat")
  read -r _ sim_user sim_sys < <(tail -n 1 "$work/time")
  jq -nc --arg kind "$kind" --arg what "$what" --argjson n "$n" --argjson r "$r" --argjson pos "$pos" \
    --argjson report "$report" --argjson rc "$rc" \
    --argjson p50 "$p50" --argjson p95 "$p95" --argjson p99 "$p99" --argjson count "$count" \
    --argjson cpu "$(delta "$cpu0" "$cpu1")" --argjson cpu_total "$cpu1" \
    --argjson hwm "$hwm" --argjson rss "$rss" \
    --argjson api "$(delta "$api0" "$api1")" --argjson etcd "$(delta "$etcd0" "$etcd1")" \
    --argjson sim_cpu "$(awk -v u="$sim_user" -v s="$sim_sys" 'BEGIN { printf "%.2f", u + s }')" \
    --argjson busy "$(awk -v a="$sys0" -v b="$sys1" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }')" \
    --arg lat "${lat#"$repo/"}" --arg rsscsv "${rsscsv#"$repo/"}" \
    '{storm: $what, nodes: $n, repeat: $r, position: $pos, contender: $kind,
      simulate_exit: $rc, failures: ($report.failures | length), joined: $report.joined,
      approvals: $count, p50_ms: $p50, p95_ms: $p95, p99_ms: $p99,
      approvals_per_second: $report.approvals_per_second, wall_seconds: $report.wall_seconds,
      approver_cpu_seconds: $cpu, approver_cpu_seconds_total: $cpu_total,
      cpu_ms_per_approval: (if $count > 0 then ($cpu * 1000 / $count * 1000 | round / 1000) else null end),
      peak_rss_mib: $hwm, rss_mib_at_end: $rss,
      apiserver_cpu_seconds: $api, etcd_cpu_seconds: $etcd, simulate_cpu_seconds: $sim_cpu,
      machine_busy_cpu_seconds: $busy,
      other_cpu_seconds: (($busy - $cpu - $api - $etcd - $sim_cpu) * 100 | round / 100),
      latencies_file: $lat, rss_file: $rsscsv, report: $report}' >>"$work/runs.jsonl"
  jq -r 'select(.contender == $k and .nodes == $n and .repeat == $r and .storm == $s)
    | "  \(.contender): p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, \(.approvals_per_second * 10 | round / 10) approvals/s, CPU \(.approver_cpu_seconds) s, peak RSS \(.peak_rss_mib) MiB, apiserver CPU \(.apiserver_cpu_seconds) s\(if .failures > 0 then ", \(.failures) FAILURES" else "" end)"' \
    --arg k "$kind" --argjson n "$n" --argjson r "$r" --arg s "$what" "$work/runs.jsonl" >&2
  delete_simulated
}

# Start-up with the steady objects present: one pending serving CSR exists before KIND is
# launched; launch → that CSR Approved (the simulator's watch sees it), then RSS after the
# settle time. Appends to $work/steady.jsonl.
launch() { # launch KIND R POS
  local kind=$1 r=$2 pos=$3 prefix sim_pid t0 t_ready lat="$work/launch.txt" rc=0
  prefix="launch$r$(short "$kind")"
  say "start-up, repeat $r/$repeats, $pos. $kind: one pending serving CSR ($prefix), launch, ${settle} s"
  rm -f "$lat"
  "$simulate_bin" --kubeconfig "$admin_kubeconfig" --nodes 1 --prefix "$prefix" --serving-only \
    --timeout 180s --latencies "$lat" -o json >"$work/launch.out" 2>"$work/launch.err" &
  sim_pid=$!
  extra_pids=$sim_pid
  local deadline=$((SECONDS + 60))
  until kubectl get csr -l csr-approver.io/simulation -o name | grep -q "/$prefix-"; do
    kill -0 "$sim_pid" 2>/dev/null || { cat "$work/launch.err" >&2; die "simulate --nodes 1 exited before its CSR existed"; }
    [ $SECONDS -lt $deadline ] || die "the pending CSR of $prefix did not appear in 60 s"
    sleep 0.1
  done
  t0=$EPOCHREALTIME
  start_contender "$kind" "$work/launch-$kind.log"
  t_ready=$EPOCHREALTIME
  wait "$sim_pid" || rc=$?
  extra_pids=""
  if [ "$rc" -ne 0 ] || [ ! -s "$lat" ]; then
    cat "$work/launch.err" >&2
    die "$kind did not approve the pending CSR of $prefix (simulate exit $rc)"
  fi
  sleep "$settle"
  jq -nc --arg kind "$kind" --argjson r "$r" --argjson pos "$pos" \
    --argjson launch "$(awk -v t0="$t0" '{ printf "%.3f", $3 / 1000 - t0 }' "$lat")" \
    --argjson ready "$(delta "$t0" "$t_ready")" \
    --argjson rss "$(mem_mib "$contender_pid" VmRSS)" --argjson hwm "$(mem_mib "$contender_pid" VmHWM)" \
    --argjson file "$(mem_mib "$contender_pid" RssFile)" \
    --argjson cpu "$(cpu_seconds "$contender_pid")" \
    '{contender: $kind, repeat: $r, position: $pos, launch_to_approved_seconds: $launch,
      launch_to_ready_seconds: $ready, rss_mib: $rss, peak_rss_mib: $hwm, rss_file_mib: $file,
      cpu_seconds: $cpu}' >>"$work/steady.jsonl"
  stop_contender
  jq -r 'select(.contender == $k and .repeat == $r)
    | "  \(.contender): launch → approved \(.launch_to_approved_seconds) s, RSS \(.rss_mib) MiB (peak \(.peak_rss_mib))"' \
    --arg k "$kind" --argjson r "$r" "$work/steady.jsonl" >&2
  delete_simulated
}

# Writes the table (side-by-side.md) and the plot (side-by-side.png) from the JSON, the
# latency and RSS files of $files; `bench/side-by-side.sh --render` does only this.
render() { # render JSON MD PNG
  local out=$1 md=$2 png=$3
  # The table: medians of the repeats, each with its ratio to the floor's median.
  {
    echo "# Side by side: floor, csr-approver, PF, AH"
    echo
    jq -r '"csr-approver `\(.csr_approver_version)`, \(.started_at) – \(.finished_at), machine: \(.machine.load_before) at the start, \(.machine.load_after) at the end; compiler processes at the start: \(.machine.concurrent_builds).",
      "\(.bench_seconds) s (\(.bench_seconds / 60 * 10 | round / 10) min) after the build: `bench/side-by-side.sh \(.config.serving_nodes | map(tostring) | join(" "))` with SIDE_REPEATS=\(.config.repeats), SIDE_JOIN_NODES=\(.config.join_nodes), SIDE_STEADY_OBJECTS=\(.config.steady_objects).",
      "Medians of \(.config.repeats) repeat(s), contenders interleaved; in brackets the ratio to the floor (for approvals/s below 1× is slower). — = not run (PF and AH approve no client CSRs) or skipped."' "$out"
    echo
    jq -r '
      def median: map(select(. != null)) | sort | if length == 0 then null
        elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
      def fmt($v; $unit):
        if $v == null then "—"
        elif $unit == "ms" then (if $v >= 100 then ($v | round | tostring) else ($v * 10 | round / 10 | tostring) end) + " ms"
        elif $unit == "s" then ($v * 100 | round / 100 | tostring) + " s"
        elif $unit == "MiB" then ($v * 10 | round / 10 | tostring) + " MiB"
        elif $unit == "ms/appr" then ($v * 100 | round / 100 | tostring) + " ms"
        else ($v * 10 | round / 10 | tostring) end;
      def cell($v; $floor; $unit):
        fmt($v; $unit) + (if $v != null and $floor != null and $floor != 0
          then " (" + (($v / $floor * 100 | round / 100) | tostring) + "×)" else "" end);
      . as $all | ["floor", "csr-approver", "base", "pf", "ah", "floor-watching"] | map(select(. as $c | $all.contenders | index($c))) as $cols |
      {"floor": "floor", "csr-approver": "csr-approver", "base": $all.base_label, "pf": "PF", "ah": "AH", "floor-watching": "floor + Node/Machine watches"} as $names |
      def row($name; $values; $unit):
        ($values[0]) as $f |
        "| " + $name + " | " + ([$values[] as $v | cell($v; $f; $unit)] | join(" | ")) + " |";
      def storm_rows($what; $n; $title):
        [$cols[] as $c | [$all.storms[] | select(.storm == $what and .nodes == $n and .contender == $c)]] as $by |
        if ([$by[] | length] | add) == 0 then empty else
          row($title + ": p99 create→Approved"; [$by[] | map(.p99_ms) | median]; "ms"),
          row($title + ": p50 create→Approved"; [$by[] | map(.p50_ms) | median]; "ms"),
          row($title + ": approvals/s"; [$by[] | map(.approvals_per_second) | median]; "n"),
          row($title + ": approver CPU s"; [$by[] | map(.approver_cpu_seconds) | median]; "s"),
          row($title + ": CPU ms per approval"; [$by[] | map(.cpu_ms_per_approval) | median]; "ms/appr"),
          row($title + ": approver peak RSS (VmHWM)"; [$by[] | map(.peak_rss_mib) | median]; "MiB"),
          row($title + ": kube-apiserver CPU s"; [$by[] | map(.apiserver_cpu_seconds) | median]; "s"),
          row($title + ": etcd CPU s"; [$by[] | map(.etcd_cpu_seconds) | median]; "s"),
        row($title + ": other processes CPU s (interference)"; [$by[] | map(.other_cpu_seconds) | median]; "s")
        end;
      "| figure | " + ([$cols[] | $names[.]] | join(" | ")) + " |",
      "| --- |" + ([$cols[] | " --- |"] | join("")),
      ($all.config.serving_nodes[] as $n | storm_rows("serving"; $n; "serving storm N=\($n)")),
      (if $all.config.join_nodes > 0 then storm_rows("join"; $all.config.join_nodes; "join storm N=\($all.config.join_nodes)") else empty end),
      (if ($all.steady | length) > 0 then
        ($all.config.steady_objects) as $s |
        [$cols[] as $c | [$all.steady[] | select(.contender == $c)]] as $by |
        row("\($s) Nodes + Machines + approved CSRs: RSS after sync (VmRSS)"; [$by[] | map(.rss_mib) | median]; "MiB"),
        row("\($s) Nodes + Machines + approved CSRs: of which mapped files (RssFile: the binary'"'"'s code)"; [$by[] | map(.rss_file_mib) | median]; "MiB"),
        row("\($s) Nodes + Machines + approved CSRs: peak RSS (VmHWM)"; [$by[] | map(.peak_rss_mib) | median]; "MiB"),
        row("\($s) Nodes + Machines + approved CSRs: launch → first approval"; [$by[] | map(.launch_to_approved_seconds) | median]; "s")
      else empty end)' "$out"
    local failures
    failures=$(jq '[.storms[] | select(.failures > 0 or .simulate_exit != 0)] | length' "$out")
    [ "$failures" -eq 0 ] || { echo; echo "**$failures storm run(s) had failures** (see side-by-side.json)."; }
    echo
    echo "![latency CDF and RSS over time](side-by-side.png)"
  } >"$md"

  # The plot: the largest serving N, last repeat: create→Approved CDF per contender (left),
  # RSS over that storm per contender (right).
  if command -v gnuplot >/dev/null; then
    local n_max repeats version left="" right="" c tag title terminal
    n_max=$(jq '.config.serving_nodes | max' "$out")
    repeats=$(jq '.config.repeats' "$out")
    version=$(jq -r '.csr_approver_version' "$out")
    for c in $(jq -r '.contenders[]' "$out"); do
      tag="serving-$n_max-r$repeats-$c"
      [ -s "$files/latencies-$tag.txt" ] || continue
      awk '{ print $2 }' "$files/latencies-$tag.txt" | sort -g | awk '{ v[NR] = $1 } END { for (i = 1; i <= NR; i++) print v[i], i / NR }' >"$work/cdf-$c.dat"
      title=$c; [ "$c" = pf ] && title=PF; [ "$c" = ah ] && title=AH; [ "$c" = base ] && title=$(jq -r '.base_label' "$out")
      left+="${left:+, }'$work/cdf-$c.dat' using 1:2 with lines lw 2 title '$title'"
      right+="${right:+, }'$files/rss-$tag.csv' using 1:2 every ::1 with lines lw 2 title '$title'"
    done
    terminal="pngcairo size 1400,560 font ',11'"
    gnuplot -e "set terminal pngcairo" 2>/dev/null || terminal="png size 1400,560"
    if [ -n "$left" ]; then
      gnuplot <<GNUPLOT
  set terminal $terminal
  set output '$png'
  set datafile separator whitespace
  set multiplot layout 1,2 title "serving storm, N = $n_max, repeat $repeats of $repeats (csr-approver $version)"
  set title "create → Approved, CDF"
  set xlabel "ms"
  set ylabel "fraction of CSRs"
  set key bottom right
  set grid
  set yrange [0:1]
  plot $left
  set title "approver RSS during the storm (every 0.25 s)"
  set xlabel "s since the storm started"
  set ylabel "MiB (VmRSS)"
  set key top left
  set yrange [0:*]
  set datafile separator ","
  plot $right
  unset multiplot
GNUPLOT
      echo "plot: $png" >&2
    fi
  else
    echo "no gnuplot: table and JSON written, no PNG (apt-get install -y gnuplot-nox for $png)" >&2
  fi

}

if [ "$render_only" = 1 ]; then
  render "$results/side-by-side.json" "$results/side-by-side.md" "$results/side-by-side.png"
  cat "$results/side-by-side.md"
  exit 0
fi

mkdir -p "$results"
rm -rf "$files"; mkdir -p "$files"
: >"$work/runs.jsonl"; : >"$work/steady.jsonl"
build_release
version=$(source_version)
started=$SECONDS
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
builds=$(concurrent_builds)
load_before=$(load_note)
say "side by side: ${contenders[*]}; serving N = ${sizes[*]}; join N = $join_nodes; steady $steady; $repeats repeats"
say "fresh control plane in $CSR_APPROVER_DEV_DIR (apiserver :$DEV_APISERVER_PORT, etcd :$DEV_ETCD_PORT)"
cluster_up
warm_up "$warmup"

# Every repeat of one storm, each contender in turn, the order rotating with the repeat.
interleaved() { # interleaved PHASE N CONTENDER...
  local phase=$1 n=$2 r pos kind order
  shift 2
  for ((r = 1; r <= repeats; r++)); do
    mapfile -t order < <(rotation "$r" "$@")
    pos=0
    for kind in "${order[@]}"; do
      pos=$((pos + 1))
      start_contender "$kind" "$work/$kind.log"
      storm "$kind" "$phase" "$n" "$r" "$pos"
    done
  done
}

for n in "${sizes[@]}"; do interleaved serving "$n" "${contenders[@]}"; done

join_contenders=()
for c in "${contenders[@]}"; do case $c in floor | csr-approver | base) join_contenders+=("$c") ;; esac; done
if [ "$join_nodes" -gt 0 ] && [ ${#join_contenders[@]} -gt 0 ]; then
  interleaved join "$join_nodes" "${join_contenders[@]}"
fi

populate_seconds=null
if [ "$steady" -gt 0 ]; then
  say "steady state: $steady Nodes + $steady Machines + $steady approved serving CSRs (examples/populate_cluster)"
  t=$SECONDS
  "$populate_bin" --kubeconfig "$admin_kubeconfig" --nodes "$steady" --machines "$steady" \
    --approved-csrs "$steady" --prefix steady
  populate_seconds=$((SECONDS - t))
  # floor-watching starts as the floor does: nothing to add here.
  steady_contenders=()
  for c in "${contenders[@]}"; do [ "$c" = floor-watching ] || steady_contenders+=("$c"); done
  for ((r = 1; r <= repeats; r++)); do
    mapfile -t order < <(rotation "$r" "${steady_contenders[@]}")
    pos=0
    for kind in "${order[@]}"; do
      pos=$((pos + 1))
      launch "$kind" "$r" "$pos"
    done
  done
fi

load_after=$(load_note)
bench_seconds=$((SECONDS - started))
out="$results/side-by-side.json"
sizes_json=$(printf '%s\n' "${sizes[@]}" | jq -sc 'map(tonumber)')
contenders_json=$(printf '%s\n' "${contenders[@]}" | jq -Rsc 'split("\n") | map(select(. != ""))')
jq -n --arg version "$version" --arg started "$started_at" --arg finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --argjson seconds "$bench_seconds" --argjson nproc "$(nproc)" --arg before "$load_before" --arg after "$load_after" \
  --argjson builds "$builds" --argjson sizes "$sizes_json" --argjson contenders "$contenders_json" \
  --argjson repeats "$repeats" --argjson join "$join_nodes" --argjson steady "$steady" --argjson settle "$settle" \
  --argjson concurrency "$concurrency" --arg timeout "$timeout" --argjson warmup "$warmup" \
  --argjson populate "$populate_seconds" \
  --arg pf "${PEER_PF_BIN:-}" --arg ah "${PEER_AH_BIN:-}" --arg base "$base_bin" --arg base_label "$base_label" \
  --slurpfile runs "$work/runs.jsonl" --slurpfile steady_runs "$work/steady.jsonl" \
  '{csr_approver_version: $version, started_at: $started, finished_at: $finished, bench_seconds: $seconds,
    machine: {nproc: $nproc, load_before: $before, load_after: $after, concurrent_builds: $builds},
    config: {serving_nodes: $sizes, join_nodes: $join, steady_objects: $steady, repeats: $repeats,
             settle_seconds: $settle, concurrency: $concurrency, csr_timeout: $timeout, warmup_nodes: $warmup,
             csr_approver_leader_election: true, peers_leader_election: false},
    contenders: $contenders, peer_binaries: {pf: $pf, ah: $ah}, base_binary: $base, base_label: $base_label,
    populate_seconds: $populate, storms: $runs, steady: $steady_runs}' >"$out"

render "$out" "$results/side-by-side.md" "$results/side-by-side.png"
say "side by side done in $bench_seconds s ($load_after): $out, $results/side-by-side.md"
cat "$results/side-by-side.md"
