/*
 * client.c - a producer session: open, put, poll, flush, close.
 *
 * The story of a record. firn_client_put() copies the key and data into the
 * arena and gives the record the next producer sequence; nothing goes on
 * the wire yet. The next firn_client_poll() reads whatever the appliance
 * sent (acks, credit), runs the timers, and then pumps (tx.c): it packs
 * records into datagrams as long as the appliance's credit, the dedupe
 * window rule and the congestion window allow, seals them and sends them
 * in batches. RECEIVED acks tell which datagrams arrived; a datagram three
 * behind the newest acked one, or two round trips older than it, is lost
 * and its record pieces go back in line (ack.c; when acks stop altogether,
 * a probe asks for one first). DURABLE acks (ack.c) finish records:
 * the callback runs, the credit comes back, and the tail of the ring moves
 * on and frees arena space for new puts.
 *
 * Sessions come and go under the records. A RESET from the appliance (it
 * restarted, or our session idled out), a CLOSE, or nothing heard for the
 * liveness interval while records wait (or for two keepalive intervals
 * when idle), and the client handshakes again as the same producer and
 * resends every record still waiting for its DURABLE ack, with its
 * original sequence. The appliance's dedupe window answers the ones it
 * already stored with their original ack, so nothing is stored twice and
 * every record is answered once. Only a definite refusal (authentication,
 * read-only, redirect, protocol) fails the session for good, and then
 * every open record is answered with it.
 *
 * Why one thread and a poll call. A load generator wants hundreds of
 * sessions on a few cores and exact control over when work happens, and a
 * library that starts threads behind its user's back makes both hard. So
 * all work happens in the caller's calls, each bounded, and the socket is
 * exposed for the caller's own poll loop.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "client_internal.h"
#include "firn_record.h"

#define PKT_RING 2048u
#define ITEM_RING 65536u
#define RX_ROUNDS 8 /* recvmmsg batches per poll, so a flood cannot starve sending */
#define SCAN_US 5000u

static __thread char open_err[512];

/* ---- errors ------------------------------------------------------------------ */

int
client_fail(struct firn_client *c, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	firn_err_set(rc, "%s", c->err);
	return rc;
}

static int
code_errno(uint16_t code)
{
	switch (code) {
	case FIRN_PROTO_E_AUTH:
		return -EACCES;
	case FIRN_PROTO_E_READ_ONLY:
		return -EROFS;
	case FIRN_PROTO_E_REDIRECT:
		return -EREMOTE;
	case FIRN_PROTO_E_VERSION:
		return -EPROTONOSUPPORT;
	case FIRN_PROTO_E_PROTOCOL:
		return -EPROTO;
	case FIRN_PROTO_E_OVERLOADED:
		return -EBUSY;
	default:
		return -ENOTCONN;
	}
}

const char *
firn_client_status_str(int status)
{
	switch (status) {
	case FIRN_CLIENT_OK:
		return "OK";
	case FIRN_CLIENT_E_UNKNOWN_STREAM:
		return "unknown stream (create it first)";
	case FIRN_CLIENT_E_TOO_LARGE:
		return "record too large (data over 1 MiB)";
	case FIRN_CLIENT_E_AUTH:
		return "authentication failed (access key id or secret, or producer id owned by "
		       "another key)";
	case FIRN_CLIENT_E_SESSION_EXPIRED:
		return "session expired";
	case FIRN_CLIENT_E_READ_ONLY:
		return "appliance is read-only";
	case FIRN_CLIENT_E_REDIRECT:
		return "redirected to another node";
	case FIRN_CLIENT_E_OVERLOADED:
		return "appliance overloaded";
	case FIRN_CLIENT_E_STALE:
		return "sequence outside the appliance's dedupe window (fate unknown)";
	case FIRN_CLIENT_E_PROTOCOL:
		return "protocol error";
	case FIRN_CLIENT_E_VERSION:
		return "protocol version not supported by the appliance";
	case FIRN_CLIENT_E_BAD_KEY:
		return "bad partition key";
	case FIRN_CLIENT_E_INTERNAL:
		return "appliance internal error";
	case FIRN_CLIENT_E_CLOSED_BY_PEER:
		return "closed by the appliance";
	case FIRN_CLIENT_E_TIMEOUT:
		return "no durable ack in time (gave up)";
	case FIRN_CLIENT_E_CLOSED:
		return "client closed before the durable ack";
	default:
		return "unknown status";
	}
}

void
firn_client_seq_format(const struct firn_client_ack *a, char buf[FIRN_CLIENT_SEQ_SIZE])
{
	firn_seq_format(a->shard, a->counter, buf);
}

const char *
firn_client_last_error(void)
{
	return open_err;
}

const char *
firn_client_error(const struct firn_client *c)
{
	return c->err;
}

/* Fail every open record with code and stop for good. */
int
client_fatal(struct firn_client *c, uint16_t code, int rc)
{
	c->state = CL_FAILED;
	c->fail_rc = rc;
	for (uint64_t s = c->tail_seq; s < c->put_seq; s++) {
		struct crec *r = client_rec(c, s);

		if (r->state != REC_DONE)
			client_complete(c, r, code, false, 0, 0);
	}
	client_advance_tail(c);
	return rc;
}

/* ---- sessions -------------------------------------------------------------------- */

static uint64_t
now_ms(const struct firn_client *c)
{
	return c->now_us / 1000;
}

/* Begin a handshake (again): the old session's datagrams are worthless now. */
void
client_handshake_start(struct firn_client *c)
{
	int n;

	if (c->opened)
		c->st.reconnects++;
	c->state = CL_CONNECTING;
	c->tx_n = c->tx_sent = 0;
	c->enc_open = false;
	n = firn_proto_client_start(c->pc, now_ms(c), c->hsbuf, sizeof(c->hsbuf));
	if (n > 0)
		client_send_raw(c, c->hsbuf, (size_t)n);
}

static uint32_t
give_up_default(uint32_t horizon_s)
{
	uint64_t margin = FIRN_MIN(60u, horizon_s / 4);

	if (horizon_s == 0)
		return 600000;
	return (uint32_t)FIRN_MIN((uint64_t)(horizon_s - margin) * 1000, (uint64_t)UINT32_MAX);
}

static int
on_established(struct firn_client *c)
{
	const struct firn_proto_session_params *p = firn_proto_client_params(c->pc);
	uint64_t used = c->credit.used;

	c->session_id = p->session_id;
	c->credit = p->credit;
	c->credit.used = used;
	c->dedupe_w = p->dedupe_window ? p->dedupe_window : 1024;
	c->keepalive_ms = p->keepalive_ms ? p->keepalive_ms : 10000;
	c->stream_refs = FIRN_MIN((uint32_t)p->stream_refs, (uint32_t)FIRN_CLIENT_STREAMS_MAX);
	c->max_dgram = p->max_dgram;
	if (!c->opened) {
		uint64_t seq0 = p->producer_hi + 1;

		if (c->conf.next_seq != 0)
			seq0 = c->conf.next_seq;
		else if (c->state_path != NULL)
			seq0 = FIRN_MAX(seq0, c->reserved_seq + 1);
		c->tail_seq = c->new_seq = c->put_seq = seq0;
		c->sweep = c->sweep_end = seq0;
		if (c->conf.give_up_ms == 0)
			c->conf.give_up_ms = give_up_default(p->dedupe_horizon_s);
		if (c->state_path != NULL) {
			int rc = client_state_reserve(c, seq0);

			if (rc < 0)
				return rc;
		}
		c->opened = true;
	}
	client_reset_session(c);
	c->state = CL_ESTABLISHED;
	c->last_rx_us = c->last_tx_us = c->now_us;
	return 0;
}

void
client_format_addr(const struct firn_proto_addr *a, char *buf, size_t size)
{
	static const uint8_t v4map[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (memcmp(a->ip, v4map, 12) == 0)
		snprintf(buf, size, "%u.%u.%u.%u:%u", a->ip[12], a->ip[13], a->ip[14], a->ip[15],
		         a->port);
	else {
		char hex[33];

		firn_hex_encode(a->ip, 16, hex);
		snprintf(buf, size, "[%s]:%u", hex, a->port);
	}
}

/* The handshake ended in FAILED: a REJECT, a RESET, or a timeout. */
static int
on_handshake_failed(struct firn_client *c)
{
	struct firn_proto_addr redir;
	uint16_t code = firn_proto_client_error(c->pc, &redir);
	char where[80];

	if (code == FIRN_PROTO_E_SESSION_EXPIRED) {
		/* A RESET: the appliance forgot us (restart, idle). Same producer, new session. */
		client_handshake_start(c);
		return 0;
	}
	if (code == FIRN_PROTO_E_OVERLOADED) {
		/* No session slot free: try again in a second. */
		c->state = CL_BACKOFF;
		c->backoff_until_us = c->now_us + 1000000;
		client_fail(c, -EBUSY, "%s: appliance has no free session slot (overloaded)",
		            c->endpoint);
		return 0;
	}
	switch (code) {
	case FIRN_PROTO_E_AUTH:
		client_fail(c, -EACCES,
		            "%s: authentication failed: access key '%s' unknown or secret wrong, "
		            "or producer id %016llx belongs to another key",
		            c->endpoint, c->key_id, (unsigned long long)c->producer_id);
		break;
	case FIRN_PROTO_E_REDIRECT:
		client_format_addr(&redir, where, sizeof(where));
		client_fail(c, -EREMOTE, "%s: redirected: connect to %s instead", c->endpoint,
		            where);
		break;
	case FIRN_PROTO_E_READ_ONLY:
		client_fail(c, -EROFS, "%s: appliance is read-only (takes no writes now)",
		            c->endpoint);
		break;
	case FIRN_PROTO_E_VERSION:
		client_fail(c, -EPROTONOSUPPORT, "%s: appliance does not speak protocol version %d",
		            c->endpoint, FIRN_PROTO_VERSION);
		break;
	default:
		client_fail(c, code_errno(code), "%s: handshake refused: %s", c->endpoint,
		            firn_proto_status_name(code));
		break;
	}
	return client_fatal(c, code, code_errno(code));
}

static int
on_cleartext(struct firn_client *c, const uint8_t *pkt, size_t len)
{
	bool was_up = c->state == CL_ESTABLISHED;
	int n;

	n = firn_proto_client_handshake(c->pc, pkt, len, now_ms(c), c->hsbuf, sizeof(c->hsbuf));
	if (n == -EBADMSG) {
		c->st.rx_dropped++;
		return 0;
	}
	if (n > 0)
		client_send_raw(c, c->hsbuf, (size_t)n);
	switch (firn_proto_client_state(c->pc)) {
	case FIRN_PROTO_CLIENT_ESTABLISHED:
		if (!was_up)
			return on_established(c);
		return 0;
	case FIRN_PROTO_CLIENT_FAILED:
		return on_handshake_failed(c);
	default:
		return 0;
	}
}

/* ---- receive ---------------------------------------------------------------------- */

/* Read what is waiting. Returns datagrams read, or -ECONNREFUSED (ICMP unreachable). */
static int
client_rx(struct firn_client *c)
{
	int total = 0;

	for (int round = 0; round < RX_ROUNDS; round++) {
		int n;

		for (unsigned i = 0; i < CLIENT_BATCH; i++) {
			c->riov[i].iov_base = c->rxbuf + i * c->rx_slot;
			c->riov[i].iov_len = c->rx_slot;
			memset(&c->rmsg[i].msg_hdr, 0, sizeof(c->rmsg[i].msg_hdr));
			c->rmsg[i].msg_hdr.msg_iov = &c->riov[i];
			c->rmsg[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(c->fd, c->rmsg, CLIENT_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNREFUSED)
				return -ECONNREFUSED;
			break; /* EAGAIN, or an error the next send will report */
		}
		for (int i = 0; i < n; i++) {
			uint8_t *pkt = c->rxbuf + (size_t)i * c->rx_slot, *plain;
			size_t len = c->rmsg[i].msg_len;
			uint64_t pn;
			int m;

			c->st.rx_datagrams++;
			c->st.rx_bytes += len;
			if (c->state == CL_FAILED)
				continue;
			if (len > 5 && pkt[5] == FIRN_PROTO_DATA) {
				m = firn_proto_client_open(c->pc, pkt, len, &plain, &pn);
				if (m < 0) {
					c->st.rx_dropped++;
					continue;
				}
				c->last_rx_us = c->now_us;
				client_on_frames(c, plain, (size_t)m, pn);
			} else {
				on_cleartext(c, pkt, len);
			}
		}
		total += n;
		if (n < (int)CLIENT_BATCH)
			break;
	}
	return total;
}

/* ---- the duty cycle -------------------------------------------------------------------- */

/* One round of work; returns how much was done (datagrams in and out). */
static int
client_step(struct firn_client *c)
{
	int work = 0, rc;

	c->now_us = client_now_us();
	rc = client_rx(c);
	if (rc == -ECONNREFUSED) {
		/* Nothing listens (yet): firnd may be restarting. The timers carry on. */
		if (!c->opened)
			return rc;
	} else {
		work += rc;
	}
	if (c->state == CL_CONNECTING) {
		rc = firn_proto_client_tick(c->pc, now_ms(c), c->hsbuf, sizeof(c->hsbuf));
		if (rc > 0) {
			client_send_raw(c, c->hsbuf, (size_t)rc);
		} else if (rc == -ETIMEDOUT) {
			if (!c->opened)
				return rc;
			client_handshake_start(c); /* a fresh nonce; firnd may be back */
		}
	} else if (c->state == CL_BACKOFF && c->now_us >= c->backoff_until_us) {
		client_handshake_start(c);
	}
	if (c->state == CL_FAILED)
		return work;
	if (c->now_us >= c->next_scan_us) {
		client_record_timer(c);
		c->next_scan_us = c->now_us + SCAN_US;
	}
	if (c->state == CL_ESTABLISHED) {
		uint64_t live =
		        FIRN_MAX((uint64_t)c->conf.liveness_ms * 1000, 3ull * client_rto_us(c));
		/* Silence counts from the last word, or from when records began to wait. */
		uint64_t silence =
		        c->now_us - FIRN_MAX(c->last_rx_us, c->n_open > 0 ? c->wait_since_us : 0);

		client_loss_timer(c);
		if ((c->n_open > 0 && silence >= live) ||
		    silence >= 2000ull * c->keepalive_ms + live) {
			/*
			 * Silence while records wait, in flight or for credit: the
			 * session is gone (§11). (A live appliance answers the
			 * probes below even when it grants nothing.) An idle
			 * producer finds out from its unanswered keepalives.
			 */
			client_handshake_start(c);
		} else {
			rc = client_pump(c);
			if (rc > 0)
				work += rc;
			if (c->state == CL_ESTABLISHED &&
			    c->now_us - c->last_tx_us >= (uint64_t)c->keepalive_ms * 1000 / 2)
				client_send_ping(c);
			else if (c->state == CL_ESTABLISHED && c->n_open > 0 &&
			         c->pkts_inflight == 0 && silence >= live / 4 &&
			         c->now_us - c->last_tx_us >= live / 4)
				client_send_probe(c); /* waiting on credit: still there? */
		}
	}
	client_advance_tail(c);
	return work;
}

/* How long poll() may sleep before a timer needs us (ms, at least 1). */
static int
next_timer_ms(const struct firn_client *c)
{
	uint64_t wait = (uint64_t)c->keepalive_ms * 500;

	if (c->state == CL_CONNECTING || c->state == CL_BACKOFF)
		wait = 10000;
	if (c->pkts_inflight > 0) {
		uint64_t due = client_loss_due_us(c);

		wait = FIRN_MIN(wait, due > c->now_us ? due - c->now_us : 0);
		if (c->largest_acked >= c->pkt_tail)
			wait = FIRN_MIN(wait, 2ull * FIRN_MAX(c->srtt_us, 1000u));
	}
	if (c->n_open > 0)
		wait = FIRN_MIN(wait, (uint64_t)SCAN_US);
	{
		uint64_t due = client_linger_due_us(c);

		if (due != UINT64_MAX)
			wait = FIRN_MIN(wait, due > c->now_us ? due - c->now_us : 0);
	}
	return (int)FIRN_MAX(wait / 1000, 1ull);
}

int
firn_client_poll(struct firn_client *c, int timeout_ms)
{
	int work;

	if (c->state == CL_FAILED)
		return c->fail_rc;
	c->delivered = 0;
	work = client_step(c);
	if (work < 0)
		return work;
	if (work == 0 && c->delivered == 0 && timeout_ms != 0 && c->state != CL_FAILED) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		int wait = next_timer_ms(c);

		if (c->tx_sent < c->tx_n)
			pfd.events |= POLLOUT;
		if (timeout_ms > 0)
			wait = FIRN_MIN(wait, timeout_ms);
		poll(&pfd, 1, wait);
		work = client_step(c);
		if (work < 0)
			return work;
	}
	if (c->state == CL_FAILED)
		return c->fail_rc;
	return (int)c->delivered;
}

int
firn_client_flush(struct firn_client *c, int timeout_ms)
{
	uint64_t start = client_now_us();

	for (;;) {
		uint64_t el = (client_now_us() - start) / 1000;
		int rc;

		client_advance_tail(c);
		if (c->state == CL_FAILED)
			return c->fail_rc;
		if (c->n_open == 0)
			return 0;
		if (timeout_ms >= 0 && el >= (uint64_t)timeout_ms) {
			client_fail(c, -ETIMEDOUT,
			            "%s: %u record%s still without a durable ack after %d ms "
			            "(%u unsent, %u in flight)",
			            c->endpoint, c->n_open, c->n_open == 1 ? "" : "s", timeout_ms,
			            (unsigned)(c->put_seq - c->new_seq), c->n_inflight);
			return -ETIMEDOUT;
		}
		rc = firn_client_poll(
		        c, timeout_ms < 0 ? 100 : (int)FIRN_MIN((uint64_t)timeout_ms - el, 100ull));
		if (rc < 0)
			return rc;
	}
}

/* ---- put -------------------------------------------------------------------------------- */

/*
 * Find arena room for need bytes (need >= 1). The arena is a ring freed in
 * sequence order. While the queue is shallow the ring wraps early, at
 * ARENA_SOFT bytes, when the start is free: the bytes put are then the ones
 * recently freed, still in cache, instead of a cold line every 64 bytes
 * across the whole arena (the copy on put was 30% of a benchmark's CPU).
 */
#define ARENA_SOFT (256u << 10)

static bool
arena_fit(struct firn_client *c, uint32_t need, uint32_t *off)
{
	if (c->tail_seq == c->put_seq)
		c->arena_head = c->arena_tail = 0;
	if (c->arena_head >= c->arena_tail) {
		bool soft = (uint64_t)c->arena_head + need > ARENA_SOFT && need < c->arena_tail;

		if (!soft && (uint64_t)c->arena_head + need <= c->arena_size) {
			*off = c->arena_head;
			return true;
		}
		if (need < c->arena_tail) {
			*off = 0;
			return true;
		}
		return false;
	}
	if ((uint64_t)c->arena_head + need < c->arena_tail) {
		*off = c->arena_head;
		return true;
	}
	return false;
}

static int
put_common(struct firn_client *c, int stream, const void *key, size_t key_len, bool hash,
           const void *data, size_t len, uint64_t cookie)
{
	uint32_t off, need;
	struct crec *r;
	int rc;

	if (c->state == CL_FAILED)
		return c->fail_rc;
	if (stream < 0 || stream >= FIRN_CLIENT_STREAMS_MAX || !c->streams[stream].used)
		return firn_err_set(
		        -EINVAL, "put: stream handle %d is not from firn_client_stream()", stream);
	if (!hash && firn_partition_key_check(key, key_len) < 0)
		return firn_err_set(-EINVAL, "put: the partition key must be 1..%d bytes of UTF-8",
		                    FIRN_CLIENT_KEY_MAX);
	if (len > FIRN_CLIENT_DATA_MAX)
		return firn_err_set(-E2BIG, "put: record of %zu bytes exceeds the 1 MiB limit",
		                    len);
	if (len > 0 && data == NULL)
		return -EINVAL;
	need = (uint32_t)(key_len + len);
	if (need > c->arena_size)
		return firn_err_set(-E2BIG,
		                    "put: record of %zu bytes does not fit the %u-byte queue", len,
		                    c->arena_size);
	for (;;) {
		if (c->put_seq - c->tail_seq <= c->rec_mask && arena_fit(c, need, &off))
			break;
		if (c->conf.flags & FIRN_CLIENT_NONBLOCK)
			return -EAGAIN;
		rc = firn_client_poll(c, 10);
		if (rc < 0)
			return rc;
	}
	if (c->state_path != NULL && c->put_seq > c->reserved_seq) {
		rc = client_state_reserve(c, c->put_seq);
		if (rc < 0)
			return rc;
	}
	memcpy(c->arena + off, key, key_len);
	if (len > 0)
		memcpy(c->arena + off + key_len, data, len);
	c->arena_head = off + need;
	if (c->tail_seq == c->put_seq)
		c->arena_tail = off;
	r = client_rec(c, c->put_seq);
	r->seq = c->put_seq++;
	r->cookie = cookie;
	r->first_tx_us = 0;
	r->put_us = c->conf.linger_us ? client_now_us() : 0;
	r->deadline_us = 0;
	r->arena_off = off;
	r->len = (uint32_t)len;
	r->key_len = (uint16_t)key_len;
	r->ref = (uint16_t)stream;
	r->state = REC_QUEUED;
	r->hash = hash;
	r->charged = false;
	r->tries = 0;
	if (c->n_open++ == 0)
		c->wait_since_us = client_now_us();
	c->queued_bytes += FIRN_PROTO_RECORD_HDR + key_len + len;
	c->st.puts++;
	return 0;
}

int
firn_client_put(struct firn_client *c, int stream, const void *key, size_t key_len,
                const void *data, size_t len, uint64_t cookie)
{
	if (key == NULL)
		return -EINVAL;
	return put_common(c, stream, key, key_len, false, data, len, cookie);
}

int
firn_client_put_hash(struct firn_client *c, int stream, const uint8_t hash[16], const void *data,
                     size_t len, uint64_t cookie)
{
	if (hash == NULL)
		return -EINVAL;
	return put_common(c, stream, hash, 16, true, data, len, cookie);
}

int
firn_client_stream(struct firn_client *c, const char *name)
{
	size_t n = name != NULL ? strlen(name) : 0;
	uint32_t refs = c->stream_refs ? c->stream_refs : FIRN_CLIENT_STREAMS_MAX;

	if (n == 0 || n > FIRN_PROTO_STREAM_NAME_MAX)
		return firn_err_set(-EINVAL, "stream name must be 1..%d bytes",
		                    FIRN_PROTO_STREAM_NAME_MAX);
	for (uint32_t i = 0; i < refs; i++)
		if (c->streams[i].used && c->streams[i].name_len == n &&
		    memcmp(c->streams[i].name, name, n) == 0)
			return (int)i;
	for (uint32_t i = 0; i < refs; i++) {
		if (!c->streams[i].used) {
			memcpy(c->streams[i].name, name, n);
			c->streams[i].name[n] = '\0';
			c->streams[i].name_len = (uint8_t)n;
			c->streams[i].used = true;
			return (int)i;
		}
	}
	return firn_err_set(-ENOSPC, "more than %u streams on one session", refs);
}

/* ---- open and close ------------------------------------------------------------------------ */

static int
parse_endpoint(const char *ep, char *host, size_t hsize, char *port, size_t psize)
{
	const char *colon;
	size_t hl;

	if (ep[0] == '[') {
		const char *end = strchr(ep, ']');

		if (end == NULL)
			return -EINVAL;
		hl = (size_t)(end - ep - 1);
		if (hl == 0 || hl >= hsize)
			return -EINVAL;
		memcpy(host, ep + 1, hl);
		host[hl] = '\0';
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] != '\0' && colon == NULL)
			return -EINVAL;
	} else {
		colon = strrchr(ep, ':');
		hl = colon != NULL ? (size_t)(colon - ep) : strlen(ep);
		if (hl == 0 || hl >= hsize)
			return -EINVAL;
		memcpy(host, ep, hl);
		host[hl] = '\0';
	}
	snprintf(port, psize, "%s", colon != NULL ? colon + 1 : "7400");
	{
		uint64_t p;

		if (firn_parse_u64(port, &p) < 0 || p == 0 || p > 65535)
			return -EINVAL;
	}
	return 0;
}

static int
open_socket(struct firn_client *c, const char *ep)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *res;
	char host[256], port[16];
	int one = 4 << 20, rc;
	bool v6;

	if (parse_endpoint(ep, host, sizeof(host), port, sizeof(port)) < 0)
		return client_fail(c, -EINVAL, "endpoint '%s' is not HOST:PORT", ep);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return client_fail(c, -EHOSTUNREACH, "endpoint %s: %s", ep, gai_strerror(rc));
	c->fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = -errno;
		freeaddrinfo(res);
		return client_fail(c, rc, "socket: %s", strerror(-rc));
	}
	/* Big buffers absorb bursts of acks and of our own batches (FORCE needs root). */
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUFFORCE, &one, sizeof(one)) < 0)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUFFORCE, &one, sizeof(one)) < 0)
		setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
	memcpy(&c->peer, res->ai_addr, res->ai_addrlen);
	c->peer_len = res->ai_addrlen;
	v6 = res->ai_family == AF_INET6;
	freeaddrinfo(res);
	/* Connected: the kernel filters other senders and reports ICMP unreachable. */
	if (connect(c->fd, (struct sockaddr *)&c->peer, c->peer_len) < 0) {
		rc = -errno;
		return client_fail(c, rc, "connect %s: %s", ep, strerror(-rc));
	}
	/*
	 * mtu 0: the MTU of the route to the appliance, as the kernel knows it
	 * for this connected socket (IP_MTU), so a jumbo-frame LAN gets 8972-byte
	 * datagrams (~6x fewer per record) without configuration. Clamped to
	 * 9000 (loopback says 65536); 1500 when the kernel does not say.
	 */
	if (c->conf.mtu == 0) {
		int mtu = 0;
		socklen_t ml = sizeof(mtu);

		if (getsockopt(c->fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU, &mtu,
		               &ml) < 0 ||
		    mtu < 1280)
			mtu = 1500;
		c->conf.mtu = (unsigned)FIRN_MIN(mtu, 9000);
	}
	c->max_dgram = firn_proto_dgram_for_mtu(c->conf.mtu, v6);
	return 0;
}

static void *
alloc_array(size_t n, size_t size)
{
	return calloc(n, size);
}

static uint64_t
pow2_at_least(uint64_t v)
{
	uint64_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static int
client_alloc(struct firn_client *c)
{
	uint64_t nrec =
	        pow2_at_least(FIRN_MAX(c->conf.queue_records ? c->conf.queue_records : 8192u, 64u));
	size_t bytes = c->conf.queue_bytes ? c->conf.queue_bytes : (16u << 20);

	bytes = FIRN_MAX(bytes, (size_t)2 << 20);
	bytes = FIRN_MIN(bytes, (size_t)1 << 30);
	c->recs = alloc_array(nrec, sizeof(*c->recs));
	c->rec_mask = nrec - 1;
	c->arena = malloc(bytes);
	c->arena_size = (uint32_t)bytes;
	c->pkts = alloc_array(PKT_RING, sizeof(*c->pkts));
	c->pkt_mask = PKT_RING - 1;
	c->items = alloc_array(ITEM_RING, sizeof(*c->items));
	c->item_mask = ITEM_RING - 1;
	c->retx = alloc_array(ITEM_RING, sizeof(*c->retx));
	c->retx_mask = ITEM_RING - 1;
	c->txbuf = malloc((size_t)CLIENT_BATCH * FIRN_PROTO_DGRAM_MAX);
	c->rx_slot = FIRN_PROTO_DGRAM_MAX + 64;
	c->rxbuf = malloc(CLIENT_BATCH * c->rx_slot);
	if (c->recs == NULL || c->arena == NULL || c->pkts == NULL || c->items == NULL ||
	    c->retx == NULL || c->txbuf == NULL || c->rxbuf == NULL)
		return client_fail(c, -ENOMEM, "out of memory for a %zu-byte queue", bytes);
	return 0;
}

static uint64_t
random_producer_id(void)
{
	uint64_t id = 0;

	while (id == 0)
		if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
			id = firn_mono_ns() ^ ((uint64_t)getpid() << 32);
	return id;
}

static void
client_free(struct firn_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	firn_proto_client_destroy(c->pc);
	free(c->recs);
	free(c->arena);
	free(c->pkts);
	free(c->items);
	free(c->retx);
	free(c->txbuf);
	free(c->rxbuf);
	free(c->state_path);
	free(c);
}

static struct firn_client *
open_failed(struct firn_client *c, int rc)
{
	snprintf(open_err, sizeof(open_err), "%s", c->err[0] ? c->err : firn_err_msg());
	firn_err_set(rc, "%s", open_err);
	client_free(c);
	return NULL;
}

struct firn_client *
firn_client_open(const struct firn_client_conf *conf)
{
	struct firn_client *c = calloc(1, sizeof(*c));
	struct firn_proto_client_conf pcc = {0};
	const char *ep = conf->endpoint ? conf->endpoint : FIRN_CLIENT_DEFAULT_ENDPOINT;
	uint64_t deadline;
	bool found = false;
	int rc;

	open_err[0] = '\0';
	if (c == NULL) {
		snprintf(open_err, sizeof(open_err), "out of memory");
		firn_err_set(-ENOMEM, "out of memory");
		return NULL;
	}
	c->fd = -1;
	c->conf = *conf;
	c->conf.endpoint = NULL;
	c->conf.access_key_id = NULL;
	c->conf.secret_access_key = NULL;
	c->conf.state_path = NULL;
	if (c->conf.connect_timeout_ms == 0)
		c->conf.connect_timeout_ms = 5000;
	if (c->conf.durable_timeout_ms == 0)
		c->conf.durable_timeout_ms = 1000;
	if (c->conf.liveness_ms == 0)
		c->conf.liveness_ms = 3000;
	c->keepalive_ms = 10000;
	snprintf(c->endpoint, sizeof(c->endpoint), "%s", ep);
	if (conf->access_key_id == NULL || conf->access_key_id[0] == '\0' ||
	    strlen(conf->access_key_id) > FIRN_PROTO_KEY_ID_MAX ||
	    conf->secret_access_key == NULL || conf->secret_access_key[0] == '\0') {
		client_fail(c, -EINVAL,
		            "an access key id (1..%d bytes) and a secret access key are required",
		            FIRN_PROTO_KEY_ID_MAX);
		return open_failed(c, -EINVAL);
	}
	snprintf(c->key_id, sizeof(c->key_id), "%s", conf->access_key_id);
	rc = client_alloc(c);
	if (rc < 0)
		return open_failed(c, rc);
	c->producer_id = conf->producer_id;
	if (conf->state_path != NULL) {
		c->state_path = strdup(conf->state_path);
		if (c->state_path == NULL)
			return open_failed(c, -ENOMEM);
		rc = client_state_load(c, conf->state_path, &found);
		if (rc < 0)
			return open_failed(c, rc);
	}
	if (c->producer_id == 0)
		c->producer_id = random_producer_id();
	rc = open_socket(c, ep);
	if (rc < 0)
		return open_failed(c, rc);
	pcc.key_id = conf->access_key_id;
	pcc.secret = (const uint8_t *)conf->secret_access_key;
	pcc.secret_len = strlen(conf->secret_access_key);
	pcc.producer_id = c->producer_id;
	pcc.max_dgram = c->max_dgram;
	pcc.handshake_timeout_ms = c->conf.connect_timeout_ms;
	c->pc = firn_proto_client_create(&pcc);
	if (c->pc == NULL)
		return open_failed(c, firn_err_code() ? firn_err_code() : -ENOMEM);

	c->now_us = client_now_us();
	deadline = c->now_us + (uint64_t)c->conf.connect_timeout_ms * 1000;
	client_handshake_start(c);
	while (c->state != CL_ESTABLISHED) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

		if (c->state == CL_FAILED)
			return open_failed(c, c->fail_rc);
		if (client_now_us() >= deadline) {
			if (c->state != CL_BACKOFF)
				client_fail(c, -ETIMEDOUT,
				            "%s: no answer to the handshake within %u ms (is firnd "
				            "running with its UDP data port there?)",
				            c->endpoint, c->conf.connect_timeout_ms);
			return open_failed(c, -ETIMEDOUT);
		}
		poll(&pfd, 1, 10);
		rc = client_step(c);
		if (rc == -ECONNREFUSED) {
			client_fail(c, -ECONNREFUSED,
			            "%s: connection refused (nothing listens on that UDP port)",
			            c->endpoint);
			return open_failed(c, -ECONNREFUSED);
		}
		if (rc == -ETIMEDOUT) {
			client_fail(c, -ETIMEDOUT,
			            "%s: no answer to the handshake within %u ms (is firnd running "
			            "with its UDP data port there?)",
			            c->endpoint, c->conf.connect_timeout_ms);
			return open_failed(c, -ETIMEDOUT);
		}
	}
	c->err[0] = '\0';
	FIRN_LOG(DEBUG, CLIENT_LOG, "session %016llx to %s: producer %016llx from seq %llu",
	         (unsigned long long)c->session_id, c->endpoint, (unsigned long long)c->producer_id,
	         (unsigned long long)c->put_seq);
	return c;
}

void
firn_client_close(struct firn_client *c)
{
	if (c == NULL)
		return;
	c->now_us = client_now_us();
	if (c->state == CL_ESTABLISHED) {
		struct firn_proto_enc e;
		int n;

		client_tx_flush(c);
		if (firn_proto_client_enc_begin(c->pc, &e, c->hsbuf, sizeof(c->hsbuf), 0) == 0 &&
		    firn_proto_enc_close(&e, FIRN_PROTO_E_CLOSED) == 1) {
			n = firn_proto_client_seal(c->pc, &e);
			if (n > 0)
				client_send_raw(c, c->hsbuf, (size_t)n);
		}
	}
	if (c->state != CL_FAILED) {
		c->state = CL_FAILED;
		for (uint64_t s = c->tail_seq; s < c->put_seq; s++) {
			struct crec *r = client_rec(c, s);

			if (r->state != REC_DONE)
				client_complete(c, r, FIRN_CLIENT_E_CLOSED, false, 0, 0);
		}
	}
	client_free(c);
}

/* ---- getters ------------------------------------------------------------------------------- */

int
firn_client_fd(const struct firn_client *c)
{
	return c->fd;
}

uint32_t
firn_client_pending(const struct firn_client *c)
{
	return c->n_open;
}

uint64_t
firn_client_producer_id(const struct firn_client *c)
{
	return c->producer_id;
}

uint64_t
firn_client_next_seq(const struct firn_client *c)
{
	return c->put_seq;
}

void
firn_client_stats(const struct firn_client *c, struct firn_client_stats *out)
{
	*out = c->st;
	out->queued = (uint32_t)(c->put_seq - c->new_seq);
	out->in_flight = c->n_inflight;
	out->srtt_us = c->srtt_us;
	out->cwnd = c->cwnd;
	out->max_dgram = c->max_dgram;
}
