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
 * Thread safety: the server runs its own threads; start/stop from one thread.
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

struct firn_api_conf {
	const char *bind;		/* "ADDR:PORT", default 127.0.0.1:4567 */
	struct firn_catalog *catalog;
	struct firn_store *store;
	const char *access_key_id;	/* SigV4 credentials */
	const char *secret_access_key;
	const char *account_id;		/* 12 digits, for ARNs */
	const char *region;		/* default region when a request has none */
	bool verify_sigv4;		/* default true */
	bool throttle;			/* Kinesis per-shard limits, default false */
	unsigned threads;		/* HTTP worker threads, default 4 */
	size_t max_body;		/* bytes, default 5 MiB + JSON/base64 overhead */
};

void firn_api_conf_defaults(struct firn_api_conf *conf);

/* Start serving. NULL with the reason in the error chain (e.g. port in use). */
struct firn_api *firn_api_start(const struct firn_api_conf *conf);

/* Stop accepting, finish requests in flight, free. */
void firn_api_stop(struct firn_api *api);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_API_H */
