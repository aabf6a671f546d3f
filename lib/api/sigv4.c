/*
 * sigv4.c - AWS Signature Version 4, both sides.
 *
 * Every request an AWS SDK sends carries
 *
 *	Authorization: AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kinesis/aws4_request,
 *	               SignedHeaders=content-type;host;x-amz-date;x-amz-target,
 *	               Signature=<64 hex>
 *
 * and the signature is HMAC-SHA256, under a key derived from the secret, of a
 * "string to sign" that hashes a canonical form of the request: method, path,
 * query, exactly the signed headers (lowercase names, sorted, values trimmed
 * and inner spaces collapsed, repeats joined with ','), the signed-header
 * list, and the SHA-256 of the body. Server and client build that canonical
 * form with the same function here, which is the whole point of keeping both
 * sides in one file: the CLI cannot drift from what firnd verifies.
 *
 * Verification is real and on by default: a missing header, a malformed one,
 * a date more than 5 minutes off, an unknown access key and a wrong signature
 * each get the error type an AWS SDK expects (botocore, for example, treats
 * "Signature expired" under InvalidSignatureException as clock skew, corrects
 * its clock from our Date header and retries).
 *
 * Only the signature's HMAC is compared in constant time; the rest of the
 * header is public.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "api_internal.h"

#define SIGV4_ALGO "AWS4-HMAC-SHA256"
#define SIGV4_MAX_SIGNED 64

/* ---- primitives ---------------------------------------------------------- */

void
sigv4_sha256_hex(const void *data, size_t len, char hex[65])
{
	uint8_t md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	firn_hex_encode(md, sizeof(md), hex);
}

static void
hmac256(const void *key, size_t key_len, const void *msg, size_t len, uint8_t out[32])
{
	unsigned int n = 32;

	HMAC(EVP_sha256(), key, (int)key_len, msg, len, out, &n);
}

void
sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                  uint8_t key[32])
{
	char k0[256];
	uint8_t k[32];
	int n;

	n = snprintf(k0, sizeof(k0), "AWS4%s", secret);
	if (n < 0 || (size_t)n >= sizeof(k0))
		n = (int)sizeof(k0) - 1;
	hmac256(k0, (size_t)n, date, strlen(date), k);
	hmac256(k, 32, region, strlen(region), k);
	hmac256(k, 32, service, strlen(service), k);
	hmac256(k, 32, "aws4_request", 12, key);
	OPENSSL_cleanse(k0, sizeof(k0));
	OPENSSL_cleanse(k, sizeof(k));
}

void
sigv4_hmac_hex(const uint8_t key[32], const char *msg, char hex[65])
{
	uint8_t mac[32];

	hmac256(key, 32, msg, strlen(msg), mac);
	firn_hex_encode(mac, sizeof(mac), hex);
}

int
sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical, char *out,
                     size_t size)
{
	char hash[65];
	int n;

	sigv4_sha256_hex(canonical, strlen(canonical), hash);
	n = snprintf(out, size, SIGV4_ALGO "\n%s\n%s\n%s", amz_date, scope, hash);
	return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

int
sigv4_parse_amz_date(const char *s, int64_t *unix_s)
{
	struct tm tm;
	int i;

	if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
		return -EINVAL;
	for (i = 0; i < 15; i++)
		if (i != 8 && !isdigit((unsigned char)s[i]))
			return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year =
	        (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0') - 1900;
	tm.tm_mon = (s[4] - '0') * 10 + (s[5] - '0') - 1;
	tm.tm_mday = (s[6] - '0') * 10 + (s[7] - '0');
	tm.tm_hour = (s[9] - '0') * 10 + (s[10] - '0');
	tm.tm_min = (s[11] - '0') * 10 + (s[12] - '0');
	tm.tm_sec = (s[13] - '0') * 10 + (s[14] - '0');
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -EINVAL;
	*unix_s = (int64_t)timegm(&tm);
	return 0;
}

void
firn_sigv4_date(int64_t unix_s, char buf[17])
{
	time_t t = (time_t)unix_s;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- canonical request --------------------------------------------------- */

/* RFC 3986 unreserved characters stay; everything else is %XX (uppercase). */
static void
uri_encode(struct sbuf *b, const char *s, size_t n, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
		    (keep_slash && c == '/')) {
			sb_addc(b, (char)c);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};

			sb_add(b, e, 3);
		}
	}
}

/* Trimall: drop leading/trailing blanks, collapse inner runs to one space. */
static void
add_trimmed(struct sbuf *b, const char *v)
{
	bool space = false, any = false;

	for (; *v; v++) {
		if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') {
			space = any;
			continue;
		}
		if (space)
			sb_addc(b, ' ');
		sb_addc(b, *v);
		space = false;
		any = true;
	}
}

struct qpair {
	const char *k, *v;
	size_t klen, vlen;
};

static int
qpair_cmp(const void *a, const void *b)
{
	const struct qpair *x = a, *y = b;
	size_t n = FIRN_MIN(x->klen, y->klen);
	int c = memcmp(x->k, y->k, n);

	if (c != 0)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	n = FIRN_MIN(x->vlen, y->vlen);
	c = memcmp(x->v, y->v, n);
	if (c != 0)
		return c;
	return x->vlen < y->vlen ? -1 : x->vlen > y->vlen;
}

/*
 * The query string as given (already encoded by the client), pairs sorted by
 * key then value - the same as botocore does for a URL's own query.
 */
static int
add_query(struct sbuf *b, const char *q)
{
	struct qpair *pairs;
	size_t n = 1, i = 0;
	const char *p;

	if (q == NULL || *q == '\0')
		return 0;
	for (p = q; *p; p++)
		n += *p == '&';
	pairs = calloc(n, sizeof(*pairs));
	if (pairs == NULL)
		return -ENOMEM;
	p = q;
	while (i < n) {
		const char *amp = strchr(p, '&');
		const char *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));

		pairs[i].k = p;
		pairs[i].klen = (size_t)((eq ? eq : end) - p);
		pairs[i].v = eq ? eq + 1 : end;
		pairs[i].vlen = (size_t)(end - pairs[i].v);
		i++;
		if (amp == NULL)
			break;
		p = amp + 1;
	}
	qsort(pairs, i, sizeof(*pairs), qpair_cmp);
	for (n = 0; n < i; n++) {
		if (n)
			sb_addc(b, '&');
		sb_add(b, pairs[n].k, pairs[n].klen);
		sb_addc(b, '=');
		sb_add(b, pairs[n].v, pairs[n].vlen);
	}
	free(pairs);
	return 0;
}

int
sigv4_canonical_request(const char *method, const char *path, const char *query,
                        const struct api_header *hdrs, unsigned nhdrs, const char *signed_headers,
                        const char *payload_hash_hex, char **out)
{
	const char *p = signed_headers;
	struct sbuf b;
	unsigned i;

	sb_init(&b);
	sb_adds(&b, method);
	sb_addc(&b, '\n');
	if (path == NULL || *path == '\0')
		sb_addc(&b, '/');
	else
		uri_encode(&b, path, strlen(path), true);
	sb_addc(&b, '\n');
	if (add_query(&b, query) < 0) {
		sb_free(&b);
		return -ENOMEM;
	}
	sb_addc(&b, '\n');
	while (*p) {
		const char *semi = strchr(p, ';');
		size_t n = semi ? (size_t)(semi - p) : strlen(p);
		bool first = true;

		if (n == 0) {
			sb_free(&b);
			return -EINVAL;
		}
		sb_add(&b, p, n);
		sb_addc(&b, ':');
		for (i = 0; i < nhdrs; i++) {
			if (strlen(hdrs[i].name) != n || strncasecmp(hdrs[i].name, p, n) != 0)
				continue;
			if (!first)
				sb_addc(&b, ',');
			add_trimmed(&b, hdrs[i].value);
			first = false;
		}
		sb_addc(&b, '\n');
		p += n;
		if (*p == ';')
			p++;
	}
	sb_addc(&b, '\n');
	sb_adds(&b, signed_headers);
	sb_addc(&b, '\n');
	sb_adds(&b, payload_hash_hex);
	*out = sb_take(&b, NULL);
	return *out ? 0 : -ENOMEM;
}

/* ---- client side --------------------------------------------------------- */

static int
lname_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int
firn_sigv4_sign(const struct firn_sigv4_req *r, char *out, size_t size)
{
	char *names[SIGV4_MAX_SIGNED];
	struct api_header hdrs[SIGV4_MAX_SIGNED];
	char payload[65], sig[65], scope[256], date[9], sts[512];
	char *canonical = NULL;
	struct sbuf sh;
	uint8_t key[32];
	unsigned i, j, n = 0;
	int rc = 0, len;

	if (r->nhdrs > SIGV4_MAX_SIGNED || r->amz_date == NULL || strlen(r->amz_date) != 16)
		return -EINVAL;
	for (i = 0; i < r->nhdrs; i++) {
		char *l = strdup(r->hdrs[i].name);

		if (l == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		for (j = 0; l[j]; j++)
			l[j] = (char)tolower((unsigned char)l[j]);
		hdrs[i].name = r->hdrs[i].name;
		hdrs[i].value = r->hdrs[i].value;
		/* One entry per distinct name: repeats are joined, not listed twice. */
		for (j = 0; j < n; j++)
			if (strcmp(names[j], l) == 0)
				break;
		if (j < n)
			free(l);
		else
			names[n++] = l;
	}
	qsort(names, n, sizeof(names[0]), lname_cmp);
	sb_init(&sh);
	for (i = 0; i < n; i++) {
		if (i)
			sb_addc(&sh, ';');
		sb_adds(&sh, names[i]);
	}
	if (sh.oom) {
		sb_free(&sh);
		rc = -ENOMEM;
		goto out;
	}
	sigv4_sha256_hex(r->body ? r->body : "", r->body_len, payload);
	rc = sigv4_canonical_request(r->method, r->path, r->query, hdrs, r->nhdrs, sh.p ? sh.p : "",
	                             payload, &canonical);
	if (rc < 0) {
		sb_free(&sh);
		goto out;
	}
	memcpy(date, r->amz_date, 8);
	date[8] = '\0';
	snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, r->region, r->service);
	rc = sigv4_string_to_sign(r->amz_date, scope, canonical, sts, sizeof(sts));
	if (rc == 0) {
		sigv4_signing_key(r->secret_access_key, date, r->region, r->service, key);
		sigv4_hmac_hex(key, sts, sig);
		OPENSSL_cleanse(key, sizeof(key));
		len = snprintf(out, size,
		               SIGV4_ALGO " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		               r->access_key_id, scope, sh.p ? sh.p : "", sig);
		if (len < 0 || (size_t)len >= size)
			rc = -ENOSPC;
	}
	sb_free(&sh);
	free(canonical);
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	return rc;
}

/* ---- server side --------------------------------------------------------- */

static const char *
hdr_get(const struct api_header *hdrs, unsigned n, const char *name)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (strcasecmp(hdrs[i].name, name) == 0)
			return hdrs[i].value;
	return NULL;
}

/* Copy the value of `key=` up to ',' (or end) into out; false if absent or too long. */
static bool
auth_param(const char *v, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	const char *p = v;

	while ((p = strstr(p, key)) != NULL) {
		/* Must start a parameter: after the algorithm's space, a ',' or blanks. */
		if ((p == v || p[-1] == ' ' || p[-1] == ',') && p[klen] == '=') {
			const char *s = p + klen + 1;
			size_t n = strcspn(s, ", ");

			if (n == 0 || n >= size)
				return false;
			memcpy(out, s, n);
			out[n] = '\0';
			return true;
		}
		p += klen;
	}
	return false;
}

int
sigv4_parse_auth(const char *value, struct sigv4_auth *a, struct api_error *e)
{
	char cred[512], *parts[5], *tok;
	const char *missing[3];
	unsigned nmiss = 0, n = 0, i;
	size_t hexlen;

	memset(a, 0, sizeof(*a));
	if (strncmp(value, SIGV4_ALGO, strlen(SIGV4_ALGO)) != 0 ||
	    (value[strlen(SIGV4_ALGO)] != ' ' && value[strlen(SIGV4_ALGO)] != '\0'))
		return api_fail(e, API_E_INCOMPLETE_SIG,
		                "Unsupported AWS 'algorithm': expected '" SIGV4_ALGO "'.");
	value += strlen(SIGV4_ALGO);
	if (!auth_param(value, "Credential", cred, sizeof(cred)))
		missing[nmiss++] = "Credential";
	if (!auth_param(value, "SignedHeaders", a->signed_headers, sizeof(a->signed_headers)))
		missing[nmiss++] = "SignedHeaders";
	if (!auth_param(value, "Signature", a->signature, sizeof(a->signature)))
		missing[nmiss++] = "Signature";
	if (nmiss > 0) {
		char msg[256];
		size_t off = 0;

		for (i = 0; i < nmiss; i++)
			off += (size_t)snprintf(msg + off, sizeof(msg) - off,
			                        "%sAuthorization header requires '%s' parameter.",
			                        i ? " " : "", missing[i]);
		return api_fail(e, API_E_INCOMPLETE_SIG, "%s", msg);
	}
	hexlen = strlen(a->signature);
	for (i = 0; i < hexlen; i++)
		if (!isxdigit((unsigned char)a->signature[i]))
			break;
	if (hexlen != 64 || i != hexlen)
		return api_fail(e, API_E_INCOMPLETE_SIG,
		                "Signature must be 64 hexadecimal characters.");
	/* Split AKID/DATE/REGION/SERVICE/aws4_request in place. */
	for (tok = cred; n < 5; n++) {
		parts[n] = tok;
		tok = strchr(tok, '/');
		if (tok == NULL) {
			n++;
			break;
		}
		*tok++ = '\0';
	}
	if (n != 5 || tok != NULL || strcmp(parts[4], "aws4_request") != 0 ||
	    strlen(parts[1]) != 8 || strlen(parts[0]) >= sizeof(a->akid) ||
	    strlen(parts[2]) >= sizeof(a->region) || strlen(parts[3]) >= sizeof(a->service))
		return api_fail(e, API_E_INCOMPLETE_SIG,
		                "Credential should be scoped to a valid region, not '%s'. "
		                "Expected 'AKID/YYYYMMDD/REGION/SERVICE/aws4_request'.",
		                n > 2 ? parts[2] : "");
	snprintf(a->akid, sizeof(a->akid), "%s", parts[0]);
	memcpy(a->date, parts[1], 9);
	snprintf(a->region, sizeof(a->region), "%s", parts[2]);
	snprintf(a->service, sizeof(a->service), "%s", parts[3]);
	return 0;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" -> Unix seconds. */
static int
parse_http_date(const char *s, int64_t *unix_s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (end == NULL || *end != '\0')
		return -EINVAL;
	*unix_s = (int64_t)timegm(&tm);
	return 0;
}

/* Signed-header list must be lowercase names joined by ';' and include host. */
static bool
signed_headers_ok(const char *sh, bool *has_host)
{
	const char *p = sh;

	*has_host = false;
	while (*p) {
		size_t n = strcspn(p, ";");

		if (n == 0)
			return false;
		if (n == 4 && strncmp(p, "host", 4) == 0)
			*has_host = true;
		p += n;
		if (*p == ';')
			p++;
	}
	for (p = sh; *p; p++)
		if (isupper((unsigned char)*p) || *p == ' ')
			return false;
	return true;
}

int
sigv4_verify(const struct sigv4_verify_conf *vc, const char *method, const char *path,
             const char *query, const struct api_header *hdrs, unsigned nhdrs, const void *body,
             size_t body_len, char *region_out, size_t region_size, struct api_error *e)
{
	const char *auth = hdr_get(hdrs, nhdrs, "Authorization");
	const char *amz_date = hdr_get(hdrs, nhdrs, "X-Amz-Date");
	const char *content_sha = hdr_get(hdrs, nhdrs, "X-Amz-Content-Sha256");
	char date_iso[17], payload[65], scope[256], sts[512], sig[65], now_iso[17], lim_iso[17];
	struct sigv4_auth a;
	char *canonical = NULL;
	uint8_t key[32];
	int64_t t, now_s = vc->now_ms / 1000;
	bool has_host;
	int rc;

	if (auth == NULL || *auth == '\0')
		return api_fail(e, API_E_MISSING_AUTH, "Missing Authentication Token");
	if (sigv4_parse_auth(auth, &a, e) < 0)
		return -1;
	if (!signed_headers_ok(a.signed_headers, &has_host))
		return api_fail(e, API_E_INCOMPLETE_SIG,
		                "SignedHeaders must be lowercase header names separated by ';'.");
	if (!has_host)
		return api_fail(e, API_E_INCOMPLETE_SIG,
		                "'Host' or ':authority' must be a 'SignedHeader' in the AWS "
		                "Authorization.");
	if (amz_date != NULL) {
		if (sigv4_parse_amz_date(amz_date, &t) < 0)
			return api_fail(e, API_E_INCOMPLETE_SIG,
			                "Date must be in ISO-8601 'basic format'. Got '%s'. See "
			                "http://en.wikipedia.org/wiki/ISO_8601",
			                amz_date);
		snprintf(date_iso, sizeof(date_iso), "%s", amz_date);
	} else {
		const char *d = hdr_get(hdrs, nhdrs, "Date");

		if (d == NULL)
			return api_fail(e, API_E_INCOMPLETE_SIG,
			                "Authorization header requires existence of either a "
			                "'X-Amz-Date' or a 'Date' header.");
		if (parse_http_date(d, &t) < 0)
			return api_fail(e, API_E_INCOMPLETE_SIG,
			                "Date header '%s' is not an "
			                "RFC 1123 date.",
			                d);
		firn_sigv4_date(t, date_iso);
	}
	if (memcmp(a.date, date_iso, 8) != 0)
		return api_fail(e, API_E_INVALID_SIG,
		                "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
		                "version of date from HTTP: '%s' != '%.8s', from '%s'.",
		                a.date, date_iso, date_iso);
	if (t * 1000 < vc->now_ms - API_SKEW_MS) {
		firn_sigv4_date(now_s, now_iso);
		firn_sigv4_date(now_s - API_SKEW_MS / 1000, lim_iso);
		return api_fail(e, API_E_INVALID_SIG,
		                "Signature expired: %s is now earlier than %s (%s - 5 min.)",
		                date_iso, lim_iso, now_iso);
	}
	if (t * 1000 > vc->now_ms + API_SKEW_MS) {
		firn_sigv4_date(now_s, now_iso);
		firn_sigv4_date(now_s + API_SKEW_MS / 1000, lim_iso);
		return api_fail(e, API_E_INVALID_SIG,
		                "Signature not yet current: %s is still later than %s (%s + 5 "
		                "min.)",
		                date_iso, lim_iso, now_iso);
	}
	if (strcmp(a.service, "kinesis") != 0)
		return api_fail(e, API_E_INVALID_SIG,
		                "Credential should be scoped to correct service: 'kinesis'. ");
	if (vc->access_key_id == NULL || strcmp(a.akid, vc->access_key_id) != 0)
		return api_fail(e, API_E_UNRECOGNIZED_CLIENT,
		                "The security token included in the request is invalid.");
	sigv4_sha256_hex(body, body_len, payload);
	/*
	 * A client may sign a declared body hash instead (X-Amz-Content-Sha256);
	 * it must then be the hash of what arrived, unless it says the payload
	 * is deliberately unsigned.
	 */
	if (content_sha != NULL && strcmp(content_sha, "UNSIGNED-PAYLOAD") != 0 &&
	    strcasecmp(content_sha, payload) != 0)
		return api_fail(e, API_E_INVALID_SIG,
		                "The provided 'x-amz-content-sha256' header does not match what "
		                "was computed.");
	rc = sigv4_canonical_request(method, path, query, hdrs, nhdrs, a.signed_headers,
	                             content_sha ? content_sha : payload, &canonical);
	if (rc < 0)
		return api_fail(e, rc == -ENOMEM ? API_E_INTERNAL : API_E_INCOMPLETE_SIG,
		                "cannot build the canonical request");
	snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", a.date, a.region, a.service);
	rc = sigv4_string_to_sign(date_iso, scope, canonical, sts, sizeof(sts));
	free(canonical);
	if (rc < 0)
		return api_fail(e, API_E_INCOMPLETE_SIG, "credential scope too long");
	sigv4_signing_key(vc->secret_access_key, a.date, a.region, a.service, key);
	sigv4_hmac_hex(key, sts, sig);
	OPENSSL_cleanse(key, sizeof(key));
	for (rc = 0; rc < 64; rc++)
		a.signature[rc] = (char)tolower((unsigned char)a.signature[rc]);
	if (CRYPTO_memcmp(sig, a.signature, 64) != 0)
		return api_fail(
		        e, API_E_INVALID_SIG,
		        "The request signature we calculated does not match the signature "
		        "you provided. Check your AWS Secret Access Key and signing method. "
		        "Consult the service documentation for details.");
	snprintf(region_out, region_size, "%s", a.region);
	return 0;
}
