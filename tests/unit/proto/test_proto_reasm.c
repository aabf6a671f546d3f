/*
 * test_proto_reasm.c - fragment reassembly and its memory limits.
 *
 * Records are cut into pieces and fed in order, shuffled, duplicated, and
 * cut two different ways (a retransmit may cut differently). The result
 * must equal the original bytes, whatever the holes. Then the limits: a
 * missing piece times out and gives its memory back, the per-session cap
 * and a full pool refuse new records with -ENOBUFS and leave existing ones
 * alone, a record over 1 MiB is refused, and a 1 MiB record works. The
 * buddy pool is checked on its own: after any mix of allocations is freed,
 * it coalesces back to whole 1 MiB blocks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_proto.h"
#include "proto_internal.h"
#include "proto_test.h"

#define MiB (1u << 20)

static uint8_t rec[FIRN_RECORD_DATA_MAX + 16];
static const uint8_t KEY[] = "partition-7";

struct piece {
	uint32_t off, len;
};

/* Cut [0, total) into pieces of size cut (the last shorter). */
static unsigned
cut_pieces(uint32_t total, uint32_t cut, struct piece *p, unsigned max)
{
	unsigned n = 0;

	for (uint32_t off = 0; off < total; off += cut) {
		assert_true(n < max);
		p[n].off = off;
		p[n].len = FIRN_MIN(cut, total - off);
		n++;
	}
	return n;
}

static void
shuffle(struct piece *p, unsigned n)
{
	for (unsigned i = n; i > 1; i--) {
		unsigned j = test_below(i);
		struct piece t = p[i - 1];

		p[i - 1] = p[j];
		p[j] = t;
	}
}

static void
frag(struct firn_proto_rec *f, uint64_t seq, uint32_t total, struct piece pc)
{
	memset(f, 0, sizeof(*f));
	f->fragment = true;
	f->seq = seq;
	f->total_len = total;
	f->off = pc.off;
	f->len = pc.len;
	f->data = rec + pc.off;
	f->stream_ref = 2;
	if (pc.off == 0) {
		f->key = KEY;
		f->key_len = sizeof(KEY) - 1;
	}
}

struct fixture {
	struct firn_proto_pool *pool;
	struct firn_proto_reasm r;
};

static int
setup(void **state)
{
	static struct fixture fx;

	fx.pool = firn_proto_pool_create(8 * MiB);
	assert_non_null(fx.pool);
	assert_int_equal(firn_proto_reasm_init(&fx.r, fx.pool, 4, 4 * MiB, 2000), 0);
	*state = &fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	firn_proto_reasm_fini(&fx->r);
	assert_int_equal(firn_proto_pool_used(fx->pool), 0);
	firn_proto_pool_destroy(fx->pool);
	return 0;
}

/* Feed pieces; expect completion exactly at the last new byte, then compare. */
static void
feed_expect_complete(struct firn_proto_reasm *r, uint64_t seq, uint32_t total,
                     const struct piece *p, unsigned n, bool dups_allowed)
{
	struct firn_proto_rec f, out;
	int slot = -1, rc, done = 0;

	for (unsigned i = 0; i < n; i++) {
		frag(&f, seq, total, p[i]);
		rc = firn_proto_reasm_add(r, &f, 100 + i, &out, &slot);
		if (rc == 1) {
			done++;
			assert_true(out.seq == seq);
			assert_int_equal(out.len, total);
			assert_int_equal(out.key_len, sizeof(KEY) - 1);
			assert_memory_equal(out.key, KEY, sizeof(KEY) - 1);
			assert_int_equal(out.stream_ref, 2);
			assert_memory_equal(out.data, rec, total);
			assert_false(out.fragment);
		} else if (rc == -EALREADY) {
			assert_true(dups_allowed);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(done, 0);
		}
	}
	assert_int_equal(done, 1);
	assert_true(firn_proto_reasm_busy(r, seq));
	/* Complete and waiting: anything more for it is nothing new. */
	frag(&f, seq, total, p[0]);
	assert_int_equal(firn_proto_reasm_add(r, &f, 999, &out, &slot), -EALREADY);
	firn_proto_reasm_release(r, slot);
	assert_false(firn_proto_reasm_busy(r, seq));
	assert_int_equal(r->mem_used, 0);
}

static void
test_in_order(void **state)
{
	struct fixture *fx = *state;
	struct piece p[64];
	unsigned n;

	test_fill(rec, 50000);
	n = cut_pieces(50000, 1400, p, 64);
	feed_expect_complete(&fx->r, 1, 50000, p, n, false);
}

static void
test_out_of_order(void **state)
{
	struct fixture *fx = *state;
	struct piece p[64];
	unsigned n;

	for (int round = 0; round < 50; round++) {
		uint32_t total = 2000 + test_below(60000);

		test_fill(rec, total);
		n = cut_pieces(total, 1000 + test_below(8000), p, 64);
		shuffle(p, n);
		feed_expect_complete(&fx->r, 10 + (uint64_t)round, total, p, n, false);
	}
}

static void
test_duplicates_and_recuts(void **state)
{
	struct fixture *fx = *state;
	struct piece p[200];
	unsigned n, m;

	test_fill(rec, 40000);
	/* Every piece twice, shuffled. */
	n = cut_pieces(40000, 1400, p, 100);
	memcpy(p + n, p, n * sizeof(p[0]));
	shuffle(p, 2 * n);
	feed_expect_complete(&fx->r, 1, 40000, p, 2 * n, true);
	/* Two cuttings mixed (first send at 1400, retransmit at 8900): overlaps everywhere. */
	n = cut_pieces(40000, 1400, p, 100);
	m = cut_pieces(40000, 8900, p + n, 100);
	shuffle(p, n + m);
	feed_expect_complete(&fx->r, 2, 40000, p, n + m, true);
}

/* The piece with the key may come last; the record is not complete without it. */
static void
test_key_last(void **state)
{
	struct fixture *fx = *state;
	struct piece p[8];
	struct firn_proto_rec f, out;
	unsigned n;
	int slot = -1;

	test_fill(rec, 7000);
	n = cut_pieces(7000, 1000, p, 8);
	for (unsigned i = 1; i < n; i++) {
		frag(&f, 5, 7000, p[i]);
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	}
	frag(&f, 5, 7000, p[0]);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 1);
	assert_memory_equal(out.data, rec, 7000);
	firn_proto_reasm_release(&fx->r, slot);
}

static void
test_timeout(void **state)
{
	struct fixture *fx = *state;
	struct piece p[8];
	struct firn_proto_rec f, out;
	unsigned n;
	int slot = -1;

	test_fill(rec, 7000);
	n = cut_pieces(7000, 1000, p, 8);
	/* All but piece 3 arrive; piece 6 arrives late, refreshing the timer. */
	for (unsigned i = 0; i < n; i++) {
		if (i == 3)
			continue;
		frag(&f, 9, 7000, p[i]);
		assert_int_equal(
		        firn_proto_reasm_add(&fx->r, &f, i == 6 ? 1500 : 1000, &out, &slot), 0);
	}
	assert_true(fx->r.mem_used > 0);
	assert_int_equal(firn_proto_reasm_expire(&fx->r, 3000), 0); /* 1500 + 2000 not reached */
	assert_int_equal(firn_proto_reasm_expire(&fx->r, 3500), 1);
	assert_false(firn_proto_reasm_busy(&fx->r, 9));
	assert_int_equal(fx->r.mem_used, 0);
	assert_int_equal(firn_proto_pool_used(fx->pool), 0);
	/* The missing piece arriving now starts over (and would time out again). */
	frag(&f, 9, 7000, p[3]);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 4000, &out, &slot), 0);
	assert_int_equal(firn_proto_reasm_expire(&fx->r, 6000), 1);
	/* A complete record waiting for release is not timed out from under its user. */
	feed_expect_complete(&fx->r, 10, 7000, p, n, false);
	frag(&f, 11, 7000, p[0]);
	firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot);
	for (unsigned i = 1; i < n; i++) {
		frag(&f, 11, 7000, p[i]);
		firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot);
	}
	assert_int_equal(firn_proto_reasm_expire(&fx->r, 100000), 0);
	firn_proto_reasm_release(&fx->r, slot);
}

static void
test_memory_cap(void **state)
{
	struct fixture *fx = *state;
	struct firn_proto_rec f, out;
	struct piece pc = {0, 1000};
	int slot = -1;
	size_t used;

	test_fill(rec, 1000);
	/*
	 * A 1 MiB record costs 1 MiB + 128 KiB (bitmap); three fit the 4 MiB
	 * cap, and a small fourth takes the last of the 4 slots ...
	 */
	for (uint64_t s = 1; s <= 3; s++) {
		frag(&f, s, MiB - 100 * (uint32_t)s, pc);
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	}
	assert_int_equal(fx->r.mem_used, 3 * (MiB + MiB / 8));
	frag(&f, 4, 5000, pc);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	/* ... so a fifth record is refused for lack of a slot. */
	frag(&f, 5, 5000, pc);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -ENOBUFS);
	firn_proto_reasm_reset(&fx->r);
	assert_int_equal(fx->r.mem_used, 0);
	assert_int_equal(firn_proto_pool_used(fx->pool), 0);

	/* Over the byte cap: refused, and nothing in progress is disturbed. */
	for (uint64_t s = 1; s <= 3; s++) {
		frag(&f, s, MiB, pc);
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	}
	used = firn_proto_pool_used(fx->pool);
	frag(&f, 4, 600000, pc); /* a 1 MiB block: 4.375 MiB > 4 MiB */
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -ENOBUFS);
	assert_int_equal(firn_proto_pool_used(fx->pool), used);
	assert_false(firn_proto_reasm_busy(&fx->r, 4));
	for (uint64_t s = 1; s <= 3; s++)
		assert_true(firn_proto_reasm_busy(&fx->r, s));
	frag(&f, 4, 300000, pc); /* a 512 KiB block still fits */
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	firn_proto_reasm_reset(&fx->r);
}

/*
 * firn_proto_reasm_room() says whether another record could start: it is
 * false exactly when slots or the cap would refuse the largest record, and
 * completed records that wait for release count against it (the receiver
 * flushes its batch on false, or later fragments are dropped as reasm_full).
 */
static void
test_room(void **state)
{
	struct fixture *fx = *state;
	struct piece pc[2] = {{0, 1200}, {1200, 800}}, big = {0, 1000};
	struct firn_proto_rec f, out;
	int slots[4], slot = -1;

	test_fill(rec, 2000);
	assert_true(firn_proto_reasm_room(&fx->r));
	/* Three complete 2000-byte records, not released: one slot left. */
	for (uint64_t s = 1; s <= 3; s++) {
		frag(&f, s, 2000, pc[0]);
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
		frag(&f, s, 2000, pc[1]);
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slots[s - 1]), 1);
		assert_true(firn_proto_reasm_room(&fx->r));
	}
	/* A fourth, partial, takes the last slot: no room, and indeed refused. */
	frag(&f, 4, 2000, pc[0]);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	assert_false(firn_proto_reasm_room(&fx->r));
	frag(&f, 5, 2000, pc[0]);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -ENOBUFS);
	/* Handing one completed record on gives the room back. */
	firn_proto_reasm_release(&fx->r, slots[0]);
	assert_true(firn_proto_reasm_room(&fx->r));
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	assert_false(firn_proto_reasm_room(&fx->r));
	firn_proto_reasm_reset(&fx->r);
	assert_true(firn_proto_reasm_room(&fx->r));

	/* The cap: 2 x 1.125 MiB leave room for a 1 MiB record, 3 do not (slot free). */
	for (uint64_t s = 1; s <= 3; s++) {
		frag(&f, s, MiB - 100 * (uint32_t)s, big);
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
		if (s < 3)
			assert_true(firn_proto_reasm_room(&fx->r));
	}
	assert_false(firn_proto_reasm_room(&fx->r));
	frag(&f, 4, FIRN_RECORD_DATA_MAX, big);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -ENOBUFS);
	firn_proto_reasm_reset(&fx->r);
}

/* Two sessions share one pool: when it is empty, the next record is refused. */
static void
test_pool_exhausted(void **state)
{
	struct firn_proto_pool *pool = firn_proto_pool_create(2 * MiB);
	struct firn_proto_reasm r1, r2;
	struct firn_proto_rec f, out;
	struct piece pc = {0, 1000};
	int slot;

	assert_int_equal(firn_proto_reasm_init(&r1, pool, 4, 4 * MiB, 2000), 0);
	assert_int_equal(firn_proto_reasm_init(&r2, pool, 4, 4 * MiB, 2000), 0);
	test_fill(rec, 1000);
	frag(&f, 1, MiB, pc);
	assert_int_equal(firn_proto_reasm_add(&r1, &f, 1, &out, &slot), 0);
	frag(&f, 1, 600000, pc); /* needs a whole 1 MiB block: none left */
	assert_int_equal(firn_proto_reasm_add(&r2, &f, 1, &out, &slot), -ENOBUFS);
	frag(&f, 2, 400000, pc); /* 512 KiB: fits in what is left */
	assert_int_equal(firn_proto_reasm_add(&r2, &f, 1, &out, &slot), 0);
	frag(&f, 3, 300000, pc); /* 512 KiB again: 384 KiB left in pieces */
	assert_int_equal(firn_proto_reasm_add(&r2, &f, 1, &out, &slot), -ENOBUFS);
	assert_int_equal(firn_proto_pool_used(pool), MiB + MiB / 8 + MiB / 2);
	firn_proto_reasm_fini(&r1);
	assert_int_equal(firn_proto_reasm_add(&r2, &f, 1, &out, &slot), 0);
	firn_proto_reasm_fini(&r2);
	assert_int_equal(firn_proto_pool_used(pool), 0);
	firn_proto_pool_destroy(pool);
}

static void
test_1mib_record(void **state)
{
	struct fixture *fx = *state;
	static struct piece p[1000];
	struct firn_proto_rec f, out;
	unsigned n;
	int slot;

	test_fill(rec, FIRN_RECORD_DATA_MAX);
	n = cut_pieces(FIRN_RECORD_DATA_MAX, 1400, p, 1000);
	shuffle(p, n);
	feed_expect_complete(&fx->r, 77, FIRN_RECORD_DATA_MAX, p, n, false);
	/* One byte more is refused outright, with nothing allocated. */
	frag(&f, 78, FIRN_RECORD_DATA_MAX + 1, p[0]);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -E2BIG);
	assert_int_equal(fx->r.mem_used, 0);
}

static void
test_inconsistent(void **state)
{
	struct fixture *fx = *state;
	struct firn_proto_rec f, out;
	struct piece a = {0, 1000}, b = {1000, 1000};
	int slot;

	test_fill(rec, 5000);
	frag(&f, 3, 5000, a);
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	frag(&f, 3, 6000, b); /* another total length */
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -EINVAL);
	frag(&f, 3, 5000, b);
	f.stream_ref = 9; /* another stream */
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -EINVAL);
	frag(&f, 3, 5000, b);
	f.hash = true; /* another key kind */
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -EINVAL);
	frag(&f, 3, 5000, b);
	f.key = KEY; /* a key outside the first piece */
	f.key_len = 3;
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -EINVAL);
	frag(&f, 3, 5000, (struct piece){4500, 1000}); /* past the end */
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -EINVAL);
	firn_proto_reasm_reset(&fx->r);
	assert_int_equal(fx->r.mem_used, 0);
}

/* Holes everywhere, odd offsets, single bytes: coverage is exact per byte. */
static void
test_many_holes(void **state)
{
	struct fixture *fx = *state;
	struct firn_proto_rec f, out;
	int slot = -1;

	test_fill(rec, 40000);
	/* 200 disjoint pieces of 100 bytes (every other one). */
	for (uint32_t i = 0; i < 200; i++) {
		frag(&f, 4, 40000, (struct piece){i * 200, 100});
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	}
	assert_int_equal(fx->r.slots[0].covered, 20000);
	/* A piece inside one that arrived: nothing new. */
	frag(&f, 4, 40000, (struct piece){201, 98});
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), -EALREADY);
	/* Fill the holes with pieces overlapping both neighbours by 13 bytes, odd sizes. */
	for (uint32_t i = 0; i < 199; i++) {
		frag(&f, 4, 40000, (struct piece){i * 200 + 87, 126});
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	}
	/* The last hole, one byte at a time. */
	for (uint32_t off = 39900; off < 39999; off++) {
		frag(&f, 4, 40000, (struct piece){off, 1});
		assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 0);
	}
	frag(&f, 4, 40000, (struct piece){39999, 1});
	assert_int_equal(firn_proto_reasm_add(&fx->r, &f, 1, &out, &slot), 1);
	assert_memory_equal(out.data, rec, 40000);
	firn_proto_reasm_release(&fx->r, slot);
}

static void
test_pool_buddy(void **state)
{
	struct firn_proto_pool *pool = firn_proto_pool_create(4 * MiB + 12345);
	int32_t pages[2000];
	size_t blocks[2000], sum = 0;
	unsigned n = 0;

	assert_non_null(pool);
	/* Random sizes until it is full. */
	for (;;) {
		size_t sz = 1 + test_below(test_below(2) ? 20000 : MiB);
		int32_t pg = proto_pool_alloc(pool, sz, &blocks[n]);

		if (pg < 0)
			break;
		assert_true(blocks[n] >= sz && blocks[n] <= MiB);
		assert_true((blocks[n] & (blocks[n] - 1)) == 0);
		/* Blocks are aligned to their size and do not overlap: write a pattern. */
		assert_true(((size_t)proto_pool_ptr(pool, pg) - (size_t)proto_pool_ptr(pool, 0)) %
		                    blocks[n] ==
		            0);
		memset(proto_pool_ptr(pool, pg), (int)(n & 0xff), blocks[n]);
		pages[n] = pg;
		sum += blocks[n];
		n++;
		assert_true(n < 2000);
	}
	assert_int_equal(firn_proto_pool_used(pool), sum);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = proto_pool_ptr(pool, pages[i]);

		assert_int_equal(p[0], (uint8_t)(i & 0xff));
		assert_int_equal(p[blocks[i] - 1], (uint8_t)(i & 0xff));
	}
	/* Free in random order: it must coalesce back to four 1 MiB blocks. */
	for (unsigned i = n; i > 1; i--) {
		unsigned j = test_below(i);
		int32_t tp = pages[i - 1];
		size_t tb = blocks[i - 1];

		pages[i - 1] = pages[j];
		blocks[i - 1] = blocks[j];
		pages[j] = tp;
		blocks[j] = tb;
	}
	for (unsigned i = 0; i < n; i++)
		proto_pool_free(pool, pages[i]);
	assert_int_equal(firn_proto_pool_used(pool), 0);
	for (int i = 0; i < 4; i++) {
		size_t blk;

		assert_true(proto_pool_alloc(pool, MiB, &blk) >= 0);
	}
	{
		size_t blk;

		assert_true(proto_pool_alloc(pool, 1, &blk) < 0);
		assert_true(proto_pool_alloc(pool, MiB + 1, &blk) < 0);
	}
	firn_proto_pool_destroy(pool);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_in_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_duplicates_and_recuts, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_key_last, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_memory_cap, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_room, setup, teardown),
	        cmocka_unit_test(test_pool_exhausted),
	        cmocka_unit_test_setup_teardown(test_1mib_record, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_inconsistent, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_many_holes, setup, teardown),
	        cmocka_unit_test(test_pool_buddy),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
