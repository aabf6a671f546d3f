/*
 * sbuf.c - a growable string for canonical requests, messages and /metrics.
 *
 * Building text with snprintf into fixed buffers invites silent truncation;
 * these few helpers grow by doubling and remember an allocation failure, so
 * callers check once at the end (sb_take() returns NULL) instead of after
 * every append.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

void
sb_init(struct sbuf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->oom = false;
}

void
sb_free(struct sbuf *b)
{
	free(b->p);
	sb_init(b);
}

static bool
sb_reserve(struct sbuf *b, size_t extra)
{
	size_t want, cap;
	char *p;

	if (b->oom)
		return false;
	want = b->len + extra + 1;
	if (want <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void
sb_add(struct sbuf *b, const void *s, size_t n)
{
	if (!sb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
sb_adds(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

void
sb_addc(struct sbuf *b, char c)
{
	sb_add(b, &c, 1);
}

void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sb_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *
sb_take(struct sbuf *b, size_t *len)
{
	char *p;

	if (b->oom) {
		sb_free(b);
		return NULL;
	}
	if (!sb_reserve(b, 0))
		return NULL;
	b->p[b->len] = '\0';
	p = b->p;
	if (len != NULL)
		*len = b->len;
	sb_init(b);
	return p;
}

char *
sb_extend(struct sbuf *b, size_t n)
{
	char *p;

	if (!sb_reserve(b, n))
		return NULL;
	p = b->p + b->len;
	b->len += n;
	b->p[b->len] = '\0';
	return p;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len, i;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	/* No overlong forms, no surrogates, nothing above U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

void
sb_json_str(struct sbuf *b, const void *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = str;
	size_t i = 0, run = 0;

	sb_addc(b, '"');
	while (i < n) {
		unsigned char c = s[i];
		size_t l;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			run++;
			i++;
			continue;
		}
		sb_add(b, s + i - run, run);
		run = 0;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};

			sb_add(b, e, 2);
			i++;
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

			sb_add(b, e, 6);
			i++;
		} else if ((l = utf8_seq(s + i, n - i)) > 0) {
			sb_add(b, s + i, l);
			i += l;
		} else {
			/* Not UTF-8: JSON cannot carry it; say so visibly. */
			sb_adds(b, "\\ufffd");
			i++;
		}
	}
	sb_add(b, s + i - run, run);
	sb_addc(b, '"');
}
