/*
 * put.c - `firn put --http STREAM [--key K] [--blob] [FILE|-]`.
 *
 * Reads FILE (or stdin) and writes one record per line, without the newline,
 * through PutRecords in batches of up to 500 records / 5 MiB; --blob writes
 * the whole input as a single record (at most 1 MiB). Every record's
 * partition key is --key K, or else its line number, which spreads lines
 * over all shards. Entries a batch reports as failed with a retryable code
 * (throttling, internal failure) are sent again with backoff, in order, so a
 * success means every record got a 200 and is durable. With --verbose each
 * record's shard and sequence number is printed to stdout in input order.
 *
 * With --udp the records go over the UDP record protocol instead (put_udp.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "firn_record.h"

#define BATCH_RECORDS 500
#define BATCH_BYTES (5u << 20)
#define PUT_ATTEMPTS 8

struct rec {
	char *data;
	size_t len;
	char key[32];
};

struct put_ctx {
	struct cli *c;
	const char *stream;
	const char *key;
	struct rec *recs;
	size_t n, bytes;
	uint64_t lineno, sent, failed;
};

static int
flush_batch(struct put_ctx *p)
{
	size_t *idx = malloc(p->n * sizeof(*idx)), nidx = p->n, i;
	unsigned attempt, backoff = 50;
	int rc = 0;

	if (idx == NULL)
		return -ENOMEM;
	for (i = 0; i < p->n; i++)
		idx[i] = i;
	for (attempt = 1; nidx > 0; attempt++) {
		json_t *list = json_array(), *rep, *res, *e;
		size_t still = 0;

		for (i = 0; i < nidx; i++) {
			struct rec *r = &p->recs[idx[i]];
			char *b64 = malloc(FIRN_B64_ENC_SIZE(r->len));

			if (b64 == NULL) {
				json_decref(list);
				free(idx);
				return -ENOMEM;
			}
			firn_b64_encode(r->data, r->len, b64);
			json_array_append_new(list,
			                      json_pack("{s:s,s:s}", "Data", b64, "PartitionKey",
			                                p->key ? p->key : r->key));
			free(b64);
		}
		if (cli_call(p->c, "PutRecords",
		             json_pack("{s:s,s:o}", "StreamName", p->stream, "Records", list), &rep,
		             NULL, 0) < 0) {
			rc = -EIO;
			break;
		}
		res = json_object_get(rep, "Records");
		for (i = 0; i < nidx; i++) {
			e = json_array_get(res, i);
			if (json_object_get(e, "SequenceNumber") != NULL) {
				if (p->c->verbose)
					printf("%s %s\n",
					       json_string_value(json_object_get(e, "ShardId")),
					       json_string_value(
					               json_object_get(e, "SequenceNumber")));
				p->sent++;
			} else if (attempt < PUT_ATTEMPTS) {
				idx[still++] = idx[i];
			} else {
				fprintf(stderr, "firn: line %s: %s: %s\n", p->recs[idx[i]].key,
				        json_string_value(json_object_get(e, "ErrorCode")),
				        json_string_value(json_object_get(e, "ErrorMessage")));
				p->failed++;
			}
		}
		json_decref(rep);
		nidx = still;
		if (nidx > 0) {
			struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};

			nanosleep(&ts, NULL);
			backoff = FIRN_MIN(backoff * 2, 2000u);
		}
	}
	for (i = 0; i < p->n; i++)
		free(p->recs[i].data);
	p->n = 0;
	p->bytes = 0;
	free(idx);
	return rc;
}

static int
add_record(struct put_ctx *p, const char *data, size_t len)
{
	size_t klen = p->key ? strlen(p->key) : 20;
	struct rec *r;

	if (len > FIRN_RECORD_DATA_MAX) {
		fprintf(stderr, "firn: record at line %llu is %zu bytes, over the %u-byte limit\n",
		        (unsigned long long)p->lineno, len, FIRN_RECORD_DATA_MAX);
		return -E2BIG;
	}
	if (p->n == BATCH_RECORDS || p->bytes + len + klen > BATCH_BYTES) {
		if (flush_batch(p) < 0)
			return -EIO;
	}
	r = &p->recs[p->n];
	r->data = malloc(len + 1);
	if (r->data == NULL)
		return -ENOMEM;
	memcpy(r->data, data, len);
	r->len = len;
	snprintf(r->key, sizeof(r->key), "%llu", (unsigned long long)p->lineno);
	p->n++;
	p->bytes += len + klen;
	return 0;
}

int
cmd_put(struct cli *c, int argc, char **argv)
{
	struct put_ctx p = {.c = c};
	const char *path = NULL;
	bool http = false, blob = false;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *in = stdin;
	uint64_t t0 = firn_mono_ns();
	double secs;
	int i, rc = 0;

	for (i = 0; i < argc; i++)
		if (strcmp(argv[i], "--udp") == 0 || strncmp(argv[i], "--udp=", 6) == 0)
			return cmd_put_udp(c, argc, argv);
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--http") == 0)
			http = true;
		else if (strcmp(argv[i], "--blob") == 0)
			blob = true;
		else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			p.key = argv[++i];
		else if (p.stream == NULL && argv[i][0] != '-')
			p.stream = argv[i];
		else if (path == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0))
			path = argv[i];
		else {
			fprintf(stderr, "firn: put: unexpected '%s'\n", argv[i]);
			return CLI_EXIT_USAGE;
		}
	}
	if (p.stream == NULL) {
		fprintf(stderr,
		        "firn: usage: firn put --http STREAM [--key K] [--blob] [FILE|-]\n");
		return CLI_EXIT_USAGE;
	}
	if (!http) {
		fprintf(stderr, "firn: put: say how: --http (PutRecords) or --udp [HOST:PORT] "
		                "(the record protocol)\n");
		return CLI_EXIT_USAGE;
	}
	if (p.key != NULL && firn_partition_key_check(p.key, strlen(p.key)) < 0) {
		fprintf(stderr, "firn: put: --key must be 1..256 bytes of UTF-8\n");
		return CLI_EXIT_USAGE;
	}
	if (path != NULL && strcmp(path, "-") != 0) {
		in = fopen(path, "rb");
		if (in == NULL) {
			fprintf(stderr, "firn: put: cannot open %s: %s\n", path, strerror(errno));
			return CLI_EXIT_FAIL;
		}
	}
	p.recs = calloc(BATCH_RECORDS, sizeof(*p.recs));
	if (p.recs == NULL)
		return CLI_EXIT_FAIL;
	if (blob) {
		size_t n = 0, bcap = FIRN_RECORD_DATA_MAX + 1;
		char *buf = malloc(bcap);

		if (buf == NULL)
			return CLI_EXIT_FAIL;
		while (n < bcap) {
			size_t r = fread(buf + n, 1, bcap - n, in);

			if (r == 0)
				break;
			n += r;
		}
		rc = add_record(&p, buf, n);
		free(buf);
	} else {
		while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
			p.lineno++;
			if (len > 0 && line[len - 1] == '\n')
				len--;
			rc = add_record(&p, line, (size_t)len);
		}
		free(line);
	}
	if (rc == 0 && p.n > 0)
		rc = flush_batch(&p);
	if (in != stdin)
		fclose(in);
	free(p.recs);
	secs = (double)(firn_mono_ns() - t0) / 1e9;
	fprintf(stderr, "firn: put %llu record%s to %s in %.2f s (%.0f records/s)%s\n",
	        (unsigned long long)p.sent, p.sent == 1 ? "" : "s", p.stream, secs,
	        secs > 0 ? (double)p.sent / secs : 0.0, p.failed ? ", some FAILED" : "");
	if (p.failed)
		fprintf(stderr, "firn: %llu record%s failed\n", (unsigned long long)p.failed,
		        p.failed == 1 ? "" : "s");
	return rc < 0 || p.failed ? CLI_EXIT_FAIL : 0;
}
