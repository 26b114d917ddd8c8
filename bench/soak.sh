#!/usr/bin/env bash
# soak.sh - the soak of issue 9 (item 6): a few minutes of steady load at 70% of
# measured capacity, with the memory of every process sampled throughout.
#
# 1. Capacity: bench/loadgen unpaced (CONNS connections, CAPACITY_SECONDS) against
#    the Noop deployment of bench/noop.so, CAPACITY_RUNS times; the median req/s.
# 2. Soak: loadgen paced at LOAD_FRACTION of it (open loop: the rate holds even if
#    the server slows) for SOAK_SECONDS, while VmRSS (/proc/PID/status) of the
#    `serve run` process (controller and proxy are one process) and of each replica
#    is sampled every SAMPLE_S seconds into a CSV (t_s,process,pid,rss_kib).
# 3. Verdict: the error count (non-2xx answers, transport errors, hangs) must be 0,
#    the replicas the same processes throughout, and memory flat: for each process,
#    VmRSS at the end minus VmRSS at the end of the warm-up (WARMUP_S) at most
#    FLAT_KIB. Exit 1 otherwise. The least-squares slope after warm-up (KiB/min) is
#    printed with it.
#
# Why FLAT_KIB is 1024 by default: after warm-up the soak sends millions of
# requests (20k req/s x 150 s = 3 million here); a leak of one allocation per
# request (32 bytes at least, with malloc's overhead) would grow a process by
# ~100 MB, per connection or per request-path object likewise, so any leak on the
# request path is a hundred times the bound, while what legitimately moves RSS
# after warm-up (pages of malloc arenas reused at different addresses, the kernel's
# accounting of file-backed pages) stays within a few hundred KiB. A leak per
# second of wall time (a timer) must leak > 7 KiB a second to cross it in 150 s:
# the slope is printed to catch smaller ones by eye over a longer SOAK_SECONDS.
#
#   bench/soak.sh                     capacity (~20 s), then 3 min at 70%
#   SOAK_SECONDS=600 bench/soak.sh    ten minutes
#
# Settings (environment): SOAK_SECONDS (180), LOAD_FRACTION (0.7), CAPACITY (req/s:
# skip the measurement), CAPACITY_RUNS (3), CAPACITY_SECONDS (5), CONNS (32),
# REPLICAS (2), SAMPLE_S (5), WARMUP_S (30), FLAT_KIB (1024), LOADGEN_CPU (1: the
# core loadgen is pinned to; "" for none), SOAK_CSV (where the CSV goes, default
# $TMPDIR/serve-soak-DATE.csv), BUILD, NO_BUILD=1, KEEP=1 (keep the temp dir:
# config, logs, loadgen outputs).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SERVE=${SERVE_BIN:-$BUILD/serve/serve}
LOADGEN=$BUILD/bench/loadgen
PY=/usr/bin/python3

SOAK_SECONDS=${SOAK_SECONDS:-180}
LOAD_FRACTION=${LOAD_FRACTION:-0.7}
CAPACITY=${CAPACITY:-}
CAPACITY_RUNS=${CAPACITY_RUNS:-3}
CAPACITY_SECONDS=${CAPACITY_SECONDS:-5}
CONNS=${CONNS:-32}
REPLICAS=${REPLICAS:-2}
SAMPLE_S=${SAMPLE_S:-5}
WARMUP_S=${WARMUP_S:-30}
FLAT_KIB=${FLAT_KIB:-1024}
LOADGEN_CPU=${LOADGEN_CPU-1}
TIMEOUT=5 # a request unanswered this long is a hang
KEEP=${KEEP:-0}

STARTED=() # pids this script started, stopped by cleanup
TMP=""
SERVE_PID=""
BENCH=soak.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- Setup -------------------------------------------------------------------

# Noop as in proxy.sh: every feature of the proxy on (access log, a request
# timeout, default limits). serve's stderr is dropped: the access log goes to the
# log folder (in the temp dir) as well, and that is where warnings are looked for.
start_serve() {
    local ports i
    read -r -a ports <<<"$(free_ports 2)"
    PORT=${ports[0]}
    ADMIN=${ports[1]}
    cat >"$TMP/config.json" <<EOF
{"http_options": {"host": "127.0.0.1", "port": $PORT, "request_timeout_s": 30},
 "admin": {"host": "127.0.0.1", "port": $ADMIN},
 "applications": [{"name": "noop", "route_prefix": "/", "plugin": "noop.so",
   "deployments": [{"name": "Noop", "num_replicas": $REPLICAS, "max_ongoing_requests": 64}]}]}
EOF
    TMPDIR=$TMP SERVE_PLUGIN_PATH=$BUILD/bench "$SERVE" run "$TMP/config.json" 2>/dev/null &
    SERVE_PID=$!
    STARTED+=("$SERVE_PID")
    for ((i = 0; i < 100; i++)); do
        alive "$SERVE_PID" || die "serve exited at start (run it by hand: $SERVE run $TMP/config.json)"
        [[ $(curl -s --max-time 1 "http://127.0.0.1:$PORT/" || true) == ok ]] &&
            (($(pgrep -c -P "$SERVE_PID" || true) == REPLICAS)) && return 0
        sleep 0.1
    done
    die "serve not answering with $REPLICAS replicas 10 s after start"
}

# loadgen ARGS...: pinned to LOADGEN_CPU when set.
loadgen() {
    if [[ -n $LOADGEN_CPU ]]; then
        taskset -c "$LOADGEN_CPU" "$LOADGEN" "$@"
    else
        "$LOADGEN" "$@"
    fi
}

# ---- Capacity ----------------------------------------------------------------

measure_capacity() {
    local i out rps
    log "capacity: warm-up 2 s, then $CAPACITY_RUNS x ${CAPACITY_SECONDS} s unpaced at $CONNS connections"
    loadgen -c "$CONNS" -d 2 "http://127.0.0.1:$PORT/" >/dev/null
    : >"$TMP/capacity.txt"
    for ((i = 1; i <= CAPACITY_RUNS; i++)); do
        out=$TMP/capacity.$i.json
        loadgen -c "$CONNS" -d "$CAPACITY_SECONDS" "http://127.0.0.1:$PORT/" >"$out"
        (($(jq '.sent - .ok' "$out") == 0)) || die "errors while measuring capacity: $(jq -c '{by_status, errors}' "$out")"
        rps=$(jq '.achieved_rps | floor' "$out")
        echo "$rps" >>"$TMP/capacity.txt"
        log "  run $i: $rps req/s, p50 $(jq .latency_ms.p50 "$out") ms"
    done
    CAPACITY=$(median_of <"$TMP/capacity.txt")
}

# ---- Soak --------------------------------------------------------------------

# One CSV row per process: the serve process, then its replicas (children).
sample() {
    local t=$1 pid kib
    for pid in "$SERVE_PID" $(pgrep -P "$SERVE_PID" | sort -n); do
        kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
        [[ -n $kib ]] || continue
        printf '%s,%s,%s,%s\n' "$t" "$([[ $pid == "$SERVE_PID" ]] && echo serve || echo replica)" \
            "$pid" "$kib" >>"$CSV"
    done
}

run_soak() {
    RATE=$(awk -v c="$CAPACITY" -v f="$LOAD_FRACTION" 'BEGIN { printf "%d\n", c * f }')
    log "soak: $SOAK_SECONDS s at $RATE req/s ($LOAD_FRACTION x $CAPACITY), RSS every $SAMPLE_S s" \
        "to $CSV"
    echo "t_s,process,pid,rss_kib" >"$CSV"
    loadgen -c "$CONNS" -d "$SOAK_SECONDS" -r "$RATE" -t "$TIMEOUT" -p "http://127.0.0.1:$PORT/" \
        >"$TMP/soak.json" 2>"$TMP/soak.progress" &
    local lg=$! t0 now next=0
    STARTED+=("$lg")
    t0=$(date +%s.%N)
    while alive "$lg"; do
        now=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f\n", a - b }')
        if awk -v n="$now" -v x="$next" 'BEGIN { exit !(n >= x) }'; then
            sample "$now"
            if (((next / SAMPLE_S) % 6 == 0)); then
                log "  t=${now%.*}s  $(tail -1 "$TMP/soak.progress")"
            fi
            next=$((next + SAMPLE_S))
        fi
        sleep 0.2
    done
    wait "$lg" || die "loadgen failed (see $TMP)"
    sample "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f\n", a - b }')"
}

# ---- Verdict -----------------------------------------------------------------

# Per process: "process pid rss_first rss_warm rss_end growth slope_kib_min samples"
memory_table() {
    awk -F, -v w="$WARMUP_S" 'NR > 1 {
        k = $3; if (!(k in name)) { name[k] = $2; first[k] = $4; order[++n] = k }
        last[k] = $4; lastt[k] = $1
        if ($1 >= w) {
            if (!(k in warm)) warm[k] = $4
            c[k]++; sx[k] += $1; sy[k] += $4; sxx[k] += $1 * $1; sxy[k] += $1 * $4
        }
    }
    END {
        for (i = 1; i <= n; i++) {
            k = order[i]; d = c[k] * sxx[k] - sx[k] * sx[k]
            slope = (c[k] > 1 && d > 0) ? (c[k] * sxy[k] - sx[k] * sy[k]) / d * 60 : 0
            printf "%s %s %d %d %d %d %.1f %d\n", name[k], k, first[k], warm[k], last[k],
                last[k] - warm[k], slope, c[k]
        }
    }' "$CSV"
}

report() {
    local s=$TMP/soak.json errors non2xx fail=0 rows replicas_end
    non2xx=$(jq '.completed - .ok' "$s")
    errors=$(jq --argjson n "$non2xx" '.errors_total + $n' "$s")
    mapfile -t rows < <(memory_table)
    replicas_end=$(pgrep -c -P "$SERVE_PID" || true)
    echo
    echo "== Soak: $SOAK_SECONDS s at $LOAD_FRACTION of capacity, on $(nproc) cores =="
    echo "capacity: $CAPACITY req/s (loadgen unpaced, $CONNS connections, ${CAPACITY_SECONDS} s, median of" \
        "$(wc -l <"$TMP/capacity.txt" 2>/dev/null || echo 0): $(paste -sd' ' "$TMP/capacity.txt" 2>/dev/null))"
    jq -r '"load:     \(.rate) req/s paced, \(.connections) connections: sent \(.sent), answered \(.completed), 2xx \(.ok), achieved \(.achieved_rps | floor) req/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, max \(.latency_ms.max) ms, behind schedule \(.unsent), new connections \(.connects)"' "$s"
    echo "errors:   $errors (non-2xx $non2xx $(jq -c .by_status "$s"), transport $(jq -c .errors "$s"), hangs $(jq .timeouts "$s"))"
    # Open loop: when the machine cannot keep the rate, requests wait for a
    # connection and latency counts that wait. Say so rather than let it pass.
    if jq -e '.schedule_lag_max_ms > 100 or .unsent > 0.01 * .scheduled' "$s" >/dev/null; then
        echo "note:     the client fell behind its schedule by up to $(jq '.schedule_lag_max_ms / 1000 | floor' "$s") s" \
            "(achieved $(jq '.achieved_rps | floor' "$s") req/s in all): the latency includes that wait." \
            "Other load on the machine? (load average now: $(uptime | sed 's/.*average: //'))"
    fi
    echo
    printf '%-8s %8s %10s %16s %10s %10s %14s\n' process pid "start KiB" "warm-up end KiB" "end KiB" growth "KiB/min after"
    local r f
    for r in "${rows[@]}"; do
        read -r -a f <<<"$r"
        printf '%-8s %8s %10s %16s %10s %10s %14s\n' "${f[0]}" "${f[1]}" "${f[2]}" "${f[3]}" "${f[4]}" \
            "${f[5]}" "${f[6]}"
    done
    echo "(warm-up: the first $WARMUP_S s; flat: growth after it <= $FLAT_KIB KiB; samples every $SAMPLE_S s)"
    echo
    if ((errors == 0)); then echo "PASS  errors: 0"; else
        echo "FAIL  errors: $errors"
        fail=1
    fi
    local bad=0 n_rep=0
    for r in "${rows[@]}"; do
        read -r -a f <<<"$r"
        [[ ${f[0]} == replica ]] && n_rep=$((n_rep + 1))
        ((f[5] <= FLAT_KIB)) || bad=$((bad + 1))
    done
    if ((bad == 0)); then echo "PASS  memory flat after warm-up (every process within $FLAT_KIB KiB)"; else
        echo "FAIL  memory not flat: $bad process(es) grew more than $FLAT_KIB KiB after warm-up"
        fail=1
    fi
    if ((n_rep == REPLICAS && replicas_end == REPLICAS)) && alive "$SERVE_PID"; then
        echo "PASS  the same serve and $REPLICAS replica processes throughout"
    else
        echo "FAIL  processes: $n_rep replica pids seen, $replicas_end at the end (expected $REPLICAS)," \
            "serve $(alive "$SERVE_PID" && echo alive || echo GONE)"
        fail=1
    fi
    local warns
    warns=$(cat "$TMP"/serve/session_latest/logs/*.log 2>/dev/null | grep -v ' access ' |
        grep -c -E ' (WARN|ERROR) ' || true)
    echo "log:      $warns WARN/ERROR lines besides access lines; CSV: $CSV"
    return "$fail"
}

main() {
    local t
    for t in curl jq pgrep taskset; do command -v "$t" >/dev/null || die "$t is missing"; done
    if [[ ${NO_BUILD:-0} != 1 ]]; then build_targets serve/serve bench/noop.so bench/loadgen; fi
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/serve-soak.XXXXXX")
    CSV=${SOAK_CSV:-${TMPDIR:-/tmp}/serve-soak-$(date +%Y%m%d-%H%M%S).csv}
    start_serve
    if [[ -z $CAPACITY ]]; then measure_capacity; fi
    run_soak
    report
}

main "$@"
