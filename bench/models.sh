#!/usr/bin/env bash
# models.sh - the model-serving benchmark: the MLP of examples/mlp (784-256-10, FP32 on
# OpenBLAS) served by one `serve run` over the v2 protocol without batching and with
# dynamic batching (max_batch_size 32 and 64), against the same model in FastAPI + numpy
# (bench/fastapi_mlp.py), against our own no-op deployment, and against the network run
# in-process (build/bench/mlp_ceiling), with wrk on loopback. See bench/README.md.
#
#   bench/models.sh            full run: 3 rounds of 10 s per workload, server and
#                              connection count, about 17 min (DURATION=5s: 10 min)
#   QUICK=1 bench/models.sh    smoke test: 1 round of 3 s, about 2.5 min
#
# Targets (at 64 connections unless said): 1-sample v2 JSON with batching on (the
# better of batch 32 and 64) >= 10x FastAPI's req/s and >= 0.5x our no-op's req/s;
# 64-sample binary requests, best batching config at its best connection count, >= 50%
# of the in-process batch-64 samples/s with one OpenBLAS thread; batching on beats
# batching off; p99 of batched 1-sample JSON < 3 x batch_wait_timeout_s + one batch-64
# forward at the ceiling's rate.
#
# Settings (environment): ROUNDS (3), DURATION (wrk -d, 10s), CONNS ("1 16 64"),
# WRK_CPU (1: the core wrk is pinned to), WAIT (batch_wait_timeout_s of the batching
# deployments, 0.002), BLAS_THREADS (init_args.blas_threads of every MLP replica, 1),
# BUILD (build dir), KEEP=1 to keep the temp dir (config, bodies, logs, wrk outputs),
# QUICK=1 for 1 round of 3 s (ROUNDS and DURATION still win when set).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SERVE=$BUILD/serve/serve
CEILING=$BUILD/bench/mlp_ceiling
MLP_SO=$BUILD/examples/mlp.so
NOOP_SO=$BUILD/bench/noop.so
WEIGHTS=$BUILD/examples/weights.bin # the file mlp.so loads by default (next to it)
PY=/usr/bin/python3                 # Debian's: it sees python3-fastapi, -uvicorn, -numpy...

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=${DURATION:-3s}
else
    ROUNDS=${ROUNDS:-3}
    DURATION=${DURATION:-10s}
fi
CONNS=${CONNS:-1 16 64}
WRK_CPU=${WRK_CPU:-1}
WAIT=${WAIT:-0.002}
BLAS_THREADS=${BLAS_THREADS:-1}
KEEP=${KEEP:-0}
# A 64-sample JSON request to FastAPI takes tens of ms: at 64 connections the queue
# alone is over wrk's default timeout of 2 s, which would count as socket errors.
WRK_TIMEOUT=30s
N_IN=784
BATCH=64         # samples per request of the batched workloads
MAX_ONGOING=64   # mlp_nb and noop; the batching ones keep the default, 2 x max_batch_size
APPS=(mlp_nb mlp_b32 mlp_b64 noop)
REPLICAS=${#APPS[@]} # one each

# The wrk runs of one round at one connection count, in rotation order. Each has a
# workload, a server, a path, a body (a wrk Lua script) and the samples per request.
RUNS=(j1_nb j1_b32 j1_b64 j1_fa j1_fat b64_nb b64_b32 b64_b64 b64_fa noop)
declare -A WL=([j1_nb]="1 sample, v2 JSON" [j1_b32]="1 sample, v2 JSON"
    [j1_b64]="1 sample, v2 JSON" [j1_fa]="1 sample, v2 JSON" [j1_fat]="1 sample, v2 JSON"
    [b64_nb]="64 samples, v2 binary" [b64_b32]="64 samples, v2 binary"
    [b64_b64]="64 samples, v2 binary" [b64_fa]="64 samples, v2 JSON (peer)"
    [noop]="no-op GET")
declare -A WHO=([j1_nb]="serve mlp_nb (no batching)" [j1_b32]="serve mlp_b32 (batch 32)"
    [j1_b64]="serve mlp_b64 (batch 64)" [j1_fa]="FastAPI + numpy"
    [j1_fat]="FastAPI + numpy, pydantic"
    [b64_nb]="serve mlp_nb (no batching)" [b64_b32]="serve mlp_b32 (batch 32)"
    [b64_b64]="serve mlp_b64 (batch 64)" [b64_fa]="FastAPI + numpy"
    [noop]="serve /noop (Noop)")
declare -A SERVER=([j1_fa]=fastapi [j1_fat]=fastapi [b64_fa]=fastapi)
declare -A URLPATH=([j1_nb]=/v2/models/mlp_nb/infer [j1_b32]=/v2/models/mlp_b32/infer
    [j1_b64]=/v2/models/mlp_b64/infer [j1_fa]=/v2/models/mlp/infer
    [j1_fat]=/v2/models/mlp_typed/infer
    [b64_nb]=/v2/models/mlp_nb/infer [b64_b32]=/v2/models/mlp_b32/infer
    [b64_b64]=/v2/models/mlp_b64/infer [b64_fa]=/v2/models/mlp/infer [noop]=/noop)
declare -A BODY=([j1_nb]=json1 [j1_b32]=json1 [j1_b64]=json1 [j1_fa]=json1 [j1_fat]=json1
    [b64_nb]=bin64 [b64_b32]=bin64 [b64_b64]=bin64 [b64_fa]=json64 [noop]="")
declare -A SAMPLES=([j1_nb]=1 [j1_b32]=1 [j1_b64]=1 [j1_fa]=1 [j1_fat]=1 [b64_nb]=$BATCH
    [b64_b32]=$BATCH [b64_b64]=$BATCH [b64_fa]=$BATCH [noop]=0)

STARTED=() # pids of every process this script started, stopped by cleanup
TMP=""
PORT=""         # serve's proxy
FA_PORT=""      # FastAPI
SERVE_PID=""
FA_PID=""
HLEN=""         # the length of bin64.body's JSON header
BAD_RUNS=()     # runs with non-2xx answers or socket errors
LOAD_START=""
OT_HOST=0 OT_OURS=0 OT_T0=0 # others_start's marks
OTHERS=0        # others_end's answer
HZ=$(getconf CLK_TCK)
ANSWERS=""      # what check_answers found

BENCH=models.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- Setup -----------------------------------------------------------------

check_tools() {
    local t
    for t in wrk taskset curl pgrep ninja; do
        command -v "$t" >/dev/null || die "$t is missing (apt-get install wrk util-linux curl procps ninja-build)"
    done
    "$PY" -c 'import fastapi, uvicorn, uvloop, httptools, numpy' 2>/dev/null ||
        die "$PY lacks fastapi/uvicorn/uvloop/httptools/numpy (apt-get install python3-fastapi" \
            "python3-uvicorn python3-uvloop python3-httptools python3-numpy)"
}

# Build only what is run here; the weights come with the build folder.
build() {
    build_targets serve/serve bench/noop.so bench/mlp_ceiling examples/mlp.so
    [[ -f $WEIGHTS ]] || die "$WEIGHTS is missing (meson copies it at setup: meson setup --reconfigure $BUILD)"
}

# The three bodies, the same 64 samples (random.seed(1), "%.6f" in [0, 1)):
#   json1.body   v2 JSON, the first sample, shape [1, 784]
#   bin64.body   v2 binary: the JSON header, then 64 x 784 little-endian float32
#   json64.body  the same 64 samples as v2 JSON, for FastAPI (no binary extension)
# Prints the length of bin64's JSON header (Inference-Header-Content-Length).
make_bodies() {
    "$PY" - "$TMP" "$BATCH" "$N_IN" <<'EOF'
import json, random, struct, sys
d, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(1)
rows = [["%.6f" % random.random() for _ in range(k)] for _ in range(n)]

def v2_json(rows):
    data = ",".join(",".join(r) for r in rows)
    return ('{"inputs":[{"name":"input","datatype":"FP32","shape":[%d,%d],"data":[%s]}]}'
            % (len(rows), k, data))

with open(d + "/json1.body", "w") as f:
    f.write(v2_json(rows[:1]))
with open(d + "/json64.body", "w") as f:
    f.write(v2_json(rows))
header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, k],
                                 "parameters": {"binary_data_size": n * k * 4}}],
                     "parameters": {"binary_data_output": True}}, separators=(",", ":"))
raw = struct.pack("<%df" % (n * k), *(float(v) for r in rows for v in r))
with open(d + "/bin64.body", "wb") as f:
    f.write(header.encode() + raw)
print(len(header))
EOF
}

# wrk_script NAME CONTENT_TYPE [HEADER_LENGTH]: a Lua script that POSTs NAME.body.
wrk_script() {
    local name=$1 type=$2 hlen=${3:-}
    {
        echo "-- models.sh: POST $name.body (read in binary mode: it may hold raw float32)"
        echo "local f = assert(io.open(\"$TMP/$name.body\", \"rb\"))"
        echo 'wrk.method = "POST"'
        echo 'wrk.body = f:read("*a")'
        echo 'f:close()'
        echo "wrk.headers[\"Content-Type\"] = \"$type\""
        if [[ -n $hlen ]]; then echo "wrk.headers[\"Inference-Header-Content-Length\"] = \"$hlen\""; fi
    } >"$TMP/$name.lua"
}

write_config() {
    local admin=$1 mlp_args="{\"blas_threads\": $BLAS_THREADS}"
    cat >"$TMP/config.json" <<EOF
{"http_options": {"host": "127.0.0.1", "port": $PORT, "access_log": false},
 "admin": {"host": "127.0.0.1", "port": $admin},
 "applications": [
  {"name": "mlp_nb", "route_prefix": "/mlp_nb", "plugin": "$MLP_SO",
   "deployments": [{"name": "MLP", "num_replicas": 1, "max_ongoing_requests": $MAX_ONGOING,
                    "init_args": $mlp_args}]},
  {"name": "mlp_b32", "route_prefix": "/mlp_b32", "plugin": "$MLP_SO",
   "deployments": [{"name": "MLP", "num_replicas": 1, "init_args": $mlp_args,
                    "batching": {"max_batch_size": 32, "batch_wait_timeout_s": $WAIT}}]},
  {"name": "mlp_b64", "route_prefix": "/mlp_b64", "plugin": "$MLP_SO",
   "deployments": [{"name": "MLP", "num_replicas": 1, "init_args": $mlp_args,
                    "batching": {"max_batch_size": 64, "batch_wait_timeout_s": $WAIT}}]},
  {"name": "noop", "route_prefix": "/noop", "plugin": "$NOOP_SO",
   "deployments": [{"name": "Noop", "num_replicas": 1, "max_ongoing_requests": $MAX_ONGOING}]}]}
EOF
}

# Wait until URL answers 200 (to GET, or to POST of BODY_FILE); fail if PID dies or
# 20 s pass.
wait_200() {
    local name=$1 pid=$2 url=$3 body=${4:-} i code
    local args=(-s -o /dev/null -w '%{http_code}' --max-time 2)
    if [[ -n $body ]]; then args+=(-H 'Content-Type: application/json' --data-binary "@$body"); fi
    for ((i = 0; i < 200; i++)); do
        alive "$pid" || die "$name exited at start (see $TMP)"
        code=$(curl "${args[@]}" "$url" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    die "$name: $url does not answer 200 (last: $code; see $TMP)"
}

start_serve() {
    SERVE_PLUGIN_PATH=$BUILD/bench "$SERVE" run "$TMP/config.json" 2>"$TMP/serve.err" &
    SERVE_PID=$!
    STARTED+=("$SERVE_PID")
    local app
    for app in mlp_nb mlp_b32 mlp_b64; do
        wait_200 serve "$SERVE_PID" "http://127.0.0.1:$PORT/v2/models/$app/ready"
    done
    wait_200 serve "$SERVE_PID" "http://127.0.0.1:$PORT/noop"
    wait_replicas "$SERVE_PID" "$REPLICAS"
}

start_fastapi() {
    "$PY" "$ROOT/bench/fastapi_mlp.py" --port "$FA_PORT" --weights "$WEIGHTS" 2>"$TMP/fastapi.err" &
    FA_PID=$!
    STARTED+=("$FA_PID")
    wait_200 FastAPI "$FA_PID" "http://127.0.0.1:$FA_PORT/v2/models/mlp/infer" "$TMP/json1.body"
}

# Before measuring: every server answers every body, and serve's answers are FastAPI's
# (same weights, same samples): a benchmark of wrong answers would be worth nothing.
check_answers() {
    "$PY" - "http://127.0.0.1:$PORT" "http://127.0.0.1:$FA_PORT" "$TMP" "$HLEN" <<'EOF' ||
import json, struct, sys, urllib.error, urllib.request
serve, fastapi, d, hlen = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def post(url, name, headers):
    with open("%s/%s.body" % (d, name), "rb") as f:
        body = f.read()
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.headers, r.read()
    except urllib.error.HTTPError as e:
        sys.exit("%s: %s %s" % (url, e.code, e.read()[:300]))

def outputs_json(headers, data):
    """{name: data} of a JSON answer."""
    return {o["name"]: o["data"] for o in json.loads(data)["outputs"]}

def outputs_binary(headers, data):
    """{name: data} of a binary answer (Inference-Header-Content-Length)."""
    n = int(headers["Inference-Header-Content-Length"])
    head, rest, out = json.loads(data[:n]), data[n:], {}
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        fmt = {"FP32": "f", "INT64": "q"}[o["datatype"]]
        out[o["name"]] = list(struct.unpack("<%d%s" % (size // struct.calcsize(fmt), fmt), rest[:size]))
        rest = rest[size:]
    if rest:
        sys.exit("binary answer: %d bytes left over" % len(rest))
    return out

def compare(what, got, ref, n):
    dp = max(abs(a - b) for a, b in zip(got["probabilities"], ref["probabilities"]))
    same = sum(a == b for a, b in zip(got["class"], ref["class"]))
    if len(got["probabilities"]) != 10 * n or len(got["class"]) != n or dp > 1e-4 or same != n:
        sys.exit("%s: %d probabilities, %d classes, max |dp| %.3g, %d/%d classes as FastAPI's"
                 % (what, len(got["probabilities"]), len(got["class"]), dp, same, n))
    return dp

js = {"Content-Type": "application/json"}
ref1 = outputs_json(*post(fastapi + "/v2/models/mlp/infer", "json1", js))
ref64 = outputs_json(*post(fastapi + "/v2/models/mlp/infer", "json64", js))
worst = 0
for app in ("mlp_nb", "mlp_b32", "mlp_b64"):
    url = "%s/v2/models/%s/infer" % (serve, app)
    worst = max(worst, compare(app + " json1", outputs_json(*post(url, "json1", js)), ref1, 1))
    got = outputs_binary(*post(url, "bin64", {"Content-Type": "application/octet-stream",
                                               "Inference-Header-Content-Length": hlen}))
    worst = max(worst, compare(app + " bin64", got, ref64, 64))
print("serve's (3 models, JSON and binary) = FastAPI's: all classes, max |dp| %.2g" % worst)
EOF
        die "the answers differ or fail (above)"
}

# ---- Measuring -------------------------------------------------------------

url_of() {
    if [[ ${SERVER[$1]:-serve} == fastapi ]]; then
        echo "http://127.0.0.1:$FA_PORT${URLPATH[$1]}"
    else echo "http://127.0.0.1:$PORT${URLPATH[$1]}"; fi
}

# wrk pinned to one core (bench-notes): RUN CONNS DURATION.
run_wrk() {
    local script=()
    if [[ -n ${BODY[$1]} ]]; then script=(-s "$TMP/${BODY[$1]}.lua"); fi
    taskset -c "$WRK_CPU" wrk -t1 -c"$2" -d"$3" --timeout "$WRK_TIMEOUT" --latency "${script[@]}" "$(url_of "$1")"
}

# The CPU time (clock ticks) of the servers and serve's replicas so far.
cpu_ticks() {
    local p t=0 v pids
    mapfile -t pids < <(pgrep -P "$SERVE_PID" || true)
    for p in "$SERVE_PID" "$FA_PID" "${pids[@]}"; do
        v=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
        t=$((t + v))
    done
    echo "$t"
}

# The CPU the rest of the machine used while we measured, in OTHERS: the machine's
# user + system ticks, less those of the servers and of this script's children that
# have ended (wrk, mlp_ceiling). As a percentage of one core; another user's build or
# tests show up here. Both run in this shell, not in $(...): `times` reports the
# children of the shell it runs in.
others_start() {
    OT_HOST=$(awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat)
    times >"$TMP/times.txt"
    OT_OURS=$(($(cpu_ticks) + $(children_ticks)))
    OT_T0=$(date +%s.%N)
}
others_end() {
    local host ours
    host=$(awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat)
    times >"$TMP/times.txt"
    ours=$(($(cpu_ticks) + $(children_ticks)))
    OTHERS=$(awk -v h=$((host - OT_HOST)) -v o=$((ours - OT_OURS)) -v t0="$OT_T0" -v t1="$(date +%s.%N)" \
        -v hz="$HZ" 'BEGIN { v = (h - o) / hz / (t1 - t0) * 100; printf "%.0f\n", v < 0 ? 0 : v }')
}
# "  (others: N% of a core)" when N >= 10, for the progress lines.
others_note() {
    if (($1 >= 10)); then echo "  (others: $1% of a core)"; fi
}
# The children's user + system time in the last `times` output, in ticks.
children_ticks() {
    awk -v hz="$HZ" 'function s(v) { split(v, a, /[ms]/); return a[1] * 60 + a[2] }
        NR == 2 { printf "%.0f\n", (s($1) + s($2)) * hz }' "$TMP/times.txt"
}

# After a run, wait (at most 10 s) until the servers are idle: FastAPI goes on with the
# requests it had read when wrk closed its connections (seconds of work after a 64-sample
# JSON run), which would otherwise weigh on the next run.
settle() {
    local i t0 t1
    t0=$(cpu_ticks)
    for ((i = 0; i < 50; i++)); do
        sleep 0.2
        t1=$(cpu_ticks)
        ((t1 - t0 <= 2)) && return 0 # under 10% of a core
        t0=$t1
    done
    log "  (servers still busy 10 s after the run)"
}

# wrk at C connections on RUN for round R; one line appended to results.tsv
# (run conns round rps p50 p99 non2xx sock others%).
measure() {
    local run=$1 c=$2 r=$3 out=$TMP/wrk/$1.c$2.r$3.txt fields others
    alive "$SERVE_PID" || die "serve (pid $SERVE_PID) has exited; see $TMP/serve.err"
    alive "$FA_PID" || die "FastAPI (pid $FA_PID) has exited; see $TMP/fastapi.err"
    others_start
    run_wrk "$run" "$c" "$DURATION" >"$out" 2>&1 || die "wrk failed on $run: $(cat "$out")"
    others_end
    others=$OTHERS
    read -r -a fields <<<"$(parse_wrk "$out")"
    [[ -n ${fields[0]:-} ]] || die "cannot parse $out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$c" "$r" "${fields[@]}" "$others" \
        >>"$TMP/results.tsv"
    log "  round $r  c=$c  $(printf '%-27s %-27s' "${WL[$run]}" "${WHO[$run]}")" \
        "$(printf '%8.0f req/s  p50 %s  p99 %s' "${fields[0]}" "$(fmt_us "${fields[1]}")" \
            "$(fmt_us "${fields[2]}")")$(others_note "$others")"
    if ((fields[3] + fields[4])); then
        BAD_RUNS+=("round $r c=$c ${WL[$run]} / ${WHO[$run]}: ${fields[3]} non-2xx, ${fields[4]} socket errors ($out)")
        log "  !!!! round $r c=$c ${WL[$run]} / ${WHO[$run]}: ${fields[3]} non-2xx answers," \
            "${fields[4]} socket errors: see $out"
    fi
    settle
}

# The in-process ceiling at 1 and 2 OpenBLAS threads; lines in ceiling.tsv
# (threads batch round samples_per_s).
ceiling() {
    local r=$1 t out line got others
    for t in 1 2; do
        out=$TMP/ceiling.t$t.r$r.txt
        others_start
        OPENBLAS_NUM_THREADS=$t "$CEILING" "$WEIGHTS" >"$out" 2>&1 || die "mlp_ceiling failed: $(cat "$out")"
        others_end
        others=$OTHERS
        got=$(awk '$1 == "openblas_threads" { print $2 }' "$out")
        [[ $got == "$t" ]] || log "warning: mlp_ceiling ran with $got OpenBLAS thread(s), asked for $t"
        awk -v t="$t" -v r="$r" '$1 == "batch" { printf "%s\t%s\t%s\t%s\n", t, $2, r, $4 }' \
            "$out" >>"$TMP/ceiling.tsv"
        line=$(awk '$1 == "batch" { printf "%s%s: %.0f", (n++ ? ", " : ""), $2, $4 }' "$out")
        log "  round $r  ceiling, $t OpenBLAS thread(s), samples/s at batch $line$(others_note "$others")"
        printf '%s\t%s\n' "$t" "$others" >>"$TMP/ceiling_others.tsv"
    done
}

# Rounds: each starts with the ceiling, then measures every run at one connection
# count before the next. The starting run moves by ~len/ROUNDS each round, so the
# machine's drift hits all alike.
run_rounds() {
    mkdir -p "$TMP/wrk"
    : >"$TMP/results.tsv"
    : >"$TMP/ceiling.tsv"
    : >"$TMP/ceiling_others.tsv"
    local n=${#RUNS[@]} r c i run step
    step=$((n / ROUNDS > 0 ? n / ROUNDS : 1))
    log "warm-up: 1 s at 64 connections per run"
    for run in "${RUNS[@]}"; do run_wrk "$run" 64 1s >/dev/null 2>&1 || true; done
    settle
    for ((r = 1; r <= ROUNDS; r++)); do
        ceiling "$r"
        for c in $CONNS; do
            for ((i = 0; i < n; i++)); do
                run=${RUNS[$(((i + (r - 1) * step) % n))]}
                measure "$run" "$c" "$r"
            done
        done
    done
}

# ---- Report ----------------------------------------------------------------

highest() { column "$@" | sort -g | tail -1; }
# ceil_median THREADS BATCH: the median samples/s of mlp_ceiling.
ceil_median() {
    awk -F'\t' -v t="$1" -v b="$2" '$1 == t && $2 == b { print $4 }' "$TMP/ceiling.tsv" | median_of
}

fmt_us() {
    awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v < 1000) printf "%.0fus\n", v;
                           else printf "%.2fms\n", v / 1000 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
mul() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "") print ""; else printf "%.0f\n", a * b }'; }
# verdict VALUE OP TARGET -> PASS / MISS / n/a
verdict() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "n/a" || v == "") { print "n/a"; exit }
        ok = (op == ">=") ? (v >= t) : (op == ">") ? (v > t) : (v < t)
        print ok ? "PASS" : "MISS" }'
}
# The better of two runs by median req/s at C (the first on a tie or when both lack data).
better() {
    local a b
    a=$(median "$1" "$3" 4)
    b=$(median "$2" "$3" 4)
    awk -v a="${a:-0}" -v b="${b:-0}" -v x="$1" -v y="$2" 'BEGIN { print (b > a) ? y : x }'
}
has_conns() { [[ " $CONNS " == *" $1 "* ]]; }

report_table() {
    local run c
    echo
    echo "== Medians of $ROUNDS round(s), wrk -d$DURATION, on $(nproc) cores =="
    printf '%-27s %-27s %5s %9s %10s %9s %9s %7s  %s\n' workload server conns "req/s" "samples/s" \
        p50 p99 others "errors (all rounds)"
    for run in "${RUNS[@]}"; do
        for c in $CONNS; do
            local rps p50 p99 non sock err="-" sps="-"
            rps=$(median "$run" "$c" 4)
            [[ -n $rps ]] || continue
            p50=$(median "$run" "$c" 5)
            p99=$(median "$run" "$c" 6)
            non=$(total "$run" "$c" 7)
            sock=$(total "$run" "$c" 8)
            if ((non + sock)); then err="!! non-2xx: $non, socket errors: $sock"; fi
            if ((SAMPLES[$run])); then sps=$(mul "$rps" "${SAMPLES[$run]}"); fi
            printf '%-27s %-27s %5s %9.0f %10s %9s %9s %6s%%  %s\n' "${WL[$run]}" "${WHO[$run]}" "$c" \
                "$rps" "$sps" "$(fmt_us "$p50")" "$(fmt_us "$p99")" "$(highest "$run" "$c" 9)" "$err"
        done
    done

    echo
    echo "== In-process ceiling (build/bench/mlp_ceiling), median of $ROUNDS round(s), samples/s =="
    printf '%-27s %10s %10s %10s %7s\n' "OpenBLAS threads" "batch 1" "batch 32" "batch 64" others
    local t
    for t in 1 2; do
        printf '%-27s %10.0f %10.0f %10.0f %6s%%\n' "$t" "$(ceil_median "$t" 1)" "$(ceil_median "$t" 32)" \
            "$(ceil_median "$t" 64)" "$(awk -F'\t' -v t="$t" '$1 == t { print $2 }' "$TMP/ceiling_others.tsv" | sort -g | tail -1)"
    done
    echo "others: the most CPU the rest of the machine used during one of the round(s), in % of one core"
}

report_targets() {
    local best best_app j64 fa64 fat64 noop64 nb64 v
    echo
    echo "== Targets (ours against peers measured in the same run) =="

    # 1. Batched 1-sample JSON at 64 connections against FastAPI and our no-op.
    best=$(better j1_b32 j1_b64 64)
    best_app=${URLPATH[$best]#/v2/models/}
    best_app=${best_app%/infer}
    j64=$(median "$best" 64 4)
    fa64=$(median j1_fa 64 4)
    fat64=$(median j1_fat 64 4)
    noop64=$(median noop 64 4)
    nb64=$(median j1_nb 64 4)
    if ! has_conns 64; then echo "(64 is not in CONNS: the targets at 64 connections are n/a)"; fi
    printf '1 sample JSON, 64 conns, batching on: best is %s, %.0f req/s\n' "$best_app" "${j64:-0}"
    v=$(ratio "$j64" "$fat64")
    printf '  %-52s %7s  %-10s %s\n' "/ FastAPI, pydantic body ($(printf '%.0f' "${fat64:-0}") req/s)" "${v}x" \
        "target >= 10x" "$(verdict "$v" ">=" 10)"
    v=$(ratio "$j64" "$fa64")
    printf '  %-52s %7s  %-10s %s\n' "/ FastAPI, raw body + json.loads ($(printf '%.0f' "${fa64:-0}") req/s)" \
        "${v}x" "target >= 10x" "$(verdict "$v" ">=" 10)"
    v=$(ratio "$j64" "$noop64")
    printf '  %-52s %7s  %-10s %s\n' "/ our no-op GET /noop ($(printf '%.0f' "${noop64:-0}") req/s)" "${v}x" \
        "target >= 0.5x" "$(verdict "$v" ">=" 0.5)"

    # 2. 64-sample binary: the best batching config at its best C against the ceiling.
    local run c sps bsps=0 brun="" bc="" c1 c2
    for run in b64_b32 b64_b64; do
        for c in $CONNS; do
            sps=$(mul "$(median "$run" "$c" 4)" "$BATCH")
            if [[ -n $sps ]] && ((sps > bsps)); then
                bsps=$sps
                brun=$run
                bc=$c
            fi
        done
    done
    c1=$(ceil_median 1 64)
    c2=$(ceil_median 2 64)
    printf '64 samples binary, best batching config: %s at %s conns, %s samples/s\n' \
        "${WHO[$brun]:-n/a}" "${bc:-n/a}" "$bsps"
    v=$(ratio "$bsps" "$c1")
    printf '  %-52s %7s  %-10s %s\n' "/ in-process batch 64, 1 thread ($(printf '%.0f' "${c1:-0}") samples/s)" \
        "$v" "target >= 0.50" "$(verdict "$v" ">=" 0.5)"
    v=$(ratio "$bsps" "$c2")
    printf '  %-52s %7s  %s\n' "/ in-process batch 64, 2 threads ($(printf '%.0f' "${c2:-0}") samples/s)" \
        "$v" "(for information)"
    local nsps=0 nc=""
    for c in $CONNS; do
        sps=$(mul "$(median b64_nb "$c" 4)" "$BATCH")
        if [[ -n $sps ]] && ((sps > nsps)); then
            nsps=$sps
            nc=$c
        fi
    done
    printf '  %-52s %7s  %s\n' "no batching: mlp_nb at ${nc:-n/a} conns, $nsps samples/s, / 1 thread" \
        "$(ratio "$nsps" "$c1")" "(for information: a 64-sample request is a batch already)"

    # 3. Batching on beats batching off, 1-sample JSON at 64 connections.
    printf '1 sample JSON, 64 conns: batching on vs off (mlp_nb %.0f req/s)\n' "${nb64:-0}"
    for run in j1_b32 j1_b64; do
        local note=""
        if [[ $run == "$best" ]]; then note="(the best)"; fi
        v=$(ratio "$(median "$run" 64 4)" "$nb64")
        printf '  %-52s %7s  %-10s %s\n' "${WHO[$run]} $(printf '%.0f' "$(median "$run" 64 4)") req/s / off" \
            "${v}x" "" "$note"
    done
    v=$(ratio "$j64" "$nb64")
    printf '  %-52s %7s  %-10s %s\n' "best batching ($best_app) / no batching" "${v}x" "target > 1x" \
        "$(verdict "$v" ">" 1)"

    # 4. p99 of batched 1-sample JSON at 64 connections against the bound.
    local compute_ms bound_ms p99_ms
    compute_ms=$(awk -v c="$c1" -v b="$BATCH" 'BEGIN { if (c == "" || c == 0) print ""; else printf "%.3f\n", b / c * 1000 }')
    bound_ms=$(awk -v w="$WAIT" -v c="$compute_ms" 'BEGIN { if (c == "") print ""; else printf "%.3f\n", 3 * w * 1000 + c }')
    printf '1 sample JSON, 64 conns, p99 bound: 3 x %s s + %s ms (64 samples at %.0f samples/s) = %s ms\n' \
        "$WAIT" "${compute_ms:-?}" "${c1:-0}" "${bound_ms:-?}"
    for run in j1_b32 j1_b64; do
        p99_ms=$(awk -v v="$(median "$run" 64 6)" 'BEGIN { if (v == "") print ""; else printf "%.3f\n", v / 1000 }')
        printf '  %-52s %7s  %-10s %s\n' "p99 ${WHO[$run]}" "${p99_ms:-n/a} ms" "< ${bound_ms:-?} ms" \
            "$(verdict "$p99_ms" "<" "${bound_ms:-0}")"
    done
}

report_notes() {
    echo
    echo "== Notes =="
    echo "tree:    $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" \
        "(serve built $(date -u -r "$SERVE" +%FT%TZ), mlp.so $(date -u -r "$MLP_SO" +%FT%TZ))"
    echo "wrk:     taskset -c $WRK_CPU wrk -t1 -cC -d$DURATION --timeout $WRK_TIMEOUT --latency -s BODY.lua URL;" \
        "C in: $CONNS"
    echo "         runs rotate within each round; servers unpinned and idle between runs"
    echo "serve:   one serve run, 4 applications side by side, 1 replica each, access_log off;" \
        "wrk loads one at a time,"
    echo "         so only one is loaded at a time (idle replicas cost nothing)"
    echo "         mlp_nb: no batching, max_ongoing_requests $MAX_ONGOING; mlp_b32 / mlp_b64:" \
        "batching max_batch_size 32 / 64,"
    echo "         batch_wait_timeout_s $WAIT, max_ongoing_requests default (64 / 128);" \
        "MLP init_args {\"blas_threads\": $BLAS_THREADS}"
    echo "         noop: bench/noop.so Noop, max_ongoing_requests $MAX_ONGOING, GET /noop" \
        "(200 \"ok\"): our no-op baseline"
    echo "         $(grep -c -E ' (WARN|ERROR) ' "$TMP/serve.err" || true) WARN/ERROR lines in serve's log"
    echo "bodies:  random.seed(1), values \"%.6f\" in [0, 1); 1 sample v2 JSON $(wc -c <"$TMP/json1.body") B;" \
        "64 samples binary $(wc -c <"$TMP/bin64.body") B"
    echo "         (JSON header $HLEN B + 200704 B); the same 64 as JSON for FastAPI $(wc -c <"$TMP/json64.body") B"
    echo "fastapi: bench/fastapi_mlp.py, uvicorn uvloop + httptools, 1 worker, async def," \
        "$("$PY" -c 'import fastapi, uvicorn, numpy; print("fastapi", fastapi.__version__, "uvicorn", uvicorn.__version__, "numpy", numpy.__version__)')"
    echo "         FastAPI has no binary extension: its 64-sample figures are for the same samples as JSON"
    echo "answers: $ANSWERS (checked before measuring)"
    echo "ceiling: build/bench/mlp_ceiling $WEIGHTS, OPENBLAS_NUM_THREADS=1 and 2, once per round"
    echo "load:    load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg);" \
        "the others column is what other processes used"
}

report_errors() {
    ((${#BAD_RUNS[@]})) || return 0
    echo
    echo "!!!! ${#BAD_RUNS[@]} run(s) had non-2xx answers or socket errors: their figures are suspect !!!!"
    local b
    for b in "${BAD_RUNS[@]}"; do echo "  $b"; done
}

main() {
    check_tools
    build
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/serve-models.XXXXXX")
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    local nconns secs
    nconns=$(wc -w <<<"$CONNS")
    # wrk, plus ~1.5 s per run (settling, bookkeeping), 12 s of ceiling per round, warm-up
    secs=$((ROUNDS * (${#RUNS[@]} * nconns * (2 * ${DURATION%s} + 3) / 2 + 14) + ${#RUNS[@]} + 15))
    log "models.sh: $ROUNDS round(s) x $((${#RUNS[@]} * nconns)) wrk runs of $DURATION" \
        "(about $((secs / 60 + 1)) min); temp dir $TMP"
    local ports
    read -r -a ports <<<"$(free_ports 3)"
    PORT=${ports[0]}
    FA_PORT=${ports[2]}
    HLEN=$(make_bodies)
    wrk_script json1 application/json
    wrk_script json64 application/json
    wrk_script bin64 application/octet-stream "$HLEN"
    write_config "${ports[1]}"
    start_serve
    start_fastapi
    log "serve pid $SERVE_PID on port $PORT ($REPLICAS replicas), FastAPI pid $FA_PID on port $FA_PORT"
    ANSWERS=$(check_answers)
    log "answers: $ANSWERS"
    run_rounds
    report_table
    report_targets
    report_notes
    report_errors
    ((${#BAD_RUNS[@]} == 0)) || exit 1
}

main "$@"
