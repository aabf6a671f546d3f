/*
 * gen.c - deterministic load: xoshiro256** random numbers, uniform and
 * zipfian key choice, and record payload generators.
 *
 * The zipfian generator is the rejection-free method of Gray et al.
 * ("Quickly generating billion-record synthetic databases", SIGMOD 1994),
 * the one YCSB uses: O(n) once to sum zeta(n), O(1) per key, no table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_bench.h"
#include "firn_common.h"

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void
firn_rng_seed(struct firn_rng *r, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix(&seed);
}

uint64_t
firn_rng_next(struct firn_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t
firn_rng_below(struct firn_rng *r, uint64_t n)
{
	/* Lemire's multiply-shift; the tiny bias is irrelevant for load. */
	return n ? (uint64_t)(((unsigned __int128)firn_rng_next(r) * n) >> 64) : 0;
}

static double
rng_unit(struct firn_rng *r)
{
	return (double)(firn_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

struct firn_keygen {
	enum firn_keydist dist;
	uint64_t n;
	struct firn_rng rng;
	double theta, zetan, alpha, eta, half_pow;
};

#define ZIPF_THETA 0.99

struct firn_keygen *
firn_keygen_create(enum firn_keydist d, uint64_t n, uint64_t seed)
{
	struct firn_keygen *k;
	uint64_t i;

	if (n == 0 || (d != FIRN_KEYS_UNIFORM && d != FIRN_KEYS_ZIPF))
		return NULL;
	k = calloc(1, sizeof(*k));
	if (k == NULL)
		return NULL;
	k->dist = d;
	k->n = n;
	firn_rng_seed(&k->rng, seed);
	if (d == FIRN_KEYS_ZIPF) {
		double zeta2 = 1.0 + pow(0.5, ZIPF_THETA);

		k->theta = ZIPF_THETA;
		for (i = 1; i <= n; i++)
			k->zetan += 1.0 / pow((double)i, ZIPF_THETA);
		k->alpha = 1.0 / (1.0 - ZIPF_THETA);
		k->eta = (1.0 - pow(2.0 / (double)n, 1.0 - ZIPF_THETA)) / (1.0 - zeta2 / k->zetan);
		k->half_pow = pow(0.5, ZIPF_THETA);
	}
	return k;
}

void
firn_keygen_destroy(struct firn_keygen *k)
{
	free(k);
}

uint64_t
firn_keygen_next(struct firn_keygen *k)
{
	double u, uz;
	uint64_t v;

	if (k->dist == FIRN_KEYS_UNIFORM)
		return firn_rng_below(&k->rng, k->n);
	u = rng_unit(&k->rng);
	uz = u * k->zetan;
	if (uz < 1.0 || k->n == 1)
		return 0;
	if (uz < 1.0 + k->half_pow)
		return 1;
	v = (uint64_t)((double)k->n * pow(k->eta * u - k->eta + 1.0, k->alpha));
	return v < k->n ? v : k->n - 1;
}

/*
 * "k" and the decimal digits of i, NUL-terminated, truncated to cap - 1
 * bytes like snprintf. By hand because it runs once per generated record
 * and snprintf's format machinery was 5 % of a 100-byte-record producer.
 */
size_t
firn_key_format(uint64_t i, char *buf, size_t cap)
{
	char tmp[24];
	size_t d = 0, n;

	if (cap == 0)
		return 0;
	do {
		tmp[d++] = (char)('0' + i % 10);
		i /= 10;
	} while (i != 0);
	tmp[d++] = 'k';
	n = FIRN_MIN(d, cap - 1);
	for (size_t j = 0; j < n; j++)
		buf[j] = tmp[d - 1 - j];
	buf[n] = '\0';
	return n;
}

static const char *const hosts[] = {"web-01", "web-02", "web-03", "api-01", "api-02", "db-01"};
static const char *const levels[] = {"info", "info", "info", "warn", "error", "debug"};
static const char *const paths[] = {"/api/v1/items",  "/api/v1/users",  "/health",
                                    "/api/v1/orders", "/static/app.js", "/login"};

void
firn_data_fill(enum firn_datagen kind, struct firn_rng *rng, uint8_t *buf, size_t len)
{
	size_t off = 0;

	if (kind == FIRN_DATA_RANDOM) {
		while (off < len) {
			uint64_t v = firn_rng_next(rng);
			size_t n = FIRN_MIN(sizeof(v), len - off);

			memcpy(buf + off, &v, n);
			off += n;
		}
		return;
	}
	while (off < len) {
		char line[256];
		uint64_t r = firn_rng_next(rng);
		int n = snprintf(line, sizeof(line),
		                 "{\"ts\":\"2026-11-29T%02u:%02u:%02u.%03uZ\",\"host\":\"%s\","
		                 "\"level\":\"%s\",\"path\":\"%s/%u\",\"status\":%u,\"ms\":%u,"
		                 "\"ua\":\"curl/8.1.2\"}\n",
		                 (unsigned)(r % 24), (unsigned)(r >> 8) % 60,
		                 (unsigned)(r >> 16) % 60, (unsigned)(r >> 24) % 1000,
		                 hosts[(r >> 34) % 6], levels[(r >> 37) % 6], paths[(r >> 40) % 6],
		                 (unsigned)(r >> 43) % 5000, (r >> 56) % 16 ? 200u : 500u,
		                 (unsigned)(r >> 50) % 250);
		size_t take = FIRN_MIN((size_t)n, len - off);

		memcpy(buf + off, line, take);
		off += take;
	}
}
