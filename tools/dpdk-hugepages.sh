#!/usr/bin/env bash
# tools/dpdk-hugepages.sh - reserve (or release) 2 MiB hugepages for DPDK on a
# real NIC and make sure hugetlbfs is mounted. Prints each step; root only.
# Tests do not need it: they run the EAL with --no-huge.
#
#   tools/dpdk-hugepages.sh reserve SIZE   e.g. 2G (rounded up to 2 MiB pages)
#   tools/dpdk-hugepages.sh release
#   tools/dpdk-hugepages.sh show
#
# dpdk-hugepages.py (package dpdk) does more; this is the one step firn needs.
set -euo pipefail

say() { echo "dpdk-hugepages: $*"; }
run() { say "$*"; "$@"; }
NR=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
MNT=/dev/hugepages

to_pages() { # SIZE with K/M/G suffix -> number of 2 MiB pages
	local s=$1 n mult=1
	n=${s%[KkMmGg]}
	case "$s" in
	*[Kk]) mult=1024 ;;
	*[Mm]) mult=$((1024 * 1024)) ;;
	*[Gg]) mult=$((1024 * 1024 * 1024)) ;;
	esac
	[[ "$n" =~ ^[0-9]+$ ]] || { say "'$s' is not a size like 2G or 512M"; exit 2; }
	echo $(((n * mult + 2097151) / 2097152))
}

case "${1:-}" in
reserve)
	[ $# -eq 2 ] || { echo "usage: $0 reserve SIZE" >&2; exit 2; }
	pages=$(to_pages "$2")
	say "echo $pages > $NR"
	echo "$pages" >"$NR"
	got=$(cat "$NR")
	[ "$got" -ge "$pages" ] || say "warning: only $got of $pages pages (memory fragmented? reserve at boot: hugepages=$pages)"
	if ! mountpoint -q "$MNT"; then
		run mkdir -p "$MNT"
		run mount -t hugetlbfs nodev "$MNT"
	fi
	grep -i huge /proc/meminfo
	;;
release)
	say "echo 0 > $NR"
	echo 0 >"$NR"
	;;
show)
	grep -i huge /proc/meminfo
	mountpoint "$MNT" || true
	;;
*)
	echo "usage: $0 reserve SIZE | release | show" >&2
	exit 2
	;;
esac
