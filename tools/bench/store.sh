#!/usr/bin/env bash
# tools/bench/store.sh - how close the store gets to the disk and to the
# compression kernel, measured in one run on one file system and CPU.
#
#   fio_MBps        fio, O_DIRECT io_uring sequential write, 128 KiB, qd 8,
#                   over a laid-out file (--overwrite=1)
#   store_raw_MBps  the store: 1 KiB incompressible records, 64 shards,
#                   durable acks, closed loop (1 MiB appended and not yet
#                   durable per shard), encryption on, compression on (and
#                   skipped, because it does not shrink), WRITERS writers,
#                   over laid-out segment files (spare segments, the store's
#                   own --overwrite=1; see doc/performance.md)
#   raw_ratio       store_raw_MBps / fio_MBps
#   deflate_MBps    ISA-L deflate level 1 on generated JSON log records, 1 core
#   store_log_MBps  the store: those records, compression + encryption, one
#                   writer, durable acks (MB/s of uncompressed record data)
#   cpu_ratio       store_log_MBps / deflate_MBps
#   ack_p50_us, ack_p99_us
#                   append-to-durable latency, open loop at half of the
#                   records/s store_raw reached
#
# Each of fio/raw and deflate/log is run three times, the reference and the
# store taking turns, so that both see the same neighbours on a shared
# machine; the figures are medians of three and the ratios are of the
# medians. Prints exactly one line on stdout; progress, every run and a
# "details:" line (per-run figures, CPU-time ratio, the store without spare
# segments, load average) go to stderr. Takes about two minutes.
#
#   tools/bench/store.sh [DIR]     DIR: scratch space on the file system to
#                                  measure (default $FIRN_BENCH_DIR or /var/tmp)
# Env: BUILD (build dir, default build-bench), SECS (seconds per store run, 4),
#      WRITERS (writer threads for the raw and latency runs, default: cores).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# median, kv
. "$ROOT/tools/bench/bench_lib.sh"
BUILD=${BUILD:-$ROOT/build-bench}
SECS=${SECS:-4}
WRITERS=${WRITERS:-$(nproc)}
BASE=${1:-${FIRN_BENCH_DIR:-/var/tmp}}

command -v fio >/dev/null || { echo "store.sh: fio is not installed" >&2; exit 1; }
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --buildtype=release >&2
fi
ninja -C "$BUILD" tests/unit/store/store_perf >&2
PERF=$BUILD/tests/unit/store/store_perf

DIR=$(mktemp -d "$BASE/firn-bench-XXXXXX")
trap 'rm -rf "$DIR"' EXIT

# value of key=... in a line
say() { echo "$@" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' /; }

# fio overwrites a laid-out file (--overwrite=1): the disk's best case, not
# its allocating case. The file stays for the three runs (laid out once).
fio_once() {
	# terse v3: field 48 is the write bandwidth in KiB/s
	fio --name=seq --filename="$DIR/fio.dat" --size=1G --bs=128k --rw=write --overwrite=1 \
		--ioengine=io_uring --direct=1 --iodepth=8 --runtime="$SECS" --time_based \
		--output-format=terse --terse-version=3 2>/dev/null |
		awk -F';' '{printf "%.1f\n", $48 * 1024 / 1e6}'
}

# Spare segments for a run at MBPS: what the shards fill in the run (the
# warm-up second included; segments roll at 3/4 of 64 MiB on average) plus
# each shard's first segment, with a margin.
spares_for() {
	awk -v r="$1" -v s="$SECS" 'BEGIN {printf "%d", r * 1e6 * (s + 1.5) * 1.2 / (48 * 1048576) + 72}'
}

say "store.sh: scratch $DIR, $(nproc) cores, load $(load), writers $WRITERS"

fio_runs=""
raw_lines=""
for _ in 1 2 3; do
	f=$(fio_once)
	say "fio_MBps=$f"
	fio_runs="$fio_runs$f"$'\n'
	l=$("$PERF" raw "$DIR" -s "$SECS" -w "$WRITERS" -W 1024 -z -P "$(spares_for "$f")")
	say "$l"
	raw_lines="$raw_lines$l"$'\n'
done
rm -f "$DIR/fio.dat"
fio_v=$(printf '%s' "$fio_runs" | median)
raw_v=$(echo -n "$raw_lines" | while read -r l; do echo "$l" | kv store_raw_MBps; done | median)
raw_rps=$(echo -n "$raw_lines" | while read -r l; do echo "$l" | kv records_per_s; done | median)

defl_runs=""
defl_core_runs=""
log_lines=""
for _ in 1 2 3; do
	d=$("$PERF" deflate -s 2 2>/dev/null)
	say "$d"
	defl_runs="$defl_runs$(echo "$d" | kv deflate_MBps)"$'\n'
	defl_core_runs="$defl_core_runs$(echo "$d" | kv deflate_MBps_per_core)"$'\n'
	l=$("$PERF" log "$DIR" -s "$SECS")
	say "$l"
	log_lines="$log_lines$l"$'\n'
done
defl_v=$(printf '%s' "$defl_runs" | median)
defl_core_v=$(printf '%s' "$defl_core_runs" | median)
log_v=$(echo -n "$log_lines" | while read -r l; do echo "$l" | kv store_log_MBps; done | median)
log_core_v=$(echo -n "$log_lines" |
	while read -r l; do echo "$l" | kv store_log_MBps_per_writer_core; done | median)

half=$(awk -v r="$raw_rps" 'BEGIN {printf "%d", r / 2}')
lat_line=$("$PERF" lat "$DIR" -s "$SECS" -w "$WRITERS" -z -r "$half" \
	-P "$(spares_for "$(awk -v r="$half" 'BEGIN {print r * 1024 / 1e6}')")")
say "$lat_line"
p50=$(echo "$lat_line" | kv ack_p50_us)
p99=$(echo "$lat_line" | kv ack_p99_us)
p999=$(echo "$lat_line" | kv ack_p999_us)

# The allocating case, for the record: no spare segments, so the writers
# zero ahead of every tail (each byte goes to the disk twice).
fresh_line=$("$PERF" raw "$DIR" -s "$SECS" -w "$WRITERS" -W 1024 -z)
say "$fresh_line (no spare segments)"
fresh_v=$(echo "$fresh_line" | kv store_raw_MBps)

# a/b/c: the three runs of a figure
runs() { paste -sd/ -; }
awk -v fio="$(printf '%s' "$fio_runs" | runs)" -v raw="$(echo -n "$raw_lines" | while read -r l; do
	echo "$l" | kv store_raw_MBps; done | runs)" -v fresh="$fresh_v" \
	-v defl="$(printf '%s' "$defl_runs" | runs)" -v slog="$(echo -n "$log_lines" |
	while read -r l; do echo "$l" | kv store_log_MBps; done | runs)" -v dc="$defl_core_v" \
	-v lc="$log_core_v" -v half="$half" -v p999="$p999" -v load="$(load)" \
	'BEGIN {
		printf "details: fio_runs=%s store_raw_runs=%s store_raw_fresh_MBps=%.1f " \
		       "deflate_runs=%s store_log_runs=%s deflate_MBps_per_core=%.1f " \
		       "store_log_MBps_per_writer_core=%.1f cpu_ratio_cputime=%.2f " \
		       "lat_rate_rps=%d ack_p999_us=%d load=%s\n",
		       fio, raw, fresh, defl, slog, dc, lc, (dc > 0 ? lc / dc : 0), half, p999, load
	}' >&2

awk -v raw="$raw_v" -v fio="$fio_v" -v slog="$log_v" -v defl="$defl_v" -v p50="$p50" -v p99="$p99" \
	'BEGIN {
		printf "store_raw_MBps=%.1f fio_MBps=%.1f raw_ratio=%.2f store_log_MBps=%.1f " \
		       "deflate_MBps=%.1f cpu_ratio=%.2f ack_p50_us=%d ack_p99_us=%d\n",
		       raw, fio, (fio > 0 ? raw / fio : 0), slog, defl, (defl > 0 ? slog / defl : 0),
		       p50, p99
	}'
