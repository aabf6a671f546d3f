# ingest_lib.sh - shared helpers for the UDP ingest integration tests.
# Sourced (not run) by ingest_*.sh after they set FIRND and CLIENT.
#
# Every test makes one scratch directory under /var/tmp (the store needs
# O_DIRECT, so not tmpfs), runs firnd with --pidfile, and removes everything
# it made - firnd, network namespace, veth, nftables rules, files - from an
# EXIT trap, whatever path it leaves by.

DIR=$(mktemp -d /var/tmp/firn-ingest-XXXXXX) || exit 1
FIRND_PID=
FIRND_LOG=
LAB_MADE=
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
	if [ -n "$FIRND_PID" ] && kill -0 "$FIRND_PID" 2>/dev/null; then
		kill -KILL "$FIRND_PID" 2>/dev/null
		wait "$FIRND_PID" 2>/dev/null
	fi
	if [ -n "$LAB_MADE" ]; then
		"$LAB" down "$LAB_NS" "$LAB_HOST_IF" "$LAB_NS_IF" >/dev/null 2>&1
	fi
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

# lab_up NAME: a netns + veth pair (tools/lab-net.sh); sets LAB_* variables.
lab_up() {
	[ "$(id -u)" = 0 ] || skip "needs root to create a network namespace and a veth pair"
	LAB_NS=$1
	LAB_HOST_IF=${1:0:12}a
	LAB_NS_IF=${1:0:12}b
	LAB_MADE=1
	local env
	env=$("$LAB" up "$LAB_NS" "$LAB_HOST_IF" "$LAB_NS_IF" 2>"$DIR/lab.log") ||
		{ LAB_MADE=; skip "cannot create netns/veth here: $(tail -n 1 "$DIR/lab.log")"; }
	eval "$env"
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
