/*
 * store.c - the store's front door: open and close, the shard table,
 * appends, durable waits, sealing, dropping, retention and statistics.
 *
 * An append does the least it can on the caller's thread: find the shard
 * (a read-locked hash lookup), take the shard lock, give the records their
 * counters and an arrival time, copy them into the shard's pending chunks,
 * and, if the shard had nothing waiting, put it on its writer's dirty list
 * and wake the writer. Everything slow (packing, compression, encryption,
 * I/O) happens on the writer (writer.c), many shards at a time.
 *
 * Waiting for durability is a condition variable per writer: a writer
 * broadcasts once per group commit (only when somebody waits), and waiters
 * re-check the shard's durable watermark, which the writer publishes with a
 * release store.
 *
 * With conf.threaded = false there are no writer threads: every call that
 * must wait for the writers (wait, seal, drop, close) runs their duty cycle
 * itself, so a test can drive the whole store from one thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

void
firn_store_conf_defaults(struct firn_store_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->writers = 1;
	conf->threaded = true;
	conf->compress = true;
	conf->segment_size = 64ull << 20;
	conf->prealloc = 8ull << 20;
	conf->block_max = (1u << 20) + (64u << 10);
	conf->flush_interval_us = 200;
	conf->shard_pending_max = 8ull << 20;
	conf->queue_depth = 256;
}

int
store_open_file(const char *path, int flags, bool odirect)
{
	int fd = -1;

	if (odirect) {
		fd = open(path, flags | O_DIRECT | O_CLOEXEC, 0644);
		if (fd >= 0 || errno != EINVAL)
			return fd >= 0 ? fd : -errno;
	}
	fd = open(path, flags | O_CLOEXEC, 0644);
	return fd >= 0 ? fd : -errno;
}

/* ---- small vectors of shards -------------------------------------------------------- */

int
store_vec_push(struct store_vec *v, struct store_shard *sh)
{
	if (v->n == v->cap) {
		uint32_t cap = v->cap ? v->cap * 2 : 16;
		struct store_shard **p = realloc(v->v, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = sh;
	return 0;
}

void
store_vec_remove(struct store_vec *v, struct store_shard *sh)
{
	uint32_t i, j = 0;

	for (i = 0; i < v->n; i++)
		if (v->v[i] != sh)
			v->v[j++] = v->v[i];
	v->n = j;
}

/* ---- pending chunks ------------------------------------------------------------------ */

/*
 * Chunk sizes grow with a shard's rate: 64 KiB, doubling each time a shard
 * fills its last chunk, up to the largest class that fits in a block
 * (1 MiB with the default block_max), and halving again when the writer
 * finds one it released less than half used. A busy shard's blocks then come
 * out of one chunk each, so compression reads them in one piece (a block
 * that spans chunks is gathered first, one copy); a slow shard holds no more
 * than 64 KiB. Free chunks are pooled per class, up to STORE_POOL_BYTES in
 * all: a chunk this size is an mmap of its own, and faulting it in anew at
 * every use would cost more than the copy it saves.
 */
#define STORE_POOL_BYTES (256ull << 20)

static uint32_t
store_chunk_bytes(unsigned cls)
{
	return STORE_CHUNK_BYTES << cls;
}

/* The largest class whose data fits in a block of block_max. */
unsigned
store_chunk_class_max(const struct firn_store *st)
{
	unsigned c = 0;

	while (c + 1 < STORE_CHUNK_CLASSES &&
	       store_chunk_bytes(c + 1) - sizeof(struct store_chunk) <= st->conf.block_max)
		c++;
	return c;
}

static struct store_chunk *
store_chunk_get(struct firn_store *st, uint32_t need, unsigned cls)
{
	struct store_chunk *c = NULL;
	uint32_t cap = store_chunk_bytes(cls) - (uint32_t)sizeof(struct store_chunk);

	if (need > cap) {
		c = malloc(sizeof(*c) + need);
		if (c == NULL)
			return NULL;
		c->cap = need;
		c->big = true;
		goto init;
	}
	pthread_mutex_lock(&st->pool_lock);
	c = st->pool[cls];
	if (c != NULL) {
		st->pool[cls] = c->next;
		st->pool_bytes -= store_chunk_bytes(cls);
	}
	pthread_mutex_unlock(&st->pool_lock);
	if (c == NULL) {
		c = malloc(store_chunk_bytes(cls));
		if (c == NULL)
			return NULL;
	}
	c->cap = cap;
	c->big = false;
	c->cls = (uint8_t)cls;
init:
	c->next = NULL;
	c->used = 0;
	c->count = 0;
	c->head = 0;
	c->head_count = 0;
	c->last_ts = 0;
	return c;
}

void
store_chunk_put(struct firn_store *st, struct store_chunk *c)
{
	if (c->big) {
		free(c);
		return;
	}
	pthread_mutex_lock(&st->pool_lock);
	if (st->pool_bytes + store_chunk_bytes(c->cls) <= STORE_POOL_BYTES) {
		c->next = st->pool[c->cls];
		st->pool[c->cls] = c;
		st->pool_bytes += store_chunk_bytes(c->cls);
		c = NULL;
	}
	pthread_mutex_unlock(&st->pool_lock);
	free(c);
}

/* ---- segments and shards ---------------------------------------------------------- */

int
store_seg_path(const struct store_shard *sh, const struct store_seg *seg, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%020" PRIu64 ".seg%s", sh->dir, seg->first_counter,
	                 seg->quarantined ? ".quarantine" : "");

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int
store_seg_push(struct store_shard *sh, struct store_seg *seg)
{
	if (sh->nsegs == sh->capsegs) {
		uint32_t cap = sh->capsegs ? sh->capsegs * 2 : 8;
		struct store_seg **p = realloc(sh->segs, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		sh->segs = p;
		sh->capsegs = cap;
	}
	sh->segs[sh->nsegs++] = seg;
	return 0;
}

void
store_seg_free(struct store_seg *seg)
{
	if (seg == NULL)
		return;
	free(seg->ents);
	memset(&seg->key, 0, sizeof(seg->key));
	free(seg);
}

struct store_shard *
store_shard_new(struct firn_store *st, uint64_t stream_id, uint32_t index)
{
	struct store_shard *sh = calloc(1, sizeof(*sh));
	char path[PATH_MAX];

	if (sh == NULL)
		return NULL;
	if (snprintf(path, sizeof(path), "%s/%" PRIu64 "/%u", st->streams_dir, stream_id, index) >=
	    (int)sizeof(path)) {
		free(sh);
		return NULL;
	}
	sh->dir = strdup(path);
	if (sh->dir == NULL) {
		free(sh);
		return NULL;
	}
	sh->st = st;
	sh->stream_id = stream_id;
	sh->index = index;
	sh->w = &st->writers[index % st->nwriters];
	pthread_mutex_init(&sh->lock, NULL);
	sh->wfd = -1;
	sh->zio.kind = STORE_IO_ZERO;
	sh->zio.sh = sh;
	sh->zsio.kind = STORE_IO_ZSYNC;
	sh->zsio.sh = sh;
	return sh;
}

void
store_shard_free(struct store_shard *sh)
{
	struct store_chunk *c, *nx;
	uint32_t i;

	if (sh == NULL)
		return;
	for (c = sh->phead; c != NULL; c = nx) {
		nx = c->next;
		store_chunk_put(sh->st, c);
	}
	for (i = 0; i < sh->nsegs; i++)
		store_seg_free(sh->segs[i]);
	free(sh->segs);
	if (sh->wfd >= 0)
		close(sh->wfd);
	store_wr_free_all(sh);
	pthread_mutex_destroy(&sh->lock);
	free(sh->dir);
	free(sh);
}

/* ---- the shard table ------------------------------------------------------------------- */

static uint32_t
store_hash(uint64_t stream_id, uint32_t index)
{
	uint64_t h = stream_id * 0x9E3779B97F4A7C15ull ^ ((uint64_t)index + 0x632BE59BD9B4E019ull);

	h ^= h >> 31;
	h *= 0xBF58476D1CE4E5B9ull;
	h ^= h >> 29;
	return (uint32_t)h;
}

static struct store_shard *
store_map_find(struct firn_store *st, uint64_t stream_id, uint32_t index)
{
	uint32_t mask = st->map_size - 1, i;

	if (st->map_size == 0)
		return NULL;
	for (i = store_hash(stream_id, index) & mask; st->map[i] != NULL; i = (i + 1) & mask)
		if (st->map[i]->stream_id == stream_id && st->map[i]->index == index)
			return st->map[i];
	return NULL;
}

static void
store_map_place(struct store_shard **map, uint32_t size, struct store_shard *sh)
{
	uint32_t mask = size - 1, i;

	for (i = store_hash(sh->stream_id, sh->index) & mask; map[i] != NULL; i = (i + 1) & mask)
		;
	map[i] = sh;
}

/* Rebuild the table at size, leaving out the released shards of stream skip_sid. */
static int
store_map_rebuild(struct firn_store *st, uint32_t size, bool skip, uint64_t skip_sid)
{
	struct store_shard **map = calloc(size, sizeof(*map));
	uint32_t i, used = 0;

	if (map == NULL)
		return -ENOMEM;
	for (i = 0; i < st->map_size; i++) {
		struct store_shard *sh = st->map[i];

		if (sh == NULL)
			continue;
		if (skip && sh->stream_id == skip_sid && sh->released)
			continue;
		store_map_place(map, size, sh);
		used++;
	}
	free(st->map);
	st->map = map;
	st->map_size = size;
	st->map_used = used;
	return 0;
}

/* Insert sh (not yet present) and register it with its writer. Map write-locked. */
int
store_map_insert(struct firn_store *st, struct store_shard *sh)
{
	struct store_writer *w = sh->w;
	int rc;

	if ((st->map_used + 1) * 2 > st->map_size) {
		rc = store_map_rebuild(st, st->map_size ? st->map_size * 2 : 64, false, 0);
		if (rc < 0)
			return rc;
	}
	pthread_mutex_lock(&w->lock);
	rc = store_vec_push(&w->shards, sh);
	pthread_mutex_unlock(&w->lock);
	if (rc < 0)
		return rc;
	store_map_place(st->map, st->map_size, sh);
	st->map_used++;
	return 0;
}

/*
 * Find a shard and take a reference (store_shard_put() drops it). With
 * create, a shard that has no log yet gets one in memory; its directory and
 * first segment appear with its first write.
 */
/* Was stream_id dropped since open? Under map_lock. */
static bool
store_dropped(const struct firn_store *st, uint64_t stream_id)
{
	for (uint32_t i = 0; i < st->ndropped; i++)
		if (st->dropped_ids[i] == stream_id)
			return true;
	return false;
}

/* Remember a dropped stream (under the write lock). Best effort: -ENOMEM forgets it. */
static void
store_dropped_add(struct firn_store *st, uint64_t stream_id)
{
	if (store_dropped(st, stream_id))
		return;
	if (st->ndropped == st->dropped_cap) {
		uint32_t cap = st->dropped_cap ? 2 * st->dropped_cap : 16;
		uint64_t *v = realloc(st->dropped_ids, cap * sizeof(*v));

		if (v == NULL)
			return;
		st->dropped_ids = v;
		st->dropped_cap = cap;
	}
	st->dropped_ids[st->ndropped++] = stream_id;
}

struct store_shard *
store_shard_get(struct firn_store *st, uint64_t stream_id, uint32_t index, bool create)
{
	struct store_shard *sh;

	pthread_rwlock_rdlock(&st->map_lock);
	sh = store_map_find(st, stream_id, index);
	if (sh != NULL)
		/* Pairs with the release decrement in store_shard_put(). */
		__atomic_add_fetch(&sh->refs, 1, __ATOMIC_ACQUIRE);
	pthread_rwlock_unlock(&st->map_lock);
	if (sh != NULL || !create)
		return sh;

	pthread_rwlock_wrlock(&st->map_lock);
	sh = store_map_find(st, stream_id, index);
	if (sh == NULL && store_dropped(st, stream_id)) {
		pthread_rwlock_unlock(&st->map_lock);
		firn_err_set(-ESHUTDOWN, "stream %" PRIu64 " was dropped", stream_id);
		return NULL;
	}
	if (sh == NULL) {
		sh = store_shard_new(st, stream_id, index);
		if (sh == NULL || store_map_insert(st, sh) < 0) {
			store_shard_free(sh);
			pthread_rwlock_unlock(&st->map_lock);
			firn_err_set(-ENOMEM, "stream %" PRIu64 " shard %u: out of memory",
			             stream_id, index);
			return NULL;
		}
	}
	/* Pairs with the release decrement in store_shard_put(). */
	__atomic_add_fetch(&sh->refs, 1, __ATOMIC_ACQUIRE);
	pthread_rwlock_unlock(&st->map_lock);
	return sh;
}

void
store_shard_put(struct store_shard *sh)
{
	/* Pairs with the acquire load in firn_store_stream_drop()'s wait. */
	__atomic_sub_fetch(&sh->refs, 1, __ATOMIC_RELEASE);
}

/* ---- retention ------------------------------------------------------------------------ */

#define STORE_RETENTION_DEFAULT_H 24u

uint32_t
store_retention_hours(struct firn_store *st, uint64_t stream_id)
{
	uint32_t h = STORE_RETENTION_DEFAULT_H;
	unsigned i;

	pthread_mutex_lock(&st->ret_lock);
	for (i = 0; i < st->nret; i++)
		if (st->ret[i].stream_id == stream_id)
			h = st->ret[i].hours;
	pthread_mutex_unlock(&st->ret_lock);
	return h;
}

int
firn_store_set_retention(struct firn_store *st, uint64_t stream_id, uint32_t hours)
{
	unsigned i;
	int rc = 0;

	if (hours == 0)
		return -EINVAL;
	pthread_mutex_lock(&st->ret_lock);
	for (i = 0; i < st->nret; i++)
		if (st->ret[i].stream_id == stream_id)
			break;
	if (i == st->nret) {
		if (st->nret == st->capret) {
			unsigned cap = st->capret ? st->capret * 2 : 16;
			struct store_retention *p = realloc(st->ret, cap * sizeof(*p));

			if (p == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			st->ret = p;
			st->capret = cap;
		}
		st->ret[st->nret++].stream_id = stream_id;
	}
	st->ret[i].hours = hours;
out:
	pthread_mutex_unlock(&st->ret_lock);
	return rc;
}

/* ---- open / close ---------------------------------------------------------------------- */

static void
store_conf_fill(struct firn_store_conf *c)
{
	struct firn_store_conf d;

	firn_store_conf_defaults(&d);
	if (c->writers == 0)
		c->writers = 1;
	if (c->segment_size == 0)
		c->segment_size = d.segment_size;
	if (c->block_max == 0)
		c->block_max = d.block_max;
	if (c->shard_pending_max == 0)
		c->shard_pending_max = d.shard_pending_max;
	if (c->queue_depth == 0)
		c->queue_depth = d.queue_depth;
	c->segment_size = FIRN_ALIGN_UP(FIRN_MAX(c->segment_size, (uint64_t)(16u << 10)),
	                                (uint64_t)FIRN_DISK_ALIGN);
	c->prealloc = FIRN_ALIGN_UP(c->prealloc, (uint64_t)FIRN_DISK_ALIGN);
	if (c->queue_depth < 8)
		c->queue_depth = 8;
}

/* Does the file system take O_DIRECT? (tmpfs does not.) */
static bool
store_probe_odirect(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/.odirect-probe", dir) >= (int)sizeof(path))
		return true;
	fd = open(path, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EINVAL) {
		unlink(path);
		return false;
	}
	if (fd >= 0)
		close(fd);
	unlink(path);
	return true;
}

/*
 * Can one fdatasync stand for a whole group commit (writer.c)? A block write
 * that lands in space whose zeroes are written and synced changes no
 * metadata: once it has completed, its data sits in the device's volatile
 * write cache, and what makes it durable is a cache flush, which is a
 * device-wide operation. On ext4 (and ext2/3 through it) and xfs, every
 * fdatasync ends with one (blkdev_issue_flush), also for a file with
 * nothing dirty: ext4_sync_file() sets needs_barrier when the inode's
 * transaction is already committed, xfs_file_fsync() flushes the data
 * device when the log force had nothing to do. So the writers fdatasync one
 * empty file of their own after a batch's writes have completed, and every
 * write that completed before it is durable: one flush per group commit
 * instead of one per shard (measured here: 64 RWF_DSYNC writes of 16 KiB
 * to 64 files take 1.1 ms, the same 64 plain writes plus one fdatasync
 * 0.65 ms; see doc/performance.md). Anywhere else (tmpfs, where O_DIRECT is
 * refused; other file systems, whose fsync may skip the flush for a clean
 * file; or conf.write_dsync) each block write carries RWF_DSYNC.
 */
#define STORE_EXT4_MAGIC 0xEF53
#define STORE_XFS_MAGIC 0x58465342

static bool
store_probe_flush(struct firn_store *st)
{
	char path[PATH_MAX];
	struct statfs sfs;

	if (!st->odirect || st->conf.write_dsync || statfs(st->dir, &sfs) < 0 ||
	    (sfs.f_type != STORE_EXT4_MAGIC && sfs.f_type != STORE_XFS_MAGIC))
		return false;
	if (snprintf(path, sizeof(path), "%s/.barrier", st->dir) >= (int)sizeof(path))
		return false;
	st->barrier_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	return st->barrier_fd >= 0;
}

static void store_free(struct firn_store *st);

struct firn_store *
firn_store_open(const struct firn_store_conf *conf)
{
	struct firn_store *st;
	char path[PATH_MAX];
	unsigned i;
	int rc;

	if (conf == NULL || conf->dir == NULL || conf->kek == NULL || conf->disk == NULL) {
		firn_err_set(-EINVAL, "store: conf needs dir, kek and disk");
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		firn_err_set(-ENOMEM, "store: out of memory");
		return NULL;
	}
	st->conf = *conf;
	st->barrier_fd = -1;
	st->spares.fd = -1;
	store_conf_fill(&st->conf);
	memcpy(st->kek, conf->kek, sizeof(st->kek));
	st->dir = strdup(conf->dir);
	st->conf.dir = st->dir;
	st->conf.kek = st->kek;
	pthread_rwlock_init(&st->map_lock, NULL);
	pthread_mutex_init(&st->pool_lock, NULL);
	pthread_mutex_init(&st->cx_lock, NULL);
	pthread_mutex_init(&st->ret_lock, NULL);
	if (st->dir == NULL ||
	    snprintf(path, sizeof(path), "%s/streams", conf->dir) >= (int)sizeof(path) ||
	    (st->streams_dir = strdup(path)) == NULL) {
		firn_err_set(-ENAMETOOLONG, "store: bad data directory '%s'", conf->dir);
		goto fail;
	}
	/*
	 * One shard's write per commit: big enough for large sequential I/O,
	 * small enough that a segment overshoots segment_size by at most a
	 * quarter (a write never splits across segments).
	 */
	st->write_max = FIRN_MAX((uint64_t)st->conf.block_max,
	                         FIRN_MIN((uint64_t)4 << 20, st->conf.segment_size / 4));
	/*
	 * One commit: enough to keep the disk streaming, small enough that a
	 * burst does not turn into one huge commit that every waiter sits out.
	 */
	st->commit_max = FIRN_MAX(4 * st->write_max, (uint64_t)16 << 20);
	st->read_max_raw = st->conf.block_max;
	st->chunk_cls_max = store_chunk_class_max(st);
	st->zeroes = firn_disk_alloc(STORE_ZERO_CHUNK);
	if (st->zeroes == NULL) {
		firn_err_set(-ENOMEM, "store: out of memory");
		goto fail;
	}
	rc = firn_mkdir_p(st->streams_dir, 0755);
	if (rc < 0) {
		firn_err_wrap(rc, "store: create data directory %s", conf->dir);
		goto fail;
	}
	st->odirect = store_probe_odirect(st->dir);
	if (!st->odirect)
		FIRN_LOG(WARN, STORE_LOG,
		         "%s does not support O_DIRECT (tmpfs?): writes go through the page "
		         "cache, still with RWF_DSYNC",
		         st->dir);
	st->shared_flush = store_probe_flush(st);
	st->nwriters = st->conf.writers;
	st->writers = calloc(st->nwriters, sizeof(*st->writers));
	if (st->writers == NULL) {
		firn_err_set(-ENOMEM, "store: out of memory");
		goto fail;
	}
	for (i = 0; i < st->nwriters; i++) {
		rc = store_writer_init(st, &st->writers[i], i);
		if (rc < 0) {
			firn_err_wrap(rc, "store: start writer %u", i);
			goto fail;
		}
	}
	rc = store_spares_init(st);
	if (rc < 0) {
		firn_err_wrap(rc, "store: spare segments in %s", conf->dir);
		goto fail;
	}
	rc = store_recover(st);
	if (rc < 0) {
		firn_err_wrap(rc, "store: recover %s", conf->dir);
		goto fail;
	}
	if (st->conf.threaded) {
		st->roller = store_roller_start(st);
		if (st->roller == NULL) {
			firn_err_set(-EAGAIN, "store: cannot start the segment roller thread");
			goto fail;
		}
		for (i = 0; i < st->nwriters; i++) {
			struct store_writer *w = &st->writers[i];
			struct firn_agent a = {
			        .name = w->name,
			        .do_work = store_writer_do_work,
			        .arg = w,
			        /*
			         * Appends wake an idle writer, so the sleep cap only bounds
			         * how late a flush-interval deadline can be noticed.
			         */
			        .idle_max_us =
			                FIRN_MAX(50u, FIRN_MIN(st->conf.flush_interval_us, 1000u)),
			};

			snprintf(w->name, sizeof(w->name), "firn-wr%u", i);
			w->runner = firn_agent_runner_start(&a);
			if (w->runner == NULL) {
				firn_err_wrap(-EAGAIN, "store: start writer thread %u", i);
				goto fail;
			}
		}
	}
	return st;
fail:
	store_free(st);
	return NULL;
}

static void
store_free(struct firn_store *st)
{
	unsigned i;

	/* Pairs with the acquire loads in the writers: no new preallocation or rolls. */
	__atomic_store_n(&st->closing, 1, __ATOMIC_RELEASE);
	if (st->writers != NULL) {
		for (i = 0; i < st->nwriters; i++)
			if (st->writers[i].runner != NULL) {
				firn_agent_runner_stop(st->writers[i].runner);
				st->writers[i].runner = NULL;
			}
		/* After the writers (they queue rolls), before their I/O drains. */
		store_roller_stop(st->roller);
		st->roller = NULL;
		store_spares_fini(st);
		for (i = 0; i < st->nwriters; i++)
			if (st->writers[i].q != NULL)
				store_writer_drain(&st->writers[i]);
	}
	for (i = 0; i < st->map_size; i++)
		store_shard_free(st->map[i]);
	free(st->map);
	free(st->dropped_ids);
	if (st->writers != NULL)
		for (i = 0; i < st->nwriters; i++)
			store_writer_fini(&st->writers[i]);
	free(st->writers);
	for (i = 0; i < STORE_CHUNK_CLASSES; i++)
		while (st->pool[i] != NULL) {
			struct store_chunk *c = st->pool[i];

			st->pool[i] = c->next;
			free(c);
		}
	for (i = 0; i < st->ncx; i++)
		firn_seg_codec_destroy(st->cxs[i]);
	free(st->cxs);
	free(st->ret);
	free(st->zeroes);
	if (st->barrier_fd >= 0)
		close(st->barrier_fd);
	pthread_rwlock_destroy(&st->map_lock);
	pthread_mutex_destroy(&st->pool_lock);
	pthread_mutex_destroy(&st->cx_lock);
	pthread_mutex_destroy(&st->ret_lock);
	memset(st->kek, 0, sizeof(st->kek));
	free(st->streams_dir);
	free(st->dir);
	free(st);
}

/* Collect referenced pointers to every shard (or one stream's). Caller puts them. */
static int
store_collect(struct firn_store *st, bool one_stream, uint64_t stream_id, struct store_vec *out)
{
	uint32_t i;
	int rc = 0;

	pthread_rwlock_rdlock(&st->map_lock);
	for (i = 0; i < st->map_size && rc == 0; i++) {
		struct store_shard *sh = st->map[i];

		if (sh == NULL || (one_stream && sh->stream_id != stream_id))
			continue;
		rc = store_vec_push(out, sh);
		if (rc == 0)
			/* Pairs with the release decrement in store_shard_put(). */
			__atomic_add_fetch(&sh->refs, 1, __ATOMIC_ACQUIRE);
	}
	pthread_rwlock_unlock(&st->map_lock);
	return rc;
}

static void
store_vec_put_all(struct store_vec *v)
{
	uint32_t i;

	for (i = 0; i < v->n; i++)
		store_shard_put(v->v[i]);
	free(v->v);
	v->v = NULL;
	v->n = v->cap = 0;
}

static int store_wait(struct firn_store *st, struct store_shard *sh, uint64_t counter,
                      int timeout_ms);

void
firn_store_close(struct firn_store *st)
{
	struct store_vec all = {0};
	/* One deadline for all shards: a full disk must not hold close for long. */
	uint64_t deadline = firn_mono_ns() + 10000000000ull, now;
	uint32_t i;

	if (st == NULL)
		return;
	firn_store_flush(st);
	if (store_collect(st, false, 0, &all) == 0) {
		for (i = 0; i < all.n; i++) {
			struct store_shard *sh = all.v[i];
			uint64_t next;
			int rc;

			pthread_mutex_lock(&sh->lock);
			next = sh->next_counter;
			pthread_mutex_unlock(&sh->lock);
			if (next == 0)
				continue;
			now = firn_mono_ns();
			rc = store_wait(st, sh, next - 1,
			                now < deadline ? (int)((deadline - now) / 1000000) : 0);
			if (rc < 0 && rc != -ESHUTDOWN)
				FIRN_LOG(ERR, STORE_LOG,
				         "close: stream %" PRIu64 " shard %u: records from %" PRIu64
				         " not durable: %s",
				         sh->stream_id, sh->index,
				         __atomic_load_n(&sh->durable_next, __ATOMIC_ACQUIRE),
				         strerror(-rc));
		}
	}
	store_vec_put_all(&all);
	/* Pairs with the acquire loads in the writers: no new preallocation or rolls. */
	__atomic_store_n(&st->closing, 1, __ATOMIC_RELEASE);
	store_free(st);
}

int
firn_store_do_work(struct firn_store *st)
{
	unsigned i;
	int work = 0;

	for (i = 0; i < st->nwriters; i++) {
		int rc = store_writer_do_work(&st->writers[i]);

		if (rc > 0)
			work += rc;
	}
	return work;
}

void
firn_store_flush(struct firn_store *st)
{
	unsigned i;

	/* Pairs with the acquire load in the writers' commit trigger. */
	__atomic_add_fetch(&st->flush_gen, 1, __ATOMIC_RELEASE);
	for (i = 0; i < st->nwriters; i++)
		store_writer_wake(&st->writers[i]);
}

/* ---- shards: create, append, wait ------------------------------------------------ */

int
firn_store_shard_create(struct firn_store *st, uint64_t stream_id, uint32_t shard)
{
	struct store_shard *sh = store_shard_get(st, stream_id, shard, true);
	int rc;

	if (sh == NULL)
		return firn_err_code() < 0 ? firn_err_code() : -ENOMEM;
	rc = firn_mkdir_p(sh->dir, 0755);
	if (rc == 0) {
		char parent[PATH_MAX];

		/* The new directories must survive a crash: fsync their parents. */
		snprintf(parent, sizeof(parent), "%s/%" PRIu64, st->streams_dir, stream_id);
		rc = firn_fsync_dir(parent);
		if (rc == 0)
			rc = firn_fsync_dir(st->streams_dir);
	}
	store_shard_put(sh);
	return rc;
}

/* Undo a partial append: drop chunks after old_tail and restore its fill. */
static void
store_pend_rollback(struct store_shard *sh, struct store_chunk *old_tail, uint32_t old_used,
                    uint32_t old_count, int64_t old_last_ts)
{
	struct store_chunk *c = old_tail ? old_tail->next : sh->phead, *nx;

	for (; c != NULL; c = nx) {
		nx = c->next;
		store_chunk_put(sh->st, c);
	}
	if (old_tail != NULL) {
		old_tail->next = NULL;
		old_tail->used = old_used;
		old_tail->count = old_count;
		old_tail->last_ts = old_last_ts;
	} else {
		sh->phead = NULL;
	}
	sh->ptail = old_tail;
}

int
firn_store_append(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                  const struct firn_record *recs, unsigned n, uint64_t *first_counter,
                  int64_t *ts_ms)
{
	struct store_writer *w;
	struct store_shard *sh;
	struct store_chunk *old_tail;
	uint64_t need = 0, data_bytes = 0, before, now_ns, first;
	uint32_t old_used, old_count;
	int64_t ts, old_last_ts;
	bool push = false;
	unsigned i;
	int rc = 0;

	if (n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		const struct firn_record *r = &recs[i];

		if (r->data_len > FIRN_RECORD_DATA_MAX ||
		    (uint64_t)FIRN_SEG_REC_OVERHEAD + r->key_len + r->data_len > st->conf.block_max)
			return -E2BIG;
		if (r->key_len > FIRN_PARTITION_KEY_MAX)
			return -EINVAL;
		need += (uint64_t)FIRN_SEG_REC_OVERHEAD + r->key_len + r->data_len;
		data_bytes += r->data_len;
	}
	/* Pairs with the release stores in the writers' ENOSPC handling. */
	if (__atomic_load_n(&st->disk_full, __ATOMIC_ACQUIRE))
		return -ENOSPC;
	sh = store_shard_get(st, stream_id, shard, true);
	if (sh == NULL)
		return firn_err_code() < 0 ? firn_err_code() : -ENOMEM;
	w = sh->w;
	now_ns = firn_mono_ns();
	pthread_mutex_lock(&sh->lock);
	if (sh->sealed || sh->dropped) {
		rc = -ESHUTDOWN;
		goto out;
	}
	if (sh->pend_bytes > 0 && sh->pend_bytes + need > st->conf.shard_pending_max) {
		rc = -EAGAIN;
		goto out;
	}
	ts = FIRN_MAX(firn_now_ms(), sh->last_ts);
	old_tail = sh->ptail;
	old_used = old_tail ? old_tail->used : 0;
	old_count = old_tail ? old_tail->count : 0;
	old_last_ts = old_tail ? old_tail->last_ts : 0;
	for (i = 0; i < n; i++) {
		struct firn_record r = recs[i];
		uint32_t sz = FIRN_SEG_REC_OVERHEAD + r.key_len + r.data_len;
		struct store_chunk *c = sh->ptail;

		if (c == NULL || c->cap - c->used < sz) {
			/* Filled one: a bigger one next (see store_chunk_class_max()). */
			if (c != NULL && !c->big && sh->chunk_cls < st->chunk_cls_max)
				sh->chunk_cls++;
			c = store_chunk_get(st, sz, sh->chunk_cls);
			if (c == NULL) {
				store_pend_rollback(sh, old_tail, old_used, old_count, old_last_ts);
				rc = -ENOMEM;
				goto out;
			}
			if (sh->ptail != NULL)
				sh->ptail->next = c;
			else
				sh->phead = c;
			sh->ptail = c;
		}
		/* Laid out as the block will hold it: the writer seals from here in place. */
		r.ts_ms = ts;
		firn_seg_record_pack(c->data + c->used, &r);
		c->used += sz;
		c->count++;
		c->last_ts = ts;
	}
	first = sh->next_counter;
	sh->next_counter += n;
	sh->last_ts = ts;
	before = sh->unsent_bytes;
	sh->pend_bytes += need;
	sh->unsent_bytes += need;
	if (sh->unsent_since_ns == 0)
		sh->unsent_since_ns = now_ns;
	if (!sh->on_dirty) {
		sh->on_dirty = true;
		push = true;
	}
	if (first_counter)
		*first_counter = first;
	if (ts_ms)
		*ts_ms = ts;
	if (push)
		store_dirty_push(w, sh, now_ns);
	if (before < st->conf.block_max && before + need >= st->conf.block_max) {
		/* Pairs with the acquire exchange in the writer's commit trigger. */
		__atomic_store_n(&w->urgent, 1, __ATOMIC_RELEASE);
		push = true;
	}
out:
	pthread_mutex_unlock(&sh->lock);
	store_shard_put(sh);
	if (rc == 0) {
		/* Statistics only: relaxed, summed by firn_store_stats(). */
		__atomic_add_fetch(&w->stats.appended_records, n, __ATOMIC_RELAXED);
		__atomic_add_fetch(&w->stats.appended_bytes, data_bytes, __ATOMIC_RELAXED);
		if (push)
			store_writer_wake(w);
	}
	return rc;
}

/*
 * Wait until counter is durable in sh. In single-threaded mode run the
 * writers ourselves.
 */
static int
store_wait(struct firn_store *st, struct store_shard *sh, uint64_t counter, int timeout_ms)
{
	struct store_writer *w = sh->w;
	uint64_t deadline = firn_mono_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000;

	for (;;) {
		uint64_t now;
		int err;
		bool gone;

		/* Pairs with the release store in the writer's completion. */
		if (__atomic_load_n(&sh->durable_next, __ATOMIC_ACQUIRE) > counter)
			return 0;
		pthread_mutex_lock(&sh->lock);
		err = sh->error;
		gone = sh->dropped;
		if (counter >= sh->next_counter) {
			pthread_mutex_unlock(&sh->lock);
			return -EINVAL;
		}
		pthread_mutex_unlock(&sh->lock);
		if (gone)
			return -ESHUTDOWN;
		/*
		 * A failed write is retried. Tell the waiter at once when it is
		 * likely to fail again; but an ENOSPC from before space came back
		 * (the disk_full flag is clear again) is about to be retried: wait.
		 */
		/* Pairs with the release exchange in store_set_disk_full(). */
		if (err < 0 &&
		    (err != -ENOSPC || __atomic_load_n(&st->disk_full, __ATOMIC_ACQUIRE)))
			return err;
		now = firn_mono_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		if (!st->conf.threaded) {
			firn_store_do_work(st);
			continue;
		}
		pthread_mutex_lock(&w->lock);
		w->waiters++;
		/* Pairs with the release store in the writer's completion. */
		if (__atomic_load_n(&sh->durable_next, __ATOMIC_ACQUIRE) <= counter) {
			struct timespec ts;
			uint64_t until = FIRN_MIN(deadline, now + 100000000ull);

			/* The writer's condvar runs on CLOCK_MONOTONIC. */
			ts.tv_sec = (time_t)(until / 1000000000ull);
			ts.tv_nsec = (long)(until % 1000000000ull);
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
		w->waiters--;
		pthread_mutex_unlock(&w->lock);
	}
}

int
firn_store_wait_durable(struct firn_store *st, uint64_t stream_id, uint32_t shard, uint64_t counter,
                        int timeout_ms)
{
	struct store_shard *sh = store_shard_get(st, stream_id, shard, false);
	int rc;

	if (sh == NULL)
		return -ENOENT;
	rc = store_wait(st, sh, counter, timeout_ms);
	store_shard_put(sh);
	return rc;
}

/* ---- stat, seal, drop --------------------------------------------------------------- */

/* Oldest retained counter. Shard locked. */
static uint64_t
store_first_counter(const struct store_shard *sh)
{
	uint32_t i;

	for (i = 0; i < sh->nsegs; i++)
		if (sh->segs[i]->n > 0)
			return sh->segs[i]->ents[0].first_counter;
	return sh->durable_next;
}

int
firn_store_shard_stat(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                      struct firn_shard_stat *out)
{
	struct store_shard *sh = store_shard_get(st, stream_id, shard, false);

	if (sh == NULL)
		return -ENOENT;
	pthread_mutex_lock(&sh->lock);
	out->first_counter = store_first_counter(sh);
	out->next_counter = sh->next_counter;
	out->durable_next = sh->durable_next;
	out->last_ts_ms = sh->durable_ts;
	out->bytes = sh->bytes;
	out->segments = sh->nsegs;
	out->sealed = sh->sealed;
	pthread_mutex_unlock(&sh->lock);
	store_shard_put(sh);
	return 0;
}

int
firn_store_shard_seal(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                      uint64_t *last_counter, bool *empty)
{
	struct store_shard *sh = store_shard_get(st, stream_id, shard, true);
	char path[PATH_MAX], body[64];
	uint64_t next;
	int rc = 0, len;

	if (sh == NULL)
		return firn_err_code() < 0 ? firn_err_code() : -ENOMEM;
	pthread_mutex_lock(&sh->lock);
	if (sh->dropped) {
		pthread_mutex_unlock(&sh->lock);
		store_shard_put(sh);
		return -ESHUTDOWN;
	}
	sh->sealed = true;
	next = sh->next_counter;
	pthread_mutex_unlock(&sh->lock);

	if (next > 0) {
		firn_store_flush(st);
		rc = store_wait(st, sh, next - 1, 60000);
		if (rc < 0) {
			rc = firn_err_set(
			        rc, "seal stream %" PRIu64 " shard %u: records not durable: %s",
			        stream_id, shard, strerror(-rc));
			goto out;
		}
		len = snprintf(body, sizeof(body), "last=%" PRIu64 "\n", next - 1);
	} else {
		len = snprintf(body, sizeof(body), "empty\n");
	}
	rc = firn_mkdir_p(sh->dir, 0755);
	if (rc == 0 && snprintf(path, sizeof(path), "%s/SEALED", sh->dir) >= (int)sizeof(path))
		rc = -ENAMETOOLONG;
	if (rc == 0)
		rc = firn_file_write_atomic(path, body, (size_t)len, 0644);
	if (rc < 0)
		goto out;
	if (last_counter)
		*last_counter = next - 1;
	if (empty)
		*empty = next == 0;
out:
	store_shard_put(sh);
	return rc;
}

int
firn_store_stream_drop(struct firn_store *st, uint64_t stream_id)
{
	struct store_vec v = {0};
	char path[PATH_MAX];
	uint32_t i;
	int rc;

	rc = store_collect(st, true, stream_id, &v);
	if (rc < 0) {
		store_vec_put_all(&v);
		return rc;
	}
	for (i = 0; i < v.n; i++) {
		struct store_shard *sh = v.v[i];

		pthread_mutex_lock(&sh->lock);
		sh->dropped = true;
		pthread_mutex_unlock(&sh->lock);
		/* Pairs with the acquire exchange in the writer's duty cycle. */
		__atomic_store_n(&sh->w->drop_pending, 1, __ATOMIC_RELEASE);
		store_writer_wake(sh->w);
	}
	/* The writer lets go of a dropped shard once its I/O has drained. */
	for (i = 0; i < v.n; i++) {
		struct store_shard *sh = v.v[i];
		struct store_writer *w = sh->w;

		pthread_mutex_lock(&w->lock);
		while (!sh->released) {
			if (!st->conf.threaded) {
				pthread_mutex_unlock(&w->lock);
				store_writer_do_work(w);
				pthread_mutex_lock(&w->lock);
				continue;
			}
			w->waiters++;
			pthread_cond_wait(&w->cond, &w->lock);
			w->waiters--;
		}
		pthread_mutex_unlock(&w->lock);
	}
	pthread_rwlock_wrlock(&st->map_lock);
	store_dropped_add(st, stream_id);
	rc = store_map_rebuild(st, st->map_size ? st->map_size : 64, true, stream_id);
	pthread_rwlock_unlock(&st->map_lock);
	for (i = 0; i < v.n; i++) {
		struct store_shard *sh = v.v[i];

		store_shard_put(sh);
		/* Pairs with the release decrement in store_shard_put(). */
		while (__atomic_load_n(&sh->refs, __ATOMIC_ACQUIRE) > 0)
			usleep(100);
		store_shard_free(sh);
	}
	free(v.v);
	if (rc < 0)
		return rc;
	if (snprintf(path, sizeof(path), "%s/%" PRIu64, st->streams_dir, stream_id) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	rc = firn_rm_rf(path);
	if (rc < 0)
		return firn_err_set(rc, "drop stream %" PRIu64 ": remove %s: %s", stream_id, path,
		                    strerror(-rc));
	return firn_fsync_dir(st->streams_dir);
}

int
firn_store_gc(struct firn_store *st, int64_t now_ms)
{
	struct store_vec v = {0};
	uint32_t i;
	int removed = 0, rc;

	rc = store_collect(st, false, 0, &v);
	for (i = 0; i < v.n; i++) {
		int r = store_gc_shard(v.v[i], now_ms);

		if (r > 0)
			removed += r;
	}
	store_vec_put_all(&v);
	return rc < 0 ? rc : removed;
}

void
firn_store_stats(struct firn_store *st, struct firn_store_stats *out)
{
	unsigned i, b;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < st->nwriters; i++) {
		struct store_wstats *s = &st->writers[i].stats;

		/* Statistics only: relaxed loads of counters written by one thread
		 * (or relaxed-added by many). */
		out->appended_records += __atomic_load_n(&s->appended_records, __ATOMIC_RELAXED);
		out->appended_bytes += __atomic_load_n(&s->appended_bytes, __ATOMIC_RELAXED);
		out->durable_records += __atomic_load_n(&s->durable_records, __ATOMIC_RELAXED);
		out->blocks_written += __atomic_load_n(&s->blocks_written, __ATOMIC_RELAXED);
		out->bytes_written += __atomic_load_n(&s->bytes_written, __ATOMIC_RELAXED);
		out->commits += __atomic_load_n(&s->commits, __ATOMIC_RELAXED);
		out->write_errors += __atomic_load_n(&s->write_errors, __ATOMIC_RELAXED);
		out->gc_segments += __atomic_load_n(&s->gc_segments, __ATOMIC_RELAXED);
		out->slow_commits += __atomic_load_n(&s->slow_commits, __ATOMIC_RELAXED);
		for (b = 0; b < STORE_LAT_BUCKETS; b++)
			out->commit_lat_us_log2[b] +=
			        __atomic_load_n(&s->commit_lat_us_log2[b], __ATOMIC_RELAXED);
	}
	out->spare_segments = store_spares_count(st);
	out->recovered_cut_bytes = st->recovered_cut_bytes;
	out->quarantined_segments = st->quarantined_segments;
	/* Pairs with the relaxed add in firn_store_drop_orphans(): a counter only. */
	out->orphan_streams_removed =
	        __atomic_load_n(&st->orphan_streams_removed, __ATOMIC_RELAXED);
}
