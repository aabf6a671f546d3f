#!/usr/bin/env bash
# net_dpdk_veth.sh - the DPDK data port on a real veth pair, end to end.
#
# A network namespace holds the producer end of a veth pair (198.18.0.1/24,
# and 198.18.0.3 as a second address); the root-namespace end has no IP and
# belongs to the DPDK port through net_af_packet (--ip 198.18.0.2/24).
#   1. MTU 9000: ping (the kernel in the namespace must ARP for the port,
#      then get ICMP echo replies from it), a jumbo ping, an echo of UDP
#      datagrams from 1 to 8972 bytes checked byte for byte, the port
#      ARPing for an address it never heard from, garbage frames (counted,
#      not fatal), and echo again afterwards.
#   2. MTU 1500: the port picks the new MTU up from the interface; 1472-byte
#      datagrams echo, a 2000-byte one (IP-fragmented by the sender's kernel)
#      is not echoed and is counted as dropped.
#   3. Two queue pairs (qpairs=2, polled round-robin): echo still exact.
# About fragments: net_af_packet joins a PACKET_FANOUT group with
# FLAG_DEFRAG, so the kernel reassembles IP fragments before the port sees
# them. A complete fragmented datagram therefore arrives whole - larger than
# the ring frame at MTU 1500, so truncated and counted in rx_dropped_bad - and
# a lone crafted fragment never arrives at all. The FRAG verdict itself is
# covered by net_dpdk_frames; on a real NIC fragments reach it and are
# counted in rx_dropped_frag.
# Everything made is removed on every exit path. Exit 0 pass, 1 fail, 77 skip.
#
# usage: net_dpdk_veth.sh NET_DPDK_ECHO
set -u
ECHO_BIN=${1:?usage: net_dpdk_veth.sh NET_DPDK_ECHO}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
LAB="$ROOT/tools/lab-net.sh"
CLIENT="$HERE/net_udp_client.py"
NS=firnt$$
HOST_IF=fv$$a
NS_IF=fv$$b
DPDK_IP=198.18.0.2
PORT=7400
DIR=$(mktemp -d /tmp/firn-net-XXXXXX)
PID=

skip() { echo "SKIP: $*"; exit 77; }
fail() {
	echo "FAIL: $*"
	[ -f "$DIR/echo.log" ] && { echo "--- port log"; tail -n 30 "$DIR/echo.log"; }
	exit 1
}
cleanup() {
	if [ -n "$PID" ]; then
		kill -TERM "$PID" 2>/dev/null
		for _ in $(seq 30); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$PID" 2>/dev/null
	fi
	"$LAB" down "$NS" "$HOST_IF" "$NS_IF" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ "$(id -u)" = 0 ] || skip "needs root to create a network namespace and a veth pair"
command -v ping >/dev/null || skip "ping is not installed (iputils-ping)"
command -v python3 >/dev/null || skip "python3 is not installed"
in_ns() { timeout 30 ip netns exec "$NS" "$@"; }

LAB_NS_EXTRA_IPS=198.18.0.3/24 "$LAB" up "$NS" "$HOST_IF" "$NS_IF" >"$DIR/lab.env" 2>"$DIR/lab.log" ||
	skip "cannot create netns/veth here: $(tail -n 1 "$DIR/lab.log")"

# start_port MTU [QUEUES]: run the echo port on HOST_IF, wait until it is up.
start_port() {
	local q=${2:-1}
	ip link set "$HOST_IF" mtu "$1" && ip -n "$NS" link set "$NS_IF" mtu "$1" ||
		fail "set MTU $1"
	rm -f "$DIR/ready"
	"$ECHO_BIN" --eal "-l 0 --no-huge -m 1024 --no-shconf --no-pci --no-telemetry \
--proc-type=primary --file-prefix=firnt$$m$1q$q --vdev=net_af_packet0,iface=$HOST_IF,qpairs=$q" \
		--ip "$DPDK_IP/24" --listen "0.0.0.0:$PORT" --queues "$q" --seconds 60 \
		--ready "$DIR/ready" >"$DIR/echo.log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do
		[ -f "$DIR/ready" ] && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	wait "$PID"
	rc=$?
	PID=
	if grep -qiE "af_packet.*(fail|error|cannot|could not)|no DPDK port 0" "$DIR/echo.log"; then
		skip "the af_packet vdev cannot be created here: $(grep -iE 'af_packet|port 0' "$DIR/echo.log" | tail -n 1)"
	fi
	fail "DPDK port did not come up (exit $rc)"
}

# stop_port: QUIT, wait for the counters, leave them in $DIR/stats.
stop_port() {
	in_ns python3 -c "
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b'QUIT', ('$DPDK_IP', $PORT))"
	for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
	wait "$PID" || fail "echo port exited with $?"
	PID=
	grep -o '[a-z_]*=[0-9]*' "$DIR/echo.log" >"$DIR/stats"
}
stat() { sed -n "s/^$1=//p" "$DIR/stats" | tail -n 1; }
expect_ge() { # name minimum
	local v
	v=$(stat "$1")
	[ -n "$v" ] && [ "$v" -ge "$2" ] || fail "$1=$v, want >= $2"
	echo "ok: $1=$v (>= $2)"
}

# ---- 1. MTU 9000 -------------------------------------------------------------
start_port 9000
grep -q "max_payload=8972" "$DIR/echo.log" || fail "MTU 9000 port: $(grep ready "$DIR/echo.log")"
echo "ok: port up on $HOST_IF, max_payload 8972"
[ "$(cat /sys/class/net/$HOST_IF/mtu)" = 9000 ] || fail "starting the port changed the interface MTU"

in_ns ping -c 3 -i 0.2 -W 2 "$DPDK_IP" >"$DIR/ping.log" 2>&1 || { cat "$DIR/ping.log"; fail "ping $DPDK_IP"; }
echo "ok: ping $DPDK_IP (ARP and ICMP answered by the port)"
in_ns ping -c 2 -i 0.2 -W 2 -s 8000 -M do "$DPDK_IP" >"$DIR/ping.log" 2>&1 ||
	{ cat "$DIR/ping.log"; fail "jumbo ping"; }
echo "ok: 8000-byte ping, unfragmented"

in_ns python3 "$CLIENT" echo "$DPDK_IP" "$PORT" --count 300 || fail "UDP echo (jumbo)"
in_ns python3 "$CLIENT" sendto "$DPDK_IP" "$PORT" 198.18.0.3 7500 || fail "port-initiated send"
grep -q "sendto: sent after" "$DIR/echo.log" || fail "no sendto line"
in_ns python3 "$CLIENT" garbage "$NS_IF" "$DPDK_IP" "$PORT" || fail "sending garbage"
kill -0 "$PID" 2>/dev/null || fail "the port died on garbage"
in_ns python3 "$CLIENT" echo "$DPDK_IP" "$PORT" --count 50 || fail "UDP echo after garbage"
stop_port
cat "$DIR/stats" | tr '\n' ' '; echo
expect_ge rx_packets 350
expect_ge tx_packets 351
expect_ge arp_replies 1
expect_ge icmp_replies 5
expect_ge rx_dropped_bad 8
expect_ge rx_dropped_not_ours 10
# the first try to 198.18.0.3 had no neighbour yet
expect_ge tx_dropped 1

# ---- 2. MTU 1500 -------------------------------------------------------------
start_port 1500
grep -q "max_payload=1472" "$DIR/echo.log" || fail "MTU 1500 port: $(grep ready "$DIR/echo.log")"
echo "ok: port picked MTU 1500 up from the interface"
in_ns python3 "$CLIENT" echo "$DPDK_IP" "$PORT" --count 60 --max-size 1472 || fail "UDP echo (1500)"
in_ns python3 "$CLIENT" noecho "$DPDK_IP" "$PORT" 2000 || fail "fragmented datagram"
stop_port
cat "$DIR/stats" | tr '\n' ' '; echo
dropped=$(($(stat rx_dropped_bad) + $(stat rx_dropped_frag)))
[ "$dropped" -ge 1 ] || fail "the fragmented datagram was not counted as dropped"
echo "ok: the fragmented datagram was dropped and counted (bad+frag=$dropped)"
expect_ge rx_packets 61

# ---- 3. two queue pairs (af_packet fanout), MTU 9000 ------------------------
start_port 9000 2
for i in 1 2 3; do
	in_ns python3 "$CLIENT" echo "$DPDK_IP" "$PORT" --count 30 || fail "UDP echo on 2 queues"
done
stop_port
expect_ge rx_packets 91
echo "PASS: net_dpdk_veth"
exit 0
