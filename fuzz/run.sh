#!/usr/bin/env bash
# Run every fuzz target for FUZZ_SECONDS (default 30) on its seed corpus;
# `make fuzz` builds them first (docs/reliability.md, "Fuzzing").
#
#   fuzz/run.sh [BUILD_DIR] [TARGET...]      default: build-fuzz, all four
#
# The checked-in corpus (fuzz/corpus/<target>/) is only read: inputs the
# fuzzer finds go to BUILD_DIR/fuzz-corpus/<target>/, crashes to
# BUILD_DIR/fuzz-artifacts/. Targets run FUZZ_JOBS at a time (default: the
# number of CPUs). Exits 1 if any target found a crash, a leak, a hang or a
# broken invariant, after printing how to reproduce it.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build-fuzz}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config frame tensor http)
seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-$(nproc)}

# Per target: the largest input, and extra flags. The HTTP target's access
# log would flood the terminal: its stderr is closed (libFuzzer keeps its own
# and the sanitizers' reports).
declare -A max_len=([config]=8192 [frame]=8192 [tensor]=16384 [http]=8192)
declare -A extra=([http]=-close_fd_mask=2)

mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"

run_one() {
    local t=$1 exe="$build/fuzz/fuzz_$1" dict=fuzz/$1.dict
    local scratch="$build/fuzz-corpus/$t" log="$build/fuzz-logs/$t.log"
    mkdir -p "$scratch"
    local args=(-max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10
                -artifact_prefix="$build/fuzz-artifacts/$t-" -print_final_stats=1)
    [ -f "$dict" ] && args+=(-dict="$dict")
    [ -n "${extra[$t]:-}" ] && args+=("${extra[$t]}")
    "$exe" "${args[@]}" "$scratch" "fuzz/corpus/$t" >"$log" 2>&1
}

# One line per target: runs, speed, corpus; or what it found.
report() {
    local t=$1 rc=$2 log="$build/fuzz-logs/$1.log"
    local runs speed corpus
    runs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log")
    speed=$(awk '/stat::average_exec_per_sec:/ { print $2 }' "$log")
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz_%-7s ok: %s runs in %s s, %s exec/s, corpus %s\n' \
            "$t" "${runs:-?}" "$seconds" "${speed:-?}" "${corpus:-?}"
        return 0
    fi
    printf 'fuzz_%-7s FAILED (exit %s); the end of %s:\n' "$t" "$rc" "$log"
    grep -v '^"' "$log" | tail -40 | sed 's/^/    /'
    echo "    reproduce: $build/fuzz/fuzz_$t $build/fuzz-artifacts/$t-<the file above>"
    return 1
}

declare -A pid
failed=0
pending=("${targets[@]}")
running=()
while [ ${#pending[@]} -gt 0 ] || [ ${#running[@]} -gt 0 ]; do
    while [ ${#pending[@]} -gt 0 ] && [ ${#running[@]} -lt "$jobs" ]; do
        t=${pending[0]}
        pending=("${pending[@]:1}")
        run_one "$t" &
        pid[$t]=$!
        running+=("$t")
    done
    t=${running[0]} # wait in start order: reports come out in a stable order
    running=("${running[@]:1}")
    rc=0
    wait "${pid[$t]}" || rc=$?
    report "$t" "$rc" || failed=1
done
exit $failed
