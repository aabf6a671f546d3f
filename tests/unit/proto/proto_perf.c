/*
 * proto_perf.c - what the protocol costs per record (a benchmark, not a test).
 *
 * For 100-byte records with 16-byte keys, in 1472- and 8972-byte datagrams:
 *
 *   encode    client batch encoder, ns/record
 *   seal      AES-256-GCM seal of one datagram, ns/datagram
 *   open      server open (replay check + GCM open + window), ns/datagram
 *   decode    frame decoder over an opened datagram, ns/record
 *   rx        server RX path: frames + dedupe + credit, then record_done, ns/record
 *   hello     server answer to a HELLO (stateless cookie), ns/HELLO
 *
 * ISA-L style: a _perf program next to the tests. Prints one line per
 * measurement; FIRN_PERF_SECS (default 1) sets the time per measurement.
 * The numbers are for one core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_common.h"
#include "firn_proto.h"

#define REC_LEN 100

static double secs = 1.0;
static uint8_t dg[FIRN_PROTO_DGRAM_MAX], copy[FIRN_PROTO_DGRAM_MAX], out[FIRN_PROTO_DGRAM_MAX];
static uint8_t data[REC_LEN];
static uint8_t keys[64][16];

static void
die(const char *what)
{
	fprintf(stderr, "proto_perf: %s: %s\n", what, firn_err_msg());
	exit(1);
}

struct pair {
	struct firn_proto_server *srv;
	struct firn_proto_client *cli;
	struct firn_proto_session *ss;
	struct firn_proto_addr addr;
	struct firn_proto_access_key key;
};

static void
pair_open(struct pair *p, uint16_t dgram)
{
	struct firn_proto_server_conf conf;
	struct firn_proto_client_conf cc = {.key_id = "AKIDPERF",
	                                    .secret = (const uint8_t *)"perf-secret",
	                                    .secret_len = 11,
	                                    .producer_id = 7,
	                                    .max_dgram = dgram};
	const uint8_t ip[4] = {127, 0, 0, 1};
	int n, m;

	p->key = (struct firn_proto_access_key){"AKIDPERF", (const uint8_t *)"perf-secret", 11};
	firn_proto_server_conf_defaults(&conf);
	conf.keys = &p->key;
	conf.n_keys = 1;
	conf.max_sessions = 4;
	conf.max_producers = 4;
	conf.reasm_pool_bytes = 4u << 20;
	conf.max_dgram = dgram;
	conf.credit_records = 1u << 30;
	conf.credit_window = UINT32_MAX;
	firn_proto_addr_v4(&p->addr, ip, 9);
	p->srv = firn_proto_server_create(&conf);
	p->cli = firn_proto_client_create(&cc);
	if (p->srv == NULL || p->cli == NULL)
		die("create");
	n = firn_proto_client_start(p->cli, 1, dg, sizeof(dg));
	m = firn_proto_server_handshake(p->srv, &p->addr, dg, (size_t)n, 1, out, sizeof(out),
	                                &p->ss);
	n = firn_proto_client_handshake(p->cli, out, (size_t)m, 1, dg, sizeof(dg));
	m = firn_proto_server_handshake(p->srv, &p->addr, dg, (size_t)n, 1, out, sizeof(out),
	                                &p->ss);
	if (firn_proto_client_handshake(p->cli, out, (size_t)m, 1, dg, sizeof(dg)) != 0)
		die("handshake");
}

static void
pair_close(struct pair *p)
{
	firn_proto_client_destroy(p->cli);
	firn_proto_server_destroy(p->srv);
}

/* Fill one datagram with 100-byte records from *seq on. Returns records written. */
static unsigned
fill(struct pair *p, struct firn_proto_enc *e, uint64_t *seq)
{
	unsigned n = 0;

	if (firn_proto_client_enc_begin(p->cli, e, dg, sizeof(dg), 0) < 0)
		die("enc_begin");
	for (;;) {
		struct firn_proto_rec r = {.seq = *seq,
		                           .key = keys[*seq % 64],
		                           .key_len = 16,
		                           .data = data,
		                           .len = REC_LEN};
		uint32_t off = 0;

		if (firn_proto_enc_record(e, &r, "perf", 4, &off) != 1)
			return n;
		(*seq)++;
		n++;
	}
}

static void
report(const char *what, uint16_t dgram, uint64_t ns, uint64_t units, const char *unit)
{
	printf("%-8s dgram=%-5u %8.1f ns/%s  (%llu %ss)\n", what, dgram, (double)ns / (double)units,
	       unit, (unsigned long long)units, unit);
}

static void
bench(uint16_t dgram)
{
	struct pair p;
	struct firn_proto_enc e;
	uint64_t seq = 1, t0, t, recs = 0, dgs = 0, deadline = (uint64_t)(secs * 1e9);
	unsigned per;
	size_t len;

	pair_open(&p, dgram);

	/* encode */
	t0 = firn_mono_ns();
	do {
		for (int i = 0; i < 64; i++)
			recs += fill(&p, &e, &seq);
		t = firn_mono_ns() - t0;
	} while (t < deadline);
	report("encode", dgram, t, recs, "record");

	/* seal (a full datagram, re-sealed with a fresh packet number each time) */
	per = fill(&p, &e, &seq);
	len = e.len;
	memcpy(copy, dg, len);
	dgs = 0;
	t0 = firn_mono_ns();
	do {
		for (int i = 0; i < 256; i++) {
			struct firn_proto_enc e2;

			firn_proto_client_enc_begin(p.cli, &e2, dg, sizeof(dg), 0);
			e2.len = len;
			if (firn_proto_client_seal(p.cli, &e2) < 0)
				die("seal");
		}
		dgs += 256;
		t = firn_mono_ns() - t0;
	} while (t < deadline);
	report("seal", dgram, t, dgs, "dgram");
	printf("         -> %u records of %u B per datagram: %.1f ns/record sealed\n", per, REC_LEN,
	       (double)t / (double)(dgs * per));

	/* open + decode + rx: fresh datagrams from the client, one by one */
	{
		uint64_t t_open = 0, t_dec = 0, t_rx = 0, n_rec = 0, n_dg = 0, t_all = 0;
		static uint8_t saved[FIRN_PROTO_DGRAM_MAX];

		while (t_all < deadline) {
			struct firn_proto_session *ss;
			struct firn_proto_dec d;
			struct firn_proto_frame f;
			struct firn_proto_rx rx;
			struct firn_proto_rx_item it;
			uint8_t *plain;
			uint64_t a, b, c, z;
			int n, k = 0;

			per = fill(&p, &e, &seq);
			n = firn_proto_client_seal(p.cli, &e);
			memcpy(saved, dg, (size_t)n);
			a = firn_mono_ns();
			n = firn_proto_server_open(p.srv, &p.addr, dg, (size_t)n, 2, &ss, &plain);
			b = firn_mono_ns();
			if (n < 0)
				die("open");
			firn_proto_dec_init(&d, plain, (size_t)n, true);
			while (firn_proto_dec_next(&d, &f) > 0)
				k++;
			c = firn_mono_ns();
			firn_proto_rx_begin(&rx, p.srv, ss, plain, (size_t)n, 2);
			while (firn_proto_rx_next(&rx, &it) > 0) {
				if (it.kind != FIRN_PROTO_RX_RECORD)
					die("rx");
				firn_proto_record_done(p.srv, it.producer, it.rec.seq, 0,
				                       it.rec.seq, FIRN_PROTO_OK);
			}
			z = firn_mono_ns();
			if (k != (int)per + 1)
				die("decode count");
			t_open += b - a;
			t_dec += c - b;
			t_rx += z - c;
			t_all += z - a;
			n_rec += per;
			n_dg++;
			if (n_dg % 64 == 0) {
				firn_proto_session_grant(ss, 1u << 20, UINT32_MAX);
				while (firn_proto_session_flush(p.srv, ss, 2, false, out,
				                                sizeof(out)) > 0)
					;
			}
		}
		report("open", dgram, t_open, n_dg, "dgram");
		printf("         -> %.1f ns/record opened\n", (double)t_open / (double)n_rec);
		report("decode", dgram, t_dec, n_rec, "record");
		report("rx", dgram, t_rx, n_rec, "record");
		printf("TOTAL    dgram=%-5u %8.1f ns/record server side (open+rx), %.2f M "
		       "records/s "
		       "per core\n",
		       dgram, (double)(t_open + t_rx) / (double)n_rec,
		       (double)n_rec * 1e3 / (double)(t_open + t_rx));
	}
	pair_close(&p);
}

static void
bench_hello(void)
{
	struct pair p;
	struct firn_proto_session *ss;
	struct firn_proto_hdr h = {FIRN_PROTO_VERSION, FIRN_PROTO_HELLO, 0, 0, 0};
	uint64_t t0, t, n = 0, deadline = (uint64_t)(secs * 1e9);

	pair_open(&p, FIRN_PROTO_DGRAM_DEFAULT);
	memset(dg, 0, FIRN_PROTO_HELLO_MIN);
	firn_proto_hdr_encode(&h, dg, sizeof(dg));
	t0 = firn_mono_ns();
	do {
		for (int i = 0; i < 256; i++) {
			dg[24] = (uint8_t)n;
			p.addr.port = (uint16_t)(n++);
			if (firn_proto_server_handshake(p.srv, &p.addr, dg, FIRN_PROTO_HELLO_MIN, 3,
			                                out, sizeof(out), &ss) <= 0)
				die("hello");
		}
		t = firn_mono_ns() - t0;
	} while (t < deadline);
	report("hello", FIRN_PROTO_DGRAM_DEFAULT, t, n, "hello");
	pair_close(&p);
}

int
main(void)
{
	const char *s = getenv("FIRN_PERF_SECS");
	uint64_t v;

	if (s != NULL && firn_parse_u64(s, &v) == 0 && v > 0)
		secs = (double)v;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	for (int i = 0; i < 64; i++)
		for (int k = 0; k < 16; k++)
			keys[i][k] = (uint8_t)('a' + (i * 7 + k * 3) % 26);
	bench(1472);
	bench(8972);
	bench_hello();
	return 0;
}
