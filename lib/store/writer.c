/*
 * writer.c - the writer agent: group commit, preallocation, GC.
 *
 * A writer owns the shards s with s % writers == its id. Its duty cycle:
 *
 *   1. Reap completions. While a group commit is in flight the writer
 *      blocks here (nothing else it could do would help the commit).
 *   2. When the commit's last write has completed, broadcast to waiters and
 *      look after each shard that took part: hand a full segment to the
 *      roller (roll.c), keep zeroes preallocated ahead of the tail.
 *   3. Start the next commit when one is due: a flush was asked for, a shard
 *      has a block's worth pending, or the oldest dirty shard has waited
 *      flush_interval_us. A commit takes every dirty shard (up to
 *      commit_max bytes; the rest go first next time), packs each one's
 *      pending records into blocks (firn_seg_builder_add + seal, into an
 *      aligned buffer from the writer's pool), prepares one RWF_DSYNC write
 *      per shard and submits them together: one submit for the usual commit
 *      of many small shard writes, one per 2 MiB sealed for a big one, so
 *      the disk starts on the first writes while the rest are sealed.
 *
 * Only one commit is in flight per writer, and a shard has at most one write
 * in flight. Appends go on while a commit is in flight (they fill the pending
 * chunks past the part being written), so under load the next commit finds
 * more waiting and blocks grow: batching comes from the disk's own latency.
 *
 * One write per shard at a time is also what makes the tail safe to cut: a
 * shard's write starts at the end of its last durable write, so after a
 * crash there is at most one torn write past the last valid block, never a
 * valid block behind an invalid one. (Recovery still truncates a damaged
 * tail to its valid end, so nothing stale can ever be mistaken for a
 * continuation; see recover.c.)
 *
 * A failed write changes nothing: the records stay pending, nothing is
 * reported durable, the shard's error is set (waiters and on_durable see it)
 * and the shard retries after a backoff, writing to the same offset again
 * with fresh IVs. ENOSPC (from a write, a segment creation or a
 * preallocation) also sets the store's disk_full flag, which makes appends
 * fail fast with -ENOSPC; the writer probes free space every half second and
 * clears it when there is room for a preallocation and a write again.
 * Preallocation fails first, so the records already accepted usually still
 * fit in the zeroes reserved ahead of each tail.
 *
 * Preallocation. Writes into unwritten extents cost a journal commit each
 * (see lib/disk/disk.c), so the writer keeps up to conf.prealloc bytes of
 * written zeroes ahead of each tail: when the tail gets within half of that,
 * it fallocates the next step (2 MiB; which is where ENOSPC shows up,
 * early) and writes zeroes over it through the same queue, 1 MiB per write,
 * then one fdatasync; at most four such writes per writer are in flight, so
 * zeroing never crowds out commits. None of that is on a commit's path. A
 * data write never overlaps zero writes in flight (it waits a moment
 * instead), and a segment is rolled only once its zeroing has drained.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define WRITER_GC_PERIOD_NS (60ull * 1000000000ull)
#define WRITER_PROBE_PERIOD_NS (500ull * 1000000ull)
#define WRITER_PREALLOC_RETRY_NS (250ull * 1000000ull)
#define WRITER_BUF_MIN (64u << 10)
#define WRITER_SUBMIT_BYTES (2u << 20)
#define WRITER_ZERO_STEP (2ull << 20)
#define WRITER_ZERO_INFLIGHT 4u
#define WRITER_BUF_KEEP 64u
#define STORE_TAIL_MAX_AGE_MS (3600ll * 1000)

static inline const struct firn_disk_ops *
wops(const struct store_writer *w)
{
	return w->st->conf.disk;
}

static inline bool
store_closing(const struct firn_store *st)
{
	/* Pairs with the release store in firn_store_close(). */
	return __atomic_load_n(&st->closing, __ATOMIC_ACQUIRE) != 0;
}

void
store_set_disk_full(struct firn_store *st, bool full)
{
	/* Pairs with the acquire load in firn_store_append(). */
	int was = __atomic_exchange_n(&st->disk_full, full ? 1 : 0, __ATOMIC_ACQ_REL);

	if (full && !was)
		FIRN_LOG(ERR, STORE_LOG, "%s: disk full: appends refused until space is freed",
		         st->dir);
	else if (!full && was)
		FIRN_LOG(INFO, STORE_LOG, "%s: disk space available again: appends accepted",
		         st->dir);
}

/* ---- aligned I/O buffers ---------------------------------------------------------------- */

static unsigned
buf_class(size_t len)
{
	unsigned c = 0;

	while (c + 1 < STORE_BUF_CLASSES && ((size_t)WRITER_BUF_MIN << c) < len)
		c++;
	return c;
}

static void *
buf_get(struct store_writer *w, size_t len, unsigned *cls)
{
	unsigned c = buf_class(len);

	*cls = c;
	if (w->nbufs[c] > 0)
		return w->bufs[c][--w->nbufs[c]];
	return firn_disk_alloc((size_t)WRITER_BUF_MIN << c);
}

static size_t
buf_size(unsigned cls)
{
	return (size_t)WRITER_BUF_MIN << cls;
}

static void
buf_put(struct store_writer *w, void *buf, unsigned cls)
{
	if (buf == NULL)
		return;
	if (w->bufs[cls] == NULL)
		w->bufs[cls] = calloc(WRITER_BUF_KEEP, sizeof(void *));
	if (w->bufs[cls] != NULL && w->nbufs[cls] < WRITER_BUF_KEEP) {
		w->bufs[cls][w->nbufs[cls]++] = buf;
		return;
	}
	free(buf);
}

/* ---- set-up ---------------------------------------------------------------------------- */

int
store_writer_init(struct firn_store *st, struct store_writer *w, unsigned id)
{
	pthread_condattr_t ca;
	struct iovec iov;

	w->st = st;
	w->id = id;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	w->cpl = calloc(st->conf.queue_depth, sizeof(*w->cpl));
	if (w->cpl == NULL)
		return firn_err_set(-ENOMEM, "writer %u: out of memory", id);
	w->q = st->conf.disk->create(st->conf.queue_depth);
	if (w->q == NULL)
		return firn_err_wrap(firn_err_code() < 0 ? firn_err_code() : -EIO,
		                     "writer %u: create %s disk queue", id, st->conf.disk->name);
	w->cx = firn_seg_codec_create(st->conf.block_max, st->conf.compress);
	if (w->cx == NULL)
		return firn_err_wrap(-ENOMEM, "writer %u: create block codec", id);
	/* Zero writes all come from one buffer: pin it once if the driver can. */
	iov.iov_base = st->zeroes;
	iov.iov_len = STORE_ZERO_CHUNK;
	if (st->conf.disk->register_buffers != NULL)
		(void)st->conf.disk->register_buffers(w->q, &iov, 1);
	w->next_gc_ns = firn_mono_ns() + WRITER_GC_PERIOD_NS;
	return 0;
}

void
store_writer_fini(struct store_writer *w)
{
	unsigned c;

	if (w->st == NULL)
		return;
	if (w->q != NULL)
		w->st->conf.disk->destroy(w->q);
	firn_seg_codec_destroy(w->cx);
	for (c = 0; c < STORE_BUF_CLASSES; c++) {
		while (w->nbufs[c] > 0)
			free(w->bufs[c][--w->nbufs[c]]);
		free(w->bufs[c]);
	}
	free(w->cpl);
	store_scratch_free(&w->scratch);
	free(w->dirty.v);
	free(w->shards.v);
	free(w->commit.v);
	free(w->deferred.v);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

void
store_writer_wake(struct store_writer *w)
{
	if (w->runner != NULL)
		firn_agent_runner_wake(w->runner);
}

/* Put sh on w's dirty list (caller set sh->on_dirty under the shard lock). */
void
store_dirty_push(struct store_writer *w, struct store_shard *sh, uint64_t since_ns)
{
	uint64_t cur;

	pthread_mutex_lock(&w->lock);
	if (store_vec_push(&w->dirty, sh) < 0)
		/* Out of memory: flush on the next cycle instead of losing track. */
		since_ns = 1;
	cur = w->dirty_since_ns;
	if (cur == 0 || since_ns < cur)
		/* Pairs with the acquire load in writer_commit_due(). */
		__atomic_store_n(&w->dirty_since_ns, since_ns, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&w->lock);
}

/* ---- rolling (the work itself is in roll.c) ---------------------------------------------- */

static inline bool
shard_rolling(const struct store_shard *sh)
{
	/* Pairs with the release store in store_roll_done(). */
	return __atomic_load_n(&sh->rolling, __ATOMIC_ACQUIRE) != 0;
}

/*
 * Hand sh to the roller (or, single-threaded, roll it here): seal the tail
 * if it has one, then create the next segment. parked: sh was taken out of
 * a commit for it and must go back on the dirty list afterwards.
 */
static void
shard_roll_start(struct store_writer *w, struct store_shard *sh, bool parked)
{
	struct firn_store *st = w->st;

	if (st->roller != NULL) {
		pthread_mutex_lock(&sh->lock);
		/* Pairs with the acquire load in shard_rolling(). */
		__atomic_store_n(&sh->rolling, 1, __ATOMIC_RELEASE);
		sh->roll_parked = parked;
		pthread_mutex_unlock(&sh->lock);
		if (store_roller_enqueue(st->roller, sh) == 0)
			return;
		pthread_mutex_lock(&sh->lock);
		__atomic_store_n(&sh->rolling, 0, __ATOMIC_RELEASE);
		sh->roll_parked = false;
		pthread_mutex_unlock(&sh->lock);
	}
	store_roll_job(st, sh, &w->scratch);
	if (parked)
		store_dirty_push(w, sh, 1);
}

/* A roll that waited for the zeroing to drain (or failed before): start it now. */
static void
shard_roll_if_pending(struct store_writer *w, struct store_shard *sh)
{
	/* rolling first: while it is set, the rest belongs to the roller. */
	if (shard_rolling(sh) || !sh->roll_pending || sh->zero_ios > 0 || sh->io_busy ||
	    sh->tail == NULL || sh->dropped || store_closing(w->st) ||
	    firn_mono_ns() < sh->retry_ns)
		return;
	shard_roll_start(w, sh, false);
}

/* ---- preallocation ----------------------------------------------------------------------- */

static void
shard_prealloc(struct store_writer *w, struct store_shard *sh, uint64_t now)
{
	struct firn_store *st = w->st;
	uint64_t want = st->conf.prealloc, data_hi, target, start, limit, pos;
	unsigned chunks;

	if (want == 0 || shard_rolling(sh) || sh->tail == NULL || sh->wfd < 0 || sh->zero_ios > 0 ||
	    sh->roll_pending || store_closing(st) || now < sh->prealloc_retry_ns)
		return;
	data_hi = sh->tail_off + (sh->io_busy ? sh->dio.len : 0);
	if (sh->zero_end >= data_hi + want / 2)
		return;
	/* No point zeroing past where this segment will be sealed and truncated. */
	limit = FIRN_ALIGN_UP(st->conf.segment_size + st->write_max, (uint64_t)FIRN_DISK_ALIGN);
	target = FIRN_MIN(data_hi + want, limit);
	/*
	 * Zeroing that fell behind the data restarts one write further on:
	 * starting right at the tail would make the next write wait for it.
	 */
	start = sh->zero_end >= data_hi ? sh->zero_end : data_hi + st->write_max;
	if (start >= target)
		return;
	/*
	 * A step at a time, and only a few in flight per writer: zeroing costs
	 * as much disk bandwidth as the data it makes room for, and a burst of
	 * it (every shard of a fresh store at once) would sit in front of the
	 * commits. The step's completion takes the next one.
	 */
	target = FIRN_MIN(target, start + WRITER_ZERO_STEP);
	chunks = (unsigned)((target - start + STORE_ZERO_CHUNK - 1) / STORE_ZERO_CHUNK);
	if (w->zero_inflight + chunks > WRITER_ZERO_INFLIGHT ||
	    wops(w)->inflight(w->q) + chunks + 1 > st->conf.queue_depth / 2)
		return; /* try after the next commit */
	/* Reserve first: this is where a full disk shows, before any data write fails. */
	if (fallocate(sh->wfd, 0, (off_t)start, (off_t)(target - start)) < 0 &&
	    errno != EOPNOTSUPP && errno != ENOSYS) {
		int err = errno;

		sh->prealloc_retry_ns = now + WRITER_PREALLOC_RETRY_NS;
		if (err == ENOSPC)
			store_set_disk_full(st, true);
		else
			FIRN_LOG(WARN, STORE_LOG, "stream %" PRIu64 " shard %u: fallocate: %s",
			         sh->stream_id, sh->index, strerror(err));
		return;
	}
	for (pos = start; pos < target; pos += STORE_ZERO_CHUNK) {
		size_t len = (size_t)FIRN_MIN(target - pos, (uint64_t)STORE_ZERO_CHUNK);

		if (wops(w)->write(w->q, sh->wfd, st->zeroes, len, pos, 0, &sh->zio) < 0)
			break;
		sh->zero_ios++;
		w->zero_inflight++;
	}
	if (sh->zero_ios == 0)
		return;
	sh->zero_lo = start;
	sh->zero_end = FIRN_MIN(pos, target);
	sh->zsync_pending = true;
	wops(w)->submit(w->q);
}

static void
shard_zero_done(struct store_writer *w, struct store_shard *sh, int res)
{
	uint64_t now;

	if (res < 0 && sh->zero_err == 0)
		sh->zero_err = res; /* remember the first error */
	w->zero_inflight--;
	if (--sh->zero_ios > 0)
		return;
	now = firn_mono_ns();
	if (sh->zero_err != 0) {
		int err = -sh->zero_err;

		sh->zero_err = 0;
		sh->zsync_pending = false;
		sh->zero_end = FIRN_MAX(sh->zero_lo, sh->ready_end);
		sh->prealloc_retry_ns = now + WRITER_PREALLOC_RETRY_NS;
		if (err == ENOSPC)
			store_set_disk_full(w->st, true);
		shard_roll_if_pending(w, sh);
		return;
	}
	if (sh->zsync_pending) {
		sh->zsync_pending = false;
		if (wops(w)->fsync(w->q, sh->wfd, &sh->zsio) == 0) {
			sh->zero_ios++;
			w->zero_inflight++;
			return;
		}
		/* Queue full: the zeroes are written, just not known durable. Fine. */
	}
	shard_roll_if_pending(w, sh);
}

static void
shard_zsync_done(struct store_writer *w, struct store_shard *sh, int res)
{
	sh->zero_ios--;
	w->zero_inflight--;
	if (res < 0) {
		sh->zero_end = FIRN_MAX(sh->zero_lo, sh->ready_end);
		sh->prealloc_retry_ns = firn_mono_ns() + WRITER_PREALLOC_RETRY_NS;
		shard_roll_if_pending(w, sh);
		return;
	}
	sh->ready_end = sh->zero_end;
	/*
	 * Not a sign that the disk has room again: another shard's fallocate
	 * may just have failed. Only the free-space probe clears disk_full.
	 */
	shard_roll_if_pending(w, sh);
	shard_prealloc(w, sh, firn_mono_ns()); /* the next step, if still short */
}

/* ---- one shard's write in a commit ------------------------------------------------------- */

static int
io_push_ent(struct store_io *io, const struct firn_seg_index_entry *e)
{
	if (io->n == io->cap) {
		uint32_t cap = io->cap ? io->cap * 2 : 16;
		struct firn_seg_index_entry *p = realloc(io->ents, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		io->ents = p;
		io->cap = cap;
	}
	io->ents[io->n++] = *e;
	return 0;
}

/* Seal the builder's block at *p in io's buffer (growing it if needed). */
static int
shard_seal_block(struct store_writer *w, struct store_shard *sh, struct store_io *io, size_t *p)
{
	struct firn_seg_ctx ctx = {
	        .stream_id = sh->stream_id,
	        .shard = sh->index,
	        .key = &sh->tail->key,
	};
	struct firn_seg_index_entry ent;
	long len;

	for (;;) {
		size_t cap = buf_size(io->buf_class);
		unsigned ncls;
		void *nbuf;

		len = firn_seg_block_seal(w->cx, &ctx, sh->tail_off + *p, (uint8_t *)io->buf + *p,
		                          cap - *p, &ent);
		if (len != -ENOSPC)
			break;
		nbuf = buf_get(w, cap * 2, &ncls);
		if (nbuf == NULL)
			return -ENOMEM;
		memcpy(nbuf, io->buf, *p);
		buf_put(w, io->buf, io->buf_class);
		io->buf = nbuf;
		io->buf_class = ncls;
	}
	if (len < 0)
		return (int)len;
	if (io_push_ent(io, &ent) < 0)
		return -ENOMEM;
	*p += (size_t)len;
	return 0;
}

static void shard_fail(struct store_writer *w, struct store_shard *sh, int rc, uint64_t now);

/*
 * Build and prepare sh's write for this commit. 1 prepared, 0 nothing to
 * write (sh left the dirty set), -EAGAIN try again later (sh goes to the
 * deferred list, still dirty), -EINPROGRESS parked with the roller (which
 * puts it back), -ESHUTDOWN dropped.
 */
static int
shard_prepare(struct store_writer *w, struct store_shard *sh, uint64_t now)
{
	struct firn_store *st = w->st;
	struct store_io *io = &sh->dio;
	struct store_chunk *chunk, *end_chunk;
	uint64_t c, snap_next, consumed = 0, est;
	uint32_t off, end_used;
	int64_t last_ts = 0;
	size_t p = 0;
	int rc;

	pthread_mutex_lock(&sh->lock);
	if (sh->dropped) {
		pthread_mutex_unlock(&sh->lock);
		return -ESHUTDOWN;
	}
	if (shard_rolling(sh) || sh->io_busy) {
		/* The roller has it: it puts sh back on the dirty list when done. */
		bool parked = shard_rolling(sh);

		sh->roll_parked = parked;
		pthread_mutex_unlock(&sh->lock);
		return parked ? -EINPROGRESS : -EAGAIN;
	}
	c = sh->durable_next;
	snap_next = sh->next_counter;
	if (c == snap_next) {
		sh->on_dirty = false;
		pthread_mutex_unlock(&sh->lock);
		return 0;
	}
	chunk = sh->phead;
	off = chunk->head;
	end_chunk = sh->ptail;
	end_used = end_chunk->used;
	est = sh->pend_bytes + 2 * (snap_next - c);
	rc = sh->roll_err;
	sh->roll_err = 0;
	pthread_mutex_unlock(&sh->lock);

	if (rc < 0) {
		shard_fail(w, sh, rc, now);
		return -EAGAIN;
	}
	if (now < sh->retry_ns)
		return -EAGAIN;
	if (sh->tail == NULL || sh->roll_pending) {
		/* No tail yet, or a full one: a roll first (a rolled shard has no zeroing). */
		if (sh->zero_ios > 0) {
			sh->retry_ns = now + 200000;
			return -EAGAIN;
		}
		if (st->roller != NULL) {
			shard_roll_start(w, sh, true);
			return -EINPROGRESS;
		}
		if (store_roll_job(st, sh, &w->scratch) < 0)
			return -EAGAIN; /* roll_err is set: reported on the next try */
	}
	if (sh->wfd < 0) {
		char path[PATH_MAX];

		store_seg_path(sh, sh->tail, path, sizeof(path));
		rc = store_open_file(path, O_RDWR, st->odirect);
		if (rc < 0) {
			firn_err_set(rc, "open %s: %s", path, strerror(-rc));
			shard_fail(w, sh, rc, now);
			return -EAGAIN;
		}
		sh->wfd = rc;
	}

	est = FIRN_MIN(est, st->write_max + st->conf.block_max);
	io->buf =
	        buf_get(w,
	                firn_seg_block_bound((size_t)FIRN_MIN(est, (uint64_t)st->conf.block_max)) +
	                        (est > st->conf.block_max ? est + est / 8 : 0),
	                &io->buf_class);
	if (io->buf == NULL)
		return -EAGAIN;
	io->n = 0;
	firn_seg_builder_reset(w->cx, c);
	for (;;) {
		const struct store_prec *pr;
		struct firn_record r;

		if (chunk == end_chunk && off >= end_used)
			break;
		if (chunk != end_chunk && off >= chunk->used) {
			chunk = chunk->next;
			off = 0;
			continue;
		}
		pr = (const struct store_prec *)(chunk->data + off);
		r.key = (const uint8_t *)(pr + 1);
		r.key_len = pr->key_len;
		r.data = r.key + pr->key_len;
		r.data_len = pr->data_len;
		r.ts_ms = pr->ts_ms;
		r.counter = c;
		r.producer_id = pr->producer_id;
		r.producer_seq = pr->producer_seq;
		rc = firn_seg_builder_add(w->cx, &r);
		if (rc == -ENOSPC) {
			rc = shard_seal_block(w, sh, io, &p);
			if (rc < 0)
				goto fail;
			firn_seg_builder_reset(w->cx, c);
			if (p >= st->write_max)
				break; /* the rest waits for the next commit */
			rc = firn_seg_builder_add(w->cx, &r);
		}
		if (rc < 0)
			goto fail;
		c++;
		off += store_prec_size(pr->key_len, pr->data_len);
		consumed += store_prec_size(pr->key_len, pr->data_len);
		last_ts = pr->ts_ms;
	}
	if (firn_seg_builder_count(w->cx) > 0) {
		rc = shard_seal_block(w, sh, io, &p);
		if (rc < 0)
			goto fail;
	}
	/*
	 * Never write over zeroes still in flight: their completion could land
	 * after ours and wipe the block. Wait for them instead (rare: the
	 * zeroing runs half a preallocation ahead).
	 */
	if (sh->zero_ios > 0 && sh->tail_off + p > sh->zero_lo) {
		sh->retry_ns = now + 200000;
		rc = -EAGAIN;
		goto fail_quiet;
	}
	/* The completion appends these entries under the lock; make room now. */
	pthread_mutex_lock(&sh->lock);
	if (sh->tail->cap < sh->tail->n + io->n) {
		uint32_t cap = FIRN_MAX(sh->tail->cap * 2, sh->tail->n + io->n + 16);
		struct firn_seg_index_entry *e = realloc(sh->tail->ents, cap * sizeof(*e));

		if (e == NULL) {
			pthread_mutex_unlock(&sh->lock);
			rc = -ENOMEM;
			goto fail_quiet;
		}
		sh->tail->ents = e;
		sh->tail->cap = cap;
	}
	pthread_mutex_unlock(&sh->lock);

	io->len = p;
	io->off = sh->tail_off;
	io->c_end = c;
	io->last_ts = last_ts;
	io->end_chunk = chunk;
	io->end_off = off;
	io->pend_bytes = consumed;
	rc = wops(w)->write(w->q, sh->wfd, io->buf, p, io->off, FIRN_DISK_DSYNC, io);
	if (rc < 0) {
		sh->retry_ns = now + 100000;
		rc = -EAGAIN;
		goto fail_quiet;
	}
	sh->io_busy = true;
	pthread_mutex_lock(&sh->lock);
	sh->inflight_bytes = consumed;
	if (c == sh->next_counter)
		sh->unsent_since_ns = 0;
	pthread_mutex_unlock(&sh->lock);
	return 1;
fail:
	firn_err_set(rc, "stream %" PRIu64 " shard %u: build block: %s", sh->stream_id, sh->index,
	             strerror(-rc));
	shard_fail(w, sh, rc, now);
	rc = -EAGAIN;
fail_quiet:
	buf_put(w, io->buf, io->buf_class);
	io->buf = NULL;
	return rc;
}

/* A write (or what it needed) failed: keep the records, tell, back off. */
static void
shard_fail(struct store_writer *w, struct store_shard *sh, int rc, uint64_t now)
{
	struct firn_store *st = w->st;
	uint64_t durable;
	int prev;

	if (rc >= 0)
		rc = -EIO;
	/* Statistics only. */
	__atomic_add_fetch(&w->stats.write_errors, 1, __ATOMIC_RELAXED);
	if (rc == -ENOSPC)
		store_set_disk_full(st, true);
	pthread_mutex_lock(&sh->lock);
	prev = sh->error;
	sh->error = rc;
	sh->inflight_bytes = 0;
	durable = sh->durable_next;
	pthread_mutex_unlock(&sh->lock);
	if (prev == 0 && rc != -ENOSPC)
		FIRN_LOG(ERR, STORE_LOG, "stream %" PRIu64 " shard %u: write failed: %s (%s)",
		         sh->stream_id, sh->index, strerror(-rc), firn_err_msg());
	sh->backoff_ms = sh->backoff_ms ? FIRN_MIN(sh->backoff_ms * 2, 1000u) : 10u;
	sh->retry_ns = now + (uint64_t)sh->backoff_ms * 1000000ull;
	if (st->conf.on_durable != NULL)
		st->conf.on_durable(st->conf.on_durable_arg, sh->stream_id, sh->index, durable, rc);
	pthread_mutex_lock(&w->lock);
	if (w->waiters > 0)
		pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* sh's write completed. */
static void
shard_data_done(struct store_writer *w, struct store_shard *sh, int res)
{
	struct firn_store *st = w->st;
	struct store_io *io = &sh->dio;
	uint64_t first, now = firn_mono_ns();
	struct store_chunk *c, *nx;
	bool unsent;

	sh->io_busy = false;
	w->commit_left--;
	if (res != (int)io->len) {
		buf_put(w, io->buf, io->buf_class);
		io->buf = NULL;
		firn_err_set(res < 0 ? res : -EIO, "write %zu bytes at %" PRIu64 ": %s", io->len,
		             io->off, res < 0 ? strerror(-res) : "short write");
		shard_fail(w, sh, res < 0 ? res : -EIO, now);
		store_vec_push(&w->deferred, sh);
		return;
	}
	pthread_mutex_lock(&sh->lock);
	/* Release the pending chunks the write covered. */
	for (c = sh->phead; c != io->end_chunk; c = nx) {
		nx = c->next;
		store_chunk_put(st, c);
	}
	sh->phead = c;
	c->head = io->end_off;
	if (c->head == c->used) {
		sh->phead = c->next;
		if (c == sh->ptail)
			sh->ptail = NULL;
		store_chunk_put(st, c);
	}
	sh->pend_bytes -= io->pend_bytes;
	sh->inflight_bytes = 0;
	memcpy(sh->tail->ents + sh->tail->n, io->ents, io->n * sizeof(*io->ents));
	sh->tail->n += io->n;
	sh->tail->next_counter = io->c_end;
	sh->tail->end = io->off + io->len;
	sh->bytes += io->len;
	first = sh->durable_next;
	sh->durable_ts = io->last_ts;
	/* Pairs with the acquire loads in store_wait() and the readers. */
	__atomic_store_n(&sh->durable_next, io->c_end, __ATOMIC_RELEASE);
	sh->error = 0;
	/*
	 * Still dirty: records the write left for later (write_max; their
	 * since is old, so the next commit is due at once) or appended while it
	 * was in flight.
	 */
	unsent = io->c_end < sh->next_counter;
	if (unsent)
		store_dirty_push(w, sh, sh->unsent_since_ns ? sh->unsent_since_ns : 1);
	else
		sh->on_dirty = false;
	pthread_mutex_unlock(&sh->lock);
	sh->tail_off += io->len;
	sh->backoff_ms = 0;
	sh->retry_ns = 0;
	/* Statistics: one writer thread adds, any thread may read (relaxed). */
	__atomic_add_fetch(&w->stats.durable_records, io->c_end - first, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->stats.blocks_written, io->n, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->stats.bytes_written, io->len, __ATOMIC_RELAXED);
	buf_put(w, io->buf, io->buf_class);
	io->buf = NULL;
	if (st->conf.on_durable != NULL)
		st->conf.on_durable(st->conf.on_durable_arg, sh->stream_id, sh->index, io->c_end,
		                    0);
}

/* After the commit: roll full segments, keep preallocation ahead. */
static void
shard_after_commit(struct store_writer *w, struct store_shard *sh, uint64_t now)
{
	struct firn_store *st = w->st;

	if (sh->dropped || store_closing(st))
		return;
	if (sh->tail != NULL && !sh->io_busy && sh->tail_off >= st->conf.segment_size) {
		/* Rolled now, or when the zeroing in flight has drained. */
		sh->roll_pending = true;
		shard_roll_if_pending(w, sh);
	}
	shard_prealloc(w, sh, now);
}

static void
writer_commit_finish(struct store_writer *w)
{
	uint64_t now = firn_mono_ns(), us = (now - w->commit_start_ns) / 1000;
	unsigned b = 0;
	uint32_t i;

	while (b + 1 < STORE_LAT_BUCKETS && (us >> (b + 1)) != 0)
		b++;
	/* Statistics only. */
	__atomic_add_fetch(&w->stats.commit_lat_us_log2[b], 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&w->lock);
	if (w->waiters > 0)
		pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < w->commit.n; i++)
		shard_after_commit(w, w->commit.v[i], now);
	w->commit.n = 0;
}

/* Reap completions (waiting for min_wait of them) and act on each. Returns how many. */
static int
writer_reap(struct store_writer *w, unsigned min_wait)
{
	int n, i;

	n = wops(w)->reap(w->q, w->cpl, w->st->conf.queue_depth, min_wait);
	if (n <= 0)
		return 0;
	for (i = 0; i < n; i++) {
		struct store_io *io = w->cpl[i].tag;

		switch (io->kind) {
		case STORE_IO_DATA:
			shard_data_done(w, io->sh, w->cpl[i].res);
			break;
		case STORE_IO_ZERO:
			shard_zero_done(w, io->sh, w->cpl[i].res);
			break;
		case STORE_IO_ZSYNC:
			shard_zsync_done(w, io->sh, w->cpl[i].res);
			break;
		}
	}
	if (w->commit_left == 0 && w->commit.n > 0)
		writer_commit_finish(w);
	/* Zeroes done: their fdatasync, and rolls that waited for them. */
	wops(w)->submit(w->q);
	return n;
}

/* ---- the commit ------------------------------------------------------------------------- */

static bool
writer_commit_due(struct store_writer *w, uint64_t now)
{
	struct firn_store *st = w->st;
	uint64_t since;

	/* Pairs with the release add in firn_store_flush(). */
	if (__atomic_load_n(&st->flush_gen, __ATOMIC_ACQUIRE) != w->flush_seen)
		return true;
	/* Pairs with the release store in firn_store_append(). */
	if (__atomic_load_n(&w->urgent, __ATOMIC_ACQUIRE))
		return true;
	/* Pairs with the release store in store_dirty_push(). */
	since = __atomic_load_n(&w->dirty_since_ns, __ATOMIC_ACQUIRE);
	return since != 0 && now >= since + (uint64_t)st->conf.flush_interval_us * 1000;
}

static int
writer_commit(struct store_writer *w, uint64_t now)
{
	struct store_vec tmp;
	uint32_t i, k = 0, want;
	uint64_t total = 0, batch = 0;
	int prepared = 0, rc;

	/* Pairs with the release add in firn_store_flush(). */
	w->flush_seen = __atomic_load_n(&w->st->flush_gen, __ATOMIC_ACQUIRE);
	/* Pairs with the release store in firn_store_append(). */
	__atomic_store_n(&w->urgent, 0, __ATOMIC_RELAXED);
	/*
	 * A commit wants one queue slot per shard. Zero writes in flight may
	 * hold some: they complete quickly, so wait for them rather than split
	 * the commit in two.
	 */
	pthread_mutex_lock(&w->lock);
	want = w->dirty.n;
	pthread_mutex_unlock(&w->lock);
	while (wops(w)->inflight(w->q) > 0 &&
	       w->st->conf.queue_depth - wops(w)->inflight(w->q) < want)
		if (writer_reap(w, 1) == 0)
			break;
	pthread_mutex_lock(&w->lock);
	tmp = w->commit;
	w->commit = w->dirty;
	w->dirty = tmp;
	w->dirty.n = 0;
	/* Pairs with the acquire load in writer_commit_due(). */
	__atomic_store_n(&w->dirty_since_ns, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&w->lock);

	w->commit_start_ns = now;
	for (i = 0; i < w->commit.n; i++) {
		struct store_shard *sh = w->commit.v[i];

		if (total >= w->st->commit_max) {
			/* Over this commit's budget: first in line for the next one. */
			store_dirty_push(w, sh, 1);
			continue;
		}
		rc = shard_prepare(w, sh, now);
		if (rc == 1) {
			w->commit.v[k++] = sh;
			prepared++;
			total += sh->dio.len;
			batch += sh->dio.len;
			/*
			 * Hand the disk what is sealed so far while we seal the rest:
			 * a big commit would otherwise leave the disk idle for the
			 * whole sealing time, then the CPU idle for the whole write.
			 */
			if (batch >= WRITER_SUBMIT_BYTES) {
				wops(w)->submit(w->q);
				batch = 0;
			}
		} else if (rc == -EAGAIN) {
			store_vec_push(&w->deferred, sh);
		}
		/*
		 * 0: nothing left; -EINPROGRESS: the roller has it and gives it
		 * back; -ESHUTDOWN: dropped, released by writer_drops().
		 */
	}
	w->commit.n = k;
	if (prepared == 0)
		return 0;
	w->commit_left = (unsigned)prepared;
	rc = wops(w)->submit(w->q);
	/* Statistics only. */
	__atomic_add_fetch(&w->stats.commits, 1, __ATOMIC_RELAXED);
	if (rc < 0) {
		/*
		 * The kernel refused the whole submit: the SQEs stay queued in the
		 * ring and go with the next one; wait for them then.
		 */
		FIRN_LOG(WARN, STORE_LOG, "writer %u: submit: %s", w->id, strerror(-rc));
	}
	return prepared;
}

/* ---- housekeeping ---------------------------------------------------------------------- */

/* Move deferred shards whose backoff is over back to the dirty list. */
static void
writer_undefer(struct store_writer *w, uint64_t now)
{
	uint32_t i, k = 0;

	for (i = 0; i < w->deferred.n; i++) {
		struct store_shard *sh = w->deferred.v[i];

		if (now >= sh->retry_ns && !sh->io_busy)
			store_dirty_push(w, sh, 1);
		else
			w->deferred.v[k++] = sh;
	}
	w->deferred.n = k;
}

/* Let go of dropped shards whose I/O has drained. */
static void
writer_drops(struct store_writer *w)
{
	struct store_vec mine = {0};
	uint32_t i;
	bool busy = false, any = false;

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < w->shards.n; i++)
		store_vec_push(&mine, w->shards.v[i]);
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < mine.n; i++) {
		struct store_shard *sh = mine.v[i];
		bool dropped;

		pthread_mutex_lock(&sh->lock);
		dropped = sh->dropped && !sh->released;
		pthread_mutex_unlock(&sh->lock);
		if (!dropped)
			continue;
		if (sh->io_busy || sh->zero_ios > 0 || shard_rolling(sh)) {
			busy = true;
			continue;
		}
		if (sh->wfd >= 0) {
			close(sh->wfd);
			sh->wfd = -1;
		}
		store_vec_remove(&w->deferred, sh);
		pthread_mutex_lock(&w->lock);
		store_vec_remove(&w->shards, sh);
		store_vec_remove(&w->dirty, sh);
		pthread_mutex_unlock(&w->lock);
		pthread_mutex_lock(&sh->lock);
		sh->released = true;
		pthread_mutex_unlock(&sh->lock);
		any = true;
	}
	free(mine.v);
	if (any) {
		pthread_mutex_lock(&w->lock);
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
	}
	if (busy)
		/* Pairs with the acquire exchange in store_writer_do_work(). */
		__atomic_store_n(&w->drop_pending, 1, __ATOMIC_RELEASE);
}

/*
 * Remove sh's oldest segments whose newest record is older than its
 * stream's retention. Never the open tail. Returns segments removed.
 */
int
store_gc_shard(struct store_shard *sh, int64_t now_ms)
{
	struct firn_store *st = sh->st;
	int64_t cutoff = now_ms - (int64_t)store_retention_hours(st, sh->stream_id) * 3600000;
	struct store_seg *gone[64];
	char path[PATH_MAX];
	uint32_t k = 0, i;

	pthread_mutex_lock(&sh->lock);
	while (k < sh->nsegs && k < FIRN_ARRAY_SIZE(gone)) {
		struct store_seg *seg = sh->segs[k];
		int64_t last = seg->n ? seg->ents[seg->n - 1].last_ts_ms : seg->created_ms;

		if (seg == sh->tail && seg->n > 0 && last < cutoff) {
			/*
			 * A tail that has expired whole: only a sealed segment can
			 * go, so ask the writer to roll it; the next GC removes it.
			 */
			/* Pairs with the acquire exchanges in writer_age_rolls(). */
			__atomic_store_n(&sh->age_roll, 1, __ATOMIC_RELEASE);
			__atomic_store_n(&sh->w->age_roll, 1, __ATOMIC_RELEASE);
			store_writer_wake(sh->w);
		}
		if (seg == sh->tail || (!seg->sealed && !seg->quarantined && k + 1 == sh->nsegs))
			break;
		if (last >= cutoff)
			break;
		gone[k++] = seg;
	}
	if (k > 0) {
		for (i = 0; i < k; i++)
			sh->bytes -= FIRN_MIN(sh->bytes, gone[i]->end);
		memmove(sh->segs, sh->segs + k, (sh->nsegs - k) * sizeof(*sh->segs));
		sh->nsegs -= k;
	}
	pthread_mutex_unlock(&sh->lock);
	for (i = 0; i < k; i++) {
		if (store_seg_path(sh, gone[i], path, sizeof(path)) == 0 && unlink(path) < 0 &&
		    errno != ENOENT)
			FIRN_LOG(WARN, STORE_LOG, "gc: unlink %s: %s", path, strerror(errno));
		store_seg_free(gone[i]);
	}
	if (k > 0) {
		firn_fsync_dir(sh->dir);
		/* Statistics only (any thread may run GC). */
		__atomic_add_fetch(&sh->w->stats.gc_segments, k, __ATOMIC_RELAXED);
	}
	return (int)k;
}

/*
 * Roll tails that GC found expired, and tails whose oldest record is older
 * than STORE_TAIL_MAX_AGE_MS: a slow shard's segment may never fill, and
 * retention can only remove sealed segments.
 */
static void
writer_age_rolls(struct store_writer *w, const struct store_vec *mine, int64_t now_ms)
{
	uint32_t i;

	for (i = 0; i < mine->n; i++) {
		struct store_shard *sh = mine->v[i];
		bool old;

		/* Pairs with the release store in store_gc_shard(). */
		old = __atomic_exchange_n(&sh->age_roll, 0, __ATOMIC_ACQUIRE) != 0;
		if (shard_rolling(sh) || sh->dropped || sh->tail == NULL || sh->tail->n == 0)
			continue;
		if (sh->tail->ents[0].first_ts_ms < now_ms - STORE_TAIL_MAX_AGE_MS)
			old = true;
		if (!old)
			continue;
		sh->roll_pending = true;
		shard_roll_if_pending(w, sh);
	}
}

static void
writer_periodic(struct store_writer *w, uint64_t now)
{
	struct firn_store *st = w->st;
	struct store_vec mine = {0};
	uint32_t i;
	bool gc = now >= w->next_gc_ns, gc_rolls = false;

	/* Pairs with the release store in store_gc_shard(). */
	if (__atomic_exchange_n(&w->age_roll, 0, __ATOMIC_ACQUIRE))
		gc_rolls = true;
	if (now < w->next_probe_ns && !gc && !gc_rolls)
		return;
	w->next_probe_ns = now + WRITER_PROBE_PERIOD_NS;
	/* Pairs with the release exchange in store_set_disk_full(). */
	if (__atomic_load_n(&st->disk_full, __ATOMIC_ACQUIRE)) {
		struct statvfs vfs;

		if (statvfs(st->dir, &vfs) == 0 &&
		    (uint64_t)vfs.f_bavail * vfs.f_frsize >
		            st->conf.prealloc + st->write_max + (4ull << 20)) {
			store_set_disk_full(st, false);
			/* Retry what failed for want of space now, not after its backoff. */
			for (i = 0; i < w->deferred.n; i++)
				w->deferred.v[i]->retry_ns = 0;
		}
	}
	pthread_mutex_lock(&w->lock);
	for (i = 0; i < w->shards.n; i++)
		store_vec_push(&mine, w->shards.v[i]);
	pthread_mutex_unlock(&w->lock);
	if (w->commit_left == 0 && (gc || gc_rolls))
		writer_age_rolls(w, &mine, firn_now_ms());
	for (i = 0; i < mine.n; i++) {
		struct store_shard *sh = mine.v[i];

		if (sh->dropped)
			continue;
		/* A roll that failed before, and preallocation retries. */
		shard_roll_if_pending(w, sh);
		shard_prealloc(w, sh, now);
		if (gc)
			store_gc_shard(sh, firn_now_ms());
	}
	free(mine.v);
	if (gc)
		w->next_gc_ns = now + WRITER_GC_PERIOD_NS;
}

/* ---- the duty cycle ---------------------------------------------------------------------- */

int
store_writer_do_work(void *arg)
{
	struct store_writer *w = arg;
	uint64_t now;
	int work = 0;

	if (wops(w)->inflight(w->q) > 0)
		/* Block only while a commit is in flight: its waiters wait on us. */
		work += writer_reap(w, w->commit_left > 0 ? 1 : 0);
	if (w->commit_left > 0)
		return work > 0 ? work : 1;
	now = firn_mono_ns();
	/* Pairs with the release stores in firn_store_stream_drop() and writer_drops(). */
	if (__atomic_exchange_n(&w->drop_pending, 0, __ATOMIC_ACQUIRE))
		writer_drops(w);
	if (w->deferred.n > 0)
		writer_undefer(w, now);
	writer_periodic(w, now);
	if (writer_commit_due(w, now))
		work += writer_commit(w, now);
	return work;
}

void
store_writer_drain(struct store_writer *w)
{
	while (wops(w)->inflight(w->q) > 0)
		if (writer_reap(w, 1) == 0 && wops(w)->inflight(w->q) > 0) {
			/* Prepared but never submitted (a failed submit): push them now. */
			if (wops(w)->submit(w->q) < 0)
				break;
		}
}
