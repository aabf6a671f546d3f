/*
 * test_proto_credit.c - flow control: grant, consume, never negative.
 *
 * The struct on its own (random operation sequences checked against the
 * invariants), then the server enforcing it on the RX path (records beyond
 * the grant are refused as OVERLOADED, not stored, and can be resent once
 * credit returns), and grants riding on the session's flushes to the client,
 * where reordered old grants cannot undo newer ones and a forced flush (the
 * client's PING) repeats a grant whose datagram was lost.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_proto.h"
#include "proto_internal.h" /* producer credit, to watch it */
#include "proto_test.h"

static void
test_credit_basics(void **state)
{
	struct firn_proto_credit c;

	firn_proto_credit_init(&c, 10, 1000);
	assert_int_equal(firn_proto_credit_avail(&c), 1000);
	assert_int_equal(firn_proto_credit_take(&c, 1, 600), 0);
	assert_int_equal(firn_proto_credit_take(&c, 2, 500), -EAGAIN); /* bytes */
	assert_int_equal(c.used, 600);                                 /* unchanged */
	assert_int_equal(firn_proto_credit_take(&c, 2, 400), 0);
	assert_int_equal(firn_proto_credit_avail(&c), 0);
	assert_int_equal(firn_proto_credit_take(&c, 3, 1), -EAGAIN);
	firn_proto_credit_release(&c, 600);
	assert_int_equal(firn_proto_credit_take(&c, 11, 1), -EAGAIN); /* seq beyond grant */
	assert_int_equal(firn_proto_credit_take(&c, 10, 1), 0);
	/* The window shrinks below what is in flight: 0 available, never negative. */
	assert_true(firn_proto_credit_grant(&c, 0, 0, 100));
	assert_int_equal(firn_proto_credit_avail(&c), 0);
	assert_int_equal(firn_proto_credit_take(&c, 5, 1), -EAGAIN);
	firn_proto_credit_release(&c, 10000); /* more than in flight: saturates */
	assert_int_equal(c.used, 0);
	/* Alone in flight, a record larger than the window may go (no deadlock) ... */
	assert_int_equal(firn_proto_credit_take(&c, 6, 5000), 0);
	/* ... but a zero window means stop. */
	firn_proto_credit_release(&c, 5000);
	firn_proto_credit_grant(&c, 0, 0, 0);
	assert_int_equal(firn_proto_credit_take(&c, 7, 1), -EAGAIN);
	/* max_seq only ever rises. */
	assert_false(firn_proto_credit_grant(&c, 2, 3, 0));
	assert_true(c.max_seq == 10);
	assert_true(firn_proto_credit_grant(&c, 8, 5, 0));
	assert_true(c.max_seq == 13);
	assert_true(firn_proto_credit_grant(&c, UINT64_MAX - 1, 5, 0));
	assert_true(c.max_seq == UINT64_MAX);
}

static void
test_credit_apply_order(void **state)
{
	struct firn_proto_credit c;

	firn_proto_credit_init(&c, 100, 1000);
	c.pn = 1;
	assert_true(firn_proto_credit_apply(&c, 5, 200, 5000));
	assert_false(firn_proto_credit_apply(&c, 4, 150, 1)); /* older packet: ignored */
	assert_true(c.max_seq == 200 && c.window == 5000);
	assert_false(firn_proto_credit_apply(&c, 5, 300, 1)); /* same packet again */
	assert_true(firn_proto_credit_apply(&c, 9, 150, 10)); /* newer: window follows */
	assert_true(c.max_seq == 200);                        /* record credit never falls */
	assert_true(c.window == 10);
}

/* Random operations: used never exceeds what was taken, avail is never "negative". */
static void
test_credit_random(void **state)
{
	struct firn_proto_credit c;
	uint64_t taken = 0, seq = 0;

	firn_proto_credit_init(&c, 50, 10000);
	for (int i = 0; i < 100000; i++) {
		switch (test_below(4)) {
		case 0: {
			uint64_t len = test_below(3000);

			if (firn_proto_credit_take(&c, seq + 1, len) == 0) {
				seq++;
				taken += len;
			}
			break;
		}
		case 1: {
			uint64_t len = test_below(3000);

			firn_proto_credit_release(&c, len);
			break;
		}
		case 2:
			firn_proto_credit_grant(&c, seq, test_below(100), test_below(20000));
			break;
		default:
			break;
		}
		assert_true(c.used <= taken);
		/* Never negative: what is left is window - used, or 0. */
		if (c.window > c.used)
			assert_true(firn_proto_credit_avail(&c) == c.window - c.used);
		else
			assert_true(firn_proto_credit_avail(&c) == 0);
		assert_true(seq <= c.max_seq);
	}
}

/* ---- on the wire, through a session ------------------------------------------- */

static uint8_t pkt[FIRN_PROTO_DGRAM_MAX];

struct tally {
	unsigned stored, overloaded;
	uint64_t seqs[64];
};

static void
send_one(struct test_pair *tp, uint64_t lo, uint64_t hi, uint32_t len, struct tally *t,
         bool durable_now)
{
	static uint8_t data[2000];
	struct firn_proto_enc e;
	struct firn_proto_session *ss;
	struct firn_proto_rx rx;
	struct firn_proto_rx_item it;
	uint8_t *plain;
	int n;

	firn_proto_client_enc_begin(tp->cli, &e, pkt, sizeof(pkt), 0);
	for (uint64_t s = lo; s <= hi; s++) {
		struct firn_proto_rec r = {.seq = s,
		                           .key = (const uint8_t *)"k",
		                           .key_len = 1,
		                           .data = data,
		                           .len = len};
		uint32_t off = 0;

		assert_int_equal(firn_proto_enc_record(&e, &r, "s", 1, &off), 1);
	}
	n = firn_proto_server_open(tp->srv, &tp->addr, pkt,
	                           (size_t)firn_proto_client_seal(tp->cli, &e), tp->now, &ss,
	                           &plain);
	assert_true(n > 0);
	firn_proto_rx_begin(&rx, tp->srv, ss, plain, (size_t)n, tp->now);
	while (firn_proto_rx_next(&rx, &it) > 0) {
		if (it.kind == FIRN_PROTO_RX_RECORD) {
			t->seqs[t->stored++ % 64] = it.rec.seq;
			if (durable_now)
				firn_proto_record_done(tp->srv, it.producer, it.rec.seq, 0,
				                       it.rec.seq, FIRN_PROTO_OK);
		} else if (it.kind == FIRN_PROTO_RX_ANSWER) {
			assert_int_equal(it.ack.status, FIRN_PROTO_E_OVERLOADED);
			t->overloaded++;
		}
	}
}

/* Records lo..hi of len bytes, three per datagram. */
static void
send_range(struct test_pair *tp, uint64_t lo, uint64_t hi, uint32_t len, struct tally *t,
           bool durable_now)
{
	for (uint64_t s = lo; s <= hi; s += 3)
		send_one(tp, s, FIRN_MIN(s + 2, hi), len, t, durable_now);
}

static void
test_server_enforces(void **state)
{
	struct firn_proto_server_conf conf;
	struct test_pair tp;
	struct tally t = {0};
	struct firn_proto_producer *p;

	firn_proto_server_conf_defaults(&conf);
	conf.max_sessions = 2;
	conf.max_producers = 2;
	conf.reasm_pool_bytes = 4u << 20;
	conf.credit_records = 10;
	conf.credit_window = 1000;
	test_pair_open(&tp, &conf, 1472);
	assert_true(firn_proto_client_params(tp.cli)->credit.max_seq == 10);
	assert_true(firn_proto_client_params(tp.cli)->credit.window == 1000);
	p = firn_proto_session_producer(tp.ss);
	/* Records 1..12 of 100 bytes, none durable yet: 10 fit the byte window, seqs 11+ do not. */
	send_range(&tp, 1, 12, 100, &t, false);
	assert_int_equal(t.stored, 10);
	assert_int_equal(t.overloaded, 2);
	assert_int_equal(p->credit.used, 1000);
	assert_int_equal(firn_proto_server_stats(tp.srv)->refused_credit, 2);
	/* Refused records were not remembered: once credit returns they go through. */
	for (uint64_t s = 1; s <= 10; s++)
		assert_int_equal(firn_proto_record_done(tp.srv, p, s, 0, s, FIRN_PROTO_OK), 0);
	assert_int_equal(p->credit.used, 0);
	firn_proto_session_grant(tp.ss, 10, 1000);
	memset(&t, 0, sizeof(t));
	send_range(&tp, 11, 12, 100, &t, true);
	assert_int_equal(t.stored, 2);
	assert_int_equal(t.overloaded, 0);
	/* The byte window alone: 3 records of 400 bytes against 1000. */
	firn_proto_session_grant(tp.ss, 100, 1000);
	memset(&t, 0, sizeof(t));
	send_range(&tp, 13, 15, 400, &t, false);
	assert_int_equal(t.stored, 2);
	assert_int_equal(t.overloaded, 1);
	/* A transient refusal after the handoff returns the credit and forgets the seq. */
	assert_int_equal(firn_proto_record_refused(tp.srv, p, 13), 0);
	assert_int_equal(p->credit.used, 400);
	memset(&t, 0, sizeof(t));
	send_range(&tp, 13, 13, 400, &t, false);
	assert_int_equal(t.stored, 1);
	test_pair_close(&tp);
}

/* Grants travel in CREDIT frames on flushes; the client applies them in packet order. */
static void
test_grant_on_the_wire(void **state)
{
	struct test_pair tp;
	static uint8_t d1[FIRN_PROTO_DGRAM_MAX], d2[FIRN_PROTO_DGRAM_MAX];
	struct firn_proto_credit c;
	struct firn_proto_dec dec;
	struct firn_proto_frame f;
	uint8_t *plain;
	uint64_t pn;
	int n1, n2, n, credits = 0;

	test_pair_open(&tp, NULL, 1472);
	c = firn_proto_client_params(tp.cli)->credit;
	/* Nothing changed: nothing to send. */
	assert_int_equal(firn_proto_session_flush(tp.srv, tp.ss, tp.now, false, d1, sizeof(d1)), 0);
	firn_proto_session_grant(tp.ss, 5000, 1u << 20);
	n1 = firn_proto_session_flush(tp.srv, tp.ss, tp.now, false, d1, sizeof(d1));
	assert_true(n1 > 0);
	firn_proto_session_grant(tp.ss, 9000, 2u << 20);
	n2 = firn_proto_session_flush(tp.srv, tp.ss, tp.now, false, d2, sizeof(d2));
	assert_true(n2 > 0);
	/* Delivered out of order: the newer grant wins, the older is ignored. */
	for (int k = 0; k < 2; k++) {
		uint8_t *d = k == 0 ? d2 : d1;

		n = firn_proto_client_open(tp.cli, d, (size_t)(k == 0 ? n2 : n1), &plain, &pn);
		assert_true(n > 0);
		firn_proto_dec_init(&dec, plain, (size_t)n, false);
		while (firn_proto_dec_next(&dec, &f) > 0) {
			if (f.type != FIRN_PROTO_FR_CREDIT)
				continue;
			credits++;
			assert_int_equal(
			        firn_proto_credit_apply(&c, pn, f.credit.max_seq, f.credit.window),
			        k == 0);
		}
	}
	assert_int_equal(credits, 2);
	assert_true(c.max_seq == 9000);
	assert_true(c.window == 2u << 20);
	/* A grant equal to the last one sent is not sent again... */
	firn_proto_session_grant(tp.ss, 9000, 2u << 20);
	assert_int_equal(firn_proto_session_flush(tp.srv, tp.ss, tp.now, false, d1, sizeof(d1)), 0);
	/*
	 * ...unless the client asks (PING, ACK_NOW). Say d2 was lost: a client
	 * with no credit left and nothing in flight has no other way to get it.
	 */
	c = firn_proto_client_params(tp.cli)->credit;
	n = firn_proto_session_flush(tp.srv, tp.ss, tp.now, true, d1, sizeof(d1));
	assert_true(n > 0);
	n = firn_proto_client_open(tp.cli, d1, (size_t)n, &plain, &pn);
	assert_true(n > 0);
	credits = 0;
	firn_proto_dec_init(&dec, plain, (size_t)n, false);
	while (firn_proto_dec_next(&dec, &f) > 0) {
		if (f.type != FIRN_PROTO_FR_CREDIT)
			continue;
		credits++;
		assert_true(firn_proto_credit_apply(&c, pn, f.credit.max_seq, f.credit.window));
	}
	assert_int_equal(credits, 1);
	assert_true(c.max_seq == 9000);
	assert_true(c.window == 2u << 20);
	test_pair_close(&tp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_credit_basics),     cmocka_unit_test(test_credit_apply_order),
	        cmocka_unit_test(test_credit_random),     cmocka_unit_test(test_server_enforces),
	        cmocka_unit_test(test_grant_on_the_wire),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
