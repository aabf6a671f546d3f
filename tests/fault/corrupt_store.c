/*
 * corrupt_store.c - torn and corrupted segment files.
 *
 * Builds a small store (one shard, many 64 KiB segments of 8 KiB blocks),
 * closes it, damages a file the way a disk or a crash would, reopens and
 * checks what recovery kept and what it reported:
 *
 *   tail cut mid-block    the tail is cut back to its last whole block
 *                         (recovered_cut_bytes), every earlier record reads
 *                         back, counters go on from there, and a later
 *                         reopen finds nothing stale past the new blocks
 *   tail bit flip         the same, cut at the flipped block
 *   sealed block flip     open trusts the footer; reads return every record
 *                         before the bad block, then -EIO naming it; records
 *                         after it still read
 *   sealed footer flip    quarantined (renamed .quarantine, counted); all
 *                         its blocks are still readable
 *   sealed cut in half    quarantined; the records before the cut read back,
 *                         the read skips the lost range to the next segment
 *   sealed header flip    quarantined, its records lost, the rest readable
 *   torn creation         a last segment with a torn header and only zeroes
 *                         after it is removed quietly (a crash while it was
 *                         created); with data after it, it is quarantined
 *   wrong KEK             open refuses (-EACCES), renames nothing
 *
 * Exit 0 pass, 1 fail, 77 skip (no O_DIRECT under the scratch directory).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "firn_disk_uring.h"
#include "firn_segment.h"
#include "firn_store.h"
#include "../unit/store/store_testutil.h"

#define NREC 620 /* not a multiple of a segment's 40: the tail holds blocks */
#define STREAM 3

static char base[4096], dir[4200];
static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "FAIL %s:%d: %s: ", __func__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
		}                                                                                  \
	} while (0)

static void
conf_for(struct firn_store_conf *c, const uint8_t *kek)
{
	firn_store_conf_defaults(c);
	c->dir = dir;
	c->kek = kek;
	c->disk = &firn_disk_uring_ops;
	c->threaded = false;
	c->segment_size = 64u << 10;
	c->prealloc = 64u << 10;
	c->block_max = 8u << 10;
	c->flush_interval_us = 0;
}

static void
append_range(struct firn_store *st, uint64_t seq0, unsigned n)
{
	static uint8_t buf[5][1100];
	unsigned done = 0, i;

	while (done < n) {
		struct firn_record r[5];
		unsigned k = FIRN_MIN(5u, n - done);
		uint64_t first;

		for (i = 0; i < k; i++) {
			tu_fill(buf[i], 1000, 0, seq0 + done + i);
			memset(&r[i], 0, sizeof(r[i]));
			r[i].data = buf[i];
			r[i].data_len = 1000;
		}
		if (firn_store_append(st, STREAM, 0, r, k, &first, NULL) < 0 ||
		    firn_store_wait_durable(st, STREAM, 0, first + k - 1, 5000) < 0) {
			fprintf(stderr, "append failed: %s\n", firn_err_msg());
			exit(1);
		}
		done += k;
	}
}

static int build_n(unsigned n);

/* A fresh store with NREC records (seq == counter). */
static int
build(void)
{
	return build_n(NREC);
}

static int
build_n(unsigned n)
{
	struct firn_store_conf conf;
	struct firn_store *st;

	snprintf(dir, sizeof(dir), "%s/store", base);
	firn_rm_rf(dir);
	conf_for(&conf, tu_kek());
	st = firn_store_open(&conf);
	if (st == NULL)
		return -1;
	append_range(st, 0, n);
	firn_store_close(st);
	return 0;
}

/* Segment files of the shard, sorted by name; returns how many. */
static unsigned
seg_files(char names[][64], unsigned max)
{
	char sdir[4400];
	struct dirent *de;
	unsigned n = 0, i, j;
	DIR *d;

	snprintf(sdir, sizeof(sdir), "%s/streams/%d/0", dir, STREAM);
	d = opendir(sdir);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max)
		if (strstr(de->d_name, ".seg") != NULL && strlen(de->d_name) < 64)
			memcpy(names[n++], de->d_name, strlen(de->d_name) + 1);
	closedir(d);
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char t[64];

			memcpy(t, names[j], 64);
			memcpy(names[j], names[j - 1], 64);
			memcpy(names[j - 1], t, 64);
		}
	return n;
}

static void
seg_path(const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/streams/%d/0/%s", dir, STREAM, name);
}

/* Index entries of a segment file (scan); n = 0 on failure. */
static struct firn_seg_index_entry *
seg_entries(const char *name, uint32_t *n, bool *sealed)
{
	struct firn_seg_codec *cx = firn_seg_codec_create(64u << 10, false);
	struct firn_seg_scan scan;
	struct firn_seg_index_entry *e = NULL;
	char path[4600];
	int fd;

	*n = 0;
	seg_path(name, path, sizeof(path));
	fd = open(path, O_RDONLY);
	memset(&scan, 0, sizeof(scan));
	if (fd >= 0 && firn_seg_scan_file(fd, tu_kek(), cx, &scan) == 0) {
		e = scan.ents;
		*n = scan.n;
		*sealed = scan.sealed;
		scan.ents = NULL;
		firn_seg_scan_free(&scan);
	}
	if (fd >= 0)
		close(fd);
	firn_seg_codec_destroy(cx);
	return e;
}

static void
flip(const char *name, uint64_t off)
{
	char path[4600];
	uint8_t b;
	int fd;

	seg_path(name, path, sizeof(path));
	fd = open(path, O_RDWR);
	if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1) {
		fprintf(stderr, "flip %s: %s\n", path, strerror(errno));
		exit(1);
	}
	b ^= 0x40;
	if (pwrite(fd, &b, 1, (off_t)off) != 1 || fsync(fd) < 0)
		exit(1);
	close(fd);
}

static void
cut(const char *name, uint64_t len)
{
	char path[4600];

	seg_path(name, path, sizeof(path));
	if (truncate(path, (off_t)len) < 0)
		exit(1);
}

/*
 * Read [from, to) expecting seq == counter, stopping at a gap or an error.
 * Returns the counter reached; *rc_out gets the last read's rc.
 */
static uint64_t
read_upto(struct firn_store *st, uint64_t from, uint64_t to, int *rc_out, uint64_t *gap_to)
{
	struct firn_read_req req = {
	        .from = FIRN_READ_AT_COUNTER, .max_records = 97, .max_bytes = 1 << 20};
	uint64_t c = from;

	*rc_out = 0;
	if (gap_to)
		*gap_to = 0;
	while (c < to) {
		struct firn_read_res res;
		uint32_t i;
		int rc;

		req.counter = c;
		rc = firn_store_read(st, STREAM, 0, &req, &res);
		*rc_out = rc;
		if (rc < 0 || res.n == 0)
			break;
		for (i = 0; i < res.n; i++, c++) {
			if (res.recs[i].counter != c) {
				/* A gap: report where the read went on. */
				if (gap_to)
					*gap_to = res.recs[i].counter;
				firn_read_res_free(&res);
				return c;
			}
			if (tu_check(res.recs[i].data, res.recs[i].data_len, 0) != c) {
				firn_read_res_free(&res);
				*rc_out = -EPROTO;
				return c;
			}
		}
		firn_read_res_free(&res);
	}
	return c;
}

static struct firn_store *
reopen(void)
{
	struct firn_store_conf conf;
	struct firn_store *st;

	conf_for(&conf, tu_kek());
	st = firn_store_open(&conf);
	if (st == NULL)
		fprintf(stderr, "reopen failed: %s\n", firn_err_msg());
	return st;
}

/* Damage the tail (by cutting or flipping block k) and check the cut. */
static void
tail_case(bool flip_it)
{
	char names[64][64];
	unsigned nf;
	uint32_t n;
	bool sealed = false;
	struct firn_seg_index_entry *e;
	struct firn_store *st;
	struct firn_store_stats stats;
	struct firn_shard_stat ss;
	uint64_t lost_from, got;
	int rc;

	if (build() < 0)
		exit(1);
	nf = seg_files(names, 64);
	CHECK(nf >= 4, "only %u segments", nf);
	e = seg_entries(names[nf - 1], &n, &sealed);
	CHECK(n >= 2 && !sealed, "tail has %u blocks, sealed %d", n, sealed);
	if (n < 2)
		return;
	if (flip_it) {
		/* A payload byte of the second-to-last block. */
		lost_from = e[n - 2].first_counter;
		flip(names[nf - 1], e[n - 2].offset + 200);
	} else {
		lost_from = e[n - 1].first_counter;
		cut(names[nf - 1], e[n - 1].offset + e[n - 1].disk_len / 2);
	}
	free(e);
	st = reopen();
	CHECK(st != NULL, "reopen");
	if (st == NULL)
		return;
	firn_store_stats(st, &stats);
	CHECK(stats.recovered_cut_bytes > 0, "no cut reported");
	CHECK(stats.quarantined_segments == 0, "%" PRIu64 " quarantined",
	      stats.quarantined_segments);
	CHECK(firn_store_shard_stat(st, STREAM, 0, &ss) == 0, "stat");
	CHECK(ss.next_counter == lost_from, "next %" PRIu64 " expected %" PRIu64, ss.next_counter,
	      lost_from);
	got = read_upto(st, 0, lost_from, &rc, NULL);
	CHECK(got == lost_from && rc == 0, "read %" PRIu64 "/%" PRIu64 " rc %d", got, lost_from,
	      rc);
	/* Counters go on from the cut; new blocks overwrite the damaged region. */
	append_range(st, lost_from, 3);
	firn_store_close(st);
	st = reopen();
	CHECK(st != NULL, "second reopen");
	if (st == NULL)
		return;
	firn_store_stats(st, &stats);
	CHECK(stats.recovered_cut_bytes == 0, "stale bytes after the new blocks");
	got = read_upto(st, 0, lost_from + 3, &rc, NULL);
	CHECK(got == lost_from + 3 && rc == 0, "read %" PRIu64 " rc %d", got, rc);
	CHECK(firn_store_shard_stat(st, STREAM, 0, &ss) == 0 && ss.next_counter == lost_from + 3,
	      "next %" PRIu64, ss.next_counter);
	firn_store_close(st);
}

static void
test_tail_cut(void)
{
	tail_case(false);
}

static void
test_tail_flip(void)
{
	tail_case(true);
}

/* A block inside a sealed segment goes bad after the fact. */
static void
test_sealed_block_flip(void)
{
	char names[64][64];
	unsigned nf;
	uint32_t n;
	bool sealed = false;
	struct firn_seg_index_entry *e;
	struct firn_store *st;
	struct firn_store_stats stats;
	uint64_t bad_from, bad_to, got;
	int rc;

	if (build() < 0)
		exit(1);
	nf = seg_files(names, 64);
	e = seg_entries(names[1], &n, &sealed);
	CHECK(n >= 3 && sealed, "segment 1: %u blocks, sealed %d", n, sealed);
	if (n < 3)
		return;
	bad_from = e[1].first_counter;
	bad_to = e[1].first_counter + e[1].count;
	flip(names[1], e[1].offset + 300);
	free(e);
	st = reopen();
	CHECK(st != NULL, "reopen");
	if (st == NULL)
		return;
	firn_store_stats(st, &stats);
	CHECK(stats.quarantined_segments == 0 && stats.recovered_cut_bytes == 0,
	      "open should trust the footer");
	got = read_upto(st, 0, NREC, &rc, NULL);
	CHECK(got == bad_from, "read stopped at %" PRIu64 ", bad block starts at %" PRIu64, got,
	      bad_from);
	/* The read that reached it returned what it had; the next one reports it. */
	CHECK(rc == -EIO, "read at the bad block: rc %d", rc);
	{
		struct firn_read_req req = {.from = FIRN_READ_AT_COUNTER,
		                            .counter = bad_from,
		                            .max_records = 10,
		                            .max_bytes = 1 << 20};
		struct firn_read_res res;

		rc = firn_store_read(st, STREAM, 0, &req, &res);
		CHECK(rc == -EIO, "read at the bad block: %d", rc);
		CHECK(strstr(firn_err_msg(), "damaged") != NULL, "message: %s", firn_err_msg());
	}
	got = read_upto(st, bad_to, NREC, &rc, NULL);
	CHECK(got == NREC && rc == 0, "after the bad block: %" PRIu64 " rc %d", got, rc);
	(void)nf;
	firn_store_close(st);
}

static bool
exists(const char *name)
{
	char path[4600];
	struct stat sb;

	seg_path(name, path, sizeof(path));
	return stat(path, &sb) == 0;
}

static void
sealed_quarantine_case(int how)
{
	char names[64][64], qname[80];
	unsigned nf;
	uint32_t n;
	bool sealed = false;
	struct firn_seg_index_entry *e;
	struct firn_store *st;
	struct firn_store_stats stats;
	uint64_t seg_first, seg_next, keep_to, got, gap;
	struct stat sb;
	char path[4600];
	int rc;

	if (build() < 0)
		exit(1);
	nf = seg_files(names, 64);
	e = seg_entries(names[2], &n, &sealed);
	CHECK(n >= 4 && sealed, "segment 2: %u blocks, sealed %d", n, sealed);
	if (n < 4)
		return;
	seg_first = e[0].first_counter;
	seg_next = e[n - 1].first_counter + e[n - 1].count;
	seg_path(names[2], path, sizeof(path));
	stat(path, &sb);
	switch (how) {
	case 0: /* footer: every block survives */
		flip(names[2], (uint64_t)sb.st_size - 40);
		keep_to = NREC;
		break;
	case 1: /* cut in the middle of block 2 */
		cut(names[2], e[2].offset + 4096);
		keep_to = e[2].first_counter;
		break;
	default: /* header: nothing of it survives */
		flip(names[2], 20);
		keep_to = seg_first;
		break;
	}
	free(e);
	st = reopen();
	CHECK(st != NULL, "reopen");
	if (st == NULL)
		return;
	firn_store_stats(st, &stats);
	CHECK(stats.quarantined_segments == 1, "quarantined %" PRIu64, stats.quarantined_segments);
	snprintf(qname, sizeof(qname), "%s.quarantine", names[2]);
	CHECK(exists(qname) && !exists(names[2]), "renamed to %s", qname);
	got = read_upto(st, 0, NREC, &rc, &gap);
	CHECK(got == keep_to && rc == 0, "kept up to %" PRIu64 ", expected %" PRIu64 " (rc %d)",
	      got, keep_to, rc);
	if (keep_to < seg_next)
		CHECK(gap == seg_next, "the read skips to %" PRIu64 ", expected %" PRIu64, gap,
		      seg_next);
	got = read_upto(st, seg_next, NREC, &rc, NULL);
	CHECK(got == NREC && rc == 0, "after the segment: %" PRIu64 " rc %d", got, rc);
	firn_store_close(st);
	/* A second open does not count it again, and still reads the prefix. */
	st = reopen();
	CHECK(st != NULL, "reopen 2");
	if (st == NULL)
		return;
	firn_store_stats(st, &stats);
	CHECK(stats.quarantined_segments == 0, "counted again");
	got = read_upto(st, 0, NREC, &rc, NULL);
	CHECK(got == keep_to, "prefix after reopen: %" PRIu64, got);
	CHECK(stats.recovered_cut_bytes == 0, "cut %" PRIu64, stats.recovered_cut_bytes);
	(void)nf;
	firn_store_close(st);
}

static void
test_sealed_footer_flip(void)
{
	sealed_quarantine_case(0);
}

static void
test_sealed_cut(void)
{
	sealed_quarantine_case(1);
}

static void
test_sealed_header_flip(void)
{
	sealed_quarantine_case(2);
}

/*
 * A crash while a new segment was being created, right after a roll: its
 * header torn, only zeroes after it. 600 records fill 15 segments exactly,
 * so the last file is the fresh, empty segment the roll started.
 */
static void
test_torn_creation(void)
{
	char names[64][64];
	struct firn_store *st;
	struct firn_store_stats stats;
	struct firn_shard_stat ss;
	unsigned nf, pass;
	int rc;

	for (pass = 0; pass < 2; pass++) {
		if (build_n(600) < 0)
			exit(1);
		nf = seg_files(names, 64);
		CHECK(nf >= 2, "%u files", nf);
		if (nf < 2)
			return;
		flip(names[nf - 1], 100); /* the header's CRC no longer holds */
		if (pass == 1)
			flip(names[nf - 1], 4096 + 5000); /* and something after it */
		st = reopen();
		CHECK(st != NULL, "reopen");
		if (st == NULL)
			return;
		firn_store_stats(st, &stats);
		if (pass == 0) {
			CHECK(stats.quarantined_segments == 0,
			      "an interrupted creation is not damage");
			CHECK(!exists(names[nf - 1]), "%s should be removed", names[nf - 1]);
		} else {
			CHECK(stats.quarantined_segments == 1, "quarantined %" PRIu64,
			      stats.quarantined_segments);
		}
		CHECK(firn_store_shard_stat(st, STREAM, 0, &ss) == 0 && ss.next_counter == 600,
		      "next %" PRIu64, ss.next_counter);
		/* Counters go on in a new segment. */
		append_range(st, 600, 3);
		CHECK(read_upto(st, 0, 603, &rc, NULL) == 603 && rc == 0, "read rc %d", rc);
		firn_store_close(st);
	}
}

static void
test_wrong_kek(void)
{
	struct firn_store_conf conf;
	struct firn_store *st;
	uint8_t bad[32];
	char names[64][64];
	unsigned nf, nf2;

	if (build() < 0)
		exit(1);
	nf = seg_files(names, 64);
	memcpy(bad, tu_kek(), 32);
	bad[0] ^= 1;
	conf_for(&conf, bad);
	st = firn_store_open(&conf);
	CHECK(st == NULL, "opened with the wrong KEK");
	if (st != NULL)
		firn_store_close(st);
	CHECK(firn_err_code() == -EACCES, "code %d (%s)", firn_err_code(), firn_err_msg());
	nf2 = seg_files(names, 64);
	CHECK(nf2 == nf && strstr(names[0], "quarantine") == NULL, "files renamed");
	st = reopen();
	CHECK(st != NULL, "the right KEK still opens it");
	if (st != NULL) {
		int rc;

		CHECK(read_upto(st, 0, NREC, &rc, NULL) == NREC, "all records");
		firn_store_close(st);
	}
}

int
main(void)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
	        {"tail_cut", test_tail_cut},
	        {"tail_flip", test_tail_flip},
	        {"sealed_block_flip", test_sealed_block_flip},
	        {"sealed_footer_flip", test_sealed_footer_flip},
	        {"sealed_cut", test_sealed_cut},
	        {"sealed_header_flip", test_sealed_header_flip},
	        {"torn_creation", test_torn_creation},
	        {"wrong_kek", test_wrong_kek},
	};
	unsigned i, passed = 0;

	firn_log_set_level(FIRN_LOG_ERR + 0);
	if (tu_mkdtemp(base, sizeof(base), "corrupt") < 0) {
		fprintf(stderr, "skip: cannot create a scratch directory\n");
		return 77;
	}
	if (!tu_odirect_ok(base)) {
		fprintf(stderr, "skip: %s does not support O_DIRECT (tmpfs?)\n", base);
		firn_rm_rf(base);
		return 77;
	}
	for (i = 0; i < FIRN_ARRAY_SIZE(tests); i++) {
		int before = failures;

		tests[i].fn();
		printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
		if (failures == before)
			passed++;
	}
	printf("corruption: %u of %zu cases passed (%d checks)\n", passed, FIRN_ARRAY_SIZE(tests),
	       checks);
	firn_rm_rf(base);
	return failures == 0 ? 0 : 1;
}
