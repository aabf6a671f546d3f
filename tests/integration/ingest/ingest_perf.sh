#!/usr/bin/env bash
# ingest_perf.sh - records/s for 100 B records, socket path and DPDK path.
#
# Not a pass/fail test (suite perf): a bounded run of N records (default
# 300000, INGEST_PERF_RECORDS overrides) from P producers (default 2,
# INGEST_PERF_PRODUCERS) at full speed, durable acks on, compression and
# encryption on (firnd's defaults), each path on its own fresh data
# directory. Prints per path one line:
#   path=socket records=.. secs=.. rec_per_s=.. rx_ns_per_record=..
# rec_per_s counts records whose DURABLE ack arrived (slowest producer's
# wall time); rx_ns_per_record is the RX agent's busy time per record, from
# firnd's shutdown line. The producers share the machine with firnd, so on
# a small box they are part of what is measured.
#
# usage: ingest_perf.sh FIRND INGEST_CLIENT
set -u
FIRND=${1:?usage: ingest_perf.sh FIRND INGEST_CLIENT}
CLIENT=${2:?usage: ingest_perf.sh FIRND INGEST_CLIENT}
. "$(dirname "$0")/ingest_lib.sh"
N=${INGEST_PERF_RECORDS:-300000}
P=${INGEST_PERF_PRODUCERS:-2}
API=$(free_port)

# run PATH SERVER [in_ns]: P producers of N/P records each; prints the line
run() {
	local path=$1 server=$2 wrap=${3:-} t0 t1 pids="" each=$((N / P)) i
	t0=$(date +%s.%N)
	for i in $(seq "$P"); do
		$wrap timeout 300 "$CLIENT" send --server "$server" --stream perf --records "$each" \
			--sizes 100 --keys 1000 --producer $((5000 + i)) --timeout 280 \
			>"$DIR/$path-$i.out" 2>"$DIR/$path-$i.err" &
		pids="$pids $!"
	done
	for p in $pids; do
		wait "$p" || { cat "$DIR/$path"-*.out; fail "$path: a producer failed"; }
	done
	t1=$(date +%s.%N)
	stop_firnd
	ns=$(sed -n 's/.*ns_per_record=\([0-9]*\).*/\1/p' "$FIRND_LOG" | tail -n 1)
	awk -v p="$path" -v n="$((each * P))" -v a="$t0" -v b="$t1" -v ns="$ns" \
		'BEGIN { s = b - a; printf "path=%s records=%d secs=%.2f rec_per_s=%.0f rx_ns_per_record=%s\n", p, n, s, n / s, ns }'
}

UDP=$(free_port)
rm -rf "$DIR/data"
mkstream perf 4
start_firnd sock --listen "127.0.0.1:$UDP" --api "127.0.0.1:$API"
run socket "127.0.0.1:$UDP"

if [ "$(id -u)" = 0 ] && "$LAB" up "fip$$" "fip$$a" "fip$$b" >"$DIR/lab.env" 2>/dev/null; then
	LAB_MADE=1
	eval "$(cat "$DIR/lab.env")"
	rm -rf "$DIR/data"
	mkstream perf 4
	start_firnd dpdk --net dpdk --listen "0.0.0.0:7400" --api "127.0.0.1:$API" --ip "$LAB_DPDK_IP" \
		--eal "--no-huge -m 1024 --no-shconf --no-pci --no-telemetry --file-prefix=fip$$ --vdev=net_af_packet0,iface=$LAB_HOST_IF"
	run dpdk "${LAB_DPDK_IP%/*}:7400" "ip netns exec $LAB_NS"
else
	echo "path=dpdk skipped (needs root and netns/veth)"
fi
exit 0
