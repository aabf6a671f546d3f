/*
 * firn_stream.h - the stream catalog: streams, shards, hash ranges, lineage,
 * retention and tags, persisted crash-safely.
 *
 * A stream has shards; each shard owns a contiguous hash-key range. Creating
 * a stream with N shards gives shard i the range
 * [floor(2^128/N)*i, floor(2^128/N)*(i+1)-1], the last ending at 2^128-1.
 * Shard indexes are never reused within a stream: split and merge close the
 * parent(s) and add children with new indexes. A closed shard keeps its range
 * and records its ending counter (the last counter the store gave it), so
 * consumers can drain it and then move on to the children.
 *
 *	split(s, p, k): p must be open and k inside (p.start, p.end]; children
 *	    c1 = [p.start, k-1] and c2 = [k, p.end], both with parent p.
 *	merge(s, a, b): a and b open and adjacent (a.end + 1 == b.start);
 *	    child [a.start, b.end] with parent a and adjacent parent b.
 *
 * The catalog is the model only. It does not touch the store: the daemon
 * seals a shard in the store first and passes the ending counter in.
 *
 * Persistence: the whole catalog is one JSON file (catalog.json) in the given
 * directory, replaced atomically on every change (firn_file_write_atomic), so
 * after any crash it is either before or after a change, never between.
 *
 * Thread safety: every function takes the catalog's lock; snapshots returned
 * by firn_catalog_get() are private copies the caller frees.
 */
#ifndef FIRN_STREAM_H
#define FIRN_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "firn_record.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FIRN_STREAM_NAME_MAX 128
#define FIRN_RETENTION_MIN_H 24
#define FIRN_RETENTION_MAX_H 8760
#define FIRN_RETENTION_DEFAULT_H 24
#define FIRN_TAGS_MAX 50
#define FIRN_TAG_KEY_MAX 128
#define FIRN_TAG_VALUE_MAX 256

enum firn_stream_status {
	FIRN_STREAM_CREATING,
	FIRN_STREAM_ACTIVE,
	FIRN_STREAM_UPDATING,
	FIRN_STREAM_DELETING,
};

/* "CREATING", "ACTIVE", "UPDATING", "DELETING". */
const char *firn_stream_status_name(enum firn_stream_status s);

struct firn_shard_info {
	uint32_t index;          /* shardId-%012u */
	struct firn_u128 start;  /* inclusive */
	struct firn_u128 end;    /* inclusive */
	int64_t parent;          /* index or -1 */
	int64_t adjacent_parent; /* index or -1 */
	uint64_t start_counter;  /* first counter of this shard (0) */
	bool closed;
	uint64_t end_counter; /* last counter assigned, valid when closed and !empty */
	bool empty_at_close;  /* closed before any record was appended */
	int64_t created_ms;
	int64_t closed_ms;
};

struct firn_tag {
	char key[FIRN_TAG_KEY_MAX + 1];
	char value[FIRN_TAG_VALUE_MAX + 1];
};

struct firn_stream_info {
	uint64_t id; /* unique for the life of the data dir */
	char name[FIRN_STREAM_NAME_MAX + 1];
	enum firn_stream_status status;
	uint32_t retention_hours;
	int64_t created_ms;
	uint32_t nshards;               /* all shards, open and closed, by index */
	struct firn_shard_info *shards; /* shards[i].index == i */
	uint32_t ntags;
	struct firn_tag *tags; /* sorted by key */
	/*
	 * The open shards' indexes sorted by range start, so firn_stream_route()
	 * can binary-search. Filled by firn_catalog_get(); a snapshot built by
	 * hand may leave it NULL (route then scans shards[]).
	 */
	uint32_t nopen;
	uint32_t *open_by_start;
};

struct firn_catalog;

/*
 * Open (or create) the catalog in dir, loading catalog.json if it exists.
 * NULL on error (corrupt file, I/O), with the reason in the error chain.
 */
struct firn_catalog *firn_catalog_open(const char *dir);
void firn_catalog_close(struct firn_catalog *c);

/* Stream names: 1..128 of [a-zA-Z0-9_.-]. 0 or -EINVAL. */
int firn_stream_name_check(const char *name);

/*
 * Create a stream with nshards (1..FIRN_SHARDS_MAX) equal ranges, status
 * ACTIVE. 0, -EINVAL, -EEXIST, or -errno from persisting. *id_out may be NULL.
 */
#define FIRN_SHARDS_MAX 10000
int firn_catalog_create(struct firn_catalog *c, const char *name, uint32_t nshards,
                        uint64_t *id_out);

/* Remove a stream from the catalog. 0 or -ENOENT. */
int firn_catalog_delete(struct firn_catalog *c, const char *name);

/* A private copy of a stream, or -ENOENT. Free with firn_stream_info_free(). */
int firn_catalog_get(struct firn_catalog *c, const char *name, struct firn_stream_info **out);
int firn_catalog_get_by_id(struct firn_catalog *c, uint64_t id, struct firn_stream_info **out);
void firn_stream_info_free(struct firn_stream_info *s);

/*
 * Names of all streams, sorted; *names is one malloc'd array of pointers into
 * itself (free(*names) once).
 */
int firn_catalog_list(struct firn_catalog *c, char ***names, uint32_t *n);

/*
 * Split open shard `shard` at new_start. end_counter/empty describe the
 * parent's log as the store sealed it. Children indexes go to child_out[2].
 * -ENOENT (stream/shard), -EINVAL (closed shard, key outside range),
 * -ENOSPC (more than FIRN_SHARDS_MAX open shards).
 */
int firn_catalog_split(struct firn_catalog *c, const char *name, uint32_t shard,
                       struct firn_u128 new_start, uint64_t end_counter, bool empty,
                       uint32_t child_out[2]);

/*
 * Merge open adjacent shards a (lower range) and b. end_counter[i]/empty[i]
 * describe a and b as sealed. -ENOENT, -EINVAL (closed or not adjacent).
 */
int firn_catalog_merge(struct firn_catalog *c, const char *name, uint32_t a, uint32_t b,
                       const uint64_t end_counter[2], const bool empty[2], uint32_t *child_out);

/*
 * Close the given open shards (seal info as above) and add `target` new open
 * shards splitting the whole hash space uniformly (UpdateShardCount with
 * UNIFORM_SCALING, modelled as close-all + re-create with lineage: each new
 * shard's parent is the old open shard that covered its start, its adjacent
 * parent the next old open shard overlapping its range, if any).
 * end_counters[]/empty[] have one entry per open shard, in ascending shard
 * index order (the order of shards[] in a snapshot). target is
 * 1..FIRN_SHARDS_MAX; -ENOENT, -EINVAL.
 */
int firn_catalog_reshard_uniform(struct firn_catalog *c, const char *name, uint32_t target,
                                 const uint64_t *end_counters, const bool *empty);

/* 24..8760 hours; -EINVAL outside. */
int firn_catalog_set_retention(struct firn_catalog *c, const char *name, uint32_t hours);
int firn_catalog_set_status(struct firn_catalog *c, const char *name,
                            enum firn_stream_status status);

/* Add or overwrite tags; -EINVAL if the total would exceed FIRN_TAGS_MAX. */
int firn_catalog_tag(struct firn_catalog *c, const char *name, const struct firn_tag *tags,
                     uint32_t n);
int firn_catalog_untag(struct firn_catalog *c, const char *name, const char *const *keys,
                       uint32_t n);

/*
 * The open shard whose range holds hash, from a snapshot: a binary search
 * over open_by_start (no allocation, no lock). -ENOENT if none (cannot happen
 * for a well-formed stream).
 */
int firn_stream_route(const struct firn_stream_info *s, struct firn_u128 hash, uint32_t *shard);

/* A counter that changes on every catalog change (route tables compare it). */
uint64_t firn_catalog_version(struct firn_catalog *c);

/*
 * The id the next created stream will get. Ids are never reused, so every id
 * this catalog ever gave out is below it (firnd's orphan sweep at start
 * leaves the data of higher ids alone: see firn_store_drop_orphans()).
 */
uint64_t firn_catalog_next_id(struct firn_catalog *c);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_STREAM_H */
