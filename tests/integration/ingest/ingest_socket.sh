#!/usr/bin/env bash
# ingest_socket.sh - UDP ingest over the kernel socket driver, on loopback.
#
#   1. firnd with --net socket on 127.0.0.1 (8972-byte datagrams: loopback
#      is treated as a jumbo link). Two producers at once: A puts 2000
#      records of mixed sizes (0 B .. 1 MiB; the 1 MiB ones are split in
#      ~120 fragments), B puts 20000 records of 100 B over 50 keys. Each
#      must get a DURABLE OK for every record, and any repeated answer must
#      name the same (shard, counter).
#   2. A producer with a wrong secret is refused (AUTH) and stores nothing.
#   3. SIGTERM: firnd drains and exits 0.
#   4. The store files, read back with firnd stopped: every record of A and
#      B once, with its key and bytes, at the (shard, counter) its ack
#      named; no producer seq twice.
#   5. firnd again, and the whole stream through the Kinesis API (boto3
#      GetRecords): the same records, counters and bytes (skipped with a
#      note when boto3 is missing).
#   6. SIGTERM under load: a producer is mid-stream when firnd stops; firnd
#      must still exit 0 with every record it took acked (no "not acked" in
#      its log), and every ack the producer got must name a stored record.
# With FIRN_RX_QUEUES=N in the environment, firnd runs N RX agents on N
# SO_REUSEPORT sockets (the producers hash to different owners), and step 1
# also checks that every agent routed records of its own producers.
# Exit 0 pass, 1 fail, 77 skip.
#
# usage: [FIRN_RX_QUEUES=N] ingest_socket.sh FIRND INGEST_CLIENT
set -u
FIRND=${1:?usage: ingest_socket.sh FIRND INGEST_CLIENT}
CLIENT=${2:?usage: ingest_socket.sh FIRND INGEST_CLIENT}
. "$(dirname "$0")/ingest_lib.sh"
EXTRA=("${RXQ_ARGS[@]}")

UDP=$(free_port)
API=$(free_port)
PA=1001
PB=1003 # owned by the other agent than PA's when there are two

mkstream s1 4
start_firnd 1 --listen "127.0.0.1:$UDP" --api "127.0.0.1:$API" --net socket "${EXTRA[@]}"
grep -q "udp 127.0.0.1:$UDP (socket)" "$DIR/firnd-1.log" || fail "firnd did not report the data port"

timeout 200 "$CLIENT" send --server "127.0.0.1:$UDP" --stream s1 --records 2000 --sizes mixed \
	--producer $PA --ack-log "$DIR/acks-a" --timeout 180 >"$DIR/a.out" 2>"$DIR/a.err" &
A=$!
timeout 200 "$CLIENT" send --server "127.0.0.1:$UDP" --stream s1 --records 20000 --sizes 100 \
	--keys 50 --producer $PB --ack-log "$DIR/acks-b" --timeout 180 >"$DIR/b.out" 2>"$DIR/b.err" &
B=$!
wait $A || { cat "$DIR/a.out" "$DIR/a.err"; fail "producer A (mixed sizes)"; }
wait $B || { cat "$DIR/b.out" "$DIR/b.err"; fail "producer B (100 B)"; }
echo "A: $(cat "$DIR/a.out")"
echo "B: $(cat "$DIR/b.out")"
grep -q "contradictions=0" "$DIR/a.out" "$DIR/b.out" || fail "contradicting answers"
[ "$(wc -l <"$DIR/acks-a")" = 2000 ] || fail "producer A: ack log has $(wc -l <"$DIR/acks-a") lines"
[ ${#EXTRA[@]} -gt 0 ] && agents_share "$API"

# A wrong secret: refused, nothing stored.
if timeout 30 "$CLIENT" send --server "127.0.0.1:$UDP" --stream s1 --records 5 --producer 1005 \
	--secret wrong-secret --timeout 10 >"$DIR/c.out" 2>"$DIR/c.err"; then
	fail "a producer with a wrong secret got its records in"
fi
grep -q "authentication failed" "$DIR/c.err" || fail "wrong secret: $(cat "$DIR/c.err")"
echo "ok: wrong secret refused"

stop_firnd
grep -q "still not acked" "$DIR/firnd-1.log" && fail "drain left records unacked"
echo "ok: SIGTERM drained and exited 0"

"$CLIENT" verify --data-dir "$DIR/data" --stream s1 --records 2000 --sizes mixed \
	--producer $PA --ack-log "$DIR/acks-a" --dump "$DIR/dump" || fail "verify producer A"
"$CLIENT" verify --data-dir "$DIR/data" --stream s1 --records 20000 --sizes 100 --keys 50 \
	--producer $PB --ack-log "$DIR/acks-b" || fail "verify producer B"
[ "$(wc -l <"$DIR/dump")" = 22000 ] || fail "the stream holds $(wc -l <"$DIR/dump") records, not 22000"

# The same records through the Kinesis API.
if python3 -c "import boto3" 2>/dev/null; then
	start_firnd 2 --listen "127.0.0.1:$UDP" --api "127.0.0.1:$API" --net socket "${EXTRA[@]}"
	timeout 200 python3 "$HERE/ingest_api_read.py" "http://127.0.0.1:$API" s1 "$DIR/api" ||
		fail "reading the stream through the API"
	stop_firnd
	sort "$DIR/dump" >"$DIR/dump.s"
	sort "$DIR/api" >"$DIR/api.s"
	cmp -s "$DIR/dump.s" "$DIR/api.s" ||
		{ diff "$DIR/dump.s" "$DIR/api.s" | head; fail "the API returns other records than the store holds"; }
	echo "ok: GetRecords returns the same 22000 records (shard, sequence number, bytes)"
else
	echo "note: boto3 missing, API readback skipped"
fi

# SIGTERM while a producer is sending.
start_firnd 3 --listen "127.0.0.1:$UDP" --api "127.0.0.1:$API" --net socket "${EXTRA[@]}"
timeout 60 "$CLIENT" send --server "127.0.0.1:$UDP" --stream s1 --records 200000 --sizes 100 \
	--rate 50000 --producer 1004 --ack-log "$DIR/acks-d" --timeout 8 --progress "$DIR/prog-d" \
	>"$DIR/d.out" 2>"$DIR/d.err" &
D=$!
for _ in $(seq 100); do
	[ "$(cat "$DIR/prog-d" 2>/dev/null || echo 0)" -ge 20000 ] && break
	sleep 0.1
done
stop_firnd
grep -q "still not acked" "$FIRND_LOG" && fail "SIGTERM under load left records unacked"
wait $D && fail "the producer finished 200000 records although firnd stopped under it"
echo "D: $(cat "$DIR/d.out")"
n=$(wc -l <"$DIR/acks-d")
[ "$n" -ge 20000 ] || fail "only $n acks before SIGTERM"
"$CLIENT" verify --data-dir "$DIR/data" --stream s1 --records 200000 --sizes 100 --producer 1004 \
	--ack-log "$DIR/acks-d" --partial || fail "verify the producer cut off by SIGTERM"
grep -o "ingest: .*" "$FIRND_LOG" | tail -n 1
echo "ok: SIGTERM under load: exit 0, $n acked records all stored where acked"
echo "PASS: ingest_socket"
exit 0
