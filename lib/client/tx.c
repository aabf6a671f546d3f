/*
 * tx.c - packing records into datagrams and sending them.
 *
 * The pump takes record pieces in a fixed order of priority: pieces to
 * resend (lost datagrams, durable timeouts, OVERLOADED refusals whose pause
 * is over), then, after a new session, every record the old one left in
 * flight, then new records. Old before new keeps the oldest record moving,
 * which is what the dedupe window rule (§8.1) and the arena's FIFO freeing
 * both need.
 *
 * A new record may start only if three things allow it: its sequence is
 * within the appliance's record credit, its bytes fit the byte credit
 * (§9), and it is less than W above the oldest record still unanswered
 * (§8.1). Resends are free: their credit is already counted. A datagram may
 * be opened only while the congestion window has room, because a kernel
 * UDP socket on the other end drops what it cannot buffer, and losing a
 * window's worth of datagrams costs far more than waiting a round trip.
 *
 * Pieces are written straight into the batch buffer by lib/proto's encoder
 * (no staging copy): a record that fits whole becomes a RECORD frame,
 * larger ones become FRAGMENTs cut to the room left. Each datagram
 * remembers which pieces it carried, so a loss resends exactly those.
 * Sealed datagrams wait in the batch for one sendmmsg(); a full socket
 * buffer leaves them there for the next poll.
 */
#include <errno.h>
#include <string.h>

#include "client_internal.h"

int
client_send_raw(struct firn_client *c, const uint8_t *buf, size_t len)
{
	ssize_t n;

	for (int tries = 0; tries < 2; tries++) {
		n = send(c->fd, buf, len, MSG_DONTWAIT);
		if (n >= 0) {
			c->st.tx_datagrams++;
			c->st.tx_bytes += len;
			c->last_tx_us = c->now_us;
			return 0;
		}
		/* A pending ICMP error fails one call without sending: try once more. */
		if (errno != ECONNREFUSED && errno != EINTR)
			break;
	}
	return -errno;
}

int
client_tx_flush(struct firn_client *c)
{
	struct mmsghdr msg[CLIENT_BATCH];
	struct iovec iov[CLIENT_BATCH];
	int sent = 0, refused = 0;

	while (c->tx_sent < c->tx_n) {
		unsigned k = c->tx_n - c->tx_sent;
		int n;

		for (unsigned i = 0; i < k; i++) {
			unsigned slot = c->tx_sent + i;

			iov[i].iov_base = c->txbuf + (size_t)slot * FIRN_PROTO_DGRAM_MAX;
			iov[i].iov_len = c->txlen[slot];
			memset(&msg[i], 0, sizeof(msg[i]));
			msg[i].msg_hdr.msg_iov = &iov[i];
			msg[i].msg_hdr.msg_iovlen = 1;
		}
		n = sendmmsg(c->fd, msg, k, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || (errno == ECONNREFUSED && refused++ < 1))
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
				break; /* the socket buffer is full: these go next time */
			/* Anything else: these datagrams are gone; loss recovery resends. */
			c->tx_sent = c->tx_n;
			break;
		}
		for (int i = 0; i < n; i++)
			c->st.tx_bytes += c->txlen[c->tx_sent + (unsigned)i];
		c->st.tx_datagrams += (uint64_t)n;
		c->tx_sent += (unsigned)n;
		sent += n;
	}
	if (c->tx_sent == c->tx_n)
		c->tx_sent = c->tx_n = 0;
	if (sent > 0)
		c->last_tx_us = c->now_us;
	return sent;
}

void
client_push_retx(struct firn_client *c, uint64_t seq, uint32_t off, uint32_t len)
{
	struct citem *it;

	/* Full: drop it; the record timer resends the whole record later. */
	if (c->retx_head - c->retx_tail > c->retx_mask)
		return;
	it = &c->retx[c->retx_head++ & c->retx_mask];
	it->seq = seq;
	it->off = off;
	it->len = len;
}

/* ---- datagrams ------------------------------------------------------------------- */

static bool
dgram_open_flags(struct firn_client *c, bool probe)
{
	struct cpkt *p;
	uint8_t *buf;

	if (c->enc_open)
		return true;
	if (c->tx_n == CLIENT_BATCH) {
		client_tx_flush(c);
		if (c->tx_n == CLIENT_BATCH)
			return false;
	}
	if (c->pkt_next - c->pkt_tail > c->pkt_mask || (c->pkts_inflight >= c->cwnd && !probe) ||
	    c->item_head - c->item_tail + CLIENT_ITEMS_PER_DGRAM > c->item_mask + 1)
		return false;
	buf = c->txbuf + (size_t)c->tx_n * FIRN_PROTO_DGRAM_MAX;
	if (firn_proto_client_enc_begin(c->pc, &c->enc, buf, c->max_dgram,
	                                probe ? FIRN_PROTO_F_ACK_NOW : 0) < 0)
		return false;
	/* The packet number lib/proto gave this datagram (header bytes 16..23, LE). */
	c->enc_pn = 0;
	for (int i = 7; i >= 0; i--)
		c->enc_pn = c->enc_pn << 8 | buf[16 + i];
	/* Numbers skipped (none in practice) are simply never acked. */
	while (c->pkt_next < c->enc_pn && c->pkt_next - c->pkt_tail <= c->pkt_mask) {
		struct cpkt *q = &c->pkts[c->pkt_next & c->pkt_mask];

		q->pn = c->pkt_next++;
		q->n_items = 0;
		q->item0 = c->item_head;
		q->state = PKT_DONE;
	}
	p = &c->pkts[c->enc_pn & c->pkt_mask];
	p->pn = c->enc_pn;
	p->item0 = c->item_head;
	p->n_items = 0;
	p->bound = 0;
	p->state = PKT_FREE;
	c->enc_open = true;
	return true;
}

static bool
dgram_open(struct firn_client *c)
{
	return dgram_open_flags(c, false);
}

static void
dgram_seal(struct firn_client *c)
{
	struct cpkt *p = &c->pkts[c->enc_pn & c->pkt_mask];
	int n;

	if (!c->enc_open)
		return;
	c->enc_open = false;
	if (c->enc.len == FIRN_PROTO_HDR_LEN)
		firn_proto_enc_ping(&c->enc); /* never send an empty datagram */
	n = firn_proto_client_seal(c->pc, &c->enc);
	for (unsigned i = 0; i < c->enc.n_bound; i++)
		if (c->enc.bound[i] < 64)
			p->bound |= 1ull << c->enc.bound[i];
	p->sent_us = c->now_us;
	p->state = PKT_INFLIGHT;
	c->pkts_inflight++;
	c->pkt_next = c->enc_pn + 1;
	if (n <= 0) {
		/* Cannot happen with a valid encoder; count it as a loss. */
		p->state = PKT_DONE;
		c->pkts_inflight--;
		return;
	}
	c->txlen[c->tx_n++] = (uint16_t)n;
}

static void
add_item(struct firn_client *c, uint64_t seq, uint32_t off, uint32_t len)
{
	struct cpkt *p = &c->pkts[c->enc_pn & c->pkt_mask];
	struct citem *it = &c->items[c->item_head++ & c->item_mask];

	it->seq = seq;
	it->off = off;
	it->len = len;
	p->n_items++;
}

int
client_send_ping(struct firn_client *c)
{
	if (!dgram_open(c))
		return -EAGAIN;
	dgram_seal(c);
	return client_tx_flush(c) > 0 ? 0 : -EAGAIN;
}

int
client_send_probe(struct firn_client *c)
{
	if (c->enc_open)
		dgram_seal(c);
	if (!dgram_open_flags(c, true))
		return -EAGAIN;
	firn_proto_enc_ping(&c->enc);
	dgram_seal(c);
	client_tx_flush(c);
	return 0;
}

uint64_t
client_linger_due_us(const struct firn_client *c)
{
	if (c->conf.linger_us == 0 || c->new_seq == c->put_seq)
		return UINT64_MAX;
	return c->recs[c->new_seq & c->rec_mask].put_us + c->conf.linger_us;
}

/* ---- pieces ---------------------------------------------------------------------- */

/* Take credit for a record's (first, or after OVERLOADED) send. */
static bool
charge(struct firn_client *c, struct crec *r)
{
	if (r->seq >= c->tail_seq + c->dedupe_w ||
	    firn_proto_credit_take(&c->credit, r->seq, r->len) < 0) {
		c->st.credit_stalls++;
		return false;
	}
	r->charged = true;
	r->state = REC_INFLIGHT;
	r->deadline_us = c->now_us + (uint64_t)c->conf.durable_timeout_ms * 1000;
	if (r->first_tx_us == 0)
		r->first_tx_us = c->now_us;
	c->n_inflight++;
	return true;
}

static bool
next_piece(struct firn_client *c)
{
	while (c->retx_tail != c->retx_head) {
		struct citem *it = &c->retx[c->retx_tail & c->retx_mask];
		struct crec *r = client_rec(c, it->seq);

		if (it->seq < c->tail_seq || r->seq != it->seq ||
		    (r->state != REC_INFLIGHT && r->state != REC_WAIT)) {
			c->retx_tail++;
			continue;
		}
		if (r->state == REC_WAIT && !charge(c, r))
			return false; /* stays first in line */
		c->cur = *it;
		c->retx_tail++;
		c->cur_active = true;
		c->st.resent_pieces++;
		return true;
	}
	while (c->sweep < c->sweep_end) {
		uint64_t s = c->sweep++;
		struct crec *r = client_rec(c, s);

		if (s >= c->tail_seq && r->seq == s && r->state == REC_INFLIGHT) {
			c->cur = (struct citem){s, 0, r->len};
			c->cur_active = true;
			c->st.resent_pieces++;
			return true;
		}
	}
	if (c->new_seq < c->put_seq) {
		struct crec *r = client_rec(c, c->new_seq);

		/* Linger: a few new records wait a moment for company, unless a datagram is open.
		 */
		if (!c->enc_open && c->conf.linger_us != 0 &&
		    c->queued_bytes + FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN < c->max_dgram &&
		    c->now_us < r->put_us + c->conf.linger_us)
			return false;
		if (!charge(c, r))
			return false;
		c->new_seq++;
		c->queued_bytes -= FIRN_PROTO_RECORD_HDR + r->key_len + r->len;
		c->cur = (struct citem){r->seq, 0, r->len};
		c->cur_active = true;
		return true;
	}
	return false;
}

/*
 * Write the current piece into datagrams, opening new ones as they fill.
 * Returns 1 when it is all written, 0 when no datagram can be opened now.
 */
static int
write_piece(struct firn_client *c)
{
	struct crec *r = client_rec(c, c->cur.seq);
	const uint8_t *base = c->arena + r->arena_off;
	struct firn_proto_rec fr = {
	        .seq = r->seq,
	        .key = base,
	        .key_len = r->key_len,
	        .data = base + r->key_len,
	        .len = r->len,
	        .stream_ref = r->ref,
	        .hash = r->hash,
	};
	const struct cstream *st = &c->streams[r->ref];

	/* A piece left over from the last pump whose record was answered since: drop it. */
	if (r->seq != c->cur.seq || r->state != REC_INFLIGHT)
		return 1;
	for (;;) {
		bool bound = r->ref < 64 && (c->confirmed & (1ull << r->ref));
		const char *name = bound ? NULL : st->name;
		size_t nl = bound ? 0 : st->name_len;
		bool empty;
		int rc;

		if (!dgram_open(c))
			return 0;
		empty = c->enc.records == 0;
		if (c->cur.off == 0 && c->cur.len == r->len) {
			uint32_t off = 0;

			rc = firn_proto_enc_record(&c->enc, &fr, name, nl, &off);
			if (rc < 0)
				goto bad;
			if (rc == 1 && off == 0) { /* a whole RECORD frame */
				add_item(c, r->seq, 0, r->len);
				return 1;
			}
			if (off > 0) { /* the first fragment(s) of a big record */
				add_item(c, r->seq, 0, off);
				c->cur.off = off;
				c->cur.len = r->len - off;
				if (rc == 1)
					return 1;
			}
		} else {
			rc = firn_proto_enc_fragment(&c->enc, &fr, name, nl, c->cur.off,
			                             c->cur.len);
			if (rc < 0)
				goto bad;
			if (rc > 0) {
				add_item(c, r->seq, c->cur.off, (uint32_t)rc);
				c->cur.off += (uint32_t)rc;
				c->cur.len -= (uint32_t)rc;
				if (c->cur.len == 0)
					return 1;
			}
		}
		/* The datagram is full (or this piece would be too small in it): next one. */
		if (empty && c->enc.records == 0)
			goto bad; /* does not fit even an empty datagram: never expected */
		dgram_seal(c);
	}
bad:
	/* Validated at put; a record the encoder refuses is answered, never retried. */
	client_complete(c, r, FIRN_CLIENT_E_PROTOCOL, false, 0, 0);
	return 1;
}

int
client_pump(struct firn_client *c)
{
	uint64_t before = c->st.tx_datagrams;

	if (c->state != CL_ESTABLISHED)
		return 0;
	if (c->tx_sent < c->tx_n && (client_tx_flush(c), c->tx_n == CLIENT_BATCH))
		return (int)(c->st.tx_datagrams - before);
	for (;;) {
		if (!c->cur_active && !next_piece(c))
			break;
		if (write_piece(c) == 0)
			break;
		c->cur_active = false;
	}
	dgram_seal(c);
	client_tx_flush(c);
	return (int)(c->st.tx_datagrams - before);
}
