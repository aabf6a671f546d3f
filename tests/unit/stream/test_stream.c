/*
 * test_stream.c - unit tests for lib/stream: the catalog's operations and
 * their rules, lineage, routing, persistence and crash safety.
 *
 * Each test gets a fresh directory under $TMPDIR (or /tmp). Exact hash-range
 * boundaries were computed with Python's big integers (2**128 // n * i).
 * Routing is checked against a linear scan (the reference) on random keys
 * with a fixed seed that FIRN_TEST_SEED overrides.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_stream.h"

#define U128_MAX_DEC "340282366920938463463374607431768211455"

struct fixture {
	char dir[256];
	char path[300]; /* dir/catalog.json */
	struct firn_catalog *c;
};

static uint64_t rng_state;

static uint64_t
rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static struct firn_u128
rng_u128(void)
{
	struct firn_u128 v = {rng(), rng()};

	return v;
}

static int
setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/firn-stream-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/catalog.json", f->dir);
	f->c = firn_catalog_open(f->dir);
	if (f->c == NULL) {
		fprintf(stderr, "open: %s\n", firn_err_msg());
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	firn_catalog_close(f->c);
	firn_rm_rf(f->dir);
	free(f);
	return 0;
}

static void
reopen(struct fixture *f)
{
	firn_catalog_close(f->c);
	f->c = firn_catalog_open(f->dir);
	if (f->c == NULL)
		fail_msg("reopen: %s", firn_err_msg());
}

static struct firn_u128
dec(const char *s)
{
	struct firn_u128 v = {0, 0};

	assert_int_equal(firn_u128_parse(s, strlen(s), &v), 0);
	return v;
}

static void
assert_u128_dec(struct firn_u128 v, const char *want)
{
	char buf[FIRN_U128_DEC_SIZE];

	firn_u128_format(v, buf);
	assert_string_equal(buf, want);
}

static struct firn_stream_info *
get(struct fixture *f, const char *name)
{
	struct firn_stream_info *s = NULL;

	if (firn_catalog_get(f->c, name, &s) != 0)
		fail_msg("get %s: %s", name, firn_err_msg());
	return s;
}

static void
assert_msg_has(const char *needle)
{
	if (strstr(firn_err_msg(), needle) == NULL)
		fail_msg("error message \"%s\" lacks \"%s\"", firn_err_msg(), needle);
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static char *
read_file(const char *path)
{
	char *buf;
	size_t len;

	assert_int_equal(firn_file_read_all(path, &buf, &len), 0);
	return buf;
}

/* Everything a snapshot says, compared field by field. */
static void
assert_stream_equal(const struct firn_stream_info *a, const struct firn_stream_info *b)
{
	assert_true(a->id == b->id);
	assert_string_equal(a->name, b->name);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->retention_hours, b->retention_hours);
	assert_true(a->created_ms == b->created_ms);
	assert_int_equal(a->nshards, b->nshards);
	for (uint32_t i = 0; i < a->nshards; i++) {
		const struct firn_shard_info *x = &a->shards[i], *y = &b->shards[i];

		assert_int_equal(x->index, y->index);
		assert_int_equal(firn_u128_cmp(x->start, y->start), 0);
		assert_int_equal(firn_u128_cmp(x->end, y->end), 0);
		assert_true(x->parent == y->parent);
		assert_true(x->adjacent_parent == y->adjacent_parent);
		assert_true(x->start_counter == y->start_counter);
		assert_int_equal(x->closed, y->closed);
		assert_true(x->end_counter == y->end_counter);
		assert_int_equal(x->empty_at_close, y->empty_at_close);
		assert_true(x->created_ms == y->created_ms);
		assert_true(x->closed_ms == y->closed_ms);
	}
	assert_int_equal(a->ntags, b->ntags);
	for (uint32_t i = 0; i < a->ntags; i++) {
		assert_string_equal(a->tags[i].key, b->tags[i].key);
		assert_string_equal(a->tags[i].value, b->tags[i].value);
	}
	assert_int_equal(a->nopen, b->nopen);
	for (uint32_t i = 0; i < a->nopen; i++)
		assert_int_equal(a->open_by_start[i], b->open_by_start[i]);
}

/*
 * The invariant every stream keeps: open shards, sorted by start, tile
 * [0, 2^128-1] without gap or overlap; open_by_start lists exactly them.
 */
static void
assert_tiles(const struct firn_stream_info *s)
{
	struct firn_u128 next = {0, 0};
	uint32_t open = 0;

	for (uint32_t i = 0; i < s->nshards; i++) {
		assert_int_equal(s->shards[i].index, i);
		open += !s->shards[i].closed;
	}
	assert_int_equal(s->nopen, open);
	for (uint32_t k = 0; k < s->nopen; k++) {
		const struct firn_shard_info *sh = &s->shards[s->open_by_start[k]];

		assert_false(sh->closed);
		assert_int_equal(firn_u128_cmp(sh->start, next), 0);
		assert_true(firn_u128_cmp(sh->start, sh->end) <= 0);
		next = firn_u128_add(sh->end, firn_u128_from_u64(1));
	}
	/* The last one ended at 2^128-1, so next wrapped to 0. */
	assert_true(next.hi == 0 && next.lo == 0);
}

/* Reference router: scan every shard. */
static int
route_ref(const struct firn_stream_info *s, struct firn_u128 h)
{
	int found = -1;

	for (uint32_t i = 0; i < s->nshards; i++) {
		const struct firn_shard_info *sh = &s->shards[i];

		if (!sh->closed && firn_u128_cmp(sh->start, h) <= 0 &&
		    firn_u128_cmp(h, sh->end) <= 0) {
			assert_int_equal(found, -1); /* exactly one */
			found = (int)i;
		}
	}
	return found;
}

static void
assert_routes(const struct firn_stream_info *s, int nrandom)
{
	uint32_t got;

	for (uint32_t k = 0; k < s->nopen; k++) {
		const struct firn_shard_info *sh = &s->shards[s->open_by_start[k]];

		/* Both edges of every open range. */
		assert_int_equal(firn_stream_route(s, sh->start, &got), 0);
		assert_int_equal(got, sh->index);
		assert_int_equal(firn_stream_route(s, sh->end, &got), 0);
		assert_int_equal(got, sh->index);
	}
	for (int i = 0; i < nrandom; i++) {
		struct firn_u128 h = rng_u128();

		assert_int_equal(firn_stream_route(s, h, &got), 0);
		assert_int_equal((int)got, route_ref(s, h));
	}
}

/* ---- names, create, list, get, delete ------------------------------------------ */

static void
test_name_check(void **state)
{
	char name[FIRN_STREAM_NAME_MAX + 2];

	(void)state;
	assert_int_equal(firn_stream_name_check("clicks"), 0);
	assert_int_equal(firn_stream_name_check("a"), 0);
	assert_int_equal(firn_stream_name_check("A-b_c.9"), 0);
	assert_int_equal(firn_stream_name_check(""), -EINVAL);
	assert_int_equal(firn_stream_name_check(NULL), -EINVAL);
	assert_int_equal(firn_stream_name_check("a b"), -EINVAL);
	assert_int_equal(firn_stream_name_check("a/b"), -EINVAL);
	assert_int_equal(firn_stream_name_check("caf\xc3\xa9"), -EINVAL);
	assert_int_equal(firn_stream_name_check("x:y"), -EINVAL);
	memset(name, 'n', FIRN_STREAM_NAME_MAX);
	name[FIRN_STREAM_NAME_MAX] = '\0';
	assert_int_equal(firn_stream_name_check(name), 0);
	name[FIRN_STREAM_NAME_MAX] = 'n';
	name[FIRN_STREAM_NAME_MAX + 1] = '\0';
	assert_int_equal(firn_stream_name_check(name), -EINVAL);
	assert_string_equal(firn_stream_status_name(FIRN_STREAM_ACTIVE), "ACTIVE");
	assert_string_equal(firn_stream_status_name(FIRN_STREAM_CREATING), "CREATING");
	assert_string_equal(firn_stream_status_name(FIRN_STREAM_UPDATING), "UPDATING");
	assert_string_equal(firn_stream_status_name(FIRN_STREAM_DELETING), "DELETING");
}

static void
test_create_list_get_delete(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s;
	char **names;
	uint32_t n;
	uint64_t id1, id2, id3;

	assert_int_equal(firn_catalog_list(f->c, &names, &n), 0);
	assert_int_equal(n, 0);
	free(names);

	assert_int_equal(firn_catalog_create(f->c, "orders", 3, &id1), 0);
	assert_int_equal(firn_catalog_create(f->c, "clicks", 1, &id2), 0);
	assert_int_equal(firn_catalog_create(f->c, "views", 7, &id3), 0);
	assert_true(id1 == 1 && id2 == 2 && id3 == 3);

	assert_int_equal(firn_catalog_list(f->c, &names, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "clicks");
	assert_string_equal(names[1], "orders");
	assert_string_equal(names[2], "views");
	free(names);

	s = get(f, "orders");
	assert_true(s->id == id1);
	assert_string_equal(s->name, "orders");
	assert_int_equal(s->status, FIRN_STREAM_ACTIVE);
	assert_int_equal(s->retention_hours, FIRN_RETENTION_DEFAULT_H);
	assert_int_equal(s->nshards, 3);
	assert_int_equal(s->ntags, 0);
	assert_true(s->created_ms > 0);
	/* Exact boundaries for N = 3. */
	assert_u128_dec(s->shards[0].start, "0");
	assert_u128_dec(s->shards[0].end, "113427455640312821154458202477256070484");
	assert_u128_dec(s->shards[1].start, "113427455640312821154458202477256070485");
	assert_u128_dec(s->shards[1].end, "226854911280625642308916404954512140969");
	assert_u128_dec(s->shards[2].start, "226854911280625642308916404954512140970");
	assert_u128_dec(s->shards[2].end, U128_MAX_DEC);
	for (uint32_t i = 0; i < 3; i++) {
		assert_true(s->shards[i].parent == -1 && s->shards[i].adjacent_parent == -1);
		assert_false(s->shards[i].closed);
		assert_true(s->shards[i].start_counter == 0);
	}
	assert_tiles(s);
	firn_stream_info_free(s);

	s = get(f, "clicks");
	assert_int_equal(s->nshards, 1);
	assert_u128_dec(s->shards[0].start, "0");
	assert_u128_dec(s->shards[0].end, U128_MAX_DEC);
	firn_stream_info_free(s);

	s = get(f, "views");
	assert_u128_dec(s->shards[6].start, "291670600217947254397178234941515609816");
	assert_u128_dec(s->shards[5].end, "291670600217947254397178234941515609815");
	assert_u128_dec(s->shards[1].start, "48611766702991209066196372490252601636");
	assert_tiles(s);
	firn_stream_info_free(s);

	assert_int_equal(firn_catalog_get_by_id(f->c, id3, &s), 0);
	assert_string_equal(s->name, "views");
	firn_stream_info_free(s);
	assert_int_equal(firn_catalog_get_by_id(f->c, 99, &s), -ENOENT);

	/* Errors. */
	assert_int_equal(firn_catalog_create(f->c, "orders", 2, NULL), -EEXIST);
	assert_msg_has("stream 'orders' already exists");
	assert_int_equal(firn_catalog_create(f->c, "bad name", 1, NULL), -EINVAL);
	assert_msg_has("invalid stream name 'bad name'");
	assert_int_equal(firn_catalog_create(f->c, NULL, 1, NULL), -EINVAL);
	assert_int_equal(firn_catalog_create(f->c, "zero", 0, NULL), -EINVAL);
	assert_int_equal(firn_catalog_create(f->c, "many", FIRN_SHARDS_MAX + 1, NULL), -EINVAL);
	assert_msg_has("outside 1..10000");
	assert_int_equal(firn_catalog_get(f->c, "nope", &s), -ENOENT);
	assert_msg_has("stream 'nope' not found");
	assert_int_equal(firn_catalog_delete(f->c, "nope"), -ENOENT);
	assert_msg_has("stream 'nope' not found");

	assert_int_equal(firn_catalog_delete(f->c, "orders"), 0);
	assert_int_equal(firn_catalog_get(f->c, "orders", &s), -ENOENT);
	assert_int_equal(firn_catalog_list(f->c, &names, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "clicks");
	assert_string_equal(names[1], "views");
	assert_null(names[2]);
	free(names);
}

static void
test_create_max_shards(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s;
	uint32_t kids[2];

	assert_int_equal(firn_catalog_create(f->c, "big", FIRN_SHARDS_MAX, NULL), 0);
	s = get(f, "big");
	assert_int_equal(s->nshards, FIRN_SHARDS_MAX);
	assert_tiles(s);
	assert_routes(s, 20000);
	/* One more open shard would exceed the limit. */
	assert_int_equal(
	        firn_catalog_split(f->c, "big", 5,
	                           firn_u128_add(s->shards[5].start, firn_u128_from_u64(1)), 0,
	                           true, kids),
	        -ENOSPC);
	assert_msg_has("10000 open shards");
	firn_stream_info_free(s);
	reopen(f);
	s = get(f, "big");
	assert_int_equal(s->nshards, FIRN_SHARDS_MAX);
	assert_tiles(s);
	firn_stream_info_free(s);
}

static void
test_ids_monotonic(void **state)
{
	struct fixture *f = *state;
	uint64_t id;

	assert_int_equal(firn_catalog_create(f->c, "a", 1, &id), 0);
	assert_true(id == 1);
	assert_int_equal(firn_catalog_create(f->c, "b", 1, &id), 0);
	assert_true(id == 2);
	assert_int_equal(firn_catalog_delete(f->c, "b"), 0);
	/* A re-created name gets a new id: the store's data for id 2 is not reused. */
	assert_int_equal(firn_catalog_create(f->c, "b", 1, &id), 0);
	assert_true(id == 3);
	assert_int_equal(firn_catalog_delete(f->c, "a"), 0);
	assert_int_equal(firn_catalog_delete(f->c, "b"), 0);
	/* next_id survives even when the catalog is empty. */
	reopen(f);
	assert_int_equal(firn_catalog_create(f->c, "c", 1, &id), 0);
	assert_true(id == 4);
}

/* ---- split ------------------------------------------------------------------ */

static void
test_split(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s, *s2;
	struct firn_u128 mid, one = firn_u128_from_u64(1);
	uint32_t kids[2] = {99, 99}, got;

	assert_int_equal(firn_catalog_create(f->c, "s", 2, NULL), 0);
	s = get(f, "s");
	mid = firn_u128_add(s->shards[0].start, dec("1000"));

	/* The key must be inside (start, end]. */
	assert_int_equal(firn_catalog_split(f->c, "s", 0, s->shards[0].start, 5, false, kids),
	                 -EINVAL);
	assert_msg_has("starting hash key 0 is outside shard 0 (shardId-000000000000) of "
	               "stream 's'");
	assert_int_equal(firn_catalog_split(f->c, "s", 0, firn_u128_add(s->shards[0].end, one), 5,
	                                    false, kids),
	                 -EINVAL);
	assert_msg_has("170141183460469231731687303715884105728 is outside shard 0");
	assert_int_equal(firn_catalog_split(f->c, "s", 1, firn_u128_from_u64(5), 5, false, kids),
	                 -EINVAL);
	assert_int_equal(firn_catalog_split(f->c, "s", 2, mid, 5, false, kids), -ENOENT);
	assert_msg_has("shard 2 (shardId-000000000002) of stream 's' not found");
	assert_int_equal(firn_catalog_split(f->c, "nope", 0, mid, 5, false, kids), -ENOENT);
	assert_msg_has("stream 'nope' not found");
	assert_int_equal(kids[0], 99);

	/* Split shard 0 at start+1000: children [0, 999] and [1000, end]. */
	assert_int_equal(firn_catalog_split(f->c, "s", 0, mid, 41, false, kids), 0);
	assert_int_equal(kids[0], 2);
	assert_int_equal(kids[1], 3);
	s2 = get(f, "s");
	assert_int_equal(s2->nshards, 4);
	assert_true(s2->shards[0].closed);
	assert_true(s2->shards[0].end_counter == 41);
	assert_false(s2->shards[0].empty_at_close);
	assert_true(s2->shards[0].closed_ms >= s2->shards[0].created_ms);
	/* The parent keeps its range. */
	assert_int_equal(firn_u128_cmp(s2->shards[0].start, s->shards[0].start), 0);
	assert_int_equal(firn_u128_cmp(s2->shards[0].end, s->shards[0].end), 0);
	assert_u128_dec(s2->shards[2].start, "0");
	assert_u128_dec(s2->shards[2].end, "999");
	assert_u128_dec(s2->shards[3].start, "1000");
	assert_int_equal(firn_u128_cmp(s2->shards[3].end, s->shards[0].end), 0);
	for (int k = 2; k <= 3; k++) {
		assert_true(s2->shards[k].parent == 0);
		assert_true(s2->shards[k].adjacent_parent == -1);
		assert_false(s2->shards[k].closed);
		assert_true(s2->shards[k].start_counter == 0);
	}
	assert_tiles(s2);
	/* Routing follows: 999 -> 2, 1000 -> 3, the other half -> 1. */
	assert_int_equal(firn_stream_route(s2, dec("999"), &got), 0);
	assert_int_equal(got, 2);
	assert_int_equal(firn_stream_route(s2, dec("1000"), &got), 0);
	assert_int_equal(got, 3);
	assert_int_equal(firn_stream_route(s2, FIRN_U128_MAX, &got), 0);
	assert_int_equal(got, 1);
	assert_routes(s2, 2000);

	/* The parent is closed now. */
	assert_int_equal(firn_catalog_split(f->c, "s", 0, dec("5"), 0, true, kids), -EINVAL);
	assert_msg_has("shard 0 (shardId-000000000000) of stream 's' is closed");

	/* Edges: k = start + 1 and k = end give one-key children. */
	assert_int_equal(firn_catalog_split(f->c, "s", 2, dec("1"), 0, true, kids), 0);
	assert_int_equal(kids[0], 4);
	firn_stream_info_free(s2);
	s2 = get(f, "s");
	assert_true(s2->shards[2].empty_at_close);
	assert_u128_dec(s2->shards[4].start, "0");
	assert_u128_dec(s2->shards[4].end, "0");
	assert_u128_dec(s2->shards[5].start, "1");
	assert_u128_dec(s2->shards[5].end, "999");
	assert_int_equal(firn_catalog_split(f->c, "s", 1, FIRN_U128_MAX, 7, false, kids), 0);
	firn_stream_info_free(s2);
	s2 = get(f, "s");
	assert_u128_dec(s2->shards[kids[1]].start, U128_MAX_DEC);
	assert_u128_dec(s2->shards[kids[1]].end, U128_MAX_DEC);
	assert_int_equal(firn_stream_route(s2, FIRN_U128_MAX, &got), 0);
	assert_int_equal(got, kids[1]);
	/* A one-key shard cannot be split: no k with start < k <= end. */
	assert_int_equal(firn_catalog_split(f->c, "s", 4, dec("0"), 0, true, kids), -EINVAL);
	assert_int_equal(firn_catalog_split(f->c, "s", 4, dec("1"), 0, true, kids), -EINVAL);
	assert_tiles(s2);
	assert_routes(s2, 2000);

	/* All of it survives a restart. */
	reopen(f);
	firn_stream_info_free(s);
	s = get(f, "s");
	assert_stream_equal(s, s2);
	firn_stream_info_free(s);
	firn_stream_info_free(s2);
}

/* ---- merge ------------------------------------------------------------------ */

static void
test_merge(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s, *s2;
	const uint64_t ends[2] = {10, 20};
	const bool empty[2] = {false, true};
	uint32_t child = 99, got;

	assert_int_equal(firn_catalog_create(f->c, "m", 4, NULL), 0);

	assert_int_equal(firn_catalog_merge(f->c, "m", 2, 1, ends, empty, &child), -EINVAL);
	assert_msg_has("shards 2 and 1 of stream 'm' are not adjacent");
	assert_int_equal(firn_catalog_merge(f->c, "m", 0, 2, ends, empty, &child), -EINVAL);
	assert_int_equal(firn_catalog_merge(f->c, "m", 3, 0, ends, empty, &child), -EINVAL);
	assert_int_equal(firn_catalog_merge(f->c, "m", 1, 1, ends, empty, &child), -EINVAL);
	assert_msg_has("with itself");
	assert_int_equal(firn_catalog_merge(f->c, "m", 1, 4, ends, empty, &child), -ENOENT);
	assert_msg_has("shard 4 (shardId-000000000004) of stream 'm' not found");
	assert_int_equal(firn_catalog_merge(f->c, "nope", 1, 2, ends, empty, &child), -ENOENT);
	assert_int_equal(firn_catalog_merge(f->c, "m", 1, 2, NULL, empty, &child), -EINVAL);
	assert_int_equal(child, 99);

	assert_int_equal(firn_catalog_merge(f->c, "m", 1, 2, ends, empty, &child), 0);
	assert_int_equal(child, 4);
	s = get(f, "m");
	assert_int_equal(s->nshards, 5);
	assert_true(s->shards[1].closed && s->shards[2].closed);
	assert_true(s->shards[1].end_counter == 10);
	assert_false(s->shards[1].empty_at_close);
	assert_true(s->shards[2].empty_at_close);
	assert_int_equal(firn_u128_cmp(s->shards[4].start, s->shards[1].start), 0);
	assert_int_equal(firn_u128_cmp(s->shards[4].end, s->shards[2].end), 0);
	assert_true(s->shards[4].parent == 1);
	assert_true(s->shards[4].adjacent_parent == 2);
	assert_tiles(s);
	assert_int_equal(firn_stream_route(s, s->shards[1].start, &got), 0);
	assert_int_equal(got, 4);
	assert_int_equal(firn_stream_route(s, s->shards[2].end, &got), 0);
	assert_int_equal(got, 4);
	assert_routes(s, 2000);

	/* Closed shards cannot be merged again. */
	assert_int_equal(firn_catalog_merge(f->c, "m", 0, 1, ends, empty, &child), -EINVAL);
	assert_msg_has("shard 1 (shardId-000000000001) of stream 'm' is closed");
	/* The child merges on with its neighbours; last shard ends at 2^128-1. */
	assert_int_equal(firn_catalog_merge(f->c, "m", 4, 3, ends, empty, &child), 0);
	assert_int_equal(child, 5);
	assert_int_equal(firn_catalog_merge(f->c, "m", 0, 5, ends, empty, NULL), 0);
	s2 = get(f, "m");
	assert_int_equal(s2->nopen, 1);
	assert_u128_dec(s2->shards[6].start, "0");
	assert_u128_dec(s2->shards[6].end, U128_MAX_DEC);
	assert_true(s2->shards[6].parent == 0 && s2->shards[6].adjacent_parent == 5);
	assert_tiles(s2);
	assert_routes(s2, 100);
	reopen(f);
	firn_stream_info_free(s);
	s = get(f, "m");
	assert_stream_equal(s, s2);
	firn_stream_info_free(s);
	firn_stream_info_free(s2);
}

/* ---- reshard ------------------------------------------------------------------ */

/* Check the reshard lineage rule for every new shard (indexes >= first_new). */
static void
assert_reshard_lineage(const struct firn_stream_info *s, uint32_t first_new)
{
	for (uint32_t i = first_new; i < s->nshards; i++) {
		const struct firn_shard_info *n = &s->shards[i], *p, *a;

		assert_false(n->closed);
		assert_true(n->parent >= 0 && n->parent < first_new);
		p = &s->shards[n->parent];
		/* The parent was open until this reshard and held the new start. */
		assert_true(p->closed);
		assert_true(firn_u128_cmp(p->start, n->start) <= 0 &&
		            firn_u128_cmp(n->start, p->end) <= 0);
		if (firn_u128_cmp(p->end, n->end) < 0) {
			assert_true(n->adjacent_parent >= 0 && n->adjacent_parent < first_new);
			a = &s->shards[n->adjacent_parent];
			assert_int_equal(firn_u128_cmp(firn_u128_add(p->end, firn_u128_from_u64(1)),
			                               a->start),
			                 0);
		} else {
			assert_true(n->adjacent_parent == -1);
		}
	}
}

static void
test_reshard_uniform(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s, *s2;
	uint64_t ends[16];
	bool empty[16];
	uint32_t kids[2];

	for (int i = 0; i < 16; i++) {
		ends[i] = 100 + (uint64_t)i;
		empty[i] = (i % 3) == 0;
	}
	assert_int_equal(firn_catalog_create(f->c, "r", 4, NULL), 0);
	assert_int_equal(firn_catalog_reshard_uniform(f->c, "r", 0, ends, empty), -EINVAL);
	assert_int_equal(firn_catalog_reshard_uniform(f->c, "r", FIRN_SHARDS_MAX + 1, ends, empty),
	                 -EINVAL);
	assert_int_equal(firn_catalog_reshard_uniform(f->c, "r", 2, NULL, empty), -EINVAL);
	assert_int_equal(firn_catalog_reshard_uniform(f->c, "nope", 2, ends, empty), -ENOENT);
	assert_msg_has("stream 'nope' not found");

	/* Make the open set uneven first: split shard 1 (its children are 4, 5). */
	s = get(f, "r");
	assert_int_equal(firn_catalog_split(f->c, "r", 1,
	                                    firn_u128_add(s->shards[1].start, dec("12345")), 1,
	                                    false, kids),
	                 0);
	firn_stream_info_free(s);

	/* Open now: 0, 2, 3, 4, 5 in index order, which is the seal-info order. */
	assert_int_equal(firn_catalog_reshard_uniform(f->c, "r", 3, ends, empty), 0);
	s = get(f, "r");
	assert_int_equal(s->nshards, 9);
	assert_int_equal(s->nopen, 3);
	{
		const uint32_t old_open[5] = {0, 2, 3, 4, 5};

		for (int j = 0; j < 5; j++) {
			const struct firn_shard_info *o = &s->shards[old_open[j]];

			assert_true(o->closed);
			assert_int_equal(o->empty_at_close, empty[j]);
			if (!empty[j])
				assert_true(o->end_counter == ends[j]);
		}
	}
	/* The new shards are exactly the uniform 3-way cut. */
	assert_u128_dec(s->shards[6].start, "0");
	assert_u128_dec(s->shards[6].end, "113427455640312821154458202477256070484");
	assert_u128_dec(s->shards[7].start, "113427455640312821154458202477256070485");
	assert_u128_dec(s->shards[8].end, U128_MAX_DEC);
	/*
	 * Old layout (quarters, with quarter 1 split into 4 | 5):
	 * new 6 = [0, 1/3) starts in 0, reaches into 4   -> parent 0, adjacent 4
	 * new 7 = [1/3, 2/3) starts in 5, reaches into 2 -> parent 5, adjacent 2
	 * new 8 = [2/3, 1] starts in 2, reaches into 3   -> parent 2, adjacent 3
	 */
	assert_true(s->shards[6].parent == 0 && s->shards[6].adjacent_parent == 4);
	assert_true(s->shards[7].parent == 5 && s->shards[7].adjacent_parent == 2);
	assert_true(s->shards[8].parent == 2 && s->shards[8].adjacent_parent == 3);
	assert_reshard_lineage(s, 6);
	assert_tiles(s);
	assert_routes(s, 2000);

	/* Up: 3 -> 6; each new shard lies within one old third or straddles two. */
	assert_int_equal(firn_catalog_reshard_uniform(f->c, "r", 6, ends, empty), 0);
	firn_stream_info_free(s);
	s = get(f, "r");
	assert_int_equal(s->nopen, 6);
	assert_reshard_lineage(s, 9);
	assert_true(s->shards[9].parent == 6 && s->shards[9].adjacent_parent == -1);
	assert_tiles(s);
	assert_routes(s, 2000);

	/* Down to 1: parent is the first old shard, adjacent the second. */
	assert_int_equal(firn_catalog_reshard_uniform(f->c, "r", 1, ends, empty), 0);
	firn_stream_info_free(s);
	s = get(f, "r");
	assert_int_equal(s->nopen, 1);
	assert_true(s->shards[15].parent == 9 && s->shards[15].adjacent_parent == 10);
	assert_reshard_lineage(s, 15);
	assert_tiles(s);

	reopen(f);
	s2 = get(f, "r");
	assert_stream_equal(s, s2);
	firn_stream_info_free(s);
	firn_stream_info_free(s2);
}

/* ---- routing -------------------------------------------------------------------- */

static void
test_route_random_reshards(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s;
	uint64_t ends[2] = {1, 2};
	bool empty[2] = {false, false};
	uint32_t kids[2], child;

	assert_int_equal(firn_catalog_create(f->c, "rt", 20, NULL), 0);
	for (int step = 0; step < 60; step++) {
		s = get(f, "rt");
		if (rng() % 3 != 0 || s->nopen < 2) {
			/* Split a random open shard wide enough to split. */
			uint32_t k = s->open_by_start[rng() % s->nopen];
			const struct firn_shard_info *sh = &s->shards[k];
			struct firn_u128 width = firn_u128_sub(sh->end, sh->start);

			if (width.hi != 0 || width.lo > 1) {
				/* start + 1 + (something below width). */
				struct firn_u128 off =
				        width.hi ? (struct firn_u128){rng() % width.hi, rng()}
				                 : firn_u128_from_u64(rng() % width.lo);
				struct firn_u128 at =
				        firn_u128_add(sh->start, firn_u128_from_u64(1));

				at = firn_u128_add(at, off);
				if (firn_catalog_split(f->c, "rt", k, at, 0, true, kids) != 0)
					fail_msg("split: %s", firn_err_msg());
			}
		} else {
			/* Merge two neighbours in hash order. */
			uint32_t j = (uint32_t)(rng() % (s->nopen - 1));

			if (firn_catalog_merge(f->c, "rt", s->open_by_start[j],
			                       s->open_by_start[j + 1], ends, empty, &child) != 0)
				fail_msg("merge: %s", firn_err_msg());
		}
		firn_stream_info_free(s);
		s = get(f, "rt");
		assert_tiles(s);
		assert_routes(s, 300);
		firn_stream_info_free(s);
	}
	/* A hand-built snapshot without the sorted view still routes (by scanning). */
	s = get(f, "rt");
	{
		struct firn_stream_info copy = *s;
		struct firn_u128 h;
		uint32_t a, b;

		copy.open_by_start = NULL;
		for (int i = 0; i < 1000; i++) {
			h = rng_u128();
			assert_int_equal(firn_stream_route(s, h, &a), 0);
			assert_int_equal(firn_stream_route(&copy, h, &b), 0);
			assert_int_equal(a, b);
		}
	}
	firn_stream_info_free(s);
}

/* ---- retention, status, tags, version ---------------------------------------------- */

static void
test_retention_status(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s;

	assert_int_equal(firn_catalog_create(f->c, "ret", 1, NULL), 0);
	assert_int_equal(firn_catalog_set_retention(f->c, "ret", FIRN_RETENTION_MIN_H - 1),
	                 -EINVAL);
	assert_msg_has("outside 24..8760");
	assert_int_equal(firn_catalog_set_retention(f->c, "ret", FIRN_RETENTION_MAX_H + 1),
	                 -EINVAL);
	assert_int_equal(firn_catalog_set_retention(f->c, "ret", 0), -EINVAL);
	assert_int_equal(firn_catalog_set_retention(f->c, "nope", 48), -ENOENT);
	assert_int_equal(firn_catalog_set_retention(f->c, "ret", FIRN_RETENTION_MAX_H), 0);
	s = get(f, "ret");
	assert_int_equal(s->retention_hours, FIRN_RETENTION_MAX_H);
	firn_stream_info_free(s);
	assert_int_equal(firn_catalog_set_retention(f->c, "ret", FIRN_RETENTION_MIN_H), 0);
	assert_int_equal(firn_catalog_set_retention(f->c, "ret", 168), 0);

	assert_int_equal(firn_catalog_set_status(f->c, "ret", FIRN_STREAM_UPDATING), 0);
	assert_int_equal(firn_catalog_set_status(f->c, "ret", (enum firn_stream_status)9), -EINVAL);
	assert_int_equal(firn_catalog_set_status(f->c, "nope", FIRN_STREAM_ACTIVE), -ENOENT);
	reopen(f);
	s = get(f, "ret");
	assert_int_equal(s->retention_hours, 168);
	assert_int_equal(s->status, FIRN_STREAM_UPDATING);
	firn_stream_info_free(s);
}

static void
test_tags(void **state)
{
	struct fixture *f = *state;
	struct firn_tag tags[FIRN_TAGS_MAX + 1], t;
	struct firn_stream_info *s;
	const char *keys[3];

	memset(tags, 0, sizeof(tags));
	assert_int_equal(firn_catalog_create(f->c, "tg", 1, NULL), 0);
	/* 50 tags, given in reverse order; stored sorted by key. */
	for (int i = 0; i < FIRN_TAGS_MAX; i++) {
		snprintf(tags[i].key, sizeof(tags[i].key), "k%02d", FIRN_TAGS_MAX - 1 - i);
		snprintf(tags[i].value, sizeof(tags[i].value), "v%d", i);
	}
	assert_int_equal(firn_catalog_tag(f->c, "tg", tags, FIRN_TAGS_MAX), 0);
	s = get(f, "tg");
	assert_int_equal(s->ntags, FIRN_TAGS_MAX);
	assert_string_equal(s->tags[0].key, "k00");
	assert_string_equal(s->tags[0].value, "v49");
	assert_string_equal(s->tags[49].key, "k49");
	firn_stream_info_free(s);

	/* A 51st key is refused and nothing changes; overwriting at 50 is fine. */
	memset(&t, 0, sizeof(t));
	snprintf(t.key, sizeof(t.key), "extra");
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), -EINVAL);
	assert_msg_has("more than 50 tags");
	snprintf(t.key, sizeof(t.key), "k07");
	snprintf(t.value, sizeof(t.value), "new");
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), 0);
	s = get(f, "tg");
	assert_int_equal(s->ntags, FIRN_TAGS_MAX);
	assert_string_equal(s->tags[7].value, "new");
	firn_stream_info_free(s);

	/* Untag: present keys go, absent ones are ignored. */
	keys[0] = "k07";
	keys[1] = "absent";
	keys[2] = "k00";
	assert_int_equal(firn_catalog_untag(f->c, "tg", keys, 3), 0);
	s = get(f, "tg");
	assert_int_equal(s->ntags, FIRN_TAGS_MAX - 2);
	assert_string_equal(s->tags[0].key, "k01");
	firn_stream_info_free(s);
	keys[0] = "";
	assert_int_equal(firn_catalog_untag(f->c, "tg", keys, 1), -EINVAL);
	assert_int_equal(firn_catalog_untag(f->c, "nope", keys + 1, 1), -ENOENT);

	/* Limits: key 1..128, value 0..256 bytes, UTF-8. */
	memset(&t, 0, sizeof(t));
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), -EINVAL); /* empty key */
	memset(t.key, 'k', FIRN_TAG_KEY_MAX);
	memset(t.value, 'v', FIRN_TAG_VALUE_MAX);
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), 0);
	t.key[FIRN_TAG_KEY_MAX] = 'k'; /* 129 bytes, unterminated within the field */
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), -EINVAL);
	t.key[FIRN_TAG_KEY_MAX] = '\0';
	t.value[FIRN_TAG_VALUE_MAX] = 'v';
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), -EINVAL);
	memset(&t, 0, sizeof(t));
	snprintf(t.key, sizeof(t.key), "empty-value");
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), 0);
	/* That made 50 again; free a slot for a UTF-8 key. */
	keys[0] = "k01";
	assert_int_equal(firn_catalog_untag(f->c, "tg", keys, 1), 0);
	snprintf(t.key, sizeof(t.key), "caf\xc3\xa9");
	snprintf(t.value, sizeof(t.value), "\xe2\x82\xac");
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), 0);
	snprintf(t.value, sizeof(t.value), "bad\xc3");
	assert_int_equal(firn_catalog_tag(f->c, "tg", &t, 1), -EINVAL);
	assert_int_equal(firn_catalog_tag(f->c, "nope", tags, 1), -ENOENT);
	assert_int_equal(firn_catalog_tag(f->c, "tg", NULL, 1), -EINVAL);

	s = get(f, "tg");
	reopen(f);
	{
		struct firn_stream_info *s2 = get(f, "tg");

		assert_int_equal(s2->ntags, FIRN_TAGS_MAX);
		assert_stream_equal(s, s2);
		firn_stream_info_free(s2);
	}
	firn_stream_info_free(s);
}

static void
test_version(void **state)
{
	struct fixture *f = *state;
	uint64_t v0 = firn_catalog_version(f->c), v;
	const uint64_t ends[2] = {0, 0};
	const bool empty[2] = {true, true};
	struct firn_tag t = {"k", "v"};
	const char *key = "k";
	uint32_t kids[2];

	assert_int_equal(firn_catalog_create(f->c, "v", 2, NULL), 0);
	v = firn_catalog_version(f->c);
	assert_true(v > v0);
#define CHANGED(expr)                                                                              \
	do {                                                                                       \
		assert_int_equal((expr), 0);                                                       \
		assert_true(firn_catalog_version(f->c) > v);                                       \
		v = firn_catalog_version(f->c);                                                    \
	} while (0)
#define UNCHANGED(expr)                                                                            \
	do {                                                                                       \
		assert_true((expr) < 0);                                                           \
		assert_true(firn_catalog_version(f->c) == v);                                      \
	} while (0)
	CHANGED(firn_catalog_split(f->c, "v", 0, dec("77"), 0, true, kids));
	CHANGED(firn_catalog_merge(f->c, "v", kids[1], 1, ends, empty, NULL));
	CHANGED(firn_catalog_reshard_uniform(f->c, "v", 3, ends, empty));
	CHANGED(firn_catalog_set_retention(f->c, "v", 48));
	CHANGED(firn_catalog_set_status(f->c, "v", FIRN_STREAM_ACTIVE));
	CHANGED(firn_catalog_tag(f->c, "v", &t, 1));
	CHANGED(firn_catalog_untag(f->c, "v", &key, 1));
	UNCHANGED(firn_catalog_create(f->c, "v", 2, NULL));
	UNCHANGED(firn_catalog_split(f->c, "v", 0, dec("5"), 0, true, kids));
	UNCHANGED(firn_catalog_set_retention(f->c, "v", 1));
	UNCHANGED(firn_catalog_delete(f->c, "x"));
	CHANGED(firn_catalog_delete(f->c, "v"));
#undef CHANGED
#undef UNCHANGED
}

/* ---- crash safety --------------------------------------------------------------- */

static void
test_leftover_tmp_ignored(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *s;
	char tmp[320];

	assert_int_equal(firn_catalog_create(f->c, "keep", 2, NULL), 0);
	firn_catalog_close(f->c);
	f->c = NULL;
	/* A crash between writing the temp file and the rename leaves this behind. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
	write_file(tmp, "{\"format\": 1, \"next_id\": 9, \"streams\": [ {\"trunc");
	reopen(f);
	s = get(f, "keep");
	assert_int_equal(s->nshards, 2);
	firn_stream_info_free(s);
	/* The next write replaces it and the catalog stays readable. */
	assert_int_equal(firn_catalog_create(f->c, "more", 1, NULL), 0);
	reopen(f);
	s = get(f, "more");
	assert_true(s->id == 2);
	firn_stream_info_free(s);
}

static void
expect_corrupt(struct fixture *f, const char *text, const char *needle)
{
	struct firn_catalog *c;

	write_file(f->path, text);
	firn_err_clear();
	c = firn_catalog_open(f->dir);
	if (c != NULL) {
		firn_catalog_close(c);
		fail_msg("opened a corrupt catalog (%s)", needle);
	}
	assert_msg_has("catalog.json");
	assert_msg_has(needle);
}

static void
test_corrupt_catalog(void **state)
{
	struct fixture *f = *state;
	char *good, *bad;
	size_t len;
	const char *p;

	assert_int_equal(firn_catalog_create(f->c, "x", 2, NULL), 0);
	firn_catalog_close(f->c);
	f->c = NULL;
	good = read_file(f->path);
	len = strlen(good);

	expect_corrupt(f, "", "corrupt");
	expect_corrupt(f, "not json", "corrupt");
	/* A torn write (cannot happen with the atomic rename, but a disk can lie). */
	bad = strdup(good);
	bad[len / 2] = '\0';
	expect_corrupt(f, bad, "corrupt");
	free(bad);
	expect_corrupt(f, "[]", "corrupt");
	expect_corrupt(f, "{\"format\": 2, \"next_id\": 1, \"streams\": []}", "format 2");
	expect_corrupt(f, "{\"format\": 1, \"next_id\": 0, \"streams\": []}", "next_id");
	expect_corrupt(f, "{\"format\": 1, \"next_id\": 1, \"streams\": {}}", "streams");
	expect_corrupt(f, "{\"format\": 1, \"format\": 1, \"next_id\": 1, \"streams\": []}",
	               "corrupt");

	/* Surgical damage to the good file. */
#define MUTATE(from, to, needle)                                                                   \
	do {                                                                                       \
		char *m = strdup(good);                                                            \
		char *at = strstr(m, from);                                                        \
		char *out;                                                                         \
		size_t outlen;                                                                     \
		assert_non_null(at);                                                               \
		outlen = strlen(m) - strlen(from) + strlen(to) + 1;                                \
		out = malloc(outlen);                                                              \
		snprintf(out, outlen, "%.*s%s%s", (int)(at - m), m, to, at + strlen(from));        \
		expect_corrupt(f, out, needle);                                                    \
		free(out);                                                                         \
		free(m);                                                                           \
	} while (0)
	/* The first shard's start moved: a gap at 0. */
	MUTATE("\"start\": \"0\"", "\"start\": \"5\"", "do not tile");
	MUTATE("\"start\": \"0\"", "\"start\": \"zero\"", "is not a number");
	MUTATE("\"end\": \"340282366920938463463374607431768211455\"",
	       "\"end\": \"340282366920938463463374607431768211456\"", "is not a number");
	MUTATE("\"end\": \"340282366920938463463374607431768211455\"",
	       "\"end\": \"340282366920938463463374607431768211454\"", "reach");
	MUTATE("\"status\": \"ACTIVE\"", "\"status\": \"SLEEPY\"", "unknown status");
	MUTATE("\"name\": \"x\"", "\"name\": \"x y\"", "invalid name");
	MUTATE("\"retention_hours\": 24", "\"retention_hours\": 2", "retention");
	MUTATE("\"parent\": -1", "\"parent\": 0", "bad parent");
	MUTATE("\"index\": 1", "\"index\": 7", "index 7");
	MUTATE("\"next_id\": 2", "\"next_id\": 1", "next_id is 1");
	MUTATE("\"closed\": false", "\"closed\": \"no\"", "closed");
	MUTATE("\"end_counter\": \"0\"", "\"end_counter\": \"-1\"", "end_counter");
#undef MUTATE

	/* Every truncation of the good file is refused cleanly, never a crash. */
	for (size_t cut = 0; cut < len; cut += 7) {
		struct firn_catalog *c;

		bad = strdup(good);
		bad[cut] = '\0';
		write_file(f->path, bad);
		c = firn_catalog_open(f->dir);
		p = firn_err_msg();
		assert_null(c);
		assert_non_null(strstr(p, "catalog.json"));
		free(bad);
	}

	/* Put the good file back and it opens again. */
	write_file(f->path, good);
	free(good);
	reopen(f);
	{
		struct firn_stream_info *s = get(f, "x");

		assert_int_equal(s->nshards, 2);
		firn_stream_info_free(s);
	}
}

/*
 * A failed write (here: the temp file's name is taken by a directory, so
 * creating it fails) must leave the catalog exactly as before, in memory
 * and on disk.
 */
static void
test_failed_write_rolls_back(void **state)
{
	struct fixture *f = *state;
	struct firn_stream_info *before, *after;
	const uint64_t ends[2] = {3, 4};
	const bool empty[2] = {false, false};
	struct firn_tag t = {"k", "v"};
	char tmp[320], *disk;
	uint32_t kids[2], n;
	char **names;
	uint64_t v, id;

	assert_int_equal(firn_catalog_create(f->c, "rb", 2, NULL), 0);
	before = get(f, "rb");
	disk = read_file(f->path);
	v = firn_catalog_version(f->c);
	snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
	assert_int_equal(mkdir(tmp, 0755), 0);

	assert_true(firn_catalog_create(f->c, "new", 1, NULL) < 0);
	assert_msg_has("create stream 'new'");
	assert_true(firn_catalog_split(f->c, "rb", 0, dec("9"), 1, false, kids) < 0);
	assert_true(firn_catalog_merge(f->c, "rb", 0, 1, ends, empty, NULL) < 0);
	assert_true(firn_catalog_reshard_uniform(f->c, "rb", 5, ends, empty) < 0);
	assert_true(firn_catalog_set_retention(f->c, "rb", 100) < 0);
	assert_true(firn_catalog_tag(f->c, "rb", &t, 1) < 0);
	assert_true(firn_catalog_delete(f->c, "rb") < 0);
	assert_true(firn_catalog_version(f->c) == v);

	after = get(f, "rb");
	assert_stream_equal(before, after);
	firn_stream_info_free(after);
	assert_int_equal(firn_catalog_list(f->c, &names, &n), 0);
	assert_int_equal(n, 1);
	free(names);
	{
		char *disk2 = read_file(f->path);

		assert_string_equal(disk, disk2);
		free(disk2);
	}

	/* Once writes work again, the id of the failed create was not burnt. */
	assert_int_equal(rmdir(tmp), 0);
	assert_int_equal(firn_catalog_create(f->c, "new", 1, &id), 0);
	assert_true(id == 2);
	reopen(f);
	after = get(f, "rb");
	assert_stream_equal(before, after);
	firn_stream_info_free(after);
	firn_stream_info_free(before);
	free(disk);
}

static void
test_open_errors(void **state)
{
	struct fixture *f = *state;
	char path[320];

	assert_null(firn_catalog_open(""));
	assert_null(firn_catalog_open(NULL));
	/* The directory is a file. */
	snprintf(path, sizeof(path), "%s/file", f->dir);
	write_file(path, "x");
	assert_null(firn_catalog_open(path));
	assert_msg_has(path);
	/* A fresh nested directory is created. */
	snprintf(path, sizeof(path), "%s/a/b/c", f->dir);
	{
		struct firn_catalog *c = firn_catalog_open(path);

		assert_non_null(c);
		assert_int_equal(firn_catalog_create(c, "n", 1, NULL), 0);
		firn_catalog_close(c);
	}
	snprintf(path, sizeof(path), "%s/a/b/c/catalog.json", f->dir);
	assert_int_equal(access(path, R_OK), 0);
}

/* ---- threads ------------------------------------------------------------------- */

struct worker {
	struct firn_catalog *c;
	char prefix;
	int rc;
};

static void *
creator(void *arg)
{
	struct worker *w = arg;
	char name[16];

	for (int i = 0; i < 40 && w->rc == 0; i++) {
		snprintf(name, sizeof(name), "%c-%d", w->prefix, i);
		w->rc = firn_catalog_create(w->c, name, 2, NULL);
		if (w->rc == 0 && i % 4 == 3) {
			snprintf(name, sizeof(name), "%c-%d", w->prefix, i - 1);
			w->rc = firn_catalog_delete(w->c, name);
		}
	}
	return NULL;
}

static void *
reader(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 300 && w->rc == 0; i++) {
		struct firn_stream_info *s;
		char **names;
		uint32_t n;

		w->rc = firn_catalog_list(w->c, &names, &n);
		if (w->rc != 0)
			break;
		/* A stream listed a moment ago may be gone; one that is found is whole. */
		if (n > 0 && firn_catalog_get(w->c, names[n / 2], &s) == 0) {
			if (s->nshards != 2 || s->nopen != 2)
				w->rc = -EIO;
			firn_stream_info_free(s);
		}
		free(names);
		(void)firn_catalog_version(w->c);
	}
	return NULL;
}

static void
test_concurrent(void **state)
{
	struct fixture *f = *state;
	struct worker w[3] = {{f->c, 'a', 0}, {f->c, 'b', 0}, {f->c, 'r', 0}};
	pthread_t t[3];
	bool seen[81] = {false};
	uint64_t v0 = firn_catalog_version(f->c);
	char **names;
	uint32_t n;

	assert_int_equal(pthread_create(&t[0], NULL, creator, &w[0]), 0);
	assert_int_equal(pthread_create(&t[1], NULL, creator, &w[1]), 0);
	assert_int_equal(pthread_create(&t[2], NULL, reader, &w[2]), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(w[i].rc, 0);
	/* 2 x 40 creates, 2 x 10 deletes; every change counted once. */
	assert_true(firn_catalog_version(f->c) - v0 == 100);
	reopen(f);
	assert_int_equal(firn_catalog_list(f->c, &names, &n), 0);
	assert_int_equal(n, 60);
	/* Ids are unique and within 1..80, whatever the interleaving. */
	for (uint32_t i = 0; i < n; i++) {
		struct firn_stream_info *s = get(f, names[i]);

		assert_true(s->id >= 1 && s->id <= 80);
		assert_false(seen[s->id]);
		seen[s->id] = true;
		firn_stream_info_free(s);
	}
	free(names);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_name_check),
	        T(test_create_list_get_delete),
	        T(test_create_max_shards),
	        T(test_ids_monotonic),
	        T(test_split),
	        T(test_merge),
	        T(test_reshard_uniform),
	        T(test_route_random_reshards),
	        T(test_retention_status),
	        T(test_tags),
	        T(test_version),
	        T(test_leftover_tmp_ignored),
	        T(test_corrupt_catalog),
	        T(test_failed_write_rolls_back),
	        T(test_open_errors),
	        T(test_concurrent),
	};
#undef T
	const char *seed = getenv("FIRN_TEST_SEED");
	uint64_t s = 0x5eed;

	if (seed != NULL && firn_parse_u64(seed, &s) < 0) {
		fprintf(stderr, "FIRN_TEST_SEED must be a number\n");
		return 1;
	}
	rng_state = s;
	return cmocka_run_group_tests_name("stream", tests, NULL, NULL) ? 1 : 0;
}
