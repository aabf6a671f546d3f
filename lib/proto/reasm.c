/*
 * reasm.c - putting fragmented records back together, in bounded memory.
 *
 * Records up to 1 MiB arrive as fragments, in any order, possibly twice,
 * and possibly cut differently on a retransmit. The appliance must never
 * let that grow its memory without bound, so reassembly has three limits:
 *
 *   - a few slots per session (records in reassembly at once);
 *   - a byte cap per session;
 *   - one arena for everyone, allocated at start.
 *
 * The arena is a buddy allocator over 1 MiB top-level blocks, from 4 KiB up
 * to 1 MiB. It hands out one contiguous buffer per record (the store's
 * append wants contiguous data) and coalesces freed blocks, so a mix of
 * sizes does not fragment it into uselessness. Its bookkeeping lives in
 * side arrays indexed by 4 KiB page, not in the arena, so the arena is only
 * touched (and only faulted in) where records are actually copied.
 *
 * Coverage is a bitmap with one bit per byte (1/8 of the record, carved from
 * the same pool, in the data block's slack when it fits). Byte granularity
 * is what makes arbitrary cuts safe: a retransmit may cut the record at
 * other offsets than the first send, pieces may overlap, and any order works.
 * Marking a 1400-byte piece touches 22 words, and the record is complete
 * when the count of set bits reaches its length.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

#define POOL_MIN_ORDER 12
#define POOL_MAX_ORDER 20
#define POOL_ORDERS (POOL_MAX_ORDER - POOL_MIN_ORDER + 1)
#define POOL_PAGE (1u << POOL_MIN_ORDER)
#define PAGES_PER_TOP (1u << (POOL_MAX_ORDER - POOL_MIN_ORDER))
#define NIL UINT32_MAX

struct firn_proto_pool {
	uint8_t *mem;
	size_t bytes;
	uint32_t pages;
	uint8_t *order;   /* per page: order of the block that starts here */
	uint8_t *is_free; /* per page: 1 if a free block starts here */
	uint32_t *prev, *next;
	uint32_t head[POOL_ORDERS];
	size_t used;
};

static void
fl_push(struct firn_proto_pool *p, unsigned o, uint32_t pg)
{
	uint32_t h = p->head[o - POOL_MIN_ORDER];

	p->prev[pg] = NIL;
	p->next[pg] = h;
	if (h != NIL)
		p->prev[h] = pg;
	p->head[o - POOL_MIN_ORDER] = pg;
	p->is_free[pg] = 1;
	p->order[pg] = (uint8_t)o;
}

static void
fl_remove(struct firn_proto_pool *p, unsigned o, uint32_t pg)
{
	if (p->prev[pg] != NIL)
		p->next[p->prev[pg]] = p->next[pg];
	else
		p->head[o - POOL_MIN_ORDER] = p->next[pg];
	if (p->next[pg] != NIL)
		p->prev[p->next[pg]] = p->prev[pg];
	p->is_free[pg] = 0;
}

struct firn_proto_pool *
firn_proto_pool_create(size_t bytes)
{
	struct firn_proto_pool *p = calloc(1, sizeof(*p));
	size_t tops = FIRN_MAX(bytes >> POOL_MAX_ORDER, (size_t)1);

	if (p == NULL)
		goto nomem;
	p->bytes = tops << POOL_MAX_ORDER;
	p->pages = (uint32_t)(tops * PAGES_PER_TOP);
	p->mem = aligned_alloc(POOL_PAGE, p->bytes);
	p->order = calloc(p->pages, 1);
	p->is_free = calloc(p->pages, 1);
	p->prev = calloc(p->pages, sizeof(uint32_t));
	p->next = calloc(p->pages, sizeof(uint32_t));
	if (p->mem == NULL || p->order == NULL || p->is_free == NULL || p->prev == NULL ||
	    p->next == NULL)
		goto nomem;
	for (unsigned o = 0; o < POOL_ORDERS; o++)
		p->head[o] = NIL;
	for (size_t t = tops; t-- > 0;)
		fl_push(p, POOL_MAX_ORDER, (uint32_t)(t * PAGES_PER_TOP));
	return p;
nomem:
	firn_proto_pool_destroy(p);
	firn_err_set(-ENOMEM, "reassembly pool of %zu bytes: out of memory", bytes);
	return NULL;
}

void
firn_proto_pool_destroy(struct firn_proto_pool *p)
{
	if (p == NULL)
		return;
	free(p->mem);
	free(p->order);
	free(p->is_free);
	free(p->prev);
	free(p->next);
	free(p);
}

size_t
firn_proto_pool_used(const struct firn_proto_pool *p)
{
	return p->used;
}

static unsigned
order_for(size_t size)
{
	unsigned o = POOL_MIN_ORDER;

	while (((size_t)1 << o) < size)
		o++;
	return o;
}

int32_t
proto_pool_alloc(struct firn_proto_pool *p, size_t size, size_t *block)
{
	unsigned want, o;
	uint32_t pg;

	if (size == 0 || size > ((size_t)1 << POOL_MAX_ORDER))
		return -1;
	want = order_for(size);
	for (o = want; o <= POOL_MAX_ORDER && p->head[o - POOL_MIN_ORDER] == NIL; o++)
		;
	if (o > POOL_MAX_ORDER)
		return -1;
	pg = p->head[o - POOL_MIN_ORDER];
	fl_remove(p, o, pg);
	/* Split down, giving the upper halves back to the free lists. */
	while (o > want) {
		o--;
		fl_push(p, o, pg + (1u << (o - POOL_MIN_ORDER)));
	}
	p->order[pg] = (uint8_t)want;
	*block = (size_t)1 << want;
	p->used += *block;
	return (int32_t)pg;
}

void
proto_pool_free(struct firn_proto_pool *p, int32_t page)
{
	uint32_t pg = (uint32_t)page;
	unsigned o = p->order[pg];

	p->used -= (size_t)1 << o;
	while (o < POOL_MAX_ORDER) {
		uint32_t buddy = pg ^ (1u << (o - POOL_MIN_ORDER));

		if (!p->is_free[buddy] || p->order[buddy] != o)
			break;
		fl_remove(p, o, buddy);
		pg = FIRN_MIN(pg, buddy);
		o++;
	}
	fl_push(p, o, pg);
}

uint8_t *
proto_pool_ptr(struct firn_proto_pool *p, int32_t page)
{
	return p->mem + (size_t)page * POOL_PAGE;
}

/* ---- per-session reassembly ---------------------------------------------------- */

int
firn_proto_reasm_init(struct firn_proto_reasm *r, struct firn_proto_pool *pool, unsigned n_slots,
                      size_t mem_cap, uint32_t timeout_ms)
{
	r->slots = calloc(FIRN_MAX(n_slots, 1u), sizeof(*r->slots));
	if (r->slots == NULL)
		return -ENOMEM;
	r->pool = pool;
	r->n_slots = n_slots;
	r->mem_cap = mem_cap;
	r->mem_used = 0;
	r->timeout_ms = timeout_ms;
	return 0;
}

static void
slot_free(struct firn_proto_reasm *r, struct firn_proto_reasm_slot *s)
{
	if (s->state != REASM_FREE) {
		proto_pool_free(r->pool, s->page);
		if (s->bits_page >= 0)
			proto_pool_free(r->pool, s->bits_page);
		r->mem_used -= s->block;
	}
	s->state = REASM_FREE;
}

void
firn_proto_reasm_reset(struct firn_proto_reasm *r)
{
	for (unsigned i = 0; i < r->n_slots; i++)
		slot_free(r, &r->slots[i]);
}

void
firn_proto_reasm_fini(struct firn_proto_reasm *r)
{
	if (r->slots == NULL)
		return;
	firn_proto_reasm_reset(r);
	free(r->slots);
	r->slots = NULL;
}

bool
firn_proto_reasm_busy(const struct firn_proto_reasm *r, uint64_t seq)
{
	for (unsigned i = 0; i < r->n_slots; i++)
		if (r->slots[i].state != REASM_FREE && r->slots[i].seq == seq)
			return true;
	return false;
}

/* Set bits [lo, hi) and return how many were not set before. */
static uint32_t
mark(uint64_t *w, uint32_t lo, uint32_t hi)
{
	uint32_t added = 0;

	while (lo < hi) {
		uint32_t b = lo % 64, n = FIRN_MIN(64 - b, hi - lo);
		uint64_t m = n == 64 ? ~0ull : ((1ull << n) - 1) << b;

		added += (uint32_t)__builtin_popcountll(m & ~w[lo / 64]);
		w[lo / 64] |= m;
		lo += n;
	}
	return added;
}

/* Are bits [lo, hi) all set? */
static bool
all_marked(const uint64_t *w, uint32_t lo, uint32_t hi)
{
	while (lo < hi) {
		uint32_t b = lo % 64, n = FIRN_MIN(64 - b, hi - lo);
		uint64_t m = n == 64 ? ~0ull : ((1ull << n) - 1) << b;

		if ((w[lo / 64] & m) != m)
			return false;
		lo += n;
	}
	return true;
}

/*
 * Take pool memory for a record of total bytes: the data and its bitmap in
 * one block when they fit, else a data block plus a bitmap block. 0 or
 * -ENOBUFS (cap or pool), with nothing taken.
 */
/* What a record of total bytes costs against the session cap (see slot_alloc). */
static size_t
slot_cost(uint32_t total)
{
	size_t data = FIRN_ALIGN_UP((size_t)total, (size_t)8);
	size_t bm = FIRN_ALIGN_UP(((size_t)total + 7) / 8, (size_t)8);

	if (data + bm <= ((size_t)1 << POOL_MAX_ORDER))
		return (size_t)1 << order_for(data + bm);
	return ((size_t)1 << order_for(data)) + ((size_t)1 << order_for(bm));
}

static int
slot_alloc(struct firn_proto_reasm *r, struct firn_proto_reasm_slot *s, uint32_t total)
{
	size_t data = FIRN_ALIGN_UP((size_t)total, (size_t)8);
	size_t bm = FIRN_ALIGN_UP(((size_t)total + 7) / 8, (size_t)8), b1 = 0, b2 = 0;
	bool shared = data + bm <= ((size_t)1 << POOL_MAX_ORDER);
	size_t need = slot_cost(total);

	if (r->mem_used + need > r->mem_cap)
		return -ENOBUFS;
	s->page = proto_pool_alloc(r->pool, shared ? data + bm : data, &b1);
	if (s->page < 0)
		return -ENOBUFS;
	s->bits_page = -1;
	s->buf = proto_pool_ptr(r->pool, s->page);
	if (shared) {
		s->bits = (uint64_t *)(void *)(s->buf + data);
	} else {
		s->bits_page = proto_pool_alloc(r->pool, bm, &b2);
		if (s->bits_page < 0) {
			proto_pool_free(r->pool, s->page);
			return -ENOBUFS;
		}
		s->bits = (uint64_t *)(void *)proto_pool_ptr(r->pool, s->bits_page);
	}
	memset(s->bits, 0, bm);
	s->block = b1 + b2;
	r->mem_used += s->block;
	return 0;
}

/*
 * Could a fragment start a new record of any legal size right now, as far
 * as this session's slots and cap go? (The shared pool may still say no.)
 * A receiver that holds completed records until it has handed them on (a
 * batch for the store) asks this after each completion: when the answer
 * is no, it must hand its batch on first, or every fragment of the next
 * record is dropped as reasm_full although nothing is really in use.
 */
bool
firn_proto_reasm_room(const struct firn_proto_reasm *r)
{
	bool slot = false;

	for (unsigned i = 0; i < r->n_slots && !slot; i++)
		slot = r->slots[i].state == REASM_FREE;
	return slot && r->mem_used + slot_cost(FIRN_RECORD_DATA_MAX) <= r->mem_cap;
}

int
firn_proto_reasm_add(struct firn_proto_reasm *r, const struct firn_proto_rec *f, uint64_t now_ms,
                     struct firn_proto_rec *out, int *slot)
{
	struct firn_proto_reasm_slot *s = NULL, *free_slot = NULL;
	uint8_t flags = f->hash ? FIRN_PROTO_RF_HASH : 0;
	uint32_t lo = f->off, hi;

	if (f->total_len > FIRN_RECORD_DATA_MAX)
		return -E2BIG;
	if (f->len == 0 || f->total_len == 0 || f->off > f->total_len ||
	    f->len > f->total_len - f->off || f->data == NULL)
		return -EINVAL;
	if (f->off == 0 ? (f->key == NULL || f->key_len == 0 || f->key_len > FIRN_PARTITION_KEY_MAX)
	                : f->key_len != 0)
		return -EINVAL;
	hi = f->off + f->len;
	for (unsigned i = 0; i < r->n_slots; i++) {
		struct firn_proto_reasm_slot *t = &r->slots[i];

		if (t->state != REASM_FREE && t->seq == f->seq) {
			s = t;
			break;
		}
		if (t->state == REASM_FREE && free_slot == NULL)
			free_slot = t;
	}
	if (s != NULL) {
		if (s->state == REASM_COMPLETE)
			return -EALREADY;
		if (s->total_len != f->total_len || s->ref != f->stream_ref || s->flags != flags)
			return -EINVAL;
		if (all_marked(s->bits, lo, hi) && (f->off != 0 || s->have_first))
			return -EALREADY;
	} else {
		if (free_slot == NULL || slot_alloc(r, free_slot, f->total_len) < 0)
			return -ENOBUFS;
		s = free_slot;
		s->state = REASM_BUSY;
		s->seq = f->seq;
		s->total_len = f->total_len;
		s->ref = f->stream_ref;
		s->flags = flags;
		s->covered = 0;
		s->have_first = false;
		s->key_len = 0;
	}
	memcpy(s->buf + lo, f->data, f->len);
	s->covered += mark(s->bits, lo, hi);
	if (f->off == 0 && !s->have_first) {
		memcpy(s->key, f->key, f->key_len);
		s->key_len = f->key_len;
		s->have_first = true;
	}
	s->last_ms = now_ms;
	if (s->covered < s->total_len || !s->have_first)
		return 0;
	s->state = REASM_COMPLETE;
	memset(out, 0, sizeof(*out));
	out->seq = s->seq;
	out->key = s->key;
	out->key_len = s->key_len;
	out->data = s->buf;
	out->len = s->total_len;
	out->total_len = s->total_len;
	out->stream_ref = s->ref;
	out->hash = s->flags & FIRN_PROTO_RF_HASH;
	*slot = (int)(s - r->slots);
	return 1;
}

void
firn_proto_reasm_release(struct firn_proto_reasm *r, int slot)
{
	if (slot >= 0 && (unsigned)slot < r->n_slots)
		slot_free(r, &r->slots[slot]);
}

unsigned
firn_proto_reasm_expire(struct firn_proto_reasm *r, uint64_t now_ms)
{
	unsigned n = 0;

	for (unsigned i = 0; i < r->n_slots; i++) {
		struct firn_proto_reasm_slot *s = &r->slots[i];

		/* A complete record waits for its owner's release, not the clock. */
		if (s->state == REASM_BUSY && now_ms >= s->last_ms &&
		    now_ms - s->last_ms >= r->timeout_ms) {
			slot_free(r, s);
			n++;
		}
	}
	return n;
}
