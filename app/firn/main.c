/*
 * firn - the command-line client of the appliance.
 *
 *	firn [GLOBAL OPTIONS] COMMAND ...
 *
 *	firn stream create|delete|list|describe|split|merge|retention|reshard ...
 *	firn put --http STREAM [--key K] [--blob] [FILE|-]
 *	firn put --udp [HOST:PORT] STREAM [--key K] [--blob] [FILE|-]
 *	firn get STREAM [--shard ID] [--from trim_horizon|latest|at-timestamp T] [--limit N]
 *
 * Every command reaches firnd's Kinesis-compatible HTTP API, signed with
 * SigV4. Where the endpoint and credentials come from, last wins:
 *
 *	built-in defaults   http://127.0.0.1:4567, the demo key pair, us-east-1
 *	a config file       --config FILE, else $FIRN_CONFIG, else
 *	                    ~/.config/firn/cli.conf if it exists; `key = value`
 *	                    lines: endpoint, access_key_id, secret_access_key,
 *	                    region (firnd.conf works too: its `api` key gives the
 *	                    endpoint, other keys are ignored)
 *	environment         FIRN_ENDPOINT; AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
 *	                    then FIRN_ACCESS_KEY_ID/FIRN_SECRET_ACCESS_KEY;
 *	                    AWS_REGION/AWS_DEFAULT_REGION, then FIRN_REGION
 *	flags               --endpoint URL --access-key K --secret-key S --region R
 *
 * This file owns argv, the environment and exit(); the commands live in
 * stream.c, put.c and get.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: firn [OPTIONS] COMMAND ...\n"
	        "\n"
	        "commands:\n"
	        "  stream create NAME [--shards N]        create a stream (default 1 shard)\n"
	        "  stream delete NAME                     delete a stream and its data\n"
	        "  stream list                            list streams\n"
	        "  stream describe NAME                   status, retention, shards\n"
	        "  stream split NAME SHARD [--at KEY]     split a shard (default: mid-range)\n"
	        "  stream merge NAME SHARD ADJACENT       merge two adjacent shards\n"
	        "  stream retention NAME HOURS            set retention (24..8760 hours)\n"
	        "  stream reshard NAME COUNT              uniform resharding to COUNT shards\n"
	        "  put --http STREAM [--key K] [--blob] [FILE|-]\n"
	        "                                         one record per line (or the whole\n"
	        "                                         input with --blob) via PutRecords\n"
	        "  put --udp [HOST:PORT] STREAM [--key K] [--blob] [FILE|-]\n"
	        "                                         the same over the UDP record protocol\n"
	        "                                         (FIRN_UDP, default 127.0.0.1:7400)\n"
	        "  get STREAM [--shard ID] [--from trim_horizon|latest|at-timestamp T]\n"
	        "             [--limit N] [--follow] [--format raw|json]\n"
	        "                                         read records (all shards by default)\n"
	        "\n"
	        "options (any command):\n"
	        "  --endpoint URL     API endpoint (FIRN_ENDPOINT, default %s)\n"
	        "  --access-key K     access key id (AWS_ACCESS_KEY_ID / FIRN_ACCESS_KEY_ID)\n"
	        "  --secret-key S     secret key (AWS_SECRET_ACCESS_KEY / FIRN_SECRET_ACCESS_KEY)\n"
	        "  --region R         signing region (AWS_REGION, default %s)\n"
	        "  --config FILE      key = value file (FIRN_CONFIG, ~/.config/firn/cli.conf)\n"
	        "  --timeout MS       per-request timeout (default 30000)\n"
	        "  -v, --verbose      more output\n"
	        "  -h, --help         this text\n",
	        FIRN_API_DEFAULT_ENDPOINT, FIRN_API_DEFAULT_REGION);
}

int
cli_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;

	if (s == NULL || firn_parse_u64(s, &v) < 0 || v < min || v > max) {
		fprintf(stderr, "firn: %s needs a whole number in %u..%u, not '%s'\n", opt, min,
		        max, s ? s : "");
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static void
set(char *dst, size_t size, const char *v)
{
	if (v != NULL && *v != '\0')
		snprintf(dst, size, "%s", v);
}

/* Trim blanks and one level of "..." quoting in place. */
static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	if (e - s >= 2 && s[0] == '"' && e[-1] == '"') {
		e[-1] = '\0';
		s++;
	}
	return s;
}

static int
load_config(struct cli *c, const char *path, bool must_exist)
{
	char *buf, *line, *next;
	size_t len;
	int rc;

	rc = firn_file_read_all(path, &buf, &len);
	if (rc < 0) {
		if (!must_exist && rc == -ENOENT)
			return 0;
		fprintf(stderr, "firn: cannot read config %s: %s\n", path, strerror(-rc));
		return rc;
	}
	for (line = buf; line != NULL; line = next) {
		char *eq, *k, *v, *hash;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		hash = strchr(line, '#');
		/* A '#' inside quotes is part of the value; good enough: only cut when unquoted. */
		if (hash != NULL && strchr(line, '"') == NULL)
			*hash = '\0';
		eq = strchr(line, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		if (strcmp(k, "endpoint") == 0) {
			set(c->endpoint, sizeof(c->endpoint), v);
		} else if (strcmp(k, "api") == 0 && strncmp(v, "http", 4) != 0 && *v) {
			/* firnd.conf's listen address; a wildcard means "this host". */
			if (strncmp(v, "0.0.0.0:", 8) == 0)
				snprintf(c->endpoint, sizeof(c->endpoint), "http://127.0.0.1:%s",
				         v + 8);
			else
				snprintf(c->endpoint, sizeof(c->endpoint), "http://%s", v);
		} else if (strcmp(k, "access_key_id") == 0) {
			set(c->access_key, sizeof(c->access_key), v);
		} else if (strcmp(k, "secret_access_key") == 0) {
			set(c->secret_key, sizeof(c->secret_key), v);
		} else if (strcmp(k, "region") == 0) {
			set(c->region, sizeof(c->region), v);
		}
	}
	free(buf);
	return 0;
}

/* Global options with a value, consumed wherever they appear. */
static const char *const value_opts[] = {"--endpoint", "--access-key", "--secret-key",
                                         "--region",   "--timeout",    "--config"};

int
main(int argc, char **argv)
{
	struct cli c = {.prog = "firn", .timeout_ms = 30000};
	const char *flag[FIRN_ARRAY_SIZE(value_opts)] = {0};
	struct firn_api_client_conf cc = {0};
	char **rest = calloc((size_t)argc + 1, sizeof(*rest));
	char defconf[512];
	const char *home = getenv("HOME");
	int nrest = 0, i, rc;
	unsigned k;

	if (rest == NULL)
		return CLI_EXIT_FAIL;
	for (i = 1; i < argc; i++) {
		for (k = 0; k < FIRN_ARRAY_SIZE(value_opts); k++) {
			size_t l = strlen(value_opts[k]);

			if (strcmp(argv[i], value_opts[k]) == 0) {
				if (i + 1 >= argc) {
					fprintf(stderr, "firn: %s needs a value\n", argv[i]);
					return CLI_EXIT_USAGE;
				}
				flag[k] = argv[++i];
				break;
			}
			if (strncmp(argv[i], value_opts[k], l) == 0 && argv[i][l] == '=') {
				flag[k] = argv[i] + l + 1;
				break;
			}
		}
		if (k < FIRN_ARRAY_SIZE(value_opts))
			continue;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
			c.verbose = true;
			continue;
		}
		rest[nrest++] = argv[i];
	}
	if (nrest == 0) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}

	snprintf(c.endpoint, sizeof(c.endpoint), "%s", FIRN_API_DEFAULT_ENDPOINT);
	snprintf(c.access_key, sizeof(c.access_key), "%s", FIRN_API_DEFAULT_ACCESS_KEY);
	snprintf(c.secret_key, sizeof(c.secret_key), "%s", FIRN_API_DEFAULT_SECRET);
	snprintf(c.region, sizeof(c.region), "%s", FIRN_API_DEFAULT_REGION);
	if (flag[5] != NULL) {
		if (load_config(&c, flag[5], true) < 0)
			return CLI_EXIT_USAGE;
	} else if (getenv("FIRN_CONFIG") != NULL) {
		if (load_config(&c, getenv("FIRN_CONFIG"), true) < 0)
			return CLI_EXIT_USAGE;
	} else if (home != NULL) {
		snprintf(defconf, sizeof(defconf), "%s/.config/firn/cli.conf", home);
		load_config(&c, defconf, false);
	}
	set(c.endpoint, sizeof(c.endpoint), getenv("FIRN_ENDPOINT"));
	set(c.access_key, sizeof(c.access_key), getenv("AWS_ACCESS_KEY_ID"));
	set(c.secret_key, sizeof(c.secret_key), getenv("AWS_SECRET_ACCESS_KEY"));
	set(c.access_key, sizeof(c.access_key), getenv("FIRN_ACCESS_KEY_ID"));
	set(c.secret_key, sizeof(c.secret_key), getenv("FIRN_SECRET_ACCESS_KEY"));
	set(c.region, sizeof(c.region), getenv("AWS_DEFAULT_REGION"));
	set(c.region, sizeof(c.region), getenv("AWS_REGION"));
	set(c.region, sizeof(c.region), getenv("FIRN_REGION"));
	set(c.endpoint, sizeof(c.endpoint), flag[0]);
	set(c.access_key, sizeof(c.access_key), flag[1]);
	set(c.secret_key, sizeof(c.secret_key), flag[2]);
	set(c.region, sizeof(c.region), flag[3]);
	if (flag[4] != NULL) {
		uint32_t t;

		if (cli_parse_u32("--timeout", flag[4], 1, 3600000, &t) < 0)
			return CLI_EXIT_USAGE;
		c.timeout_ms = (int)t;
	}

	cc.endpoint = c.endpoint;
	cc.access_key_id = c.access_key;
	cc.secret_access_key = c.secret_key;
	cc.region = c.region;
	cc.timeout_ms = c.timeout_ms;
	c.client = firn_api_client_open(&cc);
	if (c.client == NULL) {
		fprintf(stderr, "firn: %s\n", firn_err_msg());
		return CLI_EXIT_USAGE;
	}
	if (strcmp(rest[0], "stream") == 0) {
		rc = cmd_stream(&c, nrest - 1, rest + 1);
	} else if (strcmp(rest[0], "put") == 0) {
		rc = cmd_put(&c, nrest - 1, rest + 1);
	} else if (strcmp(rest[0], "get") == 0) {
		rc = cmd_get(&c, nrest - 1, rest + 1);
	} else {
		fprintf(stderr, "firn: unknown command '%s' (firn --help lists them)\n", rest[0]);
		rc = CLI_EXIT_USAGE;
	}
	firn_api_client_close(c.client);
	free(rest);
	return rc;
}
