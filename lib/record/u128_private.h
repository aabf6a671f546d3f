/*
 * u128_private.h - conversions between the public {hi, lo} pair and the
 * compiler's native unsigned __int128. Private to lib/record.
 */
#ifndef FIRN_U128_PRIVATE_H
#define FIRN_U128_PRIVATE_H

#include "firn_record.h"

static inline unsigned __int128
u128_to_native(struct firn_u128 v)
{
	return ((unsigned __int128)v.hi << 64) | v.lo;
}

static inline struct firn_u128
u128_from_native(unsigned __int128 v)
{
	return (struct firn_u128){(uint64_t)(v >> 64), (uint64_t)v};
}

#endif /* FIRN_U128_PRIVATE_H */
