#!/usr/bin/env bash
# tools/test.sh - install what is missing, build, run every test suite.
#
#   tools/test.sh            everything (what CI runs)
#   tools/test.sh --quick    the main build's suites only (no sanitizer build)
#
# Two builds: build/ (debugoptimized, -Werror) runs every suite; build-asan/
# (ASan + UBSan) runs the unit and fault suites again. The last line is a
# summary "N passed, N failed, N skipped" over both; the exit code is
# non-zero if anything failed or did not build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

tools/setup.sh

JOBS=$(nproc)
export FIRN_TEST_ROOT="$ROOT"

configure() { # dir, extra args...
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dwerror=true "$@"
	fi
}

summary() { # dir -> "pass fail skip"
	python3 - "$1/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = s = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else: f += 1
except FileNotFoundError:
    f = 1
print(p, f, s)
PY
}

status=0
configure build
ninja -C build -j"$JOBS"
meson test -C build --print-errorlogs --num-processes 1 --no-suite perf || status=1
read -r p1 f1 s1 < <(summary build)

p2=0 f2=0 s2=0
if [ "$QUICK" = 0 ]; then
	configure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	ninja -C build-asan -j"$JOBS"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		meson test -C build-asan --print-errorlogs --num-processes 1 \
		--suite unit --suite fault || status=1
	read -r p2 f2 s2 < <(summary build-asan)
fi

echo
echo "main build: $p1 passed, $f1 failed, $s1 skipped"
[ "$QUICK" = 0 ] && echo "asan+ubsan build: $p2 passed, $f2 failed, $s2 skipped"
echo "$((p1 + p2)) passed, $((f1 + f2)) failed, $((s1 + s2)) skipped"
[ $((f1 + f2)) -eq 0 ] || status=1
exit $status
