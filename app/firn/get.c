/*
 * get.c - `firn get STREAM [--shard ID] [--from trim_horizon|latest|at-timestamp T]
 *                   [--limit N] [--follow] [--format raw|json]`
 *
 * Reads a stream the way a careful Kinesis consumer does. Without --shard it
 * starts from the shards that were open at the starting point (ListShards
 * with the matching ShardFilter: AT_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP),
 * reads them round-robin, and when GetRecords says a closed shard is drained
 * (no NextShardIterator, ChildShards listed) it moves on to the children - a
 * merged child only once both parents are drained - so records of one key
 * come out in order across splits and merges.
 *
 * Without --follow a shard is left once it is caught up (an empty batch with
 * MillisBehindLatest 0), and the command ends when every shard is; with
 * --follow it keeps polling. --limit stops after N records.
 *
 * Output: --format raw (default) writes each record's data followed by a
 * newline - the inverse of `firn put`; --format json writes one JSON object
 * per line with shard, sequence number, key, arrival time and base64 data.
 * T for at-timestamp is epoch seconds (fractions allowed) or ISO-8601.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

struct cursor {
	char shard[64];
	char *iter; /* NULL once the shard is left */
	bool done;
};

struct get_ctx {
	struct cli *c;
	const char *stream;
	bool json;
	bool follow;
	uint64_t limit, printed;
	struct cursor *cur;
	size_t ncur, cap;
};

static const char *
jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : "";
}

static struct cursor *
find(struct get_ctx *g, const char *shard)
{
	size_t i;

	for (i = 0; i < g->ncur; i++)
		if (strcmp(g->cur[i].shard, shard) == 0)
			return &g->cur[i];
	return NULL;
}

static struct cursor *
add(struct get_ctx *g, const char *shard)
{
	struct cursor *c;

	if (g->ncur == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		struct cursor *n = realloc(g->cur, cap * sizeof(*n));

		if (n == NULL)
			return NULL;
		g->cur = n;
		g->cap = cap;
	}
	c = &g->cur[g->ncur++];
	memset(c, 0, sizeof(*c));
	snprintf(c->shard, sizeof(c->shard), "%s", shard);
	return c;
}

static int
open_iter(struct get_ctx *g, struct cursor *cu, const char *type, json_t *ts)
{
	json_t *req = json_pack("{s:s,s:s,s:s}", "StreamName", g->stream, "ShardId", cu->shard,
	                        "ShardIteratorType", type);
	json_t *rep;

	if (ts != NULL)
		json_object_set(req, "Timestamp", ts);
	if (cli_call(g->c, "GetShardIterator", req, &rep, NULL, 0) < 0)
		return -1;
	cu->iter = strdup(jstr(rep, "ShardIterator"));
	json_decref(rep);
	return cu->iter ? 0 : -1;
}

static void
print_record(struct get_ctx *g, const char *shard, json_t *r)
{
	const char *d = jstr(r, "Data");
	uint8_t *buf;
	long n;

	if (g->json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:O,s:s}", "ShardId", shard, "SequenceNumber",
		                      jstr(r, "SequenceNumber"), "PartitionKey",
		                      jstr(r, "PartitionKey"), "ApproximateArrivalTimestamp",
		                      json_object_get(r, "ApproximateArrivalTimestamp"), "Data", d);
		char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(16)) : NULL;

		if (s != NULL)
			printf("%s\n", s);
		free(s);
		json_decref(o);
		return;
	}
	buf = malloc(strlen(d) / 4 * 3 + 3);
	if (buf == NULL)
		return;
	n = firn_b64_decode(d, strlen(d), buf);
	if (n >= 0) {
		fwrite(buf, 1, (size_t)n, stdout);
		fputc('\n', stdout);
	}
	free(buf);
}

/* A drained parent: start each child whose parents are all drained. */
static int
adopt_children(struct get_ctx *g, json_t *children)
{
	json_t *ch, *p;
	size_t i, k;

	json_array_foreach(children, i, ch)
	{
		const char *id = jstr(ch, "ShardId");
		bool ready = true;
		struct cursor *cu;

		if (find(g, id) != NULL)
			continue;
		json_array_foreach(json_object_get(ch, "ParentShards"), k, p)
		{
			struct cursor *pc = find(g, json_string_value(p));

			if (pc != NULL && !pc->done)
				ready = false;
		}
		if (!ready)
			continue; /* the other parent will adopt it when it drains */
		cu = add(g, id);
		if (cu == NULL || open_iter(g, cu, "TRIM_HORIZON", NULL) < 0)
			return -1;
	}
	return 0;
}

static int
poll_one(struct get_ctx *g, size_t idx, bool *progress)
{
	struct cursor *cu = &g->cur[idx];
	uint64_t want = g->limit ? g->limit - g->printed : 10000;
	json_t *rep, *recs, *r, *next;
	char shard[64];
	size_t i;

	snprintf(shard, sizeof(shard), "%s", cu->shard);
	if (cli_call(g->c, "GetRecords",
	             json_pack("{s:s,s:i}", "ShardIterator", cu->iter, "Limit",
	                       (int)FIRN_MIN(want, 10000)),
	             &rep, NULL, 0) < 0)
		return -1;
	recs = json_object_get(rep, "Records");
	json_array_foreach(recs, i, r)
	{
		if (g->limit && g->printed >= g->limit)
			break;
		print_record(g, shard, r);
		g->printed++;
	}
	*progress = json_array_size(recs) > 0;
	cu = &g->cur[idx];
	free(cu->iter);
	cu->iter = NULL;
	next = json_object_get(rep, "NextShardIterator");
	if (!json_is_string(next)) {
		/* Closed and drained: hand over to the children. */
		cu->done = true;
		if (adopt_children(g, json_object_get(rep, "ChildShards")) < 0) {
			json_decref(rep);
			return -1;
		}
	} else if (!g->follow && json_array_size(recs) == 0 &&
	           json_integer_value(json_object_get(rep, "MillisBehindLatest")) == 0) {
		cu->done = true; /* caught up */
	} else {
		cu->iter = strdup(json_string_value(next));
	}
	json_decref(rep);
	return 0;
}

static int
parse_ts(const char *s, json_t **out)
{
	char *end;
	double d = strtod(s, &end);

	if (end != s && *end == '\0' && d >= 0) {
		*out = json_real(d);
		return 0;
	}
	if (strlen(s) >= 19 && s[4] == '-' && s[10] == 'T') {
		*out = json_string(s);
		return 0;
	}
	fprintf(stderr, "firn: get: timestamp '%s' is neither epoch seconds nor ISO-8601\n", s);
	return -EINVAL;
}

int
cmd_get(struct cli *c, int argc, char **argv)
{
	struct get_ctx g = {.c = c};
	const char *shard = NULL, *from = "trim_horizon", *type, *filter;
	json_t *ts = NULL, *rep, *req, *sh;
	uint32_t limit = 0;
	size_t i;
	int rc = 0;

	for (i = 0; i < (size_t)argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--shard") == 0 && i + 1 < (size_t)argc) {
			shard = argv[++i];
		} else if (strcmp(a, "--from") == 0 && i + 1 < (size_t)argc) {
			from = argv[++i];
			if (strcmp(from, "at-timestamp") == 0) {
				if (i + 1 >= (size_t)argc || parse_ts(argv[++i], &ts) < 0)
					return CLI_EXIT_USAGE;
			}
		} else if (strcmp(a, "--limit") == 0 && i + 1 < (size_t)argc) {
			if (cli_parse_u32("--limit", argv[++i], 1, UINT32_MAX, &limit) < 0)
				return CLI_EXIT_USAGE;
		} else if (strcmp(a, "--follow") == 0) {
			g.follow = true;
		} else if (strcmp(a, "--format") == 0 && i + 1 < (size_t)argc) {
			a = argv[++i];
			if (strcmp(a, "json") == 0)
				g.json = true;
			else if (strcmp(a, "raw") != 0) {
				fprintf(stderr, "firn: get: --format raw|json\n");
				return CLI_EXIT_USAGE;
			}
		} else if (g.stream == NULL && a[0] != '-') {
			g.stream = a;
		} else {
			fprintf(stderr, "firn: get: unexpected '%s'\n", a);
			return CLI_EXIT_USAGE;
		}
	}
	if (g.stream == NULL) {
		fprintf(stderr,
		        "firn: usage: firn get STREAM [--shard ID] [--from trim_horizon|"
		        "latest|at-timestamp T] [--limit N] [--follow] [--format raw|json]\n");
		return CLI_EXIT_USAGE;
	}
	g.limit = limit;
	if (strcmp(from, "trim_horizon") == 0) {
		type = "TRIM_HORIZON";
		filter = "AT_TRIM_HORIZON";
	} else if (strcmp(from, "latest") == 0) {
		type = "LATEST";
		filter = "AT_LATEST";
	} else if (strcmp(from, "at-timestamp") == 0) {
		type = "AT_TIMESTAMP";
		filter = "AT_TIMESTAMP";
	} else {
		fprintf(stderr, "firn: get: --from trim_horizon|latest|at-timestamp T\n");
		return CLI_EXIT_USAGE;
	}
	if (shard != NULL) {
		struct cursor *cu = add(&g, shard);

		if (cu == NULL || open_iter(&g, cu, type, ts) < 0)
			rc = CLI_EXIT_FAIL;
	} else {
		req = json_pack("{s:s,s:{s:s}}", "StreamName", g.stream, "ShardFilter", "Type",
		                filter);
		if (ts != NULL)
			json_object_set(json_object_get(req, "ShardFilter"), "Timestamp", ts);
		/* One page holds up to 1000 shards; the roots of a stream are its open set. */
		json_object_set_new(req, "MaxResults", json_integer(10000));
		if (cli_call(c, "ListShards", req, &rep, NULL, 0) < 0) {
			rc = CLI_EXIT_FAIL;
		} else {
			json_array_foreach(json_object_get(rep, "Shards"), i, sh)
			{
				struct cursor *cu = add(&g, jstr(sh, "ShardId"));

				if (cu == NULL || open_iter(&g, cu, type, ts) < 0) {
					rc = CLI_EXIT_FAIL;
					break;
				}
			}
			json_decref(rep);
		}
	}
	while (rc == 0 && (!g.limit || g.printed < g.limit)) {
		bool any = false, progress = false;

		for (i = 0; i < g.ncur && (!g.limit || g.printed < g.limit); i++) {
			bool p = false;

			if (g.cur[i].iter == NULL)
				continue;
			any = true;
			if (poll_one(&g, i, &p) < 0) {
				rc = CLI_EXIT_FAIL;
				break;
			}
			progress |= p;
		}
		fflush(stdout);
		if (!any)
			break;
		if (!progress && g.follow) {
			struct timespec t = {0, 200 * 1000000L};

			nanosleep(&t, NULL);
		}
	}
	if (c->verbose)
		fprintf(stderr, "firn: read %llu records from %s\n", (unsigned long long)g.printed,
		        g.stream);
	for (i = 0; i < g.ncur; i++)
		free(g.cur[i].iter);
	free(g.cur);
	json_decref(ts);
	return rc;
}
