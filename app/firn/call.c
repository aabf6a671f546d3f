/*
 * call.c - one API call from the CLI: JSON in, JSON out, errors printed the
 * way a person reads them ("firn: ResourceNotFoundException: Stream x ...").
 *
 * Throttling and transient server errors (ProvisionedThroughputExceeded,
 * InternalFailure, ServiceUnavailable) are retried a few times with backoff,
 * as the AWS SDKs do, so a scripted `firn put` survives a busy appliance.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define CALL_ATTEMPTS 5

static bool
retryable(int status, const char *type)
{
	return status >= 500 || strcmp(type, "ProvisionedThroughputExceededException") == 0 ||
	       strcmp(type, "LimitExceededException") == 0;
}

int
cli_call(struct cli *c, const char *op, json_t *req, json_t **out, char *err_type, size_t err_size)
{
	char *body = json_dumps(req, JSON_COMPACT);
	struct firn_api_reply rep;
	unsigned attempt, backoff_ms = 50;
	json_error_t je;
	json_t *j = NULL;
	int rc = -1;

	json_decref(req);
	*out = NULL;
	if (body == NULL) {
		fprintf(stderr, "firn: out of memory\n");
		return -1;
	}
	for (attempt = 1;; attempt++) {
		const char *type = "", *msg = "";

		if (firn_api_client_call(c->client, op, body, strlen(body), &rep) < 0) {
			fprintf(stderr, "firn: %s: %s\n", c->endpoint, firn_err_msg());
			break;
		}
		j = json_loadb(rep.body, rep.len, 0, &je);
		if (rep.status == 200 && j != NULL) {
			*out = j;
			j = NULL;
			rc = 0;
			firn_api_reply_free(&rep);
			break;
		}
		if (j != NULL) {
			json_t *t = json_object_get(j, "__type"),
			       *m = json_object_get(j, "message");

			type = json_is_string(t) ? json_string_value(t) : "";
			msg = json_is_string(m) ? json_string_value(m) : "";
		}
		if (attempt < CALL_ATTEMPTS && retryable(rep.status, type)) {
			struct timespec ts = {0, (long)backoff_ms * 1000000L};

			json_decref(j);
			j = NULL;
			firn_api_reply_free(&rep);
			nanosleep(&ts, NULL);
			backoff_ms *= 2;
			continue;
		}
		if (err_type != NULL)
			snprintf(err_type, err_size, "%s", type);
		else if (*type)
			fprintf(stderr, "firn: %s: %s\n", type, msg);
		else
			fprintf(stderr, "firn: HTTP %d from %s: %.200s\n", rep.status, c->endpoint,
			        rep.body ? rep.body : "");
		if (c->verbose && rep.request_id[0])
			fprintf(stderr, "firn: request id %s\n", rep.request_id);
		firn_api_reply_free(&rep);
		break;
	}
	json_decref(j);
	free(body);
	return rc;
}
