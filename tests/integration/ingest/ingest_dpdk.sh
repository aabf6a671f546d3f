#!/usr/bin/env bash
# ingest_dpdk.sh - UDP ingest over the DPDK driver (net_af_packet on a veth).
#
# tools/lab-net.sh makes a network namespace holding one end of a veth pair
# (198.18.0.1/24); firnd owns the other end through net_af_packet with
# --net dpdk --ip 198.18.0.2/24, and answers ARP for it. The producer runs
# inside the namespace:
#   1. MTU 9000 (8972-byte datagrams): 1500 records of mixed sizes (up to
#      1 MiB, fragmented) and 20000 records of 100 B.
#   2. MTU 1500 (1472-byte datagrams; firnd picks the MTU up from the
#      interface): 500 mixed records from a third producer.
# After each run SIGTERM must drain and exit 0; then the store is read back
# and every record must be there once, at the (shard, counter) it was acked
# with. Everything made is removed on every exit path.
# With FIRN_RX_QUEUES=N in the environment, the vdev gets N queue pairs
# (PACKET_FANOUT spreads the flows), firnd runs N RX agents, a producer
# 4 (300 records) is owned by another agent than 1 and 2, and the MTU 9000
# run checks that every agent routed its own producers' records.
# Exit 0 pass, 1 fail, 77 skip (no root, netns, veth or af_packet here).
#
# usage: [FIRN_RX_QUEUES=N] ingest_dpdk.sh FIRND INGEST_CLIENT
set -u
FIRND=${1:?usage: ingest_dpdk.sh FIRND INGEST_CLIENT}
CLIENT=${2:?usage: ingest_dpdk.sh FIRND INGEST_CLIENT}
. "$(dirname "$0")/ingest_lib.sh"
EXTRA=("${RXQ_ARGS[@]}")
QP=$RXQ_VDEV

lab_up "fid$$"
API=$(free_port)
DPDK_IP=${LAB_DPDK_IP%/*}

# start_dpdk LOGNAME: firnd on the host end of the veth
start_dpdk() {
	EAL_PREFIXES="$EAL_PREFIXES fid$$$1"
	start_firnd "$1" --net dpdk --listen "0.0.0.0:7400" --api "127.0.0.1:$API" \
		--ip "$LAB_DPDK_IP" \
		--eal "--no-huge -m 1024 --no-shconf --no-pci --no-telemetry --file-prefix=fid$$$1 --vdev=net_af_packet0,iface=$LAB_HOST_IF$QP" \
		"${EXTRA[@]}"
	grep -q "(dpdk)" "$FIRND_LOG" || fail "firnd is not on the DPDK port: $(grep ready "$FIRND_LOG")"
}

mkstream d1 3
start_dpdk 1
grep -q "8972-byte datagrams" "$FIRND_LOG" || fail "MTU 9000: $(grep 'RX agent' "$FIRND_LOG")"
in_ns timeout 200 "$CLIENT" send --server "$DPDK_IP:7400" --stream d1 --records 1500 --sizes mixed \
	--producer 2001 --ack-log "$DIR/acks-1" --timeout 180 >"$DIR/1.out" 2>"$DIR/1.err" &
P1=$!
in_ns timeout 200 "$CLIENT" send --server "$DPDK_IP:7400" --stream d1 --records 20000 --sizes 100 \
	--keys 64 --producer 2002 --ack-log "$DIR/acks-2" --timeout 180 >"$DIR/2.out" 2>"$DIR/2.err" &
P2=$!
wait $P1 || { cat "$DIR/1.out" "$DIR/1.err"; fail "producer 1 over DPDK (mixed)"; }
wait $P2 || { cat "$DIR/2.out" "$DIR/2.err"; fail "producer 2 over DPDK (100 B)"; }
echo "1: $(cat "$DIR/1.out")"
echo "2: $(cat "$DIR/2.out")"
if [ ${#EXTRA[@]} -gt 0 ]; then
	in_ns timeout 100 "$CLIENT" send --server "$DPDK_IP:7400" --stream d1 --records 300 \
		--sizes 100 --producer 2004 --ack-log "$DIR/acks-4" --timeout 80 >"$DIR/4.out" \
		2>"$DIR/4.err" || { cat "$DIR/4.out" "$DIR/4.err"; fail "producer 4 (other agent)"; }
	agents_share "$API"
fi
stop_firnd
echo "ok: MTU 9000 run drained"

ip link set "$LAB_HOST_IF" mtu 1500 && in_ns ip link set "$LAB_NS_IF" mtu 1500 || fail "set MTU 1500"
start_dpdk 2
grep -q "1472-byte datagrams" "$FIRND_LOG" || fail "MTU 1500: $(grep 'RX agent' "$FIRND_LOG")"
in_ns timeout 200 "$CLIENT" send --server "$DPDK_IP:7400" --stream d1 --records 500 --sizes mixed \
	--producer 2003 --max-dgram 1472 --ack-log "$DIR/acks-3" --timeout 180 \
	>"$DIR/3.out" 2>"$DIR/3.err" || { cat "$DIR/3.out" "$DIR/3.err"; fail "producer 3 at MTU 1500"; }
echo "3: $(cat "$DIR/3.out")"
stop_firnd
echo "ok: MTU 1500 run drained"

"$CLIENT" verify --data-dir "$DIR/data" --stream d1 --records 1500 --sizes mixed --producer 2001 \
	--ack-log "$DIR/acks-1" || fail "verify producer 1"
"$CLIENT" verify --data-dir "$DIR/data" --stream d1 --records 20000 --sizes 100 --keys 64 \
	--producer 2002 --ack-log "$DIR/acks-2" || fail "verify producer 2"
"$CLIENT" verify --data-dir "$DIR/data" --stream d1 --records 500 --sizes mixed --producer 2003 \
	--ack-log "$DIR/acks-3" || fail "verify producer 3"
if [ ${#EXTRA[@]} -gt 0 ]; then
	"$CLIENT" verify --data-dir "$DIR/data" --stream d1 --records 300 --sizes 100 \
		--producer 2004 --ack-log "$DIR/acks-4" || fail "verify producer 4"
fi
echo "PASS: ingest_dpdk"
exit 0
