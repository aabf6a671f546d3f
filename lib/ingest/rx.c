/*
 * rx.c - the RX agent: datagrams in, records to the store, DURABLE acks out.
 *
 * One duty cycle (ingest_agent_do_work):
 *
 *   1. Routes. If the catalog's version moved, rebuild the route table from
 *      a fresh snapshot. The agent is the table's only reader, so swapping
 *      it between bursts needs no RCU or epoch: nothing holds a pointer into
 *      the old one across a cycle.
 *   2. Durable watermarks. Pop what the writers pushed on our SPSC rings;
 *      for each shard, every waiting record below the watermark gets
 *      firn_proto_record_done() and an ACK_DURABLE entry queued on its
 *      producer's current session.
 *   3. RX. One rx_burst. Cleartext datagrams go to the handshake; DATA is
 *      opened in place and walked with firn_proto_rx_next(). A new record
 *      is routed (MD5 of the partition key, or the client's hash key, then
 *      a binary search over the stream's open shard ranges) and put in this
 *      burst's batch, grouped by shard. At the end of the burst each shard's
 *      batch goes to the store in one firn_store_append() - the one copy of
 *      the payload, from the NIC buffer into the shard's pending buffer -
 *      and every record becomes a waiting entry with its counter. Only then
 *      are the datagram buffers released.
 *   4. Every 100 ms: expire sessions, publish lib/proto's counters, and
 *      poll shards whose waiting records made no progress for a second (a
 *      lost or overflowed watermark, a dropped stream).
 *   5. TX. Every session that received DATA, got acks queued, or asked for
 *      an ack is granted fresh credit and flushed: RECEIVED ack, CREDIT,
 *      DURABLE entries, sealed, staged and sent with tx_burst.
 *
 * Nothing here allocates, logs or makes a syscall per record: waits, shard
 * slots, batch entries, the key cache and TX buffers are preallocated
 * (ingest_agent_init), and every refusal is a counter. The per-record costs
 * are the MD5 (skipped for HASH records and for keys in the agent's cache
 * of recent keys), a probe in the shard index and the store's copy.
 *
 * A full device queue. An ACK_DURABLE entry is queued on the session
 * before the record is marked done; when neither the session's ack queue
 * nor the TX staging has room, the record stays waiting and the shard is
 * retried next cycle. So an ack is delayed, never dropped, and a drain at
 * shutdown waits for it.
 *
 * Refusals. Transient trouble (no waiting entry left, the store's pending
 * buffer full, a shard sealed by a split the catalog does not show yet)
 * calls firn_proto_record_refused(): the dedupe slot is forgotten and no ack
 * is sent, so the client's retransmit is taken as new once there is room;
 * credit stops the client before that becomes a habit. Permanent outcomes
 * (stream gone, record too large) are answered and remembered by the
 * dedupe window. A full disk is answered INTERNAL ("resend later") and
 * forgotten.
 *
 * Pointer lifetimes. A batched record points into a datagram (valid until
 * release, after the batch is flushed) or into its session's reassembly
 * buffer (valid until released, also after the flush). Anything that could
 * end a session - an INIT replacing it, a CLOSE, a protocol error, the
 * expiry tick - flushes the batch first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "firn_record.h"
#include "ingest_internal.h"

static struct firn_store *
agent_store(const struct ingest_agent *a)
{
	return a->ing->st;
}

/* ---- route table ---------------------------------------------------------------- */

static void
streams_free(struct ingest_stream *v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		firn_stream_info_free(v[i].info);
	free(v);
}

/*
 * Rebuild the table from the catalog. Allocates (it runs only when the
 * catalog changed, between bursts). On failure the old table stays.
 */
int
ingest_routes_refresh(struct ingest_agent *a)
{
	struct firn_catalog *cat = a->ing->conf.catalog;
	struct ingest_stream *nv;
	uint64_t v;
	char **names = NULL;
	uint32_t n = 0, k = 0;
	int rc;

	if (cat == NULL)
		return 0;
	/* Read the version first: a change during the walk triggers one more refresh. */
	v = firn_catalog_version(cat);
	rc = firn_catalog_list(cat, &names, &n);
	if (rc < 0)
		return rc;
	nv = calloc(FIRN_MAX(n, 1u), sizeof(*nv));
	if (nv == NULL) {
		free(names);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct firn_stream_info *s;

		if (firn_catalog_get(cat, names[i], &s) < 0)
			continue;
		if (s->status == FIRN_STREAM_DELETING || s->status == FIRN_STREAM_CREATING) {
			firn_stream_info_free(s);
			continue;
		}
		nv[k].id = s->id;
		nv[k].name_len = strlen(s->name);
		nv[k].info = s;
		k++;
	}
	free(names);
	streams_free(a->streams, a->n_streams);
	a->streams = nv;
	a->n_streams = k;
	a->last_stream = 0;
	a->cat_version = v;
	a->have_routes = true;
	CTR_ADD(a, route_refreshes, 1);
	return 0;
}

static bool
routes_stale(const struct ingest_agent *a)
{
	struct firn_catalog *cat = a->ing->conf.catalog;

	return cat != NULL && (!a->have_routes || firn_catalog_version(cat) != a->cat_version);
}

/* The stream with this id, or NULL (deleted since the session bound it). */
static const struct ingest_stream *
stream_by_id(struct ingest_agent *a, uint64_t id)
{
	if (a->last_stream < a->n_streams && a->streams[a->last_stream].id == id)
		return &a->streams[a->last_stream];
	/* Streams are few; a scan is cheaper than keeping a second index. */
	for (uint32_t i = 0; i < a->n_streams; i++) {
		if (a->streams[i].id == id) {
			a->last_stream = i;
			return &a->streams[i];
		}
	}
	return NULL;
}

/*
 * lib/proto's resolve hook: a STREAM frame binds a ref to a name. Runs on
 * the agent's thread, once per binding (a missing stream is looked up again
 * each time the client repeats the binding, so it must stay cheap: the
 * catalog is asked only when its version moved).
 */
int
ingest_resolve(void *arg, const char *name, size_t len, uint64_t *stream_id)
{
	struct ingest_agent *a = arg;

	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < a->n_streams; i++) {
			const struct ingest_stream *s = &a->streams[i];

			if (s->name_len == len && memcmp(s->info->name, name, len) == 0) {
				*stream_id = s->id;
				return 0;
			}
		}
		if (pass == 0 && (!routes_stale(a) || ingest_routes_refresh(a) < 0))
			break;
	}
	return -ENOENT;
}

/* ---- waits and shards --------------------------------------------------------------- */

static uint32_t
wait_alloc(struct ingest_agent *a)
{
	uint32_t w = a->wait_free;

	if (w != INGEST_NIL)
		a->wait_free = a->waits[w].next;
	return w;
}

static void
wait_free(struct ingest_agent *a, uint32_t w)
{
	a->waits[w].p = NULL;
	a->waits[w].next = a->wait_free;
	a->wait_free = w;
}

static inline uint32_t
shard_hash(uint64_t sid, uint32_t shard)
{
	uint64_t x = sid * 0x9e3779b97f4a7c15ull ^ ((uint64_t)shard * 0xc2b2ae3d27d4eb4full);

	x ^= x >> 31;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 29;
	return (uint32_t)x;
}

static struct ingest_shard *
shard_find(struct ingest_agent *a, uint64_t sid, uint32_t shard)
{
	for (uint32_t i = shard_hash(sid, shard) & a->sidx_mask;; i = (i + 1) & a->sidx_mask) {
		uint32_t k = a->sidx[i];

		if (k == INGEST_NIL)
			return NULL;
		if (a->shards[k].stream_id == sid && a->shards[k].shard == shard)
			return &a->shards[k];
	}
}

/* Find or add. NULL when max_shards shards already have records in flight. */
static struct ingest_shard *
shard_get(struct ingest_agent *a, uint64_t sid, uint32_t shard)
{
	struct ingest_shard *sh;
	uint32_t i, k;

	for (i = shard_hash(sid, shard) & a->sidx_mask;; i = (i + 1) & a->sidx_mask) {
		k = a->sidx[i];
		if (k == INGEST_NIL)
			break;
		if (a->shards[k].stream_id == sid && a->shards[k].shard == shard)
			return &a->shards[k];
	}
	k = a->shard_free;
	if (k == INGEST_NIL)
		return NULL;
	sh = &a->shards[k];
	a->shard_free = sh->next_free;
	memset(sh, 0, sizeof(*sh));
	sh->stream_id = sid;
	sh->shard = shard;
	sh->head = sh->tail = sh->b_head = sh->b_tail = INGEST_NIL;
	sh->used = true;
	sh->progress_ms = a->now_ms;
	a->sidx[i] = k;
	a->n_shards++;
	return sh;
}

/* Forget a shard with nothing waiting and nothing batched. */
static void
shard_put(struct ingest_agent *a, struct ingest_shard *sh)
{
	uint32_t k = (uint32_t)(sh - a->shards), i, j;

	if (sh->n > 0 || sh->in_batch)
		return;
	for (i = shard_hash(sh->stream_id, sh->shard) & a->sidx_mask; a->sidx[i] != k;
	     i = (i + 1) & a->sidx_mask)
		;
	/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
	a->sidx[i] = INGEST_NIL;
	for (j = (i + 1) & a->sidx_mask; a->sidx[j] != INGEST_NIL; j = (j + 1) & a->sidx_mask) {
		uint32_t m = a->sidx[j];
		uint32_t home =
		        shard_hash(a->shards[m].stream_id, a->shards[m].shard) & a->sidx_mask;

		/* Move m into the hole unless its home lies cyclically in (i, j]. */
		if (((j - home) & a->sidx_mask) >= ((j - i) & a->sidx_mask)) {
			a->sidx[i] = m;
			a->sidx[j] = INGEST_NIL;
			i = j;
		}
	}
	sh->used = false;
	sh->next_free = a->shard_free;
	a->shard_free = k;
	a->n_shards--;
}

/* ---- TX staging ------------------------------------------------------------------------ */

static void
tx_flush(struct ingest_agent *a)
{
	const struct firn_net_ops *ops = a->ing->ops;
	unsigned sent;

	if (a->ntx == 0)
		return;
	sent = ops->tx_burst(a->ing->port, a->queue, a->txd, a->ntx);
	CTR_ADD(a, tx_datagrams, sent);
	if (sent < a->ntx) {
		/* Keep the rest, in order; their buffers move with them. */
		for (unsigned i = sent; i < a->ntx; i++) {
			uint8_t *dst = a->txbuf + (size_t)(i - sent) * a->max_dgram;

			memmove(dst, a->txd[i].data, a->txd[i].len);
			a->txd[i - sent].peer = a->txd[i].peer;
			a->txd[i - sent].len = a->txd[i].len;
			a->txd[i - sent].data = dst;
		}
	}
	a->ntx -= sent;
}

/* A buffer for the next datagram to send, or NULL (staging full even after a send). */
static uint8_t *
tx_slot(struct ingest_agent *a)
{
	if (a->ntx == INGEST_TX_STAGE)
		tx_flush(a);
	if (a->ntx == INGEST_TX_STAGE)
		return NULL;
	return a->txbuf + (size_t)a->ntx * a->max_dgram;
}

static void
tx_commit(struct ingest_agent *a, const struct sockaddr_in *to, int len)
{
	struct firn_net_dgram *d = &a->txd[a->ntx++];

	d->peer = *to;
	d->data = a->txbuf + (size_t)(a->ntx - 1) * a->max_dgram;
	d->len = (uint32_t)len;
	d->queue = a->queue;
	d->handle = NULL;
}

static void
addr_to_sin(const struct firn_proto_addr *pa, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, pa->ip + 12, 4);
	sin->sin_port = htons(pa->port);
}

/* ---- sessions: credit and flush ----------------------------------------------------------- */

/*
 * Credit (doc/protocol.md §9) from what this agent can still hold: records
 * from the free waiting entries, bytes from the waiting-bytes budget, each
 * split evenly over the live sessions; records capped at W/2, bytes at the
 * configured window and at half a shard's pending buffer (so one session
 * alone never fills a shard and meets -EAGAIN). When the pool is empty the
 * grant stops moving and clients wait.
 */
static void
session_grant(struct ingest_agent *a, struct firn_proto_session *ss)
{
	const struct firn_ingest_conf *c = &a->ing->conf;
	uint64_t live = FIRN_MAX(firn_proto_server_sessions(a->srv), 1u);
	uint64_t free_w =
	        c->max_waiting - a->n_waiting - FIRN_MIN(a->nb, c->max_waiting - a->n_waiting);
	uint64_t free_b = c->max_waiting_bytes > a->waiting_bytes
	                          ? c->max_waiting_bytes - a->waiting_bytes
	                          : 0;
	uint64_t recs = FIRN_MIN(free_w / live, (uint64_t)a->window_w / 2);
	uint64_t win = FIRN_MIN(free_b / live, (uint64_t)c->credit_window);

	win = FIRN_MIN(win, c->shard_pending_max / 2);
	firn_proto_session_grant(ss, recs, (uint32_t)win);
}

static void dirty_add(struct ingest_agent *a, struct firn_proto_session *ss, bool force);

/* Send everything the session has to say now: ack, credit, queued entries. */
static void
session_flush(struct ingest_agent *a, struct firn_proto_session *ss, bool force)
{
	struct sockaddr_in to;
	int n;

	session_grant(a, ss);
	addr_to_sin(firn_proto_session_peer(ss), &to);
	do {
		uint8_t *out = tx_slot(a);

		if (out == NULL) {
			/* The device queue is full: try again next cycle, keep what is queued. */
			CTR_ADD(a, tx_dropped, 1);
			dirty_add(a, ss, force);
			return;
		}
		n = firn_proto_session_flush(a->srv, ss, a->now_ms, force, out, a->max_dgram);
		if (n <= 0)
			return;
		tx_commit(a, &to, n);
		force = false;
	} while (firn_proto_session_tx_pending(ss) > 0);
}

/*
 * Put a session on the list flushed at the end of the cycle; false when it
 * is already there (force is merged) or the list is full.
 */
static bool
dirty_list(struct ingest_agent *a, struct firn_proto_session *ss, bool force, bool *full)
{
	uintptr_t u = (uintptr_t)firn_proto_session_user(ss);

	*full = false;
	/* The session's user pointer is its index in the dirty list, plus one. */
	if (u != 0 && u <= a->n_dirty && a->dirty[u - 1].ss == ss) {
		a->dirty[u - 1].force |= force;
		return false;
	}
	if (a->n_dirty == a->dirty_cap) {
		*full = true;
		return false;
	}
	a->dirty[a->n_dirty].ss = ss;
	a->dirty[a->n_dirty].id = firn_proto_session_id(ss);
	a->dirty[a->n_dirty].force = force;
	a->n_dirty++;
	firn_proto_session_set_user(ss, (void *)(uintptr_t)a->n_dirty);
	return true;
}

/* Something to say: at the end of the cycle (or now, if the list is full). */
static void
dirty_mark(struct ingest_agent *a, struct firn_proto_session *ss, bool force)
{
	bool full;

	dirty_list(a, ss, force, &full);
	if (full)
		session_flush(a, ss, force);
}

/* TX was blocked: retry next cycle (never flushes, so no recursion). */
static void
dirty_add(struct ingest_agent *a, struct firn_proto_session *ss, bool force)
{
	bool full;

	dirty_list(a, ss, force, &full);
}

static int
dirty_flush(struct ingest_agent *a)
{
	uint32_t n = a->n_dirty, left;

	for (uint32_t i = 0; i < n; i++) {
		struct ingest_dirty *d = &a->dirty[i];

		/* Closed or replaced since it was marked: a reused slot has another id. */
		if (firn_proto_server_session(a->srv, d->id) != d->ss)
			continue;
		firn_proto_session_set_user(d->ss, NULL);
		session_flush(a, d->ss, d->force);
	}
	/* Sessions put back because TX was full move to the front for the next cycle. */
	left = a->n_dirty - n;
	memmove(a->dirty, a->dirty + n, left * sizeof(*a->dirty));
	for (uint32_t i = 0; i < left; i++)
		firn_proto_session_set_user(a->dirty[i].ss, (void *)(uintptr_t)(i + 1));
	a->n_dirty = left;
	return (int)n;
}

/*
 * Queue a DURABLE entry on a session; a full queue is flushed to the wire
 * first. false when even that leaves no room (the device queue is full).
 */
static bool
session_queue(struct ingest_agent *a, struct firn_proto_session *ss,
              const struct firn_proto_durable *d)
{
	if (firn_proto_session_queue_durable(ss, d) == -ENOSPC) {
		session_flush(a, ss, false);
		if (firn_proto_session_queue_durable(ss, d) < 0)
			return false;
	}
	dirty_mark(a, ss, false);
	return true;
}

/* An answer for a producer, on whatever session speaks for it now (if any). */
static void
producer_answer(struct ingest_agent *a, struct firn_proto_producer *p, uint64_t seq, uint8_t status)
{
	struct firn_proto_session *ss = firn_proto_producer_session(p);
	struct firn_proto_durable d = {.seq = seq, .count = 1, .status = status};

	CTR_ADD(a, answers, 1);
	/* Lost only when TX is wedged; the dedupe slot answers the client's resend. */
	if (ss != NULL && !session_queue(a, ss, &d))
		CTR_ADD(a, tx_dropped, 1);
}

/* A permanent outcome: remembered by the dedupe window, answered. */
static void
record_fail(struct ingest_agent *a, struct firn_proto_producer *p, uint64_t seq, uint8_t status)
{
	firn_proto_record_done(a->srv, p, seq, 0, 0, status);
	producer_answer(a, p, seq, status);
}

/* A transient refusal: forgotten, so a resend is new; answered only if status != OK. */
static void
record_refuse(struct ingest_agent *a, struct firn_proto_producer *p, uint64_t seq, uint8_t status)
{
	firn_proto_record_refused(a->srv, p, seq);
	if (status != FIRN_PROTO_OK)
		producer_answer(a, p, seq, status);
}

/* ---- durable watermarks -----------------------------------------------------------------------
 */

/*
 * Records below durable_next in sh are on stable storage: ack them, oldest
 * first. The entry is queued before the record is marked done, so when the
 * device queue is full the record simply stays waiting (the agent retries
 * next cycle, and a drain at shutdown waits for it) instead of being
 * marked done with its ack lost.
 */
static unsigned
shard_durable(struct ingest_agent *a, struct ingest_shard *sh, uint64_t durable_next)
{
	unsigned n = 0;

	if (durable_next > sh->durable_seen)
		sh->durable_seen = durable_next;
	while (sh->head != INGEST_NIL && a->waits[sh->head].counter < durable_next) {
		uint32_t wi = sh->head;
		struct ingest_wait *w = &a->waits[wi];
		struct firn_proto_session *ss = firn_proto_producer_session(w->p);
		struct firn_proto_durable d = {
		        .seq = w->seq,
		        .counter = w->counter,
		        .shard = sh->shard,
		        .count = 1,
		        .status = FIRN_PROTO_OK,
		};

		/* No session now: the producer's resend will find the entry DONE. */
		if (ss != NULL && !session_queue(a, ss, &d)) {
			a->acks_blocked = true;
			break;
		}
		firn_proto_record_done(a->srv, w->p, w->seq, sh->shard, w->counter, FIRN_PROTO_OK);
		sh->head = w->next;
		if (sh->head == INGEST_NIL)
			sh->tail = INGEST_NIL;
		sh->n--;
		sh->bytes -= w->len;
		a->n_waiting--;
		a->waiting_bytes -= w->len;
		wait_free(a, wi);
		n++;
	}
	if (n > 0) {
		sh->progress_ms = a->now_ms;
		CTR_ADD(a, records_acked, n);
		shard_put(a, sh);
	}
	return n;
}

/* Every waiting record of a shard whose stream is gone: answer UNKNOWN_STREAM. */
static void
shard_gone(struct ingest_agent *a, struct ingest_shard *sh)
{
	while (sh->head != INGEST_NIL) {
		uint32_t wi = sh->head;
		struct ingest_wait *w = &a->waits[wi];

		record_fail(a, w->p, w->seq, FIRN_PROTO_E_UNKNOWN_STREAM);
		CTR_ADD(a, unknown_stream, 1);
		sh->head = w->next;
		sh->n--;
		a->n_waiting--;
		a->waiting_bytes -= w->len;
		wait_free(a, wi);
	}
	sh->tail = INGEST_NIL;
	sh->bytes = 0;
	shard_put(a, sh);
}

/*
 * Ask the store directly about shards with records waiting: all of them
 * after a ring overflow, else those stuck for INGEST_STUCK_MS.
 */
static void
shards_poll(struct ingest_agent *a, bool all)
{
	const struct firn_ingest_conf *c = &a->ing->conf;

	for (uint32_t k = 0; k < c->max_shards; k++) {
		struct ingest_shard *sh = &a->shards[k];
		struct firn_shard_stat st;
		int rc;

		if (!sh->used || sh->n == 0 || sh->in_batch)
			continue;
		if (!all && a->now_ms < sh->progress_ms + INGEST_STUCK_MS)
			continue;
		rc = firn_store_shard_stat(agent_store(a), sh->stream_id, sh->shard, &st);
		if (rc == -ENOENT)
			shard_gone(a, sh);
		else if (rc == 0)
			shard_durable(a, sh, st.durable_next);
	}
}

/* Acks held back by a full device queue: try those shards again. */
static int
acks_retry(struct ingest_agent *a)
{
	int work = 0;

	a->acks_blocked = false;
	for (uint32_t k = 0; k < a->ing->conf.max_shards && !a->acks_blocked; k++) {
		struct ingest_shard *sh = &a->shards[k];

		if (sh->used && sh->n > 0 && sh->durable_seen > a->waits[sh->head].counter)
			work += (int)shard_durable(a, sh, sh->durable_seen);
	}
	return work;
}

static int
durable_drain(struct ingest_agent *a)
{
	struct firn_ingest *ing = a->ing;
	struct ingest_dmsg m;
	int work = 0;

	if (a->acks_blocked)
		work += acks_retry(a);

	for (unsigned w = 0; w < ing->writers; w++) {
		struct ingest_ring *r = &ing->rings[w * ing->n_agents + a->idx];
		unsigned k = 0;

		/* Pairs with the release store in firn_ingest_on_durable(). */
		if (__atomic_exchange_n(&r->overflow, 0, __ATOMIC_ACQ_REL)) {
			CTR_ADD(a, durable_overflow, 1);
			shards_poll(a, true);
			work++;
		}
		while (k < INGEST_RING_POP_MAX && ingest_ring_pop(r, &m)) {
			struct ingest_shard *sh;

			k++;
			if (m.status < 0)
				CTR_ADD(a, write_errors, 1);
			sh = shard_find(a, m.stream_id, m.shard);
			if (sh != NULL && sh->n > 0)
				shard_durable(a, sh, m.durable_next);
		}
		CTR_ADD(a, durable_msgs, k);
		work += (int)k;
	}
	return work;
}

/* ---- the batch ---------------------------------------------------------------------------- */

/* An appended record becomes a waiting entry at the tail of its shard's FIFO. */
static void
wait_commit(struct ingest_agent *a, struct ingest_shard *sh, uint32_t wi, uint64_t counter)
{
	struct ingest_wait *w = &a->waits[wi];

	w->counter = counter;
	w->next = INGEST_NIL;
	if (sh->tail == INGEST_NIL) {
		sh->head = wi;
		sh->progress_ms = a->now_ms;
	} else {
		a->waits[sh->tail].next = wi;
	}
	sh->tail = wi;
	sh->n++;
	sh->bytes += w->len;
	a->n_waiting++;
	a->waiting_bytes += w->len;
}

/* Drop a batched record without storing it (its wait goes back to the pool). */
static void
bent_drop(struct ingest_agent *a, struct ingest_bent *e, int how, uint8_t status)
{
	struct ingest_wait *w = &a->waits[e->wait];

	if (how > 0)
		record_fail(a, w->p, w->seq, status);
	else
		record_refuse(a, w->p, w->seq, status);
	wait_free(a, e->wait);
}

/*
 * A shard's batch did not go in whole: append record by record, so one
 * bad record or a full pending buffer costs only what it must, and re-route
 * records whose shard was sealed by a split.
 */
static void
batch_fallback(struct ingest_agent *a, struct ingest_shard *sh, const uint32_t *list, uint32_t n)
{
	bool busy = false;

	for (uint32_t j = 0; j < n; j++) {
		struct ingest_bent *e = &a->bents[list[j]];
		struct ingest_shard *to = sh;
		uint64_t counter;
		int rc;

		if (busy) {
			CTR_ADD(a, refused_busy, 1);
			bent_drop(a, e, 0, FIRN_PROTO_OK);
			continue;
		}
		CTR_ADD(a, append_calls, 1);
		rc = firn_store_append(agent_store(a), sh->stream_id, sh->shard, &e->rec, 1,
		                       &counter, NULL);
		if (rc == -ESHUTDOWN) {
			/* Sealed by a split or merge: route again on the newest catalog. */
			const struct ingest_stream *s;
			uint32_t shard;

			if (routes_stale(a))
				ingest_routes_refresh(a);
			s = stream_by_id(a, sh->stream_id);
			if (s == NULL) {
				CTR_ADD(a, unknown_stream, 1);
				bent_drop(a, e, 1, FIRN_PROTO_E_UNKNOWN_STREAM);
				continue;
			}
			if (firn_stream_route(s->info, e->hash, &shard) < 0 || shard == sh->shard ||
			    (to = shard_get(a, sh->stream_id, shard)) == NULL) {
				CTR_ADD(a, refused_sealed, 1);
				bent_drop(a, e, 0, FIRN_PROTO_OK);
				continue;
			}
			CTR_ADD(a, append_calls, 1);
			rc = firn_store_append(agent_store(a), to->stream_id, to->shard, &e->rec, 1,
			                       &counter, NULL);
		}
		switch (rc) {
		case 0:
			wait_commit(a, to, e->wait, counter);
			CTR_ADD(a, records_appended, 1);
			CTR_ADD(a, bytes_appended, e->rec.data_len);
			break;
		case -EAGAIN:
			busy = to == sh;
			CTR_ADD(a, refused_busy, 1);
			bent_drop(a, e, 0, FIRN_PROTO_OK);
			break;
		case -ESHUTDOWN:
			CTR_ADD(a, refused_sealed, 1);
			bent_drop(a, e, 0, FIRN_PROTO_OK);
			break;
		case -ENOSPC:
			CTR_ADD(a, refused_nospc, 1);
			bent_drop(a, e, 0, FIRN_PROTO_E_INTERNAL);
			break;
		case -E2BIG:
			CTR_ADD(a, store_errors, 1);
			bent_drop(a, e, 1, FIRN_PROTO_E_TOO_LARGE);
			break;
		case -EINVAL:
			CTR_ADD(a, store_errors, 1);
			bent_drop(a, e, 1, FIRN_PROTO_E_BAD_KEY);
			break;
		default:
			CTR_ADD(a, store_errors, 1);
			bent_drop(a, e, 0, FIRN_PROTO_E_INTERNAL);
			break;
		}
		if (to != sh && to->n == 0)
			shard_put(a, to);
	}
}

/* Hand this burst's records to the store, one append per shard. */
static void
batch_flush(struct ingest_agent *a)
{
	for (uint32_t i = 0; i < a->nbs; i++) {
		struct ingest_shard *sh = &a->shards[a->bshards[i]];
		uint64_t first, bytes = 0;
		uint32_t n = 0;
		int rc;

		for (uint32_t k = sh->b_head; k != INGEST_NIL; k = a->bents[k].next) {
			a->tmp[n] = a->bents[k].rec;
			a->tmpe[n++] = k;
			bytes += a->bents[k].rec.data_len;
		}
		CTR_ADD(a, append_calls, 1);
		rc = firn_store_append(agent_store(a), sh->stream_id, sh->shard, a->tmp, n, &first,
		                       NULL);
		if (rc == 0) {
			for (uint32_t j = 0; j < n; j++)
				wait_commit(a, sh, a->bents[a->tmpe[j]].wait, first + j);
			CTR_ADD(a, records_appended, n);
			CTR_ADD(a, bytes_appended, bytes);
		} else {
			batch_fallback(a, sh, a->tmpe, n);
		}
		sh->in_batch = false;
		sh->b_head = sh->b_tail = INGEST_NIL;
		sh->b_n = 0;
		shard_put(a, sh);
	}
	/* The store has copied: reassembly buffers can go back now. */
	for (uint32_t k = 0; k < a->nb; k++)
		if (a->bents[k].reasm_slot >= 0)
			firn_proto_reasm_release(firn_proto_session_reasm(a->bents[k].ss),
			                         a->bents[k].reasm_slot);
	a->nb = 0;
	a->nbs = 0;
}

static void
release_reasm(struct firn_proto_session *ss, int slot)
{
	if (slot >= 0)
		firn_proto_reasm_release(firn_proto_session_reasm(ss), slot);
}

/*
 * The hash key of a partition key: from the cache, or MD5 (and remember
 * it). Two ways per set, most recently used first, so two hot keys that
 * share a set do not evict each other on every record.
 */
static void
key_hash(struct ingest_agent *a, const uint8_t *key, uint16_t len, struct firn_u128 *h)
{
	uint64_t x = 0xcbf29ce484222325ull; /* FNV-1a picks the set */
	struct ingest_kent *e;

	if (len > INGEST_KCACHE_KEY) {
		firn_hash_key(key, len, h);
		return;
	}
	for (uint16_t i = 0; i < len; i++)
		x = (x ^ key[i]) * 0x100000001b3ull;
	e = &a->kcache[((x ^ (x >> 29)) & (INGEST_KCACHE / 2 - 1)) * 2];
	if (e[0].len == len && memcmp(e[0].key, key, len) == 0) {
		*h = e[0].h;
		CTR_ADD(a, key_hash_cached, 1);
		return;
	}
	if (e[1].len == len && memcmp(e[1].key, key, len) == 0) {
		struct ingest_kent t = e[1];

		e[1] = e[0];
		e[0] = t;
		*h = t.h;
		CTR_ADD(a, key_hash_cached, 1);
		return;
	}
	firn_hash_key(key, len, h);
	e[1] = e[0];
	e[0].h = *h;
	e[0].len = len;
	memcpy(e[0].key, key, len);
}

/* A new record from rx_next: route it and add it to the burst's batch. */
static void
batch_add(struct ingest_agent *a, struct firn_proto_session *ss,
          const struct firn_proto_rx_item *it)
{
	const struct firn_proto_rec *r = &it->rec;
	const struct ingest_stream *s;
	struct ingest_shard *sh;
	struct ingest_bent *e;
	struct firn_u128 h;
	uint32_t shard, wi;

	CTR_ADD(a, records_new, 1);
	s = stream_by_id(a, it->stream_id);
	if (s == NULL) {
		/* Bound while it existed, deleted since. */
		CTR_ADD(a, unknown_stream, 1);
		record_fail(a, it->producer, r->seq, FIRN_PROTO_E_UNKNOWN_STREAM);
		release_reasm(ss, it->reasm_slot);
		return;
	}
	if (r->hash)
		h = firn_proto_hash_get(r->key);
	else
		key_hash(a, r->key, r->key_len, &h);
	if (firn_stream_route(s->info, h, &shard) < 0) {
		CTR_ADD(a, refused_sealed, 1);
		record_refuse(a, it->producer, r->seq, FIRN_PROTO_OK);
		release_reasm(ss, it->reasm_slot);
		return;
	}
	if (a->nb == INGEST_BATCH)
		batch_flush(a);
	wi = wait_alloc(a);
	sh = wi != INGEST_NIL ? shard_get(a, s->id, shard) : NULL;
	if (sh == NULL) {
		if (wi != INGEST_NIL)
			wait_free(a, wi);
		CTR_ADD(a, refused_pool, 1);
		record_refuse(a, it->producer, r->seq, FIRN_PROTO_OK);
		release_reasm(ss, it->reasm_slot);
		return;
	}
	a->waits[wi].p = it->producer;
	a->waits[wi].seq = r->seq;
	a->waits[wi].len = r->len;
	e = &a->bents[a->nb];
	e->wait = wi;
	e->hash = h;
	e->ss = ss;
	e->reasm_slot = it->reasm_slot;
	e->next = INGEST_NIL;
	e->rec.data = r->data;
	e->rec.data_len = r->len;
	e->rec.ts_ms = 0;
	e->rec.counter = 0;
	e->rec.producer_id = firn_proto_producer_id(it->producer);
	e->rec.producer_seq = r->seq;
	if (r->hash) {
		/*
		 * The record has no partition key, only the client's hash key
		 * (Kinesis' ExplicitHashKey); consumers see its decimal form.
		 */
		e->rec.key = (const uint8_t *)a->hkeys[a->nb];
		e->rec.key_len = (uint16_t)firn_u128_format(h, a->hkeys[a->nb]);
	} else {
		e->rec.key = r->key;
		e->rec.key_len = r->key_len;
	}
	if (sh->in_batch) {
		a->bents[sh->b_tail].next = a->nb;
	} else {
		sh->in_batch = true;
		sh->b_head = a->nb;
		a->bshards[a->nbs++] = (uint32_t)(sh - a->shards);
	}
	sh->b_tail = a->nb;
	sh->b_n++;
	a->nb++;
	/*
	 * A reassembled record keeps its reassembly slot until the store has
	 * copied it, i.e. until the batch is flushed. A session has only a few
	 * slots (§6.3), and one burst can complete more records than that: if
	 * the batch waited for the end of the burst, every later fragment that
	 * starts a record would be dropped as reasm_full in a datagram already
	 * acked as RECEIVED, so the client could only recover it by its
	 * durable timeout. Hand the batch on as soon as the session could not
	 * start another record.
	 */
	if (it->reasm_slot >= 0 && !firn_proto_reasm_room(firn_proto_session_reasm(ss)))
		batch_flush(a);
}

/* ---- RX ------------------------------------------------------------------------------------- */

static void
session_end(struct ingest_agent *a, struct firn_proto_session *ss, uint16_t code)
{
	struct sockaddr_in to;
	uint8_t *out;
	int n;

	batch_flush(a);
	session_flush(a, ss, false);
	out = tx_slot(a);
	if (out != NULL) {
		n = firn_proto_session_send_error(a->srv, ss, code, NULL, NULL, out, a->max_dgram);
		if (n > 0) {
			addr_to_sin(firn_proto_session_peer(ss), &to);
			tx_commit(a, &to, n);
		}
	}
	firn_proto_session_set_user(ss, NULL);
	firn_proto_session_close(a->srv, ss, a->now_ms);
}

static void
rx_dgram(struct ingest_agent *a, struct firn_net_dgram *d)
{
	/*
	 * The drivers hand out their own writable buffers (an mbuf's data
	 * room, a socket ring slot) that the caller holds until release();
	 * the payload is const in firn_net.h only because most callers just
	 * read it. Opening in place is the zero-copy path.
	 */
	uint8_t *pkt = (uint8_t *)(uintptr_t)d->data;
	struct firn_proto_session *ss = NULL;
	struct firn_proto_addr from;
	struct firn_proto_rx_item it;
	struct firn_proto_hdr h;
	struct firn_proto_rx rx;
	uint8_t *plain, *out;
	bool force;
	int rc, n;

	CTR_ADD(a, rx_datagrams, 1);
	CTR_ADD(a, rx_bytes, d->len);
	firn_proto_addr_v4(&from, (const uint8_t *)&d->peer.sin_addr.s_addr,
	                   ntohs(d->peer.sin_port));
	rc = firn_proto_hdr_decode(pkt, d->len, &h);
	if (rc == -EPROTONOSUPPORT || (rc == 0 && h.type != FIRN_PROTO_DATA)) {
		/* An INIT may replace a session whose reassembled record is batched. */
		if (rc == 0 && h.type == FIRN_PROTO_INIT)
			batch_flush(a);
		CTR_ADD(a, rx_handshake, 1);
		out = tx_slot(a);
		if (out == NULL) {
			CTR_ADD(a, tx_dropped, 1);
			return;
		}
		n = firn_proto_server_handshake(a->srv, &from, pkt, d->len, a->now_ms, out,
		                                a->max_dgram, &ss);
		if (n > 0)
			tx_commit(a, &d->peer, n);
		else if (n < 0)
			CTR_ADD(a, rx_dropped, 1);
		return;
	}
	if (rc < 0) {
		CTR_ADD(a, rx_dropped, 1);
		return;
	}
	n = firn_proto_server_open(a->srv, &from, pkt, d->len, a->now_ms, &ss, &plain);
	if (n == -ENOENT) {
		CTR_ADD(a, rx_dropped, 1);
		out = tx_slot(a);
		if (out == NULL)
			return;
		n = firn_proto_server_reset(a->srv, h.session_id, d->len, out, a->max_dgram);
		if (n > 0) {
			tx_commit(a, &d->peer, n);
			CTR_ADD(a, resets_sent, 1);
		}
		return;
	}
	if (n < 0) {
		CTR_ADD(a, rx_dropped, 1);
		return;
	}
	CTR_ADD(a, rx_data, 1);
	force = (h.flags & FIRN_PROTO_F_ACK_NOW) != 0;
	firn_proto_rx_begin(&rx, a->srv, ss, plain, (size_t)n, a->now_ms);
	while ((rc = firn_proto_rx_next(&rx, &it)) > 0) {
		switch (it.kind) {
		case FIRN_PROTO_RX_RECORD:
			batch_add(a, ss, &it);
			break;
		case FIRN_PROTO_RX_ANSWER:
			CTR_ADD(a, answers, 1);
			session_queue(a, ss, &it.ack);
			break;
		case FIRN_PROTO_RX_PING:
			force = true;
			break;
		case FIRN_PROTO_RX_CLOSE:
			session_end(a, ss, FIRN_PROTO_E_CLOSED);
			return;
		}
	}
	if (rc == -EPROTO) {
		session_end(a, ss, FIRN_PROTO_E_PROTOCOL);
		return;
	}
	/* At least every 16 datagrams (§7.1) even inside one long burst. */
	if (firn_proto_session_ack_due(ss, a->now_ms))
		session_flush(a, ss, force);
	else
		dirty_mark(a, ss, force);
}

/*
 * The agent that must handle a datagram (several agents only): a session's
 * owner is the tag in its id, an INIT's the owner of the producer it
 * names. HELLOs, RESET-worthy junk and anything malformed stay here: they
 * need no producer state.
 */
static unsigned
dgram_owner(const struct ingest_agent *a, const struct firn_net_dgram *d)
{
	const struct firn_ingest *ing = a->ing;
	struct firn_proto_hdr h;
	uint64_t pid;
	unsigned tag;

	if (firn_proto_hdr_decode(d->data, d->len, &h) < 0)
		return a->idx;
	if (h.session_id != 0) {
		tag = firn_proto_session_tag(h.session_id);
		return tag < ing->n_agents ? tag : a->idx;
	}
	if (h.type == FIRN_PROTO_INIT && firn_proto_init_producer(d->data, d->len, &pid) == 0)
		return ingest_owner(ing, pid);
	return a->idx;
}

/*
 * Pass the burst's datagrams owned by other agents to them; keep ours at
 * the front of rxd. Returns how many are ours. A full inbox drops the
 * datagram (counted): to the producer it is a lost packet, resent.
 */
static unsigned
rx_steer(struct ingest_agent *a, unsigned n)
{
	struct firn_ingest *ing = a->ing;
	unsigned mine = 0;

	for (unsigned i = 0; i < n; i++) {
		unsigned o = dgram_owner(a, &a->rxd[i]);

		if (o == a->idx) {
			a->rxd[mine++] = a->rxd[i];
			continue;
		}
		if (ingest_hring_push(&ing->hrings[a->idx * ing->n_agents + o], &a->rxd[i])) {
			CTR_ADD(a, handoffs, 1);
			a->handed[o] = true;
		} else {
			CTR_ADD(a, handoff_dropped, 1);
			ing->ops->release(ing->port, &a->rxd[i], 1);
		}
	}
	for (unsigned o = 0; o < ing->n_agents; o++) {
		struct firn_agent_runner *run;

		if (!a->handed[o])
			continue;
		a->handed[o] = false;
		/* Pairs with the release store in firn_ingest_start(). */
		run = __atomic_load_n(&ing->agents[o].runner, __ATOMIC_ACQUIRE);
		if (run != NULL)
			firn_agent_runner_wake(run);
	}
	return mine;
}

/* Up to max datagrams other agents passed to us, from each inbox in turn. */
static unsigned
rx_inbox(struct ingest_agent *a, unsigned max)
{
	struct firn_ingest *ing = a->ing;
	unsigned n = 0;

	for (unsigned from = 0; from < ing->n_agents; from++) {
		struct ingest_hring *r = &ing->hrings[from * ing->n_agents + a->idx];

		if (from == a->idx)
			continue;
		while (n < max && ingest_hring_pop(r, &a->inbox[n]))
			n++;
	}
	return n;
}

static int
rx_once(struct ingest_agent *a)
{
	struct firn_ingest *ing = a->ing;
	unsigned n = ing->ops->rx_burst(ing->port, a->queue, a->rxd, ing->conf.burst);
	unsigned in = 0, mine = n;

	if (ing->n_agents > 1) {
		if (n > 0)
			mine = rx_steer(a, n);
		in = rx_inbox(a, ing->conf.burst);
	}
	if (mine == 0 && in == 0)
		return (int)n;
	for (unsigned i = 0; i < mine; i++)
		rx_dgram(a, &a->rxd[i]);
	for (unsigned i = 0; i < in; i++)
		rx_dgram(a, &a->inbox[i]);
	/* Records point into the buffers until the store has copied them. */
	batch_flush(a);
	if (mine > 0)
		ing->ops->release(ing->port, a->rxd, mine);
	if (in > 0)
		ing->ops->release(ing->port, a->inbox, in);
	return (int)(n + in);
}

/* ---- the duty cycle
 * ------------------------------------------------------------------------------ */

static void
publish_proto_stats(struct ingest_agent *a)
{
	const struct firn_proto_stats *ps = firn_proto_server_stats(a->srv);

	CTR_SET(a, dup_pending, ps->dup_pending);
	CTR_SET(a, dup_done, ps->dup_done);
	CTR_SET(a, stale, ps->stale);
	CTR_SET(a, refused_credit, ps->refused_credit);
	CTR_SET(a, reasm_full, ps->reasm_full);
	CTR_SET(a, reasm_timeout, ps->reasm_timeout);
	CTR_SET(a, auth_failed, ps->auth_failed);
	CTR_SET(a, aead_failed, ps->aead_failed);
	CTR_SET(a, replayed, ps->replayed);
	CTR_SET(a, sessions_opened, ps->sessions_opened);
	CTR_SET(a, sessions_expired, ps->sessions_expired);
	CTR_SET(a, sessions, firn_proto_server_sessions(a->srv));
}

/* The agent thread's CPU time so far (one clock_gettime, every tick and at close). */
static void
publish_cpu(struct ingest_agent *a)
{
	struct timespec ts;
	uint64_t now;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return;
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (a->cpu_start_ns == 0)
		a->cpu_start_ns = now;
	CTR_SET(a, cpu_ns, now - a->cpu_start_ns);
}

void
ingest_agent_on_close(void *arg)
{
	publish_cpu(arg);
}

int
ingest_agent_do_work(void *arg)
{
	struct ingest_agent *a = arg;
	uint64_t t0 = firn_mono_ns();
	int work = 0;

	a->now_ms = t0 / 1000000;
	if (routes_stale(a))
		ingest_routes_refresh(a);
	work += durable_drain(a);
	/* Pairs with the release store in firn_ingest_stop_rx(). */
	if (!__atomic_load_n(&a->rx_stopped, __ATOMIC_ACQUIRE))
		work += rx_once(a);
	if (a->now_ms >= a->next_tick_ms) {
		/* The batch is empty here, so expiring sessions frees nothing we point into. */
		firn_proto_server_tick(a->srv, a->now_ms);
		publish_proto_stats(a);
		publish_cpu(a);
		a->next_tick_ms = a->now_ms + INGEST_TICK_MS;
		if (a->now_ms >= a->next_sweep_ms) {
			shards_poll(a, false);
			a->next_sweep_ms = a->now_ms + INGEST_SWEEP_MS;
		}
	}
	work += dirty_flush(a);
	tx_flush(a);
	/* A dozen relaxed stores per busy cycle (not per record) keep the copy fresh. */
	if (work > 0)
		publish_proto_stats(a);
	CTR_SET(a, waiting, a->n_waiting);
	CTR_SET(a, waiting_bytes, a->waiting_bytes);
	/* Pairs with the acquire load in firn_ingest_drain(). */
	__atomic_store_n(&a->pub_outstanding, (uint64_t)a->n_waiting + a->ntx + a->n_dirty,
	                 __ATOMIC_RELEASE);
	if (work > 0)
		CTR_ADD(a, busy_ns, firn_mono_ns() - t0);
	return work;
}

/* ---- set-up
 * ---------------------------------------------------------------------------------------- */

int
ingest_agent_init(struct firn_ingest *ing, struct ingest_agent *a, unsigned idx)
{
	const struct firn_ingest_conf *c = &ing->conf;
	uint32_t cap = 1;

	a->ing = ing;
	a->idx = idx;
	a->queue = (uint16_t)idx;
	/* One agent keeps the plain name the profiling tools know. */
	if (ing->n_agents == 1)
		snprintf(a->name, sizeof(a->name), "firn-rx");
	else
		snprintf(a->name, sizeof(a->name), "firn-rx%u", idx);
	a->ctr = &ing->ctrs[idx];
	a->waits = calloc(c->max_waiting, sizeof(*a->waits));
	a->shards = calloc(c->max_shards, sizeof(*a->shards));
	while (cap < 2 * c->max_shards)
		cap <<= 1;
	a->sidx = malloc(cap * sizeof(*a->sidx));
	a->sidx_mask = cap - 1;
	a->bents = calloc(INGEST_BATCH, sizeof(*a->bents));
	a->bshards = calloc(INGEST_BATCH, sizeof(*a->bshards));
	a->hkeys = calloc(INGEST_BATCH, sizeof(*a->hkeys));
	a->tmp = calloc(INGEST_BATCH, sizeof(*a->tmp));
	a->tmpe = calloc(INGEST_BATCH, sizeof(*a->tmpe));
	a->dirty_cap = (c->max_sessions ? c->max_sessions : 1024) * 2;
	a->dirty = calloc(a->dirty_cap, sizeof(*a->dirty));
	a->kcache = calloc(INGEST_KCACHE, sizeof(*a->kcache));
	if (a->kcache == NULL || a->waits == NULL || a->shards == NULL || a->sidx == NULL ||
	    a->bents == NULL || a->bshards == NULL || a->hkeys == NULL || a->tmp == NULL ||
	    a->tmpe == NULL || a->dirty == NULL)
		return firn_err_set(-ENOMEM, "ingest agent %u: out of memory", idx);
	for (uint32_t i = 0; i < c->max_waiting; i++)
		a->waits[i].next = i + 1 < c->max_waiting ? i + 1 : INGEST_NIL;
	a->wait_free = 0;
	for (uint32_t i = 0; i < c->max_shards; i++)
		a->shards[i].next_free = i + 1 < c->max_shards ? i + 1 : INGEST_NIL;
	a->shard_free = 0;
	for (uint32_t i = 0; i < cap; i++)
		a->sidx[i] = INGEST_NIL;
	return 0;
}

void
ingest_agent_fini(struct ingest_agent *a)
{
	firn_proto_server_destroy(a->srv);
	a->srv = NULL;
	streams_free(a->streams, a->n_streams);
	a->streams = NULL;
	a->n_streams = 0;
	free(a->waits);
	free(a->shards);
	free(a->sidx);
	free(a->bents);
	free(a->bshards);
	free(a->hkeys);
	free(a->tmp);
	free(a->tmpe);
	free(a->dirty);
	free(a->kcache);
	free(a->txbuf);
	memset(a, 0, sizeof(*a));
}
