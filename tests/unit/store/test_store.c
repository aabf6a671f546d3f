/*
 * test_store.c - lib/store end to end on a real file system.
 *
 * Most tests run the store single-threaded (threaded = false), driving the
 * writer with firn_store_do_work() or through firn_store_wait_durable(),
 * which drives it itself in that mode; one runs writer threads with
 * concurrent appenders. Every record written is made by tu_fill() and
 * checked on the way back by tu_check(), so a test notices a wrong byte,
 * a wrong counter and a record out of order.
 *
 * Skips (77) where the scratch file system refuses O_DIRECT.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "firn_disk_uring.h"
#include "firn_store.h"
#include "store_testutil.h"

static char base[4096];
static char tdir[4200];
static unsigned tcount;

/* A fresh data directory per test. */
static int
setup(void **state)
{
	(void)state;
	snprintf(tdir, sizeof(tdir), "%s/t%u", base, tcount++);
	return firn_mkdir_p(tdir, 0755);
}

static int
teardown(void **state)
{
	(void)state;
	firn_rm_rf(tdir);
	return 0;
}

static void
conf_small(struct firn_store_conf *c)
{
	firn_store_conf_defaults(c);
	c->dir = tdir;
	c->kek = tu_kek();
	c->disk = &firn_disk_uring_ops;
	c->threaded = false;
	c->segment_size = 1u << 20;
	c->prealloc = 256u << 10;
	c->block_max = 64u << 10;
	c->flush_interval_us = 0;
}

/* Append records seq .. seq+n-1 of sizes from a simple pattern; returns first counter. */
static uint64_t
append_n(struct firn_store *st, uint64_t sid, uint32_t shard, uint64_t seq, unsigned n,
         uint32_t size)
{
	struct firn_record recs[64];
	static uint8_t bufs[64][8192];
	uint64_t first = 0, f;
	unsigned i, done = 0;

	while (done < n) {
		unsigned k = FIRN_MIN(n - done, 64u);

		for (i = 0; i < k; i++) {
			uint32_t len =
			        size ? size : TU_REC_MIN + (uint32_t)((seq + done + i) * 37 % 4000);

			tu_fill(bufs[i], len, shard, seq + done + i);
			memset(&recs[i], 0, sizeof(recs[i]));
			recs[i].data = bufs[i];
			recs[i].data_len = len;
			recs[i].key = (const uint8_t *)"key";
			recs[i].key_len = 3;
			recs[i].producer_id = 7;
			recs[i].producer_seq = seq + done + i;
		}
		assert_int_equal(firn_store_append(st, sid, shard, recs, k, &f, NULL), 0);
		if (done == 0)
			first = f;
		done += k;
	}
	return first;
}

/* Read all of [from, to) and check records carry seq base_seq + (counter - from). */
static void
read_check(struct firn_store *st, uint64_t sid, uint32_t shard, uint64_t from, uint64_t to,
           uint64_t seq0)
{
	struct firn_read_req req = {.from = FIRN_READ_AT_COUNTER,
	                            .counter = from,
	                            .max_records = 1000,
	                            .max_bytes = 1 << 20};
	struct firn_read_res res;
	uint64_t c = from;
	int64_t last_ts = 0;

	while (c < to) {
		uint32_t i;

		req.counter = c;
		assert_int_equal(firn_store_read(st, sid, shard, &req, &res), 0);
		assert_true(res.n > 0);
		for (i = 0; i < res.n; i++) {
			const struct firn_record *r = &res.recs[i];

			assert_int_equal(r->counter, c);
			assert_int_equal(tu_check(r->data, r->data_len, shard), seq0 + (c - from));
			assert_int_equal(r->key_len, 3);
			assert_memory_equal(r->key, "key", 3);
			assert_int_equal(r->producer_id, 7);
			assert_int_equal(r->producer_seq, seq0 + (c - from));
			assert_true(r->ts_ms >= last_ts);
			last_ts = r->ts_ms;
			c++;
		}
		assert_int_equal(res.next_counter, c);
		firn_read_res_free(&res);
	}
	assert_int_equal(c, to);
}

static void
test_roundtrip_single(void **state)
{
	struct firn_store_conf conf;
	struct firn_store *st;
	struct firn_shard_stat ss;
	struct firn_store_stats stats;
	uint64_t first;

	(void)state;
	conf_small(&conf);
	st = firn_store_open(&conf);
	assert_non_null(st);
	first = append_n(st, 1, 0, 0, 500, 0);
	assert_int_equal(first, 0);
	assert_int_equal(firn_store_wait_durable(st, 1, 0, 499, 5000), 0);
	read_check(st, 1, 0, 0, 500, 0);
	assert_int_equal(firn_store_shard_stat(st, 1, 0, &ss), 0);
	assert_int_equal(ss.next_counter, 500);
	assert_int_equal(ss.durable_next, 500);
	assert_int_equal(ss.first_counter, 0);
	assert_true(ss.last_ts_ms > 0);
	assert_true(ss.bytes > 4096);
	firn_store_stats(st, &stats);
	assert_int_equal(stats.appended_records, 500);
	assert_int_equal(stats.durable_records, 500);
	assert_true(stats.blocks_written >= 1);
	assert_true(stats.bytes_written % 4096 == 0);
	assert_int_equal(firn_store_shard_stat(st, 1, 9, &ss), -ENOENT);
	firn_store_close(st);
}

static void
test_bad_appends(void **state)
{
	struct firn_store_conf conf;
	struct firn_store *st;
	struct firn_record r = {0};
	uint64_t first;
	static uint8_t big[(1u << 20) + 1];

	(void)state;
	conf_small(&conf);
	st = firn_store_open(&conf);
	assert_non_null(st);
	r.data = big;
	r.data_len = sizeof(big);
	assert_int_equal(firn_store_append(st, 1, 0, &r, 1, &first, NULL), -E2BIG);
	/* Larger than this store's blocks (64 KiB) is refused too. */
	r.data_len = 70000;
	assert_int_equal(firn_store_append(st, 1, 0, &r, 1, &first, NULL), -E2BIG);
	assert_int_equal(firn_store_append(st, 1, 0, &r, 0, &first, NULL), -EINVAL);
	firn_store_close(st);

	/* The default block size takes a full 1 MiB record. */
	conf_small(&conf);
	conf.block_max = 0;
	st = firn_store_open(&conf);
	assert_non_null(st);
	r.data_len = 1u << 20;
	memset(big, 0xab, sizeof(big));
	assert_int_equal(firn_store_append(st, 2, 0, &r, 1, &first, NULL), 0);
	assert_int_equal(firn_store_wait_durable(st, 2, 0, first, 5000), 0);
	{
		struct firn_read_req req = {
		        .from = FIRN_READ_AT_COUNTER, .max_records = 10, .max_bytes = 1};
		struct firn_read_res res;

		assert_int_equal(firn_store_read(st, 2, 0, &req, &res), 0);
		assert_int_equal(res.n, 1);
		assert_int_equal(res.recs[0].data_len, 1u << 20);
		assert_memory_equal(res.recs[0].data, big, 1u << 20);
		firn_read_res_free(&res);
	}
	firn_store_close(st);
}

static void
test_tip_only_durable(void **state)
{
	struct firn_read_req req = {
	        .from = FIRN_READ_AT_COUNTER, .max_records = 100, .max_bytes = 1 << 20};
	struct firn_store_conf conf;
	struct firn_read_res res;
	struct firn_store *st;

	(void)state;
	conf_small(&conf);
	conf.flush_interval_us = 60u * 1000000u; /* nothing commits by itself */
	st = firn_store_open(&conf);
	assert_non_null(st);
	append_n(st, 3, 1, 0, 10, 100);
	/* Sequenced but not durable: a reader sees nothing yet. */
	assert_int_equal(firn_store_read(st, 3, 1, &req, &res), 0);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.durable_next, 0);
	assert_int_equal(res.next_counter, 0);
	firn_read_res_free(&res);
	assert_int_equal(firn_store_wait_durable(st, 3, 1, 9, 20), -ETIMEDOUT);
	/* A counter never given is an error, not a wait. */
	assert_int_equal(firn_store_wait_durable(st, 3, 1, 10, 20), -EINVAL);
	firn_store_flush(st);
	assert_int_equal(firn_store_wait_durable(st, 3, 1, 9, 5000), 0);
	assert_int_equal(firn_store_read(st, 3, 1, &req, &res), 0);
	assert_int_equal(res.n, 10);
	assert_int_equal(res.durable_next, 10);
	assert_int_equal(res.next_counter, 10);
	firn_read_res_free(&res);
	/* More appends: the old tip stays, the new ones appear after a commit. */
	append_n(st, 3, 1, 10, 5, 100);
	req.counter = 10;
	assert_int_equal(firn_store_read(st, 3, 1, &req, &res), 0);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.next_counter, 10);
	firn_read_res_free(&res);
	firn_store_flush(st);
	assert_int_equal(firn_store_wait_durable(st, 3, 1, 14, 5000), 0);
	read_check(st, 3, 1, 10, 15, 10);
	firn_store_close(st);
}

static void
test_read_limits(void **state)
{
	struct firn_read_req req = {.from = FIRN_READ_AT_COUNTER};
	struct firn_store_conf conf;
	struct firn_read_res res;
	struct firn_store *st;
	int64_t ts[3];
	uint64_t firsts[3];
	int b;

	(void)state;
	conf_small(&conf);
	st = firn_store_open(&conf);
	assert_non_null(st);
	/* Three batches 30 ms apart: distinct arrival times. */
	for (b = 0; b < 3; b++) {
		struct firn_record r[10];
		uint8_t buf[10][1000];
		int i;

		for (i = 0; i < 10; i++) {
			memset(&r[i], 0, sizeof(r[i]));
			tu_fill(buf[i], 1000, 0, (uint64_t)b * 10 + (uint64_t)i);
			r[i].data = buf[i];
			r[i].data_len = 1000;
		}
		assert_int_equal(firn_store_append(st, 4, 0, r, 10, &firsts[b], &ts[b]), 0);
		assert_int_equal(firn_store_wait_durable(st, 4, 0, firsts[b] + 9, 5000), 0);
		usleep(30000);
	}
	assert_true(ts[0] < ts[1] && ts[1] < ts[2]);

	/* max_records */
	req.counter = 5;
	req.max_records = 7;
	req.max_bytes = 1 << 20;
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.n, 7);
	assert_int_equal(res.recs[0].counter, 5);
	assert_int_equal(res.next_counter, 12);
	assert_int_equal(res.first_counter, 0);
	assert_int_equal(res.durable_next, 30);
	assert_int_equal(res.tip_ts_ms, ts[2]);
	firn_read_res_free(&res);
	/* max_bytes: 2.5 records' worth gives 2; less than one still gives one */
	req.max_records = 100;
	req.max_bytes = 2500;
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.n, 2);
	assert_int_equal(res.next_counter, 7);
	firn_read_res_free(&res);
	req.max_bytes = 10;
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.n, 1);
	firn_read_res_free(&res);
	/* at the tip and past it */
	req.max_bytes = 1 << 20;
	req.counter = 30;
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.next_counter, 30);
	firn_read_res_free(&res);
	req.counter = 1000;
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.next_counter, 30);
	firn_read_res_free(&res);
	/* by time: the second batch starts at ts[1] */
	req.from = FIRN_READ_AT_TIME;
	req.ts_ms = ts[1];
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.n, 20);
	assert_int_equal(res.recs[0].counter, 10);
	assert_int_equal(res.recs[0].ts_ms, ts[1]);
	assert_int_equal(tu_check(res.recs[0].data, 1000, 0), 10);
	firn_read_res_free(&res);
	req.ts_ms = ts[1] - 1; /* between batches: the next one */
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.recs[0].counter, 10);
	firn_read_res_free(&res);
	req.ts_ms = 0;
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.recs[0].counter, 0);
	firn_read_res_free(&res);
	req.ts_ms = ts[2] + 1; /* after everything: the tip */
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), 0);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.next_counter, 30);
	firn_read_res_free(&res);
	/* bad requests */
	req.max_records = 0;
	assert_int_equal(firn_store_read(st, 4, 0, &req, &res), -EINVAL);
	req.max_records = 1;
	assert_int_equal(firn_store_read(st, 4, 7, &req, &res), -ENOENT);
	firn_store_close(st);
}

static unsigned
count_files(const char *dir, const char *suffix)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name), s = strlen(suffix);

		if (l > s && strcmp(de->d_name + l - s, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void
test_roll_and_reopen(void **state)
{
	struct firn_store_conf conf;
	struct firn_shard_stat ss;
	struct firn_store *st;
	char sdir[4400];
	uint64_t first;

	(void)state;
	conf_small(&conf);
	conf.segment_size = 64u << 10;
	conf.block_max = 16u << 10;
	st = firn_store_open(&conf);
	assert_non_null(st);
	/* ~1 MiB in 16 KiB blocks over 64 KiB segments: many rolls */
	first = append_n(st, 5, 2, 0, 500, 0);
	assert_int_equal(firn_store_wait_durable(st, 5, 2, first + 499, 5000), 0);
	assert_int_equal(firn_store_shard_stat(st, 5, 2, &ss), 0);
	assert_true(ss.segments >= 8);
	read_check(st, 5, 2, 0, 500, 0);
	firn_store_close(st);

	snprintf(sdir, sizeof(sdir), "%s/streams/5/2", tdir);
	assert_int_equal(count_files(sdir, ".seg"), ss.segments);

	/* Reopen: everything is there, counters go on, sealed segments stay sealed. */
	st = firn_store_open(&conf);
	assert_non_null(st);
	assert_int_equal(firn_store_shard_stat(st, 5, 2, &ss), 0);
	assert_int_equal(ss.next_counter, 500);
	assert_int_equal(ss.durable_next, 500);
	read_check(st, 5, 2, 0, 500, 0);
	first = append_n(st, 5, 2, 500, 300, 0);
	assert_int_equal(first, 500);
	assert_int_equal(firn_store_wait_durable(st, 5, 2, 799, 5000), 0);
	read_check(st, 5, 2, 0, 800, 0);
	firn_store_close(st);

	st = firn_store_open(&conf);
	assert_non_null(st);
	read_check(st, 5, 2, 0, 800, 0);
	{
		struct firn_store_stats stats;

		firn_store_stats(st, &stats);
		assert_int_equal(stats.quarantined_segments, 0);
		assert_int_equal(stats.recovered_cut_bytes, 0);
	}
	firn_store_close(st);
}

static void
test_seal(void **state)
{
	struct firn_store_conf conf;
	struct firn_shard_stat ss;
	struct firn_store *st;
	struct firn_record r = {.data = (const uint8_t *)"0123456789abcdef", .data_len = 16};
	uint64_t last, first;
	bool empty;

	(void)state;
	conf_small(&conf);
	st = firn_store_open(&conf);
	assert_non_null(st);
	append_n(st, 6, 0, 0, 20, 64);
	assert_int_equal(firn_store_shard_seal(st, 6, 0, &last, &empty), 0);
	assert_int_equal(last, 19);
	assert_false(empty);
	assert_int_equal(firn_store_append(st, 6, 0, &r, 1, &first, NULL), -ESHUTDOWN);
	/* A shard that never held anything seals empty. */
	assert_int_equal(firn_store_shard_seal(st, 6, 1, &last, &empty), 0);
	assert_true(empty);
	/* Sealing waited: everything is durable. */
	assert_int_equal(firn_store_shard_stat(st, 6, 0, &ss), 0);
	assert_true(ss.sealed);
	assert_int_equal(ss.durable_next, 20);
	firn_store_close(st);

	st = firn_store_open(&conf);
	assert_non_null(st);
	assert_int_equal(firn_store_shard_stat(st, 6, 0, &ss), 0);
	assert_true(ss.sealed);
	assert_int_equal(ss.next_counter, 20);
	assert_int_equal(firn_store_shard_stat(st, 6, 1, &ss), 0);
	assert_true(ss.sealed);
	assert_int_equal(firn_store_append(st, 6, 0, &r, 1, &first, NULL), -ESHUTDOWN);
	assert_int_equal(firn_store_append(st, 6, 1, &r, 1, &first, NULL), -ESHUTDOWN);
	read_check(st, 6, 0, 0, 20, 0);
	firn_store_close(st);
}

static void
test_shard_create(void **state)
{
	struct firn_store_conf conf;
	struct firn_shard_stat ss;
	struct firn_store *st;

	(void)state;
	conf_small(&conf);
	st = firn_store_open(&conf);
	assert_non_null(st);
	assert_int_equal(firn_store_shard_stat(st, 14, 3, &ss), -ENOENT);
	assert_int_equal(firn_store_shard_create(st, 14, 3), 0);
	assert_int_equal(firn_store_shard_stat(st, 14, 3, &ss), 0);
	assert_int_equal(ss.next_counter, 0);
	assert_int_equal(ss.segments, 0);
	assert_false(ss.sealed);
	firn_store_close(st);
	/* An empty log survives a reopen, and takes appends from counter 0. */
	st = firn_store_open(&conf);
	assert_non_null(st);
	assert_int_equal(firn_store_shard_stat(st, 14, 3, &ss), 0);
	assert_int_equal(append_n(st, 14, 3, 0, 3, 100), 0);
	assert_int_equal(firn_store_wait_durable(st, 14, 3, 2, 5000), 0);
	assert_int_equal(firn_store_wait_durable(st, 14, 4, 0, 10), -ENOENT);
	read_check(st, 14, 3, 0, 3, 0);
	firn_store_close(st);
}

static void
test_drop(void **state)
{
	struct firn_store_conf conf;
	struct firn_shard_stat ss;
	struct firn_store *st;
	struct stat sb;
	char sdir[4400];

	(void)state;
	conf_small(&conf);
	st = firn_store_open(&conf);
	assert_non_null(st);
	append_n(st, 7, 0, 0, 50, 0);
	append_n(st, 7, 1, 0, 50, 0);
	append_n(st, 8, 0, 0, 50, 0);
	assert_int_equal(firn_store_wait_durable(st, 7, 0, 49, 5000), 0);
	assert_int_equal(firn_store_wait_durable(st, 8, 0, 49, 5000), 0);
	/* 7/1 may still be pending: drop must cope. */
	assert_int_equal(firn_store_stream_drop(st, 7), 0);
	assert_int_equal(firn_store_shard_stat(st, 7, 0, &ss), -ENOENT);
	assert_int_equal(firn_store_shard_stat(st, 7, 1, &ss), -ENOENT);
	snprintf(sdir, sizeof(sdir), "%s/streams/7", tdir);
	assert_int_equal(stat(sdir, &sb), -1);
	read_check(st, 8, 0, 0, 50, 0);
	/*
	 * An append that raced the drop (a PutRecords on a catalog snapshot
	 * from before DeleteStream) is refused and brings nothing back.
	 */
	{
		struct firn_record r = {.data = (const uint8_t *)"late",
		                        .data_len = 4,
		                        .key = (const uint8_t *)"k",
		                        .key_len = 1};
		uint64_t first;

		assert_int_equal(firn_store_append(st, 7, 1, &r, 1, &first, NULL), -ESHUTDOWN);
		assert_int_equal(firn_store_append(st, 7, 5, &r, 1, &first, NULL), -ESHUTDOWN);
		assert_int_equal(firn_store_shard_stat(st, 7, 1, &ss), -ENOENT);
		firn_store_flush(st);
		firn_store_do_work(st);
		assert_int_equal(stat(sdir, &sb), -1);
		/* Another stream still takes appends. */
		assert_int_equal(firn_store_append(st, 8, 1, &r, 1, &first, NULL), 0);
	}
	/* Dropping a stream with no log is fine. */
	assert_int_equal(firn_store_stream_drop(st, 99), 0);
	firn_store_close(st);
	st = firn_store_open(&conf);
	assert_non_null(st);
	assert_int_equal(firn_store_shard_stat(st, 7, 0, &ss), -ENOENT);
	read_check(st, 8, 0, 0, 50, 0);
	/* ... and the record appended after the drop of 7 is there. */
	assert_int_equal(firn_store_shard_stat(st, 8, 1, &ss), 0);
	assert_int_equal(ss.next_counter, 1);
	firn_store_close(st);
}

/* Does path exist (without following a last symlink)? */
static bool
exists(const char *fmt, const char *a, const char *b)
{
	char path[4600];
	struct stat sb;

	snprintf(path, sizeof(path), fmt, a, b);
	return lstat(path, &sb) == 0;
}

/*
 * firn_store_drop_orphans(): the data of a stream the catalog no longer has
 * goes, by the same path as a drop; a live stream (sealed shards included)
 * stays readable; ids the catalog never gave out, names that are not
 * stream ids, files and symlinks are left alone.
 */
static void
test_drop_orphans(void **state)
{
	static const uint64_t live[] = {4, 3}; /* unsorted on purpose */
	struct firn_store_conf conf;
	struct firn_store_stats stats;
	struct firn_shard_stat ss;
	struct firn_store *st;
	char sdir[4400], path[4600];
	uint64_t removed = 99, last;
	bool empty;

	(void)state;
	conf_small(&conf);
	st = firn_store_open(&conf);
	assert_non_null(st);
	append_n(st, 3, 0, 0, 40, 0);
	append_n(st, 3, 1, 0, 40, 0);
	append_n(st, 4, 0, 0, 30, 0);
	/* Stream 4 resharded: its closed parent 0 and its child 1 both belong to it. */
	assert_int_equal(firn_store_shard_seal(st, 4, 0, &last, &empty), 0);
	append_n(st, 4, 1, 0, 30, 0);
	append_n(st, 5, 0, 0, 60, 0); /* the orphans: 5 with data, 6 empty */
	append_n(st, 5, 2, 0, 60, 0);
	assert_int_equal(firn_store_shard_create(st, 6, 0), 0);
	append_n(st, 9, 0, 0, 20, 0); /* at the catalog's next id: not ours to judge */
	firn_store_close(st);

	snprintf(sdir, sizeof(sdir), "%s/streams", tdir);
	snprintf(path, sizeof(path), "%s/notes.txt", sdir);
	assert_int_equal(firn_file_write_atomic(path, "x\n", 2, 0644), 0);
	snprintf(path, sizeof(path), "%s/007", sdir); /* 7, but not as the store spells it */
	assert_int_equal(firn_mkdir_p(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/lost+found", sdir);
	assert_int_equal(firn_mkdir_p(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/elsewhere/0", tdir);
	assert_int_equal(firn_mkdir_p(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/elsewhere/0/keep", tdir);
	assert_int_equal(firn_file_write_atomic(path, "k", 1, 0644), 0);
	snprintf(path, sizeof(path), "%s/8", sdir); /* a stream id below 9, but a symlink */
	assert_int_equal(symlink("../elsewhere", path), 0);

	st = firn_store_open(&conf);
	assert_non_null(st);
	/* An empty catalog (next id 1) never gave out any of these: nothing goes. */
	assert_int_equal(firn_store_drop_orphans(st, NULL, 0, 1, &removed), 0);
	assert_int_equal(removed, 0);
	assert_true(exists("%s/%s", sdir, "5"));
	assert_true(exists("%s/%s", sdir, "6"));

	assert_int_equal(firn_store_drop_orphans(st, live, 2, 9, &removed), 0);
	assert_int_equal(removed, 2);
	firn_store_stats(st, &stats);
	assert_int_equal(stats.orphan_streams_removed, 2);
	assert_false(exists("%s/%s", sdir, "5"));
	assert_false(exists("%s/%s", sdir, "6"));
	assert_int_equal(firn_store_shard_stat(st, 5, 0, &ss), -ENOENT);
	assert_int_equal(firn_store_shard_stat(st, 5, 2, &ss), -ENOENT);
	assert_int_equal(firn_store_shard_stat(st, 6, 0, &ss), -ENOENT);
	/* Everything else is still there. */
	assert_true(exists("%s/%s", sdir, "9"));
	assert_true(exists("%s/%s", sdir, "notes.txt"));
	assert_true(exists("%s/%s", sdir, "007"));
	assert_true(exists("%s/%s", sdir, "lost+found"));
	assert_true(exists("%s/%s", sdir, "8"));
	assert_true(exists("%s/%s", tdir, "elsewhere/0/keep"));
	read_check(st, 3, 0, 0, 40, 0);
	read_check(st, 3, 1, 0, 40, 0);
	read_check(st, 4, 0, 0, 30, 0);
	read_check(st, 4, 1, 0, 30, 0);
	read_check(st, 9, 0, 0, 20, 0);
	assert_int_equal(firn_store_shard_stat(st, 4, 0, &ss), 0);
	assert_true(ss.sealed);
	/* The live streams take appends as before. */
	assert_int_equal(append_n(st, 3, 0, 40, 10, 0), 40);
	assert_int_equal(firn_store_wait_durable(st, 3, 0, 49, 5000), 0);
	/* Nothing left to do the second time. */
	assert_int_equal(firn_store_drop_orphans(st, live, 2, 9, &removed), 0);
	assert_int_equal(removed, 0);
	firn_store_close(st);

	st = firn_store_open(&conf);
	assert_non_null(st);
	assert_int_equal(firn_store_shard_stat(st, 5, 0, &ss), -ENOENT);
	read_check(st, 3, 0, 0, 50, 0);
	read_check(st, 4, 1, 0, 30, 0);
	firn_store_stats(st, &stats);
	assert_int_equal(stats.orphan_streams_removed, 0);
	firn_store_close(st);
}

static void
test_gc(void **state)
{
	struct firn_read_req req = {
	        .from = FIRN_READ_AT_COUNTER, .max_records = 10, .max_bytes = 1 << 20};
	struct firn_store_conf conf;
	struct firn_shard_stat ss, ss2;
	struct firn_read_res res;
	struct firn_store *st;
	struct firn_store_stats stats;
	int64_t now = firn_now_ms();
	int removed;

	(void)state;
	conf_small(&conf);
	conf.segment_size = 64u << 10;
	conf.block_max = 16u << 10;
	st = firn_store_open(&conf);
	assert_non_null(st);
	append_n(st, 9, 0, 0, 300, 0);
	append_n(st, 10, 0, 0, 300, 0);
	assert_int_equal(firn_store_wait_durable(st, 9, 0, 299, 5000), 0);
	assert_int_equal(firn_store_wait_durable(st, 10, 0, 299, 5000), 0);
	assert_int_equal(firn_store_shard_stat(st, 9, 0, &ss), 0);
	assert_true(ss.segments >= 4);
	assert_int_equal(firn_store_set_retention(st, 9, 1), 0);
	assert_int_equal(firn_store_set_retention(st, 9, 0), -EINVAL);
	/* Now: nothing is old enough. */
	assert_int_equal(firn_store_gc(st, now), 0);
	/* Two hours on: stream 9 (1 h) loses every sealed segment, 10 (24 h) none. */
	removed = firn_store_gc(st, now + 2 * 3600 * 1000);
	assert_int_equal(removed, (int)ss.segments - 1);
	assert_int_equal(firn_store_shard_stat(st, 9, 0, &ss2), 0);
	assert_int_equal(ss2.segments, 1);
	assert_true(ss2.first_counter > 0);
	assert_int_equal(ss2.next_counter, 300);
	assert_true(ss2.bytes < ss.bytes);
	assert_int_equal(firn_store_shard_stat(st, 10, 0, &ss), 0);
	assert_true(ss.segments >= 4);
	assert_int_equal(ss.first_counter, 0);
	/* Reading from 0 starts at the oldest retained record. */
	assert_int_equal(firn_store_read(st, 9, 0, &req, &res), 0);
	assert_int_equal(res.first_counter, ss2.first_counter);
	assert_true(res.n > 0);
	assert_int_equal(res.recs[0].counter, ss2.first_counter);
	firn_read_res_free(&res);
	read_check(st, 9, 0, ss2.first_counter, 300, ss2.first_counter);
	firn_store_stats(st, &stats);
	assert_int_equal(stats.gc_segments, (uint64_t)removed);
	/* 25 hours on: stream 10 too. */
	assert_true(firn_store_gc(st, now + 25 * 3600 * 1000) > 0);
	/*
	 * Both tails have expired whole: GC asks the writer to roll them, and
	 * the next GC removes them. Nothing is retained, counters go on.
	 */
	firn_store_do_work(st);
	assert_int_equal(firn_store_gc(st, now + 25 * 3600 * 1000), 2);
	assert_int_equal(firn_store_shard_stat(st, 10, 0, &ss), 0);
	assert_int_equal(ss.first_counter, 300);
	assert_int_equal(ss.next_counter, 300);
	assert_int_equal(ss.segments, 1); /* the fresh, empty tail */
	req.counter = 0;
	assert_int_equal(firn_store_read(st, 10, 0, &req, &res), 0);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.next_counter, 300);
	firn_read_res_free(&res);
	assert_int_equal(append_n(st, 10, 0, 300, 5, 100), 300);
	assert_int_equal(firn_store_wait_durable(st, 10, 0, 304, 5000), 0);
	read_check(st, 10, 0, 300, 305, 300);
	firn_store_close(st);
	/* Gone from disk as well. */
	st = firn_store_open(&conf);
	assert_non_null(st);
	assert_int_equal(firn_store_shard_stat(st, 9, 0, &ss), 0);
	assert_int_equal(ss.first_counter, 300);
	assert_int_equal(ss.next_counter, 300);
	assert_int_equal(firn_store_shard_stat(st, 10, 0, &ss), 0);
	assert_int_equal(ss.first_counter, 300);
	assert_int_equal(ss.next_counter, 305);
	read_check(st, 10, 0, 300, 305, 300);
	firn_store_close(st);
}

static void
test_backpressure(void **state)
{
	struct firn_store_conf conf;
	struct firn_store *st;
	struct firn_record r = {0};
	static uint8_t buf[4000];
	uint64_t first, seq = 0;
	int rc, i;

	(void)state;
	conf_small(&conf);
	conf.shard_pending_max = 64u << 10;
	conf.flush_interval_us = 60u * 1000000u;
	st = firn_store_open(&conf);
	assert_non_null(st);
	r.data = buf;
	r.data_len = sizeof(buf);
	for (i = 0; i < 100; i++) {
		tu_fill(buf, sizeof(buf), 0, seq);
		rc = firn_store_append(st, 11, 0, &r, 1, &first, NULL);
		if (rc == -EAGAIN)
			break;
		assert_int_equal(rc, 0);
		assert_int_equal(first, seq);
		seq++;
	}
	assert_int_equal(rc, -EAGAIN);
	assert_true(seq >= 10 && seq <= 17); /* ~64 KiB of 4 KiB records */
	/* Another shard is not held back. */
	assert_int_equal(firn_store_append(st, 11, 1, &r, 1, &first, NULL), 0);
	firn_store_flush(st);
	assert_int_equal(firn_store_wait_durable(st, 11, 0, seq - 1, 5000), 0);
	tu_fill(buf, sizeof(buf), 0, seq);
	assert_int_equal(firn_store_append(st, 11, 0, &r, 1, &first, NULL), 0);
	assert_int_equal(first, seq);
	firn_store_close(st);
}

struct durable_log {
	uint64_t calls, max_next;
	int errors;
};

static void
on_durable(void *arg, uint64_t sid, uint32_t shard, uint64_t next, int status)
{
	struct durable_log *l = arg;

	(void)sid;
	(void)shard;
	l->calls++;
	if (status < 0)
		l->errors++;
	if (next > l->max_next)
		l->max_next = next;
}

static void
test_group_commit(void **state)
{
	struct firn_store_conf conf;
	struct firn_store_stats stats;
	struct firn_store *st;
	struct durable_log log = {0};
	uint32_t s;

	(void)state;
	conf_small(&conf);
	conf.flush_interval_us = 60u * 1000000u;
	conf.on_durable = on_durable;
	conf.on_durable_arg = &log;
	st = firn_store_open(&conf);
	assert_non_null(st);
	/* First write of each shard creates its segment: get that out of the way. */
	for (s = 0; s < 64; s++)
		append_n(st, 12, s, 0, 1, 100);
	firn_store_flush(st);
	for (s = 0; s < 64; s++)
		assert_int_equal(firn_store_wait_durable(st, 12, s, 0, 5000), 0);
	firn_store_stats(st, &stats);
	assert_int_equal(stats.blocks_written, 64);
	assert_int_equal(stats.commits, 1);
	/* Three more rounds over 64 slow shards: one submit each. */
	for (int round = 1; round <= 3; round++) {
		for (s = 0; s < 64; s++)
			append_n(st, 12, s, (uint64_t)round * 5, 5, 200);
		firn_store_flush(st);
		for (s = 0; s < 64; s++)
			assert_int_equal(
			        firn_store_wait_durable(st, 12, s, (uint64_t)round * 5, 5000), 0);
	}
	firn_store_stats(st, &stats);
	assert_int_equal(stats.blocks_written, 4 * 64);
	assert_int_equal(stats.commits, 4);
	assert_int_equal(log.calls, 4 * 64);
	assert_int_equal(log.errors, 0);
	assert_int_equal(log.max_next, 16);
	{
		uint64_t lat = 0;
		int b;

		for (b = 0; b < 24; b++)
			lat += stats.commit_lat_us_log2[b];
		assert_int_equal(lat, stats.commits);
	}
	firn_store_close(st);
}

/* ---- threaded ----------------------------------------------------------------------- */

struct appender {
	struct firn_store *st;
	uint32_t shard;
	unsigned n;
	int rc;
};

static void *
appender_main(void *arg)
{
	struct appender *a = arg;
	static __thread uint8_t buf[16][3000];
	uint64_t seq = 0, first;

	while (seq < a->n) {
		struct firn_record r[16];
		unsigned k = FIRN_MIN(16u, (unsigned)(a->n - seq)), i;
		int rc;

		for (i = 0; i < k; i++) {
			uint32_t len = TU_REC_MIN + (uint32_t)((seq + i) * 131 % 2900);

			memset(&r[i], 0, sizeof(r[i]));
			tu_fill(buf[i], len, a->shard, seq + i);
			r[i].data = buf[i];
			r[i].data_len = len;
			r[i].key = (const uint8_t *)"key";
			r[i].key_len = 3;
			r[i].producer_id = 7;
			r[i].producer_seq = seq + i;
		}
		rc = firn_store_append(a->st, 13, a->shard, r, k, &first, NULL);
		if (rc == -EAGAIN) {
			usleep(100);
			continue;
		}
		if (rc < 0 || first != seq) {
			a->rc = rc < 0 ? rc : -EPROTO;
			return NULL;
		}
		/* Every few batches, wait for durability like a producer would. */
		if ((seq / 16) % 8 == 0) {
			rc = firn_store_wait_durable(a->st, 13, a->shard, first + k - 1, 5000);
			if (rc < 0) {
				a->rc = rc;
				return NULL;
			}
		}
		seq += k;
	}
	a->rc = firn_store_wait_durable(a->st, 13, a->shard, seq - 1, 10000);
	return NULL;
}

static void
test_threaded(void **state)
{
	struct firn_store_conf conf;
	struct firn_store_stats stats;
	struct firn_store *st;
	struct appender a[4];
	pthread_t t[4];
	int i;

	(void)state;
	conf_small(&conf);
	conf.threaded = true;
	conf.writers = 2;
	conf.segment_size = 256u << 10;
	conf.flush_interval_us = 200;
	st = firn_store_open(&conf);
	assert_non_null(st);
	for (i = 0; i < 4; i++) {
		a[i] = (struct appender){.st = st, .shard = (uint32_t)i, .n = 2000};
		assert_int_equal(pthread_create(&t[i], NULL, appender_main, &a[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].rc, 0);
	}
	for (i = 0; i < 4; i++)
		read_check(st, 13, (uint32_t)i, 0, 2000, 0);
	firn_store_stats(st, &stats);
	assert_int_equal(stats.appended_records, 8000);
	assert_int_equal(stats.durable_records, 8000);
	assert_true(stats.commits < stats.blocks_written);
	firn_store_close(st);
	/* And once more from disk, threaded open. */
	st = firn_store_open(&conf);
	assert_non_null(st);
	for (i = 0; i < 4; i++)
		read_check(st, 13, (uint32_t)i, 0, 2000, 0);
	firn_store_close(st);
}

/*
 * A disk whose completions come late (reap sleeps first, as when another
 * tenant's writeback burst sits in the device queue ahead of ours): every
 * group commit then takes 60 ms or more and is counted as slow; commits on
 * the plain disk are not.
 */
static unsigned slow_reap_ms;

static int
slow_reap(struct firn_disk_queue *q, struct firn_disk_cpl *cpl, unsigned max, unsigned min_wait)
{
	if (slow_reap_ms > 0 && firn_disk_uring_ops.inflight(q) > 0)
		usleep(slow_reap_ms * 1000);
	return firn_disk_uring_ops.reap(q, cpl, max, min_wait);
}

static void
test_slow_commits(void **state)
{
	struct firn_disk_ops slow = firn_disk_uring_ops;
	struct firn_store_conf conf;
	struct firn_store_stats stats;
	struct firn_store *st;
	uint64_t first;

	(void)state;
	slow.reap = slow_reap;
	conf_small(&conf);
	conf.disk = &slow;
	slow_reap_ms = 0;
	st = firn_store_open(&conf);
	assert_non_null(st);
	first = append_n(st, 1, 0, 0, 200, 100);
	assert_int_equal(firn_store_wait_durable(st, 1, 0, first + 199, 5000), 0);
	firn_store_stats(st, &stats);
	assert_true(stats.commits >= 1);
	assert_int_equal(stats.slow_commits, 0);
	slow_reap_ms = 60;
	first = append_n(st, 1, 0, 200, 200, 100);
	assert_int_equal(firn_store_wait_durable(st, 1, 0, first + 199, 10000), 0);
	slow_reap_ms = 0;
	firn_store_stats(st, &stats);
	assert_true(stats.slow_commits >= 1);
	assert_true(stats.slow_commits <= stats.commits);
	read_check(st, 1, 0, 0, 400, 0);
	firn_store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_roundtrip_single, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_appends, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_tip_only_durable, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_read_limits, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_roll_and_reopen, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_seal, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_shard_create, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_drop, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_drop_orphans, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_threaded, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_slow_commits, setup, teardown),
	};
	int rc;

	firn_log_set_level(FIRN_LOG_WARN);
	if (tu_mkdtemp(base, sizeof(base), "store") < 0) {
		fprintf(stderr, "skip: cannot create a scratch directory\n");
		return 77;
	}
	if (!tu_odirect_ok(base)) {
		fprintf(stderr, "skip: %s does not support O_DIRECT (tmpfs?)\n", base);
		firn_rm_rf(base);
		return 77;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	firn_rm_rf(base);
	return rc == 0 ? 0 : 1;
}
