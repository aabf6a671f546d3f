/*
 * hist.c - the log-linear latency histogram and the open-loop pacer.
 *
 * Bucket layout, with S = FIRN_HIST_SUB_BITS (10): values below 2^(S+1) have a
 * bucket each. Above that, a value whose highest set bit is at position e
 * (e > S) is shifted right by e-S, which leaves a mantissa m in [2^S,
 * 2^(S+1)); bucket = 2^(S+1) + (e-S-1)*2^S + (m-2^S). So every power of two
 * is split into 1024 equal parts, the relative error of a bucket is below
 * 2^-10 (0.098%: three significant digits), and all of uint64 fits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "firn_bench.h"
#include "firn_common.h"

#define SUB (1ull << FIRN_HIST_SUB_BITS)
#define EXACT (2 * SUB)

unsigned
firn_hist_index(uint64_t v)
{
	unsigned e, shift;

	if (v < EXACT)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	shift = e - FIRN_HIST_SUB_BITS;
	return (unsigned)(EXACT + (e - FIRN_HIST_SUB_BITS - 1) * SUB + ((v >> shift) - SUB));
}

void
firn_hist_bucket_range(unsigned i, uint64_t *lo, uint64_t *hi)
{
	unsigned e, shift;
	uint64_t m;

	if (i < EXACT) {
		*lo = *hi = i;
		return;
	}
	e = FIRN_HIST_SUB_BITS + 1 + (unsigned)((i - EXACT) / SUB);
	m = SUB + (i - EXACT) % SUB;
	shift = e - FIRN_HIST_SUB_BITS;
	*lo = m << shift;
	*hi = *lo + ((1ull << shift) - 1);
}

struct firn_hist *
firn_hist_create(void)
{
	struct firn_hist *h = calloc(1, sizeof(*h));

	if (h)
		firn_hist_reset(h);
	return h;
}

void
firn_hist_destroy(struct firn_hist *h)
{
	free(h);
}

void
firn_hist_reset(struct firn_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void
firn_hist_record(struct firn_hist *h, uint64_t v)
{
	h->bucket[firn_hist_index(v)]++;
	h->count++;
	h->sum += (long double)v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void
firn_hist_merge(struct firn_hist *dst, const struct firn_hist *src)
{
	unsigned i;

	if (src->count == 0)
		return;
	for (i = 0; i < FIRN_HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum += src->sum;
	dst->min = FIRN_MIN(dst->min, src->min);
	dst->max = FIRN_MAX(dst->max, src->max);
}

uint64_t
firn_hist_percentile(const struct firn_hist *h, double p)
{
	uint64_t want, seen = 0, lo, hi;
	unsigned i;

	if (h->count == 0)
		return 0;
	if (p >= 100.0)
		return h->max;
	if (p <= 0.0)
		return h->min;
	/* The smallest value v such that at least p% of samples are <= v. */
	want = (uint64_t)ceil((p / 100.0) * (double)h->count);
	if (want == 0)
		want = 1;
	for (i = 0; i < FIRN_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want) {
			firn_hist_bucket_range(i, &lo, &hi);
			return FIRN_MAX(FIRN_MIN(hi, h->max), h->min);
		}
	}
	return h->max;
}

double
firn_hist_mean(const struct firn_hist *h)
{
	return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}

void
firn_pacer_init(struct firn_pacer *p, double rate, uint64_t start_ns)
{
	p->start_ns = start_ns;
	p->interval_ns = rate > 0 ? 1e9 / rate : 0;
	p->issued = 0;
}

uint64_t
firn_pacer_due_ns(const struct firn_pacer *p, uint64_t i)
{
	return p->start_ns + (uint64_t)((double)i * p->interval_ns);
}

uint64_t
firn_pacer_due(const struct firn_pacer *p, uint64_t now_ns, uint64_t max)
{
	uint64_t total;

	if (p->interval_ns == 0)
		return max;
	if (now_ns < p->start_ns)
		return 0;
	/* Operations 0..total-1 are due by now. */
	total = (uint64_t)((double)(now_ns - p->start_ns) / p->interval_ns) + 1;
	if (total <= p->issued)
		return 0;
	return FIRN_MIN(total - p->issued, max);
}

void
firn_pacer_issue(struct firn_pacer *p, uint64_t n)
{
	p->issued += n;
}
