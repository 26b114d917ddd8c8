#!/usr/bin/env bash
# handles.sh - the handle benchmark of issue 6 (item 5): the extra latency of one
# handle hop (HTTP -> ingress Hop -> handle call -> no-op callee) against calling the
# no-op callee directly over HTTP, and a fan-out of 8 parallel calls against one call.
# One serve, three applications of bench/noop.so, wrk on loopback. See bench/README.md.
#
#   bench/handles.sh            full run: 3 rounds, about 1.5 min
#   QUICK=1 bench/handles.sh    smoke test: 1 round, about 20 s
#
# Targets: p50(hop) - p50(direct) < 100 us at one connection; t(fan of 8) / t(one
# call) < 2 with a callee that sleeps 20 ms ("well under 8x").
#
# Settings (environment): ROUNDS (3), DURATION (wrk -d of the latency runs, 10s),
# RPS_DURATION (wrk -d of the 16-connection runs, 5s), FAN_REQS (sequential requests
# per fan-out size, 20), FAN_MS (the callee's sleep, 20), WRK_CPU (1: the core wrk is
# pinned to), BUILD (build dir), KEEP=1 to keep the temp dir (config, log, wrk outputs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SERVE=$BUILD/serve/serve
PY=/usr/bin/python3

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=${DURATION:-3s}
    RPS_DURATION=${RPS_DURATION:-2s}
else
    ROUNDS=${ROUNDS:-3}
    DURATION=${DURATION:-10s}
    RPS_DURATION=${RPS_DURATION:-5s}
fi
FAN_REQS=${FAN_REQS:-20}
FAN_MS=${FAN_MS:-20}
WRK_CPU=${WRK_CPU:-1}
KEEP=${KEEP:-0}
RPS_CONNS=16
HOP_TARGET_US=100
FAN_TARGET=2
REPLICAS=12 # noop/Noop 1, hop/Hop 1, hop/Noop 1, fan/Fan 1, fan/Noop 8

STARTED=() # pids this script started, stopped by cleanup
TMP=""
PORT=""
SERVE_PID=""

BENCH=handles.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- Setup -----------------------------------------------------------------

check_tools() {
    local t
    for t in wrk taskset curl pgrep ninja; do
        command -v "$t" >/dev/null || die "$t is missing (apt-get install wrk curl procps ninja-build)"
    done
}

# /noop: Noop over HTTP. /hop: Hop calling a Noop of its own app through a handle, so
# that the two Noops are alike and the hop is the only difference. /fan: Fan calling a
# Noop of 8 replicas, one call per replica at most (max_ongoing_requests 8 leaves room
# for the power-of-two choice to put two on one replica without queueing).
# access_log off: the log's cost would fall twice on the hop path (proxy and call).
write_config() {
    local admin=$1
    cat >"$TMP/config.json" <<EOF
{"http_options": {"host": "127.0.0.1", "port": $PORT, "access_log": false},
 "admin": {"host": "127.0.0.1", "port": $admin},
 "applications": [
  {"name": "noop", "route_prefix": "/noop", "plugin": "noop.so",
   "deployments": [{"name": "Noop", "num_replicas": 1, "max_ongoing_requests": 64}]},
  {"name": "hop", "route_prefix": "/hop", "plugin": "noop.so", "ingress": "Hop",
   "deployments": [{"name": "Hop", "num_replicas": 1, "max_ongoing_requests": 64,
                    "init_args": {"callee": {"deployment": "Noop"}}},
                   {"name": "Noop", "num_replicas": 1, "max_ongoing_requests": 64}]},
  {"name": "fan", "route_prefix": "/fan", "plugin": "noop.so", "ingress": "Fan",
   "deployments": [{"name": "Fan", "num_replicas": 1, "max_ongoing_requests": 64,
                    "init_args": {"callee": {"deployment": "Noop"}}},
                   {"name": "Noop", "num_replicas": 8, "max_ongoing_requests": 8}]}]}
EOF
}

# Wait until PATH answers 200 "ok"; fail if serve dies or 20 s pass.
wait_ok() {
    local path=$1 i body
    for ((i = 0; i < 200; i++)); do
        alive "$SERVE_PID" || die "serve exited at start (see $TMP/serve.err)"
        body=$(curl -sf --max-time 1 "http://127.0.0.1:$PORT$path" 2>/dev/null || true)
        [[ $body == ok ]] && return 0
        sleep 0.1
    done
    die "$path does not answer 200 \"ok\" (see $TMP/serve.err)"
}

start_serve() {
    local ports
    read -r -a ports <<<"$(free_ports 2)"
    PORT=${ports[0]}
    write_config "${ports[1]}"
    SERVE_PLUGIN_PATH=$BUILD/bench "$SERVE" run "$TMP/config.json" 2>"$TMP/serve.err" &
    SERVE_PID=$!
    STARTED+=("$SERVE_PID")
    local p
    for p in /noop /hop /fan; do wait_ok "$p"; done
    wait_replicas "$SERVE_PID" "$REPLICAS"
}

# ---- Measuring -------------------------------------------------------------

# wrk pinned to one core (bench-notes): PATH CONNS DURATION.
run_wrk() {
    taskset -c "$WRK_CPU" wrk -t1 -c"$2" -d"$3" --latency "http://127.0.0.1:$PORT$1"
}

# measure KIND PATH CONNS DURATION ROUND: one wrk run, one line in results.tsv
# (kind path round rps p50 p99 non2xx sock).
measure() {
    local kind=$1 path=$2 c=$3 d=$4 r=$5 out=$TMP/wrk/$1${2//\//.}.r$5.txt fields
    alive "$SERVE_PID" || die "serve (pid $SERVE_PID) has exited; see $TMP/serve.err"
    run_wrk "$path" "$c" "$d" >"$out" 2>&1 || die "wrk failed against $path: $(cat "$out")"
    read -r -a fields <<<"$(parse_wrk "$out")"
    [[ -n ${fields[0]:-} ]] || die "cannot parse $out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$path" "$r" "${fields[@]}" >>"$TMP/results.tsv"
    log "  round $r  $kind  c=$c  $(printf '%-6s' "$path")" \
        "$(printf '%8.0f req/s  p50 %s  p99 %s' "${fields[0]}" "$(fmt_us "${fields[1]}")" \
            "$(fmt_us "${fields[2]}")")"
}

# Each round: the two paths at one connection, then at 16; which goes first alternates
# from round to round, so that the machine's drift hits both alike.
run_rounds() {
    mkdir -p "$TMP/wrk"
    : >"$TMP/results.tsv"
    local r order p
    log "warm-up: 1 s at $RPS_CONNS connections per path"
    run_wrk /noop "$RPS_CONNS" 1s >/dev/null 2>&1 || true
    run_wrk /hop "$RPS_CONNS" 1s >/dev/null 2>&1 || true
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order="/noop /hop"; else order="/hop /noop"; fi
        for p in $order; do measure lat "$p" 1 "$DURATION" "$r"; done
        for p in $order; do measure rps "$p" "$RPS_CONNS" "$RPS_DURATION" "$r"; done
    done
}

# FAN_REQS sequential requests to each of the fan-out paths, interleaved; one line per
# request in fan.tsv (label seconds). Every answer must be 200.
run_fan() {
    local paths=("/noop?ms=$FAN_MS" "/fan?n=1&ms=$FAN_MS" "/fan?n=8&ms=$FAN_MS") p i out
    : >"$TMP/fan.tsv"
    log "fan-out: $FAN_REQS sequential requests each to ${paths[*]}"
    # Warm-up: a replica runs its first request on its I/O thread while it looks fast;
    # one 20 ms run there would hold a second call queued behind it.
    for ((i = 0; i < 3; i++)); do
        for p in "${paths[@]}"; do curl -s -o /dev/null "http://127.0.0.1:$PORT$p"; done
    done
    for ((i = 0; i < FAN_REQS; i++)); do
        for p in "${paths[@]}"; do
            out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT$p")
            [[ $out == 200\ * ]] || die "$p answered ${out% *} (see $TMP/serve.err)"
            printf '%s\t%s\n' "$p" "${out#* }" >>"$TMP/fan.tsv"
        done
    done
}

# ---- Report ----------------------------------------------------------------

fan_median_ms() { awk -F'\t' -v p="$1" '$1 == p { print $2 * 1000 }' "$TMP/fan.tsv" | median_of; }

fmt_us() {
    awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v < 1000) printf "%.0f us\n", v;
                           else printf "%.2f ms\n", v / 1000 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }

report() {
    local n50 n99 h50 h99 nrps hrps over per_round fan_d fan1 fan8 fr verdict
    n50=$(median lat /noop 5)
    n99=$(median lat /noop 6)
    h50=$(median lat /hop 5)
    h99=$(median lat /hop 6)
    nrps=$(median rps /noop 4)
    hrps=$(median rps /hop 4)
    over=$(awk -v a="$h50" -v b="$n50" 'BEGIN { printf "%.0f\n", a - b }')
    per_round=$(paste <(column lat /hop 5) <(column lat /noop 5) |
        awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 - $2 }')
    if ((over < HOP_TARGET_US)); then
        verdict=PASS
    else verdict="MISS (by $((over - HOP_TARGET_US)) us)"; fi

    echo
    echo "== One handle hop: medians of $ROUNDS round(s) on $(nproc) cores =="
    echo "   latency: wrk -t1 -c1 -d$DURATION; req/s: wrk -t1 -c$RPS_CONNS -d$RPS_DURATION"
    printf '%-36s %9s %9s %12s\n' path p50 p99 "req/s c=$RPS_CONNS"
    printf '%-36s %9s %9s %12.0f\n' "/noop  HTTP -> Noop" "$(fmt_us "$n50")" "$(fmt_us "$n99")" "$nrps"
    printf '%-36s %9s %9s %12.0f\n' "/hop   HTTP -> Hop -> handle -> Noop" "$(fmt_us "$h50")" \
        "$(fmt_us "$h99")" "$hrps"
    printf '%-36s %9s   %-18s %s\n' "hop overhead, p50(hop) - p50(noop)" "$over us" \
        "target < $HOP_TARGET_US us" "$verdict"
    printf '%-36s %9s\n' "  per round (us)" "$per_round"
    printf '%-36s %9s   %s\n' "req/s at c=$RPS_CONNS, hop / noop" "$(ratio "$hrps" "$nrps")x" \
        "(for information: each hop request is two requests' work)"

    fan_d=$(fan_median_ms "/noop?ms=$FAN_MS")
    fan1=$(fan_median_ms "/fan?n=1&ms=$FAN_MS")
    fan8=$(fan_median_ms "/fan?n=8&ms=$FAN_MS")
    fr=$(ratio "$fan8" "$fan1")
    verdict=$(awk -v v="$fr" -v t="$FAN_TARGET" 'BEGIN { print (v != "n/a" && v < t) ? "PASS" : "MISS" }')
    echo
    echo "== Fan-out: callee Noop sleeps $FAN_MS ms, 8 replicas; median time_total of $FAN_REQS curl requests =="
    printf '%-36s %9.2f ms\n' "/noop?ms=$FAN_MS  direct (reference)" "$fan_d"
    printf '%-36s %9.2f ms\n' "/fan?n=1&ms=$FAN_MS  one call" "$fan1"
    printf '%-36s %9.2f ms\n' "/fan?n=8&ms=$FAN_MS  8 parallel calls" "$fan8"
    printf '%-36s %9s   %-18s %s\n' "t(8) / t(1)" "${fr}x" "target < ${FAN_TARGET}x" "$verdict"

    local p k errs=""
    for k in lat rps; do
        for p in /noop /hop; do
            local e=$(($(total "$k" "$p" 7) + $(total "$k" "$p" 8)))
            ((e == 0)) || errs+=" $k $p: $e;"
        done
    done
    echo
    echo "== Notes =="
    echo "tree:   $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" \
        "(serve built $(date -u -r "$SERVE" +%FT%TZ))"
    echo "wrk:    pinned with taskset -c $WRK_CPU; serve and its $REPLICAS replicas unpinned;" \
        "paths alternate first each round"
    echo "errors:${errs:- none} (wrk non-2xx + socket errors, all rounds);" \
        "$(grep -c -E ' (WARN|ERROR) ' "$TMP/serve.err" || true) WARN/ERROR lines in serve's log"
}

main() {
    check_tools
    build_targets serve/serve bench/noop.so
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/serve-handles.XXXXXX")
    local secs=$((ROUNDS * 2 * (${DURATION%s} + ${RPS_DURATION%s}) + 2))
    log "handles.sh: $ROUNDS round(s) of wrk runs, about $secs s of wrk; temp dir $TMP"
    start_serve
    log "serve pid $SERVE_PID on port $PORT, $REPLICAS replicas"
    run_rounds
    run_fan
    report
}

main "$@"
