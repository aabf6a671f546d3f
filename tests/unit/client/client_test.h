/*
 * client_test.h - an appliance in a thread, for testing lib/client over real
 * loopback UDP.
 *
 * The "appliance" is lib/proto's server (the same code firnd runs) on a UDP
 * socket bound to 127.0.0.1 on a free port, driven by a thread, with a fake
 * store behind it: a record becomes durable durable_delay_ms after it
 * arrived, in one of 4 shards chosen from its key, at that shard's next
 * counter, and the store remembers (producer, seq, shard, counter, length,
 * FNV-1a of the data) so a test can check afterwards that every record is
 * there exactly once with the bytes that were put, and that each ack named
 * where it really is.
 *
 * Knobs a test may turn (atomics, read by the server thread every loop):
 * drop every k-th datagram received or sent, pause and resume credit
 * grants, answer records with an error status, end sessions with an ERROR
 * frame, answer HELLOs with a REJECT. tsrv_crash() destroys the protocol
 * server, forgets records that were not durable yet and starts a new one
 * seeded from the store (as firnd does after a restart, doc/protocol.md
 * §8.3).
 *
 * The test thread drives the client; the server thread touches only its
 * own state, and the store is read by the test only after tsrv_stop() (or
 * through the atomic counters).
 */
#ifndef FIRN_CLIENT_TEST_H
#define FIRN_CLIENT_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "firn_client.h"
#include "firn_common.h"
#include "firn_proto.h"

#define TEST_KEY_ID "AKIDFIRNCLIENTTEST"
#define TEST_SECRET "client-test-secret-0123456789"
#define TSRV_SHARDS 4
#define TSRV_SESSIONS 16

struct tsrv_rec {
	uint64_t producer, seq, counter, hash;
	uint64_t durable_at;
	uint32_t shard, len;
	bool durable;
};

struct tsrv {
	int fd;
	uint16_t port;
	char endpoint[32];
	pthread_t th;
	atomic_bool stop;
	bool running;

	struct firn_proto_server *srv;
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	uint8_t cookie_secret[32];
	struct {
		uint64_t id;
		struct sockaddr_in to;
	} sess[TSRV_SESSIONS];

	/* knobs */
	atomic_uint drop_rx_every, drop_tx_every;
	atomic_uint durable_delay_ms;
	atomic_uint grant_records; /* headroom granted every loop; 0: no new grants */
	atomic_uint grant_window;
	atomic_ullong grant_at_ms; /* if nonzero: set grant_records to grant_later then */
	atomic_uint grant_later;
	atomic_int record_status;      /* != 0: answer every new record with it, store nothing */
	atomic_int session_error;      /* != 0: send ERROR with it to every session, then close */
	atomic_int reject_code;        /* != 0: answer HELLO with this REJECT */
	atomic_ullong reject_until_ms; /* != 0: ...only until then */
	struct firn_proto_addr redirect;

	/* counters */
	atomic_ullong rx, tx, dropped_rx, dropped_tx, stored, max_seq_seen;

	/* the store */
	struct tsrv_rec *recs;
	unsigned n, cap, durable_next;
	uint64_t shard_next[TSRV_SHARDS];
};

static FIRN_UNUSED uint64_t
tsrv_fnv(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static FIRN_UNUSED uint64_t
tsrv_now(void)
{
	return firn_mono_ns() / 1000000;
}

static FIRN_UNUSED void
tsrv_send(struct tsrv *t, const uint8_t *buf, size_t len, const struct sockaddr_in *to,
          bool droppable)
{
	unsigned k = atomic_load(&t->drop_tx_every);
	uint64_t n = atomic_fetch_add(&t->tx, 1) + 1;

	if (droppable && k != 0 && n % k == 0) {
		atomic_fetch_add(&t->dropped_tx, 1);
		return;
	}
	sendto(t->fd, buf, len, 0, (const struct sockaddr *)to, sizeof(*to));
}

static FIRN_UNUSED void
tsrv_track(struct tsrv *t, struct firn_proto_session *ss, const struct sockaddr_in *to)
{
	uint64_t id = firn_proto_session_id(ss);
	int free_slot = -1;

	for (int i = 0; i < TSRV_SESSIONS; i++) {
		if (t->sess[i].id == id) {
			t->sess[i].to = *to;
			return;
		}
		if (free_slot < 0 && (t->sess[i].id == 0 ||
		                      firn_proto_server_session(t->srv, t->sess[i].id) == NULL))
			free_slot = i;
	}
	if (free_slot >= 0) {
		t->sess[free_slot].id = id;
		t->sess[free_slot].to = *to;
	}
}

static FIRN_UNUSED struct sockaddr_in *
tsrv_addr_of(struct tsrv *t, struct firn_proto_session *ss)
{
	uint64_t id = firn_proto_session_id(ss);

	for (int i = 0; i < TSRV_SESSIONS; i++)
		if (t->sess[i].id == id)
			return &t->sess[i].to;
	return NULL;
}

static FIRN_UNUSED void
tsrv_flush(struct tsrv *t, struct firn_proto_session *ss, bool force, uint64_t now)
{
	uint8_t out[FIRN_PROTO_DGRAM_MAX];
	struct sockaddr_in *to = tsrv_addr_of(t, ss);
	int n;

	if (to == NULL)
		return;
	while ((n = firn_proto_session_flush(t->srv, ss, now, force, out, sizeof(out))) > 0) {
		tsrv_send(t, out, (size_t)n, to, true);
		force = false;
	}
}

static FIRN_UNUSED void
tsrv_answer(struct tsrv *t, struct firn_proto_session *ss, const struct firn_proto_durable *d,
            uint64_t now)
{
	while (firn_proto_session_queue_durable(ss, d) == -ENOSPC)
		tsrv_flush(t, ss, false, now);
}

static FIRN_UNUSED void
tsrv_reject(struct tsrv *t, const uint8_t *hello, const struct sockaddr_in *to, uint16_t code)
{
	uint8_t out[78] = {'F', 'I', 'R', 'N', FIRN_PROTO_VERSION, FIRN_PROTO_REJECT};

	memcpy(out + 24, hello + 24, FIRN_PROTO_NONCE_LEN);
	out[56] = (uint8_t)code;
	out[57] = (uint8_t)(code >> 8);
	out[58] = out[59] = FIRN_PROTO_VERSION;
	memcpy(out + 60, t->redirect.ip, 16);
	out[76] = (uint8_t)t->redirect.port;
	out[77] = (uint8_t)(t->redirect.port >> 8);
	tsrv_send(t, out, sizeof(out), to, false);
}

static FIRN_UNUSED void
tsrv_on_dgram(struct tsrv *t, uint8_t *p, size_t len, const struct sockaddr_in *from, uint64_t now)
{
	uint8_t out[FIRN_PROTO_DGRAM_MAX], *plain;
	struct firn_proto_addr fa;
	struct firn_proto_session *ss;
	struct firn_proto_rx rx;
	struct firn_proto_rx_item it;
	bool ping = false;
	int n, rc;

	firn_proto_addr_v4(&fa, (const uint8_t *)&from->sin_addr.s_addr, ntohs(from->sin_port));
	if (len > 5 && p[5] != FIRN_PROTO_DATA) {
		int rj = atomic_load(&t->reject_code);
		uint64_t until = atomic_load(&t->reject_until_ms);

		if (rj != 0 && (until == 0 || now < until) && p[5] == FIRN_PROTO_HELLO &&
		    len >= FIRN_PROTO_HELLO_MIN) {
			tsrv_reject(t, p, from, (uint16_t)rj);
			return;
		}
		n = firn_proto_server_handshake(t->srv, &fa, p, len, now, out, sizeof(out), &ss);
		if (ss != NULL)
			tsrv_track(t, ss, from);
		if (n > 0)
			tsrv_send(t, out, (size_t)n, from, true);
		return;
	}
	n = firn_proto_server_open(t->srv, &fa, p, len, now, &ss, &plain);
	if (n == -ENOENT) {
		uint64_t sid = 0;

		for (int i = 0; i < 8; i++)
			sid |= (uint64_t)p[8 + i] << (8 * i);
		n = firn_proto_server_reset(t->srv, sid, len, out, sizeof(out));
		if (n > 0)
			tsrv_send(t, out, (size_t)n, from, false);
		return;
	}
	if (n < 0)
		return;
	tsrv_track(t, ss, from);
	firn_proto_rx_begin(&rx, t->srv, ss, plain, (size_t)n, now);
	while ((rc = firn_proto_rx_next(&rx, &it)) > 0) {
		if (it.kind == FIRN_PROTO_RX_RECORD) {
			int st = atomic_load(&t->record_status);
			uint64_t pid = firn_proto_producer_id(it.producer);

			if (st != 0 || t->n == t->cap) {
				struct firn_proto_durable d = {
				        it.rec.seq,
				        0,
				        0,
				        1,
				        (uint8_t)(st ? st : FIRN_PROTO_E_INTERNAL),
				        0};

				firn_proto_record_done(t->srv, it.producer, it.rec.seq, 0, 0,
				                       d.status);
				tsrv_answer(t, ss, &d, now);
			} else {
				struct tsrv_rec *r = &t->recs[t->n++];
				const uint8_t *k = it.rec.key;

				r->producer = pid;
				r->seq = it.rec.seq;
				r->len = it.rec.len;
				r->hash = tsrv_fnv(it.rec.data, it.rec.len);
				r->shard = (uint32_t)(tsrv_fnv(k, it.rec.key_len) % TSRV_SHARDS);
				r->counter = t->shard_next[r->shard]++;
				r->durable_at = now + atomic_load(&t->durable_delay_ms);
				r->durable = false;
				atomic_fetch_add(&t->stored, 1);
				if (it.rec.seq > atomic_load(&t->max_seq_seen))
					atomic_store(&t->max_seq_seen, it.rec.seq);
			}
			if (it.reasm_slot >= 0)
				firn_proto_reasm_release(firn_proto_session_reasm(ss),
				                         it.reasm_slot);
		} else if (it.kind == FIRN_PROTO_RX_ANSWER) {
			tsrv_answer(t, ss, &it.ack, now);
		} else if (it.kind == FIRN_PROTO_RX_PING) {
			ping = true;
		} else if (it.kind == FIRN_PROTO_RX_CLOSE) {
			n = firn_proto_session_send_error(t->srv, ss, FIRN_PROTO_E_CLOSED, NULL,
			                                  NULL, out, sizeof(out));
			if (n > 0)
				tsrv_send(t, out, (size_t)n, from, false);
			firn_proto_session_close(t->srv, ss, now);
			return;
		}
	}
	if (ping || (p[6] & FIRN_PROTO_F_ACK_NOW))
		tsrv_flush(t, ss, true, now);
}

static FIRN_UNUSED void
tsrv_step(struct tsrv *t, uint64_t now)
{
	unsigned grant = atomic_load(&t->grant_records);
	uint64_t at = atomic_load(&t->grant_at_ms);
	int err = atomic_load(&t->session_error);

	if (at != 0 && now >= at) {
		atomic_store(&t->grant_records, atomic_load(&t->grant_later));
		atomic_store(&t->grant_at_ms, 0);
		grant = atomic_load(&t->grant_records);
	}
	/* Group commit: what has waited its delay is on "disk" now. */
	while (t->durable_next < t->n && t->recs[t->durable_next].durable_at <= now) {
		struct tsrv_rec *r = &t->recs[t->durable_next++];
		struct firn_proto_producer *p = firn_proto_producer_get(
		        firn_proto_server_dedupe(t->srv), r->producer, false, now);
		struct firn_proto_session *ss;
		struct firn_proto_durable d = {r->seq, r->counter, r->shard, 1, FIRN_PROTO_OK, 0};

		r->durable = true;
		if (p == NULL || firn_proto_record_done(t->srv, p, r->seq, r->shard, r->counter,
		                                        FIRN_PROTO_OK) < 0)
			continue;
		ss = firn_proto_producer_session(p);
		if (ss != NULL)
			tsrv_answer(t, ss, &d, now);
	}
	for (int i = 0; i < TSRV_SESSIONS; i++) {
		struct firn_proto_session *ss;

		if (t->sess[i].id == 0)
			continue;
		ss = firn_proto_server_session(t->srv, t->sess[i].id);
		if (ss == NULL) {
			t->sess[i].id = 0;
			continue;
		}
		if (err != 0) {
			uint8_t out[FIRN_PROTO_DGRAM_MAX];
			int n = firn_proto_session_send_error(t->srv, ss, (uint16_t)err,
			                                      &t->redirect, "injected by the test",
			                                      out, sizeof(out));

			if (n > 0)
				tsrv_send(t, out, (size_t)n, &t->sess[i].to, false);
			firn_proto_session_close(t->srv, ss, now);
			t->sess[i].id = 0;
			continue;
		}
		if (grant > 0)
			firn_proto_session_grant(ss, grant, atomic_load(&t->grant_window));
		tsrv_flush(t, ss, false, now);
	}
	if (err != 0)
		atomic_store(&t->session_error, 0);
}

static FIRN_UNUSED void *
tsrv_main(void *arg)
{
	struct tsrv *t = arg;
	uint8_t(*bufs)[FIRN_PROTO_DGRAM_MAX + 64] = malloc(32 * sizeof(*bufs));
	struct mmsghdr m[32];
	struct iovec iov[32];
	struct sockaddr_in from[32];
	uint64_t last_tick = 0;

	if (bufs == NULL)
		abort();
	while (!atomic_load(&t->stop)) {
		struct pollfd pfd = {.fd = t->fd, .events = POLLIN};
		uint64_t now;
		int n;

		poll(&pfd, 1, 1);
		now = tsrv_now();
		for (int i = 0; i < 32; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = sizeof(bufs[i]);
			memset(&m[i].msg_hdr, 0, sizeof(m[i].msg_hdr));
			m[i].msg_hdr.msg_iov = &iov[i];
			m[i].msg_hdr.msg_iovlen = 1;
			m[i].msg_hdr.msg_name = &from[i];
			m[i].msg_hdr.msg_namelen = sizeof(from[i]);
		}
		n = recvmmsg(t->fd, m, 32, MSG_DONTWAIT, NULL);
		for (int i = 0; i < n; i++) {
			unsigned k = atomic_load(&t->drop_rx_every);
			uint64_t c = atomic_fetch_add(&t->rx, 1) + 1;

			if (k != 0 && c % k == 0) {
				atomic_fetch_add(&t->dropped_rx, 1);
				continue;
			}
			tsrv_on_dgram(t, bufs[i], m[i].msg_len, &from[i], now);
		}
		tsrv_step(t, now);
		if (now - last_tick >= 100) {
			firn_proto_server_tick(t->srv, now);
			last_tick = now;
		}
	}
	free(bufs);
	return NULL;
}

static FIRN_UNUSED void
tsrv_proto_start(struct tsrv *t)
{
	t->key.id = TEST_KEY_ID;
	t->key.secret = (const uint8_t *)TEST_SECRET;
	t->key.secret_len = strlen(TEST_SECRET);
	t->conf.keys = &t->key;
	t->conf.n_keys = 1;
	t->conf.cookie_secret = t->cookie_secret;
	t->srv = firn_proto_server_create(&t->conf);
	if (t->srv == NULL) {
		fprintf(stderr, "server: %s\n", firn_err_msg());
		abort();
	}
	memset(t->sess, 0, sizeof(t->sess));
}

static FIRN_UNUSED void
tsrv_run(struct tsrv *t)
{
	atomic_store(&t->stop, false);
	if (pthread_create(&t->th, NULL, tsrv_main, t) != 0)
		abort();
	t->running = true;
}

/*
 * Set up (not yet running): defaults that tests may change in t->conf and
 * the knobs before tsrv_start(). cap: records the store can hold.
 */
static FIRN_UNUSED void
tsrv_init(struct tsrv *t, unsigned cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int big = 8 << 20;

	memset(t, 0, sizeof(*t));
	firn_proto_server_conf_defaults(&t->conf);
	t->conf.max_sessions = 32;
	t->conf.max_producers = 32;
	t->conf.reasm_pool_bytes = 16u << 20;
	t->conf.reasm_session_bytes = 4u << 20;
	for (int i = 0; i < 32; i++)
		t->cookie_secret[i] = (uint8_t)(i * 7 + 1);
	atomic_store(&t->durable_delay_ms, 2);
	atomic_store(&t->grant_records, 512);
	atomic_store(&t->grant_window, 4u << 20);
	t->cap = cap;
	t->recs = calloc(cap, sizeof(*t->recs));
	if (t->recs == NULL)
		abort();
	t->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (t->fd < 0 || bind(t->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(t->fd, (struct sockaddr *)&a, &al) < 0)
		abort();
	if (setsockopt(t->fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
		setsockopt(t->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	t->port = ntohs(a.sin_port);
	snprintf(t->endpoint, sizeof(t->endpoint), "127.0.0.1:%u", t->port);
}

static FIRN_UNUSED void
tsrv_start(struct tsrv *t)
{
	tsrv_proto_start(t);
	tsrv_run(t);
}

static FIRN_UNUSED void
tsrv_stop(struct tsrv *t)
{
	if (!t->running)
		return;
	atomic_store(&t->stop, true);
	pthread_join(t->th, NULL);
	t->running = false;
}

static FIRN_UNUSED void
tsrv_destroy(struct tsrv *t)
{
	tsrv_stop(t);
	firn_proto_server_destroy(t->srv);
	close(t->fd);
	free(t->recs);
}

/*
 * The appliance crashes and restarts: records not durable are cut (never
 * acked), the protocol server is new, seeded from what the store kept. With
 * new_secret it comes back with another cookie secret (its RESETs are not
 * believed, the client must notice by liveness).
 */
static FIRN_UNUSED unsigned
tsrv_crash(struct tsrv *t, bool new_secret)
{
	unsigned kept = 0, cut;

	tsrv_stop(t);
	firn_proto_server_destroy(t->srv);
	for (unsigned i = 0; i < t->n; i++)
		if (t->recs[i].durable)
			t->recs[kept++] = t->recs[i];
	cut = t->n - kept;
	t->n = t->durable_next = kept;
	memset(t->shard_next, 0, sizeof(t->shard_next));
	for (unsigned i = 0; i < kept; i++)
		t->shard_next[t->recs[i].shard] =
		        FIRN_MAX(t->shard_next[t->recs[i].shard], t->recs[i].counter + 1);
	if (new_secret)
		t->cookie_secret[0] ^= 0xff;
	tsrv_proto_start(t);
	for (unsigned i = 0; i < kept; i++)
		firn_proto_dedupe_seed(firn_proto_server_dedupe(t->srv), t->recs[i].producer,
		                       t->recs[i].seq, t->recs[i].shard, t->recs[i].counter,
		                       tsrv_now());
	tsrv_run(t);
	return cut;
}

/* After tsrv_stop(): how often (producer, seq) is stored; *idx the last entry. */
static FIRN_UNUSED unsigned
tsrv_count(const struct tsrv *t, uint64_t producer, uint64_t seq, unsigned *idx)
{
	unsigned n = 0;

	for (unsigned i = 0; i < t->n; i++) {
		if (t->recs[i].producer == producer && t->recs[i].seq == seq) {
			n++;
			if (idx != NULL)
				*idx = i;
		}
	}
	return n;
}

/* A client configuration for t. */
static FIRN_UNUSED struct firn_client_conf
test_conf(const struct tsrv *t, firn_client_ack_fn cb, void *arg)
{
	struct firn_client_conf c = {
	        .endpoint = t->endpoint,
	        .access_key_id = TEST_KEY_ID,
	        .secret_access_key = TEST_SECRET,
	        .on_ack = cb,
	        .arg = arg,
	};

	return c;
}

/* A seeded PRNG; FIRN_TEST_SEED overrides the fixed default. */
static uint64_t test_rng = 0x5eedc11e47ull;

static FIRN_UNUSED void
test_seed(void)
{
	const char *s = getenv("FIRN_TEST_SEED");
	uint64_t v = 0x5eedc11e47ull;

	if (s != NULL && firn_parse_u64(s, &v) < 0)
		v = 0x5eedc11e47ull;
	test_rng = v ? v : 1;
	fprintf(stderr, "# seed %llu (set FIRN_TEST_SEED to repeat)\n", (unsigned long long)v);
}

static FIRN_UNUSED uint64_t
test_rand(void)
{
	test_rng ^= test_rng >> 12;
	test_rng ^= test_rng << 25;
	test_rng ^= test_rng >> 27;
	return test_rng * 0x2545f4914f6cdd1dull;
}

static FIRN_UNUSED void
test_fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)test_rand();
}

#endif /* FIRN_CLIENT_TEST_H */
