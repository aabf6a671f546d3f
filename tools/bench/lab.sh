#!/usr/bin/env bash
# tools/bench/lab.sh - the performance lab: firn, its peers and the raw
# references, measured in one run on one machine, side by side.
#
#   tools/bench/lab.sh [--quick] [--firn-only] [--no-dpdk] [--no-install]
#                      [--no-plots] [--no-build] [--out DIR] [--build DIR]
#
# What it measures (brief section 7; issue 5), all with 100 B records:
#   raw      lab_kernels (ISA-L deflate / CRC32C / EC 3+2, OpenSSL AES-256-GCM,
#            one core), fio (O_DIRECT io_uring sequential write, 128 KiB, qd 8),
#            dpdk-testpmd rx-only on the lab veth (net_af_packet) with
#            net_udp_blast sending 1472 B datagrams from the namespace
#   firn     firnd on the kernel socket path (loopback), on the DPDK path
#            (net_af_packet on a veth whose peer is in a netns, firn-bench in
#            the netns), and the Kinesis HTTP API (PutRecords of 500); closed
#            loop for max throughput, open loop at a common rate for latency,
#            a ramp for the knee, and a perf profile for per-stage cycles
#   peers    Redis Streams (redis-benchmark XADD, 50 clients, -P 16, with
#            appendfsync always and everysec), NATS JetStream file store
#            (tools/bench/nats_pub: libnats async publish with acks),
#            kinesalite (npm; firn-bench --http, PutRecords 500 x 100 B)
#
# Everything runs on loopback or inside a network namespace it creates; every
# server it starts gets a temporary directory and is stopped on every exit
# path. The peers, fio, gnuplot, perf and DPDK's testpmd are installed from
# Debian (kinesalite from npm, cached in $FIRN_BENCH_CACHE) when missing,
# unless --no-install. A part that cannot run here (not root, no netns, a
# package that will not install) is skipped and says why in the table and
# the JSON.
#
# Output (DIR, default $FIRN_BENCH_DIR/firn-lab-DATE): table.txt (also
# printed), lab.json (every number, the machine, the date, the command, the
# load average before and after), runs/ (each run's JSON and latency
# histogram), logs/, plot/ (data and, unless --no-plots, PNGs drawn by
# tools/bench/plot.sh).
#
#   --quick       one repetition, short runs: under 5 minutes
#   (default)     three repetitions (medians reported), longer runs, ramps on
#                 all three firn paths: under 30 minutes
#   --firn-only   no peers (the CI smoke test: tests/integration/bench)
#   --no-dpdk     skip the DPDK path and testpmd (no netns needed)
#   --build DIR   the meson build directory (default $BUILD or build-bench;
#                 configured and built here unless --no-build)
#
# Env: FIRN_BENCH_DIR (scratch, default /var/tmp; not tmpfs: O_DIRECT),
#      FIRN_BENCH_CACHE (npm cache, default /var/tmp/firn-bench-cache),
#      LAB_FIXED_RATE (the common open-loop rate, default 5000 records/s),
#      LAB_SHARDS (default 4), LAB_P99_BOUND_US (the knee's p99 bound, default
#      50000: on a shared 2-vCPU VM with a virtio disk, 10 ms is below the
#      floor that group commit + RWF_DSYNC give at any load).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tools/bench"
# median, kv, free_port
. "$HERE/bench_lib.sh"
QUICK=0 FIRN_ONLY=0 NO_DPDK=0 INSTALL=1 PLOTS=1 BUILD_IT=1 OUT= BUILD=${BUILD:-$ROOT/build-bench}
CMDLINE="tools/bench/lab.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--firn-only) FIRN_ONLY=1 ;;
	--no-dpdk) NO_DPDK=1 ;;
	--no-install) INSTALL=0 ;;
	--no-plots) PLOTS=0 ;;
	--no-build) BUILD_IT=0 ;;
	--out) OUT=$2; shift ;;
	--build) BUILD=$2; shift ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
	*) echo "lab.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

BASE=${FIRN_BENCH_DIR:-/var/tmp}
CACHE=${FIRN_BENCH_CACHE:-/var/tmp/firn-bench-cache}
SHARDS=${LAB_SHARDS:-4}
FIXED_RATE=${LAB_FIXED_RATE:-5000}
P99_BOUND=${LAB_P99_BOUND_US:-50000}
SIZE=100
if [ "$QUICK" = 1 ]; then
	REPS=1 SECS=3 RAMP_STEPS=5 STEP_SECS=2 FIX_SECS=3 REDIS_N=300000 NATS_N=200000
	KIN_N=20000 FIO_SECS=3 KSECS=0.3 BLAST_SECS=2 PERF_N=600000 RAMP_ALL=0
else
	REPS=3 SECS=5 RAMP_STEPS=10 STEP_SECS=4 FIX_SECS=5 REDIS_N=1000000 NATS_N=500000
	KIN_N=60000 FIO_SECS=5 KSECS=1 BLAST_SECS=3 PERF_N=2000000 RAMP_ALL=1
fi
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-$BASE/firn-lab-$STAMP}
mkdir -p "$OUT/runs" "$OUT/logs" "$OUT/plot" || exit 1
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$BASE/firn-lab-work-XXXXXX") || exit 1
T0=$(date +%s)

log() { echo "lab: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- cleanup: every server we start is in PIDS; the lab net in LAB_NS -------------------
PIDS=()
LAB_NS= LAB_HOST_IF= LAB_NS_IF=
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	sleep 0.3
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ -n "$LAB_NS" ] && "$ROOT/tools/lab-net.sh" down "$LAB_NS" "$LAB_HOST_IF" "$LAB_NS_IF" \
		>/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# stop PID: SIGTERM, wait up to 30 s, then SIGKILL; drop it from PIDS
stop() {
	local p=$1 i
	kill -TERM "$p" 2>/dev/null
	for i in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	local keep=() q
	for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
	PIDS=("${keep[@]}")
}


# cpu_ticks PID: user + system clock ticks of a process (all its threads)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
TCK=$(getconf CLK_TCK)
jget() { # FILE dotted.key
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d = d[k]
print(d)' "$1" "$2" 2>/dev/null
}
ref() { printf '%s\t%s\n' "$1" "$2" >>"$OUT/refs.tsv"; }

# record NAME SYSTEM KIND REP CPU_TICKS_DELTA NOTE: add a run to runs.tsv
record() {
	local name=$1 system=$2 kind=$3 rep=$4 dt=$5 note=${6:-} js="runs/$1.json" h="runs/$1.hist"
	local recs cpu=-
	[ -f "$OUT/$js" ] || js=-
	[ -f "$OUT/$h" ] || h=-
	if [ "$js" != - ] && [ -n "$dt" ]; then
		recs=$(jget "$OUT/$js" results.records)
		[ -n "$recs" ] && [ "$recs" != 0 ] &&
			cpu=$(awk -v t="$dt" -v k="$TCK" -v n="$recs" 'BEGIN {printf "%.3f", t / k * 1e6 / n}')
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$system" "$kind" "$rep" "$js" "$h" \
		"$cpu" "$note" >>"$OUT/runs.tsv"
}
skip_system() { # SYSTEM REASON
	log "$1 skipped: $2"
	record "$1-skipped" "$1" skipped 0 "" "$2"
}

# measure NAME SYSTEM KIND REP SERVER_PID CMD...: run a client that writes
# --json/--hist into runs/, count the server's CPU around it
measure() {
	local name=$1 system=$2 kind=$3 rep=$4 pid=$5 c0 c1 rc
	shift 5
	c0=$(cpu_ticks "$pid")
	"$@" --json "$OUT/runs/$name.json" --hist "$OUT/runs/$name.hist" \
		>"$OUT/logs/$name.out" 2>"$OUT/logs/$name.err"
	rc=$?
	c1=$(cpu_ticks "$pid")
	log "$name: $(tail -n 1 "$OUT/logs/$name.out")"
	[ $rc = 0 ] || log "$name: exit $rc: $(grep -v '^firn-bench: [0-9]* s:' "$OUT/logs/$name.err" | tail -n 2)"
	record "$name" "$system" "$kind" "$rep" $((c1 - c0)) "$([ $rc = 0 ] || echo "exit $rc")"
	return $rc
}

# ---- packages ----------------------------------------------------------------------------
APT_UPDATED=0
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
ensure_pkgs() { # PKG...: 0 when all are installed afterwards
	local missing=() p
	for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
	[ ${#missing[@]} = 0 ] && return 0
	if [ "$INSTALL" = 0 ] || [ "$(id -u)" != 0 ]; then
		log "missing ${missing[*]} (not installing: $([ "$INSTALL" = 0 ] && echo --no-install || echo not root))"
		return 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if [ "$APT_UPDATED" = 0 ]; then
		apt-get update -q >"$OUT/logs/apt-update.log" 2>&1
		APT_UPDATED=1
	fi
	apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$OUT/logs/apt.log" 2>&1 ||
		{ log "apt-get install ${missing[*]} failed (logs/apt.log)"; return 1; }
	# Debian's postinst starts redis-server/nats where it can; the lab runs its own.
	return 0
}

ensure_pkgs fio python3 || true
[ "$PLOTS" = 1 ] && { ensure_pkgs gnuplot-nox || PLOTS=0; }
command -v perf >/dev/null || ensure_pkgs linux-perf || true
if [ "$FIRN_ONLY" = 0 ]; then
	ensure_pkgs redis-server redis-tools || true
	ensure_pkgs nats-server libnats-dev || true
	command -v node >/dev/null && command -v npm >/dev/null || ensure_pkgs nodejs npm || true
fi
[ "$NO_DPDK" = 0 ] && { command -v dpdk-testpmd >/dev/null || ensure_pkgs dpdk-dev || true; }

# ---- build ----------------------------------------------------------------------------------
TARGETS="app/firnd/firnd app/firn/firn app/firn-bench/firn-bench tools/bench/lab_kernels"
TARGETS="$TARGETS tests/integration/net/net_udp_blast"
if [ "$BUILD_IT" = 1 ]; then
	if [ ! -f "$BUILD/build.ninja" ]; then
		log "configuring $BUILD"
		meson setup "$BUILD" "$ROOT" >"$OUT/logs/meson.log" 2>&1 ||
			die "meson setup failed: $OUT/logs/meson.log"
	fi
	# libnats-dev may have arrived after the build dir was configured.
	if have_pkg libnats-dev && ! grep -q "nats_pub" "$BUILD/build.ninja"; then
		meson setup --reconfigure "$BUILD" "$ROOT" >>"$OUT/logs/meson.log" 2>&1 || true
	fi
	grep -q "tools/bench/nats_pub:" "$BUILD/build.ninja" && TARGETS="$TARGETS tools/bench/nats_pub"
	log "building in $BUILD"
	ninja -C "$BUILD" -j2 $TARGETS >"$OUT/logs/ninja.log" 2>&1 ||
		die "build failed: $OUT/logs/ninja.log"
fi
for t in $TARGETS; do [ -x "$BUILD/$t" ] || die "$BUILD/$t is not built"; done
FIRND=$BUILD/app/firnd/firnd
FIRN=$BUILD/app/firn/firn
BENCH=$BUILD/app/firn-bench/firn-bench
KERNELS=$BUILD/tools/bench/lab_kernels
BLAST=$BUILD/tests/integration/net/net_udp_blast
NATS_PUB=$BUILD/tools/bench/nats_pub

# ---- the machine --------------------------------------------------------------------------
MHZ=$(awk -F: '/^cpu MHz/ {gsub(/ /, "", $2); print $2; exit}' /proc/cpuinfo)
ref machine_cpu_model "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
ref machine_cpus "$(nproc)"
ref machine_cpu_mhz "${MHZ:-0}"
ref machine_mem_gib "$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)"
ref machine_kernel "$(uname -r)"
ref machine_hostname "$(hostname)"
ref machine_fs "$(df -T "$BASE" | awk 'NR == 2 {print $2 " on " $1}')"
ref machine_loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
ref date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ref command "$CMDLINE"
ref mode "$([ "$QUICK" = 1 ] && echo quick || echo full)"
ref reps "$REPS"
ref fixed_rate "$FIXED_RATE"
ref p99_bound_us "$P99_BOUND"
ref record_size "$SIZE"
ref shards "$SHARDS"
ref firn_commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "output in $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- raw references: CPU kernels and disk -----------------------------------------------
log "raw: ISA-L / OpenSSL kernels"
KL=$(for r in $(seq "$REPS"); do "$KERNELS" --secs "$KSECS"; done)
echo "$KL" >"$OUT/logs/kernels.out"
for k in deflate_log_MBps deflate_rand_MBps crc32c_MBps ec_3p2_MBps aes256gcm_MBps; do
	ref "$k" "$(echo "$KL" | while read -r l; do echo "$l" | kv "$k"; done | median)"
done

log "raw: fio O_DIRECT io_uring sequential write"
fio_once() {
	fio --name=seq --filename="$WORK/fio.dat" --size=1G --bs=128k --rw=write --overwrite=1 \
		--ioengine=io_uring --direct=1 --iodepth=8 --runtime="$FIO_SECS" --time_based \
		--output-format=terse --terse-version=3 2>>"$OUT/logs/fio.err" |
		awk -F';' '{printf "%.1f\n", $48 * 1024 / 1e6}'
}
if command -v fio >/dev/null; then
	FIO=$(for r in $(seq "$REPS"); do fio_once; done)
	rm -f "$WORK/fio.dat"
	echo "$FIO" >"$OUT/logs/fio.out"
	ref fio_MBps "$(echo "$FIO" | median)"
else
	ref fio_MBps_skipped "fio not installed"
fi

# ---- firnd ------------------------------------------------------------------------------
FIRND_PID= API= UDP=
# start_firnd NAME ARGS...: fresh data dir, wait for the pidfile, make the stream
start_firnd() {
	local name=$1 i
	shift
	API=$(free_port)
	rm -rf "$WORK/firnd-$name"
	"$FIRND" --data-dir "$WORK/firnd-$name" --api "127.0.0.1:$API" --pidfile "$WORK/$name.pid" \
		--log-level info "$@" >"$OUT/logs/firnd-$name.log" 2>&1 &
	FIRND_PID=$!
	PIDS+=("$FIRND_PID")
	for i in $(seq 300); do
		[ -s "$WORK/$name.pid" ] && break
		kill -0 "$FIRND_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$WORK/$name.pid" ]; then
		log "firnd ($name) did not start: $(tail -n 2 "$OUT/logs/firnd-$name.log")"
		FIRND_PID=
		return 1
	fi
	"$FIRN" --endpoint "http://127.0.0.1:$API" stream create bench --shards "$SHARDS" \
		>>"$OUT/logs/firnd-$name.log" 2>&1 || { log "firnd ($name): cannot create the stream"; return 1; }
}
stop_firnd() {
	[ -n "$FIRND_PID" ] && stop "$FIRND_PID"
	FIRND_PID=
}

# firn_path SYSTEM TARGET [WRAP...]: closed, fixed, ramp (and perf) runs for one path.
# TARGET is "--udp HOST:PORT" or "--http URL".
firn_path() {
	local system=$1 target=$2 r max ramp_to
	shift 2
	local wrap=("$@") common
	if [[ $target == --http* ]]; then
		common="--stream bench --size $SIZE --sessions 4 --batch 500"
	else
		common="--stream bench --size $SIZE --sessions 4"
	fi
	for r in $(seq "$REPS"); do
		measure "$system.closed.$r" "$system" closed "$r" "$FIRND_PID" "${wrap[@]}" "$BENCH" \
			$target $common --records 100000000 --duration "$SECS" --warmup 1 --drain 30
	done
	for r in $(seq "$REPS"); do
		measure "$system.fixed.$r" "$system" fixed "$r" "$FIRND_PID" "${wrap[@]}" "$BENCH" \
			$target $common --rate "$FIXED_RATE" --duration "$FIX_SECS" --warmup 1 \
			--records 100000000 --drain 30
	done
	if [ "$system" = firn-socket ] || [ "$RAMP_ALL" = 1 ]; then
		# Ramp from 10% to 120% of the closed-loop median: the knee is in there.
		max=$(for r in $(seq "$REPS"); do jget "$OUT/runs/$system.closed.$r.json" results.rec_per_s; done | median)
		if [ -n "$max" ]; then
			ramp_to=$(awk -v m="$max" 'BEGIN {printf "%d", m * 1.2}')
			measure "$system.ramp" "$system" ramp 1 "$FIRND_PID" "${wrap[@]}" "$BENCH" $target $common \
				--ramp "$((ramp_to / 12 + 1)):$ramp_to:$RAMP_STEPS" --duration "$STEP_SECS" \
				--warmup 0.5 --drain 20 --p99-bound "$P99_BOUND"
		fi
	fi
}

# The per-stage profile: perf samples firnd's threads during a closed-loop run.
stage_profile() {
	if ! command -v perf >/dev/null || ! perf stat -e cpu-clock true >/dev/null 2>&1; then
		ref stages_skipped "perf not available"
		log "stages skipped: perf not available"
		return
	fi
	log "firn-socket: perf profile of firnd over $PERF_N records"
	perf record -e cpu-clock -F 1999 -p "$FIRND_PID" -o "$WORK/perf.data" \
		>"$OUT/logs/perf-record.log" 2>&1 &
	local pp=$!
	sleep 0.5
	"$BENCH" --udp "127.0.0.1:$UDP" --stream bench --size "$SIZE" --sessions 4 \
		--records "$PERF_N" --json "$OUT/runs/perf-run.json" >"$OUT/logs/perf-run.out" 2>&1
	kill -INT "$pp" 2>/dev/null
	wait "$pp" 2>/dev/null
	perf report -i "$WORK/perf.data" --stdio --sort comm,dso,sym -F overhead,sample,comm,dso,sym \
		>"$OUT/logs/perf-report.txt" 2>/dev/null
	python3 "$HERE/lab_report.py" stages "$OUT/logs/perf-report.txt" \
		"$(jget "$OUT/runs/perf-run.json" results.records)" 1999 "${MHZ:-1000}" \
		"$OUT/stages.json" || log "stages: cannot attribute the profile"
}

log "firn: socket path on loopback"
UDP=$(free_port)
if start_firnd socket --listen "127.0.0.1:$UDP"; then
	firn_path firn-socket "--udp 127.0.0.1:$UDP"
	stage_profile
	log "firn: HTTP API (PutRecords 500)"
	firn_path firn-http "--http http://127.0.0.1:$API"
	stop_firnd
else
	skip_system firn-socket "firnd did not start"
	skip_system firn-http "firnd did not start"
fi

# ---- the DPDK path and the raw packet path on the same veth ------------------------------
# dpdk_part: 0, or 1 with the reason in DPDK_WHY (run in this shell, not a
# subshell: the servers and the lab net it makes must reach the EXIT trap)
DPDK_WHY=
dpdk_part() {
	local env eal mac i
	[ "$(id -u)" = 0 ] || { DPDK_WHY="needs root (netns, veth, af_packet)"; return 1; }
	LAB_NS=firnlab$$ LAB_HOST_IF=fl$$a LAB_NS_IF=fl$$b
	env=$(LAB_MTU=1500 "$ROOT/tools/lab-net.sh" up "$LAB_NS" "$LAB_HOST_IF" "$LAB_NS_IF" \
		2>"$OUT/logs/lab-net.log") ||
		{ LAB_NS=; DPDK_WHY="no netns/veth here: $(tail -n 1 "$OUT/logs/lab-net.log")"; return 1; }
	eval "$env"
	DPDK_IP=${LAB_DPDK_IP%/*}
	eal="--no-huge -m 1024 --no-shconf --no-pci --no-telemetry --file-prefix=firnlab$$"
	eal="$eal --vdev=net_af_packet0,iface=$LAB_HOST_IF"
	log "firn: DPDK path (net_af_packet on $LAB_HOST_IF, firn-bench in netns $LAB_NS)"
	if start_firnd dpdk --net dpdk --listen 0.0.0.0:7400 --ip "$LAB_DPDK_IP" --eal "$eal" &&
		grep -q "(dpdk)" "$OUT/logs/firnd-dpdk.log"; then
		firn_path firn-dpdk "--udp $DPDK_IP:7400" ip netns exec "$LAB_NS"
		stop_firnd
	else
		stop_firnd
		skip_system firn-dpdk "firnd could not bring up the af_packet port: $(grep -iE 'EAL|port|dpdk' "$OUT/logs/firnd-dpdk.log" | tail -n 1)"
	fi
	if ! command -v dpdk-testpmd >/dev/null; then
		ref testpmd_MBps_skipped "dpdk-testpmd not installed (Debian dpdk-dev)"
		return 0
	fi
	log "raw: dpdk-testpmd rx-only on $LAB_HOST_IF, net_udp_blast 1472 B from the netns"
	# testpmd answers no ARP: a static entry for its address in the namespace.
	mac=$(cat "/sys/class/net/$LAB_HOST_IF/address")
	ip -n "$LAB_NS" neigh replace "$DPDK_IP" lladdr "$mac" dev "$LAB_NS_IF" nud permanent
	local vals=() sent rx secs
	for i in $(seq "$REPS"); do
		timeout -s INT $((BLAST_SECS + 20)) dpdk-testpmd --lcores=0@0,1@0 $eal -- \
			--forward-mode=rxonly --total-num-mbufs=8192 --auto-start --stats-period=1 \
			>"$OUT/logs/testpmd-$i.log" 2>&1 &
		local tp=$!
		PIDS+=("$tp")
		for _ in $(seq 100); do grep -q "Port statistics" "$OUT/logs/testpmd-$i.log" 2>/dev/null && break; sleep 0.1; done
		timeout 60 ip netns exec "$LAB_NS" "$BLAST" --dst "$DPDK_IP:7400" --size 1472 \
			--seconds "$BLAST_SECS" >"$OUT/logs/blast-$i.out" 2>&1
		sleep 1.5
		kill -INT "$tp" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$tp" 2>/dev/null || break; sleep 0.1; done
		stop "$tp"
		rx=$(grep -A3 "Accumulated forward statistics" "$OUT/logs/testpmd-$i.log" |
			sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' | head -n 1)
		secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$OUT/logs/blast-$i.out")
		sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$OUT/logs/blast-$i.out")
		log "testpmd $i: sent=$sent received=$rx in ${secs}s"
		[ -n "$rx" ] && [ -n "$secs" ] && vals+=("$(awk -v r="$rx" -v s="$secs" 'BEGIN {printf "%.0f", r / s}')")
	done
	if [ ${#vals[@]} -gt 0 ]; then
		local pps
		pps=$(printf '%s\n' "${vals[@]}" | median)
		ref testpmd_pps "$pps"
		ref testpmd_MBps "$(awk -v p="$pps" 'BEGIN {printf "%.1f", p * 1472 / 1e6}')"
	else
		ref testpmd_MBps_skipped "testpmd measured nothing (logs/testpmd-*.log)"
	fi
	return 0
}
if [ "$NO_DPDK" = 1 ]; then
	skip_system firn-dpdk "--no-dpdk"
	ref testpmd_MBps_skipped "--no-dpdk"
else
	dpdk_part || { skip_system firn-dpdk "$DPDK_WHY"; ref testpmd_MBps_skipped "$DPDK_WHY"; }
	[ -n "$LAB_NS" ] && "$ROOT/tools/lab-net.sh" down "$LAB_NS" "$LAB_HOST_IF" "$LAB_NS_IF" >/dev/null 2>&1
	LAB_NS=
fi

# ---- peers ------------------------------------------------------------------------------------
redis_part() {
	local mode p pid r dir c0 c1 val
	val=$(head -c "$SIZE" /dev/zero | tr '\0' x)
	for mode in always everysec; do
		for r in $(seq "$REPS"); do
			dir="$WORK/redis-$mode-$r"
			mkdir -p "$dir"
			p=$(free_port)
			redis-server --port "$p" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
				--appendfsync "$mode" --save '' --daemonize no --logfile "$dir/redis.log" &
			pid=$!
			PIDS+=("$pid")
			for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
			c0=$(cpu_ticks "$pid")
			timeout 300 redis-benchmark -p "$p" -n "$REDIS_N" -c 50 -P 16 XADD s '*' f "$val" \
				>"$OUT/logs/redis-$mode.closed.$r.out" 2>&1
			c1=$(cpu_ticks "$pid")
			local n
			n=$(redis-cli -p "$p" XLEN s)
			stop "$pid"
			python3 "$HERE/lab_report.py" redis "$OUT/logs/redis-$mode.closed.$r.out" \
				"$OUT/runs/redis-$mode.closed.$r.json" "$OUT/runs/redis-$mode.closed.$r.hist" "$SIZE" ||
				{ skip_system "redis-$mode" "redis-benchmark failed"; continue; }
			log "redis-$mode.closed.$r: $(grep 'requests per second' "$OUT/logs/redis-$mode.closed.$r.out" | tail -n 1 | tr -s ' ') (XLEN $n)"
			record "redis-$mode.closed.$r" "redis-$mode" closed "$r" $((c1 - c0)) "XLEN $n"
			rm -rf "$dir"
		done
	done
}

nats_part() {
	local p pid r dir name kind rate
	dir="$WORK/nats"
	mkdir -p "$dir"
	p=$(free_port)
	nats-server -a 127.0.0.1 -p "$p" -js -sd "$dir" >"$OUT/logs/nats-server.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	for _ in $(seq 100); do grep -q "Server is ready" "$OUT/logs/nats-server.log" && break; sleep 0.1; done
	for kind in closed fixed; do
		for r in $(seq "$REPS"); do
			name="nats.$kind.$r"
			if [ $kind = closed ]; then
				measure "$name" nats closed "$r" "$pid" "$NATS_PUB" --url "nats://127.0.0.1:$p" \
					--stream bench --create --records "$NATS_N" --size "$SIZE" --clients 4 \
					--max-pending 1024 --warmup 0.5
			else
				measure "$name" nats fixed "$r" "$pid" "$NATS_PUB" --url "nats://127.0.0.1:$p" \
					--stream bench --create --records "$((FIXED_RATE * FIX_SECS))" --size "$SIZE" \
					--clients 4 --max-pending 1024 --rate "$FIXED_RATE" --warmup 1
			fi
		done
	done
	stop "$pid"
}

kinesalite_part() {
	local kdir="$CACHE/kinesalite" p pid r
	if [ ! -f "$kdir/node_modules/kinesalite/cli.js" ]; then
		log "installing kinesalite into $kdir (npm)"
		mkdir -p "$kdir"
		timeout 300 npm install --silent --no-audit --no-fund --prefix "$kdir" kinesalite \
			>"$OUT/logs/npm.log" 2>&1 || { skip_system kinesalite "npm install kinesalite failed"; return; }
	fi
	p=$(free_port)
	mkdir -p "$WORK/kinesalite"
	node "$kdir/node_modules/kinesalite/cli.js" --port "$p" --path "$WORK/kinesalite" \
		--createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 1000 \
		>"$OUT/logs/kinesalite.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	for _ in $(seq 100); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1', $p), 1)" 2>/dev/null && break
		sleep 0.1
	done
	# kinesalite answers CreateStream with an empty body, which the CLI calls an error.
	"$FIRN" --endpoint "http://127.0.0.1:$p" stream create bench --shards "$SHARDS" >/dev/null 2>&1
	sleep 0.5
	for r in $(seq "$REPS"); do
		measure "kinesalite.closed.$r" kinesalite closed "$r" "$pid" "$BENCH" --http "http://127.0.0.1:$p" \
			--stream bench --size "$SIZE" --sessions 4 --batch 500 --records "$KIN_N" --warmup 0.5
	done
	for r in $(seq "$REPS"); do
		measure "kinesalite.fixed.$r" kinesalite fixed "$r" "$pid" "$BENCH" --http "http://127.0.0.1:$p" \
			--stream bench --size "$SIZE" --sessions 4 --batch 500 --rate "$FIXED_RATE" \
			--duration "$FIX_SECS" --records 100000000 --warmup 1
	done
	stop "$pid"
}

if [ "$FIRN_ONLY" = 0 ]; then
	log "peer: Redis Streams"
	if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
		redis_part
	else
		skip_system redis-always "redis-server/redis-tools not installed"
		skip_system redis-everysec "redis-server/redis-tools not installed"
	fi
	log "peer: NATS JetStream"
	if command -v nats-server >/dev/null && [ -x "$NATS_PUB" ]; then
		nats_part
	else
		skip_system nats "nats-server or nats_pub (libnats-dev) missing"
	fi
	log "peer: kinesalite"
	if command -v node >/dev/null && command -v npm >/dev/null; then
		kinesalite_part
	else
		skip_system kinesalite "node/npm not installed"
	fi
fi

# ---- report ------------------------------------------------------------------------------
ref machine_loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
ref elapsed_s "$(($(date +%s) - T0))"
python3 "$HERE/lab_report.py" report "$OUT" || die "report failed"
if [ "$PLOTS" = 1 ] && command -v gnuplot >/dev/null; then
	"$HERE/plot.sh" "$OUT" >"$OUT/logs/plot.log" 2>&1 || log "plots failed: $OUT/logs/plot.log"
fi
log "done in $(($(date +%s) - T0)) s; load average $(cut -d' ' -f1-3 /proc/loadavg); $OUT/lab.json"
