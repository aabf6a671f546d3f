/*
 * segment_perf.c - how fast lib/segment seals and opens blocks, against the
 * raw kernels it is made of, measured in the same run on the same data.
 *
 * For two kinds of 1 KiB records packed into ~1 MiB blocks (random bytes,
 * which deflate cannot shrink beyond their record headers, and JSON-like
 * text, which it shrinks a lot) it measures:
 *
 *	kernels: ISA-L deflate level 1 and inflate, AES-256-GCM encrypt and
 *	         decrypt (OpenSSL EVP), ISA-L CRC32C
 *	seal:    builder_add for every record + firn_seg_block_seal
 *	open:    firn_seg_block_open + firn_seg_view_next over every record
 *
 * and prints MB/s of packed (raw) record bytes, plus the ratio of seal/open
 * to the best the kernels allow when run back to back on the same bytes
 * (1 / sum of per-byte kernel times). A ratio near 1.0 means the codec adds
 * nothing but the kernels; that is the target.
 *
 * Not a test: timing is never asserted. Run it directly, or with
 * `meson test -C BUILD --benchmark --suite perf`.
 *
 *	segment_perf [seconds per measurement, default 0.5]
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <openssl/evp.h>

#include "firn_common.h"
#include "firn_segment.h"

#define REC_DATA 1024u
#define BLOCK_RAW (1u << 20)
#define MAX_RAW (BLOCK_RAW + (64u << 10))

static double secs = 0.5;

static uint64_t
xs(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

struct dataset {
	const char *name;
	uint8_t *data; /* n * REC_DATA bytes of record payloads */
	uint32_t n;
	struct firn_record *recs;
	uint8_t *packed; /* the block's packed records, as the codec lays them out */
	size_t raw_len;
	size_t payload_len; /* bytes the sealed block's payload takes */
};

static void
make_dataset(struct dataset *d, const char *name, bool json)
{
	static const char *const ev[] = {"click", "view", "purchase", "scroll", "login"};
	uint64_t s = 0x9E3779B97F4A7C15ull;
	uint32_t i, off;
	char tmp[200];
	int len;

	d->name = name;
	d->n = BLOCK_RAW / (REC_DATA + FIRN_SEG_REC_OVERHEAD + 12);
	d->data = malloc((size_t)d->n * REC_DATA);
	d->recs = calloc(d->n, sizeof(*d->recs));
	for (i = 0; i < d->n; i++) {
		uint8_t *p = d->data + (size_t)i * REC_DATA;

		if (json) {
			for (off = 0; off < REC_DATA; off += (uint32_t)len) {
				uint64_t r = xs(&s);

				len = snprintf(tmp, sizeof(tmp),
				               "{\"event\":\"%s\",\"user\":%" PRIu64
				               ",\"page\":\"/p/%" PRIu64 "\",\"ms\":%" PRIu64 "},",
				               ev[r % 5], (r >> 8) % 100000, (r >> 30) % 50,
				               (r >> 40) % 1000);
				memcpy(p + off, tmp, FIRN_MIN((uint32_t)len, REC_DATA - off));
			}
		} else {
			for (off = 0; off < REC_DATA; off += 8) {
				uint64_t r = xs(&s);

				memcpy(p + off, &r, 8);
			}
		}
		d->recs[i].key = (const uint8_t *)"partition-key-01";
		d->recs[i].key_len = 16;
		d->recs[i].data = p;
		d->recs[i].data_len = REC_DATA;
		d->recs[i].ts_ms = 1700000000000ll + i / 10;
		d->recs[i].producer_id = 42;
		d->recs[i].producer_seq = i;
	}
}

static void
build(struct firn_seg_codec *cx, const struct dataset *d)
{
	uint32_t i;

	firn_seg_builder_reset(cx, 0);
	for (i = 0; i < d->n; i++)
		if (firn_seg_builder_add(cx, &d->recs[i]) < 0)
			abort();
}

/* ---- timing ----------------------------------------------------------------------- */

struct meas {
	uint64_t t0;
	uint64_t iters;
};

static bool
running(struct meas *m)
{
	if (m->iters == 0)
		m->t0 = firn_mono_ns();
	else if ((double)(firn_mono_ns() - m->t0) / 1e9 >= secs)
		return false;
	m->iters++;
	return true;
}

/* MB/s of bytes_per_iter bytes. */
static double
rate(const struct meas *m, size_t bytes_per_iter)
{
	double s = (double)(firn_mono_ns() - m->t0) / 1e9;

	return (double)(m->iters - 1) * (double)bytes_per_iter / s / 1e6;
}

/* ---- raw kernels --------------------------------------------------------------------- */

static double
perf_deflate(const struct dataset *d, uint8_t *out, size_t cap, size_t *zlen)
{
	uint8_t *level_buf = malloc(ISAL_DEF_LVL1_DEFAULT);
	struct isal_zstream *zs = malloc(sizeof(*zs));
	struct meas m = {0};

	while (running(&m)) {
		isal_deflate_stateless_init(zs);
		zs->level = 1;
		zs->level_buf = level_buf;
		zs->level_buf_size = ISAL_DEF_LVL1_DEFAULT;
		zs->end_of_stream = 1;
		zs->next_in = d->packed;
		zs->avail_in = (uint32_t)d->raw_len;
		zs->next_out = out;
		zs->avail_out = (uint32_t)cap;
		if (isal_deflate_stateless(zs) != COMP_OK)
			abort();
	}
	*zlen = zs->total_out;
	free(zs);
	free(level_buf);
	return rate(&m, d->raw_len);
}

static double
perf_inflate(const struct dataset *d, const uint8_t *z, size_t zlen, uint8_t *out)
{
	struct inflate_state *st = malloc(sizeof(*st));
	struct meas m = {0};

	while (running(&m)) {
		isal_inflate_init(st);
		st->next_in = (uint8_t *)(uintptr_t)z;
		st->avail_in = (uint32_t)zlen;
		st->next_out = out;
		st->avail_out = (uint32_t)d->raw_len;
		if (isal_inflate_stateless(st) != ISAL_DECOMP_OK || st->total_out != d->raw_len)
			abort();
	}
	free(st);
	return rate(&m, d->raw_len);
}

/* AES-256-GCM over len bytes, a new IV each time, as the codec does per block. */
static double
perf_gcm(int enc, const uint8_t *in, size_t len, uint8_t *out)
{
	static const uint8_t key[32] = {1, 2, 3};
	uint8_t iv[12] = {0}, tag[16] = {0}, aad[96] = {0};
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	struct meas m = {0};
	int l;

	EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, NULL, enc);
	while (running(&m)) {
		iv[0]++;
		EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc);
		EVP_CipherUpdate(c, NULL, &l, aad, sizeof(aad));
		EVP_CipherUpdate(c, out, &l, in, (int)len);
		if (enc) {
			EVP_CipherFinal_ex(c, out + l, &l);
			EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
		} else {
			/* The tag will not match: we time the work, not the verdict. */
			EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag);
			(void)EVP_CipherFinal_ex(c, out + l, &l);
		}
	}
	EVP_CIPHER_CTX_free(c);
	return rate(&m, len);
}

static double
perf_crc(const uint8_t *in, size_t len)
{
	struct meas m = {0};
	volatile uint32_t sink = 0;

	while (running(&m))
		sink += crc32_iscsi((unsigned char *)(uintptr_t)in, (int)len, 0xFFFFFFFFu);
	(void)sink;
	return rate(&m, len);
}

/* ---- the codec ---------------------------------------------------------------------------- */

static double
perf_seal(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx, const struct dataset *d,
          uint8_t *out, size_t cap)
{
	struct meas m = {0};

	while (running(&m)) {
		build(cx, d);
		if (firn_seg_block_seal(cx, ctx, 4096, out, cap, NULL) < 0)
			abort();
	}
	return rate(&m, d->raw_len);
}

static double
perf_open(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx, const struct dataset *d,
          const uint8_t *blk, size_t len)
{
	struct firn_seg_view v;
	struct firn_record r;
	struct meas m = {0};
	uint64_t n = 0;

	while (running(&m)) {
		if (firn_seg_block_open(cx, ctx, blk, len, 4096, NULL, &v) != 0)
			abort();
		while (firn_seg_view_next(&v, &r) == 1)
			n += r.data_len;
	}
	if (n == 0)
		abort();
	return rate(&m, d->raw_len);
}

static void
row(const char *set, const char *what, double mbs, const char *note)
{
	printf("%-11s %-44s %9.1f  %s\n", set, what, mbs, note ? note : "");
}

static void
run(struct dataset *d, const struct firn_seg_ctx *ctx)
{
	struct firn_seg_codec *cx = firn_seg_codec_create(MAX_RAW, true);
	struct firn_seg_codec *cxr = firn_seg_codec_create(MAX_RAW, false);
	size_t cap = firn_seg_block_bound(MAX_RAW), zlen;
	uint8_t *blk = aligned_alloc(FIRN_SEG_ALIGN, cap), *blk_raw = aligned_alloc(4096, cap);
	uint8_t *tmp = malloc(cap), *tmp2 = malloc(cap);
	struct firn_seg_index_entry ent;
	struct firn_seg_view v;
	double def, inf, enc_raw, enc_pay, dec_raw, dec_pay, crc, seal, seal_raw, open, open_raw;
	double bound;
	char note[96];
	long len, len_raw;

	if (cx == NULL || cxr == NULL || blk == NULL || blk_raw == NULL || tmp == NULL ||
	    tmp2 == NULL)
		abort();
	/* The packed records, exactly as the codec lays them out: seal raw, open. */
	build(cxr, d);
	len_raw = firn_seg_block_seal(cxr, ctx, 4096, blk_raw, cap, &ent);
	if (len_raw < 0 ||
	    firn_seg_block_open(cxr, ctx, blk_raw, (size_t)len_raw, 4096, NULL, &v) != 0)
		abort();
	d->raw_len = (size_t)(v.end - v.p);
	d->packed = malloc(d->raw_len);
	memcpy(d->packed, v.p, d->raw_len);
	build(cx, d);
	len = firn_seg_block_seal(cx, ctx, 4096, blk, cap, &ent);
	if (len < 0)
		abort();
	{
		/* payload_len (doc/format.md 4.1, offset 12): the entry has disk_len only. */
		uint32_t pl;

		memcpy(&pl, blk + 12, 4);
		d->payload_len = le32toh(pl);
	}

	printf("\n%s: %u records of %u bytes, %zu bytes packed, payload %zu bytes (%.1f%% of "
	       "raw%s)\n",
	       d->name, d->n, REC_DATA, d->raw_len, d->payload_len,
	       100.0 * (double)d->payload_len / (double)d->raw_len,
	       ent.flags ? ", deflated" : ", stored raw");

	def = perf_deflate(d, tmp, cap, &zlen);
	inf = perf_inflate(d, tmp, zlen, tmp2);
	enc_raw = perf_gcm(1, d->packed, d->raw_len, tmp2);
	dec_raw = perf_gcm(0, tmp2, d->raw_len, tmp);
	enc_pay = perf_gcm(1, d->packed, d->payload_len, tmp2);
	dec_pay = perf_gcm(0, tmp2, d->payload_len, tmp);
	crc = perf_crc(d->packed, d->raw_len);
	row(d->name, "kernel: ISA-L deflate level 1", def, NULL);
	row(d->name, "kernel: ISA-L inflate", inf, NULL);
	row(d->name, "kernel: AES-256-GCM encrypt (raw bytes)", enc_raw, NULL);
	row(d->name, "kernel: AES-256-GCM decrypt (raw bytes)", dec_raw, NULL);
	row(d->name, "kernel: ISA-L CRC32C", crc, NULL);

	/*
	 * Per raw byte, sealing runs deflate over raw_len bytes, then GCM and
	 * CRC over payload_len bytes (kernel speeds are per their own input).
	 */
	seal = perf_seal(cx, ctx, d, blk, cap);
	bound = 1.0 / (1.0 / def +
	               ((double)d->payload_len / (double)d->raw_len) * (1.0 / enc_pay + 1.0 / crc));
	snprintf(note, sizeof(note), "%.2f of deflate+gcm+crc (%.1f MB/s)", seal / bound, bound);
	row(d->name, "seal: add + deflate + gcm + crc", seal, note);
	seal_raw = perf_seal(cxr, ctx, d, blk_raw, cap);
	bound = 1.0 / (1.0 / enc_raw + 1.0 / crc);
	snprintf(note, sizeof(note), "%.2f of gcm+crc (%.1f MB/s)", seal_raw / bound, bound);
	row(d->name, "seal, compression off: add + gcm + crc", seal_raw, note);

	open = perf_open(cx, ctx, d, blk, (size_t)len);
	bound = ent.flags ? 1.0 / (((double)d->payload_len / (double)d->raw_len) *
	                                   (1.0 / crc + 1.0 / dec_pay) +
	                           1.0 / inf)
	                  : 1.0 / (1.0 / crc + 1.0 / dec_raw);
	snprintf(note, sizeof(note), "%.2f of crc+gcm%s (%.1f MB/s)", open / bound,
	         ent.flags ? "+inflate" : "", bound);
	row(d->name, "open: crc + gcm + inflate + walk records", open, note);
	open_raw = perf_open(cxr, ctx, d, blk_raw, (size_t)len_raw);
	bound = 1.0 / (1.0 / crc + 1.0 / dec_raw);
	snprintf(note, sizeof(note), "%.2f of crc+gcm (%.1f MB/s)", open_raw / bound, bound);
	row(d->name, "open, stored raw: crc + gcm + walk records", open_raw, note);

	firn_seg_codec_destroy(cx);
	firn_seg_codec_destroy(cxr);
	free(blk);
	free(blk_raw);
	free(tmp);
	free(tmp2);
}

int
main(int argc, char **argv)
{
	struct dataset rnd, json;
	struct firn_seg_key key;
	struct firn_seg_ctx ctx = {.stream_id = 1, .shard = 0, .key = &key};
	uint64_t ms;

	if (argc > 1) {
		if (firn_parse_u64(argv[1], &ms) < 0 || ms == 0 || ms > 60) {
			fprintf(stderr, "usage: %s [seconds per measurement, 1..60]\n", argv[0]);
			return 1;
		}
		secs = (double)ms;
	}
	if (firn_seg_key_generate(&key) < 0)
		return 1;
	printf("segment_perf: ~1 MiB blocks of 1 KiB records, %.1f s per measurement, one thread;"
	       " MB/s of packed record bytes\n",
	       secs);
	make_dataset(&rnd, "random-1k", false);
	make_dataset(&json, "json-1k", true);
	run(&rnd, &ctx);
	run(&json, &ctx);
	return 0;
}
