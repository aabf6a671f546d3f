/*
 * ingest_fake.h - the test bench for lib/ingest: a NIC made of memory, a
 * real store and catalog in a scratch directory, and producers speaking
 * lib/proto - all on the test's one thread.
 *
 * The fake net driver implements firn_net_ops over two FIFOs: what
 * producers "send" waits in rx until the agent's rx_burst copies it into
 * one of the driver's own buffers (held until release(), like an mbuf);
 * what the agent sends lands in tx, addressed, until the bench delivers it
 * to the producer with that port. With several RX queues (bench.nq) the fake
 * sprays datagrams over them round robin, whatever session they belong to,
 * which is the worst RSS could do: every producer's traffic reaches every
 * agent, and all but its owner must hand it on. Only the NIC is faked: the store writes
 * real segments with O_DIRECT (so the scratch directory lives under
 * /var/tmp, and a file system that refuses O_DIRECT skips the test).
 *
 * A producer (struct tp) keeps, per seq, what it learned: the DURABLE
 * entry (status, shard, counter, flags) and how many times it was answered.
 * bench_pump() runs the agent and the store's writers and delivers answers.
 */
#ifndef FIRN_INGEST_FAKE_H
#define FIRN_INGEST_FAKE_H

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../store/store_testutil.h"
#include "firn_common.h"
#include "firn_disk_uring.h"
#include "firn_ingest.h"
#include "firn_net.h"
#include "firn_proto.h"
#include "firn_record.h"
#include "firn_store.h"
#include "firn_stream.h"

#define TEST_KEY_ID "AKIDINGESTTEST"
#define TEST_SECRET "ingest-test-secret-0123456789abcdef"
#define FAKE_Q 4096
#define FAKE_HELD 64
#define FAKE_NQ 4
#define TP_MAXSEQ 4096

/* ---- the NIC made of memory ---------------------------------------------------- */

struct fake_pkt {
	struct sockaddr_in peer;
	uint32_t len;
	uint8_t buf[FIRN_PROTO_DGRAM_MAX];
};

struct firn_net_port {
	struct fake_pkt *rxq[FAKE_NQ]; /* FIFO per RX queue: producers -> agents */
	unsigned rx_head[FAKE_NQ], rx_n[FAKE_NQ];
	unsigned nq, spray;
	struct fake_pkt *held; /* the driver's buffers, lent by rx_burst */
	bool busy[FAKE_HELD];
	unsigned nbusy;
	struct fake_pkt *txq; /* FIFO: agent -> producers */
	unsigned tx_head, tx_n;
	uint32_t max_payload;
	uint64_t rx_count, tx_count;
	bool tx_blocked; /* the device queue is full: tx_burst takes nothing */
};

static struct firn_net_port *
fake_open(const struct firn_net_conf *conf)
{
	struct firn_net_port *p = calloc(1, sizeof(*p));

	p->nq = conf != NULL && conf->rx_queues > 0 ? conf->rx_queues : 1;
	assert_true(p->nq <= FAKE_NQ);
	for (unsigned q = 0; q < p->nq; q++)
		p->rxq[q] = calloc(FAKE_Q, sizeof(*p->rxq[q]));
	p->txq = calloc(FAKE_Q, sizeof(*p->txq));
	p->held = calloc(FAKE_HELD, sizeof(*p->held));
	p->max_payload = 8972;
	return p;
}

static void
fake_close(struct firn_net_port *p)
{
	for (unsigned q = 0; q < p->nq; q++)
		free(p->rxq[q]);
	free(p->txq);
	free(p->held);
	free(p);
}

static unsigned
fake_rx_burst(struct firn_net_port *p, uint16_t queue, struct firn_net_dgram *d, unsigned max)
{
	unsigned n = 0;

	assert_true(queue < p->nq);
	for (unsigned b = 0; b < FAKE_HELD && n < max && p->rx_n[queue] > 0; b++) {
		struct fake_pkt *src = &p->rxq[queue][p->rx_head[queue]];

		if (p->busy[b])
			continue;
		p->held[b] = *src;
		p->busy[b] = true;
		p->nbusy++;
		p->rx_head[queue] = (p->rx_head[queue] + 1) % FAKE_Q;
		p->rx_n[queue]--;
		d[n].peer = p->held[b].peer;
		d[n].data = p->held[b].buf;
		d[n].len = p->held[b].len;
		d[n].queue = queue;
		d[n].handle = (void *)(uintptr_t)b;
		n++;
	}
	p->rx_count += n;
	return n;
}

static void
fake_release(struct firn_net_port *p, struct firn_net_dgram *d, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uintptr_t b = (uintptr_t)d[i].handle;

		if (p->busy[b]) {
			p->busy[b] = false;
			p->nbusy--;
			/* Scribble over it: a reader after release would see garbage. */
			memset(p->held[b].buf, 0xa5, 64);
		}
	}
}

static unsigned
fake_tx_burst(struct firn_net_port *p, uint16_t queue, const struct firn_net_dgram *d, unsigned n)
{
	unsigned i;

	(void)queue;
	if (p->tx_blocked)
		return 0;
	for (i = 0; i < n && p->tx_n < FAKE_Q; i++) {
		struct fake_pkt *dst = &p->txq[(p->tx_head + p->tx_n) % FAKE_Q];

		dst->peer = d[i].peer;
		dst->len = d[i].len;
		memcpy(dst->buf, d[i].data, d[i].len);
		p->tx_n++;
	}
	p->tx_count += i;
	return i;
}

static uint32_t
fake_max_payload(struct firn_net_port *p)
{
	return p->max_payload;
}

static void
fake_stats(struct firn_net_port *p, struct firn_net_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->rx_packets = p->rx_count;
	out->tx_packets = p->tx_count;
}

static const struct firn_net_ops fake_ops = {
        .name = "fake",
        .open = fake_open,
        .close = fake_close,
        .rx_burst = fake_rx_burst,
        .release = fake_release,
        .tx_burst = fake_tx_burst,
        .max_payload = fake_max_payload,
        .stats = fake_stats,
};

static void
fake_inject(struct firn_net_port *p, const struct sockaddr_in *from, const uint8_t *pkt, size_t len)
{
	unsigned q = p->spray++ % p->nq;
	struct fake_pkt *dst;

	assert_true(p->rx_n[q] < FAKE_Q);
	dst = &p->rxq[q][(p->rx_head[q] + p->rx_n[q]) % FAKE_Q];
	dst->peer = *from;
	dst->len = (uint32_t)len;
	memcpy(dst->buf, pkt, len);
	p->rx_n[q]++;
}

/* Datagrams waiting in the RX queues. */
static unsigned
fake_rx_pending(const struct firn_net_port *p)
{
	unsigned n = 0;

	for (unsigned q = 0; q < p->nq; q++)
		n += p->rx_n[q];
	return n;
}

/* ---- the bench --------------------------------------------------------------------- */

struct bench {
	char dir[256];
	struct firn_catalog *cat;
	struct firn_store *st;
	struct firn_ingest *ing;
	struct firn_net_port *port;
	struct firn_ingest_conf ic;
	struct firn_store_conf sc;
	uint8_t cookie[32];
	struct tp *tps[8];
	unsigned ntp;
};

/* What a producer learned about one seq. */
struct tp_ack {
	uint64_t counter;
	uint32_t shard;
	uint16_t answers; /* entries received for this seq */
	uint8_t status;
	uint8_t flags;
	bool have;
};

struct tp {
	struct firn_proto_client *c;
	struct sockaddr_in addr;
	uint64_t producer;
	struct tp_ack acks[TP_MAXSEQ];
	uint64_t received; /* ACK_RECEIVED frames */
	uint64_t credit_max_seq;
	uint32_t credit_window;
	uint64_t credit_pn;
	bool reset; /* a valid RESET arrived */
	uint64_t bad_entries;
};

static bool bench_skip_reason_printed;

/* Create the pipeline (conf tweaks in *ic may be NULL) and start it. */
static void
bench_start(struct bench *b, const struct firn_ingest_conf *ic)
{
	if (ic != NULL) {
		b->ic = *ic;
	} else {
		firn_ingest_conf_defaults(&b->ic);
		b->ic.max_sessions = 16;
		b->ic.max_producers = 16;
		b->ic.reasm_pool_bytes = 16u << 20;
	}
	b->ic.catalog = NULL; /* set once open */
	b->ic.writers = 2;
	b->ic.access_key_id = TEST_KEY_ID;
	b->ic.secret_access_key = TEST_SECRET;
	b->ic.cookie_secret = b->cookie;
	b->ic.threaded = false;
	/* The catalog must exist before create; open it by hand first. */
	{
		char catdir[300];

		snprintf(catdir, sizeof(catdir), "%s/catalog", b->dir);
		assert_int_equal(firn_mkdir_p(catdir, 0755), 0);
		b->cat = firn_catalog_open(catdir);
		assert_non_null(b->cat);
	}
	b->ic.catalog = b->cat;
	b->ing = firn_ingest_create(&b->ic);
	if (b->ing == NULL)
		fprintf(stderr, "ingest: %s\n", firn_err_msg());
	assert_non_null(b->ing);
	firn_store_conf_defaults(&b->sc);
	b->sc.dir = b->dir;
	b->sc.kek = tu_kek();
	b->sc.disk = &firn_disk_uring_ops;
	b->sc.writers = 2;
	b->sc.threaded = false;
	b->sc.prealloc = 2u << 20;
	b->sc.segment_size = 16u << 20;
	firn_ingest_store_hook(b->ing, &b->sc);
	b->st = firn_store_open(&b->sc);
	if (b->st == NULL)
		fprintf(stderr, "store: %s\n", firn_err_msg());
	assert_non_null(b->st);
	if (b->port == NULL) {
		struct firn_net_conf nc = {.rx_queues = b->ic.rx_agents};

		b->port = fake_ops.open(&nc);
	}
	if (firn_ingest_start(b->ing, b->st, &fake_ops, b->port) < 0) {
		fprintf(stderr, "start: %s\n", firn_err_msg());
		fail();
	}
}

/* Stop the pipeline and the store, as firnd does on SIGTERM; keep the files. */
static void
bench_stop(struct bench *b)
{
	firn_ingest_stop_rx(b->ing);
	firn_ingest_drain(b->ing, 5000);
	firn_ingest_stop(b->ing);
	firn_store_close(b->st);
	firn_ingest_destroy(b->ing);
	firn_catalog_close(b->cat);
	b->st = NULL;
	b->ing = NULL;
	b->cat = NULL;
}

static int
bench_setup(void **state)
{
	struct bench *b = calloc(1, sizeof(*b));

	if (tu_mkdtemp(b->dir, sizeof(b->dir), "ingest") < 0) {
		free(b);
		return -1;
	}
	if (!tu_odirect_ok(b->dir)) {
		if (!bench_skip_reason_printed)
			fprintf(stderr, "# %s does not take O_DIRECT\n", b->dir);
		bench_skip_reason_printed = true;
		firn_rm_rf(b->dir);
		free(b);
		return -1;
	}
	for (int i = 0; i < 32; i++)
		b->cookie[i] = (uint8_t)(0x40 + i);
	*state = b;
	return 0;
}

static void tp_destroy(struct tp *t);

static int
bench_teardown(void **state)
{
	struct bench *b = *state;

	if (b == NULL)
		return 0;
	if (b->ing != NULL)
		bench_stop(b);
	if (b->port != NULL)
		fake_ops.close(b->port);
	for (unsigned i = 0; i < b->ntp; i++)
		tp_destroy(b->tps[i]);
	firn_rm_rf(b->dir);
	free(b);
	return 0;
}

/* ---- producers ---------------------------------------------------------------------------- */

static struct tp *
tp_new(struct bench *b, uint64_t producer, uint16_t port, uint16_t max_dgram)
{
	struct tp *t = calloc(1, sizeof(*t));
	struct firn_proto_client_conf cc = {
	        .key_id = TEST_KEY_ID,
	        .secret = (const uint8_t *)TEST_SECRET,
	        .secret_len = strlen(TEST_SECRET),
	        .producer_id = producer,
	        .max_dgram = max_dgram,
	};

	t->c = firn_proto_client_create(&cc);
	assert_non_null(t->c);
	t->producer = producer;
	t->addr.sin_family = AF_INET;
	t->addr.sin_addr.s_addr = htonl(0xc6120001); /* 198.18.0.1 */
	t->addr.sin_port = htons(port);
	b->tps[b->ntp++] = t;
	return t;
}

static void
tp_destroy(struct tp *t)
{
	firn_proto_client_destroy(t->c);
	free(t);
}

static uint64_t
now_ms(void)
{
	return firn_mono_ns() / 1000000;
}

/* A datagram from the agent, for producer t. */
static void
tp_deliver(struct tp *t, uint8_t *pkt, size_t len)
{
	struct firn_proto_frame f;
	struct firn_proto_dec d;
	uint8_t out[FIRN_PROTO_DGRAM_MAX], *plain;
	uint64_t pn;
	int n;

	if (len > 5 && pkt[5] != FIRN_PROTO_DATA) {
		/* ACCEPT, REJECT, RESET (RETRY is answered by bench_deliver) */
		firn_proto_client_handshake(t->c, pkt, len, now_ms(), out, sizeof(out));
		if (firn_proto_client_state(t->c) == FIRN_PROTO_CLIENT_FAILED &&
		    firn_proto_client_error(t->c, NULL) == FIRN_PROTO_E_SESSION_EXPIRED)
			t->reset = true;
		return;
	}
	n = firn_proto_client_open(t->c, pkt, len, &plain, &pn);
	if (n < 0)
		return;
	firn_proto_dec_init(&d, plain, (size_t)n, false);
	while (firn_proto_dec_next(&d, &f) > 0) {
		switch (f.type) {
		case FIRN_PROTO_FR_ACK_RECEIVED:
			t->received++;
			break;
		case FIRN_PROTO_FR_CREDIT:
			if (pn > t->credit_pn) {
				t->credit_pn = pn;
				t->credit_max_seq = f.credit.max_seq;
				t->credit_window = f.credit.window;
			}
			break;
		case FIRN_PROTO_FR_ACK_DURABLE:
			for (unsigned i = 0; i < f.durable.n; i++) {
				struct firn_proto_durable e;

				firn_proto_durable_get(&f, i, &e);
				for (unsigned k = 0; k < e.count; k++) {
					uint64_t s = e.seq + k;
					struct tp_ack *a;

					if (s >= TP_MAXSEQ) {
						t->bad_entries++;
						continue;
					}
					a = &t->acks[s];
					a->answers++;
					a->status = e.status;
					a->flags = e.flags;
					if (e.status == FIRN_PROTO_OK) {
						/* A later answer must repeat the first one exactly.
						 */
						if (a->have && (a->shard != e.shard ||
						                a->counter != e.counter + k))
							t->bad_entries++;
						a->shard = e.shard;
						a->counter = e.counter + k;
						a->have = true;
					}
				}
			}
			break;
		default:
			break;
		}
	}
}

/* Hand everything the agent sent to the producers it was meant for. */
static unsigned
bench_deliver(struct bench *b)
{
	struct firn_net_port *p = b->port;
	unsigned n = 0;

	while (p->tx_n > 0) {
		struct fake_pkt pkt = p->txq[p->tx_head];

		p->tx_head = (p->tx_head + 1) % FAKE_Q;
		p->tx_n--;
		n++;
		for (unsigned i = 0; i < b->ntp; i++) {
			struct tp *t = b->tps[i];

			if (t->addr.sin_port != pkt.peer.sin_port)
				continue;
			if (pkt.buf[5] == FIRN_PROTO_RETRY) {
				uint8_t out[FIRN_PROTO_DGRAM_MAX];
				int m = firn_proto_client_handshake(t->c, pkt.buf, pkt.len,
				                                    now_ms(), out, sizeof(out));

				if (m > 0)
					fake_inject(p, &t->addr, out, (size_t)m);
			} else {
				tp_deliver(t, pkt.buf, pkt.len);
			}
		}
	}
	return n;
}

/* Run the agent (and the store's writers when `store`) for a few rounds. */
static void
bench_pump(struct bench *b, unsigned rounds, bool store)
{
	for (unsigned r = 0; r < rounds; r++) {
		firn_ingest_do_work(b->ing);
		if (store) {
			firn_store_flush(b->st);
			firn_store_do_work(b->st);
		}
		firn_ingest_do_work(b->ing);
		bench_deliver(b);
	}
}

static void
tp_connect(struct bench *b, struct tp *t)
{
	uint8_t out[FIRN_PROTO_DGRAM_MAX];
	int n = firn_proto_client_start(t->c, now_ms(), out, sizeof(out));

	assert_true(n > 0);
	fake_inject(b->port, &t->addr, out, (size_t)n);
	for (int i = 0; i < 20 && firn_proto_client_state(t->c) != FIRN_PROTO_CLIENT_ESTABLISHED;
	     i++)
		bench_pump(b, 1, false);
	assert_int_equal(firn_proto_client_state(t->c), FIRN_PROTO_CLIENT_ESTABLISHED);
	t->credit_max_seq = firn_proto_client_params(t->c)->credit.max_seq;
	t->credit_window = (uint32_t)firn_proto_client_params(t->c)->credit.window;
	t->credit_pn = 0;
}

/* Record data for (producer, seq): deterministic, checkable. */
static void
rec_fill(uint8_t *buf, uint32_t len, uint64_t producer, uint64_t seq)
{
	uint64_t x = producer ^ (seq * 0x9e3779b97f4a7c15ull) ^ len;

	for (uint32_t i = 0; i < len; i++) {
		if ((i & 7) == 0)
			x = tu_mix(x + i);
		buf[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
}

struct trec {
	uint64_t seq;
	const char *key; /* partition key, or NULL with hash */
	struct firn_u128 hash;
	uint32_t len;
	uint16_t ref;
};

/*
 * Send records (in as few datagrams as they fit) on stream ref `ref` bound
 * to `name`. Data comes from rec_fill(). Returns the datagrams sent.
 */
static unsigned
tp_send(struct bench *b, struct tp *t, const struct trec *recs, unsigned n, const char *name)
{
	static uint8_t data[FIRN_RECORD_DATA_MAX + 16];
	uint8_t buf[FIRN_PROTO_DGRAM_MAX], hk[16];
	struct firn_proto_enc e;
	unsigned dgrams = 0, i = 0;
	uint32_t off = 0;
	bool open = false;

	while (i < n) {
		struct firn_proto_rec r = {0};
		int rc;

		if (!open) {
			assert_int_equal(firn_proto_client_enc_begin(t->c, &e, buf, sizeof(buf), 0),
			                 0);
			open = true;
		}
		rec_fill(data, recs[i].len, t->producer, recs[i].seq);
		r.seq = recs[i].seq;
		r.data = data;
		r.len = recs[i].len;
		r.stream_ref = recs[i].ref;
		if (recs[i].key != NULL) {
			r.key = (const uint8_t *)recs[i].key;
			r.key_len = (uint16_t)strlen(recs[i].key);
		} else {
			firn_proto_hash_put(recs[i].hash, hk);
			r.key = hk;
			r.key_len = 16;
			r.hash = true;
		}
		rc = firn_proto_enc_record(&e, &r, name, strlen(name), &off);
		assert_true(rc >= 0);
		if (rc == 1) {
			i++;
			off = 0;
			continue;
		}
		/* full: seal, send, go on with the same record at off */
		rc = firn_proto_client_seal(t->c, &e);
		assert_true(rc > 0);
		fake_inject(b->port, &t->addr, buf, (size_t)rc);
		dgrams++;
		open = false;
		/* Keep the fake rx FIFO bounded: let the agent take what is queued. */
		if (fake_rx_pending(b->port) > FAKE_Q / 2)
			bench_pump(b, 4, false);
	}
	if (open && e.records > 0) {
		int rc = firn_proto_client_seal(t->c, &e);

		assert_true(rc > 0);
		fake_inject(b->port, &t->addr, buf, (size_t)rc);
		dgrams++;
	}
	return dgrams;
}

/*
 * Pump until producer t holds an answer for every seq in [lo, hi], or give
 * up after max_rounds rounds *and* 10 s: the store's writers have their own
 * clocks (preallocation retries, flush intervals), so a round count alone
 * is no deadline on a busy machine.
 */
static FIRN_UNUSED bool
tp_wait_answers(struct bench *b, struct tp *t, uint64_t lo, uint64_t hi, unsigned max_rounds)
{
	uint64_t until = firn_mono_ns() + 10000000000ull;

	for (unsigned r = 0; r < max_rounds || firn_mono_ns() < until; r++) {
		uint64_t s;

		for (s = lo; s <= hi; s++)
			if (t->acks[s].answers == 0)
				break;
		if (s > hi)
			return true;
		bench_pump(b, 1, true);
	}
	{
		struct firn_ingest_stats st;

		firn_ingest_stats(b->ing, &st);
		fprintf(stderr,
		        "# not answered: rx %llu data %llu dropped %llu new %llu appended %llu "
		        "acked %llu answers %llu busy %llu pool %llu sealed %llu credit %llu "
		        "reasm_full %llu dup_pending %llu tx_dropped %llu waiting %llu\n",
		        (unsigned long long)st.rx_datagrams, (unsigned long long)st.rx_data,
		        (unsigned long long)st.rx_dropped, (unsigned long long)st.records_new,
		        (unsigned long long)st.records_appended,
		        (unsigned long long)st.records_acked, (unsigned long long)st.answers,
		        (unsigned long long)st.refused_busy, (unsigned long long)st.refused_pool,
		        (unsigned long long)st.refused_sealed,
		        (unsigned long long)st.refused_credit, (unsigned long long)st.reasm_full,
		        (unsigned long long)st.dup_pending, (unsigned long long)st.tx_dropped,
		        (unsigned long long)st.waiting);
	}
	return false;
}

/* Pump until nothing waits for durability (or 10 s). */
static FIRN_UNUSED bool
bench_wait_idle(struct bench *b)
{
	uint64_t until = firn_mono_ns() + 10000000000ull;
	struct firn_ingest_stats st;

	do {
		bench_pump(b, 1, true);
		firn_ingest_stats(b->ing, &st);
	} while (st.waiting > 0 && firn_mono_ns() < until);
	return st.waiting == 0;
}

/* Read every record of a shard (durable ones). Calls fn for each. */
static FIRN_UNUSED unsigned
bench_read_shard(struct bench *b, uint64_t sid, uint32_t shard,
                 void (*fn)(void *arg, uint32_t shard, const struct firn_record *r), void *arg)
{
	struct firn_read_req req = {
	        .from = FIRN_READ_AT_COUNTER, .max_records = 1000, .max_bytes = 64u << 20};
	struct firn_read_res res;
	unsigned total = 0;

	for (;;) {
		int rc = firn_store_read(b->st, sid, shard, &req, &res);

		if (rc == -ENOENT)
			return total;
		assert_int_equal(rc, 0);
		uint32_t got = res.n;

		for (uint32_t i = 0; i < got; i++)
			fn(arg, shard, &res.recs[i]);
		total += got;
		req.counter = res.next_counter;
		firn_read_res_free(&res);
		if (got == 0)
			return total;
	}
}

#endif /* FIRN_INGEST_FAKE_H */
