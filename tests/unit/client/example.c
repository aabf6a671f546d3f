/*
 * example.c - the example at the top of lib/client/firn_client.h, verbatim,
 * built against the shared libfirn-client so the documented usage keeps
 * compiling (and linking with only the exported symbols).
 *
 *	./client_example < lines.txt    (needs a firnd with its UDP port open)
 */
#include <stdio.h>
#include <string.h>
#include <firn_client.h>

static void
on_ack(void *arg, const struct firn_client_ack *a)
{
	char seq[FIRN_CLIENT_SEQ_SIZE];

	if (a->status != FIRN_CLIENT_OK) {
		fprintf(stderr, "line %llu: %s\n", (unsigned long long)a->cookie,
		        firn_client_status_str(a->status));
		++*(unsigned *)arg;
		return;
	}
	firn_client_seq_format(a, seq);
	printf("line %llu -> shardId-%012u %s\n", (unsigned long long)a->cookie, a->shard, seq);
}

int
main(void)
{
	unsigned failed = 0;
	struct firn_client_conf conf = {
	        .endpoint = "127.0.0.1:7400",
	        .access_key_id = "FIRNDEMOACCESSKEY",
	        .secret_access_key = "firn-demo-secret-change-me",
	        .state_path = "producer.state", // same producer after a restart
	        .on_ack = on_ack,
	        .arg = &failed,
	};
	struct firn_client *c = firn_client_open(&conf);
	char line[4096], key[24];
	unsigned long long n = 0;
	int s;

	if (c == NULL) {
		fprintf(stderr, "%s\n", firn_client_last_error());
		return 1;
	}
	s = firn_client_stream(c, "events");
	while (s >= 0 && fgets(line, sizeof(line), stdin) != NULL) {
		snprintf(key, sizeof(key), "%llu", ++n);
		// Blocks while the queue is full; the cookie comes back in the ack.
		if (firn_client_put(c, s, key, strlen(key), line, strcspn(line, "\n"), n) < 0)
			break;
	}
	if (firn_client_flush(c, 30000) < 0)
		fprintf(stderr, "%s\n", firn_client_error(c));
	firn_client_close(c); // anything still unacked gets FIRN_CLIENT_E_CLOSED
	return failed == 0 ? 0 : 1;
}
