/*
 * http.c - firn-bench's HTTP engine: PutRecords through the Kinesis API.
 *
 * One worker thread per connection (lib/api's client is blocking, one
 * request at a time), each sending PutRecords batches of up to --batch
 * records (at most 500, the Kinesis limit) signed with SigV4. A record's
 * latency runs from its origin (the due time in open loop, the moment the
 * batch was built in closed loop) to the HTTP reply that reports it
 * stored: a 200 from firnd means durable, as a DURABLE ack does over UDP.
 *
 * Entries the reply marks as failed with a retryable code (throttling,
 * internal failure) go to the front of the next batch, up to 8 times, with
 * their original origin, so retries show up as latency. The request body
 * is built in one preallocated buffer; the reply is parsed with jansson.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bench.h"
#include "firn_api.h"

#define HTTP_BATCH_MAX 500
#define HTTP_ATTEMPTS 8

struct hrec {
	uint64_t origin;
	uint32_t off; /* into the worker's pool */
	uint32_t len; /* data bytes */
	uint8_t attempts;
	uint8_t key_len;
	char key[32];
};

bool
bench_http_available(void)
{
	return true;
}

static void
sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};

	nanosleep(&ts, NULL);
}

void *
bench_http_worker(void *arg)
{
	struct worker *w = arg;
	const struct bench_conf *b = w->b;
	struct firn_api_client_conf cc = {
	        .endpoint = b->endpoint,
	        .access_key_id = b->access_key,
	        .secret_access_key = b->secret_key,
	        .region = b->region,
	        .timeout_ms = 30000,
	};
	struct firn_api_client *api = firn_api_client_open(&cc);
	uint32_t batch = FIRN_MIN(b->batch ? b->batch : HTTP_BATCH_MAX, (uint32_t)HTTP_BATCH_MAX);
	size_t cap = (size_t)batch * (FIRN_B64_ENC_SIZE(b->size) + 96) + strlen(b->stream) + 128;
	char *body = malloc(cap);
	struct hrec *recs = calloc(batch, sizeof(*recs)), *retry = calloc(batch, sizeof(*retry));
	struct firn_pacer pacer;
	unsigned n_retry = 0;
	uint64_t cpu0 = 0;

	if (api == NULL) {
		bench_fail(w, "%s", firn_err_msg());
		goto out;
	}
	if (body == NULL || recs == NULL || retry == NULL) {
		bench_fail(w, "out of memory");
		goto out;
	}
	cpu0 = bench_wait_start(w);
	firn_pacer_init(&pacer, b->rate > 0 ? b->rate / b->sessions : 0, w->start_ns);
	for (;;) {
		uint64_t now = firn_mono_ns();
		bool offering = w->issued < w->quota && !atomic_load(&bench_stop) &&
		                (w->stop_ns == 0 || now < w->stop_ns);
		struct firn_api_reply rep = {0};
		json_t *root, *arr;
		json_error_t jerr;
		unsigned n = 0;
		size_t len;
		int rc;

		/* Retries first, then new records: what is due (open loop) or a full batch. */
		for (; n < n_retry && n < batch; n++)
			recs[n] = retry[n];
		n_retry = 0;
		if (offering) {
			uint64_t want = batch - n;

			want = FIRN_MIN(want, w->quota - w->issued);
			if (b->rate > 0) {
				want = firn_pacer_due(&pacer, now, want);
				if (want == 0 && n == 0) {
					uint64_t due = firn_pacer_due_ns(&pacer, pacer.issued);

					sleep_ns(due > now ? FIRN_MIN(due - now, (uint64_t)1000000)
					                   : 0);
					continue;
				}
			}
			for (uint64_t k = 0; k < want; k++, n++) {
				struct hrec *r = &recs[n];

				r->origin =
				        b->rate > 0 ? firn_pacer_due_ns(&pacer, pacer.issued) : now;
				r->attempts = 0;
				r->key_len = (uint8_t)bench_key(w, r->key, sizeof(r->key));
				r->off = (uint32_t)(bench_data(w) - w->pool);
				r->len = bench_size(w);
				if (b->rate > 0)
					firn_pacer_issue(&pacer, 1);
				w->issued++;
			}
		}
		if (n == 0)
			break;
		len = (size_t)snprintf(body, cap, "{\"StreamName\":\"%s\",\"Records\":[",
		                       b->stream);
		for (unsigned i = 0; i < n; i++) {
			len += (size_t)snprintf(body + len, cap - len,
			                        "%s{\"PartitionKey\":\"%.*s\",\"Data\":\"",
			                        i ? "," : "", (int)recs[i].key_len, recs[i].key);
			len += firn_b64_encode(w->pool + recs[i].off, recs[i].len, body + len);
			len += (size_t)snprintf(body + len, cap - len, "\"}");
		}
		len += (size_t)snprintf(body + len, cap - len, "]}");
		rc = firn_api_client_call(api, "PutRecords", body, len, &rep);
		w->http_calls++;
		now = firn_mono_ns();
		if (rc < 0) {
			bench_fail(w, "PutRecords: %s", firn_err_msg());
			break;
		}
		root = json_loadb(rep.body, rep.len, 0, &jerr);
		arr = json_object_get(root, "Records");
		if (rep.status != 200 || !json_is_array(arr) || json_array_size(arr) != n) {
			const char *type = json_string_value(json_object_get(root, "__type"));
			const char *msg = json_string_value(json_object_get(root, "message"));

			bench_fail(w, "PutRecords: HTTP %d %s: %s", rep.status, type ? type : "",
			           msg ? msg : (rep.body ? rep.body : ""));
			w->failed += n;
			json_decref(root);
			firn_api_reply_free(&rep);
			break;
		}
		for (unsigned i = 0; i < n; i++) {
			json_t *e = json_array_get(arr, i);
			const char *seq = json_string_value(json_object_get(e, "SequenceNumber"));
			const char *shard = json_string_value(json_object_get(e, "ShardId"));
			const char *code = json_string_value(json_object_get(e, "ErrorCode"));

			if (seq != NULL && shard != NULL) {
				w->acked++;
				w->bytes += recs[i].len;
				w->last_ack_ns = now;
				bench_latency(w, recs[i].origin, now);
				if (b->ack_log != NULL)
					fprintf(b->ack_log, "%.*s %s %s %08x\n",
					        (int)recs[i].key_len, recs[i].key, shard, seq,
					        bench_crc32c(w->pool + recs[i].off, recs[i].len));
				continue;
			}
			if (++recs[i].attempts < HTTP_ATTEMPTS &&
			    (code == NULL ||
			     strcmp(code, "ProvisionedThroughputExceededException") == 0 ||
			     strcmp(code, "InternalFailure") == 0)) {
				retry[n_retry++] = recs[i];
				w->http_retries++;
				continue;
			}
			w->failed++;
			if (w->first_fail[0] == '\0')
				snprintf(w->first_fail, sizeof(w->first_fail), "%s: %s",
				         code ? code : "?",
				         json_string_value(json_object_get(e, "ErrorMessage"))
				                 ? json_string_value(
				                           json_object_get(e, "ErrorMessage"))
				                 : "");
		}
		atomic_store_explicit(&w->progress_acked, w->acked,
		                      memory_order_relaxed); /* pairs with main.c's progress load */
		bench_progress_tick(w, now);
		json_decref(root);
		firn_api_reply_free(&rep);
		if (n_retry > 0)
			sleep_ns(20000000); /* throttled: give the appliance a moment */
	}
	w->cpu_us = bench_thread_cpu_us() - cpu0;
out:
	if (api != NULL)
		firn_api_client_close(api);
	free(body);
	free(recs);
	free(retry);
	return NULL;
}
