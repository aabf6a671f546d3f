#!/usr/bin/env bash
# net_rx_pps.sh - the raw packet path reference for issue 4's benchmark:
# how many 100-byte UDP datagrams per second an rx-only loop takes off a
# veth through net_af_packet, measured two ways on the same lab:
#   firn:    net_dpdk_echo --mode rxonly (our driver: parse, count, release)
#   testpmd: dpdk-testpmd --forward-mode=rxonly (DPDK's own, if installed)
# The sender (net_udp_blast, in the namespace, pinned to the other CPU)
# blasts for BLAST_SECS (default 1) with sendmmsg. Prints one line each:
#   rx_only driver=firn sent=.. received=.. sender_pps=.. rx_pps=..
# usage: net_rx_pps.sh NET_DPDK_ECHO NET_UDP_BLAST [SIZE]
# Exit 0 measured, 1 failed, 77 skipped (no netns/veth).
set -u
ECHO_BIN=${1:?usage: net_rx_pps.sh NET_DPDK_ECHO NET_UDP_BLAST [SIZE]}
BLAST_BIN=${2:?usage: net_rx_pps.sh NET_DPDK_ECHO NET_UDP_BLAST [SIZE]}
SIZE=${3:-100}
SECS=${BLAST_SECS:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
LAB="$HERE/../../../tools/lab-net.sh"
NS=firnp$$
HOST_IF=fp$$a
NS_IF=fp$$b
DPDK_IP=198.18.0.2
DIR=$(mktemp -d /tmp/firn-pps-XXXXXX)
PID=
cleanup() {
	[ -n "$PID" ] && { kill -TERM "$PID" 2>/dev/null; sleep 0.5; kill -KILL "$PID" 2>/dev/null; }
	"$LAB" down "$NS" "$HOST_IF" "$NS_IF" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
"$LAB" up "$NS" "$HOST_IF" "$NS_IF" >/dev/null 2>"$DIR/lab.log" ||
	{ echo "SKIP: no netns/veth: $(tail -n 1 "$DIR/lab.log")"; exit 77; }
EAL="--no-huge -m 1024 --no-shconf --no-pci --no-telemetry --proc-type=primary"
VDEV="--vdev=net_af_packet0,iface=$HOST_IF"
# The namespace has no ARP entry for the port's address when testpmd owns
# it (testpmd does not answer ARP): give it a static one for both runs.
MAC=$(cat /sys/class/net/$HOST_IF/address)
ip -n "$NS" neigh replace "$DPDK_IP" lladdr "$MAC" dev "$NS_IF" nud permanent

blast() { # -> sender line
	timeout 30 ip netns exec "$NS" taskset -c 1 "$BLAST_BIN" --dst "$DPDK_IP:7400" \
		--size "$SIZE" --seconds "$SECS" --quit
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -n 1; }

# ---- firn's driver
taskset -c 0 "$ECHO_BIN" --eal "-l 0 $EAL --file-prefix=firnp$$ $VDEV" --ip "$DPDK_IP/24" \
	--mode rxonly --seconds $((SECS + 20)) --ready "$DIR/ready" >"$DIR/firn.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$DIR/ready" ] && break; sleep 0.1; done
[ -f "$DIR/ready" ] || { cat "$DIR/firn.log"; echo "FAIL: port not up"; exit 1; }
sleep 0.5
S=$(blast)
for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID"; PID=
R=$(grep '^rxonly:' "$DIR/firn.log")
echo "rx_only driver=firn size=$SIZE sent=$(echo "$S" | field sent)" \
	"received=$(echo "$R" | field datagrams) sender_pps=$(echo "$S" | field pps)" \
	"rx_pps=$(echo "$R" | field rx_pps)"

# ---- dpdk-testpmd, same lab, same sender
if ! command -v dpdk-testpmd >/dev/null; then
	echo "rx_only driver=testpmd skipped: dpdk-testpmd not installed (package dpdk-dev)"
	exit 0
fi
# testpmd needs a forwarding lcore besides its main one; both go on CPU 0
# (--lcores 0@0,1@0: the main lcore only sleeps and prints) so the sender
# has CPU 1 to itself, as in the firn run.
timeout -s INT $((SECS + 15)) dpdk-testpmd --lcores=0@0,1@0 $EAL --file-prefix=firnq$$ $VDEV -- \
	--forward-mode=rxonly --total-num-mbufs=8192 --auto-start --stats-period=1 \
	>"$DIR/testpmd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q "Port statistics" "$DIR/testpmd.log" 2>/dev/null && break; sleep 0.1; done
S=$(blast)
sleep 1.5
kill -INT "$PID" 2>/dev/null
for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID" 2>/dev/null; PID=
RXP=$(grep -A3 "Accumulated forward statistics" "$DIR/testpmd.log" | sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' | head -n 1)
PEAK=$(sed -n 's/.*Rx-pps: *\([0-9]*\).*/\1/p' "$DIR/testpmd.log" | sort -n | tail -n 1)
echo "rx_only driver=testpmd size=$SIZE sent=$(echo "$S" | field sent) received=$RXP" \
	"sender_pps=$(echo "$S" | field pps) rx_pps_peak_1s=$PEAK"
exit 0
