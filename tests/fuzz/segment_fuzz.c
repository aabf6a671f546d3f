/*
 * segment_fuzz.c - the segment reader against hostile bytes.
 *
 * What it feeds: block peek + open (CRC, GCM, inflate, record walk), the
 * record iterator over raw bytes, and the footer decoder. Whatever comes in,
 * the reader must return an error or well-formed records, never read out of
 * bounds (ASan) and never overflow (UBSan).
 *
 * With clang and -DFIRN_LIBFUZZER this is a libFuzzer target. Without, main()
 * replays a deterministic campaign: mutations (bit flips, byte sets,
 * truncations, splices) of valid sealed blocks, whose CRC is then re-fixed half
 * the time so mutations reach past the checksum into the decrypt and
 * record-walking code, plus random buffers. Seed from FIRN_TEST_SEED,
 * iterations from FIRN_FUZZ_ITERS.
 */
#include <errno.h>
#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_bench.h"
#include "firn_common.h"
#include "firn_segment.h"

static struct firn_seg_codec *cx;
static struct firn_seg_key key;
static const struct firn_seg_ctx ctx = {7, 3, &key};

static void
setup(void)
{
	if (cx)
		return;
	cx = firn_seg_codec_create(1u << 20, true);
	memset(key.key, 0x5a, sizeof(key.key));
	if (cx == NULL)
		abort();
}

static void
feed(const uint8_t *data, size_t size)
{
	struct firn_seg_index_entry ent, *ents = NULL;
	struct firn_seg_view view;
	struct firn_record r;
	uint32_t n = 0;
	size_t need = 0;
	int rc;

	setup();
	if (firn_seg_block_peek(data, size, 4096, &ent) == 0 &&
	    firn_seg_block_open(cx, &ctx, data, size, 4096, &ent, &view) == 0) {
		while ((rc = firn_seg_view_next(&view, &r)) == 1) {
			/* touch every byte so ASan sees any bad pointer */
			volatile uint8_t sink = 0;
			uint32_t i;

			for (i = 0; i < r.key_len; i++)
				sink ^= r.key[i];
			for (i = 0; i < r.data_len; i++)
				sink ^= r.data[i];
			(void)sink;
		}
	}
	/* the iterator alone over raw bytes */
	view.p = data;
	view.end = data + size;
	view.next_counter = 0;
	view.left = 1000;
	view.last_ts = 0;
	while (firn_seg_view_next(&view, &r) == 1)
		;
	if (firn_seg_footer_decode(data, size, 1ull << 20, &ents, &n, &need) == 0)
		free(ents);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	feed(data, size);
	return 0;
}

#ifndef FIRN_LIBFUZZER
/*
 * Re-fix the block CRC (doc/format.md 4.1: CRC32C of header bytes [0, 124)
 * then the payload, stored at 124) so the mutation is judged by the layers
 * behind the checksum: the GCM tag, inflate and the record walk.
 */
static void
fix_crc(uint8_t *b, size_t len)
{
	uint32_t plen, crc;

	if (len < FIRN_SEG_BLOCK_HDR_SIZE)
		return;
	memcpy(&plen, b + 12, 4);
	if ((size_t)FIRN_SEG_BLOCK_HDR_SIZE + plen > len)
		return;
	crc = crc32_iscsi(b, 124, ~0u);
	crc = ~crc32_iscsi(b + FIRN_SEG_BLOCK_HDR_SIZE, (int)plen, crc);
	memcpy(b + 124, &crc, 4);
}

int
main(void)
{
	const char *s = getenv("FIRN_TEST_SEED"), *it = getenv("FIRN_FUZZ_ITERS");
	uint64_t seed = 1, iters = 20000, i;
	static uint8_t valid[4][1 << 16], buf[1 << 17];
	long vlen[4];
	struct firn_seg_index_entry ent;
	struct firn_rng rng;
	unsigned v;

	if (s)
		firn_parse_u64(s, &seed);
	if (it)
		firn_parse_u64(it, &iters);
	firn_rng_seed(&rng, seed);
	setup();
	/* four valid blocks: small raw, compressible, many tiny, binary keys */
	for (v = 0; v < 4; v++) {
		uint8_t data[2048], kbuf[32];
		unsigned j, nrec = v == 2 ? 200 : 5;

		firn_seg_builder_reset(cx, 100 * v);
		for (j = 0; j < nrec; j++) {
			struct firn_record r = {0};
			size_t dl = v == 2 ? 3 : 100 + 300 * (v == 1) + j;

			firn_data_fill(v == 1 ? FIRN_DATA_LOG : FIRN_DATA_RANDOM, &rng, data, dl);
			firn_data_fill(FIRN_DATA_RANDOM, &rng, kbuf, sizeof(kbuf));
			r.key = kbuf;
			r.key_len = (uint16_t)(1 + j % 31);
			r.data = data;
			r.data_len = (uint32_t)dl;
			r.ts_ms = 1000 + j;
			r.producer_id = j;
			r.producer_seq = j;
			if (firn_seg_builder_add(cx, &r) < 0)
				abort();
		}
		vlen[v] = firn_seg_block_seal(cx, &ctx, 4096, valid[v], sizeof(valid[v]), &ent);
		if (vlen[v] <= 0)
			abort();
	}
	for (i = 0; i < iters; i++) {
		size_t len;

		if (i % 10 == 9) { /* pure noise */
			len = firn_rng_below(&rng, 9000);
			firn_data_fill(FIRN_DATA_RANDOM, &rng, buf, len);
		} else {
			unsigned k, muts = 1 + (unsigned)firn_rng_below(&rng, 4);

			v = (unsigned)firn_rng_below(&rng, 4);
			len = (size_t)vlen[v];
			memcpy(buf, valid[v], len);
			for (k = 0; k < muts; k++) {
				size_t at = firn_rng_below(&rng, len);

				switch (firn_rng_below(&rng, 4)) {
				case 0:
					buf[at] ^= (uint8_t)(1u << firn_rng_below(&rng, 8));
					break;
				case 1:
					buf[at] = (uint8_t)firn_rng_next(&rng);
					break;
				case 2:
					len = at;
					break;
				default:
					memset(buf + at, 0xff, FIRN_MIN((size_t)8, len - at));
					break;
				}
			}
			if (firn_rng_below(&rng, 2))
				fix_crc(buf, len);
		}
		feed(buf, len);
	}
	/* the unmutated blocks must still decode (the harness itself is sound) */
	for (v = 0; v < 4; v++) {
		struct firn_seg_view view;

		memcpy(buf, valid[v], (size_t)vlen[v]);
		fix_crc(buf, (size_t)vlen[v]);
		if (memcmp(buf, valid[v], (size_t)vlen[v]) != 0 ||
		    firn_seg_block_open(cx, &ctx, valid[v], (size_t)vlen[v], 4096, &ent, &view) !=
		            0) {
			fprintf(stderr, "valid block %u does not open or fix_crc is wrong\n", v);
			return 1;
		}
	}
	printf("segment_fuzz: %llu inputs, no crash\n", (unsigned long long)iters);
	firn_seg_codec_destroy(cx);
	return 0;
}
#endif
