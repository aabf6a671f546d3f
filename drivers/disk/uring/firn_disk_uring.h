/*
 * firn_disk_uring.h - the io_uring disk driver.
 *
 * Implements lib/disk's firn_disk_ops over liburing: one ring per queue,
 * writes with RWF_DSYNC for FIRN_DISK_DSYNC, fixed buffers when registered,
 * IORING_FSYNC_DATASYNC for fsync. Plug it into the store:
 *
 *	conf.disk = &firn_disk_uring_ops;
 *
 * Thread safety: a queue belongs to one thread.
 */
#ifndef FIRN_DISK_URING_H
#define FIRN_DISK_URING_H

#include "firn_disk.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const struct firn_disk_ops firn_disk_uring_ops;

#ifdef __cplusplus
}
#endif
#endif /* FIRN_DISK_URING_H */
