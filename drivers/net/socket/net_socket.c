/*
 * net_socket.c - firn's data port over kernel UDP sockets.
 *
 * The story of a datagram: each queue owns a nonblocking UDP socket and a
 * ring of fixed-size buffers allocated at open. rx_burst() picks up to a
 * burst of free buffers, walking the ring from where it stopped last time,
 * points one recvmmsg() iovec at each, and hands the filled ones to the
 * caller as firn_net_dgram with handle = the buffer's index. The caller
 * parses in place and may pass the datagram over a ring to a writer thread;
 * whoever is done with it calls release(), which only clears the buffer's
 * busy flag. The ring walk skips buffers still held, so one slow holder does
 * not stall the queue; when every buffer is held, rx_burst() returns 0 and
 * counts rx_nombuf, and the kernel's socket buffer absorbs the burst.
 *
 * TX builds one mmsghdr per datagram pointing at the caller's payload and
 * sends them with sendmmsg(); the kernel copies, so the caller keeps its
 * buffers. No copy, malloc, log or lock per datagram on either path: one
 * syscall per burst.
 *
 * Counters live in each queue's cache line and are written by the queue's
 * own thread only; stats() sums them from another thread with relaxed loads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "firn_common.h"
#include "firn_net.h"
#include "firn_net_socket.h"

#define SOCK_LOG "net-socket"
#define SOCK_MAX_QUEUES 64
#define SOCK_MAX_BURST 256
#define SOCK_DEFAULT_BUFS 2048
#define SOCK_UDP_IP_OVERHEAD 28 /* IPv4 header without options + UDP header */
/* Receive buffers are never smaller than a jumbo frame's payload. */
#define SOCK_MIN_RX_PAYLOAD (9000 - SOCK_UDP_IP_OVERHEAD)
#define SOCK_RCVBUF (8 << 20)
#define SOCK_SNDBUF (4 << 20)

struct sock_counters {
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t rx_dropped_bad, rx_nombuf, tx_dropped;
};

struct sock_queue {
	int fd;
	uint32_t nbufs;
	uint32_t buf_size; /* stride between buffers (cache-line multiple) */
	uint32_t rx_len;   /* longest datagram accepted; longer ones are truncated */
	uint32_t next;     /* where the next ring walk starts; queue thread only */
	unsigned burst;    /* capacity of the mmsghdr arrays */
	uint8_t *bufs;     /* nbufs * buf_size */
	/*
	 * busy[i] is 1 from the moment rx_burst() hands buffer i out until
	 * release(). The release store in sock_release() pairs with the acquire
	 * load in sock_rx_burst(): once the queue thread sees 0 it may let the
	 * kernel overwrite the buffer, because the holder's reads happened
	 * before its store.
	 */
	uint32_t *busy;
	struct sockaddr_in *rx_names; /* per burst slot */
	struct mmsghdr *rx_msgs;
	struct iovec *rx_iov;
	uint32_t *rx_idx; /* buffer index per burst slot */
	struct sockaddr_in *tx_names;
	struct mmsghdr *tx_msgs;
	struct iovec *tx_iov;
	struct sock_counters c FIRN_CACHE_ALIGNED;
} FIRN_CACHE_ALIGNED;

struct firn_net_port {
	struct sockaddr_in addr;
	uint32_t max_payload;
	unsigned nq;
	struct sock_queue *q; /* nq entries, cache aligned */
};

/*
 * Counters have a single writer (the queue's thread). The relaxed store
 * pairs with the relaxed load in sock_stats(): a reader sees a whole value,
 * possibly a burst old, never a torn one.
 */
static inline void
sock_count(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, *c + v, __ATOMIC_RELAXED);
}

static uint64_t
sock_read(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/*
 * MTU of the interface that holds addr, or 0 if none does. Loopback is
 * capped at 9000 so a test on 127.0.0.1 sees what a jumbo-frame link gives.
 */
static uint32_t
sock_iface_mtu(struct in_addr addr)
{
	struct ifaddrs *ifs, *i;
	uint32_t mtu = 0;
	struct ifreq ifr;
	int fd;

	if (getifaddrs(&ifs) < 0)
		return 0;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	for (i = ifs; fd >= 0 && i != NULL; i = i->ifa_next) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)i->ifa_addr;

		if (sin == NULL || sin->sin_family != AF_INET ||
		    sin->sin_addr.s_addr != addr.s_addr)
			continue;
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", i->ifa_name);
		if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) {
			mtu = (uint32_t)ifr.ifr_mtu;
			if (i->ifa_flags & IFF_LOOPBACK)
				mtu = FIRN_MIN(mtu, 9000u);
		}
		break;
	}
	if (fd >= 0)
		close(fd);
	freeifaddrs(ifs);
	return mtu;
}

static int
sock_setopt_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v)) < 0 ? -errno : 0;
}

static int
sock_queue_open(struct firn_net_port *p, struct sock_queue *q, unsigned nbufs, unsigned burst,
                uint32_t rx_len)
{
	uint32_t buf_size = FIRN_ALIGN_UP(rx_len, (uint32_t)FIRN_CACHE_LINE);
	unsigned i;
	int rc;

	q->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd < 0)
		return firn_err_set(-errno, "socket: %s", strerror(errno));
	if (p->nq > 1) {
		rc = sock_setopt_int(q->fd, SOL_SOCKET, SO_REUSEPORT, 1);
		if (rc < 0)
			return firn_err_set(rc, "SO_REUSEPORT: %s", strerror(-rc));
	}
	/*
	 * A deep receive buffer is what absorbs a burst while the pipeline is
	 * behind; FORCE passes the sysctl cap when we may (root), else we take
	 * what rmem_max allows. Neither failure is fatal.
	 */
	if (sock_setopt_int(q->fd, SOL_SOCKET, SO_RCVBUFFORCE, SOCK_RCVBUF) < 0)
		(void)sock_setopt_int(q->fd, SOL_SOCKET, SO_RCVBUF, SOCK_RCVBUF);
	if (sock_setopt_int(q->fd, SOL_SOCKET, SO_SNDBUFFORCE, SOCK_SNDBUF) < 0)
		(void)sock_setopt_int(q->fd, SOL_SOCKET, SO_SNDBUF, SOCK_SNDBUF);
	/* Never let the kernel fragment: the protocol splits records itself. */
	rc = sock_setopt_int(q->fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO);
	if (rc < 0)
		return firn_err_set(rc, "IP_MTU_DISCOVER: %s", strerror(-rc));
	if (bind(q->fd, (const struct sockaddr *)&p->addr, sizeof(p->addr)) < 0) {
		char a[INET_ADDRSTRLEN];

		rc = -errno;
		inet_ntop(AF_INET, &p->addr.sin_addr, a, sizeof(a));
		return firn_err_set(rc, "bind UDP %s:%u: %s", a, ntohs(p->addr.sin_port),
		                    strerror(-rc));
	}
	if (p->addr.sin_port == 0) {
		/* Port 0 asked for any port: the next queues must share this one. */
		socklen_t len = sizeof(p->addr);

		if (getsockname(q->fd, (struct sockaddr *)&p->addr, &len) < 0)
			return firn_err_set(-errno, "getsockname: %s", strerror(errno));
	}

	q->nbufs = nbufs;
	q->buf_size = buf_size;
	q->rx_len = rx_len;
	q->burst = burst;
	if (posix_memalign((void **)&q->bufs, FIRN_CACHE_LINE, (size_t)nbufs * buf_size) != 0)
		q->bufs = NULL;
	q->busy = calloc(nbufs, sizeof(*q->busy));
	q->rx_names = calloc(burst, sizeof(*q->rx_names));
	q->rx_msgs = calloc(burst, sizeof(*q->rx_msgs));
	q->rx_iov = calloc(burst, sizeof(*q->rx_iov));
	q->rx_idx = calloc(burst, sizeof(*q->rx_idx));
	q->tx_names = calloc(burst, sizeof(*q->tx_names));
	q->tx_msgs = calloc(burst, sizeof(*q->tx_msgs));
	q->tx_iov = calloc(burst, sizeof(*q->tx_iov));
	if (!q->bufs || !q->busy || !q->rx_names || !q->rx_msgs || !q->rx_iov || !q->rx_idx ||
	    !q->tx_names || !q->tx_msgs || !q->tx_iov)
		return firn_err_set(-ENOMEM, "%u receive buffers of %u bytes: out of memory", nbufs,
		                    buf_size);
	/* The headers point at fixed per-slot storage; only iov_base changes. */
	for (i = 0; i < burst; i++) {
		q->rx_msgs[i].msg_hdr.msg_iov = &q->rx_iov[i];
		q->rx_msgs[i].msg_hdr.msg_iovlen = 1;
		q->tx_msgs[i].msg_hdr.msg_name = &q->tx_names[i];
		q->tx_msgs[i].msg_hdr.msg_namelen = sizeof(q->tx_names[i]);
		q->tx_msgs[i].msg_hdr.msg_iov = &q->tx_iov[i];
		q->tx_msgs[i].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

static void
sock_queue_close(struct sock_queue *q)
{
	if (q->fd >= 0)
		close(q->fd);
	free(q->bufs);
	free(q->busy);
	free(q->rx_names);
	free(q->rx_msgs);
	free(q->rx_iov);
	free(q->rx_idx);
	free(q->tx_names);
	free(q->tx_msgs);
	free(q->tx_iov);
}

static void
sock_close(struct firn_net_port *p)
{
	unsigned i;

	if (p == NULL)
		return;
	for (i = 0; p->q != NULL && i < p->nq; i++)
		sock_queue_close(&p->q[i]);
	free(p->q);
	free(p);
}

static struct firn_net_port *
sock_open(const struct firn_net_conf *conf)
{
	unsigned nq, burst, nbufs, i;
	struct firn_net_port *p;
	uint32_t mtu, rx_len;
	int rc;

	if (conf == NULL || conf->listen == NULL) {
		firn_err_set(-EINVAL, "socket data port: no listen address (want ADDR:PORT)");
		return NULL;
	}
	nq = conf->rx_queues ? conf->rx_queues : 1;
	burst = conf->burst ? conf->burst : 32;
	nbufs = conf->pool_size ? conf->pool_size : SOCK_DEFAULT_BUFS;
	if (nq > SOCK_MAX_QUEUES) {
		firn_err_set(-EINVAL, "rx_queues %u exceeds the socket driver's %u", nq,
		             SOCK_MAX_QUEUES);
		return NULL;
	}
	if (burst > SOCK_MAX_BURST) {
		firn_err_set(-EINVAL, "burst %u exceeds the socket driver's %u", burst,
		             SOCK_MAX_BURST);
		return NULL;
	}
	if (nbufs / nq < burst) {
		firn_err_set(-EINVAL, "pool_size %u gives fewer than burst (%u) buffers per queue",
		             nbufs, burst);
		return NULL;
	}
	if (conf->mtu != 0 && (conf->mtu < 576 || conf->mtu > 9216)) {
		firn_err_set(-EINVAL, "mtu %u is outside 576..9216", conf->mtu);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		firn_err_set(-ENOMEM, "socket data port: out of memory");
		return NULL;
	}
	rc = firn_net_parse_addr(conf->listen, &p->addr);
	if (rc < 0) {
		firn_err_wrap(rc, "socket data port listen address");
		free(p);
		return NULL;
	}
	if (conf->mtu != 0)
		mtu = conf->mtu;
	else if (p->addr.sin_addr.s_addr == htonl(INADDR_ANY) ||
	         (mtu = sock_iface_mtu(p->addr.sin_addr)) == 0)
		mtu = 1500;
	mtu = FIRN_MIN(mtu, 9216u);
	p->max_payload = mtu - SOCK_UDP_IP_OVERHEAD;
	rx_len = FIRN_MAX(p->max_payload, (uint32_t)SOCK_MIN_RX_PAYLOAD);

	p->nq = nq;
	if (posix_memalign((void **)&p->q, FIRN_CACHE_LINE, nq * sizeof(*p->q)) != 0) {
		firn_err_set(-ENOMEM, "socket data port: out of memory");
		free(p);
		return NULL;
	}
	memset(p->q, 0, nq * sizeof(*p->q));
	for (i = 0; i < nq; i++)
		p->q[i].fd = -1;
	for (i = 0; i < nq; i++) {
		rc = sock_queue_open(p, &p->q[i], nbufs / nq, burst, rx_len);
		if (rc < 0) {
			firn_err_wrap(rc, "socket data port queue %u of %s", i, conf->listen);
			sock_close(p);
			return NULL;
		}
	}
	FIRN_LOG(INFO, SOCK_LOG,
	         "listening on %s: %u queue(s) of %u buffers, receives up to %u "
	         "bytes, sends up to %u",
	         conf->listen, nq, nbufs / nq, rx_len, p->max_payload);
	return p;
}

static unsigned
sock_rx_burst(struct firn_net_port *p, uint16_t queue, struct firn_net_dgram *d, unsigned max)
{
	struct sock_queue *q = &p->q[queue];
	unsigned want = FIRN_MIN(max, q->burst);
	uint32_t idx = q->next, scanned, k = 0;
	uint64_t bytes = 0, bad = 0;
	unsigned out = 0;
	int i, r;

	/* Gather free buffers in ring order, skipping those still held. */
	for (scanned = 0; scanned < q->nbufs && k < want; scanned++) {
		if (__atomic_load_n(&q->busy[idx], __ATOMIC_ACQUIRE) == 0) {
			struct mmsghdr *m = &q->rx_msgs[k];

			q->rx_idx[k] = idx;
			q->rx_iov[k].iov_base = q->bufs + (size_t)idx * q->buf_size;
			q->rx_iov[k].iov_len = q->rx_len;
			m->msg_hdr.msg_name = &q->rx_names[k];
			m->msg_hdr.msg_namelen = sizeof(q->rx_names[k]);
			m->msg_hdr.msg_control = NULL;
			m->msg_hdr.msg_controllen = 0;
			m->msg_hdr.msg_flags = 0;
			k++;
		}
		if (++idx == q->nbufs)
			idx = 0;
	}
	if (k == 0) {
		if (want > 0)
			sock_count(&q->c.rx_nombuf, 1);
		return 0;
	}
	r = recvmmsg(q->fd, q->rx_msgs, k, MSG_DONTWAIT, NULL);
	if (r <= 0)
		return 0; /* EAGAIN: nothing waiting; nothing else is expected here */
	for (i = 0; i < r; i++) {
		const struct mmsghdr *m = &q->rx_msgs[i];
		uint32_t b = q->rx_idx[i];

		if (firn_unlikely((m->msg_hdr.msg_flags & MSG_TRUNC) ||
		                  m->msg_hdr.msg_namelen != sizeof(struct sockaddr_in))) {
			bad++;
			continue;
		}
		/* Relaxed: only this thread reads busy as 1; release() stores 0. */
		__atomic_store_n(&q->busy[b], 1, __ATOMIC_RELAXED);
		d[out].peer = q->rx_names[i];
		d[out].data = q->bufs + (size_t)b * q->buf_size;
		d[out].len = m->msg_len;
		d[out].queue = queue;
		d[out].handle = (void *)(uintptr_t)b;
		bytes += m->msg_len;
		out++;
	}
	/* Buffers gathered but not filled are first in line next time. */
	q->next = q->rx_idx[r - 1] + 1 == q->nbufs ? 0 : q->rx_idx[r - 1] + 1;
	sock_count(&q->c.rx_packets, out);
	sock_count(&q->c.rx_bytes, bytes);
	if (bad)
		sock_count(&q->c.rx_dropped_bad, bad);
	return out;
}

static void
sock_release(struct firn_net_port *p, struct firn_net_dgram *d, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		struct sock_queue *q = &p->q[d[i].queue];

		/* Pairs with the acquire load in sock_rx_burst(). */
		__atomic_store_n(&q->busy[(uintptr_t)d[i].handle], 0, __ATOMIC_RELEASE);
	}
}

/* Send d[0..n) with n <= q->burst; returns how many were consumed. */
static unsigned
sock_tx_chunk(struct firn_net_port *p, struct sock_queue *q, const struct firn_net_dgram *d,
              unsigned n)
{
	unsigned map[SOCK_MAX_BURST]; /* tx_msgs slot -> index in d */
	uint64_t bytes = 0, dropped = 0;
	unsigned i, k = 0, slot = 0, sent = 0, done;

	for (i = 0; i < n; i++) {
		if (firn_unlikely(d[i].len > p->max_payload))
			continue; /* never fragment: counted as dropped below */
		q->tx_names[k] = d[i].peer;
		q->tx_iov[k].iov_base = (void *)(uintptr_t)d[i].data;
		q->tx_iov[k].iov_len = d[i].len;
		map[k++] = i;
	}
	/* Each turn sends at least one datagram, drops one, or stops. */
	while (slot < k) {
		int r = sendmmsg(q->fd, &q->tx_msgs[slot], k - slot, MSG_DONTWAIT);

		if (r > 0) {
			unsigned j;

			for (j = slot; j < slot + (unsigned)r; j++)
				bytes += q->tx_iov[j].iov_len;
			sent += (unsigned)r;
			slot += (unsigned)r;
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
			break; /* socket buffer full: the caller retries the rest */
		/* This datagram cannot go at all (EMSGSIZE on a smaller path...). */
		dropped++;
		slot++;
	}
	done = slot < k ? map[slot] : n;
	/* Oversized ones past `done` are not consumed yet: count them on retry. */
	for (i = 0; i < done; i++)
		dropped += d[i].len > p->max_payload;
	sock_count(&q->c.tx_packets, sent);
	sock_count(&q->c.tx_bytes, bytes);
	if (dropped)
		sock_count(&q->c.tx_dropped, dropped);
	return done;
}

static unsigned
sock_tx_burst(struct firn_net_port *p, uint16_t queue, const struct firn_net_dgram *d, unsigned n)
{
	struct sock_queue *q = &p->q[queue];
	unsigned done = 0;

	while (done < n) {
		unsigned chunk = FIRN_MIN(n - done, q->burst);
		unsigned r = sock_tx_chunk(p, q, d + done, chunk);

		done += r;
		if (r < chunk)
			break;
	}
	return done;
}

static uint32_t
sock_max_payload(struct firn_net_port *p)
{
	return p->max_payload;
}

static void
sock_stats(struct firn_net_port *p, struct firn_net_stats *out)
{
	unsigned i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < p->nq; i++) {
		const struct sock_counters *c = &p->q[i].c;

		out->rx_packets += sock_read(&c->rx_packets);
		out->rx_bytes += sock_read(&c->rx_bytes);
		out->tx_packets += sock_read(&c->tx_packets);
		out->tx_bytes += sock_read(&c->tx_bytes);
		out->rx_dropped_bad += sock_read(&c->rx_dropped_bad);
		out->rx_nombuf += sock_read(&c->rx_nombuf);
		out->tx_dropped += sock_read(&c->tx_dropped);
	}
}

const struct firn_net_ops firn_net_socket_ops = {
        .name = "socket",
        .open = sock_open,
        .close = sock_close,
        .rx_burst = sock_rx_burst,
        .release = sock_release,
        .tx_burst = sock_tx_burst,
        .max_payload = sock_max_payload,
        .stats = sock_stats,
};
