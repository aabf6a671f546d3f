/*
 * firn-bench - drive a known load into firn and report what it did.
 *
 *	firn-bench --udp HOST:PORT  --stream S [options]   firn record protocol
 *	firn-bench --http ENDPOINT  --stream S [options]   Kinesis PutRecords
 *
 * It offers --records records of --size bytes, with keys and data from
 * lib/bench's generators, either open loop at --rate records/s (latency
 * measured from each record's due time, so a stall cannot hide) or closed
 * loop as fast as acks come back. Latency is the time to the DURABLE ack
 * (UDP) or to the PutRecords reply (HTTP), recorded in lib/bench's
 * HDR-style histogram. At the end it prints exactly one line on stdout:
 *
 *	records=.. bytes=.. secs=.. rec_per_s=.. MBps=.. p50_us=.. p99_us=..
 *	p999_us=.. max_us=.. cpu_us_per_rec=..
 *
 * (records, bytes: durably acked; secs: from the start to the last ack;
 * cpu_us_per_rec: the load threads' user + system CPU from the start to
 * the end, per acked record; session set-up is not counted), and,
 * if asked, an ack log (one line per ack: partition key, shard id, sequence
 * number, CRC32C of the data as in doc/format.md), JSON with the
 * configuration, results and percentiles, and a histogram file. Everything
 * is bounded: --records, --duration, and --drain for the last acks. Exit
 * status: 0 when every offered record was acked, 1 otherwise (the reason
 * on stderr), 2 for bad usage.
 *
 * --ramp R1:R2:STEPS finds the knee: open-loop steps from R1 to R2
 * records/s, each on fresh sessions for --duration seconds, and the highest
 * step that kept up with p99 under --p99-bound. Every step goes into the
 * JSON ("ramp": offered and acked rate, percentiles), which is what
 * tools/bench/plot.sh draws throughput-vs-offered-load and the knee from;
 * the summary line is the knee step's. A ramp exits 0 unless a step could
 * not run at all: steps past the knee are expected to fall behind.
 *
 * The JSON also says when (date, date_iso), where (machine: host, CPU
 * model, CPUs, load average at the end) and how (command) it was measured.
 *
 * main() owns argv, signals and exit(); udp.c and http.c are the engines.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>
#include <jansson.h>

#include "bench.h"
#include "firn_api.h"

/* Records are cut from this much random data: varied, yet cache-resident. */
#define POOL_BYTES (1u << 20)
#define EXIT_USAGE 2

atomic_bool bench_stop;

/* ---- helpers the engines share ------------------------------------------------ */

uint32_t
bench_crc32c(const void *data, size_t len)
{
	/* doc/format.md: ISA-L's crc32_iscsi without its inversions; apply them here. */
	return ~crc32_iscsi((unsigned char *)(uintptr_t)data, (int)len, ~0u);
}

size_t
bench_key(struct worker *w, char *buf, size_t cap)
{
	return firn_key_format(firn_keygen_next(w->keys), buf, cap);
}

uint32_t
bench_size(struct worker *w)
{
	const struct bench_conf *b = w->b;

	if (b->size_min >= b->size)
		return b->size;
	return b->size_min + (uint32_t)firn_rng_below(&w->rng, b->size - b->size_min + 1);
}

const uint8_t *
bench_data(struct worker *w)
{
	size_t span = w->pool_len - w->b->size;

	return w->pool + (span > 0 ? firn_rng_below(&w->rng, span + 1) : 0);
}

void
bench_latency(struct worker *w, uint64_t origin_ns, uint64_t now_ns)
{
	if (origin_ns >= w->warm_ns)
		firn_hist_record(w->hist, now_ns > origin_ns ? now_ns - origin_ns : 0);
}

void
bench_fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->err != 0)
		return;
	w->err = -EIO;
	va_start(ap, fmt);
	vsnprintf(w->errmsg, sizeof(w->errmsg), fmt, ap);
	va_end(ap);
}

uint64_t
bench_thread_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
	       (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
}

void
bench_progress_tick(struct worker *w, uint64_t now_ns)
{
	if (w->snap == NULL)
		return;
	/* pairs with the progress line's relaxed load: a monotone counter */
	atomic_store_explicit(&w->progress_issued, w->issued, memory_order_relaxed);
	if (now_ns < w->next_snap_ns)
		return;
	pthread_mutex_lock(&w->snap_lock);
	memcpy(w->snap, w->hist, sizeof(*w->hist));
	pthread_mutex_unlock(&w->snap_lock);
	w->next_snap_ns = now_ns + 250000000ull;
}

uint64_t
bench_wait_start(const struct worker *w)
{
	struct timespec ts = {(time_t)(w->start_ns / 1000000000u),
	                      (long)(w->start_ns % 1000000000u)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	return bench_thread_cpu_us();
}

/* ---- options ------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: firn-bench (--udp HOST:PORT | --http ENDPOINT) --stream S [options]\n"
	        "\n"
	        "  --udp HOST:PORT      firn record protocol (durable acks), e.g. 127.0.0.1:7400\n"
	        "  --http ENDPOINT      Kinesis API PutRecords, e.g. http://127.0.0.1:4567\n"
	        "  --stream S           target stream (must exist)\n"
	        "  --records N          records to offer in total (default 100000)\n"
	        "  --size BYTES|MIN-MAX data bytes per record, fixed or uniform over MIN..MAX\n"
	        "                       (default 100)\n"
	        "  --sessions K         UDP sessions or HTTP connections (default 1)\n"
	        "  --threads T          UDP worker threads; sessions are spread (default 1)\n"
	        "  --rate R             open loop at R records/s in total (default: closed loop)\n"
	        "  --window N           closed loop: records outstanding per session (1024)\n"
	        "  --batch N            HTTP: records per PutRecords, <= 500 (default 500)\n"
	        "  --linger US          UDP open loop: records falling due within US are sent\n"
	        "                       together, many to a datagram (default 50)\n"
	        "  --keys uniform|zipf|N  key distribution over --key-count keys, or N keys\n"
	        "  --key-count N        distinct keys for uniform/zipf (default 100000)\n"
	        "  --data random|log    incompressible, or JSON-like log lines (default random)\n"
	        "  --mtu 1500|9000      UDP: link MTU (datagrams of 1472 / 8972 bytes)\n"
	        "  --duration SECS      stop offering after SECS (default: when --records "
	        "offered)\n"
	        "  --warmup SECS        leave the first SECS out of the latency histogram\n"
	        "  --drain SECS         wait at most SECS for the last acks (default 30)\n"
	        "  --ack-log FILE       one line per ack: key shardId seq crc32c\n"
	        "  --json FILE          configuration, results and percentiles as JSON\n"
	        "  --hist FILE          the latency histogram: lines 'upper_us count'\n"
	        "  --ramp R1:R2:STEPS   open-loop steps from R1 to R2 records/s (linear),\n"
	        "                       each --duration seconds (default 5) after --warmup;\n"
	        "                       reports every step and the knee (see --p99-bound)\n"
	        "  --p99-bound US       ramp: the knee is the highest step that kept up (>= 95%%\n"
	        "                       of offered acked) with p99 <= US (default 10000)\n"
	        "  --progress           a progress line on stderr every second (rate, acked,\n"
	        "                       in flight, p99 so far)\n"
	        "  --seed N             generator seed (default 1)\n"
	        "  --access-key K --secret-key S --region R\n"
	        "                       credentials (else AWS_ACCESS_KEY_ID / "
	        "AWS_SECRET_ACCESS_KEY,\n"
	        "                       FIRN_ACCESS_KEY_ID / FIRN_SECRET_ACCESS_KEY, demo keys)\n");
}

enum {
	O_UDP = 256,
	O_HTTP,
	O_STREAM,
	O_RECORDS,
	O_SIZE,
	O_SESSIONS,
	O_THREADS,
	O_RATE,
	O_WINDOW,
	O_BATCH,
	O_LINGER,
	O_KEYS,
	O_KEYCOUNT,
	O_DATA,
	O_MTU,
	O_DURATION,
	O_WARMUP,
	O_DRAIN,
	O_ACKLOG,
	O_JSON,
	O_HIST,
	O_PROGRESS,
	O_RAMP,
	O_P99BOUND,
	O_SEED,
	O_AKEY,
	O_SKEY,
	O_REGION,
	O_HELP,
};

static int
parse_u64_opt(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (firn_parse_u64(s, out) < 0 || *out < min || *out > max) {
		fprintf(stderr, "firn-bench: %s needs a whole number in %llu..%llu, not '%s'\n",
		        opt, (unsigned long long)min, (unsigned long long)max, s);
		return -EINVAL;
	}
	return 0;
}

static int
parse_secs(const char *opt, const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end != '\0' || !(v >= 0) || v > 86400) {
		fprintf(stderr, "firn-bench: %s needs seconds (0..86400), not '%s'\n", opt, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static const char *
env2(const char *a, const char *b, const char *def)
{
	const char *v = getenv(a);

	if (v != NULL && *v)
		return v;
	v = getenv(b);
	return v != NULL && *v ? v : def;
}

/* "N" or "MIN-MAX" bytes, at most 1 MiB (the protocol's record limit). */
static int
parse_size(const char *arg, struct bench_conf *b)
{
	const char *dash = strchr(arg, '-');
	char lo[32];
	uint64_t a, z;

	if (dash == NULL) {
		if (parse_u64_opt("--size", arg, 0, 1u << 20, &a) < 0)
			return -EINVAL;
		b->size = b->size_min = (uint32_t)a;
		return 0;
	}
	snprintf(lo, sizeof(lo), "%.*s", (int)FIRN_MIN((size_t)(dash - arg), sizeof(lo) - 1), arg);
	if (firn_parse_u64(lo, &a) < 0 || firn_parse_u64(dash + 1, &z) < 0 || a > z ||
	    z > (1u << 20)) {
		fprintf(stderr,
		        "firn-bench: --size needs BYTES or MIN-MAX (0..1048576), not '%s'\n", arg);
		return -EINVAL;
	}
	b->size_min = (uint32_t)a;
	b->size = (uint32_t)z;
	return 0;
}

/* "R1:R2:STEPS": 0 < R1 <= R2, 1 <= STEPS <= 100. */
static int
parse_ramp(const char *arg, struct bench_conf *b)
{
	char *end, *p;
	uint64_t steps;

	b->ramp_from = strtod(arg, &end);
	if (end == arg || *end != ':')
		goto bad;
	p = end + 1;
	b->ramp_to = strtod(p, &end);
	if (end == p || *end != ':')
		goto bad;
	if (firn_parse_u64(end + 1, &steps) < 0 || steps < 1 || steps > 100)
		goto bad;
	if (!(b->ramp_from > 0) || b->ramp_to < b->ramp_from || b->ramp_to > 1e9)
		goto bad;
	b->ramp_steps = (unsigned)steps;
	return 0;
bad:
	fprintf(stderr,
	        "firn-bench: --ramp needs R1:R2:STEPS (records/s, 0 < R1 <= R2, 1..100 steps), "
	        "not '%s'\n",
	        arg);
	return -EINVAL;
}

static bool
stream_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
			return false;
	}
	return true;
}

static int
parse_args(int argc, char **argv, struct bench_conf *b)
{
	static const struct option opts[] = {
	        {"udp", required_argument, NULL, O_UDP},
	        {"http", required_argument, NULL, O_HTTP},
	        {"stream", required_argument, NULL, O_STREAM},
	        {"records", required_argument, NULL, O_RECORDS},
	        {"size", required_argument, NULL, O_SIZE},
	        {"sessions", required_argument, NULL, O_SESSIONS},
	        {"threads", required_argument, NULL, O_THREADS},
	        {"rate", required_argument, NULL, O_RATE},
	        {"window", required_argument, NULL, O_WINDOW},
	        {"batch", required_argument, NULL, O_BATCH},
	        {"linger", required_argument, NULL, O_LINGER},
	        {"keys", required_argument, NULL, O_KEYS},
	        {"key-count", required_argument, NULL, O_KEYCOUNT},
	        {"data", required_argument, NULL, O_DATA},
	        {"mtu", required_argument, NULL, O_MTU},
	        {"duration", required_argument, NULL, O_DURATION},
	        {"warmup", required_argument, NULL, O_WARMUP},
	        {"drain", required_argument, NULL, O_DRAIN},
	        {"ack-log", required_argument, NULL, O_ACKLOG},
	        {"json", required_argument, NULL, O_JSON},
	        {"hist", required_argument, NULL, O_HIST},
	        {"progress", no_argument, NULL, O_PROGRESS},
	        {"ramp", required_argument, NULL, O_RAMP},
	        {"p99-bound", required_argument, NULL, O_P99BOUND},
	        {"seed", required_argument, NULL, O_SEED},
	        {"access-key", required_argument, NULL, O_AKEY},
	        {"secret-key", required_argument, NULL, O_SKEY},
	        {"region", required_argument, NULL, O_REGION},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	bool have_mode = false, linger_set = false;
	uint64_t v;
	int o;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_UDP:
		case O_HTTP:
			if (have_mode) {
				fprintf(stderr, "firn-bench: give one of --udp and --http\n");
				return -EINVAL;
			}
			have_mode = true;
			b->mode = o == O_UDP ? MODE_UDP : MODE_HTTP;
			b->endpoint = optarg;
			break;
		case O_STREAM:
			b->stream = optarg;
			break;
		case O_RECORDS:
			if (parse_u64_opt("--records", optarg, 1, 1ull << 40, &b->records) < 0)
				return -EINVAL;
			break;
		case O_SIZE:
			if (parse_size(optarg, b) < 0)
				return -EINVAL;
			break;
		case O_SESSIONS:
			if (parse_u64_opt("--sessions", optarg, 1, 1024, &v) < 0)
				return -EINVAL;
			b->sessions = (unsigned)v;
			break;
		case O_THREADS:
			if (parse_u64_opt("--threads", optarg, 1, 64, &v) < 0)
				return -EINVAL;
			b->threads = (unsigned)v;
			break;
		case O_RATE: {
			char *end;

			b->rate = strtod(optarg, &end);
			if (end == optarg || (*end != '\0' && strcmp(end, "/s") != 0) ||
			    !(b->rate > 0) || b->rate > 1e9) {
				fprintf(stderr,
				        "firn-bench: --rate needs records/s (> 0), not '%s'\n",
				        optarg);
				return -EINVAL;
			}
			break;
		}
		case O_WINDOW:
			if (parse_u64_opt("--window", optarg, 1, 1u << 20, &v) < 0)
				return -EINVAL;
			b->window = (uint32_t)v;
			break;
		case O_BATCH:
			if (parse_u64_opt("--batch", optarg, 1, 500, &v) < 0)
				return -EINVAL;
			b->batch = (uint32_t)v;
			break;
		case O_LINGER:
			if (parse_u64_opt("--linger", optarg, 0, 1000000, &v) < 0)
				return -EINVAL;
			b->linger_us = (uint32_t)v;
			linger_set = true;
			break;
		case O_KEYS:
			if (strcmp(optarg, "uniform") == 0) {
				b->keydist = FIRN_KEYS_UNIFORM;
			} else if (strcmp(optarg, "zipf") == 0) {
				b->keydist = FIRN_KEYS_ZIPF;
			} else {
				if (parse_u64_opt("--keys", optarg, 1, 1ull << 32, &b->keys) < 0)
					return -EINVAL;
				b->keydist = FIRN_KEYS_UNIFORM;
			}
			break;
		case O_KEYCOUNT:
			if (parse_u64_opt("--key-count", optarg, 1, 1ull << 32, &b->keys) < 0)
				return -EINVAL;
			break;
		case O_DATA:
			if (strcmp(optarg, "random") == 0)
				b->data = FIRN_DATA_RANDOM;
			else if (strcmp(optarg, "log") == 0)
				b->data = FIRN_DATA_LOG;
			else {
				fprintf(stderr, "firn-bench: --data is random or log\n");
				return -EINVAL;
			}
			break;
		case O_MTU:
			if (parse_u64_opt("--mtu", optarg, 1228, 9216, &v) < 0)
				return -EINVAL;
			b->mtu = (unsigned)v;
			break;
		case O_DURATION:
			if (parse_secs("--duration", optarg, &b->duration) < 0)
				return -EINVAL;
			break;
		case O_WARMUP:
			if (parse_secs("--warmup", optarg, &b->warmup) < 0)
				return -EINVAL;
			break;
		case O_DRAIN:
			if (parse_secs("--drain", optarg, &b->drain) < 0)
				return -EINVAL;
			break;
		case O_ACKLOG:
			b->ack_log_path = optarg;
			break;
		case O_JSON:
			b->json_path = optarg;
			break;
		case O_HIST:
			b->hist_path = optarg;
			break;
		case O_PROGRESS:
			b->progress = true;
			break;
		case O_RAMP:
			if (parse_ramp(optarg, b) < 0)
				return -EINVAL;
			break;
		case O_P99BOUND:
			if (parse_secs("--p99-bound", optarg, &b->p99_bound_us) < 0 ||
			    b->p99_bound_us <= 0)
				return -EINVAL;
			break;
		case O_SEED:
			if (parse_u64_opt("--seed", optarg, 0, UINT64_MAX, &b->seed) < 0)
				return -EINVAL;
			break;
		case O_AKEY:
			b->access_key = optarg;
			break;
		case O_SKEY:
			b->secret_key = optarg;
			break;
		case O_REGION:
			b->region = optarg;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "firn-bench: unexpected '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!have_mode || b->stream == NULL) {
		usage(stderr);
		return -EINVAL;
	}
	if (!stream_name_ok(b->stream)) {
		fprintf(stderr, "firn-bench: stream name '%s' must be 1..128 of [a-zA-Z0-9_.-]\n",
		        b->stream);
		return -EINVAL;
	}
	if (b->ramp_steps > 0) {
		if (b->rate > 0) {
			fprintf(stderr, "firn-bench: give one of --rate and --ramp\n");
			return -EINVAL;
		}
		if (b->duration == 0)
			b->duration = 5;
	}
	if (!linger_set && (b->rate > 0 || b->ramp_steps > 0))
		b->linger_us = 50;
	if (b->mode == MODE_HTTP)
		b->threads = b->sessions;
	if (b->threads > b->sessions)
		b->threads = b->sessions;
	return 0;
}

/* ---- the run ------------------------------------------------------------------------------ */

static void
on_signal(int sig)
{
	(void)sig;
	atomic_store(&bench_stop, true);
}

static double
pct_us(const struct firn_hist *h, double p)
{
	return (double)firn_hist_percentile(h, p) / 1000.0;
}

/* What one run (a plain run, or one ramp step) measured. */
struct run_result {
	struct firn_hist *hist; /* merged, owned by the caller */
	double offered_rate;    /* records/s asked for; 0: closed loop */
	uint64_t issued, acked, failed, bytes, retx, lost, reconn, calls;
	double secs, rps, mbps, cpu_per;
	bool ok; /* every offered record acked, no worker error */
};

/* The machine, for every JSON file: numbers mean little without it. */
static json_t *
machine_json(void)
{
	json_t *m = json_object(), *load = json_array();
	char host[256] = "", model[256] = "", line[512];
	double la[3] = {0, 0, 0};
	FILE *f;

	gethostname(host, sizeof(host) - 1);
	f = fopen("/proc/cpuinfo", "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		char *c = strchr(line, ':');

		if (strncmp(line, "model name", 10) == 0 && c != NULL) {
			snprintf(model, sizeof(model), "%s", c + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (f != NULL)
		fclose(f);
	if (getloadavg(la, 3) < 0)
		la[0] = la[1] = la[2] = -1;
	for (int i = 0; i < 3; i++)
		json_array_append_new(load, json_real(la[i]));
	json_object_set_new(m, "hostname", json_string(host));
	json_object_set_new(m, "cpu_model", json_string(model));
	json_object_set_new(m, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
	json_object_set_new(m, "loadavg", load);
	return m;
}

static json_t *
latency_json(const struct firn_hist *h)
{
	json_t *lat = json_object();

	json_object_set_new(lat, "count", json_integer((json_int_t)h->count));
	json_object_set_new(lat, "min", json_real(h->count ? (double)h->min / 1000.0 : 0));
	json_object_set_new(lat, "mean", json_real(firn_hist_mean(h) / 1000.0));
	json_object_set_new(lat, "p50", json_real(pct_us(h, 50)));
	json_object_set_new(lat, "p90", json_real(pct_us(h, 90)));
	json_object_set_new(lat, "p99", json_real(pct_us(h, 99)));
	json_object_set_new(lat, "p999", json_real(pct_us(h, 99.9)));
	json_object_set_new(lat, "p9999", json_real(pct_us(h, 99.99)));
	json_object_set_new(lat, "max", json_real(h->count ? (double)h->max / 1000.0 : 0));
	return lat;
}

static json_t *
results_json(const struct run_result *r)
{
	return json_pack("{s:f,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:I,s:I,s:I,s:I,s:b}",
	                 "offered_rate", r->offered_rate, "offered", (json_int_t)r->issued,
	                 "records", (json_int_t)r->acked, "failed",
	                 (json_int_t)(r->issued - FIRN_MIN(r->acked, r->issued)), "bytes",
	                 (json_int_t)r->bytes, "secs", r->secs, "rec_per_s", r->rps, "MBps",
	                 r->mbps, "cpu_us_per_rec", r->cpu_per, "resent_pieces",
	                 (json_int_t)r->retx, "lost_datagrams", (json_int_t)r->lost, "reconnects",
	                 (json_int_t)r->reconn, "http_calls", (json_int_t)r->calls, "ok", r->ok);
}

static int
write_json(const struct bench_conf *b, const struct run_result *r, json_t *ramp, json_t *knee,
           const char *cmdline)
{
	static const double ps[] = {50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 99.999, 100};
	const struct firn_hist *h = r->hist;
	json_t *root = json_object(), *conf = json_object(), *pcts = json_array();
	char date[32];
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	json_object_set_new(conf, "mode", json_string(b->mode == MODE_UDP ? "udp" : "http"));
	json_object_set_new(conf, "endpoint", json_string(b->endpoint));
	json_object_set_new(conf, "stream", json_string(b->stream));
	json_object_set_new(conf, "records", json_integer((json_int_t)b->records));
	json_object_set_new(conf, "size", json_integer(b->size));
	json_object_set_new(conf, "size_min", json_integer(b->size_min));
	json_object_set_new(conf, "sessions", json_integer(b->sessions));
	json_object_set_new(conf, "threads", json_integer(b->threads));
	json_object_set_new(conf, "rate", json_real(b->rate));
	json_object_set_new(conf, "loop",
	                    json_string(b->rate > 0 || b->ramp_steps ? "open" : "closed"));
	json_object_set_new(conf, "window", json_integer(b->window));
	json_object_set_new(conf, "batch", json_integer(b->batch));
	json_object_set_new(conf, "linger_us", json_integer(b->linger_us));
	json_object_set_new(conf, "keys",
	                    json_string(b->keydist == FIRN_KEYS_ZIPF ? "zipf" : "uniform"));
	json_object_set_new(conf, "key_count", json_integer((json_int_t)b->keys));
	json_object_set_new(conf, "data", json_string(b->data == FIRN_DATA_LOG ? "log" : "random"));
	json_object_set_new(conf, "mtu", json_integer(b->mtu));
	json_object_set_new(conf, "duration", json_real(b->duration));
	json_object_set_new(conf, "warmup", json_real(b->warmup));
	json_object_set_new(conf, "seed", json_integer((json_int_t)b->seed));
	if (b->ramp_steps > 0) {
		json_object_set_new(conf, "ramp",
		                    json_pack("{s:f,s:f,s:i,s:f}", "from", b->ramp_from, "to",
		                              b->ramp_to, "steps", (int)b->ramp_steps,
		                              "p99_bound_us", b->p99_bound_us));
	}
	for (size_t i = 0; i < FIRN_ARRAY_SIZE(ps); i++)
		json_array_append_new(pcts,
		                      json_pack("{s:f,s:f}", "p", ps[i], "us", pct_us(h, ps[i])));
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(root, "config", conf);
	json_object_set_new(root, "results", results_json(r));
	json_object_set_new(root, "latency_us", latency_json(h));
	json_object_set_new(root, "percentiles", pcts);
	json_object_set_new(root, "date", json_integer((json_int_t)now));
	json_object_set_new(root, "date_iso", json_string(date));
	json_object_set_new(root, "command", json_string(cmdline));
	json_object_set_new(root, "machine", machine_json());
	if (ramp != NULL)
		json_object_set(root, "ramp", ramp);
	if (knee != NULL)
		json_object_set(root, "knee", knee);
	rc = json_dump_file(root, b->json_path, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	if (rc < 0) {
		fprintf(stderr, "firn-bench: cannot write %s\n", b->json_path);
		return -EIO;
	}
	return 0;
}

static int
write_hist(const char *path, const struct firn_hist *h)
{
	FILE *f = fopen(path, "w");

	if (f == NULL) {
		fprintf(stderr, "firn-bench: cannot write %s: %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "# durable-ack latency: bucket upper bound (us) and count\n");
	for (unsigned i = 0; i < FIRN_HIST_BUCKETS; i++) {
		uint64_t lo, hi;

		if (h->bucket[i] == 0)
			continue;
		firn_hist_bucket_range(i, &lo, &hi);
		fprintf(f, "%.3f %llu\n", (double)hi / 1000.0, (unsigned long long)h->bucket[i]);
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

/*
 * The progress line, once a second until every worker is done: the rate
 * over the last second, acked so far, in flight (issued, not yet acked),
 * and the p99 so far over the workers' latest histogram copies.
 */
static void
progress_loop(struct worker *w, unsigned n, uint64_t start, struct firn_hist *tmp)
{
	uint64_t last = 0, t_last = firn_mono_ns();
	bool running = true, *joined = calloc(n, sizeof(*joined));

	if (joined == NULL) {
		for (unsigned i = 0; i < n; i++)
			pthread_join(w[i].th, NULL);
		return;
	}
	while (running) {
		uint64_t now, acked = 0, issued = 0;

		usleep(1000000);
		now = firn_mono_ns();
		running = false;
		firn_hist_reset(tmp);
		for (unsigned i = 0; i < n; i++) {
			/* pairs with the engines' relaxed stores: monotone counters */
			acked += atomic_load_explicit(&w[i].progress_acked, memory_order_relaxed);
			issued += atomic_load_explicit(&w[i].progress_issued, memory_order_relaxed);
			pthread_mutex_lock(&w[i].snap_lock);
			firn_hist_merge(tmp, w[i].snap);
			pthread_mutex_unlock(&w[i].snap_lock);
			if (!joined[i] && pthread_tryjoin_np(w[i].th, NULL) == 0)
				joined[i] = true;
			running = running || !joined[i];
		}
		fprintf(stderr,
		        "firn-bench: %.0f s: %.0f rec/s, %llu acked, %llu in flight, p99 %.1f us\n",
		        (double)(now - start) / 1e9,
		        (double)(acked - last) * 1e9 / (double)(now - t_last),
		        (unsigned long long)acked,
		        (unsigned long long)(issued > acked ? issued - acked : 0), pct_us(tmp, 99));
		last = acked;
		t_last = now;
	}
	free(joined);
}

/*
 * One run: start the workers together, wait for them, merge what they
 * measured into r. Returns 0, or -ENOMEM / -EAGAIN when the run could not
 * even start (then r is untouched but for its histogram).
 */
static int
run_once(const struct bench_conf *b, struct run_result *r)
{
	struct worker *w = calloc(b->threads, sizeof(*w));
	struct firn_hist *tmp = b->progress ? firn_hist_create() : NULL;
	uint64_t start, end = 0, cpu = 0;
	unsigned started = 0;
	int rc = 0;

	if (w == NULL || (b->progress && tmp == NULL)) {
		free(w);
		firn_hist_destroy(tmp);
		return -ENOMEM;
	}
	firn_hist_reset(r->hist);
	/* Start everyone together, after the sessions have had time to open. */
	start = firn_mono_ns() + 200000000ull +
	        (uint64_t)b->sessions * (b->mode == MODE_UDP ? 2000000ull : 0);
	for (unsigned i = 0, s0 = 0; i < b->threads; i++) {
		struct worker *x = &w[i];
		unsigned ns = b->sessions / b->threads + (i < b->sessions % b->threads ? 1 : 0);

		x->id = i;
		x->b = b;
		x->first_session = s0;
		x->n_sessions = ns;
		s0 += ns;
		x->quota = b->records / b->threads + (i < b->records % b->threads ? 1 : 0);
		x->start_ns = start;
		x->warm_ns = start + (uint64_t)(b->warmup * 1e9);
		x->stop_ns = b->duration > 0 ? start + (uint64_t)(b->duration * 1e9) : 0;
		x->hist = firn_hist_create();
		x->keys = firn_keygen_create(b->keydist, b->keys, b->seed * 7919 + i);
		firn_rng_seed(&x->rng, b->seed * 104729 + i);
		x->pool_len = FIRN_MAX((size_t)POOL_BYTES, (size_t)b->size);
		x->pool = malloc(x->pool_len);
		pthread_mutex_init(&x->snap_lock, NULL);
		if (b->progress)
			x->snap = firn_hist_create();
		if (x->hist == NULL || x->keys == NULL || x->pool == NULL ||
		    (b->progress && x->snap == NULL)) {
			rc = -ENOMEM;
			goto out;
		}
		firn_data_fill(b->data, &x->rng, x->pool, x->pool_len);
	}
	for (; started < b->threads; started++)
		if (pthread_create(&w[started].th, NULL,
		                   b->mode == MODE_UDP ? bench_udp_worker : bench_http_worker,
		                   &w[started]) != 0) {
			atomic_store(&bench_stop, true);
			rc = -EAGAIN;
			break;
		}
	if (b->progress && rc == 0)
		progress_loop(w, b->threads, start, tmp);
	else
		for (unsigned i = 0; i < started; i++)
			pthread_join(w[i].th, NULL);

	r->offered_rate = b->rate;
	r->issued = r->acked = r->failed = r->bytes = 0;
	r->retx = r->lost = r->reconn = r->calls = 0;
	r->ok = rc == 0;
	for (unsigned i = 0; i < started; i++) {
		firn_hist_merge(r->hist, w[i].hist);
		r->acked += w[i].acked;
		cpu += w[i].cpu_us;
		r->failed += w[i].failed;
		r->bytes += w[i].bytes;
		r->issued += w[i].issued;
		r->retx += w[i].retransmits;
		r->lost += w[i].lost;
		r->reconn += w[i].reconnects;
		r->calls += w[i].http_calls;
		end = FIRN_MAX(end, w[i].last_ack_ns);
		if (w[i].err != 0) {
			fprintf(stderr, "firn-bench: %s\n", w[i].errmsg);
			r->ok = false;
		}
		if (w[i].first_fail[0] != '\0')
			fprintf(stderr, "firn-bench: worker %u: first failed record: %s\n", i,
			        w[i].first_fail);
	}
	r->secs = end > start ? (double)(end - start) / 1e9 : 0;
	r->rps = r->secs > 0 ? (double)r->acked / r->secs : 0;
	r->mbps = r->secs > 0 ? (double)r->bytes / 1e6 / r->secs : 0;
	r->cpu_per = r->acked > 0 ? (double)cpu / (double)r->acked : 0;
	if (r->failed > 0 || r->acked < r->issued) {
		fprintf(stderr, "firn-bench: %llu of %llu offered records were not durably acked\n",
		        (unsigned long long)(r->issued - FIRN_MIN(r->acked, r->issued)),
		        (unsigned long long)r->issued);
		r->ok = false;
	}
out:
	for (unsigned i = 0; i < b->threads; i++) {
		firn_hist_destroy(w[i].hist);
		firn_hist_destroy(w[i].snap);
		firn_keygen_destroy(w[i].keys);
		free(w[i].pool);
		pthread_mutex_destroy(&w[i].snap_lock);
	}
	free(w);
	firn_hist_destroy(tmp);
	return rc;
}

static void
print_line(const struct run_result *r)
{
	const struct firn_hist *h = r->hist;

	printf("records=%llu bytes=%llu secs=%.3f rec_per_s=%.0f MBps=%.2f p50_us=%.1f "
	       "p99_us=%.1f p999_us=%.1f max_us=%.1f cpu_us_per_rec=%.3f\n",
	       (unsigned long long)r->acked, (unsigned long long)r->bytes, r->secs, r->rps, r->mbps,
	       pct_us(h, 50), pct_us(h, 99), pct_us(h, 99.9),
	       h->count ? (double)h->max / 1000.0 : 0.0, r->cpu_per);
	fflush(stdout);
}

/*
 * Ramp: open-loop steps from ramp_from to ramp_to records/s, each offering
 * rate x duration records after its own warm-up, on fresh sessions. A step
 * "kept up" when at least 95% of what it offered was acked within its
 * duration plus the drain at a rate within 5% of the offered one; the knee
 * is the highest step that kept up with p99 <= p99_bound_us. A step line
 * goes to stderr as each finishes; stdout gets the knee step's summary line
 * (the last step's if none qualifies). Stepping stops early after two
 * steps in a row that did not keep up: the plateau is found, and more load
 * only makes the box slower for everyone else.
 */
static int
run_ramp(struct bench_conf *b, struct run_result *knee_r, json_t *steps, json_t **knee_out)
{
	struct run_result r = {.hist = firn_hist_create()};
	double knee_rate = 0; /* 0: no step has qualified yet */
	unsigned behind = 0;
	int rc = 0;

	if (r.hist == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < b->ramp_steps && !atomic_load(&bench_stop); i++) {
		double rate = b->ramp_steps == 1
		                      ? b->ramp_to
		                      : b->ramp_from + (b->ramp_to - b->ramp_from) * (double)i /
		                                               (b->ramp_steps - 1);
		bool kept_up, under;
		json_t *step;

		b->rate = rate;
		b->records = (uint64_t)ceil(rate * b->duration);
		rc = run_once(b, &r);
		if (rc < 0)
			break;
		kept_up = r.issued > 0 && (double)r.acked >= 0.95 * (double)r.issued &&
		          r.rps >= 0.95 * rate * (double)r.acked / (double)r.issued &&
		          (double)r.issued >= 0.95 * (double)b->records;
		under = pct_us(r.hist, 99) <= b->p99_bound_us;
		step = results_json(&r);
		json_object_set_new(step, "latency_us", latency_json(r.hist));
		json_object_set_new(step, "kept_up", json_boolean(kept_up));
		json_array_append_new(steps, step);
		fprintf(stderr,
		        "firn-bench: ramp step %u/%u: offered %.0f rec/s, acked %.0f rec/s, p50 "
		        "%.1f us, p99 %.1f us, p99.9 %.1f us%s\n",
		        i + 1, b->ramp_steps, rate, r.rps, pct_us(r.hist, 50), pct_us(r.hist, 99),
		        pct_us(r.hist, 99.9), kept_up ? "" : " (fell behind)");
		/*
		 * Until a step qualifies, every step is the one reported (so with
		 * none, the last); after that only qualifying ones are.
		 */
		if (knee_rate == 0 || (kept_up && under)) {
			struct firn_hist *keep = knee_r->hist;

			*knee_r = r;
			knee_r->hist = keep;
			memcpy(knee_r->hist, r.hist, sizeof(*r.hist));
			if (kept_up && under)
				knee_rate = rate;
		}
		behind = kept_up ? 0 : behind + 1;
		if (behind >= 2)
			break;
	}
	*knee_out = json_pack("{s:f,s:f,s:b}", "rate", knee_rate, "p99_bound_us", b->p99_bound_us,
	                      "found", knee_rate > 0);
	fprintf(stderr, "firn-bench: knee: %.0f rec/s with p99 <= %.0f us%s\n", knee_rate,
	        b->p99_bound_us, knee_rate > 0 ? "" : " (no step qualified)");
	firn_hist_destroy(r.hist);
	return rc;
}

int
main(int argc, char **argv)
{
	struct bench_conf b = {
	        .records = 100000,
	        .size = 100,
	        .size_min = 100,
	        .sessions = 1,
	        .threads = 1,
	        .keys = 100000,
	        .window = 1024,
	        .batch = 500,
	        .drain = 30,
	        .seed = 1,
	        .mtu = 1500,
	        .p99_bound_us = 10000,
	};
	struct run_result r = {0};
	struct sigaction sa = {.sa_handler = on_signal};
	json_t *steps = NULL, *knee = NULL;
	char cmdline[2048];
	size_t cl = 0;
	int rc = 0;

	for (int i = 0; i < argc && cl < sizeof(cmdline); i++)
		cl += (size_t)snprintf(cmdline + cl, sizeof(cmdline) - cl, "%s%s", i ? " " : "",
		                       argv[i]);
	if (parse_args(argc, argv, &b) < 0)
		return EXIT_USAGE;
	b.access_key = b.access_key ? b.access_key
	                            : env2("AWS_ACCESS_KEY_ID", "FIRN_ACCESS_KEY_ID",
	                                   FIRN_API_DEFAULT_ACCESS_KEY);
	b.secret_key = b.secret_key ? b.secret_key
	                            : env2("AWS_SECRET_ACCESS_KEY", "FIRN_SECRET_ACCESS_KEY",
	                                   FIRN_API_DEFAULT_SECRET);
	b.region = b.region ? b.region : env2("AWS_REGION", "FIRN_REGION", FIRN_API_DEFAULT_REGION);
	if (b.mode == MODE_HTTP && !bench_http_available()) {
		fprintf(stderr, "firn-bench: --http is not available in this build\n");
		return EXIT_USAGE;
	}
	if (b.ack_log_path != NULL) {
		b.ack_log = fopen(b.ack_log_path, "w");
		if (b.ack_log == NULL) {
			fprintf(stderr, "firn-bench: cannot write %s: %s\n", b.ack_log_path,
			        strerror(errno));
			return 1;
		}
		setvbuf(b.ack_log, NULL, _IOFBF, 1 << 20);
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	r.hist = firn_hist_create();
	if (r.hist == NULL)
		return 1;
	if (b.ramp_steps > 0) {
		steps = json_array();
		rc = run_ramp(&b, &r, steps, &knee) < 0 ? 1 : 0;
		/* a ramp is a measurement: steps past the knee may fail by design */
	} else {
		if (run_once(&b, &r) < 0) {
			fprintf(stderr,
			        "firn-bench: cannot start the run (out of memory or threads)\n");
			return 1;
		}
		rc = r.ok ? 0 : 1;
	}
	print_line(&r);
	if (b.ack_log != NULL && fclose(b.ack_log) != 0) {
		fprintf(stderr, "firn-bench: writing %s failed\n", b.ack_log_path);
		rc = 1;
	}
	if (b.json_path != NULL && write_json(&b, &r, steps, knee, cmdline) < 0)
		rc = 1;
	if (b.hist_path != NULL && write_hist(b.hist_path, r.hist) < 0)
		rc = 1;
	json_decref(steps);
	json_decref(knee);
	firn_hist_destroy(r.hist);
	return rc;
}
