/*
 * net.c - what both data-port drivers share: parsing the addresses an
 * operator types.
 *
 * "ADDR:PORT" for the UDP address to listen on and "ADDR/PREFIX" for a DPDK
 * port's own address. inet_pton does the dotted-quad work (it rejects
 * leading garbage, octets above 255 and short forms such as "10.1"); the
 * port and prefix go through firn_parse_u64 so "7400x" is refused rather
 * than read as 7400.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "firn_common.h"
#include "firn_net.h"

/* Copy s[0..len) into buf as a C string; false if it does not fit. */
static bool
net_copy_part(char *buf, size_t size, const char *s, size_t len)
{
	if (len >= size)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return true;
}

int
firn_net_parse_addr(const char *s, struct sockaddr_in *out)
{
	char host[INET_ADDRSTRLEN];
	const char *colon;
	uint64_t port;

	if (s == NULL || (colon = strrchr(s, ':')) == NULL)
		return firn_err_set(-EINVAL, "'%s' is not ADDR:PORT (e.g. 0.0.0.0:7400)",
		                    s ? s : "(null)");
	if (!net_copy_part(host, sizeof(host), s, (size_t)(colon - s)))
		return firn_err_set(-EINVAL, "'%s': address part is too long", s);
	if (firn_parse_u64(colon + 1, &port) < 0 || port > 65535)
		return firn_err_set(-EINVAL, "'%s': port must be 0..65535", s);
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (strcmp(host, "*") == 0 || host[0] == '\0') {
		out->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return firn_err_set(-EINVAL, "'%s': '%s' is not an IPv4 address", s, host);
	return 0;
}

int
firn_net_parse_cidr(const char *s, struct in_addr *addr, unsigned *prefix)
{
	char host[INET_ADDRSTRLEN];
	const char *slash;
	uint64_t len = 32;

	if (s == NULL)
		return firn_err_set(-EINVAL,
		                    "no address given (want ADDR/PREFIX, e.g. 10.0.0.2/24)");
	slash = strchr(s, '/');
	if (!net_copy_part(host, sizeof(host), s, slash ? (size_t)(slash - s) : strlen(s)))
		return firn_err_set(-EINVAL, "'%s' is not ADDR/PREFIX (e.g. 10.0.0.2/24)", s);
	if (slash && (firn_parse_u64(slash + 1, &len) < 0 || len > 32))
		return firn_err_set(-EINVAL, "'%s': prefix length must be 0..32", s);
	if (inet_pton(AF_INET, host, addr) != 1)
		return firn_err_set(-EINVAL, "'%s': '%s' is not an IPv4 address", s, host);
	*prefix = (unsigned)len;
	return 0;
}
