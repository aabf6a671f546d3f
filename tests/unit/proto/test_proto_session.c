/*
 * test_proto_session.c - the whole protocol, end to end, over a bad network.
 *
 * A minimal producer and the server talk through a simulated network that
 * loses, delays, reorders and duplicates datagrams in both directions, on a
 * fake millisecond clock, all on one thread. The server hands records to a
 * fake store that makes them durable a few milliseconds later (group
 * commit). Twice during the run the appliance crashes: the server is
 * destroyed, records not yet durable vanish from the store (recovery cuts
 * them), and a new server is seeded from what the store kept
 * (doc/protocol.md §8.3). The producer notices (RESET), handshakes again,
 * and keeps resending what was never DURABLE-acked.
 *
 * At the end every record must be in the store exactly once, with the
 * bytes that were sent, and the producer must hold a DURABLE ack for each
 * with the (shard, counter) the store really gave it, across the crash.
 *
 * The producer here is deliberately simple: it resends a whole record when
 * no DURABLE ack came within its timeout, and relies on reassembly keeping
 * partial records to fill holes. It obeys credit and the W rule, and stops
 * sending stream names once a RECEIVED ack confirms the binding.
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

#define NREC 3000
#define N_SHARDS 4
#define NET_SLOTS 8192
#define STEPS_MAX 200000
#define DURABLE_DELAY 15
#define RTO_MS 60
#define LIVENESS_MS 500

/* ---- the network ------------------------------------------------------------ */

struct dgram {
	uint64_t at;
	bool to_server, used;
	uint16_t len;
	uint8_t buf[FIRN_PROTO_DGRAM_DEFAULT];
};

static struct dgram net[NET_SLOTS];
static unsigned loss_pct = 5, dup_pct = 3, sent_this_ms;
static uint64_t now;
static struct firn_proto_addr caddr;

static void
net_send(bool to_server, const uint8_t *p, size_t len)
{
	int copies = test_below(100) < dup_pct ? 2 : 1;

	assert_true(len <= FIRN_PROTO_DGRAM_DEFAULT);
	sent_this_ms++;
	for (int c = 0; c < copies; c++) {
		if (test_below(100) < loss_pct)
			continue;
		for (unsigned i = 0; i < NET_SLOTS; i++) {
			if (net[i].used)
				continue;
			net[i].used = true;
			net[i].to_server = to_server;
			net[i].at = now + test_below(4); /* 0..3 ms: reorders */
			net[i].len = (uint16_t)len;
			memcpy(net[i].buf, p, len);
			break;
		}
	}
}

/* ---- the fake store -------------------------------------------------------------- */

struct srec {
	uint64_t seq, counter, durable_at;
	uint32_t shard;
	bool durable;
};

static struct srec srecs[NREC * 4];
static unsigned n_srecs, n_cut;
static uint64_t shard_next[N_SHARDS];

/* ---- the producer ------------------------------------------------------------------- */

struct prec {
	uint8_t key[8];
	uint8_t *data;
	uint32_t len;
	bool sent, acked;
	uint64_t sent_at;
	uint32_t shard;
	uint64_t counter;
};

static struct prec recs[NREC + 1]; /* by seq */
static struct firn_proto_credit credit;
static uint64_t next_seq = 1, oldest_unacked = 1;
static bool stream_confirmed;
static uint64_t bind_pn_lo, bind_pn_hi; /* packets that carried the binding */
static unsigned acks_ok, acks_dup, resends, crashes_seen, liveness_restarts;
static uint64_t last_auth_rx; /* last authenticated datagram from the server */

static void
make_records(void)
{
	for (uint64_t s = 1; s <= NREC; s++) {
		struct prec *r = &recs[s];
		unsigned kind = test_below(100);

		r->len = kind < 75   ? 10 + test_below(300)
		         : kind < 97 ? 1000 + test_below(7000)
		                     : 20000 + test_below(200000);
		r->data = malloc(r->len);
		assert_non_null(r->data);
		test_fill(r->data, r->len);
		for (int k = 0; k < 8; k++)
			r->key[k] = (uint8_t)('a' + test_below(26));
	}
}

static void
on_server_frames(const uint8_t *plain, size_t n, uint64_t pn)
{
	struct firn_proto_dec d;
	struct firn_proto_frame f;
	struct firn_proto_range rg[FIRN_PROTO_ACK_RANGES_MAX];

	firn_proto_dec_init(&d, plain, n, false);
	while (firn_proto_dec_next(&d, &f) > 0) {
		if (f.type == FIRN_PROTO_FR_ACK_RECEIVED) {
			unsigned k = firn_proto_ack_ranges(&f, rg, FIRN_PROTO_ACK_RANGES_MAX);

			/* Any packet that carried the binding and arrived confirms it. */
			for (unsigned i = 0; i < k && !stream_confirmed; i++)
				if (bind_pn_lo > 0 && rg[i].lo <= bind_pn_hi &&
				    rg[i].hi >= bind_pn_lo)
					stream_confirmed = true;
		} else if (f.type == FIRN_PROTO_FR_ACK_DURABLE) {
			for (unsigned i = 0; i < f.durable.n; i++) {
				struct firn_proto_durable e;

				firn_proto_durable_get(&f, i, &e);
				for (unsigned j = 0; j < e.count; j++) {
					struct prec *r = &recs[e.seq + j];

					assert_true(e.seq + j <= NREC);
					if (e.status == FIRN_PROTO_E_OVERLOADED)
						continue; /* resent after the timeout */
					assert_int_equal(e.status, FIRN_PROTO_OK);
					if (r->acked) {
						/* A repeated answer must say the same thing. */
						assert_int_equal(r->shard, e.shard);
						assert_true(r->counter == e.counter + j);
						acks_dup++;
						continue;
					}
					r->acked = true;
					r->shard = e.shard;
					r->counter = e.counter + j;
					firn_proto_credit_release(&credit, r->len);
					acks_ok++;
				}
			}
		} else if (f.type == FIRN_PROTO_FR_CREDIT) {
			firn_proto_credit_apply(&credit, pn, f.credit.max_seq, f.credit.window);
		}
	}
	while (oldest_unacked <= NREC && recs[oldest_unacked].acked)
		oldest_unacked++;
}

/* Send record seq whole (all its fragments), packing into the open datagram. */
struct out {
	struct firn_proto_enc e;
	bool open;
	uint8_t buf[FIRN_PROTO_DGRAM_DEFAULT];
};

static void
out_flush(struct firn_proto_client *c, struct out *o)
{
	int n;

	if (!o->open)
		return;
	n = firn_proto_client_seal(c, &o->e);
	assert_true(n > 0);
	net_send(true, o->buf, (size_t)n);
	o->open = false;
}

static void
out_record(struct firn_proto_client *c, struct out *o, uint64_t seq)
{
	struct prec *r = &recs[seq];
	struct firn_proto_rec fr = {.seq = seq,
	                            .key = r->key,
	                            .key_len = 8,
	                            .data = r->data,
	                            .len = r->len,
	                            .stream_ref = 0};
	uint32_t off = 0;
	int rc;

	do {
		if (!o->open) {
			assert_int_equal(
			        firn_proto_client_enc_begin(c, &o->e, o->buf, sizeof(o->buf), 0),
			        0);
			o->open = true;
		}
		rc = firn_proto_enc_record(&o->e, &fr, stream_confirmed ? NULL : "events",
		                           stream_confirmed ? 0 : 6, &off);
		assert_true(rc >= 0);
		if (!stream_confirmed) {
			uint64_t pn = o->e.buf[16] | (uint64_t)o->e.buf[17] << 8 |
			              (uint64_t)o->e.buf[18] << 16 | (uint64_t)o->e.buf[19] << 24;

			if (bind_pn_lo == 0)
				bind_pn_lo = pn;
			bind_pn_hi = FIRN_MAX(bind_pn_hi, pn);
		}
		if (rc == 0)
			out_flush(c, o);
	} while (rc == 0);
	r->sent = true;
	r->sent_at = now;
}

static void
producer_step(struct firn_proto_client **cp, const uint32_t dedupe_w)
{
	struct firn_proto_client *c = *cp;
	static struct out o;
	uint8_t hs[FIRN_PROTO_DGRAM_MAX];
	int n;

	if (firn_proto_client_state(c) == FIRN_PROTO_CLIENT_FAILED ||
	    firn_proto_client_state(c) == FIRN_PROTO_CLIENT_IDLE) {
		n = firn_proto_client_start(c, now, hs, sizeof(hs));
		net_send(true, hs, (size_t)n);
		return;
	}
	if (firn_proto_client_state(c) != FIRN_PROTO_CLIENT_ESTABLISHED) {
		n = firn_proto_client_tick(c, now, hs, sizeof(hs));
		if (n > 0)
			net_send(true, hs, (size_t)n);
		return;
	}
	/*
	 * Liveness (doc/protocol.md §11): records in flight and nothing
	 * authenticated from the server for LIVENESS_MS: the session is gone
	 * (an appliance that restarted with a new cookie secret cannot send a
	 * valid RESET). Handshake again.
	 */
	if (oldest_unacked < next_seq && now - last_auth_rx >= LIVENESS_MS) {
		liveness_restarts++;
		n = firn_proto_client_start(c, now, hs, sizeof(hs));
		net_send(true, hs, (size_t)n);
		return;
	}
	o.open = false;
	sent_this_ms = 0;
	/* Resends first: anything sent and not durable-acked for RTO_MS (paced). */
	for (uint64_t s = oldest_unacked; s < next_seq && sent_this_ms < 200; s++) {
		if (recs[s].acked || now - recs[s].sent_at < RTO_MS)
			continue;
		out_record(c, &o, s);
		resends++;
	}
	/* New records, within credit and the W rule, a few datagrams' worth per ms. */
	for (int k = 0; k < 12 && next_seq <= NREC; k++) {
		if (next_seq >= oldest_unacked + dedupe_w ||
		    firn_proto_credit_take(&credit, next_seq, recs[next_seq].len) < 0)
			break;
		out_record(c, &o, next_seq);
		next_seq++;
	}
	out_flush(c, &o);
}

static void
producer_recv(struct firn_proto_client *c, uint8_t *p, size_t len)
{
	uint8_t reply[FIRN_PROTO_DGRAM_MAX], *plain;
	uint64_t pn;
	int n;

	if (len > 5 && p[5] == FIRN_PROTO_DATA) {
		n = firn_proto_client_open(c, p, len, &plain, &pn);
		if (n >= 0) {
			last_auth_rx = now;
			on_server_frames(plain, (size_t)n, pn);
		}
		return;
	}
	bool was_up = firn_proto_client_state(c) == FIRN_PROTO_CLIENT_ESTABLISHED;

	n = firn_proto_client_handshake(c, p, len, now, reply, sizeof(reply));
	if (n > 0)
		net_send(true, reply, (size_t)n);
	if (firn_proto_client_state(c) == FIRN_PROTO_CLIENT_ESTABLISHED &&
	    p[5] == FIRN_PROTO_ACCEPT) {
		last_auth_rx = now;
		const struct firn_proto_session_params *sp = firn_proto_client_params(c);

		/* A new session: fresh credit (in flight is what we still owe), rebind. */
		uint64_t used = credit.used;

		credit = sp->credit;
		credit.used = used;
		stream_confirmed = false;
		bind_pn_lo = bind_pn_hi = 0;
	}
	if (was_up && firn_proto_client_state(c) == FIRN_PROTO_CLIENT_FAILED &&
	    firn_proto_client_error(c, NULL) == FIRN_PROTO_E_SESSION_EXPIRED)
		crashes_seen++;
}

/* ---- the appliance ---------------------------------------------------------------- */

struct appliance {
	struct firn_proto_server *srv;
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key key;
};

static void
queue_ack(struct appliance *ap, struct firn_proto_session *ss, const struct firn_proto_durable *d)
{
	uint8_t out[FIRN_PROTO_DGRAM_MAX];

	while (firn_proto_session_queue_durable(ss, d) == -ENOSPC) {
		int n = firn_proto_session_flush(ap->srv, ss, now, false, out, sizeof(out));

		assert_true(n > 0);
		net_send(false, out, (size_t)n);
	}
}

static void
server_recv(struct appliance *ap, uint8_t *p, size_t len)
{
	uint8_t out[FIRN_PROTO_DGRAM_MAX], *plain;
	struct firn_proto_session *ss;
	struct firn_proto_rx rx;
	struct firn_proto_rx_item it;
	int n, rc;

	if (len > 5 && p[5] != FIRN_PROTO_DATA) {
		n = firn_proto_server_handshake(ap->srv, &caddr, p, len, now, out, sizeof(out),
		                                &ss);
		if (n > 0)
			net_send(false, out, (size_t)n);
		return;
	}
	n = firn_proto_server_open(ap->srv, &caddr, p, len, now, &ss, &plain);
	if (n == -ENOENT) {
		uint64_t sid = 0;

		for (int i = 0; i < 8; i++)
			sid |= (uint64_t)p[8 + i] << (8 * i);
		n = firn_proto_server_reset(ap->srv, sid, len, out, sizeof(out));
		if (n > 0)
			net_send(false, out, (size_t)n);
		return;
	}
	if (n < 0)
		return;
	firn_proto_rx_begin(&rx, ap->srv, ss, plain, (size_t)n, now);
	while ((rc = firn_proto_rx_next(&rx, &it)) > 0) {
		if (it.kind == FIRN_PROTO_RX_RECORD) {
			struct prec *r = &recs[it.rec.seq];
			struct srec *s = &srecs[n_srecs++];

			/* What arrived is what was sent. */
			assert_true(it.rec.seq >= 1 && it.rec.seq <= NREC);
			assert_int_equal(it.rec.len, r->len);
			assert_memory_equal(it.rec.data, r->data, r->len);
			assert_memory_equal(it.rec.key, r->key, 8);
			s->seq = it.rec.seq;
			s->shard = r->key[0] % N_SHARDS;
			s->counter = shard_next[s->shard]++;
			s->durable_at = now + DURABLE_DELAY;
			s->durable = false;
			if (it.reasm_slot >= 0)
				firn_proto_reasm_release(firn_proto_session_reasm(ss),
				                         it.reasm_slot);
		} else if (it.kind == FIRN_PROTO_RX_ANSWER) {
			queue_ack(ap, ss, &it.ack);
		}
	}
	assert_true(rc == 0);
}

static void
server_step(struct appliance *ap)
{
	struct firn_proto_producer *p = firn_proto_producer_get(firn_proto_server_dedupe(ap->srv),
	                                                        TEST_PRODUCER, false, now);
	struct firn_proto_session *ss;
	uint8_t out[FIRN_PROTO_DGRAM_MAX];
	int n;

	if (p == NULL)
		return;
	/* Group commit: what has waited DURABLE_DELAY is now on "disk". */
	for (unsigned i = 0; i < n_srecs; i++) {
		struct srec *s = &srecs[i];
		struct firn_proto_durable d;

		if (s->durable || s->durable_at > now)
			continue;
		s->durable = true;
		assert_int_equal(firn_proto_record_done(ap->srv, p, s->seq, s->shard, s->counter,
		                                        FIRN_PROTO_OK),
		                 0);
		ss = firn_proto_producer_session(p);
		if (ss == NULL)
			continue; /* the producer will resend and get a DUPLICATE answer */
		d = (struct firn_proto_durable){s->seq, s->counter, s->shard, 1, 0, 0};
		queue_ack(ap, ss, &d);
	}
	ss = firn_proto_producer_session(p);
	if (ss == NULL)
		return;
	firn_proto_session_grant(ss, 256, 512 * 1024);
	while ((n = firn_proto_session_flush(ap->srv, ss, now, false, out, sizeof(out))) > 0)
		net_send(false, out, (size_t)n);
	if (now % 100 == 0)
		firn_proto_server_tick(ap->srv, now);
}

static uint8_t cookie_secret[32];

static void
appliance_start(struct appliance *ap)
{
	firn_proto_server_conf_defaults(&ap->conf);
	ap->conf.cookie_secret = cookie_secret;
	ap->conf.max_sessions = 4;
	ap->conf.max_producers = 4;
	ap->conf.reasm_pool_bytes = 16u << 20;
	ap->conf.reasm_slots = 8;
	ap->conf.reasm_session_bytes = 8u << 20;
	ap->conf.credit_window = 512 * 1024;
	ap->srv = test_server(&ap->conf, &ap->key);
}

/*
 * The crash: drop what was not durable, restart, seed from what was. With
 * new_secret the appliance comes back with another cookie secret, so its
 * RESETs are not believed and the producer must notice by liveness.
 */
static void
appliance_crash(struct appliance *ap, bool new_secret)
{
	unsigned kept = 0;

	firn_proto_server_destroy(ap->srv);
	for (unsigned i = 0; i < n_srecs; i++)
		if (srecs[i].durable)
			srecs[kept++] = srecs[i];
	fprintf(stderr, "# crash at %llu ms: %u records durable, %u cut\n", (unsigned long long)now,
	        kept, n_srecs - kept);
	n_cut += n_srecs - kept;
	n_srecs = kept;
	if (new_secret)
		cookie_secret[0] ^= 0xff;
	/* Counters restart after the last durable record of each shard. */
	memset(shard_next, 0, sizeof(shard_next));
	for (unsigned i = 0; i < n_srecs; i++)
		shard_next[srecs[i].shard] =
		        FIRN_MAX(shard_next[srecs[i].shard], srecs[i].counter + 1);
	appliance_start(ap);
	for (unsigned i = 0; i < n_srecs; i++)
		assert_int_equal(firn_proto_dedupe_seed(firn_proto_server_dedupe(ap->srv),
		                                        TEST_PRODUCER, srecs[i].seq, srecs[i].shard,
		                                        srecs[i].counter, now),
		                 0);
}

static void
test_lossy_with_crash(void **state)
{
	struct appliance ap;
	struct firn_proto_client *c = test_client(TEST_SECRET, TEST_PRODUCER, 1472);
	const uint32_t W = 1024;
	static unsigned count[NREC + 1];
	unsigned crashes = 0;
	uint64_t step;

	test_addr(&caddr, 5, 6000);
	test_fill(cookie_secret, sizeof(cookie_secret));
	make_records();
	appliance_start(&ap);
	firn_proto_credit_init(&credit, 0, 0);
	for (step = 0; step < STEPS_MAX; step++) {
		now = 1000 + step;
		/* Crash at the first moment past each mark when something is not yet durable. */
		if ((step >= 900 && crashes == 0) || (step >= 2300 && crashes == 1)) {
			bool pending = false;

			for (unsigned i = 0; i < n_srecs && !pending; i++)
				pending = !srecs[i].durable;
			if (pending)
				appliance_crash(&ap, crashes++ == 1);
		}
		for (unsigned i = 0; i < NET_SLOTS; i++) {
			if (!net[i].used || net[i].at > now)
				continue;
			net[i].used = false;
			if (net[i].to_server)
				server_recv(&ap, net[i].buf, net[i].len);
			else
				producer_recv(c, net[i].buf, net[i].len);
		}
		server_step(&ap);
		producer_step(&c, W);
		if (oldest_unacked > NREC)
			break;
	}
	fprintf(stderr,
	        "# done at %llu ms: %u acks, %u repeated, %u resends, %u resets, %u liveness; "
	        "%llu dup answers, %llu reasm timeouts, %llu refused for credit\n",
	        (unsigned long long)step, acks_ok, acks_dup, resends, crashes_seen,
	        liveness_restarts, (unsigned long long)firn_proto_server_stats(ap.srv)->dup_done,
	        (unsigned long long)firn_proto_server_stats(ap.srv)->reasm_timeout,
	        (unsigned long long)firn_proto_server_stats(ap.srv)->refused_credit);
	{
		const struct firn_proto_stats *st = firn_proto_server_stats(ap.srv);

		fprintf(stderr,
		        "# server: records %llu fragments %llu dup_pending %llu stale %llu "
		        "reasm_full %llu reasm_bad %llu reasm_dup %llu malformed %llu aead %llu "
		        "replayed %llu unknown %llu busy %llu; oldest_unacked %llu next %llu\n",
		        (unsigned long long)st->records, (unsigned long long)st->fragments,
		        (unsigned long long)st->dup_pending, (unsigned long long)st->stale,
		        (unsigned long long)st->reasm_full, (unsigned long long)st->reasm_bad,
		        (unsigned long long)st->reasm_dup, (unsigned long long)st->malformed,
		        (unsigned long long)st->aead_failed, (unsigned long long)st->replayed,
		        (unsigned long long)st->unknown_session,
		        (unsigned long long)st->refused_busy, (unsigned long long)oldest_unacked,
		        (unsigned long long)next_seq);
	}
	assert_int_equal(crashes, 2);
	assert_true(oldest_unacked > NREC);
	assert_int_equal(acks_ok, NREC);
	assert_true(crashes_seen >= 1);      /* a RESET after the first crash */
	assert_true(n_cut > 0);              /* some records died with the appliance */
	assert_true(liveness_restarts >= 1); /* none believable after the second */
	/* Exactly once, at the acked position. */
	memset(count, 0, sizeof(count));
	for (unsigned i = 0; i < n_srecs; i++) {
		const struct srec *s = &srecs[i];

		assert_true(s->durable);
		count[s->seq]++;
		assert_int_equal(recs[s->seq].shard, s->shard);
		assert_true(recs[s->seq].counter == s->counter);
	}
	for (uint64_t s = 1; s <= NREC; s++)
		assert_int_equal(count[s], 1);
	/* The producer's bytes in flight all came back. */
	assert_int_equal(credit.used, 0);
	for (uint64_t s = 1; s <= NREC; s++)
		free(recs[s].data);
	firn_proto_client_destroy(c);
	firn_proto_server_destroy(ap.srv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_lossy_with_crash),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL) == 0 ? 0 : 1;
}
