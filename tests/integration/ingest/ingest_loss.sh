#!/usr/bin/env bash
# ingest_loss.sh - exactly once over a bad link, on either data path.
#
# Both paths put the same link between producer and firnd: a veth pair
# whose far end is in a network namespace, where the producers run.
#   dpdk    firnd --net dpdk owns the host end through net_af_packet
#   socket  the host end gets an address and firnd --net socket binds a
#           kernel UDP socket on it, so the datagrams cross the same veth
# The namespace side of the veth gets `tc netem loss 2% reorder 25% 50%
# delay 1ms duplicate 1%` where the kernel has netem. Where it does not
# (sch_netem is a module many lab kernels lack), nftables in the namespace
# drops 2% of the datagrams each way, and the producer itself duplicates 1%
# and reorders 5% of what it sends (ingest_client --impair); with neither,
# the producer's impairment does all of it (2% loss each way too). Then:
# 2000 mixed records (1 MiB ones in ~120 fragments each) and 10000 of
# 100 B, every one acked, no answer contradicting another, stored once,
# where its ack said.
# Exit 0 pass, 1 fail, 77 skip (no root, netns, veth or af_packet here).
#
# usage: ingest_loss.sh FIRND INGEST_CLIENT dpdk|socket
set -u
FIRND=${1:?usage: ingest_loss.sh FIRND INGEST_CLIENT dpdk|socket}
CLIENT=${2:?usage: ingest_loss.sh FIRND INGEST_CLIENT dpdk|socket}
NET=${3:?usage: ingest_loss.sh FIRND INGEST_CLIENT dpdk|socket}
. "$(dirname "$0")/ingest_lib.sh"

case $NET in
dpdk) net_up dpdk "fld$$" ;;
socket) net_up veth "fls$$" ;;
*) echo "usage: ingest_loss.sh FIRND INGEST_CLIENT dpdk|socket"; exit 2 ;;
esac
API=$(free_port)
IMPAIR=

if in_ns tc qdisc add dev "$LAB_NS_IF" root netem loss 2% reorder 25% 50% delay 1ms duplicate 1% \
	2>"$DIR/tc.err"; then
	echo "link: netem loss 2% reorder 25% duplicate 1% on $LAB_NS_IF"
elif command -v nft >/dev/null && in_ns nft -f - <<NFT 2>"$DIR/nft.err"
table inet firnloss {
	chain out { type filter hook output priority 0; udp dport $NET_PORT numgen random mod 100 < 2 drop; }
	chain in { type filter hook input priority 0; udp sport $NET_PORT numgen random mod 100 < 2 drop; }
}
NFT
then
	IMPAIR="--impair dup=1,reorder=5"
	echo "link: no netem here ($(head -c 80 "$DIR/tc.err")); nftables drops 2% each way," \
		"the producer duplicates 1% and reorders 5%"
else
	IMPAIR="--impair loss=2,dup=1,reorder=5"
	echo "link: neither netem nor nft here; the producer drops 2% each way, duplicates 1%," \
		"reorders 5%"
fi

mkstream l1 4
start_net 1 --api "127.0.0.1:$API"
echo "path: $NET, firnd on $SERVER, producers in netns $LAB_NS"
# shellcheck disable=SC2086
$NET_WRAP timeout 180 "$CLIENT" send --server "$SERVER" --stream l1 --records 2000 --sizes mixed \
	--producer 3001 --ack-log "$DIR/acks-1" --timeout 150 $IMPAIR >"$DIR/1.out" 2>"$DIR/1.err" &
P1=$!
# shellcheck disable=SC2086
$NET_WRAP timeout 180 "$CLIENT" send --server "$SERVER" --stream l1 --records 10000 --sizes 100 \
	--producer 3002 --ack-log "$DIR/acks-2" --timeout 150 $IMPAIR >"$DIR/2.out" 2>"$DIR/2.err" &
P2=$!
producers_done "over the lossy link"
resends=$(sed -n 's/.*resends=\([0-9]*\).*/\1/p' "$DIR/1.out")
[ "${resends:-0}" -gt 0 ] || fail "no resends: the link lost nothing, the test proves nothing"
stop_firnd
grep -o "ingest: .*" "$FIRND_LOG" | tail -n 1
"$CLIENT" verify --data-dir "$DIR/data" --stream l1 --records 2000 --sizes mixed --producer 3001 \
	--ack-log "$DIR/acks-1" || fail "verify producer 1"
"$CLIENT" verify --data-dir "$DIR/data" --stream l1 --records 10000 --sizes 100 --producer 3002 \
	--ack-log "$DIR/acks-2" || fail "verify producer 2"
echo "PASS: ingest_loss ($NET)"
exit 0
