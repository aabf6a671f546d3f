/*
 * header.c - the segment header and the data key it carries.
 *
 * A segment file starts with one 4 KiB header (doc/format.md section 3):
 * plain identity fields, then the segment's own random data key wrapped with
 * AES-256-GCM under the key-encryption key, then a CRC32C in the last four
 * bytes. The wrap's associated data is every header field before it, so a
 * wrapped key lifted into another segment's header does not open there.
 *
 * This runs once per segment (create, recover), never per record, so it uses
 * a throw-away EVP context rather than the codec's.
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "firn_common.h"
#include "firn_segment.h"
#include "seg_internal.h"

int
firn_seg_key_generate(struct firn_seg_key *dk)
{
	if (RAND_bytes(dk->key, sizeof(dk->key)) != 1)
		return firn_err_set(-EIO, "segment data key: RAND_bytes failed");
	return 0;
}

/*
 * AES-256-GCM of one 32-byte key: out = iv | ciphertext | tag. enc=0 opens it
 * instead and returns -EACCES when the tag does not match.
 */
static int
seg_wrap(int enc, const uint8_t kek[32], const uint8_t *aad, size_t aad_len, const uint8_t *in,
         uint8_t *out, uint8_t wrapped[FIRN_SEG_WRAPPED_LEN])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t *iv = wrapped, *ct = wrapped + SEG_IV_LEN, *tag = ct + FIRN_SEG_KEY_LEN;
	int len, rc = -EIO;

	if (c == NULL)
		return -ENOMEM;
	if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, kek, iv, enc) != 1)
		goto out;
	if (EVP_CipherUpdate(c, NULL, &len, aad, (int)aad_len) != 1)
		goto out;
	if (enc) {
		if (EVP_CipherUpdate(c, ct, &len, in, FIRN_SEG_KEY_LEN) != 1 ||
		    EVP_CipherFinal_ex(c, ct + len, &len) != 1 ||
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEG_TAG_LEN, tag) != 1)
			goto out;
	} else {
		if (EVP_CipherUpdate(c, out, &len, ct, FIRN_SEG_KEY_LEN) != 1 ||
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEG_TAG_LEN, tag) != 1)
			goto out;
		if (EVP_CipherFinal_ex(c, out + len, &len) != 1) {
			rc = -EACCES;
			goto out;
		}
	}
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return rc;
}

int
firn_seg_header_encode(struct firn_seg_header *h, const uint8_t kek[32],
                       const struct firn_seg_key *dk, void *buf)
{
	uint8_t *b = buf;
	int rc;

	h->version = FIRN_SEG_VERSION;
	memset(b, 0, FIRN_SEG_HEADER_SIZE);
	memcpy(b + SEG_H_MAGIC, SEG_MAGIC, 8);
	seg_st32(b + SEG_H_VERSION, FIRN_SEG_VERSION);
	seg_st32(b + SEG_H_HEADER_LEN, FIRN_SEG_HEADER_SIZE);
	seg_st64(b + SEG_H_STREAM, h->stream_id);
	seg_st32(b + SEG_H_SHARD, h->shard);
	seg_st64(b + SEG_H_FIRST_COUNTER, h->first_counter);
	seg_st64(b + SEG_H_CREATED, (uint64_t)h->created_ms);
	seg_st32(b + SEG_H_KEK_ID, h->kek_id);

	if (RAND_bytes(b + SEG_H_WRAP, SEG_IV_LEN) != 1)
		return firn_err_set(-EIO, "segment header: RAND_bytes failed");
	rc = seg_wrap(1, kek, b, SEG_H_WRAP_AAD_LEN, dk->key, NULL, b + SEG_H_WRAP);
	if (rc < 0)
		return firn_err_set(rc, "segment header: wrapping the data key failed");
	memcpy(h->wrapped_key, b + SEG_H_WRAP, FIRN_SEG_WRAPPED_LEN);
	seg_st32(b + SEG_H_CRC, seg_crc32c(0, b, SEG_H_CRC));
	return 0;
}

int
firn_seg_header_decode(const void *buf, size_t len, const uint8_t kek[32],
                       struct firn_seg_header *h, struct firn_seg_key *dk)
{
	const uint8_t *b = buf;
	uint8_t wrapped[FIRN_SEG_WRAPPED_LEN], key[FIRN_SEG_KEY_LEN];
	struct firn_seg_header tmp;
	uint32_t v;
	int rc;

	if (len < FIRN_SEG_HEADER_SIZE)
		return firn_err_set(-EBADMSG, "segment header: %zu bytes, need %u", len,
		                    FIRN_SEG_HEADER_SIZE);
	if (memcmp(b + SEG_H_MAGIC, SEG_MAGIC, 8) != 0)
		return firn_err_set(-EBADMSG, "not a firn segment (bad magic)");
	if (seg_ld32(b + SEG_H_CRC) != seg_crc32c(0, b, SEG_H_CRC))
		return firn_err_set(-EBADMSG, "segment header: CRC mismatch");
	v = seg_ld32(b + SEG_H_VERSION);
	if (v != FIRN_SEG_VERSION)
		return firn_err_set(-EBADMSG, "segment header: version %u not supported (want %u)",
		                    v, FIRN_SEG_VERSION);
	if (seg_ld32(b + SEG_H_HEADER_LEN) != FIRN_SEG_HEADER_SIZE)
		return firn_err_set(-EBADMSG, "segment header: bad header_len %u",
		                    seg_ld32(b + SEG_H_HEADER_LEN));

	memset(&tmp, 0, sizeof(tmp));
	tmp.version = v;
	tmp.stream_id = seg_ld64(b + SEG_H_STREAM);
	tmp.shard = seg_ld32(b + SEG_H_SHARD);
	tmp.first_counter = seg_ld64(b + SEG_H_FIRST_COUNTER);
	tmp.created_ms = (int64_t)seg_ld64(b + SEG_H_CREATED);
	tmp.kek_id = seg_ld32(b + SEG_H_KEK_ID);
	memcpy(tmp.wrapped_key, b + SEG_H_WRAP, FIRN_SEG_WRAPPED_LEN);

	memcpy(wrapped, b + SEG_H_WRAP, FIRN_SEG_WRAPPED_LEN);
	/* Open into a local: on a tag failure the caller's key is left untouched. */
	rc = seg_wrap(0, kek, b, SEG_H_WRAP_AAD_LEN, NULL, key, wrapped);
	if (rc == 0)
		memcpy(dk->key, key, sizeof(key));
	OPENSSL_cleanse(key, sizeof(key));
	if (rc == -EACCES)
		return firn_err_set(rc,
		                    "segment header: the key-encryption key (id %u) does "
		                    "not open the data key (wrong KEK or tampered header)",
		                    tmp.kek_id);
	if (rc < 0)
		return firn_err_set(rc, "segment header: unwrapping the data key failed");
	*h = tmp;
	return 0;
}
