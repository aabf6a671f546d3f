/*
 * catalog_json.c - the catalog on disk.
 *
 * The whole catalog is one small JSON document, rewritten in full and
 * replaced atomically (write catalog.json.tmp, fsync, rename, fsync the
 * directory) on every change. Changes are rare control-plane events and the
 * file is small, so rewriting it is simpler and safer than any journal: after
 * a crash the file is the state before or after the change, whole. A leftover
 * catalog.json.tmp from a crash before the rename is never read (the next
 * write truncates it).
 *
 *	{
 *	 "format": 1,
 *	 "next_id": 3,
 *	 "streams": [
 *	  {"id": 1, "name": "clicks", "status": "ACTIVE", "retention_hours": 24,
 *	   "created_ms": 1700000000000,
 *	   "shards": [
 *	    {"index": 0, "start": "0", "end": "340282366920938463463374607431768211455",
 *	     "parent": -1, "adjacent_parent": -1, "start_counter": "0", "closed": false,
 *	     "end_counter": "0", "empty_at_close": false, "created_ms": ..., "closed_ms": 0}
 *	   ],
 *	   "tags": {"team": "web"}}
 *	 ]
 *	}
 *
 * 128-bit hash keys and 64-bit counters are decimal strings: JSON numbers
 * lose precision above 2^53 in most readers and jansson stops at 2^63-1.
 * Loading is strict (types, ranges, and stream_check() on each stream) and
 * names what is wrong, because a corrupt catalog must stop the daemon with a
 * message an operator can act on, not route records into the wrong shards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "firn_common.h"
#include "stream_private.h"

/* ---- load ---------------------------------------------------------------- */

/*
 * Typed field getters. Each names the file, the place ("stream 'x' shard
 * #3") and the field in its message, so an operator can find the damage.
 */
struct where {
	const char *path;
	const char *what; /* "stream #2", "stream 'x' shard #3" */
};

static int FIRN_PRINTF(3, 4) field_err(const struct where *w, const char *key, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return firn_err_set(-EINVAL, "catalog %s: %s: field \"%s\" %s", w->path, w->what, key, why);
}

static int
get_int(const struct where *w, json_t *obj, const char *key, json_int_t min, json_int_t max,
        json_int_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return field_err(w, key, "is missing");
	if (!json_is_integer(v))
		return field_err(w, key, "must be an integer");
	if (json_integer_value(v) < min || json_integer_value(v) > max)
		return field_err(w, key, "is %lld, outside %lld..%lld",
		                 (long long)json_integer_value(v), (long long)min, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

static int
get_str(const struct where *w, json_t *obj, const char *key, const char **out)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return field_err(w, key, "is missing");
	if (!json_is_string(v))
		return field_err(w, key, "must be a string");
	*out = json_string_value(v);
	return 0;
}

static int
get_bool(const struct where *w, json_t *obj, const char *key, bool *out)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return field_err(w, key, "is missing");
	if (!json_is_boolean(v))
		return field_err(w, key, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int
get_u128(const struct where *w, json_t *obj, const char *key, struct firn_u128 *out)
{
	const char *str;
	int rc = get_str(w, obj, key, &str);

	if (rc == 0 && firn_u128_parse(str, strlen(str), out) < 0)
		rc = field_err(w, key, "\"%.60s\" is not a number in 0..2^128-1", str);
	return rc;
}

static int
get_u64(const struct where *w, json_t *obj, const char *key, uint64_t *out)
{
	const char *str;
	int rc = get_str(w, obj, key, &str);

	if (rc == 0 && firn_parse_u64(str, out) < 0)
		rc = field_err(w, key, "\"%.60s\" is not a number in 0..2^64-1", str);
	return rc;
}

static int
load_shard(const char *path, const char *sname, uint32_t pos, json_t *js,
           struct firn_shard_info *sh)
{
	const json_int_t imax = FIRN_SHARD_INDEX_MAX;
	json_int_t index, parent, adj, created_ms, closed_ms;
	char what[FIRN_STREAM_NAME_MAX + 40];
	struct where w = {path, what};
	int rc;

	snprintf(what, sizeof(what), "stream '%s' shard #%u", sname, pos);
	if (!json_is_object(js))
		return firn_err_set(-EINVAL, "catalog %s: %s is not an object", path, what);
	memset(sh, 0, sizeof(*sh));
	if ((rc = get_int(&w, js, "index", 0, imax, &index)) < 0 ||
	    (rc = get_u128(&w, js, "start", &sh->start)) < 0 ||
	    (rc = get_u128(&w, js, "end", &sh->end)) < 0 ||
	    (rc = get_int(&w, js, "parent", -1, imax, &parent)) < 0 ||
	    (rc = get_int(&w, js, "adjacent_parent", -1, imax, &adj)) < 0 ||
	    (rc = get_u64(&w, js, "start_counter", &sh->start_counter)) < 0 ||
	    (rc = get_bool(&w, js, "closed", &sh->closed)) < 0 ||
	    (rc = get_u64(&w, js, "end_counter", &sh->end_counter)) < 0 ||
	    (rc = get_bool(&w, js, "empty_at_close", &sh->empty_at_close)) < 0 ||
	    (rc = get_int(&w, js, "created_ms", INT64_MIN, INT64_MAX, &created_ms)) < 0 ||
	    (rc = get_int(&w, js, "closed_ms", INT64_MIN, INT64_MAX, &closed_ms)) < 0)
		return rc;
	sh->index = (uint32_t)index;
	sh->parent = parent;
	sh->adjacent_parent = adj;
	sh->created_ms = created_ms;
	sh->closed_ms = closed_ms;
	return 0;
}

static int
tag_cmp(const void *a, const void *b)
{
	return strcmp(((const struct firn_tag *)a)->key, ((const struct firn_tag *)b)->key);
}

static int
load_tags(const char *path, struct firn_stream_info *s, json_t *jt)
{
	const char *key;
	json_t *val;
	size_t n = json_object_size(jt);

	if (n > FIRN_TAGS_MAX)
		return firn_err_set(-EINVAL, "catalog %s: stream '%s' has %zu tags (max %u)", path,
		                    s->name, n, FIRN_TAGS_MAX);
	s->tags = calloc(n + 1, sizeof(*s->tags));
	if (s->tags == NULL)
		return firn_err_set(-ENOMEM, "catalog %s: out of memory", path);
	json_object_foreach(jt, key, val)
	{
		struct firn_tag *t = &s->tags[s->ntags];
		const char *v = json_string_value(val);

		if (v == NULL || strlen(key) > FIRN_TAG_KEY_MAX || strlen(v) > FIRN_TAG_VALUE_MAX)
			return firn_err_set(
			        -EINVAL,
			        "catalog %s: stream '%s': tag \"%.40s\" is not a string "
			        "of at most %u bytes with a key of at most %u",
			        path, s->name, key, FIRN_TAG_VALUE_MAX, FIRN_TAG_KEY_MAX);
		snprintf(t->key, sizeof(t->key), "%s", key);
		snprintf(t->value, sizeof(t->value), "%s", v);
		s->ntags++;
	}
	qsort(s->tags, s->ntags, sizeof(*s->tags), tag_cmp);
	return 0;
}

static int
load_stream(const char *path, uint32_t pos, json_t *js, struct firn_stream_info **out)
{
	json_int_t id, retention, created_ms;
	const char *name, *status;
	struct firn_stream_info *s;
	json_t *jshards, *jtags;
	char what[FIRN_STREAM_NAME_MAX + 40], why[160];
	struct where w = {path, what};
	int rc;

	snprintf(what, sizeof(what), "stream #%u", pos);
	if (!json_is_object(js))
		return firn_err_set(-EINVAL, "catalog %s: %s is not an object", path, what);
	if ((rc = get_str(&w, js, "name", &name)) < 0)
		return rc;
	if (firn_stream_name_check(name) < 0)
		return field_err(&w, "name", "is an invalid name \"%.60s\"", name);
	/* From here on, messages name the stream. */
	snprintf(what, sizeof(what), "stream '%s'", name);
	if ((rc = get_int(&w, js, "id", 1, INT64_MAX, &id)) < 0 ||
	    (rc = get_str(&w, js, "status", &status)) < 0 ||
	    (rc = get_int(&w, js, "retention_hours", FIRN_RETENTION_MIN_H, FIRN_RETENTION_MAX_H,
	                  &retention)) < 0 ||
	    (rc = get_int(&w, js, "created_ms", INT64_MIN, INT64_MAX, &created_ms)) < 0)
		return rc;
	jshards = json_object_get(js, "shards");
	if (!json_is_array(jshards) || json_array_size(jshards) == 0 ||
	    json_array_size(jshards) - 1 > FIRN_SHARD_INDEX_MAX)
		return field_err(&w, "shards", "must be a non-empty array");
	jtags = json_object_get(js, "tags");
	if (jtags != NULL && !json_is_object(jtags))
		return field_err(&w, "tags", "must be an object");

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return firn_err_set(-ENOMEM, "catalog %s: out of memory", path);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->id = (uint64_t)id;
	s->retention_hours = (uint32_t)retention;
	s->created_ms = created_ms;
	if (stream_status_parse(status, &s->status) < 0) {
		rc = field_err(&w, "status", "is an unknown status \"%.40s\"", status);
		goto fail;
	}
	s->shards = calloc(json_array_size(jshards) + 1, sizeof(*s->shards));
	if (s->shards == NULL) {
		rc = firn_err_set(-ENOMEM, "catalog %s: out of memory", path);
		goto fail;
	}
	for (size_t i = 0; i < json_array_size(jshards); i++) {
		rc = load_shard(path, name, (uint32_t)i, json_array_get(jshards, i), &s->shards[i]);
		if (rc < 0)
			goto fail;
		s->nshards++;
	}
	rc = jtags ? load_tags(path, s, jtags) : 0;
	if (rc < 0)
		goto fail;
	if (s->tags == NULL && (s->tags = calloc(1, sizeof(*s->tags))) == NULL) {
		rc = firn_err_set(-ENOMEM, "catalog %s: out of memory", path);
		goto fail;
	}
	if (stream_build_open_view(s) < 0) {
		rc = firn_err_set(-ENOMEM, "catalog %s: out of memory", path);
		goto fail;
	}
	rc = stream_check(s, why, sizeof(why));
	if (rc < 0) {
		rc = firn_err_set(-EINVAL, "catalog %s: stream '%s': %s", path, name, why);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	firn_stream_info_free(s);
	return rc;
}

static int
name_cmp(const void *a, const void *b)
{
	const struct firn_stream_info *x = *(struct firn_stream_info *const *)a;
	const struct firn_stream_info *y = *(struct firn_stream_info *const *)b;

	return strcmp(x->name, y->name);
}

/*
 * Fill an empty catalog from the text of catalog.json. On error the catalog
 * may hold some streams; the caller throws it away.
 */
int
catalog_json_load(struct firn_catalog *c, const char *buf, size_t len)
{
	struct where w = {c->path, "top level"};
	json_int_t format, next_id;
	json_t *root, *jstreams;
	json_error_t je;
	size_t n;
	int rc = 0;

	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
		return firn_err_set(-EINVAL, "catalog %s is corrupt: line %d column %d: %s",
		                    c->path, je.line, je.column, je.text);
	if (!json_is_object(root)) {
		rc = firn_err_set(-EINVAL, "catalog %s is corrupt: not a JSON object", c->path);
		goto out;
	}
	if ((rc = get_int(&w, root, "format", 0, INT64_MAX, &format)) < 0)
		goto out;
	if (format != CATALOG_FORMAT) {
		rc = firn_err_set(-EINVAL, "catalog %s has format %lld; this firn reads format %d",
		                  c->path, (long long)format, CATALOG_FORMAT);
		goto out;
	}
	if ((rc = get_int(&w, root, "next_id", 1, INT64_MAX, &next_id)) < 0)
		goto out;
	jstreams = json_object_get(root, "streams");
	if (!json_is_array(jstreams)) {
		rc = field_err(&w, "streams", "must be an array");
		goto out;
	}
	n = json_array_size(jstreams);
	c->streams = calloc(n + 1, sizeof(*c->streams));
	if (c->streams == NULL) {
		rc = firn_err_set(-ENOMEM, "catalog %s: out of memory", c->path);
		goto out;
	}
	c->cap = (uint32_t)n + 1;
	c->next_id = (uint64_t)next_id;
	for (size_t i = 0; i < n; i++) {
		struct firn_stream_info *s = NULL;

		rc = load_stream(c->path, (uint32_t)i, json_array_get(jstreams, i), &s);
		if (rc < 0)
			goto out;
		c->streams[c->nstreams++] = s;
		if (s->id >= c->next_id) {
			rc = firn_err_set(-EINVAL,
			                  "catalog %s is corrupt: stream '%s' has id %llu but "
			                  "next_id is %llu",
			                  c->path, s->name, (unsigned long long)s->id,
			                  (unsigned long long)c->next_id);
			goto out;
		}
		for (uint32_t k = 0; k + 1 < c->nstreams; k++) {
			if (c->streams[k]->id == s->id ||
			    strcmp(c->streams[k]->name, s->name) == 0) {
				rc = firn_err_set(
				        -EINVAL,
				        "catalog %s is corrupt: streams '%s' and '%s' share "
				        "a name or id",
				        c->path, c->streams[k]->name, s->name);
				goto out;
			}
		}
	}
	qsort(c->streams, c->nstreams, sizeof(*c->streams), name_cmp);
out:
	json_decref(root);
	return rc;
}

/* ---- save ---------------------------------------------------------------- */

static json_t *
dump_shard(const struct firn_shard_info *sh)
{
	char start[FIRN_U128_DEC_SIZE], end[FIRN_U128_DEC_SIZE], sc[24], ec[24];

	firn_u128_format(sh->start, start);
	firn_u128_format(sh->end, end);
	snprintf(sc, sizeof(sc), "%llu", (unsigned long long)sh->start_counter);
	snprintf(ec, sizeof(ec), "%llu", (unsigned long long)sh->end_counter);
	return json_pack("{s:I, s:s, s:s, s:I, s:I, s:s, s:b, s:s, s:b, s:I, s:I}", "index",
	                 (json_int_t)sh->index, "start", start, "end", end, "parent",
	                 (json_int_t)sh->parent, "adjacent_parent", (json_int_t)sh->adjacent_parent,
	                 "start_counter", sc, "closed", (int)sh->closed, "end_counter", ec,
	                 "empty_at_close", (int)sh->empty_at_close, "created_ms",
	                 (json_int_t)sh->created_ms, "closed_ms", (json_int_t)sh->closed_ms);
}

static json_t *
dump_stream(const struct firn_stream_info *s)
{
	json_t *js, *jshards, *jtags;

	js = json_pack("{s:I, s:s, s:s, s:I, s:I, s:[], s:{}}", "id", (json_int_t)s->id, "name",
	               s->name, "status", firn_stream_status_name(s->status), "retention_hours",
	               (json_int_t)s->retention_hours, "created_ms", (json_int_t)s->created_ms,
	               "shards", "tags");
	if (js == NULL)
		return NULL;
	jshards = json_object_get(js, "shards");
	jtags = json_object_get(js, "tags");
	for (uint32_t i = 0; i < s->nshards; i++) {
		if (json_array_append_new(jshards, dump_shard(&s->shards[i])) < 0)
			goto fail;
	}
	for (uint32_t i = 0; i < s->ntags; i++) {
		if (json_object_set_new(jtags, s->tags[i].key, json_string(s->tags[i].value)) < 0)
			goto fail;
	}
	return js;
fail:
	json_decref(js);
	return NULL;
}

/* Write the whole catalog to catalog.json, atomically. 0 or -errno. */
int
catalog_json_save(const struct firn_catalog *c)
{
	json_t *root, *jstreams;
	char *text = NULL;
	int rc;

	root = json_pack("{s:i, s:I, s:[]}", "format", CATALOG_FORMAT, "next_id",
	                 (json_int_t)c->next_id, "streams");
	if (root == NULL)
		goto nomem;
	jstreams = json_object_get(root, "streams");
	for (uint32_t i = 0; i < c->nstreams; i++) {
		if (json_array_append_new(jstreams, dump_stream(c->streams[i])) < 0)
			goto nomem;
	}
	text = json_dumps(root, JSON_INDENT(1));
	if (text == NULL)
		goto nomem;
	rc = firn_file_write_atomic(c->path, text, strlen(text), 0644);
	if (rc < 0)
		firn_err_wrap(rc, "save catalog %s", c->path);
	free(text);
	json_decref(root);
	return rc;
nomem:
	json_decref(root);
	return firn_err_set(-ENOMEM, "save catalog %s: out of memory", c->path);
}
