/*
 * enc.c - the batch encoder: frames into one DATA datagram.
 *
 * A producer's job is to fill every datagram. The encoder writes frames
 * straight into the caller's datagram buffer (no intermediate copies),
 * right after the header, and always keeps 16 bytes free for the GCM tag,
 * so sealing happens in place.
 *
 * Records that fit go in whole. A record too big for even an empty datagram
 * is cut into FRAGMENTs, as large as the room allows. The caller loops
 * "add, and if full: seal, send, begin a new datagram" with the same offset,
 * so a 1 MiB record streams across ~730 datagrams of 1472 bytes (or ~120 of
 * 8972) with no extra buffering. A small piece at the end of an almost full
 * datagram is not worth its 24-byte header, so the encoder does not start a
 * fragment of less than FRAG_MIN_PIECE bytes in a datagram that already holds
 * records.
 *
 * On the server side the same encoder builds acks. Durable entries merge into
 * runs, so a producer streaming into one shard costs 24 bytes of ack per run
 * rather than per record.
 */
#include <errno.h>
#include <string.h>

#include "proto_internal.h"

#define FRAG_MIN_PIECE 256u

void
firn_proto_enc_begin(struct firn_proto_enc *e, uint8_t *buf, size_t cap, uint64_t session_id,
                     uint64_t pn, uint16_t flags)
{
	struct firn_proto_hdr h = {
	        .version = FIRN_PROTO_VERSION,
	        .type = FIRN_PROTO_DATA,
	        .flags = flags,
	        .session_id = session_id,
	        .pn = pn,
	};

	e->buf = buf;
	e->cap = cap;
	e->records = 0;
	e->n_bound = 0;
	e->durable_at = 0;
	if (cap < FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN) {
		e->cap = 0;
		e->len = 0;
		return;
	}
	firn_proto_hdr_encode(&h, buf, cap);
	e->len = FIRN_PROTO_HDR_LEN;
}

size_t
firn_proto_enc_room(const struct firn_proto_enc *e)
{
	size_t used = e->len + FIRN_PROTO_TAG_LEN;

	return e->cap > used ? e->cap - used : 0;
}

static size_t
empty_room(const struct firn_proto_enc *e)
{
	size_t used = FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN;

	return e->cap > used ? e->cap - used : 0;
}

static int
rec_check(const struct firn_proto_rec *r, const char *name, size_t name_len)
{
	if (r->seq == 0 || r->key == NULL)
		return -EINVAL;
	if (r->hash ? r->key_len != 16 : !proto_key_ok(r->key, r->key_len))
		return -EINVAL;
	if (r->len > FIRN_RECORD_DATA_MAX)
		return -E2BIG;
	if (r->len > 0 && r->data == NULL)
		return -EINVAL;
	if (name != NULL && (name_len == 0 || name_len > FIRN_PROTO_STREAM_NAME_MAX))
		return -EINVAL;
	return 0;
}

static bool
is_bound(const struct firn_proto_enc *e, uint16_t ref)
{
	for (unsigned i = 0; i < e->n_bound; i++)
		if (e->bound[i] == ref)
			return true;
	return false;
}

/* Bytes of the STREAM frame this datagram still needs before a record on ref. */
static size_t
bind_size(const struct firn_proto_enc *e, uint16_t ref, const char *name, size_t name_len)
{
	if (name == NULL || is_bound(e, ref))
		return 0;
	return 4 + name_len;
}

static void
put_stream(struct firn_proto_enc *e, uint16_t ref, const char *name, size_t name_len)
{
	uint8_t *p = e->buf + e->len;

	p[0] = FIRN_PROTO_FR_STREAM;
	st16(p + 1, ref);
	p[3] = (uint8_t)name_len;
	memcpy(p + 4, name, name_len);
	e->len += 4 + name_len;
	/* A full list only means a later record may repeat the binding: harmless. */
	if (e->n_bound < FIRN_ARRAY_SIZE(e->bound))
		e->bound[e->n_bound++] = ref;
	e->durable_at = 0;
}

static void
put_record(struct firn_proto_enc *e, const struct firn_proto_rec *r)
{
	uint8_t *p = e->buf + e->len;

	p[0] = FIRN_PROTO_FR_RECORD;
	p[1] = r->hash ? FIRN_PROTO_RF_HASH : 0;
	st16(p + 2, r->stream_ref);
	st16(p + 4, r->key_len);
	st32(p + 6, r->len);
	st64(p + 10, r->seq);
	memcpy(p + FIRN_PROTO_RECORD_HDR, r->key, r->key_len);
	if (r->len > 0)
		memcpy(p + FIRN_PROTO_RECORD_HDR + r->key_len, r->data, r->len);
	e->len += FIRN_PROTO_RECORD_HDR + r->key_len + r->len;
	e->records++;
	e->durable_at = 0;
}

/*
 * Write up to want bytes of r's data from off as one FRAGMENT (with the
 * binding first if needed). Returns the data bytes written, 0 if it is not
 * worth it or does not fit.
 */
static uint32_t
put_fragment(struct firn_proto_enc *e, const struct firn_proto_rec *r, const char *name,
             size_t name_len, uint32_t off, uint32_t want)
{
	size_t bind = bind_size(e, r->stream_ref, name, name_len);
	size_t keyb = off == 0 ? r->key_len : 0;
	size_t fixed = bind + FIRN_PROTO_FRAGMENT_HDR + keyb;
	size_t room = firn_proto_enc_room(e);
	size_t n;
	uint8_t *p;

	if (room <= fixed)
		return 0;
	n = FIRN_MIN((size_t)want, room - fixed);
	n = FIRN_MIN(n, (size_t)UINT16_MAX);
	if (n == 0 || (n < want && n < FRAG_MIN_PIECE && e->records > 0))
		return 0;
	if (bind > 0)
		put_stream(e, r->stream_ref, name, name_len);
	p = e->buf + e->len;
	p[0] = FIRN_PROTO_FR_FRAGMENT;
	p[1] = r->hash ? FIRN_PROTO_RF_HASH : 0;
	st16(p + 2, r->stream_ref);
	st16(p + 4, (uint16_t)keyb);
	st32(p + 6, r->len);
	st64(p + 10, r->seq);
	st32(p + 18, off);
	st16(p + 22, (uint16_t)n);
	memcpy(p + FIRN_PROTO_FRAGMENT_HDR, r->key, keyb);
	memcpy(p + FIRN_PROTO_FRAGMENT_HDR + keyb, r->data + off, n);
	e->len += FIRN_PROTO_FRAGMENT_HDR + keyb + n;
	e->records++;
	e->durable_at = 0;
	return (uint32_t)n;
}

int
firn_proto_enc_record(struct firn_proto_enc *e, const struct firn_proto_rec *r,
                      const char *stream_name, size_t name_len, uint32_t *off)
{
	int rc = rec_check(r, stream_name, name_len);
	uint32_t n;

	if (rc < 0)
		return rc;
	if (*off > r->len || (*off == r->len && r->len > 0))
		return -EINVAL;
	if (*off == 0) {
		size_t whole = FIRN_PROTO_RECORD_HDR + (size_t)r->key_len + r->len;
		size_t bind_empty = stream_name != NULL ? 4 + name_len : 0;

		if (whole + bind_empty <= empty_room(e)) {
			size_t bind = bind_size(e, r->stream_ref, stream_name, name_len);

			if (bind + whole > firn_proto_enc_room(e))
				return 0;
			if (bind > 0)
				put_stream(e, r->stream_ref, stream_name, name_len);
			put_record(e, r);
			return 1;
		}
	}
	n = put_fragment(e, r, stream_name, name_len, *off, r->len - *off);
	if (n == 0)
		return 0;
	*off += n;
	return *off == r->len ? 1 : 0;
}

int
firn_proto_enc_fragment(struct firn_proto_enc *e, const struct firn_proto_rec *r,
                        const char *stream_name, size_t name_len, uint32_t off, uint32_t len)
{
	int rc = rec_check(r, stream_name, name_len);

	if (rc < 0)
		return rc;
	if (len == 0 || off >= r->len || len > r->len - off)
		return -EINVAL;
	return (int)put_fragment(e, r, stream_name, name_len, off, len);
}

/* ---- server frames ----------------------------------------------------------- */

static void
durable_put(uint8_t *p, const struct firn_proto_durable *d)
{
	st64(p, d->seq);
	st64(p + 8, d->counter);
	st32(p + 16, d->shard);
	st16(p + 20, d->count);
	p[22] = d->status;
	p[23] = d->flags;
}

static void
durable_load(const uint8_t *p, struct firn_proto_durable *d)
{
	d->seq = ld64(p);
	d->counter = ld64(p + 8);
	d->shard = ld32(p + 16);
	d->count = ld16(p + 20);
	d->status = p[22];
	d->flags = p[23];
}

int
firn_proto_enc_durable(struct firn_proto_enc *e, const struct firn_proto_durable *d)
{
	size_t room = firn_proto_enc_room(e);
	uint8_t *f;
	unsigned n;

	if (d->count == 0)
		return 1;
	if (e->durable_at != 0) {
		struct firn_proto_durable last;
		uint8_t *lp;

		f = e->buf + e->durable_at;
		n = ld16(f + 2);
		lp = f + FR_DURABLE_FIXED + (size_t)(n - 1) * FIRN_PROTO_DURABLE_ENTRY;
		durable_load(lp, &last);
		if (last.shard == d->shard && last.status == d->status && last.flags == d->flags &&
		    last.seq + last.count == d->seq &&
		    (d->status != FIRN_PROTO_OK || last.counter + last.count == d->counter) &&
		    (unsigned)last.count + d->count <= UINT16_MAX) {
			st16(lp + 20, (uint16_t)(last.count + d->count));
			return 1;
		}
		if (room < FIRN_PROTO_DURABLE_ENTRY || n == UINT16_MAX)
			return 0;
		durable_put(e->buf + e->len, d);
		e->len += FIRN_PROTO_DURABLE_ENTRY;
		st16(f + 2, (uint16_t)(n + 1));
		return 1;
	}
	if (room < FR_DURABLE_FIXED + FIRN_PROTO_DURABLE_ENTRY)
		return 0;
	f = e->buf + e->len;
	f[0] = FIRN_PROTO_FR_ACK_DURABLE;
	f[1] = 0;
	st16(f + 2, 1);
	durable_put(f + FR_DURABLE_FIXED, d);
	e->durable_at = e->len;
	e->len += FR_DURABLE_FIXED + FIRN_PROTO_DURABLE_ENTRY;
	return 1;
}

/*
 * ACK_RECEIVED from the replay window. cum is the end of the run of received
 * numbers that starts at the window's floor. Above it, the runs are
 * collected from the top down, so when more than fit remain, the lowest
 * runs are the ones folded into cum (§7.1). The newest information is always
 * sent.
 */
int
firn_proto_enc_ack_received(struct firn_proto_enc *e, const struct firn_proto_replay *r,
                            uint16_t delay_us)
{
	size_t room = firn_proto_enc_room(e);
	uint64_t lo[FIRN_PROTO_ACK_RANGES_MAX], hi[FIRN_PROTO_ACK_RANGES_MAX];
	uint64_t cum = 0, prev_end;
	unsigned max_n, n = 0;
	uint8_t *f;

	if (room < FR_ACK_FIXED)
		return 0;
	max_n = (unsigned)FIRN_MIN((room - FR_ACK_FIXED) / 8, (size_t)FIRN_PROTO_ACK_RANGES_MAX);
	if (r->top > 0) {
		uint64_t p;

		cum = r->top >= FIRN_PROTO_REPLAY_BITS ? r->top - FIRN_PROTO_REPLAY_BITS : 0;
		/* A word at a time: bit by bit this was 1024 calls per ack. */
		cum = proto_replay_first_gap(r, cum + 1, r->top) - 1;
		p = r->top;
		while (p > cum && max_n > 0) {
			uint64_t h;

			while (p > cum && !proto_replay_has(r, p))
				p--;
			if (p == cum)
				break;
			if (n == max_n) {
				cum = lo[n - 1] - 2;
				break;
			}
			h = p;
			while (p > cum && proto_replay_has(r, p))
				p--;
			lo[n] = p + 1;
			hi[n] = h;
			n++;
		}
	}
	f = e->buf + e->len;
	f[0] = FIRN_PROTO_FR_ACK_RECEIVED;
	f[1] = (uint8_t)n;
	st16(f + 2, delay_us);
	st64(f + 4, cum);
	prev_end = cum;
	for (unsigned i = 0; i < n; i++) {
		unsigned k = n - 1 - i;
		uint8_t *g = f + FR_ACK_FIXED + (size_t)i * 8;

		st32(g, (uint32_t)(lo[k] - prev_end - 1));
		st32(g + 4, (uint32_t)(hi[k] - lo[k] + 1));
		prev_end = hi[k];
	}
	e->len += FR_ACK_FIXED + (size_t)n * 8;
	e->durable_at = 0;
	return 1;
}

int
firn_proto_enc_credit(struct firn_proto_enc *e, uint64_t max_seq, uint32_t window)
{
	uint8_t *f;

	if (firn_proto_enc_room(e) < FR_CREDIT_LEN)
		return 0;
	f = e->buf + e->len;
	f[0] = FIRN_PROTO_FR_CREDIT;
	f[1] = f[2] = f[3] = 0;
	st32(f + 4, window);
	st64(f + 8, max_seq);
	e->len += FR_CREDIT_LEN;
	e->durable_at = 0;
	return 1;
}

int
firn_proto_enc_ping(struct firn_proto_enc *e)
{
	if (firn_proto_enc_room(e) < 1)
		return 0;
	e->buf[e->len++] = FIRN_PROTO_FR_PING;
	e->durable_at = 0;
	return 1;
}

int
firn_proto_enc_close(struct firn_proto_enc *e, uint16_t code)
{
	if (firn_proto_enc_room(e) < 3)
		return 0;
	e->buf[e->len] = FIRN_PROTO_FR_CLOSE;
	st16(e->buf + e->len + 1, code);
	e->len += 3;
	e->durable_at = 0;
	return 1;
}

int
firn_proto_enc_error(struct firn_proto_enc *e, uint16_t code,
                     const struct firn_proto_addr *redirect, const char *msg)
{
	size_t need = FR_ERROR_FIXED + (code == FIRN_PROTO_E_REDIRECT ? ADDR_LEN : 0);
	size_t room = firn_proto_enc_room(e), ml = msg != NULL ? strlen(msg) : 0;
	struct firn_proto_addr zero = {{0}, 0};
	uint8_t *f;

	if (room < need)
		return 0;
	ml = FIRN_MIN(ml, FIRN_MIN(room - need, (size_t)UINT8_MAX));
	f = e->buf + e->len;
	f[0] = FIRN_PROTO_FR_ERROR;
	f[1] = (uint8_t)ml;
	st16(f + 2, code);
	if (code == FIRN_PROTO_E_REDIRECT)
		addr_put(f + FR_ERROR_FIXED, redirect != NULL ? redirect : &zero);
	memcpy(f + need, msg != NULL ? msg : "", ml);
	e->len += need + ml;
	e->durable_at = 0;
	return 1;
}

int
firn_proto_enc_seal(struct firn_proto_enc *e, struct firn_proto_aead *a)
{
	return firn_proto_seal(a, e->buf, e->len, e->cap);
}
