/*
 * perf_route.c - how fast the per-record model functions are: MD5 hash key,
 * route to a shard, sequence number format and parse. These run once per
 * record on the RX path (hash, route) and the read path (seq), so they are
 * worth a number. Not a test: prints ns/op; run via `meson test --benchmark`
 * or directly: perf_route [records] [shards].
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_common.h"
#include "firn_stream.h"

static double
ns_per(uint64_t t0, uint64_t n)
{
	return (double)(firn_mono_ns() - t0) / (double)n;
}

int
main(int argc, char **argv)
{
	uint64_t n = 2000000, nshards = 1000, t0, sink = 0;
	char dir[] = "/tmp/firn-perf-XXXXXX", key[32], seq[FIRN_U128_DEC_SIZE];
	struct firn_stream_info *s = NULL;
	struct firn_catalog *c;
	struct firn_u128 h;
	uint32_t shard;
	uint64_t ctr;

	if ((argc > 1 && firn_parse_u64(argv[1], &n) < 0) ||
	    (argc > 2 && (firn_parse_u64(argv[2], &nshards) < 0 || nshards == 0 ||
	                  nshards > FIRN_SHARDS_MAX))) {
		fprintf(stderr, "usage: perf_route [records] [shards 1..%u]\n", FIRN_SHARDS_MAX);
		return 1;
	}
	if (mkdtemp(dir) == NULL || (c = firn_catalog_open(dir)) == NULL ||
	    firn_catalog_create(c, "perf", (uint32_t)nshards, NULL) < 0 ||
	    firn_catalog_get(c, "perf", &s) < 0) {
		fprintf(stderr, "perf_route: setup: %s\n", firn_err_msg());
		return 1;
	}

	t0 = firn_mono_ns();
	for (uint64_t i = 0; i < n; i++) {
		int len = snprintf(key, sizeof(key), "user-%llu", (unsigned long long)i);

		firn_hash_key(key, (size_t)len, &h);
		sink += h.lo;
	}
	printf("hash_key (incl. snprintf of the key): %6.1f ns/op\n", ns_per(t0, n));

	t0 = firn_mono_ns();
	for (uint64_t i = 0; i < n; i++) {
		h.hi = i * 0x9e3779b97f4a7c15ull;
		h.lo = i;
		firn_stream_route(s, h, &shard);
		sink += shard;
	}
	printf("route over %llu open shards:          %6.1f ns/op\n", (unsigned long long)nshards,
	       ns_per(t0, n));

	t0 = firn_mono_ns();
	for (uint64_t i = 0; i < n; i++) {
		firn_seq_format((uint32_t)(i & 1023), i, seq);
		sink += (uint8_t)seq[38];
	}
	printf("seq_format:                            %6.1f ns/op\n", ns_per(t0, n));

	t0 = firn_mono_ns();
	for (uint64_t i = 0; i < n; i++) {
		firn_seq_parse(seq, FIRN_SEQ_DEC_LEN, &shard, &ctr);
		sink += ctr;
	}
	printf("seq_parse:                             %6.1f ns/op\n", ns_per(t0, n));
	printf("(checksum %llu)\n", (unsigned long long)sink);

	firn_stream_info_free(s);
	firn_catalog_close(c);
	firn_rm_rf(dir);
	return 0;
}
