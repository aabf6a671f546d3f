/*
 * stream_private.h - the catalog's insides, shared by catalog.c (the
 * operations), catalog_json.c (the file) and shard.c (snapshots, routing).
 * Private to lib/stream.
 */
#ifndef FIRN_STREAM_PRIVATE_H
#define FIRN_STREAM_PRIVATE_H

#include <pthread.h>

#include "firn_stream.h"

#define CATALOG_FILE "catalog.json"
#define CATALOG_FORMAT 1

/*
 * The catalog: every stream as a full firn_stream_info (with its open-shard
 * view built), kept sorted by name so list is a copy and lookup a binary
 * search. Streams are few (Kinesis allows hundreds per account), shards are
 * at most a few tens of thousands per stream, and changes are rare control
 * plane events, so each change works on a deep copy of the stream and swaps
 * it in only once the new catalog is on disk: a failed write leaves memory
 * and disk agreeing on the old state.
 */
struct firn_catalog {
	pthread_mutex_t lock;
	char *path;       /* <dir>/catalog.json */
	uint64_t next_id; /* next stream id; persisted, never goes back */
	/*
	 * Bumped (release) under lock after every change is on disk; read
	 * (acquire) without the lock by firn_catalog_version(), so a route
	 * table that sees a new version also sees the change.
	 */
	uint64_t version;
	uint32_t nstreams;
	uint32_t cap;
	struct firn_stream_info **streams; /* sorted by name */
};

/* shard.c */
struct firn_stream_info *stream_info_dup(const struct firn_stream_info *s);
int stream_build_open_view(struct firn_stream_info *s);
int stream_check(const struct firn_stream_info *s, char *why, size_t cap);
int stream_status_parse(const char *name, enum firn_stream_status *out);
int tag_check(const char *key, const char *value);

/* catalog_json.c */
int catalog_json_load(struct firn_catalog *c, const char *buf, size_t len);
int catalog_json_save(const struct firn_catalog *c);

#endif /* FIRN_STREAM_PRIVATE_H */
