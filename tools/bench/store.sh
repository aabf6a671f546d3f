#!/usr/bin/env bash
# tools/bench/store.sh - how close the store gets to the disk and to the
# compression kernel, measured in one run on one file system.
#
#   fio_MBps        fio, O_DIRECT io_uring sequential write, 128 KiB, qd 8
#   store_raw_MBps  the store: 1 KiB incompressible records, 64 shards,
#                   durable acks, closed loop (256 KiB in flight per shard),
#                   encryption on, compression off
#   raw_ratio       store_raw_MBps / fio_MBps
#   deflate_MBps    ISA-L deflate level 1 on generated JSON log records, 1 core
#   store_log_MBps  the store: those records, compression + encryption, one
#                   writer, durable acks (MB/s of uncompressed record data)
#   cpu_ratio       store_log_MBps / deflate_MBps
#   ack_p50_us, ack_p99_us
#                   append-to-durable latency, open loop at half of the
#                   records/s store_raw reached
#
# Throughputs are medians of 3 runs. Prints exactly one line on stdout
# (progress and details go to stderr). Takes about 90 s.
#
#   tools/bench/store.sh [DIR]     DIR: scratch space on the file system to
#                                  measure (default $FIRN_BENCH_DIR or /var/tmp)
# Env: BUILD (build dir, default build-bench), SECS (seconds per store run, 4).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
SECS=${SECS:-4}
BASE=${1:-${FIRN_BENCH_DIR:-/var/tmp}}

command -v fio >/dev/null || { echo "store.sh: fio is not installed" >&2; exit 1; }
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --buildtype=release >&2
fi
ninja -C "$BUILD" tests/unit/store/store_perf >&2
PERF=$BUILD/tests/unit/store/store_perf

DIR=$(mktemp -d "$BASE/firn-bench-XXXXXX")
trap 'rm -rf "$DIR"' EXIT

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# value of key=... in a line
kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1; }

# fio overwrites a laid-out file (--overwrite=1), as the store overwrites
# the zeroes it preallocates: the disk's best case, not its allocating case.
fio_once() {
	# terse v3: field 48 is the write bandwidth in KiB/s
	fio --name=seq --filename="$DIR/fio.dat" --size=1G --bs=128k --rw=write --overwrite=1 \
		--ioengine=io_uring --direct=1 --iodepth=8 --runtime="$SECS" --time_based \
		--output-format=terse --terse-version=3 2>/dev/null |
		awk -F';' '{printf "%.1f\n", $48 * 1024 / 1e6}'
}
say() { echo "$@" >&2; }

say "store.sh: scratch $DIR"
fio_runs=$(for i in 1 2 3; do fio_once; done)
rm -f "$DIR/fio.dat"
say "fio_MBps runs:" $fio_runs
fio_v=$(echo "$fio_runs" | median)

raw_lines=$(for i in 1 2 3; do "$PERF" raw "$DIR" -s "$SECS"; done)
echo "$raw_lines" >&2
raw_v=$(echo "$raw_lines" | while read -r l; do echo "$l" | kv store_raw_MBps; done | median)
raw_rps=$(echo "$raw_lines" | while read -r l; do echo "$l" | kv records_per_s; done | median)

defl_runs=$(for i in 1 2 3; do "$PERF" deflate -s 2 2>/dev/null | kv deflate_MBps; done)
say "deflate_MBps runs:" $defl_runs
defl_v=$(echo "$defl_runs" | median)

log_lines=$(for i in 1 2 3; do "$PERF" log "$DIR" -s "$SECS"; done)
echo "$log_lines" >&2
log_v=$(echo "$log_lines" | while read -r l; do echo "$l" | kv store_log_MBps; done | median)

half=$(awk -v r="$raw_rps" 'BEGIN {printf "%d", r / 2}')
lat_line=$("$PERF" lat "$DIR" -s "$SECS" -r "$half")
echo "$lat_line" >&2
p50=$(echo "$lat_line" | kv ack_p50_us)
p99=$(echo "$lat_line" | kv ack_p99_us)

awk -v raw="$raw_v" -v fio="$fio_v" -v slog="$log_v" -v defl="$defl_v" -v p50="$p50" -v p99="$p99" \
	'BEGIN {
		printf "store_raw_MBps=%.1f fio_MBps=%.1f raw_ratio=%.2f store_log_MBps=%.1f " \
		       "deflate_MBps=%.1f cpu_ratio=%.2f ack_p50_us=%d ack_p99_us=%d\n",
		       raw, fio, (fio > 0 ? raw / fio : 0), slog, defl, (defl > 0 ? slog / defl : 0),
		       p50, p99
	}'
