/*
 * test_ingest.c - lib/ingest on one thread: fake NIC, real store, real protocol.
 *
 * Each test builds a bench (ingest_fake.h): a catalog and a non-threaded
 * store in a scratch directory under /var/tmp, the pipeline on a NIC made
 * of memory, and producers that speak lib/proto. The bench pumps the RX
 * agent and the store's writers by hand, so a test decides exactly when
 * records become durable.
 *
 * Covered: records land in the right shard with consecutive counters and
 * their bytes, key and producer identity; DURABLE acks come only after the
 * store says durable; retransmits are answered with the original entry
 * and stored once (in flight and after); unknown and deleted streams; the
 * route table after a split (and while a shard is sealed but the catalog
 * does not show the split yet); a 1 MiB record in fragments; the waiting
 * pool and credit bound memory; a full durable ring falls back to polling;
 * a restart rebuilds the dedupe windows from the store and RESETs the old
 * session with a token the client accepts; the SPSC ring under two threads;
 * two RX agents on a NIC that sprays producers over both queues (each
 * producer served by its owner, exactly once, across a restart).
 *
 * Exit 0 pass, 1 fail, 77 skip (no O_DIRECT under /var/tmp).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../../lib/ingest/ingest_internal.h"
#include "ingest_fake.h"

#define P1 0x1111222233334444ull
#define P2 0x5555666677778888ull

static struct firn_stream_info *
stream_get(struct bench *b, const char *name)
{
	struct firn_stream_info *s;

	assert_int_equal(firn_catalog_get(b->cat, name, &s), 0);
	return s;
}

static uint32_t
route(const struct firn_stream_info *s, const char *key)
{
	struct firn_u128 h;
	uint32_t shard;

	firn_hash_key(key, strlen(key), &h);
	assert_int_equal(firn_stream_route(s, h, &shard), 0);
	return shard;
}

static void
stats(struct bench *b, struct firn_ingest_stats *st)
{
	firn_ingest_stats(b->ing, st);
}

/* ---- checking what the store holds ------------------------------------------------ */

struct seen {
	uint64_t producer;
	uint32_t count[TP_MAXSEQ]; /* records stored per producer seq */
	uint32_t shard[TP_MAXSEQ];
	uint64_t counter[TP_MAXSEQ];
	const struct trec *recs; /* expected, indexed by seq */
	unsigned nrecs;
	unsigned bad;
};

static void
seen_fn(void *arg, uint32_t shard, const struct firn_record *r)
{
	struct seen *sn = arg;
	static uint8_t want[FIRN_RECORD_DATA_MAX];
	const struct trec *t = NULL;

	if (r->producer_id != sn->producer)
		return;
	if (r->producer_seq >= TP_MAXSEQ) {
		sn->bad++;
		return;
	}
	sn->count[r->producer_seq]++;
	sn->shard[r->producer_seq] = shard;
	sn->counter[r->producer_seq] = r->counter;
	for (unsigned i = 0; i < sn->nrecs; i++)
		if (sn->recs[i].seq == r->producer_seq)
			t = &sn->recs[i];
	if (t == NULL)
		return;
	rec_fill(want, t->len, sn->producer, t->seq);
	if (r->data_len != t->len || memcmp(r->data, want, t->len) != 0)
		sn->bad++;
	if (t->key != NULL &&
	    (r->key_len != strlen(t->key) || memcmp(r->key, t->key, r->key_len) != 0))
		sn->bad++;
	if (t->key == NULL) {
		char dec[FIRN_U128_DEC_SIZE];
		size_t n = firn_u128_format(t->hash, dec);

		if (r->key_len != n || memcmp(r->key, dec, n) != 0)
			sn->bad++;
	}
}

static void
seen_collect(struct bench *b, struct seen *sn, const char *stream)
{
	struct firn_stream_info *s = stream_get(b, stream);

	for (uint32_t i = 0; i < s->nshards; i++)
		bench_read_shard(b, s->id, i, seen_fn, sn);
	firn_stream_info_free(s);
}

static struct trec *
make_recs(unsigned n, uint64_t first_seq, const char *prefix, uint32_t len)
{
	struct trec *v = calloc(n, sizeof(*v));
	static char keys[8192][24];
	static unsigned nk;

	for (unsigned i = 0; i < n; i++) {
		char *k = keys[nk++ % 8192];

		snprintf(k, 24, "%s-%u", prefix, i);
		v[i].seq = first_seq + i;
		v[i].key = k;
		v[i].len = len ? len : (uint32_t)(i * 37 % 700);
	}
	return v;
}

/* ---- tests --------------------------------------------------------------------------- */

/* Records land in the right shards with the right bytes; acks name them exactly. */
static void
test_records_land(void **state)
{
	struct bench *b = *state;
	struct firn_stream_info *s;
	struct firn_ingest_stats st;
	struct seen *sn = calloc(1, sizeof(*sn));
	struct trec *recs;
	struct tp *t;
	unsigned n = 300;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "clicks", 4, NULL), 0);
	t = tp_new(b, P1, 40001, 8972);
	tp_connect(b, t);
	recs = make_recs(n, 1, "user", 0);
	/* a few records with the client's own hash key, one per shard's range */
	for (unsigned i = 0; i < 4; i++) {
		recs[i].key = NULL;
		recs[i].hash = firn_u128_add(firn_u128_range_start(i, 4), firn_u128_from_u64(7));
	}
	tp_send(b, t, recs, n, "clicks");
	assert_true(tp_wait_answers(b, t, 1, n, 200));
	s = stream_get(b, "clicks");
	for (unsigned i = 0; i < n; i++) {
		struct tp_ack *a = &t->acks[recs[i].seq];
		uint32_t want;

		assert_int_equal(a->status, FIRN_PROTO_OK);
		assert_int_equal(a->answers, 1);
		if (recs[i].key != NULL)
			want = route(s, recs[i].key);
		else
			assert_int_equal(firn_stream_route(s, recs[i].hash, &want), 0);
		assert_int_equal(a->shard, want);
	}
	assert_int_equal(t->bad_entries, 0);
	/* The store holds each once, where the ack said, with its bytes and identity. */
	sn->producer = P1;
	sn->recs = recs;
	sn->nrecs = n;
	seen_collect(b, sn, "clicks");
	assert_int_equal(sn->bad, 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t q = recs[i].seq;

		assert_int_equal(sn->count[q], 1);
		assert_int_equal(sn->shard[q], t->acks[q].shard);
		assert_int_equal(sn->counter[q], t->acks[q].counter);
	}
	/* Per shard, counters are exactly 0..k-1 (one producer, no gaps). */
	for (uint32_t sh = 0; sh < 4; sh++) {
		struct firn_shard_stat ss;
		unsigned k = 0;

		for (unsigned i = 0; i < n; i++)
			k += t->acks[recs[i].seq].shard == sh;
		assert_int_equal(firn_store_shard_stat(b->st, s->id, sh, &ss), 0);
		assert_int_equal(ss.next_counter, k);
	}
	stats(b, &st);
	assert_int_equal(st.records_new, n);
	assert_int_equal(st.records_appended, n);
	assert_int_equal(st.records_acked, n);
	assert_int_equal(st.waiting, 0);
	/* batching: far fewer appends than records */
	assert_true(st.append_calls < n / 4);
	firn_stream_info_free(s);
	free(recs);
	free(sn);
}

/* Nothing is acked before the store says durable. */
static void
test_acks_after_durable(void **state)
{
	struct bench *b = *state;
	struct firn_stream_info *s;
	struct firn_shard_stat ss;
	struct trec *recs;
	struct tp *t;
	unsigned n = 50, acked = 0;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "one", 1, NULL), 0);
	s = stream_get(b, "one");
	t = tp_new(b, P1, 40002, 1472);
	tp_connect(b, t);
	recs = make_recs(n, 1, "k", 100);
	tp_send(b, t, recs, n, "one");
	/* The agent runs, the writers do not: RECEIVED acks, appended, no DURABLE. */
	bench_pump(b, 20, false);
	assert_true(t->received > 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(t->acks[recs[i].seq].answers, 0);
	assert_int_equal(firn_store_shard_stat(b->st, s->id, 0, &ss), 0);
	assert_int_equal(ss.next_counter, n);
	assert_int_equal(ss.durable_next, 0);
	/* Now let the store work; every ack must name a durable counter. */
	for (uint64_t until = firn_mono_ns() + 10000000000ull;
	     acked < n && firn_mono_ns() < until;) {
		bench_pump(b, 1, true);
		assert_int_equal(firn_store_shard_stat(b->st, s->id, 0, &ss), 0);
		acked = 0;
		for (unsigned i = 0; i < n; i++) {
			struct tp_ack *a = &t->acks[recs[i].seq];

			if (a->answers == 0)
				continue;
			acked++;
			assert_int_equal(a->status, FIRN_PROTO_OK);
			assert_true(a->counter < ss.durable_next);
		}
	}
	assert_int_equal(acked, n);
	/* One producer, one shard: the counters follow the seqs. */
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(t->acks[recs[i].seq].counter, i);
	firn_stream_info_free(s);
	free(recs);
}

/* Retransmits: dropped while in flight, answered with the original entry after; stored once. */
static void
test_duplicates(void **state)
{
	struct bench *b = *state;
	struct firn_ingest_stats st;
	struct seen *sn = calloc(1, sizeof(*sn));
	struct tp_ack first[64];
	struct trec *recs;
	struct tp *t;
	unsigned n = 60;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "dup", 3, NULL), 0);
	t = tp_new(b, P1, 40003, 8972);
	tp_connect(b, t);
	recs = make_recs(n, 1, "d", 0);
	tp_send(b, t, recs, n, "dup");
	bench_pump(b, 5, false);
	/* in flight (appended, not durable): the resend is dropped silently */
	tp_send(b, t, recs, n, "dup");
	bench_pump(b, 5, false);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(t->acks[recs[i].seq].answers, 0);
	assert_true(tp_wait_answers(b, t, 1, n, 200));
	for (unsigned i = 0; i < n; i++) {
		first[i] = t->acks[recs[i].seq];
		assert_int_equal(first[i].answers, 1);
		assert_int_equal(first[i].flags & FIRN_PROTO_DF_DUPLICATE, 0);
	}
	/* after durable: the resend gets the same (shard, counter), flagged DUPLICATE */
	tp_send(b, t, recs, n, "dup");
	for (unsigned r = 0; r < 50; r++)
		bench_pump(b, 1, true);
	for (unsigned i = 0; i < n; i++) {
		struct tp_ack *a = &t->acks[recs[i].seq];

		assert_int_equal(a->answers, 2);
		assert_int_equal(a->status, FIRN_PROTO_OK);
		assert_true(a->flags & FIRN_PROTO_DF_DUPLICATE);
		assert_int_equal(a->shard, first[i].shard);
		assert_int_equal(a->counter, first[i].counter);
	}
	assert_int_equal(t->bad_entries, 0);
	sn->producer = P1;
	sn->recs = recs;
	sn->nrecs = n;
	seen_collect(b, sn, "dup");
	assert_int_equal(sn->bad, 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(sn->count[recs[i].seq], 1);
	stats(b, &st);
	assert_int_equal(st.records_appended, n);
	assert_true(st.dup_pending >= n);
	assert_true(st.dup_done >= n);
	free(recs);
	free(sn);
}

/* Unknown stream, and a stream deleted after the session bound it. */
static void
test_unknown_stream(void **state)
{
	struct bench *b = *state;
	struct firn_stream_info *s;
	struct firn_ingest_stats st;
	struct trec r[3] = {
	        {.seq = 1, .key = "a", .len = 10, .ref = 0},
	        {.seq = 2, .key = "b", .len = 10, .ref = 1},
	        {.seq = 3, .key = "c", .len = 10, .ref = 1},
	};
	struct tp *t;
	uint64_t sid;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "gone", 1, &sid), 0);
	t = tp_new(b, P2, 40004, 8972);
	tp_connect(b, t);
	tp_send(b, t, &r[0], 1, "nope");
	tp_send(b, t, &r[1], 1, "gone");
	assert_true(tp_wait_answers(b, t, 1, 2, 100));
	assert_int_equal(t->acks[1].status, FIRN_PROTO_E_UNKNOWN_STREAM);
	assert_int_equal(t->acks[2].status, FIRN_PROTO_OK);
	/* Delete it (as the API does: catalog, then the store's files). */
	assert_int_equal(firn_catalog_delete(b->cat, "gone"), 0);
	assert_int_equal(firn_store_stream_drop(b->st, sid), 0);
	tp_send(b, t, &r[2], 1, "gone");
	assert_true(tp_wait_answers(b, t, 3, 3, 100));
	assert_int_equal(t->acks[3].status, FIRN_PROTO_E_UNKNOWN_STREAM);
	/* The refusal is remembered: a resend gets the same answer. */
	tp_send(b, t, &r[0], 1, "nope");
	bench_pump(b, 10, true);
	assert_int_equal(t->acks[1].answers, 2);
	assert_int_equal(t->acks[1].status, FIRN_PROTO_E_UNKNOWN_STREAM);
	assert_int_equal(firn_catalog_get(b->cat, "gone", &s), -ENOENT);
	stats(b, &st);
	assert_int_equal(st.records_appended, 1);
	assert_int_equal(st.waiting, 0);
}

/* A split: sealed-but-not-yet-in-the-catalog refuses (no ack); the new routes take over. */
static void
test_split_refresh(void **state)
{
	struct bench *b = *state;
	struct firn_stream_info *s;
	struct firn_ingest_stats st0, st;
	struct trec *recs, *more;
	struct seen *sn = calloc(1, sizeof(*sn));
	uint64_t last;
	uint32_t child[2];
	bool empty;
	struct tp *t;
	unsigned n = 40;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "sp", 1, NULL), 0);
	t = tp_new(b, P1, 40005, 8972);
	tp_connect(b, t);
	recs = make_recs(n, 1, "s", 64);
	tp_send(b, t, recs, n, "sp");
	assert_true(tp_wait_answers(b, t, 1, n, 100));
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(t->acks[recs[i].seq].shard, 0);
	s = stream_get(b, "sp");
	/* Seal the parent in the store; the catalog does not know yet. */
	assert_int_equal(firn_store_shard_seal(b->st, s->id, 0, &last, &empty), 0);
	assert_int_equal(last, n - 1);
	stats(b, &st0);
	more = make_recs(n, n + 1, "t", 64);
	tp_send(b, t, more, n, "sp");
	bench_pump(b, 10, true);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(t->acks[more[i].seq].answers, 0);
	stats(b, &st);
	assert_int_equal(st.refused_sealed - st0.refused_sealed, n);
	/* Now the split lands; the resends route to the children. */
	assert_int_equal(firn_catalog_split(b->cat, "sp", 0, firn_u128_range_start(1, 2), last,
	                                    empty, child),
	                 0);
	tp_send(b, t, more, n, "sp");
	assert_true(tp_wait_answers(b, t, n + 1, 2 * n, 200));
	firn_stream_info_free(s);
	s = stream_get(b, "sp");
	for (unsigned i = 0; i < n; i++) {
		struct tp_ack *a = &t->acks[more[i].seq];

		assert_int_equal(a->status, FIRN_PROTO_OK);
		assert_true(a->shard == child[0] || a->shard == child[1]);
		assert_int_equal(a->shard, route(s, more[i].key));
	}
	stats(b, &st);
	assert_true(st.route_refreshes > st0.route_refreshes);
	sn->producer = P1;
	sn->recs = more;
	sn->nrecs = n;
	seen_collect(b, sn, "sp");
	assert_int_equal(sn->bad, 0);
	for (unsigned i = 0; i < 2 * n; i++)
		assert_int_equal(sn->count[i + 1], 1);
	firn_stream_info_free(s);
	free(recs);
	free(more);
	free(sn);
}

/* A 1 MiB record in ~720 fragments at 1472-byte datagrams, next to small ones. */
static void
test_fragmented(void **state)
{
	struct bench *b = *state;
	struct seen *sn = calloc(1, sizeof(*sn));
	struct trec r[3] = {
	        {.seq = 1, .key = "small", .len = 10},
	        {.seq = 2, .key = "big", .len = FIRN_RECORD_DATA_MAX},
	        {.seq = 3, .key = "after", .len = 3000},
	};
	struct tp *t;

	bench_start(b, NULL);
	b->port->max_payload = 1472;
	assert_int_equal(firn_catalog_create(b->cat, "big", 2, NULL), 0);
	t = tp_new(b, P1, 40006, 1472);
	tp_connect(b, t);
	assert_true(tp_send(b, t, r, 3, "big") > 700);
	assert_true(tp_wait_answers(b, t, 1, 3, 300));
	for (unsigned i = 1; i <= 3; i++)
		assert_int_equal(t->acks[i].status, FIRN_PROTO_OK);
	sn->producer = P1;
	sn->recs = r;
	sn->nrecs = 3;
	seen_collect(b, sn, "big");
	assert_int_equal(sn->bad, 0);
	for (unsigned i = 1; i <= 3; i++)
		assert_int_equal(sn->count[i], 1);
	free(sn);
}

/*
 * A tiny waiting pool: with the writers stopped, the agent never holds more
 * than max_waiting records, stops granting credit, and everything still
 * gets in (exactly once) when the producer resends after the store caught up.
 */
static void
test_pool_bound(void **state)
{
	struct bench *b = *state;
	struct firn_ingest_conf ic;
	struct firn_ingest_stats st;
	struct seen *sn = calloc(1, sizeof(*sn));
	struct trec *recs;
	struct tp *t;
	uint64_t granted;
	unsigned n = 700, round;

	firn_ingest_conf_defaults(&ic);
	ic.max_sessions = 4;
	ic.max_producers = 4;
	ic.reasm_pool_bytes = 8u << 20;
	ic.max_waiting = 32;
	bench_start(b, &ic);
	assert_int_equal(firn_catalog_create(b->cat, "pool", 2, NULL), 0);
	t = tp_new(b, P1, 40007, 8972);
	tp_connect(b, t);
	granted = t->credit_max_seq;
	assert_int_equal(granted, 512); /* W/2 from ACCEPT */
	recs = make_recs(n, 1, "p", 50);
	/* Blast everything, ignoring credit, without running the writers. */
	tp_send(b, t, recs, n, "pool");
	bench_pump(b, 20, false);
	stats(b, &st);
	assert_int_equal(st.waiting, 32);
	assert_true(st.refused_pool > 0);
	assert_true(st.refused_credit > 0); /* seqs past 512 */
	tp_send(b, t, recs, n, "pool");
	bench_pump(b, 20, false);
	stats(b, &st);
	assert_int_equal(st.waiting, 32);
	/* No room: the grant did not move. */
	assert_int_equal(t->credit_max_seq, granted);
	/* Let the store work, and resend what is unanswered until all are in. */
	for (round = 0; round < 4000; round++) {
		struct trec *rest = calloc(n, sizeof(*rest));
		unsigned k = 0;

		for (unsigned i = 0; i < n; i++)
			if (t->acks[recs[i].seq].status != FIRN_PROTO_OK ||
			    t->acks[recs[i].seq].answers == 0)
				rest[k++] = recs[i];
		if (k > 0)
			tp_send(b, t, rest, k, "pool");
		free(rest);
		if (k == 0)
			break;
		bench_pump(b, 3, true);
		stats(b, &st);
		assert_true(st.waiting <= 32);
	}
	assert_true(round < 4000);
	assert_true(t->credit_max_seq >= n);
	sn->producer = P1;
	sn->recs = recs;
	sn->nrecs = n;
	seen_collect(b, sn, "pool");
	assert_int_equal(sn->bad, 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(sn->count[recs[i].seq], 1);
	assert_int_equal(t->bad_entries, 0);
	free(recs);
	free(sn);
}

/* A full durable ring: the watermark is lost, the overflow flag makes the agent poll. */
static void
test_ring_overflow(void **state)
{
	struct bench *b = *state;
	struct firn_ingest_stats st;
	struct trec *recs;
	struct tp *t;
	unsigned n = 20;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "ov", 1, NULL), 0);
	t = tp_new(b, P1, 40008, 8972);
	tp_connect(b, t);
	recs = make_recs(n, 1, "o", 20);
	tp_send(b, t, recs, n, "ov");
	bench_pump(b, 5, false);
	/* Fill writer 0's ring (shard 0 % 2) with watermarks for a shard nobody waits on. */
	for (unsigned i = 0; i < INGEST_RING_SIZE + 10; i++)
		firn_ingest_on_durable(b->ing, 999, 0, i, 0);
	/* The real watermark now finds the ring full. */
	for (unsigned r = 0; r < 20; r++) {
		firn_store_flush(b->st);
		firn_store_do_work(b->st);
	}
	assert_true(tp_wait_answers(b, t, 1, n, 100));
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(t->acks[recs[i].seq].status, FIRN_PROTO_OK);
	stats(b, &st);
	assert_true(st.durable_overflow >= 1);
	free(recs);
}

/*
 * Restart: the new pipeline rebuilds the dedupe windows from the store, so
 * the producer's resends of acked records are answered DUPLICATE with the
 * original (shard, counter) and not stored again; the old session id gets
 * a RESET whose token the client accepts (cookie secret from the KEK).
 */
static void
test_restart_seed(void **state)
{
	struct bench *b = *state;
	struct firn_ingest_stats st;
	struct seen *sn = calloc(1, sizeof(*sn));
	struct tp_ack first[100];
	struct trec *recs, extra = {.seq = 101, .key = "new", .len = 33};
	struct tp *t;
	unsigned n = 100;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "rs", 3, NULL), 0);
	t = tp_new(b, P1, 40009, 8972);
	tp_connect(b, t);
	recs = make_recs(n, 1, "r", 0);
	tp_send(b, t, recs, n, "rs");
	assert_true(tp_wait_answers(b, t, 1, n, 200));
	for (unsigned i = 0; i < n; i++)
		first[i] = t->acks[recs[i].seq];
	bench_stop(b);
	/* ... and up again on the same files */
	bench_start(b, NULL);
	stats(b, &st);
	assert_int_equal(st.seeded, n);
	/* The old session is unknown now: a datagram on it draws a RESET the client trusts. */
	tp_send(b, t, &extra, 1, "rs");
	bench_pump(b, 3, false);
	assert_true(t->reset);
	stats(b, &st);
	assert_int_equal(st.resets_sent, 1);
	tp_connect(b, t);
	assert_int_equal(firn_proto_client_params(t->c)->producer_hi, n);
	memset(t->acks, 0, sizeof(t->acks));
	tp_send(b, t, recs, n, "rs");
	tp_send(b, t, &extra, 1, "rs");
	assert_true(tp_wait_answers(b, t, 1, n + 1, 200));
	for (unsigned i = 0; i < n; i++) {
		struct tp_ack *a = &t->acks[recs[i].seq];

		assert_int_equal(a->status, FIRN_PROTO_OK);
		assert_true(a->flags & FIRN_PROTO_DF_DUPLICATE);
		assert_int_equal(a->shard, first[i].shard);
		assert_int_equal(a->counter, first[i].counter);
	}
	assert_int_equal(t->acks[101].status, FIRN_PROTO_OK);
	assert_int_equal(t->acks[101].flags & FIRN_PROTO_DF_DUPLICATE, 0);
	stats(b, &st);
	assert_int_equal(st.records_appended, 1);
	sn->producer = P1;
	seen_collect(b, sn, "rs");
	for (unsigned i = 1; i <= n + 1; i++)
		assert_int_equal(sn->count[i], 1);
	free(recs);
	free(sn);
}

/*
 * Two RX agents on a NIC that sprays every producer's datagrams over both
 * queues. Each producer is served by its owner alone (its session id
 * carries the owner's tag; datagrams that reached the other agent are
 * handed over), every record is stored once where its ack said, and after a
 * restart each owner's rebuilt dedupe window answers the resends.
 */
static void
test_two_agents(void **state)
{
	struct bench *b = *state;
	struct firn_ingest_conf ic;
	struct firn_ingest_stats st;
	struct tp *t[4];
	struct tp_ack first[4][120];
	struct trec *recs[4];
	uint64_t pid[4], owned_new[2] = {0, 0};
	unsigned n = 120, owners = 0;

	firn_ingest_conf_defaults(&ic);
	ic.max_sessions = 16;
	ic.max_producers = 16;
	ic.reasm_pool_bytes = 16u << 20;
	ic.rx_agents = 2;
	bench_start(b, &ic);
	assert_int_equal(firn_catalog_create(b->cat, "multi", 4, NULL), 0);
	/* Four producers, at least one owned by each agent. */
	for (uint64_t id = 0x4000, k = 0; k < 4; id++) {
		unsigned o = ingest_owner(b->ing, id);

		if (k >= 2 && (owners & (1u << o)) && owners != 3)
			continue;
		owners |= 1u << o;
		pid[k++] = id;
	}
	assert_int_equal(owners, 3);
	for (unsigned i = 0; i < 4; i++) {
		t[i] = tp_new(b, pid[i], (uint16_t)(41000 + i), 1472);
		tp_connect(b, t[i]);
		/* The session id names the producer's owner. */
		assert_int_equal(
		        firn_proto_session_tag(firn_proto_client_params(t[i]->c)->session_id),
		        ingest_owner(b->ing, pid[i]));
		recs[i] = make_recs(n, 1, i & 1 ? "odd" : "even", 0);
	}
	for (unsigned i = 0; i < 4; i++)
		tp_send(b, t[i], recs[i], n, "multi");
	for (unsigned i = 0; i < 4; i++) {
		assert_true(tp_wait_answers(b, t[i], 1, n, 200));
		assert_int_equal(t[i]->bad_entries, 0);
		for (unsigned k = 0; k < n; k++) {
			first[i][k] = t[i]->acks[recs[i][k].seq];
			assert_int_equal(first[i][k].status, FIRN_PROTO_OK);
			assert_int_equal(first[i][k].answers, 1);
		}
		owned_new[ingest_owner(b->ing, pid[i])] += n;
	}
	stats(b, &st);
	assert_int_equal(st.records_new, 4 * n);
	assert_int_equal(st.records_acked, 4 * n);
	assert_true(st.handoffs > 0);
	assert_int_equal(st.handoff_dropped, 0);
	/* Each agent routed exactly its own producers' records. */
	for (unsigned k = 0; k < 2; k++)
		assert_int_equal(b->ing->ctrs[k].s.records_new, owned_new[k]);
	for (unsigned i = 0; i < 4; i++) {
		struct seen *sn = calloc(1, sizeof(*sn));

		sn->producer = pid[i];
		sn->recs = recs[i];
		sn->nrecs = n;
		seen_collect(b, sn, "multi");
		assert_int_equal(sn->bad, 0);
		for (unsigned k = 0; k < n; k++) {
			uint64_t q = recs[i][k].seq;

			assert_int_equal(sn->count[q], 1);
			assert_int_equal(sn->shard[q], first[i][k].shard);
			assert_int_equal(sn->counter[q], first[i][k].counter);
		}
		free(sn);
	}

	/* Restart: the windows are rebuilt on the owners; resends are duplicates. */
	bench_stop(b);
	bench_start(b, &ic);
	stats(b, &st);
	assert_int_equal(st.seeded, 4 * n);
	for (unsigned i = 0; i < 4; i++) {
		tp_send(b, t[i], recs[i], 1, "multi"); /* the old session: RESET */
		bench_pump(b, 3, false);
		assert_true(t[i]->reset);
		tp_connect(b, t[i]);
		memset(t[i]->acks, 0, sizeof(t[i]->acks));
		tp_send(b, t[i], recs[i], n, "multi");
	}
	for (unsigned i = 0; i < 4; i++) {
		assert_true(tp_wait_answers(b, t[i], 1, n, 200));
		for (unsigned k = 0; k < n; k++) {
			struct tp_ack *a = &t[i]->acks[recs[i][k].seq];

			assert_int_equal(a->status, FIRN_PROTO_OK);
			assert_true(a->flags & FIRN_PROTO_DF_DUPLICATE);
			assert_int_equal(a->shard, first[i][k].shard);
			assert_int_equal(a->counter, first[i][k].counter);
		}
		free(recs[i]);
	}
	stats(b, &st);
	assert_int_equal(st.records_appended, 0);
}

/* Two producers at once, one closing its session mid-way. */
static void
test_two_producers_close(void **state)
{
	struct bench *b = *state;
	struct seen *sn = calloc(1, sizeof(*sn));
	struct trec *r1, *r2;
	struct tp *t1, *t2;
	struct firn_proto_enc e;
	uint8_t buf[FIRN_PROTO_DGRAM_MAX];
	unsigned n = 80;
	int len;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "two", 2, NULL), 0);
	t1 = tp_new(b, P1, 40010, 8972);
	t2 = tp_new(b, P2, 40011, 1472);
	tp_connect(b, t1);
	tp_connect(b, t2);
	r1 = make_recs(n, 1, "x", 0);
	r2 = make_recs(n, 1, "y", 200);
	tp_send(b, t1, r1, n, "two");
	tp_send(b, t2, r2, n, "two");
	/* t2 closes right after its records: they are stored; acks are owed to its next session */
	assert_int_equal(firn_proto_client_enc_begin(t2->c, &e, buf, sizeof(buf), 0), 0);
	assert_int_equal(firn_proto_enc_close(&e, FIRN_PROTO_E_CLOSED), 1);
	len = firn_proto_client_seal(t2->c, &e);
	assert_true(len > 0);
	fake_inject(b->port, &t2->addr, buf, (size_t)len);
	assert_true(tp_wait_answers(b, t1, 1, n, 200));
	/* t2's records must be durable (DONE) before its resend, or they are in flight */
	assert_true(bench_wait_idle(b));
	/* reconnect t2 and resend: every record answered DUPLICATE, none stored twice */
	tp_connect(b, t2);
	tp_send(b, t2, r2, n, "two");
	assert_true(tp_wait_answers(b, t2, 1, n, 200));
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(t2->acks[r2[i].seq].status, FIRN_PROTO_OK);
		assert_true(t2->acks[r2[i].seq].flags & FIRN_PROTO_DF_DUPLICATE);
	}
	sn->producer = P2;
	sn->recs = r2;
	sn->nrecs = n;
	seen_collect(b, sn, "two");
	assert_int_equal(sn->bad, 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(sn->count[r2[i].seq], 1);
	free(r1);
	free(r2);
	free(sn);
}

/*
 * A full device queue: the acks wait in the agent (staged, or queued on
 * their sessions when the staging overflows), drain counts them, and they
 * all go out once the queue drains.
 */
static void
test_tx_backpressure(void **state)
{
	struct bench *b = *state;
	struct firn_ingest_stats st;
	struct firn_stream_info *s;
	struct trec *recs;
	struct tp *t[4];
	unsigned n = 1000;

	bench_start(b, NULL);
	assert_int_equal(firn_catalog_create(b->cat, "tx", 2, NULL), 0);
	recs = make_recs(n, 1, "q", 40);
	for (unsigned k = 0; k < 4; k++) {
		t[k] = tp_new(b, P1 + k, (uint16_t)(40020 + k), 1472);
		tp_connect(b, t[k]);
	}
	b->port->tx_blocked = true;
	for (unsigned k = 0; k < 4; k++)
		tp_send(b, t[k], recs, n, "tx");
	bench_pump(b, 60, true);
	stats(b, &st);
	assert_int_equal(st.records_appended, 4 * n);
	assert_true(st.tx_dropped > 0); /* the staging overflowed */
	/* All durable; acks that found no room kept their records waiting. */
	s = stream_get(b, "tx");
	for (uint32_t sh = 0; sh < 2; sh++) {
		struct firn_shard_stat ss;

		assert_int_equal(firn_store_shard_stat(b->st, s->id, sh, &ss), 0);
		assert_int_equal(ss.durable_next, ss.next_counter);
	}
	firn_stream_info_free(s);
	for (unsigned k = 0; k < 4; k++)
		for (unsigned i = 0; i < n; i++)
			assert_int_equal(t[k]->acks[recs[i].seq].answers, 0);
	/* SIGTERM now would have to wait for them. */
	firn_ingest_stop_rx(b->ing);
	assert_int_equal(firn_ingest_drain(b->ing, 200), -ETIMEDOUT);
	b->port->tx_blocked = false;
	for (unsigned r = 0; r < 100 && firn_ingest_drain(b->ing, 0) < 0; r++)
		bench_deliver(b);
	assert_int_equal(firn_ingest_drain(b->ing, 5000), 0);
	bench_deliver(b);
	for (unsigned k = 0; k < 4; k++) {
		assert_int_equal(t[k]->bad_entries, 0);
		for (unsigned i = 0; i < n; i++) {
			assert_int_equal(t[k]->acks[recs[i].seq].answers, 1);
			assert_int_equal(t[k]->acks[recs[i].seq].status, FIRN_PROTO_OK);
		}
	}
	free(recs);
}

/* The cookie secret: deterministic per KEK, different across KEKs. */
static void
test_cookie_secret(void **state)
{
	uint8_t k1[32] = {1}, k2[32] = {2}, a[32], b2[32], c[32];

	(void)state;
	assert_int_equal(firn_ingest_cookie_secret(k1, a), 0);
	assert_int_equal(firn_ingest_cookie_secret(k1, b2), 0);
	assert_int_equal(firn_ingest_cookie_secret(k2, c), 0);
	assert_memory_equal(a, b2, 32);
	assert_memory_not_equal(a, c, 32);
	assert_memory_not_equal(a, k1, 32);
}

/* ---- the SPSC ring -------------------------------------------------------------------------- */

static struct ingest_ring test_ring;

static void *
ring_producer(void *arg)
{
	uint64_t n = (uint64_t)(uintptr_t)arg;

	for (uint64_t i = 1; i <= n;) {
		struct ingest_dmsg m = {
		        .stream_id = i, .durable_next = i * 3, .shard = (uint32_t)i};

		if (ingest_ring_push(&test_ring, &m) == 0)
			i++;
	}
	return NULL;
}

static void
test_spsc_ring(void **state)
{
	struct ingest_dmsg m;
	pthread_t th;
	uint64_t n = 2000000, want = 1;

	(void)state;
	test_ring.mask = 63;
	test_ring.slots = calloc(64, sizeof(*test_ring.slots));
	/* single thread: full at 64, FIFO */
	for (unsigned i = 0; i < 64; i++) {
		m.stream_id = i;
		assert_int_equal(ingest_ring_push(&test_ring, &m), 0);
	}
	assert_int_equal(ingest_ring_push(&test_ring, &m), -ENOBUFS);
	for (unsigned i = 0; i < 64; i++) {
		assert_int_equal(ingest_ring_pop(&test_ring, &m), 1);
		assert_int_equal(m.stream_id, i);
	}
	assert_int_equal(ingest_ring_pop(&test_ring, &m), 0);
	/* two threads: every message once, in order, intact */
	assert_int_equal(pthread_create(&th, NULL, ring_producer, (void *)(uintptr_t)n), 0);
	while (want <= n) {
		if (ingest_ring_pop(&test_ring, &m) == 0)
			continue;
		if (m.stream_id != want || m.durable_next != want * 3 || m.shard != (uint32_t)want)
			fail_msg("message %llu: got %llu", (unsigned long long)want,
			         (unsigned long long)m.stream_id);
		want++;
	}
	pthread_join(th, NULL);
	assert_int_equal(ingest_ring_pop(&test_ring, &m), 0);
	free(test_ring.slots);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_cookie_secret),
	        cmocka_unit_test(test_spsc_ring),
	        cmocka_unit_test_setup_teardown(test_records_land, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_acks_after_durable, bench_setup,
	                                        bench_teardown),
	        cmocka_unit_test_setup_teardown(test_duplicates, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_unknown_stream, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_split_refresh, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_fragmented, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_pool_bound, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_ring_overflow, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_restart_seed, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_two_producers_close, bench_setup,
	                                        bench_teardown),
	        cmocka_unit_test_setup_teardown(test_tx_backpressure, bench_setup, bench_teardown),
	        cmocka_unit_test_setup_teardown(test_two_agents, bench_setup, bench_teardown),
	};
	char dir[256];

	if (tu_mkdtemp(dir, sizeof(dir), "ingest-probe") < 0) {
		printf("SKIP: cannot make a scratch directory under /var/tmp\n");
		return 77;
	}
	if (!tu_odirect_ok(dir)) {
		printf("SKIP: %s does not take O_DIRECT (the store needs it)\n", dir);
		firn_rm_rf(dir);
		return 77;
	}
	firn_rm_rf(dir);
	firn_log_set_level(FIRN_LOG_WARN);
	/* FIRN_TEST_FILTER=test_fragmented runs one test (a pattern, cmocka's syntax). */
	if (getenv("FIRN_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("FIRN_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
