/*
 * ingest.c - the pipeline's life: create, seed, start, drain, stop, count.
 *
 * The pipeline is built before the store (the store needs its on_durable
 * hook at open), started once the store has recovered and the port is
 * open, and torn down in the order SIGTERM asks for: stop reading, let the
 * store make everything durable while the agent keeps sending acks, then
 * stop the agent.
 *
 * Seeding (doc/protocol.md §8.3). lib/proto keeps no dedupe state on disk:
 * the store keeps (producer id, producer seq) with every record, so at
 * start the windows are rebuilt from the newest durable records of every
 * shard - open or closed, since a producer's recent records may sit in a
 * parent that a split just closed. A shard is read back from the later of
 * (its newest record's time - dedupe_horizon) and (durable_next -
 * seed_records): the horizon is the protocol's promise to clients, and the
 * record cap bounds the restart time on a shard that took millions of
 * records in those minutes (the windows need only each producer's last W,
 * so the cap is a multiple of W; doc/ingest.md discusses the trade).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "ingest_internal.h"

#define MiB (1ull << 20)

void
firn_ingest_conf_defaults(struct firn_ingest_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->writers = 1;
	c->max_waiting = 65536;
	c->max_waiting_bytes = 256 * MiB;
	c->max_shards = 4096;
	c->shard_pending_max = 8 * MiB;
	c->credit_window = 4 * MiB;
	c->burst = 32;
	c->threaded = true;
	c->idle_max_us = 200;
}

int
firn_ingest_cookie_secret(const uint8_t kek[32], uint8_t out[32])
{
	return firn_kdf(kek, "firn1 cookie secret", out);
}

static int
conf_check(struct firn_ingest_conf *c)
{
	if (c->catalog == NULL)
		return firn_err_set(-EINVAL, "ingest: a catalog is required");
	if (c->writers == 0)
		return firn_err_set(-EINVAL, "ingest: writers must be >= 1 (the store's)");
	if (c->access_key_id == NULL || c->access_key_id[0] == '\0' ||
	    c->secret_access_key == NULL || c->secret_access_key[0] == '\0')
		return firn_err_set(-EINVAL, "ingest: access_key_id and secret_access_key must be "
		                             "set (producers authenticate with them)");
	if (strlen(c->access_key_id) > FIRN_PROTO_KEY_ID_MAX)
		return firn_err_set(-EINVAL, "ingest: access_key_id longer than %d bytes",
		                    FIRN_PROTO_KEY_ID_MAX);
	if (c->max_waiting == 0 || c->max_waiting >= INGEST_NIL || c->max_shards == 0 ||
	    c->max_shards > (1u << 24))
		return firn_err_set(-EINVAL, "ingest: max_waiting and max_shards must be > 0 "
		                             "(max_shards at most 16M)");
	if (c->rx_agents == 0)
		c->rx_agents = 1;
	if (c->rx_agents > INGEST_MAX_AGENTS)
		return firn_err_set(-EINVAL, "ingest: rx_agents %u exceeds %u", c->rx_agents,
		                    INGEST_MAX_AGENTS);
	if (c->burst == 0)
		c->burst = 32;
	c->burst = FIRN_MIN(c->burst, (unsigned)INGEST_BURST_MAX);
	if (c->max_waiting_bytes == 0)
		c->max_waiting_bytes = 256 * MiB;
	if (c->shard_pending_max == 0)
		c->shard_pending_max = 8 * MiB;
	if (c->credit_window == 0)
		c->credit_window = 4 * MiB;
	return 0;
}

struct firn_ingest *
firn_ingest_create(const struct firn_ingest_conf *conf)
{
	struct firn_ingest *ing = calloc(1, sizeof(*ing));
	size_t nrings;

	if (ing == NULL) {
		firn_err_set(-ENOMEM, "ingest: out of memory");
		return NULL;
	}
	ing->conf = *conf;
	if (conf_check(&ing->conf) < 0) {
		free(ing);
		return NULL;
	}
	/*
	 * Every agent signs and checks cookies with the same secret: a HELLO is
	 * answered by whichever agent's queue it reached, the INIT that follows
	 * by the producer's owner. Without one from the KEK, one random secret.
	 */
	if (conf->cookie_secret != NULL)
		memcpy(ing->cookie, conf->cookie_secret, 32);
	else if (RAND_bytes(ing->cookie, 32) != 1) {
		firn_err_set(-EIO, "ingest: no randomness for the cookie secret");
		free(ing);
		return NULL;
	}
	ing->have_cookie = true;
	ing->conf.cookie_secret = NULL;
	ing->n_agents = ing->conf.rx_agents;
	ing->writers = ing->conf.writers;
	nrings = (size_t)ing->writers * ing->n_agents;
	ing->ctrs = aligned_alloc(FIRN_CACHE_LINE, ing->n_agents * sizeof(*ing->ctrs));
	ing->rings = aligned_alloc(FIRN_CACHE_LINE, nrings * sizeof(*ing->rings));
	if (ing->ctrs == NULL || ing->rings == NULL)
		goto nomem;
	memset(ing->ctrs, 0, ing->n_agents * sizeof(*ing->ctrs));
	memset(ing->rings, 0, nrings * sizeof(*ing->rings));
	for (size_t i = 0; i < nrings; i++) {
		ing->rings[i].mask = INGEST_RING_SIZE - 1;
		ing->rings[i].slots = calloc(INGEST_RING_SIZE, sizeof(struct ingest_dmsg));
		if (ing->rings[i].slots == NULL)
			goto nomem;
	}
	if (ing->n_agents > 1) {
		size_t nh = (size_t)ing->n_agents * ing->n_agents;

		ing->hrings = aligned_alloc(FIRN_CACHE_LINE, nh * sizeof(*ing->hrings));
		if (ing->hrings == NULL)
			goto nomem;
		memset(ing->hrings, 0, nh * sizeof(*ing->hrings));
	}
	for (unsigned i = 0; i < ing->n_agents; i++)
		if (ingest_agent_init(ing, &ing->agents[i], i) < 0)
			goto fail;
	return ing;
nomem:
	firn_err_set(-ENOMEM, "ingest: out of memory");
fail:
	firn_ingest_destroy(ing);
	return NULL;
}

void
firn_ingest_store_hook(struct firn_ingest *ing, struct firn_store_conf *sc)
{
	sc->on_durable = firn_ingest_on_durable;
	sc->on_durable_arg = ing;
}

void
firn_ingest_on_durable(void *arg, uint64_t stream_id, uint32_t shard, uint64_t durable_next,
                       int status)
{
	struct firn_ingest *ing = arg;
	struct ingest_dmsg m = {stream_id, durable_next, shard, status};
	/* lib/store: shard s is always served by writer s % writers, so each ring has one producer.
	 */
	unsigned w = shard % ing->writers;

	for (unsigned i = 0; i < ing->n_agents; i++) {
		struct ingest_ring *r = &ing->rings[w * ing->n_agents + i];
		struct firn_agent_runner *run;

		if (ingest_ring_push(r, &m) < 0)
			/* Pairs with the acq_rel exchange in durable_drain(). */
			__atomic_store_n(&r->overflow, 1, __ATOMIC_RELEASE);
		/* Pairs with the release store in firn_ingest_start(). */
		run = __atomic_load_n(&ing->agents[i].runner, __ATOMIC_ACQUIRE);
		if (run != NULL)
			firn_agent_runner_wake(run);
	}
}

/* ---- start: protocol server, seeding, agents ---------------------------------------- */

static int
agent_server(struct firn_ingest *ing, struct ingest_agent *a, uint16_t max_dgram)
{
	const struct firn_ingest_conf *c = &ing->conf;
	struct firn_proto_server_conf pc;

	firn_proto_server_conf_defaults(&pc);
	ing->key.id = c->access_key_id;
	ing->key.secret = (const uint8_t *)c->secret_access_key;
	ing->key.secret_len = strlen(c->secret_access_key);
	pc.keys = &ing->key;
	pc.n_keys = 1;
	pc.cookie_secret = ing->have_cookie ? ing->cookie : NULL;
	if (c->max_sessions)
		pc.max_sessions = c->max_sessions;
	if (c->max_producers)
		pc.max_producers = c->max_producers;
	if (c->dedupe_window)
		pc.dedupe_window = c->dedupe_window;
	if (c->dedupe_horizon_s)
		pc.dedupe_horizon_s = c->dedupe_horizon_s;
	if (c->reasm_pool_bytes)
		pc.reasm_pool_bytes = c->reasm_pool_bytes;
	pc.max_dgram = max_dgram;
	pc.credit_window = (uint32_t)FIRN_MIN((uint64_t)c->credit_window, c->shard_pending_max / 2);
	pc.resolve = ingest_resolve;
	pc.resolve_arg = a;
	pc.session_tag = (uint8_t)a->idx;
	a->srv = firn_proto_server_create(&pc);
	if (a->srv == NULL)
		return firn_err_wrap(firn_err_code() ? firn_err_code() : -ENOMEM,
		                     "ingest: protocol server");
	a->window_w = pc.dedupe_window;
	a->max_dgram = max_dgram;
	a->txbuf = malloc((size_t)INGEST_TX_STAGE * max_dgram);
	if (a->txbuf == NULL)
		return firn_err_set(-ENOMEM, "ingest: out of memory");
	if (ing->conf.seed_records == 0)
		ing->conf.seed_records = 64 * pc.dedupe_window;
	if (ing->conf.dedupe_horizon_s == 0)
		ing->conf.dedupe_horizon_s = pc.dedupe_horizon_s;
	return 0;
}

/* Read one shard's recent durable records back into their producers' owners' dedupe tables. */
static int
seed_shard(struct firn_ingest *ing, uint64_t sid, uint32_t shard, uint64_t now_ms, uint64_t *n_out)
{
	const struct firn_ingest_conf *c = &ing->conf;
	struct firn_shard_stat stat;
	struct firn_read_req req = {0};
	struct firn_read_res res;
	struct ingest_agent *a;
	uint64_t lo, hi;
	int rc;

	rc = firn_store_shard_stat(ing->st, sid, shard, &stat);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	lo = stat.first_counter;
	hi = stat.durable_next;
	if (hi <= lo)
		return 0;
	if (hi - lo > c->seed_records)
		lo = hi - c->seed_records;
	if (stat.last_ts_ms > 0) {
		req.from = FIRN_READ_AT_TIME;
		req.ts_ms = stat.last_ts_ms - (int64_t)c->dedupe_horizon_s * 1000;
		req.max_records = 1;
		req.max_bytes = 1;
		if (firn_store_read(ing->st, sid, shard, &req, &res) == 0) {
			if (res.n > 0)
				lo = FIRN_MAX(lo, res.recs[0].counter);
			firn_read_res_free(&res);
		}
	}
	while (lo < hi) {
		req.from = FIRN_READ_AT_COUNTER;
		req.counter = lo;
		req.max_records = 4096;
		req.max_bytes = 16 * MiB;
		rc = firn_store_read(ing->st, sid, shard, &req, &res);
		if (rc < 0)
			return firn_err_wrap(rc, "seed stream %" PRIu64 " shard %u from %" PRIu64,
			                     sid, shard, lo);
		for (uint32_t i = 0; i < res.n; i++) {
			const struct firn_record *r = &res.recs[i];

			if (r->producer_id == 0 || r->counter >= hi)
				continue;
			/* Only the producer's owner will ever see its resends. */
			a = &ing->agents[ingest_owner(ing, r->producer_id)];
			if (firn_proto_dedupe_seed(firn_proto_server_dedupe(a->srv), r->producer_id,
			                           r->producer_seq, shard, r->counter,
			                           now_ms) < 0 &&
			    !a->warned_seed) {
				a->warned_seed = true;
				FIRN_LOG(WARN, INGEST_LOG,
				         "dedupe seeding: producer table full; raise "
				         "max_producers (older producers' resends may be "
				         "stored twice)");
			}
			(*n_out)++;
		}
		if (res.n == 0 || res.next_counter <= lo) {
			firn_read_res_free(&res);
			break;
		}
		lo = res.next_counter;
		firn_read_res_free(&res);
	}
	return 0;
}

int
ingest_seed(struct firn_ingest *ing)
{
	struct firn_catalog *cat = ing->conf.catalog;
	uint64_t now_ms = firn_mono_ns() / 1000000, n = 0;
	char **names;
	uint32_t count;
	int rc;

	rc = firn_catalog_list(cat, &names, &count);
	if (rc < 0)
		return firn_err_wrap(rc, "seed: list streams");
	for (uint32_t i = 0; i < count && rc == 0; i++) {
		struct firn_stream_info *s;

		if (firn_catalog_get(cat, names[i], &s) < 0)
			continue;
		for (uint32_t k = 0; k < s->nshards && rc == 0; k++)
			rc = seed_shard(ing, s->id, s->shards[k].index, now_ms, &n);
		firn_stream_info_free(s);
	}
	free(names);
	CTR_ADD(&ing->agents[0], seeded, n);
	if (rc == 0 && n > 0)
		FIRN_LOG(INFO, INGEST_LOG, "dedupe windows rebuilt from %" PRIu64 " records", n);
	return rc;
}

int
firn_ingest_start(struct firn_ingest *ing, struct firn_store *st, const struct firn_net_ops *ops,
                  struct firn_net_port *port)
{
	uint32_t mp;
	uint16_t max_dgram;
	int rc;

	if (ing->started)
		return firn_err_set(-EALREADY, "ingest: already started");
	ing->st = st;
	ing->ops = ops;
	ing->port = port;
	mp = ops->max_payload(port);
	if (mp < FIRN_PROTO_DGRAM_MIN)
		return firn_err_set(-EINVAL,
		                    "ingest: the data port carries %u-byte datagrams; the protocol "
		                    "needs at least %u (an MTU of 1228 or more)",
		                    mp, FIRN_PROTO_DGRAM_MIN);
	max_dgram = (uint16_t)FIRN_MIN(mp, (uint32_t)FIRN_PROTO_DGRAM_MAX);
	for (unsigned i = 0; i < ing->n_agents; i++) {
		rc = agent_server(ing, &ing->agents[i], max_dgram);
		if (rc < 0)
			return rc;
		rc = ingest_routes_refresh(&ing->agents[i]);
		if (rc < 0)
			return firn_err_wrap(rc, "ingest: route table");
	}
	rc = ingest_seed(ing);
	if (rc < 0)
		return rc;
	ing->started = true;
	if (!ing->conf.threaded)
		return 0;
	for (unsigned i = 0; i < ing->n_agents; i++) {
		struct firn_agent agent = {
		        .name = ing->agents[i].name,
		        .do_work = ingest_agent_do_work,
		        .on_close = ingest_agent_on_close,
		        .arg = &ing->agents[i],
		        .idle_max_us = ing->conf.idle_max_us,
		};
		struct firn_agent_runner *run = firn_agent_runner_start(&agent);

		if (run == NULL) {
			firn_ingest_stop(ing);
			return firn_err_wrap(-EAGAIN, "ingest: start the RX agent");
		}
		/* Pairs with the acquire load in firn_ingest_on_durable(). */
		__atomic_store_n(&ing->agents[i].runner, run, __ATOMIC_RELEASE);
	}
	FIRN_LOG(INFO, INGEST_LOG, "%u RX agent(s) on %s, %u-byte datagrams", ing->n_agents,
	         ops->name, max_dgram);
	return 0;
}

int
firn_ingest_do_work(struct firn_ingest *ing)
{
	int work = 0;

	if (!ing->started)
		return 0;
	for (unsigned i = 0; i < ing->n_agents; i++) {
		int rc = ingest_agent_do_work(&ing->agents[i]);

		if (rc > 0)
			work += rc;
	}
	return work;
}

void
firn_ingest_stop_rx(struct firn_ingest *ing)
{
	for (unsigned i = 0; i < ing->n_agents; i++) {
		struct firn_agent_runner *run;

		/* Pairs with the acquire load in ingest_agent_do_work(). */
		__atomic_store_n(&ing->agents[i].rx_stopped, 1, __ATOMIC_RELEASE);
		run = __atomic_load_n(&ing->agents[i].runner, __ATOMIC_ACQUIRE);
		if (run != NULL)
			firn_agent_runner_wake(run);
	}
}

int
firn_ingest_drain(struct firn_ingest *ing, int timeout_ms)
{
	uint64_t deadline = firn_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;

	if (!ing->started)
		return 0;
	for (;;) {
		uint64_t left = 0;

		firn_store_flush(ing->st);
		if (!ing->conf.threaded) {
			firn_store_do_work(ing->st);
			firn_ingest_do_work(ing);
		}
		for (unsigned i = 0; i < ing->n_agents; i++)
			/* Pairs with the release store at the end of each duty cycle. */
			left += __atomic_load_n(&ing->agents[i].pub_outstanding, __ATOMIC_ACQUIRE);
		if (left == 0)
			return 0;
		if (firn_mono_ns() >= deadline)
			return firn_err_set(
			        -ETIMEDOUT,
			        "ingest: %" PRIu64 " records still not acked at shutdown", left);
		if (ing->conf.threaded)
			usleep(1000);
	}
}

void
firn_ingest_stop(struct firn_ingest *ing)
{
	for (unsigned i = 0; i < ing->n_agents; i++) {
		struct firn_agent_runner *run =
		        __atomic_exchange_n(&ing->agents[i].runner, NULL, __ATOMIC_ACQ_REL);

		if (run != NULL)
			firn_agent_runner_stop(run);
	}
}

void
firn_ingest_destroy(struct firn_ingest *ing)
{
	if (ing == NULL)
		return;
	firn_ingest_stop(ing);
	for (unsigned i = 0; i < ing->n_agents; i++)
		ingest_agent_fini(&ing->agents[i]);
	if (ing->rings != NULL)
		for (size_t i = 0; i < (size_t)ing->writers * ing->n_agents; i++)
			free(ing->rings[i].slots);
	free(ing->rings);
	free(ing->hrings);
	free(ing->ctrs);
	memset(ing->cookie, 0, sizeof(ing->cookie));
	free(ing);
}

void
firn_ingest_stats(const struct firn_ingest *ing, struct firn_ingest_stats *out)
{
	uint64_t *o = (uint64_t *)out;
	const size_t n = sizeof(*out) / sizeof(uint64_t);

	_Static_assert(sizeof(struct firn_ingest_stats) % sizeof(uint64_t) == 0,
	               "firn_ingest_stats must hold only uint64_t");
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < ing->n_agents; i++) {
		const uint64_t *c = (const uint64_t *)&ing->ctrs[i].s;

		for (size_t k = 0; k < n; k++)
			/* Pairs with the relaxed stores of CTR_ADD/CTR_SET: a snapshot, not a cut.
			 */
			o[k] += __atomic_load_n(&c[k], __ATOMIC_RELAXED);
	}
}
