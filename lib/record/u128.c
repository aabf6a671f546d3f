/*
 * u128.c - exact 128-bit arithmetic for hash keys and sequence numbers.
 *
 * Kinesis hash keys and sequence numbers are 128-bit unsigned integers that
 * travel as decimal strings. Parsing and formatting them must be exact at the
 * edges (0, 2^64-1, 2^64, 2^128-1), so everything here goes through the
 * compiler's unsigned __int128 and never through floating point or strtoull.
 * The public type is a plain {hi, lo} pair so headers stay portable; the
 * conversions below are free after inlining.
 */
#include <errno.h>
#include <string.h>

#include "firn_record.h"
#include "u128_private.h"

int
firn_u128_parse(const char *s, size_t len, struct firn_u128 *out)
{
	/* The largest value that can still take one more digit without overflow. */
	const unsigned __int128 max = ~(unsigned __int128)0;
	const unsigned __int128 lim = max / 10;
	const unsigned lim_digit = (unsigned)(max % 10);
	unsigned __int128 v = 0;
	bool overflow = false;
	size_t i;

	if (s == NULL || len == 0)
		return -EINVAL;
	/*
	 * Look at every byte before judging the size, so "9999...9x" is "not a
	 * number" (-EINVAL) rather than "too large": a caller reporting the error
	 * to a user should name the real problem.
	 */
	for (i = 0; i < len; i++) {
		unsigned d = (unsigned char)s[i] - (unsigned)'0';

		if (d > 9)
			return -EINVAL;
		if (overflow)
			continue;
		if (v > lim || (v == lim && d > lim_digit))
			overflow = true;
		else
			v = v * 10 + d;
	}
	if (overflow)
		return -ERANGE;
	*out = u128_from_native(v);
	return 0;
}

size_t
firn_u128_format(struct firn_u128 v, char buf[FIRN_U128_DEC_SIZE])
{
	/*
	 * Peel off 19 decimal digits at a time (10^19 is the largest power of
	 * ten below 2^64), so only two 128-bit divisions are needed and the
	 * rest is 64-bit arithmetic.
	 */
	const uint64_t p19 = 10000000000000000000ull;
	unsigned __int128 x = u128_to_native(v);
	char tmp[FIRN_U128_DEC_SIZE];
	size_t n = 0, i;

	if (x == 0) {
		buf[0] = '0';
		buf[1] = '\0';
		return 1;
	}
	while (x != 0) {
		uint64_t chunk = (uint64_t)(x % p19);
		int k;

		x /= p19;
		/* Full chunks below the top one keep their leading zeros. */
		for (k = 0; k < 19 && (chunk != 0 || x != 0); k++) {
			tmp[n++] = (char)('0' + chunk % 10);
			chunk /= 10;
		}
	}
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
	return n;
}

int
firn_u128_cmp(struct firn_u128 a, struct firn_u128 b)
{
	if (a.hi != b.hi)
		return a.hi < b.hi ? -1 : 1;
	if (a.lo != b.lo)
		return a.lo < b.lo ? -1 : 1;
	return 0;
}

struct firn_u128
firn_u128_range_start(uint32_t i, uint32_t n)
{
	const unsigned __int128 max = ~(unsigned __int128)0;
	unsigned __int128 q;

	if (n == 0)
		return u128_from_native(0);
	/*
	 * floor(2^128 / n) without a 129-bit numerator: 2^128 = (2^128-1) + 1,
	 * so the quotient is one more than floor((2^128-1) / n) exactly when
	 * the remainder of 2^128-1 is n-1 (adding 1 makes it divisible). For
	 * n == 1 the quotient is 2^128 itself, which wraps to 0; 0 * 0 is the
	 * right start for the only range, and for i < n the product is always
	 * below 2^128, so wrapping arithmetic gives the exact answer.
	 */
	q = max / n + ((max % n) == (unsigned __int128)(n - 1));
	return u128_from_native(q * i);
}

struct firn_u128
firn_u128_add(struct firn_u128 a, struct firn_u128 b)
{
	return u128_from_native(u128_to_native(a) + u128_to_native(b));
}

struct firn_u128
firn_u128_sub(struct firn_u128 a, struct firn_u128 b)
{
	return u128_from_native(u128_to_native(a) - u128_to_native(b));
}

struct firn_u128
firn_u128_from_u64(uint64_t v)
{
	return (struct firn_u128){0, v};
}
