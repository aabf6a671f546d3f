/*
 * bench.h - shared by firn-bench's files: the run's configuration, a
 * worker's state, and the two load engines (UDP through lib/client, HTTP
 * PutRecords through lib/api's client).
 *
 * Each worker is one thread with its own histogram, key generator, random
 * data pool and counters; main.c merges them at the end. The only thing
 * workers share is the ack log (a stdio FILE, whose lock keeps lines whole)
 * and a few atomics for the progress line.
 */
#ifndef FIRN_BENCH_APP_H
#define FIRN_BENCH_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "firn_bench.h"
#include "firn_common.h"

enum bench_mode {
	MODE_UDP,
	MODE_HTTP,
};

struct bench_conf {
	enum bench_mode mode;
	const char *endpoint;
	const char *stream;
	const char *access_key, *secret_key, *region;
	uint64_t records;  /* total to offer */
	uint32_t size;     /* data bytes per record (the largest, with a range) */
	uint32_t size_min; /* --size MIN-MAX: uniform in [size_min, size] */
	unsigned sessions; /* UDP sessions, or HTTP connections */
	unsigned threads;  /* UDP: worker threads (sessions spread over them) */
	double rate;       /* records/s in total; 0: closed loop */
	enum firn_keydist keydist;
	uint64_t keys; /* distinct keys */
	enum firn_datagen data;
	unsigned mtu;
	uint32_t window;    /* closed loop: records outstanding per session */
	uint32_t batch;     /* HTTP: records per PutRecords (<= 500) */
	uint32_t linger_us; /* UDP: hold a part-filled datagram this long (lib/client) */
	double duration;    /* seconds of offering; 0: until records are offered */
	double warmup;      /* seconds whose latencies are not recorded */
	double drain;       /* seconds to wait for the last acks */
	uint64_t seed;
	bool progress;
	const char *ack_log_path, *json_path, *hist_path;
	FILE *ack_log;
	/* --ramp R1:R2:STEPS: open-loop steps from R1 to R2 records/s (main.c) */
	double ramp_from, ramp_to;
	unsigned ramp_steps;
	double p99_bound_us; /* the knee: highest step whose p99 stays under this */
};

struct worker {
	unsigned id;
	const struct bench_conf *b;
	pthread_t th;
	unsigned first_session, n_sessions;
	struct firn_hist *hist;
	struct firn_keygen *keys;
	struct firn_rng rng;
	uint8_t *pool; /* random data records are cut from */
	size_t pool_len;
	uint64_t quota;    /* records this worker offers */
	uint64_t start_ns; /* common start */
	uint64_t warm_ns;  /* latencies of records due before this are not recorded */
	uint64_t stop_ns;  /* offering stops here (duration), 0: none */
	/* results */
	uint64_t issued, acked, failed, bytes, last_ack_ns;
	uint64_t cpu_us; /* this thread's user + system CPU from the start to the end */
	uint64_t retransmits, lost, reconnects, http_calls, http_retries;
	int err; /* fatal: -errno */
	char errmsg[512];
	char first_fail[256];
	atomic_ullong progress_acked;  /* read by the progress line */
	atomic_ullong progress_issued; /* read by the progress line */
	/*
	 * The progress line's view of the latencies: every 250 ms the worker
	 * copies its histogram here under snap_lock (bench_progress_tick), and
	 * the progress line merges the copies under the same lock.
	 */
	pthread_mutex_t snap_lock;
	struct firn_hist *snap;
	uint64_t next_snap_ns;
};

/* Shared helpers (main.c). */
uint32_t bench_crc32c(const void *data, size_t len);
/* Next key into buf (NUL-terminated); returns its length. */
size_t bench_key(struct worker *w, char *buf, size_t cap);
/* The next record's data length: --size, or uniform over its MIN-MAX range. */
uint32_t bench_size(struct worker *w);
/* Data for the next record: at least conf.size bytes inside the worker's pool. */
const uint8_t *bench_data(struct worker *w);
/* Record one latency (ns since the record's origin) if past warm-up. */
void bench_latency(struct worker *w, uint64_t origin_ns, uint64_t now_ns);
void bench_fail(struct worker *w, const char *fmt, ...) FIRN_PRINTF(2, 3);
/* Publish progress (issued count, a histogram copy) at most every 250 ms. */
void bench_progress_tick(struct worker *w, uint64_t now_ns);
/* Sleep until the common start; returns this thread's CPU time then (us). */
uint64_t bench_wait_start(const struct worker *w);
/* This thread's CPU time (us). */
uint64_t bench_thread_cpu_us(void);

/* udp.c / http.c: a worker's thread body. */
void *bench_udp_worker(void *arg);
void *bench_http_worker(void *arg);
/* Is the HTTP engine available in this build? */
bool bench_http_available(void);

extern atomic_bool bench_stop; /* SIGINT: stop offering, drain */

#endif /* FIRN_BENCH_APP_H */
