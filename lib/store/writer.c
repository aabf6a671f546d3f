/*
 * writer.c - the writer agent: group commit, pipelined; preallocation; GC.
 *
 * A writer owns the shards s with s % writers == its id. It turns their
 * pending records into sealed blocks and makes them durable, many shards at
 * a time, keeping the disk busy while it seals:
 *
 *	appends ──▶ pending chunks ──seal──▶ arena ──write──▶ disk ──barrier──▶ durable
 *	           (packed records)   (in place)      (O_DIRECT)      (fdatasync)
 *
 * Batches (group commits). The writes submitted together form a batch. A
 * batch is submitted when the disk has no block write of ours in flight and
 * one is due (a flush was asked for, a shard has a block's worth pending,
 * the oldest record has waited flush_interval_us, or blocks were already
 * sealed for it). So under load each batch carries what arrived while the
 * previous one was on the disk: batching comes from the disk's own latency.
 *
 * Pipelining. While a batch is on the disk the writer does not wait for it:
 * it stages the next one, sealing every shard that has at least
 * WRITER_STAGE_MIN bytes pending into blocks in the writer's arena. When the
 * batch on the disk completes, the writer seals only the remainders and
 * submits the staged batch at once, so sealing (CPU) and writing (disk)
 * overlap instead of taking turns.
 *
 * Blocks and writes. Every block is one write, sealed straight from the
 * shard's pending chunks (firn_seg_block_seal_packed: no copy) into the
 * writer's arena, one aligned buffer registered with the disk queue once
 * (no page pinning per write). The arena is a ring: a batch's blocks are
 * allocated one after another, and its space comes back when all of them
 * have completed (batches complete in order, since the next one is only
 * submitted after the previous one's writes are done).
 *
 * Durability: barriers. Where the file system lets us (ext4 or xfs with
 * O_DIRECT: st->shared_flush, see store_probe_flush() in store.c), block
 * writes are plain O_DIRECT writes into space whose zeroes are already
 * written and synced (below the shard's ready_end), so they need no
 * metadata; once a batch's writes have all completed the writer issues one
 * fdatasync, the barrier, which flushes the device's write cache, and
 * everything that completed before it is durable. That is one cache flush
 * per group commit instead of one per shard: an RWF_DSYNC write on a disk
 * without FUA is a write plus a flush, each on an io_uring worker thread.
 * A write that is not in ready space (zeroing fell behind), or any write
 * where shared_flush is off (tmpfs, other file systems, conf.write_dsync),
 * carries RWF_DSYNC and is durable when it completes.
 *
 * A shard's writes live on its FIFO (sh->wq) in file order, and become
 * durable strictly in that order: the durable watermark moves only over a
 * prefix of DURABLE writes, and only then are their pending chunks released
 * and waiters told. A shard may have several writes in flight (several
 * blocks of a batch, or a batch and a staged one); after a crash at most the
 * unacknowledged writes past the last durable block are torn, missing or
 * present out of order, and recovery cuts the tail at the first block that is
 * not valid and truncates everything after it (recover.c), so no block past
 * a hole can ever be read as a continuation.
 *
 * Failures. A failed write (or a failed barrier, for every write it
 * covered) changes nothing that was acknowledged: the write and every later
 * write of its shard are thrown away, the records stay pending, the shard's
 * error is set (waiters and on_durable see it) and it retries after a
 * backoff, once its thrown-away writes have left the kernel, writing to the
 * same offset again with fresh IVs. ENOSPC (from a write, a segment creation
 * or a preallocation) also sets the store's disk_full flag, which makes
 * appends fail fast with -ENOSPC; the writer probes free space every half
 * second and clears it when there is room for a preallocation and a write
 * again. Preallocation fails first, so the records already accepted usually
 * still fit in the zeroes reserved ahead of each tail.
 *
 * Preallocation. Writes into unwritten extents cost a journal commit each
 * (see lib/disk/disk.c), so the writer keeps up to conf.prealloc bytes of
 * written zeroes ahead of each tail: when the tail gets within half of that,
 * it fallocates the next step (2 MiB; which is where ENOSPC shows up,
 * early) and writes zeroes over it through the same queue, 1 MiB per write,
 * then one fdatasync; at most four such writes per writer are in flight, so
 * zeroing never crowds out commits. None of that is on a commit's path. A
 * block write never overlaps zero writes in flight (it waits a moment
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
#define WRITER_SUBMIT_BYTES (1u << 20)
#define WRITER_ZERO_STEP (2ull << 20)
#define WRITER_ZERO_INFLIGHT 4u
#define WRITER_STAGE_MIN (64u << 10)
#define WRITER_DRAIN_MIN (32u << 10)
#define WRITER_IOV_MAX 64u
#define WRITER_SEAL_MAX 64u
#define WRITER_WR_SLAB 256u
#define WRITER_SLEEP_MAX_NS (1000000ull)
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

/* ---- write objects ------------------------------------------------------------------- */

/*
 * Write objects come from slabs that live as long as the writer, and go
 * back to the free list only when their batch retires (batch_retire()):
 * by then none of them is on a shard FIFO, a writer list or in the kernel,
 * so a pointer to a write is never left dangling while anything may use it.
 */
struct store_wr_slab {
	struct store_wr_slab *next;
	struct store_wr wr[WRITER_WR_SLAB];
};

static struct store_wr *
wr_get(struct store_writer *w)
{
	struct store_wr *wr = w->wr_free;

	if (wr == NULL) {
		struct store_wr_slab *s = calloc(1, sizeof(*s));
		unsigned i;

		if (s == NULL)
			return NULL;
		s->next = w->wr_slabs;
		w->wr_slabs = s;
		for (i = 0; i < WRITER_WR_SLAB; i++) {
			s->wr[i].next = w->wr_free;
			w->wr_free = &s->wr[i];
		}
		wr = w->wr_free;
	}
	w->wr_free = wr->next;
	memset(wr, 0, sizeof(*wr));
	wr->tag.kind = STORE_IO_DATA;
	return wr;
}

static void
wr_put(struct store_writer *w, struct store_wr *wr)
{
	wr->tag.sh = NULL;
	wr->next = w->wr_free;
	w->wr_free = wr;
}

/* Let go of a shard's writes at store close (the writer is stopped, nothing is in flight). */
void
store_wr_free_all(struct store_shard *sh)
{
	struct store_wr *wr, *nx;

	/* The objects themselves belong to the writer's slabs, freed with it. */
	for (wr = sh->wq; wr != NULL; wr = nx) {
		nx = wr->next;
		wr->next = NULL;
		wr->dead = true;
	}
	sh->wq = sh->wq_last = NULL;
	sh->nwq = 0;
}

/* ---- the arena ---------------------------------------------------------------------- */

/*
 * Room for len bytes at the arena's head, in the open batch b; NULL when the
 * arena is full. A request that does not fit before the end of the ring
 * wraps to its start, and the skipped end is charged to b.
 */
static uint8_t *
arena_alloc(struct store_writer *w, struct store_batch *b, size_t len)
{
	size_t h = w->a_head, t = w->a_tail, at, charge;

	if (w->a_used == 0)
		h = t = w->a_head = w->a_tail = 0;
	if (w->a_used > 0 && h == t)
		return NULL;
	if (h >= t) {
		if (w->arena_size - h >= len) {
			at = h;
			charge = len;
		} else if (t >= len) {
			at = 0;
			charge = w->arena_size - h + len;
		} else {
			return NULL;
		}
	} else if (t - h >= len) {
		at = h;
		charge = len;
	} else {
		return NULL;
	}
	if (b->a_bytes == 0)
		b->a_start = h;
	w->a_head = at + len;
	if (w->a_head == w->arena_size)
		w->a_head = 0;
	w->a_used += charge;
	b->a_bytes += charge;
	b->a_end = w->a_head;
	return w->arena + at;
}

/* Give back the unused end of the allocation just made (a block came out smaller). */
static void
arena_trim(struct store_writer *w, struct store_batch *b, uint8_t *p, size_t len, size_t keep)
{
	size_t at = (size_t)(p - w->arena);

	w->a_head = at + keep;
	if (w->a_head == w->arena_size)
		w->a_head = 0;
	w->a_used -= len - keep;
	b->a_bytes -= len - keep;
	b->a_end = w->a_head;
}

/* ---- batches -------------------------------------------------------------------------- */

static struct store_batch *
batch_at(struct store_writer *w, unsigned i)
{
	return &w->batches[(w->bq_head + i) % STORE_BATCHES];
}

/* The open batch (being staged or filled), opening one if a slot is free; NULL if none. */
static struct store_batch *
batch_open(struct store_writer *w)
{
	struct store_batch *b;

	if (w->bq_n > 0 && batch_at(w, w->bq_n - 1)->open)
		return batch_at(w, w->bq_n - 1);
	if (w->bq_n == STORE_BATCHES)
		return NULL;
	b = batch_at(w, w->bq_n++);
	memset(b, 0, sizeof(*b));
	b->open = true;
	b->used = true;
	return b;
}

static struct store_batch *
batch_current_open(struct store_writer *w)
{
	if (w->bq_n > 0 && batch_at(w, w->bq_n - 1)->open)
		return batch_at(w, w->bq_n - 1);
	return NULL;
}

/*
 * Retire batches from the oldest: give back the arena space of closed
 * batches whose writes have all left the kernel, and free the slots (and
 * write objects) of those whose writes are also all durable or thrown away
 * and on no writer list, counting their commit latency.
 */
/* A commit of STORE_SLOW_COMMIT_US or more: count it, and say so now and then. */
static void
writer_slow_commit(struct store_writer *w, const struct store_batch *b, uint64_t us, uint64_t now)
{
	/* Statistics only; the reader sums with relaxed loads. */
	__atomic_add_fetch(&w->stats.slow_commits, 1, __ATOMIC_RELAXED);
	w->slow_unlogged++;
	if (now < w->slow_warn_ns)
		return;
	FIRN_LOG(WARN, STORE_LOG,
	         "writer %u: a group commit took %.1f ms (%u writes, %.1f KiB, then the flush); "
	         "%llu "
	         "commit(s) over %u ms since the last warning. The device was slow: other I/O "
	         "on it (writeback bursts), or failing hardware (doc/operations.md)",
	         w->id, (double)us / 1000.0, b->nwrites, (double)b->bytes / 1024.0,
	         (unsigned long long)w->slow_unlogged, STORE_SLOW_COMMIT_US / 1000);
	w->slow_unlogged = 0;
	w->slow_warn_ns = now + STORE_SLOW_WARN_NS;
}

static void
batch_retire(struct store_writer *w)
{
	unsigned i;

	for (i = 0; i < w->bq_n; i++) {
		struct store_batch *b = batch_at(w, i);

		if (b->open || b->live > 0 || b->unsub != NULL)
			break;
		if (!b->a_released) {
			b->a_released = true;
			w->a_used -= b->a_bytes;
			w->a_tail = b->a_end;
			if (w->a_used == 0)
				w->a_head = w->a_tail = 0;
		}
	}
	while (w->bq_n > 0) {
		struct store_batch *b = batch_at(w, 0);
		struct store_wr *wr, *nx;
		unsigned k = 0;

		if (b->open || !b->a_released || b->pending > 0 || b->listed > 0)
			break;
		if (b->submitted) {
			uint64_t now = firn_mono_ns(), us = (now - b->start_ns) / 1000;

			while (k + 1 < STORE_LAT_BUCKETS && (us >> (k + 1)) != 0)
				k++;
			/* Statistics only. */
			__atomic_add_fetch(&w->stats.commit_lat_us_log2[k], 1, __ATOMIC_RELAXED);
			if (us >= STORE_SLOW_COMMIT_US)
				writer_slow_commit(w, b, us, now);
		}
		for (wr = b->first; wr != NULL; wr = nx) {
			nx = wr->bnext;
			wr_put(w, wr);
		}
		b->used = false;
		w->bq_head = (w->bq_head + 1) % STORE_BATCHES;
		w->bq_n--;
	}
}

/* ---- set-up ---------------------------------------------------------------------------- */

int
store_writer_init(struct firn_store *st, struct store_writer *w, unsigned id)
{
	pthread_condattr_t ca;
	struct iovec iov[2];

	w->st = st;
	w->id = id;
	w->btag.kind = STORE_IO_BARRIER;
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
	/*
	 * The arena holds the batch on the disk and the one being staged. Not
	 * zeroed: every block pads itself with zeroes when it is sealed.
	 */
	w->arena_size =
	        FIRN_ALIGN_UP(2 * st->commit_max + 2 * firn_seg_block_bound(st->conf.block_max),
	                      (size_t)FIRN_DISK_ALIGN);
	if (posix_memalign((void **)&w->arena, FIRN_DISK_ALIGN, w->arena_size) != 0) {
		w->arena = NULL;
		return firn_err_set(-ENOMEM, "writer %u: cannot allocate a %zu MiB arena", id,
		                    w->arena_size >> 20);
	}
	/* Blocks and zero writes come from these two buffers: pin them once if the driver can. */
	iov[0].iov_base = st->zeroes;
	iov[0].iov_len = STORE_ZERO_CHUNK;
	iov[1].iov_base = w->arena;
	iov[1].iov_len = w->arena_size;
	if (st->conf.disk->register_buffers != NULL &&
	    st->conf.disk->register_buffers(w->q, iov, 2) < 0)
		(void)st->conf.disk->register_buffers(w->q, iov, 1);
	w->next_gc_ns = firn_mono_ns() + WRITER_GC_PERIOD_NS;
	return 0;
}

void
store_writer_fini(struct store_writer *w)
{
	struct store_wr_slab *s, *nx;

	if (w->st == NULL)
		return;
	if (w->q != NULL)
		w->st->conf.disk->destroy(w->q);
	firn_seg_codec_destroy(w->cx);
	free(w->arena);
	for (s = w->wr_slabs; s != NULL; s = nx) {
		nx = s->next;
		free(s);
	}
	free(w->cpl);
	store_scratch_free(&w->scratch);
	free(w->dirty.v);
	free(w->shards.v);
	free(w->deferred.v);
	free(w->touched.v);
	free(w->scan.v);
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

/* Where sh's next block goes: after its last sealed write, or after its durable blocks. */
static inline uint64_t
shard_frontier(const struct store_shard *sh)
{
	return sh->wq_last != NULL ? sh->wq_last->off + sh->wq_last->len : sh->tail_off;
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

/*
 * A roll that waited for the shard's writes and zeroing to drain (or failed
 * before): start it now. A shard with records still to write is parked: the
 * roller puts it back on the dirty list when the new segment is there.
 */
static void
shard_roll_if_pending(struct store_writer *w, struct store_shard *sh)
{
	bool unsent;

	/* rolling first: while it is set, the rest belongs to the roller. */
	if (shard_rolling(sh) || !sh->roll_pending || sh->zero_ios > 0 || sh->wq != NULL ||
	    sh->tail == NULL || sh->dropped || store_closing(w->st) ||
	    firn_mono_ns() < sh->retry_ns)
		return;
	pthread_mutex_lock(&sh->lock);
	unsent = sh->durable_next < sh->next_counter;
	pthread_mutex_unlock(&sh->lock);
	shard_roll_start(w, sh, unsent || sh->park_wait);
	sh->park_wait = false;
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
	data_hi = shard_frontier(sh);
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

/* ---- sealing blocks ------------------------------------------------------------------ */

static void shard_fail(struct store_writer *w, struct store_shard *sh, struct store_wr *from,
                       int rc, uint64_t now);

/* Where sealing continues: after the last sealed write, or at the released head (lock held). */
static struct store_pos
shard_cursor(const struct store_shard *sh)
{
	struct store_pos p;

	if (sh->wq_last != NULL)
		return sh->wq_last->end;
	p.counter = sh->durable_next;
	p.chunk = sh->phead;
	p.off = p.chunk != NULL ? p.chunk->head : 0;
	p.cnt = p.chunk != NULL ? p.chunk->head_count : 0;
	return p;
}

/*
 * Deflate or not: a shard whose last block did not shrink stores the next
 * few raw without trying (the probe alone is 1/4 of a small block's
 * deflate), backing off up to 64 blocks between tries while it stays
 * incompressible; one whose last block shrank deflates the next without
 * the probe.
 */
static unsigned
shard_seal_flags(struct store_shard *sh)
{
	if (!sh->st->conf.compress)
		return 0;
	if (sh->z_skip > 0) {
		sh->z_skip--;
		return FIRN_SEG_SEAL_RAW;
	}
	return sh->z_good ? FIRN_SEG_SEAL_NOPROBE : 0;
}

static void
shard_seal_learn(struct store_shard *sh, unsigned flags, const struct firn_seg_index_entry *ent)
{
	if (!sh->st->conf.compress || (flags & FIRN_SEG_SEAL_RAW))
		return;
	sh->z_good = (ent->flags & FIRN_SEG_BLOCK_DEFLATE) != 0;
	if (sh->z_good) {
		sh->z_backoff = 0;
	} else {
		sh->z_backoff = (uint8_t)FIRN_MIN(sh->z_backoff ? sh->z_backoff * 2 : 4, 64);
		sh->z_skip = sh->z_backoff;
	}
}

/*
 * Cut the next block out of sh's pending records from p, up to end: whole
 * chunk remainders while they fit in block_max, and only when a single
 * remainder is larger than a block (a block_max below the chunk size) whole
 * records from it. Fills iov, *raw, *count, *last_ts; *full says the block
 * stopped for lack of room (not for lack of records). Advances p.
 */
static unsigned
shard_cut_block(const struct firn_store *st, struct store_pos *p, const struct store_pos *end,
                int64_t end_last_ts, struct iovec *iov, size_t *raw, uint32_t *count,
                int64_t *last_ts, bool *full)
{
	size_t max = st->conf.block_max;
	unsigned n = 0;

	*raw = 0;
	*count = 0;
	*full = false;
	for (;;) {
		struct store_chunk *c = p->chunk;
		uint32_t lim = c == end->chunk ? end->off : c->used;
		uint32_t lcnt = c == end->chunk ? end->cnt : c->count;
		size_t take = lim - p->off;

		if (take == 0) {
			if (c == end->chunk)
				break;
			p->chunk = c->next;
			p->off = 0;
			p->cnt = 0;
			continue;
		}
		if (*raw + take <= max && n < WRITER_IOV_MAX) {
			iov[n].iov_base = c->data + p->off;
			iov[n].iov_len = take;
			n++;
			*raw += take;
			*count += lcnt - p->cnt;
			p->counter += lcnt - p->cnt;
			*last_ts = c == end->chunk ? end_last_ts : c->last_ts;
			p->off = lim;
			p->cnt = lcnt;
			continue;
		}
		*full = true;
		if (*raw > 0)
			break;
		/* One remainder larger than a block: whole records, as many as fit. */
		{
			uint32_t off = p->off;

			while (off < lim) {
				uint32_t len = firn_seg_packed_len(c->data + off);

				if (off - p->off + len > max)
					break;
				*last_ts = firn_seg_packed_ts(c->data + off);
				off += len;
				(*count)++;
			}
			iov[0].iov_base = c->data + p->off;
			iov[0].iov_len = off - p->off;
			n = 1;
			*raw = off - p->off;
			p->counter += *count;
			p->cnt += *count;
			p->off = off;
		}
		break;
	}
	return n;
}

/*
 * Seal sh's pending records into block writes of batch b, each one block
 * sealed in place from the chunks into the arena. Only blocks of at least
 * min_block bytes (or full ones): staging starts with big pieces, and
 * takes everything (min_block 0) as the batch on the disk nears its end;
 * final (the batch's submission) takes everything appended so far and
 * takes sh off the dirty set when nothing is left. Both stop at write_max bytes per shard and
 * batch, at commit_max bytes per batch, at the end of the segment
 * (roll_pending), before zeroes still in flight, and when the arena is full.
 * Returns blocks sealed, 0 when it had to stop early for any of those
 * reasons with nothing sealed, or -errno (sh has failed: see shard_fail()).
 * *rest says whether records were left unsealed.
 */
static int
shard_seal(struct store_writer *w, struct store_shard *sh, struct store_batch *b, size_t min_block,
           bool final, uint64_t now, bool *rest)
{
	struct firn_store *st = w->st;
	struct firn_seg_ctx ctx = {
	        .stream_id = sh->stream_id,
	        .shard = sh->index,
	        .key = &sh->tail->key,
	};
	struct store_pos cur, end;
	int64_t end_last_ts;
	uint64_t foff = shard_frontier(sh), sealed = 0;
	int made = 0;

	pthread_mutex_lock(&sh->lock);
	cur = shard_cursor(sh);
	end.chunk = sh->ptail;
	end.off = sh->ptail != NULL ? sh->ptail->used : 0;
	end.cnt = sh->ptail != NULL ? sh->ptail->count : 0;
	end.counter = sh->next_counter;
	end_last_ts = sh->ptail != NULL ? sh->ptail->last_ts : 0;
	/* Room in the index for every write that may become durable: promotion never allocates. */
	if (sh->tail->cap < sh->tail->n + sh->nwq + WRITER_SEAL_MAX) {
		uint32_t cap = FIRN_MAX(sh->tail->cap * 2, sh->tail->n + sh->nwq + WRITER_SEAL_MAX);
		struct firn_seg_index_entry *e = realloc(sh->tail->ents, cap * sizeof(*e));

		if (e == NULL) {
			pthread_mutex_unlock(&sh->lock);
			*rest = cur.counter < end.counter;
			return 0;
		}
		sh->tail->ents = e;
		sh->tail->cap = cap;
	}
	pthread_mutex_unlock(&sh->lock);
	if (sh->batch != b) {
		sh->batch = b;
		sh->batch_bytes = 0;
	}

	while (cur.counter < end.counter) {
		struct iovec iov[WRITER_IOV_MAX];
		struct firn_seg_packed pk;
		struct store_pos p = cur;
		struct store_wr *wr;
		size_t raw, alloc;
		uint32_t count;
		int64_t last_ts = 0;
		unsigned n, flags;
		bool full;
		uint8_t *buf;
		long len;

		if (foff >= sh->roll_at) {
			/* Full: the rest goes to the next segment, once these are durable. */
			sh->roll_pending = true;
			break;
		}
		if (sh->batch_bytes >= st->write_max || b->bytes >= st->commit_max ||
		    (unsigned)made >= WRITER_SEAL_MAX)
			break;
		n = shard_cut_block(st, &p, &end, end_last_ts, iov, &raw, &count, &last_ts, &full);
		if (n == 0 || count == 0)
			break;
		if (!full && raw < min_block)
			break;
		alloc = firn_seg_block_bound(raw);
		/* Not over zeroes still in flight: their completion could land after ours. */
		if (sh->zero_ios > 0 && foff + alloc > sh->zero_lo) {
			sh->retry_ns = now + 200000;
			break;
		}
		wr = wr_get(w);
		buf = wr != NULL ? arena_alloc(w, b, alloc) : NULL;
		if (buf == NULL) {
			if (wr != NULL)
				wr_put(w, wr);
			break;
		}
		pk.iov = iov;
		pk.iovcnt = n;
		pk.count = count;
		pk.first_counter = cur.counter;
		pk.first_ts_ms = firn_seg_packed_ts(iov[0].iov_base);
		pk.last_ts_ms = last_ts;
		flags = shard_seal_flags(sh);
		len = firn_seg_block_seal_packed(w->cx, &ctx, &pk, flags, foff, buf, alloc,
		                                 &wr->ent);
		if (len < 0) {
			arena_trim(w, b, buf, alloc, 0);
			wr_put(w, wr);
			firn_err_set((int)len, "stream %" PRIu64 " shard %u: seal block: %s",
			             sh->stream_id, sh->index, strerror((int)-len));
			shard_fail(w, sh, NULL, (int)len, now);
			*rest = true;
			return (int)len;
		}
		arena_trim(w, b, buf, alloc, (size_t)len);
		shard_seal_learn(sh, flags, &wr->ent);
		wr->tag.sh = sh;
		wr->b = b;
		wr->state = STORE_WR_STAGED;
		wr->buf = buf;
		wr->len = (uint32_t)len;
		wr->off = foff;
		wr->end = p;
		/* Plain only where a barrier is enough: zeroes written and synced (no metadata). */
		wr->dsync = !st->shared_flush || foff + (uint64_t)len > sh->ready_end;
		if (sh->wq_last != NULL)
			sh->wq_last->next = wr;
		else
			sh->wq = wr;
		sh->wq_last = wr;
		sh->nwq++;
		if (b->last != NULL)
			b->last->bnext = wr;
		else
			b->first = wr;
		b->last = wr;
		if (b->unsub == NULL)
			b->unsub = wr;
		b->live++;
		b->pending++;
		b->bytes += (uint64_t)len;
		sh->batch_bytes += (uint64_t)len;
		sealed += raw;
		foff += (uint64_t)len;
		cur = p;
		made++;
	}
	pthread_mutex_lock(&sh->lock);
	sh->unsent_bytes -= FIRN_MIN(sealed, sh->unsent_bytes);
	*rest = cur.counter < sh->next_counter;
	if (final && !*rest) {
		/* Under the lock: an append after this sees on_dirty clear and pushes sh again. */
		sh->on_dirty = false;
		sh->unsent_since_ns = 0;
	}
	pthread_mutex_unlock(&sh->lock);
	return made;
}

/* ---- failures -------------------------------------------------------------------------- */

/*
 * Throw away from and every later write of sh: their records go back to
 * being unsealed, and the next seal starts where from started. Nothing is
 * freed here (batch_retire() does that); a write still in the kernel keeps
 * its arena space until it completes.
 */
static void
shard_kill_from(struct store_writer *w, struct store_shard *sh, struct store_wr *from)
{
	struct store_wr *wr, *prev = NULL, *nx;
	uint64_t back = 0;

	(void)w;
	if (from == NULL)
		return;
	for (wr = sh->wq; wr != NULL && wr != from; wr = wr->next)
		prev = wr;
	if (wr == NULL)
		return; /* already thrown away */
	if (prev != NULL)
		prev->next = NULL;
	else
		sh->wq = NULL;
	sh->wq_last = prev;
	for (; wr != NULL; wr = nx) {
		nx = wr->next;
		wr->next = NULL;
		wr->dead = true;
		sh->nwq--;
		back += wr->ent.raw_len;
		wr->b->pending--;
		if (wr->state == STORE_WR_STAGED)
			wr->b->live--; /* never submitted: its arena space is free with its batch */
	}
	pthread_mutex_lock(&sh->lock);
	sh->unsent_bytes += back;
	pthread_mutex_unlock(&sh->lock);
}

/*
 * Something sh needed failed (a write, a barrier, a seal, a roll, opening
 * the tail): throw away from and the writes after it (from may be NULL),
 * keep the records, tell, back off. The shard is frozen until its thrown
 * away writes have left the kernel, so a retry never races them.
 */
static void
shard_fail(struct store_writer *w, struct store_shard *sh, struct store_wr *from, int rc,
           uint64_t now)
{
	struct firn_store *st = w->st;
	uint64_t durable;
	bool requeue;
	int prev;

	if (rc >= 0)
		rc = -EIO;
	/* Statistics only. */
	__atomic_add_fetch(&w->stats.write_errors, 1, __ATOMIC_RELAXED);
	if (rc == -ENOSPC)
		store_set_disk_full(st, true);
	shard_kill_from(w, sh, from);
	sh->frozen = true;
	pthread_mutex_lock(&sh->lock);
	prev = sh->error;
	sh->error = rc;
	durable = sh->durable_next;
	/* Fully sealed before: it must come back to the dirty list, after the backoff. */
	requeue = !sh->on_dirty && durable < sh->next_counter;
	if (requeue)
		sh->on_dirty = true;
	pthread_mutex_unlock(&sh->lock);
	if (requeue)
		store_vec_push(&w->deferred, sh);
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

/* May sh be sealed now? (Writer-only state; clears the freeze once nothing is in flight.) */
static bool
shard_sealable(struct store_shard *sh, uint64_t now)
{
	if (sh->frozen) {
		if (sh->inflight > 0)
			return false;
		sh->frozen = false;
	}
	return now >= sh->retry_ns;
}

/* ---- durability: completions, barriers, promotion -------------------------------------- */

static void
shard_touch(struct store_writer *w, struct store_shard *sh)
{
	if (sh->touched)
		return;
	if (store_vec_push(&w->touched, sh) == 0)
		sh->touched = true;
}

static void
writer_list_uncovered(struct store_writer *w, struct store_wr *wr)
{
	wr->state = STORE_WR_DONE;
	wr->listed = true;
	wr->b->listed++;
	wr->lnext = NULL;
	if (w->uncovered_last != NULL)
		w->uncovered_last->lnext = wr;
	else
		w->uncovered = wr;
	w->uncovered_last = wr;
}

/* A block write completed. */
static void
wr_done(struct store_writer *w, struct store_wr *wr, int res, uint64_t now)
{
	struct store_shard *sh = wr->tag.sh;
	struct store_batch *b = wr->b;

	w->data_inflight--;
	sh->inflight--;
	b->live--;
	if (b->live == 0 && !b->open && b->unsub == NULL)
		w->barrier_due = true;
	if (wr->dead) {
		wr->state = STORE_WR_FAILED;
		return;
	}
	if (res != (int)wr->len) {
		wr->state = STORE_WR_FAILED;
		firn_err_set(res < 0 ? res : -EIO, "write %u bytes at %" PRIu64 ": %s", wr->len,
		             wr->off, res < 0 ? strerror(-res) : "short write");
		shard_fail(w, sh, wr, res < 0 ? res : -EIO, now);
		return;
	}
	if (wr->dsync) {
		wr->state = STORE_WR_DURABLE;
		shard_touch(w, sh);
		return;
	}
	writer_list_uncovered(w, wr);
}

/*
 * Issue the barrier when a batch's writes have all completed (or nothing is
 * in flight) and plain writes wait for one; one barrier at a time. It covers
 * exactly the writes that completed before it was issued.
 */
static void
writer_barrier_maybe(struct store_writer *w)
{
	struct store_wr *wr;

	if (w->barrier_inflight)
		return;
	if (w->uncovered == NULL) {
		w->barrier_due = false;
		return;
	}
	if (!w->barrier_due) {
		struct store_batch *b = batch_current_open(w);

		/* Writes on their way, or a started batch about to get its remainders: later. */
		if (w->data_inflight > 0 || (b != NULL && b->submitted))
			return;
	}
	if (wops(w)->fsync(w->q, w->st->barrier_fd, &w->btag) < 0)
		return; /* queue full: after the next completion */
	for (wr = w->uncovered; wr != NULL; wr = wr->lnext)
		if (!wr->dead)
			wr->state = STORE_WR_COVERED;
	w->covered = w->uncovered;
	w->uncovered = w->uncovered_last = NULL;
	w->barrier_inflight = true;
	w->barrier_due = false;
	wops(w)->submit(w->q);
}

static void
writer_barrier_done(struct store_writer *w, int res, uint64_t now)
{
	struct store_wr *wr, *nx;

	w->barrier_inflight = false;
	if (res < 0)
		firn_err_set(res, "group commit: fdatasync: %s", strerror(-res));
	for (wr = w->covered, w->covered = NULL; wr != NULL; wr = nx) {
		nx = wr->lnext;
		wr->lnext = NULL;
		wr->listed = false;
		wr->b->listed--;
		if (wr->dead)
			continue;
		if (res < 0) {
			wr->state = STORE_WR_FAILED;
			shard_fail(w, wr->tag.sh, wr, res, now);
			continue;
		}
		wr->state = STORE_WR_DURABLE;
		shard_touch(w, wr->tag.sh);
	}
}

static void shard_after_commit(struct store_writer *w, struct store_shard *sh, uint64_t now);

/*
 * Move sh's durable watermark over the prefix of its FIFO that is durable:
 * release the pending chunks those writes covered, add their index entries
 * to the tail segment, tell on_durable. Returns whether it moved.
 */
static bool
shard_promote(struct store_writer *w, struct store_shard *sh, uint64_t now)
{
	struct firn_store *st = w->st;
	struct store_wr *wr;
	uint64_t first, c_end = 0, blocks = 0, bytes = 0;

	if (sh->wq == NULL || sh->wq->state != STORE_WR_DURABLE)
		return false;
	pthread_mutex_lock(&sh->lock);
	first = sh->durable_next;
	while ((wr = sh->wq) != NULL && wr->state == STORE_WR_DURABLE) {
		struct store_chunk *c, *nx;
		struct store_seg *tail = sh->tail;

		if (tail->n == tail->cap) {
			/* Not expected (shard_seal() reserves room): grow, or try later. */
			uint32_t cap = tail->cap ? tail->cap * 2 : 64;
			struct firn_seg_index_entry *e = realloc(tail->ents, cap * sizeof(*e));

			if (e == NULL)
				break;
			tail->ents = e;
			tail->cap = cap;
		}
		/* Release the pending chunks the write covered. */
		for (c = sh->phead; c != wr->end.chunk; c = nx) {
			nx = c->next;
			store_chunk_put(st, c);
		}
		sh->phead = c;
		c->head = wr->end.off;
		c->head_count = wr->end.cnt;
		if (c->head == c->used) {
			/* Released less than half used: the shard has slowed, smaller chunks. */
			if (!c->big && c->used < c->cap / 2 && sh->chunk_cls > 0)
				sh->chunk_cls--;
			sh->phead = c->next;
			if (c == sh->ptail)
				sh->ptail = NULL;
			store_chunk_put(st, c);
		}
		sh->pend_bytes -= FIRN_MIN((uint64_t)wr->ent.raw_len, sh->pend_bytes);
		tail->ents[tail->n++] = wr->ent;
		c_end = wr->ent.first_counter + wr->ent.count;
		tail->next_counter = c_end;
		tail->end = wr->off + wr->len;
		sh->bytes += wr->len;
		sh->durable_ts = wr->ent.last_ts_ms;
		sh->tail_off = wr->off + wr->len;
		sh->wq = wr->next;
		if (sh->wq == NULL)
			sh->wq_last = NULL;
		sh->nwq--;
		wr->next = NULL;
		wr->b->pending--;
		blocks++;
		bytes += wr->len;
	}
	if (blocks == 0) {
		pthread_mutex_unlock(&sh->lock);
		return false;
	}
	/* Pairs with the acquire loads in store_wait() and the readers. */
	__atomic_store_n(&sh->durable_next, c_end, __ATOMIC_RELEASE);
	sh->error = 0;
	pthread_mutex_unlock(&sh->lock);
	sh->backoff_ms = 0;
	/* Statistics: one writer thread adds, any thread may read (relaxed). */
	__atomic_add_fetch(&w->stats.durable_records, c_end - first, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->stats.blocks_written, blocks, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->stats.bytes_written, bytes, __ATOMIC_RELAXED);
	if (st->conf.on_durable != NULL)
		st->conf.on_durable(st->conf.on_durable_arg, sh->stream_id, sh->index, c_end, 0);
	shard_after_commit(w, sh, now);
	return true;
}

static void
writer_promote(struct store_writer *w, uint64_t now)
{
	bool any = false;
	uint32_t i;

	for (i = 0; i < w->touched.n; i++) {
		struct store_shard *sh = w->touched.v[i];

		sh->touched = false;
		if (shard_promote(w, sh, now))
			any = true;
	}
	w->touched.n = 0;
	if (!any)
		return;
	pthread_mutex_lock(&w->lock);
	if (w->waiters > 0)
		pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* After durable progress: roll a full segment, keep preallocation ahead. */
static void
shard_after_commit(struct store_writer *w, struct store_shard *sh, uint64_t now)
{
	struct firn_store *st = w->st;

	if (sh->dropped || store_closing(st))
		return;
	if (sh->tail != NULL && sh->wq == NULL && sh->tail_off >= sh->roll_at)
		/* Rolled now, or when the zeroing in flight has drained. */
		sh->roll_pending = true;
	shard_roll_if_pending(w, sh);
	shard_prealloc(w, sh, now);
}

static int batch_submit(struct store_writer *w, struct store_batch *b, uint64_t now);

/* The disk is free of our writes and the last batch is durable: start the staged one. */
static void
writer_start_staged(struct store_writer *w, uint64_t now)
{
	struct store_batch *b = batch_current_open(w);

	if (b != NULL && b->unsub != NULL && w->data_inflight == 0 && !w->barrier_inflight &&
	    w->uncovered == NULL)
		batch_submit(w, b, now);
}

/* Reap completions (waiting for min_wait of them) and act on each. Returns how many. */
static int
writer_reap(struct store_writer *w, unsigned min_wait)
{
	uint64_t now;
	int n, i;

	n = wops(w)->reap(w->q, w->cpl, w->st->conf.queue_depth, min_wait);
	if (n <= 0)
		return 0;
	now = firn_mono_ns();
	for (i = 0; i < n; i++) {
		struct store_tag *t = w->cpl[i].tag;

		switch (t->kind) {
		case STORE_IO_DATA:
			wr_done(w, (struct store_wr *)t, w->cpl[i].res, now);
			break;
		case STORE_IO_BARRIER:
			writer_barrier_done(w, w->cpl[i].res, now);
			break;
		case STORE_IO_ZERO:
			shard_zero_done(w, t->sh, w->cpl[i].res);
			break;
		case STORE_IO_ZSYNC:
			shard_zsync_done(w, t->sh, w->cpl[i].res);
			break;
		}
	}
	/*
	 * Barrier first, then the staged batch if the disk is free, and only
	 * then the acks: telling the waiters wakes their threads, which on a
	 * busy machine take this core for a while.
	 */
	writer_barrier_maybe(w);
	writer_start_staged(w, now);
	writer_promote(w, now);
	batch_retire(w);
	/* Zeroes done: their fdatasync, and rolls that waited for them. */
	wops(w)->submit(w->q);
	return n;
}

/* ---- batches: staging and submitting ------------------------------------------------- */

/* Submit b's sealed writes that are not in the kernel yet (as many as the queue takes). */
static int
batch_submit(struct store_writer *w, struct store_batch *b, uint64_t now)
{
	struct store_wr *wr;
	int n = 0;

	while ((wr = b->unsub) != NULL) {
		struct store_shard *sh = wr->tag.sh;

		if (!wr->dead) {
			if (wops(w)->write(w->q, sh->wfd, wr->buf, wr->len, wr->off,
			                   wr->dsync ? FIRN_DISK_DSYNC : 0, wr) < 0)
				break; /* queue full: the rest after the next completions */
			wr->state = STORE_WR_INFLIGHT;
			sh->inflight++;
			w->data_inflight++;
			b->nwrites++;
			n++;
		} else {
			wr->state = STORE_WR_FAILED;
		}
		b->unsub = wr->bnext;
	}
	if (n == 0)
		return 0;
	/* A hint for the roller (spare layout waits for a quiet store): relaxed. */
	__atomic_store_n(&w->st->last_submit_ns, now, __ATOMIC_RELAXED);
	if (!b->submitted) {
		b->submitted = true;
		b->start_ns = now;
		/* Statistics only. */
		__atomic_add_fetch(&w->stats.commits, 1, __ATOMIC_RELAXED);
	}
	if (wops(w)->submit(w->q) < 0)
		/*
		 * The kernel refused the whole submit: the SQEs stay queued in the
		 * ring and go with the next one.
		 */
		FIRN_LOG(WARN, STORE_LOG, "writer %u: submit failed", w->id);
	return n;
}

/* A closed batch whose writes did not all fit in the queue yet, or NULL. */
static struct store_batch *
batch_leftover(struct store_writer *w)
{
	unsigned i;

	for (i = 0; i < w->bq_n; i++) {
		struct store_batch *b = batch_at(w, i);

		if (!b->open && b->unsub != NULL)
			return b;
	}
	return NULL;
}

static bool
writer_commit_due(struct store_writer *w, uint64_t now)
{
	struct firn_store *st = w->st;
	struct store_batch *b = batch_current_open(w);
	uint64_t since;

	/* Blocks were staged for it while the previous batch was on the disk (or went already). */
	if (b != NULL && (b->unsub != NULL || b->submitted))
		return true;
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

/* Make sure sh has an open tail to write to. 0, or -EAGAIN (retry later / rolling). */
static int
shard_ready_tail(struct store_writer *w, struct store_shard *sh, uint64_t now)
{
	struct firn_store *st = w->st;
	int rc;

	if (sh->tail == NULL || sh->roll_pending) {
		if (sh->wq != NULL) {
			/* Full, with writes still on their way: roll once they are durable. */
			sh->park_wait = true;
			return -EINPROGRESS;
		}
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
			shard_fail(w, sh, NULL, rc, now);
			return -EAGAIN;
		}
		sh->wfd = rc;
	}
	return 0;
}

/*
 * sh is in the batch being submitted: seal all it has. Afterwards sh is off
 * the dirty list when nothing is left, back on it when the batch's limits
 * cut it short, on the deferred list when it must wait, or with the roller.
 */
static void
shard_commit_one(struct store_writer *w, struct store_shard *sh, struct store_batch *b,
                 uint64_t now)
{
	bool dropped, rest = false;
	int rc;

	pthread_mutex_lock(&sh->lock);
	dropped = sh->dropped;
	if (shard_rolling(sh)) {
		/* The roller has it and puts it back on the dirty list when done. */
		sh->roll_parked = true;
		pthread_mutex_unlock(&sh->lock);
		return;
	}
	rc = sh->roll_err;
	sh->roll_err = 0;
	pthread_mutex_unlock(&sh->lock);
	if (dropped)
		return; /* released by writer_drops() */
	if (rc < 0)
		shard_fail(w, sh, NULL, rc, now);
	if (!shard_sealable(sh, now)) {
		store_vec_push(&w->deferred, sh);
		return;
	}
	rc = shard_ready_tail(w, sh, now);
	if (rc == -EINPROGRESS)
		return;
	if (rc < 0) {
		store_vec_push(&w->deferred, sh);
		return;
	}
	rc = shard_seal(w, sh, b, 0, true, now, &rest);
	if (rc < 0) {
		store_vec_push(&w->deferred, sh);
		return;
	}
	if (!rest)
		return; /* shard_seal() took it off the dirty set */
	if (sh->roll_pending) {
		if (sh->wq != NULL)
			/* Rolled (and put back) once its writes are durable. */
			sh->park_wait = true;
		else
			shard_roll_start(w, sh, true);
	} else if (now < sh->retry_ns) {
		/* Stopped before zeroes still in flight: a moment later. */
		store_vec_push(&w->deferred, sh);
	} else {
		/* Cut short by the batch's limits: first in line for the next one. */
		store_dirty_push(w, sh, 1);
	}
}

/*
 * Submit a batch: everything staged for it, plus all that every dirty shard
 * has pending. Sealing big remainders here (after an idle spell) hands the
 * disk each WRITER_SUBMIT_BYTES as soon as they are sealed.
 */
static int
writer_commit(struct store_writer *w, uint64_t now)
{
	struct store_batch *b = batch_open(w);
	struct store_vec tmp;
	uint64_t last = 0;
	uint32_t i;
	int n = 0;

	if (b == NULL)
		return 0;
	/* Pairs with the release add in firn_store_flush(). */
	w->flush_seen = __atomic_load_n(&w->st->flush_gen, __ATOMIC_ACQUIRE);
	/* Pairs with the release store in firn_store_append(). */
	__atomic_store_n(&w->urgent, 0, __ATOMIC_RELAXED);
	pthread_mutex_lock(&w->lock);
	tmp = w->scan;
	w->scan = w->dirty;
	w->dirty = tmp;
	w->dirty.n = 0;
	/* Pairs with the acquire load in writer_commit_due(). */
	__atomic_store_n(&w->dirty_since_ns, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&w->lock);

	/* What was staged goes to the disk before the remainders are sealed. */
	n += batch_submit(w, b, now);
	last = b->bytes;
	for (i = 0; i < w->scan.n; i++) {
		shard_commit_one(w, w->scan.v[i], b, now);
		if (b->bytes - last >= WRITER_SUBMIT_BYTES) {
			n += batch_submit(w, b, now);
			last = b->bytes;
		}
	}
	w->scan.n = 0;
	b->open = false;
	n += batch_submit(w, b, now);
	batch_retire(w); /* an empty batch goes at once */
	return n;
}

/*
 * While a batch is on the disk: seal the next one's big pieces now, so that
 * little is left to seal when the disk becomes free. Completions are picked
 * up between shards, so the next batch goes out as soon as it may.
 */
static int
writer_stage(struct store_writer *w, uint64_t now)
{
	struct store_batch *b = batch_open(w);
	size_t min_block = FIRN_MIN((size_t)WRITER_STAGE_MIN, (size_t)w->st->conf.block_max);
	uint32_t i;
	int made = 0;

	if (b == NULL)
		return 0;
	/*
	 * Near the end of the batch on the disk (its last quarter of writes, or
	 * its barrier) take smaller pieces too, so the submission has little
	 * left to seal. Not the smallest: a shard whose share of a batch is
	 * sealed in two blocks costs the disk two writes, and on a virtual disk
	 * a write costs about as much as 30 KiB of bandwidth.
	 */
	for (i = 0; i < w->bq_n; i++) {
		struct store_batch *d = batch_at(w, i);

		if (!d->open && d->submitted && d->live > 0 && d->live * 4 <= d->nwrites)
			min_block = WRITER_DRAIN_MIN;
	}
	if (w->barrier_inflight && w->data_inflight == 0)
		min_block = WRITER_DRAIN_MIN;
	pthread_mutex_lock(&w->lock);
	w->scan.n = 0;
	for (i = 0; i < w->dirty.n; i++)
		if (store_vec_push(&w->scan, w->dirty.v[i]) < 0)
			break;
	pthread_mutex_unlock(&w->lock);
	for (i = 0; i < w->scan.n && (w->data_inflight > 0 || w->barrier_inflight); i++) {
		struct store_shard *sh = w->scan.v[i];
		bool rest;
		int rc;

		if (sh->dropped || shard_rolling(sh) || sh->tail == NULL || sh->roll_pending ||
		    sh->wfd < 0 || !shard_sealable(sh, now))
			continue;
		rc = shard_seal(w, sh, b, min_block, false, now, &rest);
		if (rc > 0) {
			made += rc;
			if (wops(w)->inflight(w->q) > 0)
				writer_reap(w, 0);
		}
	}
	w->scan.n = 0;
	return made;
}

/* Move deferred shards whose backoff is over back to the dirty list. */
static void
writer_undefer(struct store_writer *w, uint64_t now)
{
	uint32_t i, k = 0;

	for (i = 0; i < w->deferred.n; i++) {
		struct store_shard *sh = w->deferred.v[i];

		if (sh->dropped || shard_sealable(sh, now))
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
		/* Its records will never be written: throw its writes away. */
		shard_kill_from(w, sh, sh->wq);
		if (sh->inflight > 0 || sh->zero_ios > 0 || shard_rolling(sh)) {
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
	if (gc || gc_rolls)
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

/*
 * Nothing in flight and the oldest record's flush interval ends within a
 * millisecond: sleep until it does rather than let the idle strategy find
 * it up to idle_max_us late. Returns whether it slept.
 */
static bool
writer_sleep_until_due(struct store_writer *w, uint64_t now)
{
	/* Pairs with the release store in store_dirty_push(). */
	uint64_t since = __atomic_load_n(&w->dirty_since_ns, __ATOMIC_ACQUIRE), due;
	struct timespec ts;

	if (since == 0)
		return false;
	due = since + (uint64_t)w->st->conf.flush_interval_us * 1000;
	if (due <= now || due - now > WRITER_SLEEP_MAX_NS)
		return false;
	ts.tv_sec = (time_t)(due / 1000000000ull);
	ts.tv_nsec = (long)(due % 1000000000ull);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	return true;
}

int
store_writer_do_work(void *arg)
{
	struct store_writer *w = arg;
	struct store_batch *left;
	uint64_t now;
	int work = 0;

	if (wops(w)->inflight(w->q) > 0)
		work += writer_reap(w, 0);
	writer_barrier_maybe(w);
	now = firn_mono_ns();
	/* Pairs with the release stores in firn_store_stream_drop() and writer_drops(). */
	if (__atomic_exchange_n(&w->drop_pending, 0, __ATOMIC_ACQUIRE))
		writer_drops(w);
	if (w->deferred.n > 0)
		writer_undefer(w, now);
	writer_periodic(w, now);
	left = batch_leftover(w);
	if (left != NULL)
		work += batch_submit(w, left, now);
	else if ((w->data_inflight == 0 && !w->barrier_inflight) ||
	         (batch_current_open(w) != NULL && batch_current_open(w)->submitted)) {
		/*
		 * The disk is free of our writes and the last batch is durable (or
		 * the next one has started: writer_start_staged()): the next batch
		 * goes when due. (Not while the barrier is in flight: a
		 * cache flush waits for the writes queued behind it too, so the
		 * last batch's acks would wait for the next batch's writes.)
		 */
		if (!writer_commit_due(w, now) && wops(w)->inflight(w->q) == 0 &&
		    writer_sleep_until_due(w, now))
			now = firn_mono_ns();
		if (writer_commit_due(w, now))
			work += writer_commit(w, now);
	} else {
		/* A batch is on the disk: seal the next one meanwhile. */
		work += writer_stage(w, now);
	}
	if (work == 0 && (w->data_inflight > 0 || w->barrier_inflight)) {
		/* Nothing to do but wait for the disk (the waiters wait on us). */
		work += writer_reap(w, 1);
		if (work == 0)
			work = 1;
	}
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
