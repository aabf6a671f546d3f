#!/usr/bin/env bash
# tools/bench/plot.sh - draw a lab run's PNGs with gnuplot (Debian gnuplot-nox).
#
#   tools/bench/plot.sh OUTDIR [PNGDIR]
#
# Reads OUTDIR/plot/*.dat (written by lab_report.py) and OUTDIR/lab.json,
# writes into PNGDIR (default OUTDIR/plot):
#   throughput.png   acked vs offered records/s (firn-bench --ramp), y = x dashed
#   knee.png         p99 (solid) and p50 (dotted) ack latency vs offered load,
#                    log y, the p99 bound as a line
#   latency.png      latency by percentile (HDR style: x = 1/(1-q), log-log),
#                    closed loop, every system
#   peers.png        max records/s, firn vs peers (closed loop), log y
# Every PNG carries the machine, the date and the command in its footer.
set -euo pipefail
OUT=${1:?usage: plot.sh OUTDIR [PNGDIR]}
PNG=${2:-$OUT/plot}
D=$OUT/plot
mkdir -p "$PNG"
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot is not installed (gnuplot-nox)" >&2; exit 1; }

# footer: machine, date, command, load average (from lab.json)
FOOT=$(python3 - "$OUT/lab.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
m, l = d.get("machine", {}), d.get("lab", {})
print(f"{int(m.get('cpus', 0))} x {m.get('cpu_model', '?')} | {l.get('date', '?')} | "
      f"{l.get('command', '?')} | load {m.get('loadavg_start', '?')} -> {m.get('loadavg_end', '?')}")
EOF
)
FOOT=${FOOT//\"/}
BOUND=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["lab"].get("p99_bound_us", 10000)))' "$OUT/lab.json")

label() { # system -> legend label
	case "$1" in
	firn-socket) echo "firn socket path" ;;
	firn-dpdk) echo "firn DPDK path" ;;
	firn-http) echo "firn HTTP API" ;;
	redis-always) echo "Redis XADD fsync always" ;;
	redis-everysec) echo "Redis XADD fsync everysec" ;;
	nats) echo "NATS JetStream file" ;;
	kinesalite) echo "kinesalite" ;;
	*) echo "$1" ;;
	esac
}
color() {
	case "$1" in
	firn-socket) echo "#1f5fa8" ;;
	firn-dpdk) echo "#2a9d3f" ;;
	firn-http) echo "#7b3fb0" ;;
	redis-always) echo "#c0392b" ;;
	redis-everysec) echo "#e67e22" ;;
	nats) echo "#16a085" ;;
	kinesalite) echo "#7f7f7f" ;;
	*) echo "#000000" ;;
	esac
}

common() { # title
	cat <<EOF
set terminal pngcairo size 1000,640 font "sans,11"
set title "$1" font "sans,13"
set label 99 "$FOOT" at screen 0.01, screen 0.015 font "sans,8" textcolor rgb "#555555"
set bmargin 5
set grid lc rgb "#dddddd"
set key top left box opaque
EOF
}

ramps=$(ls "$D"/ramp-*.dat 2>/dev/null || true)
if [ -n "$ramps" ]; then
	plot="" plot2="" maxx=0
	for f in $ramps; do
		s=$(basename "$f" .dat); s=${s#ramp-}
		c=$(color "$s"); l=$(label "$s")
		plot="$plot${plot:+, }'$f' using 1:2 with linespoints lw 2 pt 7 lc rgb '$c' title '$l'"
		plot2="$plot2${plot2:+, }'$f' using 1:(\$4/1000) with linespoints lw 2 pt 7 lc rgb '$c' title '$l p99'"
		plot2="$plot2, '$f' using 1:(\$3/1000) with linespoints lw 1 dt 3 pt 6 lc rgb '$c' title '$l p50'"
		m=$(awk '!/^#/ {if ($1 > m) m = $1} END {print m + 0}' "$f")
		maxx=$(awk -v a="$maxx" -v b="$m" 'BEGIN {print (b > a ? b : a)}')
	done
	gnuplot <<EOF
$(common "Throughput vs offered load (open loop, 100 B records, durable acks)")
set output "$PNG/throughput.png"
set xlabel "offered load (records/s)"
set ylabel "acked (records/s)"
set format x "%.0s%c"
set format y "%.0s%c"
set xrange [0:$maxx*1.05]
set yrange [0:$maxx*1.05]
plot $plot, x with lines dt 2 lc rgb "#999999" title "acked = offered"
EOF
	gnuplot <<EOF
$(common "Ack latency vs offered load: the knee (open loop, from each record's due time)")
set output "$PNG/knee.png"
set xlabel "offered load (records/s)"
set ylabel "ack latency (ms)"
set logscale y
set format y "%g"
set format x "%.0s%c"
set xrange [0:$maxx*1.05]
set arrow from graph 0, first $BOUND/1000.0 to graph 1, first $BOUND/1000.0 nohead dt 2 lc rgb "#999999"
set label "p99 bound $((BOUND / 1000)) ms" at graph 0.02, first $BOUND/1000.0*0.8 textcolor rgb "#777777"
plot $plot2
EOF
fi

cdfs=$(ls "$D"/cdf-*.dat 2>/dev/null || true)
if [ -n "$cdfs" ]; then
	plot=""
	for s in firn-socket firn-dpdk firn-http redis-always redis-everysec nats kinesalite; do
		f="$D/cdf-$s.dat"
		[ -f "$f" ] || continue
		plot="$plot${plot:+, }'$f' using (\$2 < 1 ? 1/(1-\$2) : 1/0):(\$1/1000) with steps lw 2 lc rgb '$(color "$s")' title '$(label "$s")'"
	done
	gnuplot <<EOF
$(common "Ack latency by percentile, closed loop at each client's window (HDR style)")
set output "$PNG/latency.png"
set xlabel "percentile"
set ylabel "ack latency (ms)"
set logscale xy
set format y "%g"
set xrange [1:100000]
set xtics ("0%%" 1, "50%%" 2, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000, "99.999%%" 100000)
set key bottom right
plot $plot
EOF
fi

if [ -s "$D/bars.dat" ]; then
	tmp=$(mktemp)
	awk '!/^#/' "$D/bars.dat" | while read -r s v; do
		c=$(color "$s")
		printf '"%s" %s %d\n' "$(label "$s")" "$v" "$((16#${c#\#}))"
	done >"$tmp"
	n=$(wc -l <"$tmp")
	gnuplot <<EOF
$(common "Max throughput, closed loop, 100 B records: firn vs peers")
set output "$PNG/peers.png"
set ylabel "records/s (log scale)"
set logscale y
set yrange [1000:*]
set format y "%.0s%c"
set style fill solid 0.85 border -1
set boxwidth 0.6
set xtics rotate by -15 left font "sans,10"
set bmargin 8
set xrange [-0.6:$n-0.4]
set key off
plot "$tmp" using 0:2:(0.6):3:xtic(1) with boxes lc rgb variable, \
     "$tmp" using 0:2:(sprintf("%.0fk", \$2 / 1000)) with labels offset 0,0.8 font "sans,10"
EOF
	rm -f "$tmp"
fi
ls "$PNG"/*.png 2>/dev/null
