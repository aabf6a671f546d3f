/*
 * test_proto_alloc.c - the per-datagram paths do not allocate.
 *
 * This program defines malloc, calloc, realloc and free itself. They forward
 * to glibc's __libc_* entry points and count calls while `counting` is set.
 * Because the executable's symbols interpose on every shared library, the
 * count covers OpenSSL as well as lib/proto. Set-up (creating the server,
 * the handshake) may allocate. After that, the hot paths run many times
 * and the count must stay at zero: the client batch encoder and seal, the
 * server open, RX iteration, reassembly, dedupe and credit, acks and flush,
 * the client's open and decode, and the server's answer to a HELLO (a
 * spoofed flood must not make it allocate either).
 *
 * glibc only: elsewhere (or under a sanitizer that owns malloc) the test
 * skips with exit 77.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_proto.h"
#include "proto_test.h"

#define ALLOC_COUNT_STORAGE static volatile
#include "../alloc_count.h"

static uint8_t pkt[FIRN_PROTO_DGRAM_MAX], out[FIRN_PROTO_DGRAM_MAX];
static uint8_t big[100000];

/* One round: client packs records (and one fragmented record), server takes them, acks flow back.
 */
static FIRN_UNUSED void
one_round(struct test_pair *tp, uint64_t *seq)
{
	struct firn_proto_enc e;
	struct firn_proto_session *ss;
	struct firn_proto_rx rx;
	struct firn_proto_rx_item it;
	struct firn_proto_dec dec;
	struct firn_proto_frame f;
	uint8_t *plain;
	uint64_t pn;
	int n, rc;
	uint32_t off = 0;
	struct firn_proto_rec r = {
	        .key = (const uint8_t *)"user-1234", .key_len = 9, .data = big, .len = 100};
	bool big_done = false;

	while (!big_done) {
		assert_int_equal(firn_proto_client_enc_begin(tp->cli, &e, pkt, sizeof(pkt), 0), 0);
		/* Some small records, then as much of a 20 KB record as fits. */
		for (int i = 0; i < 5 && off == 0; i++) {
			r.seq = ++*seq;
			r.len = 100;
			assert_int_equal(firn_proto_enc_record(&e, &r, "s", 1, &(uint32_t){0}), 1);
		}
		if (off == 0)
			r.seq = ++*seq;
		r.len = 20000;
		rc = firn_proto_enc_record(&e, &r, "s", 1, &off);
		big_done = rc == 1;
		n = firn_proto_client_seal(tp->cli, &e);
		assert_true(n > 0);
		n = firn_proto_server_open(tp->srv, &tp->addr, pkt, (size_t)n, tp->now, &ss,
		                           &plain);
		assert_true(n > 0);
		firn_proto_rx_begin(&rx, tp->srv, ss, plain, (size_t)n, tp->now);
		while (firn_proto_rx_next(&rx, &it) > 0) {
			struct firn_proto_durable d = {.seq = it.rec.seq, .count = 1};

			assert_int_equal(it.kind, FIRN_PROTO_RX_RECORD);
			d.counter = it.rec.seq * 3;
			if (it.reasm_slot >= 0)
				firn_proto_reasm_release(firn_proto_session_reasm(ss),
				                         it.reasm_slot);
			firn_proto_record_done(tp->srv, it.producer, it.rec.seq, 0, d.counter, 0);
			assert_int_equal(firn_proto_session_queue_durable(ss, &d), 0);
		}
		firn_proto_session_grant(ss, 512, 4u << 20);
		while ((n = firn_proto_session_flush(tp->srv, ss, tp->now, false, out,
		                                     sizeof(out))) > 0) {
			n = firn_proto_client_open(tp->cli, out, (size_t)n, &plain, &pn);
			assert_true(n > 0);
			firn_proto_dec_init(&dec, plain, (size_t)n, false);
			while (firn_proto_dec_next(&dec, &f) > 0)
				;
		}
		tp->now++;
	}
	firn_proto_server_tick(tp->srv, tp->now);
}

static void
test_hot_paths_do_not_allocate(void **state)
{
#ifdef HAVE_INTERPOSE
	struct firn_proto_server_conf conf;
	struct test_pair tp;
	uint64_t seq = 0;

	firn_proto_server_conf_defaults(&conf);
	conf.max_sessions = 4;
	conf.max_producers = 4;
	conf.reasm_pool_bytes = 4u << 20;
	test_pair_open(&tp, &conf, 1472);
	one_round(&tp, &seq); /* warm-up: first use of every path */
	counting = 1;
	allocs = 0;
	for (int i = 0; i < 200; i++)
		one_round(&tp, &seq);
	counting = 0;
	fprintf(stderr, "# %llu records, %lu allocations\n", (unsigned long long)seq, allocs);
	assert_int_equal(allocs, 0);
	/* Prove the counter works: a handshake does allocate (HKDF, HMAC). */
	{
		struct firn_proto_client *c2 = test_client(TEST_SECRET, 99, 1472);
		struct firn_proto_session *ss;
		struct firn_proto_addr a2;

		test_addr(&a2, 8, 1);
		counting = 1;
		test_handshake(tp.srv, c2, &a2, tp.now, &ss);
		counting = 0;
		assert_true(allocs > 0);
		firn_proto_client_destroy(c2);
	}
	test_pair_close(&tp);
#else
	skip();
#endif
}

static void
test_hello_does_not_allocate(void **state)
{
#ifdef HAVE_INTERPOSE
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
	struct firn_proto_server *s;
	struct firn_proto_session *ss;
	struct firn_proto_hdr h = {FIRN_PROTO_VERSION, FIRN_PROTO_HELLO, 0, 0, 0};

	firn_proto_server_conf_defaults(&conf);
	conf.max_sessions = 2;
	conf.max_producers = 2;
	conf.reasm_pool_bytes = 2u << 20;
	s = test_server(&conf, &key);
	memset(pkt, 0, FIRN_PROTO_HELLO_MIN);
	firn_proto_hdr_encode(&h, pkt, sizeof(pkt));
	firn_proto_server_handshake(s, &(struct firn_proto_addr){{0}, 1}, pkt, FIRN_PROTO_HELLO_MIN,
	                            1, out, sizeof(out), &ss);
	counting = 1;
	allocs = 0;
	for (int i = 0; i < 1000; i++) {
		struct firn_proto_addr from;

		test_fill(from.ip, 16);
		from.port = (uint16_t)i;
		test_fill(pkt + 24, 32);
		assert_int_equal(firn_proto_server_handshake(s, &from, pkt, FIRN_PROTO_HELLO_MIN,
		                                             (uint64_t)i, out, sizeof(out), &ss),
		                 76);
	}
	counting = 0;
	assert_int_equal(allocs, 0);
	firn_proto_server_destroy(s);
#else
	skip();
#endif
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_hot_paths_do_not_allocate),
	        cmocka_unit_test(test_hello_does_not_allocate),
	};

#ifndef HAVE_INTERPOSE
	fprintf(stderr, "skip: needs glibc malloc interposition (not under ASan)\n");
	return 77;
#endif
	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
