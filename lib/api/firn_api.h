/*
 * firn_api.h - the Kinesis-compatible HTTP API (JSON 1.1, SigV4) and /metrics.
 *
 * firnd starts one API server on its management address. Requests are
 * `POST /` with `X-Amz-Target: Kinesis_20131202.<Operation>`; `GET /metrics`
 * serves Prometheus text. The server owns no data: it drives the catalog
 * (lib/stream) and the store (lib/store) it is given.
 *
 *	struct firn_api_conf ac;
 *	firn_api_conf_defaults(&ac);
 *	ac.bind = "127.0.0.1:4567"; ac.catalog = cat; ac.store = st; ...
 *	struct firn_api *api = firn_api_start(&ac);
 *	...
 *	firn_api_stop(api);
 *
 * The second half of this header is the client side: SigV4 signing and a
 * tiny blocking HTTP/1.1 client, so the `firn` CLI and tools talk to the API
 * without libcurl and sign exactly the way the server verifies.
 *
 * Thread safety: the server runs its own threads; start/stop from one thread.
 * A client handle belongs to one thread at a time; firn_sigv4_sign() and the
 * base64 helpers are pure.
 */
#ifndef FIRN_API_H
#define FIRN_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firn_store.h"
#include "firn_stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- server side --------------------------------------------------------- */

struct firn_api_conf {
	const char *bind; /* "ADDR:PORT", default 127.0.0.1:4567 */
	struct firn_catalog *catalog;
	struct firn_store *store;
	const char *access_key_id; /* SigV4 credentials */
	const char *secret_access_key;
	const char *account_id; /* 12 digits, for ARNs */
	const char *region;     /* default region when a request has none */
	bool verify_sigv4;      /* default true */
	bool throttle;          /* Kinesis per-shard limits, default false */
	unsigned threads;       /* HTTP event-loop threads (libmicrohttpd pool), default 4 */
	size_t max_body;        /* bytes, default 5 MiB + JSON/base64 overhead */
	/* Added with the implementation; firn_api_conf_defaults() fills them. */
	unsigned workers;        /* request handler threads (blocking work), default 32 */
	unsigned conn_timeout_s; /* idle connection timeout, default 30 */
	unsigned max_conns;      /* concurrent connections, default 1024 */
	uint32_t shard_limit;    /* open shards across all streams, default 10000 */
	/*
	 * Optional: more Prometheus text appended to GET /metrics (the UDP
	 * ingest pipeline's counters). Writes at most cap bytes into buf and
	 * returns the length it wanted (snprintf-style). Called on an HTTP
	 * worker thread; must only read counters.
	 */
	size_t (*metrics_extra)(void *arg, char *buf, size_t cap);
	void *metrics_extra_arg;
	/*
	 * Optional: 32 bytes that key the HMAC of shard iterators and
	 * pagination tokens (firnd passes firn_kdf(kek, "firn1 iterator key")),
	 * so they stay valid across a restart. NULL: a random key per start.
	 */
	const uint8_t *iterator_secret;
};

void firn_api_conf_defaults(struct firn_api_conf *conf);

/* Start serving. NULL with the reason in the error chain (e.g. port in use). */
struct firn_api *firn_api_start(const struct firn_api_conf *conf);

/* The port actually bound (useful with "ADDR:0"). */
uint16_t firn_api_port(const struct firn_api *api);

/* Stop accepting, finish requests in flight, free. */
void firn_api_stop(struct firn_api *api);

/* ---- client side --------------------------------------------------------- */

/* Defaults shared by firnd and the CLI, so a fresh install works out of the box. */
#define FIRN_API_DEFAULT_ENDPOINT "http://127.0.0.1:4567"
#define FIRN_API_DEFAULT_ACCESS_KEY "FIRNDEMOACCESSKEY"
#define FIRN_API_DEFAULT_SECRET "firn-demo-secret-change-me"
#define FIRN_API_DEFAULT_REGION "us-east-1"

struct firn_sigv4_header {
	const char *name;
	const char *value;
};

/*
 * A request to sign. amz_date is "YYYYMMDDTHHMMSSZ" (it must also be sent as
 * the X-Amz-Date header, which the caller lists in hdrs). Every header in hdrs
 * is signed.
 */
struct firn_sigv4_req {
	const char *method; /* "POST" */
	const char *path;   /* "/" */
	const char *query;  /* "" or "a=1&b=2" */
	const struct firn_sigv4_header *hdrs;
	unsigned nhdrs;
	const void *body;
	size_t body_len;
	const char *access_key_id;
	const char *secret_access_key;
	const char *region;
	const char *service; /* "kinesis" */
	const char *amz_date;
};

/*
 * Write the Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=...") into out. 0, -EINVAL (bad date, too many
 * headers), -ENOSPC (out too small) or -ENOMEM.
 */
int firn_sigv4_sign(const struct firn_sigv4_req *req, char *out, size_t size);

/* "YYYYMMDDTHHMMSSZ" for a Unix time. buf must hold 17 bytes. */
void firn_sigv4_date(int64_t unix_s, char buf[17]);

/* Standard base64 with padding. Encoded length of n bytes incl. NUL. */
#define FIRN_B64_ENC_SIZE(n) ((((n) + 2) / 3) * 4 + 1)
size_t firn_b64_encode(const void *in, size_t len, char *out);
/*
 * Decode standard base64 (padding optional). out needs len*3/4+3 bytes.
 * Returns the decoded length or -EINVAL.
 */
long firn_b64_decode(const char *in, size_t len, uint8_t *out);

struct firn_api_client_conf {
	const char *endpoint; /* "http://HOST:PORT"; NULL: FIRN_API_DEFAULT_ENDPOINT */
	const char *access_key_id;
	const char *secret_access_key;
	const char *region; /* NULL: us-east-1 */
	int timeout_ms;     /* per call; 0: 30000 */
};

struct firn_api_reply {
	int status; /* HTTP status */
	char *body; /* NUL-terminated, malloc'd */
	size_t len;
	char request_id[64];
};

struct firn_api_client;

/* Parse the endpoint and remember the credentials. NULL with the reason in the error chain. */
struct firn_api_client *firn_api_client_open(const struct firn_api_client_conf *conf);

/*
 * POST one signed Kinesis operation (op is e.g. "PutRecords") with a JSON
 * body and wait for the reply. The connection is kept alive between calls and
 * reopened once if the server closed it. 0 with *reply filled (any HTTP
 * status), or -errno for transport failures (message in the error chain).
 */
int firn_api_client_call(struct firn_api_client *c, const char *op, const char *json, size_t len,
                         struct firn_api_reply *reply);

/* GET a path (e.g. "/metrics") without signing. Same contract as _call. */
int firn_api_client_get(struct firn_api_client *c, const char *path, struct firn_api_reply *reply);

void firn_api_reply_free(struct firn_api_reply *reply);
void firn_api_client_close(struct firn_api_client *c);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_API_H */
