/*
 * test_proto_dedupe.c - exactly-once per producer.
 *
 * The window on its own: duplicates get the original answer, the window
 * slides and forgets only what it may forget, and a slide never evicts a
 * record still pending. Then through the real RX path: a resent record is
 * answered with its original (shard, counter) and never handed on twice,
 * refusals are remembered, and fragments of a stored record are not
 * reassembled again. Finally the crash story of doc/protocol.md §8.3: a
 * fake store keeps (producer, seq) with each record, the server "crashes",
 * a new one is seeded from the store, and the producer's full resend is
 * answered entirely with duplicates carrying the original sequence numbers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_proto.h"
#include "proto_test.h"

/* ---- the window alone ----------------------------------------------------- */

static void
test_dup_gets_original(void **state)
{
	struct firn_proto_dedupe *d = firn_proto_dedupe_create(4, 64);
	struct firn_proto_producer *p = firn_proto_producer_get(d, 9, true, 0);
	struct firn_proto_durable o;

	assert_non_null(p);
	assert_int_equal(firn_proto_dedupe_check(p, 1, &o), FIRN_PROTO_DEDUPE_NEW);
	assert_int_equal(firn_proto_dedupe_reserve(p, 1, 100), 0);
	assert_int_equal(firn_proto_dedupe_reserve(p, 1, 100), -EALREADY);
	assert_int_equal(firn_proto_dedupe_check(p, 1, &o), FIRN_PROTO_DEDUPE_PENDING);
	assert_int_equal(firn_proto_producer_pending(p), 1);
	assert_int_equal(firn_proto_dedupe_done(p, 1, 3, 4242, FIRN_PROTO_OK), 100);
	assert_int_equal(firn_proto_dedupe_done(p, 1, 3, 4242, FIRN_PROTO_OK), -ENOENT);
	assert_int_equal(firn_proto_producer_pending(p), 0);
	for (int i = 0; i < 3; i++) {
		memset(&o, 0xee, sizeof(o));
		assert_int_equal(firn_proto_dedupe_check(p, 1, &o), FIRN_PROTO_DEDUPE_DONE);
		assert_true(o.seq == 1 && o.shard == 3 && o.counter == 4242 && o.count == 1 &&
		            o.status == FIRN_PROTO_OK);
	}
	/* A refusal is remembered the same way. */
	firn_proto_dedupe_reserve(p, 2, 0);
	firn_proto_dedupe_done(p, 2, 0, 0, FIRN_PROTO_E_UNKNOWN_STREAM);
	assert_int_equal(firn_proto_dedupe_check(p, 2, &o), FIRN_PROTO_DEDUPE_DONE);
	assert_int_equal(o.status, FIRN_PROTO_E_UNKNOWN_STREAM);
	/* A transient refusal is forgotten, so the resend is new. */
	firn_proto_dedupe_reserve(p, 3, 50);
	assert_int_equal(firn_proto_dedupe_forget(p, 3), 50);
	assert_int_equal(firn_proto_dedupe_check(p, 3, &o), FIRN_PROTO_DEDUPE_NEW);
	assert_int_equal(firn_proto_dedupe_forget(p, 3), -ENOENT);
	assert_true(firn_proto_producer_hi(p) == 3);
	firn_proto_dedupe_destroy(d);
}

static void
test_window_slide(void **state)
{
	struct firn_proto_dedupe *d = firn_proto_dedupe_create(4, 64);
	struct firn_proto_producer *p = firn_proto_producer_get(d, 9, true, 0);
	struct firn_proto_durable o;

	for (uint64_t s = 1; s <= 64; s++) {
		assert_int_equal(firn_proto_dedupe_reserve(p, s, 1), 0);
		firn_proto_dedupe_done(p, s, 0, 1000 + s, FIRN_PROTO_OK);
	}
	assert_int_equal(firn_proto_dedupe_check(p, 1, &o), FIRN_PROTO_DEDUPE_DONE);
	/* 65 pushes 1 out; 2..65 are remembered. */
	assert_int_equal(firn_proto_dedupe_reserve(p, 65, 1), 0);
	assert_int_equal(firn_proto_dedupe_check(p, 1, &o), FIRN_PROTO_DEDUPE_STALE);
	assert_int_equal(firn_proto_dedupe_reserve(p, 1, 1), -ESTALE);
	assert_int_equal(firn_proto_dedupe_check(p, 2, &o), FIRN_PROTO_DEDUPE_DONE);
	assert_true(o.counter == 1002);
	/* Gaps inside the window are new, once. */
	assert_int_equal(firn_proto_dedupe_reserve(p, 200, 1), -EBUSY); /* 65 still pending */
	firn_proto_dedupe_done(p, 65, 0, 1065, FIRN_PROTO_OK);
	assert_int_equal(firn_proto_dedupe_reserve(p, 200, 1), 0);
	assert_true(firn_proto_producer_hi(p) == 200);
	assert_int_equal(firn_proto_dedupe_check(p, 150, &o), FIRN_PROTO_DEDUPE_NEW);
	assert_int_equal(firn_proto_dedupe_check(p, 137, &o), FIRN_PROTO_DEDUPE_NEW);
	assert_int_equal(firn_proto_dedupe_check(p, 136, &o), FIRN_PROTO_DEDUPE_STALE);
	/* Old entries never alias into new seqs: 65 + 64k share a slot with 65. */
	assert_int_equal(firn_proto_dedupe_check(p, 193, &o), FIRN_PROTO_DEDUPE_NEW);
	assert_int_equal(firn_proto_dedupe_check(p, 0, &o), FIRN_PROTO_DEDUPE_STALE);
	firn_proto_dedupe_destroy(d);
}

/* A slide never forgets a pending record, and nothing changes when it refuses. */
static void
test_no_evict_pending(void **state)
{
	struct firn_proto_dedupe *d = firn_proto_dedupe_create(4, 64);
	struct firn_proto_producer *p = firn_proto_producer_get(d, 9, true, 0);
	struct firn_proto_durable o;

	assert_int_equal(firn_proto_dedupe_reserve(p, 10, 7), 0);
	for (uint64_t s = 11; s <= 73; s++)
		assert_int_equal(firn_proto_dedupe_reserve(p, s, 7), 0);
	assert_int_equal(firn_proto_dedupe_reserve(p, 74, 7), -EBUSY);
	assert_int_equal(firn_proto_dedupe_reserve(p, 10000, 7), -EBUSY);
	assert_true(firn_proto_producer_hi(p) == 73);
	assert_int_equal(firn_proto_producer_pending(p), 64);
	assert_int_equal(firn_proto_dedupe_check(p, 10, &o), FIRN_PROTO_DEDUPE_PENDING);
	assert_int_equal(firn_proto_dedupe_done(p, 10, 1, 1, FIRN_PROTO_OK), 7);
	assert_int_equal(firn_proto_dedupe_reserve(p, 74, 7), 0);
	assert_int_equal(firn_proto_dedupe_check(p, 10, &o), FIRN_PROTO_DEDUPE_STALE);
	firn_proto_dedupe_destroy(d);
}

static void
test_producer_table(void **state)
{
	struct firn_proto_dedupe *d = firn_proto_dedupe_create(3, 64);
	struct firn_proto_producer *p[4];

	assert_null(firn_proto_dedupe_create(3, 100));
	assert_null(firn_proto_producer_get(d, 0, true, 0));
	p[0] = firn_proto_producer_get(d, 100, true, 10);
	p[1] = firn_proto_producer_get(d, 200, true, 5); /* least recently used */
	p[2] = firn_proto_producer_get(d, 300, true, 20);
	assert_ptr_equal(firn_proto_producer_get(d, 200, false, 0), p[1]);
	assert_null(firn_proto_producer_get(d, 400, false, 0));
	firn_proto_dedupe_reserve(p[1], 5, 1);
	firn_proto_dedupe_done(p[1], 5, 0, 0, FIRN_PROTO_OK);
	firn_proto_dedupe_reserve(p[0], 1, 1); /* 100 has a record pending */
	/* Full: 400 evicts 200 (idle, nothing pending, oldest), never 100. */
	p[3] = firn_proto_producer_get(d, 400, true, 30);
	assert_ptr_equal(p[3], p[1]);
	assert_null(firn_proto_producer_get(d, 200, false, 0));
	assert_ptr_equal(firn_proto_producer_get(d, 100, false, 0), p[0]);
	assert_true(firn_proto_producer_hi(p[3]) == 0); /* a clean window */
	/* Everyone busy: no room, and the reason says so. */
	firn_proto_dedupe_reserve(p[2], 1, 1);
	firn_proto_dedupe_reserve(p[3], 1, 1);
	assert_null(firn_proto_producer_get(d, 500, true, 40));
	assert_non_null(strstr(firn_err_msg(), "producer table full"));
	firn_proto_dedupe_destroy(d);
}

/* ---- a fake store -------------------------------------------------------------- */

#define N_SHARDS 4
#define MAX_RECS 20000

struct stored {
	uint64_t producer, seq, counter;
	uint32_t shard, len;
	uint8_t data[64];
};

struct store {
	struct stored recs[MAX_RECS];
	unsigned n;
	uint64_t next[N_SHARDS];
};

static struct store store;

static void
store_append(uint64_t producer, const struct firn_proto_rec *r, uint32_t *shard, uint64_t *counter)
{
	struct stored *s = &store.recs[store.n++];

	assert_true(store.n < MAX_RECS);
	s->producer = producer;
	s->seq = r->seq;
	s->shard = (uint32_t)(r->key[0] % N_SHARDS);
	s->counter = store.next[s->shard]++;
	s->len = FIRN_MIN(r->len, 64u);
	memcpy(s->data, r->data, s->len);
	*shard = s->shard;
	*counter = s->counter;
}

/* Every RX item of one datagram: records are "stored" and made durable at once. */
struct rx_result {
	unsigned stored, answered, dups;
	struct firn_proto_durable last;
};

static int
feed_datagram(struct firn_proto_server *s, const struct firn_proto_addr *from, uint8_t *pkt,
              size_t len, uint64_t now, struct rx_result *res)
{
	struct firn_proto_session *ss;
	struct firn_proto_rx rx;
	struct firn_proto_rx_item it;
	uint8_t *plain;
	int n = firn_proto_server_open(s, from, pkt, len, now, &ss, &plain), rc;

	if (n < 0)
		return n;
	firn_proto_rx_begin(&rx, s, ss, plain, (size_t)n, now);
	while ((rc = firn_proto_rx_next(&rx, &it)) > 0) {
		if (it.kind == FIRN_PROTO_RX_RECORD) {
			struct firn_proto_durable d = {.seq = it.rec.seq, .count = 1};

			store_append(firn_proto_producer_id(it.producer), &it.rec, &d.shard,
			             &d.counter);
			if (it.reasm_slot >= 0)
				firn_proto_reasm_release(firn_proto_session_reasm(ss),
				                         it.reasm_slot);
			assert_int_equal(firn_proto_record_done(s, it.producer, it.rec.seq, d.shard,
			                                        d.counter, FIRN_PROTO_OK),
			                 0);
			assert_int_equal(firn_proto_session_queue_durable(ss, &d), 0);
			res->stored++;
		} else if (it.kind == FIRN_PROTO_RX_ANSWER) {
			res->answered++;
			if (it.ack.flags & FIRN_PROTO_DF_DUPLICATE)
				res->dups++;
			res->last = it.ack;
		}
	}
	/* Drain the ack queue as a driver would (the datagrams are dropped here). */
	while (firn_proto_session_tx_pending(ss) > 0) {
		static uint8_t out[FIRN_PROTO_DGRAM_MAX];

		assert_true(firn_proto_session_flush(s, ss, now, false, out, sizeof(out)) > 0);
	}
	return rc;
}

static uint8_t keys[MAX_RECS][8];
static uint8_t datas[MAX_RECS][48];

/* Send records lo..hi (seqs) in as few datagrams as fit. Returns datagrams sent. */
static unsigned
send_records(struct test_pair *tp, uint64_t lo, uint64_t hi, struct rx_result *res)
{
	static uint8_t pkt[FIRN_PROTO_DGRAM_MAX];
	struct firn_proto_enc e;
	unsigned dgrams = 0;
	uint64_t s = lo;

	while (s <= hi) {
		assert_int_equal(firn_proto_client_enc_begin(tp->cli, &e, pkt, sizeof(pkt), 0), 0);
		for (; s <= hi; s++) {
			struct firn_proto_rec r = {.seq = s,
			                           .key = keys[s],
			                           .key_len = 8,
			                           .data = datas[s],
			                           .len = 48,
			                           .stream_ref = 0};
			uint32_t off = 0;

			if (firn_proto_enc_record(&e, &r, "s1", 2, &off) != 1)
				break;
		}
		assert_int_equal(feed_datagram(tp->srv, &tp->addr, pkt,
		                               (size_t)firn_proto_client_seal(tp->cli, &e), tp->now,
		                               res),
		                 0);
		dgrams++;
	}
	return dgrams;
}

static void
make_data(void)
{
	for (unsigned i = 0; i < MAX_RECS; i++) {
		for (int k = 0; k < 8; k++)
			keys[i][k] = (uint8_t)('a' + test_below(26));
		test_fill(datas[i], 48);
	}
}

static void
test_rx_duplicates(void **state)
{
	struct test_pair tp;
	struct rx_result res = {0};
	const struct firn_proto_stats *st;
	unsigned before;

	memset(&store, 0, sizeof(store));
	make_data();
	test_pair_open(&tp, NULL, 1472);
	st = firn_proto_server_stats(tp.srv);
	send_records(&tp, 1, 100, &res);
	assert_int_equal(res.stored, 100);
	assert_int_equal(store.n, 100);
	/* Everything again, twice: nothing stored, every record answered as it was. */
	for (int round = 0; round < 2; round++) {
		memset(&res, 0, sizeof(res));
		send_records(&tp, 1, 100, &res);
		assert_int_equal(res.stored, 0);
		assert_int_equal(res.dups, 100);
	}
	assert_int_equal(store.n, 100);
	assert_int_equal(st->dup_done, 200);
	/* The answer for seq 100 is the original one. */
	assert_true(res.last.seq == 100 && res.last.shard == store.recs[99].shard &&
	            res.last.counter == store.recs[99].counter);
	/* A resend while the original is still pending is dropped silently. */
	{
		struct firn_proto_producer *p = firn_proto_session_producer(tp.ss);

		assert_int_equal(firn_proto_dedupe_reserve(p, 101, 48), 0);
		before = (unsigned)st->dup_pending;
		memset(&res, 0, sizeof(res));
		send_records(&tp, 101, 101, &res);
		assert_int_equal(res.stored + res.answered, 0);
		assert_int_equal(st->dup_pending, before + 1);
	}
	test_pair_close(&tp);
}

static int
resolve_only_s1(void *arg, const char *name, size_t len, uint64_t *id)
{
	(void)arg;
	if (len == 2 && memcmp(name, "s1", 2) == 0) {
		*id = 11;
		return 0;
	}
	return -ENOENT;
}

static void
test_rx_refusals(void **state)
{
	struct firn_proto_server_conf conf;
	struct test_pair tp;
	static uint8_t pkt[FIRN_PROTO_DGRAM_MAX];
	struct firn_proto_enc e;
	struct rx_result res = {0};
	struct firn_proto_rec r = {.seq = 1,
	                           .key = (const uint8_t *)"k",
	                           .key_len = 1,
	                           .data = (const uint8_t *)"x",
	                           .len = 1,
	                           .stream_ref = 1};
	uint32_t off = 0;

	memset(&store, 0, sizeof(store));
	firn_proto_server_conf_defaults(&conf);
	conf.max_sessions = 2;
	conf.max_producers = 2;
	conf.reasm_pool_bytes = 4u << 20;
	conf.resolve = resolve_only_s1;
	test_pair_open(&tp, &conf, 1472);
	/* Unknown stream, twice: the same answer, remembered. */
	for (int i = 0; i < 2; i++) {
		firn_proto_client_enc_begin(tp.cli, &e, pkt, sizeof(pkt), 0);
		off = 0;
		assert_int_equal(firn_proto_enc_record(&e, &r, "nope", 4, &off), 1);
		memset(&res, 0, sizeof(res));
		feed_datagram(tp.srv, &tp.addr, pkt, (size_t)firn_proto_client_seal(tp.cli, &e),
		              tp.now, &res);
		assert_int_equal(res.answered, 1);
		assert_int_equal(res.last.status, FIRN_PROTO_E_UNKNOWN_STREAM);
		assert_int_equal(res.last.flags, i == 0 ? 0 : FIRN_PROTO_DF_DUPLICATE);
	}
	/* A ref that was never bound. */
	firn_proto_client_enc_begin(tp.cli, &e, pkt, sizeof(pkt), 0);
	r.seq = 2;
	r.stream_ref = 7;
	off = 0;
	firn_proto_enc_record(&e, &r, NULL, 0, &off);
	memset(&res, 0, sizeof(res));
	feed_datagram(tp.srv, &tp.addr, pkt, (size_t)firn_proto_client_seal(tp.cli, &e), tp.now,
	              &res);
	assert_int_equal(res.last.status, FIRN_PROTO_E_UNKNOWN_STREAM);
	/* A known stream works, and its id comes through. */
	{
		struct firn_proto_session *ss;
		struct firn_proto_rx rx;
		struct firn_proto_rx_item it;
		uint8_t *plain;
		int n;

		firn_proto_client_enc_begin(tp.cli, &e, pkt, sizeof(pkt), 0);
		r.seq = 3;
		r.stream_ref = 0;
		off = 0;
		firn_proto_enc_record(&e, &r, "s1", 2, &off);
		n = firn_proto_server_open(tp.srv, &tp.addr, pkt,
		                           (size_t)firn_proto_client_seal(tp.cli, &e), tp.now, &ss,
		                           &plain);
		firn_proto_rx_begin(&rx, tp.srv, ss, plain, (size_t)n, tp.now);
		assert_int_equal(firn_proto_rx_next(&rx, &it), 1);
		assert_int_equal(it.kind, FIRN_PROTO_RX_RECORD);
		assert_true(it.stream_id == 11);
		assert_int_equal(it.reasm_slot, -1);
		assert_int_equal(firn_proto_rx_next(&rx, &it), 0);
		/* Rebinding ref 0 to another name is a protocol error. */
		firn_proto_client_enc_begin(tp.cli, &e, pkt, sizeof(pkt), 0);
		r.seq = 4;
		off = 0;
		firn_proto_enc_record(&e, &r, "s2", 2, &off);
		n = firn_proto_server_open(tp.srv, &tp.addr, pkt,
		                           (size_t)firn_proto_client_seal(tp.cli, &e), tp.now, &ss,
		                           &plain);
		firn_proto_rx_begin(&rx, tp.srv, ss, plain, (size_t)n, tp.now);
		assert_int_equal(firn_proto_rx_next(&rx, &it), -EPROTO);
		assert_int_equal(firn_proto_rx_next(&rx, &it), 0);
	}
	test_pair_close(&tp);
}

/* Fragments of a record already stored are answered once (at offset 0) and never rebuffered. */
static void
test_rx_fragment_dups(void **state)
{
	struct test_pair tp;
	static uint8_t pkt[FIRN_PROTO_DGRAM_MAX], big[20000];
	static uint8_t saved[20][FIRN_PROTO_DGRAM_MAX];
	size_t len[20];
	unsigned n = 0;
	struct firn_proto_rec r = {.seq = 1,
	                           .key = (const uint8_t *)"k",
	                           .key_len = 1,
	                           .data = big,
	                           .len = sizeof(big)};
	struct rx_result res = {0};
	uint32_t off = 0;
	int rc;

	memset(&store, 0, sizeof(store));
	test_fill(big, sizeof(big));
	test_pair_open(&tp, NULL, 1472);
	do {
		struct firn_proto_enc e;

		firn_proto_client_enc_begin(tp.cli, &e, pkt, sizeof(pkt), 0);
		rc = firn_proto_enc_record(&e, &r, "s1", 2, &off);
		len[n] = (size_t)firn_proto_client_seal(tp.cli, &e);
		memcpy(saved[n], pkt, len[n]);
		n++;
	} while (rc == 0);
	/* Deliver in reverse: the record completes at the last one (offset 0). */
	for (unsigned i = n; i-- > 0;) {
		memcpy(pkt, saved[i], len[i]);
		feed_datagram(tp.srv, &tp.addr, pkt, len[i], tp.now, &res);
	}
	assert_int_equal(res.stored, 1);
	assert_int_equal(store.n, 1);
	assert_memory_equal(store.recs[0].data, big, 64);
	assert_int_equal(firn_proto_server_stats(tp.srv)->reasm_complete, 1);
	/* The whole record resent (new packet numbers): one DUPLICATE answer, no buffering. */
	memset(&res, 0, sizeof(res));
	off = 0;
	do {
		struct firn_proto_enc e;

		firn_proto_client_enc_begin(tp.cli, &e, pkt, sizeof(pkt), 0);
		rc = firn_proto_enc_record(&e, &r, "s1", 2, &off);
		feed_datagram(tp.srv, &tp.addr, pkt, (size_t)firn_proto_client_seal(tp.cli, &e),
		              tp.now, &res);
		assert_int_equal(firn_proto_session_reasm(tp.ss)->mem_used, 0);
	} while (rc == 0);
	assert_int_equal(res.stored, 0);
	assert_int_equal(res.answered, 1);
	assert_int_equal(res.dups, 1);
	assert_true(res.last.counter == store.recs[0].counter);
	test_pair_close(&tp);
}

/*
 * The crash story: a producer's records are stored with (producer, seq); the
 * appliance dies; a new server is seeded from the store; the producer
 * reconnects, learns producer_hi, and resends everything it had in flight.
 * Nothing is stored twice and every answer carries the original position.
 */
static void
test_restart_seeded(void **state)
{
	struct firn_proto_server_conf conf;
	struct test_pair tp;
	struct rx_result res = {0};
	struct firn_proto_client *c2;
	struct firn_proto_session *ss;
	unsigned stored_before;
	const uint64_t W = 1024;

	memset(&store, 0, sizeof(store));
	make_data();
	firn_proto_server_conf_defaults(&conf);
	conf.max_sessions = 4;
	conf.max_producers = 4;
	conf.reasm_pool_bytes = 4u << 20;
	conf.credit_records = 4000;
	test_pair_open(&tp, &conf, 1472);
	/* 3000 records, and one other producer's record that must not interfere. */
	send_records(&tp, 1, 3000, &res);
	assert_int_equal(store.n, 3000);
	store.recs[store.n++] =
	        (struct stored){.producer = 777, .seq = 1, .shard = 0, .counter = store.next[0]++};
	stored_before = store.n;
	firn_proto_server_destroy(tp.srv);

	/* Restart: seed from what the store holds, shard by shard, as firnd would. */
	tp.srv = test_server(&conf, &tp.key);
	for (uint32_t sh = 0; sh < N_SHARDS; sh++)
		for (unsigned i = 0; i < store.n; i++)
			if (store.recs[i].shard == sh)
				assert_int_equal(firn_proto_dedupe_seed(
				                         firn_proto_server_dedupe(tp.srv),
				                         store.recs[i].producer, store.recs[i].seq,
				                         sh, store.recs[i].counter, 0),
				                 0);
	c2 = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	test_handshake(tp.srv, c2, &tp.addr, tp.now, &ss);
	assert_true(firn_proto_client_params(c2)->producer_hi == 3000);
	firn_proto_client_destroy(tp.cli);
	tp.cli = c2;
	tp.ss = ss;
	/* The client's W-window of unacked records, resent in full. */
	memset(&res, 0, sizeof(res));
	send_records(&tp, 3000 - W + 1, 3000, &res);
	assert_int_equal(res.stored, 0);
	assert_int_equal(res.dups, W);
	assert_int_equal(store.n, stored_before);
	/* Each answer is the stored position: check a spread of them. */
	for (uint64_t s = 3000 - W + 1; s <= 3000; s += 97) {
		struct firn_proto_durable o;
		struct firn_proto_producer *p = firn_proto_session_producer(ss);

		assert_int_equal(firn_proto_dedupe_check(p, s, &o), FIRN_PROTO_DEDUPE_DONE);
		assert_true(o.shard == store.recs[s - 1].shard);
		assert_true(o.counter == store.recs[s - 1].counter);
	}
	/* New records continue after producer_hi. */
	memset(&res, 0, sizeof(res));
	send_records(&tp, 3001, 3010, &res);
	assert_int_equal(res.stored, 10);
	assert_int_equal(store.n, stored_before + 10);
	test_pair_close(&tp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_dup_gets_original), cmocka_unit_test(test_window_slide),
	        cmocka_unit_test(test_no_evict_pending),  cmocka_unit_test(test_producer_table),
	        cmocka_unit_test(test_rx_duplicates),     cmocka_unit_test(test_rx_refusals),
	        cmocka_unit_test(test_rx_fragment_dups),  cmocka_unit_test(test_restart_seeded),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
