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
 * Appended records wait for their group commit in chunks: fixed 64 KiB
 * buffers from a pool (a record too large for one gets a chunk of its own,
 * malloc'd and freed, which only records near the 1 MiB limit need). A
 * shard's chunks form a FIFO list; appenders fill the last one under the
 * shard lock, the writer reads from the first. This is the one copy of the
 * payload between the caller and the block builder.
 */
#define STORE_CHUNK_BYTES (64u << 10)

struct store_chunk {
	struct store_chunk *next;
	uint32_t cap;  /* bytes of data[] */
	uint32_t used; /* bytes appended (under the shard lock) */
	uint32_t head; /* bytes consumed by durable writes (under the shard lock) */
	bool big;      /* not from the pool */
	uint8_t data[] __attribute__((aligned(8)));
};

/* A pending record: this header, the key, the data, padding to 8 bytes. */
struct store_prec {
	uint32_t data_len;
	uint16_t key_len;
	uint16_t pad;
	int64_t ts_ms;
	uint64_t producer_id;
	uint64_t producer_seq;
};

static inline uint32_t
store_prec_size(uint16_t key_len, uint32_t data_len)
{
	return (uint32_t)FIRN_ALIGN_UP((uint64_t)sizeof(struct store_prec) + key_len + data_len,
	                               (uint64_t)8);
}

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
	STORE_IO_DATA,  /* a shard's blocks, RWF_DSYNC */
	STORE_IO_ZERO,  /* preallocation: zeroes ahead of the tail */
	STORE_IO_ZSYNC, /* fdatasync after the zeroes */
};

struct store_shard;

struct store_io {
	enum store_io_kind kind;
	struct store_shard *sh;
	/* data writes */
	void *buf;
	unsigned buf_class;
	size_t len;
	uint64_t off;
	uint64_t c_end;                /* counter after the last record written */
	int64_t last_ts;               /* of the last record written */
	struct store_chunk *end_chunk; /* pending position just past the written records */
	uint32_t end_off;
	uint64_t pend_bytes;               /* pending bytes the write releases */
	struct firn_seg_index_entry *ents; /* blocks in the write */
	uint32_t n, cap;
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
	int64_t last_ts;       /* newest arrival time given */
	struct store_chunk *phead, *ptail;
	uint64_t pend_bytes;      /* appended, not yet durable (pending memory) */
	uint64_t inflight_bytes;  /* of which in the write in flight */
	uint64_t unsent_since_ns; /* oldest record not yet in a write (0 = none) */
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
	uint64_t tail_off;      /* where the next block goes */
	uint64_t zero_end;      /* zero writes issued up to here */
	uint64_t zero_lo;       /* start of the zero range in flight */
	uint64_t ready_end;     /* zeroes durable up to here */
	unsigned zero_ios;      /* zero writes (and their fsync) in flight */
	int zero_err;           /* first error among them */
	bool zsync_pending;
	uint64_t prealloc_retry_ns;
	uint64_t retry_ns; /* after a failed write, not before this */
	unsigned backoff_ms;
	bool io_busy;      /* dio in flight */
	bool roll_pending; /* the tail is full: seal it and start the next */
	int rolling;       /* atomic: the roller owns the writer-only state (roll.c) */
	bool roll_parked;  /* under lock: a commit skipped sh while it rolled */
	int roll_err;      /* under lock: the last roll failed */
	int age_roll;      /* atomic: GC found the whole tail expired: roll it */
	struct store_io dio;
	struct store_io zio, zsio;
};

/* ---- writers ------------------------------------------------------------------------- */

#define STORE_LAT_BUCKETS 24
#define STORE_BUF_CLASSES 16 /* 64 KiB .. 2 GiB, powers of two */

struct store_wstats {
	uint64_t appended_records, appended_bytes; /* atomic: appenders */
	uint64_t durable_records;
	uint64_t blocks_written, bytes_written;
	uint64_t commits;
	uint64_t write_errors;
	uint64_t gc_segments; /* atomic: any GC caller */
	uint64_t commit_lat_us_log2[STORE_LAT_BUCKETS];
} FIRN_CACHE_ALIGNED;

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
	struct store_vec commit;   /* the shards in the commit in flight */
	struct store_vec deferred; /* dirty shards waiting out a backoff */
	unsigned commit_left;      /* data writes of the commit still in flight */
	unsigned zero_inflight;    /* zero writes and their fsyncs in flight */
	uint64_t commit_start_ns;
	uint64_t flush_seen;
	uint64_t next_gc_ns;
	uint64_t next_probe_ns;
	struct firn_disk_cpl *cpl;
	struct store_scratch scratch;   /* rolls done inline (single-threaded) */
	void **bufs[STORE_BUF_CLASSES]; /* free aligned I/O buffers per size class */
	unsigned nbufs[STORE_BUF_CLASSES];

	struct store_wstats stats;
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

	pthread_rwlock_t map_lock;
	struct store_shard **map; /* open addressing, size a power of two */
	uint32_t map_size, map_used;

	struct store_writer *writers;
	unsigned nwriters;
	struct store_roller *roller; /* NULL when single-threaded */

	pthread_mutex_t pool_lock;
	struct store_chunk *pool;
	unsigned pool_n;

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

/* roll.c */
void *store_scratch_get(struct store_scratch *sc, size_t len);
void store_scratch_free(struct store_scratch *sc);
int store_roll_job(struct firn_store *st, struct store_shard *sh, struct store_scratch *sc);
struct store_roller *store_roller_start(struct firn_store *st);
int store_roller_enqueue(struct store_roller *r, struct store_shard *sh);
void store_roller_stop(struct store_roller *r);

/* recover.c */
int store_recover(struct firn_store *st);

/* read.c */
struct firn_seg_codec *store_codec_get(struct firn_store *st);
void store_codec_put(struct firn_store *st, struct firn_seg_codec *cx);

#endif /* FIRN_STORE_INTERNAL_H */
