/*
 * proto_internal.h - lib/proto's private structures and byte helpers.
 *
 * The public header keeps the server, session, producer, pool and client
 * opaque. Their layouts live here so the .c files of the library, and the
 * unit tests that include them, can share them. Nothing outside lib/proto
 * and tests/unit/proto includes this file.
 */
#ifndef FIRN_PROTO_INTERNAL_H
#define FIRN_PROTO_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "firn_common.h"
#include "firn_proto.h"

#define PROTO_LOG "proto"

/* ---- little-endian loads and stores (no casts of packet bytes) ---------- */

static inline uint16_t
ld16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t
ld32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static inline uint64_t
ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline void
st16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void
st32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	memcpy(p, &v, 4);
}

static inline void
st64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

/* ---- layout constants ---------------------------------------------------- */

#define PROTO_MAGIC0 0x46 /* 'F' */
#define PROTO_MAGIC1 0x49 /* 'I' */
#define PROTO_MAGIC2 0x52 /* 'R' */
#define PROTO_MAGIC3 0x4E /* 'N' */

/* Handshake body offsets (doc/protocol.md §3). */
#define HS_NONCE 24 /* nonce_c in HELLO, RETRY, INIT, REJECT */
#define HELLO_MAXDG 56
#define RETRY_COOKIE 56
#define RETRY_LEN (RETRY_COOKIE + FIRN_PROTO_COOKIE_LEN)
#define INIT_COOKIE 56
#define INIT_PRODUCER (INIT_COOKIE + FIRN_PROTO_COOKIE_LEN)
#define INIT_MAXDG (INIT_PRODUCER + 8)
#define INIT_KEYLEN (INIT_MAXDG + 2)
#define INIT_KEYID (INIT_KEYLEN + 1)
/* INIT without the key id bytes (the proof follows the key id). */
#define INIT_FIXED (INIT_KEYID + 32)
#define COOKIE_TAG 4 /* the MAC inside a cookie, after the bucket */
#define REJECT_CODE 56
#define REJECT_VMIN 58
#define REJECT_VMAX 59
#define REJECT_REDIRECT 60
#define ACCEPT_BODY 56
#define ACCEPT_LEN (FIRN_PROTO_HDR_LEN + ACCEPT_BODY + FIRN_PROTO_TAG_LEN)
#define REJECT_LEN (REJECT_REDIRECT + 18)
#define RESET_LEN (FIRN_PROTO_HDR_LEN + FIRN_PROTO_TOKEN_LEN)
#define ADDR_LEN 18

#define FR_ACK_FIXED 12
#define FR_DURABLE_FIXED 4
#define FR_CREDIT_LEN 16
#define FR_ERROR_FIXED 4

/* Addresses on the wire: 16 address bytes then the port. */
static inline void
addr_put(uint8_t *p, const struct firn_proto_addr *a)
{
	memcpy(p, a->ip, 16);
	st16(p + 16, a->port);
}

static inline void
addr_get(const uint8_t *p, struct firn_proto_addr *a)
{
	memcpy(a->ip, p, 16);
	a->port = ld16(p + 16);
}

/* ---- crypto (crypto.c) ------------------------------------------------------ */

struct evp_mac_ctx_st;

/* HMAC-SHA256 of the concatenation of n parts (handshake paths only). 0 or -EIO. */
struct proto_part {
	const void *p;
	size_t n;
};
int proto_hmac(const uint8_t *key, size_t key_len, const struct proto_part *parts, unsigned n,
               uint8_t out[32]);

/*
 * A reusable CMAC-AES-256 context keyed once, for cookies and reset tokens:
 * it re-initialises without allocating (OpenSSL 3.0's HMAC does not).
 */
struct evp_mac_ctx_st *proto_cmac_new(const uint8_t key[32]);
void proto_cmac_free(struct evp_mac_ctx_st *m);
int proto_cmac(struct evp_mac_ctx_st *m, const struct proto_part *parts, unsigned n,
               uint8_t out[16]);
/* Fill with random bytes. 0 or -EIO. */
int proto_random(void *buf, size_t n);
/* Wipe secrets (not optimised away). */
void proto_cleanse(void *p, size_t n);
/* Constant-time compare; 0 when equal. */
int proto_memeq_ct(const void *a, const void *b, size_t n);

/* ---- dedupe internals ---------------------------------------------------- */

enum { DEDUPE_EMPTY = 0, DEDUPE_PENDING = 1, DEDUPE_DONE = 2 };

struct dedupe_ent {
	uint64_t seq; /* 0: empty */
	uint64_t counter;
	uint32_t shard;
	uint32_t len;
	uint8_t state;
	uint8_t status;
};

struct firn_proto_producer {
	uint64_t id; /* 0: free */
	uint64_t hi;
	uint64_t last_use_ms;
	struct firn_proto_session *session;
	struct dedupe_ent *ents;
	struct firn_proto_credit credit; /* server side: grant and bytes in flight */
	uint32_t pending;
	uint32_t window; /* W, a copy of the table's */
	uint32_t next;   /* hash chain (index), UINT32_MAX ends */
	int32_t key_idx; /* access key that owns it; -1: not bound yet */
};

struct firn_proto_dedupe {
	struct firn_proto_producer *prod;
	unsigned n;
	unsigned window; /* power of two */
	struct dedupe_ent *ents;
	uint32_t *heads;
	uint32_t mask;
	uint32_t *free_stack;
	unsigned n_free;
};

/* ---- reassembly internals ---------------------------------------------------- */

enum { REASM_FREE = 0, REASM_BUSY = 1, REASM_COMPLETE = 2 };

struct firn_proto_reasm_slot {
	uint64_t seq;
	uint64_t last_ms;
	uint8_t *buf;            /* total_len bytes of data */
	uint64_t *bits;          /* one bit per data byte received */
	size_t block;            /* pool bytes taken (both blocks) */
	int32_t page, bits_page; /* bits_page < 0: the bitmap shares the data block */
	uint32_t total_len;
	uint32_t covered; /* bits set */
	uint16_t ref;
	uint16_t key_len;
	uint8_t flags;
	uint8_t state;
	bool have_first;
	uint8_t key[FIRN_PARTITION_KEY_MAX];
};

/* Pool internals (reasm.c), exposed for the tests. */
int32_t proto_pool_alloc(struct firn_proto_pool *p, size_t size, size_t *block);
void proto_pool_free(struct firn_proto_pool *p, int32_t page);
uint8_t *proto_pool_ptr(struct firn_proto_pool *p, int32_t page);

/* ---- server internals -------------------------------------------------------- */

enum { SESS_FREE = 0, SESS_LIVE = 1, SESS_TOMB = 2 };
enum { REF_UNBOUND = 0, REF_OK = 1, REF_MISSING = 2 };

struct firn_proto_session {
	uint64_t id;
	uint32_t slot;
	uint8_t state;
	uint16_t max_dgram;
	int32_t key_idx;
	struct firn_proto_addr peer;
	uint8_t nonce_c[FIRN_PROTO_NONCE_LEN];
	uint32_t nonce_next; /* chain of the nonce index */
	struct firn_proto_producer *producer;
	uint64_t tx_pn;
	uint64_t last_rx_ms;
	uint64_t top_rx_ms; /* when the highest packet number arrived (ack delay) */
	uint64_t tomb_until_ms;
	uint32_t rx_since_ack;
	uint64_t sent_max_seq;
	uint64_t sent_window;
	struct firn_proto_replay replay;
	struct firn_proto_aead rx, tx;
	struct firn_proto_reasm reasm;
	uint64_t *stream_ids;
	uint64_t *name_hash;
	uint8_t *ref_state;
	struct firn_proto_durable *ackq;
	unsigned ackq_head, ackq_n, ackq_cap;
	void *user;
};

struct firn_proto_server {
	struct firn_proto_server_conf conf;
	struct firn_proto_access_key *keys;
	char *key_mem; /* ids and secrets, wiped on destroy */
	size_t key_mem_len;
	uint8_t cookie_secret[32];
	struct evp_mac_ctx_st *mac;
	struct firn_proto_session *sess;
	uint32_t *free_stack;
	unsigned n_free;
	unsigned n_live;
	uint32_t *nonce_heads;
	uint32_t nonce_mask;
	struct firn_proto_dedupe *dedupe;
	struct firn_proto_pool *pool;
	uint64_t *ref_ids_mem;
	uint64_t *ref_hash_mem;
	uint8_t *ref_state_mem;
	struct firn_proto_durable *ackq_mem;
	struct firn_proto_stats st;
};

/* Cookie MAC and reset token (server.c, exposed for the tests). */
int proto_cookie_mac(struct firn_proto_server *s, const struct firn_proto_addr *from,
                     const uint8_t *nonce_c, uint32_t bucket, uint8_t out[FIRN_PROTO_SNONCE_LEN]);
int proto_reset_token(struct firn_proto_server *s, uint64_t sid, uint8_t out[FIRN_PROTO_TOKEN_LEN]);

/* Is pn marked received in the window (wire.c)? */
bool proto_replay_has(const struct firn_proto_replay *r, uint64_t pn);
/*
 * The first packet number in [lo, hi] the window has not seen, or hi + 1
 * when it has seen them all. lo >= 1, and [lo, hi] must lie inside the
 * window (top - hi >= 0, top - lo < FIRN_PROTO_REPLAY_BITS). Scans 64 bits
 * at a time.
 */
uint64_t proto_replay_first_gap(const struct firn_proto_replay *r, uint64_t lo, uint64_t hi);

/* Valid partition key: 1..256 bytes of UTF-8 (wire.c). */
bool proto_key_ok(const uint8_t *key, size_t len);

#endif /* FIRN_PROTO_INTERNAL_H */
