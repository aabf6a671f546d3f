/*
 * file.c - crash-safe small-file writes and directory helpers.
 *
 * Small metadata files (the catalog, keys) are replaced atomically: a reader
 * after a crash sees either the old or the new file, whole. That takes an
 * fsync of the temp file before the rename and of the directory after it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "firn_common.h"

int
firn_fsync_dir(const char *path)
{
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return firn_err_set(-errno, "open directory %s: %s", path, strerror(errno));
	if (fsync(fd) < 0)
		rc = firn_err_set(-errno, "fsync directory %s: %s", path, strerror(errno));
	close(fd);
	return rc;
}

static int
dir_of(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return snprintf(dir, cap, ".") >= (int)cap ? -ENAMETOOLONG : 0;
	if ((size_t)(slash - path) >= cap)
		return -ENAMETOOLONG;
	if (slash == path) {
		snprintf(dir, cap, "/");
		return 0;
	}
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return 0;
}

int
firn_file_write_atomic(const char *path, const void *buf, size_t len, unsigned mode)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const char *p = buf;
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
	    dir_of(path, dir, sizeof(dir)) < 0)
		return firn_err_set(-ENAMETOOLONG, "path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return firn_err_set(-errno, "create %s: %s", tmp, strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = firn_err_set(-errno, "write %s: %s", tmp, strerror(errno));
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		rc = firn_err_set(-errno, "fsync %s: %s", tmp, strerror(errno));
		goto fail;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		rc = firn_err_set(-errno, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return rc;
	}
	return firn_fsync_dir(dir);
fail:
	close(fd);
	unlink(tmp);
	return rc;
}

int
firn_file_read_all(const char *path, char **buf, size_t *len)
{
	struct stat st;
	size_t off = 0;
	char *b;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return firn_err_set(-errno, "open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int rc = firn_err_set(-errno, "stat %s: %s", path, strerror(errno));

		close(fd);
		return rc;
	}
	b = malloc((size_t)st.st_size + 1);
	if (b == NULL) {
		close(fd);
		return firn_err_set(-ENOMEM, "read %s: out of memory", path);
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, b + off, (size_t)st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int rc = n < 0 ? -errno : -EIO;

			free(b);
			close(fd);
			return firn_err_set(rc, "read %s: %s", path, strerror(-rc));
		}
		off += (size_t)n;
	}
	close(fd);
	b[off] = '\0';
	*buf = b;
	if (len)
		*len = off;
	return 0;
}

int
firn_mkdir_p(const char *path, unsigned mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);
	char *p;

	if (len == 0 || len >= sizeof(tmp))
		return firn_err_set(-ENAMETOOLONG, "bad directory path '%s'", path);
	memcpy(tmp, path, len + 1);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return firn_err_set(-errno, "mkdir %s: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return firn_err_set(-errno, "mkdir %s: %s", tmp, strerror(errno));
	return 0;
}

int
firn_rm_rf(const char *path)
{
	char child[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int rc = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	d = opendir(path);
	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) >=
		    (int)sizeof(child)) {
			rc = -ENAMETOOLONG;
			continue;
		}
		int r = firn_rm_rf(child);

		if (r < 0)
			rc = r;
	}
	closedir(d);
	if (rmdir(path) < 0)
		rc = -errno;
	return rc;
}
