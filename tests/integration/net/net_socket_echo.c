/*
 * net_socket_echo.c - the socket data-port driver on loopback, end to end.
 *
 * A real UDP sender talks to a port opened with firn_net_socket_ops; the
 * test receives through rx_burst, checks every byte and the peer address,
 * echoes with tx_burst and checks the echoes at the sender. Then the edges:
 * datagrams too large to receive or to send, buffer exhaustion with
 * out-of-order release (and release from another thread), several queues
 * on one port with SO_REUSEPORT, and bad configurations.
 *
 * Exit 0 pass, 1 fail, 77 skip. Every wait is bounded; alarm() backs that up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "firn_common.h"
#include "firn_net.h"
#include "firn_net_socket.h"

static const struct firn_net_ops *ops = &firn_net_socket_ops;
static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			failures++;                                                                \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* A port nobody listens on right now (tiny race, acceptable in a test). */
static uint16_t
free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	uint16_t port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int
sender_socket(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timeval tv = {.tv_sec = 2};
	int fd = socket(AF_INET, SOCK_DGRAM, 0), big = 8 << 20;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Payload of datagram seq: its number, then bytes that depend on both. */
static void
fill(uint8_t *buf, uint32_t len, uint32_t seq)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 31 + i * 7 + (i >> 8));
	if (len >= 4)
		memcpy(buf, &seq, 4);
}

static bool
matches(const uint8_t *buf, uint32_t len, uint32_t seq)
{
	static uint8_t want[9216];

	fill(want, len, seq);
	return memcmp(buf, want, len) == 0;
}

/* rx_burst until want datagrams or 3 s; returns how many. */
static unsigned
rx_until(struct firn_net_port *p, uint16_t q, struct firn_net_dgram *d, unsigned want)
{
	uint64_t deadline = firn_mono_ns() + 3000000000ull;
	unsigned got = 0;

	while (got < want && firn_mono_ns() < deadline) {
		unsigned n = ops->rx_burst(p, q, d + got, want - got);

		if (n == 0)
			usleep(100);
		got += n;
	}
	return got;
}

static const uint32_t sizes[] = {0, 1, 4, 100, 999, 1472, 1473, 4000, 8900, 8972};

/* Echo N datagrams of every size in batches; the sender checks the echoes. */
static int
test_echo(void)
{
	struct firn_net_conf conf = {.listen = NULL, .burst = 16};
	struct firn_net_dgram d[16];
	struct firn_net_stats st;
	struct firn_net_port *p;
	struct sockaddr_in me;
	socklen_t mlen = sizeof(me);
	static uint8_t buf[9216];
	char listen[32];
	uint16_t port = free_port();
	uint32_t seq = 0, total = 200;
	uint64_t bytes = 0;
	int fd;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	conf.listen = listen;
	p = ops->open(&conf);
	CHECK(p != NULL, "open %s: %s", listen, firn_err_msg());
	CHECK(ops->max_payload(p) == 8972, "loopback max_payload %u, want 8972 (MTU capped 9000)",
	      ops->max_payload(p));
	fd = sender_socket(port);
	CHECK(fd >= 0, "sender socket");
	CHECK(getsockname(fd, (struct sockaddr *)&me, &mlen) == 0, "getsockname");

	while (seq < total) {
		unsigned batch = FIRN_MIN(16u, total - seq), i, n;

		for (i = 0; i < batch; i++) {
			uint32_t len = sizes[(seq + i) % FIRN_ARRAY_SIZE(sizes)];

			fill(buf, len, seq + i);
			CHECK(send(fd, buf, len, 0) == (ssize_t)len, "send %u: %s", len,
			      strerror(errno));
		}
		n = rx_until(p, 0, d, batch);
		CHECK(n == batch, "received %u of %u datagrams (seq %u)", n, batch, seq);
		for (i = 0; i < n; i++) {
			uint32_t len = sizes[(seq + i) % FIRN_ARRAY_SIZE(sizes)];

			CHECK(d[i].len == len, "datagram %u: %u bytes, want %u", seq + i, d[i].len,
			      len);
			CHECK(matches(d[i].data, len, seq + i), "datagram %u: content differs",
			      seq + i);
			CHECK(d[i].peer.sin_addr.s_addr == me.sin_addr.s_addr &&
			              d[i].peer.sin_port == me.sin_port,
			      "datagram %u: wrong peer", seq + i);
			CHECK(d[i].queue == 0, "queue %u", d[i].queue);
			bytes += len;
		}
		CHECK(ops->tx_burst(p, 0, d, n) == n, "tx_burst short");
		ops->release(p, d, n);
		for (i = 0; i < batch; i++) {
			uint32_t len = sizes[(seq + i) % FIRN_ARRAY_SIZE(sizes)];
			ssize_t r = recv(fd, buf, sizeof(buf), 0);

			CHECK(r == (ssize_t)len, "echo %u: %zd bytes, want %u (%s)", seq + i, r,
			      len, r < 0 ? strerror(errno) : "");
			CHECK(matches(buf, len, seq + i), "echo %u: content differs", seq + i);
		}
		seq += batch;
	}
	ops->stats(p, &st);
	CHECK(st.rx_packets == total && st.tx_packets == total, "stats rx %lu tx %lu, want %u",
	      (unsigned long)st.rx_packets, (unsigned long)st.tx_packets, total);
	CHECK(st.rx_bytes == bytes && st.tx_bytes == bytes, "stats bytes rx %lu tx %lu, want %lu",
	      (unsigned long)st.rx_bytes, (unsigned long)st.tx_bytes, (unsigned long)bytes);

	/* Too large to receive: the kernel truncates, we count and drop it. */
	fill(buf, 8973, 9999);
	CHECK(send(fd, buf, 8973, 0) == 8973, "send 8973");
	fill(buf, 10, 10000);
	CHECK(send(fd, buf, 10, 0) == 10, "send 10");
	CHECK(rx_until(p, 0, d, 1) == 1 && d[0].len == 10 && matches(d[0].data, 10, 10000),
	      "the datagram after an oversized one did not come through");
	/* Too large to send: consumed, counted, nothing on the wire. */
	d[1] = d[0];
	d[1].data = buf;
	d[1].len = 8973;
	CHECK(ops->tx_burst(p, 0, &d[1], 1) == 1, "oversized tx not consumed");
	ops->release(p, d, 1);
	ops->stats(p, &st);
	CHECK(st.rx_dropped_bad == 1, "rx_dropped_bad %lu, want 1",
	      (unsigned long)st.rx_dropped_bad);
	CHECK(st.tx_dropped == 1, "tx_dropped %lu, want 1", (unsigned long)st.tx_dropped);
	CHECK(recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN,
	      "an oversized datagram went out");
	close(fd);
	ops->close(p);
	printf("ok: echo %u datagrams, sizes 0..8972, oversize rx/tx counted\n", total);
	return 0;
}

struct release_job {
	struct firn_net_port *p;
	struct firn_net_dgram *d;
	unsigned n;
};

static void *
release_thread(void *arg)
{
	struct release_job *j = arg;

	ops->release(j->p, j->d, j->n);
	return NULL;
}

/*
 * 8 buffers, 20 datagrams: the ninth rx finds no buffer (rx_nombuf), the
 * kernel keeps the rest; releasing out of order and from another thread
 * lets the rest in, in order, none lost or doubled.
 */
static int
test_exhaustion(void)
{
	struct firn_net_conf conf = {.burst = 4, .pool_size = 8};
	struct firn_net_dgram held[8], d[8];
	struct firn_net_stats st;
	struct firn_net_port *p;
	struct release_job job;
	pthread_t th;
	uint8_t buf[64];
	char listen[32];
	uint16_t port = free_port();
	uint32_t next = 0, i;
	unsigned n;
	int fd;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	conf.listen = listen;
	p = ops->open(&conf);
	CHECK(p != NULL, "open: %s", firn_err_msg());
	fd = sender_socket(port);
	CHECK(fd >= 0, "sender");
	for (i = 0; i < 20; i++) {
		fill(buf, 32, i);
		CHECK(send(fd, buf, 32, 0) == 32, "send");
	}
	n = rx_until(p, 0, held, 8);
	CHECK(n == 8, "got %u of the 8 buffers' worth", n);
	for (i = 0; i < 8; i++, next++)
		CHECK(matches(held[i].data, 32, next), "datagram %u out of order", next);
	CHECK(ops->rx_burst(p, 0, d, 8) == 0, "received with every buffer held");
	ops->stats(p, &st);
	CHECK(st.rx_nombuf >= 1, "rx_nombuf not counted");

	/* Give back 1, 3, 5, 7 (out of order, from another thread). */
	for (i = 0; i < 4; i++)
		d[i] = held[7 - 2 * i];
	job = (struct release_job){p, d, 4};
	CHECK(pthread_create(&th, NULL, release_thread, &job) == 0, "pthread_create");
	pthread_join(th, NULL);
	n = rx_until(p, 0, d, 4);
	CHECK(n == 4, "after releasing 4: got %u", n);
	for (i = 0; i < 4; i++, next++)
		CHECK(matches(d[i].data, 32, next), "datagram %u out of order", next);
	/* Still held buffers 0, 2, 4, 6 must not have been overwritten. */
	for (i = 0; i < 8; i += 2)
		CHECK(matches(held[i].data, 32, i), "held buffer %u overwritten", i);
	ops->release(p, d, 4);
	for (i = 0; i < 4; i++)
		d[i] = held[2 * i];
	ops->release(p, d, 4);
	n = rx_until(p, 0, d, 8);
	CHECK(n == 8, "the last 8: got %u", n);
	for (i = 0; i < 8; i++, next++)
		CHECK(matches(d[i].data, 32, next), "datagram %u out of order", next);
	ops->release(p, d, 8);
	CHECK(ops->rx_burst(p, 0, d, 8) == 0, "a datagram appeared twice");
	close(fd);
	ops->close(p);
	printf("ok: 8 buffers, 20 datagrams, out-of-order and cross-thread release\n");
	return 0;
}

/* Two queues on one port: many senders spread over both, nothing lost. */
static int
test_queues(void)
{
	struct firn_net_conf conf = {.rx_queues = 2};
	struct firn_net_dgram d[32];
	struct firn_net_port *p;
	unsigned per_q[2] = {0, 0}, got = 0, s, q, n;
	uint8_t buf[64], seen[64];
	char listen[32];
	uint16_t port = free_port();
	uint64_t deadline;
	int fds[16];

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	conf.listen = listen;
	p = ops->open(&conf);
	CHECK(p != NULL, "open 2 queues: %s", firn_err_msg());
	memset(seen, 0, sizeof(seen));
	for (s = 0; s < 16; s++) {
		fds[s] = sender_socket(port);
		CHECK(fds[s] >= 0, "sender %u", s);
		fill(buf, 8, s);
		CHECK(send(fds[s], buf, 8, 0) == 8, "send");
	}
	deadline = firn_mono_ns() + 3000000000ull;
	while (got < 16 && firn_mono_ns() < deadline) {
		for (q = 0; q < 2; q++) {
			unsigned i;

			n = ops->rx_burst(p, (uint16_t)q, d, 32);
			for (i = 0; i < n; i++) {
				uint32_t seq;

				CHECK(d[i].queue == q, "queue field %u on queue %u", d[i].queue, q);
				memcpy(&seq, d[i].data, 4);
				CHECK(seq < 16 && !seen[seq] && matches(d[i].data, 8, seq),
				      "bad or duplicate datagram %u", seq);
				seen[seq] = 1;
			}
			per_q[q] += n;
			got += n;
			ops->release(p, d, n);
		}
		usleep(100);
	}
	for (s = 0; s < 16; s++)
		close(fds[s]);
	ops->close(p);
	CHECK(got == 16, "two queues received %u of 16", got);
	printf("ok: 2 queues (SO_REUSEPORT): %u + %u datagrams\n", per_q[0], per_q[1]);
	return 0;
}

static int
test_bad_conf(void)
{
	struct firn_net_conf conf = {.listen = "localhost"};
	struct firn_net_port *p, *p2;
	char listen[32];

	CHECK(ops->open(&conf) == NULL, "opened 'localhost'");
	CHECK(strstr(firn_err_msg(), "ADDR:PORT") != NULL, "message: %s", firn_err_msg());
	conf.listen = "127.0.0.1:99999";
	CHECK(ops->open(&conf) == NULL, "opened port 99999");
	conf.listen = "127.0.0.1:7400";
	conf.mtu = 100;
	CHECK(ops->open(&conf) == NULL, "opened with mtu 100");
	conf.mtu = 1500;
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
	conf.listen = listen;
	p = ops->open(&conf);
	CHECK(p != NULL, "open with mtu 1500: %s", firn_err_msg());
	CHECK(ops->max_payload(p) == 1472, "mtu 1500 gives max_payload %u", ops->max_payload(p));
	p2 = ops->open(&conf);
	CHECK(p2 == NULL && firn_err_code() == -EADDRINUSE, "second open of %s: %s", listen,
	      firn_err_msg());
	ops->close(p);
	conf.mtu = 0;
	conf.listen = "0.0.0.0:0";
	p = ops->open(&conf);
	CHECK(p != NULL, "open wildcard: %s", firn_err_msg());
	CHECK(ops->max_payload(p) == 1472, "wildcard max_payload %u, want 1472",
	      ops->max_payload(p));
	ops->close(p);
	printf("ok: bad configurations refused with reasons\n");
	return 0;
}

int
main(void)
{
	alarm(60);
	test_echo();
	test_exhaustion();
	test_queues();
	test_bad_conf();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("net_socket_echo: all passed\n");
	return 0;
}
