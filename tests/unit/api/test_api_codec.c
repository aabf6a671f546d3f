/*
 * test_api_codec.c - base64, shard iterators and pagination tokens.
 *
 * base64: the RFC 4648 section 10 vectors, then random round trips where
 * OpenSSL's EVP_DecodeBlock is the oracle for every length 0..300 (with the
 * padding bytes it reports stripped), then inputs that must be refused.
 *
 * Iterators and tokens: round trips, and the property the API depends on -
 * flipping any single bit of the decoded form, truncating, or using another
 * daemon's key gives -EINVAL, never a different valid position.
 *
 * Random data uses a fixed seed that FIRN_TEST_SEED overrides.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "api_internal.h"

static unsigned seed = 12345;

static uint32_t
rnd(void)
{
	/* xorshift32: deterministic across libcs. */
	seed ^= seed << 13;
	seed ^= seed >> 17;
	seed ^= seed << 5;
	return seed;
}

static void
test_b64_rfc4648(void **state)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
	                                  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	char out[32];
	uint8_t dec[32];
	unsigned i;

	(void)state;
	for (i = 0; i < FIRN_ARRAY_SIZE(plain); i++) {
		assert_int_equal(firn_b64_encode(plain[i], strlen(plain[i]), out), strlen(enc[i]));
		assert_string_equal(out, enc[i]);
		assert_int_equal(firn_b64_decode(enc[i], strlen(enc[i]), dec), strlen(plain[i]));
		assert_memory_equal(dec, plain[i], strlen(plain[i]));
	}
	/* Padding is optional on input. */
	assert_int_equal(firn_b64_decode("Zm9vYg", 6, dec), 4);
	assert_memory_equal(dec, "foob", 4);
	assert_int_equal(firn_b64_decode("Zm9vYmE", 7, dec), 5);
}

static void
test_b64_random_vs_openssl(void **state)
{
	uint8_t in[300], ours[300 + 3], ref[300 + 3];
	char enc[FIRN_B64_ENC_SIZE(300)];
	size_t len, i, el;
	int rn;

	(void)state;
	for (len = 0; len <= 300; len++) {
		for (i = 0; i < len; i++)
			in[i] = (uint8_t)rnd();
		el = firn_b64_encode(in, len, enc);
		assert_int_equal(el, 4 * ((len + 2) / 3));
		assert_int_equal(firn_b64_decode(enc, el, ours), (long)len);
		assert_memory_equal(ours, in, len);
		rn = EVP_DecodeBlock(ref, (const unsigned char *)enc, (int)el);
		/* EVP_DecodeBlock counts padding as output bytes. */
		rn -= (el >= 1 && enc[el - 1] == '=') + (el >= 2 && enc[el - 2] == '=');
		assert_int_equal(rn, (int)len);
		assert_memory_equal(ref, in, len);
	}
}

static void
test_b64_rejects(void **state)
{
	static const char *const bad[] = {
	        "Z", /* 4k+1 characters cannot encode whole bytes */
	        "Zm9vY", "Zm9v\n", " Zm9v", "Zm9v====", "Zg=", /* padding must complete */
	        "Zg===", "Z===",   "Zm-v",  "Zm_v",     "=Zm9", "Zm=v",
	};
	uint8_t out[16];
	unsigned i;

	(void)state;
	for (i = 0; i < FIRN_ARRAY_SIZE(bad); i++)
		if (firn_b64_decode(bad[i], strlen(bad[i]), out) >= 0)
			fail_msg("'%s' was accepted", bad[i]);
}

static void
random_key(uint8_t key[API_ITER_KEY_LEN])
{
	unsigned i;

	for (i = 0; i < API_ITER_KEY_LEN; i++)
		key[i] = (uint8_t)rnd();
}

static void
test_iterator_round_trip(void **state)
{
	uint8_t key[API_ITER_KEY_LEN];
	struct api_iter a = {0}, b;
	char s[API_ITER_STR_MAX];
	size_t n;
	int i;

	(void)state;
	random_key(key);
	for (i = 0; i < 200; i++) {
		a.stream_id = (uint64_t)rnd() << 32 | rnd();
		a.shard = rnd() & FIRN_SHARD_INDEX_MAX;
		a.mode = (i & 1) ? ITER_MODE_COUNTER : ITER_MODE_TIME;
		a.counter = (uint64_t)rnd() << 32 | rnd();
		a.ts_ms = (int64_t)(rnd() & 0x7fffffff) * 1000;
		a.issued_ms = 1700000000000ll + i;
		n = api_iter_encode(key, &a, s);
		assert_int_equal(n, strlen(s));
		assert_true(n > 0 && n <= 512);
		memset(&b, 0xa5, sizeof(b));
		assert_int_equal(api_iter_decode(key, s, n, &b), 0);
		assert_true(a.stream_id == b.stream_id && a.shard == b.shard && a.mode == b.mode &&
		            a.counter == b.counter && a.ts_ms == b.ts_ms &&
		            a.issued_ms == b.issued_ms);
	}
}

static void
test_iterator_tamper(void **state)
{
	uint8_t key[API_ITER_KEY_LEN], key2[API_ITER_KEY_LEN], raw[64];
	struct api_iter a = {.stream_id = 42,
	                     .shard = 3,
	                     .mode = ITER_MODE_COUNTER,
	                     .counter = 1000,
	                     .issued_ms = 1700000000000ll};
	struct api_iter b;
	char s[API_ITER_STR_MAX], t[API_ITER_STR_MAX];
	long rl;
	size_t n, bit;

	(void)state;
	random_key(key);
	memcpy(key2, key, sizeof(key));
	key2[0] ^= 1;
	n = api_iter_encode(key, &a, s);
	assert_int_equal(api_iter_decode(key2, s, n, &b), -EINVAL);
	rl = firn_b64_decode(s, n, raw);
	assert_true(rl > 0);
	for (bit = 0; bit < (size_t)rl * 8; bit++) {
		raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		firn_b64_encode(raw, (size_t)rl, t);
		if (api_iter_decode(key, t, strlen(t), &b) != -EINVAL)
			fail_msg("bit %zu flipped and still accepted", bit);
		raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(api_iter_decode(key, s, n - 4, &b), -EINVAL);
	assert_int_equal(api_iter_decode(key, "", 0, &b), -EINVAL);
	assert_int_equal(api_iter_decode(key, "garbage", 7, &b), -EINVAL);
	memset(t, 'A', n);
	assert_int_equal(api_iter_decode(key, t, n, &b), -EINVAL);
	assert_int_equal(api_iter_decode(key, s, n, &b), 0);
}

static void
test_token_round_trip_and_tamper(void **state)
{
	uint8_t key[API_ITER_KEY_LEN], raw[256];
	struct api_token a = {.kind = TOKEN_LIST_SHARDS,
	                      .issued_ms = 1700000000000ll,
	                      .stream_id = 9,
	                      .after_shard = 77,
	                      .filter = FILTER_AT_TIMESTAMP,
	                      .filter_ts_ms = 1690000000000ll};
	struct api_token b;
	char *s, *t;
	long rl;
	size_t bit;

	(void)state;
	random_key(key);
	memset(a.name, 'n', FIRN_STREAM_NAME_MAX);
	a.name[FIRN_STREAM_NAME_MAX] = '\0';
	s = api_token_encode(key, &a);
	assert_non_null(s);
	assert_int_equal(api_token_decode(key, s, strlen(s), &b), 0);
	assert_int_equal(b.kind, a.kind);
	assert_int_equal(b.stream_id, 9);
	assert_int_equal(b.after_shard, 77);
	assert_int_equal(b.filter, FILTER_AT_TIMESTAMP);
	assert_int_equal(b.filter_ts_ms, a.filter_ts_ms);
	assert_int_equal(b.issued_ms, a.issued_ms);
	assert_string_equal(b.name, a.name);
	rl = firn_b64_decode(s, strlen(s), raw);
	t = malloc(strlen(s) + 8);
	for (bit = 0; bit < (size_t)rl * 8; bit += 3) {
		raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		firn_b64_encode(raw, (size_t)rl, t);
		assert_int_equal(api_token_decode(key, t, strlen(t), &b), -EINVAL);
		raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	free(t);
	free(s);
	/* A short name. */
	snprintf(a.name, sizeof(a.name), "s");
	a.kind = TOKEN_LIST_STREAMS;
	s = api_token_encode(key, &a);
	assert_int_equal(api_token_decode(key, s, strlen(s), &b), 0);
	assert_string_equal(b.name, "s");
	assert_int_equal(api_token_decode(key, s, 3, &b), -EINVAL);
	free(s);
}

/* JSON string output: round trip through jansson, escapes, and no invalid UTF-8 out. */
static void
test_json_str(void **state)
{
	static const char *const ok[] = {
	        "",
	        "plain",
	        "q\"uote",
	        "back\\slash",
	        "ctl\x01\x1f\n\t",
	        "\xc3\xa9t\xc3\xa9",
	        "\xf0\x9f\x94\x91",
	        "\xe2\x82\xac",
	        "/slash/",
	};
	static const char *const bad[] = {
	        "\xff",          "\xc3", "\xed\xa0\x80", "\xe0\x80\x80", "\xf4\x90\x80\x80",
	        "ab\x80\x63\x64"};
	struct sbuf b;
	json_error_t je;
	json_t *j;
	unsigned i, k;
	char rnd_s[64];

	(void)state;
	for (i = 0; i < FIRN_ARRAY_SIZE(ok); i++) {
		sb_init(&b);
		sb_json_str(&b, ok[i], strlen(ok[i]));
		j = json_loads(b.p, JSON_DECODE_ANY, &je);
		assert_non_null(j);
		assert_string_equal(json_string_value(j), ok[i]);
		json_decref(j);
		sb_free(&b);
	}
	for (i = 0; i < FIRN_ARRAY_SIZE(bad); i++) {
		sb_init(&b);
		sb_json_str(&b, bad[i], strlen(bad[i]));
		j = json_loads(b.p, JSON_DECODE_ANY, &je);
		if (j == NULL)
			fail_msg("invalid JSON for input %u: %s", i, b.p);
		assert_non_null(strstr(json_string_value(j), "\xef\xbf\xbd"));
		json_decref(j);
		sb_free(&b);
	}
	/* Random ASCII with every control character: jansson reads back the same. */
	for (i = 0; i < 500; i++) {
		for (k = 0; k < sizeof(rnd_s) - 1; k++)
			rnd_s[k] = (char)(1 + rnd() % 127);
		rnd_s[sizeof(rnd_s) - 1] = '\0';
		sb_init(&b);
		sb_json_str(&b, rnd_s, strlen(rnd_s));
		j = json_loads(b.p, JSON_DECODE_ANY, &je);
		assert_non_null(j);
		assert_string_equal(json_string_value(j), rnd_s);
		json_decref(j);
		sb_free(&b);
	}
}

int
main(void)
{
	const char *env = getenv("FIRN_TEST_SEED");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_b64_rfc4648),
	        cmocka_unit_test(test_b64_random_vs_openssl),
	        cmocka_unit_test(test_b64_rejects),
	        cmocka_unit_test(test_iterator_round_trip),
	        cmocka_unit_test(test_iterator_tamper),
	        cmocka_unit_test(test_token_round_trip_and_tamper),
	        cmocka_unit_test(test_json_str),
	};
	uint64_t v;

	if (env != NULL && firn_parse_u64(env, &v) == 0 && v != 0)
		seed = (unsigned)v;
	printf("# seed %u (FIRN_TEST_SEED overrides)\n", seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
