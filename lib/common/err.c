/*
 * err.c - the per-thread error chain.
 *
 * One fixed buffer per thread: setting an error never allocates, so it is
 * safe on out-of-memory paths. Messages longer than the buffer are cut.
 */
#include <stdio.h>
#include <string.h>

#include "firn_common.h"

#define ERR_BUF 1024

static __thread char err_buf[ERR_BUF];
static __thread size_t err_len;
static __thread int err_rc;

int
firn_err_set(int rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	err_len = n < 0 ? 0 : FIRN_MIN((size_t)n, sizeof(err_buf) - 1);
	err_rc = rc;
	return rc;
}

int
firn_err_wrap(int rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err_len == 0)
		err_rc = rc;
	n = snprintf(err_buf + err_len, sizeof(err_buf) - err_len, "%s", err_len ? "\n  in: " : "");
	if (n > 0)
		err_len = FIRN_MIN(err_len + (size_t)n, sizeof(err_buf) - 1);
	va_start(ap, fmt);
	n = vsnprintf(err_buf + err_len, sizeof(err_buf) - err_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		err_len = FIRN_MIN(err_len + (size_t)n, sizeof(err_buf) - 1);
	return rc;
}

const char *
firn_err_msg(void)
{
	return err_len ? err_buf : "";
}

int
firn_err_code(void)
{
	return err_rc;
}

void
firn_err_clear(void)
{
	err_len = 0;
	err_buf[0] = '\0';
	err_rc = 0;
}
