/*
 * ingest_internal.h - lib/ingest's private structures.
 *
 * The public header keeps struct firn_ingest opaque; the layouts live here
 * so the library's .c files and its unit tests (which include the .c files)
 * share them. Nothing outside lib/ingest and tests/unit/ingest includes it.
 *
 * Who touches what. Everything in struct ingest_agent belongs to the
 * agent's thread, except: the rings (a writer thread is the producer of
 * each), the counters (read by firn_ingest_stats() from any thread), and
 * the few fields marked "published", which the control thread reads while
 * draining. Each of those is an atomic with its pair named.
 */
#ifndef FIRN_INGEST_INTERNAL_H
#define FIRN_INGEST_INTERNAL_H

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>

#include "firn_common.h"
#include "firn_ingest.h"
#include "firn_proto.h"

#define INGEST_LOG "ingest"
#define INGEST_NIL UINT32_MAX
#define INGEST_MAX_AGENTS 16
/* Datagrams in flight from one agent to another (their buffers are held). */
#define INGEST_HANDOFF_SIZE 1024
#define INGEST_BURST_MAX 256
/* Records gathered from one burst before they go to the store. */
#define INGEST_BATCH 1024
/* Datagrams staged for one tx_burst. */
#define INGEST_TX_STAGE 64
/* Watermarks taken from one ring per cycle (bounded work per duty cycle). */
#define INGEST_RING_POP_MAX 1024
#define INGEST_RING_SIZE 4096
#define INGEST_TICK_MS 100
#define INGEST_SWEEP_MS 500
/* A shard whose waiting records made no progress this long is polled. */
#define INGEST_STUCK_MS 1000

/* ---- the durable hand-off: one SPSC ring per (writer, agent) --------------------- */

/* A shard's durable watermark, as on_durable reported it. */
struct ingest_dmsg {
	uint64_t stream_id;
	uint64_t durable_next;
	uint32_t shard;
	int32_t status;
};

/*
 * Single producer (the writer thread that owns the shards s % writers == w),
 * single consumer (the agent). Aeron/DPDK style: the producer's and the
 * consumer's indexes sit on separate cache lines, and each side keeps a
 * private copy of the other's index so it touches the shared line only when
 * its copy says the ring is full (or empty).
 *
 * Ordering: the producer writes the slot, then publishes tail with a
 * release store; the consumer's acquire load of tail makes the slot visible.
 * The consumer reads the slot, then publishes head with a release store; the
 * producer's acquire load of head means the slot is free to overwrite.
 */
struct ingest_ring {
	/* producer line */
	uint32_t tail FIRN_CACHE_ALIGNED; /* next slot to write; release-stored by the producer */
	uint32_t head_cache;              /* producer's last view of head */
	/* consumer line */
	uint32_t head FIRN_CACHE_ALIGNED; /* next slot to read; release-stored by the consumer */
	uint32_t tail_cache;              /* consumer's last view of tail */
	/* a push found the ring full: the consumer must poll every shard */
	int overflow FIRN_CACHE_ALIGNED;
	uint32_t mask;
	struct ingest_dmsg *slots;
};

static inline int
ingest_ring_push(struct ingest_ring *r, const struct ingest_dmsg *m)
{
	uint32_t t = r->tail; /* only this thread writes tail */

	if (t - r->head_cache > r->mask) {
		/* Pairs with the release store of head in ingest_ring_pop(). */
		r->head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		if (t - r->head_cache > r->mask)
			return -ENOBUFS;
	}
	r->slots[t & r->mask] = *m;
	/* Pairs with the acquire load of tail in ingest_ring_pop(): the slot first. */
	__atomic_store_n(&r->tail, t + 1, __ATOMIC_RELEASE);
	return 0;
}

static inline int
ingest_ring_pop(struct ingest_ring *r, struct ingest_dmsg *m)
{
	uint32_t h = r->head; /* only this thread writes head */

	if (h == r->tail_cache) {
		/* Pairs with the release store of tail in ingest_ring_push(). */
		r->tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		if (h == r->tail_cache)
			return 0;
	}
	*m = r->slots[h & r->mask];
	/* Pairs with the acquire load of head in ingest_ring_push(): read before freeing. */
	__atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);
	return 1;
}

/*
 * The hand-off of a datagram to the agent that owns its producer: one SPSC
 * ring per (from, to) pair of agents, the same discipline as ingest_ring
 * (producer and consumer lines apart, each side caching the other's index,
 * release store to publish, acquire load to read). The slot carries the
 * driver's descriptor, so the buffer itself crosses without a copy and the
 * owner releases it.
 */
struct ingest_hring {
	uint32_t tail FIRN_CACHE_ALIGNED; /* release-stored by the sending agent */
	uint32_t head_cache;
	uint32_t head FIRN_CACHE_ALIGNED; /* release-stored by the owning agent */
	uint32_t tail_cache;
	struct firn_net_dgram slots[INGEST_HANDOFF_SIZE];
};

static inline bool
ingest_hring_push(struct ingest_hring *r, const struct firn_net_dgram *d)
{
	uint32_t t = r->tail; /* only the sender writes tail */

	if (t - r->head_cache >= INGEST_HANDOFF_SIZE) {
		/* Pairs with the release store of head in ingest_hring_pop(). */
		r->head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		if (t - r->head_cache >= INGEST_HANDOFF_SIZE)
			return false;
	}
	r->slots[t & (INGEST_HANDOFF_SIZE - 1)] = *d;
	/* Pairs with the acquire load of tail in ingest_hring_pop(): the slot first. */
	__atomic_store_n(&r->tail, t + 1, __ATOMIC_RELEASE);
	return true;
}

static inline bool
ingest_hring_pop(struct ingest_hring *r, struct firn_net_dgram *d)
{
	uint32_t h = r->head; /* only the owner writes head */

	if (h == r->tail_cache) {
		/* Pairs with the release store of tail in ingest_hring_push(). */
		r->tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		if (h == r->tail_cache)
			return false;
	}
	*d = r->slots[h & (INGEST_HANDOFF_SIZE - 1)];
	/* Pairs with the acquire load of head in ingest_hring_push(): read before freeing. */
	__atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);
	return true;
}

/* ---- records waiting for durability -------------------------------------------------- */

/* One appended record whose DURABLE ack is owed. Preallocated pool, FIFO per shard. */
struct ingest_wait {
	struct firn_proto_producer *p; /* pinned: lib/proto never evicts a producer with pending */
	uint64_t seq;
	uint64_t counter;
	uint32_t len;
	uint32_t next; /* next in the shard's FIFO, or in the free list */
};

/* A shard with records waiting (or in this burst's batch). Slab entry. */
struct ingest_shard {
	uint64_t stream_id;
	uint32_t shard;
	uint32_t head, tail; /* FIFO of waits, ascending counters */
	uint32_t n;
	uint64_t bytes;
	uint64_t progress_ms;  /* last time the FIFO moved */
	uint64_t durable_seen; /* highest watermark heard (acks may lag it: TX full) */
	/* this burst's records for the shard, in arrival order */
	uint32_t b_head, b_tail, b_n;
	bool in_batch;
	bool used;
	uint32_t next_free;
};

/* A record of the current burst, on its way to the store. */
struct ingest_bent {
	struct firn_record rec;        /* pointers into the datagram or a reassembly buffer */
	struct firn_u128 hash;         /* its hash key, to route it again after a split */
	struct firn_proto_session *ss; /* owner of reasm_slot */
	uint32_t wait;                 /* its waiting entry (producer, seq, len) */
	uint32_t next;                 /* next in its shard's batch list */
	int reasm_slot;
};

/*
 * A recent partition key and its MD5 hash key. Producers reuse keys (a
 * device id, a user id), and MD5 through OpenSSL 3.0's EVP costs more than
 * the rest of a record's path - including an allocation per call inside
 * OpenSSL - so a direct-mapped cache of short keys sits in front of it.
 * One cache line per entry.
 */
#define INGEST_KCACHE 8192 /* entries: 4096 sets of 2 ways */
#define INGEST_KCACHE_KEY 46
struct ingest_kent {
	struct firn_u128 h;
	uint16_t len; /* 0: empty */
	uint8_t key[INGEST_KCACHE_KEY];
};

/* A stream as the route table knows it: a private catalog snapshot. */
struct ingest_stream {
	uint64_t id;
	size_t name_len;
	struct firn_stream_info *info;
};

/* A session with something to say at the end of the cycle. */
struct ingest_dirty {
	struct firn_proto_session *ss;
	uint64_t id; /* to tell a live session from a reused slot */
	bool force;  /* PING or ACK_NOW: a RECEIVED ack even with nothing new */
};

struct ingest_ctr {
	struct firn_ingest_stats s;
} FIRN_CACHE_ALIGNED;

/* Counters: the agent is the only writer; readers sum with relaxed loads. */
#define CTR_ADD(a, f, v) __atomic_store_n(&(a)->ctr->s.f, (a)->ctr->s.f + (v), __ATOMIC_RELAXED)
#define CTR_SET(a, f, v) __atomic_store_n(&(a)->ctr->s.f, (v), __ATOMIC_RELAXED)

struct ingest_agent {
	struct firn_ingest *ing;
	unsigned idx;
	uint16_t queue;
	struct firn_proto_server *srv;
	struct firn_agent_runner *runner; /* release-stored by start, acquire-loaded by writers */
	struct ingest_ctr *ctr;
	uint64_t now_ms;
	uint64_t next_tick_ms, next_sweep_ms;
	uint16_t max_dgram;
	unsigned window_w; /* the dedupe window W */

	/* waiting records */
	struct ingest_wait *waits;
	uint32_t wait_free;
	uint32_t n_waiting;
	uint64_t waiting_bytes;

	/* shards: a slab plus an open-addressing index (linear probing, backward-shift delete) */
	struct ingest_shard *shards;
	uint32_t shard_free;
	uint32_t n_shards;
	uint32_t *sidx;
	uint32_t sidx_mask;

	char name[16]; /* thread name: firn-rx<idx> */

	/* this burst: the queue's datagrams, then those handed to us */
	struct firn_net_dgram rxd[INGEST_BURST_MAX];
	struct firn_net_dgram inbox[INGEST_BURST_MAX];
	bool handed[INGEST_MAX_AGENTS]; /* this burst passed datagrams to agent i */
	struct ingest_bent *bents;
	uint32_t nb;
	uint32_t *bshards;
	uint32_t nbs;
	char (*hkeys)[FIRN_U128_DEC_SIZE]; /* decimal hash keys of HASH records */
	struct firn_record *tmp;           /* one shard's records, contiguous for append */
	uint32_t *tmpe;

	/* partition key -> hash key */
	struct ingest_kent *kcache;

	/* routes */
	struct ingest_stream *streams;
	uint32_t n_streams;
	uint32_t last_stream;
	uint64_t cat_version;
	bool have_routes;

	/* sessions to flush at the end of the cycle */
	struct ingest_dirty *dirty;
	uint32_t n_dirty, dirty_cap;

	bool acks_blocked; /* a DURABLE entry found no room: retry next cycle */

	/* TX staging */
	uint8_t *txbuf;
	struct firn_net_dgram txd[INGEST_TX_STAGE];
	unsigned ntx;

	/* control */
	int rx_stopped;           /* release-stored by stop_rx, acquire-loaded by the agent */
	uint64_t pub_outstanding; /* published: waits + staged TX (drain reads it) */
	uint64_t cpu_start_ns;    /* the agent thread's CPU clock at its first cycle */
	bool warned_seed;
};

struct firn_ingest {
	struct firn_ingest_conf conf;
	struct firn_proto_access_key key;
	uint8_t cookie[32];
	bool have_cookie;
	unsigned n_agents;
	unsigned writers;
	struct ingest_agent agents[INGEST_MAX_AGENTS];
	struct ingest_ctr *ctrs;
	struct ingest_ring *rings;   /* [writer * n_agents + agent] */
	struct ingest_hring *hrings; /* [from * n_agents + to]; NULL with one agent */
	struct firn_store *st;
	const struct firn_net_ops *ops;
	struct firn_net_port *port;
	bool started;
};

/* rx.c */
int ingest_agent_init(struct firn_ingest *ing, struct ingest_agent *a, unsigned idx);
void ingest_agent_fini(struct ingest_agent *a);
int ingest_agent_do_work(void *arg);
void ingest_agent_on_close(void *arg);
int ingest_resolve(void *arg, const char *name, size_t len, uint64_t *stream_id);
int ingest_routes_refresh(struct ingest_agent *a);

/* ingest.c */
int ingest_seed(struct firn_ingest *ing);

/*
 * The agent that owns a producer: its dedupe window, its sessions (whose
 * ids carry the agent's index as their tag). A multiplicative hash, so
 * sequential producer ids spread evenly.
 */
static inline unsigned
ingest_owner(const struct firn_ingest *ing, uint64_t producer_id)
{
	return (unsigned)(((producer_id * 0x9e3779b97f4a7c15ull) >> 32) % ing->n_agents);
}

#endif /* FIRN_INGEST_INTERNAL_H */
