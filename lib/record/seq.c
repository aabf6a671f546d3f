/*
 * seq.c - sequence numbers.
 *
 * A sequence number is the 39-digit decimal string of
 *
 *	2^127 + shard * 2^64 + counter
 *
 * Setting bit 127 pins the length: every value in [2^127, 2^128) has exactly
 * 39 decimal digits, so string order equals numeric order and a client that
 * compares them as strings (many do) is still right. The shard index sits in
 * the high word, so a number names its shard (GetShardIterator can reject a
 * number from another shard) and children, which always get higher indexes
 * than their parents, sort after them. The low word is the store's per-shard
 * counter, so sequence numbers increase strictly in append order.
 */
#include <errno.h>

#include "firn_record.h"
#include "u128_private.h"

#define SEQ_TOP_BIT (1ull << 63)

void
firn_seq_format(uint32_t shard, uint64_t counter, char buf[FIRN_U128_DEC_SIZE])
{
	firn_u128_format((struct firn_u128){SEQ_TOP_BIT | shard, counter}, buf);
}

int
firn_seq_parse(const char *s, size_t len, uint32_t *shard, uint64_t *counter)
{
	struct firn_u128 v;
	uint64_t idx;

	if (s == NULL || len != FIRN_SEQ_DEC_LEN)
		return -EINVAL;
	/* 39 digits can exceed 2^128-1 (-ERANGE); that is "not ours" too. */
	if (firn_u128_parse(s, len, &v) < 0)
		return -EINVAL;
	if (!(v.hi & SEQ_TOP_BIT))
		return -EINVAL;
	idx = v.hi & ~SEQ_TOP_BIT;
	if (idx > FIRN_SHARD_INDEX_MAX)
		return -EINVAL;
	*shard = (uint32_t)idx;
	*counter = v.lo;
	return 0;
}
