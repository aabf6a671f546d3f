/*
 * read.c - reading durable records back.
 *
 * A read finds the block that holds its start (binary search over the
 * shard's segments, then over the segment's index entries), reads it with
 * O_DIRECT into an aligned buffer, verifies and decodes it with a codec from
 * a small pool (codecs are per-thread scratch; readers come from any
 * thread), and copies the records it wants into memory the result owns. The
 * shard lock is held only to look entries up, never across I/O, so readers
 * do not stall appends or the writer.
 *
 * Only counters below the durable watermark are returned: the index only
 * holds blocks whose write completed, and the watermark moves in the same
 * critical section. O_DIRECT also keeps the page cache out of the picture
 * (a buffered read racing a direct write could cache stale zeroes).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_internal.h"

struct firn_seg_codec *
store_codec_get(struct firn_store *st)
{
	struct firn_seg_codec *cx = NULL;

	pthread_mutex_lock(&st->cx_lock);
	if (st->ncx > 0)
		cx = st->cxs[--st->ncx];
	pthread_mutex_unlock(&st->cx_lock);
	if (cx == NULL)
		cx = firn_seg_codec_create(st->read_max_raw, false);
	return cx;
}

void
store_codec_put(struct firn_store *st, struct firn_seg_codec *cx)
{
	if (cx == NULL)
		return;
	pthread_mutex_lock(&st->cx_lock);
	if (st->ncx == st->capcx && st->capcx < 64) {
		unsigned cap = st->capcx ? st->capcx * 2 : 4;
		struct firn_seg_codec **p = realloc(st->cxs, cap * sizeof(*p));

		if (p != NULL) {
			st->cxs = p;
			st->capcx = cap;
		}
	}
	if (st->ncx < st->capcx) {
		st->cxs[st->ncx++] = cx;
		cx = NULL;
	}
	pthread_mutex_unlock(&st->cx_lock);
	firn_seg_codec_destroy(cx);
}

/* A block to read, copied out of the shard under its lock. */
struct read_loc {
	struct firn_seg_index_entry ent;
	uint64_t seg_first;
	bool quarantined;
	struct firn_seg_key key;
};

/* Index of the last segment whose first counter is <= c (0 if none). Shard locked. */
static uint32_t
read_seg_find(const struct store_shard *sh, uint64_t c)
{
	uint32_t lo = 0, hi = sh->nsegs;

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (sh->segs[mid]->first_counter <= c)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * The block holding counter c, or the first block after it. false when
 * there is none below durable. Shard locked.
 */
static bool
read_locate(const struct store_shard *sh, uint64_t c, uint64_t durable, struct read_loc *loc)
{
	uint32_t i;

	for (i = read_seg_find(sh, c); i < sh->nsegs; i++) {
		const struct store_seg *seg = sh->segs[i];
		uint32_t j = firn_seg_index_find_counter(seg->ents, seg->n, c);

		if (j >= seg->n)
			continue;
		if (seg->ents[j].first_counter >= durable)
			return false;
		loc->ent = seg->ents[j];
		loc->seg_first = seg->first_counter;
		loc->quarantined = seg->quarantined;
		loc->key = seg->key;
		return true;
	}
	return false;
}

/* First counter of the first block whose last_ts >= ts, or durable. Shard locked. */
static uint64_t
read_locate_time(const struct store_shard *sh, int64_t ts, uint64_t durable)
{
	uint32_t i;

	for (i = 0; i < sh->nsegs; i++) {
		const struct store_seg *seg = sh->segs[i];
		uint32_t j;

		if (seg->n == 0 || seg->ents[seg->n - 1].last_ts_ms < ts)
			continue;
		j = firn_seg_index_find_time(seg->ents, seg->n, ts);
		if (j < seg->n)
			return FIRN_MIN(seg->ents[j].first_counter, durable);
	}
	return durable;
}

/* Growing output: records, and their bytes (pointers fixed up at the end). */
struct read_out {
	struct firn_record *recs;
	uint32_t n, cap;
	uint8_t *mem;
	size_t used, memcap;
};

static int
read_out_add(struct read_out *o, const struct firn_record *r, uint64_t counter)
{
	size_t need = (size_t)r->key_len + r->data_len;
	struct firn_record *d;

	if (o->n == o->cap) {
		uint32_t cap = o->cap ? o->cap * 2 : 64;
		struct firn_record *p = realloc(o->recs, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		o->recs = p;
		o->cap = cap;
	}
	if (o->memcap - o->used < need) {
		size_t cap = FIRN_MAX(o->memcap * 2, o->used + need + 4096);
		uint8_t *p = realloc(o->mem, cap);

		if (p == NULL)
			return -ENOMEM;
		o->mem = p;
		o->memcap = cap;
	}
	d = &o->recs[o->n++];
	*d = *r;
	d->counter = counter;
	/* Offsets for now; the buffer may still move. */
	d->key = (const uint8_t *)(uintptr_t)o->used;
	memcpy(o->mem + o->used, r->key, r->key_len);
	o->used += r->key_len;
	d->data = (const uint8_t *)(uintptr_t)o->used;
	memcpy(o->mem + o->used, r->data, r->data_len);
	o->used += r->data_len;
	return 0;
}

int
firn_store_read(struct firn_store *st, uint64_t stream_id, uint32_t shard,
                const struct firn_read_req *req, struct firn_read_res *res)
{
	struct firn_seg_codec *cx = NULL;
	struct read_out out = {0};
	struct store_shard *sh;
	uint64_t durable, next, open_first = UINT64_MAX;
	bool open_q = false, tmode = req->from == FIRN_READ_AT_TIME, done = false;
	size_t bytes = 0, rbcap = 0;
	void *rb = NULL;
	unsigned retries = 0;
	int fd = -1, rc = 0;
	uint32_t i;

	memset(res, 0, sizeof(*res));
	if (req->max_records == 0)
		return -EINVAL;
	sh = store_shard_get(st, stream_id, shard, false);
	if (sh == NULL)
		return -ENOENT;
	pthread_mutex_lock(&sh->lock);
	durable = sh->durable_next;
	res->durable_next = durable;
	res->tip_ts_ms = sh->durable_ts;
	res->first_counter = durable;
	for (i = 0; i < sh->nsegs; i++)
		if (sh->segs[i]->n > 0) {
			res->first_counter = sh->segs[i]->ents[0].first_counter;
			break;
		}
	if (tmode)
		next = read_locate_time(sh, req->ts_ms, durable);
	else
		next = FIRN_MAX(req->counter, res->first_counter);
	pthread_mutex_unlock(&sh->lock);
	if (next > durable)
		next = durable;

	cx = store_codec_get(st);
	if (cx == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while (!done && next < durable && out.n < req->max_records) {
		struct firn_seg_ctx ctx = {.stream_id = stream_id, .shard = shard};
		struct firn_seg_index_entry ent;
		struct firn_seg_view view;
		struct firn_record r;
		struct read_loc loc;
		uint64_t cnt;
		bool found;
		ssize_t got;
		size_t have;

		pthread_mutex_lock(&sh->lock);
		found = read_locate(sh, next, durable, &loc);
		pthread_mutex_unlock(&sh->lock);
		if (!found)
			break;
		if (loc.ent.first_counter > next)
			next = loc.ent.first_counter; /* a gap: trimmed or quarantined */
		if (fd < 0 || loc.seg_first != open_first || loc.quarantined != open_q) {
			struct store_seg tmp = {.first_counter = loc.seg_first,
			                        .quarantined = loc.quarantined};
			char path[PATH_MAX];

			if (fd >= 0)
				close(fd);
			store_seg_path(sh, &tmp, path, sizeof(path));
			fd = store_open_file(path, O_RDONLY, st->odirect);
			if (fd < 0 && fd == -ENOENT && ++retries < 8) {
				/* Removed by GC since we looked: look again. */
				fd = -1;
				continue;
			}
			if (fd < 0) {
				rc = firn_err_set(fd, "read %s: %s", path, strerror(-fd));
				fd = -1;
				goto out;
			}
			open_first = loc.seg_first;
			open_q = loc.quarantined;
		}
		if (rbcap < loc.ent.disk_len) {
			free(rb);
			rbcap = loc.ent.disk_len;
			rb = firn_disk_alloc(rbcap);
			if (rb == NULL) {
				rc = -ENOMEM;
				goto out;
			}
		}
		for (have = 0; have < loc.ent.disk_len; have += (size_t)got) {
			got = pread(fd, (uint8_t *)rb + have, loc.ent.disk_len - have,
			            (off_t)(loc.ent.offset + have));
			if (got < 0 && errno == EINTR) {
				got = 0;
				continue;
			}
			if (got <= 0) {
				rc = firn_err_set(got < 0 ? -errno : -EIO,
				                  "stream %" PRIu64
				                  " shard %u: read block at %" PRIu64
				                  " of segment %020" PRIu64 ": %s",
				                  stream_id, shard, loc.ent.offset, loc.seg_first,
				                  got < 0 ? strerror(errno) : "short read");
				goto out;
			}
		}
		ctx.key = &loc.key;
		rc = firn_seg_block_open(cx, &ctx, rb, loc.ent.disk_len, loc.ent.offset, &ent,
		                         &view);
		if (rc < 0 && out.n > 0) {
			/* Return what we have; the next read starting here reports it. */
			rc = 0;
			break;
		}
		if (rc < 0) {
			rc = firn_err_set(-EIO,
			                  "stream %" PRIu64 " shard %u: block at %" PRIu64
			                  " of segment %020" PRIu64 " is damaged (%s)",
			                  stream_id, shard, loc.ent.offset, loc.seg_first,
			                  strerror(-rc));
			goto out;
		}
		for (cnt = ent.first_counter; (rc = firn_seg_view_next(&view, &r)) == 1; cnt++) {
			if (cnt < next)
				continue;
			if (cnt >= durable) {
				done = true;
				break;
			}
			if (tmode && r.ts_ms < req->ts_ms) {
				next = cnt + 1;
				continue;
			}
			tmode = false;
			if (out.n > 0 && bytes + r.data_len > req->max_bytes) {
				done = true;
				break;
			}
			rc = read_out_add(&out, &r, cnt);
			if (rc < 0)
				goto out;
			bytes += r.data_len;
			next = cnt + 1;
			if (out.n >= req->max_records) {
				done = true;
				break;
			}
		}
		if (rc < 0) {
			rc = firn_err_set(-EIO,
			                  "stream %" PRIu64
			                  " shard %u: bad record in block at %" PRIu64,
			                  stream_id, shard, loc.ent.offset);
			goto out;
		}
		rc = 0;
		if (!done)
			next = FIRN_MAX(next, ent.first_counter + ent.count);
	}
	for (i = 0; i < out.n; i++) {
		out.recs[i].key = out.mem + (uintptr_t)out.recs[i].key;
		out.recs[i].data = out.mem + (uintptr_t)out.recs[i].data;
	}
	res->recs = out.recs;
	res->n = out.n;
	res->mem = out.mem;
	res->next_counter = FIRN_MIN(next, durable);
	out.recs = NULL;
	out.mem = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(rb);
	free(out.recs);
	free(out.mem);
	store_codec_put(st, cx);
	store_shard_put(sh);
	return rc;
}

void
firn_read_res_free(struct firn_read_res *res)
{
	if (res == NULL)
		return;
	free(res->recs);
	free(res->mem);
	res->recs = NULL;
	res->mem = NULL;
	res->n = 0;
}
