/*
 * crypto.c - every OpenSSL call of the protocol: HMAC, HKDF, AES-256-GCM.
 *
 * The brief asks for crypto behind one small interface. This file is that
 * interface for lib/proto.
 *
 * Per datagram, the only work is AEAD seal or open. Each session direction
 * owns one EVP_CIPHER_CTX, keyed once at the handshake. Per datagram we only
 * set the IV (EVP_CipherInit_ex with a NULL cipher and key keeps the key
 * schedule), feed the header as AAD, run the payload in place, and set or
 * get the tag. OpenSSL allocates nothing on that path; test_proto_alloc
 * checks this with counting allocator hooks.
 *
 * The nonce is the direction's IV with the packet number XORed into its last
 * 8 bytes, big-endian, as TLS 1.3 does. The sender never repeats a packet
 * number, so a (key, nonce) pair is never used twice.
 *
 * HMAC for the client proof and HKDF run once per handshake and may
 * allocate. The cookie MAC runs for every HELLO, spoofed floods included, so
 * it must not allocate. OpenSSL 3.0's HMAC allocates on every re-init (it
 * copies a digest context; 2 allocations per MAC, measured), so cookies and
 * reset tokens use CMAC-AES-256 (NIST SP 800-38B) instead. It is keyed once
 * at server creation and re-inited with a NULL key, which allocates nothing
 * and runs on AES-NI.
 */
#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "proto_internal.h"

int
proto_random(void *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}

void
proto_cleanse(void *p, size_t n)
{
	OPENSSL_cleanse(p, n);
}

int
proto_memeq_ct(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n);
}

static EVP_MAC_CTX *
mac_ctx_new(const char *alg, const char *param, const char *value, const uint8_t *key,
            size_t key_len)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, alg, NULL);
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];

	if (mac == NULL)
		return NULL;
	ctx = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac); /* the context holds its own reference */
	if (ctx == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(param, (char *)value, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int
mac_run(EVP_MAC_CTX *ctx, const struct proto_part *parts, unsigned n, uint8_t *out, size_t out_len)
{
	size_t outl = 0;

	for (unsigned i = 0; i < n; i++)
		if (parts[i].n > 0 && EVP_MAC_update(ctx, parts[i].p, parts[i].n) != 1)
			return -EIO;
	if (EVP_MAC_final(ctx, out, &outl, out_len) != 1 || outl != out_len)
		return -EIO;
	return 0;
}

int
proto_hmac(const uint8_t *key, size_t key_len, const struct proto_part *parts, unsigned n,
           uint8_t out[32])
{
	EVP_MAC_CTX *ctx = mac_ctx_new("HMAC", OSSL_MAC_PARAM_DIGEST, "SHA256", key, key_len);
	int rc;

	if (ctx == NULL)
		return -EIO;
	rc = mac_run(ctx, parts, n, out, 32);
	EVP_MAC_CTX_free(ctx);
	return rc;
}

struct evp_mac_ctx_st *
proto_cmac_new(const uint8_t key[32])
{
	return mac_ctx_new("CMAC", OSSL_MAC_PARAM_CIPHER, "AES-256-CBC", key, 32);
}

void
proto_cmac_free(struct evp_mac_ctx_st *m)
{
	EVP_MAC_CTX_free(m);
}

int
proto_cmac(struct evp_mac_ctx_st *m, const struct proto_part *parts, unsigned n, uint8_t out[16])
{
	/* A NULL key re-initialises with the key it already has, allocating nothing. */
	if (EVP_MAC_init(m, NULL, 0, NULL) != 1)
		return -EIO;
	return mac_run(m, parts, n, out, 16);
}

int
firn_proto_client_proof(const uint8_t *secret, size_t secret_len,
                        const uint8_t nonce_c[FIRN_PROTO_NONCE_LEN],
                        const uint8_t nonce_s[FIRN_PROTO_SNONCE_LEN], uint64_t producer_id,
                        uint16_t max_dgram, const char *key_id, size_t key_id_len, uint8_t out[32])
{
	static const char label[] = "firn1 client";
	uint8_t pid[8], md[2], kl = (uint8_t)key_id_len;
	struct proto_part parts[] = {
	        {label, sizeof(label) - 1},
	        {nonce_c, FIRN_PROTO_NONCE_LEN},
	        {nonce_s, FIRN_PROTO_SNONCE_LEN},
	        {pid, 8},
	        {md, 2},
	        {&kl, 1},
	        {key_id, key_id_len},
	};

	if (key_id_len == 0 || key_id_len > FIRN_PROTO_KEY_ID_MAX)
		return -EINVAL;
	st64(pid, producer_id);
	st16(md, max_dgram);
	return proto_hmac(secret, secret_len, parts, FIRN_ARRAY_SIZE(parts), out);
}

int
firn_proto_derive_keys(const uint8_t *secret, size_t secret_len,
                       const uint8_t nonce_c[FIRN_PROTO_NONCE_LEN],
                       const uint8_t nonce_s[FIRN_PROTO_SNONCE_LEN], uint64_t session_id,
                       const uint8_t proof[32], struct firn_proto_keys *out)
{
	static const char label[] = "firn1 keys";
	uint8_t salt[FIRN_PROTO_NONCE_LEN + FIRN_PROTO_SNONCE_LEN],
	        info[sizeof(label) - 1 + 8 + 32], okm[88];
	EVP_KDF *kdf;
	EVP_KDF_CTX *ctx;
	OSSL_PARAM params[5];
	int rc = -EIO;

	memcpy(salt, nonce_c, FIRN_PROTO_NONCE_LEN);
	memcpy(salt + FIRN_PROTO_NONCE_LEN, nonce_s, FIRN_PROTO_SNONCE_LEN);
	memcpy(info, label, sizeof(label) - 1);
	st64(info + sizeof(label) - 1, session_id);
	memcpy(info + sizeof(label) - 1 + 8, proof, 32);

	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf == NULL)
		return -EIO;
	ctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (ctx == NULL)
		return -EIO;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] =
	        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof(salt));
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info));
	params[4] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, okm, sizeof(okm), params) == 1) {
		memcpy(out->c2s_key, okm, 32);
		memcpy(out->c2s_iv, okm + 32, 12);
		memcpy(out->s2c_key, okm + 44, 32);
		memcpy(out->s2c_iv, okm + 76, 12);
		rc = 0;
	}
	OPENSSL_cleanse(okm, sizeof(okm));
	EVP_KDF_CTX_free(ctx);
	return rc;
}

/* ---- AEAD ------------------------------------------------------------------ */

int
firn_proto_aead_init(struct firn_proto_aead *a, const uint8_t key[32], const uint8_t iv[12],
                     bool seal)
{
	a->ctx = EVP_CIPHER_CTX_new();
	if (a->ctx == NULL)
		return -ENOMEM;
	a->seal = seal;
	if (EVP_CipherInit_ex(a->ctx, EVP_aes_256_gcm(), NULL, key, NULL, seal ? 1 : 0) != 1) {
		EVP_CIPHER_CTX_free(a->ctx);
		a->ctx = NULL;
		return -EIO;
	}
	memcpy(a->iv, iv, 12);
	return 0;
}

int
firn_proto_aead_rekey(struct firn_proto_aead *a, const uint8_t key[32], const uint8_t iv[12])
{
	if (a->ctx == NULL ||
	    EVP_CipherInit_ex(a->ctx, NULL, NULL, key, NULL, a->seal ? 1 : 0) != 1)
		return -EIO;
	memcpy(a->iv, iv, 12);
	return 0;
}

void
firn_proto_aead_fini(struct firn_proto_aead *a)
{
	EVP_CIPHER_CTX_free(a->ctx);
	a->ctx = NULL;
}

static void
make_nonce(const struct firn_proto_aead *a, uint64_t pn, uint8_t nonce[12])
{
	memcpy(nonce, a->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(pn >> (56 - 8 * i));
}

int
firn_proto_seal(struct firn_proto_aead *a, uint8_t *buf, size_t len, size_t cap)
{
	uint8_t nonce[12];
	int outl = 0, fl = 0;
	size_t pt = len - FIRN_PROTO_HDR_LEN;

	if (len < FIRN_PROTO_HDR_LEN || len > (size_t)INT32_MAX || !a->seal)
		return -EINVAL;
	if (cap < len + FIRN_PROTO_TAG_LEN)
		return -ENOSPC;
	make_nonce(a, ld64(buf + 16), nonce);
	if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 1) != 1 ||
	    EVP_EncryptUpdate(a->ctx, NULL, &outl, buf, FIRN_PROTO_HDR_LEN) != 1)
		return -EIO;
	if (pt > 0 && EVP_EncryptUpdate(a->ctx, buf + FIRN_PROTO_HDR_LEN, &outl,
	                                buf + FIRN_PROTO_HDR_LEN, (int)pt) != 1)
		return -EIO;
	if (EVP_EncryptFinal_ex(a->ctx, buf + len, &fl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, FIRN_PROTO_TAG_LEN, buf + len) != 1)
		return -EIO;
	return (int)(len + FIRN_PROTO_TAG_LEN);
}

int
firn_proto_open(struct firn_proto_aead *a, uint64_t pn, uint8_t *buf, size_t len)
{
	uint8_t nonce[12];
	int outl = 0, fl = 0;
	size_t ct;

	if (len < FIRN_PROTO_HDR_LEN + FIRN_PROTO_TAG_LEN || len > (size_t)INT32_MAX || a->seal)
		return -EBADMSG;
	ct = len - FIRN_PROTO_HDR_LEN - FIRN_PROTO_TAG_LEN;
	make_nonce(a, pn, nonce);
	if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 0) != 1 ||
	    EVP_DecryptUpdate(a->ctx, NULL, &outl, buf, FIRN_PROTO_HDR_LEN) != 1)
		return -EBADMSG;
	if (ct > 0 && EVP_DecryptUpdate(a->ctx, buf + FIRN_PROTO_HDR_LEN, &outl,
	                                buf + FIRN_PROTO_HDR_LEN, (int)ct) != 1)
		return -EBADMSG;
	if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, FIRN_PROTO_TAG_LEN,
	                        buf + len - FIRN_PROTO_TAG_LEN) != 1 ||
	    EVP_DecryptFinal_ex(a->ctx, buf + FIRN_PROTO_HDR_LEN + ct, &fl) != 1)
		return -EBADMSG;
	return (int)ct;
}
