/*
 * firn_client.h - the C producer library: put records into a firn appliance
 * over the firn record protocol (UDP, doc/protocol.md) and learn, per record,
 * where it became durable.
 *
 * What it does. A client is one authenticated session with one appliance
 * (firnd's UDP data port, default 7400), speaking for one producer. Records
 * you put are copied into a preallocated queue, packed many to a datagram
 * up to the path's MTU (records up to 1 MiB are split into fragments, never
 * IP-fragmented), sealed with AES-256-GCM and sent as the appliance's
 * credits allow. Lost datagrams are detected from the appliance's RECEIVED
 * acks and their records resent; a record with no DURABLE ack in time is
 * resent whole. Because every record carries the producer's own sequence
 * number, resends are never stored twice, even across an appliance crash
 * or a restart of the producer itself (same producer id, same sequence).
 * When the appliance reports a record on stable storage, your callback gets
 * its cookie, shard and sequence number, once per record.
 *
 * Threads. None are hidden. A client belongs to one thread at a time and
 * does its work only inside firn_client_poll(), firn_client_put(),
 * firn_client_flush() and firn_client_close(); that is also where the ack
 * callback runs. One thread may drive many clients (firn-bench does): call
 * firn_client_poll(c, 0) on each, and wait on their firn_client_fd()s.
 *
 * Costs. Everything is allocated in firn_client_open(). After that a put is
 * a bounds check and a copy into the queue; poll packs datagrams in place,
 * seals them and hands up to 32 at a time to one sendmmsg(); nothing on the
 * per-record path allocates, logs or makes a syscall of its own.
 *
 * Example: put every line of stdin into stream "events" and wait until all
 * of them are durable.
 *
 *	#include <stdio.h>
 *	#include <string.h>
 *	#include <firn_client.h>
 *
 *	static void
 *	on_ack(void *arg, const struct firn_client_ack *a)
 *	{
 *		char seq[FIRN_CLIENT_SEQ_SIZE];
 *
 *		if (a->status != FIRN_CLIENT_OK) {
 *			fprintf(stderr, "line %llu: %s\n", (unsigned long long)a->cookie,
 *			        firn_client_status_str(a->status));
 *			++*(unsigned *)arg;
 *			return;
 *		}
 *		firn_client_seq_format(a, seq);
 *		printf("line %llu -> shardId-%012u %s\n", (unsigned long long)a->cookie,
 *		       a->shard, seq);
 *	}
 *
 *	int
 *	main(void)
 *	{
 *		unsigned failed = 0;
 *		struct firn_client_conf conf = {
 *			.endpoint = "127.0.0.1:7400",
 *			.access_key_id = "FIRNDEMOACCESSKEY",
 *			.secret_access_key = "firn-demo-secret-change-me",
 *			.state_path = "producer.state", // same producer after a restart
 *			.on_ack = on_ack,
 *			.arg = &failed,
 *		};
 *		struct firn_client *c = firn_client_open(&conf);
 *		char line[4096], key[24];
 *		unsigned long long n = 0;
 *		int s;
 *
 *		if (c == NULL) {
 *			fprintf(stderr, "%s\n", firn_client_last_error());
 *			return 1;
 *		}
 *		s = firn_client_stream(c, "events");
 *		while (s >= 0 && fgets(line, sizeof(line), stdin) != NULL) {
 *			snprintf(key, sizeof(key), "%llu", ++n);
 *			// Blocks while the queue is full; the cookie comes back in the ack.
 *			if (firn_client_put(c, s, key, strlen(key), line, strcspn(line, "\n"),
 *			                    n) < 0)
 *				break;
 *		}
 *		if (firn_client_flush(c, 30000) < 0)
 *			fprintf(stderr, "%s\n", firn_client_error(c));
 *		firn_client_close(c); // anything still unacked gets FIRN_CLIENT_E_CLOSED
 *		return failed == 0 ? 0 : 1;
 *	}
 *
 * Build with `cc app.c $(pkg-config --cflags --libs firn-client)`.
 *
 * Errors. Functions return 0 or a negative errno; firn_client_open() returns
 * NULL. The reason, in words that name the fix, is in firn_client_error(c)
 * (or firn_client_last_error() when there is no client yet).
 */
#ifndef FIRN_CLIENT_H
#define FIRN_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIRN_CLIENT_DEFAULT_ENDPOINT "127.0.0.1:7400"
/* Largest record data (1 MiB, as in Kinesis) and partition key (256 bytes). */
#define FIRN_CLIENT_DATA_MAX (1u << 20)
#define FIRN_CLIENT_KEY_MAX 256
/* Stream names a client may use at once (the protocol's stream refs). */
#define FIRN_CLIENT_STREAMS_MAX 64
/* A 39-digit sequence number plus NUL. */
#define FIRN_CLIENT_SEQ_SIZE 40

/*
 * Record outcomes, as delivered in struct firn_client_ack.status. 0..13 are
 * the protocol's codes (doc/protocol.md §10); 256 and up happen in the client.
 */
enum firn_client_status {
	FIRN_CLIENT_OK = 0,
	FIRN_CLIENT_E_UNKNOWN_STREAM = 1, /* the stream does not exist */
	FIRN_CLIENT_E_TOO_LARGE = 2,      /* data over 1 MiB */
	FIRN_CLIENT_E_AUTH = 3,           /* bad access key / secret, or producer id taken */
	FIRN_CLIENT_E_SESSION_EXPIRED = 4,
	FIRN_CLIENT_E_READ_ONLY = 5,  /* the appliance or cluster takes no writes now */
	FIRN_CLIENT_E_REDIRECT = 6,   /* another node owns this; see firn_client_error() */
	FIRN_CLIENT_E_OVERLOADED = 7, /* never delivered: the client backs off and resends */
	FIRN_CLIENT_E_STALE = 8,      /* the sequence fell outside the dedupe window */
	FIRN_CLIENT_E_PROTOCOL = 9,
	FIRN_CLIENT_E_VERSION = 10,
	FIRN_CLIENT_E_BAD_KEY = 11, /* partition key empty, too long or not UTF-8 */
	FIRN_CLIENT_E_INTERNAL = 12,
	FIRN_CLIENT_E_CLOSED_BY_PEER = 13,
	FIRN_CLIENT_E_TIMEOUT = 256, /* no DURABLE ack within conf.give_up_ms */
	FIRN_CLIENT_E_CLOSED = 257,  /* firn_client_close() before the ack came */
};

/* "OK", "unknown stream", ...: a short phrase for a status. */
const char *firn_client_status_str(int status);

/*
 * The outcome of one record, given to the callback exactly once per record
 * put. Pointers are valid only during the callback.
 */
struct firn_client_ack {
	uint64_t cookie;  /* what the caller gave to put */
	uint64_t seq;     /* the producer sequence the record travelled with */
	int status;       /* FIRN_CLIENT_OK or an error above */
	bool duplicate;   /* the appliance had stored it already (a resend or resume) */
	uint32_t shard;   /* OK: the shard index ("shardId-%012u") */
	uint64_t counter; /* OK: the record's position in the shard */
	int stream;       /* the stream handle */
	const void *key;  /* partition key, or the 16-byte hash key if hash */
	uint16_t key_len;
	bool hash;
	const void *data;
	uint32_t len;
};

/* The record's Kinesis sequence number (39 digits), from shard and counter. */
void firn_client_seq_format(const struct firn_client_ack *a, char buf[FIRN_CLIENT_SEQ_SIZE]);

typedef void (*firn_client_ack_fn)(void *arg, const struct firn_client_ack *ack);

/* conf.flags */
#define FIRN_CLIENT_NONBLOCK 0x1u /* put returns -EAGAIN when full instead of waiting */

struct firn_client_conf {
	/* "host:port" or "[v6]:port"; NULL: FIRN_CLIENT_DEFAULT_ENDPOINT. */
	const char *endpoint;
	const char *access_key_id; /* the API's access key pair */
	const char *secret_access_key;
	/*
	 * Who the producer is. A producer id must stay the same across
	 * restarts for exactly-once to survive them. Either give it, or give
	 * state_path: a small file that holds the id (random the first time)
	 * and the highest sequence reserved so far, so a restarted producer
	 * continues above every sequence it may have used. With neither, the
	 * id is random (a new producer each time).
	 */
	uint64_t producer_id;
	const char *state_path;
	/*
	 * The first producer sequence to use. 0: the state file's reservation
	 * + 1, else what the appliance has seen from this producer + 1. Give
	 * the sequence of your oldest unacked record to resend records you
	 * kept (the appliance answers those it has with their original ack).
	 */
	uint64_t next_seq;
	/*
	 * Link MTU (1500 -> 1472-byte datagrams, 9000 -> 8972). 0: the MTU of
	 * the route to the appliance (the kernel's IP_MTU for the connected
	 * socket), at most 9000; give 1500 when a hop between has a smaller MTU
	 * than your own link (firn never relies on IP fragmentation).
	 */
	unsigned mtu;
	/* Records queued or awaiting an ack; rounded up to a power of two. 0: 8192. */
	uint32_t queue_records;
	/* Bytes of queued keys + data; at least 2 MiB. 0: 16 MiB. */
	size_t queue_bytes;
	firn_client_ack_fn on_ack; /* may be NULL */
	void *arg;
	unsigned flags;              /* FIRN_CLIENT_NONBLOCK */
	uint32_t connect_timeout_ms; /* first handshake; 0: 5000 */
	uint32_t give_up_ms;         /* a record unacked this long fails with E_TIMEOUT;
	                                0: the appliance's dedupe horizon less a margin */
	uint32_t durable_timeout_ms; /* resend a record unacked this long (doubling); 0: 1000 */
	uint32_t liveness_ms;        /* handshake again after this long without a word
	                                while records are in flight; 0: 3000 */
	/*
	 * Hold new records up to this long while they do not fill a datagram,
	 * so a steady trickle of puts travels many to a datagram (as Kafka's
	 * linger.ms). 0: send at the next poll, however few.
	 */
	uint32_t linger_us;
};

struct firn_client;

/*
 * Resolve the endpoint, open a UDP socket, and run the handshake (blocking,
 * up to connect_timeout_ms). NULL on failure, with the reason (connection
 * refused, no answer, authentication failed, redirected to ...) in
 * firn_client_last_error().
 */
struct firn_client *firn_client_open(const struct firn_client_conf *conf);

/*
 * Send CLOSE (best effort) and free everything. Records still without an
 * ack get the callback with FIRN_CLIENT_E_CLOSED first. NULL is a no-op.
 */
void firn_client_close(struct firn_client *c);

/*
 * A handle (>= 0) for a stream name (1..128 bytes), bound lazily on the
 * wire. The same name gives the same handle. -EINVAL (bad name), -ENOSPC
 * (more than the session's stream refs, at most FIRN_CLIENT_STREAMS_MAX).
 */
int firn_client_stream(struct firn_client *c, const char *name);

/*
 * Queue one record with a partition key (1..256 bytes of UTF-8; the
 * appliance hashes it with MD5 as Kinesis does). data (0..1 MiB) and key
 * are copied. cookie comes back in the ack. Returns 0, or
 *   -EAGAIN  the queue is full (only with FIRN_CLIENT_NONBLOCK; otherwise
 *            put polls until there is room)
 *   -E2BIG   data over 1 MiB (or over the queue)
 *   -EINVAL  bad key or stream handle
 *   -ENOTCONN / -EACCES / -EROFS / ...  the session failed for good; see
 *            firn_client_error()
 */
int firn_client_put(struct firn_client *c, int stream, const void *key, size_t key_len,
                    const void *data, size_t len, uint64_t cookie);

/* The same with an explicit 128-bit hash key (16 bytes, big-endian). */
int firn_client_put_hash(struct firn_client *c, int stream, const uint8_t hash[16],
                         const void *data, size_t len, uint64_t cookie);

/*
 * Do pending work: read the appliance's datagrams (acks, credits), call the
 * ack callback, resend what was lost, send what credit allows, keep the
 * session alive or handshake again. Waits up to timeout_ms (0: not at all,
 * -1: until something happens) for the socket when there is nothing to do.
 * Returns the number of acks delivered (>= 0), or a negative errno once the
 * session has failed for good (firn_client_error() says why).
 */
int firn_client_poll(struct firn_client *c, int timeout_ms);

/*
 * Poll until every record put so far has its ack (OK or an error) or
 * timeout_ms passes (-1: no limit). 0, -ETIMEDOUT (records still pending;
 * they stay queued), or the session's failure.
 */
int firn_client_flush(struct firn_client *c, int timeout_ms);

/* The socket, for poll()/epoll by a caller driving many clients (POLLIN). */
int firn_client_fd(const struct firn_client *c);

/* Records put and not yet answered. */
uint32_t firn_client_pending(const struct firn_client *c);

/* Why the session failed (or the last trouble), or "" if all is well. */
const char *firn_client_error(const struct firn_client *c);
/* Why the last firn_client_open() on this thread failed. */
const char *firn_client_last_error(void);

uint64_t firn_client_producer_id(const struct firn_client *c);
/* The sequence the next put will get. */
uint64_t firn_client_next_seq(const struct firn_client *c);

struct firn_client_stats {
	uint64_t puts, acked, failed, duplicates;
	uint64_t tx_datagrams, tx_bytes, rx_datagrams, rx_bytes;
	uint64_t rx_dropped;        /* did not authenticate, replayed, not for us */
	uint64_t lost_datagrams;    /* declared lost from RECEIVED acks */
	uint64_t probes;            /* PINGs sent because acks stopped coming */
	uint64_t resent_pieces;     /* records or fragments sent again */
	uint64_t durable_timeouts;  /* records resent whole for lack of a DURABLE ack */
	uint64_t overloaded;        /* OVERLOADED answers (backed off and resent) */
	uint64_t credit_stalls;     /* times sending stopped for credit or the W rule */
	uint64_t reconnects;        /* handshakes after the first */
	uint32_t queued, in_flight; /* now: records not yet sent / sent and unacked */
	uint32_t srtt_us, cwnd;     /* smoothed RTT; congestion window in datagrams */
	uint32_t max_dgram;         /* UDP payload per datagram (after the handshake: agreed) */
};

void firn_client_stats(const struct firn_client *c, struct firn_client_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* FIRN_CLIENT_H */
