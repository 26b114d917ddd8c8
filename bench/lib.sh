# shellcheck shell=bash
# lib.sh - what the benchmark scripts share: messages, reading wrk and results, free
# ports, and a cleanup that leaves nothing running. Source it after setting:
#   BENCH     the script's name, for messages ("proxy.sh")
#   STARTED   an array of the pids the script starts (it appends to it)
#   TMP       its scratch folder, or "" (kept on failure or with KEEP=1)
#   KEEP      1 to keep TMP in any case
#   PY        the python3 to run (Debian's /usr/bin/python3), for free_ports
#   BUILD, ROOT  the build folder and the source tree, for build_targets

log() { printf '%s\n' "$*" >&2; }
die() {
    log "$BENCH: $*"
    exit 1
}

# A zombie still answers kill -0: look at its state instead.
alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]
}

# Each started process first gets TERM and stops its own children (serve
# drains and stops its replicas, nginx its workers). The children are
# collected before, so that none is missed if it has to be killed.
stop_all() {
    local pids=() p i
    for p in "${STARTED[@]}"; do
        pids+=("$p")
        mapfile -t -O "${#pids[@]}" pids < <(pgrep -P "$p" 2>/dev/null || true)
    done
    ((${#pids[@]})) || return 0
    kill -TERM "${STARTED[@]}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do # a graceful drain gets 5 s
        local any=0
        for p in "${pids[@]}"; do
            if alive "$p"; then
                any=1
                break
            fi
        done
        ((any)) || break
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    wait 2>/dev/null || true
    STARTED=()
}

# One wrk output -> "rps p50_us p99_us non2xx socket_errors" (wrk prints us, ms, s).
parse_wrk() {
    awk '
    function us(v) {
        if (v ~ /us$/) return v + 0
        if (v ~ /ms$/) return v * 1000
        if (v ~ /m$/) return v * 60e6
        if (v ~ /s$/) return v * 1e6
        return v + 0
    }
    /^Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = us($2) }
    /^ +99%/ { p99 = us($2) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
    END { printf "%s %s %s %d %d\n", rps, p50, p99, non2xx, sock }' "$1"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [[ -n $TMP ]]; then
        # Kept on a failure, to read why; not when stopped on purpose (Ctrl-C, TERM).
        if [[ $KEEP == 1 || ($rc != 0 && $rc != 130 && $rc != 143) ]]; then
            log "$BENCH: logs and outputs kept in $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT # the EXIT trap then stops everything
trap 'exit 143' TERM

# N distinct free loopback ports: all bound at once by the kernel, then released.
free_ports() {
    "$PY" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Median of a column of numbers on stdin ("" for none).
median_of() {
    sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2];
                                          else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# Results are lines of $TMP/results.tsv: KEY1 KEY2 ROUND then the figures, tab-separated.
# column K1 K2 COL: column COL of every round of (K1, K2); median and total reduce it.
column() { awk -F'\t' -v a="$1" -v b="$2" -v col="$3" '$1 == a && $2 == b { print $col }' "$TMP/results.tsv"; }
median() { column "$@" | median_of; }
total() { column "$@" | awk '{ s += $1 } END { print s + 0 }'; }

# Build only the targets a script runs (ninja names: serve/serve, bench/noop.so...),
# so that a half-edited test elsewhere does not stop a benchmark.
build_targets() {
    if [[ ! -d $BUILD ]]; then meson setup "$BUILD" "$ROOT" >/dev/null; fi
    ninja -C "$BUILD" "$@" >/dev/null || die "build failed: ninja -C $BUILD"
}

# The proxy answers once one replica of each application is up: wait (10 s at most)
# until serve PID has logged N replicas running in $TMP/serve.err, and has N children.
wait_replicas() {
    local i n
    for ((i = 0; i < 100; i++)); do
        (($(grep -c 'replica [0-9a-f]* running' "$TMP/serve.err" || true) >= $2)) && break
        sleep 0.1
    done
    n=$(pgrep -c -P "$1" || true)
    ((n == $2)) || die "$n replica processes, expected $2"
}
