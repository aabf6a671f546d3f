/*
 * catalog.c - the stream catalog: create, delete, reshard, retention, tags.
 *
 * The catalog is the model of which streams exist and how their hash space is
 * cut into shards; it never touches record data. The daemon seals a shard in
 * the store first (no more appends, everything durable) and then tells the
 * catalog, passing the shard's last counter, so a closed shard in the
 * catalog always has a known end that consumers can drain to.
 *
 * Lineage. Shard indexes are never reused: split and merge close their
 * parent(s) and append children with the next free indexes, recording
 * parent / adjacent_parent so a consumer that reaches the end of a closed
 * shard knows where to go next (GetRecords' ChildShards). Because children
 * always get higher indexes, their sequence numbers sort after their
 * parents' (see firn_record.h).
 *
 * Every change follows one pattern: under the lock, copy the stream, change
 * the copy, write the whole catalog with the copy in place, and only if that
 * write succeeded free the old stream and bump the version. A failed write
 * (full disk, I/O error) thus leaves memory exactly as the file on disk.
 *
 *	struct firn_catalog *c = firn_catalog_open("/var/lib/firn/meta");
 *	firn_catalog_create(c, "clicks", 4, &id);
 *	firn_store_shard_seal(st, id, 1, &last, &empty);   // the daemon, first
 *	firn_catalog_split(c, "clicks", 1, mid, last, empty, kids);
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_common.h"
#include "stream_private.h"

/* "shard 3 (shardId-000000000003)" for error messages. */
#define SHARD_FMT "shard %u (shardId-%012u)"
#define SHARD_ARG(i) (unsigned)(i), (unsigned)(i)

/* ---- open / close ---------------------------------------------------------- */

struct firn_catalog *
firn_catalog_open(const char *dir)
{
	struct firn_catalog *c;
	char *buf = NULL;
	size_t len, plen;
	int rc;

	if (dir == NULL || dir[0] == '\0') {
		firn_err_set(-EINVAL, "catalog directory not given");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		firn_err_set(-ENOMEM, "open catalog %s: out of memory", dir);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->next_id = 1;
	c->version = 1;
	plen = strlen(dir) + sizeof("/" CATALOG_FILE);
	c->path = malloc(plen);
	if (c->path == NULL) {
		firn_err_set(-ENOMEM, "open catalog %s: out of memory", dir);
		goto fail;
	}
	snprintf(c->path, plen, "%s/%s", dir, CATALOG_FILE);
	rc = firn_mkdir_p(dir, 0755);
	if (rc < 0) {
		firn_err_wrap(rc, "open catalog in %s", dir);
		goto fail;
	}
	rc = firn_file_read_all(c->path, &buf, &len);
	if (rc == -ENOENT) {
		/* A fresh data dir: an empty catalog, written on the first change. */
		firn_err_clear();
		return c;
	}
	if (rc < 0) {
		firn_err_wrap(rc, "open catalog %s", c->path);
		goto fail;
	}
	rc = catalog_json_load(c, buf, len);
	free(buf);
	if (rc < 0)
		goto fail;
	return c;
fail:
	firn_catalog_close(c);
	return NULL;
}

void
firn_catalog_close(struct firn_catalog *c)
{
	if (c == NULL)
		return;
	for (uint32_t i = 0; i < c->nstreams; i++)
		firn_stream_info_free(c->streams[i]);
	free(c->streams);
	free(c->path);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

uint64_t
firn_catalog_version(struct firn_catalog *c)
{
	/* Pairs with the release store in bump_version(). */
	return __atomic_load_n(&c->version, __ATOMIC_ACQUIRE);
}

uint64_t
firn_catalog_next_id(struct firn_catalog *c)
{
	uint64_t id;

	pthread_mutex_lock(&c->lock);
	id = c->next_id;
	pthread_mutex_unlock(&c->lock);
	return id;
}

static void
bump_version(struct firn_catalog *c)
{
	/* Pairs with the acquire load in firn_catalog_version(); writers hold c->lock. */
	__atomic_store_n(&c->version, c->version + 1, __ATOMIC_RELEASE);
}

/* ---- lookup ---------------------------------------------------------------- */

/*
 * Binary search by name. Returns true and the position if found, else false
 * and the position where it would be inserted.
 */
static bool
find_pos(const struct firn_catalog *c, const char *name, uint32_t *pos)
{
	uint32_t lo = 0, hi = c->nstreams;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int r = strcmp(c->streams[mid]->name, name);

		if (r == 0) {
			*pos = mid;
			return true;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

/* Find a stream or set "stream 'x' not found". 0 or -ENOENT / -EINVAL. */
static int
lookup(const struct firn_catalog *c, const char *name, uint32_t *pos)
{
	if (name == NULL)
		return firn_err_set(-EINVAL, "no stream name given");
	if (!find_pos(c, name, pos))
		return firn_err_set(-ENOENT, "stream '%.*s' not found", FIRN_STREAM_NAME_MAX, name);
	return 0;
}

/*
 * Replace stream pos with next once the catalog with next in it is on disk.
 * Takes ownership of next either way.
 */
static int
commit(struct firn_catalog *c, uint32_t pos, struct firn_stream_info *next)
{
	struct firn_stream_info *prev = c->streams[pos];
	int rc;

	c->streams[pos] = next;
	rc = catalog_json_save(c);
	if (rc < 0) {
		c->streams[pos] = prev;
		firn_stream_info_free(next);
		return rc;
	}
	firn_stream_info_free(prev);
	bump_version(c);
	return 0;
}

/* A private copy of stream pos to change into *out. 0 or -ENOMEM (error set). */
static int
edit_copy(const struct firn_catalog *c, uint32_t pos, struct firn_stream_info **out)
{
	*out = stream_info_dup(c->streams[pos]);
	if (*out == NULL)
		return firn_err_set(-ENOMEM, "stream '%s': out of memory", c->streams[pos]->name);
	return 0;
}

/* ---- shard helpers ------------------------------------------------------------ */

/*
 * Find an open shard for a change. -ENOENT if there is no such index,
 * -EINVAL if it is closed (Kinesis: it was already split or merged).
 */
static int
open_shard(const struct firn_stream_info *s, uint32_t idx)
{
	if (idx >= s->nshards)
		return firn_err_set(-ENOENT, SHARD_FMT " of stream '%s' not found", SHARD_ARG(idx),
		                    s->name);
	if (s->shards[idx].closed)
		return firn_err_set(-EINVAL, SHARD_FMT " of stream '%s' is closed", SHARD_ARG(idx),
		                    s->name);
	return 0;
}

/* Room for `add` more shards: indexes must stay <= FIRN_SHARD_INDEX_MAX. */
static int
reserve_shards(struct firn_stream_info *s, uint32_t add)
{
	struct firn_shard_info *sh;

	if ((uint64_t)s->nshards + add - 1 > FIRN_SHARD_INDEX_MAX)
		return firn_err_set(-ENOSPC, "stream '%s' has used all %u shard indexes", s->name,
		                    FIRN_SHARD_INDEX_MAX + 1u);
	sh = realloc(s->shards, ((size_t)s->nshards + add) * sizeof(*sh));
	if (sh == NULL)
		return firn_err_set(-ENOMEM, "stream '%s': out of memory", s->name);
	s->shards = sh;
	return 0;
}

/* Append an open shard [start, end]; the caller reserved room. Returns its index. */
static uint32_t
add_shard(struct firn_stream_info *s, struct firn_u128 start, struct firn_u128 end, int64_t parent,
          int64_t adjacent, int64_t now)
{
	struct firn_shard_info *sh = &s->shards[s->nshards];

	memset(sh, 0, sizeof(*sh));
	sh->index = s->nshards;
	sh->start = start;
	sh->end = end;
	sh->parent = parent;
	sh->adjacent_parent = adjacent;
	sh->start_counter = 0;
	sh->created_ms = now;
	return s->nshards++;
}

static void
close_shard(struct firn_shard_info *sh, uint64_t end_counter, bool empty, int64_t now)
{
	sh->closed = true;
	sh->empty_at_close = empty;
	/* Meaningless when empty; keep the file deterministic. */
	sh->end_counter = empty ? 0 : end_counter;
	sh->closed_ms = now;
}

/* Add n shards tiling the whole hash space uniformly, all with no parent. */
static void
add_uniform(struct firn_stream_info *s, uint32_t n, int64_t now)
{
	for (uint32_t i = 0; i < n; i++) {
		struct firn_u128 start = firn_u128_range_start(i, n);
		struct firn_u128 end = i + 1 == n ? FIRN_U128_MAX
		                                  : firn_u128_sub(firn_u128_range_start(i + 1, n),
		                                                  firn_u128_from_u64(1));

		add_shard(s, start, end, -1, -1, now);
	}
}

/* ---- streams ---------------------------------------------------------------- */

int
firn_catalog_create(struct firn_catalog *c, const char *name, uint32_t nshards, uint64_t *id_out)
{
	struct firn_stream_info *s;
	uint32_t pos;
	int64_t now = firn_now_ms();
	int rc;

	if (firn_stream_name_check(name) < 0)
		return firn_err_set(-EINVAL,
		                    "invalid stream name '%.*s': use 1..%u characters of "
		                    "a-z A-Z 0-9 _ . -",
		                    FIRN_STREAM_NAME_MAX + 1, name ? name : "",
		                    FIRN_STREAM_NAME_MAX);
	if (nshards == 0 || nshards > FIRN_SHARDS_MAX)
		return firn_err_set(-EINVAL, "stream '%s': shard count %u is outside 1..%u", name,
		                    nshards, FIRN_SHARDS_MAX);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return firn_err_set(-ENOMEM, "create stream '%s': out of memory", name);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->status = FIRN_STREAM_ACTIVE;
	s->retention_hours = FIRN_RETENTION_DEFAULT_H;
	s->created_ms = now;
	s->tags = calloc(1, sizeof(*s->tags));
	if (s->tags == NULL || reserve_shards(s, nshards) < 0) {
		firn_stream_info_free(s);
		return firn_err_set(-ENOMEM, "create stream '%s': out of memory", name);
	}
	add_uniform(s, nshards, now);
	if (stream_build_open_view(s) < 0) {
		firn_stream_info_free(s);
		return firn_err_set(-ENOMEM, "create stream '%s': out of memory", name);
	}

	pthread_mutex_lock(&c->lock);
	if (find_pos(c, name, &pos)) {
		rc = firn_err_set(-EEXIST, "stream '%s' already exists", name);
		goto fail;
	}
	if (c->nstreams == c->cap) {
		uint32_t cap = c->cap ? c->cap * 2 : 8;
		struct firn_stream_info **v = realloc(c->streams, cap * sizeof(*v));

		if (v == NULL) {
			rc = firn_err_set(-ENOMEM, "create stream '%s': out of memory", name);
			goto fail;
		}
		c->streams = v;
		c->cap = cap;
	}
	s->id = c->next_id++;
	memmove(&c->streams[pos + 1], &c->streams[pos], (c->nstreams - pos) * sizeof(*c->streams));
	c->streams[pos] = s;
	c->nstreams++;
	rc = catalog_json_save(c);
	if (rc < 0) {
		/* Undo, id included: nothing was persisted, so nothing saw it. */
		c->nstreams--;
		memmove(&c->streams[pos], &c->streams[pos + 1],
		        (c->nstreams - pos) * sizeof(*c->streams));
		c->next_id--;
		firn_err_wrap(rc, "create stream '%s'", name);
		goto fail;
	}
	bump_version(c);
	if (id_out != NULL)
		*id_out = s->id;
	pthread_mutex_unlock(&c->lock);
	return 0;
fail:
	pthread_mutex_unlock(&c->lock);
	firn_stream_info_free(s);
	return rc;
}

int
firn_catalog_delete(struct firn_catalog *c, const char *name)
{
	struct firn_stream_info *s;
	uint32_t pos;
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc < 0)
		goto out;
	s = c->streams[pos];
	memmove(&c->streams[pos], &c->streams[pos + 1],
	        (c->nstreams - pos - 1) * sizeof(*c->streams));
	c->nstreams--;
	/* next_id is untouched: a new stream of the same name gets a new id. */
	rc = catalog_json_save(c);
	if (rc < 0) {
		memmove(&c->streams[pos + 1], &c->streams[pos],
		        (c->nstreams - pos) * sizeof(*c->streams));
		c->streams[pos] = s;
		c->nstreams++;
		firn_err_wrap(rc, "delete stream '%s'", name);
		goto out;
	}
	firn_stream_info_free(s);
	bump_version(c);
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
firn_catalog_get(struct firn_catalog *c, const char *name, struct firn_stream_info **out)
{
	uint32_t pos;
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc == 0) {
		*out = stream_info_dup(c->streams[pos]);
		if (*out == NULL)
			rc = firn_err_set(-ENOMEM, "stream '%s': out of memory", name);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
firn_catalog_get_by_id(struct firn_catalog *c, uint64_t id, struct firn_stream_info **out)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < c->nstreams; i++) {
		if (c->streams[i]->id != id)
			continue;
		*out = stream_info_dup(c->streams[i]);
		rc = *out ? 0
		          : firn_err_set(-ENOMEM, "stream id %llu: out of memory",
		                         (unsigned long long)id);
		break;
	}
	if (rc == -ENOENT)
		firn_err_set(rc, "stream id %llu not found", (unsigned long long)id);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
firn_catalog_list(struct firn_catalog *c, char ***names, uint32_t *n)
{
	size_t bytes;
	char **v, *p;

	pthread_mutex_lock(&c->lock);
	bytes = ((size_t)c->nstreams + 1) * sizeof(char *);
	for (uint32_t i = 0; i < c->nstreams; i++)
		bytes += strlen(c->streams[i]->name) + 1;
	v = malloc(bytes);
	if (v == NULL) {
		pthread_mutex_unlock(&c->lock);
		return firn_err_set(-ENOMEM, "list streams: out of memory");
	}
	/* The strings follow the pointer array (NULL-terminated) in the same block. */
	p = (char *)&v[c->nstreams + 1];
	for (uint32_t i = 0; i < c->nstreams; i++) {
		size_t len = strlen(c->streams[i]->name) + 1;

		memcpy(p, c->streams[i]->name, len);
		v[i] = p;
		p += len;
	}
	v[c->nstreams] = NULL;
	*n = c->nstreams;
	*names = v;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* ---- resharding -------------------------------------------------------------- */

int
firn_catalog_split(struct firn_catalog *c, const char *name, uint32_t shard,
                   struct firn_u128 new_start, uint64_t end_counter, bool empty,
                   uint32_t child_out[2])
{
	struct firn_stream_info *s = NULL;
	struct firn_shard_info *p;
	uint32_t pos, c1, c2;
	int64_t now = firn_now_ms();
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc < 0 || (rc = open_shard(c->streams[pos], shard)) < 0)
		goto out;
	p = &c->streams[pos]->shards[shard];
	/*
	 * Kinesis requires the new starting hash key strictly inside the range
	 * (both children non-empty): start < k <= end.
	 */
	if (firn_u128_cmp(new_start, p->start) <= 0 || firn_u128_cmp(new_start, p->end) > 0) {
		char k[FIRN_U128_DEC_SIZE], a[FIRN_U128_DEC_SIZE], b[FIRN_U128_DEC_SIZE];

		firn_u128_format(new_start, k);
		firn_u128_format(p->start, a);
		firn_u128_format(p->end, b);
		rc = firn_err_set(-EINVAL,
		                  "starting hash key %s is outside " SHARD_FMT " of stream '%s': "
		                  "it must be greater than %s and at most %s",
		                  k, SHARD_ARG(shard), name, a, b);
		goto out;
	}
	if (c->streams[pos]->nopen + 1 > FIRN_SHARDS_MAX) {
		rc = firn_err_set(-ENOSPC, "stream '%s' already has %u open shards (max %u)", name,
		                  c->streams[pos]->nopen, FIRN_SHARDS_MAX);
		goto out;
	}
	rc = edit_copy(c, pos, &s);
	if (rc < 0)
		goto out;
	rc = reserve_shards(s, 2);
	if (rc < 0)
		goto out;
	p = &s->shards[shard];
	close_shard(p, end_counter, empty, now);
	c1 = add_shard(s, p->start, firn_u128_sub(new_start, firn_u128_from_u64(1)), shard, -1,
	               now);
	/* Room was reserved, so add_shard() does not move shards[] and p stays valid. */
	c2 = add_shard(s, new_start, p->end, shard, -1, now);
	if (stream_build_open_view(s) < 0) {
		rc = firn_err_set(-ENOMEM, "stream '%s': out of memory", name);
		goto out;
	}
	rc = commit(c, pos, s);
	s = NULL;
	if (rc < 0) {
		firn_err_wrap(rc, "split " SHARD_FMT " of stream '%s'", SHARD_ARG(shard), name);
		goto out;
	}
	child_out[0] = c1;
	child_out[1] = c2;
out:
	pthread_mutex_unlock(&c->lock);
	firn_stream_info_free(s);
	return rc;
}

int
firn_catalog_merge(struct firn_catalog *c, const char *name, uint32_t a, uint32_t b,
                   const uint64_t end_counter[2], const bool empty[2], uint32_t *child_out)
{
	struct firn_stream_info *s = NULL;
	const struct firn_stream_info *cur;
	uint32_t pos, child;
	int64_t now = firn_now_ms();
	int rc;

	if (end_counter == NULL || empty == NULL)
		return firn_err_set(-EINVAL, "merge in stream '%s': no seal info",
		                    name ? name : "");
	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc < 0)
		goto out;
	cur = c->streams[pos];
	if (a == b) {
		rc = firn_err_set(-EINVAL, "cannot merge " SHARD_FMT " of stream '%s' with itself",
		                  SHARD_ARG(a), name);
		goto out;
	}
	if ((rc = open_shard(cur, a)) < 0 || (rc = open_shard(cur, b)) < 0)
		goto out;
	if (firn_u128_cmp(cur->shards[a].end, FIRN_U128_MAX) == 0 ||
	    firn_u128_cmp(firn_u128_add(cur->shards[a].end, firn_u128_from_u64(1)),
	                  cur->shards[b].start) != 0) {
		rc = firn_err_set(-EINVAL,
		                  "shards %u and %u of stream '%s' are not adjacent: shard %u's "
		                  "range must end right before shard %u's starts",
		                  a, b, name, a, b);
		goto out;
	}
	rc = edit_copy(c, pos, &s);
	if (rc < 0)
		goto out;
	rc = reserve_shards(s, 1);
	if (rc < 0)
		goto out;
	close_shard(&s->shards[a], end_counter[0], empty[0], now);
	close_shard(&s->shards[b], end_counter[1], empty[1], now);
	child = add_shard(s, s->shards[a].start, s->shards[b].end, a, b, now);
	if (stream_build_open_view(s) < 0) {
		rc = firn_err_set(-ENOMEM, "stream '%s': out of memory", name);
		goto out;
	}
	rc = commit(c, pos, s);
	s = NULL;
	if (rc < 0) {
		firn_err_wrap(rc, "merge shards %u and %u of stream '%s'", a, b, name);
		goto out;
	}
	if (child_out != NULL)
		*child_out = child;
out:
	pthread_mutex_unlock(&c->lock);
	firn_stream_info_free(s);
	return rc;
}

/*
 * UpdateShardCount(UNIFORM_SCALING). Kinesis performs it as a series of
 * splits and merges with intermediate shards; firn models it in one step:
 * close every open shard and add `target` shards that cut the whole space
 * uniformly. Each new shard [S, E] records
 *
 *	parent           = the old open shard whose range holds S
 *	adjacent_parent  = the old open shard holding parent.end + 1, if that
 *	                   is still <= E (the next old shard it overlaps)
 *
 * Two links are all the model has room for, so when a new shard overlaps
 * three or more old ones (scaling down by more than half, or old shards of
 * very unequal size) the rest are not linked to it. Consumers that need the
 * complete picture for a shard closed by a reshard should find its children
 * by range overlap among the shards created at the same time (doc/model.md).
 */
int
firn_catalog_reshard_uniform(struct firn_catalog *c, const char *name, uint32_t target,
                             const uint64_t *end_counters, const bool *empty)
{
	struct firn_stream_info *s = NULL;
	uint32_t pos, nold, *old = NULL, k = 0;
	int64_t now = firn_now_ms();
	int rc;

	if (target == 0 || target > FIRN_SHARDS_MAX)
		return firn_err_set(-EINVAL, "stream '%s': target shard count %u is outside 1..%u",
		                    name ? name : "", target, FIRN_SHARDS_MAX);
	if (end_counters == NULL || empty == NULL)
		return firn_err_set(-EINVAL, "reshard stream '%s': no seal info", name ? name : "");
	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc < 0)
		goto out;
	rc = edit_copy(c, pos, &s);
	if (rc < 0)
		goto out;
	/* The old open shards in hash order, captured before new ones are added. */
	nold = s->nopen;
	old = malloc(((size_t)nold + 1) * sizeof(*old));
	if (old == NULL) {
		rc = firn_err_set(-ENOMEM, "stream '%s': out of memory", name);
		goto out;
	}
	memcpy(old, s->open_by_start, (size_t)nold * sizeof(*old));
	rc = reserve_shards(s, target);
	if (rc < 0)
		goto out;
	/* Seal info comes in ascending index order, as the open shards appear in shards[]. */
	for (uint32_t i = 0, j = 0; i < s->nshards; i++) {
		if (s->shards[i].closed)
			continue;
		close_shard(&s->shards[i], end_counters[j], empty[j], now);
		j++;
	}
	for (uint32_t i = 0; i < target; i++) {
		struct firn_u128 start = firn_u128_range_start(i, target);
		struct firn_u128 end = i + 1 == target
		                               ? FIRN_U128_MAX
		                               : firn_u128_sub(firn_u128_range_start(i + 1, target),
		                                               firn_u128_from_u64(1));
		const struct firn_shard_info *par;
		int64_t adj = -1;

		/* Old shards tile the space in order, and new starts only grow. */
		while (firn_u128_cmp(s->shards[old[k]].end, start) < 0)
			k++;
		par = &s->shards[old[k]];
		if (firn_u128_cmp(par->end, end) < 0)
			adj = old[k + 1];
		add_shard(s, start, end, par->index, adj, now);
	}
	if (stream_build_open_view(s) < 0) {
		rc = firn_err_set(-ENOMEM, "stream '%s': out of memory", name);
		goto out;
	}
	rc = commit(c, pos, s);
	s = NULL;
	if (rc < 0)
		firn_err_wrap(rc, "reshard stream '%s' to %u shards", name, target);
out:
	pthread_mutex_unlock(&c->lock);
	firn_stream_info_free(s);
	free(old);
	return rc;
}

/* ---- settings ---------------------------------------------------------------- */

/* Change one scalar field of a stream: the shared body of the setters below. */
enum stream_field { FIELD_RETENTION, FIELD_STATUS };

static int
set_field(struct firn_catalog *c, const char *name, enum stream_field f, uint32_t v)
{
	struct firn_stream_info *s;
	uint32_t pos;
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc < 0)
		goto out;
	rc = edit_copy(c, pos, &s);
	if (rc < 0)
		goto out;
	if (f == FIELD_RETENTION)
		s->retention_hours = v;
	else
		s->status = (enum firn_stream_status)v;
	rc = commit(c, pos, s);
	if (rc < 0)
		firn_err_wrap(rc, "set %s of stream '%s'",
		              f == FIELD_RETENTION ? "retention" : "status", name);
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
firn_catalog_set_retention(struct firn_catalog *c, const char *name, uint32_t hours)
{
	if (hours < FIRN_RETENTION_MIN_H || hours > FIRN_RETENTION_MAX_H)
		return firn_err_set(
		        -EINVAL, "retention of %u hours for stream '%s' is outside %u..%u", hours,
		        name ? name : "", FIRN_RETENTION_MIN_H, FIRN_RETENTION_MAX_H);
	return set_field(c, name, FIELD_RETENTION, hours);
}

int
firn_catalog_set_status(struct firn_catalog *c, const char *name, enum firn_stream_status status)
{
	if ((unsigned)status > FIRN_STREAM_DELETING)
		return firn_err_set(-EINVAL, "stream '%s': unknown status %d", name ? name : "",
		                    (int)status);
	return set_field(c, name, FIELD_STATUS, (uint32_t)status);
}

static int
tag_find(const struct firn_stream_info *s, const char *key, uint32_t *at)
{
	uint32_t lo = 0, hi = s->ntags;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int r = strcmp(s->tags[mid].key, key);

		if (r == 0) {
			*at = mid;
			return 1;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return 0;
}

int
firn_catalog_tag(struct firn_catalog *c, const char *name, const struct firn_tag *tags, uint32_t n)
{
	struct firn_stream_info *s = NULL;
	struct firn_tag *t;
	uint32_t pos, at;
	int rc;

	if (n > 0 && tags == NULL)
		return firn_err_set(-EINVAL, "stream '%s': no tags given", name ? name : "");
	for (uint32_t i = 0; i < n; i++) {
		if (tag_check(tags[i].key, tags[i].value) < 0)
			return firn_err_set(-EINVAL,
			                    "stream '%s': tag %u: keys are 1..%u and values 0..%u "
			                    "bytes of UTF-8",
			                    name ? name : "", i, FIRN_TAG_KEY_MAX,
			                    FIRN_TAG_VALUE_MAX);
	}
	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc < 0)
		goto out;
	rc = edit_copy(c, pos, &s);
	if (rc < 0)
		goto out;
	/* Room for the worst case (all new); the count is checked as keys land. */
	t = realloc(s->tags, ((size_t)s->ntags + n + 1) * sizeof(*t));
	if (t == NULL) {
		rc = firn_err_set(-ENOMEM, "stream '%s': out of memory", name);
		goto out;
	}
	s->tags = t;
	for (uint32_t i = 0; i < n; i++) {
		if (tag_find(s, tags[i].key, &at)) {
			snprintf(s->tags[at].value, sizeof(s->tags[at].value), "%s", tags[i].value);
			continue;
		}
		if (s->ntags == FIRN_TAGS_MAX) {
			rc = firn_err_set(-EINVAL, "stream '%s' would have more than %u tags", name,
			                  FIRN_TAGS_MAX);
			goto out;
		}
		memmove(&s->tags[at + 1], &s->tags[at], (s->ntags - at) * sizeof(*s->tags));
		memset(&s->tags[at], 0, sizeof(s->tags[at]));
		snprintf(s->tags[at].key, sizeof(s->tags[at].key), "%s", tags[i].key);
		snprintf(s->tags[at].value, sizeof(s->tags[at].value), "%s", tags[i].value);
		s->ntags++;
	}
	rc = commit(c, pos, s);
	s = NULL;
	if (rc < 0)
		firn_err_wrap(rc, "tag stream '%s'", name);
out:
	pthread_mutex_unlock(&c->lock);
	firn_stream_info_free(s);
	return rc;
}

int
firn_catalog_untag(struct firn_catalog *c, const char *name, const char *const *keys, uint32_t n)
{
	struct firn_stream_info *s = NULL;
	uint32_t pos, at;
	int rc;

	if (n > 0 && keys == NULL)
		return firn_err_set(-EINVAL, "stream '%s': no tag keys given", name ? name : "");
	for (uint32_t i = 0; i < n; i++) {
		if (keys[i] == NULL || keys[i][0] == '\0' ||
		    strnlen(keys[i], FIRN_TAG_KEY_MAX + 1) > FIRN_TAG_KEY_MAX)
			return firn_err_set(-EINVAL, "stream '%s': tag key %u must be 1..%u bytes",
			                    name ? name : "", i, FIRN_TAG_KEY_MAX);
	}
	pthread_mutex_lock(&c->lock);
	rc = lookup(c, name, &pos);
	if (rc < 0)
		goto out;
	rc = edit_copy(c, pos, &s);
	if (rc < 0)
		goto out;
	/* Keys that are not there are ignored, as RemoveTagsFromStream does. */
	for (uint32_t i = 0; i < n; i++) {
		if (!tag_find(s, keys[i], &at))
			continue;
		memmove(&s->tags[at], &s->tags[at + 1], (s->ntags - at - 1) * sizeof(*s->tags));
		s->ntags--;
	}
	rc = commit(c, pos, s);
	s = NULL;
	if (rc < 0)
		firn_err_wrap(rc, "untag stream '%s'", name);
out:
	pthread_mutex_unlock(&c->lock);
	firn_stream_info_free(s);
	return rc;
}
