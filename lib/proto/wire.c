/*
 * wire.c - the datagram header, small wire helpers and the replay window.
 *
 * The header is the first thing every datagram meets, on the RX lcore,
 * before any lookup or crypto. Decoding it therefore checks everything it
 * can from the bytes alone: magic, version, type, reserved flags, whether the
 * packet number fits the type, and the type's minimum length. Later stages
 * can then trust those facts. The replay window lives here too: it is pure
 * bit arithmetic on packet numbers.
 */
#include <errno.h>
#include <string.h>

#include "proto_internal.h"

static const char *const status_names[] = {
        [FIRN_PROTO_OK] = "OK",
        [FIRN_PROTO_E_UNKNOWN_STREAM] = "UNKNOWN_STREAM",
        [FIRN_PROTO_E_TOO_LARGE] = "TOO_LARGE",
        [FIRN_PROTO_E_AUTH] = "AUTH",
        [FIRN_PROTO_E_SESSION_EXPIRED] = "SESSION_EXPIRED",
        [FIRN_PROTO_E_READ_ONLY] = "READ_ONLY",
        [FIRN_PROTO_E_REDIRECT] = "REDIRECT",
        [FIRN_PROTO_E_OVERLOADED] = "OVERLOADED",
        [FIRN_PROTO_E_STALE] = "STALE",
        [FIRN_PROTO_E_PROTOCOL] = "PROTOCOL",
        [FIRN_PROTO_E_VERSION] = "VERSION",
        [FIRN_PROTO_E_BAD_KEY] = "BAD_KEY",
        [FIRN_PROTO_E_INTERNAL] = "INTERNAL",
        [FIRN_PROTO_E_CLOSED] = "CLOSED",
};

const char *
firn_proto_status_name(unsigned code)
{
	if (code < FIRN_ARRAY_SIZE(status_names) && status_names[code] != NULL)
		return status_names[code];
	return "?";
}

void
firn_proto_addr_v4(struct firn_proto_addr *a, const uint8_t ip[4], uint16_t port)
{
	memset(a->ip, 0, 10);
	a->ip[10] = 0xff;
	a->ip[11] = 0xff;
	memcpy(a->ip + 12, ip, 4);
	a->port = port;
}

uint16_t
firn_proto_dgram_for_mtu(unsigned mtu, bool ipv6)
{
	unsigned over = ipv6 ? 48 : 28;
	unsigned d = mtu > over ? mtu - over : 0;

	if (d < FIRN_PROTO_DGRAM_MIN)
		d = FIRN_PROTO_DGRAM_MIN;
	if (d > FIRN_PROTO_DGRAM_MAX)
		d = FIRN_PROTO_DGRAM_MAX;
	return (uint16_t)d;
}

int
firn_proto_hdr_encode(const struct firn_proto_hdr *h, uint8_t *buf, size_t cap)
{
	if (cap < FIRN_PROTO_HDR_LEN)
		return -ENOSPC;
	buf[0] = PROTO_MAGIC0;
	buf[1] = PROTO_MAGIC1;
	buf[2] = PROTO_MAGIC2;
	buf[3] = PROTO_MAGIC3;
	buf[4] = h->version;
	buf[5] = h->type;
	st16(buf + 6, h->flags);
	st64(buf + 8, h->session_id);
	st64(buf + 16, h->pn);
	return FIRN_PROTO_HDR_LEN;
}

/* Minimum datagram length per type; 0 for unknown types. */
static size_t
type_min_len(uint8_t type)
{
	switch (type) {
	case FIRN_PROTO_HELLO:
		return FIRN_PROTO_HELLO_MIN;
	case FIRN_PROTO_RETRY:
		return RETRY_LEN;
	case FIRN_PROTO_INIT:
		return INIT_FIXED + 1;
	case FIRN_PROTO_ACCEPT:
		return ACCEPT_LEN;
	case FIRN_PROTO_REJECT:
		return REJECT_LEN;
	case FIRN_PROTO_RESET:
		return RESET_LEN;
	case FIRN_PROTO_DATA:
		return FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN;
	default:
		return 0;
	}
}

int
firn_proto_hdr_decode(const uint8_t *buf, size_t len, struct firn_proto_hdr *h)
{
	size_t min;
	bool sealed, has_sid;

	if (len < FIRN_PROTO_HDR_LEN || buf[0] != PROTO_MAGIC0 || buf[1] != PROTO_MAGIC1 ||
	    buf[2] != PROTO_MAGIC2 || buf[3] != PROTO_MAGIC3)
		return -EBADMSG;
	h->version = buf[4];
	h->type = buf[5];
	h->flags = ld16(buf + 6);
	h->session_id = ld64(buf + 8);
	h->pn = ld64(buf + 16);
	if (h->version != FIRN_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	min = type_min_len(h->type);
	if (min == 0 || len < min || (h->flags & ~FIRN_PROTO_F_ACK_NOW) != 0)
		return -EBADMSG;
	sealed = h->type == FIRN_PROTO_ACCEPT || h->type == FIRN_PROTO_DATA;
	has_sid = sealed || h->type == FIRN_PROTO_RESET;
	if (sealed ? (h->pn == 0 || h->pn >= FIRN_PROTO_PN_MAX) : h->pn != 0)
		return -EBADMSG;
	if (has_sid != (h->session_id != 0))
		return -EBADMSG;
	return 0;
}

void
firn_proto_hash_put(struct firn_u128 h, uint8_t out[16])
{
	for (int i = 0; i < 8; i++) {
		out[i] = (uint8_t)(h.hi >> (56 - 8 * i));
		out[8 + i] = (uint8_t)(h.lo >> (56 - 8 * i));
	}
}

struct firn_u128
firn_proto_hash_get(const uint8_t in[16])
{
	struct firn_u128 h = {0, 0};

	for (int i = 0; i < 8; i++) {
		h.hi = h.hi << 8 | in[i];
		h.lo = h.lo << 8 | in[8 + i];
	}
	return h;
}

/*
 * A partition key is 1..256 bytes of well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF), the rule Kinesis applies. The check
 * is here rather than in lib/record so the RX path needs only this library;
 * the ASCII fast loop makes typical keys cost a few nanoseconds.
 */
bool
proto_key_ok(const uint8_t *s, size_t len)
{
	size_t i = 0;

	if (len == 0 || len > FIRN_PARTITION_KEY_MAX)
		return false;
	while (i < len) {
		uint8_t c = s[i];
		unsigned need;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i - 1 < need)
			return false;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

/* ---- replay window --------------------------------------------------------- */

/*
 * The bitmap is a ring: packet number p lives at bit p mod 1024, valid for
 * top - 1023 <= p <= top. Moving top forward clears the bits of the numbers
 * it passes over, which are exactly the slots the numbers that fall out of
 * the window occupied.
 */
#define RW_BITS FIRN_PROTO_REPLAY_BITS

static inline bool
rw_test(const struct firn_proto_replay *r, uint64_t pn)
{
	unsigned b = (unsigned)(pn % RW_BITS);

	return (r->bits[b / 64] >> (b % 64)) & 1;
}

void
firn_proto_replay_init(struct firn_proto_replay *r)
{
	memset(r, 0, sizeof(*r));
}

int
firn_proto_replay_check(const struct firn_proto_replay *r, uint64_t pn)
{
	if (pn == 0 || pn >= FIRN_PROTO_PN_MAX)
		return -EINVAL;
	if (pn > r->top)
		return 0;
	if (r->top - pn >= RW_BITS)
		return -ESTALE;
	return rw_test(r, pn) ? -EALREADY : 0;
}

void
firn_proto_replay_commit(struct firn_proto_replay *r, uint64_t pn)
{
	unsigned b;

	if (pn > r->top) {
		uint64_t d = pn - r->top;

		if (d >= RW_BITS) {
			memset(r->bits, 0, sizeof(r->bits));
		} else {
			for (uint64_t p = r->top + 1; p <= pn; p++) {
				b = (unsigned)(p % RW_BITS);
				r->bits[b / 64] &= ~(1ull << (b % 64));
			}
		}
		r->top = pn;
	}
	b = (unsigned)(pn % RW_BITS);
	r->bits[b / 64] |= 1ull << (b % 64);
}

bool
proto_replay_has(const struct firn_proto_replay *r, uint64_t pn)
{
	if (pn == 0 || pn > r->top || r->top - pn >= RW_BITS)
		return false;
	return rw_test(r, pn);
}

uint64_t
proto_replay_first_gap(const struct firn_proto_replay *r, uint64_t lo, uint64_t hi)
{
	while (lo <= hi) {
		unsigned b = (unsigned)(lo % RW_BITS), span = 64 - b % 64;
		/* Missing packets as ones, from lo's bit up to the end of its word. */
		uint64_t miss = ~r->bits[b / 64] >> (b % 64);

		if (miss != 0) {
			uint64_t p = lo + (unsigned)__builtin_ctzll(miss);

			if (p - lo < span)
				return p <= hi ? p : hi + 1;
		}
		lo += span;
	}
	return hi + 1;
}
