/*
 * store_internal.h - private to lib/store: the shard, the writer and the
 * pending-record chunks, shared by store.c (API, appends, waits), writer.c
 * (group commit, preallocation, GC), roll.c (sealing and starting
 * segments), recover.c (open-time scan) and read.c (reads).
 *
 * Locks, outermost first:
 *
 *	st->map_lock (rwlock)	the (stream, shard) -> shard table
 *	sh->lock		one shard: pending chunks, counters, segment list
 *	w->lock			one writer: dirty list, shard list, waiters' condvar
 *	st->pool_lock		free pending chunks
 *
 * and leaves, held alone: st->cx_lock (readers' codecs), st->ret_lock
 * (retention hours), the roller's queue lock.
 *
 * A thread never takes an outer lock while holding an inner one. The writer
 * thread's private state (the tail fd, offsets, preallocation, the one
 * in-flight data write of each shard) is marked "writer-only" below and is
 * touched by nobody else while the store is open, except the roller while
 * the shard is handed to it (sh->rolling, see roll.c).
 */
#ifndef FIRN_STORE_INTERNAL_H
#define FIRN_STORE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "firn_common.h"
#include "firn_disk.h"
#include "firn_segment.h"
#include "firn_store.h"

#define STORE_LOG "store"

/* ---- pending records ------------------------------------------------------------- */

/*
 * Appended records wait for their write in chunks: pooled buffers of 64 KiB
 * to 1 MiB, bigger for busier shards (store.c), and a chunk of its own,
 * malloc'd and freed, for a record too large for its shard's size. A
 * shard's chunks form a FIFO list; appenders fill the last one under the
 * shard lock, the writer seals from the first.
 *
 * Records are kept in the segment's packed record format (doc/format.md
 * 4.4, written by firn_seg_record_pack()), whole within one chunk, so the
 * writer seals blocks straight from the chunks with
 * firn_seg_block_seal_packed(): the append's copy from the caller is the only
 * copy of the payload before encryption. Each chunk also counts its records
 * and remembers the arrival time of its last one, so the writer can cut a
 * block out of whole chunks without looking at every record header.
 */
#define STORE_CHUNK_BYTES (64u << 10) /* the smallest class; see store.c */
#define STORE_CHUNK_CLASSES 5u        /* 64 KiB .. 1 MiB */

struct store_chunk {
	struct store_chunk *next;
	uint32_t cap;        /* bytes of data[] */
	uint32_t used;       /* bytes appended (under the shard lock) */
	uint32_t count;      /* records appended (under the shard lock) */
	uint32_t head;       /* bytes released by durable writes (under the shard lock) */
	uint32_t head_count; /* records released (under the shard lock) */
	bool big;            /* not from the pool */
	uint8_t cls;         /* size class (pooled chunks) */
	int64_t last_ts;     /* arrival time of the last record appended (under the shard lock) */
	uint8_t data[] __attribute__((aligned(8)));
};

/*
 * A place in a shard's pending records: off bytes (cnt records) into chunk,
 * where the record with this counter starts. chunk == NULL: wherever the
 * released head of the pending list is when it is next looked at.
 */
struct store_pos {
	struct store_chunk *chunk;
	uint32_t off;
	uint32_t cnt;
	uint64_t counter;
};

/* ---- segments ---------------------------------------------------------------------- */

struct store_seg {
	uint64_t first_counter; /* from the header (and the file name) */
	uint64_t next_counter;  /* one past the last record held */
	int64_t created_ms;
	struct firn_seg_key key;
	struct firn_seg_index_entry *ents; /* blocks in file order */
	uint32_t n, cap;
	uint64_t end;     /* bytes of the file in use (blocks, plus the footer when sealed) */
	bool sealed;      /* has a footer; no more blocks */
	bool quarantined; /* file is <name>.seg.quarantine; read-only, valid prefix only */
};

/* An aligned buffer that grows: the roller's and the writer's for headers and footers. */
struct store_scratch {
	void *p;
	size_t cap;
};

/* ---- I/O tags ------------------------------------------------------------------------ */

enum store_io_kind {
	STORE_IO_DATA,    /* a block (struct store_wr) */
	STORE_IO_BARRIER, /* the fdatasync that makes a group commit durable */
	STORE_IO_ZERO,    /* preallocation: zeroes ahead of the tail */
	STORE_IO_ZSYNC,   /* fdatasync after the zeroes */
};

struct store_shard;

/* What a completion's tag points at: every I/O the writer queues starts with one. */
struct store_tag {
	enum store_io_kind kind;
	struct store_shard *sh;
};

/* ---- block writes ------------------------------------------------------------------ */

/*
 * One sealed block and its write. A write lives on its shard's FIFO (in file
 * and counter order) from sealing until its records are durable and
 * released, or until it is thrown away after a failure. Its states:
 *
 *	STAGED    sealed into the arena, not yet submitted (its batch is open)
 *	INFLIGHT  submitted
 *	DONE      written, waiting for a barrier (plain writes only)
 *	COVERED   a barrier issued after it completed is in flight
 *	DURABLE   on stable storage (an RWF_DSYNC write, or its barrier completed)
 *	FAILED    the write or its barrier failed
 *
 * A shard's records become durable strictly in FIFO order: a DURABLE write
 * behind one that is not waits. A write object, promoted or dead (thrown
 * away), goes back to the writer's free list only when its batch retires,
 * when neither the kernel nor any list can hold it any more.
 */
enum store_wr_state {
	STORE_WR_STAGED,
	STORE_WR_INFLIGHT,
	STORE_WR_DONE,
	STORE_WR_COVERED,
	STORE_WR_DURABLE,
	STORE_WR_FAILED,
};

struct store_batch;
struct store_wr_slab;

struct store_wr {
	struct store_tag tag;   /* first: the completion's tag */
	struct store_wr *next;  /* the shard's FIFO, or the writer's free list */
	struct store_wr *bnext; /* the batch's write list */
	struct store_wr *lnext; /* the writer's uncovered/covered list */
	struct store_batch *b;
	uint8_t state;
	bool dead;   /* off the shard FIFO: free once nothing else holds it */
	bool listed; /* on an uncovered/covered list */
	bool dsync;  /* RWF_DSYNC: durable on completion, no barrier */
	void *buf;   /* in the writer's arena */
	uint32_t len;
	uint64_t off;         /* file offset */
	struct store_pos end; /* pending position just past its records */
	struct firn_seg_index_entry ent;
};

/*
 * A group commit: the writes submitted together. Batches are filled (staged)
 * while the previous one is on the disk, submitted when its writes have all
 * completed, and own a region of the writer's arena until every write of
 * theirs has completed.
 */
struct store_batch {
	uint64_t start_ns;     /* submitted at */
	size_t a_start, a_end; /* arena region: [a_start, a_end) (a_end < a_start: wrapped) */
	size_t a_bytes;        /* arena bytes it holds (with the end skipped at a wrap) */
	bool a_released;       /* its arena space is given back */
	struct store_wr *first, *last; /* writes, in sealing order */
	struct store_wr *unsub;        /* first write not yet submitted */
	unsigned live;                 /* writes that still hold arena space (not completed) */
	unsigned pending;              /* writes not yet durable or thrown away */
	unsigned listed;               /* writes on an uncovered/covered list */
	unsigned nwrites;              /* writes submitted */
	uint64_t bytes;                /* sealed bytes */
	bool open;                     /* still being filled */
	bool submitted;
	bool used; /* slot in use */
};

/* ---- shards -------------------------------------------------------------------------- */

struct store_writer;
struct store_roller;

struct store_shard {
	struct firn_store *st;
	struct store_writer *w;
	uint64_t stream_id;
	uint32_t index;
	char *dir; /* <dir>/streams/<stream>/<shard> */
	int refs;  /* atomic: lookups in progress (paired in store_shard_put()) */

	pthread_mutex_t lock;
	/* -- under lock -- */
	uint64_t next_counter; /* the next append gets this */
	uint8_t chunk_cls;     /* size class of the next pending chunk */
	int64_t last_ts;       /* newest arrival time given */
	struct store_chunk *phead, *ptail;
	uint64_t pend_bytes;      /* appended, not yet durable (pending memory) */
	uint64_t unsent_bytes;    /* of which not yet in a submitted write */
	uint64_t unsent_since_ns; /* oldest record not yet in a submitted write (0 = none) */
	bool on_dirty;            /* on the writer's dirty list or in its commit */
	bool sealed;
	bool dropped;
	bool released; /* the writer let go of a dropped shard */
	int error;     /* last write error, 0 after a success */
	struct store_seg **segs;
	uint32_t nsegs, capsegs;
	uint64_t bytes;
	uint64_t durable_next; /* atomic store under lock; lock-free loads by waiters */
	int64_t durable_ts;

	/* -- writer-only -- */
	struct store_seg *tail; /* open segment (segs[nsegs-1]) or NULL */
	int wfd;                /* the tail, O_DIRECT */
	uint64_t roll_at;       /* the tail is full past this (store_roll_at()) */
	uint64_t tail_off;      /* end of the durable blocks: where a write after them goes */
	struct store_wr *wq, *wq_last; /* sealed writes not yet durable, FIFO */
	uint32_t nwq;                  /* writes on it */
	unsigned inflight;             /* writes of sh in the kernel (thrown away ones too) */
	bool frozen;                   /* a write failed: no sealing until inflight drops to 0 */
	bool park_wait;            /* left the dirty list for a roll that waits for wq to drain */
	uint64_t batch_bytes;      /* sealed into the open batch */
	struct store_batch *batch; /* the batch batch_bytes counts for */
	uint8_t z_skip;            /* blocks left to store raw without trying deflate */
	uint8_t z_backoff;         /* next z_skip after another incompressible block */
	bool z_good;               /* the last block tried shrank */
	bool touched;              /* on the writer's promotion list */
	uint64_t zero_end;         /* zero writes issued up to here */
	uint64_t zero_lo;          /* start of the zero range in flight */
	uint64_t ready_end;        /* zeroes durable up to here */
	unsigned zero_ios;         /* zero writes (and their fsync) in flight */
	int zero_err;              /* first error among them */
	bool zsync_pending;
	uint64_t prealloc_retry_ns;
	uint64_t retry_ns; /* after a failed write, not before this */
	unsigned backoff_ms;
	bool roll_pending; /* the tail is full: seal it and start the next */
	int rolling;       /* atomic: the roller owns the writer-only state (roll.c) */
	bool roll_parked;  /* under lock: a commit skipped sh while it rolled */
	int roll_err;      /* under lock: the last roll failed */
	int age_roll;      /* atomic: GC found the whole tail expired: roll it */
	struct store_tag zio, zsio;
};

/* ---- writers ------------------------------------------------------------------------- */

#define STORE_LAT_BUCKETS 24
#define STORE_BATCHES 4 /* batch slots per writer: barrier, on disk, staging, spare */

struct store_wstats {
	uint64_t appended_records, appended_bytes; /* atomic: appenders */
	uint64_t durable_records;
	uint64_t blocks_written, bytes_written;
	uint64_t commits;
	uint64_t write_errors;
	uint64_t gc_segments;  /* atomic: any GC caller */
	uint64_t slow_commits; /* group commits of STORE_SLOW_COMMIT_US or more */
	uint64_t commit_lat_us_log2[STORE_LAT_BUCKETS];
} FIRN_CACHE_ALIGNED;

/*
 * A group commit this slow is counted and, at most once per
 * STORE_SLOW_WARN_NS per writer, logged: the operator's sign that something
 * else holds the disk (another tenant's writeback burst queued ahead of our
 * writes and flush measured 60-600 ms here) or that the device is failing.
 */
#define STORE_SLOW_COMMIT_US 50000u
#define STORE_SLOW_WARN_NS (10ull * 1000000000ull)

struct store_vec {
	struct store_shard **v;
	uint32_t n, cap;
};

struct store_writer {
	struct firn_store *st;
	unsigned id;
	struct firn_disk_queue *q;
	struct firn_seg_codec *cx;
	struct firn_agent_runner *runner;
	char name[32];

	pthread_mutex_t lock;
	pthread_cond_t cond; /* durable progress, shard release */
	/* -- under lock -- */
	struct store_vec dirty;  /* shards with records not yet in a write */
	struct store_vec shards; /* every shard this writer owns */
	unsigned waiters;
	uint64_t dirty_since_ns; /* atomic store under lock: oldest dirty (0 = none) */
	int urgent;              /* atomic: a shard has a block's worth pending */
	int drop_pending;        /* atomic: a shard was dropped */
	int age_roll;            /* atomic: some shard's age_roll is set */

	/* -- writer-only -- */
	struct store_vec deferred; /* dirty shards waiting out a backoff */
	struct store_vec touched;  /* shards whose writes became durable: promote them */
	struct store_vec scan;     /* scratch copy of the dirty list */
	unsigned zero_inflight;    /* zero writes and their fsyncs in flight */
	unsigned data_inflight;    /* block writes submitted and not completed */
	/* Batches, a ring: [bq_head, bq_head + bq_n) in submission order, the last may be open. */
	struct store_batch batches[STORE_BATCHES];
	unsigned bq_head, bq_n;
	/* Completed plain writes not yet under a barrier, and those under the one in flight. */
	struct store_wr *uncovered, *uncovered_last, *covered;
	bool barrier_inflight;
	bool barrier_due; /* a batch's writes all completed since the last barrier */
	struct store_tag btag;
	struct store_wr *wr_free; /* free write objects */
	struct store_wr_slab *wr_slabs;
	/* The arena: one aligned, registered buffer the blocks are sealed into. */
	uint8_t *arena;
	size_t arena_size;
	size_t a_head, a_tail; /* allocate at head, release at tail; head == tail: empty */
	size_t a_used;
	uint64_t flush_seen;
	uint64_t next_gc_ns;
	uint64_t next_probe_ns;
	struct firn_disk_cpl *cpl;
	struct store_scratch scratch; /* rolls done inline (single-threaded) */

	struct store_wstats stats;
	uint64_t slow_warn_ns;  /* writer thread only: when the next slow-commit WARN may go */
	uint64_t slow_unlogged; /* slow commits since the last WARN */
};

/* ---- spare segments (roll.c) --------------------------------------------------------- */

/*
 * Segment files laid out ahead of time: <dir>/spare/<id>.spare, each the
 * size a segment file grows to (segment_size + write_max), fallocated,
 * written with zeroes and synced, so a roll takes one (header, rename) and
 * its shard writes plain, barrier-covered blocks over written space from
 * the first byte to the last, with no zeroing ahead of the tail.
 */
struct store_spares {
	pthread_mutex_t lock;
	uint64_t *ids; /* ready spares (under lock) */
	unsigned n, cap;
	char *dir;
	uint64_t size;    /* bytes per spare */
	uint64_t next_id; /* (roller thread) */
	int fd;           /* the spare being laid out, or -1 (roller thread) */
	uint64_t id, done;
	uint64_t retry_ns;
};

/* ---- the store ----------------------------------------------------------------------- */

struct store_retention {
	uint64_t stream_id;
	uint32_t hours;
};

struct firn_store {
	struct firn_store_conf conf;
	char *dir;
	char *streams_dir;
	uint8_t kek[32];
	uint64_t write_max;  /* bytes of one shard's write in one commit */
	uint64_t commit_max; /* bytes of one group commit (a writer's whole batch) */
	size_t read_max_raw; /* largest block raw_len we may meet (>= block_max) */
	bool odirect;        /* false where the file system refuses O_DIRECT */
	bool shared_flush;   /* one fdatasync makes every completed write durable (writer.c) */
	int barrier_fd;      /* what the writers fdatasync for a barrier (shared_flush) */

	pthread_rwlock_t map_lock;
	struct store_shard **map; /* open addressing, size a power of two */
	uint32_t map_size, map_used;
	/*
	 * Streams dropped since open (under map_lock): a shard of one is never
	 * created again, so an append that raced the drop (a PutRecords on a
	 * catalog snapshot taken before DeleteStream) gets -ESHUTDOWN instead
	 * of bringing the stream's directory back. Catalog ids are never reused.
	 */
	uint64_t *dropped_ids;
	uint32_t ndropped, dropped_cap;

	struct store_writer *writers;
	unsigned nwriters;
	struct store_roller *roller; /* NULL when single-threaded */
	struct store_spares spares;
	uint64_t last_submit_ns; /* atomic: when a writer last submitted a batch */

	pthread_mutex_t pool_lock;
	struct store_chunk *pool[STORE_CHUNK_CLASSES];
	uint64_t pool_bytes;
	unsigned chunk_cls_max;

	pthread_mutex_t cx_lock; /* codecs for readers */
	struct firn_seg_codec **cxs;
	unsigned ncx, capcx;

	pthread_mutex_t ret_lock;
	struct store_retention *ret;
	unsigned nret, capret;

	void *zeroes;       /* STORE_ZERO_CHUNK aligned zero bytes, shared read-only */
	int disk_full;      /* atomic: appends get -ENOSPC (set/cleared by writers) */
	uint64_t flush_gen; /* atomic: firn_store_flush() requests */
	int closing;        /* atomic: set by firn_store_close(), read by writers */

	uint64_t recovered_cut_bytes;
	uint64_t quarantined_segments;
	uint64_t orphan_streams_removed; /* firn_store_drop_orphans() (caller's thread) */
};

#define STORE_ZERO_CHUNK (1u << 20)

/* store.c */
struct store_shard *store_shard_get(struct firn_store *st, uint64_t stream_id, uint32_t index,
                                    bool create);
void store_shard_put(struct store_shard *sh);
struct store_shard *store_shard_new(struct firn_store *st, uint64_t stream_id, uint32_t index);
int store_map_insert(struct firn_store *st, struct store_shard *sh);
void store_shard_free(struct store_shard *sh);
int store_seg_path(const struct store_shard *sh, const struct store_seg *seg, char *buf,
                   size_t cap);
int store_seg_push(struct store_shard *sh, struct store_seg *seg);
void store_seg_free(struct store_seg *seg);
uint32_t store_retention_hours(struct firn_store *st, uint64_t stream_id);
void store_chunk_put(struct firn_store *st, struct store_chunk *c);
unsigned store_chunk_class_max(const struct firn_store *st);
int store_vec_push(struct store_vec *v, struct store_shard *sh);
void store_vec_remove(struct store_vec *v, struct store_shard *sh);
int store_open_file(const char *path, int flags, bool odirect);

/* writer.c */
int store_writer_init(struct firn_store *st, struct store_writer *w, unsigned id);
void store_writer_fini(struct store_writer *w);
int store_writer_do_work(void *arg);
void store_writer_drain(struct store_writer *w);
void store_writer_wake(struct store_writer *w);
void store_dirty_push(struct store_writer *w, struct store_shard *sh, uint64_t since_ns);
int store_gc_shard(struct store_shard *sh, int64_t now_ms);

void store_set_disk_full(struct firn_store *st, bool full);
void store_wr_free_all(struct store_shard *sh);

/* roll.c */
void *store_scratch_get(struct store_scratch *sc, size_t len);
void store_scratch_free(struct store_scratch *sc);
int store_roll_job(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc);
struct store_roller *store_roller_start(struct firn_store *st);
int store_spares_init(struct firn_store *st);
void store_spares_fini(struct firn_store *st);
unsigned store_spares_count(struct firn_store *st);
int store_roller_enqueue(struct store_roller *r, struct store_shard *sh);
void store_roller_stop(struct store_roller *r);

/*
 * Where sh's tail counts as full: segment_size, less a per-segment jitter of
 * up to 1/2 for big segments (16 MiB and more; small ones roll often anyway). Shards under an even
 * load would otherwise all fill their segments at the same moment and queue up at the one roller
 * (each roll is a few fsyncs), parking every shard for the whole queue.
 */
static inline uint64_t
store_roll_at(const struct firn_store *st, const struct store_shard *sh)
{
	uint64_t size = st->conf.segment_size, h;

	if (size < (16ull << 20) || sh->tail == NULL)
		return size;
	/* Up to a half: rolls of shards that started together spread over half a segment. */
	h = (sh->stream_id * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)sh->index << 32) ^
	    (sh->tail->first_counter * 0xBF58476D1CE4E5B9ull);
	h ^= h >> 29;
	h *= 0x94D049BB133111EBull;
	h ^= h >> 32;
	return size - ((h % (size / 2)) & ~(uint64_t)(FIRN_DISK_ALIGN - 1));
}

/* recover.c */
int store_recover(struct firn_store *st);

/* read.c */
struct firn_seg_codec *store_codec_get(struct firn_store *st);
void store_codec_put(struct firn_store *st, struct firn_seg_codec *cx);

#endif /* FIRN_STORE_INTERNAL_H */
