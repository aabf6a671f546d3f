/*
 * stream.c - `firn stream ...`: stream administration over the API.
 *
 *	firn stream create clicks --shards 4
 *	firn stream describe clicks
 *	firn stream split clicks shardId-000000000001          # at mid-range
 *	firn stream merge clicks shardId-000000000002 shardId-000000000003
 *	firn stream retention clicks 48
 *	firn stream reshard clicks 8
 *	firn stream list
 *	firn stream delete clicks
 *
 * Each subcommand is one or two Kinesis calls; output is meant for people,
 * one fact per line, so it also greps well.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "firn_record.h"

static const char *
jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : "";
}

static int
usage_err(const char *what)
{
	fprintf(stderr, "firn: usage: firn stream %s\n", what);
	return CLI_EXIT_USAGE;
}

static int
need(int argc, int n, const char *what)
{
	if (argc < n) {
		usage_err(what);
		return -1;
	}
	return 0;
}

/* Every shard of a stream via ListShards pages. NULL after printing an error. */
static json_t *
list_shards(struct cli *c, const char *name)
{
	json_t *all = json_array(), *rep, *req;
	const char *tok = NULL;
	char *tokcopy = NULL;

	for (;;) {
		req = tokcopy ? json_pack("{s:s}", "NextToken", tokcopy)
		              : json_pack("{s:s}", "StreamName", name);
		free(tokcopy);
		tokcopy = NULL;
		if (cli_call(c, "ListShards", req, &rep, NULL, 0) < 0) {
			json_decref(all);
			return NULL;
		}
		json_array_extend(all, json_object_get(rep, "Shards"));
		tok = jstr(rep, "NextToken");
		if (*tok)
			tokcopy = strdup(tok);
		json_decref(rep);
		if (tokcopy == NULL)
			return all;
	}
}

static int
st_create(struct cli *c, int argc, char **argv)
{
	uint32_t shards = 1;
	const char *name = NULL;
	json_t *rep;
	int i;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--shards") == 0 && i + 1 < argc) {
			if (cli_parse_u32("--shards", argv[++i], 1, 10000, &shards) < 0)
				return CLI_EXIT_USAGE;
		} else if (name == NULL && argv[i][0] != '-') {
			name = argv[i];
		} else {
			fprintf(stderr, "firn: stream create: unexpected '%s'\n", argv[i]);
			return CLI_EXIT_USAGE;
		}
	}
	if (name == NULL)
		return usage_err("create NAME [--shards N]");
	if (cli_call(c, "CreateStream",
	             json_pack("{s:s,s:i}", "StreamName", name, "ShardCount", (int)shards), &rep,
	             NULL, 0) < 0)
		return CLI_EXIT_FAIL;
	json_decref(rep);
	printf("created stream %s with %u shard%s\n", name, shards, shards == 1 ? "" : "s");
	return 0;
}

static int
st_delete(struct cli *c, int argc, char **argv)
{
	json_t *rep;

	if (need(argc, 1, "delete NAME") < 0)
		return CLI_EXIT_USAGE;
	if (cli_call(c, "DeleteStream", json_pack("{s:s}", "StreamName", argv[0]), &rep, NULL, 0) <
	    0)
		return CLI_EXIT_FAIL;
	json_decref(rep);
	printf("deleted stream %s\n", argv[0]);
	return 0;
}

static int
st_list(struct cli *c)
{
	json_t *rep, *names, *v, *req;
	char *tok = NULL;
	size_t i;

	for (;;) {
		req = tok ? json_pack("{s:s}", "NextToken", tok) : json_object();
		free(tok);
		tok = NULL;
		if (cli_call(c, "ListStreams", req, &rep, NULL, 0) < 0)
			return CLI_EXIT_FAIL;
		names = json_object_get(rep, "StreamNames");
		json_array_foreach(names, i, v) printf("%s\n", json_string_value(v));
		if (json_is_true(json_object_get(rep, "HasMoreStreams")) && *jstr(rep, "NextToken"))
			tok = strdup(jstr(rep, "NextToken"));
		json_decref(rep);
		if (tok == NULL)
			return 0;
	}
}

static int
st_describe(struct cli *c, int argc, char **argv)
{
	json_t *rep, *d, *shards, *sh;
	size_t i, open = 0;

	if (need(argc, 1, "describe NAME") < 0)
		return CLI_EXIT_USAGE;
	if (cli_call(c, "DescribeStreamSummary", json_pack("{s:s}", "StreamName", argv[0]), &rep,
	             NULL, 0) < 0)
		return CLI_EXIT_FAIL;
	d = json_object_get(rep, "StreamDescriptionSummary");
	printf("stream      %s\n", jstr(d, "StreamName"));
	printf("arn         %s\n", jstr(d, "StreamARN"));
	printf("status      %s\n", jstr(d, "StreamStatus"));
	printf("retention   %lld hours\n",
	       (long long)json_integer_value(json_object_get(d, "RetentionPeriodHours")));
	printf("created     %.3f\n",
	       json_number_value(json_object_get(d, "StreamCreationTimestamp")));
	json_decref(rep);
	shards = list_shards(c, argv[0]);
	if (shards == NULL)
		return CLI_EXIT_FAIL;
	json_array_foreach(shards, i, sh)
	{
		json_t *seq = json_object_get(sh, "SequenceNumberRange");
		json_t *hr = json_object_get(sh, "HashKeyRange");
		bool closed = json_object_get(seq, "EndingSequenceNumber") != NULL;
		const char *par = jstr(sh, "ParentShardId"),
		           *adj = jstr(sh, "AdjacentParentShardId");

		open += !closed;
		printf("shard       %s %s hash %s..%s", jstr(sh, "ShardId"),
		       closed ? "CLOSED" : "OPEN  ", jstr(hr, "StartingHashKey"),
		       jstr(hr, "EndingHashKey"));
		if (*par)
			printf(" parent %s%s%s", par, *adj ? "+" : "", adj);
		printf("\n");
		if (c->verbose)
			printf("            seq %s..%s\n", jstr(seq, "StartingSequenceNumber"),
			       closed ? jstr(seq, "EndingSequenceNumber") : "");
	}
	printf("shards      %zu open, %zu closed\n", open, json_array_size(shards) - open);
	json_decref(shards);
	return 0;
}

/* start + (end - start) / 2 + 1: the first key of the upper half, never overflowing. */
static struct firn_u128
mid_key(struct firn_u128 start, struct firn_u128 end)
{
	struct firn_u128 d = firn_u128_sub(end, start), half;

	half.lo = d.lo >> 1 | d.hi << 63;
	half.hi = d.hi >> 1;
	return firn_u128_add(firn_u128_add(start, half), firn_u128_from_u64(1));
}

static int
st_split(struct cli *c, int argc, char **argv)
{
	const char *at = NULL, *pos[2] = {0};
	char key[FIRN_U128_DEC_SIZE];
	json_t *rep, *shards, *sh;
	int i, np = 0;
	size_t k;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--at") == 0 && i + 1 < argc)
			at = argv[++i];
		else if (np < 2)
			pos[np++] = argv[i];
		else
			return usage_err("split NAME SHARD [--at HASHKEY]");
	}
	if (np != 2)
		return usage_err("split NAME SHARD [--at HASHKEY]");
	if (at == NULL) {
		struct firn_u128 s, e;
		bool found = false;

		shards = list_shards(c, pos[0]);
		if (shards == NULL)
			return CLI_EXIT_FAIL;
		json_array_foreach(shards, k, sh)
		{
			json_t *hr = json_object_get(sh, "HashKeyRange");
			const char *a = jstr(hr, "StartingHashKey"), *b = jstr(hr, "EndingHashKey");

			if (strcmp(jstr(sh, "ShardId"), pos[1]) != 0)
				continue;
			if (firn_u128_parse(a, strlen(a), &s) == 0 &&
			    firn_u128_parse(b, strlen(b), &e) == 0) {
				firn_u128_format(mid_key(s, e), key);
				found = true;
			}
		}
		json_decref(shards);
		if (!found) {
			fprintf(stderr, "firn: stream %s has no shard %s\n", pos[0], pos[1]);
			return CLI_EXIT_FAIL;
		}
		at = key;
	}
	if (cli_call(c, "SplitShard",
	             json_pack("{s:s,s:s,s:s}", "StreamName", pos[0], "ShardToSplit", pos[1],
	                       "NewStartingHashKey", at),
	             &rep, NULL, 0) < 0)
		return CLI_EXIT_FAIL;
	json_decref(rep);
	printf("split %s of %s at %s\n", pos[1], pos[0], at);
	return 0;
}

static int
st_merge(struct cli *c, int argc, char **argv)
{
	json_t *rep;

	if (need(argc, 3, "merge NAME SHARD ADJACENT_SHARD") < 0)
		return CLI_EXIT_USAGE;
	if (cli_call(c, "MergeShards",
	             json_pack("{s:s,s:s,s:s}", "StreamName", argv[0], "ShardToMerge", argv[1],
	                       "AdjacentShardToMerge", argv[2]),
	             &rep, NULL, 0) < 0)
		return CLI_EXIT_FAIL;
	json_decref(rep);
	printf("merged %s and %s of %s\n", argv[1], argv[2], argv[0]);
	return 0;
}

static int
st_retention(struct cli *c, int argc, char **argv)
{
	json_t *rep;
	uint32_t hours;
	json_int_t cur;
	const char *op;

	if (need(argc, 2, "retention NAME HOURS") < 0 ||
	    cli_parse_u32("HOURS", argv[1], 1, 1000000, &hours) < 0)
		return CLI_EXIT_USAGE;
	if (cli_call(c, "DescribeStreamSummary", json_pack("{s:s}", "StreamName", argv[0]), &rep,
	             NULL, 0) < 0)
		return CLI_EXIT_FAIL;
	cur = json_integer_value(json_object_get(json_object_get(rep, "StreamDescriptionSummary"),
	                                         "RetentionPeriodHours"));
	json_decref(rep);
	if (cur == (json_int_t)hours) {
		printf("retention of %s is already %u hours\n", argv[0], hours);
		return 0;
	}
	op = (json_int_t)hours > cur ? "IncreaseStreamRetentionPeriod"
	                             : "DecreaseStreamRetentionPeriod";
	if (cli_call(c, op,
	             json_pack("{s:s,s:i}", "StreamName", argv[0], "RetentionPeriodHours",
	                       (int)hours),
	             &rep, NULL, 0) < 0)
		return CLI_EXIT_FAIL;
	json_decref(rep);
	printf("retention of %s: %lld -> %u hours\n", argv[0], (long long)cur, hours);
	return 0;
}

static int
st_reshard(struct cli *c, int argc, char **argv)
{
	json_t *rep;
	uint32_t n;

	if (need(argc, 2, "reshard NAME COUNT") < 0 ||
	    cli_parse_u32("COUNT", argv[1], 1, 10000, &n) < 0)
		return CLI_EXIT_USAGE;
	if (cli_call(c, "UpdateShardCount",
	             json_pack("{s:s,s:i,s:s}", "StreamName", argv[0], "TargetShardCount", (int)n,
	                       "ScalingType", "UNIFORM_SCALING"),
	             &rep, NULL, 0) < 0)
		return CLI_EXIT_FAIL;
	printf("resharded %s: %lld -> %lld open shards\n", argv[0],
	       (long long)json_integer_value(json_object_get(rep, "CurrentShardCount")),
	       (long long)json_integer_value(json_object_get(rep, "TargetShardCount")));
	json_decref(rep);
	return 0;
}

int
cmd_stream(struct cli *c, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";

	argc--;
	argv++;
	if (strcmp(sub, "create") == 0)
		return st_create(c, argc, argv);
	if (strcmp(sub, "delete") == 0)
		return st_delete(c, argc, argv);
	if (strcmp(sub, "list") == 0)
		return st_list(c);
	if (strcmp(sub, "describe") == 0)
		return st_describe(c, argc, argv);
	if (strcmp(sub, "split") == 0)
		return st_split(c, argc, argv);
	if (strcmp(sub, "merge") == 0)
		return st_merge(c, argc, argv);
	if (strcmp(sub, "retention") == 0)
		return st_retention(c, argc, argv);
	if (strcmp(sub, "reshard") == 0)
		return st_reshard(c, argc, argv);
	fprintf(stderr, "firn: stream needs one of create, delete, list, describe, split, merge, "
	                "retention, reshard\n");
	return CLI_EXIT_USAGE;
}
