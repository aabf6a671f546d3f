/*
 * test_client_alloc.c - after firn_client_open(), the client does not
 * allocate: not to put, not to pack and seal, not to read acks, not to
 * resend after loss, not for a 1 MiB record in fragments.
 *
 * This program defines malloc, calloc and realloc itself, forwarding to
 * glibc's __libc_* entry points, and counts calls made on the test thread
 * while `counting` is set (a thread-local flag: the appliance thread in
 * client_test.h allocates what it likes). The executable's definitions
 * interpose on every shared library, so OpenSSL's allocations count too.
 *
 * glibc only: elsewhere (or under a sanitizer that owns malloc) the test
 * skips with exit 77.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_test.h"

#include "../alloc_count.h"

#ifdef HAVE_INTERPOSE
static unsigned acked;

static void
on_ack(void *arg, const struct firn_client_ack *a)
{
	(void)arg;
	if (a->status == FIRN_CLIENT_OK)
		acked++;
}

static void
test_no_alloc(void **state)
{
	static uint8_t buf[FIRN_CLIENT_DATA_MAX];
	struct tsrv t;
	struct firn_client_conf conf;
	struct firn_client *c;
	struct firn_client_stats st;
	int s;

	tsrv_init(&t, 20000);
	atomic_store(&t.drop_rx_every, 9); /* losses: resends are on the measured path too */
	tsrv_start(&t);
	conf = test_conf(&t, on_ack, NULL);
	conf.durable_timeout_ms = 200;
	c = firn_client_open(&conf);
	assert_non_null(c);
	s = firn_client_stream(c, "noalloc");
	test_fill(buf, sizeof(buf));
	/* Warm up: the first records, acks and resends. */
	for (unsigned i = 0; i < 200; i++)
		assert_int_equal(firn_client_put(c, s, "warm", 4, buf, 100, i), 0);
	assert_int_equal(firn_client_flush(c, 10000), 0);

	/* The counter itself works (so a zero below means something). */
	{
		void *volatile p;

		counting = 1;
		allocs = 0;
		p = malloc(16);
		free(p);
		assert_int_equal(allocs, 1);
	}
	allocs = 0;
	for (unsigned i = 0; i < 10000; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "k%u", i % 257);

		assert_int_equal(firn_client_put(c, s, key, (size_t)n, buf + i, i % 700, i), 0);
		if (i % 16 == 0)
			assert_true(firn_client_poll(c, 0) >= 0);
		if (i == 5000)
			assert_int_equal(firn_client_put(c, s, "big", 3, buf, sizeof(buf), i), 0);
	}
	assert_int_equal(firn_client_flush(c, 30000), 0);
	firn_client_stats(c, &st);
	counting = 0;
	fprintf(stderr, "# %lu allocations over 10001 records (%llu lost datagrams, %llu resent)\n",
	        allocs, (unsigned long long)st.lost_datagrams,
	        (unsigned long long)st.resent_pieces);
	assert_int_equal(allocs, 0);
	assert_int_equal(acked, 200 + 10001);
	assert_true(st.lost_datagrams > 0);
	firn_client_close(c);
	tsrv_destroy(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_no_alloc),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
#else
int
main(void)
{
	fprintf(stderr, "skip: malloc interposition needs glibc without a sanitizer\n");
	return 77;
}
#endif
