#!/usr/bin/env bash
# proxy.sh - the proxy benchmark of issue 3: our proxy in front of a no-op deployment
# (1 and 2 replicas) against nginx as a reverse proxy in front of libmicrohttpd, against
# that libmicrohttpd server alone, and against FastAPI/uvicorn, with wrk on loopback.
# Then the proxy's RSS with 1,000 idle keep-alive connections. See bench/README.md.
#
#   bench/proxy.sh            full run: 3 rounds of 10 s per peer and connection count
#   QUICK=1 bench/proxy.sh    smoke test: 1 round of 3 s
#
# Settings (environment): ROUNDS, DURATION (wrk -d), CONNS ("1 16 64"),
# NGINX_AUTO_CONNS (connection counts at which nginx with worker_processes auto is
# measured too, "16 64"; empty to skip), IDLE_CONNS (1000), WRK_CPU (1: the core wrk is
# pinned to), BUILD (build dir), KEEP=1 to keep the temp dir (logs, wrk outputs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SERVE=$BUILD/serve/serve
MHD_NOOP=$BUILD/bench/mhd_noop
PY=/usr/bin/python3 # Debian's: it sees python3-fastapi, -uvicorn, -uvloop, -httptools

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=${DURATION:-3s}
else
    ROUNDS=${ROUNDS:-3}
    DURATION=${DURATION:-10s}
fi
CONNS=${CONNS:-1 16 64}
NGINX_AUTO_CONNS=${NGINX_AUTO_CONNS-16 64}
IDLE_CONNS=${IDLE_CONNS:-1000}
WRK_CPU=${WRK_CPU:-1}
KEEP=${KEEP:-0}
MAX_ONGOING=64     # per replica: even the 64-connection runs never queue
REQUEST_TIMEOUT=30 # "every feature switched on": a deadline on every request
RSS_TARGET_MB=30

# Peers in rotation order; each has a display name, and a port once started.
PEERS=(serve1 serve2 nginx nginx_auto mhd fastapi fastapi_def)
declare -A NAME=([serve1]="serve, 1 replica" [serve2]="serve, 2 replicas"
    [nginx]="nginx -> mhd (1 worker)" [nginx_auto]="nginx -> mhd (auto workers)"
    [mhd]="mhd direct" [fastapi]="FastAPI/uvicorn (async def)"
    [fastapi_def]="FastAPI/uvicorn (def)")
declare -A PORT=() PID=()
STARTED=() # pids of every process this script started, stopped by cleanup
TMP=""

BENCH=proxy.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- Setup -----------------------------------------------------------------

check_tools() {
    local t
    for t in wrk nginx taskset curl pgrep ss meson ninja; do
        command -v "$t" >/dev/null || die "$t is missing (apt-get install wrk nginx-light ...)"
    done
    "$PY" -c 'import fastapi, uvicorn, uvloop, httptools' 2>/dev/null ||
        die "$PY lacks fastapi/uvicorn/uvloop/httptools (apt-get install python3-fastapi" \
            "python3-uvicorn python3-uvloop python3-httptools)"
}

# 1,000 connections on our side plus wrk's: lift the soft descriptor limit (inherited
# by the servers and by idle_conns.py).
raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited ]]; then hard=1048576; fi
    ulimit -Sn "$hard"
    (($(ulimit -Sn) >= IDLE_CONNS + 256)) || die "ulimit -n is $(ulimit -Sn): too low for $IDLE_CONNS connections"
}

# Wait until http://127.0.0.1:PORT/ answers 200 "ok"; fail if PID dies or 20 s pass.
wait_ok() {
    local name=$1 port=$2 pid=$3 i body
    for ((i = 0; i < 200; i++)); do
        alive "$pid" || die "$name exited at start (see $TMP)"
        body=$(curl -sf --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null || true)
        [[ $body == ok ]] && return 0
        sleep 0.1
    done
    die "$name does not answer 200 \"ok\" on port $port (see $TMP)"
}

start_mhd() {
    "$MHD_NOOP" "${PORT[mhd]}" 2>"$TMP/mhd.err" &
    STARTED+=("$!")
    PID[mhd]=$!
    wait_ok mhd "${PORT[mhd]}" $!
}

# nginx as a reverse proxy with a keep-alive upstream pool to mhd_noop. Everything it
# writes goes to its own folder; -p/-c/-e keep it off /etc/nginx and /var/log/nginx.
start_nginx() {
    local peer=$1 workers=$2 dir=$TMP/$1
    mkdir -p "$dir/tmp"
    local user_line=""
    # As root the workers would switch to "nobody"; keep them as the current user.
    if ((EUID == 0)); then user_line="user $(id -un) $(id -gn);"; fi
    cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # The default of 1000 requests per connection would make wrk reconnect.
    keepalive_requests 1000000;
    upstream mhd {
        server 127.0.0.1:${PORT[mhd]};
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${PORT[$peer]};
        location / {
            proxy_pass http://mhd;
            proxy_http_version 1.1;       # needed for upstream keep-alive
            proxy_set_header Connection "";
        }
    }
}
EOF
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$dir/stderr" &
    STARTED+=("$!")
    PID[$peer]=$!
    wait_ok "$peer" "${PORT[$peer]}" $!
}

# serve with the no-op deployment at "/", every feature of issue 3 on: access log,
# a request timeout, the default body and header limits.
start_serve() {
    local peer=$1 replicas=$2 cfg=$TMP/$1.json admin_port
    admin_port=$(free_ports 1) # each serve has its own admin API
    cat >"$cfg" <<EOF
{"http_options": {"host": "127.0.0.1", "port": ${PORT[$peer]},
                  "request_timeout_s": $REQUEST_TIMEOUT, "access_log": true,
                  "keep_alive_timeout_s": 120},
 "admin": {"host": "127.0.0.1", "port": $admin_port},
 "applications": [{"name": "noop", "route_prefix": "/", "plugin": "noop.so",
   "deployments": [{"name": "Noop", "num_replicas": $replicas,
                    "max_ongoing_requests": $MAX_ONGOING}]}]}
EOF
    SERVE_PLUGIN_PATH=$BUILD/bench "$SERVE" run "$cfg" 2>"$TMP/$peer.err" &
    local pid=$!
    STARTED+=("$pid")
    PID[$peer]=$pid
    wait_ok "$peer" "${PORT[$peer]}" $pid
    # The proxy answers once one replica is up: wait for all of them.
    local i
    for ((i = 0; i < 100; i++)); do
        (($(grep -c 'replica [0-9a-f]* running' "$TMP/$peer.err" || true) >= replicas)) && break
        sleep 0.1
    done
    (($(pgrep -c -P "$pid" || true) == replicas)) ||
        log "warning: $peer: $(pgrep -c -P "$pid" || true) replica processes, expected $replicas"
}

# start_fastapi PEER APP: APP is fastapi_noop's `app` (async def) or
# `app_sync` (def).
start_fastapi() {
    "$PY" -m uvicorn --app-dir "$ROOT/bench" "fastapi_noop:$2" --host 127.0.0.1 \
        --port "${PORT[$1]}" --loop uvloop --http httptools --workers 1 \
        --log-level warning --no-access-log 2>"$TMP/$1.err" &
    STARTED+=("$!")
    PID[$1]=$!
    wait_ok "$1" "${PORT[$1]}" $!
}

start_all() {
    local ports
    read -r -a ports <<<"$(free_ports ${#PEERS[@]})"
    local i
    for i in "${!PEERS[@]}"; do PORT[${PEERS[$i]}]=${ports[$i]}; done
    start_mhd
    start_nginx nginx 1
    if [[ -n $NGINX_AUTO_CONNS ]]; then start_nginx nginx_auto auto; fi
    start_serve serve1 1
    start_serve serve2 2
    start_fastapi fastapi app
    start_fastapi fastapi_def app_sync
}

# ---- Measuring -------------------------------------------------------------

# Peers measured at C connections, in rotation order.
peers_at() {
    local c=$1 p
    for p in "${PEERS[@]}"; do
        if [[ $p == nginx_auto ]]; then
            [[ " $NGINX_AUTO_CONNS " == *" $c "* ]] || continue
        fi
        printf '%s\n' "$p"
    done
}

# wrk pinned to one core (bench-notes): PEER CONNS DURATION.
run_wrk() {
    taskset -c "$WRK_CPU" wrk -t1 -c"$2" -d"$3" --latency "http://127.0.0.1:${PORT[$1]}/"
}

# wrk at C connections against PEER for round R; one line appended to results.tsv.
measure() {
    local peer=$1 c=$2 r=$3 out=$TMP/wrk/$1.c$2.r$3.txt
    # A peer that died (or was interrupted with us by Ctrl-C) would show as wrk errors.
    alive "${PID[$peer]}" || die "$peer (pid ${PID[$peer]}) has exited; see $TMP"
    run_wrk "$peer" "$c" "$DURATION" >"$out" 2>&1 || die "wrk failed against $peer: $(cat "$out")"
    local fields
    read -r -a fields <<<"$(parse_wrk "$out")"
    [[ -n ${fields[0]:-} ]] || die "cannot parse $out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$peer" "$c" "$r" "${fields[@]}" >>"$TMP/results.tsv"
    log "  round $r  c=$c  $(printf '%-30s' "${NAME[$peer]}") $(printf '%9.0f req/s  p50 %s' "${fields[0]}" "$(fmt_us "${fields[1]}")")"
}

# Rounds interleaved: within a round every peer is measured at a connection count
# before the next count, and the starting peer rotates from round to round, so that the
# machine's drift hits all peers alike.
run_rounds() {
    mkdir -p "$TMP/wrk"
    : >"$TMP/results.tsv"
    local p r c i
    log "warm-up: 1 s at 64 connections per peer"
    for p in $(peers_at 64); do run_wrk "$p" 64 1s >/dev/null 2>&1 || true; done
    for ((r = 1; r <= ROUNDS; r++)); do
        for c in $CONNS; do
            local list n
            mapfile -t list < <(peers_at "$c")
            n=${#list[@]}
            for ((i = 0; i < n; i++)); do measure "${list[$(((i + r - 1) % n))]}" "$c" "$r"; done
        done
    done
}

fmt_us() {
    awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v < 1000) printf "%.0fus\n", v;
                           else printf "%.2fms\n", v / 1000 }'
}

# VmRSS (or another field) of PID in kB.
proc_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

# RSS of serve1's controller/proxy process (not its replicas) before and while it holds
# IDLE_CONNS idle keep-alive connections, each having served one request.
idle_rss() {
    local pid=${PID[serve1]} port=${PORT[serve1]} out=$TMP/idle_conns.out
    RSS_BEFORE=$(proc_kb "$pid" VmRSS)
    "$PY" "$ROOT/bench/idle_conns.py" "$port" "$IDLE_CONNS" 120 >"$out" 2>&1 &
    local ipid=$! i
    STARTED+=("$ipid")
    for ((i = 0; i < 300; i++)); do
        grep -q '^ready' "$out" && break
        alive "$ipid" || die "idle_conns.py failed: $(cat "$out")"
        sleep 0.1
    done
    grep -q '^ready' "$out" || die "idle_conns.py did not get its $IDLE_CONNS responses in 30 s"
    sleep 1 # let the proxy settle (nothing should change: the connections are idle)
    RSS_IDLE=$(proc_kb "$pid" VmRSS)
    IDLE_OPEN=$(ss -Htn state established "( sport = :$port )" | wc -l)
    kill -TERM "$ipid" 2>/dev/null || true
    wait "$ipid" 2>/dev/null || true
    sleep 0.5
    RSS_AFTER=$(proc_kb "$pid" VmRSS)
    RSS_HWM=$(proc_kb "$pid" VmHWM)
}

# ---- Report ----------------------------------------------------------------

# ratio NUM DEN -> "1.23"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
# verdict VALUE OP TARGET -> "met" / "NOT met"
verdict() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "n/a") { print "n/a"; exit }
        ok = (op == ">=") ? (v >= t) : (op == "<") ? (v < t) : (v <= t)
        print ok ? "met" : "NOT met" }'
}

report() {
    local p c
    echo
    echo "== Medians of $ROUNDS round(s), wrk -d$DURATION, on $(nproc) cores =="
    printf '%-30s %5s %11s %9s %9s  %s\n' peer conns "req/s" p50 p99 "errors (all rounds)"
    for p in "${PEERS[@]}"; do
        for c in $CONNS; do
            grep -q "^$p	$c	" "$TMP/results.tsv" || continue
            local rps p50 p99 non sock err="-"
            rps=$(median "$p" "$c" 4)
            p50=$(median "$p" "$c" 5)
            p99=$(median "$p" "$c" 6)
            non=$(total "$p" "$c" 7)
            sock=$(total "$p" "$c" 8)
            if ((non + sock)); then err="non-2xx/3xx: $non, socket errors: $sock"; fi
            printf '%-30s %5s %11.0f %9s %9s  %s\n' "${NAME[$p]}" "$c" "$rps" "$(fmt_us "$p50")" \
                "$(fmt_us "$p99")" "$err"
        done
    done

    echo
    echo "== Targets of issue 3 (ours against peers measured in the same run) =="
    local n64 f64 fd64 n1 na64
    n64=$(median nginx 64 4)
    na64=$(median nginx_auto 64 4)
    f64=$(median fastapi 64 4)
    fd64=$(median fastapi_def 64 4)
    n1=$(median nginx 1 5)
    printf '%-44s %-18s %-18s %s\n' "" "1 replica" "2 replicas" target
    local row
    for row in "req/s at 64 conns, ours / nginx|rps64n|>=|1.0" \
        "req/s at 64 conns, ours / FastAPI (def)|rps64fd|>=|8" \
        "req/s at 64 conns, ours / FastAPI (async def)|rps64f|>=|8" \
        "p50 at 1 conn, ours / nginx|p50n|<=|1.2" \
        "req/s at 64 conns, ours / nginx (auto)|rps64na|info|"; do
        local label=${row%%|*} rest=${row#*|} kind op target cells=()
        kind=${rest%%|*}
        rest=${rest#*|}
        op=${rest%%|*}
        target=${rest#*|}
        for p in serve1 serve2; do
            local v
            case $kind in
            rps64n) v=$(ratio "$(median "$p" 64 4)" "$n64") ;;
            rps64f) v=$(ratio "$(median "$p" 64 4)" "$f64") ;;
            rps64fd) v=$(ratio "$(median "$p" 64 4)" "$fd64") ;;
            p50n) v=$(ratio "$(median "$p" 1 5)" "$n1") ;;
            rps64na) v=$(ratio "$(median "$p" 64 4)" "$na64") ;;
            esac
            if [[ $v == n/a ]]; then
                cells+=("n/a")
            elif [[ $op == info ]]; then
                cells+=("${v}x")
            else
                cells+=("${v}x $(verdict "$v" "$op" "$target")")
            fi
        done
        printf '%-44s %-18s %-18s %s\n' "$label" "${cells[0]}" "${cells[1]}" \
            "$([[ $op == info ]] && echo "(for information)" || echo "$op ${target}x")"
    done

    echo
    echo "== Proxy memory (serve controller/proxy process $SERVE_PID_1, replicas not counted) =="
    local rss_mb
    rss_mb=$(awk -v k="$RSS_IDLE" 'BEGIN { printf "%.1f", k / 1024 }')
    printf '%-44s %s\n' "VmRSS after the wrk runs" "$(mb "$RSS_BEFORE")"
    printf '%-44s %s  (%s established)  %s, target < %s MB\n' \
        "VmRSS with $IDLE_CONNS idle keep-alive conns" "$(mb "$RSS_IDLE")" "$IDLE_OPEN" \
        "$(verdict "$rss_mb" "<" "$RSS_TARGET_MB")" "$RSS_TARGET_MB"
    printf '%-44s %s  (per connection: %s kB)\n' "  growth" "$(mb $((RSS_IDLE - RSS_BEFORE)))" \
        "$(awk -v d=$((RSS_IDLE - RSS_BEFORE)) -v n="$IDLE_CONNS" 'BEGIN { printf "%.1f", d / n }')"
    printf '%-44s %s\n' "VmRSS once they are closed" "$(mb "$RSS_AFTER")"
    printf '%-44s %s\n' "VmHWM (peak) over the whole run" "$(mb "$RSS_HWM")"

    echo
    echo "== Notes =="
    echo "tree:   $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" \
        "(serve built $(date -u -r "$SERVE" +%FT%TZ))"
    echo "wrk:    taskset -c $WRK_CPU wrk -t1 -cC -d$DURATION --latency http://127.0.0.1:PORT/"
    echo "        C in: $CONNS; servers unpinned; peers interleaved within each round"
    echo "serve:  max_ongoing_requests $MAX_ONGOING per replica, access_log on (stderr to a file)," \
        "request_timeout_s $REQUEST_TIMEOUT, default body/header limits"
    local p2
    for p2 in serve1 serve2; do
        local errs
        errs=$(grep -v ' access ' "$TMP/$p2.err" | grep -c -E ' (WARN|ERROR) ' || true)
        echo "        $p2: $(grep -c ' access ' "$TMP/$p2.err" || true) access log lines, $errs WARN/ERROR lines"
        if ((errs)); then
            grep -v ' access ' "$TMP/$p2.err" | grep -E ' (WARN|ERROR) ' | head -5 | sed 's/^/          /'
        fi
    done
    echo "nginx:  reverse proxy, keepalive 128 upstream, access_log off, $(nginx -v 2>&1 | sed 's/.*: //')"
    echo "mhd:    libmicrohttpd $(pkg-config --modversion libmicrohttpd 2>/dev/null || echo '?')," \
        "epoll, internal thread pool of 2"
    echo "fastapi: uvicorn --loop uvloop --http httptools --workers 1 ($("$PY" -c 'import fastapi, uvicorn; print("fastapi", fastapi.__version__, "uvicorn", uvicorn.__version__)'))"
}

main() {
    check_tools
    build_targets serve/serve bench/noop.so bench/mhd_noop
    raise_nofile
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/serve-bench.XXXXXX")
    if [[ -z $NGINX_AUTO_CONNS ]]; then PEERS=(serve1 serve2 nginx mhd fastapi fastapi_def); fi
    local runs=0 c
    for c in $CONNS; do runs=$((runs + $(peers_at "$c" | wc -l))); done
    log "proxy.sh: $ROUNDS round(s) x $runs wrk runs of $DURATION (about" \
        "$((ROUNDS * runs * ${DURATION%s} / 60 + 1)) min); temp dir $TMP"
    start_all
    SERVE_PID_1=${PID[serve1]}
    log "ports: $(for p in "${PEERS[@]}"; do printf '%s=%s ' "$p" "${PORT[$p]}"; done)"
    log "serve1 proxy pid $SERVE_PID_1 (replicas: $(pgrep -P "$SERVE_PID_1" | tr '\n' ' '))," \
        "RSS at start $(mb "$(proc_kb "$SERVE_PID_1" VmRSS)")"
    run_rounds
    log "idle connections: $IDLE_CONNS to serve1"
    idle_rss
    report
}

main "$@"
