/*
 * api_internal.h - private to lib/api: errors, the typed request model, SigV4
 * verification, iterator and token codecs, the operation dispatcher and the
 * per-shard counters.
 *
 * The layers, outermost first:
 *
 *	server.c    libmicrohttpd glue: bodies, 413, suspend/resume, worker pool
 *	sigv4.c     canonical request, signing key, verification
 *	request.c   JSON -> struct api_req (every shape and validation rule)
 *	ops.c       struct api_req -> catalog/store calls -> JSON reply
 *	token.c     shard iterators and pagination tokens (HMAC-protected)
 *	metrics.c   per-shard counters, throttling buckets, /metrics text
 *
 * request.c and sigv4.c touch neither the catalog nor the store, so the unit
 * tests and the fuzz harness drive them without a daemon.
 */
#ifndef FIRN_API_INTERNAL_H
#define FIRN_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "firn_api.h"
#include "firn_common.h"
#include "firn_record.h"
#include "firn_store.h"
#include "firn_stream.h"

#define API_LOG "api"
#define API_TARGET_PREFIX "Kinesis_20131202."
#define API_ITER_TTL_MS (5 * 60 * 1000)
#define API_TOKEN_TTL_MS (5 * 60 * 1000)
#define API_SKEW_MS (5 * 60 * 1000)
#define API_PUT_RECORDS_MAX 500
#define API_PUT_RECORDS_BYTES (5u << 20) /* data + partition keys per PutRecords */
#define API_GET_LIMIT_MAX 10000
#define API_GET_BYTES_MAX (10u << 20)
#define API_SHARD_ID_LEN 20 /* "shardId-" + 12 digits */

/* ---- growable string (sbuf.c) -------------------------------------------- */

/* A string that grows; after an allocation failure it stays failed (oom). */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

void sb_init(struct sbuf *b);
void sb_free(struct sbuf *b);
void sb_add(struct sbuf *b, const void *s, size_t n);
void sb_adds(struct sbuf *b, const char *s);
void sb_addc(struct sbuf *b, char c);
void sb_printf(struct sbuf *b, const char *fmt, ...) FIRN_PRINTF(2, 3);
/* Append n bytes to be filled by the caller; NULL after oom. */
char *sb_extend(struct sbuf *b, size_t n);
/* A JSON string literal: quotes, escapes, invalid UTF-8 as U+FFFD. */
void sb_json_str(struct sbuf *b, const void *s, size_t n);
/* Hand the NUL-terminated buffer to the caller (NULL after oom) and reset b. */
char *sb_take(struct sbuf *b, size_t *len);

/* ---- errors -------------------------------------------------------------- */

enum api_err {
	API_OK = 0,
	API_E_VALIDATION,
	API_E_SERIALIZATION,
	API_E_UNKNOWN_OP,
	API_E_INVALID_ARGUMENT,
	API_E_NOT_FOUND,
	API_E_IN_USE,
	API_E_LIMIT,
	API_E_EXPIRED_ITERATOR,
	API_E_EXPIRED_TOKEN,
	API_E_THROUGHPUT,
	API_E_MISSING_AUTH,
	API_E_INCOMPLETE_SIG,
	API_E_INVALID_SIG,
	API_E_UNRECOGNIZED_CLIENT,
	API_E_ACCESS_DENIED,
	API_E_TOO_LARGE,
	API_E_INTERNAL,
	API_E_UNAVAILABLE,
	API_E_COUNT
};

struct api_error {
	enum api_err code;
	char msg[768];
};

/* "__type" name and HTTP status of an error kind. */
const char *api_err_type(enum api_err code);
int api_err_http(enum api_err code);
/* Fill e and return -1 so handlers can `return api_fail(...)`. */
int api_fail(struct api_error *e, enum api_err code, const char *fmt, ...) FIRN_PRINTF(3, 4);

/* ---- operations and the typed request ------------------------------------ */

enum api_op {
	OP_CREATE_STREAM,
	OP_DELETE_STREAM,
	OP_DESCRIBE_STREAM,
	OP_DESCRIBE_STREAM_SUMMARY,
	OP_LIST_STREAMS,
	OP_LIST_SHARDS,
	OP_PUT_RECORD,
	OP_PUT_RECORDS,
	OP_GET_SHARD_ITERATOR,
	OP_GET_RECORDS,
	OP_SPLIT_SHARD,
	OP_MERGE_SHARDS,
	OP_UPDATE_SHARD_COUNT,
	OP_INCREASE_RETENTION,
	OP_DECREASE_RETENTION,
	OP_ADD_TAGS,
	OP_REMOVE_TAGS,
	OP_LIST_TAGS,
	OP_DESCRIBE_LIMITS,
	OP_COUNT
};

/* Operation name -> op, or -1. */
int api_op_lookup(const char *name, size_t len);
const char *api_op_name(enum api_op op);

enum api_iter_type {
	ITER_AT_SEQUENCE_NUMBER,
	ITER_AFTER_SEQUENCE_NUMBER,
	ITER_TRIM_HORIZON,
	ITER_LATEST,
	ITER_AT_TIMESTAMP,
};

enum api_shard_filter {
	FILTER_NONE = -1,
	FILTER_AFTER_SHARD_ID,
	FILTER_AT_TRIM_HORIZON,
	FILTER_FROM_TRIM_HORIZON,
	FILTER_AT_LATEST,
	FILTER_AT_TIMESTAMP,
	FILTER_FROM_TIMESTAMP,
};

struct api_put_entry {
	const char *key; /* into req->root */
	size_t key_len;
	const uint8_t *data; /* into req->blob */
	size_t data_len;
	bool has_ehk;
	struct firn_u128 ehk;
};

/*
 * One parsed and validated request. Strings point into root (the parsed JSON)
 * and stay valid until api_req_free(). Fields a given operation does not take
 * stay zero. A shard id given by the client is kept as text (shard_a/b,
 * shard_id, exclusive_start); ops.c resolves it against the stream.
 */
struct api_req {
	enum api_op op;
	json_t *root;
	uint8_t *blob;

	bool has_stream;
	char stream[FIRN_STREAM_NAME_MAX + 1];
	bool has_arn; /* StreamARN given (its name is in stream) */

	bool has_shard_count;
	uint32_t shard_count;
	bool on_demand;

	uint32_t ntags;
	struct firn_tag *tags; /* malloc'd */
	uint32_t nkeys;
	const char **tag_keys; /* malloc'd array into root */

	bool has_limit;
	uint32_t limit;              /* Limit / MaxResults */
	const char *exclusive_start; /* ExclusiveStartShardId/StreamName/TagKey */
	const char *next_token;

	enum api_shard_filter filter;
	const char *filter_shard_id;
	bool has_filter_ts;
	int64_t filter_ts_ms;
	bool has_creation_ts;
	int64_t creation_ts_ms;

	uint32_t nrecords;
	struct api_put_entry *records; /* malloc'd; PutRecord uses one */
	size_t records_bytes;          /* data + keys */

	const char *shard_id; /* GetShardIterator ShardId */
	enum api_iter_type iter_type;
	const char *start_seq;
	bool has_ts;
	int64_t ts_ms;

	const char *iterator;

	const char *shard_a; /* ShardToSplit / ShardToMerge */
	const char *shard_b; /* AdjacentShardToMerge */
	struct firn_u128 new_start;

	uint32_t target; /* TargetShardCount */
	int64_t hours;   /* RetentionPeriodHours */
};

/*
 * Parse and validate a request body for op. Reports the first problem class
 * found: SerializationException (not JSON, wrong JSON types, bad base64),
 * ValidationException (AWS-style list of constraint violations) or
 * InvalidArgumentException (semantic checks that need no catalog).
 * 0 or -1 with e filled. Always call api_req_free() afterwards.
 */
int api_req_parse(enum api_op op, const char *body, size_t len, struct api_req *req,
                  struct api_error *e);
void api_req_free(struct api_req *req);

/*
 * The two halves of api_req_parse(): the PutRecords fast path (1 = parsed
 * and valid, 0 = not handled: use the general path) and the general jansson
 * path. Exposed so tests and the fuzz harness can check they agree.
 */
int api_put_records_fast(const char *body, size_t len, struct api_req *req);
int api_req_parse_json(enum api_op op, const char *body, size_t len, struct api_req *req,
                       struct api_error *e);

/*
 * "shardId-000000000007" -> 7. Accepts "shardId-" plus 1..12 digits (leading
 * zeros optional) below FIRN_SHARD_INDEX_MAX. 0 or -EINVAL.
 */
int api_shard_id_parse(const char *s, uint32_t *index);
void api_shard_id_format(uint32_t index, char buf[API_SHARD_ID_LEN + 1]);

/* "arn:aws:kinesis:REGION:ACCOUNT:stream/NAME" -> name (and region). 0 or -EINVAL. */
int api_arn_parse(const char *arn, char name[FIRN_STREAM_NAME_MAX + 1], char *region,
                  size_t region_size);

/* ---- SigV4 --------------------------------------------------------------- */

struct api_header {
	const char *name; /* as received, any case */
	const char *value;
};

struct sigv4_auth {
	char akid[129];
	char date[9]; /* YYYYMMDD from the credential scope */
	char region[64];
	char service[64];
	char signed_headers[1024]; /* "content-type;host;x-amz-date" */
	char signature[65];
};

/*
 * Parse an Authorization header value. 0, or -1 with
 * IncompleteSignatureException in e.
 */
int sigv4_parse_auth(const char *value, struct sigv4_auth *out, struct api_error *e);

/*
 * Build the canonical request (malloc'd, NUL-terminated) from the headers
 * named in signed_headers ("a;b;c", lowercase, sorted). Header names in hdrs
 * match case-insensitively; repeated headers are joined with ',' and values
 * trimmed with inner runs of spaces collapsed. 0 or -ENOMEM / -EINVAL.
 */
int sigv4_canonical_request(const char *method, const char *path, const char *query,
                            const struct api_header *hdrs, unsigned nhdrs,
                            const char *signed_headers, const char *payload_hash_hex, char **out);

/* "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex(sha256(canonical))>" into out. */
int sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical, char *out,
                         size_t size);

/* kSigning = HMAC chain of "AWS4"+secret over date, region, service, "aws4_request". */
void sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, uint8_t key[32]);

/* hex(HMAC(key, string_to_sign)) into hex[65]. */
void sigv4_hmac_hex(const uint8_t key[32], const char *msg, char hex[65]);

/* hex(sha256(data)) into hex[65]. */
void sigv4_sha256_hex(const void *data, size_t len, char hex[65]);

/* "YYYYMMDDTHHMMSSZ" -> Unix seconds. 0 or -EINVAL. */
int sigv4_parse_amz_date(const char *s, int64_t *unix_s);

struct sigv4_verify_conf {
	const char *access_key_id;
	const char *secret_access_key;
	int64_t now_ms;
};

/*
 * Verify a whole request: Authorization present and well formed, date within
 * 5 minutes, scope service "kinesis", known key, host signed, signature
 * right. On success the scope's region goes to region_out. 0 or -1 with the
 * matching auth error in e.
 */
int sigv4_verify(const struct sigv4_verify_conf *vc, const char *method, const char *path,
                 const char *query, const struct api_header *hdrs, unsigned nhdrs, const void *body,
                 size_t body_len, char *region_out, size_t region_size, struct api_error *e);

/* ---- iterators and tokens ------------------------------------------------ */

enum api_iter_mode {
	ITER_MODE_COUNTER = 1, /* read from counter */
	ITER_MODE_TIME = 2,    /* read from the first record at or after ts_ms */
};

struct api_iter {
	uint64_t stream_id;
	uint32_t shard;
	uint8_t mode;
	uint64_t counter;
	int64_t ts_ms;
	int64_t issued_ms;
};

#define API_ITER_KEY_LEN 32
#define API_ITER_STR_MAX 128

/* Encode into out (NUL-terminated, < API_ITER_STR_MAX). Returns the length. */
size_t api_iter_encode(const uint8_t key[API_ITER_KEY_LEN], const struct api_iter *it,
                       char out[API_ITER_STR_MAX]);
/* -EINVAL for anything not minted by this key (garbage, tampered, truncated). */
int api_iter_decode(const uint8_t key[API_ITER_KEY_LEN], const char *s, size_t len,
                    struct api_iter *it);

enum api_token_kind {
	TOKEN_LIST_STREAMS = 1,
	TOKEN_LIST_SHARDS = 2,
};

/* A pagination token: where to continue, bound to a stream (ListShards). */
struct api_token {
	uint8_t kind;
	int64_t issued_ms;
	uint64_t stream_id;   /* ListShards */
	uint32_t after_shard; /* ListShards: continue after this index */
	int8_t filter;        /* ListShards: enum api_shard_filter */
	int64_t filter_ts_ms;
	char name[FIRN_STREAM_NAME_MAX + 1]; /* ListStreams: last name; ListShards: stream */
};

/* malloc'd token string or NULL. */
char *api_token_encode(const uint8_t key[API_ITER_KEY_LEN], const struct api_token *t);
int api_token_decode(const uint8_t key[API_ITER_KEY_LEN], const char *s, size_t len,
                     struct api_token *t);

/* ---- counters, throttling, metrics --------------------------------------- */

struct api_shard_ctr;

struct api_metrics;
struct api_metrics *api_metrics_new(void);
void api_metrics_free(struct api_metrics *m);

/* The counters of (stream, shard), created on first use. Never NULL unless out of memory. */
struct api_shard_ctr *api_metrics_shard(struct api_metrics *m, uint64_t stream_id, uint32_t shard);
void api_ctr_in(struct api_shard_ctr *c, uint64_t records, uint64_t bytes);
void api_ctr_out(struct api_shard_ctr *c, uint64_t records, uint64_t bytes, int64_t age_ms);
void api_ctr_throttled(struct api_shard_ctr *c, uint64_t records);
/*
 * Token buckets of Kinesis' per-shard write limits (1 MiB/s, 1000 records/s).
 * true if a record of bytes may pass now (and takes the tokens).
 */
bool api_ctr_admit(struct api_shard_ctr *c, size_t bytes, int64_t now_ms);

void api_metrics_request(struct api_metrics *m, int op, enum api_err err);

/* ---- the server object --------------------------------------------------- */

struct api_job;

struct firn_api {
	struct firn_api_conf conf;
	char *bind;
	char *access_key_id;
	char *secret_access_key;
	char *account_id;
	char *region;

	struct firn_catalog *catalog;
	struct firn_store *store;
	uint8_t iter_key[API_ITER_KEY_LEN];

	/* Serialises changes that span catalog and store (create, delete, reshard). */
	pthread_mutex_t admin_lock;

	struct api_metrics *metrics;

	/* Request id counter: relaxed fetch-add, only uniqueness matters. */
	uint64_t req_seq;
	uint64_t boot_id;

	/* Worker pool (server.c). */
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	struct api_job *q_head, *q_tail;
	unsigned q_len;
	bool q_stop;
	pthread_t *workers;
	unsigned nworkers;

	void *mhd; /* struct MHD_Daemon */
	uint16_t port;

	/* Iterator and NextToken lifetime: 5 minutes as in Kinesis, or the
	 * FIRN_API_ITERATOR_TTL_MS test knob (integration tests of expiry). */
	int64_t iter_ttl_ms;
};

/* The reply of one operation. */
struct api_reply {
	int status;
	char *body; /* malloc'd JSON */
	size_t len;
	enum api_err err;
};

/*
 * Run one operation (already authenticated) and fill reply. region is the
 * region of the caller's credential scope (for ARNs). Safe to call from many
 * threads at once.
 */
void api_dispatch(struct firn_api *api, int op, const char *body, size_t len, const char *region,
                  struct api_reply *reply);

/* Render an error body {"__type","message"} into reply. */
void api_reply_error(struct api_reply *reply, const struct api_error *e);

/* Prometheus text for GET /metrics (malloc'd). */
char *api_metrics_render(struct firn_api *api, size_t *len);

#endif /* FIRN_API_INTERNAL_H */
