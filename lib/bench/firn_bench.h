/*
 * firn_bench.h - what a load generator needs to tell the truth: an HDR-style
 * latency histogram, an open-loop pacer that does not hide stalls, key
 * distributions and record generators.
 *
 * Histogram. Log-linear buckets: exact below 2048, then 1024 buckets per
 * power of two, so any recorded value is reported within 2^-10 (< 0.1%: three
 * significant digits) of itself, and the whole uint64 range (1 ns to 584
 * years) fits in 56320 counters (440 KiB, heap-allocated). Record is a few
 * instructions and never allocates; per-thread histograms are merged at the
 * end. Percentiles report the highest value equivalent to the bucket (as HDR
 * does), clamped to the true maximum, so p100 == max exactly.
 *
 *	struct firn_hist *h = firn_hist_create();
 *	firn_hist_record(h, latency_ns);
 *	firn_hist_merge(total, h);
 *	uint64_t p99 = firn_hist_percentile(total, 99.0);
 *
 * Pacer. Open loop at a fixed rate: the i-th operation is *due* at
 * start + i/rate whether or not the previous one finished. Latency must be
 * measured from the due time (firn_pacer_due_ns), not from the actual send,
 * or a stalled system looks fast (coordinated omission).
 *
 * Keys. uniform over N, zipf(s=0.99) over N (YCSB's skew), or a fixed set.
 * Records. incompressible (random) or JSON-like log lines (compress ~4x with
 * deflate level 1), deterministic from a seed.
 *
 * Thread safety: none; one of each per thread, merge at the end.
 */
#ifndef FIRN_BENCH_H
#define FIRN_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- histogram ---------------------------------------------------------- */

#define FIRN_HIST_SUB_BITS 10
#define FIRN_HIST_BUCKETS 56320 /* 2^11 + (63 - 10) * 2^10 */

struct firn_hist {
	uint64_t count;
	uint64_t min, max;
	long double sum;
	uint64_t bucket[FIRN_HIST_BUCKETS];
};

struct firn_hist *firn_hist_create(void);
void firn_hist_destroy(struct firn_hist *h);
void firn_hist_reset(struct firn_hist *h);
void firn_hist_record(struct firn_hist *h, uint64_t v);
void firn_hist_merge(struct firn_hist *dst, const struct firn_hist *src);
/* The value at percentile p (0 < p <= 100); 0 for an empty histogram. */
uint64_t firn_hist_percentile(const struct firn_hist *h, double p);
double firn_hist_mean(const struct firn_hist *h);

/* Bucket index of v and the range [lo, hi] of values in bucket i. */
unsigned firn_hist_index(uint64_t v);
void firn_hist_bucket_range(unsigned i, uint64_t *lo, uint64_t *hi);

/* ---- pacer ------------------------------------------------------------------ */

struct firn_pacer {
	uint64_t start_ns;
	double interval_ns; /* 1e9 / rate; 0 = closed loop (always due) */
	uint64_t issued;
};

/* rate in operations per second; 0 means closed loop. */
void firn_pacer_init(struct firn_pacer *p, double rate, uint64_t start_ns);
/* How many operations are due at now_ns and not yet issued (capped at max). */
uint64_t firn_pacer_due(const struct firn_pacer *p, uint64_t now_ns, uint64_t max);
/* When operation number i is due. */
uint64_t firn_pacer_due_ns(const struct firn_pacer *p, uint64_t i);
/* Mark n operations issued. */
void firn_pacer_issue(struct firn_pacer *p, uint64_t n);

/* ---- random, keys, records ------------------------------------------------------- */

/* xoshiro256** state: fast, good, seedable. */
struct firn_rng {
	uint64_t s[4];
};

void firn_rng_seed(struct firn_rng *r, uint64_t seed);
uint64_t firn_rng_next(struct firn_rng *r);
/* Uniform in [0, n). */
uint64_t firn_rng_below(struct firn_rng *r, uint64_t n);

enum firn_keydist {
	FIRN_KEYS_UNIFORM,
	FIRN_KEYS_ZIPF,
};

struct firn_keygen;

/* n distinct keys "k<number>", drawn uniformly or zipf(0.99). NULL on bad args. */
struct firn_keygen *firn_keygen_create(enum firn_keydist d, uint64_t n, uint64_t seed);
void firn_keygen_destroy(struct firn_keygen *k);
/* The next key's number in [0, n). */
uint64_t firn_keygen_next(struct firn_keygen *k);
/* Write key number i as text; returns its length (< cap). */
size_t firn_key_format(uint64_t i, char *buf, size_t cap);

enum firn_datagen {
	FIRN_DATA_RANDOM, /* incompressible */
	FIRN_DATA_LOG,    /* JSON-like log lines, compressible */
};

/* Fill buf with len bytes of the given kind from rng. */
void firn_data_fill(enum firn_datagen kind, struct firn_rng *rng, uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_BENCH_H */
