/*
 * dedupe.c - exactly-once per producer: who sent what, and what we answered.
 *
 * A producer (a 64-bit id its client keeps across restarts) numbers its
 * records 1, 2, 3, ... A retransmit reuses the number. For each producer we
 * remember hi, the highest number seen, and a ring of W slots. Slot seq%W
 * holds what happened to seq: still pending in the store, or done, with the
 * (shard, counter) or error we answered. A retransmit of a done record gets
 * that same answer again and is not stored a second time. A retransmit of a
 * pending record is dropped, because its DURABLE ack is on its way.
 *
 * The window is anchored at hi rather than at a contiguous base, so a
 * producer that skips numbers (it reserved a block before a crash, or gave
 * up on a record) never stalls it. doc/protocol.md §8.2 explains the
 * trade-off. Sliding never forgets a pending record: a new seq that would
 * push a pending slot out is refused (-EBUSY, OVERLOADED on the wire) until
 * that record is done.
 *
 * Nothing here is persisted. After a crash, firnd rebuilds the windows from
 * the records themselves, since the store keeps (producer_id, producer_seq)
 * with every record, by calling firn_proto_dedupe_seed() for each record
 * read back within the horizon (§8.3).
 *
 * The table is fixed: N producers × W slots, allocated once. A producer with
 * no session and nothing pending can be evicted (least recently used) to
 * make room.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

#define NIL UINT32_MAX

static uint32_t
hash_id(uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdull;
	id ^= id >> 33;
	return (uint32_t)id;
}

struct firn_proto_dedupe *
firn_proto_dedupe_create(unsigned producers, unsigned window)
{
	struct firn_proto_dedupe *d;
	unsigned buckets = 1;

	if (producers == 0 || window < 64 || (window & (window - 1)) != 0 || window > (1u << 24)) {
		firn_err_set(-EINVAL,
		             "dedupe window %u must be a power of two >= 64, producers %u >= 1",
		             window, producers);
		return NULL;
	}
	while (buckets < 2 * producers)
		buckets <<= 1;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		goto nomem;
	d->n = producers;
	d->window = window;
	d->mask = buckets - 1;
	d->prod = calloc(producers, sizeof(*d->prod));
	d->ents = calloc((size_t)producers * window, sizeof(*d->ents));
	d->heads = malloc(buckets * sizeof(*d->heads));
	d->free_stack = malloc(producers * sizeof(*d->free_stack));
	if (d->prod == NULL || d->ents == NULL || d->heads == NULL || d->free_stack == NULL)
		goto nomem;
	for (unsigned i = 0; i < buckets; i++)
		d->heads[i] = NIL;
	for (unsigned i = 0; i < producers; i++) {
		d->prod[i].ents = d->ents + (size_t)i * window;
		d->prod[i].next = NIL;
		d->prod[i].window = window;
		d->free_stack[i] = producers - 1 - i;
	}
	d->n_free = producers;
	return d;
nomem:
	firn_proto_dedupe_destroy(d);
	firn_err_set(-ENOMEM, "dedupe table for %u producers x %u records: out of memory",
	             producers, window);
	return NULL;
}

void
firn_proto_dedupe_destroy(struct firn_proto_dedupe *d)
{
	if (d == NULL)
		return;
	free(d->prod);
	free(d->ents);
	free(d->heads);
	free(d->free_stack);
	free(d);
}

static void
unlink_producer(struct firn_proto_dedupe *d, struct firn_proto_producer *p)
{
	uint32_t idx = (uint32_t)(p - d->prod);
	uint32_t *link = &d->heads[hash_id(p->id) & d->mask];

	while (*link != NIL && *link != idx)
		link = &d->prod[*link].next;
	if (*link == idx)
		*link = p->next;
	p->next = NIL;
}

struct firn_proto_producer *
firn_proto_producer_get(struct firn_proto_dedupe *d, uint64_t id, bool create, uint64_t now_ms)
{
	uint32_t b, idx;
	struct firn_proto_producer *p;

	if (id == 0)
		return NULL;
	b = hash_id(id) & d->mask;
	for (idx = d->heads[b]; idx != NIL; idx = d->prod[idx].next) {
		if (d->prod[idx].id == id) {
			d->prod[idx].last_use_ms = FIRN_MAX(d->prod[idx].last_use_ms, now_ms);
			return &d->prod[idx];
		}
	}
	if (!create)
		return NULL;
	if (d->n_free > 0) {
		idx = d->free_stack[--d->n_free];
	} else {
		/* Evict the least recently used producer that owes nothing to anyone. */
		struct firn_proto_producer *victim = NULL;

		for (unsigned i = 0; i < d->n; i++) {
			p = &d->prod[i];
			if (p->session == NULL && p->pending == 0 &&
			    (victim == NULL || p->last_use_ms < victim->last_use_ms))
				victim = p;
		}
		if (victim == NULL) {
			firn_err_set(-ENOSPC, "producer table full (%u producers, all active)",
			             d->n);
			return NULL;
		}
		unlink_producer(d, victim);
		idx = (uint32_t)(victim - d->prod);
	}
	p = &d->prod[idx];
	memset(p->ents, 0, (size_t)d->window * sizeof(*p->ents));
	p->id = id;
	p->hi = 0;
	p->last_use_ms = now_ms;
	p->session = NULL;
	p->pending = 0;
	p->key_idx = -1;
	memset(&p->credit, 0, sizeof(p->credit));
	p->next = d->heads[b];
	d->heads[b] = idx;
	return p;
}

uint64_t
firn_proto_producer_id(const struct firn_proto_producer *p)
{
	return p->id;
}

uint64_t
firn_proto_producer_hi(const struct firn_proto_producer *p)
{
	return p->hi;
}

uint32_t
firn_proto_producer_pending(const struct firn_proto_producer *p)
{
	return p->pending;
}

static inline unsigned
producer_window(const struct firn_proto_producer *p)
{
	return p->window;
}

enum firn_proto_dedupe_res
firn_proto_dedupe_check(const struct firn_proto_producer *p, uint64_t seq,
                        struct firn_proto_durable *orig)
{
	unsigned w = producer_window(p);
	const struct dedupe_ent *e;

	if (seq == 0)
		return FIRN_PROTO_DEDUPE_STALE;
	if (seq > p->hi)
		return FIRN_PROTO_DEDUPE_NEW;
	if (p->hi - seq >= w)
		return FIRN_PROTO_DEDUPE_STALE;
	e = &p->ents[seq & (w - 1)];
	if (e->seq != seq)
		return FIRN_PROTO_DEDUPE_NEW;
	if (e->state == DEDUPE_PENDING)
		return FIRN_PROTO_DEDUPE_PENDING;
	if (orig != NULL) {
		orig->seq = seq;
		orig->counter = e->counter;
		orig->shard = e->shard;
		orig->count = 1;
		orig->status = e->status;
		orig->flags = 0;
	}
	return FIRN_PROTO_DEDUPE_DONE;
}

/*
 * Move hi up to seq, clearing the slots of the numbers that fall out. With
 * check_pending, refuse (-EBUSY, nothing changed) if one of them is pending.
 */
static int
slide(struct firn_proto_producer *p, unsigned w, uint64_t seq, bool check_pending)
{
	uint64_t steps = FIRN_MIN(seq - p->hi, (uint64_t)w);

	if (check_pending) {
		for (uint64_t k = 1; k <= steps; k++) {
			const struct dedupe_ent *e = &p->ents[(p->hi + k) & (w - 1)];

			if (e->seq != 0 && e->state == DEDUPE_PENDING)
				return -EBUSY;
		}
	}
	for (uint64_t k = 1; k <= steps; k++) {
		struct dedupe_ent *e = &p->ents[(p->hi + k) & (w - 1)];

		if (e->seq != 0 && e->state == DEDUPE_PENDING)
			p->pending--;
		memset(e, 0, sizeof(*e));
	}
	p->hi = seq;
	return 0;
}

int
firn_proto_dedupe_reserve(struct firn_proto_producer *p, uint64_t seq, uint32_t len)
{
	unsigned w = producer_window(p);
	struct dedupe_ent *e;
	int rc;

	if (seq == 0)
		return -ESTALE;
	if (seq > p->hi) {
		rc = slide(p, w, seq, true);
		if (rc < 0)
			return rc;
	} else if (p->hi - seq >= w) {
		return -ESTALE;
	}
	e = &p->ents[seq & (w - 1)];
	if (e->seq == seq)
		return -EALREADY;
	memset(e, 0, sizeof(*e));
	e->seq = seq;
	e->len = len;
	e->state = DEDUPE_PENDING;
	p->pending++;
	return 0;
}

static struct dedupe_ent *
pending_ent(struct firn_proto_producer *p, uint64_t seq)
{
	unsigned w = producer_window(p);
	struct dedupe_ent *e;

	if (seq == 0 || seq > p->hi || p->hi - seq >= w)
		return NULL;
	e = &p->ents[seq & (w - 1)];
	return e->seq == seq && e->state == DEDUPE_PENDING ? e : NULL;
}

int
firn_proto_dedupe_done(struct firn_proto_producer *p, uint64_t seq, uint32_t shard,
                       uint64_t counter, uint8_t status)
{
	struct dedupe_ent *e = pending_ent(p, seq);

	if (e == NULL)
		return -ENOENT;
	e->state = DEDUPE_DONE;
	e->status = status;
	e->shard = status == FIRN_PROTO_OK ? shard : 0;
	e->counter = status == FIRN_PROTO_OK ? counter : 0;
	p->pending--;
	return (int)FIRN_MIN(e->len, (uint32_t)INT32_MAX);
}

int
firn_proto_dedupe_forget(struct firn_proto_producer *p, uint64_t seq)
{
	struct dedupe_ent *e = pending_ent(p, seq);
	int len;

	if (e == NULL)
		return -ENOENT;
	len = (int)FIRN_MIN(e->len, (uint32_t)INT32_MAX);
	memset(e, 0, sizeof(*e));
	p->pending--;
	return len;
}

int
firn_proto_dedupe_seed(struct firn_proto_dedupe *d, uint64_t producer_id, uint64_t seq,
                       uint32_t shard, uint64_t counter, uint64_t now_ms)
{
	struct firn_proto_producer *p;
	struct dedupe_ent *e;
	unsigned w = d->window;

	if (producer_id == 0 || seq == 0)
		return -EINVAL;
	p = firn_proto_producer_get(d, producer_id, true, now_ms);
	if (p == NULL)
		return -ENOSPC;
	if (seq > p->hi)
		slide(p, w, seq, false);
	else if (p->hi - seq >= w)
		return 0; /* older than the window: it can no longer matter */
	e = &p->ents[seq & (w - 1)];
	if (e->seq == seq && e->state == DEDUPE_PENDING)
		p->pending--;
	memset(e, 0, sizeof(*e));
	e->seq = seq;
	e->shard = shard;
	e->counter = counter;
	e->state = DEDUPE_DONE;
	e->status = FIRN_PROTO_OK;
	return 0;
}
