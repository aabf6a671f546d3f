/*
 * api_fuzz.c - the Kinesis API request parser and validator against hostile
 * bytes.
 *
 * What it feeds, from one input: byte 0 picks the operation and the rest is
 * the request body for api_req_parse() (JSON parsing, every shape and
 * constraint check, base64 of Data); the same bytes as an Authorization
 * header for sigv4_parse_auth() and a full sigv4_verify() (canonical request
 * with repeated and odd headers); and as a shard iterator / NextToken for the
 * HMAC-checked decoders. PutRecords bodies also go through both parsers (the
 * fast scanner and the general jansson path), which must agree on everything
 * the fast one accepts. Whatever comes in, the parser must answer 0 or an
 * error of a known type with a message, never read out of bounds (ASan),
 * overflow (UBSan) or leak (LeakSanitizer).
 *
 * Two ways to run it:
 *
 *  - clang: built with -fsanitize=fuzzer and -DFIRN_LIBFUZZER, this is a
 *    libFuzzer target; CI runs it briefly over tests/fuzz/corpus/api.
 *
 *  - any compiler (gcc CI): main() replays every file of the corpus
 *    directories given on the command line, then runs a deterministic
 *    campaign of mutations of them (bit flips, byte sets, truncation,
 *    splices, inserted JSON tokens). Seed from FIRN_TEST_SEED, iterations
 *    from FIRN_FUZZ_ITERS (default 200000). Build with -Db_sanitize=address,
 *    undefined to get the same checks as libFuzzer.
 *
 * Corpus files: byte 0 = operation index (enum api_op, modulo OP_COUNT),
 * then the JSON body.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api_internal.h"

static const uint8_t fuzz_key[API_ITER_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

static void
check_error(const struct api_error *e)
{
	/* A refused request must name a known error and say something. */
	if (e->code <= API_OK || e->code >= API_E_COUNT || e->msg[0] == '\0' ||
	    strlen(e->msg) >= sizeof(e->msg))
		abort();
}

/*
 * Differential check: whatever the PutRecords fast path accepts, the general
 * jansson path must accept too, with the same stream, keys, data and hash keys.
 */
static void
check_fast_path(const char *body, size_t len)
{
	struct api_req fast, slow;
	struct api_error e;
	uint32_t i;

	if (api_put_records_fast(body, len, &fast) != 1) {
		api_req_free(&fast);
		return;
	}
	if (api_req_parse_json(OP_PUT_RECORDS, body, len, &slow, &e) != 0) {
		fprintf(stderr, "fast path accepted what the general path refuses: %s %s\n",
		        api_err_type(e.code), e.msg);
		abort();
	}
	if (strcmp(fast.stream, slow.stream) != 0 || fast.nrecords != slow.nrecords ||
	    fast.records_bytes != slow.records_bytes)
		abort();
	for (i = 0; i < fast.nrecords; i++) {
		const struct api_put_entry *a = &fast.records[i], *b = &slow.records[i];

		if (a->key_len != b->key_len || memcmp(a->key, b->key, a->key_len) != 0 ||
		    a->data_len != b->data_len || memcmp(a->data, b->data, a->data_len) != 0 ||
		    a->has_ehk != b->has_ehk || (a->has_ehk && firn_u128_cmp(a->ehk, b->ehk) != 0))
			abort();
	}
	api_req_free(&fast);
	api_req_free(&slow);
}

static void
feed(const uint8_t *data, size_t size)
{
	struct api_req req;
	struct api_error e;
	struct sigv4_auth a;
	struct api_iter it;
	struct api_token tok;
	struct api_reply rep = {0};
	char *s, region[64];
	uint8_t *b64;
	long n;

	if (size == 0)
		return;
	if (data[0] % OP_COUNT == OP_PUT_RECORDS)
		check_fast_path((const char *)data + 1, size - 1);
	/* Request body for one operation. */
	if (api_req_parse((enum api_op)(data[0] % OP_COUNT), (const char *)data + 1, size - 1, &req,
	                  &e) < 0) {
		check_error(&e);
		api_reply_error(&rep, &e);
		if (rep.body == NULL)
			abort();
		free(rep.body);
	} else {
		uint32_t i;
		volatile uint8_t sink = 0;

		/* Touch what ops.c would touch, so ASan sees any bad pointer. */
		for (i = 0; i < req.nrecords; i++) {
			const struct api_put_entry *pe = &req.records[i];
			size_t k;

			for (k = 0; k < pe->data_len; k++)
				sink ^= pe->data[k];
			for (k = 0; k < pe->key_len; k++)
				sink ^= (uint8_t)pe->key[k];
		}
		for (i = 0; i < req.nkeys; i++)
			sink ^= (uint8_t)req.tag_keys[i][0];
		(void)sink;
	}
	api_req_free(&req);

	/* The same bytes as header text, iterator and token. */
	s = malloc(size + 1);
	if (s == NULL)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	if (sigv4_parse_auth(s, &a, &e) < 0)
		check_error(&e);
	{
		const struct api_header h[] = {
		        {"Host", "127.0.0.1:4567"},
		        {"X-Amz-Date", "20240102T030405Z"},
		        {"Authorization", s},
		        {"x-amz-target", s},
		        {"X-Amz-Target", "Kinesis_20131202.ListStreams"},
		};
		struct sigv4_verify_conf vc = {"FIRNDEMOACCESSKEY", "secret", 1704164645000ll};

		if (sigv4_verify(&vc, "POST", "/", s, h, FIRN_ARRAY_SIZE(h), data, size, region,
		                 sizeof(region), &e) == 0)
			abort(); /* a random signature cannot be right */
		check_error(&e);
	}
	if (api_iter_decode(fuzz_key, s, strlen(s), &it) == 0 && it.mode != ITER_MODE_COUNTER &&
	    it.mode != ITER_MODE_TIME)
		abort();
	api_token_decode(fuzz_key, s, strlen(s), &tok);
	b64 = malloc(size / 4 * 3 + 3);
	if (b64 != NULL) {
		n = firn_b64_decode(s, size, b64);
		if (n > (long)(size / 4 * 3 + 3))
			abort();
		free(b64);
	}
	free(s);
}

#ifdef FIRN_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	feed(data, size);
	return 0;
}
#else

struct input {
	uint8_t *p;
	size_t n;
};

static struct input *inputs;
static size_t ninputs, cap;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t
rnd(void)
{
	/* splitmix64: deterministic everywhere. */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void
add_input(const char *path)
{
	char *buf;
	size_t len;

	if (firn_file_read_all(path, &buf, &len) < 0) {
		fprintf(stderr, "api_fuzz: %s: %s\n", path, firn_err_msg());
		exit(1);
	}
	if (ninputs == cap) {
		cap = cap ? cap * 2 : 64;
		inputs = realloc(inputs, cap * sizeof(*inputs));
		if (inputs == NULL)
			exit(1);
	}
	inputs[ninputs].p = (uint8_t *)buf;
	inputs[ninputs].n = len;
	ninputs++;
}

static void
add_path(const char *path)
{
	struct stat st;
	struct dirent *de;
	char sub[4096];
	DIR *d;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "api_fuzz: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (!S_ISDIR(st.st_mode)) {
		add_input(path);
		return;
	}
	d = opendir(path);
	if (d == NULL)
		exit(1);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		add_path(sub);
	}
	closedir(d);
}

/* Fragments that steer mutations into the interesting parts of the grammar. */
static const char *const tokens[] = {
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "null",
        "true",
        "-1",
        "0",
        "1e999",
        "\\u0000",
        "\\ud800",
        "\"Records\"",
        "\"Data\"",
        "\"PartitionKey\"",
        "\"StreamName\"",
        "\"Limit\"",
        "\"ExplicitHashKey\"",
        "\"340282366920938463463374607431768211456\"",
        "\"Timestamp\"",
        "1.5e300",
        "\"ShardFilter\"",
        "\"Type\"",
        "\"StreamARN\"",
        "\"arn:aws:kinesis:r:123456789012:stream/x\"",
        "====",
        "Credential=",
        "SignedHeaders=",
        "Signature=",
        "AWS4-HMAC-SHA256 ",
        "/aws4_request",
        ";",
};

static size_t
mutate(uint8_t *buf, size_t n, size_t cap_, const struct input *other)
{
	unsigned k, rounds = 1 + (unsigned)(rnd() % 4);

	for (k = 0; k < rounds; k++) {
		size_t pos = n ? (size_t)(rnd() % n) : 0;

		switch (rnd() % 6) {
		case 0: /* flip a bit */
			if (n)
				buf[pos] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1: /* set a byte */
			if (n)
				buf[pos] = (uint8_t)rnd();
			break;
		case 2: /* truncate */
			n = pos;
			break;
		case 3: { /* insert a token */
			const char *t = tokens[rnd() % FIRN_ARRAY_SIZE(tokens)];
			size_t tl = strlen(t);

			if (n + tl <= cap_) {
				memmove(buf + pos + tl, buf + pos, n - pos);
				memcpy(buf + pos, t, tl);
				n += tl;
			}
			break;
		}
		case 4: { /* splice the tail of another input */
			size_t from = other->n ? (size_t)(rnd() % other->n) : 0;
			size_t m = FIRN_MIN(other->n - from, cap_ - pos);

			memcpy(buf + pos, other->p + from, m);
			n = pos + m;
			break;
		}
		case 5: /* duplicate a range (deep nesting, long strings) */
			if (n && n * 2 <= cap_) {
				memcpy(buf + n, buf, n);
				n *= 2;
			}
			break;
		}
	}
	return n;
}

int
main(int argc, char **argv)
{
	const char *env_seed = getenv("FIRN_TEST_SEED"), *env_iters = getenv("FIRN_FUZZ_ITERS");
	uint64_t seed = 20240102, iters = 200000, i;
	size_t bufcap = 1u << 16;
	uint8_t *buf = malloc(bufcap);
	int a;

	if (env_seed != NULL && firn_parse_u64(env_seed, &seed) < 0)
		return 2;
	if (env_iters != NULL && firn_parse_u64(env_iters, &iters) < 0)
		return 2;
	for (a = 1; a < argc; a++)
		add_path(argv[a]);
	if (ninputs == 0 || buf == NULL) {
		fprintf(stderr, "usage: api_fuzz CORPUS_DIR|FILE...\n");
		return 2;
	}
	rng_state = seed;
	printf("api_fuzz: %zu corpus inputs, %llu mutations, seed %llu (FIRN_TEST_SEED)\n", ninputs,
	       (unsigned long long)iters, (unsigned long long)seed);
	for (i = 0; i < ninputs; i++)
		feed(inputs[i].p, inputs[i].n);
	for (i = 0; i < iters; i++) {
		const struct input *in = &inputs[rnd() % ninputs];
		size_t n = FIRN_MIN(in->n, bufcap);

		memcpy(buf, in->p, n);
		n = mutate(buf, n, bufcap, &inputs[rnd() % ninputs]);
		feed(buf, n);
	}
	for (i = 0; i < ninputs; i++)
		free(inputs[i].p);
	free(inputs);
	free(buf);
	printf("api_fuzz: ok\n");
	return 0;
}
#endif
