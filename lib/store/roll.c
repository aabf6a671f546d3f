/*
 * roll.c - sealing a full segment and starting the next, off the writer.
 *
 * A roll is three synchronous trips to stable storage: the footer and the
 * truncation of the unused preallocation (fsync), the new segment's header
 * with its first stretch of zeroes (fdatasync), and its directory entry
 * (fsync of the directory). That is about 3 ms here, and under an even load
 * every shard of a writer fills its segment at about the same time: done on
 * the writer, 64 rolls in a row would stall every shard's commits for a
 * fifth of a second. So in threaded mode one roller thread per store does
 * them, while the writer keeps committing for the other shards.
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
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_internal.h"

struct store_roller {
	struct firn_store *st;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct store_vec queue; /* under lock */
	bool stop;              /* under lock */
	struct store_scratch scratch;
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

/* Create the next segment of sh, starting at its durable counter, and make it the tail. */
static int
roll_new_segment(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc)
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

/* Seal the tail: footer after the last block, truncate away the unused preallocation, fsync. */
static int
roll_seal(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc)
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
	if (rc == 0 && fsync(sh->wfd) < 0)
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
	close(sh->wfd);
	sh->wfd = -1;
	sh->tail_off = 0;
	sh->zero_end = sh->ready_end = 0;
	sh->roll_pending = false;
	return 0;
}

int
store_roll_job(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc)
{
	int rc = 0;

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
			rc = roll_seal(st, sh, sc);
	}
	if (rc == 0)
		rc = roll_new_segment(st, sh, sc);
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
	struct store_roller *r = arg;

	for (;;) {
		struct store_shard *sh;

		pthread_mutex_lock(&r->lock);
		while (r->queue.n == 0 && !r->stop)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->queue.n == 0) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		sh = r->queue.v[0];
		memmove(r->queue.v, r->queue.v + 1, (r->queue.n - 1) * sizeof(*r->queue.v));
		r->queue.n--;
		pthread_mutex_unlock(&r->lock);
		store_roll_job(r->st, sh, &r->scratch);
		store_roll_done(sh);
	}
	return NULL;
}

struct store_roller *
store_roller_start(struct firn_store *st)
{
	struct store_roller *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->st = st;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	if (pthread_create(&r->thread, NULL, roller_main, r) != 0) {
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return NULL;
	}
	pthread_setname_np(r->thread, "firn-roll");
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

/* Finish every queued roll, then stop the thread. */
void
store_roller_stop(struct store_roller *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	free(r->queue.v);
	store_scratch_free(&r->scratch);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}
