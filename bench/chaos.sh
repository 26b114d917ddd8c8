#!/usr/bin/env bash
# chaos.sh - chaos under load (issue 9, item 3). bench/loadgen drives steady,
# paced load on two deployments of bench/chaos.json (fast: 4 replicas of Noop;
# slow: 1 replica whose requests sleep SLOW_MS) while this script kill -9's a
# random replica every KILL_INTERVAL seconds and once stalls one with SIGSTOP
# for STOP_SECONDS, then SIGCONT. Every request's outcome is counted. It checks,
# and exits 1 when one fails:
#   - every request got a complete HTTP response: no incomplete answer, reset,
#     refused or empty connection;
#   - none hung: each was answered within TIMEOUT seconds;
#   - each answer is 200, or a status docs/architecture.md documents for the
#     case with its reason: 502 (the replica exited while handling it), 503
#     (queue full: shed), 408 (timed out: the stalled replica);
#   - the proxy stays up: /-/healthz answers 200 after every kill and at the end;
#   - after each kill every deployment is back to its replica count (RUNNING
#     in the admin API's status document, the killed pid gone) within
#     RECOVERY_LIMIT_MS;
#   - at least 90% of the requests were answered 200, and at the end both
#     routes answer 200 with every replica running.
#
#   bench/chaos.sh            40 s, a kill every 2 s, one stall of 3 s
#   SHORT=1 bench/chaos.sh    10 s, a kill every 1.5 s, one stall of 2 s
#
# Settings (environment): DURATION (s), KILL_INTERVAL (s), STOP_SECONDS,
# FAST_RATE (1000 req/s on /fast), SLOW_RATE (100 req/s on /slow), SLOW_MS (50),
# CONNS (32 per loadgen), TIMEOUT (5 s: an answer later than this is a hang),
# RECOVERY_LIMIT_MS (2000), CHAOS_JSON (a file to write the result to, as JSON),
# CHAOS_PORT and CHAOS_ADMIN_PORT (free ports by default), BUILD (build dir),
# NO_BUILD=1 (run what is built), KEEP=1 (keep the temp dir: config, serve's log,
# loadgen outputs, kills).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SERVE=${SERVE_BIN:-$BUILD/serve/serve}
LOADGEN=$BUILD/bench/loadgen
PY=/usr/bin/python3

if [[ ${SHORT:-0} == 1 ]]; then
    DURATION=${DURATION:-10}
    KILL_INTERVAL=${KILL_INTERVAL:-1.5}
    STOP_SECONDS=${STOP_SECONDS:-2}
else
    DURATION=${DURATION:-40}
    KILL_INTERVAL=${KILL_INTERVAL:-2}
    STOP_SECONDS=${STOP_SECONDS:-3}
fi
FAST_RATE=${FAST_RATE:-1000}
SLOW_RATE=${SLOW_RATE:-100}
SLOW_MS=${SLOW_MS:-50}
CONNS=${CONNS:-32}
TIMEOUT=${TIMEOUT:-5}
RECOVERY_LIMIT_MS=${RECOVERY_LIMIT_MS:-2000}
RECOVERY_WAIT_MS=10000 # give up waiting for a recovery after this
WARMUP_MS=1000         # load before the first kill
TAIL_MS=2000           # load after the last kill
KEEP=${KEEP:-0}

STARTED=() # pids this script started, stopped by cleanup
TMP=""
SERVE_PID=""
STOPPED_PID="" # the replica stalled right now
BENCH=chaos.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# A stalled replica would ignore serve's STOP: resume it before stopping all.
trap 'rc=$?; set +e; resume_stalled; (exit $rc); cleanup' EXIT

ms() { awk -v s="$1" 'BEGIN { printf "%d\n", s * 1000 }'; }

# NOW: wall clock in ms, without a fork.
clock() {
    local t=$EPOCHREALTIME
    NOW=$((${t/./} / 1000))
}

# ---- Setup -------------------------------------------------------------------

start_serve() {
    local ports
    read -r -a ports <<<"$(free_ports 2)"
    PORT=${CHAOS_PORT:-${ports[0]}}
    ADMIN=${CHAOS_ADMIN_PORT:-${ports[1]}}
    jq --argjson p "$PORT" --argjson a "$ADMIN" '.http_options.port = $p | .admin.port = $a' \
        "$ROOT/bench/chaos.json" >"$TMP/config.json"
    # TMPDIR: serve's log folder goes into the temp dir too.
    TMPDIR=$TMP SERVE_PLUGIN_PATH=$BUILD/bench "$SERVE" run "$TMP/config.json" 2>"$TMP/serve.err" &
    SERVE_PID=$!
    STARTED+=("$SERVE_PID")
    local i
    for ((i = 0; i < 100; i++)); do
        alive "$SERVE_PID" || die "serve exited at start (see $TMP/serve.err)"
        at_target 0 && return 0
        sleep 0.1
    done
    die "replicas not running 10 s after start (see $TMP/serve.err)"
}

status_doc() { curl -s --max-time 1 "http://127.0.0.1:$ADMIN/api/serve/applications/"; }

# at_target PID: every deployment has its target count of RUNNING replicas and
# PID is not among them.
at_target() {
    status_doc | jq -e --argjson k "$1" '[.applications[].deployments[]
        | [.replicas[] | select(.state == "RUNNING") | .pid] as $r
        | ($r | length) == .target_num_replicas and (any($r[]; . == $k) | not)] | all' \
        >/dev/null 2>&1
}

# A RUNNING replica other than the stalled one, at random: "PID APP/DEPLOYMENT".
pick_replica() {
    local c
    mapfile -t c < <(status_doc | jq -r --argjson s "${STOPPED_PID:-0}" '.applications[] as $a
        | $a.deployments[] as $d | $d.replicas[] | select(.state == "RUNNING" and .pid != $s)
        | "\(.pid) \($a.name)/\($d.name)"' 2>/dev/null)
    ((${#c[@]})) || return 1
    local v=${c[RANDOM % ${#c[@]}]} ppid
    # Only ever signal a child of our serve.
    ppid=$(ps -o ppid= -p "${v%% *}" 2>/dev/null | tr -d ' ')
    [[ $ppid == "$SERVE_PID" ]] || return 1
    echo "$v"
}

healthz() { curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/healthz" || true; }

# ---- The chaos ---------------------------------------------------------------

stall_one() {
    local v
    v=$(pick_replica) || return 0 # none running right now: try again next turn
    STOPPED_PID=${v%% *}
    kill -STOP "$STOPPED_PID"
    clock
    STALL_T=$NOW
    STALL_END=$((NOW + STOP_MS))
    STALLED=1
    log "t=$(((NOW - T0) / 1000))s  SIGSTOP replica $STOPPED_PID (${v#* }) for ${STOP_SECONDS} s"
    printf '{"pid": %s, "deployment": "%s", "t_s": %s' "$STOPPED_PID" "${v#* }" \
        "$(((NOW - T0) / 1000))" >"$TMP/stall.json"
}

resume_stalled() {
    [[ -n $STOPPED_PID ]] || return 0
    kill -CONT "$STOPPED_PID" 2>/dev/null || true
    clock
    log "t=$(((NOW - T0) / 1000))s  SIGCONT replica $STOPPED_PID after $((NOW - STALL_T)) ms"
    printf ', "stopped_ms": %s}\n' "$((NOW - STALL_T))" >>"$TMP/stall.json"
    STOPPED_PID=""
}

resume_when_due() {
    clock
    if [[ -n $STOPPED_PID ]] && ((NOW >= STALL_END)); then resume_stalled; fi
}

# kill -9 a random replica, then time until every deployment is back at target.
kill_one() {
    local v pid rec=null t_kill h
    v=$(pick_replica) || {
        log "no running replica to kill"
        return 0
    }
    pid=${v%% *}
    clock
    t_kill=$NOW
    kill -KILL "$pid"
    while :; do
        if at_target "$pid"; then
            clock
            rec=$((NOW - t_kill))
            break
        fi
        resume_when_due
        ((NOW - t_kill < RECOVERY_WAIT_MS)) || break
        sleep 0.02
    done
    h=$(healthz)
    [[ $h == 200 ]] || HEALTH_FAILS=$((HEALTH_FAILS + 1))
    log "t=$(((t_kill - T0) / 1000))s  kill -9 replica $pid (${v#* }): back to target in" \
        "$([[ $rec == null ]] && echo "NEVER (>$RECOVERY_WAIT_MS)" || echo "$rec") ms, healthz $h"
    printf '{"t_s": %s, "pid": %s, "deployment": "%s", "recovery_ms": %s, "healthz": "%s"}\n' \
        "$(((t_kill - T0) / 1000))" "$pid" "${v#* }" "$rec" "$h" >>"$TMP/kills.jsonl"
}

run_chaos() {
    local url=http://127.0.0.1:$PORT
    "$LOADGEN" -c "$CONNS" -d "$DURATION" -r "$FAST_RATE" -t "$TIMEOUT" -p "$url/fast" \
        >"$TMP/fast.json" 2>"$TMP/fast.progress" &
    STARTED+=("$!")
    local fast=$!
    "$LOADGEN" -c "$CONNS" -d "$DURATION" -r "$SLOW_RATE" -t "$TIMEOUT" -p "$url/slow?ms=$SLOW_MS" \
        >"$TMP/slow.json" 2>"$TMP/slow.progress" &
    STARTED+=("$!")
    local slow=$!
    clock
    T0=$NOW
    STOP_MS=$(ms "$STOP_SECONDS")
    local next_kill=$((T0 + WARMUP_MS)) kill_end=$((T0 + $(ms "$DURATION") - TAIL_MS))
    local stall_at=$((T0 + $(ms "$DURATION") * 2 / 5)) every
    every=$(ms "$KILL_INTERVAL")
    STALLED=0
    HEALTH_FAILS=0
    : >"$TMP/kills.jsonl"
    echo '{}' >"$TMP/stall.json"
    log "chaos.sh: ${DURATION} s of load (/fast $FAST_RATE req/s, /slow?ms=$SLOW_MS $SLOW_RATE" \
        "req/s), kill -9 every ${KILL_INTERVAL} s, one SIGSTOP of ${STOP_SECONDS} s; temp dir $TMP"
    while :; do
        clock
        ((NOW < kill_end)) || break
        if ((!STALLED && NOW >= stall_at)); then stall_one; fi
        resume_when_due
        if ((NOW >= next_kill)); then
            kill_one
            next_kill=$((next_kill + every))
        fi
        sleep 0.05
    done
    while [[ -n $STOPPED_PID ]]; do
        resume_when_due
        sleep 0.05
    done
    wait "$fast" || die "loadgen on /fast failed (see $TMP)"
    wait "$slow" || die "loadgen on /slow failed (see $TMP)"
}

# ---- After -------------------------------------------------------------------

# The end state: serve alive, every replica running, both routes answer 200.
final_state() {
    local i up=false code_fast code_slow procs
    for ((i = 0; i < 50; i++)); do
        if at_target 0; then
            up=true
            break
        fi
        sleep 0.1
    done
    FINAL_HEALTHZ=$(healthz)
    code_fast=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/fast" || true)
    code_slow=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/slow" || true)
    procs=$(pgrep -c -P "$SERVE_PID" || true)
    FINAL=$(jq -n --argjson up "$up" --arg f "$code_fast" --arg s "$code_slow" --argjson p "$procs" \
        --argjson alive "$(alive "$SERVE_PID" && echo true || echo false)" \
        '{serve_alive: $alive, replicas_at_target: $up, replica_processes: $p, fast: $f, slow: $s}')
}

# Everything in one JSON document: the load's counts, the kills, the checks.
result() {
    jq -n --slurpfile fast "$TMP/fast.json" --slurpfile slow "$TMP/slow.json" \
        --slurpfile kills "$TMP/kills.jsonl" --slurpfile stall "$TMP/stall.json" \
        --argjson final "$FINAL" --argjson limit "$RECOVERY_LIMIT_MS" \
        --argjson health_fails "$HEALTH_FAILS" --arg healthz "$FINAL_HEALTHZ" \
        --argjson duration "$DURATION" --argjson interval "$KILL_INTERVAL" '
    def documented: (.status == 502 and (.reason | test("exited while handling the request")))
        or (.status == 503 and (.reason | test("queue full|draining")))
        or (.status == 408 and (.reason | test("timed out after")));
    def sum(f): map(f) | add;
    def merge(f): reduce (.[] | f | to_entries[]) as $e ({}; .[$e.key] += $e.value);
    [$fast[0], $slow[0]] as $loads
    | ($kills | map(.recovery_ms)) as $rec
    | ($rec | map(select(. != null)) | sort) as $ok_rec
    | {duration_s: $duration, kill_interval_s: $interval,
       load: [$loads[] | {url, rate, connections, sent, unsent, schedule_lag_max_ms, completed, by_status, errors,
                          timeouts, latency_ms, achieved_rps}],
       sent: ($loads | sum(.sent)), completed: ($loads | sum(.completed)),
       unsent: ($loads | sum(.unsent)),
       by_status: ($loads | merge(.by_status)),
       reasons: [$loads[] as $l | $l.reasons[] | . + {url: $l.url}],
       reasons_dropped: ($loads | sum(.reasons_dropped)),
       errors: ($loads | merge(.errors)), errors_total: ($loads | sum(.errors_total)),
       hangs: ($loads | sum(.timeouts)),
       kills: $kills, stall: $stall[0],
       recovery_ms: {max: ($ok_rec | max), median: ($ok_rec | if length > 0 then .[length / 2 | floor] else null end),
                     limit: $limit, not_recovered: ($rec | map(select(. == null)) | length)},
       healthz_failures_after_kills: $health_fails, final_healthz: $healthz, final: $final}
    | .ok_fraction = (if .sent > 0 then (.by_status["200"] // 0) / .sent else 0 end)
    | .checks = [
        {name: "complete_responses", ok: (.errors_total == 0),
         detail: "transport errors (incomplete, reset, refused, empty, timeout): \(.errors_total) \(.errors)"},
        {name: "no_hangs", ok: (.hangs == 0), detail: "no answer within the timeout: \(.hangs)"},
        {name: "documented_statuses",
         ok: (.by_status | keys | all(. == "200" or . == "408" or . == "502" or . == "503")),
         detail: "statuses: \(.by_status)"},
        {name: "documented_reasons", ok: ((.reasons | all(documented)) and .reasons_dropped == 0),
         detail: "non-200 answers without their documented reason: \([.reasons[] | select(documented | not)])"},
        {name: "proxy_up",
         ok: (.healthz_failures_after_kills == 0 and .final_healthz == "200" and .final.serve_alive),
         detail: "healthz failures after kills: \(.healthz_failures_after_kills), at the end: \(.final_healthz)"},
        {name: "recovery_within_limit",
         ok: (($kills | length) > 0 and .recovery_ms.not_recovered == 0 and .recovery_ms.max <= $limit),
         detail: "\($kills | length) kills, recovery max \(.recovery_ms.max) ms, limit \($limit) ms"},
        {name: "stall_done", ok: (.stall.stopped_ms != null),
         detail: "SIGSTOP then SIGCONT: \(.stall)"},
        {name: "mostly_served", ok: (.ok_fraction >= 0.9), detail: "200s: \(.ok_fraction * 1000 | floor / 10) %"},
        {name: "end_state",
         ok: (.final.replicas_at_target and .final.fast == "200" and .final.slow == "200"),
         detail: "\(.final)"}]
    | .ok = (.checks | all(.ok))'
}

report() {
    jq -r '
    def ms: if . == null then "-" else "\(.) ms" end;
    "",
    "== Chaos under load: \(.duration_s) s, kill -9 every \(.kill_interval_s) s, one SIGSTOP ==",
    (.load[] | "load   \(.url)  \(.rate) req/s x \(.connections) conns: sent \(.sent), answered \(.completed), p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, max \(.latency_ms.max) ms\(if .unsent > 0 then ", never sent: \(.unsent)" else "" end)\(if .schedule_lag_max_ms > 100 then ", fell behind schedule by up to \(.schedule_lag_max_ms | floor) ms" else "" end)"),
    "sent \(.sent), complete HTTP answers \(.completed), 200: \(.by_status["200"] // 0) (\(.ok_fraction * 1000 | floor / 10) %)",
    "by status:  \(.by_status | to_entries | map("\(.key): \(.value)") | join(", "))",
    "reasons:",
    (.reasons[] | "  \(.count | tostring | (" " * (6 - length)) + .) x \(.status) \(.reason)   [\(.url | sub("^http://[^/]*"; ""))]"),
    "transport errors: \(.errors_total) \(.errors)   hangs (no answer within the timeout): \(.hangs)",
    "kills: \(.kills | length); back to target in: max \(.recovery_ms.max | ms), median \(.recovery_ms.median | ms) (limit \(.recovery_ms.limit) ms)",
    "  \(.kills | map("\(.recovery_ms // "NEVER")") | join(" "))",
    "stall: \(.stall.deployment) replica \(.stall.pid) stopped for \(.stall.stopped_ms) ms",
    "proxy: /-/healthz after every kill \(if .healthz_failures_after_kills == 0 then "200" else "FAILED \(.healthz_failures_after_kills) times" end), at the end \(.final_healthz)",
    "",
    (.checks[] | "\(if .ok then "PASS" else "FAIL" end)  \(.name): \(.detail)"),
    "",
    (if .ok then "chaos.sh: every invariant held" else "chaos.sh: INVARIANTS FAILED" end)' <<<"$1"
}

main() {
    for t in curl jq pgrep; do command -v "$t" >/dev/null || die "$t is missing (apt-get install $t)"; done
    if [[ ${NO_BUILD:-0} != 1 ]]; then build_targets serve/serve bench/noop.so bench/loadgen; fi
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/serve-chaos.XXXXXX")
    start_serve
    run_chaos
    final_state
    local res
    res=$(result)
    echo "$res" >"$TMP/result.json"
    if [[ -n ${CHAOS_JSON:-} ]]; then echo "$res" >"$CHAOS_JSON"; fi
    report "$res"
    [[ $(jq -r .ok <<<"$res") == true ]]
}

main "$@"
