#!/usr/bin/env bash
# ingest_crash.sh - SIGKILL firnd under load; the producers resume.
#
# On either data path:
#   socket  firnd --net socket on loopback, producers beside it
#   dpdk    firnd --net dpdk on net_af_packet, the host end of a veth pair
#           whose other end is in a network namespace with the producers;
#           each start has its own EAL file prefix (--no-shconf), and a
#           restart must bring the af_packet port up again after the
#           killed process's socket went with it
# Two producers, paced so both are mid-stream at each crash: 18000 mixed
# records at 1500/s (1 MiB ones included, so fragments are in flight) and
# 120000 of 100 B at 10000/s, 12 s each. Twice, once both have had at
# least 2000 and 10000 records acked by the firnd now running (so both
# came through the previous crash in a new session), firnd gets SIGKILL
# and is started again on the same data directory and address. (Nothing
# here waits on the clock: a loaded machine only makes it slower, and the
# 12 s of pacing leave room for the few seconds a producer may need to
# notice a restart.) The producers keep running: their session
# gets a RESET (the cookie secret comes from the KEK, so the new firnd can
# sign it) or goes silent, they handshake again as the same producer, and
# resend everything not yet acked with its original seq. The new firnd has
# rebuilt its dedupe windows from the store, so a record that became
# durable before the crash (its ack lost with the process) is answered
# DUPLICATE with its original (shard, counter), and a record that was not
# durable (cut by recovery) is stored now. At the end: every record acked,
# stored exactly once, at the acked (shard, counter); nothing twice; no
# answer contradicting another.
# With FIRN_RX_QUEUES=N firnd runs N RX agents (the two producers have
# different owners), so each restart must seed every owner's windows.
# Exit 0 pass, 1 fail, 77 skip (dpdk: no root, netns, veth or af_packet).
#
# usage: [FIRN_RX_QUEUES=N] ingest_crash.sh FIRND INGEST_CLIENT socket|dpdk
set -u
FIRND=${1:?usage: ingest_crash.sh FIRND INGEST_CLIENT socket|dpdk}
CLIENT=${2:?usage: ingest_crash.sh FIRND INGEST_CLIENT socket|dpdk}
NET=${3:?usage: ingest_crash.sh FIRND INGEST_CLIENT socket|dpdk}
. "$(dirname "$0")/ingest_lib.sh"

case $NET in
socket) net_up loopback ;;
dpdk) net_up dpdk "fcd$$" ;;
*) echo "usage: ingest_crash.sh FIRND INGEST_CLIENT socket|dpdk"; exit 2 ;;
esac
API=$(free_port)
mkstream k1 4
start_net 1 --api "127.0.0.1:$API"
echo "path: $NET, firnd on $SERVER${LAB_NS:+, producers in netns $LAB_NS}"
$NET_WRAP timeout 300 "$CLIENT" send --server "$SERVER" --stream k1 --records 18000 --sizes mixed \
	--rate 1500 --producer 4001 --ack-log "$DIR/acks-1" --timeout 280 --progress "$DIR/progress-1" \
	>"$DIR/1.out" 2>"$DIR/1.err" &
P1=$!
$NET_WRAP timeout 300 "$CLIENT" send --server "$SERVER" --stream k1 --records 120000 --sizes 100 \
	--rate 10000 --producer 4002 --ack-log "$DIR/acks-2" --timeout 280 --progress "$DIR/progress-2" \
	>"$DIR/2.out" 2>"$DIR/2.err" &
P2=$!

progress() {
	local p
	p=$(cat "$DIR/progress-$1" 2>/dev/null)
	echo "${p:-0}"
}

# The progress files are rewritten every 1000 acks, so they lag by up to
# 999: 2000 more than at the last crash means at least 1000 acked since.
p1=0
p2=0
for round in 1 2; do
	want1=$((p1 + 2000))
	want2=$((p2 + 10000))
	for _ in $(seq 600); do
		[ "$(progress 1)" -ge "$want1" ] && [ "$(progress 2)" -ge "$want2" ] && break
		# a producer that ended early: the check below says why
		kill -0 $P1 2>/dev/null || break
		kill -0 $P2 2>/dev/null || break
		sleep 0.1
	done
	p1=$(progress 1)
	p2=$(progress 2)
	if [ "$p1" -lt "$want1" ] || [ "$p2" -lt "$want2" ]; then
		tail -n 5 "$DIR/1.err" "$DIR/2.err"
		fail "before crash $round the producers had $p1 and $p2 acks, not $want1 and $want2" \
			"(ended early, or no progress for 60 s)"
	fi
	kill -0 $P1 2>/dev/null || fail "producer 1 ended before crash $round: $(cat "$DIR/1.out")"
	kill -0 $P2 2>/dev/null || fail "producer 2 ended before crash $round: $(cat "$DIR/2.out")"
	kill9_firnd
	echo "crash $round: SIGKILL with $p1 and $p2 records acked"
	if [ "$NET" = dpdk ]; then
		p=${EAL_PREFIXES##* }
		echo "crash $round: the killed firnd left /var/run/dpdk/$p with" \
			"$(find "/var/run/dpdk/$p" -mindepth 1 2>/dev/null | wc -l) entries"
	fi
	sleep 0.5
	start_net $((round + 1)) --api "127.0.0.1:$API"
	grep -q "dedupe windows rebuilt from" "$FIRND_LOG" || fail "restart $round did not seed dedupe"
	echo "restart $round: $(grep -o 'dedupe windows rebuilt from [0-9]* records' "$FIRND_LOG")"
done

producers_done "across the crashes"
for i in 1 2; do
	h=$(sed -n 's/.*handshakes=\([0-9]*\).*/\1/p' "$DIR/$i.out")
	[ "${h:-0}" -ge 3 ] || fail "producer $i handshook $h times: it did not live through both crashes"
done
# Several RX agents (FIRN_RX_QUEUES): producers 4001 and 4002 have different owners.
[ ${#RXQ_ARGS[@]} -gt 0 ] && agents_share "$API"
stop_firnd
"$CLIENT" verify --data-dir "$DIR/data" --stream k1 --records 18000 --sizes mixed --producer 4001 \
	--ack-log "$DIR/acks-1" || fail "verify producer 1"
"$CLIENT" verify --data-dir "$DIR/data" --stream k1 --records 120000 --sizes 100 --producer 4002 \
	--ack-log "$DIR/acks-2" || fail "verify producer 2"
echo "PASS: ingest_crash ($NET)"
exit 0
