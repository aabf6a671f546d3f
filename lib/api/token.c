/*
 * token.c - shard iterators and pagination tokens.
 *
 * Kinesis hands consumers opaque strings: a shard iterator names a position
 * in one shard, a NextToken names where a listing continues. firn keeps no
 * server-side state for either. The position is packed into a small binary
 * struct (stream id, shard, counter or timestamp, time of issue), followed by
 * a truncated HMAC-SHA256 under a key drawn at random when the daemon
 * starts, and base64-encoded:
 *
 *	ver | mode | stream_id | shard | counter | ts_ms | issued_ms | mac[16]
 *
 * so garbage and tampered strings are told apart from real ones without a
 * lookup (InvalidArgumentException), and an old one is recognised as old
 * (ExpiredIteratorException after 5 minutes, as in Kinesis). The stream id,
 * not its name, is inside: an iterator of a deleted stream cannot read a new
 * stream that reuses the name. Because the key is per daemon, iterators and
 * tokens do not survive a restart - clients get InvalidArgumentException and
 * ask for a new iterator, as they must after expiry anyway.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "api_internal.h"

#define ITER_VERSION 1
#define TOKEN_VERSION 1
#define MAC_LEN 16
#define ITER_BODY 38
#define ITER_LEN (ITER_BODY + MAC_LEN)
#define TOKEN_BODY_FIXED 32
#define TOKEN_MAX (TOKEN_BODY_FIXED + FIRN_STREAM_NAME_MAX + MAC_LEN)

static void
put64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
mac(const uint8_t key[API_ITER_KEY_LEN], const uint8_t *msg, size_t len, uint8_t out[MAC_LEN])
{
	uint8_t full[32];
	unsigned int n = sizeof(full);

	HMAC(EVP_sha256(), key, API_ITER_KEY_LEN, msg, len, full, &n);
	memcpy(out, full, MAC_LEN);
}

size_t
api_iter_encode(const uint8_t key[API_ITER_KEY_LEN], const struct api_iter *it,
                char out[API_ITER_STR_MAX])
{
	uint8_t b[ITER_LEN];

	b[0] = ITER_VERSION;
	b[1] = it->mode;
	put64(b + 2, it->stream_id);
	put32(b + 10, it->shard);
	put64(b + 14, it->counter);
	put64(b + 22, (uint64_t)it->ts_ms);
	put64(b + 30, (uint64_t)it->issued_ms);
	mac(key, b, ITER_BODY, b + ITER_BODY);
	return firn_b64_encode(b, sizeof(b), out);
}

int
api_iter_decode(const uint8_t key[API_ITER_KEY_LEN], const char *s, size_t len, struct api_iter *it)
{
	uint8_t b[ITER_LEN + 3], want[MAC_LEN];
	long n;

	/* Exactly the length we mint; anything else cannot be ours. */
	if (len != 4 * ((ITER_LEN + 2) / 3))
		return -EINVAL;
	n = firn_b64_decode(s, len, b);
	if (n != ITER_LEN || b[0] != ITER_VERSION)
		return -EINVAL;
	mac(key, b, ITER_BODY, want);
	if (CRYPTO_memcmp(want, b + ITER_BODY, MAC_LEN) != 0)
		return -EINVAL;
	it->mode = b[1];
	if (it->mode != ITER_MODE_COUNTER && it->mode != ITER_MODE_TIME)
		return -EINVAL;
	it->stream_id = get64(b + 2);
	it->shard = get32(b + 10);
	it->counter = get64(b + 14);
	it->ts_ms = (int64_t)get64(b + 22);
	it->issued_ms = (int64_t)get64(b + 30);
	return 0;
}

char *
api_token_encode(const uint8_t key[API_ITER_KEY_LEN], const struct api_token *t)
{
	uint8_t b[TOKEN_MAX];
	size_t nl = strnlen(t->name, FIRN_STREAM_NAME_MAX), len;
	char *out;

	b[0] = TOKEN_VERSION;
	b[1] = t->kind;
	put64(b + 2, (uint64_t)t->issued_ms);
	put64(b + 10, t->stream_id);
	put32(b + 18, t->after_shard);
	b[22] = (uint8_t)t->filter;
	put64(b + 23, (uint64_t)t->filter_ts_ms);
	b[31] = (uint8_t)nl;
	memcpy(b + TOKEN_BODY_FIXED, t->name, nl);
	len = TOKEN_BODY_FIXED + nl;
	mac(key, b, len, b + len);
	len += MAC_LEN;
	out = malloc(FIRN_B64_ENC_SIZE(len));
	if (out != NULL)
		firn_b64_encode(b, len, out);
	return out;
}

int
api_token_decode(const uint8_t key[API_ITER_KEY_LEN], const char *s, size_t len,
                 struct api_token *t)
{
	uint8_t b[TOKEN_MAX + 3], want[MAC_LEN];
	size_t nl;
	long n;

	if (len > FIRN_B64_ENC_SIZE(TOKEN_MAX))
		return -EINVAL;
	n = firn_b64_decode(s, len, b);
	if (n < TOKEN_BODY_FIXED + MAC_LEN || b[0] != TOKEN_VERSION)
		return -EINVAL;
	nl = b[31];
	if (nl > FIRN_STREAM_NAME_MAX || (size_t)n != TOKEN_BODY_FIXED + nl + MAC_LEN)
		return -EINVAL;
	mac(key, b, TOKEN_BODY_FIXED + nl, want);
	if (CRYPTO_memcmp(want, b + TOKEN_BODY_FIXED + nl, MAC_LEN) != 0)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	t->kind = b[1];
	t->issued_ms = (int64_t)get64(b + 2);
	t->stream_id = get64(b + 10);
	t->after_shard = get32(b + 18);
	t->filter = (int8_t)b[22];
	t->filter_ts_ms = (int64_t)get64(b + 23);
	memcpy(t->name, b + TOKEN_BODY_FIXED, nl);
	t->name[nl] = '\0';
	return 0;
}
