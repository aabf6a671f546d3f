/*
 * firn_net.h - the interface between the ingest pipeline and a data-port
 * driver: bursts of UDP datagrams in, bursts of UDP datagrams out.
 *
 * Two drivers implement it: drivers/net/dpdk (poll-mode ethdev; it owns the
 * port, so it also answers ARP and ICMP echo for its address and drops and
 * counts everything else it does not own) and drivers/net/socket (kernel
 * UDP with recvmmsg/sendmmsg, for machines without a DPDK NIC). Everything
 * above this interface - protocol, sessions, routing, rings, writers - does
 * not know which one runs.
 *
 * Receive is zero-copy where the driver can: a datagram's payload points
 * into the driver's buffer (an mbuf's data room for DPDK) and stays valid
 * until the caller gives it back with release(); the caller may hold it
 * across a ring hand-off to a writer. Payloads larger than one buffer
 * (jumbo frames on small mbufs) are linearised by the driver.
 *
 *	struct firn_net_port *p = ops->open(&conf);
 *	n = ops->rx_burst(p, queue, dgrams, 32);
 *	... parse dgrams[i].data / len, reply with ops->tx_burst(...) ...
 *	ops->release(p, dgrams, n);
 *
 * Thread safety: one thread per RX queue; tx_burst on a queue from the
 * thread that owns that queue. open/close from the control thread.
 */
#ifndef FIRN_NET_H
#define FIRN_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct firn_net_conf {
	const char *listen; /* "ADDR:PORT" UDP address to receive on */
	const char *eal;    /* DPDK only: EAL arguments, space separated */
	const char *ip;     /* DPDK only: "ADDR/PREFIX" of the port */
	uint16_t port_id;   /* DPDK only: ethdev port (default 0) */
	unsigned rx_queues; /* default 1 */
	uint32_t mtu;       /* 0 = the device's (1500 or jumbo 9000) */
	unsigned burst;     /* default 32 */
	unsigned pool_size; /* DPDK only: mbufs (default 8191) */
};

/* One received or to-be-sent UDP datagram. */
struct firn_net_dgram {
	struct sockaddr_in peer; /* source on RX, destination on TX */
	const uint8_t *data;     /* UDP payload */
	uint32_t len;
	uint16_t queue; /* RX queue it came from */
	void *handle;   /* driver's buffer (mbuf) for release() */
};

struct firn_net_stats {
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t rx_dropped_not_ours; /* not UDP to our address/port */
	uint64_t rx_dropped_bad;      /* malformed L2/L3/L4, bad checksum, truncated */
	uint64_t rx_dropped_frag;     /* IP fragments (firn never fragments; MTU mismatch?) */
	uint64_t rx_nombuf, tx_dropped;
	uint64_t arp_replies, icmp_replies;
};

struct firn_net_port;

struct firn_net_ops {
	const char *name;
	/* Open and start the port. NULL with the reason in the error chain. */
	struct firn_net_port *(*open)(const struct firn_net_conf *conf);
	void (*close)(struct firn_net_port *p);
	/* Up to max datagrams from queue; returns the count (0 when none). */
	unsigned (*rx_burst)(struct firn_net_port *p, uint16_t queue, struct firn_net_dgram *d,
	                     unsigned max);
	/*
	 * Give received datagrams' buffers back. Any thread may release any
	 * queue's datagrams (lib/ingest hands a datagram to the RX agent that
	 * owns its producer, which releases it): an mbuf goes back to a
	 * multi-producer mempool, a socket slot clears its busy flag.
	 */
	void (*release)(struct firn_net_port *p, struct firn_net_dgram *d, unsigned n);
	/*
	 * Send n datagrams (payload copied; the caller keeps its buffers).
	 * Returns how many of d[0..n) were consumed, in order. A datagram the
	 * driver cannot send at all (larger than max_payload, no neighbour
	 * for the destination yet) is consumed, dropped and counted in
	 * tx_dropped, so a caller never retries it forever; a return below n
	 * means the device queue is full: retry d[ret..n) later.
	 */
	unsigned (*tx_burst)(struct firn_net_port *p, uint16_t queue,
	                     const struct firn_net_dgram *d, unsigned n);
	/* Largest UDP payload that goes out without IP fragmentation. */
	uint32_t (*max_payload)(struct firn_net_port *p);
	void (*stats)(struct firn_net_port *p, struct firn_net_stats *out);
};

/*
 * Parse "ADDR:PORT" (dotted IPv4, port 0..65535; "*" or "0.0.0.0" for any
 * address) into out. 0 or -EINVAL with the reason in the error chain.
 */
int firn_net_parse_addr(const char *s, struct sockaddr_in *out);

/*
 * Parse "ADDR/PREFIX" ("ADDR" alone means /32) into a network-order address
 * and a prefix length 0..32. 0 or -EINVAL with the reason in the error chain.
 */
int firn_net_parse_cidr(const char *s, struct in_addr *addr, unsigned *prefix);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_NET_H */
