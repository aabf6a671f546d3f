/*
 * firn_proto.h - the firn record protocol (doc/protocol.md), without I/O.
 *
 * What. Producers push records to firnd over UDP. This library is
 * everything about that protocol except the sockets: the datagram header,
 * the stateless-cookie handshake authenticated with the API's access keys,
 * per-direction AES-256-GCM (keys from HKDF), the replay window, the record
 * batch encoder and the zero-copy decoder, fragment reassembly under a
 * memory cap, the per-producer dedupe window that makes ingestion
 * exactly-once, credits, and RECEIVED/DURABLE acks. Drivers (DPDK, kernel
 * sockets) feed it datagrams and send what it returns.
 *
 * Why pure. The same code serves the DPDK path, the socket path, the client
 * library and the fuzzer; tests drive both ends of a session in one thread
 * with a fake clock (every function takes now_ms, a monotonic millisecond
 * clock, and nothing reads a clock itself).
 *
 * Hot path. Sealing, opening, decoding, reassembling, dedupe and credits do
 * not allocate, log or make syscalls: every table is sized and allocated
 * once (firn_proto_server_create) from the limits in the conf, and each
 * refusal is counted in struct firn_proto_stats.
 *
 * A server, in the order a driver uses it:
 *
 *	struct firn_proto_server *srv = firn_proto_server_create(&conf);
 *	...per datagram (pkt, len) from `from`:
 *	if (len > 5 && pkt[5] != FIRN_PROTO_DATA) {
 *		n = firn_proto_server_handshake(srv, &from, pkt, len, now, out, cap, &sess);
 *		if (n > 0) send(out, n);               // RETRY, ACCEPT or REJECT
 *	} else if ((n = firn_proto_server_open(srv, &from, pkt, len, now, &sess, &pt)) >= 0) {
 *		firn_proto_rx_begin(&rx, srv, sess, pt, n, now);
 *		while (firn_proto_rx_next(&rx, &it) > 0)
 *			RECORD: route and store it (then release it.reasm_slot if >= 0);
 *			        once durable: firn_proto_record_done(srv, it.producer, seq,
 *			        shard, counter, FIRN_PROTO_OK) and queue the entry on
 *			        firn_proto_producer_session(it.producer);
 *			ANSWER: firn_proto_session_queue_durable(sess, &it.ack);
 *	} else if (n == -ENOENT) {
 *		n = firn_proto_server_reset(srv, session id from the header, len, out, cap);
 *		if (n > 0) send(out, n);
 *	}
 *	...per poll loop, for sessions with something to say:
 *	if (firn_proto_session_ack_due(sess, now) || firn_proto_session_tx_pending(sess))
 *		while ((n = firn_proto_session_flush(srv, sess, now, false, out, cap)) > 0)
 *			send(out, n);                  // acks + credit, sealed
 *	firn_proto_server_tick(srv, now);              // expiry, every ~100 ms
 *
 * A client: firn_proto_client_start() -> HELLO; feed replies to
 * firn_proto_client_handshake() until firn_proto_client_state() is
 * ESTABLISHED; then firn_proto_client_enc_begin() + firn_proto_enc_record()
 * ... + firn_proto_client_seal() per datagram, and firn_proto_client_open() +
 * firn_proto_dec_next() for the server's acks.
 *
 * Byte order on the wire is little-endian; the code never casts packet
 * bytes to structs.
 *
 * Thread safety: a server, a client and a session are each owned by one
 * thread at a time (the RX lcore that owns the session). The pure helpers
 * (header, replay, credit, encoder, decoder) work on the caller's structs
 * only.
 */
#ifndef FIRN_PROTO_H
#define FIRN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firn_record.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire constants (doc/protocol.md §2) ------------------------------- */

#define FIRN_PROTO_VERSION 1
#define FIRN_PROTO_HDR_LEN 24
#define FIRN_PROTO_TAG_LEN 16
#define FIRN_PROTO_NONCE_LEN 32  /* client nonce */
#define FIRN_PROTO_SNONCE_LEN 16 /* server nonce: the cookie's MAC */
#define FIRN_PROTO_COOKIE_LEN 20 /* bucket (4) + CMAC (16) */
#define FIRN_PROTO_TOKEN_LEN 16
#define FIRN_PROTO_HELLO_MIN 1200
/* Range of max_datagram (UDP payload bytes) a peer may use. */
#define FIRN_PROTO_DGRAM_MIN 1200
#define FIRN_PROTO_DGRAM_MAX 9188
#define FIRN_PROTO_DGRAM_DEFAULT 1472
#define FIRN_PROTO_KEY_ID_MAX 128
#define FIRN_PROTO_STREAM_NAME_MAX 128
#define FIRN_PROTO_REPLAY_BITS 1024
#define FIRN_PROTO_ACK_RANGES_MAX 64
/* Fixed part of a RECORD and of a FRAGMENT frame. */
#define FIRN_PROTO_RECORD_HDR 18
#define FIRN_PROTO_FRAGMENT_HDR 24
#define FIRN_PROTO_DURABLE_ENTRY 24
/* Largest packet number a session may use before it must handshake again. */
#define FIRN_PROTO_PN_MAX (1ull << 62)

enum firn_proto_type {
	FIRN_PROTO_HELLO = 0x01,
	FIRN_PROTO_RETRY = 0x02,
	FIRN_PROTO_INIT = 0x03,
	FIRN_PROTO_ACCEPT = 0x04,
	FIRN_PROTO_REJECT = 0x05,
	FIRN_PROTO_RESET = 0x06,
	FIRN_PROTO_DATA = 0x10,
};

/* Header flags; every other bit must be zero. */
#define FIRN_PROTO_F_ACK_NOW 0x0001u

enum firn_proto_frame_type {
	FIRN_PROTO_FR_PADDING = 0x00,
	FIRN_PROTO_FR_RECORD = 0x01,
	FIRN_PROTO_FR_FRAGMENT = 0x02,
	FIRN_PROTO_FR_STREAM = 0x03,
	FIRN_PROTO_FR_ACK_RECEIVED = 0x10,
	FIRN_PROTO_FR_ACK_DURABLE = 0x11,
	FIRN_PROTO_FR_CREDIT = 0x12,
	FIRN_PROTO_FR_PING = 0x20,
	FIRN_PROTO_FR_ERROR = 0x21,
	FIRN_PROTO_FR_CLOSE = 0x22,
};

/* Record frame flags. */
#define FIRN_PROTO_RF_HASH 0x01u
/* Durable entry flags. */
#define FIRN_PROTO_DF_DUPLICATE 0x01u

/* Error codes on the wire (doc/protocol.md §10). */
enum firn_proto_status {
	FIRN_PROTO_OK = 0,
	FIRN_PROTO_E_UNKNOWN_STREAM = 1,
	FIRN_PROTO_E_TOO_LARGE = 2,
	FIRN_PROTO_E_AUTH = 3,
	FIRN_PROTO_E_SESSION_EXPIRED = 4,
	FIRN_PROTO_E_READ_ONLY = 5,
	FIRN_PROTO_E_REDIRECT = 6,
	FIRN_PROTO_E_OVERLOADED = 7,
	FIRN_PROTO_E_STALE = 8,
	FIRN_PROTO_E_PROTOCOL = 9,
	FIRN_PROTO_E_VERSION = 10,
	FIRN_PROTO_E_BAD_KEY = 11,
	FIRN_PROTO_E_INTERNAL = 12,
	FIRN_PROTO_E_CLOSED = 13,
};

/* "UNKNOWN_STREAM", ...; "?" for codes this version does not know. */
const char *firn_proto_status_name(unsigned code);

/*
 * A peer address: IPv6, or IPv4 in its mapped form ::ffff:a.b.c.d; port in
 * host order. Used for cookies (so they bind the client's address) and for
 * REDIRECT.
 */
struct firn_proto_addr {
	uint8_t ip[16];
	uint16_t port;
};

/* Fill a with the IPv4-mapped form of ip (4 bytes, network order) and port. */
void firn_proto_addr_v4(struct firn_proto_addr *a, const uint8_t ip[4], uint16_t port);

/*
 * UDP payload size for a link MTU: mtu - 28 (IPv4) or mtu - 48 (IPv6),
 * clamped to [FIRN_PROTO_DGRAM_MIN, FIRN_PROTO_DGRAM_MAX]. 1500 -> 1472,
 * 9000 -> 8972.
 */
uint16_t firn_proto_dgram_for_mtu(unsigned mtu, bool ipv6);

/* ---- header -------------------------------------------------------------- */

struct firn_proto_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint64_t session_id;
	uint64_t pn; /* packet number; 0 in cleartext types */
};

/* Write the 24-byte header. Returns FIRN_PROTO_HDR_LEN or -ENOSPC. */
int firn_proto_hdr_encode(const struct firn_proto_hdr *h, uint8_t *buf, size_t cap);

/*
 * Parse and check a header against the datagram length: magic, version,
 * known type, reserved flags zero, pn zero for cleartext and nonzero for
 * sealed types, and the type's minimum length. Returns 0, -EBADMSG
 * (malformed or too short) or -EPROTONOSUPPORT (good magic, other version;
 * h->version is set so the server may REJECT with VERSION).
 */
int firn_proto_hdr_decode(const uint8_t *buf, size_t len, struct firn_proto_hdr *h);

/* ---- crypto ---------------------------------------------------------------- */

struct firn_proto_keys {
	uint8_t c2s_key[32];
	uint8_t c2s_iv[12];
	uint8_t s2c_key[32];
	uint8_t s2c_iv[12];
};

/*
 * HKDF-SHA256(ikm = secret, salt = nonce_c || nonce_s,
 * info = "firn1 keys" || session_id || proof) -> 88 bytes (§4). 0 or -EIO.
 */
int firn_proto_derive_keys(const uint8_t *secret, size_t secret_len,
                           const uint8_t nonce_c[FIRN_PROTO_NONCE_LEN],
                           const uint8_t nonce_s[FIRN_PROTO_SNONCE_LEN], uint64_t session_id,
                           const uint8_t proof[32], struct firn_proto_keys *out);

/* The client proof of §3.3 (HMAC-SHA256 with the secret). 0 or -EIO. */
int firn_proto_client_proof(const uint8_t *secret, size_t secret_len,
                            const uint8_t nonce_c[FIRN_PROTO_NONCE_LEN],
                            const uint8_t nonce_s[FIRN_PROTO_SNONCE_LEN], uint64_t producer_id,
                            uint16_t max_dgram, const char *key_id, size_t key_id_len,
                            uint8_t out[32]);

struct evp_cipher_ctx_st;

/*
 * One direction of a session: an AES-256-GCM context keyed once, reused for
 * every datagram (only the IV changes), and the direction's IV.
 */
struct firn_proto_aead {
	struct evp_cipher_ctx_st *ctx;
	uint8_t iv[12];
	bool seal;
};

/* Key a context for sealing (seal = true) or opening. 0, -ENOMEM or -EIO. */
int firn_proto_aead_init(struct firn_proto_aead *a, const uint8_t key[32], const uint8_t iv[12],
                         bool seal);
/* Re-key an initialised context (no allocation). 0 or -EIO. */
int firn_proto_aead_rekey(struct firn_proto_aead *a, const uint8_t key[32], const uint8_t iv[12]);
void firn_proto_aead_fini(struct firn_proto_aead *a);

/*
 * Seal in place: buf holds the 24-byte header (with the packet number) and
 * len - 24 plaintext bytes; encrypts them and appends the tag. cap must
 * allow len + 16. Returns the datagram length or -ENOSPC / -EINVAL / -EIO.
 */
int firn_proto_seal(struct firn_proto_aead *a, uint8_t *buf, size_t len, size_t cap);

/*
 * Open in place a sealed datagram of len bytes whose header says pn.
 * Returns the plaintext length (plaintext at buf + 24), or -EBADMSG when it
 * does not authenticate (buf contents are then undefined).
 */
int firn_proto_open(struct firn_proto_aead *a, uint64_t pn, uint8_t *buf, size_t len);

/* ---- replay window (§4) ---------------------------------------------------- */

struct firn_proto_replay {
	uint64_t top; /* highest accepted packet number (0: none) */
	uint64_t bits[FIRN_PROTO_REPLAY_BITS / 64];
};

void firn_proto_replay_init(struct firn_proto_replay *r);
/*
 * May pn be accepted? 0 yes, -EALREADY seen, -ESTALE below the window,
 * -EINVAL pn 0 or past FIRN_PROTO_PN_MAX. Does not change the window: call
 * firn_proto_replay_commit() once the datagram authenticated.
 */
int firn_proto_replay_check(const struct firn_proto_replay *r, uint64_t pn);
void firn_proto_replay_commit(struct firn_proto_replay *r, uint64_t pn);

/* ---- records and the batch encoder (§6) ------------------------------------ */

/*
 * A record, or a piece of one. Encoding: data/len is the whole record, off
 * and total_len are ignored. Decoding: pointers into the datagram; for a
 * FRAGMENT, data/len is the piece at off of a total_len record and key is
 * set only in the piece at off 0.
 */
struct firn_proto_rec {
	uint64_t seq;       /* producer sequence, >= 1 */
	const uint8_t *key; /* partition key, or 16-byte big-endian hash key if hash */
	const uint8_t *data;
	uint32_t len;
	uint32_t total_len;
	uint32_t off;
	uint16_t key_len;
	uint16_t stream_ref;
	bool hash;
	bool fragment;
};

/* Big-endian bytes of a 128-bit hash key, and back. */
void firn_proto_hash_put(struct firn_u128 h, uint8_t out[16]);
struct firn_u128 firn_proto_hash_get(const uint8_t in[16]);

/*
 * Builds one DATA datagram in the caller's buffer: header, then frames, and
 * room kept for the tag. Seal with firn_proto_enc_seal() or a client/session
 * helper.
 */
struct firn_proto_enc {
	uint8_t *buf;
	size_t cap;         /* max_datagram (or less) */
	size_t len;         /* bytes written so far, header included */
	unsigned records;   /* RECORD + FRAGMENT frames written */
	uint16_t bound[16]; /* stream refs bound by a STREAM frame in this datagram */
	unsigned n_bound;
	size_t durable_at; /* offset of the open ACK_DURABLE frame (0: none) */
};

/*
 * Start a DATA datagram in buf (cap bytes, normally the session's
 * max_dgram). A cap too small for a header and a tag makes an encoder with
 * no room, and sealing it then fails with -EINVAL.
 */
void firn_proto_enc_begin(struct firn_proto_enc *e, uint8_t *buf, size_t cap, uint64_t session_id,
                          uint64_t pn, uint16_t flags);
/* Free plaintext bytes left (the tag's room already taken off). */
size_t firn_proto_enc_room(const struct firn_proto_enc *e);

/*
 * Add record r to the datagram, starting at data byte *off (0 for a new
 * record). If stream_name is not NULL and this datagram has not bound
 * r->stream_ref yet, a STREAM frame goes first (§6.1: the client passes the
 * name until a RECEIVED ack confirms the binding).
 *
 * A record that fits whole goes in as a RECORD; one too big for an empty
 * datagram is cut into FRAGMENTs, as much as fits, and *off advances.
 * Returns 1 when the record is now fully written, 0 when the datagram is
 * full (seal it, begin the next one and call again with the same *off), or
 * -EINVAL (bad key, stream ref or name, seq 0) / -E2BIG (over 1 MiB).
 */
int firn_proto_enc_record(struct firn_proto_enc *e, const struct firn_proto_rec *r,
                          const char *stream_name, size_t name_len, uint32_t *off);

/*
 * Write exactly the fragment [off, off + len) of record r (a retransmit of a
 * lost piece), shortened to the room left. Returns the bytes of data
 * written (0: no room) or -EINVAL.
 */
int firn_proto_enc_fragment(struct firn_proto_enc *e, const struct firn_proto_rec *r,
                            const char *stream_name, size_t name_len, uint32_t off, uint32_t len);

/* One durable entry (§7.2): seqs seq..seq+count-1 -> counters counter.. in shard. */
struct firn_proto_durable {
	uint64_t seq;
	uint64_t counter;
	uint32_t shard;
	uint16_t count;
	uint8_t status;
	uint8_t flags;
};

/*
 * Add one durable entry, merged into the previous entry of the open
 * ACK_DURABLE frame when it continues it (same shard, status and flags;
 * seq and counter both follow on). Returns 1 added or merged, 0 no room.
 */
int firn_proto_enc_durable(struct firn_proto_enc *e, const struct firn_proto_durable *d);
/* ACK_RECEIVED describing a replay window (§7.1). 1 written, 0 no room. */
int firn_proto_enc_ack_received(struct firn_proto_enc *e, const struct firn_proto_replay *r,
                                uint16_t delay_us);
int firn_proto_enc_credit(struct firn_proto_enc *e, uint64_t max_seq, uint32_t window);
int firn_proto_enc_ping(struct firn_proto_enc *e);
int firn_proto_enc_close(struct firn_proto_enc *e, uint16_t code);
/* redirect may be NULL unless code is FIRN_PROTO_E_REDIRECT. msg may be NULL. */
int firn_proto_enc_error(struct firn_proto_enc *e, uint16_t code,
                         const struct firn_proto_addr *redirect, const char *msg);
/* Seal the datagram with a; returns its length or -errno. */
int firn_proto_enc_seal(struct firn_proto_enc *e, struct firn_proto_aead *a);

/* ---- the frame decoder (§5) -------------------------------------------------- */

struct firn_proto_range {
	uint64_t lo, hi; /* inclusive */
};

/* One decoded frame; pointers point into the (opened) datagram. */
struct firn_proto_frame {
	uint8_t type;
	union {
		struct firn_proto_rec rec; /* RECORD, FRAGMENT */
		struct {
			const char *name;
			uint16_t ref;
			uint8_t len;
		} stream;
		struct {
			uint64_t cum;
			const uint8_t *ranges; /* n (gap, len) pairs; use firn_proto_ack_ranges() */
			uint16_t delay_us;
			uint8_t n;
		} ack;
		struct {
			const uint8_t *ents; /* n entries; use firn_proto_durable_get() */
			uint16_t n;
		} durable;
		struct {
			uint64_t max_seq;
			uint32_t window;
		} credit;
		struct {
			struct firn_proto_addr redirect;
			const char *msg;
			uint16_t code;
			uint8_t msg_len;
		} error;
		struct {
			uint16_t code;
		} close;
	};
};

struct firn_proto_dec {
	const uint8_t *p, *end;
	bool from_client; /* which frames are allowed */
};

/* Iterate the plaintext of a DATA datagram sent by a client (from_client) or a server. */
void firn_proto_dec_init(struct firn_proto_dec *d, const uint8_t *plain, size_t len,
                         bool from_client);
/*
 * Next frame: 1 (f filled), 0 (end: no more frames, or PADDING), or -EBADMSG
 * (malformed, truncated, unknown type or wrong direction; stop here).
 * Every length is checked against the end of the plaintext before use.
 */
int firn_proto_dec_next(struct firn_proto_dec *d, struct firn_proto_frame *f);

/* Expand an ACK_RECEIVED frame's ranges (ascending). Returns the count written. */
unsigned firn_proto_ack_ranges(const struct firn_proto_frame *f, struct firn_proto_range *out,
                               unsigned max);
/* Entry i of an ACK_DURABLE frame. */
void firn_proto_durable_get(const struct firn_proto_frame *f, unsigned i,
                            struct firn_proto_durable *out);

/* ---- fragment reassembly (§6.3) --------------------------------------------- */

/* A preallocated buddy arena for reassembly buffers, shared by sessions. */
struct firn_proto_pool;

/* bytes is rounded down to whole MiB (at least 1). NULL with the reason in the error chain. */
struct firn_proto_pool *firn_proto_pool_create(size_t bytes);
void firn_proto_pool_destroy(struct firn_proto_pool *p);
/* Bytes currently handed out. */
size_t firn_proto_pool_used(const struct firn_proto_pool *p);

struct firn_proto_reasm_slot;

/* One session's reassembly state: a few slots and a memory cap. */
struct firn_proto_reasm {
	struct firn_proto_pool *pool;
	struct firn_proto_reasm_slot *slots;
	unsigned n_slots;
	size_t mem_cap;
	size_t mem_used;
	uint32_t timeout_ms;
};

/* Allocate n_slots slots (once). 0 or -ENOMEM. */
int firn_proto_reasm_init(struct firn_proto_reasm *r, struct firn_proto_pool *pool,
                          unsigned n_slots, size_t mem_cap, uint32_t timeout_ms);
/* Drop everything in progress and free the slots. */
void firn_proto_reasm_fini(struct firn_proto_reasm *r);
/* Drop everything in progress (session closed); keeps the slots. */
void firn_proto_reasm_reset(struct firn_proto_reasm *r);

/*
 * Add a decoded FRAGMENT. Returns:
 *   0          stored, record not complete yet
 *   1          record complete: *out is the whole record (data in a pool
 *              buffer, key copied into the slot) and *slot names the buffer;
 *              hand it on, then firn_proto_reasm_release(r, *slot)
 *   -EALREADY  nothing new (every byte was already there, or the record
 *              is complete and waiting for release)
 *   -ENOBUFS   no free slot, the session's cap or the pool is exhausted
 *   -E2BIG     total_len over FIRN_RECORD_DATA_MAX
 *   -EINVAL    disagrees with earlier fragments of the record (total_len,
 *              stream ref, flags), a key in a non-first fragment, or the
 *              piece does not fit the record
 * Pieces may arrive in any order, repeat, overlap and be cut differently:
 * coverage is tracked per byte. Memory per record: its data rounded up to
 * a power of two, plus 1/8 for the coverage bitmap (in the same block when
 * it fits).
 */
int firn_proto_reasm_add(struct firn_proto_reasm *r, const struct firn_proto_rec *frag,
                         uint64_t now_ms, struct firn_proto_rec *out, int *slot);
void firn_proto_reasm_release(struct firn_proto_reasm *r, int slot);
/* Is a record with this seq in reassembly? */
bool firn_proto_reasm_busy(const struct firn_proto_reasm *r, uint64_t seq);
/*
 * Is there a free slot and, under the session cap, room for a record of
 * FIRN_RECORD_DATA_MAX bytes? A caller that keeps completed records
 * (release() deferred) flushes them when this turns false.
 */
bool firn_proto_reasm_room(const struct firn_proto_reasm *r);
/* Free partial records idle for timeout_ms. Returns how many were dropped. */
unsigned firn_proto_reasm_expire(struct firn_proto_reasm *r, uint64_t now_ms);

/* ---- dedupe (§8) --------------------------------------------------------------- */

/* Producers and their dedupe windows, in a fixed table. */
struct firn_proto_dedupe;
struct firn_proto_producer;

enum firn_proto_dedupe_res {
	FIRN_PROTO_DEDUPE_NEW = 0,     /* not seen: store it */
	FIRN_PROTO_DEDUPE_PENDING = 1, /* seen, ack not known yet: drop */
	FIRN_PROTO_DEDUPE_DONE = 2,    /* seen and answered: resend *orig */
	FIRN_PROTO_DEDUPE_STALE = 3,   /* below the window: answer STALE */
};

/* window: records per producer, a power of two >= 64. NULL + error chain on bad args / ENOMEM. */
struct firn_proto_dedupe *firn_proto_dedupe_create(unsigned producers, unsigned window);
void firn_proto_dedupe_destroy(struct firn_proto_dedupe *d);

/*
 * Find a producer, or (create) add it. Adding into a full table evicts the
 * least recently used producer that has no session and nothing pending;
 * NULL when none can go (-ENOSPC in the error code) or id is 0.
 */
struct firn_proto_producer *firn_proto_producer_get(struct firn_proto_dedupe *d, uint64_t id,
                                                    bool create, uint64_t now_ms);
uint64_t firn_proto_producer_id(const struct firn_proto_producer *p);
/* Highest seq seen (0: none). */
uint64_t firn_proto_producer_hi(const struct firn_proto_producer *p);
/* Records handed on and not yet done. */
uint32_t firn_proto_producer_pending(const struct firn_proto_producer *p);

/* Look seq up without changing anything. On DONE, *orig is the stored answer. */
enum firn_proto_dedupe_res firn_proto_dedupe_check(const struct firn_proto_producer *p,
                                                   uint64_t seq, struct firn_proto_durable *orig);
/*
 * Mark a NEW seq as seen and pending (len is kept to release byte credit
 * when it is done). -EBUSY if sliding the window for it would forget a
 * pending record (answer OVERLOADED), -ESTALE below the window, -EALREADY
 * if seen.
 */
int firn_proto_dedupe_reserve(struct firn_proto_producer *p, uint64_t seq, uint32_t len);
/*
 * A reserved seq got its outcome: status OK with (shard, counter), or a
 * permanent error. Returns the record's reserved length, or -ENOENT if seq
 * is not pending (already done, or slid out).
 */
int firn_proto_dedupe_done(struct firn_proto_producer *p, uint64_t seq, uint32_t shard,
                           uint64_t counter, uint8_t status);
/* Undo a reservation after a transient refusal, so a resend counts as new. */
int firn_proto_dedupe_forget(struct firn_proto_producer *p, uint64_t seq);
/*
 * Recovery (§8.3): the store holds durable record (producer_id, seq) at
 * (shard, counter). Any order. 0, -EINVAL (id or seq 0), -ENOSPC (table full).
 */
int firn_proto_dedupe_seed(struct firn_proto_dedupe *d, uint64_t producer_id, uint64_t seq,
                           uint32_t shard, uint64_t counter, uint64_t now_ms);

/* ---- credits (§9) --------------------------------------------------------------- */

/*
 * One producer's credit. The same struct and functions serve both ends: the
 * server grants and checks, the client applies grants and takes.
 */
struct firn_proto_credit {
	uint64_t max_seq; /* new records need seq <= max_seq */
	uint64_t window;  /* bytes allowed in flight */
	uint64_t used;    /* bytes in flight */
	uint64_t pn;      /* packet that carried the grant applied last (client) */
};

void firn_proto_credit_init(struct firn_proto_credit *c, uint64_t max_seq, uint64_t window);
/* Bytes that may still be sent now: window - used, or 0 (never negative). */
uint64_t firn_proto_credit_avail(const struct firn_proto_credit *c);
/*
 * Charge a new record of len bytes with producer seq: 0, or -EAGAIN (seq
 * beyond max_seq or not enough bytes: wait for a grant); nothing changes on
 * -EAGAIN. A record larger than the whole window is allowed when nothing
 * else is in flight, so a big record never deadlocks.
 */
int firn_proto_credit_take(struct firn_proto_credit *c, uint64_t seq, uint64_t len);
/* An in-flight record was acked (or refused): len bytes come back. Saturates at 0. */
void firn_proto_credit_release(struct firn_proto_credit *c, uint64_t len);
/*
 * Server: grant max_seq >= base_seq + records (never lowered) and the window
 * to window bytes. Returns true when either changed (send a CREDIT frame).
 */
bool firn_proto_credit_grant(struct firn_proto_credit *c, uint64_t base_seq, uint64_t records,
                             uint64_t window);
/*
 * Client: apply a CREDIT frame carried by packet pn. Ignored (returns false)
 * when an earlier-applied grant came in a later packet.
 */
bool firn_proto_credit_apply(struct firn_proto_credit *c, uint64_t pn, uint64_t max_seq,
                             uint64_t window);

/* ---- server ---------------------------------------------------------------------- */

struct firn_proto_access_key {
	const char *id;        /* access key id */
	const uint8_t *secret; /* secret access key bytes */
	size_t secret_len;
};

/*
 * Resolve a stream name to the daemon's stream id. 0, or -ENOENT (records on
 * the ref are answered UNKNOWN_STREAM). NULL in the conf: every name resolves
 * to stream id 0 (tests).
 */
typedef int (*firn_proto_resolve_fn)(void *arg, const char *name, size_t len, uint64_t *stream_id);

struct firn_proto_server_conf {
	const struct firn_proto_access_key *keys; /* copied */
	unsigned n_keys;
	const uint8_t *cookie_secret; /* 32 bytes; NULL: random */
	unsigned max_sessions;        /* default 1024 */
	unsigned max_producers;       /* default 1024 */
	unsigned dedupe_window;       /* default 1024 (power of two) */
	uint32_t dedupe_horizon_s;    /* default 900; told to clients */
	unsigned stream_refs;         /* default 64 */
	unsigned reasm_slots;         /* default 4 */
	size_t reasm_session_bytes;   /* default 4 MiB */
	size_t reasm_pool_bytes;      /* default 64 MiB */
	uint32_t reasm_timeout_ms;    /* default 2000 */
	uint32_t idle_timeout_ms;     /* default 30000 */
	uint32_t keepalive_ms;        /* default 10000 */
	uint32_t cookie_bucket_ms;    /* default 10000 */
	uint16_t max_dgram;           /* default 1472 */
	unsigned ack_queue;           /* durable entries queued per session; default 128 */
	uint64_t credit_records;      /* first record credit; default dedupe_window / 2 */
	uint32_t credit_window;       /* first byte credit; default 4 MiB */
	firn_proto_resolve_fn resolve;
	void *resolve_arg;
	/*
	 * Written into bits 24..31 of every session id this server mints, so a
	 * datagram can be steered to the server (the RX agent) that owns its
	 * session from the cleartext header alone: firn_proto_session_tag().
	 * Default 0. Clients treat session ids as opaque.
	 */
	uint8_t session_tag;
};

/* The session_tag of the server that minted session id sid. */
static inline unsigned
firn_proto_session_tag(uint64_t sid)
{
	return (unsigned)(sid >> 24) & 0xffu;
}

/*
 * The producer id of a cleartext INIT (doc/protocol.md §3.3) whose header
 * decoded as FIRN_PROTO_INIT, read without authenticating it: to pick the
 * RX agent that owns the producer before the handshake runs there. 0 or
 * -EBADMSG (too short).
 */
int firn_proto_init_producer(const uint8_t *pkt, size_t len, uint64_t *producer_id);

/* Fill conf with the defaults (no keys). */
void firn_proto_server_conf_defaults(struct firn_proto_server_conf *conf);

struct firn_proto_server;
struct firn_proto_session;

/* Counters (one server = one thread, so plain integers). */
struct firn_proto_stats {
	uint64_t rx_bad_header; /* malformed header / wrong magic / short */
	uint64_t hello, retry_sent, init, accept_sent, reject_sent;
	uint64_t cookie_bad, cookie_expired, init_replayed;
	uint64_t auth_failed;     /* INIT with unknown key id or wrong proof */
	uint64_t unknown_session; /* DATA for no live session (RESET owed) */
	uint64_t aead_failed;     /* DATA that did not authenticate */
	uint64_t replayed;        /* DATA refused by the replay window */
	uint64_t malformed;       /* authenticated DATA with a bad frame */
	uint64_t records, fragments, dup_pending, dup_done, stale;
	uint64_t refused_credit, refused_busy, unknown_stream, bad_key, too_large;
	uint64_t reasm_full, reasm_bad, reasm_dup, reasm_timeout, reasm_complete;
	uint64_t sessions_opened, sessions_expired, sessions_replaced, sessions_closed;
	uint64_t tx_datagrams;
};

/* Allocate every table. NULL with the reason in the error chain. */
struct firn_proto_server *firn_proto_server_create(const struct firn_proto_server_conf *conf);
void firn_proto_server_destroy(struct firn_proto_server *s);
const struct firn_proto_stats *firn_proto_server_stats(const struct firn_proto_server *s);
struct firn_proto_dedupe *firn_proto_server_dedupe(struct firn_proto_server *s);
/* Live sessions. */
unsigned firn_proto_server_sessions(const struct firn_proto_server *s);

/*
 * Handle a cleartext datagram (HELLO, INIT; anything else is dropped) from
 * `from`. May write the answer (RETRY, ACCEPT, REJECT) into out and return
 * its length; 0 when there is nothing to send (dropped and counted). *sess
 * is set when a session was created or found (ACCEPT re-sent), else NULL.
 * Returns -EBADMSG for a datagram that is not a valid handshake packet.
 */
int firn_proto_server_handshake(struct firn_proto_server *s, const struct firn_proto_addr *from,
                                const uint8_t *pkt, size_t len, uint64_t now_ms, uint8_t *out,
                                size_t cap, struct firn_proto_session **sess);

/*
 * Authenticate and decrypt a DATA datagram in place. On success returns the
 * plaintext length, *sess the session and *plain the plaintext (inside pkt),
 * and the session's replay window and idle timer are updated. Errors:
 * -EBADMSG malformed or did not authenticate, -ENOENT no such session (send
 * firn_proto_server_reset()), -EALREADY/-ESTALE replayed.
 */
int firn_proto_server_open(struct firn_proto_server *s, const struct firn_proto_addr *from,
                           uint8_t *pkt, size_t len, uint64_t now_ms,
                           struct firn_proto_session **sess, uint8_t **plain);

/*
 * The RESET for an unknown session id (§11), at most trigger_len bytes (the
 * size of the datagram that prompted it). Returns its length, 0 when
 * trigger_len is too small, or -ENOSPC.
 */
int firn_proto_server_reset(struct firn_proto_server *s, uint64_t session_id, size_t trigger_len,
                            uint8_t *out, size_t cap);

/*
 * Expire idle sessions, time out partial records, free tombstones. Call
 * every ~100 ms. Returns the number of sessions expired.
 */
unsigned firn_proto_server_tick(struct firn_proto_server *s, uint64_t now_ms);

/* A session by id (NULL if not live). */
struct firn_proto_session *firn_proto_server_session(struct firn_proto_server *s, uint64_t id);
uint64_t firn_proto_session_id(const struct firn_proto_session *ss);
const struct firn_proto_addr *firn_proto_session_peer(const struct firn_proto_session *ss);
struct firn_proto_producer *firn_proto_session_producer(const struct firn_proto_session *ss);
/* The session speaking for a producer now (NULL: none; acks wait for the next one). */
struct firn_proto_session *firn_proto_producer_session(const struct firn_proto_producer *p);
struct firn_proto_reasm *firn_proto_session_reasm(struct firn_proto_session *ss);
void *firn_proto_session_user(const struct firn_proto_session *ss);
void firn_proto_session_set_user(struct firn_proto_session *ss, void *user);
/* Close a session now (its slot becomes a tombstone). */
void firn_proto_session_close(struct firn_proto_server *s, struct firn_proto_session *ss,
                              uint64_t now_ms);

/* What firn_proto_rx_next() found. */
enum firn_proto_rx_kind {
	FIRN_PROTO_RX_RECORD, /* a new record to store (dedupe slot reserved, credit taken) */
	FIRN_PROTO_RX_ANSWER, /* nothing to store: queue item.ack (duplicate or refusal) */
	FIRN_PROTO_RX_PING,   /* the client wants an ack now */
	FIRN_PROTO_RX_CLOSE,  /* the client closed the session */
};

struct firn_proto_rx_item {
	enum firn_proto_rx_kind kind;
	struct firn_proto_rec rec; /* RECORD: whole record; pointers into the datagram,
	                              or into a reassembly buffer when reasm_slot >= 0 */
	uint64_t stream_id;        /* RECORD */
	struct firn_proto_producer *producer;
	int reasm_slot;                /* RECORD: release it once the record was copied */
	struct firn_proto_durable ack; /* ANSWER */
	uint16_t code;                 /* CLOSE */
};

/* Walks the frames of one opened datagram of a session, through dedupe, credit and reassembly. */
struct firn_proto_rx {
	struct firn_proto_server *s;
	struct firn_proto_session *ss;
	struct firn_proto_dec dec;
	uint64_t now_ms;
};

void firn_proto_rx_begin(struct firn_proto_rx *rx, struct firn_proto_server *s,
                         struct firn_proto_session *ss, const uint8_t *plain, size_t len,
                         uint64_t now_ms);
/*
 * Next item: 1, 0 at the end, -EBADMSG (malformed frame: count and stop),
 * -EPROTO (a stream ref rebound to another name: send ERROR PROTOCOL and
 * close). Per-record problems never fail the call; they come back as
 * ANSWER items.
 */
int firn_proto_rx_next(struct firn_proto_rx *rx, struct firn_proto_rx_item *it);

/*
 * The store reported a record durable (status OK, shard, counter) or failed
 * it permanently (status != OK). Marks it done in the dedupe window and
 * returns the byte credit. 0 or -ENOENT (not pending). Then queue the ack on
 * firn_proto_producer_session(p), if any.
 */
int firn_proto_record_done(struct firn_proto_server *s, struct firn_proto_producer *p, uint64_t seq,
                           uint32_t shard, uint64_t counter, uint8_t status);
/* A transient refusal after RX_RECORD (ring full, shard sealed): forget the seq, return credit. */
int firn_proto_record_refused(struct firn_proto_server *s, struct firn_proto_producer *p,
                              uint64_t seq);

/*
 * Queue a durable entry for the session's next flush (merged with the last
 * queued one when it continues it). 0, or -ENOSPC (queue full: flush first).
 */
int firn_proto_session_queue_durable(struct firn_proto_session *ss,
                                     const struct firn_proto_durable *d);
/*
 * Update the session's credit grant: records_headroom new records beyond the
 * producer's hi and a byte window. A changed grant is sent on the next flush.
 */
void firn_proto_session_grant(struct firn_proto_session *ss, uint64_t records_headroom,
                              uint32_t window);
/*
 * Build and seal the session's next datagram to the client: ACK_RECEIVED if
 * DATA arrived since the last ack (or force), the credit if it changed (or
 * force: a PING or ACK_NOW gets the grant again, in case the datagram that
 * carried it was lost), queued durable entries as far as they fit. Returns
 * its length, 0 when there is nothing to say, or -errno. Call again while it
 * returns > 0 and entries remain (firn_proto_session_tx_pending()).
 */
int firn_proto_session_flush(struct firn_proto_server *s, struct firn_proto_session *ss,
                             uint64_t now_ms, bool force_ack, uint8_t *out, size_t cap);
unsigned firn_proto_session_tx_pending(const struct firn_proto_session *ss);
/*
 * Is a RECEIVED ack owed now (doc/protocol.md §7.1)? True after 16 DATA
 * datagrams without an ack, or 1 ms after an unacked one. PING and ACK_NOW
 * call for an immediate flush with force_ack instead.
 */
bool firn_proto_session_ack_due(const struct firn_proto_session *ss, uint64_t now_ms);
/* Send an ERROR or CLOSE frame (sealed). Returns the datagram length or -errno. */
int firn_proto_session_send_error(struct firn_proto_server *s, struct firn_proto_session *ss,
                                  uint16_t code, const struct firn_proto_addr *redirect,
                                  const char *msg, uint8_t *out, size_t cap);

/* ---- client ---------------------------------------------------------------------- */

struct firn_proto_client_conf {
	const char *key_id;
	const uint8_t *secret;
	size_t secret_len;
	uint64_t producer_id;          /* nonzero, kept across restarts */
	uint16_t max_dgram;            /* default 1472 */
	uint32_t retry_ms;             /* first handshake retransmit; default 250 */
	uint32_t handshake_timeout_ms; /* default 5000 */
};

enum firn_proto_client_state {
	FIRN_PROTO_CLIENT_IDLE,
	FIRN_PROTO_CLIENT_HELLO_SENT,
	FIRN_PROTO_CLIENT_INIT_SENT,
	FIRN_PROTO_CLIENT_ESTABLISHED,
	FIRN_PROTO_CLIENT_FAILED, /* see firn_proto_client_error() */
};

/* What ACCEPT told the client. */
struct firn_proto_session_params {
	uint64_t session_id;
	uint32_t idle_timeout_ms;
	uint32_t keepalive_ms;
	uint16_t max_dgram;
	uint16_t stream_refs;
	uint32_t dedupe_window;
	uint32_t dedupe_horizon_s;
	uint64_t producer_hi;
	struct firn_proto_credit credit;
};

struct firn_proto_client;

/* NULL with the reason in the error chain (bad conf, no memory). The secret is copied. */
struct firn_proto_client *firn_proto_client_create(const struct firn_proto_client_conf *conf);
void firn_proto_client_destroy(struct firn_proto_client *c);

/* Begin (or begin again) a handshake: writes a HELLO, returns its length or -errno. */
int firn_proto_client_start(struct firn_proto_client *c, uint64_t now_ms, uint8_t *out, size_t cap);
/*
 * Handle a cleartext datagram or ACCEPT from the server. Returns the length
 * of a datagram to send (the INIT after a RETRY), 0 when there is nothing to
 * send (check the state), or -EBADMSG (not for us: dropped). A REJECT moves
 * to FAILED; a valid RESET for our session moves to FAILED with
 * SESSION_EXPIRED.
 */
int firn_proto_client_handshake(struct firn_proto_client *c, const uint8_t *pkt, size_t len,
                                uint64_t now_ms, uint8_t *out, size_t cap);
/*
 * Timers: retransmits the HELLO/INIT with backoff (returns its length), 0
 * when nothing is due, -ETIMEDOUT once the handshake took too long (FAILED).
 */
int firn_proto_client_tick(struct firn_proto_client *c, uint64_t now_ms, uint8_t *out, size_t cap);
enum firn_proto_client_state firn_proto_client_state(const struct firn_proto_client *c);
/* The wire code that made the client FAILED (AUTH, VERSION, ...), and a REDIRECT address. */
uint16_t firn_proto_client_error(const struct firn_proto_client *c,
                                 struct firn_proto_addr *redirect);
const struct firn_proto_session_params *firn_proto_client_params(const struct firn_proto_client *c);

/* Start the next DATA datagram (next packet number). -ENOTCONN unless ESTABLISHED. */
int firn_proto_client_enc_begin(struct firn_proto_client *c, struct firn_proto_enc *e, uint8_t *buf,
                                size_t cap, uint16_t flags);
int firn_proto_client_seal(struct firn_proto_client *c, struct firn_proto_enc *e);
/*
 * Open a DATA datagram from the server in place: plaintext length with
 * *plain set, or -EBADMSG / -EALREADY / -ESTALE / -ENOTCONN. *pn receives the
 * packet number (for firn_proto_credit_apply()).
 */
int firn_proto_client_open(struct firn_proto_client *c, uint8_t *pkt, size_t len, uint8_t **plain,
                           uint64_t *pn);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_PROTO_H */
