#!/usr/bin/env bash
# ingest_reshard.sh - reshard a stream under UDP ingest load; exactly once.
#
# firnd --net socket on loopback, a 2-shard stream, two producers paced so
# both are mid-stream for about 6 s: 60000 records of 100 B at 10000/s and
# 3000 of mixed sizes (1 MiB ones included, so fragments are in flight) at
# 500/s. While they send, through the Kinesis API (boto3, ingest_reshard.py):
#   1. SplitShard shard 0 at the midpoint of its range (children 2 and 3),
#   2. MergeShards 3 and 1, adjacent across the old boundary (child 4),
#   3. UpdateShardCount to 4 (closes 2 and 4, opens 5..8),
# each once producer 2 has had 15000 more records acked (progress file),
# and each with both producers still running. The RX
# agent rebuilds its route table when the catalog version moves; a record
# appended to a parent the split just sealed gets -ESHUTDOWN from the store
# and is routed again on the new layout (doc/ingest.md, "Refusals").
# Checked:
#   - every record acked DURABLE, no answer contradicting another;
#   - per acked record (ingest_reshard.py check, against ListShards): its
#     shard's hash range holds the MD5 of its key, and a record first sent
#     after a reshard returned (the producers are paced, so its first send
#     is no earlier than start + (seq-1)/rate) is in that reshard's children
#     or a later shard, never in a closed parent; every reshard has acks in
#     its parents and in its children;
#   - /metrics: the agents rebuilt their route tables, at least once per
#     reshard (firn_ingest_route_refreshes_total, compared with before);
#   - the whole stream through GetRecords (open and closed shards) while
#     firnd runs;
#   - with firnd stopped (SIGTERM, exit 0), the store files: every record
#     once, with its bytes, at the acked (shard, counter), the closed
#     parents included; and the same records, counters and bytes as the API
#     returned.
# With FIRN_RX_QUEUES=N firnd runs N RX agents, each owning one producer and
# rebuilding its own route table; /metrics shows both routed records.
# Exit 0 pass, 1 fail, 77 skip (boto3 missing).
#
# usage: [FIRN_RX_QUEUES=N] ingest_reshard.sh FIRND INGEST_CLIENT
set -u
FIRND=${1:?usage: ingest_reshard.sh FIRND INGEST_CLIENT}
CLIENT=${2:?usage: ingest_reshard.sh FIRND INGEST_CLIENT}
. "$(dirname "$0")/ingest_lib.sh"
python3 -c "import boto3" 2>/dev/null || skip "boto3 is not installed (python3 -m pip install boto3)"

net_up loopback
API=$(free_port)
EP="http://127.0.0.1:$API"
mkstream r1 2
start_net 1 --api "127.0.0.1:$API"
echo "firnd on $SERVER, API on $EP"

# producers 5001 and 5003: owned by different agents when there are two
N1=3000
R1=500
N2=60000
R2=10000
T1=$(date +%s.%N)
timeout 200 "$CLIENT" send --server "$SERVER" --stream r1 --records $N1 --sizes mixed \
	--rate $R1 --producer 5001 --ack-log "$DIR/acks-1" --timeout 180 --progress "$DIR/progress-1" \
	>"$DIR/1.out" 2>"$DIR/1.err" &
P1=$!
T2=$(date +%s.%N)
timeout 200 "$CLIENT" send --server "$SERVER" --stream r1 --records $N2 --sizes 100 \
	--rate $R2 --producer 5003 --ack-log "$DIR/acks-2" --timeout 180 --progress "$DIR/progress-2" \
	>"$DIR/2.out" 2>"$DIR/2.err" &
P2=$!

progress() {
	local p
	p=$(cat "$DIR/progress-$1" 2>/dev/null)
	echo "${p:-0}"
}

# metric NAME: firnd's /metrics value (summed over RX agents already).
metric() {
	python3 - "$EP/metrics" "firn_ingest_$1" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
print(re.search(r"^" + sys.argv[2] + r" (\d+)$", text, re.M).group(1))
PY
}

reshard() {
	timeout 60 python3 "$HERE/ingest_reshard.py" "$EP" r1 "$DIR/events" "$@" ||
		fail "reshard $*"
}

# Before each reshard: 15000 more 100 B records acked, about 1.5 s of
# pacing (the progress files are rewritten every 1000 acks, too coarse for
# the 3000 mixed ones), with both producers still sending, so records are in
# flight on both sides of every change (ingest_reshard.py check makes sure,
# per producer). Route rebuilds are counted from here: each agent built its
# table once at start; each reshard moves the catalog version, and every
# agent rebuilds on its next cycle.
refreshes0=$(metric route_refreshes_total) || fail "no route_refreshes_total in /metrics"
p2=0
for op in "split 0" "merge 3 1" "scale 4"; do
	want2=$((p2 + 15000))
	for _ in $(seq 600); do
		[ "$(progress 2)" -ge "$want2" ] && break
		kill -0 $P1 2>/dev/null || break
		kill -0 $P2 2>/dev/null || break
		sleep 0.05
	done
	p1=$(progress 1)
	p2=$(progress 2)
	[ "$p2" -ge "$want2" ] || fail "before '$op' producer 2 had $p2 acks, not $want2"
	kill -0 $P1 2>/dev/null || fail "producer 1 ended before '$op': $(cat "$DIR/1.out")"
	kill -0 $P2 2>/dev/null || fail "producer 2 ended before '$op': $(cat "$DIR/2.out")"
	# shellcheck disable=SC2086
	reshard $op
	if ! kill -0 $P1 2>/dev/null || ! kill -0 $P2 2>/dev/null; then
		fail "a producer ended during '$op': both must be mid-stream"
	fi
	echo "  (with at least $p1 and $p2 records acked before it)"
done

producers_done "while the stream was resharded"
[ "$(wc -l <"$DIR/acks-1")" = $N1 ] || fail "producer 1: $(wc -l <"$DIR/acks-1") acks, not $N1"
[ "$(wc -l <"$DIR/acks-2")" = $N2 ] || fail "producer 2: $(wc -l <"$DIR/acks-2") acks, not $N2"

timeout 60 python3 "$HERE/ingest_reshard.py" "$EP" r1 "$DIR/events" check \
	"$DIR/acks-1:$T1:$R1" "$DIR/acks-2:$T2:$R2" || fail "acked records vs. the shard layout"

refreshes=$(metric route_refreshes_total) || fail "no route_refreshes_total in /metrics"
echo "metrics: route_refreshes $refreshes0 before the reshards, $refreshes after;" \
	"refused_sealed $(metric refused_sealed_total), records_appended" \
	"$(metric records_appended_total), records_acked $(metric records_acked_total)"
[ "$refreshes" -ge $((refreshes0 + 3)) ] ||
	fail "the RX agents did not rebuild their route tables after each reshard"
[ ${#RXQ_ARGS[@]} -gt 0 ] && agents_share "$API"

timeout 120 python3 "$HERE/ingest_api_read.py" "$EP" r1 "$DIR/api" ||
	fail "reading the stream through the API"
stop_firnd
grep -q "still not acked" "$FIRND_LOG" && fail "drain left records unacked"

"$CLIENT" verify --data-dir "$DIR/data" --stream r1 --records $N1 --sizes mixed --producer 5001 \
	--ack-log "$DIR/acks-1" --dump "$DIR/dump" || fail "verify producer 1"
"$CLIENT" verify --data-dir "$DIR/data" --stream r1 --records $N2 --sizes 100 --producer 5003 \
	--ack-log "$DIR/acks-2" || fail "verify producer 2"
[ "$(wc -l <"$DIR/dump")" = $((N1 + N2)) ] ||
	fail "the stream holds $(wc -l <"$DIR/dump") records, not $((N1 + N2))"
sort "$DIR/dump" >"$DIR/dump.s"
sort "$DIR/api" >"$DIR/api.s"
cmp -s "$DIR/dump.s" "$DIR/api.s" ||
	{ diff "$DIR/dump.s" "$DIR/api.s" | head; fail "the API returns other records than the store holds"; }
echo "ok: GetRecords returns the same $((N1 + N2)) records as the store (closed shards included)"
echo "PASS: ingest_reshard"
exit 0
