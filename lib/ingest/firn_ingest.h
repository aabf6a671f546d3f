/*
 * firn_ingest.h - the UDP ingest pipeline: records in, durable, DURABLE acks out.
 *
 * What. firnd's data path between a data-port driver (lib/net: DPDK or
 * kernel sockets) and the store. An RX agent polls one queue of the port,
 * runs every datagram through lib/proto (handshake, AEAD, replay window,
 * dedupe, credit, reassembly), routes each new record to the open shard
 * that owns its hash key, and appends it to the store; the one copy between
 * the NIC buffer and the store's pending buffer is the store's own. When a
 * writer thread tells the store's on_durable hook that a shard's watermark
 * moved, the message crosses to the RX agent over a lock-free SPSC ring per
 * (writer, agent) pair, and the agent answers each record now on stable
 * storage with its (shard, counter) in an ACK_DURABLE entry. doc/ingest.md
 * tells the whole story.
 *
 * Several RX agents. conf.rx_agents agents each poll their own queue of
 * the port (RSS or SO_REUSEPORT spreads datagrams over the queues by
 * 4-tuple). lib/proto's producer table (each producer's dedupe window and
 * credit) belongs to one thread, and exactly-once needs every datagram of a
 * producer handled by the same one, whichever queue it arrived on and
 * whichever source port the producer uses after a restart. So a producer
 * is owned by agent hash(producer id) % rx_agents: an INIT is steered by
 * the producer id it carries in clear, a session's id names the agent that
 * minted it (firn_proto_session_tag), and a datagram that arrived on
 * another agent's queue crosses to its owner over an SPSC ring per (agent,
 * agent) pair, buffer and all (no copy). HELLOs are answered where they
 * land (stateless; the cookie secret is shared).
 *
 * Use (firnd):
 *
 *	struct firn_ingest_conf ic;
 *	firn_ingest_conf_defaults(&ic);
 *	ic.catalog = cat; ic.writers = sc.writers;
 *	ic.access_key_id = ...; ic.secret_access_key = ...;
 *	firn_ingest_cookie_secret(kek, cookie); ic.cookie_secret = cookie;
 *	struct firn_ingest *ing = firn_ingest_create(&ic);
 *	firn_ingest_store_hook(ing, &sc);          // sc.on_durable = ...
 *	st = firn_store_open(&sc);
 *	port = ops->open(&nc);
 *	firn_ingest_start(ing, st, ops, port);     // seeds dedupe, starts the agent
 *	...SIGTERM:
 *	firn_ingest_stop_rx(ing);                  // no new datagrams
 *	firn_ingest_drain(ing, 10000);             // flush store, every ack sent
 *	firn_ingest_stop(ing);                     // join the agent
 *	ops->close(port); firn_store_close(st); firn_ingest_destroy(ing);
 *
 * Tests set conf.threaded = false and call firn_ingest_do_work() and
 * firn_store_do_work() on one thread.
 *
 * Thread safety: create/start/stop/drain/destroy from one control thread;
 * firn_ingest_on_durable() from the store's writer threads (shard s always
 * from writer s % writers, as lib/store promises); firn_ingest_stats() from
 * any thread.
 */
#ifndef FIRN_INGEST_H
#define FIRN_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firn_net.h"
#include "firn_store.h"
#include "firn_stream.h"

#ifdef __cplusplus
extern "C" {
#endif

struct firn_ingest_conf {
	struct firn_catalog *catalog; /* stream names and shard ranges */
	unsigned writers;             /* the store's conf.writers (one durable ring each) */
	/* Producers authenticate with the API's key pair. */
	const char *access_key_id;
	const char *secret_access_key;
	/* 32 bytes from firn_ingest_cookie_secret(); NULL: random (RESETs die with us). */
	const uint8_t *cookie_secret;
	/* lib/proto's tables (doc/protocol.md §12); 0 keeps lib/proto's default. */
	unsigned max_sessions;
	unsigned max_producers;
	unsigned dedupe_window; /* W, a power of two */
	uint32_t dedupe_horizon_s;
	size_t reasm_pool_bytes;
	/*
	 * The pipeline's own bounds. max_waiting records (and max_waiting_bytes
	 * of their data) may be appended and not yet durable at once: each has
	 * a preallocated entry that remembers whom to ack. Credit is granted
	 * from what is left, and stops when nothing is.
	 */
	unsigned max_waiting;       /* default 65536 */
	uint64_t max_waiting_bytes; /* default 256 MiB */
	unsigned max_shards;        /* shards with records waiting at once; default 4096 */
	uint64_t shard_pending_max; /* the store's; a session's window is at most half */
	uint32_t credit_window;     /* a session's byte window at most; default 4 MiB */
	/* Restart: records per shard read back to rebuild the dedupe windows. */
	unsigned seed_records; /* default 64 * dedupe_window */
	unsigned burst;        /* datagrams per rx_burst; default 32, at most 256 */
	unsigned rx_agents;    /* RX agents = the port's rx queues; default 1, at most 16 */
	bool threaded;         /* run the agent on its own thread (false: tests) */
	uint32_t idle_max_us;  /* longest idle sleep of the agent; default 200 */
};

void firn_ingest_conf_defaults(struct firn_ingest_conf *c);

/*
 * The cookie secret of doc/protocol.md §3.2: HKDF-SHA256 of the key-
 * encryption key with the label "firn1 cookie secret", so cookies and RESET
 * tokens stay valid across a restart. 0 or -EIO.
 */
int firn_ingest_cookie_secret(const uint8_t kek[32], uint8_t out[32]);

struct firn_ingest;

/* Allocate every table and ring. NULL with the reason in the error chain. */
struct firn_ingest *firn_ingest_create(const struct firn_ingest_conf *conf);

/* Point the store's on_durable hook at this pipeline (before firn_store_open). */
void firn_ingest_store_hook(struct firn_ingest *ing, struct firn_store_conf *sc);

/*
 * The store's on_durable hook (firn_store_durable_fn): hands the watermark
 * to the RX agents over the writer's SPSC rings and wakes them. Never
 * blocks; a full ring sets a flag that makes the agent poll its shards.
 */
void firn_ingest_on_durable(void *arg, uint64_t stream_id, uint32_t shard, uint64_t durable_next,
                            int status);

/*
 * Create the protocol server (max_dgram from the port), rebuild the dedupe
 * windows from the store's recent records (doc/protocol.md §8.3), and start
 * the agent (threaded) or get it ready for firn_ingest_do_work(). The port
 * must be open; no datagram is read before the seeding is done.
 * 0 or -errno (error chain).
 */
int firn_ingest_start(struct firn_ingest *ing, struct firn_store *st,
                      const struct firn_net_ops *ops, struct firn_net_port *port);

/* One duty cycle of every agent (conf.threaded = false). Returns work done. */
int firn_ingest_do_work(struct firn_ingest *ing);

/* Stop reading datagrams; acks, credits and RESETs still go out. */
void firn_ingest_stop_rx(struct firn_ingest *ing);

/*
 * After firn_ingest_stop_rx(): ask the store to flush and wait until every
 * appended record got its DURABLE ack sent (or timeout_ms). 0 or -ETIMEDOUT.
 */
int firn_ingest_drain(struct firn_ingest *ing, int timeout_ms);

/* Stop and join the agents (the port stays open). Idempotent. */
void firn_ingest_stop(struct firn_ingest *ing);

/* Stop if needed and free everything. NULL is fine. */
void firn_ingest_destroy(struct firn_ingest *ing);

/*
 * Counters, summed over agents (each agent writes its own cache line; the
 * sum is a relaxed snapshot). Gauges are marked.
 */
struct firn_ingest_stats {
	/* datagrams */
	uint64_t rx_datagrams, rx_bytes;
	uint64_t rx_handshake;    /* cleartext datagrams handed to the handshake */
	uint64_t rx_data;         /* DATA datagrams that authenticated */
	uint64_t rx_dropped;      /* malformed, unauthenticated, replayed, unknown session */
	uint64_t handoffs;        /* datagrams passed to the agent that owns their producer */
	uint64_t handoff_dropped; /* ... dropped because that agent's inbox was full */
	uint64_t resets_sent;     /* RESET for an unknown session */
	uint64_t tx_datagrams;    /* acks, credits, handshake answers sent */
	uint64_t tx_dropped;      /* could not be sent (device queue full) */
	/* records */
	uint64_t records_new;      /* new records handed to routing */
	uint64_t records_appended; /* taken by the store */
	uint64_t records_acked;    /* DURABLE OK sent (or owed to a closed session) */
	uint64_t answers;          /* duplicate / refusal entries sent */
	uint64_t bytes_appended;
	uint64_t refused_pool;   /* no waiting entry or shard slot: no credit left */
	uint64_t refused_busy;   /* store -EAGAIN: shard pending buffer full */
	uint64_t refused_sealed; /* shard sealed and no newer route yet */
	uint64_t refused_nospc;  /* disk full: INTERNAL to the producer */
	uint64_t unknown_stream; /* the stream was gone at append time */
	uint64_t store_errors;   /* other append failures */
	uint64_t append_calls;   /* firn_store_append() calls (records / calls = batch) */
	/* durable hand-off */
	uint64_t durable_msgs;     /* watermarks received from writers */
	uint64_t durable_overflow; /* a ring was full: shards were polled instead */
	uint64_t write_errors;     /* on_durable with status < 0 */
	uint64_t route_refreshes;  /* route tables rebuilt from the catalog */
	uint64_t seeded;           /* dedupe entries rebuilt at start */
	/* protocol (lib/proto's counters, published about every 100 ms) */
	uint64_t dup_pending, dup_done, stale, refused_credit, reasm_full, reasm_timeout;
	uint64_t auth_failed, aead_failed, replayed;
	uint64_t sessions_opened, sessions_expired;
	uint64_t key_hash_cached; /* partition keys whose MD5 came from the agent's cache */
	/* time */
	uint64_t busy_ns; /* wall time of the agent's cycles that did work */
	uint64_t cpu_ns;  /* the agent threads' CPU time (sampled every ~100 ms) */
	/* gauges */
	uint64_t sessions; /* live sessions */
	uint64_t waiting;  /* records appended, ack not sent yet */
	uint64_t waiting_bytes;
};

void firn_ingest_stats(const struct firn_ingest *ing, struct firn_ingest_stats *out);

/*
 * The stats above as Prometheus text (firn_ingest_*), for GET /metrics.
 * Writes at most cap bytes (NUL-terminated when it fits) and returns the
 * length it wanted, like snprintf. The signature matches the API's
 * metrics_extra hook once the pointer is cast from const void *.
 */
size_t firn_ingest_metrics_text(const struct firn_ingest *ing, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_INGEST_H */
