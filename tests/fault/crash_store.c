/*
 * crash_store.c - kill -9 during load; every acknowledged record survives.
 *
 * Each iteration forks a child that opens the store (recovering whatever
 * the previous child left), then appends self-checking records (see
 * tests/unit/store/store_testutil.h) to several shards with writer threads,
 * waits until each batch is durable and only then writes one ack per record
 * (shard, counter, hash of the data) to a pipe. The parent lets it run for
 * a random time, SIGKILLs it (at any point: during recovery, an append, a
 * commit, a segment roll), collects the acks, reopens the store itself and
 * checks that
 *
 *   - every record ever acknowledged is there, at its counter, with the
 *     acknowledged content (and no counter was ever acknowledged twice
 *     with different content: counters are never reused);
 *   - each shard's records are contiguous from 0 to its durable tip, each
 *     intact, in append order (the children's sequence numbers increase).
 *
 * FIRN_CRASH_ITERS (default 20) and FIRN_CRASH_SEED (default fixed) tune it.
 * Exit 0 pass, 1 fail, 77 skip (no O_DIRECT under the scratch directory).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "firn_disk_uring.h"
#include "firn_store.h"
#include "../unit/store/store_testutil.h"

#define NSHARDS 4
#define STREAM 42

struct ack {
	uint32_t shard;
	uint32_t hash;
	uint64_t counter;
};

struct known {
	uint32_t *hash; /* by counter; 0 = not acknowledged */
	uint8_t *set;
	uint64_t cap;
};

static struct known known[NSHARDS];
static char dir[4096];

static void
conf_for(struct firn_store_conf *c, bool threaded)
{
	firn_store_conf_defaults(c);
	c->dir = dir;
	c->kek = tu_kek();
	c->disk = &firn_disk_uring_ops;
	c->threaded = threaded;
	c->writers = 2;
	c->segment_size = 256u << 10; /* rolls happen under the knife too */
	c->prealloc = 128u << 10;
	c->block_max = 32u << 10;
	c->flush_interval_us = 300;
}

static uint64_t
rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return tu_mix(*s);
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The child: append and acknowledge until killed. */
static void
child_main(uint64_t seed, unsigned iter, int wfd)
{
	struct firn_store_conf conf;
	struct firn_store *st;
	static uint8_t bufs[NSHARDS][8][1100];
	uint64_t rng = seed, seq = (uint64_t)iter << 32;

	conf_for(&conf, true);
	st = firn_store_open(&conf);
	if (st == NULL) {
		fprintf(stderr, "child: open: %s\n", firn_err_msg());
		_exit(2);
	}
	for (;;) {
		struct ack acks[NSHARDS * 8];
		uint64_t first[NSHARDS];
		unsigned n[NSHARDS], s, i, na = 0;

		for (s = 0; s < NSHARDS; s++) {
			struct firn_record r[8];
			int rc;

			n[s] = 1 + (unsigned)(rng_next(&rng) % 8);
			for (i = 0; i < n[s]; i++) {
				uint32_t len = TU_REC_MIN + (uint32_t)(rng_next(&rng) % 1000);

				tu_fill(bufs[s][i], len, s, seq + i);
				memset(&r[i], 0, sizeof(r[i]));
				r[i].data = bufs[s][i];
				r[i].data_len = len;
				r[i].producer_id = iter;
				r[i].producer_seq = seq + i;
			}
			while ((rc = firn_store_append(st, STREAM, s, r, n[s], &first[s], NULL)) ==
			       -EAGAIN)
				usleep(100);
			if (rc < 0) {
				fprintf(stderr, "child: append: %d\n", rc);
				_exit(3);
			}
			seq += n[s];
		}
		for (s = 0; s < NSHARDS; s++) {
			int rc = firn_store_wait_durable(st, STREAM, s, first[s] + n[s] - 1, 10000);

			if (rc < 0) {
				fprintf(stderr, "child: wait: %d\n", rc);
				_exit(4);
			}
			for (i = 0; i < n[s]; i++) {
				const uint8_t *d = bufs[s][i];
				uint64_t l;

				memcpy(&l, d + 8, 8);
				acks[na].shard = s;
				acks[na].counter = first[s] + i;
				acks[na].hash = tu_hash(d, (size_t)l) | 1u;
				na++;
			}
		}
		/* <= PIPE_BUF per write: the kill never tears an ack. */
		if (write_all(wfd, acks, na * sizeof(acks[0])) < 0)
			_exit(5);
	}
}

static int
known_put(const struct ack *a)
{
	struct known *k;

	if (a->shard >= NSHARDS)
		return -1;
	k = &known[a->shard];
	if (a->counter >= k->cap) {
		uint64_t cap = FIRN_MAX(k->cap * 2, a->counter + 1024);

		k->hash = realloc(k->hash, cap * sizeof(*k->hash));
		k->set = realloc(k->set, cap);
		if (k->hash == NULL || k->set == NULL)
			return -1;
		memset(k->set + k->cap, 0, cap - k->cap);
		k->cap = cap;
	}
	if (k->set[a->counter] && k->hash[a->counter] != a->hash) {
		fprintf(stderr,
		        "FAIL: shard %u counter %" PRIu64 " acknowledged twice with "
		        "different content\n",
		        a->shard, a->counter);
		return -1;
	}
	k->set[a->counter] = 1;
	k->hash[a->counter] = a->hash;
	return 0;
}

/* Read everything back and check it against what was acknowledged. */
static uint64_t cut_total, quarantined_total;

static int
verify(uint64_t *total_acked, uint64_t *total_found)
{
	struct firn_store_conf conf;
	struct firn_store *st;
	uint32_t s;
	int bad = 0;

	conf_for(&conf, false);
	st = firn_store_open(&conf);
	if (st == NULL) {
		fprintf(stderr, "FAIL: reopen: %s\n", firn_err_msg());
		return -1;
	}
	*total_acked = *total_found = 0;
	{
		struct firn_store_stats stats;

		firn_store_stats(st, &stats);
		cut_total += stats.recovered_cut_bytes;
		quarantined_total += stats.quarantined_segments;
		if (stats.quarantined_segments > 0) {
			fprintf(stderr, "FAIL: a crash made recovery quarantine a segment\n");
			bad = 1;
		}
	}
	for (s = 0; s < NSHARDS && !bad; s++) {
		struct firn_read_req req = {
		        .from = FIRN_READ_AT_COUNTER, .max_records = 4096, .max_bytes = 4 << 20};
		struct firn_shard_stat ss;
		uint64_t c = 0, last_seq = 0, i;
		bool have_seq = false;

		if (firn_store_shard_stat(st, STREAM, s, &ss) < 0) {
			memset(&ss, 0, sizeof(ss));
		} else if (ss.first_counter != 0 || ss.durable_next != ss.next_counter) {
			fprintf(stderr,
			        "FAIL: shard %u: first %" PRIu64 " durable %" PRIu64
			        " next %" PRIu64 "\n",
			        s, ss.first_counter, ss.durable_next, ss.next_counter);
			bad = 1;
			break;
		}
		while (c < ss.durable_next && !bad) {
			struct firn_read_res res;
			uint32_t j;
			int rc;

			req.counter = c;
			rc = firn_store_read(st, STREAM, s, &req, &res);
			if (rc < 0 || res.n == 0) {
				fprintf(stderr, "FAIL: shard %u read at %" PRIu64 ": %d %s\n", s, c,
				        rc, firn_err_msg());
				bad = 1;
				break;
			}
			for (j = 0; j < res.n && !bad; j++, c++) {
				const struct firn_record *r = &res.recs[j];
				uint64_t seq = tu_check(r->data, r->data_len, s);

				if (r->counter != c || seq == UINT64_MAX ||
				    (have_seq && seq <= last_seq) || r->producer_seq != seq) {
					fprintf(stderr,
					        "FAIL: shard %u counter %" PRIu64 " (got %" PRIu64
					        "): bad or out-of-order record\n",
					        s, c, r->counter);
					bad = 1;
					break;
				}
				last_seq = seq;
				have_seq = true;
				if (c < known[s].cap && known[s].set[c]) {
					if ((tu_hash(r->data, r->data_len) | 1u) !=
					    known[s].hash[c]) {
						fprintf(stderr,
						        "FAIL: shard %u counter %" PRIu64
						        ": content differs from the ack\n",
						        s, c);
						bad = 1;
					}
					(*total_found)++;
				}
			}
			firn_read_res_free(&res);
		}
		for (i = 0; i < known[s].cap; i++) {
			if (!known[s].set[i])
				continue;
			(*total_acked)++;
			if (i >= ss.durable_next) {
				fprintf(stderr,
				        "FAIL: shard %u: acknowledged counter %" PRIu64
				        " lost (durable tip %" PRIu64 ")\n",
				        s, i, ss.durable_next);
				bad = 1;
				break;
			}
		}
	}
	firn_store_close(st);
	return bad ? -1 : 0;
}

int
main(void)
{
	const char *e;
	uint64_t seed = 0xf12e5eedull, iters = 20, it, rng, acked = 0, found = 0;
	uint64_t acks_total = 0;
	int rc = 0;

	if ((e = getenv("FIRN_CRASH_ITERS")) != NULL && firn_parse_u64(e, &iters) < 0)
		iters = 20;
	if ((e = getenv("FIRN_CRASH_SEED")) != NULL)
		firn_parse_u64(e, &seed);
	firn_log_set_level(FIRN_LOG_ERR);
	if (tu_mkdtemp(dir, sizeof(dir), "crash") < 0) {
		fprintf(stderr, "skip: cannot create a scratch directory\n");
		return 77;
	}
	if (!tu_odirect_ok(dir)) {
		fprintf(stderr, "skip: %s does not support O_DIRECT (tmpfs?)\n", dir);
		firn_rm_rf(dir);
		return 77;
	}
	printf("crash test: %" PRIu64 " iterations, seed %" PRIu64 ", dir %s\n", iters, seed, dir);
	rng = seed;
	for (it = 0; it < iters && rc == 0; it++) {
		uint64_t delay_ms = 5 + rng_next(&rng) % 300, deadline;
		struct ack buf[256];
		size_t have = 0;
		int p[2], status;
		pid_t pid;

		if (pipe(p) < 0) {
			perror("pipe");
			rc = 1;
			break;
		}
		pid = fork();
		if (pid < 0) {
			perror("fork");
			rc = 1;
			break;
		}
		if (pid == 0) {
			close(p[0]);
			child_main(rng_next(&rng), (unsigned)it + 1, p[1]);
			_exit(0);
		}
		close(p[1]);
		deadline = firn_mono_ns() + delay_ms * 1000000ull;
		/* Collect acks while the child runs, then kill it mid-flight. */
		for (;;) {
			uint64_t now = firn_mono_ns();
			struct pollfd pfd = {.fd = p[0], .events = POLLIN};
			ssize_t n;

			if (now >= deadline)
				break;
			if (poll(&pfd, 1, (int)((deadline - now) / 1000000) + 1) <= 0)
				continue;
			n = read(p[0], (char *)buf + have, sizeof(buf) - have);
			if (n <= 0)
				break;
			have += (size_t)n;
			while (have >= sizeof(struct ack)) {
				size_t k = have / sizeof(struct ack), j;

				for (j = 0; j < k; j++)
					if (known_put(&buf[j]) < 0)
						rc = 1;
				acks_total += k;
				memmove(buf, (char *)buf + k * sizeof(struct ack),
				        have - k * sizeof(struct ack));
				have -= k * sizeof(struct ack);
			}
		}
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
			fprintf(stderr, "FAIL: child exited early (status %d)\n", status);
			rc = 1;
		}
		/* Acks written before the kill are still in the pipe. */
		for (;;) {
			ssize_t n = read(p[0], (char *)buf + have, sizeof(buf) - have);
			size_t k, j;

			if (n <= 0)
				break;
			have += (size_t)n;
			k = have / sizeof(struct ack);
			for (j = 0; j < k; j++)
				if (known_put(&buf[j]) < 0)
					rc = 1;
			acks_total += k;
			memmove(buf, (char *)buf + k * sizeof(struct ack),
			        have - k * sizeof(struct ack));
			have -= k * sizeof(struct ack);
		}
		close(p[0]);
		if (rc == 0 && verify(&acked, &found) < 0)
			rc = 1;
		if (rc == 0 && found != acked) {
			fprintf(stderr, "FAIL: %" PRIu64 " acked, %" PRIu64 " found\n", acked,
			        found);
			rc = 1;
		}
		printf("iter %" PRIu64 ": killed after %" PRIu64 " ms; %" PRIu64
		       " acknowledged records so far, all present\n",
		       it, delay_ms, acked);
	}
	if (rc == 0 && acked == 0) {
		fprintf(stderr, "FAIL: no record was ever acknowledged\n");
		rc = 1;
	}
	if (rc == 0)
		printf("crash test OK: %" PRIu64 " kills, %" PRIu64 " acks, all present; recovery "
		       "cut %" PRIu64 " bytes of torn tails in total\n",
		       iters, acks_total, cut_total);
	else
		fprintf(stderr, "crash test FAILED (seed %" PRIu64 ", data kept in %s)\n", seed,
		        dir);
	if (rc == 0)
		firn_rm_rf(dir);
	return rc;
}
