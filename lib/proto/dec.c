/*
 * dec.c - the frame decoder: the plaintext of a DATA datagram, frame by frame.
 *
 * This is the code that reads bytes an attacker (or a buggy client) chose,
 * so it is written for the fuzzer. Every read is preceded by a check against
 * the end of the plaintext, lengths are compared in size_t/uint64_t so they
 * cannot wrap, and a frame is only handed out once all of it is known to be
 * inside the buffer. It copies nothing: records come back as pointers into
 * the datagram, which the RX path hands on until the writer copies them
 * into the store's block.
 */
#include <errno.h>
#include <string.h>

#include "proto_internal.h"

void
firn_proto_dec_init(struct firn_proto_dec *d, const uint8_t *plain, size_t len, bool from_client)
{
	d->p = plain;
	d->end = plain + len;
	d->from_client = from_client;
}

/* Key rules shared by RECORD and the first FRAGMENT (§6.2). */
static bool
key_len_ok(uint8_t flags, uint16_t key_len)
{
	if (flags & FIRN_PROTO_RF_HASH)
		return key_len == 16;
	return key_len >= 1 && key_len <= FIRN_PARTITION_KEY_MAX;
}

static int
dec_record(const uint8_t *p, size_t left, struct firn_proto_frame *f, size_t *used)
{
	struct firn_proto_rec *r = &f->rec;
	uint8_t flags;

	if (left < FIRN_PROTO_RECORD_HDR)
		return -EBADMSG;
	flags = p[1];
	if (flags & ~FIRN_PROTO_RF_HASH)
		return -EBADMSG;
	memset(r, 0, sizeof(*r));
	r->hash = flags & FIRN_PROTO_RF_HASH;
	r->stream_ref = ld16(p + 2);
	r->key_len = ld16(p + 4);
	r->len = ld32(p + 6);
	r->seq = ld64(p + 10);
	if (r->seq == 0 || !key_len_ok(flags, r->key_len) ||
	    (uint64_t)FIRN_PROTO_RECORD_HDR + r->key_len + r->len > left)
		return -EBADMSG;
	r->total_len = r->len;
	r->key = p + FIRN_PROTO_RECORD_HDR;
	r->data = r->key + r->key_len;
	*used = FIRN_PROTO_RECORD_HDR + (size_t)r->key_len + r->len;
	return 0;
}

static int
dec_fragment(const uint8_t *p, size_t left, struct firn_proto_frame *f, size_t *used)
{
	struct firn_proto_rec *r = &f->rec;
	uint8_t flags;

	if (left < FIRN_PROTO_FRAGMENT_HDR)
		return -EBADMSG;
	flags = p[1];
	if (flags & ~FIRN_PROTO_RF_HASH)
		return -EBADMSG;
	memset(r, 0, sizeof(*r));
	r->fragment = true;
	r->hash = flags & FIRN_PROTO_RF_HASH;
	r->stream_ref = ld16(p + 2);
	r->key_len = ld16(p + 4);
	r->total_len = ld32(p + 6);
	r->seq = ld64(p + 10);
	r->off = ld32(p + 18);
	r->len = ld16(p + 22);
	if (r->seq == 0 || r->len == 0 || (uint64_t)r->off + r->len > r->total_len)
		return -EBADMSG;
	if (r->off == 0 ? !key_len_ok(flags, r->key_len) : r->key_len != 0)
		return -EBADMSG;
	if ((uint64_t)FIRN_PROTO_FRAGMENT_HDR + r->key_len + r->len > left)
		return -EBADMSG;
	r->key = r->key_len > 0 ? p + FIRN_PROTO_FRAGMENT_HDR : NULL;
	r->data = p + FIRN_PROTO_FRAGMENT_HDR + r->key_len;
	*used = FIRN_PROTO_FRAGMENT_HDR + (size_t)r->key_len + r->len;
	return 0;
}

/* Walk the ranges once so that users can expand them without checks. */
static bool
ack_ranges_ok(uint64_t cum, const uint8_t *p, unsigned n)
{
	uint64_t prev_end = cum;

	for (unsigned i = 0; i < n; i++, p += 8) {
		uint64_t gap = ld32(p), len = ld32(p + 4), lo;

		if (gap == 0 || len == 0)
			return false;
		lo = prev_end + 1 + gap;
		if (lo < prev_end || lo >= FIRN_PROTO_PN_MAX || len > FIRN_PROTO_PN_MAX - lo)
			return false;
		prev_end = lo + len - 1;
	}
	return true;
}

int
firn_proto_dec_next(struct firn_proto_dec *d, struct firn_proto_frame *f)
{
	const uint8_t *p = d->p;
	size_t left = (size_t)(d->end - d->p), used = 0;
	bool c2s;
	int rc = 0;

	if (p >= d->end)
		return 0;
	f->type = p[0];
	c2s = f->type == FIRN_PROTO_FR_RECORD || f->type == FIRN_PROTO_FR_FRAGMENT ||
	      f->type == FIRN_PROTO_FR_STREAM;
	switch (f->type) {
	case FIRN_PROTO_FR_PADDING:
		d->p = d->end;
		return 0;
	case FIRN_PROTO_FR_RECORD:
		rc = dec_record(p, left, f, &used);
		break;
	case FIRN_PROTO_FR_FRAGMENT:
		rc = dec_fragment(p, left, f, &used);
		break;
	case FIRN_PROTO_FR_STREAM:
		if (left < 4 || p[3] == 0 || p[3] > FIRN_PROTO_STREAM_NAME_MAX ||
		    left < 4 + (size_t)p[3])
			return -EBADMSG;
		f->stream.ref = ld16(p + 1);
		f->stream.len = p[3];
		f->stream.name = (const char *)p + 4;
		used = 4 + (size_t)p[3];
		break;
	case FIRN_PROTO_FR_ACK_RECEIVED:
		if (left < FR_ACK_FIXED || p[1] > FIRN_PROTO_ACK_RANGES_MAX ||
		    left < FR_ACK_FIXED + (size_t)p[1] * 8)
			return -EBADMSG;
		f->ack.n = p[1];
		f->ack.delay_us = ld16(p + 2);
		f->ack.cum = ld64(p + 4);
		f->ack.ranges = p + FR_ACK_FIXED;
		if (f->ack.cum >= FIRN_PROTO_PN_MAX ||
		    !ack_ranges_ok(f->ack.cum, f->ack.ranges, f->ack.n))
			return -EBADMSG;
		used = FR_ACK_FIXED + (size_t)f->ack.n * 8;
		break;
	case FIRN_PROTO_FR_ACK_DURABLE: {
		unsigned n;

		if (left < FR_DURABLE_FIXED)
			return -EBADMSG;
		n = ld16(p + 2);
		if (n == 0 || left < FR_DURABLE_FIXED + (size_t)n * FIRN_PROTO_DURABLE_ENTRY)
			return -EBADMSG;
		for (unsigned i = 0; i < n; i++) {
			const uint8_t *ep =
			        p + FR_DURABLE_FIXED + (size_t)i * FIRN_PROTO_DURABLE_ENTRY;
			uint64_t seq = ld64(ep);
			unsigned count = ld16(ep + 20);

			if (seq == 0 || count == 0 || seq + count < seq)
				return -EBADMSG;
		}
		f->durable.n = (uint16_t)n;
		f->durable.ents = p + FR_DURABLE_FIXED;
		used = FR_DURABLE_FIXED + (size_t)n * FIRN_PROTO_DURABLE_ENTRY;
		break;
	}
	case FIRN_PROTO_FR_CREDIT:
		if (left < FR_CREDIT_LEN)
			return -EBADMSG;
		f->credit.window = ld32(p + 4);
		f->credit.max_seq = ld64(p + 8);
		used = FR_CREDIT_LEN;
		break;
	case FIRN_PROTO_FR_PING:
		used = 1;
		break;
	case FIRN_PROTO_FR_CLOSE:
		if (left < 3)
			return -EBADMSG;
		f->close.code = ld16(p + 1);
		used = 3;
		break;
	case FIRN_PROTO_FR_ERROR: {
		size_t need;

		if (left < FR_ERROR_FIXED)
			return -EBADMSG;
		f->error.msg_len = p[1];
		f->error.code = ld16(p + 2);
		need = FR_ERROR_FIXED + (f->error.code == FIRN_PROTO_E_REDIRECT ? ADDR_LEN : 0);
		if (left < need + f->error.msg_len)
			return -EBADMSG;
		memset(&f->error.redirect, 0, sizeof(f->error.redirect));
		if (f->error.code == FIRN_PROTO_E_REDIRECT)
			addr_get(p + FR_ERROR_FIXED, &f->error.redirect);
		f->error.msg = (const char *)p + need;
		used = need + f->error.msg_len;
		break;
	}
	default:
		return -EBADMSG;
	}
	if (rc < 0)
		return rc;
	/* Direction: records only from clients; acks, credits, errors only from servers. */
	if (f->type != FIRN_PROTO_FR_PING && f->type != FIRN_PROTO_FR_CLOSE &&
	    c2s != d->from_client)
		return -EBADMSG;
	d->p = p + used;
	return 1;
}

unsigned
firn_proto_ack_ranges(const struct firn_proto_frame *f, struct firn_proto_range *out, unsigned max)
{
	uint64_t prev_end = f->ack.cum;
	unsigned i;

	for (i = 0; i < f->ack.n && i < max; i++) {
		const uint8_t *p = f->ack.ranges + (size_t)i * 8;
		uint64_t lo = prev_end + 1 + ld32(p);

		out[i].lo = lo;
		out[i].hi = lo + ld32(p + 4) - 1;
		prev_end = out[i].hi;
	}
	return i;
}

void
firn_proto_durable_get(const struct firn_proto_frame *f, unsigned i, struct firn_proto_durable *out)
{
	const uint8_t *p = f->durable.ents + (size_t)i * FIRN_PROTO_DURABLE_ENTRY;

	out->seq = ld64(p);
	out->counter = ld64(p + 8);
	out->shard = ld32(p + 16);
	out->count = ld16(p + 20);
	out->status = p[22];
	out->flags = p[23];
}
