/*
 * test_client_flow.c - a producer out of credit waits, and resumes when the
 * appliance grants more (doc/protocol.md §8.1, §9).
 *
 * The appliance here grants 16 records up front and then nothing, until the
 * test says so. The client must send exactly what it was granted, never
 * make the appliance refuse a record for lack of credit, and let puts pile
 * up in its queue: a non-blocking put then says -EAGAIN, a blocking put
 * waits. Once credit flows again, everything goes through. A second test
 * shrinks the dedupe window W to 64 with plenty of credit and slow
 * durability, so the W rule is what holds the producer back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_test.h"

struct tally {
	unsigned ok, other;
};

static void
on_ack(void *arg, const struct firn_client_ack *a)
{
	struct tally *t = arg;

	if (a->status == FIRN_CLIENT_OK)
		t->ok++;
	else
		t->other++;
}

static void
test_credit_exhaustion(void **state)
{
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	unsigned queued = 0;
	uint64_t t0;
	int s, rc;

	tsrv_init(&t, 1024);
	t.conf.credit_records = 16;
	atomic_store(&t.grant_records, 0); /* no grants beyond the first */
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	conf.flags = FIRN_CLIENT_NONBLOCK;
	conf.queue_records = 64;
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "credit");
	/* Non-blocking: the queue (64) fills while only 16 may go out. */
	while ((rc = firn_client_put(c, s, "k", 1, "0123456789", 10, queued)) == 0) {
		queued++;
		assert_true(queued <= 64);
		firn_client_poll(c, 0);
	}
	assert_int_equal(rc, -EAGAIN);
	assert_true(queued >= 64);
	/* Give it time: nothing beyond the credit may move. */
	t0 = tsrv_now();
	while (tsrv_now() - t0 < 300)
		assert_true(firn_client_poll(c, 10) >= 0);
	firn_client_stats(c, &st);
	assert_int_equal(k.ok, 16);
	assert_int_equal(atomic_load(&t.stored), 16);
	assert_true(atomic_load(&t.max_seq_seen) == firn_client_next_seq(c) - queued + 15);
	assert_true(st.credit_stalls > 0);
	/* The 16 answered made room for 16 more puts, and then the queue is full again. */
	while (firn_client_put(c, s, "k", 1, "0123456789", 10, queued) == 0)
		queued++;
	assert_true(queued >= 80);
	for (int i = 0; i < 20; i++)
		assert_true(firn_client_poll(c, 5) >= 0);
	assert_int_equal(k.ok, 16);
	assert_int_equal(firn_client_flush(c, 200), -ETIMEDOUT);
	assert_non_null(strstr(firn_client_error(c), "without a durable ack"));
	fprintf(stderr, "# out of credit: %u queued, %u acked, %llu stalls\n", queued, k.ok,
	        (unsigned long long)st.credit_stalls);

	/* Credit again: everything drains. */
	atomic_store(&t.grant_records, 8);
	assert_int_equal(firn_client_flush(c, 10000), 0);
	assert_int_equal(k.ok, queued);
	assert_int_equal(k.other, 0);
	firn_client_close(c);
	tsrv_stop(&t);
	assert_int_equal(firn_proto_server_stats(t.srv)->refused_credit, 0);
	tsrv_destroy(&t);
}

static void
test_blocking_put_waits(void **state)
{
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	uint64_t t0, waited = 0;
	int s;

	tsrv_init(&t, 1024);
	t.conf.credit_records = 16;
	atomic_store(&t.grant_records, 0);
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	conf.queue_records = 64; /* blocking (the default) */
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "credit");
	/* The appliance grants again 400 ms from now; put must wait for it, not fail. */
	atomic_store(&t.grant_later, 64);
	atomic_store(&t.grant_at_ms, tsrv_now() + 400);
	t0 = tsrv_now();
	for (unsigned i = 0; i < 200; i++) {
		uint64_t a = tsrv_now();

		assert_int_equal(firn_client_put(c, s, "k", 1, "abc", 3, i), 0);
		waited = FIRN_MAX(waited, tsrv_now() - a);
	}
	fprintf(stderr, "# longest put waited %llu ms\n", (unsigned long long)waited);
	assert_true(waited >= 300);
	assert_true(tsrv_now() - t0 >= 350);
	assert_int_equal(firn_client_flush(c, 10000), 0);
	assert_int_equal(k.ok, 200);
	firn_client_close(c);
	tsrv_stop(&t);
	assert_int_equal(firn_proto_server_stats(t.srv)->refused_credit, 0);
	tsrv_destroy(&t);
}

/* The byte window binds too: 1000-byte records against a 4 KiB window. */
static void
test_byte_window(void **state)
{
	static uint8_t buf[1000];
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	int s;

	tsrv_init(&t, 1024);
	t.conf.credit_window = 4096;
	atomic_store(&t.grant_window, 4096);
	atomic_store(&t.durable_delay_ms, 10);
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "bytes");
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(firn_client_put(c, s, "k", 1, buf, sizeof(buf), i), 0);
	assert_int_equal(firn_client_flush(c, 20000), 0);
	firn_client_stats(c, &st);
	assert_int_equal(k.ok, 100);
	assert_true(st.credit_stalls > 0);
	firn_client_close(c);
	tsrv_stop(&t);
	/* Never more than 4 records' bytes in flight, so never refused. */
	assert_int_equal(firn_proto_server_stats(t.srv)->refused_credit, 0);
	tsrv_destroy(&t);
}

/* W = 64: no new seq 64 or more above the oldest unanswered one, so at most 64 in flight. */
static void
test_window_rule(void **state)
{
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	uint32_t most = 0;
	int s;

	tsrv_init(&t, 4096);
	t.conf.dedupe_window = 64;
	t.conf.credit_records = 4096;
	atomic_store(&t.grant_records, 4096);
	atomic_store(&t.durable_delay_ms, 30);
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "window");
	for (unsigned i = 0; i < 1000; i++) {
		char key[8];

		snprintf(key, sizeof(key), "%u", i % 50);
		assert_int_equal(firn_client_put(c, s, key, strlen(key), "data", 4, i), 0);
		firn_client_poll(c, 0);
		firn_client_stats(c, &st);
		assert_true(st.in_flight <= 64); /* seq - oldest unanswered < W */
		most = FIRN_MAX(most, st.in_flight);
	}
	assert_int_equal(most, 64); /* and it was the W rule that held it back */
	assert_int_equal(firn_client_flush(c, 20000), 0);
	firn_client_stats(c, &st);
	assert_int_equal(k.ok, 1000);
	assert_true(st.credit_stalls > 0);
	firn_client_close(c);
	tsrv_stop(&t);
	/* The appliance never had to refuse a record that would slide its window. */
	assert_int_equal(firn_proto_server_stats(t.srv)->refused_busy, 0);
	assert_int_equal(firn_proto_server_stats(t.srv)->stale, 0);
	tsrv_destroy(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_credit_exhaustion),
	        cmocka_unit_test(test_blocking_put_waits),
	        cmocka_unit_test(test_byte_window),
	        cmocka_unit_test(test_window_rule),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
