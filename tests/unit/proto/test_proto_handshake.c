/*
 * test_proto_handshake.c - sessions are made only for those who hold a secret.
 *
 * Covers the success path and its parameters, and then every way a
 * handshake must fail: a wrong secret or unknown key (AUTH), forged and
 * misaddressed cookies (dropped), an expired cookie (a fresh RETRY and no
 * session), a replayed INIT (the same session, never a second one, and
 * nothing after close), a flood of spoofed HELLOs (no state, no
 * amplification), version mismatch, a full table, RESET after an appliance
 * restart, idle expiry, a producer moving to a new session, and the
 * client's retransmit and timeout timers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_proto.h"
#include "proto_test.h"

static uint8_t a[FIRN_PROTO_DGRAM_MAX], b[FIRN_PROTO_DGRAM_MAX];

static void
small_conf(struct firn_proto_server_conf *c)
{
	firn_proto_server_conf_defaults(c);
	c->max_sessions = 4;
	c->max_producers = 8;
	c->reasm_pool_bytes = 4u << 20;
}

static uint8_t
pkt_type(const uint8_t *p)
{
	return p[5];
}

static size_t ping(struct firn_proto_client *c);

static void
test_success(void **state)
{
	struct test_pair tp;
	const struct firn_proto_session_params *sp;
	const struct firn_proto_stats *st;

	test_pair_open(&tp, NULL, 8972);
	sp = firn_proto_client_params(tp.cli);
	st = firn_proto_server_stats(tp.srv);
	assert_true(sp->session_id == firn_proto_session_id(tp.ss));
	assert_int_equal(sp->max_dgram, 1472); /* min(client 8972, server 1472) */
	assert_int_equal(sp->idle_timeout_ms, 30000);
	assert_int_equal(sp->keepalive_ms, 10000);
	assert_int_equal(sp->stream_refs, 64);
	assert_int_equal(sp->dedupe_window, 1024);
	assert_int_equal(sp->dedupe_horizon_s, 900);
	assert_true(sp->producer_hi == 0);
	assert_true(sp->credit.max_seq == 512);
	assert_true(sp->credit.window == 4u << 20);
	assert_int_equal(firn_proto_server_sessions(tp.srv), 1);
	assert_int_equal(st->hello, 1);
	assert_int_equal(st->retry_sent, 1);
	assert_int_equal(st->accept_sent, 1);
	assert_int_equal(st->sessions_opened, 1);
	assert_true(firn_proto_producer_id(firn_proto_session_producer(tp.ss)) == TEST_PRODUCER);
	assert_ptr_equal(firn_proto_producer_session(firn_proto_session_producer(tp.ss)), tp.ss);
	assert_memory_equal(firn_proto_session_peer(tp.ss)->ip, tp.addr.ip, 16);
	/* Ack policy: nothing owed until DATA arrives; then after 1 ms or 16 datagrams. */
	assert_false(firn_proto_session_ack_due(tp.ss, tp.now + 100));
	for (int i = 0; i < 16; i++) {
		struct firn_proto_session *ss;
		uint8_t *plain;
		size_t n = ping(tp.cli);

		assert_true(firn_proto_server_open(tp.srv, &tp.addr, a, n, tp.now, &ss, &plain) >=
		            0);
		assert_int_equal(firn_proto_session_ack_due(tp.ss, tp.now), i == 15);
		assert_true(firn_proto_session_ack_due(tp.ss, tp.now + 1));
	}
	assert_true(firn_proto_session_flush(tp.srv, tp.ss, tp.now, false, b, sizeof(b)) > 0);
	assert_false(firn_proto_session_ack_due(tp.ss, tp.now + 5));
	test_pair_close(&tp);
}

static void
test_jumbo(void **state)
{
	struct firn_proto_server_conf c;
	struct test_pair tp;

	small_conf(&c);
	c.max_dgram = 8972;
	test_pair_open(&tp, &c, 8972);
	assert_int_equal(firn_proto_client_params(tp.cli)->max_dgram, 8972);
	test_pair_close(&tp);
}

/* Drive HELLO -> RETRY -> INIT; returns the INIT length in a. */
static size_t
to_init(struct firn_proto_server *s, struct firn_proto_client *c,
        const struct firn_proto_addr *from, uint64_t now)
{
	struct firn_proto_session *ss;
	int n, m;

	n = firn_proto_client_start(c, now, a, sizeof(a));
	m = firn_proto_server_handshake(s, from, a, (size_t)n, now, b, sizeof(b), &ss);
	assert_int_equal(m, 76);
	assert_int_equal(pkt_type(b), FIRN_PROTO_RETRY);
	n = firn_proto_client_handshake(c, b, (size_t)m, now, a, sizeof(a));
	assert_true(n > 0);
	assert_int_equal(pkt_type(a), FIRN_PROTO_INIT);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_INIT_SENT);
	return (size_t)n;
}

static void
test_wrong_secret(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_client *c;
	struct firn_proto_session *ss;
	struct firn_proto_addr from;
	size_t n;
	int m;

	small_conf(&conf);
	s = test_server(&conf, &key);
	test_addr(&from, 1, 5000);
	c = test_client("not the secret", TEST_PRODUCER, 1472);
	n = to_init(s, c, &from, 1000);
	m = firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss);
	assert_int_equal(m, 78);
	assert_int_equal(pkt_type(b), FIRN_PROTO_REJECT);
	assert_null(ss);
	assert_int_equal(firn_proto_server_sessions(s), 0);
	assert_int_equal(firn_proto_server_stats(s)->auth_failed, 1);
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m, 1000, a, sizeof(a)), 0);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_FAILED);
	assert_int_equal(firn_proto_client_error(c, NULL), FIRN_PROTO_E_AUTH);
	firn_proto_client_destroy(c);

	/* An unknown key id gets the very same answer. */
	{
		struct firn_proto_client_conf cc = {.key_id = "AKIDUNKNOWN",
		                                    .secret = (const uint8_t *)TEST_SECRET,
		                                    .secret_len = strlen(TEST_SECRET),
		                                    .producer_id = 5};

		c = firn_proto_client_create(&cc);
		n = to_init(s, c, &from, 1000);
		m = firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss);
		assert_int_equal(pkt_type(b), FIRN_PROTO_REJECT);
		firn_proto_client_handshake(c, b, (size_t)m, 1000, a, sizeof(a));
		assert_int_equal(firn_proto_client_error(c, NULL), FIRN_PROTO_E_AUTH);
		firn_proto_client_destroy(c);
	}
	/* A tampered proof from a client with the right secret. */
	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	n = to_init(s, c, &from, 1000);
	a[n - 1] ^= 1;
	m = firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss);
	assert_int_equal(pkt_type(b), FIRN_PROTO_REJECT);
	assert_int_equal(firn_proto_server_stats(s)->auth_failed, 3);
	/* A REJECT echoing another nonce is not for this client. */
	b[30] ^= 1;
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m, 1000, a, sizeof(a)),
	                 -EBADMSG);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_INIT_SENT);
	firn_proto_client_destroy(c);
	assert_int_equal(firn_proto_server_sessions(s), 0);
	firn_proto_server_destroy(s);
}

static void
test_forged_cookie(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_client *c;
	struct firn_proto_session *ss;
	struct firn_proto_addr from, other;
	static uint8_t init[FIRN_PROTO_DGRAM_MAX];
	size_t n;

	small_conf(&conf);
	s = test_server(&conf, &key);
	test_addr(&from, 1, 5000);
	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	n = to_init(s, c, &from, 1000);
	memcpy(init, a, n);
	/* Any bit of the cookie MAC or of its bucket: dropped silently. */
	for (unsigned bit = 0; bit < FIRN_PROTO_COOKIE_LEN * 8; bit += 3) {
		memcpy(a, init, n);
		a[56 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(
		        firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss), 0);
		assert_null(ss);
	}
	/* The nonce it was issued for is part of it. */
	memcpy(a, init, n);
	a[24] ^= 1;
	assert_int_equal(firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss), 0);
	/* A valid cookie used from another address or port. */
	test_addr(&other, 2, 5000);
	memcpy(a, init, n);
	assert_int_equal(firn_proto_server_handshake(s, &other, a, n, 1000, b, sizeof(b), &ss), 0);
	test_addr(&other, 1, 5001);
	assert_int_equal(firn_proto_server_handshake(s, &other, a, n, 1000, b, sizeof(b), &ss), 0);
	/* A cookie made with another server's secret (a restarted appliance). */
	{
		struct firn_proto_server *s2 = test_server(&conf, &key);

		assert_int_equal(
		        firn_proto_server_handshake(s2, &from, a, n, 1000, b, sizeof(b), &ss), 0);
		assert_int_equal(firn_proto_server_stats(s2)->cookie_bad, 1);
		firn_proto_server_destroy(s2);
	}
	assert_int_equal(firn_proto_server_sessions(s), 0);
	assert_true(firn_proto_server_stats(s)->cookie_bad >= 55);
	/* The untouched INIT still works. */
	memcpy(a, init, n);
	assert_true(firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss) > 0);
	assert_non_null(ss);
	firn_proto_client_destroy(c);
	firn_proto_server_destroy(s);
}

static void
test_expired_cookie(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_client *c;
	struct firn_proto_session *ss;
	struct firn_proto_addr from;
	size_t n;
	int m;
	uint64_t t0 = 50000; /* bucket 5 of 10 s */

	small_conf(&conf);
	s = test_server(&conf, &key);
	test_addr(&from, 1, 5000);
	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	n = to_init(s, c, &from, t0);
	/* Still good in the next bucket ... */
	m = firn_proto_server_handshake(s, &from, a, n, t0 + 10000, b, sizeof(b), &ss);
	assert_int_equal(pkt_type(b), FIRN_PROTO_ACCEPT);
	firn_proto_session_close(s, ss, t0 + 10000);
	firn_proto_server_tick(s, t0 + 100000); /* tombstone gone */
	firn_proto_client_destroy(c);

	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	n = to_init(s, c, &from, t0);
	/* ... but not two buckets later: a fresh RETRY, and no session. */
	m = firn_proto_server_handshake(s, &from, a, n, t0 + 20000, b, sizeof(b), &ss);
	assert_int_equal(m, 76);
	assert_int_equal(pkt_type(b), FIRN_PROTO_RETRY);
	assert_null(ss);
	assert_int_equal(firn_proto_server_sessions(s), 0);
	assert_int_equal(firn_proto_server_stats(s)->cookie_expired, 1);
	/* The client takes the new cookie, and its new INIT gets through. */
	n = (size_t)firn_proto_client_handshake(c, b, (size_t)m, t0 + 20000, a, sizeof(a));
	assert_int_equal(pkt_type(a), FIRN_PROTO_INIT);
	m = firn_proto_server_handshake(s, &from, a, n, t0 + 20000, b, sizeof(b), &ss);
	assert_int_equal(pkt_type(b), FIRN_PROTO_ACCEPT);
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m, t0 + 20000, a, sizeof(a)), 0);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_ESTABLISHED);
	firn_proto_client_destroy(c);
	firn_proto_server_destroy(s);
}

static void
test_replayed_init(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_client *c;
	struct firn_proto_session *ss, *ss2;
	struct firn_proto_addr from;
	static uint8_t init[FIRN_PROTO_DGRAM_MAX], acc[FIRN_PROTO_DGRAM_MAX];
	size_t n;
	int m, m2;

	small_conf(&conf);
	s = test_server(&conf, &key);
	test_addr(&from, 1, 5000);
	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	n = to_init(s, c, &from, 1000);
	memcpy(init, a, n);
	m = firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss);
	assert_non_null(ss);
	memcpy(acc, b, (size_t)m);
	/* The same INIT again (the ACCEPT was lost, or an attacker replays it). */
	for (int i = 0; i < 5; i++) {
		memcpy(a, init, n);
		m2 = firn_proto_server_handshake(s, &from, a, n, 1001, b, sizeof(b), &ss2);
		assert_int_equal(pkt_type(b), FIRN_PROTO_ACCEPT);
		assert_ptr_equal(ss2, ss);
	}
	assert_int_equal(firn_proto_server_sessions(s), 1);
	assert_int_equal(firn_proto_server_stats(s)->init_replayed, 5);
	assert_int_equal(firn_proto_server_stats(s)->sessions_opened, 1);
	/* The client takes the re-sent ACCEPT (the first was "lost"). */
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m2, 1001, a, sizeof(a)), 0);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_ESTABLISHED);
	/* A late copy of the first ACCEPT is ignored. */
	assert_int_equal(firn_proto_client_handshake(c, acc, (size_t)m, 1002, a, sizeof(a)),
	                 -EBADMSG);
	/* After close, a replay brings nothing back. */
	firn_proto_session_close(s, ss, 2000);
	memcpy(a, init, n);
	assert_int_equal(firn_proto_server_handshake(s, &from, a, n, 2001, b, sizeof(b), &ss2), 0);
	assert_null(ss2);
	assert_int_equal(firn_proto_server_sessions(s), 0);
	firn_proto_client_destroy(c);
	firn_proto_server_destroy(s);
}

static void
test_hello_flood(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_session *ss;
	const struct firn_proto_stats *st;

	small_conf(&conf);
	s = test_server(&conf, &key);
	st = firn_proto_server_stats(s);
	memset(a, 0, sizeof(a));
	for (int i = 0; i < 20000; i++) {
		struct firn_proto_hdr h = {FIRN_PROTO_VERSION, FIRN_PROTO_HELLO, 0, 0, 0};
		struct firn_proto_addr from;
		size_t len = FIRN_PROTO_HELLO_MIN + test_below(200);
		int m;

		firn_proto_hdr_encode(&h, a, sizeof(a));
		test_fill(a + 24, 34);
		test_fill(from.ip, 16);
		from.port = (uint16_t)test_rand();
		m = firn_proto_server_handshake(s, &from, a, len, 1000 + (uint64_t)i, b, sizeof(b),
		                                &ss);
		assert_true(m > 0 && (size_t)m < len); /* never amplifies */
		assert_null(ss);
	}
	assert_int_equal(st->hello, 20000);
	assert_int_equal(firn_proto_server_sessions(s), 0);
	/* Short HELLOs get nothing at all. */
	{
		struct firn_proto_addr from;

		test_addr(&from, 3, 3);
		assert_int_equal(firn_proto_server_handshake(s, &from, a, FIRN_PROTO_HELLO_MIN - 1,
		                                             1, b, sizeof(b), &ss),
		                 -EBADMSG);
	}
	firn_proto_server_destroy(s);
}

static void
test_version(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_client *c;
	struct firn_proto_session *ss;
	struct firn_proto_addr from;
	int n, m;

	small_conf(&conf);
	s = test_server(&conf, &key);
	test_addr(&from, 1, 5000);
	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	n = firn_proto_client_start(c, 1000, a, sizeof(a));
	a[4] = 2; /* a future client */
	m = firn_proto_server_handshake(s, &from, a, (size_t)n, 1000, b, sizeof(b), &ss);
	assert_int_equal(pkt_type(b), FIRN_PROTO_REJECT);
	assert_int_equal(b[56], FIRN_PROTO_E_VERSION);
	assert_int_equal(b[58], 1);
	assert_int_equal(b[59], 1);
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m, 1000, a, sizeof(a)), 0);
	assert_int_equal(firn_proto_client_error(c, NULL), FIRN_PROTO_E_VERSION);
	firn_proto_client_destroy(c);
	firn_proto_server_destroy(s);
}

static void
test_table_full(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_client *c[5];
	struct firn_proto_session *ss;
	struct firn_proto_addr from;

	small_conf(&conf);
	s = test_server(&conf, &key);
	for (int i = 0; i < 5; i++) {
		size_t n;
		int m;

		test_addr(&from, (uint8_t)(10 + i), 5000);
		c[i] = test_client(TEST_SECRET, 100 + (uint64_t)i, 1472);
		n = to_init(s, c[i], &from, 1000);
		m = firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss);
		firn_proto_client_handshake(c[i], b, (size_t)m, 1000, a, sizeof(a));
		if (i < 4) {
			assert_int_equal(firn_proto_client_state(c[i]),
			                 FIRN_PROTO_CLIENT_ESTABLISHED);
		} else {
			assert_int_equal(firn_proto_client_state(c[i]), FIRN_PROTO_CLIENT_FAILED);
			assert_int_equal(firn_proto_client_error(c[i], NULL),
			                 FIRN_PROTO_E_OVERLOADED);
		}
	}
	assert_int_equal(firn_proto_server_sessions(s), 4);
	for (int i = 0; i < 5; i++)
		firn_proto_client_destroy(c[i]);
	firn_proto_server_destroy(s);
}

/* A client DATA datagram with a PING. */
static size_t
ping(struct firn_proto_client *c)
{
	struct firn_proto_enc e;

	assert_int_equal(firn_proto_client_enc_begin(c, &e, a, sizeof(a), 0), 0);
	firn_proto_enc_ping(&e);
	return (size_t)firn_proto_client_seal(c, &e);
}

static void
test_reset_after_restart(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s, *s2;
	struct firn_proto_client *c;
	struct firn_proto_session *ss;
	struct firn_proto_addr from;
	uint8_t secret[32], *plain;
	size_t n;
	int m;

	memset(secret, 0x5a, sizeof(secret));
	small_conf(&conf);
	conf.cookie_secret = secret;
	s = test_server(&conf, &key);
	test_addr(&from, 1, 5000);
	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	test_handshake(s, c, &from, 1000, &ss);
	firn_proto_server_destroy(s);
	/* The appliance restarts (same configured cookie secret). */
	s2 = test_server(&conf, &key);
	n = ping(c);
	assert_int_equal(firn_proto_server_open(s2, &from, a, n, 2000, &ss, &plain), -ENOENT);
	/* A forged RESET (wrong token) does nothing. */
	m = firn_proto_server_reset(s2, firn_proto_client_params(c)->session_id, n, b, sizeof(b));
	assert_int_equal(m, 40);
	assert_true((size_t)m <= n);
	b[30] ^= 1;
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m, 2000, a, sizeof(a)),
	                 -EBADMSG);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_ESTABLISHED);
	b[30] ^= 1;
	/* The real one ends the session; the client handshakes again. */
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m, 2000, a, sizeof(a)), 0);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_FAILED);
	assert_int_equal(firn_proto_client_error(c, NULL), FIRN_PROTO_E_SESSION_EXPIRED);
	/* Never a RESET to a datagram too small to be answered without amplification. */
	assert_int_equal(firn_proto_server_reset(s2, 77, 39, b, sizeof(b)), 0);
	test_handshake(s2, c, &from, 3000, &ss);
	firn_proto_client_destroy(c);
	firn_proto_server_destroy(s2);
}

static void
test_idle_expiry(void **state)
{
	struct test_pair tp;
	struct firn_proto_session *ss;
	uint8_t *plain;
	size_t n;

	test_pair_open(&tp, NULL, 1472);
	/* Traffic keeps it alive. */
	n = ping(tp.cli);
	assert_true(firn_proto_server_open(tp.srv, &tp.addr, a, n, tp.now + 20000, &ss, &plain) >=
	            0);
	assert_int_equal(firn_proto_server_tick(tp.srv, tp.now + 40000), 0);
	assert_int_equal(firn_proto_server_sessions(tp.srv), 1);
	/* 30 s of silence ends it. */
	assert_int_equal(firn_proto_server_tick(tp.srv, tp.now + 50000), 1);
	assert_int_equal(firn_proto_server_sessions(tp.srv), 0);
	assert_int_equal(firn_proto_server_stats(tp.srv)->sessions_expired, 1);
	n = ping(tp.cli);
	assert_int_equal(
	        firn_proto_server_open(tp.srv, &tp.addr, a, n, tp.now + 50001, &ss, &plain),
	        -ENOENT);
	assert_null(firn_proto_producer_session(firn_proto_producer_get(
	        firn_proto_server_dedupe(tp.srv), TEST_PRODUCER, false, 0)));
	test_pair_close(&tp);
}

static void
test_producer_moves(void **state)
{
	struct test_pair tp;
	struct firn_proto_client *c2;
	struct firn_proto_session *ss2, *ss;
	struct firn_proto_addr from2;
	struct firn_proto_producer *p;
	uint8_t *plain;
	size_t n;

	test_pair_open(&tp, NULL, 1472);
	p = firn_proto_session_producer(tp.ss);
	/* The producer restarts and handshakes from another port. */
	test_addr(&from2, 7, 40001);
	c2 = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	test_handshake(tp.srv, c2, &from2, tp.now + 10, &ss2);
	assert_ptr_not_equal(ss2, tp.ss);
	assert_ptr_equal(firn_proto_session_producer(ss2), p);
	assert_ptr_equal(firn_proto_producer_session(p), ss2);
	assert_int_equal(firn_proto_server_sessions(tp.srv), 1);
	assert_int_equal(firn_proto_server_stats(tp.srv)->sessions_replaced, 1);
	/* The old session is gone. */
	n = ping(tp.cli);
	assert_int_equal(firn_proto_server_open(tp.srv, &tp.addr, a, n, tp.now + 20, &ss, &plain),
	                 -ENOENT);
	n = ping(c2);
	assert_true(firn_proto_server_open(tp.srv, &from2, a, n, tp.now + 20, &ss, &plain) >= 0);
	assert_ptr_equal(ss, ss2);
	firn_proto_client_destroy(c2);
	test_pair_close(&tp);
}

static void
test_producer_owned_by_key(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key keys[2] = {
	        {TEST_KEY_ID, (const uint8_t *)TEST_SECRET, strlen(TEST_SECRET)},
	        {"AKIDOTHER", (const uint8_t *)"other-secret", 12},
	};
	struct firn_proto_client_conf cc = {.key_id = "AKIDOTHER",
	                                    .secret = (const uint8_t *)"other-secret",
	                                    .secret_len = 12,
	                                    .producer_id = TEST_PRODUCER};
	struct firn_proto_server *s;
	struct firn_proto_client *c1, *c2;
	struct firn_proto_session *ss;
	struct firn_proto_addr from;
	size_t n;
	int m;

	small_conf(&conf);
	conf.keys = keys;
	conf.n_keys = 2;
	s = firn_proto_server_create(&conf);
	assert_non_null(s);
	test_addr(&from, 1, 5000);
	c1 = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	test_handshake(s, c1, &from, 1000, &ss);
	c2 = firn_proto_client_create(&cc);
	n = to_init(s, c2, &from, 1000);
	m = firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss);
	firn_proto_client_handshake(c2, b, (size_t)m, 1000, a, sizeof(a));
	assert_int_equal(firn_proto_client_error(c2, NULL), FIRN_PROTO_E_AUTH);
	assert_int_equal(firn_proto_server_sessions(s), 1);
	firn_proto_client_destroy(c1);
	firn_proto_client_destroy(c2);
	firn_proto_server_destroy(s);
}

/*
 * Steering (doc/ingest.md): an INIT's producer id can be read before the
 * handshake runs, and every session id a server mints carries its tag.
 */
static void
test_session_tag(void **state)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_client *c;
	struct firn_proto_session *ss;
	struct firn_proto_addr from;
	uint64_t pid = 0;
	size_t n;
	int m;

	small_conf(&conf);
	conf.session_tag = 0xa7;
	s = test_server(&conf, &key);
	assert_non_null(s);
	test_addr(&from, 1, 5001);
	c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	n = to_init(s, c, &from, 1000);
	assert_int_equal(firn_proto_init_producer(a, n, &pid), 0);
	assert_true(pid == TEST_PRODUCER);
	assert_int_equal(firn_proto_init_producer(a, 80, &pid), -EBADMSG);
	m = firn_proto_server_handshake(s, &from, a, n, 1000, b, sizeof(b), &ss);
	assert_true(m > 0);
	assert_non_null(ss);
	assert_int_equal(firn_proto_session_tag(firn_proto_session_id(ss)), 0xa7);
	assert_ptr_equal(firn_proto_server_session(s, firn_proto_session_id(ss)), ss);
	/* Another tag on the same slot is another session. */
	assert_null(firn_proto_server_session(s, firn_proto_session_id(ss) ^ (1ull << 24)));
	firn_proto_client_destroy(c);
	firn_proto_server_destroy(s);
}

static void
test_client_timers(void **state)
{
	struct firn_proto_client *c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	static uint8_t hello[FIRN_PROTO_HELLO_MIN];
	int n;

	n = firn_proto_client_start(c, 0, a, sizeof(a));
	memcpy(hello, a, (size_t)n);
	assert_int_equal(firn_proto_client_tick(c, 249, a, sizeof(a)), 0);
	/* Retransmits keep the nonce (the server stays stateless either way). */
	assert_int_equal(firn_proto_client_tick(c, 250, a, sizeof(a)), FIRN_PROTO_HELLO_MIN);
	assert_memory_equal(a, hello, FIRN_PROTO_HELLO_MIN);
	/* Backoff doubles: next at 250 + 500. */
	assert_int_equal(firn_proto_client_tick(c, 749, a, sizeof(a)), 0);
	assert_int_equal(firn_proto_client_tick(c, 750, a, sizeof(a)), FIRN_PROTO_HELLO_MIN);
	assert_int_equal(firn_proto_client_tick(c, 5000, a, sizeof(a)), -ETIMEDOUT);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_FAILED);
	/* Not established: no DATA. */
	{
		struct firn_proto_enc e;

		assert_int_equal(firn_proto_client_enc_begin(c, &e, a, sizeof(a), 0), -ENOTCONN);
	}
	/* A new attempt uses a new nonce. */
	firn_proto_client_start(c, 6000, a, sizeof(a));
	assert_memory_not_equal(a + 24, hello + 24, 32);
	firn_proto_client_destroy(c);
	/* Bad confs are refused with a reason. */
	{
		struct firn_proto_client_conf cc = {.key_id = "k",
		                                    .secret = (const uint8_t *)"s",
		                                    .secret_len = 1,
		                                    .producer_id = 0};

		assert_null(firn_proto_client_create(&cc));
		assert_non_null(strstr(firn_err_msg(), "producer id"));
	}
}

static void
test_server_conf_errors(void **state)
{
	struct firn_proto_server_conf conf;

	firn_proto_server_conf_defaults(&conf);
	conf.max_dgram = 9000 + 500;
	assert_null(firn_proto_server_create(&conf));
	assert_non_null(strstr(firn_err_msg(), "max_dgram"));
	firn_proto_server_conf_defaults(&conf);
	conf.dedupe_window = 1000;
	assert_null(firn_proto_server_create(&conf));
	assert_non_null(strstr(firn_err_msg(), "power of two"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_success),
	        cmocka_unit_test(test_session_tag),
	        cmocka_unit_test(test_jumbo),
	        cmocka_unit_test(test_wrong_secret),
	        cmocka_unit_test(test_forged_cookie),
	        cmocka_unit_test(test_expired_cookie),
	        cmocka_unit_test(test_replayed_init),
	        cmocka_unit_test(test_hello_flood),
	        cmocka_unit_test(test_version),
	        cmocka_unit_test(test_table_full),
	        cmocka_unit_test(test_reset_after_restart),
	        cmocka_unit_test(test_idle_expiry),
	        cmocka_unit_test(test_producer_moves),
	        cmocka_unit_test(test_producer_owned_by_key),
	        cmocka_unit_test(test_client_timers),
	        cmocka_unit_test(test_server_conf_errors),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
