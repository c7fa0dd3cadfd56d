#!/usr/bin/env bash
# Runs one cargo-fuzz target for SECONDS, single job, on the nightly toolchain.
#
#   scripts/fuzz.sh TARGET SECONDS        TARGET: request_decide | policy_yaml | normalize
#
# Seeds are read from fuzz/corpus/TARGET (committed, small); what libFuzzer adds goes to
# fuzz/work/corpus/TARGET (ignored by git, kept between runs), crash inputs to
# fuzz/artifacts/TARGET/. The full log is fuzz/work/TARGET.log; the last line printed is a
# one-line summary (seconds, executions, corpus size, crashes). Exits non-zero on a crash.
#
# Environment: CSR_FUZZ_SKIP=check[,check] steps over a known, reported finding (names in
# fuzz/src/harness.rs, `Check::name`); FUZZ_ARGS adds libFuzzer flags. Not run in CI: the
# crash inputs it finds are replayed there by tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 request_decide|policy_yaml|normalize SECONDS" >&2; exit 2; }
[ $# -eq 2 ] || usage
target=$1
seconds=$2
case "$target" in request_decide|policy_yaml|normalize) ;; *) usage ;; esac
[[ "$seconds" =~ ^[0-9]+$ ]] || usage

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi

cd fuzz
mkdir -p "work/corpus/$target" "artifacts/$target"
log="work/$target.log"
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT

echo "==> cargo +nightly fuzz build $target"
cargo +nightly fuzz build -O "$target"

echo "==> fuzzing $target for ${seconds}s (log: fuzz/$log)"
status=0
# shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
cargo +nightly fuzz run -O "$target" "work/corpus/$target" "corpus/$target" -- \
  -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
  ${FUZZ_ARGS:-} 2>&1 | tee "$log" || status=$?

executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
time_s=$(sed -n 's/^stat::.*//; s/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
corpus=$(find "work/corpus/$target" -type f | wc -l)
seeds=$(find "corpus/$target" -type f | wc -l)
crashes=$(find "artifacts/$target" -type f -newer "$marker" \
  \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
echo "==> $target: asked ${seconds}s, ran ${time_s:-?}s, executions ${executions:-?}," \
  "corpus ${corpus} (+${seeds} seeds), crashes ${crashes}; last status: ${last}"
exit "$status"
