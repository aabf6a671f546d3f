#!/usr/bin/env bash
# tools/dpdk-bind.sh - hand a NIC to DPDK (vfio-pci) or give it back to its
# kernel driver, with dpdk-devbind.py from package dpdk. Prints each step.
# Tests do not need it: they use net_af_packet on a veth.
#
#   tools/dpdk-bind.sh status
#   tools/dpdk-bind.sh bind PCI_ADDR           e.g. 0000:03:00.0 -> vfio-pci
#   tools/dpdk-bind.sh unbind PCI_ADDR DRIVER  e.g. 0000:03:00.0 ixgbe
#
# Binding takes the interface away from the kernel: do not bind the
# management port. The IOMMU must be on (intel_iommu=on / amd_iommu=on);
# without one, vfio's no-IOMMU mode is a security trade-off this script
# does not make for you.
set -euo pipefail

say() { echo "dpdk-bind: $*"; }
run() { say "$*"; "$@"; }
DEVBIND=$(command -v dpdk-devbind.py || command -v dpdk-devbind || true)
[ -n "$DEVBIND" ] || { say "dpdk-devbind.py not found (apt-get install dpdk)"; exit 1; }

case "${1:-}" in
status)
	run "$DEVBIND" --status-dev net
	;;
bind)
	[ $# -eq 2 ] || { echo "usage: $0 bind PCI_ADDR" >&2; exit 2; }
	if [ -z "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; then
		say "no IOMMU groups: enable the IOMMU in firmware and on the kernel command line"
		exit 1
	fi
	lsmod | grep -q '^vfio_pci' || run modprobe vfio-pci
	run "$DEVBIND" --bind=vfio-pci "$2"
	run "$DEVBIND" --status-dev net
	;;
unbind)
	[ $# -eq 3 ] || { echo "usage: $0 unbind PCI_ADDR DRIVER" >&2; exit 2; }
	run "$DEVBIND" --bind="$3" "$2"
	run "$DEVBIND" --status-dev net
	;;
*)
	echo "usage: $0 status | bind PCI_ADDR | unbind PCI_ADDR DRIVER" >&2
	exit 2
	;;
esac
