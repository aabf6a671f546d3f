/*
 * footer.c - the index footer of a sealed segment, and index lookups
 * (doc/format.md sections 5 and 7).
 *
 * A sealed segment ends with every block's index entry and a 32-byte trailer
 * in the file's very last bytes. A reader reads the last 4 KiB, finds the
 * trailer, learns from it where the footer starts, and reads the rest only if
 * the footer is longer than what it already has (-EAGAIN with *need). The
 * trailer's CRC covers the whole footer, and the decoder also checks that
 * the entries describe one contiguous run of blocks from offset 4096 to the
 * footer with contiguous counters, so a footer that decodes is at least
 * self-consistent; whether it agrees with the blocks is the scan's question.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "firn_common.h"
#include "firn_segment.h"
#include "seg_internal.h"

size_t
firn_seg_footer_size(uint32_t n)
{
	return FIRN_ALIGN_UP((size_t)n * SEG_IDX_ENTRY_SIZE + SEG_IDX_TRAILER_SIZE,
	                     (size_t)FIRN_SEG_ALIGN);
}

void
firn_seg_footer_encode(const struct firn_seg_index_entry *ents, uint32_t n, uint64_t off, void *buf)
{
	size_t size = firn_seg_footer_size(n);
	uint8_t *b = buf, *p, *t = b + size - SEG_IDX_TRAILER_SIZE;
	uint32_t i;

	memset(b, 0, size);
	for (i = 0; i < n; i++) {
		p = b + (size_t)i * SEG_IDX_ENTRY_SIZE;
		seg_st64(p + SEG_E_OFFSET, ents[i].offset);
		seg_st32(p + SEG_E_DISK_LEN, ents[i].disk_len);
		seg_st32(p + SEG_E_COUNT, ents[i].count);
		seg_st64(p + SEG_E_FIRST_COUNTER, ents[i].first_counter);
		seg_st64(p + SEG_E_FIRST_TS, (uint64_t)ents[i].first_ts_ms);
		seg_st64(p + SEG_E_LAST_TS, (uint64_t)ents[i].last_ts_ms);
		seg_st32(p + SEG_E_RAW_LEN, ents[i].raw_len);
		seg_st32(p + SEG_E_FLAGS, ents[i].flags);
	}
	memcpy(t + SEG_T_MAGIC, SEG_IDX_MAGIC, 8);
	seg_st32(t + SEG_T_COUNT, n);
	seg_st16(t + SEG_T_VERSION, SEG_IDX_VERSION);
	seg_st16(t + SEG_T_ENTRY_SIZE, SEG_IDX_ENTRY_SIZE);
	seg_st64(t + SEG_T_FOOTER_OFF, off);
	seg_st32(t + SEG_T_CRC, seg_crc32c(0, b, size - 4));
}

int
firn_seg_footer_decode(const void *tail, size_t tail_len, uint64_t tail_off,
                       struct firn_seg_index_entry **ents, uint32_t *n, size_t *need)
{
	const uint8_t *t, *f, *p;
	struct firn_seg_index_entry *e;
	uint64_t file_end, foff, next_off, next_counter;
	size_t fsize;
	uint32_t count, i;

	if (tail_off > UINT64_MAX - tail_len)
		return -EBADMSG;
	file_end = tail_off + tail_len;
	if (tail_len < SEG_IDX_TRAILER_SIZE) {
		if (file_end < SEG_IDX_TRAILER_SIZE)
			return -EBADMSG;
		*need = SEG_IDX_TRAILER_SIZE;
		return -EAGAIN;
	}
	t = (const uint8_t *)tail + tail_len - SEG_IDX_TRAILER_SIZE;
	if (memcmp(t + SEG_T_MAGIC, SEG_IDX_MAGIC, 8) != 0 ||
	    seg_ld16(t + SEG_T_VERSION) != SEG_IDX_VERSION ||
	    seg_ld16(t + SEG_T_ENTRY_SIZE) != SEG_IDX_ENTRY_SIZE ||
	    seg_ld32(t + SEG_T_RESERVED) != 0)
		return -EBADMSG;
	count = seg_ld32(t + SEG_T_COUNT);
	foff = seg_ld64(t + SEG_T_FOOTER_OFF);
	fsize = firn_seg_footer_size(count);
	if (foff % FIRN_SEG_ALIGN != 0 || foff < FIRN_SEG_HEADER_SIZE || foff > file_end ||
	    file_end - foff != fsize)
		return -EBADMSG;
	if (foff < tail_off) {
		*need = fsize;
		return -EAGAIN;
	}
	f = (const uint8_t *)tail + (foff - tail_off);
	if (seg_ld32(t + SEG_T_CRC) != seg_crc32c(0, f, fsize - 4))
		return -EBADMSG;

	e = malloc(count > 0 ? (size_t)count * sizeof(*e) : 1);
	if (e == NULL)
		return -ENOMEM;
	next_off = FIRN_SEG_HEADER_SIZE;
	next_counter = 0;
	for (i = 0; i < count; i++) {
		p = f + (size_t)i * SEG_IDX_ENTRY_SIZE;
		e[i].offset = seg_ld64(p + SEG_E_OFFSET);
		e[i].disk_len = seg_ld32(p + SEG_E_DISK_LEN);
		e[i].count = seg_ld32(p + SEG_E_COUNT);
		e[i].first_counter = seg_ld64(p + SEG_E_FIRST_COUNTER);
		e[i].first_ts_ms = (int64_t)seg_ld64(p + SEG_E_FIRST_TS);
		e[i].last_ts_ms = (int64_t)seg_ld64(p + SEG_E_LAST_TS);
		e[i].raw_len = seg_ld32(p + SEG_E_RAW_LEN);
		e[i].flags = seg_ld32(p + SEG_E_FLAGS);
		if (!seg_entry_sane(&e[i]) || e[i].offset != next_off ||
		    (i > 0 && e[i].first_counter != next_counter))
			goto bad;
		next_off = e[i].offset + e[i].disk_len;
		next_counter = e[i].first_counter + e[i].count;
	}
	if (next_off != foff)
		goto bad;
	*ents = e;
	*n = count;
	return 0;
bad:
	free(e);
	return -EBADMSG;
}

/* ---- index lookups ------------------------------------------------------------------ */

uint32_t
firn_seg_index_find_counter(const struct firn_seg_index_entry *e, uint32_t n, uint64_t counter)
{
	uint32_t lo = 0, hi = n, mid;

	/* First entry whose last counter is >= counter (written so nothing overflows). */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (counter >= e[mid].first_counter &&
		    counter - e[mid].first_counter >= e[mid].count)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t
firn_seg_index_find_time(const struct firn_seg_index_entry *e, uint32_t n, int64_t ts_ms)
{
	uint32_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (e[mid].last_ts_ms < ts_ms)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
