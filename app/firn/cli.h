/*
 * cli.h - shared by the firn CLI's command files.
 *
 * main.c parses the options every command takes (endpoint, credentials,
 * region, timeout, config file), then hands the rest of argv to a command.
 * Commands talk to firnd through one struct firn_api_client (lib/api's
 * client side: SigV4 + a small HTTP/1.1 client).
 */
#ifndef FIRN_CLI_H
#define FIRN_CLI_H

#include <stdbool.h>

#include <jansson.h>

#include "firn_api.h"
#include "firn_common.h"

/* Exit codes: 0 ok, 1 the operation failed, 2 bad usage. */
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

struct cli {
	const char *prog;
	char endpoint[512];
	char access_key[256];
	char secret_key[256];
	char region[64];
	int timeout_ms;
	bool verbose;
	struct firn_api_client *client;
};

/*
 * Call one operation with a JSON request (stolen). 0 with *out (the reply,
 * caller decrefs) or -1 after printing "firn: <Type>: <message>" to stderr.
 * If err_type is not NULL, a service error's __type is copied there and
 * nothing is printed (callers that handle some errors themselves).
 */
int cli_call(struct cli *c, const char *op, json_t *req, json_t **out, char *err_type,
             size_t err_size);

int cmd_stream(struct cli *c, int argc, char **argv);
int cmd_put(struct cli *c, int argc, char **argv);
/* put_udp.c: `firn put --udp ...` over the record protocol (lib/client). */
int cmd_put_udp(struct cli *c, int argc, char **argv);
int cmd_get(struct cli *c, int argc, char **argv);

/* Strict integer option parsing with a message naming the option. */
int cli_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out);

#endif /* FIRN_CLI_H */
