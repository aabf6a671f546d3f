/*
 * firn_disk.h - the interface between the store and a disk I/O driver.
 *
 * The store never includes liburing: it talks to a queue through this ops
 * table, and the daemon plugs in drivers/disk/uring (firn_disk_uring_ops).
 * The model is io_uring's: prepare many writes, submit them with one call,
 * reap completions in bursts. Buffers must be aligned to FIRN_DISK_ALIGN and
 * lengths and offsets multiples of it (O_DIRECT).
 *
 * Besides the ops, this library has the small helpers every O_DIRECT user
 * needs: aligned allocation and preallocation of a file region ahead of the
 * tail. Preallocation with real zeroes (not just fallocate) matters: an
 * O_DIRECT write into an unwritten extent makes the filesystem convert the
 * extent, a metadata change that turns every RWF_DSYNC write into a journal
 * commit. Writing zeroes ahead keeps the durable write a pure data write.
 *
 * Thread safety: a queue belongs to one thread (its writer agent).
 */
#ifndef FIRN_DISK_H
#define FIRN_DISK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIRN_DISK_ALIGN 4096u

/* Write flag: data must be on stable storage when the write completes. */
#define FIRN_DISK_DSYNC 1u

struct firn_disk_cpl {
	void *tag; /* as given when the I/O was prepared */
	int res;   /* bytes transferred, or -errno */
};

struct firn_disk_queue;

struct firn_disk_ops {
	const char *name;
	/* A queue with room for depth I/Os in flight. NULL on error (error chain). */
	struct firn_disk_queue *(*create)(unsigned depth);
	void (*destroy)(struct firn_disk_queue *q);
	/*
	 * Optionally register fixed buffers; writes whose buffer lies inside one
	 * use it without per-I/O page pinning. 0 or -errno (-ENOTSUP is fine).
	 */
	int (*register_buffers)(struct firn_disk_queue *q, const struct iovec *iov, unsigned n);
	/* Prepare a write (not yet submitted). -EBUSY when the queue is full. */
	int (*write)(struct firn_disk_queue *q, int fd, const void *buf, size_t len, uint64_t off,
	             unsigned flags, void *tag);
	/* Prepare a read. */
	int (*read)(struct firn_disk_queue *q, int fd, void *buf, size_t len, uint64_t off,
	            void *tag);
	/* Prepare an fdatasync of fd. */
	int (*fsync)(struct firn_disk_queue *q, int fd, void *tag);
	/* Submit everything prepared. Returns the number submitted or -errno. */
	int (*submit)(struct firn_disk_queue *q);
	/*
	 * Reap up to max completions, waiting until at least min_wait are there
	 * (0 = do not wait). Returns the count or -errno.
	 */
	int (*reap)(struct firn_disk_queue *q, struct firn_disk_cpl *cpl, unsigned max,
	            unsigned min_wait);
	/* I/Os prepared or in flight. */
	unsigned (*inflight)(struct firn_disk_queue *q);
};

/* Aligned, zeroed allocation of size bytes (rounded up). Free with free(). */
void *firn_disk_alloc(size_t size);

/*
 * Make [off, off+len) of fd allocated and written (zeroes), so later O_DIRECT
 * overwrites need no metadata update. Uses fallocate(FALLOC_FL_ZERO_RANGE)
 * where the filesystem makes that written, else writes zeroes. 0 or -errno
 * (-ENOSPC when the disk is full).
 */
int firn_disk_prealloc(int fd, uint64_t off, uint64_t len);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_DISK_H */
