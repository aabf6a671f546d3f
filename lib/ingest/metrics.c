/*
 * metrics.c - the ingest pipeline's counters as Prometheus text.
 *
 * One table maps each field of struct firn_ingest_stats to a metric name,
 * its type and its help line, so adding a counter is one line here. firnd
 * hands firn_ingest_metrics_text() to the HTTP API, which appends it to
 * GET /metrics.
 */
#include <stddef.h>
#include <stdio.h>

#include "firn_common.h"
#include "firn_ingest.h"

struct metric {
	const char *name;
	const char *help;
	bool gauge;
	size_t off;
};

#define C(f, h)                                                                                    \
	{                                                                                          \
		"firn_ingest_" #f "_total", h, false, offsetof(struct firn_ingest_stats, f)        \
	}
#define G(f, h)                                                                                    \
	{                                                                                          \
		"firn_ingest_" #f, h, true, offsetof(struct firn_ingest_stats, f)                  \
	}

static const struct metric metrics[] = {
        C(rx_datagrams, "UDP datagrams received on the data port."),
        C(rx_bytes, "UDP payload bytes received on the data port."),
        C(rx_handshake, "Cleartext datagrams handed to the handshake."),
        C(rx_data, "DATA datagrams that authenticated."),
        C(rx_dropped, "Datagrams dropped: malformed, unauthenticated, replayed, unknown session."),
        C(resets_sent, "RESETs sent for unknown sessions."),
        C(tx_datagrams, "Datagrams sent: acks, credits, handshake answers."),
        C(tx_dropped, "Datagrams that could not be sent (device queue full)."),
        C(records_new, "New records handed to routing."),
        C(records_appended, "Records taken by the store."),
        C(records_acked, "Records acknowledged DURABLE."),
        C(answers, "Duplicate or refusal answers sent."),
        C(bytes_appended, "Record bytes taken by the store."),
        C(refused_pool, "Records refused: no waiting slot (no credit left)."),
        C(refused_busy, "Records refused: shard pending buffer full."),
        C(refused_sealed, "Records refused: shard sealed, no newer route yet."),
        C(refused_nospc, "Records refused: disk full."),
        C(unknown_stream, "Records for a stream that does not exist."),
        C(store_errors, "Other append failures."),
        C(append_calls, "Store append calls (records_appended / append_calls = batch size)."),
        C(durable_msgs, "Durable watermarks received from writers."),
        C(durable_overflow, "Durable hand-off ring overflows (shards polled instead)."),
        C(write_errors, "Durable notifications carrying a write error."),
        C(route_refreshes, "Route tables rebuilt from the catalog."),
        C(seeded, "Dedupe entries rebuilt from the store at start."),
        C(dup_pending, "Duplicates of records still in flight."),
        C(dup_done, "Duplicates answered with the original ack."),
        C(stale, "Records too old for the dedupe window."),
        C(refused_credit, "Records refused for exceeding credit."),
        C(reasm_full, "Fragments refused: reassembly memory full."),
        C(reasm_timeout, "Partial records dropped by the reassembly timeout."),
        C(auth_failed, "Handshakes that failed authentication."),
        C(aead_failed, "Datagrams whose AEAD tag failed."),
        C(replayed, "Datagrams refused by the replay window."),
        C(sessions_opened, "Producer sessions opened."),
        C(sessions_expired, "Producer sessions expired."),
        C(key_hash_cached, "Partition keys whose MD5 came from the cache."),
        C(busy_ns, "Wall nanoseconds of RX agent cycles that did work."),
        C(cpu_ns, "CPU nanoseconds of the RX agent threads."),
        G(sessions, "Live producer sessions."),
        G(waiting, "Records appended whose DURABLE ack is not sent yet."),
        G(waiting_bytes, "Bytes of records waiting for their DURABLE ack."),
};

size_t
firn_ingest_metrics_text(const struct firn_ingest *ing, char *buf, size_t cap)
{
	struct firn_ingest_stats st;
	size_t len = 0, i;

	firn_ingest_stats(ing, &st);
	for (i = 0; i < FIRN_ARRAY_SIZE(metrics); i++) {
		const struct metric *m = &metrics[i];
		uint64_t v = *(const uint64_t *)((const char *)&st + m->off);
		int n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
		                 "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m->name, m->help, m->name,
		                 m->gauge ? "gauge" : "counter", m->name, (unsigned long long)v);

		if (n > 0)
			len += (size_t)n;
	}
	return len;
}
