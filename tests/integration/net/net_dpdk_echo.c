/*
 * net_dpdk_echo.c - a DPDK data port that echoes UDP, for the veth tests
 * and the raw-packet-path measurement.
 *
 *   net_dpdk_echo --eal "EAL ARGS" --ip ADDR/PREFIX [--listen ADDR:PORT]
 *                 [--mtu N] [--queues N] [--mode echo|rxonly] [--seconds S]
 *                 [--ready FILE]
 *
 * echo:   every datagram goes back to its sender through tx_burst. Two
 *         control datagrams: "QUIT" stops; "SENDTO A.B.C.D PORT" makes the
 *         port send "HELLO" to that address, retrying every 100 ms for up to
 *         3 s - the destination is unknown to the port, so this exercises
 *         ARP resolution from the transmit side.
 * rxonly: datagrams are counted and released; "QUIT" stops. Prints
 *         rx_pps over the span from the first to the last datagram.
 *
 * The port is polled from a plain pthread, as firnd's RX agents do (so the
 * driver's non-EAL thread registration runs), round-robin over --queues
 * queues (default 1; af_packet needs qpairs=N in its --vdev to match).
 * Stops after --seconds (default 30) in any case. Prints "ready ..." (and
 * touches --ready) once the port is up, the port's counters as key=value
 * at the end, and exits 0; 2 if the port does not open (reason on stderr).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "firn_common.h"
#include "firn_net.h"
#include "firn_net_dpdk.h"

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: net_dpdk_echo --eal ARGS --ip ADDR/PREFIX [--listen ADDR:PORT] "
	                "[--mtu N] [--mode echo|rxonly] [--seconds S] [--ready FILE]\n");
	exit(2);
}

static void
print_stats(const struct firn_net_ops *ops, struct firn_net_port *p)
{
	struct firn_net_stats s;

	ops->stats(p, &s);
	printf("rx_packets=%lu rx_bytes=%lu tx_packets=%lu tx_bytes=%lu\n",
	       (unsigned long)s.rx_packets, (unsigned long)s.rx_bytes, (unsigned long)s.tx_packets,
	       (unsigned long)s.tx_bytes);
	printf("rx_dropped_not_ours=%lu rx_dropped_bad=%lu rx_dropped_frag=%lu rx_nombuf=%lu "
	       "tx_dropped=%lu arp_replies=%lu icmp_replies=%lu\n",
	       (unsigned long)s.rx_dropped_not_ours, (unsigned long)s.rx_dropped_bad,
	       (unsigned long)s.rx_dropped_frag, (unsigned long)s.rx_nombuf,
	       (unsigned long)s.tx_dropped, (unsigned long)s.arp_replies,
	       (unsigned long)s.icmp_replies);
	fflush(stdout);
}

struct echo {
	const struct firn_net_ops *ops;
	struct firn_net_port *p;
	unsigned nq;
	bool rxonly;
	uint64_t seconds;
	/* results */
	uint64_t first_ns, last_ns, count;
	bool sendto_done;
};

/* Parse "SENDTO A.B.C.D PORT" into hello; false if it is not one. */
static bool
parse_sendto(const struct firn_net_dgram *d, struct firn_net_dgram *hello)
{
	char text[40], *sp;
	uint64_t port;

	if (d->len <= 7 || d->len >= 40 || memcmp(d->data, "SENDTO ", 7) != 0)
		return false;
	memcpy(text, d->data + 7, d->len - 7);
	text[d->len - 7] = '\0';
	sp = strchr(text, ' ');
	if (sp == NULL)
		return false;
	*sp = '\0';
	memset(hello, 0, sizeof(*hello));
	hello->peer.sin_family = AF_INET;
	if (inet_pton(AF_INET, text, &hello->peer.sin_addr) != 1 ||
	    firn_parse_u64(sp + 1, &port) < 0 || port > 65535)
		return false;
	hello->peer.sin_port = htons((uint16_t)port);
	hello->data = (const uint8_t *)"HELLO";
	hello->len = 5;
	return true;
}

static void *
echo_loop(void *arg)
{
	struct echo *e = arg;
	const struct firn_net_ops *ops = e->ops;
	struct firn_net_dgram d[32], hello;
	uint64_t deadline = firn_mono_ns() + e->seconds * 1000000000ull;
	uint64_t sendto_until = 0, sendto_next = 0, sendto_tries = 0;
	bool sendto_pending = false, quit = false;
	uint16_t q = 0;

	while (!stop && !quit && firn_mono_ns() < deadline) {
		unsigned n, k, sent = 0, tries = 0;

		q = (uint16_t)((q + 1) % e->nq);
		n = ops->rx_burst(e->p, q, d, 32);
		/* The SENDTO retry: one datagram, until the counter says it left. */
		if (sendto_pending && firn_mono_ns() >= sendto_next) {
			struct firn_net_stats before, after;

			ops->stats(e->p, &before);
			(void)ops->tx_burst(e->p, 0, &hello, 1);
			ops->stats(e->p, &after);
			sendto_tries++;
			if (after.tx_packets > before.tx_packets) {
				sendto_pending = false;
				e->sendto_done = true;
				printf("sendto: sent after %lu tries\n",
				       (unsigned long)sendto_tries);
				fflush(stdout);
			} else if (firn_mono_ns() > sendto_until) {
				sendto_pending = false;
				printf("sendto: gave up after %lu tries\n",
				       (unsigned long)sendto_tries);
				fflush(stdout);
			}
			sendto_next = firn_mono_ns() + 100000000ull;
		}
		if (n == 0)
			continue;
		for (k = 0; k < n; k++) {
			if (d[k].len == 4 && memcmp(d[k].data, "QUIT", 4) == 0)
				quit = true;
			if (!sendto_pending && parse_sendto(&d[k], &hello)) {
				sendto_pending = true;
				sendto_tries = 0;
				sendto_next = 0;
				sendto_until = firn_mono_ns() + 3000000000ull;
			}
		}
		if (e->rxonly) {
			uint64_t now = firn_mono_ns();

			if (e->count == 0)
				e->first_ns = now;
			e->last_ns = now;
			e->count += n;
		} else {
			/* Bounded retry when the TX queue is momentarily full. */
			while (sent < n && tries++ < 1000)
				sent += ops->tx_burst(e->p, q, d + sent, n - sent);
		}
		ops->release(e->p, d, n);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	const struct firn_net_ops *ops = &firn_net_dpdk_ops;
	struct firn_net_conf conf = {.listen = "0.0.0.0:7400"};
	const char *mode = "echo", *ready = NULL;
	struct echo e = {.ops = ops, .seconds = 30};
	pthread_t th;
	uint64_t v;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (val == NULL)
			usage();
		if (strcmp(a, "--eal") == 0)
			conf.eal = val;
		else if (strcmp(a, "--ip") == 0)
			conf.ip = val;
		else if (strcmp(a, "--listen") == 0)
			conf.listen = val;
		else if (strcmp(a, "--mode") == 0)
			mode = val;
		else if (strcmp(a, "--ready") == 0)
			ready = val;
		else if (strcmp(a, "--mtu") == 0 && firn_parse_u64(val, &v) == 0 && v < 65536)
			conf.mtu = (uint32_t)v;
		else if (strcmp(a, "--queues") == 0 && firn_parse_u64(val, &v) == 0 && v >= 1 &&
		         v <= 64)
			conf.rx_queues = (unsigned)v;
		else if (strcmp(a, "--seconds") == 0 && firn_parse_u64(val, &e.seconds) == 0 &&
		         e.seconds <= 3600)
			;
		else
			usage();
		i++;
	}
	if (strcmp(mode, "echo") != 0 && strcmp(mode, "rxonly") != 0)
		usage();
	e.rxonly = strcmp(mode, "rxonly") == 0;
	e.nq = conf.rx_queues ? conf.rx_queues : 1;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	e.p = ops->open(&conf);
	if (e.p == NULL) {
		fprintf(stderr, "net_dpdk_echo: %s\n", firn_err_msg());
		return 2;
	}
	printf("ready max_payload=%u\n", ops->max_payload(e.p));
	fflush(stdout);
	if (ready != NULL) {
		FILE *f = fopen(ready, "w");

		if (f != NULL)
			fclose(f);
	}
	if (pthread_create(&th, NULL, echo_loop, &e) != 0) {
		fprintf(stderr, "net_dpdk_echo: pthread_create failed\n");
		ops->close(e.p);
		return 1;
	}
	pthread_join(th, NULL);
	if (e.rxonly) {
		double span = (double)(e.last_ns - e.first_ns) / 1e9;

		printf("rxonly: datagrams=%lu span_s=%.3f rx_pps=%.0f\n", (unsigned long)e.count,
		       span, span > 0 ? (double)e.count / span : 0.0);
	}
	if (e.sendto_done)
		printf("sendto: ok\n");
	print_stats(ops, e.p);
	ops->close(e.p);
	return 0;
}
