/*
 * client_internal.h - lib/client's private structures.
 *
 * The client keeps three rings, all sized in firn_client_open():
 *
 *   records   one slot per producer sequence (seq & rec_mask), from the
 *             oldest record without an answer (tail_seq) to the next one
 *             to be put (put_seq). Records between tail_seq and new_seq
 *             have been sent at least once; new_seq..put_seq wait their
 *             first send. Keys and data live in a byte arena that is
 *             allocated in put order and freed in sequence order as the
 *             tail moves, so it is a plain ring buffer.
 *   packets   one slot per sealed datagram of this session (pn & pkt_mask),
 *             from the oldest one not yet known delivered or lost. Each
 *             names the pieces of records it carried (a run in `items`),
 *             so a lost datagram's pieces, and only those, are resent.
 *   retx      pieces waiting to be sent again (lost, timed out, refused).
 *
 * Nothing here is shared between threads: a client is one thread's.
 */
#ifndef FIRN_CLIENT_INTERNAL_H
#define FIRN_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "firn_client.h"
#include "firn_common.h"
#include "firn_proto.h"

#define CLIENT_LOG "client"
/* Datagrams handed to one sendmmsg()/recvmmsg(). */
#define CLIENT_BATCH 32
/* Largest number of record pieces one datagram can carry (an empty record is 19 bytes). */
#define CLIENT_ITEMS_PER_DGRAM (FIRN_PROTO_DGRAM_MAX / (FIRN_PROTO_RECORD_HDR + 1) + 1)
/*
 * Congestion window (datagrams in flight): start, floor, ceiling. The
 * ceiling stays below the server's 1024-datagram replay window, so the
 * cumulative part of a RECEIVED ack never covers a datagram that did not
 * arrive (doc/protocol.md §7.1).
 */
#define CLIENT_CWND_INIT 64u
#define CLIENT_CWND_MIN 8u
#define CLIENT_CWND_MAX 768u

enum crec_state {
	REC_FREE = 0,
	REC_QUEUED,   /* put, never sent, no credit taken */
	REC_INFLIGHT, /* sent (credit charged), waiting for the DURABLE ack */
	REC_WAIT,     /* refused OVERLOADED: no credit held, resent at deadline */
	REC_DONE,     /* answered; freed when the tail passes */
};

struct crec {
	uint64_t seq;
	uint64_t cookie;
	uint64_t first_tx_us; /* first send (0: never); the give-up clock */
	uint64_t deadline_us; /* INFLIGHT: durable timeout; WAIT: when to resend */
	uint64_t put_us;      /* when it was put (for linger) */
	uint32_t arena_off;   /* key, then data */
	uint32_t len;
	uint16_t key_len;
	uint16_t ref;
	uint8_t state;
	bool hash;
	bool charged; /* len counted in credit.used */
	uint8_t tries;
};

enum cpkt_state {
	PKT_FREE = 0,
	PKT_INFLIGHT,
	PKT_DONE, /* delivered or declared lost */
};

struct cpkt {
	uint64_t pn;
	uint64_t sent_us;
	uint64_t bound; /* stream refs this datagram bound (STREAM frames) */
	uint64_t item0; /* first piece in items[] (a running index) */
	uint16_t n_items;
	uint8_t state;
};

/* A piece of a record: data bytes [off, off + len); the whole record if off == 0 && len == rec len.
 */
struct citem {
	uint64_t seq;
	uint32_t off;
	uint32_t len;
};

struct cstream {
	char name[FIRN_PROTO_STREAM_NAME_MAX + 1];
	uint8_t name_len;
	bool used;
};

enum client_state {
	CL_CONNECTING,  /* handshake in progress */
	CL_ESTABLISHED, /* DATA flows */
	CL_BACKOFF,     /* waiting to handshake again (REJECT OVERLOADED) */
	CL_FAILED,      /* for good: see err */
};

struct firn_client {
	int fd;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	char endpoint[300];
	enum client_state state;
	bool opened; /* the first handshake is done */
	int fail_rc; /* -errno once FAILED */
	char err[512];

	struct firn_proto_client *pc;
	struct firn_client_conf conf;
	char key_id[FIRN_PROTO_KEY_ID_MAX + 1];
	char *state_path;
	uint64_t producer_id;
	uint64_t reserved_seq; /* state file: seqs up to here may have been used */
	uint16_t max_dgram;

	/* session parameters (from ACCEPT) */
	struct firn_proto_credit credit;
	uint32_t dedupe_w;
	uint32_t keepalive_ms;
	uint32_t stream_refs;
	uint64_t session_id;

	/* records */
	struct crec *recs;
	uint64_t rec_mask;
	uint64_t tail_seq, new_seq, put_seq;
	uint32_t n_inflight;   /* REC_INFLIGHT records */
	uint32_t n_open;       /* records put and not yet answered */
	uint64_t queued_bytes; /* wire bytes of the records not yet sent (new_seq..put_seq) */
	uint8_t *arena;
	uint32_t arena_size, arena_head, arena_tail;
	uint64_t sweep, sweep_end; /* after a new session: resend all of [sweep, sweep_end) */

	/* packets of the current session */
	struct cpkt *pkts;
	uint64_t pkt_mask;
	uint64_t pkt_tail, pkt_next; /* tracked: [pkt_tail, pkt_next) */
	uint32_t pkts_inflight;
	struct citem *items;
	uint64_t item_mask, item_head, item_tail;
	uint64_t largest_acked;
	uint64_t recovery_pn; /* losses at or below this do not shrink cwnd again */
	uint32_t cwnd, ssthresh, cwnd_acc;
	uint32_t srtt_us, rttvar_us, latest_rtt_us;
	uint64_t last_ack_us, pto_sent_us; /* probe timer */
	unsigned pto_count;

	/* pieces to send again, and the piece being written now */
	struct citem *retx;
	uint64_t retx_mask, retx_head, retx_tail;
	struct citem cur;
	bool cur_active, cur_new;

	/* the datagram being built and the batch waiting for sendmmsg */
	struct firn_proto_enc enc;
	bool enc_open;
	uint64_t enc_pn;
	uint8_t *txbuf; /* CLIENT_BATCH x max_dgram */
	uint16_t txlen[CLIENT_BATCH];
	unsigned tx_n, tx_sent;
	uint8_t *rxbuf; /* CLIENT_BATCH x rx_slot */
	size_t rx_slot;
	struct mmsghdr rmsg[CLIENT_BATCH];
	struct iovec riov[CLIENT_BATCH];
	uint8_t hsbuf[FIRN_PROTO_DGRAM_MAX];

	struct cstream streams[FIRN_CLIENT_STREAMS_MAX];
	uint64_t confirmed; /* refs the server is known to have bound (this session) */

	/* clocks, microseconds */
	uint64_t now_us;
	uint64_t last_rx_us, last_tx_us, next_scan_us, backoff_until_us;
	uint64_t wait_since_us; /* when n_open last went from 0 to 1 */

	unsigned delivered; /* acks delivered in this call (poll's return value) */
	struct firn_client_stats st;
};

/* Microseconds and milliseconds of the monotonic clock. */
static inline uint64_t
client_now_us(void)
{
	return firn_mono_ns() / 1000;
}

static inline struct crec *
client_rec(struct firn_client *c, uint64_t seq)
{
	return &c->recs[seq & c->rec_mask];
}

/* Record a session failure (or trouble) in c->err and the error chain. Returns rc. */
int client_fail(struct firn_client *c, int rc, const char *fmt, ...) FIRN_PRINTF(3, 4);

/* client.c: fail every open record with code and stop for good; returns rc. */
int client_fatal(struct firn_client *c, uint16_t code, int rc);
/* "a.b.c.d:port" or "[hex]:port" for messages. */
void client_format_addr(const struct firn_proto_addr *a, char *buf, size_t size);
/* Begin a handshake (again), as the same producer. */
void client_handshake_start(struct firn_client *c);

/* ack.c: finish a record with an outcome, calling the user's callback. */
void client_complete(struct firn_client *c, struct crec *r, int status, bool dup, uint32_t shard,
                     uint64_t counter);
/* Free answered records at the tail (and their arena bytes). */
void client_advance_tail(struct firn_client *c);
/* Handle the frames of one opened DATA datagram from the server. */
void client_on_frames(struct firn_client *c, const uint8_t *plain, size_t len, uint64_t pn);
/* Loss by age below the newest acked datagram; a probe when no ack comes for a while. */
void client_loss_timer(struct firn_client *c);
/* When client_loss_timer() has something to do next (UINT64_MAX: nothing in flight). */
uint64_t client_loss_due_us(const struct firn_client *c);
/* srtt + 4 rttvar + the server's ack delay (50 ms before the first sample). */
uint64_t client_rto_us(const struct firn_client *c);
/* Durable timeouts, OVERLOADED backoffs, give-ups. */
void client_record_timer(struct firn_client *c);
/* Forget the packets of the old session; resend everything in flight. */
void client_reset_session(struct firn_client *c);

/* tx.c */
/* When lingering records must go (UINT64_MAX: none are lingering). */
uint64_t client_linger_due_us(const struct firn_client *c);
/* Pack and send what may be sent now. Returns datagrams sent. */
int client_pump(struct firn_client *c);
/* Send the batch (sendmmsg); returns how many went, or -errno. */
int client_tx_flush(struct firn_client *c);
/* Send one datagram now (handshake, PING, CLOSE). */
int client_send_raw(struct firn_client *c, const uint8_t *buf, size_t len);
/* A sealed PING (keepalive). */
int client_send_ping(struct firn_client *c);
/* A PING with ACK_NOW, sent even when the congestion window is full. */
int client_send_probe(struct firn_client *c);
void client_push_retx(struct firn_client *c, uint64_t seq, uint32_t off, uint32_t len);

/* state.c: the producer state file. */
int client_state_load(struct firn_client *c, const char *path, bool *found);
/* Make sure seqs up to at least seq are reserved on disk (writes ahead in blocks). */
int client_state_reserve(struct firn_client *c, uint64_t seq);

#endif /* FIRN_CLIENT_INTERNAL_H */
