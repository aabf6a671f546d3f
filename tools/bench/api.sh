#!/usr/bin/env bash
# tools/bench/api.sh - the Kinesis HTTP API against kinesalite, same load, same box.
#
#   firn_rps         records/s acknowledged by firnd: PutRecords of RECORDS x SIZE B
#                    random records with random keys, CLIENTS concurrent closed-loop
#                    clients (processes, one keep-alive connection each, SigV4 per
#                    request), SHARDS shards; every 200 is durable (O_DIRECT + DSYNC)
#   kinesalite_rps   the same load against kinesalite (npm, LevelDB on disk under
#                    the same directory; note: kinesalite does not fsync)
#   ratio            firn_rps / kinesalite_rps (target >= 50)
#
# Prints exactly one line on stdout:
#   firn_rps=... kinesalite_rps=... ratio=... clients=... records=... size=... shards=...
# Progress and the per-system JSON details go to stderr. Takes about 2 x (SECS + 10) s
# plus a one-time `npm install kinesalite` (cached in $FIRN_BENCH_CACHE).
#
#   tools/bench/api.sh [DIR]      DIR: scratch space for both data dirs
#                                 (default $FIRN_BENCH_DIR or /var/tmp; not tmpfs)
# Env: FIRND (firnd binary, default BUILD/app/firnd/firnd), BUILD (build dir, default
#      build), FIRND_CONF (a firnd.conf to run with, default none: built-in defaults),
#      CLIENTS (8), RECORDS (500), SIZE (100), SHARDS (4), SECS (10),
#      FIRN_BENCH_CACHE (npm prefix cache, default /var/tmp/firn-bench-cache).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# free_port
. "$ROOT/tools/bench/bench_lib.sh"
BUILD=${BUILD:-$ROOT/build}
FIRND=${FIRND:-$BUILD/app/firnd/firnd}
FIRND_CONF=${FIRND_CONF:-}
CLIENTS=${CLIENTS:-8}
RECORDS=${RECORDS:-500}
SIZE=${SIZE:-100}
SHARDS=${SHARDS:-4}
SECS=${SECS:-10}
BASE=${1:-${FIRN_BENCH_DIR:-/var/tmp}}
CACHE=${FIRN_BENCH_CACHE:-/var/tmp/firn-bench-cache}
LOAD="$ROOT/tools/bench/api_load.py"

export AWS_ACCESS_KEY_ID=FIRNDEMOACCESSKEY
export AWS_SECRET_ACCESS_KEY=firn-demo-secret-change-me
export AWS_DEFAULT_REGION=us-east-1

log() { echo "api.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ -x "$FIRND" ] || die "firnd not found at $FIRND (build it, or set FIRND=...)"
command -v node >/dev/null || die "node is required for kinesalite (apt install nodejs npm)"
command -v npm >/dev/null || die "npm is required for kinesalite (apt install npm)"
python3 -c 'import boto3' 2>/dev/null || die "boto3 is required (pip install boto3)"

WORK=$(mktemp -d "$BASE/firn-bench-api-XXXXXX")
FIRND_PID= KIN_PID=
cleanup() {
	[ -n "$FIRND_PID" ] && kill "$FIRND_PID" 2>/dev/null && wait "$FIRND_PID" 2>/dev/null
	[ -n "$KIN_PID" ] && kill "$KIN_PID" 2>/dev/null && wait "$KIN_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT


wait_http() { # url
	for _ in $(seq 1 200); do
		if python3 - "$1" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
EOF
		sleep 0.1
	done
	die "$1 did not come up"
}

make_stream() { # endpoint
	python3 - "$1" "$SHARDS" <<'EOF'
import sys, boto3
k = boto3.client("kinesis", endpoint_url=sys.argv[1])
k.create_stream(StreamName="bench", ShardCount=int(sys.argv[2]))
k.get_waiter("stream_exists").wait(StreamName="bench", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
EOF
}

run_load() { # endpoint -> JSON line
	timeout $((SECS + 180)) python3 "$LOAD" --endpoint "$1" --stream bench \
		--clients "$CLIENTS" --records "$RECORDS" --size "$SIZE" --seconds "$SECS"
}

# ---- kinesalite ---------------------------------------------------------------
KIN_DIR="$CACHE/kinesalite"
if [ ! -f "$KIN_DIR/node_modules/kinesalite/cli.js" ]; then
	log "installing kinesalite into $KIN_DIR (npm)"
	mkdir -p "$KIN_DIR"
	timeout 300 npm install --silent --no-audit --no-fund --prefix "$KIN_DIR" kinesalite >&2
fi
KPORT=$(free_port)
mkdir -p "$WORK/kinesalite"
node "$KIN_DIR/node_modules/kinesalite/cli.js" --port "$KPORT" --path "$WORK/kinesalite" \
	--createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 1000 \
	>"$WORK/kinesalite.log" 2>&1 &
KIN_PID=$!
wait_http "http://127.0.0.1:$KPORT/"
make_stream "http://127.0.0.1:$KPORT"
log "kinesalite: $CLIENTS clients x PutRecords($RECORDS x $SIZE B), $SHARDS shards, ${SECS}s"
KIN_JSON=$(run_load "http://127.0.0.1:$KPORT")
log "kinesalite: $KIN_JSON"
kill "$KIN_PID"; wait "$KIN_PID" 2>/dev/null || true; KIN_PID=

# ---- firnd --------------------------------------------------------------------
FPORT=$(free_port)
"$FIRND" ${FIRND_CONF:+--config "$FIRND_CONF"} --data-dir "$WORK/firnd" \
	--api "127.0.0.1:$FPORT" --listen "127.0.0.1:$(free_port)" --log-level warn \
	>"$WORK/firnd.log" 2>&1 &
FIRND_PID=$!
wait_http "http://127.0.0.1:$FPORT/metrics"
make_stream "http://127.0.0.1:$FPORT"
log "firnd: $CLIENTS clients x PutRecords($RECORDS x $SIZE B), $SHARDS shards, ${SECS}s"
FIRN_JSON=$(run_load "http://127.0.0.1:$FPORT")
log "firnd: $FIRN_JSON"
kill "$FIRND_PID"; wait "$FIRND_PID" || die "firnd did not stop cleanly: $(tail -5 "$WORK/firnd.log")"
FIRND_PID=

python3 - "$FIRN_JSON" "$KIN_JSON" "$CLIENTS" "$RECORDS" "$SIZE" "$SHARDS" <<'EOF'
import json, sys
f, k = json.loads(sys.argv[1]), json.loads(sys.argv[2])
fr, kr = f["records_per_s"], k["records_per_s"]
ratio = fr / kr if kr else float("inf")
print(f"firn_rps={fr:.0f} kinesalite_rps={kr:.0f} ratio={ratio:.1f} clients={sys.argv[3]} "
      f"records={sys.argv[4]} size={sys.argv[5]} shards={sys.argv[6]}")
EOF
