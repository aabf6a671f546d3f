#!/usr/bin/env bash
# tools/bench/udp.sh - the UDP ingest benchmark of issue 4: how much of the raw
# packet path firn turns into durable records, on one veth, in one run.
#
#   tools/bench/udp.sh [--build DIR] [--out DIR] [--quick] [--reps N]
#                      [--mtu 1500|9000|both]
#
# Why: firn's claim is that it makes records durable at the rate packets
# arrive. The honest yardstick is the packet path itself: the same veth, the
# same af_packet port, datagrams of the size firn's producer sends, measured
# minutes apart on the same (shared) machine. Absolute numbers on a 2-vCPU VM
# mean little; the ratios mean something.
#
# The lab: a network namespace holding one end of a veth pair (MTU 1500,
# addresses in 198.18.0.0/15: a /30 of 198.19.0.0/16 picked from this
# script's pid), the other end in the root namespace. Producers always run in
# the namespace, so every datagram crosses the same veth. For each record
# size (100 B and 1 KiB), each repetition and each MTU (--mtu), in this order:
#
#   firn dpdk    firnd --net dpdk on net_af_packet over the host end (firnd
#                owns the port: ARP, UDP, acks); firn-bench --udp in the netns
#   firn socket  firnd --net socket listening on the host end's address (the
#                kernel's UDP stack); the same firn-bench in the netns
#   raw          dpdk-testpmd --forward-mode=rxonly on the same af_packet port;
#                net_udp_blast (sendmmsg, as fast as the veth takes it) in the
#                netns sending datagrams of the size firn's producer just sent
#                (firnd's /metrics: rx_bytes / rx_datagrams of the dpdk run),
#                for as long as a firn run lasts. Neither is pinned, as firnd
#                and firn-bench are not: testpmd's two lcores may run on any
#                CPU (--lcores '0@(..),1@(..)'). UDP_RAW_PIN=1 pins them to
#                CPU 0 and the sender to CPU 1 instead (net_rx_pps.sh's
#                layout), which in trial runs here made the reference hostage
#                to whatever else ran on CPU 0 (150 k and 250 k pps for the
#                same 1087 B datagrams minutes apart; 290 k unpinned)
#
# --mtu 9000 sets both ends of the veth to MTU 9000 for those runs: firn-bench
# gets --mtu 9000 (8972-byte datagrams, ~66 records of 100 B or 8 of 1 KiB to
# a datagram), firnd takes the MTU from the interface on either path (the run
# fails unless its log says "8972-byte datagrams"), and the raw reference gets
# af_packet ring frames and testpmd mbufs that hold a 9000-byte frame, and
# datagrams of the size firn's producer sent at that MTU. --mtu both runs
# each repetition at 1500 and then 9000, back to back, so the two are
# measured minutes apart at most; the half-rate runs are per MTU, at half of
# that MTU's closed-loop median.
#
# Every firn run is a fresh firnd (new data dir, a 4-shard stream, defaults:
# durable acks = O_DIRECT group commit + flush, deflate attempted, AES-256-GCM
# at rest; the protocol's AEAD on every datagram) and firn-bench closed loop,
# 4 sessions x window 1024, random (incompressible) data, uniform keys. Then,
# per path, an open-loop run of 100 B records at half the closed-loop median
# rec/s for the latency target. Medians over --reps runs are reported.
#
# Output, stdout (progress and per-run lines go to stderr):
#   path=P size=S dgram_B=.. raw_pps=.. raw_MBps=.. firn_pps=.. pps_ratio=..
#     ratio=.. rec_per_s=.. MBps=.. p50_us=.. p99_us=.. p999_us=..
#     rx_cycles_per_rec=.. rx_busy=.. firnd_cycles_per_rec=.. reps=..
#   path=P size=100 half_rate=R rec_per_s=.. p50_us=.. p99_us=.. p999_us=.. reps=..
#   target ... lines: each target of the issue, per path, met or not
# With --mtu 9000 or both, every path= line has mtu=M after size=, and each
# target line is printed once per MTU, as "target mtu=M ...". The default
# (--mtu 1500) prints exactly the lines above.
# where
#   dgram_B      mean UDP payload of firn's datagrams (100 B records are packed
#                many to a datagram; 1 KiB records one to a datagram)
#   raw_pps      datagrams/s testpmd received from the sender, datagrams of
#                dgram_B bytes; raw_MBps = raw_pps x dgram_B (payload MB/s)
#   firn_pps     datagrams/s firnd received (its /metrics rx_datagrams)
#   pps_ratio    firn_pps / raw_pps: datagrams, the packet-rate comparison
#   ratio        MBps / raw_MBps: firn's goodput (record data durably acked)
#                against the raw path's datagram payload: the "goodput >= 80 %
#                of raw" figure. It is below pps_ratio by the protocol's own
#                bytes (headers, keys, AEAD tags): by about 0.78 for 100 B
#                records (10.8 of them in a 1383 B datagram), 0.94 for 1 KiB
#   rec_per_s, MBps, p50/p99/p999_us
#                firn-bench: durably acked records/s, MB/s of record data,
#                latency to the DURABLE ack
#   rx_cycles_per_rec
#                CPU time of firnd's RX agent thread(s) (named firn-rx; from
#                /proc/PID/task/TID/schedstat, else utime+stime) x the CPU's
#                nominal clock (cpu MHz) / records acked. TIME-BASED: this VM
#                has no hardware cycle counters; time spent waiting for a
#                core is not counted, polling an idle port before the agent
#                sleeps is
#   rx_busy      that CPU time / the run's seconds: how much of a core RX used
#   firnd_cycles_per_rec
#                the same for the whole firnd process (utime + stime): RX,
#                writers (deflate, AES-GCM, I/O), acks, API
# Ratios are of the medians.
#
# --out DIR keeps logs/ (firnd, firn-bench, testpmd, the sender, and firnd's
# ingest and store counters after each run), runs/ (firn-bench JSON),
# firn_runs.tsv and raw_runs.tsv (every run), results.json and results.txt
# (what stdout showed). Without it all of that is in a temporary directory
# removed at exit. The namespace, the veth, every process started here and
# the temporary directories are removed on every exit path (including errors
# and Ctrl-C).
#
#   --build DIR   meson build dir (default build; configured if missing, the
#                 four programs built with ninja -j2)
#   --out DIR     keep results and logs in DIR
#   --quick       1 repetition, 2 s runs (about 40 s here)
#   --reps N      repetitions per case (default 3; --quick: 1); full mode runs
#                 5 s per case (about 3 minutes here at 3 repetitions)
#   --mtu M       1500 (default), 9000, or both (each case at both MTUs: twice
#                 the time)
#
# Needs root (netns, veth, AF_PACKET); exits 77 with the reason where those
# are missing. Installs dpdk-testpmd (Debian package dpdk-dev) when missing.
# Exit 0: every case measured; 1: a case failed (reasons on stderr); 2: usage.
# Env: FIRN_BENCH_DIR (scratch for firnd's data, default /var/tmp: O_DIRECT
# needs a real file system), UDP_SESSIONS (4), UDP_SHARDS (4), UDP_RAW_PIN
# (see raw above).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# kv
. "$ROOT/tools/bench/bench_lib.sh"
BUILD=$ROOT/build OUT='' QUICK=0 REPS='' MTU_OPT=1500
CMDLINE="tools/bench/udp.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD=${2:?--build needs a directory}; shift ;;
	--out) OUT=${2:?--out needs a directory}; shift ;;
	--quick) QUICK=1 ;;
	--reps) REPS=${2:?--reps needs a number}; shift ;;
	--mtu) MTU_OPT=${2:?--mtu needs 1500, 9000 or both}; shift ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
	*) echo "udp.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
if [ "$QUICK" = 1 ]; then
	SECS=2 WARMUP=0.5
	REPS=${REPS:-1}
else
	SECS=5 WARMUP=1
	REPS=${REPS:-3}
fi
case "$REPS" in
'' | *[!0-9]*) echo "udp.sh: --reps needs a whole number 1..20" >&2; exit 2 ;;
esac
if [ "$REPS" -lt 1 ] || [ "$REPS" -gt 20 ]; then
	echo "udp.sh: --reps must be 1..20" >&2
	exit 2
fi
case "$MTU_OPT" in
1500 | 9000) MTUS=$MTU_OPT ;;
both) MTUS="1500 9000" ;;
*) echo "udp.sh: --mtu must be 1500, 9000 or both" >&2; exit 2 ;;
esac
SESSIONS=${UDP_SESSIONS:-4}
SHARDS=${UDP_SHARDS:-4}
SIZES="100 1024"
P99_TARGET_US=1000
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac

log() { echo "udp: $*" >&2; }
skip() { echo "SKIP: $*"; exit 77; }

# ---- what this machine must have (exit 77 otherwise) ----------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (network namespace, veth, AF_PACKET)"
command -v ip >/dev/null || skip "no ip(8) (iproute2)"
command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()' \
	2>/dev/null || skip "no AF_PACKET sockets in this kernel (net_af_packet needs them)"

BASE=${FIRN_BENCH_DIR:-/var/tmp}
WORK=$(mktemp -d "$BASE/firn-udp-XXXXXX") || { log "cannot make a directory in $BASE"; exit 1; }
if [ -n "$OUT" ]; then
	mkdir -p "$OUT" || { rm -rf "$WORK"; exit 1; }
	OUT=$(cd "$OUT" && pwd)
else
	OUT=$WORK/out
fi
mkdir -p "$OUT/logs" "$OUT/runs"
FIRN_TSV=$OUT/firn_runs.tsv
RAW_TSV=$OUT/raw_runs.tsv
printf 'kind\tpath\tsize\trep\tok\trecords\tsecs\trec_per_s\tMBps\tp50_us\tp99_us\tp999_us' \
	>"$FIRN_TSV"
printf '\tdgrams\trx_bytes\trx_ns\trx_ns_metric\tfirnd_ticks\tbench_cpu_us_per_rec\trate\tmtu\n' \
	>>"$FIRN_TSV"
printf 'size\trep\tok\tdgram_B\tsent\treceived\tsecs\tmtu\n' >"$RAW_TSV"

# ---- cleanup: every process started in the background is in PIDS ----------------------
PFX=fudp$$
NS=$PFX HOST_IF=fu$$a NS_IF=fu$$b NS_UP=0
PIDS=()
GROUPS_=() # of PIDS, those started under timeout(1), which makes a process group
FAILED=()
# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
	local p
	trap - INT TERM
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		is_group "$p" && kill -KILL -- "-$p" 2>/dev/null
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ "$NS_UP" = 1 ] && "$ROOT/tools/lab-net.sh" down "$NS" "$HOST_IF" "$NS_IF" >/dev/null 2>&1
	# DPDK leaves an empty runtime directory per --file-prefix, even with --no-shconf
	for p in /var/run/dpdk/"$PFX"-*; do [ -d "$p" ] && rm -rf "$p"; done
	rm -rf "$WORK"
}
is_group() { local g; for g in "${GROUPS_[@]}"; do [ "$g" = "$1" ] && return 0; done; return 1; }
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# stop PID: SIGTERM, up to 30 s for firnd's drain, then SIGKILL; drop it from PIDS
stop() {
	local p=$1 q keep=()
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$p" 2>/dev/null; then
		log "pid $p ignored SIGTERM for 30 s: SIGKILL"
		is_group "$p" && kill -KILL -- "-$p" 2>/dev/null
		kill -KILL "$p" 2>/dev/null
	fi
	wait "$p" 2>/dev/null
	for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
	PIDS=("${keep[@]}")
}

# bounded SECS CMD...: run CMD under timeout(1) in the background and wait for
# it. A foreground command would defer the INT/TERM trap until it finished,
# and bash skips the trap altogether when the command survives the SIGINT
# (firn-bench stops cleanly on one); `wait` returns at once instead, and the
# trap's cleanup ends the command (timeout makes it a process group).
bounded() {
	local secs=$1 p rc q keep=()
	shift
	timeout "$secs" "$@" &
	p=$!
	PIDS+=("$p")
	GROUPS_+=("$p")
	wait "$p"
	rc=$?
	for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
	PIDS=("${keep[@]}")
	return $rc
}
load() { cut -d' ' -f1-3 /proc/loadavg; }
fail() { log "FAILED: $*"; FAILED+=("$*"); }

# ---- packages and programs --------------------------------------------------------------
if ! command -v dpdk-testpmd >/dev/null; then
	log "installing dpdk-dev (dpdk-testpmd)"
	export DEBIAN_FRONTEND=noninteractive
	{ bounded 600 apt-get update -q &&
		bounded 900 apt-get install -y -q \
			--no-install-recommends dpdk-dev; } >"$OUT/logs/apt.log" 2>&1 ||
		log "apt-get install dpdk-dev failed ($OUT/logs/apt.log)"
fi
TARGETS="app/firnd/firnd app/firn/firn app/firn-bench/firn-bench"
TARGETS="$TARGETS tests/integration/net/net_udp_blast"
if [ ! -f "$BUILD/build.ninja" ]; then
	log "configuring $BUILD"
	bounded 600 meson setup "$BUILD" "$ROOT" >"$OUT/logs/meson.log" 2>&1 ||
		{ log "meson setup failed: $(tail -n 3 "$OUT/logs/meson.log")"; exit 1; }
fi
log "building in $BUILD"
# shellcheck disable=SC2086 # TARGETS is a list of words
bounded 1800 ninja -C "$BUILD" -j2 $TARGETS >"$OUT/logs/ninja.log" 2>&1 ||
	{ log "build failed: $(tail -n 5 "$OUT/logs/ninja.log")"; exit 1; }
FIRND=$BUILD/app/firnd/firnd
FIRN=$BUILD/app/firn/firn
BENCH=$BUILD/app/firn-bench/firn-bench
BLAST=$BUILD/tests/integration/net/net_udp_blast

# ---- the machine ----------------------------------------------------------------------------
MHZ=$(awk -F: '/^cpu MHz/ {gsub(/ /, "", $2); print $2; exit}' /proc/cpuinfo)
[ -n "$MHZ" ] || MHZ=$(lscpu 2>/dev/null |
	awk -F: '/^CPU (max )?MHz/ {gsub(/ /, "", $2); print $2; exit}')
MHZ=${MHZ:-0}
TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
LOAD0=$(load)
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)

# ---- the lab net: a /30 in 198.19.0.0/16 no root-namespace address or route uses ---------
pick_net() {
	local k idx a b
	for k in $(seq 0 63); do
		idx=$((($$ + k * 257) % 16384))
		a=$((idx / 64)) b=$((idx % 64 * 4))
		ip -4 -o addr show | grep -qE "inet 198\.19\.$a\.($b|$((b + 1))|$((b + 2))|$((b + 3)))/" &&
			continue
		ip -4 route show | grep -qE "^198\.19\.$a\.[0-9]+/(2[0-9]|3[0-2]) " && continue
		NS_IP=198.19.$a.$((b + 1)) HOST_IP=198.19.$a.$((b + 2))
		return 0
	done
	return 1
}
pick_net || { log "no free /30 in 198.19.0.0/16"; exit 1; }
if ! LAB_MTU=1500 LAB_NS_IP="$NS_IP/30" LAB_DPDK_IP="$HOST_IP/30" \
	"$ROOT/tools/lab-net.sh" up "$NS" "$HOST_IF" "$NS_IF" >"$OUT/logs/lab-net.log" 2>&1; then
	skip "no network namespace / veth here: $(tail -n 1 "$OUT/logs/lab-net.log")"
fi
NS_UP=1
HOST_MAC=$(cat "/sys/class/net/$HOST_IF/address")
MTU=1500 # the veth's MTU now, both ends (set_mtu)
log "lab: netns $NS ($NS_IF $NS_IP) <-> $HOST_IF ($HOST_IP, $HOST_MAC), MTU ${MTUS// / and }"
log "output: $OUT; load average $LOAD0; $REPS rep(s) of ${SECS}s runs"

# set_mtu M: both ends of the veth to MTU M. firnd (either path) and the
# af_packet ring sizes read the MTU from the interface when they start, so
# this is done between runs only.
set_mtu() {
	[ "$MTU" = "$1" ] && return 0
	if ! ip link set dev "$HOST_IF" mtu "$1" || ! ip -n "$NS" link set dev "$NS_IF" mtu "$1"; then
		fail "cannot set MTU $1 on the veth"
		return 1
	fi
	MTU=$1
}
# sfx: what run names get at the current MTU (nothing at 1500: the old names)
sfx() { [ "$MTU" = 1500 ] || echo "-mtu$MTU"; }

free_udp_port() { # ADDR: a UDP port free on ADDR (and TCP, for the API)
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0))
t = socket.socket(); t.bind((sys.argv[1], s.getsockname()[1])); print(s.getsockname()[1])' "$1"
}
# metrics API_PORT [FILE]: "rx_datagrams rx_bytes rx_cpu_ns" from firnd's
# /metrics; FILE gets the ingest and store counters (drops, refusals, commits)
metrics() {
	python3 - "$1" "${2:-}" <<'PY' 2>/dev/null || echo "0 0 0"
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read()
lines = [l for l in text.decode().splitlines() if l.startswith(("firn_ingest_", "firn_store_"))]
if sys.argv[2]:
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(lines) + "\n")
v = dict(l.split(" ", 1) for l in lines if l.startswith("firn_ingest_"))
print(" ".join(v.get("firn_ingest_%s_total" % k, "0").strip()
               for k in ("rx_datagrams", "rx_bytes", "cpu_ns")))
PY
}
# rx_ns PID TID...: CPU nanoseconds of those threads (schedstat: run time in
# ns; without schedstats, utime + stime in clock ticks)
rx_ns() {
	local pid=$1 t sum=0 v
	shift
	for t in "$@"; do
		if [ -r "/proc/$pid/task/$t/schedstat" ]; then
			v=$(cut -d' ' -f1 "/proc/$pid/task/$t/schedstat")
		else
			v=$(awk -v k="$TCK" '{printf "%.0f", ($14 + $15) * 1e9 / k}' "/proc/$pid/task/$t/stat")
		fi
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}
# firn-rx (one agent) or firn-rx0, firn-rx1, ... (rx_queues > 1): the RX agents' threads
rx_tids() {
	local t
	for t in /proc/"$1"/task/*; do
		case "$(cat "$t/comm" 2>/dev/null)" in firn-rx*) true ;; *) false ;; esac && echo "${t##*/}"
	done
}
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ---- firnd ----------------------------------------------------------------------------------
FIRND_PID='' API='' UDP_PORT='' NRUN=0
# start_firnd dpdk|socket NAME: fresh data dir, wait for the pidfile, make the stream
start_firnd() {
	local path=$1 name=$2 args=() eal
	NRUN=$((NRUN + 1))
	API=$(free_udp_port 127.0.0.1)
	if [ "$path" = dpdk ]; then
		ip addr flush dev "$HOST_IF"
		UDP_PORT=7400
		eal="--no-huge -m 1024 --no-shconf --no-pci --no-telemetry --file-prefix=$PFX-$NRUN"
		eal="$eal --vdev=net_af_packet0,iface=$HOST_IF"
		args=(--net dpdk --listen "0.0.0.0:$UDP_PORT" --ip "$HOST_IP/30" --eal "$eal")
	else
		ip addr replace "$HOST_IP/30" dev "$HOST_IF"
		UDP_PORT=$(free_udp_port "$HOST_IP")
		args=(--net socket --listen "$HOST_IP:$UDP_PORT")
	fi
	"$FIRND" --data-dir "$WORK/firnd-$name" --api "127.0.0.1:$API" --pidfile "$WORK/$name.pid" \
		--log-level info "${args[@]}" >"$OUT/logs/firnd-$name.log" 2>&1 &
	FIRND_PID=$!
	PIDS+=("$FIRND_PID")
	for _ in $(seq 300); do
		[ -s "$WORK/$name.pid" ] && break
		kill -0 "$FIRND_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$WORK/$name.pid" ] || ! grep -q "($path)" "$OUT/logs/firnd-$name.log"; then
		fail "$name: firnd did not start: $(tail -n 2 "$OUT/logs/firnd-$name.log" | tr '\n' ' ')"
		stop_firnd "$name"
		return 1
	fi
	# the MTU firnd took from the interface: IPv4 datagrams of MTU - 28 bytes
	if ! grep -q "$((MTU - 28))-byte datagrams" "$OUT/logs/firnd-$name.log"; then
		fail "$name: firnd is not at MTU $MTU: $(grep 'RX agent' "$OUT/logs/firnd-$name.log")"
		stop_firnd "$name"
		return 1
	fi
	bounded 30 "$FIRN" --endpoint "http://127.0.0.1:$API" stream create bench --shards "$SHARDS" \
		>>"$OUT/logs/firnd-$name.log" 2>&1 ||
		{ fail "$name: cannot create the stream"; stop_firnd "$name"; return 1; }
}
stop_firnd() {
	[ -n "$FIRND_PID" ] && stop "$FIRND_PID"
	FIRND_PID=
	rm -rf "$WORK/firnd-$1" "$WORK/$1.pid"
	ip addr flush dev "$HOST_IF"
}

# firn_run dpdk|socket SIZE REP closed|half [RATE]: one firnd, one firn-bench
# run in the namespace at the veth's MTU now; appends a row to firn_runs.tsv;
# sets LAST_DGRAM_B
LAST_DGRAM_B=
firn_run() {
	local path=$1 size=$2 rep=$3 kind=$4 rate=${5:-} name m0 m1 r0 r1 p0 p1 rc line ok=1
	local rate_args=() mtu_args=() tids k
	name=$kind-$path-$size-$rep$(sfx)
	LAST_DGRAM_B=
	# Other tenants' dirty pages written back mid-run sit in the disk's queue
	# ahead of firn's commits (60-600 ms, doc/operations.md "Slow disk"):
	# start each run with none pending, and log what there was.
	log "$name: before sync $(awk '/^(Dirty|Writeback):/ {printf "%s%s kB ", $1, $2}' /proc/meminfo)"
	sync
	start_firnd "$path" "$name" || return 1
	mapfile -t tids < <(rx_tids "$FIRND_PID")
	[ ${#tids[@]} -gt 0 ] || log "$name: no firn-rx thread in firnd: rx_cycles_per_rec unknown"
	[ -n "$rate" ] && rate_args=(--rate "$rate")
	[ "$MTU" = 1500 ] || mtu_args=(--mtu "$MTU")
	m0=$(metrics "$API") r0=$(rx_ns "$FIRND_PID" "${tids[@]}") p0=$(proc_ticks "$FIRND_PID")
	bounded $((SECS + 90)) ip netns exec "$NS" "$BENCH" --udp "$HOST_IP:$UDP_PORT" \
		--stream bench --size "$size" --sessions "$SESSIONS" --records 100000000 \
		--duration "$SECS" --warmup "$WARMUP" --drain 30 "${rate_args[@]}" "${mtu_args[@]}" \
		--json "$OUT/runs/$name.json" >"$OUT/logs/$name.out" 2>"$OUT/logs/$name.err"
	rc=$?
	m1=$(metrics "$API" "$OUT/logs/$name.metrics")
	r1=$(rx_ns "$FIRND_PID" "${tids[@]}") p1=$(proc_ticks "$FIRND_PID")
	stop_firnd "$name"
	line=$(tail -n 1 "$OUT/logs/$name.out")
	if [ $rc != 0 ] || [ -z "$(echo "$line" | kv rec_per_s)" ]; then
		fail "$name: firn-bench exit $rc: $(grep -v '^firn-bench: [0-9]* s:' \
			"$OUT/logs/$name.err" | tail -n 2 | tr '\n' ' ')"
		ok=0
		[ -z "$(echo "$line" | kv rec_per_s)" ] && return 1
	fi
	# shellcheck disable=SC2086 # m0/m1 are three numbers each
	set -- $m0 $m1
	local dg=$(($4 - $1)) by=$(($5 - $2)) rxm=$(($6 - $3))
	[ "$dg" -gt 0 ] && LAST_DGRAM_B=$((by / dg))
	log "$name: $line dgrams=$dg dgram_B=${LAST_DGRAM_B:-?}" \
		"rx_cpu_s=$(awk -v n=$((r1 - r0)) 'BEGIN {printf "%.2f", n / 1e9}')" \
		"slow_commits=$(sed -n 's/^firn_store_slow_commits_total //p' "$OUT/logs/$name.metrics")"
	printf '%s\t%s\t%s\t%s\t%s' "$kind" "$path" "$size" "$rep" "$ok" >>"$FIRN_TSV"
	for k in records secs rec_per_s MBps p50_us p99_us p999_us; do
		printf '\t%s' "$(echo "$line" | kv "$k")" >>"$FIRN_TSV"
	done
	printf '\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$dg" "$by" $((r1 - r0)) "$rxm" \
		$((p1 - p0)) "$(echo "$line" | kv cpu_us_per_rec)" "${rate:--}" "$MTU" >>"$FIRN_TSV"
	return 0
}

# raw_run SIZE REP DGRAM_B: dpdk-testpmd rx-only on the port, net_udp_blast in
# the namespace for SECS, at the veth's MTU now; appends a row to raw_runs.tsv
raw_run() {
	local size=$1 rep=$2 bytes=$3 name tp rx sent secs vdev jumbo=() fr pg bl
	name=raw-$size-$rep$(sfx)
	NRUN=$((NRUN + 1))
	if ! command -v dpdk-testpmd >/dev/null; then
		fail "$name: dpdk-testpmd is not installed (Debian dpdk-dev)"
		return 1
	fi
	ip addr flush dev "$HOST_IF"
	# testpmd answers no ARP: the namespace gets a static entry for its port
	ip -n "$NS" neigh replace "$HOST_IP" lladdr "$HOST_MAC" dev "$NS_IF" nud permanent
	# testpmd needs a forwarding lcore besides its main one (which only
	# sleeps and prints). Both float over all CPUs, like firnd's threads;
	# with UDP_RAW_PIN=1 both share CPU 0 and the sender gets CPU 1.
	local lcores pin=()
	lcores="0@(0-$((NCPU - 1))),1@(0-$((NCPU - 1)))"
	if [ "${UDP_RAW_PIN:-0}" = 1 ] && [ "$NCPU" -ge 2 ]; then
		lcores=0@0,1@0 pin=(taskset -c 1)
	fi
	# Above 1500 the PMD's default 2048-byte ring frames and testpmd's
	# 2176-byte mbufs cannot hold a frame: size both as firnd's driver does
	# (drivers/net/dpdk/net_dpdk.c: MTU + 82, rounded up to 1 KiB; blocks
	# of whole frames and pages), the mbuf's data room the frame plus the
	# 128-byte headroom.
	vdev="net_af_packet0,iface=$HOST_IF"
	if [ "$MTU" -gt 1500 ]; then
		fr=$(((MTU + 82 + 1023) / 1024 * 1024)) pg=$(getconf PAGESIZE)
		bl=$fr
		while [ $((bl % pg)) != 0 ]; do bl=$((bl + fr)); done
		vdev="$vdev,framesz=$fr,blocksz=$bl"
		jumbo=(--mbuf-size=$((fr + 128)))
	fi
	timeout -s INT $((SECS + 40)) dpdk-testpmd --lcores="$lcores" --no-huge -m 1024 --no-shconf \
		--no-pci --no-telemetry --proc-type=primary --file-prefix="$PFX-$NRUN" \
		--vdev="$vdev" -- --forward-mode=rxonly "${jumbo[@]}" \
		--total-num-mbufs=8192 --auto-start --stats-period=1 >"$OUT/logs/$name-testpmd.log" 2>&1 &
	tp=$!
	PIDS+=("$tp")
	GROUPS_+=("$tp")
	for _ in $(seq 150); do
		grep -q "Port statistics" "$OUT/logs/$name-testpmd.log" 2>/dev/null && break
		kill -0 "$tp" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q "Port statistics" "$OUT/logs/$name-testpmd.log"; then
		fail "$name: testpmd did not start: $(tail -n 2 "$OUT/logs/$name-testpmd.log" | tr '\n' ' ')"
		stop "$tp"
		ip -n "$NS" neigh del "$HOST_IP" dev "$NS_IF" 2>/dev/null
		return 1
	fi
	bounded $((SECS + 30)) ip netns exec "$NS" "${pin[@]}" "$BLAST" \
		--dst "$HOST_IP:7400" --size "$bytes" --seconds "$SECS" >"$OUT/logs/$name-blast.out" 2>&1
	# what is in the af_packet ring when the sender stops still counts
	sleep 1.5
	kill -INT "$tp" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$tp" 2>/dev/null || break; sleep 0.1; done
	stop "$tp"
	ip -n "$NS" neigh del "$HOST_IP" dev "$NS_IF" 2>/dev/null
	rx=$(grep -A3 "Accumulated forward statistics" "$OUT/logs/$name-testpmd.log" |
		sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' | head -n 1)
	sent=$(kv sent <"$OUT/logs/$name-blast.out")
	secs=$(kv secs <"$OUT/logs/$name-blast.out")
	if [ -z "$rx" ] || [ -z "$secs" ] || [ -z "$sent" ]; then
		fail "$name: no count from testpmd or the sender (logs/$name-*)"
		printf '%s\t%s\t0\t%s\t%s\t%s\t%s\t%s\n' "$size" "$rep" "$bytes" "${sent:--}" \
			"${rx:--}" "${secs:--}" "$MTU" >>"$RAW_TSV"
		return 1
	fi
	log "$name: ${bytes} B datagrams: sent=$sent received=$rx in ${secs}s" \
		"($(awk -v r="$rx" -v s="$secs" 'BEGIN {printf "%.0f", r / s}') pps)"
	printf '%s\t%s\t1\t%s\t%s\t%s\t%s\t%s\n' "$size" "$rep" "$bytes" "$sent" "$rx" "$secs" \
		"$MTU" >>"$RAW_TSV"
}

# ---- the runs -------------------------------------------------------------------------------
for size in $SIZES; do
	for rep in $(seq "$REPS"); do
		for mtu in $MTUS; do
			set_mtu "$mtu" || continue
			log "size $size, rep $rep/$REPS$([ "$MTU_OPT" = 1500 ] || echo ", MTU $mtu")" \
				"(load $(load))"
			dg=
			firn_run dpdk "$size" "$rep" closed && dg=$LAST_DGRAM_B
			firn_run socket "$size" "$rep" closed && [ -z "$dg" ] && dg=$LAST_DGRAM_B
			if [ -z "$dg" ]; then
				# no firn run to copy: a full datagram (100 B) or one record's worth
				dg=$([ "$size" -lt 1000 ] && echo $((mtu - 28)) || echo $((size + 64)))
				log "raw-$size-$rep$(sfx): no datagram size from firn; using $dg B"
			fi
			raw_run "$size" "$rep" "$dg"
		done
	done
done
closed_median() { # PATH MTU: median closed-loop rec/s of 100 B records, or nothing
	awk -F'\t' -v p="$1" -v m="$2" \
		'$1 == "closed" && $2 == p && $3 == 100 && $8 != "" && $NF == m {print $8}' \
		"$FIRN_TSV" | sort -g | awk '{v[NR] = $1} END {if (NR) printf "%d\n", v[int((NR + 1) / 2)]}'
}
declare -A HALF=() # PATH-MTU: the half-rate runs' offered records/s
for path in dpdk socket; do
	for mtu in $MTUS; do
		max=$(closed_median "$path" "$mtu")
		if [ -z "$max" ]; then
			fail "half-$path$([ "$mtu" = 1500 ] || echo "-mtu$mtu"):" \
				"no closed-loop 100 B result to take half of"
			continue
		fi
		HALF[$path-$mtu]=$((max / 2))
	done
	for rep in $(seq "$REPS"); do
		for mtu in $MTUS; do
			[ -n "${HALF[$path-$mtu]:-}" ] || continue
			set_mtu "$mtu" || continue
			log "half rate, $path$([ "$MTU_OPT" = 1500 ] || echo ", MTU $mtu"):" \
				"${HALF[$path-$mtu]} records/s, rep $rep/$REPS (load $(load))"
			firn_run "$path" 100 "$rep" half "${HALF[$path-$mtu]}"
		done
	done
done

# ---- the report -----------------------------------------------------------------------------
LOAD1=$(load)
python3 - "$FIRN_TSV" "$RAW_TSV" "$OUT/results.json" "$MHZ" "$P99_TARGET_US" "$REPS" \
	"$DATE" "$LOAD0" "$LOAD1" "$CMDLINE" "$(($(date +%s) - T0))" "$SECS" "$SESSIONS" \
	"$SHARDS" "$TCK" "$MTU_OPT" <<'PY' | tee "$OUT/results.txt"
import csv, json, platform, statistics, sys

(firn_tsv, raw_tsv, out_json, mhz, p99_target, reps, date, load0, load1, cmd, elapsed, secs,
 sessions, shards, tck, mtu_opt) = sys.argv[1:]
mhz, p99_target, tck = float(mhz), float(p99_target), float(tck)
# --mtu 1500 (the default) prints what this script always printed; otherwise
# every line says its MTU
show_mtu = mtu_opt != "1500"
mtus = [1500, 9000] if mtu_opt == "both" else [int(mtu_opt)]

def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(v, nd=0):
    if v is None:
        return "-"
    return ("%." + str(nd) + "f") % v

# a run that did not get every offered record acked is in the TSV, not in the medians
firn = [r for r in rows(firn_tsv) if r["ok"] == "1" and num(r["rec_per_s"]) is not None]
raw = [r for r in rows(raw_tsv) if r["ok"] == "1"]
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), "?")
print("# firn UDP ingest benchmark (tools/bench/udp.sh), %s" % date)
print("# %s; %s; %s MHz nominal; load average %s at start, %s at end; %s s"
      % (platform.node(), model, fmt(mhz), load0, load1, elapsed))
print("# %s rep(s) of %s s per case, medians; firn-bench closed loop, %s sessions x window "
      "1024, %s shards, durable acks, compression + encryption on (defaults)"
      % (reps, secs, sessions, shards))
print("# raw_pps/firn_pps: datagrams/s (testpmd rx-only / firnd); ratio = firn MBps of record "
      "data / raw MBps of datagram payload; pps_ratio = firn_pps / raw_pps")
print("# rx_cycles_per_rec is TIME-BASED: firn-rx thread CPU time x %s MHz / records "
      "(no HW counters); firnd_cycles_per_rec: the same for all of firnd's threads"
      % fmt(mhz))
if show_mtu:
    print("# veth MTU %s (datagrams of at most %s B); each repetition runs every MTU back "
          "to back" % (" and ".join(map(str, mtus)), " / ".join(str(m - 28) for m in mtus)))

result = {"date": date, "command": cmd, "host": platform.node(), "cpu_model": model,
          "cpu_mhz": mhz, "loadavg_start": load0, "loadavg_end": load1, "reps": int(reps),
          "secs": float(secs), "sessions": int(sessions), "shards": int(shards), "mtus": mtus,
          "cases": [], "half_rate": [], "targets": [], "runs": {"firn": rows(firn_tsv),
          "raw": rows(raw_tsv)}}

def per_run(r):
    recs, s, dg = num(r["records"]), num(r["secs"]), num(r["dgrams"])
    rx = num(r["rx_ns"])
    return {
        "rec_per_s": num(r["rec_per_s"]), "MBps": num(r["MBps"]),
        "p50_us": num(r["p50_us"]), "p99_us": num(r["p99_us"]), "p999_us": num(r["p999_us"]),
        "firn_pps": dg / s if dg and s else None,
        "dgram_B": num(r["rx_bytes"]) / dg if dg else None,
        "rx_cycles_per_rec": rx * mhz / 1e3 / recs if rx and recs and mhz else None,
        "rx_busy": rx / 1e9 / s if rx and s else None,
        "firnd_cycles_per_rec": num(r["firnd_ticks"]) / tck * mhz * 1e6 / recs
        if recs and mhz and num(r["firnd_ticks"]) else None,
    }

def mtu_of(r):
    return int(r["mtu"])

def mtu_kv(mtu):
    return " mtu=%d" % mtu if show_mtu else ""

sizes = sorted({int(r["size"]) for r in rows(firn_tsv)} | {int(r["size"]) for r in raw})
closed_best = {}
for mtu, size in [(m, s) for m in mtus for s in sizes]:
    rr = [r for r in raw if int(r["size"]) == size and mtu_of(r) == mtu]
    raw_pps = med([num(r["received"]) / num(r["secs"]) for r in rr])
    raw_dgram = med([num(r["dgram_B"]) for r in rr])
    raw_mbps = med([num(r["received"]) * num(r["dgram_B"]) / num(r["secs"]) / 1e6 for r in rr])
    for path in ("dpdk", "socket"):
        runs = [per_run(r) for r in firn if r["kind"] == "closed" and r["path"] == path
                and int(r["size"]) == size and mtu_of(r) == mtu]
        if not runs:
            print("path=%s size=%d%s no result (see the FAILED lines on stderr)"
                  % (path, size, mtu_kv(mtu)))
            continue
        m = {k: med([x[k] for x in runs]) for k in runs[0]}
        ratio = m["MBps"] / raw_mbps if m["MBps"] and raw_mbps else None
        pps_ratio = m["firn_pps"] / raw_pps if m["firn_pps"] and raw_pps else None
        print("path=%s size=%d%s dgram_B=%s raw_pps=%s raw_MBps=%s firn_pps=%s pps_ratio=%s "
              "ratio=%s rec_per_s=%s MBps=%s p50_us=%s p99_us=%s p999_us=%s "
              "rx_cycles_per_rec=%s rx_busy=%s firnd_cycles_per_rec=%s reps=%d"
              % (path, size, mtu_kv(mtu), fmt(m["dgram_B"]), fmt(raw_pps), fmt(raw_mbps, 1),
                 fmt(m["firn_pps"]), fmt(pps_ratio, 3), fmt(ratio, 3), fmt(m["rec_per_s"]),
                 fmt(m["MBps"], 2), fmt(m["p50_us"]), fmt(m["p99_us"]), fmt(m["p999_us"]),
                 fmt(m["rx_cycles_per_rec"]), fmt(m["rx_busy"], 2),
                 fmt(m["firnd_cycles_per_rec"]), len(runs)))
        case = dict(m, path=path, size=size, mtu=mtu, raw_pps=raw_pps, raw_MBps=raw_mbps,
                    raw_dgram_B=raw_dgram, raw_reps=len(rr), ratio=ratio, pps_ratio=pps_ratio,
                    reps=len(runs))
        result["cases"].append(case)
        if size == 100:
            closed_best[(mtu, path)] = m["rec_per_s"]
half = {}
for mtu, path in [(m, p) for m in mtus for p in ("dpdk", "socket")]:
    runs = [r for r in firn if r["kind"] == "half" and r["path"] == path and mtu_of(r) == mtu]
    if not runs:
        continue
    p = [per_run(r) for r in runs]
    m = {k: med([x[k] for x in p]) for k in ("rec_per_s", "p50_us", "p99_us", "p999_us")}
    rate = num(runs[0]["rate"])
    print("path=%s size=100%s half_rate=%s rec_per_s=%s p50_us=%s p99_us=%s p999_us=%s reps=%d"
          % (path, mtu_kv(mtu), fmt(rate), fmt(m["rec_per_s"]), fmt(m["p50_us"]),
             fmt(m["p99_us"]), fmt(m["p999_us"]), len(runs)))
    half[(mtu, path)] = m
    result["half_rate"].append(dict(m, path=path, size=100, mtu=mtu, rate=rate,
                                    reps=len(runs)))

def target(name, mtu, path, value, ok, shown):
    result["targets"].append({"target": name, "mtu": mtu, "path": path, "value": value,
                              "met": ok})
    return "%s=%s %s" % (path, shown, "met" if ok else "NOT met")

def target_line(title, parts, mtu):
    print("target%s %s: %s" % (mtu_kv(mtu), title, "; ".join(parts)))

for mtu in mtus:
    target_line("goodput >= 0.8 x raw",
                [target("goodput_ratio>=0.8", mtu, "%s/%d" % (c["path"], c["size"]),
                        c["ratio"], c["ratio"] is not None and c["ratio"] >= 0.8,
                        fmt(c["ratio"], 3))
                 for c in result["cases"] if c["mtu"] == mtu], mtu)
for mtu in mtus:
    target_line(">= 2M durable 100 B rec/s",
                [target("durable_100B_rec_per_s>=2M", mtu, p, v, v is not None and v >= 2e6,
                        fmt(v))
                 for (m, p), v in closed_best.items() if m == mtu], mtu)
for mtu in mtus:
    target_line("p99 <= %d us at half of max rate" % p99_target,
                [target("p99_at_half_rate<=%dus" % p99_target, mtu, p, h["p99_us"],
                        h["p99_us"] is not None and h["p99_us"] <= p99_target,
                        fmt(h["p99_us"]) + "us")
                 for (m, p), h in half.items() if m == mtu], mtu)
with open(out_json, "w") as f:
    json.dump(result, f, indent=1)
PY
[ "${PIPESTATUS[0]}" = 0 ] || fail "the report could not be made"
if [ ${#FAILED[@]} -gt 0 ]; then
	log "${#FAILED[@]} problem(s):"
	for f in "${FAILED[@]}"; do log "  $f"; done
	exit 1
fi
log "done in $(($(date +%s) - T0)) s; load average $(load)"
exit 0
