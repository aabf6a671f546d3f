# shellcheck shell=bash
# tools/bench/bench_lib.sh - the small helpers every benchmark script needs,
# sourced (". bench_lib.sh") rather than run.
#
#   median       numbers on stdin, one per line: their median (empty input: nothing)
#   kv KEY       "k1=v1 k2=v2 ..." on stdin (a firn-bench summary line): the value of KEY
#   free_port    a 127.0.0.1 port free for both UDP and TCP (firnd's data port and API)

median() { sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }

kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }

free_port() {
	python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
t = socket.socket(); t.bind(("127.0.0.1", s.getsockname()[1])); print(s.getsockname()[1])'
}
