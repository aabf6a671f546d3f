/*
 * conf.c - firnd.conf parsing.
 *
 * A table maps each key to a field and a type; the same table serves the file
 * parser and the command-line overrides, so a flag and a config line can
 * never disagree on how a value is read.
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firn_common.h"
#include "firn_conf.h"

enum key_type { K_STR, K_U32, K_SIZE, K_BOOL };

struct key_def {
	const char *name;
	enum key_type type;
	size_t off;
	size_t cap; /* K_STR: buffer size */
	uint64_t min, max;
};

#define STR(n, f)                                                                                  \
	{                                                                                          \
		n, K_STR, offsetof(struct firn_conf, f), sizeof(((struct firn_conf *)0)->f), 0, 0  \
	}
#define U32(n, f, lo, hi)                                                                          \
	{                                                                                          \
		n, K_U32, offsetof(struct firn_conf, f), 0, lo, hi                                 \
	}
#define SIZE(n, f, lo, hi)                                                                         \
	{                                                                                          \
		n, K_SIZE, offsetof(struct firn_conf, f), 0, lo, hi                                \
	}
#define BOOL(n, f)                                                                                 \
	{                                                                                          \
		n, K_BOOL, offsetof(struct firn_conf, f), 0, 0, 1                                  \
	}

static const struct key_def keys[] = {
        STR("data_dir", data_dir),
        U32("writers", writers, 1, 64),
        SIZE("segment_size", segment_size, 1 << 20, 1ull << 40),
        SIZE("prealloc", prealloc, 0, 1ull << 34),
        U32("flush_interval_us", flush_interval_us, 0, 1000000),
        SIZE("shard_pending_max", shard_pending_max, 2 << 20, 1ull << 34),
        BOOL("compress", compress),
        BOOL("write_dsync", write_dsync),
        U32("spare_segments", spare_segments, 0, 1024),
        STR("kek", kek_hex),
        STR("kek_file", kek_file),
        STR("api", api),
        STR("access_key_id", access_key_id),
        STR("secret_access_key", secret_access_key),
        STR("region", region),
        STR("account_id", account_id),
        BOOL("sigv4_verify", sigv4_verify),
        BOOL("throttle", throttle),
        U32("api_threads", api_threads, 1, 256),
        STR("listen", listen),
        STR("net", net),
        STR("eal", eal),
        STR("ip", ip),
        U32("rx_queues", rx_queues, 1, 16),
        U32("max_sessions", max_sessions, 1, 1u << 24),
        U32("max_producers", max_producers, 1, 1u << 24),
        U32("dedupe_window", dedupe_window, 64, 1u << 20),
        U32("max_waiting", max_waiting, 1024, 1u << 28),
        SIZE("max_waiting_bytes", max_waiting_bytes, 1 << 20, 1ull << 40),
        STR("log_level", log_level),
};

void
firn_conf_defaults(struct firn_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->data_dir, sizeof(c->data_dir), "./var");
	c->writers = 1;
	c->segment_size = 64ull << 20;
	c->prealloc = 8ull << 20;
	c->flush_interval_us = 200;
	c->shard_pending_max = 8ull << 20;
	c->compress = true;
	snprintf(c->api, sizeof(c->api), "127.0.0.1:4567");
	snprintf(c->access_key_id, sizeof(c->access_key_id), "FIRNDEMOACCESSKEY");
	snprintf(c->secret_access_key, sizeof(c->secret_access_key), "firn-demo-secret-change-me");
	snprintf(c->region, sizeof(c->region), "us-east-1");
	snprintf(c->account_id, sizeof(c->account_id), "000000000000");
	c->sigv4_verify = true;
	c->throttle = false;
	c->api_threads = 4;
	snprintf(c->listen, sizeof(c->listen), "0.0.0.0:7400");
	snprintf(c->net, sizeof(c->net), "socket");
	c->rx_queues = 1;
	c->max_sessions = 1024;
	c->max_producers = 1024;
	c->dedupe_window = 1024;
	c->max_waiting = 65536;
	c->max_waiting_bytes = 256ull << 20;
	snprintf(c->log_level, sizeof(c->log_level), "info");
}

static const struct key_def *
find_key(const char *name)
{
	size_t i;

	for (i = 0; i < FIRN_ARRAY_SIZE(keys); i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

int
firn_conf_set(struct firn_conf *c, const char *key, const char *value)
{
	const struct key_def *k = find_key(key);
	char *field;
	uint64_t v;
	bool b;
	int rc;

	if (k == NULL)
		return firn_err_set(-EINVAL, "unknown key '%s'", key);
	field = (char *)c + k->off;
	switch (k->type) {
	case K_STR:
		if (strlen(value) >= k->cap)
			return firn_err_set(-EINVAL, "%s: value longer than %zu characters", key,
			                    k->cap - 1);
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case K_BOOL:
		if (firn_parse_bool(value, &b) < 0)
			return firn_err_set(-EINVAL, "%s: '%s' is not a boolean (true/false)", key,
			                    value);
		*(bool *)field = b;
		return 0;
	case K_U32:
	case K_SIZE:
		rc = k->type == K_U32 ? firn_parse_u64(value, &v) : firn_parse_size(value, &v);
		if (rc < 0)
			return firn_err_set(-EINVAL, "%s: '%s' is not a %s", key, value,
			                    k->type == K_U32 ? "whole number" : "size (e.g. 64M)");
		if (v < k->min || v > k->max)
			return firn_err_set(-EINVAL, "%s: %s is outside %llu..%llu", key, value,
			                    (unsigned long long)k->min, (unsigned long long)k->max);
		if (k->type == K_U32)
			*(uint32_t *)field = (uint32_t)v;
		else
			*(uint64_t *)field = v;
		return 0;
	}
	return -EINVAL;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Parse one line in place. Returns 0 (maybe empty: *key NULL) or -EINVAL. */
static int
parse_line(char *line, char **key, char **value)
{
	char *eq, *v, *p;

	*key = NULL;
	line = trim(line);
	if (*line == '\0' || *line == '#')
		return 0;
	eq = strchr(line, '=');
	if (eq == NULL)
		return firn_err_set(-EINVAL, "expected 'key = value'");
	*eq = '\0';
	*key = trim(line);
	v = trim(eq + 1);
	if (*v == '"') {
		p = strchr(v + 1, '"');
		if (p == NULL)
			return firn_err_set(-EINVAL, "unterminated quote");
		*p = '\0';
		if (*trim(p + 1) != '\0' && *trim(p + 1) != '#')
			return firn_err_set(-EINVAL, "text after closing quote");
		v++;
	} else {
		p = strchr(v, '#');
		if (p)
			*p = '\0';
		v = trim(v);
	}
	if (**key == '\0')
		return firn_err_set(-EINVAL, "missing key before '='");
	*value = v;
	return 0;
}

int
firn_conf_load(struct firn_conf *c, const char *path)
{
	char *buf, *line, *next, *key, *value = NULL;
	unsigned lineno = 0;
	int rc;

	rc = firn_file_read_all(path, &buf, NULL);
	if (rc < 0)
		return firn_err_wrap(rc, "reading config file %s", path);
	for (line = buf; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		rc = parse_line(line, &key, &value);
		if (rc == 0 && key != NULL)
			rc = firn_conf_set(c, key, value);
		if (rc < 0) {
			char msg[512];

			snprintf(msg, sizeof(msg), "%s", firn_err_msg());
			firn_err_set(rc, "%s:%u: %s", path, lineno, msg);
			free(buf);
			return rc;
		}
	}
	free(buf);
	return 0;
}

void
firn_conf_apply_env(struct firn_conf *c)
{
	const char *v;

	v = getenv("FIRN_ACCESS_KEY_ID");
	if (v && *v && strlen(v) < sizeof(c->access_key_id))
		snprintf(c->access_key_id, sizeof(c->access_key_id), "%s", v);
	v = getenv("FIRN_SECRET_ACCESS_KEY");
	if (v && *v && strlen(v) < sizeof(c->secret_access_key))
		snprintf(c->secret_access_key, sizeof(c->secret_access_key), "%s", v);
}

int
firn_conf_split_hostport(const char *s, char *addr, size_t cap, uint16_t *port)
{
	const char *colon, *host = s;
	size_t hlen;
	uint64_t p;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return -EINVAL;
		host = s + 1;
		hlen = (size_t)(rb - host);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= cap)
		return -EINVAL;
	if (firn_parse_u64(colon + 1, &p) < 0 || p == 0 || p > 65535)
		return -EINVAL;
	memcpy(addr, host, hlen);
	addr[hlen] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int
firn_conf_check(const struct firn_conf *c)
{
	char addr[FIRN_CONF_STR];
	uint8_t kek[32];
	uint16_t port;
	size_t i;

	if (c->data_dir[0] == '\0')
		return firn_err_set(-EINVAL, "data_dir: must not be empty");
	if (firn_conf_split_hostport(c->api, addr, sizeof(addr), &port) < 0)
		return firn_err_set(-EINVAL, "api: '%s' is not ADDR:PORT (e.g. 127.0.0.1:4567)",
		                    c->api);
	if (firn_conf_split_hostport(c->listen, addr, sizeof(addr), &port) < 0)
		return firn_err_set(-EINVAL, "listen: '%s' is not ADDR:PORT (e.g. 0.0.0.0:7400)",
		                    c->listen);
	if (strcmp(c->net, "socket") != 0 && strcmp(c->net, "dpdk") != 0)
		return firn_err_set(-EINVAL, "net: '%s' must be 'socket' or 'dpdk'", c->net);
	if ((c->dedupe_window & (c->dedupe_window - 1)) != 0)
		return firn_err_set(-EINVAL, "dedupe_window: %u must be a power of two (e.g. 1024)",
		                    c->dedupe_window);
	if (c->kek_hex[0] && firn_hex_decode(c->kek_hex, kek, sizeof(kek)) < 0)
		return firn_err_set(-EINVAL, "kek: must be 64 hex digits (a 256-bit key)");
	if (c->kek_hex[0] && c->kek_file[0])
		return firn_err_set(-EINVAL, "kek and kek_file: set at most one");
	if (strlen(c->account_id) != 12)
		return firn_err_set(-EINVAL, "account_id: '%s' must be 12 digits", c->account_id);
	for (i = 0; i < 12; i++)
		if (!isdigit((unsigned char)c->account_id[i]))
			return firn_err_set(-EINVAL, "account_id: '%s' must be 12 digits",
			                    c->account_id);
	if (c->access_key_id[0] == '\0' || c->secret_access_key[0] == '\0')
		return firn_err_set(-EINVAL, "access_key_id/secret_access_key: must not be empty");
	if (strcmp(c->log_level, "err") && strcmp(c->log_level, "warn") &&
	    strcmp(c->log_level, "info") && strcmp(c->log_level, "debug"))
		return firn_err_set(-EINVAL, "log_level: '%s' must be err|warn|info|debug",
		                    c->log_level);
	return 0;
}
