/*
 * proto_test.h - shared fixtures for the lib/proto unit tests.
 *
 * A seeded PRNG (FIRN_TEST_SEED overrides the fixed default, ISA-L style),
 * and a "pair": one server and one client running the real handshake with
 * a fake clock, with no sockets. Each test program includes this after
 * cmocka.h and firn_proto.h.
 */
#ifndef FIRN_PROTO_TEST_H
#define FIRN_PROTO_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t test_rng_state;

static FIRN_UNUSED void
test_seed(void)
{
	const char *s = getenv("FIRN_TEST_SEED");
	uint64_t v = 0x5eed0f1a2b3c4d5eull;

	if (s != NULL && firn_parse_u64(s, &v) < 0)
		v = 0x5eed0f1a2b3c4d5eull;
	test_rng_state = v ? v : 1;
	fprintf(stderr, "# seed %llu (set FIRN_TEST_SEED to repeat)\n",
	        (unsigned long long)test_rng_state);
}

static FIRN_UNUSED uint64_t
test_rand(void)
{
	/* xorshift64*: fast, repeatable, good enough for test data. */
	test_rng_state ^= test_rng_state >> 12;
	test_rng_state ^= test_rng_state << 25;
	test_rng_state ^= test_rng_state >> 27;
	return test_rng_state * 0x2545f4914f6cdd1dull;
}

static FIRN_UNUSED uint32_t
test_below(uint32_t n)
{
	return n ? (uint32_t)(test_rand() % n) : 0;
}

static FIRN_UNUSED void
test_fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)test_rand();
}

#define TEST_KEY_ID "AKIDFIRNTEST"
#define TEST_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TEST_PRODUCER 0x1234abcd5678ef01ull

struct test_pair {
	struct firn_proto_server *srv;
	struct firn_proto_client *cli;
	struct firn_proto_session *ss;
	struct firn_proto_addr addr;
	struct firn_proto_access_key key;
	uint64_t now;
};

static FIRN_UNUSED void
test_addr(struct firn_proto_addr *a, uint8_t last, uint16_t port)
{
	const uint8_t ip[4] = {198, 18, 0, last};

	firn_proto_addr_v4(a, ip, port);
}

static FIRN_UNUSED struct firn_proto_server *
test_server(struct firn_proto_server_conf *conf, struct firn_proto_access_key *key)
{
	struct firn_proto_server *s;

	key->id = TEST_KEY_ID;
	key->secret = (const uint8_t *)TEST_SECRET;
	key->secret_len = strlen(TEST_SECRET);
	conf->keys = key;
	conf->n_keys = 1;
	s = firn_proto_server_create(conf);
	if (s == NULL)
		fprintf(stderr, "server: %s\n", firn_err_msg());
	assert_non_null(s);
	return s;
}

static FIRN_UNUSED struct firn_proto_client *
test_client(const char *secret, uint64_t producer, uint16_t max_dgram)
{
	struct firn_proto_client_conf cc = {
	        .key_id = TEST_KEY_ID,
	        .secret = (const uint8_t *)secret,
	        .secret_len = strlen(secret),
	        .producer_id = producer,
	        .max_dgram = max_dgram,
	};
	struct firn_proto_client *c = firn_proto_client_create(&cc);

	assert_non_null(c);
	return c;
}

/* Run HELLO -> RETRY -> INIT -> ACCEPT between c and s. */
static FIRN_UNUSED void
test_handshake(struct firn_proto_server *s, struct firn_proto_client *c,
               const struct firn_proto_addr *from, uint64_t now, struct firn_proto_session **ss)
{
	uint8_t a[FIRN_PROTO_DGRAM_MAX], b[FIRN_PROTO_DGRAM_MAX];
	int n, m;

	n = firn_proto_client_start(c, now, a, sizeof(a));
	assert_int_equal(n, FIRN_PROTO_HELLO_MIN);
	m = firn_proto_server_handshake(s, from, a, (size_t)n, now, b, sizeof(b), ss);
	assert_true(m > 0 && m <= n);
	assert_null(*ss);
	n = firn_proto_client_handshake(c, b, (size_t)m, now, a, sizeof(a));
	assert_true(n > 0);
	m = firn_proto_server_handshake(s, from, a, (size_t)n, now, b, sizeof(b), ss);
	assert_true(m > 0);
	assert_non_null(*ss);
	assert_int_equal(firn_proto_client_handshake(c, b, (size_t)m, now, a, sizeof(a)), 0);
	assert_int_equal(firn_proto_client_state(c), FIRN_PROTO_CLIENT_ESTABLISHED);
}

static FIRN_UNUSED void
test_pair_open(struct test_pair *tp, struct firn_proto_server_conf *conf, uint16_t max_dgram)
{
	struct firn_proto_server_conf def;

	if (conf == NULL) {
		firn_proto_server_conf_defaults(&def);
		def.reasm_pool_bytes = 8u << 20;
		def.max_sessions = 8;
		def.max_producers = 8;
		conf = &def;
	}
	memset(tp, 0, sizeof(*tp));
	tp->now = 1000000;
	test_addr(&tp->addr, 7, 40000);
	tp->srv = test_server(conf, &tp->key);
	tp->cli = test_client(TEST_SECRET, TEST_PRODUCER, max_dgram);
	test_handshake(tp->srv, tp->cli, &tp->addr, tp->now, &tp->ss);
}

static FIRN_UNUSED void
test_pair_close(struct test_pair *tp)
{
	firn_proto_client_destroy(tp->cli);
	firn_proto_server_destroy(tp->srv);
}

#endif /* FIRN_PROTO_TEST_H */
