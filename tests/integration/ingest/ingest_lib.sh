# ingest_lib.sh - shared helpers for the UDP ingest integration tests.
# Sourced (not run) by ingest_*.sh after they set FIRND and CLIENT.
#
# Every test makes one scratch directory under /var/tmp (the store needs
# O_DIRECT, so not tmpfs), runs firnd with --pidfile, and removes everything
# it made - firnd, producers still running, network namespace, veth,
# nftables rules, EAL runtime directories, files - from an EXIT trap,
# whatever path it leaves by.
#
# The tests that run on more than one data path (ingest_loss, ingest_crash)
# take the path as an argument and use net_up / start_net / $NET_WRAP, so
# one script is the same test on each path.

DIR=$(mktemp -d /var/tmp/firn-ingest-XXXXXX) || exit 1
FIRND_PID=
FIRND_LOG=
LAB_MADE=
LAB_NS=
NET_WRAP=
EAL_PREFIXES=
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
LAB="$ROOT/tools/lab-net.sh"

skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*"
	for f in "$DIR"/firnd*.log; do
		[ -f "$f" ] && { echo "--- $f (tail)"; tail -n 25 "$f"; }
	done
	exit 1
}

cleanup() {
	local p left alive
	if [ -n "$FIRND_PID" ] && kill -0 "$FIRND_PID" 2>/dev/null; then
		kill -KILL "$FIRND_PID" 2>/dev/null
		wait "$FIRND_PID" 2>/dev/null
	fi
	# Producers a failed test left running (background jobs of this shell,
	# `timeout` wrapping ingest_client: it passes SIGTERM on). They hold the
	# namespace alive, so they go before it.
	left=$(jobs -p)
	if [ -n "$left" ]; then
		# shellcheck disable=SC2086
		kill -TERM $left 2>/dev/null
		for _ in $(seq 50); do
			alive=
			for p in $left; do kill -0 "$p" 2>/dev/null && alive=1; done
			[ -n "$alive" ] || break
			sleep 0.1
		done
		# shellcheck disable=SC2086
		kill -KILL $left 2>/dev/null
		wait 2>/dev/null
	fi
	if [ -n "$LAB_MADE" ]; then
		"$LAB" down "$LAB_NS" "$LAB_HOST_IF" "$LAB_NS_IF" >/dev/null 2>&1
	fi
	# EAL makes /var/run/dpdk/PREFIX even with --no-shconf, and a SIGKILLed
	# firnd never removes it; only the prefixes this test used are removed.
	for p in $EAL_PREFIXES; do
		rm -rf "/var/run/dpdk/$p"
	done
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ -x "$FIRND" ] || skip "firnd is not built ($FIRND)"
[ -x "$CLIENT" ] || skip "ingest_client is not built ($CLIENT)"

# A free UDP/TCP port number (bound and released; good enough for a test).
free_port() {
	python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
t = socket.socket(); t.bind(("127.0.0.1", s.getsockname()[1])); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

# start_firnd LOGNAME ARGS...: start firnd on $DIR/data, wait for its pidfile.
start_firnd() {
	local log="$DIR/firnd-$1.log"
	FIRND_LOG=$log
	shift
	rm -f "$DIR/pid"
	"$FIRND" --data-dir "$DIR/data" --pidfile "$DIR/pid" --log-level info "$@" \
		>"$log" 2>&1 &
	FIRND_PID=$!
	for _ in $(seq 300); do
		[ -s "$DIR/pid" ] && return 0
		kill -0 "$FIRND_PID" 2>/dev/null || break
		sleep 0.1
	done
	wait "$FIRND_PID" 2>/dev/null
	local rc=$?
	FIRND_PID=
	if grep -qiE "af_packet.*(fail|error|cannot|could not)|no DPDK port|EAL: .*(fail|error)" "$log"; then
		skip "DPDK cannot bring the af_packet port up here: $(grep -iE 'af_packet|EAL|port' "$log" | tail -n 1)"
	fi
	fail "firnd did not start (exit $rc): $(tail -n 3 "$log")"
}

# stop_firnd: SIGTERM, expect a clean exit 0 within 30 s.
stop_firnd() {
	[ -n "$FIRND_PID" ] || return 0
	kill -TERM "$FIRND_PID"
	for _ in $(seq 300); do
		kill -0 "$FIRND_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$FIRND_PID" 2>/dev/null; then
		kill -KILL "$FIRND_PID"
		FIRND_PID=
		fail "firnd did not stop within 30 s of SIGTERM"
	fi
	wait "$FIRND_PID"
	local rc=$?
	FIRND_PID=
	[ "$rc" = 0 ] || fail "firnd exited $rc on SIGTERM"
	grep -q "stopped cleanly" "$FIRND_LOG" || fail "no 'stopped cleanly' in $FIRND_LOG"
}

# kill9_firnd: the crash.
kill9_firnd() {
	kill -KILL "$FIRND_PID" 2>/dev/null
	wait "$FIRND_PID" 2>/dev/null
	FIRND_PID=
}

# lab_up NAME [NS_IP HOST_IP]: a netns + veth pair (tools/lab-net.sh); sets
# LAB_* variables. The addresses default to lab-net's (198.18.0.1/24 in the
# namespace, 198.18.0.2/24 for the host end, as LAB_DPDK_IP).
lab_up() {
	[ "$(id -u)" = 0 ] || skip "needs root to create a network namespace and a veth pair"
	LAB_NS=$1
	LAB_HOST_IF=${1:0:12}a
	LAB_NS_IF=${1:0:12}b
	LAB_MADE=1
	local env
	env=$(LAB_NS_IP=${2:-198.18.0.1/24} LAB_DPDK_IP=${3:-198.18.0.2/24} \
		"$LAB" up "$LAB_NS" "$LAB_HOST_IF" "$LAB_NS_IF" 2>"$DIR/lab.log") ||
		{ LAB_MADE=; skip "cannot create netns/veth here: $(tail -n 1 "$DIR/lab.log")"; }
	eval "$env"
}

# net_up KIND NAME: where firnd takes datagrams and the producers run.
#   loopback  --net socket on 127.0.0.1, producers beside it (no root needed)
#   veth      --net socket on the host end of a veth pair, which gets
#             LAB_DPDK_IP (in a /24 of 198.19.0.0/16 that no address or route
#             on the host uses yet, so it never routes over another lab's);
#             producers in the namespace, so every datagram crosses the veth
#             both ways
#   dpdk      --net dpdk, net_af_packet owning the host end and answering
#             for LAB_DPDK_IP; producers in the namespace
# Sets NET_KIND, SERVER (what producers send to) and NET_WRAP (the command
# prefix that runs a producer where it belongs: empty, or ip netns exec).
# start_net then starts firnd on it.
# FIRN_RX_QUEUES=N (meson's *_rxq2 tests): firnd runs N RX agents; the
# af_packet vdev gets N queue pairs. RXQ_ARGS / RXQ_VDEV carry them to
# start_net and to the scripts that start firnd themselves.
RXQ_ARGS=()
RXQ_VDEV=
if [ "${FIRN_RX_QUEUES:-1}" -gt 1 ]; then
	RXQ_ARGS=(--rx-queues "$FIRN_RX_QUEUES")
	RXQ_VDEV=",qpairs=$FIRN_RX_QUEUES"
fi

net_up() {
	NET_KIND=$1
	case $1 in
	loopback)
		NET_PORT=$(free_port)
		SERVER=127.0.0.1:$NET_PORT
		;;
	veth)
		# a /24 that no address or route (inside it or around it) uses yet
		local n=$(($$ % 250 + 1)) used _
		for _ in $(seq 20); do
			used=$(ip -4 -o addr show to "198.19.$n.0/24"
				ip -4 route show root "198.19.$n.0/24"
				ip -4 route show to match "198.19.$n.1" | grep -v '^default')
			[ -z "$used" ] && break
			n=$((n % 250 + 1))
		done
		lab_up "$2" "198.19.$n.1/24" "198.19.$n.2/24"
		ip addr add "$LAB_DPDK_IP" dev "$LAB_HOST_IF" 2>"$DIR/addr.err" ||
			fail "cannot give $LAB_HOST_IF $LAB_DPDK_IP: $(cat "$DIR/addr.err")"
		NET_PORT=$(free_port)
		SERVER=${LAB_DPDK_IP%/*}:$NET_PORT
		NET_WRAP="ip netns exec $LAB_NS"
		;;
	dpdk)
		lab_up "$2"
		NET_PORT=7400 # the port is firnd's own: nothing else sees this veth end
		SERVER=${LAB_DPDK_IP%/*}:$NET_PORT
		NET_WRAP="ip netns exec $LAB_NS"
		;;
	*)
		echo "unknown data path '$1' (loopback, veth or dpdk)"
		exit 2
		;;
	esac
}

# start_net LOGNAME ARGS...: firnd on the data port net_up made (ARGS added),
# checked to be on the path asked for. Each DPDK start gets an EAL file
# prefix of its own, so a restart after SIGKILL never meets what the killed
# process left behind.
start_net() {
	local name=$1
	shift
	case $NET_KIND in
	loopback | veth)
		start_firnd "$name" --net socket --listen "$SERVER" "${RXQ_ARGS[@]}" "$@"
		grep -q "udp $SERVER (socket)" "$FIRND_LOG" ||
			fail "firnd is not on $SERVER (socket): $(grep ready "$FIRND_LOG")"
		;;
	dpdk)
		local prefix="${LAB_NS}e$name"
		EAL_PREFIXES="$EAL_PREFIXES $prefix"
		start_firnd "$name" --net dpdk --listen "0.0.0.0:$NET_PORT" --ip "$LAB_DPDK_IP" \
			--eal "--no-huge -m 1024 --no-shconf --no-pci --no-telemetry --file-prefix=$prefix --vdev=net_af_packet0,iface=$LAB_HOST_IF$RXQ_VDEV" \
			"${RXQ_ARGS[@]}" "$@"
		grep -q "(dpdk)" "$FIRND_LOG" ||
			fail "firnd is not on the DPDK port: $(grep ready "$FIRND_LOG")"
		;;
	esac
}

in_ns() {
	ip netns exec "$LAB_NS" "$@"
}

# mkstream NAME SHARDS (firnd stopped: writes the catalog directly)
mkstream() {
	"$CLIENT" mkstream --data-dir "$DIR/data" --stream "$1" --shards "$2" ||
		fail "cannot create stream $1"
}

# agents_share API_PORT: with several RX agents, each routed records of its
# own producers (from /metrics, per agent); prints the split.
agents_share() {
	python3 - "http://127.0.0.1:$1/metrics" <<'PY' || fail "the RX agents did not share the work"
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
per = {m.group(1): int(m.group(2)) for m in re.finditer(
    r'^firn_ingest_agent_records_new_total\{agent="(\d+)"\} (\d+)$', text, re.M)}
rx = {m.group(1): int(m.group(2)) for m in re.finditer(
    r'^firn_ingest_agent_rx_datagrams_total\{agent="(\d+)"\} (\d+)$', text, re.M)}
hand = {m.group(1): int(m.group(2)) for m in re.finditer(
    r'^firn_ingest_agent_handoffs_total\{agent="(\d+)"\} (\d+)$', text, re.M)}
print(f"per RX agent: records routed {per}, datagrams handled {rx}, "
      f"datagrams passed to their owner {hand}")
sys.exit(0 if len(per) >= 2 and all(v > 0 for v in per.values()) else 1)
PY
}

# producers_done WHAT: wait for the producers $P1 and $P2 (started with
# their output in $DIR/1.out, 2.out and errors in 1.err, 2.err), print their
# summary lines, and fail unless both got every record acked and no answer
# contradicted an earlier one. WHAT names the run in the failure message.
producers_done() {
	local i pid
	for i in 1 2; do
		pid=$P1
		[ $i = 2 ] && pid=$P2
		wait "$pid" || { cat "$DIR/$i.out"; tail -n 20 "$DIR/$i.err"; fail "producer $i $1"; }
	done
	for i in 1 2; do
		echo "$i: $(cat "$DIR/$i.out")"
		grep -q "contradictions=0" "$DIR/$i.out" ||
			fail "producer $i: an answer contradicted an earlier one"
	done
}
