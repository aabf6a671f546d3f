/*
 * firn_net_dpdk.h - the DPDK ethdev data-port driver.
 *
 * Implements lib/net's firn_net_ops on a DPDK port that firn owns outright:
 * besides moving UDP datagrams it answers ARP requests and ICMP echo for
 * its address, learns its neighbours' MACs from what they send, and drops
 * and counts everything else.
 *
 *	struct firn_net_conf conf = {
 *		.listen = "0.0.0.0:7400",
 *		.ip = "198.18.0.2/24",
 *		.eal = "-l 0 --no-huge -m 1024 --no-shconf --no-pci "
 *		       "--proc-type=primary --file-prefix=firn1 "
 *		       "--vdev=net_af_packet0,iface=veth0",
 *	};
 *	struct firn_net_port *p = firn_net_dpdk_ops.open(&conf);
 *
 * conf.eal: EAL arguments, blank-separated (no quoting); the EAL starts at
 * the first open() and stops when the last port closes, and DPDK allows
 * that once per process. The calling thread's CPU affinity is kept (EAL
 * would pin it to the first lcore). For an af_packet --vdev without
 * framesz, ring frames are sized from the interface MTU so jumbo frames
 * fit. Debian's shared DPDK loads PMDs from its plugin directory by
 * itself; a custom build may need "-d /path/to/pmds".
 *
 * conf.ip: the port's "ADDR/PREFIX"; the prefix decides which destinations
 * may be ARPed (others are reached only as replies, through the MAC their
 * frames arrived from; there is no default gateway). conf.listen: the UDP
 * port (its address must be 0.0.0.0 or conf.ip). conf.mtu: 0 takes the
 * kernel interface's MTU for kernel-backed PMDs (af_packet), else 1500.
 * conf.rx_queues: RX/TX queue pairs (af_packet needs qpairs=N to match).
 * conf.pool_size: mbufs, each holding a whole frame (default 8191).
 *
 * rx_burst() delivers UDP payloads in place in the mbufs (handle = mbuf);
 * release() frees them, from any thread. The first burst on a thread that
 * is not an EAL lcore registers it with rte_thread_register() so it gets a
 * mempool cache; stop such threads before closing the last port.
 * Checksums: IPv4 header always checked on receive (by the NIC when it
 * can); the UDP checksum only when the NIC checks it, because every firn
 * datagram past the handshake is AEAD-authenticated anyway. On transmit,
 * both are computed (by the NIC when it can).
 *
 * Thread safety: as firn_net.h. The neighbour table is shared by all
 * queues (lock-free reads).
 */
#ifndef FIRN_NET_DPDK_H
#define FIRN_NET_DPDK_H

#include "firn_net.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const struct firn_net_ops firn_net_dpdk_ops;

#ifdef __cplusplus
}
#endif
#endif /* FIRN_NET_DPDK_H */
