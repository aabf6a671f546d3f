/*
 * server.c - the appliance's side of a session: handshake, open, RX, acks.
 *
 * The session table is preallocated. A slot is FREE, LIVE, or a TOMB (closed,
 * but remembered for two cookie lifetimes so a replayed INIT cannot bring it
 * back). A session id is 32 random bits over the server's tag (bits 24..31,
 * which RX agent owns it) and the slot index, so finding a
 * session is one array index plus a compare, with no hash table on the
 * per-datagram path. A stale id after the slot was reused fails the compare
 * and earns a RESET.
 *
 * Handshake (doc/protocol.md §3). A HELLO is answered from its bytes, the
 * clock and the cookie secret alone: no state, one CMAC. Only an INIT that
 * brings a cookie bound to its source address and nonce, plus a valid
 * proof of the secret, gets a slot. Each slot owns two cipher contexts made
 * at creation, so setting a session up re-keys them and allocates nothing.
 *
 * RX (firn_proto_rx_next). The frames of an opened datagram run through
 * stream bindings, the producer's dedupe window, credit and reassembly. What
 * comes out is either a new record to store, with its pointers still into
 * the datagram, or an answer to send (a duplicate's original ack, or a
 * refusal). Per-record trouble is never an error of the call; it is an
 * answer plus a counter.
 *
 * TX (firn_proto_session_flush). One sealed datagram carries a RECEIVED ack
 * built from the replay window, the credit grant if it changed or the client
 * asked (so a lost grant is repeated), and as many queued DURABLE entries as
 * fit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

#define NIL UINT32_MAX
#define MiB ((size_t)1 << 20)

void
firn_proto_server_conf_defaults(struct firn_proto_server_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->max_sessions = 1024;
	c->max_producers = 1024;
	c->dedupe_window = 1024;
	c->dedupe_horizon_s = 900;
	c->stream_refs = 64;
	c->reasm_slots = 4;
	c->reasm_session_bytes = 4 * MiB;
	c->reasm_pool_bytes = 64 * MiB;
	c->reasm_timeout_ms = 2000;
	c->idle_timeout_ms = 30000;
	c->keepalive_ms = 10000;
	c->cookie_bucket_ms = 10000;
	c->max_dgram = FIRN_PROTO_DGRAM_DEFAULT;
	c->ack_queue = 128;
	c->credit_records = 0;
	c->credit_window = 4u << 20;
}

static int
conf_check(const struct firn_proto_server_conf *c)
{
	if (c->max_sessions == 0 || c->max_sessions > (1u << 24))
		return firn_err_set(-EINVAL, "max_sessions %u must be 1..16777216",
		                    c->max_sessions);
	if (c->stream_refs == 0 || c->stream_refs > UINT16_MAX)
		return firn_err_set(-EINVAL, "stream_refs %u must be 1..65535", c->stream_refs);
	if (c->max_dgram < FIRN_PROTO_DGRAM_MIN || c->max_dgram > FIRN_PROTO_DGRAM_MAX)
		return firn_err_set(-EINVAL, "max_dgram %u must be %u..%u", c->max_dgram,
		                    FIRN_PROTO_DGRAM_MIN, FIRN_PROTO_DGRAM_MAX);
	if (c->ack_queue == 0 || c->cookie_bucket_ms == 0 || c->idle_timeout_ms == 0)
		return firn_err_set(-EINVAL, "ack_queue, cookie_bucket_ms and idle_timeout_ms "
		                             "must be > 0");
	if (c->reasm_session_bytes < MiB + MiB / 8)
		return firn_err_set(-EINVAL,
		                    "reasm_session_bytes %zu must hold one 1 MiB record "
		                    "(1.125 MiB with its bitmap)",
		                    c->reasm_session_bytes);
	for (unsigned i = 0; i < c->n_keys; i++) {
		size_t n = c->keys[i].id != NULL ? strlen(c->keys[i].id) : 0;

		if (n == 0 || n > FIRN_PROTO_KEY_ID_MAX || c->keys[i].secret == NULL ||
		    c->keys[i].secret_len == 0)
			return firn_err_set(-EINVAL,
			                    "access key %u: id must be 1..%d bytes and "
			                    "the secret non-empty",
			                    i, FIRN_PROTO_KEY_ID_MAX);
	}
	return 0;
}

static int
copy_keys(struct firn_proto_server *s)
{
	const struct firn_proto_server_conf *c = &s->conf;
	size_t total = 0;
	char *m;

	for (unsigned i = 0; i < c->n_keys; i++)
		total += strlen(c->keys[i].id) + 1 + c->keys[i].secret_len;
	s->keys = calloc(FIRN_MAX(c->n_keys, 1u), sizeof(*s->keys));
	s->key_mem = m = malloc(FIRN_MAX(total, (size_t)1));
	s->key_mem_len = total;
	if (s->keys == NULL || m == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < c->n_keys; i++) {
		size_t n = strlen(c->keys[i].id) + 1;

		memcpy(m, c->keys[i].id, n);
		s->keys[i].id = m;
		m += n;
		memcpy(m, c->keys[i].secret, c->keys[i].secret_len);
		s->keys[i].secret = (const uint8_t *)m;
		s->keys[i].secret_len = c->keys[i].secret_len;
		m += c->keys[i].secret_len;
	}
	s->conf.keys = s->keys;
	return 0;
}

struct firn_proto_server *
firn_proto_server_create(const struct firn_proto_server_conf *conf)
{
	struct firn_proto_server *s;
	static const uint8_t zero_key[32], zero_iv[12];
	unsigned buckets = 1, n, refs;
	int rc;

	rc = conf_check(conf);
	if (rc < 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		firn_err_set(-ENOMEM, "proto server: out of memory");
		return NULL;
	}
	s->conf = *conf;
	if (s->conf.credit_records == 0)
		s->conf.credit_records = FIRN_MAX(conf->dedupe_window / 2, 1u);
	n = conf->max_sessions;
	refs = conf->stream_refs;
	if (copy_keys(s) < 0)
		goto nomem;
	if (conf->cookie_secret != NULL)
		memcpy(s->cookie_secret, conf->cookie_secret, 32);
	else if (proto_random(s->cookie_secret, 32) < 0)
		goto fail_io;
	s->mac = proto_cmac_new(s->cookie_secret);
	if (s->mac == NULL)
		goto fail_io;
	while (buckets < 2 * n)
		buckets <<= 1;
	s->nonce_mask = buckets - 1;
	s->sess = calloc(n, sizeof(*s->sess));
	s->free_stack = malloc(n * sizeof(*s->free_stack));
	s->nonce_heads = malloc(buckets * sizeof(*s->nonce_heads));
	s->ref_ids_mem = calloc((size_t)n * refs, sizeof(uint64_t));
	s->ref_hash_mem = calloc((size_t)n * refs, sizeof(uint64_t));
	s->ref_state_mem = calloc((size_t)n * refs, 1);
	s->ackq_mem = calloc((size_t)n * conf->ack_queue, sizeof(*s->ackq_mem));
	if (s->sess == NULL || s->free_stack == NULL || s->nonce_heads == NULL ||
	    s->ref_ids_mem == NULL || s->ref_hash_mem == NULL || s->ref_state_mem == NULL ||
	    s->ackq_mem == NULL)
		goto nomem;
	for (unsigned i = 0; i < buckets; i++)
		s->nonce_heads[i] = NIL;
	s->dedupe = firn_proto_dedupe_create(conf->max_producers, conf->dedupe_window);
	if (s->dedupe == NULL)
		goto fail;
	s->pool = firn_proto_pool_create(conf->reasm_pool_bytes);
	if (s->pool == NULL)
		goto fail;
	for (unsigned i = 0; i < n; i++) {
		struct firn_proto_session *ss = &s->sess[i];

		ss->slot = i;
		ss->nonce_next = NIL;
		ss->stream_ids = s->ref_ids_mem + (size_t)i * refs;
		ss->name_hash = s->ref_hash_mem + (size_t)i * refs;
		ss->ref_state = s->ref_state_mem + (size_t)i * refs;
		ss->ackq = s->ackq_mem + (size_t)i * conf->ack_queue;
		ss->ackq_cap = conf->ack_queue;
		if (firn_proto_aead_init(&ss->rx, zero_key, zero_iv, false) < 0 ||
		    firn_proto_aead_init(&ss->tx, zero_key, zero_iv, true) < 0 ||
		    firn_proto_reasm_init(&ss->reasm, s->pool, conf->reasm_slots,
		                          conf->reasm_session_bytes, conf->reasm_timeout_ms) < 0)
			goto nomem;
		s->free_stack[n - 1 - i] = i;
	}
	s->n_free = n;
	return s;
nomem:
	firn_err_set(-ENOMEM, "proto server for %u sessions: out of memory", conf->max_sessions);
	goto fail;
fail_io:
	firn_err_set(-EIO, "proto server: OpenSSL failed to set up the cookie key");
fail:
	firn_proto_server_destroy(s);
	return NULL;
}

void
firn_proto_server_destroy(struct firn_proto_server *s)
{
	if (s == NULL)
		return;
	if (s->sess != NULL) {
		for (unsigned i = 0; i < s->conf.max_sessions; i++) {
			firn_proto_aead_fini(&s->sess[i].rx);
			firn_proto_aead_fini(&s->sess[i].tx);
			firn_proto_reasm_fini(&s->sess[i].reasm);
		}
	}
	firn_proto_pool_destroy(s->pool);
	firn_proto_dedupe_destroy(s->dedupe);
	proto_cmac_free(s->mac);
	free(s->sess);
	free(s->free_stack);
	free(s->nonce_heads);
	free(s->ref_ids_mem);
	free(s->ref_hash_mem);
	free(s->ref_state_mem);
	free(s->ackq_mem);
	free(s->keys);
	if (s->key_mem != NULL) {
		proto_cleanse(s->key_mem, s->key_mem_len);
		free(s->key_mem);
	}
	proto_cleanse(s->cookie_secret, sizeof(s->cookie_secret));
	free(s);
}

const struct firn_proto_stats *
firn_proto_server_stats(const struct firn_proto_server *s)
{
	return &s->st;
}

struct firn_proto_dedupe *
firn_proto_server_dedupe(struct firn_proto_server *s)
{
	return s->dedupe;
}

unsigned
firn_proto_server_sessions(const struct firn_proto_server *s)
{
	return s->n_live;
}

/* ---- cookies and tokens ---------------------------------------------------------- */

int
proto_cookie_mac(struct firn_proto_server *s, const struct firn_proto_addr *from,
                 const uint8_t *nonce_c, uint32_t bucket, uint8_t out[FIRN_PROTO_SNONCE_LEN])
{
	static const char label[] = "firn1 cookie";
	uint8_t port[2], b[4];
	struct proto_part parts[] = {
	        {label, sizeof(label) - 1},      {from->ip, 16}, {port, 2},
	        {nonce_c, FIRN_PROTO_NONCE_LEN}, {b, 4},
	};

	st16(port, from->port);
	st32(b, bucket);
	return proto_cmac(s->mac, parts, FIRN_ARRAY_SIZE(parts), out);
}

int
proto_reset_token(struct firn_proto_server *s, uint64_t sid, uint8_t out[FIRN_PROTO_TOKEN_LEN])
{
	static const char label[] = "firn1 reset";
	uint8_t id[8];
	struct proto_part parts[] = {{label, sizeof(label) - 1}, {id, 8}};

	st64(id, sid);
	return proto_cmac(s->mac, parts, FIRN_ARRAY_SIZE(parts), out);
}

static uint32_t
bucket_of(const struct firn_proto_server *s, uint64_t now_ms)
{
	return (uint32_t)(now_ms / s->conf.cookie_bucket_ms);
}

/* ---- cleartext answers ------------------------------------------------------------- */

static void
clear_hdr(uint8_t *out, uint8_t type, uint64_t sid)
{
	struct firn_proto_hdr h = {FIRN_PROTO_VERSION, type, 0, sid, 0};

	firn_proto_hdr_encode(&h, out, FIRN_PROTO_HDR_LEN);
}

static int
build_retry(struct firn_proto_server *s, const struct firn_proto_addr *from, const uint8_t *nonce_c,
            uint64_t now_ms, uint8_t *out, size_t cap)
{
	uint32_t bucket = bucket_of(s, now_ms);

	if (cap < RETRY_LEN)
		return -ENOSPC;
	clear_hdr(out, FIRN_PROTO_RETRY, 0);
	memcpy(out + HS_NONCE, nonce_c, FIRN_PROTO_NONCE_LEN);
	st32(out + RETRY_COOKIE, bucket);
	if (proto_cookie_mac(s, from, nonce_c, bucket, out + RETRY_COOKIE + COOKIE_TAG) < 0)
		return -EIO;
	s->st.retry_sent++;
	return RETRY_LEN;
}

static int
build_reject(struct firn_proto_server *s, const uint8_t *nonce_c, uint16_t code,
             const struct firn_proto_addr *redirect, uint8_t *out, size_t cap)
{
	if (cap < REJECT_LEN)
		return -ENOSPC;
	clear_hdr(out, FIRN_PROTO_REJECT, 0);
	memcpy(out + HS_NONCE, nonce_c, FIRN_PROTO_NONCE_LEN);
	st16(out + REJECT_CODE, code);
	out[REJECT_VMIN] = FIRN_PROTO_VERSION;
	out[REJECT_VMAX] = FIRN_PROTO_VERSION;
	memset(out + REJECT_REDIRECT, 0, ADDR_LEN);
	if (redirect != NULL)
		addr_put(out + REJECT_REDIRECT, redirect);
	s->st.reject_sent++;
	return REJECT_LEN;
}

static int
build_accept(struct firn_proto_server *s, struct firn_proto_session *ss, uint8_t *out, size_t cap)
{
	struct firn_proto_producer *p = ss->producer;
	struct firn_proto_hdr h = {FIRN_PROTO_VERSION, FIRN_PROTO_ACCEPT, 0, ss->id, ++ss->tx_pn};
	uint8_t *b = out + FIRN_PROTO_HDR_LEN;
	int rc;

	if (cap < ACCEPT_LEN)
		return -ENOSPC;
	firn_proto_hdr_encode(&h, out, cap);
	st32(b, s->conf.idle_timeout_ms);
	st32(b + 4, s->conf.keepalive_ms);
	st16(b + 8, ss->max_dgram);
	st16(b + 10, (uint16_t)s->conf.stream_refs);
	st32(b + 12, s->conf.dedupe_window);
	st64(b + 16, p->hi);
	st64(b + 24, p->credit.max_seq);
	st32(b + 32, (uint32_t)FIRN_MIN(p->credit.window, (uint64_t)UINT32_MAX));
	st32(b + 36, s->conf.dedupe_horizon_s);
	if (proto_reset_token(s, ss->id, b + 40) < 0)
		return -EIO;
	ss->sent_max_seq = p->credit.max_seq;
	ss->sent_window = FIRN_MIN(p->credit.window, (uint64_t)UINT32_MAX);
	rc = firn_proto_seal(&ss->tx, out, FIRN_PROTO_HDR_LEN + ACCEPT_BODY, cap);
	if (rc > 0)
		s->st.accept_sent++;
	return rc;
}

/* ---- the session table -------------------------------------------------------------- */

static uint32_t
nonce_bucket(const struct firn_proto_server *s, const uint8_t *nonce_c)
{
	return ld32(nonce_c) & s->nonce_mask;
}

static struct firn_proto_session *
find_by_nonce(struct firn_proto_server *s, const uint8_t *nonce_c)
{
	for (uint32_t i = s->nonce_heads[nonce_bucket(s, nonce_c)]; i != NIL;
	     i = s->sess[i].nonce_next)
		if (memcmp(s->sess[i].nonce_c, nonce_c, FIRN_PROTO_NONCE_LEN) == 0)
			return &s->sess[i];
	return NULL;
}

static void
nonce_unlink(struct firn_proto_server *s, struct firn_proto_session *ss)
{
	uint32_t *link = &s->nonce_heads[nonce_bucket(s, ss->nonce_c)];

	while (*link != NIL && *link != ss->slot)
		link = &s->sess[*link].nonce_next;
	if (*link == ss->slot)
		*link = ss->nonce_next;
	ss->nonce_next = NIL;
}

struct firn_proto_session *
firn_proto_server_session(struct firn_proto_server *s, uint64_t id)
{
	uint32_t slot = (uint32_t)id & 0xffffffu; /* bits 24..31: the tag */

	if (slot >= s->conf.max_sessions || s->sess[slot].state != SESS_LIVE ||
	    s->sess[slot].id != id)
		return NULL;
	return &s->sess[slot];
}

static void
session_end(struct firn_proto_server *s, struct firn_proto_session *ss, uint64_t now_ms)
{
	if (ss->state != SESS_LIVE)
		return;
	ss->state = SESS_TOMB;
	ss->tomb_until_ms = now_ms + 2ull * s->conf.cookie_bucket_ms;
	firn_proto_reasm_reset(&ss->reasm);
	if (ss->producer != NULL && ss->producer->session == ss) {
		ss->producer->session = NULL;
		ss->producer->last_use_ms = now_ms;
	}
	ss->producer = NULL;
	ss->ackq_n = 0;
	s->n_live--;
}

void
firn_proto_session_close(struct firn_proto_server *s, struct firn_proto_session *ss,
                         uint64_t now_ms)
{
	if (ss->state == SESS_LIVE)
		s->st.sessions_closed++;
	session_end(s, ss, now_ms);
}

unsigned
firn_proto_server_tick(struct firn_proto_server *s, uint64_t now_ms)
{
	unsigned expired = 0;

	for (unsigned i = 0; i < s->conf.max_sessions; i++) {
		struct firn_proto_session *ss = &s->sess[i];

		if (ss->state == SESS_LIVE) {
			if (now_ms >= ss->last_rx_ms &&
			    now_ms - ss->last_rx_ms >= s->conf.idle_timeout_ms) {
				session_end(s, ss, now_ms);
				s->st.sessions_expired++;
				expired++;
			} else {
				s->st.reasm_timeout += firn_proto_reasm_expire(&ss->reasm, now_ms);
			}
		} else if (ss->state == SESS_TOMB && now_ms >= ss->tomb_until_ms) {
			nonce_unlink(s, ss);
			ss->state = SESS_FREE;
			ss->id = 0;
			s->free_stack[s->n_free++] = ss->slot;
		}
	}
	return expired;
}

uint64_t
firn_proto_session_id(const struct firn_proto_session *ss)
{
	return ss->id;
}

const struct firn_proto_addr *
firn_proto_session_peer(const struct firn_proto_session *ss)
{
	return &ss->peer;
}

struct firn_proto_producer *
firn_proto_session_producer(const struct firn_proto_session *ss)
{
	return ss->producer;
}

struct firn_proto_session *
firn_proto_producer_session(const struct firn_proto_producer *p)
{
	return p->session;
}

struct firn_proto_reasm *
firn_proto_session_reasm(struct firn_proto_session *ss)
{
	return &ss->reasm;
}

void *
firn_proto_session_user(const struct firn_proto_session *ss)
{
	return ss->user;
}

void
firn_proto_session_set_user(struct firn_proto_session *ss, void *user)
{
	ss->user = user;
}

/* ---- handshake ------------------------------------------------------------------------ */

static int
find_key(const struct firn_proto_server *s, const uint8_t *id, size_t len)
{
	for (unsigned i = 0; i < s->conf.n_keys; i++)
		if (strlen(s->keys[i].id) == len && memcmp(s->keys[i].id, id, len) == 0)
			return (int)i;
	return -1;
}

int
firn_proto_init_producer(const uint8_t *pkt, size_t len, uint64_t *producer_id)
{
	if (len < INIT_PRODUCER + 8)
		return -EBADMSG;
	*producer_id = ld64(pkt + INIT_PRODUCER);
	return 0;
}

static int
handle_init(struct firn_proto_server *s, const struct firn_proto_addr *from, const uint8_t *pkt,
            size_t len, uint64_t now_ms, uint8_t *out, size_t cap, struct firn_proto_session **sess)
{
	const uint8_t *nonce_c = pkt + HS_NONCE, *cookie = pkt + INIT_COOKIE;
	uint64_t producer_id = ld64(pkt + INIT_PRODUCER);
	uint16_t max_dgram = ld16(pkt + INIT_MAXDG);
	uint8_t kl = pkt[INIT_KEYLEN];
	const uint8_t *key_id = pkt + INIT_KEYID, *proof;
	uint8_t mac[FIRN_PROTO_SNONCE_LEN], want[32];
	uint32_t bucket = ld32(cookie), now_b = bucket_of(s, now_ms);
	struct firn_proto_session *ss;
	struct firn_proto_producer *p;
	struct firn_proto_keys k;
	int key_idx, rc;

	s->st.init++;
	if (kl == 0 || kl > FIRN_PROTO_KEY_ID_MAX || len < INIT_FIXED + (size_t)kl)
		return -EBADMSG;
	proof = key_id + kl;
	/* 1. The cookie: made by us, for this address and nonce, recently. */
	if (proto_cookie_mac(s, from, nonce_c, bucket, mac) < 0)
		return -EIO;
	if (proto_memeq_ct(mac, cookie + COOKIE_TAG, FIRN_PROTO_SNONCE_LEN) != 0) {
		s->st.cookie_bad++;
		return 0;
	}
	if (bucket != now_b && bucket + 1 != now_b) {
		s->st.cookie_expired++;
		return build_retry(s, from, nonce_c, now_ms, out, cap);
	}
	/* 2. A replay of an INIT we already acted on allocates nothing. */
	ss = find_by_nonce(s, nonce_c);
	if (ss != NULL) {
		s->st.init_replayed++;
		if (ss->state != SESS_LIVE)
			return 0;
		*sess = ss;
		return build_accept(s, ss, out, cap);
	}
	/* 3. The proof of the secret. */
	key_idx = find_key(s, key_id, kl);
	if (key_idx >= 0) {
		rc = firn_proto_client_proof(s->keys[key_idx].secret, s->keys[key_idx].secret_len,
		                             nonce_c, mac, producer_id, max_dgram,
		                             (const char *)key_id, kl, want);
		if (rc < 0)
			return rc;
	}
	if (key_idx < 0 || proto_memeq_ct(want, proof, 32) != 0) {
		s->st.auth_failed++;
		return build_reject(s, nonce_c, FIRN_PROTO_E_AUTH, NULL, out, cap);
	}
	if (producer_id == 0 || max_dgram < FIRN_PROTO_DGRAM_MIN)
		return build_reject(s, nonce_c, FIRN_PROTO_E_PROTOCOL, NULL, out, cap);
	/* 4 and 5. A slot, and the producer it speaks for. */
	if (s->n_free == 0)
		return build_reject(s, nonce_c, FIRN_PROTO_E_OVERLOADED, NULL, out, cap);
	p = firn_proto_producer_get(s->dedupe, producer_id, true, now_ms);
	if (p == NULL)
		return build_reject(s, nonce_c, FIRN_PROTO_E_OVERLOADED, NULL, out, cap);
	if (p->key_idx >= 0 && p->key_idx != key_idx) {
		s->st.auth_failed++;
		return build_reject(s, nonce_c, FIRN_PROTO_E_AUTH, NULL, out, cap);
	}
	p->key_idx = key_idx;
	if (p->session != NULL) {
		session_end(s, p->session, now_ms);
		s->st.sessions_replaced++;
	}
	ss = &s->sess[s->free_stack[--s->n_free]];
	do {
		uint32_t r = 0;

		if (proto_random(&r, sizeof(r)) < 0)
			return -EIO;
		ss->id = (uint64_t)r << 32 | (uint32_t)s->conf.session_tag << 24 | ss->slot;
	} while ((ss->id >> 32) == 0);
	rc = firn_proto_derive_keys(s->keys[key_idx].secret, s->keys[key_idx].secret_len, nonce_c,
	                            mac, ss->id, proof, &k);
	if (rc == 0)
		rc = firn_proto_aead_rekey(&ss->rx, k.c2s_key, k.c2s_iv);
	if (rc == 0)
		rc = firn_proto_aead_rekey(&ss->tx, k.s2c_key, k.s2c_iv);
	memset(&k, 0, sizeof(k));
	if (rc < 0) {
		s->free_stack[s->n_free++] = ss->slot;
		return rc;
	}
	ss->state = SESS_LIVE;
	ss->key_idx = key_idx;
	ss->peer = *from;
	ss->max_dgram = FIRN_MIN(max_dgram, s->conf.max_dgram);
	memcpy(ss->nonce_c, nonce_c, FIRN_PROTO_NONCE_LEN);
	ss->nonce_next = s->nonce_heads[nonce_bucket(s, nonce_c)];
	s->nonce_heads[nonce_bucket(s, nonce_c)] = ss->slot;
	ss->producer = p;
	p->session = ss;
	ss->tx_pn = 0;
	ss->last_rx_ms = now_ms;
	ss->top_rx_ms = now_ms;
	ss->rx_since_ack = 0;
	ss->ackq_head = ss->ackq_n = 0;
	ss->user = NULL;
	firn_proto_replay_init(&ss->replay);
	memset(ss->ref_state, 0, s->conf.stream_refs);
	firn_proto_credit_grant(&p->credit, p->hi, s->conf.credit_records, s->conf.credit_window);
	s->n_live++;
	s->st.sessions_opened++;
	*sess = ss;
	return build_accept(s, ss, out, cap);
}

int
firn_proto_server_handshake(struct firn_proto_server *s, const struct firn_proto_addr *from,
                            const uint8_t *pkt, size_t len, uint64_t now_ms, uint8_t *out,
                            size_t cap, struct firn_proto_session **sess)
{
	struct firn_proto_hdr h;
	int rc = firn_proto_hdr_decode(pkt, len, &h);

	*sess = NULL;
	if (rc == -EPROTONOSUPPORT && len >= FIRN_PROTO_HELLO_MIN && pkt[5] == FIRN_PROTO_HELLO)
		return build_reject(s, pkt + HS_NONCE, FIRN_PROTO_E_VERSION, NULL, out, cap);
	if (rc < 0) {
		s->st.rx_bad_header++;
		return -EBADMSG;
	}
	switch (h.type) {
	case FIRN_PROTO_HELLO:
		/* The answer (76 bytes) is smaller than the HELLO (>= 1200): no amplification. */
		s->st.hello++;
		return build_retry(s, from, pkt + HS_NONCE, now_ms, out, cap);
	case FIRN_PROTO_INIT:
		return handle_init(s, from, pkt, len, now_ms, out, cap, sess);
	default:
		s->st.rx_bad_header++;
		return -EBADMSG;
	}
}

int
firn_proto_server_reset(struct firn_proto_server *s, uint64_t session_id, size_t trigger_len,
                        uint8_t *out, size_t cap)
{
	if (trigger_len < RESET_LEN || session_id == 0)
		return 0;
	if (cap < RESET_LEN)
		return -ENOSPC;
	clear_hdr(out, FIRN_PROTO_RESET, session_id);
	if (proto_reset_token(s, session_id, out + FIRN_PROTO_HDR_LEN) < 0)
		return -EIO;
	return RESET_LEN;
}

/* ---- DATA ------------------------------------------------------------------------------- */

int
firn_proto_server_open(struct firn_proto_server *s, const struct firn_proto_addr *from,
                       uint8_t *pkt, size_t len, uint64_t now_ms, struct firn_proto_session **sess,
                       uint8_t **plain)
{
	struct firn_proto_hdr h;
	struct firn_proto_session *ss;
	int rc, n;

	if (firn_proto_hdr_decode(pkt, len, &h) < 0 || h.type != FIRN_PROTO_DATA) {
		s->st.rx_bad_header++;
		return -EBADMSG;
	}
	ss = firn_proto_server_session(s, h.session_id);
	if (ss == NULL) {
		s->st.unknown_session++;
		return -ENOENT;
	}
	/* The replay check costs no crypto, so replays are dropped before any. */
	rc = firn_proto_replay_check(&ss->replay, h.pn);
	if (rc < 0) {
		s->st.replayed++;
		return rc == -EINVAL ? -EBADMSG : rc;
	}
	n = firn_proto_open(&ss->rx, h.pn, pkt, len);
	if (n < 0) {
		s->st.aead_failed++;
		return -EBADMSG;
	}
	/* Only authenticated datagrams move the window, the timer and the return address. */
	if (h.pn > ss->replay.top) {
		ss->top_rx_ms = now_ms;
		if (from != NULL)
			ss->peer = *from;
	}
	firn_proto_replay_commit(&ss->replay, h.pn);
	ss->last_rx_ms = now_ms;
	ss->rx_since_ack++;
	*sess = ss;
	*plain = pkt + FIRN_PROTO_HDR_LEN;
	return n;
}

/* ---- RX: frames to records -------------------------------------------------------------- */

static uint64_t
name_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int
bind_stream(struct firn_proto_rx *rx, uint16_t ref, const char *name, size_t len)
{
	struct firn_proto_session *ss = rx->ss;
	const struct firn_proto_server_conf *c = &rx->s->conf;
	uint64_t h = name_hash(name, len), id = 0;
	int rc = 0;

	if (ref >= c->stream_refs)
		return -EPROTO;
	if (ss->ref_state[ref] != REF_UNBOUND) {
		if (ss->name_hash[ref] != h)
			return -EPROTO;
		if (ss->ref_state[ref] == REF_OK)
			return 0;
	}
	/* New binding, or one whose stream did not exist last time: (re)resolve. */
	if (c->resolve != NULL)
		rc = c->resolve(c->resolve_arg, name, len, &id);
	ss->name_hash[ref] = h;
	ss->stream_ids[ref] = id;
	ss->ref_state[ref] = rc == 0 ? REF_OK : REF_MISSING;
	return 0;
}

static void
answer(struct firn_proto_rx_item *it, uint64_t seq, uint8_t status, uint8_t flags)
{
	it->kind = FIRN_PROTO_RX_ANSWER;
	it->ack.seq = seq;
	it->ack.counter = 0;
	it->ack.shard = 0;
	it->ack.count = 1;
	it->ack.status = status;
	it->ack.flags = flags;
}

/* A permanent outcome for a new seq: remember it, so resends get the same answer. */
static void
refuse(struct firn_proto_rx *rx, struct firn_proto_rx_item *it, uint64_t seq, uint8_t status)
{
	struct firn_proto_producer *p = rx->ss->producer;

	if (firn_proto_dedupe_reserve(p, seq, 0) == -EBUSY) {
		rx->s->st.refused_busy++;
		answer(it, seq, FIRN_PROTO_E_OVERLOADED, 0);
		return;
	}
	firn_proto_dedupe_done(p, seq, 0, 0, status);
	answer(it, seq, status, 0);
}

static bool
ref_ok(const struct firn_proto_rx *rx, uint16_t ref)
{
	return ref < rx->s->conf.stream_refs && rx->ss->ref_state[ref] == REF_OK;
}

/*
 * A whole record (from a RECORD frame, or completed by reassembly with its
 * buffer in slot). Returns 1 if it produced an item, 0 if it was dropped.
 */
static int
on_record(struct firn_proto_rx *rx, const struct firn_proto_rec *r, int slot,
          struct firn_proto_rx_item *it)
{
	struct firn_proto_server *s = rx->s;
	struct firn_proto_producer *p = rx->ss->producer;
	struct firn_proto_durable orig;
	int produced = 1;

	switch (firn_proto_dedupe_check(p, r->seq, &orig)) {
	case FIRN_PROTO_DEDUPE_PENDING:
		s->st.dup_pending++;
		produced = 0;
		goto release;
	case FIRN_PROTO_DEDUPE_DONE:
		s->st.dup_done++;
		it->kind = FIRN_PROTO_RX_ANSWER;
		it->ack = orig;
		it->ack.flags |= FIRN_PROTO_DF_DUPLICATE;
		goto release;
	case FIRN_PROTO_DEDUPE_STALE:
		s->st.stale++;
		answer(it, r->seq, FIRN_PROTO_E_STALE, 0);
		goto release;
	case FIRN_PROTO_DEDUPE_NEW:
		break;
	}
	if (!ref_ok(rx, r->stream_ref)) {
		s->st.unknown_stream++;
		refuse(rx, it, r->seq, FIRN_PROTO_E_UNKNOWN_STREAM);
		goto release;
	}
	if (!r->hash && !proto_key_ok(r->key, r->key_len)) {
		s->st.bad_key++;
		refuse(rx, it, r->seq, FIRN_PROTO_E_BAD_KEY);
		goto release;
	}
	if (r->len > FIRN_RECORD_DATA_MAX) {
		s->st.too_large++;
		refuse(rx, it, r->seq, FIRN_PROTO_E_TOO_LARGE);
		goto release;
	}
	if (firn_proto_credit_take(&p->credit, r->seq, r->len) < 0) {
		s->st.refused_credit++;
		answer(it, r->seq, FIRN_PROTO_E_OVERLOADED, 0);
		goto release;
	}
	if (firn_proto_dedupe_reserve(p, r->seq, r->len) < 0) {
		firn_proto_credit_release(&p->credit, r->len);
		s->st.refused_busy++;
		answer(it, r->seq, FIRN_PROTO_E_OVERLOADED, 0);
		goto release;
	}
	it->kind = FIRN_PROTO_RX_RECORD;
	it->rec = *r;
	it->rec.fragment = false;
	it->rec.off = 0;
	it->rec.total_len = r->len;
	it->stream_id = rx->ss->stream_ids[r->stream_ref];
	it->reasm_slot = slot;
	return 1;
release:
	if (slot >= 0)
		firn_proto_reasm_release(&rx->ss->reasm, slot);
	return produced;
}

static int
on_fragment(struct firn_proto_rx *rx, const struct firn_proto_rec *f, struct firn_proto_rx_item *it)
{
	struct firn_proto_server *s = rx->s;
	struct firn_proto_producer *p = rx->ss->producer;
	struct firn_proto_durable orig;
	struct firn_proto_rec whole;
	int rc, slot = -1;

	/* Answers to fragments of known records go out once, for the piece at offset 0. */
	switch (firn_proto_dedupe_check(p, f->seq, &orig)) {
	case FIRN_PROTO_DEDUPE_PENDING:
		s->st.dup_pending++;
		return 0;
	case FIRN_PROTO_DEDUPE_DONE:
		s->st.dup_done++;
		if (f->off != 0)
			return 0;
		it->kind = FIRN_PROTO_RX_ANSWER;
		it->ack = orig;
		it->ack.flags |= FIRN_PROTO_DF_DUPLICATE;
		return 1;
	case FIRN_PROTO_DEDUPE_STALE:
		s->st.stale++;
		if (f->off != 0)
			return 0;
		answer(it, f->seq, FIRN_PROTO_E_STALE, 0);
		return 1;
	case FIRN_PROTO_DEDUPE_NEW:
		break;
	}
	/* Refuse doomed records at their first fragment instead of buffering them. */
	if (f->total_len > FIRN_RECORD_DATA_MAX) {
		s->st.too_large++;
		refuse(rx, it, f->seq, FIRN_PROTO_E_TOO_LARGE);
		return 1;
	}
	if (!ref_ok(rx, f->stream_ref)) {
		s->st.unknown_stream++;
		refuse(rx, it, f->seq, FIRN_PROTO_E_UNKNOWN_STREAM);
		return 1;
	}
	if (f->seq > p->credit.max_seq) {
		s->st.refused_credit++;
		if (f->off != 0)
			return 0;
		answer(it, f->seq, FIRN_PROTO_E_OVERLOADED, 0);
		return 1;
	}
	rc = firn_proto_reasm_add(&rx->ss->reasm, f, rx->now_ms, &whole, &slot);
	switch (rc) {
	case 1:
		s->st.reasm_complete++;
		return on_record(rx, &whole, slot, it);
	case 0:
		return 0;
	case -EALREADY:
		s->st.reasm_dup++;
		return 0;
	case -ENOBUFS:
	case -ENOSPC:
		s->st.reasm_full++;
		return 0;
	default:
		s->st.reasm_bad++;
		return 0;
	}
}

void
firn_proto_rx_begin(struct firn_proto_rx *rx, struct firn_proto_server *s,
                    struct firn_proto_session *ss, const uint8_t *plain, size_t len,
                    uint64_t now_ms)
{
	rx->s = s;
	rx->ss = ss;
	rx->now_ms = now_ms;
	firn_proto_dec_init(&rx->dec, plain, len, true);
}

int
firn_proto_rx_next(struct firn_proto_rx *rx, struct firn_proto_rx_item *it)
{
	struct firn_proto_frame f;
	int rc;

	if (rx->ss->state != SESS_LIVE || rx->ss->producer == NULL)
		return 0;
	for (;;) {
		rc = firn_proto_dec_next(&rx->dec, &f);
		if (rc <= 0) {
			if (rc < 0)
				rx->s->st.malformed++;
			return rc;
		}
		it->producer = rx->ss->producer;
		it->reasm_slot = -1;
		it->stream_id = 0;
		it->code = 0;
		switch (f.type) {
		case FIRN_PROTO_FR_STREAM:
			if (bind_stream(rx, f.stream.ref, f.stream.name, f.stream.len) < 0) {
				rx->s->st.malformed++;
				rx->dec.p = rx->dec.end;
				return -EPROTO;
			}
			continue;
		case FIRN_PROTO_FR_RECORD:
			rx->s->st.records++;
			if (on_record(rx, &f.rec, -1, it))
				return 1;
			continue;
		case FIRN_PROTO_FR_FRAGMENT:
			rx->s->st.fragments++;
			if (on_fragment(rx, &f.rec, it))
				return 1;
			continue;
		case FIRN_PROTO_FR_PING:
			it->kind = FIRN_PROTO_RX_PING;
			return 1;
		case FIRN_PROTO_FR_CLOSE:
			it->kind = FIRN_PROTO_RX_CLOSE;
			it->code = f.close.code;
			return 1;
		default:
			continue;
		}
	}
}

int
firn_proto_record_done(struct firn_proto_server *s, struct firn_proto_producer *p, uint64_t seq,
                       uint32_t shard, uint64_t counter, uint8_t status)
{
	int len = firn_proto_dedupe_done(p, seq, shard, counter, status);

	(void)s;
	if (len < 0)
		return len;
	firn_proto_credit_release(&p->credit, (uint64_t)len);
	return 0;
}

int
firn_proto_record_refused(struct firn_proto_server *s, struct firn_proto_producer *p, uint64_t seq)
{
	int len = firn_proto_dedupe_forget(p, seq);

	(void)s;
	if (len < 0)
		return len;
	firn_proto_credit_release(&p->credit, (uint64_t)len);
	return 0;
}

/* ---- TX: acks and credit ------------------------------------------------------------------ */

static bool
continues(const struct firn_proto_durable *a, const struct firn_proto_durable *d)
{
	return a->shard == d->shard && a->status == d->status && a->flags == d->flags &&
	       a->seq + a->count == d->seq &&
	       (d->status != FIRN_PROTO_OK || a->counter + a->count == d->counter) &&
	       (unsigned)a->count + d->count <= UINT16_MAX;
}

int
firn_proto_session_queue_durable(struct firn_proto_session *ss, const struct firn_proto_durable *d)
{
	if (ss->state != SESS_LIVE)
		return -ENOTCONN;
	if (d->count == 0)
		return 0;
	if (ss->ackq_n > 0) {
		struct firn_proto_durable *last =
		        &ss->ackq[(ss->ackq_head + ss->ackq_n - 1) % ss->ackq_cap];

		if (continues(last, d)) {
			last->count = (uint16_t)(last->count + d->count);
			return 0;
		}
	}
	if (ss->ackq_n == ss->ackq_cap)
		return -ENOSPC;
	ss->ackq[(ss->ackq_head + ss->ackq_n) % ss->ackq_cap] = *d;
	ss->ackq_n++;
	return 0;
}

void
firn_proto_session_grant(struct firn_proto_session *ss, uint64_t records_headroom, uint32_t window)
{
	struct firn_proto_producer *p = ss->producer;

	if (p != NULL)
		firn_proto_credit_grant(&p->credit, p->hi, records_headroom, window);
}

unsigned
firn_proto_session_tx_pending(const struct firn_proto_session *ss)
{
	return ss->ackq_n;
}

bool
firn_proto_session_ack_due(const struct firn_proto_session *ss, uint64_t now_ms)
{
	if (ss->state != SESS_LIVE || ss->rx_since_ack == 0)
		return false;
	return ss->rx_since_ack >= 16 || now_ms >= ss->top_rx_ms + 1;
}

int
firn_proto_session_flush(struct firn_proto_server *s, struct firn_proto_session *ss,
                         uint64_t now_ms, bool force_ack, uint8_t *out, size_t cap)
{
	struct firn_proto_producer *p = ss->producer;
	struct firn_proto_enc e;
	uint64_t window = 0;
	bool credit = false;
	int rc;

	if (ss->state != SESS_LIVE)
		return -ENOTCONN;
	/*
	 * A grant is sent when it changed, and again whenever the client asks
	 * (PING, ACK_NOW): the datagram carrying a grant may be lost, and a
	 * producer that has used all its credit and has nothing in flight
	 * would otherwise wait for a raise that never comes.
	 */
	if (p != NULL) {
		window = FIRN_MIN(p->credit.window, (uint64_t)UINT32_MAX);
		credit = force_ack || p->credit.max_seq != ss->sent_max_seq ||
		         window != ss->sent_window;
	}
	if (ss->rx_since_ack == 0 && !force_ack && !credit && ss->ackq_n == 0)
		return 0;
	if (ss->tx_pn + 1 >= FIRN_PROTO_PN_MAX)
		return -EOVERFLOW;
	cap = FIRN_MIN(cap, (size_t)ss->max_dgram);
	if (cap < FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN + FR_ACK_FIXED)
		return -ENOSPC;
	firn_proto_enc_begin(&e, out, cap, ss->id, ++ss->tx_pn, 0);
	if (ss->rx_since_ack > 0 || force_ack) {
		uint64_t delay = now_ms > ss->top_rx_ms ? (now_ms - ss->top_rx_ms) * 1000 : 0;

		firn_proto_enc_ack_received(&e, &ss->replay, (uint16_t)FIRN_MIN(delay, 65535u));
		ss->rx_since_ack = 0;
	}
	if (credit && firn_proto_enc_credit(&e, p->credit.max_seq, (uint32_t)window)) {
		ss->sent_max_seq = p->credit.max_seq;
		ss->sent_window = window;
	}
	while (ss->ackq_n > 0 && firn_proto_enc_durable(&e, &ss->ackq[ss->ackq_head])) {
		ss->ackq_head = (ss->ackq_head + 1) % ss->ackq_cap;
		ss->ackq_n--;
	}
	rc = firn_proto_enc_seal(&e, &ss->tx);
	if (rc > 0)
		s->st.tx_datagrams++;
	return rc;
}

int
firn_proto_session_send_error(struct firn_proto_server *s, struct firn_proto_session *ss,
                              uint16_t code, const struct firn_proto_addr *redirect,
                              const char *msg, uint8_t *out, size_t cap)
{
	struct firn_proto_enc e;
	int rc;

	if (ss->state != SESS_LIVE)
		return -ENOTCONN;
	cap = FIRN_MIN(cap, (size_t)ss->max_dgram);
	if (cap < FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN + FR_ERROR_FIXED + ADDR_LEN)
		return -ENOSPC;
	firn_proto_enc_begin(&e, out, cap, ss->id, ++ss->tx_pn, 0);
	if (code == FIRN_PROTO_E_CLOSED)
		firn_proto_enc_close(&e, code);
	else
		firn_proto_enc_error(&e, code, redirect, msg);
	rc = firn_proto_enc_seal(&e, &ss->tx);
	if (rc > 0)
		s->st.tx_datagrams++;
	return rc;
}
