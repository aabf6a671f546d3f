/*
 * firn_common.h - the small things every firn library needs.
 *
 * Macros, the error chain, logging, clocks, strict number parsing, hex, and
 * agents (the duty-cycle threading model borrowed from Aeron).
 *
 * Errors. Functions return 0 or a negative errno and never touch the global
 * errno. When the caller needs to tell a person *why*, the callee also records
 * a message in the thread-local error chain with firn_err_set(); each layer on
 * the way up may add context with firn_err_wrap(), so the final message reads
 * like a stack trace, innermost cause first:
 *
 *	if (fd < 0)
 *		return firn_err_set(-errno, "open %s: %s", path, strerror(errno));
 *	...
 *	rc = firn_seg_open(...);
 *	if (rc < 0)
 *		return firn_err_wrap(rc, "recover shard %u", shard);
 *	...
 *	fprintf(stderr, "firnd: %s\n", firn_err_msg());
 *
 * Logging is for state changes and errors, never for the per-record path
 * (count instead). One component name per library, as DPDK has log types.
 *
 * Agents. Every long-running thread in firn is an agent: a do_work() function
 * that does a bounded amount of work and returns how much it did. A runner
 * thread calls it in a loop and idles (spin, then yield, then sleep) when it
 * returns 0. Tests call do_work() directly on one thread.
 *
 * Thread safety: everything here is safe to call from any thread; the error
 * chain is per thread.
 */
#ifndef FIRN_COMMON_H
#define FIRN_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- macros ------------------------------------------------------------ */

#define FIRN_CACHE_LINE 64
#define FIRN_CACHE_ALIGNED __attribute__((aligned(FIRN_CACHE_LINE)))
#define FIRN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define FIRN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FIRN_MAX(a, b) ((a) > (b) ? (a) : (b))
/* Round x up to a multiple of a (a power of two). */
#define FIRN_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define FIRN_IS_ALIGNED(x, a) ((((uintptr_t)(x)) & ((a)-1)) == 0)
#define firn_likely(x) __builtin_expect(!!(x), 1)
#define firn_unlikely(x) __builtin_expect(!!(x), 0)
#define FIRN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define FIRN_UNUSED __attribute__((unused))

/* ---- error chain ------------------------------------------------------- */

/*
 * Start a new error message for this thread and return rc (a -errno), so it
 * can be used in a return statement.
 */
int firn_err_set(int rc, const char *fmt, ...) FIRN_PRINTF(2, 3);

/* Append a line of context ("\n  in: <fmt>") to the current message; returns rc. */
int firn_err_wrap(int rc, const char *fmt, ...) FIRN_PRINTF(2, 3);

/* The current message of this thread, or "" if none. Valid until the next set. */
const char *firn_err_msg(void);

/* The rc given to the last firn_err_set(), or 0. */
int firn_err_code(void);

/* Forget the current message. */
void firn_err_clear(void);

/* ---- logging ----------------------------------------------------------- */

enum firn_log_level {
	FIRN_LOG_ERR = 0,
	FIRN_LOG_WARN = 1,
	FIRN_LOG_INFO = 2,
	FIRN_LOG_DEBUG = 3,
};

void firn_log_set_level(enum firn_log_level level);
enum firn_log_level firn_log_get_level(void);
void firn_log_write(enum firn_log_level level, const char *component, const char *fmt, ...)
        FIRN_PRINTF(3, 4);

#define FIRN_LOG(level, comp, ...)                                                                 \
	do {                                                                                       \
		if (FIRN_LOG_##level <= firn_log_get_level())                                      \
			firn_log_write(FIRN_LOG_##level, comp, __VA_ARGS__);                       \
	} while (0)

/* ---- clocks -------------------------------------------------------------- */

/* Wall clock in milliseconds since the Unix epoch (record arrival times). */
int64_t firn_now_ms(void);
/* Monotonic clock in nanoseconds (timeouts, latencies). */
uint64_t firn_mono_ns(void);

/* ---- strict parsing (atoi and friends are banned) ------------------------ */

/* Whole string must be a decimal number in range. 0 or -EINVAL / -ERANGE. */
int firn_parse_u64(const char *s, uint64_t *out);
int firn_parse_i64(const char *s, int64_t *out);
/*
 * A size with an optional binary suffix: "4096", "64K", "64M", "2G" (powers of
 * 1024, case-insensitive, optional trailing "iB"/"B").
 */
int firn_parse_size(const char *s, uint64_t *out);
/* "true/false/yes/no/on/off/1/0". */
int firn_parse_bool(const char *s, bool *out);

/* Decode exactly len bytes of hex (2*len chars). 0 or -EINVAL. */
int firn_hex_decode(const char *hex, uint8_t *out, size_t len);
/* Encode len bytes as lowercase hex plus NUL into out (2*len+1 bytes). */
void firn_hex_encode(const uint8_t *in, size_t len, char *out);

/* ---- files ---------------------------------------------------------------- */

/*
 * Write a whole file crash-safely: write path.tmp, fsync it, rename over
 * path, fsync the directory. 0 or -errno (message in the error chain).
 */
int firn_file_write_atomic(const char *path, const void *buf, size_t len, unsigned mode);
/* Read a whole file into a malloc'd NUL-terminated buffer. 0 or -errno. */
int firn_file_read_all(const char *path, char **buf, size_t *len);
/* mkdir -p. 0 or -errno. */
int firn_mkdir_p(const char *path, unsigned mode);
/* fsync a directory by path. 0 or -errno. */
int firn_fsync_dir(const char *path);
/* rm -rf. 0 or -errno. */
int firn_rm_rf(const char *path);

/* ---- agents ----------------------------------------------------------------- */

/*
 * An agent does a bounded amount of work per call and returns how much it did
 * (0 = nothing to do, so the runner may idle) or a negative errno to stop.
 */
struct firn_agent {
	const char *name;
	int (*do_work)(void *arg);
	/* Called once on the agent's thread after the last do_work(). May be NULL. */
	void (*on_close)(void *arg);
	void *arg;
	/* Longest idle sleep in microseconds (0 = busy poll, never sleep). */
	uint32_t idle_max_us;
};

struct firn_agent_runner;

/* Start a thread running the agent until firn_agent_runner_stop(). NULL on error. */
struct firn_agent_runner *firn_agent_runner_start(const struct firn_agent *agent);
/* Ask the agent to stop, join it, free the runner. Returns the agent's exit rc. */
int firn_agent_runner_stop(struct firn_agent_runner *r);
/* Wake a sleeping agent early (e.g. new work was queued). Safe from any thread. */
void firn_agent_runner_wake(struct firn_agent_runner *r);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_COMMON_H */
