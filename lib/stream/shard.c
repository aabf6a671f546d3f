/*
 * shard.c - stream snapshots: names, copies, the open-shard view, routing and
 * the structural check every loaded stream must pass.
 *
 * A stream's open shards always tile the hash space: sorted by range start
 * they begin at 0, each starts one after the previous ends, and the last ends
 * at 2^128-1. Split and merge preserve that by construction; the loader
 * checks it (stream_check) because the file might have been edited by hand.
 * Routing relies on it: a binary search over the open shards sorted by start
 * finds the one shard whose range holds a hash key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_common.h"
#include "stream_private.h"

static const char *const status_names[] = {
        [FIRN_STREAM_CREATING] = "CREATING",
        [FIRN_STREAM_ACTIVE] = "ACTIVE",
        [FIRN_STREAM_UPDATING] = "UPDATING",
        [FIRN_STREAM_DELETING] = "DELETING",
};

const char *
firn_stream_status_name(enum firn_stream_status s)
{
	if ((unsigned)s >= FIRN_ARRAY_SIZE(status_names))
		return "UNKNOWN";
	return status_names[s];
}

int
stream_status_parse(const char *name, enum firn_stream_status *out)
{
	for (unsigned i = 0; i < FIRN_ARRAY_SIZE(status_names); i++) {
		if (strcmp(name, status_names[i]) == 0) {
			*out = (enum firn_stream_status)i;
			return 0;
		}
	}
	return -EINVAL;
}

int
firn_stream_name_check(const char *name)
{
	size_t i;

	if (name == NULL || name[0] == '\0')
		return -EINVAL;
	for (i = 0; name[i] != '\0'; i++) {
		char ch = name[i];

		if (i >= FIRN_STREAM_NAME_MAX)
			return -EINVAL;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
			return -EINVAL;
	}
	return 0;
}

/*
 * Tag keys are 1..128 bytes, values 0..256, both UTF-8 (they end up in JSON).
 * The lengths are checked within the fixed struct firn_tag arrays, so an
 * unterminated field is caught instead of read past.
 */
int
tag_check(const char *key, const char *value)
{
	size_t kl, vl;

	if (key == NULL || value == NULL)
		return -EINVAL;
	kl = strnlen(key, FIRN_TAG_KEY_MAX + 1);
	vl = strnlen(value, FIRN_TAG_VALUE_MAX + 1);
	if (kl == 0 || kl > FIRN_TAG_KEY_MAX || vl > FIRN_TAG_VALUE_MAX)
		return -EINVAL;
	/* firn_partition_key_check is the shared UTF-8 validator (1..256 bytes). */
	if (firn_partition_key_check(key, kl) < 0)
		return -EINVAL;
	if (vl > 0 && firn_partition_key_check(value, vl) < 0)
		return -EINVAL;
	return 0;
}

void
firn_stream_info_free(struct firn_stream_info *s)
{
	if (s == NULL)
		return;
	free(s->shards);
	free(s->tags);
	free(s->open_by_start);
	free(s);
}

static int
open_cmp(const void *a, const void *b, void *arg)
{
	const struct firn_shard_info *sh = arg;

	return firn_u128_cmp(sh[*(const uint32_t *)a].start, sh[*(const uint32_t *)b].start);
}

/* (Re)build s->open_by_start from s->shards. 0 or -ENOMEM. */
int
stream_build_open_view(struct firn_stream_info *s)
{
	uint32_t *v, n = 0;

	/* One extra slot so a stream with no open shard still gets a non-NULL view. */
	v = malloc(((size_t)s->nshards + 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->nshards; i++)
		if (!s->shards[i].closed)
			v[n++] = i;
	qsort_r(v, n, sizeof(*v), open_cmp, s->shards);
	free(s->open_by_start);
	s->open_by_start = v;
	s->nopen = n;
	return 0;
}

struct firn_stream_info *
stream_info_dup(const struct firn_stream_info *s)
{
	struct firn_stream_info *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	*d = *s;
	d->shards = NULL;
	d->tags = NULL;
	d->open_by_start = NULL;
	d->shards = malloc(((size_t)s->nshards + 1) * sizeof(*d->shards));
	d->tags = malloc(((size_t)s->ntags + 1) * sizeof(*d->tags));
	if (d->shards == NULL || d->tags == NULL)
		goto fail;
	if (s->nshards)
		memcpy(d->shards, s->shards, s->nshards * sizeof(*d->shards));
	if (s->ntags)
		memcpy(d->tags, s->tags, s->ntags * sizeof(*d->tags));
	if (stream_build_open_view(d) < 0)
		goto fail;
	return d;
fail:
	firn_stream_info_free(d);
	return NULL;
}

int
firn_stream_route(const struct firn_stream_info *s, struct firn_u128 hash, uint32_t *shard)
{
	const struct firn_shard_info *sh;
	uint32_t lo = 0, hi;

	if (firn_unlikely(s->open_by_start == NULL)) {
		/* A hand-built snapshot without the view: scan. */
		for (uint32_t i = 0; i < s->nshards; i++) {
			sh = &s->shards[i];
			if (!sh->closed && firn_u128_cmp(sh->start, hash) <= 0 &&
			    firn_u128_cmp(hash, sh->end) <= 0) {
				*shard = i;
				return 0;
			}
		}
		return -ENOENT;
	}
	/* Find the last open shard whose start is <= hash. */
	hi = s->nopen;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (firn_u128_cmp(s->shards[s->open_by_start[mid]].start, hash) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -ENOENT;
	sh = &s->shards[s->open_by_start[lo - 1]];
	if (firn_u128_cmp(hash, sh->end) > 0)
		return -ENOENT;
	*shard = sh->index;
	return 0;
}

/* Write the reason a stream is malformed into why; returns -EINVAL. */
static int FIRN_PRINTF(3, 4) bad(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/*
 * Check that a stream is well formed (see the file header); on failure write
 * the reason into why and return -EINVAL. Needs the open view built.
 */
int
stream_check(const struct firn_stream_info *s, char *why, size_t cap)
{
	struct firn_u128 next = {0, 0};
	bool covered_all = false;

	if (firn_stream_name_check(s->name) < 0)
		return bad(why, cap, "invalid name");
	if (s->retention_hours < FIRN_RETENTION_MIN_H || s->retention_hours > FIRN_RETENTION_MAX_H)
		return bad(why, cap, "retention %u h outside %u..%u", s->retention_hours,
		           FIRN_RETENTION_MIN_H, FIRN_RETENTION_MAX_H);
	if (s->nshards == 0)
		return bad(why, cap, "no shards");
	if (s->nshards - 1 > FIRN_SHARD_INDEX_MAX)
		return bad(why, cap, "too many shards");
	for (uint32_t i = 0; i < s->nshards; i++) {
		const struct firn_shard_info *sh = &s->shards[i];

		if (sh->index != i)
			return bad(why, cap, "shard at position %u has index %u", i, sh->index);
		if (firn_u128_cmp(sh->start, sh->end) > 0)
			return bad(why, cap, "shard %u starts after it ends", i);
		/* Parents are always older, hence lower indexes, and closed. */
		if (sh->parent < -1 || sh->parent >= (int64_t)i ||
		    (sh->parent >= 0 && !s->shards[sh->parent].closed))
			return bad(why, cap, "shard %u has a bad parent", i);
		if (sh->adjacent_parent < -1 || sh->adjacent_parent >= (int64_t)i ||
		    (sh->adjacent_parent >= 0 &&
		     (sh->parent < 0 || sh->adjacent_parent == sh->parent ||
		      !s->shards[sh->adjacent_parent].closed)))
			return bad(why, cap, "shard %u has a bad adjacent parent", i);
	}
	if (s->nopen == 0)
		return bad(why, cap, "no open shard");
	for (uint32_t k = 0; k < s->nopen; k++) {
		const struct firn_shard_info *sh = &s->shards[s->open_by_start[k]];

		if (covered_all || firn_u128_cmp(sh->start, next) != 0)
			return bad(why, cap,
			           "open shards do not tile the hash space (gap or overlap at "
			           "shard %u)",
			           sh->index);
		next = firn_u128_add(sh->end, firn_u128_from_u64(1));
		covered_all = firn_u128_cmp(sh->end, FIRN_U128_MAX) == 0;
	}
	if (!covered_all)
		return bad(why, cap, "open shards do not reach 2^128-1");
	if (s->ntags > FIRN_TAGS_MAX)
		return bad(why, cap, "%u tags (max %u)", s->ntags, FIRN_TAGS_MAX);
	for (uint32_t i = 0; i < s->ntags; i++) {
		if (tag_check(s->tags[i].key, s->tags[i].value) < 0)
			return bad(why, cap, "bad tag %u", i);
		if (i > 0 && strcmp(s->tags[i - 1].key, s->tags[i].key) >= 0)
			return bad(why, cap, "tags not sorted or duplicated");
	}
	return 0;
}
