#!/usr/bin/env bash
# run.sh - the autoscaling demo in one command (`make autoscale` runs it).
#
# Builds serve, serves examples/autoscale/serve.json on 127.0.0.1:8010 (admin
# API on 8011), plays a load shape against it with the load generator while
# a live view shows clients, ongoing requests and replicas, then writes the
# run's samples and a chart of them:
#
#   $BUILD/autoscale/run.csv    one row per half second
#   $BUILD/autoscale/run.png    replicas, target and requests against time
#   $BUILD/autoscale/serve.log  what serve said, one line per scaling decision
#
# Arguments are passed to the load generator, e.g. a shorter shape:
#   examples/autoscale/run.sh --shape 'ramp:0..8/5,hold:8/10,idle:0/15'
# Set BUILD to use another build folder.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUT=$BUILD/autoscale
CONFIG=$ROOT/examples/autoscale/serve.json
URL=http://127.0.0.1:8010/autoscale
ADMIN=http://127.0.0.1:8011

"$ROOT/scripts/deps.sh"
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$ROOT" >/dev/null
ninja -C "$BUILD" >/dev/null
mkdir -p "$OUT"

if curl -s -o /dev/null "$ADMIN/api/serve/applications/"; then
    echo "run.sh: something already answers on $ADMIN; stop it first" >&2
    exit 1
fi
"$BUILD/serve/serve" run "$CONFIG" >"$OUT/serve.log" 2>&1 &
SERVE_PID=$!
stop_serve() {
    kill -TERM "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
}
trap stop_serve EXIT
for _ in $(seq 100); do
    curl -sf -o /dev/null "$URL?ms=0" && break
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$OUT/serve.log" >&2; exit 1; }
    sleep 0.1
done

echo "run.sh: the dashboard is at $ADMIN/ (open it now to watch the replicas follow the load)"
status=0
"$BUILD/examples/loadgen" --admin "$ADMIN" --csv "$OUT/run.csv" "$@" "$URL" || status=$?
stop_serve
trap - EXIT

if command -v gnuplot >/dev/null; then
    gnuplot -e "csv='$OUT/run.csv'; png='$OUT/run.png'" "$ROOT/examples/autoscale/chart.gp"
    echo "chart: $OUT/run.png"
else
    echo "run.sh: gnuplot is not installed (apt-get install gnuplot-nox): no chart" >&2
fi
echo "serve's log, with each scaling decision: $OUT/serve.log"
exit "$status"
