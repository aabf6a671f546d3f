#!/usr/bin/env bash
# tools/lab-net.sh - a lab network for the DPDK data port: a network namespace
# holding the "producer" end of a veth pair, the other end left in the root
# namespace with no IP address for DPDK's net_af_packet to own.
#
#   tools/lab-net.sh up   [NAME [HOST_IF NS_IF]]   create; prints shell variables
#   tools/lab-net.sh down [NAME [HOST_IF NS_IF]]   remove (no error if absent)
#
# NAME defaults to firnlab, HOST_IF to NAME's first 13 chars + "a", NS_IF to
# the same + "b". Environment: LAB_MTU (default 9000), LAB_NS_IP (default
# 198.18.0.1/24; 198.18.0.0/15 is the benchmarking range, RFC 2544),
# LAB_DPDK_IP (default 198.18.0.2/24, only printed: it is the address to
# give the DPDK port with --ip), LAB_NS_EXTRA_IPS (more addresses for the
# namespace side, blank-separated).
#
# `up` prints, for eval:
#   LAB_NS=.. LAB_HOST_IF=.. LAB_NS_IF=.. LAB_NS_IP=.. LAB_DPDK_IP=.. LAB_MTU=..
# and says on stderr what it does. IPv6 is disabled on both ends so router
# solicitations do not add noise to the port's counters.
set -euo pipefail

cmd=${1:-}
NAME=${2:-firnlab}
HOST_IF=${3:-${NAME:0:13}a}
NS_IF=${4:-${NAME:0:13}b}
MTU=${LAB_MTU:-9000}
NS_IP=${LAB_NS_IP:-198.18.0.1/24}
DPDK_IP=${LAB_DPDK_IP:-198.18.0.2/24}

say() { echo "lab-net: $*" >&2; }
run() { say "$*"; "$@"; }

down() {
	if ip netns list 2>/dev/null | grep -qw -- "$NAME"; then
		run ip netns del "$NAME"
	fi
	# Deleting the namespace deletes NS_IF and with it the pair; this is for
	# a half-built lab where the host end never moved.
	if ip link show "$HOST_IF" >/dev/null 2>&1; then
		run ip link del "$HOST_IF"
	fi
}

case "$cmd" in
up)
	[ "$(id -u)" = 0 ] || { say "needs root (netns, veth)"; exit 1; }
	trap 'say "failed; removing what was made"; down' ERR
	run ip netns add "$NAME"
	run ip link add "$HOST_IF" mtu "$MTU" type veth peer name "$NS_IF" mtu "$MTU"
	run ip link set "$NS_IF" netns "$NAME"
	sysctl -qw "net.ipv6.conf.$HOST_IF.disable_ipv6=1" 2>/dev/null || true
	run ip link set "$HOST_IF" up
	ip netns exec "$NAME" sysctl -qw "net.ipv6.conf.$NS_IF.disable_ipv6=1" 2>/dev/null || true
	run ip -n "$NAME" link set lo up
	run ip -n "$NAME" addr add "$NS_IP" dev "$NS_IF"
	for a in ${LAB_NS_EXTRA_IPS:-}; do
		run ip -n "$NAME" addr add "$a" dev "$NS_IF"
	done
	run ip -n "$NAME" link set "$NS_IF" up
	trap - ERR
	echo "LAB_NS=$NAME LAB_HOST_IF=$HOST_IF LAB_NS_IF=$NS_IF LAB_NS_IP=${NS_IP%/*}" \
		"LAB_DPDK_IP=$DPDK_IP LAB_MTU=$MTU"
	;;
down)
	down
	;;
*)
	echo "usage: $0 up|down [NAME [HOST_IF NS_IF]]" >&2
	exit 2
	;;
esac
