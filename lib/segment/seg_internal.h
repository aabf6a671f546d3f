/*
 * seg_internal.h - private to lib/segment: byte-order helpers, CRC32C and
 * the field offsets of doc/format.md, in one place so that the encoders,
 * decoders and tests cannot disagree about a layout.
 *
 * Every on-disk integer is little-endian and at an arbitrary alignment, so
 * loads and stores go through memcpy (one mov on x86) and le*toh/htole*.
 */
#ifndef FIRN_SEG_INTERNAL_H
#define FIRN_SEG_INTERNAL_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#include <isa-l/crc.h>

#include "firn_common.h"
#include "firn_segment.h"

/* ---- little-endian loads and stores --------------------------------------- */

static inline uint16_t
seg_ld16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t
seg_ld32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t
seg_ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void
seg_st16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void
seg_st32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void
seg_st64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

/* ---- CRC32C ------------------------------------------------------------------ */

/*
 * Standard CRC32C (Castagnoli, check value 0xE3069283 for "123456789"),
 * chainable like zlib's crc32(): seg_crc32c(seg_crc32c(0, a), b) is the CRC of
 * a||b. ISA-L's crc32_iscsi() neither inverts its seed nor its result, so we
 * do both here; start with crc = 0.
 */
static inline uint32_t
seg_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return ~crc32_iscsi((unsigned char *)(uintptr_t)buf, (int)len, ~crc);
}

/* ---- segment header (doc/format.md section 3) ------------------------------- */

#define SEG_MAGIC "FIRNSEG\0"
#define SEG_H_MAGIC 0
#define SEG_H_VERSION 8
#define SEG_H_HEADER_LEN 12
#define SEG_H_STREAM 16
#define SEG_H_SHARD 24
#define SEG_H_FIRST_COUNTER 28
#define SEG_H_CREATED 36
#define SEG_H_KEK_ID 44
#define SEG_H_WRAP 48 /* iv 12 | ciphertext 32 | tag 16 */
#define SEG_H_WRAP_AAD_LEN SEG_H_WRAP
#define SEG_H_CRC (FIRN_SEG_HEADER_SIZE - 4)

/* ---- block header (section 4.1) ---------------------------------------------- */

#define SEG_BLK_MAGIC "FBLK"
#define SEG_BLK_VERSION 1u
#define SEG_B_MAGIC 0
#define SEG_B_VERSION 4
#define SEG_B_FLAGS 6
#define SEG_B_HEADER_LEN 8
#define SEG_B_PAYLOAD_LEN 12
#define SEG_B_RAW_LEN 16
#define SEG_B_COUNT 20
#define SEG_B_FIRST_COUNTER 24
#define SEG_B_FIRST_TS 32
#define SEG_B_LAST_TS 40
#define SEG_B_OFFSET 48
#define SEG_B_STREAM 56
#define SEG_B_SHARD 64
#define SEG_B_RESERVED 68
#define SEG_B_RESERVED_LEN 28
#define SEG_B_IV 96
#define SEG_B_TAG 108
#define SEG_B_CRC 124
#define SEG_B_AAD_LEN SEG_B_IV
#define SEG_IV_LEN 12
#define SEG_TAG_LEN 16

/* ---- packed record (section 4.4) ---------------------------------------------- */

#define SEG_R_TOTAL 0
#define SEG_R_TS 4
#define SEG_R_PID 12
#define SEG_R_PSEQ 20
#define SEG_R_KEY_LEN 28
#define SEG_R_DATA_LEN 30

/* ---- footer (section 5) ------------------------------------------------------- */

#define SEG_IDX_MAGIC "FIRNIDX\0"
#define SEG_IDX_VERSION 1u
#define SEG_IDX_ENTRY_SIZE 48u
#define SEG_IDX_TRAILER_SIZE 32u
#define SEG_E_OFFSET 0
#define SEG_E_DISK_LEN 8
#define SEG_E_COUNT 12
#define SEG_E_FIRST_COUNTER 16
#define SEG_E_FIRST_TS 24
#define SEG_E_LAST_TS 32
#define SEG_E_RAW_LEN 40
#define SEG_E_FLAGS 44
#define SEG_T_MAGIC 0
#define SEG_T_COUNT 8
#define SEG_T_VERSION 12
#define SEG_T_ENTRY_SIZE 14
#define SEG_T_FOOTER_OFF 16
#define SEG_T_RESERVED 24
#define SEG_T_CRC 28

/*
 * Sanity rules every index entry obeys (section 5.2), whether it came from a
 * block header or a footer.
 */
static inline int
seg_entry_sane(const struct firn_seg_index_entry *e)
{
	if (e->offset % FIRN_SEG_ALIGN != 0 || e->offset < FIRN_SEG_HEADER_SIZE)
		return 0;
	if (e->disk_len == 0 || e->disk_len % FIRN_SEG_ALIGN != 0)
		return 0;
	if (e->count == 0 || e->first_ts_ms > e->last_ts_ms)
		return 0;
	if ((e->flags & ~FIRN_SEG_BLOCK_DEFLATE) != 0 || e->raw_len > FIRN_SEG_RAW_MAX)
		return 0;
	if ((uint64_t)e->count * FIRN_SEG_REC_OVERHEAD > e->raw_len)
		return 0;
	/* The payload is never longer than the packed records. */
	if (e->disk_len >
	    FIRN_ALIGN_UP((uint64_t)FIRN_SEG_BLOCK_HDR_SIZE + e->raw_len, (uint64_t)FIRN_SEG_ALIGN))
		return 0;
	if (e->first_counter > UINT64_MAX - (e->count - 1))
		return 0;
	return 1;
}

#endif /* FIRN_SEG_INTERNAL_H */
