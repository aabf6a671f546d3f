/*
 * client.c - the producer's side of the handshake and of DATA datagrams.
 *
 * A small state machine: IDLE -> HELLO_SENT -> INIT_SENT -> ESTABLISHED,
 * or FAILED with the server's code (or a timeout). Every input is a
 * datagram plus the time, every output a datagram to send, so the client
 * library and the tests drive it without sockets or threads.
 *
 * Retransmits keep the same nonce. The server is stateless until INIT, and
 * a replayed INIT finds its session, so a lost RETRY or ACCEPT costs a
 * round trip and never creates a second session.
 *
 * The ACCEPT is the first datagram sealed under the session keys. Opening
 * it proves the server knows our secret. It is opened in a copy, because
 * the caller's datagram is const and a failed open would garble it. A
 * forged ACCEPT is dropped and leaves the state alone, so the real one can
 * still arrive.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

#define RTO_MAX_MS 2000u

struct firn_proto_client {
	char key_id[FIRN_PROTO_KEY_ID_MAX + 1];
	size_t key_id_len;
	uint8_t *secret;
	size_t secret_len;
	uint64_t producer_id;
	uint16_t max_dgram;
	uint32_t retry_ms, hs_timeout_ms;

	enum firn_proto_client_state state;
	uint16_t error;
	struct firn_proto_addr redirect;
	uint8_t nonce_c[FIRN_PROTO_NONCE_LEN];
	uint8_t nonce_s[FIRN_PROTO_SNONCE_LEN];
	uint8_t cookie[FIRN_PROTO_COOKIE_LEN];
	uint8_t proof[32];
	uint64_t started_ms, next_retx_ms;
	uint32_t rto;

	struct firn_proto_session_params params;
	uint8_t token[FIRN_PROTO_TOKEN_LEN];
	struct firn_proto_aead tx, rx;
	struct firn_proto_replay replay;
	uint64_t tx_pn;
};

struct firn_proto_client *
firn_proto_client_create(const struct firn_proto_client_conf *conf)
{
	static const uint8_t zero_key[32], zero_iv[12];
	size_t kl = conf->key_id != NULL ? strlen(conf->key_id) : 0;
	struct firn_proto_client *c;

	if (kl == 0 || kl > FIRN_PROTO_KEY_ID_MAX || conf->secret == NULL ||
	    conf->secret_len == 0) {
		firn_err_set(-EINVAL,
		             "client: access key id must be 1..%d bytes and the secret "
		             "non-empty",
		             FIRN_PROTO_KEY_ID_MAX);
		return NULL;
	}
	if (conf->producer_id == 0) {
		firn_err_set(-EINVAL, "client: producer id must be nonzero");
		return NULL;
	}
	if (conf->max_dgram != 0 &&
	    (conf->max_dgram < FIRN_PROTO_DGRAM_MIN || conf->max_dgram > FIRN_PROTO_DGRAM_MAX)) {
		firn_err_set(-EINVAL, "client: max datagram %u must be %u..%u", conf->max_dgram,
		             FIRN_PROTO_DGRAM_MIN, FIRN_PROTO_DGRAM_MAX);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto nomem;
	c->secret = malloc(conf->secret_len);
	if (c->secret == NULL)
		goto nomem;
	memcpy(c->key_id, conf->key_id, kl);
	c->key_id_len = kl;
	memcpy(c->secret, conf->secret, conf->secret_len);
	c->secret_len = conf->secret_len;
	c->producer_id = conf->producer_id;
	c->max_dgram = conf->max_dgram != 0 ? conf->max_dgram : FIRN_PROTO_DGRAM_DEFAULT;
	c->retry_ms = conf->retry_ms != 0 ? conf->retry_ms : 250;
	c->hs_timeout_ms = conf->handshake_timeout_ms != 0 ? conf->handshake_timeout_ms : 5000;
	if (firn_proto_aead_init(&c->tx, zero_key, zero_iv, true) < 0 ||
	    firn_proto_aead_init(&c->rx, zero_key, zero_iv, false) < 0)
		goto nomem;
	return c;
nomem:
	firn_proto_client_destroy(c);
	firn_err_set(-ENOMEM, "client: out of memory");
	return NULL;
}

void
firn_proto_client_destroy(struct firn_proto_client *c)
{
	if (c == NULL)
		return;
	if (c->secret != NULL) {
		proto_cleanse(c->secret, c->secret_len);
		free(c->secret);
	}
	firn_proto_aead_fini(&c->tx);
	firn_proto_aead_fini(&c->rx);
	proto_cleanse(c, sizeof(*c));
	free(c);
}

static void
put_hdr(uint8_t *out, uint8_t type)
{
	struct firn_proto_hdr h = {FIRN_PROTO_VERSION, type, 0, 0, 0};

	firn_proto_hdr_encode(&h, out, FIRN_PROTO_HDR_LEN);
}

static int
build_hello(struct firn_proto_client *c, uint8_t *out, size_t cap)
{
	if (cap < FIRN_PROTO_HELLO_MIN)
		return -ENOSPC;
	memset(out, 0, FIRN_PROTO_HELLO_MIN);
	put_hdr(out, FIRN_PROTO_HELLO);
	memcpy(out + HS_NONCE, c->nonce_c, FIRN_PROTO_NONCE_LEN);
	st16(out + HELLO_MAXDG, c->max_dgram);
	return FIRN_PROTO_HELLO_MIN;
}

static int
build_init(struct firn_proto_client *c, uint8_t *out, size_t cap)
{
	size_t len = INIT_FIXED + c->key_id_len;

	if (cap < len)
		return -ENOSPC;
	put_hdr(out, FIRN_PROTO_INIT);
	memcpy(out + HS_NONCE, c->nonce_c, FIRN_PROTO_NONCE_LEN);
	memcpy(out + INIT_COOKIE, c->cookie, FIRN_PROTO_COOKIE_LEN);
	st64(out + INIT_PRODUCER, c->producer_id);
	st16(out + INIT_MAXDG, c->max_dgram);
	out[INIT_KEYLEN] = (uint8_t)c->key_id_len;
	memcpy(out + INIT_KEYID, c->key_id, c->key_id_len);
	memcpy(out + INIT_KEYID + c->key_id_len, c->proof, 32);
	return (int)len;
}

int
firn_proto_client_start(struct firn_proto_client *c, uint64_t now_ms, uint8_t *out, size_t cap)
{
	if (proto_random(c->nonce_c, sizeof(c->nonce_c)) < 0)
		return -EIO;
	c->state = FIRN_PROTO_CLIENT_HELLO_SENT;
	c->error = 0;
	memset(&c->redirect, 0, sizeof(c->redirect));
	memset(&c->params, 0, sizeof(c->params));
	c->started_ms = now_ms;
	c->rto = c->retry_ms;
	c->next_retx_ms = now_ms + c->rto;
	return build_hello(c, out, cap);
}

static bool
in_handshake(const struct firn_proto_client *c)
{
	return c->state == FIRN_PROTO_CLIENT_HELLO_SENT || c->state == FIRN_PROTO_CLIENT_INIT_SENT;
}

static int
on_accept(struct firn_proto_client *c, const struct firn_proto_hdr *h, const uint8_t *pkt,
          size_t len)
{
	uint8_t buf[ACCEPT_LEN];
	const uint8_t *b = buf + FIRN_PROTO_HDR_LEN;
	struct firn_proto_session_params *sp = &c->params;
	struct firn_proto_keys k;
	int rc;

	if (len != ACCEPT_LEN)
		return -EBADMSG;
	memcpy(buf, pkt, len);
	rc = firn_proto_derive_keys(c->secret, c->secret_len, c->nonce_c, c->nonce_s, h->session_id,
	                            c->proof, &k);
	if (rc == 0)
		rc = firn_proto_aead_rekey(&c->rx, k.s2c_key, k.s2c_iv);
	if (rc < 0 || firn_proto_open(&c->rx, h->pn, buf, len) != ACCEPT_BODY) {
		proto_cleanse(&k, sizeof(k));
		return -EBADMSG;
	}
	sp->session_id = h->session_id;
	sp->idle_timeout_ms = ld32(b);
	sp->keepalive_ms = ld32(b + 4);
	sp->max_dgram = ld16(b + 8);
	sp->stream_refs = ld16(b + 10);
	sp->dedupe_window = ld32(b + 12);
	sp->producer_hi = ld64(b + 16);
	firn_proto_credit_init(&sp->credit, ld64(b + 24), ld32(b + 32));
	sp->credit.pn = h->pn;
	sp->dedupe_horizon_s = ld32(b + 36);
	memcpy(c->token, b + 40, FIRN_PROTO_TOKEN_LEN);
	if (sp->max_dgram < FIRN_PROTO_DGRAM_MIN || sp->max_dgram > c->max_dgram)
		sp->max_dgram = FIRN_MIN(c->max_dgram,
		                         FIRN_MAX(sp->max_dgram, (uint16_t)FIRN_PROTO_DGRAM_MIN));
	rc = firn_proto_aead_rekey(&c->tx, k.c2s_key, k.c2s_iv);
	proto_cleanse(&k, sizeof(k));
	if (rc < 0)
		return rc;
	firn_proto_replay_init(&c->replay);
	firn_proto_replay_commit(&c->replay, h->pn);
	c->tx_pn = 0;
	c->state = FIRN_PROTO_CLIENT_ESTABLISHED;
	return 0;
}

int
firn_proto_client_handshake(struct firn_proto_client *c, const uint8_t *pkt, size_t len,
                            uint64_t now_ms, uint8_t *out, size_t cap)
{
	struct firn_proto_hdr h;
	int rc;

	if (firn_proto_hdr_decode(pkt, len, &h) < 0)
		return -EBADMSG;
	switch (h.type) {
	case FIRN_PROTO_RETRY:
		if (!in_handshake(c) ||
		    proto_memeq_ct(pkt + HS_NONCE, c->nonce_c, FIRN_PROTO_NONCE_LEN) != 0)
			return -EBADMSG;
		memcpy(c->cookie, pkt + RETRY_COOKIE, FIRN_PROTO_COOKIE_LEN);
		memcpy(c->nonce_s, pkt + RETRY_COOKIE + COOKIE_TAG, FIRN_PROTO_SNONCE_LEN);
		rc = firn_proto_client_proof(c->secret, c->secret_len, c->nonce_c, c->nonce_s,
		                             c->producer_id, c->max_dgram, c->key_id, c->key_id_len,
		                             c->proof);
		if (rc < 0)
			return rc;
		c->state = FIRN_PROTO_CLIENT_INIT_SENT;
		c->rto = c->retry_ms;
		c->next_retx_ms = now_ms + c->rto;
		return build_init(c, out, cap);
	case FIRN_PROTO_ACCEPT:
		if (c->state != FIRN_PROTO_CLIENT_INIT_SENT)
			return -EBADMSG;
		return on_accept(c, &h, pkt, len);
	case FIRN_PROTO_REJECT:
		if (!in_handshake(c) ||
		    proto_memeq_ct(pkt + HS_NONCE, c->nonce_c, FIRN_PROTO_NONCE_LEN) != 0)
			return -EBADMSG;
		c->error = ld16(pkt + REJECT_CODE);
		addr_get(pkt + REJECT_REDIRECT, &c->redirect);
		c->state = FIRN_PROTO_CLIENT_FAILED;
		return 0;
	case FIRN_PROTO_RESET:
		if (c->state != FIRN_PROTO_CLIENT_ESTABLISHED ||
		    h.session_id != c->params.session_id ||
		    proto_memeq_ct(pkt + FIRN_PROTO_HDR_LEN, c->token, FIRN_PROTO_TOKEN_LEN) != 0)
			return -EBADMSG;
		c->error = FIRN_PROTO_E_SESSION_EXPIRED;
		c->state = FIRN_PROTO_CLIENT_FAILED;
		return 0;
	default:
		return -EBADMSG;
	}
}

int
firn_proto_client_tick(struct firn_proto_client *c, uint64_t now_ms, uint8_t *out, size_t cap)
{
	if (!in_handshake(c))
		return 0;
	if (now_ms - c->started_ms >= c->hs_timeout_ms) {
		c->state = FIRN_PROTO_CLIENT_FAILED;
		c->error = 0;
		return -ETIMEDOUT;
	}
	if (now_ms < c->next_retx_ms)
		return 0;
	c->rto = FIRN_MIN(c->rto * 2, RTO_MAX_MS);
	c->next_retx_ms = now_ms + c->rto;
	return c->state == FIRN_PROTO_CLIENT_HELLO_SENT ? build_hello(c, out, cap)
	                                                : build_init(c, out, cap);
}

enum firn_proto_client_state
firn_proto_client_state(const struct firn_proto_client *c)
{
	return c->state;
}

uint16_t
firn_proto_client_error(const struct firn_proto_client *c, struct firn_proto_addr *redirect)
{
	if (redirect != NULL)
		*redirect = c->redirect;
	return c->error;
}

const struct firn_proto_session_params *
firn_proto_client_params(const struct firn_proto_client *c)
{
	return &c->params;
}

int
firn_proto_client_enc_begin(struct firn_proto_client *c, struct firn_proto_enc *e, uint8_t *buf,
                            size_t cap, uint16_t flags)
{
	if (c->state != FIRN_PROTO_CLIENT_ESTABLISHED)
		return -ENOTCONN;
	if (c->tx_pn + 1 >= FIRN_PROTO_PN_MAX)
		return -EOVERFLOW;
	cap = FIRN_MIN(cap, (size_t)c->params.max_dgram);
	if (cap < FIRN_PROTO_DGRAM_MIN)
		return -ENOSPC;
	firn_proto_enc_begin(e, buf, cap, c->params.session_id, ++c->tx_pn,
	                     flags & FIRN_PROTO_F_ACK_NOW);
	return 0;
}

int
firn_proto_client_seal(struct firn_proto_client *c, struct firn_proto_enc *e)
{
	return firn_proto_enc_seal(e, &c->tx);
}

int
firn_proto_client_open(struct firn_proto_client *c, uint8_t *pkt, size_t len, uint8_t **plain,
                       uint64_t *pn)
{
	struct firn_proto_hdr h;
	int rc, n;

	if (c->state != FIRN_PROTO_CLIENT_ESTABLISHED)
		return -ENOTCONN;
	if (firn_proto_hdr_decode(pkt, len, &h) < 0 || h.type != FIRN_PROTO_DATA ||
	    h.session_id != c->params.session_id)
		return -EBADMSG;
	rc = firn_proto_replay_check(&c->replay, h.pn);
	if (rc < 0)
		return rc == -EINVAL ? -EBADMSG : rc;
	n = firn_proto_open(&c->rx, h.pn, pkt, len);
	if (n < 0)
		return -EBADMSG;
	firn_proto_replay_commit(&c->replay, h.pn);
	*plain = pkt + FIRN_PROTO_HDR_LEN;
	if (pn != NULL)
		*pn = h.pn;
	return n;
}
