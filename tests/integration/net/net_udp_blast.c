/*
 * net_udp_blast.c - a bounded UDP sender for measuring a receive path.
 *
 *   net_udp_blast --dst ADDR:PORT [--size BYTES] [--seconds S] [--count N]
 *                 [--batch B] [--quit]
 *
 * Sends datagrams of --size bytes (default 100) with sendmmsg in batches of
 * --batch (default 64) for --seconds (default 1, at most 60) or --count
 * datagrams, whichever ends first; a full socket buffer is waited out with
 * poll, so the sender runs at whatever rate the kernel path takes. Each
 * datagram carries its sequence number in its first 8 bytes. --quit then
 * sends "QUIT" (three times, 50 ms apart) to stop a receiver. Prints
 * "blast: sent=N secs=S pps=P".
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "firn_common.h"
#include "firn_net.h"

#define BLAST_MAX_BATCH 256

int
main(int argc, char **argv)
{
	struct mmsghdr msgs[BLAST_MAX_BATCH];
	struct iovec iov[BLAST_MAX_BATCH];
	static uint8_t bufs[BLAST_MAX_BATCH][9216];
	struct sockaddr_in dst;
	uint64_t size = 100, seconds = 1, count = UINT64_MAX, batch = 64, sent = 0, t0, end;
	bool quit = false, have_dst = false;
	int fd, i, sndbuf = 4 << 20;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		int rc = 0;

		if (strcmp(a, "--quit") == 0) {
			quit = true;
			continue;
		}
		if (strcmp(a, "--dst") == 0)
			have_dst = (rc = firn_net_parse_addr(v, &dst)) == 0;
		else if (strcmp(a, "--size") == 0)
			rc = firn_parse_u64(v, &size);
		else if (strcmp(a, "--seconds") == 0)
			rc = firn_parse_u64(v, &seconds);
		else if (strcmp(a, "--count") == 0)
			rc = firn_parse_u64(v, &count);
		else if (strcmp(a, "--batch") == 0)
			rc = firn_parse_u64(v, &batch);
		else
			rc = -EINVAL;
		if (rc < 0 || size > sizeof(bufs[0]) || size < 8 || seconds > 60 || batch == 0 ||
		    batch > BLAST_MAX_BATCH) {
			fprintf(stderr,
			        "usage: net_udp_blast --dst ADDR:PORT [--size 8..9216] "
			        "[--seconds 0..60] [--count N] [--batch 1..256] [--quit]\n");
			return 2;
		}
		i++;
	}
	if (!have_dst) {
		fprintf(stderr, "net_udp_blast: --dst ADDR:PORT is required\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
		fprintf(stderr, "net_udp_blast: %s\n", strerror(errno));
		return 1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BLAST_MAX_BATCH; i++) {
		memset(bufs[i], 0xa5, size);
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = size;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	t0 = firn_mono_ns();
	end = t0 + seconds * 1000000000ull;
	while (sent < count && firn_mono_ns() < end) {
		unsigned n = (unsigned)FIRN_MIN(batch, count - sent);
		int r;

		for (i = 0; i < (int)n; i++) {
			uint64_t seq = sent + (uint64_t)i;

			memcpy(bufs[i], &seq, 8);
		}
		r = sendmmsg(fd, msgs, n, MSG_DONTWAIT);
		if (r > 0) {
			sent += (uint64_t)r;
		} else if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};

			(void)poll(&pfd, 1, 10);
		} else if (r < 0 && errno != EINTR && errno != ECONNREFUSED) {
			fprintf(stderr, "net_udp_blast: sendmmsg: %s\n", strerror(errno));
			return 1;
		}
	}
	{
		double secs = (double)(firn_mono_ns() - t0) / 1e9;

		printf("blast: sent=%lu size=%lu secs=%.3f pps=%.0f\n", (unsigned long)sent,
		       (unsigned long)size, secs, secs > 0 ? (double)sent / secs : 0.0);
	}
	if (quit) {
		for (i = 0; i < 3; i++) {
			usleep(50000);
			(void)send(fd, "QUIT", 4, 0);
		}
	}
	close(fd);
	return 0;
}
