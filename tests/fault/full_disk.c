/*
 * full_disk.c - the store on a file system that fills up.
 *
 * Makes a 64 MiB ext4 image, loop-mounts it (needs root, losetup and
 * mkfs.ext4; otherwise exit 77 with the reason), fills most of it with a
 * filler file and runs the store on the rest:
 *
 *   1. appends (writer threads, durable waits) until the disk is full: an
 *      append must return -ENOSPC, or a durable wait must report it;
 *   2. everything acknowledged before that reads back intact;
 *   3. the filler is deleted: appends are accepted again within seconds,
 *      the records that were accepted but stuck become durable, and
 *      everything reads back, also after a reopen.
 *
 * Twice: with preallocation (the fallocate ahead of the tail is what fails
 * first) and without (the data writes fail and are retried).
 *
 * The test itself runs in a child process; the parent only sets up and
 * tears down the mount, so the image is unmounted and removed on every way
 * out (pass, fail, crash, SIGTERM from the test harness, timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "firn_disk_uring.h"
#include "firn_store.h"
#include "../unit/store/store_testutil.h"

#define NSHARDS 4
#define STREAM 77
#define RECLEN 4000
#define BATCH 16

static char base[4096], img[4200], mnt[4200], sdir[4300], filler[4300];
static volatile pid_t child = -1;
static int mounted;

static int
run(const char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
cleanup(void)
{
	if (mounted) {
		const char *const um[] = {"umount", mnt, NULL};

		if (run(um) != 0)
			umount2(mnt, MNT_DETACH);
		mounted = 0;
	}
	firn_rm_rf(base);
}

static void
on_signal(int sig)
{
	/* Kill the test; main() returns from waitpid and cleans up. */
	if (child > 0)
		kill(child, SIGKILL);
	(void)sig;
}

/* ---- the test (child) ------------------------------------------------------------------ */

#define TFAIL(...)                                                                                 \
	do {                                                                                       \
		fprintf(stderr, "FAIL line %d: ", __LINE__);                                       \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fprintf(stderr, "\n");                                                             \
		fflush(stdout);                                                                    \
		_exit(1);                                                                          \
	} while (0)

static uint64_t appended[NSHARDS]; /* records accepted (counters 0 .. n-1) */
static uint64_t acked[NSHARDS];    /* of which known durable */

static int
append_batch(struct firn_store *st, uint32_t s)
{
	static uint8_t buf[BATCH][RECLEN];
	struct firn_record r[BATCH];
	uint64_t first;
	unsigned i;
	int rc;

	for (i = 0; i < BATCH; i++) {
		tu_fill(buf[i], RECLEN, s, appended[s] + i);
		memset(&r[i], 0, sizeof(r[i]));
		r[i].data = buf[i];
		r[i].data_len = RECLEN;
	}
	rc = firn_store_append(st, STREAM, s, r, BATCH, &first, NULL);
	if (rc == 0) {
		if (first != appended[s])
			TFAIL("shard %u: counter %" PRIu64 " expected %" PRIu64, s, first,
			      appended[s]);
		appended[s] += BATCH;
	}
	return rc;
}

static void
check_all(struct firn_store *st, const uint64_t *upto)
{
	uint32_t s;

	for (s = 0; s < NSHARDS; s++) {
		struct firn_read_req req = {
		        .from = FIRN_READ_AT_COUNTER, .max_records = 256, .max_bytes = 1 << 20};
		uint64_t c = 0;

		while (c < upto[s]) {
			struct firn_read_res res;
			uint32_t i;
			int rc;

			req.counter = c;
			rc = firn_store_read(st, STREAM, s, &req, &res);
			if (rc < 0 || res.n == 0)
				TFAIL("shard %u: read at %" PRIu64 " of %" PRIu64 ": %d %s", s, c,
				      upto[s], rc, firn_err_msg());
			for (i = 0; i < res.n && c < upto[s]; i++, c++)
				if (res.recs[i].counter != c ||
				    tu_check(res.recs[i].data, res.recs[i].data_len, s) != c)
					TFAIL("shard %u: record %" PRIu64 " damaged", s, c);
			firn_read_res_free(&res);
		}
	}
}

static uint64_t prealloc;

static void
conf_for(struct firn_store_conf *c)
{
	firn_store_conf_defaults(c);
	c->dir = sdir;
	c->kek = tu_kek();
	c->disk = &firn_disk_uring_ops;
	c->threaded = true;
	c->writers = 1;
	c->segment_size = 4u << 20;
	c->prealloc = prealloc;
	c->block_max = 64u << 10;
	c->flush_interval_us = 200;
}

static int
test_phase(uint64_t pre, const char *name)
{
	struct firn_store_conf conf;
	struct firn_store_stats stats;
	struct firn_store *st;
	struct statvfs vfs;
	uint64_t free_bytes, total = 0, t0;
	bool full = false;
	uint32_t s;
	int fd, rc;

	prealloc = pre;
	snprintf(sdir, sizeof(sdir), "%s/%s", mnt, name);
	memset(appended, 0, sizeof(appended));
	memset(acked, 0, sizeof(acked));
	printf("-- %s: prealloc %" PRIu64 " KiB\n", name, pre >> 10);
	if (statvfs(mnt, &vfs) < 0)
		TFAIL("statvfs");
	free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	/* Leave ~12 MiB for the store. */
	fd = open(filler, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || fallocate(fd, 0, 0, (off_t)(free_bytes - (12u << 20))) < 0)
		TFAIL("filler: %s", strerror(errno));
	fsync(fd);
	close(fd);

	conf_for(&conf);
	st = firn_store_open(&conf);
	if (st == NULL)
		TFAIL("open: %s", firn_err_msg());
	/* 1. Fill it. At most 40 MiB of appends; there are only ~12 MiB of room. */
	while (!full && total < (40u << 20)) {
		for (s = 0; s < NSHARDS && !full; s++) {
			rc = append_batch(st, s);
			if (rc == -ENOSPC) {
				full = true;
				break;
			}
			if (rc == -EAGAIN) {
				usleep(1000);
				continue;
			}
			if (rc < 0)
				TFAIL("append: %d", rc);
			total += BATCH * RECLEN;
		}
		for (s = 0; s < NSHARDS && !full; s++) {
			if (appended[s] == 0)
				continue;
			rc = firn_store_wait_durable(st, STREAM, s, appended[s] - 1, 3000);
			if (rc == -ENOSPC || rc == -ETIMEDOUT) {
				full = true;
				break;
			}
			if (rc < 0)
				TFAIL("wait: %d", rc);
			acked[s] = appended[s];
		}
	}
	if (!full)
		TFAIL("40 MiB went into a 12 MiB hole without -ENOSPC");
	/* Once full, appends keep being refused (no silent acceptance). */
	usleep(50000);
	rc = append_batch(st, 0);
	if (rc != -ENOSPC)
		TFAIL("append on a full disk: %d, expected -ENOSPC", rc);
	printf("full after %" PRIu64 " MiB appended; acked %" PRIu64 "+%" PRIu64 "+%" PRIu64
	       "+%" PRIu64 " records\n",
	       total >> 20, acked[0], acked[1], acked[2], acked[3]);
	/* 2. Nothing acknowledged was harmed. */
	check_all(st, acked);

	/* 3. Free space: appends come back by themselves. */
	if (unlink(filler) < 0)
		TFAIL("unlink filler");
	sync();
	t0 = firn_mono_ns();
	while ((rc = append_batch(st, 1)) == -ENOSPC) {
		if (firn_mono_ns() - t0 > 10000000000ull)
			TFAIL("still -ENOSPC 10 s after space was freed");
		usleep(20000);
	}
	if (rc < 0)
		TFAIL("append after freeing: %d", rc);
	printf("appends accepted again %.0f ms after the filler was deleted\n",
	       (double)(firn_mono_ns() - t0) / 1e6);
	for (s = 0; s < NSHARDS; s++)
		if (append_batch(st, s) < 0)
			TFAIL("append after freeing, shard %u", s);
	for (s = 0; s < NSHARDS; s++) {
		rc = firn_store_wait_durable(st, STREAM, s, appended[s] - 1, 10000);
		if (rc < 0)
			TFAIL("shard %u: records accepted before and after the full disk not "
			      "durable: %d",
			      s, rc);
	}
	check_all(st, appended);
	firn_store_stats(st, &stats);
	printf("write errors while full: %" PRIu64 "\n", stats.write_errors);
	/* Without preallocation the data writes themselves hit ENOSPC: retried. */
	if (pre == 0 && stats.write_errors == 0)
		TFAIL("no write failed without preallocation: the retry path was not tested");
	firn_store_close(st);
	st = firn_store_open(&conf);
	if (st == NULL)
		TFAIL("reopen: %s", firn_err_msg());
	check_all(st, appended);
	firn_store_close(st);
	firn_rm_rf(sdir);
	return 0;
}

static int
test_main(void)
{
	/* Preallocation fails first and protects the accepted records ... */
	test_phase(1u << 20, "prealloc");
	/* ... and without it, failed data writes are retried until space returns. */
	test_phase(0, "noprealloc");
	return 0;
}

int
main(void)
{
	struct sigaction sa;
	int status, rc = 1, fd;

	if (geteuid() != 0) {
		fprintf(stderr, "skip: needs root to loop-mount an ext4 image\n");
		return 77;
	}
	if (tu_mkdtemp(base, sizeof(base), "fulldisk") < 0) {
		fprintf(stderr, "skip: cannot create a scratch directory\n");
		return 77;
	}
	snprintf(img, sizeof(img), "%s/img", base);
	snprintf(mnt, sizeof(mnt), "%s/mnt", base);
	snprintf(sdir, sizeof(sdir), "%s/store", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	fd = open(img, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, 64 << 20) < 0) {
		fprintf(stderr, "skip: cannot create the image file\n");
		cleanup();
		return 77;
	}
	close(fd);
	mkdir(mnt, 0755);
	{
		const char *const mk[] = {"mkfs.ext4", "-q", "-F", "-b", "4096", img, NULL};
		const char *const mo[] = {"mount", "-o", "loop", img, mnt, NULL};

		if (run(mk) != 0) {
			fprintf(stderr, "skip: mkfs.ext4 failed or is missing (e2fsprogs)\n");
			cleanup();
			return 77;
		}
		if (run(mo) != 0) {
			fprintf(stderr, "skip: cannot loop-mount an image here (no loop devices "
			                "or losetup in this container?)\n");
			cleanup();
			return 77;
		}
	}
	mounted = 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	firn_log_set_level(FIRN_LOG_WARN);
	fflush(stdout);
	child = fork();
	if (child == 0) {
		alarm(0);
		setvbuf(stdout, NULL, _IOLBF, 0);
		rc = test_main();
		fflush(stdout);
		_exit(rc);
	}
	if (child > 0) {
		alarm(100); /* a hung test is killed, and still cleaned up */
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
		rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
		if (WIFSIGNALED(status))
			fprintf(stderr, "FAIL: test killed by signal %d\n", WTERMSIG(status));
	}
	cleanup();
	if (rc == 0)
		printf("full disk: ok\n");
	return rc;
}
