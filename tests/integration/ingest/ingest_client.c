/*
 * ingest_client.c - a small producer and checker for firnd's UDP ingest tests.
 *
 * It speaks lib/proto over one UDP socket, independently of lib/client, so
 * the appliance side is tested against the spec and not against a client
 * written by the same hands. Three modes:
 *
 *   mkstream --data-dir DIR --stream S --shards N
 *	create a stream in DIR's catalog before firnd starts (no HTTP needed).
 *
 *   send --server IP:PORT --stream S --records N [--producer ID] [--sizes 100|mixed]
 *	[--keys K] [--seed X] [--ack-log FILE] [--timeout SECS] [--max-dgram B]
 *	[--impair loss=P,dup=P,reorder=P] [--progress FILE] [--rate R]
 *	put records 1..N (producer seq = record number; key and bytes are a
 *	function of (seed, seq), so the checker can regenerate them), resend
 *	anything without a DURABLE ack (per-record timeout, doubling), survive
 *	RESETs, silences and restarts of the appliance by handshaking again as
 *	the same producer, and check every answer: a record's later answers
 *	(DUPLICATE) must repeat its first (shard, counter) exactly. --impair
 *	drops, duplicates and reorders our own datagrams (and drops received
 *	ones) at the given percentages; --rate paces new records at R per
 *	second (open loop; resends are not paced). With nothing in flight
 *	(out of credit, or paced) it PINGs every 200 ms, which gets firnd's
 *	current credit grant again. Writes "seq shard counter" per acked
 *	record to the ack log and a summary line; exits 0 only if every record
 *	was acked OK and no answer contradicted another.
 *
 *   verify --data-dir DIR --stream S --records N --producer ID [--sizes ..]
 *	[--keys K] [--seed X] [--ack-log FILE] [--dump FILE] [--partial]
 *	with firnd stopped: open DIR's catalog and store, read every record of
 *	every shard of S, and check: no producer seq stored twice; every seq
 *	1..N stored once, with its key and bytes; every acked seq exactly at
 *	the (shard, counter) its ack named. --dump writes "shard counter
 *	sha256(data)" per record (compared with the HTTP API's GetRecords).
 *	--partial: the producer was cut off; a record never acked may be
 *	missing (but still not stored twice).
 *
 * Exit 0 ok, 1 failure, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "firn_common.h"
#include "firn_disk_uring.h"
#include "firn_net.h"
#include "firn_proto.h"
#include "firn_record.h"
#include "firn_store.h"
#include "firn_stream.h"

#define DEFAULT_KEY_ID "FIRNDEMOACCESSKEY"
#define DEFAULT_SECRET "firn-demo-secret-change-me"

enum { R_UNSENT = 0, R_INFLIGHT, R_WAIT, R_DONE, R_FAILED };

struct rec {
	uint64_t sent_ms; /* last send (INFLIGHT) or when to resend (WAIT) */
	uint64_t counter;
	uint32_t shard;
	uint32_t rto;
	uint16_t answers;
	uint8_t state;
	uint8_t status;
	bool charged;
};

static struct {
	const char *mode, *server, *stream, *data_dir, *ack_log, *dump, *progress;
	const char *key_id, *secret, *sizes;
	uint64_t records, producer, seed, keys, shards, rate;
	unsigned timeout_s;
	uint32_t fixed_len; /* --sizes N */
	bool mixed;         /* --sizes mixed */
	uint16_t max_dgram;
	unsigned loss, dup, reorder; /* percent */
	bool partial;                /* verify: records never acked may be missing */
} opt;

/* ---- the records: pure functions of (seed, seq) ------------------------------------ */

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint32_t
rec_len(uint64_t seq)
{
	uint64_t h = mix(opt.seed ^ (seq * 0x9e3779b97f4a7c15ull));

	if (!opt.mixed)
		return opt.fixed_len;
	/* mostly small, some tens of KiB, a few whole MiB (fragmented) */
	if (seq == 3 || seq % 499 == 0)
		return FIRN_RECORD_DATA_MAX;
	if (seq % 97 == 0)
		return 20000 + (uint32_t)(h % 180000);
	if (seq % 7 == 0)
		return 0;
	return (uint32_t)(h % 1500);
}

static size_t
rec_key(uint64_t seq, char *buf, size_t cap)
{
	uint64_t k = opt.keys ? mix(seq ^ opt.seed) % opt.keys : seq;

	return (size_t)snprintf(buf, cap, "key-%" PRIu64, k);
}

static void
rec_data(uint64_t seq, uint8_t *buf, uint32_t len)
{
	uint64_t x = mix(opt.seed ^ opt.producer ^ seq);

	for (uint32_t i = 0; i < len; i++) {
		if ((i & 7) == 0)
			x = mix(x + i + 1);
		buf[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
}

/* ---- send --------------------------------------------------------------------------- */

struct sender {
	int fd;
	struct sockaddr_in srv;
	struct firn_proto_client *c;
	struct firn_proto_credit credit;
	struct rec *recs;
	uint64_t base; /* lowest seq not DONE/FAILED */
	uint64_t next; /* next seq never sent */
	uint64_t inflight_bytes;
	uint64_t last_auth_ms, conn_start_ms, last_tx_ms;
	uint64_t done, failed, resends, dup_answers, overloaded, handshakes, bad, dgrams_tx;
	uint64_t dropped_tx, dropped_rx, dup_tx, pings, tx_blocked;
	uint8_t held[FIRN_PROTO_DGRAM_MAX]; /* a datagram held back to reorder */
	size_t held_len;
	uint8_t *data;
	uint64_t rng;
};

static uint64_t
now_ms(void)
{
	return firn_mono_ns() / 1000000;
}

static unsigned
rnd100(struct sender *s)
{
	s->rng = mix(s->rng + 0x9e3779b97f4a7c15ull);
	return (unsigned)(s->rng % 10000);
}

/*
 * EPERM is a firewall rule dropping the datagram on its way out (the loss
 * tests' nftables); like any other loss it is counted, not reported.
 */
static void
raw_send(struct sender *s, const uint8_t *b, size_t len)
{
	if (sendto(s->fd, b, len, 0, (const struct sockaddr *)&s->srv, sizeof(s->srv)) < 0) {
		if (errno == EPERM)
			s->tx_blocked++;
		else if (errno != EAGAIN && errno != ECONNREFUSED)
			fprintf(stderr, "sendto: %s\n", strerror(errno));
	}
	s->dgrams_tx++;
	s->last_tx_ms = now_ms();
}

/* Our own lossy, duplicating, reordering link (percentages in hundredths). */
static void
dgram_send(struct sender *s, const uint8_t *b, size_t len)
{
	if (opt.loss && rnd100(s) < opt.loss * 100) {
		s->dropped_tx++;
		return;
	}
	if (opt.reorder && s->held_len == 0 && rnd100(s) < opt.reorder * 100) {
		memcpy(s->held, b, len);
		s->held_len = len;
		return;
	}
	raw_send(s, b, len);
	if (opt.dup && rnd100(s) < opt.dup * 100) {
		raw_send(s, b, len);
		s->dup_tx++;
	}
	if (s->held_len) {
		raw_send(s, s->held, s->held_len);
		s->held_len = 0;
	}
}

static void
connect_start(struct sender *s)
{
	uint8_t out[FIRN_PROTO_DGRAM_MAX];
	int n = firn_proto_client_start(s->c, now_ms(), out, sizeof(out));

	s->handshakes++;
	s->conn_start_ms = now_ms();
	if (n > 0)
		dgram_send(s, out, (size_t)n);
}

/*
 * A PING with ACK_NOW: firnd answers at once with its RECEIVED ack and its
 * current credit grant (doc/protocol.md §11). We send one every 200 ms
 * while records wait but none is in flight. Out of credit, the datagram
 * that carried the last grant may have been lost, and nothing else would
 * make firnd say it again; paced, it keeps the liveness check fed.
 */
static void
send_ping(struct sender *s)
{
	static uint8_t buf[FIRN_PROTO_DGRAM_MAX];
	struct firn_proto_enc e;
	int n;

	if (firn_proto_client_enc_begin(s->c, &e, buf, sizeof(buf), FIRN_PROTO_F_ACK_NOW) < 0 ||
	    firn_proto_enc_ping(&e) < 0)
		return;
	n = firn_proto_client_seal(s->c, &e);
	if (n > 0) {
		dgram_send(s, buf, (size_t)n);
		s->pings++;
	}
}

/* A new session: fresh credit, and everything unanswered goes again at once. */
static void
on_established(struct sender *s)
{
	const struct firn_proto_session_params *p = firn_proto_client_params(s->c);

	s->credit = p->credit;
	s->credit.used = 0;
	s->inflight_bytes = 0;
	for (uint64_t q = s->base; q < s->next; q++) {
		struct rec *r = &s->recs[q];

		if (r->state == R_INFLIGHT || r->state == R_WAIT) {
			r->state = R_INFLIGHT;
			r->sent_ms = 0;
			if (r->charged) {
				s->credit.used += rec_len(q);
				s->inflight_bytes += rec_len(q);
			}
		}
	}
	s->last_auth_ms = now_ms();
}

static void
answer(struct sender *s, const struct firn_proto_durable *e)
{
	for (unsigned k = 0; k < e->count; k++) {
		uint64_t q = e->seq + k;
		struct rec *r;

		if (q == 0 || q > opt.records) {
			fprintf(stderr, "answer for seq %" PRIu64 " we never sent\n", q);
			s->bad++;
			continue;
		}
		r = &s->recs[q];
		r->answers++;
		if (e->flags & FIRN_PROTO_DF_DUPLICATE)
			s->dup_answers++;
		if (e->status == FIRN_PROTO_OK) {
			if (r->state == R_DONE) {
				if (r->shard != e->shard || r->counter != e->counter + k) {
					fprintf(stderr,
					        "seq %" PRIu64 ": acked at %u/%" PRIu64
					        " and again at %u/%" PRIu64 "\n",
					        q, r->shard, r->counter, e->shard, e->counter + k);
					s->bad++;
				}
				continue;
			}
			r->shard = e->shard;
			r->counter = e->counter + k;
			r->status = 0;
		} else if (e->status == FIRN_PROTO_E_OVERLOADED ||
		           e->status == FIRN_PROTO_E_INTERNAL) {
			/* transient: give the credit back, resend after a pause */
			if (r->state == R_INFLIGHT) {
				if (r->charged) {
					firn_proto_credit_release(&s->credit, rec_len(q));
					s->inflight_bytes -= rec_len(q);
					r->charged = false;
				}
				r->state = R_WAIT;
				r->sent_ms = now_ms() + 20;
				s->overloaded++;
			}
			continue;
		} else {
			if (r->state == R_DONE || r->state == R_FAILED)
				continue;
			fprintf(stderr, "seq %" PRIu64 ": %s\n", q,
			        firn_proto_status_name(e->status));
			r->status = e->status;
		}
		if (r->charged) {
			firn_proto_credit_release(&s->credit, rec_len(q));
			s->inflight_bytes -= rec_len(q);
			r->charged = false;
		}
		if (r->state != R_DONE && r->state != R_FAILED) {
			r->state = e->status == FIRN_PROTO_OK ? R_DONE : R_FAILED;
			if (r->state == R_DONE)
				s->done++;
			else
				s->failed++;
		}
	}
	while (s->base < s->next &&
	       (s->recs[s->base].state == R_DONE || s->recs[s->base].state == R_FAILED))
		s->base++;
}

static void
on_dgram(struct sender *s, uint8_t *b, size_t len)
{
	uint8_t out[FIRN_PROTO_DGRAM_MAX], *plain;
	struct firn_proto_frame f;
	struct firn_proto_dec d;
	uint64_t pn;
	int n;

	if (opt.loss && rnd100(s) < opt.loss * 100) {
		s->dropped_rx++;
		return;
	}
	if (len > 5 && b[5] != FIRN_PROTO_DATA) {
		enum firn_proto_client_state before = firn_proto_client_state(s->c);

		n = firn_proto_client_handshake(s->c, b, len, now_ms(), out, sizeof(out));
		if (n > 0)
			dgram_send(s, out, (size_t)n);
		if (before != FIRN_PROTO_CLIENT_ESTABLISHED &&
		    firn_proto_client_state(s->c) == FIRN_PROTO_CLIENT_ESTABLISHED)
			on_established(s);
		return;
	}
	n = firn_proto_client_open(s->c, b, len, &plain, &pn);
	if (n < 0)
		return;
	s->last_auth_ms = now_ms();
	firn_proto_dec_init(&d, plain, (size_t)n, false);
	while (firn_proto_dec_next(&d, &f) > 0) {
		switch (f.type) {
		case FIRN_PROTO_FR_CREDIT:
			firn_proto_credit_apply(&s->credit, pn, f.credit.max_seq, f.credit.window);
			break;
		case FIRN_PROTO_FR_ACK_DURABLE:
			for (unsigned i = 0; i < f.durable.n; i++) {
				struct firn_proto_durable e;

				firn_proto_durable_get(&f, i, &e);
				answer(s, &e);
			}
			break;
		case FIRN_PROTO_FR_ERROR:
		case FIRN_PROTO_FR_CLOSE:
			fprintf(stderr, "server said %s: handshaking again\n",
			        firn_proto_status_name(f.type == FIRN_PROTO_FR_ERROR
			                                       ? f.error.code
			                                       : f.close.code));
			connect_start(s);
			return;
		default:
			break;
		}
	}
}

static void
pump_rx(struct sender *s, int timeout_ms)
{
	struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
	static uint8_t buf[16][FIRN_PROTO_DGRAM_MAX + 64];
	struct mmsghdr mm[16];
	struct iovec iov[16];

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return;
	for (int round = 0; round < 64; round++) {
		int n;

		memset(mm, 0, sizeof(mm));
		for (int i = 0; i < 16; i++) {
			iov[i].iov_base = buf[i];
			iov[i].iov_len = sizeof(buf[i]);
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(s->fd, mm, 16, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++)
			on_dgram(s, buf[i], mm[i].msg_len);
	}
}

/* Encode and send the given seqs (whole records, fragments as needed). */
static void
send_recs(struct sender *s, const uint64_t *seqs, unsigned n)
{
	static uint8_t buf[FIRN_PROTO_DGRAM_MAX];
	char key[64];
	struct firn_proto_enc e;
	size_t name_len = strlen(opt.stream);
	unsigned i = 0;
	uint32_t off = 0;
	bool open = false;

	while (i < n) {
		struct firn_proto_rec r = {0};
		uint64_t q = seqs[i];
		int rc;

		/*
		 * Answered while we were sending the batch (the pump_rx between
		 * datagrams of a big record): nothing to resend, and it must stay
		 * DONE, or its DUPLICATE answer would count it twice.
		 */
		if (off == 0 && (s->recs[q].state == R_DONE || s->recs[q].state == R_FAILED)) {
			i++;
			continue;
		}

		if (!open) {
			if (firn_proto_client_enc_begin(s->c, &e, buf, sizeof(buf), 0) < 0)
				return;
			open = true;
		}
		r.seq = q;
		r.len = rec_len(q);
		if (off == 0)
			rec_data(q, s->data, r.len);
		r.data = s->data;
		r.key = (const uint8_t *)key;
		r.key_len = (uint16_t)rec_key(q, key, sizeof(key));
		rc = firn_proto_enc_record(&e, &r, opt.stream, name_len, &off);
		if (rc < 0) {
			fprintf(stderr, "encode seq %" PRIu64 ": %d\n", q, rc);
			exit(1);
		}
		if (rc == 1) {
			/* (answered while its fragments went out: see above) */
			if (s->recs[q].state != R_DONE && s->recs[q].state != R_FAILED)
				s->recs[q].state = R_INFLIGHT;
			s->recs[q].sent_ms = now_ms();
			i++;
			off = 0;
			continue;
		}
		rc = firn_proto_client_seal(s->c, &e);
		if (rc > 0)
			dgram_send(s, buf, (size_t)rc);
		open = false;
		/* Big records: keep an ear on the socket between datagrams (s->data stays). */
		if (off > 0 && (s->dgrams_tx & 31) == 0)
			pump_rx(s, 0);
	}
	if (open && e.records > 0) {
		int rc = firn_proto_client_seal(s->c, &e);

		if (rc > 0)
			dgram_send(s, buf, (size_t)rc);
	}
}

static int
cmd_send(void)
{
	struct sender s;
	uint64_t deadline, t0, window = 1024, last_progress = 0;
	static uint64_t batch[4096];
	struct firn_proto_client_conf cc = {0};
	int rc = 0;

	memset(&s, 0, sizeof(s));
	if (firn_net_parse_addr(opt.server, &s.srv) < 0) {
		fprintf(stderr, "--server: %s\n", firn_err_msg());
		return 2;
	}
	s.recs = calloc(opt.records + 2, sizeof(*s.recs));
	s.data = malloc(FIRN_RECORD_DATA_MAX);
	s.rng = mix(opt.seed ^ 0xabcdef);
	s.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (s.fd < 0 || s.recs == NULL || s.data == NULL) {
		perror("setup");
		return 1;
	}
	{
		int sz = 8 << 20;

		setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		setsockopt(s.fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	cc.key_id = opt.key_id;
	cc.secret = (const uint8_t *)opt.secret;
	cc.secret_len = strlen(opt.secret);
	cc.producer_id = opt.producer;
	cc.max_dgram = opt.max_dgram;
	cc.handshake_timeout_ms = 3000;
	s.c = firn_proto_client_create(&cc);
	if (s.c == NULL) {
		fprintf(stderr, "client: %s\n", firn_err_msg());
		return 1;
	}
	s.base = s.next = 1;
	t0 = now_ms();
	deadline = t0 + (uint64_t)opt.timeout_s * 1000;
	connect_start(&s);
	while (s.base <= opt.records) {
		uint64_t now = now_ms();
		unsigned nb = 0;
		size_t bytes = 0;

		if (now >= deadline) {
			fprintf(stderr, "timeout: %" PRIu64 " of %" PRIu64 " records answered\n",
			        s.done + s.failed, opt.records);
			rc = 1;
			break;
		}
		if (opt.progress != NULL && s.done >= last_progress + 1000) {
			char tmp[4200];
			FILE *f;

			/* tmp + rename: a reader never sees a half-written file */
			snprintf(tmp, sizeof(tmp), "%s.tmp", opt.progress);
			f = fopen(tmp, "w");
			if (f != NULL) {
				fprintf(f, "%" PRIu64 "\n", s.done);
				fclose(f);
				rename(tmp, opt.progress);
			}
			last_progress = s.done;
		}
		switch (firn_proto_client_state(s.c)) {
		case FIRN_PROTO_CLIENT_ESTABLISHED:
			break;
		case FIRN_PROTO_CLIENT_FAILED:
		case FIRN_PROTO_CLIENT_IDLE:
			/* RESET, REJECT, timeout: a pause, then the same producer again */
			if (firn_proto_client_error(s.c, NULL) == FIRN_PROTO_E_AUTH) {
				fprintf(stderr, "authentication failed\n");
				return 1;
			}
			usleep(100000);
			connect_start(&s);
			continue;
		default: {
			uint8_t out[FIRN_PROTO_DGRAM_MAX];
			int n = firn_proto_client_tick(s.c, now, out, sizeof(out));

			if (n > 0)
				dgram_send(&s, out, (size_t)n);
			pump_rx(&s, 5);
			continue;
		}
		}
		/*
		 * Liveness (§11): records to send (in flight, or waiting for
		 * credit) and the server silent for 3 s, PINGs unanswered.
		 */
		if (now > s.last_auth_ms + 3000) {
			fprintf(stderr, "server silent for 3 s: handshaking again\n");
			connect_start(&s);
			continue;
		}
		window = FIRN_MIN((uint64_t)firn_proto_client_params(s.c)->dedupe_window, 4096);
		/* 1. resends: timed out, or refused earlier */
		for (uint64_t q = s.base; q < s.next && nb < 4096 && bytes < (4u << 20); q++) {
			struct rec *r = &s.recs[q];

			if (r->state == R_INFLIGHT && now >= r->sent_ms + r->rto) {
				r->rto = FIRN_MIN(r->rto * 2, 2000u);
				if (r->sent_ms != 0)
					s.resends++;
				batch[nb++] = q;
				bytes += rec_len(q);
			} else if (r->state == R_WAIT && now >= r->sent_ms) {
				if (firn_proto_credit_take(&s.credit, q, rec_len(q)) < 0)
					continue;
				r->charged = true;
				s.inflight_bytes += rec_len(q);
				r->state = R_INFLIGHT;
				s.resends++;
				batch[nb++] = q;
				bytes += rec_len(q);
			}
		}
		/* 2. new records, as credit and the window rule (§8.1) allow */
		while (s.next <= opt.records && s.next < s.base + window && nb < 4096 &&
		       bytes < (1u << 20)) {
			uint32_t len = rec_len(s.next);

			if (opt.rate && s.next > 1 + (now - t0) * opt.rate / 1000)
				break;

			if (firn_proto_credit_take(&s.credit, s.next, len) < 0)
				break;
			s.recs[s.next].charged = true;
			s.recs[s.next].rto = len > 65536 ? 1000 : 300;
			s.inflight_bytes += len;
			batch[nb++] = s.next++;
			bytes += len;
		}
		if (nb > 0)
			send_recs(&s, batch, nb);
		else if (s.next == s.base && now >= s.last_tx_ms + 200)
			send_ping(&s); /* nothing in flight: out of credit, or paced */
		pump_rx(&s, nb > 0 ? 0 : 2);
	}
	{
		double secs = (double)(now_ms() - t0) / 1000.0;

		printf("records=%" PRIu64 " acked=%" PRIu64 " failed=%" PRIu64 " secs=%.3f "
		       "rec_per_s=%.0f resends=%" PRIu64 " dup_answers=%" PRIu64
		       " overloaded=%" PRIu64 " handshakes=%" PRIu64 " dgrams=%" PRIu64
		       " impaired_tx_drop=%" PRIu64 " tx_dup=%" PRIu64 " rx_drop=%" PRIu64
		       " tx_blocked=%" PRIu64 " pings=%" PRIu64 " contradictions=%" PRIu64 "\n",
		       opt.records, s.done, s.failed, secs, secs > 0 ? (double)s.done / secs : 0.0,
		       s.resends, s.dup_answers, s.overloaded, s.handshakes, s.dgrams_tx,
		       s.dropped_tx, s.dup_tx, s.dropped_rx, s.tx_blocked, s.pings, s.bad);
	}
	if (opt.ack_log != NULL) {
		FILE *f = fopen(opt.ack_log, "w");

		if (f == NULL) {
			perror(opt.ack_log);
			return 1;
		}
		for (uint64_t q = 1; q <= opt.records; q++)
			if (s.recs[q].state == R_DONE)
				fprintf(f, "%" PRIu64 " %u %" PRIu64 "\n", q, s.recs[q].shard,
				        s.recs[q].counter);
		fclose(f);
	}
	if (s.done != opt.records || s.bad != 0)
		rc = 1;
	firn_proto_client_destroy(s.c);
	close(s.fd);
	free(s.recs);
	free(s.data);
	return rc;
}

/* ---- mkstream / verify: the data directory, with firnd stopped ----------------------- */

static struct firn_catalog *
open_catalog(void)
{
	char dir[4200];
	struct firn_catalog *cat;

	snprintf(dir, sizeof(dir), "%s/catalog", opt.data_dir);
	if (firn_mkdir_p(dir, 0755) < 0 || (cat = firn_catalog_open(dir)) == NULL) {
		fprintf(stderr, "catalog: %s\n", firn_err_msg());
		exit(1);
	}
	return cat;
}

static int
cmd_mkstream(void)
{
	struct firn_catalog *cat = open_catalog();
	int rc = firn_catalog_create(cat, opt.stream, (uint32_t)opt.shards, NULL);

	if (rc < 0)
		fprintf(stderr, "create %s: %s\n", opt.stream, firn_err_msg());
	firn_catalog_close(cat);
	return rc < 0 ? 1 : 0;
}

static void
sha256_hex(const uint8_t *p, size_t n, char out[65])
{
	uint8_t md[32];
	unsigned len = 32;

	EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
	firn_hex_encode(md, 32, out);
}

static int
cmd_verify(void)
{
	struct firn_catalog *cat = open_catalog();
	struct firn_stream_info *info;
	struct firn_store_conf sc;
	struct firn_store *st;
	char path[4200], *hex;
	uint8_t kek[32], *want = malloc(FIRN_RECORD_DATA_MAX);
	uint32_t *count = calloc(opt.records + 2, sizeof(*count));
	uint32_t *where_shard = calloc(opt.records + 2, sizeof(*where_shard));
	uint64_t *where_counter = calloc(opt.records + 2, sizeof(*where_counter));
	uint64_t stored = 0, others = 0, bad_data = 0, dups = 0, missing = 0, misplaced = 0;
	uint64_t acked = 0;
	FILE *dump = NULL;
	size_t len;

	if (firn_catalog_get(cat, opt.stream, &info) < 0) {
		fprintf(stderr, "stream %s: not in the catalog\n", opt.stream);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/keys/kek", opt.data_dir);
	if (firn_file_read_all(path, &hex, &len) < 0) {
		fprintf(stderr, "%s: no KEK\n", path);
		return 1;
	}
	while (len > 0 && (hex[len - 1] == '\n' || hex[len - 1] == ' '))
		hex[--len] = '\0';
	if (firn_hex_decode(hex, kek, 32) < 0) {
		fprintf(stderr, "%s: no KEK\n", path);
		return 1;
	}
	free(hex);
	firn_store_conf_defaults(&sc);
	sc.dir = opt.data_dir;
	sc.kek = kek;
	sc.disk = &firn_disk_uring_ops;
	sc.writers = 1;
	sc.threaded = false;
	st = firn_store_open(&sc);
	if (st == NULL) {
		fprintf(stderr, "store: %s\n", firn_err_msg());
		return 1;
	}
	if (opt.dump != NULL && (dump = fopen(opt.dump, "w")) == NULL) {
		perror(opt.dump);
		return 1;
	}
	for (uint32_t sh = 0; sh < info->nshards; sh++) {
		struct firn_read_req req = {
		        .from = FIRN_READ_AT_COUNTER, .max_records = 2000, .max_bytes = 32u << 20};
		struct firn_read_res res;

		for (;;) {
			int rc = firn_store_read(st, info->id, sh, &req, &res);
			uint32_t got;

			if (rc == -ENOENT)
				break;
			if (rc < 0) {
				fprintf(stderr, "read shard %u: %s\n", sh, firn_err_msg());
				return 1;
			}
			got = res.n;
			for (uint32_t i = 0; i < got; i++) {
				const struct firn_record *r = &res.recs[i];
				uint64_t q = r->producer_seq;
				char key[64];
				size_t kl;

				if (dump != NULL) {
					char h[65];

					sha256_hex(r->data, r->data_len, h);
					fprintf(dump, "%u %" PRIu64 " %s\n", sh, r->counter, h);
				}
				if (r->producer_id != opt.producer) {
					others++;
					continue;
				}
				stored++;
				if (q == 0 || q > opt.records) {
					fprintf(stderr, "stored seq %" PRIu64 " was never sent\n",
					        q);
					bad_data++;
					continue;
				}
				if (count[q]++ > 0) {
					fprintf(stderr,
					        "seq %" PRIu64 " stored twice: %u/%" PRIu64
					        " and %u/%" PRIu64 "\n",
					        q, where_shard[q], where_counter[q], sh,
					        r->counter);
					dups++;
				}
				where_shard[q] = sh;
				where_counter[q] = r->counter;
				kl = rec_key(q, key, sizeof(key));
				rec_data(q, want, rec_len(q));
				if (r->data_len != rec_len(q) ||
				    memcmp(r->data, want, r->data_len) != 0 || r->key_len != kl ||
				    memcmp(r->key, key, kl) != 0) {
					fprintf(stderr, "seq %" PRIu64 ": wrong key or bytes\n", q);
					bad_data++;
				}
			}
			req.counter = res.next_counter;
			firn_read_res_free(&res);
			if (got == 0)
				break;
		}
	}
	if (dump != NULL)
		fclose(dump);
	for (uint64_t q = 1; q <= opt.records && !opt.partial; q++)
		if (count[q] == 0)
			missing++;
	if (opt.ack_log != NULL) {
		FILE *f = fopen(opt.ack_log, "r");
		uint64_t q, c;
		unsigned s;

		if (f == NULL) {
			perror(opt.ack_log);
			return 1;
		}
		while (fscanf(f, "%" SCNu64 " %u %" SCNu64, &q, &s, &c) == 3) {
			acked++;
			if (q == 0 || q > opt.records || count[q] != 1 || where_shard[q] != s ||
			    where_counter[q] != c) {
				fprintf(stderr,
				        "acked seq %" PRIu64 " at %u/%" PRIu64
				        ": stored %u times%s\n",
				        q, s, c, q && q <= opt.records ? count[q] : 0,
				        q && q <= opt.records && count[q] ? " elsewhere" : "");
				misplaced++;
			}
		}
		fclose(f);
	}
	printf("verify: stream=%s shards=%u stored=%" PRIu64 " acked=%" PRIu64
	       " duplicates=%" PRIu64 " missing=%" PRIu64 " misplaced=%" PRIu64 " bad=%" PRIu64
	       " other_producers=%" PRIu64 "\n",
	       opt.stream, info->nshards, stored, acked, dups, missing, misplaced, bad_data,
	       others);
	firn_store_close(st);
	firn_stream_info_free(info);
	firn_catalog_close(cat);
	free(want);
	free(count);
	free(where_shard);
	free(where_counter);
	return dups || missing || misplaced || bad_data ? 1 : 0;
}

/* ---- main -------------------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr,
	        "usage: ingest_client mkstream --data-dir DIR --stream S --shards N\n"
	        "       ingest_client send --server IP:PORT --stream S --records N [options]\n"
	        "       ingest_client verify --data-dir DIR --stream S --records N --producer ID\n"
	        "(see the file header for the options)\n");
	exit(2);
}

static void
parse_impair(const char *s)
{
	char buf[128], *tok, *comma;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = buf; tok != NULL; tok = comma ? comma + 1 : NULL) {
		uint64_t v;
		char *eq;

		comma = strchr(tok, ',');
		if (comma != NULL)
			*comma = '\0';
		eq = strchr(tok, '=');

		if (eq == NULL || firn_parse_u64(eq + 1, &v) < 0 || v > 100)
			usage();
		*eq = '\0';
		if (strcmp(tok, "loss") == 0)
			opt.loss = (unsigned)v;
		else if (strcmp(tok, "dup") == 0)
			opt.dup = (unsigned)v;
		else if (strcmp(tok, "reorder") == 0)
			opt.reorder = (unsigned)v;
		else
			usage();
	}
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
	        {"server", 1, NULL, 's'},    {"stream", 1, NULL, 'S'},   {"records", 1, NULL, 'n'},
	        {"producer", 1, NULL, 'p'},  {"sizes", 1, NULL, 'z'},    {"keys", 1, NULL, 'k'},
	        {"seed", 1, NULL, 'x'},      {"ack-log", 1, NULL, 'a'},  {"timeout", 1, NULL, 't'},
	        {"max-dgram", 1, NULL, 'm'}, {"impair", 1, NULL, 'i'},   {"data-dir", 1, NULL, 'd'},
	        {"shards", 1, NULL, 'N'},    {"dump", 1, NULL, 'D'},     {"key-id", 1, NULL, 'K'},
	        {"secret", 1, NULL, 'Z'},    {"progress", 1, NULL, 'P'}, {"rate", 1, NULL, 'r'},
	        {"partial", 0, NULL, 'Q'},   {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c;

	if (argc < 2)
		usage();
	opt.mode = argv[1];
	opt.sizes = "100";
	opt.seed = 42;
	opt.timeout_s = 120;
	opt.max_dgram = FIRN_PROTO_DGRAM_MAX;
	opt.producer = 0x7e57c11e47000001ull;
	opt.shards = 4;
	opt.key_id = getenv("FIRN_ACCESS_KEY_ID") ? getenv("FIRN_ACCESS_KEY_ID") : DEFAULT_KEY_ID;
	opt.secret = getenv("FIRN_SECRET_ACCESS_KEY") ? getenv("FIRN_SECRET_ACCESS_KEY")
	                                              : DEFAULT_SECRET;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			opt.server = optarg;
			break;
		case 'S':
			opt.stream = optarg;
			break;
		case 'z':
			opt.sizes = optarg;
			break;
		case 'a':
			opt.ack_log = optarg;
			break;
		case 'd':
			opt.data_dir = optarg;
			break;
		case 'D':
			opt.dump = optarg;
			break;
		case 'K':
			opt.key_id = optarg;
			break;
		case 'Z':
			opt.secret = optarg;
			break;
		case 'P':
			opt.progress = optarg;
			break;
		case 'i':
			parse_impair(optarg);
			break;
		case 'Q':
			opt.partial = true;
			break;
		case 'n':
		case 'p':
		case 'k':
		case 'x':
		case 't':
		case 'm':
		case 'N':
		case 'r':
			if (firn_parse_u64(optarg, &v) < 0)
				usage();
			if (c == 'n')
				opt.records = v;
			if (c == 'p')
				opt.producer = v;
			if (c == 'k')
				opt.keys = v;
			if (c == 'x')
				opt.seed = v;
			if (c == 't')
				opt.timeout_s = (unsigned)v;
			if (c == 'm')
				opt.max_dgram = (uint16_t)v;
			if (c == 'N')
				opt.shards = v;
			if (c == 'r')
				opt.rate = v;
			break;
		default:
			usage();
		}
	}
	if (opt.stream == NULL)
		usage();
	opt.mixed = strcmp(opt.sizes, "mixed") == 0;
	if (!opt.mixed) {
		if (firn_parse_u64(opt.sizes, &v) < 0 || v > FIRN_RECORD_DATA_MAX)
			usage();
		opt.fixed_len = (uint32_t)v;
	}
	firn_log_set_level(FIRN_LOG_WARN);
	if (strcmp(opt.mode, "mkstream") == 0 && opt.data_dir)
		return cmd_mkstream();
	if (strcmp(opt.mode, "send") == 0 && opt.server && opt.records)
		return cmd_send();
	if (strcmp(opt.mode, "verify") == 0 && opt.data_dir && opt.records)
		return cmd_verify();
	usage();
	return 2;
}
