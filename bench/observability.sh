#!/usr/bin/env bash
# observability.sh - what issue 8 costs: the proxy in front of bench/noop.so, built
# from BASE (a revision before metrics and log files; default 43541d9) and from this
# tree, measured alternately in the same run, access log off and on; then the size
# and render time of GET /metrics with the demo config (examples/serve.json).
#
#   bench/observability.sh            full run: 3 rounds x 8 s per build and setting
#   QUICK=1 bench/observability.sh    smoke test: 1 round x 3 s
#
# Settings (environment): BASE, ROUNDS, DURATION (wrk -d), CONNS (64), WRK_CPU (1),
# BUILD (this tree's build dir), KEEP=1 to keep the temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PY=/usr/bin/python3
BASE=${BASE:-43541d9}
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=${DURATION:-3s}
else
    ROUNDS=${ROUNDS:-3}
    DURATION=${DURATION:-8s}
fi
CONNS=${CONNS:-64}
WRK_CPU=${WRK_CPU:-1}
KEEP=${KEEP:-0}
SCRAPES=20

STARTED=()
TMP=""
BENCH=observability.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for t in wrk taskset curl git ninja; do
    command -v "$t" >/dev/null || die "$t is missing (apt-get install wrk curl git ninja-build)"
done
TMP=$(mktemp -d /tmp/bench-observability.XXXXXX)

# The base revision in a worktree of its own, with its own build (tests off).
build_base() {
    log "$BENCH: building $BASE in $TMP/base"
    git -C "$ROOT" worktree add -f --detach "$TMP/base" "$BASE" >/dev/null 2>&1 ||
        die "cannot check out $BASE"
    meson setup "$TMP/base/build" "$TMP/base" -Dtests=false >/dev/null ||
        die "cannot configure $BASE"
    ninja -C "$TMP/base/build" serve/serve bench/noop.so >/dev/null || die "cannot build $BASE"
}

# run_one NAME BUILD_DIR ACCESS_LOG ROUND: one serve, one wrk run, one results line.
run_one() {
    local name=$1 build=$2 access=$3 round=$4 port admin logging=""
    read -r port admin < <(free_ports 2)
    # The new tree writes log files: put them in TMP. The base has no such field.
    [[ $build == "$BUILD" ]] && logging="\"logging_config\": {\"logs_dir\": \"$TMP/logs\"},"
    cat >"$TMP/c.json" <<J
{"http_options": {"port": $port, "access_log": $access}, "admin": {"port": $admin}, $logging
 "applications": [{"name": "noop", "route_prefix": "/", "plugin": "$build/bench/noop.so",
   "deployments": [{"name": "Noop", "max_ongoing_requests": 100}]}]}
J
    "$build/serve/serve" run "$TMP/c.json" >"$TMP/serve.err" 2>&1 &
    STARTED+=($!)
    local i
    for ((i = 0; i < 100; i++)); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.1
    done
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/" >"$TMP/wrk.out"
    stop_all
    printf '%s\t%s\t%s\t%s\n' "$name" "$access" "$round" "$(parse_wrk "$TMP/wrk.out" | cut -d' ' -f1)" \
        >>"$TMP/results.tsv"
}

# The demo config on free ports, some traffic, then SCRAPES timed GET /metrics.
scrape_demo() {
    local port admin i
    read -r port admin < <(free_ports 2)
    "$PY" - "$ROOT/examples/serve.json" "$port" "$admin" "$TMP/demo.json" <<'P'
import json, sys
c = json.load(open(sys.argv[1]))
c.setdefault("http_options", {})["port"] = int(sys.argv[2])
c.setdefault("admin", {})["port"] = int(sys.argv[3])
c["logging_config"] = {"logs_dir": sys.argv[4] + ".logs"}
json.dump(c, open(sys.argv[4], "w"))
P
    (cd "$ROOT/examples" && exec "$BUILD/serve/serve" run "$TMP/demo.json") >"$TMP/demo.err" 2>&1 &
    STARTED+=($!)
    for ((i = 0; i < 200; i++)); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/hello" && break
        sleep 0.1
    done
    for ((i = 0; i < 200; i++)); do curl -s -o /dev/null "http://127.0.0.1:$port/hello"; done
    sleep 1.5 # the replicas' histograms arrive each second
    curl -s "http://127.0.0.1:$admin/metrics" >"$TMP/metrics.txt"
    for ((i = 0; i < SCRAPES; i++)); do
        curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$admin/metrics"
    done >"$TMP/scrapes.txt"
    stop_all
}

build_targets serve/serve bench/noop.so
build_base
for access in false true; do
    for ((r = 1; r <= ROUNDS; r++)); do
        run_one base "$TMP/base/build" "$access" "$r"
        run_one new "$BUILD" "$access" "$r"
    done
done
scrape_demo
git -C "$ROOT" worktree remove --force "$TMP/base" >/dev/null 2>&1 || true

echo
echo "noop deployment, wrk -t1 -c$CONNS -d$DURATION on core $WRK_CPU, $ROUNDS round(s), medians (req/s)"
printf '%-12s %12s %12s %8s\n' access_log "base $BASE" "this tree" ratio
for access in false true; do
    b=$(median base "$access" 4)
    n=$(median new "$access" 4)
    printf '%-12s %12.0f %12.0f %8.2f\n' "$access" "$b" "$n" "$(awk -v n="$n" -v b="$b" 'BEGIN { print n / b }')"
done
echo
printf 'GET /metrics, demo config: %d bytes, %d samples, median %.2f ms, max %.2f ms of %d\n' \
    "$(wc -c <"$TMP/metrics.txt")" "$(grep -vc '^#' "$TMP/metrics.txt")" \
    "$(median_of <"$TMP/scrapes.txt" | awk '{ print $1 * 1000 }')" \
    "$(sort -g "$TMP/scrapes.txt" | tail -1 | awk '{ print $1 * 1000 }')" "$SCRAPES"
