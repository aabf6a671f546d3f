/*
 * b64.c - base64 for record data in JSON.
 *
 * Kinesis carries every record's Data as standard base64 inside JSON, in both
 * directions, so this runs once per record on the HTTP path. Encoding goes
 * through OpenSSL's EVP_EncodeBlock (no line breaks). Decoding is our own:
 * EVP_DecodeBlock accepts leading/trailing blanks and reports padding bytes
 * as data, and here a client's mistake must be an error, not silently
 * different bytes. Padding is optional on input (some SDKs drop it).
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "api_internal.h"

size_t
firn_b64_encode(const void *in, size_t len, char *out)
{
	/* EVP_EncodeBlock takes an int length: chunk in multiples of 3 bytes. */
	const size_t chunk = (size_t)3 << 28;
	const uint8_t *p = in;
	size_t done = 0;

	while (len > chunk) {
		done += (size_t)EVP_EncodeBlock((unsigned char *)out + done, p, (int)chunk);
		p += chunk;
		len -= chunk;
	}
	done += (size_t)EVP_EncodeBlock((unsigned char *)out + done, p, (int)len);
	out[done] = '\0';
	return done;
}

/*
 * 0..63 for an alphabet byte, 64 for anything else. A table, because this
 * runs for every byte of every record's Data (generated from the alphabet
 * A-Z a-z 0-9 + /).
 */
/* clang-format off */
static const uint8_t b64_rev[256] = {
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 62, 64, 64, 64, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 64, 64, 64, 64, 64, 64,
	64,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 64, 64, 64, 64, 64,
	64, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
};
/* clang-format on */

long
firn_b64_decode(const char *in, size_t len, uint8_t *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i, n = 0, full, pad = 0;
	unsigned rem;

	/*
	 * Strip up to two '='. With padding the text must be whole quanta;
	 * without it, any length but 4k+1 (which cannot encode whole bytes).
	 */
	while (pad < 2 && len > 0 && s[len - 1] == '=') {
		len--;
		pad++;
	}
	if (pad > 0 && (len + pad) % 4 != 0)
		return -EINVAL;
	if (len % 4 == 1)
		return -EINVAL;
	full = len / 4 * 4;
	for (i = 0; i < full; i += 4) {
		uint8_t a = b64_rev[s[i]], b = b64_rev[s[i + 1]];
		uint8_t c = b64_rev[s[i + 2]], d = b64_rev[s[i + 3]];

		if ((a | b | c | d) & 64)
			return -EINVAL;
		out[n++] = (uint8_t)(a << 2 | b >> 4);
		out[n++] = (uint8_t)(b << 4 | c >> 2);
		out[n++] = (uint8_t)(c << 6 | d);
	}
	rem = (unsigned)(len - full);
	if (rem >= 2) {
		uint8_t a = b64_rev[s[i]], b = b64_rev[s[i + 1]];
		uint8_t c = rem == 3 ? b64_rev[s[i + 2]] : 0;

		if ((a | b | c) & 64)
			return -EINVAL;
		out[n++] = (uint8_t)(a << 2 | b >> 4);
		if (rem == 3)
			out[n++] = (uint8_t)(b << 4 | c >> 2);
	}
	return (long)n;
}
