/*
 * test_client_errors.c - every way a record or a session can fail comes out
 * clearly: as a per-record status in the callback, as a put error before
 * anything is sent, or as a session error whose message names the cause.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_test.h"

struct tally {
	unsigned n, by_status[300];
	uint64_t last_cookie;
};

static void
on_ack(void *arg, const struct firn_client_ack *a)
{
	struct tally *t = arg;

	t->n++;
	if (a->status >= 0 && a->status < 300)
		t->by_status[a->status]++;
	t->last_cookie = a->cookie;
}

static int
resolve(void *arg, const char *name, size_t len, uint64_t *id)
{
	(void)arg;
	if (len == 4 && memcmp(name, "nope", 4) == 0)
		return -ENOENT;
	*id = 1;
	return 0;
}

/* An unknown stream fails each of its records; other streams are unaffected. */
static void
test_unknown_stream(void **state)
{
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	int good, bad;

	tsrv_init(&t, 64);
	t.conf.resolve = resolve;
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	c = firn_client_open(&conf);
	assert_non_null(c);
	good = firn_client_stream(c, "yes");
	bad = firn_client_stream(c, "nope");
	assert_true(good >= 0 && bad >= 0 && good != bad);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(firn_client_put(c, bad, "k", 1, "x", 1, (uint64_t)i), 0);
		assert_int_equal(firn_client_put(c, good, "k", 1, "y", 1, 100 + (uint64_t)i), 0);
	}
	assert_int_equal(firn_client_flush(c, 5000), 0);
	assert_int_equal(k.n, 20);
	assert_int_equal(k.by_status[FIRN_CLIENT_E_UNKNOWN_STREAM], 10);
	assert_int_equal(k.by_status[FIRN_CLIENT_OK], 10);
	assert_non_null(strstr(firn_client_status_str(FIRN_CLIENT_E_UNKNOWN_STREAM), "stream"));
	firn_client_close(c);
	tsrv_destroy(&t);
}

/* Bad input is refused at put, with a message, and never sent. */
static void
test_put_refusals(void **state)
{
	static uint8_t big[FIRN_CLIENT_DATA_MAX + 1];
	char longkey[300];
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	int s;

	tsrv_init(&t, 64);
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "s");
	assert_int_equal(firn_client_put(c, s, "k", 1, big, sizeof(big), 0), -E2BIG);
	assert_non_null(strstr(firn_err_msg(), "1 MiB"));
	memset(longkey, 'a', sizeof(longkey));
	assert_int_equal(firn_client_put(c, s, longkey, 257, "x", 1, 0), -EINVAL);
	assert_int_equal(firn_client_put(c, s, "", 0, "x", 1, 0), -EINVAL);
	assert_int_equal(firn_client_put(c, s, "\xff\xfe", 2, "x", 1, 0), -EINVAL);
	assert_int_equal(firn_client_put(c, 7, "k", 1, "x", 1, 0), -EINVAL);
	assert_int_equal(firn_client_put(c, -1, "k", 1, "x", 1, 0), -EINVAL);
	assert_int_equal(firn_client_stream(c, ""), -EINVAL);
	memset(longkey, 's', 129);
	longkey[129] = '\0';
	assert_int_equal(firn_client_stream(c, longkey), -EINVAL);
	/* A 256-byte key and an explicit hash key are fine. */
	assert_int_equal(firn_client_put(c, s, longkey, 128, "x", 1, 1), 0);
	{
		uint8_t h[16] = {0x80};

		assert_int_equal(firn_client_put_hash(c, s, h, "y", 1, 2), 0);
	}
	assert_int_equal(firn_client_flush(c, 5000), 0);
	assert_int_equal(k.n, 2);
	assert_int_equal(k.by_status[FIRN_CLIENT_OK], 2);
	firn_client_close(c);
	tsrv_stop(&t);
	assert_int_equal(atomic_load(&t.stored), 2);
	tsrv_destroy(&t);
}

static void
test_auth_failure(void **state)
{
	struct tsrv t;
	struct firn_client_conf conf;

	tsrv_init(&t, 16);
	tsrv_start(&t);
	conf = test_conf(&t, NULL, NULL);
	conf.secret_access_key = "not-the-secret";
	assert_null(firn_client_open(&conf));
	fprintf(stderr, "# %s\n", firn_client_last_error());
	assert_non_null(strstr(firn_client_last_error(), "authentication failed"));
	assert_non_null(strstr(firn_client_last_error(), TEST_KEY_ID));
	conf = test_conf(&t, NULL, NULL);
	conf.access_key_id = "AKIDUNKNOWN";
	assert_null(firn_client_open(&conf));
	assert_non_null(strstr(firn_client_last_error(), "authentication failed"));
	conf.access_key_id = NULL;
	assert_null(firn_client_open(&conf));
	assert_non_null(strstr(firn_client_last_error(), "access key"));
	tsrv_stop(&t);
	assert_int_equal(firn_proto_server_stats(t.srv)->auth_failed, 2);
	assert_int_equal(firn_proto_server_stats(t.srv)->sessions_opened, 0);
	tsrv_destroy(&t);
}

/* A read-only appliance refuses records one by one. */
static void
test_read_only_records(void **state)
{
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	int s;

	tsrv_init(&t, 16);
	atomic_store(&t.record_status, FIRN_PROTO_E_READ_ONLY);
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "ro");
	for (int i = 0; i < 5; i++)
		assert_int_equal(firn_client_put(c, s, "k", 1, "x", 1, (uint64_t)i), 0);
	assert_int_equal(firn_client_flush(c, 5000), 0);
	assert_int_equal(k.by_status[FIRN_CLIENT_E_READ_ONLY], 5);
	firn_client_close(c);
	tsrv_stop(&t);
	assert_int_equal(atomic_load(&t.stored), 0);
	tsrv_destroy(&t);
}

/*
 * The appliance ends the session with ERROR code: the client fails for good
 * with rc, every open record is answered with the code, the message says why.
 */
static void
session_error(int code, int rc, const char *words)
{
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	const uint8_t ip[4] = {10, 1, 2, 3};
	uint64_t t0;
	int s, r = 0;

	tsrv_init(&t, 64);
	atomic_store(&t.durable_delay_ms, 100000); /* nothing becomes durable */
	firn_proto_addr_v4(&t.redirect, ip, 7401);
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "e");
	for (int i = 0; i < 8; i++)
		assert_int_equal(firn_client_put(c, s, "k", 1, "x", 1, (uint64_t)i), 0);
	firn_client_poll(c, 50);
	atomic_store(&t.session_error, code);
	t0 = tsrv_now();
	while (tsrv_now() - t0 < 3000 && (r = firn_client_poll(c, 10)) >= 0)
		;
	fprintf(stderr, "# %s\n", firn_client_error(c));
	assert_int_equal(r, rc);
	assert_int_equal(k.n, 8);
	assert_int_equal(k.by_status[code], 8);
	assert_non_null(strstr(firn_client_error(c), words));
	assert_int_equal(firn_client_put(c, s, "k", 1, "x", 1, 9), rc);
	assert_int_equal(firn_client_flush(c, 100), rc);
	firn_client_close(c);
	tsrv_destroy(&t);
}

static void
test_session_errors(void **state)
{
	session_error(FIRN_PROTO_E_READ_ONLY, -EROFS, "READ_ONLY");
	session_error(FIRN_PROTO_E_REDIRECT, -EREMOTE, "10.1.2.3:7401");
	session_error(FIRN_PROTO_E_PROTOCOL, -EPROTO, "PROTOCOL");
}

/* The handshake is refused: REDIRECT names where to go, OVERLOADED is retried. */
static void
test_handshake_rejects(void **state)
{
	struct tsrv t;
	struct firn_client_conf conf;
	const uint8_t ip[4] = {192, 0, 2, 9};

	tsrv_init(&t, 16);
	firn_proto_addr_v4(&t.redirect, ip, 7400);
	atomic_store(&t.reject_code, FIRN_PROTO_E_REDIRECT);
	tsrv_start(&t);
	conf = test_conf(&t, NULL, NULL);
	assert_null(firn_client_open(&conf));
	fprintf(stderr, "# %s\n", firn_client_last_error());
	assert_non_null(strstr(firn_client_last_error(), "192.0.2.9:7400"));
	atomic_store(&t.reject_code, FIRN_PROTO_E_READ_ONLY);
	assert_null(firn_client_open(&conf));
	assert_non_null(strstr(firn_client_last_error(), "read-only"));
	/* OVERLOADED: back off and try again; it gets in once the appliance has room. */
	atomic_store(&t.reject_code, FIRN_PROTO_E_OVERLOADED);
	conf.connect_timeout_ms = 800;
	assert_null(firn_client_open(&conf));
	assert_non_null(strstr(firn_client_last_error(), "overloaded"));
	conf.connect_timeout_ms = 5000;
	/* Refused for the next 300 ms only: the client backs off (1 s) and gets in. */
	atomic_store(&t.reject_until_ms, tsrv_now() + 300);
	{
		uint64_t t0 = tsrv_now();
		struct firn_client *c = firn_client_open(&conf);

		assert_non_null(c);
		assert_true(tsrv_now() - t0 >= 900);
		assert_true(tsrv_now() - t0 < 3000);
		firn_client_close(c);
	}
	tsrv_destroy(&t);
}

/* Nothing there: refused at once (ICMP), or no answer within the timeout. */
static void
test_no_appliance(void **state)
{
	struct tsrv t;
	struct firn_client_conf conf;
	uint64_t t0;
	int fd;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	char ep[32];

	/* A port nobody listens on: bind one, note it, close it. */
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	snprintf(ep, sizeof(ep), "127.0.0.1:%u", ntohs(a.sin_port));
	tsrv_init(&t, 16); /* bound but never started: silent */
	conf = test_conf(&t, NULL, NULL);
	conf.endpoint = ep;
	t0 = tsrv_now();
	assert_null(firn_client_open(&conf));
	fprintf(stderr, "# %s\n", firn_client_last_error());
	assert_non_null(strstr(firn_client_last_error(), "refused"));
	assert_true(tsrv_now() - t0 < 2000);
	conf.endpoint = t.endpoint;
	conf.connect_timeout_ms = 600;
	t0 = tsrv_now();
	assert_null(firn_client_open(&conf));
	fprintf(stderr, "# %s\n", firn_client_last_error());
	assert_non_null(strstr(firn_client_last_error(), "no answer"));
	assert_true(tsrv_now() - t0 >= 550);
	conf.endpoint = "not an endpoint:x";
	assert_null(firn_client_open(&conf));
	assert_non_null(strstr(firn_client_last_error(), "endpoint"));
	close(t.fd);
	free(t.recs);
}

/* Records that never get an answer are given up after give_up_ms. */
static void
test_give_up(void **state)
{
	struct tsrv t;
	struct tally k = {0};
	struct firn_client_conf conf;
	struct firn_client *c;
	int s;

	tsrv_init(&t, 64);
	atomic_store(&t.durable_delay_ms, 100000);
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, &k);
	conf.give_up_ms = 300;
	conf.durable_timeout_ms = 100;
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "slow");
	for (int i = 0; i < 4; i++)
		assert_int_equal(firn_client_put(c, s, "k", 1, "x", 1, (uint64_t)i), 0);
	assert_int_equal(firn_client_flush(c, 3000), 0);
	assert_int_equal(k.by_status[FIRN_CLIENT_E_TIMEOUT], 4);
	/* Close answers what is left with E_CLOSED. */
	assert_int_equal(firn_client_put(c, s, "k", 1, "x", 1, 77), 0);
	firn_client_close(c);
	assert_int_equal(k.by_status[FIRN_CLIENT_E_CLOSED], 1);
	assert_true(k.last_cookie == 77);
	tsrv_destroy(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_unknown_stream), cmocka_unit_test(test_put_refusals),
	        cmocka_unit_test(test_auth_failure),   cmocka_unit_test(test_read_only_records),
	        cmocka_unit_test(test_session_errors), cmocka_unit_test(test_handshake_rejects),
	        cmocka_unit_test(test_no_appliance),   cmocka_unit_test(test_give_up),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
