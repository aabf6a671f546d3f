/*
 * ack.c - what the appliance tells the producer, and the timers that stand
 * in when it says nothing.
 *
 * RECEIVED acks (doc/protocol.md §7.1) are about datagrams. Each one lists,
 * as a cumulative number plus ranges, the packet numbers the appliance has
 * seen. A datagram covered by it is delivered: its round trip feeds the
 * RTT estimate, the congestion window grows, and any stream binding it
 * carried is now known to the appliance, so later datagrams can leave the
 * name out. A datagram three numbers below the newest acked one was lost
 * (reordering on one path is rarely deeper), and so is one below it that
 * has gone unacked for two round trips: its record pieces are queued to be
 * sent again, and the window halves, once per round trip of losses.
 *
 * Silence is not loss. When no ack at all arrives for a probe timeout
 * (srtt + 4 rttvar + the server's 1 ms ack delay, doubling while it goes
 * on), the client sends a PING with ACK_NOW instead of declaring its whole
 * window lost, as QUIC does. A busy appliance that stalled for a few
 * milliseconds then answers the probe with an ack of everything, and
 * nothing is resent; if the tail really was lost, the probe's ack is newer
 * than the tail, and the rules above find it.
 *
 * DURABLE acks (§7.2) are about records, and they are the contract: a run
 * of producer sequences and the shard and counters they got. Each record
 * is answered once, through the callback; a DUPLICATE answer for a record
 * already answered is ignored. OVERLOADED is not an answer: the record
 * gives its credit back and is resent after a short, growing pause.
 *
 * The record timer is the safety net under all of this. A record with no
 * DURABLE ack for durable_timeout (doubling) is resent whole, whatever
 * happened to its datagrams, and one unanswered for give_up_ms is answered
 * E_TIMEOUT (past the appliance's dedupe horizon a resend could be stored
 * twice, §8.3).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

void
client_complete(struct firn_client *c, struct crec *r, int status, bool dup, uint32_t shard,
                uint64_t counter)
{
	struct firn_client_ack a;

	if (r->state == REC_DONE || r->state == REC_FREE)
		return;
	if (r->charged) {
		firn_proto_credit_release(&c->credit, r->len);
		r->charged = false;
	}
	if (r->state == REC_INFLIGHT)
		c->n_inflight--;
	r->state = REC_DONE;
	c->n_open--;
	c->delivered++;
	if (status == FIRN_CLIENT_OK) {
		c->st.acked++;
		if (dup)
			c->st.duplicates++;
	} else {
		c->st.failed++;
	}
	if (c->conf.on_ack == NULL)
		return;
	a.cookie = r->cookie;
	a.seq = r->seq;
	a.status = status;
	a.duplicate = dup;
	a.shard = status == FIRN_CLIENT_OK ? shard : 0;
	a.counter = status == FIRN_CLIENT_OK ? counter : 0;
	a.stream = r->ref;
	a.key = c->arena + r->arena_off;
	a.key_len = r->key_len;
	a.hash = r->hash;
	a.data = c->arena + r->arena_off + r->key_len;
	a.len = r->len;
	c->conf.on_ack(c->conf.arg, &a);
}

void
client_advance_tail(struct firn_client *c)
{
	while (c->tail_seq < c->new_seq) {
		struct crec *r = client_rec(c, c->tail_seq);

		if (r->state != REC_DONE)
			break;
		r->state = REC_FREE;
		c->tail_seq++;
	}
	if (c->tail_seq == c->put_seq)
		c->arena_head = c->arena_tail = 0;
	else
		c->arena_tail = client_rec(c, c->tail_seq)->arena_off;
}

void
client_reset_session(struct firn_client *c)
{
	c->pkt_tail = c->pkt_next = 1;
	c->pkts_inflight = 0;
	memset(c->pkts, 0, (c->pkt_mask + 1) * sizeof(*c->pkts));
	c->item_head = c->item_tail = 0;
	c->retx_head = c->retx_tail = 0;
	c->cur_active = false;
	c->enc_open = false;
	c->tx_n = c->tx_sent = 0;
	c->largest_acked = 0;
	c->recovery_pn = 0;
	c->cwnd = CLIENT_CWND_INIT;
	c->ssthresh = UINT32_MAX;
	c->cwnd_acc = 0;
	c->confirmed = 0;
	c->pto_count = 0;
	c->pto_sent_us = 0;
	c->last_ack_us = c->now_us;
	/* Everything sent in an earlier session may not have arrived: send it again. */
	c->sweep = c->tail_seq;
	c->sweep_end = c->new_seq;
}

/* ---- RECEIVED ------------------------------------------------------------------------ */

static void
retire_packets(struct firn_client *c)
{
	while (c->pkt_tail < c->pkt_next) {
		struct cpkt *p = &c->pkts[c->pkt_tail & c->pkt_mask];

		if (p->state == PKT_INFLIGHT)
			break;
		if (p->state == PKT_DONE)
			c->item_tail = p->item0 + p->n_items;
		p->state = PKT_FREE;
		c->pkt_tail++;
	}
}

static void
pkt_delivered(struct firn_client *c, struct cpkt *p)
{
	p->state = PKT_DONE;
	c->pkts_inflight--;
	c->confirmed |= p->bound;
	if (c->cwnd < c->ssthresh) {
		c->cwnd++;
	} else if (++c->cwnd_acc >= c->cwnd) {
		c->cwnd_acc = 0;
		c->cwnd++;
	}
	c->cwnd = FIRN_MIN(c->cwnd, CLIENT_CWND_MAX);
}

static void
pkt_lost(struct firn_client *c, struct cpkt *p)
{
	p->state = PKT_DONE;
	c->pkts_inflight--;
	c->st.lost_datagrams++;
	for (uint16_t i = 0; i < p->n_items; i++) {
		const struct citem *it = &c->items[(p->item0 + i) & c->item_mask];
		const struct crec *r = client_rec(c, it->seq);

		if (it->seq >= c->tail_seq && r->seq == it->seq && r->state == REC_INFLIGHT)
			client_push_retx(c, it->seq, it->off, it->len);
	}
	/* Halve once per round trip of losses: only for datagrams sent after the last cut. */
	if (p->pn > c->recovery_pn) {
		c->ssthresh = FIRN_MAX(c->cwnd / 2, CLIENT_CWND_MIN);
		c->cwnd = c->ssthresh;
		c->cwnd_acc = 0;
		c->recovery_pn = c->pkt_next - 1;
	}
}

static void
rtt_sample(struct firn_client *c, uint64_t sent_us, uint16_t delay_us)
{
	uint64_t s = c->now_us > sent_us ? c->now_us - sent_us : 1;

	if (s > delay_us)
		s -= delay_us;
	s = FIRN_MIN(s, (uint64_t)UINT32_MAX / 2);
	c->latest_rtt_us = (uint32_t)s;
	if (c->srtt_us == 0) {
		c->srtt_us = (uint32_t)s;
		c->rttvar_us = (uint32_t)(s / 2);
		return;
	}
	{
		uint64_t d = s > c->srtt_us ? s - c->srtt_us : c->srtt_us - s;

		c->rttvar_us = (uint32_t)((3ull * c->rttvar_us + d) / 4);
		c->srtt_us = (uint32_t)((7ull * c->srtt_us + s) / 8);
	}
}

/* Two round trips (doc/protocol.md §7.1), at least 1 ms. */
static uint64_t
time_threshold_us(const struct firn_client *c)
{
	uint64_t r = FIRN_MAX(c->srtt_us, c->latest_rtt_us);

	return FIRN_MAX(2 * r, 1000ull);
}

static void
on_ack_received(struct firn_client *c, const struct firn_proto_frame *f)
{
	struct firn_proto_range rg[FIRN_PROTO_ACK_RANGES_MAX];
	unsigned n = firn_proto_ack_ranges(f, rg, FIRN_PROTO_ACK_RANGES_MAX), ri = 0;
	uint64_t cum = f->ack.cum, largest = n > 0 ? rg[n - 1].hi : cum, thresh;
	bool news = false;

	if (c->pkt_next <= 1)
		return;
	largest = FIRN_MIN(largest, c->pkt_next - 1);
	if (largest >= c->pkt_tail && largest > c->largest_acked) {
		const struct cpkt *p = &c->pkts[largest & c->pkt_mask];

		if (p->state == PKT_INFLIGHT && p->pn == largest)
			rtt_sample(c, p->sent_us, f->ack.delay_us);
	}
	c->largest_acked = FIRN_MAX(c->largest_acked, largest);
	thresh = time_threshold_us(c);
	for (uint64_t pn = c->pkt_tail; pn <= largest; pn++) {
		struct cpkt *p = &c->pkts[pn & c->pkt_mask];
		bool acked;

		if (p->state != PKT_INFLIGHT || p->pn != pn)
			continue;
		while (ri < n && rg[ri].hi < pn)
			ri++;
		acked = pn <= cum || (ri < n && rg[ri].lo <= pn);
		if (acked) {
			pkt_delivered(c, p);
			news = true;
		} else if (pn + 3 <= c->largest_acked || c->now_us - p->sent_us >= thresh) {
			pkt_lost(c, p);
		}
	}
	if (news) {
		c->last_ack_us = c->now_us;
		c->pto_count = 0;
	}
	retire_packets(c);
}

uint64_t
client_rto_us(const struct firn_client *c)
{
	if (c->srtt_us == 0)
		return 50000;
	return (uint64_t)c->srtt_us + FIRN_MAX(4ull * c->rttvar_us, 1000ull) + 1000;
}

static uint64_t
pto_us(const struct firn_client *c)
{
	return client_rto_us(c) << FIRN_MIN(c->pto_count, 6u);
}

uint64_t
client_loss_due_us(const struct firn_client *c)
{
	if (c->pkts_inflight == 0)
		return UINT64_MAX;
	return FIRN_MAX(c->last_ack_us, c->pto_sent_us) + pto_us(c);
}

void
client_loss_timer(struct firn_client *c)
{
	uint64_t thresh = time_threshold_us(c);

	if (c->pkts_inflight == 0)
		return;
	/* Below the newest acked datagram, age alone decides (sent in order: stop at a young one).
	 */
	for (uint64_t pn = c->pkt_tail; pn < c->largest_acked && pn < c->pkt_next; pn++) {
		struct cpkt *p = &c->pkts[pn & c->pkt_mask];

		if (p->state != PKT_INFLIGHT)
			continue;
		if (c->now_us - p->sent_us < thresh)
			break;
		pkt_lost(c, p);
	}
	retire_packets(c);
	/* No ack for a probe timeout: ask for one rather than assume the worst. */
	if (c->pkts_inflight > 0 && c->now_us >= client_loss_due_us(c) &&
	    client_send_probe(c) == 0) {
		c->pto_count++;
		c->pto_sent_us = c->now_us;
		c->st.probes++;
	}
}

/* ---- DURABLE ------------------------------------------------------------------------ */

static void
on_durable(struct firn_client *c, const struct firn_proto_durable *d)
{
	for (uint32_t j = 0; j < d->count; j++) {
		uint64_t seq = d->seq + j;
		struct crec *r = client_rec(c, seq);

		if (seq < c->tail_seq || seq >= c->new_seq || r->seq != seq)
			continue;
		if (r->state != REC_INFLIGHT && r->state != REC_WAIT)
			continue;
		if (d->status == FIRN_PROTO_E_OVERLOADED) {
			/* Not an answer: give the credit back and resend after a pause. */
			if (r->state != REC_INFLIGHT)
				continue;
			c->st.overloaded++;
			if (r->charged) {
				firn_proto_credit_release(&c->credit, r->len);
				r->charged = false;
			}
			c->n_inflight--;
			r->state = REC_WAIT;
			r->deadline_us = c->now_us + (2000ull << FIRN_MIN(r->tries, 6u));
			r->tries++;
			continue;
		}
		client_complete(c, r, d->status, d->flags & FIRN_PROTO_DF_DUPLICATE, d->shard,
		                d->status == FIRN_PROTO_OK ? d->counter + j : 0);
	}
}

static void
on_error(struct firn_client *c, const struct firn_proto_frame *f)
{
	uint16_t code = f->error.code;
	char where[128] = "";
	int rc;

	if (code == FIRN_PROTO_E_SESSION_EXPIRED || code == FIRN_PROTO_E_CLOSED) {
		client_handshake_start(c);
		return;
	}
	if (code == FIRN_PROTO_E_REDIRECT) {
		char a[72];

		client_format_addr(&f->error.redirect, a, sizeof(a));
		snprintf(where, sizeof(where), " (connect to %s instead)", a);
	}
	switch (code) {
	case FIRN_PROTO_E_READ_ONLY:
		rc = -EROFS;
		break;
	case FIRN_PROTO_E_REDIRECT:
		rc = -EREMOTE;
		break;
	case FIRN_PROTO_E_AUTH:
		rc = -EACCES;
		break;
	case FIRN_PROTO_E_PROTOCOL:
		rc = -EPROTO;
		break;
	default:
		rc = -ENOTCONN;
		break;
	}
	client_fail(c, rc, "%s: appliance ended the session: %s%s%s%.*s", c->endpoint,
	            firn_proto_status_name(code), where, f->error.msg_len ? ": " : "",
	            (int)f->error.msg_len, f->error.msg ? f->error.msg : "");
	client_fatal(c, code, rc);
}

void
client_on_frames(struct firn_client *c, const uint8_t *plain, size_t len, uint64_t pn)
{
	struct firn_proto_dec d;
	struct firn_proto_frame f;
	int rc;

	firn_proto_dec_init(&d, plain, len, false);
	while ((rc = firn_proto_dec_next(&d, &f)) > 0) {
		switch (f.type) {
		case FIRN_PROTO_FR_ACK_RECEIVED:
			on_ack_received(c, &f);
			break;
		case FIRN_PROTO_FR_ACK_DURABLE:
			for (unsigned i = 0; i < f.durable.n; i++) {
				struct firn_proto_durable e;

				firn_proto_durable_get(&f, i, &e);
				on_durable(c, &e);
			}
			break;
		case FIRN_PROTO_FR_CREDIT:
			firn_proto_credit_apply(&c->credit, pn, f.credit.max_seq, f.credit.window);
			break;
		case FIRN_PROTO_FR_ERROR:
			on_error(c, &f);
			return;
		case FIRN_PROTO_FR_CLOSE:
			if (f.close.code == FIRN_PROTO_E_PROTOCOL) {
				on_error(c, &(struct firn_proto_frame){
				                    .type = FIRN_PROTO_FR_ERROR,
				                    .error = {.code = FIRN_PROTO_E_PROTOCOL}});
				return;
			}
			client_handshake_start(c); /* closed (replaced, shutting down): again */
			return;
		default:
			break;
		}
	}
	if (rc < 0)
		c->st.rx_dropped++;
}

/* ---- records ------------------------------------------------------------------------ */

void
client_record_timer(struct firn_client *c)
{
	uint64_t give_up = (uint64_t)c->conf.give_up_ms * 1000;
	bool up = c->state == CL_ESTABLISHED;

	for (uint64_t s = c->tail_seq; s < c->new_seq; s++) {
		struct crec *r = client_rec(c, s);
		uint64_t dto;

		if (r->state != REC_INFLIGHT && r->state != REC_WAIT)
			continue;
		if (give_up > 0 && r->first_tx_us != 0 && c->now_us - r->first_tx_us >= give_up) {
			client_complete(c, r, FIRN_CLIENT_E_TIMEOUT, false, 0, 0);
			continue;
		}
		if (!up || c->now_us < r->deadline_us)
			continue;
		if (r->state == REC_INFLIGHT) {
			c->st.durable_timeouts++;
			r->tries++;
		}
		dto = (uint64_t)c->conf.durable_timeout_ms * 1000 << FIRN_MIN(r->tries, 3u);
		r->deadline_us = c->now_us + dto;
		client_push_retx(c, s, 0, r->len);
	}
}
