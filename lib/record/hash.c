/*
 * hash.c - partition keys and the hash keys they map to.
 *
 * Every record is routed by a 128-bit hash key. Like Kinesis, firn takes the
 * MD5 of the partition key bytes and reads the 16-byte digest as a big-endian
 * unsigned integer, so a producer that computes ExplicitHashKey itself, or a
 * consumer that reasons about which shard holds a key, gets the same answer
 * from firn as from Kinesis.
 *
 * MD5 sits on the RX path, once per record (less the agent's cache hits), so
 * it must not allocate. OpenSSL 3's EVP digests do: EVP_Digest fetches the
 * algorithm and allocates a context per call, and even a reused context
 * allocates its provider state on every EVP_DigestInit_ex2 (measured: one
 * malloc per hash key). The low-level MD5_Init/Update/Final work on a
 * context on the stack and never allocate; they are deprecated in OpenSSL
 * 3.0 (as a nudge towards EVP and FIPS providers, neither of which applies
 * to a non-cryptographic use like this) but remain in libcrypto, so they are
 * used here with the deprecation warnings suppressed for this file only.
 * The result is checked against the published MD5 vectors in the tests.
 *
 * Partition keys must be 1..256 bytes of well-formed UTF-8 (they are
 * Unicode strings in the Kinesis API): no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF.
 */
/* See above: the allocation-free low-level MD5 API, deprecated in OpenSSL 3.0. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <errno.h>
#include <string.h>

#include <openssl/md5.h>

#include "firn_common.h"
#include "firn_record.h"

void
firn_hash_key(const void *partition_key, size_t len, struct firn_u128 *out)
{
	unsigned char md[MD5_DIGEST_LENGTH];
	uint64_t hi = 0, lo = 0;
	MD5_CTX ctx;

	MD5_Init(&ctx);
	MD5_Update(&ctx, partition_key, len);
	MD5_Final(md, &ctx);
	for (int i = 0; i < 8; i++) {
		hi = (hi << 8) | md[i];
		lo = (lo << 8) | md[8 + i];
	}
	out->hi = hi;
	out->lo = lo;
}

/*
 * Well-formed UTF-8 as defined by Unicode (Table 3-7): the second byte's
 * allowed range depends on the lead byte, which is what rules out overlong
 * forms (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
 * points above U+10FFFF (F4 90.., F5..FF).
 */
static bool
utf8_valid(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t b = p[i];
		uint8_t lo = 0x80, hi = 0xbf;
		size_t need, k;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			need = 1;
		} else if (b >= 0xe0 && b <= 0xef) {
			need = 2;
			if (b == 0xe0)
				lo = 0xa0;
			else if (b == 0xed)
				hi = 0x9f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			need = 3;
			if (b == 0xf0)
				lo = 0x90;
			else if (b == 0xf4)
				hi = 0x8f;
		} else {
			return false;
		}
		if (len - i - 1 < need)
			return false;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (k = 2; k <= need; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += need + 1;
	}
	return true;
}

int
firn_partition_key_check(const void *key, size_t len)
{
	if (key == NULL || len == 0)
		return -EINVAL;
	if (len > FIRN_PARTITION_KEY_MAX)
		return -E2BIG;
	return utf8_valid(key, len) ? 0 : -EINVAL;
}
