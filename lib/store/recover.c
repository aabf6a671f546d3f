/*
 * recover.c - rebuild the store's memory from its files at open.
 *
 * Layout: <dir>/streams/<stream id>/<shard>/<first counter %020>.seg, plus
 * SEALED (a shard closed by split/merge) and *.seg.quarantine (damaged
 * segments set aside). Each shard's segments are scanned in counter order
 * with firn_seg_scan_file(), which verifies every block of an unsealed
 * segment (CRC, GCM tag, counter continuity) and trusts a sealed segment's
 * footer once it agrees with the blocks it names.
 *
 * What we do with each outcome:
 *
 *   - the last .seg, unsealed: the tail. If the scan says it is damaged
 *     (anything but zeroes after the last valid block: a torn last write, a
 *     flipped bit), it is truncated to the valid end and fsynced. That is the
 *     writer's side of the format's rule (doc/format.md section 6): nothing
 *     stale stays behind the cut, so no old block can ever be read as a
 *     continuation of new ones. Counters continue after the last valid
 *     record; what was cut was never acknowledged (a write is acknowledged
 *     only when it and everything before it are durable), unless the disk
 *     itself corrupted acknowledged data, which is counted and logged.
 *   - the last .seg, sealed: the shard has no tail; the next write starts a
 *     new segment.
 *   - an earlier .seg that is damaged or lost its footer (we always seal a
 *     segment before starting the next): renamed to .seg.quarantine (no writer
 *     touches it again, an operator can see it), counted, logged. Its valid
 *     prefix stays readable, so every record before the damage survives.
 *   - a header that does not decode (bad CRC): nothing in the file can be
 *     read. A last file with nothing but zeroes after its header is a
 *     segment whose creation was interrupted (the header, and the zeroes
 *     written with it, are made durable before any block is written) and is
 *     removed; anything else is quarantined.
 *
 * After open, firn_store_drop_orphans() (at the end of this file) removes
 * the directories of streams the catalog no longer has; the store cannot
 * tell those by itself, so the daemon passes the catalog's ids in.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_internal.h"

struct rec_file {
	uint64_t counter;
	bool quarantined;
};

static int
rec_file_cmp(const void *a, const void *b)
{
	const struct rec_file *x = a, *y = b;

	if (x->counter != y->counter)
		return x->counter < y->counter ? -1 : 1;
	/* Same counter: the quarantined one is older (its name was taken first). */
	return (int)y->quarantined - (int)x->quarantined;
}

/* "<20 digits>.seg" or "<20 digits>.seg.quarantine" */
static bool
rec_parse_name(const char *name, struct rec_file *f)
{
	char digits[21];
	const char *rest;

	if (strlen(name) < 24 || name[20] != '.')
		return false;
	memcpy(digits, name, 20);
	digits[20] = '\0';
	rest = name + 20;
	if (strcmp(rest, ".seg") == 0)
		f->quarantined = false;
	else if (strcmp(rest, ".seg.quarantine") == 0)
		f->quarantined = true;
	else
		return false;
	return firn_parse_u64(digits, &f->counter) == 0;
}

static int
rec_quarantine(struct firn_store *st, struct store_shard *sh, uint64_t counter, const char *why)
{
	char from[PATH_MAX], to[PATH_MAX];

	snprintf(from, sizeof(from), "%s/%020" PRIu64 ".seg", sh->dir, counter);
	if (snprintf(to, sizeof(to), "%s.quarantine", from) >= (int)sizeof(to))
		return -ENAMETOOLONG;
	if (rename(from, to) < 0)
		return firn_err_set(-errno, "quarantine %s: %s", from, strerror(errno));
	st->quarantined_segments++;
	FIRN_LOG(ERR, STORE_LOG, "quarantined %s: %s", to, why);
	return firn_fsync_dir(sh->dir);
}

/*
 * Is this (last, header-damaged) file an interrupted creation: no longer
 * than a header plus the zeroes written with it, and only zeroes after the
 * header?
 */
static bool
rec_only_header(const char *path, uint64_t size)
{
	uint64_t limit = FIRN_SEG_HEADER_SIZE + STORE_ZERO_CHUNK, off;
	uint8_t buf[4096];
	bool zero = true;
	int fd;

	if (size <= FIRN_SEG_HEADER_SIZE)
		return true;
	if (size > limit)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	for (off = FIRN_SEG_HEADER_SIZE; off < size && zero;) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);
		ssize_t i;

		if (n <= 0) {
			zero = n == 0;
			break;
		}
		for (i = 0; i < n; i++)
			if (buf[i] != 0)
				zero = false;
		off += (uint64_t)n;
	}
	close(fd);
	return zero;
}

/*
 * How far from off is the file written space: allocated extents that are
 * neither unwritten (fallocated, never written) nor holes? The writers put
 * plain, barrier-covered block writes only there (writer.c: a write into an
 * unwritten extent changes metadata that only its own file's fdatasync
 * commits), and zeroes past a recovered tail read the same either way, so
 * ask the file system (FIEMAP). Where it cannot tell, nothing past off is
 * counted: the writer zeroes that space again.
 */
static uint64_t
rec_written_end(const char *path, uint64_t off, uint64_t size)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent fe[32];
	} m;
	uint64_t pos = off;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return off;
	while (pos < size) {
		uint32_t i;

		memset(&m, 0, sizeof(m));
		m.fm.fm_start = pos;
		m.fm.fm_length = size - pos;
		m.fm.fm_extent_count = FIRN_ARRAY_SIZE(m.fe);
		if (ioctl(fd, FS_IOC_FIEMAP, &m.fm) < 0 || m.fm.fm_mapped_extents == 0)
			break;
		for (i = 0; i < m.fm.fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &m.fe[i];

			if (e->fe_logical > pos ||
			    (e->fe_flags & (FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_DELALLOC |
			                    FIEMAP_EXTENT_UNKNOWN)))
				goto out;
			pos = e->fe_logical + e->fe_length;
			if (pos >= size || (e->fe_flags & FIEMAP_EXTENT_LAST))
				goto out;
		}
	}
out:
	close(fd);
	return FIRN_MIN(pos, size) & ~(uint64_t)(FIRN_DISK_ALIGN - 1);
}

/* Scan one file, growing the codec if it meets a block larger than it takes. */
static int
rec_scan(struct firn_store *st, int fd, struct firn_seg_codec **cx, size_t *cx_raw,
         struct firn_seg_scan *scan)
{
	for (;;) {
		int rc;

		memset(scan, 0, sizeof(*scan));
		rc = firn_seg_scan_file(fd, st->kek, *cx, scan);
		if (rc != -ENOSPC || *cx_raw >= FIRN_SEG_RAW_MAX)
			return rc;
		firn_seg_scan_free(scan);
		firn_seg_codec_destroy(*cx);
		*cx_raw = FIRN_MIN(*cx_raw * 2, (size_t)FIRN_SEG_RAW_MAX);
		*cx = firn_seg_codec_create(*cx_raw, false);
		if (*cx == NULL)
			return -ENOMEM;
	}
}

static int
rec_shard(struct firn_store *st, uint64_t stream_id, uint32_t index, struct firn_seg_codec **cx,
          size_t *cx_raw)
{
	struct store_shard *sh = store_shard_new(st, stream_id, index);
	struct rec_file *files = NULL;
	uint32_t nfiles = 0, capfiles = 0, k, last_live = UINT32_MAX;
	uint64_t next = 0;
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (sh == NULL)
		return firn_err_set(-ENOMEM, "out of memory");
	d = opendir(sh->dir);
	if (d == NULL) {
		rc = firn_err_set(-errno, "open %s: %s", sh->dir, strerror(errno));
		store_shard_free(sh);
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		struct rec_file f;
		size_t len = strlen(de->d_name);

		if (strcmp(de->d_name, "SEALED") == 0) {
			sh->sealed = true;
			continue;
		}
		if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
			/* An interrupted firn_file_write_atomic(): the rename never happened. */
			snprintf(path, sizeof(path), "%s/%s", sh->dir, de->d_name);
			unlink(path);
			continue;
		}
		if (!rec_parse_name(de->d_name, &f))
			continue;
		if (nfiles == capfiles) {
			uint32_t cap = capfiles ? capfiles * 2 : 16;
			struct rec_file *p = realloc(files, cap * sizeof(*p));

			if (p == NULL) {
				rc = firn_err_set(-ENOMEM, "out of memory");
				break;
			}
			files = p;
			capfiles = cap;
		}
		files[nfiles++] = f;
	}
	closedir(d);
	if (rc < 0)
		goto fail;
	if (nfiles > 1)
		qsort(files, nfiles, sizeof(*files), rec_file_cmp);
	if (nfiles > 0 && !files[nfiles - 1].quarantined)
		last_live = nfiles - 1;

	for (k = 0; k < nfiles; k++) {
		struct store_seg tmp = {.first_counter = files[k].counter,
		                        .quarantined = files[k].quarantined};
		struct firn_seg_scan scan;
		struct store_seg *seg;
		struct stat sb;
		bool is_tail = k == last_live;
		int fd;

		store_seg_path(sh, &tmp, path, sizeof(path));
		fd = store_open_file(path, O_RDONLY, st->odirect);
		if (fd < 0) {
			rc = firn_err_set(fd, "open %s: %s", path, strerror(-fd));
			goto fail;
		}
		if (fstat(fd, &sb) < 0) {
			rc = firn_err_set(-errno, "stat %s: %s", path, strerror(errno));
			close(fd);
			goto fail;
		}
		rc = rec_scan(st, fd, cx, cx_raw, &scan);
		close(fd);
		if (rc == -EACCES) {
			/*
			 * The header is intact (its CRC holds) but our KEK does not
			 * open its data key: a wrong unlock code, not damage. Refuse
			 * to open rather than set the whole store aside.
			 */
			rc = firn_err_set(-EACCES,
			                  "%s: the key-encryption key does not open this segment "
			                  "(wrong unlock code?)",
			                  path);
			goto fail;
		}
		if (rc == 0 &&
		    (scan.hdr.stream_id != stream_id || scan.hdr.shard != index ||
		     scan.hdr.first_counter != files[k].counter || scan.hdr.first_counter < next)) {
			firn_seg_scan_free(&scan);
			rc = -EBADMSG;
		}
		if (rc == -EBADMSG) {
			rc = 0;
			next = FIRN_MAX(next, files[k].counter);
			if (is_tail && rec_only_header(path, (uint64_t)sb.st_size)) {
				FIRN_LOG(WARN, STORE_LOG, "removing %s: creation was interrupted",
				         path);
				unlink(path);
				firn_fsync_dir(sh->dir);
				continue;
			}
			if (!files[k].quarantined) {
				rc = rec_quarantine(st, sh, files[k].counter,
				                    "header unreadable or foreign");
				if (rc < 0)
					goto fail;
			}
			continue;
		}
		if (rc < 0) {
			rc = firn_err_wrap(rc, "scan %s", path);
			goto fail;
		}
		seg = calloc(1, sizeof(*seg));
		if (seg == NULL) {
			firn_seg_scan_free(&scan);
			rc = firn_err_set(-ENOMEM, "out of memory");
			goto fail;
		}
		seg->first_counter = scan.hdr.first_counter;
		seg->created_ms = scan.hdr.created_ms;
		seg->key = scan.key;
		seg->ents = scan.ents;
		seg->n = seg->cap = scan.n;
		scan.ents = NULL;
		scan.n = 0;
		seg->next_counter =
		        seg->n ? seg->ents[seg->n - 1].first_counter + seg->ents[seg->n - 1].count
		               : seg->first_counter;
		seg->end = scan.valid_end;
		seg->quarantined = files[k].quarantined;
		for (uint32_t e = 0; e < seg->n; e++)
			st->read_max_raw = FIRN_MAX(st->read_max_raw, (size_t)seg->ents[e].raw_len);
		if (seg->quarantined) {
			/* Set aside earlier: its valid prefix is still readable. */
		} else if (scan.sealed && !scan.damaged) {
			seg->sealed = true;
			seg->end = (uint64_t)sb.st_size;
		} else if (is_tail) {
			uint64_t size = (uint64_t)sb.st_size;

			if (scan.damaged) {
				int wfd = open(path, O_WRONLY | O_CLOEXEC);

				st->recovered_cut_bytes += size - scan.valid_end;
				FIRN_LOG(WARN, STORE_LOG,
				         "%s: tail damaged after %" PRIu64 " (records from %" PRIu64
				         " on were never acknowledged or are lost): cut %" PRIu64
				         " bytes",
				         path, scan.valid_end, seg->next_counter,
				         size - scan.valid_end);
				if (wfd < 0 || ftruncate(wfd, (off_t)scan.valid_end) < 0 ||
				    fsync(wfd) < 0) {
					rc = firn_err_set(-errno, "cut %s at %" PRIu64 ": %s", path,
					                  scan.valid_end, strerror(errno));
					if (wfd >= 0)
						close(wfd);
					firn_seg_scan_free(&scan);
					store_seg_free(seg);
					goto fail;
				}
				close(wfd);
				size = scan.valid_end;
			}
			sh->tail = seg;
			sh->roll_at = store_roll_at(st, sh);
			sh->tail_off = scan.valid_end;
			/*
			 * What lies past the valid end is zeroes (the scan checked); how
			 * much of it is written space, ready for plain writes, FIEMAP says.
			 */
			sh->zero_end = sh->ready_end =
			        FIRN_MAX(scan.valid_end,
			                 rec_written_end(path, scan.valid_end,
			                                 size & ~(uint64_t)(FIRN_DISK_ALIGN - 1)));
		} else {
			/*
			 * Not the tail and not (properly) sealed: we seal a segment
			 * before starting the next, so its footer or its last
			 * blocks were lost after the fact.
			 */
			rc = rec_quarantine(st, sh, files[k].counter,
			                    scan.damaged ? "damaged sealed segment (valid prefix "
			                                   "kept readable)"
			                                 : "sealed segment lost its footer (valid "
			                                   "prefix kept readable)");
			if (rc < 0) {
				firn_seg_scan_free(&scan);
				store_seg_free(seg);
				goto fail;
			}
			seg->quarantined = true;
		}
		firn_seg_scan_free(&scan);
		rc = store_seg_push(sh, seg);
		if (rc < 0) {
			store_seg_free(seg);
			goto fail;
		}
		sh->bytes += seg->end;
		next = FIRN_MAX(next, seg->next_counter);
		if (seg->n > 0)
			sh->durable_ts = seg->ents[seg->n - 1].last_ts_ms;
	}
	sh->next_counter = next;
	sh->durable_next = next;
	sh->last_ts = sh->durable_ts;
	free(files);
	pthread_rwlock_wrlock(&st->map_lock);
	rc = store_map_insert(st, sh);
	pthread_rwlock_unlock(&st->map_lock);
	if (rc < 0) {
		store_shard_free(sh);
		return firn_err_set(rc, "out of memory");
	}
	return 0;
fail:
	free(files);
	store_shard_free(sh);
	return firn_err_wrap(rc, "recover stream %" PRIu64 " shard %u", stream_id, index);
}

int
store_recover(struct firn_store *st)
{
	struct firn_seg_codec *cx;
	size_t cx_raw = st->conf.block_max;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	cx = firn_seg_codec_create(cx_raw, false);
	if (cx == NULL)
		return firn_err_wrap(-ENOMEM, "create codec");
	d = opendir(st->streams_dir);
	if (d == NULL) {
		firn_seg_codec_destroy(cx);
		return firn_err_set(-errno, "open %s: %s", st->streams_dir, strerror(errno));
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char sdir[PATH_MAX];
		struct dirent *de2;
		uint64_t sid;
		DIR *d2;

		if (de->d_name[0] == '.' || firn_parse_u64(de->d_name, &sid) < 0)
			continue;
		snprintf(sdir, sizeof(sdir), "%s/%s", st->streams_dir, de->d_name);
		d2 = opendir(sdir);
		if (d2 == NULL)
			continue;
		while (rc == 0 && (de2 = readdir(d2)) != NULL) {
			uint64_t idx;

			if (de2->d_name[0] == '.' || firn_parse_u64(de2->d_name, &idx) < 0 ||
			    idx > UINT32_MAX)
				continue;
			rc = rec_shard(st, sid, (uint32_t)idx, &cx, &cx_raw);
		}
		closedir(d2);
	}
	closedir(d);
	firn_seg_codec_destroy(cx);
	if (rc == 0 && st->quarantined_segments > 0)
		FIRN_LOG(ERR, STORE_LOG, "%s: %" PRIu64 " segment(s) quarantined at open", st->dir,
		         st->quarantined_segments);
	return rc;
}

/* ---- orphaned streams ------------------------------------------------------------------ */

/*
 * A stream's data outlives its catalog entry when firnd dies between
 * DeleteStream's catalog change and the drop of the data (lib/api: catalog
 * first, so a crash never leaves a stream whose data is half gone), or when
 * an append made from a snapshot taken before a DeleteStream lands after the
 * drop and brings a shard back to life. Nothing
 * would ever remove that directory again, and on an appliance whose job is
 * to fill its disks that leak matters, so firnd asks for it at start.
 *
 * The rule is deliberately narrow. Stream ids are never reused and are only
 * given out by a catalog change that is durable before any data can exist
 * for them, so an id below the catalog's next id that the catalog does not
 * have was deleted: its data is garbage. An id at or above the next id says
 * the catalog is older than the data (restored from a backup, or lost and
 * created afresh): removing would turn an operator's mistake into data loss,
 * so it stays, with a warning. Names that are not canonical decimal ids,
 * symlinks and plain files are not ours to judge either.
 */

static int
orphan_id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Bytes allocated under path (st_blocks, what removal gives back); symlinks not followed. */
static uint64_t
orphan_du(const char *path, unsigned depth)
{
	char child[PATH_MAX];
	struct dirent *de;
	struct stat sb;
	uint64_t bytes;
	DIR *d;

	if (lstat(path, &sb) < 0)
		return 0;
	bytes = (uint64_t)sb.st_blocks * 512;
	/* The layout is two levels deep; a bound keeps a strange tree from recursing far. */
	if (!S_ISDIR(sb.st_mode) || depth > 4 || (d = opendir(path)) == NULL)
		return bytes;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) >= (int)sizeof(child))
			continue;
		bytes += orphan_du(child, depth + 1);
	}
	closedir(d);
	return bytes;
}

/* Shard directories in a stream directory, by the rule store_recover() uses. */
static unsigned
orphan_shards(const char *sdir)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(sdir);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t idx;

		if (de->d_name[0] != '.' && firn_parse_u64(de->d_name, &idx) == 0 &&
		    idx <= UINT32_MAX)
			n++;
	}
	closedir(d);
	return n;
}

int
firn_store_drop_orphans(struct firn_store *st, const uint64_t *live_ids, size_t nlive,
                        uint64_t id_limit, uint64_t *removed)
{
	uint64_t *live = NULL, *found = NULL, count = 0;
	size_t nfound = 0, capfound = 0, i;
	char path[PATH_MAX], canon[32];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (removed != NULL)
		*removed = 0;
	if (nlive > 0) {
		live = malloc(nlive * sizeof(*live));
		if (live == NULL)
			return firn_err_set(-ENOMEM, "out of memory");
		memcpy(live, live_ids, nlive * sizeof(*live));
		qsort(live, nlive, sizeof(*live), orphan_id_cmp);
	}
	d = opendir(st->streams_dir);
	if (d == NULL) {
		free(live);
		return firn_err_set(-errno, "open %s: %s", st->streams_dir, strerror(errno));
	}
	/* Judge every entry first, remove afterwards: no removal under a live readdir. */
	while ((de = readdir(d)) != NULL) {
		struct stat sb;
		uint64_t id;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", st->streams_dir, de->d_name);
		if (firn_parse_u64(de->d_name, &id) < 0 ||
		    snprintf(canon, sizeof(canon), "%" PRIu64, id) < 0 ||
		    strcmp(canon, de->d_name) != 0) {
			FIRN_LOG(WARN, STORE_LOG, "%s: not a stream id: left alone", path);
			continue;
		}
		if (lstat(path, &sb) < 0) {
			FIRN_LOG(WARN, STORE_LOG, "%s: %s: left alone", path, strerror(errno));
			continue;
		}
		if (!S_ISDIR(sb.st_mode)) {
			FIRN_LOG(WARN, STORE_LOG, "%s: %s, not a directory: left alone", path,
			         S_ISLNK(sb.st_mode) ? "a symlink" : "not ours");
			continue;
		}
		if (live != NULL && bsearch(&id, live, nlive, sizeof(*live), orphan_id_cmp))
			continue;
		if (id >= id_limit) {
			FIRN_LOG(WARN, STORE_LOG,
			         "%s: data of stream id %" PRIu64 ", which the catalog never gave "
			         "out (its next id is %" PRIu64 "): is the catalog older than the "
			         "data? left alone; remove it by hand if it is not needed",
			         path, id, id_limit);
			continue;
		}
		if (nfound == capfound) {
			size_t cap = capfound ? capfound * 2 : 8;
			uint64_t *p = realloc(found, cap * sizeof(*p));

			if (p == NULL) {
				rc = firn_err_set(-ENOMEM, "out of memory");
				break;
			}
			found = p;
			capfound = cap;
		}
		found[nfound++] = id;
	}
	closedir(d);
	free(live);

	for (i = 0; i < nfound; i++) {
		uint64_t id = found[i], bytes;
		unsigned shards;
		int r;

		snprintf(path, sizeof(path), "%s/%" PRIu64, st->streams_dir, id);
		bytes = orphan_du(path, 0);
		shards = orphan_shards(path);
		/* The one way the store removes a stream: its shards are let go first. */
		r = firn_store_stream_drop(st, id);
		if (r < 0) {
			FIRN_LOG(ERR, STORE_LOG, "orphan data of stream id %" PRIu64 ": %s", id,
			         firn_err_msg());
			if (rc == 0)
				rc = r;
			continue;
		}
		count++;
		/* Pairs with the relaxed load in firn_store_stats(): a counter only. */
		__atomic_add_fetch(&st->orphan_streams_removed, 1, __ATOMIC_RELAXED);
		FIRN_LOG(INFO, STORE_LOG,
		         "removed orphan data of stream id %" PRIu64 ": %.1f MiB, %u shard%s (a "
		         "DeleteStream interrupted by a crash)",
		         id, (double)bytes / (1024.0 * 1024.0), shards, shards == 1 ? "" : "s");
	}
	free(found);
	if (removed != NULL)
		*removed = count;
	return rc;
}
