/*
 * disk_uring.c - lib/disk's queue interface over io_uring (liburing).
 *
 * The whole driver is this file, in the spirit of DPDK's net/null: a queue
 * is a ring plus two counts, prepared (SQEs filled but not submitted) and
 * in flight (submitted, completion not reaped). write/read/fsync fill SQEs,
 * submit() hands them to the kernel with one io_uring_enter(), reap() copies
 * completions out in a burst.
 *
 * Depth. The ring's submission queue has `depth` entries and the completion
 * queue twice that (liburing's default), but we also refuse to prepare more
 * than `depth` I/Os that are prepared or in flight together. That keeps the
 * completion queue from ever overflowing, whatever the kernel's overflow
 * policy, and gives callers a simple -EBUSY to back off on.
 *
 * Durability. FIRN_DISK_DSYNC sets RWF_DSYNC on the write, which is
 * O_DSYNC for this one I/O: the completion arrives after the data (and any
 * metadata needed to read it back) is on stable storage. With O_DIRECT on
 * a pure overwrite of written blocks, the kernel turns this into a FUA write
 * (or a write plus a cache flush), with no journal commit.
 *
 * Fixed buffers. register_buffers() pins the given buffers once; a write
 * whose buffer lies inside one of them becomes IORING_OP_WRITE_FIXED and
 * skips per-I/O page pinning.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "firn_common.h"
#include "firn_disk_uring.h"

struct firn_disk_queue {
	struct io_uring ring;
	unsigned depth;
	unsigned prepared; /* SQEs filled since the last submit */
	unsigned inflight; /* submitted, not yet reaped */
	struct iovec *fixed;
	unsigned nfixed;
};

static struct firn_disk_queue *
uring_create(unsigned depth)
{
	struct firn_disk_queue *q;
	int rc;

	if (depth == 0)
		depth = 1;
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		firn_err_set(-ENOMEM, "io_uring queue: out of memory");
		return NULL;
	}
	q->depth = depth;
	/*
	 * COOP_TASKRUN: completions are posted when we next enter the kernel
	 * (we always do, to wait) instead of interrupting the writer thread.
	 * Older kernels reject the flag; fall back to a plain ring.
	 */
	rc = io_uring_queue_init(depth, &q->ring, IORING_SETUP_COOP_TASKRUN);
	if (rc == -EINVAL)
		rc = io_uring_queue_init(depth, &q->ring, 0);
	if (rc < 0) {
		firn_err_set(rc, "io_uring_queue_init(%u): %s", depth, strerror(-rc));
		free(q);
		return NULL;
	}
	return q;
}

static void
uring_destroy(struct firn_disk_queue *q)
{
	if (q == NULL)
		return;
	io_uring_queue_exit(&q->ring);
	free(q->fixed);
	free(q);
}

static int
uring_register_buffers(struct firn_disk_queue *q, const struct iovec *iov, unsigned n)
{
	struct iovec *copy;
	int rc;

	if (q->nfixed > 0) {
		io_uring_unregister_buffers(&q->ring);
		free(q->fixed);
		q->fixed = NULL;
		q->nfixed = 0;
	}
	if (n == 0)
		return 0;
	copy = calloc(n, sizeof(*copy));
	if (copy == NULL)
		return -ENOMEM;
	memcpy(copy, iov, n * sizeof(*copy));
	rc = io_uring_register_buffers(&q->ring, copy, n);
	if (rc < 0) {
		free(copy);
		return rc;
	}
	q->fixed = copy;
	q->nfixed = n;
	return 0;
}

/* Index of the registered buffer holding [buf, buf+len), or -1. */
static int
uring_fixed_index(const struct firn_disk_queue *q, const void *buf, size_t len)
{
	uintptr_t b = (uintptr_t)buf;
	unsigned i;

	for (i = 0; i < q->nfixed; i++) {
		uintptr_t s = (uintptr_t)q->fixed[i].iov_base;

		if (b >= s && b + len <= s + q->fixed[i].iov_len)
			return (int)i;
	}
	return -1;
}

static struct io_uring_sqe *
uring_sqe(struct firn_disk_queue *q)
{
	struct io_uring_sqe *sqe;

	if (q->prepared + q->inflight >= q->depth)
		return NULL;
	sqe = io_uring_get_sqe(&q->ring);
	if (sqe != NULL)
		q->prepared++;
	return sqe;
}

static int
uring_write(struct firn_disk_queue *q, int fd, const void *buf, size_t len, uint64_t off,
            unsigned flags, void *tag)
{
	struct io_uring_sqe *sqe = uring_sqe(q);
	int idx;

	if (sqe == NULL)
		return -EBUSY;
	idx = uring_fixed_index(q, buf, len);
	if (idx >= 0)
		io_uring_prep_write_fixed(sqe, fd, buf, (unsigned)len, off, idx);
	else
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
	if (flags & FIRN_DISK_DSYNC)
		sqe->rw_flags = RWF_DSYNC;
	io_uring_sqe_set_data(sqe, tag);
	return 0;
}

static int
uring_read(struct firn_disk_queue *q, int fd, void *buf, size_t len, uint64_t off, void *tag)
{
	struct io_uring_sqe *sqe = uring_sqe(q);
	int idx;

	if (sqe == NULL)
		return -EBUSY;
	idx = uring_fixed_index(q, buf, len);
	if (idx >= 0)
		io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)len, off, idx);
	else
		io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	io_uring_sqe_set_data(sqe, tag);
	return 0;
}

static int
uring_fsync(struct firn_disk_queue *q, int fd, void *tag)
{
	struct io_uring_sqe *sqe = uring_sqe(q);

	if (sqe == NULL)
		return -EBUSY;
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, tag);
	return 0;
}

static int
uring_submit(struct firn_disk_queue *q)
{
	int rc;

	if (q->prepared == 0)
		return 0;
	do
		rc = io_uring_submit(&q->ring);
	while (rc == -EINTR);
	if (rc < 0)
		return rc;
	/*
	 * io_uring_submit() consumes every SQE it was given unless the kernel
	 * refused the enter itself; a partial count means the rest stay queued
	 * in the SQ ring and go with the next submit.
	 */
	if ((unsigned)rc > q->prepared)
		rc = (int)q->prepared;
	q->prepared -= (unsigned)rc;
	q->inflight += (unsigned)rc;
	return rc;
}

static int
uring_reap(struct firn_disk_queue *q, struct firn_disk_cpl *cpl, unsigned max, unsigned min_wait)
{
	struct io_uring_cqe *cqes[64];
	unsigned got = 0;

	if (min_wait > q->inflight)
		min_wait = q->inflight;
	if (min_wait > max)
		min_wait = max;
	if (min_wait > 0) {
		struct io_uring_cqe *cqe;
		int rc;

		do
			rc = io_uring_wait_cqe_nr(&q->ring, &cqe, min_wait);
		while (rc == -EINTR);
		if (rc < 0)
			return rc;
	}
	while (got < max) {
		unsigned want = FIRN_MIN(max - got, (unsigned)FIRN_ARRAY_SIZE(cqes));
		unsigned n = io_uring_peek_batch_cqe(&q->ring, cqes, want), i;

		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			cpl[got + i].tag = io_uring_cqe_get_data(cqes[i]);
			cpl[got + i].res = cqes[i]->res;
		}
		io_uring_cq_advance(&q->ring, n);
		got += n;
	}
	q->inflight -= FIRN_MIN(got, q->inflight);
	return (int)got;
}

static unsigned
uring_inflight(struct firn_disk_queue *q)
{
	return q->prepared + q->inflight;
}

const struct firn_disk_ops firn_disk_uring_ops = {
        .name = "uring",
        .create = uring_create,
        .destroy = uring_destroy,
        .register_buffers = uring_register_buffers,
        .write = uring_write,
        .read = uring_read,
        .fsync = uring_fsync,
        .submit = uring_submit,
        .reap = uring_reap,
        .inflight = uring_inflight,
};
