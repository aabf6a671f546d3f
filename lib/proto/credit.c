/*
 * credit.c - flow control in two numbers.
 *
 * Record credit is a limit on producer sequence numbers (max_seq). It is
 * cumulative and only ever raised, so a lost or reordered grant can never
 * take credit back, and retransmits (old seqs) never need credit. Byte
 * credit is a window on data in flight (sent and not yet DURABLE-acked). It
 * follows the appliance's headroom up and down. When it shrinks below what
 * is already in flight the producer simply has 0 bytes left, never a
 * negative amount, and waits for acks to bring "used" down.
 *
 * Both ends use the same struct. The server grants and checks (per
 * producer), and the client applies grants and charges each new record once.
 */
#include <errno.h>

#include "proto_internal.h"

void
firn_proto_credit_init(struct firn_proto_credit *c, uint64_t max_seq, uint64_t window)
{
	c->max_seq = max_seq;
	c->window = window;
	c->used = 0;
	c->pn = 0;
}

uint64_t
firn_proto_credit_avail(const struct firn_proto_credit *c)
{
	return c->window > c->used ? c->window - c->used : 0;
}

int
firn_proto_credit_take(struct firn_proto_credit *c, uint64_t seq, uint64_t len)
{
	if (seq > c->max_seq || c->window == 0)
		return -EAGAIN;
	/*
	 * A record larger than the whole window may go alone; otherwise a big
	 * record under a small window would wait forever.
	 */
	if (c->used > 0 && (len > c->window || c->used > c->window - len))
		return -EAGAIN;
	c->used += len;
	return 0;
}

void
firn_proto_credit_release(struct firn_proto_credit *c, uint64_t len)
{
	c->used = c->used > len ? c->used - len : 0;
}

bool
firn_proto_credit_grant(struct firn_proto_credit *c, uint64_t base_seq, uint64_t records,
                        uint64_t window)
{
	uint64_t m = base_seq + records < base_seq ? UINT64_MAX : base_seq + records;
	bool changed = false;

	if (m > c->max_seq) {
		c->max_seq = m;
		changed = true;
	}
	if (window != c->window) {
		c->window = window;
		changed = true;
	}
	return changed;
}

bool
firn_proto_credit_apply(struct firn_proto_credit *c, uint64_t pn, uint64_t max_seq, uint64_t window)
{
	if (pn <= c->pn)
		return false;
	c->pn = pn;
	if (max_seq > c->max_seq)
		c->max_seq = max_seq;
	c->window = window;
	return true;
}
