/*
 * ingest_perf.c - what the RX agent costs per record, without a network.
 *
 * Not a test (built, not run by meson test): the same bench as the unit
 * tests (ingest_fake.h: a NIC made of memory, the real store in a scratch
 * directory under /var/tmp, a producer speaking lib/proto), with the
 * producer's datagrams sealed ahead of time so only the appliance side is
 * timed. Two phases per round, timed separately around
 * firn_ingest_do_work() only (the store's writers run in between, untimed):
 *
 *   rx    open + decrypt each datagram, walk its records through dedupe and
 *         credit, route (MD5 or the key cache), batch, firn_store_append()
 *   ack   take the writers' watermarks off the rings, mark each record done,
 *         queue and seal the ACK_DURABLE datagrams, tx_burst
 *
 * and prints the thread's CPU time per record for each (so a busy machine
 * preempting us does not inflate it), and cycles per record at the TSC rate
 * measured over the run:
 *
 *	ingest_perf [--records N] [--size B] [--keys K|unique] [--dgram BYTES]
 *	rx_ns_per_record=.. ack_ns_per_record=.. total_ns_per_record=.. cycles_per_record=..
 *
 * Defaults: 1,000,000 records of 100 B, 1000 distinct keys, 8972-byte
 * datagrams (66 records each), 4 shards, compression and encryption on in
 * the store (which is not timed).
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include <cmocka.h>

#include "ingest_fake.h"

/* This thread's CPU time: other processes preempting us do not count. */
static uint64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t
tsc(void)
{
#if defined(__x86_64__)
	return __rdtsc();
#else
	return 0;
#endif
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
	        {"records", 1, NULL, 'n'}, {"size", 1, NULL, 's'}, {"keys", 1, NULL, 'k'},
	        {"dgram", 1, NULL, 'd'},   {NULL, 0, NULL, 0},
	};
	uint64_t n = 1000000, size = 100, keys = 1000, dgram = 8972, v;
	uint64_t rx_ns = 0, ack_ns = 0, done = 0, seq = 1, wall0, tsc0;
	double ghz;
	struct firn_ingest_conf ic;
	struct firn_ingest_stats st;
	struct bench *b;
	void *state;
	struct tp *t;
	bool unique = false;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'k' && strcmp(optarg, "unique") == 0) {
			unique = true;
			continue;
		}
		if (firn_parse_u64(optarg, &v) < 0) {
			fprintf(stderr, "bad number '%s'\n", optarg);
			return 2;
		}
		if (c == 'n')
			n = v;
		else if (c == 's')
			size = v;
		else if (c == 'k')
			keys = v;
		else if (c == 'd')
			dgram = v;
		else
			return 2;
	}
	firn_log_set_level(FIRN_LOG_WARN);
	if (bench_setup(&state) < 0) {
		printf("SKIP: no O_DIRECT scratch directory under /var/tmp\n");
		return 77;
	}
	b = state;
	firn_ingest_conf_defaults(&ic);
	ic.max_sessions = 4;
	ic.max_producers = 4;
	ic.max_waiting = 1u << 20;
	ic.max_waiting_bytes = 1ull << 30;
	ic.shard_pending_max = 64ull << 20;
	ic.credit_window = 64u << 20;
	/* a round is up to 32768 records in flight from one producer: W/2 must cover it */
	ic.dedupe_window = 65536;
	bench_start(b, &ic);
	b->port->max_payload = (uint32_t)dgram;
	firn_catalog_create(b->cat, "perf", 4, NULL);
	t = tp_new(b, 0x9e3779b97f4a7c15ull, 40100, (uint16_t)dgram);
	tp_connect(b, t);

	wall0 = firn_mono_ns();
	tsc0 = tsc();
	while (done < n) {
		/* A round: as many datagrams as the fake NIC's FIFO holds, sealed ahead. */
		static struct trec recs[32768];
		static char keybuf[32768][24];
		unsigned k = 0;
		uint64_t t0;

		/* bounded so the FIFO never fills (tp_send would pump, untimed) */
		while (k < 32768 && done + k < n && (k + 1) * (size + 24) < 1500 * (dgram - 64)) {
			uint64_t key = unique ? seq : seq % keys;

			snprintf(keybuf[k], sizeof(keybuf[k]), "key-%llu", (unsigned long long)key);
			recs[k].seq = seq++;
			recs[k].key = keybuf[k];
			recs[k].len = (uint32_t)size;
			k++;
		}
		/* tp_send seals and queues; its pumps (if the FIFO fills) are not timed */
		tp_send(b, t, recs, k, "perf");
		t0 = cpu_ns();
		while (fake_rx_pending(b->port) > 0)
			firn_ingest_do_work(b->ing);
		rx_ns += cpu_ns() - t0;
		/* the writers make it durable (untimed) */
		for (int r = 0; r < 50; r++) {
			firn_store_flush(b->st);
			firn_store_do_work(b->st);
		}
		t0 = cpu_ns();
		for (int r = 0; r < 8; r++)
			firn_ingest_do_work(b->ing);
		ack_ns += cpu_ns() - t0;
		bench_deliver(b);
		done += k;
		/* everything of the round answered before the next (the pumps are untimed) */
		for (uint64_t until = firn_mono_ns() + 10000000000ull; firn_mono_ns() < until;) {
			firn_ingest_stats(b->ing, &st);
			if (st.records_acked >= done)
				break;
			bench_pump(b, 1, true);
		}
		if (st.records_acked < done || st.records_appended != done) {
			fprintf(stderr,
			        "after %llu records: appended %llu acked %llu refused credit %llu "
			        "pool %llu busy %llu dropped %llu\n",
			        (unsigned long long)done, (unsigned long long)st.records_appended,
			        (unsigned long long)st.records_acked,
			        (unsigned long long)st.refused_credit,
			        (unsigned long long)st.refused_pool,
			        (unsigned long long)st.refused_busy,
			        (unsigned long long)st.rx_dropped);
			bench_teardown(&state);
			return 1;
		}
	}
	ghz = (double)(tsc() - tsc0) / (double)(firn_mono_ns() - wall0);
	firn_ingest_stats(b->ing, &st);
	printf("records=%llu size=%llu keys=%s dgram=%llu appended=%llu acked=%llu "
	       "append_calls=%llu key_hash_cached=%llu\n",
	       (unsigned long long)n, (unsigned long long)size, unique ? "unique" : "shared",
	       (unsigned long long)dgram, (unsigned long long)st.records_appended,
	       (unsigned long long)st.records_acked, (unsigned long long)st.append_calls,
	       (unsigned long long)st.key_hash_cached);
	printf("rx_ns_per_record=%.1f ack_ns_per_record=%.1f total_ns_per_record=%.1f "
	       "cycles_per_record=%.0f (rx %.0f + ack %.0f at %.2f GHz)\n",
	       (double)rx_ns / (double)n, (double)ack_ns / (double)n,
	       (double)(rx_ns + ack_ns) / (double)n, (double)(rx_ns + ack_ns) * ghz / (double)n,
	       (double)rx_ns * ghz / (double)n, (double)ack_ns * ghz / (double)n, ghz);
	bench_teardown(&state);
	return 0;
}
