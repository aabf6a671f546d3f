#!/usr/bin/env bash
# tools/quickstart.sh - from a fresh Debian 12 machine to a running appliance:
# install what is missing, build, start firnd on the embedded defaults
# (HTTP API on 127.0.0.1:4567, UDP data port on 127.0.0.1:7400, data under
# ./var), create a demo stream, push a sample data set over HTTP, read it back
# with the unmodified AWS CLI, push 200k records over UDP with firn-bench and
# print its throughput line, and stop the daemon cleanly.
#
#   tools/quickstart.sh          run the demo and stop
#   tools/quickstart.sh --keep   leave firnd running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

tools/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

API=127.0.0.1:4567
ENDPOINT=http://$API
export AWS_ACCESS_KEY_ID=${FIRN_ACCESS_KEY_ID:-FIRNDEMOACCESSKEY}
export AWS_SECRET_ACCESS_KEY=${FIRN_SECRET_ACCESS_KEY:-firn-demo-secret-change-me}
export AWS_DEFAULT_REGION=us-east-1
export AWS_PAGER=""
AWS=(aws --endpoint-url "$ENDPOINT" kinesis)

mkdir -p var
echo "== starting firnd (data in ./var, API on $ENDPOINT)"
build/app/firnd/firnd --data-dir ./var --api "$API" --listen 127.0.0.1:7400 \
	--pidfile var/firnd.pid \
	2> var/firnd.log &
PID=$!
cleanup() {
	if [ "$KEEP" = 0 ] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID"
		wait "$PID" || true
	fi
}
trap cleanup EXIT

for _ in $(seq 100); do
	[ -f var/firnd.pid ] && break
	kill -0 "$PID" 2>/dev/null || { cat var/firnd.log; echo "firnd exited"; exit 1; }
	sleep 0.1
done
[ -f var/firnd.pid ] || { cat var/firnd.log; echo "firnd did not become ready"; exit 1; }
echo "   firnd is up (pid $PID)"

STREAM=demo
if "${AWS[@]}" describe-stream-summary --stream-name $STREAM >/dev/null 2>&1; then
	# A demo from an earlier run: start from an empty stream, so the counts below are this run's.
	echo "== aws kinesis delete-stream --stream-name $STREAM (left by an earlier run)"
	"${AWS[@]}" delete-stream --stream-name $STREAM
	"${AWS[@]}" wait stream-not-exists --stream-name $STREAM
fi
echo "== aws kinesis create-stream --stream-name $STREAM --shard-count 2"
"${AWS[@]}" create-stream --stream-name $STREAM --shard-count 2
"${AWS[@]}" wait stream-exists --stream-name $STREAM

N=2000
echo "== pushing a sample data set: $N JSON log records with firn put --http"
SAMPLE=var/sample.jsonl
python3 - "$N" > "$SAMPLE" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"seq": i, "host": f"web-{i % 7}", "level": "info",
                      "msg": f"GET /item/{i * 37 % 1000} 200", "bytes": 512 + i % 300}))
PY
T0=$(date +%s.%N)
build/app/firn/firn put --http --endpoint "$ENDPOINT" $STREAM "$SAMPLE" >/dev/null
T1=$(date +%s.%N)

echo "== reading it back: aws kinesis get-shard-iterator + get-records"
TOTAL=0
for SHARD in $("${AWS[@]}" list-shards --stream-name $STREAM --query 'Shards[].ShardId' --output text); do
	IT=$("${AWS[@]}" get-shard-iterator --stream-name $STREAM --shard-id "$SHARD" \
		--shard-iterator-type TRIM_HORIZON --query ShardIterator --output text)
	C=$("${AWS[@]}" get-records --shard-iterator "$IT" --limit 10000 --query 'length(Records)' --output text)
	echo "   $SHARD: $C records"
	TOTAL=$((TOTAL + C))
done
BYTES=$(stat -c %s "$SAMPLE")
python3 - "$N" "$BYTES" "$T0" "$T1" "$TOTAL" <<'PY'
import sys
n, b, t0, t1, total = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = t1 - t0
print(f"== put {n} records ({b/1e6:.2f} MB) in {s:.2f} s over HTTP: {n/s:,.0f} records/s, "
      f"{b/1e6/s:.2f} MB/s, durable; read back {total}")
sys.exit(0 if total == n else 1)
PY
echo "== the appliance's own path: 200000 x 100 B records over UDP (firn record protocol),"
echo "   4 producer sessions, every record acknowledged only once durable"
build/app/firn-bench/firn-bench --udp 127.0.0.1:7400 --stream $STREAM --records 200000 \
	--size 100 --sessions 4
if [ "$KEEP" = 1 ]; then
	echo "== firnd keeps running (pid $PID); stop it with: kill $PID"
	trap - EXIT
else
	echo "== stopping firnd (SIGTERM)"
fi
