/*
 * proto_fuzz.c - fuzz the firn record protocol's parsers and RX path.
 *
 * Bytes from the network reach four places in lib/proto, and this harness
 * feeds all four. The first input byte picks the mode; the rest is a
 * sequence of chunks (u16 little-endian length, then that many bytes; a
 * short tail is one last chunk), each one a datagram:
 *
 *   0  raw datagrams to every entry point: the header decoder, the server's
 *      handshake and open, the client's handshake and open;
 *   1  client plaintexts: each chunk is sealed with a real session's client
 *      key and pushed through server open and the whole RX path (frames,
 *      stream bindings, dedupe, credit, reassembly, acks, flush). This is
 *      authenticated garbage, the worst a logged-in client can send;
 *   2  server plaintexts: sealed with the server key and decoded by the
 *      client (acks, ranges, durable entries, credit);
 *   3  handshake sequences: chunks go alternately to the server's and the
 *      client's handshake functions. The cookie secret and clock are fixed,
 *      so an INIT saved in a corpus stays valid.
 *
 * It must never crash, leak or read out of bounds. It also checks a few
 * invariants that would otherwise fail silently: reassembly and pool memory
 * return to zero, and credit never exceeds what was taken.
 *
 * Build with libFuzzer (clang):
 *	-DFIRN_LIBFUZZER -fsanitize=fuzzer,address,undefined
 * Without FIRN_LIBFUZZER, main() runs it over FIRN_FUZZ_ITERS (default
 * 20000) inputs from a fixed seed (FIRN_FUZZ_SEED): random bytes, and valid
 * inputs for each mode that are then mutated. That way gcc CI runs it as a
 * test, ideally under -Db_sanitize=address,undefined.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_common.h"
#include "firn_proto.h"
/* The harness seals mode-2 input with the session's own tx context, and checks the pool. */
#include "../../lib/proto/proto_internal.h"

#define FZ_KEY_ID "AKIDFUZZ"
#define FZ_SECRET "fuzz-secret-fuzz-secret"
#define FZ_NOW 5000000ull
#define FZ_MAX_CHUNKS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fz_cookie_secret[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
static uint8_t dg[FIRN_PROTO_DGRAM_MAX + 64], out[FIRN_PROTO_DGRAM_MAX + 64];
static volatile size_t fz_sink; /* bytes read from frames go here, so the reads happen */

struct fz {
	struct firn_proto_server *srv;
	struct firn_proto_client *cli;
	struct firn_proto_session *ss;
	struct firn_proto_addr addr;
	struct firn_proto_access_key key;
};

static void
fz_die(const char *what)
{
	fprintf(stderr, "proto_fuzz: %s: %s\n", what, firn_err_msg());
	abort();
}

static int
fz_resolve(void *arg, const char *name, size_t len, uint64_t *id)
{
	(void)arg;
	if (len > 0 && name[0] == 'x')
		return -ENOENT; /* some names do not exist */
	*id = len;
	return 0;
}

/* A small server and a client; with handshake, a live session between them. */
static void
fz_open(struct fz *f, bool handshake)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_client_conf cc = {
	        .key_id = FZ_KEY_ID,
	        .secret = (const uint8_t *)FZ_SECRET,
	        .secret_len = sizeof(FZ_SECRET) - 1,
	        .producer_id = 42,
	};
	const uint8_t ip[4] = {198, 18, 0, 1};
	int n, m;

	memset(f, 0, sizeof(*f));
	firn_proto_addr_v4(&f->addr, ip, 7400);
	f->key.id = FZ_KEY_ID;
	f->key.secret = (const uint8_t *)FZ_SECRET;
	f->key.secret_len = sizeof(FZ_SECRET) - 1;
	firn_proto_server_conf_defaults(&conf);
	conf.keys = &f->key;
	conf.n_keys = 1;
	conf.cookie_secret = fz_cookie_secret;
	conf.max_sessions = 2;
	conf.max_producers = 2;
	conf.dedupe_window = 64;
	conf.stream_refs = 8;
	conf.reasm_slots = 2;
	conf.reasm_session_bytes = 2u << 20;
	conf.reasm_pool_bytes = 2u << 20;
	conf.ack_queue = 8;
	conf.credit_records = 100;
	conf.credit_window = 1u << 20;
	conf.resolve = fz_resolve;
	f->srv = firn_proto_server_create(&conf);
	f->cli = firn_proto_client_create(&cc);
	if (f->srv == NULL || f->cli == NULL)
		fz_die("create");
	if (!handshake)
		return;
	n = firn_proto_client_start(f->cli, FZ_NOW, dg, sizeof(dg));
	m = firn_proto_server_handshake(f->srv, &f->addr, dg, (size_t)n, FZ_NOW, out, sizeof(out),
	                                &f->ss);
	n = firn_proto_client_handshake(f->cli, out, (size_t)m, FZ_NOW, dg, sizeof(dg));
	m = firn_proto_server_handshake(f->srv, &f->addr, dg, (size_t)n, FZ_NOW, out, sizeof(out),
	                                &f->ss);
	if (m <= 0 ||
	    firn_proto_client_handshake(f->cli, out, (size_t)m, FZ_NOW, dg, sizeof(dg)) != 0 ||
	    f->ss == NULL)
		fz_die("handshake");
}

static void
fz_close(struct fz *f)
{
	firn_proto_client_destroy(f->cli);
	firn_proto_server_destroy(f->srv);
}

/* Split input into chunks: u16 length prefix, the tail is one chunk. */
static unsigned
fz_chunks(const uint8_t *p, size_t n, const uint8_t **ptr, size_t *len)
{
	unsigned k = 0;

	while (n > 0 && k < FZ_MAX_CHUNKS) {
		size_t l = n >= 2 ? (size_t)(p[0] | p[1] << 8) : n;

		if (n < 2 || l > n - 2) {
			ptr[k] = p;
			len[k++] = n;
			break;
		}
		ptr[k] = p + 2;
		len[k++] = l;
		p += 2 + l;
		n -= 2 + l;
	}
	return k;
}

static void
fz_server_frames(struct fz *f, const uint8_t *plain_in, size_t len, uint64_t now)
{
	struct firn_proto_enc e;
	struct firn_proto_session *ss;
	struct firn_proto_rx rx;
	struct firn_proto_rx_item it;
	uint8_t *plain;
	int n, rc;

	if (firn_proto_client_enc_begin(f->cli, &e, dg, sizeof(dg), 0) < 0)
		return;
	len = FIRN_MIN(len, firn_proto_enc_room(&e));
	memcpy(dg + e.len, plain_in, len);
	e.len += len;
	n = firn_proto_client_seal(f->cli, &e);
	if (n < 0)
		fz_die("seal");
	n = firn_proto_server_open(f->srv, &f->addr, dg, (size_t)n, now, &ss, &plain);
	if (n < 0)
		return;
	firn_proto_rx_begin(&rx, f->srv, ss, plain, (size_t)n, now);
	while ((rc = firn_proto_rx_next(&rx, &it)) > 0) {
		struct firn_proto_durable d = {0};

		switch (it.kind) {
		case FIRN_PROTO_RX_RECORD:
			/* Touch every byte handed out: ASan checks they are in bounds. */
			for (uint32_t i = 0; i < it.rec.len; i++)
				d.counter += it.rec.data[i];
			for (uint16_t i = 0; i < it.rec.key_len; i++)
				d.counter += it.rec.key[i];
			fz_sink += d.counter;
			if (it.reasm_slot >= 0)
				firn_proto_reasm_release(firn_proto_session_reasm(ss),
				                         it.reasm_slot);
			/* Half become durable, some fail, the rest are refused (transient). */
			if (it.rec.seq % 3 == 0) {
				firn_proto_record_refused(f->srv, it.producer, it.rec.seq);
				break;
			}
			d.seq = it.rec.seq;
			d.count = 1;
			d.status = it.rec.seq % 3 == 1 ? FIRN_PROTO_OK : FIRN_PROTO_E_READ_ONLY;
			if (firn_proto_record_done(f->srv, it.producer, it.rec.seq, 1, d.counter,
			                           d.status) != 0)
				fz_die("record_done");
			if (firn_proto_session_queue_durable(ss, &d) == -ENOSPC) {
				firn_proto_session_flush(f->srv, ss, now, false, out, sizeof(out));
				firn_proto_session_queue_durable(ss, &d);
			}
			break;
		case FIRN_PROTO_RX_ANSWER:
			if (firn_proto_session_queue_durable(ss, &it.ack) == -ENOSPC)
				firn_proto_session_flush(f->srv, ss, now, false, out, sizeof(out));
			break;
		default:
			break;
		}
	}
	firn_proto_session_grant(ss, now % 50, (uint32_t)(now * 977 % (1u << 20)));
	/* A forced ack always makes a datagram: force once, then drain. */
	(void)firn_proto_session_flush(f->srv, ss, now, rc < 0, out, sizeof(out));
	while (firn_proto_session_flush(f->srv, ss, now, false, out, sizeof(out)) > 0)
		;
}

static void
fz_client_frames(struct fz *f, const uint8_t *plain_in, size_t len, uint64_t now)
{
	struct firn_proto_enc e;
	struct firn_proto_dec d;
	struct firn_proto_frame fr;
	struct firn_proto_range rg[FIRN_PROTO_ACK_RANGES_MAX];
	struct firn_proto_credit c = firn_proto_client_params(f->cli)->credit;
	struct firn_proto_durable de;
	uint8_t *plain;
	uint64_t pn;
	int n;

	firn_proto_enc_begin(&e, dg, FIRN_PROTO_DGRAM_DEFAULT, firn_proto_session_id(f->ss), now,
	                     0);
	len = FIRN_MIN(len, firn_proto_enc_room(&e));
	memcpy(dg + e.len, plain_in, len);
	e.len += len;
	/* Seal as the server would (its tx context), so the client opens it. */
	n = firn_proto_enc_seal(&e, &f->ss->tx);
	if (n < 0)
		fz_die("seal");
	n = firn_proto_client_open(f->cli, dg, (size_t)n, &plain, &pn);
	if (n < 0)
		return;
	firn_proto_dec_init(&d, plain, (size_t)n, false);
	while (firn_proto_dec_next(&d, &fr) > 0) {
		if (fr.type == FIRN_PROTO_FR_ACK_RECEIVED) {
			unsigned k = firn_proto_ack_ranges(&fr, rg, FIRN_PROTO_ACK_RANGES_MAX);

			for (unsigned i = 0; i < k; i++)
				if (rg[i].lo > rg[i].hi || rg[i].lo <= fr.ack.cum)
					abort(); /* the decoder promised ascending ranges above cum
					          */
		} else if (fr.type == FIRN_PROTO_FR_ACK_DURABLE) {
			for (unsigned i = 0; i < fr.durable.n; i++) {
				firn_proto_durable_get(&fr, i, &de);
				if (de.count == 0)
					abort();
			}
		} else if (fr.type == FIRN_PROTO_FR_CREDIT) {
			uint64_t before = c.used;

			firn_proto_credit_apply(&c, pn, fr.credit.max_seq, fr.credit.window);
			if (firn_proto_credit_take(&c, c.max_seq, fr.credit.window / 2) == 0 &&
			    before > 0 && c.used > c.window)
				abort(); /* only a lone record may exceed the window */
		} else if (fr.type == FIRN_PROTO_FR_ERROR) {
			for (unsigned i = 0; i < fr.error.msg_len; i++)
				fz_sink += (uint8_t)fr.error.msg[i];
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *ptr[FZ_MAX_CHUNKS];
	size_t len[FZ_MAX_CHUNKS];
	unsigned k, mode;
	struct fz f;

	if (size == 0)
		return 0;
	mode = data[0] % 4;
	k = fz_chunks(data + 1, size - 1, ptr, len);
	fz_open(&f, mode == 1 || mode == 2);
	for (unsigned i = 0; i < k; i++) {
		uint64_t now = FZ_NOW + i * 7;
		size_t l = FIRN_MIN(len[i], (size_t)FIRN_PROTO_DGRAM_MAX);
		struct firn_proto_session *ss;
		struct firn_proto_hdr h;
		uint8_t *plain;
		uint64_t pn;

		switch (mode) {
		case 0:
			memcpy(dg, ptr[i], l);
			(void)firn_proto_hdr_decode(dg, l, &h);
			(void)firn_proto_server_handshake(f.srv, &f.addr, dg, l, now, out,
			                                  sizeof(out), &ss);
			memcpy(dg, ptr[i], l);
			(void)firn_proto_server_open(f.srv, &f.addr, dg, l, now, &ss, &plain);
			memcpy(dg, ptr[i], l);
			(void)firn_proto_client_handshake(f.cli, dg, l, now, out, sizeof(out));
			memcpy(dg, ptr[i], l);
			(void)firn_proto_client_open(f.cli, dg, l, &plain, &pn);
			break;
		case 1:
			fz_server_frames(&f, ptr[i], l, now);
			break;
		case 2:
			fz_client_frames(&f, ptr[i], l, now);
			break;
		default:
			memcpy(dg, ptr[i], l);
			if (i % 2 == 0)
				(void)firn_proto_server_handshake(f.srv, &f.addr, dg, l, FZ_NOW,
				                                  out, sizeof(out), &ss);
			else
				(void)firn_proto_client_handshake(f.cli, dg, l, FZ_NOW, out,
				                                  sizeof(out));
			break;
		}
		if (i % 8 == 7)
			firn_proto_server_tick(f.srv, now + 60000);
	}
	/* Once every session has expired, all reassembly memory is back in the pool. */
	firn_proto_server_tick(f.srv, FZ_NOW + 1000000);
	if (firn_proto_server_sessions(f.srv) != 0 || firn_proto_pool_used(f.srv->pool) != 0)
		abort();
	fz_close(&f);
	return 0;
}

#ifndef FIRN_LIBFUZZER
/* ---- the stand-alone runner ------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static uint32_t
below(uint32_t n)
{
	return n ? (uint32_t)(rnd() % n) : 0;
}

static uint8_t in[64 * 1024];
static size_t in_len;

static void
put_chunk(const uint8_t *p, size_t n)
{
	if (in_len + 2 + n > sizeof(in))
		return;
	in[in_len] = (uint8_t)n;
	in[in_len + 1] = (uint8_t)(n >> 8);
	memcpy(in + in_len + 2, p, n);
	in_len += 2 + n;
}

/* Valid client plaintexts: bindings, records, fragments of a large record, pings. */
static void
gen_client(void)
{
	static uint8_t big[6000], buf[FIRN_PROTO_DGRAM_DEFAULT];
	struct firn_proto_enc e;
	uint64_t seq = 1 + below(5);

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)rnd();
	for (int d = 0; d < 1 + (int)below(6); d++) {
		firn_proto_enc_begin(&e, buf, sizeof(buf), 1, 1, 0);
		for (int r = 0; r < 1 + (int)below(8); r++) {
			uint8_t key[16];
			struct firn_proto_rec rec = {.seq = seq++,
			                             .key = key,
			                             .key_len = (uint16_t)(1 + below(16)),
			                             .data = big,
			                             .len = below(300),
			                             .stream_ref = (uint16_t)below(3),
			                             .hash = below(4) == 0};
			uint32_t off = 0;

			for (int i = 0; i < 16; i++)
				key[i] = (uint8_t)('a' + below(26));
			if (rec.hash)
				rec.key_len = 16;
			if (below(5) == 0)
				rec.len = (uint32_t)sizeof(big);
			if (firn_proto_enc_record(&e, &rec, below(3) ? "orders" : "xgone", 6,
			                          &off) != 1) {
				/* A fragmented record continues in the next chunks. */
				put_chunk(buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN);
				firn_proto_enc_begin(&e, buf, sizeof(buf), 1, 1, 0);
				while (off < rec.len &&
				       firn_proto_enc_record(&e, &rec, "orders", 6, &off) == 0) {
					put_chunk(buf + FIRN_PROTO_HDR_LEN,
					          e.len - FIRN_PROTO_HDR_LEN);
					firn_proto_enc_begin(&e, buf, sizeof(buf), 1, 1, 0);
				}
			}
		}
		if (below(4) == 0)
			firn_proto_enc_ping(&e);
		put_chunk(buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN);
		if (below(3) == 0) /* a resend */
			put_chunk(buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN);
	}
}

/* Valid server plaintexts: acks, durable entries, credit, errors. */
static void
gen_server(void)
{
	static uint8_t buf[FIRN_PROTO_DGRAM_DEFAULT];
	struct firn_proto_enc e;
	struct firn_proto_replay rw;
	struct firn_proto_addr a = {{0}, 7401};

	firn_proto_replay_init(&rw);
	for (uint64_t p = 1; p < 2000; p++)
		if (below(10))
			firn_proto_replay_commit(&rw, p);
	firn_proto_enc_begin(&e, buf, sizeof(buf), 1, 1, 0);
	firn_proto_enc_ack_received(&e, &rw, (uint16_t)below(1000));
	firn_proto_enc_credit(&e, rnd() % 100000, (uint32_t)rnd());
	for (int i = 0; i < (int)below(30); i++) {
		struct firn_proto_durable d = {1 + rnd() % 1000,   rnd() % 1000,
		                               below(4),           (uint16_t)(1 + below(3)),
		                               (uint8_t)below(14), (uint8_t)below(2)};

		firn_proto_enc_durable(&e, &d);
	}
	firn_proto_enc_error(&e, (uint16_t)below(14), &a, "try node 2");
	firn_proto_enc_close(&e, FIRN_PROTO_E_CLOSED);
	put_chunk(buf + FIRN_PROTO_HDR_LEN, e.len - FIRN_PROTO_HDR_LEN);
}

/* A valid HELLO/RETRY/INIT exchange, as the server and client produce it. */
static void
gen_handshake(void)
{
	struct fz f;
	struct firn_proto_session *ss;
	int n, m;

	fz_open(&f, false);
	n = firn_proto_client_start(f.cli, FZ_NOW, dg, sizeof(dg));
	put_chunk(dg, (size_t)n);
	m = firn_proto_server_handshake(f.srv, &f.addr, dg, (size_t)n, FZ_NOW, out, sizeof(out),
	                                &ss);
	put_chunk(out, (size_t)m);
	n = firn_proto_client_handshake(f.cli, out, (size_t)m, FZ_NOW, dg, sizeof(dg));
	put_chunk(dg, (size_t)n);
	m = firn_proto_server_handshake(f.srv, &f.addr, dg, (size_t)n, FZ_NOW, out, sizeof(out),
	                                &ss);
	put_chunk(out, (size_t)m);
	put_chunk(dg, (size_t)n); /* a replayed INIT */
	fz_close(&f);
}

static void
mutate(void)
{
	unsigned k = below(8);

	for (unsigned i = 0; i < k && in_len > 1; i++) {
		size_t at = 1 + below((uint32_t)(in_len - 1));

		switch (below(5)) {
		case 0:
			in[at] ^= (uint8_t)(1u << below(8));
			break;
		case 1:
			in[at] = (uint8_t)rnd();
			break;
		case 2: /* truncate */
			in_len = at;
			break;
		case 3: {                     /* delete a range */
			size_t n = below(16); /* not inside FIRN_MIN: it evaluates twice */

			n = FIRN_MIN(n, in_len - at);

			memmove(in + at, in + at + n, in_len - at - n);
			in_len -= n;
			break;
		}
		default: { /* interesting values */
			static const uint8_t v[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x10, 0x11};

			in[at] = v[below(sizeof(v))];
			break;
		}
		}
	}
}

int
main(void)
{
	const char *s = getenv("FIRN_FUZZ_ITERS"), *seed = getenv("FIRN_FUZZ_SEED");
	uint64_t iters = 20000, v;

	if (s != NULL && firn_parse_u64(s, &v) == 0)
		iters = v;
	if (seed != NULL && firn_parse_u64(seed, &v) == 0 && v != 0)
		rng = v;
	for (uint64_t i = 0; i < iters; i++) {
		unsigned kind = below(5);

		in_len = 0;
		in[in_len++] = (uint8_t)(kind < 4 ? kind : below(256));
		switch (kind) {
		case 1:
			gen_client();
			break;
		case 2:
			gen_server();
			break;
		case 3:
			gen_handshake();
			break;
		default: { /* random bytes */
			size_t n = below(3000);

			for (size_t j = 0; j < n; j++)
				in[in_len++] = (uint8_t)rnd();
			break;
		}
		}
		mutate();
		LLVMFuzzerTestOneInput(in, in_len);
	}
	printf("proto_fuzz: %llu inputs, no crash\n", (unsigned long long)iters);
	return 0;
}
#endif
