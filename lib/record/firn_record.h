/*
 * firn_record.h - the record model: 128-bit hash keys, partition keys,
 * sequence numbers and the record itself.
 *
 * Hash keys. A partition key (1..256 bytes of UTF-8) maps to a 128-bit hash
 * key: MD5 of the key bytes read as an unsigned big-endian integer, exactly as
 * Kinesis does. A producer may instead give an ExplicitHashKey, a decimal
 * string in 0..2^128-1. Streams split the hash space into shard ranges.
 *
 * Sequence numbers. A record's sequence number is unique within a stream and
 * strictly increasing per shard in append order. It is the decimal string of
 *
 *	2^127 + shard_index * 2^64 + counter
 *
 * so it is always 39 digits (numeric and string order agree), it names its
 * shard (a number used against the wrong shard is detected), and a child
 * shard's numbers (higher index) sort after its parents'. The counter is the
 * shard's 64-bit log position assigned by the store; it starts at 0.
 *
 * Thread safety: pure functions, safe anywhere.
 */
#ifndef FIRN_RECORD_H
#define FIRN_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An unsigned 128-bit integer; hi holds the most significant 64 bits. */
struct firn_u128 {
	uint64_t hi;
	uint64_t lo;
};

#define FIRN_U128_MAX ((struct firn_u128){UINT64_MAX, UINT64_MAX})
/* Longest decimal form of a u128 (39 digits) plus NUL. */
#define FIRN_U128_DEC_SIZE 40

#define FIRN_PARTITION_KEY_MAX 256
#define FIRN_RECORD_DATA_MAX (1u << 20) /* 1 MiB, as in Kinesis */
#define FIRN_SEQ_DEC_LEN 39
#define FIRN_SHARD_INDEX_MAX ((uint32_t)INT32_MAX)

/*
 * Parse a decimal u128 of len bytes (no sign, no spaces, no leading '+';
 * leading zeros accepted). Returns 0, -EINVAL (not a number) or -ERANGE
 * (greater than 2^128-1).
 */
int firn_u128_parse(const char *s, size_t len, struct firn_u128 *out);

/* Write the decimal form plus NUL into buf; returns the number of digits. */
size_t firn_u128_format(struct firn_u128 v, char buf[FIRN_U128_DEC_SIZE]);

/* -1, 0 or 1. */
int firn_u128_cmp(struct firn_u128 a, struct firn_u128 b);

/*
 * The start of hash range i (0..n-1) of n equal ranges: floor(2^128 / n) * i,
 * exact. Range i ends one before range i+1 starts; the last range ends at
 * 2^128-1. n == 0 gives 0.
 */
struct firn_u128 firn_u128_range_start(uint32_t i, uint32_t n);

/* a + b, a - b (wrapping), a / 2 - helpers for range arithmetic. */
struct firn_u128 firn_u128_add(struct firn_u128 a, struct firn_u128 b);
struct firn_u128 firn_u128_sub(struct firn_u128 a, struct firn_u128 b);
struct firn_u128 firn_u128_from_u64(uint64_t v);

/* MD5 of the partition key as a big-endian u128 (OpenSSL). */
void firn_hash_key(const void *partition_key, size_t len, struct firn_u128 *out);

/*
 * A 32-byte secret for one use (label, e.g. "firn1 cookie secret"), derived
 * from the key-encryption key by HKDF-SHA256, so it is the same after a
 * restart and different for every label. 0 or -EIO. Allocates: start-up only.
 */
int firn_kdf(const uint8_t secret[32], const char *label, uint8_t out[32]);

/*
 * Check a partition key: 1..256 bytes, valid UTF-8. 0 or -EINVAL (empty,
 * invalid UTF-8) or -E2BIG (too long).
 */
int firn_partition_key_check(const void *key, size_t len);

/*
 * Format the sequence number of (shard, counter) into buf (39 digits + NUL).
 * shard must be <= FIRN_SHARD_INDEX_MAX (larger ones would not parse back).
 */
void firn_seq_format(uint32_t shard, uint64_t counter, char buf[FIRN_U128_DEC_SIZE]);

/*
 * Parse a sequence number. 0, or -EINVAL when it is not one of ours (wrong
 * length, not decimal, outside the encoding).
 */
int firn_seq_parse(const char *s, size_t len, uint32_t *shard, uint64_t *counter);

/*
 * One record as handed to the store and read back from it. Pointers borrow
 * the caller's memory. producer_id/producer_seq are the UDP producer's own
 * identity and sequence (0/0 for HTTP), stored with the data so exactly-once
 * dedupe survives a restart.
 */
struct firn_record {
	const uint8_t *key;
	uint16_t key_len;
	const uint8_t *data;
	uint32_t data_len;
	int64_t ts_ms;    /* arrival time, assigned by the store on append */
	uint64_t counter; /* shard log position, assigned by the store */
	uint64_t producer_id;
	uint64_t producer_seq;
};

#ifdef __cplusplus
}
#endif
#endif /* FIRN_RECORD_H */
