/*
 * metrics.c - the ingest pipeline's counters as Prometheus text.
 *
 * One table maps each field of struct firn_ingest_stats to a metric name,
 * its type and its help line, so adding a counter is one line here. firnd
 * hands firn_ingest_metrics_text() to the HTTP API, which appends it to
 * GET /metrics. The totals are summed over the RX agents; a few of them
 * are also given per agent (label agent="i", one per RX lcore), which is
 * how an operator sees whether RSS spreads the load.
 */
#include <stddef.h>
#include <stdio.h>

#include "firn_common.h"
#include "firn_ingest.h"
#include "ingest_internal.h"

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
        C(handoffs, "Datagrams passed to the RX agent that owns their producer."),
        C(handoff_dropped, "Datagrams dropped because the owning agent's inbox was full."),
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

#define A(f, h)                                                                                    \
	{                                                                                          \
		"firn_ingest_agent_" #f "_total", h, false, offsetof(struct firn_ingest_stats, f)  \
	}

static const struct metric per_agent[] = {
        A(rx_datagrams, "UDP datagrams received on this RX agent's queue."),
        A(handoffs, "Datagrams this RX agent passed to the owner of their producer."),
        A(records_new, "New records this RX agent routed (its own producers)."),
        A(cpu_ns, "CPU nanoseconds of this RX agent's thread."),
        A(busy_ns, "Wall nanoseconds of this RX agent's cycles that did work."),
};

/* snprintf-style accounting: len grows by what each line wanted. */
static void
add(size_t *len, int n)
{
	if (n > 0)
		*len += (size_t)n;
}

size_t
firn_ingest_metrics_text(const struct firn_ingest *ing, char *buf, size_t cap)
{
	struct firn_ingest_stats st;
	size_t len = 0, i;

	firn_ingest_stats(ing, &st);
	for (i = 0; i < FIRN_ARRAY_SIZE(metrics); i++) {
		const struct metric *m = &metrics[i];
		uint64_t v = *(const uint64_t *)((const char *)&st + m->off);

		add(&len,
		    snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
		             "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m->name, m->help, m->name,
		             m->gauge ? "gauge" : "counter", m->name, (unsigned long long)v));
	}
	for (i = 0; i < FIRN_ARRAY_SIZE(per_agent); i++) {
		const struct metric *m = &per_agent[i];

		add(&len, snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
		                   "# HELP %s %s\n# TYPE %s counter\n", m->name, m->help, m->name));
		for (unsigned k = 0; k < ing->n_agents; k++) {
			/* Pairs with the agent's relaxed CTR_ADD/CTR_SET stores. */
			uint64_t v = __atomic_load_n(
			        (const uint64_t *)((const char *)&ing->ctrs[k].s + m->off),
			        __ATOMIC_RELAXED);

			add(&len,
			    snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
			             "%s{agent=\"%u\"} %llu\n", m->name, k, (unsigned long long)v));
		}
	}
	return len;
}
