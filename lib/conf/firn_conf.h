/*
 * firn_conf.h - firnd's configuration: defaults, the config file, overrides.
 *
 * The file is `key = value` lines; `#` starts a comment; blank lines are
 * ignored; values may be quoted with "..." (for values with spaces or `#`).
 * Every key, its meaning and its default is documented in config/firnd.conf,
 * which is also the embedded defaults written out. Unknown keys are errors
 * (a typo must not silently fall back to a default on an appliance).
 *
 * Order of precedence, last wins: built-in defaults, the config file,
 * environment (FIRN_ACCESS_KEY_ID, FIRN_SECRET_ACCESS_KEY), command-line
 * overrides (firn_conf_set with the same key names).
 *
 *	struct firn_conf c;
 *	firn_conf_defaults(&c);
 *	if (firn_conf_load(&c, path) < 0 || firn_conf_set(&c, "data_dir", dir) < 0 ||
 *	    firn_conf_check(&c) < 0)
 *		die(firn_err_msg());	// "firnd.conf:12: unknown key 'segmnet_size'"
 *
 * Thread safety: none needed; configuration happens before threads start.
 */
#ifndef FIRN_CONF_H
#define FIRN_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIRN_CONF_STR 256

struct firn_conf {
	/* storage */
	char data_dir[FIRN_CONF_STR];
	uint32_t writers;
	uint64_t segment_size;
	uint64_t prealloc;
	uint32_t flush_interval_us;
	uint64_t shard_pending_max;
	bool compress;
	bool write_dsync;
	uint32_t spare_segments;
	/* keys: hex KEK, or a file holding it; empty both = generate <data_dir>/keys/kek */
	char kek_hex[65];
	char kek_file[FIRN_CONF_STR];
	/* API */
	char api[FIRN_CONF_STR];
	char access_key_id[FIRN_CONF_STR];
	char secret_access_key[FIRN_CONF_STR];
	char region[64];
	char account_id[16];
	bool sigv4_verify;
	bool throttle;
	uint32_t api_threads;
	/* data port */
	char listen[FIRN_CONF_STR];
	char net[16]; /* "socket" or "dpdk" */
	char eal[1024];
	char ip[64];        /* ADDR/PREFIX for the DPDK port */
	uint32_t rx_queues; /* RX queues = RX agent threads, 1..16 */
	/* UDP ingest limits (per RX agent; doc/protocol.md §12, doc/ingest.md) */
	uint32_t max_sessions;
	uint32_t max_producers;
	uint32_t dedupe_window; /* a power of two */
	uint32_t max_waiting;
	uint64_t max_waiting_bytes;
	/* misc */
	char log_level[16];
};

/* The built-in defaults (documented in config/firnd.conf). */
void firn_conf_defaults(struct firn_conf *c);

/*
 * Read a config file over c. 0, or -errno / -EINVAL with "FILE:LINE: what"
 * in the error chain.
 */
int firn_conf_load(struct firn_conf *c, const char *path);

/* Set one key from text, as a config line would. 0 or -EINVAL (error chain). */
int firn_conf_set(struct firn_conf *c, const char *key, const char *value);

/* Apply FIRN_ACCESS_KEY_ID / FIRN_SECRET_ACCESS_KEY from the environment. */
void firn_conf_apply_env(struct firn_conf *c);

/* Cross-field checks (e.g. addresses parse, net is socket|dpdk). 0 or -EINVAL. */
int firn_conf_check(const struct firn_conf *c);

/*
 * Split "ADDR:PORT" into addr (cap bytes) and port. 0 or -EINVAL.
 * "[v6]:port" is accepted.
 */
int firn_conf_split_hostport(const char *s, char *addr, size_t cap, uint16_t *port);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_CONF_H */
