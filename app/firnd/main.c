/*
 * firnd - the firn appliance daemon.
 *
 * Start-up order: configuration (defaults, file, environment, flags), the
 * data directory lock, the key-encryption key, the catalog, the ingest
 * pipeline's tables (the store's on_durable hook points at them), the store
 * (which recovers every shard before it returns), the removal of what a
 * crash in DeleteStream left (drop_deleted_streams()), the HTTP API, then the
 * data port (kernel UDP socket or DPDK, by `net`) and the ingest agent, which
 * rebuilds the producers' dedupe windows from the store before it reads a
 * single datagram. Shut-down is what SIGTERM/SIGINT trigger: stop reading
 * datagrams and HTTP requests, let requests in flight finish, flush the
 * store and keep sending DURABLE acks until every record received has one,
 * then stop the agent, close the port and the store, exit 0. Any
 * configuration error exits 2 with one line saying what and where.
 *
 * All signals of interest are blocked in every thread and taken by the main
 * thread with sigwait(), so no handler ever runs inside a library.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "firn_api.h"
#include "firn_common.h"
#include "firn_conf.h"
#include "firn_disk_uring.h"
#include "firn_ingest.h"
#include "firn_net.h"
#include "firn_net_dpdk.h"
#include "firn_net_socket.h"
#include "firn_record.h"
#include "firn_store.h"
#include "firn_stream.h"

#define EXIT_CONFIG 2
/* How long SIGTERM waits for the last DURABLE acks before giving up. */
#define DRAIN_TIMEOUT_MS 15000

static void
usage(FILE *f)
{
	fprintf(f, "usage: firnd [--config FILE] [options]\n"
	           "\n"
	           "  --config FILE        configuration file (see config/firnd.conf)\n"
	           "  --data-dir DIR       data directory (default ./var)\n"
	           "  --api ADDR:PORT      HTTP API and /metrics (default 127.0.0.1:4567)\n"
	           "  --listen ADDR:PORT   UDP data port (default 0.0.0.0:7400)\n"
	           "  --net socket|dpdk    data-port backend (default socket)\n"
	           "  --eal \"ARGS\"         DPDK EAL arguments (with --net dpdk)\n"
	           "  --ip ADDR/PREFIX     the DPDK port's address\n"
	           "  --rx-queues N        RX queues, one RX agent thread each (default 1)\n"
	           "  --set KEY=VALUE      any config file key (repeatable; after --config)\n"
	           "  --log-level L        err|warn|info|debug\n"
	           "  --pidfile FILE       write the daemon's pid here once it is ready\n"
	           "  --version, --help\n");
}

static void
die_config(const char *what)
{
	fprintf(stderr, "firnd: %s\n", what);
	exit(EXIT_CONFIG);
}

/*
 * The key-encryption key: from the config, from kek_file, or generated once
 * into <data_dir>/keys/kek (lab mode, with a warning).
 */
static int
load_kek(const struct firn_conf *c, uint8_t kek[32])
{
	char path[PATH_MAX], dir[PATH_MAX], hex[65];
	char *buf;
	size_t len;
	int rc;

	if (c->kek_hex[0])
		return firn_hex_decode(c->kek_hex, kek, 32);
	if (c->kek_file[0])
		snprintf(path, sizeof(path), "%s", c->kek_file);
	else
		snprintf(path, sizeof(path), "%s/keys/kek", c->data_dir);
	rc = firn_file_read_all(path, &buf, &len);
	if (rc == 0) {
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
			buf[--len] = '\0';
		rc = firn_hex_decode(buf, kek, 32);
		free(buf);
		if (rc < 0)
			return firn_err_set(rc, "%s: must hold 64 hex digits (a 256-bit key)",
			                    path);
		return 0;
	}
	if (rc != -ENOENT || c->kek_file[0])
		return rc;
	snprintf(dir, sizeof(dir), "%s/keys", c->data_dir);
	rc = firn_mkdir_p(dir, 0700);
	if (rc < 0)
		return rc;
	if (RAND_bytes(kek, 32) != 1)
		return firn_err_set(-EIO, "cannot generate a key: OpenSSL RAND_bytes failed");
	firn_hex_encode(kek, 32, hex);
	hex[64] = '\n';
	rc = firn_file_write_atomic(path, hex, 65, 0600);
	if (rc < 0)
		return rc;
	FIRN_LOG(WARN, "firnd",
	         "generated a key-encryption key at %s: data at rest is only as safe as that "
	         "file; set kek_file for a real deployment",
	         path);
	return 0;
}

static int
lock_data_dir(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/LOCK", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return firn_err_set(-errno, "open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = -errno;

		close(fd);
		if (rc == -EWOULDBLOCK)
			return firn_err_set(rc, "data directory %s is in use by another firnd",
			                    dir);
		return firn_err_set(rc, "lock %s: %s", path, strerror(-rc));
	}
	return fd; /* held until exit */
}

/* Tell the store each stream's retention, from the catalog. */
static int
sync_retention(struct firn_catalog *cat, struct firn_store *st)
{
	struct firn_stream_info *s;
	char **names;
	uint32_t n, i;
	int rc;

	rc = firn_catalog_list(cat, &names, &n);
	if (rc < 0)
		return rc;
	for (i = 0; i < n; i++) {
		if (firn_catalog_get(cat, names[i], &s) < 0)
			continue;
		firn_store_set_retention(st, s->id, s->retention_hours);
		firn_stream_info_free(s);
	}
	free(names);
	return 0;
}

/*
 * Finish what a crash interrupted in DeleteStream, before anything serves:
 * a stream still marked DELETING (the first of DeleteStream's steps) leaves
 * the catalog now, and the data of every stream the catalog no longer has
 * (DeleteStream died between its catalog change and the drop) is removed by
 * the store. Nothing else uses the store yet, so nothing can race a removal.
 * A failure is logged and firnd serves anyway: leaked space is no reason to
 * refuse the streams that are fine.
 */
static void
drop_deleted_streams(struct firn_catalog *cat, struct firn_store *st)
{
	struct firn_stream_info *s;
	uint64_t *ids = NULL;
	uint32_t n, i, nids = 0;
	char **names;

	if (firn_catalog_list(cat, &names, &n) < 0) {
		FIRN_LOG(ERR, "firnd", "orphan sweep skipped: list streams: %s", firn_err_msg());
		return;
	}
	if (n > 0 && (ids = calloc(n, sizeof(*ids))) == NULL) {
		FIRN_LOG(ERR, "firnd", "orphan sweep skipped: out of memory");
		free(names);
		return;
	}
	for (i = 0; i < n; i++) {
		if (firn_catalog_get(cat, names[i], &s) < 0) {
			/* Cannot tell its id: better keep every stream's data. */
			FIRN_LOG(ERR, "firnd", "orphan sweep skipped: stream '%s': %s", names[i],
			         firn_err_msg());
			goto out;
		}
		if (s->status == FIRN_STREAM_DELETING) {
			if (firn_catalog_delete(cat, s->name) == 0) {
				FIRN_LOG(INFO, "firnd",
				         "stream '%s' (id %llu) was being deleted when firnd "
				         "stopped: deletion finished",
				         s->name, (unsigned long long)s->id);
				firn_stream_info_free(s);
				continue;
			}
			FIRN_LOG(ERR, "firnd", "finish deleting stream '%s': %s", s->name,
			         firn_err_msg());
		}
		ids[nids++] = s->id;
		firn_stream_info_free(s);
	}
	/* The store logs one line per directory it removes (or leaves alone). */
	if (firn_store_drop_orphans(st, ids, nids, firn_catalog_next_id(cat), NULL) < 0)
		FIRN_LOG(ERR, "firnd", "orphan sweep: %s", firn_err_msg());
out:
	free(ids);
	free(names);
}

/* One line for the operator (and the benchmarks) when the data port closes. */
/* GET /metrics appends the UDP pipeline's counters through this. */
static size_t
ingest_metrics(void *arg, char *buf, size_t cap)
{
	return firn_ingest_metrics_text(arg, buf, cap);
}

static void
log_ingest_stats(const struct firn_ingest *ing)
{
	struct firn_ingest_stats is;

	firn_ingest_stats(ing, &is);
	FIRN_LOG(INFO, "firnd",
	         "ingest: datagrams=%llu records=%llu appended=%llu acked=%llu answers=%llu "
	         "dropped=%llu refused_busy=%llu refused_pool=%llu sessions=%llu rx_busy_ns=%llu "
	         "rx_cpu_ns=%llu ns_per_record=%.0f",
	         (unsigned long long)is.rx_datagrams, (unsigned long long)is.records_new,
	         (unsigned long long)is.records_appended, (unsigned long long)is.records_acked,
	         (unsigned long long)is.answers, (unsigned long long)is.rx_dropped,
	         (unsigned long long)is.refused_busy, (unsigned long long)is.refused_pool,
	         (unsigned long long)is.sessions_opened, (unsigned long long)is.busy_ns,
	         (unsigned long long)is.cpu_ns,
	         is.records_new ? (double)is.cpu_ns / (double)is.records_new : 0.0);
}

static void
write_pidfile(const char *path)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (firn_file_write_atomic(path, buf, (size_t)n, 0644) < 0)
		FIRN_LOG(WARN, "firnd", "pidfile: %s", firn_err_msg());
}

int
main(int argc, char **argv)
{
	enum {
		O_CONFIG = 256,
		O_DATA,
		O_API,
		O_LISTEN,
		O_NET,
		O_EAL,
		O_IP,
		O_RXQ,
		O_SET,
		O_LOG,
		O_PID,
		O_VER
	};
	static const struct option opts[] = {
	        {"config", required_argument, NULL, O_CONFIG},
	        {"data-dir", required_argument, NULL, O_DATA},
	        {"api", required_argument, NULL, O_API},
	        {"listen", required_argument, NULL, O_LISTEN},
	        {"net", required_argument, NULL, O_NET},
	        {"eal", required_argument, NULL, O_EAL},
	        {"ip", required_argument, NULL, O_IP},
	        {"rx-queues", required_argument, NULL, O_RXQ},
	        {"set", required_argument, NULL, O_SET},
	        {"log-level", required_argument, NULL, O_LOG},
	        {"pidfile", required_argument, NULL, O_PID},
	        {"version", no_argument, NULL, O_VER},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	/* Flags apply after the file whatever their order: collect, then set. */
	const char *over_key[32], *over_val[32];
	char set_keys[32][64];
	const char *config = NULL, *pidfile = NULL;
	struct firn_store_conf sc;
	struct firn_api_conf ac;
	struct firn_ingest_conf ic;
	struct firn_net_conf nc;
	const struct firn_net_ops *net_ops;
	struct firn_net_port *port;
	struct firn_ingest *ing;
	uint8_t cookie[32], iter_secret[32];
	struct firn_catalog *cat;
	struct firn_store *st;
	struct firn_api *api;
	struct firn_conf conf;
	char catdir[PATH_MAX];
	unsigned nover = 0, i;
	uint8_t kek[32];
	sigset_t sigs;
	int opt, sig, lockfd;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		const char *key = NULL;

		switch (opt) {
		case O_CONFIG:
			config = optarg;
			break;
		case O_DATA:
			key = "data_dir";
			break;
		case O_API:
			key = "api";
			break;
		case O_LISTEN:
			key = "listen";
			break;
		case O_NET:
			key = "net";
			break;
		case O_EAL:
			key = "eal";
			break;
		case O_IP:
			key = "ip";
			break;
		case O_RXQ:
			key = "rx_queues";
			break;
		case O_SET: {
			const char *eq = strchr(optarg, '=');
			size_t kl = eq ? (size_t)(eq - optarg) : 0;

			if (kl == 0 || kl >= sizeof(set_keys[0]) ||
			    nover >= FIRN_ARRAY_SIZE(over_key)) {
				fprintf(stderr, "firnd: --set wants KEY=VALUE, got '%s'\n", optarg);
				return EXIT_CONFIG;
			}
			memcpy(set_keys[nover], optarg, kl);
			set_keys[nover][kl] = '\0';
			over_key[nover] = set_keys[nover];
			over_val[nover++] = eq + 1;
			break;
		}
		case O_LOG:
			key = "log_level";
			break;
		case O_PID:
			pidfile = optarg;
			break;
		case O_VER:
			printf("firnd 0.1.0\n");
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
		if (key && nover < FIRN_ARRAY_SIZE(over_key)) {
			over_key[nover] = key;
			over_val[nover++] = optarg;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "firnd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_CONFIG;
	}

	firn_conf_defaults(&conf);
	if (config && firn_conf_load(&conf, config) < 0)
		die_config(firn_err_msg());
	firn_conf_apply_env(&conf);
	for (i = 0; i < nover; i++) {
		if (firn_conf_set(&conf, over_key[i], over_val[i]) < 0) {
			char msg[600];

			snprintf(msg, sizeof(msg), "--%s: %s", over_key[i], firn_err_msg());
			die_config(msg);
		}
	}
	if (firn_conf_check(&conf) < 0)
		die_config(firn_err_msg());
	if (strcmp(conf.log_level, "err") == 0)
		firn_log_set_level(FIRN_LOG_ERR);
	else if (strcmp(conf.log_level, "warn") == 0)
		firn_log_set_level(FIRN_LOG_WARN);
	else if (strcmp(conf.log_level, "debug") == 0)
		firn_log_set_level(FIRN_LOG_DEBUG);
	if (strcmp(conf.net, "dpdk") == 0 && conf.ip[0] == '\0')
		die_config("net = dpdk needs ip (the data port's ADDR/PREFIX, e.g. --ip "
		           "198.18.0.2/24)");

	/* Every thread started from here on inherits the blocked set. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (firn_mkdir_p(conf.data_dir, 0755) < 0)
		die_config(firn_err_msg());
	lockfd = lock_data_dir(conf.data_dir);
	if (lockfd < 0)
		die_config(firn_err_msg());
	if (load_kek(&conf, kek) < 0)
		die_config(firn_err_msg());

	snprintf(catdir, sizeof(catdir), "%s/catalog", conf.data_dir);
	if (firn_mkdir_p(catdir, 0755) < 0 || (cat = firn_catalog_open(catdir)) == NULL) {
		fprintf(stderr, "firnd: catalog: %s\n", firn_err_msg());
		return 1;
	}

	/*
	 * The ingest pipeline's tables come before the store, whose writers
	 * report durable watermarks to it. The cookie secret is derived from
	 * the KEK, so cookies and RESET tokens survive a restart.
	 */
	if (firn_ingest_cookie_secret(kek, cookie) < 0)
		die_config(firn_err_msg());
	firn_ingest_conf_defaults(&ic);
	ic.catalog = cat;
	ic.writers = conf.writers;
	ic.access_key_id = conf.access_key_id;
	ic.secret_access_key = conf.secret_access_key;
	ic.cookie_secret = cookie;
	ic.shard_pending_max = conf.shard_pending_max;
	ic.rx_agents = conf.rx_queues;
	ic.max_sessions = conf.max_sessions;
	ic.max_producers = conf.max_producers;
	ic.dedupe_window = conf.dedupe_window;
	ic.max_waiting = conf.max_waiting;
	ic.max_waiting_bytes = conf.max_waiting_bytes;
	ing = firn_ingest_create(&ic);
	if (ing == NULL)
		die_config(firn_err_msg());

	firn_store_conf_defaults(&sc);
	sc.dir = conf.data_dir;
	sc.kek = kek;
	sc.disk = &firn_disk_uring_ops;
	sc.writers = conf.writers;
	sc.threaded = true;
	sc.compress = conf.compress;
	sc.segment_size = conf.segment_size;
	sc.prealloc = conf.prealloc;
	sc.flush_interval_us = conf.flush_interval_us;
	sc.shard_pending_max = conf.shard_pending_max;
	sc.write_dsync = conf.write_dsync;
	sc.spare_segments = conf.spare_segments;
	firn_ingest_store_hook(ing, &sc);
	st = firn_store_open(&sc);
	if (st == NULL) {
		fprintf(stderr, "firnd: store: %s\n", firn_err_msg());
		return 1;
	}
	drop_deleted_streams(cat, st);
	sync_retention(cat, st);

	firn_api_conf_defaults(&ac);
	if (firn_kdf(kek, "firn1 iterator key", iter_secret) < 0)
		die_config(firn_err_msg());
	ac.iterator_secret = iter_secret;
	ac.bind = conf.api;
	ac.catalog = cat;
	ac.store = st;
	ac.access_key_id = conf.access_key_id;
	ac.secret_access_key = conf.secret_access_key;
	ac.account_id = conf.account_id;
	ac.region = conf.region;
	ac.verify_sigv4 = conf.sigv4_verify;
	ac.throttle = conf.throttle;
	ac.threads = conf.api_threads;
	ac.metrics_extra = ingest_metrics;
	ac.metrics_extra_arg = ing;
	api = firn_api_start(&ac);
	if (api == NULL) {
		fprintf(stderr, "firnd: api: %s\n", firn_err_msg());
		firn_store_close(st);
		firn_catalog_close(cat);
		return 1;
	}

	/* The data port: the rest of the pipeline does not know which driver runs. */
	memset(&nc, 0, sizeof(nc));
	nc.listen = conf.listen;
	nc.rx_queues = conf.rx_queues;
	if (strcmp(conf.net, "dpdk") == 0) {
		net_ops = &firn_net_dpdk_ops;
		nc.eal = conf.eal;
		nc.ip = conf.ip;
	} else {
		net_ops = &firn_net_socket_ops;
	}
	port = net_ops->open(&nc);
	if (port == NULL) {
		fprintf(stderr, "firnd: data port (%s on %s): %s\n", net_ops->name, conf.listen,
		        firn_err_msg());
		firn_api_stop(api);
		firn_store_close(st);
		firn_ingest_destroy(ing);
		firn_catalog_close(cat);
		return 1;
	}
	if (firn_ingest_start(ing, st, net_ops, port) < 0) {
		fprintf(stderr, "firnd: ingest: %s\n", firn_err_msg());
		firn_ingest_stop(ing);
		net_ops->close(port);
		firn_api_stop(api);
		firn_store_close(st);
		firn_ingest_destroy(ing);
		firn_catalog_close(cat);
		return 1;
	}

	FIRN_LOG(INFO, "firnd", "ready: api http://%s udp %s (%s) data_dir %s writers %u%s",
	         conf.api, conf.listen, net_ops->name, conf.data_dir, conf.writers,
	         conf.sigv4_verify ? "" : " (SigV4 verification OFF)");
	if (pidfile)
		write_pidfile(pidfile);

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			FIRN_LOG(INFO, "firnd", "SIGHUP: nothing to reload yet");
			continue;
		}
		break;
	}
	FIRN_LOG(INFO, "firnd", "%s: stopping: no new requests, flushing", strsignal(sig));
	/* Stop reading datagrams first; acks keep flowing until the drain is done. */
	firn_ingest_stop_rx(ing);
	firn_api_stop(api);
	if (firn_ingest_drain(ing, DRAIN_TIMEOUT_MS) < 0)
		FIRN_LOG(ERR, "firnd", "%s", firn_err_msg());
	firn_ingest_stop(ing);
	log_ingest_stats(ing);
	net_ops->close(port);
	firn_store_close(st);
	firn_ingest_destroy(ing);
	firn_catalog_close(cat);
	if (pidfile)
		unlink(pidfile);
	close(lockfd);
	FIRN_LOG(INFO, "firnd", "stopped cleanly");
	return 0;
}
