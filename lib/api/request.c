/*
 * request.c - from a JSON body to a validated struct api_req.
 *
 * The Kinesis API model fixes, for every operation, which members exist,
 * their JSON types, and constraints (lengths, patterns, ranges, enums). An
 * AWS endpoint answers violations in three tiers, and SDKs and people read
 * the difference, so this file keeps them apart:
 *
 *   SerializationException  the body is not a JSON object, or a member has
 *                           the wrong JSON type, or Data is not base64;
 *   ValidationException     every constraint violation at once, in AWS words:
 *                           "2 validation errors detected: Value '' at
 *                           'streamName' failed to satisfy constraint: Member
 *                           must have length greater than or equal to 1; ...";
 *   InvalidArgumentException checks that need no catalog (a hash key above
 *                           2^128-1, a PutRecords batch over 5 MiB, ...).
 *
 * Everything after this point (ops.c) can trust the request's shape. Nothing
 * here touches the catalog or the store, which is what lets the fuzz harness
 * throw arbitrary bytes at api_req_parse() in a tight loop.
 *
 * Unknown members are ignored, as AWS does, so newer SDKs that send extra
 * fields (StreamId, WarmThroughputMiBps, ...) keep working.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

/* ---- errors -------------------------------------------------------------- */

static const struct {
	const char *type;
	int http;
} err_tab[API_E_COUNT] = {
        [API_OK] = {"", 200},
        [API_E_VALIDATION] = {"ValidationException", 400},
        [API_E_SERIALIZATION] = {"SerializationException", 400},
        [API_E_UNKNOWN_OP] = {"UnknownOperationException", 400},
        [API_E_INVALID_ARGUMENT] = {"InvalidArgumentException", 400},
        [API_E_NOT_FOUND] = {"ResourceNotFoundException", 400},
        [API_E_IN_USE] = {"ResourceInUseException", 400},
        [API_E_LIMIT] = {"LimitExceededException", 400},
        [API_E_EXPIRED_ITERATOR] = {"ExpiredIteratorException", 400},
        [API_E_EXPIRED_TOKEN] = {"ExpiredNextTokenException", 400},
        [API_E_THROUGHPUT] = {"ProvisionedThroughputExceededException", 400},
        [API_E_MISSING_AUTH] = {"MissingAuthenticationTokenException", 400},
        [API_E_INCOMPLETE_SIG] = {"IncompleteSignatureException", 400},
        [API_E_INVALID_SIG] = {"InvalidSignatureException", 400},
        [API_E_UNRECOGNIZED_CLIENT] = {"UnrecognizedClientException", 400},
        [API_E_ACCESS_DENIED] = {"AccessDeniedException", 400},
        [API_E_TOO_LARGE] = {"RequestEntityTooLargeException", 413},
        [API_E_INTERNAL] = {"InternalFailure", 500},
        [API_E_UNAVAILABLE] = {"ServiceUnavailable", 503},
};

const char *
api_err_type(enum api_err code)
{
	return (unsigned)code < API_E_COUNT ? err_tab[code].type : "InternalFailure";
}

int
api_err_http(enum api_err code)
{
	return (unsigned)code < API_E_COUNT ? err_tab[code].http : 500;
}

int
api_fail(struct api_error *e, enum api_err code, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

void
api_reply_error(struct api_reply *reply, const struct api_error *e)
{
	json_t *j = json_pack("{s:s,s:s}", "__type", api_err_type(e->code), "message", e->msg);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	/* A message with bytes jansson refuses (not UTF-8) still yields an error body. */
	if (s == NULL) {
		json_decref(j);
		j = json_pack("{s:s}", "__type", api_err_type(e->code));
		s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	}
	json_decref(j);
	reply->status = api_err_http(e->code);
	reply->err = e->code;
	reply->body = s;
	reply->len = s ? strlen(s) : 0;
}

/* ---- operations ---------------------------------------------------------- */

static const char *const op_names[OP_COUNT] = {
        [OP_CREATE_STREAM] = "CreateStream",
        [OP_DELETE_STREAM] = "DeleteStream",
        [OP_DESCRIBE_STREAM] = "DescribeStream",
        [OP_DESCRIBE_STREAM_SUMMARY] = "DescribeStreamSummary",
        [OP_LIST_STREAMS] = "ListStreams",
        [OP_LIST_SHARDS] = "ListShards",
        [OP_PUT_RECORD] = "PutRecord",
        [OP_PUT_RECORDS] = "PutRecords",
        [OP_GET_SHARD_ITERATOR] = "GetShardIterator",
        [OP_GET_RECORDS] = "GetRecords",
        [OP_SPLIT_SHARD] = "SplitShard",
        [OP_MERGE_SHARDS] = "MergeShards",
        [OP_UPDATE_SHARD_COUNT] = "UpdateShardCount",
        [OP_INCREASE_RETENTION] = "IncreaseStreamRetentionPeriod",
        [OP_DECREASE_RETENTION] = "DecreaseStreamRetentionPeriod",
        [OP_ADD_TAGS] = "AddTagsToStream",
        [OP_REMOVE_TAGS] = "RemoveTagsFromStream",
        [OP_LIST_TAGS] = "ListTagsForStream",
        [OP_DESCRIBE_LIMITS] = "DescribeLimits",
};

int
api_op_lookup(const char *name, size_t len)
{
	int i;

	for (i = 0; i < OP_COUNT; i++)
		if (strlen(op_names[i]) == len && memcmp(op_names[i], name, len) == 0)
			return i;
	return -1;
}

const char *
api_op_name(enum api_op op)
{
	return (unsigned)op < OP_COUNT ? op_names[op] : "Unknown";
}

/* ---- shard ids and ARNs -------------------------------------------------- */

int
api_shard_id_parse(const char *s, uint32_t *index)
{
	uint64_t v = 0;
	size_t i, n;

	if (strncmp(s, "shardId-", 8) != 0)
		return -EINVAL;
	s += 8;
	n = strlen(s);
	if (n == 0 || n > 12)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > FIRN_SHARD_INDEX_MAX)
		return -EINVAL;
	*index = (uint32_t)v;
	return 0;
}

void
api_shard_id_format(uint32_t index, char buf[API_SHARD_ID_LEN + 1])
{
	snprintf(buf, API_SHARD_ID_LEN + 1, "shardId-%012u", index);
}

static bool
name_chars_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

int
api_arn_parse(const char *arn, char name[FIRN_STREAM_NAME_MAX + 1], char *region,
              size_t region_size)
{
	/* arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME, ACCOUNT being 12 digits */
	const char *f[6];
	size_t flen[6], n;
	const char *s = arn;
	int i;

	for (i = 0; i < 6; i++) {
		const char *c = i < 5 ? strchr(s, ':') : NULL;

		f[i] = s;
		flen[i] = c ? (size_t)(c - s) : strlen(s);
		if (c == NULL) {
			if (i < 5)
				return -EINVAL;
			break;
		}
		s = c + 1;
	}
	if (flen[0] != 3 || memcmp(f[0], "arn", 3) != 0 || flen[1] < 3 ||
	    memcmp(f[1], "aws", 3) != 0 || flen[2] != 7 || memcmp(f[2], "kinesis", 7) != 0 ||
	    flen[4] != 12)
		return -EINVAL;
	for (i = 0; i < 12; i++)
		if (f[4][i] < '0' || f[4][i] > '9')
			return -EINVAL;
	if (flen[5] < 8 || memcmp(f[5], "stream/", 7) != 0)
		return -EINVAL;
	s = f[5] + 7;
	n = flen[5] - 7;
	if (n > FIRN_STREAM_NAME_MAX || !name_chars_ok(s, n))
		return -EINVAL;
	memcpy(name, s, n);
	name[n] = '\0';
	if (region != NULL && region_size > 0)
		snprintf(region, region_size, "%.*s", (int)flen[3], f[3]);
	return 0;
}

/* ---- the validation collector -------------------------------------------- */

struct vctx {
	unsigned n;
	struct sbuf msg;
	struct api_error *e;
	bool failed; /* a serialization error was recorded in e */
};

static void verr(struct vctx *v, const char *fmt, ...) FIRN_PRINTF(2, 3);

static void
verr(struct vctx *v, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (v->n++ > 0)
		sb_adds(&v->msg, "; ");
	sb_adds(&v->msg, buf);
}

/* A value as AWS quotes it in a message, cut to keep messages readable. */
static void
quote_val(const char *s, size_t n, char *out, size_t size)
{
	if (n > 80)
		snprintf(out, size, "%.77s...", s);
	else
		snprintf(out, size, "%.*s", (int)n, s);
}

static int serr(struct vctx *v, const char *fmt, ...) FIRN_PRINTF(2, 3);

static int
serr(struct vctx *v, const char *fmt, ...)
{
	va_list ap;

	if (!v->failed) {
		v->e->code = API_E_SERIALIZATION;
		va_start(ap, fmt);
		vsnprintf(v->e->msg, sizeof(v->e->msg), fmt, ap);
		va_end(ap);
		v->failed = true;
	}
	return -1;
}

static int
oom(struct vctx *v)
{
	v->failed = true;
	return api_fail(v->e, API_E_INTERNAL, "out of memory");
}

/* ---- typed getters: 0 absent, 1 present, -1 wrong JSON type -------------- */

static int
get_str(struct vctx *v, json_t *obj, const char *key, const char **out, size_t *len)
{
	json_t *j = json_object_get(obj, key);

	*out = NULL;
	if (len)
		*len = 0;
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_string(j))
		return serr(v, "Unexpected value type for '%s': expected a string", key);
	*out = json_string_value(j);
	if (len)
		*len = json_string_length(j);
	return 1;
}

static int
get_int(struct vctx *v, json_t *obj, const char *key, int64_t *out)
{
	json_t *j = json_object_get(obj, key);

	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_integer(j))
		return serr(v, "Unexpected value type for '%s': expected an integer", key);
	*out = (int64_t)json_integer_value(j);
	return 1;
}

static int
get_bool(struct vctx *v, json_t *obj, const char *key, bool *out)
{
	json_t *j = json_object_get(obj, key);

	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_boolean(j))
		return serr(v, "Unexpected value type for '%s': expected a boolean", key);
	*out = json_is_true(j);
	return 1;
}

/* "2023-05-01T12:00:00(.123)(Z|+00:00)" -> ms. 0 or -EINVAL. */
static int
parse_iso8601(const char *s, int64_t *ms)
{
	char datebuf[17];
	int64_t sec, frac = 0, scale = 100;
	const char *p;
	int i;

	/* YYYY-MM-DDTHH:MM:SS */
	if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
	    s[13] != ':' || s[16] != ':')
		return -EINVAL;
	snprintf(datebuf, sizeof(datebuf), "%.4s%.2s%.2sT%.2s%.2s%.2sZ", s, s + 5, s + 8, s + 11,
	         s + 14, s + 17);
	if (sigv4_parse_amz_date(datebuf, &sec) < 0)
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		for (p++, i = 0; *p >= '0' && *p <= '9'; p++, i++) {
			if (scale > 0)
				frac += (*p - '0') * scale;
			scale /= 10;
		}
		if (i == 0)
			return -EINVAL;
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0 && *p != '\0')
		return -EINVAL;
	*ms = sec * 1000 + frac;
	return 0;
}

/*
 * Timestamps: SDKs send epoch seconds as a JSON number (with a fraction);
 * accept numeric and ISO-8601 strings too, as AWS does.
 */
static int
get_ts(struct vctx *v, json_t *obj, const char *key, int64_t *ms)
{
	json_t *j = json_object_get(obj, key);

	if (j == NULL || json_is_null(j))
		return 0;
	if (json_is_integer(j)) {
		json_int_t s = json_integer_value(j);

		if (s < 0 || s > INT64_MAX / 1000)
			return serr(v, "Timestamp '%s' is out of range", key);
		*ms = (int64_t)s * 1000;
		return 1;
	}
	if (json_is_real(j)) {
		double d = json_real_value(j);

		if (!(d >= 0 && d < 9.0e15))
			return serr(v, "Timestamp '%s' is out of range", key);
		/* Round to the millisecond: 1690000000.123 is 1690000000.12299990 in binary. */
		*ms = (int64_t)(d * 1000.0 + 0.5);
		return 1;
	}
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		char *end;
		double d;

		if (parse_iso8601(s, ms) == 0)
			return 1;
		d = strtod(s, &end);
		if (end != s && *end == '\0' && d >= 0 && d < 9.0e15) {
			*ms = (int64_t)(d * 1000.0 + 0.5);
			return 1;
		}
		return serr(v, "Timestamp '%s' must be epoch seconds or ISO-8601, got '%.64s'", key,
		            s);
	}
	return serr(v, "Unexpected value type for '%s': expected a timestamp", key);
}

/* ---- constraint checks --------------------------------------------------- */

/* Length in characters (UTF-8 code points), as the AWS model counts. */
static size_t
utf8_chars(const char *s, size_t n)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

static void
check_len(struct vctx *v, const char *field, const char *s, size_t n, size_t min, size_t max)
{
	char q[96];
	size_t c = utf8_chars(s, n);

	quote_val(s, n, q, sizeof(q));
	if (c < min)
		verr(v,
		     "Value '%s' at '%s' failed to satisfy constraint: Member must have length "
		     "greater than or equal to %zu",
		     q, field, min);
	else if (c > max)
		verr(v,
		     "Value '%s' at '%s' failed to satisfy constraint: Member must have length "
		     "less than or equal to %zu",
		     q, field, max);
}

/* StreamName / ShardId: 1..128 of [a-zA-Z0-9_.-]+ */
static bool
check_name(struct vctx *v, const char *field, const char *s, size_t n)
{
	unsigned before = v->n;
	char q[96];

	check_len(v, field, s, n, 1, 128);
	if (n > 0 && !name_chars_ok(s, n)) {
		quote_val(s, n, q, sizeof(q));
		verr(v,
		     "Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular "
		     "expression pattern: [a-zA-Z0-9_.-]+",
		     q, field);
	}
	return v->n == before;
}

static void
check_range(struct vctx *v, const char *field, int64_t x, int64_t min, int64_t max)
{
	if (x < min)
		verr(v,
		     "Value '%lld' at '%s' failed to satisfy constraint: Member must have value "
		     "greater than or equal to %lld",
		     (long long)x, field, (long long)min);
	else if (x > max)
		verr(v,
		     "Value '%lld' at '%s' failed to satisfy constraint: Member must have value "
		     "less than or equal to %lld",
		     (long long)x, field, (long long)max);
}

static void
require(struct vctx *v, const char *field, bool present)
{
	if (!present)
		verr(v, "Value null at '%s' failed to satisfy constraint: Member must not be null",
		     field);
}

/* Pattern 0|([1-9]\d{0,max_digits-1}) */
static bool
decimal_pattern_ok(const char *s, size_t n, size_t max_digits)
{
	size_t i;

	if (n == 0 || n > max_digits)
		return false;
	if (s[0] == '0')
		return n == 1;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static void
check_decimal(struct vctx *v, const char *field, const char *s, size_t n, size_t max_digits)
{
	char q[96];

	if (decimal_pattern_ok(s, n, max_digits))
		return;
	quote_val(s, n, q, sizeof(q));
	verr(v,
	     "Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular "
	     "expression pattern: 0|([1-9]\\d{0,%zu})",
	     q, field, max_digits - 1);
}

static int
check_enum(struct vctx *v, const char *field, const char *s, const char *const *names, unsigned n,
           const char *set)
{
	char q[96];
	unsigned i;

	for (i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	quote_val(s, strlen(s), q, sizeof(q));
	verr(v,
	     "Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: "
	     "[%s]",
	     q, field, set);
	return -1;
}

/* ---- shared members ------------------------------------------------------ */

/* StreamName and/or StreamARN. */
static int
parse_stream(struct vctx *v, struct api_req *r, bool required)
{
	const char *name, *arn;
	size_t nlen, alen;
	int rc1, rc2;

	rc1 = get_str(v, r->root, "StreamName", &name, &nlen);
	rc2 = get_str(v, r->root, "StreamARN", &arn, &alen);
	if (rc1 < 0 || rc2 < 0)
		return -1;
	if (name != NULL && check_name(v, "streamName", name, nlen)) {
		memcpy(r->stream, name, nlen + 1);
		r->has_stream = true;
	}
	if (arn != NULL) {
		char aname[FIRN_STREAM_NAME_MAX + 1];

		check_len(v, "streamARN", arn, alen, 1, 2048);
		if (alen > 0 && alen <= 2048) {
			if (api_arn_parse(arn, aname, NULL, 0) < 0) {
				char q[96];

				quote_val(arn, alen, q, sizeof(q));
				verr(v,
				     "Value '%s' at 'streamARN' failed to satisfy constraint: "
				     "Member "
				     "must satisfy regular expression pattern: "
				     "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
				     q);
			} else if (r->has_stream && strcmp(aname, r->stream) != 0) {
				api_fail(v->e, API_E_INVALID_ARGUMENT,
				         "StreamARN '%s' and StreamName '%s' name different "
				         "streams.",
				         arn, r->stream);
				v->failed = true;
				return -1;
			} else {
				snprintf(r->stream, sizeof(r->stream), "%s", aname);
				r->has_stream = true;
				r->has_arn = true;
			}
		}
	}
	if (required && name == NULL && arn == NULL)
		require(v, "streamName", false);
	return 0;
}

static int
parse_limit(struct vctx *v, struct api_req *r, const char *key, const char *field, int64_t max)
{
	int64_t x = 0;
	int rc = get_int(v, r->root, key, &x);

	if (rc <= 0)
		return rc;
	check_range(v, field, x, 1, max);
	r->has_limit = true;
	r->limit = (uint32_t)FIRN_MAX(1, FIRN_MIN(x, max));
	return 0;
}

static int
parse_shard_field(struct vctx *v, struct api_req *r, const char *key, const char *field,
                  bool required, const char **out)
{
	size_t n;
	int rc = get_str(v, r->root, key, out, &n);

	if (rc < 0)
		return -1;
	if (*out == NULL) {
		if (required)
			require(v, field, false);
		return 0;
	}
	check_name(v, field, *out, n);
	return 0;
}

static int
parse_tag_map(struct vctx *v, struct api_req *r, bool required)
{
	json_t *tags = json_object_get(r->root, "Tags");
	const char *k;
	json_t *val;
	size_t n;
	uint32_t i = 0;

	if (tags == NULL || json_is_null(tags)) {
		if (required)
			require(v, "tags", false);
		return 0;
	}
	if (!json_is_object(tags))
		return serr(v, "Unexpected value type for 'Tags': expected a map");
	n = json_object_size(tags);
	if (n < 1 || n > 200) {
		verr(v, "Value at 'tags' failed to satisfy constraint: Member must have length %s",
		     n < 1 ? "greater than or equal to 1" : "less than or equal to 200");
		return 0;
	}
	r->tags = calloc(n, sizeof(*r->tags));
	if (r->tags == NULL)
		return oom(v);
	json_object_foreach(tags, k, val)
	{
		size_t kl = strlen(k), vl;

		if (!json_is_string(val))
			return serr(v, "Unexpected value type for tag '%.64s': expected a string",
			            k);
		vl = json_string_length(val);
		check_len(v, "tags.key", k, kl, 1, FIRN_TAG_KEY_MAX);
		check_len(v, "tags.value", json_string_value(val), vl, 0, FIRN_TAG_VALUE_MAX);
		if (kl <= FIRN_TAG_KEY_MAX && vl <= FIRN_TAG_VALUE_MAX && i < n) {
			memcpy(r->tags[i].key, k, kl + 1);
			memcpy(r->tags[i].value, json_string_value(val), vl + 1);
			i++;
		}
	}
	r->ntags = i;
	return 0;
}

/* ---- records ------------------------------------------------------------- */

static int
parse_entry(struct vctx *v, json_t *obj, const char *prefix, struct api_put_entry *pe,
            uint8_t *blob, size_t *blob_off, size_t *bytes)
{
	const char *data, *key, *ehk;
	size_t dlen, klen, elen;
	char field[64];
	long n;

	if (!json_is_object(obj))
		return serr(v, "Unexpected value type for a Records entry: expected a structure");
	if (get_str(v, obj, "Data", &data, &dlen) < 0 ||
	    get_str(v, obj, "PartitionKey", &key, &klen) < 0 ||
	    get_str(v, obj, "ExplicitHashKey", &ehk, &elen) < 0)
		return -1;
	snprintf(field, sizeof(field), "%sdata", prefix);
	require(v, field, data != NULL);
	snprintf(field, sizeof(field), "%spartitionKey", prefix);
	require(v, field, key != NULL);
	if (key != NULL) {
		/*
		 * AWS counts 256 characters; a firn record carries at most 256
		 * bytes of key (lib/record), so multi-byte keys are held to
		 * 256 bytes - same message, stricter for non-ASCII keys.
		 */
		check_len(v, field, key, klen, 1, FIRN_PARTITION_KEY_MAX);
		if (klen > FIRN_PARTITION_KEY_MAX &&
		    utf8_chars(key, klen) <= FIRN_PARTITION_KEY_MAX) {
			char q[96];

			quote_val(key, klen, q, sizeof(q));
			verr(v,
			     "Value '%s' at '%s' failed to satisfy constraint: Member must have "
			     "length less than or equal to %u bytes of UTF-8",
			     q, field, FIRN_PARTITION_KEY_MAX);
		}
		pe->key = key;
		pe->key_len = klen;
		*bytes += klen;
	}
	if (data != NULL) {
		n = firn_b64_decode(data, dlen, blob + *blob_off);
		if (n < 0)
			return serr(v, "Base64 decoding of 'Data' failed: not valid base64");
		snprintf(field, sizeof(field), "%sdata", prefix);
		if ((size_t)n > FIRN_RECORD_DATA_MAX)
			verr(v,
			     "Value of %ld bytes at '%s' failed to satisfy constraint: Member must "
			     "have length less than or equal to %u",
			     n, field, FIRN_RECORD_DATA_MAX);
		pe->data = blob + *blob_off;
		pe->data_len = (size_t)n;
		*blob_off += (size_t)n;
		*bytes += (size_t)n;
	}
	if (ehk != NULL) {
		snprintf(field, sizeof(field), "%sexplicitHashKey", prefix);
		if (!decimal_pattern_ok(ehk, elen, 39)) {
			check_decimal(v, field, ehk, elen, 39);
		} else if (firn_u128_parse(ehk, elen, &pe->ehk) < 0) {
			api_fail(v->e, API_E_INVALID_ARGUMENT,
			         "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: "
			         "[0, 2^128-1]. Specified value was %s",
			         ehk);
			v->failed = true;
			return -1;
		} else {
			pe->has_ehk = true;
		}
	}
	return 0;
}

/* Upper bound of decoded bytes for the Data members, to size one blob. */
static size_t
data_bound(json_t *obj)
{
	json_t *d = json_is_object(obj) ? json_object_get(obj, "Data") : NULL;

	return json_is_string(d) ? json_string_length(d) / 4 * 3 + 3 : 0;
}

static int
parse_put_record(struct vctx *v, struct api_req *r)
{
	const char *sfo;
	size_t n, off = 0;

	if (parse_stream(v, r, true) < 0)
		return -1;
	r->blob = malloc(data_bound(r->root) + 1);
	r->records = calloc(1, sizeof(*r->records));
	if (r->blob == NULL || r->records == NULL)
		return oom(v);
	r->nrecords = 1;
	if (parse_entry(v, r->root, "", r->records, r->blob, &off, &r->records_bytes) < 0)
		return -1;
	if (get_str(v, r->root, "SequenceNumberForOrdering", &sfo, &n) < 0)
		return -1;
	if (sfo != NULL)
		check_decimal(v, "sequenceNumberForOrdering", sfo, n, 129);
	return 0;
}

static int
parse_put_records(struct vctx *v, struct api_req *r)
{
	json_t *recs = json_object_get(r->root, "Records");
	size_t i, n, bound = 0, off = 0;
	char prefix[48];

	if (parse_stream(v, r, true) < 0)
		return -1;
	if (recs == NULL || json_is_null(recs)) {
		require(v, "records", false);
		return 0;
	}
	if (!json_is_array(recs))
		return serr(v, "Unexpected value type for 'Records': expected a list");
	n = json_array_size(recs);
	if (n < 1 || n > API_PUT_RECORDS_MAX) {
		verr(v,
		     "Value '[...]' at 'records' failed to satisfy constraint: Member must have "
		     "length %s %u",
		     n < 1 ? "greater than or equal to" : "less than or equal to",
		     n < 1 ? 1 : API_PUT_RECORDS_MAX);
		return 0;
	}
	for (i = 0; i < n; i++)
		bound += data_bound(json_array_get(recs, i));
	r->blob = malloc(bound + 1);
	r->records = calloc(n, sizeof(*r->records));
	if (r->blob == NULL || r->records == NULL)
		return oom(v);
	r->nrecords = (uint32_t)n;
	for (i = 0; i < n; i++) {
		/* AWS numbers list members from 1 in messages. */
		snprintf(prefix, sizeof(prefix), "records.%zu.member.", i + 1);
		if (parse_entry(v, json_array_get(recs, i), prefix, &r->records[i], r->blob, &off,
		                &r->records_bytes) < 0)
			return -1;
	}
	return 0;
}

/* ---- per operation ------------------------------------------------------- */

static const char *const iter_names[] = {"AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER",
                                         "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"};
static const char *const filter_names[] = {"AFTER_SHARD_ID", "AT_TRIM_HORIZON", "FROM_TRIM_HORIZON",
                                           "AT_LATEST",      "AT_TIMESTAMP",    "FROM_TIMESTAMP"};

static int
parse_create(struct vctx *v, struct api_req *r)
{
	json_t *mode = json_object_get(r->root, "StreamModeDetails");
	int64_t x = 0;
	int rc;

	if (parse_stream(v, r, false) < 0)
		return -1;
	if (json_object_get(r->root, "StreamName") == NULL)
		require(v, "streamName", false);
	rc = get_int(v, r->root, "ShardCount", &x);
	if (rc < 0)
		return -1;
	if (rc > 0) {
		check_range(v, "shardCount", x, 1, INT32_MAX);
		r->has_shard_count = true;
		r->shard_count = (uint32_t)FIRN_MAX(1, FIRN_MIN(x, INT32_MAX));
	}
	if (mode != NULL && !json_is_null(mode)) {
		const char *m;
		static const char *const modes[] = {"PROVISIONED", "ON_DEMAND"};

		if (!json_is_object(mode))
			return serr(v, "Unexpected value type for 'StreamModeDetails'");
		if (get_str(v, mode, "StreamMode", &m, NULL) < 0)
			return -1;
		require(v, "streamModeDetails.streamMode", m != NULL);
		if (m != NULL)
			r->on_demand = check_enum(v, "streamModeDetails.streamMode", m, modes, 2,
			                          "ON_DEMAND, PROVISIONED") == 1;
	}
	return parse_tag_map(v, r, false);
}

static int
parse_list_shards(struct vctx *v, struct api_req *r)
{
	json_t *f = json_object_get(r->root, "ShardFilter");
	size_t n;

	r->filter = FILTER_NONE;
	if (parse_stream(v, r, false) < 0 ||
	    get_str(v, r->root, "NextToken", &r->next_token, &n) < 0)
		return -1;
	if (r->next_token != NULL)
		check_len(v, "nextToken", r->next_token, n, 1, 1048576);
	if (parse_shard_field(v, r, "ExclusiveStartShardId", "exclusiveStartShardId", false,
	                      &r->exclusive_start) < 0 ||
	    parse_limit(v, r, "MaxResults", "maxResults", 10000) < 0)
		return -1;
	switch (get_ts(v, r->root, "StreamCreationTimestamp", &r->creation_ts_ms)) {
	case -1:
		return -1;
	case 1:
		r->has_creation_ts = true;
		break;
	}
	if (f != NULL && !json_is_null(f)) {
		const char *t;
		int rc;

		if (!json_is_object(f))
			return serr(v, "Unexpected value type for 'ShardFilter'");
		if (get_str(v, f, "Type", &t, NULL) < 0 ||
		    get_str(v, f, "ShardId", &r->filter_shard_id, &n) < 0)
			return -1;
		require(v, "shardFilter.type", t != NULL);
		if (t != NULL) {
			rc = check_enum(v, "shardFilter.type", t, filter_names, 6,
			                "AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, "
			                "AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP");
			r->filter = rc < 0 ? FILTER_NONE : (enum api_shard_filter)rc;
		}
		if (r->filter_shard_id != NULL)
			check_name(v, "shardFilter.shardId", r->filter_shard_id, n);
		rc = get_ts(v, f, "Timestamp", &r->filter_ts_ms);
		if (rc < 0)
			return -1;
		r->has_filter_ts = rc > 0;
	}
	if (r->next_token == NULL && !r->has_stream && v->n == 0)
		require(v, "streamName", false);
	return 0;
}

static int
parse_get_shard_iterator(struct vctx *v, struct api_req *r)
{
	const char *t;
	size_t n;
	int rc;

	if (parse_stream(v, r, true) < 0 ||
	    parse_shard_field(v, r, "ShardId", "shardId", true, &r->shard_id) < 0 ||
	    get_str(v, r->root, "ShardIteratorType", &t, NULL) < 0 ||
	    get_str(v, r->root, "StartingSequenceNumber", &r->start_seq, &n) < 0)
		return -1;
	require(v, "shardIteratorType", t != NULL);
	if (t != NULL) {
		rc = check_enum(v, "shardIteratorType", t, iter_names, 5,
		                "AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, "
		                "AT_TIMESTAMP");
		r->iter_type = rc < 0 ? ITER_TRIM_HORIZON : (enum api_iter_type)rc;
	}
	if (r->start_seq != NULL)
		check_decimal(v, "startingSequenceNumber", r->start_seq, n, 129);
	rc = get_ts(v, r->root, "Timestamp", &r->ts_ms);
	if (rc < 0)
		return -1;
	r->has_ts = rc > 0;
	return 0;
}

static int
parse_get_records(struct vctx *v, struct api_req *r)
{
	size_t n;

	if (parse_stream(v, r, false) < 0 ||
	    get_str(v, r->root, "ShardIterator", &r->iterator, &n) < 0)
		return -1;
	require(v, "shardIterator", r->iterator != NULL);
	if (r->iterator != NULL)
		check_len(v, "shardIterator", r->iterator, n, 1, 512);
	return parse_limit(v, r, "Limit", "limit", API_GET_LIMIT_MAX) < 0 ? -1 : 0;
}

static int
parse_split(struct vctx *v, struct api_req *r)
{
	const char *k;
	size_t n;

	if (parse_stream(v, r, true) < 0 ||
	    parse_shard_field(v, r, "ShardToSplit", "shardToSplit", true, &r->shard_a) < 0 ||
	    get_str(v, r->root, "NewStartingHashKey", &k, &n) < 0)
		return -1;
	require(v, "newStartingHashKey", k != NULL);
	if (k == NULL)
		return 0;
	if (!decimal_pattern_ok(k, n, 39)) {
		check_decimal(v, "newStartingHashKey", k, n, 39);
	} else if (firn_u128_parse(k, n, &r->new_start) < 0) {
		v->failed = true;
		return api_fail(v->e, API_E_INVALID_ARGUMENT,
		                "NewStartingHashKey %s is outside the hash key range [0, 2^128-1].",
		                k);
	}
	return 0;
}

static int
parse_update_shard_count(struct vctx *v, struct api_req *r)
{
	static const char *const types[] = {"UNIFORM_SCALING"};
	const char *t;
	int64_t x = 0;
	int rc;

	if (parse_stream(v, r, true) < 0)
		return -1;
	rc = get_int(v, r->root, "TargetShardCount", &x);
	if (rc < 0 || get_str(v, r->root, "ScalingType", &t, NULL) < 0)
		return -1;
	require(v, "targetShardCount", rc > 0);
	if (rc > 0) {
		check_range(v, "targetShardCount", x, 1, INT32_MAX);
		r->target = (uint32_t)FIRN_MAX(1, FIRN_MIN(x, INT32_MAX));
	}
	require(v, "scalingType", t != NULL);
	if (t != NULL)
		check_enum(v, "scalingType", t, types, 1, "UNIFORM_SCALING");
	return 0;
}

static int
parse_retention(struct vctx *v, struct api_req *r)
{
	int rc;

	if (parse_stream(v, r, true) < 0)
		return -1;
	rc = get_int(v, r->root, "RetentionPeriodHours", &r->hours);
	if (rc < 0)
		return -1;
	require(v, "retentionPeriodHours", rc > 0);
	return 0;
}

static int
parse_remove_tags(struct vctx *v, struct api_req *r)
{
	json_t *keys = json_object_get(r->root, "TagKeys");
	size_t i, n;

	if (parse_stream(v, r, true) < 0)
		return -1;
	if (keys == NULL || json_is_null(keys)) {
		require(v, "tagKeys", false);
		return 0;
	}
	if (!json_is_array(keys))
		return serr(v, "Unexpected value type for 'TagKeys': expected a list");
	n = json_array_size(keys);
	if (n < 1 || n > 50) {
		verr(v,
		     "Value '[...]' at 'tagKeys' failed to satisfy constraint: Member must have "
		     "length %s",
		     n < 1 ? "greater than or equal to 1" : "less than or equal to 50");
		return 0;
	}
	r->tag_keys = calloc(n, sizeof(*r->tag_keys));
	if (r->tag_keys == NULL)
		return oom(v);
	for (i = 0; i < n; i++) {
		json_t *k = json_array_get(keys, i);
		char field[48];

		if (!json_is_string(k))
			return serr(v, "Unexpected value type for a TagKeys entry");
		snprintf(field, sizeof(field), "tagKeys.%zu.member", i + 1);
		check_len(v, field, json_string_value(k), json_string_length(k), 1,
		          FIRN_TAG_KEY_MAX);
		r->tag_keys[i] = json_string_value(k);
	}
	r->nkeys = (uint32_t)n;
	return 0;
}

static int
parse_op(struct vctx *v, struct api_req *r)
{
	size_t n;
	bool b;

	switch (r->op) {
	case OP_CREATE_STREAM:
		return parse_create(v, r);
	case OP_DELETE_STREAM:
		if (get_bool(v, r->root, "EnforceConsumerDeletion", &b) < 0)
			return -1;
		return parse_stream(v, r, true);
	case OP_DESCRIBE_STREAM:
		if (parse_stream(v, r, true) < 0 ||
		    parse_shard_field(v, r, "ExclusiveStartShardId", "exclusiveStartShardId", false,
		                      &r->exclusive_start) < 0)
			return -1;
		return parse_limit(v, r, "Limit", "limit", 10000);
	case OP_DESCRIBE_STREAM_SUMMARY:
		return parse_stream(v, r, true);
	case OP_LIST_STREAMS:
		if (get_str(v, r->root, "NextToken", &r->next_token, &n) < 0)
			return -1;
		if (r->next_token != NULL)
			check_len(v, "nextToken", r->next_token, n, 1, 1048576);
		if (get_str(v, r->root, "ExclusiveStartStreamName", &r->exclusive_start, &n) < 0)
			return -1;
		if (r->exclusive_start != NULL)
			check_name(v, "exclusiveStartStreamName", r->exclusive_start, n);
		return parse_limit(v, r, "Limit", "limit", 10000);
	case OP_LIST_SHARDS:
		return parse_list_shards(v, r);
	case OP_PUT_RECORD:
		return parse_put_record(v, r);
	case OP_PUT_RECORDS:
		return parse_put_records(v, r);
	case OP_GET_SHARD_ITERATOR:
		return parse_get_shard_iterator(v, r);
	case OP_GET_RECORDS:
		return parse_get_records(v, r);
	case OP_SPLIT_SHARD:
		return parse_split(v, r);
	case OP_MERGE_SHARDS:
		if (parse_stream(v, r, true) < 0 ||
		    parse_shard_field(v, r, "ShardToMerge", "shardToMerge", true, &r->shard_a) <
		            0 ||
		    parse_shard_field(v, r, "AdjacentShardToMerge", "adjacentShardToMerge", true,
		                      &r->shard_b) < 0)
			return -1;
		return 0;
	case OP_UPDATE_SHARD_COUNT:
		return parse_update_shard_count(v, r);
	case OP_INCREASE_RETENTION:
	case OP_DECREASE_RETENTION:
		return parse_retention(v, r);
	case OP_ADD_TAGS:
		if (parse_stream(v, r, true) < 0)
			return -1;
		return parse_tag_map(v, r, true);
	case OP_REMOVE_TAGS:
		return parse_remove_tags(v, r);
	case OP_LIST_TAGS:
		if (parse_stream(v, r, true) < 0 ||
		    get_str(v, r->root, "ExclusiveStartTagKey", &r->exclusive_start, &n) < 0)
			return -1;
		if (r->exclusive_start != NULL)
			check_len(v, "exclusiveStartTagKey", r->exclusive_start, n, 1,
			          FIRN_TAG_KEY_MAX);
		return parse_limit(v, r, "Limit", "limit", 50);
	case OP_DESCRIBE_LIMITS:
	case OP_COUNT:
		break;
	}
	return 0;
}

/* ---- the PutRecords fast path -------------------------------------------- */

/*
 * PutRecords is the hot call, and building a jansson tree of 500 objects
 * (each with its own hash table and string copies) costs more than the rest
 * of the request. This scanner handles the shape every SDK sends -
 * {"StreamName":"...","Records":[{"Data":"...","PartitionKey":"...",
 * "ExplicitHashKey":"..."},...]} in any member order and whitespace - and
 * points into the body instead of copying. It only ever says "valid, here it
 * is" or "not mine": anything unusual (escapes, other members, StreamARN,
 * duplicates, non-ASCII names, any constraint violation) returns 0 and the
 * general jansson path parses the body and words the error. The fuzz harness
 * checks the two paths agree on every input the fast path accepts.
 */
struct fj {
	const char *p, *end;
};

static void
fj_ws(struct fj *f)
{
	while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r'))
		f->p++;
}

static bool
fj_lit(struct fj *f, char c)
{
	fj_ws(f);
	if (f->p < f->end && *f->p == c) {
		f->p++;
		return true;
	}
	return false;
}

/*
 * A string up to the next '"'. With check, it must hold no backslash (an
 * escape: not ours) and no control character. Without, the caller validates
 * the bytes against something stricter anyway - the base64 alphabet, digits,
 * stream-name characters, a fixed member name - each of which rejects a
 * backslash, so an escaped quote can never be mistaken for the end.
 */
static bool
fj_str(struct fj *f, const char **s, size_t *n, bool check)
{
	const char *start, *q;
	size_t i, len;

	fj_ws(f);
	if (f->p >= f->end || *f->p != '"')
		return false;
	start = ++f->p;
	q = memchr(start, '"', (size_t)(f->end - f->p));
	if (q == NULL)
		return false;
	len = (size_t)(q - start);
	for (i = 0; check && i < len; i++)
		if ((unsigned char)start[i] < 0x20 || start[i] == '\\')
			return false;
	*s = start;
	*n = len;
	f->p = q + 1;
	return true;
}

static bool
fj_key(struct fj *f, const char *want, const char *k, size_t n)
{
	return strlen(want) == n && memcmp(want, k, n) == 0;
}

struct fj_entry {
	const char *data, *key, *ehk;
	size_t dlen, klen, elen;
};

static bool
fj_entry(struct fj *f, struct fj_entry *en)
{
	const char *k;
	size_t n;

	memset(en, 0, sizeof(*en));
	if (!fj_lit(f, '{'))
		return false;
	do {
		if (!fj_str(f, &k, &n, false) || !fj_lit(f, ':'))
			return false;
		if (fj_key(f, "Data", k, n) && en->data == NULL) {
			if (!fj_str(f, &en->data, &en->dlen, false))
				return false;
		} else if (fj_key(f, "PartitionKey", k, n) && en->key == NULL) {
			if (!fj_str(f, &en->key, &en->klen, true))
				return false;
		} else if (fj_key(f, "ExplicitHashKey", k, n) && en->ehk == NULL) {
			if (!fj_str(f, &en->ehk, &en->elen, false))
				return false;
		} else {
			return false;
		}
	} while (fj_lit(f, ','));
	return fj_lit(f, '}') && en->data != NULL && en->key != NULL;
}

int
api_put_records_fast(const char *body, size_t len, struct api_req *req)
{
	struct fj f = {body, body + len};
	struct fj_entry *en = NULL;
	const char *k, *name = NULL;
	size_t n, nlen = 0, i, bound = 0, off = 0;
	uint32_t cnt = 0;
	bool have_records = false;
	long dn;

	memset(req, 0, sizeof(*req));
	req->op = OP_PUT_RECORDS;
	req->filter = FILTER_NONE;
	if (!fj_lit(&f, '{'))
		return 0;
	do {
		if (!fj_str(&f, &k, &n, false) || !fj_lit(&f, ':'))
			goto no;
		if (fj_key(&f, "StreamName", k, n) && name == NULL) {
			if (!fj_str(&f, &name, &nlen, false) || nlen == 0 ||
			    nlen > FIRN_STREAM_NAME_MAX || !name_chars_ok(name, nlen))
				goto no;
		} else if (fj_key(&f, "Records", k, n) && !have_records) {
			have_records = true;
			en = malloc(API_PUT_RECORDS_MAX * sizeof(*en));
			if (en == NULL || !fj_lit(&f, '['))
				goto no;
			do {
				if (cnt == API_PUT_RECORDS_MAX || !fj_entry(&f, &en[cnt]))
					goto no;
				cnt++;
			} while (fj_lit(&f, ','));
			if (!fj_lit(&f, ']'))
				goto no;
		} else {
			goto no;
		}
	} while (fj_lit(&f, ','));
	if (!fj_lit(&f, '}') || name == NULL || cnt == 0)
		goto no;
	fj_ws(&f);
	if (f.p != f.end)
		goto no;
	for (i = 0; i < cnt; i++)
		bound += en[i].dlen / 4 * 3 + 3;
	req->blob = malloc(bound + 1);
	req->records = calloc(cnt, sizeof(*req->records));
	if (req->blob == NULL || req->records == NULL)
		goto no;
	for (i = 0; i < cnt; i++) {
		struct api_put_entry *pe = &req->records[i];

		/* Keys: valid UTF-8 of 1..256 bytes (longer multi-byte keys take the slow path). */
		if (firn_partition_key_check(en[i].key, en[i].klen) < 0)
			goto no;
		dn = firn_b64_decode(en[i].data, en[i].dlen, req->blob + off);
		if (dn < 0 || (size_t)dn > FIRN_RECORD_DATA_MAX)
			goto no;
		if (en[i].ehk != NULL) {
			if (!decimal_pattern_ok(en[i].ehk, en[i].elen, 39) ||
			    firn_u128_parse(en[i].ehk, en[i].elen, &pe->ehk) < 0)
				goto no;
			pe->has_ehk = true;
		}
		pe->key = en[i].key;
		pe->key_len = en[i].klen;
		pe->data = req->blob + off;
		pe->data_len = (size_t)dn;
		off += (size_t)dn;
		req->records_bytes += (size_t)dn + en[i].klen;
	}
	memcpy(req->stream, name, nlen);
	req->stream[nlen] = '\0';
	req->has_stream = true;
	req->nrecords = cnt;
	free(en);
	return 1;
no:
	free(en);
	api_req_free(req);
	req->op = OP_PUT_RECORDS;
	req->filter = FILTER_NONE;
	return 0;
}

int
api_req_parse(enum api_op op, const char *body, size_t len, struct api_req *req,
              struct api_error *e)
{
	if (op == OP_PUT_RECORDS && api_put_records_fast(body, len, req) == 1) {
		e->code = API_OK;
		e->msg[0] = '\0';
		return 0;
	}
	return api_req_parse_json(op, body, len, req, e);
}

int
api_req_parse_json(enum api_op op, const char *body, size_t len, struct api_req *req,
                   struct api_error *e)
{
	struct vctx v = {.e = e};
	json_error_t jerr;
	int rc;

	memset(req, 0, sizeof(*req));
	req->op = op;
	req->filter = FILTER_NONE;
	e->code = API_OK;
	e->msg[0] = '\0';
	if ((unsigned)op >= OP_COUNT)
		return api_fail(e, API_E_UNKNOWN_OP, "Unknown operation");
	/* An empty body is an empty structure; SDKs send "{}" but curl users may not. */
	if (len == 0)
		req->root = json_object();
	else
		req->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req->root == NULL)
		return api_fail(e, API_E_SERIALIZATION, "Malformed JSON at line %d column %d: %s",
		                jerr.line, jerr.column, jerr.text);
	if (!json_is_object(req->root))
		return api_fail(e, API_E_SERIALIZATION,
		                "Expected a JSON object as the request body");
	sb_init(&v.msg);
	rc = parse_op(&v, req);
	if (rc < 0 || v.failed) {
		sb_free(&v.msg);
		return -1;
	}
	if (v.n > 0) {
		api_fail(e, API_E_VALIDATION, "%u validation error%s detected: %s", v.n,
		         v.n > 1 ? "s" : "", v.msg.p ? v.msg.p : "");
		sb_free(&v.msg);
		return -1;
	}
	sb_free(&v.msg);
	return 0;
}

void
api_req_free(struct api_req *req)
{
	if (req->root != NULL)
		json_decref(req->root);
	free(req->blob);
	free(req->records);
	free(req->tags);
	free(req->tag_keys);
	memset(req, 0, sizeof(*req));
}
