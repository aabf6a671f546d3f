/*
 * log.c - one line per event on stderr: time, level, component, message.
 *
 * Not for the per-record path. The level is a relaxed atomic so it can be
 * changed at run time without a lock.
 */
#include <stdio.h>
#include <time.h>

#include "firn_common.h"

static int log_level = FIRN_LOG_INFO;

void
firn_log_set_level(enum firn_log_level level)
{
	/* Pairs with the relaxed load in firn_log_get_level(); a stale read only
	 * means one more or one fewer line. */
	__atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

enum firn_log_level
firn_log_get_level(void)
{
	return (enum firn_log_level)__atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void
firn_log_write(enum firn_log_level level, const char *component, const char *fmt, ...)
{
	static const char *names[] = {"ERR", "WARN", "INFO", "DEBUG"};
	char msg[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	/* One fprintf per line so lines from threads do not interleave. */
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: %s\n", tm.tm_year + 1900,
	        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	        names[level <= FIRN_LOG_DEBUG ? level : FIRN_LOG_DEBUG], component, msg);
}
