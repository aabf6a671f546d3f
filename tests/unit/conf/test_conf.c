/*
 * test_conf.c - config parsing: the shipped sample equals the defaults,
 * every kind of bad line is refused with file:line, overrides win.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "firn_common.h"
#include "firn_conf.h"

static char tmpl[] = "/tmp/firn-conf-XXXXXX";

static const char *
write_conf(const char *text)
{
	static char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "%s", tmpl);
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* The documented sample must say exactly what the built-in defaults are. */
static void
test_sample_is_defaults(void **state)
{
	struct firn_conf a, b;

	(void)state;
	firn_conf_defaults(&a);
	firn_conf_defaults(&b);
	assert_int_equal(firn_conf_load(&b, FIRN_SAMPLE_CONF), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(firn_conf_check(&b), 0);
}

static void
test_values(void **state)
{
	struct firn_conf c;
	const char *p;

	(void)state;
	firn_conf_defaults(&c);
	p = write_conf("# comment\n\n data_dir = /srv/firn # trailing\n"
	               "segment_size=128M\nwriters = 2\ncompress = off\n"
	               "eal = \"--no-huge -m 1024 --vdev=net_af_packet0,iface=fa0\"\n");
	assert_int_equal(firn_conf_load(&c, p), 0);
	unlink(p);
	assert_string_equal(c.data_dir, "/srv/firn");
	assert_true(c.segment_size == 128ull << 20);
	assert_int_equal(c.writers, 2);
	assert_false(c.compress);
	assert_string_equal(c.eal, "--no-huge -m 1024 --vdev=net_af_packet0,iface=fa0");
	assert_int_equal(firn_conf_set(&c, "api", "0.0.0.0:9999"), 0);
	assert_string_equal(c.api, "0.0.0.0:9999");
}

static void
expect_bad(const char *text, const char *needle)
{
	struct firn_conf c;
	const char *p;

	firn_conf_defaults(&c);
	p = write_conf(text);
	assert_int_equal(firn_conf_load(&c, p), -EINVAL);
	unlink(p);
	if (strstr(firn_err_msg(), needle) == NULL)
		fail_msg("error '%s' does not mention '%s'", firn_err_msg(), needle);
}

static void
test_bad_lines(void **state)
{
	(void)state;
	expect_bad("writers = 1\nsegmnet_size = 1M\n", ":2: unknown key 'segmnet_size'");
	expect_bad("writers = many\n", ":1: writers: 'many' is not a whole number");
	expect_bad("writers = 0\n", "outside 1..64");
	expect_bad("segment_size = 12Q\n", "not a size");
	expect_bad("compress = perhaps\n", "not a boolean");
	expect_bad("just words\n", "expected 'key = value'");
	expect_bad("eal = \"unterminated\n", "unterminated quote");
	expect_bad(" = x\n", "missing key");
}

static void
test_check(void **state)
{
	struct firn_conf c;

	(void)state;
	firn_conf_defaults(&c);
	assert_int_equal(firn_conf_set(&c, "net", "carrier-pigeon"), 0);
	assert_int_equal(firn_conf_check(&c), -EINVAL);
	assert_non_null(strstr(firn_err_msg(), "'socket' or 'dpdk'"));
	firn_conf_defaults(&c);
	assert_int_equal(firn_conf_set(&c, "api", "localhost"), 0);
	assert_int_equal(firn_conf_check(&c), -EINVAL);
	firn_conf_defaults(&c);
	assert_int_equal(firn_conf_set(&c, "kek", "abcd"), 0);
	assert_int_equal(firn_conf_check(&c), -EINVAL);
	firn_conf_defaults(&c);
	assert_int_equal(firn_conf_set(&c, "account_id", "12345"), 0);
	assert_int_equal(firn_conf_check(&c), -EINVAL);
}

static void
test_hostport(void **state)
{
	char a[64];
	uint16_t port;

	(void)state;
	assert_int_equal(firn_conf_split_hostport("127.0.0.1:4567", a, sizeof(a), &port), 0);
	assert_string_equal(a, "127.0.0.1");
	assert_int_equal(port, 4567);
	assert_int_equal(firn_conf_split_hostport("[::1]:80", a, sizeof(a), &port), 0);
	assert_string_equal(a, "::1");
	assert_int_equal(firn_conf_split_hostport("host:0", a, sizeof(a), &port), -EINVAL);
	assert_int_equal(firn_conf_split_hostport("host:65536", a, sizeof(a), &port), -EINVAL);
	assert_int_equal(firn_conf_split_hostport(":80", a, sizeof(a), &port), -EINVAL);
}

static void
test_env(void **state)
{
	struct firn_conf c;

	(void)state;
	firn_conf_defaults(&c);
	setenv("FIRN_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("FIRN_SECRET_ACCESS_KEY", "envsecret", 1);
	firn_conf_apply_env(&c);
	assert_string_equal(c.access_key_id, "AKIDENV");
	assert_string_equal(c.secret_access_key, "envsecret");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sample_is_defaults), cmocka_unit_test(test_values),
	        cmocka_unit_test(test_bad_lines),          cmocka_unit_test(test_check),
	        cmocka_unit_test(test_hostport),           cmocka_unit_test(test_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
