/*
 * roll.c - sealing a full segment and starting the next, off the writer.
 *
 * A roll is three synchronous trips to stable storage: the footer and the
 * truncation of the unused preallocation (fsync), the new segment's header
 * with its first stretch of zeroes (fdatasync), and its directory entry
 * (fsync of the directory). That is about 3 ms here on a quiet disk, and up
 * to tens of ms when the journal commits queue behind a stream of data
 * writes; and under an even load every shard of a writer fills its segment
 * at about the same time: done on the writer, 64 rolls in a row would stall
 * every shard's commits for a fifth of a second or more. So in threaded
 * mode ROLL_THREADS roller threads per store do them (concurrent rolls
 * share their journal commits), while the writer keeps committing for the
 * other shards; and big segments roll at a per-segment jittered size
 * (store_roll_at()), so evenly loaded shards do not all roll at once.
 *
 * Hand-off. The writer sets sh->rolling (under the shard lock) before it
 * queues the shard; from then on the roller alone touches the shard's
 * writer-only tail state (fd, offsets, preallocation marks) and the writer
 * leaves the shard alone: a commit that meets it parks it (roll_parked),
 * and the roller puts a parked shard back on its writer's dirty list when it
 * clears sh->rolling (release; the writer's acquire load pairs with it). A
 * roll that failed leaves sh->roll_err for the writer, which reports it and
 * backs off like any failed write.
 *
 * Single-threaded stores (threaded = false) roll inline on the caller.
 *
 * Spare segments (conf.spare_segments > 0). Zeroes written ahead of a tail
 * keep durable writes free of metadata, but they cost as much disk
 * bandwidth as the data that later overwrites them: a store filling fresh
 * segments writes every byte twice. So the roller thread also lays out
 * whole segment files ahead of time, while the store is quiet (no batch
 * submitted for WRITER_QUIET_NS): fallocate, zeroes, fdatasync, then the
 * rename from <id>.tmp to <id>.spare makes it a spare. A roll takes a spare
 * when there is one: it writes the new header into it and fdatasyncs (the
 * file is still in spare/), renames it into the shard's directory and
 * fsyncs both directories. A crash before the rename leaves a spare whose
 * header is not zero, which store_spares_init() deletes; after it, a
 * segment with a good header and nothing but zeroes, which recovery reads
 * as an empty tail. A burst then runs at overwrite speed until the pool is
 * used up, and falls back to zeroing ahead of the tails after that.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define ROLL_QUIET_NS (50ull * 1000000ull)   /* no batch for this long: quiet */
#define ROLL_LAYOUT_STEP (8u << 20)          /* zeroes per layout step */
#define ROLL_LAYOUT_RETRY_NS (1000000000ull) /* after a failed layout */

/*
 * A few roller threads share one queue: a roll is mostly waiting for
 * fsyncs (journal commits), which concurrent rolls share, so several at a
 * time cost little more than one. Thread 0 alone lays out spares.
 */
#define ROLL_THREADS 4u

struct store_roller;

struct store_roll_thread {
	struct store_roller *r;
	pthread_t thread;
	unsigned id;
	bool started;
	struct store_scratch scratch;
};

struct store_roller {
	struct firn_store *st;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct store_vec queue; /* under lock */
	bool stop;              /* under lock */
	struct store_roll_thread t[ROLL_THREADS];
};

void *
store_scratch_get(struct store_scratch *sc, size_t len)
{
	if (sc->cap < len) {
		free(sc->p);
		sc->cap = FIRN_ALIGN_UP(len, (size_t)FIRN_DISK_ALIGN);
		sc->p = firn_disk_alloc(sc->cap);
		if (sc->p == NULL)
			sc->cap = 0;
	}
	return sc->p;
}

void
store_scratch_free(struct store_scratch *sc)
{
	free(sc->p);
	sc->p = NULL;
	sc->cap = 0;
}

/* ---- spare segments ------------------------------------------------------------------- */

static int
spare_path(const struct store_spares *sp, uint64_t id, const char *ext, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%020" PRIu64 ".%s", sp->dir, id, ext);

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int
spare_push(struct store_spares *sp, uint64_t id)
{
	int rc = 0;

	pthread_mutex_lock(&sp->lock);
	if (sp->n == sp->cap) {
		unsigned cap = sp->cap ? sp->cap * 2 : 16;
		uint64_t *p = realloc(sp->ids, cap * sizeof(*p));

		if (p == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		sp->ids = p;
		sp->cap = cap;
	}
	sp->ids[sp->n++] = id;
out:
	pthread_mutex_unlock(&sp->lock);
	return rc;
}

static bool
spare_take(struct store_spares *sp, uint64_t *id)
{
	bool got = false;

	if (sp->dir == NULL)
		return false;
	pthread_mutex_lock(&sp->lock);
	if (sp->n > 0) {
		*id = sp->ids[--sp->n];
		got = true;
	}
	pthread_mutex_unlock(&sp->lock);
	return got;
}

unsigned
store_spares_count(struct firn_store *st)
{
	struct store_spares *sp = &st->spares;
	unsigned n;

	if (sp->dir == NULL)
		return 0;
	pthread_mutex_lock(&sp->lock);
	n = sp->n;
	pthread_mutex_unlock(&sp->lock);
	return n;
}

/* A spare as it was laid out: the right size, and a first block of zeroes. */
static bool
spare_pristine(const char *path, uint64_t size)
{
	uint8_t buf[FIRN_SEG_HEADER_SIZE];
	struct stat sb;
	bool ok = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t i;

	if (fd < 0)
		return false;
	if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == size &&
	    pread(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf)) {
		ok = true;
		for (i = 0; i < sizeof(buf) && ok; i++)
			ok = buf[i] == 0;
	}
	close(fd);
	return ok;
}

/*
 * Open the pool: keep the spares left by an earlier run that are pristine
 * (a crash between writing a header into one and renaming it away leaves
 * one that is not; a different segment size leaves ones of the wrong
 * size), delete the rest and any half-laid-out .tmp.
 */
int
store_spares_init(struct firn_store *st)
{
	struct store_spares *sp = &st->spares;
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc;

	sp->fd = -1;
	pthread_mutex_init(&sp->lock, NULL);
	if (st->conf.spare_segments == 0)
		return 0;
	sp->size = FIRN_ALIGN_UP(st->conf.segment_size + st->write_max, (uint64_t)FIRN_DISK_ALIGN);
	if (snprintf(path, sizeof(path), "%s/spare", st->dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	sp->dir = strdup(path);
	if (sp->dir == NULL)
		return -ENOMEM;
	rc = firn_mkdir_p(sp->dir, 0755);
	if (rc < 0)
		return firn_err_set(rc, "create %s: %s", sp->dir, strerror(-rc));
	d = opendir(sp->dir);
	if (d == NULL)
		return firn_err_set(-errno, "open %s: %s", sp->dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		char *dot = strchr(de->d_name, '.'), num[32];
		uint64_t id;

		if (de->d_name[0] == '.' || dot == NULL ||
		    (size_t)(dot - de->d_name) >= sizeof(num))
			continue;
		memcpy(num, de->d_name, (size_t)(dot - de->d_name));
		num[dot - de->d_name] = '\0';
		if (firn_parse_u64(num, &id) < 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", sp->dir, de->d_name) >= (int)sizeof(path))
			continue;
		sp->next_id = FIRN_MAX(sp->next_id, id + 1);
		if (strcmp(dot, ".spare") == 0 && spare_pristine(path, sp->size) &&
		    spare_push(sp, id) == 0)
			continue;
		unlink(path);
	}
	closedir(d);
	return firn_fsync_dir(sp->dir);
}

void
store_spares_fini(struct firn_store *st)
{
	struct store_spares *sp = &st->spares;
	char path[PATH_MAX];

	if (sp->fd >= 0) {
		/* Half laid out: not a spare. */
		close(sp->fd);
		if (spare_path(sp, sp->id, "tmp", path, sizeof(path)) == 0)
			unlink(path);
		sp->fd = -1;
	}
	free(sp->ids);
	free(sp->dir);
	sp->ids = NULL;
	sp->dir = NULL;
	pthread_mutex_destroy(&sp->lock);
}

/* Should the roller lay out spares now? (Below target, store quiet, not backing off.) */
static bool
spares_wanted(struct firn_store *st, uint64_t now)
{
	struct store_spares *sp = &st->spares;
	/* Pairs with the relaxed store in the writers' batch_submit(): a hint only. */
	uint64_t last = __atomic_load_n(&st->last_submit_ns, __ATOMIC_RELAXED);

	if (sp->dir == NULL || now < sp->retry_ns || now < last + ROLL_QUIET_NS ||
	    __atomic_load_n(&st->closing, __ATOMIC_ACQUIRE))
		return false;
	return sp->fd >= 0 || store_spares_count(st) < st->conf.spare_segments;
}

/* One step of laying out a spare: up to ROLL_LAYOUT_STEP bytes of zeroes, then finish it. */
static void
spares_step(struct firn_store *st)
{
	struct store_spares *sp = &st->spares;
	char tmp[PATH_MAX], fin[PATH_MAX];
	uint64_t stop;
	int rc = 0;

	if (spare_path(sp, sp->id, "tmp", tmp, sizeof(tmp)) < 0 && sp->fd >= 0)
		return;
	if (sp->fd < 0) {
		sp->id = sp->next_id++;
		if (spare_path(sp, sp->id, "tmp", tmp, sizeof(tmp)) < 0)
			return;
		rc = store_open_file(tmp, O_RDWR | O_CREAT | O_EXCL, st->odirect);
		if (rc < 0)
			goto fail;
		sp->fd = rc;
		sp->done = 0;
		/* Reserve it all first: a full disk shows here, not halfway through. */
		if (fallocate(sp->fd, 0, 0, (off_t)sp->size) < 0 && errno != EOPNOTSUPP &&
		    errno != ENOSYS) {
			rc = -errno;
			goto fail;
		}
	}
	stop = FIRN_MIN(sp->size, sp->done + ROLL_LAYOUT_STEP);
	while (sp->done < stop) {
		/* Up to 8 MiB per call from the one zero buffer: requests in parallel. */
		struct iovec iov[ROLL_LAYOUT_STEP / STORE_ZERO_CHUNK];
		uint64_t left = stop - sp->done;
		unsigned k = 0;
		ssize_t n;

		while (left > 0 && k < FIRN_ARRAY_SIZE(iov)) {
			iov[k].iov_base = st->zeroes;
			iov[k].iov_len = (size_t)FIRN_MIN(left, (uint64_t)STORE_ZERO_CHUNK);
			left -= iov[k].iov_len;
			k++;
		}
		n = pwritev(sp->fd, iov, (int)k, (off_t)sp->done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -ENOSPC;
			goto fail;
		}
		sp->done += (uint64_t)n;
	}
	if (sp->done < sp->size)
		return;
	if (fdatasync(sp->fd) < 0) {
		rc = -errno;
		goto fail;
	}
	close(sp->fd);
	sp->fd = -1;
	if (spare_path(sp, sp->id, "spare", fin, sizeof(fin)) < 0 || rename(tmp, fin) < 0 ||
	    firn_fsync_dir(sp->dir) < 0 || spare_push(sp, sp->id) < 0) {
		unlink(fin);
		unlink(tmp);
		sp->retry_ns = firn_mono_ns() + ROLL_LAYOUT_RETRY_NS;
	}
	return;
fail:
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
	unlink(tmp);
	sp->retry_ns = firn_mono_ns() + ROLL_LAYOUT_RETRY_NS;
	if (rc != -ENOSPC)
		FIRN_LOG(WARN, STORE_LOG, "%s: lay out a spare segment: %s (retrying)", sp->dir,
		         strerror(-rc));
}

/*
 * Make a spare the new segment at path: header into it and synced while it
 * is still in spare/ (fast: not synced; the directory's commit flushes it),
 * then the rename and the shard's directory synced. Returns
 * the open fd (O_DIRECT), -EAGAIN when there is no spare, or -errno (the
 * spare is gone; the caller creates a file the usual way).
 */
static int
spare_use(struct firn_store *st, struct store_shard *sh, const void *hdr, const char *path,
          bool fast)
{
	struct store_spares *sp = &st->spares;
	char from[PATH_MAX];
	uint64_t id;
	int fd, rc;

	if (!spare_take(sp, &id))
		return -EAGAIN;
	rc = spare_path(sp, id, "spare", from, sizeof(from));
	if (rc < 0)
		return rc;
	fd = store_open_file(from, O_RDWR, st->odirect);
	if (fd < 0) {
		unlink(from);
		return fd;
	}
	if (pwrite(fd, hdr, FIRN_SEG_HEADER_SIZE, 0) != (ssize_t)FIRN_SEG_HEADER_SIZE ||
	    (!fast && fdatasync(fd) < 0) || rename(from, path) < 0) {
		rc = errno ? -errno : -EIO;
		close(fd);
		unlink(from);
		return rc;
	}
	/*
	 * On ext4 and xfs the journal commit for this directory carries the
	 * rename out of spare/ too; elsewhere sync that directory as well.
	 */
	rc = firn_fsync_dir(sh->dir);
	if (rc == 0 && !st->shared_flush)
		rc = firn_fsync_dir(sp->dir);
	if (rc < 0) {
		close(fd);
		unlink(path);
		return rc;
	}
	return fd;
}

/* Create the next segment of sh, starting at its durable counter, and make it the tail. */
static int
roll_new_segment(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc, bool fast)
{
	struct firn_seg_header h;
	struct store_seg *seg;
	char path[PATH_MAX];
	void *buf;
	size_t init_zero;
	ssize_t wrote;
	bool first_seg;
	int fd = -1, rc;

	seg = calloc(1, sizeof(*seg));
	if (seg == NULL)
		return firn_err_set(-ENOMEM, "new segment: out of memory");
	pthread_mutex_lock(&sh->lock);
	seg->first_counter = sh->durable_next;
	first_seg = sh->nsegs == 0;
	pthread_mutex_unlock(&sh->lock);
	seg->next_counter = seg->first_counter;
	seg->created_ms = firn_now_ms();
	seg->end = FIRN_SEG_HEADER_SIZE;
	rc = store_seg_path(sh, seg, path, sizeof(path));
	if (rc < 0)
		goto fail;
	if (first_seg) {
		rc = firn_mkdir_p(sh->dir, 0755);
		if (rc < 0)
			goto fail;
	}
	rc = firn_seg_key_generate(&seg->key);
	if (rc < 0) {
		firn_err_set(rc, "generate data key");
		goto fail;
	}
	memset(&h, 0, sizeof(h));
	h.version = FIRN_SEG_VERSION;
	h.stream_id = sh->stream_id;
	h.shard = sh->index;
	h.first_counter = seg->first_counter;
	h.created_ms = seg->created_ms;
	h.kek_id = st->conf.kek_id;
	/*
	 * The header goes out with the first stretch of preallocated zeroes in
	 * the same write and the same fdatasync, so the first blocks of a new
	 * segment do not land in unwritten space while its zeroing catches up.
	 */
	init_zero = (size_t)FIRN_MIN(st->conf.prealloc, (uint64_t)STORE_ZERO_CHUNK);
	buf = store_scratch_get(sc, FIRN_SEG_HEADER_SIZE + init_zero);
	if (buf == NULL) {
		rc = firn_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	memset(buf, 0, FIRN_SEG_HEADER_SIZE + init_zero);
	rc = firn_seg_header_encode(&h, st->kek, &seg->key, buf);
	if (rc < 0) {
		firn_err_set(rc, "encode segment header");
		goto fail;
	}
	fd = spare_use(st, sh, buf, path, fast);
	if (fd >= 0) {
		/* Laid out whole: zeroes written and synced to its end, nothing to zero ahead. */
		wrote = (ssize_t)st->spares.size;
		rc = 0;
		goto created;
	}
	fd = store_open_file(path, O_RDWR | O_CREAT | O_EXCL, st->odirect);
	if (fd < 0) {
		rc = firn_err_set(fd, "create %s: %s", path, strerror(-fd));
		fd = -1;
		goto fail;
	}
	wrote = pwrite(fd, buf, FIRN_SEG_HEADER_SIZE + init_zero, 0);
	if (wrote < (ssize_t)FIRN_SEG_HEADER_SIZE + (ssize_t)init_zero && init_zero > 0 &&
	    (wrote >= 0 || errno == ENOSPC))
		/* Nearly full: settle for the header alone. */
		wrote = pwrite(fd, buf, FIRN_SEG_HEADER_SIZE, 0) == (ssize_t)FIRN_SEG_HEADER_SIZE
		                ? (ssize_t)FIRN_SEG_HEADER_SIZE
		                : -1;
	if (wrote < (ssize_t)FIRN_SEG_HEADER_SIZE) {
		rc = firn_err_set(errno ? -errno : -EIO, "write header of %s: %s", path,
		                  strerror(errno ? errno : EIO));
		goto fail_unlink;
	}
	/* The header is durable before any block is written (recover.c relies on it). */
	if (fdatasync(fd) < 0) {
		rc = firn_err_set(-errno, "fdatasync %s: %s", path, strerror(errno));
		goto fail_unlink;
	}
	rc = firn_fsync_dir(sh->dir);
created:
	if (rc == 0 && first_seg) {
		char parent[PATH_MAX];

		snprintf(parent, sizeof(parent), "%s/%" PRIu64, st->streams_dir, sh->stream_id);
		rc = firn_fsync_dir(parent);
		if (rc == 0)
			rc = firn_fsync_dir(st->streams_dir);
	}
	if (rc < 0)
		goto fail_unlink;
	pthread_mutex_lock(&sh->lock);
	rc = store_seg_push(sh, seg);
	if (rc == 0) {
		sh->tail = seg;
		sh->bytes += FIRN_SEG_HEADER_SIZE;
	}
	pthread_mutex_unlock(&sh->lock);
	if (rc < 0) {
		firn_err_set(rc, "out of memory");
		goto fail_unlink;
	}
	sh->wfd = fd;
	sh->roll_at = store_roll_at(st, sh);
	sh->tail_off = FIRN_SEG_HEADER_SIZE;
	sh->zero_end = (uint64_t)wrote & ~(uint64_t)(FIRN_DISK_ALIGN - 1);
	sh->ready_end = sh->zero_end;
	return 0;
fail_unlink:
	unlink(path);
fail:
	if (fd >= 0)
		close(fd);
	store_seg_free(seg);
	return firn_err_wrap(rc, "stream %" PRIu64 " shard %u: new segment", sh->stream_id,
	                     sh->index);
}

/*
 * Seal the tail: footer after the last block, truncate away the unused
 * preallocation, fsync. With keep_fd the fsync is left to the caller, who
 * gets the open fd (a fast roll: store_roll_job()).
 */
static int
roll_seal(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc, int *keep_fd)
{
	struct store_seg *tail = sh->tail;
	size_t fsz = firn_seg_footer_size(tail->n);
	void *buf = store_scratch_get(sc, fsz);
	ssize_t n;
	int rc = 0;

	if (buf == NULL)
		return firn_err_set(-ENOMEM, "out of memory");
	memset(buf, 0, fsz);
	/* Nobody appends to tail->ents while we roll: no lock to read them. */
	firn_seg_footer_encode(tail->ents, tail->n, sh->tail_off, buf);
	n = pwrite(sh->wfd, buf, fsz, (off_t)sh->tail_off);
	if (n != (ssize_t)fsz)
		rc = n < 0 ? -errno : -ENOSPC;
	if (rc == 0 && ftruncate(sh->wfd, (off_t)(sh->tail_off + fsz)) < 0)
		rc = -errno;
	if (rc == 0 && keep_fd == NULL && fsync(sh->wfd) < 0)
		rc = -errno;
	if (rc < 0)
		return firn_err_set(rc, "stream %" PRIu64 " shard %u: seal segment %" PRIu64 ": %s",
		                    sh->stream_id, sh->index, tail->first_counter, strerror(-rc));
	pthread_mutex_lock(&sh->lock);
	tail->sealed = true;
	tail->end = sh->tail_off + fsz;
	sh->bytes += fsz;
	sh->tail = NULL;
	pthread_mutex_unlock(&sh->lock);
	if (keep_fd != NULL)
		*keep_fd = sh->wfd;
	else
		close(sh->wfd);
	sh->wfd = -1;
	sh->tail_off = 0;
	sh->zero_end = sh->ready_end = 0;
	sh->roll_pending = false;
	return 0;
}

/*
 * Seal sh's tail (if any) and start its next segment.
 *
 * The fast roll. Where one fdatasync is a device flush (st->shared_flush:
 * ext4, xfs) and a spare segment is at hand, a roll needs one trip to
 * stable storage instead of four: the footer and truncation of the old
 * tail, the header written into the spare and its rename into the shard's
 * directory are all done first, then one fsync of that directory commits
 * the journal, which holds the truncation and the rename in order, and
 * flushes the device cache, which holds the footer and the header. A crash
 * before it leaves either the old tail as it was (its footer past the valid
 * blocks is cut off at recovery, as any torn tail), or the old tail sealed
 * and the spare still a spare (not pristine any more, so deleted at open);
 * the journal keeps the truncation ahead of the rename, so never the new
 * segment without the old one sealed. Under a stream of data writes each
 * trip costs milliseconds, and the shard is parked while it rolls.
 */
int
store_roll_job(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc)
{
	bool fast = st->shared_flush && sh->tail != NULL && store_spares_count(st) > 0;
	int rc = 0, old_fd = -1;

	if (sh->tail != NULL) {
		if (sh->wfd < 0) {
			char path[PATH_MAX];

			store_seg_path(sh, sh->tail, path, sizeof(path));
			rc = store_open_file(path, O_RDWR, st->odirect);
			if (rc < 0) {
				rc = firn_err_set(rc, "open %s: %s", path, strerror(-rc));
			} else {
				sh->wfd = rc;
				rc = 0;
			}
		}
		if (rc == 0)
			rc = roll_seal(st, sh, sc, fast ? &old_fd : NULL);
	}
	if (rc == 0)
		rc = roll_new_segment(st, sh, sc, fast);
	if (old_fd >= 0) {
		/* The new segment did not come about: make the seal durable by itself. */
		if (rc < 0 && fsync(old_fd) < 0)
			FIRN_LOG(ERR, STORE_LOG,
			         "stream %" PRIu64 " shard %u: fsync sealed segment: %s",
			         sh->stream_id, sh->index, strerror(errno));
		close(old_fd);
	}
	if (rc < 0) {
		FIRN_LOG(ERR, STORE_LOG, "%s (will retry)", firn_err_msg());
		if (rc == -ENOSPC)
			store_set_disk_full(st, true);
		pthread_mutex_lock(&sh->lock);
		sh->roll_err = rc;
		pthread_mutex_unlock(&sh->lock);
	}
	return rc;
}

/* The roller is done with sh: give it back to its writer. */
static void
store_roll_done(struct store_shard *sh)
{
	struct store_writer *w = sh->w;

	pthread_mutex_lock(&sh->lock);
	/*
	 * Back on the dirty list *before* rolling clears: once the writer sees
	 * rolling == 0 it may let go of a dropped shard, and must find it there
	 * to take it off.
	 */
	if (sh->roll_parked)
		store_dirty_push(w, sh, 1);
	sh->roll_parked = false;
	/* Pairs with the acquire load in the writer's shard_rolling(). */
	__atomic_store_n(&sh->rolling, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&sh->lock);
	/* sh may be gone from here on (dropped and released): only w. */
	store_writer_wake(w);
}

static void *
roller_main(void *arg)
{
	struct store_roll_thread *t = arg;
	struct store_roller *r = t->r;
	bool layout = t->id == 0 && r->st->spares.dir != NULL;

	for (;;) {
		struct store_shard *sh;

		pthread_mutex_lock(&r->lock);
		while (r->queue.n == 0 && !r->stop &&
		       !(layout && spares_wanted(r->st, firn_mono_ns()))) {
			struct timespec ts;

			if (!layout) {
				pthread_cond_wait(&r->cond, &r->lock);
				continue;
			}
			/* Spares to lay out, once the store is quiet: look again shortly. */
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 20000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		}
		if (r->queue.n == 0) {
			bool stop = r->stop;

			pthread_mutex_unlock(&r->lock);
			if (stop)
				break;
			/* Rolls come first: one step, then look at the queue again. */
			spares_step(r->st);
			continue;
		}
		sh = r->queue.v[0];
		memmove(r->queue.v, r->queue.v + 1, (r->queue.n - 1) * sizeof(*r->queue.v));
		r->queue.n--;
		pthread_mutex_unlock(&r->lock);
		store_roll_job(r->st, sh, &t->scratch);
		store_roll_done(sh);
	}
	return NULL;
}

static void store_roller_join(struct store_roller *r);

struct store_roller *
store_roller_start(struct firn_store *st)
{
	struct store_roller *r = calloc(1, sizeof(*r));
	unsigned i;

	if (r == NULL)
		return NULL;
	r->st = st;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	for (i = 0; i < ROLL_THREADS; i++) {
		struct store_roll_thread *t = &r->t[i];
		char name[16];

		t->r = r;
		t->id = i;
		if (pthread_create(&t->thread, NULL, roller_main, t) != 0) {
			store_roller_join(r);
			return NULL;
		}
		t->started = true;
		snprintf(name, sizeof(name), "firn-roll%u", i);
		pthread_setname_np(t->thread, name);
	}
	return r;
}

int
store_roller_enqueue(struct store_roller *r, struct store_shard *sh)
{
	int rc;

	pthread_mutex_lock(&r->lock);
	rc = store_vec_push(&r->queue, sh);
	if (rc == 0)
		pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* Stop the threads (they finish the queue first) and free r. */
static void
store_roller_join(struct store_roller *r)
{
	unsigned i;

	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < ROLL_THREADS; i++) {
		if (r->t[i].started)
			pthread_join(r->t[i].thread, NULL);
		store_scratch_free(&r->t[i].scratch);
	}
	free(r->queue.v);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

/* Finish every queued roll, then stop the threads. */
void
store_roller_stop(struct store_roller *r)
{
	if (r != NULL)
		store_roller_join(r);
}
