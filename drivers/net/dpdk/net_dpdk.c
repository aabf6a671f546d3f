/*
 * net_dpdk.c - firn's data port on a DPDK ethdev.
 *
 * The port belongs to firn, not to the kernel, so this driver is a tiny
 * IPv4 host as well as a packet mover. The story of a frame:
 *
 * Bring-up. open() starts the EAL from the operator's argument string (once
 * per process: DPDK cannot start it twice), creates one mbuf pool whose data
 * room holds a whole frame at the link MTU (jumbo included, so no mbuf
 * chains on receive), configures rx_queues RX and TX queue pairs (RSS over
 * the UDP 4-tuple when the device hashes UDP) and starts the port.
 *
 * Receive. rx_burst() polls the queue and classifies each frame in place
 * (dpdk_classify: length, version, IPv4 header checksum, fragment bits,
 * destination address and port). A UDP datagram for us goes to the caller
 * as a pointer into the mbuf, handle = the mbuf, until release(). An ARP
 * request for our address and an ICMP echo request to it are turned into
 * their replies in the same mbuf and sent at the end of the burst on the
 * same queue - the thread owns that TX queue, so no lock. Everything else
 * is freed and counted: not ours, bad, or an IP fragment.
 *
 * Neighbours. Replies need the peer's MAC. Every valid IPv4 frame for us
 * and every ARP aimed at us teaches the neighbour table the sender's
 * IP -> MAC, so a producer's frames keep its entry fresh (behind a router
 * we learn the router's MAC for the producer's address, which is what a
 * reply needs). tx_burst() to an address nobody taught us sends one ARP
 * request (at most one per destination per 100 ms), drops the datagram and
 * counts it; the protocol above retransmits. The table is read by every
 * queue and written rarely (a new or moved peer, or a once-a-second
 * refresh), so reads are lock-free seqlocks and writers share a spinlock.
 *
 * Transmit. tx_burst() allocates mbufs in bulk, writes Ethernet/IPv4/UDP
 * headers and copies the payload; the IPv4 and UDP checksums go to the NIC
 * when it offers them, else are computed here.
 *
 * af_packet. In tests (and on a box whose NIC DPDK cannot drive) the port is
 * net_af_packet on a kernel interface. Its ring frames default to 2048
 * bytes, too small for a 9000-byte MTU, and its device info claims a
 * 1518-byte limit; so when an --vdev=net_af_packet... argument does not set
 * framesz, we size framesz/blocksz from the interface's MTU, and for such
 * kernel-backed ports the kernel interface's MTU is the link MTU.
 *
 * Counters. rx/tx packets and bytes count UDP datagrams and their payload
 * bytes handed to or taken from the caller, as in the socket driver. Each
 * queue's counters sit on its own cache line with one writer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_arp.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_memcpy.h>
#include <rte_spinlock.h>
#include <rte_udp.h>

#include "firn_common.h"
#include "firn_net.h"
#include "firn_net_dpdk.h"

#define DPDK_LOG "net-dpdk"
#define DPDK_MAX_ARGS 64
#define DPDK_MAX_QUEUES 64
#define DPDK_MAX_BURST 64
#define DPDK_NB_DESC 1024
#define DPDK_DEFAULT_POOL 8191
#define DPDK_MAX_MTU 9216
#define DPDK_HDRS (RTE_ETHER_HDR_LEN + 20 + 8) /* Ethernet + IPv4 + UDP */
/* af_packet ring frame: tpacket2 header and alignment (~34 B), VLAN, Ethernet. */
#define DPDK_AF_PACKET_OVERHEAD (64 + RTE_ETHER_HDR_LEN + 4)
#define DPDK_AF_PACKET_DEFAULT_FRAME 2048
#define DPDK_NEIGH_SETS 256 /* x 4 ways */
#define DPDK_NEIGH_WAYS 4

/* ---- EAL: once per process ------------------------------------------------ */

enum dpdk_eal_state { DPDK_EAL_NONE, DPDK_EAL_UP, DPDK_EAL_FAILED, DPDK_EAL_DONE };

static struct {
	pthread_mutex_t lock;
	enum dpdk_eal_state state;
	unsigned ports;             /* open ports using the EAL */
	char *args;                 /* the operator's string, for comparing on reopen */
	char *buf;                  /* argv storage, alive while the EAL is */
	char *owned[DPDK_MAX_ARGS]; /* rewritten arguments */
	char *argv[DPDK_MAX_ARGS + 1];
	uint32_t af_framesz; /* largest af_packet framesz seen, 0 if none */
} dpdk_eal = {.lock = PTHREAD_MUTEX_INITIALIZER};

/*
 * Split s in place on blanks into argv[first..]; returns the new argc or
 * -E2BIG. No quoting: EAL arguments (device strings included) have no
 * blanks.
 */
static int
dpdk_split_args(char *s, char **argv, int first, int max)
{
	int argc = first;
	char *p = s;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			*p++ = '\0';
		if (*p == '\0')
			return argc;
		if (argc >= max)
			return -E2BIG;
		argv[argc++] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
	}
}

/* The kernel MTU of interface name, capped at DPDK_MAX_MTU; 0 if unknown. */
static uint32_t
dpdk_iface_mtu(const char *name)
{
	struct ifreq ifr;
	uint32_t mtu = 0;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
		mtu = FIRN_MIN((uint32_t)ifr.ifr_mtu, (uint32_t)DPDK_MAX_MTU);
	close(fd);
	return mtu;
}

/*
 * Look up key in a devargs string "name,k1=v1,k2=v2": copy its value into
 * out and return true when present.
 */
static bool
dpdk_devarg(const char *devargs, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	const char *p = strchr(devargs, ',');

	while (p != NULL) {
		const char *end;

		p++;
		end = strchr(p, ',');
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			size_t vlen = (end ? (size_t)(end - p) : strlen(p)) - klen - 1;

			if (vlen >= size)
				return false;
			memcpy(out, p + klen + 1, vlen);
			out[vlen] = '\0';
			return true;
		}
		p = end;
	}
	return false;
}

static uint32_t
dpdk_gcd(uint32_t a, uint32_t b)
{
	while (b != 0) {
		uint32_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/*
 * If devargs names an af_packet device, make sure its ring frames hold a
 * whole frame at the interface's MTU. Returns a malloc'd rewritten string,
 * or NULL when nothing had to change (then *framesz still reports an
 * explicit framesz). *framesz: the ring frame size in effect, 0 if not
 * af_packet.
 */
static char *
dpdk_af_packet_fixup(const char *devargs, uint32_t *framesz)
{
	char iface[IFNAMSIZ + 1], v[32];
	uint32_t mtu, need, block;
	uint64_t given;
	long page;
	char *out;
	size_t len;

	*framesz = 0;
	if (strncmp(devargs, "net_af_packet", 13) != 0 &&
	    strncmp(devargs, "eth_af_packet", 13) != 0)
		return NULL;
	*framesz = DPDK_AF_PACKET_DEFAULT_FRAME;
	if (dpdk_devarg(devargs, "framesz", v, sizeof(v))) {
		if (firn_parse_u64(v, &given) == 0 && given < 65536)
			*framesz = (uint32_t)given;
		return NULL;
	}
	if (!dpdk_devarg(devargs, "iface", iface, sizeof(iface)) ||
	    (mtu = dpdk_iface_mtu(iface)) == 0)
		return NULL; /* the PMD will say what is wrong */
	/*
	 * The PMD finds ring frame i at i * framesz, so frames must tile blocks
	 * with no gap: a multiple of 1 KiB, and blocks a common multiple of the
	 * frame and the page (9216-byte frames, 4 to a 36 KiB block, for 9000).
	 */
	need = FIRN_ALIGN_UP(mtu + DPDK_AF_PACKET_OVERHEAD, 1024u);
	if (need <= DPDK_AF_PACKET_DEFAULT_FRAME)
		return NULL;
	page = sysconf(_SC_PAGESIZE);
	if (page <= 0)
		page = 4096;
	block = need / dpdk_gcd(need, (uint32_t)page) * (uint32_t)page;
	len = strlen(devargs) + 64;
	out = malloc(len);
	if (out == NULL)
		return NULL;
	if (dpdk_devarg(devargs, "blocksz", v, sizeof(v))) {
		snprintf(out, len, "%s,framesz=%u", devargs, need);
		if (firn_parse_u64(v, &given) < 0 || given % need != 0)
			FIRN_LOG(WARN, DPDK_LOG,
			         "af_packet on %s: blocksz=%s is not a multiple of "
			         "framesz=%u; the PMD will misread its ring",
			         iface, v, need);
	} else {
		snprintf(out, len, "%s,framesz=%u,blocksz=%u", devargs, need, block);
	}
	*framesz = need;
	FIRN_LOG(INFO, DPDK_LOG,
	         "af_packet on %s (MTU %u): ring frames of %u bytes so a "
	         "full frame fits",
	         iface, mtu, need);
	return out;
}

static void
dpdk_eal_free_args(void)
{
	unsigned i;

	for (i = 0; i < DPDK_MAX_ARGS; i++) {
		free(dpdk_eal.owned[i]);
		dpdk_eal.owned[i] = NULL;
	}
	free(dpdk_eal.buf);
	free(dpdk_eal.args);
	dpdk_eal.buf = dpdk_eal.args = NULL;
}

/* Build dpdk_eal.argv from eal; returns argc or -errno (error chain set). */
static int
dpdk_eal_build_argv(const char *eal)
{
	int argc, i;

	dpdk_eal.args = strdup(eal);
	dpdk_eal.buf = strdup(eal);
	if (dpdk_eal.args == NULL || dpdk_eal.buf == NULL)
		return firn_err_set(-ENOMEM, "EAL arguments: out of memory");
	dpdk_eal.argv[0] = (char *)"firn";
	argc = dpdk_split_args(dpdk_eal.buf, dpdk_eal.argv, 1, DPDK_MAX_ARGS);
	if (argc < 0)
		return firn_err_set(argc, "more than %d EAL arguments", DPDK_MAX_ARGS - 1);
	dpdk_eal.argv[argc] = NULL;
	for (i = 1; i < argc; i++) {
		char *a = dpdk_eal.argv[i], *fixed;
		uint32_t fs;

		if (strncmp(a, "--vdev=", 7) == 0) {
			fixed = dpdk_af_packet_fixup(a + 7, &fs);
			if (fixed != NULL) {
				size_t len = strlen(fixed) + 8;

				dpdk_eal.owned[i] = malloc(len);
				if (dpdk_eal.owned[i] != NULL) {
					snprintf(dpdk_eal.owned[i], len, "--vdev=%s", fixed);
					dpdk_eal.argv[i] = dpdk_eal.owned[i];
				}
				free(fixed);
			}
		} else if (strcmp(a, "--vdev") == 0 && i + 1 < argc) {
			fixed = dpdk_af_packet_fixup(dpdk_eal.argv[i + 1], &fs);
			if (fixed != NULL) {
				dpdk_eal.owned[i + 1] = fixed;
				dpdk_eal.argv[i + 1] = fixed;
			}
			i++;
		} else {
			continue;
		}
		dpdk_eal.af_framesz = FIRN_MAX(dpdk_eal.af_framesz, fs);
	}
	return argc;
}

/*
 * Start the EAL (first port) or check the new port asks for the same one.
 * rte_eal_init() pins the calling thread to the first lcore's CPU; the
 * caller here is a control thread whose later children would inherit that
 * pin, so its affinity is put back afterwards. RX agents pin themselves.
 */
static int
dpdk_eal_get(const char *eal)
{
	cpu_set_t saved;
	bool have_saved;
	int argc, rc = 0;

	if (eal == NULL || eal[0] == '\0')
		return firn_err_set(-EINVAL,
		                    "DPDK data port: no EAL arguments (e.g. \"-l 0 "
		                    "--vdev=net_af_packet0,iface=eth1\" or \"-a 0000:03:00.0\")");
	pthread_mutex_lock(&dpdk_eal.lock);
	switch (dpdk_eal.state) {
	case DPDK_EAL_UP:
		if (strcmp(dpdk_eal.args, eal) != 0)
			rc = firn_err_set(-EBUSY,
			                  "the DPDK EAL is already running with other "
			                  "arguments ('%s')",
			                  dpdk_eal.args);
		else
			dpdk_eal.ports++;
		goto out;
	case DPDK_EAL_FAILED:
		rc = firn_err_set(-EINVAL, "the DPDK EAL failed to start earlier in this process");
		goto out;
	case DPDK_EAL_DONE:
		rc = firn_err_set(-EALREADY, "the DPDK EAL can start only once per process");
		goto out;
	case DPDK_EAL_NONE:
		break;
	}
	argc = dpdk_eal_build_argv(eal);
	if (argc < 0) {
		rc = argc;
		dpdk_eal_free_args();
		goto out;
	}
	have_saved = pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0;
	rc = rte_eal_init(argc, dpdk_eal.argv);
	if (have_saved)
		(void)pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
	if (rc < 0) {
		int err = rte_errno;

		dpdk_eal.state = DPDK_EAL_FAILED;
		rc = firn_err_set(-(err ? err : EINVAL), "rte_eal_init(\"%s\"): %s", eal,
		                  rte_strerror(err));
		goto out;
	}
	if (rc != argc - 1) {
		/* EAL stops at the first argument it does not know. */
		FIRN_LOG(WARN, DPDK_LOG, "EAL ignored '%s' and what follows",
		         dpdk_eal.argv[rc + 1]);
	}
	dpdk_eal.state = DPDK_EAL_UP;
	dpdk_eal.ports = 1;
	rc = 0;
out:
	pthread_mutex_unlock(&dpdk_eal.lock);
	return rc;
}

static void
dpdk_eal_put(void)
{
	pthread_mutex_lock(&dpdk_eal.lock);
	if (dpdk_eal.state == DPDK_EAL_UP && --dpdk_eal.ports == 0) {
		rte_eal_cleanup();
		dpdk_eal.state = DPDK_EAL_DONE;
		dpdk_eal_free_args();
	}
	pthread_mutex_unlock(&dpdk_eal.lock);
}

/*
 * A thread that polls or sends without being an EAL lcore gets no mempool
 * cache, so every mbuf alloc/free hits the shared ring. The first burst on
 * such a thread registers it as a non-EAL lcore (when the EAL allows) and
 * a thread-exit destructor gives the lcore id back.
 */
static __thread bool dpdk_thread_seen;
static pthread_key_t dpdk_thread_key;
static pthread_once_t dpdk_thread_once = PTHREAD_ONCE_INIT;

static void
dpdk_thread_exit(void *arg)
{
	(void)arg;
	rte_thread_unregister();
}

static void
dpdk_thread_key_init(void)
{
	(void)pthread_key_create(&dpdk_thread_key, dpdk_thread_exit);
}

static void
dpdk_thread_register(void)
{
	dpdk_thread_seen = true;
	if (rte_lcore_id() != LCORE_ID_ANY)
		return;
	pthread_once(&dpdk_thread_once, dpdk_thread_key_init);
	if (rte_thread_register() == 0)
		(void)pthread_setspecific(dpdk_thread_key, (void *)1);
}

static inline void
dpdk_thread_check(void)
{
	if (firn_unlikely(!dpdk_thread_seen))
		dpdk_thread_register();
}

/* ---- the port --------------------------------------------------------------- */

/*
 * One neighbour. A seqlock guards the fields: a writer (holding
 * neigh_lock) makes seq odd, release-fences, writes, then stores seq even
 * with release; a reader loads seq with acquire, reads the fields relaxed,
 * acquire-fences, and retries if seq moved. Every field access is atomic
 * so the race is defined; the fences order them.
 */
struct dpdk_neigh {
	uint32_t seq;
	uint32_t ip;      /* network order; 0 = free way */
	uint64_t mac;     /* the 6 address bytes, memcpy'd */
	uint64_t learned; /* TSC of the last confirmation; 0 = not known yet */
	uint64_t asked;   /* TSC of the last ARP request we sent for ip */
};

struct dpdk_counters {
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t rx_dropped_not_ours, rx_dropped_bad, rx_dropped_frag, tx_dropped;
	uint64_t arp_replies, icmp_replies;
};

struct dpdk_queue {
	uint16_t ip_id;
	struct dpdk_counters c FIRN_CACHE_ALIGNED;
} FIRN_CACHE_ALIGNED;

struct firn_net_port {
	uint16_t port_id;
	uint16_t nq;
	uint32_t ip;       /* network order */
	uint32_t netmask;  /* network order */
	uint16_t udp_port; /* network order */
	struct rte_ether_addr mac;
	uint32_t mtu;
	uint32_t max_payload;
	bool tx_ip_cksum, tx_udp_cksum; /* offloads in use */
	bool rx_cksum;                  /* RX checksum flags are meaningful */
	bool configured, started;
	uint64_t tsc_hz;
	struct rte_mempool *pool;
	rte_spinlock_t neigh_lock; /* serialises neighbour writers */
	struct dpdk_neigh neigh[DPDK_NEIGH_SETS][DPDK_NEIGH_WAYS];
	struct dpdk_queue q[DPDK_MAX_QUEUES];
};

/* Single writer per counter; the relaxed store pairs with dpdk_stats()' load. */
static inline void
dpdk_count(uint64_t *c, uint64_t v)
{
	if (v)
		__atomic_store_n(c, *c + v, __ATOMIC_RELAXED);
}

static inline struct dpdk_neigh *
dpdk_neigh_set(struct firn_net_port *p, uint32_t ip)
{
	return p->neigh[(rte_be_to_cpu_32(ip) * 2654435761u) >> 24];
}

static inline void
dpdk_neigh_read(const struct dpdk_neigh *n, struct dpdk_neigh *out)
{
	for (;;) {
		uint32_t s = __atomic_load_n(&n->seq, __ATOMIC_ACQUIRE);

		if (s & 1) {
			rte_pause();
			continue;
		}
		out->ip = __atomic_load_n(&n->ip, __ATOMIC_RELAXED);
		out->mac = __atomic_load_n(&n->mac, __ATOMIC_RELAXED);
		out->learned = __atomic_load_n(&n->learned, __ATOMIC_RELAXED);
		out->asked = __atomic_load_n(&n->asked, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&n->seq, __ATOMIC_RELAXED) == s)
			return;
	}
}

/* Caller holds neigh_lock. */
static void
dpdk_neigh_write(struct dpdk_neigh *n, uint32_t ip, uint64_t mac, uint64_t learned, uint64_t asked)
{
	uint32_t s = __atomic_load_n(&n->seq, __ATOMIC_RELAXED);

	__atomic_store_n(&n->seq, s + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&n->ip, ip, __ATOMIC_RELAXED);
	__atomic_store_n(&n->mac, mac, __ATOMIC_RELAXED);
	__atomic_store_n(&n->learned, learned, __ATOMIC_RELAXED);
	__atomic_store_n(&n->asked, asked, __ATOMIC_RELAXED);
	/* Pairs with the acquire load of seq in dpdk_neigh_read(). */
	__atomic_store_n(&n->seq, s + 2, __ATOMIC_RELEASE);
}

static inline uint64_t
dpdk_mac_pack(const struct rte_ether_addr *a)
{
	uint64_t v = 0;

	memcpy(&v, a->addr_bytes, RTE_ETHER_ADDR_LEN);
	return v;
}

/* Way index holding ip in set (copy in *out), or -1. */
static inline int
dpdk_neigh_find(const struct dpdk_neigh *set, uint32_t ip, struct dpdk_neigh *out)
{
	int w;

	if (ip == 0)
		return -1; /* 0 marks a free way; nobody lives there */
	for (w = 0; w < DPDK_NEIGH_WAYS; w++) {
		dpdk_neigh_read(&set[w], out);
		if (out->ip == ip)
			return w;
	}
	return -1;
}

/* Way to reuse for ip: its own, else a free one, else the stalest. Under lock. */
static int
dpdk_neigh_victim(const struct dpdk_neigh *set, uint32_t ip)
{
	int w, best = 0;

	for (w = 0; w < DPDK_NEIGH_WAYS; w++)
		if (set[w].ip == ip)
			return w;
	for (w = 0; w < DPDK_NEIGH_WAYS; w++)
		if (set[w].ip == 0)
			return w;
	for (w = 1; w < DPDK_NEIGH_WAYS; w++)
		if (set[w].learned < set[best].learned)
			best = w;
	return best;
}

/*
 * ip is at mac (seen just now). Costs one lookup when nothing changed; takes
 * the lock only for a new or moved neighbour or a once-a-second refresh
 * (which keeps "stalest" meaningful for eviction).
 */
static void
dpdk_neigh_learn(struct firn_net_port *p, uint32_t ip, const struct rte_ether_addr *mac,
                 uint64_t now)
{
	struct dpdk_neigh *set = dpdk_neigh_set(p, ip), cur;
	uint64_t m = dpdk_mac_pack(mac);
	int w;

	if (ip == 0 || rte_is_multicast_ether_addr(mac))
		return;
	w = dpdk_neigh_find(set, ip, &cur);
	if (w >= 0 && cur.learned != 0 && cur.mac == m && now - cur.learned < p->tsc_hz)
		return;
	rte_spinlock_lock(&p->neigh_lock);
	w = dpdk_neigh_victim(set, ip);
	dpdk_neigh_write(&set[w], ip, m, now ? now : 1, set[w].ip == ip ? set[w].asked : 0);
	rte_spinlock_unlock(&p->neigh_lock);
}

/* ---- frames in ------------------------------------------------------------- */

enum dpdk_verdict {
	DPDK_V_UDP,
	DPDK_V_ARP_REQUEST, /* for our address: answer it */
	DPDK_V_ARP_REPLY,   /* to us: learn from it */
	DPDK_V_ICMP_ECHO,   /* to our address: answer it */
	DPDK_V_NOT_OURS,
	DPDK_V_BAD,
	DPDK_V_FRAG,
};

struct dpdk_parsed {
	uint32_t src_ip; /* network order */
	uint16_t src_port;
	uint16_t payload_off;
	uint32_t payload_len;
	uint32_t frame_len; /* Ethernet frame without link padding */
};

/*
 * Decide what a frame is, checking every length against what we hold.
 * ol_flags carries the NIC's checksum verdicts when p->rx_cksum.
 */
static enum dpdk_verdict
dpdk_classify(const struct firn_net_port *p, const uint8_t *f, uint32_t len, uint64_t ol_flags,
              struct dpdk_parsed *out)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)f;
	const struct rte_ipv4_hdr *ip;
	uint32_t ihl, total, l4len;
	uint16_t type;

	if (len < RTE_ETHER_HDR_LEN)
		return DPDK_V_BAD;
	if (rte_is_same_ether_addr(&eth->src_addr, &p->mac))
		return DPDK_V_NOT_OURS; /* our own transmission looped back by a tap */
	type = rte_be_to_cpu_16(eth->ether_type);
	if (type == RTE_ETHER_TYPE_ARP) {
		const struct rte_arp_hdr *arp = (const struct rte_arp_hdr *)(eth + 1);

		if (len < RTE_ETHER_HDR_LEN + sizeof(*arp))
			return DPDK_V_BAD;
		if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
		    arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
		    arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != 4)
			return DPDK_V_NOT_OURS;
		if (arp->arp_data.arp_tip != p->ip)
			return DPDK_V_NOT_OURS;
		out->src_ip = arp->arp_data.arp_sip;
		out->frame_len = RTE_ETHER_HDR_LEN + sizeof(*arp);
		if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST))
			return DPDK_V_ARP_REQUEST;
		if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REPLY))
			return DPDK_V_ARP_REPLY;
		return DPDK_V_NOT_OURS;
	}
	if (type != RTE_ETHER_TYPE_IPV4)
		return DPDK_V_NOT_OURS; /* IPv6, VLAN, LLDP...: not ours to answer */
	if (!rte_is_same_ether_addr(&eth->dst_addr, &p->mac))
		return DPDK_V_NOT_OURS; /* broadcast, multicast, someone else's */

	ip = (const struct rte_ipv4_hdr *)(eth + 1);
	if (len < RTE_ETHER_HDR_LEN + sizeof(*ip) || (ip->version_ihl >> 4) != 4)
		return DPDK_V_BAD;
	ihl = (ip->version_ihl & 0xf) * 4u;
	total = rte_be_to_cpu_16(ip->total_length);
	/* The frame may carry link padding after the datagram, never less. */
	if (ihl < sizeof(*ip) || total < ihl || RTE_ETHER_HDR_LEN + total > len)
		return DPDK_V_BAD;
	if (p->rx_cksum &&
	    (ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) != RTE_MBUF_F_RX_IP_CKSUM_NONE &&
	    (ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) != RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN) {
		if ((ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_BAD)
			return DPDK_V_BAD;
	} else if (rte_raw_cksum(ip, ihl) != 0xffff) {
		return DPDK_V_BAD;
	}
	if (ip->dst_addr != p->ip)
		return DPDK_V_NOT_OURS;
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
		return DPDK_V_FRAG;
	out->src_ip = ip->src_addr;
	out->frame_len = RTE_ETHER_HDR_LEN + total;
	l4len = total - ihl;

	if (ip->next_proto_id == IPPROTO_UDP) {
		const struct rte_udp_hdr *udp =
		        (const struct rte_udp_hdr *)((const uint8_t *)ip + ihl);
		uint32_t ulen;

		if (l4len < sizeof(*udp))
			return DPDK_V_BAD;
		ulen = rte_be_to_cpu_16(udp->dgram_len);
		if (ulen < sizeof(*udp) || ulen > l4len)
			return DPDK_V_BAD;
		if (udp->dst_port != p->udp_port)
			return DPDK_V_NOT_OURS;
		if (p->rx_cksum &&
		    (ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_BAD)
			return DPDK_V_BAD;
		out->src_port = udp->src_port;
		out->payload_off = (uint16_t)(RTE_ETHER_HDR_LEN + ihl + sizeof(*udp));
		out->payload_len = ulen - (uint32_t)sizeof(*udp);
		return DPDK_V_UDP;
	}
	if (ip->next_proto_id == IPPROTO_ICMP) {
		const struct rte_icmp_hdr *icmp =
		        (const struct rte_icmp_hdr *)((const uint8_t *)ip + ihl);

		if (l4len < sizeof(*icmp))
			return DPDK_V_BAD;
		if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0)
			return DPDK_V_NOT_OURS;
		if (rte_raw_cksum(icmp, l4len) != 0xffff)
			return DPDK_V_BAD;
		return DPDK_V_ICMP_ECHO;
	}
	return DPDK_V_NOT_OURS;
}

/* Turn an ARP request for our address into the reply, in place. */
static void
dpdk_arp_answer(const struct firn_net_port *p, uint8_t *f)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(eth + 1);
	struct rte_arp_ipv4 *a = &arp->arp_data;

	rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
	rte_ether_addr_copy(&p->mac, &eth->src_addr);
	arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
	rte_ether_addr_copy(&a->arp_sha, &a->arp_tha);
	a->arp_tip = a->arp_sip;
	rte_ether_addr_copy(&p->mac, &a->arp_sha);
	a->arp_sip = p->ip;
}

/* Turn an ICMP echo request to our address into the reply, in place. */
static void
dpdk_icmp_answer(const struct firn_net_port *p, uint8_t *f)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	uint32_t ihl = (ip->version_ihl & 0xf) * 4u;
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)((uint8_t *)ip + ihl);
	uint32_t l4len = rte_be_to_cpu_16(ip->total_length) - ihl;

	rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
	rte_ether_addr_copy(&p->mac, &eth->src_addr);
	ip->dst_addr = ip->src_addr;
	ip->src_addr = p->ip;
	ip->time_to_live = 64;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	icmp->icmp_cksum = 0;
	icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, l4len);
}

static unsigned
dpdk_rx_burst(struct firn_net_port *p, uint16_t queue, struct firn_net_dgram *d, unsigned max)
{
	struct dpdk_queue *q = &p->q[queue];
	struct rte_mbuf *pkts[DPDK_MAX_BURST], *ctl[DPDK_MAX_BURST], *drop[DPDK_MAX_BURST];
	uint8_t ctl_arp[DPDK_MAX_BURST];
	uint64_t bytes = 0, not_ours = 0, bad = 0, frag = 0, now = 0;
	unsigned out = 0, nctl = 0, ndrop = 0;
	uint16_t n, i;

	dpdk_thread_check();
	n = rte_eth_rx_burst(p->port_id, queue, pkts, (uint16_t)FIRN_MIN(max, DPDK_MAX_BURST));
	if (n == 0)
		return 0;
	now = rte_rdtsc();
	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		struct dpdk_parsed pp;
		enum dpdk_verdict v;
		uint8_t *f;

		if (firn_unlikely(m->nb_segs > 1) && rte_pktmbuf_linearize(m) < 0) {
			bad++;
			drop[ndrop++] = m;
			continue;
		}
		f = rte_pktmbuf_mtod(m, uint8_t *);
		v = dpdk_classify(p, f, rte_pktmbuf_data_len(m), m->ol_flags, &pp);
		switch (v) {
		case DPDK_V_UDP:
			dpdk_neigh_learn(p, pp.src_ip, &((struct rte_ether_hdr *)f)->src_addr, now);
			d[out].peer.sin_family = AF_INET;
			d[out].peer.sin_port = pp.src_port;
			d[out].peer.sin_addr.s_addr = pp.src_ip;
			d[out].data = f + pp.payload_off;
			d[out].len = pp.payload_len;
			d[out].queue = queue;
			d[out].handle = m;
			bytes += pp.payload_len;
			out++;
			break;
		case DPDK_V_ARP_REQUEST:
		case DPDK_V_ICMP_ECHO:
			dpdk_neigh_learn(p, pp.src_ip, &((struct rte_ether_hdr *)f)->src_addr, now);
			if (v == DPDK_V_ARP_REQUEST)
				dpdk_arp_answer(p, f);
			else
				dpdk_icmp_answer(p, f);
			/* Drop link padding: the reply is exactly as long as the request. */
			rte_pktmbuf_data_len(m) = (uint16_t)pp.frame_len;
			rte_pktmbuf_pkt_len(m) = pp.frame_len;
			m->ol_flags = 0;
			ctl_arp[nctl] = v == DPDK_V_ARP_REQUEST;
			ctl[nctl++] = m;
			break;
		case DPDK_V_ARP_REPLY:
			dpdk_neigh_learn(
			        p, pp.src_ip,
			        &((struct rte_arp_hdr *)(f + RTE_ETHER_HDR_LEN))->arp_data.arp_sha,
			        now);
			drop[ndrop++] = m;
			break;
		case DPDK_V_NOT_OURS:
			not_ours++;
			drop[ndrop++] = m;
			break;
		case DPDK_V_FRAG:
			frag++;
			drop[ndrop++] = m;
			break;
		case DPDK_V_BAD:
			bad++;
			drop[ndrop++] = m;
			break;
		}
	}
	if (ndrop)
		rte_pktmbuf_free_bulk(drop, ndrop);
	if (nctl) {
		uint16_t sent = rte_eth_tx_burst(p->port_id, queue, ctl, (uint16_t)nctl);
		uint64_t arps = 0;

		for (i = 0; i < sent; i++)
			arps += ctl_arp[i];
		dpdk_count(&q->c.arp_replies, arps);
		dpdk_count(&q->c.icmp_replies, sent - arps);
		if (sent < nctl) {
			rte_pktmbuf_free_bulk(ctl + sent, nctl - sent);
			dpdk_count(&q->c.tx_dropped, nctl - sent);
		}
	}
	dpdk_count(&q->c.rx_packets, out);
	dpdk_count(&q->c.rx_bytes, bytes);
	dpdk_count(&q->c.rx_dropped_not_ours, not_ours);
	dpdk_count(&q->c.rx_dropped_bad, bad);
	dpdk_count(&q->c.rx_dropped_frag, frag);
	return out;
}

static void
dpdk_release(struct firn_net_port *p, struct firn_net_dgram *d, unsigned n)
{
	struct rte_mbuf *m[DPDK_MAX_BURST];
	unsigned i, k = 0;

	(void)p;
	for (i = 0; i < n; i++) {
		m[k++] = d[i].handle;
		if (k == DPDK_MAX_BURST) {
			rte_pktmbuf_free_bulk(m, k);
			k = 0;
		}
	}
	if (k)
		rte_pktmbuf_free_bulk(m, k);
}

/* ---- frames out ------------------------------------------------------------ */

/* Broadcast an ARP request for ip on queue (rare: a destination we never heard). */
static void
dpdk_arp_request(struct firn_net_port *p, uint16_t queue, uint32_t ip)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(p->pool);
	struct rte_ether_hdr *eth;
	struct rte_arp_hdr *arp;

	if (m == NULL)
		return;
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	arp = (struct rte_arp_hdr *)(eth + 1);
	memset(eth->dst_addr.addr_bytes, 0xff, RTE_ETHER_ADDR_LEN);
	rte_ether_addr_copy(&p->mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = RTE_ETHER_ADDR_LEN;
	arp->arp_plen = 4;
	arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
	rte_ether_addr_copy(&p->mac, &arp->arp_data.arp_sha);
	arp->arp_data.arp_sip = p->ip;
	memset(&arp->arp_data.arp_tha, 0, RTE_ETHER_ADDR_LEN);
	arp->arp_data.arp_tip = ip;
	m->data_len = m->pkt_len = RTE_ETHER_HDR_LEN + sizeof(*arp);
	if (rte_eth_tx_burst(p->port_id, queue, &m, 1) != 1)
		rte_pktmbuf_free(m);
}

/*
 * The MAC to send to ip, or false (and maybe an ARP request) when we do not
 * know it yet. Off-link destinations are never ARPed: they are reachable
 * only as replies, through the MAC their frames came from.
 */
static bool
dpdk_resolve(struct firn_net_port *p, uint16_t queue, uint32_t ip, struct rte_ether_addr *mac,
             uint64_t now)
{
	struct dpdk_neigh *set = dpdk_neigh_set(p, ip), cur;
	bool ask = false;
	int w;

	w = dpdk_neigh_find(set, ip, &cur);
	if (firn_likely(w >= 0 && cur.learned != 0)) {
		memcpy(mac->addr_bytes, &cur.mac, RTE_ETHER_ADDR_LEN);
		return true;
	}
	if (((ip ^ p->ip) & p->netmask) != 0 || ip == 0)
		return false;
	if (w >= 0 && now - cur.asked < p->tsc_hz / 10)
		return false;
	rte_spinlock_lock(&p->neigh_lock);
	/*
	 * Hold the question in a way (evicting the stalest neighbour if the set
	 * is full) so that it is asked at most once per 100 ms. Another queue
	 * may have learned the answer since our lock-free look.
	 */
	w = dpdk_neigh_victim(set, ip);
	if (set[w].ip != ip || (set[w].learned == 0 && now - set[w].asked >= p->tsc_hz / 10)) {
		dpdk_neigh_write(&set[w], ip, 0, 0, now);
		ask = true;
	}
	rte_spinlock_unlock(&p->neigh_lock);
	if (ask)
		dpdk_arp_request(p, queue, ip);
	return false;
}

/* Write Ethernet/IPv4/UDP and the payload of d into m. */
static void
dpdk_build(struct firn_net_port *p, struct dpdk_queue *q, struct rte_mbuf *m,
           const struct rte_ether_addr *dst, const struct firn_net_dgram *d)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);

	rte_ether_addr_copy(dst, &eth->dst_addr);
	rte_ether_addr_copy(&p->mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(20 + 8 + d->len));
	ip->packet_id = rte_cpu_to_be_16(q->ip_id++);
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->hdr_checksum = 0;
	ip->src_addr = p->ip;
	ip->dst_addr = d->peer.sin_addr.s_addr;
	udp->src_port = p->udp_port;
	udp->dst_port = d->peer.sin_port;
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(8 + d->len));
	udp->dgram_cksum = 0;
	rte_memcpy(udp + 1, d->data, d->len);
	m->data_len = (uint16_t)(DPDK_HDRS + d->len);
	m->pkt_len = m->data_len;
	m->l2_len = RTE_ETHER_HDR_LEN;
	m->l3_len = sizeof(*ip);
	m->ol_flags = 0;
	if (p->tx_ip_cksum)
		m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
	else
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	if (p->tx_udp_cksum) {
		m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_UDP_CKSUM;
		udp->dgram_cksum = rte_ipv4_phdr_cksum(ip, m->ol_flags);
	} else {
		udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
	}
}

/* d[0..n) with n <= DPDK_MAX_BURST; returns how many were consumed. */
static unsigned
dpdk_tx_chunk(struct firn_net_port *p, uint16_t queue, const struct firn_net_dgram *d, unsigned n)
{
	struct dpdk_queue *q = &p->q[queue];
	struct rte_mbuf *m[DPDK_MAX_BURST];
	unsigned map[DPDK_MAX_BURST]; /* m[] slot -> index in d */
	unsigned drops_before[DPDK_MAX_BURST + 1];
	uint64_t bytes = 0, now = rte_rdtsc();
	unsigned i, k = 0, dropped = 0, done;
	uint16_t sent;

	if (rte_pktmbuf_alloc_bulk(p->pool, m, n) != 0)
		return 0; /* pool empty: the pipeline holds it all; try again later */
	for (i = 0; i < n; i++) {
		struct rte_ether_addr dst;

		if (firn_unlikely(d[i].len > p->max_payload) ||
		    firn_unlikely(!dpdk_resolve(p, queue, d[i].peer.sin_addr.s_addr, &dst, now))) {
			dropped++;
			continue;
		}
		dpdk_build(p, q, m[k], &dst, &d[i]);
		drops_before[k] = dropped;
		map[k++] = i;
	}
	drops_before[k] = dropped;
	sent = k ? rte_eth_tx_burst(p->port_id, queue, m, (uint16_t)k) : 0;
	/* Sent mbufs belong to the PMD now: count bytes from d, not from them. */
	for (i = 0; i < sent; i++)
		bytes += d[map[i]].len;
	if (sent < k)
		rte_pktmbuf_free_bulk(m + sent, k - sent);
	if (k < n)
		rte_pktmbuf_free_bulk(m + k, n - k); /* allocated for the dropped ones */
	/* Queue full: d[map[sent]..] waits for a retry, its drops are not final. */
	done = sent < k ? map[sent] : n;
	dropped = drops_before[sent];
	dpdk_count(&q->c.tx_packets, sent);
	dpdk_count(&q->c.tx_bytes, bytes);
	dpdk_count(&q->c.tx_dropped, dropped);
	return done;
}

static unsigned
dpdk_tx_burst(struct firn_net_port *p, uint16_t queue, const struct firn_net_dgram *d, unsigned n)
{
	unsigned done = 0;

	dpdk_thread_check();
	while (done < n) {
		unsigned chunk = FIRN_MIN(n - done, (unsigned)DPDK_MAX_BURST);
		unsigned r = dpdk_tx_chunk(p, queue, d + done, chunk);

		done += r;
		if (r < chunk)
			break;
	}
	return done;
}

static uint32_t
dpdk_max_payload(struct firn_net_port *p)
{
	return p->max_payload;
}

static void
dpdk_stats(struct firn_net_port *p, struct firn_net_stats *out)
{
	struct rte_eth_stats es;
	unsigned i;

	memset(out, 0, sizeof(*out));
	/* Relaxed loads pair with the relaxed stores in dpdk_count(). */
	for (i = 0; i < p->nq; i++) {
		const struct dpdk_counters *c = &p->q[i].c;

		out->rx_packets += __atomic_load_n(&c->rx_packets, __ATOMIC_RELAXED);
		out->rx_bytes += __atomic_load_n(&c->rx_bytes, __ATOMIC_RELAXED);
		out->tx_packets += __atomic_load_n(&c->tx_packets, __ATOMIC_RELAXED);
		out->tx_bytes += __atomic_load_n(&c->tx_bytes, __ATOMIC_RELAXED);
		out->rx_dropped_not_ours +=
		        __atomic_load_n(&c->rx_dropped_not_ours, __ATOMIC_RELAXED);
		out->rx_dropped_bad += __atomic_load_n(&c->rx_dropped_bad, __ATOMIC_RELAXED);
		out->rx_dropped_frag += __atomic_load_n(&c->rx_dropped_frag, __ATOMIC_RELAXED);
		out->tx_dropped += __atomic_load_n(&c->tx_dropped, __ATOMIC_RELAXED);
		out->arp_replies += __atomic_load_n(&c->arp_replies, __ATOMIC_RELAXED);
		out->icmp_replies += __atomic_load_n(&c->icmp_replies, __ATOMIC_RELAXED);
	}
	/* Frames the device lost for want of an mbuf or a free descriptor. */
	if (p->started && rte_eth_stats_get(p->port_id, &es) == 0)
		out->rx_nombuf = es.rx_nombuf + es.imissed;
}

/* ---- open / close ------------------------------------------------------------ */

static void
dpdk_close(struct firn_net_port *p)
{
	if (p == NULL)
		return;
	if (p->started)
		(void)rte_eth_dev_stop(p->port_id);
	if (p->configured)
		(void)rte_eth_dev_close(p->port_id); /* before the pool its queues use */
	rte_mempool_free(p->pool);
	free(p);
	dpdk_eal_put();
}

/*
 * The link MTU: conf->mtu if set, else the device's. A kernel-backed PMD
 * (af_packet, af_xdp, tap: dev_info.if_index != 0) has the kernel
 * interface's MTU as its real limit, whatever its device info says.
 */
static int
dpdk_pick_mtu(const struct firn_net_conf *conf, const struct rte_eth_dev_info *di, uint32_t *mtu,
              bool *set_dev_mtu)
{
	uint32_t want = conf->mtu, kmtu = 0, overhead, limit;
	char ifname[IF_NAMESIZE];

	if (di->if_index != 0 && if_indextoname(di->if_index, ifname) != NULL)
		kmtu = dpdk_iface_mtu(ifname);
	if (want == 0)
		want = kmtu ? kmtu : RTE_ETHER_MTU;
	if (want < 576 || want > DPDK_MAX_MTU)
		return firn_err_set(-EINVAL, "mtu %u is outside 576..%u", want, DPDK_MAX_MTU);
	overhead = RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
	if (di->max_mtu != UINT16_MAX && di->max_rx_pktlen > di->max_mtu)
		overhead = di->max_rx_pktlen - di->max_mtu;
	limit = FIRN_MIN((uint32_t)di->max_mtu, di->max_rx_pktlen - overhead);
	*set_dev_mtu = want <= limit && want >= di->min_mtu;
	if (kmtu != 0) {
		if (want > kmtu)
			return firn_err_set(-EINVAL,
			                    "mtu %u exceeds the %u of interface %s; raise it "
			                    "with 'ip link set %s mtu %u'",
			                    want, kmtu, ifname, ifname, want);
	} else if (!*set_dev_mtu) {
		return firn_err_set(-EINVAL, "mtu %u is more than the device takes (%u)", want,
		                    limit);
	}
	*mtu = want;
	return 0;
}

static int
dpdk_port_start(struct firn_net_port *p, const struct firn_net_conf *conf)
{
	struct rte_eth_conf ec;
	struct rte_eth_dev_info di;
	uint16_t nb_rxd = DPDK_NB_DESC, nb_txd = DPDK_NB_DESC;
	unsigned pool_size = conf->pool_size ? conf->pool_size : DPDK_DEFAULT_POOL;
	uint32_t room, frame;
	bool set_mtu = false;
	char name[RTE_MEMPOOL_NAMESIZE];
	int rc, socket;
	uint16_t i;

	if (!rte_eth_dev_is_valid_port(p->port_id))
		return firn_err_set(-ENODEV,
		                    "no DPDK port %u (%u available; check the EAL's "
		                    "-a/--vdev arguments and the NIC's driver binding)",
		                    p->port_id, rte_eth_dev_count_avail());
	rc = rte_eth_dev_info_get(p->port_id, &di);
	if (rc < 0)
		return firn_err_set(rc, "port %u: device info: %s", p->port_id, rte_strerror(-rc));
	if (p->nq > di.max_rx_queues || p->nq > di.max_tx_queues)
		return firn_err_set(
		        -EINVAL, "port %u (%s) has %u RX / %u TX queues, %u asked%s", p->port_id,
		        di.driver_name, di.max_rx_queues, di.max_tx_queues, p->nq,
		        strstr(di.driver_name, "af_packet") ? " (af_packet: qpairs=N)" : "");
	rc = dpdk_pick_mtu(conf, &di, &p->mtu, &set_mtu);
	if (rc < 0)
		return firn_err_wrap(rc, "port %u (%s)", p->port_id, di.driver_name);
	p->max_payload = p->mtu - 28;

	/* One mbuf holds a whole frame: no chains on receive. */
	frame = FIRN_ALIGN_UP(p->mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + 4, 1024u);
	frame = FIRN_MAX(frame, (uint32_t)RTE_MBUF_DEFAULT_DATAROOM);
	frame = FIRN_MAX(frame, dpdk_eal.af_framesz);
	room = frame + RTE_PKTMBUF_HEADROOM;
	if (room > UINT16_MAX)
		return firn_err_set(-EINVAL, "mbuf data room %u is too large", room);
	if (pool_size < p->nq * (unsigned)(nb_rxd + nb_txd) + 1024)
		return firn_err_set(-EINVAL,
		                    "pool_size %u is too small for %u queue pair(s) of "
		                    "%u+%u descriptors; use at least %u",
		                    pool_size, p->nq, nb_rxd, nb_txd,
		                    p->nq * (nb_rxd + nb_txd) + 1024);
	socket = rte_eth_dev_socket_id(p->port_id);
	if (socket < 0)
		socket = SOCKET_ID_ANY;
	snprintf(name, sizeof(name), "firn_net_%u", p->port_id);
	p->pool = rte_pktmbuf_pool_create(name, pool_size, FIRN_MIN(256u, pool_size / 8), 0,
	                                  (uint16_t)room, socket);
	if (p->pool == NULL)
		return firn_err_set(-ENOMEM, "mbuf pool of %u x %u bytes: %s (EAL memory: -m?)",
		                    pool_size, room, rte_strerror(rte_errno));

	memset(&ec, 0, sizeof(ec));
	if (set_mtu)
		ec.rxmode.mtu = p->mtu;
	if (p->nq > 1 && (di.flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV4_UDP)) {
		ec.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		ec.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_UDP) &
		                                 di.flow_type_rss_offloads;
	} else if (p->nq > 1) {
		FIRN_LOG(INFO, DPDK_LOG, "port %u (%s) cannot hash UDP; its own spreading applies",
		         p->port_id, di.driver_name);
	}
	if ((di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) &&
	    (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_UDP_CKSUM)) {
		ec.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
		p->rx_cksum = true;
	}
	p->tx_ip_cksum = di.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	p->tx_udp_cksum = di.tx_offload_capa & RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
	if (p->tx_ip_cksum)
		ec.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	if (p->tx_udp_cksum)
		ec.txmode.offloads |= RTE_ETH_TX_OFFLOAD_UDP_CKSUM;

	rc = rte_eth_dev_configure(p->port_id, p->nq, p->nq, &ec);
	if (rc < 0)
		return firn_err_set(rc, "port %u: configure: %s", p->port_id, rte_strerror(-rc));
	p->configured = true;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &nb_rxd, &nb_txd);
	if (rc < 0)
		return firn_err_set(rc, "port %u: descriptors: %s", p->port_id, rte_strerror(-rc));
	for (i = 0; i < p->nq; i++) {
		rc = rte_eth_rx_queue_setup(p->port_id, i, nb_rxd, (unsigned)socket, NULL, p->pool);
		if (rc < 0)
			return firn_err_set(rc, "port %u: RX queue %u (mbuf data room %u): %s",
			                    p->port_id, i, room, rte_strerror(-rc));
		rc = rte_eth_tx_queue_setup(p->port_id, i, nb_txd, (unsigned)socket, NULL);
		if (rc < 0)
			return firn_err_set(rc, "port %u: TX queue %u: %s", p->port_id, i,
			                    rte_strerror(-rc));
	}
	rc = rte_eth_dev_start(p->port_id);
	if (rc < 0)
		return firn_err_set(rc, "port %u: start: %s", p->port_id, rte_strerror(-rc));
	p->started = true;
	rc = rte_eth_macaddr_get(p->port_id, &p->mac);
	if (rc < 0)
		return firn_err_set(rc, "port %u: MAC address: %s", p->port_id, rte_strerror(-rc));
	FIRN_LOG(INFO, DPDK_LOG,
	         "port %u (%s) up: " RTE_ETHER_ADDR_PRT_FMT ", %u queue(s), "
	         "MTU %u, mbufs %u x %u B, offloads rx-cksum=%d tx-ip=%d tx-udp=%d",
	         p->port_id, di.driver_name, RTE_ETHER_ADDR_BYTES(&p->mac), p->nq, p->mtu,
	         pool_size, room, p->rx_cksum, p->tx_ip_cksum, p->tx_udp_cksum);
	return 0;
}

static struct firn_net_port *
dpdk_open(const struct firn_net_conf *conf)
{
	struct firn_net_port *p;
	struct sockaddr_in listen;
	struct in_addr addr;
	unsigned prefix, nq;
	int rc;

	if (conf == NULL) {
		firn_err_set(-EINVAL, "DPDK data port: no configuration");
		return NULL;
	}
	nq = conf->rx_queues ? conf->rx_queues : 1;
	if (nq > DPDK_MAX_QUEUES) {
		firn_err_set(-EINVAL, "rx_queues %u exceeds %u", nq, DPDK_MAX_QUEUES);
		return NULL;
	}
	if (conf->listen == NULL) {
		firn_err_set(-EINVAL, "DPDK data port: no listen address (want ADDR:PORT)");
		return NULL;
	}
	rc = firn_net_parse_addr(conf->listen, &listen);
	if (rc == 0 && listen.sin_port == 0)
		rc = firn_err_set(-EINVAL, "DPDK data port: listen port must not be 0");
	if (rc < 0) {
		firn_err_wrap(rc, "DPDK data port listen address");
		return NULL;
	}
	rc = firn_net_parse_cidr(conf->ip, &addr, &prefix);
	if (rc == 0 && listen.sin_addr.s_addr != htonl(INADDR_ANY) &&
	    listen.sin_addr.s_addr != addr.s_addr)
		rc = firn_err_set(-EINVAL, "listen address %s is not the port's address %s",
		                  conf->listen, conf->ip);
	if (rc < 0) {
		firn_err_wrap(rc, "DPDK data port address (ip)");
		return NULL;
	}
	if (posix_memalign((void **)&p, FIRN_CACHE_LINE, sizeof(*p)) != 0) {
		firn_err_set(-ENOMEM, "DPDK data port: out of memory");
		return NULL;
	}
	memset(p, 0, sizeof(*p));
	p->port_id = conf->port_id;
	p->nq = (uint16_t)nq;
	p->ip = addr.s_addr;
	p->netmask = prefix ? htonl(~0u << (32 - prefix)) : 0;
	p->udp_port = listen.sin_port;
	rte_spinlock_init(&p->neigh_lock);

	rc = dpdk_eal_get(conf->eal);
	if (rc < 0) {
		free(p);
		return NULL;
	}
	p->tsc_hz = rte_get_tsc_hz();
	rc = dpdk_port_start(p, conf);
	if (rc < 0) {
		dpdk_close(p);
		return NULL;
	}
	return p;
}

const struct firn_net_ops firn_net_dpdk_ops = {
        .name = "dpdk",
        .open = dpdk_open,
        .close = dpdk_close,
        .rx_burst = dpdk_rx_burst,
        .release = dpdk_release,
        .tx_burst = dpdk_tx_burst,
        .max_payload = dpdk_max_payload,
        .stats = dpdk_stats,
};
