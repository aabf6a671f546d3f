#!/usr/bin/env bash
# tools/bench/compress_cost.sh - what the store's deflate costs at small records.
#
#   tools/bench/compress_cost.sh [BUILD] [REPS] [SIZE]     (defaults: build 3 100)
#
# firnd on loopback (socket path), a 4-shard stream, firn-bench --udp closed
# loop (4 sessions, 1472-byte datagrams, random data) for 5 s after 1 s of
# warm-up, alternating `--set compress=true` and `compress=false` REPS times
# on a fresh data directory each, so both settings see the same machine
# minutes apart. Prints one line per run (records/s, p50/p99, bytes the
# store wrote per record) and the medians. Every run is bounded (timeout);
# firnd and the data directories are removed on exit.
set -u
BUILD=${1:-build}
REPS=${2:-3}
SIZE=${3:-100}
FIRND=$BUILD/app/firnd/firnd
FIRN=$BUILD/app/firn/firn
BENCH=$BUILD/app/firn-bench/firn-bench
for b in "$FIRND" "$FIRN" "$BENCH"; do
	[ -x "$b" ] || { echo "compress_cost: $b missing (build first: meson setup $BUILD && ninja -C $BUILD)" >&2; exit 2; }
done
WORK=$(mktemp -d /var/tmp/firn-zcost-XXXXXX)
FP=
cleanup() {
	[ -n "$FP" ] && kill "$FP" 2>/dev/null && wait "$FP" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# median, free_port
. "$(dirname "$0")/bench_lib.sh"

echo "# compress_cost: $SIZE B records, $REPS reps, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for rep in $(seq "$REPS"); do
	for z in true false; do
		api=$(free_port) udp=$(free_port)
		rm -rf "$WORK/d"
		"$FIRND" --data-dir "$WORK/d" --api "127.0.0.1:$api" --listen "127.0.0.1:$udp" \
			--pidfile "$WORK/pid" --log-level warn --set "compress=$z" 2>"$WORK/firnd.log" &
		FP=$!
		for _ in $(seq 100); do [ -s "$WORK/pid" ] && break; sleep 0.1; done
		[ -s "$WORK/pid" ] || { cat "$WORK/firnd.log"; exit 1; }
		"$FIRN" --endpoint "http://127.0.0.1:$api" stream create bench --shards 4 >/dev/null || exit 1
		sync
		line=$(timeout 120 "$BENCH" --udp "127.0.0.1:$udp" --stream bench --size "$SIZE" \
			--sessions 4 --records 100000000 --duration 5 --warmup 1 --mtu 1500 2>/dev/null | tail -n 1)
		written=$(python3 -c "import urllib.request as u; t=u.urlopen('http://127.0.0.1:$api/metrics').read().decode(); print(next(l.split()[1] for l in t.splitlines() if l.startswith('firn_store_bytes_written_total ')))")
		kill "$FP"; wait "$FP" 2>/dev/null; FP=
		rm -f "$WORK/pid"
		rec=$(echo "$line" | tr ' ' '\n' | sed -n 's/^records=//p')
		rps=$(echo "$line" | tr ' ' '\n' | sed -n 's/^rec_per_s=//p')
		p99=$(echo "$line" | tr ' ' '\n' | sed -n 's/^p99_us=//p')
		bpr=$(awk -v w="$written" -v r="$rec" 'BEGIN {printf "%.0f", r ? w / r : 0}')
		echo "compress=$z rep=$rep rec_per_s=$rps p99_us=$p99 bytes_written_per_rec=$bpr"
		echo "$z $rps $p99 $bpr" >>"$WORK/runs"
	done
done
for z in true false; do
	echo "median compress=$z rec_per_s=$(awk -v z=$z '$1 == z {print $2}' "$WORK/runs" | median)" \
		"p99_us=$(awk -v z=$z '$1 == z {print $3}' "$WORK/runs" | median)" \
		"bytes_written_per_rec=$(awk -v z=$z '$1 == z {print $4}' "$WORK/runs" | median)"
done
