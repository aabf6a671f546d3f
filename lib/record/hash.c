/*
 * hash.c - partition keys and the hash keys they map to.
 *
 * Every record is routed by a 128-bit hash key. Like Kinesis, firn takes the
 * MD5 of the partition key bytes and reads the 16-byte digest as a big-endian
 * unsigned integer, so a producer that computes ExplicitHashKey itself, or a
 * consumer that reasons about which shard holds a key, gets the same answer
 * from firn as from Kinesis.
 *
 * MD5 goes through OpenSSL EVP (the one-shot MD5() is deprecated in OpenSSL
 * 3). This sits on the RX path, once per record, so the obvious
 * EVP_Digest(..., EVP_md5(), ...) is not good enough: it fetches the
 * algorithm from the provider registry and allocates a context on every call
 * (about 2x slower, three allocations per call on OpenSSL 3.0). Instead the
 * algorithm is fetched once per process and every thread keeps one digest
 * context for its lifetime, freed by a thread-exit destructor.
 *
 * Partition keys must be 1..256 bytes of well-formed UTF-8 (they are
 * Unicode strings in the Kinesis API): no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "firn_common.h"
#include "firn_record.h"

static pthread_once_t md5_once = PTHREAD_ONCE_INIT;
static EVP_MD *md5_md;
static pthread_key_t md5_key;
static bool md5_key_ok;
static __thread EVP_MD_CTX *md5_ctx;

static void
md5_thread_exit(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void
md5_init_once(void)
{
	md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
	md5_key_ok = pthread_key_create(&md5_key, md5_thread_exit) == 0;
	if (md5_md == NULL)
		FIRN_LOG(ERR, "record",
		         "OpenSSL has no MD5 (FIPS-only provider?); hash keys fall back to "
		         "EVP_Digest and may be 0");
}

/* The calling thread's digest context, created on first use; NULL if unavailable. */
static EVP_MD_CTX *
md5_thread_ctx(void)
{
	if (firn_likely(md5_ctx != NULL))
		return md5_ctx;
	pthread_once(&md5_once, md5_init_once);
	if (md5_md == NULL || !md5_key_ok)
		return NULL;
	md5_ctx = EVP_MD_CTX_new();
	if (md5_ctx != NULL && pthread_setspecific(md5_key, md5_ctx) != 0) {
		EVP_MD_CTX_free(md5_ctx);
		md5_ctx = NULL;
	}
	return md5_ctx;
}

void
firn_hash_key(const void *partition_key, size_t len, struct firn_u128 *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = md5_thread_ctx();
	uint64_t hi = 0, lo = 0;
	int ok;

	if (firn_likely(ctx != NULL))
		ok = EVP_DigestInit_ex2(ctx, md5_md, NULL) &&
		     EVP_DigestUpdate(ctx, partition_key, len) &&
		     EVP_DigestFinal_ex(ctx, md, &mdlen);
	else
		ok = EVP_Digest(partition_key, len, md, &mdlen, EVP_md5(), NULL);
	if (firn_unlikely(!ok || mdlen != 16)) {
		/* Only possible without an MD5 implementation; logged once at init. */
		*out = (struct firn_u128){0, 0};
		return;
	}
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
