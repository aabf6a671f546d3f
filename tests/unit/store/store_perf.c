/*
 * store_perf.c - how fast the store makes records durable, against the raw
 * kernels and devices it is made of. Not a test: nothing is asserted;
 * tools/bench/store.sh runs it next to fio and prints the ratios.
 *
 *	store_perf raw DIR [-s SECONDS] [-w WRITERS] [-W WINDOW_KIB] [-z]
 *		       [-P SPARES] [-T SETTLE_S]
 *		64 shards, 1 KiB incompressible records (encryption on;
 *		compression off, or on with -z, when the store finds it does
 *		not shrink and skips it), closed loop: every shard keeps up to
 *		WINDOW_KIB (256) appended but not yet durable. Prints MB/s of
 *		record data made durable, records/s, and the cores the writer
 *		threads and this program's appender used. -P: first lay out
 *		that many spare segments (conf.spare_segments), wait for them
 *		and SETTLE_S (3) seconds more, then measure.
 *	store_perf log DIR [-s SECONDS]
 *		JSON-like log records (~300 B), compression on, one writer,
 *		8 shards, 1 MiB windows. MB/s of record data (uncompressed), and
 *		the same per core the writer thread used.
 *	store_perf deflate [-s SECONDS]
 *		ISA-L deflate level 1 (stateless, 1 MiB blocks, as the store's
 *		codec runs it) over the same generated log records, one core;
 *		MB/s by the clock and per CPU second of the thread.
 *	store_perf lat DIR -r RECORDS_PER_S [-s SECONDS] [-w WRITERS] [-z] [-P SPARES]
 *		The raw workload open-loop at a fixed rate; ack latency
 *		(append call to on_durable) p50/p99/p999 in microseconds.
 *	store_perf prealloc DIR
 *		The measurement behind the store's preallocation: 4 KiB and
 *		128 KiB O_DIRECT+RWF_DSYNC writes at queue depth 1 into (a) a
 *		fallocate()d range, (b) FALLOC_FL_ZERO_RANGE, (c) written zeroes.
 *
 * Every load run also prints (stderr) where the cores went over the
 * measured window, per thread kind, and how long those threads were
 * runnable but waiting for a core: on a machine shared with other jobs
 * that second figure is what the neighbours took.
 *
 * Output: one line of key=value pairs per run.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <isa-l/igzip_lib.h>
#include <linux/falloc.h>

#include "firn_disk_uring.h"
#include "firn_store.h"
#include "store_testutil.h"

#define MAX_SHARDS 64
#define RING 4096 /* in-flight batches per shard (power of two) */
#define HBUCKETS 4096

static double seconds = 5.0;
static unsigned writers = 1;
static double rate;
static int64_t prealloc_kib = -1; /* -1: the store's default */
static uint64_t flush_us = 200;
static uint64_t segment_mib;
static uint64_t spares;
static uint64_t window_kib = 256;
static bool raw_compress;
static unsigned settle_s = 3;

/* ---- latency histogram: log-linear, 1 us .. ~1 s -------------------------------------- */

static uint64_t hist[HBUCKETS];

static unsigned
hbucket(uint64_t us)
{
	unsigned e = 0;

	if (us < 64)
		return (unsigned)us;
	while ((us >> e) >= 64)
		e++;
	return FIRN_MIN(64u * e + (unsigned)(us >> e), HBUCKETS - 1u);
}

static uint64_t
hvalue(unsigned b)
{
	unsigned e = b / 64;

	if (b < 64)
		return b;
	return (uint64_t)(b - 64 * e + 0) << e;
}

static uint64_t
hpercentile(double p)
{
	uint64_t total = 0, acc = 0;
	unsigned b;

	for (b = 0; b < HBUCKETS; b++)
		total += hist[b];
	for (b = 0; b < HBUCKETS; b++) {
		acc += hist[b];
		if (total > 0 && (double)acc >= p * (double)total)
			return hvalue(b);
	}
	return 0;
}

/* ---- per-shard in-flight batches (appender -> on_durable) ------------------------------ */

struct shard_q {
	uint64_t end[RING];   /* counter after the batch */
	uint64_t t[RING];     /* append time */
	uint32_t bytes[RING]; /* record data bytes in the batch */
	uint32_t head;        /* atomic: consumer (writer thread) */
	uint32_t tail;        /* atomic: producer (appender) */
	uint64_t durable;     /* atomic: durable_next seen by on_durable */
	uint64_t next;        /* appender only */
} FIRN_CACHE_ALIGNED;

static struct shard_q q[MAX_SHARDS];
static uint64_t durable_bytes, durable_recs; /* atomic */
static int measuring;                        /* atomic */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static unsigned sleepers;

static void
on_durable(void *arg, uint64_t sid, uint32_t shard, uint64_t next, int status)
{
	struct shard_q *s = &q[shard];
	uint64_t now = firn_mono_ns(), prev;
	uint32_t h;

	(void)arg;
	(void)sid;
	if (status < 0 || shard >= MAX_SHARDS)
		return;
	/* Pairs with the acquire load in the appender's window check. */
	prev = __atomic_exchange_n(&s->durable, next, __ATOMIC_RELEASE);
	/* Pairs with the release store of tail in push(). */
	h = s->head;
	while (h != __atomic_load_n(&s->tail, __ATOMIC_ACQUIRE) && s->end[h % RING] <= next) {
		if (__atomic_load_n(&measuring, __ATOMIC_RELAXED)) {
			hist[hbucket((now - s->t[h % RING]) / 1000)]++;
			/* Statistics: relaxed (one writer thread per shard). */
			__atomic_add_fetch(&durable_bytes, s->bytes[h % RING], __ATOMIC_RELAXED);
		}
		h++;
	}
	/* Pairs with the acquire load in push(). */
	__atomic_store_n(&s->head, h, __ATOMIC_RELEASE);
	if (__atomic_load_n(&measuring, __ATOMIC_RELAXED) && next > prev)
		/* Statistics: relaxed. */
		__atomic_add_fetch(&durable_recs, next - prev, __ATOMIC_RELAXED);
	pthread_mutex_lock(&wake_lock);
	if (sleepers)
		pthread_cond_signal(&wake);
	pthread_mutex_unlock(&wake_lock);
}

static bool
push(struct shard_q *s, uint64_t end, uint64_t t, uint32_t bytes)
{
	uint32_t tl = s->tail;

	/* Pairs with the release store of head in on_durable(). */
	if (tl - __atomic_load_n(&s->head, __ATOMIC_ACQUIRE) >= RING)
		return false;
	s->end[tl % RING] = end;
	s->t[tl % RING] = t;
	s->bytes[tl % RING] = bytes;
	/* Pairs with the acquire load in on_durable(). */
	__atomic_store_n(&s->tail, tl + 1, __ATOMIC_RELEASE);
	return true;
}

/* ---- CPU time per thread kind, from /proc/self/task/<tid>/schedstat ---------------------- */

/*
 * Where the cores went during the measured window: the writer threads
 * (firn-wr*), this program's appender (the main thread), io_uring workers
 * (iou-wrk*: fdatasyncs, and writes the kernel could not issue inline),
 * the roller, and the rest. schedstat's first field is the thread's time
 * on a CPU in nanoseconds; a thread that exited during the window is lost
 * (io_uring workers come and go), so the figure for those is a floor.
 */
enum cpu_kind { CPU_WRITER, CPU_MAIN, CPU_IOWQ, CPU_ROLL, CPU_OTHER, CPU_KINDS };
static const char *const cpu_kind_name[CPU_KINDS] = {"writer", "appender", "iou_wrk", "roll",
                                                     "other"};

#define CPU_TIDS 256
struct cpu_snap {
	int tid[CPU_TIDS];
	uint64_t ns[CPU_TIDS];
	uint64_t wait_ns[CPU_TIDS]; /* runnable but waiting for a CPU */
	uint8_t kind[CPU_TIDS];
	unsigned n;
};

static void
cpu_snap(struct cpu_snap *cs)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	pid_t self = (pid_t)syscall(SYS_gettid);

	cs->n = 0;
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL && cs->n < CPU_TIDS) {
		char path[300], comm[64] = "", buf[128];
		uint64_t tid, ns = 0, wait = 0;
		FILE *f;

		if (firn_parse_u64(de->d_name, &tid) < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", de->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL) {
			char *sp = strchr(buf, ' '), *sp2;

			if (sp != NULL) {
				*sp = '\0';
				sp2 = strchr(sp + 1, ' ');
				if (sp2 != NULL)
					*sp2 = '\0';
				(void)firn_parse_u64(sp + 1, &wait);
			}
			(void)firn_parse_u64(buf, &ns);
		}
		fclose(f);
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		f = fopen(path, "r");
		if (f != NULL) {
			if (fgets(comm, sizeof(comm), f) == NULL)
				comm[0] = '\0';
			fclose(f);
		}
		cs->tid[cs->n] = (int)tid;
		cs->ns[cs->n] = ns;
		cs->wait_ns[cs->n] = wait;
		if ((pid_t)tid == self)
			cs->kind[cs->n] = CPU_MAIN;
		else if (strncmp(comm, "firn-wr", 7) == 0)
			cs->kind[cs->n] = CPU_WRITER;
		else if (strncmp(comm, "iou-wrk", 7) == 0)
			cs->kind[cs->n] = CPU_IOWQ;
		else if (strncmp(comm, "firn-roll", 9) == 0)
			cs->kind[cs->n] = CPU_ROLL;
		else
			cs->kind[cs->n] = CPU_OTHER;
		cs->n++;
	}
	closedir(d);
}

/*
 * CPU seconds per kind between two snapshots (threads new since count from
 * 0), and seconds they were runnable but waited for a CPU (what a machine
 * shared with other jobs takes away).
 */
static void
cpu_diff(const struct cpu_snap *a, const struct cpu_snap *b, double out[CPU_KINDS],
         double wait[CPU_KINDS])
{
	unsigned i, j;

	memset(out, 0, sizeof(double) * CPU_KINDS);
	memset(wait, 0, sizeof(double) * CPU_KINDS);
	for (i = 0; i < b->n; i++) {
		uint64_t base = 0, wbase = 0;

		for (j = 0; j < a->n; j++)
			if (a->tid[j] == b->tid[i]) {
				base = a->ns[j];
				wbase = a->wait_ns[j];
			}
		out[b->kind[i]] += (double)(b->ns[i] - base) / 1e9;
		wait[b->kind[i]] += (double)(b->wait_ns[i] - wbase) / 1e9;
	}
}

static struct cpu_snap cpu_at_start;
static double cpu_used[CPU_KINDS], cpu_waited[CPU_KINDS], cpu_window_s;

/* ---- record generators ------------------------------------------------------------------ */

static uint8_t *random_data;
#define RANDOM_BYTES (8u << 20)

static void
make_random(void)
{
	uint64_t x = 0x1234567;
	size_t i;

	random_data = malloc(RANDOM_BYTES);
	for (i = 0; i < RANDOM_BYTES; i += 8) {
		x = tu_mix(x + i);
		memcpy(random_data + i, &x, 8);
	}
}

/* JSON-like log lines: what a web tier ships. Deterministic. */
static size_t
make_log_line(char *out, size_t cap, uint64_t i)
{
	static const char *levels[] = {"INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"};
	static const char *paths[] = {"/api/v1/items",  "/api/v1/users",  "/login",
	                              "/static/app.js", "/api/v1/orders", "/healthz"};
	static const char *agents[] = {"Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1",
	                               "okhttp/4.9.3", "python-requests/2.31"};
	uint64_t r = tu_mix(i * 0x9e3779b97f4a7c15ull);
	int n;

	n = snprintf(out, cap,
	             "{\"ts\":\"2024-05-%02u T%02u:%02u:%02u.%03uZ\",\"level\":\"%s\",\"host\":"
	             "\"web-%02u.eu-west-1\",\"service\":\"checkout\",\"trace_id\":\"%016" PRIx64
	             "\",\"method\":\"%s\",\"path\":\"%s/%u\",\"status\":%u,\"latency_ms\":%u,"
	             "\"bytes\":%u,\"user_agent\":\"%s\",\"user\":\"u%05u\",\"msg\":\"request "
	             "completed\"}",
	             (unsigned)(1 + r % 28), (unsigned)(r >> 8) % 24, (unsigned)(r >> 16) % 60,
	             (unsigned)(r >> 24) % 60, (unsigned)(r >> 32) % 1000, levels[(r >> 40) % 6],
	             (unsigned)(r >> 44) % 32, tu_mix(r), (r >> 50) % 5 ? "GET" : "POST",
	             paths[(r >> 52) % 6], (unsigned)(r >> 20) % 100000,
	             (r >> 56) % 20 ? 200u : 500u, (unsigned)(r >> 12) % 900,
	             (unsigned)(r >> 28) % 50000, agents[(r >> 60) % 4],
	             (unsigned)(r >> 36) % 100000);
	return n < 0 ? 0 : FIRN_MIN((size_t)n, cap - 1);
}

static char *log_data;
static uint32_t *log_off, *log_len;
static uint32_t log_n;

static void
make_logs(uint32_t n)
{
	size_t used = 0, cap = (size_t)n * 512;
	uint32_t i;

	log_data = malloc(cap);
	log_off = malloc(n * sizeof(*log_off));
	log_len = malloc(n * sizeof(*log_len));
	for (i = 0; i < n; i++) {
		size_t l = make_log_line(log_data + used, cap - used, i);

		log_off[i] = (uint32_t)used;
		log_len[i] = (uint32_t)l;
		used += l;
	}
	log_n = n;
}

/* ---- the closed and open loops ------------------------------------------------------ */

struct load {
	unsigned shards;
	unsigned batch;  /* records per append */
	bool logs;       /* JSON lines, else 1 KiB random */
	uint64_t window; /* bytes appended and not durable per shard (closed loop) */
	double rate;     /* records/s (open loop), 0 = closed */
};

static void
conf_for(struct firn_store_conf *c, const char *dir, bool compress, unsigned nw)
{
	firn_store_conf_defaults(c);
	c->dir = dir;
	c->kek = tu_kek();
	c->disk = &firn_disk_uring_ops;
	c->threaded = true;
	c->writers = nw;
	c->compress = compress;
	c->on_durable = on_durable;
	c->flush_interval_us = (uint32_t)flush_us;
	if (prealloc_kib >= 0)
		c->prealloc = (uint64_t)prealloc_kib << 10;
	if (segment_mib > 0)
		c->segment_size = segment_mib << 20;
	c->spare_segments = (unsigned)spares;
}

static int
run_load(const char *dir, const struct load *ld, bool compress, unsigned nw, double *mbps,
         double *rps)
{
	struct firn_store_conf conf;
	struct firn_store *st;
	struct firn_record recs[64];
	uint64_t t_start = 0, t_end, t0, ops = 0, li = 0, bytes0;
	uint64_t warm_ns = 1000000000ull, run_ns = (uint64_t)(seconds * 1e9);
	double per_rec = ld->logs ? 300.0 : 1024.0;
	unsigned s, i, rr = 0;

	memset(q, 0, sizeof(q));
	memset(hist, 0, sizeof(hist));
	durable_bytes = durable_recs = 0;
	measuring = 0;
	firn_rm_rf(dir);
	conf_for(&conf, dir, compress, nw);
	st = firn_store_open(&conf);
	if (st == NULL) {
		fprintf(stderr, "store_perf: open %s: %s\n", dir, firn_err_msg());
		return -1;
	}
	if (spares > 0) {
		struct firn_store_stats sst;
		uint64_t w0 = firn_mono_ns();

		do {
			usleep(20000);
			firn_store_stats(st, &sst);
		} while (sst.spare_segments < spares && firn_mono_ns() - w0 < 120000000000ull);
		fprintf(stderr, "  %" PRIu64 " spare segments laid out in %.1f s\n",
		        sst.spare_segments, (double)(firn_mono_ns() - w0) / 1e9);
		/*
		 * Let the disk settle after writing that much, as fio's measured
		 * runs come well after it laid out its file.
		 */
		sleep(settle_s);
	}
	t0 = firn_mono_ns();
	t_end = t0 + warm_ns + run_ns;
	for (;;) {
		uint64_t now = firn_mono_ns();
		bool did = false;

		if (now >= t_end)
			break;
		if (t_start == 0 && now >= t0 + warm_ns) {
			cpu_snap(&cpu_at_start);
			t_start = now;
			/* Statistics: relaxed. */
			__atomic_store_n(&measuring, 1, __ATOMIC_RELAXED);
		}
		for (i = 0; i < ld->shards; i++) {
			struct shard_q *sq;
			uint64_t first, bytes = 0, due;
			unsigned k;
			int rc;

			s = rr++ % ld->shards;
			sq = &q[s];
			if (ld->rate > 0) {
				/* Open loop: the batches the clock says are due by now. */
				due = (uint64_t)((double)(now - t0) / 1e9 * ld->rate / ld->batch);
				if (ops >= due)
					break;
			} else if ((sq->next - __atomic_load_n(&sq->durable, __ATOMIC_ACQUIRE)) *
			                   (uint64_t)per_rec >=
			           ld->window) {
				/* Pairs with the release exchange in on_durable(). */
				continue;
			}
			for (k = 0; k < ld->batch; k++) {
				memset(&recs[k], 0, sizeof(recs[k]));
				if (ld->logs) {
					uint32_t j = (uint32_t)(li++ % log_n);

					recs[k].data = (const uint8_t *)log_data + log_off[j];
					recs[k].data_len = log_len[j];
				} else {
					recs[k].data =
					        random_data + (li++ * 1024) % (RANDOM_BYTES - 1024);
					recs[k].data_len = 1024;
				}
				bytes += recs[k].data_len;
			}
			rc = firn_store_append(st, 1, s, recs, ld->batch, &first, NULL);
			if (rc == -EAGAIN)
				continue;
			if (rc < 0) {
				fprintf(stderr, "store_perf: append: %d\n", rc);
				firn_store_close(st);
				return -1;
			}
			sq->next = first + ld->batch;
			while (!push(sq, sq->next, firn_mono_ns(), (uint32_t)bytes))
				usleep(10);
			ops++;
			did = true;
		}
		if (!did) {
			if (ld->rate > 0) {
				usleep(50);
				continue;
			}
			/* Every window is full: wait for an ack. */
			pthread_mutex_lock(&wake_lock);
			sleepers++;
			{
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += 200000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&wake, &wake_lock, &ts);
			}
			sleepers--;
			pthread_mutex_unlock(&wake_lock);
		}
	}
	/* Relaxed: statistics. */
	__atomic_store_n(&measuring, 0, __ATOMIC_RELAXED);
	bytes0 = __atomic_load_n(&durable_bytes, __ATOMIC_RELAXED);
	{
		double el = (double)(firn_mono_ns() - t_start) / 1e9;
		struct cpu_snap end;
		int k;

		cpu_snap(&end);
		cpu_diff(&cpu_at_start, &end, cpu_used, cpu_waited);
		cpu_window_s = el;
		fprintf(stderr, "  cores busy over %.1f s:", el);
		for (k = 0; k < CPU_KINDS; k++)
			fprintf(stderr, " %s %.2f", cpu_kind_name[k], cpu_used[k] / el);
		fprintf(stderr, "\n  waiting for a core (runnable, not running):");
		for (k = 0; k < CPU_KINDS; k++)
			fprintf(stderr, " %s %.2f", cpu_kind_name[k], cpu_waited[k] / el);
		fprintf(stderr, "\n");

		*mbps = (double)bytes0 / el / 1e6;
		*rps = (double)__atomic_load_n(&durable_recs, __ATOMIC_RELAXED) / el;
	}
	{
		struct firn_store_stats stats;

		firn_store_stats(st, &stats);
		{
			uint64_t n = 0, acc = 0, p50 = 0, p99 = 0;
			unsigned b;

			for (b = 0; b < 24; b++)
				n += stats.commit_lat_us_log2[b];
			for (b = 0; b < 24; b++) {
				acc += stats.commit_lat_us_log2[b];
				if (!p50 && acc * 2 >= n)
					p50 = 1ull << b;
				if (!p99 && acc * 100 >= n * 99)
					p99 = 1ull << b;
			}
			fprintf(stderr,
			        "  commit latency p50 %" PRIu64 "-%" PRIu64 " us, p99 %" PRIu64
			        "-%" PRIu64 " us\n",
			        p50, p50 * 2, p99, p99 * 2);
		}
		fprintf(stderr,
		        "  [%s] commits %" PRIu64 " blocks %" PRIu64 " (%.1f blocks/commit), "
		        "%.1f KiB/block on disk, write errors %" PRIu64 "\n",
		        ld->logs ? "log" : "raw", stats.commits, stats.blocks_written,
		        stats.commits ? (double)stats.blocks_written / (double)stats.commits : 0,
		        stats.blocks_written
		                ? (double)stats.bytes_written / (double)stats.blocks_written / 1024
		                : 0,
		        stats.write_errors);
	}
	firn_store_close(st);
	firn_rm_rf(dir);
	return 0;
}

/* ---- deflate kernel -------------------------------------------------------------------- */

static double deflate_cpu_s;
static size_t deflate_bytes;

static double
deflate_mbps(void)
{
	struct timespec c0, c1;
	size_t blk = 1u << 20, total = 0, used, i;
	uint8_t *in = malloc(blk), *out = malloc(blk * 2), *lvl = malloc(ISAL_DEF_LVL1_DEFAULT);
	struct isal_zstream zs;
	uint64_t t0, t1;
	uint32_t j = 0;
	size_t zsum = 0;

	/* One block of packed log records (the records alone; headers are tiny). */
	for (used = 0; used + 600 < blk; j++) {
		memcpy(in + used, log_data + log_off[j % log_n], log_len[j % log_n]);
		used += log_len[j % log_n];
	}

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	t0 = firn_mono_ns();
	for (i = 0;; i++) {
		isal_deflate_stateless_init(&zs);
		zs.level = 1;
		zs.level_buf = lvl;
		zs.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
		zs.gzip_flag = IGZIP_DEFLATE;
		zs.end_of_stream = 1;
		zs.next_in = in;
		zs.avail_in = (uint32_t)used;
		zs.next_out = out;
		zs.avail_out = (uint32_t)(blk * 2);
		if (isal_deflate_stateless(&zs) != COMP_OK)
			return 0;
		total += used;
		zsum += zs.total_out;
		t1 = firn_mono_ns();
		if (t1 - t0 >= (uint64_t)(seconds * 1e9))
			break;
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	deflate_cpu_s = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
	deflate_bytes = total;
	fprintf(stderr, "  [deflate] level 1 ratio %.2f\n", (double)total / (double)zsum);
	free(in);
	free(out);
	free(lvl);
	return (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* ---- the preallocation measurement ---------------------------------------------------- */

static double
dsync_lat_us(int fd, size_t bs, unsigned n)
{
	void *buf = firn_disk_alloc(bs);
	uint64_t t0 = firn_mono_ns();
	unsigned i;

	memset(buf, 0x77, bs);
	for (i = 0; i < n; i++) {
		struct iovec iov = {.iov_base = buf, .iov_len = bs};

		if (pwritev2(fd, &iov, 1, (off_t)(i * bs), RWF_DSYNC) != (ssize_t)bs) {
			perror("pwritev2");
			break;
		}
	}
	free(buf);
	return (double)(firn_mono_ns() - t0) / 1e3 / n;
}

static int
dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of 7 interleaved rounds per mode: this machine's disk is shared and noisy. */
static int
prealloc_measure(const char *dir)
{
	static const size_t sizes[] = {4096, 128u << 10};
	char path[4200];
	unsigned si, round;

	firn_mkdir_p(dir, 0755);
	snprintf(path, sizeof(path), "%s/prealloc.dat", dir);
	for (si = 0; si < 2; si++) {
		size_t bs = sizes[si];
		unsigned n = bs == 4096 ? 500 : 200;
		uint64_t len = (uint64_t)bs * n;
		double lat[3][7];
		int mode;

		for (round = 0; round < 7; round++)
			for (mode = 0; mode < 3; mode++) {
				int fd;

				unlink(path);
				fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
				if (fd < 0)
					return -1;
				if (mode == 0)
					fallocate(fd, 0, 0, (off_t)len);
				else if (mode == 1 && fallocate(fd, 0, 0, (off_t)len) == 0)
					fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, (off_t)len);
				else if (mode == 2)
					firn_disk_prealloc(fd, 0, len);
				fsync(fd);
				lat[mode][round] = dsync_lat_us(fd, bs, n);
				close(fd);
			}
		for (mode = 0; mode < 3; mode++)
			qsort(lat[mode], 7, sizeof(double), dcmp);
		printf("bs=%zu fallocate_us=%.0f zero_range_us=%.0f written_zeroes_us=%.0f "
		       "(medians of 7, O_DIRECT+RWF_DSYNC, qd 1)\n",
		       bs, lat[0][3], lat[1][3], lat[2][3]);
	}
	unlink(path);
	return 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static int
parse_opts(int argc, char **argv, int from)
{
	int i;

	for (i = from; i < argc; i++) {
		uint64_t v;

		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &v) < 0 || v == 0)
				return -1;
			seconds = (double)v;
		} else if (strcmp(argv[i], "-w") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &v) < 0 || v == 0 || v > 16)
				return -1;
			writers = (unsigned)v;
		} else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &v) < 0)
				return -1;
			prealloc_kib = (int64_t)v;
		} else if (strcmp(argv[i], "-S") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &segment_mib) < 0)
				return -1;
		} else if (strcmp(argv[i], "-T") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &v) < 0 || v > 60)
				return -1;
			settle_s = (unsigned)v;
		} else if (strcmp(argv[i], "-z") == 0) {
			raw_compress = true;
		} else if (strcmp(argv[i], "-W") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &window_kib) < 0 || window_kib == 0)
				return -1;
		} else if (strcmp(argv[i], "-P") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &spares) < 0)
				return -1;
		} else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &flush_us) < 0)
				return -1;
		} else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &v) < 0 || v == 0)
				return -1;
			rate = (double)v;
		} else {
			return -1;
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	double mbps = 0, rps = 0;

	firn_log_set_level(FIRN_LOG_WARN);
	if (strcmp(mode, "deflate") == 0) {
		if (parse_opts(argc, argv, 2) < 0)
			goto usage;
		make_logs(1u << 16);
		{
			double m = deflate_mbps();

			printf("deflate_MBps=%.1f deflate_MBps_per_core=%.1f\n", m,
			       deflate_cpu_s > 0 ? (double)deflate_bytes / deflate_cpu_s / 1e6 : 0);
		}
		return 0;
	}
	if (argc < 3 || parse_opts(argc, argv, 3) < 0)
		goto usage;
	if (!tu_odirect_ok(argv[2]) && firn_mkdir_p(argv[2], 0755) == 0 &&
	    !tu_odirect_ok(argv[2])) {
		fprintf(stderr, "store_perf: %s does not support O_DIRECT\n", argv[2]);
		return 77;
	}
	if (strcmp(mode, "prealloc") == 0)
		return prealloc_measure(argv[2]) < 0 ? 1 : 0;
	if (strcmp(mode, "raw") == 0 || strcmp(mode, "lat") == 0) {
		struct load ld = {.shards = 64, .batch = 16, .window = window_kib << 10, .rate = 0};
		char sdir[4200];

		make_random();
		snprintf(sdir, sizeof(sdir), "%s/store", argv[2]);
		if (strcmp(mode, "lat") == 0) {
			if (rate <= 0)
				goto usage;
			ld.rate = rate;
			ld.batch = 4;
		}
		/* Incompressible data: compression off, as an operator would set it. */
		if (run_load(sdir, &ld, raw_compress, writers, &mbps, &rps) < 0)
			return 1;
		if (ld.rate > 0)
			printf("rate=%.0f achieved_rps=%.0f ack_p50_us=%" PRIu64
			       " ack_p99_us=%" PRIu64 " ack_p999_us=%" PRIu64
			       " writer_cores=%.2f appender_cores=%.2f\n",
			       rate, rps, hpercentile(0.5), hpercentile(0.99), hpercentile(0.999),
			       cpu_used[CPU_WRITER] / cpu_window_s,
			       cpu_used[CPU_MAIN] / cpu_window_s);
		else
			printf("store_raw_MBps=%.1f records_per_s=%.0f ack_p50_us=%" PRIu64
			       " ack_p99_us=%" PRIu64 " writer_cores=%.2f appender_cores=%.2f\n",
			       mbps, rps, hpercentile(0.5), hpercentile(0.99),
			       cpu_used[CPU_WRITER] / cpu_window_s,
			       cpu_used[CPU_MAIN] / cpu_window_s);
		return 0;
	}
	if (strcmp(mode, "log") == 0) {
		struct load ld = {.shards = 8, .batch = 32, .logs = true, .window = 1u << 20};
		char sdir[4200];

		make_logs(1u << 16);
		snprintf(sdir, sizeof(sdir), "%s/store", argv[2]);
		if (run_load(sdir, &ld, true, 1, &mbps, &rps) < 0)
			return 1;
		printf("store_log_MBps=%.1f records_per_s=%.0f writer_cores=%.2f "
		       "store_log_MBps_per_writer_core=%.1f\n",
		       mbps, rps, cpu_used[CPU_WRITER] / cpu_window_s,
		       cpu_used[CPU_WRITER] > 0 ? mbps * cpu_window_s / cpu_used[CPU_WRITER] : 0);
		return 0;
	}
usage:
	fprintf(stderr, "usage: store_perf raw|log|lat|prealloc DIR [-s SECONDS] [-w WRITERS] "
	                "[-r RATE] [-p PREALLOC_KIB] [-f FLUSH_US] [-S SEGMENT_MIB]\n"
	                "                 [-W WINDOW_KIB] [-z] [-P SPARES] [-T SETTLE_S]\n"
	                "       store_perf deflate [-s SECONDS]\n");
	return 2;
}
