/*
 * test_client_session.c - lib/client against lib/proto's server over
 * loopback UDP: the handshake, many records, a 1 MiB record in fragments,
 * loss, a producer that resumes, an appliance that crashes.
 *
 * Every test checks the same three things at the end, because they are the
 * library's promise: each record put got exactly one ack through the
 * callback; the store holds each record exactly once, with the bytes that
 * were put; and each OK ack names the (shard, counter) where the store
 * really put it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_test.h"

struct got {
	unsigned count;
	int status;
	bool dup;
	uint32_t shard;
	uint64_t seq, counter, hash;
};

struct acks {
	struct got *g; /* by cookie */
	unsigned cap, total, bad_cookie;
};

static void
on_ack(void *arg, const struct firn_client_ack *a)
{
	struct acks *k = arg;
	struct got *g;

	k->total++;
	if (a->cookie >= k->cap) {
		k->bad_cookie++;
		return;
	}
	g = &k->g[a->cookie];
	g->count++;
	g->status = a->status;
	g->dup = a->duplicate;
	g->shard = a->shard;
	g->seq = a->seq;
	g->counter = a->counter;
	g->hash = tsrv_fnv(a->data, a->len);
}

static void
acks_init(struct acks *k, unsigned cap)
{
	k->g = calloc(cap, sizeof(*k->g));
	assert_non_null(k->g);
	k->cap = cap;
	k->total = k->bad_cookie = 0;
}

/*
 * The promise, checked for cookies [0, n) put with data hashes want[]: one
 * OK ack each, the store holds each once with those bytes at the acked spot.
 */
static void
check_all(const struct tsrv *t, const struct acks *k, uint64_t producer, unsigned n,
          const uint64_t *want)
{
	assert_int_equal(k->bad_cookie, 0);
	assert_int_equal(k->total, n);
	for (unsigned i = 0; i < n; i++) {
		const struct got *g = &k->g[i];
		unsigned idx = 0;

		assert_int_equal(g->count, 1);
		assert_int_equal(g->status, FIRN_CLIENT_OK);
		assert_true(g->hash == want[i]);
		assert_int_equal(tsrv_count(t, producer, g->seq, &idx), 1);
		assert_true(t->recs[idx].hash == want[i]);
		assert_true(t->recs[idx].durable);
		assert_int_equal(t->recs[idx].shard, g->shard);
		assert_true(t->recs[idx].counter == g->counter);
	}
}

/* ---- handshake ------------------------------------------------------------------- */

static void
test_handshake(void **state)
{
	struct tsrv t;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;

	tsrv_init(&t, 16);
	tsrv_start(&t);
	conf = test_conf(&t, NULL, NULL);
	c = firn_client_open(&conf);
	if (c == NULL)
		fprintf(stderr, "open: %s\n", firn_client_last_error());
	assert_non_null(c);
	/* A new random producer starts at the appliance's hi + 1 = 1. */
	assert_true(firn_client_producer_id(c) != 0);
	assert_int_equal(firn_client_next_seq(c), 1);
	assert_int_equal(firn_client_pending(c), 0);
	assert_string_equal(firn_client_error(c), "");
	firn_client_stats(c, &st);
	assert_true(st.tx_datagrams >= 2); /* HELLO, INIT */
	assert_true(st.rx_datagrams >= 2); /* RETRY, ACCEPT */
	/* Two clients of the same key are two producers with two sessions. */
	{
		struct firn_client *c2 = firn_client_open(&conf);

		assert_non_null(c2);
		assert_true(firn_client_producer_id(c2) != firn_client_producer_id(c));
		firn_client_close(c2);
	}
	firn_client_close(c);
	firn_client_close(NULL);
	tsrv_stop(&t);
	assert_int_equal(firn_proto_server_stats(t.srv)->sessions_opened, 2);
	assert_int_equal(firn_proto_server_stats(t.srv)->auth_failed, 0);
	tsrv_destroy(&t);
}

/*
 * mtu 0 takes the route's MTU: on loopback (65536, clamped to 9000) the
 * session agrees on jumbo datagrams when the appliance allows them, and 200
 * records of 1000 B go in far fewer datagrams than at an explicit 1500.
 */
static void
test_auto_mtu(void **state)
{
	static uint8_t buf[1000];
	struct firn_client_stats st[2];
	struct firn_client_conf conf;
	struct firn_client *c;
	struct tsrv t;
	int s;

	(void)state;
	tsrv_init(&t, 1000);
	t.conf.max_dgram = 8972;
	tsrv_start(&t);
	for (int k = 0; k < 2; k++) {
		conf = test_conf(&t, NULL, NULL);
		conf.mtu = k == 0 ? 0 : 1500;
		c = firn_client_open(&conf);
		assert_non_null(c);
		s = firn_client_stream(c, "mtu");
		assert_true(s >= 0);
		for (int i = 0; i < 200; i++)
			assert_int_equal(firn_client_put(c, s, "k", 1, buf, sizeof(buf), 0), 0);
		assert_int_equal(firn_client_flush(c, 20000), 0);
		firn_client_stats(c, &st[k]);
		assert_int_equal(st[k].acked, 200);
		firn_client_close(c);
	}
	assert_int_equal(st[0].max_dgram, 8972);
	assert_int_equal(st[1].max_dgram, 1472);
	assert_true(st[0].tx_datagrams * 3 < st[1].tx_datagrams);
	tsrv_stop(&t);
	tsrv_destroy(&t);
}

/* ---- many records ------------------------------------------------------------------ */

#define MANY 20000

static void
test_many_records(void **state)
{
	static uint8_t buf[400];
	struct tsrv t;
	struct acks k;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	uint64_t *want = calloc(MANY, sizeof(*want)), first;
	int s;

	assert_non_null(want);
	tsrv_init(&t, MANY + 10);
	tsrv_start(&t);
	acks_init(&k, MANY);
	conf = test_conf(&t, on_ack, &k);
	conf.queue_records = 1024; /* smaller than the run: puts wait for acks */
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "events");
	assert_true(s >= 0);
	assert_int_equal(firn_client_stream(c, "events"), s);
	first = firn_client_next_seq(c);
	for (unsigned i = 0; i < MANY; i++) {
		char key[24];
		size_t len = (size_t)(test_rand() % 300);

		test_fill(buf, len);
		want[i] = tsrv_fnv(buf, len);
		snprintf(key, sizeof(key), "k%u", (unsigned)(test_rand() % 1000));
		assert_int_equal(firn_client_put(c, s, key, strlen(key), buf, len, i), 0);
		if (i % 64 == 0)
			assert_true(firn_client_poll(c, 0) >= 0);
	}
	assert_int_equal(firn_client_flush(c, 20000), 0);
	assert_int_equal(firn_client_pending(c), 0);
	assert_int_equal(firn_client_next_seq(c), first + MANY);
	firn_client_stats(c, &st);
	fprintf(stderr, "# %u records: %llu datagrams out, %llu in, srtt %u us, cwnd %u\n", MANY,
	        (unsigned long long)st.tx_datagrams, (unsigned long long)st.rx_datagrams,
	        st.srtt_us, st.cwnd);
	assert_int_equal(st.acked, MANY);
	assert_int_equal(st.failed, 0);
	/* Many records per datagram: far fewer datagrams than records. */
	assert_true(st.tx_datagrams < MANY / 4);
	/* Acks come in sequence order of put here (one producer, cookies in order). */
	for (unsigned i = 0; i < MANY; i++)
		assert_true(k.g[i].seq == first + i);
	tsrv_stop(&t);
	check_all(&t, &k, firn_client_producer_id(c), MANY, want);
	/* The appliance never had to refuse anything for credit or the window. */
	assert_int_equal(firn_proto_server_stats(t.srv)->refused_credit, 0);
	assert_int_equal(firn_proto_server_stats(t.srv)->refused_busy, 0);
	firn_client_close(c);
	tsrv_destroy(&t);
	free(k.g);
	free(want);
}

/* ---- fragments ------------------------------------------------------------------------ */

static void
run_fragments(unsigned drop_rx, unsigned drop_tx, unsigned mtu, size_t queue_bytes)
{
	const size_t big = FIRN_CLIENT_DATA_MAX;
	uint8_t *buf = malloc(big);
	uint64_t want[5];
	size_t lens[5] = {100, big, 3000, big - 1, 0};
	struct tsrv t;
	struct acks k;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	int s;

	assert_non_null(buf);
	tsrv_init(&t, 16);
	atomic_store(&t.drop_rx_every, drop_rx);
	atomic_store(&t.drop_tx_every, drop_tx);
	t.conf.max_dgram = FIRN_PROTO_DGRAM_MAX;
	tsrv_start(&t);
	acks_init(&k, 5);
	conf = test_conf(&t, on_ack, &k);
	conf.mtu = mtu;
	conf.queue_bytes = queue_bytes;
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "blobs");
	for (unsigned i = 0; i < 5; i++) {
		test_fill(buf, lens[i]);
		want[i] = tsrv_fnv(buf, lens[i]);
		assert_int_equal(firn_client_put(c, s, "big", 3, buf, lens[i], i), 0);
	}
	/* One byte over the limit is refused at put, before anything is sent. */
	assert_int_equal(firn_client_put(c, s, "big", 3, buf, big + 1, 99), -E2BIG);
	assert_int_equal(firn_client_flush(c, 30000), 0);
	firn_client_stats(c, &st);
	fprintf(stderr,
	        "# mtu %u, drop 1/%u in 1/%u out: %llu datagrams, %llu lost, %llu pieces resent\n",
	        mtu, drop_rx, drop_tx, (unsigned long long)st.tx_datagrams,
	        (unsigned long long)st.lost_datagrams, (unsigned long long)st.resent_pieces);
	tsrv_stop(&t);
	check_all(&t, &k, firn_client_producer_id(c), 5, want);
	{
		const struct firn_proto_stats *ps = firn_proto_server_stats(t.srv);
		/* Two 1 MiB records cut to fit the datagram: ~730 pieces each at 1472. */
		uint64_t per = FIRN_CLIENT_DATA_MAX / (mtu > 1500 ? 8972 : 1472);

		assert_true(ps->fragments >= 2 * per);
		assert_int_equal(ps->reasm_complete, mtu > 1500 ? 2 : 3); /* 3000 B too at 1500 */
		if (drop_rx != 0 || drop_tx != 0)
			assert_true(st.resent_pieces > 0);
	}
	firn_client_close(c);
	tsrv_destroy(&t);
	free(k.g);
	free(buf);
}

static void
test_fragments(void **state)
{
	run_fragments(0, 0, 1500, 0);
	run_fragments(0, 0, 9000, 0);
	/* Lost fragments are resent piece by piece. */
	run_fragments(13, 0, 1500, 0);
	/* The smallest queue (2 MiB): each 1 MiB record waits for room, the ring wraps. */
	run_fragments(0, 0, 1500, 2u << 20);
}

/* ---- loss -------------------------------------------------------------------------------- */

#define LOSSY 5000

static void
test_loss(void **state)
{
	uint8_t *buf = malloc(60000);
	uint64_t *want = calloc(LOSSY, sizeof(*want));
	struct tsrv t;
	struct acks k;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	int s;

	assert_non_null(buf);
	assert_non_null(want);
	tsrv_init(&t, LOSSY * 2);
	/* Every 7th datagram into the appliance and every 11th out of it vanish. */
	atomic_store(&t.drop_rx_every, 7);
	atomic_store(&t.drop_tx_every, 11);
	atomic_store(&t.durable_delay_ms, 5);
	tsrv_start(&t);
	acks_init(&k, LOSSY);
	conf = test_conf(&t, on_ack, &k);
	conf.durable_timeout_ms = 200;
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "lossy");
	for (unsigned i = 0; i < LOSSY; i++) {
		size_t len = i % 1000 == 500 ? 20000 + (size_t)(test_rand() % 40000)
		                             : (size_t)(test_rand() % 500);
		char key[24];

		test_fill(buf, len);
		want[i] = tsrv_fnv(buf, len);
		snprintf(key, sizeof(key), "p%u", i % 97);
		assert_int_equal(firn_client_put(c, s, key, strlen(key), buf, len, i), 0);
		if (i % 32 == 0)
			assert_true(firn_client_poll(c, 0) >= 0);
	}
	assert_int_equal(firn_client_flush(c, 60000), 0);
	firn_client_stats(c, &st);
	fprintf(stderr,
	        "# %u records under loss: %llu datagrams, %llu lost, %llu pieces resent, "
	        "%llu durable timeouts, %llu duplicate answers\n",
	        LOSSY, (unsigned long long)st.tx_datagrams, (unsigned long long)st.lost_datagrams,
	        (unsigned long long)st.resent_pieces, (unsigned long long)st.durable_timeouts,
	        (unsigned long long)st.duplicates);
	tsrv_stop(&t);
	assert_true(atomic_load(&t.dropped_rx) > 0);
	assert_true(atomic_load(&t.dropped_tx) > 0);
	assert_true(st.lost_datagrams > 0);
	assert_true(st.resent_pieces > 0);
	/* Stored once each, although many were sent more than once. */
	check_all(&t, &k, firn_client_producer_id(c), LOSSY, want);
	assert_true(firn_proto_server_stats(t.srv)->dup_pending +
	                    firn_proto_server_stats(t.srv)->dup_done >
	            0);
	firn_client_close(c);
	tsrv_destroy(&t);
	free(k.g);
	free(want);
	free(buf);
}

/* ---- producer resume ---------------------------------------------------------------------- */

#define RESUME 300

static void
test_resume(void **state)
{
	uint8_t buf[200];
	uint64_t want[RESUME + 10], first;
	struct got orig[RESUME];
	struct tsrv t;
	struct acks k;
	struct firn_client_conf conf;
	struct firn_client *c;
	uint64_t pid = 0x0123456789abcdefull;
	int s;

	tsrv_init(&t, 4 * RESUME);
	tsrv_start(&t);
	acks_init(&k, RESUME + 10);
	conf = test_conf(&t, on_ack, &k);
	conf.producer_id = pid;
	c = firn_client_open(&conf);
	assert_non_null(c);
	assert_true(firn_client_producer_id(c) == pid);
	first = firn_client_next_seq(c);
	s = firn_client_stream(c, "resume");
	for (unsigned i = 0; i < RESUME; i++) {
		memset(buf, (int)i, sizeof(buf));
		want[i] = tsrv_fnv(buf, 50 + i % 150);
		assert_int_equal(firn_client_put(c, s, "key", 3, buf, 50 + i % 150, i), 0);
	}
	assert_int_equal(firn_client_flush(c, 10000), 0);
	memcpy(orig, k.g, sizeof(orig));
	for (unsigned i = 0; i < RESUME; i++)
		assert_false(orig[i].dup);
	firn_client_close(c);

	/* The producer restarts and resends everything from its first sequence. */
	memset(k.g, 0, k.cap * sizeof(*k.g));
	k.total = 0;
	conf.next_seq = first;
	c = firn_client_open(&conf);
	assert_non_null(c);
	assert_true(firn_client_next_seq(c) == first);
	s = firn_client_stream(c, "resume");
	for (unsigned i = 0; i < RESUME; i++) {
		memset(buf, (int)i, sizeof(buf));
		assert_int_equal(firn_client_put(c, s, "key", 3, buf, 50 + i % 150, i), 0);
	}
	/* ...and then goes on with new records. */
	for (unsigned i = RESUME; i < RESUME + 10; i++) {
		memset(buf, (int)i, sizeof(buf));
		want[i] = tsrv_fnv(buf, 20);
		assert_int_equal(firn_client_put(c, s, "key", 3, buf, 20, i), 0);
	}
	assert_int_equal(firn_client_flush(c, 10000), 0);
	for (unsigned i = 0; i < RESUME; i++) {
		/* The original answer, marked duplicate: nothing stored twice. */
		assert_true(k.g[i].dup);
		assert_int_equal(k.g[i].status, FIRN_CLIENT_OK);
		assert_int_equal(k.g[i].shard, orig[i].shard);
		assert_true(k.g[i].counter == orig[i].counter);
		assert_true(k.g[i].seq == orig[i].seq);
	}
	for (unsigned i = RESUME; i < RESUME + 10; i++)
		assert_false(k.g[i].dup);
	tsrv_stop(&t);
	check_all(&t, &k, pid, RESUME + 10, want);
	assert_int_equal(t.n, RESUME + 10);
	firn_client_close(c);
	tsrv_destroy(&t);
	free(k.g);
}

/* The state file keeps the producer id and moves the sequence past every one used. */
static void
test_state_file(void **state)
{
	char path[] = "/tmp/firn-client-state-XXXXXX";
	struct tsrv t;
	struct firn_client_conf conf;
	struct firn_client *c;
	uint64_t pid, last;
	int fd = mkstemp(path), s;

	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	tsrv_init(&t, 64);
	tsrv_start(&t);
	conf = test_conf(&t, NULL, NULL);
	conf.state_path = path;
	c = firn_client_open(&conf);
	assert_non_null(c);
	pid = firn_client_producer_id(c);
	s = firn_client_stream(c, "st");
	for (int i = 0; i < 5; i++)
		assert_int_equal(firn_client_put(c, s, "k", 1, "x", 1, 0), 0);
	assert_int_equal(firn_client_flush(c, 5000), 0);
	last = firn_client_next_seq(c) - 1;
	firn_client_close(c); /* as good as a crash: the file was written before use */
	c = firn_client_open(&conf);
	assert_non_null(c);
	assert_true(firn_client_producer_id(c) == pid);
	assert_true(firn_client_next_seq(c) > last);
	firn_client_close(c);
	/* A damaged file is refused with a message that names it. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage\n", 8), 8);
	close(fd);
	assert_null(firn_client_open(&conf));
	assert_non_null(strstr(firn_client_last_error(), path));
	unlink(path);
	tsrv_destroy(&t);
}

/* ---- the appliance crashes ----------------------------------------------------------------- */

#define CRASHY 4000

static void
test_crash(void **state)
{
	uint8_t buf[300];
	uint64_t *want = calloc(CRASHY, sizeof(*want));
	struct tsrv t;
	struct acks k;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	unsigned cut = 0, crashes = 0;
	int s;

	assert_non_null(want);
	tsrv_init(&t, CRASHY * 3);
	atomic_store(&t.durable_delay_ms, 20); /* a window in which records are not durable */
	tsrv_start(&t);
	acks_init(&k, CRASHY);
	conf = test_conf(&t, on_ack, &k);
	conf.liveness_ms = 400;
	conf.durable_timeout_ms = 300;
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "crashy");
	for (unsigned i = 0; i < CRASHY; i++) {
		size_t len = (size_t)(test_rand() % sizeof(buf));
		char key[16];

		test_fill(buf, len);
		want[i] = tsrv_fnv(buf, len);
		snprintf(key, sizeof(key), "c%u", i % 13);
		assert_int_equal(firn_client_put(c, s, key, strlen(key), buf, len, i), 0);
		assert_true(firn_client_poll(c, 0) >= 0);
		/* Crash twice with records in flight: first with the same cookie secret (RESET),
		 * then with another one (RESETs not believed; liveness). */
		if ((i == CRASHY / 3 || i == 2 * CRASHY / 3) && firn_client_pending(c) > 0) {
			unsigned n = tsrv_crash(&t, crashes == 1);
			uint64_t before, t0 = tsrv_now();

			firn_client_stats(c, &st);
			before = st.reconnects;
			/*
			 * The client notices (RESET, or silence) and handshakes again,
			 * as long as it is waiting for something (acks already on
			 * their way before the crash may answer everything: then
			 * the next records find out).
			 */
			while (st.reconnects == before && firn_client_pending(c) > 0 &&
			       tsrv_now() - t0 < 5000) {
				assert_true(firn_client_poll(c, 10) >= 0);
				firn_client_stats(c, &st);
			}
			fprintf(stderr, "# crash %u at record %u: %u cut, noticed after %llu ms\n",
			        crashes, i, n, (unsigned long long)(tsrv_now() - t0));
			assert_true(st.reconnects > before || firn_client_pending(c) == 0);
			cut += n;
			crashes++;
		}
	}
	assert_int_equal(firn_client_flush(c, 60000), 0);
	firn_client_stats(c, &st);
	fprintf(stderr, "# %u crashes cut %u records; %llu reconnects, %llu duplicates\n", crashes,
	        cut, (unsigned long long)st.reconnects, (unsigned long long)st.duplicates);
	assert_int_equal(crashes, 2);
	/* At least one new handshake (a handshake under way at a crash may finish with the
	 * restarted appliance without starting over). */
	assert_true(st.reconnects >= 1);
	tsrv_stop(&t);
	check_all(&t, &k, firn_client_producer_id(c), CRASHY, want);
	firn_client_close(c);
	tsrv_destroy(&t);
	free(k.g);
	free(want);
}

/*
 * Out of credit, nothing in flight, and the appliance restarts with another
 * cookie secret: no RESET is believed and no ack is owed, so only the
 * client's probes and its liveness rule can tell. It must handshake again
 * and deliver everything.
 */
static void
test_crash_while_out_of_credit(void **state)
{
	struct tsrv t;
	struct acks k;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	uint64_t want[64], t0;
	int s;

	tsrv_init(&t, 256);
	t.conf.credit_records = 16;
	atomic_store(&t.grant_records, 0);
	tsrv_start(&t);
	acks_init(&k, 64);
	conf = test_conf(&t, on_ack, &k);
	conf.liveness_ms = 400;
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "starved");
	for (unsigned i = 0; i < 64; i++) {
		char d[16];
		int n = snprintf(d, sizeof(d), "rec %u", i);

		want[i] = tsrv_fnv(d, (size_t)n);
		assert_int_equal(firn_client_put(c, s, "k", 1, d, (size_t)n, i), 0);
	}
	t0 = tsrv_now();
	while (k.total < 16 && tsrv_now() - t0 < 3000)
		assert_true(firn_client_poll(c, 10) >= 0);
	assert_int_equal(k.total, 16);
	firn_client_stats(c, &st);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(st.queued, 48);
	tsrv_crash(&t, true);
	/* The restarted appliance grants again (to sessions it knows: only new ones). */
	atomic_store(&t.grant_records, 64);
	assert_int_equal(firn_client_flush(c, 10000), 0);
	firn_client_stats(c, &st);
	fprintf(stderr, "# starved producer: %llu reconnects, %llu probes\n",
	        (unsigned long long)st.reconnects, (unsigned long long)st.probes);
	assert_true(st.reconnects >= 1);
	assert_true(st.probes >= 1);
	tsrv_stop(&t);
	check_all(&t, &k, firn_client_producer_id(c), 64, want);
	firn_client_close(c);
	tsrv_destroy(&t);
	free(k.g);
}

/*
 * An idle producer keeps its session alive with PINGs every keepalive/2,
 * and finds out by itself (unanswered keepalives) when the appliance came
 * back without it.
 */
static void
test_idle(void **state)
{
	struct tsrv t;
	struct acks k;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	uint64_t t0, want;
	int s;

	tsrv_init(&t, 16);
	t.conf.keepalive_ms = 200;
	t.conf.idle_timeout_ms = 600;
	tsrv_start(&t);
	acks_init(&k, 1);
	conf = test_conf(&t, on_ack, &k);
	conf.liveness_ms = 300;
	c = firn_client_open(&conf);
	assert_non_null(c);
	t0 = tsrv_now();
	while (tsrv_now() - t0 < 1500)
		assert_true(firn_client_poll(c, 50) >= 0);
	firn_client_stats(c, &st);
	assert_int_equal(st.reconnects, 0);
	assert_true(st.tx_datagrams >= 2 + 5); /* the handshake, then keepalives */
	tsrv_crash(&t, true);
	t0 = tsrv_now();
	while (st.reconnects == 0 && tsrv_now() - t0 < 3000) {
		assert_true(firn_client_poll(c, 50) >= 0);
		firn_client_stats(c, &st);
	}
	fprintf(stderr, "# idle producer noticed the restart after %llu ms\n",
	        (unsigned long long)(tsrv_now() - t0));
	assert_int_equal(st.reconnects, 1);
	s = firn_client_stream(c, "idle");
	want = tsrv_fnv("x", 1);
	assert_int_equal(firn_client_put(c, s, "k", 1, "x", 1, 0), 0);
	assert_int_equal(firn_client_flush(c, 5000), 0);
	tsrv_stop(&t);
	/* The first server never expired the session: keepalives reached it. */
	check_all(&t, &k, firn_client_producer_id(c), 1, &want);
	firn_client_close(c);
	tsrv_destroy(&t);
	free(k.g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_handshake),
	        cmocka_unit_test(test_auto_mtu),
	        cmocka_unit_test(test_many_records),
	        cmocka_unit_test(test_fragments),
	        cmocka_unit_test(test_loss),
	        cmocka_unit_test(test_resume),
	        cmocka_unit_test(test_state_file),
	        cmocka_unit_test(test_crash),
	        cmocka_unit_test(test_crash_while_out_of_credit),
	        cmocka_unit_test(test_idle),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
