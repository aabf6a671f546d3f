/*
 * metrics.c - per-shard counters, Kinesis-style write throttling, and the
 * Prometheus text behind GET /metrics.
 *
 * Counters live in a small hash table keyed by (stream id, shard). An entry
 * is created the first time a shard is written or read through the API and
 * is never freed before the server stops, so handlers keep a plain pointer
 * to it without reference counting; a deleted stream's entries simply stop
 * being reported (the catalog no longer lists them). Handlers bump counters
 * once per request and shard, never per record.
 *
 * Throttling is optional (off on an appliance, where the disk is the limit):
 * two token buckets per shard, 1 MiB/s and 1000 records/s with one second of
 * burst, exactly the per-shard write limits of Kinesis. A record that finds
 * a bucket empty fails with ProvisionedThroughputExceededException, which
 * SDKs retry with backoff.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

#define CTR_BUCKETS 1024
#define METRICS_EXTRA_MAX (64u << 10)
#define THROTTLE_BYTES_PER_S (1u << 20)
#define THROTTLE_RECORDS_PER_S 1000u

struct api_shard_ctr {
	struct api_shard_ctr *next;
	uint64_t stream_id;
	uint32_t shard;
	/*
	 * Relaxed atomics: written by handler threads, read by the /metrics
	 * renderer; each value is independent, so no ordering is needed.
	 */
	uint64_t in_records, in_bytes;
	uint64_t out_records, out_bytes;
	uint64_t throttled;
	int64_t iter_age_ms;

	pthread_mutex_t bucket_lock;
	double tok_bytes, tok_records;
	int64_t bucket_ms;
};

struct api_metrics {
	pthread_rwlock_t lock;
	struct api_shard_ctr *buckets[CTR_BUCKETS];
	/* requests[op][err]: relaxed increments, summed only when rendered */
	uint64_t requests[OP_COUNT + 1][API_E_COUNT];
};

struct api_metrics *
api_metrics_new(void)
{
	struct api_metrics *m = calloc(1, sizeof(*m));

	if (m != NULL)
		pthread_rwlock_init(&m->lock, NULL);
	return m;
}

void
api_metrics_free(struct api_metrics *m)
{
	unsigned i;

	if (m == NULL)
		return;
	for (i = 0; i < CTR_BUCKETS; i++) {
		struct api_shard_ctr *c = m->buckets[i], *n;

		for (; c != NULL; c = n) {
			n = c->next;
			pthread_mutex_destroy(&c->bucket_lock);
			free(c);
		}
	}
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static unsigned
ctr_hash(uint64_t sid, uint32_t shard)
{
	uint64_t h = sid * 0x9E3779B97F4A7C15ull ^ (uint64_t)shard * 0xC2B2AE3D27D4EB4Full;

	return (unsigned)(h >> 54) & (CTR_BUCKETS - 1);
}

static struct api_shard_ctr *
ctr_find(struct api_metrics *m, unsigned h, uint64_t sid, uint32_t shard)
{
	struct api_shard_ctr *c;

	for (c = m->buckets[h]; c != NULL; c = c->next)
		if (c->stream_id == sid && c->shard == shard)
			return c;
	return NULL;
}

struct api_shard_ctr *
api_metrics_shard(struct api_metrics *m, uint64_t sid, uint32_t shard)
{
	unsigned h = ctr_hash(sid, shard);
	struct api_shard_ctr *c;

	pthread_rwlock_rdlock(&m->lock);
	c = ctr_find(m, h, sid, shard);
	pthread_rwlock_unlock(&m->lock);
	if (c != NULL)
		return c;
	pthread_rwlock_wrlock(&m->lock);
	c = ctr_find(m, h, sid, shard);
	if (c == NULL) {
		c = calloc(1, sizeof(*c));
		if (c != NULL) {
			c->stream_id = sid;
			c->shard = shard;
			pthread_mutex_init(&c->bucket_lock, NULL);
			c->tok_bytes = THROTTLE_BYTES_PER_S;
			c->tok_records = THROTTLE_RECORDS_PER_S;
			c->bucket_ms = firn_now_ms();
			c->next = m->buckets[h];
			m->buckets[h] = c;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	return c;
}

void
api_ctr_in(struct api_shard_ctr *c, uint64_t records, uint64_t bytes)
{
	/* Relaxed: pairs with the relaxed loads in api_metrics_render(). */
	__atomic_fetch_add(&c->in_records, records, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->in_bytes, bytes, __ATOMIC_RELAXED);
}

void
api_ctr_out(struct api_shard_ctr *c, uint64_t records, uint64_t bytes, int64_t age_ms)
{
	/* Relaxed: pairs with the relaxed loads in api_metrics_render(). */
	__atomic_fetch_add(&c->out_records, records, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->out_bytes, bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&c->iter_age_ms, age_ms, __ATOMIC_RELAXED);
}

void
api_ctr_throttled(struct api_shard_ctr *c, uint64_t records)
{
	/* Relaxed: pairs with the relaxed load in api_metrics_render(). */
	__atomic_fetch_add(&c->throttled, records, __ATOMIC_RELAXED);
}

bool
api_ctr_admit(struct api_shard_ctr *c, size_t bytes, int64_t now_ms)
{
	bool ok;

	pthread_mutex_lock(&c->bucket_lock);
	if (now_ms > c->bucket_ms) {
		double dt = (double)(now_ms - c->bucket_ms) / 1000.0;

		c->tok_bytes = FIRN_MIN(c->tok_bytes + dt * THROTTLE_BYTES_PER_S,
		                        (double)THROTTLE_BYTES_PER_S);
		c->tok_records = FIRN_MIN(c->tok_records + dt * THROTTLE_RECORDS_PER_S,
		                          (double)THROTTLE_RECORDS_PER_S);
		c->bucket_ms = now_ms;
	}
	ok = c->tok_records >= 1.0 && c->tok_bytes >= (double)bytes;
	if (ok) {
		c->tok_records -= 1.0;
		c->tok_bytes -= (double)bytes;
	}
	pthread_mutex_unlock(&c->bucket_lock);
	return ok;
}

void
api_metrics_request(struct api_metrics *m, int op, enum api_err err)
{
	unsigned o = (unsigned)op < OP_COUNT ? (unsigned)op : OP_COUNT;
	unsigned e = (unsigned)err < API_E_COUNT ? (unsigned)err : API_E_INTERNAL;

	/* Relaxed: pairs with the relaxed loads in api_metrics_render(). */
	__atomic_fetch_add(&m->requests[o][e], 1, __ATOMIC_RELAXED);
}

static uint64_t
ld(const uint64_t *p)
{
	/* Relaxed: pairs with the relaxed increments above. */
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void
help(struct sbuf *b, const char *name, const char *type, const char *text)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

struct shard_row {
	const char *stream;
	uint32_t shard;
	struct api_shard_ctr *c;
	uint64_t store_bytes;
	bool has_store;
};

static void
shard_series(struct sbuf *b, const struct shard_row *rows, size_t n, const char *name,
             const char *type, const char *text, int which)
{
	size_t i;

	help(b, name, type, text);
	for (i = 0; i < n; i++) {
		const struct api_shard_ctr *c = rows[i].c;
		uint64_t v = 0;
		int64_t age;

		switch (which) {
		case 0:
			v = c ? ld(&c->in_records) : 0;
			break;
		case 1:
			v = c ? ld(&c->in_bytes) : 0;
			break;
		case 2:
			v = c ? ld(&c->out_records) : 0;
			break;
		case 3:
			v = c ? ld(&c->out_bytes) : 0;
			break;
		case 4:
			v = c ? ld(&c->throttled) : 0;
			break;
		case 5:
			age = c ? __atomic_load_n(&c->iter_age_ms, __ATOMIC_RELAXED) : 0;
			v = (uint64_t)FIRN_MAX(age, 0);
			break;
		case 6:
			if (!rows[i].has_store)
				continue;
			v = rows[i].store_bytes;
			break;
		}
		sb_printf(b, "%s{stream=\"%s\",shard=\"shardId-%012u\"} %llu\n", name,
		          rows[i].stream, rows[i].shard, (unsigned long long)v);
	}
}

char *
api_metrics_render(struct firn_api *api, size_t *len)
{
	struct api_metrics *m = api->metrics;
	struct firn_stream_info **streams = NULL;
	struct shard_row *rows = NULL;
	struct firn_store_stats st;
	size_t nrows = 0, cap = 0;
	uint32_t i, j, n = 0;
	uint64_t cum = 0, total = 0;
	double sum = 0;
	char **names = NULL;
	struct sbuf b;
	int o, e;

	sb_init(&b);
	help(&b, "firn_api_requests_total", "counter", "API requests by operation and result.");
	for (o = 0; o <= OP_COUNT; o++)
		for (e = 0; e < API_E_COUNT; e++) {
			uint64_t v = ld(&m->requests[o][e]);

			if (v == 0)
				continue;
			sb_printf(&b, "firn_api_requests_total{op=\"%s\",result=\"%s\"} %llu\n",
			          o < OP_COUNT ? api_op_name((enum api_op)o) : "other",
			          e == API_OK ? "ok" : api_err_type((enum api_err)e),
			          (unsigned long long)v);
		}
	if (firn_catalog_list(api->catalog, &names, &n) == 0 && n > 0)
		streams = calloc(n, sizeof(*streams));
	for (i = 0; streams != NULL && i < n; i++) {
		struct firn_stream_info *s;

		if (firn_catalog_get(api->catalog, names[i], &s) < 0)
			continue;
		streams[i] = s;
		for (j = 0; j < s->nshards; j++) {
			struct firn_shard_stat ss;
			struct shard_row *r;

			if (nrows == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct shard_row *nr = realloc(rows, nc * sizeof(*rows));

				if (nr == NULL)
					break;
				rows = nr;
				cap = nc;
			}
			r = &rows[nrows++];
			r->stream = s->name;
			r->shard = j;
			r->c = api_metrics_shard(m, s->id, j);
			r->has_store = firn_store_shard_stat(api->store, s->id, j, &ss) == 0;
			r->store_bytes = r->has_store ? ss.bytes : 0;
		}
	}
	shard_series(&b, rows, nrows, "firn_shard_incoming_records_total", "counter",
	             "Records written through the API.", 0);
	shard_series(&b, rows, nrows, "firn_shard_incoming_bytes_total", "counter",
	             "Data bytes written through the API.", 1);
	shard_series(&b, rows, nrows, "firn_shard_outgoing_records_total", "counter",
	             "Records returned by GetRecords.", 2);
	shard_series(&b, rows, nrows, "firn_shard_outgoing_bytes_total", "counter",
	             "Data bytes returned by GetRecords.", 3);
	shard_series(&b, rows, nrows, "firn_shard_throttled_records_total", "counter",
	             "Records refused by per-shard throttling.", 4);
	shard_series(&b, rows, nrows, "firn_shard_iterator_age_milliseconds", "gauge",
	             "MillisBehindLatest of the last GetRecords on the shard.", 5);
	shard_series(&b, rows, nrows, "firn_shard_store_bytes", "gauge",
	             "Bytes the shard's log occupies on disk.", 6);

	firn_store_stats(api->store, &st);
	{
		/* The store's counters: name, help, value. */
		const struct {
			const char *name, *text;
			uint64_t v;
		} sc[] = {
		        {"firn_store_appended_records_total", "Records appended to the store.",
		         st.appended_records},
		        {"firn_store_durable_records_total", "Records made durable.",
		         st.durable_records},
		        {"firn_store_bytes_written_total", "Bytes written to disk.",
		         st.bytes_written},
		        {"firn_store_commits_total", "Group commits.", st.commits},
		        {"firn_store_write_errors_total", "Failed writes.", st.write_errors},
		        {"firn_store_slow_commits_total",
		         "Group commits that took 50 ms or more (the device was held up).",
		         st.slow_commits},
		        {"firn_store_recovered_cut_bytes_total",
		         "Bytes of torn tails cut by recovery at start.", st.recovered_cut_bytes},
		        {"firn_store_quarantined_segments_total",
		         "Damaged sealed segments renamed *.quarantine at start.",
		         st.quarantined_segments},
		        {"firn_store_orphan_streams_removed_total",
		         "Data of streams a crash left behind in DeleteStream, removed at start.",
		         st.orphan_streams_removed},
		};

		for (i = 0; i < FIRN_ARRAY_SIZE(sc); i++) {
			help(&b, sc[i].name, "counter", sc[i].text);
			sb_printf(&b, "%s %llu\n", sc[i].name, (unsigned long long)sc[i].v);
		}
	}
	/*
	 * The store keeps log2 buckets of microseconds: bucket i holds latencies
	 * in [2^i, 2^(i+1)) us. Prometheus wants cumulative "le" buckets in
	 * seconds; the sum is estimated from bucket midpoints.
	 */
	help(&b, "firn_store_commit_latency_seconds", "histogram",
	     "Durable write (fsync-equivalent) latency of group commits.");
	for (i = 0; i < 24; i++) {
		cum += st.commit_lat_us_log2[i];
		sum += (double)st.commit_lat_us_log2[i] * 1.5 * (double)(1ull << i) / 1e6;
		sb_printf(&b, "firn_store_commit_latency_seconds_bucket{le=\"%g\"} %llu\n",
		          (double)(1ull << (i + 1)) / 1e6, (unsigned long long)cum);
	}
	total = cum;
	sb_printf(&b, "firn_store_commit_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
	          (unsigned long long)total);
	sb_printf(&b, "firn_store_commit_latency_seconds_sum %.6f\n", sum);
	sb_printf(&b, "firn_store_commit_latency_seconds_count %llu\n", (unsigned long long)total);

	if (api->conf.metrics_extra != NULL) {
		char *extra = malloc(METRICS_EXTRA_MAX);

		if (extra != NULL) {
			size_t want = api->conf.metrics_extra(api->conf.metrics_extra_arg, extra,
			                                      METRICS_EXTRA_MAX);

			sb_add(&b, extra, FIRN_MIN(want, (size_t)METRICS_EXTRA_MAX - 1));
			free(extra);
		}
	}

	for (i = 0; streams != NULL && i < n; i++)
		firn_stream_info_free(streams[i]);
	free(streams);
	free(rows);
	free(names);
	return sb_take(&b, len);
}
