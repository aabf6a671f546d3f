/*
 * firn_segment.h - the on-disk format of a shard's log: segment files made of
 * compressed, encrypted, checksummed blocks, with a sparse index and a footer.
 *
 * The format itself is specified in doc/format.md; this library is the only
 * code that knows it. It does no file-system policy (names, directories,
 * when to seal): that is the store's. It does no I/O scheduling either: the
 * encoders fill caller buffers, the decoders read caller buffers, and only
 * the recovery scan reads a file itself (pread, not on a hot path).
 *
 *	segment := header (4 KiB) block* [index footer]
 *	block   := block header | payload | zero padding to 4 KiB
 *	payload := AES-256-GCM( deflate?( record* ) )
 *
 * Every block stands alone: it names its stream, shard, file offset and
 * first counter in its header, which is authenticated as GCM associated data,
 * and a CRC32C (ISA-L) covers header and payload as they are on disk, so a
 * torn or flipped block is found by the CRC before any decryption and a block
 * moved to another place fails the tag.
 *
 * Keys: each segment has its own random 256-bit data key, stored in the
 * header wrapped (AES-256-GCM) by the key-encryption key (KEK). Without the
 * KEK nothing on disk can be read.
 *
 * Usage (writer):
 *
 *	struct firn_seg_codec *cx = firn_seg_codec_create(1 << 20, true);
 *	firn_seg_key_generate(&dk);
 *	firn_seg_header_encode(&hdr, kek, &dk, buf);            // 4 KiB at offset 0
 *	firn_seg_builder_reset(cx, first_counter);
 *	while (...) firn_seg_builder_add(cx, &rec);              // -ENOSPC when full
 *	len = firn_seg_block_seal(cx, &ctx, off, out, cap, &ent); // encode at off
 *	... write out[0..len) at off, O_DIRECT ...
 *
 * Usage (writer that keeps records packed itself, e.g. the store's pending
 * buffers): lay each record out with firn_seg_record_pack() as it arrives,
 * then seal straight from those buffers, with no copy in between:
 *
 *	p += firn_seg_record_pack(p, &rec);                      // on append
 *	struct firn_seg_packed pk = {iov, n, count, first, ts0, ts1};
 *	len = firn_seg_block_seal_packed(cx, &ctx, &pk, 0, off, out, cap, &ent);
 *
 * Usage (reader):
 *
 *	firn_seg_block_open(cx, &ctx, disk, len, off, &view);
 *	while (firn_seg_view_next(&view, &rec) == 1) ...
 *
 * Thread safety: a codec is single-threaded scratch state (ISA-L stream,
 * EVP context, buffers); use one per thread. Everything else is pure.
 */
#ifndef FIRN_SEGMENT_H
#define FIRN_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "firn_record.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FIRN_SEG_ALIGN 4096u
#define FIRN_SEG_HEADER_SIZE 4096u
#define FIRN_SEG_VERSION 1u
#define FIRN_SEG_KEY_LEN 32u
#define FIRN_SEG_WRAPPED_LEN (12u + 32u + 16u) /* iv | ciphertext | tag */
/*
 * Bytes of block header before the payload (see doc/format.md): 100 bytes of
 * fields rounded up to 128, leaving 28 reserved bytes for later additions.
 */
#define FIRN_SEG_BLOCK_HDR_SIZE 128u
/* Largest max_raw a codec accepts (and raw_len a reader believes). */
#define FIRN_SEG_RAW_MAX (256u << 20)
/* Packed bytes a record takes besides its key and data. */
#define FIRN_SEG_REC_OVERHEAD 34u

struct firn_seg_key {
	uint8_t key[FIRN_SEG_KEY_LEN];
};

/* Which segment a block belongs to: bound into every block's GCM AAD. */
struct firn_seg_ctx {
	uint64_t stream_id;
	uint32_t shard;
	const struct firn_seg_key *key;
};

struct firn_seg_header {
	uint32_t version;
	uint64_t stream_id;
	uint32_t shard;
	uint64_t first_counter; /* counter of the first record it will hold */
	int64_t created_ms;
	uint32_t kek_id; /* which KEK wrapped the data key */
	uint8_t wrapped_key[FIRN_SEG_WRAPPED_LEN];
};

/* One entry of the sparse index: one per block. */
struct firn_seg_index_entry {
	uint64_t offset;        /* file offset of the block (4 KiB aligned) */
	uint32_t disk_len;      /* bytes on disk incl. padding (multiple of 4 KiB) */
	uint32_t count;         /* records */
	uint64_t first_counter; /* records are first_counter .. +count-1 */
	int64_t first_ts_ms;
	int64_t last_ts_ms; /* timestamps are non-decreasing in a shard */
	uint32_t raw_len;   /* bytes of packed records before compression */
	uint32_t flags;     /* FIRN_SEG_BLOCK_* */
};

#define FIRN_SEG_BLOCK_DEFLATE 1u

/* Random data key (OpenSSL RAND_bytes). 0 or -EIO. */
int firn_seg_key_generate(struct firn_seg_key *dk);

/*
 * Fill the 4 KiB header buffer: fields, data key wrapped by kek, CRC32C.
 * h->wrapped_key is ignored on input and filled.
 */
int firn_seg_header_encode(struct firn_seg_header *h, const uint8_t kek[32],
                           const struct firn_seg_key *dk, void *buf);

/*
 * Parse and check a header buffer (len >= 4 KiB) and unwrap its data key with
 * kek. -EBADMSG (not a segment / bad CRC / unsupported version), -EACCES (the
 * KEK does not open the data key).
 */
int firn_seg_header_decode(const void *buf, size_t len, const uint8_t kek[32],
                           struct firn_seg_header *h, struct firn_seg_key *dk);

/* ---- codec: per-thread scratch for building, sealing and opening blocks -- */

struct firn_seg_codec;

/*
 * A codec for blocks of up to max_raw bytes of packed records (the largest
 * record must fit: >= 1 MiB + overhead). compress=false stores raw always.
 * max_raw must be in [FIRN_SEG_REC_OVERHEAD, FIRN_SEG_RAW_MAX]. NULL with the
 * reason in the error chain.
 */
struct firn_seg_codec *firn_seg_codec_create(size_t max_raw, bool compress);
void firn_seg_codec_destroy(struct firn_seg_codec *cx);

/* The max_raw the codec was created with. */
size_t firn_seg_codec_max_raw(const struct firn_seg_codec *cx);

/* Start a new block whose first record will have first_counter. */
void firn_seg_builder_reset(struct firn_seg_codec *cx, uint64_t first_counter);

/*
 * Pack one record (key, data, ts_ms, producer_id/seq; its counter is implied
 * by its position, r->counter is ignored). -ENOSPC when it does not fit in
 * what is left (the block is unchanged), -E2BIG when it could never fit,
 * -EINVAL when r->ts_ms is older than the previous record's (timestamps are
 * non-decreasing in a shard; the time index relies on it).
 */
int firn_seg_builder_add(struct firn_seg_codec *cx, const struct firn_record *r);

/* Records and packed bytes in the block being built. */
uint32_t firn_seg_builder_count(const struct firn_seg_codec *cx);
size_t firn_seg_builder_bytes(const struct firn_seg_codec *cx);

/* Bytes a sealed block needs at most, for sizing out buffers. */
size_t firn_seg_block_bound(size_t raw_len);

/*
 * Seal the block being built for file offset off: compress (kept only when it
 * saves at least 1/8; blocks of 8 KiB or more are probed first, see block.c), encrypt with a fresh
 * random IV, CRC, pad with zeroes to 4 KiB. Writes into out (cap bytes, 4 KiB aligned for O_DIRECT)
 * and fills *ent. Returns the bytes to write (a multiple of 4 KiB) or -ENOSPC (cap too small) /
 * -EIO (crypto failure) / -EINVAL (no records, or off not a multiple of 4 KiB at or past
 * FIRN_SEG_HEADER_SIZE). The builder is left as it was (reset it yourself).
 */
long firn_seg_block_seal(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx, uint64_t off,
                         void *out, size_t cap, struct firn_seg_index_entry *ent);

/*
 * Lay out one record at p in the packed format of doc/format.md 4.4
 * (FIRN_SEG_REC_OVERHEAD + key_len + data_len bytes, no alignment needed;
 * r->counter is not stored). Returns the bytes written.
 */
size_t firn_seg_record_pack(uint8_t *p, const struct firn_record *r);

/* total_len and ts_ms of a packed record at p (as firn_seg_record_pack() wrote them). */
uint32_t firn_seg_packed_len(const uint8_t *p);
int64_t firn_seg_packed_ts(const uint8_t *p);

/* Records already packed by the caller, for firn_seg_block_seal_packed(). */
struct firn_seg_packed {
	const struct iovec *iov; /* the packed bytes in order; a record may span entries */
	unsigned iovcnt;         /* >= 1 */
	uint32_t count;          /* records in them (>= 1) */
	uint64_t first_counter;  /* counter of the first */
	int64_t first_ts_ms;     /* ts of the first record */
	int64_t last_ts_ms;      /* ts of the last record (>= first_ts_ms) */
};

/* Seal flags: store raw without trying deflate (the caller knows the data does not shrink); */
#define FIRN_SEG_SEAL_RAW 1u
/* deflate without probing first (the caller expects it to shrink). */
#define FIRN_SEG_SEAL_NOPROBE 2u

/*
 * Seal a block from records the caller packed with firn_seg_record_pack(),
 * reading them in place: encryption and the CRC run over the iovecs as
 * they are; deflate, when tried, reads a single iovec in place and gathers
 * several into the codec's scratch first. Same output, return values
 * and alignment rules as firn_seg_block_seal(); the builder is not touched.
 * The caller vouches for the layout: count records of consistent lengths,
 * timestamps non-decreasing from first_ts_ms to last_ts_ms (a reader checks
 * it all and refuses the block otherwise). -EINVAL also when the total is
 * larger than the codec's max_raw or too small for count records.
 */
long firn_seg_block_seal_packed(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx,
                                const struct firn_seg_packed *pk, unsigned flags, uint64_t off,
                                void *out, size_t cap, struct firn_seg_index_entry *ent);

/*
 * Read just the block header at buf (>= FIRN_SEG_BLOCK_HDR_SIZE bytes):
 * checks magic and header sanity (not the CRC) and fills *ent, so the
 * caller knows how many bytes to read. -EBADMSG if it is not a block header.
 */
int firn_seg_block_peek(const void *buf, size_t len, uint64_t off,
                        struct firn_seg_index_entry *ent);

/* A decoded block: records are read out of the codec's scratch buffer. */
struct firn_seg_view {
	const uint8_t *p, *end;
	uint64_t next_counter;
	uint32_t left;
	int64_t last_ts;
};

/*
 * Verify (CRC; then the header's offset/stream/shard against off and ctx,
 * which are also in the GCM AAD; then the tag), decrypt and inflate the block
 * at buf (len >= header + payload; its disk_len is always enough), and check
 * every record header. ent may be NULL. The view stays valid until the codec
 * is used again; building a block does not disturb it, sealing does.
 * -EBADMSG (CRC or format), -EACCES (wrong place, or tag failure: wrong key,
 * tampering), -ENOSPC (larger than max_raw), -EIO (crypto library failure).
 */
int firn_seg_block_open(struct firn_seg_codec *cx, const struct firn_seg_ctx *ctx, const void *buf,
                        size_t len, uint64_t off, struct firn_seg_index_entry *ent,
                        struct firn_seg_view *view);

/* Next record from a view: 1 and *r filled (pointers into scratch), 0 at end, -EBADMSG. */
int firn_seg_view_next(struct firn_seg_view *view, struct firn_record *r);

/* ---- index footer (sealed segments) ------------------------------------- */

/* Bytes the footer for n entries takes (a multiple of 4 KiB). */
size_t firn_seg_footer_size(uint32_t n);

/* Encode the footer (entries + trailer with CRC) into buf (footer_size bytes). */
void firn_seg_footer_encode(const struct firn_seg_index_entry *ents, uint32_t n, uint64_t off,
                            void *buf);

/*
 * Decode a footer from the last bytes of a file: tail is the last tail_len
 * bytes (at file offset tail_off). On success *ents is malloc'd. -EBADMSG if
 * there is no valid footer, -EAGAIN with *need set if tail_len is too short.
 */
int firn_seg_footer_decode(const void *tail, size_t tail_len, uint64_t tail_off,
                           struct firn_seg_index_entry **ents, uint32_t *n, size_t *need);

/* ---- recovery ----------------------------------------------------------------- */

struct firn_seg_scan {
	struct firn_seg_header hdr;
	struct firn_seg_key key;
	struct firn_seg_index_entry *ents; /* malloc'd, n entries, in file order */
	uint32_t n;
	uint64_t valid_end; /* offset just past the last valid block (or footer) */
	bool sealed;        /* a valid footer was found and agrees with the blocks */
	bool damaged;       /* something after valid_end was not a valid block/zeroes */
};

/*
 * Read a segment file from fd: header, then the footer if it is sealed, else
 * every block in order (CRC + GCM tag + decode) until the first that is not
 * valid. Zero padding after the last block (preallocated space) is not
 * damage; anything else is (damaged = true). -EBADMSG/-EACCES when the header
 * itself is bad; -ENOSPC when a block with a good CRC is larger than cx can
 * open (use a codec with a larger max_raw; nothing is cut); -errno from pread.
 * Reads are 4 KiB aligned in offset, length and memory, so fd may be O_DIRECT.
 * The reason for an error is in the error chain. Free with firn_seg_scan_free().
 */
int firn_seg_scan_file(int fd, const uint8_t kek[32], struct firn_seg_codec *cx,
                       struct firn_seg_scan *out);
void firn_seg_scan_free(struct firn_seg_scan *s);

/* Index lookups over entries in counter order (binary search). Return an index or n. */
uint32_t firn_seg_index_find_counter(const struct firn_seg_index_entry *e, uint32_t n,
                                     uint64_t counter); /* block holding counter, or first after */
uint32_t firn_seg_index_find_time(const struct firn_seg_index_entry *e, uint32_t n,
                                  int64_t ts_ms); /* first block with last_ts >= ts */

#ifdef __cplusplus
}
#endif
#endif /* FIRN_SEGMENT_H */
