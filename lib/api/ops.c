/*
 * ops.c - the Kinesis operations, from a validated request to a JSON reply.
 *
 * Each handler takes a struct api_req that request.c has already checked for
 * shape, looks the stream up in the catalog (a private snapshot, so no lock
 * is held while it works), drives the store, and builds the reply with
 * jansson. Errors use the names and, where clients or people match on them,
 * the wording of Kinesis ("Stream foo under account 000000000000 not
 * found.").
 *
 * Writes. PutRecord and PutRecords route every record (MD5 of the partition
 * key, or ExplicitHashKey) to the open shard owning that hash, append each
 * shard's records with one store call in request order - so records of one
 * shard in one PutRecords keep their order and get increasing sequence
 * numbers - and then wait until the last record of every shard involved is
 * durable. Only then is the reply sent: a 200 means the data survives a
 * crash. A shard sealed under our feet by a concurrent split answers
 * -ESHUTDOWN; the records are re-routed on a fresh snapshot.
 *
 * Resharding. SplitShard, MergeShards and UpdateShardCount run under the
 * admin lock: status UPDATING, seal the parent(s) in the store (no more
 * appends, all durable), hand the last counters to the catalog, which closes
 * the parents and adds children atomically, status ACTIVE. They return when
 * done (Kinesis returns first and finishes later; a client that waits for
 * ACTIVE sees the same end state).
 *
 * Reads. GetShardIterator resolves the start to a counter (or keeps a
 * timestamp for AT_TIMESTAMP) and mints an iterator (token.c); GetRecords
 * reads durable records from the store and always returns a fresh iterator,
 * except after the last record of a closed shard, where it returns none and
 * lists the children instead.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(16))
#define PUT_DURABLE_TIMEOUT_MS 30000
#define PUT_RETRY_MS 5000
#define DESCRIBE_DEFAULT_LIMIT 100
#define LIST_STREAMS_DEFAULT_LIMIT 100
#define LIST_SHARDS_DEFAULT_LIMIT 1000
#define LIST_TAGS_DEFAULT_LIMIT 10

struct call {
	struct firn_api *api;
	struct api_req *req;
	const char *region;
	struct api_error *e;
	json_t *out;
	/* A reply already serialised (hot paths that skip building a json_t). */
	char *raw;
	size_t raw_len;
};

/* ---- small helpers ------------------------------------------------------- */

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static json_t *
jstr_u128(struct firn_u128 v)
{
	char buf[FIRN_U128_DEC_SIZE];

	firn_u128_format(v, buf);
	return json_string(buf);
}

static json_t *
jseq(uint32_t shard, uint64_t counter)
{
	char buf[FIRN_U128_DEC_SIZE];

	firn_seq_format(shard, counter, buf);
	return json_string(buf);
}

static json_t *
jshard_id(uint32_t index)
{
	char buf[API_SHARD_ID_LEN + 1];

	api_shard_id_format(index, buf);
	return json_string(buf);
}

/* Epoch seconds with a millisecond fraction, as the AWS JSON protocol sends timestamps. */
static json_t *
jtime(int64_t ms)
{
	return json_real((double)ms / 1000.0);
}

static json_t *
jarn(struct call *c, const char *name)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "arn:aws:kinesis:%s:%s:stream/%s", c->region, c->api->account_id,
	         name);
	return json_string(buf);
}

static int
catalog_fail(struct call *c, int rc, const char *what)
{
	FIRN_LOG(ERR, API_LOG, "%s: %s", what, firn_err_msg());
	return api_fail(c->e, API_E_INTERNAL, "%s failed (%s)", what, strerror(-rc));
}

static int
not_found(struct call *c, const char *name)
{
	return api_fail(c->e, API_E_NOT_FOUND, "Stream %s under account %s not found.", name,
	                c->api->account_id);
}

/* A private snapshot of the request's stream; DELETING counts as gone. */
static int
load_stream(struct call *c, const char *name, struct firn_stream_info **out)
{
	int rc = firn_catalog_get(c->api->catalog, name, out);

	if (rc == -ENOENT)
		return not_found(c, name);
	if (rc < 0)
		return catalog_fail(c, rc, "catalog lookup");
	if ((*out)->status == FIRN_STREAM_DELETING) {
		firn_stream_info_free(*out);
		*out = NULL;
		return not_found(c, name);
	}
	return 0;
}

static int
find_shard(struct call *c, const struct firn_stream_info *s, const char *id, uint32_t *index)
{
	if (api_shard_id_parse(id, index) < 0 || *index >= s->nshards)
		return api_fail(c->e, API_E_NOT_FOUND,
		                "Could not find shard %s in stream %s under account %s.", id,
		                s->name, c->api->account_id);
	return 0;
}

static uint32_t
open_shards_total(struct firn_api *api)
{
	struct firn_stream_info *s;
	uint32_t i, n = 0, total = 0;
	char **names;

	if (firn_catalog_list(api->catalog, &names, &n) < 0)
		return 0;
	for (i = 0; i < n; i++) {
		if (firn_catalog_get(api->catalog, names[i], &s) == 0) {
			total += s->nopen;
			firn_stream_info_free(s);
		}
	}
	free(names);
	return total;
}

static int
shard_limit_check(struct call *c, uint32_t add)
{
	uint32_t open = open_shards_total(c->api);

	if ((uint64_t)open + add > c->api->conf.shard_limit)
		return api_fail(c->e, API_E_LIMIT,
		                "This request would exceed the shard limit for the account %s in "
		                "%s. Current shard count for the account: %u. Limit: %u. Number of "
		                "additional shards that would have resulted from this request: %u.",
		                c->api->account_id, c->region, open, c->api->conf.shard_limit, add);
	return 0;
}

static int
require_active(struct call *c, const struct firn_stream_info *s)
{
	if (s->status != FIRN_STREAM_ACTIVE)
		return api_fail(c->e, API_E_IN_USE,
		                "Stream %s under account %s not ACTIVE, instead in state %s",
		                s->name, c->api->account_id, firn_stream_status_name(s->status));
	return 0;
}

static json_t *
hash_range(const struct firn_shard_info *sh)
{
	json_t *r = json_object();

	json_object_set_new(r, "StartingHashKey", jstr_u128(sh->start));
	json_object_set_new(r, "EndingHashKey", jstr_u128(sh->end));
	return r;
}

static json_t *
shard_json(const struct firn_shard_info *sh)
{
	json_t *o = json_object(), *seq = json_object();

	json_object_set_new(o, "ShardId", jshard_id(sh->index));
	if (sh->parent >= 0)
		json_object_set_new(o, "ParentShardId", jshard_id((uint32_t)sh->parent));
	if (sh->adjacent_parent >= 0)
		json_object_set_new(o, "AdjacentParentShardId",
		                    jshard_id((uint32_t)sh->adjacent_parent));
	json_object_set_new(o, "HashKeyRange", hash_range(sh));
	json_object_set_new(seq, "StartingSequenceNumber", jseq(sh->index, sh->start_counter));
	if (sh->closed)
		json_object_set_new(
		        seq, "EndingSequenceNumber",
		        jseq(sh->index, sh->empty_at_close ? sh->start_counter : sh->end_counter));
	json_object_set_new(o, "SequenceNumberRange", seq);
	return o;
}

static json_t *
stream_mode(void)
{
	return json_pack("{s:s}", "StreamMode", "PROVISIONED");
}

static json_t *
enhanced_monitoring(void)
{
	return json_pack("[{s:[]}]", "ShardLevelMetrics");
}

/* ---- stream lifecycle ---------------------------------------------------- */

static int
op_create_stream(struct call *c)
{
	struct api_req *r = c->req;
	uint32_t n;
	uint64_t id;
	int rc;

	if (r->has_shard_count)
		n = r->shard_count;
	else if (r->on_demand)
		n = 4; /* what Kinesis starts an on-demand stream with */
	else
		return api_fail(c->e, API_E_INVALID_ARGUMENT,
		                "ShardCount is required for a PROVISIONED stream.");
	if (n > FIRN_SHARDS_MAX)
		return api_fail(c->e, API_E_LIMIT,
		                "ShardCount %u is above the per-stream limit of %u.", n,
		                FIRN_SHARDS_MAX);
	if (firn_stream_name_check(r->stream) < 0)
		return api_fail(c->e, API_E_INVALID_ARGUMENT, "Invalid stream name '%s'.",
		                r->stream);
	pthread_mutex_lock(&c->api->admin_lock);
	rc = shard_limit_check(c, n);
	if (rc == 0) {
		rc = firn_catalog_create(c->api->catalog, r->stream, n, &id);
		if (rc == -EEXIST)
			rc = api_fail(c->e, API_E_IN_USE,
			              "Stream %s under account %s already exists.", r->stream,
			              c->api->account_id);
		else if (rc < 0)
			rc = catalog_fail(c, rc, "create stream");
	}
	if (rc == 0 && r->ntags > 0 &&
	    firn_catalog_tag(c->api->catalog, r->stream, r->tags, r->ntags) < 0)
		FIRN_LOG(WARN, API_LOG, "stream '%s' created but tags not saved: %s", r->stream,
		         firn_err_msg());
	pthread_mutex_unlock(&c->api->admin_lock);
	if (rc == 0)
		FIRN_LOG(INFO, API_LOG, "created stream '%s' with %u shards", r->stream, n);
	return rc;
}

static int
op_delete_stream(struct call *c)
{
	struct firn_stream_info *s;
	int rc;

	pthread_mutex_lock(&c->api->admin_lock);
	rc = load_stream(c, c->req->stream, &s);
	if (rc == 0) {
		uint64_t id = s->id;

		/*
		 * DELETING first (persisted), so a crash in between leaves a stream
		 * that reads as gone; then the catalog entry, then the data.
		 */
		firn_catalog_set_status(c->api->catalog, s->name, FIRN_STREAM_DELETING);
		rc = firn_catalog_delete(c->api->catalog, s->name);
		if (rc < 0) {
			rc = catalog_fail(c, rc, "delete stream");
		} else {
			if (firn_store_stream_drop(c->api->store, id) < 0)
				FIRN_LOG(WARN, API_LOG, "stream '%s' deleted, data not dropped: %s",
				         s->name, firn_err_msg());
			FIRN_LOG(INFO, API_LOG, "deleted stream '%s'", s->name);
		}
		firn_stream_info_free(s);
	}
	pthread_mutex_unlock(&c->api->admin_lock);
	return rc;
}

static void
describe_common(struct call *c, const struct firn_stream_info *s, json_t *d)
{
	json_object_set_new(d, "StreamName", json_string(s->name));
	json_object_set_new(d, "StreamARN", jarn(c, s->name));
	json_object_set_new(d, "StreamStatus", json_string(firn_stream_status_name(s->status)));
	json_object_set_new(d, "StreamModeDetails", stream_mode());
	json_object_set_new(d, "RetentionPeriodHours", json_integer(s->retention_hours));
	json_object_set_new(d, "StreamCreationTimestamp", jtime(s->created_ms));
	json_object_set_new(d, "EnhancedMonitoring", enhanced_monitoring());
	json_object_set_new(d, "EncryptionType", json_string("NONE"));
}

static int
op_describe_stream(struct call *c)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	uint32_t i = 0, limit = r->has_limit ? r->limit : DESCRIBE_DEFAULT_LIMIT, n = 0;
	json_t *d, *shards;

	if (load_stream(c, r->stream, &s) < 0)
		return -1;
	if (r->exclusive_start != NULL) {
		uint32_t after;

		/* Unknown ids start from the beginning, as AWS does for ids it cannot order. */
		if (api_shard_id_parse(r->exclusive_start, &after) == 0)
			i = after + 1;
	}
	d = json_object();
	shards = json_array();
	describe_common(c, s, d);
	for (; i < s->nshards && n < limit; i++, n++)
		json_array_append_new(shards, shard_json(&s->shards[i]));
	json_object_set_new(d, "Shards", shards);
	json_object_set_new(d, "HasMoreShards", json_boolean(i < s->nshards));
	c->out = json_pack("{s:o}", "StreamDescription", d);
	firn_stream_info_free(s);
	return 0;
}

static int
op_describe_stream_summary(struct call *c)
{
	struct firn_stream_info *s;
	json_t *d;

	if (load_stream(c, c->req->stream, &s) < 0)
		return -1;
	d = json_object();
	describe_common(c, s, d);
	json_object_set_new(d, "OpenShardCount", json_integer(s->nopen));
	json_object_set_new(d, "ConsumerCount", json_integer(0));
	c->out = json_pack("{s:o}", "StreamDescriptionSummary", d);
	firn_stream_info_free(s);
	return 0;
}

static int
op_list_streams(struct call *c)
{
	struct api_req *r = c->req;
	uint32_t i = 0, n, limit = r->has_limit ? r->limit : LIST_STREAMS_DEFAULT_LIMIT, k = 0;
	const char *after = r->exclusive_start;
	json_t *names, *sums;
	struct api_token t;
	char **list;
	int rc;

	if (r->next_token != NULL) {
		if (api_token_decode(c->api->iter_key, r->next_token, strlen(r->next_token), &t) <
		            0 ||
		    t.kind != TOKEN_LIST_STREAMS)
			return api_fail(c->e, API_E_INVALID_ARGUMENT, "Invalid NextToken.");
		if (firn_now_ms() - t.issued_ms > c->api->iter_ttl_ms)
			return api_fail(c->e, API_E_EXPIRED_TOKEN,
			                "The NextToken has expired. Call ListStreams without it to "
			                "start over.");
		after = t.name;
	}
	rc = firn_catalog_list(c->api->catalog, &list, &n);
	if (rc < 0)
		return catalog_fail(c, rc, "list streams");
	if (after != NULL)
		while (i < n && strcmp(list[i], after) <= 0)
			i++;
	names = json_array();
	sums = json_array();
	for (; i < n && k < limit; i++) {
		struct firn_stream_info *s;

		if (firn_catalog_get(c->api->catalog, list[i], &s) < 0)
			continue; /* deleted since the list was taken */
		json_array_append_new(names, json_string(s->name));
		json_array_append_new(sums,
		                      json_pack("{s:s,s:o,s:s,s:o,s:o}", "StreamName", s->name,
		                                "StreamARN", jarn(c, s->name), "StreamStatus",
		                                firn_stream_status_name(s->status),
		                                "StreamModeDetails", stream_mode(),
		                                "StreamCreationTimestamp", jtime(s->created_ms)));
		firn_stream_info_free(s);
		k++;
	}
	c->out = json_pack("{s:o,s:o,s:b}", "StreamNames", names, "StreamSummaries", sums,
	                   "HasMoreStreams", i < n);
	if (i < n && k > 0) {
		char *tok;

		memset(&t, 0, sizeof(t));
		t.kind = TOKEN_LIST_STREAMS;
		t.issued_ms = firn_now_ms();
		snprintf(t.name, sizeof(t.name), "%s", list[i - 1]);
		tok = api_token_encode(c->api->iter_key, &t);
		if (tok != NULL)
			json_object_set_new(c->out, "NextToken", json_string(tok));
		free(tok);
	}
	free(list);
	return 0;
}

/* ---- ListShards ---------------------------------------------------------- */

/* Is shard sh in the set a ShardFilter selects? at_ms is the filter's point in time. */
static bool
filter_match(const struct firn_stream_info *s, const struct firn_shard_info *sh, int filter,
             int64_t at_ms)
{
	switch (filter) {
	case FILTER_AT_LATEST:
		return !sh->closed;
	case FILTER_AT_TRIM_HORIZON:
	case FILTER_AT_TIMESTAMP:
		/*
		 * Open at that moment: created at or before it, not closed by then.
		 * A moment before the stream existed means its first shards.
		 */
		at_ms = FIRN_MAX(at_ms, s->created_ms);
		return sh->created_ms <= at_ms && (!sh->closed || sh->closed_ms > at_ms);
	case FILTER_FROM_TRIM_HORIZON:
	case FILTER_FROM_TIMESTAMP:
		/* Open at that moment or later. */
		return !sh->closed || sh->closed_ms > at_ms;
	default:
		return true;
	}
}

static int
op_list_shards(struct call *c)
{
	struct api_req *r = c->req;
	uint32_t limit = r->has_limit ? r->limit : LIST_SHARDS_DEFAULT_LIMIT, i = 0, n = 0;
	int filter = r->filter;
	int64_t at_ms = r->filter_ts_ms;
	struct firn_stream_info *s = NULL;
	struct api_token t;
	json_t *shards;
	int rc;

	if (r->next_token != NULL) {
		if (r->exclusive_start != NULL)
			return api_fail(c->e, API_E_INVALID_ARGUMENT,
			                "NextToken and ExclusiveStartShardId cannot be provided "
			                "together.");
		if (api_token_decode(c->api->iter_key, r->next_token, strlen(r->next_token), &t) <
		            0 ||
		    t.kind != TOKEN_LIST_SHARDS)
			return api_fail(c->e, API_E_INVALID_ARGUMENT, "Invalid NextToken.");
		if (firn_now_ms() - t.issued_ms > c->api->iter_ttl_ms)
			return api_fail(c->e, API_E_EXPIRED_TOKEN,
			                "The NextToken has expired. Call ListShards without it to "
			                "start over.");
		/*
		 * Kinesis refuses StreamName next to NextToken, which breaks the
		 * AWS CLI's and botocore's own paginators (they resend every
		 * original parameter). firn accepts it when it names the token's
		 * stream; the token's filter wins over a resent ShardFilter.
		 */
		if (r->has_stream && strcmp(r->stream, t.name) != 0)
			return api_fail(c->e, API_E_INVALID_ARGUMENT,
			                "NextToken belongs to stream %s, not %s.", t.name,
			                r->stream);
		rc = firn_catalog_get(c->api->catalog, t.name, &s);
		if (rc < 0 || s->id != t.stream_id) {
			firn_stream_info_free(rc == 0 ? s : NULL);
			return not_found(c, t.name);
		}
		i = t.after_shard + 1;
		filter = t.filter;
		at_ms = t.filter_ts_ms;
	} else {
		if (load_stream(c, r->stream, &s) < 0)
			return -1;
		if (r->exclusive_start != NULL) {
			uint32_t after;

			if (api_shard_id_parse(r->exclusive_start, &after) == 0)
				i = after + 1;
		}
		switch (filter) {
		case FILTER_AFTER_SHARD_ID: {
			uint32_t after;

			if (r->filter_shard_id == NULL) {
				firn_stream_info_free(s);
				return api_fail(c->e, API_E_INVALID_ARGUMENT,
				                "ShardFilter of type AFTER_SHARD_ID requires a "
				                "ShardId.");
			}
			if (api_shard_id_parse(r->filter_shard_id, &after) == 0)
				i = FIRN_MAX(i, after + 1);
			filter = FILTER_NONE;
			break;
		}
		case FILTER_AT_TIMESTAMP:
		case FILTER_FROM_TIMESTAMP:
			if (!r->has_filter_ts) {
				firn_stream_info_free(s);
				return api_fail(c->e, API_E_INVALID_ARGUMENT,
				                "ShardFilter of type %s requires a Timestamp.",
				                filter == FILTER_AT_TIMESTAMP ? "AT_TIMESTAMP"
				                                              : "FROM_TIMESTAMP");
			}
			break;
		case FILTER_AT_TRIM_HORIZON:
		case FILTER_FROM_TRIM_HORIZON:
			at_ms = firn_now_ms() - (int64_t)s->retention_hours * 3600 * 1000;
			break;
		default:
			break;
		}
	}
	shards = json_array();
	for (; i < s->nshards && n < limit; i++) {
		if (!filter_match(s, &s->shards[i], filter, at_ms))
			continue;
		json_array_append_new(shards, shard_json(&s->shards[i]));
		n++;
	}
	/* Only a shard that the filter would still select makes another page. */
	while (i < s->nshards && !filter_match(s, &s->shards[i], filter, at_ms))
		i++;
	c->out = json_pack("{s:o}", "Shards", shards);
	if (i < s->nshards && n > 0) {
		char *tok;

		memset(&t, 0, sizeof(t));
		t.kind = TOKEN_LIST_SHARDS;
		t.issued_ms = firn_now_ms();
		t.stream_id = s->id;
		t.after_shard = i - 1;
		t.filter = (int8_t)filter;
		t.filter_ts_ms = at_ms;
		snprintf(t.name, sizeof(t.name), "%s", s->name);
		tok = api_token_encode(c->api->iter_key, &t);
		if (tok != NULL)
			json_object_set_new(c->out, "NextToken", json_string(tok));
		free(tok);
	}
	firn_stream_info_free(s);
	return 0;
}

/* ---- PutRecord(s) -------------------------------------------------------- */

enum put_state {
	PUT_PENDING,
	PUT_APPENDED,
	PUT_FAILED,
};

struct put_res {
	uint8_t state;
	enum api_err err;
	uint32_t shard;
	uint64_t counter;
	struct firn_u128 hash;
};

/* Sort key for grouping records by shard while keeping request order inside a shard. */
struct put_ord {
	uint32_t shard;
	uint32_t idx;
};

/*
 * Group entries by shard, keeping request order inside each shard: a stable
 * counting sort over the shard index (entries arrive in index order). 500
 * entries over a handful of shards make this much cheaper than qsort.
 * Returns 0 or -ENOMEM.
 */
static int
group_by_shard(struct put_ord *ord, uint32_t n, uint32_t nshards)
{
	struct put_ord *tmp = malloc((size_t)n * sizeof(*tmp));
	uint32_t *pos = calloc((size_t)nshards + 1, sizeof(*pos));
	uint32_t i, sum = 0;

	if (tmp == NULL || pos == NULL) {
		free(tmp);
		free(pos);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		pos[FIRN_MIN(ord[i].shard, nshards)]++;
	for (i = 0; i <= nshards; i++) {
		uint32_t c = pos[i];

		pos[i] = sum;
		sum += c;
	}
	for (i = 0; i < n; i++)
		tmp[pos[FIRN_MIN(ord[i].shard, nshards)]++] = ord[i];
	memcpy(ord, tmp, (size_t)n * sizeof(*ord));
	free(tmp);
	free(pos);
	return 0;
}

static void
put_fail(struct put_res *pr, enum api_err err)
{
	pr->state = PUT_FAILED;
	pr->err = err;
}

/*
 * Append one shard's group. Returns 0 (appended), -ESHUTDOWN (sealed: route
 * again), or marks the records failed.
 */
static int
put_group(struct call *c, const struct firn_stream_info *s, uint32_t shard,
          const struct put_ord *ord, uint32_t m, struct put_res *res, struct firn_record *recs)
{
	struct api_req *r = c->req;
	struct api_shard_ctr *ctr = api_metrics_shard(c->api->metrics, s->id, shard);
	uint64_t first, bytes = 0;
	uint32_t k, na = 0, backoff = 1;
	uint64_t deadline = firn_mono_ns() + (uint64_t)PUT_RETRY_MS * 1000000ull;
	int64_t now = firn_now_ms();
	int rc;

	for (k = 0; k < m; k++) {
		const struct api_put_entry *pe = &r->records[ord[k].idx];

		if (c->api->conf.throttle && ctr != NULL &&
		    !api_ctr_admit(ctr, pe->data_len + pe->key_len, now)) {
			put_fail(&res[ord[k].idx], API_E_THROUGHPUT);
			api_ctr_throttled(ctr, 1);
			continue;
		}
		recs[na] = (struct firn_record){
		        .key = (const uint8_t *)pe->key,
		        .key_len = (uint16_t)pe->key_len,
		        .data = pe->data,
		        .data_len = (uint32_t)pe->data_len,
		};
		bytes += pe->data_len;
		na++;
	}
	if (na == 0)
		return 0;
	for (;;) {
		rc = firn_store_append(c->api->store, s->id, shard, recs, na, &first, NULL);
		if (rc != -EAGAIN || firn_mono_ns() > deadline)
			break;
		/* The shard's pending buffer is full: the disk is behind. Back off briefly. */
		sleep_ms(backoff);
		backoff = FIRN_MIN(backoff * 2, 50u);
	}
	if (rc == -ESHUTDOWN)
		return rc;
	for (k = 0, na = 0; k < m; k++) {
		struct put_res *pr = &res[ord[k].idx];

		if (pr->state == PUT_FAILED)
			continue;
		if (rc == 0) {
			pr->state = PUT_APPENDED;
			pr->shard = shard;
			pr->counter = first + na++;
		} else {
			/*
			 * A full disk is a condition the producer should back off
			 * from and retry, not an internal failure: 503 for
			 * PutRecord, a throttling code per PutRecords entry.
			 */
			put_fail(pr, rc == -EAGAIN   ? API_E_THROUGHPUT
			             : rc == -ENOSPC ? API_E_UNAVAILABLE
			                             : API_E_INTERNAL);
		}
	}
	if (rc == 0 && ctr != NULL)
		api_ctr_in(ctr, na, bytes);
	if (rc < 0 && rc != -EAGAIN)
		FIRN_LOG(ERR, API_LOG, "append to stream '%s' shard %u: %s", s->name, shard,
		         strerror(-rc));
	return 0;
}

/*
 * Route, append and make durable every record of the request. The stream
 * snapshot s may be replaced (re-routing after a split). Fills res[].
 */
static int
put_all(struct call *c, struct firn_stream_info **sp, struct put_res *res)
{
	struct api_req *r = c->req;
	uint32_t n = r->nrecords, i, npend, g;
	struct put_ord *ord = malloc(n * sizeof(*ord));
	struct firn_record *recs = malloc(n * sizeof(*recs));
	uint64_t deadline = firn_mono_ns() + (uint64_t)PUT_RETRY_MS * 1000000ull;
	struct firn_stream_info *s = *sp;
	int rc = 0;

	if (ord == NULL || recs == NULL) {
		free(ord);
		free(recs);
		return api_fail(c->e, API_E_INTERNAL, "out of memory");
	}
	for (i = 0; i < n; i++) {
		const struct api_put_entry *pe = &r->records[i];

		res[i].state = PUT_PENDING;
		if (pe->has_ehk)
			res[i].hash = pe->ehk;
		else
			firn_hash_key(pe->key, pe->key_len, &res[i].hash);
	}
	for (;;) {
		bool resealed = false;

		for (i = 0, npend = 0; i < n; i++) {
			uint32_t shard;

			if (res[i].state != PUT_PENDING)
				continue;
			if (firn_stream_route(s, res[i].hash, &shard) < 0) {
				put_fail(&res[i], API_E_INTERNAL);
				continue;
			}
			ord[npend++] = (struct put_ord){shard, i};
		}
		if (group_by_shard(ord, npend, s->nshards) < 0) {
			free(ord);
			free(recs);
			return api_fail(c->e, API_E_INTERNAL, "out of memory");
		}
		for (i = 0; i < npend; i = g) {
			for (g = i + 1; g < npend && ord[g].shard == ord[i].shard; g++)
				;
			if (put_group(c, s, ord[i].shard, ord + i, g - i, res, recs) == -ESHUTDOWN)
				resealed = true;
		}
		if (!resealed)
			break;
		/* A shard was sealed by a split/merge/delete: wait for the catalog, re-route. */
		if (firn_mono_ns() > deadline) {
			for (i = 0; i < n; i++)
				if (res[i].state == PUT_PENDING)
					put_fail(&res[i], API_E_INTERNAL);
			break;
		}
		sleep_ms(2);
		firn_stream_info_free(s);
		s = NULL;
		*sp = NULL;
		rc = firn_catalog_get(c->api->catalog, r->stream, &s);
		if (rc < 0 || s->status == FIRN_STREAM_DELETING) {
			if (rc == 0)
				firn_stream_info_free(s);
			free(ord);
			free(recs);
			return not_found(c, r->stream);
		}
		*sp = s;
	}
	/*
	 * Durability: for each shard written, wait for its highest counter. The
	 * writers group-commit, so these waits overlap with other requests'.
	 */
	for (i = 0, npend = 0; i < n; i++)
		if (res[i].state == PUT_APPENDED)
			ord[npend++] = (struct put_ord){res[i].shard, i};
	if (group_by_shard(ord, npend, s->nshards) < 0) {
		/* Cannot wait for them, so cannot claim them durable. */
		for (i = 0; i < n; i++)
			if (res[i].state == PUT_APPENDED)
				put_fail(&res[i], API_E_INTERNAL);
		npend = 0;
	}
	for (i = 0; i < npend; i = g) {
		uint64_t last;

		for (g = i + 1; g < npend && ord[g].shard == ord[i].shard; g++)
			;
		last = res[ord[g - 1].idx].counter;
		rc = firn_store_wait_durable(c->api->store, s->id, ord[i].shard, last,
		                             PUT_DURABLE_TIMEOUT_MS);
		if (rc < 0) {
			uint32_t k;

			FIRN_LOG(ERR, API_LOG, "stream '%s' shard %u not durable: %s", s->name,
			         ord[i].shard, strerror(-rc));
			for (k = i; k < g; k++)
				put_fail(&res[ord[k].idx], API_E_INTERNAL);
		}
	}
	free(ord);
	free(recs);
	return 0;
}

static const char *
put_err_msg(struct call *c, const struct firn_stream_info *s, const struct put_res *pr, char *buf,
            size_t size)
{
	char sid[API_SHARD_ID_LEN + 1];

	if (pr->err == API_E_THROUGHPUT) {
		uint32_t shard = 0;

		firn_stream_route(s, pr->hash, &shard);
		api_shard_id_format(shard, sid);
		snprintf(buf, size, "Rate exceeded for shard %s in stream %s under account %s.",
		         sid, s->name, c->api->account_id);
	} else if (pr->err == API_E_UNAVAILABLE) {
		snprintf(buf, size,
		         "The appliance's disk is full: retry later (free space or lower the "
		         "retention of stream %s).",
		         s->name);
	} else {
		snprintf(buf, size, "Internal service failure.");
	}
	return buf;
}

static int
op_put_records(struct call *c, bool single)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	struct put_res *res;
	uint32_t i, failed = 0;
	char msg[256];

	if (!single && r->records_bytes > API_PUT_RECORDS_BYTES)
		return api_fail(c->e, API_E_INVALID_ARGUMENT,
		                "Records size exceeds 5 MB limit: %zu bytes of data and partition "
		                "keys in %u records.",
		                r->records_bytes, r->nrecords);
	if (load_stream(c, r->stream, &s) < 0)
		return -1;
	res = calloc(r->nrecords, sizeof(*res));
	if (res == NULL) {
		firn_stream_info_free(s);
		return api_fail(c->e, API_E_INTERNAL, "out of memory");
	}
	if (put_all(c, &s, res) < 0) {
		firn_stream_info_free(s);
		free(res);
		return -1;
	}
	if (single) {
		if (res[0].state != PUT_APPENDED) {
			api_fail(c->e, res[0].err, "%s",
			         put_err_msg(c, s, &res[0], msg, sizeof(msg)));
			firn_stream_info_free(s);
			free(res);
			return -1;
		}
		c->out = json_pack("{s:o,s:o,s:s}", "ShardId", jshard_id(res[0].shard),
		                   "SequenceNumber", jseq(res[0].shard, res[0].counter),
		                   "EncryptionType", "NONE");
	} else {
		/*
		 * The reply of the hottest call, written directly: 500 entries
		 * through jansson objects cost more than the rest of the reply
		 * path. Every string here is ASCII without quotes or backslashes
		 * (digits, shard ids, error names, stream names), so no escaping
		 * is needed.
		 */
		struct sbuf b;
		char seq[FIRN_U128_DEC_SIZE], sid[API_SHARD_ID_LEN + 1];

		for (i = 0; i < r->nrecords; i++)
			failed += res[i].state != PUT_APPENDED;
		sb_init(&b);
		sb_printf(&b, "{\"FailedRecordCount\":%u,\"Records\":[", failed);
		for (i = 0; i < r->nrecords; i++) {
			if (i)
				sb_addc(&b, ',');
			if (res[i].state == PUT_APPENDED) {
				firn_seq_format(res[i].shard, res[i].counter, seq);
				api_shard_id_format(res[i].shard, sid);
				sb_adds(&b, "{\"SequenceNumber\":\"");
				sb_adds(&b, seq);
				sb_adds(&b, "\",\"ShardId\":\"");
				sb_adds(&b, sid);
				sb_adds(&b, "\"}");
			} else {
				/* Failed entries carry only the error, as in Kinesis. */
				sb_printf(&b, "{\"ErrorCode\":\"%s\",\"ErrorMessage\":\"%s\"}",
				          api_err_type(res[i].err == API_E_UNAVAILABLE
				                               ? API_E_THROUGHPUT
				                               : res[i].err),
				          put_err_msg(c, s, &res[i], msg, sizeof(msg)));
			}
		}
		sb_adds(&b, "],\"EncryptionType\":\"NONE\"}");
		c->raw = sb_take(&b, &c->raw_len);
		if (c->raw == NULL) {
			firn_stream_info_free(s);
			free(res);
			return api_fail(c->e, API_E_INTERNAL, "out of memory");
		}
	}
	firn_stream_info_free(s);
	free(res);
	return 0;
}

/* ---- iterators and reads ------------------------------------------------- */

/* Next counter the shard will give (0 for a shard that never had a log). */
static int
shard_next(struct call *c, uint64_t sid, uint32_t shard, struct firn_shard_stat *st)
{
	int rc = firn_store_shard_stat(c->api->store, sid, shard, st);

	if (rc == -ENOENT) {
		memset(st, 0, sizeof(*st));
		return 0;
	}
	if (rc < 0)
		return api_fail(c->e, API_E_INTERNAL, "store: %s", strerror(-rc));
	return 0;
}

static int
op_get_shard_iterator(struct call *c)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	const struct firn_shard_info *sh;
	struct firn_shard_stat st;
	struct api_iter it = {0};
	char out[API_ITER_STR_MAX], sid[API_SHARD_ID_LEN + 1];
	uint32_t idx, seq_shard;
	uint64_t seq_counter, next;

	if (load_stream(c, r->stream, &s) < 0)
		return -1;
	if (find_shard(c, s, r->shard_id, &idx) < 0 || shard_next(c, s->id, idx, &st) < 0)
		goto fail;
	sh = &s->shards[idx];
	/* A closed shard ends at end_counter even if the store's view lags. */
	next = sh->closed ? (sh->empty_at_close ? sh->start_counter : sh->end_counter + 1)
	                  : st.next_counter;
	it.stream_id = s->id;
	it.shard = idx;
	it.mode = ITER_MODE_COUNTER;
	it.issued_ms = firn_now_ms();
	switch (r->iter_type) {
	case ITER_TRIM_HORIZON:
		it.counter = sh->start_counter;
		break;
	case ITER_LATEST:
		it.counter = next;
		break;
	case ITER_AT_SEQUENCE_NUMBER:
	case ITER_AFTER_SEQUENCE_NUMBER:
		if (r->start_seq == NULL) {
			api_fail(c->e, API_E_INVALID_ARGUMENT,
			         "Must specify StartingSequenceNumber for %s iterators.",
			         r->iter_type == ITER_AT_SEQUENCE_NUMBER ? "AT_SEQUENCE_NUMBER"
			                                                 : "AFTER_SEQUENCE_NUMBER");
			goto fail;
		}
		if (firn_seq_parse(r->start_seq, strlen(r->start_seq), &seq_shard, &seq_counter) <
		    0) {
			api_fail(
			        c->e, API_E_INVALID_ARGUMENT,
			        "StartingSequenceNumber %s used in GetShardIterator on shard %s in "
			        "stream %s under account %s is invalid.",
			        r->start_seq, r->shard_id, s->name, c->api->account_id);
			goto fail;
		}
		if (seq_shard != idx) {
			api_shard_id_format(seq_shard, sid);
			api_fail(c->e, API_E_INVALID_ARGUMENT,
			         "Invalid StartingSequenceNumber. It encodes %s, while it was used "
			         "in "
			         "a call to a shard with %s",
			         sid, r->shard_id);
			goto fail;
		}
		if (seq_counter >= next) {
			api_fail(
			        c->e, API_E_INVALID_ARGUMENT,
			        "StartingSequenceNumber %s used in GetShardIterator on shard %s in "
			        "stream %s under account %s is beyond the shard's last record.",
			        r->start_seq, r->shard_id, s->name, c->api->account_id);
			goto fail;
		}
		it.counter = seq_counter + (r->iter_type == ITER_AFTER_SEQUENCE_NUMBER);
		break;
	case ITER_AT_TIMESTAMP:
		if (!r->has_ts) {
			api_fail(c->e, API_E_INVALID_ARGUMENT,
			         "Must specify timestampInMillis parameter for iterator of type "
			         "AT_TIMESTAMP. Current request has no timestamp parameter.");
			goto fail;
		}
		if (r->ts_ms > it.issued_ms) {
			api_fail(c->e, API_E_INVALID_ARGUMENT,
			         "The timestampInMillis parameter cannot be greater than the "
			         "currentTimestampInMillis. timestampInMillis: %lld, "
			         "currentTimestampInMillis: %lld",
			         (long long)r->ts_ms, (long long)it.issued_ms);
			goto fail;
		}
		it.mode = ITER_MODE_TIME;
		it.ts_ms = r->ts_ms;
		break;
	}
	api_iter_encode(c->api->iter_key, &it, out);
	c->out = json_pack("{s:s}", "ShardIterator", out);
	firn_stream_info_free(s);
	return 0;
fail:
	firn_stream_info_free(s);
	return -1;
}

static json_t *
child_shards(const struct firn_stream_info *s, uint32_t parent)
{
	json_t *list = json_array();
	uint32_t i;

	for (i = 0; i < s->nshards; i++) {
		const struct firn_shard_info *ch = &s->shards[i];
		json_t *parents;

		if (ch->parent != (int64_t)parent && ch->adjacent_parent != (int64_t)parent)
			continue;
		parents = json_array();
		if (ch->parent >= 0)
			json_array_append_new(parents, jshard_id((uint32_t)ch->parent));
		if (ch->adjacent_parent >= 0)
			json_array_append_new(parents, jshard_id((uint32_t)ch->adjacent_parent));
		json_array_append_new(list, json_pack("{s:o,s:o,s:o}", "ShardId",
		                                      jshard_id(ch->index), "ParentShards", parents,
		                                      "HashKeyRange", hash_range(ch)));
	}
	return list;
}

/*
 * One record of a GetRecords reply, written straight into the reply buffer:
 * up to 10000 records per call go through here, and a jansson object per
 * record (plus a base64 copy) would dominate the read path.
 */
static bool
record_out(struct sbuf *b, uint32_t shard, const struct firn_record *rec, bool first)
{
	char seq[FIRN_U128_DEC_SIZE], *d;

	firn_seq_format(shard, rec->counter, seq);
	sb_adds(b, first ? "{\"SequenceNumber\":\"" : ",{\"SequenceNumber\":\"");
	sb_adds(b, seq);
	/* Epoch seconds with the milliseconds exact (not through a double). */
	sb_printf(b, "\",\"ApproximateArrivalTimestamp\":%lld.%03lld,\"Data\":\"",
	          (long long)(rec->ts_ms / 1000), (long long)(rec->ts_ms % 1000));
	d = sb_extend(b, FIRN_B64_ENC_SIZE(rec->data_len) - 1);
	if (d == NULL)
		return false;
	firn_b64_encode(rec->data, rec->data_len, d);
	sb_adds(b, "\",\"PartitionKey\":");
	sb_json_str(b, rec->key, rec->key_len);
	sb_addc(b, '}');
	return !b->oom;
}

static int
op_get_records(struct call *c)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s = NULL;
	const struct firn_shard_info *sh;
	struct firn_read_req rq = {0};
	struct firn_read_res rs = {0};
	struct api_iter it;
	struct api_shard_ctr *ctr;
	struct sbuf b;
	uint64_t out_bytes = 0, end_next = UINT64_MAX, next;
	int64_t now = firn_now_ms(), behind = 0;
	char out[API_ITER_STR_MAX];
	bool at_end = false;
	uint32_t i;
	int rc;

	if (api_iter_decode(c->api->iter_key, r->iterator, strlen(r->iterator), &it) < 0)
		return api_fail(c->e, API_E_INVALID_ARGUMENT, "Invalid ShardIterator.");
	if (now - it.issued_ms > c->api->iter_ttl_ms) {
		char ca[32], cb[32];
		time_t ta = (time_t)(it.issued_ms / 1000), tb = (time_t)(now / 1000);
		struct tm tma, tmb;

		gmtime_r(&ta, &tma);
		gmtime_r(&tb, &tmb);
		strftime(ca, sizeof(ca), "%a %b %d %H:%M:%S UTC %Y", &tma);
		strftime(cb, sizeof(cb), "%a %b %d %H:%M:%S UTC %Y", &tmb);
		return api_fail(c->e, API_E_EXPIRED_ITERATOR,
		                "Iterator expired. The iterator was created at time %s while right "
		                "now it is %s which is further in the future than the tolerated "
		                "delay of %lld milliseconds.",
		                ca, cb, (long long)c->api->iter_ttl_ms);
	}
	rc = firn_catalog_get_by_id(c->api->catalog, it.stream_id, &s);
	if (rc < 0 || it.shard >= s->nshards || s->status == FIRN_STREAM_DELETING) {
		firn_stream_info_free(rc == 0 ? s : NULL);
		return api_fail(c->e, API_E_NOT_FOUND,
		                "The stream of this ShardIterator no longer exists under account "
		                "%s.",
		                c->api->account_id);
	}
	if (r->has_arn && strcmp(r->stream, s->name) != 0) {
		firn_stream_info_free(s);
		return api_fail(c->e, API_E_INVALID_ARGUMENT,
		                "The ShardIterator belongs to stream %s, not %s.", s->name,
		                r->stream);
	}
	sh = &s->shards[it.shard];
	if (sh->closed)
		end_next = sh->empty_at_close ? sh->start_counter : sh->end_counter + 1;
	sb_init(&b);
	sb_adds(&b, "{\"Records\":[");
	next = it.counter;
	if (it.mode == ITER_MODE_COUNTER && it.counter >= end_next) {
		at_end = true;
	} else {
		rq.from = it.mode == ITER_MODE_TIME ? FIRN_READ_AT_TIME : FIRN_READ_AT_COUNTER;
		rq.counter = it.counter;
		rq.ts_ms = it.ts_ms;
		rq.max_records = r->has_limit ? r->limit : API_GET_LIMIT_MAX;
		rq.max_bytes = API_GET_BYTES_MAX;
		rc = firn_store_read(c->api->store, s->id, it.shard, &rq, &rs);
		if (rc == -ENOENT) {
			/* No log yet: nothing was ever written to this shard. */
			memset(&rs, 0, sizeof(rs));
			rs.next_counter = it.mode == ITER_MODE_TIME ? 0 : it.counter;
		} else if (rc < 0) {
			FIRN_LOG(ERR, API_LOG, "read stream '%s' shard %u: %s", s->name, it.shard,
			         firn_err_msg());
			sb_free(&b);
			firn_stream_info_free(s);
			return api_fail(c->e, API_E_INTERNAL, "Internal service failure (%s).",
			                strerror(-rc));
		}
		for (i = 0; i < rs.n; i++) {
			if (rs.recs[i].counter >= end_next)
				break;
			if (!record_out(&b, it.shard, &rs.recs[i], i == 0))
				break;
			out_bytes += rs.recs[i].data_len;
		}
		if (i > 0) {
			next = rs.recs[i - 1].counter + 1;
			if (next < rs.durable_next && rs.tip_ts_ms > 0)
				behind = FIRN_MAX(0, rs.tip_ts_ms - rs.recs[i - 1].ts_ms);
		} else if (it.mode == ITER_MODE_COUNTER) {
			/* Nothing returned: start where the store says (a trimmed start moves up).
			 */
			next = FIRN_MAX(it.counter, rs.next_counter);
		}
		if (it.mode == ITER_MODE_TIME && i == 0) {
			/*
			 * Still nothing at or after the timestamp: keep asking by time,
			 * unless the shard is closed, when nothing more can come.
			 */
			next = 0;
			at_end = sh->closed;
		} else {
			it.mode = ITER_MODE_COUNTER;
			at_end = next >= end_next;
		}
		ctr = api_metrics_shard(c->api->metrics, s->id, it.shard);
		if (ctr != NULL)
			api_ctr_out(ctr, i, out_bytes, behind);
		firn_read_res_free(&rs);
	}
	sb_printf(&b, "],\"MillisBehindLatest\":%lld", (long long)behind);
	if (at_end) {
		/* Drained a closed shard: no next iterator; the children take over. */
		json_t *ch = child_shards(s, it.shard);
		char *cs = json_dumps(ch, JSON_FLAGS);

		sb_adds(&b, ",\"ChildShards\":");
		sb_adds(&b, cs ? cs : "[]");
		free(cs);
		json_decref(ch);
	} else {
		it.counter = next;
		it.issued_ms = now;
		api_iter_encode(c->api->iter_key, &it, out);
		sb_adds(&b, ",\"NextShardIterator\":\"");
		sb_adds(&b, out);
		sb_addc(&b, '"');
	}
	sb_addc(&b, '}');
	firn_stream_info_free(s);
	c->raw = sb_take(&b, &c->raw_len);
	if (c->raw == NULL)
		return api_fail(c->e, API_E_INTERNAL, "out of memory building the reply");
	return 0;
}

/* ---- resharding ---------------------------------------------------------- */

/* Seal a shard in the store so no append can land after the catalog closes it. */
static int
seal(struct call *c, uint64_t sid, uint32_t shard, uint64_t *last, bool *empty)
{
	int rc = firn_store_shard_create(c->api->store, sid, shard);

	if (rc == 0)
		rc = firn_store_shard_seal(c->api->store, sid, shard, last, empty);
	if (rc < 0) {
		FIRN_LOG(ERR, API_LOG, "seal shard %u: %s", shard, firn_err_msg());
		return api_fail(c->e, API_E_INTERNAL, "Could not seal shard %u (%s).", shard,
		                strerror(-rc));
	}
	return 0;
}

/* SplitShard and MergeShards on a shard a reshard already closed: AWS's answer. */
static void
shard_closed_fail(struct call *c, const struct firn_stream_info *s, const char *shard_id)
{
	api_fail(c->e, API_E_IN_USE,
	         "Shard %s in stream %s under account %s has already been merged or split, "
	         "and thus is not eligible for merging or splitting.",
	         shard_id, s->name, c->api->account_id);
}

static int
op_split_shard(struct call *c)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	const struct firn_shard_info *sh;
	uint32_t idx, child[2];
	uint64_t last = 0;
	bool empty = true;
	int rc = -1;

	pthread_mutex_lock(&c->api->admin_lock);
	if (load_stream(c, r->stream, &s) < 0)
		goto unlock;
	if (require_active(c, s) < 0 || find_shard(c, s, r->shard_a, &idx) < 0)
		goto out;
	sh = &s->shards[idx];
	if (sh->closed) {
		shard_closed_fail(c, s, r->shard_a);
		goto out;
	}
	if (firn_u128_cmp(r->new_start, sh->start) <= 0 ||
	    firn_u128_cmp(r->new_start, sh->end) > 0) {
		char k[FIRN_U128_DEC_SIZE], a[FIRN_U128_DEC_SIZE], b[FIRN_U128_DEC_SIZE];

		firn_u128_format(r->new_start, k);
		firn_u128_format(sh->start, a);
		firn_u128_format(sh->end, b);
		api_fail(
		        c->e, API_E_INVALID_ARGUMENT,
		        "NewStartingHashKey %s used in SplitShard() on shard %s in stream %s under "
		        "account %s is not both greater than the shard's StartingHashKey %s and at "
		        "most the shard's EndingHashKey %s.",
		        k, r->shard_a, s->name, c->api->account_id, a, b);
		goto out;
	}
	if (shard_limit_check(c, 1) < 0)
		goto out;
	firn_catalog_set_status(c->api->catalog, s->name, FIRN_STREAM_UPDATING);
	if (seal(c, s->id, idx, &last, &empty) == 0) {
		rc = firn_catalog_split(c->api->catalog, s->name, idx, r->new_start, last, empty,
		                        child);
		if (rc < 0)
			catalog_fail(c, rc, "split shard");
		else
			FIRN_LOG(INFO, API_LOG, "stream '%s': split shard %u into %u and %u",
			         s->name, idx, child[0], child[1]);
	}
	firn_catalog_set_status(c->api->catalog, s->name, FIRN_STREAM_ACTIVE);
out:
	firn_stream_info_free(s);
unlock:
	pthread_mutex_unlock(&c->api->admin_lock);
	return rc < 0 ? -1 : 0;
}

static int
op_merge_shards(struct call *c)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	const struct firn_shard_info *a, *b;
	uint32_t ia, ib, child;
	uint64_t last[2] = {0, 0};
	bool empty[2] = {true, true};
	int rc = -1;

	pthread_mutex_lock(&c->api->admin_lock);
	if (load_stream(c, r->stream, &s) < 0)
		goto unlock;
	if (require_active(c, s) < 0 || find_shard(c, s, r->shard_a, &ia) < 0 ||
	    find_shard(c, s, r->shard_b, &ib) < 0)
		goto out;
	a = &s->shards[ia];
	b = &s->shards[ib];
	if (a->closed || b->closed) {
		shard_closed_fail(c, s, a->closed ? r->shard_a : r->shard_b);
		goto out;
	}
	/* The catalog wants the lower range first; either order is adjacent to AWS. */
	if (firn_u128_cmp(a->start, b->start) > 0) {
		const struct firn_shard_info *t = a;

		a = b;
		b = t;
	}
	if (ia == ib || firn_u128_cmp(a->end, FIRN_U128_MAX) == 0 ||
	    firn_u128_cmp(firn_u128_add(a->end, firn_u128_from_u64(1)), b->start) != 0) {
		api_fail(c->e, API_E_INVALID_ARGUMENT,
		         "Shards %s and %s in stream %s under account %s are not an adjacent pair "
		         "of shards eligible for merging",
		         r->shard_a, r->shard_b, s->name, c->api->account_id);
		goto out;
	}
	ia = a->index;
	ib = b->index;
	firn_catalog_set_status(c->api->catalog, s->name, FIRN_STREAM_UPDATING);
	if (seal(c, s->id, ia, &last[0], &empty[0]) == 0 &&
	    seal(c, s->id, ib, &last[1], &empty[1]) == 0) {
		rc = firn_catalog_merge(c->api->catalog, s->name, ia, ib, last, empty, &child);
		if (rc < 0)
			catalog_fail(c, rc, "merge shards");
		else
			FIRN_LOG(INFO, API_LOG, "stream '%s': merged shards %u and %u into %u",
			         s->name, ia, ib, child);
	}
	firn_catalog_set_status(c->api->catalog, s->name, FIRN_STREAM_ACTIVE);
out:
	firn_stream_info_free(s);
unlock:
	pthread_mutex_unlock(&c->api->admin_lock);
	return rc < 0 ? -1 : 0;
}

static int
op_update_shard_count(struct call *c)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	uint64_t *last = NULL;
	bool *empty = NULL;
	uint32_t i, j, cur;
	int rc = -1;

	pthread_mutex_lock(&c->api->admin_lock);
	if (load_stream(c, r->stream, &s) < 0)
		goto unlock;
	if (require_active(c, s) < 0)
		goto out;
	cur = s->nopen;
	if (r->target > 2 * (uint64_t)cur || (uint64_t)r->target * 2 < cur) {
		api_fail(c->e, API_E_LIMIT,
		         "UpdateShardCount can at most double or halve the open shards: stream %s "
		         "has %u, %u requested.",
		         s->name, cur, r->target);
		goto out;
	}
	if (r->target > FIRN_SHARDS_MAX) {
		api_fail(c->e, API_E_LIMIT, "TargetShardCount %u is above the per-stream limit %u.",
		         r->target, FIRN_SHARDS_MAX);
		goto out;
	}
	if (r->target > cur && shard_limit_check(c, r->target - cur) < 0)
		goto out;
	last = calloc(cur, sizeof(*last));
	empty = calloc(cur, sizeof(*empty));
	if (last == NULL || empty == NULL) {
		api_fail(c->e, API_E_INTERNAL, "out of memory");
		goto out;
	}
	firn_catalog_set_status(c->api->catalog, s->name, FIRN_STREAM_UPDATING);
	/* Seal info goes to the catalog in ascending index order of the open shards. */
	for (i = 0, j = 0; i < s->nshards && j < cur; i++) {
		if (s->shards[i].closed)
			continue;
		if (seal(c, s->id, i, &last[j], &empty[j]) < 0)
			break;
		j++;
	}
	if (j == cur) {
		rc = firn_catalog_reshard_uniform(c->api->catalog, s->name, r->target, last, empty);
		if (rc < 0)
			catalog_fail(c, rc, "update shard count");
		else
			FIRN_LOG(INFO, API_LOG, "stream '%s': %u open shards -> %u", s->name, cur,
			         r->target);
	}
	firn_catalog_set_status(c->api->catalog, s->name, FIRN_STREAM_ACTIVE);
	if (rc == 0)
		c->out = json_pack("{s:s,s:i,s:i,s:o}", "StreamName", s->name, "CurrentShardCount",
		                   (int)cur, "TargetShardCount", (int)r->target, "StreamARN",
		                   jarn(c, s->name));
out:
	free(last);
	free(empty);
	firn_stream_info_free(s);
unlock:
	pthread_mutex_unlock(&c->api->admin_lock);
	return rc < 0 ? -1 : 0;
}

/* ---- retention, tags, limits --------------------------------------------- */

static int
op_retention(struct call *c, bool increase)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	int rc = -1;

	pthread_mutex_lock(&c->api->admin_lock);
	if (load_stream(c, r->stream, &s) < 0)
		goto unlock;
	if (r->hours < FIRN_RETENTION_MIN_H) {
		api_fail(c->e, API_E_INVALID_ARGUMENT,
		         "Minimum allowed retention period is %d hours. Requested retention period "
		         "(%lld hours) is too short.",
		         FIRN_RETENTION_MIN_H, (long long)r->hours);
	} else if (r->hours > FIRN_RETENTION_MAX_H) {
		api_fail(c->e, API_E_INVALID_ARGUMENT,
		         "Maximum allowed retention period is %d hours. Requested retention period "
		         "(%lld hours) is too long.",
		         FIRN_RETENTION_MAX_H, (long long)r->hours);
	} else if (increase && r->hours < s->retention_hours) {
		api_fail(c->e, API_E_INVALID_ARGUMENT,
		         "Requested retention period (%lld hours) for stream %s can not be shorter "
		         "than existing retention period (%u hours). Use "
		         "DecreaseRetentionPeriod API.",
		         (long long)r->hours, s->name, s->retention_hours);
	} else if (!increase && r->hours > s->retention_hours) {
		api_fail(c->e, API_E_INVALID_ARGUMENT,
		         "Requested retention period (%lld hours) for stream %s can not be longer "
		         "than existing retention period (%u hours). Use "
		         "IncreaseRetentionPeriod API.",
		         (long long)r->hours, s->name, s->retention_hours);
	} else {
		rc = firn_catalog_set_retention(c->api->catalog, s->name, (uint32_t)r->hours);
		if (rc < 0)
			catalog_fail(c, rc, "set retention");
		else if (firn_store_set_retention(c->api->store, s->id, (uint32_t)r->hours) < 0)
			FIRN_LOG(WARN, API_LOG, "stream '%s': store retention not updated: %s",
			         s->name, firn_err_msg());
	}
	firn_stream_info_free(s);
unlock:
	pthread_mutex_unlock(&c->api->admin_lock);
	return rc < 0 ? -1 : 0;
}

static int
op_add_tags(struct call *c)
{
	struct api_req *r = c->req;
	struct firn_stream_info *s;
	uint32_t i, j, fresh = 0;
	int rc;

	for (i = 0; i < r->ntags; i++)
		if (strncmp(r->tags[i].key, "aws:", 4) == 0)
			return api_fail(c->e, API_E_INVALID_ARGUMENT,
			                "Tag keys cannot start with the reserved prefix 'aws:'.");
	pthread_mutex_lock(&c->api->admin_lock);
	rc = load_stream(c, r->stream, &s);
	if (rc == 0) {
		for (i = 0; i < r->ntags; i++) {
			for (j = 0; j < s->ntags; j++)
				if (strcmp(s->tags[j].key, r->tags[i].key) == 0)
					break;
			fresh += j == s->ntags;
		}
		if (s->ntags + fresh > FIRN_TAGS_MAX) {
			rc = api_fail(c->e, API_E_LIMIT,
			              "Failed to add tags to stream %s under account %s because a "
			              "given stream cannot have more than %d tags.",
			              s->name, c->api->account_id, FIRN_TAGS_MAX);
		} else {
			rc = firn_catalog_tag(c->api->catalog, s->name, r->tags, r->ntags);
			if (rc < 0)
				rc = catalog_fail(c, rc, "add tags");
		}
		firn_stream_info_free(s);
	}
	pthread_mutex_unlock(&c->api->admin_lock);
	return rc;
}

static int
op_remove_tags(struct call *c)
{
	struct firn_stream_info *s;
	int rc;

	pthread_mutex_lock(&c->api->admin_lock);
	rc = load_stream(c, c->req->stream, &s);
	if (rc == 0) {
		rc = firn_catalog_untag(c->api->catalog, s->name, c->req->tag_keys, c->req->nkeys);
		if (rc < 0)
			rc = catalog_fail(c, rc, "remove tags");
		firn_stream_info_free(s);
	}
	pthread_mutex_unlock(&c->api->admin_lock);
	return rc;
}

static int
tag_cmp(const void *a, const void *b)
{
	return strcmp(((const struct firn_tag *)a)->key, ((const struct firn_tag *)b)->key);
}

static int
op_list_tags(struct call *c)
{
	struct api_req *r = c->req;
	uint32_t i = 0, n = 0, limit = r->has_limit ? r->limit : LIST_TAGS_DEFAULT_LIMIT;
	struct firn_stream_info *s;
	json_t *tags;

	if (load_stream(c, r->stream, &s) < 0)
		return -1;
	/* Key order makes ExclusiveStartTagKey pagination stable. */
	qsort(s->tags, s->ntags, sizeof(*s->tags), tag_cmp);
	if (r->exclusive_start != NULL)
		while (i < s->ntags && strcmp(s->tags[i].key, r->exclusive_start) <= 0)
			i++;
	tags = json_array();
	for (; i < s->ntags && n < limit; i++, n++)
		json_array_append_new(tags, json_pack("{s:s,s:s}", "Key", s->tags[i].key, "Value",
		                                      s->tags[i].value));
	c->out = json_pack("{s:o,s:b}", "Tags", tags, "HasMoreTags", i < s->ntags);
	firn_stream_info_free(s);
	return 0;
}

static int
op_describe_limits(struct call *c)
{
	c->out = json_pack("{s:i,s:i,s:i,s:i}", "ShardLimit", (int)c->api->conf.shard_limit,
	                   "OpenShardCount", (int)open_shards_total(c->api), "OnDemandStreamCount",
	                   0, "OnDemandStreamCountLimit", 50);
	return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

static int
run_op(struct call *c)
{
	switch (c->req->op) {
	case OP_CREATE_STREAM:
		return op_create_stream(c);
	case OP_DELETE_STREAM:
		return op_delete_stream(c);
	case OP_DESCRIBE_STREAM:
		return op_describe_stream(c);
	case OP_DESCRIBE_STREAM_SUMMARY:
		return op_describe_stream_summary(c);
	case OP_LIST_STREAMS:
		return op_list_streams(c);
	case OP_LIST_SHARDS:
		return op_list_shards(c);
	case OP_PUT_RECORD:
		return op_put_records(c, true);
	case OP_PUT_RECORDS:
		return op_put_records(c, false);
	case OP_GET_SHARD_ITERATOR:
		return op_get_shard_iterator(c);
	case OP_GET_RECORDS:
		return op_get_records(c);
	case OP_SPLIT_SHARD:
		return op_split_shard(c);
	case OP_MERGE_SHARDS:
		return op_merge_shards(c);
	case OP_UPDATE_SHARD_COUNT:
		return op_update_shard_count(c);
	case OP_INCREASE_RETENTION:
		return op_retention(c, true);
	case OP_DECREASE_RETENTION:
		return op_retention(c, false);
	case OP_ADD_TAGS:
		return op_add_tags(c);
	case OP_REMOVE_TAGS:
		return op_remove_tags(c);
	case OP_LIST_TAGS:
		return op_list_tags(c);
	case OP_DESCRIBE_LIMITS:
		return op_describe_limits(c);
	case OP_COUNT:
		break;
	}
	return api_fail(c->e, API_E_UNKNOWN_OP, "Unknown operation");
}

void
api_dispatch(struct firn_api *api, int op, const char *body, size_t len, const char *region,
             struct api_reply *reply)
{
	struct api_error e = {0};
	struct api_req req;
	struct call c = {.api = api, .req = &req, .region = region, .e = &e};

	memset(reply, 0, sizeof(*reply));
	if (api_req_parse((enum api_op)op, body, len, &req, &e) == 0 && run_op(&c) == 0) {
		if (c.raw != NULL) {
			reply->body = c.raw;
			reply->len = c.raw_len;
		} else {
			if (c.out == NULL)
				c.out = json_object();
			reply->body = json_dumps(c.out, JSON_FLAGS);
			reply->len = reply->body ? strlen(reply->body) : 0;
		}
		reply->status = 200;
		reply->err = API_OK;
		if (reply->body == NULL) {
			api_fail(&e, API_E_INTERNAL, "out of memory building the reply");
			api_reply_error(reply, &e);
		}
	} else {
		if (e.code == API_OK)
			api_fail(&e, API_E_INTERNAL, "Internal service failure.");
		api_reply_error(reply, &e);
	}
	json_decref(c.out);
	api_req_free(&req);
	api_metrics_request(api->metrics, op, reply->err);
}
