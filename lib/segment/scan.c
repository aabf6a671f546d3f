/*
 * scan.c - reading a segment file back after a restart (doc/format.md
 * sections 5.3 and 6).
 *
 * This is the one place in lib/segment that does I/O. It runs at start-up,
 * once per segment, so it favours being obviously right over being clever,
 * with one concession to speed: it reads the file in large (1 MiB) aligned
 * pieces and decodes blocks out of that window, instead of issuing a pread
 * per block header.
 *
 * A sealed segment is trusted through its footer after a spot check (the
 * first and last block headers must describe the same blocks the footer
 * does). Anything else is walked block by block, each one fully verified,
 * until the first block that does not verify or does not continue the
 * counters; whatever follows must be zeroes (preallocated space) or the
 * segment is reported damaged. The scan never trusts a length it has not
 * checked against the file size, so a garbage header cannot make it allocate
 * more than the file holds.
 *
 * All reads are 4 KiB aligned in offset, length and memory: the store may
 * hand us an O_DIRECT descriptor.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "firn_common.h"
#include "firn_segment.h"
#include "seg_internal.h"

#define SEG_SCAN_CHUNK (1u << 20)

/* A window [boff, boff + blen) of the file in an aligned buffer. */
struct seg_reader {
	int fd;
	uint64_t size;
	uint8_t *buf;
	size_t cap;
	uint64_t boff;
	size_t blen;
};

static int
seg_pread_full(int fd, uint8_t *buf, size_t len, uint64_t off, size_t *got)
{
	ssize_t r;

	*got = 0;
	while (*got < len) {
		r = pread(fd, buf + *got, len - *got, (off_t)(off + *got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		*got += (size_t)r;
	}
	return 0;
}

/*
 * Make file bytes [off, off + len) available at *p, reading at least ahead
 * bytes (rounded to 4 KiB) from off when they are not in the window. off must
 * be 4 KiB aligned. Returns 0, 1 when the range is not (all) in the file, or
 * -errno.
 */
static int
seg_reader_get(struct seg_reader *rd, uint64_t off, size_t len, size_t ahead, const uint8_t **p)
{
	size_t want, got;
	uint8_t *nb;
	int rc;

	if (off >= rd->boff && len <= rd->blen && off - rd->boff <= rd->blen - len) {
		*p = rd->buf + (off - rd->boff);
		return 0;
	}
	if (off > rd->size || len > rd->size - off)
		return 1;
	want = FIRN_ALIGN_UP(FIRN_MAX(len, ahead), (size_t)FIRN_SEG_ALIGN);
	if (want > rd->cap) {
		nb = aligned_alloc(FIRN_SEG_ALIGN, want);
		if (nb == NULL)
			return -ENOMEM;
		free(rd->buf);
		rd->buf = nb;
		rd->cap = want;
	}
	rd->blen = 0;
	rc = seg_pread_full(rd->fd, rd->buf, want, off, &got);
	if (rc < 0)
		return rc;
	rd->boff = off;
	rd->blen = got;
	if (got < len)
		return 1; /* the file shrank under us */
	*p = rd->buf;
	return 0;
}

static bool
seg_all_zero(const uint8_t *p, size_t len)
{
	uint64_t w;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		if (w != 0)
			return false;
	}
	for (; len > 0; p++, len--)
		if (*p != 0)
			return false;
	return true;
}

/* Is every byte of the file from off (4 KiB aligned) to its end zero? 1, 0 or -errno. */
static int
seg_tail_is_zero(struct seg_reader *rd, uint64_t off)
{
	const uint8_t *p;
	size_t len;
	int rc;

	while (off < rd->size) {
		len = (size_t)FIRN_MIN((uint64_t)SEG_SCAN_CHUNK, rd->size - off);
		rc = seg_reader_get(rd, off, len, SEG_SCAN_CHUNK, &p);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return 1; /* shrank: nothing more to look at */
		if (!seg_all_zero(p, len))
			return 0;
		off += len;
	}
	return 1;
}

static bool
seg_entry_eq(const struct firn_seg_index_entry *a, const struct firn_seg_index_entry *b)
{
	return a->offset == b->offset && a->disk_len == b->disk_len && a->count == b->count &&
	       a->first_counter == b->first_counter && a->first_ts_ms == b->first_ts_ms &&
	       a->last_ts_ms == b->last_ts_ms && a->raw_len == b->raw_len && a->flags == b->flags;
}

/* Does the block header at e->offset describe exactly e? */
static int
seg_spot_check(struct seg_reader *rd, const struct firn_seg_index_entry *e)
{
	struct firn_seg_index_entry got;
	const uint8_t *p;
	int rc;

	rc = seg_reader_get(rd, e->offset, FIRN_SEG_BLOCK_HDR_SIZE, FIRN_SEG_ALIGN, &p);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	if (firn_seg_block_peek(p, FIRN_SEG_BLOCK_HDR_SIZE, e->offset, &got) < 0)
		return 0;
	return seg_entry_eq(&got, e) ? 1 : 0;
}

/* Use the footer if there is a valid one that agrees with the blocks: 1, 0 (no), -errno. */
static int
seg_scan_footer(struct seg_reader *rd, struct firn_seg_scan *out)
{
	struct firn_seg_index_entry *ents = NULL;
	uint64_t body = rd->size - FIRN_SEG_HEADER_SIZE;
	size_t tail_len, need = 0;
	const uint8_t *p;
	uint32_t n = 0;
	int rc;

	if (rd->size < 2 * FIRN_SEG_ALIGN || rd->size % FIRN_SEG_ALIGN != 0)
		return 0;
	/*
	 * The last 4 KiB first: it holds the whole footer of a segment of up
	 * to 84 blocks; a longer footer says how long it is (-EAGAIN). Start-up
	 * opens every sealed segment, so this stays at two small reads.
	 */
	tail_len = FIRN_SEG_ALIGN;
	for (;;) {
		rc = seg_reader_get(rd, rd->size - tail_len, tail_len, tail_len, &p);
		if (rc != 0)
			return rc < 0 ? rc : 0;
		rc = firn_seg_footer_decode(p, tail_len, rd->size - tail_len, &ents, &n, &need);
		if (rc != -EAGAIN)
			break;
		need = FIRN_ALIGN_UP(need, (size_t)FIRN_SEG_ALIGN);
		if (need <= tail_len || need > body)
			return 0;
		tail_len = need;
	}
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0)
		return 0;

	if (n > 0) {
		if (ents[0].first_counter != out->hdr.first_counter)
			goto disagree;
		rc = seg_spot_check(rd, &ents[0]);
		if (rc == 1 && n > 1)
			rc = seg_spot_check(rd, &ents[n - 1]);
		if (rc < 0) {
			free(ents);
			return rc;
		}
		if (rc == 0)
			goto disagree;
	}
	out->ents = ents;
	out->n = n;
	out->valid_end = rd->size;
	out->sealed = true;
	out->damaged = false;
	return 1;
disagree:
	free(ents);
	return 0;
}

static int
seg_push(struct firn_seg_scan *out, uint32_t *cap, const struct firn_seg_index_entry *e)
{
	struct firn_seg_index_entry *ne;
	uint32_t ncap;

	if (out->n == *cap) {
		ncap = *cap ? *cap * 2 : 64;
		ne = realloc(out->ents, (size_t)ncap * sizeof(*ne));
		if (ne == NULL)
			return -ENOMEM;
		out->ents = ne;
		*cap = ncap;
	}
	out->ents[out->n++] = *e;
	return 0;
}

/* Walk and verify blocks from offset 4096. 0 or -errno (not for damage: that stops the walk). */
static int
seg_scan_blocks(struct seg_reader *rd, struct firn_seg_codec *cx, struct firn_seg_scan *out)
{
	struct firn_seg_ctx ctx = {
	        .stream_id = out->hdr.stream_id,
	        .shard = out->hdr.shard,
	        .key = &out->key,
	};
	struct firn_seg_index_entry ent;
	uint64_t pos = FIRN_SEG_HEADER_SIZE, expect = out->hdr.first_counter;
	struct firn_seg_view view;
	const uint8_t *p;
	uint32_t cap = 0;
	int rc = 0;

	while (pos < rd->size) {
		rc = seg_reader_get(rd, pos, FIRN_SEG_BLOCK_HDR_SIZE, SEG_SCAN_CHUNK, &p);
		if (rc != 0)
			break;
		if (firn_seg_block_peek(p, FIRN_SEG_BLOCK_HDR_SIZE, pos, &ent) < 0 ||
		    ent.first_counter != expect)
			break;
		rc = seg_reader_get(rd, pos, ent.disk_len, SEG_SCAN_CHUNK, &p);
		if (rc != 0)
			break; /* torn: the block runs past the end of the file */
		rc = firn_seg_block_open(cx, &ctx, p, ent.disk_len, pos, &ent, &view);
		if (rc == -ENOSPC)
			return firn_err_set(rc,
			                    "block at offset %" PRIu64
			                    " holds %u bytes of records, "
			                    "more than this codec's %zu-byte limit: use a larger "
			                    "block size",
			                    pos, ent.raw_len, firn_seg_codec_max_raw(cx));
		if (rc == -EIO || rc == -ENOMEM)
			return firn_err_set(rc, "block at offset %" PRIu64 ": crypto failure", pos);
		if (rc < 0)
			break;
		rc = seg_push(out, &cap, &ent);
		if (rc < 0)
			return firn_err_set(rc, "segment scan: out of memory");
		expect = ent.first_counter + ent.count;
		pos += ent.disk_len;
	}
	if (rc < 0 && rc != -EBADMSG && rc != -EACCES)
		return firn_err_set(rc, "segment scan: read at offset %" PRIu64 " failed", pos);
	out->valid_end = pos;
	rc = seg_tail_is_zero(rd, pos);
	if (rc < 0)
		return firn_err_set(rc, "segment scan: read after offset %" PRIu64 " failed", pos);
	out->damaged = rc == 0;
	return 0;
}

int
firn_seg_scan_file(int fd, const uint8_t kek[32], struct firn_seg_codec *cx,
                   struct firn_seg_scan *out)
{
	struct seg_reader rd = {.fd = fd};
	const uint8_t *p;
	struct stat st;
	int rc;

	memset(out, 0, sizeof(*out));
	if (fstat(fd, &st) < 0)
		return firn_err_set(-errno, "segment scan: fstat failed");
	rd.size = st.st_size > 0 ? (uint64_t)st.st_size : 0;

	rc = seg_reader_get(&rd, 0, FIRN_SEG_HEADER_SIZE, FIRN_SEG_HEADER_SIZE, &p);
	if (rc == 1)
		rc = firn_err_set(-EBADMSG, "segment file of %" PRIu64 " bytes has no header",
		                  rd.size);
	else if (rc < 0)
		rc = firn_err_set(rc, "segment scan: reading the header failed");
	else
		rc = firn_seg_header_decode(p, FIRN_SEG_HEADER_SIZE, kek, &out->hdr, &out->key);
	if (rc < 0)
		goto fail;

	rc = seg_scan_footer(&rd, out);
	if (rc < 0) {
		rc = firn_err_set(rc, "segment scan: reading the footer failed");
		goto fail;
	}
	if (rc == 0)
		rc = seg_scan_blocks(&rd, cx, out);
	if (rc < 0)
		goto fail;
	free(rd.buf);
	return 0;
fail:
	free(rd.buf);
	firn_seg_scan_free(out);
	return rc;
}

void
firn_seg_scan_free(struct firn_seg_scan *s)
{
	free(s->ents);
	OPENSSL_cleanse(&s->key, sizeof(s->key));
	memset(s, 0, sizeof(*s));
}
