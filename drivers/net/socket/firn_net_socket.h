/*
 * firn_net_socket.h - the kernel UDP socket data-port driver.
 *
 * Implements lib/net's firn_net_ops over ordinary UDP sockets: recvmmsg
 * into a preallocated ring of buffers per queue (zero-copy from the
 * socket's point of view: the kernel writes straight into the buffer the
 * pipeline later reads), sendmmsg for TX. With rx_queues > 1 each queue
 * gets its own socket on the same address with SO_REUSEPORT, and the
 * kernel spreads peers over them by their address hash, as RSS would.
 *
 *	struct firn_net_conf conf = { .listen = "0.0.0.0:7400" };
 *	struct firn_net_port *p = firn_net_socket_ops.open(&conf);
 *
 * Only listen, rx_queues, mtu, burst and pool_size (buffers in total,
 * default 2048, split over the queues) are used; eal, ip and port_id are
 * DPDK's and ignored here.
 *
 * max_payload: from conf.mtu when set (576..9216), else from the MTU of
 * the interface that owns the listen address, capped at 9000 so loopback
 * (MTU 65536) behaves like a jumbo-frame link (8972 bytes); a wildcard
 * listen address cannot name one interface, so it gets 1472 (MTU 1500).
 * Receive buffers hold at least 8972 bytes whatever max_payload is, so a
 * peer on a jumbo link is heard even on a wildcard socket; a longer
 * datagram is truncated by the kernel and counted in rx_dropped_bad.
 * Sockets are set to IP_PMTUDISC_DO: a datagram is never fragmented; one
 * that does not fit the path is dropped and counted in tx_dropped.
 *
 * Thread safety: as firn_net.h; release() may run on any thread (a writer
 * that received the datagram over a ring hands the buffer back directly).
 */
#ifndef FIRN_NET_SOCKET_H
#define FIRN_NET_SOCKET_H

#include "firn_net.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const struct firn_net_ops firn_net_socket_ops;

#ifdef __cplusplus
}
#endif
#endif /* FIRN_NET_SOCKET_H */
