#!/usr/bin/env bash
# ingest_crash.sh - SIGKILL firnd under load; the producers resume.
#
# Two producers on the socket path (loopback), paced so both are mid-stream
# at each crash: 6000 mixed records at 2000/s (1 MiB ones included, so
# fragments are in flight) and 60000 of 100 B at 20000/s. Twice, once some
# thousands of records are acked, firnd gets SIGKILL and is started again
# on the same data directory and port. The producers keep running:
# their session gets a RESET (the cookie secret comes from the KEK, so the
# new firnd can sign it) or goes silent, they handshake again as the same
# producer, and resend everything not yet acked with its original seq. The
# new firnd has rebuilt its dedupe windows from the store, so a record that
# became durable before the crash (its ack lost with the process) is
# answered DUPLICATE with its original (shard, counter), and a record that
# was not durable (cut by recovery) is stored now. At the end: every record
# acked, stored exactly once, at the acked (shard, counter); nothing twice.
# Exit 0 pass, 1 fail, 77 skip.
#
# usage: ingest_crash.sh FIRND INGEST_CLIENT
set -u
FIRND=${1:?usage: ingest_crash.sh FIRND INGEST_CLIENT}
CLIENT=${2:?usage: ingest_crash.sh FIRND INGEST_CLIENT}
. "$(dirname "$0")/ingest_lib.sh"

UDP=$(free_port)
API=$(free_port)
mkstream k1 4
start_firnd 1 --listen "127.0.0.1:$UDP" --api "127.0.0.1:$API"
timeout 300 "$CLIENT" send --server "127.0.0.1:$UDP" --stream k1 --records 6000 --sizes mixed \
	--rate 2000 --producer 4001 --ack-log "$DIR/acks-1" --timeout 280 >"$DIR/1.out" 2>"$DIR/1.err" &
P1=$!
timeout 300 "$CLIENT" send --server "127.0.0.1:$UDP" --stream k1 --records 60000 --sizes 100 \
	--rate 20000 --producer 4002 --ack-log "$DIR/acks-2" --timeout 280 --progress "$DIR/progress" \
	>"$DIR/2.out" 2>"$DIR/2.err" &
P2=$!

for round in 1 2; do
	want=$((round * 12000))
	for _ in $(seq 600); do
		p=$(cat "$DIR/progress" 2>/dev/null || echo 0)
		[ "${p:-0}" -ge "$want" ] && break
		kill -0 $P2 2>/dev/null || break
		sleep 0.1
	done
	p=$(cat "$DIR/progress" 2>/dev/null || echo 0)
	[ "${p:-0}" -ge "$want" ] || { tail -n 5 "$DIR/2.err"; fail "producer 2 did not reach $want acks before crash $round (at $p)"; }
	kill9_firnd
	echo "crash $round: SIGKILL with producer 2 at $p acked"
	sleep 0.5
	start_firnd $((round + 1)) --listen "127.0.0.1:$UDP" --api "127.0.0.1:$API"
	grep -q "dedupe windows rebuilt from" "$FIRND_LOG" || fail "restart $round did not seed dedupe"
	echo "restart $round: $(grep -o 'dedupe windows rebuilt from [0-9]* records' "$FIRND_LOG")"
done

wait $P1 || { cat "$DIR/1.out"; tail -n 20 "$DIR/1.err"; fail "producer 1 across the crashes"; }
wait $P2 || { cat "$DIR/2.out"; tail -n 20 "$DIR/2.err"; fail "producer 2 across the crashes"; }
echo "1: $(cat "$DIR/1.out")"
echo "2: $(cat "$DIR/2.out")"
grep -q "contradictions=0" "$DIR/1.out" "$DIR/2.out" || fail "an answer contradicted an earlier one"
for i in 1 2; do
	h=$(sed -n 's/.*handshakes=\([0-9]*\).*/\1/p' "$DIR/$i.out")
	[ "${h:-0}" -ge 3 ] || fail "producer $i handshook $h times: it did not live through both crashes"
done
stop_firnd
"$CLIENT" verify --data-dir "$DIR/data" --stream k1 --records 6000 --sizes mixed --producer 4001 \
	--ack-log "$DIR/acks-1" || fail "verify producer 1"
"$CLIENT" verify --data-dir "$DIR/data" --stream k1 --records 60000 --sizes 100 --producer 4002 \
	--ack-log "$DIR/acks-2" || fail "verify producer 2"
echo "PASS: ingest_crash"
exit 0
