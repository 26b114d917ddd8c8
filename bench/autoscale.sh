#!/usr/bin/env bash
# autoscale.sh - the autoscaling benchmark of issue 5: a step from 1 to 32
# concurrent clients on a deployment whose requests take 10 ms, with
# target_ongoing_requests 2, then the load stops. Prints how long the
# replica count took to reach its new target, the latency during the step,
# how long it took to come back down, and then, from zero replicas, the
# time to the first byte of a request (cold start). Loopback only, bounded
# in time.
#
#   bench/autoscale.sh            one run (about 70 s)
#
# Settings (environment): CLIENTS (32), STEP_S (20), UPSCALE_DELAY_S (1),
# DOWNSCALE_DELAY_S (3), MAX_REPLICAS (16), ZERO_DELAY_S (1, the
# downscale_to_zero_delay_s), COLD_STARTS (5), BUILD (build dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SERVE=$BUILD/serve/serve
CLIENTS=${CLIENTS:-32}
STEP_S=${STEP_S:-20}
UPSCALE_DELAY_S=${UPSCALE_DELAY_S:-1}
DOWNSCALE_DELAY_S=${DOWNSCALE_DELAY_S:-3}
MAX_REPLICAS=${MAX_REPLICAS:-16}
ZERO_DELAY_S=${ZERO_DELAY_S:-1}
COLD_STARTS=${COLD_STARTS:-5}
PY=/usr/bin/python3

TMP=$(mktemp -d /tmp/serve-autoscale.XXXXXX)
PIDS=()
cleanup() {
    kill -TERM "${PIDS[@]}" 2>/dev/null || true # serve drains and stops its replicas
    sleep 1
    kill -KILL "${PIDS[@]}" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "autoscale.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$SERVE" ] || ninja -C "$BUILD" >/dev/null

read -r PORT ADMIN <<<"$("$PY" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')"

# Sleepy (tests/plugins/faulty.so) sleeps ?ms=N: a request that costs 10 ms
# of waiting and no CPU, so the machine's 2 cores are not the limit.
cat >"$TMP/config.json" <<EOF
{"http_options": {"port": $PORT, "access_log": false}, "admin": {"port": $ADMIN},
 "applications": [{"name": "s", "route_prefix": "/", "plugin": "faulty.so",
   "deployments": [{"name": "Sleepy", "max_ongoing_requests": 5,
     "autoscaling_config": {"min_replicas": MIN, "initial_replicas": 1,
       "max_replicas": $MAX_REPLICAS, "downscale_to_zero_delay_s": $ZERO_DELAY_S,
       "target_ongoing_requests": 2, "look_back_period_s": 1,
       "upscale_delay_s": $UPSCALE_DELAY_S, "downscale_delay_s": $DOWNSCALE_DELAY_S}}]}]}
EOF
# The step runs from one replica (min_replicas 1); the cold starts after it
# need zero, so a second config, deployed live, lowers min_replicas to 0.
sed 's/"min_replicas": MIN/"min_replicas": 0/' "$TMP/config.json" >"$TMP/to-zero.json"
sed -i 's/"min_replicas": MIN/"min_replicas": 1/' "$TMP/config.json"
SERVE_PLUGIN_PATH=$BUILD/tests/plugins "$SERVE" run "$TMP/config.json" 2>"$TMP/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/?ms=1" >/dev/null && break; sleep 0.1; done

# Record (time, target, running replicas) every 100 ms from the admin API.
"$PY" - "$ADMIN" "$TMP/samples.csv" <<'PYEOF' &
import json, sys, time, urllib.request
port, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    f.write("t_s,target,running\n")  # t_s: Unix time
    while True:
        try:
            doc = json.load(urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/serve/applications/", timeout=1))
            dep = doc["applications"]["s"]["deployments"]["Sleepy"]
            running = sum(r["state"] == "RUNNING" for r in dep["replicas"])
            f.write(f"{time.time():.2f},{dep['autoscaling']['target']},{running}\n")
            f.flush()
        except Exception:
            pass
        time.sleep(0.1)
PYEOF
PIDS+=($!)
disown # its end at cleanup is expected: no job report
sleep 2
echo "step: $CLIENTS clients for ${STEP_S}s, 10 ms requests, target_ongoing_requests 2," \
    "upscale_delay_s $UPSCALE_DELAY_S, downscale_delay_s $DOWNSCALE_DELAY_S"
STEP_AT=$("$PY" -c 'import time; print(time.time())')
taskset -c 1 wrk -t1 -c"$CLIENTS" -d"${STEP_S}s" --latency "http://127.0.0.1:$PORT/?ms=10" \
    >"$TMP/wrk.txt"
STOP_AT=$("$PY" -c 'import time; print(time.time())')
sleep $((DOWNSCALE_DELAY_S + 8))

"$PY" - "$TMP/samples.csv" "$TMP/wrk.txt" "$STEP_AT" "$STOP_AT" <<'PYEOF'
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
wrk = open(sys.argv[2]).read()
step, stop = float(sys.argv[3]), float(sys.argv[4])
peak = max(int(r["target"]) for r in rows if step <= float(r["t_s"]) <= stop)
reached = next((float(r["t_s"]) - step for r in rows
                if float(r["t_s"]) >= step and int(r["running"]) >= peak), None)
down = next((float(r["t_s"]) - stop for r in rows
             if float(r["t_s"]) >= stop and int(r["running"]) <= 1), None)
p = lambda q: re.search(rf"{q}%\s+(\S+)", wrk).group(1)
rps = re.search(r"Requests/sec:\s+(\S+)", wrk).group(1)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
print(f"target reached:   {peak} replicas, running {reached:.1f} s after the step")
print(f"latency in step:  p50 {p(50)}, p90 {p(90)}, p99 {p(99)} ({rps} req/s, "
      f"{errors.group(1) if errors else 0} non-2xx)")
print(f"back to 1:        {down:.1f} s after the load stopped" if down is not None
      else "back to 1:        not within the run")
PYEOF

# Cold starts: wait until no replica runs, then time one request to its
# first byte; it waits at the proxy while a replica starts.
"$SERVE" deploy -a "http://127.0.0.1:$ADMIN" "$TMP/to-zero.json" >/dev/null
running_now() { tail -n 1 "$TMP/samples.csv" | cut -d, -f3; }
first_byte() { curl -s -o /dev/null -w '%{time_starttransfer}\n' "http://127.0.0.1:$PORT/?ms=10"; }
for _ in $(seq "$COLD_STARTS"); do
    for _ in $(seq 300); do [ "$(running_now)" = 0 ] && break; sleep 0.1; done
    [ "$(running_now)" = 0 ] || { echo "cold start:       zero replicas never reached" >&2; exit 1; }
    first_byte >>"$TMP/cold.txt"
    sleep 0.5 # let the sampler see the new replica before looking for zero again
done
for _ in $(seq 5); do first_byte; done >"$TMP/warm.txt"
"$PY" - "$TMP/cold.txt" "$TMP/warm.txt" <<'PYEOF'
import statistics, sys
cold, warm = ([float(x) for x in open(f)] for f in sys.argv[1:3])
print(f"cold start:       first byte after {statistics.median(cold):.3f} s from zero replicas "
      f"(median of {len(cold)}; {min(cold):.3f}-{max(cold):.3f}), "
      f"warm {statistics.median(warm):.3f} s")
PYEOF
