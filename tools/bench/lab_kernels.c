/*
 * lab_kernels.c - the raw CPU references of tools/bench/lab.sh: how fast
 * this CPU runs the kernels firn's writer is built from, one core, no firn
 * code in between.
 *
 *	lab_kernels [--secs S] [--buf BYTES]
 *
 * Each kernel runs back to back over one buffer (default 1 MiB, the size
 * of a store block) for --secs seconds (default 0.5) and reports MB/s of
 * input:
 *
 *	deflate_log_MBps     ISA-L igzip level 1, JSON-like log lines (compress ~4x)
 *	deflate_rand_MBps    ISA-L igzip level 1, incompressible bytes
 *	crc32c_MBps          ISA-L crc32_iscsi
 *	ec_3p2_MBps          ISA-L ec_encode_data, Cauchy, k=3 data + 2 parity
 *	                     (MB/s of data fragments encoded)
 *	aes256gcm_MBps       OpenSSL EVP AES-256-GCM encrypt + tag (AES-NI)
 *
 * as one line of key=value pairs on stdout. The input is lib/bench's
 * generated data with a fixed seed, so runs are comparable. Not a test:
 * nothing is asserted; lab.sh turns the numbers into firn/raw ratios.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>
#include <isa-l/igzip_lib.h>
#include <openssl/evp.h>

#include "firn_bench.h"
#include "firn_common.h"

static double secs = 0.5;
static size_t buf_len = 1u << 20;
static volatile uint64_t sink; /* keeps results alive */

/* Run fn over the buffer until secs have passed; MB/s of input bytes. */
static double
timed(int (*fn)(const uint8_t *, size_t, void *), const uint8_t *in, size_t len, void *ctx)
{
	uint64_t t0 = firn_mono_ns(), t, bytes = 0;

	if (fn(in, len, ctx) < 0) /* warm the caches and the code */
		return -1;
	do {
		if (fn(in, len, ctx) < 0)
			return -1;
		bytes += len;
		t = firn_mono_ns();
	} while (t - t0 < (uint64_t)(secs * 1e9));
	return (double)bytes / 1e6 / ((double)(t - t0) / 1e9);
}

struct defl_ctx {
	uint8_t *out, *level_buf;
	size_t out_len;
};

static int
k_deflate(const uint8_t *in, size_t len, void *arg)
{
	struct defl_ctx *d = arg;
	struct isal_zstream zs;

	isal_deflate_stateless_init(&zs);
	zs.level = 1;
	zs.level_buf = d->level_buf;
	zs.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
	zs.next_in = (uint8_t *)(uintptr_t)in;
	zs.avail_in = (uint32_t)len;
	zs.next_out = d->out;
	zs.avail_out = (uint32_t)d->out_len;
	zs.end_of_stream = 1;
	zs.flush = NO_FLUSH;
	if (isal_deflate_stateless(&zs) != COMP_OK)
		return -EIO;
	sink += zs.total_out;
	return 0;
}

static int
k_crc(const uint8_t *in, size_t len, void *arg)
{
	(void)arg;
	sink += crc32_iscsi((unsigned char *)(uintptr_t)in, (int)len, ~0u);
	return 0;
}

struct ec_ctx {
	unsigned k, p;
	uint8_t *tables;
	uint8_t *parity[2];
};

static int
k_ec(const uint8_t *in, size_t len, void *arg)
{
	struct ec_ctx *e = arg;
	size_t frag = len / e->k;
	uint8_t *data[3];

	for (unsigned i = 0; i < e->k; i++)
		data[i] = (uint8_t *)(uintptr_t)in + i * frag;
	ec_encode_data((int)frag, (int)e->k, (int)e->p, e->tables, data, e->parity);
	sink += e->parity[1][0];
	return 0;
}

struct gcm_ctx {
	EVP_CIPHER_CTX *ctx;
	uint8_t key[32], iv[12], tag[16];
	uint8_t *out;
};

static int
k_gcm(const uint8_t *in, size_t len, void *arg)
{
	struct gcm_ctx *g = arg;
	int n = 0, m = 0;

	g->iv[0]++;
	if (EVP_EncryptInit_ex(g->ctx, NULL, NULL, g->key, g->iv) != 1 ||
	    EVP_EncryptUpdate(g->ctx, g->out, &n, in, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(g->ctx, g->out + n, &m) != 1 ||
	    EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, 16, g->tag) != 1)
		return -EIO;
	sink += g->tag[0];
	return 0;
}

int
main(int argc, char **argv)
{
	struct firn_rng rng;
	uint8_t *logd, *rnd, a[5 * 3];
	struct defl_ctx d;
	struct ec_ctx e = {.k = 3, .p = 2};
	struct gcm_ctx g = {0};
	double v[6];

	for (int i = 1; i < argc; i++) {
		uint64_t u;
		char *end;

		if (strcmp(argv[i], "--secs") == 0 && i + 1 < argc) {
			secs = strtod(argv[++i], &end);
			if (*end != '\0' || !(secs > 0) || secs > 60)
				goto usage;
		} else if (strcmp(argv[i], "--buf") == 0 && i + 1 < argc) {
			if (firn_parse_u64(argv[++i], &u) < 0 || u < 4096 || u > (64u << 20))
				goto usage;
			buf_len = (size_t)u / 3 * 3;
		} else {
			goto usage;
		}
	}
	logd = malloc(buf_len);
	rnd = malloc(buf_len);
	d.out_len = buf_len + buf_len / 8 + 1024;
	d.out = malloc(d.out_len);
	d.level_buf = malloc(ISAL_DEF_LVL1_DEFAULT);
	e.tables = malloc(32 * 3 * 2);
	e.parity[0] = malloc(buf_len / 3);
	e.parity[1] = malloc(buf_len / 3);
	g.out = malloc(buf_len + 16);
	g.ctx = EVP_CIPHER_CTX_new();
	if (!logd || !rnd || !d.out || !d.level_buf || !e.tables || !e.parity[0] || !e.parity[1] ||
	    !g.out || !g.ctx) {
		fprintf(stderr, "lab_kernels: out of memory\n");
		return 1;
	}
	firn_rng_seed(&rng, 42);
	firn_data_fill(FIRN_DATA_LOG, &rng, logd, buf_len);
	firn_data_fill(FIRN_DATA_RANDOM, &rng, rnd, buf_len);
	memset(g.key, 0x42, sizeof(g.key));
	if (EVP_EncryptInit_ex(g.ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1)
		return 1;
	/* The Cauchy matrix firn's stripes use: k data rows then p parity rows. */
	gf_gen_cauchy1_matrix(a, 5, 3);
	ec_init_tables(3, 2, &a[3 * 3], e.tables);

	v[0] = timed(k_deflate, logd, buf_len, &d);
	v[1] = timed(k_deflate, rnd, buf_len, &d);
	v[2] = timed(k_crc, rnd, buf_len, NULL);
	v[3] = timed(k_ec, rnd, buf_len, &e);
	v[4] = timed(k_gcm, rnd, buf_len, &g);
	for (int i = 0; i < 5; i++)
		if (v[i] < 0) {
			fprintf(stderr, "lab_kernels: kernel %d failed\n", i);
			return 1;
		}
	printf("deflate_log_MBps=%.1f deflate_rand_MBps=%.1f crc32c_MBps=%.1f ec_3p2_MBps=%.1f "
	       "aes256gcm_MBps=%.1f buf=%zu\n",
	       v[0], v[1], v[2], v[3], v[4], buf_len);
	EVP_CIPHER_CTX_free(g.ctx);
	free(logd);
	free(rnd);
	free(d.out);
	free(d.level_buf);
	free(e.tables);
	free(e.parity[0]);
	free(e.parity[1]);
	free(g.out);
	return 0;
usage:
	fprintf(stderr, "usage: lab_kernels [--secs 0..60] [--buf 4096..64M]\n");
	return 2;
}
