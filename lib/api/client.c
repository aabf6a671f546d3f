/*
 * client.c - a small blocking HTTP/1.1 client for the Kinesis API.
 *
 * The firn CLI and the tools need to send signed JSON requests to firnd and
 * read the replies - nothing more. Pulling in libcurl for that would add a
 * dependency to a CLI that should run on a bare workstation, so this is the
 * minimum: one keep-alive TCP connection, requests with Content-Length,
 * replies with Content-Length (what libmicrohttpd sends for buffered
 * replies) or delimited by close, poll() for timeouts, and a single
 * reconnect when the server has closed an idle connection. Plain HTTP only;
 * put a TLS terminator in front for anything that leaves the management
 * network.
 *
 * Requests are signed with firn_sigv4_sign() from sigv4.c - the same code
 * that verifies them in firnd.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api_internal.h"

struct firn_api_client {
	char host[256];
	char port[8];
	char hostport[272];
	char *akid;
	char *secret;
	char *region;
	int timeout_ms;
	int fd;
	/* Bytes read past the end of the previous reply (pipelining is not used,
	 * so this is normally empty). */
	char *buf;
	size_t blen, bcap;
};

struct firn_api_client *
firn_api_client_open(const struct firn_api_client_conf *conf)
{
	const char *ep = conf->endpoint ? conf->endpoint : FIRN_API_DEFAULT_ENDPOINT;
	struct firn_api_client *c;
	const char *h, *colon, *end;
	size_t hl;

	if (strncmp(ep, "https://", 8) == 0) {
		firn_err_set(-EPROTONOSUPPORT,
		             "endpoint '%s': the built-in client speaks plain http:// only", ep);
		return NULL;
	}
	if (strncmp(ep, "http://", 7) != 0) {
		firn_err_set(-EINVAL, "endpoint '%s' must look like http://HOST:PORT", ep);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		firn_err_set(-ENOMEM, "out of memory");
		return NULL;
	}
	c->fd = -1;
	h = ep + 7;
	end = h + strcspn(h, "/");
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
		hl = rb ? (size_t)(rb - h - 1) : 0;
		h++;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		hl = (size_t)((colon ? colon : end) - h);
	}
	if (hl == 0 || hl >= sizeof(c->host)) {
		firn_err_set(-EINVAL, "endpoint '%s' has no host", ep);
		free(c);
		return NULL;
	}
	memcpy(c->host, h, hl);
	c->host[hl] = '\0';
	snprintf(c->port, sizeof(c->port), "%.*s", colon ? (int)(end - colon - 1) : 2,
	         colon ? colon + 1 : "80");
	/* The Host header is the endpoint's authority, as SDKs send (and sign) it. */
	snprintf(c->hostport, sizeof(c->hostport), "%.*s", (int)(end - (ep + 7)), ep + 7);
	c->akid = strdup(conf->access_key_id ? conf->access_key_id : FIRN_API_DEFAULT_ACCESS_KEY);
	c->secret =
	        strdup(conf->secret_access_key ? conf->secret_access_key : FIRN_API_DEFAULT_SECRET);
	c->region = strdup(conf->region ? conf->region : FIRN_API_DEFAULT_REGION);
	c->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 30000;
	if (c->akid == NULL || c->secret == NULL || c->region == NULL) {
		firn_api_client_close(c);
		firn_err_set(-ENOMEM, "out of memory");
		return NULL;
	}
	return c;
}

void
firn_api_client_close(struct firn_api_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->akid);
	free(c->secret);
	free(c->region);
	free(c->buf);
	free(c);
}

void
firn_api_reply_free(struct firn_api_reply *reply)
{
	free(reply->body);
	reply->body = NULL;
	reply->len = 0;
}

static int
client_connect(struct firn_api_client *c)
{
	struct addrinfo hints = {0}, *ai, *p;
	int rc, fd = -1, one = 1;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(c->host, c->port, &hints, &ai);
	if (rc != 0)
		return firn_err_set(-EHOSTUNREACH, "resolve %s: %s", c->host, gai_strerror(rc));
	rc = -ECONNREFUSED;
	for (p = ai; p != NULL; p = p->ai_next) {
		fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return firn_err_set(rc, "connect to %s:%s: %s", c->host, c->port, strerror(-rc));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->blen = 0;
	return 0;
}

static void
client_drop(struct firn_api_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->blen = 0;
}

static int
wait_fd(int fd, short ev, uint64_t deadline_ns)
{
	struct pollfd pfd = {.fd = fd, .events = ev};
	int64_t left;
	int rc;

	for (;;) {
		left = (int64_t)(deadline_ns - firn_mono_ns()) / 1000000;
		if ((int64_t)(deadline_ns - firn_mono_ns()) <= 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, (int)FIRN_MAX(left, 1));
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

static int
send_all(struct firn_api_client *c, const char *p, size_t n, uint64_t deadline)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (wait_fd(c->fd, POLLOUT, deadline) < 0)
			return -ETIMEDOUT;
	}
	return 0;
}

/* Read more into c->buf. >0 bytes read, 0 at EOF, -errno. */
static int
fill(struct firn_api_client *c, uint64_t deadline)
{
	ssize_t r;
	int rc;

	if (c->bcap - c->blen < 4096) {
		size_t cap = c->bcap ? c->bcap * 2 : 16384;
		char *b = realloc(c->buf, cap + 1);

		if (b == NULL)
			return -ENOMEM;
		c->buf = b;
		c->bcap = cap;
	}
	for (;;) {
		r = recv(c->fd, c->buf + c->blen, c->bcap - c->blen, MSG_DONTWAIT);
		if (r >= 0) {
			c->blen += (size_t)r;
			return (int)FIRN_MIN(r, INT32_MAX);
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		rc = wait_fd(c->fd, POLLIN, deadline);
		if (rc < 0)
			return rc;
	}
}

static const char *
find_header(const char *hdrs, const char *end, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = hdrs;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			while (*vlen > 0 && (v[*vlen - 1] == '\r' || v[*vlen - 1] == ' '))
				(*vlen)--;
			return v;
		}
		p = eol + 1;
	}
	return NULL;
}

/* Read one reply. *got_any tells whether any byte arrived (for the reconnect rule). */
static int
read_reply(struct firn_api_client *c, struct firn_api_reply *reply, uint64_t deadline,
           bool *got_any)
{
	char *hend = NULL;
	const char *v;
	size_t vlen, hlen, clen = SIZE_MAX;
	bool close_after = false;
	int rc, major, minor, status;
	char num[32];

	*got_any = c->blen > 0;
	for (;;) {
		if (c->blen > 0) {
			c->buf[c->blen] = '\0';
			hend = strstr(c->buf, "\r\n\r\n");
			if (hend != NULL)
				break;
			if (c->blen > (1u << 20))
				return firn_err_set(-EPROTO, "reply headers too long");
		}
		rc = fill(c, deadline);
		if (rc < 0)
			return firn_err_set(rc, "read reply: %s", strerror(-rc));
		if (rc == 0)
			return firn_err_set(-ECONNRESET, "connection closed by %s:%s", c->host,
			                    c->port);
		*got_any = true;
	}
	hlen = (size_t)(hend - c->buf) + 4;
	if (sscanf(c->buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3)
		return firn_err_set(-EPROTO, "not an HTTP reply");
	v = find_header(c->buf, hend + 2, "Content-Length", &vlen);
	if (v != NULL) {
		uint64_t x;

		snprintf(num, sizeof(num), "%.*s", (int)FIRN_MIN(vlen, 31), v);
		if (firn_parse_u64(num, &x) < 0)
			return firn_err_set(-EPROTO, "bad Content-Length '%s'", num);
		clen = (size_t)x;
	}
	if (find_header(c->buf, hend + 2, "Transfer-Encoding", &vlen) != NULL)
		return firn_err_set(-EPROTO, "chunked replies are not supported");
	v = find_header(c->buf, hend + 2, "Connection", &vlen);
	if ((v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0) || minor == 0)
		close_after = true;
	v = find_header(c->buf, hend + 2, "x-amzn-RequestId", &vlen);
	snprintf(reply->request_id, sizeof(reply->request_id), "%.*s",
	         v ? (int)FIRN_MIN(vlen, sizeof(reply->request_id) - 1) : 0, v ? v : "");
	if (clen == SIZE_MAX)
		close_after = true;
	while (c->blen - hlen < clen) {
		rc = fill(c, deadline);
		if (rc < 0)
			return firn_err_set(rc, "read reply body: %s", strerror(-rc));
		if (rc == 0) {
			if (clen == SIZE_MAX)
				break;
			return firn_err_set(-ECONNRESET, "connection closed mid-reply");
		}
	}
	if (clen == SIZE_MAX)
		clen = c->blen - hlen;
	reply->status = status;
	reply->len = clen;
	reply->body = malloc(clen + 1);
	if (reply->body == NULL)
		return -ENOMEM;
	memcpy(reply->body, c->buf + hlen, clen);
	reply->body[clen] = '\0';
	memmove(c->buf, c->buf + hlen + clen, c->blen - hlen - clen);
	c->blen -= hlen + clen;
	if (close_after)
		client_drop(c);
	return 0;
}

static int
roundtrip(struct firn_api_client *c, const char *head, size_t hlen, const char *body, size_t blen,
          struct firn_api_reply *reply)
{
	uint64_t deadline = firn_mono_ns() + (uint64_t)c->timeout_ms * 1000000ull;
	bool reused, got_any = false;
	int attempt, rc = 0;

	memset(reply, 0, sizeof(*reply));
	for (attempt = 0; attempt < 2; attempt++) {
		reused = c->fd >= 0;
		if (!reused) {
			rc = client_connect(c);
			if (rc < 0)
				return rc;
		}
		rc = send_all(c, head, hlen, deadline);
		if (rc == 0 && blen > 0)
			rc = send_all(c, body, blen, deadline);
		if (rc == 0)
			rc = read_reply(c, reply, deadline, &got_any);
		if (rc == 0)
			return 0;
		client_drop(c);
		/*
		 * A kept-alive connection the server had already closed fails
		 * before any reply byte: try once more on a fresh one.
		 */
		if (!reused || got_any || rc == -ETIMEDOUT)
			break;
	}
	if (rc == -ETIMEDOUT)
		firn_err_set(rc, "no reply from %s:%s within %d ms", c->host, c->port,
		             c->timeout_ms);
	else if (firn_err_code() == 0)
		firn_err_set(rc, "request to %s:%s failed: %s", c->host, c->port, strerror(-rc));
	return rc;
}

int
firn_api_client_call(struct firn_api_client *c, const char *op, const char *json, size_t len,
                     struct firn_api_reply *reply)
{
	char date[17], target[128], auth[512], *head;
	struct firn_sigv4_header h[4];
	struct firn_sigv4_req sr = {0};
	size_t hlen;
	int rc, n;

	firn_err_clear();
	firn_sigv4_date(firn_now_ms() / 1000, date);
	snprintf(target, sizeof(target), API_TARGET_PREFIX "%s", op);
	h[0] = (struct firn_sigv4_header){"Host", c->hostport};
	h[1] = (struct firn_sigv4_header){"Content-Type", "application/x-amz-json-1.1"};
	h[2] = (struct firn_sigv4_header){"X-Amz-Date", date};
	h[3] = (struct firn_sigv4_header){"X-Amz-Target", target};
	sr.method = "POST";
	sr.path = "/";
	sr.query = "";
	sr.hdrs = h;
	sr.nhdrs = 4;
	sr.body = json;
	sr.body_len = len;
	sr.access_key_id = c->akid;
	sr.secret_access_key = c->secret;
	sr.region = c->region;
	sr.service = "kinesis";
	sr.amz_date = date;
	rc = firn_sigv4_sign(&sr, auth, sizeof(auth));
	if (rc < 0)
		return firn_err_set(rc, "cannot sign the request");
	hlen = 1024 + strlen(auth) + strlen(c->hostport);
	head = malloc(hlen);
	if (head == NULL)
		return -ENOMEM;
	n = snprintf(head, hlen,
	             "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\n"
	             "X-Amz-Date: %s\r\nX-Amz-Target: %s\r\nAuthorization: %s\r\n"
	             "Content-Length: %zu\r\nUser-Agent: firn-cli/0.1\r\n\r\n",
	             c->hostport, date, target, auth, len);
	rc = roundtrip(c, head, (size_t)n, json, len, reply);
	free(head);
	return rc;
}

int
firn_api_client_get(struct firn_api_client *c, const char *path, struct firn_api_reply *reply)
{
	char head[1024];
	int n;

	firn_err_clear();
	n = snprintf(head, sizeof(head),
	             "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: firn-cli/0.1\r\n\r\n", path,
	             c->hostport);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -EINVAL;
	return roundtrip(c, head, (size_t)n, NULL, 0, reply);
}
