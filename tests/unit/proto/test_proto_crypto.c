/*
 * test_proto_crypto.c - AEAD, nonces, key derivation and the replay window.
 *
 * The sealing code is checked against an independent one-shot OpenSSL
 * decryption that builds the nonce as doc/protocol.md §4 says (IV XOR
 * big-endian packet number), so the spec and the code cannot drift apart
 * unnoticed. Then tampering: every bit of the header and many bits of body
 * and tag, every truncation. Then replay through a real session: the same
 * datagram twice, a datagram older than the window, and reordered datagrams
 * accepted exactly once.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "firn_common.h"
#include "firn_proto.h"
#include "proto_test.h"

static uint8_t pkt[FIRN_PROTO_DGRAM_MAX], copy[FIRN_PROTO_DGRAM_MAX];

static void
make_keys(struct firn_proto_keys *k)
{
	uint8_t nc[32], ns[32], proof[32];

	memset(nc, 1, 32);
	memset(ns, 2, 32);
	memset(proof, 3, 32);
	assert_int_equal(firn_proto_derive_keys((const uint8_t *)"secret", 6, nc, ns, 42, proof, k),
	                 0);
}

/* Build a DATA datagram with plaintext len and seal it. Returns the sealed length. */
static size_t
seal_one(struct firn_proto_aead *a, uint64_t sid, uint64_t pn, size_t len)
{
	struct firn_proto_hdr h = {FIRN_PROTO_VERSION, FIRN_PROTO_DATA, 0, sid, pn};
	int n;

	firn_proto_hdr_encode(&h, pkt, sizeof(pkt));
	test_fill(pkt + FIRN_PROTO_HDR_LEN, len);
	memcpy(copy, pkt, FIRN_PROTO_HDR_LEN + len);
	n = firn_proto_seal(a, pkt, FIRN_PROTO_HDR_LEN + len, sizeof(pkt));
	assert_int_equal(n, (int)(FIRN_PROTO_HDR_LEN + len + FIRN_PROTO_TAG_LEN));
	return (size_t)n;
}

/* Decrypt with a fresh one-shot context and the nonce built by hand. */
static bool
oracle_open(const uint8_t key[32], const uint8_t iv[12], uint64_t pn, const uint8_t *p, size_t len,
            uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t nonce[12], tag[16];
	int l = 0, ok;
	size_t ct = len - FIRN_PROTO_HDR_LEN - FIRN_PROTO_TAG_LEN;

	memcpy(nonce, iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(pn >> (56 - 8 * i));
	memcpy(tag, p + len - 16, 16);
	ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
	     EVP_DecryptUpdate(c, NULL, &l, p, FIRN_PROTO_HDR_LEN) == 1 &&
	     EVP_DecryptUpdate(c, out, &l, p + FIRN_PROTO_HDR_LEN, (int)ct) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1 &&
	     EVP_DecryptFinal_ex(c, out + l, &l) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok;
}

static void
test_aead_oracle(void **state)
{
	struct firn_proto_keys k;
	struct firn_proto_aead tx, rx;
	static uint8_t out[FIRN_PROTO_DGRAM_MAX];
	const uint64_t pns[] = {1, 2, 255, 256, 0x0102030405060708ull, FIRN_PROTO_PN_MAX - 1};

	make_keys(&k);
	assert_int_equal(firn_proto_aead_init(&tx, k.c2s_key, k.c2s_iv, true), 0);
	assert_int_equal(firn_proto_aead_init(&rx, k.c2s_key, k.c2s_iv, false), 0);
	for (unsigned i = 0; i < FIRN_ARRAY_SIZE(pns); i++) {
		size_t len = test_below(1400), n = seal_one(&tx, 9, pns[i], len);

		assert_true(oracle_open(k.c2s_key, k.c2s_iv, pns[i], pkt, n, out));
		assert_memory_equal(out, copy + FIRN_PROTO_HDR_LEN, len);
		/* The header stays clear; the payload does not. */
		assert_memory_equal(pkt, copy, FIRN_PROTO_HDR_LEN);
		if (len >= 16)
			assert_memory_not_equal(pkt + FIRN_PROTO_HDR_LEN, copy + FIRN_PROTO_HDR_LEN,
			                        16);
		assert_int_equal(firn_proto_open(&rx, pns[i], pkt, n), (int)len);
		assert_memory_equal(pkt + FIRN_PROTO_HDR_LEN, copy + FIRN_PROTO_HDR_LEN, len);
	}
	/* A context only does the job it was made for. */
	seal_one(&tx, 9, 3, 10);
	assert_int_equal(firn_proto_open(&tx, 3, pkt, 50), -EBADMSG);
	assert_int_equal(firn_proto_seal(&rx, pkt, 34, sizeof(pkt)), -EINVAL);
	assert_int_equal(firn_proto_seal(&tx, pkt, 34, 49), -ENOSPC);
	firn_proto_aead_fini(&tx);
	firn_proto_aead_fini(&rx);
}

static void
test_aead_tamper(void **state)
{
	struct firn_proto_keys k;
	struct firn_proto_aead tx, rx, wrong;
	size_t n;

	make_keys(&k);
	firn_proto_aead_init(&tx, k.c2s_key, k.c2s_iv, true);
	firn_proto_aead_init(&rx, k.c2s_key, k.c2s_iv, false);
	firn_proto_aead_init(&wrong, k.s2c_key, k.s2c_iv, false);
	n = seal_one(&tx, 5, 17, 200);
	memcpy(copy, pkt, n);
	/* Every bit of the header is authenticated (it is the AAD). */
	for (unsigned bit = 0; bit < FIRN_PROTO_HDR_LEN * 8; bit++) {
		memcpy(pkt, copy, n);
		pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(firn_proto_open(&rx, 17, pkt, n), -EBADMSG);
	}
	/* Body and tag: every bit of the tag, 500 random bits of the body. */
	for (unsigned i = 0; i < 128 + 500; i++) {
		size_t bit = i < 128 ? (n - 16) * 8 + i
		                     : FIRN_PROTO_HDR_LEN * 8 + test_below((uint32_t)(200 * 8));

		memcpy(pkt, copy, n);
		pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(firn_proto_open(&rx, 17, pkt, n), -EBADMSG);
	}
	/* The wrong packet number (nonce) or the other direction's key. */
	memcpy(pkt, copy, n);
	assert_int_equal(firn_proto_open(&rx, 18, pkt, n), -EBADMSG);
	memcpy(pkt, copy, n);
	assert_int_equal(firn_proto_open(&wrong, 17, pkt, n), -EBADMSG);
	/* Every truncation. */
	for (size_t len = 0; len < n; len++) {
		memcpy(pkt, copy, n);
		assert_int_equal(firn_proto_open(&rx, 17, pkt, len), -EBADMSG);
	}
	/* And the intact datagram still opens (the context survived all failures). */
	memcpy(pkt, copy, n);
	assert_int_equal(firn_proto_open(&rx, 17, pkt, n), 200);
	firn_proto_aead_fini(&tx);
	firn_proto_aead_fini(&rx);
	firn_proto_aead_fini(&wrong);
}

static void
test_keys(void **state)
{
	struct firn_proto_keys a, b;
	uint8_t nc[32], ns[32], proof[32];

	memset(nc, 1, 32);
	memset(ns, 2, 32);
	memset(proof, 3, 32);
	make_keys(&a);
	make_keys(&b);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_memory_not_equal(a.c2s_key, a.s2c_key, 32);
	assert_memory_not_equal(a.c2s_iv, a.s2c_iv, 12);
	/* Each input changes the keys: session id, nonces, proof, secret. */
	firn_proto_derive_keys((const uint8_t *)"secret", 6, nc, ns, 43, proof, &b);
	assert_memory_not_equal(a.c2s_key, b.c2s_key, 32);
	nc[0] ^= 1;
	firn_proto_derive_keys((const uint8_t *)"secret", 6, nc, ns, 42, proof, &b);
	assert_memory_not_equal(a.c2s_key, b.c2s_key, 32);
	nc[0] ^= 1;
	ns[15] ^= 1;
	firn_proto_derive_keys((const uint8_t *)"secret", 6, nc, ns, 42, proof, &b);
	assert_memory_not_equal(a.s2c_key, b.s2c_key, 32);
	ns[15] ^= 1;
	proof[5] ^= 1;
	firn_proto_derive_keys((const uint8_t *)"secret", 6, nc, ns, 42, proof, &b);
	assert_memory_not_equal(a.s2c_iv, b.s2c_iv, 12);
	proof[5] ^= 1;
	firn_proto_derive_keys((const uint8_t *)"secreT", 6, nc, ns, 42, proof, &b);
	assert_memory_not_equal(a.c2s_key, b.c2s_key, 32);
	/* The proof covers every INIT field. */
	{
		uint8_t p1[32], p2[32];

		assert_int_equal(firn_proto_client_proof((const uint8_t *)"s", 1, nc, ns, 7, 1472,
		                                         "id", 2, p1),
		                 0);
		firn_proto_client_proof((const uint8_t *)"s", 1, nc, ns, 8, 1472, "id", 2, p2);
		assert_memory_not_equal(p1, p2, 32);
		firn_proto_client_proof((const uint8_t *)"s", 1, nc, ns, 7, 8972, "id", 2, p2);
		assert_memory_not_equal(p1, p2, 32);
		firn_proto_client_proof((const uint8_t *)"s", 1, nc, ns, 7, 1472, "iD", 2, p2);
		assert_memory_not_equal(p1, p2, 32);
		assert_int_equal(firn_proto_client_proof((const uint8_t *)"s", 1, nc, ns, 7, 1472,
		                                         "id", 0, p2),
		                 -EINVAL);
	}
}

/* ---- replay window ------------------------------------------------------------- */

static void
test_replay_window_unit(void **state)
{
	struct firn_proto_replay r;

	firn_proto_replay_init(&r);
	assert_int_equal(firn_proto_replay_check(&r, 0), -EINVAL);
	assert_int_equal(firn_proto_replay_check(&r, FIRN_PROTO_PN_MAX), -EINVAL);
	assert_int_equal(firn_proto_replay_check(&r, 1), 0);
	firn_proto_replay_commit(&r, 1);
	assert_int_equal(firn_proto_replay_check(&r, 1), -EALREADY);
	/* Jump ahead; everything skipped is still acceptable, once. */
	firn_proto_replay_commit(&r, 100);
	for (uint64_t p = 2; p < 100; p++)
		assert_int_equal(firn_proto_replay_check(&r, p), 0);
	firn_proto_replay_commit(&r, 50);
	assert_int_equal(firn_proto_replay_check(&r, 50), -EALREADY);
	/* Exactly 1024 numbers are remembered: top-1023 .. top. */
	firn_proto_replay_commit(&r, 100 + 1023);
	assert_int_equal(firn_proto_replay_check(&r, 100), -EALREADY);
	assert_int_equal(firn_proto_replay_check(&r, 99), -ESTALE);
	assert_int_equal(firn_proto_replay_check(&r, 101), 0);
	firn_proto_replay_commit(&r, 100 + 1024);
	assert_int_equal(firn_proto_replay_check(&r, 100), -ESTALE);
	assert_int_equal(firn_proto_replay_check(&r, 101), 0);
	/* A huge jump clears the whole ring: old bits must not alias into new numbers. */
	firn_proto_replay_commit(&r, 1000000);
	for (uint64_t p = 1000000 - 1023; p < 1000000; p++)
		assert_int_equal(firn_proto_replay_check(&r, p), 0);
	/* Random order against a reference set. */
	{
		static uint8_t seen[4096];
		struct firn_proto_replay w;
		uint64_t top = 0;

		memset(seen, 0, sizeof(seen));
		firn_proto_replay_init(&w);
		for (int i = 0; i < 20000; i++) {
			uint64_t p = 1 + test_below(4000);
			int want, got = firn_proto_replay_check(&w, p);

			if (top >= p && top - p >= FIRN_PROTO_REPLAY_BITS)
				want = -ESTALE;
			else
				want = seen[p] ? -EALREADY : 0;
			assert_int_equal(got, want);
			if (got == 0) {
				firn_proto_replay_commit(&w, p);
				seen[p] = 1;
				top = FIRN_MAX(top, p);
			}
		}
	}
}

/* Client -> server DATA datagram number pn (forced), with one PING frame. */
static size_t
client_dgram(struct test_pair *tp, uint8_t *out)
{
	struct firn_proto_enc e;
	int n;

	assert_int_equal(firn_proto_client_enc_begin(tp->cli, &e, out, FIRN_PROTO_DGRAM_MAX, 0), 0);
	firn_proto_enc_ping(&e);
	n = firn_proto_client_seal(tp->cli, &e);
	assert_true(n > 0);
	return (size_t)n;
}

static void
test_replay_session(void **state)
{
	struct test_pair tp;
	static uint8_t d[1100][64];
	size_t len[1100];
	struct firn_proto_session *ss;
	uint8_t *plain;
	const struct firn_proto_stats *st;

	test_pair_open(&tp, NULL, 1472);
	st = firn_proto_server_stats(tp.srv);
	for (int i = 0; i < 1100; i++) {
		uint8_t tmp[FIRN_PROTO_DGRAM_MAX];

		len[i] = client_dgram(&tp, tmp);
		assert_true(len[i] <= 64);
		memcpy(d[i], tmp, len[i]);
	}
	/* Deliver 0..9 in reverse order: each accepted once. */
	for (int i = 9; i >= 0; i--) {
		memcpy(pkt, d[i], len[i]);
		assert_true(firn_proto_server_open(tp.srv, &tp.addr, pkt, len[i], tp.now, &ss,
		                                   &plain) >= 0);
		assert_ptr_equal(ss, tp.ss);
	}
	/* The same datagram again: refused without decryption. */
	for (int i = 0; i < 10; i++) {
		memcpy(pkt, d[i], len[i]);
		assert_int_equal(
		        firn_proto_server_open(tp.srv, &tp.addr, pkt, len[i], tp.now, &ss, &plain),
		        -EALREADY);
	}
	assert_int_equal(st->replayed, 10);
	assert_int_equal(st->aead_failed, 0);
	/* Skip ahead past the window: 10..19 were never seen but are now too old. */
	memcpy(pkt, d[1099], len[1099]);
	assert_true(firn_proto_server_open(tp.srv, &tp.addr, pkt, len[1099], tp.now, &ss, &plain) >=
	            0);
	memcpy(pkt, d[10], len[10]);
	assert_int_equal(
	        firn_proto_server_open(tp.srv, &tp.addr, pkt, len[10], tp.now, &ss, &plain),
	        -ESTALE);
	/* Inside the window, never seen: accepted once. */
	memcpy(pkt, d[500], len[500]);
	assert_true(firn_proto_server_open(tp.srv, &tp.addr, pkt, len[500], tp.now, &ss, &plain) >=
	            0);
	memcpy(pkt, d[500], len[500]);
	assert_int_equal(
	        firn_proto_server_open(tp.srv, &tp.addr, pkt, len[500], tp.now, &ss, &plain),
	        -EALREADY);
	/* A forged datagram (bit flip) is refused and does not poison the window. */
	memcpy(pkt, d[600], len[600]);
	pkt[len[600] - 1] ^= 1;
	assert_int_equal(
	        firn_proto_server_open(tp.srv, &tp.addr, pkt, len[600], tp.now, &ss, &plain),
	        -EBADMSG);
	assert_int_equal(st->aead_failed, 1);
	memcpy(pkt, d[600], len[600]);
	assert_true(firn_proto_server_open(tp.srv, &tp.addr, pkt, len[600], tp.now, &ss, &plain) >=
	            0);
	/* A datagram for a session id that does not exist. */
	memcpy(pkt, d[700], len[700]);
	pkt[12] ^= 0x40;
	assert_int_equal(
	        firn_proto_server_open(tp.srv, &tp.addr, pkt, len[700], tp.now, &ss, &plain),
	        -ENOENT);
	assert_int_equal(st->unknown_session, 1);
	test_pair_close(&tp);
}

/* The server's datagrams to the client: replay-checked the same way. */
static void
test_replay_client(void **state)
{
	struct test_pair tp;
	uint8_t a[FIRN_PROTO_DGRAM_MAX], b[FIRN_PROTO_DGRAM_MAX];
	uint8_t *plain;
	uint64_t pn;
	int n;

	test_pair_open(&tp, NULL, 1472);
	n = firn_proto_session_flush(tp.srv, tp.ss, tp.now, true, a, sizeof(a));
	assert_true(n > 0);
	memcpy(b, a, (size_t)n);
	assert_true(firn_proto_client_open(tp.cli, a, (size_t)n, &plain, &pn) >= 0);
	assert_true(pn == 2); /* the ACCEPT was 1 */
	assert_int_equal(firn_proto_client_open(tp.cli, b, (size_t)n, &plain, &pn), -EALREADY);
	test_pair_close(&tp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_aead_oracle),    cmocka_unit_test(test_aead_tamper),
	        cmocka_unit_test(test_keys),           cmocka_unit_test(test_replay_window_unit),
	        cmocka_unit_test(test_replay_session), cmocka_unit_test(test_replay_client),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
