/*
 * test_bench.c - the histogram against a brute-force oracle (sorted samples),
 * merging, the pacer's schedule, key distributions and generators.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "firn_bench.h"
#include "firn_common.h"

static uint64_t
seed(void)
{
	const char *s = getenv("FIRN_TEST_SEED");
	uint64_t v = 42;

	if (s)
		firn_parse_u64(s, &v);
	return v;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Every bucket is contiguous with the next and holds the values it claims. */
static void
test_buckets(void **state)
{
	uint64_t lo, hi, prev_hi = 0;
	unsigned i;

	(void)state;
	for (i = 0; i < FIRN_HIST_BUCKETS; i++) {
		firn_hist_bucket_range(i, &lo, &hi);
		if (i > 0)
			assert_true(lo == prev_hi + 1);
		assert_int_equal(firn_hist_index(lo), i);
		assert_int_equal(firn_hist_index(hi), i);
		/* relative width below 2^-10 (3 significant digits) above the exact range */
		if (lo >= 2048)
			assert_true((double)(hi - lo + 1) / (double)lo <= 1.0 / 1024 + 1e-12);
		prev_hi = hi;
	}
	assert_true(prev_hi == UINT64_MAX);
}

/* Percentiles agree with the exact order statistic within bucket precision. */
static void
test_percentiles_vs_oracle(void **state)
{
	static const double ps[] = {1, 10, 50, 90, 99, 99.9, 99.99, 100};
	enum { N = 100000 };
	struct firn_hist *h = firn_hist_create();
	uint64_t *v = malloc(N * sizeof(*v));
	struct firn_rng r;
	size_t i, k;

	(void)state;
	firn_rng_seed(&r, seed());
	for (i = 0; i < N; i++) {
		/* a long-tailed mix: mostly ~50us, some ms, rare 100ms */
		uint64_t x = 20000 + firn_rng_below(&r, 60000);

		if (firn_rng_below(&r, 100) == 0)
			x = 1000000 + firn_rng_below(&r, 5000000);
		if (firn_rng_below(&r, 10000) == 0)
			x = 100000000 + firn_rng_below(&r, 100000000);
		v[i] = x;
		firn_hist_record(h, x);
	}
	qsort(v, N, sizeof(*v), cmp_u64);
	for (k = 0; k < FIRN_ARRAY_SIZE(ps); k++) {
		size_t rank = (size_t)ceil(ps[k] / 100.0 * N);
		uint64_t exact = v[(rank ? rank : 1) - 1];
		uint64_t got = firn_hist_percentile(h, ps[k]);

		if (!(got >= exact && (double)got <= (double)exact * (1.0 + 1.0 / 1024) + 1))
			fail_msg("p%.2f: got %llu exact %llu", ps[k], (unsigned long long)got,
			         (unsigned long long)exact);
	}
	assert_true(firn_hist_percentile(h, 100) == v[N - 1]);
	assert_true(h->min == v[0]);
	free(v);
	firn_hist_destroy(h);
}

static void
test_merge(void **state)
{
	struct firn_hist *a = firn_hist_create(), *b = firn_hist_create(),
	                 *all = firn_hist_create();
	struct firn_rng r;
	int i;

	(void)state;
	firn_rng_seed(&r, seed() + 1);
	for (i = 0; i < 5000; i++) {
		uint64_t x = firn_rng_below(&r, 1u << 30);

		firn_hist_record(i % 2 ? a : b, x);
		firn_hist_record(all, x);
	}
	firn_hist_merge(a, b);
	assert_true(a->count == all->count);
	assert_true(a->min == all->min && a->max == all->max);
	assert_memory_equal(a->bucket, all->bucket, sizeof(a->bucket));
	assert_true(firn_hist_percentile(a, 99) == firn_hist_percentile(all, 99));
	/* merging an empty histogram changes nothing (min stays right) */
	firn_hist_reset(b);
	firn_hist_merge(a, b);
	assert_true(a->min == all->min);
	assert_true(firn_hist_percentile(b, 50) == 0);
	firn_hist_destroy(a);
	firn_hist_destroy(b);
	firn_hist_destroy(all);
}

static void
test_pacer(void **state)
{
	struct firn_pacer p;

	(void)state;
	firn_pacer_init(&p, 1000.0, 1000000000ull); /* 1000/s: one per ms */
	assert_true(firn_pacer_due(&p, 999999999ull, 100) == 0);
	assert_true(firn_pacer_due(&p, 1000000000ull, 100) == 1);
	assert_true(firn_pacer_due(&p, 1000000000ull + 9500000ull, 100) == 10);
	firn_pacer_issue(&p, 10);
	assert_true(firn_pacer_due(&p, 1000000000ull + 9500000ull, 100) == 0);
	/* a stall: everything missed becomes due at once, capped by max */
	assert_true(firn_pacer_due(&p, 1000000000ull + 1000000000ull, 100) == 100);
	/* due times do not move with the stall (coordinated omission) */
	assert_true(firn_pacer_due_ns(&p, 10) == 1010000000ull);
	firn_pacer_init(&p, 0, 0);
	assert_true(firn_pacer_due(&p, 5, 7) == 7);
}

static void
test_keys(void **state)
{
	struct firn_keygen *u = firn_keygen_create(FIRN_KEYS_UNIFORM, 100, seed());
	struct firn_keygen *z = firn_keygen_create(FIRN_KEYS_ZIPF, 1000, seed());
	unsigned cu[100] = {0}, cz[1000] = {0};
	char buf[32];
	int i;

	(void)state;
	assert_non_null(u);
	assert_non_null(z);
	assert_null(firn_keygen_create(FIRN_KEYS_ZIPF, 0, 1));
	for (i = 0; i < 100000; i++) {
		uint64_t a = firn_keygen_next(u), b = firn_keygen_next(z);

		assert_true(a < 100 && b < 1000);
		cu[a]++;
		cz[b]++;
	}
	for (i = 0; i < 100; i++) /* expected 1000 each */
		assert_true(cu[i] > 800 && cu[i] < 1200);
	/* zipf(0.99): key 0 far more popular than the median key, ~13% of draws */
	assert_true(cz[0] > 8000 && cz[0] < 20000);
	assert_true(cz[0] > 20 * (cz[500] + 1));
	assert_int_equal(firn_key_format(123, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "k123");
	assert_int_equal(firn_key_format(0, buf, sizeof(buf)), 2);
	assert_string_equal(buf, "k0");
	assert_int_equal(firn_key_format(UINT64_MAX, buf, sizeof(buf)), 21);
	assert_string_equal(buf, "k18446744073709551615");
	assert_int_equal(firn_key_format(98765, buf, 4), 3); /* truncated like snprintf */
	assert_string_equal(buf, "k98");
	firn_keygen_destroy(u);
	firn_keygen_destroy(z);
}

static void
test_data(void **state)
{
	uint8_t a[1000], b[1000];
	struct firn_rng r1, r2;

	(void)state;
	firn_rng_seed(&r1, 7);
	firn_rng_seed(&r2, 7);
	firn_data_fill(FIRN_DATA_LOG, &r1, a, sizeof(a));
	firn_data_fill(FIRN_DATA_LOG, &r2, b, sizeof(b));
	assert_memory_equal(a, b, sizeof(a)); /* deterministic from the seed */
	assert_true(a[0] == '{');
	firn_data_fill(FIRN_DATA_RANDOM, &r1, a, 13);
	firn_data_fill(FIRN_DATA_RANDOM, &r2, b, 13);
	assert_memory_equal(a, b, 13);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_buckets), cmocka_unit_test(test_percentiles_vs_oracle),
	        cmocka_unit_test(test_merge),   cmocka_unit_test(test_pacer),
	        cmocka_unit_test(test_keys),    cmocka_unit_test(test_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
