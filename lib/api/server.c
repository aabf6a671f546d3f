/*
 * server.c - the HTTP side: libmicrohttpd, request bodies, and a worker pool.
 *
 * libmicrohttpd runs in thread-pool mode (conf.threads event-loop threads,
 * epoll/poll chosen by MHD_USE_AUTO). Those threads only move bytes: they
 * read headers, collect the body into a buffer of our own, and write
 * replies. Anything that may block - SigV4 over a large body, a store append
 * followed by a wait for durability, a read from disk - runs on a separate
 * pool of worker threads while the connection is suspended
 * (MHD_suspend_connection); the worker resumes it when the reply is ready.
 * So a PutRecords waiting for its group commit never holds up the other
 * connections of its event-loop thread, and a slow or stalled client costs
 * one idle connection (dropped after conf.conn_timeout_s without progress),
 * never a thread.
 *
 * Request bodies are capped at conf.max_body. A Content-Length above the cap
 * is answered 413 before a byte of the body is read. A chunked body (no
 * length) that grows past the cap stops being stored at once; the rest is
 * read and dropped and the 413 goes out when it ends, or the connection is
 * closed if it runs on past DISCARD_MAX_FACTOR times the cap (libmicrohttpd
 * 0.9.75 cannot reply in the middle of a request body). Memory per request
 * is bounded either way; header memory per connection is bounded by MHD's
 * connection memory limit.
 *
 * Lifecycle of one request (one struct api_job, MHD's con_cls):
 *
 *	MHD thread: headers -> [413?] -> body chunks -> complete -> suspend
 *	worker:     auth -> dispatch (ops.c) -> reply ready -> resume
 *	MHD thread: called again -> queue the reply -> completed -> free
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "api_internal.h"

#define JOB_QUEUE_MAX 4096
#define CONN_MEMORY (64u << 10)
/* Longer than the longest request (a durability wait of 30 s plus retries). */
#define STOP_DRAIN_MS 60000
/* A refused body is read and dropped up to this many times the limit, then cut. */
#define DISCARD_MAX_FACTOR 4

struct api_job {
	struct api_job *next;
	struct firn_api *api;
	struct MHD_Connection *conn;

	bool is_metrics;
	bool too_big;
	bool responded;
	/* Set by the worker before MHD_resume_connection(); read by the MHD
	 * thread after it is called again. The resume goes through MHD's
	 * internal lock, which orders the two. */
	bool done;

	char *body;
	size_t len, cap;
	size_t discarded;

	struct api_header *hdrs;
	unsigned nhdrs, hdr_cap;
	char *query;
	char *path;

	struct api_reply reply;
	const char *ctype;
	char request_id[40];
};

static void
job_free(struct api_job *j)
{
	unsigned i;

	if (j == NULL)
		return;
	for (i = 0; i < j->nhdrs; i++) {
		free((char *)j->hdrs[i].name);
		free((char *)j->hdrs[i].value);
	}
	free(j->hdrs);
	free(j->query);
	free(j->path);
	free(j->body);
	free(j->reply.body);
	free(j);
}

/* ---- replies ------------------------------------------------------------- */

static enum MHD_Result
send_buf(struct api_job *j, int status, char *body, size_t len, const char *ctype)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	if (body == NULL) {
		body = strdup("");
		len = 0;
	}
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, "x-amzn-RequestId", j->request_id);
	rc = MHD_queue_response(j->conn, (unsigned)status, r);
	MHD_destroy_response(r);
	if (rc == MHD_YES)
		j->responded = true;
	return rc;
}

static enum MHD_Result send_error(struct api_job *j, enum api_err code, const char *fmt, ...)
        FIRN_PRINTF(3, 4);

static enum MHD_Result
send_error(struct api_job *j, enum api_err code, const char *fmt, ...)
{
	struct api_error e = {.code = code};
	struct api_reply rep = {0};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
	va_end(ap);
	api_reply_error(&rep, &e);
	api_metrics_request(j->api->metrics, OP_COUNT, code);
	return send_buf(j, rep.status, rep.body, rep.len, j->ctype);
}

/* ---- worker pool --------------------------------------------------------- */

static void
job_run(struct api_job *j)
{
	struct firn_api *api = j->api;
	struct api_error e = {0};
	char region[64];
	const char *target = NULL;
	unsigned i;
	int op;

	if (j->is_metrics) {
		j->reply.body = api_metrics_render(api, &j->reply.len);
		j->reply.status = j->reply.body ? 200 : 500;
		j->ctype = "text/plain; version=0.0.4; charset=utf-8";
		return;
	}
	snprintf(region, sizeof(region), "%s", api->region);
	if (api->conf.verify_sigv4) {
		struct sigv4_verify_conf vc = {
		        .access_key_id = api->access_key_id,
		        .secret_access_key = api->secret_access_key,
		        .now_ms = firn_now_ms(),
		};

		if (sigv4_verify(&vc, "POST", j->path, j->query, j->hdrs, j->nhdrs, j->body, j->len,
		                 region, sizeof(region), &e) < 0)
			goto fail;
	}
	for (i = 0; i < j->nhdrs; i++)
		if (strcasecmp(j->hdrs[i].name, "X-Amz-Target") == 0)
			target = j->hdrs[i].value;
	if (target == NULL || strncmp(target, API_TARGET_PREFIX, strlen(API_TARGET_PREFIX)) != 0) {
		api_fail(&e, API_E_UNKNOWN_OP,
		         "Missing or unknown X-Amz-Target: expected " API_TARGET_PREFIX
		         "<Operation>.");
		goto fail;
	}
	target += strlen(API_TARGET_PREFIX);
	op = api_op_lookup(target, strlen(target));
	if (op < 0) {
		api_fail(&e, API_E_UNKNOWN_OP, "Operation %.64s is not supported by firn.", target);
		goto fail;
	}
	api_dispatch(api, op, j->body, j->len, region, &j->reply);
	return;
fail:
	api_reply_error(&j->reply, &e);
	api_metrics_request(api->metrics, OP_COUNT, e.code);
}

static void *
worker_main(void *arg)
{
	struct firn_api *api = arg;
	struct api_job *j;

	for (;;) {
		pthread_mutex_lock(&api->q_lock);
		while (api->q_head == NULL && !api->q_stop)
			pthread_cond_wait(&api->q_cond, &api->q_lock);
		j = api->q_head;
		if (j == NULL) {
			pthread_mutex_unlock(&api->q_lock);
			return NULL;
		}
		api->q_head = j->next;
		if (api->q_head == NULL)
			api->q_tail = NULL;
		pthread_mutex_unlock(&api->q_lock);

		job_run(j);
		j->done = true;
		MHD_resume_connection(j->conn);

		pthread_mutex_lock(&api->q_lock);
		api->q_len--;
		pthread_cond_broadcast(&api->q_cond);
		pthread_mutex_unlock(&api->q_lock);
	}
}

static bool
job_enqueue(struct firn_api *api, struct api_job *j)
{
	bool ok;

	pthread_mutex_lock(&api->q_lock);
	ok = api->q_len < JOB_QUEUE_MAX && !api->q_stop;
	if (ok) {
		j->next = NULL;
		if (api->q_tail)
			api->q_tail->next = j;
		else
			api->q_head = j;
		api->q_tail = j;
		api->q_len++;
		pthread_cond_signal(&api->q_cond);
	}
	pthread_mutex_unlock(&api->q_lock);
	return ok;
}

/* ---- request intake ------------------------------------------------------ */

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct api_job *j = cls;

	(void)kind;
	if (j->nhdrs == j->hdr_cap) {
		unsigned cap = j->hdr_cap ? j->hdr_cap * 2 : 16;
		struct api_header *h = realloc(j->hdrs, cap * sizeof(*h));

		if (h == NULL)
			return MHD_NO;
		j->hdrs = h;
		j->hdr_cap = cap;
	}
	j->hdrs[j->nhdrs].name = strdup(key);
	j->hdrs[j->nhdrs].value = strdup(value ? value : "");
	if (j->hdrs[j->nhdrs].name == NULL || j->hdrs[j->nhdrs].value == NULL) {
		free((char *)j->hdrs[j->nhdrs].name);
		free((char *)j->hdrs[j->nhdrs].value);
		return MHD_NO;
	}
	j->nhdrs++;
	return MHD_YES;
}

/* Re-encode query arguments the way SigV4 canonicalises them (MHD hands them decoded). */
static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	struct sbuf *b = cls;
	const char *parts[2] = {key, value ? value : ""};
	int p;

	(void)kind;
	if (b->len > 0)
		sb_addc(b, '&');
	for (p = 0; p < 2; p++) {
		const unsigned char *s = (const unsigned char *)parts[p];

		if (p == 1)
			sb_addc(b, '=');
		for (; *s; s++) {
			if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
			    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.' ||
			    *s == '~') {
				sb_addc(b, (char)*s);
			} else {
				char e[3] = {'%', hex[*s >> 4], hex[*s & 15]};

				sb_add(b, e, 3);
			}
		}
	}
	return MHD_YES;
}

static const char *
reply_ctype(struct MHD_Connection *conn)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");

	/* Echo the JSON flavour the client spoke; 1.1 is what Kinesis uses. */
	if (ct != NULL && strncmp(ct, "application/x-amz-json-1.0", 26) == 0)
		return "application/x-amz-json-1.0";
	return "application/x-amz-json-1.1";
}

static void
make_request_id(struct firn_api *api, char out[40])
{
	/* Relaxed: only uniqueness of the value matters, nothing is ordered by it. */
	uint64_t seq = __atomic_add_fetch(&api->req_seq, 1, __ATOMIC_RELAXED);

	snprintf(out, 40, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(api->boot_id >> 32),
	         (unsigned)(api->boot_id >> 16) & 0xffff, (unsigned)api->boot_id & 0xffff,
	         (unsigned)(seq >> 48) & 0xffff, (unsigned long long)(seq & 0xffffffffffffull));
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct firn_api *api = cls;
	struct api_job *j = *con_cls;
	size_t n = *upload_data_size;

	(void)version;
	if (j == NULL) {
		const char *cl;
		uint64_t clen;

		/* First call: the headers are in, no body yet. */
		j = calloc(1, sizeof(*j));
		if (j == NULL)
			return MHD_NO;
		*con_cls = j;
		j->api = api;
		j->conn = conn;
		j->ctype = reply_ctype(conn);
		make_request_id(api, j->request_id);
		if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0) {
			j->is_metrics = true;
			return MHD_YES;
		}
		if (strcmp(method, "POST") != 0)
			return send_error(j, API_E_UNKNOWN_OP,
			                  "Only POST / (Kinesis JSON 1.1) and GET /metrics are "
			                  "served.");
		if (strcmp(url, "/") != 0)
			return send_error(j, API_E_UNKNOWN_OP, "Unknown path %.64s.", url);
		if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type") != NULL &&
		    strstr(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
		           "cbor") != NULL)
			return send_error(j, API_E_SERIALIZATION,
			                  "CBOR is not supported: configure the SDK for JSON "
			                  "(e.g. AWS_CBOR_DISABLE=1 for the Java SDK).");
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
		if (cl != NULL && firn_parse_u64(cl, &clen) == 0 && clen > api->conf.max_body) {
			j->too_big = true;
			return send_error(
			        j, API_E_TOO_LARGE,
			        "Request body of %llu bytes exceeds the limit of %zu bytes.",
			        (unsigned long long)clen, api->conf.max_body);
		}
		return MHD_YES;
	}
	if (n > 0) {
		*upload_data_size = 0;
		if (j->responded || j->too_big) {
			/*
			 * Discarding the rest of a refused body, kept in no buffer.
			 * A body that goes on and on gets its connection closed.
			 */
			j->discarded += n;
			return j->discarded > DISCARD_MAX_FACTOR * api->conf.max_body ? MHD_NO
			                                                              : MHD_YES;
		}
		if (j->len + n > api->conf.max_body) {
			j->too_big = true;
			j->discarded = j->len + n;
			free(j->body);
			j->body = NULL;
			j->len = 0;
			j->cap = 0;
			/*
			 * Too big while streaming (chunked, no Content-Length). Newer
			 * libmicrohttpd can answer right here; 0.9.75 refuses a reply
			 * in the middle of a body, so then the 413 goes out when the
			 * body ends (see DISCARD_MAX_FACTOR).
			 */
			send_error(j, API_E_TOO_LARGE,
			           "Request body exceeds the limit of %zu bytes.",
			           api->conf.max_body);
			return MHD_YES;
		}
		if (j->len + n > j->cap) {
			size_t cap = FIRN_MAX(j->cap * 2, j->len + n);
			char *b;

			cap = FIRN_MIN(cap, api->conf.max_body);
			b = realloc(j->body, cap);
			if (b == NULL)
				return MHD_NO;
			j->body = b;
			j->cap = cap;
		}
		memcpy(j->body + j->len, upload_data, n);
		j->len += n;
		return MHD_YES;
	}
	/* The body is complete (or we were resumed with the reply ready). */
	if (j->responded)
		return MHD_YES;
	if (j->done) {
		char *body = j->reply.body;

		/* The buffer belongs to MHD from here on, whatever the outcome. */
		j->reply.body = NULL;
		return send_buf(j, j->reply.status, body, j->reply.len, j->ctype);
	}
	if (j->too_big)
		return send_error(j, API_E_TOO_LARGE,
		                  "Request body exceeds the limit of %zu bytes.",
		                  api->conf.max_body);
	if (!j->is_metrics) {
		struct sbuf q;

		MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, j);
		sb_init(&q);
		MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
		j->query = sb_take(&q, NULL);
		j->path = strdup(url);
		if (j->query == NULL || j->path == NULL)
			return MHD_NO;
	}
	if (!job_enqueue(api, j))
		return send_error(j, API_E_UNAVAILABLE, "The server is busy; retry later.");
	MHD_suspend_connection(conn);
	return MHD_YES;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	job_free(*con_cls);
	*con_cls = NULL;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	FIRN_LOG(DEBUG, API_LOG, "libmicrohttpd: %s", msg);
}

/* ---- start / stop -------------------------------------------------------- */

void
firn_api_conf_defaults(struct firn_api_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->bind = "127.0.0.1:4567";
	conf->access_key_id = FIRN_API_DEFAULT_ACCESS_KEY;
	conf->secret_access_key = FIRN_API_DEFAULT_SECRET;
	conf->account_id = "000000000000";
	conf->region = FIRN_API_DEFAULT_REGION;
	conf->verify_sigv4 = true;
	conf->throttle = false;
	conf->threads = 4;
	/*
	 * PutRecords carries at most 5 MiB of data and keys; base64 makes data
	 * 4/3 larger, and 500 entries of JSON punctuation and 256-byte keys add
	 * well under 512 KiB.
	 */
	conf->max_body = (size_t)(5u << 20) / 3 * 4 + (512u << 10);
	conf->workers = 32;
	conf->conn_timeout_s = 30;
	conf->max_conns = 1024;
	conf->shard_limit = 10000;
}

/* "ADDR:PORT" or "[V6ADDR]:PORT" -> sockaddr. */
static int
parse_bind(const char *bind, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon, *h = bind;
	struct addrinfo hints = {0}, *ai = NULL;
	size_t hl;
	int rc;

	colon = strrchr(bind, ':');
	if (colon == NULL || colon[1] == '\0')
		return firn_err_set(-EINVAL, "api address '%s' is not ADDR:PORT", bind);
	hl = (size_t)(colon - bind);
	if (hl >= 2 && bind[0] == '[' && bind[hl - 1] == ']') {
		h = bind + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return firn_err_set(-EINVAL, "api address '%s' has no host", bind);
	memcpy(host, h, hl);
	host[hl] = '\0';
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0)
		return firn_err_set(-EINVAL, "api address '%s': %s", bind, gai_strerror(rc));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static char *
dup_or(const char *s, const char *def)
{
	return strdup(s ? s : def);
}

static void
api_free(struct firn_api *api)
{
	free(api->bind);
	free(api->access_key_id);
	if (api->secret_access_key)
		OPENSSL_cleanse(api->secret_access_key, strlen(api->secret_access_key));
	free(api->secret_access_key);
	free(api->account_id);
	free(api->region);
	free(api->workers);
	api_metrics_free(api->metrics);
	pthread_mutex_destroy(&api->admin_lock);
	pthread_mutex_destroy(&api->q_lock);
	pthread_cond_destroy(&api->q_cond);
	OPENSSL_cleanse(api->iter_key, sizeof(api->iter_key));
	free(api);
}

static void
workers_stop(struct firn_api *api)
{
	unsigned i;

	pthread_mutex_lock(&api->q_lock);
	api->q_stop = true;
	pthread_cond_broadcast(&api->q_cond);
	pthread_mutex_unlock(&api->q_lock);
	for (i = 0; i < api->nworkers; i++)
		pthread_join(api->workers[i], NULL);
	api->nworkers = 0;
}

struct firn_api *
firn_api_start(const struct firn_api_conf *conf)
{
	struct firn_api_conf def;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct firn_api *api;
	const union MHD_DaemonInfo *info;
	unsigned i;
	int rc;

	firn_api_conf_defaults(&def);
	if (conf->catalog == NULL || conf->store == NULL) {
		firn_err_set(-EINVAL, "api: catalog and store are required");
		return NULL;
	}
	api = calloc(1, sizeof(*api));
	if (api == NULL) {
		firn_err_set(-ENOMEM, "api: out of memory");
		return NULL;
	}
	api->conf = *conf;
	pthread_mutex_init(&api->admin_lock, NULL);
	pthread_mutex_init(&api->q_lock, NULL);
	pthread_cond_init(&api->q_cond, NULL);
	api->bind = dup_or(conf->bind, def.bind);
	api->access_key_id = dup_or(conf->access_key_id, def.access_key_id);
	api->secret_access_key = dup_or(conf->secret_access_key, def.secret_access_key);
	api->account_id = dup_or(conf->account_id, def.account_id);
	api->region = dup_or(conf->region, def.region);
	api->catalog = conf->catalog;
	api->store = conf->store;
	api->metrics = api_metrics_new();
	if (api->conf.threads == 0)
		api->conf.threads = def.threads;
	if (api->conf.workers == 0)
		api->conf.workers = def.workers;
	if (api->conf.max_body == 0)
		api->conf.max_body = def.max_body;
	if (api->conf.conn_timeout_s == 0)
		api->conf.conn_timeout_s = def.conn_timeout_s;
	if (api->conf.max_conns == 0)
		api->conf.max_conns = def.max_conns;
	if (api->conf.shard_limit == 0)
		api->conf.shard_limit = def.shard_limit;
	if (!api->bind || !api->access_key_id || !api->secret_access_key || !api->account_id ||
	    !api->region || !api->metrics) {
		firn_err_set(-ENOMEM, "api: out of memory");
		goto fail;
	}
	if (strlen(api->account_id) != 12 || strspn(api->account_id, "0123456789") != 12) {
		firn_err_set(-EINVAL, "api: account_id '%s' must be 12 digits", api->account_id);
		goto fail;
	}
	if (conf->iterator_secret != NULL)
		memcpy(api->iter_key, conf->iterator_secret, sizeof(api->iter_key));
	if ((conf->iterator_secret == NULL &&
	     RAND_bytes(api->iter_key, sizeof(api->iter_key)) != 1) ||
	    RAND_bytes((unsigned char *)&api->boot_id, sizeof(api->boot_id)) != 1) {
		firn_err_set(-EIO, "api: no randomness for the iterator key");
		goto fail;
	}
	api->iter_ttl_ms = API_ITER_TTL_MS;
	if (getenv("FIRN_API_ITERATOR_TTL_MS") != NULL) {
		uint64_t v;

		if (firn_parse_u64(getenv("FIRN_API_ITERATOR_TTL_MS"), &v) == 0 && v > 0 &&
		    v <= API_ITER_TTL_MS) {
			api->iter_ttl_ms = (int64_t)v;
			FIRN_LOG(WARN, API_LOG,
			         "iterators and NextTokens expire after %llu ms "
			         "(FIRN_API_ITERATOR_TTL_MS)",
			         (unsigned long long)v);
		}
	}
	rc = parse_bind(api->bind, &ss, &sslen);
	if (rc < 0)
		goto fail;
	api->workers = calloc(api->conf.workers, sizeof(*api->workers));
	if (api->workers == NULL) {
		firn_err_set(-ENOMEM, "api: out of memory");
		goto fail;
	}
	for (i = 0; i < api->conf.workers; i++) {
		rc = pthread_create(&api->workers[i], NULL, worker_main, api);
		if (rc != 0) {
			firn_err_set(-rc, "api: cannot start worker threads: %s", strerror(rc));
			workers_stop(api);
			goto fail;
		}
		api->nworkers++;
	}
	api->mhd = MHD_start_daemon(
	        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
	                MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	        0, NULL, NULL, on_request, api, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api,
	        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
	        (unsigned int)api->conf.threads, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	        (size_t)CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT,
	        (unsigned int)api->conf.conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
	        (unsigned int)api->conf.max_conns, MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
	        MHD_OPTION_END);
	if (api->mhd == NULL) {
		firn_err_set(-EADDRINUSE,
		             "api: cannot listen on %s (address in use or not available)",
		             api->bind);
		workers_stop(api);
		goto fail;
	}
	info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
	api->port = info ? info->port : 0;
	FIRN_LOG(INFO, API_LOG, "Kinesis API on %s (port %u), SigV4 %s, %u+%u threads", api->bind,
	         api->port, api->conf.verify_sigv4 ? "verified" : "NOT verified", api->conf.threads,
	         api->conf.workers);
	return api;
fail:
	api_free(api);
	return NULL;
}

uint16_t
firn_api_port(const struct firn_api *api)
{
	return api->port;
}

void
firn_api_stop(struct firn_api *api)
{
	uint64_t deadline = firn_mono_ns() + (uint64_t)STOP_DRAIN_MS * 1000000ull;
	MHD_socket lsock;
	unsigned stuck;

	if (api == NULL)
		return;
	/* Stop accepting; connections already open keep being served. */
	lsock = MHD_quiesce_daemon(api->mhd);
	/*
	 * Let queued and running requests finish: MHD refuses to stop with
	 * suspended connections, and a PutRecords in flight should get its
	 * answer (its records are durable by then). q_stop first, so a body
	 * completing now is answered 503 instead of joining the queue.
	 */
	pthread_mutex_lock(&api->q_lock);
	api->q_stop = true;
	pthread_cond_broadcast(&api->q_cond);
	while (api->q_len > 0 && firn_mono_ns() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&api->q_cond, &api->q_lock, &ts);
	}
	stuck = api->q_len;
	pthread_mutex_unlock(&api->q_lock);
	if (stuck > 0) {
		/*
		 * A worker still holds a suspended connection: tearing MHD down
		 * under it would be a use-after-free. The process is exiting;
		 * leave the server to it.
		 */
		FIRN_LOG(ERR, API_LOG, "%u requests still running after %d s; not freeing the API",
		         stuck, STOP_DRAIN_MS / 1000);
		return;
	}
	MHD_stop_daemon(api->mhd);
	/* After quiesce the listening socket is ours to close. */
	if (lsock != MHD_INVALID_SOCKET)
		close(lsock);
	workers_stop(api);
	api_free(api);
}
