#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time, starting from the seed corpora in
# fuzz/seeds/<target>/ (committed). What the fuzzer finds on the way goes to fuzz/corpus/
# (ignored by git); a crash stops the script with the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                 # the CI targets, FUZZ_SECONDS (default 30) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh editor journal
#
# libFuzzer needs nightly compiler flags. With only a stable toolchain, RUSTC_BOOTSTRAP=1 lets
# stable rustc accept them (as it does for the compiler's own build); set FUZZ_TOOLCHAIN to use
# a real nightly instead (`FUZZ_TOOLCHAIN=nightly`). The code is safe Rust, so no
# AddressSanitizer (`-s none`): the same panics are found and the build is much shorter.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
# A fixed seed by default: the same machine gets the same inputs, so a CI failure replays.
seed="${FUZZ_SEED:-20261204}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(journal config editor matcher)
fi

if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

fuzz=(cargo fuzz)
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    fuzz=(cargo "+${FUZZ_TOOLCHAIN}" fuzz)
else
    export RUSTC_BOOTSTRAP=1
fi

# FUZZ_RUNS bounds each target by executions instead of seconds: with the fixed seed the run is
# then the same on every machine, however fast (what CI uses, so that its verdict replays).
if [ -n "${FUZZ_RUNS:-}" ]; then
    budget=(-runs="$FUZZ_RUNS")
    seconds="$FUZZ_RUNS runs"
else
    budget=(-max_total_time="$seconds")
    seconds="${seconds}s"
fi

# One build for every target (debug assertions on, as `cargo fuzz run` does by default).
"${fuzz[@]}" build -s none
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    echo "== fuzz $target for $seconds (seed $seed; FUZZ_SEED replays another)"
    # -timeout: one input taking over 10 s is a hang, reported as a crash.
    status=0
    "${fuzz[@]}" run -s none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        "${budget[@]}" -seed="$seed" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets ran $seconds each without a crash"
