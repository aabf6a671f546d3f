/*
 * test_record.c - unit tests for lib/record: exact u128 decimal parsing and
 * formatting, hash ranges, MD5 hash keys, sequence numbers, partition keys.
 *
 * Expected decimals were computed with Python's big integers, e.g.
 *	python3 -c "import hashlib;print(int(hashlib.md5(b'key').hexdigest(),16))"
 *	python3 -c "print(2**128 // 7 * 6)"
 * and are embedded as strings, so the test needs no bignum library. Random
 * round trips compare the chunked formatter against a slow digit-at-a-time
 * reference (ISA-L style: the simple version is the oracle), with a fixed
 * seed that FIRN_TEST_SEED overrides.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_record.h"

#define U128_MAX_DEC "340282366920938463463374607431768211455"
#define U128_2P128_DEC "340282366920938463463374607431768211456"
#define U128_2P127_DEC "170141183460469231731687303715884105728"

static struct firn_u128
dec(const char *s)
{
	struct firn_u128 v = {0, 0};

	assert_int_equal(firn_u128_parse(s, strlen(s), &v), 0);
	return v;
}

static void
assert_u128_dec(struct firn_u128 v, const char *want)
{
	char buf[FIRN_U128_DEC_SIZE];
	size_t n = firn_u128_format(v, buf);

	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
}

static int
parse_str(const char *s, struct firn_u128 *v)
{
	return firn_u128_parse(s, strlen(s), v);
}

/* ---- u128 ---------------------------------------------------------------- */

static void
test_u128_edges(void **state)
{
	struct firn_u128 v;

	(void)state;
	v = dec("0");
	assert_true(v.hi == 0 && v.lo == 0);
	assert_u128_dec(v, "0");

	v = dec("18446744073709551615"); /* 2^64-1 */
	assert_true(v.hi == 0 && v.lo == UINT64_MAX);
	assert_u128_dec(v, "18446744073709551615");

	v = dec("18446744073709551616"); /* 2^64 */
	assert_true(v.hi == 1 && v.lo == 0);
	assert_u128_dec(v, "18446744073709551616");

	v = dec("10000000000000000000"); /* 10^19: the formatter's chunk size */
	assert_true(v.hi == 0 && v.lo == 10000000000000000000ull);
	assert_u128_dec(v, "10000000000000000000");
	v = dec("100000000000000000000000000000000000000"); /* 10^38 */
	assert_u128_dec(v, "100000000000000000000000000000000000000");

	v = dec(U128_MAX_DEC);
	assert_true(v.hi == UINT64_MAX && v.lo == UINT64_MAX);
	assert_int_equal(firn_u128_cmp(v, FIRN_U128_MAX), 0);
	assert_u128_dec(v, U128_MAX_DEC);

	v = dec(U128_2P127_DEC);
	assert_true(v.hi == 1ull << 63 && v.lo == 0);
}

static void
test_u128_range_errors(void **state)
{
	struct firn_u128 v = {7, 7};

	(void)state;
	assert_int_equal(parse_str(U128_2P128_DEC, &v), -ERANGE);
	assert_int_equal(parse_str("340282366920938463463374607431768211460", &v), -ERANGE);
	assert_int_equal(parse_str("999999999999999999999999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_str("1000000000000000000000000000000000000000", &v), -ERANGE);
	/* Untouched on error. */
	assert_true(v.hi == 7 && v.lo == 7);
}

static void
test_u128_leading_zeros(void **state)
{
	struct firn_u128 v;

	(void)state;
	v = dec("0000");
	assert_true(v.hi == 0 && v.lo == 0);
	v = dec("007");
	assert_true(v.hi == 0 && v.lo == 7);
	/* Longer than 39 characters but in range thanks to leading zeros. */
	v = dec("00000000000" U128_MAX_DEC);
	assert_int_equal(firn_u128_cmp(v, FIRN_U128_MAX), 0);
	assert_int_equal(parse_str("0000" U128_2P128_DEC, &v), -ERANGE);
}

static void
test_u128_garbage(void **state)
{
	static const char *const bad[] = {
	        "", "-1", "+1", " 1", "1 ", "1a", "a1", "0x10", "1.0", "1e5", "١", "--", "\t7",
	};
	struct firn_u128 v;

	(void)state;
	for (size_t i = 0; i < FIRN_ARRAY_SIZE(bad); i++)
		assert_int_equal(parse_str(bad[i], &v), -EINVAL);
	/* A non-digit wins over overflow: report "not a number". */
	assert_int_equal(parse_str("99999999999999999999999999999999999999999x", &v), -EINVAL);
	/* len is honoured: an embedded NUL is not a digit, and bytes past len are ignored. */
	assert_int_equal(firn_u128_parse("12\0"
	                                 "3",
	                                 4, &v),
	                 -EINVAL);
	assert_int_equal(firn_u128_parse("123xyz", 3, &v), 0);
	assert_true(v.hi == 0 && v.lo == 123);
	assert_int_equal(firn_u128_parse(NULL, 0, &v), -EINVAL);
	assert_int_equal(firn_u128_parse("5", 0, &v), -EINVAL);
}

/* The oracle: one digit at a time, no chunks. */
static void
ref_format(unsigned __int128 x, char *buf)
{
	char tmp[64];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + (int)(x % 10));
		x /= 10;
	} while (x);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
}

static uint64_t rng_state;

static uint64_t
rng(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
test_u128_roundtrip_random(void **state)
{
	char got[FIRN_U128_DEC_SIZE], want[64];

	(void)state;
	for (int i = 0; i < 200000; i++) {
		/* Vary magnitude so short numbers and chunk edges are covered too. */
		unsigned shift = (unsigned)(rng() % 128);
		unsigned __int128 x = (((unsigned __int128)rng() << 64) | rng()) >> shift;
		struct firn_u128 v = {(uint64_t)(x >> 64), (uint64_t)x}, back;

		firn_u128_format(v, got);
		ref_format(x, want);
		if (strcmp(got, want) != 0)
			fail_msg("format %s, want %s", got, want);
		assert_int_equal(firn_u128_parse(got, strlen(got), &back), 0);
		assert_int_equal(firn_u128_cmp(back, v), 0);
	}
}

static void
test_u128_arith(void **state)
{
	struct firn_u128 one = firn_u128_from_u64(1);
	struct firn_u128 v;

	(void)state;
	v = firn_u128_add(firn_u128_from_u64(UINT64_MAX), one);
	assert_true(v.hi == 1 && v.lo == 0);
	v = firn_u128_sub(v, one);
	assert_true(v.hi == 0 && v.lo == UINT64_MAX);
	v = firn_u128_add(FIRN_U128_MAX, one); /* wraps */
	assert_true(v.hi == 0 && v.lo == 0);
	v = firn_u128_sub(firn_u128_from_u64(0), one);
	assert_int_equal(firn_u128_cmp(v, FIRN_U128_MAX), 0);

	assert_int_equal(firn_u128_cmp(dec("18446744073709551616"), dec("18446744073709551615")),
	                 1);
	assert_int_equal(firn_u128_cmp(dec("5"), dec("6")), -1);
	/* hi decides before lo. */
	assert_int_equal(firn_u128_cmp((struct firn_u128){1, 0}, (struct firn_u128){0, UINT64_MAX}),
	                 1);
}

/* ---- hash ranges ---------------------------------------------------------- */

struct range_case {
	uint32_t n;
	const char *q;          /* floor(2^128 / n), i.e. start of range 1 (NULL if n == 1) */
	const char *start2;     /* start of range 2 (NULL if n < 3) */
	const char *last_start; /* start of range n-1 */
};

static const struct range_case range_cases[] = {
        {1, NULL, NULL, "0"},
        {2, "170141183460469231731687303715884105728", NULL,
         "170141183460469231731687303715884105728"},
        {3, "113427455640312821154458202477256070485", "226854911280625642308916404954512140970",
         "226854911280625642308916404954512140970"},
        {4, "85070591730234615865843651857942052864", "170141183460469231731687303715884105728",
         "255211775190703847597530955573826158592"},
        {7, "48611766702991209066196372490252601636", "97223533405982418132392744980505203272",
         "291670600217947254397178234941515609816"},
        {1000, "340282366920938463463374607431768211", "680564733841876926926749214863536422",
         "339942084554017524999911232824336442789"},
        {2147483648u, "158456325028528675187087900672", "316912650057057350374175801344",
         "340282366762482138434845932244680310784"},
        {4294967295u, "79228162532711081671548469249", "158456325065422163343096938498",
         "340282366841710300930663525760219742206"},
};

static void
test_hash_ranges(void **state)
{
	struct firn_u128 one = firn_u128_from_u64(1);

	(void)state;
	for (size_t c = 0; c < FIRN_ARRAY_SIZE(range_cases); c++) {
		const struct range_case *rc = &range_cases[c];
		uint32_t n = rc->n;
		struct firn_u128 last = firn_u128_range_start(n - 1, n);

		assert_u128_dec(firn_u128_range_start(0, n), "0");
		if (rc->q) {
			/* Range 0 ends right before range 1 starts. */
			struct firn_u128 s1 = firn_u128_range_start(1, n);

			assert_u128_dec(s1, rc->q);
			assert_int_equal(
			        firn_u128_cmp(firn_u128_add(firn_u128_sub(s1, one), one), s1), 0);
		}
		if (rc->start2)
			assert_u128_dec(firn_u128_range_start(2, n), rc->start2);
		assert_u128_dec(last, rc->last_start);
		/*
		 * The last range is [last, 2^128-1]: never empty, and never more
		 * than n-1 keys longer than the others (the remainder).
		 */
		assert_true(firn_u128_cmp(last, FIRN_U128_MAX) <= 0);
		if (n > 1) {
			struct firn_u128 q = firn_u128_range_start(1, n);
			struct firn_u128 last_len = firn_u128_sub(FIRN_U128_MAX, last); /* len-1 */
			struct firn_u128 extra = firn_u128_sub(last_len, firn_u128_sub(q, one));

			assert_true(extra.hi == 0 && extra.lo < n);
			/* And adjacent ranges are all exactly q long. */
			for (uint32_t i = 1; i < FIRN_MIN(n, 64u); i++)
				assert_int_equal(
				        firn_u128_cmp(
				                firn_u128_sub(firn_u128_range_start(i, n),
				                              firn_u128_range_start(i - 1, n)),
				                q),
				        0);
		}
	}
	/* Boundaries as the catalog prints them for N = 3 and 7. */
	assert_u128_dec(firn_u128_sub(firn_u128_range_start(1, 3), one),
	                "113427455640312821154458202477256070484");
	assert_u128_dec(firn_u128_sub(firn_u128_range_start(2, 3), one),
	                "226854911280625642308916404954512140969");
	assert_u128_dec(firn_u128_sub(firn_u128_range_start(6, 7), one),
	                "291670600217947254397178234941515609815");
	assert_u128_dec(firn_u128_sub(firn_u128_range_start(999, 1000), one),
	                "339942084554017524999911232824336442788");
	assert_u128_dec(firn_u128_range_start(0, 0), "0");
}

/* ---- hash keys -------------------------------------------------------------- */

static void
assert_hash(const void *key, size_t len, const char *want)
{
	struct firn_u128 h;

	firn_hash_key(key, len, &h);
	assert_u128_dec(h, want);
}

static void
test_hash_key_vectors(void **state)
{
	uint8_t all[256], x256[256];

	(void)state;
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	memset(x256, 'x', sizeof(x256));
	/* md5("key") = 3c6e0b8a9c15224a8228b9a98ca1531d, read big-endian. */
	assert_hash("key", 3, "80325066489831061459460196859901989661");
	assert_hash("a", 1, "16955237001963240173058271559858726497");
	assert_hash("partitionKey-1", 14, "159499196025307651934328298402289840726");
	assert_hash("\xc3\xbcn\xc3\xaf"
	            "c\xc3\xb8"
	            "d\xc3\xa9",
	            11, "52140493028662414212752546179443769121");
	assert_hash(x256, sizeof(x256), "265353499944959180620795534685136097465");
	assert_hash(all, sizeof(all), "301446052313671413873041770031528810736");
	/* Empty is not a valid partition key, but the digest is still defined. */
	assert_hash("", 0, "281949768489412648962353822266799178366");
	/* The per-thread context is reused: same key, same answer, many times. */
	for (int i = 0; i < 1000; i++)
		assert_hash("key", 3, "80325066489831061459460196859901989661");
}

/* Each thread gets its own digest context; results must not mix between threads. */
static void *
hash_thread(void *arg)
{
	static const char *const keys[] = {"key", "a", "partitionKey-1"};
	static const char *const want[] = {
	        "80325066489831061459460196859901989661",
	        "16955237001963240173058271559858726497",
	        "159499196025307651934328298402289840726",
	};
	uintptr_t first = (uintptr_t)arg;
	char buf[FIRN_U128_DEC_SIZE];
	struct firn_u128 h;

	for (int i = 0; i < 20000; i++) {
		size_t k = (first + (size_t)i) % 3;

		firn_hash_key(keys[k], strlen(keys[k]), &h);
		firn_u128_format(h, buf);
		if (strcmp(buf, want[k]) != 0)
			return (void *)1;
	}
	return NULL;
}

static void
test_hash_key_threads(void **state)
{
	pthread_t t[4];
	void *ret;

	(void)state;
	for (uintptr_t i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hash_thread, (void *)i), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
}

/* ---- sequence numbers ----------------------------------------------------------- */

static void
test_seq_format_parse(void **state)
{
	char buf[FIRN_U128_DEC_SIZE];
	uint32_t shard;
	uint64_t counter;

	(void)state;
	firn_seq_format(0, 0, buf);
	assert_string_equal(buf, U128_2P127_DEC);
	firn_seq_format(5, 42, buf);
	assert_string_equal(buf, "170141183460469231823921024084431863850");
	assert_int_equal(firn_seq_parse(buf, strlen(buf), &shard, &counter), 0);
	assert_int_equal(shard, 5);
	assert_int_equal(counter, 42);
	firn_seq_format(FIRN_SHARD_INDEX_MAX, UINT64_MAX, buf);
	assert_string_equal(buf, "170141183500083312988819472512656080895");
	assert_int_equal(firn_seq_parse(buf, strlen(buf), &shard, &counter), 0);
	assert_int_equal(shard, FIRN_SHARD_INDEX_MAX);
	assert_true(counter == UINT64_MAX);

	for (int i = 0; i < 100000; i++) {
		uint32_t s = (uint32_t)(rng() % ((uint64_t)FIRN_SHARD_INDEX_MAX + 1));
		uint64_t ctr = rng() >> (rng() % 64);

		firn_seq_format(s, ctr, buf);
		assert_int_equal(strlen(buf), FIRN_SEQ_DEC_LEN);
		assert_int_equal(firn_seq_parse(buf, FIRN_SEQ_DEC_LEN, &shard, &counter), 0);
		assert_int_equal(shard, s);
		assert_true(counter == ctr);
	}
}

static int
seq_order(uint32_t s1, uint64_t c1, uint32_t s2, uint64_t c2)
{
	char a[FIRN_U128_DEC_SIZE], b[FIRN_U128_DEC_SIZE];
	int str, num;

	firn_seq_format(s1, c1, a);
	firn_seq_format(s2, c2, b);
	str = strcmp(a, b);
	str = (str > 0) - (str < 0);
	num = firn_u128_cmp(dec(a), dec(b));
	/* String order is numeric order: always 39 digits. */
	assert_int_equal(str, num);
	return num;
}

static void
test_seq_ordering(void **state)
{
	(void)state;
	/* Strictly increasing with the counter within a shard. */
	assert_int_equal(seq_order(3, 0, 3, 1), -1);
	assert_int_equal(seq_order(3, 9, 3, 10), -1);
	assert_int_equal(seq_order(3, 99999, 3, 100000), -1);
	assert_int_equal(seq_order(3, UINT64_MAX - 1, 3, UINT64_MAX), -1);
	/* A child (higher index) sorts after its parent, whatever the counters. */
	assert_int_equal(seq_order(1, UINT64_MAX, 2, 0), -1);
	assert_int_equal(seq_order(0, UINT64_MAX, FIRN_SHARD_INDEX_MAX, 0), -1);
	assert_int_equal(seq_order(7, 7, 7, 7), 0);
	for (int i = 0; i < 50000; i++) {
		uint32_t s1 = (uint32_t)(rng() % 1000), s2 = (uint32_t)(rng() % 1000);
		uint64_t c1 = rng() >> (rng() % 64), c2 = rng() >> (rng() % 64);
		int want = s1 != s2 ? (s1 < s2 ? -1 : 1) : (c1 != c2 ? (c1 < c2 ? -1 : 1) : 0);

		assert_int_equal(seq_order(s1, c1, s2, c2), want);
	}
}

static void
test_seq_reject(void **state)
{
	static const char *const bad[] = {
	        "",
	        "0",
	        "42",
	        /* 2^127 - 1: 39 digits but below the encoding */
	        "170141183460469231731687303715884105727",
	        /* 10^38: 39 digits, below 2^127 */
	        "100000000000000000000000000000000000000",
	        /* shard 2^31: above FIRN_SHARD_INDEX_MAX */
	        "170141183500083312988819472512656080896",
	        /* 2^128 does not fit; 2^128-1 has a shard index far above the maximum */
	        U128_2P128_DEC,
	        U128_MAX_DEC,
	        "999999999999999999999999999999999999999",
	        /* 38 and 40 digits */
	        "17014118346046923173168730371588410572",
	        "0170141183460469231731687303715884105728",
	        /* right length, not decimal */
	        "17014118346046923173168730371588410572x",
	        "+70141183460469231731687303715884105728",
	        " 70141183460469231731687303715884105728",
	        "-70141183460469231731687303715884105728",
	};
	uint32_t shard = 77;
	uint64_t counter = 77;

	(void)state;
	for (size_t i = 0; i < FIRN_ARRAY_SIZE(bad); i++) {
		if (firn_seq_parse(bad[i], strlen(bad[i]), &shard, &counter) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_int_equal(firn_seq_parse(NULL, 39, &shard, &counter), -EINVAL);
	assert_int_equal(shard, 77);
	assert_true(counter == 77);
	/* The lowest valid value is shard 0 counter 0. */
	assert_int_equal(firn_seq_parse(U128_2P127_DEC, 39, &shard, &counter), 0);
	assert_int_equal(shard, 0);
	assert_true(counter == 0);
}

/* ---- partition keys ------------------------------------------------------------ */

static int
pk(const char *s)
{
	return firn_partition_key_check(s, strlen(s));
}

static void
test_partition_key(void **state)
{
	char big[FIRN_PARTITION_KEY_MAX + 1];

	(void)state;
	assert_int_equal(pk("a"), 0);
	assert_int_equal(pk("user-42"), 0);
	assert_int_equal(pk("\xc3\xa9"), 0);                    /* é, 2 bytes */
	assert_int_equal(pk("\xe2\x82\xac"), 0);                /* €, 3 bytes */
	assert_int_equal(pk("\xf0\x9f\x98\x80"), 0);            /* U+1F600, 4 bytes */
	assert_int_equal(pk("\xed\x9f\xbf"), 0);                /* U+D7FF, just below surrogates */
	assert_int_equal(pk("\xee\x80\x80"), 0);                /* U+E000, just above */
	assert_int_equal(pk("\xf4\x8f\xbf\xbf"), 0);            /* U+10FFFF, the last */
	assert_int_equal(pk("\xe0\xa0\x80"), 0);                /* U+0800, shortest 3-byte */
	assert_int_equal(pk("\xf0\x90\x80\x80"), 0);            /* U+10000, shortest 4-byte */
	assert_int_equal(firn_partition_key_check("\0", 1), 0); /* U+0000 is UTF-8 */

	assert_int_equal(pk(""), -EINVAL);
	assert_int_equal(firn_partition_key_check(NULL, 3), -EINVAL);
	assert_int_equal(pk("\x80"), -EINVAL);             /* lone continuation */
	assert_int_equal(pk("\xc3"), -EINVAL);             /* truncated */
	assert_int_equal(pk("a\xe2\x82"), -EINVAL);        /* truncated at the end */
	assert_int_equal(pk("\xc3\x28"), -EINVAL);         /* bad continuation */
	assert_int_equal(pk("\xc0\xaf"), -EINVAL);         /* overlong '/' */
	assert_int_equal(pk("\xc1\xbf"), -EINVAL);         /* overlong */
	assert_int_equal(pk("\xe0\x80\xaf"), -EINVAL);     /* overlong 3-byte */
	assert_int_equal(pk("\xe0\x9f\xbf"), -EINVAL);     /* overlong 3-byte, top */
	assert_int_equal(pk("\xf0\x80\x80\xaf"), -EINVAL); /* overlong 4-byte */
	assert_int_equal(pk("\xf0\x8f\xbf\xbf"), -EINVAL); /* overlong 4-byte, top */
	assert_int_equal(pk("\xed\xa0\x80"), -EINVAL);     /* U+D800 surrogate */
	assert_int_equal(pk("\xed\xbf\xbf"), -EINVAL);     /* U+DFFF surrogate */
	assert_int_equal(pk("\xf4\x90\x80\x80"), -EINVAL); /* U+110000 */
	assert_int_equal(pk("\xf5\x80\x80\x80"), -EINVAL);
	assert_int_equal(pk("\xff"), -EINVAL);
	assert_int_equal(pk("\xe2\x82\xac\xe2\x28\xac"), -EINVAL);

	memset(big, 'k', sizeof(big));
	assert_int_equal(firn_partition_key_check(big, FIRN_PARTITION_KEY_MAX), 0);
	assert_int_equal(firn_partition_key_check(big, FIRN_PARTITION_KEY_MAX + 1), -E2BIG);
	/* 256 bytes of 2-byte characters is fine; a split character at the end is not. */
	for (int i = 0; i < FIRN_PARTITION_KEY_MAX; i += 2) {
		big[i] = '\xc3';
		big[i + 1] = '\xa9';
	}
	assert_int_equal(firn_partition_key_check(big, FIRN_PARTITION_KEY_MAX), 0);
	assert_int_equal(firn_partition_key_check(big, FIRN_PARTITION_KEY_MAX - 1), -EINVAL);
}

/*
 * firn_kdf is HKDF-SHA256 (RFC 5869) with no salt: the expected bytes were
 * computed independently with Python's hmac (PRK = HMAC(0^32, kek), OKM =
 * HMAC(PRK, label || 0x01)). Different labels give unrelated secrets.
 */
static void
test_kdf(void **state)
{
	static const uint8_t want[32] = {0x81, 0x68, 0x2c, 0x1c, 0x42, 0x17, 0x79, 0x10,
	                                 0xa9, 0xc1, 0x7c, 0x86, 0xb9, 0xd3, 0x10, 0x75,
	                                 0xd9, 0x28, 0xaf, 0x44, 0x33, 0x7d, 0x1d, 0xe5,
	                                 0x98, 0xfa, 0x20, 0x31, 0xc6, 0x22, 0x99, 0x1e};
	uint8_t kek[32], a[32], b[32];

	(void)state;
	for (int i = 0; i < 32; i++)
		kek[i] = (uint8_t)i;
	assert_int_equal(firn_kdf(kek, "firn1 iterator key", a), 0);
	assert_memory_equal(a, want, 32);
	assert_int_equal(firn_kdf(kek, "firn1 cookie secret", b), 0);
	assert_memory_not_equal(a, b, 32);
	kek[31] ^= 1;
	assert_int_equal(firn_kdf(kek, "firn1 iterator key", b), 0);
	assert_memory_not_equal(a, b, 32);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_u128_edges),
	        cmocka_unit_test(test_u128_range_errors),
	        cmocka_unit_test(test_u128_leading_zeros),
	        cmocka_unit_test(test_u128_garbage),
	        cmocka_unit_test(test_u128_roundtrip_random),
	        cmocka_unit_test(test_u128_arith),
	        cmocka_unit_test(test_hash_ranges),
	        cmocka_unit_test(test_hash_key_vectors),
	        cmocka_unit_test(test_hash_key_threads),
	        cmocka_unit_test(test_seq_format_parse),
	        cmocka_unit_test(test_seq_ordering),
	        cmocka_unit_test(test_seq_reject),
	        cmocka_unit_test(test_partition_key),
	        cmocka_unit_test(test_kdf),
	};
	const char *seed = getenv("FIRN_TEST_SEED");
	uint64_t s = 0x5eed;

	if (seed != NULL && firn_parse_u64(seed, &s) < 0) {
		fprintf(stderr, "FIRN_TEST_SEED must be a number\n");
		return 1;
	}
	rng_state = s;
	return cmocka_run_group_tests_name("record", tests, NULL, NULL) ? 1 : 0;
}
