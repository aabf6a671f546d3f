/*
 * put_udp.c - `firn put --udp [HOST:PORT] STREAM [--key K] [--blob] [FILE|-]`.
 *
 * The same records as `firn put --http` (one per input line without its
 * newline, or the whole input with --blob; partition key --key K or the
 * line number), sent over the firn record protocol with lib/client instead
 * of PutRecords. The endpoint is the --udp value, else $FIRN_UDP, else
 * 127.0.0.1:7400; the access key pair is the one every firn command uses
 * (flags, AWS_ or FIRN_ environment, config file, demo keys).
 *
 * Success means what a DURABLE ack means: every record is on stable
 * storage. Nothing is printed per record unless -v, which prints
 * "LINE shardId-NNNNNNNNNNNN SEQUENCE" as each ack arrives. Whatever was
 * not durably acked is counted and explained by cause at the end, and the
 * exit status is then 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "firn_client.h"
#include "firn_record.h"

#define STATUS_SLOTS 258 /* 0..13 wire codes, 256, 257 local */

struct put_udp {
	bool verbose;
	uint64_t ok;
	uint64_t failed;
	uint64_t by_status[STATUS_SLOTS + 1];
};

static unsigned
status_slot(int st)
{
	if (st >= 0 && st < 14)
		return (unsigned)st;
	if (st == FIRN_CLIENT_E_TIMEOUT)
		return 256;
	if (st == FIRN_CLIENT_E_CLOSED)
		return 257;
	return STATUS_SLOTS;
}

static void
on_ack(void *arg, const struct firn_client_ack *a)
{
	struct put_udp *p = arg;

	if (a->status == FIRN_CLIENT_OK) {
		p->ok++;
		if (p->verbose) {
			char seq[FIRN_CLIENT_SEQ_SIZE];

			firn_client_seq_format(a, seq);
			printf("%llu shardId-%012u %s\n", (unsigned long long)a->cookie, a->shard,
			       seq);
		}
		return;
	}
	p->failed++;
	p->by_status[status_slot(a->status)]++;
}

static int
put_line(struct firn_client *c, int s, const char *key, uint64_t lineno, const char *data,
         size_t len, struct put_udp *p)
{
	char num[24];
	int rc;

	if (key == NULL) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)lineno);
		key = num;
	}
	if (len > FIRN_CLIENT_DATA_MAX) {
		fprintf(stderr, "firn: record at line %llu is %zu bytes, over the 1 MiB limit\n",
		        (unsigned long long)lineno, len);
		p->failed++;
		p->by_status[FIRN_CLIENT_E_TOO_LARGE]++;
		return 0;
	}
	rc = firn_client_put(c, s, key, strlen(key), data, len, lineno);
	if (rc < 0)
		return rc;
	/* Let acks in and datagrams out as we go (a pipe may be slow to fill). */
	rc = firn_client_poll(c, 0);
	return rc < 0 ? rc : 0;
}

int
cmd_put_udp(struct cli *cl, int argc, char **argv)
{
	struct put_udp p = {.verbose = cl->verbose};
	const char *ep = NULL, *stream = NULL, *key = NULL, *path = NULL;
	struct firn_client_conf conf = {0};
	struct firn_client *c;
	bool blob = false;
	FILE *in = stdin;
	uint64_t lineno = 0, t0 = firn_mono_ns();
	double secs;
	int i, s, rc = 0;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--udp") == 0) {
			/* The value is optional: a HOST:PORT has a colon, a stream name never. */
			if (i + 1 < argc && strchr(argv[i + 1], ':') != NULL)
				ep = argv[++i];
		} else if (strncmp(argv[i], "--udp=", 6) == 0) {
			ep = argv[i] + 6;
		} else if (strcmp(argv[i], "--blob") == 0) {
			blob = true;
		} else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
			key = argv[++i];
		} else if (stream == NULL && argv[i][0] != '-') {
			stream = argv[i];
		} else if (path == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			path = argv[i];
		} else {
			fprintf(stderr, "firn: put: unexpected '%s'\n", argv[i]);
			return CLI_EXIT_USAGE;
		}
	}
	if (stream == NULL) {
		fprintf(stderr, "firn: usage: firn put --udp [HOST:PORT] STREAM [--key K] [--blob] "
		                "[FILE|-]\n");
		return CLI_EXIT_USAGE;
	}
	if (key != NULL && firn_partition_key_check(key, strlen(key)) < 0) {
		fprintf(stderr, "firn: put: --key must be 1..256 bytes of UTF-8\n");
		return CLI_EXIT_USAGE;
	}
	if (ep == NULL)
		ep = getenv("FIRN_UDP");
	if (ep == NULL || *ep == '\0')
		ep = FIRN_CLIENT_DEFAULT_ENDPOINT;
	if (path != NULL && strcmp(path, "-") != 0) {
		in = fopen(path, "rb");
		if (in == NULL) {
			fprintf(stderr, "firn: put: cannot open %s: %s\n", path, strerror(errno));
			return CLI_EXIT_FAIL;
		}
	}
	conf.endpoint = ep;
	conf.access_key_id = cl->access_key;
	conf.secret_access_key = cl->secret_key;
	conf.on_ack = on_ack;
	conf.arg = &p;
	/* A record with no durable ack within the command timeout is reported, not waited on. */
	conf.give_up_ms = (uint32_t)FIRN_MAX(cl->timeout_ms, 1000);
	c = firn_client_open(&conf);
	if (c == NULL) {
		fprintf(stderr, "firn: put: %s\n", firn_client_last_error());
		if (in != stdin)
			fclose(in);
		return CLI_EXIT_FAIL;
	}
	s = firn_client_stream(c, stream);
	if (s < 0) {
		fprintf(stderr, "firn: put: stream '%s': %s\n", stream, firn_err_msg());
		rc = s;
	} else if (blob) {
		size_t n = 0, cap = FIRN_CLIENT_DATA_MAX + 1;
		char *buf = malloc(cap);

		if (buf == NULL) {
			rc = -ENOMEM;
		} else {
			while (n < cap) {
				size_t r = fread(buf + n, 1, cap - n, in);

				if (r == 0)
					break;
				n += r;
			}
			rc = put_line(c, s, key, ++lineno, buf, n, &p);
			free(buf);
		}
	} else {
		char *line = NULL;
		size_t cap = 0;
		ssize_t len;

		while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
			if (len > 0 && line[len - 1] == '\n')
				len--;
			rc = put_line(c, s, key, ++lineno, line, (size_t)len, &p);
		}
		free(line);
	}
	if (in != stdin)
		fclose(in);
	if (rc == 0)
		rc = firn_client_flush(c, cl->timeout_ms + 1000);
	if (rc < 0)
		fprintf(stderr, "firn: put: %s\n",
		        firn_client_error(c)[0] ? firn_client_error(c) : strerror(-rc));
	firn_client_close(c); /* whatever is still open is answered E_CLOSED and counted */
	secs = (double)(firn_mono_ns() - t0) / 1e9;
	fprintf(stderr, "firn: put %llu record%s to %s over UDP in %.2f s (%.0f records/s)\n",
	        (unsigned long long)p.ok, p.ok == 1 ? "" : "s", stream, secs,
	        secs > 0 ? (double)p.ok / secs : 0.0);
	if (p.failed > 0) {
		fprintf(stderr, "firn: %llu of %llu record%s not durably acked:\n",
		        (unsigned long long)p.failed, (unsigned long long)(p.ok + p.failed),
		        p.ok + p.failed == 1 ? " was" : "s were");
		for (unsigned k = 0; k <= STATUS_SLOTS; k++) {
			int st = k < 256    ? (int)k
			         : k == 256 ? FIRN_CLIENT_E_TIMEOUT
			                    : FIRN_CLIENT_E_CLOSED;

			if (p.by_status[k] == 0)
				continue;
			fprintf(stderr, "  %llu: %s\n", (unsigned long long)p.by_status[k],
			        k == STATUS_SLOTS ? "other error" : firn_client_status_str(st));
		}
	}
	return rc < 0 || p.failed > 0 ? CLI_EXIT_FAIL : 0;
}
