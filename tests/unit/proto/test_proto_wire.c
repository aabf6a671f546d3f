/*
 * test_proto_wire.c - the bytes on the wire: header, frames, batches, acks.
 *
 * Round trips for every frame type. Every strict prefix of a valid header
 * or frame is rejected (not read past, never half-accepted). The batch
 * encoder fills 1472- and 9000-MTU datagrams exactly to the computed record
 * count and hands back pointers into the datagram. RECEIVED ack ranges are
 * checked against the replay window they were built from, bit by bit, for
 * random loss patterns and for more than 64 gaps.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_proto.h"
#include "proto_internal.h"
#include "proto_test.h"

static uint8_t buf[FIRN_PROTO_DGRAM_MAX + 64];

/* ---- header ------------------------------------------------------------- */

static void
test_hdr_roundtrip(void **state)
{
	static const uint8_t types[] = {FIRN_PROTO_HELLO,  FIRN_PROTO_RETRY,  FIRN_PROTO_INIT,
	                                FIRN_PROTO_ACCEPT, FIRN_PROTO_REJECT, FIRN_PROTO_RESET,
	                                FIRN_PROTO_DATA};

	for (unsigned i = 0; i < FIRN_ARRAY_SIZE(types); i++) {
		bool sealed = types[i] == FIRN_PROTO_ACCEPT || types[i] == FIRN_PROTO_DATA;
		bool sid = sealed || types[i] == FIRN_PROTO_RESET;
		struct firn_proto_hdr h = {
		        FIRN_PROTO_VERSION, types[i], sealed ? FIRN_PROTO_F_ACK_NOW : 0,
		        sid ? 0x0102030405060708ull : 0, sealed ? 0x00aabbccddeeff11ull : 0};
		struct firn_proto_hdr g;

		memset(buf, 0, sizeof(buf));
		assert_int_equal(firn_proto_hdr_encode(&h, buf, sizeof(buf)), FIRN_PROTO_HDR_LEN);
		assert_memory_equal(buf, "FIRN", 4);
		/* Every type has a minimum length; a 1200-byte datagram meets them all. */
		assert_int_equal(firn_proto_hdr_decode(buf, FIRN_PROTO_HELLO_MIN, &g), 0);
		assert_int_equal(g.type, h.type);
		assert_int_equal(g.flags, h.flags);
		assert_true(g.session_id == h.session_id);
		assert_true(g.pn == h.pn);
		/* Little-endian on the wire. */
		if (sid)
			assert_int_equal(buf[8], 0x08);
	}
	assert_int_equal(firn_proto_hdr_encode(&(struct firn_proto_hdr){0}, buf, 23), -ENOSPC);
}

static void
test_hdr_rejects(void **state)
{
	struct firn_proto_hdr h = {FIRN_PROTO_VERSION, FIRN_PROTO_DATA, 0, 77, 5}, g;
	size_t len = FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN;

	firn_proto_hdr_encode(&h, buf, sizeof(buf));
	assert_int_equal(firn_proto_hdr_decode(buf, len, &g), 0);
	/* Every truncation of a minimal DATA datagram. */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(firn_proto_hdr_decode(buf, n, &g), -EBADMSG);
	/* Magic, each byte. */
	for (int i = 0; i < 4; i++) {
		buf[i] ^= 0x20;
		assert_int_equal(firn_proto_hdr_decode(buf, len, &g), -EBADMSG);
		buf[i] ^= 0x20;
	}
	buf[4] = 2;
	assert_int_equal(firn_proto_hdr_decode(buf, len, &g), -EPROTONOSUPPORT);
	assert_int_equal(g.version, 2);
	buf[4] = FIRN_PROTO_VERSION;
	/* Unknown types. */
	for (unsigned t = 0; t < 256; t++) {
		bool known = (t >= 1 && t <= 6) || t == 0x10;

		buf[5] = (uint8_t)t;
		if (!known)
			assert_int_equal(firn_proto_hdr_decode(buf, FIRN_PROTO_HELLO_MIN, &g),
			                 -EBADMSG);
	}
	buf[5] = FIRN_PROTO_DATA;
	/* Reserved flags. */
	for (int bit = 1; bit < 16; bit++) {
		buf[6 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(firn_proto_hdr_decode(buf, len, &g), -EBADMSG);
		buf[6 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	/* Sealed needs pn >= 1 and a session; cleartext needs pn 0. */
	h.pn = 0;
	firn_proto_hdr_encode(&h, buf, sizeof(buf));
	assert_int_equal(firn_proto_hdr_decode(buf, len, &g), -EBADMSG);
	h.pn = FIRN_PROTO_PN_MAX;
	firn_proto_hdr_encode(&h, buf, sizeof(buf));
	assert_int_equal(firn_proto_hdr_decode(buf, len, &g), -EBADMSG);
	h.pn = 1;
	h.session_id = 0;
	firn_proto_hdr_encode(&h, buf, sizeof(buf));
	assert_int_equal(firn_proto_hdr_decode(buf, len, &g), -EBADMSG);
	h = (struct firn_proto_hdr){FIRN_PROTO_VERSION, FIRN_PROTO_HELLO, 0, 0, 1};
	firn_proto_hdr_encode(&h, buf, sizeof(buf));
	assert_int_equal(firn_proto_hdr_decode(buf, FIRN_PROTO_HELLO_MIN, &g), -EBADMSG);
	h.pn = 0;
	firn_proto_hdr_encode(&h, buf, sizeof(buf));
	assert_int_equal(firn_proto_hdr_decode(buf, FIRN_PROTO_HELLO_MIN, &g), 0);
	/* A short HELLO would allow amplification: refused. */
	assert_int_equal(firn_proto_hdr_decode(buf, FIRN_PROTO_HELLO_MIN - 1, &g), -EBADMSG);
}

static void
test_mtu(void **state)
{
	assert_int_equal(firn_proto_dgram_for_mtu(1500, false), 1472);
	assert_int_equal(firn_proto_dgram_for_mtu(9000, false), 8972);
	assert_int_equal(firn_proto_dgram_for_mtu(1500, true), 1452);
	assert_int_equal(firn_proto_dgram_for_mtu(576, false), FIRN_PROTO_DGRAM_MIN);
	assert_int_equal(firn_proto_dgram_for_mtu(65535, false), FIRN_PROTO_DGRAM_MAX);
}

/* ---- frames ---------------------------------------------------------------- */

static void
rec_make(struct firn_proto_rec *r, uint64_t seq, const uint8_t *key, uint16_t kl,
         const uint8_t *data, uint32_t len)
{
	memset(r, 0, sizeof(*r));
	r->seq = seq;
	r->key = key;
	r->key_len = kl;
	r->data = data;
	r->len = len;
}

/* Decode one frame from [p, p+n); expect exactly one frame filling it. */
static void
decode_one(const uint8_t *p, size_t n, bool from_client, struct firn_proto_frame *f)
{
	struct firn_proto_dec d;

	firn_proto_dec_init(&d, p, n, from_client);
	assert_int_equal(firn_proto_dec_next(&d, f), 1);
	assert_ptr_equal(d.p, p + n);
}

/* Every strict prefix (1..n-1 bytes) of a single frame must be rejected. */
static void
assert_prefixes_rejected(const uint8_t *p, size_t n, bool from_client)
{
	static uint8_t tmp[FIRN_PROTO_DGRAM_MAX];
	struct firn_proto_frame f;
	struct firn_proto_dec d;

	for (size_t k = 1; k < n; k++) {
		/* A private copy of exactly k bytes, so a read past it would be a real overrun. */
		uint8_t *q = tmp + sizeof(tmp) - k;

		memcpy(q, p, k);
		firn_proto_dec_init(&d, q, k, from_client);
		assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	}
	firn_proto_dec_init(&d, p, 0, from_client);
	assert_int_equal(firn_proto_dec_next(&d, &f), 0);
}

static void
test_frames_roundtrip_and_truncation(void **state)
{
	uint8_t key[] = "user-42", data[300], hash[16];
	struct firn_proto_rec r;
	struct firn_proto_frame f;
	struct firn_proto_enc e;
	struct firn_proto_durable d;
	struct firn_proto_addr ra;
	uint32_t off = 0;
	const uint8_t *pt;
	size_t n;

	test_fill(data, sizeof(data));
	test_fill(hash, sizeof(hash));
	test_addr(&ra, 9, 7401);

	/* STREAM + RECORD with a partition key. */
	firn_proto_enc_begin(&e, buf, 1472, 1, 1, 0);
	rec_make(&r, 77, key, 7, data, 100);
	r.stream_ref = 3;
	assert_int_equal(firn_proto_enc_record(&e, &r, "clicks", 6, &off), 1);
	pt = buf + FIRN_PROTO_HDR_LEN;
	n = 4 + 6;
	decode_one(pt, n, true, &f);
	assert_int_equal(f.type, FIRN_PROTO_FR_STREAM);
	assert_int_equal(f.stream.ref, 3);
	assert_int_equal(f.stream.len, 6);
	assert_memory_equal(f.stream.name, "clicks", 6);
	assert_prefixes_rejected(pt, n, true);
	pt += n;
	n = FIRN_PROTO_RECORD_HDR + 7 + 100;
	assert_int_equal(e.len, FIRN_PROTO_HDR_LEN + 10 + n);
	decode_one(pt, n, true, &f);
	assert_int_equal(f.type, FIRN_PROTO_FR_RECORD);
	assert_true(f.rec.seq == 77);
	assert_int_equal(f.rec.stream_ref, 3);
	assert_int_equal(f.rec.key_len, 7);
	assert_false(f.rec.hash);
	assert_memory_equal(f.rec.key, key, 7);
	assert_int_equal(f.rec.len, 100);
	assert_memory_equal(f.rec.data, data, 100);
	/* Zero copy: the record points into the datagram. */
	assert_ptr_equal(f.rec.data, pt + FIRN_PROTO_RECORD_HDR + 7);
	assert_prefixes_rejected(pt, n, true);
	/* The same frame is not acceptable from a server. */
	{
		struct firn_proto_dec dd;

		firn_proto_dec_init(&dd, pt, n, false);
		assert_int_equal(firn_proto_dec_next(&dd, &f), -EBADMSG);
	}

	/* RECORD with an explicit hash key and empty data; bound ref is not repeated. */
	firn_proto_enc_begin(&e, buf, 1472, 1, 2, 0);
	off = 0;
	rec_make(&r, 78, hash, 16, NULL, 0);
	r.hash = true;
	assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), 1);
	pt = buf + FIRN_PROTO_HDR_LEN;
	n = FIRN_PROTO_RECORD_HDR + 16;
	decode_one(pt, n, true, &f);
	assert_true(f.rec.hash);
	assert_int_equal(f.rec.key_len, 16);
	assert_int_equal(f.rec.len, 0);
	assert_prefixes_rejected(pt, n, true);

	/* FRAGMENT at offset 0 (with key) and a later one (without). */
	{
		static uint8_t big[5000];
		struct firn_proto_rec r2;

		test_fill(big, sizeof(big));
		rec_make(&r2, 79, key, 7, big, sizeof(big));
		firn_proto_enc_begin(&e, buf, 1472, 1, 3, 0);
		assert_int_equal(firn_proto_enc_fragment(&e, &r2, NULL, 0, 0, 1000), 1000);
		pt = buf + FIRN_PROTO_HDR_LEN;
		n = FIRN_PROTO_FRAGMENT_HDR + 7 + 1000;
		decode_one(pt, n, true, &f);
		assert_int_equal(f.type, FIRN_PROTO_FR_FRAGMENT);
		assert_true(f.rec.fragment);
		assert_int_equal(f.rec.total_len, 5000);
		assert_int_equal(f.rec.off, 0);
		assert_int_equal(f.rec.len, 1000);
		assert_int_equal(f.rec.key_len, 7);
		assert_memory_equal(f.rec.data, big, 1000);
		assert_prefixes_rejected(pt, n, true);
		firn_proto_enc_begin(&e, buf, 1472, 1, 4, 0);
		assert_int_equal(firn_proto_enc_fragment(&e, &r2, NULL, 0, 4000, 1000), 1000);
		n = FIRN_PROTO_FRAGMENT_HDR + 1000;
		decode_one(pt, n, true, &f);
		assert_int_equal(f.rec.off, 4000);
		assert_int_equal(f.rec.key_len, 0);
		assert_null(f.rec.key);
		assert_memory_equal(f.rec.data, big + 4000, 1000);
		assert_prefixes_rejected(pt, n, true);
		/* A piece past the record's end is refused by the encoder. */
		assert_int_equal(firn_proto_enc_fragment(&e, &r2, NULL, 0, 4500, 1000), -EINVAL);
	}

	/* Server frames: ACK_RECEIVED, ACK_DURABLE, CREDIT, PING, CLOSE, ERROR. */
	{
		struct firn_proto_replay rw;
		struct firn_proto_range rg[4];

		firn_proto_replay_init(&rw);
		for (uint64_t p = 1; p <= 10; p++)
			if (p != 4 && p != 7)
				firn_proto_replay_commit(&rw, p);
		firn_proto_enc_begin(&e, buf, 1472, 1, 5, 0);
		assert_int_equal(firn_proto_enc_ack_received(&e, &rw, 123), 1);
		pt = buf + FIRN_PROTO_HDR_LEN;
		n = e.len - FIRN_PROTO_HDR_LEN;
		decode_one(pt, n, false, &f);
		assert_int_equal(f.type, FIRN_PROTO_FR_ACK_RECEIVED);
		assert_int_equal(f.ack.delay_us, 123);
		assert_true(f.ack.cum == 3);
		assert_int_equal(firn_proto_ack_ranges(&f, rg, 4), 2);
		assert_true(rg[0].lo == 5 && rg[0].hi == 6);
		assert_true(rg[1].lo == 8 && rg[1].hi == 10);
		assert_prefixes_rejected(pt, n, false);
	}
	firn_proto_enc_begin(&e, buf, 1472, 1, 6, 0);
	d = (struct firn_proto_durable){.seq = 10, .counter = 500, .shard = 2, .count = 1};
	assert_int_equal(firn_proto_enc_durable(&e, &d), 1);
	pt = buf + FIRN_PROTO_HDR_LEN;
	n = e.len - FIRN_PROTO_HDR_LEN;
	decode_one(pt, n, false, &f);
	assert_int_equal(f.type, FIRN_PROTO_FR_ACK_DURABLE);
	assert_int_equal(f.durable.n, 1);
	assert_prefixes_rejected(pt, n, false);

	firn_proto_enc_begin(&e, buf, 1472, 1, 7, 0);
	assert_int_equal(firn_proto_enc_credit(&e, 123456, 4u << 20), 1);
	pt = buf + FIRN_PROTO_HDR_LEN;
	n = e.len - FIRN_PROTO_HDR_LEN;
	decode_one(pt, n, false, &f);
	assert_true(f.credit.max_seq == 123456);
	assert_int_equal(f.credit.window, 4u << 20);
	assert_prefixes_rejected(pt, n, false);

	firn_proto_enc_begin(&e, buf, 1472, 1, 8, 0);
	assert_int_equal(firn_proto_enc_close(&e, FIRN_PROTO_E_CLOSED), 1);
	pt = buf + FIRN_PROTO_HDR_LEN;
	n = e.len - FIRN_PROTO_HDR_LEN;
	decode_one(pt, n, false, &f);
	assert_int_equal(f.close.code, FIRN_PROTO_E_CLOSED);
	decode_one(pt, n, true, &f); /* CLOSE goes both ways */
	assert_prefixes_rejected(pt, n, false);

	firn_proto_enc_begin(&e, buf, 1472, 1, 9, 0);
	assert_int_equal(firn_proto_enc_error(&e, FIRN_PROTO_E_REDIRECT, &ra, "go to node 3"), 1);
	pt = buf + FIRN_PROTO_HDR_LEN;
	n = e.len - FIRN_PROTO_HDR_LEN;
	decode_one(pt, n, false, &f);
	assert_int_equal(f.error.code, FIRN_PROTO_E_REDIRECT);
	assert_memory_equal(f.error.redirect.ip, ra.ip, 16);
	assert_int_equal(f.error.redirect.port, 7401);
	assert_int_equal(f.error.msg_len, 12);
	assert_memory_equal(f.error.msg, "go to node 3", 12);
	assert_prefixes_rejected(pt, n, false);

	firn_proto_enc_begin(&e, buf, 1472, 1, 10, 0);
	assert_int_equal(firn_proto_enc_ping(&e), 1);
	decode_one(buf + FIRN_PROTO_HDR_LEN, 1, true, &f);
	assert_int_equal(f.type, FIRN_PROTO_FR_PING);
}

static void
test_frames_reject_bad_fields(void **state)
{
	uint8_t p[64] = {0};
	struct firn_proto_frame f;
	struct firn_proto_dec d;

	/* Unknown frame types. */
	for (unsigned t = 0; t < 256; t++) {
		bool known = t == 0x00 || t == 0x01 || t == 0x02 || t == 0x03 || t == 0x10 ||
		             t == 0x11 || t == 0x12 || t == 0x20 || t == 0x21 || t == 0x22;

		if (known)
			continue;
		p[0] = (uint8_t)t;
		firn_proto_dec_init(&d, p, sizeof(p), true);
		assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
		firn_proto_dec_init(&d, p, sizeof(p), false);
		assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	}
	/* RECORD: seq 0, empty key, hash with key_len != 16, unknown flag. */
	memset(p, 0, sizeof(p));
	p[0] = FIRN_PROTO_FR_RECORD;
	p[4] = 4;  /* key_len */
	p[10] = 0; /* seq 0 */
	firn_proto_dec_init(&d, p, 40, true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[10] = 1;
	firn_proto_dec_init(&d, p, 40, true);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	p[1] = FIRN_PROTO_RF_HASH;
	firn_proto_dec_init(&d, p, 40, true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[1] = 0x02;
	firn_proto_dec_init(&d, p, 40, true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[1] = 0;
	p[4] = 0;
	firn_proto_dec_init(&d, p, 40, true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	/* A data length that runs past the end (and one that would wrap 32 bits). */
	p[4] = 4;
	p[6] = 0xff;
	p[7] = 0xff;
	p[8] = 0xff;
	p[9] = 0xff;
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);

	/* FRAGMENT: piece beyond total, key in a non-first piece, zero-length piece. */
	memset(p, 0, sizeof(p));
	p[0] = FIRN_PROTO_FR_FRAGMENT;
	p[6] = 100; /* total_len */
	p[10] = 1;  /* seq */
	p[18] = 90; /* off */
	p[22] = 20; /* frag_len: 90 + 20 > 100 */
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[22] = 10;
	p[4] = 1; /* key_len at off != 0 */
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[4] = 0;
	firn_proto_dec_init(&d, p, FIRN_PROTO_FRAGMENT_HDR + 10, true);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	p[22] = 0;
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	/* off + len overflowing 32 bits. */
	p[18] = 0xff;
	p[19] = 0xff;
	p[20] = 0xff;
	p[21] = 0xff;
	p[22] = 2;
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);

	/* STREAM with an empty or too long name. */
	memset(p, 0, sizeof(p));
	p[0] = FIRN_PROTO_FR_STREAM;
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[3] = FIRN_PROTO_STREAM_NAME_MAX + 1;
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);

	/* ACK_RECEIVED: zero gap, zero length, too many ranges, overflowing ranges. */
	memset(p, 0, sizeof(p));
	p[0] = FIRN_PROTO_FR_ACK_RECEIVED;
	p[1] = 1;
	p[12] = 0; /* gap 0 */
	p[16] = 1;
	firn_proto_dec_init(&d, p, 20, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[12] = 1;
	p[16] = 0; /* len 0 */
	firn_proto_dec_init(&d, p, 20, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[16] = 1;
	firn_proto_dec_init(&d, p, 20, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	p[1] = FIRN_PROTO_ACK_RANGES_MAX + 1;
	firn_proto_dec_init(&d, p, sizeof(p), false);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[1] = 1;
	memset(p + 4, 0xff, 7); /* cum near 2^56, fine, but then ... */
	p[11] = 0x3f;           /* cum just below 2^62 */
	firn_proto_dec_init(&d, p, 20, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);

	/* ACK_DURABLE with no entries, or an entry with count 0 or seq 0. */
	memset(p, 0, sizeof(p));
	p[0] = FIRN_PROTO_FR_ACK_DURABLE;
	firn_proto_dec_init(&d, p, sizeof(p), false);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[2] = 1;
	p[4] = 1; /* seq 1, count 0 */
	firn_proto_dec_init(&d, p, 28, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), -EBADMSG);
	p[24] = 1;
	firn_proto_dec_init(&d, p, 28, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);

	/* PADDING ends the datagram: anything after it is ignored. */
	memset(p, 0xee, sizeof(p));
	p[0] = FIRN_PROTO_FR_PING;
	p[1] = FIRN_PROTO_FR_PADDING;
	firn_proto_dec_init(&d, p, sizeof(p), true);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(firn_proto_dec_next(&d, &f), 0);
	assert_int_equal(firn_proto_dec_next(&d, &f), 0);
}

/* ---- batches ----------------------------------------------------------------- */

/*
 * Pack 100-byte records with 16-byte keys until the datagram is full: the
 * count must be exactly what the layout says fits, and every record must
 * come back intact and in order.
 */
static void
batch_mtu(unsigned mtu)
{
	uint16_t dg = firn_proto_dgram_for_mtu(mtu, false);
	size_t per = FIRN_PROTO_RECORD_HDR + 16 + 100;
	size_t room = dg - FIRN_PROTO_HDR_LEN - FIRN_PROTO_TAG_LEN;
	unsigned want = (unsigned)((room - (4 + 6)) / per), got = 0, i;
	static uint8_t data[2000][100];
	uint8_t keys[2000][16];
	struct firn_proto_enc e;
	struct firn_proto_dec d;
	struct firn_proto_frame f;
	struct firn_proto_rec r;
	int rc;

	firn_proto_enc_begin(&e, buf, dg, 9, 1, 0);
	for (i = 0;; i++) {
		uint32_t off = 0;

		assert_true(i < 2000);
		test_fill(data[i], 100);
		for (int k = 0; k < 16; k++)
			keys[i][k] = (uint8_t)('a' + test_below(26));
		rec_make(&r, 1000 + i, keys[i], 16, data[i], 100);
		rc = firn_proto_enc_record(&e, &r, "orders", 6, &off);
		if (rc == 0)
			break;
		assert_int_equal(rc, 1);
	}
	assert_int_equal(i, want);
	assert_int_equal(e.records, want);
	assert_true(e.len + FIRN_PROTO_TAG_LEN <= dg);
	/* Full: less than one more record of room left. */
	assert_true(firn_proto_enc_room(&e) < per);
	firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN, true);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(f.type, FIRN_PROTO_FR_STREAM);
	while ((rc = firn_proto_dec_next(&d, &f)) == 1) {
		assert_int_equal(f.type, FIRN_PROTO_FR_RECORD);
		assert_true(f.rec.seq == 1000 + got);
		assert_memory_equal(f.rec.key, keys[got], 16);
		assert_memory_equal(f.rec.data, data[got], 100);
		assert_true(f.rec.data > buf && f.rec.data < buf + e.len);
		got++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(got, want);
	fprintf(stderr, "# mtu %u: %u records of 100 B per %u-byte datagram\n", mtu, got, dg);
}

static void
test_batch_mtu_1500(void **state)
{
	batch_mtu(1500);
}

static void
test_batch_mtu_9000(void **state)
{
	batch_mtu(9000);
}

/* A record exactly the size of an empty datagram goes whole; one byte more is fragmented. */
static void
test_batch_exact_fit(void **state)
{
	static uint8_t data[FIRN_PROTO_DGRAM_MAX];
	const unsigned dgs[] = {1472, 8972};

	for (unsigned k = 0; k < 2; k++) {
		unsigned dg = dgs[k];
		uint32_t fit =
		        dg - FIRN_PROTO_HDR_LEN - FIRN_PROTO_TAG_LEN - FIRN_PROTO_RECORD_HDR - 1;
		struct firn_proto_enc e;
		struct firn_proto_dec d;
		struct firn_proto_frame f;
		struct firn_proto_rec r;
		uint32_t off = 0;

		rec_make(&r, 5, (const uint8_t *)"k", 1, data, fit);
		firn_proto_enc_begin(&e, buf, dg, 9, 1, 0);
		assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), 1);
		assert_int_equal(e.len + FIRN_PROTO_TAG_LEN, dg);
		assert_int_equal(firn_proto_enc_room(&e), 0);
		firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN, true);
		assert_int_equal(firn_proto_dec_next(&d, &f), 1);
		assert_int_equal(f.type, FIRN_PROTO_FR_RECORD);
		assert_int_equal(f.rec.len, fit);

		/* One byte more: two fragments. */
		rec_make(&r, 6, (const uint8_t *)"k", 1, data, fit + 1);
		off = 0;
		firn_proto_enc_begin(&e, buf, dg, 9, 2, 0);
		assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), 0);
		assert_true(off > 0 && off < fit + 1);
		firn_proto_enc_begin(&e, buf, dg, 9, 3, 0);
		assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), 1);
		assert_int_equal(off, fit + 1);
	}
}

/* A record that does not fit the rest of a datagram waits for the next one (no tiny pieces). */
static void
test_batch_no_tiny_fragment(void **state)
{
	static uint8_t data[5000];
	struct firn_proto_enc e;
	struct firn_proto_rec r;
	uint32_t off = 0;
	size_t room;

	firn_proto_enc_begin(&e, buf, 1472, 9, 1, 0);
	rec_make(&r, 1, (const uint8_t *)"k", 1, data, 1300);
	assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), 1);
	room = firn_proto_enc_room(&e);
	assert_true(room < 200);
	/* A fitting-in-empty record that does not fit the rest: 0, nothing written. */
	rec_make(&r, 2, (const uint8_t *)"k", 1, data, 500);
	off = 0;
	assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(firn_proto_enc_room(&e), room);
	/* A big record: not started with a sliver either. */
	rec_make(&r, 3, (const uint8_t *)"k", 1, data, 5000);
	assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), 0);
	assert_int_equal(off, 0);
	/* Invalid records are refused with reasons. */
	rec_make(&r, 0, (const uint8_t *)"k", 1, data, 10);
	assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), -EINVAL);
	rec_make(&r, 1, (const uint8_t *)"\xff", 1, data, 10);
	assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), -EINVAL);
	rec_make(&r, 1, (const uint8_t *)"k", 1, data, FIRN_RECORD_DATA_MAX + 1);
	assert_int_equal(firn_proto_enc_record(&e, &r, NULL, 0, &off), -E2BIG);
}

/* A 1 MiB record streams across datagrams and decodes back to the same bytes. */
static void
test_batch_1mib_fragments(void **state)
{
	static uint8_t data[FIRN_RECORD_DATA_MAX], back[FIRN_RECORD_DATA_MAX];
	static uint8_t cover[FIRN_RECORD_DATA_MAX];
	const unsigned dgs[] = {1472, 8972};

	test_fill(data, sizeof(data));
	for (unsigned k = 0; k < 2; k++) {
		struct firn_proto_rec r;
		uint32_t off = 0;
		unsigned dgrams = 0;
		int rc;

		memset(back, 0, sizeof(back));
		memset(cover, 0, sizeof(cover));
		rec_make(&r, 42, (const uint8_t *)"big", 3, data, sizeof(data));
		r.stream_ref = 1;
		do {
			struct firn_proto_enc e;
			struct firn_proto_dec d;
			struct firn_proto_frame f;

			firn_proto_enc_begin(&e, buf, dgs[k], 9, dgrams + 1, 0);
			rc = firn_proto_enc_record(&e, &r, "blobs", 5, &off);
			assert_true(rc >= 0);
			assert_true(e.len + FIRN_PROTO_TAG_LEN <= dgs[k]);
			dgrams++;
			firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN,
			                    e.len - FIRN_PROTO_HDR_LEN, true);
			assert_int_equal(firn_proto_dec_next(&d, &f), 1);
			assert_int_equal(f.type, FIRN_PROTO_FR_STREAM); /* every datagram binds */
			assert_int_equal(firn_proto_dec_next(&d, &f), 1);
			assert_int_equal(f.type, FIRN_PROTO_FR_FRAGMENT);
			assert_int_equal(f.rec.total_len, sizeof(data));
			assert_int_equal(f.rec.key_len, f.rec.off == 0 ? 3 : 0);
			memcpy(back + f.rec.off, f.rec.data, f.rec.len);
			memset(cover + f.rec.off, 1, f.rec.len);
			assert_int_equal(firn_proto_dec_next(&d, &f), 0);
		} while (rc == 0);
		assert_int_equal(off, sizeof(data));
		assert_memory_equal(back, data, sizeof(data));
		assert_null(memchr(cover, 0, sizeof(cover)));
		fprintf(stderr, "# 1 MiB record: %u datagrams of %u bytes\n", dgrams, dgs[k]);
		/* Pieces are as large as the datagram allows. */
		assert_true(dgrams <= sizeof(data) / (dgs[k] - 100) + 1);
	}
}

/* ---- acks ---------------------------------------------------------------------- */

/* Decode an ACK_RECEIVED and check it against the window it came from. */
static void
check_ack(const struct firn_proto_replay *rw, unsigned max_ranges_expected)
{
	struct firn_proto_enc e;
	struct firn_proto_dec d;
	struct firn_proto_frame f;
	struct firn_proto_range rg[FIRN_PROTO_ACK_RANGES_MAX];
	unsigned n;
	uint64_t exact;
	bool folded = false;
	uint64_t floor_pn =
	        rw->top >= FIRN_PROTO_REPLAY_BITS ? rw->top - FIRN_PROTO_REPLAY_BITS + 1 : 1;

	firn_proto_enc_begin(&e, buf, 1472, 1, 1, 0);
	assert_int_equal(firn_proto_enc_ack_received(&e, rw, 0), 1);
	firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	n = firn_proto_ack_ranges(&f, rg, FIRN_PROTO_ACK_RANGES_MAX);
	assert_int_equal(n, f.ack.n);
	assert_true(n <= max_ranges_expected);
	/*
	 * cum is the run of received packets from the window's floor, unless
	 * more runs existed than fit: then the lowest are folded and cum sits
	 * just below the first range that was kept.
	 */
	exact = rw->top > 0 ? floor_pn - 1 : 0;
	while (exact < rw->top && firn_proto_replay_check(rw, exact + 1) == -EALREADY)
		exact++;
	if (f.ack.cum != exact) {
		assert_true(f.ack.cum > exact);
		assert_int_equal(n, max_ranges_expected);
		assert_true(f.ack.cum == rg[0].lo - 2);
		folded = true;
	}
	/* Each range is exactly received packets; the gaps between are missing ones. */
	for (unsigned i = 0; i < n; i++) {
		for (uint64_t p = rg[i].lo; p <= rg[i].hi; p++)
			assert_int_equal(firn_proto_replay_check(rw, p), -EALREADY);
		assert_int_equal(firn_proto_replay_check(rw, rg[i].lo - 1), 0);
		if (i + 1 < n)
			assert_int_equal(firn_proto_replay_check(rw, rg[i].hi + 1), 0);
	}
	if (rw->top > 0) {
		/* The newest packet is always reported. */
		assert_true(n > 0 ? rg[n - 1].hi == rw->top : f.ack.cum == rw->top);
	}
	if (!folded) {
		/* Nothing folded: every received packet above cum is in a range. */
		for (uint64_t p = f.ack.cum + 1; p <= rw->top; p++) {
			bool in = false;

			for (unsigned i = 0; i < n; i++)
				in |= p >= rg[i].lo && p <= rg[i].hi;
			assert_int_equal(in, firn_proto_replay_check(rw, p) == -EALREADY);
		}
	}
}

static void
test_ack_received_random(void **state)
{
	for (int round = 0; round < 200; round++) {
		struct firn_proto_replay rw;
		unsigned loss = test_below(40); /* percent */
		uint64_t top = 1 + test_below(3000);

		firn_proto_replay_init(&rw);
		for (uint64_t p = 1; p <= top; p++)
			if (test_below(100) >= loss || p == top)
				firn_proto_replay_commit(&rw, p);
		check_ack(&rw, FIRN_PROTO_ACK_RANGES_MAX);
	}
	{
		struct firn_proto_replay rw;

		firn_proto_replay_init(&rw);
		check_ack(&rw, 0); /* nothing received yet: cum 0, no ranges */
	}
}

/* More than 64 gaps: the 64 newest runs are sent and the rest folded into cum. */
static void
test_ack_received_fold(void **state)
{
	struct firn_proto_replay rw;
	struct firn_proto_enc e;
	struct firn_proto_dec d;
	struct firn_proto_frame f;
	struct firn_proto_range rg[FIRN_PROTO_ACK_RANGES_MAX];

	firn_proto_replay_init(&rw);
	for (uint64_t p = 2; p <= 400; p += 2) /* 200 runs of one */
		firn_proto_replay_commit(&rw, p);
	firn_proto_enc_begin(&e, buf, 1472, 1, 1, 0);
	assert_int_equal(firn_proto_enc_ack_received(&e, &rw, 0), 1);
	firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(f.ack.n, FIRN_PROTO_ACK_RANGES_MAX);
	assert_int_equal(firn_proto_ack_ranges(&f, rg, 64), 64);
	assert_true(rg[63].lo == 400 && rg[63].hi == 400);
	assert_true(rg[0].lo == 400 - 2 * 63);
	assert_true(f.ack.cum == rg[0].lo - 2);
	check_ack(&rw, FIRN_PROTO_ACK_RANGES_MAX);
	/* A small datagram gets fewer ranges, still the newest. */
	firn_proto_enc_begin(&e, buf, FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN + 12 + 8 * 3, 1, 1,
	                     0);
	assert_int_equal(firn_proto_enc_ack_received(&e, &rw, 0), 1);
	firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(firn_proto_ack_ranges(&f, rg, 64), 3);
	assert_true(rg[2].hi == 400 && rg[0].lo == 396);
}

static void
test_ack_durable_merge(void **state)
{
	struct firn_proto_enc e;
	struct firn_proto_dec d;
	struct firn_proto_frame f;
	struct firn_proto_durable x;

	firn_proto_enc_begin(&e, buf, 1472, 1, 1, 0);
	/* seq 10..14 -> shard 3 counters 100..104: one entry. */
	for (unsigned i = 0; i < 5; i++) {
		x = (struct firn_proto_durable){10 + i, 100 + i, 3, 1, 0, 0};
		assert_int_equal(firn_proto_enc_durable(&e, &x), 1);
	}
	/* seq 15 in another shard, 16 with a counter jump, 17..18 refused: new entries. */
	x = (struct firn_proto_durable){15, 7, 4, 1, 0, 0};
	firn_proto_enc_durable(&e, &x);
	x = (struct firn_proto_durable){16, 9, 4, 1, 0, 0};
	firn_proto_enc_durable(&e, &x);
	x = (struct firn_proto_durable){17, 0, 0, 1, FIRN_PROTO_E_UNKNOWN_STREAM, 0};
	firn_proto_enc_durable(&e, &x);
	x = (struct firn_proto_durable){18, 0, 0, 1, FIRN_PROTO_E_UNKNOWN_STREAM, 0};
	firn_proto_enc_durable(&e, &x);
	/* A duplicate answer does not merge with a fresh one. */
	x = (struct firn_proto_durable){
	        19, 0, 0, 1, FIRN_PROTO_E_UNKNOWN_STREAM, FIRN_PROTO_DF_DUPLICATE};
	firn_proto_enc_durable(&e, &x);
	firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(f.durable.n, 5);
	firn_proto_durable_get(&f, 0, &x);
	assert_true(x.seq == 10 && x.counter == 100 && x.shard == 3 && x.count == 5);
	firn_proto_durable_get(&f, 1, &x);
	assert_true(x.seq == 15 && x.counter == 7 && x.count == 1);
	firn_proto_durable_get(&f, 2, &x);
	assert_true(x.seq == 16 && x.counter == 9 && x.count == 1);
	firn_proto_durable_get(&f, 3, &x);
	assert_true(x.seq == 17 && x.count == 2 && x.status == FIRN_PROTO_E_UNKNOWN_STREAM);
	firn_proto_durable_get(&f, 4, &x);
	assert_true(x.seq == 19 && x.flags == FIRN_PROTO_DF_DUPLICATE);
	assert_int_equal(firn_proto_dec_next(&d, &f), 0);
	/* A frame between entries starts a new ACK_DURABLE frame. */
	firn_proto_enc_ping(&e);
	x = (struct firn_proto_durable){
	        20, 0, 0, 1, FIRN_PROTO_E_UNKNOWN_STREAM, FIRN_PROTO_DF_DUPLICATE};
	firn_proto_enc_durable(&e, &x);
	firn_proto_dec_init(&d, buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN, false);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(f.type, FIRN_PROTO_FR_PING);
	assert_int_equal(firn_proto_dec_next(&d, &f), 1);
	assert_int_equal(f.type, FIRN_PROTO_FR_ACK_DURABLE);
	assert_int_equal(f.durable.n, 1);
	/* Filling a datagram: entries stop at the room left, never past it. */
	firn_proto_enc_begin(&e, buf, 1472, 1, 1, 0);
	for (unsigned i = 0;; i++) {
		x = (struct firn_proto_durable){1 + 2 * i, 0, 0, 1, 0, 0};
		if (firn_proto_enc_durable(&e, &x) == 0) {
			assert_int_equal(i, (1472 - 40 - 4) / 24);
			break;
		}
	}
	assert_true(e.len + FIRN_PROTO_TAG_LEN <= 1472);
}

static void
test_hash_and_status(void **state)
{
	struct firn_u128 h = {0x0011223344556677ull, 0x8899aabbccddeeffull}, g;
	uint8_t b[16];

	firn_proto_hash_put(h, b);
	assert_int_equal(b[0], 0x00);
	assert_int_equal(b[15], 0xff);
	g = firn_proto_hash_get(b);
	assert_true(g.hi == h.hi && g.lo == h.lo);
	assert_string_equal(firn_proto_status_name(FIRN_PROTO_E_UNKNOWN_STREAM), "UNKNOWN_STREAM");
	assert_string_equal(firn_proto_status_name(FIRN_PROTO_E_REDIRECT), "REDIRECT");
	assert_string_equal(firn_proto_status_name(999), "?");
}

/*
 * proto_replay_first_gap (the word-at-a-time scan behind every RECEIVED ack's
 * cumulative point) against the bit-by-bit definition, over random windows
 * with gaps of every density, straddling word and ring boundaries.
 */
static void
test_replay_first_gap(void **state)
{
	(void)state;
	for (int it = 0; it < 300; it++) {
		struct firn_proto_replay rw;
		uint64_t top = 1 + test_below(5000), lo, hi, want;
		unsigned miss = test_below(4) == 0 ? 0 : 1 + test_below(60); /* % missing */

		firn_proto_replay_init(&rw);
		for (uint64_t p = top > 1500 ? top - 1500 : 1; p <= top; p++)
			if (p == top || test_below(100) >= miss)
				firn_proto_replay_commit(&rw, p);
		for (int k = 0; k < 20; k++) {
			uint64_t first = top >= FIRN_PROTO_REPLAY_BITS
			                         ? top - FIRN_PROTO_REPLAY_BITS + 1
			                         : 1;

			lo = first + test_below((uint32_t)(top - first + 1));
			hi = lo + test_below((uint32_t)(top - lo + 1));
			want = lo;
			while (want <= hi && firn_proto_replay_check(&rw, want) == -EALREADY)
				want++;
			assert_true(proto_replay_first_gap(&rw, lo, hi) == want);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_hdr_roundtrip),
	        cmocka_unit_test(test_replay_first_gap),
	        cmocka_unit_test(test_hdr_rejects),
	        cmocka_unit_test(test_mtu),
	        cmocka_unit_test(test_frames_roundtrip_and_truncation),
	        cmocka_unit_test(test_frames_reject_bad_fields),
	        cmocka_unit_test(test_batch_mtu_1500),
	        cmocka_unit_test(test_batch_mtu_9000),
	        cmocka_unit_test(test_batch_exact_fit),
	        cmocka_unit_test(test_batch_no_tiny_fragment),
	        cmocka_unit_test(test_batch_1mib_fragments),
	        cmocka_unit_test(test_ack_received_random),
	        cmocka_unit_test(test_ack_received_fold),
	        cmocka_unit_test(test_ack_durable_merge),
	        cmocka_unit_test(test_hash_and_status),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
