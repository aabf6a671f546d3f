/*
 * store_testutil.h - helpers shared by the store's unit tests, fault tests
 * and perf program: scratch directories on a real file system, and
 * deterministic records that check themselves.
 *
 * O_DIRECT needs a file system that takes it (ext4, xfs; not tmpfs), so the
 * scratch directory lives under $FIRN_TEST_DIR, or /var/tmp by default, and
 * a test that finds O_DIRECT refused exits 77 (skip) with the reason.
 *
 * A test record of (shard, seq, len) carries seq and len in its first 16
 * bytes and a pattern derived from all three after them, so a reader can
 * check a record it got back without remembering what was written.
 */
#ifndef FIRN_STORE_TESTUTIL_H
#define FIRN_STORE_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "firn_common.h"
#include "firn_record.h"

#define TU_REC_MIN 16u

static inline uint64_t
tu_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* FNV-1a, enough to tell records apart in acks. */
static inline uint32_t
tu_hash(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* Fill buf (len >= TU_REC_MIN) with the content of record (shard, seq). */
static inline void
tu_fill(uint8_t *buf, uint32_t len, uint32_t shard, uint64_t seq)
{
	uint64_t x = tu_mix(((uint64_t)shard << 40) ^ seq ^ 0x5eedull), l = len;
	uint32_t i;

	memcpy(buf, &seq, 8);
	memcpy(buf + 8, &l, 8);
	for (i = 16; i < len; i++) {
		if ((i & 7) == 0)
			x = tu_mix(x + i);
		buf[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
}

/* Check a record made by tu_fill(); returns its seq or UINT64_MAX if bad. */
static inline uint64_t
tu_check(const uint8_t *data, uint32_t len, uint32_t shard)
{
	static __thread uint8_t *tmp;
	static __thread uint32_t tmpcap;
	uint64_t seq, l;

	if (len < TU_REC_MIN)
		return UINT64_MAX;
	memcpy(&seq, data, 8);
	memcpy(&l, data + 8, 8);
	if (l != len)
		return UINT64_MAX;
	if (tmpcap < len) {
		free(tmp);
		tmp = malloc(len);
		tmpcap = tmp ? len : 0;
		if (tmp == NULL)
			return UINT64_MAX;
	}
	tu_fill(tmp, len, shard, seq);
	return memcmp(tmp, data, len) == 0 ? seq : UINT64_MAX;
}

/* mkdtemp under $FIRN_TEST_DIR or /var/tmp. Returns 0 or -errno. */
static inline int
tu_mkdtemp(char *out, size_t cap, const char *tag)
{
	const char *base = getenv("FIRN_TEST_DIR");

	if (base == NULL || base[0] == '\0')
		base = "/var/tmp";
	if (snprintf(out, cap, "%s/firn-%s-XXXXXX", base, tag) >= (int)cap)
		return -ENAMETOOLONG;
	return mkdtemp(out) ? 0 : -errno;
}

/* true when dir's file system takes O_DIRECT. */
static inline bool
tu_odirect_ok(const char *dir)
{
	char path[4200];
	int fd;

	if (snprintf(path, sizeof(path), "%s/.odirect", dir) >= (int)sizeof(path))
		return false;
	fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return fd >= 0 || errno != EINVAL;
}

static inline const uint8_t *
tu_kek(void)
{
	static const uint8_t kek[32] = {
	        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba,
	        0x98, 0x76, 0x54, 0x32, 0x10, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a,
	        0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
	};

	return kek;
}

#endif /* FIRN_STORE_TESTUTIL_H */
