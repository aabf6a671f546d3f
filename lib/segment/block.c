/*
 * block.c - building, sealing and opening blocks (doc/format.md section 4).
 *
 * A writer thread owns one codec. It packs records into the codec's raw
 * buffer with firn_seg_builder_add() (a bounds check and two memcpy per
 * record: nothing else happens per record), then firn_seg_block_seal() turns
 * the whole buffer into one self-contained block in the caller's (O_DIRECT)
 * output buffer:
 *
 *	raw records --deflate lvl 1--> zbuf (kept only if it saves >= 1/8)
 *	            --AES-256-GCM----> out + 128      (random IV, header as AAD)
 *	header | payload --CRC32C----> header.crc     (what a torn write breaks)
 *
 * Opening goes the other way: CRC first (cheap, finds torn and flipped
 * blocks without touching the key), then the block's identity (offset,
 * stream, shard) against what the reader expects, so a block that is intact
 * but in the wrong place fails as -EACCES; then the GCM tag over the header
 * fields (identity included) and payload, then inflate, then one pass over
 * the record headers so that a view handed out is known to be well formed.
 *
 * Everything expensive is per block and reuses codec state: the ISA-L level
 * buffer and inflate state, and two EVP contexts (one per direction) that are
 * re-keyed only when the key changes and otherwise just get a new IV.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/igzip_lib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "firn_common.h"
#include "firn_segment.h"
#include "seg_internal.h"

/* One direction of AES-256-GCM with the key it was last given. */
struct seg_gcm {
	EVP_CIPHER_CTX *ctx;
	uint8_t key[FIRN_SEG_KEY_LEN];
	bool keyed;
};

struct firn_seg_codec {
	size_t max_raw;
	bool compress;

	/* The block being built: packed records in raw[0, raw_len). */
	uint8_t *raw;
	size_t raw_len;
	uint32_t count;
	uint64_t first_counter;
	int64_t first_ts, last_ts;

	/*
	 * Scratch: zbuf holds the deflate output while sealing and the
	 * decrypted payload while opening; ibuf the inflated records of an
	 * opened block. Neither touches raw, so opening a block does not
	 * disturb a block being built.
	 */
	uint8_t *zbuf;
	uint8_t *ibuf;

	uint8_t *level_buf;
	struct seg_gcm enc, dec;
	struct isal_zstream zs;
	struct inflate_state inf;
};

/* ---- codec --------------------------------------------------------------------- */

static int
seg_gcm_init(struct seg_gcm *g, int enc)
{
	g->ctx = EVP_CIPHER_CTX_new();
	if (g->ctx == NULL)
		return -ENOMEM;
	if (EVP_CipherInit_ex(g->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1)
		return -EIO;
	g->keyed = false;
	return 0;
}

/*
 * Start a new message under key with iv. Re-keying (the AES key schedule) is
 * skipped when the key is the one already loaded, which is the common case:
 * consecutive blocks of one segment share its data key.
 */
static int
seg_gcm_start(struct seg_gcm *g, const uint8_t key[FIRN_SEG_KEY_LEN], const uint8_t *iv, int enc)
{
	const uint8_t *k = NULL;

	if (!g->keyed || CRYPTO_memcmp(g->key, key, FIRN_SEG_KEY_LEN) != 0)
		k = key;
	if (EVP_CipherInit_ex(g->ctx, NULL, NULL, k, iv, enc) != 1) {
		g->keyed = false;
		return -EIO;
	}
	if (k != NULL) {
		memcpy(g->key, key, FIRN_SEG_KEY_LEN);
		g->keyed = true;
	}
	return 0;
}

static void
seg_gcm_fini(struct seg_gcm *g)
{
	EVP_CIPHER_CTX_free(g->ctx);
	OPENSSL_cleanse(g->key, sizeof(g->key));
}

struct firn_seg_codec *
firn_seg_codec_create(size_t max_raw, bool compress)
{
	struct firn_seg_codec *cx;

	if (max_raw < FIRN_SEG_REC_OVERHEAD || max_raw > FIRN_SEG_RAW_MAX) {
		firn_err_set(-EINVAL, "segment codec: block size %zu outside [%u, %u]", max_raw,
		             FIRN_SEG_REC_OVERHEAD, FIRN_SEG_RAW_MAX);
		return NULL;
	}
	cx = calloc(1, sizeof(*cx));
	if (cx == NULL) {
		firn_err_set(-ENOMEM, "segment codec: out of memory");
		return NULL;
	}
	cx->max_raw = max_raw;
	cx->compress = compress;
	cx->raw = malloc(max_raw);
	cx->zbuf = malloc(max_raw);
	cx->ibuf = malloc(max_raw);
	if (compress)
		cx->level_buf = malloc(ISAL_DEF_LVL1_DEFAULT);
	if (cx->raw == NULL || cx->zbuf == NULL || cx->ibuf == NULL ||
	    (compress && cx->level_buf == NULL)) {
		firn_err_set(-ENOMEM, "segment codec: cannot allocate 3 x %zu bytes", max_raw);
		goto fail;
	}
	if (seg_gcm_init(&cx->enc, 1) < 0 || seg_gcm_init(&cx->dec, 0) < 0) {
		firn_err_set(-EIO, "segment codec: cannot set up AES-256-GCM");
		goto fail;
	}
	firn_seg_builder_reset(cx, 0);
	return cx;
fail:
	firn_seg_codec_destroy(cx);
	return NULL;
}

void
firn_seg_codec_destroy(struct firn_seg_codec *cx)
{
	if (cx == NULL)
		return;
	seg_gcm_fini(&cx->enc);
	seg_gcm_fini(&cx->dec);
	free(cx->raw);
	free(cx->zbuf);
	free(cx->ibuf);
	free(cx->level_buf);
	free(cx);
}

size_t
firn_seg_codec_max_raw(const struct firn_seg_codec *cx)
{
	return cx->max_raw;
}

/* ---- builder ------------------------------------------------------------------ */

void
firn_seg_builder_reset(struct firn_seg_codec *cx, uint64_t first_counter)
{
	cx->raw_len = 0;
	cx->count = 0;
	cx->first_counter = first_counter;
	cx->first_ts = 0;
	cx->last_ts = 0;
}

int
firn_seg_builder_add(struct firn_seg_codec *cx, const struct firn_record *r)
{
	size_t need = (size_t)FIRN_SEG_REC_OVERHEAD + r->key_len + r->data_len;

	if (firn_unlikely(need > cx->max_raw))
		return -E2BIG;
	if (firn_unlikely(need > cx->max_raw - cx->raw_len))
		return -ENOSPC;
	if (firn_unlikely(cx->count > 0 && r->ts_ms < cx->last_ts))
		return -EINVAL;

	firn_seg_record_pack(cx->raw + cx->raw_len, r);

	if (cx->count == 0)
		cx->first_ts = r->ts_ms;
	cx->last_ts = r->ts_ms;
	cx->count++;
	cx->raw_len += need;
	return 0;
}

uint32_t
firn_seg_builder_count(const struct firn_seg_codec *cx)
{
	return cx->count;
}

size_t
firn_seg_builder_bytes(const struct firn_seg_codec *cx)
{
	return cx->raw_len;
}

/* ---- seal ----------------------------------------------------------------------- */

size_t
firn_seg_block_bound(size_t raw_len)
{
	/* The payload is never longer than raw_len: compression is kept only if it saves 1/8. */
	return FIRN_ALIGN_UP(FIRN_SEG_BLOCK_HDR_SIZE + raw_len, (size_t)FIRN_SEG_ALIGN);
}

/*
 * Deflate len bytes of in into zbuf at level 1 with room for at most cap
 * bytes. Returns the compressed length, or 0 when it does not fit in cap.
 */
static size_t
seg_deflate_into(struct firn_seg_codec *cx, const uint8_t *in, size_t len, size_t cap)
{
	struct isal_zstream *zs = &cx->zs;

	isal_deflate_stateless_init(zs);
	zs->level = 1;
	zs->level_buf = cx->level_buf;
	zs->level_buf_size = ISAL_DEF_LVL1_DEFAULT;
	zs->gzip_flag = IGZIP_DEFLATE;
	zs->flush = NO_FLUSH;
	zs->end_of_stream = 1;
	zs->next_in = (uint8_t *)in;
	zs->avail_in = (uint32_t)len;
	zs->next_out = cx->zbuf;
	zs->avail_out = (uint32_t)cap;
	if (isal_deflate_stateless(zs) != COMP_OK || zs->avail_in != 0 || zs->total_out > cap)
		return 0;
	return zs->total_out;
}

/*
 * Deflate len packed bytes at in into zbuf. Returns the compressed length, or
 * 0 when compression is not worth keeping: it must save at least 1/8 of the
 * block, or every later read pays inflate for almost nothing.
 *
 * Incompressible data (already compressed or encrypted payloads, the common
 * case for a transfer appliance) would otherwise cost a full deflate per
 * block only to be thrown away, so a block of SEG_PROBE_MIN bytes or more is
 * probed first: if its first quarter (at most SEG_PROBE_LEN bytes) does not
 * shrink by 1/8, the block is stored raw without deflating the rest. The
 * probe covers small blocks too (a commit under light load seals blocks of a
 * few KiB, each of which used to be deflated whole); below SEG_PROBE_MIN the
 * whole block is cheaper to try than to reason about. A writer that knows a
 * shard's data does not compress skips even the probe (FIRN_SEG_SEAL_RAW);
 * one that knows it does skips the probe and deflates at once
 * (FIRN_SEG_SEAL_NOPROBE), since a passing probe is 16 KiB deflated twice.
 */
#define SEG_PROBE_MIN (8u << 10)
#define SEG_PROBE_LEN (16u << 10)

/*
 * Gather n pieces into ibuf (max_raw bytes; the caller checked the total).
 * Stateless deflate wants one piece; ISA-L's stateful deflate would take the
 * pieces as they are but copies them into its history buffer as it goes,
 * which measured no cheaper than this copy.
 */
static const uint8_t *
seg_gather(struct firn_seg_codec *cx, const struct iovec *iov, unsigned n)
{
	size_t at = 0;
	unsigned i;

	for (i = 0; i < n; i++) {
		memcpy(cx->ibuf + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	return cx->ibuf;
}

/*
 * Deflate the plen packed bytes of the list into zbuf: the length kept, or 0
 * (store raw). The probe reads the first piece only (a block's first piece
 * is at least a chunk remainder; a short one is not worth probing alone).
 */
static size_t
seg_deflate(struct firn_seg_codec *cx, const struct iovec *iov, unsigned n, size_t plen,
            unsigned sflags)
{
	if (plen < 64)
		return 0;
	if (plen >= SEG_PROBE_MIN && !(sflags & FIRN_SEG_SEAL_NOPROBE)) {
		size_t probe = FIRN_MIN(plen / 4, (size_t)SEG_PROBE_LEN);

		probe = FIRN_MIN(probe, iov[0].iov_len);
		if (probe >= SEG_PROBE_MIN / 4 &&
		    seg_deflate_into(cx, iov[0].iov_base, probe, probe - probe / 8) == 0)
			return 0;
	}
	if (n == 1)
		return seg_deflate_into(cx, iov[0].iov_base, plen, plen - plen / 8);
	/* Several pieces (a block across pending chunks): one copy into one piece. */
	return seg_deflate_into(cx, seg_gather(cx, iov, n), plen, plen - plen / 8);
}

/* What a block's header says about its records, besides where they are. */
struct seg_blk_info {
	size_t raw_len;
	uint32_t count;
	uint64_t first_counter;
	int64_t first_ts, last_ts;
};

/*
 * Seal packed records given as a gather list (iov, n) into out: the one
 * sealing path behind firn_seg_block_seal() (one entry: the builder's
 * buffer) and firn_seg_block_seal_packed() (the caller's buffers, read in
 * place). Encryption and the CRC read the list as it is; deflate reads a
 * single piece in place and gathers several into ibuf first (the store
 * sizes its pending chunks so that a busy shard's blocks are single pieces).
 */
static long
seg_seal(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx, const struct iovec *iov,
         unsigned n, const struct seg_blk_info *bi, unsigned sflags, uint64_t off, void *out,
         size_t cap, struct firn_seg_index_entry *ent)
{
	uint8_t *h = out, *payload = h + FIRN_SEG_BLOCK_HDR_SIZE;
	struct iovec one;
	size_t plen = bi->raw_len, disk_len, zlen;
	uint16_t flags = 0;
	int len, len2, total = 0;
	unsigned i;

	if (bi->count == 0 || off % FIRN_SEG_ALIGN != 0 || off < FIRN_SEG_HEADER_SIZE)
		return -EINVAL;
	if (cx->compress && !(sflags & FIRN_SEG_SEAL_RAW)) {
		zlen = seg_deflate(cx, iov, n, plen, sflags);
		if (zlen > 0) {
			one.iov_base = cx->zbuf;
			one.iov_len = zlen;
			iov = &one;
			n = 1;
			plen = zlen;
			flags = FIRN_SEG_BLOCK_DEFLATE;
		}
	}
	disk_len = firn_seg_block_bound(plen);
	if (cap < disk_len)
		return -ENOSPC;

	memset(h, 0, FIRN_SEG_BLOCK_HDR_SIZE);
	memcpy(h + SEG_B_MAGIC, SEG_BLK_MAGIC, 4);
	seg_st16(h + SEG_B_VERSION, SEG_BLK_VERSION);
	seg_st16(h + SEG_B_FLAGS, flags);
	seg_st32(h + SEG_B_HEADER_LEN, FIRN_SEG_BLOCK_HDR_SIZE);
	seg_st32(h + SEG_B_PAYLOAD_LEN, (uint32_t)plen);
	seg_st32(h + SEG_B_RAW_LEN, (uint32_t)bi->raw_len);
	seg_st32(h + SEG_B_COUNT, bi->count);
	seg_st64(h + SEG_B_FIRST_COUNTER, bi->first_counter);
	seg_st64(h + SEG_B_FIRST_TS, (uint64_t)bi->first_ts);
	seg_st64(h + SEG_B_LAST_TS, (uint64_t)bi->last_ts);
	seg_st64(h + SEG_B_OFFSET, off);
	seg_st64(h + SEG_B_STREAM, ctx->stream_id);
	seg_st32(h + SEG_B_SHARD, ctx->shard);

	/* A fresh random IV per block: doc/format.md 4.3 says why not the offset. */
	if (RAND_bytes(h + SEG_B_IV, SEG_IV_LEN) != 1)
		return -EIO;
	if (seg_gcm_start(&cx->enc, ctx->key->key, h + SEG_B_IV, 1) < 0)
		return -EIO;
	if (EVP_EncryptUpdate(cx->enc.ctx, NULL, &len, h, SEG_B_AAD_LEN) != 1)
		return -EIO;
	/* GCM is a stream: pieces of any length encrypt as their concatenation. */
	for (i = 0; i < n; i++) {
		if (iov[i].iov_len == 0)
			continue;
		if (EVP_EncryptUpdate(cx->enc.ctx, payload + total, &len, iov[i].iov_base,
		                      (int)iov[i].iov_len) != 1)
			return -EIO;
		total += len;
	}
	if (EVP_EncryptFinal_ex(cx->enc.ctx, payload + total, &len2) != 1 ||
	    (size_t)total + (size_t)len2 != plen ||
	    EVP_CIPHER_CTX_ctrl(cx->enc.ctx, EVP_CTRL_GCM_GET_TAG, SEG_TAG_LEN, h + SEG_B_TAG) != 1)
		return -EIO;

	seg_st32(h + SEG_B_CRC, seg_crc32c(seg_crc32c(0, h, SEG_B_CRC), payload, plen));
	memset(payload + plen, 0, disk_len - FIRN_SEG_BLOCK_HDR_SIZE - plen);

	if (ent != NULL) {
		ent->offset = off;
		ent->disk_len = (uint32_t)disk_len;
		ent->count = bi->count;
		ent->first_counter = bi->first_counter;
		ent->first_ts_ms = bi->first_ts;
		ent->last_ts_ms = bi->last_ts;
		ent->raw_len = (uint32_t)bi->raw_len;
		ent->flags = flags;
	}
	return (long)disk_len;
}

long
firn_seg_block_seal(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx, uint64_t off,
                    void *out, size_t cap, struct firn_seg_index_entry *ent)
{
	struct iovec one = {.iov_base = cx->raw, .iov_len = cx->raw_len};
	struct seg_blk_info bi = {
	        .raw_len = cx->raw_len,
	        .count = cx->count,
	        .first_counter = cx->first_counter,
	        .first_ts = cx->first_ts,
	        .last_ts = cx->last_ts,
	};

	return seg_seal(cx, ctx, &one, 1, &bi, 0, off, out, cap, ent);
}

long
firn_seg_block_seal_packed(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx,
                           const struct firn_seg_packed *pk, unsigned flags, uint64_t off,
                           void *out, size_t cap, struct firn_seg_index_entry *ent)
{
	struct seg_blk_info bi = {
	        .raw_len = 0,
	        .count = pk->count,
	        .first_counter = pk->first_counter,
	        .first_ts = pk->first_ts_ms,
	        .last_ts = pk->last_ts_ms,
	};
	unsigned i;

	if (pk->iovcnt == 0 || pk->count == 0 || pk->first_ts_ms > pk->last_ts_ms)
		return -EINVAL;
	for (i = 0; i < pk->iovcnt; i++)
		bi.raw_len += pk->iov[i].iov_len;
	if (bi.raw_len > cx->max_raw || (uint64_t)pk->count * FIRN_SEG_REC_OVERHEAD > bi.raw_len)
		return -EINVAL;
	return seg_seal(cx, ctx, pk->iov, pk->iovcnt, &bi, flags, off, out, cap, ent);
}

size_t
firn_seg_record_pack(uint8_t *p, const struct firn_record *r)
{
	size_t total = (size_t)FIRN_SEG_REC_OVERHEAD + r->key_len + r->data_len;

	seg_st32(p + SEG_R_TOTAL, (uint32_t)total);
	seg_st64(p + SEG_R_TS, (uint64_t)r->ts_ms);
	seg_st64(p + SEG_R_PID, r->producer_id);
	seg_st64(p + SEG_R_PSEQ, r->producer_seq);
	seg_st16(p + SEG_R_KEY_LEN, r->key_len);
	seg_st32(p + SEG_R_DATA_LEN, r->data_len);
	p += FIRN_SEG_REC_OVERHEAD;
	if (r->key_len > 0)
		memcpy(p, r->key, r->key_len);
	if (r->data_len > 0)
		memcpy(p + r->key_len, r->data, r->data_len);
	return total;
}

uint32_t
firn_seg_packed_len(const uint8_t *p)
{
	return seg_ld32(p + SEG_R_TOTAL);
}

int64_t
firn_seg_packed_ts(const uint8_t *p)
{
	return (int64_t)seg_ld64(p + SEG_R_TS);
}

/* ---- peek and open ---------------------------------------------------------------- */

/* A parsed block header: the index entry plus what only the header knows. */
struct seg_bhdr {
	struct firn_seg_index_entry e; /* e.offset is the offset the header claims */
	uint32_t payload_len;
	uint64_t stream_id;
	uint32_t shard;
};

static const uint8_t seg_zeroes[SEG_B_RESERVED_LEN];

/* The header sanity rules of doc/format.md 4.1, all but "offset is where it was read". */
static int
seg_bhdr_parse(const uint8_t *b, struct seg_bhdr *h)
{
	uint16_t flags;

	if (memcmp(b + SEG_B_MAGIC, SEG_BLK_MAGIC, 4) != 0 ||
	    seg_ld16(b + SEG_B_VERSION) != SEG_BLK_VERSION ||
	    seg_ld32(b + SEG_B_HEADER_LEN) != FIRN_SEG_BLOCK_HDR_SIZE ||
	    memcmp(b + SEG_B_RESERVED, seg_zeroes, SEG_B_RESERVED_LEN) != 0)
		return -EBADMSG;
	flags = seg_ld16(b + SEG_B_FLAGS);
	h->payload_len = seg_ld32(b + SEG_B_PAYLOAD_LEN);
	h->stream_id = seg_ld64(b + SEG_B_STREAM);
	h->shard = seg_ld32(b + SEG_B_SHARD);
	h->e.offset = seg_ld64(b + SEG_B_OFFSET);
	h->e.count = seg_ld32(b + SEG_B_COUNT);
	h->e.first_counter = seg_ld64(b + SEG_B_FIRST_COUNTER);
	h->e.first_ts_ms = (int64_t)seg_ld64(b + SEG_B_FIRST_TS);
	h->e.last_ts_ms = (int64_t)seg_ld64(b + SEG_B_LAST_TS);
	h->e.raw_len = seg_ld32(b + SEG_B_RAW_LEN);
	h->e.flags = flags;
	if (h->e.raw_len > FIRN_SEG_RAW_MAX)
		return -EBADMSG;
	if (flags & FIRN_SEG_BLOCK_DEFLATE) {
		if (h->payload_len == 0 || h->payload_len >= h->e.raw_len)
			return -EBADMSG;
	} else if (h->payload_len != h->e.raw_len) {
		return -EBADMSG;
	}
	h->e.disk_len = (uint32_t)firn_seg_block_bound(h->payload_len);
	if (!seg_entry_sane(&h->e))
		return -EBADMSG;
	return 0;
}

int
firn_seg_block_peek(const void *buf, size_t len, uint64_t off, struct firn_seg_index_entry *ent)
{
	struct seg_bhdr h;

	if (len < FIRN_SEG_BLOCK_HDR_SIZE || seg_bhdr_parse(buf, &h) < 0 || h.e.offset != off)
		return -EBADMSG;
	*ent = h.e;
	return 0;
}

/* Inflate zbuf[0, zlen) into exactly raw_len bytes of ibuf. */
static int
seg_inflate(struct firn_seg_codec *cx, size_t zlen, size_t raw_len)
{
	struct inflate_state *st = &cx->inf;

	isal_inflate_init(st);
	st->next_in = cx->zbuf;
	st->avail_in = (uint32_t)zlen;
	st->next_out = cx->ibuf;
	st->avail_out = (uint32_t)raw_len;
	st->crc_flag = ISAL_DEFLATE;
	if (isal_inflate_stateless(st) != ISAL_DECOMP_OK || st->total_out != raw_len ||
	    st->block_state != ISAL_BLOCK_FINISH)
		return -EBADMSG;
	return 0;
}

int
firn_seg_block_open(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx, const void *buf,
                    size_t len, uint64_t off, struct firn_seg_index_entry *ent,
                    struct firn_seg_view *view)
{
	const uint8_t *b = buf, *recs;
	struct firn_seg_view v, walk;
	struct firn_record r;
	struct seg_bhdr h;
	int len1, len2, rc;

	if (len < FIRN_SEG_BLOCK_HDR_SIZE || seg_bhdr_parse(b, &h) < 0)
		return -EBADMSG;
	if (len - FIRN_SEG_BLOCK_HDR_SIZE < h.payload_len)
		return -EBADMSG;
	if (seg_ld32(b + SEG_B_CRC) !=
	    seg_crc32c(seg_crc32c(0, b, SEG_B_CRC), b + FIRN_SEG_BLOCK_HDR_SIZE, h.payload_len))
		return -EBADMSG;
	if (h.payload_len > cx->max_raw)
		return -ENOSPC;

	/*
	 * An intact block in the wrong place (offset, stream or shard) is
	 * refused before any decryption; those fields are also in the AAD, so
	 * editing them to match (and fixing the CRC) fails the tag instead.
	 */
	if (h.e.offset != off || h.stream_id != ctx->stream_id || h.shard != ctx->shard)
		return -EACCES;
	if (seg_gcm_start(&cx->dec, ctx->key->key, b + SEG_B_IV, 0) < 0)
		return -EIO;
	if (EVP_DecryptUpdate(cx->dec.ctx, NULL, &len1, b, SEG_B_AAD_LEN) != 1 ||
	    EVP_DecryptUpdate(cx->dec.ctx, cx->zbuf, &len1, b + FIRN_SEG_BLOCK_HDR_SIZE,
	                      (int)h.payload_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(cx->dec.ctx, EVP_CTRL_GCM_SET_TAG, SEG_TAG_LEN,
	                        (void *)(uintptr_t)(b + SEG_B_TAG)) != 1)
		return -EIO;
	if (EVP_DecryptFinal_ex(cx->dec.ctx, cx->zbuf + len1, &len2) != 1)
		return -EACCES;
	/* Checked after the tag so that a forged raw_len reads as tampering. */
	if (h.e.raw_len > cx->max_raw)
		return -ENOSPC;

	if (h.e.flags & FIRN_SEG_BLOCK_DEFLATE) {
		rc = seg_inflate(cx, h.payload_len, h.e.raw_len);
		if (rc < 0)
			return rc;
		recs = cx->ibuf;
	} else {
		recs = cx->zbuf;
	}

	v.p = recs;
	v.end = recs + h.e.raw_len;
	v.next_counter = h.e.first_counter;
	v.left = h.e.count;
	v.last_ts = h.e.first_ts_ms;

	/*
	 * Walk the record headers once (data is not touched) so that what we
	 * hand out is well formed: count records exactly filling raw_len,
	 * starting at first_ts and ending at last_ts.
	 */
	if ((int64_t)seg_ld64(recs + SEG_R_TS) != h.e.first_ts_ms)
		return -EBADMSG;
	walk = v;
	while ((rc = firn_seg_view_next(&walk, &r)) == 1)
		;
	if (rc < 0 || walk.last_ts != h.e.last_ts_ms)
		return -EBADMSG;

	h.e.offset = off;
	if (ent != NULL)
		*ent = h.e;
	*view = v;
	return 0;
}

int
firn_seg_view_next(struct firn_seg_view *view, struct firn_record *r)
{
	const uint8_t *p = view->p;
	uint64_t total;
	size_t avail;
	uint32_t data_len;
	uint16_t key_len;
	int64_t ts;

	if (view->left == 0)
		return p == view->end ? 0 : -EBADMSG;
	if (view->end < p)
		return -EBADMSG;
	avail = (size_t)(view->end - p);
	if (avail < FIRN_SEG_REC_OVERHEAD)
		return -EBADMSG;
	key_len = seg_ld16(p + SEG_R_KEY_LEN);
	data_len = seg_ld32(p + SEG_R_DATA_LEN);
	total = (uint64_t)FIRN_SEG_REC_OVERHEAD + key_len + data_len;
	if (seg_ld32(p + SEG_R_TOTAL) != total || total > avail)
		return -EBADMSG;
	ts = (int64_t)seg_ld64(p + SEG_R_TS);
	if (ts < view->last_ts)
		return -EBADMSG;

	r->key = p + FIRN_SEG_REC_OVERHEAD;
	r->key_len = key_len;
	r->data = p + FIRN_SEG_REC_OVERHEAD + key_len;
	r->data_len = data_len;
	r->ts_ms = ts;
	r->counter = view->next_counter++;
	r->producer_id = seg_ld64(p + SEG_R_PID);
	r->producer_seq = seg_ld64(p + SEG_R_PSEQ);
	view->p = p + total;
	view->left--;
	view->last_ts = ts;
	return 1;
}
