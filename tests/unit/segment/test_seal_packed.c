/*
 * test_seal_packed.c - sealing records the caller packed itself
 * (firn_seg_record_pack + firn_seg_block_seal_packed), the path the store's
 * writers take, against the builder path as the oracle.
 *
 * The same records, packed once into one buffer and cut into iovecs at
 * random places (mid-record, mid-header, one byte, empty pieces), must seal
 * into a block that opens to exactly those records, with the same index
 * entry the builder produces; the seal flags must do what they say
 * (FIRN_SEG_SEAL_RAW never deflates, FIRN_SEG_SEAL_NOPROBE deflates what
 * shrinks), the probe must keep incompressible blocks raw whatever their
 * size, and bad descriptions must be refused. Seed from FIRN_TEST_SEED.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_segment.h"

#define RAW_MAX (1u << 20)
#define NREC_MAX 4096

static uint64_t rng = 0x5eed5eedf12d0002ull;

static uint64_t
rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static struct firn_seg_codec *cx, *cxr;
static struct firn_seg_key key;
static struct firn_seg_ctx ctx;
static uint8_t *blk, *blk2, *packed, *data;
static size_t blk_cap;
static struct firn_record recs[NREC_MAX];

static int
setup(void **state)
{
	const char *seed = getenv("FIRN_TEST_SEED");
	uint64_t s;

	(void)state;
	if (seed != NULL && firn_parse_u64(seed, &s) == 0)
		rng = s;
	fprintf(stderr, "seed %" PRIu64 "\n", rng);
	cx = firn_seg_codec_create(RAW_MAX, true);
	cxr = firn_seg_codec_create(RAW_MAX, false);
	memset(key.key, 0x42, sizeof(key.key));
	ctx.stream_id = 9;
	ctx.shard = 4;
	ctx.key = &key;
	blk_cap = firn_seg_block_bound(RAW_MAX);
	blk = aligned_alloc(FIRN_SEG_ALIGN, blk_cap);
	blk2 = aligned_alloc(FIRN_SEG_ALIGN, blk_cap);
	packed = malloc(RAW_MAX);
	data = malloc(RAW_MAX);
	return cx && cxr && blk && blk2 && packed && data ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	firn_seg_codec_destroy(cx);
	firn_seg_codec_destroy(cxr);
	free(blk);
	free(blk2);
	free(packed);
	free(data);
	return 0;
}

/* JSON-ish (compresses) or random (does not) bytes. */
static void
fill(uint8_t *p, size_t n, bool json)
{
	static const char line[] =
	        "{\"ev\":\"click\",\"user\":\"u0042\",\"path\":\"/api/v1/items\"}";
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = json ? (uint8_t)line[i % (sizeof(line) - 1)] : (uint8_t)rnd();
}

/*
 * n records of sizes around size (plus some 0- and 1-byte ones), keys of
 * 0..20 bytes, non-decreasing timestamps; data from `data`. Returns the
 * packed length.
 */
static size_t
make_records(unsigned n, uint32_t size, bool json)
{
	size_t at = 0, total = 0;
	int64_t ts = 1700000000000;
	unsigned i;

	for (i = 0; i < n; i++) {
		uint32_t len =
		        size == 0 ? 0 : (uint32_t)(rnd() % (2 * size)) + (i % 7 == 3 ? 0 : 1);
		uint16_t klen = (uint16_t)(rnd() % 21);

		if (at + len + klen > RAW_MAX)
			at = 0;
		fill(data + at, len + klen, json);
		memset(&recs[i], 0, sizeof(recs[i]));
		recs[i].key = data + at;
		recs[i].key_len = klen;
		recs[i].data = data + at + klen;
		recs[i].data_len = len;
		ts += (int64_t)(rnd() % 3);
		recs[i].ts_ms = ts;
		recs[i].producer_id = rnd();
		recs[i].producer_seq = i;
		at += len + klen;
		total += FIRN_SEG_REC_OVERHEAD + klen + len;
	}
	return total;
}

/* Pack recs[0..n) into `packed` and cut it into up to max_iov random pieces. */
static unsigned
pack_and_cut(unsigned n, struct iovec *iov, unsigned max_iov, size_t *plen)
{
	size_t at = 0, pos = 0;
	unsigned i, k = 0;

	for (i = 0; i < n; i++) {
		size_t len = firn_seg_record_pack(packed + at, &recs[i]);

		assert_int_equal(len, FIRN_SEG_REC_OVERHEAD + recs[i].key_len + recs[i].data_len);
		assert_int_equal(firn_seg_packed_len(packed + at), len);
		assert_int_equal(firn_seg_packed_ts(packed + at), recs[i].ts_ms);
		at += len;
	}
	*plen = at;
	while (pos < at && k + 1 < max_iov) {
		size_t left = at - pos, piece;

		switch (rnd() % 4) {
		case 0:
			piece = 0; /* an empty piece is allowed */
			break;
		case 1:
			piece = 1 + rnd() % 40; /* inside a record header */
			break;
		default:
			piece = 1 + rnd() % (left / 2 + 1);
			break;
		}
		piece = FIRN_MIN(piece, left);
		iov[k].iov_base = packed + pos;
		iov[k].iov_len = piece;
		pos += piece;
		k++;
	}
	iov[k].iov_base = packed + pos;
	iov[k].iov_len = at - pos;
	return k + 1;
}

/* Open the block at blk (sealed at off) and compare it with recs[0..n) from counter first. */
static void
check_block(struct firn_seg_codec *c, long len, uint64_t off, unsigned n, uint64_t first)
{
	struct firn_seg_index_entry ent;
	struct firn_seg_view view;
	struct firn_record r;
	unsigned i;

	assert_true(len > 0);
	assert_int_equal(firn_seg_block_open(c, &ctx, blk, (size_t)len, off, &ent, &view), 0);
	assert_int_equal(ent.count, n);
	assert_int_equal(ent.first_counter, first);
	for (i = 0; i < n; i++) {
		assert_int_equal(firn_seg_view_next(&view, &r), 1);
		assert_int_equal(r.counter, first + i);
		assert_int_equal(r.key_len, recs[i].key_len);
		assert_int_equal(r.data_len, recs[i].data_len);
		assert_memory_equal(r.key, recs[i].key, recs[i].key_len);
		assert_memory_equal(r.data, recs[i].data, recs[i].data_len);
		assert_int_equal(r.ts_ms, recs[i].ts_ms);
		assert_int_equal(r.producer_id, recs[i].producer_id);
		assert_int_equal(r.producer_seq, recs[i].producer_seq);
	}
	assert_int_equal(firn_seg_view_next(&view, &r), 0);
}

static void
test_packed_matches_builder(void **state)
{
	static const struct {
		unsigned n;
		uint32_t size;
		bool json;
	} cases[] = {
	        {1, 0, false},      {1, 1, true},       {3, 60, true},
	        {800, 1024, true},  {800, 1024, false}, {20, 20000, true},
	        {20, 20000, false}, {4000, 30, true},   {2, 200000, false},
	};
	struct iovec iov[64];
	unsigned ci, round;

	(void)state;
	for (ci = 0; ci < FIRN_ARRAY_SIZE(cases); ci++)
		for (round = 0; round < 4; round++) {
			unsigned n = cases[ci].n, k, i;
			struct firn_seg_index_entry eb, ep;
			struct firn_seg_packed pk;
			uint64_t first = 1000 + ci * 10000 + round;
			uint64_t off = 4096 * (1 + rnd() % 100);
			long lb, lp;
			size_t plen;

			make_records(n, cases[ci].size, cases[ci].json);
			/* The oracle: the builder, one record at a time. */
			firn_seg_builder_reset(cx, first);
			for (i = 0; i < n; i++)
				assert_int_equal(firn_seg_builder_add(cx, &recs[i]), 0);
			lb = firn_seg_block_seal(cx, &ctx, off, blk2, blk_cap, &eb);
			assert_true(lb > 0);

			k = pack_and_cut(n, iov, round == 0 ? 1 : FIRN_ARRAY_SIZE(iov), &plen);
			assert_int_equal(plen, firn_seg_builder_bytes(cx));
			/* The packed bytes are the builder's record layout exactly. */
			pk.iov = iov;
			pk.iovcnt = k;
			pk.count = n;
			pk.first_counter = first;
			pk.first_ts_ms = recs[0].ts_ms;
			pk.last_ts_ms = recs[n - 1].ts_ms;
			lp = firn_seg_block_seal_packed(cx, &ctx, &pk, 0, off, blk, blk_cap, &ep);
			check_block(cx, lp, off, n, first);
			assert_int_equal(ep.offset, off);
			assert_int_equal(ep.count, eb.count);
			assert_int_equal(ep.first_counter, eb.first_counter);
			assert_int_equal(ep.first_ts_ms, eb.first_ts_ms);
			assert_int_equal(ep.last_ts_ms, eb.last_ts_ms);
			assert_int_equal(ep.raw_len, eb.raw_len);
			/* Clear-cut data: both paths make the same deflate decision. */
			if (cases[ci].size >= 1000 || n >= 100) {
				assert_int_equal(ep.flags, eb.flags);
				assert_int_equal(!!(ep.flags & FIRN_SEG_BLOCK_DEFLATE),
				                 cases[ci].json);
			}
			/* A codec that never compresses opens it too. */
			lp = firn_seg_block_seal_packed(cxr, &ctx, &pk, 0, off, blk, blk_cap, &ep);
			assert_int_equal(ep.flags, 0);
			assert_int_equal(lp, firn_seg_block_bound(plen));
			check_block(cxr, lp, off, n, first);
		}
}

static long
seal_one(struct firn_seg_codec *c, unsigned n, unsigned flags, struct firn_seg_index_entry *ent)
{
	struct iovec iov;
	struct firn_seg_packed pk;
	size_t plen;

	pack_and_cut(n, &iov, 1, &plen);
	pk.iov = &iov;
	pk.iovcnt = 1;
	pk.count = n;
	pk.first_counter = 7;
	pk.first_ts_ms = recs[0].ts_ms;
	pk.last_ts_ms = recs[n - 1].ts_ms;
	return firn_seg_block_seal_packed(c, &ctx, &pk, flags, 8192, blk, blk_cap, ent);
}

static void
test_seal_flags(void **state)
{
	struct firn_seg_index_entry ent;
	long len;

	(void)state;
	/* JSON shrinks: deflated by default and without the probe, raw when told. */
	make_records(500, 500, true);
	len = seal_one(cx, 500, 0, &ent);
	assert_int_equal(ent.flags, FIRN_SEG_BLOCK_DEFLATE);
	assert_true((size_t)len < ent.raw_len / 2);
	check_block(cx, len, 8192, 500, 7);
	len = seal_one(cx, 500, FIRN_SEG_SEAL_NOPROBE, &ent);
	assert_int_equal(ent.flags, FIRN_SEG_BLOCK_DEFLATE);
	check_block(cx, len, 8192, 500, 7);
	len = seal_one(cx, 500, FIRN_SEG_SEAL_RAW, &ent);
	assert_int_equal(ent.flags, 0);
	assert_int_equal(len, firn_seg_block_bound(ent.raw_len));
	check_block(cx, len, 8192, 500, 7);
	/* Random data stays raw, with the probe or without, small block or big. */
	make_records(300, 1000, false);
	len = seal_one(cx, 300, 0, &ent);
	assert_int_equal(ent.flags, 0);
	check_block(cx, len, 8192, 300, 7);
	len = seal_one(cx, 300, FIRN_SEG_SEAL_NOPROBE, &ent);
	assert_int_equal(ent.flags, 0);
	check_block(cx, len, 8192, 300, 7);
	make_records(10, 600, false); /* ~6 KiB: below the probe, deflated whole and refused */
	len = seal_one(cx, 10, 0, &ent);
	assert_int_equal(ent.flags, 0);
	check_block(cx, len, 8192, 10, 7);
	make_records(12, 1000, false); /* ~12 KiB: the probe says no */
	len = seal_one(cx, 12, 0, &ent);
	assert_int_equal(ent.flags, 0);
	check_block(cx, len, 8192, 12, 7);
}

static void
test_seal_refusals(void **state)
{
	struct firn_seg_index_entry ent;
	struct firn_seg_packed pk;
	struct iovec iov;
	size_t plen;

	(void)state;
	make_records(10, 100, true);
	pack_and_cut(10, &iov, 1, &plen);
	pk.iov = &iov;
	pk.iovcnt = 1;
	pk.count = 10;
	pk.first_counter = 0;
	pk.first_ts_ms = recs[0].ts_ms;
	pk.last_ts_ms = recs[9].ts_ms;
	assert_true(firn_seg_block_seal_packed(cx, &ctx, &pk, 0, 4096, blk, blk_cap, &ent) > 0);
	/* Misplaced or too small an output, as for the builder's seal. */
	assert_int_equal(firn_seg_block_seal_packed(cx, &ctx, &pk, 0, 4097, blk, blk_cap, &ent),
	                 -EINVAL);
	assert_int_equal(firn_seg_block_seal_packed(cx, &ctx, &pk, 0, 0, blk, blk_cap, &ent),
	                 -EINVAL);
	assert_int_equal(firn_seg_block_seal_packed(cxr, &ctx, &pk, 0, 4096, blk, 4096, &ent),
	                 plen + FIRN_SEG_BLOCK_HDR_SIZE > 4096 ? -ENOSPC : 4096);
	/* Descriptions that cannot be right. */
	pk.count = 0;
	assert_int_equal(firn_seg_block_seal_packed(cx, &ctx, &pk, 0, 4096, blk, blk_cap, &ent),
	                 -EINVAL);
	pk.count = (uint32_t)(plen / FIRN_SEG_REC_OVERHEAD + 1); /* more records than fit */
	assert_int_equal(firn_seg_block_seal_packed(cx, &ctx, &pk, 0, 4096, blk, blk_cap, &ent),
	                 -EINVAL);
	pk.count = 10;
	pk.first_ts_ms = pk.last_ts_ms + 1;
	assert_int_equal(firn_seg_block_seal_packed(cx, &ctx, &pk, 0, 4096, blk, blk_cap, &ent),
	                 -EINVAL);
	pk.first_ts_ms = recs[0].ts_ms;
	pk.iovcnt = 0;
	assert_int_equal(firn_seg_block_seal_packed(cx, &ctx, &pk, 0, 4096, blk, blk_cap, &ent),
	                 -EINVAL);
	/* Larger than the codec takes. */
	{
		struct firn_seg_codec *small = firn_seg_codec_create(1024, true);

		assert_non_null(small);
		pk.iovcnt = 1;
		assert_int_equal(
		        firn_seg_block_seal_packed(small, &ctx, &pk, 0, 4096, blk, blk_cap, &ent),
		        plen > 1024 ? -EINVAL : (long)firn_seg_block_bound(plen));
		firn_seg_codec_destroy(small);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_packed_matches_builder),
	        cmocka_unit_test(test_seal_flags),
	        cmocka_unit_test(test_seal_refusals),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
