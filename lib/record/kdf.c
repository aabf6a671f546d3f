/*
 * kdf.c - secrets derived from the key-encryption key.
 *
 * Several things firnd signs must stay valid across a restart: the UDP
 * protocol's cookies and RESET tokens (doc/protocol.md §3.2) and the HTTP
 * API's shard iterators and pagination tokens (doc/api.md). Each gets its
 * own 32-byte secret, HKDF-SHA256 (RFC 5869, no salt) of the KEK with a
 * label naming its use, so no two uses ever share a key and none of them
 * reveals the KEK. Called at start-up only; the EVP interface allocates,
 * which is fine there.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "firn_common.h"
#include "firn_record.h"

int
firn_kdf(const uint8_t secret[32], const char *label, uint8_t out[32])
{
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	size_t len = 32;
	int ok;

	ok = pc != NULL && EVP_PKEY_derive_init(pc) > 0 &&
	     EVP_PKEY_CTX_set_hkdf_md(pc, EVP_sha256()) > 0 &&
	     EVP_PKEY_CTX_set1_hkdf_key(pc, secret, 32) > 0 &&
	     EVP_PKEY_CTX_add1_hkdf_info(pc, (const unsigned char *)label, (int)strlen(label)) >
	             0 &&
	     EVP_PKEY_derive(pc, out, &len) > 0 && len == 32;
	EVP_PKEY_CTX_free(pc);
	if (!ok)
		return firn_err_set(-EIO, "key derivation '%s': OpenSSL HKDF failed", label);
	return 0;
}
