/*
 * nats_pub.c - the lab's NATS JetStream publisher: the same load and the
 * same report as firn-bench, against a JetStream file-store stream.
 *
 *	nats_pub --url nats://127.0.0.1:4222 --stream bench [--create]
 *	         [--records N] [--size B] [--clients C] [--max-pending P]
 *	         [--rate R] [--warmup S] [--json FILE] [--hist FILE]
 *
 * C connections (one thread each) publish --records messages of --size
 * bytes in total to subjects "<stream>.<k>" with js_PublishAsync, and the
 * latency of each message runs to its JetStream publish ack (the stream
 * stored it). Closed loop by default: at most --max-pending messages in
 * flight per connection (libnats stalls js_PublishAsync when full). With
 * --rate, open loop at R messages/s in total, and latency counted from each
 * message's *due* time (lib/bench's pacer), so a stall shows up as latency.
 *
 * The origin time travels in the first 8 bytes of the message itself: the
 * ack handler reads it back from the message libnats hands it, so no table
 * of outstanding messages is kept. Each connection's acks arrive on that
 * connection's own delivery thread, which alone writes its histogram.
 *
 * --create makes the stream (file storage, one replica, subjects
 * "<stream>.>") and removes an old one of that name first.
 *
 * Output: one line on stdout in firn-bench's words
 *	records=.. bytes=.. secs=.. rec_per_s=.. MBps=.. p50_us=.. p99_us=..
 *	p999_us=.. max_us=.. cpu_us_per_rec=..
 * and, if asked, JSON shaped like firn-bench's ("results", "latency_us")
 * and a histogram file in the same format, so tools/bench/lab.sh and
 * plot.sh treat it like any other run. Exit 0 when every message was acked.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "firn_bench.h"
#include "firn_common.h"

struct pub_conf {
	const char *url, *stream, *json_path, *hist_path;
	uint64_t records;
	uint32_t size;
	unsigned clients;
	int64_t max_pending;
	double rate, warmup, drain;
	bool create;
};

struct pub {
	const struct pub_conf *c;
	pthread_t th;
	unsigned id;
	natsConnection *nc;
	jsCtx *js;
	char subject[160];
	uint64_t quota, start_ns, warm_ns;
	struct firn_hist *hist; /* written by this connection's ack thread only */
	/* ack thread -> publisher thread and main: monotone counters */
	atomic_ullong acked, failed, last_ack_ns;
	uint64_t issued;
	int err;
	char errmsg[256];
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: nats_pub --url URL --stream S [--create] [--records N] [--size B]\n"
	           "                [--clients C] [--max-pending P] [--rate R] [--warmup S]\n"
	           "                [--drain S] [--json FILE] [--hist FILE]\n");
}

static void
on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct pub *p = closure;
	uint64_t now = firn_mono_ns(), origin = 0;
	const char *d = natsMsg_GetData(msg);

	(void)js;
	if (d != NULL && natsMsg_GetDataLength(msg) >= 8)
		memcpy(&origin, d, 8);
	if (pa != NULL && pae == NULL) {
		if (origin >= p->warm_ns)
			firn_hist_record(p->hist, now > origin ? now - origin : 0);
		/* pairs with the loads in main() after the publishers are joined */
		atomic_fetch_add_explicit(&p->acked, 1, memory_order_relaxed);
		atomic_store_explicit(&p->last_ack_ns, now, memory_order_relaxed);
	} else {
		/* pairs with the loads in main() after the publishers are joined */
		atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
	}
	natsMsg_Destroy(msg);
}

static void
fail(struct pub *p, const char *what, natsStatus s)
{
	if (p->err == 0) {
		p->err = -EIO;
		snprintf(p->errmsg, sizeof(p->errmsg), "connection %u: %s: %s (%s)", p->id, what,
		         natsStatus_GetText(s),
		         nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
	}
}

static void
sleep_until(uint64_t t)
{
	struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void *
pub_main(void *arg)
{
	struct pub *p = arg;
	const struct pub_conf *c = p->c;
	struct firn_pacer pacer;
	struct firn_rng rng;
	uint8_t *buf = malloc(FIRN_MAX(c->size, 8u));
	natsStatus s;

	if (buf == NULL) {
		p->err = -ENOMEM;
		return NULL;
	}
	firn_rng_seed(&rng, 1000 + p->id);
	firn_data_fill(FIRN_DATA_RANDOM, &rng, buf, FIRN_MAX(c->size, 8u));
	sleep_until(p->start_ns);
	firn_pacer_init(&pacer, c->rate > 0 ? c->rate / c->clients : 0, p->start_ns);
	while (p->issued < p->quota) {
		uint64_t origin = firn_mono_ns(), due;

		if (c->rate > 0) {
			due = firn_pacer_due_ns(&pacer, pacer.issued);
			if (due > origin)
				sleep_until(due);
			origin = due;
			firn_pacer_issue(&pacer, 1);
		}
		memcpy(buf, &origin, 8);
		s = js_PublishAsync(p->js, p->subject, buf, (int)c->size, NULL);
		if (s != NATS_OK) {
			fail(p, "js_PublishAsync", s);
			break;
		}
		p->issued++;
	}
	free(buf);
	return NULL;
}

static double
pct_us(const struct firn_hist *h, double q)
{
	return (double)firn_hist_percentile(h, q) / 1000.0;
}

static uint64_t
cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
	       (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
}

static int
write_json(const struct pub_conf *c, const struct firn_hist *h, uint64_t acked, uint64_t failed,
           double secs, double cpu_per)
{
	FILE *f = fopen(c->json_path, "w");

	if (f == NULL)
		return -errno;
	fprintf(f,
	        "{\n  \"config\": {\"mode\": \"nats-jetstream\", \"endpoint\": \"%s\", "
	        "\"stream\": \"%s\", \"records\": %" PRIu64 ", \"size\": %u, \"sessions\": %u, "
	        "\"max_pending\": %" PRId64 ", \"rate\": %.1f, \"loop\": \"%s\", "
	        "\"storage\": \"file\"},\n",
	        c->url, c->stream, c->records, c->size, c->clients, c->max_pending, c->rate,
	        c->rate > 0 ? "open" : "closed");
	fprintf(f,
	        "  \"results\": {\"offered\": %" PRIu64 ", \"records\": %" PRIu64
	        ", \"failed\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"secs\": %.6f, "
	        "\"rec_per_s\": %.1f, \"MBps\": %.3f, \"cpu_us_per_rec\": %.4f},\n",
	        c->records, acked, failed, acked * c->size, secs,
	        secs > 0 ? (double)acked / secs : 0.0,
	        secs > 0 ? (double)acked * c->size / 1e6 / secs : 0.0, cpu_per);
	fprintf(f,
	        "  \"latency_us\": {\"count\": %" PRIu64 ", \"min\": %.3f, \"mean\": %.3f, "
	        "\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"p9999\": %.3f, "
	        "\"max\": %.3f},\n",
	        h->count, h->count ? (double)h->min / 1000.0 : 0.0, firn_hist_mean(h) / 1000.0,
	        pct_us(h, 50), pct_us(h, 90), pct_us(h, 99), pct_us(h, 99.9), pct_us(h, 99.99),
	        h->count ? (double)h->max / 1000.0 : 0.0);
	fprintf(f, "  \"date\": %lld\n}\n", (long long)time(NULL));
	return fclose(f) == 0 ? 0 : -EIO;
}

static int
write_hist(const char *path, const struct firn_hist *h)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -errno;
	fprintf(f, "# publish-ack latency: bucket upper bound (us) and count\n");
	for (unsigned i = 0; i < FIRN_HIST_BUCKETS; i++) {
		uint64_t lo, hi;

		if (h->bucket[i] == 0)
			continue;
		firn_hist_bucket_range(i, &lo, &hi);
		fprintf(f, "%.3f %llu\n", (double)hi / 1000.0, (unsigned long long)h->bucket[i]);
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

static int
create_stream(const struct pub_conf *c)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	char subj[160];
	const char *subjects[1] = {subj};
	natsStatus s;

	snprintf(subj, sizeof(subj), "%s.>", c->stream);
	s = natsConnection_ConnectTo(&nc, c->url);
	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, nc, NULL);
	if (s == NATS_OK) {
		(void)js_DeleteStream(js, c->stream, NULL, &jerr); /* a stale one: gone */
		jsStreamConfig_Init(&sc);
		sc.Name = c->stream;
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		sc.Replicas = 1;
		s = js_AddStream(&si, js, &sc, NULL, &jerr);
	}
	if (s != NATS_OK)
		fprintf(stderr, "nats_pub: cannot create stream %s at %s: %s (%s, js error %d)\n",
		        c->stream, c->url, natsStatus_GetText(s),
		        nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "", (int)jerr);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return s == NATS_OK ? 0 : -EIO;
}

static int
parse_args(int argc, char **argv, struct pub_conf *c)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t u;
		int rc = 0;

		if (strcmp(a, "--create") == 0) {
			c->create = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (v == NULL) {
			fprintf(stderr, "nats_pub: %s needs a value\n", a);
			return -EINVAL;
		}
		i++;
		if (strcmp(a, "--url") == 0) {
			c->url = v;
		} else if (strcmp(a, "--stream") == 0) {
			c->stream = v;
		} else if (strcmp(a, "--json") == 0) {
			c->json_path = v;
		} else if (strcmp(a, "--hist") == 0) {
			c->hist_path = v;
		} else if (strcmp(a, "--records") == 0) {
			rc = firn_parse_u64(v, &c->records);
			rc = rc < 0 || c->records == 0 ? -EINVAL : 0;
		} else if (strcmp(a, "--size") == 0) {
			rc = firn_parse_u64(v, &u);
			rc = rc < 0 || u < 8 || u > (1u << 20) ? -EINVAL : 0;
			c->size = (uint32_t)u;
		} else if (strcmp(a, "--clients") == 0) {
			rc = firn_parse_u64(v, &u);
			rc = rc < 0 || u == 0 || u > 256 ? -EINVAL : 0;
			c->clients = (unsigned)u;
		} else if (strcmp(a, "--max-pending") == 0) {
			rc = firn_parse_u64(v, &u);
			rc = rc < 0 || u == 0 || u > (1u << 20) ? -EINVAL : 0;
			c->max_pending = (int64_t)u;
		} else if (strcmp(a, "--rate") == 0 || strcmp(a, "--warmup") == 0 ||
		           strcmp(a, "--drain") == 0) {
			char *end;
			double d = strtod(v, &end);

			if (end == v || *end != '\0' || !(d >= 0) || d > 1e9)
				rc = -EINVAL;
			else if (a[2] == 'r')
				c->rate = d;
			else if (a[2] == 'w')
				c->warmup = d;
			else
				c->drain = d;
		} else {
			rc = -EINVAL;
		}
		if (rc < 0) {
			fprintf(stderr, "nats_pub: bad %s '%s'\n", a, v);
			usage(stderr);
			return -EINVAL;
		}
	}
	if (c->url == NULL || c->stream == NULL) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct pub_conf c = {
	        .records = 100000,
	        .size = 100,
	        .clients = 1,
	        .max_pending = 4096,
	        .drain = 30,
	};
	struct firn_hist *all = firn_hist_create();
	uint64_t start, acked = 0, failed = 0, issued = 0, end = 0, cpu0;
	struct pub *p;
	double secs;
	int rc = 0;

	if (all == NULL || parse_args(argc, argv, &c) < 0)
		return 2;
	if (c.create && create_stream(&c) < 0)
		return 1;
	p = calloc(c.clients, sizeof(*p));
	if (p == NULL)
		return 1;
	for (unsigned i = 0; i < c.clients; i++) {
		jsOptions jo;
		natsStatus s;

		p[i].c = &c;
		p[i].id = i;
		p[i].quota = c.records / c.clients + (i < c.records % c.clients ? 1 : 0);
		p[i].hist = firn_hist_create();
		snprintf(p[i].subject, sizeof(p[i].subject), "%s.%u", c.stream, i);
		jsOptions_Init(&jo);
		jo.PublishAsync.MaxPending = c.max_pending;
		jo.PublishAsync.AckHandler = on_ack;
		jo.PublishAsync.AckHandlerClosure = &p[i];
		jo.PublishAsync.StallWait = 60000; /* a full window waits, it never fails */
		s = natsConnection_ConnectTo(&p[i].nc, c.url);
		if (s == NATS_OK)
			s = natsConnection_JetStream(&p[i].js, p[i].nc, &jo);
		if (s != NATS_OK || p[i].hist == NULL) {
			fprintf(stderr, "nats_pub: connect %s: %s (%s)\n", c.url,
			        natsStatus_GetText(s),
			        nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
			return 1;
		}
	}
	cpu0 = cpu_us();
	start = firn_mono_ns() + 100000000ull;
	for (unsigned i = 0; i < c.clients; i++) {
		p[i].start_ns = start;
		p[i].warm_ns = start + (uint64_t)(c.warmup * 1e9);
		if (pthread_create(&p[i].th, NULL, pub_main, &p[i]) != 0)
			return 1;
	}
	for (unsigned i = 0; i < c.clients; i++) {
		jsPubOptions po;

		pthread_join(p[i].th, NULL);
		jsPubOptions_Init(&po);
		po.MaxWait = (int64_t)(c.drain * 1000);
		if (js_PublishAsyncComplete(p[i].js, &po) != NATS_OK && p[i].err == 0) {
			p[i].err = -ETIMEDOUT;
			snprintf(p[i].errmsg, sizeof(p[i].errmsg),
			         "connection %u: acks missing after %.0f s", i, c.drain);
		}
	}
	/*
	 * Close everything and wait for libnats' threads to finish, so no ack
	 * handler can still be touching a histogram when it is merged.
	 */
	for (unsigned i = 0; i < c.clients; i++) {
		jsCtx_Destroy(p[i].js);
		natsConnection_Destroy(p[i].nc);
	}
	nats_CloseAndWait(5000);
	cpu0 = cpu_us() - cpu0;
	for (unsigned i = 0; i < c.clients; i++) {
		/* pairs with on_ack's stores; libnats' threads are gone by now */
		acked += atomic_load_explicit(&p[i].acked, memory_order_relaxed);
		failed += atomic_load_explicit(&p[i].failed, memory_order_relaxed);
		end = FIRN_MAX(end, (uint64_t)atomic_load_explicit(&p[i].last_ack_ns,
		                                                   memory_order_relaxed));
		issued += p[i].issued;
		if (p[i].err != 0) {
			fprintf(stderr, "nats_pub: %s\n", p[i].errmsg);
			rc = 1;
		}
		firn_hist_merge(all, p[i].hist);
		firn_hist_destroy(p[i].hist);
	}
	secs = end > start ? (double)(end - start) / 1e9 : 0;
	printf("records=%" PRIu64 " bytes=%" PRIu64 " secs=%.3f rec_per_s=%.0f MBps=%.2f "
	       "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f cpu_us_per_rec=%.3f\n",
	       acked, acked * c.size, secs, secs > 0 ? (double)acked / secs : 0.0,
	       secs > 0 ? (double)acked * c.size / 1e6 / secs : 0.0, pct_us(all, 50),
	       pct_us(all, 99), pct_us(all, 99.9), all->count ? (double)all->max / 1000.0 : 0.0,
	       acked ? (double)cpu0 / (double)acked : 0.0);
	if (acked < issued || issued < c.records) {
		fprintf(stderr, "nats_pub: %" PRIu64 " of %" PRIu64 " messages not acked\n",
		        c.records - acked, c.records);
		rc = 1;
	}
	if (c.json_path != NULL && write_json(&c, all, acked, failed, secs,
	                                      acked ? (double)cpu0 / (double)acked : 0) < 0) {
		fprintf(stderr, "nats_pub: cannot write %s\n", c.json_path);
		rc = 1;
	}
	if (c.hist_path != NULL && write_hist(c.hist_path, all) < 0) {
		fprintf(stderr, "nats_pub: cannot write %s\n", c.hist_path);
		rc = 1;
	}
	firn_hist_destroy(all);
	free(p);
	return rc;
}
