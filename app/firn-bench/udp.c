/*
 * udp.c - firn-bench's UDP engine: N lib/client sessions on one thread.
 *
 * Open loop (--rate): every --linger microseconds (default 50) the records
 * the pacer says fell due are put together on one session (the next one
 * each tick), so they travel many to a datagram, with the time each was
 * *due* as its cookie: the latency measured when its DURABLE ack arrives
 * includes any time it waited, in the tick or in a full queue (a stalled
 * appliance shows up as latency, not as a quietly lower rate).
 *
 * Closed loop (no --rate): every session keeps --window records
 * outstanding, and the cookie is the time of the put.
 *
 * The clients run non-blocking. A session is polled when it got records,
 * when its socket has news (ppoll() over all of them), and every
 * millisecond for its timers, never in a blind loop: an empty recvmmsg()
 * per session per round cost more CPU than the records themselves.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "firn_client.h"

struct udp_sess {
	struct worker *w;
	struct firn_client *c;
	int stream;
};

static void
on_ack(void *arg, const struct firn_client_ack *a)
{
	struct udp_sess *s = arg;
	struct worker *w = s->w;
	uint64_t now = firn_mono_ns();

	if (a->status != FIRN_CLIENT_OK) {
		w->failed++;
		if (w->first_fail[0] == '\0')
			snprintf(w->first_fail, sizeof(w->first_fail), "%s",
			         firn_client_status_str(a->status));
		return;
	}
	w->acked++;
	w->bytes += a->len;
	w->last_ack_ns = now;
	atomic_store_explicit(&w->progress_acked, w->acked,
	                      memory_order_relaxed); /* pairs with main.c's progress load */
	bench_latency(w, a->cookie, now);
	if (w->b->ack_log != NULL) {
		char seq[FIRN_CLIENT_SEQ_SIZE];

		firn_client_seq_format(a, seq);
		fprintf(w->b->ack_log, "%.*s shardId-%012u %s %08x\n", (int)a->key_len,
		        (const char *)a->key, a->shard, seq, bench_crc32c(a->data, a->len));
	}
}

static int
put_one(struct worker *w, struct udp_sess *s, uint64_t cookie)
{
	char key[32];
	size_t kl = bench_key(w, key, sizeof(key));

	return firn_client_put(s->c, s->stream, key, kl, bench_data(w), bench_size(w), cookie);
}

void *
bench_udp_worker(void *arg)
{
	struct worker *w = arg;
	const struct bench_conf *b = w->b;
	struct udp_sess *ss = calloc(w->n_sessions, sizeof(*ss));
	struct pollfd *pfd = calloc(w->n_sessions, sizeof(*pfd));
	bool *dirty = calloc(w->n_sessions, sizeof(*dirty));
	uint64_t *last_poll = calloc(w->n_sessions, sizeof(*last_poll));
	/* Open loop: records due within a tick are put together (--linger). */
	uint64_t tick = (uint64_t)FIRN_MAX(b->linger_us, 1u) * 1000;
	struct firn_pacer pacer;
	uint64_t drain_until = 0, cpu0 = 0, next_tick;
	uint64_t seen_acks = 0, last_ack_progress = 0;
	unsigned rr = 0;

	if (ss == NULL || pfd == NULL || dirty == NULL || last_poll == NULL) {
		bench_fail(w, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < w->n_sessions; i++) {
		struct firn_client_conf cc = {
		        .endpoint = b->endpoint,
		        .access_key_id = b->access_key,
		        .secret_access_key = b->secret_key,
		        .mtu = b->mtu,
		        .queue_records = FIRN_MAX(b->window * 2, 1024u),
		        /* The window's bytes twice over, and room for one largest record: a
		         * bigger queue only spreads the puts over memory that misses the cache. */
		        .queue_bytes = (size_t)b->window * 2 * (b->size + 64) +
		                       FIRN_MAX((size_t)b->size * 2, (size_t)256 << 10),
		        .on_ack = on_ack,
		        .arg = &ss[i],
		        .flags = FIRN_CLIENT_NONBLOCK,
		};

		ss[i].w = w;
		ss[i].c = firn_client_open(&cc);
		if (ss[i].c == NULL) {
			bench_fail(w, "session %u: %s", w->first_session + i,
			           firn_client_last_error());
			goto out;
		}
		ss[i].stream = firn_client_stream(ss[i].c, b->stream);
		if (ss[i].stream < 0) {
			bench_fail(w, "stream '%s': %s", b->stream, firn_err_msg());
			goto out;
		}
		pfd[i].fd = firn_client_fd(ss[i].c);
		pfd[i].events = POLLIN;
	}
	/* Everyone starts together (main.c sets start_ns a little in the future). */
	cpu0 = bench_wait_start(w);
	firn_pacer_init(&pacer, b->rate > 0 ? b->rate / b->threads : 0, w->start_ns);
	next_tick = w->start_ns;
	last_ack_progress = w->start_ns;

	for (;;) {
		uint64_t now = firn_mono_ns(), pending = 0, wake;
		bool offering = w->issued < w->quota && !atomic_load(&bench_stop) &&
		                (w->stop_ns == 0 || now < w->stop_ns);
		struct timespec ts;

		if (offering && b->rate > 0 && now >= next_tick) {
			/*
			 * Open loop: what fell due during the last tick goes out
			 * together on one session (the next one each tick), so it
			 * travels many to a datagram.
			 */
			uint64_t due = firn_pacer_due(
			        &pacer, now, FIRN_MIN(w->quota - w->issued, (uint64_t)65536));
			unsigned tried = 0;

			while (due > 0 && tried < w->n_sessions) {
				struct udp_sess *s = &ss[rr % w->n_sessions];
				int rc = put_one(w, s, firn_pacer_due_ns(&pacer, pacer.issued));

				if (rc == -EAGAIN) { /* full: the next session, or wait */
					rr++;
					tried++;
					continue;
				}
				if (rc < 0) {
					bench_fail(w, "put: %s", firn_client_error(s->c));
					goto out;
				}
				dirty[rr % w->n_sessions] = true;
				firn_pacer_issue(&pacer, 1);
				w->issued++;
				due--;
			}
			rr++;
			next_tick = now + tick;
		} else if (offering && b->rate == 0) {
			for (unsigned i = 0; i < w->n_sessions && w->issued < w->quota; i++) {
				while (w->issued < w->quota &&
				       firn_client_pending(ss[i].c) < b->window) {
					int rc = put_one(w, &ss[i], now);

					if (rc == -EAGAIN)
						break;
					if (rc < 0) {
						bench_fail(w, "put: %s",
						           firn_client_error(ss[i].c));
						goto out;
					}
					dirty[i] = true;
					w->issued++;
				}
			}
		}
		/*
		 * Poll a session when it has new records, when its socket has
		 * news, and at least every millisecond for its timers; an
		 * empty recvmmsg() per session per round would cost more than
		 * the records.
		 */
		for (unsigned i = 0; i < w->n_sessions; i++) {
			if (dirty[i] || (pfd[i].revents & POLLIN) ||
			    now >= last_poll[i] + 1000000) {
				int rc = firn_client_poll(ss[i].c, 0);

				if (rc < 0) {
					bench_fail(w, "%s", firn_client_error(ss[i].c));
					goto out;
				}
				dirty[i] = false;
				last_poll[i] = now;
			}
			pfd[i].revents = 0;
			pending += firn_client_pending(ss[i].c);
		}
		bench_progress_tick(w, now);
		if (!offering && pending == 0)
			break;
		/*
		 * A stall while still offering (the queues full, no ack coming)
		 * would otherwise never reach the drain limit below: give up
		 * after --drain seconds without a single new ack.
		 */
		if (w->acked + w->failed != seen_acks || pending == 0) {
			seen_acks = w->acked + w->failed;
			last_ack_progress = now;
		} else if (offering && now - last_ack_progress > (uint64_t)(b->drain * 1e9)) {
			bench_fail(w, "no durable ack for %.0f s with %llu records in flight",
			           b->drain, (unsigned long long)pending);
			break;
		}
		if (!offering) {
			if (drain_until == 0)
				drain_until = now + (uint64_t)(b->drain * 1e9);
			if (now >= drain_until) {
				bench_fail(w,
				           "%llu record%s still without a durable ack after %.0f s",
				           (unsigned long long)pending, pending == 1 ? "" : "s",
				           b->drain);
				break;
			}
		}
		/* Sleep until a socket has news, the next tick, or 1 ms. */
		wake = now + 1000000;
		if (offering && b->rate > 0)
			wake = FIRN_MIN(
			        wake, FIRN_MAX(next_tick, firn_pacer_due_ns(&pacer, pacer.issued)));
		now = firn_mono_ns();
		if (wake <= now)
			continue;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)(wake - now);
		ppoll(pfd, w->n_sessions, &ts, NULL);
	}
	w->cpu_us = bench_thread_cpu_us() - cpu0;
out:
	for (unsigned i = 0; ss != NULL && i < w->n_sessions; i++) {
		if (ss[i].c != NULL) {
			struct firn_client_stats st;

			firn_client_stats(ss[i].c, &st);
			w->retransmits += st.resent_pieces;
			w->lost += st.lost_datagrams;
			w->reconnects += st.reconnects;
			firn_client_close(ss[i].c); /* unacked records count as failed */
		}
	}
	free(ss);
	free(pfd);
	free(dirty);
	free(last_poll);
	return NULL;
}
