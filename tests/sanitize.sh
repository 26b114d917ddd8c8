#!/usr/bin/env bash
# The whole suite under ASan+UBSan (make test-asan): BUILD is a build folder
# set up with -Db_sanitize=address,undefined.
#
# Reports of every process go to files, because most of them are not the
# test binary's: serve, its replicas and the CLI write to logs that the
# tests read and then delete. Any report fails the run, except those of the
# test plugins that crash on purpose (tests/plugins/faulty.c).
set -uo pipefail
BUILD=${1:?usage: tests/sanitize.sh BUILD_DIR}
SRC=$(cd "$(dirname "$0")/.." && pwd)
REPORTS=$(realpath -m "$BUILD/sanitizer-reports")
rm -rf "$REPORTS" && mkdir -p "$REPORTS"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan"
export LSAN_OPTIONS="suppressions=$SRC/tests/lsan.supp:print_suppressions=0"
meson test -C "$BUILD" --print-errorlogs --timeout-multiplier 3
status=$?

found=0
for f in "$REPORTS"/*; do
    [ -e "$f" ] || continue
    if grep -q "tests/plugins/faulty.c" "$f"; then continue; fi
    echo "=== sanitizer report $f" >&2
    cat "$f" >&2
    found=1
done
if [ "$found" = 1 ]; then
    echo "sanitizer reports found (above)" >&2
    exit 1
fi
exit $status
