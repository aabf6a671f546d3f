/*
 * firn_store.h - durable per-shard logs on NVMe.
 *
 * The store keeps one log per (stream id, shard index), made of segment files
 * (lib/segment) under <dir>/streams/<stream id>/<shard>/. Appends are
 * sequenced at once (each record gets the next counter of its shard and an
 * arrival time) and copied, already in the block's record layout, into the
 * shard's pending buffer: the only copy of the payload. Writer agents seal
 * blocks straight from those buffers (compress, encrypt, CRC) and write them
 * with O_DIRECT through the disk driver, many shards per submit (group
 * commit), into segment space written with zeroes ahead of the tail (or laid
 * out whole beforehand: conf.spare_segments). A group commit is made durable
 * by one fdatasync (a device cache flush) where the file system allows, else
 * by RWF_DSYNC on each write; the next one is sealed while it is on the disk.
 * When a commit is durable the shards' durable watermarks move and waiters
 * are told. writer.c and store.c tell the whole story.
 *
 *	conf.dir = "./var"; conf.kek = kek; conf.disk = &firn_disk_uring_ops;
 *	struct firn_store *st = firn_store_open(&conf);
 *	firn_store_append(st, sid, shard, recs, n, &first);   // sequenced, not durable
 *	firn_store_wait_durable(st, sid, shard, first + n - 1, 5000);
 *	firn_store_read(st, sid, shard, &req, &res);          // durable records only
 *
 * Writers: conf.writers agents, shard s of any stream goes to writer
 * (s % writers). With conf.threaded=false no threads are started and the
 * caller drives firn_store_do_work(); the tests use that to run the whole
 * store on one thread.
 *
 * Recovery: firn_store_open() scans every shard directory, checks the tail
 * segment block by block (CRC + GCM tag) and cuts a torn or corrupt tail back
 * to the last valid block; a damaged sealed segment is renamed *.quarantine
 * and reported, and the daemon keeps running. Nothing a waiter was told is
 * durable is ever behind the cut. The store keeps every stream directory it
 * finds; the data of streams the catalog no longer has (a DeleteStream cut
 * short by a crash) goes with firn_store_drop_orphans(), called once at start.
 *
 * Thread safety: all functions may be called from any thread; appends to one
 * shard are serialised by that shard's lock (cheap, rarely contended).
 */
#ifndef FIRN_STORE_H
#define FIRN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firn_disk.h"
#include "firn_record.h"

#ifdef __cplusplus
extern "C" {
#endif

struct firn_store;

/*
 * Called on a writer thread after a group commit moved shard's durable
 * watermark: every counter < durable_next is on stable storage. Must be
 * quick (queue an ack, signal a waiter). status < 0 reports a write failure
 * for that shard (e.g. -ENOSPC); records not yet durable stay pending.
 */
typedef void (*firn_store_durable_fn)(void *arg, uint64_t stream_id, uint32_t shard,
                                      uint64_t durable_next, int status);

struct firn_store_conf {
	const char *dir;    /* data directory (created if missing) */
	const uint8_t *kek; /* 32-byte key-encryption key */
	uint32_t kek_id;
	const struct firn_disk_ops *disk;
	unsigned writers;           /* writer agents (>= 1) */
	bool threaded;              /* start writer threads */
	bool compress;              /* deflate blocks when it shrinks them */
	uint64_t segment_size;      /* seal and roll a segment past this (default 64 MiB) */
	uint64_t prealloc;          /* zeroed space kept ahead of the tail (default 8 MiB) */
	uint32_t block_max;         /* packed bytes per block (default 1 MiB + 64 KiB) */
	uint32_t flush_interval_us; /* longest a record waits for company (default 200) */
	uint64_t shard_pending_max; /* pending bytes per shard before -EAGAIN (default 8 MiB) */
	unsigned queue_depth;       /* I/Os in flight per writer (default 256) */
	bool write_dsync;           /* RWF_DSYNC on every block write instead of one
	                             * fdatasync per group commit (default off; see
	                             * store.c: store_probe_flush()) */
	unsigned spare_segments;    /* segment files to keep laid out (zeroed) ahead,
	                             * filled while the store is quiet (default 0) */
	firn_store_durable_fn on_durable;
	void *on_durable_arg;
};

/* Fill conf with the defaults above (dir/kek/disk left NULL). */
void firn_store_conf_defaults(struct firn_store_conf *conf);

/* Open, recover and (if threaded) start writers. NULL with the reason in the error chain. */
struct firn_store *firn_store_open(const struct firn_store_conf *conf);

/* Flush everything pending, wait until durable, stop writers, free. */
void firn_store_close(struct firn_store *st);

/* Single-threaded mode: one duty cycle of every writer. Returns work done. */
int firn_store_do_work(struct firn_store *st);

/*
 * Make sure the log of (stream_id, shard) exists (creates its directory and
 * first segment lazily on first append otherwise). 0 or -errno.
 */
int firn_store_shard_create(struct firn_store *st, uint64_t stream_id, uint32_t shard);

/*
 * Append n records to a shard. Each gets the next counter (returned for the
 * first in *first_counter; the rest follow contiguously) and an arrival time
 * (non-decreasing per shard; *ts_ms may be NULL). Record pointers are only
 * read during the call. Returns 0, or:
 *   -EAGAIN    the shard's pending buffer is full: back off and retry
 *   -ENOSPC    the disk is full: nothing was appended
 *   -ESHUTDOWN the shard was sealed (closed by split/merge) or the stream dropped
 *   -E2BIG     a record is larger than FIRN_RECORD_DATA_MAX (or than a block of
 *              conf.block_max bytes can hold)
 *   -EINVAL    n is 0, or a key is longer than FIRN_PARTITION_KEY_MAX
 */
int firn_store_append(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                      const struct firn_record *recs, unsigned n, uint64_t *first_counter,
                      int64_t *ts_ms);

/*
 * Block until counter is durable in that shard or timeout_ms passes.
 * 0, -ETIMEDOUT, or the write error that keeps it from becoming durable
 * (-ENOSPC only while the disk is still full), -EINVAL if counter was never
 * given, -ENOENT if the shard has no log.
 */
int firn_store_wait_durable(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                            uint64_t counter, int timeout_ms);

/* Ask writers to flush now instead of waiting out the flush interval. */
void firn_store_flush(struct firn_store *st);

struct firn_shard_stat {
	uint64_t first_counter; /* oldest retained record */
	uint64_t next_counter;  /* counter the next append gets */
	uint64_t durable_next;  /* all counters below are durable */
	int64_t last_ts_ms;     /* arrival time of the newest durable record (0 if none) */
	uint64_t bytes;         /* bytes on disk */
	uint32_t segments;
	bool sealed;
};

/* -ENOENT if the shard has no log. */
int firn_store_shard_stat(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                          struct firn_shard_stat *out);

/*
 * Seal a shard: no more appends; wait until all it has is durable. *empty
 * tells whether it ever held a record; *last_counter is the last counter
 * given (undefined when empty). Sealing is persisted. 0 or -errno.
 */
int firn_store_shard_seal(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                          uint64_t *last_counter, bool *empty);

/* Drop every shard of a stream (deletes its files). */
int firn_store_stream_drop(struct firn_store *st, uint64_t stream_id);

/*
 * Remove the data of streams the catalog no longer has: what a crash between
 * DeleteStream's catalog change and firn_store_stream_drop() leaves behind.
 * Every directory <dir>/streams/<id> whose name is a stream id (decimal,
 * canonical), that is a real directory (never a symlink), whose id is not in
 * live_ids[0..nlive) (every stream of the catalog, whatever its shards'
 * state) and is below id_limit (the catalog's next id: every id it ever gave
 * out is below) is dropped with firn_store_stream_drop() and logged at INFO
 * with its size and shard count. Anything else under streams/ is left alone:
 * an id at or above id_limit (the catalog is older than the data: restored
 * from a backup, or lost and started afresh) and any entry that is not a
 * stream id get a WARN, never a removal. Counted in
 * firn_store_stats.orphan_streams_removed.
 *
 * Call it once after open, before anything else can append to or read the
 * store (firnd: before the API and the data port start), so no stream it
 * drops can be in use. *removed (may be NULL) gets the number of stream
 * directories removed. 0, or the first error (the others are still tried;
 * the error chain names the directory).
 */
int firn_store_drop_orphans(struct firn_store *st, const uint64_t *live_ids, size_t nlive,
                            uint64_t id_limit, uint64_t *removed);

/* Retention: segments whose newest record is older than this are removed by GC. */
int firn_store_set_retention(struct firn_store *st, uint64_t stream_id, uint32_t hours);

/* Run retention GC now (writers also run it about once a minute). Returns segments removed. */
int firn_store_gc(struct firn_store *st, int64_t now_ms);

enum firn_read_from {
	FIRN_READ_AT_COUNTER, /* first record with counter >= req.counter */
	FIRN_READ_AT_TIME,    /* first record with ts_ms >= req.ts_ms */
};

struct firn_read_req {
	enum firn_read_from from;
	uint64_t counter;
	int64_t ts_ms;
	uint32_t max_records; /* >= 1 */
	size_t max_bytes;     /* data bytes; at least one record is returned if any */
};

struct firn_read_res {
	struct firn_record *recs; /* n records; pointers into res-owned memory */
	uint32_t n;
	uint64_t next_counter;  /* where the next read should start */
	uint64_t durable_next;  /* the shard's durable tip at the time of the read */
	int64_t tip_ts_ms;      /* arrival time of the newest durable record */
	uint64_t first_counter; /* oldest retained (a trimmed start reads from here) */
	void *mem;              /* internal */
};

/*
 * Read durable records. Starting before the oldest retained record reads
 * from the oldest. 0 (n may be 0 at the tip), -ENOENT (no such shard log),
 * -EIO (a damaged block; the error chain names it). Free with
 * firn_read_res_free().
 */
int firn_store_read(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                    const struct firn_read_req *req, struct firn_read_res *res);
void firn_read_res_free(struct firn_read_res *res);

/* Counters for /metrics and benchmarks, summed over writers. */
struct firn_store_stats {
	uint64_t appended_records, appended_bytes;
	uint64_t durable_records;
	uint64_t blocks_written, bytes_written; /* bytes incl. padding and headers */
	uint64_t commits;                       /* group commits */
	uint64_t write_errors;
	uint64_t recovered_cut_bytes; /* torn tails cut at open */
	uint64_t quarantined_segments;
	uint64_t gc_segments;
	uint64_t spare_segments;         /* laid-out segment files ready for rolls */
	uint64_t orphan_streams_removed; /* by firn_store_drop_orphans() */
	uint64_t slow_commits;           /* group commits that took 50 ms or more */
	/* fsync (commit) latency histogram: buckets of 2^i microseconds, i < 24 */
	uint64_t commit_lat_us_log2[24];
};
void firn_store_stats(struct firn_store *st, struct firn_store_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_STORE_H */
