/*
 * state.c - the producer state file: who this producer is, and which
 * sequences it may already have used.
 *
 * Exactly-once across a producer restart (doc/protocol.md §8.4) needs two
 * things to survive the restart: the producer id, and a sequence above
 * every one the producer used before. Writing the sequence down for every
 * record would cost an fsync per record, so the client reserves sequences
 * in blocks instead: before it uses sequence s it makes sure the file says
 * "reserved up to at least s", writing "s + RESERVE_BLOCK" when it must.
 * After a crash the producer starts at reserved + 1. At worst a block of
 * sequences is skipped, and the appliance's window, anchored at the highest
 * sequence seen, does not mind gaps.
 *
 * The file is three lines of text, written atomically (temp file, fsync,
 * rename, fsync of the directory):
 *
 *	firn-producer 1
 *	producer_id = 1f2e3d4c5b6a7988
 *	reserved_seq = 131072
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

#define RESERVE_BLOCK 65536u

static int
parse_hex64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; *s != '\0' && *s != '\n' && *s != ' '; s++, n++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (*s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (*s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -EINVAL;
		if (n >= 16)
			return -ERANGE;
		v = v << 4 | d;
	}
	if (n == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The value after "name = " on a line of buf, copied to val; 0 or -ENOENT. */
static int
field(const char *buf, const char *name, char *val, size_t size)
{
	size_t nl = strlen(name);

	for (const char *p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		const char *v;
		size_t n = 0;

		if (strncmp(p, name, nl) != 0)
			continue;
		v = p + nl;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v++ != '=')
			continue;
		while (*v == ' ' || *v == '\t')
			v++;
		while (v[n] != '\0' && v[n] != '\n' && v[n] != ' ' && v[n] != '\r')
			n++;
		if (n == 0 || n >= size)
			return -EINVAL;
		memcpy(val, v, n);
		val[n] = '\0';
		return 0;
	}
	return -ENOENT;
}

int
client_state_load(struct firn_client *c, const char *path, bool *found)
{
	char *buf, v[32];
	size_t len;
	uint64_t id, reserved;
	int rc;

	*found = false;
	rc = firn_file_read_all(path, &buf, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return client_fail(c, rc, "producer state %s: cannot read it: %s", path,
		                   strerror(-rc));
	rc = -EINVAL;
	if (strncmp(buf, "firn-producer 1\n", 16) == 0 &&
	    field(buf, "producer_id", v, sizeof(v)) == 0 && parse_hex64(v, &id) == 0 && id != 0 &&
	    field(buf, "reserved_seq", v, sizeof(v)) == 0 && firn_parse_u64(v, &reserved) == 0)
		rc = 0;
	free(buf);
	if (rc < 0)
		return client_fail(
		        c, rc,
		        "producer state %s is damaged (expected 'firn-producer 1', "
		        "producer_id and reserved_seq); remove it to start a new producer",
		        path);
	if (c->producer_id != 0 && c->producer_id != id) {
		/* An explicit id wins; the file then describes another producer. */
		return 0;
	}
	c->producer_id = id;
	c->reserved_seq = reserved;
	*found = true;
	return 0;
}

int
client_state_reserve(struct firn_client *c, uint64_t seq)
{
	char buf[128];
	uint64_t upto;
	int n, rc;

	if (c->state_path == NULL || seq <= c->reserved_seq)
		return 0;
	upto = seq + RESERVE_BLOCK;
	n = snprintf(buf, sizeof(buf),
	             "firn-producer 1\nproducer_id = %016llx\nreserved_seq = %llu\n",
	             (unsigned long long)c->producer_id, (unsigned long long)upto);
	rc = firn_file_write_atomic(c->state_path, buf, (size_t)n, 0600);
	if (rc < 0)
		return client_fail(c, rc, "producer state %s: cannot write it: %s", c->state_path,
		                   strerror(-rc));
	c->reserved_seq = upto;
	return 0;
}
